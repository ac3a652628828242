//! The engine's metrics, in the Prometheus text format on the admin listener's `/metrics`
//! (through `prometheus-client`).
//!
//! Every metric is made when the server starts, and every labelled one for each of its labels
//! (message types, error codes, disconnect reasons, DB lanes), so that recording is an atomic
//! add on a handle the tick loop holds: no lookup, no lock per message. The histograms (tick
//! time and its phases, DB job time) are recorded once per tick or per job. A game registers
//! metrics of its own in the same registry ([`crate::world::Setup::metrics`]).

use std::sync::atomic::AtomicU64;

pub use prometheus_client;
use prometheus_client::encoding::EncodeMetric;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::TypedMetric;
pub use prometheus_client::registry::Registry;

use net::{DisconnectReason, Transport};

/// The phases of a tick, timed each.
pub const PHASES: [&str; 4] = ["events", "dispatch", "timers", "flush"];

/// The DB worker's queues, in the order they are taken.
pub const LANES: [&str; 4] = ["write", "quick", "login", "register"];

/// The error codes, by number (0 is unused).
const ERROR_CODES: [&str; 18] = [
    "unspecified",
    "bad_request",
    "not_authenticated",
    "already_authenticated",
    "replaced",
    "invalid_credentials",
    "username_taken",
    "invalid_token",
    "user_offline",
    "room_full",
    "not_in_room",
    "rate_limited",
    "server_full",
    "internal",
    "too_many_connections",
    "login_timeout",
    "unavailable",
    "session_lost",
];

/// What became of resumable sessions, in the order of [`Metrics`]'s handles.
const RESUME_OUTCOMES: [&str; 4] = ["resumed", "refused", "expired", "overflowed"];

type Labels = Vec<(&'static str, String)>;

/// A counter whose value the handle's owner keeps (no lock to add).
pub type Count = Counter<u64, AtomicU64>;

/// The engine's metrics: handles to record with, and the registry they are in.
#[derive(Clone)]
pub struct Metrics {
    /// Sessions connected.
    pub sessions: Gauge,
    /// Sessions logged in.
    pub logged_in: Gauge,
    /// Connections taken.
    pub accepted: Count,
    /// Connections refused because the server was full.
    pub refused_server_full: Count,
    /// Connections refused because their address held its share.
    pub refused_per_address: Count,
    disconnects: Vec<Count>,
    transports: Vec<Count>,
    /// When the TLS certificate in use expires, in Unix seconds (0 without TLS).
    pub tls_expiry: Gauge,
    /// TLS certificates loaded while running.
    pub tls_reloads: Count,
    /// TLS certificates that failed to load while running (the one in use stayed).
    pub tls_reload_failures: Count,
    /// Frames received.
    pub frames_in: Count,
    /// Bytes of frames received, headers included.
    pub bytes_in: Count,
    /// Frames sent.
    pub frames_out: Count,
    /// Bytes of frames sent, headers included.
    pub bytes_out: Count,
    messages_in: Vec<Option<Count>>,
    unknown_messages: Count,
    handler_errors: Vec<Count>,
    /// Requests dropped by the per-session rate limit.
    pub rate_limited: Count,
    /// Whole ticks.
    pub tick: Histogram,
    phases: Vec<Histogram>,
    /// Ticks over their budget.
    pub over_budget: Count,
    /// Session events waiting for the tick loop.
    pub event_queue: Gauge,
    /// 1 while the storage answers, 0 while it is unavailable (its database away).
    pub storage_available: Gauge,
    db_queues: Vec<Gauge>,
    db_jobs: Vec<Histogram>,
    /// Other nodes of the cluster heard from.
    pub cluster_nodes: Gauge,
    /// Bytes of batches this node published to the cluster.
    pub cluster_sent_bytes: Count,
    /// Bytes of batches this node received from the cluster.
    pub cluster_received_bytes: Count,
    /// Batches dropped because a queue between the tick loop and NATS was full.
    pub cluster_dropped: Count,
    /// Batches of other nodes that never arrived (gaps in their sequence numbers).
    pub cluster_missing: Count,
    /// Resumable sessions whose connection dropped: they went away, for the grace window.
    pub resume_away: Count,
    /// Sessions taken back by a resume.
    pub resume_resumed: Count,
    /// Resumes refused.
    pub resume_refused: Count,
    /// Away sessions whose client did not come back within the grace window.
    pub resume_expired: Count,
    /// Replay buffers that overflowed.
    pub resume_overflowed: Count,
    /// Frames sent again by resumes.
    pub resume_replayed: Count,
    /// Sessions away now.
    pub sessions_away: Gauge,
    /// Bytes held in replay buffers.
    pub resume_buffer_bytes: Gauge,
    unencodable: Family<Labels, Count>,
}

/// A histogram of durations in seconds, from 50 µs to about 6.5 s.
fn durations() -> Histogram {
    Histogram::new(exponential_buckets(0.00005, 2.0, 18))
}

/// The handle of `family` for `label` = `value`.
fn one<M: Clone, C: MetricConstructor<M>>(
    family: &Family<Labels, M, C>,
    label: &'static str,
    value: &str,
) -> M {
    family.get_or_create(&vec![(label, value.into())]).clone()
}

/// `family`, registered as `name`, and its handles for each of `values` of `label`, made now
/// so that recording never looks one up.
fn labelled<M, C>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    family: Family<Labels, M, C>,
    (label, values): (&'static str, &[&str]),
) -> (Family<Labels, M, C>, Vec<M>)
where
    M: EncodeMetric + TypedMetric + Clone + std::fmt::Debug + Send + Sync + 'static,
    C: MetricConstructor<M> + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    registry.register(name, help, family.clone());
    let handles = values.iter().map(|v| one(&family, label, v)).collect();
    (family, handles)
}

impl Metrics {
    /// Counts `count` frames of `message` that could not be encoded.
    pub fn unencodable(&self, message: &'static str, count: u64) {
        one(&self.unencodable, "message", message).inc_by(count);
    }

    /// The engine's metrics, registered in `registry` under `world_`; `messages` are the
    /// message types (id, name) the dispatcher takes.
    pub fn new(registry: &mut Registry, messages: &[(u16, &'static str)]) -> Metrics {
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Count::default();
            registry.register(name, help, c.clone());
            c
        };
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let sessions = gauge(registry, "world_sessions", "Sessions connected");
        let logged_in = gauge(registry, "world_sessions_logged_in", "Sessions logged in");
        let accepted = counter(
            registry,
            "world_connections_accepted",
            "Connections taken as sessions",
        );
        let (_, refused) = labelled(
            registry,
            "world_connections_refused",
            "Connections refused, by reason",
            Family::<Labels, Count>::default(),
            ("reason", &["server_full", "too_many_connections"]),
        );
        let Ok([refused_server_full, refused_per_address]) = <[Count; 2]>::try_from(refused) else {
            unreachable!("two reasons, two handles");
        };
        let (_, disconnects) = labelled(
            registry,
            "world_disconnects",
            "Sessions ended, by reason",
            Family::<Labels, Count>::default(),
            ("reason", &DisconnectReason::LABELS),
        );
        let labels: Vec<&str> = Transport::ALL.iter().map(|t| t.label()).collect();
        let (_, transports) = labelled(
            registry,
            "world_connections_set_up",
            "Connections set up, by what they speak: tcp, tls, ws and wss sessions; http and https requests (the page, errors)",
            Family::<Labels, Count>::default(),
            ("transport", &labels),
        );
        let tls_expiry = gauge(
            registry,
            "world_tls_certificate_expiry_timestamp_seconds",
            "When the TLS certificate in use expires, in Unix seconds (0 without TLS)",
        );
        let tls_reloads = counter(
            registry,
            "world_tls_certificate_reloads",
            "TLS certificates loaded while running (SIGHUP or the files changed)",
        );
        let tls_reload_failures = counter(
            registry,
            "world_tls_certificate_reload_failures",
            "TLS certificates that failed to load while running; the one in use stayed",
        );
        let frames_in = counter(registry, "world_frames_in", "Frames received");
        let bytes_in = counter(
            registry,
            "world_received_bytes",
            "Bytes of frames received, headers included",
        );
        let frames_out = counter(registry, "world_frames_out", "Frames sent");
        let bytes_out = counter(
            registry,
            "world_sent_bytes",
            "Bytes of frames sent, headers included",
        );
        let (by_type, _) = labelled(
            registry,
            "world_messages_in",
            "Client messages taken for their handler, by message type",
            Family::<Labels, Count>::default(),
            ("message", &[]),
        );
        let mut messages_in = vec![None; 1000];
        for &(id, name) in messages {
            if let Some(slot) = id
                .checked_sub(2000)
                .and_then(|i| messages_in.get_mut(i as usize))
            {
                *slot = Some(one(&by_type, "message", name));
            }
        }
        let unknown_messages = one(&by_type, "message", "unknown");
        let (_, handler_errors) = labelled(
            registry,
            "world_handler_errors",
            "Requests answered with S2C_Error, by error code",
            Family::<Labels, Count>::default(),
            ("code", &ERROR_CODES),
        );
        let rate_limited = counter(
            registry,
            "world_rate_limited_requests",
            "Requests dropped by the per-session rate limit",
        );
        let tick = durations();
        registry.register(
            "world_tick_duration_seconds",
            "Time of one tick",
            tick.clone(),
        );
        let (_, phases) = labelled(
            registry,
            "world_tick_phase_duration_seconds",
            "Time of one phase of a tick: events (new connections and frames in), dispatch (the handlers), timers (and the game's tick), flush (frames and closes out)",
            Family::new_with_constructor(durations as fn() -> Histogram),
            ("phase", &PHASES),
        );
        let over_budget = counter(
            registry,
            "world_ticks_over_budget",
            "Ticks that took longer than the tick length",
        );
        let event_queue = gauge(
            registry,
            "world_session_event_queue",
            "Session events (frames in, closes) waiting for the tick loop",
        );
        let storage_available = gauge(
            registry,
            "world_storage_available",
            "1 while the storage answers, 0 while its database is away (the server connects again by itself)",
        );
        storage_available.set(1);
        let (_, db_queues) = labelled(
            registry,
            "world_db_queue",
            "Jobs waiting for the DB worker, by queue",
            Family::<Labels, Gauge>::default(),
            ("lane", &LANES),
        );
        let (_, db_jobs) = labelled(
            registry,
            "world_db_job_duration_seconds",
            "Time the DB worker took for one job, by queue",
            Family::new_with_constructor(durations as fn() -> Histogram),
            ("lane", &LANES),
        );
        let cluster_nodes = gauge(
            registry,
            "world_cluster_nodes",
            "Other nodes of the cluster heard from",
        );
        let cluster_sent_bytes = counter(
            registry,
            "world_cluster_sent_bytes",
            "Bytes of batches published to the other nodes",
        );
        let cluster_received_bytes = counter(
            registry,
            "world_cluster_received_bytes",
            "Bytes of batches received from the other nodes",
        );
        let cluster_dropped = counter(
            registry,
            "world_cluster_batches_dropped",
            "Batches dropped because a queue between the tick loop and NATS was full",
        );
        let cluster_missing = counter(
            registry,
            "world_cluster_batches_missing",
            "Batches of other nodes that never arrived",
        );
        let resume_away = counter(
            registry,
            "world_sessions_went_away",
            "Resumable sessions whose connection dropped: they stay in the world for net.resume_grace_secs, waiting for their client",
        );
        let (_, resumes) = labelled(
            registry,
            "world_resumes",
            "What became of resumable sessions: taken back (resumed), resumes refused, not back within the grace window (expired), replay buffer overflowed",
            Family::<Labels, Count>::default(),
            ("outcome", &RESUME_OUTCOMES),
        );
        let Ok([resume_resumed, resume_refused, resume_expired, resume_overflowed]) =
            <[Count; 4]>::try_from(resumes)
        else {
            unreachable!("four outcomes, four handles");
        };
        let resume_replayed = counter(
            registry,
            "world_resume_replayed_frames",
            "Frames sent again to clients that took their session back",
        );
        let sessions_away = gauge(
            registry,
            "world_sessions_away",
            "Resumable sessions whose connection dropped, waiting for their client",
        );
        let resume_buffer_bytes = gauge(
            registry,
            "world_resume_buffer_bytes",
            "Bytes held in the replay buffers of resumable sessions (at most net.resume_total_mib)",
        );
        let unencodable = Family::<Labels, Count>::default();
        registry.register(
            "world_frames_unencodable",
            "Frames the world could not send because they did not fit in a frame (65,535 bytes), by message type",
            unencodable.clone(),
        );
        Metrics {
            resume_away,
            resume_resumed,
            resume_refused,
            resume_expired,
            resume_overflowed,
            resume_replayed,
            sessions_away,
            resume_buffer_bytes,
            unencodable,
            cluster_nodes,
            cluster_sent_bytes,
            cluster_received_bytes,
            cluster_dropped,
            cluster_missing,
            sessions,
            logged_in,
            accepted,
            refused_server_full,
            refused_per_address,
            disconnects,
            transports,
            tls_expiry,
            tls_reloads,
            tls_reload_failures,
            frames_in,
            bytes_in,
            frames_out,
            bytes_out,
            messages_in,
            unknown_messages,
            handler_errors,
            rate_limited,
            tick,
            phases,
            over_budget,
            event_queue,
            storage_available,
            db_queues,
            db_jobs,
        }
    }

    /// Metrics that go nowhere (a world without a server: tests, tools).
    pub fn unregistered() -> Metrics {
        Metrics::new(&mut Registry::default(), &[])
    }

    /// The state of resumable sessions at the end of a tick: the gauges, and what the
    /// counters gained since `before`.
    pub fn resumes(&self, resume: &crate::resume::Resumes, before: &crate::resume::ResumeStats) {
        let now = &resume.stats;
        self.sessions_away.set(resume.away() as i64);
        self.resume_buffer_bytes.set(resume.held_bytes() as i64);
        self.resume_away.inc_by(now.went_away - before.went_away);
        self.resume_resumed.inc_by(now.resumed - before.resumed);
        self.resume_replayed.inc_by(now.replayed - before.replayed);
        self.resume_refused.inc_by(now.refused - before.refused);
        self.resume_expired.inc_by(now.expired - before.expired);
        self.resume_overflowed
            .inc_by(now.overflowed - before.overflowed);
    }

    /// A session ended for `reason`.
    pub fn disconnect(&self, reason: &DisconnectReason) {
        let index = DisconnectReason::LABELS
            .iter()
            .position(|l| *l == reason.label())
            .unwrap_or(0);
        self.disconnects[index].inc();
    }

    /// A connection was set up as `transport`.
    pub fn set_up(&self, transport: Transport) {
        if let Some(index) = Transport::ALL.iter().position(|t| *t == transport) {
            self.transports[index].inc();
        }
    }

    /// A message of `id` was taken for its handler.
    pub fn message_in(&self, id: u16) {
        match id
            .checked_sub(2000)
            .and_then(|i| self.messages_in.get(i as usize))
        {
            Some(Some(counter)) => counter.inc(),
            _ => self.unknown_messages.inc(),
        };
    }

    /// A request was answered with the error `code`.
    pub fn handler_error(&self, code: i32) {
        if let Some(counter) = usize::try_from(code)
            .ok()
            .and_then(|i| self.handler_errors.get(i))
        {
            counter.inc();
        }
    }

    /// One phase of a tick took `seconds`.
    pub fn phase(&self, phase: usize, seconds: f64) {
        if let Some(h) = self.phases.get(phase) {
            h.observe(seconds);
        }
    }

    /// The jobs waiting in each DB lane ([`LANES`] order).
    pub fn db_queues(&self, lens: [usize; 4]) {
        for (gauge, len) in self.db_queues.iter().zip(lens) {
            gauge.set(len as i64);
        }
    }

    /// The DB worker's job time histograms, [`LANES`] order, for its thread.
    pub fn db_jobs(&self) -> Vec<Histogram> {
        self.db_jobs.clone()
    }
}

/// The registry as Prometheus text (OpenMetrics).
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String does not fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_help_and_labelled_ones_exist_before_anything_happened() {
        let mut registry = Registry::default();
        let m = Metrics::new(&mut registry, &[(2001, "C2S_Ping")]);
        m.message_in(2001);
        m.message_in(2999);
        m.disconnect(&DisconnectReason::IdleTimeout);
        m.handler_error(11);
        m.tick.observe(0.003);
        m.set_up(net::Transport::Wss);
        let text = encode(&registry);
        for line in [
            "# HELP world_sessions Sessions connected.",
            "world_messages_in_total{message=\"C2S_Ping\"} 1",
            "world_messages_in_total{message=\"unknown\"} 1",
            "world_disconnects_total{reason=\"idle_timeout\"} 1",
            "world_disconnects_total{reason=\"slow_consumer\"} 0",
            "world_handler_errors_total{code=\"rate_limited\"} 1",
            "world_tick_duration_seconds_count 1",
            "world_db_queue{lane=\"register\"} 0",
            "world_connections_refused_total{reason=\"server_full\"} 0",
            "world_connections_set_up_total{transport=\"wss\"} 1",
            "world_connections_set_up_total{transport=\"tcp\"} 0",
            "world_disconnects_total{reason=\"websocket_error\"} 0",
            "world_tls_certificate_expiry_timestamp_seconds 0",
            "world_storage_available 1",
            "world_resumes_total{outcome=\"expired\"} 0",
            "world_sessions_away 0",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        let types = text.lines().filter(|l| l.starts_with("# TYPE")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP")).count();
        assert_eq!(types, helps);
        assert_eq!(types, 33, "one TYPE and one HELP line per metric");
    }
}
