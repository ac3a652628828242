//! A game's tests, in memory: the engine's sans-IO core ([`crate::core::Core`]) running a game
//! at simulated time, with clients that send and receive typed messages. No sockets, no
//! threads, no clock: a test steps the world tick by tick, or runs it for a while, and reads
//! what each client was sent. Everything the core does on a server (admission, logins, rate
//! limits, parking, timers, the game's tick) runs as it would there.
//!
//! ```
//! use engine::protocol::world::{C2sPing, S2cPong};
//! use engine::testing::Sim;
//! # struct MyGame;
//! # impl engine::Game for MyGame {
//! #     fn register(_: &mut engine::Setup<Self>)
//! #         -> Result<(), engine::DispatchError> { Ok(()) }
//! # }
//!
//! let mut sim = Sim::new(MyGame);
//! let ann = sim.guest("ann");
//! sim.send(ann, &C2sPing { seq: 7, ..Default::default() });
//! sim.step();
//! assert_eq!(sim.take::<S2cPong>(ann)[0].seq, 7);
//! ```
//!
//! Several nodes of one cluster are [`Nodes`]: sims whose batches and bucket requests an
//! in-memory link carries between ticks ([`Bucket`] keeps the names and rooms buckets as NATS
//! does), so a game tests what crosses between nodes without NATS.
//!
//! The storage is in memory ([`MemoryStorage`]); the DB worker's jobs of a tick are done
//! after it and answered at the next (or held until [`Sim::run_db`], with
//! [`Sim::holding_db`]), by the worker's own rules ([`Runner`]) at simulated time: with the
//! database taken away ([`Sim::database_down`]), requests are answered UNAVAILABLE and writes
//! wait, in order, and are tried again every [`crate::db::WRITE_RETRY`] of simulated time;
//! password hashing is made cheap (tests check behaviour, not hashing cost). Each
//! client connects from an address of its own (`10.x.y.z`), so per-address limits do not
//! meet unless a test means them to.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use config::ServerConfig;
use net::{DisconnectReason, Packet, SessionId};
use protocol::world::{C2sLogin, S2cAuthResult, S2cError};
use protocol::{ClientToServer, ServerToClient};

use crate::cluster::link::{
    dropped_by, holder, member_key, outranks, reserve_in, unavailable, unreserve_in, FromNats,
    NameRequest, RoomCounts,
};
use crate::cluster::{Batch, Cluster, ALL};
use crate::core::{Core, Input, Output};
use crate::db::{AuthSettings, DbJob, DbQueue, DbWorker, Lane, Runner};
use crate::storage::{MemoryStorage, Storage};
use crate::world::{Game, Now, World, WorldConfig};

/// The wall clock of a simulation when it starts: 2026-01-01 00:00:00 UTC, in microseconds
/// since the Unix epoch.
pub const EPOCH_US: u64 = 1_767_225_600_000_000;

/// The time of a simulation that started at `start` (monotonic) and is at `now`: the wall
/// clock is [`EPOCH_US`] plus the time gone by, so two runs see the same times.
pub fn clock(start: Instant, now: Instant) -> Now {
    let gone = now.saturating_duration_since(start).as_micros() as u64;
    Now {
        at: now,
        unix_us: EPOCH_US + gone,
    }
}

/// A game run by the engine's core at simulated time; see the [module](self).
pub struct Sim<G: Game> {
    core: Core<G>,
    /// The DB worker, run on the test's thread.
    db: SimDb,
    start: Instant,
    now: Instant,
    tick: Duration,
    next_token: u64,
    /// Inputs for the next step, in order.
    inputs: Vec<Input>,
    /// What each session was sent and has not been taken, oldest first: (id, payload).
    inbox: BTreeMap<SessionId, Vec<(u16, Bytes)>>,
    /// Sessions the world closed, and why.
    closed: BTreeMap<SessionId, DisconnectReason>,
    /// Everything the world sent since [`Sim::record`], in order; `None` when not recording.
    transcript: Option<Vec<u8>>,
    /// On a cluster: the bucket requests and batches of the steps since they were taken.
    to_cluster: (Vec<NameRequest>, Vec<(String, Batch)>),
}

impl<G: Game> Sim<G> {
    /// `game` on the engine's default settings.
    pub fn new(game: G) -> Sim<G> {
        Sim::with_config(ServerConfig::default(), game)
    }

    /// `game` on the settings of `config` (password hashing made cheap).
    pub fn with_config(config: ServerConfig, game: G) -> Sim<G> {
        Sim::build(config, game, false)
    }

    /// [`Sim::with_config`], with a database that holds every job until [`Sim::run_db`]: to
    /// test what a game does while requests are in flight (logins, a room's history).
    pub fn holding_db(config: ServerConfig, game: G) -> Sim<G> {
        Sim::build(config, game, true)
    }

    /// Runs the jobs a database held by [`Sim::holding_db`] has, in the order they came; the
    /// world takes their answers at the next step. Returns how many ran.
    pub fn run_db(&mut self) -> usize {
        let ran = self.db.held.len();
        while let Some(job) = self.db.held.pop_front() {
            self.db.execute(job, self.now, &mut self.inputs);
        }
        ran
    }

    /// From now on, the database holds every job until [`Sim::run_db`] (`true`), or does
    /// each at once (`false`; what it holds already waits for [`Sim::run_db`]).
    pub fn hold_db(&mut self, hold: bool) {
        self.db.holding = hold;
    }

    /// The jobs a database held by [`Sim::holding_db`] has, oldest first.
    pub fn held_db(&self) -> impl Iterator<Item = &DbJob> {
        self.db.held.iter()
    }

    /// Takes the jobs a database held by [`Sim::holding_db`] has, for a test that runs them
    /// elsewhere.
    #[cfg(test)]
    pub(crate) fn take_held_db(&mut self) -> Vec<DbJob> {
        self.db.held.drain(..).collect()
    }

    /// Does `job` now, as the database does a job; its answer comes at the next step.
    #[cfg(test)]
    pub(crate) fn run_job(&mut self, job: DbJob) {
        self.db.execute(job, self.now, &mut self.inputs);
    }

    /// Takes the database away (`true`: every call fails as one that restarts or is cut off
    /// does) or brings it back (`false`), with nothing it held lost.
    pub fn database_down(&mut self, down: bool) {
        self.db
            .outage
            .store(down, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the DB worker finds the storage answering, as `/readyz` says on a server.
    pub fn storage_available(&self) -> bool {
        self.db.runner.worker().is_available()
    }

    /// The storage, to read what was written.
    pub fn storage(&mut self) -> &mut dyn Storage {
        self.db.runner.worker_mut().storage_mut()
    }

    fn build(mut config: ServerConfig, game: G, holding: bool) -> Sim<G> {
        config.apply_game_defaults(G::NAME, "memory");
        config.auth.argon2_memory_kib = 64;
        config.auth.argon2_iterations = 1;
        config.auth.argon2_parallelism = 1;
        let auth = AuthSettings::from(&config);
        let world = WorldConfig::from(&config);
        Sim::assemble(world, auth, config.storage.queue, game, holding)
    }

    /// A sim of `game` under `config` with a DB worker under `auth` whose lanes hold `queue`
    /// jobs each; `holding`: as [`Sim::holding_db`].
    pub(crate) fn assemble(
        config: WorldConfig,
        auth: AuthSettings,
        queue: usize,
        game: G,
        holding: bool,
    ) -> Sim<G> {
        let storage = MemoryStorage::new();
        let outage = storage.outage_switch();
        let worker =
            DbWorker::new(Box::new(storage), auth).expect("the argon2 parameters above are valid");
        let now = Instant::now();
        let (dispatcher, hooks) = crate::handlers::setup()
            .unwrap_or_else(|e| panic!("the game's handlers do not register: {e}"));
        let tick = Duration::from_millis(u64::from(config.tick_ms));
        let world = World::new(config, game, hooks, DbQueue::new(queue), now);
        Sim {
            core: Core::new(world, dispatcher),
            db: SimDb {
                runner: Runner::new(worker),
                waiting: VecDeque::new(),
                outage,
                holding,
                held: VecDeque::new(),
            },
            start: now,
            now,
            tick,
            next_token: 0,
            inputs: Vec::new(),
            inbox: BTreeMap::new(),
            closed: BTreeMap::new(),
            transcript: None,
            to_cluster: (Vec::new(), Vec::new()),
        }
    }

    /// The world: the game's state is `world().game`.
    pub fn world(&self) -> &World<G> {
        self.core.world()
    }

    /// The core, to read: its invariants ([`Core::check_invariants`]) cover what it keeps
    /// beside the world (connections, parked requests, credits).
    pub fn core(&self) -> &Core<G> {
        &self.core
    }

    /// From now on, keeps everything the world sends, byte for byte and in the order the
    /// core hands it out (each tick's batches, session after session, then its closes): a
    /// test runs the same inputs twice and compares the two [`Sim::transcript`]s to show its
    /// game is deterministic.
    pub fn record(&mut self) {
        self.transcript = Some(Vec::new());
    }

    /// On a cluster (`world_mut().cluster` set): what the world asked of the buckets and the
    /// batches it sent the other nodes since this was last called, in order.
    pub fn take_cluster(&mut self) -> (Vec<NameRequest>, Vec<(String, Batch)>) {
        std::mem::take(&mut self.to_cluster)
    }

    /// What the world sent since [`Sim::record`] (empty when not recording).
    pub fn transcript(&self) -> &[u8] {
        self.transcript.as_deref().unwrap_or_default()
    }

    /// The world, to change it between steps.
    pub fn world_mut(&mut self) -> &mut World<G> {
        self.core.world_mut()
    }

    /// The simulated time now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The clock moves on by `by` with no tick, as when a server's loop was held up: the next
    /// step sees all that time gone by at once.
    pub fn skip(&mut self, by: Duration) {
        self.now += by;
    }

    /// Sets how far each step moves the clock (`server.tick_ms` until then); zero holds it
    /// still, so that only [`Sim::skip`] moves it.
    pub fn set_tick(&mut self, tick: Duration) {
        self.tick = tick;
    }

    /// The core itself, for the engine's own tests of what the kit does not wrap (shutdown).
    #[cfg(test)]
    pub(crate) fn core_mut(&mut self) -> &mut Core<G> {
        &mut self.core
    }

    /// One tick: the time moves on by `server.tick_ms`, the core takes what was sent since
    /// the last step, and what it sends goes to the clients' inboxes.
    pub fn step(&mut self) {
        self.tick_once();
    }

    /// One tick with `inputs` (after what [`Sim::send`] queued), handing back the core's
    /// output as it is, for a test or a benchmark that reads the frames itself: nothing goes
    /// to the clients' inboxes. Connections it closes end at the next step, as in
    /// [`Sim::step`].
    pub fn tick(&mut self, inputs: impl IntoIterator<Item = Input>) -> Output {
        self.inputs.extend(inputs);
        std::mem::take(self.advance())
    }

    /// Gives back an output taken from [`Sim::tick`], so that its buffers (and its batches')
    /// serve the next ticks, as a server's do.
    pub fn recycle(&mut self, output: Output) {
        self.core.recycle(output);
    }

    /// The time moves on by a tick and the core takes the queued inputs; the closes it
    /// decides are noted, and their ends queued for the next tick.
    fn advance(&mut self) -> &mut Output {
        self.now += self.tick;
        self.db.poll(self.now, &mut self.inputs);
        let inputs = std::mem::take(&mut self.inputs);
        let output = self.core.tick(clock(self.start, self.now), inputs);
        if let Some(transcript) = self.transcript.as_mut() {
            record(transcript, output);
        }
        self.to_cluster.0.append(&mut output.bucket);
        self.to_cluster.1.append(&mut output.cluster);
        for job in output.db.drain(..) {
            self.db.give(job, self.now, &mut self.inputs);
        }
        for (session, reason) in &output.closes {
            // The connection ends after its last frames, as a server's does: the world hears
            // of it at the next step.
            self.inputs.push(Input::Closed {
                session: *session,
                reason: reason.clone(),
            });
            self.closed.insert(*session, reason.clone());
        }
        output
    }

    /// [`Sim::step`], returning the connections the world took in it (token, session).
    fn tick_once(&mut self) -> Vec<(u64, SessionId)> {
        let output = self.advance();
        let opened = std::mem::take(&mut output.opened);
        let batches = std::mem::take(&mut output.batches);
        for (session, frames) in batches {
            let inbox = self.inbox.entry(session).or_default();
            inbox.extend(frames.iter().filter_map(split));
        }
        opened
    }

    /// Steps until `duration` of simulated time has gone by.
    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        while self.now < until {
            self.step();
        }
    }

    /// A client connects; it is a session after this step (with `S2C_Welcome` in its inbox),
    /// or `None` when the world refused it (full, or its address has too many).
    pub fn try_connect(&mut self) -> Option<SessionId> {
        self.connect_many(1).pop().flatten()
    }

    /// `count` clients connect in one step: each one's session, or `None` where the world
    /// refused it.
    fn connect_many(&mut self, count: usize) -> Vec<Option<SessionId>> {
        let peers: Vec<SocketAddr> = (0..count as u64)
            .map(|i| {
                // Networks (/24) change fastest: at most 256 clients share one.
                let n = self.next_token + i;
                SocketAddr::from(([10, (n >> 16) as u8, n as u8, (n >> 8) as u8], 40_000))
            })
            .collect();
        self.connect_peers(&peers)
    }

    /// Clients connect from `peers` in one step: each one's session, or `None` where the
    /// world refused it.
    fn connect_peers(&mut self, peers: &[SocketAddr]) -> Vec<Option<SessionId>> {
        let tokens: Vec<u64> = (0..peers.len() as u64)
            .map(|i| self.next_token + i)
            .collect();
        self.next_token += peers.len() as u64;
        for (&token, &peer) in tokens.iter().zip(peers) {
            self.inputs.push(Input::Accepted { token, peer });
        }
        let opened: BTreeMap<u64, SessionId> = self.tick_once().into_iter().collect();
        tokens.iter().map(|t| opened.get(t).copied()).collect()
    }

    /// A client connects from `peer` (to test limits per address); `None` when the world
    /// refused it.
    pub fn try_connect_from(&mut self, peer: SocketAddr) -> Option<SessionId> {
        self.connect_peers(&[peer]).pop().flatten()
    }

    /// A client connects; panics when the world refuses it.
    pub fn connect(&mut self) -> SessionId {
        self.try_connect()
            .expect("the world refused the connection (full, or too many from one address)")
    }

    /// A client connected and logged in as the guest `name`, with its inbox emptied (the
    /// welcome, the login's answer). Panics when the login is refused.
    pub fn guest(&mut self, name: &str) -> SessionId {
        self.guests(&[name])[0]
    }

    /// Clients logged in as the guests `names`, all at once (they connect in one step and
    /// log in in the next), with their inboxes emptied. Panics when one is refused.
    pub fn guests<S: AsRef<str>>(&mut self, names: &[S]) -> Vec<SessionId> {
        let sessions: Vec<SessionId> = self
            .connect_many(names.len())
            .into_iter()
            .map(|s| {
                s.expect("the world refused a connection (full, or too many from one address)")
            })
            .collect();
        for (&session, name) in sessions.iter().zip(names) {
            let login = C2sLogin {
                username: name.as_ref().into(),
                password: String::new(),
                ..Default::default()
            };
            self.send(session, &login);
        }
        let mut waiting: Vec<(SessionId, &str)> = sessions
            .iter()
            .copied()
            .zip(names.iter().map(AsRef::as_ref))
            .collect();
        for _ in 0..10 {
            self.step();
            waiting.retain(|&(session, name)| {
                if !self.take::<S2cAuthResult>(session).is_empty() {
                    self.inbox.remove(&session);
                    return false;
                }
                if let Some(error) = self.take::<S2cError>(session).pop() {
                    panic!("guest {name:?} refused: {error:?}");
                }
                true
            });
            if waiting.is_empty() {
                return sessions;
            }
        }
        panic!("guests {waiting:?} got no answer in 10 ticks");
    }

    /// `session` sends `message`; the world takes it at the next step.
    pub fn send<M: ClientToServer>(&mut self, session: SessionId, message: &M) {
        let payload = Bytes::from(prost::Message::encode_to_vec(message));
        self.send_frame(session, M::ID, payload);
    }

    /// `session` sends a frame of `id` with `payload`, which need not decode (to test what a
    /// game does with bad input); the world takes it at the next step.
    pub fn send_frame(&mut self, session: SessionId, id: u16, payload: Bytes) {
        self.inputs.push(Input::Received {
            session,
            packet: Packet { id, payload },
        });
    }

    /// Queues `input` for the next step, as a driver would: what NATS brought, a peer that
    /// stopped reading, or anything else [`Sim::send`] and the like do not say.
    pub fn input(&mut self, input: Input) {
        self.inputs.push(input);
    }

    /// Whether inputs wait for the next step: frames sent, the DB worker's answers, the ends
    /// of connections the world closed.
    pub fn has_inputs(&self) -> bool {
        !self.inputs.is_empty()
    }

    /// `session`'s connection ends (the client went away); the world sees it at the next
    /// step.
    pub fn disconnect(&mut self, session: SessionId) {
        self.inputs.push(Input::Closed {
            session,
            reason: DisconnectReason::PeerClosed,
        });
    }

    /// The messages of type `M` that `session` was sent since they were last taken, in
    /// order; other messages stay in its inbox. Panics on a frame of `M`'s id that does not
    /// decode as `M`.
    pub fn take<M: ServerToClient>(&mut self, session: SessionId) -> Vec<M> {
        let Some(inbox) = self.inbox.get_mut(&session) else {
            return Vec::new();
        };
        let mut taken = Vec::new();
        inbox.retain(|(id, payload)| {
            if *id != M::ID {
                return true;
            }
            let message = <M as prost::Message>::decode(payload.clone())
                .unwrap_or_else(|e| panic!("a frame of id {id} is not a {}: {e}", M::NAME));
            taken.push(message);
            false
        });
        taken
    }

    /// Everything `session` was sent since it was last taken, as (id, payload), in order.
    pub fn take_all(&mut self, session: SessionId) -> Vec<(u16, Bytes)> {
        self.inbox.remove(&session).unwrap_or_default()
    }

    /// The ids of everything in `session`'s inbox, in order, leaving it there: what a test
    /// prints when a message it expected is not there.
    pub fn pending(&self, session: SessionId) -> Vec<u16> {
        self.inbox
            .get(&session)
            .map_or_else(Vec::new, |inbox| inbox.iter().map(|(id, _)| *id).collect())
    }

    /// Empties `session`'s inbox.
    pub fn clear(&mut self, session: SessionId) {
        self.inbox.remove(&session);
    }

    /// Why the world closed `session`, if it did.
    pub fn closed(&self, session: SessionId) -> Option<&DisconnectReason> {
        self.closed.get(&session)
    }
}

/// The names and rooms buckets of a cluster in memory, with the rules NATS JetStream keeps
/// them by for a real cluster (see `cluster/nats.rs`): a claim of a name always succeeds, at a
/// new revision, and every node hears who holds it now; a release frees a name its session
/// still holds; a room's reservation counts one member of a node while the members counted
/// on every node are fewer than the capacity. Each node is told what concerns it in order.
#[derive(Debug, Default)]
pub struct Bucket {
    revision: u64,
    /// Holders by username (lowercase).
    names: HashMap<String, String>,
    /// Each room's members counted, by `node:incarnation`.
    rooms: HashMap<String, RoomCounts>,
    /// What each node (by incarnation) has yet to be told.
    pending: BTreeMap<u64, VecDeque<FromNats>>,
}

impl Bucket {
    /// A node that will be told the bucket's changes from now on.
    pub fn join(&mut self, incarnation: u64) {
        self.pending.entry(incarnation).or_default();
    }

    /// How many members the rooms bucket counts in `room`, on every node.
    pub fn counted(&self, room: &str) -> u32 {
        self.rooms.get(room).map_or(0, |c| c.values().sum())
    }

    /// Who holds `username` (lowercase): `node incarnation session`.
    pub fn holder(&self, username: &str) -> Option<&str> {
        self.names.get(username).map(String::as_str)
    }

    /// Carries out what node `node` in `incarnation` asked.
    pub fn request(&mut self, node: &str, incarnation: u64, request: NameRequest) {
        let me = member_key(node, incarnation);
        match request {
            NameRequest::Claim {
                session,
                username,
                at_us,
            } => {
                let value = holder(node, incarnation, session, at_us);
                self.put(incarnation, session, username, value);
            }
            NameRequest::Reclaim {
                session,
                username,
                at_us,
            } => {
                let value = holder(node, incarnation, session, at_us);
                match self.names.get(&username) {
                    Some(there) if outranks(there, &value) => {
                        let holder = there.clone();
                        self.tell(
                            incarnation,
                            FromNats::Outranked {
                                session,
                                username,
                                holder,
                            },
                        );
                    }
                    _ => self.put(incarnation, session, username, value),
                }
            }
            NameRequest::Release {
                session,
                username,
                at_us,
            } => {
                if self.names.get(&username) == Some(&holder(node, incarnation, session, at_us)) {
                    self.revision += 1;
                    self.names.remove(&username);
                    let revision = self.revision;
                    for queue in self.pending.values_mut() {
                        queue.push_back(FromNats::Freed {
                            username: username.clone(),
                            revision,
                        });
                    }
                }
            }
            NameRequest::Recount { room, members } => {
                let counts = self.rooms.entry(room).or_default();
                if members == 0 {
                    counts.remove(&me);
                } else {
                    counts.insert(me, members);
                }
            }
            NameRequest::Reserve {
                session,
                room,
                capacity,
            } => {
                let counts = self.rooms.entry(room.clone()).or_default();
                let outcome = reserve_in(counts, &me, capacity);
                self.pending
                    .entry(incarnation)
                    .or_default()
                    .push_back(FromNats::Reserved {
                        session,
                        room,
                        outcome,
                    });
            }
            NameRequest::Unreserve { room } => {
                if let Some(counts) = self.rooms.get_mut(&room) {
                    unreserve_in(counts, &me);
                }
            }
            request @ (NameRequest::DropNode { .. } | NameRequest::Started { .. }) => {
                for counts in self.rooms.values_mut() {
                    counts.retain(|who, _| !dropped_by(&request, who));
                }
            }
        }
    }

    /// Makes `value` (of `session` of node `incarnation`) the holder of `username`; every
    /// node hears of it.
    fn put(&mut self, incarnation: u64, session: SessionId, username: String, value: String) {
        self.revision += 1;
        let revision = self.revision;
        self.names.insert(username.clone(), value.clone());
        for (&whom, queue) in &mut self.pending {
            if whom == incarnation {
                queue.push_back(FromNats::Claimed {
                    session,
                    username: username.clone(),
                    granted: true,
                    revision,
                });
            }
            queue.push_back(FromNats::Held {
                username: username.clone(),
                holder: value.clone(),
                revision,
            });
        }
    }

    /// Tells node `incarnation` `what`.
    fn tell(&mut self, incarnation: u64, what: FromNats) {
        self.pending.entry(incarnation).or_default().push_back(what);
    }

    /// What node `incarnation` has yet to be told, oldest first.
    pub fn told(&mut self, incarnation: u64) -> Vec<FromNats> {
        self.pending
            .get_mut(&incarnation)
            .map(|queue| queue.drain(..).collect())
            .unwrap_or_default()
    }
}

/// Nodes of one cluster, each a [`Sim`] of the game (named `node1`, `node2`, ...), joined by
/// an in-memory link: after each step, what each node asked of the buckets goes to a
/// [`Bucket`], and its batches (encoded and decoded as NATS carries them) to the nodes they
/// are for; each node takes what it was brought at its next step, as a server does.
///
/// ```
/// use engine::protocol::world::{C2sChat, C2sRoomJoin, S2cChat};
/// # use engine::modules::{chat::ChatModule, rooms::{Rooms, RoomsConfig, RoomsGame, RoomsModule}};
/// # struct Chat(Rooms);
/// # impl RoomsGame for Chat {
/// #     fn rooms(&self) -> &Rooms { &self.0 }
/// #     fn rooms_mut(&mut self) -> &mut Rooms { &mut self.0 }
/// # }
/// # impl engine::Game for Chat {
/// #     fn register(s: &mut engine::Setup<Self>) -> Result<(), engine::DispatchError> {
/// #         s.add(RoomsModule)?;
/// #         s.add(ChatModule)
/// #     }
/// # }
/// use engine::testing::Nodes;
///
/// let mut nodes = Nodes::new((0..2).map(|_| Chat(Rooms::new(RoomsConfig::default()))));
/// let ann = nodes.guest(0, "ann");
/// let bob = nodes.guest(1, "bob");
/// for (node, who) in [(0, ann), (1, bob)] {
///     nodes.node(node).send(who, &C2sRoomJoin { room: "lobby".into(), ..Default::default() });
/// }
/// nodes.settle();
/// let line = C2sChat { room: "lobby".into(), content: "hi".into(), sent_at_us: 0 };
/// nodes.node(0).send(ann, &line);
/// nodes.settle();
/// assert_eq!(nodes.node(1).take::<S2cChat>(bob)[0].content, "hi");
/// ```
pub struct Nodes<G: Game> {
    sims: Vec<Sim<G>>,
    bucket: Bucket,
    /// Which nodes are cut off from NATS ([`Nodes::cut`]).
    cut: Vec<bool>,
}

impl<G: Game> Nodes<G> {
    /// One node for each of `games`, on the engine's default settings; they have heard each
    /// other once this returns.
    pub fn new(games: impl IntoIterator<Item = G>) -> Nodes<G> {
        let mut nodes = Nodes {
            sims: Vec::new(),
            bucket: Bucket::default(),
            cut: Vec::new(),
        };
        for game in games {
            let mut sim = Sim::new(game);
            let cluster = Cluster::new(format!("node{}", nodes.sims.len() + 1));
            nodes.bucket.join(cluster.incarnation());
            sim.world_mut().cluster = Some(cluster);
            nodes.sims.push(sim);
            nodes.cut.push(false);
        }
        nodes.settle();
        nodes
    }

    /// Node `index` (from 0), to send, take and step on its own.
    pub fn node(&mut self, index: usize) -> &mut Sim<G> {
        &mut self.sims[index]
    }

    /// The world of node `index`.
    pub fn world(&self, index: usize) -> &World<G> {
        self.sims[index].world()
    }

    /// Cuts node `index` off from NATS, as a network cut or NATS stopping does: what it asks
    /// of the buckets is answered as a server without NATS answers itself (logins and joins
    /// go on, decided by the node alone), what it sends is lost, and it hears nothing until
    /// [`Nodes::heal`].
    pub fn cut(&mut self, index: usize) {
        if !std::mem::replace(&mut self.cut[index], true) {
            self.sims[index]
                .inputs
                .push(Input::Cluster(FromNats::Disconnected));
        }
    }

    /// Node `index` reaches NATS again: it hears what the buckets said meanwhile, and that it
    /// is connected again ([`FromNats::Connected`]), as a server does.
    pub fn heal(&mut self, index: usize) {
        if std::mem::replace(&mut self.cut[index], false) {
            self.sims[index]
                .inputs
                .push(Input::Cluster(FromNats::Connected));
        }
    }

    /// The buckets as the link keeps them.
    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// One tick of every node, then what they asked and sent is carried.
    pub fn step(&mut self) {
        for sim in &mut self.sims {
            sim.step();
        }
        self.carry();
    }

    /// Steps every node until what they say to each other has settled: four ticks, which
    /// carry a request, its answer, and what the answer makes the nodes send.
    pub fn settle(&mut self) {
        for _ in 0..4 {
            self.step();
        }
    }

    /// Steps every node until `duration` of simulated time has gone by.
    pub fn run_for(&mut self, duration: Duration) {
        let ticks = duration.as_nanos() / self.sims[0].tick.as_nanos().max(1);
        for _ in 0..ticks.max(1) {
            self.step();
        }
    }

    /// A client of node `index` logged in as the guest `name`, its name claimed in the
    /// bucket, with its inbox emptied. Panics when the login is refused.
    pub fn guest(&mut self, index: usize, name: &str) -> SessionId {
        let session = self.sims[index].connect();
        self.sims[index].send(
            session,
            &C2sLogin {
                username: name.into(),
                password: String::new(),
                ..Default::default()
            },
        );
        for _ in 0..10 {
            self.step();
            let sim = &mut self.sims[index];
            if !sim.take::<S2cAuthResult>(session).is_empty() {
                sim.clear(session);
                return session;
            }
            if let Some(error) = sim.take::<S2cError>(session).pop() {
                panic!("guest {name:?} refused on node {index}: {error:?}");
            }
        }
        panic!("guest {name:?} got no answer in 10 ticks on node {index}");
    }

    /// Carries each node's bucket requests and batches, and queues what each is brought.
    fn carry(&mut self) {
        let mut batches = Vec::new();
        for (sim, &cut) in self.sims.iter_mut().zip(&self.cut) {
            let cluster = sim.world().cluster.as_ref().expect("a node of the cluster");
            let (node, incarnation) = (cluster.node().to_string(), cluster.incarnation());
            let (requests, sent) = sim.take_cluster();
            if cut {
                for request in requests {
                    if let Some(answer) = unavailable(request) {
                        sim.inputs.push(Input::Cluster(answer));
                    }
                }
                continue;
            }
            for request in requests {
                self.bucket.request(&node, incarnation, request);
            }
            for (subject, batch) in sent {
                let carried = crate::cluster::wire::decode(&prost::Message::encode_to_vec(&batch))
                    .expect("a batch decodes as it was encoded");
                batches.push((subject, carried));
            }
        }
        for (sim, _) in self.sims.iter_mut().zip(&self.cut).filter(|(_, &cut)| !cut) {
            let cluster = sim
                .core
                .world()
                .cluster
                .as_ref()
                .expect("a node of the cluster");
            let (inbox, incarnation) =
                (crate::cluster::inbox(cluster.node()), cluster.incarnation());
            for answer in self.bucket.told(incarnation) {
                sim.inputs.push(Input::Cluster(answer));
            }
            for (subject, batch) in &batches {
                if subject == ALL || *subject == inbox {
                    sim.inputs
                        .push(Input::Cluster(FromNats::Batch(batch.clone())));
                }
            }
        }
    }
}

/// The DB worker of a [`Sim`]: the worker's rules ([`Runner`]) at simulated time.
struct SimDb {
    runner: Runner,
    /// Writes given while the worker holds one the storage could not take, oldest first.
    waiting: VecDeque<DbJob>,
    /// Takes the storage away while on ([`Sim::database_down`]).
    outage: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Whether jobs wait for [`Sim::run_db`].
    holding: bool,
    /// The jobs held for [`Sim::run_db`], oldest first.
    held: VecDeque<DbJob>,
}

impl SimDb {
    /// A job from the core: held for [`Sim::run_db`], or done now.
    fn give(&mut self, job: DbJob, now: Instant, inputs: &mut Vec<Input>) {
        if self.holding {
            self.held.push_back(job);
        } else {
            self.execute(job, now, inputs);
        }
    }

    /// Does `job` as the worker does; what it did is an input of the next step. Writes keep
    /// their order behind one the storage could not take.
    fn execute(&mut self, job: DbJob, now: Instant, inputs: &mut Vec<Input>) {
        if job.lane() == Lane::Write && (self.runner.holding() || !self.waiting.is_empty()) {
            self.waiting.push_back(job);
            return;
        }
        if let Some(done) = self.runner.run(job, now) {
            inputs.push(Input::Db(done));
        }
    }

    /// What the worker has due at `now`: the held write tried again, and once it is written,
    /// the writes that waited behind it.
    fn poll(&mut self, now: Instant, inputs: &mut Vec<Input>) {
        if let Some(done) = self.runner.poll(now) {
            inputs.push(Input::Db(done));
        }
        while !self.runner.holding() {
            let Some(job) = self.waiting.pop_front() else {
                break;
            };
            if let Some(done) = self.runner.run(job, now) {
                inputs.push(Input::Db(done));
            }
        }
    }
}

/// Appends a tick's output to a transcript: each batch as its session id and its frames, each
/// close as its session id and reason, each connection taken as its token and session id.
fn record(transcript: &mut Vec<u8>, output: &crate::core::Output) {
    for (token, session) in &output.opened {
        transcript.extend_from_slice(b"open");
        transcript.extend_from_slice(&token.to_le_bytes());
        transcript.extend_from_slice(&session.0.to_le_bytes());
    }
    for (session, frames) in &output.batches {
        transcript.extend_from_slice(b"send");
        transcript.extend_from_slice(&session.0.to_le_bytes());
        for frame in frames {
            transcript.extend_from_slice(frame);
        }
    }
    for (session, reason) in &output.closes {
        transcript.extend_from_slice(b"shut");
        transcript.extend_from_slice(&session.0.to_le_bytes());
        transcript.extend_from_slice(reason.to_string().as_bytes());
    }
}

/// A frame's id and payload; `None` for a frame shorter than its header.
fn split(frame: &Bytes) -> Option<(u16, Bytes)> {
    if frame.len() < protocol::HEADER_LEN {
        return None;
    }
    let id = u16::from_le_bytes([frame[2], frame[3]]);
    Some((id, frame.slice(protocol::HEADER_LEN..)))
}

#[cfg(test)]
mod tests {
    use protocol::world::{C2sChat, C2sRoomJoin, S2cChat, S2cRoomJoined};
    use protocol::ErrorCode;

    use super::*;
    use crate::handlers::testkit::Chat;

    /// A scripted session of a chat world: 40 players join and leave 6
    /// rooms, chat, whisper (to players here and gone), list rooms, ping, send what is
    /// refused, drop their connections and go idle past the timeout; `step` picks each
    /// tick's actions from a fixed pseudo-random sequence. Returns the transcript.
    fn scripted_run() -> Vec<u8> {
        use protocol::world::{C2sPing, C2sRoomLeave, C2sRoomList, C2sWhisper};
        let mut config = ServerConfig::default();
        config.net.idle_timeout_secs = 3;
        let mut sim = Sim::with_config(config, Chat::default());
        sim.record();
        let mut seed: u64 = 0x5eed;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let mut players: Vec<(String, SessionId)> = (0..40)
            .map(|i| {
                let name = format!("player{i}");
                let session = sim.guest(&name);
                (name, session)
            })
            .collect();
        let room = |i: u64| format!("room{i}");
        for tick in 0..240 {
            for _ in 0..12 {
                let (name, who) = players[next(players.len() as u64) as usize].clone();
                match next(10) {
                    0..=1 => sim.send(
                        who,
                        &C2sRoomJoin {
                            room: room(next(6)),
                            ..Default::default()
                        },
                    ),
                    2..=4 => sim.send(
                        who,
                        &C2sChat {
                            room: room(next(6)),
                            content: format!("{name} says {tick}"),
                            sent_at_us: tick,
                        },
                    ),
                    5 => sim.send(
                        who,
                        &C2sWhisper {
                            to: format!("player{}", next(45)),
                            content: format!("psst {tick}"),
                            sent_at_us: tick,
                        },
                    ),
                    6 => sim.send(
                        who,
                        &C2sRoomLeave {
                            room: room(next(6)),
                        },
                    ),
                    7 => sim.send(who, &C2sRoomList {}),
                    8 => sim.send(
                        who,
                        &C2sPing {
                            seq: tick as u32,
                            client_time_us: 0,
                            ..Default::default()
                        },
                    ),
                    _ => sim.send(
                        who,
                        &C2sRoomJoin {
                            room: "bad room!".into(),
                            ..Default::default()
                        },
                    ),
                }
            }
            if tick % 40 == 39 {
                // A few drop their connections, and come back under the same names.
                for _ in 0..3 {
                    let index = next(players.len() as u64) as usize;
                    sim.disconnect(players[index].1);
                }
            }
            sim.step();
            let gone: Vec<usize> = (0..players.len())
                .filter(|&i| sim.closed(players[i].1).is_some())
                .collect();
            for i in gone {
                let name = players[i].0.clone();
                players[i].1 = sim.guest(&name);
            }
        }
        // Nobody speaks: every session goes past the idle timeout and is closed.
        sim.run_for(Duration::from_secs(5));
        assert!(sim.world().clients.is_empty(), "the idle were closed");
        sim.transcript().to_vec()
    }

    #[test]
    fn the_same_inputs_give_the_same_outputs_byte_for_byte() {
        let (first, second) = (scripted_run(), scripted_run());
        assert!(first.len() > 100_000, "a run sends plenty: {}", first.len());
        if first != second {
            let at = first.iter().zip(&second).position(|(a, b)| a != b);
            panic!(
                "the runs differ at byte {at:?} of {} and {}",
                first.len(),
                second.len()
            );
        }
    }

    /// `server.idle_timeout_secs` from the file's settings, in simulated time: the silent
    /// session is closed at the timeout, with nothing sent before; the pinging one stays.
    #[test]
    fn the_configured_idle_timeout_closes_the_silent_and_spares_the_pinging() {
        use protocol::world::{C2sPing, S2cPong};
        let mut config = ServerConfig::default();
        config.net.idle_timeout_secs = 1;
        let mut sim = Sim::with_config(config, Chat::default());
        let silent = sim.guest("silent");
        let alive = sim.guest("alive");
        let start = sim.now();
        let mut closed_after = None;
        for seq in 0..50 {
            sim.send(
                alive,
                &C2sPing {
                    seq,
                    client_time_us: 0,
                    ..Default::default()
                },
            );
            for _ in 0..4 {
                sim.step();
            }
            if closed_after.is_none() && sim.closed(silent).is_some() {
                closed_after = Some(sim.now() - start);
            }
        }
        let closed_after = closed_after.expect("the silent session was closed");
        assert!(
            (Duration::from_secs(1)..Duration::from_millis(2100)).contains(&closed_after),
            "closed after {closed_after:?}"
        );
        assert_eq!(sim.closed(silent), Some(&DisconnectReason::IdleTimeout));
        assert_eq!(
            sim.pending(silent),
            Vec::<u16>::new(),
            "nothing before the close"
        );
        assert_eq!(sim.closed(alive), None);
        assert_eq!(sim.take::<S2cPong>(alive).len(), 50);
    }

    #[test]
    fn an_idle_timeout_of_zero_never_closes_a_session() {
        let mut config = ServerConfig::default();
        config.net.idle_timeout_secs = 0;
        let mut sim = Sim::with_config(config, Chat::default());
        let sleeper = sim.guest("sleeper");
        sim.run_for(Duration::from_secs(3600));
        assert_eq!(sim.closed(sleeper), None);
        assert!(sim.world().login(sleeper).is_some());
    }

    #[test]
    fn a_held_database_keeps_a_login_waiting_until_it_runs() {
        let mut sim = Sim::holding_db(ServerConfig::default(), Chat::default());
        let ann = sim.connect();
        let login = C2sLogin {
            username: "ann".into(),
            password: String::new(),
            ..Default::default()
        };
        sim.send(ann, &login);
        sim.run_for(Duration::from_secs(1));
        assert!(
            sim.take::<S2cAuthResult>(ann).is_empty(),
            "answered while held"
        );
        assert!(
            sim.run_db() >= 1,
            "the guest check (and the session log's writes)"
        );
        sim.step();
        assert_eq!(sim.take::<S2cAuthResult>(ann).len(), 1);
    }

    /// The rooms and chat modules through the core, parking included: a join waits for the
    /// room's history (held in the database here), and a line the same client sends right
    /// after waits behind it, so its answers keep the order of its requests.
    #[test]
    fn a_line_sent_behind_a_join_waiting_for_history_waits_too_and_keeps_its_order() {
        let mut sim = Sim::holding_db(ServerConfig::default(), Chat::default());
        let ann = sim.connect();
        let login = C2sLogin {
            username: "ann".into(),
            password: String::new(),
            ..Default::default()
        };
        sim.send(ann, &login);
        sim.step();
        sim.run_db();
        sim.step();
        assert_eq!(sim.take::<S2cAuthResult>(ann).len(), 1);
        sim.clear(ann);
        sim.send(
            ann,
            &C2sRoomJoin {
                room: "lobby".into(),
                ..Default::default()
            },
        );
        sim.send(
            ann,
            &C2sChat {
                room: "lobby".into(),
                content: "first words".into(),
                sent_at_us: 1,
            },
        );
        sim.run_for(Duration::from_millis(500));
        assert_eq!(
            sim.pending(ann),
            Vec::<u16>::new(),
            "nothing while the join waits"
        );
        sim.run_db();
        sim.step();
        let ids = sim.pending(ann);
        use protocol::MessageType;
        let joined = ids.iter().position(|&id| id == S2cRoomJoined::ID);
        let echoed = ids.iter().position(|&id| id == S2cChat::ID);
        assert!(
            joined.is_some() && joined < echoed,
            "joined, then the line: {ids:?}"
        );
        assert_eq!(sim.take::<S2cChat>(ann)[0].content, "first words");
    }

    /// The DB worker's rules at simulated time: with the database away, a login is answered
    /// UNAVAILABLE with a retry hint and its session kept, chat goes on, and the history
    /// writes wait (tried again every 250 ms) and are written in order once it is back.
    #[test]
    fn while_the_database_is_away_requests_are_unavailable_and_writes_wait_in_order() {
        use prost::Message;
        let mut sim = Sim::new(Chat::default());
        let ann = sim.guest("ann");
        sim.send(
            ann,
            &C2sRoomJoin {
                room: "lobby".into(),
                ..Default::default()
            },
        );
        sim.step();
        sim.step();
        assert_eq!(sim.take::<S2cRoomJoined>(ann).len(), 1);
        sim.database_down(true);
        for i in 0..3 {
            sim.send(
                ann,
                &C2sChat {
                    room: "lobby".into(),
                    content: format!("line {i}"),
                    sent_at_us: i,
                },
            );
            sim.step();
            assert_eq!(sim.take::<S2cChat>(ann).len(), 1, "echoed at once");
        }
        let bob = sim.connect();
        let login = C2sLogin {
            username: "bob".into(),
            ..Default::default()
        };
        sim.send(bob, &login);
        sim.step();
        sim.step();
        let errors = sim.take::<S2cError>(bob);
        assert_eq!(errors.len(), 1, "{:?}", sim.pending(bob));
        assert_eq!(errors[0].code(), ErrorCode::Unavailable);
        assert_eq!(errors[0].retry_after_ms, 1_000);
        assert!(!sim.storage_available());
        // Ten seconds away, with the writes tried again all along.
        sim.run_for(Duration::from_secs(10));
        assert!(!sim.storage_available());
        assert!(sim.closed(bob).is_none(), "the session is kept");
        sim.database_down(false);
        sim.run_for(crate::db::WRITE_RETRY * 2);
        assert!(sim.storage_available(), "back by itself");
        let lines: Vec<String> = sim
            .storage()
            .log_tail("rooms", "lobby", 10)
            .unwrap()
            .iter()
            .map(|entry| {
                S2cChat::decode(&entry.data[protocol::HEADER_LEN..])
                    .unwrap()
                    .content
            })
            .collect();
        assert_eq!(lines, ["line 0", "line 1", "line 2"], "all, in order");
        sim.send(bob, &login);
        sim.step();
        sim.step();
        assert_eq!(sim.take::<S2cAuthResult>(bob)[0].username, "bob");
    }

    /// Two nodes cut off from NATS each let a player log in as `ann` (the second later) and
    /// into the lobby; once they reach NATS again, in either order, the later login holds the
    /// name on both nodes, the other is told REPLACED, whispers reach the holder, and the rooms
    /// bucket counts the lobby's members as they are.
    #[test]
    fn a_name_taken_on_two_nodes_apart_goes_to_the_later_login_once_they_meet_again() {
        use protocol::world::{C2sWhisper, S2cWhisper};
        for heal_first in [0, 1] {
            let mut nodes = Nodes::new((0..2).map(|_| Chat::default()));
            nodes.cut(0);
            nodes.cut(1);
            let early = nodes.guest(0, "ann");
            nodes.run_for(Duration::from_millis(100));
            let late = nodes.guest(1, "ann");
            for (node, who) in [(0, early), (1, late)] {
                nodes.node(node).send(
                    who,
                    &C2sRoomJoin {
                        room: "lobby".into(),
                        ..Default::default()
                    },
                );
            }
            nodes.settle();
            assert!(nodes.node(0).closed(early).is_none() && nodes.node(1).closed(late).is_none());
            assert_eq!(
                nodes.bucket().holder("ann"),
                None,
                "nobody asked the bucket"
            );
            nodes.heal(heal_first);
            nodes.settle();
            nodes.heal(1 - heal_first);
            nodes.run_for(Duration::from_secs(1));
            let errors = nodes.node(0).take::<S2cError>(early);
            assert_eq!(
                errors.iter().map(S2cError::code).collect::<Vec<_>>(),
                [ErrorCode::Replaced],
                "healed {heal_first} first"
            );
            assert_eq!(
                nodes.node(0).closed(early),
                Some(&DisconnectReason::Replaced)
            );
            assert!(
                nodes.node(1).closed(late).is_none(),
                "the later login keeps it"
            );
            assert!(nodes.node(1).take::<S2cError>(late).is_empty());
            let holder = nodes.bucket().holder("ann").unwrap().to_string();
            assert!(
                holder.starts_with(&format!(
                    "node2 {} {} ",
                    nodes.world(1).cluster.as_ref().unwrap().incarnation(),
                    late.0
                )),
                "{holder}"
            );
            assert_eq!(nodes.bucket().counted("lobby"), 1, "ann on node 2 only");
            let cyd = nodes.guest(0, "cyd");
            nodes.node(0).send(
                cyd,
                &C2sWhisper {
                    to: "ann".into(),
                    content: "which ann?".into(),
                    sent_at_us: 1,
                },
            );
            nodes.settle();
            let got = nodes.node(1).take::<S2cWhisper>(late);
            assert_eq!(got.len(), 1, "{:?}", nodes.node(0).take::<S2cError>(cyd));
            assert_eq!(got[0].content, "which ann?");
        }
    }

    /// A node cut off from NATS alone for longer than the others wait for it: they count it
    /// gone and the lines said meanwhile never reach it. Once it is back, its member of the
    /// lobby is told so in one S2C_RoomMissed, and hears the lines said after.
    #[test]
    fn a_member_of_a_node_cut_off_alone_is_told_it_missed_lines_once_it_is_back() {
        use protocol::world::S2cRoomMissed;
        let mut nodes = Nodes::new((0..2).map(|_| Chat::default()));
        let ann = nodes.guest(0, "ann");
        let bob = nodes.guest(1, "bob");
        for (node, who) in [(0, ann), (1, bob)] {
            nodes.node(node).send(
                who,
                &C2sRoomJoin {
                    room: "lobby".into(),
                    ..Default::default()
                },
            );
        }
        nodes.settle();
        let say = |nodes: &mut Nodes<Chat>, content: &str| {
            nodes.node(0).send(
                ann,
                &C2sChat {
                    room: "lobby".into(),
                    content: content.into(),
                    sent_at_us: 0,
                },
            );
        };
        say(&mut nodes, "before");
        nodes.settle();
        nodes.cut(1);
        say(&mut nodes, "lost early");
        nodes.run_for(crate::cluster::NODE_TIMEOUT + Duration::from_secs(1));
        say(&mut nodes, "lost late");
        nodes.settle();
        let _ = nodes.node(1).take::<S2cChat>(bob);
        assert!(nodes.node(1).take::<S2cRoomMissed>(bob).is_empty());
        nodes.heal(1);
        nodes.run_for(Duration::from_secs(1));
        say(&mut nodes, "after");
        nodes.settle();
        let missed = nodes.node(1).take::<S2cRoomMissed>(bob);
        assert_eq!(
            missed.iter().map(|m| m.room.as_str()).collect::<Vec<_>>(),
            ["lobby"],
            "told once"
        );
        let heard: Vec<String> = nodes
            .node(1)
            .take::<S2cChat>(bob)
            .into_iter()
            .map(|c| c.content)
            .collect();
        assert_eq!(heard, ["after"]);
    }

    #[test]
    fn guests_join_a_room_and_chat_through_the_core() {
        let mut sim = Sim::new(Chat::default());
        let ann = sim.guest("ann");
        let bob = sim.guest("bob");
        for who in [ann, bob] {
            sim.send(
                who,
                &C2sRoomJoin {
                    room: "lobby".into(),
                    ..Default::default()
                },
            );
            sim.step();
            sim.step();
            assert_eq!(
                sim.take::<S2cRoomJoined>(who).len(),
                1,
                "{:?}",
                sim.pending(who)
            );
        }
        sim.send(
            ann,
            &C2sChat {
                room: "lobby".into(),
                content: "hi".into(),
                sent_at_us: 1,
            },
        );
        sim.step();
        for who in [ann, bob] {
            let lines = sim.take::<S2cChat>(who);
            assert_eq!(lines.len(), 1, "once each");
            assert_eq!(
                (lines[0].from.as_str(), lines[0].content.as_str()),
                ("ann", "hi")
            );
        }
        // Outside the room: an error, with the request's id.
        let cyd = sim.guest("cyd");
        sim.send(
            cyd,
            &C2sChat {
                room: "lobby".into(),
                content: "me too".into(),
                sent_at_us: 2,
            },
        );
        sim.step();
        let errors = sim.take::<S2cError>(cyd);
        assert_eq!(errors[0].code, ErrorCode::NotInRoom as i32);
        assert!(sim.take::<S2cChat>(bob).is_empty());
    }

    #[test]
    fn a_session_that_never_logs_in_is_closed_at_the_login_deadline_in_simulated_time() {
        let mut config = ServerConfig::default();
        config.limits.login_deadline_secs = 2;
        let mut sim = Sim::with_config(config, Chat::default());
        let idle = sim.connect();
        sim.run_for(Duration::from_millis(1_500));
        assert_eq!(sim.closed(idle), None);
        sim.run_for(Duration::from_secs(2));
        assert_eq!(sim.closed(idle), Some(&DisconnectReason::LoginTimeout));
    }
}
