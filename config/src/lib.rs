//! Typed TOML configuration for `world-server` and `dummy-client`, with embedded defaults,
//! strict validation and one-line error messages.
//!
//! Each program has one configuration type, [`ServerConfig`] and [`ClientConfig`], with one
//! struct per TOML section. A missing file key takes its default; an unknown key, a value of
//! the wrong type or a value outside its range is refused, and the message names the file,
//! the full dotted key, the rule and the value:
//!
//! ```text
//! invalid config "world-server.toml": server.tick_ms must be 1..=1000 (got 0)
//! invalid config "world-server.toml": unknown key "server.tick_msx" (did you mean "server.tick_ms"?)
//! ```
//!
//! The example files `config/world-server.toml` and `config/dummy-client.toml` list every key
//! with its default and an explanation; they are embedded in the crate and are what
//! `load(None)` parses, and a test checks that they parse to exactly `Default::default()`.
//!
//! ```
//! let config = config::ServerConfig::load(None).unwrap();
//! assert_eq!(config.server.tick_ms, 50);
//! ```
//!
//! # Layout
//!
//! - [`server`]: [`ServerConfig`] and its sections `[server]`, `[net]`, `[world]`.
//! - [`addr`]: [`AddrRange`], an address or CIDR range in a config list.
//! - [`client`]: [`ClientConfig`] and its sections `[client]`, `[bots]`.
//! - [`log`]: [`LogConfig`] (the `[log]` section of both) and [`parse_log_level`].
//! - [`logging`]: [`logging::init`] installs spdlog's default logger from a [`LogConfig`].
//! - [`error`]: [`ConfigError`], and the range and length rules used by validation.
//! - `load` (private): TOML text to typed config, with key paths and lines in errors.

#![warn(missing_docs)]

pub mod addr;
pub mod client;
pub mod error;
mod load;
pub mod log;
pub mod logging;
pub mod server;

pub use addr::AddrRange;
pub use client::{BotsSection, ClientConfig, ClientSection, CLIENT_EXAMPLE};
pub use error::{ConfigError, Rules};
pub use log::{parse_log_level, LogConfig, LOG_LEVELS};
pub use server::{
    redact_password, AdminSection, AuthSection, ClusterSection, GameConfig, GameSection,
    LimitsSection, NetSection, NoSettings, ServerConfig, ServerSection, StorageSection,
    WorldSection, SERVER_EXAMPLE,
};
