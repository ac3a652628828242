//! Latency histograms: microseconds from 1 µs to 60 s at 3 significant figures, and their
//! percentiles ([`LatencySummary`]), as every report of the swarm records them.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded from 1 µs ...
pub const LATENCY_MIN_US: u64 = 1;
/// ... to 60 s ...
pub const LATENCY_MAX_US: u64 = 60_000_000;
/// ... with 3 significant figures.
pub const LATENCY_SIGFIG: u8 = 3;

/// A histogram of microseconds, 1 µs to 60 s, 3 significant figures. Values outside are
/// clamped into the range.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LATENCY_MIN_US, LATENCY_MAX_US, LATENCY_SIGFIG)
        .expect("constant histogram bounds are valid")
}

/// Records `us` in `histogram`, clamped to its range.
pub fn record(histogram: &mut Histogram<u64>, us: u64) {
    histogram.saturating_record(us.clamp(LATENCY_MIN_US, LATENCY_MAX_US));
}

/// Percentiles of a latency histogram, in microseconds. All zero when nothing was recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value.
    pub max: u64,
    /// Mean.
    pub mean: f64,
    /// Number of values.
    pub count: u64,
}

impl LatencySummary {
    /// The summary of `histogram`.
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: histogram.mean(),
            count: histogram.len(),
        }
    }
}
