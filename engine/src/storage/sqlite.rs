//! SQLite storage: one file, WAL mode, versioned migrations applied at start-up.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use super::{
    username_key, Account, LogEntry, LogLimits, Recovered, SessionLogEntry, SessionRecord, Storage,
    StorageError, UNCLEAN_STOP,
};

/// Schema migrations, in order; migration `i` brings the schema to version `i + 1`.
/// Applied ones are never edited: a change is a new entry.
const MIGRATIONS: &[&str] = &[
    // 1: accounts and tokens.
    "CREATE TABLE accounts (
        id            INTEGER PRIMARY KEY,
        username      TEXT NOT NULL,
        username_key  TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        created_at_us INTEGER NOT NULL
    );
    CREATE TABLE tokens (
        token_hash    BLOB PRIMARY KEY,
        account_id    INTEGER NOT NULL REFERENCES accounts(id),
        created_at_us INTEGER NOT NULL,
        expires_at_us INTEGER NOT NULL,
        revoked_at_us INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX tokens_by_account ON tokens(account_id);",
    // 2: room history and the session log.
    "CREATE TABLE history (
        id             INTEGER PRIMARY KEY,
        room           TEXT NOT NULL,
        sender         TEXT NOT NULL,
        content        TEXT NOT NULL,
        sent_at_us     INTEGER NOT NULL,
        server_time_us INTEGER NOT NULL
    );
    CREATE INDEX history_by_room ON history(room, id);
    CREATE TABLE sessions (
        id                 INTEGER PRIMARY KEY,
        session_id         INTEGER NOT NULL,
        peer               TEXT NOT NULL,
        username           TEXT,
        connected_at_us    INTEGER NOT NULL,
        disconnected_at_us INTEGER NOT NULL,
        reason             TEXT NOT NULL
    );",
    // 3: which rooms have history and since when they are empty (NULL: in use); sessions
    // open now, closed at the next start if the server stops without closing them.
    "CREATE TABLE history_rooms (
        room          TEXT PRIMARY KEY,
        emptied_at_us INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX history_rooms_by_emptied ON history_rooms(emptied_at_us);
    INSERT INTO history_rooms (room, emptied_at_us)
        SELECT room, max(server_time_us) FROM history GROUP BY room;
    CREATE TABLE open_sessions (
        session_id      INTEGER PRIMARY KEY,
        peer            TEXT NOT NULL,
        username        TEXT,
        connected_at_us INTEGER NOT NULL
    );",
    // 4: the modules' own records, by module and key.
    "CREATE TABLE module_data (
        module TEXT NOT NULL,
        key    TEXT NOT NULL,
        value  BLOB NOT NULL,
        PRIMARY KEY (module, key)
    ) WITHOUT ROWID;",
    // 5: the modules' logs, by module and key, and since when each is idle (NULL: in use).
    // The room history of the tables before is moved into the rooms module's logs by
    // `move_history` in the same transaction, and those tables dropped.
    "CREATE TABLE logs (
        id     INTEGER PRIMARY KEY,
        module TEXT NOT NULL,
        key    TEXT NOT NULL,
        at_us  INTEGER NOT NULL,
        data   BLOB NOT NULL
    );
    CREATE INDEX logs_by_key ON logs(module, key, id);
    CREATE TABLE log_keys (
        module        TEXT NOT NULL,
        key           TEXT NOT NULL,
        idle_since_us INTEGER,
        PRIMARY KEY (module, key)
    ) WITHOUT ROWID;
    CREATE INDEX log_keys_by_idle ON log_keys(module, idle_since_us);",
];

/// The migration (its index in [`MIGRATIONS`]) after which [`move_history`] runs.
const LOGS_MIGRATION: usize = 4;

/// Moves the room history of schemas before logs into the rooms module's logs (each line as
/// its encoded S2C_Chat frame), and drops its tables.
fn move_history(tx: &rusqlite::Transaction<'_>) -> Result<(), StorageError> {
    let module = super::LEGACY_HISTORY_MODULE;
    tx.execute(
        "INSERT INTO log_keys (module, key, idle_since_us)
         SELECT ?1, room, emptied_at_us FROM history_rooms",
        [module],
    )?;
    {
        let mut lines = tx.prepare(
            "SELECT room, sender, content, sent_at_us, server_time_us FROM history ORDER BY id",
        )?;
        let mut insert =
            tx.prepare("INSERT INTO logs (module, key, at_us, data) VALUES (?1, ?2, ?3, ?4)")?;
        let mut rows = lines.query([])?;
        while let Some(row) = rows.next()? {
            let room: String = row.get(0)?;
            let at_us = row.get::<_, i64>(4)?;
            let frame = super::legacy_history_frame(
                room.clone(),
                row.get(1)?,
                row.get(2)?,
                row.get::<_, i64>(3)? as u64,
                at_us as u64,
            );
            if let Some(frame) = frame {
                insert.execute(params![module, room, at_us, frame])?;
            }
        }
    }
    tx.execute_batch("DROP TABLE history; DROP TABLE history_rooms;")?;
    Ok(())
}

/// Storage in one SQLite file.
pub struct SqliteStorage {
    conn: Connection,
    /// The lock file held for the life of the storage, so that a second server on the same
    /// file refuses to start. Declared after `conn`, so dropped after it: the connection
    /// is closed (and the WAL checkpointed) before another server can take the lock.
    _lock: Option<File>,
}

impl SqliteStorage {
    /// Opens (creating if needed) the database at `path` and migrates it. `synchronous_full`
    /// makes every commit durable against power loss too, not only against a crash.
    ///
    /// Holds an exclusive lock on `<path>.lock` (which holds the process id) until dropped;
    /// fails with [`StorageError::InUse`] when another storage holds it. SQLite's own locks
    /// stay as they are, so that the `sqlite3` shell can back the file up while it is open.
    ///
    /// The file is checked and created here rather than by SQLite, which says only "unable to
    /// open database file" whatever went wrong.
    ///
    /// The file is checked in full first ([`StartupCheck::Full`]); see
    /// [`SqliteStorage::open_checked`].
    pub fn open(path: &Path, synchronous_full: bool) -> Result<Self, StorageError> {
        Self::open_checked(path, synchronous_full, StartupCheck::Full)
    }

    /// [`SqliteStorage::open`], checking the file as `check` says before anything is written:
    /// a damaged one is refused with [`StorageError::Corrupt`].
    pub fn open_checked(
        path: &Path,
        synchronous_full: bool,
        check: StartupCheck,
    ) -> Result<Self, StorageError> {
        create_or_check(path)?;
        let lock = lock(path)?;
        let conn = Connection::open(path)?;
        let mut storage = Self::init_checked(conn, synchronous_full, check)?;
        storage._lock = Some(lock);
        Ok(storage)
    }

    /// A private in-memory database, for tests.
    pub fn in_memory() -> Result<Self, StorageError> {
        Self::init(Connection::open_in_memory()?, false)
    }

    fn init(conn: Connection, synchronous_full: bool) -> Result<Self, StorageError> {
        Self::init_checked(conn, synchronous_full, StartupCheck::Full)
    }

    fn init_checked(
        conn: Connection,
        synchronous_full: bool,
        check: StartupCheck,
    ) -> Result<Self, StorageError> {
        // Before anything is written: a damaged file must not be migrated or served.
        integrity(&conn, check)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(
            None,
            "synchronous",
            if synchronous_full { "FULL" } else { "NORMAL" },
        )?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mut storage = SqliteStorage { conn, _lock: None };
        storage.migrate()?;
        Ok(storage)
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StorageError> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |row| row.get(0))?)
    }

    fn migrate(&mut self) -> Result<(), StorageError> {
        let current = self.schema_version()?;
        let supported = MIGRATIONS.len() as i64;
        if current > supported {
            return Err(StorageError::SchemaTooNew {
                found: current,
                supported,
            });
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            if index == LOGS_MIGRATION {
                move_history(&tx)?;
            }
            tx.pragma_update(None, "user_version", index as i64 + 1)?;
            tx.commit()?;
            spdlog::info!("storage: schema migrated to version {}", index + 1);
        }
        Ok(())
    }
}

/// A new file is created readable and writable by the owner only: the database holds
/// password hashes, and its lock file and journals get the same mode.
fn owner_only(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Checks that `path` is a regular file that can be read and written, or creates it
/// (owner only) when it does not exist, saying what is wrong in the operating system's words.
fn create_or_check(path: &Path) -> Result<(), StorageError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => return Err(StorageError::IsDirectory),
        Ok(meta) if !meta.is_file() => return Err(StorageError::NotAFile),
        Ok(_) => {
            return OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map(drop)
                .map_err(StorageError::OpenFile);
        }
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {}
        Err(e) => return Err(StorageError::OpenFile(e)),
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match std::fs::metadata(parent) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(StorageError::ParentNotDirectory(parent.to_path_buf())),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(StorageError::ParentMissing(parent.to_path_buf()))
        }
        Err(e) => return Err(StorageError::Create(e)),
    }
    match owner_only(OpenOptions::new().read(true).write(true).create_new(true)).open(path) {
        Ok(_) => Ok(()),
        // Created by someone else meanwhile: SQLite opens it, or says why not.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(StorageError::CreateRefused {
            dir: parent.to_path_buf(),
            source: e,
        }),
        Err(e) => Err(StorageError::Create(e)),
    }
}

/// Takes the exclusive lock of `<path>.lock` and writes this process's id in it, or says
/// which process holds it. The file is left in place when the lock is released: removing
/// it would let a server that opened it just before lock a file nobody else sees.
fn lock(path: &Path) -> Result<File, StorageError> {
    // Beside the file itself, whatever symbolic links lead to it, so that two paths to one
    // database meet at one lock.
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut lock_path = real.into_os_string();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let failed = |source| StorageError::Lock {
        path: lock_path.clone(),
        source,
    };
    let mut file = owner_only(OpenOptions::new().read(true).write(true).create(true))
        .truncate(false)
        .open(&lock_path)
        .map_err(failed)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(StorageError::InUse {
                pid: holder.trim().parse().ok(),
            });
        }
        Err(TryLockError::Error(source)) => return Err(failed(source)),
    }
    file.set_len(0)
        .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
        .map_err(failed)?;
    Ok(file)
}

/// How a database file is checked when it is opened (`storage.startup_check`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartupCheck {
    /// SQLite's `integrity_check`: every page and b-tree, and every index against its table,
    /// so that damaged row contents are found too.
    Full,
    /// SQLite's `quick_check`: every page and b-tree, not the indexes against the tables.
    Quick,
    /// None.
    Off,
}

impl StartupCheck {
    /// The check named `name` in the config (`full`, `quick`, `off`); `full` for anything
    /// else (the config refuses other names).
    pub fn named(name: &str) -> StartupCheck {
        match name {
            "quick" => StartupCheck::Quick,
            "off" => StartupCheck::Off,
            _ => StartupCheck::Full,
        }
    }
}

/// SQLite's integrity check of the file, as `check` says: a corrupt file otherwise opens fine
/// and fails request after request.
fn integrity(conn: &Connection, check: StartupCheck) -> Result<(), StorageError> {
    let pragma = match check {
        StartupCheck::Full => "integrity_check",
        StartupCheck::Quick => "quick_check",
        StartupCheck::Off => return Ok(()),
    };
    let report: String = conn.query_row(&format!("PRAGMA {pragma}(1)"), [], |row| row.get(0))?;
    if report == "ok" {
        return Ok(());
    }
    Err(StorageError::Corrupt(format!(
        "{pragma}: {}",
        first_problem(&report)
    )))
}

/// The first line of a quick_check report that says what is wrong (not the
/// `*** in database main ***` heading).
fn first_problem(report: &str) -> String {
    report
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with("*** in database"))
        .unwrap_or(report)
        .to_string()
}

/// A database error met while opening that means the file is damaged, as
/// [`StorageError::Corrupt`], or is no database, as [`StorageError::NotADatabase`]; any
/// other error as it is.
impl From<rusqlite::Error> for StorageError {
    /// SQLite's own errors, with the two that mean "this file is not a usable database"
    /// told apart.
    fn from(error: rusqlite::Error) -> Self {
        match error {
            rusqlite::Error::SqliteFailure(e, message) => match e.code {
                rusqlite::ErrorCode::DatabaseCorrupt => {
                    StorageError::Corrupt(message.unwrap_or_else(|| e.to_string()))
                }
                rusqlite::ErrorCode::NotADatabase => StorageError::NotADatabase,
                // The disk is full or failing: it may come back (space freed, the device
                // back), and what was to be written waits for it.
                rusqlite::ErrorCode::DiskFull | rusqlite::ErrorCode::SystemIoFailure => {
                    StorageError::Unavailable(
                        rusqlite::Error::SqliteFailure(e, message).to_string(),
                    )
                }
                _ => StorageError::Database(rusqlite::Error::SqliteFailure(e, message).to_string()),
            },
            other => StorageError::Database(other.to_string()),
        }
    }
}

fn account_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: row.get::<_, i64>(0)? as u64,
        username: row.get(1)?,
        password_hash: row.get(2)?,
    })
}

impl Storage for SqliteStorage {
    fn account(&mut self, username: &str) -> Result<Option<Account>, StorageError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, username, password_hash FROM accounts WHERE username_key = ?1",
            )?
            .query_row([username_key(username)], account_row)
            .optional()?)
    }

    fn create_account(
        &mut self,
        username: &str,
        password_hash: &str,
        now_us: u64,
    ) -> Result<Option<Account>, StorageError> {
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO accounts (username, username_key, password_hash, created_at_us)
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (username_key) DO NOTHING",
            )?
            .execute(params![
                username,
                username_key(username),
                password_hash,
                now_us as i64
            ])?;
        if inserted == 0 {
            return Ok(None);
        }
        Ok(Some(Account {
            id: self.conn.last_insert_rowid() as u64,
            username: username.to_string(),
            password_hash: password_hash.to_string(),
        }))
    }

    fn insert_token(
        &mut self,
        token_hash: &[u8],
        user_id: u64,
        now_us: u64,
        expires_at_us: u64,
    ) -> Result<(), StorageError> {
        self.conn
            .prepare_cached(
                "INSERT INTO tokens (token_hash, account_id, created_at_us, expires_at_us)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                token_hash,
                user_id as i64,
                now_us as i64,
                expires_at_us as i64
            ])?;
        Ok(())
    }

    fn token_account(
        &mut self,
        token_hash: &[u8],
        now_us: u64,
    ) -> Result<Option<Account>, StorageError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT a.id, a.username, a.password_hash FROM tokens t
                 JOIN accounts a ON a.id = t.account_id
                 WHERE t.token_hash = ?1 AND t.revoked_at_us IS NULL AND t.expires_at_us > ?2",
            )?
            .query_row(params![token_hash, now_us as i64], account_row)
            .optional()?)
    }

    fn prune_tokens(&mut self, now_us: u64) -> Result<usize, StorageError> {
        Ok(self
            .conn
            .prepare_cached(
                "DELETE FROM tokens WHERE expires_at_us <= ?1 OR revoked_at_us IS NOT NULL",
            )?
            .execute([now_us as i64])?)
    }

    fn revoke_token(&mut self, token_hash: &[u8], now_us: u64) -> Result<bool, StorageError> {
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE tokens SET revoked_at_us = ?2
                 WHERE token_hash = ?1 AND revoked_at_us IS NULL",
            )?
            .execute(params![token_hash, now_us as i64])?;
        Ok(changed > 0)
    }

    fn module_get(&mut self, module: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM module_data WHERE module = ?1 AND key = ?2")?
            .query_row(params![module, key], |row| row.get(0))
            .optional()?)
    }

    fn module_put(&mut self, module: &str, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.conn
            .prepare_cached(
                "INSERT INTO module_data (module, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (module, key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![module, key, value])?;
        Ok(())
    }

    fn module_delete(&mut self, module: &str, key: &str) -> Result<bool, StorageError> {
        let deleted = self
            .conn
            .prepare_cached("DELETE FROM module_data WHERE module = ?1 AND key = ?2")?
            .execute(params![module, key])?;
        Ok(deleted > 0)
    }

    fn log_append(
        &mut self,
        module: &str,
        entries: &[LogEntry],
        limits: LogLimits,
    ) -> Result<usize, StorageError> {
        if entries.is_empty() {
            return Ok(0);
        }
        let tx = self.conn.transaction()?;
        let mut trimmed = 0;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO logs (module, key, at_us, data) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for entry in entries {
                insert.execute(params![
                    module,
                    entry.key,
                    entry.at_us as i64,
                    &entry.data[..]
                ])?;
            }
            // Trim each log written to, to its newest entries, and mark it in use.
            let mut trim = tx.prepare_cached(
                "DELETE FROM logs WHERE module = ?1 AND key = ?2 AND id <= (
                     SELECT id FROM logs WHERE module = ?1 AND key = ?2
                     ORDER BY id DESC LIMIT 1 OFFSET ?3)",
            )?;
            let mut add_key = tx.prepare_cached(
                "INSERT INTO log_keys (module, key, idle_since_us) VALUES (?1, ?2, NULL)
                 ON CONFLICT (module, key) DO NOTHING",
            )?;
            let mut in_use = tx.prepare_cached(
                "UPDATE log_keys SET idle_since_us = NULL
                 WHERE module = ?1 AND key = ?2 AND idle_since_us IS NOT NULL",
            )?;
            let mut keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
            keys.sort_unstable();
            keys.dedup();
            let mut new_keys = 0;
            for key in keys {
                trim.execute(params![module, key, limits.entries as i64])?;
                new_keys += add_key.execute([module, key])?;
                in_use.execute([module, key])?;
            }
            if new_keys > 0 {
                let count: i64 = tx.query_row(
                    "SELECT count(*) FROM log_keys WHERE module = ?1",
                    [module],
                    |r| r.get(0),
                )?;
                let over = count - limits.max_logs as i64;
                if over > 0 {
                    let oldest: Vec<String> = tx
                        .prepare_cached(
                            "SELECT key FROM log_keys
                             WHERE module = ?1 AND idle_since_us IS NOT NULL
                             ORDER BY idle_since_us LIMIT ?2",
                        )?
                        .query_map(params![module, over], |r| r.get(0))?
                        .collect::<Result<_, _>>()?;
                    trimmed = delete_logs(&tx, module, &oldest)?;
                }
            }
        }
        tx.commit()?;
        Ok(trimmed)
    }

    fn logs_in_use(&mut self, module: &str, keys: &[String]) -> Result<(), StorageError> {
        let tx = self.conn.transaction()?;
        {
            let mut in_use = tx.prepare_cached(
                "UPDATE log_keys SET idle_since_us = NULL
                 WHERE module = ?1 AND key = ?2 AND idle_since_us IS NOT NULL",
            )?;
            for key in keys {
                in_use.execute([module, key])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn logs_idle(
        &mut self,
        module: &str,
        keys: &[String],
        now_us: u64,
    ) -> Result<(), StorageError> {
        let tx = self.conn.transaction()?;
        {
            let mut idle = tx.prepare_cached(
                "UPDATE log_keys SET idle_since_us = ?3 WHERE module = ?1 AND key = ?2",
            )?;
            for key in keys {
                idle.execute(params![module, key, now_us as i64])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn prune_logs(&mut self, module: &str, before_us: u64) -> Result<usize, StorageError> {
        let tx = self.conn.transaction()?;
        let old: Vec<String> = tx
            .prepare_cached("SELECT key FROM log_keys WHERE module = ?1 AND idle_since_us < ?2")?
            .query_map(params![module, before_us as i64], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let deleted = delete_logs(&tx, module, &old)?;
        tx.commit()?;
        Ok(deleted)
    }

    fn log_tail(
        &mut self,
        module: &str,
        key: &str,
        limit: usize,
    ) -> Result<Vec<LogEntry>, StorageError> {
        let mut entries = self
            .conn
            .prepare_cached(
                "SELECT key, at_us, data FROM logs
                 WHERE module = ?1 AND key = ?2 ORDER BY id DESC LIMIT ?3",
            )?
            .query_map(params![module, key, limit as i64], |row| {
                Ok(LogEntry {
                    key: row.get(0)?,
                    at_us: row.get::<_, i64>(1)? as u64,
                    data: bytes::Bytes::from(row.get::<_, Vec<u8>>(2)?),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        entries.reverse();
        Ok(entries)
    }

    fn prune_sessions(&mut self, before_us: u64) -> Result<usize, StorageError> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM sessions WHERE disconnected_at_us < ?1")?
            .execute([before_us as i64])?)
    }

    fn record_sessions(
        &mut self,
        entries: &[SessionLogEntry],
        max_rows: u64,
    ) -> Result<(), StorageError> {
        if entries.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        {
            let mut opened = tx.prepare_cached(
                "INSERT OR REPLACE INTO open_sessions (session_id, peer, username, connected_at_us)
                 VALUES (?1, ?2, NULL, ?3)",
            )?;
            let mut logged_in =
                tx.prepare_cached("UPDATE open_sessions SET username = ?2 WHERE session_id = ?1")?;
            let mut closed =
                tx.prepare_cached("DELETE FROM open_sessions WHERE session_id = ?1")?;
            for entry in entries {
                match entry {
                    SessionLogEntry::Opened {
                        session_id,
                        peer,
                        connected_at_us,
                    } => {
                        opened.execute(params![
                            *session_id as i64,
                            peer,
                            *connected_at_us as i64
                        ])?;
                    }
                    SessionLogEntry::LoggedIn {
                        session_id,
                        username,
                    } => {
                        logged_in.execute(params![*session_id as i64, username])?;
                    }
                    SessionLogEntry::Closed(record) => {
                        insert_session(&tx, record)?;
                        closed.execute([record.session_id as i64])?;
                    }
                }
            }
            // Ids grow by one per record: everything more than `max_rows` below the newest goes.
            tx.prepare_cached(
                "DELETE FROM sessions WHERE id <= (SELECT max(id) FROM sessions) - ?1",
            )?
            .execute([max_rows.min(i64::MAX as u64) as i64])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn recover(&mut self, now_us: u64) -> Result<Recovered, StorageError> {
        let tx = self.conn.transaction()?;
        let open: Vec<SessionRecord> = tx
            .prepare(
                "SELECT session_id, peer, username, connected_at_us FROM open_sessions
                 ORDER BY session_id",
            )?
            .query_map([], |row| {
                Ok(SessionRecord {
                    session_id: row.get::<_, i64>(0)? as u64,
                    peer: row.get(1)?,
                    username: row.get(2)?,
                    connected_at_us: row.get::<_, i64>(3)? as u64,
                    disconnected_at_us: now_us,
                    reason: UNCLEAN_STOP.to_string(),
                })
            })?
            .collect::<Result<_, _>>()?;
        for record in &open {
            insert_session(&tx, record)?;
        }
        tx.execute("DELETE FROM open_sessions", [])?;
        let rooms = tx.execute(
            "UPDATE log_keys SET idle_since_us = ?1 WHERE idle_since_us IS NULL",
            [now_us as i64],
        )?;
        tx.commit()?;
        Ok(Recovered {
            sessions: open.len(),
            rooms,
        })
    }
}

/// Deletes `module`'s logs of `keys`, and their rows of `log_keys`; returns how many.
fn delete_logs(
    tx: &rusqlite::Transaction<'_>,
    module: &str,
    keys: &[String],
) -> Result<usize, StorageError> {
    let mut entries = tx.prepare_cached("DELETE FROM logs WHERE module = ?1 AND key = ?2")?;
    let mut key_row = tx.prepare_cached("DELETE FROM log_keys WHERE module = ?1 AND key = ?2")?;
    for key in keys {
        entries.execute([module, key])?;
        key_row.execute([module, key])?;
    }
    Ok(keys.len())
}

fn insert_session(tx: &rusqlite::Transaction<'_>, r: &SessionRecord) -> Result<(), StorageError> {
    tx.prepare_cached(
        "INSERT INTO sessions
         (session_id, peer, username, connected_at_us, disconnected_at_us, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        r.session_id as i64,
        r.peer,
        r.username,
        r.connected_at_us as i64,
        r.disconnected_at_us as i64,
        r.reason
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The module whose logs the tests write.
    const M: &str = "rooms";

    #[test]
    fn sqlite_meets_the_storage_contract() {
        super::super::conformance::all(&|| Box::new(SqliteStorage::in_memory().unwrap()));
    }

    fn line(room: &str, n: u64) -> LogEntry {
        LogEntry {
            key: room.into(),
            at_us: n + 1,
            data: bytes::Bytes::from(format!("line {n}")),
        }
    }

    #[test]
    fn migrations_are_versioned_and_reapplying_is_a_no_op() {
        let dir = std::env::temp_dir().join(format!("world-sqlite-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.db");
        let _ = std::fs::remove_file(&path);
        {
            let mut s = SqliteStorage::open(&path, true).unwrap();
            assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
            s.create_account("ann", "h", 1).unwrap();
        }
        let mut s = SqliteStorage::open(&path, true).unwrap();
        assert!(s.account("ann").unwrap().is_some());
        s.conn.pragma_update(None, "user_version", 99).unwrap();
        drop(s);
        let err = SqliteStorage::open(&path, true).err().unwrap();
        assert!(err.to_string().contains("99"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn room_history_of_the_schema_before_logs_moves_into_the_rooms_logs() {
        let dir = std::env::temp_dir().join(format!("world-sqlite-logs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v4.db");
        let _ = std::fs::remove_file(&path);
        {
            // A database of schema 4, with history in its tables.
            let conn = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..LOGS_MIGRATION] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", LOGS_MIGRATION as i64)
                .unwrap();
            let mut insert = conn
                .prepare(
                    "INSERT INTO history (room, sender, content, sent_at_us, server_time_us)
                     VALUES (?1, 'ann', ?2, ?3, ?4)",
                )
                .unwrap();
            for n in 0..3i64 {
                insert
                    .execute(params!["lobby", format!("line {n}"), n, 100 + n])
                    .unwrap();
            }
            insert.execute(params!["docks", "ahoy", 7, 107]).unwrap();
            conn.execute_batch("INSERT INTO history_rooms VALUES ('lobby', NULL), ('docks', 500);")
                .unwrap();
        }
        let mut s = SqliteStorage::open(&path, false).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let lines = |s: &mut SqliteStorage, room: &str| {
            super::super::chat_lines(s.log_tail(M, room, 10).unwrap(), room)
        };
        assert_eq!(
            lines(&mut s, "lobby"),
            [
                ("line 0".into(), 0, 100),
                ("line 1".into(), 1, 101),
                ("line 2".into(), 2, 102)
            ]
        );
        assert_eq!(lines(&mut s, "docks"), [("ahoy".into(), 7, 107)]);
        // In use and idle as they were: the docks, idle since 500, go; the lobby stays.
        assert_eq!(s.prune_logs(M, 1_000).unwrap(), 1);
        assert_eq!(lines(&mut s, "lobby").len(), 3);
        let old_tables: i64 = s
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('history', 'history_rooms')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old_tables, 0, "the old tables are dropped");
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Overwrites the middle of every page but the first (which holds the header and the
    /// schema), as a disk or a careless copy might.
    fn damage_pages_after_the_first(path: &Path) {
        let mut bytes = std::fs::read(path).unwrap();
        let page_size = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
        assert!(bytes.len() >= 3 * page_size, "{} bytes", bytes.len());
        for page in bytes.chunks_mut(page_size).skip(1) {
            page[100..600].fill(0xab);
        }
        std::fs::write(path, bytes).unwrap();
    }

    /// A row's contents damaged (a key's bytes changed in place, as a bad sector or a stray
    /// write might): the file's structure is intact, so `quick_check` passes it, and the
    /// full check finds the row and its index entry no longer agree.
    #[test]
    fn damaged_row_contents_are_found_by_the_full_check_at_start() {
        let dir = std::env::temp_dir().join(format!("world-sqlite-rows-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.db");
        let _ = std::fs::remove_file(&path);
        {
            let mut s = SqliteStorage::open(&path, false).unwrap();
            let lines: Vec<LogEntry> = (0..200).map(|n| line("unique-key-7q", n)).collect();
            s.log_append(M, &lines, limits(5000)).unwrap();
        }
        // The key is in the log_keys table and its index: change its first copy.
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes
            .windows(13)
            .position(|w| w == b"unique-key-7q")
            .expect("the key is in the file");
        bytes[at + 12] = b'z';
        std::fs::write(&path, bytes).unwrap();
        let quick = SqliteStorage::open_checked(&path, false, StartupCheck::Quick);
        assert!(
            quick.is_ok(),
            "quick_check cannot see it: {:?}",
            quick.err()
        );
        drop(quick);
        let err = SqliteStorage::open(&path, false).err().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            err.to_string()
                .starts_with("the database is corrupt (integrity_check: "),
            "{err}"
        );
    }

    #[test]
    fn a_database_with_damaged_pages_is_refused_when_opened() {
        let dir = std::env::temp_dir().join(format!("world-sqlite-corrupt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.db");
        let _ = std::fs::remove_file(&path);
        {
            let mut s = SqliteStorage::open(&path, false).unwrap();
            let lines: Vec<LogEntry> = (0..2000).map(|n| line("a", n)).collect();
            s.log_append(M, &lines, limits(5000)).unwrap();
        }
        damage_pages_after_the_first(&path);
        let err = SqliteStorage::open(&path, false).err().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let StorageError::Corrupt(problem) = &err else {
            panic!("not reported as corrupt: {err}");
        };
        assert!(!problem.contains('\n'), "one line: {problem:?}");
        assert!(!problem.contains("*** in database"), "{problem:?}");
        assert!(err
            .to_string()
            .starts_with("the database is corrupt (integrity_check: "));
    }

    #[test]
    fn the_first_problem_of_a_quick_check_report_skips_its_heading() {
        let report =
            "*** in database main ***\nOn tree page 20 cell 55: Offset 43947 out of range\n";
        assert_eq!(
            first_problem(report),
            "On tree page 20 cell 55: Offset 43947 out of range"
        );
        assert_eq!(
            first_problem("row 3 missing from index x"),
            "row 3 missing from index x"
        );
    }

    #[test]
    fn a_second_storage_on_the_same_file_is_refused_until_the_first_is_dropped() {
        let dir = std::env::temp_dir().join(format!("world-sqlite-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("l.db");
        let _ = std::fs::remove_file(&path);
        let first = SqliteStorage::open(&path, false).unwrap();
        let lock_file = std::fs::read_to_string(dir.join("l.db.lock")).unwrap();
        assert_eq!(lock_file, format!("{}\n", std::process::id()));
        let err = SqliteStorage::open(&path, false).err().unwrap();
        assert!(
            matches!(err, StorageError::InUse { pid: Some(pid) } if pid == std::process::id()),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "in use by another server (pid {}); stop it or give this one another storage.path",
                std::process::id()
            )
        );
        drop(first);
        let mut again = SqliteStorage::open(&path, false).unwrap();
        assert!(again.account("ann").unwrap().is_none());
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[test]
    fn a_second_storage_reaching_the_same_file_through_a_symlink_is_refused() {
        let dir = std::env::temp_dir().join(format!("world-sqlite-symlock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("other")).unwrap();
        let path = dir.join("l.db");
        let first = SqliteStorage::open(&path, false).unwrap();
        let alias = dir.join("other").join("l.db");
        std::os::unix::fs::symlink(&path, &alias).unwrap();
        let second = SqliteStorage::open(&alias, false);
        drop(first);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            matches!(second, Err(StorageError::InUse { .. })),
            "two storages opened one database file, through {alias:?}"
        );
    }

    #[test]
    fn a_consistent_copy_can_be_taken_while_the_storage_is_open() {
        let dir = std::env::temp_dir().join(format!("world-sqlite-copy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("b.db");
        let copy = dir.join("copy.db");
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&copy);
        let mut s = SqliteStorage::open(&path, false).unwrap();
        s.create_account("ann", "h", 1).unwrap();
        // What the sqlite3 shell's .backup does: read the live file from another connection.
        let other = Connection::open(&path).unwrap();
        other
            .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
            .unwrap();
        s.create_account("bob", "h", 2).unwrap();
        drop(other);
        let copied: i64 = Connection::open(&copy)
            .unwrap()
            .query_row("SELECT count(*) FROM accounts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(copied, 1, "the copy holds what was committed before it");
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_named_as_such() {
        let dir = std::env::temp_dir().join(format!("world-sqlite-text-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notes.txt");
        std::fs::write(
            &path,
            "not a database, but long enough to have a header ".repeat(20),
        )
        .unwrap();
        let err = SqliteStorage::open(&path, false).err().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(err, StorageError::NotADatabase), "{err}");
        assert!(err.is_path_error());
    }

    #[test]
    fn a_missing_parent_directory_is_named_and_nothing_is_created() {
        let dir = std::env::temp_dir().join(format!("world-sqlite-none-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let err = SqliteStorage::open(&dir.join("w.db"), false).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!("parent directory {dir:?} does not exist")
        );
        assert!(!dir.exists());
    }

    #[test]
    fn a_parent_that_is_a_file_is_named() {
        let dir = std::env::temp_dir().join(format!("world-sqlite-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("plain");
        std::fs::write(&file, "x").unwrap();
        let err = SqliteStorage::open(&file.join("w.db"), false)
            .err()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(err.to_string(), format!("{file:?} is not a directory"));
    }

    fn limits(entries: usize) -> LogLimits {
        LogLimits {
            entries,
            max_logs: 10_000,
        }
    }

    fn rooms_with_history(s: &SqliteStorage) -> Vec<String> {
        s.conn
            .prepare("SELECT DISTINCT key FROM logs WHERE module = 'rooms' ORDER BY key")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn history_of_rooms_empty_longer_than_the_retention_is_deleted_and_rooms_in_use_are_kept() {
        let mut s = SqliteStorage::in_memory().unwrap();
        for room in ["old", "recent", "busy"] {
            s.log_append(M, &[line(room, 1)], limits(10)).unwrap();
        }
        s.logs_idle(M, &["old".into()], 1_000).unwrap();
        s.logs_idle(M, &["recent".into()], 5_000).unwrap();
        // "busy" still has members: never pruned, however old its lines.
        assert_eq!(s.prune_logs(M, 2_000).unwrap(), 1);
        assert_eq!(rooms_with_history(&s), ["busy", "recent"]);
        // A room joined again is in use: its history is kept until it empties again.
        s.logs_in_use(M, &["recent".into()]).unwrap();
        assert_eq!(s.prune_logs(M, u64::MAX / 2).unwrap(), 0);
        assert_eq!(rooms_with_history(&s), ["busy", "recent"]);
    }

    #[test]
    fn rooms_with_history_are_capped_by_deleting_those_empty_the_longest() {
        let mut s = SqliteStorage::in_memory().unwrap();
        let cap = LogLimits {
            entries: 10,
            max_logs: 3,
        };
        for (i, room) in ["a", "b", "c"].into_iter().enumerate() {
            s.log_append(M, &[line(room, 1)], cap).unwrap();
            s.logs_idle(M, &[room.to_string()], 100 - i as u64).unwrap();
        }
        // "c" emptied first (at 98), then "b", then "a".
        assert_eq!(s.log_append(M, &[line("d", 1)], cap).unwrap(), 1);
        assert_eq!(rooms_with_history(&s), ["a", "b", "d"]);
        // Rooms in use are never trimmed, even past the cap.
        s.logs_in_use(M, &["a".into(), "b".into()]).unwrap();
        assert_eq!(s.log_append(M, &[line("e", 1)], cap).unwrap(), 0);
        assert_eq!(rooms_with_history(&s), ["a", "b", "d", "e"]);
        // More lines of a room already there add no room: nothing is trimmed.
        assert_eq!(s.log_append(M, &[line("e", 2)], cap).unwrap(), 0);
    }

    #[test]
    fn the_session_log_keeps_at_most_max_rows_records_dropping_the_oldest() {
        let mut s = SqliteStorage::in_memory().unwrap();
        let entries: Vec<SessionLogEntry> = (1..=25)
            .map(|i| {
                SessionLogEntry::Closed(SessionRecord {
                    session_id: i,
                    peer: "127.0.0.1:1".into(),
                    username: None,
                    connected_at_us: i,
                    disconnected_at_us: i,
                    reason: "peer closed".into(),
                })
            })
            .collect();
        for batch in entries.chunks(7) {
            s.record_sessions(batch, 10).unwrap();
        }
        let kept: Vec<i64> = s
            .conn
            .prepare("SELECT session_id FROM sessions ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(kept, (16..=25).collect::<Vec<i64>>());
    }

    #[test]
    fn sessions_open_when_the_server_stopped_are_closed_at_the_next_start() {
        let mut s = SqliteStorage::in_memory().unwrap();
        let opened = |id: u64| SessionLogEntry::Opened {
            session_id: id,
            peer: format!("10.0.0.{id}:5000"),
            connected_at_us: id * 10,
        };
        s.record_sessions(
            &[
                opened(1),
                opened(2),
                SessionLogEntry::LoggedIn {
                    session_id: 2,
                    username: "ann".into(),
                },
                opened(3),
                SessionLogEntry::Closed(SessionRecord {
                    session_id: 3,
                    peer: "10.0.0.3:5000".into(),
                    username: None,
                    connected_at_us: 30,
                    disconnected_at_us: 40,
                    reason: "peer closed".into(),
                }),
            ],
            1000,
        )
        .unwrap();
        s.log_append(M, &[line("lobby", 1)], limits(10)).unwrap();
        // The server is killed here; the next start recovers.
        let recovered = s.recover(99).unwrap();
        assert_eq!(
            recovered,
            Recovered {
                sessions: 2,
                rooms: 1
            }
        );
        let rows: Vec<(i64, String, Option<String>, i64, i64, String)> = s
            .conn
            .prepare(
                "SELECT session_id, peer, username, connected_at_us, disconnected_at_us, reason
                 FROM sessions ORDER BY session_id",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                (1, "10.0.0.1:5000".into(), None, 10, 99, UNCLEAN_STOP.into()),
                (
                    2,
                    "10.0.0.2:5000".into(),
                    Some("ann".into()),
                    20,
                    99,
                    UNCLEAN_STOP.into()
                ),
                (
                    3,
                    "10.0.0.3:5000".into(),
                    None,
                    30,
                    40,
                    "peer closed".into()
                ),
            ]
        );
        assert_eq!(s.recover(100).unwrap(), Recovered::default(), "once only");
        // The room left in use counts as empty from the start.
        assert_eq!(s.prune_logs(M, 100).unwrap(), 1);
    }

    #[test]
    fn session_records_are_written_in_one_batch() {
        let mut s = SqliteStorage::in_memory().unwrap();
        let records: Vec<SessionRecord> = (1..=3)
            .map(|i| SessionRecord {
                session_id: i,
                peer: "127.0.0.1:1".into(),
                username: (i == 2).then(|| "ann".to_string()),
                connected_at_us: i,
                disconnected_at_us: i + 10,
                reason: "peer closed".into(),
            })
            .collect();
        let entries: Vec<SessionLogEntry> =
            records.into_iter().map(SessionLogEntry::Closed).collect();
        s.record_sessions(&entries, 1000).unwrap();
        let n: i64 = s
            .conn
            .query_row(
                "SELECT count(*) FROM sessions WHERE username IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(s.prune_sessions(12).unwrap(), 1, "the one that ended at 11");
        assert_eq!(s.prune_sessions(0).unwrap(), 0);
    }
}
