//! [`ClientConfig`]: the configuration of `dummy-client`, read from `dummy-client.toml`.

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{
    error::{quoted, ConfigError, Rules},
    load,
    log::LogConfig,
};

/// The example file, every key at its default; it is also what `load(None)` parses.
pub const CLIENT_EXAMPLE: &str = include_str!("../dummy-client.toml");

/// Name used in messages for the embedded defaults.
const EMBEDDED_ORIGIN: &str = "embedded dummy-client.toml";

/// Everything `dummy-client` can be told, one field per TOML section.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// `[client]`: the target, the size and length of the run, the client's own tick.
    pub client: ClientSection,
    /// `[bots]`: what each bot does.
    pub bots: BotsSection,
    /// `[log]`: log level and optional rotating log file.
    pub log: LogConfig,
}

/// `[client]`: the target, the size and length of the run, the client's own tick.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientSection {
    /// Address of the server to load. Default `127.0.0.1:7000`, the server's default listener.
    #[serde(deserialize_with = "crate::addr::socket_addr")]
    pub server: SocketAddr,
    /// The nodes of a cluster to spread the bots over, instead of `server`: bot `i` connects
    /// to the `i mod n`-th, so that the members of each room are on different nodes. Empty
    /// (the default): every bot on `server`.
    #[serde(deserialize_with = "crate::addr::socket_addrs")]
    pub servers: Vec<SocketAddr>,
    /// Number of bots, 1..=100_000. Default 100: a visible load that any machine handles.
    pub bots: usize,
    /// Seconds the bots chat once all are in, 1..=86400. Default 30: long enough for steady
    /// latency numbers, short enough for a quick check.
    pub duration_secs: u64,
    /// Connections started per second, 1..=1_000_000. Default 500: a ramp rather than a
    /// thundering herd, which would measure the accept queue instead of the server.
    pub ramp_up_per_sec: u64,
    /// Connection attempts in flight at once, 1..=65536. Default 256: well under typical
    /// listen backlogs and file-descriptor limits.
    pub connect_concurrency: usize,
    /// Length of the client's own tick in milliseconds, 1..=1000. Default 10: bot timers fire
    /// within 10 ms of their due time, so measured latency is the server's, not ours.
    pub tick_ms: u64,
    /// Largest frame accepted or sent, header included, in bytes, 64..=65535. Default 65535,
    /// the most the protocol allows: the client is a measuring tool and should not be the
    /// side that rejects a frame.
    pub max_packet_size: usize,
    /// Seconds to wait after the run for messages still in flight before counting them lost,
    /// 0..=600. Default 5: many ticks of a loaded server.
    pub drain_secs: u64,
    /// Seconds a bot has to be logged in and in its room; after that it counts as failed,
    /// 1..=600. Default 10: generous under load, and a hung login still shows up in the report.
    pub login_timeout_secs: u64,
    /// How bots carry their frames: `"tcp"` (on the socket, the default) or `"ws"`
    /// (WebSocket at [`ws_path`](Self::ws_path), each binary message carrying frames).
    pub transport: String,
    /// The WebSocket path of the server. Default `"/ws"`, the server's default.
    pub ws_path: String,
    /// Whether bots connect with TLS (to the server's `tls.listen` port). Default `false`.
    pub tls: bool,
    /// With `tls`: a PEM file of the certificate authorities (or the self-signed certificate)
    /// to trust. Empty (the default): the system's.
    pub tls_ca: PathBuf,
    /// With `tls`: trust any certificate, unchecked; for a test server's self-signed
    /// certificate, never for a real one. Default `false`.
    pub tls_insecure: bool,
    /// With `tls`: the name the server's certificate must carry. Empty (the default): the
    /// server's address, as an IP address.
    pub tls_name: String,
}

impl ClientSection {
    /// The servers the bots connect to: [`servers`](Self::servers), or `server` alone.
    pub fn targets(&self) -> Vec<SocketAddr> {
        if self.servers.is_empty() {
            vec![self.server]
        } else {
            self.servers.clone()
        }
    }

    /// The servers, as shown in reports: `127.0.0.1:7001,127.0.0.1:7002`.
    pub fn targets_text(&self) -> String {
        self.targets()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Default for ClientSection {
    fn default() -> Self {
        Self {
            server: SocketAddr::from(([127, 0, 0, 1], 7000)),
            servers: Vec::new(),
            bots: 100,
            duration_secs: 30,
            ramp_up_per_sec: 500,
            connect_concurrency: 256,
            tick_ms: 10,
            max_packet_size: 65535,
            drain_secs: 5,
            login_timeout_secs: 10,
            transport: "tcp".into(),
            ws_path: "/ws".into(),
            tls: false,
            tls_ca: PathBuf::new(),
            tls_insecure: false,
            tls_name: String::new(),
        }
    }
}

impl ClientSection {
    /// [`duration_secs`](Self::duration_secs) as a duration.
    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.duration_secs)
    }

    /// [`tick_ms`](Self::tick_ms) as a duration.
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms)
    }

    /// [`drain_secs`](Self::drain_secs) as a duration.
    pub fn drain(&self) -> Duration {
        Duration::from_secs(self.drain_secs)
    }

    /// [`login_timeout_secs`](Self::login_timeout_secs) as a duration.
    pub fn login_timeout(&self) -> Duration {
        Duration::from_secs(self.login_timeout_secs)
    }
}

/// `[bots]`: what each bot does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BotsSection {
    /// Bots sharing one room, 1..=100_000; every chat line fans out to this many members.
    /// Default 20: a lively room, well under the server's default `room_capacity` of 100.
    pub bots_per_room: usize,
    /// Milliseconds between two chat lines of one bot, 1..=3_600_000. Default 250: 4 lines
    /// per second per bot, 80 deliveries per second per bot with 20 bots to a room.
    pub chat_interval_ms: u64,
    /// Bytes of chat content per line, 1..=60000, and less than `client.max_packet_size`.
    /// Default 64: a typical chat line, under the server's default `max_chat_len` of 512.
    pub message_size: usize,
    /// Start of every bot's login name (the bot's number follows), 1..=20 chars of
    /// `[A-Za-z0-9_.-]`. Default `"bot-"`: easy to tell bots apart from people in logs.
    pub name_prefix: String,
    /// Start of every room name (the room's number follows), 1..=40 chars of `[A-Za-z0-9_.-]`.
    /// Default `"room-"`.
    pub room_prefix: String,
    /// Milliseconds between two pings of one bot, 0..=3_600_000; 0 disables. Default 5000:
    /// keeps a quiet bot under the server's default idle timeout of 60 s and samples
    /// round-trip time on its own.
    pub ping_interval_ms: u64,
    /// Arena scenario: milliseconds between two changes of direction of one bot's random
    /// walk, 10..=60_000. Default 500: every bot turns twice a second.
    pub move_interval_ms: u64,
    /// How each bot logs in: `"guest"`, `"register"`, `"login"` or `"resume"` (see
    /// [`AuthMode`]). Default `"guest"`: needs no accounts, and usernames unique per run keep
    /// two runs against one server apart.
    pub auth: String,
    /// Password of every bot's account, 8..=128 bytes (the server's rule), used by `register`
    /// and `login`. Default `"bot-password"`: bots are test accounts, not people.
    pub password: String,
    /// File of `username token` lines: a `register` run writes (merges) the tokens it was
    /// issued into it, a `resume` run logs in with them. Relative paths are from the working
    /// directory. Default `"bot-tokens.txt"`.
    pub tokens_file: PathBuf,
    /// Whether bots log in asking for resumable sessions (the protocol page's "Resuming a
    /// session"): a bot whose connection drops takes its session back, gets every line it
    /// missed, and sends again the requests the server had not processed. Default false.
    pub resumable: bool,
    /// Connections each bot drops per minute on purpose, at random, 0..=600 (fractions
    /// allowed); 0 turns it off. A drop closes the socket, or stalls it (the bot stops reading
    /// and writing it, as a dead link does) and comes back on a new connection 2 s later, as
    /// a client that misses its pong does: the bots resume, and the report counts the resumes, their
    /// latency, and any line lost or delivered twice. Implies `resumable`. Default 0.
    pub chaos_per_min: f64,
}

/// How bots log in: the value of `bots.auth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthMode {
    /// `C2S_Login` with an empty password, under a username unique to the run.
    Guest,
    /// `C2S_Register` of the account `{name_prefix}{n:05}`; the tokens go to the tokens file.
    Register,
    /// `C2S_Login` with `bots.password` to the accounts a `register` run created.
    Login,
    /// `C2S_Resume` with the tokens a `register` run wrote to the tokens file.
    Resume,
}

impl AuthMode {
    /// Every mode, in the order the docs list them.
    pub const ALL: [AuthMode; 4] = [
        AuthMode::Guest,
        AuthMode::Register,
        AuthMode::Login,
        AuthMode::Resume,
    ];

    /// The mode's name in the config file and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Guest => "guest",
            AuthMode::Register => "register",
            AuthMode::Login => "login",
            AuthMode::Resume => "resume",
        }
    }

    /// Whether bots log in to accounts (every mode but [`Guest`](AuthMode::Guest)).
    pub fn uses_accounts(self) -> bool {
        self != AuthMode::Guest
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuthMode {
    type Err = String;

    /// A mode by its name; the error says which names there are.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuthMode::ALL
            .into_iter()
            .find(|mode| mode.as_str() == s)
            .ok_or_else(|| format!("unknown auth mode {s:?} (expected one of {})", auth_modes()))
    }
}

/// `guest, register, login, resume`.
fn auth_modes() -> String {
    AuthMode::ALL.map(AuthMode::as_str).join(", ")
}

/// Passwords the server accepts are 8..=128 bytes (PROTOCOL.md, session rule 5).
const PASSWORD_BYTES: std::ops::RangeInclusive<usize> = 8..=128;

impl Default for BotsSection {
    fn default() -> Self {
        Self {
            bots_per_room: 20,
            chat_interval_ms: 250,
            message_size: 64,
            name_prefix: "bot-".to_owned(),
            room_prefix: "room-".to_owned(),
            ping_interval_ms: 5000,
            move_interval_ms: 500,
            auth: AuthMode::Guest.as_str().to_owned(),
            password: "bot-password".to_owned(),
            tokens_file: PathBuf::from("bot-tokens.txt"),
            resumable: false,
            chaos_per_min: 0.0,
        }
    }
}

impl BotsSection {
    /// [`chat_interval_ms`](Self::chat_interval_ms) as a duration.
    pub fn chat_interval(&self) -> Duration {
        Duration::from_millis(self.chat_interval_ms)
    }

    /// [`ping_interval_ms`](Self::ping_interval_ms) as a duration; `None` when disabled.
    pub fn ping_interval(&self) -> Option<Duration> {
        (self.ping_interval_ms > 0).then(|| Duration::from_millis(self.ping_interval_ms))
    }

    /// [`auth`](Self::auth) as a mode; `Err` only if the config was not validated.
    pub fn auth_mode(&self) -> Result<AuthMode, String> {
        self.auth.parse()
    }
}

impl load::ConfigFile for ClientConfig {
    const EXAMPLE: &'static str = CLIENT_EXAMPLE;
    const EMBEDDED_ORIGIN: &'static str = EMBEDDED_ORIGIN;
    fn check(&self, origin: &str) -> Result<(), ConfigError> {
        self.validate(origin)
    }
}

impl ClientConfig {
    /// Loads the file at `path`, or the embedded defaults when `path` is `None`; keys missing
    /// from the file take their defaults. The result is validated.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        load::load(path)
    }

    /// Parses and validates `text`; `origin` names it in error messages.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        load::from_toml_str(text, origin)
    }

    /// Checks every range and cross-field rule; the first failure is returned.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let rules = Rules::new(origin);

        let client = &self.client;
        rules.range("client.bots", client.bots, 1..=100_000)?;
        rules.range("client.duration_secs", client.duration_secs, 1..=86400)?;
        rules.range(
            "client.ramp_up_per_sec",
            client.ramp_up_per_sec,
            1..=1_000_000,
        )?;
        rules.range(
            "client.connect_concurrency",
            client.connect_concurrency,
            1..=65536,
        )?;
        rules.range("client.tick_ms", client.tick_ms, 1..=1000)?;
        rules.range("client.max_packet_size", client.max_packet_size, 64..=65535)?;
        rules.range("client.drain_secs", client.drain_secs, 0..=600)?;
        rules.range(
            "client.login_timeout_secs",
            client.login_timeout_secs,
            1..=600,
        )?;
        if !matches!(client.transport.as_str(), "tcp" | "ws") {
            return Err(rules.fail(
                "client.transport",
                "\"tcp\" or \"ws\"",
                quoted(&client.transport),
            ));
        }
        if !client.ws_path.starts_with('/') || client.ws_path.contains([' ', '\r', '\n']) {
            return Err(rules.fail(
                "client.ws_path",
                "a path starting with /",
                quoted(&client.ws_path),
            ));
        }
        if client.tls_insecure && !client.tls_ca.as_os_str().is_empty() {
            return Err(rules.fail(
                "client.tls_insecure",
                "false when client.tls_ca is set (trust one or the other)",
                "true".to_string(),
            ));
        }
        let name_char = |c: char| c.is_ascii_alphanumeric() || ".-:[]".contains(c);
        if !client.tls_name.chars().all(name_char) {
            return Err(rules.fail(
                "client.tls_name",
                "empty, a DNS name or an IP address",
                quoted(&client.tls_name),
            ));
        }

        let bots = &self.bots;
        rules.range("bots.bots_per_room", bots.bots_per_room, 1..=100_000)?;
        rules.range(
            "bots.chat_interval_ms",
            bots.chat_interval_ms,
            1..=3_600_000,
        )?;
        rules.range("bots.message_size", bots.message_size, 1..=60000)?;
        rules.less_than(
            "bots.message_size",
            bots.message_size,
            "client.max_packet_size",
            client.max_packet_size,
        )?;
        rules.name_prefix("bots.name_prefix", &bots.name_prefix, 20)?;
        rules.name_prefix("bots.room_prefix", &bots.room_prefix, 40)?;
        rules.range(
            "bots.ping_interval_ms",
            bots.ping_interval_ms,
            0..=3_600_000,
        )?;
        rules.range("bots.move_interval_ms", bots.move_interval_ms, 10..=60_000)?;
        rules.range("bots.chaos_per_min", bots.chaos_per_min, 0.0..=600.0)?;
        if bots.auth_mode().is_err() {
            return Err(rules.fail(
                "bots.auth",
                format!("one of {}", auth_modes()),
                quoted(&bots.auth),
            ));
        }
        if !PASSWORD_BYTES.contains(&bots.password.len()) {
            // The length, not the password: config errors end up in logs.
            return Err(rules.fail(
                "bots.password",
                format!(
                    "{}..={} bytes",
                    PASSWORD_BYTES.start(),
                    PASSWORD_BYTES.end()
                ),
                format!("{} bytes", bots.password.len()),
            ));
        }
        if bots.tokens_file.as_os_str().is_empty() {
            return Err(rules.fail("bots.tokens_file", "a file path", quoted("")));
        }

        self.log.validate(&rules)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "dummy-client.toml";

    fn error(text: &str) -> String {
        ClientConfig::from_toml_str(text, ORIGIN)
            .expect_err("config should be rejected")
            .to_string()
    }

    #[test]
    fn transports_and_tls_trust_are_checked_naming_the_key() {
        assert_eq!(ClientConfig::default().client.transport, "tcp");
        assert_eq!(
            error("[client]\ntransport = \"quic\"\n"),
            r#"invalid config "dummy-client.toml": client.transport must be "tcp" or "ws" (got "quic")"#
        );
        assert_eq!(
            error("[client]\nws_path = \"ws\"\n"),
            r#"invalid config "dummy-client.toml": client.ws_path must be a path starting with / (got "ws")"#
        );
        assert_eq!(
            error("[client]\ntls = true\ntls_insecure = true\ntls_ca = \"ca.pem\"\n"),
            r#"invalid config "dummy-client.toml": client.tls_insecure must be false when client.tls_ca is set (trust one or the other) (got true)"#
        );
        assert_eq!(
            error("[client]\ntls_name = \"a b\"\n"),
            r#"invalid config "dummy-client.toml": client.tls_name must be empty, a DNS name or an IP address (got "a b")"#
        );
    }

    #[test]
    fn example_file_is_exactly_the_defaults_with_every_key_set() {
        load::assert_example_is_the_defaults::<ClientConfig>();
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        assert_eq!(
            ClientConfig::from_toml_str("", ORIGIN).unwrap(),
            ClientConfig::default()
        );
    }

    #[test]
    fn partial_file_keeps_the_other_defaults() {
        let parsed = ClientConfig::from_toml_str(
            "[client]\nbots = 5000\n[bots]\nping_interval_ms = 0\n",
            ORIGIN,
        )
        .unwrap();
        let mut expected = ClientConfig::default();
        expected.client.bots = 5000;
        expected.bots.ping_interval_ms = 0;
        assert_eq!(parsed, expected);
        assert_eq!(parsed.bots.ping_interval(), None);
    }

    #[test]
    fn unknown_key_is_rejected_with_its_dotted_path() {
        assert_eq!(
            error("[bots]\nchat_interval = 5\n"),
            r#"invalid config "dummy-client.toml": unknown key "bots.chat_interval" (did you mean "bots.chat_interval_ms"?)"#
        );
        // Nothing near: no guess.
        assert_eq!(
            error("[bots]\nzzz = 5\n"),
            r#"invalid config "dummy-client.toml": unknown key "bots.zzz""#
        );
    }

    #[test]
    fn out_of_range_value_names_key_rule_and_value() {
        assert_eq!(
            error("[client]\nbots = 0\n"),
            r#"invalid config "dummy-client.toml": client.bots must be 1..=100000 (got 0)"#
        );
    }

    #[test]
    fn bad_server_address_names_the_key_and_the_value() {
        assert_eq!(
            error("[client]\nserver = \"localhost\"\n"),
            r#"invalid config "dummy-client.toml": client.server: must be ADDR:PORT or HOST:PORT (got "localhost")"#
        );
    }

    #[test]
    fn message_larger_than_a_packet_is_rejected_naming_both_keys() {
        assert_eq!(
            error("[client]\nmax_packet_size = 1024\n[bots]\nmessage_size = 2000\n"),
            r#"invalid config "dummy-client.toml": bots.message_size must be less than client.max_packet_size (got 2000 >= 1024)"#
        );
    }

    #[test]
    fn name_prefix_with_a_space_is_rejected() {
        assert_eq!(
            error("[bots]\nname_prefix = \"my bot\"\n"),
            r#"invalid config "dummy-client.toml": bots.name_prefix must be 1..=20 chars of [A-Za-z0-9_.-] (got "my bot")"#
        );
    }

    #[test]
    fn every_auth_mode_is_accepted_by_name() {
        for mode in AuthMode::ALL {
            let text = format!("[bots]\nauth = \"{mode}\"\n");
            let parsed = ClientConfig::from_toml_str(&text, ORIGIN).unwrap();
            assert_eq!(parsed.bots.auth_mode(), Ok(mode));
        }
        assert_eq!(
            ClientConfig::default().bots.auth_mode(),
            Ok(AuthMode::Guest)
        );
    }

    #[test]
    fn unknown_auth_mode_is_rejected_listing_the_modes() {
        assert_eq!(
            error("[bots]\nauth = \"Register\"\n"),
            r#"invalid config "dummy-client.toml": bots.auth must be one of guest, register, login, resume (got "Register")"#
        );
    }

    #[test]
    fn a_password_the_server_would_refuse_is_rejected_without_showing_it() {
        assert_eq!(
            error("[bots]\npassword = \"short\"\n"),
            r#"invalid config "dummy-client.toml": bots.password must be 8..=128 bytes (got 5 bytes)"#
        );
        let long = format!("[bots]\npassword = \"{}\"\n", "x".repeat(129));
        assert!(error(&long).contains("(got 129 bytes)"));
        let longest = format!("[bots]\npassword = \"{}\"\n", "x".repeat(128));
        assert!(ClientConfig::from_toml_str(&longest, ORIGIN).is_ok());
    }

    #[test]
    fn an_empty_tokens_file_path_is_rejected() {
        assert_eq!(
            error("[bots]\ntokens_file = \"\"\n"),
            r#"invalid config "dummy-client.toml": bots.tokens_file must be a file path (got "")"#
        );
    }

    #[test]
    fn bad_log_level_lists_the_accepted_levels() {
        assert_eq!(
            error("[log]\nlevel = \"loud\"\n"),
            r#"invalid config "dummy-client.toml": log.level must be one of trace, debug, info, warn, error, critical, off (got "loud")"#
        );
    }
}
