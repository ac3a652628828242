//! The final [`Report`] of a run, its verdict ([`Report::passed`]) and its forms: text
//! (`Display`), and the versioned JSON document and HTML page of [`crate::record`].

use std::collections::BTreeMap;
use std::fmt;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::record::{self, Document, RunRecord};

pub use crate::latency::{
    new_histogram, record, LatencySummary, LATENCY_MAX_US, LATENCY_MIN_US, LATENCY_SIGFIG,
};

/// Times of one step of logging in, in milliseconds: [`Report::login_ms`] and
/// [`Report::auth_ms`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LoginSummary {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Longest.
    pub max: f64,
    /// Bots that completed the step.
    pub count: u64,
}

impl LoginSummary {
    /// The summary of a histogram of microseconds.
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return LoginSummary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        LoginSummary {
            p50: ms(histogram.value_at_quantile(0.50)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
            count: histogram.len(),
        }
    }
}

/// What a `register` run did with the tokens it was issued.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TokensSaved {
    /// The tokens file.
    pub path: String,
    /// Lines of this run written to it (0 when the write failed).
    pub saved: u64,
    /// Why the file could not be written; `None` when it was.
    pub error: Option<String>,
}

/// Everything a run counted. Its `--json` and `--html` forms are [`Report::to_json`] and
/// [`Report::to_html`]; serialized, it is their `results`, in the document's units
/// (milliseconds): the server, auth mode, bot count and series are the document's own.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// The server's address.
    #[serde(skip)]
    pub server: String,
    /// The run id in this run's room names (and guests' usernames).
    pub run_id: String,
    /// How the bots logged in: `guest`, `register`, `login` or `resume`.
    #[serde(skip)]
    pub auth: String,
    /// Bots configured.
    #[serde(skip)]
    pub bots: u64,
    /// Bots whose connect was started (fewer than `bots` when the run ended during ramp-up).
    pub started: u64,
    /// Bots that connected.
    pub connected: u64,
    /// Bots that could not connect.
    pub connect_failures: u64,
    /// Connect failures by error.
    pub connect_errors: BTreeMap<String, u64>,
    /// Bots that logged in (`S2C_AuthResult`).
    pub logged_in: u64,
    /// Bots whose room join was confirmed (`S2C_RoomJoined`).
    pub joined: u64,
    /// Connected bots that did not log in and join: refused, timed out, or disconnected first.
    pub login_failures: u64,
    /// Those login failures by cause: the `ErrorCode` name of a refused login
    /// (`USERNAME_TAKEN`, `INVALID_CREDENTIALS`, `INVALID_TOKEN`, `RATE_LIMITED`, ...),
    /// `room join` and the code of a refused join, or `no token`, `timed out`, `disconnected`,
    /// `run ended first`, `logged in as another user`.
    pub login_errors: BTreeMap<String, u64>,
    /// Sessions that ended before the client closed them.
    pub disconnects: u64,
    /// Those disconnects by reason.
    pub disconnect_reasons: BTreeMap<String, u64>,
    /// Failovers (several servers only): bots whose connection ended that logged in again on
    /// another node and were back in their room. A bot that failed over twice counts twice.
    pub failovers: u64,
    /// Why the connections ended that started failovers (`peer closed`, `socket error:
    /// connection reset`, ...).
    pub failover_reasons: BTreeMap<String, u64>,
    /// Failovers that gave up: bots not back in their room `login_timeout_secs` after their
    /// connection ended. Any fails the run.
    pub never_recovered: u64,
    /// Connects that failovers started (refused ones included).
    pub failover_connects: u64,
    /// Time to recover: connection ended to room joined again, per failover.
    pub recovery_ms: LoginSummary,
    /// Resumable runs (`--resumable`, `--chaos`): connections dropped, by how (`closed` and
    /// `stalled` by chaos, `lost` on their own).
    pub drops: BTreeMap<String, u64>,
    /// Sessions taken back after a drop.
    pub resumes: u64,
    /// Resumes that failed (`SESSION_LOST`, timed out, run ended first): the bot was out of
    /// its room for good and what it was owed lost. Any fails the run.
    pub resume_failures: u64,
    /// Those failures by cause.
    pub resume_errors: BTreeMap<String, u64>,
    /// Frames the server sent again in resumes (what the bots missed).
    pub replayed_frames: u64,
    /// Requests the bots sent again after resumes (not processed before the drop).
    pub resent_requests: u64,
    /// Time of a resume: its connect started to `S2C_SessionResumed`.
    pub resume_ms: LoginSummary,
    /// Time without a working connection: the drop to `S2C_SessionResumed` (for a stall, the
    /// 2 s the bot takes to notice it are part of it).
    pub outage_ms: LoginSummary,
    /// Logins that asked for a resumable session and were given none (a server that keeps
    /// none).
    pub not_resumable: u64,
    /// Chat lines sent.
    pub sent: u64,
    /// Expected chat deliveries that arrived (live lines only).
    pub received: u64,
    /// Chat deliveries expected: one per room member per line sent (less rejected lines);
    /// `expected == received + lost + missed_in_failover`.
    pub expected: u64,
    /// Expected deliveries that did not arrive while their receiver was in its room: real
    /// losses.
    pub lost: u64,
    /// Expected deliveries that did not arrive because of a failover: their receiver was
    /// away, or not yet seen back by the sender, or the line was in flight to or from a bot
    /// whose connection ended (see [`crate::ledger`]). Not a loss.
    pub missed_in_failover: u64,
    /// Live chat lines that arrived where they were not expected (duplicates too, outside
    /// resumable runs; strays).
    pub unexpected: u64,
    /// Resumable runs: live chat lines that arrived a second time (or out of order) where
    /// they had arrived already. Any fails the run.
    pub duplicated: u64,
    /// Lines the server refused with an `S2C_Error` (also counted in `errors`).
    pub rejected: u64,
    /// History lines (`history = true`) replayed on join; not part of the accounting.
    pub history_received: u64,
    /// `S2C_RoomMissed` received: a bot's node said lines of another node may not have
    /// reached it (the nodes lost touch longer than they could hold). Lost lines it
    /// explains are still counted in `lost`.
    pub missed_notices: u64,
    /// Pings sent.
    pub pings_sent: u64,
    /// Pongs received.
    pub pongs_received: u64,
    /// `S2C_Error`s received, by `ErrorCode` name.
    pub errors: BTreeMap<String, u64>,
    /// Frames that did not decode as the message their id names, or had an unknown id.
    pub bad_frames: u64,
    /// The run was stopped early (Ctrl-C or the caller's shutdown).
    pub cancelled: bool,
    /// Seconds of chatting: from the first bot's connect to the stop of sending.
    #[serde(rename = "duration_ms", serialize_with = "record::secs_as_ms")]
    pub duration_secs: f64,
    /// Seconds spent draining after the stop of sending.
    #[serde(rename = "drain_ms", serialize_with = "record::secs_as_ms")]
    pub drain_secs: f64,
    /// Chat lines sent per second of `duration_secs`.
    #[serde(rename = "sent_per_sec")]
    pub messages_per_sec: f64,
    /// Deliveries received per second of `duration_secs + drain_secs`.
    #[serde(rename = "received_per_sec")]
    pub deliveries_per_sec: f64,
    /// End-to-end chat latency: `sent_at_us` to the read of the frame at each receiver.
    #[serde(rename = "latency_ms", serialize_with = "record::latency_as_ms")]
    pub latency_us: LatencySummary,
    /// Ping round trips.
    #[serde(rename = "ping_rtt_ms", serialize_with = "record::latency_as_ms")]
    pub ping_rtt_us: LatencySummary,
    /// Login times: connect start to `S2C_RoomJoined`.
    pub login_ms: LoginSummary,
    /// Authentication times: connect complete (seen by the tick loop) to `S2C_AuthResult`.
    pub auth_ms: LoginSummary,
    /// `register` runs: the tokens file written at the end; `None` in other modes.
    pub tokens: Option<TokensSaved>,
    /// The settings, the per-second series and the latency distribution.
    #[serde(skip)]
    pub run: RunRecord,
}

impl Report {
    /// Whether the run passed: every bot connected, logged in and joined, nothing was lost or
    /// unexpected, no session ended unexpectedly, every failover recovered, some chat was
    /// sent, and (register runs) the tokens were saved. Deliveries missed in failover do not
    /// fail it.
    pub fn passed(&self) -> bool {
        self.failures().is_empty()
    }

    /// Why the run did not pass, one phrase per cause; empty when it passed.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        if self.started < self.bots {
            failures.push(format!(
                "{} of {} bots never started",
                self.bots - self.started,
                self.bots
            ));
        }
        if self.connect_failures > 0 {
            failures.push(format!(
                "{} bots could not connect ({})",
                self.connect_failures,
                join_counts(&self.connect_errors)
            ));
        }
        if self.login_failures > 0 {
            let causes = if self.login_errors.is_empty() {
                String::new()
            } else {
                format!(" ({})", join_counts(&self.login_errors))
            };
            failures.push(format!(
                "{} bots did not log in and join{causes}",
                self.login_failures
            ));
        }
        if self.lost > 0 {
            failures.push(format!(
                "{} of {} deliveries lost",
                self.lost, self.expected
            ));
        }
        if self.unexpected > 0 {
            failures.push(format!("{} unexpected deliveries", self.unexpected));
        }
        if self.duplicated > 0 {
            failures.push(format!("{} deliveries duplicated", self.duplicated));
        }
        if self.resume_failures > 0 {
            failures.push(format!(
                "{} of {} resumes failed ({})",
                self.resume_failures,
                self.resumes + self.resume_failures,
                join_counts(&self.resume_errors)
            ));
        }
        if self.disconnects > 0 {
            failures.push(format!(
                "{} unexpected disconnects ({})",
                self.disconnects,
                join_counts(&self.disconnect_reasons)
            ));
        }
        if self.never_recovered > 0 {
            failures.push(format!(
                "{} of {} failovers never recovered",
                self.never_recovered,
                self.failovers + self.never_recovered
            ));
        }
        if let Some(error) = self.tokens.as_ref().and_then(|t| t.error.as_ref()) {
            failures.push(format!("tokens not saved: {error}"));
        }
        if self.bots > 0 && self.sent == 0 && failures.is_empty() {
            failures.push("no chat line was sent".to_owned());
        }
        failures
    }

    /// The JSON document of the run (schema in [`crate::record`]).
    pub fn document(&self) -> Document<'_, &Report> {
        Document::new("chat", &self.run, self, self.failures())
    }

    /// [`Report::document`] as pretty-printed JSON: the `--json` file.
    pub fn to_json(&self) -> String {
        self.document().to_json()
    }

    /// [`Report::document`] as a self-contained HTML page: the `--html` file.
    pub fn to_html(&self) -> String {
        self.document().to_html()
    }
}

/// `a 3, b 1`, or `none`.
pub(crate) fn join_counts(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "none".to_owned();
    }
    counts
        .iter()
        .map(|(what, n)| format!("{what} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A duration in microseconds, in the unit that reads best: `850µs`, `3.1ms`, `1.25s`.
pub fn fmt_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed() { "PASSED" } else { "FAILED" };
        let cancelled = if self.cancelled {
            ", stopped early"
        } else {
            ""
        };
        writeln!(
            f,
            "dummy-client report: run {} against {} over {}, auth {}{cancelled}",
            self.run_id, self.server, self.run.settings.transport, self.auth
        )?;
        writeln!(
            f,
            "  bots        {} configured, {} started, {} connected, {} logged in, {} joined",
            self.bots, self.started, self.connected, self.logged_in, self.joined
        )?;
        writeln!(
            f,
            "  failures    connect {} ({}), login {} ({})",
            self.connect_failures,
            join_counts(&self.connect_errors),
            self.login_failures,
            join_counts(&self.login_errors)
        )?;
        writeln!(
            f,
            "  auth        p50 {:.1}ms  p99 {:.1}ms  max {:.1}ms  ({} bots, connect to auth result)",
            self.auth_ms.p50, self.auth_ms.p99, self.auth_ms.max, self.auth_ms.count
        )?;
        writeln!(
            f,
            "  login       p50 {:.1}ms  p99 {:.1}ms  max {:.1}ms  ({} bots, connect to room joined)",
            self.login_ms.p50, self.login_ms.p99, self.login_ms.max, self.login_ms.count
        )?;
        if let Some(tokens) = &self.tokens {
            match &tokens.error {
                None => writeln!(f, "  tokens      {} saved to {}", tokens.saved, tokens.path)?,
                Some(error) => writeln!(f, "  tokens      NOT saved: {error}")?,
            }
        }
        writeln!(
            f,
            "  chat        sent {} ({:.0}/s over {:.1}s), received {} ({:.0}/s), drained in {:.2}s",
            self.sent,
            self.messages_per_sec,
            self.duration_secs,
            self.received,
            self.deliveries_per_sec,
            self.drain_secs
        )?;
        writeln!(
            f,
            "  accounting  expected {}  received {}  lost {}  missed in failover {}  unexpected {}  rejected {}  history {}  told missed {}",
            self.expected,
            self.received,
            self.lost,
            self.missed_in_failover,
            self.unexpected,
            self.rejected,
            self.history_received,
            self.missed_notices
        )?;
        let l = &self.latency_us;
        if l.count == 0 {
            writeln!(f, "  latency     no samples")?;
        } else {
            writeln!(
                f,
                "  latency     p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {}  ({} samples)",
                fmt_us(l.p50),
                fmt_us(l.p90),
                fmt_us(l.p99),
                fmt_us(l.p999),
                fmt_us(l.max),
                fmt_us(l.mean.round() as u64),
                l.count
            )?;
        }
        writeln!(
            f,
            "  ping        sent {}  pongs {}  rtt p50 {}  p99 {}",
            self.pings_sent,
            self.pongs_received,
            fmt_us(self.ping_rtt_us.p50),
            fmt_us(self.ping_rtt_us.p99)
        )?;
        writeln!(
            f,
            "  errors      {} (bad frames {})",
            join_counts(&self.errors),
            self.bad_frames
        )?;
        writeln!(
            f,
            "  disconnects {} ({})",
            self.disconnects,
            join_counts(&self.disconnect_reasons)
        )?;
        writeln!(
            f,
            "  failovers   {} ({}), never recovered {}, connects {}",
            self.failovers,
            join_counts(&self.failover_reasons),
            self.never_recovered,
            self.failover_connects
        )?;
        if !self.drops.is_empty() || self.resumes > 0 || self.resume_failures > 0 {
            writeln!(
                f,
                "  resumes     {} of {} drops ({}), failed {} ({}), frames replayed {}, requests sent again {}, duplicated {}",
                self.resumes,
                self.drops.values().sum::<u64>(),
                join_counts(&self.drops),
                self.resume_failures,
                join_counts(&self.resume_errors),
                self.replayed_frames,
                self.resent_requests,
                self.duplicated
            )?;
            let (r, o) = (&self.resume_ms, &self.outage_ms);
            writeln!(
                f,
                "  resume      p50 {:.1}ms  p99 {:.1}ms  max {:.1}ms  (connect to resumed); outage p50 {:.1}ms  p99 {:.1}ms  max {:.1}ms  (dropped to resumed)",
                r.p50, r.p99, r.max, o.p50, o.p99, o.max
            )?;
        }
        if self.not_resumable > 0 {
            writeln!(
                f,
                "  resumable   {} logins asked for a resumable session and got none (the server keeps none)",
                self.not_resumable
            )?;
        }
        let r = &self.recovery_ms;
        if r.count == 0 {
            writeln!(f, "  recovery    no failovers")?;
        } else {
            writeln!(
                f,
                "  recovery    p50 {:.1}ms  p99 {:.1}ms  max {:.1}ms  ({} failovers, connection lost to room joined again)",
                r.p50, r.p99, r.max, r.count
            )?;
        }
        write!(f, "  result      {verdict}")?;
        let failures = self.failures();
        if !failures.is_empty() {
            write!(f, ": {}", failures.join("; "))?;
        }
        writeln!(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good_report() -> Report {
        Report {
            server: "127.0.0.1:7000".into(),
            run_id: "k3f9".into(),
            auth: "guest".into(),
            bots: 40,
            started: 40,
            connected: 40,
            logged_in: 40,
            joined: 40,
            sent: 400,
            expected: 8000,
            received: 8000,
            duration_secs: 10.0,
            ..Report::default()
        }
    }

    #[test]
    fn a_clean_run_passes() {
        let report = good_report();
        assert!(report.passed(), "{:?}", report.failures());
        assert!(report.to_string().contains("result      PASSED"));
    }

    #[test]
    fn a_single_lost_delivery_fails_the_run() {
        let report = Report {
            lost: 1,
            received: 7999,
            ..good_report()
        };
        assert!(!report.passed());
        assert_eq!(report.failures(), ["1 of 8000 deliveries lost"]);
    }

    #[test]
    fn every_cause_of_failure_is_named() {
        let mut report = good_report();
        report.started = 39;
        report.connected = 38;
        report.connect_failures = 1;
        report.connect_errors.insert("connection refused".into(), 1);
        report.login_failures = 1;
        report.login_errors.insert("USERNAME_TAKEN".into(), 1);
        report.unexpected = 2;
        report.disconnects = 1;
        report.disconnect_reasons.insert("peer closed".into(), 1);
        let failures = report.failures();
        assert_eq!(
            failures,
            [
                "1 of 40 bots never started",
                "1 bots could not connect (connection refused 1)",
                "1 bots did not log in and join (USERNAME_TAKEN 1)",
                "2 unexpected deliveries",
                "1 unexpected disconnects (peer closed 1)",
            ]
        );
        let text = report.to_string();
        assert!(
            text.contains("FAILED: 1 of 40 bots never started; "),
            "{text}"
        );
    }

    #[test]
    fn a_login_failure_without_a_known_cause_is_still_named() {
        let report = Report {
            login_failures: 2,
            joined: 38,
            ..good_report()
        };
        assert_eq!(report.failures(), ["2 bots did not log in and join"]);
    }

    #[test]
    fn tokens_not_saved_fail_a_register_run_and_saved_ones_show() {
        let mut report = Report {
            auth: "register".into(),
            tokens: Some(TokensSaved {
                path: "bot-tokens.txt".into(),
                saved: 40,
                error: None,
            }),
            ..good_report()
        };
        assert!(report.passed(), "{:?}", report.failures());
        let text = report.to_string();
        assert!(text.contains("auth register"), "{text}");
        assert!(text.contains("40 saved to bot-tokens.txt"), "{text}");

        report.tokens = Some(TokensSaved {
            path: "bot-tokens.txt".into(),
            saved: 0,
            error: Some("cannot write tokens file \"x\": denied".into()),
        });
        assert_eq!(
            report.failures(),
            [r#"tokens not saved: cannot write tokens file "x": denied"#]
        );
        assert!(report.to_string().contains("NOT saved"));
    }

    #[test]
    fn a_run_that_sent_nothing_does_not_pass() {
        let report = Report {
            sent: 0,
            expected: 0,
            received: 0,
            ..good_report()
        };
        assert_eq!(report.failures(), ["no chat line was sent"]);
    }

    #[test]
    fn failovers_without_real_loss_pass_and_show_apart_from_loss() {
        let mut report = Report {
            received: 7_900,
            missed_in_failover: 100,
            failovers: 13,
            failover_connects: 14,
            recovery_ms: LoginSummary {
                p50: 120.5,
                p99: 310.0,
                max: 311.2,
                count: 13,
            },
            ..good_report()
        };
        report.failover_reasons.insert("peer closed".into(), 13);
        assert!(report.passed(), "{:?}", report.failures());
        let text = report.to_string();
        assert!(
            text.contains("lost 0  missed in failover 100  unexpected 0"),
            "{text}"
        );
        assert!(
            text.contains("failovers   13 (peer closed 13), never recovered 0, connects 14"),
            "{text}"
        );
        assert!(
            text.contains("recovery    p50 120.5ms  p99 310.0ms  max 311.2ms  (13 failovers"),
            "{text}"
        );
        assert!(good_report()
            .to_string()
            .contains("recovery    no failovers"));
    }

    #[test]
    fn a_failover_that_never_recovered_fails_the_run() {
        let report = Report {
            failovers: 12,
            never_recovered: 1,
            ..good_report()
        };
        assert_eq!(report.failures(), ["1 of 13 failovers never recovered"]);
    }

    #[test]
    fn errors_alone_do_not_fail_the_run_but_show() {
        let mut report = good_report();
        report.errors.insert("RATE_LIMITED".into(), 3);
        assert!(report.passed());
        assert!(report.to_string().contains("RATE_LIMITED 3"));
    }

    #[test]
    fn histogram_summaries_clamp_and_report_percentiles() {
        let mut histogram = new_histogram();
        assert_eq!(LatencySummary::of(&histogram), LatencySummary::default());
        for us in 1..=1000 {
            record(&mut histogram, us);
        }
        record(&mut histogram, 0);
        record(&mut histogram, u64::MAX);
        let summary = LatencySummary::of(&histogram);
        assert_eq!(summary.count, 1002);
        assert_eq!(summary.p50, 500);
        assert!((989..=991).contains(&summary.p99), "{}", summary.p99);
        assert!(
            summary.max >= LATENCY_MAX_US && summary.max <= LATENCY_MAX_US + LATENCY_MAX_US / 1000
        );

        let login = LoginSummary::of(&histogram);
        assert_eq!(login.p50, 0.5);
        assert_eq!(login.count, 1002);
    }

    #[test]
    fn the_json_report_is_a_versioned_document_in_milliseconds() {
        let mut report = good_report();
        report.errors.insert("ROOM_FULL".into(), 2);
        report.latency_us = LatencySummary {
            p50: 1200,
            p90: 2000,
            p99: 3100,
            p999: 5000,
            max: 9000,
            mean: 1300.5,
            count: 8000,
        };
        report.run.settings.bots = 40;
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["schema_version"], crate::record::SCHEMA_VERSION);
        assert_eq!(json["scenario"], "chat");
        assert_eq!(json["verdict"], "passed");
        assert_eq!(json["settings"]["bots"], 40);
        let results = &json["results"];
        for key in [
            "connected",
            "connect_failures",
            "login_failures",
            "disconnects",
            "disconnect_reasons",
            "sent",
            "received",
            "expected",
            "lost",
            "unexpected",
            "history_received",
            "missed_notices",
            "errors",
            "duration_ms",
            "drain_ms",
            "sent_per_sec",
            "received_per_sec",
            "latency_ms",
            "ping_rtt_ms",
            "login_ms",
            "auth_ms",
            "login_errors",
            "failovers",
            "failover_reasons",
            "never_recovered",
            "failover_connects",
            "recovery_ms",
            "missed_in_failover",
        ] {
            assert!(results.get(key).is_some(), "missing results.{key}");
        }
        assert_eq!(results["errors"]["ROOM_FULL"], 2);
        assert_eq!(results["duration_ms"], 10_000.0);
        assert_eq!(results["latency_ms"]["p99"], 3.1);
        assert_eq!(results["latency_ms"]["mean"], 1.3005);
        for summary in ["login_ms", "auth_ms", "recovery_ms"] {
            for key in ["p50", "p99", "max", "count"] {
                assert!(
                    results[summary].get(key).is_some(),
                    "missing {summary}.{key}"
                );
            }
        }
        // No field keeps another unit.
        let text = report.to_json();
        for old in ["_us\"", "_secs\"", "messages_per_sec", "deliveries_per_sec"] {
            assert!(!text.contains(old), "{old} in {text}");
        }
    }

    #[test]
    fn durations_read_in_a_fitting_unit() {
        assert_eq!(fmt_us(850), "850µs");
        assert_eq!(fmt_us(3_100), "3.1ms");
        assert_eq!(fmt_us(1_250_000), "1.25s");
    }
}
