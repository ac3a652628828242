//! Connection-level behaviour over real sockets: welcome, ping, requests before login, bad
//! requests that keep the session, and the session limit. (The idle timeout is the core's,
//! tested at simulated time in `engine::testing` and `engine::core`.)

mod common;

use std::time::{Duration, Instant};

use common::{start_server, test_config, TestClient};
use protocol::world::{
    C2sChat, C2sLogout, C2sPing, C2sRoomJoin, C2sRoomLeave, C2sRoomList, C2sWhisper, S2cChat,
    S2cError, S2cPong,
};
use protocol::{ClientToServer, ErrorCode, MessageType, S2cMessage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_comes_first_with_session_ids_from_one_and_the_config_values() {
    let mut config = test_config();
    config.server.name = "welcome-test".to_string();
    config.server.tick_ms = 7;
    config.server.max_packet_size = 4096;
    let server = start_server(config).await;

    let first = TestClient::connect(server.addr).await;
    let second = TestClient::connect(server.addr).await;
    let third = TestClient::connect(server.addr).await;
    for (client, id) in [(&first, 1), (&second, 2), (&third, 3)] {
        let w = &client.welcome;
        assert_eq!(w.session_id, id, "{w:?}");
        assert_eq!(w.protocol_version, 1, "{w:?}");
        assert_eq!(w.protocol_version, protocol::PROTOCOL_VERSION);
        assert_eq!(w.tick_ms, 7, "{w:?}");
        assert_eq!(w.max_packet_size, 4096, "{w:?}");
        assert_eq!(w.server_name, "welcome-test", "{w:?}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ids_are_never_reused_after_a_disconnect() {
    let server = start_server(test_config()).await;
    let first = server.client().await;
    assert_eq!(first.session_id(), 1);
    first.close().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let client = server.client().await;
        ids.push(client.session_id());
        client.close().await;
    }
    assert_eq!(ids, vec![2, 3, 4]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_before_and_after_login_answers_pong_with_seq_and_client_time() {
    let server = start_server(test_config()).await;
    let mut client = server.client().await;

    let before = protocol::now_us();
    client
        .send(&C2sPing {
            seq: 7,
            client_time_us: 123_456_789,
            ..Default::default()
        })
        .await;
    let pong = client.expect::<S2cPong>().await;
    assert_eq!((pong.seq, pong.client_time_us), (7, 123_456_789));
    assert!(
        pong.server_time_us >= before.saturating_sub(1_000_000),
        "server_time_us {} is not a current time (client clock {before})",
        pong.server_time_us
    );

    client.login_guest("pinger").await;
    client
        .send(&C2sPing {
            seq: u32::MAX,
            client_time_us: u64::MAX,
            ..Default::default()
        })
        .await;
    let pong = client.expect::<S2cPong>().await;
    assert_eq!((pong.seq, pong.client_time_us), (u32::MAX, u64::MAX));

    // An all-default ping is an empty payload: still a valid message.
    client.send_frame(C2sPing::ID, &[]).await;
    let pong = client.expect::<S2cPong>().await;
    assert_eq!((pong.seq, pong.client_time_us), (0, 0));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pongs_come_back_in_the_order_of_the_pings() {
    let server = start_server(test_config()).await;
    let mut client = server.client().await;
    let pings: Vec<C2sPing> = (0..100)
        .map(|seq| C2sPing {
            seq,
            client_time_us: seq as u64 * 10,
            ..Default::default()
        })
        .collect();
    client.send_all(&pings).await;
    for seq in 0..100 {
        let pong = client.expect::<S2cPong>().await;
        assert_eq!((pong.seq, pong.client_time_us), (seq, seq as u64 * 10));
    }
    server.shutdown().await;
}

async fn expect_not_authenticated<M: ClientToServer>(client: &mut TestClient, message: M) {
    client.send(&message).await;
    let error = client.expect_error(ErrorCode::NotAuthenticated).await;
    assert_eq!(
        error.request_id,
        M::ID as u32,
        "request_id of the refused {}: {error:?}",
        M::NAME
    );
    assert!(!error.reason.is_empty(), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_before_login_answer_not_authenticated_with_their_id() {
    let server = start_server(test_config()).await;
    let mut client = server.client().await;
    // A room for the chat to go to, so that only the missing login is wrong.
    let mut member = server.member("member", "lobby").await;

    expect_not_authenticated(
        &mut client,
        C2sChat {
            room: "lobby".into(),
            content: "hi".into(),
            sent_at_us: 1,
        },
    )
    .await;
    expect_not_authenticated(
        &mut client,
        C2sRoomJoin {
            room: "lobby".into(),
            ..Default::default()
        },
    )
    .await;
    expect_not_authenticated(
        &mut client,
        C2sRoomLeave {
            room: "lobby".into(),
        },
    )
    .await;
    expect_not_authenticated(&mut client, C2sRoomList {}).await;
    expect_not_authenticated(
        &mut client,
        C2sWhisper {
            to: "member".into(),
            content: "psst".into(),
            sent_at_us: 1,
        },
    )
    .await;
    expect_not_authenticated(&mut client, C2sLogout {}).await;

    // Nothing of it reached the room or the whisper target.
    member.ping_next(1).await;
    assert_eq!(member.member_count("lobby").await, Some(1));
    // And the session is still usable: ping and login work.
    client.ping_next(2).await;
    client.login_guest("late").await;
    client.join("lobby").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_id_answers_bad_request_and_the_session_stays_usable() {
    let server = start_server(test_config()).await;
    let mut client = server.client().await;
    for id in [2999u16, 2500, 3000, 999, 0, u16::MAX] {
        client.send_frame(id, b"\x08\x01").await;
        let error = client.expect_error(ErrorCode::BadRequest).await;
        assert_eq!(error.request_id, id as u32, "{error:?}");
        assert!(
            error.reason.contains(&id.to_string()),
            "the reason should name id {id}: {error:?}"
        );
        client.ping_next(id as u32).await;
    }
    // After login too.
    client.login_guest("after").await;
    client.send_frame(2999, &[]).await;
    let error = client.expect_error(ErrorCode::BadRequest).await;
    assert_eq!(error.request_id, 2999);
    client.ping_next(1).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_to_client_id_sent_by_a_client_answers_bad_request() {
    let server = start_server(test_config()).await;
    let mut client = server.guest("mimic").await;
    let fake = S2cChat {
        room: "lobby".into(),
        from: "admin".into(),
        content: "trust me".into(),
        sent_at_us: 1,
        server_time_us: 2,
        history: false,
    };
    let payload = prost::Message::encode_to_vec(&fake);
    for id in [S2cChat::ID, S2cPong::ID, S2cError::ID, 1002, 1999] {
        client.send_frame(id, &payload).await;
        let error = client.expect_error(ErrorCode::BadRequest).await;
        assert_eq!(error.request_id, id as u32, "{error:?}");
    }
    client.ping_next(9).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_payload_answers_bad_request_and_the_session_stays_usable() {
    let server = start_server(test_config()).await;
    let mut client = server.client().await;

    // Truncated varint.
    client.send_frame(C2sPing::ID, &[0xff, 0xff, 0xff]).await;
    let error = client.expect_error(ErrorCode::BadRequest).await;
    assert_eq!(error.request_id, C2sPing::ID as u32, "{error:?}");
    assert!(error.reason.contains("C2S_Ping"), "{error:?}");
    client.ping_next(1).await;

    client.login_guest("decoder").await;
    client.join("lobby").await;
    // A string field (content, field 2) that is not UTF-8.
    let mut payload = vec![0x0a, 5];
    payload.extend_from_slice(b"lobby");
    payload.extend_from_slice(&[0x12, 2, 0xc3, 0x28]);
    client.send_frame(C2sChat::ID, &payload).await;
    let error = client.expect_error(ErrorCode::BadRequest).await;
    assert_eq!(error.request_id, C2sChat::ID as u32, "{error:?}");
    // A length-delimited field that runs past the end of the payload.
    client.send_frame(C2sRoomJoin::ID, &[0x0a, 50, b'x']).await;
    let error = client.expect_error(ErrorCode::BadRequest).await;
    assert_eq!(error.request_id, C2sRoomJoin::ID as u32, "{error:?}");

    client.ping_next(2).await;
    client.say("lobby", "still here", 3).await;
    client.expect_chat("lobby", "decoder", "still here").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_answered_in_arrival_order_among_good_ones() {
    let server = start_server(test_config()).await;
    let mut client = server.client().await;
    let mut burst = Vec::new();
    burst.extend_from_slice(
        &protocol::frame(&C2sPing {
            seq: 1,
            client_time_us: 0,
            ..Default::default()
        })
        .unwrap(),
    );
    burst.extend_from_slice(&common::raw_frame(2999, &[]));
    burst.extend_from_slice(
        &protocol::frame(&C2sPing {
            seq: 2,
            client_time_us: 0,
            ..Default::default()
        })
        .unwrap(),
    );
    burst.extend_from_slice(&common::raw_frame(C2sPing::ID, &[0xff]));
    burst.extend_from_slice(
        &protocol::frame(&C2sPing {
            seq: 3,
            client_time_us: 0,
            ..Default::default()
        })
        .unwrap(),
    );
    client.send_raw(&burst).await;
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(match client.recv().await {
            S2cMessage::S2cPong(p) => format!("pong {}", p.seq),
            S2cMessage::S2cError(e) => format!("error {}", e.request_id),
            other => panic!("{other:?}"),
        });
    }
    assert_eq!(
        seen,
        vec!["pong 1", "error 2999", "pong 2", "error 2001", "pong 3"]
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_over_max_sessions_gets_server_full_and_is_closed() {
    let mut config = test_config();
    config.server.max_sessions = 2;
    let server = start_server(config).await;
    let mut first = server.guest("first").await;
    let mut second = server.guest("second").await;

    let mut third = TestClient::connect_raw(server.addr).await;
    let error = third.expect::<S2cError>().await;
    assert_eq!(error.code(), ErrorCode::ServerFull, "{error:?}");
    assert_eq!(error.request_id, 0, "{error:?}");
    let after = third.expect_closed().await;
    assert!(after.is_empty(), "frames after SERVER_FULL: {after:?}");

    // The sessions inside are untouched.
    first.ping_next(1).await;
    second.ping_next(2).await;

    // When one leaves, there is room again (the server learns of the close on its own time,
    // hence the bounded retry).
    first.close().await;
    let deadline = Instant::now() + common::RECV_TIMEOUT;
    loop {
        let mut next = TestClient::connect_raw(server.addr).await;
        match next.recv().await {
            S2cMessage::S2cWelcome(w) => {
                // Ids are never reused; a refused connection never became a session.
                assert!(w.session_id > 2, "{w:?}");
                next.login_guest("fourth").await;
                break;
            }
            S2cMessage::S2cError(e) if e.code() == ErrorCode::ServerFull => {
                assert!(
                    Instant::now() < deadline,
                    "no slot freed after a disconnect"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("{other:?}"),
        }
    }
    second.ping_next(3).await;
    server.shutdown().await;
}
