//! Bots with accounts against the real world server, in process: a register run creates the
//! accounts and saves their tokens, a login run and a resume run use them. The server hashes
//! passwords with the cheapest argon2 settings and stores accounts in a temporary database.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::{Server, TempDir};
use config::ClientConfig;
use dummy_client::{run, Report, RunError};
use tokio_util::sync::CancellationToken;

fn config(server: std::net::SocketAddr, bots: usize, auth: &str, tokens: &Path) -> ClientConfig {
    let mut config = ClientConfig::default();
    config.client.server = server;
    config.client.bots = bots;
    config.client.duration_secs = 1;
    config.client.drain_secs = 2;
    config.client.ramp_up_per_sec = 1000;
    config.bots.bots_per_room = 10;
    config.bots.chat_interval_ms = 100;
    config.bots.ping_interval_ms = 200;
    config.bots.auth = auth.to_owned();
    config.bots.tokens_file = tokens.to_owned();
    config.validate("accounts test").unwrap();
    config
}

async fn run_with(config: ClientConfig) -> Report {
    tokio::time::timeout(
        Duration::from_secs(30),
        run(config, CancellationToken::new()),
    )
    .await
    .expect("the run did not end within 30 s")
    .expect("the run could not start")
}

fn assert_all_in(report: &Report, bots: u64, auth: &str) {
    assert!(report.passed(), "{report}");
    assert_eq!(report.auth, auth, "{report}");
    assert_eq!(report.logged_in, bots, "{report}");
    assert_eq!(report.joined, bots, "{report}");
    assert_eq!(report.auth_ms.count, bots, "{report}");
    assert_eq!(report.login_ms.count, bots, "{report}");
    assert!(report.auth_ms.max <= report.login_ms.max, "{report}");
    assert_eq!(report.received, report.expected, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_register_then_log_in_then_resume_with_the_saved_tokens() {
    let dir = TempDir::new("accounts");
    let tokens = dir.path("bot-tokens.txt");
    // A line of someone else's: kept when the register run merges its tokens in.
    fs::write(&tokens, "alice alice-token\n").unwrap();
    let server = Server::start(&dir).await;

    let report = run_with(config(server.addr, 20, "register", &tokens)).await;
    assert_all_in(&report, 20, "register");
    let saved = report.tokens.as_ref().expect("a register run saves tokens");
    assert_eq!(
        (saved.saved, saved.error.as_deref()),
        (20, None),
        "{report}"
    );
    let text = fs::read_to_string(&tokens).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 21, "{text}");
    assert_eq!(lines[0], "alice alice-token");
    assert!(lines[1].starts_with("bot-00001 "), "{text}");
    assert!(lines[20].starts_with("bot-00020 "), "{text}");

    let report = run_with(config(server.addr, 20, "login", &tokens)).await;
    assert_all_in(&report, 20, "login");
    assert!(report.tokens.is_none());

    let report = run_with(config(server.addr, 20, "resume", &tokens)).await;
    assert_all_in(&report, 20, "resume");
    assert_eq!(
        fs::read_to_string(&tokens).unwrap(),
        text,
        "resume writes nothing"
    );

    // The accounts exist now: registering them again fails every bot, by code.
    let report = run_with(config(server.addr, 20, "register", &tokens)).await;
    assert!(!report.passed(), "{report}");
    assert_eq!(report.login_failures, 20, "{report}");
    assert_eq!(
        report.login_errors.get("USERNAME_TAKEN"),
        Some(&20),
        "{report}"
    );
    assert_eq!(report.errors.get("USERNAME_TAKEN"), Some(&20), "{report}");
    assert!(
        report.failures()[0].contains("(USERNAME_TAKEN 20)"),
        "{report}"
    );
    assert_eq!(
        fs::read_to_string(&tokens).unwrap(),
        text,
        "the saved tokens are kept"
    );

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_run_fails_the_bots_without_a_token_or_with_a_bad_one() {
    let dir = TempDir::new("resume");
    let tokens = dir.path("bot-tokens.txt");
    let server = Server::start(&dir).await;
    let report = run_with(config(server.addr, 5, "register", &tokens)).await;
    assert_all_in(&report, 5, "register");

    // Bot 4 loses its line, bot 5 gets a token nobody issued.
    let text = fs::read_to_string(&tokens).unwrap();
    let mut kept: Vec<String> = text.lines().take(3).map(str::to_owned).collect();
    kept.push("bot-00005 not-a-token".to_owned());
    fs::write(&tokens, kept.join("\n")).unwrap();

    let report = run_with(config(server.addr, 5, "resume", &tokens)).await;
    assert!(!report.passed(), "{report}");
    assert_eq!(report.joined, 3, "{report}");
    assert_eq!(report.login_failures, 2, "{report}");
    assert_eq!(report.login_errors.get("no token"), Some(&1), "{report}");
    assert_eq!(
        report.login_errors.get("INVALID_TOKEN"),
        Some(&1),
        "{report}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_resume_run_without_a_readable_tokens_file_does_not_start() {
    let dir = TempDir::new("no-tokens");
    // Nothing listens here: the run must fail before it connects.
    let server = "127.0.0.1:9".parse().unwrap();

    let missing = dir.path("missing.txt");
    let error = run(
        config(server, 5, "resume", &missing),
        CancellationToken::new(),
    )
    .await
    .expect_err("a missing tokens file is an error");
    assert!(matches!(error, RunError::Tokens(_)), "{error}");
    assert!(
        error.to_string().starts_with("cannot read tokens file"),
        "{error}"
    );

    let bad = dir.path("bad.txt");
    fs::write(&bad, "bot-00001 t1\nbot-00002\n").unwrap();
    for auth in ["resume", "register"] {
        let error = run(config(server, 5, auth, &bad), CancellationToken::new())
            .await
            .expect_err("a bad tokens file is an error");
        assert_eq!(
            error.to_string(),
            format!(
                "bad tokens file \"{}\": line 2: expected \"username token\" (got 1 fields)",
                bad.display()
            )
        );
    }
}
