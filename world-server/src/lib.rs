//! The world server: a fixed-tick loop that owns all world state and serves rooms, chat,
//! whispers and presence over protobuf frames.
//!
//! # Layout
//!
//! - [`core`]: [`Core`](core::Core), the sans-IO server: `tick(now, inputs)` decides
//!   admission, decoding, reply order, credits, rate limits, closes; no sockets, no clock.
//! - [`server`]: the tokio driver ([`run`]): sockets and queues in and out of the core, once
//!   per tick.
//! - [`dispatcher`]: [`MessageDispatcher`], message id to handler, keyed by each message
//!   type's compile-time id; [`Ctx`] and [`HandlerError`].
//! - [`world`]: [`World`], every session, login and room; synchronous, time passed in.
//! - [`handlers`]: one file per feature, each with a `register` function.
//! - [`ratelimit`]: the per-session request rate limit.
//! - [`throttle`]: failed-login and registration limits, with reservations and delays.
//! - [`outbox`]: the frames of one tick, encoded once into a shared arena.
//! - [`timers`]: one-shot and repeating timers over the world.
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
#![warn(missing_docs)]

pub mod chat_world;
pub mod core;
pub mod db;
pub mod dispatcher;
pub mod game;
pub mod handlers;
pub mod modules;
pub mod outbox;
pub mod ratelimit;
pub mod server;
pub mod storage;
pub mod throttle;
pub mod timers;
pub mod world;

pub use chat_world::ChatWorld;
pub use dispatcher::{Ctx, DispatchError, HandlerError, MessageDispatcher};
pub use game::Game;
pub use server::{run, run_game, ServerError};
pub use world::{Stats, World, WorldConfig};
