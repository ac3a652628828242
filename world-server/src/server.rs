//! The tick loop: the one owner of the world.
//!
//! Every `tick_ms` it
//! 1. drains service events (accepted connections become sessions and get S2C_Welcome),
//! 2. drains session events into the [`MessageQueue`] (decoded; bad ids and payloads are
//!    answered at once) and cleans up after closed sessions,
//! 3. dispatches the queue to the handlers,
//! 4. runs due timers,
//! 5. hands every session its frames of this tick as one batch, then carries out closes,
//! 6. gives back the inbound credits of the frames it processed, and sleeps to the next tick.
//!
//! It never awaits a socket: network tasks and the loop meet only at bounded queues.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::time::{Duration, Instant};

use config::ServerConfig;
use net::{
    DisconnectReason, Refusal, Refuser, SendError, ServerService, ServiceEvent, Session,
    SessionConfig, SessionEvent, SessionId,
};
use protocol::world::S2cError;
use protocol::{C2sMessage, ErrorCode};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::db::{AuthSettings, Db, DbWorker};
use crate::dispatcher::{Ctx, DispatchError, DispatchState, HandlerError, MessageDispatcher};
use crate::storage::{SqliteStorage, Storage, StorageError};
use crate::world::{Admission, Refused, Stats, World, WorldConfig};

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Two handlers for one message type.
    #[error("cannot register handlers: {0}")]
    Dispatch(#[from] DispatchError),
    /// The database could not be opened or migrated. Named by its config key, like a bad
    /// config value: `storage.path "world.db": the database is corrupt (...)`.
    #[error("storage.path {path:?}: {source}")]
    Storage {
        /// The database file.
        path: std::path::PathBuf,
        /// What failed.
        source: StorageError,
    },
    /// The DB worker could not start.
    #[error("cannot start the DB worker: {0}")]
    Worker(String),
}

impl ServerError {
    /// The exit code for this error: 2 when the configuration is at fault (a `storage.path`
    /// that cannot be opened as a database file), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            ServerError::Storage { source, .. } if source.is_path_error() => 2,
            _ => 1,
        }
    }
}

/// Opens the database of `config` and starts the DB worker on it.
pub fn open_db(config: &ServerConfig) -> Result<Db, ServerError> {
    let path = &config.storage.path;
    let storage_error = |source| ServerError::Storage {
        path: path.clone(),
        source,
    };
    let mut storage =
        SqliteStorage::open(path, config.storage.synchronous == "full").map_err(storage_error)?;
    let recovered = storage.recover(protocol::now_us()).map_err(storage_error)?;
    if recovered.sessions > 0 {
        spdlog::warn!(
            "storage: the last run stopped without closing {} sessions; recorded as \"{}\"",
            recovered.sessions,
            crate::storage::UNCLEAN_STOP
        );
    }
    let worker = DbWorker::new(Box::new(storage), AuthSettings::from(config))
        .map_err(ServerError::Worker)?;
    spdlog::info!("storage: database {}", path.display());
    Db::spawn(worker, config.storage.queue).map_err(|e| ServerError::Worker(e.to_string()))
}

/// What a session asked for, in arrival order: a message for its handler, a frame to answer
/// with an error, or the end of the session (after everything it sent before closing).
#[derive(Debug)]
pub enum Item {
    /// A decoded message.
    Message(C2sMessage),
    /// A frame refused with this error (unknown id, undecodable, rate limited).
    Refused(u16, HandlerError),
    /// The connection ended.
    Closed {
        /// Why.
        reason: DisconnectReason,
        /// The peer's address.
        peer: std::net::SocketAddr,
    },
}

/// One item of a session, queued for the handlers.
#[derive(Debug)]
pub struct Queued {
    /// The session.
    pub session: SessionId,
    /// What it is.
    pub item: Item,
}

/// The decoded messages of one tick, in arrival order (so per-sender order holds).
pub type MessageQueue = VecDeque<Queued>;

/// The network side of a session, as the tick loop holds it.
struct Connection {
    session: Session,
    /// Frames received and not yet credited back.
    owed_credit: usize,
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

struct Server {
    config: ServerConfig,
    session_config: SessionConfig,
    world: World,
    dispatcher: MessageDispatcher<World>,
    connections: HashMap<SessionId, Connection>,
    queue: MessageQueue,
    /// Messages of sessions waiting for the DB worker, in arrival order. Their credit is not
    /// given back until they are processed, so a waiting session's reader stops after
    /// `inbound_credit` frames: this is bounded by the same credit as the queue.
    parked: HashMap<SessionId, MessageQueue>,
    owed: Vec<SessionId>,
    next_session: u64,
    tracker: TaskTracker,
    refuser: Refuser,
    events_tx: mpsc::Sender<SessionEvent>,
    over_budget_since_warn: u64,
    last_warn: Option<Instant>,
}

/// Runs a world server on `listener` until `shutdown` completes; then stops accepting,
/// finishes the tick, flushes and closes every session, and returns the final counters.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<Stats, ServerError> {
    let db = open_db(&config)?;
    let tracker = TaskTracker::new();
    let stop_accepting = CancellationToken::new();
    let (service_tx, mut service_rx) = mpsc::channel(SERVICE_QUEUE);
    let (events_tx, mut events_rx) = mpsc::channel(config.net.event_queue);
    if let Ok(addr) = listener.local_addr() {
        spdlog::info!(
            "server: {} listening on {addr} (tick {} ms)",
            config.server.name,
            config.server.tick_ms
        );
    }
    ServerService::spawn(listener, service_tx, stop_accepting.clone(), &tracker);

    let mut server = Server {
        session_config: SessionConfig {
            max_packet_size: config.server.max_packet_size,
            inbound_credit: config.net.inbound_credit,
            outbound_batches: config.net.outbound_batches,
            max_outbound_bytes: config.net.max_outbound_bytes,
            linger: config.net.linger(),
        },
        world: World::new(WorldConfig::from(&config), db, Instant::now()),
        dispatcher: crate::handlers::dispatcher()?,
        connections: HashMap::new(),
        queue: MessageQueue::new(),
        parked: HashMap::new(),
        owed: Vec::new(),
        next_session: 1,
        tracker: tracker.clone(),
        refuser: Refuser::new(MAX_REFUSALS_IN_FLIGHT, REFUSAL_LINGER),
        events_tx,
        over_budget_since_warn: 0,
        last_warn: None,
        config,
    };
    crate::world::schedule_stats(&mut server.world, Instant::now());

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
        server.record_tick(started, tick);
    }

    spdlog::info!(
        "server: shutting down: {} sessions to close",
        server.connections.len()
    );
    stop_accepting.cancel();
    service_rx.close();
    server.close_all(DisconnectReason::Shutdown);
    server.flush();
    tracker.close();
    let deadline = tokio::time::sleep(server.config.net.linger() + Duration::from_secs(1));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = tracker.wait() => break,
            _ = &mut deadline => {
                spdlog::warn!("server: sessions still open at the shutdown deadline; dropping them");
                break;
            }
            event = events_rx.recv() => match event {
                Some(event) => server.on_session_event(event, Instant::now()),
                None => break,
            },
        }
    }
    while let Ok(event) = events_rx.try_recv() {
        server.on_session_event(event, Instant::now());
    }
    server.process_all(Instant::now());
    // The last session records, then let the worker finish every queued write. A full write
    // queue is offered the rest again while the worker drains it, for a few seconds at most.
    let deadline = Instant::now() + Duration::from_secs(5);
    server.world.flush_writes();
    while server.world.has_pending_writes() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        server.world.flush_writes();
    }
    if server.world.has_pending_writes() {
        spdlog::error!(
            "storage: shutdown: {} history lines and {} session records could not be written",
            server.world.pending_history.len(),
            server.world.pending_sessions.len()
        );
    }
    server.world.db.close();
    spdlog::info!("server: stopped after {} ticks", server.world.stats.ticks);
    Ok(server.world.stats.clone())
}

impl Server {
    fn tick(
        &mut self,
        now: Instant,
        services: &mut mpsc::Receiver<ServiceEvent>,
        events: &mut mpsc::Receiver<SessionEvent>,
    ) {
        // 1. New connections, at most a queue's worth per tick.
        for _ in 0..SERVICE_QUEUE {
            match services.try_recv() {
                Ok(ServiceEvent::Accepted { stream, peer }) => self.accept(stream, peer, now),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        // 2. Session events, bounded per tick so that timers and flushes keep their pace.
        for _ in 0..self.config.net.max_messages_per_tick {
            match events.try_recv() {
                Ok(event) => self.on_session_event(event, now),
                Err(_) => break,
            }
        }
        // The DB worker's answers: logins and loaded histories complete.
        self.world.poll_db(now);
        // 3. Handlers. A session waiting for the DB worker (a login, or a join of a room whose
        // history is loading) has its later requests parked until that completes, so that its
        // replies keep the order of its requests.
        let now_us = protocol::now_us();
        self.resume_parked(now, now_us);
        while let Some(queued) = self.queue.pop_front() {
            if self.parked.contains_key(&queued.session) || self.world.is_waiting(queued.session) {
                self.parked
                    .entry(queued.session)
                    .or_default()
                    .push_back(queued);
                continue;
            }
            self.process(queued, now, now_us);
        }
        // 4. Timers.
        self.world.tick(now);
        // 5. Frames out, then closes; this tick's writes to the DB worker in one batch.
        self.flush();
        self.world.flush_writes();
        // 6. Credits back: these sessions may read again.
        for session in self.owed.drain(..) {
            if let Some(connection) = self.connections.get_mut(&session) {
                connection.session.release_credit(connection.owed_credit);
                connection.owed_credit = 0;
            }
        }
    }

    /// Dispatches one queued message (or answers its error) and owes its credit back; or, for
    /// the end of a session, cleans up after it.
    fn process(&mut self, queued: Queued, now: Instant, now_us: u64) {
        let Queued { session, item } = queued;
        if let Item::Closed { reason, peer } = item {
            self.end_session(session, &reason, peer, now);
            return;
        }
        self.owe_credit(session);
        if self.world.clients.get(&session).is_none_or(|c| c.closing) {
            return; // closed by the server while the message waited
        }
        self.world.stats.messages_in += 1;
        match item {
            Item::Message(message) => {
                spdlog::debug!("world: session {session} -> {}", message.name());
                let ctx = Ctx {
                    session,
                    now,
                    now_us,
                };
                self.dispatcher.dispatch(&mut self.world, &ctx, message);
            }
            Item::Refused(id, error) => {
                spdlog::debug!(
                    "world: session {session}: {:?}: {}",
                    error.code,
                    error.reason
                );
                self.world.send_error(session, id, error);
            }
            Item::Closed { .. } => unreachable!("handled above"),
        }
    }

    /// The session's connection ended and everything it sent before is processed: it leaves
    /// the world, and its end is logged and recorded.
    fn end_session(
        &mut self,
        session: SessionId,
        reason: &DisconnectReason,
        peer: std::net::SocketAddr,
        now: Instant,
    ) {
        let client = self.world.disconnect(session, reason);
        let (user, lived) = client.map_or(("-".to_string(), Duration::ZERO), |c| {
            (
                c.last_username.unwrap_or_else(|| "-".to_string()),
                now.saturating_duration_since(c.connected_at),
            )
        });
        spdlog::info!(
            "net: session {session} ({peer}, {user}) disconnected after {:.1}s: {reason}",
            lived.as_secs_f64()
        );
    }

    /// Processes everything queued and parked (at shutdown: every session is closing, so only
    /// the ends of sessions do anything).
    fn process_all(&mut self, now: Instant) {
        let now_us = protocol::now_us();
        let parked: Vec<MessageQueue> = self.parked.drain().map(|(_, q)| q).collect();
        for queued in parked.into_iter().flatten() {
            self.process(queued, now, now_us);
        }
        while let Some(queued) = self.queue.pop_front() {
            self.process(queued, now, now_us);
        }
    }

    /// Processes the parked messages of sessions that are no longer waiting, in order, until
    /// one makes its session wait again.
    fn resume_parked(&mut self, now: Instant, now_us: u64) {
        if self.parked.is_empty() {
            return;
        }
        let ready: Vec<SessionId> = self
            .parked
            .keys()
            .filter(|s| !self.world.is_waiting(**s))
            .copied()
            .collect();
        for session in ready {
            let Some(mut waiting) = self.parked.remove(&session) else {
                continue;
            };
            while let Some(queued) = waiting.pop_front() {
                self.process(queued, now, now_us);
                if self.world.is_waiting(session) {
                    if !waiting.is_empty() {
                        self.parked.insert(session, waiting);
                    }
                    break;
                }
            }
        }
    }

    /// One more frame of `session` is done with: its credit goes back at the end of the tick.
    fn owe_credit(&mut self, session: SessionId) {
        if let Some(connection) = self.connections.get_mut(&session) {
            if connection.owed_credit == 0 {
                self.owed.push(session);
            }
            connection.owed_credit += 1;
        }
    }

    fn accept(&mut self, stream: TcpStream, peer: std::net::SocketAddr, now: Instant) {
        if let Err(refused) = self.world.admission(peer.ip()) {
            self.refuse(stream, peer, refused);
            return;
        }
        let id = SessionId(self.next_session);
        self.next_session += 1;
        let session = Session::spawn(
            id,
            stream,
            &self.session_config,
            self.events_tx.clone(),
            &self.tracker,
        );
        spdlog::info!("net: session {id} connected from {peer}");
        self.world.connect(id, peer, now);
        self.connections.insert(
            id,
            Connection {
                session,
                owed_credit: 0,
            },
        );
    }

    /// Tells a connection the world does not take why, and closes it; it never becomes a
    /// session, and costs a bounded amount however many arrive (see [`Refuser`]).
    fn refuse(&mut self, stream: TcpStream, peer: std::net::SocketAddr, refused: Refused) {
        let stats = &mut self.world.stats;
        match refused.disconnect {
            DisconnectReason::ServerFull => stats.refused_server_full += 1,
            _ => stats.refused_per_address += 1,
        }
        let error = S2cError {
            code: refused.code as i32,
            reason: refused.reason,
            request_id: 0,
        };
        let Ok(frame) = protocol::frame(&error) else {
            return;
        };
        let how = self.refuser.refuse(stream, frame, &self.tracker);
        spdlog::debug!(
            "net: connection from {peer} refused: {}{}",
            refused.disconnect,
            if how == Refusal::Immediate {
                " (answered without waiting: many refusals under way)"
            } else {
                ""
            }
        );
    }

    fn on_session_event(&mut self, event: SessionEvent, now: Instant) {
        match event {
            SessionEvent::Received {
                session, packet, ..
            } => {
                if !self.connections.contains_key(&session) {
                    return;
                }
                let id = packet.id;
                let item = match self.world.admit(session, now) {
                    Admission::Admit => match self.dispatcher.decode(id, packet.payload) {
                        Ok(message) => Item::Message(message),
                        Err(error) => {
                            Item::Refused(id, HandlerError::bad_request(error.to_string()))
                        }
                    },
                    Admission::Limited { reply: true } => Item::Refused(
                        id,
                        HandlerError::new(
                            ErrorCode::RateLimited,
                            format!(
                                "more than {} requests per second; requests are dropped",
                                self.world.config.max_requests_per_sec
                            ),
                        ),
                    ),
                    Admission::Limited { reply: false } | Admission::Ignore => {
                        self.owe_credit(session);
                        return;
                    }
                    Admission::Flooding => {
                        self.owe_credit(session);
                        self.world.kick(session, DisconnectReason::Flooding);
                        return;
                    }
                };
                self.queue.push_back(Queued { session, item });
            }
            SessionEvent::Closed { session, reason } => {
                let Some(connection) = self.connections.remove(&session) else {
                    return;
                };
                // A login still under way for it must not take a name over for nobody.
                if let Some(client) = self.world.clients.get_mut(&session) {
                    client.gone = true;
                }
                // Behind whatever the session sent before it closed: a Chat or a Logout sent
                // just before closing is still carried out.
                let item = Item::Closed {
                    reason,
                    peer: connection.session.peer(),
                };
                self.queue.push_back(Queued { session, item });
            }
        }
    }

    /// Hands each session its frames of this tick as one batch, then carries out the closes.
    fn flush(&mut self) {
        let mut slow = Vec::new();
        for (session, frames) in self.world.out.drain_frames() {
            let Some(connection) = self.connections.get(&session) else {
                continue;
            };
            match connection.session.send(frames) {
                Ok(()) => {}
                Err(SendError::SlowConsumer { queued }) => {
                    spdlog::warn!(
                        "net: session {session} ({}) is not reading: {queued} bytes queued; disconnecting",
                        connection.session.peer()
                    );
                    slow.push(session);
                }
                Err(SendError::Closed) => {}
            }
        }
        for session in slow {
            self.world.kick(session, DisconnectReason::SlowConsumer);
            if let Some(connection) = self.connections.get_mut(&session) {
                connection.session.abort(DisconnectReason::SlowConsumer);
            }
        }
        for (session, reason) in self.world.out.drain_closes() {
            if let Some(connection) = self.connections.get_mut(&session) {
                connection.session.close(reason);
            }
        }
    }

    fn close_all(&mut self, reason: DisconnectReason) {
        let sessions: Vec<SessionId> = self.connections.keys().copied().collect();
        for session in sessions {
            self.world.kick(session, reason.clone());
            if let Some(connection) = self.connections.get_mut(&session) {
                connection.session.close(reason.clone());
            }
        }
    }

    fn record_tick(&mut self, started: Instant, budget: Duration) {
        let took = started.elapsed();
        let stats = &mut self.world.stats;
        stats.ticks += 1;
        stats.ticks_in_window += 1;
        let us = took.as_micros() as u64;
        stats.tick_us_sum += us;
        stats.max_tick_us = stats.max_tick_us.max(us);
        if took > budget {
            stats.ticks_over_budget += 1;
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
