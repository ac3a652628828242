//! The sans-IO core: everything that decides what the server does, with no sockets, no queues
//! and no clock of its own.
//!
//! [`Core::tick`] takes the time and what happened since the last tick ([`Input`]: connections
//! accepted, frames received, connections closed, a peer that stopped reading, what NATS
//! brought, what the DB worker did) and returns what to do ([`Output`]: sessions to start or
//! refuse, one batch of frames per session, closes, inbound credit to give back, jobs for the
//! DB worker, requests and batches for the cluster). In one tick it
//!
//! 1. admits or refuses new connections (server full, too many from one address), and starts
//!    the taken ones with S2C_Welcome;
//! 2. rate-limits and decodes each frame into the [`MessageQueue`] (a bad id or payload is
//!    answered in its place), and queues each end of a connection behind what it sent;
//! 3. takes the DB worker's answers (logins, loaded histories), then dispatches the queue to the
//!    handlers; a session waiting for the DB worker has its later requests parked, so that its
//!    replies keep the order of its requests;
//! 4. runs due timers;
//! 5. hands out every session's frames of the tick as one batch, then the closes, the tick's
//!    jobs for the DB worker and what goes to the cluster;
//! 6. gives back the inbound credit of every frame it has finished with.
//!
//! The DB worker is on the other side of [`Output::db`] and [`Input::Db`]: a thread in the
//! server ([`crate::db::DbThread`]), and in the test kit a worker run at once or when told
//! ([`crate::testing::Sim::holding_db`]). The core keeps each of its queues within its
//! capacity ([`crate::db::DbQueue`]), so the driver's queues never fill.
//!
//! The tokio driver ([`crate::server`]) only moves bytes and events between sockets, queues
//! and the core, and sleeps to the next tick. Tests drive the core with simulated time.

use std::collections::VecDeque;

use crate::hash::SessionMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use net::{DisconnectReason, Packet, SessionId, Transport};
use protocol::world::{C2sSessionResume, S2cError, S2cSessionResumed};
use protocol::ErrorCode;
use protocol::MessageType;

use crate::dispatcher::{Ctx, DispatchState, HandlerError, MessageDispatcher};
use crate::ratelimit::Admission;
use crate::resume::{Outbound, Refused};
use crate::world::{Game, Now, World};

/// What must hold between ticks, for the fuzzer and the tests.
#[doc(hidden)]
pub mod invariants;

/// What happened since the last tick.
#[derive(Debug)]
pub enum Input {
    /// The listener accepted a connection from `peer`. `token` is the driver's own, to pair
    /// the decision in [`Output::opened`] or [`Output::refused`] with its stream.
    Accepted {
        /// The driver's name for the stream.
        token: u64,
        /// The peer's address.
        peer: SocketAddr,
    },
    /// A session's connection is set up: TLS, WebSocket, or an HTTP request being answered.
    Ready {
        /// The session.
        session: SessionId,
        /// What it speaks.
        transport: Transport,
    },
    /// A frame arrived on a session. Its inbound credit comes back in [`Output::credits`].
    Received {
        /// The session.
        session: SessionId,
        /// The frame.
        packet: Packet,
    },
    /// A session's connection ended.
    Closed {
        /// The session.
        session: SessionId,
        /// Why.
        reason: DisconnectReason,
    },
    /// A session's outbound queue refused a batch: the peer does not read. The driver has
    /// aborted the connection; the session leaves the world now.
    SlowConsumer {
        /// The session.
        session: SessionId,
    },
    /// What NATS brought: a batch from another node of the cluster, or what the names
    /// bucket says.
    Cluster(crate::cluster::link::FromNats),
    /// The DB worker did a job of [`Output::db`]: its answer, if it has one.
    Db(crate::db::DbDone),
    /// The DB worker has died (after every [`Input::Db`] it sent): what waits for it is
    /// answered with an error, and later jobs are refused.
    DbDied,
}

/// A connection the world does not take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The driver's token of the stream.
    pub token: u64,
    /// The peer.
    pub peer: SocketAddr,
    /// The frame to send before closing (an S2C_Error saying why).
    pub frame: Bytes,
    /// Why, for the log.
    pub reason: DisconnectReason,
}

/// What to do after a tick, in this order: start the opened sessions, refuse the refused
/// connections, send the batches, carry out the closes and aborts, give back the credits.
#[derive(Debug, Default)]
pub struct Output {
    /// Connections taken: start a session with this id on the token's stream.
    pub opened: Vec<(u64, SessionId)>,
    /// Connections refused.
    pub refused: Vec<Refusal>,
    /// Each session's frames of the tick, one batch per session.
    pub batches: Vec<(SessionId, Vec<Bytes>)>,
    /// Graceful closes, after the batches: flush, then close.
    pub closes: Vec<(SessionId, DisconnectReason)>,
    /// Inbound credit to give back per session: it may read that many frames more.
    pub credits: Vec<(SessionId, usize)>,
    /// On a cluster: what this node asks of the buckets (name claims and releases, room
    /// reservations), in order. Ask them before publishing `cluster`.
    pub bucket: Vec<crate::cluster::link::NameRequest>,
    /// On a cluster: the batches for the other nodes, (subject, batch), in order.
    pub cluster: Vec<(String, crate::cluster::Batch)>,
    /// Jobs for the DB worker, in order; each comes back as an [`Input::Db`]. The core keeps
    /// to the lanes' capacities ([`crate::db::DbQueue`]), so queues of those capacities
    /// always have room for them.
    pub db: Vec<crate::db::DbJob>,
}

impl Output {
    fn clear(&mut self) {
        self.opened.clear();
        self.refused.clear();
        self.batches.clear();
        self.closes.clear();
        self.credits.clear();
        self.bucket.clear();
        self.cluster.clear();
        self.db.clear();
    }

    /// What the world has for the cluster at `now`: its bucket requests and its batches.
    fn take_cluster<G: Game>(&mut self, world: &mut World<G>, now: Instant) {
        if let Some(cluster) = world.cluster.as_mut() {
            self.bucket.extend(cluster.take_name_requests());
            self.cluster.extend(cluster.take_batches(now));
        }
    }
}

/// What a session asked for, in arrival order: a message for its handler, a frame to answer
/// with an error, or the end of the session (after everything it sent before closing).
#[derive(Debug)]
pub enum Item {
    /// A frame for the handler of its id (decoded at dispatch).
    Message {
        /// The message id.
        id: u16,
        /// The payload, a view of the read buffer.
        payload: Bytes,
    },
    /// A frame refused with this error (unknown id, undecodable, rate limited).
    Refused(u16, HandlerError),
    /// A frame of a resumable session dropped without an answer (rate limited): counted among
    /// its requests in its turn.
    Dropped,
    /// The connection ended.
    Closed {
        /// Why.
        reason: DisconnectReason,
        /// The peer's address.
        peer: SocketAddr,
    },
}

/// One item of a connection, queued for the handlers.
#[derive(Debug)]
pub struct Queued {
    /// The connection it came from: the session of that id, unless the connection took an
    /// earlier session back ([`crate::resume`]).
    pub session: SessionId,
    /// What it is.
    pub item: Item,
}

/// The decoded messages of one tick, in arrival order (so per-sender order holds).
pub type MessageQueue = VecDeque<Queued>;

/// A connection as the core sees it.
struct Connection {
    peer: SocketAddr,
    /// Frames received and not yet credited back.
    owed_credit: usize,
    /// Its close is in an output already: a connection is closed once.
    closed: bool,
}

/// The server's behaviour, driven by [`Core::tick`], for a world of the game `G`.
pub struct Core<G: Game> {
    /// The world the handlers change: only the core changes it; others read it through
    /// [`Core::world`] (the test kit changes it between steps too).
    world: World<G>,
    dispatcher: MessageDispatcher<World<G>>,
    connections: SessionMap<Connection>,
    queue: MessageQueue,
    /// Messages of sessions waiting for the DB worker, in arrival order. Their credit is not
    /// given back until they are processed, so a waiting session's reader stops after
    /// `inbound_credit` frames: this is bounded by the same credit as the queue.
    parked: SessionMap<MessageQueue>,
    owed: Vec<SessionId>,
    /// The resume counters the metrics have.
    resumes_exported: crate::resume::ResumeStats,
    next_session: u64,
    out: Output,
}

impl<G: Game> Core<G> {
    /// A core over `world`, with `dispatcher` for its messages (see
    /// [`crate::handlers::setup`]). Session ids start at 1.
    pub fn new(world: World<G>, dispatcher: MessageDispatcher<World<G>>) -> Core<G> {
        Core {
            world,
            dispatcher,
            connections: SessionMap::default(),
            queue: MessageQueue::new(),
            parked: SessionMap::default(),
            owed: Vec::new(),
            resumes_exported: crate::resume::ResumeStats::default(),
            next_session: 1,
            out: Output::default(),
        }
    }

    /// Gives back an [`Output`] taken from [`Core::tick`], so that its buffers serve the next
    /// tick instead of new ones.
    pub fn recycle(&mut self, mut output: Output) {
        let made = output.batches.len();
        for (_, batch) in output.batches.drain(..) {
            self.world.out.recycle(batch);
        }
        self.world.out.trim(made);
        self.out = output;
    }

    /// The world, to read.
    pub fn world(&self) -> &World<G> {
        &self.world
    }

    /// The world, for the test kit to change between steps.
    pub(crate) fn world_mut(&mut self) -> &mut World<G> {
        &mut self.world
    }

    /// The driver measured the last tick: it took `took` of its `budget`. Counted in the
    /// stats and metrics; whether it went over the budget.
    pub fn tick_took(&mut self, took: Duration, budget: Duration) -> bool {
        let metrics = &self.world.metrics;
        metrics.tick.observe(took.as_secs_f64());
        let over = took > budget;
        if over {
            metrics.over_budget.inc();
        }
        let stats = &mut self.world.stats;
        stats.ticks += 1;
        stats.ticks_in_window += 1;
        let us = took.as_micros() as u64;
        stats.tick_us_sum += us;
        stats.max_tick_us = stats.max_tick_us.max(us);
        if over {
            stats.ticks_over_budget += 1;
        }
        over
    }

    /// The driver dropped `count` batches for the cluster: NATS did not take them.
    pub fn cluster_dropped(&mut self, count: u64) {
        self.world.metrics.cluster_dropped.inc_by(count);
    }

    /// When the core next needs a tick: one tick length (`server.tick_ms`) after the last
    /// (after its creation, before the first). Timers, deadlines, the DB worker's answers and
    /// the game's tick all run at ticks, so nothing needs one sooner: a driver sleeps until
    /// then, or until inputs arrive that it wants taken at once.
    pub fn poll_timeout(&self) -> Instant {
        self.world.now().at + Duration::from_millis(u64::from(self.world.config.tick_ms))
    }

    /// Connections open (sessions started and not yet ended).
    pub fn connections(&self) -> usize {
        self.connections.len()
    }

    /// One tick at `now`: takes `inputs` in order, runs the world, and says what to do.
    pub fn tick(&mut self, now: Now, inputs: impl IntoIterator<Item = Input>) -> &mut Output {
        self.world.set_now(now);
        let Now {
            at: now,
            unix_us: now_us,
        } = now;
        // Durations are measured for the metrics only: nothing decided depends on them.
        let mut phase = std::time::Instant::now();
        let mut lap = |index: usize, world: &World<G>| {
            let end = std::time::Instant::now();
            world.metrics.phase(index, (end - phase).as_secs_f64());
            phase = end;
        };
        self.out.clear();
        for input in inputs {
            self.input(input, now);
        }
        lap(0, &self.world);
        // The DB worker's answers: logins and loaded histories complete.
        crate::logins::poll_db(&mut self.world, now);
        self.resume_parked(now, now_us);
        while let Some(queued) = self.queue.pop_front() {
            if self.parked.contains_key(&queued.session) || self.is_waiting(queued.session) {
                self.parked
                    .entry(queued.session)
                    .or_default()
                    .push_back(queued);
                continue;
            }
            self.process(queued, now, now_us);
        }
        self.end_expired(now);
        lap(1, &self.world);
        crate::logins::advance(&mut self.world, now);
        crate::nodes::advance(&mut self.world, now);
        lap(2, &self.world);
        self.flush();
        self.world.flush_writes();
        for session in self.owed.drain(..) {
            if let Some(connection) = self.connections.get_mut(&session) {
                self.out
                    .credits
                    .push((session, std::mem::take(&mut connection.owed_credit)));
            }
        }
        let world = &self.world;
        world.metrics.sessions.set(world.clients.len() as i64);
        world.metrics.logged_in.set(world.users.len() as i64);
        world.metrics.resumes(&world.resume, &self.resumes_exported);
        self.resumes_exported = world.resume.stats.clone();
        world.metrics.db_queues(world.db.in_flight());
        self.world.report_unencodable(now);
        self.world.db.take_jobs(&mut self.out.db);
        self.out.take_cluster(&mut self.world, now);
        lap(3, &self.world);
        &mut self.out
    }

    /// Shutdown: every session is told and closed (its frames of this tick first). Then feed
    /// the ends of the connections to [`Core::finish`].
    pub fn shutdown(&mut self) -> &mut Output {
        self.out.clear();
        let resume = &self.world.resume;
        let mut sessions: Vec<SessionId> = self
            .connections
            .keys()
            .filter_map(|&connection| resume.route(connection))
            .collect();
        // Away sessions end too (at the flush: they have no connection to close).
        sessions.extend(
            self.world
                .clients
                .iter()
                .filter(|(_, c)| c.away)
                .map(|(&s, _)| s),
        );
        for session in sessions {
            self.world.kick(session, DisconnectReason::Shutdown);
        }
        self.flush();
        for (&connection, c) in &mut self.connections {
            if !std::mem::replace(&mut c.closed, true) {
                self.out
                    .closes
                    .push((connection, DisconnectReason::Shutdown));
            }
        }
        &mut self.out
    }

    /// After [`Core::shutdown`]: the connections that ended, and then everything still queued
    /// or parked (only the ends of sessions do anything now). Sessions whose end never came are
    /// ended here with the reason `Shutdown`. The output is what goes to the cluster: the
    /// other nodes hear that this node's players left.
    pub fn finish(&mut self, now: Now, inputs: impl IntoIterator<Item = Input>) -> &mut Output {
        self.out.clear();
        self.world.set_now(now);
        let Now {
            at: now,
            unix_us: now_us,
        } = now;
        for input in inputs {
            self.input(input, now);
        }
        let parked: Vec<MessageQueue> = self.parked.drain().map(|(_, q)| q).collect();
        for queued in parked.into_iter().flatten() {
            self.process(queued, now, now_us);
        }
        while let Some(queued) = self.queue.pop_front() {
            self.process(queued, now, now_us);
        }
        let resume = &self.world.resume;
        let mut left: Vec<(SessionId, SocketAddr)> = self
            .connections
            .drain()
            .filter_map(|(connection, c)| Some((resume.route(connection)?, c.peer)))
            .collect();
        left.extend(
            self.world
                .clients
                .iter()
                .filter(|(_, c)| c.away)
                .map(|(&s, c)| (s, c.peer)),
        );
        for (session, peer) in left {
            self.end_session(session, &DisconnectReason::Shutdown, peer, now);
        }
        // The last session records go with the writes still waiting.
        self.world.flush_writes();
        self.world.db.take_jobs(&mut self.out.db);
        self.out.take_cluster(&mut self.world, now);
        &mut self.out
    }

    /// After [`Core::finish`]: takes what the DB worker did (`done`: [`Input::Db`] and
    /// [`Input::DbDied`]; nothing else is taken now) and offers the writes that wait for a
    /// full write queue again, in [`Output::db`]. A driver calls it while
    /// [`Core::has_pending_writes`], for as long as it can wait for the disk, then
    /// [`Core::close`].
    pub fn flush_writes(&mut self, done: impl IntoIterator<Item = Input>) -> &mut Output {
        self.out.clear();
        for input in done {
            match input {
                Input::Db(done) => self.world.db.done(done),
                Input::DbDied => self.world.db.died(),
                _ => {}
            }
        }
        // Answers are for sessions that are gone.
        while self.world.db.poll().is_some() {}
        self.world.flush_writes();
        self.world.db.take_jobs(&mut self.out.db);
        &mut self.out
    }

    /// Whether writes wait for room in the DB worker's write queue.
    pub fn has_pending_writes(&self) -> bool {
        self.world.has_pending_writes()
    }

    /// The end: the writes still waiting are given up (said in the log, with how many
    /// session records were among them). Returns the world's counters. The driver then lets
    /// the DB worker finish what it was given, and stops it.
    pub fn close(&mut self) -> crate::world::Stats {
        if self.world.has_pending_writes() {
            spdlog::error!(
                "storage: shutdown: writes still waiting for the DB worker were lost ({} session log entries among them)",
                self.world.pending_sessions.len()
            );
        }
        self.world.stats.clone()
    }

    fn input(&mut self, input: Input, now: Instant) {
        match input {
            Input::Accepted { token, peer } => self.accept(token, peer, now),
            Input::Ready { session, transport } => {
                self.world.metrics.set_up(transport);
                let Some(session) = self.route(session) else {
                    return;
                };
                if let Some(client) = self.world.clients.get_mut(&session) {
                    client.transport = transport;
                }
            }
            Input::Received { session, packet } => self.receive(session, packet, now),
            Input::Closed { session, reason } => {
                let Some(connection) = self.connections.remove(&session) else {
                    return;
                };
                self.world.lingering.remove(&session);
                // A login still under way for it must not take a name over for nobody. (A
                // resumable session, logged in, goes away instead: see `closed`.)
                let carried = self.route(session);
                if let Some(client) = carried.and_then(|s| self.world.clients.get_mut(&s)) {
                    client.gone = true;
                }
                // Behind whatever the session sent before it closed: a Chat or a Logout sent
                // just before closing is still carried out.
                let item = Item::Closed {
                    reason,
                    peer: connection.peer,
                };
                self.queue.push_back(Queued { session, item });
            }
            Input::SlowConsumer {
                session: connection,
            } => {
                // A connection taken over by a resume is being closed already.
                let Some(session) = self.route(connection) else {
                    return;
                };
                if let Some(c) = self.connections.get(&connection) {
                    spdlog::warn!(
                        "net: session {session} ({}) is not reading; disconnecting",
                        c.peer
                    );
                }
                let open = self.world.clients.get(&session).is_some_and(|c| !c.closing);
                if open && self.world.resume.is_resumable(session) {
                    // Its connection ends (the driver aborted it already); the session goes
                    // away when that end is processed, and its client may take it back.
                    self.close_connection(connection, DisconnectReason::SlowConsumer);
                    return;
                }
                self.world.kick(session, DisconnectReason::SlowConsumer);
            }
            Input::Cluster(from_nats) => crate::nodes::input(&mut self.world, from_nats, now),
            Input::Db(done) => self.world.db.done(done),
            Input::DbDied => self.world.db.died(),
        }
    }

    fn accept(&mut self, token: u64, peer: SocketAddr, now: Instant) {
        if let Err(refused) = self.world.admission(peer.ip()) {
            let stats = &mut self.world.stats;
            match refused.disconnect {
                DisconnectReason::ServerFull => {
                    stats.refused_server_full += 1;
                    self.world.metrics.refused_server_full.inc();
                }
                _ => {
                    stats.refused_per_address += 1;
                    self.world.metrics.refused_per_address.inc();
                }
            }
            let error = S2cError {
                code: refused.code as i32,
                reason: refused.reason,
                request_id: 0,
                retry_after_ms: 0,
            };
            if let Ok(frame) = protocol::frame(&error) {
                self.out.refused.push(Refusal {
                    token,
                    peer,
                    frame,
                    reason: refused.disconnect,
                });
            }
            return;
        }
        let session = SessionId(self.next_session);
        self.next_session += 1;
        spdlog::debug!("net: session {session} connected from {peer}");
        self.world.stats.connects += 1;
        self.world.metrics.accepted.inc();
        self.out.opened.push((token, session));
        self.world.connect(session, peer, now);
        self.connections.insert(
            session,
            Connection {
                peer,
                owed_credit: 0,
                closed: false,
            },
        );
    }

    fn receive(&mut self, connection: SessionId, packet: Packet, now: Instant) {
        if !self.connections.contains_key(&connection) {
            return;
        }
        let Some(session) = self.route(connection) else {
            // Taken over by a resume: what it still sends is not the session's.
            self.owe_credit(connection);
            return;
        };
        let id = packet.id;
        let metrics = &self.world.metrics;
        metrics.frames_in.inc();
        metrics
            .bytes_in
            .inc_by((packet.payload.len() + net::HEADER_LEN) as u64);
        let item = match self.world.admit(session, now) {
            // Decoded when its turn comes: an unknown id or a payload that does not decode is
            // answered then, in its place among the session's requests.
            Admission::Admit => Item::Message {
                id,
                payload: packet.payload,
            },
            Admission::Limited { reply: true } => {
                self.world.metrics.rate_limited.inc();
                Item::Refused(
                    id,
                    HandlerError::new(
                        ErrorCode::RateLimited,
                        format!(
                            "more than {} requests per second; requests are dropped",
                            self.world.config.max_requests_per_sec
                        ),
                    ),
                )
            }
            Admission::Limited { reply: false } => {
                self.world.metrics.rate_limited.inc();
                // Counted among the session's requests in its turn (it may be resumable by
                // then: behind a login that asked to be).
                Item::Dropped
            }
            Admission::Ignore => {
                self.owe_credit(connection);
                return;
            }
            Admission::Flooding => {
                self.owe_credit(connection);
                self.world.kick(session, DisconnectReason::Flooding);
                return;
            }
        };
        self.queue.push_back(Queued {
            session: connection,
            item,
        });
    }

    /// Dispatches one queued message (or answers its error) and owes its credit back; or, for
    /// the end of a session, cleans up after it.
    fn process(&mut self, queued: Queued, now: Instant, now_us: u64) {
        let Queued {
            session: connection,
            item,
        } = queued;
        let routed = self.route(connection);
        if let Item::Closed { reason, peer } = item {
            match routed {
                // Taken over by a resume: the session goes on elsewhere.
                None => self.world.resume.unlink(connection),
                Some(session) => self.closed(connection, session, reason, peer, now),
            }
            return;
        }
        self.owe_credit(connection);
        let Some(session) = routed else {
            return; // sent before a resume took the session over: the client sends it again
        };
        if self.world.clients.get(&session).is_none_or(|c| c.closing) {
            return; // closed by the server while the message waited
        }
        self.world.resume.processed(session);
        if matches!(item, Item::Dropped) {
            return;
        }
        self.world.stats.messages_in += 1;
        match item {
            Item::Message { id, payload } if id == C2sSessionResume::ID => {
                self.resume(connection, session, payload, now);
            }
            Item::Message { id, payload } => {
                self.world.metrics.message_in(id);
                spdlog::debug!(
                    "world: session {session} -> {}",
                    self.dispatcher.name_of(id).unwrap_or("an unknown message")
                );
                let ctx = Ctx {
                    session,
                    now,
                    now_us,
                };
                self.dispatcher
                    .dispatch_packet(&mut self.world, &ctx, id, payload);
            }
            Item::Refused(id, error) => {
                spdlog::debug!(
                    "world: session {session}: {:?}: {}",
                    error.code,
                    error.reason
                );
                self.world.send_error(session, id, error);
            }
            Item::Dropped => {}
            Item::Closed { .. } => unreachable!("handled above"),
        }
    }

    /// The session's connection ended and everything it sent before is processed: it leaves
    /// the world, and its end is logged and recorded.
    fn end_session(
        &mut self,
        session: SessionId,
        reason: &DisconnectReason,
        peer: SocketAddr,
        now: Instant,
    ) {
        self.world.metrics.disconnect(reason);
        let client = self.world.disconnect(session, reason);
        self.world.resume.end(session);
        let (user, lived) = client.map_or(("-".to_string(), Duration::ZERO), |c| {
            (
                c.last_username.unwrap_or_else(|| "-".to_string()),
                now.saturating_duration_since(c.connected_at),
            )
        });
        let stats = &mut self.world.stats;
        *stats
            .disconnects_in_window
            .entry(reason.label())
            .or_default() += 1;
        *stats.disconnects.entry(reason.label()).or_default() += 1;
        spdlog::debug!(
            "net: session {session} ({peer}, {user}) disconnected after {:.1}s: {reason}",
            lived.as_secs_f64()
        );
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
            .filter(|c| !self.is_waiting(**c))
            .copied()
            .collect();
        for connection in ready {
            let Some(mut waiting) = self.parked.remove(&connection) else {
                continue;
            };
            while let Some(queued) = waiting.pop_front() {
                self.process(queued, now, now_us);
                if self.is_waiting(connection) {
                    if !waiting.is_empty() {
                        self.parked.insert(connection, waiting);
                    }
                    break;
                }
            }
        }
    }

    /// The session `connection` carries, or `None` when a resume took it over (or it went
    /// away from it): what the connection still sends is not the session's.
    fn route(&self, connection: SessionId) -> Option<SessionId> {
        if self.world.resume.is_idle() {
            return Some(connection);
        }
        self.world.resume.route(connection)
    }

    /// Whether the session `connection` carries waits for the DB worker.
    fn is_waiting(&self, connection: SessionId) -> bool {
        self.route(connection)
            .is_some_and(|session| self.world.is_waiting(session))
    }

    /// `connection`, carrying `session`, ended, and everything it sent before is processed: a
    /// resumable session goes away (for its grace window), any other ends.
    fn closed(
        &mut self,
        connection: SessionId,
        session: SessionId,
        reason: DisconnectReason,
        peer: SocketAddr,
        now: Instant,
    ) {
        let open = self.world.clients.get(&session).is_some_and(|c| !c.closing);
        if open && self.world.resume.go_away(session, reason.clone(), now) {
            if let Some(client) = self.world.clients.get_mut(&session) {
                client.away = true;
                client.gone = false;
            }
            spdlog::debug!(
                "net: session {session} ({peer}) is away: {reason}; it may come back within {} s",
                self.world.resume.config().grace.as_secs()
            );
            return;
        }
        self.world.resume.unlink(connection);
        self.end_session(session, &reason, peer, now);
    }

    /// Ends the away sessions whose grace window is over, as their connection's end would have.
    fn end_expired(&mut self, now: Instant) {
        for (session, reason) in self.world.resume.expired(now) {
            let Some(peer) = self.world.clients.get(&session).map(|c| c.peer) else {
                continue;
            };
            spdlog::debug!(
                "net: session {session} ({peer}) did not come back within {} s",
                self.world.resume.config().grace.as_secs()
            );
            self.end_session(session, &reason, peer, now);
        }
    }

    /// C2S_SessionResume on `connection` (carrying `session`, its own unless it took one back
    /// already): takes the session of the token back, or says why not.
    fn resume(&mut self, connection: SessionId, session: SessionId, payload: Bytes, now: Instant) {
        const ID: u16 = C2sSessionResume::ID;
        let request = match <C2sSessionResume as prost::Message>::decode(payload) {
            Ok(request) => request,
            Err(error) => {
                let error = HandlerError::bad_request(format!("C2S_SessionResume: {error}"));
                self.world.send_error(session, ID, error);
                return;
            }
        };
        let world = &mut self.world;
        let client = world
            .clients
            .get(&session)
            .expect("processed for a session");
        if session != connection || client.login.is_some() || client.pending_auth.is_some() {
            let error = HandlerError::new(
                ErrorCode::AlreadyAuthenticated,
                "this connection carries a session already: resume on a new connection",
            );
            world.send_error(session, ID, error);
            return;
        }
        let peer = client.peer;
        if let Err(reason) = world.throttle.begin_resume(connection, peer.ip(), now) {
            let error = HandlerError::new(ErrorCode::RateLimited, reason);
            world.send_error(session, ID, error);
            return;
        }
        let clients = &world.clients;
        let taken =
            world
                .resume
                .resume(connection, &request.session_token, request.received, |s| {
                    clients.get(&s).is_some_and(|c| !c.closing)
                });
        let (resumed, older) = match taken {
            Ok(taken) => taken,
            Err(refused) => {
                // A guess of a token counts against its address; a token that was good does not.
                let outcome = match refused {
                    Refused::Malformed | Refused::Unknown => crate::throttle::Outcome::Failed,
                    _ => crate::throttle::Outcome::Dropped,
                };
                if let Some(counted) = world.throttle.end(connection, outcome, now) {
                    if let Some(cluster) = world.cluster.as_mut() {
                        cluster.count(&counted);
                    }
                }
                world.resume.refused();
                let error = refusal(refused, world.resume.config().grace);
                world.send_error(session, ID, error);
                return;
            }
        };
        world
            .throttle
            .end(connection, crate::throttle::Outcome::Succeeded, now);
        let taken = resumed.session;
        if let Some(older) = older {
            // Its requests not yet processed are the client's to send again; its end, if it
            // was waiting among them, is done with here.
            let parked = self.parked.remove(&older);
            if parked.is_some_and(|q| q.iter().any(|q| matches!(q.item, Item::Closed { .. }))) {
                self.world.resume.unlink(older);
            }
        }
        if let Some(older) = older.filter(|c| self.connections.contains_key(c)) {
            // The client gave that connection up before the server noticed: it closes.
            let error = S2cError {
                code: ErrorCode::Replaced as i32,
                reason: "the session was taken back on another connection".into(),
                request_id: 0,
                retry_after_ms: 0,
            };
            if let Ok(frame) = protocol::frame(&error) {
                self.out.batches.push((older, vec![frame]));
            }
            self.close_connection(older, DisconnectReason::Replaced);
            self.world.lingering.insert(older, ());
        }
        let world = &mut self.world;
        // The connection carries the session from now on: its own place in the world goes,
        // and the session is counted against the connection's address.
        let preamble = world.out.take(connection);
        world.metrics.disconnect(&DisconnectReason::Resumed);
        world.disconnect(connection, &DisconnectReason::Resumed);
        world.rehome(taken, peer);
        let Some(client) = world.clients.get_mut(&taken) else {
            return;
        };
        client.away = false;
        // The new connection may have ended in this very tick: its end is queued behind.
        client.gone = !self.connections.contains_key(&connection);
        client.last_seen = now;
        let login = client
            .login
            .as_ref()
            .expect("a resumable session is logged in");
        let answer = S2cSessionResumed {
            username: login.username.clone(),
            user_id: login.user_id,
            guest: login.guest,
            processed: resumed.processed,
            sent: resumed.sent,
        };
        spdlog::debug!(
            "net: session {taken} ({}) is back on connection {connection} from {peer}: {} frames to send again",
            login.username,
            resumed.missed
        );
        world.resume.preamble(taken, preamble);
        if let Ok(frame) = protocol::frame(&answer) {
            world.resume.preamble(taken, [frame]);
        }
    }

    /// Closes `connection` after its frames of this tick, once.
    fn close_connection(&mut self, connection: SessionId, reason: DisconnectReason) {
        if let Some(c) = self.connections.get_mut(&connection) {
            if !std::mem::replace(&mut c.closed, true) {
                self.out.closes.push((connection, reason));
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

    /// Moves the world's frames and closes of the tick to the output.
    fn flush(&mut self) {
        let start = self.out.batches.len();
        let connections = &self.connections;
        let mut ended = Vec::new();
        if self.world.resume.is_idle() {
            self.out.batches.extend(
                self.world
                    .out
                    .drain_frames()
                    .filter(|(session, _)| connections.contains_key(session)),
            );
        } else {
            // Resumable sessions keep what they are sent; away ones are sent nothing; a session
            // taken back is sent its replay; a connection that took one back carries its frames.
            let World { out, resume, .. } = &mut self.world;
            for (session, mut batch) in out.drain_frames() {
                match resume.outbound(session, &mut batch) {
                    Outbound::Send(connection) if connections.contains_key(&connection) => {
                        self.out.batches.push((connection, batch));
                    }
                    Outbound::Send(_) | Outbound::Kept => {}
                    Outbound::Overflowed(reason) => ended.push((session, reason)),
                }
            }
            for session in resume.take_replays() {
                let mut batch = Vec::new();
                if let Outbound::Send(connection) = resume.outbound(session, &mut batch) {
                    if !batch.is_empty() && connections.contains_key(&connection) {
                        self.out.batches.push((connection, batch));
                    }
                }
            }
        }
        let (frames, bytes) = self.out.batches[start..]
            .iter()
            .flat_map(|(_, frames)| frames.iter())
            .fold((0u64, 0u64), |(n, b), f| (n + 1, b + f.len() as u64));
        self.world.metrics.frames_out.inc_by(frames);
        self.world.metrics.bytes_out.inc_by(bytes);
        let World {
            out,
            resume,
            clients,
            ..
        } = &mut self.world;
        let connections = &mut self.connections;
        for (session, reason) in out.drain_closes() {
            let connection = resume.connection_of(session);
            if let Some(c) = connections.get_mut(&connection) {
                // A connection is closed once (a slow consumer's, say, and then a kick).
                if !std::mem::replace(&mut c.closed, true) {
                    self.out.closes.push((connection, reason));
                }
            } else if clients.get(&session).is_some_and(|c| c.away) {
                // Closed by the server while away (replaced, shut down): it ends now.
                ended.push((session, reason));
            }
        }
        let now = self.world.now().at;
        for (session, reason) in ended {
            if let Some(peer) = self.world.clients.get(&session).map(|c| c.peer) {
                self.end_session(session, &reason, peer, now);
            }
        }
        // A close decided as the inputs came in (a slow consumer's) is for a connection that
        // may have ended among the later inputs of the tick.
        let connections = &self.connections;
        self.out.closes.retain(|(c, _)| connections.contains_key(c));
    }
}

/// What a client whose resume was refused is told.
fn refusal(refused: Refused, grace: Duration) -> HandlerError {
    match refused {
        Refused::Off => HandlerError::new(
            ErrorCode::SessionLost,
            "this server does not keep sessions after a dropped connection: log in again",
        ),
        Refused::Unknown => HandlerError::new(
            ErrorCode::SessionLost,
            format!(
                "no session to take back with this token: it ended (not back within {} s, more missed than the server keeps, logged out or replaced); log in again",
                grace.as_secs()
            ),
        ),
        Refused::Ending => HandlerError::new(
            ErrorCode::SessionLost,
            "the session is ending (replaced by a newer login, or closed by the server); log in again",
        ),
        Refused::Malformed => {
            HandlerError::bad_request("session_token must be 32 hexadecimal characters")
        }
        Refused::Ahead { received, sent } => HandlerError::bad_request(format!(
            "received {received} is more than the {sent} frames this session was sent"
        )),
        Refused::Behind { received, acked } => HandlerError::bad_request(format!(
            "received {received} is less than the {acked} frames already acknowledged"
        )),
    }
}

#[cfg(test)]
mod tests {
    //! The core in simulated time: no sockets, no threads, no sleeping.

    use super::*;
    use crate::handlers::testkit::{test_auth_settings, Chat};
    use crate::world::WorldConfig;
    use protocol::world::{C2sChat, C2sLogin, C2sPing, C2sRoomJoin};
    use protocol::{ClientToServer, S2cMessage};

    /// The test kit's sim with time held still (tests move it) and the database held until
    /// told, so that each test reads each tick's output as the core gives it.
    struct Sim {
        kit: crate::testing::Sim<Chat>,
    }

    impl Sim {
        fn new(config: WorldConfig) -> Sim {
            let auth = test_auth_settings();
            let mut kit = crate::testing::Sim::assemble(config, auth, 64, Chat::default(), true);
            kit.set_tick(Duration::ZERO);
            Sim { kit }
        }

        fn tick(&mut self, inputs: Vec<Input>) -> Output {
            self.kit.tick(inputs)
        }

        fn core(&mut self) -> &mut Core<Chat> {
            self.kit.core_mut()
        }

        fn world(&self) -> &World<Chat> {
            self.kit.world()
        }

        /// A connection from `ip` taken by the core; its welcome is read off.
        fn connect(&mut self, ip: [u8; 4]) -> SessionId {
            let session = self
                .kit
                .try_connect_from(SocketAddr::from((ip, 9)))
                .expect("taken");
            let welcome = self.kit.take_all(session);
            assert!(matches!(
                welcome.as_slice(),
                [(id, _)] if *id == <protocol::world::S2cWelcome as protocol::MessageType>::ID
            ));
            session
        }

        fn guest(&mut self, name: &str) -> SessionId {
            let session = self.connect([10, 0, 0, 1]);
            self.tick(vec![frame(session, &guest(name))]);
            self.kit.run_db();
            let output = self.tick(vec![]);
            assert!(matches!(
                decode(&output, session).as_slice(),
                [S2cMessage::S2cAuthResult(_)]
            ));
            session
        }
    }

    fn frame<M: ClientToServer>(session: SessionId, message: &M) -> Input {
        Input::Received {
            session,
            packet: Packet {
                id: M::ID,
                payload: Bytes::from(prost::Message::encode_to_vec(message)),
            },
        }
    }

    fn guest(name: &str) -> C2sLogin {
        C2sLogin {
            username: name.into(),
            password: String::new(),
            ..Default::default()
        }
    }

    fn join(room: &str) -> C2sRoomJoin {
        C2sRoomJoin {
            room: room.into(),
            ..Default::default()
        }
    }

    fn chat(room: &str, content: &str) -> C2sChat {
        C2sChat {
            room: room.into(),
            content: content.into(),
            sent_at_us: 7,
        }
    }

    /// What `session` is sent in `output`, decoded.
    fn decode(output: &Output, session: SessionId) -> Vec<S2cMessage> {
        output
            .batches
            .iter()
            .filter(|(s, _)| *s == session)
            .flat_map(|(_, frames)| frames.iter())
            .map(|f| S2cMessage::decode(u16::from_le_bytes([f[2], f[3]]), f.slice(4..)).unwrap())
            .collect()
    }

    fn credit(output: &Output, session: SessionId) -> usize {
        output
            .credits
            .iter()
            .filter(|(s, _)| *s == session)
            .map(|(_, n)| n)
            .sum()
    }

    #[test]
    fn requests_behind_a_login_wait_for_it_and_replies_keep_the_request_order() {
        let mut sim = Sim::new(WorldConfig::default());
        let s = sim.connect([10, 0, 0, 1]);
        let output = sim.tick(vec![
            frame(s, &guest("ann")),
            frame(s, &join("lobby")),
            frame(s, &chat("lobby", "hi")),
            frame(
                s,
                &C2sPing {
                    seq: 9,
                    client_time_us: 0,
                    ..Default::default()
                },
            ),
        ]);
        assert!(
            decode(&output, s).is_empty(),
            "the login is at the DB worker"
        );
        assert_eq!(
            credit(&output, s),
            1,
            "the parked requests keep their credit"
        );
        // The guest check answers; the join then waits for the room's history.
        sim.kit.run_db();
        let output = sim.tick(vec![]);
        assert!(matches!(
            decode(&output, s).as_slice(),
            [S2cMessage::S2cAuthResult(_)]
        ));
        assert_eq!(
            credit(&output, s),
            1,
            "the join, now waiting for the history"
        );
        sim.kit.run_db();
        let output = sim.tick(vec![]);
        let replies = decode(&output, s);
        assert!(
            matches!(
                replies.as_slice(),
                [
                    S2cMessage::S2cRoomJoined(_),
                    S2cMessage::S2cChat(_),
                    S2cMessage::S2cPong(p),
                ] if p.seq == 9
            ),
            "{replies:?}"
        );
        assert_eq!(
            credit(&output, s),
            2,
            "credit comes back once they are processed"
        );
    }

    #[test]
    fn every_frame_gives_its_credit_back_in_the_tick_that_processed_it() {
        let mut sim = Sim::new(WorldConfig::default());
        let s = sim.guest("ann");
        let pings: Vec<Input> = (0..10)
            .map(|seq| {
                frame(
                    s,
                    &C2sPing {
                        seq,
                        client_time_us: 0,
                        ..Default::default()
                    },
                )
            })
            .collect();
        let output = sim.tick(pings);
        assert_eq!(decode(&output, s).len(), 10);
        assert_eq!(
            output.credits,
            [(s, 10)],
            "one entry per session, all its frames"
        );
        assert!(sim.tick(vec![]).credits.is_empty());
    }

    #[test]
    fn a_burst_over_the_rate_is_answered_once_and_far_over_it_is_a_flooding_close() {
        let mut sim = Sim::new(WorldConfig {
            max_requests_per_sec: 10,
            ..WorldConfig::default()
        });
        let s = sim.guest("ann");
        let ping = |seq| {
            frame(
                s,
                &C2sPing {
                    seq,
                    client_time_us: 0,
                    ..Default::default()
                },
            )
        };
        // What is left of the burst (twice the rate, less the login): 19 pongs, then one
        // RATE_LIMITED, then silence.
        let output = sim.tick((0..25).map(ping).collect());
        let replies = decode(&output, s);
        assert_eq!(replies.len(), 20);
        assert!(
            matches!(&replies[19], S2cMessage::S2cError(e) if e.code() == ErrorCode::RateLimited)
        );
        assert_eq!(
            credit(&output, s),
            25,
            "dropped frames give their credit back too"
        );
        // Still far over it within the second: closed as flooding, nothing more answered.
        let output = sim.tick((0..20).map(ping).collect());
        assert!(decode(&output, s).is_empty());
        assert_eq!(output.closes, [(s, DisconnectReason::Flooding)]);
    }

    #[test]
    fn the_core_next_needs_a_tick_one_tick_length_after_the_last() {
        let mut sim = Sim::new(WorldConfig {
            tick_ms: 50,
            ..WorldConfig::default()
        });
        let created = sim.core().poll_timeout();
        assert_eq!(created, sim.kit.now() + Duration::from_millis(50));
        sim.kit.skip(Duration::from_millis(70));
        sim.tick(vec![]);
        assert_eq!(
            sim.core().poll_timeout(),
            sim.kit.now() + Duration::from_millis(50)
        );
    }

    #[test]
    fn a_silent_session_is_closed_at_the_idle_timeout_and_a_pinging_one_is_not() {
        let mut sim = Sim::new(WorldConfig {
            idle_timeout: Some(Duration::from_secs(5)),
            ..WorldConfig::default()
        });
        let silent = sim.guest("ann");
        let pinging = sim.guest("bob");
        for second in 1..=6 {
            sim.kit.skip(Duration::from_secs(1));
            let output = sim.tick(vec![frame(
                pinging,
                &C2sPing {
                    seq: second,
                    client_time_us: 0,
                    ..Default::default()
                },
            )]);
            if second < 5 {
                assert!(output.closes.is_empty(), "second {second}");
            } else if second == 5 {
                assert_eq!(output.closes, [(silent, DisconnectReason::IdleTimeout)]);
            }
        }
    }

    #[test]
    fn a_slow_consumer_leaves_the_world_at_once_and_its_room_sees_it_go() {
        let mut sim = Sim::new(WorldConfig::default());
        let ann = sim.guest("ann");
        let bob = sim.guest("bob");
        for s in [ann, bob] {
            sim.tick(vec![frame(s, &join("lobby"))]);
            sim.kit.run_db();
            sim.tick(vec![]);
        }
        let output = sim.tick(vec![
            Input::SlowConsumer { session: bob },
            frame(bob, &chat("lobby", "never said")),
        ]);
        let to_ann = decode(&output, ann);
        assert!(
            matches!(to_ann.as_slice(), [S2cMessage::S2cRoomPresence(p)] if p.username == "bob" && !p.joined),
            "{to_ann:?}"
        );
        assert!(decode(&output, bob).is_empty());
        assert_eq!(output.closes, [(bob, DisconnectReason::SlowConsumer)]);
        assert_eq!(sim.world().session_of("bob"), None);
    }

    #[test]
    fn past_max_sessions_a_connection_is_refused_with_server_full_and_never_becomes_a_session() {
        let mut sim = Sim::new(WorldConfig {
            max_sessions: 1,
            ..WorldConfig::default()
        });
        sim.connect([10, 0, 0, 1]);
        let output = sim.tick(vec![Input::Accepted {
            token: 77,
            peer: SocketAddr::from(([10, 0, 0, 2], 9)),
        }]);
        assert!(output.opened.is_empty());
        let refusal = &output.refused[0];
        assert_eq!(refusal.token, 77);
        assert_eq!(refusal.reason, DisconnectReason::ServerFull);
        let error = S2cMessage::decode(1003, refusal.frame.slice(4..)).unwrap();
        assert!(
            matches!(error, S2cMessage::S2cError(e) if e.code() == ErrorCode::ServerFull && e.request_id == 0)
        );
        assert_eq!(sim.core().connections(), 1);
        assert_eq!(sim.world().stats.refused_server_full, 1);
    }

    #[test]
    fn a_connection_closed_right_after_a_chat_still_says_it_then_leaves() {
        let mut sim = Sim::new(WorldConfig::default());
        let ann = sim.guest("ann");
        let bob = sim.guest("bob");
        for s in [ann, bob] {
            sim.tick(vec![frame(s, &join("lobby"))]);
            sim.kit.run_db();
            sim.tick(vec![]);
        }
        let output = sim.tick(vec![
            frame(bob, &chat("lobby", "bye")),
            Input::Closed {
                session: bob,
                reason: DisconnectReason::PeerClosed,
            },
        ]);
        let to_ann = decode(&output, ann);
        assert!(
            matches!(
                to_ann.as_slice(),
                [S2cMessage::S2cChat(c), S2cMessage::S2cRoomPresence(p)]
                    if c.content == "bye" && !p.joined
            ),
            "{to_ann:?}"
        );
        assert!(output.batches.iter().all(|(s, _)| *s != bob), "bob is gone");
        assert_eq!(sim.core().connections(), 1);
    }

    #[test]
    fn connects_and_disconnects_by_reason_are_counted_for_the_stats_line() {
        let mut sim = Sim::new(WorldConfig::default());
        let a = sim.guest("ann");
        let b = sim.guest("bob");
        sim.tick(vec![
            Input::Closed {
                session: a,
                reason: DisconnectReason::PeerClosed,
            },
            Input::Closed {
                session: b,
                reason: DisconnectReason::Io(std::io::ErrorKind::TimedOut),
            },
        ]);
        let stats = &sim.world().stats;
        assert_eq!(stats.connects, 2);
        assert_eq!(
            stats.disconnects_in_window.iter().collect::<Vec<_>>(),
            [(&"peer_closed", &1), (&"socket_error", &1)]
        );
    }

    #[test]
    fn shutdown_closes_every_session_and_records_those_whose_end_never_came() {
        let mut sim = Sim::new(WorldConfig::default());
        let ann = sim.guest("ann");
        let bob = sim.guest("bob");
        let output = std::mem::take(sim.core().shutdown());
        let mut closed: Vec<SessionId> = output.closes.iter().map(|(s, _)| *s).collect();
        closed.sort();
        assert_eq!(closed, [ann, bob]);
        assert!(output
            .closes
            .iter()
            .all(|(_, r)| *r == DisconnectReason::Shutdown));
        let at = sim.kit.now();
        let output = std::mem::take(sim.core().finish(
            Now { at, unix_us: 0 },
            vec![Input::Closed {
                session: ann,
                reason: DisconnectReason::Shutdown,
            }],
        ));
        assert_eq!(sim.core().connections(), 0);
        assert!(sim.world().clients.is_empty());
        // Both ends are in the session log's last write, handed to the DB worker.
        let ended: usize = output
            .db
            .iter()
            .map(|job| match job {
                crate::db::DbJob::RecordSessions(entries) => entries
                    .iter()
                    .filter(|e| matches!(e, crate::storage::SessionLogEntry::Closed(_)))
                    .count(),
                _ => 0,
            })
            .sum();
        assert_eq!(ended, 2, "both are in the session log");
        assert!(!sim.core().has_pending_writes(), "nothing waits");
    }
}
