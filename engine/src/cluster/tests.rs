//! Two worlds as nodes of one cluster, in simulated time, their batches carried by hand
//! (encoded and decoded as NATS would carry them).

use prost::Message;
use protocol::world::{C2sChat, C2sRoomJoin, C2sRoomList, C2sWhisper};
use protocol::{ErrorCode, S2cMessage};

use super::*;
use crate::core::Input;
use crate::handlers::testkit::Harness;
use crate::modules::rooms::cluster::{decode as rooms_said, Member, Said};
use link::FromNats;

/// A node: the chat world in the test kit, and the batches it sent that are not carried yet.
struct Node {
    h: Harness,
    sent: Vec<(String, Batch)>,
}

impl std::ops::Deref for Node {
    type Target = Harness;
    fn deref(&self) -> &Harness {
        &self.h
    }
}

impl std::ops::DerefMut for Node {
    fn deref_mut(&mut self) -> &mut Harness {
        &mut self.h
    }
}

impl Node {
    fn cluster(&self) -> &Cluster {
        self.world().cluster.as_ref().unwrap()
    }

    /// What NATS brings this node: the core takes it before this returns.
    fn bring(&mut self, from_nats: FromNats) {
        self.h.sim.input(Input::Cluster(from_nats));
        self.h.settle();
    }

    /// The batches sent since they were last taken, in order.
    fn take_sent(&mut self) -> Vec<(String, Batch)> {
        let (requests, batches) = self.h.sim.take_cluster();
        assert!(requests.is_empty(), "names() carries the requests");
        self.sent.extend(batches);
        std::mem::take(&mut self.sent)
    }
}

fn node(name: &str) -> Node {
    let mut h = Harness::new();
    let cluster = Cluster::new(name.to_string());
    BUCKET.with(|b| b.borrow_mut().join(cluster.incarnation()));
    h.world_mut().cluster = Some(cluster);
    Node {
        h,
        sent: Vec::new(),
    }
}

thread_local! {
    /// The buckets, as JetStream keeps them, for the nodes of this test's thread.
    static BUCKET: std::cell::RefCell<crate::testing::Bucket> =
        std::cell::RefCell::new(crate::testing::Bucket::default());
}

/// A tick of `h`, then its claims and releases carried to the bucket, and what the bucket says
/// to `h`, until both are quiet.
fn names(h: &mut Node) {
    h.h.settle();
    for _ in 0..4 {
        let (requests, batches) = h.h.sim.take_cluster();
        h.sent.extend(batches);
        let (node, incarnation) = (h.cluster().node().to_string(), h.cluster().incarnation());
        let told = BUCKET.with(|b| {
            let mut b = b.borrow_mut();
            for request in requests {
                b.request(&node, incarnation, request);
            }
            b.told(incarnation)
        });
        if told.is_empty() {
            return;
        }
        for event in told {
            h.h.sim.input(Input::Cluster(event));
        }
        h.h.settle();
    }
}

/// A guest logged in as `name` on node `h`, its name claimed through the bucket.
fn guest(h: &mut Node, name: &str) -> net::SessionId {
    let id = h.connect();
    h.send(
        id,
        protocol::world::C2sLogin {
            username: name.into(),
            password: String::new(),
            ..Default::default()
        },
    );
    assert!(
        h.take(id).is_empty(),
        "answered before the bucket granted the name"
    );
    names(h);
    let replies = h.take(id);
    assert!(
        matches!(replies.as_slice(), [S2cMessage::S2cAuthResult(_)]),
        "{replies:?}"
    );
    id
}

/// Carries what `from` sends this tick to `to`, after what both have for the bucket and it
/// for them; returns the batches carried.
fn pump(from: &mut Node, to: &mut Node) -> Vec<Batch> {
    names(from);
    names(to);
    let to_node = to.cluster().node().to_string();
    let mut carried = Vec::new();
    for (subject, batch) in from.take_sent() {
        if subject == ALL || subject == inbox(&to_node) {
            let batch = wire::decode(&batch.encode_to_vec()).unwrap();
            carried.push(batch.clone());
            to.bring(FromNats::Batch(batch));
        }
    }
    carried
}

/// Both ways, until nothing more is said (heartbeats aside).
fn settle(a: &mut Node, b: &mut Node) {
    for _ in 0..4 {
        pump(a, b);
        pump(b, a);
    }
}

/// `session` of node `h` joins `room`, the rooms bucket counting it.
fn join(h: &mut Node, session: net::SessionId, room: &str) -> Vec<S2cMessage> {
    h.send(
        session,
        C2sRoomJoin {
            room: room.into(),
            ..Default::default()
        },
    );
    names(h);
    h.take(session)
}

/// How many members the rooms bucket counts in `room`.
fn counted(room: &str) -> u32 {
    BUCKET.with(|b| b.borrow().counted(room))
}

fn pair() -> (Node, Node) {
    let (mut a, mut b) = (node("a"), node("b"));
    settle(&mut a, &mut b);
    assert_eq!(a.cluster().peers(), ["b"]);
    assert_eq!(b.cluster().peers(), ["a"]);
    (a, b)
}

/// Two nodes, alice on a and bob on b, both in the lobby and known to each other.
fn lobby_on_both() -> (Node, Node, net::SessionId, net::SessionId) {
    let (mut a, mut b) = pair();
    let alice = guest(&mut a, "alice");
    join(&mut a, alice, "lobby");
    let bob = guest(&mut b, "bob");
    join(&mut b, bob, "lobby");
    settle(&mut a, &mut b);
    (a, b, alice, bob)
}

#[test]
fn members_of_a_room_on_two_nodes_see_each_other_and_every_line_once_in_order() {
    let (mut a, mut b) = pair();
    let alice = guest(&mut a, "alice");
    join(&mut a, alice, "lobby");
    settle(&mut a, &mut b);
    let bobs: Vec<_> = ["bob", "bea", "ben"]
        .iter()
        .map(|n| guest(&mut b, n))
        .collect();
    match join(&mut b, bobs[0], "lobby").as_slice() {
        [S2cMessage::S2cRoomJoined(j)] => assert_eq!(j.members, ["bob", "alice"]),
        other => panic!("{other:?}"),
    }
    join(&mut b, bobs[1], "lobby");
    join(&mut b, bobs[2], "lobby");
    for &bob in &bobs {
        b.take(bob);
    }
    settle(&mut a, &mut b);
    let seen: Vec<String> = a
        .take(alice)
        .into_iter()
        .map(|m| match m {
            S2cMessage::S2cRoomPresence(p) if p.joined => p.username,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(seen, ["bob", "bea", "ben"]);

    for i in 0..20 {
        a.send(
            alice,
            C2sChat {
                room: "lobby".into(),
                content: format!("line {i}"),
                sent_at_us: i,
            },
        );
    }
    let carried = pump(&mut a, &mut b);
    let chats = carried
        .iter()
        .flat_map(|batch| &batch.events)
        .filter(|e| matches!(e.kind.as_ref().and_then(rooms_said), Some(Said::Line(_))))
        .count();
    assert_eq!(chats, 20, "once per node, not once per member");
    for &bob in &bobs {
        let lines: Vec<u64> = b
            .take(bob)
            .into_iter()
            .map(|m| match m {
                S2cMessage::S2cChat(c) if c.from == "alice" => c.sent_at_us,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(lines, (0..20).collect::<Vec<u64>>());
    }
    // Both nodes list the room with its four members.
    for (h, who) in [(&mut a, alice), (&mut b, bobs[0])] {
        h.take(who);
        h.send(who, C2sRoomList {});
        match h.take(who).as_slice() {
            [S2cMessage::S2cRoomList(list)] => {
                assert_eq!(list.rooms.len(), 1);
                assert_eq!(list.rooms[0].members, 4);
            }
            other => panic!("{other:?}"),
        }
    }
    // A joiner on b gets the lines said on a as history.
    let late = guest(&mut b, "late");
    let replayed = join(&mut b, late, "lobby")
        .into_iter()
        .filter(|m| matches!(m, S2cMessage::S2cChat(c) if c.history))
        .count();
    assert_eq!(replayed, 20);
}

#[test]
fn whispers_reach_users_of_another_node_and_nobody_is_offline() {
    let (mut a, mut b) = pair();
    let alice = guest(&mut a, "alice");
    let bob = guest(&mut b, "bob");
    settle(&mut a, &mut b);
    a.send(
        alice,
        C2sWhisper {
            to: "BOB".into(),
            content: "psst".into(),
            sent_at_us: 7,
        },
    );
    match a.take(alice).as_slice() {
        [S2cMessage::S2cWhisper(w)] => assert_eq!(w.content, "psst", "the echo"),
        other => panic!("{other:?}"),
    }
    pump(&mut a, &mut b);
    match b.take(bob).as_slice() {
        [S2cMessage::S2cWhisper(w)] => {
            assert_eq!((w.from.as_str(), w.content.as_str()), ("alice", "psst"))
        }
        other => panic!("{other:?}"),
    }
    a.send(
        alice,
        C2sWhisper {
            to: "nobody".into(),
            content: "hello?".into(),
            sent_at_us: 8,
        },
    );
    match a.take(alice).as_slice() {
        [S2cMessage::S2cError(e)] => assert_eq!(e.code, ErrorCode::UserOffline as i32),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_name_goes_to_the_login_the_bucket_granted_last_and_the_older_session_is_replaced() {
    let (mut a, mut b) = pair();
    let first = guest(&mut a, "ann");
    settle(&mut a, &mut b);
    let second = guest(&mut b, "ann");
    settle(&mut a, &mut b);
    let replaced = a.take(first);
    assert!(
        matches!(replaced.as_slice(), [S2cMessage::S2cError(e)] if e.code == ErrorCode::Replaced as i32),
        "{replaced:?}"
    );
    assert!(a.world().session_of("ann").is_none());
    assert_eq!(b.world().session_of("ann"), Some(second));
    assert_eq!(a.cluster().node_of("ann"), Some("b"));
}

#[test]
fn a_silent_node_is_gone_with_its_members_and_welcomed_back_when_it_speaks() {
    let (mut a, mut b, alice, bob) = lobby_on_both();
    a.take(alice);
    b.take(bob);
    // b says nothing for the timeout.
    a.advance(NODE_TIMEOUT);
    match a.take(alice).as_slice() {
        [S2cMessage::S2cRoomPresence(p)] => {
            assert_eq!((p.username.as_str(), p.joined), ("bob", false))
        }
        other => panic!("{other:?}"),
    }
    assert!(a.cluster().peers().is_empty());
    assert_eq!(a.world().game.rooms.remote_count("lobby"), 0);
    // b speaks again (its heartbeat): a asks for its state, and bob is back.
    b.sim.skip(NODE_TIMEOUT);
    settle(&mut a, &mut b);
    match a.take(alice).as_slice() {
        [S2cMessage::S2cRoomPresence(p)] => {
            assert_eq!((p.username.as_str(), p.joined), ("bob", true))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(a.cluster().node_of("bob"), Some("b"));
}

#[test]
fn a_repeated_batch_is_dropped_and_a_missing_one_is_counted() {
    let (mut a, mut b, alice, bob) = lobby_on_both();
    b.take(bob);
    a.send(
        alice,
        C2sChat {
            room: "lobby".into(),
            content: "once".into(),
            sent_at_us: 1,
        },
    );
    let carried = pump(&mut a, &mut b);
    for batch in carried {
        b.bring(FromNats::Batch(batch));
    }
    assert_eq!(b.take(bob).len(), 1, "the repeat is dropped");
    // A batch lost on the way: the next one says so.
    a.send(
        alice,
        C2sChat {
            room: "lobby".into(),
            content: "lost".into(),
            sent_at_us: 2,
        },
    );
    names(&mut a);
    let _ = a.take_sent();
    a.send(
        alice,
        C2sChat {
            room: "lobby".into(),
            content: "after".into(),
            sent_at_us: 3,
        },
    );
    pump(&mut a, &mut b);
    assert!(b.cluster().gaps >= 1);
    // And b asks a for its state again, which it may have missed a change of.
    let asked = pump(&mut b, &mut a).iter().any(|batch| {
        batch.direct
            && batch
                .events
                .iter()
                .any(|e| matches!(e.kind, Some(Kind::Hello(_))))
    });
    assert!(asked);
    // Bob is told, once, that lines of the lobby did not reach him, before the line after.
    match b.take(bob).as_slice() {
        [S2cMessage::S2cRoomMissed(m), S2cMessage::S2cChat(c)] => {
            assert_eq!(m.room, "lobby");
            assert_eq!(c.content, "after");
        }
        other => panic!("{other:?}"),
    }
    // a's state comes: the lobby was told already.
    settle(&mut a, &mut b);
    assert_eq!(b.take(bob), []);
}

#[test]
fn a_room_joined_in_lost_batches_is_told_it_missed_lines_when_the_nodes_state_comes() {
    let (mut a, mut b, alice, bob) = lobby_on_both();
    let bea = guest(&mut b, "bea");
    join(&mut b, bea, "den");
    settle(&mut a, &mut b);
    b.take(bob);
    b.take(bea);
    // Carol joins the den on a and speaks there, and none of it reaches b.
    let carol = guest(&mut a, "carol");
    join(&mut a, carol, "den");
    a.send(
        carol,
        C2sChat {
            room: "den".into(),
            content: "lost".into(),
            sent_at_us: 1,
        },
    );
    names(&mut a);
    let lost = a.take_sent();
    assert!(lost.iter().any(|(_, batch)| batch.direct), "{lost:?}");
    // Then alice speaks in the lobby, and that reaches b.
    a.send(
        alice,
        C2sChat {
            room: "lobby".into(),
            content: "after".into(),
            sent_at_us: 2,
        },
    );
    pump(&mut a, &mut b);
    match b.take(bob).as_slice() {
        [S2cMessage::S2cRoomMissed(m), S2cMessage::S2cChat(c)] => {
            assert_eq!((m.room.as_str(), c.content.as_str()), ("lobby", "after"));
        }
        other => panic!("{other:?}"),
    }
    // Nobody here was known to be in the den with a's members: bea hears of it with a's state.
    assert_eq!(b.take(bea), []);
    settle(&mut a, &mut b);
    match b.take(bea).as_slice() {
        [S2cMessage::S2cRoomMissed(m), S2cMessage::S2cRoomPresence(p)] => {
            assert_eq!(m.room, "den");
            assert_eq!((p.username.as_str(), p.joined), ("carol", true));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(b.take(bob), [], "the lobby is not told twice");
    // Once the state has come, what follows is whole again: no notice for a later line.
    a.send(
        carol,
        C2sChat {
            room: "den".into(),
            content: "heard".into(),
            sent_at_us: 3,
        },
    );
    settle(&mut a, &mut b);
    match b.take(bea).as_slice() {
        [S2cMessage::S2cChat(c)] => assert_eq!(c.content, "heard"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn failed_logins_on_one_node_count_on_the_others() {
    let (mut a, mut b) = pair();
    let login = |password: &str| protocol::world::C2sLogin {
        username: "ann".into(),
        password: password.into(),
        ..Default::default()
    };
    let limit = a.world().config.throttle.max_failures_per_user;
    for _ in 0..limit {
        let guesser = a.connect_from([10, 0, 0, 1]);
        a.send(guesser, login("wrong password"));
        match a.take(guesser).as_slice() {
            [S2cMessage::S2cError(e)] => {
                assert_eq!(e.code, ErrorCode::InvalidCredentials as i32)
            }
            other => panic!("{other:?}"),
        }
    }
    // Before node b hears of them, it would check the guess; after, it refuses it unchecked.
    pump(&mut a, &mut b);
    let guesser = b.connect_from([10, 0, 0, 1]);
    b.send(guesser, login("another guess"));
    match b.take(guesser).as_slice() {
        [S2cMessage::S2cError(e)] => assert_eq!(e.code, ErrorCode::RateLimited as i32),
        other => panic!("{other:?}"),
    }
    // From another address the name is not refused.
    let other = b.connect_from([10, 0, 0, 2]);
    b.send(other, login("a guess"));
    match b.take(other).as_slice() {
        [S2cMessage::S2cError(e)] => assert_eq!(e.code, ErrorCode::InvalidCredentials as i32),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_node_restarted_under_its_name_is_a_new_one() {
    let (mut a, _, alice, _) = lobby_on_both();
    a.take(alice);
    // b restarts at once, before it could be missed: its sequence numbers start again.
    let mut b = node("b");
    let carol = guest(&mut b, "carol");
    join(&mut b, carol, "lobby");
    settle(&mut a, &mut b);
    let seen: Vec<(String, bool)> = a
        .take(alice)
        .into_iter()
        .map(|m| match m {
            S2cMessage::S2cRoomPresence(p) => (p.username, p.joined),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        seen,
        [("bob".to_string(), false), ("carol".to_string(), true)]
    );
    assert_eq!(a.cluster().node_of("bob"), None);
}

#[test]
fn a_large_state_is_cut_into_batches_that_keep_their_order() {
    let events: Vec<Event> = (0..20_000)
        .map(|i| {
            Event::new(Kind::Module(wire::ModuleEvent {
                module: "rooms".into(),
                payload: crate::modules::rooms::cluster::encode(Said::Joined(Member {
                    room: format!("room-{}", i % 100),
                    username: format!("user-{i:08}"),
                })),
            }))
        })
        .collect();
    let runs = chunks(events.clone());
    assert!(runs.len() > 1, "{} runs", runs.len());
    for run in &runs {
        let len: usize = run.iter().map(prost::Message::encoded_len).sum();
        assert!(len <= MAX_BATCH_BYTES, "{len}");
    }
    assert_eq!(runs.concat(), events);
    assert!(chunks(Vec::new()).is_empty());
}

#[test]
fn a_second_node_with_the_same_name_is_named_in_the_log_and_ignored() {
    let (mut a, _) = pair();
    let alice = guest(&mut a, "alice");
    join(&mut a, alice, "lobby");
    a.take(alice);
    let mut twin = node("a");
    let bob = guest(&mut twin, "bob");
    join(&mut twin, bob, "lobby");
    pump(&mut twin, &mut a);
    assert!(a.cluster().warned_twin);
    assert!(a.take(alice).is_empty(), "nothing of the twin is taken");
}

#[test]
fn a_room_is_full_at_its_capacity_counting_every_node_and_leaving_frees_a_place() {
    let (mut a, mut b) = pair();
    let capacity = a.world().game.rooms.config.room_capacity;
    let mut on_a = Vec::new();
    for i in 0..capacity - 1 {
        let id = guest(&mut a, &format!("a{i:03}"));
        join(&mut a, id, "hall");
        on_a.push(id);
    }
    // The last place goes to b's first joiner; b's second, and a's next, find the room full,
    // though neither node has heard of the other's joins yet.
    let (b1, b2) = (guest(&mut b, "bob"), guest(&mut b, "bea"));
    assert!(matches!(
        join(&mut b, b1, "hall").as_slice(),
        [S2cMessage::S2cRoomJoined(_)]
    ));
    match join(&mut b, b2, "hall").as_slice() {
        [S2cMessage::S2cError(e)] => assert_eq!(e.code, ErrorCode::RoomFull as i32),
        other => panic!("{other:?}"),
    }
    let late = guest(&mut a, "late");
    match join(&mut a, late, "hall").as_slice() {
        [S2cMessage::S2cError(e)] => assert_eq!(e.code, ErrorCode::RoomFull as i32),
        other => panic!("{other:?}"),
    }
    assert_eq!(counted("hall"), capacity);
    // One leaves: its place is free for the next, on any node.
    a.send(
        on_a[0],
        protocol::world::C2sRoomLeave {
            room: "hall".into(),
        },
    );
    names(&mut a);
    assert_eq!(counted("hall"), capacity - 1);
    assert!(matches!(
        join(&mut b, b2, "hall").as_slice(),
        [S2cMessage::S2cRoomJoined(_)]
    ));
    // A node that is gone stops counting.
    a.advance(NODE_TIMEOUT);
    names(&mut a);
    assert_eq!(counted("hall"), capacity - 2, "b's two members");
}

#[test]
fn a_node_started_again_under_its_name_stops_counting_what_its_last_run_left() {
    let mut a = node("a");
    let alice = guest(&mut a, "alice");
    join(&mut a, alice, "hall");
    assert_eq!(counted("hall"), 1);
    // The whole cluster stopped without a word (no node left to count a's loss); a starts
    // again.
    let mut again = node("a");
    names(&mut again);
    assert_eq!(counted("hall"), 0);
}

#[test]
fn a_message_sent_to_a_room_reaches_its_members_on_every_node_once_and_is_kept_nowhere() {
    let (mut a, mut b, alice, bob) = lobby_on_both();
    a.take(alice);
    b.take(bob);
    let wave = protocol::world::S2cChat {
        room: "lobby".into(),
        from: "alice".into(),
        content: "waves".into(),
        ..Default::default()
    };
    crate::modules::rooms::send_to_room(a.world_mut(), "lobby", &wave).unwrap();
    crate::modules::rooms::send_to_room(a.world_mut(), "nowhere", &wave).unwrap();
    a.settle();
    assert_eq!(a.take(alice), [S2cMessage::S2cChat(wave.clone())]);
    let carried = pump(&mut a, &mut b);
    let frames: usize = carried
        .iter()
        .flat_map(|batch| &batch.events)
        .filter(|e| matches!(e.kind.as_ref().and_then(rooms_said), Some(Said::Frame(_))))
        .count();
    assert_eq!(frames, 1, "once to the one other node with members");
    assert_eq!(b.take(bob), [S2cMessage::S2cChat(wave)]);
    settle(&mut a, &mut b);
    assert!(b.take(bob).is_empty(), "once");
    for h in [&a, &b] {
        assert!(
            h.world().game.rooms.rooms["lobby"].history.is_empty(),
            "kept in no history"
        );
    }
}

/// A batch whose event carries a field number the events no longer have (those of the rooms'
/// and chat's events before they were module events, as an older node sends them) decodes
/// without that event's kind: it never panics the receiving task.
#[test]
fn an_event_of_a_retired_kind_decodes_as_an_event_of_no_kind() {
    for tag in [5u8, 6, 7, 8, 9, 12] {
        // Batch.events (4) holding an Event with field `tag`, an empty message.
        let payload = [0x22, 0x02, tag << 3 | 2, 0x00];
        let batch = wire::decode(&payload).unwrap();
        assert_eq!(batch.events.len(), 1);
        assert_eq!(batch.events[0].kind, None, "tag {tag}");
    }
}
