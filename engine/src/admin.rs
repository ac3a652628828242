//! The admin listener: an HTTP listener of its own (`admin.listen`), never the game port.
//!
//! | path | what |
//! |---|---|
//! | `/` | the admin page: sessions and logged in, rooms, messages per second and tick time over the last 5 minutes as charts, disconnects by reason, the game's state (rooms and members), the sessions; refreshed every second from `/api/state` |
//! | `/metrics` | every metric, in the Prometheus text format |
//! | `/healthz` | `200 ok`: the process is up |
//! | `/readyz` | `200 ready` when the server listens, its DB worker is alive and no queue is full; else `503` with the reason |
//! | `/api/state` | the state the page shows, as JSON ([`State`]) |
//!
//! Once a second the tick loop publishes why it is not ready (for `/readyz`), and, while
//! someone has asked for `/api/state` in the last [`DEMAND_WINDOW`], a copy of [`State`] as
//! JSON (a few milliseconds of the tick loop for 5,000 sessions, so it is not built while
//! nobody looks). A request that finds the copy older than a second and a half waits for the
//! next one, and every request is answered from that one copy. The listener's tasks only read
//! what was published and the metrics' atomics: a scrape never touches the world.
//!
//! Against a slowloris or a flood: a request's head (at most 8 KiB) must arrive within
//! [`HEAD_TIMEOUT`], and the whole request take 5 s at most; one address holds at most
//! [`PER_ADDRESS`] connections at once and all together at most [`MAX_CONNECTIONS`]; a
//! connection past either is closed at once. So a few addresses that hold connections open
//! (or reconnect as soon as they are closed) take a few slots, and the health checks of
//! another address are answered; taking them all needs [`MAX_CONNECTIONS`] /
//! [`PER_ADDRESS`] addresses.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Registry;
use crate::world::{Game, World};

/// Connections served at once at most, from every address together.
pub const MAX_CONNECTIONS: usize = 256;
/// Connections served at once at most from one address.
pub const PER_ADDRESS: u32 = 8;
/// Bytes of one request at most.
const MAX_REQUEST: usize = 8 * 1024;
/// Time a request's head may take to arrive.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// Time one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Seconds of history in [`State::series`].
pub const SERIES_SECS: usize = 300;
/// Sessions listed in [`State::players`] at most.
pub const MAX_PLAYERS: usize = 1000;
/// [`State`] is built while it was asked for within this long.
pub const DEMAND_WINDOW: Duration = Duration::from_secs(5);
/// A published [`State`] older than this is waited on: the request wants the next one.
const STALE: Duration = Duration::from_millis(1500);
/// How long a request waits for a fresh [`State`] at most.
const FRESH_WAIT: Duration = Duration::from_millis(2500);

/// The page, self-contained: no script or style from elsewhere.
const PAGE: &str = include_str!("admin.html");

/// One second of the server's life.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sample {
    /// Seconds since the server started.
    pub t: u64,
    /// Sessions connected.
    pub sessions: usize,
    /// Sessions logged in.
    pub logged_in: usize,
    /// Rooms of the game, from `room_count` in its admin view ([`crate::world::Setup::admin`]); `null` for a game without
    /// rooms, and for the seconds in which nobody read `/api/state` (see [`Series`]).
    pub rooms: Option<usize>,
    /// Mean tick time in the second, in milliseconds.
    pub tick_ms_avg: f64,
    /// Longest tick in the second, in milliseconds.
    pub tick_ms_max: f64,
    /// Client messages taken for their handlers in the second.
    pub messages_per_sec: u64,
}

/// One session, as the page lists it.
#[derive(Clone, Debug, Serialize)]
pub struct Player {
    /// The session id.
    pub session: u64,
    /// Its username; empty before a login.
    pub username: String,
    /// Its address.
    pub peer: String,
    /// What it speaks: `tcp`, `tls`, `ws` or `wss`.
    pub transport: &'static str,
    /// Seconds since it connected.
    pub connected_secs: u64,
    /// Its connection dropped and it waits for its client to take it back (resumable
    /// sessions, within `net.resume_grace_secs`).
    pub away: bool,
}

/// What `/api/state` answers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct State {
    /// `server.name`.
    pub server: String,
    /// The tick length.
    pub tick_ms: u32,
    /// Seconds since the server started.
    pub uptime_secs: u64,
    /// Sessions connected.
    pub sessions: usize,
    /// Sessions logged in.
    pub logged_in: usize,
    /// Sessions away: their connection dropped, and they may be resumed.
    pub away: usize,
    /// Sessions, at most [`MAX_PLAYERS`], logged in ones first.
    pub players: Vec<Player>,
    /// What the game shows (admin view ([`crate::world::Setup::admin`])), e.g. rooms and their members.
    pub game: serde_json::Value,
    /// Sessions ended since the start, by reason.
    pub disconnects: BTreeMap<&'static str, u64>,
    /// The last [`SERIES_SECS`] seconds, oldest first.
    pub series: VecDeque<Sample>,
    /// Whether the server is ready; when not, why.
    pub ready: bool,
    /// Why not ready, empty when ready.
    pub not_ready: Vec<String>,
    /// The cluster as this node sees it; `None` for a server on its own.
    pub cluster: Option<ClusterView>,
}

/// `cluster` in `/api/state`.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterView {
    /// This node's name.
    pub node: String,
    /// The other nodes heard from, by name.
    pub peers: Vec<String>,
    /// Batches of other nodes that never arrived.
    pub batches_missing: u64,
}

/// What the tick loop publishes for the admin listener, once a second.
#[derive(Debug, Default)]
pub struct Published {
    /// The last `/api/state`, as JSON (shared from one publication to the next).
    pub json: Arc<str>,
    /// When `json` was built; `None` before the first time.
    pub json_at: Option<Instant>,
    /// Why `/readyz` fails; empty when ready.
    pub not_ready: Vec<String>,
}

/// When `/api/state` was last asked for: set by the listener, read by the tick loop (one
/// atomic, no lock).
#[derive(Debug)]
pub struct Demand {
    started: Instant,
    /// Milliseconds from `started` to the last request, plus one; 0 for never.
    last: AtomicU64,
}

impl Demand {
    /// Nobody has asked yet.
    pub fn new(started: Instant) -> Demand {
        Demand {
            started,
            last: AtomicU64::new(0),
        }
    }

    /// Someone asks now.
    pub fn ask(&self) {
        let ms = self.started.elapsed().as_millis() as u64 + 1;
        self.last.store(ms, Ordering::Relaxed);
    }

    /// Whether someone asked within [`DEMAND_WINDOW`] before `now`.
    pub fn recent(&self, now: Instant) -> bool {
        match self.last.load(Ordering::Relaxed) {
            0 => false,
            last => {
                let now_ms = now.saturating_duration_since(self.started).as_millis() as u64 + 1;
                now_ms.saturating_sub(last) <= DEMAND_WINDOW.as_millis() as u64
            }
        }
    }
}

/// The per-second series, kept by the tick loop.
///
/// Its rooms come from the game's admin view ([`crate::world::Setup::admin`]), which [`state_json`] builds anyway while
/// someone reads `/api/state`: building it every second only to count rooms would cost the
/// tick loop about 2 ms a second at 5,000 sessions in rooms of 20, and 10 ms at 20,000 in rooms
/// of 100. So a second's rooms are known when the state was built in it, `None` otherwise.
#[derive(Debug)]
pub struct Series {
    started: Instant,
    samples: VecDeque<Sample>,
    tick_sum: Duration,
    tick_max: Duration,
    ticks: u32,
    messages_at_last: u64,
    /// The rooms [`state_json`] saw since the last sample, for that sample. A cell, because
    /// `state_json` only reads the series.
    rooms_seen: Cell<Option<usize>>,
}

impl Series {
    /// No samples yet; the server started at `started`.
    pub fn new(started: Instant) -> Series {
        Series {
            started,
            samples: VecDeque::with_capacity(SERIES_SECS),
            tick_sum: Duration::ZERO,
            tick_max: Duration::ZERO,
            ticks: 0,
            messages_at_last: 0,
            rooms_seen: Cell::new(None),
        }
    }

    /// A tick took `took`.
    pub fn tick(&mut self, took: Duration) {
        self.tick_sum += took;
        self.tick_max = self.tick_max.max(took);
        self.ticks += 1;
    }

    /// Closes the second at `now`, with `sessions` connected, `logged_in` of them logged in,
    /// and `messages` taken in all since the start.
    pub fn sample(&mut self, now: Instant, sessions: usize, logged_in: usize, messages: u64) {
        // The rooms of the previous second, if the state was built after its sample.
        let seen = self.rooms_seen.take();
        if let Some(previous) = self.samples.back_mut() {
            previous.rooms = seen;
        }
        let ticks = self.ticks.max(1);
        let sample = Sample {
            t: now.duration_since(self.started).as_secs(),
            sessions,
            logged_in,
            rooms: None,
            tick_ms_avg: self.tick_sum.as_secs_f64() * 1000.0 / ticks as f64,
            tick_ms_max: self.tick_max.as_secs_f64() * 1000.0,
            messages_per_sec: messages.saturating_sub(self.messages_at_last),
        };
        if self.samples.len() == SERIES_SECS {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
        self.messages_at_last = messages;
        self.tick_sum = Duration::ZERO;
        self.tick_max = Duration::ZERO;
        self.ticks = 0;
    }
}

/// Why the server is not ready, empty when it is: its DB worker stopped (`db_alive` false), a
/// DB lane full (`lens` against `caps`, in [`LANES`](crate::metrics::LANES) order), or the
/// session event queue full.
pub fn not_ready(
    db_alive: bool,
    lens: [usize; 4],
    caps: [usize; 4],
    events_full: bool,
) -> Vec<String> {
    let mut reasons = Vec::new();
    if !db_alive {
        reasons.push("the DB worker has stopped".to_string());
    }
    for ((lane, len), cap) in crate::metrics::LANES.iter().zip(lens).zip(caps) {
        if len >= cap {
            reasons.push(format!("the DB worker's {lane} queue is full ({len} jobs)"));
        }
    }
    if events_full {
        reasons.push("the session event queue is full".to_string());
    }
    reasons
}

/// `room_count` in a game's admin view ([`crate::world::Setup::admin`]) JSON; `None` for a game that has no such field.
pub fn room_count(game: &serde_json::Value) -> Option<usize> {
    let count = game.get("room_count")?.as_u64()?;
    usize::try_from(count).ok()
}

/// The state of `world` for `/api/state`, as JSON, with `not_ready` the reasons it is not
/// ready. The rooms the game reports go into the newest sample of `series`, and are kept
/// there at its next sample.
pub fn state_json<G: Game>(
    world: &World<G>,
    series: &Series,
    now: Instant,
    not_ready: &[String],
) -> String {
    // Logged-in sessions first, then by session id; only the listed ones are copied.
    let mut order: Vec<(bool, u64, &crate::world::Client)> = world
        .clients
        .iter()
        .map(|(session, c)| (c.login.is_none(), session.0, &**c))
        .collect();
    let key = |e: &(bool, u64, &crate::world::Client)| (e.0, e.1);
    if order.len() > MAX_PLAYERS {
        order.select_nth_unstable_by_key(MAX_PLAYERS, key);
        order.truncate(MAX_PLAYERS);
    }
    order.sort_unstable_by_key(key);
    let players = order
        .into_iter()
        .map(|(_, session, c)| Player {
            session,
            username: c
                .login
                .as_ref()
                .map(|l| l.username.clone())
                .unwrap_or_default(),
            peer: c.peer.to_string(),
            transport: c.transport.label(),
            connected_secs: now.saturating_duration_since(c.connected_at).as_secs(),
            away: c.away,
        })
        .collect();
    let game = world.modules_admin();
    let rooms = room_count(&game);
    series.rooms_seen.set(rooms);
    let mut samples = series.samples.clone();
    if let Some(newest) = samples.back_mut() {
        newest.rooms = rooms;
    }
    let state = State {
        server: world.config.server_name.clone(),
        tick_ms: world.config.tick_ms,
        uptime_secs: now.saturating_duration_since(series.started).as_secs(),
        sessions: world.clients.len(),
        logged_in: world.users.len(),
        away: world.resume.away(),
        players,
        game,
        disconnects: world.stats.disconnects.clone(),
        series: samples,
        ready: not_ready.is_empty(),
        not_ready: not_ready.to_vec(),
        cluster: world.cluster.as_ref().map(|c| ClusterView {
            node: c.node().to_string(),
            peers: c.peers().into_iter().map(str::to_string).collect(),
            batches_missing: c.gaps,
        }),
    };
    serde_json::to_string(&state).unwrap_or_else(|_| "{}".to_string())
}

/// Serves the admin listener until `stop`.
pub fn spawn(
    listener: TcpListener,
    registry: Arc<Registry>,
    state: watch::Receiver<Arc<Published>>,
    demand: Arc<Demand>,
    stop: CancellationToken,
    tracker: &TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let addresses = Arc::new(Addresses::default());
    let inner = tracker.clone();
    tracker.spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((stream, peer)) = accepted else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            // Past either bound, the connection is closed unanswered: the admin listener
            // cannot be made to hold more than MAX_CONNECTIONS tasks, nor one address more
            // than PER_ADDRESS of them.
            let Some(slot) = addresses.take(peer.ip()) else {
                continue;
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                continue;
            };
            let registry = registry.clone();
            let state = state.clone();
            let demand = demand.clone();
            inner.spawn(async move {
                let _held = (permit, slot);
                let served = serve(stream, &registry, state, &demand);
                let _ = tokio::time::timeout(REQUEST_TIMEOUT, served).await;
            });
        }
    });
}

/// Connections being served, by address.
#[derive(Default)]
struct Addresses(std::sync::Mutex<HashMap<IpAddr, u32>>);

impl Addresses {
    /// One more connection from `ip`, unless it has [`PER_ADDRESS`] already; given back
    /// when the slot is dropped.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(ip).or_default();
        if *n >= PER_ADDRESS {
            return None;
        }
        *n += 1;
        Some(Slot(self.clone(), ip))
    }
}

/// A connection's place in [`Addresses`].
struct Slot(Arc<Addresses>, IpAddr);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.0 .0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.1);
            }
        }
    }
}

/// A response's body: the published state is shared, not copied.
enum Body {
    Static(&'static str),
    Owned(String),
    Shared(Arc<str>),
}

impl Body {
    fn as_bytes(&self) -> &[u8] {
        match self {
            Body::Static(s) => s.as_bytes(),
            Body::Owned(s) => s.as_bytes(),
            Body::Shared(s) => s.as_bytes(),
        }
    }
}

async fn serve(
    mut stream: TcpStream,
    registry: &Registry,
    state: watch::Receiver<Arc<Published>>,
    demand: &Demand,
) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(1024);
    let head = async {
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 || request.len() + n > MAX_REQUEST {
                return Ok(false);
            }
            request.extend_from_slice(&buf[..n]);
        }
        Ok::<bool, std::io::Error>(true)
    };
    // A head that does not come within HEAD_TIMEOUT (a slowloris) is closed unanswered.
    if !matches!(tokio::time::timeout(HEAD_TIMEOUT, head).await, Ok(Ok(true))) {
        return Ok(());
    }
    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, kind, body) = if method != "GET" {
        (
            "405 Method Not Allowed",
            "text/plain",
            Body::Static("only GET\n"),
        )
    } else {
        route(path, registry, state, demand).await
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.as_bytes().len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

async fn route(
    path: &str,
    registry: &Registry,
    mut state: watch::Receiver<Arc<Published>>,
    demand: &Demand,
) -> (&'static str, &'static str, Body) {
    match path {
        "/" => ("200 OK", "text/html; charset=utf-8", Body::Static(PAGE)),
        "/metrics" => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Body::Owned(crate::metrics::encode(registry)),
        ),
        "/healthz" => ("200 OK", "text/plain", Body::Static("ok\n")),
        // Browsers ask for it; there is none, and saying so is not an error.
        "/favicon.ico" => ("204 No Content", "text/plain", Body::Static("")),
        "/readyz" => {
            let published = state.borrow().clone();
            if published.not_ready.is_empty() {
                ("200 OK", "text/plain", Body::Static("ready\n"))
            } else {
                (
                    "503 Service Unavailable",
                    "text/plain",
                    Body::Owned(format!("not ready: {}\n", published.not_ready.join("; "))),
                )
            }
        }
        "/api/state" => {
            demand.ask();
            let fresh = |p: &Published| p.json_at.is_some_and(|at| at.elapsed() <= STALE);
            if !fresh(&state.borrow()) {
                // Not built while nobody asked: the tick loop builds it within a second.
                let _ = tokio::time::timeout(FRESH_WAIT, state.wait_for(|p| fresh(p))).await;
            }
            let json = state.borrow().json.clone();
            ("200 OK", "application/json", Body::Shared(json))
        }
        _ => ("404 Not Found", "text/plain", Body::Static("not found\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_series_keeps_the_last_five_minutes_one_sample_a_second() {
        let t0 = Instant::now();
        let mut series = Series::new(t0);
        for second in 1..=400u64 {
            series.tick(Duration::from_millis(2));
            series.tick(Duration::from_millis(4));
            series.sample(t0 + Duration::from_secs(second), 7, 5, second * 10);
        }
        assert_eq!(series.samples.len(), SERIES_SECS);
        let last = series.samples.back().unwrap();
        assert_eq!(
            (last.t, last.sessions, last.logged_in, last.messages_per_sec),
            (400, 7, 5, 10)
        );
        assert_eq!(last.rooms, None, "nobody read the state");
        assert!((last.tick_ms_avg - 3.0).abs() < 1e-9);
        assert!((last.tick_ms_max - 4.0).abs() < 1e-9);
        assert_eq!(series.samples.front().unwrap().t, 101);
    }

    #[test]
    fn the_series_counts_rooms_in_the_seconds_the_state_was_built() {
        use crate::handlers::testkit::Harness;
        use protocol::world::C2sRoomJoin;

        let mut h = Harness::new();
        for (name, room) in [("ann", "lobby"), ("bob", "lobby"), ("cyd", "docks")] {
            let session = h.guest(name);
            h.send(
                session,
                C2sRoomJoin {
                    room: room.into(),
                    ..Default::default()
                },
            );
        }
        let _anonymous = h.connect();
        let t0 = h.now();
        let mut series = Series::new(t0);
        let second = |n: u64| t0 + Duration::from_secs(n);
        let rooms_of = |json: &str| -> Vec<Option<u64>> {
            let state: serde_json::Value = serde_json::from_str(json).unwrap();
            let series = state["series"].as_array().unwrap();
            series.iter().map(|s| s["rooms"].as_u64()).collect()
        };

        // Seconds 1 and 2 are read, 3 is not, 4 is.
        series.sample(second(1), 4, 3, 0);
        let json = state_json(h.world(), &series, second(1), &[]);
        assert_eq!(
            rooms_of(&json),
            [Some(2)],
            "the newest sample has them at once"
        );
        series.sample(second(2), 4, 3, 0);
        state_json(h.world(), &series, second(2), &[]);
        series.sample(second(3), 4, 3, 0);
        series.sample(second(4), 4, 3, 0);
        let json = state_json(h.world(), &series, second(4), &[]);
        assert_eq!(rooms_of(&json), [Some(2), Some(2), None, Some(2)]);
        let state: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(state["series"][3]["sessions"], 4);
        assert_eq!(state["series"][3]["logged_in"], 3);
        assert_eq!(state["game"]["room_count"], 2);
    }

    #[test]
    fn rooms_are_counted_for_games_that_report_them_and_null_otherwise() {
        assert_eq!(room_count(&serde_json::json!({"room_count": 12})), Some(12));
        assert_eq!(room_count(&serde_json::Value::Null), None);
        assert_eq!(room_count(&serde_json::json!({"entities": 3})), None);
        let mut series = Series::new(Instant::now());
        series.sample(Instant::now(), 1, 1, 0);
        let json = serde_json::to_value(series.samples.back().unwrap()).unwrap();
        assert_eq!(json["rooms"], serde_json::Value::Null, "{json}");
    }

    #[test]
    fn not_ready_names_each_reason() {
        assert!(not_ready(true, [0, 5, 0, 0], [10, 10, 10, 10], false).is_empty());
        assert_eq!(
            not_ready(false, [10, 0, 0, 3], [10, 10, 10, 3], true),
            [
                "the DB worker has stopped",
                "the DB worker's write queue is full (10 jobs)",
                "the DB worker's register queue is full (3 jobs)",
                "the session event queue is full",
            ]
        );
    }

    #[test]
    fn demand_lasts_its_window() {
        let t0 = Instant::now();
        let demand = Demand::new(t0);
        assert!(!demand.recent(t0), "nobody asked");
        demand.ask();
        let asked = Instant::now();
        assert!(demand.recent(asked));
        assert!(demand.recent(asked + DEMAND_WINDOW - Duration::from_millis(10)));
        assert!(!demand.recent(asked + DEMAND_WINDOW + Duration::from_millis(10)));
    }

    #[test]
    fn the_page_uses_nothing_from_elsewhere() {
        for outside in ["src=", "href=", "<link", "@import", "import("] {
            assert!(!PAGE.contains(outside), "{outside}");
        }
        assert!(PAGE.contains("/api/state"));
    }
}
