//! The chat world server: the engine ([`engine`]), the chat world ([`ChatWorld`]: rooms,
//! presence, history, chat, whispers) and SQLite, wired together.
//!
//! A server takes a bound listener and a shutdown future, never an address, so that tests
//! bind `127.0.0.1:0` and stop it when they like:
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let config = config::ServerConfig::default();
//! world_server::run(listener, config, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! [`web`] holds the browser client: the page and its script, with the codec generated from
//! `proto/`.
//!
//! Everything of the engine is re-exported, so that `world_server::storage` is
//! `engine::storage`.
#![warn(missing_docs)]

use std::future::Future;

use config::ServerConfig;
use tokio::net::TcpListener;

pub mod chat_world;
pub mod web;

pub use chat_world::ChatWorld;
pub use engine::*;

/// Runs the chat world on `listener` with the storage of `config` (see
/// [`engine::server::open_storage`]),
/// until `shutdown` completes; see [`engine::run_game`].
pub async fn run(
    listener: TcpListener,
    mut config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<Stats, ServerError> {
    config.apply_game_defaults(
        <ChatWorld as engine::Game>::NAME,
        <ChatWorld as engine::Game>::STORAGE,
    );
    let storage = engine::server::open_storage(&config)?;
    let game = ChatWorld::from(&config);
    engine::run_game(listener, config, game, storage, shutdown).await
}
