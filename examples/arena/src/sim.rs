//! The arena in memory: the engine's sans-IO core over an [`Arena`], with a database in memory
//! and simulated time; no sockets, no threads. For tests and benchmarks.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use engine::core::{Core, Input, Output};
use engine::db::{AuthSettings, Db, DbWorker};
use engine::net::{Packet, SessionId};
use engine::protocol::world::C2sLogin;
use engine::protocol::{ClientToServer, S2cMessage as EngineMessage};
use engine::storage::MemoryStorage;
use engine::world::Setup;
use engine::{World, WorldConfig};

use crate::{Arena, ArenaConfig, S2cMessage};

/// A decoded frame a session was sent: the engine's or the arena's.
#[derive(Clone, Debug, PartialEq)]
pub enum Received {
    /// One of the engine's messages (welcome, errors, logins, pong).
    Engine(EngineMessage),
    /// One of the arena's.
    Arena(S2cMessage),
}

/// An arena run by the engine's core at simulated time.
pub struct Sim {
    /// The core.
    pub core: Core<Arena>,
    /// The simulated time.
    pub now: Instant,
    /// When the simulation started.
    start: Instant,
    tick: Duration,
    next_token: u64,
}

impl Sim {
    /// An empty arena under `rules`, with the server's default settings.
    pub fn new(rules: ArenaConfig) -> Sim {
        let mut server = config::ServerConfig::default();
        // Nobody logs in with a password here: the hash made at start-up may be cheap.
        server.auth.argon2_memory_kib = 64;
        server.auth.argon2_iterations = 1;
        server.net.max_requests_per_sec = 0;
        server.limits.login_deadline_secs = 0;
        server.net.idle_timeout_secs = 0;
        server.server.max_sessions = 1_000_000;
        let storage = MemoryStorage::new();
        let worker = DbWorker::new(Box::new(storage), AuthSettings::from(&server))
            .expect("argon2 parameters of the default config");
        let now = Instant::now();
        let (dispatcher, hooks) = Setup::build().expect("the arena's handlers register");
        let world = World::new(
            WorldConfig::from(&server),
            Arena::new(rules),
            hooks,
            Db::inline(worker),
            now,
        );
        Sim {
            core: Core::new(world, dispatcher),
            now,
            start: now,
            tick: server.server.tick(),
            next_token: 0,
        }
    }

    /// One tick: the time moves on by a tick, then the core runs `inputs`.
    pub fn tick(&mut self, inputs: Vec<Input>) -> Output {
        self.now += self.tick;
        let clock = engine::testing::clock(self.start, self.now);
        let output = std::mem::take(self.core.tick(clock, inputs));
        output
    }

    /// A player connected and logged in as the guest `name`, and spawned; what it was sent
    /// so far is read off.
    pub fn join(&mut self, name: &str) -> SessionId {
        let token = self.next_token;
        self.next_token += 1;
        let peer = SocketAddr::from(([10, 0, (token >> 8) as u8, token as u8], 9));
        let output = self.tick(vec![Input::Accepted { token, peer }]);
        let session = output.opened[0].1;
        let login = C2sLogin {
            username: name.into(),
            password: String::new(),
        };
        self.tick(vec![frame(session, &login)]);
        // The DB worker's answer (the guest check) is taken at the next tick.
        self.tick(vec![]);
        session
    }

    /// Every player logged in at once, each as the guest `names[i]`.
    pub fn join_all(&mut self, names: &[String]) -> Vec<SessionId> {
        let accepted: Vec<Input> = names
            .iter()
            .enumerate()
            .map(|(i, _)| {
                let token = self.next_token + i as u64;
                Input::Accepted {
                    token,
                    peer: SocketAddr::from((
                        [10, (token >> 16) as u8, (token >> 8) as u8, token as u8],
                        9,
                    )),
                }
            })
            .collect();
        self.next_token += names.len() as u64;
        let output = self.tick(accepted);
        let sessions: Vec<SessionId> = output.opened.iter().map(|(_, s)| *s).collect();
        let logins = sessions
            .iter()
            .zip(names)
            .map(|(&session, name)| {
                frame(
                    session,
                    &C2sLogin {
                        username: name.clone(),
                        password: String::new(),
                    },
                )
            })
            .collect();
        self.tick(logins);
        self.tick(vec![]);
        sessions
    }
}

/// A frame of `message` from `session`, as the network would hand it to the core.
pub fn frame<M: ClientToServer>(session: SessionId, message: &M) -> Input {
    Input::Received {
        session,
        packet: Packet {
            id: M::ID,
            payload: Bytes::from(prost::Message::encode_to_vec(message)),
        },
    }
}

/// What `session` is sent in `output`, decoded.
pub fn received(output: &Output, session: SessionId) -> Vec<Received> {
    output
        .batches
        .iter()
        .filter(|(s, _)| *s == session)
        .flat_map(|(_, frames)| frames.iter())
        .map(|frame| {
            let id = u16::from_le_bytes([frame[2], frame[3]]);
            let payload = frame.slice(4..);
            match S2cMessage::decode(id, payload.clone()) {
                Ok(message) => Received::Arena(message),
                Err(_) => Received::Engine(
                    EngineMessage::decode(id, payload)
                        .expect("a message of the engine or the arena"),
                ),
            }
        })
        .collect()
}

/// The arena's update to `session` in `output`, if it got one.
pub fn update(output: &Output, session: SessionId) -> Option<crate::arena::S2cUpdate> {
    received(output, session).into_iter().find_map(|m| match m {
        Received::Arena(S2cMessage::S2cUpdate(u)) => Some(u),
        _ => None,
    })
}
