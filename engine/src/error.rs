//! [`ServerError`]: why a server could not start or run, each with the exit code it means.

use crate::dispatcher::DispatchError;
use crate::storage::StorageError;

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Two handlers for one message type.
    #[error("cannot register handlers: {0}")]
    Dispatch(#[from] DispatchError),
    /// The database could not be opened or migrated. Named by its config key, like a bad
    /// config value: `storage.path "world.db": the database is corrupt (...)`, or
    /// `storage.postgres_url "postgres://world@db/world": cannot connect: ...`.
    #[error("{key} {value:?}: {source}")]
    Storage {
        /// `storage.path` or `storage.postgres_url`.
        key: &'static str,
        /// Its value (a URL without its password).
        value: String,
        /// What failed.
        source: StorageError,
    },
    /// The configuration asks for what this build left out: `storage.backend "sqlite": this
    /// build has no SQLite (the engine's `sqlite` feature)`.
    #[error(
        "{key} {value:?}: this build has no {feature} support (the engine's `{feature}` feature)"
    )]
    NotBuilt {
        /// `storage.backend` or `cluster.nats_url`.
        key: &'static str,
        /// Its value.
        value: String,
        /// The engine feature that would build it.
        feature: &'static str,
    },
    /// The DB worker could not start.
    #[error("cannot start the DB worker: {0}")]
    Worker(String),
    /// NATS could not be reached: `cluster.nats_url "nats://127.0.0.1:4222": cannot connect: ...`.
    #[error("cluster.nats_url {url:?}: cannot connect: {reason}")]
    Cluster {
        /// The URL, without a password.
        url: String,
        /// What the client said.
        reason: String,
    },
    /// The TLS certificate or key cannot serve: `tls.cert "cert.pem": cannot read it: ...`.
    #[error("{key} {path:?}: {reason}")]
    Certificate {
        /// `tls.cert` or `tls.key`.
        key: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `--record DIR` cannot record: `--record: /tmp/x holds a recording already: ...`.
    #[error("--record: {reason}")]
    Record {
        /// Why.
        reason: String,
    },
    /// A port could not be bound.
    #[error("cannot listen on {key} {addr}: {source}{hint}")]
    Listen {
        /// `server.listen`, `web.listen`, `tls.listen` or `admin.listen`.
        key: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
        /// What to do about it, when the address is in use.
        hint: &'static str,
    },
}

impl ServerError {
    /// The exit code for this error: 2 when the configuration is at fault (a `storage.path`
    /// that cannot be opened as a database file, a TLS certificate that cannot serve), 1
    /// otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            ServerError::Storage { source, .. } if source.is_path_error() => 2,
            ServerError::Certificate { .. } => 2,
            ServerError::NotBuilt { .. } => 2,
            ServerError::Record { .. } => 2,
            _ => 1,
        }
    }
}
