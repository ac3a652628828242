//! Persistence behind one interface: accounts, tokens, the session log, and what modules
//! keep: records by key ([`Storage::module_get`]) and logs, each a bounded list of entries by
//! key ([`Storage::log_append`]; the rooms module keeps each room's history in one).
//!
//! [`Storage`] is what the DB worker calls. [`SqliteStorage`] is the embedded default, one
//! file for one server (the engine's `sqlite` feature); `PostgresStorage` is one database
//! shared by several servers, nodes (its `postgres` feature); [`MemoryStorage`] keeps it all
//! in memory until the process stops, for a game with nothing to keep.
//! The handlers never see which one runs.

#[cfg(test)]
mod conformance;
mod memory;
#[cfg(feature = "postgres")]
mod pg;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::path::PathBuf;

pub use memory::MemoryStorage;
#[cfg(feature = "postgres")]
pub use pg::PostgresStorage;
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteStorage, StartupCheck};

/// The key usernames are unique by: the name folded to lowercase (ASCII; usernames are).
fn username_key(username: &str) -> String {
    username.to_ascii_lowercase()
}

/// An account as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The account id, from 1.
    pub id: u64,
    /// The username as registered.
    pub username: String,
    /// The argon2id hash in PHC string form.
    pub password_hash: String,
}

/// One entry of a module's log ([`Storage::log_append`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// The log it belongs to (a room, for the rooms module).
    pub key: String,
    /// When it was written, in microseconds since the Unix epoch.
    pub at_us: u64,
    /// What the module keeps, as it gave it.
    pub data: bytes::Bytes,
}

/// One session, from connect to disconnect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session id of this server run.
    pub session_id: u64,
    /// The peer's address.
    pub peer: String,
    /// The username it was last logged in as, if any.
    pub username: Option<String>,
    /// When it connected.
    pub connected_at_us: u64,
    /// When it disconnected.
    pub disconnected_at_us: u64,
    /// Why it disconnected.
    pub reason: String,
}

/// What the session log is told: a session opened, logged in, or ended. Written in order, in
/// batches; a session open when the server stops without closing it (a crash) is closed at the
/// next start by [`Storage::recover`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionLogEntry {
    /// A session connected.
    Opened {
        /// The session id of this server run.
        session_id: u64,
        /// The peer's address.
        peer: String,
        /// When it connected.
        connected_at_us: u64,
    },
    /// A session logged in.
    LoggedIn {
        /// The session id of this server run.
        session_id: u64,
        /// The username.
        username: String,
    },
    /// A session ended.
    Closed(SessionRecord),
}

/// What [`Storage::recover`] found left over from the last run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Sessions that were open when the server last stopped, now closed in the session log.
    pub sessions: usize,
    /// Logs that were in use (rooms, for the rooms module), now counted as idle since this
    /// start.
    pub rooms: usize,
}

/// The reason recorded for sessions that were open when the server stopped without closing
/// them.
pub const UNCLEAN_STOP: &str = "server stopped without closing the session";

/// How a module's logs are kept ([`Storage::log_append`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogLimits {
    /// Entries kept per log: the newest.
    pub entries: usize,
    /// Logs of the module at most; past it the logs idle the longest are deleted.
    pub max_logs: usize,
}

/// A storage failure. The request that met it is answered INTERNAL.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database failed; the driver's own description. (Storage errors carry no driver
    /// types, so that another database can implement [`Storage`] without touching its users.)
    #[error("database: {0}")]
    Database(String),
    /// The database cannot be reached now (its server restarted, the network failed); the
    /// storage connects again by itself, and the request may be retried.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database file was written by a newer server.
    #[error("database schema version {found} is newer than this server's {supported}")]
    SchemaTooNew {
        /// The version in the file.
        found: i64,
        /// The newest version this server knows.
        supported: i64,
    },
    /// The directory the database file would be in does not exist.
    #[error("parent directory {0:?} does not exist")]
    ParentMissing(PathBuf),
    /// What the database file would be in is not a directory.
    #[error("{0:?} is not a directory")]
    ParentNotDirectory(PathBuf),
    /// The path is a directory.
    #[error("is a directory")]
    IsDirectory,
    /// The path is something other than a regular file (a device, a socket, a pipe).
    #[error("is not a regular file")]
    NotAFile,
    /// The database file did not exist and could not be created.
    #[error("cannot create the database file: {0}")]
    Create(std::io::Error),
    /// The directory exists but refused a new file with "not found" (as `/proc` does).
    #[error("cannot create the database file: {dir:?} does not allow new files ({source})")]
    CreateRefused {
        /// The directory.
        dir: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The database file exists and could not be opened for reading and writing.
    #[error("cannot open the database file: {0}")]
    OpenFile(std::io::Error),
    /// The file is not an SQLite database (or its header is damaged).
    #[error("is not an SQLite database")]
    NotADatabase,
    /// The lock file beside the database could not be created or locked.
    #[error("cannot lock {path:?}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// Another server holds the lock of this database.
    #[error(
        "in use by another server ({}); stop it or give this one another storage.path",
        holder(*.pid)
    )]
    InUse {
        /// The process id the server holding the lock wrote in it, if it could be read.
        pid: Option<u32>,
    },
    /// The database server could not be reached or refused the connection.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The database failed its integrity check.
    #[error("the database is corrupt ({0}); restore it from a backup")]
    Corrupt(String),
}

impl StorageError {
    /// Whether this is about where the database was to be opened (a directory, a missing
    /// directory, no permission, a read-only file system, not a database file): a mistake in
    /// the configuration, rather than in the data or another process.
    pub fn is_path_error(&self) -> bool {
        matches!(
            self,
            StorageError::ParentMissing(_)
                | StorageError::ParentNotDirectory(_)
                | StorageError::IsDirectory
                | StorageError::NotAFile
                | StorageError::Create(_)
                | StorageError::CreateRefused { .. }
                | StorageError::OpenFile(_)
                | StorageError::NotADatabase
                | StorageError::Lock { .. }
        )
    }
}

fn holder(pid: Option<u32>) -> String {
    pid.map_or_else(|| "pid unknown".to_string(), |pid| format!("pid {pid}"))
}

/// What the DB worker needs from a database.
pub trait Storage: Send {
    /// The account whose username equals `username` ignoring ASCII case.
    fn account(&mut self, username: &str) -> Result<Option<Account>, StorageError>;
    /// Creates an account; `None` when the username (ignoring case) is taken.
    fn create_account(
        &mut self,
        username: &str,
        password_hash: &str,
        now_us: u64,
    ) -> Result<Option<Account>, StorageError>;
    /// Stores a token by its hash, valid until `expires_at_us`.
    fn insert_token(
        &mut self,
        token_hash: &[u8],
        user_id: u64,
        now_us: u64,
        expires_at_us: u64,
    ) -> Result<(), StorageError>;
    /// The account a token belongs to, if the token exists, is not revoked, and has not
    /// expired at `now_us`.
    fn token_account(
        &mut self,
        token_hash: &[u8],
        now_us: u64,
    ) -> Result<Option<Account>, StorageError>;
    /// Deletes tokens that expired or were revoked before `now_us`; returns how many.
    fn prune_tokens(&mut self, now_us: u64) -> Result<usize, StorageError>;
    /// Revokes a token; false when there was no such live token.
    fn revoke_token(&mut self, token_hash: &[u8], now_us: u64) -> Result<bool, StorageError>;
    /// Appends `entries` to `module`'s logs (each to the log of its key) in one transaction,
    /// keeping the newest `limits.entries` of each log, and marks their logs in use. When a log
    /// new to the module takes its number of logs past `limits.max_logs`, the logs idle the
    /// longest are deleted (never one in use); returns how many logs were deleted so.
    fn log_append(
        &mut self,
        module: &str,
        entries: &[LogEntry],
        limits: LogLimits,
    ) -> Result<usize, StorageError>;
    /// Marks `module`'s logs of `keys` in use: they are neither pruned nor deleted for room
    /// while they are (a room with members, for the rooms module).
    fn logs_in_use(&mut self, module: &str, keys: &[String]) -> Result<(), StorageError>;
    /// Marks `module`'s logs of `keys` idle since `now_us` (on PostgreSQL, once no node has
    /// them in use): [`Storage::prune_logs`] deletes those idle too long.
    fn logs_idle(&mut self, module: &str, keys: &[String], now_us: u64)
        -> Result<(), StorageError>;
    /// Deletes `module`'s logs idle since before `before_us`; returns how many.
    fn prune_logs(&mut self, module: &str, before_us: u64) -> Result<usize, StorageError>;
    /// The newest `limit` entries of `module`'s log of `key`, oldest first.
    fn log_tail(
        &mut self,
        module: &str,
        key: &str,
        limit: usize,
    ) -> Result<Vec<LogEntry>, StorageError>;
    /// Deletes session records of sessions that ended before `before_us`; returns how many.
    fn prune_sessions(&mut self, before_us: u64) -> Result<usize, StorageError>;
    /// Writes session log entries in one transaction, in order, then deletes the oldest
    /// records beyond `max_rows`.
    fn record_sessions(
        &mut self,
        entries: &[SessionLogEntry],
        max_rows: u64,
    ) -> Result<(), StorageError>;
    /// What `module` stored under `key` (see [`crate::db::ModuleJob`]): a module's own
    /// records, kept apart from every other module's, in the engine's `module_data` table.
    fn module_get(&mut self, module: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Stores `value` under `key` for `module`, replacing what was there.
    fn module_put(&mut self, module: &str, key: &str, value: &[u8]) -> Result<(), StorageError>;
    /// Deletes what `module` stored under `key`; whether there was something.
    fn module_delete(&mut self, module: &str, key: &str) -> Result<bool, StorageError>;
    /// Called once when a server starts on this storage, at `now_us`: sessions the last run
    /// left open (it stopped without closing them) are closed with the reason
    /// [`UNCLEAN_STOP`], and rooms it left in use count as empty from now.
    fn recover(&mut self, now_us: u64) -> Result<Recovered, StorageError>;
    /// Whether the storage answers now: called while it is unavailable, to notice its return
    /// without waiting for a request. A storage that cannot go away keeps this default.
    fn check(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
}

/// The chat lines of `room` in `entries` (as a log of the rooms module holds them): content,
/// the sender's time, and the entry's time (the server's, when it was said).
#[cfg(all(test, any(feature = "sqlite", feature = "postgres")))]
fn chat_lines(entries: Vec<LogEntry>, room: &str) -> Vec<(String, u64, u64)> {
    entries
        .into_iter()
        .map(|e| {
            let payload = &e.data[protocol::HEADER_LEN..];
            let chat = <protocol::world::S2cChat as prost::Message>::decode(payload).unwrap();
            assert_eq!((chat.room.as_str(), chat.from.as_str()), (room, "ann"));
            assert_eq!(e.at_us, chat.server_time_us);
            (chat.content, chat.sent_at_us, e.at_us)
        })
        .collect()
}

/// The module whose logs hold the lines of the history tables of schemas before logs.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
const LEGACY_HISTORY_MODULE: &str = "rooms";

/// A chat line of the history tables of schemas before logs, as the rooms module keeps it in
/// its log: the encoded S2C_Chat frame. For the migrations that move those lines; `None` for
/// one too long for a frame (never written so).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn legacy_history_frame(
    room: String,
    from: String,
    content: String,
    sent_at_us: u64,
    server_time_us: u64,
) -> Option<Vec<u8>> {
    let chat = protocol::world::S2cChat {
        room,
        from,
        content,
        sent_at_us,
        server_time_us,
        history: false,
    };
    protocol::frame(&chat).ok().map(|frame| frame.to_vec())
}
