//! [`MemoryStorage`]: accounts, tokens, the session log and the modules' records and logs in
//! the process's
//! memory, for a game that needs no database file (`storage.backend = "memory"`): one without
//! accounts of its own to keep, or whose accounts need not outlive a run. It needs neither
//! SQLite nor PostgreSQL built in. Everything it holds lasts until the process stops, and goes
//! with it.
//!
//! It keeps the same contract as the databases, by the same suite, down to what their
//! queries return: accounts unique by [`username_key`] and numbered from 1, tokens by hash
//! with expiry and revocation, each log's newest [`LogLimits::entries`] entries, a module's
//! logs capped by deleting those idle the longest (ties by key; never one in use), and a
//! session log whose records are numbered as SQLite numbers its rows. It never
//! returns an error.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{
    username_key, Account, LogEntry, LogLimits, Recovered, SessionLogEntry, SessionRecord, Storage,
    StorageError, UNCLEAN_STOP,
};

/// A token as kept: whose, until when, and whether it was revoked.
#[derive(Debug)]
struct Token {
    account_id: u64,
    expires_at_us: u64,
    revoked: bool,
}

/// A log of a module.
#[derive(Debug, Default)]
struct Log {
    /// Its newest entries, oldest first.
    entries: VecDeque<LogEntry>,
    /// Since when it is idle; `None` while in use.
    emptied_at_us: Option<u64>,
}

/// The logs of one module.
#[derive(Debug, Default)]
struct Logs {
    /// By key.
    rooms: HashMap<String, Log>,
    /// The logs not in use, by when they went idle, then by key: exactly those of `rooms`
    /// whose `emptied_at_us` is set, under it.
    emptied: BTreeMap<u64, BTreeSet<String>>,
}

/// A session open in the log: its peer, when it connected, the name it logged in as.
#[derive(Debug)]
struct OpenSession {
    peer: String,
    username: Option<String>,
    connected_at_us: u64,
}

/// A record of the session log with its row number: one more than the newest row's, or 1 when
/// the log is empty; `max_rows` counts back from the newest number.
#[derive(Debug)]
struct SessionRow {
    id: u64,
    record: SessionRecord,
}

/// Storage in the process's memory (`storage.backend = "memory"`): accounts, tokens, room
/// history, the session log and the modules' records until the process stops, kept by the
/// same contract as the databases (the same test suite), and never failing.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    /// Accounts in the order they were created: the one with id `n` at index `n - 1`.
    accounts: Vec<Account>,
    /// Account ids by [`username_key`].
    account_ids: HashMap<String, u64>,
    /// Tokens by hash.
    tokens: HashMap<Vec<u8>, Token>,
    /// The modules' logs, by module.
    logs: HashMap<String, Logs>,
    /// Sessions open in the log, by session id.
    open_sessions: BTreeMap<u64, OpenSession>,
    /// The session log, oldest row first (row numbers increasing).
    sessions: VecDeque<SessionRow>,
    /// The modules' own records, by module and key.
    module_data: HashMap<(String, String), Vec<u8>>,
    /// While true, every call fails as a database that went away does (see
    /// [`MemoryStorage::outage_switch`]).
    down: Arc<AtomicBool>,
}

impl MemoryStorage {
    /// An empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// A switch that takes this storage away while it is on: every call fails with
    /// [`StorageError::Unavailable`], as a database that restarts or is cut off, until it is
    /// off again, with nothing lost. For tests of what a game does meanwhile.
    pub fn outage_switch(&self) -> Arc<AtomicBool> {
        self.down.clone()
    }

    fn up(&self) -> Result<(), StorageError> {
        if self.down.load(Ordering::Relaxed) {
            return Err(StorageError::Unavailable(
                "the storage is switched off".into(),
            ));
        }
        Ok(())
    }

    fn account_by_id(&self, id: u64) -> Option<&Account> {
        let index = usize::try_from(id.checked_sub(1)?).ok()?;
        self.accounts.get(index)
    }

    /// Appends a record to the session log.
    fn push_session(&mut self, record: SessionRecord) {
        let id = self.sessions.back().map_or(1, |newest| newest.id + 1);
        self.sessions.push_back(SessionRow { id, record });
    }

    /// The logs of `module`.
    fn logs(&mut self, module: &str) -> &mut Logs {
        self.logs.entry(module.to_string()).or_default()
    }
}

impl Logs {
    /// Marks `name` in use, if it has a log.
    fn mark_in_use(&mut self, name: &str) {
        if let Some(at) = self
            .rooms
            .get_mut(name)
            .and_then(|room| room.emptied_at_us.take())
        {
            unindex(&mut self.emptied, at, name);
        }
    }

    /// Marks `name` idle since `now_us`, if it has a log.
    fn mark_emptied(&mut self, name: &str, now_us: u64) {
        let Some(room) = self.rooms.get_mut(name) else {
            return;
        };
        if let Some(at) = room.emptied_at_us.replace(now_us) {
            unindex(&mut self.emptied, at, name);
        }
        self.emptied
            .entry(now_us)
            .or_default()
            .insert(name.to_string());
    }

    /// Deletes the log of `name`; whether there was one.
    fn delete_room(&mut self, name: &str) -> bool {
        let Some(room) = self.rooms.remove(name) else {
            return false;
        };
        if let Some(at) = room.emptied_at_us {
            unindex(&mut self.emptied, at, name);
        }
        true
    }
}

/// Takes `name` out of the index of emptied rooms, where it is under `at`.
fn unindex(emptied: &mut BTreeMap<u64, BTreeSet<String>>, at: u64, name: &str) {
    if let Some(names) = emptied.get_mut(&at) {
        names.remove(name);
        if names.is_empty() {
            emptied.remove(&at);
        }
    }
}

impl Storage for MemoryStorage {
    fn account(&mut self, username: &str) -> Result<Option<Account>, StorageError> {
        self.up()?;
        Ok(self
            .account_ids
            .get(&username_key(username))
            .and_then(|&id| self.account_by_id(id))
            .cloned())
    }

    fn create_account(
        &mut self,
        username: &str,
        password_hash: &str,
        _now_us: u64,
    ) -> Result<Option<Account>, StorageError> {
        self.up()?;
        let key = username_key(username);
        if self.account_ids.contains_key(&key) {
            return Ok(None);
        }
        let account = Account {
            id: self.accounts.len() as u64 + 1,
            username: username.to_string(),
            password_hash: password_hash.to_string(),
        };
        self.account_ids.insert(key, account.id);
        self.accounts.push(account.clone());
        Ok(Some(account))
    }

    /// A hash stored again replaces the token it named (the databases refuse it: token hashes
    /// are unique, and drawn at random).
    fn insert_token(
        &mut self,
        token_hash: &[u8],
        user_id: u64,
        _now_us: u64,
        expires_at_us: u64,
    ) -> Result<(), StorageError> {
        self.up()?;
        self.tokens.insert(
            token_hash.to_vec(),
            Token {
                account_id: user_id,
                expires_at_us,
                revoked: false,
            },
        );
        Ok(())
    }

    fn token_account(
        &mut self,
        token_hash: &[u8],
        now_us: u64,
    ) -> Result<Option<Account>, StorageError> {
        self.up()?;
        Ok(self
            .tokens
            .get(token_hash)
            .filter(|token| !token.revoked && token.expires_at_us > now_us)
            .and_then(|token| self.account_by_id(token.account_id))
            .cloned())
    }

    fn prune_tokens(&mut self, now_us: u64) -> Result<usize, StorageError> {
        self.up()?;
        let before = self.tokens.len();
        self.tokens
            .retain(|_, token| !token.revoked && token.expires_at_us > now_us);
        Ok(before - self.tokens.len())
    }

    /// As the databases do, a token expired but not yet pruned can still be revoked (and
    /// counts as revoked now).
    fn revoke_token(&mut self, token_hash: &[u8], _now_us: u64) -> Result<bool, StorageError> {
        self.up()?;
        Ok(match self.tokens.get_mut(token_hash) {
            Some(token) if !token.revoked => {
                token.revoked = true;
                true
            }
            _ => false,
        })
    }

    fn module_get(&mut self, module: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.up()?;
        Ok(self
            .module_data
            .get(&(module.to_string(), key.to_string()))
            .cloned())
    }

    fn module_put(&mut self, module: &str, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.up()?;
        self.module_data
            .insert((module.to_string(), key.to_string()), value.to_vec());
        Ok(())
    }

    fn module_delete(&mut self, module: &str, key: &str) -> Result<bool, StorageError> {
        self.up()?;
        Ok(self
            .module_data
            .remove(&(module.to_string(), key.to_string()))
            .is_some())
    }

    fn log_append(
        &mut self,
        module: &str,
        entries: &[LogEntry],
        limits: LogLimits,
    ) -> Result<usize, StorageError> {
        self.up()?;
        let logs = self.logs(module);
        let mut new_log = false;
        for entry in entries {
            if let Some(log) = logs.rooms.get_mut(&entry.key) {
                if let Some(at) = log.emptied_at_us.take() {
                    unindex(&mut logs.emptied, at, &entry.key);
                }
            } else {
                logs.rooms.insert(entry.key.clone(), Log::default());
                new_log = true;
            }
            let log = logs
                .rooms
                .get_mut(&entry.key)
                .expect("the log was just found or added");
            log.entries.push_back(entry.clone());
            while log.entries.len() > limits.entries {
                log.entries.pop_front();
            }
        }
        let over = logs.rooms.len().saturating_sub(limits.max_logs);
        if !new_log || over == 0 {
            return Ok(0);
        }
        let oldest: Vec<String> = logs
            .emptied
            .values()
            .flatten()
            .take(over)
            .cloned()
            .collect();
        for name in &oldest {
            logs.delete_room(name);
        }
        Ok(oldest.len())
    }

    fn logs_in_use(&mut self, module: &str, keys: &[String]) -> Result<(), StorageError> {
        self.up()?;
        let logs = self.logs(module);
        for name in keys {
            logs.mark_in_use(name);
        }
        Ok(())
    }

    fn logs_idle(
        &mut self,
        module: &str,
        keys: &[String],
        now_us: u64,
    ) -> Result<(), StorageError> {
        self.up()?;
        let logs = self.logs(module);
        for name in keys {
            logs.mark_emptied(name, now_us);
        }
        Ok(())
    }

    fn prune_logs(&mut self, module: &str, before_us: u64) -> Result<usize, StorageError> {
        self.up()?;
        let logs = self.logs(module);
        let kept = logs.emptied.split_off(&before_us);
        let old = std::mem::replace(&mut logs.emptied, kept);
        let mut deleted = 0;
        for name in old.into_values().flatten() {
            logs.rooms.remove(&name);
            deleted += 1;
        }
        Ok(deleted)
    }

    fn log_tail(
        &mut self,
        module: &str,
        key: &str,
        limit: usize,
    ) -> Result<Vec<LogEntry>, StorageError> {
        self.up()?;
        Ok(self
            .logs(module)
            .rooms
            .get(key)
            .map_or_else(Vec::new, |log| {
                let skip = log.entries.len().saturating_sub(limit);
                log.entries.range(skip..).cloned().collect()
            }))
    }

    fn prune_sessions(&mut self, before_us: u64) -> Result<usize, StorageError> {
        self.up()?;
        let before = self.sessions.len();
        self.sessions
            .retain(|row| row.record.disconnected_at_us >= before_us);
        Ok(before - self.sessions.len())
    }

    /// Rows more than `max_rows` below the newest row's number go, as in SQLite: after
    /// [`prune_sessions`](Storage::prune_sessions) has taken rows from the middle, that can be
    /// fewer than `max_rows` rows kept. An empty batch changes nothing.
    fn record_sessions(
        &mut self,
        entries: &[SessionLogEntry],
        max_rows: u64,
    ) -> Result<(), StorageError> {
        self.up()?;
        if entries.is_empty() {
            return Ok(());
        }
        for entry in entries {
            match entry {
                SessionLogEntry::Opened {
                    session_id,
                    peer,
                    connected_at_us,
                } => {
                    self.open_sessions.insert(
                        *session_id,
                        OpenSession {
                            peer: peer.clone(),
                            username: None,
                            connected_at_us: *connected_at_us,
                        },
                    );
                }
                SessionLogEntry::LoggedIn {
                    session_id,
                    username,
                } => {
                    if let Some(open) = self.open_sessions.get_mut(session_id) {
                        open.username = Some(username.clone());
                    }
                }
                SessionLogEntry::Closed(record) => {
                    self.push_session(record.clone());
                    self.open_sessions.remove(&record.session_id);
                }
            }
        }
        let newest = self.sessions.back().map_or(0, |row| row.id);
        if let Some(last_dropped) = newest.checked_sub(max_rows) {
            while self
                .sessions
                .front()
                .is_some_and(|row| row.id <= last_dropped)
            {
                self.sessions.pop_front();
            }
        }
        Ok(())
    }

    fn recover(&mut self, now_us: u64) -> Result<Recovered, StorageError> {
        self.up()?;
        let open = std::mem::take(&mut self.open_sessions);
        let sessions = open.len();
        for (session_id, open) in open {
            self.push_session(SessionRecord {
                session_id,
                peer: open.peer,
                username: open.username,
                connected_at_us: open.connected_at_us,
                disconnected_at_us: now_us,
                reason: UNCLEAN_STOP.to_string(),
            });
        }
        let mut rooms = 0;
        for logs in self.logs.values_mut() {
            for (name, log) in &mut logs.rooms {
                if log.emptied_at_us.is_none() {
                    log.emptied_at_us = Some(now_us);
                    logs.emptied.entry(now_us).or_default().insert(name.clone());
                    rooms += 1;
                }
            }
        }
        Ok(Recovered { sessions, rooms })
    }

    fn check(&mut self) -> Result<(), StorageError> {
        self.up()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The module whose logs the tests write.
    const M: &str = "rooms";

    #[test]
    fn memory_storage_meets_the_storage_contract() {
        super::super::conformance::all(&|| Box::new(MemoryStorage::new()));
    }

    fn line(room: &str, n: u64) -> LogEntry {
        LogEntry {
            key: room.into(),
            at_us: n + 1,
            data: bytes::Bytes::from(format!("line {n}")),
        }
    }

    fn closed(session_id: u64, disconnected_at_us: u64) -> SessionLogEntry {
        SessionLogEntry::Closed(SessionRecord {
            session_id,
            peer: "127.0.0.1:1".into(),
            username: None,
            connected_at_us: 0,
            disconnected_at_us,
            reason: "peer closed".into(),
        })
    }

    /// The rooms module's logs.
    fn logs(s: &MemoryStorage) -> &Logs {
        &s.logs[M]
    }

    fn rooms_with_history(s: &MemoryStorage) -> Vec<String> {
        let mut rooms: Vec<String> = logs(s).rooms.keys().cloned().collect();
        rooms.sort();
        rooms
    }

    /// The index of emptied rooms holds exactly the rooms not in use, under when they emptied.
    fn assert_index_consistent(s: &MemoryStorage) {
        let mut from_rooms: Vec<(u64, String)> = logs(s)
            .rooms
            .iter()
            .filter_map(|(name, room)| room.emptied_at_us.map(|at| (at, name.clone())))
            .collect();
        from_rooms.sort();
        let from_index: Vec<(u64, String)> = logs(s)
            .emptied
            .iter()
            .flat_map(|(&at, names)| {
                assert!(!names.is_empty(), "no empty set under {at}");
                names.iter().map(move |name| (at, name.clone()))
            })
            .collect();
        assert_eq!(from_index, from_rooms);
    }

    #[test]
    fn many_rooms_are_capped_by_those_empty_the_longest_ties_by_name() {
        let mut s = MemoryStorage::new();
        let cap = LogLimits {
            entries: 2,
            max_logs: 1_000,
        };
        let names: Vec<String> = (0..1_000).map(|i| format!("r{i:04}")).collect();
        for (i, name) in names.iter().enumerate() {
            s.log_append(M, &[line(name, i as u64)], cap).unwrap();
        }
        // Every tenth room stays in use; the others empty in tens, at the same time.
        let emptied: Vec<String> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 10 != 0)
            .map(|(_, name)| name.clone())
            .collect();
        for (batch, rooms) in emptied.chunks(10).enumerate() {
            s.logs_idle(M, rooms, 1_000 - batch as u64).unwrap();
        }
        assert_index_consistent(&s);
        // 25 new rooms in one batch: 25 over the cap.
        let new: Vec<LogEntry> = (0..25).map(|i| line(&format!("new{i:02}"), i)).collect();
        assert_eq!(s.log_append(M, &new, cap).unwrap(), 25);
        // The last batch emptied first (at 911), then the one before it, each by name.
        let expected: Vec<&String> = emptied.rchunks(10).flatten().take(25).collect();
        for name in &expected {
            assert!(s.log_tail(M, name, 5).unwrap().is_empty(), "{name} kept");
        }
        assert_eq!(logs(&s).rooms.len(), 1_000);
        assert_index_consistent(&s);
        // Only the rooms in use and the new ones left: the cap cannot be kept.
        s.logs_idle(M, &emptied, 5).unwrap();
        let more: Vec<LogEntry> = (0..2_000).map(|i| line(&format!("more{i}"), i)).collect();
        assert_eq!(s.log_append(M, &more, cap).unwrap(), 1_000 - 100 - 25);
        assert_eq!(logs(&s).rooms.len(), 100 + 25 + 2_000);
        assert!(logs(&s).emptied.is_empty());
        assert_index_consistent(&s);
    }

    #[test]
    fn rooms_emptied_again_move_in_the_order_and_lines_are_trimmed() {
        let mut s = MemoryStorage::new();
        let cap = LogLimits {
            entries: 3,
            max_logs: 2,
        };
        let lines: Vec<LogEntry> = (0..10).map(|n| line("a", n)).collect();
        s.log_append(M, &lines, cap).unwrap();
        assert_eq!(s.log_tail(M, "a", 10).unwrap(), lines[7..].to_vec());
        s.log_append(M, &[line("b", 1)], cap).unwrap();
        s.logs_idle(M, &["a".into(), "b".into()], 10).unwrap();
        // a empties again later: b is now the one empty the longest.
        s.logs_idle(M, &["a".into()], 20).unwrap();
        assert_eq!(s.log_append(M, &[line("c", 1)], cap).unwrap(), 1);
        assert_eq!(rooms_with_history(&s), ["a", "c"]);
        assert_index_consistent(&s);
        // No lines kept at all: the room still counts as one with history.
        let none = LogLimits {
            entries: 0,
            max_logs: 2,
        };
        assert_eq!(s.log_append(M, &[line("c", 2)], none).unwrap(), 0);
        assert!(s.log_tail(M, "c", 10).unwrap().is_empty());
        assert_eq!(rooms_with_history(&s), ["a", "c"]);
    }

    #[test]
    fn the_session_log_keeps_rows_within_max_rows_of_the_newest() {
        let mut s = MemoryStorage::new();
        let batch: Vec<SessionLogEntry> = (1..=5).map(|id| closed(id, id * 10)).collect();
        s.record_sessions(&batch, 3).unwrap();
        let kept = |s: &MemoryStorage| -> Vec<u64> {
            s.sessions.iter().map(|row| row.record.session_id).collect()
        };
        assert_eq!(kept(&s), [3, 4, 5]);
        // An empty batch trims nothing, whatever its max_rows.
        s.record_sessions(&[], 0).unwrap();
        assert_eq!(kept(&s), [3, 4, 5]);
        // A row taken from the middle leaves a gap in the numbers: with max_rows 3, only the
        // rows numbered 4 to 6 stay, and there are two.
        s.sessions[1].record.disconnected_at_us = 1;
        assert_eq!(s.prune_sessions(2).unwrap(), 1);
        s.record_sessions(&[closed(6, 60)], 3).unwrap();
        assert_eq!(kept(&s), [5, 6]);
        assert_eq!(s.prune_sessions(1_000).unwrap(), 2);
        // Emptied, the log numbers its rows from 1 again.
        s.record_sessions(&[closed(7, 70)], 1).unwrap();
        assert_eq!(s.sessions[0].id, 1);
    }

    #[test]
    fn a_token_of_an_unknown_account_finds_nobody() {
        let mut s = MemoryStorage::new();
        s.insert_token(b"t", 7, 0, 100).unwrap();
        assert_eq!(s.token_account(b"t", 1).unwrap(), None);
        s.insert_token(b"z", 0, 0, 100).unwrap();
        assert_eq!(s.token_account(b"z", 1).unwrap(), None);
    }

    /// The same operations, drawn at random, on this storage and on SQLite: every answer the
    /// same.
    #[cfg(feature = "sqlite")]
    #[test]
    fn memory_answers_as_sqlite_does() {
        use crate::storage::SqliteStorage;

        /// xorshift64*: enough randomness to vary the operations, the same on every run.
        struct Draw(u64);
        impl Draw {
            fn next(&mut self) -> u64 {
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
            }
            fn below(&mut self, n: u64) -> u64 {
                self.next() % n
            }
            fn rooms(&mut self) -> Vec<String> {
                (0..self.below(4))
                    .map(|_| format!("room{}", self.below(12)))
                    .collect()
            }
        }

        for seed in 1..=20u64 {
            let mut draw = Draw(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut memory = MemoryStorage::new();
            let mut sqlite = SqliteStorage::in_memory().unwrap();
            let m: &mut dyn Storage = &mut memory;
            let q: &mut dyn Storage = &mut sqlite;
            let mut now = 0u64;
            let mut accounts = 0u64;
            let mut tokens = 0u64;
            let mut session_ids = 0u64;
            for step in 0..1_500 {
                // A coarse clock: rooms often empty at the same time.
                now += draw.below(3) * 10;
                let at = format!("seed {seed} step {step}");
                match draw.below(14) {
                    0 => {
                        let name =
                            ["ann", "ANN", "Bob", "bob", "carol", "Dave"][draw.below(6) as usize];
                        let (a, b) = (
                            m.create_account(name, "h", now).unwrap(),
                            q.create_account(name, "h", now).unwrap(),
                        );
                        accounts += u64::from(a.is_some());
                        assert_eq!(a, b, "{at}");
                        let other = ["ann", "bob", "CAROL", "eve"][draw.below(4) as usize];
                        assert_eq!(m.account(other).unwrap(), q.account(other).unwrap(), "{at}");
                    }
                    1 if accounts > 0 => {
                        tokens += 1;
                        let user = 1 + draw.below(accounts);
                        let until = now + draw.below(100);
                        m.insert_token(&tokens.to_be_bytes(), user, now, until)
                            .unwrap();
                        q.insert_token(&tokens.to_be_bytes(), user, now, until)
                            .unwrap();
                    }
                    2 => {
                        let hash = (1 + draw.below(tokens + 1)).to_be_bytes();
                        let t = now + draw.below(50);
                        assert_eq!(
                            m.token_account(&hash, t).unwrap(),
                            q.token_account(&hash, t).unwrap(),
                            "{at}"
                        );
                        if draw.below(3) == 0 {
                            assert_eq!(
                                m.revoke_token(&hash, now).unwrap(),
                                q.revoke_token(&hash, now).unwrap(),
                                "{at}"
                            );
                        }
                    }
                    3 => {
                        assert_eq!(m.prune_tokens(now).unwrap(), q.prune_tokens(now).unwrap());
                    }
                    4..=6 => {
                        let lines: Vec<LogEntry> = (0..1 + draw.below(6))
                            .map(|n| line(&format!("room{}", draw.below(12)), now + n))
                            .collect();
                        let limits = LogLimits {
                            entries: draw.below(5) as usize,
                            max_logs: draw.below(8) as usize,
                        };
                        assert_eq!(
                            m.log_append(M, &lines, limits).unwrap(),
                            q.log_append(M, &lines, limits).unwrap(),
                            "{at}"
                        );
                    }
                    7 => {
                        let rooms = draw.rooms();
                        m.logs_in_use(M, &rooms).unwrap();
                        q.logs_in_use(M, &rooms).unwrap();
                    }
                    8 => {
                        let rooms = draw.rooms();
                        m.logs_idle(M, &rooms, now).unwrap();
                        q.logs_idle(M, &rooms, now).unwrap();
                    }
                    9 => {
                        let before = now.saturating_sub(draw.below(100));
                        assert_eq!(
                            m.prune_logs(M, before).unwrap(),
                            q.prune_logs(M, before).unwrap(),
                            "{at}"
                        );
                    }
                    10 => {
                        let entries: Vec<SessionLogEntry> = (0..draw.below(6))
                            .map(|_| {
                                let id = match draw.below(3) {
                                    0 => {
                                        session_ids += 1;
                                        session_ids
                                    }
                                    _ => draw.below(session_ids + 1),
                                };
                                match draw.below(3) {
                                    0 => SessionLogEntry::Opened {
                                        session_id: id,
                                        peer: format!("10.0.0.{id}:1"),
                                        connected_at_us: now,
                                    },
                                    1 => SessionLogEntry::LoggedIn {
                                        session_id: id,
                                        username: "ann".into(),
                                    },
                                    // Ended any time: pruning leaves gaps in the log.
                                    _ => closed(id, draw.below(now + 1)),
                                }
                            })
                            .collect();
                        let max_rows = draw.below(12);
                        m.record_sessions(&entries, max_rows).unwrap();
                        q.record_sessions(&entries, max_rows).unwrap();
                    }
                    11 => {
                        // Now and then past every record: how many the log holds.
                        let before = match draw.below(5) {
                            0 => now + 1,
                            _ => draw.below(now + 1),
                        };
                        assert_eq!(
                            m.prune_sessions(before).unwrap(),
                            q.prune_sessions(before).unwrap(),
                            "{at}"
                        );
                    }
                    12 if draw.below(10) == 0 => {
                        assert_eq!(m.recover(now).unwrap(), q.recover(now).unwrap(), "{at}");
                    }
                    _ => {}
                }
                let room = format!("room{}", draw.below(12));
                let limit = draw.below(6) as usize;
                assert_eq!(
                    m.log_tail(M, &room, limit).unwrap(),
                    q.log_tail(M, &room, limit).unwrap(),
                    "{at}: {room}"
                );
            }
            assert_index_consistent(&memory);
        }
    }
}
