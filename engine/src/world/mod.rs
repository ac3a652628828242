//! The world: every session's state and login, and the game's state ([`World::game`]). Owned
//! by the tick loop alone, so no locks.
//!
//! The world is synchronous and takes time as input. Handlers change it and queue frames in
//! its [`Outbox`]; the tick loop hands those to the network. A test builds a world, feeds it
//! messages and reads the outbox, with no sockets and no sleeping.
//!
//! # Layout
//!
//! - this file: [`World`], its sessions, logins, closes and sweeps;
//! - `admission.rs`: whether a connection is taken, and what each address holds;
//! - `game.rs`: [`Game`], what a game supplies;
//! - `writes.rs`: handing writes to the DB worker, and holding them while its queue is full;
//! - `stats.rs`: the counters and the periodic stats line.

mod admission;
mod game;
mod setup;
mod stats;
mod writes;

pub use admission::{AddressUse, Refused};
pub use game::Game;
pub(crate) use setup::run_hooks;
pub use setup::{
    AdminHook, ClusterHook, DbAnswerHook, DisconnectHook, Hooks, LogoutHook, MetricsHook, Module,
    NodeHook, PendingHook, ReservedHook, SessionHook, Setup, StatsHook, TickHook, WaitingHook,
    WorldHook,
};
pub use stats::{schedule_stats, Stats, STATS_EVERY};
pub use writes::{dedup_newest, keep_newest, offer, MAX_PENDING_WRITES};

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use net::{DisconnectReason, SessionId};
use protocol::world::{S2cError, S2cWelcome};
use protocol::ErrorCode;

use crate::db::{DbJob, DbQueue, TokenHash};
use crate::dispatcher::{DispatchState, HandlerError};
use crate::hash::{Map, SessionMap};
use crate::outbox::Outbox;
use crate::ratelimit::{Admission, TokenBucket};
use crate::storage::{SessionLogEntry, SessionRecord};
use crate::throttle::{addr_key, LoginThrottle, ThrottleConfig};
use crate::timers::Timers;

/// The settings the world runs by, taken from the server config.
#[derive(Clone, Debug)]
pub struct WorldConfig {
    /// `server_name` in S2C_Welcome.
    pub server_name: String,
    /// The tick length, announced in S2C_Welcome.
    pub tick_ms: u32,
    /// Largest frame accepted, announced in S2C_Welcome.
    pub max_packet_size: u32,
    /// Whether an empty password logs in as a guest.
    pub allow_guests: bool,
    /// A session silent for this long is closed; `None` never.
    pub idle_timeout: Option<Duration>,
    /// Requests per second one session may send, sustained; 0 for no limit.
    pub max_requests_per_sec: u32,
    /// Failed-login and registration limits.
    pub throttle: ThrottleConfig,
    /// Sessions connected at once at most; more get SERVER_FULL.
    pub max_sessions: usize,
    /// A session without a login for this long is closed; `None` never.
    pub login_deadline: Option<Duration>,
    /// Sessions without a login from one address at most; 0 for no limit.
    pub max_unauthenticated_per_address: usize,
    /// Sessions from one address at most; 0 for no limit. The addresses that skip these two
    /// limits are `throttle.exempt_addresses`.
    pub max_sessions_per_address: usize,
    /// Sessions from one network (an IPv4 /24, an IPv6 /48) at most; 0 for no limit.
    pub max_sessions_per_prefix: usize,
    /// Guests logged in at once at most (the rest of `max_sessions` is kept for players
    /// with accounts); more guest logins get SERVER_FULL.
    pub max_guests: usize,
    /// Resumable sessions: the grace window and the replay buffers' bounds.
    pub resume: crate::resume::ResumeConfig,
}

impl From<&config::ServerConfig> for WorldConfig {
    fn from(c: &config::ServerConfig) -> Self {
        WorldConfig {
            server_name: c.server.name.clone(),
            tick_ms: c.server.tick_ms as u32,
            max_packet_size: c.server.max_packet_size as u32,
            allow_guests: c.world.allow_guests,
            idle_timeout: (c.net.idle_timeout_secs > 0)
                .then(|| Duration::from_secs(c.net.idle_timeout_secs)),
            max_requests_per_sec: c.net.max_requests_per_sec as u32,
            throttle: ThrottleConfig::from(c),
            max_sessions: c.server.max_sessions,
            login_deadline: c.limits.login_deadline(),
            max_unauthenticated_per_address: c.limits.max_unauthenticated_per_address,
            max_sessions_per_address: c.limits.max_sessions_per_address,
            max_sessions_per_prefix: c.limits.max_sessions_per_prefix,
            max_guests: c.server.max_sessions
                - c.server.max_sessions * usize::from(c.limits.account_reserve_percent.min(100))
                    / 100,
            resume: crate::resume::ResumeConfig::from(&c.net),
        }
    }
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig::from(&config::ServerConfig::default())
    }
}

/// Who a session is logged in as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    /// The username as the user wrote it.
    pub username: String,
    /// The account id; 0 for guests.
    pub user_id: u64,
    /// Whether this is a guest login.
    pub guest: bool,
    /// Hash of the token this login was made with or was given; C2S_Logout revokes it.
    pub token_hash: Option<TokenHash>,
    /// Whether the login asked for a resumable session ([`crate::resume`]).
    pub resumable: bool,
}

/// A login, register or resume waiting for the DB worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingAuth {
    /// The id of the request, for the reply.
    pub request_id: u16,
    /// The username a password login is for (failed logins are counted against it).
    pub username: Option<String>,
    /// Whether the login asked for a resumable session.
    pub resumable: bool,
}

/// One connected session.
#[derive(Debug)]
pub struct Client {
    /// The peer's address.
    pub peer: SocketAddr,
    /// What it speaks: TCP until its connection reports otherwise.
    pub transport: net::Transport,
    /// When it connected.
    pub connected_at: Instant,
    /// When it connected, in microseconds since the Unix epoch.
    pub connected_at_us: u64,
    /// When it last sent a frame.
    pub last_seen: Instant,
    /// Its login, if any.
    pub login: Option<Login>,
    /// A login in progress at the DB worker.
    pub pending_auth: Option<PendingAuth>,
    /// Since when it has been without a login (from connect, or from its logout); `None`
    /// while logged in. The login deadline counts from here.
    pub unauthenticated_since: Option<Instant>,
    /// Its login deadline passed while a login was under way: if that login fails, the
    /// session is closed.
    pub overdue: bool,
    /// Its connection has ended; what it sent before is still being processed.
    pub gone: bool,
    /// Its connection dropped and the session waits for its client to take it back
    /// ([`crate::resume`]): in the world as before, with no connection.
    pub away: bool,
    /// The username of its last login, once that login has ended (while logged in, see
    /// `login`), for the session log.
    pub last_username: Option<String>,
    /// A login the names bucket of the cluster has yet to grant: the answer and the login
    /// ([`crate::logins::claimed`] completes it).
    pub claiming: Option<Box<(protocol::world::S2cAuthResult, Login)>>,
    /// A close is queued: its further messages are ignored.
    pub closing: bool,
    /// Its request rate limit.
    pub bucket: TokenBucket,
}

/// A password login waiting out the delay of an account under attack.
#[derive(Debug)]
pub struct DelayedLogin {
    /// When it may go to the DB worker.
    pub due: Instant,
    /// Who asked.
    pub session: SessionId,
    /// The job to submit.
    pub job: DbJob,
}

/// The time of a tick, as the driver gives it to the core ([`crate::core::Core::tick`]):
/// monotonic for every deadline and period, and the wall clock for what is recorded or sent
/// (a chat line's `server_time_us`, the session log). Nothing in the core reads a clock: a
/// server reads both at each tick ([`Now::system`]), a simulation makes them up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time.
    pub at: Instant,
    /// Wall-clock time, in microseconds since the Unix epoch.
    pub unix_us: u64,
}

impl Now {
    /// The system's clocks now.
    pub fn system() -> Now {
        Now {
            at: Instant::now(),
            unix_us: protocol::now_us(),
        }
    }
}

/// How often the log says, per message type, that frames could not be encoded.
pub const UNENCODABLE_LOG_EVERY: Duration = Duration::from_secs(10);

/// Frames of one message type that could not be encoded and are not in the log yet.
#[derive(Debug, Default)]
struct Unencodable {
    logged_at: Option<Instant>,
    count: u64,
    largest: usize,
}

/// All world state: the engine's, and the game's in [`World::game`].
pub struct World<G> {
    /// The settings.
    pub config: WorldConfig,
    /// Connected sessions. Each is boxed: the map's spare room (up to half its slots, after
    /// it grows) costs a pointer a slot, not a whole client.
    pub clients: SessionMap<Box<Client>>,
    /// Logged-in sessions by username folded to lowercase.
    pub users: Map<String, SessionId>,
    /// What this tick sends.
    pub out: Outbox,
    /// Frames that could not be encoded, by message type, for the log (at most a line per
    /// type every [`UNENCODABLE_LOG_EVERY`]).
    unencodable: Map<&'static str, Unencodable>,
    /// Scheduled work.
    pub timers: Timers<World<G>>,
    /// Counters.
    pub stats: Stats,
    /// The DB worker's jobs and answers: jobs leave through the core's output.
    pub db: DbQueue,
    /// Sessions ended since the last batch, for the session log.
    pub pending_sessions: Vec<SessionLogEntry>,
    /// Failed logins and registrations, counted per address and per account.
    pub throttle: LoginThrottle,
    /// Sessions per client address (see [`addr_key`]).
    pub addresses: Map<IpAddr, AddressUse>,
    /// Sessions of each network (an IPv4 /24, an IPv6 /48).
    pub prefixes: Map<IpAddr, usize>,
    /// Guest logins held, and under way (their names being claimed on a cluster).
    pub guests: usize,
    /// Password logins waiting out an account's delay, in the order they were made.
    pub delayed_logins: VecDeque<DelayedLogin>,
    /// The engine's metrics (unregistered unless a server runs the world).
    pub metrics: crate::metrics::Metrics,
    /// The other nodes of the cluster; `None` for a server on its own.
    pub cluster: Option<crate::cluster::Cluster>,
    /// Resumable sessions: their replay buffers, and the connections that took one back.
    pub resume: crate::resume::Resumes,
    /// Connections a resume took their session from, not yet ended (closing, for up to the
    /// linger): they hold places of `max_sessions` too.
    pub lingering: SessionMap<()>,
    /// The game's state.
    pub game: G,
    /// The hooks of the game's modules and its own ([`Setup`]).
    pub(crate) hooks: Hooks<G>,
    /// When the last tick ran, for the next one's `dt`.
    last_tick: Option<Instant>,
    /// The time of this tick, as the driver gave it.
    now: Now,
}

/// How often idle sessions and missed login deadlines are looked for.
const SESSION_SWEEP: Duration = Duration::from_secs(1);

/// How often expired and revoked tokens, and old session records, are deleted.
const TOKEN_PRUNE: Duration = Duration::from_secs(3600);

/// How often expired failed-login windows are forgotten.
const FAILURE_SWEEP: Duration = Duration::from_secs(60);

impl<G: Game> World<G> {
    /// A world of `game` with no session, with the hooks of its modules ([`crate::handlers::setup`]),
    /// whose DB jobs queue in `db`; schedules its own housekeeping and the modules' timers from
    /// `now`.
    pub fn new(
        config: WorldConfig,
        game: G,
        hooks: Hooks<G>,
        db: DbQueue,
        now: Instant,
    ) -> World<G> {
        let mut world = World {
            clients: SessionMap::default(),
            users: Map::default(),
            out: Outbox::default(),
            timers: Timers::default(),
            stats: Stats::default(),
            db,
            pending_sessions: Vec::new(),
            unencodable: Map::default(),
            throttle: LoginThrottle::new(config.throttle.clone()),
            addresses: Map::default(),
            prefixes: Map::default(),
            guests: 0,
            delayed_logins: VecDeque::new(),
            metrics: crate::metrics::Metrics::unregistered(),
            cluster: None,
            resume: crate::resume::Resumes::new(config.resume.clone()),
            lingering: SessionMap::default(),
            game,
            hooks,
            config,
            last_tick: None,
            now: Now {
                at: now,
                unix_us: 0,
            },
        };
        for i in 0..world.hooks.timers.len() {
            let (period, callback) = world.hooks.timers[i];
            world.timers.repeat(now, period, callback);
        }
        world
            .timers
            .repeat(now, SESSION_SWEEP, World::sweep_sessions);
        world
            .timers
            .repeat(now, FAILURE_SWEEP, |world, now| world.throttle.sweep(now));
        world.timers.repeat(now, TOKEN_PRUNE, World::prune_storage);
        world
    }

    /// Hands this tick's writes to the DB worker: the session log, then the game's (see
    /// [`Setup::on_writes`]). When its write queue is full they stay here and go with the
    /// next tick's batch; past [`MAX_PENDING_WRITES`] the oldest are dropped, with an error in
    /// the log.
    pub fn flush_writes(&mut self) {
        offer(
            &mut self.db,
            &mut self.pending_sessions,
            DbJob::RecordSessions,
            "session log entries",
        );
        run_hooks!(self, flush_writes);
    }

    /// Whether writes wait for a full write queue.
    pub fn has_pending_writes(&self) -> bool {
        !self.pending_sessions.is_empty() || self.hooks.pending_writes.iter().any(|f| f(self))
    }

    fn prune_storage(&mut self, _: Instant) {
        // A full write queue skips this round; the next one catches up.
        let _ = self.db.submit(DbJob::Prune);
    }

    /// Runs the timers due at `now`, then the game's tick, with the time since the last tick
    /// (the configured tick for the first). (The core first sends the logins whose delay is
    /// over to the DB worker: see [`crate::logins::advance`].)
    pub fn tick(&mut self, now: Instant) {
        self.now.at = now;
        while let Some(callback) = self.timers.pop_due(now) {
            callback(self, now);
        }
        let dt = match self.last_tick {
            Some(last) => now.saturating_duration_since(last),
            None => Duration::from_millis(u64::from(self.config.tick_ms)),
        };
        self.last_tick = Some(now);
        run_hooks!(self, tick, now, dt);
        G::tick(self, now, dt);
    }

    /// A session connected: it gets S2C_Welcome.
    pub fn connect(&mut self, session: SessionId, peer: SocketAddr, now: Instant) {
        self.clients.insert(
            session,
            Box::new(Client {
                peer,
                transport: net::Transport::Tcp,
                connected_at: now,
                connected_at_us: self.now.unix_us,
                last_seen: now,
                login: None,
                pending_auth: None,
                unauthenticated_since: Some(now),
                overdue: false,
                gone: false,
                away: false,
                last_username: None,
                claiming: None,
                closing: false,
                bucket: TokenBucket::new(self.config.max_requests_per_sec, now),
            }),
        );
        let used = self.address_use(peer);
        used.sessions += 1;
        used.unauthenticated += 1;
        *self
            .prefixes
            .entry(admission::prefix_key(peer.ip()))
            .or_default() += 1;
        let connected_at_us = self.clients[&session].connected_at_us;
        self.pending_sessions.push(SessionLogEntry::Opened {
            session_id: session.0,
            peer: peer.to_string(),
            connected_at_us,
        });
        let welcome = S2cWelcome {
            session_id: session.0,
            protocol_version: protocol::PROTOCOL_VERSION,
            tick_ms: self.config.tick_ms,
            max_packet_size: self.config.max_packet_size,
            server_name: self.config.server_name.clone(),
        };
        self.out.send(session, &welcome);
        run_hooks!(self, connected, session);
        G::connected(self, session);
    }

    /// A session ended: it leaves its rooms, gives up its username, and is recorded in the
    /// session log. Idempotent.
    pub fn disconnect(&mut self, session: SessionId, reason: &DisconnectReason) -> Option<Client> {
        self.logout(session);
        if self.clients.contains_key(&session) {
            run_hooks!(self, disconnected, session, reason);
            G::disconnected(self, session, reason);
        }
        let client = self.clients.remove(&session)?;
        if client
            .claiming
            .as_ref()
            .is_some_and(|claiming| claiming.1.guest)
        {
            // A guest login whose name was being claimed: it is not going to be.
            self.guests = self.guests.saturating_sub(1);
        }
        let prefix = admission::prefix_key(client.peer.ip());
        if let Some(n) = self.prefixes.get_mut(&prefix) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.prefixes.remove(&prefix);
            }
        }
        let key = addr_key(client.peer.ip());
        if let Some(used) = self.addresses.get_mut(&key) {
            used.sessions = used.sessions.saturating_sub(1);
            used.unauthenticated = used.unauthenticated.saturating_sub(1);
            if used.sessions == 0 {
                self.addresses.remove(&key);
            }
        }
        self.pending_sessions
            .push(SessionLogEntry::Closed(SessionRecord {
                session_id: session.0,
                peer: client.peer.to_string(),
                username: client.last_username.clone(),
                connected_at_us: client.connected_at_us,
                disconnected_at_us: self.now.unix_us,
                reason: reason.to_string(),
            }));
        Some(*client)
    }

    /// Closes a session from the server's side: it is logged out now, and its connection
    /// closes after this tick's frames.
    pub fn kick(&mut self, session: SessionId, reason: DisconnectReason) {
        let Some(client) = self.clients.get_mut(&session) else {
            return;
        };
        if client.closing {
            return;
        }
        client.closing = true;
        self.logout(session);
        self.out.close(session, reason);
    }

    /// `session`'s client is now at `peer` (a connection from there took the session back):
    /// the session counts against that address and network from now on.
    pub fn rehome(&mut self, session: SessionId, peer: SocketAddr) {
        let Some(client) = self.clients.get_mut(&session) else {
            return;
        };
        let old = std::mem::replace(&mut client.peer, peer);
        let unauthenticated = usize::from(client.login.is_none());
        let prefix = admission::prefix_key(old.ip());
        if let Some(n) = self.prefixes.get_mut(&prefix) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.prefixes.remove(&prefix);
            }
        }
        let key = addr_key(old.ip());
        if let Some(used) = self.addresses.get_mut(&key) {
            used.sessions = used.sessions.saturating_sub(1);
            used.unauthenticated = used.unauthenticated.saturating_sub(unauthenticated);
            if used.sessions == 0 {
                self.addresses.remove(&key);
            }
        }
        let used = self.address_use(peer);
        used.sessions += 1;
        used.unauthenticated += unauthenticated;
        *self
            .prefixes
            .entry(admission::prefix_key(peer.ip()))
            .or_default() += 1;
    }

    /// Ends the login of `session`: it leaves its rooms (the others see it go) and its username
    /// is free again. Returns the login it had.
    pub fn logout(&mut self, session: SessionId) -> Option<Login> {
        let client = self.clients.get_mut(&session)?;
        client.pending_auth = None;
        let login = client.login.take()?;
        self.resume.forget(session);
        if login.guest {
            self.guests = self.guests.saturating_sub(1);
        }
        let client = self.clients.get_mut(&session)?;
        client.unauthenticated_since = Some(client.last_seen);
        let peer = client.peer;
        self.address_use(peer).unauthenticated += 1;
        let key = login.username.to_ascii_lowercase();
        if self.users.get(&key) == Some(&session) {
            self.users.remove(&key);
            if let Some(cluster) = self.cluster.as_mut() {
                cluster.release(session, &login.username);
            }
        }
        run_hooks!(self, logged_out, session, &login);
        G::logged_out(self, session, &login);
        if let Some(client) = self.clients.get_mut(&session) {
            // Kept from here, not copied at each login: what an idle session holds is less.
            client.last_username = Some(login.username.clone());
        }
        Some(login)
    }

    /// Records that `session` sent a frame at `at`, and decides what to do with it: process
    /// it, or drop it (rate limit, closing session).
    pub fn admit(&mut self, session: SessionId, at: Instant) -> Admission {
        let rate = self.config.max_requests_per_sec;
        match self.clients.get_mut(&session) {
            Some(client) if !client.closing => {
                client.last_seen = at;
                client.bucket.admit(rate, at)
            }
            _ => Admission::Ignore,
        }
    }

    /// Whether `session` waits for the DB worker (a login, or a join of a room whose history
    /// is loading): its later requests wait too, so that replies keep the request order.
    pub fn is_waiting(&self, session: SessionId) -> bool {
        self.clients
            .get(&session)
            .is_some_and(|c| !c.closing && (c.pending_auth.is_some() || c.claiming.is_some()))
            || (self.clients.get(&session).is_some_and(|c| !c.closing)
                && self.hooks.waiting.iter().any(|f| f(self, session)))
    }

    /// The time of this tick, as the driver gave it: the monotonic time of every deadline,
    /// and the wall clock of what is recorded or sent.
    pub fn now(&self) -> Now {
        self.now
    }

    /// Sets the time of this tick (the core does, as each tick begins).
    pub fn set_now(&mut self, now: Now) {
        self.now = now;
    }

    /// The login of `session`, if it is logged in.
    pub fn login(&self, session: SessionId) -> Option<&Login> {
        self.clients.get(&session)?.login.as_ref()
    }

    /// The session logged in as `username` (any case).
    pub fn session_of(&self, username: &str) -> Option<SessionId> {
        self.users.get(&username.to_ascii_lowercase()).copied()
    }

    /// Counts the frames this tick could not encode (the metric, by message type) and says so
    /// in the log at most once every [`UNENCODABLE_LOG_EVERY`] per message type.
    pub(crate) fn report_unencodable(&mut self, now: Instant) {
        for (name, count, largest) in self.out.take_unencodable() {
            self.metrics.unencodable(name, count);
            let entry = self.unencodable.entry(name).or_default();
            entry.count += count;
            entry.largest = entry.largest.max(largest);
        }
        for (name, u) in &mut self.unencodable {
            let due = u
                .logged_at
                .is_none_or(|at| now.duration_since(at) >= UNENCODABLE_LOG_EVERY);
            if u.count > 0 && due {
                spdlog::error!(
                    "world: {} {name} frames dropped since the last report: each needs more than the 65,535 bytes of a frame (the largest {} bytes)",
                    u.count,
                    u.largest
                );
                *u = Unencodable {
                    logged_at: Some(now),
                    ..Unencodable::default()
                };
            }
        }
    }

    /// Logs `session` in as `login`. A session already holding the username is replaced: it
    /// gets S2C_Error REPLACED and is closed.
    pub fn bind_login(&mut self, session: SessionId, login: Login) {
        let key = login.username.to_ascii_lowercase();
        if let Some(older) = self.users.get(&key).copied() {
            if older != session {
                self.send_error(
                    older,
                    0,
                    HandlerError::new(
                        ErrorCode::Replaced,
                        format!("{} logged in from another session", login.username),
                    ),
                );
                self.kick(older, DisconnectReason::Replaced);
            }
        }
        self.users.insert(key, session);
        if let Some(client) = self.clients.get_mut(&session) {
            spdlog::debug!(
                "world: session {session} logged in as {} ({})",
                login.username,
                if login.guest { "guest" } else { "account" }
            );
            self.pending_sessions.push(SessionLogEntry::LoggedIn {
                session_id: session.0,
                username: login.username.clone(),
            });
            let was_unauthenticated = client.login.is_none();
            client.login = Some(login);
            client.unauthenticated_since = None;
            client.overdue = false;
            let peer = client.peer;
            if was_unauthenticated {
                let used = self.address_use(peer);
                used.unauthenticated = used.unauthenticated.saturating_sub(1);
            }
            run_hooks!(self, logged_in, session);
            G::logged_in(self, session);
        }
    }

    /// Closes sessions silent for the idle timeout, and sessions without a login past the
    /// login deadline (one whose login is under way is let finish, and closed if it fails).
    fn sweep_sessions(&mut self, now: Instant) {
        let idle_timeout = self.config.idle_timeout;
        let deadline = self.config.login_deadline;
        let mut idle = Vec::new();
        let mut late = Vec::new();
        for (&id, client) in &mut self.clients {
            // An away session's end is its grace window's.
            if client.closing || client.away {
                continue;
            }
            if idle_timeout.is_some_and(|t| now.saturating_duration_since(client.last_seen) >= t) {
                idle.push(id);
                continue;
            }
            let missed = deadline
                .zip(client.unauthenticated_since)
                .is_some_and(|(deadline, since)| now.saturating_duration_since(since) >= deadline);
            if missed {
                if client.pending_auth.is_some() {
                    client.overdue = true;
                } else {
                    late.push(id);
                }
            }
        }
        for session in idle {
            self.kick(session, DisconnectReason::IdleTimeout);
        }
        for session in late {
            self.close_for_login_timeout(session);
        }
    }

    /// Tells `session` that it did not log in in time, and closes it.
    pub fn close_for_login_timeout(&mut self, session: SessionId) {
        let secs = self.config.login_deadline.map_or(0, |d| d.as_secs());
        self.stats.login_timeouts += 1;
        self.send_error(
            session,
            0,
            HandlerError::new(
                ErrorCode::LoginTimeout,
                format!(
                    "no login within {secs} s of connecting (limits.login_deadline_secs); closing"
                ),
            ),
        );
        self.kick(session, DisconnectReason::LoginTimeout);
    }
}

impl<G: Game> DispatchState for World<G> {
    fn is_authenticated(&self, session: SessionId) -> bool {
        self.login(session).is_some()
    }

    fn send_error(&mut self, session: SessionId, request_id: u16, error: HandlerError) {
        self.stats.errors_sent += 1;
        self.metrics.handler_error(error.code as i32);
        spdlog::debug!(
            "world: session {session}: request {request_id} failed: {:?}: {}",
            error.code,
            error.reason
        );
        let message = S2cError {
            code: error.code as i32,
            reason: error.reason,
            request_id: request_id as u32,
            retry_after_ms: error.retry_after_ms,
        };
        self.out.send(session, &message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A game that notes each tick's `dt`.
    struct Ticks(Vec<Duration>);

    impl Game for Ticks {
        fn register(_: &mut Setup<Self>) -> Result<(), crate::dispatcher::DispatchError> {
            Ok(())
        }

        fn tick(world: &mut World<Self>, _: Instant, dt: Duration) {
            world.game.0.push(dt);
        }
    }

    #[test]
    fn a_game_tick_gets_the_time_since_the_last_one_and_the_configured_tick_first() {
        let t0 = Instant::now();
        let config = WorldConfig {
            tick_ms: 50,
            ..WorldConfig::default()
        };
        let mut world = World::new(
            config,
            Ticks(Vec::new()),
            crate::handlers::setup().unwrap().1,
            crate::db::DbQueue::new(64),
            t0,
        );
        let ms = Duration::from_millis;
        for at in [0, 50, 100, 180, 230] {
            world.tick(t0 + ms(at));
        }
        assert_eq!(world.game.0, [ms(50), ms(50), ms(50), ms(80), ms(50)]);
    }

    fn chat_hooks() -> Hooks<crate::handlers::testkit::Chat> {
        crate::handlers::setup().unwrap().1
    }

    fn chat() -> crate::handlers::testkit::Chat {
        crate::handlers::testkit::Chat::default()
    }

    fn limited(per_address: usize, unauthenticated: usize) -> WorldConfig {
        let mut config = WorldConfig {
            max_sessions_per_address: per_address,
            max_unauthenticated_per_address: unauthenticated,
            ..WorldConfig::default()
        };
        config.throttle.exempt_addresses = vec!["127.0.0.0/8".parse().unwrap()];
        config
    }

    #[test]
    fn an_address_gets_its_share_of_unauthenticated_sessions_and_a_login_frees_one() {
        let mut h = crate::handlers::testkit::Harness::with(limited(10, 3));
        let ip = [198, 51, 100, 7];
        let peer = IpAddr::from(ip);
        let s: Vec<SessionId> = (0..3).map(|_| h.connect_from(ip)).collect();
        let refused = h.world_mut().admission(peer).unwrap_err();
        assert_eq!(refused.code, ErrorCode::TooManyConnections);
        assert_eq!(refused.disconnect, DisconnectReason::TooManyConnections);
        assert!(
            refused.reason.contains("max_unauthenticated_per_address"),
            "{}",
            refused.reason
        );
        assert!(
            h.world_mut()
                .admission(IpAddr::from([198, 51, 100, 8]))
                .is_ok(),
            "others are served"
        );
        h.send(
            s[0],
            protocol::world::C2sLogin {
                username: "ann".into(),
                password: String::new(),
                ..Default::default()
            },
        );
        assert!(
            h.world_mut().admission(peer).is_ok(),
            "ann logged in: a slot is free"
        );
        h.connect_from(ip);
        assert!(h.world_mut().admission(peer).is_err());
        h.send(s[0], protocol::world::C2sLogout {});
        assert_eq!(
            h.world_mut().addresses[&peer],
            AddressUse {
                sessions: 4,
                unauthenticated: 4
            },
            "a logout makes the session count as not logged in again"
        );
        for session in s {
            h.disconnect(session);
        }
        assert_eq!(
            h.world_mut().addresses[&peer],
            AddressUse {
                sessions: 1,
                unauthenticated: 1
            }
        );
    }

    #[test]
    fn an_address_gets_its_share_of_sessions_logged_in_or_not_and_exempt_ones_are_not_counted_against(
    ) {
        let mut h = crate::handlers::testkit::Harness::with(limited(2, 10));
        let ip = [198, 51, 100, 7];
        for name in ["ann", "bob"] {
            let s = h.connect_from(ip);
            h.send(
                s,
                protocol::world::C2sLogin {
                    username: name.into(),
                    password: String::new(),
                    ..Default::default()
                },
            );
        }
        let refused = h.world_mut().admission(IpAddr::from(ip)).unwrap_err();
        assert!(
            refused.reason.contains("max_sessions_per_address"),
            "{}",
            refused.reason
        );
        for _ in 0..20 {
            h.connect_from([127, 0, 0, 2]);
        }
        assert!(
            h.world_mut()
                .admission(IpAddr::from([127, 0, 0, 2]))
                .is_ok(),
            "exempt"
        );
    }

    #[test]
    fn every_address_of_one_ipv6_slash_64_shares_one_share() {
        let mut world = World::new(
            limited(0, 2),
            chat(),
            chat_hooks(),
            crate::db::DbQueue::new(64),
            Instant::now(),
        );
        let t0 = Instant::now();
        world.connect(SessionId(1), "[2001:db8:1:2::1]:9".parse().unwrap(), t0);
        world.connect(SessionId(2), "[2001:db8:1:2::ffff]:9".parse().unwrap(), t0);
        assert!(world
            .admission("2001:db8:1:2:abcd::7".parse().unwrap())
            .is_err());
        assert!(world.admission("2001:db8:1:3::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn a_network_gets_its_share_of_sessions_and_other_networks_are_served() {
        let mut world = World::new(
            WorldConfig {
                max_sessions_per_prefix: 3,
                ..limited(10, 10)
            },
            chat(),
            chat_hooks(),
            crate::db::DbQueue::new(64),
            Instant::now(),
        );
        let t0 = Instant::now();
        for (i, peer) in ["198.51.100.1:9", "198.51.100.2:9", "198.51.100.200:9"]
            .into_iter()
            .enumerate()
        {
            world.connect(SessionId(i as u64 + 1), peer.parse().unwrap(), t0);
        }
        let refused = world
            .admission(IpAddr::from([198, 51, 100, 77]))
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::TooManyConnections);
        assert!(
            refused.reason.contains("limits.max_sessions_per_prefix")
                && refused.reason.contains("/24"),
            "{}",
            refused.reason
        );
        assert!(world.admission(IpAddr::from([198, 51, 101, 1])).is_ok());
        assert!(
            world.admission(IpAddr::from([127, 0, 0, 1])).is_ok(),
            "exempt"
        );
        // One gone: a place in the network is free again.
        world.disconnect(SessionId(2), &DisconnectReason::PeerClosed);
        assert!(world.admission(IpAddr::from([198, 51, 100, 77])).is_ok());
        // IPv6 counts per /48.
        for (i, peer) in [
            "[2001:db8:1:2::1]:9",
            "[2001:db8:1:ffff::1]:9",
            "[2001:db8:1:7::7]:9",
        ]
        .into_iter()
        .enumerate()
        {
            world.connect(SessionId(10 + i as u64), peer.parse().unwrap(), t0);
        }
        assert!(world
            .admission("2001:db8:1:abcd::1".parse().unwrap())
            .is_err());
        assert!(world.admission("2001:db8:2::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn guests_cannot_take_the_places_kept_for_players_with_accounts() {
        let mut h = crate::handlers::testkit::Harness::with(WorldConfig {
            max_sessions: 10,
            max_guests: 8,
            ..WorldConfig::default()
        });
        let guests: Vec<SessionId> = (0..8).map(|i| h.guest(&format!("guest{i}"))).collect();
        let late = h.connect();
        h.send(
            late,
            protocol::world::C2sLogin {
                username: "guest8".into(),
                password: String::new(),
                ..Default::default()
            },
        );
        let (code, _, reason) = h.error(late);
        assert_eq!(code, ErrorCode::ServerFull);
        assert!(
            reason.contains("kept for players with accounts"),
            "{reason}"
        );
        assert!(
            h.world().clients.get(&late).is_none_or(|c| c.closing),
            "refused, and closed"
        );
        assert_eq!(h.world().guests, 8);
        // A player with an account gets in on a kept place.
        let ann = h.connect();
        h.send(
            ann,
            protocol::world::C2sRegister {
                username: "ann".into(),
                password: "correct horse".into(),
                ..Default::default()
            },
        );
        assert!(h.world().clients[&ann].login.is_some(), "{:?}", h.take(ann));
        // A guest gone leaves a place for another.
        h.send(guests[0], protocol::world::C2sLogout {});
        assert_eq!(h.world().guests, 7);
        let late = h.connect();
        h.send(
            late,
            protocol::world::C2sLogin {
                username: "guest8".into(),
                password: String::new(),
                ..Default::default()
            },
        );
        assert!(
            h.world().clients[&late].login.is_some(),
            "{:?}",
            h.take(late)
        );
        assert_eq!(h.world().guests, 8);
        h.disconnect(late);
        assert_eq!(h.world().guests, 7);
    }

    #[test]
    fn the_server_full_limit_comes_first_and_spares_no_address() {
        let mut world = World::new(
            WorldConfig {
                max_sessions: 2,
                ..limited(0, 0)
            },
            chat(),
            chat_hooks(),
            crate::db::DbQueue::new(64),
            Instant::now(),
        );
        let t0 = Instant::now();
        world.connect(SessionId(1), "127.0.0.1:9".parse().unwrap(), t0);
        world.connect(SessionId(2), "10.0.0.1:9".parse().unwrap(), t0);
        let refused = world.admission(IpAddr::from([127, 0, 0, 1])).unwrap_err();
        assert_eq!(refused.code, ErrorCode::ServerFull);
    }

    fn deadline_world(secs: u64) -> crate::handlers::testkit::Harness {
        crate::handlers::testkit::Harness::with(WorldConfig {
            login_deadline: Some(Duration::from_secs(secs)),
            idle_timeout: Some(Duration::from_secs(60)),
            ..WorldConfig::default()
        })
    }

    #[test]
    fn a_session_without_a_login_is_closed_at_the_deadline_however_often_it_pings() {
        let mut h = deadline_world(10);
        let pinger = h.connect();
        let member = h.guest("ann");
        for _ in 0..11 {
            h.advance(Duration::from_secs(1));
            h.send(
                pinger,
                protocol::world::C2sPing {
                    seq: 1,
                    client_time_us: 0,
                    ..Default::default()
                },
            );
            h.send(
                member,
                protocol::world::C2sPing {
                    seq: 1,
                    client_time_us: 0,
                    ..Default::default()
                },
            );
        }
        let replies = h.take(pinger);
        assert!(
            matches!(replies.last(), Some(protocol::S2cMessage::S2cError(e)) if e.code() == ErrorCode::LoginTimeout && e.request_id == 0),
            "{replies:?}"
        );
        assert_eq!(h.sim.closed(pinger), Some(&DisconnectReason::LoginTimeout));
        assert_eq!(h.sim.closed(member), None);
        assert_eq!(h.world_mut().stats.login_timeouts, 1);
    }

    #[test]
    fn the_deadline_starts_again_at_a_logout() {
        let mut h = deadline_world(10);
        let s = h.guest("ann");
        h.advance(Duration::from_secs(30));
        assert_eq!(h.sim.closed(s), None, "logged in: no deadline");
        h.send(s, protocol::world::C2sLogout {});
        h.advance(Duration::from_secs(9));
        assert_eq!(h.sim.closed(s), None);
        h.advance(Duration::from_secs(1));
        assert_eq!(h.sim.closed(s), Some(&DisconnectReason::LoginTimeout));
    }

    #[test]
    fn a_login_under_way_at_the_deadline_is_let_finish_and_its_failure_closes_the_session() {
        let mut h = crate::handlers::testkit::Harness::deferred(WorldConfig {
            login_deadline: Some(Duration::from_secs(10)),
            ..WorldConfig::default()
        });
        let ok = h.connect();
        let bad = h.connect();
        h.advance(Duration::from_secs(9));
        h.send(
            ok,
            protocol::world::C2sLogin {
                username: "ann".into(),
                password: String::new(),
                ..Default::default()
            },
        );
        h.send(
            bad,
            protocol::world::C2sLogin {
                username: "bob".into(),
                password: "guess guess".into(),
                ..Default::default()
            },
        );
        h.advance(Duration::from_secs(2));
        assert_eq!(
            (h.sim.closed(ok), h.sim.closed(bad)),
            (None, None),
            "both are waiting for the database"
        );
        h.run_db();
        assert!(h.world().login(ok).is_some());
        assert_eq!(h.sim.closed(ok), None);
        assert_eq!(h.sim.closed(bad), Some(&DisconnectReason::LoginTimeout));
    }

    #[test]
    fn silent_session_is_closed_after_the_idle_timeout() {
        let t0 = Instant::now();
        let config = WorldConfig {
            idle_timeout: Some(Duration::from_secs(5)),
            ..WorldConfig::default()
        };
        let mut world = World::new(
            config,
            chat(),
            chat_hooks(),
            crate::db::DbQueue::new(64),
            t0,
        );
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        world.connect(SessionId(1), peer, t0);
        world.connect(SessionId(2), peer, t0);
        world.tick(t0 + Duration::from_secs(3));
        assert_eq!(
            world.admit(SessionId(2), t0 + Duration::from_secs(3)),
            Admission::Admit
        );
        world.tick(t0 + Duration::from_secs(6));
        assert_eq!(
            world.out.closes(),
            &[(SessionId(1), DisconnectReason::IdleTimeout)]
        );
        assert_eq!(
            world.admit(SessionId(1), t0 + Duration::from_secs(6)),
            Admission::Ignore
        );
    }

    #[test]
    fn each_disconnect_is_recorded_with_address_username_reason_and_times() {
        let mut h = crate::handlers::testkit::Harness::deferred(WorldConfig::default());
        let a = h.connect();
        h.send(
            a,
            protocol::world::C2sLogin {
                username: "alice".into(),
                password: String::new(),
                ..Default::default()
            },
        );
        let mut entries = h.run_db_logging();
        let b = h.connect();
        // The core closes a for idleness, and b's peer goes.
        h.world_mut().kick(a, DisconnectReason::IdleTimeout);
        h.settle();
        entries.extend(h.run_db_logging());
        h.disconnect(b);
        entries.extend(h.run_db_logging());
        assert!(
            matches!(&entries[0], SessionLogEntry::Opened { session_id, peer, .. } if *session_id == a.0 && peer == "127.0.0.1:9")
        );
        assert_eq!(
            entries[1],
            SessionLogEntry::LoggedIn {
                session_id: a.0,
                username: "alice".into()
            }
        );
        assert!(
            matches!(&entries[2], SessionLogEntry::Opened { session_id, .. } if *session_id == b.0)
        );
        let records: Vec<&SessionRecord> = entries
            .iter()
            .filter_map(|e| match e {
                SessionLogEntry::Closed(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].session_id, a.0);
        assert_eq!(records[0].username.as_deref(), Some("alice"));
        assert_eq!(records[0].reason, "idle timeout");
        assert_eq!(records[0].peer, "127.0.0.1:9");
        assert!(records[0].connected_at_us <= records[0].disconnected_at_us);
        assert_eq!(records[1].username, None);
        assert_eq!(records[1].reason, "peer closed");
        assert!(h.world().pending_sessions.is_empty(), "all written");
    }

    /// A storage whose every call panics, as a bug in a storage implementation would.
    struct PanickingStorage;

    impl crate::storage::Storage for PanickingStorage {
        fn account(
            &mut self,
            _: &str,
        ) -> Result<Option<crate::storage::Account>, crate::storage::StorageError> {
            panic!("storage bug")
        }
        fn create_account(
            &mut self,
            _: &str,
            _: &str,
            _: u64,
        ) -> Result<Option<crate::storage::Account>, crate::storage::StorageError> {
            panic!("storage bug")
        }
        fn insert_token(
            &mut self,
            _: &[u8],
            _: u64,
            _: u64,
            _: u64,
        ) -> Result<(), crate::storage::StorageError> {
            panic!("storage bug")
        }
        fn token_account(
            &mut self,
            _: &[u8],
            _: u64,
        ) -> Result<Option<crate::storage::Account>, crate::storage::StorageError> {
            panic!("storage bug")
        }
        fn prune_tokens(&mut self, _: u64) -> Result<usize, crate::storage::StorageError> {
            panic!("storage bug")
        }
        fn prune_sessions(&mut self, _: u64) -> Result<usize, crate::storage::StorageError> {
            panic!("storage bug")
        }
        fn revoke_token(&mut self, _: &[u8], _: u64) -> Result<bool, crate::storage::StorageError> {
            panic!("storage bug")
        }
        fn log_append(
            &mut self,
            _: &str,
            _: &[crate::storage::LogEntry],
            _: crate::storage::LogLimits,
        ) -> Result<usize, crate::storage::StorageError> {
            panic!("storage bug")
        }
        fn logs_in_use(
            &mut self,
            _: &str,
            _: &[String],
        ) -> Result<(), crate::storage::StorageError> {
            panic!("storage bug")
        }
        fn module_get(
            &mut self,
            _: &str,
            _: &str,
        ) -> Result<Option<Vec<u8>>, crate::storage::StorageError> {
            panic!("storage bug")
        }
        fn module_put(
            &mut self,
            _: &str,
            _: &str,
            _: &[u8],
        ) -> Result<(), crate::storage::StorageError> {
            panic!("storage bug")
        }
        fn module_delete(
            &mut self,
            _: &str,
            _: &str,
        ) -> Result<bool, crate::storage::StorageError> {
            panic!("storage bug")
        }
        fn logs_idle(
            &mut self,
            _: &str,
            _: &[String],
            _: u64,
        ) -> Result<(), crate::storage::StorageError> {
            panic!("storage bug")
        }
        fn prune_logs(&mut self, _: &str, _: u64) -> Result<usize, crate::storage::StorageError> {
            panic!("storage bug")
        }
        fn log_tail(
            &mut self,
            _: &str,
            _: &str,
            _: usize,
        ) -> Result<Vec<crate::storage::LogEntry>, crate::storage::StorageError> {
            panic!("storage bug")
        }
        fn record_sessions(
            &mut self,
            _: &[SessionLogEntry],
            _: u64,
        ) -> Result<(), crate::storage::StorageError> {
            panic!("storage bug")
        }
        fn recover(
            &mut self,
            _: u64,
        ) -> Result<crate::storage::Recovered, crate::storage::StorageError> {
            panic!("storage bug")
        }
    }

    #[test]
    fn a_dead_db_worker_is_noticed_and_waiting_logins_are_answered_internal() {
        use crate::core::Input;
        use crate::handlers::testkit::{test_auth_settings, Harness};

        let worker =
            crate::db::DbWorker::new(Box::new(PanickingStorage), test_auth_settings()).unwrap();
        let mut db = crate::db::DbThread::spawn(worker, 16).unwrap();
        let mut h = Harness::deferred(WorldConfig::default());
        let session = h.connect();
        h.send(
            session,
            protocol::world::C2sLogin {
                username: "alice".into(),
                password: String::new(),
                ..Default::default()
            },
        );
        assert!(h.world().is_waiting(session));
        // The guest check goes to the worker thread, whose storage panics.
        for job in h.sim.take_held_db() {
            db.send(job);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !db.take_death() {
            assert!(
                Instant::now() < deadline,
                "the dead worker was never noticed"
            );
            std::thread::sleep(Duration::from_millis(5));
            while let Some(done) = db.poll() {
                h.sim.input(Input::Db(done));
            }
        }
        h.sim.input(Input::DbDied);
        h.settle();
        assert!(!h.world().is_waiting(session));
        let (code, _, _) = h.error(session);
        assert_eq!(code, ErrorCode::Internal);
        assert!(!h.world().db.is_alive(), "later jobs are refused");
    }
}
