//! The sans-IO core of the chat world (`engine::core::Core`, in the test kit's `Sim`) driven
//! by arbitrary inputs: one to three nodes of a cluster (or a server on its own), each with
//! sessions from several addresses that connect, send the chat world's requests built from
//! arbitrary fields (guest and password logins, registrations, resumes with tokens the
//! server gave, logouts, joins, leaves, room lists, chat, whispers, pings) and frames of any
//! id and bytes, are set up as any transport, close, and stop reading; the time jumps; the
//! database holds its jobs, runs them, goes away and comes back, or its worker dies; nodes
//! are cut off from NATS and come back; and, when the input says so, NATS brings forged
//! answers and batches of nodes that do not exist.
//!
//! The settings are arbitrary too, within what the config accepts, and small: a few
//! sessions, rooms of a few members, a short write queue, low rate limits and deadlines, so
//! that every limit is met.
//!
//! After every tick of every node: the world's invariants (`Core::check_invariants`,
//! `engine::core::invariants::check_rooms`); and of the tick's output: each accepted
//! connection is opened or refused, once, refused with an S2C_Error; at most one batch and
//! one credit entry per session, only for connections open; every frame sent is a whole
//! frame of at most 65,535 bytes that decodes as a known S2C message; the credit given back
//! to a session never exceeds the frames it sent. At the end, with the database and NATS
//! back, every node settles: then no session waits for anything, and every frame a session
//! still connected sent has had its credit back.

#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use arbitrary::Arbitrary;
use bytes::Bytes;
use config::ServerConfig;
use engine::cluster::link::{holder, unavailable, FromNats, Reservation};
use engine::cluster::wire::{self, Counted, Heartbeat, Hello, ModuleEvent};
use engine::cluster::{Batch, Cluster, Event, Kind, ALL};
use engine::core::invariants::check_rooms;
use engine::core::{Input, Output};
use engine::modules::chat::{ChatModule, Whisper};
use engine::modules::rooms::cluster::{
    Member, RoomFrame, RoomMembers, RoomsEvent, RoomsState, Said,
};
use engine::modules::rooms::{Rooms, RoomsConfig, RoomsGame, RoomsModule};
use engine::net::{DisconnectReason, SessionId, Transport};
use engine::testing::{Bucket, Sim};
use engine::{DispatchError, Game, Setup};
use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use protocol::world::{
    C2sChat, C2sLogin, C2sLogout, C2sPing, C2sRegister, C2sResume, C2sRoomJoin, C2sRoomLeave,
    C2sRoomList, C2sSessionResume, C2sWhisper, S2cChat, S2cRoomPresence, S2cWhisper,
};
use protocol::{ClientToServer, S2cMessage};

/// The chat world, as `world-server` builds it: rooms with presence and history, room chat
/// and whispers.
struct Chat {
    rooms: Rooms,
}

impl RoomsGame for Chat {
    fn rooms(&self) -> &Rooms {
        &self.rooms
    }
    fn rooms_mut(&mut self) -> &mut Rooms {
        &mut self.rooms
    }
}

impl Game for Chat {
    const NAME: &'static str = "world";

    fn register(setup: &mut Setup<Self>) -> Result<(), DispatchError> {
        setup.add(RoomsModule)?;
        setup.add(ChatModule)
    }
}

/// Usernames: a few valid ones (two that differ in case only), and invalid ones.
const NAMES: [&str; 9] = [
    "ann",
    "Ann",
    "bob",
    "cyd",
    "dee",
    "eve",
    "ab",
    "bad name",
    "abcdefghijklmnopqrstuvwxyz0123456",
];

/// Passwords: none (a guest), too short, two valid ones, too long.
const PASSWORDS: [&str; 5] = ["", "short", "password1", "password2", "p"];

/// Room names: a few valid ones (two that differ in case), and invalid ones.
const ROOMS: [&str; 8] = [
    "lobby",
    "Lobby",
    "den",
    "attic",
    "cellar",
    "",
    "bad room!",
    "r123456789r123456789r123456789r123456789r123456789r123456789r1234",
];

/// Node names of the cluster, the last of a node that does not exist.
const NODES: [&str; 4] = ["node1", "node2", "node3", "node9"];

/// The addresses clients connect from: two of one /24, another of the same /16, a loopback
/// one (exempt from the limits per address), two IPv6 ones of one /64, and an IPv4 one
/// mapped into IPv6.
fn address(index: u8) -> IpAddr {
    match index % 8 {
        0 => IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        1 => IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        2 => IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1)),
        3 => IpAddr::V4(Ipv4Addr::LOCALHOST),
        4 => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        5 => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
        6 => IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()),
        _ => IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
    }
}

/// The settings, each byte mapped into a small range the config accepts.
#[derive(Arbitrary, Debug)]
struct Knobs {
    /// Nodes: 1 to 3; a lone node is a server on its own unless `lone_cluster`.
    nodes: u8,
    lone_cluster: bool,
    max_sessions: u8,
    room_capacity: u8,
    max_rooms_per_session: u8,
    history_lines: u8,
    max_requests_per_sec: u8,
    queue: u8,
    max_sessions_per_address: u8,
    max_unauthenticated_per_address: u8,
    max_sessions_per_prefix: u8,
    account_reserve_percent: u8,
    login_deadline_secs: u8,
    idle_timeout_secs: u8,
    max_chat_len: u8,
    max_failures_per_user: u8,
    delay_after_failures: u8,
    max_registrations_per_address: u8,
    no_guests: bool,
    /// Whether the databases hold their jobs until told at first.
    hold_db: bool,
    /// Whether NATS may bring forged answers and batches.
    forge: bool,
}

impl Knobs {
    /// The server config of these knobs.
    fn config(&self) -> ServerConfig {
        let mut c = ServerConfig::default();
        c.server.max_sessions = 1 + usize::from(self.max_sessions % 8);
        c.world.room_capacity = 1 + usize::from(self.room_capacity % 4);
        c.world.max_rooms_per_session = 1 + usize::from(self.max_rooms_per_session % 3);
        c.world.history_lines = usize::from(self.history_lines % 4);
        c.world.max_chat_len = 1 + usize::from(self.max_chat_len % 40);
        c.world.allow_guests = !self.no_guests;
        c.net.max_requests_per_sec = [0, 2, 10, 200][usize::from(self.max_requests_per_sec % 4)];
        c.net.idle_timeout_secs = u64::from(self.idle_timeout_secs % 8);
        c.storage.queue = 1 + usize::from(self.queue % 6);
        c.limits.max_sessions_per_address = usize::from(self.max_sessions_per_address % 4);
        c.limits.max_unauthenticated_per_address =
            usize::from(self.max_unauthenticated_per_address % 4);
        c.limits.max_sessions_per_prefix = usize::from(self.max_sessions_per_prefix % 5);
        c.limits.account_reserve_percent =
            [0, 10, 50, 100][usize::from(self.account_reserve_percent % 4)];
        c.limits.login_deadline_secs = u64::from(self.login_deadline_secs % 5);
        c.auth.max_failures_per_user = 1 + u32::from(self.max_failures_per_user % 5);
        c.auth.delay_after_failures = 1 + u32::from(self.delay_after_failures % 3);
        c.auth.max_login_delay_ms = 1_500;
        c.auth.max_registrations_per_address =
            1 + u32::from(self.max_registrations_per_address % 4);
        c
    }
}

/// Content of a chat line or a whisper.
#[derive(Arbitrary, Debug)]
enum Content {
    /// "hi" repeated this many times (0: empty).
    Repeat(u8),
    /// Any text.
    Text(String),
}

impl Content {
    /// The text of the line.
    fn text(&self) -> String {
        match self {
            Content::Repeat(n) => "hi".repeat(usize::from(*n % 32)),
            Content::Text(text) => text.clone(),
        }
    }
}

/// A request of the chat world, built from arbitrary fields.
#[derive(Arbitrary, Debug)]
enum Request {
    /// A guest login (no password) as `NAMES[name]`, resumable or not.
    Guest { name: u8, resumable: bool },
    /// A login with `PASSWORDS[password]` (129 bytes for the last).
    Login {
        name: u8,
        password: u8,
        resumable: bool,
    },
    /// A registration.
    Register {
        name: u8,
        password: u8,
        resumable: bool,
    },
    /// A resume with a token the node gave (by index), or a made-up one.
    Resume { token: u8, resumable: bool },
    /// A session taken back with a session token the node gave (by index), or a made-up
    /// one, saying it received `received` frames.
    SessionResume { token: u8, received: u64 },
    /// A logout.
    Logout,
    /// A join of `ROOMS[room]`.
    Join { room: u8 },
    /// A leave.
    Leave { room: u8 },
    /// A room list.
    List,
    /// A chat line.
    Chat {
        room: u8,
        content: Content,
        sent_at_us: u64,
    },
    /// A whisper to `NAMES[to]`.
    Whisper { to: u8, content: Content },
    /// A ping, acknowledging `received` frames.
    Ping {
        seq: u32,
        client_time_us: u64,
        received: u64,
    },
}

/// What another node (or one that does not exist) says in a forged batch.
#[derive(Arbitrary, Debug)]
enum PeerEvent {
    /// A node (re)started: it asks for this node's state.
    Hello,
    /// Still there.
    Heartbeat,
    /// A login, failure or registration it counted.
    Counted { what: u8, addr: u8, user: u8 },
    /// A member joined a room there.
    Joined { room: u8, name: u8 },
    /// A member left a room there.
    Left { room: u8, name: u8 },
    /// A chat line for this node's members of a room.
    Line {
        room: u8,
        from: u8,
        content: Content,
    },
    /// A presence frame for this node's members of a room.
    Presence { room: u8, name: u8, joined: bool },
    /// Its rooms and their members, replacing what was known.
    Rooms(Vec<(u8, Vec<u8>)>),
    /// A whisper for a user of this node.
    Whisper { to: u8, from: u8, content: Content },
    /// An event of a module the world does not have.
    Other { module: String, payload: Vec<u8> },
    /// An event of no kind.
    Empty,
}

/// What NATS brings, forged.
#[derive(Arbitrary, Debug)]
enum Forged {
    /// The names bucket answers a claim.
    Claimed {
        who: u8,
        name: u8,
        granted: bool,
        revision: u8,
    },
    /// The names bucket says who holds a name.
    Held {
        name: u8,
        node: u8,
        incarnation: u8,
        who: u8,
        revision: u8,
    },
    /// The names bucket says a name is free.
    Freed { name: u8, revision: u8 },
    /// A later login elsewhere outranks this node's.
    Outranked { who: u8, name: u8, node: u8, at: u8 },
    /// The rooms bucket answers a reservation.
    Reserved { who: u8, room: u8, outcome: u8 },
    /// NATS is back.
    Connected,
    /// NATS is lost.
    Disconnected,
    /// A batch of a node (one that does not exist, or this node's own name, too).
    Batch {
        from: u8,
        incarnation: u8,
        seq: u8,
        direct: bool,
        events: Vec<PeerEvent>,
    },
}

/// One step of the script; `node` picks the node (modulo their number), `who` a session of
/// it (see `Node::pick`).
#[derive(Arbitrary, Debug)]
enum Op {
    /// A connection from `address(from)`.
    Connect { node: u8, from: u8, port: u16 },
    /// What a player does first, in a few ticks: connects, logs in (as a guest with no
    /// password, else registering or logging in with it), and joins a room if one is given;
    /// the database runs what it holds between the ticks. Anything may fail on the way.
    Enter {
        node: u8,
        from: u8,
        name: u8,
        password: u8,
        register: bool,
        room: Option<u8>,
    },
    /// A session sends a request.
    Send { node: u8, who: u8, request: Request },
    /// A session sends a frame of any id and payload.
    Frame {
        node: u8,
        who: u8,
        id: u16,
        payload: Vec<u8>,
    },
    /// A session's connection ends.
    Close { node: u8, who: u8, reason: u8 },
    /// A session's connection is set up as a transport.
    Ready { node: u8, who: u8, transport: u8 },
    /// A session's peer stops reading.
    SlowConsumer { node: u8, who: u8 },
    /// Every node ticks, then the cluster carries what they said.
    Tick,
    /// As many ticks.
    Ticks(u8),
    /// The clocks jump, with no tick.
    Skip { ms: u16 },
    /// The database runs the jobs it holds.
    RunDb { node: u8 },
    /// The database holds its jobs from now on, or runs them at once.
    HoldDb { node: u8, hold: bool },
    /// The database goes away, or comes back.
    DatabaseDown { node: u8, down: bool },
    /// The DB worker dies.
    DbDied { node: u8 },
    /// The node is cut off from NATS.
    Cut { node: u8 },
    /// The node reaches NATS again.
    Heal { node: u8 },
    /// NATS brings the node forged news (when the knobs allow it).
    Nats { node: u8, forged: Forged },
}

/// One input: the settings, then the script.
#[derive(Arbitrary, Debug)]
struct Script {
    knobs: Knobs,
    ops: Vec<Op>,
}

/// One node and what the harness knows of it.
struct Node {
    sim: Sim<Chat>,
    /// Every session the core opened, in order, and by the token of its connection.
    sessions: Vec<SessionId>,
    opened: BTreeMap<u64, SessionId>,
    /// Sessions whose connection is open as the core sees it: from their opening to the
    /// `Closed` input that ends them.
    open: BTreeSet<SessionId>,
    /// Frames each session sent while open, and the credit it had back.
    received: BTreeMap<SessionId, usize>,
    credited: BTreeMap<SessionId, usize>,
    /// The tokens of the connections accepted since the last tick.
    accepted: Vec<u64>,
    next_token: u64,
    /// Tokens the node gave in S2C_AuthResult, for resumes.
    tokens: Vec<String>,
    /// Session tokens the node gave in S2C_AuthResult, for C2S_SessionResume.
    session_tokens: Vec<String>,
    /// The DB worker died; the database was ever taken away; NATS brought forged news.
    died: bool,
    ever_down: bool,
    forged: bool,
    /// Cut off from NATS.
    cut: bool,
    /// Connections the last tick closed: the core keeps them until the next takes their
    /// ends.
    closing: usize,
}

impl Node {
    /// A session by `who`: one whose connection is open (most of the time), any the node
    /// ever had, or (for 0xff) one it never had.
    fn pick(&self, who: u8) -> SessionId {
        if who == 0xff || self.sessions.is_empty() {
            return SessionId(1_000_000 + u64::from(who));
        }
        if who & 0x80 == 0 && !self.open.is_empty() {
            let open: Vec<&SessionId> = self.open.iter().collect();
            return *open[usize::from(who) % open.len()];
        }
        self.sessions[usize::from(who) % self.sessions.len()]
    }

    /// `session` sends a frame of `id` with `payload`.
    fn frame(&mut self, session: SessionId, id: u16, payload: Bytes) {
        if self.open.contains(&session) {
            *self.received.entry(session).or_default() += 1;
        }
        self.sim.send_frame(session, id, payload);
    }

    /// `session` sends `message`.
    fn send<M: ClientToServer>(&mut self, session: SessionId, message: &M) {
        self.frame(session, M::ID, Bytes::from(message.encode_to_vec()));
    }

    /// The cluster's name and incarnation of this node, if it is one.
    fn cluster(&self) -> Option<(String, u64)> {
        let cluster = self.sim.world().cluster.as_ref()?;
        Some((cluster.node().to_string(), cluster.incarnation()))
    }
}

/// The nodes, and the names and rooms buckets between them.
struct Harness {
    nodes: Vec<Node>,
    bucket: Bucket,
    forge: bool,
    max_sessions: usize,
}

impl Harness {
    /// The nodes of `knobs`, each a sim of the chat world whose database holds its jobs until
    /// told (or not, as `knobs.hold_db` says); nodes of a cluster have fixed incarnations, so
    /// that an input replays the same.
    fn new(knobs: &Knobs) -> Harness {
        let config = knobs.config();
        if let Err(e) = config.validate("fuzz") {
            panic!("the knobs made a config the server refuses: {e}");
        }
        let count = 1 + usize::from(knobs.nodes % 3);
        let clustered = count > 1 || knobs.lone_cluster;
        let mut bucket = Bucket::default();
        let nodes = (0..count)
            .map(|i| {
                let game = Chat {
                    rooms: Rooms::new(RoomsConfig::from(&config)),
                };
                let mut sim = Sim::holding_db(config.clone(), game);
                sim.hold_db(knobs.hold_db);
                if clustered {
                    let incarnation = 100 + i as u64;
                    bucket.join(incarnation);
                    sim.world_mut().cluster =
                        Some(Cluster::with_incarnation(NODES[i].to_string(), incarnation));
                }
                Node {
                    sim,
                    sessions: Vec::new(),
                    opened: BTreeMap::new(),
                    open: BTreeSet::new(),
                    received: BTreeMap::new(),
                    credited: BTreeMap::new(),
                    accepted: Vec::new(),
                    next_token: 0,
                    tokens: Vec::new(),
                    session_tokens: Vec::new(),
                    died: false,
                    ever_down: false,
                    forged: false,
                    cut: false,
                    closing: 0,
                }
            })
            .collect();
        Harness {
            nodes,
            bucket,
            forge: knobs.forge,
            max_sessions: config.server.max_sessions,
        }
    }

    /// Node `index`, modulo their number.
    fn node(&mut self, index: u8) -> &mut Node {
        let count = self.nodes.len();
        &mut self.nodes[usize::from(index) % count]
    }

    /// Every node ticks and its output and world are checked; then the cluster carries
    /// what they said.
    fn tick(&mut self) {
        for (index, node) in self.nodes.iter_mut().enumerate() {
            let output = node.sim.tick(Vec::new());
            check_output(node, &output, index);
            if let Err(e) = node.sim.core().check_invariants() {
                panic!("node {index}: {e}");
            }
            if let Err(e) = check_rooms(node.sim.world()) {
                panic!("node {index}: {e}");
            }
            assert!(node.sim.core().connections() <= self.max_sessions);
            assert_eq!(
                node.sim.core().connections(),
                node.open.len() + node.closing,
                "node {index}: connections open"
            );
        }
        self.carry();
    }

    /// Carries each node's bucket requests and batches, as NATS does (see
    /// `engine::testing::Nodes`): a node cut off has its requests answered as a server
    /// without NATS answers itself, and hears nothing.
    fn carry(&mut self) {
        let mut batches = Vec::new();
        for node in &mut self.nodes {
            let Some((name, incarnation)) = node.cluster() else {
                continue;
            };
            let (requests, sent) = node.sim.take_cluster();
            if node.cut {
                for request in requests {
                    if let Some(answer) = unavailable(request) {
                        node.sim.input(Input::Cluster(answer));
                    }
                }
                continue;
            }
            for request in requests {
                self.bucket.request(&name, incarnation, request);
            }
            for (subject, batch) in sent {
                let carried = wire::decode(&batch.encode_to_vec()).expect("a batch decodes");
                batches.push((subject, carried));
            }
        }
        for node in &mut self.nodes {
            let Some((name, incarnation)) = node.cluster() else {
                continue;
            };
            if node.cut {
                continue;
            }
            for answer in self.bucket.told(incarnation) {
                node.sim.input(Input::Cluster(answer));
            }
            let inbox = engine::cluster::inbox(&name);
            for (subject, batch) in &batches {
                if subject == ALL || *subject == inbox {
                    node.sim
                        .input(Input::Cluster(FromNats::Batch(batch.clone())));
                }
            }
        }
    }

    /// Carries out one step of the script.
    fn run(&mut self, op: Op) {
        match op {
            Op::Connect { node, from, port } => {
                let node = self.node(node);
                let token = node.next_token;
                node.next_token += 1;
                node.accepted.push(token);
                let peer = SocketAddr::new(address(from), port);
                node.sim.input(Input::Accepted { token, peer });
            }
            Op::Enter {
                node,
                from,
                name,
                password,
                register,
                room,
            } => self.enter(node, from, name, password, register, room),
            Op::Send { node, who, request } => {
                let node = self.node(node);
                let session = node.pick(who);
                send(node, session, request);
            }
            Op::Frame {
                node,
                who,
                id,
                payload,
            } => {
                let node = self.node(node);
                let session = node.pick(who);
                node.frame(session, id, Bytes::from(payload));
            }
            Op::Close { node, who, reason } => {
                let node = self.node(node);
                let session = node.pick(who);
                let reason = match reason % 4 {
                    0 => DisconnectReason::PeerClosed,
                    1 => DisconnectReason::Io(std::io::ErrorKind::ConnectionReset),
                    2 => DisconnectReason::Protocol(engine::net::FrameError::Undersized(2)),
                    _ => DisconnectReason::Handshake("fuzzed".into()),
                };
                node.open.remove(&session);
                node.sim.input(Input::Closed { session, reason });
            }
            Op::Ready {
                node,
                who,
                transport,
            } => {
                let node = self.node(node);
                let session = node.pick(who);
                let transport = Transport::ALL[usize::from(transport) % Transport::ALL.len()];
                node.sim.input(Input::Ready { session, transport });
            }
            Op::SlowConsumer { node, who } => {
                let node = self.node(node);
                let session = node.pick(who);
                node.sim.input(Input::SlowConsumer { session });
            }
            Op::Tick => self.tick(),
            Op::Ticks(n) => {
                for _ in 0..n % 8 {
                    self.tick();
                }
            }
            Op::Skip { ms } => {
                for node in &mut self.nodes {
                    node.sim.skip(Duration::from_millis(u64::from(ms) % 10_000));
                }
            }
            Op::RunDb { node } => {
                let node = self.node(node);
                if !node.died {
                    node.sim.run_db();
                }
            }
            Op::HoldDb { node, hold } => {
                let node = self.node(node);
                if !node.died {
                    node.sim.hold_db(hold);
                }
            }
            Op::DatabaseDown { node, down } => {
                let node = self.node(node);
                if !node.died {
                    node.ever_down |= down;
                    node.sim.database_down(down);
                }
            }
            Op::DbDied { node } => {
                // A dead worker answers nothing more: it holds every job from now on. (Not
                // after an outage: a write it was retrying would still be answered.)
                let node = self.node(node);
                if !node.died && !node.ever_down {
                    node.died = true;
                    node.sim.hold_db(true);
                    node.sim.input(Input::DbDied);
                }
            }
            Op::Cut { node } => {
                let node = self.node(node);
                if node.cluster().is_some() && !node.cut {
                    node.cut = true;
                    node.sim.input(Input::Cluster(FromNats::Disconnected));
                }
            }
            Op::Heal { node } => {
                let node = self.node(node);
                if node.cut {
                    node.cut = false;
                    node.sim.input(Input::Cluster(FromNats::Connected));
                }
            }
            Op::Nats { node, forged } => {
                if !self.forge {
                    return;
                }
                let node = self.node(node);
                if node.cluster().is_none() {
                    return;
                }
                node.forged = true;
                let news = forge(node, forged);
                node.sim.input(Input::Cluster(news));
            }
        }
    }

    /// A player connects to node `index` from `from`, logs in as `name` and joins `room`
    /// (see [`Op::Enter`]).
    fn enter(
        &mut self,
        index: u8,
        from: u8,
        name: u8,
        password: u8,
        register: bool,
        room: Option<u8>,
    ) {
        let node = self.node(index);
        let token = node.next_token;
        node.next_token += 1;
        node.accepted.push(token);
        let peer = SocketAddr::new(address(from), 40_000 + u16::from(name));
        node.sim.input(Input::Accepted { token, peer });
        self.tick();
        let node = self.node(index);
        let Some(&session) = node.opened.get(&token) else {
            return; // refused
        };
        // Half the players ask for resumable sessions.
        let resumable = from % 2 == 1;
        let request = match (PASSWORDS[usize::from(password) % PASSWORDS.len()], register) {
            ("", _) => Request::Guest { name, resumable },
            (_, true) => Request::Register {
                name,
                password,
                resumable,
            },
            (_, false) => Request::Login {
                name,
                password,
                resumable,
            },
        };
        send(node, session, request);
        let mut steps = vec![None; 3];
        if let Some(room) = room {
            steps.push(Some(room));
            steps.extend([None, None]);
        }
        for step in steps {
            if let Some(room) = step {
                send(self.node(index), session, Request::Join { room });
            }
            for node in &mut self.nodes {
                if !node.died {
                    node.sim.run_db();
                }
            }
            self.tick();
        }
    }

    /// Whether a session of a node without forged news waits for anything (the database, a
    /// login's delay, the buckets).
    fn anyone_waits(&self) -> bool {
        self.nodes.iter().filter(|node| !node.forged).any(|node| {
            node.open
                .iter()
                .any(|&session| node.sim.world().is_waiting(session))
        })
    }

    /// The end: the databases and NATS come back, and every node settles. Then no session
    /// waits for anything, and every frame a session still connected sent has had its
    /// credit back (a frame whose credit never came back would stall its reader for good).
    fn settle(&mut self) {
        for node in &mut self.nodes {
            if !node.died {
                node.sim.database_down(false);
                node.sim.hold_db(false);
                node.sim.run_db();
            }
            if node.cut {
                node.cut = false;
                node.sim.input(Input::Cluster(FromNats::Connected));
            }
        }
        for _ in 0..4 {
            self.tick();
        }
        // Logins to an account under attack wait their turn, each up to max_login_delay_ms
        // after the one before, and a session's later logins wait behind its first: time
        // goes on while any session waits, within a bound that no script of 256 steps
        // needs. Those silent past the idle timeout are closed meanwhile.
        for _ in 0..400 {
            if !self.anyone_waits() {
                break;
            }
            for node in &mut self.nodes {
                node.sim.skip(Duration::from_secs(2));
            }
            for _ in 0..3 {
                self.tick();
            }
        }
        // The requests parked behind the last wait, and the database's retried writes.
        for node in &mut self.nodes {
            node.sim.skip(Duration::from_secs(1));
        }
        for _ in 0..3 {
            self.tick();
        }
        for (index, node) in self.nodes.iter().enumerate() {
            if node.forged {
                continue; // forged news can leave a claim or a reservation unanswered
            }
            for &session in &node.open {
                let world = node.sim.world();
                if world.is_waiting(session) {
                    let client = &world.clients[&session];
                    panic!(
                        "node {index}: session {session} still waits after everything settled: \
                         login under way {:?}, name claimed {}, joining {:?}, delayed logins {}, \
                         DB jobs in flight {:?}, held {}",
                        client.pending_auth,
                        client.claiming.is_some(),
                        world.game.rooms.members.get(&session).map(|m| m.joining),
                        world.delayed_logins.len(),
                        world.db.in_flight(),
                        node.sim.held_db().count(),
                    );
                }
                let received = node.received.get(&session).copied().unwrap_or(0);
                let credited = node.credited.get(&session).copied().unwrap_or(0);
                assert_eq!(
                    received, credited,
                    "node {index}: session {session} sent {received} frames and had {credited} credits back"
                );
            }
        }
    }
}

/// `session` of `node` sends `request`.
fn send(node: &mut Node, session: SessionId, request: Request) {
    let name = |i: u8| NAMES[usize::from(i) % NAMES.len()].to_string();
    let room = |i: u8| ROOMS[usize::from(i) % ROOMS.len()].to_string();
    let password = |i: u8| match PASSWORDS[usize::from(i) % PASSWORDS.len()] {
        "p" => "p".repeat(129),
        other => other.to_string(),
    };
    match request {
        Request::Guest { name: n, resumable } => node.send(
            session,
            &C2sLogin {
                username: name(n),
                password: String::new(),
                resumable,
            },
        ),
        Request::Login {
            name: n,
            password: p,
            resumable,
        } => node.send(
            session,
            &C2sLogin {
                username: name(n),
                password: password(p),
                resumable,
            },
        ),
        Request::Register {
            name: n,
            password: p,
            resumable,
        } => node.send(
            session,
            &C2sRegister {
                username: name(n),
                password: password(p),
                resumable,
            },
        ),
        Request::Resume { token, resumable } => {
            let token = if node.tokens.is_empty() || token == 0xff {
                format!("made-up-{token}")
            } else {
                node.tokens[usize::from(token) % node.tokens.len()].clone()
            };
            node.send(session, &C2sResume { token, resumable });
        }
        Request::SessionResume { token, received } => {
            let session_token = if node.session_tokens.is_empty() || token == 0xff {
                format!("{:032x}", u128::from(token) * 0x9e37_79b9)
            } else {
                node.session_tokens[usize::from(token) % node.session_tokens.len()].clone()
            };
            node.send(
                session,
                &C2sSessionResume {
                    session_token,
                    received,
                },
            );
        }
        Request::Logout => node.send(session, &C2sLogout {}),
        Request::Join { room: r } => node.send(
            session,
            &C2sRoomJoin {
                room: room(r),
                ..Default::default()
            },
        ),
        Request::Leave { room: r } => node.send(session, &C2sRoomLeave { room: room(r) }),
        Request::List => node.send(session, &C2sRoomList {}),
        Request::Chat {
            room: r,
            content,
            sent_at_us,
        } => node.send(
            session,
            &C2sChat {
                room: room(r),
                content: content.text(),
                sent_at_us,
            },
        ),
        Request::Whisper { to, content } => node.send(
            session,
            &C2sWhisper {
                to: name(to),
                content: content.text(),
                sent_at_us: 0,
            },
        ),
        Request::Ping {
            seq,
            client_time_us,
            received,
        } => node.send(
            session,
            &C2sPing {
                seq,
                client_time_us,
                received,
            },
        ),
    }
}

/// The news of `forged` for `node`.
fn forge(node: &Node, forged: Forged) -> FromNats {
    let name = |i: u8| NAMES[usize::from(i) % NAMES.len()].to_ascii_lowercase();
    let room = |i: u8| ROOMS[usize::from(i) % ROOMS.len()].to_string();
    match forged {
        Forged::Claimed {
            who,
            name: n,
            granted,
            revision,
        } => FromNats::Claimed {
            session: node.pick(who),
            username: name(n),
            granted,
            revision: u64::from(revision),
        },
        Forged::Held {
            name: n,
            node: at,
            incarnation,
            who,
            revision,
        } => FromNats::Held {
            username: name(n),
            holder: holder(
                NODES[usize::from(at) % NODES.len()],
                100 + u64::from(incarnation % 4),
                node.pick(who),
                0,
            ),
            revision: u64::from(revision),
        },
        Forged::Freed { name: n, revision } => FromNats::Freed {
            username: name(n),
            revision: u64::from(revision),
        },
        Forged::Outranked {
            who,
            name: n,
            node: at,
            at: time,
        } => FromNats::Outranked {
            session: node.pick(who),
            username: name(n),
            holder: holder(
                NODES[usize::from(at) % NODES.len()],
                100,
                SessionId(1),
                u64::from(time),
            ),
        },
        Forged::Reserved {
            who,
            room: r,
            outcome,
        } => FromNats::Reserved {
            session: node.pick(who),
            room: room(r),
            outcome: [
                Reservation::Granted,
                Reservation::Full,
                Reservation::Unavailable,
            ][usize::from(outcome % 3)],
        },
        Forged::Connected => FromNats::Connected,
        Forged::Disconnected => FromNats::Disconnected,
        Forged::Batch {
            from,
            incarnation,
            seq,
            direct,
            events,
        } => FromNats::Batch(Batch {
            from: NODES[usize::from(from) % NODES.len()].to_string(),
            seq: u64::from(seq),
            direct,
            events: events
                .into_iter()
                .map(|e| peer_event(e, &name, &room))
                .collect(),
            incarnation: 100 + u64::from(incarnation % 4),
        }),
    }
}

/// The event of a forged batch. What it carries for clients (lines, presence, whispers) is
/// well-formed, as another node's would be: nodes trust each other's frames.
fn peer_event(
    event: PeerEvent,
    name: &impl Fn(u8) -> String,
    room: &impl Fn(u8) -> String,
) -> Event {
    let rooms = |said: Said| {
        Kind::Module(ModuleEvent {
            module: "rooms".into(),
            payload: Bytes::from(RoomsEvent { said: Some(said) }.encode_to_vec()),
        })
    };
    let frame = |bytes: Result<Bytes, protocol::FrameTooLarge>| bytes.unwrap_or_default();
    let kind = match event {
        PeerEvent::Hello => Kind::Hello(Hello {}),
        PeerEvent::Heartbeat => Kind::Heartbeat(Heartbeat {}),
        PeerEvent::Counted { what, addr, user } => Kind::Counted(Counted {
            what: u32::from(what % 6),
            addr: address(addr).to_string(),
            user: name(user),
        }),
        PeerEvent::Joined { room: r, name: n } => rooms(Said::Joined(Member {
            room: room(r),
            username: name(n),
        })),
        PeerEvent::Left { room: r, name: n } => rooms(Said::Left(Member {
            room: room(r),
            username: name(n),
        })),
        PeerEvent::Line {
            room: r,
            from,
            content,
        } => rooms(Said::Line(RoomFrame {
            room: room(r),
            frame: frame(protocol::frame(&S2cChat {
                room: room(r),
                from: name(from),
                content: content.text(),
                sent_at_us: 0,
                server_time_us: 0,
                history: false,
            })),
        })),
        PeerEvent::Presence {
            room: r,
            name: n,
            joined,
        } => rooms(Said::Frame(RoomFrame {
            room: room(r),
            frame: frame(protocol::frame(&S2cRoomPresence {
                room: room(r),
                username: name(n),
                joined,
            })),
        })),
        PeerEvent::Rooms(list) => rooms(Said::Rooms(RoomsState {
            rooms: list
                .into_iter()
                .map(|(r, names)| RoomMembers {
                    room: room(r),
                    usernames: names.into_iter().map(name).collect(),
                })
                .collect(),
        })),
        PeerEvent::Whisper { to, from, content } => Kind::Module(ModuleEvent {
            module: engine::modules::chat::MODULE.into(),
            payload: Bytes::from(
                Whisper {
                    to: name(to),
                    frame: frame(protocol::frame(&S2cWhisper {
                        from: name(from),
                        to: name(to),
                        content: content.text(),
                        sent_at_us: 0,
                    })),
                }
                .encode_to_vec(),
            ),
        }),
        PeerEvent::Other { module, payload } => Kind::Module(ModuleEvent {
            module: format!("x-{module}"),
            payload: Bytes::from(payload),
        }),
        PeerEvent::Empty => return Event { kind: None },
    };
    Event::new(kind)
}

/// Checks one tick's output of `node` against what the harness knows, and notes what it
/// opened, credited and closed.
fn check_output(node: &mut Node, output: &Output, index: usize) {
    let accepted: BTreeSet<u64> = std::mem::take(&mut node.accepted).into_iter().collect();
    let mut decided = BTreeSet::new();
    for &(token, session) in &output.opened {
        assert!(
            accepted.contains(&token),
            "node {index}: opened token {token}, not accepted"
        );
        assert!(
            decided.insert(token),
            "node {index}: token {token} decided twice"
        );
        assert!(
            !node.sessions.contains(&session),
            "node {index}: session {session} opened twice"
        );
        node.sessions.push(session);
        node.opened.insert(token, session);
        node.open.insert(session);
    }
    for refusal in &output.refused {
        assert!(
            accepted.contains(&refusal.token),
            "node {index}: refused a token not accepted"
        );
        assert!(
            decided.insert(refusal.token),
            "node {index}: token decided twice"
        );
        let message = check_frame(&refusal.frame, index);
        assert!(
            matches!(message, S2cMessage::S2cError(_)),
            "node {index}: a refusal sends {message:?}"
        );
    }
    assert_eq!(
        decided, accepted,
        "node {index}: connections accepted and never decided"
    );
    let mut batched = BTreeSet::new();
    for (session, frames) in &output.batches {
        assert!(
            node.open.contains(session),
            "node {index}: a batch for session {session}, whose connection is not open"
        );
        assert!(
            batched.insert(*session),
            "node {index}: two batches for session {session}"
        );
        for frame in frames {
            if let S2cMessage::S2cAuthResult(result) = check_frame(frame, index) {
                if !result.token.is_empty() && node.tokens.len() < 64 {
                    node.tokens.push(result.token);
                }
                if !result.session_token.is_empty() && node.session_tokens.len() < 64 {
                    node.session_tokens.push(result.session_token);
                }
            }
        }
    }
    let mut credited = BTreeSet::new();
    for &(session, count) in &output.credits {
        assert!(
            node.open.contains(&session),
            "node {index}: credit for session {session}, whose connection is not open"
        );
        assert!(
            credited.insert(session),
            "node {index}: two credits for session {session}"
        );
        let total = node.credited.entry(session).or_default();
        *total += count;
        let received = node.received.get(&session).copied().unwrap_or(0);
        assert!(
            *total <= received,
            "node {index}: session {session} had {total} credits back for {received} frames"
        );
    }
    let mut closed = BTreeSet::new();
    for (session, _) in &output.closes {
        assert!(
            node.open.contains(session),
            "node {index}: a close of session {session}, whose connection is not open"
        );
        assert!(
            closed.insert(*session),
            "node {index}: session {session} closed twice"
        );
    }
    // The test kit ends each closed connection at the next tick, before anything sent after.
    node.closing = closed.len();
    for session in closed {
        node.open.remove(&session);
    }
}

/// Checks that `frame` is one whole frame of a known S2C message, and decodes it.
fn check_frame(frame: &Bytes, index: usize) -> S2cMessage {
    assert!(
        (protocol::HEADER_LEN..=protocol::MAX_FRAME_LEN).contains(&frame.len()),
        "node {index}: a frame of {} bytes",
        frame.len()
    );
    let size = usize::from(u16::from_le_bytes([frame[0], frame[1]]));
    assert_eq!(
        size,
        frame.len(),
        "node {index}: a frame whose size is not its length"
    );
    let id = u16::from_le_bytes([frame[2], frame[3]]);
    S2cMessage::decode(id, frame.slice(protocol::HEADER_LEN..))
        .unwrap_or_else(|e| panic!("node {index}: a frame sent does not decode: {e}"))
}

fuzz_target!(|script: Script| {
    world_fuzz::quiet();
    let mut world = Harness::new(&script.knobs);
    for op in script.ops.into_iter().take(256) {
        world.run(op);
    }
    world.settle();
});
