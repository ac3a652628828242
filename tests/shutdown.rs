//! Graceful shutdown over real sockets: `run` returns its counters, every client reads the
//! frames in flight and then EOF, and the port stops accepting.

mod common;

use std::time::{Duration, Instant};

use common::{start_server, test_config, TestClient};
use protocol::world::C2sChat;
use protocol::S2cMessage;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_client_after_its_frames_and_stops_accepting() {
    let server = start_server(test_config()).await;
    let addr = server.addr;
    let mut alice = server.member("alice", "lobby").await;
    let mut bob = server.member("bob", "lobby").await;
    let mut carol = server.guest("carol").await;
    let mut anonymous = server.client().await;
    alice.await_presence("bob").await;
    for i in 0..3 {
        let line = format!("line {i}");
        alice.say("lobby", &line, i).await;
        alice.expect_chat("lobby", "alice", &line).await;
        bob.expect_chat("lobby", "alice", &line).await;
    }

    // A line sent just before the shutdown: whether the server still handles it is a race,
    // but if it does, both members get all of it before EOF (no partial frame).
    alice
        .send(&C2sChat {
            room: "lobby".into(),
            content: "last words".into(),
            sent_at_us: 99,
        })
        .await;
    let stats = server.shutdown().await;
    assert!(stats.ticks > 0, "{stats:?}");
    assert!(stats.chat_in >= 3, "{stats:?}");
    // Three logins, two joins, three lines at least.
    assert!(stats.messages_in >= 3 + 2 + 3, "{stats:?}");

    for client in [&mut alice, &mut bob, &mut carol, &mut anonymous] {
        let frames = client.expect_closed_within(Duration::from_secs(5)).await;
        for frame in &frames {
            match frame {
                S2cMessage::S2cChat(c) => assert_eq!(c.content, "last words"),
                S2cMessage::S2cRoomPresence(_) | S2cMessage::S2cError(_) => {}
                other => panic!("{} got {other:?} at shutdown", client.name),
            }
        }
    }

    // `run` has returned: the listener is gone.
    match tokio::net::TcpStream::connect(addr).await {
        Err(error) => assert_eq!(
            error.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{error}"
        ),
        Ok(_) => panic!("{addr} still accepts connections after run returned"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_no_clients_returns_promptly() {
    let server = start_server(test_config()).await;
    let started = Instant::now();
    let stats = server.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "an idle server took {:?} to stop",
        started.elapsed()
    );
    assert_eq!(stats.chat_in, 0);
}

/// A client that stopped reading (its kernel buffers full) cannot hold the shutdown beyond
/// the linger time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_a_client_that_stopped_reading() {
    let mut config = test_config();
    config.net.linger_ms = 300;
    config.net.max_requests_per_sec = 0;
    config.world.max_chat_len = 4000;
    let server = start_server(config).await;
    let mut talker = server.member("talker", "lobby").await;
    let mut stuck = TestClient::connect_with_recv_buffer(server.addr, 4096).await;
    stuck.login_guest("stuck").await;
    stuck.join("lobby").await;
    talker
        .recv_until(|m| matches!(m, S2cMessage::S2cRoomPresence(_)))
        .await;
    // Fill the stuck client's path with some lines (well under its outbound bound).
    let content = "w".repeat(4000);
    for i in 0..40 {
        talker.say("lobby", &content, i).await;
        talker.expect_chat("lobby", "talker", &content).await;
    }
    let started = Instant::now();
    server.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?} with a client that does not read",
        started.elapsed()
    );
    talker.expect_closed().await;
    stuck.expect_closed().await;
}
