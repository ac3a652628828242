//! Rooms over real sockets: join (creating), members, presence, leave, list, capacity, rooms
//! dropped when empty, leaving on disconnect, history replayed on join.

mod common;

use common::{start_server, test_config};
use protocol::world::{
    C2sRoomJoin, C2sRoomLeave, S2cChat, S2cRoomJoined, S2cRoomLeft, S2cRoomPresence,
};
use protocol::{ErrorCode, MessageType};

fn join(room: &str) -> C2sRoomJoin {
    C2sRoomJoin {
        room: room.to_string(),
        ..Default::default()
    }
}

fn leave(room: &str) -> C2sRoomLeave {
    C2sRoomLeave {
        room: room.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_creates_the_room_lists_members_and_tells_the_others() {
    let mut config = test_config();
    config.world.room_capacity = 42;
    let server = start_server(config).await;
    let mut alice = server.guest("alice").await;
    let mut bob = server.guest("bob").await;
    let mut carol = server.guest("carol").await;

    alice.send(&join("lobby")).await;
    let joined = alice.expect::<S2cRoomJoined>().await;
    assert_eq!(joined.room, "lobby");
    assert_eq!(joined.members, vec!["alice"]);
    assert_eq!(joined.capacity, 42);

    bob.send(&join("lobby")).await;
    let joined = bob.expect::<S2cRoomJoined>().await;
    let mut members = joined.members.clone();
    members.sort();
    assert_eq!(members, vec!["alice", "bob"], "{joined:?}");
    let presence = alice.expect::<S2cRoomPresence>().await;
    assert_eq!(
        (
            presence.room.as_str(),
            presence.username.as_str(),
            presence.joined
        ),
        ("lobby", "bob", true)
    );

    carol.send(&join("lobby")).await;
    let joined = carol.expect::<S2cRoomJoined>().await;
    let mut members = joined.members.clone();
    members.sort();
    assert_eq!(members, vec!["alice", "bob", "carol"], "{joined:?}");
    for member in [&mut alice, &mut bob] {
        let presence = member.expect::<S2cRoomPresence>().await;
        assert_eq!(
            (
                presence.room.as_str(),
                presence.username.as_str(),
                presence.joined
            ),
            ("lobby", "carol", true)
        );
    }
    // The joiner gets no presence of its own.
    carol.ping_next(1).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_a_room_twice_answers_joined_again_without_presence() {
    let server = start_server(test_config()).await;
    let mut alice = server.member("alice", "lobby").await;
    let mut bob = server.member("bob", "lobby").await;
    alice.expect::<S2cRoomPresence>().await;

    bob.send(&join("lobby")).await;
    let joined = bob.expect::<S2cRoomJoined>().await;
    assert_eq!(joined.members.len(), 2, "{joined:?}");
    alice.ping_next(1).await;
    assert_eq!(alice.member_count("lobby").await, Some(2));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_answers_room_left_and_the_others_see_presence_joined_false() {
    let server = start_server(test_config()).await;
    let mut alice = server.member("alice", "lobby").await;
    let mut bob = server.member("bob", "lobby").await;
    alice.expect::<S2cRoomPresence>().await;

    bob.send(&leave("lobby")).await;
    let left = bob.expect::<S2cRoomLeft>().await;
    assert_eq!(left.room, "lobby");
    let presence = alice.expect::<S2cRoomPresence>().await;
    assert_eq!(
        (
            presence.room.as_str(),
            presence.username.as_str(),
            presence.joined
        ),
        ("lobby", "bob", false)
    );

    // Out of the room: no more of its chat, and chat to it is refused.
    alice.say("lobby", "bob is gone", 1).await;
    alice.expect_chat("lobby", "alice", "bob is gone").await;
    bob.ping_next(1).await;
    bob.say("lobby", "let me in", 2).await;
    let error = bob.expect_error(ErrorCode::NotInRoom).await;
    assert_eq!(error.request_id, protocol::world::C2sChat::ID as u32);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_a_room_one_is_not_in_answers_not_in_room() {
    let server = start_server(test_config()).await;
    let mut alice = server.member("alice", "lobby").await;
    let mut bob = server.guest("bob").await;
    for room in ["lobby", "nowhere"] {
        bob.send(&leave(room)).await;
        let error = bob.expect_error(ErrorCode::NotInRoom).await;
        assert_eq!(error.request_id, C2sRoomLeave::ID as u32, "{error:?}");
        assert!(error.reason.contains(room), "{error:?}");
    }
    // Leaving twice.
    alice.send(&leave("lobby")).await;
    alice.expect::<S2cRoomLeft>().await;
    alice.send(&leave("lobby")).await;
    alice.expect_error(ErrorCode::NotInRoom).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_room_names_answer_bad_request_naming_the_value() {
    let server = start_server(test_config()).await;
    let mut alice = server.guest("alice").await;
    let too_long = "r".repeat(65);
    for room in ["", "has space", too_long.as_str(), "slash/room", "émoji"] {
        alice.send(&join(room)).await;
        let error = alice.expect_error(ErrorCode::BadRequest).await;
        assert_eq!(error.request_id, C2sRoomJoin::ID as u32, "{error:?}");
        assert!(error.reason.contains(&format!("{room:?}")), "{error:?}");
    }
    // 1 and 64 characters are fine.
    alice.join("r").await;
    alice.join(&"r".repeat(64)).await;
    let list = alice.room_list().await;
    assert_eq!(list.rooms.len(), 2, "{list:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_list_shows_every_room_with_its_member_count_and_capacity() {
    let mut config = test_config();
    config.world.room_capacity = 7;
    let server = start_server(config).await;
    let mut alice = server.guest("alice").await;
    let mut bob = server.guest("bob").await;
    let mut carol = server.guest("carol").await;
    alice.join("zeta").await;
    alice.join("alpha").await;
    bob.join("alpha").await;
    carol.join("alpha").await;
    carol.join("mid").await;

    let list = bob.room_list().await;
    let mut rooms: Vec<(String, u32, u32)> = list
        .rooms
        .iter()
        .map(|r| (r.name.clone(), r.members, r.capacity))
        .collect();
    rooms.sort();
    assert_eq!(
        rooms,
        vec![
            ("alpha".to_string(), 3, 7),
            ("mid".to_string(), 1, 7),
            ("zeta".to_string(), 1, 7)
        ]
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_room_answers_room_full_and_its_members_see_nothing() {
    let mut config = test_config();
    config.world.room_capacity = 2;
    let server = start_server(config).await;
    let mut alice = server.member("alice", "small").await;
    let mut bob = server.member("bob", "small").await;
    alice.expect::<S2cRoomPresence>().await;

    let mut carol = server.guest("carol").await;
    carol.send(&join("small")).await;
    let error = carol.expect_error(ErrorCode::RoomFull).await;
    assert_eq!(error.request_id, C2sRoomJoin::ID as u32, "{error:?}");
    assert!(error.reason.contains("small"), "{error:?}");
    alice.ping_next(1).await;
    bob.ping_next(1).await;
    assert_eq!(alice.member_count("small").await, Some(2));
    carol.say("small", "hello?", 1).await;
    carol.expect_error(ErrorCode::NotInRoom).await;

    // A place frees up: carol gets in.
    bob.send(&leave("small")).await;
    bob.expect::<S2cRoomLeft>().await;
    let joined = carol.join("small").await;
    assert_eq!(joined.members.len(), 2, "{joined:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_is_dropped_when_its_last_member_leaves() {
    let server = start_server(test_config()).await;
    let mut alice = server.member("alice", "lobby").await;
    alice.join("other").await;
    let mut bob = server.member("bob", "lobby").await;
    alice.expect::<S2cRoomPresence>().await;

    alice.send(&leave("lobby")).await;
    alice.expect::<S2cRoomLeft>().await;
    assert_eq!(bob.member_count("lobby").await, Some(1));
    bob.send(&leave("lobby")).await;
    bob.expect::<S2cRoomLeft>().await;
    let list = bob.room_list().await;
    let names: Vec<&str> = list.rooms.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec!["other"], "{list:?}");

    // Joining again creates it afresh, with only the joiner in it.
    let joined = bob.join("lobby").await;
    assert_eq!(joined.members, vec!["bob"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_leaves_every_room_and_the_others_see_it_go() {
    let server = start_server(test_config()).await;
    let mut alice = server.guest("alice").await;
    alice.join("r1").await;
    alice.join("r2").await;
    let mut bob = server.guest("bob").await;
    bob.join("r1").await;
    bob.join("r2").await;
    bob.join("r3").await;
    for _ in 0..2 {
        alice.expect::<S2cRoomPresence>().await;
    }

    bob.close().await;
    let mut gone = Vec::new();
    for _ in 0..2 {
        let presence = alice.expect::<S2cRoomPresence>().await;
        assert_eq!(
            (presence.username.as_str(), presence.joined),
            ("bob", false),
            "{presence:?}"
        );
        gone.push(presence.room);
    }
    gone.sort();
    assert_eq!(gone, vec!["r1", "r2"]);
    let list = alice.room_list().await;
    let mut rooms: Vec<(String, u32)> = list
        .rooms
        .iter()
        .map(|r| (r.name.clone(), r.members))
        .collect();
    rooms.sort();
    assert_eq!(rooms, vec![("r1".to_string(), 1), ("r2".to_string(), 1)]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_per_session_are_bounded_by_max_rooms_per_session() {
    let mut config = test_config();
    config.world.max_rooms_per_session = 2;
    let server = start_server(config).await;
    let mut alice = server.guest("alice").await;
    alice.join("a").await;
    alice.join("b").await;
    alice.send(&join("c")).await;
    let error = alice.expect_error(ErrorCode::BadRequest).await;
    assert!(error.reason.contains("\"c\""), "{error:?}");
    // Rejoining a room one is in is still fine, and leaving makes room for another.
    alice.join("a").await;
    alice.send(&leave("a")).await;
    alice.expect::<S2cRoomLeft>().await;
    alice.join("c").await;
    server.shutdown().await;
}

/// PROTOCOL.md, session rule 6: "Rooms keep their last chat lines (how many is server config,
/// on by default) and replay them to a member who joins, marked `history = true`, before live
/// chat."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_a_room_replays_its_recent_chat_marked_history_before_live_chat() {
    let server = start_server(test_config()).await;
    let mut alice = server.member("alice", "lobby").await;
    for (i, line) in ["first", "second", "third"].iter().enumerate() {
        alice.say("lobby", line, 100 + i as u64).await;
        alice.expect_chat("lobby", "alice", line).await;
    }

    let mut bob = server.guest("bob").await;
    bob.send(&join("lobby")).await;
    bob.expect::<S2cRoomJoined>().await;
    alice.say("lobby", "live", 200).await;
    let mut replayed = Vec::new();
    loop {
        let chat = bob.expect::<S2cChat>().await;
        if !chat.history {
            assert_eq!(chat.content, "live");
            break;
        }
        assert_eq!(chat.from, "alice");
        replayed.push((chat.content, chat.sent_at_us));
    }
    assert_eq!(
        replayed,
        vec![
            ("first".to_string(), 100),
            ("second".to_string(), 101),
            ("third".to_string(), 102)
        ],
        "a joiner should get the room's last lines marked history = true (PROTOCOL.md rule 6)"
    );
    server.shutdown().await;
}

/// A client may send a join and, without waiting, a line to the room it joins: requests of
/// one client are handled in order ("Replies to one client come in the order of its requests,
/// errors included", docs/PROTOCOL.md), so the join is done when the line is handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_and_chat_sent_back_to_back_are_handled_in_order() {
    let server = start_server(test_config()).await;
    let mut alice = server.guest("alice").await;
    let mut burst = protocol::frame(&join("fresh")).unwrap().to_vec();
    burst.extend_from_slice(
        &protocol::frame(&protocol::world::C2sChat {
            room: "fresh".into(),
            content: "first words".into(),
            sent_at_us: 1,
        })
        .unwrap(),
    );
    burst.extend_from_slice(
        &protocol::frame(&protocol::world::C2sPing {
            seq: 3,
            client_time_us: 0,
            ..Default::default()
        })
        .unwrap(),
    );
    alice.send_raw(&burst).await;
    let mut replies = Vec::new();
    for _ in 0..3 {
        replies.push(match alice.recv().await {
            protocol::S2cMessage::S2cRoomJoined(j) => format!("joined {}", j.room),
            protocol::S2cMessage::S2cChat(c) => format!("chat {}", c.content),
            protocol::S2cMessage::S2cPong(p) => format!("pong {}", p.seq),
            protocol::S2cMessage::S2cError(e) => format!("error {:?} {}", e.code(), e.reason),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(
        replies,
        vec!["joined fresh", "chat first words", "pong 3"],
        "replies out of the order of the requests"
    );
    server.shutdown().await;
}

/// Same as above, for a room that exists already (no history to load).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_of_an_existing_room_and_chat_sent_back_to_back_are_handled_in_order() {
    let server = start_server(test_config()).await;
    let _host = server.member("host", "open").await;
    let mut alice = server.guest("alice").await;
    let mut burst = protocol::frame(&join("open")).unwrap().to_vec();
    burst.extend_from_slice(
        &protocol::frame(&protocol::world::C2sChat {
            room: "open".into(),
            content: "hello host".into(),
            sent_at_us: 1,
        })
        .unwrap(),
    );
    alice.send_raw(&burst).await;
    alice.expect::<S2cRoomJoined>().await;
    let chat = alice.expect::<S2cChat>().await;
    assert_eq!(chat.content, "hello host");
    server.shutdown().await;
}
