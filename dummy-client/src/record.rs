//! What a run leaves behind besides its counters: the settings it ran with, one sample a
//! second ([`Series`]), the latency distribution, and the versioned JSON document
//! ([`Document`]) that `--json` writes and `--html` draws.
//!
//! # The JSON document, schema version 1
//!
//! Every time is in **milliseconds** (fields ending in `_ms`, fractional: microsecond
//! precision), every rate **per second** (`_per_sec`), every size in **bytes** (`_bytes`);
//! other numbers are counts. Top-level fields:
//!
//! | field | what |
//! |---|---|
//! | `schema_version` | `1`; a change that drops or renames a field bumps it |
//! | `tool` | `dummy-client` and its version |
//! | `scenario` | `chat` or `arena` |
//! | `started_at_unix_ms` | when the run started, wall clock |
//! | `units` | the units above, spelled out |
//! | `settings` | [`Settings`]: bots, rooms, intervals, sizes, server address, the server's tick and name from `S2C_Welcome` |
//! | `verdict` | `passed` or `failed` |
//! | `reasons` | why it failed, one phrase each; empty when it passed |
//! | `results` | the scenario's totals: a [`Report`](crate::report::Report) or an [`ArenaReport`](crate::arena_swarm::ArenaReport), serialized |
//! | `latency_distribution` | [`Bucket`]s of the whole run's latency, log-scaled |
//! | `series` | one [`Second`] per second of the run; the last one ends with the run and spans up to 1.5 s |

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Serialize, Serializer};

use crate::latency;

/// The version of the JSON document; bumped when a field is dropped or renamed.
pub const SCHEMA_VERSION: u32 = 1;

/// The units of the document, spelled out in it.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Units {
    /// Of every field ending in `_ms`.
    pub time: &'static str,
    /// Of every field ending in `_per_sec`.
    pub rate: &'static str,
    /// Of every field ending in `_bytes`.
    pub size: &'static str,
}

/// The units of schema version 1.
pub const UNITS: Units = Units {
    time: "milliseconds (_ms)",
    rate: "per second (_per_sec)",
    size: "bytes (_bytes)",
};

/// What the run was told to do, and what the server said of itself.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Settings {
    /// The server's address.
    pub server: String,
    /// What the bots spoke: `tcp`, `tls`, `ws` or `wss`.
    pub transport: String,
    /// `server_name` of the server's `S2C_Welcome`; `None` when no bot connected.
    pub server_name: Option<String>,
    /// `tick_ms` of the server's `S2C_Welcome`; `None` when no bot connected.
    pub server_tick_ms: Option<u32>,
    /// `protocol_version` of the server's `S2C_Welcome`; `None` when no bot connected.
    pub server_protocol_version: Option<u32>,
    /// Bots.
    pub bots: u64,
    /// How the bots log in: `guest`, `register`, `login` or `resume`.
    pub auth: String,
    /// Bots to a room (chat).
    pub bots_per_room: Option<u64>,
    /// Rooms (chat).
    pub rooms: Option<u64>,
    /// Time between two chat lines of one bot (chat).
    pub chat_interval_ms: Option<u64>,
    /// Chat content of one line (chat).
    pub message_size_bytes: Option<u64>,
    /// Time between two pings of one bot, 0 for none (chat).
    pub ping_interval_ms: Option<u64>,
    /// Time between two turns of one bot (arena).
    pub move_interval_ms: Option<u64>,
    /// How long the bots were to chat or walk, from the first connect.
    pub duration_ms: u64,
    /// How long the run waits for what is still in flight at the end.
    pub drain_ms: u64,
    /// Connects started per second.
    pub ramp_up_per_sec: u64,
    /// Connects in flight at most.
    pub connect_concurrency: u64,
    /// The client's own tick.
    pub client_tick_ms: u64,
    /// Time a bot has to log in.
    pub login_timeout_ms: u64,
}

impl Settings {
    /// The settings of `config` common to both scenarios; the scenario fills in its own.
    pub fn of(config: &config::ClientConfig) -> Settings {
        let client = &config.client;
        Settings {
            server: client.targets_text(),
            transport: crate::transport::label(client).to_string(),
            bots: client.bots as u64,
            auth: config.bots.auth.clone(),
            duration_ms: client.duration_secs * 1000,
            drain_ms: client.drain_secs * 1000,
            ramp_up_per_sec: client.ramp_up_per_sec,
            connect_concurrency: client.connect_concurrency as u64,
            client_tick_ms: client.tick_ms,
            login_timeout_ms: client.login_timeout_secs * 1000,
            ..Settings::default()
        }
    }

    /// Takes what the server says of itself from the first `S2C_Welcome`.
    pub fn welcomed(&mut self, welcome: &protocol::world::S2cWelcome) {
        if self.server_tick_ms.is_none() {
            self.server_name = Some(welcome.server_name.clone());
            self.server_tick_ms = Some(welcome.tick_ms);
            self.server_protocol_version = Some(welcome.protocol_version);
        }
    }
}

/// One second of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Second {
    /// End of the second, from the start of the run.
    pub at_ms: u64,
    /// Bots in (in their room, or spawned) at its end.
    pub bots: u64,
    /// Messages sent in it: chat lines, or moves.
    pub sent: u64,
    /// Messages received in it: chat deliveries, or updates.
    pub received: u64,
    /// Median latency of what arrived in it; 0 when nothing did.
    pub latency_p50_ms: f64,
    /// 99th percentile latency of what arrived in it; 0 when nothing did.
    pub latency_p99_ms: f64,
    /// `S2C_Error`s received in it.
    pub errors: u64,
    /// Sessions that ended unexpectedly in it.
    pub disconnects: u64,
    /// Failovers completed in it: bots back in their room through another node (chat, with
    /// several servers).
    pub failovers: u64,
}

/// Running totals a [`Series`] turns into per-second numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Bots in at the moment.
    pub bots: u64,
    /// Sent since the start.
    pub sent: u64,
    /// Received since the start.
    pub received: u64,
    /// Errors since the start.
    pub errors: u64,
    /// Disconnects since the start.
    pub disconnects: u64,
    /// Failovers completed since the start.
    pub failovers: u64,
}

/// One [`Second`] per second of a run, from running totals and the latencies of the second.
///
/// A run of the longest duration the config allows (a day) keeps 87,000 samples, about 5 MB:
/// every second is kept, and the HTML report thins them out to draw them.
#[derive(Debug)]
pub struct Series {
    started: Instant,
    last: Totals,
    latency: Histogram<u64>,
    seconds: Vec<Second>,
    /// The totals before the last second closed, and its latencies: a short last stretch of
    /// a run joins that second instead of becoming a sample of its own.
    before_last: Option<(Totals, Histogram<u64>)>,
}

/// A last stretch of a run shorter than this joins the second before it.
const SHORTEST_LAST_SAMPLE: Duration = Duration::from_millis(500);

impl Series {
    /// No seconds yet; the run started at `started`.
    pub fn new(started: Instant) -> Series {
        Series {
            started,
            last: Totals::default(),
            latency: latency::new_histogram(),
            seconds: Vec::new(),
            before_last: None,
        }
    }

    /// Something arrived `us` microseconds after it was sent.
    pub fn latency(&mut self, us: u64) {
        latency::record(&mut self.latency, us);
    }

    /// Closes the second ending at `now`, with `totals` the counts so far; returns it.
    pub fn close(&mut self, now: Instant, totals: Totals) -> Second {
        let ms = |us: u64| us as f64 / 1000.0;
        let quantile = |q: f64| {
            if self.latency.is_empty() {
                0.0
            } else {
                ms(self.latency.value_at_quantile(q))
            }
        };
        let second = Second {
            at_ms: now.saturating_duration_since(self.started).as_millis() as u64,
            bots: totals.bots,
            sent: totals.sent.saturating_sub(self.last.sent),
            received: totals.received.saturating_sub(self.last.received),
            latency_p50_ms: quantile(0.50),
            latency_p99_ms: quantile(0.99),
            errors: totals.errors.saturating_sub(self.last.errors),
            disconnects: totals.disconnects.saturating_sub(self.last.disconnects),
            failovers: totals.failovers.saturating_sub(self.last.failovers),
        };
        self.seconds.push(second);
        let latency = std::mem::replace(&mut self.latency, latency::new_histogram());
        self.before_last = Some((std::mem::replace(&mut self.last, totals), latency));
        second
    }

    /// Closes the last, partial second of a run ending at `now`, so that the seconds add up
    /// to the run's totals. Shorter than [`SHORTEST_LAST_SAMPLE`], it joins the second
    /// before it (a sample of a few milliseconds would draw as a spike of its rate).
    pub fn finish(&mut self, now: Instant, totals: Totals) {
        let at_ms = now.saturating_duration_since(self.started).as_millis() as u64;
        let last_at = self.seconds.last().map_or(0, |s| s.at_ms);
        if at_ms <= last_at && totals == self.last {
            return;
        }
        if at_ms.saturating_sub(last_at) < SHORTEST_LAST_SAMPLE.as_millis() as u64 {
            if let Some((before, latency)) = self.before_last.take() {
                self.seconds.pop();
                // Both come from `new_histogram`, with the same bounds: adding cannot fail.
                let _ = self.latency.add(&latency);
                self.last = before;
            }
        }
        self.close(now, totals);
    }

    /// The seconds so far.
    pub fn seconds(&self) -> &[Second] {
        &self.seconds
    }

    /// The seconds, for the report.
    pub fn into_seconds(self) -> Vec<Second> {
        self.seconds
    }
}

/// One bar of the latency distribution: the latencies up to `upto_ms` (and above the bar
/// before).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Bucket {
    /// Upper bound of the bar.
    pub upto_ms: f64,
    /// Latencies in it.
    pub count: u64,
}

/// The distribution of `histogram` (microseconds) in bars whose bounds double from 0.1 ms,
/// from the first bar with a count to the last one.
pub fn distribution(histogram: &Histogram<u64>) -> Vec<Bucket> {
    if histogram.is_empty() {
        return Vec::new();
    }
    // Bar i holds what is up to 0.1 ms × 2^i (the iterator's own bounds are the histogram's
    // bucket edges, such as 1.599 ms, rather than round numbers).
    let mut buckets: Vec<Bucket> = histogram
        .iter_log(100, 2.0)
        .enumerate()
        .map(|(i, step)| Bucket {
            upto_ms: 0.1 * 2f64.powi(i as i32),
            count: step.count_since_last_iteration(),
        })
        .collect();
    while buckets.last().is_some_and(|b| b.count == 0) {
        buckets.pop();
    }
    let first = buckets.iter().position(|b| b.count > 0).unwrap_or(0);
    buckets.drain(..first);
    buckets
}

/// Everything of a run that is not a counter: kept in its report for the JSON and HTML forms.
#[derive(Clone, Debug, Default)]
pub struct RunRecord {
    /// The settings.
    pub settings: Settings,
    /// Wall clock at the start.
    pub started_at_unix_ms: u64,
    /// One sample a second.
    pub series: Vec<Second>,
    /// The whole run's latency distribution.
    pub latency_distribution: Vec<Bucket>,
}

impl RunRecord {
    /// A record of a run with `settings`, starting now.
    pub fn starting(settings: Settings) -> RunRecord {
        RunRecord {
            settings,
            started_at_unix_ms: protocol::now_us() / 1000,
            ..RunRecord::default()
        }
    }
}

/// The JSON document of a run; see the module docs.
#[derive(Debug, Serialize)]
pub struct Document<'a, R: Serialize> {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// `dummy-client` and its version.
    pub tool: String,
    /// `chat` or `arena`.
    pub scenario: &'static str,
    /// When the run started, wall clock.
    pub started_at_unix_ms: u64,
    /// The units.
    pub units: Units,
    /// What the run was told to do.
    pub settings: &'a Settings,
    /// `passed` or `failed`.
    pub verdict: &'static str,
    /// Why it failed; empty when it passed.
    pub reasons: Vec<String>,
    /// The scenario's totals.
    pub results: R,
    /// The whole run's latency distribution.
    pub latency_distribution: &'a [Bucket],
    /// One sample a second.
    pub series: &'a [Second],
}

impl<'a, R: Serialize> Document<'a, R> {
    /// The document of a `scenario` run recorded in `record`, with `results` and the
    /// `reasons` it failed (none when it passed).
    pub fn new(
        scenario: &'static str,
        record: &'a RunRecord,
        results: R,
        reasons: Vec<String>,
    ) -> Self {
        Document {
            schema_version: SCHEMA_VERSION,
            tool: format!("dummy-client {}", env!("CARGO_PKG_VERSION")),
            scenario,
            started_at_unix_ms: record.started_at_unix_ms,
            units: UNITS,
            settings: &record.settings,
            verdict: if reasons.is_empty() {
                "passed"
            } else {
                "failed"
            },
            reasons,
            results,
            latency_distribution: &record.latency_distribution,
            series: &record.series,
        }
    }

    /// The document as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    /// The document as a self-contained HTML page ([`crate::html`]).
    pub fn to_html(&self) -> String {
        let value = serde_json::to_value(self).expect("a report always serializes");
        crate::html::render(&value)
    }
}

/// Percentiles of a latency in milliseconds, all 0 when nothing was measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencyMs {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// Values measured.
    pub count: u64,
}

impl From<latency::LatencySummary> for LatencyMs {
    fn from(us: latency::LatencySummary) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        LatencyMs {
            p50: ms(us.p50),
            p90: ms(us.p90),
            p99: ms(us.p99),
            p999: ms(us.p999),
            max: ms(us.max),
            mean: us.mean / 1000.0,
            count: us.count,
        }
    }
}

/// Serializes seconds as milliseconds, for `#[serde(serialize_with)]`.
pub fn secs_as_ms<S: Serializer>(secs: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(secs * 1000.0)
}

/// Serializes a [`latency::LatencySummary`] of microseconds as [`LatencyMs`], for
/// `#[serde(serialize_with)]`.
pub fn latency_as_ms<S: Serializer>(
    us: &latency::LatencySummary,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    LatencyMs::from(*us).serialize(serializer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_second_counts_what_happened_in_it_and_its_own_latencies() {
        let t0 = Instant::now();
        let mut series = Series::new(t0);
        for us in [1_000, 2_000, 3_000, 100_000] {
            series.latency(us);
        }
        let totals = Totals {
            bots: 10,
            sent: 40,
            received: 800,
            errors: 1,
            disconnects: 0,
            failovers: 0,
        };
        let first = series.close(t0 + SECOND, totals);
        assert_eq!(
            (first.at_ms, first.bots, first.sent, first.received),
            (1000, 10, 40, 800)
        );
        assert_eq!(first.latency_p50_ms, 2.0);
        assert!((first.latency_p99_ms - 100.0).abs() < 0.1, "{first:?}");
        let second = series.close(
            t0 + 2 * SECOND,
            Totals {
                sent: 100,
                received: 2000,
                disconnects: 2,
                failovers: 3,
                ..totals
            },
        );
        assert_eq!(
            (
                second.sent,
                second.received,
                second.errors,
                second.disconnects,
                second.failovers
            ),
            (60, 1200, 0, 2, 3)
        );
        assert_eq!(
            (second.latency_p50_ms, second.latency_p99_ms),
            (0.0, 0.0),
            "nothing arrived in it"
        );
        assert_eq!(series.seconds().len(), 2);
    }

    #[test]
    fn the_end_of_a_run_closes_its_partial_second_once() {
        let t0 = Instant::now();
        let mut series = Series::new(t0);
        let totals = Totals {
            sent: 5,
            ..Totals::default()
        };
        series.close(t0 + SECOND, totals);
        series.finish(t0 + SECOND, totals);
        assert_eq!(series.seconds().len(), 1, "nothing since the last second");
        let later = Totals { sent: 7, ..totals };
        series.finish(t0 + SECOND + Duration::from_millis(600), later);
        let last = series.seconds()[1];
        assert_eq!((last.at_ms, last.sent), (1600, 2));
        let sent: u64 = series.seconds().iter().map(|s| s.sent).sum();
        assert_eq!(sent, later.sent);
    }

    #[test]
    fn a_short_end_of_a_run_joins_the_second_before_it() {
        let t0 = Instant::now();
        let mut series = Series::new(t0);
        let at = |totals| Totals {
            sent: totals,
            received: totals,
            ..Totals::default()
        };
        series.latency(1_000);
        series.close(t0 + SECOND, at(10));
        series.latency(2_000);
        series.close(t0 + 2 * SECOND, at(30));
        series.latency(50_000);
        series.finish(t0 + 2 * SECOND + Duration::from_millis(40), at(35));
        let seconds = series.seconds();
        assert_eq!(seconds.len(), 2);
        let last = seconds[1];
        assert_eq!((last.at_ms, last.sent, last.received), (2040, 25, 25));
        assert_eq!(
            last.latency_p50_ms, 2.0,
            "both stretches' latencies: {last:?}"
        );
        assert!((last.latency_p99_ms - 50.0).abs() < 0.1, "{last:?}");
        assert_eq!(seconds.iter().map(|s| s.sent).sum::<u64>(), 35);
    }

    #[test]
    fn the_distribution_spans_the_latencies_in_doubling_bars() {
        let mut histogram = latency::new_histogram();
        assert!(distribution(&histogram).is_empty());
        for us in [450, 500, 1_500, 1_600, 1_700, 30_000] {
            latency::record(&mut histogram, us);
        }
        let bars = distribution(&histogram);
        assert_eq!(bars.iter().map(|b| b.count).sum::<u64>(), 6);
        assert_eq!(bars.first().unwrap().count, 2, "{bars:?}");
        assert_eq!(bars.last().unwrap().count, 1, "{bars:?}");
        assert!(bars.last().unwrap().upto_ms >= 30.0, "{bars:?}");
        for pair in bars.windows(2) {
            assert!(
                (pair[1].upto_ms / pair[0].upto_ms - 2.0).abs() < 1e-9,
                "{bars:?}"
            );
        }
        // Round bounds: 0.1 ms doubled, the first bar holding 450 and 500 µs.
        assert!((bars[0].upto_ms - 0.8).abs() < 1e-9, "{bars:?}");
    }

    #[test]
    fn the_document_says_its_version_units_and_verdict() {
        let mut record = RunRecord::starting(Settings {
            server: "127.0.0.1:7000".into(),
            bots: 3,
            ..Settings::default()
        });
        record.series.push(Second {
            at_ms: 1000,
            sent: 5,
            ..Second::default()
        });
        let passed = Document::new("chat", &record, serde_json::json!({"sent": 5}), vec![]);
        let json: serde_json::Value = serde_json::from_str(&passed.to_json()).unwrap();
        assert_eq!(json["schema_version"], SCHEMA_VERSION);
        assert_eq!(json["scenario"], "chat");
        assert_eq!(json["verdict"], "passed");
        assert_eq!(json["reasons"], serde_json::json!([]));
        assert_eq!(json["units"]["time"], "milliseconds (_ms)");
        assert_eq!(json["settings"]["bots"], 3);
        assert_eq!(json["series"][0]["sent"], 5);
        assert_eq!(json["results"]["sent"], 5);
        let failed = Document::new("chat", &record, (), vec!["2 of 10 deliveries lost".into()]);
        let json: serde_json::Value = serde_json::from_str(&failed.to_json()).unwrap();
        assert_eq!(json["verdict"], "failed");
        assert_eq!(json["reasons"][0], "2 of 10 deliveries lost");
    }
}
