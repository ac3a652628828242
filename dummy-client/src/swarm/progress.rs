//! The progress line, once a second, to stderr, and the sample of the second it shows.

use super::*;

impl Swarm {
    /// The running totals the series samples.
    pub(super) fn totals(&self) -> Totals {
        let counts = self.ledger.counts();
        Totals {
            bots: self.counters.in_room,
            sent: counts.sent,
            received: counts.received,
            errors: self.counters.error_total,
            disconnects: self.counters.disconnects,
            failovers: self.counters.failovers,
        }
    }

    pub(super) fn print_progress(&mut self, now: Instant) {
        let second = self.series.close(now, self.totals());
        let counts = self.ledger.counts();
        let elapsed = now.duration_since(self.started_at).as_secs();
        let p99 = if second.received == 0 {
            "-".to_owned()
        } else {
            report::fmt_us((second.latency_p99_ms * 1000.0) as u64)
        };
        let mut line = format!(
            "[{elapsed:>4}s] bots in rooms {}/{} | last second: chat lines sent {}, deliveries received {}, latency p99 {p99} | so far: lost {}, errors {}, disconnects {}",
            self.counters.in_room,
            self.bots.len(),
            second.sent,
            second.received,
            counts.lost,
            self.counters.error_total,
            self.counters.disconnects
        );
        if self.servers.len() > 1 {
            let c = &self.counters;
            line += &format!(
                ", failovers {}, missed in failover {}",
                c.failovers, counts.missed_in_failover
            );
            if c.failing_over > 0 {
                line += &format!(" ({} bots failing over)", c.failing_over);
            }
            if c.never_recovered > 0 {
                line += &format!(", never recovered {}", c.never_recovered);
            }
        }
        // A closed stderr is no reason to stop the run.
        let _ = writeln!(std::io::stderr().lock(), "{line}");
        self.next_progress = now + Duration::from_secs(1);
    }
}
