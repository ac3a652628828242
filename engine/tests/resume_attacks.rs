//! Resumable sessions under attack and under races, through the public API alone: counts of
//! requests and frames, the grace window, the core's invariants between ticks, what is freed,
//! takeovers racing closes, logouts, kicks and the DB worker, a cluster, and shutdown.
//!
//! Each test asserts what the protocol (docs/PROTOCOL.md, "Resuming a session" and session
//! rule 9) says; one that fails shows a bug.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use config::ServerConfig;
use engine::core::{Core, Input};
use engine::db::{AuthSettings, DbJob, DbQueue, DbWorker, Runner};
use engine::modules::chat::ChatModule;
use engine::modules::rooms::{Rooms, RoomsConfig, RoomsGame, RoomsModule};
use engine::net::{DisconnectReason, Packet, SessionId};
use engine::protocol::world::{
    C2sChat, C2sLogin, C2sLogout, C2sPing, C2sRoomJoin, C2sSessionResume, S2cAuthResult,
    S2cSessionResumed,
};
use engine::protocol::{ClientToServer, ErrorCode, S2cMessage};
use engine::storage::{MemoryStorage, SessionLogEntry};
use engine::testing::{Nodes, Sim};
use engine::world::{Now, World, WorldConfig};
use engine::{DispatchError, Game, Setup};

/// A game with the engine's rooms and chat.
struct Chat(Rooms);

impl Chat {
    fn new() -> Chat {
        Chat(Rooms::new(RoomsConfig::default()))
    }
}

impl RoomsGame for Chat {
    fn rooms(&self) -> &Rooms {
        &self.0
    }
    fn rooms_mut(&mut self) -> &mut Rooms {
        &mut self.0
    }
}

impl Game for Chat {
    fn register(setup: &mut Setup<Self>) -> Result<(), DispatchError> {
        setup.add(RoomsModule)?;
        setup.add(ChatModule)
    }
}

/// A client of a resumable session: it counts the frames it receives after its login.
struct Player {
    conn: SessionId,
    session: SessionId,
    token: String,
    received: u64,
}

fn sim_with(change: impl FnOnce(&mut ServerConfig)) -> Sim<Chat> {
    let mut config = ServerConfig::default();
    change(&mut config);
    Sim::with_config(config, Chat::new())
}

fn check(sim: &Sim<Chat>) {
    if let Err(e) = sim.core().check_invariants() {
        panic!("invariants: {e}");
    }
    if let Err(e) = engine::core::invariants::check_rooms(sim.world()) {
        panic!("room invariants: {e}");
    }
}

fn decode(frames: Vec<(u16, Bytes)>) -> Vec<S2cMessage> {
    frames
        .into_iter()
        .map(|(id, payload)| S2cMessage::decode(id, payload).unwrap())
        .collect()
}

fn login(name: &str) -> C2sLogin {
    C2sLogin {
        username: name.into(),
        password: String::new(),
        resumable: true,
    }
}

fn join(room: &str) -> C2sRoomJoin {
    C2sRoomJoin {
        room: room.into(),
        ..Default::default()
    }
}

fn chat(room: &str, content: &str) -> C2sChat {
    C2sChat {
        room: room.into(),
        content: content.into(),
        sent_at_us: 1,
    }
}

fn ping(seq: u32, received: u64) -> C2sPing {
    C2sPing {
        seq,
        client_time_us: 0,
        received,
    }
}

/// Steps (running a held database too) until `conn` is answered its login: the token, and
/// the frames after the answer.
fn logged_in(sim: &mut Sim<Chat>, conn: SessionId) -> (String, Vec<S2cMessage>) {
    let mut inbox = Vec::new();
    for _ in 0..6 {
        sim.step();
        sim.run_db();
        inbox.extend(decode(sim.take_all(conn)));
        if let Some(at) = inbox
            .iter()
            .position(|m| matches!(m, S2cMessage::S2cAuthResult(_)))
        {
            let S2cMessage::S2cAuthResult(result) = &inbox[at] else {
                unreachable!()
            };
            let token = result.session_token.clone();
            return (token, inbox.split_off(at + 1));
        }
    }
    panic!("no login answer: {inbox:?}");
}

/// A resumable guest `name` in `rooms`, its inbox emptied and counted.
fn player(sim: &mut Sim<Chat>, name: &str, rooms: &[&str]) -> Player {
    let conn = sim.connect();
    sim.clear(conn);
    sim.send(conn, &login(name));
    let (token, after) = logged_in(sim, conn);
    assert_eq!(token.len(), 32, "{token:?}");
    let mut p = Player {
        conn,
        session: conn,
        token,
        received: after.len() as u64,
    };
    for room in rooms {
        sim.send(conn, &join(room));
        for _ in 0..3 {
            sim.step();
            sim.run_db();
        }
        hear(sim, &mut p);
    }
    p
}

/// A guest `name` (not resumable) in `rooms`, its inbox emptied.
fn guest(sim: &mut Sim<Chat>, name: &str, rooms: &[&str]) -> SessionId {
    let s = sim.connect();
    sim.send(
        s,
        &C2sLogin {
            username: name.into(),
            password: String::new(),
            resumable: false,
        },
    );
    let (token, _) = logged_in(sim, s);
    assert!(token.is_empty());
    for room in rooms {
        sim.send(s, &join(room));
        for _ in 0..3 {
            sim.step();
            sim.run_db();
        }
    }
    sim.clear(s);
    s
}

/// What `p` was sent since last time, counted.
fn hear(sim: &mut Sim<Chat>, p: &mut Player) -> Vec<S2cMessage> {
    let frames = sim.take_all(p.conn);
    p.received += frames.len() as u64;
    decode(frames)
}

fn lines(messages: &[S2cMessage]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| match m {
            S2cMessage::S2cChat(c) => Some(c.content.clone()),
            _ => None,
        })
        .collect()
}

fn resume_request(p: &Player) -> C2sSessionResume {
    C2sSessionResume {
        session_token: p.token.clone(),
        received: p.received,
    }
}

/// The answer of a resume and the frames after it, counted for `p` (now on `conn`).
fn resumed(
    p: &mut Player,
    conn: SessionId,
    mut inbox: Vec<S2cMessage>,
) -> (S2cSessionResumed, Vec<S2cMessage>) {
    let at = inbox
        .iter()
        .position(|m| matches!(m, S2cMessage::S2cSessionResumed(_)))
        .unwrap_or_else(|| panic!("not resumed: {inbox:?}"));
    let rest = inbox.split_off(at + 1);
    let Some(S2cMessage::S2cSessionResumed(answer)) = inbox.pop() else {
        unreachable!()
    };
    p.conn = conn;
    p.received += rest.len() as u64;
    (answer, rest)
}

/// `p` comes back on a new connection: the answer and what followed it.
fn come_back(sim: &mut Sim<Chat>, p: &mut Player) -> (S2cSessionResumed, Vec<S2cMessage>) {
    let conn = sim.connect();
    sim.clear(conn);
    sim.send(conn, &resume_request(p));
    sim.step();
    let inbox = decode(sim.take_all(conn));
    resumed(p, conn, inbox)
}

/// A resume of `p` on a new connection that is refused: the error.
fn refused(sim: &mut Sim<Chat>, p: &Player) -> ErrorCode {
    let conn = sim.connect();
    sim.clear(conn);
    sim.send(conn, &resume_request(p));
    sim.step();
    match decode(sim.take_all(conn)).as_slice() {
        [S2cMessage::S2cError(e)] => e.code(),
        other => panic!("not one error: {other:?}"),
    }
}

fn error_codes(messages: &[S2cMessage]) -> Vec<ErrorCode> {
    messages
        .iter()
        .filter_map(|m| match m {
            S2cMessage::S2cError(e) => Some(e.code()),
            _ => None,
        })
        .collect()
}

/// Nothing of resumable sessions is held any more: no session, no token, no link of a
/// connection to a session, nothing away, no byte buffered.
fn nothing_held(sim: &Sim<Chat>) {
    let resume = &sim.world().resume;
    assert!(
        resume.is_empty(),
        "{} sessions still resumable",
        resume.len()
    );
    assert!(resume.is_idle(), "a connection still carries a session");
    assert_eq!(resume.away(), 0);
    assert_eq!(resume.held_bytes(), 0);
}

// ---------------------------------------------------------------------------------------------
// Counting requests
// ---------------------------------------------------------------------------------------------

/// Requests sent right behind a resumable login are numbered from 1 (PROTOCOL.md, "Count what
/// you send"). Those the rate limit drops without an answer are counted among the processed
/// ones when the session is resumable (`Item::Dropped`); those dropped while the login is at
/// the database must be counted too, or the client sends again requests that were processed.
#[test]
fn requests_dropped_by_the_rate_limit_behind_a_resumable_login_are_counted() {
    let mut sim = sim_with(|c| c.net.max_requests_per_sec = 5);
    let conn = sim.connect();
    sim.clear(conn);
    // The login, then requests 1..=12 in the same tick: a burst of 10 (the login takes one),
    // then one RATE_LIMITED answer, then two dropped in silence.
    sim.send(conn, &login("ann"));
    for seq in 1..=12 {
        sim.send(conn, &ping(seq, 0));
    }
    let (_, after) = logged_in(&mut sim, conn);
    let pongs = after
        .iter()
        .filter(|m| matches!(m, S2cMessage::S2cPong(_)))
        .count();
    assert_eq!(pongs, 9, "{after:?}");
    assert_eq!(error_codes(&after), [ErrorCode::RateLimited]);
    // Later, request 13: 13 requests are processed (dropped ones included), this ping too.
    sim.skip(Duration::from_secs(3));
    sim.send(conn, &ping(13, 0));
    sim.step();
    let pong = sim
        .take::<engine::protocol::world::S2cPong>(conn)
        .pop()
        .expect("a pong");
    assert_eq!(
        pong.processed, 13,
        "the client numbered 13 requests after its login; a lower count makes it send again \
         requests the server processed (or dropped) already"
    );
    check(&sim);
}

/// The requests of a session counted across a drop and a resume: those processed before the
/// drop are in `processed`, the one in flight when it dropped too.
#[test]
fn processed_counts_survive_a_drop_and_a_resume_and_go_on() {
    let mut sim = sim_with(|_| {});
    let mut ann = player(&mut sim, "ann", &["lobby"]);
    let bob = guest(&mut sim, "bob", &["lobby"]);
    // Requests 2, 3, 4 (the join was 1); the connection drops after them.
    sim.send(ann.conn, &chat("lobby", "a"));
    sim.send(ann.conn, &chat("lobby", "b"));
    sim.send(ann.conn, &ping(1, ann.received));
    sim.disconnect(ann.conn);
    sim.step();
    check(&sim);
    let (answer, replay) = come_back(&mut sim, &mut ann);
    assert_eq!(answer.processed, 4);
    assert_eq!(lines(&replay), ["a", "b"]);
    assert_eq!(ann.received, answer.sent);
    // Request 5.
    sim.send(ann.conn, &ping(2, ann.received));
    sim.step();
    let heard = hear(&mut sim, &mut ann);
    assert!(
        heard
            .iter()
            .any(|m| matches!(m, S2cMessage::S2cPong(p) if p.processed == 5)),
        "{heard:?}"
    );
    assert_eq!(lines(&decode(sim.take_all(bob))), ["a", "b"]);
    check(&sim);
}

// ---------------------------------------------------------------------------------------------
// Races of the same tick
// ---------------------------------------------------------------------------------------------

/// The old connection's end and a resume, in one tick, in either order: the session is back,
/// nothing is replayed twice, the old connection's end does not send it away again.
#[test]
fn a_resume_in_the_tick_of_the_old_connections_end_takes_the_session_back_in_either_order() {
    for close_first in [true, false] {
        let mut sim = sim_with(|_| {});
        let mut ann = player(&mut sim, "ann", &["lobby"]);
        let bob = guest(&mut sim, "bob", &["lobby"]);
        sim.send(bob, &chat("lobby", "one"));
        sim.step();
        sim.clear(ann.conn); // lost with the connection
        let new = sim.connect();
        sim.clear(new);
        if close_first {
            sim.disconnect(ann.conn);
            sim.send(new, &resume_request(&ann));
        } else {
            sim.send(new, &resume_request(&ann));
            sim.disconnect(ann.conn);
        }
        sim.step();
        check(&sim);
        let inbox = decode(sim.take_all(new));
        let (_, replay) = resumed(&mut ann, new, inbox);
        assert_eq!(lines(&replay), ["one"], "close first: {close_first}");
        assert!(!sim.world().clients[&ann.session].away);
        sim.run_for(Duration::from_secs(1));
        check(&sim);
        assert!(
            !sim.world().clients[&ann.session].away,
            "close first: {close_first}"
        );
        sim.send(bob, &chat("lobby", "two"));
        sim.step();
        assert_eq!(lines(&hear(&mut sim, &mut ann)), ["two"]);
        // And it goes away and comes back again as before.
        sim.disconnect(ann.conn);
        sim.step();
        assert!(sim.world().clients[&ann.session].away);
        come_back(&mut sim, &mut ann);
        check(&sim);
        sim.take_all(bob);
    }
}

/// A session that goes away, is taken back and goes away again in one tick has one grace
/// window: it ends once, and is counted once.
#[test]
fn a_session_away_twice_in_one_tick_expires_once() {
    let mut sim = sim_with(|c| c.net.resume_grace_secs = 5);
    let ann = player(&mut sim, "ann", &["lobby"]);
    let new = sim.connect();
    sim.clear(new);
    // In one tick: the old connection ends, the new one takes the session back and ends.
    sim.disconnect(ann.conn);
    sim.send(new, &resume_request(&ann));
    sim.disconnect(new);
    sim.step();
    check(&sim);
    assert!(sim.world().clients[&ann.session].away);
    sim.run_for(Duration::from_secs(6));
    check(&sim);
    assert_eq!(sim.world().session_of("ann"), None);
    nothing_held(&sim);
    assert_eq!(
        sim.world().resume.stats.expired,
        1,
        "one session did not come back within its grace window"
    );
}

/// A resume of a session waiting for the database (a room's history), on a connection that
/// ends in the same tick: the end is parked behind the wait, and the session must be marked
/// gone meanwhile (the core's invariants), then go away when the wait is over.
#[test]
fn a_resume_on_a_connection_ending_in_the_same_tick_of_a_waiting_session_keeps_the_invariants() {
    let mut config = ServerConfig::default();
    config.net.resume_grace_secs = 30;
    let mut sim = Sim::holding_db(config, Chat::new());
    let mut ann = player(&mut sim, "ann", &["lobby"]);
    // A join whose history is at the database: ann waits.
    sim.send(ann.conn, &join("second"));
    sim.step();
    let new = sim.connect();
    sim.clear(new);
    sim.send(new, &resume_request(&ann));
    sim.disconnect(new);
    sim.step();
    let invariants = sim.core().check_invariants();
    // Whatever the invariants say, the session must end up away once the join is done.
    sim.run_db();
    for _ in 0..3 {
        sim.step();
        sim.run_db();
    }
    assert!(
        sim.world()
            .clients
            .get(&ann.session)
            .is_some_and(|c| c.away),
        "ann is away once the join is done"
    );
    check(&sim);
    let (_, replay) = come_back(&mut sim, &mut ann);
    assert!(
        replay
            .iter()
            .any(|m| matches!(m, S2cMessage::S2cRoomJoined(j) if j.room == "second")),
        "{replay:?}"
    );
    check(&sim);
    invariants.unwrap_or_else(|e| panic!("after the resume's tick: {e}"));
}

/// A resume of a session whose old connection ended while it waited for the database: the
/// requests parked behind the wait were not processed (the client sends them again), the end
/// parked behind them is done with, and nothing of the old connection stays.
#[test]
fn a_resume_of_a_session_whose_requests_are_parked_drops_them_and_counts_right() {
    let mut sim = Sim::holding_db(ServerConfig::default(), Chat::new());
    let mut ann = player(&mut sim, "ann", &["lobby"]);
    let bob = guest(&mut sim, "bob", &["lobby"]);
    // Request 2: a join that waits; 3 and 4 wait behind it; then the connection ends.
    sim.send(ann.conn, &join("second"));
    sim.send(ann.conn, &chat("lobby", "parked"));
    sim.send(ann.conn, &ping(1, 0));
    sim.disconnect(ann.conn);
    sim.step();
    sim.clear(ann.conn);
    check(&sim);
    let (answer, _) = come_back(&mut sim, &mut ann);
    assert_eq!(
        answer.processed, 2,
        "the join was processed, not what waited behind it"
    );
    check(&sim);
    // The client sends 3 again: it waits for the join, and is said once.
    sim.send(ann.conn, &chat("lobby", "parked"));
    sim.step();
    sim.run_db();
    for _ in 0..3 {
        sim.step();
        sim.run_db();
    }
    check(&sim);
    assert_eq!(lines(&decode(sim.take_all(bob))), ["parked"]);
    let heard = hear(&mut sim, &mut ann);
    assert!(
        heard
            .iter()
            .any(|m| matches!(m, S2cMessage::S2cRoomJoined(j) if j.room == "second")),
        "{heard:?}"
    );
    // Ends cleanly.
    sim.send(ann.conn, &C2sLogout {});
    sim.step();
    sim.disconnect(ann.conn);
    for _ in 0..3 {
        sim.step();
        sim.run_db();
    }
    check(&sim);
    nothing_held(&sim);
}

/// A resume in the tick of a logout on the old connection (still up): whichever comes first
/// decides, and nothing is left behind.
#[test]
fn a_resume_racing_a_logout_on_the_old_connection() {
    // The logout first: the session is no longer resumable.
    let mut sim = sim_with(|_| {});
    let ann = player(&mut sim, "ann", &["lobby"]);
    let new = sim.connect();
    sim.clear(new);
    sim.send(ann.conn, &C2sLogout {});
    sim.send(new, &resume_request(&ann));
    sim.step();
    check(&sim);
    let told = decode(sim.take_all(new));
    assert_eq!(error_codes(&told), [ErrorCode::SessionLost], "{told:?}");
    assert!(sim.world().resume.is_empty());
    // The resume first: the logout of the old connection is dropped (sent again by the client
    // after `processed`, if it still wants it).
    let mut sim = sim_with(|_| {});
    let mut ann = player(&mut sim, "ann", &["lobby"]);
    let old = ann.conn;
    let new = sim.connect();
    sim.clear(new);
    sim.send(new, &resume_request(&ann));
    sim.send(old, &C2sLogout {});
    sim.step();
    check(&sim);
    let inbox = decode(sim.take_all(new));
    let (answer, _) = resumed(&mut ann, new, inbox);
    assert_eq!(answer.processed, 1);
    assert_eq!(sim.world().session_of("ann"), Some(ann.session));
    assert_eq!(sim.closed(old), Some(&DisconnectReason::Replaced));
    sim.step();
    check(&sim);
    assert_eq!(sim.world().session_of("ann"), Some(ann.session));
    assert_eq!(sim.world().resume.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Connections that took a session back
// ---------------------------------------------------------------------------------------------

/// A connection that took a session back is logged in: another resume on it, of the same
/// session or another, is ALREADY_AUTHENTICATED, and changes nothing.
#[test]
fn a_resume_on_a_connection_that_took_a_session_back_already_is_refused_and_changes_nothing() {
    let mut sim = sim_with(|_| {});
    let mut ann = player(&mut sim, "ann", &["lobby"]);
    let cat = player(&mut sim, "cat", &["lobby"]);
    sim.disconnect(ann.conn);
    sim.disconnect(cat.conn);
    sim.step();
    come_back(&mut sim, &mut ann);
    for token in [ann.token.clone(), cat.token.clone()] {
        sim.send(
            ann.conn,
            &C2sSessionResume {
                session_token: token,
                received: 0,
            },
        );
        sim.step();
        let told = hear(&mut sim, &mut ann);
        assert_eq!(
            error_codes(&told),
            [ErrorCode::AlreadyAuthenticated],
            "{told:?}"
        );
        check(&sim);
    }
    assert!(sim.world().clients[&cat.session].away, "cat waits on");
    assert!(!sim.world().clients[&ann.session].away);
    assert_eq!(sim.world().resume.away(), 1);
    // ann still works on its connection.
    sim.send(ann.conn, &ping(9, ann.received));
    sim.step();
    assert_eq!(
        hear(&mut sim, &mut ann)
            .iter()
            .filter(|m| matches!(m, S2cMessage::S2cPong(_)))
            .count(),
        1
    );
    check(&sim);
}

/// A logout then a resumable login again on a connection that took a session back: the old
/// token is dead, the new one works, and everything is freed at the end.
#[test]
fn a_logout_then_a_resumable_login_on_a_resumed_connection() {
    let mut sim = sim_with(|_| {});
    let mut ann = player(&mut sim, "ann", &["lobby"]);
    let bob = guest(&mut sim, "bob", &["lobby"]);
    sim.disconnect(ann.conn);
    sim.step();
    come_back(&mut sim, &mut ann);
    let old_token = ann.token.clone();
    sim.send(ann.conn, &C2sLogout {});
    sim.step();
    check(&sim);
    assert!(sim.world().resume.is_empty());
    sim.send(ann.conn, &login("ann2"));
    let (token, after) = logged_in(&mut sim, ann.conn);
    assert_eq!(token.len(), 32);
    assert_ne!(token, old_token);
    check(&sim);
    let mut ann2 = Player {
        conn: ann.conn,
        session: ann.session,
        token,
        received: after.len() as u64,
    };
    sim.send(ann2.conn, &join("lobby"));
    for _ in 0..3 {
        sim.step();
        sim.run_db();
    }
    hear(&mut sim, &mut ann2);
    // The old token is gone.
    assert_eq!(refused(&mut sim, &ann), ErrorCode::SessionLost);
    // The new one takes the session back after a drop.
    sim.disconnect(ann2.conn);
    sim.step();
    sim.send(bob, &chat("lobby", "missed"));
    sim.step();
    check(&sim);
    let (answer, replay) = come_back(&mut sim, &mut ann2);
    assert_eq!(answer.username, "ann2");
    assert_eq!(lines(&replay), ["missed"]);
    assert_eq!(answer.sent, ann2.received);
    check(&sim);
    // The end frees everything.
    sim.send(ann2.conn, &C2sLogout {});
    sim.step();
    sim.disconnect(ann2.conn);
    sim.step();
    sim.step();
    check(&sim);
    nothing_held(&sim);
    sim.take_all(bob);
}

/// A session carried by a connection that took it back, replaced by a login of its name:
/// the connection is told and closed, the session ends, and nothing stays.
#[test]
fn a_resumed_session_replaced_by_a_login_frees_everything() {
    let mut sim = sim_with(|_| {});
    let mut ann = player(&mut sim, "ann", &["lobby"]);
    sim.disconnect(ann.conn);
    sim.step();
    come_back(&mut sim, &mut ann);
    let other = sim.connect();
    sim.clear(other);
    sim.send(
        other,
        &C2sLogin {
            username: "ann".into(),
            password: String::new(),
            resumable: false,
        },
    );
    for _ in 0..3 {
        sim.step();
        check(&sim);
    }
    assert_eq!(sim.world().session_of("ann"), Some(other));
    let told = hear(&mut sim, &mut ann);
    assert_eq!(error_codes(&told), [ErrorCode::Replaced], "{told:?}");
    assert_eq!(sim.closed(ann.conn), Some(&DisconnectReason::Replaced));
    assert!(!sim.world().clients.contains_key(&ann.session));
    nothing_held(&sim);
    assert_eq!(refused(&mut sim, &ann), ErrorCode::SessionLost);
}

/// An away session replaced by a login ends at once; a resume then is SESSION_LOST.
#[test]
fn an_away_session_replaced_by_a_login_ends_and_frees_everything() {
    let mut sim = sim_with(|_| {});
    let ann = player(&mut sim, "ann", &["lobby"]);
    let bob = guest(&mut sim, "bob", &["lobby"]);
    sim.disconnect(ann.conn);
    sim.step();
    let other = sim.connect();
    sim.send(
        other,
        &C2sLogin {
            username: "ann".into(),
            password: String::new(),
            resumable: true,
        },
    );
    for _ in 0..3 {
        sim.step();
        check(&sim);
    }
    assert_eq!(sim.world().session_of("ann"), Some(other));
    assert!(!sim.world().clients.contains_key(&ann.session));
    assert_eq!(sim.world().resume.len(), 1, "the new login only");
    assert_eq!(sim.world().resume.away(), 0);
    assert_eq!(refused(&mut sim, &ann), ErrorCode::SessionLost);
    sim.take_all(bob);
    check(&sim);
}

// ---------------------------------------------------------------------------------------------
// Kicks
// ---------------------------------------------------------------------------------------------

/// The old connection, taken over by a resume, is reported as not reading (its peer is gone):
/// the session, on its new connection, is not touched.
#[test]
fn a_slow_consumer_report_of_the_taken_over_connection_leaves_the_session_alone() {
    let mut sim = sim_with(|_| {});
    let mut ann = player(&mut sim, "ann", &["lobby"]);
    let old = ann.conn;
    let (_, _) = come_back(&mut sim, &mut ann);
    sim.input(Input::SlowConsumer { session: old });
    sim.step();
    sim.step();
    check(&sim);
    assert_eq!(sim.world().session_of("ann"), Some(ann.session));
    assert!(sim.world().resume.is_resumable(ann.session));
    sim.send(ann.conn, &ping(1, ann.received));
    sim.step();
    assert!(!hear(&mut sim, &mut ann).is_empty());
}

/// A resumable session whose connection stops reading: the driver aborts the connection, and
/// the session survives it as any dropped connection (session rule 9): SESSION_LOST is for a
/// session not back in time, overflowed, logged out or replaced (PROTOCOL.md, error codes),
/// not for one whose connection stalled, which is what a phone changing networks looks like
/// from the server.
#[test]
fn a_resumable_session_whose_connection_stalls_can_be_taken_back() {
    let mut sim = sim_with(|_| {});
    let mut ann = player(&mut sim, "ann", &["lobby"]);
    let bob = guest(&mut sim, "bob", &["lobby"]);
    sim.input(Input::SlowConsumer { session: ann.conn });
    sim.step();
    sim.step();
    check(&sim);
    let to_bob = decode(sim.take_all(bob));
    assert!(
        !to_bob
            .iter()
            .any(|m| matches!(m, S2cMessage::S2cRoomPresence(p) if !p.joined)),
        "the room does not see ann go: {to_bob:?}"
    );
    let (answer, _) = come_back(&mut sim, &mut ann);
    assert_eq!(answer.username, "ann");
    check(&sim);
}

/// Idle timeout of a connection that took a session back: the session is kicked from its new
/// connection as from any (the timeout counts from the resume), and everything is freed.
#[test]
fn the_idle_timeout_counts_from_the_resume_and_frees_everything() {
    let mut sim = sim_with(|c| c.net.idle_timeout_secs = 5);
    let mut ann = player(&mut sim, "ann", &["lobby"]);
    sim.disconnect(ann.conn);
    sim.run_for(Duration::from_secs(4));
    come_back(&mut sim, &mut ann);
    sim.run_for(Duration::from_millis(4500));
    assert_eq!(sim.closed(ann.conn), None, "not idle yet");
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.closed(ann.conn), Some(&DisconnectReason::IdleTimeout));
    sim.step();
    check(&sim);
    assert!(!sim.world().clients.contains_key(&ann.session));
    nothing_held(&sim);
}

/// A flood on a connection that took a session back closes it, and ends the session, as on
/// any connection; nothing is left behind.
#[test]
fn a_flood_on_a_resumed_connection_ends_the_session_and_frees_everything() {
    let mut sim = sim_with(|c| c.net.max_requests_per_sec = 5);
    let mut ann = player(&mut sim, "ann", &["lobby"]);
    sim.disconnect(ann.conn);
    sim.step();
    come_back(&mut sim, &mut ann);
    for seq in 0..40 {
        sim.send(ann.conn, &ping(seq, 0));
    }
    sim.step();
    assert_eq!(sim.closed(ann.conn), Some(&DisconnectReason::Flooding));
    sim.step();
    check(&sim);
    nothing_held(&sim);
}

// ---------------------------------------------------------------------------------------------
// Bounds
// ---------------------------------------------------------------------------------------------

/// A client that acknowledges nothing: its buffer fills to its bound and no further; the
/// session goes on, not resumable; when it is done, nothing is held.
#[test]
fn a_client_that_never_acknowledges_holds_at_most_its_bound() {
    let mut sim = sim_with(|c| {
        c.net.resume_buffer_bytes = 8192;
        c.net.resume_buffer_frames = 1000;
    });
    let mut ann = player(&mut sim, "ann", &["lobby"]);
    let bob = guest(&mut sim, "bob", &["lobby"]);
    let long = "y".repeat(400);
    for _ in 0..40 {
        sim.send(bob, &chat("lobby", &long));
        sim.step();
        assert!(sim.world().resume.held_bytes() <= 8192);
        check(&sim);
    }
    assert!(!sim.world().resume.is_resumable(ann.session));
    assert_eq!(
        lines(&hear(&mut sim, &mut ann)).len(),
        40,
        "every line delivered"
    );
    assert_eq!(sim.world().resume.held_bytes(), 0);
    sim.disconnect(ann.conn);
    sim.step();
    assert!(!sim.world().clients.contains_key(&ann.session));
    nothing_held(&sim);
    sim.take_all(bob);
}

// ---------------------------------------------------------------------------------------------
// A cluster
// ---------------------------------------------------------------------------------------------

/// On a cluster: a session away on node 1 is replaced by a login of its name on node 2; it
/// ends on node 1, and a resume there is SESSION_LOST; node 1's invariants hold throughout.
#[test]
fn on_a_cluster_an_away_session_replaced_on_another_node_ends() {
    let mut nodes = Nodes::new((0..2).map(|_| Chat::new()));
    let conn = nodes.node(0).connect();
    nodes.node(0).clear(conn);
    nodes.node(0).send(conn, &login("ann"));
    let mut token = None;
    for _ in 0..10 {
        nodes.step();
        if let Some(r) = nodes.node(0).take::<S2cAuthResult>(conn).pop() {
            token = Some(r.session_token);
            break;
        }
    }
    let token = token.expect("logged in");
    assert_eq!(token.len(), 32);
    nodes.node(0).disconnect(conn);
    nodes.settle();
    assert!(nodes.world(0).clients[&conn].away);
    nodes.node(0).core().check_invariants().unwrap();
    let other = nodes.node(1).connect();
    nodes.node(1).send(
        other,
        &C2sLogin {
            username: "ann".into(),
            password: String::new(),
            resumable: true,
        },
    );
    for _ in 0..3 {
        nodes.settle();
    }
    assert!(
        !nodes.world(0).clients.contains_key(&conn),
        "the away session ended on node 1"
    );
    assert!(nodes.world(0).resume.is_empty());
    nodes.node(0).core().check_invariants().unwrap();
    nodes.node(1).core().check_invariants().unwrap();
    let back = nodes.node(0).connect();
    nodes.node(0).clear(back);
    nodes.node(0).send(
        back,
        &C2sSessionResume {
            session_token: token,
            received: 0,
        },
    );
    nodes.step();
    let told = decode(nodes.node(0).take_all(back));
    assert_eq!(error_codes(&told), [ErrorCode::SessionLost], "{told:?}");
}

// ---------------------------------------------------------------------------------------------
// The core driven by hand: inputs in the order a server may see them, and shutdown
// ---------------------------------------------------------------------------------------------

/// The core with a DB worker run at once, driven by hand: the test decides when the ends of
/// the connections the core closes arrive (a server's come after the linger of the close).
struct Driver {
    core: Core<Chat>,
    runner: Runner,
    start: Instant,
    now: Instant,
    next_token: u64,
    /// The DB worker's answers, for the next tick.
    db: Vec<Input>,
    inbox: BTreeMap<SessionId, Vec<S2cMessage>>,
    /// Closes the core decided, whose ends have not been given to it yet.
    closing: Vec<(SessionId, DisconnectReason)>,
}

impl Driver {
    fn new(change: impl FnOnce(&mut ServerConfig)) -> Driver {
        let mut config = ServerConfig::default();
        change(&mut config);
        config.apply_game_defaults(<Chat as Game>::NAME, "memory");
        config.auth.argon2_memory_kib = 64;
        config.auth.argon2_iterations = 1;
        config.auth.argon2_parallelism = 1;
        let auth = AuthSettings::from(&config);
        let worker = DbWorker::new(Box::new(MemoryStorage::new()), auth).unwrap();
        let (dispatcher, hooks) = engine::handlers::setup::<Chat>().unwrap();
        let now = Instant::now();
        let world = World::new(
            WorldConfig::from(&config),
            Chat::new(),
            hooks,
            DbQueue::new(config.storage.queue),
            now,
        );
        Driver {
            core: Core::new(world, dispatcher),
            runner: Runner::new(worker),
            start: now,
            now,
            next_token: 0,
            db: Vec::new(),
            inbox: BTreeMap::new(),
            closing: Vec::new(),
        }
    }

    fn at(&self) -> Now {
        engine::testing::clock(self.start, self.now)
    }

    /// One tick with `inputs` (after the DB worker's answers); the connections opened.
    fn tick(&mut self, inputs: Vec<Input>) -> Vec<(u64, SessionId)> {
        self.now += Duration::from_millis(50);
        let mut all = std::mem::take(&mut self.db);
        all.extend(inputs);
        let at = self.at();
        let out = self.core.tick(at, all);
        let opened = std::mem::take(&mut out.opened);
        let batches = std::mem::take(&mut out.batches);
        let closes = std::mem::take(&mut out.closes);
        let jobs: Vec<DbJob> = out.db.drain(..).collect();
        self.take_batches(batches);
        self.closing.extend(closes);
        for job in jobs {
            if let Some(done) = self.runner.run(job, self.now) {
                self.db.push(Input::Db(done));
            }
        }
        opened
    }

    fn take_batches(&mut self, batches: Vec<(SessionId, Vec<Bytes>)>) {
        for (session, frames) in batches {
            let inbox = self.inbox.entry(session).or_default();
            for f in frames {
                let id = u16::from_le_bytes([f[2], f[3]]);
                inbox.push(S2cMessage::decode(id, f.slice(4..)).unwrap());
            }
        }
    }

    fn connect(&mut self, ip: [u8; 4]) -> SessionId {
        self.try_connect(ip).expect("taken")
    }

    fn try_connect(&mut self, ip: [u8; 4]) -> Option<SessionId> {
        let token = self.next_token;
        self.next_token += 1;
        let opened = self.tick(vec![Input::Accepted {
            token,
            peer: SocketAddr::from((ip, 1000 + token as u16)),
        }]);
        let session = opened.iter().find(|(t, _)| *t == token).map(|(_, s)| *s)?;
        self.inbox.remove(&session);
        Some(session)
    }

    fn take(&mut self, session: SessionId) -> Vec<S2cMessage> {
        self.inbox.remove(&session).unwrap_or_default()
    }

    /// A new connection from `ip` that takes back the session of `token`, from its start: the
    /// connection, once the session is resumed on it.
    fn resume(&mut self, ip: [u8; 4], token: String) -> SessionId {
        let conn = self.connect(ip);
        self.tick(vec![frame(
            conn,
            &C2sSessionResume {
                session_token: token,
                received: 0,
            },
        )]);
        assert!(self
            .take(conn)
            .iter()
            .any(|m| matches!(m, S2cMessage::S2cSessionResumed(_))));
        conn
    }

    /// A resumable guest `name`: its connection and token.
    fn player(&mut self, ip: [u8; 4], name: &str) -> (SessionId, String) {
        let conn = self.connect(ip);
        self.tick(vec![frame(conn, &login(name))]);
        for _ in 0..4 {
            self.tick(vec![]);
            if let Some(S2cMessage::S2cAuthResult(r)) = self
                .take(conn)
                .into_iter()
                .find(|m| matches!(m, S2cMessage::S2cAuthResult(_)))
            {
                return (conn, r.session_token);
            }
        }
        panic!("{name} not logged in");
    }

    fn check(&self) -> Result<(), String> {
        self.core.check_invariants()
    }
}

fn frame<M: ClientToServer>(session: SessionId, message: &M) -> Input {
    Input::Received {
        session,
        packet: Packet {
            id: M::ID,
            payload: Bytes::from(prost::Message::encode_to_vec(message)),
        },
    }
}

/// A resume takes a session over from a connection still up: the old connection is closed,
/// and its end comes when its close is done (on a server, up to the linger time later, and a
/// stalled peer is exactly the case of a takeover). Meanwhile it is a connection as any:
/// the core's connections stay within `max_sessions` (its invariants), and a newcomer is
/// refused SERVER_FULL until then.
#[test]
fn connections_taken_over_by_a_resume_still_count_against_max_sessions_until_they_end() {
    let mut d = Driver::new(|c| c.server.max_sessions = 3);
    let (ann, token) = d.player([10, 0, 0, 1], "ann");
    let (_bob, _) = d.player([10, 0, 0, 2], "bob");
    d.check().unwrap();
    // ann's client comes back on a new connection; the old one is up (stalled).
    d.resume([10, 0, 0, 3], token);
    assert!(d
        .closing
        .iter()
        .any(|(s, r)| *s == ann && *r == DisconnectReason::Replaced));
    d.check().unwrap();
    // The old connection's close lingers; a newcomer arrives meanwhile.
    let late = d.try_connect([10, 0, 0, 4]);
    let invariants = d.check();
    assert_eq!(
        d.core.connections(),
        3,
        "ann's old connection, bob, ann's new one: no room for {late:?}"
    );
    invariants.unwrap();
    assert_eq!(late, None);
}

/// Shutdown with sessions away, connected, and taken back: every connection is closed, every
/// session ends once and is in the session log, and nothing of resumable sessions stays.
#[test]
fn shutdown_ends_away_and_resumed_sessions_once_and_frees_everything() {
    let mut d = Driver::new(|_| {});
    let (ann, _) = d.player([10, 0, 0, 1], "ann");
    let (cat, cat_token) = d.player([10, 0, 0, 2], "cat");
    let (dan, _) = d.player([10, 0, 0, 3], "dan");
    // ann is away; cat is back on a new connection; dan is connected.
    d.tick(vec![
        Input::Closed {
            session: ann,
            reason: DisconnectReason::PeerClosed,
        },
        Input::Closed {
            session: cat,
            reason: DisconnectReason::PeerClosed,
        },
    ]);
    let cat_new = d.resume([10, 0, 0, 4], cat_token);
    d.check().unwrap();
    assert_eq!(d.core.world().resume.away(), 1);
    let out = std::mem::take(d.core.shutdown());
    let mut closed: Vec<SessionId> = out.closes.iter().map(|(s, _)| *s).collect();
    closed.sort();
    assert_eq!(closed, [dan, cat_new], "the open connections");
    assert!(
        !d.core.world().clients.contains_key(&ann),
        "the away session ended at once"
    );
    let ends: Vec<Input> = out
        .closes
        .iter()
        .map(|(s, r)| Input::Closed {
            session: *s,
            reason: r.clone(),
        })
        .collect();
    let at = d.at();
    let done = std::mem::take(d.core.finish(at, ends));
    assert_eq!(d.core.connections(), 0);
    assert!(d.core.world().clients.is_empty());
    let resume = &d.core.world().resume;
    assert!(resume.is_empty() && resume.is_idle() && resume.away() == 0);
    assert_eq!(resume.held_bytes(), 0);
    // Each of the three sessions ended once (the connection that took cat back ended as a
    // session of its own at the resume, before the shutdown).
    let mut ended: Vec<u64> = done
        .db
        .iter()
        .flat_map(|job| match job {
            DbJob::RecordSessions(entries) => entries
                .iter()
                .filter_map(|e| match e {
                    SessionLogEntry::Closed(r) => Some(r.session_id),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    ended.sort();
    // ann's end was recorded at the shutdown's flush, before finish's writes: it may be in
    // either; finish's writes carry the rest.
    ended.retain(|id| *id != ann.0);
    assert_eq!(ended, [cat.0, dan.0], "each once");
}
