//! Logging in over real sockets: guests, bad usernames, a second login on one session, a
//! second session with the same username (any case), logout.

mod common;

use common::{start_server, test_config};
use protocol::world::{C2sLogin, C2sLogout, C2sWhisper, S2cAuthResult, S2cRoomPresence};
use protocol::{ErrorCode, MessageType, S2cMessage};

fn guest(name: &str) -> C2sLogin {
    C2sLogin {
        username: name.to_string(),
        password: String::new(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_login_answers_auth_result_marked_guest() {
    let server = start_server(test_config()).await;
    let mut client = server.client().await;
    client.send(&guest("Alice_01.x-y")).await;
    let result = client.expect::<S2cAuthResult>().await;
    assert_eq!(result.username, "Alice_01.x-y");
    assert!(result.guest, "{result:?}");
    assert_eq!(result.user_id, 0, "{result:?}");
    assert!(result.token.is_empty(), "guests get no token: {result:?}");
    // Logged in: requests that need a login are served.
    client.join("lobby").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usernames_of_3_and_32_characters_are_accepted() {
    let server = start_server(test_config()).await;
    for name in ["abc".to_string(), "x".repeat(32)] {
        let mut client = server.client().await;
        assert_eq!(client.login_guest(&name).await.username, name);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_usernames_answer_bad_request_naming_the_value() {
    let server = start_server(test_config()).await;
    let mut client = server.client().await;
    let too_long = "y".repeat(33);
    for name in [
        "",
        "ab",
        too_long.as_str(),
        "bad name",
        "semi;colon",
        "ünïcode",
        "tab\there",
        "new\nline",
    ] {
        client.send(&guest(name)).await;
        let error = client.expect_error(ErrorCode::BadRequest).await;
        assert_eq!(error.request_id, C2sLogin::ID as u32, "{error:?}");
        assert!(
            error.reason.contains(&format!("{name:?}")),
            "the reason should quote the username {name:?}: {error:?}"
        );
        assert!(!error.reason.contains('\n'), "one line: {error:?}");
    }
    // None of them logged the session in.
    client.send(&C2sLogout {}).await;
    client.expect_error(ErrorCode::NotAuthenticated).await;
    client.login_guest("good_name").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_login_on_a_session_answers_already_authenticated() {
    let server = start_server(test_config()).await;
    let mut client = server.guest("alice").await;
    for name in ["bob", "alice", "ALICE"] {
        client.send(&guest(name)).await;
        let error = client.expect_error(ErrorCode::AlreadyAuthenticated).await;
        assert_eq!(error.request_id, C2sLogin::ID as u32, "{error:?}");
    }
    // Still alice: a whisper to alice reaches this session, bob is nobody.
    let mut other = server.guest("carol").await;
    other
        .send(&C2sWhisper {
            to: "alice".into(),
            content: "still you?".into(),
            sent_at_us: 1,
        })
        .await;
    match client.recv().await {
        S2cMessage::S2cWhisper(w) => {
            assert_eq!((w.from.as_str(), w.to.as_str()), ("carol", "alice"))
        }
        other => panic!("{other:?}"),
    }
    other
        .send(&C2sWhisper {
            to: "bob".into(),
            content: "anyone?".into(),
            sent_at_us: 1,
        })
        .await;
    other
        .recv_until(|m| matches!(m, S2cMessage::S2cError(e) if e.code() == ErrorCode::UserOffline))
        .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_login_with_the_same_name_in_any_case_replaces_the_first_session() {
    let server = start_server(test_config()).await;
    let mut old = server.member("alice", "lobby").await;
    let mut witness = server.member("witness", "lobby").await;
    old.await_presence("witness").await;

    let mut new = server.client().await;
    new.send(&guest("ALICE")).await;
    let result = new.expect::<S2cAuthResult>().await;
    assert_eq!(result.username, "ALICE");
    assert!(result.guest);

    // The old session: S2C_Error REPLACED (not tied to a request of its own), then EOF.
    let error = old.expect_error(ErrorCode::Replaced).await;
    assert_eq!(error.request_id, 0, "{error:?}");
    assert!(!error.reason.is_empty());
    let after = old.expect_closed().await;
    assert!(after.is_empty(), "frames after REPLACED: {after:?}");

    // The old session left its room; the room's other member saw it go.
    let presence = witness.expect::<S2cRoomPresence>().await;
    assert_eq!(
        (
            presence.room.as_str(),
            presence.username.as_str(),
            presence.joined
        ),
        ("lobby", "alice", false)
    );
    assert_eq!(witness.member_count("lobby").await, Some(1));

    // The name now belongs to the new session.
    witness
        .send(&C2sWhisper {
            to: "alice".into(),
            content: "who is there?".into(),
            sent_at_us: 5,
        })
        .await;
    match new.recv().await {
        S2cMessage::S2cWhisper(w) => {
            assert_eq!((w.from.as_str(), w.to.as_str()), ("witness", "ALICE"));
            assert_eq!(w.content, "who is there?");
        }
        other => panic!("{other:?}"),
    }
    new.ping_next(1).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_session_that_sends_more_is_still_closed() {
    let server = start_server(test_config()).await;
    let mut old = server.guest("dave").await;
    let mut new = server.client().await;
    new.login_guest("Dave").await;
    old.expect_error(ErrorCode::Replaced).await;
    // Whatever it still sends is ignored; the connection ends.
    let _ = old
        .try_send_raw(&protocol::frame(&guest("dave")).unwrap())
        .await;
    let after = old.expect_closed().await;
    assert!(
        !after
            .iter()
            .any(|m| matches!(m, S2cMessage::S2cAuthResult(_))),
        "a replaced session logged in again: {after:?}"
    );
    new.ping_next(1).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_leaves_rooms_frees_the_name_and_keeps_the_connection() {
    let server = start_server(test_config()).await;
    let mut alice = server.member("alice", "lobby").await;
    let mut bob = server.member("bob", "lobby").await;
    alice.await_presence("bob").await;

    bob.send(&C2sLogout {}).await;
    let presence = alice.expect::<S2cRoomPresence>().await;
    assert_eq!(
        (presence.username.as_str(), presence.joined),
        ("bob", false)
    );
    // Still connected, no longer logged in.
    bob.ping_next(1).await;
    bob.send(&C2sLogout {}).await;
    bob.expect_error(ErrorCode::NotAuthenticated).await;
    // The name is free: another session takes it without replacing anyone.
    let mut bob2 = server.client().await;
    bob2.login_guest("bob").await;
    bob.ping_next(2).await;
    // And the first connection can log in again under another name.
    bob.login_guest("bobby").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_login_is_refused_when_guests_are_not_allowed() {
    let mut config = test_config();
    config.world.allow_guests = false;
    let server = start_server(config).await;
    let mut client = server.client().await;
    client.send(&guest("alice")).await;
    let error = client.expect_error(ErrorCode::InvalidCredentials).await;
    assert_eq!(error.request_id, C2sLogin::ID as u32);
    client.ping_next(1).await;
    server.shutdown().await;
}
