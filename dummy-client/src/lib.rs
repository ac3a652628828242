//! Load tool of the world server: thousands of chat bots driven by one tick loop, counting
//! every line they send and receive.
//!
//! Each bot connects (at `ramp_up_per_sec`, at most `connect_concurrency` connects at once),
//! logs in as a guest named `{name_prefix}{index:05}.{run_id}`, joins room
//! `{room_prefix}{run_id}-{index / bots_per_room}`, and once every bot of its room has
//! confirmed its join, sends a chat line every `chat_interval_ms` (from a random phase) and a
//! ping every `ping_interval_ms`. The run id, random per run, keeps two runs against one
//! server from taking over each other's logins and rooms.
//!
//! The client knows every room's members, so every line is expected at each of them, the
//! sender included; see [`ledger`] for how deliveries are matched, and what *lost* and
//! *unexpected* mean. Latency is measured from the line's `sent_at_us` to the moment the
//! receiver's read task decoded the frame.
//!
//! # Time line of a run
//!
//! The run's clock starts when the **first bot connects**. Bots chat until `duration_secs`
//! after that (ramp-up and logins included), or until the `shutdown` token is cancelled.
//! Then sending stops and the client keeps receiving until nothing is in flight or
//! `drain_secs` have passed; whatever is still in flight then is lost. Finally every session
//! is closed gracefully and [`run`] returns the [`Report`]. A bot that is not logged in and in
//! its room `login_timeout_secs` after its TCP connect completed is a login failure (its
//! session is aborted).
//!
//! While it runs, one progress line a second goes to stderr:
//!
//! ```text
//! [  12s] bots 1000/1000  sent 48000 (4000/s)  recv 960000 (80000/s)  p99 3.1ms  lost 0  errors 0  disconnects 0
//! ```
//!
//! # Layout
//!
//! - [`swarm`]: the tick loop that owns every bot: connects, logins, timers, one batch of
//!   frames per session per tick.
//! - [`ledger`]: delivery accounting (sent, expected, received, lost, unexpected), pure.
//! - [`report`]: the [`Report`], its verdict [`Report::passed`], JSON and text forms.
//! - [`names`]: usernames and room names unique per run; chat content and its parsable prefix.
//! - [`wire`]: frames out of a shared arena, and `S2C_Chat` read in place without allocating.
//! - `main.rs`: the `dummy-client` binary, a thin CLI over [`run`].
#![warn(missing_docs)]

pub mod ledger;
pub mod names;
pub mod report;
pub mod swarm;
pub mod wire;

pub use config::ClientConfig;
pub use report::{LatencySummary, LoginSummary, Report};

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
}

/// Runs one swarm as `config` describes, until its duration is over or `shutdown` is
/// cancelled, and returns what it counted.
///
/// The run does not fail because the server misbehaves or is absent: that is what the
/// [`Report`] is for ([`Report::passed`]). An error means the run could not start.
pub async fn run(config: ClientConfig, shutdown: CancellationToken) -> Result<Report, RunError> {
    let run_id = names::new_run_id();
    let (session_tx, session_rx) = mpsc::channel(swarm::SESSION_EVENT_QUEUE);
    let swarm = swarm::Swarm::new(config, &run_id, session_tx, TaskTracker::new())?;
    Ok(swarm.run(session_rx, shutdown).await)
}
