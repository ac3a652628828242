//! Accounts over real sockets: register, log in with a password, resume with a token, logout
//! revoking it, names unique ignoring case, guests kept off account names, failed logins
//! throttled, and accounts and history surviving a restart on the same database.

mod common;

use common::{start_server, test_config};
use protocol::world::{C2sLogin, C2sLogout, C2sRegister, C2sResume, S2cAuthResult, S2cChat};
use protocol::{ErrorCode, MessageType, S2cMessage};

fn register(name: &str, password: &str) -> C2sRegister {
    C2sRegister {
        username: name.to_string(),
        password: password.to_string(),
        ..Default::default()
    }
}

fn login(name: &str, password: &str) -> C2sLogin {
    C2sLogin {
        username: name.to_string(),
        password: password.to_string(),
        ..Default::default()
    }
}

const PASSWORD: &str = "correct horse battery";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_logs_in_with_a_user_id_and_a_token_of_at_least_128_bits() {
    let server = start_server(test_config()).await;
    let mut alice = server.client().await;
    let result = alice.register("alice", PASSWORD).await;
    assert_eq!(result.username, "alice");
    assert!(!result.guest, "{result:?}");
    assert!(result.user_id >= 1, "{result:?}");
    assert!(
        result.token.len() >= 32 && result.token.chars().all(|c| c.is_ascii_hexdigit()),
        "a token of at least 128 random bits: {result:?}"
    );
    alice.join("lobby").await;

    let mut bob = server.client().await;
    let second = bob.register("bob", PASSWORD).await;
    assert_ne!(second.user_id, result.user_id);
    assert_ne!(second.token, result.token);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_name_is_taken_in_any_case_for_accounts_and_guests() {
    let server = start_server(test_config()).await;
    let mut owner = server.client().await;
    owner.register("Carol", PASSWORD).await;

    let mut other = server.client().await;
    other.send(&register("cAROL", "another password")).await;
    let error = other.expect_error(ErrorCode::UsernameTaken).await;
    assert_eq!(error.request_id, C2sRegister::ID as u32, "{error:?}");

    // A guest cannot take an account's name, even while the owner is offline.
    owner.close().await;
    other.send(&login("carol", "")).await;
    let error = other.expect::<protocol::world::S2cError>().await;
    assert_ne!(error.code(), ErrorCode::BadRequest, "{error:?}");
    assert_eq!(error.request_id, C2sLogin::ID as u32, "{error:?}");
    other.ping_next(1).await;
    other.login_guest("not_carol").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_login_succeeds_with_the_right_password_only() {
    let server = start_server(test_config()).await;
    let mut first = server.client().await;
    let registered = first.register("dave", PASSWORD).await;
    first.send(&C2sLogout {}).await;
    first.ping_next(1).await;

    let mut client = server.client().await;
    client.send(&login("dave", "wrong password")).await;
    let wrong = client.expect_error(ErrorCode::InvalidCredentials).await;
    client.send(&login("nobody_here", "wrong password")).await;
    let unknown = client.expect_error(ErrorCode::InvalidCredentials).await;
    assert_eq!(
        wrong.reason, unknown.reason,
        "a wrong password and an unknown name must look alike"
    );

    client.send(&login("DAVE", PASSWORD)).await;
    let result = client.expect::<S2cAuthResult>().await;
    assert_eq!(result.user_id, registered.user_id);
    assert!(!result.guest);
    assert!(!result.token.is_empty());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_outside_8_to_128_bytes_answer_bad_request() {
    let server = start_server(test_config()).await;
    let mut client = server.client().await;
    for password in ["short".to_string(), "p".repeat(129)] {
        client.send(&register("erin", &password)).await;
        let error = client.expect_error(ErrorCode::BadRequest).await;
        assert_eq!(error.request_id, C2sRegister::ID as u32, "{error:?}");
        assert!(
            error.reason.contains(&password.len().to_string()),
            "{error:?}"
        );
    }
    client.send(&register("erin", &"p".repeat(8))).await;
    client.expect::<S2cAuthResult>().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_with_a_token_logs_in_again_and_logout_revokes_it() {
    let server = start_server(test_config()).await;
    let mut first = server.client().await;
    let issued = first.register("frank", PASSWORD).await;
    first.close().await;

    let mut second = server.client().await;
    second
        .send(&C2sResume {
            token: issued.token.clone(),
            ..Default::default()
        })
        .await;
    let resumed = second.expect::<S2cAuthResult>().await;
    assert_eq!(resumed.username, "frank");
    assert_eq!(resumed.user_id, issued.user_id);
    assert!(!resumed.guest);
    second.join("lobby").await;

    // Logout revokes the token: resuming with it fails afterwards.
    second.send(&C2sLogout {}).await;
    second.ping_next(1).await;
    let mut third = server.client().await;
    third
        .send(&C2sResume {
            token: issued.token.clone(),
            ..Default::default()
        })
        .await;
    let error = third.expect_error(ErrorCode::InvalidToken).await;
    assert_eq!(error.request_id, C2sResume::ID as u32, "{error:?}");

    third
        .send(&C2sResume {
            token: "00".repeat(32),
            ..Default::default()
        })
        .await;
    third.expect_error(ErrorCode::InvalidToken).await;
    third.ping_next(2).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_login_replaces_an_older_session_of_the_same_account() {
    let server = start_server(test_config()).await;
    let mut old = server.client().await;
    old.register("gina", PASSWORD).await;
    let mut new = server.client().await;
    new.send(&login("Gina", PASSWORD)).await;
    new.expect::<S2cAuthResult>().await;
    let error = old.expect_error(ErrorCode::Replaced).await;
    assert_eq!(error.request_id, 0);
    old.expect_closed().await;
    new.ping_next(1).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_logins_are_answered_rate_limited() {
    let mut config = test_config();
    config.auth.max_failures_per_user = 3;
    let server = start_server(config).await;
    let mut owner = server.client().await;
    owner.register("henry", PASSWORD).await;
    owner.close().await;

    let mut guesser = server.client().await;
    for _ in 0..3 {
        guesser.send(&login("henry", "not the password")).await;
        guesser.expect_error(ErrorCode::InvalidCredentials).await;
    }
    // Now even the right password is refused for a while.
    guesser.send(&login("henry", PASSWORD)).await;
    let error = guesser.expect_error(ErrorCode::RateLimited).await;
    assert_eq!(error.request_id, C2sLogin::ID as u32, "{error:?}");
    // Other names are not affected.
    guesser.login_guest("someone_else").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_login_request_while_the_first_is_under_way_answers_already_authenticated() {
    let server = start_server(test_config()).await;
    let mut client = server.client().await;
    let mut burst = protocol::frame(&register("ivan", PASSWORD))
        .unwrap()
        .to_vec();
    burst.extend_from_slice(&protocol::frame(&login("ivan", PASSWORD)).unwrap());
    client.send_raw(&burst).await;
    let mut results = 0;
    let mut already = 0;
    for _ in 0..2 {
        match client.recv().await {
            S2cMessage::S2cAuthResult(r) => {
                assert_eq!(r.username, "ivan");
                results += 1
            }
            S2cMessage::S2cError(e) if e.code() == ErrorCode::AlreadyAuthenticated => already += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((results, already), (1, 1));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_and_room_history_survive_a_restart_on_the_same_database() {
    let config = test_config();
    let server = start_server(config.clone()).await;
    let mut alice = server.client().await;
    let before = alice.register("alice", PASSWORD).await;
    alice.join("archive").await;
    for line in ["one", "two", "three"] {
        alice.say("archive", line, 7).await;
        alice.expect_chat("archive", "alice", line).await;
    }
    server.shutdown_keeping_db().await;
    alice.expect_closed().await;

    // A new server on the same database file.
    let server = start_server(config).await;
    let mut alice = server.client().await;
    alice
        .send(&C2sResume {
            token: before.token.clone(),
            ..Default::default()
        })
        .await;
    let resumed = alice.expect::<S2cAuthResult>().await;
    assert_eq!(
        (resumed.username.as_str(), resumed.user_id),
        ("alice", before.user_id)
    );
    let mut bob = server.client().await;
    bob.send(&login("alice", PASSWORD)).await;
    bob.expect::<S2cAuthResult>().await;
    alice.expect_error(ErrorCode::Replaced).await;

    bob.join("archive").await;
    let mut replayed = Vec::new();
    for _ in 0..3 {
        let chat = bob.expect::<S2cChat>().await;
        assert!(chat.history, "{chat:?}");
        replayed.push(chat.content);
    }
    assert_eq!(replayed, vec!["one", "two", "three"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_sent_just_before_closing_still_revokes_the_token() {
    let server = start_server(test_config()).await;
    let mut first = server.client().await;
    let issued = first.register("gina", PASSWORD).await;
    // Logout has no reply: a client sends it and closes at once.
    first.send(&C2sLogout {}).await;
    first.close().await;

    // The second connection's welcome takes a tick, so the Logout is processed first; its
    // revocation is a write, which the DB worker always does before a resume.
    let mut second = server.client().await;
    second
        .send(&C2sResume {
            token: issued.token.clone(),
            ..Default::default()
        })
        .await;
    second.expect_error(ErrorCode::InvalidToken).await;
    server.shutdown().await;
}
