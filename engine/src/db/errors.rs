//! Storage errors in the log at most once per interval, with a count of those left out, so
//! that a failing database does not fill the log one request at a time.

use std::fmt::Display;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often the DB worker logs storage errors at most: a failing database fails every
/// request, and one line per request would bury everything else in the log.
const ERROR_REPORT_EVERY: Duration = Duration::from_secs(10);

/// The storage errors of the process. One, because the worker's functions that meet errors
/// (such as the one that answers a failed login) have no worker at hand, and there is one DB worker per server.
static STORAGE_ERRORS: Mutex<ErrorReport> = Mutex::new(ErrorReport::new(ERROR_REPORT_EVERY));

/// Logs a storage error, unless one was logged less than [`ERROR_REPORT_EVERY`] ago.
pub(crate) fn report_error(what: &str, error: &dyn Display) {
    STORAGE_ERRORS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .report(what, error);
}

/// Rate-limited error logging: the first error is logged, the ones within `every` of it are
/// only counted, and the next one logged says how many were not.
struct ErrorReport {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl ErrorReport {
    const fn new(every: Duration) -> Self {
        ErrorReport {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// Logs `what` failed with `error`, if it is time to.
    fn report(&mut self, what: &str, error: &dyn Display) {
        if let Some(line) = self.line_at(Instant::now(), what, error) {
            spdlog::error!("{line}");
        }
    }

    /// The line to log for an error at `now`, or `None` when it is only counted.
    fn line_at(&mut self, now: Instant, what: &str, error: &dyn Display) -> Option<String> {
        if self
            .last
            .is_some_and(|at| now.saturating_duration_since(at) < self.every)
        {
            self.suppressed += 1;
            return None;
        }
        let mut line = format!("storage: {what}: {error}");
        if self.suppressed > 0 {
            line.push_str(&format!(
                " (errors not logged since the last one: {})",
                self.suppressed
            ));
        }
        self.last = Some(now);
        self.suppressed = 0;
        Some(line)
    }
}

#[cfg(test)]
mod error_report_tests {
    use super::*;

    #[test]
    fn a_failing_database_is_logged_once_per_interval_with_a_count_of_the_rest() {
        let mut report = ErrorReport::new(Duration::from_secs(10));
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let error = "database: database disk image is malformed";
        assert_eq!(
            report.line_at(at(0), "a login failed", &error).as_deref(),
            Some("storage: a login failed: database: database disk image is malformed")
        );
        for ms in (100..10_000).step_by(100) {
            assert_eq!(
                report.line_at(at(ms), "a login failed", &error),
                None,
                "at {ms} ms"
            );
        }
        assert_eq!(
            report
                .line_at(at(10_000), "cannot revoke a token", &error)
                .as_deref(),
            Some(
                "storage: cannot revoke a token: database: database disk image is malformed \
                 (errors not logged since the last one: 99)"
            )
        );
        assert_eq!(report.line_at(at(19_999), "a login failed", &error), None);
        assert_eq!(
            report
                .line_at(at(20_000), "a login failed", &error)
                .as_deref(),
            Some(
                "storage: a login failed: database: database disk image is malformed \
                 (errors not logged since the last one: 1)"
            )
        );
        assert_eq!(
            report
                .line_at(at(60_000), "a login failed", &error)
                .as_deref(),
            Some("storage: a login failed: database: database disk image is malformed"),
            "after a quiet interval, no count"
        );
    }
}
