//! What every [`Storage`] must do, seen through the trait alone: one suite, run against SQLite
//! and against PostgreSQL (a real server the test starts; skipped, saying so, where
//! PostgreSQL is not installed).

use super::*;

/// The module whose logs the cases write.
const M: &str = "rooms";

/// A fresh, empty storage.
pub type Make<'a> = &'a dyn Fn() -> Box<dyn Storage>;

/// Runs every case, each on a fresh storage from `make`.
pub fn all(make: Make<'_>) {
    usernames_are_unique_ignoring_case(&mut *make());
    tokens_expire_revoke_and_prune(&mut *make());
    history_keeps_the_last_lines_per_room_oldest_first(&mut *make());
    rooms_with_history_are_capped_by_those_empty_the_longest(&mut *make());
    history_of_rooms_empty_past_the_retention_is_pruned(&mut *make());
    open_sessions_are_closed_by_the_next_start(&mut *make());
    a_module_keeps_its_own_records_apart_from_the_others(&mut *make());
    each_module_has_logs_of_its_own(&mut *make());
}

fn a_module_keeps_its_own_records_apart_from_the_others(s: &mut dyn Storage) {
    assert_eq!(s.module_get("votes", "lobby").unwrap(), None);
    s.module_put("votes", "lobby", b"1").unwrap();
    s.module_put("votes", "lobby", &[0, 255, 2]).unwrap();
    s.module_put("scores", "lobby", b"other").unwrap();
    s.module_put("votes", "Lobby", b"case").unwrap();
    assert_eq!(
        s.module_get("votes", "lobby").unwrap().as_deref(),
        Some(&[0, 255, 2][..])
    );
    assert_eq!(
        s.module_get("scores", "lobby").unwrap().as_deref(),
        Some(&b"other"[..])
    );
    assert_eq!(
        s.module_get("votes", "Lobby").unwrap().as_deref(),
        Some(&b"case"[..])
    );
    assert!(s.module_delete("votes", "lobby").unwrap());
    assert!(!s.module_delete("votes", "lobby").unwrap());
    assert_eq!(s.module_get("votes", "lobby").unwrap(), None);
    assert!(s.module_get("scores", "lobby").unwrap().is_some());
}

fn line(room: &str, n: u64) -> LogEntry {
    LogEntry {
        key: room.into(),
        at_us: 1_000 + n,
        data: bytes::Bytes::from(format!("line {n}")),
    }
}

fn limits(lines: usize, max_rooms: usize) -> LogLimits {
    LogLimits {
        entries: lines,
        max_logs: max_rooms,
    }
}

fn usernames_are_unique_ignoring_case(s: &mut dyn Storage) {
    let ann = s.create_account("Ann", "hash-a", 1).unwrap().unwrap();
    assert_eq!(ann.username, "Ann");
    assert_eq!(s.create_account("ANN", "hash-b", 2).unwrap(), None);
    let bob = s.create_account("bob", "hash-c", 3).unwrap().unwrap();
    assert_ne!(ann.id, bob.id);
    assert_eq!(s.account("aNN").unwrap(), Some(ann));
    assert_eq!(s.account("carol").unwrap(), None);
}

fn tokens_expire_revoke_and_prune(s: &mut dyn Storage) {
    let ann = s.create_account("ann", "h", 1).unwrap().unwrap();
    s.insert_token(b"live", ann.id, 10, 1_000).unwrap();
    s.insert_token(b"short", ann.id, 10, 100).unwrap();
    assert_eq!(s.token_account(b"live", 500).unwrap(), Some(ann.clone()));
    assert_eq!(
        s.token_account(b"short", 100).unwrap(),
        None,
        "expired at 100"
    );
    assert_eq!(s.token_account(b"nothing", 500).unwrap(), None);
    assert!(s.revoke_token(b"live", 600).unwrap());
    assert!(!s.revoke_token(b"live", 601).unwrap(), "already revoked");
    assert_eq!(s.token_account(b"live", 700).unwrap(), None);
    assert_eq!(s.prune_tokens(700).unwrap(), 2, "one revoked, one expired");
    assert_eq!(s.prune_tokens(700).unwrap(), 0);
}

fn history_keeps_the_last_lines_per_room_oldest_first(s: &mut dyn Storage) {
    let lines: Vec<LogEntry> = (0..8).map(|n| line("lobby", n)).collect();
    s.log_append(M, &lines[..5], limits(3, 100)).unwrap();
    s.log_append(M, &lines[5..], limits(3, 100)).unwrap();
    s.log_append(M, &[line("docks", 100)], limits(3, 100))
        .unwrap();
    assert_eq!(s.log_tail(M, "lobby", 10).unwrap(), lines[5..].to_vec());
    assert_eq!(s.log_tail(M, "lobby", 2).unwrap(), lines[6..].to_vec());
    assert_eq!(
        s.log_tail(M, "docks", 10).unwrap(),
        vec![line("docks", 100)]
    );
    assert_eq!(s.log_tail(M, "empty", 10).unwrap(), vec![]);
}

fn rooms_with_history_are_capped_by_those_empty_the_longest(s: &mut dyn Storage) {
    for (i, room) in ["a", "b", "c"].into_iter().enumerate() {
        s.log_append(M, &[line(room, i as u64)], limits(5, 3))
            .unwrap();
    }
    // a emptied first, then c; b stays in use.
    s.logs_idle(M, &["a".into()], 100).unwrap();
    s.logs_idle(M, &["c".into()], 200).unwrap();
    assert_eq!(
        s.log_append(M, &[line("d", 9)], limits(5, 3)).unwrap(),
        1,
        "one room over"
    );
    assert!(
        s.log_tail(M, "a", 5).unwrap().is_empty(),
        "emptied the longest"
    );
    for kept in ["b", "c", "d"] {
        assert_eq!(s.log_tail(M, kept, 5).unwrap().len(), 1, "{kept}");
    }
    // Rooms in use are never trimmed, even past the cap.
    s.logs_in_use(M, &["c".into()]).unwrap();
    assert_eq!(s.log_append(M, &[line("e", 10)], limits(5, 3)).unwrap(), 0);
    assert_eq!(s.log_tail(M, "c", 5).unwrap().len(), 1);
}

fn history_of_rooms_empty_past_the_retention_is_pruned(s: &mut dyn Storage) {
    s.log_append(
        M,
        &[line("old", 1), line("new", 2), line("busy", 3)],
        limits(5, 10),
    )
    .unwrap();
    s.logs_idle(M, &["old".into()], 100).unwrap();
    s.logs_idle(M, &["new".into()], 900).unwrap();
    assert_eq!(s.prune_logs(M, 500).unwrap(), 1);
    assert!(s.log_tail(M, "old", 5).unwrap().is_empty());
    assert_eq!(s.log_tail(M, "new", 5).unwrap().len(), 1);
    assert_eq!(s.log_tail(M, "busy", 5).unwrap().len(), 1, "in use");
    // Back in use: kept however old its emptying was.
    s.logs_in_use(M, &["new".into()]).unwrap();
    assert_eq!(s.prune_logs(M, 10_000).unwrap(), 0);
}

fn open_sessions_are_closed_by_the_next_start(s: &mut dyn Storage) {
    let closed = SessionRecord {
        session_id: 1,
        peer: "127.0.0.1:1".into(),
        username: Some("ann".into()),
        connected_at_us: 10,
        disconnected_at_us: 20,
        reason: "peer closed".into(),
    };
    s.record_sessions(
        &[
            SessionLogEntry::Opened {
                session_id: 1,
                peer: closed.peer.clone(),
                connected_at_us: 10,
            },
            SessionLogEntry::Opened {
                session_id: 2,
                peer: "127.0.0.1:2".into(),
                connected_at_us: 11,
            },
            SessionLogEntry::LoggedIn {
                session_id: 2,
                username: "bob".into(),
            },
            SessionLogEntry::Closed(closed),
        ],
        1_000,
    )
    .unwrap();
    s.log_append(M, &[line("lobby", 1)], limits(5, 10)).unwrap();
    let recovered = s.recover(5_000).unwrap();
    assert_eq!(
        recovered,
        Recovered {
            sessions: 1,
            rooms: 1
        },
        "bob's session, and the room in use"
    );
    assert_eq!(s.recover(6_000).unwrap(), Recovered::default(), "once");
    // The room counts as emptied at the recovery: pruned once past it.
    assert_eq!(s.prune_logs(M, 5_000).unwrap(), 0);
    assert_eq!(s.prune_logs(M, 5_001).unwrap(), 1);
}

fn each_module_has_logs_of_its_own(s: &mut dyn Storage) {
    // The same key in two modules: two logs.
    s.log_append(M, &[line("lobby", 1)], limits(5, 10)).unwrap();
    s.log_append("mail", &[line("lobby", 2), line("lobby", 3)], limits(5, 10))
        .unwrap();
    assert_eq!(s.log_tail(M, "lobby", 10).unwrap(), vec![line("lobby", 1)]);
    assert_eq!(s.log_tail("mail", "lobby", 10).unwrap().len(), 2);
    // Idle, pruned and capped each within its module.
    s.logs_idle("mail", &["lobby".into()], 100).unwrap();
    assert_eq!(s.prune_logs(M, 1_000).unwrap(), 0, "in use in its module");
    assert_eq!(s.prune_logs("mail", 1_000).unwrap(), 1);
    assert!(s.log_tail("mail", "lobby", 10).unwrap().is_empty());
    assert_eq!(s.log_tail(M, "lobby", 10).unwrap().len(), 1);
    s.log_append("mail", &[line("a", 1)], limits(5, 1)).unwrap();
    s.logs_idle("mail", &["a".into()], 100).unwrap();
    assert_eq!(
        s.log_append("mail", &[line("b", 1)], limits(5, 1)).unwrap(),
        1,
        "a goes: the rooms' log does not count against mail's cap"
    );
    assert_eq!(s.log_tail(M, "lobby", 10).unwrap().len(), 1);
    // Entries keep their bytes as given, whatever they are.
    let raw = LogEntry {
        key: "bin".into(),
        at_us: 7,
        data: bytes::Bytes::from_static(&[0, 255, 10, 0]),
    };
    s.log_append("mail", std::slice::from_ref(&raw), limits(5, 10))
        .unwrap();
    assert_eq!(s.log_tail("mail", "bin", 1).unwrap(), vec![raw]);
}
