//! [`Setup`]: what a game is made of, put together once at start: the handlers of its
//! messages, and the hooks, timers, DB answers, cluster events, metrics and admin views of the
//! [`Module`]s it opts into and of its own. A module registers itself through the same calls a
//! game uses, so the engine knows no module by name, and two modules combine in one game.

use std::time::{Duration, Instant};

use net::{DisconnectReason, SessionId};
use protocol::ClientToServer;

use super::{Game, Login, World};
use crate::cluster::link::Reservation;
use crate::cluster::Kind;
use crate::db::DbEvent;
use crate::dispatcher::{DispatchError, Handler, MessageDispatcher};
use crate::timers::TimerFn;

/// A part of a game that brings its own handlers and hooks (as bevy's plugins do): the
/// engine's rooms ([`crate::modules::rooms::RoomsModule`]) and chat
/// ([`crate::modules::chat::ChatModule`]), or one a game writes. A game adds it in
/// [`Game::register`] with [`Setup::add`].
///
/// ```
/// use std::time::{Duration, Instant};
/// use engine::world::{Module, Setup};
/// use engine::{DispatchError, Game, World};
///
/// /// Counts the ticks of any game that adds it, in the game's state.
/// struct TickCount;
///
/// /// A game that keeps a tick count.
/// trait Counted: Game {
///     fn count(&mut self) -> &mut u64;
/// }
///
/// impl<G: Counted> Module<G> for TickCount {
///     fn build(self, setup: &mut Setup<G>) -> Result<(), DispatchError> {
///         setup.on_tick(|world: &mut World<G>, _: Instant, _: Duration| *world.game.count() += 1);
///         Ok(())
///     }
/// }
/// ```
pub trait Module<G: Game> {
    /// Registers the module's handlers and hooks.
    fn build(self, setup: &mut Setup<G>) -> Result<(), DispatchError>;
}

/// A hook on a session: it connected, logged in, or its connection ended.
pub type SessionHook<G> = fn(&mut World<G>, SessionId);
/// A hook on a login that ended (logout, replaced, kicked, or its connection ended).
pub type LogoutHook<G> = fn(&mut World<G>, SessionId, &Login);
/// A hook on a session whose connection ended, with why.
pub type DisconnectHook<G> = fn(&mut World<G>, SessionId, &DisconnectReason);
/// A hook run every tick with `now` and `dt`.
pub type TickHook<G> = fn(&mut World<G>, Instant, Duration);
/// Whether a module holds a session's later requests (it waits for the DB worker, say).
pub type WaitingHook<G> = fn(&World<G>, SessionId) -> bool;
/// An answer of the DB worker: the hook takes it if it is its own (returns `None`) or hands it
/// back for the next.
pub type DbAnswerHook<G> = fn(&mut World<G>, DbEvent, Instant) -> Option<DbEvent>;
/// A hook on the world alone: the DB worker died, or this tick's writes go out.
pub type WorldHook<G> = fn(&mut World<G>);
/// Whether a module has writes waiting for a full write queue.
pub type PendingHook<G> = fn(&World<G>) -> bool;
/// An event from node `from` of the cluster: the hook takes it if it is its own (returns
/// `None`) or hands it back for the next.
pub type ClusterHook<G> = fn(&mut World<G>, &str, Kind, Instant) -> Option<Kind>;
/// A hook on a node of the cluster: new to this one (send it your state), or gone.
pub type NodeHook<G> = fn(&mut World<G>, &str);
/// The rooms bucket of the cluster answered a reservation of `room` for a session.
pub type ReservedHook<G> = fn(&mut World<G>, SessionId, String, Reservation);
/// Registers a module's metrics, once, when a server starts.
pub type MetricsHook<G> = fn(&mut World<G>, &mut crate::metrics::Registry);
/// What a module shows on the admin page: a JSON object whose fields go into `game` of
/// `/api/state`.
pub type AdminHook<G> = fn(&World<G>) -> serde_json::Value;
/// What a module adds to the periodic stats line, such as `", 12 rooms"`.
pub type StatsHook<G> = fn(&World<G>) -> String;

/// The hooks of a game's modules, in the order they were added, then the game's own: the
/// world runs them where it runs the game's [`Game`] hooks.
pub struct Hooks<G> {
    pub(crate) connected: Vec<SessionHook<G>>,
    pub(crate) logged_in: Vec<SessionHook<G>>,
    pub(crate) logged_out: Vec<LogoutHook<G>>,
    pub(crate) disconnected: Vec<DisconnectHook<G>>,
    pub(crate) tick: Vec<TickHook<G>>,
    pub(crate) waiting: Vec<WaitingHook<G>>,
    pub(crate) db_answer: Vec<DbAnswerHook<G>>,
    pub(crate) db_died: Vec<WorldHook<G>>,
    pub(crate) flush_writes: Vec<WorldHook<G>>,
    pub(crate) pending_writes: Vec<PendingHook<G>>,
    pub(crate) cluster_event: Vec<ClusterHook<G>>,
    pub(crate) cluster_state: Vec<NodeHook<G>>,
    pub(crate) node_lost: Vec<NodeHook<G>>,
    pub(crate) missed_from: Vec<NodeHook<G>>,
    pub(crate) answer_codecs: Vec<crate::codec::AnswerCodec>,
    pub(crate) reconnected: Vec<WorldHook<G>>,
    pub(crate) reserved: Vec<ReservedHook<G>>,
    pub(crate) metrics: Vec<MetricsHook<G>>,
    pub(crate) admin: Vec<AdminHook<G>>,
    pub(crate) stats: Vec<StatsHook<G>>,
    pub(crate) timers: Vec<(Duration, TimerFn<World<G>>)>,
}

impl<G> Default for Hooks<G> {
    fn default() -> Self {
        Hooks {
            connected: Vec::new(),
            logged_in: Vec::new(),
            logged_out: Vec::new(),
            disconnected: Vec::new(),
            tick: Vec::new(),
            waiting: Vec::new(),
            db_answer: Vec::new(),
            db_died: Vec::new(),
            flush_writes: Vec::new(),
            pending_writes: Vec::new(),
            cluster_event: Vec::new(),
            cluster_state: Vec::new(),
            node_lost: Vec::new(),
            missed_from: Vec::new(),
            answer_codecs: Vec::new(),
            reconnected: Vec::new(),
            reserved: Vec::new(),
            metrics: Vec::new(),
            admin: Vec::new(),
            stats: Vec::new(),
            timers: Vec::new(),
        }
    }
}

/// What a game is made of, handed to [`Game::register`]: register handlers for its messages
/// ([`Setup::register`]), add modules ([`Setup::add`]), and hook into the world's events.
/// Hooks run in the order they were added; the game's own [`Game`] hooks run after them.
pub struct Setup<G: Game> {
    dispatcher: MessageDispatcher<World<G>>,
    hooks: Hooks<G>,
}

impl<G: Game> Setup<G> {
    /// The game `G` put together on `dispatcher`, which has the engine's handlers (ping and
    /// logins: [`crate::handlers::setup`] gives it): the game's and its modules' handlers
    /// added ([`Game::register`]), and their hooks.
    pub fn build(
        dispatcher: MessageDispatcher<World<G>>,
    ) -> Result<(MessageDispatcher<World<G>>, Hooks<G>), DispatchError> {
        let mut setup = Setup {
            dispatcher,
            hooks: Hooks::default(),
        };
        G::register(&mut setup)?;
        Ok((setup.dispatcher, setup.hooks))
    }

    /// Adds `module`: its handlers and hooks.
    pub fn add(&mut self, module: impl Module<G>) -> Result<(), DispatchError> {
        module.build(self)
    }

    /// Registers `handler` for `M`; the sender must be logged in, else it gets
    /// `NOT_AUTHENTICATED`. Each message has one handler: a second is an error.
    pub fn register<M: ClientToServer>(
        &mut self,
        handler: Handler<World<G>, M>,
    ) -> Result<(), DispatchError> {
        self.dispatcher.register(handler)
    }

    /// Registers `handler` for `M`, allowed before login too.
    pub fn register_public<M: ClientToServer>(
        &mut self,
        handler: Handler<World<G>, M>,
    ) -> Result<(), DispatchError> {
        self.dispatcher.register_public(handler)
    }

    /// Runs `hook` when a session connected and was sent S2C_Welcome.
    pub fn on_connected(&mut self, hook: SessionHook<G>) -> &mut Self {
        self.hooks.connected.push(hook);
        self
    }

    /// Runs `hook` when a session logged in (its login is [`World::login`]).
    pub fn on_logged_in(&mut self, hook: SessionHook<G>) -> &mut Self {
        self.hooks.logged_in.push(hook);
        self
    }

    /// Runs `hook` when a login ended, with who it was; the username is free again already.
    pub fn on_logged_out(&mut self, hook: LogoutHook<G>) -> &mut Self {
        self.hooks.logged_out.push(hook);
        self
    }

    /// Runs `hook` when a session ended (after the logged-out hooks if it was logged in),
    /// while its entry in [`World::clients`] is still there.
    pub fn on_disconnected(&mut self, hook: DisconnectHook<G>) -> &mut Self {
        self.hooks.disconnected.push(hook);
        self
    }

    /// Runs `hook` every tick, after the handlers and the timers, before the frames go out,
    /// with `now` and `dt` (see [`Game::tick`]).
    pub fn on_tick(&mut self, hook: TickHook<G>) -> &mut Self {
        self.hooks.tick.push(hook);
        self
    }

    /// Runs `callback` every `period`, the first `period` after the world starts.
    pub fn every(&mut self, period: Duration, callback: TimerFn<World<G>>) -> &mut Self {
        self.hooks.timers.push((period, callback));
        self
    }

    /// Asks `hook` whether a session waits for the module (for the DB worker, say): while
    /// any hook says so, its later requests wait too, so that its replies keep the order of
    /// its requests.
    pub fn on_waiting(&mut self, hook: WaitingHook<G>) -> &mut Self {
        self.hooks.waiting.push(hook);
        self
    }

    /// Offers `hook` each answer of the DB worker that is not a login's: the module's own
    /// jobs' (such as [`DbEvent::Module`] with its name). A hook returns `None` for an answer
    /// it took, or hands the answer back.
    pub fn on_db_answer(&mut self, hook: DbAnswerHook<G>) -> &mut Self {
        self.hooks.db_answer.push(hook);
        self
    }

    /// How a recording ([`crate::record`]) writes and reads the answers of the module's own
    /// DB jobs ([`DbEvent::Module`]): a server recording a game whose module answers without
    /// one stops recording, with a line naming the module.
    pub fn record_answers(&mut self, codec: crate::codec::AnswerCodec) -> &mut Self {
        self.hooks.answer_codecs.push(codec);
        self
    }

    /// Runs `hook` when the DB worker died: nothing will answer the module's jobs, so it
    /// finishes what waits for them.
    pub fn on_db_died(&mut self, hook: WorldHook<G>) -> &mut Self {
        self.hooks.db_died.push(hook);
        self
    }

    /// The module's writes: `flush` hands this tick's to the DB worker (see
    /// [`crate::world::offer`]); `pending` says whether some wait for a full write queue (a
    /// server stops only once none do).
    pub fn on_writes(&mut self, flush: WorldHook<G>, pending: PendingHook<G>) -> &mut Self {
        self.hooks.flush_writes.push(flush);
        self.hooks.pending_writes.push(pending);
        self
    }

    /// Offers `hook` each event from another node of the cluster that the engine does not
    /// handle itself: a module's own ([`Kind::Module`] with its name, sent with
    /// [`crate::cluster::Cluster::send_module`]) or the rooms module's. A hook returns `None` for an
    /// event it took, or hands the event back.
    pub fn on_cluster_event(&mut self, hook: ClusterHook<G>) -> &mut Self {
        self.hooks.cluster_event.push(hook);
        self
    }

    /// Runs `hook` when a node of the cluster is new to this one: it sends the node the
    /// module's state (with [`crate::cluster::Cluster::send`]).
    pub fn on_cluster_state(&mut self, hook: NodeHook<G>) -> &mut Self {
        self.hooks.cluster_state.push(hook);
        self
    }

    /// Runs `hook` when a node of the cluster is gone (silent for
    /// [`crate::cluster::NODE_TIMEOUT`]): the module forgets what it had of it.
    pub fn on_node_lost(&mut self, hook: NodeHook<G>) -> &mut Self {
        self.hooks.node_lost.push(hook);
        self
    }

    /// Runs `hook` when batches of a node of the cluster were lost on their way to this one
    /// (a gap in their sequence numbers: this node was cut off from NATS while the other was
    /// not, or the sending node held more than
    /// `cluster.outage_buffer_mib` while NATS was away, or this node fell far behind): what
    /// the node said in them never arrives, and its state is asked for again. The rooms
    /// module tells the members of each room concerned that lines may have been lost
    /// (S2C_RoomMissed).
    pub fn on_missed_from(&mut self, hook: NodeHook<G>) -> &mut Self {
        self.hooks.missed_from.push(hook);
        self
    }

    /// Runs `hook` when NATS is connected again after it was lost: the module puts right in
    /// the cluster's buckets what the node decided alone meanwhile (the rooms module recounts
    /// its members, [`crate::cluster::Cluster::recount`]).
    pub fn on_reconnected(&mut self, hook: WorldHook<G>) -> &mut Self {
        self.hooks.reconnected.push(hook);
        self
    }

    /// Runs `hook` when the rooms bucket of the cluster answered a reservation (asked with
    /// [`crate::cluster::Cluster::reserve`]).
    pub fn on_reserved(&mut self, hook: ReservedHook<G>) -> &mut Self {
        self.hooks.reserved.push(hook);
        self
    }

    /// Runs `hook` once when a server starts, to register the module's metrics (shown on
    /// `/metrics` with the engine's).
    pub fn metrics(&mut self, hook: MetricsHook<G>) -> &mut Self {
        self.hooks.metrics.push(hook);
        self
    }

    /// Adds what `view` returns (a JSON object) to `game` in `/api/state`, which the admin
    /// page shows; built once a second on the tick loop.
    pub fn admin(&mut self, view: AdminHook<G>) -> &mut Self {
        self.hooks.admin.push(view);
        self
    }

    /// Adds what `hook` returns to the periodic stats line.
    pub fn stats(&mut self, hook: StatsHook<G>) -> &mut Self {
        self.hooks.stats.push(hook);
        self
    }
}

/// Runs each hook of a list in order: `run!(world, connected, session)` calls every
/// connected hook with `(world, session)`. Copies each (a function pointer) out first, so the
/// hook gets the world mutably.
macro_rules! run_hooks {
    ($world:expr, $list:ident $(, $arg:expr)*) => {
        for i in 0..$world.hooks.$list.len() {
            let hook = $world.hooks.$list[i];
            hook($world $(, $arg)*);
        }
    };
}
pub(crate) use run_hooks;

impl<G: Game> World<G> {
    /// Registers the metrics of the game and its modules ([`Setup::metrics`]) in `registry`:
    /// a server does it once, when it starts.
    pub fn register_metrics(&mut self, registry: &mut crate::metrics::Registry) {
        run_hooks!(self, metrics, registry);
    }

    /// What the modules add to the stats line, in order.
    pub(crate) fn modules_stats(&self) -> String {
        self.hooks.stats.iter().map(|f| f(self)).collect()
    }

    /// The modules' admin views, their fields in one object (`Null` when there are none).
    pub(crate) fn modules_admin(&self) -> serde_json::Value {
        let mut fields = serde_json::Map::new();
        for view in &self.hooks.admin {
            match view(self) {
                serde_json::Value::Object(object) => fields.extend(object),
                serde_json::Value::Null => {}
                other => spdlog::warn!("admin: a module's view is not a JSON object: {other}"),
            }
        }
        if fields.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::Value::Object(fields)
        }
    }

    /// Offers a DB answer that is not a login's to the modules, in order, until one takes it.
    pub(crate) fn route_db_answer(&mut self, answer: DbEvent, now: Instant) {
        let mut answer = answer;
        for i in 0..self.hooks.db_answer.len() {
            let hook = self.hooks.db_answer[i];
            match hook(self, answer, now) {
                Some(back) => answer = back,
                None => return,
            }
        }
        spdlog::warn!("db: an answer no module takes: {answer:?}");
    }

    /// Offers an event of the cluster to the modules, in order, until one takes it.
    pub(crate) fn route_cluster_event(&mut self, from: &str, event: Kind, now: Instant) {
        let mut event = event;
        for i in 0..self.hooks.cluster_event.len() {
            let hook = self.hooks.cluster_event[i];
            match hook(self, from, event, now) {
                Some(back) => event = back,
                None => return,
            }
        }
        spdlog::debug!("cluster: an event from {from} no module takes: {event:?}");
    }
}
