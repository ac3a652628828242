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
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use net::SessionId;
    use protocol::{ClientToServer, S2cMessage};

    use crate::db::{AuthSettings, DbJob};
    use crate::dispatcher::DispatchError;
    use crate::modules::rooms::{Rooms, RoomsConfig, RoomsGame};
    use crate::testing::Sim;
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
            session_log_us: None,
            ..AuthSettings::from(&config::ServerConfig::default())
        }
    }

    /// The chat world in the test kit's [`Sim`], with time held still (only
    /// [`Harness::advance`] moves it), each request carried through the core until it is
    /// answered, and every message a session is sent decoded: for the handlers' tests, which
    /// check one request's answers at a time.
    pub struct Harness {
        pub sim: Sim<Chat>,
    }

    impl Harness {
        pub fn new() -> Self {
            Self::with(WorldConfig::default())
        }

        pub fn with(config: WorldConfig) -> Self {
            Self::over(config, RoomsConfig::default(), false)
        }

        /// The chat world with rooms under `rooms`.
        pub fn with_rooms(rooms: RoomsConfig) -> Self {
            Self::over(WorldConfig::default(), rooms, false)
        }

        /// The chat world under `config` with rooms under `rooms`; `holding`: its DB jobs
        /// wait for [`Harness::run_db`].
        pub fn over(config: WorldConfig, rooms: RoomsConfig, holding: bool) -> Self {
            let queue = config::ServerConfig::default().storage.queue;
            let auth = test_auth_settings();
            let mut sim = Sim::assemble(config, auth, queue, Chat::new(rooms), holding);
            sim.set_tick(Duration::ZERO);
            Harness { sim }
        }

        /// A world whose DB jobs run only when told ([`Harness::run_db`]), so that tests see
        /// requests in flight at once.
        pub fn deferred(config: WorldConfig) -> Self {
            Self::over(config, RoomsConfig::default(), true)
        }

        /// The world.
        pub fn world(&self) -> &World {
            self.sim.world()
        }

        /// The world, to change between requests.
        pub fn world_mut(&mut self) -> &mut World {
            self.sim.world_mut()
        }

        /// The time now.
        pub fn now(&self) -> Instant {
            self.sim.now()
        }

        /// The time moves on by `by`, and the core ticks once at the new time.
        pub fn advance(&mut self, by: Duration) {
            self.sim.skip(by);
            self.settle();
        }

        /// The jobs the held database has (see [`Harness::deferred`]).
        pub fn held_db(&self) -> Vec<&DbJob> {
            self.sim.held_db().collect()
        }

        /// Runs the jobs a held database has, and the core takes the answers.
        pub fn run_db(&mut self) {
            self.sim.run_db();
            self.settle();
        }

        /// Runs the jobs a held database has, as [`Harness::run_db`], and returns the session
        /// log entries they wrote, in order.
        pub fn run_db_logging(&mut self) -> Vec<crate::storage::SessionLogEntry> {
            let mut entries = Vec::new();
            for job in self.sim.take_held_db() {
                if let DbJob::RecordSessions(written) = &job {
                    entries.extend(written.iter().cloned());
                }
                self.sim.run_job(job);
            }
            self.settle();
            entries
        }

        /// Ticks until the core has taken everything: the answers of the DB jobs a tick gave
        /// out, the ends of the connections it closed.
        pub fn settle(&mut self) {
            self.sim.step();
            for _ in 0..8 {
                if !self.sim.has_inputs() {
                    return;
                }
                self.sim.step();
            }
        }

        /// A new connected session from 127.0.0.1; its welcome is taken out of the inbox.
        pub fn connect(&mut self) -> SessionId {
            self.connect_from([127, 0, 0, 1])
        }

        /// A new connected session from `ip`; its welcome is taken out of the inbox.
        pub fn connect_from(&mut self, ip: [u8; 4]) -> SessionId {
            let id = self
                .sim
                .try_connect_from(SocketAddr::from((ip, 9)))
                .expect("the world took the connection");
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
                    ..Default::default()
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

        /// `from` sends a frame of `id` with `payload`; the core takes it, and whatever it
        /// leads to, before this returns.
        pub fn send_raw(&mut self, from: SessionId, id: u16, payload: Bytes) {
            self.sim.send_frame(from, id, payload);
            self.settle();
        }

        /// `session`'s connection ends; the core takes it before this returns.
        pub fn disconnect(&mut self, session: SessionId) {
            self.sim.disconnect(session);
            self.settle();
        }

        /// Decodes what `session` was sent since it was last taken.
        pub fn take(&mut self, session: SessionId) -> Vec<S2cMessage> {
            self.sim
                .take_all(session)
                .into_iter()
                .map(|(id, payload)| S2cMessage::decode(id, payload).unwrap())
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
