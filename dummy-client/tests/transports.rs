//! The same swarm over every transport against the real server, in process: frames on TCP,
//! on TLS, in WebSocket messages, and in WebSocket messages over TLS; the exact accounting
//! holds on each. A certificate the bots do not trust fails their connections, in words.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{certificate, free_addr, Server, TempDir};
use config::ClientConfig;
use dummy_client::{run, Report};
use tokio_util::sync::CancellationToken;

fn swarm(server: SocketAddr, transport: &str, tls: Option<&Path>) -> ClientConfig {
    let mut config = ClientConfig::default();
    config.client.server = server;
    config.client.bots = 40;
    config.client.duration_secs = 2;
    config.client.drain_secs = 2;
    config.client.ramp_up_per_sec = 1000;
    config.client.transport = transport.to_owned();
    if let Some(ca) = tls {
        config.client.tls = true;
        config.client.tls_ca = ca.to_owned();
    }
    config.bots.bots_per_room = 10;
    config.bots.chat_interval_ms = 100;
    config.bots.ping_interval_ms = 300;
    config.validate("transports test").unwrap();
    config
}

async fn run_with(config: ClientConfig) -> Report {
    tokio::time::timeout(
        Duration::from_secs(30),
        run(config, CancellationToken::new()),
    )
    .await
    .expect("the run did not end within 30 s")
    .expect("the run could not start")
}

/// A server in `dir` with a TLS port (its own certificate) and, if `web` is given, a web
/// port: the server, the TLS port and the certificate.
async fn tls_server(dir: &TempDir, web: Option<SocketAddr>) -> (Server, SocketAddr, PathBuf) {
    let (cert, key) = certificate(dir);
    let tls = free_addr();
    let server = Server::start_with(dir, |config| {
        if let Some(web) = web {
            config.web.listen = web.to_string();
        }
        config.tls.listen = tls.to_string();
        config.tls.cert = cert.clone();
        config.tls.key = key;
    })
    .await;
    (server, tls, cert)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_swarm_passes_over_tcp_tls_websocket_and_websocket_over_tls() {
    let dir = TempDir::new("transports");
    let web = free_addr();
    let (server, tls, cert) = tls_server(&dir, Some(web)).await;
    let runs = [
        ("tcp", server.addr, None, "tcp"),
        ("tcp", tls, Some(cert.as_path()), "tls"),
        ("ws", web, None, "ws"),
        ("ws", tls, Some(cert.as_path()), "wss"),
    ];
    for (transport, addr, ca, label) in runs {
        let report = run_with(swarm(addr, transport, ca)).await;
        assert!(report.passed(), "{label}: {report}");
        assert_eq!(report.joined, 40, "{label}: {report}");
        assert!(report.expected > 0, "{label}: {report}");
        assert_eq!(report.received, report.expected, "{label}: {report}");
        assert_eq!(report.lost, 0, "{label}: {report}");
        assert_eq!(report.run.settings.transport, label);
        assert!(
            report.to_string().contains(&format!(" over {label},")),
            "{report}"
        );
        assert!(report.pongs_received > 0, "{label}: {report}");
    }
    let stats = server.stop_with_stats().await;
    assert!(stats.connects >= 160, "{}", stats.connects);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_that_do_not_trust_the_certificate_fail_saying_why() {
    let dir = TempDir::new("untrusted");
    let (server, tls, _) = tls_server(&dir, None).await;
    let other = TempDir::new("other-ca");
    let (other_cert, _) = certificate(&other);
    let mut config = swarm(tls, "tcp", Some(&other_cert));
    config.client.bots = 5;
    let report = run_with(config).await;
    assert!(!report.passed(), "{report}");
    assert_eq!(report.joined, 0, "{report}");
    let text = report.to_string();
    assert!(text.contains("invalid peer certificate"), "{text}");
    // With --tls-insecure the same bots get in.
    let mut config = swarm(tls, "tcp", None);
    config.client.tls = true;
    config.client.tls_insecure = true;
    config.client.bots = 10;
    let report = run_with(config).await;
    assert!(report.passed(), "{report}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_whose_connections_drop_take_their_sessions_back_over_tls_and_wss_too() {
    let dir = TempDir::new("chaos-tls");
    let (server, tls, cert) = tls_server(&dir, None).await;
    for (transport, label) in [("tcp", "tls"), ("ws", "wss")] {
        let mut config = swarm(tls, transport, Some(cert.as_path()));
        config.client.duration_secs = 3;
        config.client.drain_secs = 8;
        // About one drop per bot in the run: closed or stalled.
        config.bots.chaos_per_min = 20.0;
        let report = run_with(config).await;
        assert!(
            report.passed(),
            "{label}: {:?}\n{report}",
            report.failures()
        );
        assert!(report.resumes >= 10, "{label}: {report}");
        assert_eq!(report.resume_failures, 0, "{label}: {report}");
        assert_eq!(
            (report.lost, report.duplicated, report.unexpected),
            (0, 0, 0),
            "{label}: {report}"
        );
        assert_eq!(report.received, report.expected, "{label}: {report}");
    }
    server.stop().await;
}
