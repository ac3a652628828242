//! What every [`Storage`] must do, seen through the trait alone: one suite, run against SQLite
//! and against PostgreSQL (a real server the test starts; skipped, saying so, where
//! PostgreSQL is not installed).

use super::*;

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

fn line(room: &str, n: u64) -> HistoryLine {
    HistoryLine {
        room: room.into(),
        from: "ann".into(),
        content: format!("line {n}"),
        sent_at_us: n,
        server_time_us: 1_000 + n,
    }
}

fn limits(lines: usize, max_rooms: usize) -> HistoryLimits {
    HistoryLimits { lines, max_rooms }
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
    let lines: Vec<HistoryLine> = (0..8).map(|n| line("lobby", n)).collect();
    s.append_history(&lines[..5], limits(3, 100)).unwrap();
    s.append_history(&lines[5..], limits(3, 100)).unwrap();
    s.append_history(&[line("docks", 100)], limits(3, 100))
        .unwrap();
    assert_eq!(s.history("lobby", 10).unwrap(), lines[5..].to_vec());
    assert_eq!(s.history("lobby", 2).unwrap(), lines[6..].to_vec());
    assert_eq!(s.history("docks", 10).unwrap(), vec![line("docks", 100)]);
    assert_eq!(s.history("empty", 10).unwrap(), vec![]);
}

fn rooms_with_history_are_capped_by_those_empty_the_longest(s: &mut dyn Storage) {
    for (i, room) in ["a", "b", "c"].into_iter().enumerate() {
        s.append_history(&[line(room, i as u64)], limits(5, 3))
            .unwrap();
    }
    // a emptied first, then c; b stays in use.
    s.rooms_emptied(&["a".into()], 100).unwrap();
    s.rooms_emptied(&["c".into()], 200).unwrap();
    assert_eq!(
        s.append_history(&[line("d", 9)], limits(5, 3)).unwrap(),
        1,
        "one room over"
    );
    assert!(s.history("a", 5).unwrap().is_empty(), "emptied the longest");
    for kept in ["b", "c", "d"] {
        assert_eq!(s.history(kept, 5).unwrap().len(), 1, "{kept}");
    }
    // Rooms in use are never trimmed, even past the cap.
    s.rooms_in_use(&["c".into()]).unwrap();
    assert_eq!(s.append_history(&[line("e", 10)], limits(5, 3)).unwrap(), 0);
    assert_eq!(s.history("c", 5).unwrap().len(), 1);
}

fn history_of_rooms_empty_past_the_retention_is_pruned(s: &mut dyn Storage) {
    s.append_history(
        &[line("old", 1), line("new", 2), line("busy", 3)],
        limits(5, 10),
    )
    .unwrap();
    s.rooms_emptied(&["old".into()], 100).unwrap();
    s.rooms_emptied(&["new".into()], 900).unwrap();
    assert_eq!(s.prune_history(500).unwrap(), 1);
    assert!(s.history("old", 5).unwrap().is_empty());
    assert_eq!(s.history("new", 5).unwrap().len(), 1);
    assert_eq!(s.history("busy", 5).unwrap().len(), 1, "in use");
    // Back in use: kept however old its emptying was.
    s.rooms_in_use(&["new".into()]).unwrap();
    assert_eq!(s.prune_history(10_000).unwrap(), 0);
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
    s.append_history(&[line("lobby", 1)], limits(5, 10))
        .unwrap();
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
    assert_eq!(s.prune_history(5_000).unwrap(), 0);
    assert_eq!(s.prune_history(5_001).unwrap(), 1);
}
