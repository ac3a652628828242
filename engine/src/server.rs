//! The tokio driver of the [`Core`]: the one place where sockets, queues and the clock meet
//! the server's logic.
//!
//! Every `tick_ms` it drains the accepted connections and the session events (each bounded per
//! tick) into the core's inputs, runs [`Core::tick`], and carries out its output: starts the
//! sessions taken, refuses the others (see [`Refuser`]), hands each session its batch, closes,
//! and gives credit back. A batch a session refuses (its peer does not read) aborts it, and the
//! core hears of it at the next tick. The driver decides nothing else.
//!
//! It never awaits a socket: network tasks and the loop meet only at bounded queues.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use config::ServerConfig;
use net::{
    DisconnectReason, Refusal, Refuser, SendError, ServerService, ServiceEvent, Session,
    SessionConfig, SessionEvent,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, Demand, Published, Series};
use crate::assemble::Parts;
use crate::cluster::link::{unavailable, Link, LinkMetrics};
use crate::core::{Core, Input, Output};
use crate::db::{AuthSettings, DbThread, DbWorker};
use crate::ports::Ports;
use crate::record::{RecordTo, Recorder};
use crate::storage::{MemoryStorage, Storage, StorageError};
use crate::world::Game;
use crate::world::{Now, Stats};

pub use crate::error::ServerError;

/// The config key naming the database of `config`, and its value as it may be shown.
fn storage_key(config: &ServerConfig) -> (&'static str, String) {
    match config.storage.backend.as_str() {
        "postgres" => (
            "storage.postgres_url",
            config::redact_password(&config.storage.postgres_url),
        ),
        _ => ("storage.path", config.storage.path.display().to_string()),
    }
}

fn storage_error(config: &ServerConfig, source: StorageError) -> ServerError {
    let (key, value) = storage_key(config);
    ServerError::Storage { key, value, source }
}

/// Opens the storage of `config`: the SQLite file `storage.path` (the embedded default; empty
/// until [`ServerConfig::apply_game_defaults`] names it), or with `storage.backend =
/// "postgres"` the PostgreSQL database `storage.postgres_url`, as the node `cluster.node`.
/// Migrates it; refuses, naming the key, a database it cannot open or
/// reach, or whose schema is newer than this server's.
pub fn open_storage(config: &ServerConfig) -> Result<Box<dyn Storage>, ServerError> {
    if config.storage.backend == "sqlite" && config.storage.path.as_os_str().is_empty() {
        return Err(storage_error(
            config,
            StorageError::Database(
                "no file named: set it, or let ServerConfig::apply_game_defaults name it".into(),
            ),
        ));
    }
    let storage: Box<dyn Storage> = match config.storage.backend.as_str() {
        "memory" => {
            spdlog::info!(
                "storage: in memory (storage.backend = \"memory\"): accounts, tokens and history last until the server stops"
            );
            Box::new(MemoryStorage::new())
        }
        #[cfg(feature = "postgres")]
        "postgres" => {
            let node = config.cluster.node_name(config.server.listen);
            let storage =
                crate::storage::PostgresStorage::connect(&config.storage.postgres_url, &node)
                    .map_err(|source| storage_error(config, source))?;
            spdlog::info!(
                "storage: PostgreSQL {} as node {node}",
                storage_key(config).1
            );
            Box::new(storage)
        }
        #[cfg(feature = "sqlite")]
        "sqlite" => {
            let path = &config.storage.path;
            let storage = crate::storage::SqliteStorage::open_checked(
                path,
                config.storage.synchronous == "full",
                crate::storage::StartupCheck::named(&config.storage.startup_check),
            )
            .map_err(|source| storage_error(config, source))?;
            spdlog::info!("storage: database {}", path.display());
            Box::new(storage)
        }
        other => {
            return Err(ServerError::NotBuilt {
                key: "storage.backend",
                value: other.to_string(),
                feature: if other == "postgres" {
                    "postgres"
                } else {
                    "sqlite"
                },
            })
        }
    };
    Ok(storage)
}

/// Closes what the last run on `storage` left open, and starts the DB worker on it.
pub fn start_db(config: &ServerConfig, storage: Box<dyn Storage>) -> Result<DbThread, ServerError> {
    start_db_timed(config, storage, None)
}

/// [`start_db`], with the DB worker timing each job into `job_times` (see
/// [`DbThread::spawn_timed`]).
fn start_db_timed(
    config: &ServerConfig,
    mut storage: Box<dyn Storage>,
    job_times: Option<Vec<prometheus_client::metrics::histogram::Histogram>>,
) -> Result<DbThread, ServerError> {
    // On a thread of its own: a storage may run a runtime of its own (PostgreSQL's client
    // does), which cannot be driven from this async one. A storage that fails is dropped
    // there too, for the same reason.
    let (storage, recovered) = std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let recovered = storage.recover(protocol::now_us())?;
                Ok((storage, recovered))
            })
            .join()
            .unwrap_or_else(|_| Err(StorageError::Database("recovery panicked".into())))
    })
    .map_err(|source| storage_error(config, source))?;
    if recovered.sessions > 0 {
        spdlog::warn!(
            "storage: the last run stopped without closing {} sessions; recorded as \"{}\"",
            recovered.sessions,
            crate::storage::UNCLEAN_STOP
        );
    }
    let worker = DbWorker::new(storage, AuthSettings::from(config)).map_err(ServerError::Worker)?;
    DbThread::spawn_timed(worker, config.storage.queue, job_times)
        .map_err(|e| ServerError::Worker(e.to_string()))
}

/// Binds the listener of `key` at `addr`, if any.
async fn bind_one(
    key: &'static str,
    addr: Option<std::net::SocketAddr>,
) -> Result<Option<TcpListener>, ServerError> {
    match addr {
        Some(addr) => bind_port(key, addr).await.map(Some),
        None => Ok(None),
    }
}

/// Binds the port of the config key `key` (`server.listen`, `web.listen`, `tls.listen`,
/// `admin.listen`) at `addr`; when the address is in use, the error says which option gives
/// the server another.
pub async fn bind_port(
    key: &'static str,
    addr: std::net::SocketAddr,
) -> Result<TcpListener, ServerError> {
    net::listen(addr).map_err(|source| {
        let hint = match (source.kind(), key) {
            (std::io::ErrorKind::AddrInUse, "server.listen") => {
                " (another server on this machine? give each its own: --listen ADDR:PORT)"
            }
            (std::io::ErrorKind::AddrInUse, "web.listen") => {
                " (another server on this machine? give each its own: --web ADDR:PORT, or --web off)"
            }
            (std::io::ErrorKind::AddrInUse, "admin.listen") => {
                " (another server on this machine? give each its own: --admin ADDR:PORT)"
            }
            (std::io::ErrorKind::AddrInUse, _) => {
                " (another server on this machine? give each its own: --tls-listen ADDR:PORT)"
            }
            _ => "",
        };
        ServerError::Listen {
            key,
            addr,
            source,
            hint,
        }
    })
}

/// Capacity of the queue of accepted connections waiting for the tick loop; also the most
/// taken from it in one tick.
const SERVICE_QUEUE: usize = 1024;

/// Refused connections answered gracefully at once; past it they are answered without waiting.
const MAX_REFUSALS_IN_FLIGHT: usize = 256;

/// How long a refused connection may take to be told why.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// At most one over-budget warning per this period.
const OVER_BUDGET_WARN_EVERY: Duration = Duration::from_secs(5);

/// The tag of the game port's connections.
const GAME_PORT: usize = 0;
/// The tag of the web port's connections.
const WEB_PORT: usize = 1;
/// The tag of the TLS port's connections.
const TLS_PORT: usize = 2;

/// The driver: the core, and the sockets and queues around it.
struct Server<G: Game> {
    config: ServerConfig,
    /// How the sessions of each port are set up, by the port's tag: [`GAME_PORT`],
    /// [`WEB_PORT`], [`TLS_PORT`].
    session_configs: [SessionConfig; 3],
    core: Core<G>,
    /// Where every tick's inputs are recorded, with `--record`.
    recorder: Option<Recorder>,
    /// The DB worker's thread: the core's [`Output::db`] goes to it, and what it did comes
    /// back as [`Input::Db`].
    db: DbThread,
    sessions: crate::hash::SessionMap<Session>,
    /// Streams accepted this tick, by token, with their port's tag, until the core decides.
    accepted: HashMap<u64, (TcpStream, usize)>,
    next_token: u64,
    inputs: Vec<Input>,
    tracker: TaskTracker,
    refuser: Refuser,
    events_tx: mpsc::Sender<SessionEvent>,
    over_budget_since_warn: u64,
    last_warn: Option<Instant>,
    series: Series,
    next_sample: Instant,
    publish: watch::Sender<Arc<Published>>,
    /// When `/api/state` was last asked for.
    demand: Arc<Demand>,
    /// The last `/api/state` built, and when.
    state: (Arc<str>, Option<Instant>),
    /// The NATS connection of a cluster node.
    link: Option<Link>,
    /// When a dropped cluster batch was last warned of.
    cluster_warned: Option<Instant>,
}

/// A server's ports, bound, and its TLS certificate, checked: what [`run_bound`] serves on.
/// [`bind`] makes it before anything else (the database, NATS) is touched, so that a port in
/// use or a certificate that cannot serve stops a server at once, in one line.
pub struct Listeners {
    game: TcpListener,
    web: Option<TcpListener>,
    tls: Option<TcpListener>,
    admin: Option<(std::net::SocketAddr, TcpListener)>,
    ports: Ports,
}

/// Checks the TLS certificate of `config` and binds its web, TLS and admin ports beside the
/// game port `game`, for a server of the game `G`.
pub async fn bind<G: Game>(
    game: TcpListener,
    config: &ServerConfig,
) -> Result<Listeners, ServerError> {
    let game_addr = game.local_addr().unwrap_or(config.server.listen);
    let ports = Ports::new::<G>(config, game_addr)?;
    // A server that cannot have the admin listener it was asked for does not start at all.
    let admin = match config.admin.address() {
        Some(addr) => Some((addr, bind_port("admin.listen", addr).await?)),
        None => None,
    };
    Ok(Listeners {
        game,
        web: bind_one("web.listen", config.web.address()).await?,
        tls: bind_one("tls.listen", config.tls.address()).await?,
        admin,
        ports,
    })
}

/// Runs `game` on `listener` (the game port; the other ports `config` names are bound here,
/// see [`bind`]), with `storage` for accounts, tokens and what the game writes, until
/// `shutdown` completes; then stops accepting, finishes the tick, flushes and closes every
/// session, lets the DB worker finish its writes, and returns the final counters.
pub async fn run_game<G: Game>(
    listener: TcpListener,
    config: ServerConfig,
    game: G,
    storage: Box<dyn Storage>,
    shutdown: impl Future<Output = ()>,
) -> Result<Stats, ServerError> {
    let listeners = bind::<G>(listener, &config).await?;
    run_bound(listeners, config, game, storage, shutdown).await
}

/// [`run_game`] on ports bound already ([`bind`]).
pub async fn run_bound<G: Game>(
    listeners: Listeners,
    config: ServerConfig,
    game: G,
    storage: Box<dyn Storage>,
    shutdown: impl Future<Output = ()>,
) -> Result<Stats, ServerError> {
    run_recording(listeners, config, game, storage, None, shutdown).await
}

/// [`run_bound`], recording every input of the world when `record` says where
/// ([`crate::record`]).
pub async fn run_recording<G: Game>(
    listeners: Listeners,
    mut config: ServerConfig,
    game: G,
    storage: Box<dyn Storage>,
    record: Option<RecordTo>,
    shutdown: impl Future<Output = ()>,
) -> Result<Stats, ServerError> {
    let Listeners {
        game: listener,
        web: web_listener,
        tls: tls_listener,
        admin,
        ports,
    } = listeners;
    config.apply_game_defaults(G::NAME, G::STORAGE);
    let parts = Parts::<G>::new()?;
    let metrics = &parts.metrics;
    let db = start_db_timed(&config, storage, Some(metrics.db_jobs()))?;
    let tracker = TaskTracker::new();
    let stop_accepting = CancellationToken::new();
    // NATS before the game port is announced too: a node that cannot reach its cluster does
    // not start alone.
    let link_tracker = TaskTracker::new();
    let node = config.cluster.node_name(config.server.listen);
    let incarnation: u64 = rand::random();
    let link = if config.cluster.nats_url.is_empty() {
        None
    } else if cfg!(not(feature = "nats")) {
        return Err(ServerError::NotBuilt {
            key: "cluster.nats_url",
            value: config::redact_password(&config.cluster.nats_url),
            feature: "nats",
        });
    } else {
        let link_metrics = LinkMetrics {
            sent_bytes: metrics.cluster_sent_bytes.clone(),
            received_bytes: metrics.cluster_received_bytes.clone(),
            dropped: metrics.cluster_dropped.clone(),
        };
        let link = Link::connect(
            &config.cluster.nats_url,
            &node,
            incarnation,
            (config.cluster.outage_buffer_mib as usize).saturating_mul(1 << 20),
            link_metrics,
            stop_accepting.clone(),
            &link_tracker,
        )
        .await
        .map_err(|reason| ServerError::Cluster {
            url: config::redact_password(&config.cluster.nats_url),
            reason,
        })?;
        spdlog::info!(
            "cluster: node {node} on {}",
            config::redact_password(&config.cluster.nats_url)
        );
        Some(link)
    };
    let (service_tx, mut service_rx) = mpsc::channel(SERVICE_QUEUE);
    let (events_tx, mut events_rx) = mpsc::channel(config.net.event_queue);
    if let Ok(addr) = listener.local_addr() {
        spdlog::info!(
            "server: {} listening on {addr} (tick {} ms)",
            config.server.name,
            config.server.tick_ms
        );
    }
    ServerService::spawn(
        listener,
        GAME_PORT as u64,
        service_tx.clone(),
        stop_accepting.clone(),
        &tracker,
    );
    let path = &config.web.path;
    for (listener, port) in [(web_listener, WEB_PORT), (tls_listener, TLS_PORT)] {
        let Some(listener) = listener else { continue };
        if let Ok(addr) = listener.local_addr() {
            if port == WEB_PORT {
                spdlog::info!("web: the page on http://{addr}/, WebSocket on ws://{addr}{path}");
            } else {
                spdlog::info!(
                    "tls: frames on {addr}, the page on https://{addr}/, WebSocket on wss://{addr}{path}"
                );
            }
        }
        ServerService::spawn(
            listener,
            port as u64,
            service_tx.clone(),
            stop_accepting.clone(),
            &tracker,
        );
    }
    drop(service_tx);

    let started = Instant::now();
    let node = link.is_some().then_some((node, incarnation));
    let recorder = match record {
        Some(to) => {
            let header = crate::record::Header {
                game: G::NAME.to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                config: toml::to_string(&config).map_err(|e| ServerError::Record {
                    reason: format!("the configuration cannot be written down: {e}"),
                })?,
                keys: crate::hash::keys(),
                node: node.clone(),
                started_unix_us: protocol::now_us(),
            };
            Some(
                Recorder::start(&to, &header, started)
                    .map_err(|reason| ServerError::Record { reason })?,
            )
        }
        None => None,
    };
    let (core, registry) = parts.core(&config, game, started, node);
    let world = core.world();
    if let Some((_, slot)) = &ports.tls {
        crate::ports::spawn_reload(
            slot.clone(),
            &config,
            &world.metrics,
            stop_accepting.clone(),
            &tracker,
        );
    }
    let (publish, published) = watch::channel(Arc::new(Published::default()));
    let demand = Arc::new(Demand::new(started));
    if let Some((addr, admin)) = admin {
        spdlog::info!("admin: /metrics, /healthz, /readyz and the admin page on http://{addr}/");
        admin::spawn(
            admin,
            Arc::new(registry),
            published,
            demand.clone(),
            stop_accepting.clone(),
            &tracker,
        );
    }
    let session_config = |negotiation| SessionConfig {
        max_packet_size: config.server.max_packet_size,
        inbound_credit: config.net.inbound_credit,
        outbound_batches: config.net.outbound_batches,
        max_outbound_bytes: config.net.max_outbound_bytes,
        linger: config.net.linger(),
        negotiation,
    };
    let web_negotiation = ports.web.unwrap_or_default();
    let tls_negotiation = ports
        .tls
        .map(|(negotiation, _)| negotiation)
        .unwrap_or_default();
    let mut server = Server {
        session_configs: [
            session_config(net::Negotiation::Frames),
            session_config(web_negotiation),
            session_config(tls_negotiation),
        ],
        core,
        recorder,
        db,
        sessions: crate::hash::SessionMap::default(),
        accepted: HashMap::new(),
        next_token: 0,
        inputs: Vec::new(),
        tracker: tracker.clone(),
        refuser: Refuser::new(MAX_REFUSALS_IN_FLIGHT, REFUSAL_LINGER),
        events_tx,
        over_budget_since_warn: 0,
        last_warn: None,
        series: Series::new(started),
        next_sample: started,
        publish,
        demand,
        state: (Arc::from("{}"), None),
        link,
        cluster_warned: None,
        config,
    };

    let tick = server.config.server.tick();
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            _ = interval.tick() => {}
        }
        let started = Instant::now();
        server.tick(started, &mut service_rx, &mut events_rx);
        // Inside the tick's time: what the admin listener costs shows in the tick metrics.
        server.every_second(started, &events_rx);
        server.record_tick(started, tick);
    }

    spdlog::info!(
        "server: shutting down: {} sessions to close",
        server.sessions.len()
    );
    stop_accepting.cancel();
    service_rx.close();
    // Streams accepted but not yet decided on are dropped: the server is going.
    server.accepted.clear();
    // The recording ends with the last tick: a replay runs the ticks.
    if let Some(recorder) = server.recorder.take() {
        recorder.finish();
    }
    let output = std::mem::take(server.core.shutdown());
    server.apply(output);
    tracker.close();
    let deadline = tokio::time::sleep(server.config.net.linger() + Duration::from_secs(1));
    tokio::pin!(deadline);
    let mut ends = Vec::new();
    loop {
        tokio::select! {
            _ = tracker.wait() => break,
            _ = &mut deadline => {
                spdlog::warn!("server: sessions still open at the shutdown deadline; dropping them");
                break;
            }
            event = events_rx.recv() => match event {
                Some(SessionEvent::Closed { session, reason }) => {
                    ends.push(Input::Closed { session, reason });
                }
                Some(SessionEvent::Received { .. } | SessionEvent::Ready { .. }) => {}
                None => break,
            },
        }
    }
    while let Ok(event) = events_rx.try_recv() {
        if let SessionEvent::Closed { session, reason } = event {
            ends.push(Input::Closed { session, reason });
        }
    }
    // The other nodes hear that this one's players left; then the publisher flushes.
    let mut last = std::mem::take(server.core.finish(Now::system(), ends));
    server.publish_cluster(&mut last, Instant::now());
    if let Some(link) = server.link.as_mut() {
        link.close();
    }
    link_tracker.close();
    if tokio::time::timeout(Duration::from_secs(2), link_tracker.wait())
        .await
        .is_err()
    {
        spdlog::warn!("cluster: NATS did not take the last batches within 2 s");
    }
    server.send_db(&mut last);
    // Let the worker finish every queued write: a full write queue is offered the rest again
    // while the worker drains it, for a few seconds at most.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.core.has_pending_writes() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut done = Vec::new();
        Server::<G>::db_inputs(&mut server.db, &mut done);
        let mut output = std::mem::take(server.core.flush_writes(done));
        server.send_db(&mut output);
    }
    let stats = server.core.close();
    server.db.close();
    spdlog::info!("server: stopped after {} ticks", stats.ticks);
    Ok(stats)
}

impl<G: Game> Server<G> {
    /// One tick: the queues into the core's inputs, the core, its output onto the sockets.
    fn tick(
        &mut self,
        now: Instant,
        services: &mut mpsc::Receiver<ServiceEvent>,
        events: &mut mpsc::Receiver<SessionEvent>,
    ) {
        // New connections, at most a queue's worth per tick.
        for _ in 0..SERVICE_QUEUE {
            match services.try_recv() {
                Ok(ServiceEvent::Accepted { tag, stream, peer }) => {
                    let token = self.next_token;
                    self.next_token += 1;
                    let port = (tag as usize).min(TLS_PORT);
                    self.accepted.insert(token, (stream, port));
                    self.inputs.push(Input::Accepted { token, peer });
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        // Session events, bounded per tick so that timers and flushes keep their pace.
        for _ in 0..self.config.net.max_messages_per_tick {
            match events.try_recv() {
                Ok(SessionEvent::Received {
                    session, packet, ..
                }) => self.inputs.push(Input::Received { session, packet }),
                Ok(SessionEvent::Ready { session, transport }) => {
                    self.inputs.push(Input::Ready { session, transport })
                }
                Ok(SessionEvent::Closed { session, reason }) => {
                    self.sessions.remove(&session);
                    self.inputs.push(Input::Closed { session, reason });
                }
                Err(_) => break,
            }
        }
        // Batches from the other nodes.
        if let Some(link) = self.link.as_mut() {
            for _ in 0..crate::cluster::link::INBOUND_QUEUE {
                match link.try_recv() {
                    Some(from_nats) => self.inputs.push(Input::Cluster(from_nats)),
                    None => break,
                }
            }
        }
        // What the DB worker did.
        Server::<G>::db_inputs(&mut self.db, &mut self.inputs);
        // The wall clock is read here, with the monotonic time the loop read: the core reads
        // neither.
        let clock = Now {
            at: now,
            unix_us: protocol::now_us(),
        };
        if let Some(recorder) = self.recorder.as_mut() {
            recorder.inputs(clock, &self.inputs, self.core.world());
        }
        // Drained, not taken: the buffer serves every tick.
        let mut output = std::mem::take(self.core.tick(clock, self.inputs.drain(..)));
        if let Some(recorder) = self.recorder.as_mut() {
            recorder.output(&output);
        }
        self.send_db(&mut output);
        self.publish_cluster(&mut output, now);
        self.apply(output);
    }

    /// Appends the jobs the DB worker did since the last call, then its death if it died.
    fn db_inputs(db: &mut DbThread, into: &mut Vec<Input>) {
        into.extend(std::iter::from_fn(|| db.poll()).map(Input::Db));
        if db.take_death() {
            into.push(Input::DbDied);
        }
    }

    /// Hands the core's jobs to the DB worker: the core keeps within the queues' room.
    fn send_db(&mut self, output: &mut Output) {
        for job in output.db.drain(..) {
            self.db.send(job);
        }
    }

    /// Hands this tick's cluster batches to the publisher. A full queue drops them (counted,
    /// and seen by the other nodes as a gap), with a warning at most every 5 s.
    fn publish_cluster(&mut self, output: &mut Output, now: Instant) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        // Name claims and releases first: the bucket, not the batches, says who holds a name.
        for request in output.bucket.drain(..) {
            // A full queue to NATS: the node answers itself, failing open.
            if let Some(answer) = link.ask(request).err().and_then(unavailable) {
                self.inputs.push(Input::Cluster(answer));
            }
        }
        let mut dropped = 0;
        for (subject, batch) in output.cluster.drain(..) {
            if !link.publish(subject, batch) {
                dropped += 1;
            }
        }
        if dropped > 0 {
            self.core.cluster_dropped(dropped);
            if self
                .cluster_warned
                .is_none_or(|at| now.duration_since(at) >= OVER_BUDGET_WARN_EVERY)
            {
                self.cluster_warned = Some(now);
                spdlog::warn!(
                    "cluster: {dropped} batches dropped: NATS does not take them as fast as they come"
                );
            }
        }
    }

    /// Carries out what the core decided.
    fn apply(&mut self, mut output: Output) {
        for (token, id) in output.opened.drain(..) {
            if let Some((stream, port)) = self.accepted.remove(&token) {
                let session = Session::spawn(
                    id,
                    stream,
                    &self.session_configs[port],
                    self.events_tx.clone(),
                    &self.tracker,
                );
                self.sessions.insert(id, session);
            }
        }
        for refusal in output.refused.drain(..) {
            let Some((stream, port)) = self.accepted.remove(&refusal.token) else {
                continue;
            };
            let negotiation = &self.session_configs[port].negotiation;
            let how = self
                .refuser
                .refuse(stream, refusal.frame, negotiation, &self.tracker);
            spdlog::debug!(
                "net: connection from {} refused: {}{}",
                refusal.peer,
                refusal.reason,
                if how == Refusal::Immediate {
                    " (answered without waiting: many refusals under way)"
                } else {
                    ""
                }
            );
        }
        // Each batch is taken out of its buffer, which goes back to the core for the next tick.
        for (id, frames) in output.batches.iter_mut() {
            let id = *id;
            let Some(session) = self.sessions.get_mut(&id) else {
                continue;
            };
            match session.send(frames) {
                Ok(()) | Err(SendError::Closed) => {}
                Err(SendError::SlowConsumer { queued }) => {
                    spdlog::debug!("net: session {id}: {queued} bytes queued and not read");
                    session.abort(DisconnectReason::SlowConsumer);
                    self.inputs.push(Input::SlowConsumer { session: id });
                }
            }
        }
        for (id, reason) in output.closes.drain(..) {
            if let Some(session) = self.sessions.get_mut(&id) {
                session.close(reason);
            }
        }
        for (id, credit) in output.credits.drain(..) {
            if let Some(session) = self.sessions.get(&id) {
                session.release_credit(credit);
            }
        }
        // The emptied buffers go back to the core, for the next tick.
        self.core.recycle(output);
    }

    /// Once a second: the series' sample, and the state published for the admin listener.
    fn every_second(&mut self, now: Instant, events: &mpsc::Receiver<SessionEvent>) {
        let world = self.core.world();
        world.metrics.event_queue.set(events.len() as i64);
        if now < self.next_sample {
            return;
        }
        self.next_sample += Duration::from_secs(1);
        let storage_available = self.db.storage_available();
        world
            .metrics
            .storage_available
            .set(i64::from(storage_available));
        self.series.sample(
            now,
            world.clients.len(),
            world.users.len(),
            world.stats.messages_in,
        );
        if self.publish.receiver_count() == 0 {
            return; // no admin listener
        }
        let mut not_ready = admin::not_ready(
            self.db.is_alive() && world.db.is_alive(),
            world.db.in_flight(),
            world.db.caps(),
            events.capacity() == 0,
        );
        if self.link.as_ref().is_some_and(|link| !link.is_connected()) {
            not_ready.push("not connected to NATS (cluster.nats_url)".to_string());
        }
        if !storage_available {
            not_ready.push(
                "the database is unavailable (storage); connecting again, requests answered UNAVAILABLE"
                    .to_string(),
            );
        }
        if self.demand.recent(now) {
            let json = admin::state_json(world, &self.series, now, &not_ready);
            self.state = (Arc::from(json), Some(now));
        }
        let _ = self.publish.send(Arc::new(Published {
            json: self.state.0.clone(),
            json_at: self.state.1,
            not_ready,
        }));
    }

    fn record_tick(&mut self, started: Instant, budget: Duration) {
        let took = started.elapsed();
        self.series.tick(took);
        if self.core.tick_took(took, budget) {
            self.over_budget_since_warn += 1;
            let due = self
                .last_warn
                .is_none_or(|at| at.elapsed() >= OVER_BUDGET_WARN_EVERY);
            if due {
                spdlog::warn!(
                    "server: tick took {:.1} ms, over its {} ms budget ({} ticks over budget since the last warning)",
                    took.as_secs_f64() * 1000.0,
                    budget.as_millis(),
                    self.over_budget_since_warn
                );
                self.over_budget_since_warn = 0;
                self.last_warn = Some(Instant::now());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(backend: &str) -> ServerConfig {
        let mut config = ServerConfig::default();
        config.storage.backend = backend.into();
        config.apply_game_defaults("test", "memory");
        config
    }

    #[test]
    fn memory_storage_opens_in_any_build_and_keeps_nothing_on_disk() {
        let mut storage = open_storage(&config("")).expect("memory storage");
        assert!(storage.create_account("ann", "h", 1).unwrap().is_some());
        assert!(!std::path::Path::new("test.db").exists());
    }

    #[cfg(not(feature = "sqlite"))]
    #[test]
    fn a_storage_this_build_lacks_is_one_line_naming_the_key_and_exit_2() {
        let Err(error) = open_storage(&config("sqlite")) else {
            panic!("refused")
        };
        assert_eq!(
            error.to_string(),
            "storage.backend \"sqlite\": this build has no sqlite support (the engine's `sqlite` feature)"
        );
        assert_eq!(error.exit_code(), 2);
    }

    #[cfg(not(feature = "postgres"))]
    #[test]
    fn postgres_is_refused_by_a_build_without_it() {
        let Err(error) = open_storage(&config("postgres")) else {
            panic!("refused")
        };
        assert!(
            error
                .to_string()
                .contains("the engine's `postgres` feature"),
            "{error}"
        );
    }
}

#[cfg(all(test, not(feature = "nats")))]
mod without_nats {
    use super::*;
    use crate::handlers::testkit::Chat;

    #[tokio::test]
    async fn a_cluster_this_build_lacks_is_one_line_naming_the_key_and_exit_2() {
        let mut config = ServerConfig::default();
        config.web.listen = String::new();
        config.cluster.nats_url = "nats://u:secret@127.0.0.1:4222".into();
        config.apply_game_defaults("test", "memory");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let storage = open_storage(&config).unwrap();
        let Err(error) = run_game(listener, config, Chat::default(), storage, async {}).await
        else {
            panic!("refused")
        };
        assert_eq!(
            error.to_string(),
            "cluster.nats_url \"nats://u:***@127.0.0.1:4222\": this build has no nats support (the engine's `nats` feature)"
        );
        assert_eq!(error.exit_code(), 2);
    }
}
