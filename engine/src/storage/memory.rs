//! [`MemoryStorage`]: accounts, tokens, history and the session log in the process's memory,
//! for a game that keeps nothing past a run (its players are guests) and so needs no database
//! file, nor SQLite built in (`storage.backend = "memory"`). Everything goes when the server
//! stops. It behaves as the other storages do, by the same contract suite, and never fails.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::{
    username_key, Account, HistoryLimits, HistoryLine, Recovered, SessionLogEntry, SessionRecord,
    Storage, StorageError, UNCLEAN_STOP,
};

/// A token as kept: whose, until when, and when it was revoked.
#[derive(Debug)]
struct Token {
    account: u64,
    expires_at_us: u64,
    revoked: bool,
}

/// A room's stored history.
#[derive(Debug, Default)]
struct Room {
    /// The last lines, oldest first.
    lines: VecDeque<HistoryLine>,
    /// When it was emptied; `None` while in use.
    emptied_at_us: Option<u64>,
}

/// A session open in the log: its peer, when it connected, and the name it logged in as.
#[derive(Debug)]
struct OpenSession {
    peer: String,
    username: Option<String>,
    connected_at_us: u64,
}

/// Storage in memory; see the [module](self).
#[derive(Debug, Default)]
pub struct MemoryStorage {
    /// Accounts by id, from 1.
    accounts: Vec<Account>,
    /// Account ids by [`username_key`].
    by_name: HashMap<String, u64>,
    tokens: HashMap<Vec<u8>, Token>,
    /// Rooms with history, by name (ordered, so that choices among equals are always the
    /// same).
    rooms: BTreeMap<String, Room>,
    open_sessions: BTreeMap<u64, OpenSession>,
    /// Ended sessions, oldest first.
    sessions: VecDeque<SessionRecord>,
}

impl MemoryStorage {
    /// An empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    fn account_by_id(&self, id: u64) -> Option<Account> {
        let index = usize::try_from(id.checked_sub(1)?).ok()?;
        self.accounts.get(index).cloned()
    }

    /// Deletes the history of `rooms`; returns how many had some.
    fn delete_rooms(&mut self, rooms: &[String]) -> usize {
        rooms
            .iter()
            .filter(|room| self.rooms.remove(room.as_str()).is_some())
            .count()
    }
}

impl Storage for MemoryStorage {
    fn account(&mut self, username: &str) -> Result<Option<Account>, StorageError> {
        Ok(self
            .by_name
            .get(&username_key(username))
            .and_then(|id| self.account_by_id(*id)))
    }

    fn create_account(
        &mut self,
        username: &str,
        password_hash: &str,
        _now_us: u64,
    ) -> Result<Option<Account>, StorageError> {
        let key = username_key(username);
        if self.by_name.contains_key(&key) {
            return Ok(None);
        }
        let account = Account {
            id: self.accounts.len() as u64 + 1,
            username: username.to_string(),
            password_hash: password_hash.to_string(),
        };
        self.by_name.insert(key, account.id);
        self.accounts.push(account.clone());
        Ok(Some(account))
    }

    fn insert_token(
        &mut self,
        token_hash: &[u8],
        user_id: u64,
        _now_us: u64,
        expires_at_us: u64,
    ) -> Result<(), StorageError> {
        self.tokens.insert(
            token_hash.to_vec(),
            Token {
                account: user_id,
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
        Ok(self
            .tokens
            .get(token_hash)
            .filter(|t| !t.revoked && t.expires_at_us > now_us)
            .and_then(|t| self.account_by_id(t.account)))
    }

    fn prune_tokens(&mut self, now_us: u64) -> Result<usize, StorageError> {
        let before = self.tokens.len();
        self.tokens
            .retain(|_, t| !t.revoked && t.expires_at_us > now_us);
        Ok(before - self.tokens.len())
    }

    fn revoke_token(&mut self, token_hash: &[u8], _now_us: u64) -> Result<bool, StorageError> {
        Ok(match self.tokens.get_mut(token_hash) {
            Some(token) if !token.revoked => {
                token.revoked = true;
                true
            }
            _ => false,
        })
    }

    fn append_history(
        &mut self,
        lines: &[HistoryLine],
        limits: HistoryLimits,
    ) -> Result<usize, StorageError> {
        let mut new_rooms = false;
        for line in lines {
            let room = match self.rooms.get_mut(&line.room) {
                Some(room) => room,
                None => {
                    new_rooms = true;
                    self.rooms.entry(line.room.clone()).or_default()
                }
            };
            room.emptied_at_us = None;
            room.lines.push_back(line.clone());
            while room.lines.len() > limits.lines {
                room.lines.pop_front();
            }
        }
        let over = self.rooms.len().saturating_sub(limits.max_rooms);
        if !new_rooms || over == 0 {
            return Ok(0);
        }
        // The rooms empty the longest go first (ties by name); rooms in use never.
        let mut emptied: Vec<(u64, &String)> = self
            .rooms
            .iter()
            .filter_map(|(name, room)| room.emptied_at_us.map(|at| (at, name)))
            .collect();
        emptied.sort_unstable();
        let oldest: Vec<String> = emptied
            .into_iter()
            .take(over)
            .map(|(_, name)| name.clone())
            .collect();
        Ok(self.delete_rooms(&oldest))
    }

    fn rooms_in_use(&mut self, rooms: &[String]) -> Result<(), StorageError> {
        for name in rooms {
            if let Some(room) = self.rooms.get_mut(name) {
                room.emptied_at_us = None;
            }
        }
        Ok(())
    }

    fn rooms_emptied(&mut self, rooms: &[String], now_us: u64) -> Result<(), StorageError> {
        for name in rooms {
            if let Some(room) = self.rooms.get_mut(name) {
                room.emptied_at_us = Some(now_us);
            }
        }
        Ok(())
    }

    fn prune_history(&mut self, before_us: u64) -> Result<usize, StorageError> {
        let old: Vec<String> = self
            .rooms
            .iter()
            .filter(|(_, room)| room.emptied_at_us.is_some_and(|at| at < before_us))
            .map(|(name, _)| name.clone())
            .collect();
        Ok(self.delete_rooms(&old))
    }

    fn history(&mut self, room: &str, limit: usize) -> Result<Vec<HistoryLine>, StorageError> {
        Ok(self.rooms.get(room).map_or_else(Vec::new, |room| {
            let skip = room.lines.len().saturating_sub(limit);
            room.lines.iter().skip(skip).cloned().collect()
        }))
    }

    fn prune_sessions(&mut self, before_us: u64) -> Result<usize, StorageError> {
        let before = self.sessions.len();
        self.sessions
            .retain(|record| record.disconnected_at_us >= before_us);
        Ok(before - self.sessions.len())
    }

    fn record_sessions(
        &mut self,
        entries: &[SessionLogEntry],
        max_rows: u64,
    ) -> Result<(), StorageError> {
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
                    self.open_sessions.remove(&record.session_id);
                    self.sessions.push_back(record.clone());
                }
            }
        }
        let max = usize::try_from(max_rows).unwrap_or(usize::MAX);
        while self.sessions.len() > max {
            self.sessions.pop_front();
        }
        Ok(())
    }

    fn recover(&mut self, now_us: u64) -> Result<Recovered, StorageError> {
        let open = std::mem::take(&mut self.open_sessions);
        let sessions = open.len();
        for (session_id, open) in open {
            self.sessions.push_back(SessionRecord {
                session_id,
                peer: open.peer,
                username: open.username,
                connected_at_us: open.connected_at_us,
                disconnected_at_us: now_us,
                reason: UNCLEAN_STOP.to_string(),
            });
        }
        let mut rooms = 0;
        for room in self.rooms.values_mut() {
            if room.emptied_at_us.is_none() {
                room.emptied_at_us = Some(now_us);
                rooms += 1;
            }
        }
        Ok(Recovered { sessions, rooms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_storage_keeps_the_storage_contract() {
        super::super::conformance::all(&|| Box::new(MemoryStorage::new()));
    }

    #[test]
    fn the_session_log_keeps_its_newest_rows_and_prunes_by_age() {
        let mut s = MemoryStorage::new();
        let record = |id: u64| SessionRecord {
            session_id: id,
            peer: "127.0.0.1:1".into(),
            username: None,
            connected_at_us: id,
            disconnected_at_us: id * 10,
            reason: "peer closed".into(),
        };
        let entries: Vec<SessionLogEntry> = (1..=5)
            .map(|id| SessionLogEntry::Closed(record(id)))
            .collect();
        s.record_sessions(&entries, 3).unwrap();
        let kept: Vec<u64> = s.sessions.iter().map(|r| r.session_id).collect();
        assert_eq!(kept, [3, 4, 5]);
        assert_eq!(s.prune_sessions(45).unwrap(), 2, "ended at 30 and 40");
        assert_eq!(s.sessions.len(), 1);
    }

    #[test]
    fn a_token_of_an_unknown_account_finds_nobody() {
        let mut s = MemoryStorage::new();
        s.insert_token(b"t", 7, 0, 100).unwrap();
        assert_eq!(s.token_account(b"t", 1).unwrap(), None);
    }
}
