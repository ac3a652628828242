//! Servers sharing one PostgreSQL database (`storage.backend = "postgres"`), each a node of
//! its own: an account registered on one logs in and resumes on another, a name taken on one
//! is taken on all, and the history written by one is replayed by another. The PostgreSQL
//! server is real, started by the test on loopback; without PostgreSQL installed each test
//! says in one line that it skipped.

mod common;

use std::time::{Duration, Instant};

use common::{start_server, test_config, TestServer};
use protocol::world::{
    C2sChat, C2sLogin, C2sRegister, C2sResume, C2sRoomJoin, S2cAuthResult, S2cChat, S2cError,
    S2cRoomJoined,
};
use protocol::ErrorCode;
use protocol::S2cMessage;

/// The test process's PostgreSQL server, or `None` after saying why there is none.
fn postgres(test: &str) -> Option<&'static testkit::Postgres> {
    match testkit::postgres() {
        Ok(server) => Some(server),
        Err(why) => {
            common::skip(test, &why);
            None
        }
    }
}

/// A server on the database at `url`, as node `node`.
async fn node(url: &str, node: &str) -> TestServer {
    let mut config = test_config();
    config.storage.backend = "postgres".into();
    config.storage.postgres_url = url.into();
    config.cluster.node = node.into();
    start_server(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_registered_on_one_node_logs_in_and_resumes_on_another() {
    let test = "an_account_registered_on_one_node_logs_in_and_resumes_on_another";
    let Some(pg) = postgres(test) else { return };
    let url = pg.fresh_database();
    let (a, b) = (node(&url, "a").await, node(&url, "b").await);

    let mut on_a = a.client().await;
    let registered = on_a.register("Ann", "correct horse").await;
    assert!(registered.user_id > 0 && !registered.token.is_empty());

    let mut on_b = b.client().await;
    on_b.send(&C2sLogin {
        username: "ann".into(),
        password: "correct horse".into(),
        ..Default::default()
    })
    .await;
    let logged_in = on_b.expect::<S2cAuthResult>().await;
    assert_eq!(
        (logged_in.username.as_str(), logged_in.user_id),
        ("Ann", registered.user_id)
    );

    let mut wrong = b.client().await;
    wrong
        .send(&C2sLogin {
            username: "ann".into(),
            password: "wrong".into(),
            ..Default::default()
        })
        .await;
    wrong.expect_error(ErrorCode::InvalidCredentials).await;

    let mut resumed = b.client().await;
    resumed
        .send(&C2sResume {
            token: registered.token.clone(),
            ..Default::default()
        })
        .await;
    let resumed = resumed.expect::<S2cAuthResult>().await;
    assert_eq!(
        resumed.user_id, registered.user_id,
        "node a's token on node b"
    );

    let mut taker = b.client().await;
    taker
        .send(&C2sRegister {
            username: "ANN".into(),
            password: "another horse".into(),
            ..Default::default()
        })
        .await;
    taker.expect_error(ErrorCode::UsernameTaken).await;

    // Each node's sessions are in the one session log, under its own name.
    drop((on_a, on_b, wrong, taker));
    a.shutdown().await;
    b.shutdown().await;
    let logged = |node: &str| {
        testkit::Postgres::scalar(
            &url,
            &format!("SELECT count(*) FROM sessions WHERE node = '{node}'"),
        )
    };
    assert_eq!((logged("a"), logged("b")), (1, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_written_on_one_node_is_replayed_on_another() {
    let test = "history_written_on_one_node_is_replayed_on_another";
    let Some(pg) = postgres(test) else { return };
    let url = pg.fresh_database();
    let a = node(&url, "a").await;
    let mut alice = a.member("alice", "lobby").await;
    for (i, line) in ["first", "second", "third"].iter().enumerate() {
        alice.say("lobby", line, 100 + i as u64).await;
        alice.expect_chat("lobby", "alice", line).await;
    }
    // The lines reach the database with node a's next write batch.
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = "SELECT count(*) FROM logs WHERE module = 'rooms' AND key = 'lobby'";
    while testkit::Postgres::scalar(&url, lines) < 3 {
        assert!(Instant::now() < deadline, "history never written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let b = node(&url, "b").await;
    let mut bob = b.guest("bob").await;
    bob.send(&protocol::world::C2sRoomJoin {
        room: "lobby".into(),
        ..Default::default()
    })
    .await;
    bob.expect::<S2cRoomJoined>().await;
    let mut replayed = Vec::new();
    for _ in 0..3 {
        let chat = bob.expect::<S2cChat>().await;
        assert!(chat.history, "{chat:?}");
        replayed.push((chat.from, chat.content, chat.sent_at_us));
    }
    assert_eq!(
        replayed,
        [
            ("alice".to_string(), "first".to_string(), 100),
            ("alice".to_string(), "second".to_string(), 101),
            ("alice".to_string(), "third".to_string(), 102)
        ]
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// How the database goes away under a running server.
#[derive(Clone, Copy, PartialEq)]
enum Outage {
    /// Stopped hard (`pg_ctl stop -m immediate`), then started again.
    Restart,
    /// Paused (SIGSTOP), then let go on: the connection stays open and nothing answers, as
    /// behind a network cut.
    Pause,
}

/// PostgreSQL stopped hard (`pg_ctl stop -m immediate`) under a running server, then started
/// again: players stay connected, a request that needs the database is answered UNAVAILABLE
/// with a retry hint, a line echoed meanwhile reaches the history, and registrations go
/// through again within seconds, by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_is_survived_and_a_line_echoed_meanwhile_is_kept() {
    survives(
        "a_database_restart_is_survived_and_a_line_echoed_meanwhile_is_kept",
        Outage::Restart,
    )
    .await;
}

/// The same with PostgreSQL paused, which answers nothing and closes nothing: the server gives
/// a call up after its query timeout (5 s) and carries on as with a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_stops_answering_is_survived_and_a_line_echoed_meanwhile_is_kept() {
    survives(
        "a_database_that_stops_answering_is_survived_and_a_line_echoed_meanwhile_is_kept",
        Outage::Pause,
    )
    .await;
}

async fn survives(test: &str, outage: Outage) {
    let Some(mut pg) = testkit::OwnPostgres::for_test(test) else {
        return;
    };
    let url = pg.server().fresh_database();
    let mut config = test_config();
    config.storage.backend = "postgres".into();
    config.storage.postgres_url = url.clone();
    let (server, admin) = common::server_with_admin_and(config).await;
    // What /readyz and /metrics say, once both say the database is `available` or not (they
    // are published once a second).
    let said = |available: bool| async move {
        let (status, want) = if available {
            (200, "world_storage_available 1")
        } else {
            (503, "world_storage_available 0")
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ready = common::http_get(admin, "/readyz").await;
            let metrics = common::http_get(admin, "/metrics").await.body;
            let state = format!("{} {} {}", ready.status, ready.body, metrics);
            if ready.status == status && state.contains(want) {
                return state;
            }
            assert!(Instant::now() < deadline, "never said {want:?}: {state}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    said(true).await;
    let mut ann = server.client().await;
    ann.register("ann", "correct horse").await;
    ann.send(&C2sRoomJoin {
        room: "lobby".into(),
        ..Default::default()
    })
    .await;
    ann.expect::<S2cRoomJoined>().await;
    // The WAL writer has it all (the test server does not wait for it at commit).
    tokio::time::sleep(Duration::from_secs(1)).await;

    match outage {
        Outage::Restart => pg.stop_immediate(),
        Outage::Pause => pg.pause(),
    }
    let mut bob = server.client().await;
    let register = C2sRegister {
        username: "bob".into(),
        password: "correct horse".into(),
        ..Default::default()
    };
    bob.send(&register).await;
    let error = bob.expect::<S2cError>().await;
    assert_eq!(error.code(), ErrorCode::Unavailable, "{error:?}");
    assert_eq!(error.retry_after_ms, 1_000);
    // The players are still there, and what needs no database works.
    ann.send(&C2sChat {
        room: "lobby".into(),
        content: "said while the database was away".into(),
        sent_at_us: 1,
    })
    .await;
    let echo = ann.expect::<S2cChat>().await;
    assert_eq!(echo.content, "said while the database was away");
    let state = said(false).await;
    assert!(state.contains("the database is unavailable"), "{state}");

    match outage {
        Outage::Restart => pg.start_again().unwrap(),
        Outage::Pause => pg.resume(),
    }
    let back = Instant::now();
    loop {
        bob.send(&register).await;
        match bob.recv().await {
            S2cMessage::S2cAuthResult(r) => {
                assert_eq!(r.username, "bob");
                eprintln!(
                    "{test}: registered {:.2} s after the database came back",
                    back.elapsed().as_secs_f64()
                );
                break;
            }
            S2cMessage::S2cError(e) if e.code() == ErrorCode::Unavailable => {
                assert!(back.elapsed() < Duration::from_secs(10), "still {e:?}");
                tokio::time::sleep(Duration::from_millis(u64::from(e.retry_after_ms))).await;
            }
            other => panic!("{other:?}"),
        }
    }
    said(true).await;
    // The line echoed during the outage was written once the database came back.
    let lines = "SELECT count(*) FROM logs WHERE module = 'rooms' AND key = 'lobby'";
    let deadline = Instant::now() + Duration::from_secs(10);
    while testkit::Postgres::scalar(&url, lines) < 1 {
        assert!(
            Instant::now() < deadline,
            "the line never reached the history"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop((ann, bob));
    server.shutdown().await;
    // Both accounts, and every session, are in the database.
    assert_eq!(
        testkit::Postgres::scalar(&url, "SELECT count(*) FROM accounts"),
        2
    );
}
