//! [`ServerConfig`]: the configuration of `world-server`, read from `world-server.toml`.

use std::{net::SocketAddr, path::Path, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    addr::AddrRange,
    error::{ConfigError, Rules},
    load,
    log::LogConfig,
};

/// The example file, every key at its default; it is also what `load(None)` parses.
pub const SERVER_EXAMPLE: &str = include_str!("../world-server.toml");

/// Name used in messages for the embedded defaults.
const EMBEDDED_ORIGIN: &str = "embedded world-server.toml";

/// Everything `world-server` can be told, one field per TOML section.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// `[server]`: the listener, the tick and the hard limits on clients.
    pub server: ServerSection,
    /// `[net]`: queue sizes and timeouts of the per-session network tasks.
    pub net: NetSection,
    /// `[world]`: rules of the game world (logins, rooms, chat).
    pub world: WorldSection,
    /// `[limits]`: what one client address may hold, and how long a login may take.
    pub limits: LimitsSection,
    /// `[storage]`: where accounts, tokens, history and the session log are kept.
    pub storage: StorageSection,
    /// `[auth]`: password hashing, tokens and login throttling.
    pub auth: AuthSection,
    /// `[admin]`: the admin listener (metrics, health, the admin page).
    pub admin: AdminSection,
    /// `[cluster]`: this server as a node among others sharing a database.
    pub cluster: ClusterSection,
    /// `[web]`: the web port: the game's browser page and WebSocket.
    pub web: WebSection,
    /// `[tls]`: the TLS port: frames, the page and WebSocket inside TLS.
    pub tls: TlsSection,
    /// `[log]`: log level and optional rotating log file.
    pub log: LogConfig,
    /// `[game]`: the settings of the game the server runs, its own keys, read by the game
    /// with [`ServerConfig::game_config`].
    pub game: GameSection,
}

/// `[game]` as written: the engine does not know a game's keys, so it keeps them until the
/// game reads them as its own type ([`ServerConfig::game_config`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GameSection {
    table: toml::Table,
    /// Where the section was read from, for error messages.
    #[serde(skip)]
    origin: String,
}

impl PartialEq for GameSection {
    /// The keys and values; not where they were read from.
    fn eq(&self, other: &Self) -> bool {
        self.table == other.table
    }
}

impl GameSection {
    /// Whether the section sets no key.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

/// A game's own settings, the `[game]` section of the server's file: a struct with
/// `#[serde(default, deny_unknown_fields)]` (so a missing key takes its default and an
/// unknown one is refused, with the nearest known key), and its rules.
///
/// ```
/// use config::{ConfigError, GameConfig, Rules, ServerConfig};
///
/// #[derive(Debug, Default, serde::Deserialize)]
/// #[serde(default, deny_unknown_fields)]
/// struct Rounds {
///     rounds: u32,
/// }
///
/// impl GameConfig for Rounds {
///     fn check(&self, rules: &Rules) -> Result<(), ConfigError> {
///         rules.range("game.rounds", self.rounds, 1..=100)
///     }
/// }
///
/// let config = ServerConfig::from_toml_str("[game]\nrounds = 0\n", "game.toml").unwrap();
/// let error = config.game_config::<Rounds>().unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     "invalid config \"game.toml\": game.rounds must be 1..=100 (got 0)"
/// );
/// ```
pub trait GameConfig: serde::de::DeserializeOwned + Default {
    /// Checks every range and cross-field rule of the settings; the first failure is
    /// returned (see [`Rules`]). None by default.
    fn check(&self, rules: &Rules) -> Result<(), ConfigError> {
        let _ = rules;
        Ok(())
    }
}

/// The settings of a game that has none: any key in its `[game]` is refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

impl GameConfig for NoSettings {}

/// `[admin]`: the admin listener, an HTTP listener of its own for `/metrics` (Prometheus),
/// `/healthz`, `/readyz`, `/api/state` and the admin page at `/`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSection {
    /// Address of the admin listener, `ADDR:PORT`; empty (the default) for none, so that
    /// several servers on one machine never collide on it. Never the game port. Anyone who
    /// reaches it sees who is online: keep it on loopback or a private network.
    pub listen: String,
}

impl AdminSection {
    /// [`listen`](Self::listen), parsed; `None` when empty. Validation refuses a bad one.
    pub fn address(&self) -> Option<SocketAddr> {
        crate::addr::resolve(&self.listen).ok()
    }
}

/// `[web]`: the web port (plain HTTP): the game's browser page at `/` (and the files it
/// loads) and WebSocket at [`path`](Self::path), each binary message carrying whole frames,
/// the same bytes the game port carries. The TLS port serves the same to the clients that ask
/// for HTTP (ALPN `http/1.1`, as browsers do): `https://` and `wss://`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSection {
    /// Address of the web port, `ADDR:PORT`; empty for none. Default `127.0.0.1:7080`:
    /// loopback, like the game port; a browser on this machine opens `http://127.0.0.1:7080/`.
    /// Each server on one machine needs its own.
    pub listen: String,
    /// The path of WebSocket upgrades. Default `"/ws"`.
    pub path: String,
    /// Origins (`scheme://host[:port]`) whose pages may open a WebSocket, besides the
    /// server's own page; `["*"]` for any. Default empty: only the page this server serves.
    /// Clients that send no `Origin` (programs, not browsers) are always let in.
    pub allowed_origins: Vec<String>,
    /// Largest WebSocket message taken, in bytes, 64..=16_777_216, and at least
    /// `server.max_packet_size`. Default 65536: a message may carry several frames; a larger
    /// one (or fragments adding up past it) closes the connection with code 1009.
    pub max_message_bytes: usize,
}

impl Default for WebSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7080".into(),
            path: "/ws".into(),
            allowed_origins: Vec::new(),
            max_message_bytes: 65536,
        }
    }
}

impl WebSection {
    /// [`listen`](Self::listen), parsed; `None` when empty. Validation refuses a bad one.
    pub fn address(&self) -> Option<SocketAddr> {
        crate::addr::resolve(&self.listen).ok()
    }
}

/// `[tls]`: a port of its own that serves inside TLS (rustls) what the game port and the web
/// port serve: frames, and to the clients that ask for HTTP (ALPN `http/1.1`) the page and
/// WebSocket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// Address of the TLS port, `ADDR:PORT`; empty (the default) for none.
    pub listen: String,
    /// The certificate chain, a PEM file, leaf first. Checked at start: a missing file, a
    /// key that does not match, or a certificate outside its validity period stops the
    /// server with one line.
    pub cert: std::path::PathBuf,
    /// The private key of the certificate, a PEM file (PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
    /// Whether TLS 1.2 is offered besides TLS 1.3. Default `false`.
    pub allow_tls12: bool,
    /// Seconds between checks of the two files for a change, 0..=86400; 0 checks only on
    /// SIGHUP. A new certificate (on SIGHUP, or when the files change) serves every later
    /// handshake; sessions already established keep theirs. One that does not load is
    /// logged, and the one in use stays. Default 10.
    pub reload_secs: u64,
}

impl Default for TlsSection {
    fn default() -> Self {
        Self {
            listen: String::new(),
            cert: std::path::PathBuf::new(),
            key: std::path::PathBuf::new(),
            allow_tls12: false,
            reload_secs: 10,
        }
    }
}

impl TlsSection {
    /// [`listen`](Self::listen), parsed; `None` when empty. Validation refuses a bad one.
    pub fn address(&self) -> Option<SocketAddr> {
        crate::addr::resolve(&self.listen).ok()
    }
}

/// `url` with the password, if any, replaced by `***`, for messages and logs.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// `[cluster]`: this server as one node of several: one world over NATS, sharing one
/// PostgreSQL database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSection {
    /// The NATS server the nodes talk through, as `nats://HOST:PORT`. Empty (the default):
    /// a server on its own. With it, players of every node share rooms, presence, chat and
    /// whispers; a node refuses to start, in one line, if it cannot reach NATS.
    pub nats_url: String,
    /// This node's name, in the shared session log and room records: letters, digits, `-`,
    /// `_` and `.`, at most 64. Empty (the default): the host name and the listen port, as
    /// in `myhost-7000`, so that nodes on one machine differ.
    pub node: String,
    /// MiB of batches for the other nodes a node keeps while NATS is away, 1..=4096, and
    /// sends in order when it is back; past it, batches are dropped (counted in
    /// `world_cluster_batches_dropped_total`, and the other nodes log the gap). Default 64:
    /// tens of seconds of a busy node's chat (a line crosses once per node, about 100 bytes),
    /// at a bounded cost in memory.
    pub outage_buffer_mib: u64,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            nats_url: String::new(),
            node: String::new(),
            outage_buffer_mib: 64,
        }
    }
}

impl ClusterSection {
    /// [`node`](Self::node), or the name derived from the host and `listen`'s port.
    pub fn node_name(&self, listen: SocketAddr) -> String {
        if !self.node.is_empty() {
            return self.node.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .unwrap_or_default();
        let host: String = host
            .trim()
            .chars()
            .map(|c| if node_char(c) { c } else { '-' })
            .take(56)
            .collect();
        let host = if host.is_empty() { "node".into() } else { host };
        format!("{host}-{}", listen.port())
    }
}

fn node_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// `[server]`: the listener, the tick and the hard limits on clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// Address to accept clients on. Default `127.0.0.1:7000`: loopback only, so a server
    /// started from a fresh checkout is not reachable from the network; use `0.0.0.0:7000`
    /// to serve other hosts. A host name is resolved at start (`localhost:7000`).
    #[serde(deserialize_with = "crate::addr::socket_addr")]
    pub listen: SocketAddr,
    /// Server name sent to every client as `server_name` in `S2C_Welcome`, at most 64 bytes.
    /// Empty (the default): the game's name ([`ServerConfig::apply_game_defaults`]), `world`
    /// for world-server. The limit keeps the welcome frame small whatever is configured.
    pub name: String,
    /// Length of one world tick in milliseconds, 1..=1000. Default 50 (20 ticks per second):
    /// chat arrives within one tick, while a tick still gathers enough work to batch each
    /// client's frames into one write.
    pub tick_ms: u64,
    /// Most sessions connected at once, 1..=1_000_000; connections beyond it are sent
    /// `SERVER_FULL` and closed. Default 10000: what one process comfortably serves, and a
    /// bound on the memory all the per-session queues can take.
    pub max_sessions: usize,
    /// Largest frame accepted or sent, header included, in bytes, 64..=65535. Default 8192:
    /// far more than a chat line needs, and it bounds what one peer can make the server
    /// buffer for a single frame. A larger frame from a client is a protocol error.
    pub max_packet_size: usize,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7000)),
            name: String::new(),
            tick_ms: 50,
            max_sessions: 10_000,
            max_packet_size: 8192,
        }
    }
}

impl ServerSection {
    /// [`tick_ms`](Self::tick_ms) as a duration.
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms)
    }
}

/// `[net]`: queue sizes and timeouts of the per-session network tasks. Every queue between
/// the network and the tick loop is bounded; these say how far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetSection {
    /// Frames one session may have waiting for the tick loop before its reader stops reading,
    /// 1..=65536. The kernel buffers then fill and TCP pushes back on that one client only.
    /// Default 64: more than a well-behaved client sends in one tick.
    pub inbound_credit: usize,
    /// Capacity of the session-event queue shared by all sessions (frames received, sessions
    /// closed), 1024..=16_777_216. Default 65536: several ticks of traffic from a full server.
    pub event_queue: usize,
    /// Bytes queued to one client before it is disconnected as a slow consumer,
    /// 4096..=1_073_741_824. Default 1048576 (1 MiB): seconds of a busy room's chat, while
    /// one stalled client cannot make the server hold unbounded memory for it.
    pub max_outbound_bytes: usize,
    /// Tick batches queued to one client's writer before it is disconnected as slow,
    /// 1..=65536. Default 256: about 13 s of ticks at 50 ms, a writer that far behind is stuck.
    pub outbound_batches: usize,
    /// Seconds a session may send nothing before it is closed, 0..=86400; 0 disables.
    /// Default 60: clients ping more often than that, so only dead peers are reaped.
    pub idle_timeout_secs: u64,
    /// Milliseconds a closing session may spend flushing its last frames (the reason for the
    /// disconnect, say), 0..=60000. Default 2000: enough for a healthy peer, short enough that
    /// shutdown does not hang on a dead one.
    pub linger_ms: u64,
    /// Session events the tick loop drains per tick at most, 1..=16_777_216; the rest wait for
    /// the next tick. Default 65536: a burst cannot make one tick run unboundedly long.
    pub max_messages_per_tick: usize,
    /// Seconds a new connection may take to be set up (a TLS handshake, an HTTP request, a
    /// WebSocket upgrade), 1..=600; then it is closed. It counts against
    /// `limits.login_deadline_secs` too. Default 10.
    pub handshake_timeout_secs: u64,
    /// Requests one session may send per second, sustained, 0..=1_000_000; 0 disables the
    /// limit. A burst of twice as many is allowed. Requests over the limit are answered
    /// RATE_LIMITED and dropped, and a session that keeps sending at more than twice the limit
    /// for a second is disconnected as flooding. Default 200: far above what a person or a
    /// game client sends, far below what costs the server a share of its tick.
    pub max_requests_per_sec: u64,
    /// Seconds a resumable session (one whose login asked for it) stays in the world after
    /// its connection drops, waiting for the client to take it back with C2S_SessionResume,
    /// 0..=3600; 0 turns resuming off (logins are then never resumable). Default 30.
    pub resume_grace_secs: u64,
    /// Bytes of frames a resumable session keeps for a replay (sent, and not yet acknowledged
    /// by the client's pings), 4096..=16_777_216. Past it the session can no longer be
    /// resumed (and one that is away ends). Default 262144 (256 KiB).
    pub resume_buffer_bytes: usize,
    /// Frames a resumable session keeps for a replay, 16..=1_000_000; past it, as past
    /// `resume_buffer_bytes`. Default 4096.
    pub resume_buffer_frames: usize,
    /// MiB of replay buffers held by all the sessions together, 1..=65536: a frame that
    /// would pass it overflows the buffer of the session it is for. Default 256.
    pub resume_total_mib: usize,
}

impl Default for NetSection {
    fn default() -> Self {
        Self {
            inbound_credit: 64,
            event_queue: 65_536,
            max_outbound_bytes: 1_048_576,
            outbound_batches: 256,
            idle_timeout_secs: 60,
            linger_ms: 2000,
            max_messages_per_tick: 65_536,
            handshake_timeout_secs: 10,
            max_requests_per_sec: 200,
            resume_grace_secs: 30,
            resume_buffer_bytes: 262_144,
            resume_buffer_frames: 4096,
            resume_total_mib: 256,
        }
    }
}

impl NetSection {
    /// [`idle_timeout_secs`](Self::idle_timeout_secs) as a duration; `None` when disabled.
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_secs > 0).then(|| Duration::from_secs(self.idle_timeout_secs))
    }

    /// [`linger_ms`](Self::linger_ms) as a duration.
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }

    /// [`handshake_timeout_secs`](Self::handshake_timeout_secs) as a duration.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }
}

/// `[world]`: rules of the game world.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorldSection {
    /// Whether a login with an empty password is accepted as a guest. Default `true`, so the
    /// bot swarm and a first try need no accounts.
    pub allow_guests: bool,
    /// Most members of one room, 1..=1800. Default 100: every chat line is sent to every
    /// member, so this bounds the fan-out of one message. The ceiling is set by
    /// `S2C_RoomJoined`, which lists every member and must fit in one 65535-byte frame.
    pub room_capacity: usize,
    /// Longest chat text in bytes of UTF-8, 1..=60000, and less than
    /// `server.max_packet_size` so that a maximal line still fits in a frame. Default 512.
    pub max_chat_len: usize,
    /// Most rooms one session may be in at once, 1..=1024. Default 16: enough for any client,
    /// and it bounds how much fan-out one session can subscribe to.
    pub max_rooms_per_session: usize,
    /// Chat lines each room keeps and replays to a member who joins, 0..=10000; 0 turns
    /// history off. Default 50: enough context for someone joining a conversation, and cheap
    /// to replay. Lines are stored in the database in batches, one transaction per tick.
    pub history_lines: usize,
    /// Days the stored history of a room is kept after its last member left, 0..=36500; 0
    /// keeps it forever. Default 30: a room people come back to keeps its context, while
    /// the history of rooms nobody uses any more does not fill the disk. Deleted hourly.
    pub history_retention_days: u64,
    /// Rooms with stored history at most, 1..=10_000_000. Default 2000. When a new room
    /// would pass it, the history of the rooms empty the longest is deleted; rooms with
    /// members are never trimmed. With `history_lines`, this bounds the history table:
    /// (this + rooms in use) * history_lines lines, at most about 60 MB with the defaults
    /// and every line at `max_chat_len`.
    pub max_history_rooms: usize,
}

impl Default for WorldSection {
    fn default() -> Self {
        Self {
            allow_guests: true,
            room_capacity: 100,
            max_chat_len: 512,
            max_rooms_per_session: 16,
            history_lines: 50,
            history_retention_days: 30,
            max_history_rooms: 2000,
        }
    }
}

/// `[limits]`: what one client address may hold, and how long a login may take, so that one
/// host cannot take every slot of the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Seconds a connection may stay without a login (from connect, or from its logout),
    /// 0..=86400; then it is sent LOGIN_TIMEOUT and closed. Pings do not extend it; a login
    /// waiting for the database is let finish. 0 disables. Default 30.
    pub login_deadline_secs: u64,
    /// Connections from one address that are not logged in, 0..=1_000_000; more are sent
    /// TOO_MANY_CONNECTIONS and closed. 0 disables. Default 16. IPv6 addresses count per /64.
    pub max_unauthenticated_per_address: usize,
    /// Connections from one address, logged in or not, 0..=1_000_000; more are sent
    /// TOO_MANY_CONNECTIONS and closed. 0 disables. Default 64: a household or an office
    /// behind one address is served, one host cannot take every slot.
    pub max_sessions_per_address: usize,
    /// Connections from one network (an IPv4 /24, an IPv6 /48), logged in or not,
    /// 0..=1_000_000; more are sent TOO_MANY_CONNECTIONS and closed. 0 disables. Default 256:
    /// four hosts at the per-address limit, so that one network (a rented range, a botnet's
    /// subnet) cannot take every slot with an address per connection.
    pub max_sessions_per_prefix: usize,
    /// The share of `server.max_sessions`, in percent, 0..=100, that guests cannot take: once
    /// guests hold the rest, a guest login is answered SERVER_FULL, and a player with an
    /// account still gets in. Default 10.
    pub account_reserve_percent: u8,
    /// Addresses and CIDR ranges that the per-address limits skip: these two, and
    /// `auth.max_registrations_per_address`, `auth.max_failures_per_addr` and
    /// `auth.max_bad_resumes_per_addr` (the limits per name and per account still apply). Default loopback, `["127.0.0.0/8",
    /// "::1"]`, so that bots on the server's own machine can load it; empty it on a server
    /// that clients reach through a proxy on the same host.
    pub exempt_addresses: Vec<String>,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            login_deadline_secs: 30,
            max_unauthenticated_per_address: 16,
            max_sessions_per_address: 64,
            max_sessions_per_prefix: 256,
            account_reserve_percent: 10,
            exempt_addresses: vec!["127.0.0.0/8".to_owned(), "::1".to_owned()],
        }
    }
}

impl LimitsSection {
    /// [`exempt_addresses`](Self::exempt_addresses), parsed. Entries that do not parse are
    /// skipped; [`ServerConfig::validate`] refuses them.
    pub fn exempt(&self) -> Vec<AddrRange> {
        self.exempt_addresses
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect()
    }

    /// [`login_deadline_secs`](Self::login_deadline_secs) as a duration; `None` when disabled.
    pub fn login_deadline(&self) -> Option<Duration> {
        (self.login_deadline_secs > 0).then(|| Duration::from_secs(self.login_deadline_secs))
    }
}

/// `[storage]`: the database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    /// Where the data lives: `"sqlite"` (one file, embedded, for one server), `"postgres"` (a
    /// PostgreSQL database at [`postgres_url`](Self::postgres_url), which several servers can
    /// share) or `"memory"` (nothing kept past the process: for games without accounts of
    /// their own to keep). Empty (the default): the game's own choice, its `Game::STORAGE`
    /// (`"sqlite"` for world-server, `"memory"` for the arena), filled in by
    /// [`ServerConfig::apply_game_defaults`].
    pub backend: String,
    /// With `backend = "postgres"`: the database, as `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`
    /// (libpq's URL form; its options as `?key=value`). A password in it is never logged.
    pub postgres_url: String,
    /// SQLite database file, created if missing; relative paths are from the working
    /// directory. Empty (the default): `<game>.db`, or on a node of a cluster
    /// `<game>-<node>.db` ([`ServerConfig::apply_game_defaults`]), so that nodes started from
    /// one directory, and two games, never share a file: `world.db` for world-server alone.
    /// It is in WAL mode: back it up with SQLite's `.backup` command (or copy it while the
    /// server is stopped), not by copying the file of a running server.
    pub path: std::path::PathBuf,
    /// SQLite's `synchronous` setting: `"full"` or `"normal"`. Default `"full"`: a commit
    /// survives a power cut, not only a crash. `"normal"` still survives a crash of the
    /// server process and commits faster.
    pub synchronous: String,
    /// How an SQLite file is checked when the server opens it, before anything is written:
    /// `"full"` (SQLite's `integrity_check`: every page, b-tree and index against its table,
    /// so that damaged row contents are found too), `"quick"` (`quick_check`: pages and
    /// b-trees, not the indexes against the tables; about a tenth of the time) or `"off"`.
    /// Default `"full"`: about 4 s for a 400 MB database read from the page cache, 8 s from
    /// disk; a damaged file is refused at start rather than failing request after request.
    pub startup_check: String,
    /// Requests waiting for the DB worker, 1..=1_000_000, for each of its two request queues:
    /// password hashing (register, password login) and quick lookups (guest checks, resumes,
    /// history loads). Default 1024: several seconds of password hashing; beyond it a request
    /// is answered RATE_LIMITED at once instead of waiting without bound. Writes (history,
    /// session log) have a queue of their own.
    pub queue: usize,
    /// Days the session log (`sessions` table) keeps a record, 0..=36500; 0 keeps them
    /// forever. Default 90: enough to look into an incident, and the table stops growing
    /// with every connection ever made. Older records are deleted hourly.
    pub session_log_days: u64,
    /// Records the session log keeps at most, 1000..=1_000_000_000; the oldest beyond it are
    /// deleted as new ones are written. Default 1000000: a server churning connections
    /// cannot grow the table faster than the days above trim it.
    pub session_log_max_rows: u64,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            backend: String::new(),
            postgres_url: String::new(),
            path: std::path::PathBuf::new(),
            synchronous: "full".into(),
            startup_check: "full".into(),
            queue: 1024,
            session_log_days: 90,
            session_log_max_rows: 1_000_000,
        }
    }
}

/// `[auth]`: password hashing, tokens and login throttling.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// argon2id memory cost in KiB, 8..=4_194_304. Default 19456 (19 MiB), with 2 iterations
    /// and 1 lane: OWASP's recommended minimum for argon2id.
    pub argon2_memory_kib: u32,
    /// argon2id iterations, 1..=100. Default 2 (OWASP).
    pub argon2_iterations: u32,
    /// argon2id lanes, 1..=16. Default 1 (OWASP); the DB worker hashes on one thread.
    pub argon2_parallelism: u32,
    /// Seconds a token stays valid after it is issued, 60..=31_536_000. Default 2592000
    /// (30 days): a player who comes back within a month need not type a password.
    pub token_ttl_secs: u64,
    /// Failed password logins allowed for one username from one client address within the
    /// window, 1..=1000; more from that address for that name are answered RATE_LIMITED.
    /// Logins in progress count as failures until they succeed. Default 5: a person
    /// mistyping is never stopped, a guesser gets 5 tries per window per name, and the
    /// account's owner at another address is not locked out.
    pub max_failures_per_user: u32,
    /// Failed password logins allowed from one client address within the window, across
    /// usernames, 1..=1_000_000. Default 20: one address guessing across many names is
    /// stopped too.
    pub max_failures_per_addr: u32,
    /// Failed token resumes allowed from one client address within the window,
    /// 1..=1_000_000; more resumes from it are answered RATE_LIMITED (its password logins
    /// are not). Default 20.
    pub max_bad_resumes_per_addr: u32,
    /// Failed password logins to one account (those in progress included), from all
    /// addresses together within the window, before the account counts as under attack and
    /// its logins are paced, 1..=1_000_000. Default 5.
    pub delay_after_failures: u32,
    /// Longest spacing of the logins to an account under attack, in ms, 0..=60000; 0 turns
    /// pacing off. Its logins are then checked one at a time, 250 ms apart, doubling with
    /// each further failure up to this, with at most 8 waiting (more are answered
    /// RATE_LIMITED). Addresses the account logged in from in the last 30 days skip the
    /// pacing. Default 8000: guessing one account from any number of addresses is held to
    /// one guess per 8 s, while its owner at a usual address is not slowed at all.
    pub max_login_delay_ms: u64,
    /// Length of the failed-login window in seconds, 1..=86400. Default 300.
    pub failure_window_secs: u64,
    /// Accounts one client address may create within `registration_window_secs`,
    /// 1..=1_000_000; registrations in progress count. More are answered RATE_LIMITED.
    /// Addresses in `limits.exempt_addresses` are not limited. Default 10.
    pub max_registrations_per_address: u32,
    /// Length of the registration window in seconds, 1..=604800. Default 3600.
    pub registration_window_secs: u64,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            argon2_memory_kib: 19456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            token_ttl_secs: 2_592_000,
            max_failures_per_user: 5,
            max_failures_per_addr: 20,
            max_bad_resumes_per_addr: 20,
            delay_after_failures: 5,
            max_login_delay_ms: 8000,
            failure_window_secs: 300,
            max_registrations_per_address: 10,
            registration_window_secs: 3600,
        }
    }
}

impl load::ConfigFile for ServerConfig {
    const EXAMPLE: &'static str = SERVER_EXAMPLE;
    const EMBEDDED_ORIGIN: &'static str = EMBEDDED_ORIGIN;
    fn check(&self, origin: &str) -> Result<(), ConfigError> {
        self.validate(origin)
    }
}

impl ServerConfig {
    /// Loads the file at `path`, or the embedded defaults when `path` is `None`; keys missing
    /// from the file take their defaults. The result is validated.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut config: ServerConfig = load::load(path)?;
        config.game.origin = match path {
            Some(path) => path.display().to_string(),
            None => EMBEDDED_ORIGIN.to_string(),
        };
        Ok(config)
    }

    /// Parses and validates `text`; `origin` names it in error messages.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let mut config: ServerConfig = load::from_toml_str(text, origin)?;
        config.game.origin = origin.to_string();
        Ok(config)
    }

    /// The game's own settings, `[game]`, as `T`: keys left out take `T`'s defaults; an
    /// unknown key, a value of the wrong type or one that breaks `T`'s rules is an error in
    /// the same words as the engine's keys' (`game.speed must be ...`).
    pub fn game_config<T: GameConfig>(&self) -> Result<T, ConfigError> {
        /// The document with only its `[game]`, so that paths in errors start `game.`.
        #[derive(serde::Deserialize)]
        struct Document<T> {
            game: T,
        }
        let origin = &self.game.origin;
        let mut document = toml::Table::new();
        document.insert(
            "game".to_string(),
            toml::Value::Table(self.game.table.clone()),
        );
        let document: Document<T> = serde_path_to_error::deserialize(document)
            .map_err(|error| load::field_error("", origin, error))?;
        document.game.check(&Rules::new(origin))?;
        Ok(document.game)
    }

    /// Fills in what defaults to the game's name, for a server of the game `game` (its
    /// `Game::NAME`, such as `world`): an empty `server.name` becomes `game`; an empty
    /// `storage.path` becomes `<game>.db`, or `<game>-<node>.db` on a node of a cluster
    /// (`cluster.nats_url` set; the node as [`ClusterSection::node_name`] gives it); an empty
    /// `storage.backend` becomes `storage`, the game's own (its `Game::STORAGE`). Values
    /// already set are kept.
    pub fn apply_game_defaults(&mut self, game: &str, storage: &str) {
        if self.server.name.is_empty() {
            self.server.name = game.to_string();
        }
        if self.storage.backend.is_empty() {
            self.storage.backend = storage.to_string();
        }
        if self.storage.path.as_os_str().is_empty() {
            self.storage.path = if self.cluster.nats_url.is_empty() {
                format!("{game}.db").into()
            } else {
                let node = self.cluster.node_name(self.server.listen);
                format!("{game}-{node}.db").into()
            };
        }
    }

    /// Checks every range and cross-field rule; the first failure is returned.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let rules = Rules::new(origin);

        let server = &self.server;
        rules.max_bytes("server.name", &server.name, 64)?;
        rules.range("server.tick_ms", server.tick_ms, 1..=1000)?;
        rules.range("server.max_sessions", server.max_sessions, 1..=1_000_000)?;
        rules.range("server.max_packet_size", server.max_packet_size, 64..=65535)?;

        let net = &self.net;
        rules.range("net.inbound_credit", net.inbound_credit, 1..=65536)?;
        rules.range("net.event_queue", net.event_queue, 1024..=16_777_216)?;
        rules.range(
            "net.max_outbound_bytes",
            net.max_outbound_bytes,
            4096..=1_073_741_824,
        )?;
        rules.range("net.outbound_batches", net.outbound_batches, 1..=65536)?;
        rules.range("net.idle_timeout_secs", net.idle_timeout_secs, 0..=86400)?;
        rules.range("net.linger_ms", net.linger_ms, 0..=60000)?;
        rules.range(
            "net.max_messages_per_tick",
            net.max_messages_per_tick,
            1..=16_777_216,
        )?;
        rules.range(
            "net.handshake_timeout_secs",
            net.handshake_timeout_secs,
            1..=600,
        )?;
        rules.range(
            "net.max_requests_per_sec",
            net.max_requests_per_sec,
            0..=1_000_000,
        )?;
        rules.range("net.resume_grace_secs", net.resume_grace_secs, 0..=3600)?;
        rules.range(
            "net.resume_buffer_bytes",
            net.resume_buffer_bytes,
            4096..=16_777_216,
        )?;
        rules.range(
            "net.resume_buffer_frames",
            net.resume_buffer_frames,
            16..=1_000_000,
        )?;
        rules.range("net.resume_total_mib", net.resume_total_mib, 1..=65536)?;

        let world = &self.world;
        rules.range("world.room_capacity", world.room_capacity, 1..=1800)?;
        rules.range("world.max_chat_len", world.max_chat_len, 1..=60000)?;
        rules.less_than(
            "world.max_chat_len",
            world.max_chat_len,
            "server.max_packet_size",
            server.max_packet_size,
        )?;
        rules.range(
            "world.max_rooms_per_session",
            world.max_rooms_per_session,
            1..=1024,
        )?;
        rules.range("world.history_lines", world.history_lines, 0..=10000)?;
        rules.range(
            "world.history_retention_days",
            world.history_retention_days,
            0..=36500,
        )?;
        rules.range(
            "world.max_history_rooms",
            world.max_history_rooms,
            1..=10_000_000,
        )?;

        let limits = &self.limits;
        rules.range(
            "limits.login_deadline_secs",
            limits.login_deadline_secs,
            0..=86400,
        )?;
        rules.range(
            "limits.max_unauthenticated_per_address",
            limits.max_unauthenticated_per_address,
            0..=1_000_000,
        )?;
        rules.range(
            "limits.max_sessions_per_address",
            limits.max_sessions_per_address,
            0..=1_000_000,
        )?;
        rules.range(
            "limits.max_sessions_per_prefix",
            limits.max_sessions_per_prefix,
            0..=1_000_000,
        )?;
        rules.range(
            "limits.account_reserve_percent",
            limits.account_reserve_percent,
            0..=100,
        )?;
        for (i, entry) in limits.exempt_addresses.iter().enumerate() {
            if let Err(rule) = entry.parse::<AddrRange>() {
                return Err(rules.fail(
                    &format!("limits.exempt_addresses[{i}]"),
                    rule,
                    crate::error::quoted(entry),
                ));
            }
        }

        if !self.admin.listen.is_empty() {
            match crate::addr::resolve(&self.admin.listen) {
                Err(_) => {
                    return Err(rules.fail(
                        "admin.listen",
                        "empty, ADDR:PORT or HOST:PORT",
                        crate::error::quoted(&self.admin.listen),
                    ))
                }
                Ok(addr) if addr == server.listen => {
                    return Err(rules.fail(
                        "admin.listen",
                        "another address than server.listen",
                        crate::error::quoted(&self.admin.listen),
                    ))
                }
                Ok(_) => {}
            }
        }

        let web = &self.web;
        let taken_by = |addr: SocketAddr, own: &str| {
            addr == server.listen
                || (own != "admin" && Some(addr) == self.admin.address())
                || (own != "tls" && Some(addr) == self.tls.address())
                || (own != "web" && Some(addr) == web.address())
        };
        // TLS first: web.listen has a default, so a clash is more likely the TLS port's.
        for (key, listen, own, others) in [
            (
                "tls.listen",
                &self.tls.listen,
                "tls",
                "another address than server.listen, admin.listen and web.listen",
            ),
            (
                "web.listen",
                &web.listen,
                "web",
                "another address than server.listen, admin.listen and tls.listen",
            ),
        ] {
            if listen.is_empty() {
                continue;
            }
            match crate::addr::resolve(listen) {
                Err(_) => {
                    return Err(rules.fail(
                        key,
                        "empty, ADDR:PORT or HOST:PORT",
                        crate::error::quoted(listen),
                    ))
                }
                Ok(addr) if taken_by(addr, own) => {
                    return Err(rules.fail(key, others, crate::error::quoted(listen)))
                }
                Ok(_) => {}
            }
        }
        if !web.path.starts_with('/') || web.path.len() > 256 || web.path.contains(['?', ' ', '#'])
        {
            return Err(rules.fail(
                "web.path",
                "a path starting with / (no ?, # or space, at most 256 bytes)",
                crate::error::quoted(&web.path),
            ));
        }
        for (i, origin) in web.allowed_origins.iter().enumerate() {
            let ok = origin == "*"
                || matches!(origin.split_once("://"), Some((scheme, rest))
                    if (scheme == "http" || scheme == "https")
                        && !rest.is_empty()
                        && !rest.trim_end_matches('/').contains('/'));
            if !ok {
                return Err(rules.fail(
                    &format!("web.allowed_origins[{i}]"),
                    "\"*\" or an origin such as https://game.example.com",
                    crate::error::quoted(origin),
                ));
            }
        }
        rules.range(
            "web.max_message_bytes",
            web.max_message_bytes,
            64..=16_777_216,
        )?;
        if web.max_message_bytes < server.max_packet_size {
            return Err(rules.fail(
                "web.max_message_bytes",
                "at least server.max_packet_size",
                web.max_message_bytes.to_string(),
            ));
        }
        let tls = &self.tls;
        if !tls.listen.is_empty() {
            for (key, path) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
                if path.as_os_str().is_empty() {
                    return Err(rules.fail(
                        key,
                        "a PEM file when tls.listen is set",
                        "\"\"".to_string(),
                    ));
                }
            }
        }
        rules.range("tls.reload_secs", tls.reload_secs, 0..=86400)?;

        let nats = &self.cluster.nats_url;
        if !(nats.is_empty() || nats.starts_with("nats://") || nats.starts_with("tls://")) {
            return Err(rules.fail(
                "cluster.nats_url",
                "empty or a nats://HOST:PORT URL",
                crate::error::quoted(&redact_password(nats)),
            ));
        }
        rules.range(
            "cluster.outage_buffer_mib",
            self.cluster.outage_buffer_mib,
            1..=4096,
        )?;
        let node = &self.cluster.node;
        if node.len() > 64 || !node.chars().all(node_char) {
            return Err(rules.fail(
                "cluster.node",
                "empty or at most 64 letters, digits, '-', '_' and '.'",
                crate::error::quoted(node),
            ));
        }

        let storage = &self.storage;
        match storage.backend.as_str() {
            "" | "sqlite" | "memory" => {}
            "postgres" => {
                let url = &storage.postgres_url;
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(rules.fail(
                        "storage.postgres_url",
                        "a postgres://USER@HOST[:PORT]/DB URL with storage.backend = \"postgres\"",
                        crate::error::quoted(&redact_password(url)),
                    ));
                }
            }
            other => {
                return Err(rules.fail(
                    "storage.backend",
                    "\"sqlite\", \"postgres\" or \"memory\" (or empty: the game's own)",
                    crate::error::quoted(other),
                ))
            }
        }
        if !matches!(storage.synchronous.as_str(), "full" | "normal") {
            return Err(rules.fail(
                "storage.synchronous",
                "one of full, normal",
                crate::error::quoted(&storage.synchronous),
            ));
        }
        if !matches!(storage.startup_check.as_str(), "full" | "quick" | "off") {
            return Err(rules.fail(
                "storage.startup_check",
                "one of full, quick, off",
                crate::error::quoted(&storage.startup_check),
            ));
        }
        rules.range("storage.queue", storage.queue, 1..=1_000_000)?;
        rules.range(
            "storage.session_log_days",
            storage.session_log_days,
            0..=36500,
        )?;
        rules.range(
            "storage.session_log_max_rows",
            storage.session_log_max_rows,
            1000..=1_000_000_000,
        )?;

        let auth = &self.auth;
        rules.range(
            "auth.argon2_memory_kib",
            auth.argon2_memory_kib,
            8..=4_194_304,
        )?;
        rules.range("auth.argon2_iterations", auth.argon2_iterations, 1..=100)?;
        rules.range("auth.argon2_parallelism", auth.argon2_parallelism, 1..=16)?;
        if auth.argon2_memory_kib < 8 * auth.argon2_parallelism {
            return Err(rules.fail(
                "auth.argon2_memory_kib",
                "at least 8 * auth.argon2_parallelism",
                auth.argon2_memory_kib.to_string(),
            ));
        }
        rules.range("auth.token_ttl_secs", auth.token_ttl_secs, 60..=31_536_000)?;
        rules.range(
            "auth.max_failures_per_user",
            auth.max_failures_per_user,
            1..=1000,
        )?;
        rules.range(
            "auth.max_failures_per_addr",
            auth.max_failures_per_addr,
            1..=1_000_000,
        )?;
        rules.range(
            "auth.max_bad_resumes_per_addr",
            auth.max_bad_resumes_per_addr,
            1..=1_000_000,
        )?;
        rules.range(
            "auth.delay_after_failures",
            auth.delay_after_failures,
            1..=1_000_000,
        )?;
        rules.range(
            "auth.max_login_delay_ms",
            auth.max_login_delay_ms,
            0..=60000,
        )?;
        rules.range(
            "auth.failure_window_secs",
            auth.failure_window_secs,
            1..=86400,
        )?;
        rules.range(
            "auth.max_registrations_per_address",
            auth.max_registrations_per_address,
            1..=1_000_000,
        )?;
        rules.range(
            "auth.registration_window_secs",
            auth.registration_window_secs,
            1..=604_800,
        )?;

        self.log.validate(&rules)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    const ORIGIN: &str = "world-server.toml";

    fn error(text: &str) -> String {
        ServerConfig::from_toml_str(text, ORIGIN)
            .expect_err("config should be rejected")
            .to_string()
    }

    /// A game's settings, as the arena's are.
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Field {
        size: f32,
        speed: f32,
    }

    impl Default for Field {
        fn default() -> Self {
            Field {
                size: 100.0,
                speed: 10.0,
            }
        }
    }

    impl GameConfig for Field {
        fn check(&self, rules: &Rules) -> Result<(), ConfigError> {
            rules.range("game.speed", self.speed, 0.1..=1000.0)
        }
    }

    #[test]
    fn a_game_reads_its_own_section_with_defaults_for_what_is_left_out() {
        let config = ServerConfig::from_toml_str("[game]\nsize = 2000.0\n", "g.toml").unwrap();
        let field: Field = config.game_config().unwrap();
        assert_eq!(
            field,
            Field {
                size: 2000.0,
                speed: 10.0
            }
        );
        let none = ServerConfig::load(None).unwrap();
        assert_eq!(none.game_config::<Field>().unwrap(), Field::default());
    }

    #[test]
    fn a_game_s_keys_get_the_engine_s_one_line_errors() {
        let error = |text: &str| {
            ServerConfig::from_toml_str(text, "g.toml")
                .unwrap()
                .game_config::<Field>()
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error("[game]\nsped = 3.0\n"),
            "invalid config \"g.toml\": unknown key \"game.sped\" (did you mean \"game.speed\"?)"
        );
        assert_eq!(
            error("[game]\nspeed = \"fast\"\n"),
            "invalid config \"g.toml\": game.speed: invalid type: string \"fast\", expected f32"
        );
        assert_eq!(
            error("[game]\nspeed = 0.0\n"),
            "invalid config \"g.toml\": game.speed must be 0.1..=1000 (got 0)"
        );
        let not_a_table = ServerConfig::from_toml_str("game = 3\n", "g.toml").unwrap_err();
        assert_eq!(
            not_a_table.to_string(),
            "invalid config \"g.toml\": game: invalid type: integer `3`, expected a table"
        );
    }

    #[test]
    fn a_game_without_settings_refuses_any_key_in_its_section() {
        let config = ServerConfig::from_toml_str("[game]\nspeed = 1\n", "g.toml").unwrap();
        let error = config.game_config::<NoSettings>().unwrap_err().to_string();
        assert_eq!(
            error,
            "invalid config \"g.toml\": unknown key \"game.speed\""
        );
        let empty = ServerConfig::from_toml_str("[game]\n", "g.toml").unwrap();
        assert!(empty.game_config::<NoSettings>().is_ok());
    }

    #[test]
    fn example_file_is_exactly_the_defaults_with_every_key_set() {
        load::assert_example_is_the_defaults::<ServerConfig>();
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        let parsed = ServerConfig::from_toml_str("", ORIGIN).unwrap();
        assert_eq!(parsed, ServerConfig::default());
    }

    #[test]
    fn partial_file_keeps_the_other_defaults() {
        let parsed = ServerConfig::from_toml_str(
            "[server]\ntick_ms = 20\n[world]\nallow_guests = false\n",
            ORIGIN,
        )
        .unwrap();
        let mut expected = ServerConfig::default();
        expected.server.tick_ms = 20;
        expected.world.allow_guests = false;
        assert_eq!(parsed, expected);
    }

    #[test]
    fn unknown_key_is_rejected_with_its_dotted_path() {
        assert_eq!(
            error("[server]\ntick_msx = 5\n"),
            r#"invalid config "world-server.toml": unknown key "server.tick_msx" (did you mean "server.tick_ms"?)"#
        );
        assert_eq!(
            error("[serverr]\n"),
            r#"invalid config "world-server.toml": unknown key "serverr" (did you mean "server"?)"#
        );
    }

    #[test]
    fn out_of_range_value_names_key_rule_and_value() {
        assert_eq!(
            error("[server]\ntick_ms = 0\n"),
            r#"invalid config "world-server.toml": server.tick_ms must be 1..=1000 (got 0)"#
        );
        assert_eq!(
            error("[net]\nevent_queue = 10\n"),
            r#"invalid config "world-server.toml": net.event_queue must be 1024..=16777216 (got 10)"#
        );
    }

    #[test]
    fn value_of_the_wrong_type_names_the_key_and_the_value() {
        assert_eq!(
            error("[server]\ntick_ms = \"fast\"\n"),
            r#"invalid config "world-server.toml": server.tick_ms: invalid type: string "fast", expected u64"#
        );
        assert_eq!(
            error("[server]\ntick_ms = -1\n"),
            r#"invalid config "world-server.toml": server.tick_ms: invalid value: integer `-1`, expected u64"#
        );
    }

    #[test]
    fn the_startup_check_and_the_network_limits_are_checked() {
        assert_eq!(
            error("[storage]\nstartup_check = \"thorough\"\n"),
            r#"invalid config "world-server.toml": storage.startup_check must be one of full, quick, off (got "thorough")"#
        );
        assert_eq!(
            error("[limits]\naccount_reserve_percent = 101\n"),
            r#"invalid config "world-server.toml": limits.account_reserve_percent must be 0..=100 (got 101)"#
        );
    }

    #[test]
    fn section_given_as_a_value_asks_for_a_table() {
        assert_eq!(
            error("server = 5\n"),
            r#"invalid config "world-server.toml": server: invalid type: integer `5`, expected a table"#
        );
    }

    #[test]
    fn bad_socket_address_names_the_key_and_the_value() {
        assert_eq!(
            error("[server]\nlisten = \"nope\"\n"),
            r#"invalid config "world-server.toml": server.listen: must be ADDR:PORT or HOST:PORT (got "nope")"#
        );
    }

    #[test]
    fn chat_longer_than_a_packet_is_rejected_naming_both_keys() {
        assert_eq!(
            error("[world]\nmax_chat_len = 9000\n"),
            r#"invalid config "world-server.toml": world.max_chat_len must be less than server.max_packet_size (got 9000 >= 8192)"#
        );
    }

    #[test]
    fn storage_backends_and_node_names_are_checked() {
        assert_eq!(
            error("[storage]\nbackend = \"mysql\"\n"),
            r#"invalid config "world-server.toml": storage.backend must be "sqlite", "postgres" or "memory" (or empty: the game's own) (got "mysql")"#
        );
        assert_eq!(
            error("[storage]\nbackend = \"postgres\"\npostgres_url = \"mysql://u:secret@h/db\"\n"),
            r#"invalid config "world-server.toml": storage.postgres_url must be a postgres://USER@HOST[:PORT]/DB URL with storage.backend = "postgres" (got "mysql://u:***@h/db")"#
        );
        assert_eq!(
            error("[cluster]\nnode = \"a b\"\n"),
            r#"invalid config "world-server.toml": cluster.node must be empty or at most 64 letters, digits, '-', '_' and '.' (got "a b")"#
        );
        let listen = "127.0.0.1:7001".parse().unwrap();
        assert_eq!(
            error("[cluster]\nnats_url = \"localhost:4222\"\n"),
            r#"invalid config "world-server.toml": cluster.nats_url must be empty or a nats://HOST:PORT URL (got "localhost:4222")"#
        );
        let named = ClusterSection {
            node: "n1".into(),
            ..ClusterSection::default()
        };
        assert_eq!(named.node_name(listen), "n1");
        let derived = ClusterSection::default().node_name(listen);
        assert!(derived.ends_with("-7001") && derived.len() > 5, "{derived}");
        assert!(derived.chars().all(node_char), "{derived}");
    }

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact_password("postgres://world:hunter2@db:5432/w?sslmode=disable"),
            "postgres://world:***@db:5432/w?sslmode=disable"
        );
        assert_eq!(
            redact_password("postgres://world@db/w"),
            "postgres://world@db/w"
        );
        assert_eq!(
            redact_password("postgres://a:b@c@d/e"),
            "postgres://a:***@d/e"
        );
        assert_eq!(redact_password("nonsense"), "nonsense");
    }

    #[test]
    fn bad_log_level_lists_the_accepted_levels() {
        assert_eq!(
            error("[log]\nlevel = \"verbose\"\n"),
            r#"invalid config "world-server.toml": log.level must be one of trace, debug, info, warn, error, critical, off (got "verbose")"#
        );
    }

    #[test]
    fn the_name_and_the_database_default_to_the_games_and_the_nodes() {
        let mut alone = ServerConfig::default();
        alone.apply_game_defaults("arena", "sqlite");
        assert_eq!(alone.server.name, "arena");
        assert_eq!(alone.storage.path, std::path::PathBuf::from("arena.db"));
        let mut node = ServerConfig::default();
        node.cluster.nats_url = "nats://127.0.0.1:4222".into();
        node.cluster.node = "node2".into();
        node.apply_game_defaults("world", "sqlite");
        assert_eq!(
            node.storage.path,
            std::path::PathBuf::from("world-node2.db")
        );
        let mut set = ServerConfig::default();
        set.server.name = "mine".into();
        set.storage.path = "data/mine.db".into();
        set.apply_game_defaults("world", "sqlite");
        assert_eq!(set.server.name, "mine");
        assert_eq!(set.storage.path, std::path::PathBuf::from("data/mine.db"));
        assert_eq!(alone.storage.backend, "sqlite", "the game's storage");
        let mut chosen = ServerConfig::default();
        chosen.storage.backend = "postgres".into();
        chosen.apply_game_defaults("arena", "memory");
        assert_eq!(chosen.storage.backend, "postgres", "the config's storage");
    }

    #[test]
    fn server_name_longer_than_64_bytes_is_rejected() {
        let long = "x".repeat(65);
        assert_eq!(
            error(&format!("[server]\nname = \"{long}\"\n")),
            format!(
                r#"invalid config "world-server.toml": server.name must be at most 64 bytes (got "{long}")"#
            )
        );
    }

    #[test]
    fn toml_syntax_error_is_one_line_with_the_line_number() {
        let message = error("[server]\ntick_ms = 5\nlisten = \n");
        assert!(
            message.starts_with(
                r#"invalid config "world-server.toml": TOML syntax error at line 3: "#
            ),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn missing_file_is_a_read_error_naming_the_path() {
        let path = PathBuf::from("x.toml");
        assert_eq!(
            ServerConfig::load(Some(&path)).unwrap_err().to_string(),
            r#"cannot read config "x.toml": No such file or directory (os error 2)"#
        );
    }

    #[test]
    fn file_on_disk_is_read_and_validated_under_its_own_name() {
        let path =
            std::env::temp_dir().join(format!("config-test-{}-server.toml", std::process::id()));
        std::fs::write(&path, "[server]\ntick_ms = 2000\n").unwrap();
        let message = ServerConfig::load(Some(&path)).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            message,
            format!(
                r#"invalid config "{}": server.tick_ms must be 1..=1000 (got 2000)"#,
                path.display()
            )
        );
    }

    #[test]
    fn exempt_addresses_take_addresses_and_cidr_ranges_and_name_a_bad_entry() {
        let parsed = ServerConfig::from_toml_str(
            "[limits]\nexempt_addresses = [\"10.0.0.0/8\", \"2001:db8::7\"]\n",
            ORIGIN,
        )
        .unwrap();
        let exempt = parsed.limits.exempt();
        assert_eq!(exempt.len(), 2);
        assert!(exempt[0].contains("10.20.30.40".parse().unwrap()));
        assert_eq!(
            error("[limits]\nexempt_addresses = [\"::1\", \"localhost\"]\n"),
            r#"invalid config "world-server.toml": limits.exempt_addresses[1] must be an IP address or a CIDR range such as 10.0.0.0/8 (got "localhost")"#
        );
        assert_eq!(
            error("[limits]\nexempt_addresses = [\"10.0.0.0/40\"]\n"),
            r#"invalid config "world-server.toml": limits.exempt_addresses[0] must be a CIDR prefix length of 0..=32 (got "10.0.0.0/40")"#
        );
    }

    #[test]
    fn loopback_is_exempt_from_the_per_address_limits_by_default() {
        let exempt = ServerConfig::default().limits.exempt();
        for addr in ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"] {
            assert!(
                exempt.iter().any(|r| r.contains(addr.parse().unwrap())),
                "{addr}"
            );
        }
        assert!(!exempt
            .iter()
            .any(|r| r.contains("10.0.0.1".parse().unwrap())));
    }

    #[test]
    fn the_admin_listener_is_off_by_default_and_must_be_an_address_other_than_the_game_port() {
        assert_eq!(ServerConfig::default().admin.address(), None);
        let on =
            ServerConfig::from_toml_str("[admin]\nlisten = \"127.0.0.1:9100\"\n", ORIGIN).unwrap();
        assert_eq!(on.admin.address(), Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(
            error("[admin]\nlisten = \"nine\"\n"),
            r#"invalid config "world-server.toml": admin.listen must be empty, ADDR:PORT or HOST:PORT (got "nine")"#
        );
        assert_eq!(
            error("[admin]\nlisten = \"127.0.0.1:7000\"\n"),
            r#"invalid config "world-server.toml": admin.listen must be another address than server.listen (got "127.0.0.1:7000")"#
        );
    }

    #[test]
    fn web_and_tls_keys_are_checked_naming_the_key() {
        let defaults = ServerConfig::default();
        assert_eq!(
            defaults.web.address(),
            Some("127.0.0.1:7080".parse().unwrap())
        );
        assert_eq!(defaults.tls.address(), None);
        assert_eq!(
            error("[web]\npath = \"ws\"\n"),
            r#"invalid config "world-server.toml": web.path must be a path starting with / (no ?, # or space, at most 256 bytes) (got "ws")"#
        );
        assert_eq!(
            error("[web]\nallowed_origins = [\"game.example\"]\n"),
            r#"invalid config "world-server.toml": web.allowed_origins[0] must be "*" or an origin such as https://game.example.com (got "game.example")"#
        );
        assert_eq!(
            error("[web]\nmax_message_bytes = 4096\n"),
            r#"invalid config "world-server.toml": web.max_message_bytes must be at least server.max_packet_size (got 4096)"#
        );
        assert_eq!(
            error("[web]\nlisten = \"127.0.0.1:7000\"\n"),
            r#"invalid config "world-server.toml": web.listen must be another address than server.listen, admin.listen and tls.listen (got "127.0.0.1:7000")"#
        );
        assert_eq!(
            error("[tls]\nlisten = \"127.0.0.1:7080\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n"),
            r#"invalid config "world-server.toml": tls.listen must be another address than server.listen, admin.listen and web.listen (got "127.0.0.1:7080")"#
        );
        assert_eq!(
            error("[tls]\nlisten = \"127.0.0.1:7443\"\nkey = \"k.pem\"\n"),
            r#"invalid config "world-server.toml": tls.cert must be a PEM file when tls.listen is set (got "")"#
        );
        assert_eq!(
            error("[tls]\nlisten = \"seven\"\n"),
            r#"invalid config "world-server.toml": tls.listen must be empty, ADDR:PORT or HOST:PORT (got "seven")"#
        );
        let ok = ServerConfig::from_toml_str(
            "[tls]\nlisten = \"0.0.0.0:7443\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n[web]\nallowed_origins = [\"*\"]\nlisten = \"\"\n",
            ORIGIN,
        )
        .unwrap();
        assert_eq!(ok.tls.address(), Some("0.0.0.0:7443".parse().unwrap()));
        assert_eq!(ok.web.address(), None);
        assert_eq!(ok.net.handshake_timeout(), Duration::from_secs(10));
    }

    #[test]
    fn durations_convert_and_zero_idle_timeout_disables_it() {
        let mut config = ServerConfig::default();
        assert_eq!(config.server.tick(), Duration::from_millis(50));
        assert_eq!(config.net.idle_timeout(), Some(Duration::from_secs(60)));
        config.net.idle_timeout_secs = 0;
        assert_eq!(config.net.idle_timeout(), None);
    }
}
