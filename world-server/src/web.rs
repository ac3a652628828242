//! The chat world's browser client: a page and its script, served on the game port beside the
//! WebSocket it talks over (`GET /`, `GET /app.js`, `GET /ws`).
//!
//! The script is the codec generated from `proto/` ([`protocol::MESSAGES_JS`]) followed by
//! the page's own script (`web/app.js`), so the page speaks the messages of this build. The
//! page fetches nothing from elsewhere and runs no inline script; its element ids, which
//! tests drive it by, are listed at the top of `web/app.js`.

/// The page (`GET /`): HTML and CSS; it loads `/app.js`.
pub const INDEX_HTML: &str = include_str!("../web/index.html");

/// The page's own script, without the generated codec.
pub const APP_SCRIPT: &str = include_str!("../web/app.js");

/// The script of the page (`GET /app.js`): the generated codec, then the page's script.
pub fn app_js() -> String {
    let mut js = String::with_capacity(protocol::MESSAGES_JS.len() + 1 + APP_SCRIPT.len());
    js.push_str(protocol::MESSAGES_JS);
    js.push('\n');
    js.push_str(APP_SCRIPT);
    js
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_is_the_generated_codec_then_the_page_script() {
        let js = app_js();
        assert!(js.starts_with(protocol::MESSAGES_JS));
        assert!(js.ends_with(APP_SCRIPT));
        assert!(js.contains("function encodeFrame(name, msg)"));
        assert!(js.contains("\"world.S2C_Chat\": {\"name\": \"S2C_Chat\", \"id\": 1000"));
    }

    #[test]
    fn every_error_code_has_a_sentence_on_the_page() {
        let mut codes = 0;
        for value in 1..1000 {
            if let Ok(code) = protocol::ErrorCode::try_from(value) {
                let entry = format!("\n    {}: \"", code.as_str_name());
                assert!(APP_SCRIPT.contains(&entry), "no words for {code:?}");
                codes += 1;
            }
        }
        assert!(codes >= 15, "{codes} codes");
    }

    #[test]
    fn the_page_loads_its_script_and_nothing_from_elsewhere() {
        assert!(INDEX_HTML.contains("<script src=\"/app.js\"></script>"));
        assert_eq!(INDEX_HTML.matches("<script").count(), 1, "no inline script");
        assert!(!INDEX_HTML.contains("http://") && !INDEX_HTML.contains("https://"));
        assert!(!INDEX_HTML.contains("//cdn"));
        assert!(!APP_SCRIPT.contains("innerHTML"), "text goes in as text");
        // Every id the script looks up is on the page.
        for id in APP_SCRIPT
            .split("$(\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
        {
            assert!(
                INDEX_HTML.contains(&format!("id=\"{id}\"")),
                "app.js uses #{id}, which index.html lacks"
            );
        }
    }
}
