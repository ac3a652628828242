//! Chat and whispers over real sockets: fan-out to every member (the sender included), fields
//! carried intact, the length limit, per-sender order, whisper delivery and echo.

mod common;

use common::{start_server, test_config};
use protocol::world::{C2sChat, C2sLogout, C2sWhisper, S2cChat, S2cWhisper};
use protocol::{ErrorCode, MessageType, S2cMessage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_reaches_every_member_including_the_sender_with_its_fields_intact() {
    let server = start_server(test_config()).await;
    let mut alice = server.member("alice", "lobby").await;
    let mut bob = server.member("bob", "lobby").await;
    let mut carol = server.member("carol", "lobby").await;
    let mut outsider = server.member("dave", "elsewhere").await;
    // Drain the presence of the later joiners.
    alice.await_presence("carol").await;
    bob.await_presence("carol").await;

    let content = "héllo wörld ✓ 🌍 \"quoted\" \\ <tag> & 0\u{0}1";
    let sent_at_us = u64::MAX - 7;
    let before = protocol::now_us();
    bob.send(&C2sChat {
        room: "lobby".into(),
        content: content.into(),
        sent_at_us,
    })
    .await;
    for member in [&mut alice, &mut bob, &mut carol] {
        let chat = member.expect::<S2cChat>().await;
        assert_eq!(chat.room, "lobby");
        assert_eq!(chat.from, "bob");
        assert_eq!(chat.content, content);
        assert_eq!(
            chat.sent_at_us, sent_at_us,
            "sent_at_us is carried untouched"
        );
        assert!(!chat.history);
        assert!(
            chat.server_time_us + 1_000_000 >= before && chat.server_time_us > 0,
            "server_time_us {} is not the server's current time (client clock {before})",
            chat.server_time_us
        );
    }
    // Not to anyone outside the room.
    outsider.ping_next(1).await;

    // sent_at_us = 0 is carried as 0 too (the server never fills it in).
    alice.say("lobby", "zero", 0).await;
    for member in [&mut alice, &mut bob, &mut carol] {
        let chat = member.expect::<S2cChat>().await;
        assert_eq!((chat.from.as_str(), chat.sent_at_us), ("alice", 0));
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_to_a_room_one_is_not_in_answers_not_in_room() {
    let server = start_server(test_config()).await;
    let mut alice = server.member("alice", "lobby").await;
    let mut bob = server.guest("bob").await;
    for room in ["lobby", "nowhere"] {
        bob.say(room, "hi", 1).await;
        let error = bob.expect_error(ErrorCode::NotInRoom).await;
        assert_eq!(error.request_id, C2sChat::ID as u32, "{error:?}");
    }
    alice.ping_next(1).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_over_max_chat_len_bytes_answers_bad_request_and_is_not_delivered() {
    let mut config = test_config();
    config.world.max_chat_len = 20;
    let server = start_server(config).await;
    let mut alice = server.member("alice", "lobby").await;
    let mut bob = server.member("bob", "lobby").await;
    alice
        .recv_until(|m| matches!(m, S2cMessage::S2cRoomPresence(_)))
        .await;

    // Exactly the limit is fine.
    let at_limit = "a".repeat(20);
    alice.say("lobby", &at_limit, 1).await;
    bob.expect_chat("lobby", "alice", &at_limit).await;
    alice.expect_chat("lobby", "alice", &at_limit).await;

    // One byte over; and 11 characters that are 22 bytes of UTF-8.
    for content in ["b".repeat(21), "é".repeat(11)] {
        alice.say("lobby", &content, 2).await;
        let error = alice.expect_error(ErrorCode::BadRequest).await;
        assert_eq!(error.request_id, C2sChat::ID as u32, "{error:?}");
        assert!(
            error.reason.contains(&content.len().to_string()),
            "the reason should give the length {}: {error:?}",
            content.len()
        );
    }
    // Nothing of it reached bob.
    bob.ping_next(1).await;

    // Whispers have the same limit.
    alice
        .send(&C2sWhisper {
            to: "bob".into(),
            content: "c".repeat(21),
            sent_at_us: 3,
        })
        .await;
    let error = alice.expect_error(ErrorCode::BadRequest).await;
    assert_eq!(error.request_id, C2sWhisper::ID as u32, "{error:?}");
    bob.ping_next(2).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_from_one_sender_arrives_in_order_over_200_lines_sent_back_to_back() {
    let server = start_server(test_config()).await;
    let mut alice = server.member("alice", "lobby").await;
    let mut bob = server.member("bob", "lobby").await;
    let mut carol = server.member("carol", "lobby").await;
    for member in [&mut alice, &mut bob] {
        member.await_presence("carol").await;
    }

    let lines: Vec<C2sChat> = (0..200u64)
        .map(|i| C2sChat {
            room: "lobby".into(),
            content: format!("line {i:03} {}", "x".repeat((i % 50) as usize)),
            sent_at_us: i,
        })
        .collect();
    // Two senders at once, each in one write: order holds per sender.
    let mut carol_lines = lines.clone();
    for line in &mut carol_lines {
        line.sent_at_us += 1000;
    }
    alice.send_all(&lines).await;
    carol.send_all(&carol_lines).await;

    for member in [&mut alice, &mut bob, &mut carol] {
        let mut from_alice = Vec::new();
        let mut from_carol = Vec::new();
        while from_alice.len() < 200 || from_carol.len() < 200 {
            let chat = member.expect::<S2cChat>().await;
            match chat.from.as_str() {
                "alice" => from_alice.push((chat.sent_at_us, chat.content)),
                "carol" => from_carol.push((chat.sent_at_us - 1000, chat.content)),
                other => panic!("chat from {other}"),
            }
        }
        let expected: Vec<(u64, String)> = lines
            .iter()
            .map(|l| (l.sent_at_us, l.content.clone()))
            .collect();
        assert_eq!(from_alice, expected, "alice's lines at {}", member.name);
        assert_eq!(from_carol, expected, "carol's lines at {}", member.name);
        member.ping_next(1).await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_in_one_room_does_not_reach_another_room() {
    let server = start_server(test_config()).await;
    let mut alice = server.guest("alice").await;
    alice.join("red").await;
    alice.join("blue").await;
    let mut bob = server.member("bob", "blue").await;
    alice
        .recv_until(|m| matches!(m, S2cMessage::S2cRoomPresence(_)))
        .await;

    alice.say("red", "only red", 1).await;
    alice.say("blue", "only blue", 2).await;
    let chat = alice.expect::<S2cChat>().await;
    assert_eq!(
        (chat.room.as_str(), chat.content.as_str()),
        ("red", "only red")
    );
    let chat = alice.expect::<S2cChat>().await;
    assert_eq!(
        (chat.room.as_str(), chat.content.as_str()),
        ("blue", "only blue")
    );
    let chat = bob.expect::<S2cChat>().await;
    assert_eq!(
        (chat.room.as_str(), chat.content.as_str()),
        ("blue", "only blue")
    );
    bob.ping_next(1).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whisper_is_delivered_to_the_target_and_echoed_to_the_sender() {
    let server = start_server(test_config()).await;
    let mut alice = server.guest("alice").await;
    let mut bob = server.guest("Bob").await;
    let mut carol = server.guest("carol").await;

    alice
        .send(&C2sWhisper {
            to: "bob".into(),
            content: "psst ✓".into(),
            sent_at_us: 424242,
        })
        .await;
    for receiver in [&mut bob, &mut alice] {
        let whisper = receiver.expect::<S2cWhisper>().await;
        assert_eq!(whisper.from, "alice");
        assert_eq!(whisper.to, "Bob", "the target's name as it logged in");
        assert_eq!(whisper.content, "psst ✓");
        assert_eq!(whisper.sent_at_us, 424242);
    }
    carol.ping_next(1).await;

    // A whisper to oneself arrives once.
    carol
        .send(&C2sWhisper {
            to: "CAROL".into(),
            content: "note to self".into(),
            sent_at_us: 1,
        })
        .await;
    let whisper = carol.expect::<S2cWhisper>().await;
    assert_eq!(
        (whisper.from.as_str(), whisper.to.as_str()),
        ("carol", "carol")
    );
    carol.ping_next(2).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whisper_to_a_user_not_logged_in_answers_user_offline() {
    let server = start_server(test_config()).await;
    let mut alice = server.guest("alice").await;
    alice
        .send(&C2sWhisper {
            to: "nobody".into(),
            content: "hello?".into(),
            sent_at_us: 1,
        })
        .await;
    let error = alice.expect_error(ErrorCode::UserOffline).await;
    assert_eq!(error.request_id, C2sWhisper::ID as u32, "{error:?}");
    assert!(error.reason.contains("nobody"), "{error:?}");

    // A user who logged out is offline too.
    let mut bob = server.guest("bob").await;
    bob.send(&C2sLogout {}).await;
    bob.ping_next(1).await; // the logout is done once the ping after it is answered
    alice
        .send(&C2sWhisper {
            to: "bob".into(),
            content: "still there?".into(),
            sent_at_us: 2,
        })
        .await;
    alice.expect_error(ErrorCode::UserOffline).await;
    bob.ping_next(2).await;

    // A bad target name is a bad request, naming it.
    alice
        .send(&C2sWhisper {
            to: "no such name".into(),
            content: "x".into(),
            sent_at_us: 3,
        })
        .await;
    let error = alice.expect_error(ErrorCode::BadRequest).await;
    assert!(error.reason.contains("\"no such name\""), "{error:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_sent_just_before_closing_still_reaches_the_room() {
    let server = start_server(test_config()).await;
    let mut alice = server.member("alice", "lobby").await;
    let mut bob = server.member("bob", "lobby").await;
    alice.await_presence("bob").await;
    bob.send(&C2sChat {
        room: "lobby".into(),
        content: "bye all".into(),
        sent_at_us: 1,
    })
    .await;
    bob.close().await;
    let chat = alice.expect::<S2cChat>().await;
    assert_eq!(
        (chat.from.as_str(), chat.content.as_str()),
        ("bob", "bye all")
    );
    let left = alice
        .recv_until(|m| matches!(m, S2cMessage::S2cRoomPresence(_)))
        .await;
    assert!(matches!(left, S2cMessage::S2cRoomPresence(p) if !p.joined && p.username == "bob"));
    server.shutdown().await;
}
