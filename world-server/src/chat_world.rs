//! The chat world: the game `world-server` runs, built on the engine through the same API an
//! outside game uses. It opts into every module: rooms with presence and history, room chat
//! and whispers.

use net::{DisconnectReason, SessionId};

use crate::db::DbEvent;
use crate::dispatcher::{DispatchError, MessageDispatcher};
use crate::game::Game;
use crate::modules::chat;
use crate::modules::rooms::{self, Rooms, RoomsConfig, RoomsGame};
use crate::world::{Login, World};

/// The chat world's state: its rooms.
#[derive(Debug)]
pub struct ChatWorld {
    /// Rooms, their members and their history.
    pub rooms: Rooms,
}

impl ChatWorld {
    /// A chat world with no rooms yet.
    pub fn new(config: RoomsConfig) -> ChatWorld {
        ChatWorld {
            rooms: Rooms::new(config),
        }
    }
}

impl From<&config::ServerConfig> for ChatWorld {
    fn from(config: &config::ServerConfig) -> Self {
        ChatWorld::new(RoomsConfig::from(config))
    }
}

impl RoomsGame for ChatWorld {
    fn rooms(&self) -> &Rooms {
        &self.rooms
    }
    fn rooms_mut(&mut self) -> &mut Rooms {
        &mut self.rooms
    }
}

impl Game for ChatWorld {
    fn register(d: &mut MessageDispatcher<World<Self>>) -> Result<(), DispatchError> {
        rooms::register(d)?;
        chat::register(d)
    }

    fn logged_out(world: &mut World<Self>, session: SessionId, login: &Login) {
        rooms::logged_out(world, session, login);
    }

    fn disconnected(world: &mut World<Self>, session: SessionId, _: &DisconnectReason) {
        rooms::disconnected(world, session);
    }

    fn is_waiting(world: &World<Self>, session: SessionId) -> bool {
        rooms::is_waiting(world, session)
    }

    fn db_answer(world: &mut World<Self>, answer: DbEvent, _: std::time::Instant) {
        rooms::db_answer(world, answer);
    }

    fn db_died(world: &mut World<Self>) {
        rooms::db_died(world);
    }

    fn flush_writes(world: &mut World<Self>) {
        rooms::flush_writes(world);
    }

    fn has_pending_writes(world: &World<Self>) -> bool {
        rooms::has_pending_writes(world)
    }

    fn stats(world: &World<Self>) -> String {
        format!(", {} rooms", world.game.rooms.rooms.len())
    }
}
