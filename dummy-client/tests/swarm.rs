//! The swarm against a small in-process chat server built on `net`, with real sockets: the
//! accounting end to end, and what the report says when the server loses, duplicates or is
//! absent. (The real world server is tested against the swarm in the root package's tests.)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use dummy_client::{run, ClientConfig, Report};
use net::{ServerService, ServiceEvent, Session, SessionConfig, SessionEvent, SessionId};
use protocol::world::{S2cAuthResult, S2cChat, S2cError, S2cPong, S2cRoomJoined, S2cWelcome};
use protocol::{C2sMessage, ErrorCode, MessageType};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How the fake server misbehaves.
#[derive(Clone, Copy, Default)]
struct Faults {
    /// Drop every n-th delivery to a member other than the sender.
    drop_every: Option<u64>,
    /// Send every delivery twice.
    duplicate: bool,
    /// Refuse every n-th chat line with RATE_LIMITED.
    reject_every: Option<u64>,
}

struct Member {
    session: Session,
    name: String,
    room: Option<String>,
}

/// Starts the fake server; it runs until `shutdown` is cancelled.
async fn fake_server(faults: Faults, shutdown: CancellationToken) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tracker = TaskTracker::new();
    let (service_tx, mut service_rx) = mpsc::channel(1024);
    let (session_tx, mut session_rx) = mpsc::channel(65536);
    ServerService::spawn(listener, service_tx, shutdown.clone(), &tracker);
    let config = SessionConfig {
        outbound_batches: 1 << 16,
        max_outbound_bytes: 1 << 26,
        ..SessionConfig::default()
    };
    tokio::spawn(async move {
        let mut members: HashMap<SessionId, Member> = HashMap::new();
        let mut next_id = 1;
        let mut deliveries = 0u64;
        let mut chats = 0u64;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(ServiceEvent::Accepted { stream, .. }) = service_rx.recv() => {
                    let id = SessionId(next_id);
                    next_id += 1;
                    let session = Session::spawn(id, stream, &config, session_tx.clone(), &tracker);
                    let welcome = S2cWelcome { session_id: id.0, protocol_version: 1, ..Default::default() };
                    let _ = session.send(vec![protocol::frame(&welcome).unwrap()]);
                    members.insert(id, Member { session, name: String::new(), room: None });
                }
                Some(event) = session_rx.recv() => match event {
                    SessionEvent::Closed { session, .. } => { members.remove(&session); }
                    SessionEvent::Received { session, packet, .. } => {
                        if let Some(m) = members.get(&session) { m.session.release_credit(1); }
                        let Ok(message) = C2sMessage::decode(packet.id, packet.payload) else { continue };
                        let send = |members: &HashMap<SessionId, Member>, to: SessionId, frame: Bytes| {
                            if let Some(m) = members.get(&to) { let _ = m.session.send(vec![frame]); }
                        };
                        match message {
                            C2sMessage::C2sLogin(login) => {
                                members.get_mut(&session).unwrap().name = login.username.clone();
                                let auth = S2cAuthResult { username: login.username, guest: true, ..Default::default() };
                                send(&members, session, protocol::frame(&auth).unwrap());
                            }
                            C2sMessage::C2sRoomJoin(join) => {
                                members.get_mut(&session).unwrap().room = Some(join.room.clone());
                                let names = members.values().filter(|m| m.room.as_deref() == Some(&join.room)).map(|m| m.name.clone()).collect();
                                let joined = S2cRoomJoined { room: join.room, members: names, capacity: 100 };
                                send(&members, session, protocol::frame(&joined).unwrap());
                            }
                            C2sMessage::C2sPing(ping) => {
                                let pong = S2cPong { seq: ping.seq, client_time_us: ping.client_time_us, server_time_us: protocol::now_us() };
                                send(&members, session, protocol::frame(&pong).unwrap());
                            }
                            C2sMessage::C2sChat(chat) => {
                                chats += 1;
                                if faults.reject_every.is_some_and(|n| chats % n == 0) {
                                    let error = S2cError { code: ErrorCode::RateLimited as i32, reason: "slow down".into(), request_id: u32::from(protocol::world::C2sChat::ID) };
                                    send(&members, session, protocol::frame(&error).unwrap());
                                    continue;
                                }
                                let line = S2cChat {
                                    room: chat.room.clone(),
                                    from: members[&session].name.clone(),
                                    content: chat.content,
                                    sent_at_us: chat.sent_at_us,
                                    server_time_us: protocol::now_us(),
                                    history: false,
                                };
                                let frame = protocol::frame(&line).unwrap();
                                let to: Vec<SessionId> = members.iter().filter(|(_, m)| m.room.as_deref() == Some(&chat.room)).map(|(id, _)| *id).collect();
                                for id in to {
                                    if id != session {
                                        deliveries += 1;
                                        if faults.drop_every.is_some_and(|n| deliveries % n == 0) { continue; }
                                    }
                                    send(&members, id, frame.clone());
                                    if faults.duplicate { send(&members, id, frame.clone()); }
                                }
                            }
                            _ => {}
                        }
                    }
                },
            }
        }
    });
    addr
}

fn config(server: SocketAddr, bots: usize) -> ClientConfig {
    let mut config = ClientConfig::default();
    config.client.server = server;
    config.client.bots = bots;
    config.client.duration_secs = 1;
    config.client.drain_secs = 1;
    config.client.ramp_up_per_sec = 1000;
    config.bots.bots_per_room = 10;
    config.bots.chat_interval_ms = 50;
    config.bots.ping_interval_ms = 100;
    config
}

async fn run_against(faults: Faults, bots: usize) -> Report {
    let stop_server = CancellationToken::new();
    let addr = fake_server(faults, stop_server.clone()).await;
    let report = run(config(addr, bots), CancellationToken::new())
        .await
        .unwrap();
    stop_server.cancel();
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faithful_server_passes_with_every_delivery_accounted_for() {
    let report = run_against(Faults::default(), 45).await;
    assert!(report.passed(), "{report}");
    assert_eq!(report.connected, 45);
    assert_eq!(report.joined, 45);
    assert!(report.sent > 45 * 5, "{report}");
    // Rooms of 10, 10, 10, 10 and 5 members.
    assert!(report.expected > report.sent * 5, "{report}");
    assert_eq!(report.received, report.expected);
    assert_eq!(report.latency_us.count, report.received);
    assert_eq!(report.login_ms.count, 45);
    assert!(report.pongs_received > 0, "{report}");
    assert!(report.messages_per_sec > 0.0);
    assert!(report.deliveries_per_sec > report.messages_per_sec);
    assert!(report.errors.is_empty(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_the_server_drops_are_counted_lost() {
    let report = run_against(
        Faults {
            drop_every: Some(7),
            ..Faults::default()
        },
        20,
    )
    .await;
    assert!(!report.passed());
    assert!(report.lost > 0, "{report}");
    assert_eq!(report.received + report.lost, report.expected);
    assert_eq!(report.unexpected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_deliveries_are_counted_unexpected() {
    let report = run_against(
        Faults {
            duplicate: true,
            ..Faults::default()
        },
        20,
    )
    .await;
    assert!(!report.passed());
    assert_eq!(report.lost, 0, "{report}");
    assert_eq!(report.unexpected, report.received, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_the_server_refuses_are_rejected_not_lost() {
    let report = run_against(
        Faults {
            reject_every: Some(5),
            ..Faults::default()
        },
        20,
    )
    .await;
    assert!(report.rejected > 0, "{report}");
    assert_eq!(report.errors.get("RATE_LIMITED"), Some(&report.rejected));
    assert_eq!(report.lost, 0, "{report}");
    assert_eq!(report.received, report.expected);
    assert!(report.passed(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_server_every_bot_fails_to_connect_and_the_run_ends() {
    // Bind and drop: a port that refuses connections.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let started = std::time::Instant::now();
    let report = run(config(addr, 10), CancellationToken::new())
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(report.connect_failures, 10, "{report}");
    assert_eq!(report.connected, 0);
    assert!(!report.passed());
    assert!(
        report.failures()[0].contains("could not connect"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_stops_the_run_early_and_still_reports() {
    let stop_server = CancellationToken::new();
    let addr = fake_server(Faults::default(), stop_server.clone()).await;
    let mut config = config(addr, 20);
    config.client.duration_secs = 60;
    let shutdown = CancellationToken::new();
    let cancel = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        cancel.cancel();
    });
    let started = std::time::Instant::now();
    let report = run(config, shutdown).await.unwrap();
    stop_server.cancel();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(report.cancelled);
    assert!(report.duration_secs < 2.0, "{report}");
    assert!(report.sent > 0, "{report}");
    assert_eq!(report.lost, 0, "{report}");
    assert!(report.passed(), "{report}");
}

/// A larger swarm, for a look at the client's own cost: `cargo test --release -p dummy-client
/// --test swarm -- --ignored --nocapture` (bots from `STRESS_BOTS`, default 2000).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "takes several seconds and thousands of sockets"]
async fn thousands_of_bots_against_the_fake_server() {
    let bots = std::env::var("STRESS_BOTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let stop_server = CancellationToken::new();
    let addr = fake_server(Faults::default(), stop_server.clone()).await;
    let mut config = config(addr, bots);
    config.client.duration_secs = 5;
    config.client.ramp_up_per_sec = 2000;
    config.bots.bots_per_room = 20;
    config.bots.chat_interval_ms = 250;
    config.bots.ping_interval_ms = 5000;
    let report = run(config, CancellationToken::new()).await.unwrap();
    stop_server.cancel();
    println!("{report}");
    assert!(report.passed(), "{report}");
}
