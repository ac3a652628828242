//! `world-client`: a terminal chat client of the world server, for people.
//!
//! It connects over TCP, TLS or WebSocket (the `net` crate), logs in as a guest, with a
//! password or with the token saved at the last login, and shows one tab per room with its
//! chat, history, presence and members, whispers, and every error in words. A lost
//! connection is made again with backoff and the session taken back where it was, with
//! nothing missed either way (or, when the server no longer has it, the login resumed and
//! the rooms joined again).
//!
//! # Layout
//!
//! - [`app`]: the state and every rule, pure: keys, server messages, connection events and
//!   time in; requests and other [`app::Action`]s out. No terminal, no socket, no clock.
//! - [`command`]: the input line parsed into a [`command::Command`]; the `/help` list.
//! - [`words`]: error codes and closed connections as sentences.
//! - [`ui`]: draws an `&App` to a ratatui frame.
//! - [`conn`]: the network: one `net::Session` at a time, its events decoded.
//! - [`tokens`]: the tokens file, per server URL, owner-only.
//! - [`url`]: the server URL (`tcp://`, `tls://`, `ws://`, `wss://`).
//! - [`cli`]: the command line, checked into [`cli::Settings`].
//! - [`client`]: the running client: terminal, keys, network and clock wired to the app.
#![warn(missing_docs)]

pub mod app;
pub mod cli;
pub mod client;
pub mod command;
pub mod conn;
pub mod tokens;
pub mod ui;
pub mod url;
pub mod words;
