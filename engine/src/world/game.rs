//! [`Game`]: what a game supplies, and the hooks the engine calls.

use std::time::{Duration, Instant};

use net::{DisconnectReason, SessionId};

use super::{Login, World};
use crate::db::DbEvent;
use crate::dispatcher::{DispatchError, MessageDispatcher};

/// What a game built on the engine supplies, and the hooks the engine calls.
///
/// The engine keeps sessions, logins, rate limits, the DB worker and timers in [`World`]; a
/// game keeps its own state in [`World::game`] (the type itself is the state) and changes the
/// world from its handlers and hooks, all on the tick loop (no locks). A game registers its
/// handlers for its own messages (declared in its own `.proto` files, compiled by
/// `protocol-build`) and for the modules it opts into ([`crate::modules`]); the engine's own
/// messages (ping, register, login, resume, logout) are always served. Every hook has a
/// default that does nothing, so a game implements only what it needs.
///
/// ```
/// use std::time::{Duration, Instant};
/// use engine::net::SessionId;
/// use engine::world::Login;
/// use engine::{DispatchError, Game, MessageDispatcher, World};
///
/// /// A game that counts its players.
/// #[derive(Default)]
/// struct Counter {
///     online: usize,
/// }
///
/// impl Game for Counter {
///     fn register(_: &mut MessageDispatcher<World<Self>>) -> Result<(), DispatchError> {
///         Ok(()) // no messages of its own
///     }
///     fn logged_in(world: &mut World<Self>, _: SessionId) {
///         world.game.online += 1;
///     }
///     fn logged_out(world: &mut World<Self>, _: SessionId, _: &Login) {
///         world.game.online -= 1;
///     }
///     fn tick(_: &mut World<Self>, _: Instant, _: Duration) {}
/// }
/// ```
pub trait Game: Sized + 'static {
    /// The game's name: the server's name in `S2C_Welcome` and its logs, and its database
    /// file (`<name>.db`), where the config leaves them empty. Letters, digits, `-` and `_`.
    const NAME: &'static str = "game";

    /// Where the game keeps accounts, tokens, history and the session log when the config
    /// leaves `storage.backend` empty: `"sqlite"` (the file `<name>.db`), `"postgres"`, or
    /// `"memory"` (until the server stops). By default SQLite when the engine is built with
    /// it (its `sqlite` feature, on by default), memory otherwise.
    const STORAGE: &'static str = if cfg!(feature = "sqlite") {
        "sqlite"
    } else {
        "memory"
    };

    /// Registers the game's handlers: its own messages', and the modules' it opts into.
    fn register(dispatcher: &mut MessageDispatcher<World<Self>>) -> Result<(), DispatchError>;

    /// A session connected and was sent S2C_Welcome.
    fn connected(world: &mut World<Self>, session: SessionId) {
        let _ = (world, session);
    }

    /// A session logged in (its login is [`World::login`]).
    fn logged_in(world: &mut World<Self>, session: SessionId) {
        let _ = (world, session);
    }

    /// A login ended (logout, replaced by a newer login, kicked, or its connection ended):
    /// `login` is who it was. The username is free again already.
    fn logged_out(world: &mut World<Self>, session: SessionId, login: &Login) {
        let _ = (world, session, login);
    }

    /// A session ended (after [`Game::logged_out`] if it was logged in), for `reason`. Its
    /// entry in [`World::clients`] is still there, and goes right after.
    fn disconnected(world: &mut World<Self>, session: SessionId, reason: &DisconnectReason) {
        let _ = (world, session, reason);
    }

    /// Every tick, after the handlers and the timers, before the frames go out: `now`, and
    /// `dt`, the time since the last tick (the configured `server.tick_ms` for the first; more
    /// when a tick ran late, so that a game moving things by `dt` keeps their speed).
    fn tick(world: &mut World<Self>, now: Instant, dt: Duration) {
        let _ = (world, now, dt);
    }

    /// Whether the game has `session` waiting (for the DB worker, say): its later requests
    /// wait too, so that its replies keep the order of its requests.
    fn is_waiting(world: &World<Self>, session: SessionId) -> bool {
        let _ = (world, session);
        false
    }

    /// An answer of the DB worker to a job of the game's (not a login's).
    fn db_answer(world: &mut World<Self>, answer: DbEvent, now: Instant) {
        let _ = (world, answer, now);
    }

    /// The DB worker died: nothing will answer the game's jobs; finish what waits for them.
    fn db_died(world: &mut World<Self>) {
        let _ = world;
    }

    /// Hands the game's writes of this tick to the DB worker (see [`crate::world::offer`]).
    fn flush_writes(world: &mut World<Self>) {
        let _ = world;
    }

    /// Whether writes of the game wait for a full write queue.
    fn has_pending_writes(world: &World<Self>) -> bool {
        let _ = world;
        false
    }

    /// An event from node `from` of the cluster that the engine does not handle itself: the
    /// rooms module's (joins, leaves, chat lines, room state) and the game's own
    /// ([`crate::cluster::Kind::Game`]).
    fn cluster_event(
        world: &mut World<Self>,
        from: &str,
        event: crate::cluster::Kind,
        now: Instant,
    ) {
        let _ = (world, from, event, now);
    }

    /// Node `to` of the cluster is new to this one: send it the game's state (with
    /// [`crate::cluster::Cluster::send`]).
    fn cluster_state(world: &mut World<Self>, to: &str) {
        let _ = (world, to);
    }

    /// Node `node` of the cluster is gone (silent for [`crate::cluster::NODE_TIMEOUT`]):
    /// forget what it had.
    fn node_lost(world: &mut World<Self>, node: &str) {
        let _ = (world, node);
    }

    /// The rooms bucket of the cluster answered a reservation the game asked for (with
    /// [`crate::cluster::reserve`]).
    fn reserved(
        world: &mut World<Self>,
        session: SessionId,
        room: String,
        outcome: crate::cluster::link::Reservation,
    ) {
        let _ = (world, session, room, outcome);
    }

    /// Registers the game's own metrics in `registry` (shown on `/metrics` with the engine's),
    /// once, when a server starts with the game.
    fn register_metrics(world: &mut World<Self>, registry: &mut crate::metrics::Registry) {
        let _ = (world, registry);
    }

    /// What the admin page shows of the game (in `/api/state` as `game`), such as its rooms
    /// and their members; built once a second on the tick loop.
    fn admin(world: &World<Self>) -> serde_json::Value {
        let _ = world;
        serde_json::Value::Null
    }

    /// The files the game port serves over HTTP (with `[websocket] enabled`): the game's
    /// browser page at `/` and what it loads, such as its script. None by default: the port
    /// then serves WebSocket and frames, and answers `GET /` with 404.
    fn web_files() -> Vec<net::WebFile> {
        Vec::new()
    }

    /// What the game adds to the periodic stats line, such as `", 12 rooms"`.
    fn stats(world: &World<Self>) -> String {
        let _ = world;
        String::new()
    }
}
