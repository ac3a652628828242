//! Load tool of the world server: thousands of chat bots driven by one tick loop, counting
//! every line they send and receive.
//!
//! Each bot connects (at `ramp_up_per_sec`, at most `connect_concurrency` connects at once),
//! logs in as `bots.auth` says (below), joins room `{room_prefix}{run_id}-{index /
//! bots_per_room}`, and once every bot of its room has confirmed its join, sends a chat line
//! every `chat_interval_ms` (from a random phase) and a ping every `ping_interval_ms`. The run
//! id, random per run, keeps two runs against one server from sharing rooms.
//!
//! The client knows every room's members, so every line is expected at each of them, the
//! sender included; see [`ledger`] for how deliveries are matched, and what *lost* and
//! *unexpected* mean. Latency is measured from the line's `sent_at_us` to the moment the
//! receiver's read task decoded the frame.
//!
//! # Logging in
//!
//! `bots.auth` (or `--auth`) picks one of four modes ([`AuthMode`]):
//!
//! | mode | request | username |
//! |---|---|---|
//! | `guest` (default) | `C2S_Login`, empty password | `{name_prefix}{index:05}.{run_id}`, index from 0 |
//! | `register` | `C2S_Register` with `bots.password` | `{name_prefix}{n:05}`, n from 1 |
//! | `login` | `C2S_Login` with `bots.password` | `{name_prefix}{n:05}`, n from 1 |
//! | `resume` | `C2S_Resume` with the token from `bots.tokens_file` | `{name_prefix}{n:05}`, n from 1 |
//!
//! Guest names are unique per run, so two guest runs never take over each other's logins.
//! Account names (`bot-00001`, `bot-00002`, ...) are the same in every run, so the accounts
//! a `register` run creates are the ones a later `login` or `resume` run with as many bots
//! (or fewer) uses. A `register` run writes the tokens it was issued to `bots.tokens_file`
//! at its end, one `username token` line per bot, merged with the file's lines for other
//! usernames and written atomically ([`tokens`]); a `resume` run reads that file at start
//! (a missing or bad file is a [`RunError`]), and a bot without a token fails its login.
//! Register and login are slow on purpose on the server (password hashing on one worker):
//! for many bots, lower `ramp_up_per_sec` or raise `login_timeout_secs`.
//!
//! A refused login (`USERNAME_TAKEN` when the accounts exist already, `INVALID_CREDENTIALS`,
//! `INVALID_TOKEN`, `RATE_LIMITED`, ...) is a login failure, counted by code in
//! [`Report::login_errors`] (and with every other `S2C_Error` in [`Report::errors`]); the run
//! passes only when every bot logged in and joined. [`Report::auth_ms`] times connect to
//! `S2C_AuthResult`, [`Report::login_ms`] connect to `S2C_RoomJoined`.
//!
//! # Time line of a run
//!
//! The run's clock starts when the **first bot connects**. Bots chat until `duration_secs`
//! after that (ramp-up and logins included), or until the `shutdown` token is cancelled.
//! Then sending stops and the client keeps receiving until nothing is in flight or
//! `drain_secs` have passed; whatever is still in flight then is lost. Finally every session
//! is closed gracefully, a `register` run saves its tokens, and [`run`] returns the
//! [`Report`]. A bot that is not logged in and in its room `login_timeout_secs` after its TCP
//! connect completed is a login failure (its session is aborted). A failover still under way
//! at the end of sending completes during the drain, or never recovered.
//!
//! # Several servers: failover
//!
//! With `client.servers` (`--server A,B,C`), bot `i` connects to the `i mod n`-th node. When
//! a bot's connection ends (closed or reset, as when its node is killed), it logs in again on
//! the next node of the list (a node that refuses the connection is passed over for the one
//! after), with its token when it has one, and rejoins its room: a *failover*, timed from the
//! end of the connection to the room joined again ([`Report::recovery_ms`]). Connects after
//! the first back off from 100 ms, doubling up to 1 s; a bot not back within
//! `client.login_timeout_secs` gives up and *never recovered* ([`Report::never_recovered`]),
//! which fails the run. What a bot could not receive while it was away (lines in flight to or
//! from it when its connection ended, lines said while it was away or before its room mates
//! saw it back) is *missed in failover* ([`Report::missed_in_failover`]), not lost; see
//! [`ledger`]. With one server, a disconnect stays a disconnect. The details are in
//! [`swarm`].
//!
//! While it runs, one progress line a second goes to stderr:
//!
//! ```text
//! [  12s] bots in rooms 1000/1000 | last second: chat lines sent 4000, deliveries received 80000, latency p99 3.1ms | so far: lost 0, errors 0, disconnects 0
//! ```
//!
//! # Layout
//!
//! - [`arena_swarm`]: the arena scenario (`--scenario arena`): bots walking in the arena
//!   game, every bot's view checked against every bot's true position.
//! - [`swarm`]: the tick loop that owns every bot: connects, logins, timers, one batch of
//!   frames per session per tick.
//! - [`ledger`]: delivery accounting (sent, expected, received, lost, missed in failover,
//!   unexpected), pure.
//! - [`report`]: the [`Report`], its verdict [`Report::passed`] and its text form.
//! - [`latency`]: latency histograms and their percentiles, for every report.
//! - [`record`]: the settings, the per-second series and the latency distribution of a run,
//!   and the versioned JSON document (`--json`); [`html`]: the HTML page (`--html`).
//! - [`names`]: usernames (per run, or per account) and room names; chat content and its
//!   parsable prefix.
//! - [`ramp`]: how every scenario starts its bots: one connector, one ramp-up.
//! - [`tokens`]: the tokens file: parse, merge, atomic write.
//! - [`transport`]: TCP, TLS, WebSocket: how each bot's session is set up.
//! - [`wire`]: frames out of a shared arena, and `S2C_Chat` read in place without allocating.
//! - `main.rs`: the `dummy-client` binary, a thin CLI over [`run`].
#![warn(missing_docs)]

pub mod arena_swarm;
pub mod html;
pub mod latency;
pub mod ledger;
pub mod names;
pub mod ramp;
pub mod record;
pub mod report;
pub mod swarm;
pub mod tokens;
pub mod transport;
pub mod wire;

pub use config::client::AuthMode;
pub use config::ClientConfig;
pub use report::{LatencySummary, LoginSummary, Report, TokensSaved};
pub use tokens::{Tokens, TokensError};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration would make names or messages the server refuses.
    #[error("invalid config: {key} must be {rule} (got {value})")]
    Config {
        /// The config key at fault.
        key: &'static str,
        /// Its value.
        value: String,
        /// The rule it breaks.
        rule: String,
    },
    /// A `resume` run's tokens file is missing or bad, or a `register` run's existing tokens
    /// file is bad (checked before any account is created, so that its tokens can be saved).
    #[error(transparent)]
    Tokens(#[from] TokensError),
}

/// Runs one swarm as `config` describes, until its duration is over or `shutdown` is
/// cancelled, and returns what it counted.
///
/// The run does not fail because the server misbehaves or is absent: that is what the
/// [`Report`] is for ([`Report::passed`]). An error means the run could not start. A
/// `register` run that cannot save its tokens at the end says so in
/// [`Report::tokens`] (and does not pass).
pub async fn run(config: ClientConfig, shutdown: CancellationToken) -> Result<Report, RunError> {
    let run_id = names::new_run_id();
    let tokens_file = config.bots.tokens_file.clone();
    let (session_tx, session_rx) = mpsc::channel(swarm::session_event_queue(config.client.bots));
    let mut swarm = swarm::Swarm::new(config, &run_id, session_tx, TaskTracker::new())?;
    let auth = swarm.auth();
    match auth {
        AuthMode::Resume => {
            let tokens = Tokens::read(&tokens_file)?;
            let found = swarm.set_tokens(&tokens);
            spdlog::info!(
                "swarm: {found} of {} bots have a token in {}",
                swarm.bots(),
                tokens_file.display()
            );
        }
        AuthMode::Register => {
            // Fail now rather than after creating accounts whose tokens could not be saved.
            Tokens::read_or_empty(&tokens_file)?;
        }
        AuthMode::Guest | AuthMode::Login => {}
    }
    let (mut report, issued) = swarm.run(session_rx, shutdown).await;
    if auth == AuthMode::Register {
        report.tokens = Some(save_tokens(&tokens_file, &issued));
    }
    Ok(report)
}

/// Saves the tokens of a register run, and says how it went.
fn save_tokens(path: &std::path::Path, issued: &Tokens) -> TokensSaved {
    let path_text = path.display().to_string();
    if issued.is_empty() {
        // Nothing to add: leave the file as it is (or absent).
        return TokensSaved {
            path: path_text,
            saved: 0,
            error: None,
        };
    }
    match tokens::save(path, issued) {
        Ok(saved) => {
            spdlog::info!("swarm: {saved} tokens saved to {path_text}");
            TokensSaved {
                path: path_text,
                saved: saved as u64,
                error: None,
            }
        }
        Err(error) => {
            spdlog::error!("swarm: {error}");
            TokensSaved {
                path: path_text,
                saved: 0,
                error: Some(error.to_string()),
            }
        }
    }
}
