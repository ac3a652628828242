//! PostgreSQL storage: one database shared by several servers (nodes), versioned migrations
//! applied at start-up under an advisory lock, so that nodes starting together migrate once.
//!
//! What is per node is keyed by the node's name: its open sessions (closed by [`recover`]
//! when that node starts again, never another node's), and which logs it has in use (a room's
//! history, for the rooms module). A log counts as idle when the last node using it lets it
//! go.
//!
//! The client is `tokio-postgres` on a small runtime of the storage's own: the DB worker is a
//! thread of its own and the [`Storage`] trait is synchronous, so each call blocks on its
//! runtime, with a deadline ([`QUERY_TIMEOUT`]): a database that stops answering (a paused
//! server, a network cut that leaves the connection open) is given up on, and connected to
//! again, as one that closed the connection. It must be used off the server's async threads;
//! [`PostgresStorage::connect`] and [`crate::server::start_db`] see to that.
//!
//! [`recover`]: Storage::recover

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls, Transaction};

use super::{
    username_key, Account, LogEntry, LogLimits, Recovered, SessionLogEntry, SessionRecord, Storage,
    StorageError, UNCLEAN_STOP,
};

/// Schema migrations, in order; migration `i` brings the schema to version `i + 1`.
/// Applied ones are never edited: a change is a new entry.
const MIGRATIONS: &[&str] = &[
    // 1: accounts, tokens, history, the session log, rooms in use by node.
    "CREATE TABLE accounts (
        id            BIGSERIAL PRIMARY KEY,
        username      TEXT NOT NULL,
        username_key  TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        created_at_us BIGINT NOT NULL
    );
    CREATE TABLE tokens (
        token_hash    BYTEA PRIMARY KEY,
        account_id    BIGINT NOT NULL REFERENCES accounts(id),
        created_at_us BIGINT NOT NULL,
        expires_at_us BIGINT NOT NULL,
        revoked_at_us BIGINT
    );
    CREATE INDEX tokens_by_account ON tokens(account_id);
    CREATE TABLE history (
        id             BIGSERIAL PRIMARY KEY,
        room           TEXT NOT NULL,
        sender         TEXT NOT NULL,
        content        TEXT NOT NULL,
        sent_at_us     BIGINT NOT NULL,
        server_time_us BIGINT NOT NULL
    );
    CREATE INDEX history_by_room ON history(room, id);
    CREATE TABLE history_rooms (
        room          TEXT PRIMARY KEY,
        emptied_at_us BIGINT
    );
    CREATE INDEX history_rooms_by_emptied ON history_rooms(emptied_at_us);
    CREATE TABLE room_nodes (
        room TEXT NOT NULL,
        node TEXT NOT NULL,
        PRIMARY KEY (room, node)
    );
    CREATE TABLE sessions (
        id                 BIGSERIAL PRIMARY KEY,
        node               TEXT NOT NULL,
        session_id         BIGINT NOT NULL,
        peer               TEXT NOT NULL,
        username           TEXT,
        connected_at_us    BIGINT NOT NULL,
        disconnected_at_us BIGINT NOT NULL,
        reason             TEXT NOT NULL
    );
    CREATE INDEX sessions_by_end ON sessions(disconnected_at_us);
    CREATE TABLE open_sessions (
        node            TEXT NOT NULL,
        session_id      BIGINT NOT NULL,
        peer            TEXT NOT NULL,
        username        TEXT,
        connected_at_us BIGINT NOT NULL,
        PRIMARY KEY (node, session_id)
    );",
    // The modules' own records, by module and key.
    "CREATE TABLE module_data (
        module TEXT NOT NULL,
        key    TEXT NOT NULL,
        value  BYTEA NOT NULL,
        PRIMARY KEY (module, key)
    );",
    // The modules' logs, by module and key; since when each is idle (NULL: in use); which
    // nodes have each in use. The room history of the tables before is moved into the rooms
    // module's logs by `move_history` in the same transaction, and those tables dropped.
    "CREATE TABLE logs (
        id     BIGSERIAL PRIMARY KEY,
        module TEXT NOT NULL,
        key    TEXT NOT NULL,
        at_us  BIGINT NOT NULL,
        data   BYTEA NOT NULL
    );
    CREATE INDEX logs_by_key ON logs(module, key, id);
    CREATE TABLE log_keys (
        module        TEXT NOT NULL,
        key           TEXT NOT NULL,
        idle_since_us BIGINT,
        PRIMARY KEY (module, key)
    );
    CREATE INDEX log_keys_by_idle ON log_keys(module, idle_since_us);
    CREATE TABLE log_nodes (
        module TEXT NOT NULL,
        key    TEXT NOT NULL,
        node   TEXT NOT NULL,
        PRIMARY KEY (module, key, node)
    );",
];

/// The migration (its index in [`MIGRATIONS`]) after which [`move_history`] runs.
const LOGS_MIGRATION: usize = 2;

/// Moves the room history of schemas before logs into the rooms module's logs (each line as
/// its encoded S2C_Chat frame), with the nodes that have its rooms in use, and drops its
/// tables.
async fn move_history(tx: &Transaction<'_>) -> Result<(), StorageError> {
    let module = super::LEGACY_HISTORY_MODULE;
    tx.execute(
        "INSERT INTO log_keys (module, key, idle_since_us)
         SELECT $1::text, room, emptied_at_us FROM history_rooms",
        &[&module],
    )
    .await?;
    tx.execute(
        "INSERT INTO log_nodes (module, key, node) SELECT $1::text, room, node FROM room_nodes",
        &[&module],
    )
    .await?;
    let rows = tx
        .query(
            "SELECT room, sender, content, sent_at_us, server_time_us FROM history ORDER BY id",
            &[],
        )
        .await?;
    let (mut keys, mut times, mut data) = (Vec::new(), Vec::new(), Vec::new());
    for row in &rows {
        let room: String = row.get(0);
        let at_us: i64 = row.get(4);
        let frame = super::legacy_history_frame(
            room.clone(),
            row.get(1),
            row.get(2),
            row.get::<_, i64>(3) as u64,
            at_us as u64,
        );
        if let Some(frame) = frame {
            keys.push(room);
            times.push(at_us);
            data.push(frame);
        }
    }
    tx.execute(
        "INSERT INTO logs (module, key, at_us, data)
         SELECT $1::text, * FROM unnest($2::text[], $3::bigint[], $4::bytea[])",
        &[&module, &keys, &times, &data],
    )
    .await?;
    tx.batch_execute("DROP TABLE history; DROP TABLE history_rooms; DROP TABLE room_nodes;")
        .await?;
    Ok(())
}

/// The advisory lock nodes take to migrate one at a time (any constant of this program's own).
const MIGRATION_LOCK: i64 = 0x776f_726c_6400;

/// How long a connect may take before the server gives up and says so.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one call may wait for the database before it is given up as unavailable, and
/// the connection dropped and made again: the DB worker waits for nothing longer, so a
/// database that stops answering holds the logins and writes behind it for this at most.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Storage in a PostgreSQL database, as one node of those sharing it.
pub struct PostgresStorage {
    /// The client's runtime: the connection runs on it while a call blocks on it. `None` only
    /// once dropped.
    rt: Option<tokio::runtime::Runtime>,
    /// `Some` while connected; `None` after a lost connection that is not made again yet.
    client: Option<Connected>,
    /// How to connect again when the connection is lost.
    config: tokio_postgres::Config,
    node: String,
    /// While the connection is lost: when the next attempt is due, and the wait after it.
    retry: Option<(Instant, Duration)>,
}

/// A client and the task of its connection.
struct Connected {
    client: Client,
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for Connected {
    fn drop(&mut self) {
        // Whatever the connection waits for (a server that stopped answering), it is let go.
        self.connection.abort();
    }
}

/// The first wait before connecting again after a failed attempt; it doubles up to
/// [`RECONNECT_MAX`].
const RECONNECT_MIN: Duration = Duration::from_millis(250);

/// The longest wait between attempts to connect again.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// How long an attempt to connect again may take: the DB worker waits for it.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(2);

impl Drop for PostgresStorage {
    fn drop(&mut self) {
        self.client = None;
        // A runtime cannot be dropped, waiting for its tasks, inside an async runtime (a
        // server that failed before its DB worker took this storage): nothing is waited for.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl From<tokio_postgres::Error> for StorageError {
    fn from(error: tokio_postgres::Error) -> Self {
        // The driver's Display of a server error is only "db error": the server's own message
        // says what happened.
        match error.as_db_error() {
            // Class 08 (connection exception) and 57 (operator intervention: the server shutting
            // down or starting): the database is away, not the request at fault.
            Some(db) if ["08", "57"].contains(&&db.code().code()[..2]) => {
                StorageError::Unavailable(db.message().to_string())
            }
            Some(db) => StorageError::Database(db.message().to_string()),
            // The connection closed, or its socket failed.
            None if error.is_closed()
                || std::error::Error::source(&error).is_some_and(|s| s.is::<std::io::Error>()) =>
            {
                StorageError::Unavailable(error.to_string())
            }
            None => StorageError::Database(error.to_string()),
        }
    }
}

impl PostgresStorage {
    /// Connects to `url` as node `node` and migrates the schema; refuses a schema newer than
    /// this server's. Runs on a thread of its own, so it may be called from async code.
    pub fn connect(url: &str, node: &str) -> Result<Self, StorageError> {
        let (url, node) = (url.to_string(), node.to_string());
        std::thread::scope(|scope| {
            scope
                .spawn(move || Self::connect_here(&url, node))
                .join()
                .unwrap_or_else(|_| {
                    Err(StorageError::Database("the connect thread panicked".into()))
                })
        })
    }

    fn connect_here(url: &str, node: String) -> Result<Self, StorageError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| StorageError::Connect(e.to_string()))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name(format!("world-server {node}"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StorageError::Connect(format!("a runtime for the client: {e}")))?;
        let client = open(&rt, &config, CONNECT_TIMEOUT).map_err(StorageError::Connect)?;
        let mut storage = PostgresStorage {
            rt: Some(rt),
            client: Some(client),
            config,
            node,
            retry: None,
        };
        storage.migrate()?;
        Ok(storage)
    }

    /// The schema version of the database.
    pub fn schema_version(&mut self) -> Result<i64, StorageError> {
        self.run(async |c| schema_version(&c.transaction().await?).await)
    }

    /// Runs `call` on the connection, connected again first if it was lost, and waits
    /// [`QUERY_TIMEOUT`] at most for it: past that, the connection is dropped (to be made
    /// again) and the answer is [`StorageError::Unavailable`].
    fn run<T>(
        &mut self,
        call: impl AsyncFnOnce(&mut Client) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        self.connected()?;
        let (Some(rt), Some(connected)) = (&self.rt, &mut self.client) else {
            return Err(StorageError::Unavailable("not connected".into()));
        };
        // The timer is made inside the runtime, which it needs.
        let call = call(&mut connected.client);
        match rt.block_on(async { tokio::time::timeout(QUERY_TIMEOUT, call).await }) {
            Ok(answer) => answer,
            Err(_) => {
                spdlog::warn!(
                    "storage: PostgreSQL did not answer within {} s; connecting again",
                    QUERY_TIMEOUT.as_secs()
                );
                self.client = None;
                Err(StorageError::Unavailable(format!(
                    "no answer within {} s",
                    QUERY_TIMEOUT.as_secs()
                )))
            }
        }
    }

    /// Makes sure of a connection, made again if it was lost (the server restarted, or the
    /// network failed): at once the first time, then at most every [`RECONNECT_MIN`],
    /// doubling to [`RECONNECT_MAX`]. Between attempts, and when one fails, the answer is
    /// [`StorageError::Unavailable`] at once, so that a request waits for nothing.
    fn connected(&mut self) -> Result<(), StorageError> {
        if self.client.as_ref().is_some_and(|c| !c.client.is_closed()) {
            return Ok(());
        }
        let now = Instant::now();
        if let Some((due, _)) = self.retry {
            if now < due {
                return Err(StorageError::Unavailable(
                    "connection lost; connecting again".into(),
                ));
            }
        } else {
            spdlog::warn!("storage: the connection to PostgreSQL was lost; connecting again");
        }
        self.client = None;
        let mut config = self.config.clone();
        config.connect_timeout(RECONNECT_TIMEOUT);
        let Some(rt) = &self.rt else {
            return Err(StorageError::Unavailable("not connected".into()));
        };
        match open(rt, &config, RECONNECT_TIMEOUT) {
            Ok(client) => {
                self.client = Some(client);
                self.retry = None;
                spdlog::info!("storage: connected to PostgreSQL again");
                Ok(())
            }
            Err(cause) => {
                let wait = self
                    .retry
                    .map_or(RECONNECT_MIN, |(_, wait)| (wait * 2).min(RECONNECT_MAX));
                self.retry = Some((now + wait, wait));
                Err(StorageError::Unavailable(cause))
            }
        }
    }

    /// The node this storage writes as.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn migrate(&mut self) -> Result<(), StorageError> {
        self.run(async |c| {
            let tx = c.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL);
                 INSERT INTO schema_version (version)
                     SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM schema_version);",
            )
            .await?;
            let found = schema_version(&tx).await?;
            let supported = MIGRATIONS.len() as i64;
            if found > supported {
                return Err(StorageError::SchemaTooNew { found, supported });
            }
            for (i, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
                tx.batch_execute(migration).await?;
                if i == LOGS_MIGRATION {
                    move_history(&tx).await?;
                }
                tx.execute("UPDATE schema_version SET version = $1", &[&(i as i64 + 1)])
                    .await?;
                spdlog::info!("storage: schema migrated to version {}", i + 1);
            }
            tx.commit().await?;
            Ok(())
        })
    }
}

/// Connects with `config`, the connection running on `rt`, waiting `within` at most (the
/// driver's own timeout covers the TCP connect, not a server that takes it and never answers);
/// `Err` says why not, without the driver's preamble.
fn open(
    rt: &tokio::runtime::Runtime,
    config: &tokio_postgres::Config,
    within: Duration,
) -> Result<Connected, String> {
    let (client, connection) = rt
        .block_on(async { tokio::time::timeout(within, config.connect(NoTls)).await })
        .map_err(|_| format!("no answer within {} s", within.as_secs()))?
        .map_err(|e| connect_cause(&e))?;
    let connection = rt.spawn(async move {
        if let Err(error) = connection.await {
            spdlog::debug!("storage: the connection to PostgreSQL ended: {error}");
        }
    });
    Ok(Connected { client, connection })
}

/// What a failed connect says, without the driver's preamble: "Connection refused (os error
/// 111)" rather than "error connecting to server: ...".
fn connect_cause(e: &tokio_postgres::Error) -> String {
    std::error::Error::source(e)
        .map(|s| s.to_string())
        .unwrap_or_else(|| e.to_string())
}

async fn schema_version(tx: &Transaction<'_>) -> Result<i64, StorageError> {
    Ok(tx
        .query_opt("SELECT version FROM schema_version", &[])
        .await
        .or_else(|e| match e.code() {
            Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => Ok(None),
            _ => Err(e),
        })?
        .map_or(0, |row| row.get(0)))
}

fn account_row(row: &tokio_postgres::Row) -> Account {
    Account {
        id: row.get::<_, i64>(0) as u64,
        username: row.get(1),
        password_hash: row.get(2),
    }
}

/// `value` as PostgreSQL's BIGINT (times and ids fit: microseconds since 1970 for 292,000
/// years).
fn big(value: u64) -> i64 {
    value.min(i64::MAX as u64) as i64
}

impl Storage for PostgresStorage {
    fn account(&mut self, username: &str) -> Result<Option<Account>, StorageError> {
        let key = username_key(username);
        self.run(async |c| {
            Ok(c.query_opt(
                "SELECT id, username, password_hash FROM accounts WHERE username_key = $1",
                &[&key],
            )
            .await?
            .as_ref()
            .map(account_row))
        })
    }

    fn create_account(
        &mut self,
        username: &str,
        password_hash: &str,
        now_us: u64,
    ) -> Result<Option<Account>, StorageError> {
        let key = username_key(username);
        let row = self.run(async |c| {
            Ok(c.query_opt(
                "INSERT INTO accounts (username, username_key, password_hash, created_at_us)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (username_key) DO NOTHING RETURNING id",
                &[&username, &key, &password_hash, &big(now_us)],
            )
            .await?)
        })?;
        Ok(row.map(|row| Account {
            id: row.get::<_, i64>(0) as u64,
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
        self.run(async |c| {
            c.execute(
                "INSERT INTO tokens (token_hash, account_id, created_at_us, expires_at_us)
                 VALUES ($1, $2, $3, $4)",
                &[
                    &token_hash,
                    &big(user_id),
                    &big(now_us),
                    &big(expires_at_us),
                ],
            )
            .await?;
            Ok(())
        })
    }

    fn token_account(
        &mut self,
        token_hash: &[u8],
        now_us: u64,
    ) -> Result<Option<Account>, StorageError> {
        self.run(async |c| {
            Ok(c.query_opt(
                "SELECT a.id, a.username, a.password_hash FROM tokens t
                 JOIN accounts a ON a.id = t.account_id
                 WHERE t.token_hash = $1 AND t.revoked_at_us IS NULL AND t.expires_at_us > $2",
                &[&token_hash, &big(now_us)],
            )
            .await?
            .as_ref()
            .map(account_row))
        })
    }

    fn prune_tokens(&mut self, now_us: u64) -> Result<usize, StorageError> {
        self.run(async |c| {
            Ok(c.execute(
                "DELETE FROM tokens WHERE expires_at_us <= $1 OR revoked_at_us IS NOT NULL",
                &[&big(now_us)],
            )
            .await? as usize)
        })
    }

    fn revoke_token(&mut self, token_hash: &[u8], now_us: u64) -> Result<bool, StorageError> {
        self.run(async |c| {
            Ok(c.execute(
                "UPDATE tokens SET revoked_at_us = $2 WHERE token_hash = $1 AND revoked_at_us IS NULL",
                &[&token_hash, &big(now_us)],
            )
            .await?
                > 0)
        })
    }

    fn module_get(&mut self, module: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.run(async |c| {
            Ok(c.query_opt(
                "SELECT value FROM module_data WHERE module = $1 AND key = $2",
                &[&module, &key],
            )
            .await?
            .map(|row| row.get(0)))
        })
    }

    fn module_put(&mut self, module: &str, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.run(async |c| {
            c.execute(
                "INSERT INTO module_data (module, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT (module, key) DO UPDATE SET value = excluded.value",
                &[&module, &key, &value],
            )
            .await?;
            Ok(())
        })
    }

    fn module_delete(&mut self, module: &str, key: &str) -> Result<bool, StorageError> {
        self.run(async |c| {
            Ok(c.execute(
                "DELETE FROM module_data WHERE module = $1 AND key = $2",
                &[&module, &key],
            )
            .await?
                > 0)
        })
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
        // A handful of statements whatever the number of entries and logs: each is a round
        // trip to the database, and the DB worker has the logins to serve too.
        let node = self.node.clone();
        let keys_col: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
        let times: Vec<i64> = entries.iter().map(|e| big(e.at_us)).collect();
        let data: Vec<&[u8]> = entries.iter().map(|e| &e.data[..]).collect();
        let mut keys: Vec<&str> = keys_col.clone();
        keys.sort_unstable();
        keys.dedup();
        let trimmed = self.run(async |c| {
            let tx = c.transaction().await?;
            tx.execute(
                "INSERT INTO logs (module, key, at_us, data)
                 SELECT $1::text, * FROM unnest($2::text[], $3::bigint[], $4::bytea[])",
                &[&module, &keys_col, &times, &data],
            )
            .await?;
            let new_keys = tx
                .execute(
                    "INSERT INTO log_keys (module, key, idle_since_us)
                     SELECT $1::text, unnest($2::text[]), NULL ON CONFLICT (module, key) DO NOTHING",
                    &[&module, &keys],
                )
                .await?;
            mark_in_use(&tx, module, &keys, &node).await?;
            let mut trimmed = 0;
            if new_keys > 0 {
                let count: i64 = tx
                    .query_one(
                        "SELECT count(*) FROM log_keys WHERE module = $1",
                        &[&module],
                    )
                    .await?
                    .get(0);
                let over = count - limits.max_logs as i64;
                if over > 0 {
                    let oldest: Vec<String> = tx
                        .query(
                            "SELECT key FROM log_keys WHERE module = $1 AND idle_since_us IS NOT NULL
                             ORDER BY idle_since_us LIMIT $2",
                            &[&module, &over],
                        )
                        .await?
                        .iter()
                        .map(|r| r.get(0))
                        .collect();
                    trimmed = delete_logs(&tx, module, &oldest).await?;
                }
            }
            tx.commit().await?;
            Ok(trimmed)
        })?;
        // Then each log is trimmed to its newest entries, in a transaction of its own: nodes
        // append to the same logs, and one node's trim must neither wait long on another's
        // nor take the entries above with it when it fails. A trim that cannot have its rows
        // within the lock timeout is left to the next batch (the entries are written already,
        // and a lost connection is the next call's to make again).
        let trim = self.run(async |c| {
            let tx = c.transaction().await?;
            tx.batch_execute("SET LOCAL lock_timeout = '100ms'").await?;
            tx.execute(
                "DELETE FROM logs l USING (
                     SELECT k.key, (SELECT id FROM logs
                                    WHERE logs.module = $1 AND logs.key = k.key
                                    ORDER BY id DESC OFFSET $3 LIMIT 1) AS cutoff
                     FROM unnest($2::text[]) AS k(key)) c
                 WHERE l.module = $1 AND l.key = c.key AND l.id <= c.cutoff",
                &[&module, &keys, &big(limits.entries as u64)],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        });
        if let Err(error) = trim {
            spdlog::debug!("storage: log trim left to the next batch: {error}");
        }
        Ok(trimmed)
    }

    fn logs_in_use(&mut self, module: &str, keys: &[String]) -> Result<(), StorageError> {
        let node = self.node.clone();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.run(async |c| {
            let tx = c.transaction().await?;
            mark_in_use(&tx, module, &keys, &node).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn logs_idle(
        &mut self,
        module: &str,
        keys: &[String],
        now_us: u64,
    ) -> Result<(), StorageError> {
        let node = self.node.clone();
        self.run(async |c| {
            let tx = c.transaction().await?;
            tx.execute(
                "DELETE FROM log_nodes WHERE module = $1 AND key = ANY($2) AND node = $3",
                &[&module, &keys, &node],
            )
            .await?;
            // Idle when no node has it in use any more.
            tx.execute(
                "UPDATE log_keys k SET idle_since_us = $3
                 WHERE module = $1 AND key = ANY($2)
                   AND NOT EXISTS (SELECT 1 FROM log_nodes n WHERE n.module = k.module AND n.key = k.key)",
                &[&module, &keys, &big(now_us)],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn prune_logs(&mut self, module: &str, before_us: u64) -> Result<usize, StorageError> {
        self.run(async |c| {
            let tx = c.transaction().await?;
            let old: Vec<String> = tx
                .query(
                    "SELECT key FROM log_keys WHERE module = $1 AND idle_since_us < $2",
                    &[&module, &big(before_us)],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let deleted = delete_logs(&tx, module, &old).await?;
            tx.commit().await?;
            Ok(deleted)
        })
    }

    fn log_tail(
        &mut self,
        module: &str,
        key: &str,
        limit: usize,
    ) -> Result<Vec<LogEntry>, StorageError> {
        let mut entries: Vec<LogEntry> = self.run(async |c| {
            Ok(c.query(
                "SELECT key, at_us, data FROM logs
                 WHERE module = $1 AND key = $2 ORDER BY id DESC LIMIT $3",
                &[&module, &key, &big(limit as u64)],
            )
            .await?
            .iter()
            .map(|row| LogEntry {
                key: row.get(0),
                at_us: row.get::<_, i64>(1) as u64,
                data: bytes::Bytes::from(row.get::<_, Vec<u8>>(2)),
            })
            .collect())
        })?;
        entries.reverse();
        Ok(entries)
    }

    fn prune_sessions(&mut self, before_us: u64) -> Result<usize, StorageError> {
        self.run(async |c| {
            Ok(c.execute(
                "DELETE FROM sessions WHERE disconnected_at_us < $1",
                &[&big(before_us)],
            )
            .await? as usize)
        })
    }

    fn record_sessions(
        &mut self,
        entries: &[SessionLogEntry],
        max_rows: u64,
    ) -> Result<(), StorageError> {
        if entries.is_empty() {
            return Ok(());
        }
        // Set-based, a few statements per batch. A session's entries come in the order
        // opened, logged in (again after a logout), closed; so all openings, then the last
        // login of each session, then all closings, is the same as one by one.
        let mut opened: (Vec<i64>, Vec<&str>, Vec<i64>) = Default::default();
        let mut logins: HashMap<u64, &str> = HashMap::new();
        let mut closed: Vec<&SessionRecord> = Vec::new();
        for entry in entries {
            match entry {
                SessionLogEntry::Opened {
                    session_id,
                    peer,
                    connected_at_us,
                } => {
                    opened.0.push(big(*session_id));
                    opened.1.push(peer);
                    opened.2.push(big(*connected_at_us));
                }
                SessionLogEntry::LoggedIn {
                    session_id,
                    username,
                } => {
                    logins.insert(*session_id, username);
                }
                SessionLogEntry::Closed(record) => closed.push(record),
            }
        }
        let (ids, names): (Vec<i64>, Vec<&str>) =
            logins.iter().map(|(id, name)| (big(*id), *name)).unzip();
        let closed_ids: Vec<i64> = closed.iter().map(|r| big(r.session_id)).collect();
        let node = self.node.clone();
        self.run(async |c| {
            let tx = c.transaction().await?;
            if !opened.0.is_empty() {
                tx.execute(
                    "INSERT INTO open_sessions (node, session_id, peer, username, connected_at_us)
                     SELECT $1, s, p, NULL, c FROM unnest($2::bigint[], $3::text[], $4::bigint[]) AS t(s, p, c)
                     ON CONFLICT (node, session_id) DO UPDATE
                     SET peer = EXCLUDED.peer, username = NULL, connected_at_us = EXCLUDED.connected_at_us",
                    &[&node, &opened.0, &opened.1, &opened.2],
                )
                .await?;
            }
            if !ids.is_empty() {
                tx.execute(
                    "UPDATE open_sessions o SET username = t.u
                     FROM unnest($2::bigint[], $3::text[]) AS t(s, u)
                     WHERE o.node = $1 AND o.session_id = t.s",
                    &[&node, &ids, &names],
                )
                .await?;
            }
            if !closed.is_empty() {
                insert_sessions(&tx, &node, &closed).await?;
                tx.execute(
                    "DELETE FROM open_sessions WHERE node = $1 AND session_id = ANY($2)",
                    &[&node, &closed_ids],
                )
                .await?;
            }
            // Ids grow with every record (with gaps at most): everything more than `max_rows`
            // below the newest goes.
            tx.execute(
                "DELETE FROM sessions WHERE id <= (SELECT max(id) FROM sessions) - $1",
                &[&big(max_rows)],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn check(&mut self) -> Result<(), StorageError> {
        self.run(async |c| {
            c.simple_query("SELECT 1").await?;
            Ok(())
        })
    }

    fn recover(&mut self, now_us: u64) -> Result<Recovered, StorageError> {
        let node = self.node.clone();
        self.run(async |c| {
            let tx = c.transaction().await?;
            let open: Vec<SessionRecord> = tx
                .query(
                    "SELECT session_id, peer, username, connected_at_us FROM open_sessions
                     WHERE node = $1 ORDER BY session_id",
                    &[&node],
                )
                .await?
                .iter()
                .map(|row| SessionRecord {
                    session_id: row.get::<_, i64>(0) as u64,
                    peer: row.get(1),
                    username: row.get(2),
                    connected_at_us: row.get::<_, i64>(3) as u64,
                    disconnected_at_us: now_us,
                    reason: UNCLEAN_STOP.to_string(),
                })
                .collect();
            let records: Vec<&SessionRecord> = open.iter().collect();
            insert_sessions(&tx, &node, &records).await?;
            tx.execute("DELETE FROM open_sessions WHERE node = $1", &[&node])
                .await?;
            tx.execute("DELETE FROM log_nodes WHERE node = $1", &[&node])
                .await?;
            let rooms = tx
                .execute(
                    "UPDATE log_keys k SET idle_since_us = $1
                     WHERE idle_since_us IS NULL
                       AND NOT EXISTS (SELECT 1 FROM log_nodes n WHERE n.module = k.module AND n.key = k.key)",
                    &[&big(now_us)],
                )
                .await?;
            tx.commit().await?;
            Ok(Recovered {
                sessions: open.len(),
                rooms: rooms as usize,
            })
        })
    }
}

/// Marks `module`'s logs of `keys` in use by `node`: not idle, whatever they were.
async fn mark_in_use(
    tx: &Transaction<'_>,
    module: &str,
    keys: &[&str],
    node: &str,
) -> Result<(), StorageError> {
    tx.execute(
        "INSERT INTO log_nodes (module, key, node) SELECT $1::text, unnest($2::text[]), $3::text
         ON CONFLICT DO NOTHING",
        &[&module, &keys, &node],
    )
    .await?;
    tx.execute(
        "UPDATE log_keys SET idle_since_us = NULL
         WHERE module = $1 AND key = ANY($2) AND idle_since_us IS NOT NULL",
        &[&module, &keys],
    )
    .await?;
    Ok(())
}

/// Deletes `module`'s logs of `keys`, with their rows of `log_keys` and `log_nodes`; returns
/// how many.
async fn delete_logs(
    tx: &Transaction<'_>,
    module: &str,
    keys: &[String],
) -> Result<usize, StorageError> {
    for key in keys {
        tx.execute(
            "DELETE FROM logs WHERE module = $1 AND key = $2",
            &[&module, key],
        )
        .await?;
        tx.execute(
            "DELETE FROM log_keys WHERE module = $1 AND key = $2",
            &[&module, key],
        )
        .await?;
        tx.execute(
            "DELETE FROM log_nodes WHERE module = $1 AND key = $2",
            &[&module, key],
        )
        .await?;
    }
    Ok(keys.len())
}

/// Writes `records` to the session log as node `node`, in one statement.
async fn insert_sessions(
    tx: &Transaction<'_>,
    node: &str,
    records: &[&SessionRecord],
) -> Result<(), StorageError> {
    if records.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = records.iter().map(|r| big(r.session_id)).collect();
    let peers: Vec<&str> = records.iter().map(|r| r.peer.as_str()).collect();
    let names: Vec<Option<&str>> = records.iter().map(|r| r.username.as_deref()).collect();
    let from: Vec<i64> = records.iter().map(|r| big(r.connected_at_us)).collect();
    let to: Vec<i64> = records.iter().map(|r| big(r.disconnected_at_us)).collect();
    let reasons: Vec<&str> = records.iter().map(|r| r.reason.as_str()).collect();
    tx.execute(
        "INSERT INTO sessions
         (node, session_id, peer, username, connected_at_us, disconnected_at_us, reason)
         SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::bigint[],
                                  $6::bigint[], $7::text[])",
        &[&node, &ids, &peers, &names, &from, &to, &reasons],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The module whose logs the tests write.
    const M: &str = "rooms";

    /// The test's PostgreSQL server, or `None` after saying in one line why there is none.
    fn server(test: &str) -> Option<&'static testkit::Postgres> {
        match testkit::postgres() {
            Ok(server) => Some(server),
            Err(why) => {
                eprintln!("skipped {test}: {why}");
                None
            }
        }
    }

    #[test]
    fn postgres_meets_the_storage_contract() {
        let Some(pg) = server("postgres_meets_the_storage_contract") else {
            return;
        };
        super::super::conformance::all(&|| {
            Box::new(PostgresStorage::connect(&pg.fresh_database(), "n1").unwrap())
        });
    }

    #[test]
    fn nodes_recover_only_their_own_sessions_and_share_rooms() {
        let Some(pg) = server("nodes_recover_only_their_own_sessions_and_share_rooms") else {
            return;
        };
        let url = pg.fresh_database();
        let mut a = PostgresStorage::connect(&url, "a").unwrap();
        let mut b = PostgresStorage::connect(&url, "b").unwrap();
        let opened = |id| SessionLogEntry::Opened {
            session_id: id,
            peer: "127.0.0.1:9".into(),
            connected_at_us: 1,
        };
        // Both nodes number their sessions from 1.
        a.record_sessions(&[opened(1)], 100).unwrap();
        b.record_sessions(&[opened(1), opened(2)], 100).unwrap();
        let line = LogEntry {
            key: "lobby".into(),
            at_us: 2,
            data: bytes::Bytes::from_static(b"hi"),
        };
        let limits = LogLimits {
            entries: 10,
            max_logs: 10,
        };
        a.log_append(M, std::slice::from_ref(&line), limits)
            .unwrap();
        b.logs_in_use(M, &["lobby".into()]).unwrap();
        // A node restarting closes its own sessions, and lets go of its rooms only.
        let recovered = a.recover(50).unwrap();
        assert_eq!(recovered.sessions, 1);
        assert_eq!(recovered.rooms, 0, "b still has lobby in use");
        assert_eq!(b.prune_logs(M, 1_000).unwrap(), 0);
        b.logs_idle(M, &["lobby".into()], 60).unwrap();
        assert_eq!(b.recover(70).unwrap().sessions, 2);
        assert_eq!(a.log_tail(M, "lobby", 10).unwrap(), vec![line]);
        assert_eq!(a.prune_logs(M, 61).unwrap(), 1, "emptied when b let go");
        // An account made through one node is there for the other.
        let ann = a.create_account("Ann", "hash", 1).unwrap().unwrap();
        assert_eq!(b.account("ann").unwrap(), Some(ann.clone()));
        assert_eq!(b.create_account("ANN", "other", 2).unwrap(), None);
        b.insert_token(b"t", ann.id, 1, 1_000).unwrap();
        assert_eq!(a.token_account(b"t", 2).unwrap(), Some(ann));
    }

    #[test]
    fn nodes_starting_at_once_migrate_once_and_a_newer_schema_is_refused() {
        let Some(pg) = server("nodes_starting_at_once_migrate_once_and_a_newer_schema_is_refused")
        else {
            return;
        };
        let url = pg.fresh_database();
        let nodes: Vec<_> = (0..4)
            .map(|i| {
                let url = url.clone();
                std::thread::spawn(move || PostgresStorage::connect(&url, &format!("n{i}")))
            })
            .collect();
        for node in nodes {
            let mut storage = node.join().unwrap().unwrap();
            assert_eq!(storage.schema_version().unwrap(), MIGRATIONS.len() as i64);
        }
        testkit::Postgres::sql_in(&url, "UPDATE schema_version SET version = 99");
        match PostgresStorage::connect(&url, "n0") {
            Err(StorageError::SchemaTooNew { found, supported }) => {
                assert_eq!((found, supported), (99, MIGRATIONS.len() as i64));
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn room_history_of_the_schema_before_logs_moves_into_the_rooms_logs() {
        let Some(pg) = server("room_history_of_the_schema_before_logs_moves_into_the_rooms_logs")
        else {
            return;
        };
        let url = pg.fresh_database();
        {
            // A database of schema 2, with history in its tables.
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            let mut sql = String::from(
                "CREATE TABLE schema_version (version BIGINT NOT NULL);
                 INSERT INTO schema_version VALUES (2);",
            );
            for migration in &MIGRATIONS[..LOGS_MIGRATION] {
                sql.push_str(migration);
                sql.push(';');
            }
            sql.push_str(
                "INSERT INTO history (room, sender, content, sent_at_us, server_time_us) VALUES
                     ('lobby', 'ann', 'line 0', 0, 100), ('lobby', 'ann', 'line 1', 1, 101),
                     ('docks', 'ann', 'ahoy', 7, 107);
                 INSERT INTO history_rooms VALUES ('lobby', NULL), ('docks', 500);
                 INSERT INTO room_nodes VALUES ('lobby', 'b');",
            );
            client.batch_execute(&sql).unwrap();
        }
        let mut a = PostgresStorage::connect(&url, "a").unwrap();
        assert_eq!(a.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let lines = |s: &mut PostgresStorage, room: &str| {
            super::super::chat_lines(s.log_tail(M, room, 10).unwrap(), room)
        };
        assert_eq!(
            lines(&mut a, "lobby"),
            [("line 0".into(), 0, 100), ("line 1".into(), 1, 101)]
        );
        assert_eq!(lines(&mut a, "docks"), [("ahoy".into(), 7, 107)]);
        // Node b still has the lobby in use: a letting it go leaves it in use.
        a.logs_idle(M, &["lobby".into()], 600).unwrap();
        assert_eq!(a.prune_logs(M, 1_000).unwrap(), 1, "the docks only");
        assert_eq!(lines(&mut a, "lobby").len(), 2);
    }

    #[test]
    fn a_server_restarted_is_connected_again_and_what_was_written_is_there() {
        let Some(mut pg) = testkit::OwnPostgres::for_test(
            "a_server_restarted_is_connected_again_and_what_was_written_is_there",
        ) else {
            return;
        };
        let url = pg.server().fresh_database();
        let mut s = PostgresStorage::connect(&url, "n1").unwrap();
        s.create_account("ann", "h", 1).unwrap().unwrap();
        // The WAL writer has it (the test server does not wait for it at commit).
        std::thread::sleep(Duration::from_secs(1));
        pg.stop_immediate();
        // Gone: every call fails at once, and says so, rather than waiting.
        let started = Instant::now();
        let _ = s.account("ann");
        for _ in 0..3 {
            match s.account("ann") {
                Err(StorageError::Unavailable(_)) => {}
                other => panic!("{other:?}"),
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        pg.start_again().unwrap();
        // Back within a few seconds, by itself, with what was written before.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match s.account("ann") {
                Ok(found) => {
                    assert!(found.is_some(), "the account survived the restart");
                    break;
                }
                Err(e) => {
                    assert!(Instant::now() < deadline, "not connected again: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        assert!(s.create_account("bob", "h", 2).unwrap().is_some());
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
    }

    #[test]
    fn a_server_that_stops_answering_is_given_up_on_and_connected_again() {
        let Some(pg) = testkit::OwnPostgres::for_test(
            "a_server_that_stops_answering_is_given_up_on_and_connected_again",
        ) else {
            return;
        };
        let url = pg.server().fresh_database();
        let mut s = PostgresStorage::connect(&url, "n1").unwrap();
        s.create_account("ann", "h", 1).unwrap().unwrap();
        // Paused: the connection stays open and nothing answers.
        pg.pause();
        let started = Instant::now();
        match s.account("ann") {
            Err(StorageError::Unavailable(why)) => assert!(why.contains("no answer"), "{why}"),
            other => panic!("{other:?}"),
        }
        let waited = started.elapsed();
        assert!(
            waited >= QUERY_TIMEOUT && waited < QUERY_TIMEOUT + Duration::from_secs(2),
            "{waited:?}"
        );
        // Then each call waits for one attempt to connect at most, or for nothing.
        for _ in 0..3 {
            let started = Instant::now();
            match s.account("ann") {
                Err(StorageError::Unavailable(_)) => {}
                other => panic!("{other:?}"),
            }
            assert!(
                started.elapsed() <= RECONNECT_TIMEOUT + Duration::from_millis(500),
                "{:?}",
                started.elapsed()
            );
        }
        pg.resume();
        let resumed = Instant::now();
        let deadline = resumed + Duration::from_secs(10);
        loop {
            match s.account("ann") {
                Ok(found) => {
                    assert!(found.is_some());
                    break;
                }
                Err(e) => {
                    assert!(Instant::now() < deadline, "not connected again: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        eprintln!(
            "answered again {:.2} s after the server went on",
            resumed.elapsed().as_secs_f64()
        );
        assert!(s.create_account("bob", "h", 2).unwrap().is_some());
    }

    #[test]
    fn an_unreachable_server_is_named_in_one_line() {
        let port = testkit::free_port();
        let url = format!("postgres://world@127.0.0.1:{port}/world");
        let error = PostgresStorage::connect(&url, "n").err().unwrap();
        assert!(matches!(error, StorageError::Connect(_)), "{error}");
        assert!(error.to_string().starts_with("cannot connect: "), "{error}");
        assert!(!error.to_string().contains('\n'), "{error}");
        let error = PostgresStorage::connect("postgres://a:b@[nonsense", "n")
            .err()
            .unwrap();
        assert!(matches!(error, StorageError::Connect(_)), "{error}");
    }
}
