//! [`Game`]: what a game supplies, and the hooks the engine calls.

use std::time::{Duration, Instant};

use net::{DisconnectReason, SessionId};

use super::{Login, Setup, World};
use crate::dispatcher::DispatchError;

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
/// A game's hooks are the lifecycle of its sessions (connected, logged in, logged out,
/// disconnected) and the tick. Everything else a module needs (DB answers, writes, cluster
/// events, timers, metrics, the admin view) it registers in [`Setup`], as a game may too;
/// the modules' hooks run before the game's.
///
/// ```
/// use std::time::{Duration, Instant};
/// use engine::net::SessionId;
/// use engine::world::{Login, Setup};
/// use engine::{DispatchError, Game, World};
///
/// /// A game that counts its players.
/// #[derive(Default)]
/// struct Counter {
///     online: usize,
/// }
///
/// impl Game for Counter {
///     fn register(_: &mut Setup<Self>) -> Result<(), DispatchError> {
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

    /// Puts the game together: registers the handlers of its own messages
    /// ([`Setup::register`]), adds the modules it opts into ([`Setup::add`]), and its own
    /// timers, DB answers, cluster events, metrics and admin view, if any.
    fn register(setup: &mut Setup<Self>) -> Result<(), DispatchError>;

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

    /// The files the web port (`web.listen`) and the TLS port serve over HTTP: the game's
    /// browser page at `/` and what it loads, such as its script. None by default: the ports
    /// then serve WebSocket (and frames, on the TLS port), and answer `GET /` with 404.
    fn web_files() -> Vec<net::WebFile> {
        Vec::new()
    }
}
