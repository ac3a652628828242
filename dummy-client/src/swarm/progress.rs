//! The progress line, once a second, to stderr.

use super::*;

impl Swarm {
    pub(super) fn print_progress(&mut self, now: Instant) {
        let counts = self.ledger.counts();
        let elapsed = now.duration_since(self.started_at).as_secs();
        let since_last = 1.0 + now.duration_since(self.next_progress).as_secs_f64();
        let rate = |now: u64, before: u64| (now - before) as f64 / since_last;
        let p99 = if self.latency_interval.is_empty() {
            "-".to_owned()
        } else {
            report::fmt_us(self.latency_interval.value_at_quantile(0.99))
        };
        let line = format!(
            "[{elapsed:>4}s] bots {}/{}  sent {} ({:.0}/s)  recv {} ({:.0}/s)  p99 {p99}  lost {}  errors {}  disconnects {}",
            self.counters.in_room,
            self.bots.len(),
            counts.sent,
            rate(counts.sent, self.progress.sent),
            counts.received,
            rate(counts.received, self.progress.received),
            counts.lost,
            self.counters.error_total,
            self.counters.disconnects
        );
        // A closed stderr is no reason to stop the run.
        let _ = writeln!(std::io::stderr().lock(), "{line}");
        self.progress = ProgressMark {
            sent: counts.sent,
            received: counts.received,
        };
        self.latency_interval.reset();
        self.next_progress = now + Duration::from_secs(1);
    }
}
