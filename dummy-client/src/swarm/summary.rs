//! The counters of a finished run, as its [`Report`].

use super::*;
use crate::record::{self, RunRecord};

impl Swarm {
    /// Bots still on their way in when the run ended are failures, and failovers still under
    /// way never recovered: this is where they are counted, once, before the report.
    fn count_unfinished(&mut self) {
        for index in 0..self.bots.len() {
            if self.is_resuming(index as u32) {
                self.counters.resuming -= 1;
                self.counters.resume_failures += 1;
                *self
                    .counters
                    .resume_errors
                    .entry("run ended first".to_owned())
                    .or_default() += 1;
                continue;
            }
            if self.bots[index].failover.take().is_some() {
                self.counters.failing_over -= 1;
                self.counters.never_recovered += 1;
                continue;
            }
            match self.bots[index].phase {
                Phase::Connecting => {
                    self.counters.connect_failures += 1;
                    *self
                        .counters
                        .connect_errors
                        .entry("not connected when the run ended".to_owned())
                        .or_default() += 1;
                }
                Phase::LoggingIn | Phase::Joining => self.count_login_failure("run ended first"),
                _ => {}
            }
        }
    }

    pub(super) fn report(&mut self) -> Report {
        self.count_unfinished();
        let totals = self.totals();
        self.series.finish(Instant::now(), totals);
        let counts = self.ledger.counts();
        let c = &self.counters;
        let duration_secs = match (self.clock_start, self.stopped_at) {
            (Some(start), Some(stop)) => stop.saturating_duration_since(start).as_secs_f64(),
            _ => 0.0,
        };
        let per_sec = |n: u64, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        if self.slow_ticks > 0 {
            spdlog::info!(
                "swarm: {} of {} ticks ran over {} ms (longest {:?})",
                self.slow_ticks,
                self.ticks,
                self.config.client.tick_ms,
                self.tick_max
            );
        }
        Report {
            server: self.config.client.targets_text(),
            run_id: self.names.run_id().to_owned(),
            auth: self.auth.to_string(),
            bots: self.bots.len() as u64,
            started: c.started,
            connected: c.connected,
            connect_failures: c.connect_failures,
            connect_errors: c.connect_errors.clone(),
            logged_in: c.logged_in,
            joined: c.joined,
            login_failures: c.login_failures,
            login_errors: c.login_errors.clone(),
            disconnects: c.disconnects,
            disconnect_reasons: c.disconnect_reasons.clone(),
            failovers: c.failovers,
            failover_reasons: c.failover_reasons.clone(),
            never_recovered: c.never_recovered,
            failover_connects: c.failover_connects,
            recovery_ms: LoginSummary::of(&self.recovery),
            drops: c.drops.clone(),
            resumes: c.resumes,
            resume_failures: c.resume_failures,
            resume_errors: c.resume_errors.clone(),
            replayed_frames: c.replayed,
            resent_requests: c.resent,
            resume_ms: LoginSummary::of(&self.resume_latency),
            outage_ms: LoginSummary::of(&self.outage),
            not_resumable: c.not_resumable,
            duplicated: counts.duplicated,
            sent: counts.sent,
            received: counts.received,
            expected: counts.expected,
            lost: counts.lost,
            missed_in_failover: counts.missed_in_failover,
            unexpected: counts.unexpected,
            rejected: counts.rejected,
            history_received: c.history_received,
            missed_notices: c.missed_notices,
            pings_sent: c.pings_sent,
            pongs_received: c.pongs_received,
            errors: c.errors.clone(),
            bad_frames: c.bad_frames,
            cancelled: self.cancelled,
            duration_secs,
            drain_secs: self.drain_secs,
            messages_per_sec: per_sec(counts.sent, duration_secs),
            deliveries_per_sec: per_sec(counts.received, duration_secs + self.drain_secs),
            latency_us: LatencySummary::of(&self.latency),
            ping_rtt_us: LatencySummary::of(&self.rtt),
            login_ms: LoginSummary::of(&self.login),
            auth_ms: LoginSummary::of(&self.auth_time),
            tokens: None,
            run: RunRecord {
                settings: self.settings.clone(),
                started_at_unix_ms: self.clock.unix_us(self.started_at) / 1000,
                series: self.series.seconds().to_vec(),
                latency_distribution: record::distribution(&self.latency),
            },
        }
    }
}
