//! The chat world: the game `world-server` runs, built on the engine through the same public
//! API an outside game uses. It opts into every module: rooms with presence and history, room
//! chat and whispers.

use engine::dispatcher::DispatchError;
use engine::modules::chat::ChatModule;
use engine::modules::rooms::{Rooms, RoomsConfig, RoomsGame, RoomsModule};
use engine::world::Setup;
use engine::Game;

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
    const NAME: &'static str = "world";
    const STORAGE: &'static str = "sqlite";

    fn register(setup: &mut Setup<Self>) -> Result<(), DispatchError> {
        setup.add(RoomsModule)?;
        setup.add(ChatModule)
    }

    /// The browser client: the page at `/`, its script at `/app.js`.
    fn web_files() -> Vec<engine::net::WebFile> {
        vec![
            engine::net::WebFile {
                path: "/".into(),
                content_type: "text/html; charset=utf-8".into(),
                body: crate::web::INDEX_HTML.into(),
            },
            engine::net::WebFile {
                path: "/app.js".into(),
                content_type: "text/javascript; charset=utf-8".into(),
                body: crate::web::app_js().into(),
            },
        ]
    }
}
