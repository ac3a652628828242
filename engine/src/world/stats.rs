//! The counters the server keeps, and the stats line it logs every [`STATS_EVERY`].

use std::time::{Duration, Instant};

use super::{Game, World};

/// Counters the server reports.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Frames received and dispatched.
    pub messages_in: u64,
    /// Chat lines and whispers accepted.
    pub chat_in: u64,
    /// Requests answered with S2C_Error.
    pub errors_sent: u64,
    /// Ticks run.
    pub ticks: u64,
    /// Ticks that took longer than the tick length.
    pub ticks_over_budget: u64,
    /// Longest tick since the last stats line, in microseconds.
    pub max_tick_us: u64,
    /// Sum of tick durations since the last stats line, in microseconds.
    pub tick_us_sum: u64,
    /// Ticks since the last stats line.
    pub ticks_in_window: u64,
    /// `messages_in` at the last stats line.
    pub window_messages_in: u64,
    /// Frames queued, all sessions together, at the last stats line.
    pub window_frames_out: u64,
    /// Connections refused because the server was full.
    pub refused_server_full: u64,
    /// Connections refused because their address held too many.
    pub refused_per_address: u64,
    /// Sessions closed for not logging in by the deadline.
    pub login_timeouts: u64,
    /// Connections taken (sessions started).
    pub connects: u64,
    /// `connects` at the last stats line.
    pub window_connects: u64,
    /// Sessions ended since the start, by [`net::DisconnectReason::label`].
    pub disconnects: std::collections::BTreeMap<&'static str, u64>,
    /// Sessions ended since the last stats line, by [`net::DisconnectReason::label`].
    pub disconnects_in_window: std::collections::BTreeMap<&'static str, u64>,
}

/// How often the server logs its counters.
pub const STATS_EVERY: Duration = Duration::from_secs(10);

/// Schedules the periodic stats line.
pub fn schedule_stats<G: Game>(world: &mut World<G>, now: Instant) {
    world.timers.repeat(now, STATS_EVERY, log_stats);
}

/// ` (idle_timeout 3, peer_closed 12)`, or nothing when there were none.
fn by_reason(counts: &std::collections::BTreeMap<&'static str, u64>) -> String {
    if counts.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = counts.iter().map(|(r, n)| format!("{r} {n}")).collect();
    format!(" ({})", parts.join(", "))
}

fn log_stats<G: Game>(world: &mut World<G>, _: Instant) {
    let secs = STATS_EVERY.as_secs_f64();
    let frames_out = world.out.frames_queued;
    let game = world.modules_stats();
    let stats = &mut world.stats;
    let ticks = stats.ticks_in_window.max(1);
    spdlog::info!(
        "stats: {} sessions, {} logged in{game} | {} connects, {} disconnects{} | in {:.0} msg/s, out {:.0} frames/s | tick avg {:.2} ms, max {:.2} ms | {} ticks over budget in all | refused {} (server full) and {} (per address), {} login timeouts in all",
        world.clients.len(),
        world.users.len(),
        stats.connects - stats.window_connects,
        stats.disconnects_in_window.values().sum::<u64>(),
        by_reason(&stats.disconnects_in_window),
        (stats.messages_in - stats.window_messages_in) as f64 / secs,
        (frames_out - stats.window_frames_out) as f64 / secs,
        stats.tick_us_sum as f64 / ticks as f64 / 1000.0,
        stats.max_tick_us as f64 / 1000.0,
        stats.ticks_over_budget,
        stats.refused_server_full,
        stats.refused_per_address,
        stats.login_timeouts
    );
    stats.window_messages_in = stats.messages_in;
    stats.window_connects = stats.connects;
    stats.disconnects_in_window.clear();
    stats.window_frames_out = frames_out;
    stats.tick_us_sum = 0;
    stats.max_tick_us = 0;
    stats.ticks_in_window = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disconnects_by_reason_read_as_one_short_list() {
        let mut counts = std::collections::BTreeMap::new();
        assert_eq!(by_reason(&counts), "");
        counts.insert("peer_closed", 12);
        counts.insert("idle_timeout", 3);
        assert_eq!(by_reason(&counts), " (idle_timeout 3, peer_closed 12)");
    }
}
