//! 500 bots of the dummy client against an in-process world server: every chat line reaches
//! every member of its room, nothing is lost, nothing is duplicated, nobody is disconnected.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{start_server, test_config, with_web};
use dummy_client::ClientConfig;

/// `count` bots against `server` in rooms of 20, a line every 250 ms, for `secs` and then
/// `drain` seconds, all in within a second.
fn swarm_config(server: SocketAddr, count: usize, secs: u64, drain: u64) -> ClientConfig {
    let mut config = ClientConfig::default();
    config.client.server = server;
    config.client.bots = count;
    config.client.duration_secs = secs;
    config.client.drain_secs = drain;
    config.client.ramp_up_per_sec = 1000;
    config.client.login_timeout_secs = 10;
    config.bots.bots_per_room = 20;
    config.bots.chat_interval_ms = 250;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarm_of_500_bots_in_rooms_of_20_loses_nothing() {
    let mut server_config = test_config();
    server_config.server.tick_ms = 10;
    let server = start_server(server_config).await;

    let mut config = swarm_config(server.addr, 500, 5, 5);
    config.bots.ping_interval_ms = 1000;
    config
        .validate("swarm test")
        .expect("the swarm config is valid");

    let started = Instant::now();
    // The shutdown token is never cancelled: the run ends on its own after its duration.
    let run = dummy_client::run(config, Default::default());
    let report = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the swarm did not finish within 60 s")
        .expect("the swarm could not start");
    let took = started.elapsed();
    let stats = server.shutdown().await;

    let failures = report.failures();
    assert!(
        report.passed(),
        "the swarm failed: {failures:?}\n{report}\nserver: {stats:?}"
    );
    assert_eq!(report.bots, 500, "{report}");
    assert_eq!(report.connected, 500, "{report}");
    assert_eq!(report.logged_in, 500, "{report}");
    assert_eq!(report.joined, 500, "{report}");
    assert_eq!(report.lost, 0, "{report}");
    assert_eq!(report.unexpected, 0, "{report}");
    assert_eq!(report.disconnects, 0, "{report}");
    assert!(report.sent > 0, "{report}");
    assert_eq!(report.received, report.expected, "{report}");
    // Every line goes to the 20 members of its room, the sender included.
    assert!(
        report.expected >= report.sent * 20 - report.sent / 10,
        "expected {} deliveries for {} lines in rooms of 20\n{report}",
        report.expected,
        report.sent
    );
    // Roughly 500 bots x 4 lines a second x 5 s: at least a good share of it.
    assert!(
        report.sent >= 2_000,
        "only {} lines sent in {took:?}\n{report}",
        report.sent
    );
    assert_eq!(
        stats.chat_in, report.sent,
        "the server accepted {} lines, the swarm sent {}",
        stats.chat_in, report.sent
    );
}

/// Bots that drop their connections at random (closing or stalling them) take their sessions
/// back: every line still reaches every member once, and the server processes every line a
/// bot sent once, however many times the bot had to send it.
async fn chaos_over(transport: &str, bots: usize) {
    let mut server_config = test_config();
    server_config.server.tick_ms = 10;
    let web = with_web(&mut server_config);
    let server = start_server(server_config).await;

    let server_addr = if transport == "ws" { web } else { server.addr };
    let mut config = swarm_config(server_addr, bots, 6, 10);
    config.client.transport = transport.to_owned();
    config.bots.chaos_per_min = 12.0;
    config
        .validate("chaos test")
        .expect("the swarm config is valid");

    let run = dummy_client::run(config, Default::default());
    let report = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the swarm did not finish within 60 s")
        .expect("the swarm could not start");
    let stats = server.shutdown().await;
    assert!(
        report.passed(),
        "the swarm failed: {:?}\n{report}",
        report.failures()
    );
    // About one drop per bot in 5 s of chat: each kind many times.
    for kind in ["closed", "stalled"] {
        let n = report.drops.get(kind).copied().unwrap_or(0);
        assert!(n as usize >= bots / 10, "{n} {kind}\n{report}");
    }
    assert_eq!(
        report.resumes,
        report.drops.values().sum::<u64>(),
        "{report}"
    );
    assert_eq!(report.resume_failures, 0, "{report}");
    assert_eq!(
        (
            report.lost,
            report.unexpected,
            report.duplicated,
            report.disconnects
        ),
        (0, 0, 0, 0),
        "{report}"
    );
    assert_eq!(report.received, report.expected, "{report}");
    assert!(report.replayed_frames > 0, "{report}");
    assert!(report.resent_requests > 0, "{report}");
    assert_eq!(
        stats.chat_in, report.sent,
        "the server processed {} lines, the swarm said {}: each once",
        stats.chat_in, report.sent
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chaos_swarm_resumes_every_dropped_session_and_loses_and_doubles_nothing() {
    chaos_over("tcp", 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chaos_swarm_over_websocket_resumes_every_dropped_session_too() {
    chaos_over("ws", 60).await;
}
