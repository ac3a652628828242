//! The engine's own handlers, one file per feature: ping ([`session`]) and logins
//! ([`auth`]). Every game is served them; a game's own and its modules' come from
//! [`Game::register`].
//!
//! A handler is a plain function `fn(&mut World<G>, &Ctx, Msg) -> Result<(), HandlerError>`:
//! it changes the world, queues replies in `world.out`, and returns an error that the
//! dispatcher sends back as `S2C_Error`.

pub mod auth;
pub mod session;

use crate::dispatcher::{DispatchError, HandlerError, MessageDispatcher};
use crate::world::{Game, Hooks, Setup, World};

/// The dispatcher and hooks a world of `G` runs on: the engine's handlers (ping, logins),
/// then the game's and its modules' ([`Setup::build`]).
pub fn setup<G: Game>() -> Result<(MessageDispatcher<World<G>>, Hooks<G>), DispatchError> {
    let mut dispatcher = MessageDispatcher::new();
    register(&mut dispatcher)?;
    Setup::build(dispatcher)
}

/// Registers the engine's handlers, which every game is served.
pub fn register<G: Game>(
    dispatcher: &mut MessageDispatcher<World<G>>,
) -> Result<(), DispatchError> {
    session::register(dispatcher)?;
    auth::register(dispatcher)
}

/// Whether `name` is 1..=`max` characters of `[A-Za-z0-9_.-]`.
fn is_name(name: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Checks a username: 3-32 characters of `[A-Za-z0-9_.-]`.
pub fn check_username(name: &str) -> Result<(), HandlerError> {
    if is_name(name, 3, 32) {
        Ok(())
    } else {
        Err(HandlerError::bad_request(format!(
            "username must be 3-32 characters of [A-Za-z0-9_.-] (got {name:?})"
        )))
    }
}

/// Checks a room name: 1-64 characters of `[A-Za-z0-9_.-]`.
pub fn check_room_name(name: &str) -> Result<(), HandlerError> {
    if is_name(name, 1, 64) {
        Ok(())
    } else {
        Err(HandlerError::bad_request(format!(
            "room name must be 1-64 characters of [A-Za-z0-9_.-] (got {name:?})"
        )))
    }
}

/// Checks chat or whisper content: 1..=`max` bytes (UTF-8 is checked by the decoder).
pub fn check_content(content: &str, max: usize) -> Result<(), HandlerError> {
    if content.is_empty() {
        Err(HandlerError::bad_request("content is empty"))
    } else if content.len() > max {
        Err(HandlerError::bad_request(format!(
            "content is {} bytes, more than max_chat_len {max}",
            content.len()
        )))
    } else {
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod testkit {
    //! A world in memory, fed messages and read back, with no sockets.

    use std::net::SocketAddr;
    use std::time::Instant;

    use bytes::Bytes;
    use net::SessionId;
    use protocol::{ClientToServer, S2cMessage};

    use crate::db::{AuthSettings, Db, DbWorker};
    use crate::dispatcher::{Ctx, DispatchError, MessageDispatcher};
    use crate::modules::rooms::{Rooms, RoomsConfig, RoomsGame};
    use crate::storage::MemoryStorage;
    use crate::world::{Game, Setup, WorldConfig};

    /// A game with every module, as the chat world has them.
    #[derive(Debug)]
    pub struct Chat {
        pub rooms: Rooms,
    }

    impl Chat {
        pub fn new(config: RoomsConfig) -> Chat {
            Chat {
                rooms: Rooms::new(config),
            }
        }
    }

    impl Default for Chat {
        fn default() -> Self {
            Chat::new(RoomsConfig::default())
        }
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
        fn register(setup: &mut Setup<Chat>) -> Result<(), DispatchError> {
            setup.add(crate::modules::rooms::RoomsModule)?;
            setup.add(crate::modules::chat::ChatModule)
        }
    }

    /// The test game's world.
    pub type World = crate::world::World<Chat>;

    /// Cheap argon2 parameters: tests check behaviour, not hashing cost.
    pub fn test_auth_settings() -> AuthSettings {
        AuthSettings {
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            argon2_parallelism: 1,
            token_ttl_us: 3_600_000_000,
            history_lines: RoomsConfig::default().history_lines,
            session_log_us: None,
            ..AuthSettings::from(&config::ServerConfig::default())
        }
    }

    /// A DB worker over a private in-memory storage, running each job at once.
    pub fn inline_db() -> Db {
        let storage = MemoryStorage::new();
        Db::inline(DbWorker::new(Box::new(storage), test_auth_settings()).unwrap())
    }

    pub struct Harness {
        pub world: World,
        pub dispatcher: MessageDispatcher<World>,
        pub now: Instant,
        next: u64,
    }

    impl Harness {
        pub fn new() -> Self {
            Self::with(WorldConfig::default())
        }

        pub fn with(config: WorldConfig) -> Self {
            Self::over(config, RoomsConfig::default(), inline_db())
        }

        /// The chat world with rooms under `rooms`.
        pub fn with_rooms(rooms: RoomsConfig) -> Self {
            Self::over(WorldConfig::default(), rooms, inline_db())
        }

        /// The chat world under `config` with rooms under `rooms`, over `db`.
        pub fn over(config: WorldConfig, rooms: RoomsConfig, db: Db) -> Self {
            let now = Instant::now();
            let (dispatcher, hooks) = crate::handlers::setup().unwrap();
            Harness {
                world: World::new(config, Chat::new(rooms), hooks, db, now),
                dispatcher,
                now,
                next: 0,
            }
        }

        /// A world whose DB worker runs queued jobs only when told ([`Harness::run_db`]), so
        /// that tests see requests in flight at once.
        pub fn deferred(config: WorldConfig) -> Self {
            let storage = MemoryStorage::new();
            let db = Db::deferred(DbWorker::new(Box::new(storage), test_auth_settings()).unwrap());
            Self::over(config, RoomsConfig::default(), db)
        }

        /// Runs the jobs a deferred DB worker holds, and hands the answers to the world.
        pub fn run_db(&mut self) {
            self.world.db.run_queued();
            crate::logins::poll_db(&mut self.world, self.now);
        }

        /// A new connected session from 127.0.0.1; its welcome is taken out of the outbox.
        pub fn connect(&mut self) -> SessionId {
            self.connect_from([127, 0, 0, 1])
        }

        /// A new connected session from `ip`; its welcome is taken out of the outbox.
        pub fn connect_from(&mut self, ip: [u8; 4]) -> SessionId {
            self.next += 1;
            let id = SessionId(self.next);
            let peer = SocketAddr::from((ip, 9));
            self.world.connect(id, peer, self.now);
            self.take(id);
            id
        }

        /// A connected guest logged in as `name`, its replies taken.
        pub fn guest(&mut self, name: &str) -> SessionId {
            let id = self.connect();
            self.send(
                id,
                protocol::world::C2sLogin {
                    username: name.into(),
                    password: String::new(),
                },
            );
            let replies = self.take(id);
            assert!(
                matches!(replies.as_slice(), [S2cMessage::S2cAuthResult(_)]),
                "{replies:?}"
            );
            id
        }

        pub fn send<M: ClientToServer>(&mut self, from: SessionId, message: M) {
            let payload = Bytes::from(prost::Message::encode_to_vec(&message));
            self.send_raw(from, M::ID, payload);
        }

        pub fn send_raw(&mut self, from: SessionId, id: u16, payload: Bytes) {
            if self.world.admit(from, self.now) != crate::ratelimit::Admission::Admit {
                return;
            }
            let ctx = Ctx {
                session: from,
                now: self.now,
                now_us: protocol::now_us(),
            };
            self.dispatcher
                .dispatch_packet(&mut self.world, &ctx, id, payload);
            // The inline DB worker has answered already; the next tick would take the answers.
            crate::logins::poll_db(&mut self.world, self.now);
        }

        /// Decodes what `session` would receive this tick.
        pub fn take(&mut self, session: SessionId) -> Vec<S2cMessage> {
            self.world
                .out
                .take(session)
                .into_iter()
                .map(|frame| {
                    let id = u16::from_le_bytes([frame[2], frame[3]]);
                    assert_eq!(
                        u16::from_le_bytes([frame[0], frame[1]]) as usize,
                        frame.len()
                    );
                    S2cMessage::decode(id, frame.slice(4..)).unwrap()
                })
                .collect()
        }

        /// The single error `session` received, as (code, request_id).
        pub fn error(&mut self, session: SessionId) -> (protocol::ErrorCode, u32, String) {
            match self.take(session).as_slice() {
                [S2cMessage::S2cError(e)] => (e.code(), e.request_id, e.reason.clone()),
                other => panic!("expected one S2C_Error, got {other:?}"),
            }
        }
    }
}
