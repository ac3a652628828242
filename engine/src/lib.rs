//! The game-world engine: a fixed-tick loop that owns all world state, serving a game over
//! protobuf frames. A game brings its state, its messages (declared in its own `.proto` files,
//! compiled by `protocol-build`) and its handlers ([`Game`]), and opts into modules (rooms,
//! presence, history, chat, whispers); the engine keeps sessions, logins, rate limits, timers
//! and the database, and runs it with [`run_game`].
//!
//! # Layout
//!
//! - [`core`]: [`Core`](core::Core), the sans-IO server: `tick(now, inputs)` decides
//!   admission, decoding, reply order, credits, rate limits, closes; no sockets, no clock.
//! - [`server`]: the tokio driver ([`run_game`]): sockets and queues in and out of the core, once
//!   per tick.
//! - `ports`: the game port and the TLS port, how each sets its connections up (frames,
//!   WebSocket, the game's page; TLS), and the certificate's reload.
//! - [`cli`]: the command line of every game's server binary.
//! - [`admin`]: the admin listener: `/metrics`, `/healthz`, `/readyz`, `/api/state`, the page.
//! - [`metrics`]: the engine's metrics, and the registry a game adds its own to.
//! - [`dispatcher`]: [`MessageDispatcher`], message id to handler, keyed by each message
//!   type's compile-time id; [`Ctx`] and [`HandlerError`].
//! - [`world`]: [`World`], every session and login, and the game's state; synchronous, time
//!   passed in; [`Game`], what a game supplies: its state and its sessions' lifecycle; and
//!   [`Setup`], where a game registers its handlers and adds [`Module`]s, each with its own
//!   hooks, timers, DB answers, cluster events, metrics and admin view.
//! - [`cluster`]: this node's part of a cluster (its batches, the wire format, the link to
//!   NATS); [`nodes`]: what the other nodes and the buckets tell the world.
//! - [`logins`]: logins as they complete (the DB worker's answers, delayed logins).
//! - [`handlers`]: the engine's own handlers (ping, logins), one file per feature.
//! - [`modules`]: rooms with presence and history, room chat and whispers: modules a game
//!   adds.
//! - [`db`]: the DB worker (its lanes, password hashing, tokens); [`storage`]: the one
//!   interface to the database, with its SQLite implementation.
//! - [`ratelimit`]: the per-session request rate limit.
//! - [`throttle`]: failed-login and registration limits, with reservations and delays.
//! - [`hash`]: the hash maps of world state, iterated in the same order given the same
//!   operations (so the same inputs give the same outputs).
//! - [`outbox`]: the frames of one tick, encoded once into a shared arena.
//! - [`timers`]: one-shot and repeating timers over the world.
//!
//! A server takes a bound listener and a shutdown future, never an address, so that tests
//! bind `127.0.0.1:0` and stop it when they like:
//!
//! ```no_run
//! # struct MyGame;
//! # impl engine::Game for MyGame {
//! #     const NAME: &'static str = "my-game";
//! #     fn register(_: &mut engine::Setup<Self>)
//! #         -> Result<(), engine::DispatchError> { Ok(()) }
//! # }
//! # async fn example() -> anyhow::Result<()> {
//! use engine::Game;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let mut config = config::ServerConfig::default();
//! config.apply_game_defaults(MyGame::NAME, MyGame::STORAGE); // the database: my-game.db
//! let storage = engine::server::open_storage(&config)?;
//! let shutdown = async { let _ = tokio::signal::ctrl_c().await; };
//! engine::run_game(listener, config, MyGame, storage, shutdown).await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod admin;
mod assemble;
pub mod cli;
pub mod cluster;
pub mod codec;
pub mod core;
pub mod db;
pub mod dispatcher;
pub mod error;
pub mod handlers;
pub mod hash;
pub mod logins;
pub mod metrics;
pub mod modules;
pub mod nodes;
pub mod outbox;
mod ports;
pub mod ratelimit;
pub mod record;
pub mod resume;
pub mod server;
pub mod storage;
pub mod testing;
pub mod throttle;
pub mod timers;
pub mod world;

pub use net;
pub use protocol;
pub use serde_json;

pub use dispatcher::{Ctx, DispatchError, HandlerError, MessageDispatcher};
pub use error::ServerError;
pub use server::run_game;
pub use world::{Game, Module, Setup, Stats, World, WorldConfig};
