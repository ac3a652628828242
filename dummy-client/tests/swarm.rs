//! The swarm against a small in-process chat server built on `net`, with real sockets: the
//! accounting end to end, what the report says when the server loses, duplicates or is
//! absent, and the failover of bots whose node dies (the fake server listening as several
//! nodes of one world). (The real world server is tested against the swarm in the root package's tests,
//! and with accounts in `accounts.rs`.)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use dummy_client::{run, ClientConfig, Report};
use net::{
    DisconnectReason, ServerService, ServiceEvent, Session, SessionConfig, SessionEvent, SessionId,
};
use protocol::world::{
    C2sChat, S2cAuthResult, S2cChat, S2cError, S2cPong, S2cRoomJoined, S2cRoomPresence, S2cWelcome,
};
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
    /// Disconnect the sender of the n-th chat line instead of delivering it.
    kick_at: Option<u64>,
    /// Replay this many stored lines (`history = true`) to every bot that joins.
    history: usize,
    /// At the n-th chat line, every node but the first dies: its listener closes (connects
    /// are refused) and its sessions end at once.
    kill_nodes_at: Option<u64>,
    /// Answer the first n logins UNAVAILABLE, with a retry hint of 200 ms.
    unavailable_logins: u64,
}

struct Member {
    session: Session,
    name: String,
}

/// A chat server just good enough for the swarm: guest logins, rooms, chat fan-out, pings.
/// It sends every frame at once (no ticks), as one batch of its own.
struct FakeServer {
    faults: Faults,
    /// Stops the listener of each node.
    node_stops: Vec<CancellationToken>,
    /// The node each session came in through.
    node_of: HashMap<SessionId, u64>,
    members: HashMap<SessionId, Member>,
    rooms: HashMap<String, Vec<SessionId>>,
    deliveries: u64,
    chats: u64,
    logins: u64,
}

impl FakeServer {
    fn send<M: MessageType>(&self, to: SessionId, message: &M) {
        self.send_frame(to, protocol::frame(message).unwrap());
    }

    fn send_frame(&self, to: SessionId, frame: Bytes) {
        if let Some(member) = self.members.get(&to) {
            let _ = member.session.send(&mut vec![frame]);
        }
    }

    fn handle(&mut self, session: SessionId, message: C2sMessage) {
        if !self.members.contains_key(&session) {
            return; // what a session of a dead node sent before it died
        }
        match message {
            C2sMessage::C2sLogin(login) => {
                self.logins += 1;
                if self.logins <= self.faults.unavailable_logins {
                    let error = S2cError {
                        code: ErrorCode::Unavailable as i32,
                        reason: "the database is unavailable for now".into(),
                        request_id: u32::from(<protocol::world::C2sLogin as MessageType>::ID),
                        retry_after_ms: 200,
                    };
                    self.send(session, &error);
                    return;
                }
                self.members.get_mut(&session).unwrap().name = login.username.clone();
                let auth = S2cAuthResult {
                    username: login.username,
                    guest: true,
                    ..Default::default()
                };
                self.send(session, &auth);
            }
            C2sMessage::C2sRoomJoin(join) => {
                let room = self.rooms.entry(join.room.clone()).or_default();
                room.push(session);
                let members = room
                    .iter()
                    .map(|id| self.members[id].name.clone())
                    .collect();
                let others: Vec<SessionId> =
                    room.iter().copied().filter(|&id| id != session).collect();
                let joined = S2cRoomJoined {
                    room: join.room,
                    members,
                    capacity: 100,
                };
                self.send(session, &joined);
                // The members already there see it come (PROTOCOL.md: S2C_RoomPresence).
                let presence = S2cRoomPresence {
                    room: joined.room.clone(),
                    username: self.members[&session].name.clone(),
                    joined: true,
                };
                for other in others {
                    self.send(other, &presence);
                }
                for n in 0..self.faults.history {
                    let line = S2cChat {
                        room: joined.room.clone(),
                        from: "someone-earlier".into(),
                        content: format!("{n} old line"),
                        history: true,
                        ..Default::default()
                    };
                    self.send(session, &line);
                }
            }
            C2sMessage::C2sPing(ping) => {
                let pong = S2cPong {
                    seq: ping.seq,
                    client_time_us: ping.client_time_us,
                    server_time_us: protocol::now_us(),
                    ..Default::default()
                };
                self.send(session, &pong);
            }
            C2sMessage::C2sChat(chat) => {
                self.chats += 1;
                if self.faults.kill_nodes_at == Some(self.chats) {
                    self.kill_nodes();
                    if !self.members.contains_key(&session) {
                        return; // its sender died with its node
                    }
                }
                if self.faults.kick_at == Some(self.chats) {
                    if let Some(member) = self.members.get_mut(&session) {
                        member
                            .session
                            .abort(DisconnectReason::Kicked("test".into()));
                    }
                    self.close(session);
                    return;
                }
                if self
                    .faults
                    .reject_every
                    .is_some_and(|n| self.chats.checked_rem(n) == Some(0))
                {
                    let error = S2cError {
                        code: ErrorCode::RateLimited as i32,
                        reason: "slow down".into(),
                        request_id: u32::from(C2sChat::ID),
                        retry_after_ms: 0,
                    };
                    self.send(session, &error);
                    return;
                }
                let line = S2cChat {
                    from: self.members[&session].name.clone(),
                    content: chat.content,
                    sent_at_us: chat.sent_at_us,
                    server_time_us: protocol::now_us(),
                    history: false,
                    room: chat.room,
                };
                let frame = protocol::frame(&line).unwrap();
                for &to in self.rooms.get(&line.room).into_iter().flatten() {
                    if to != session {
                        self.deliveries += 1;
                        if self
                            .faults
                            .drop_every
                            .is_some_and(|n| self.deliveries.checked_rem(n) == Some(0))
                        {
                            continue;
                        }
                    }
                    self.send_frame(to, frame.clone());
                    if self.faults.duplicate {
                        self.send_frame(to, frame.clone());
                    }
                }
            }
            _ => {}
        }
    }

    /// Every node but the first dies.
    fn kill_nodes(&mut self) {
        for stop in &self.node_stops[1..] {
            stop.cancel();
        }
        let dead: Vec<SessionId> = self
            .node_of
            .iter()
            .filter(|&(_, &node)| node > 0)
            .map(|(&id, _)| id)
            .collect();
        for id in dead {
            if let Some(member) = self.members.get_mut(&id) {
                member
                    .session
                    .abort(DisconnectReason::Kicked("node died".into()));
            }
            self.close(id);
        }
    }

    fn close(&mut self, session: SessionId) {
        self.node_of.remove(&session);
        self.members.remove(&session);
        for room in self.rooms.values_mut() {
            room.retain(|&id| id != session);
        }
    }
}

/// Starts the fake server; it runs until `shutdown` is cancelled.
async fn fake_server(faults: Faults, shutdown: CancellationToken) -> SocketAddr {
    fake_nodes(faults, 1, shutdown).await[0]
}

/// Starts the fake server listening as `nodes` nodes of one world (a line reaches every member
/// of its room, whichever node each is on); it runs until `shutdown` is cancelled.
async fn fake_nodes(faults: Faults, nodes: u64, shutdown: CancellationToken) -> Vec<SocketAddr> {
    let tracker = TaskTracker::new();
    let (service_tx, mut service_rx) = mpsc::channel(1024);
    let (session_tx, mut session_rx) = mpsc::channel(65536);
    let mut addrs = Vec::new();
    let mut node_stops = Vec::new();
    for node in 0..nodes {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap());
        let stop = shutdown.child_token();
        ServerService::spawn(listener, node, service_tx.clone(), stop.clone(), &tracker);
        node_stops.push(stop);
    }
    let config = SessionConfig {
        outbound_batches: 1 << 16,
        max_outbound_bytes: 1 << 26,
        ..SessionConfig::default()
    };
    let mut server = FakeServer {
        faults,
        node_stops,
        node_of: HashMap::new(),
        members: HashMap::new(),
        rooms: HashMap::new(),
        deliveries: 0,
        chats: 0,
        logins: 0,
    };
    tokio::spawn(async move {
        let mut next_id = 1;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(ServiceEvent::Accepted { stream, tag, .. }) = service_rx.recv() => {
                    let id = SessionId(next_id);
                    next_id += 1;
                    server.node_of.insert(id, tag);
                    let session = Session::spawn(id, stream, &config, session_tx.clone(), &tracker);
                    let name = String::new();
                    server.members.insert(id, Member { session, name });
                    let welcome = S2cWelcome { session_id: id.0, protocol_version: 1, ..Default::default() };
                    server.send(id, &welcome);
                }
                Some(event) = session_rx.recv() => match event {
                    SessionEvent::Closed { session, .. } => server.close(session),
                    SessionEvent::Received { session, packet, .. } => {
                        if let Some(member) = server.members.get(&session) {
                            member.session.release_credit(1);
                        }
                        if let Ok(message) = C2sMessage::decode(packet.id, packet.payload) {
                            server.handle(session, message);
                        }
                    }
                    SessionEvent::Ready { .. } => {}
                },
            }
        }
    });
    addrs
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
    assert_eq!(report.auth, "guest");
    assert_eq!(report.auth_ms.count, 45);
    assert!(report.auth_ms.p50 <= report.login_ms.p50, "{report}");
    assert!(report.tokens.is_none(), "only register runs save tokens");
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
async fn bots_told_unavailable_log_in_again_after_the_hint() {
    let report = run_against(
        Faults {
            unavailable_logins: 10,
            ..Faults::default()
        },
        20,
    )
    .await;
    assert_eq!(report.errors.get("UNAVAILABLE"), Some(&10), "{report}");
    assert_eq!(report.logged_in, 20, "{report}");
    assert_eq!(report.lost, 0, "{report}");
    assert!(report.passed(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_the_server_disconnects_is_reported_with_what_it_was_owed_lost() {
    let report = run_against(
        Faults {
            kick_at: Some(100),
            ..Faults::default()
        },
        20,
    )
    .await;
    assert!(!report.passed());
    assert_eq!(report.disconnects, 1, "{report}");
    assert_eq!(
        report.disconnect_reasons.get("peer closed"),
        Some(&1),
        "{report}"
    );
    assert!(
        report.lost > 0,
        "the line it sent last was never delivered: {report}"
    );
    assert_eq!(report.received + report.lost, report.expected);
    assert_eq!(report.unexpected, 0, "{report}");
    let failures = report.failures().join("; ");
    assert!(
        failures.contains("1 unexpected disconnects (peer closed 1)"),
        "{failures}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_lines_are_counted_apart_from_live_chat() {
    let report = run_against(
        Faults {
            history: 3,
            ..Faults::default()
        },
        20,
    )
    .await;
    assert_eq!(report.history_received, 60, "{report}");
    assert_eq!(report.unexpected, 0, "{report}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_whose_node_dies_fail_over_past_a_refusing_node_and_nothing_is_lost() {
    let stop_server = CancellationToken::new();
    let faults = Faults {
        kill_nodes_at: Some(300),
        ..Faults::default()
    };
    let nodes = fake_nodes(faults, 3, stop_server.clone()).await;
    let mut config = config(nodes[0], 60);
    config.client.servers = nodes;
    config.client.duration_secs = 2;
    let report = run(config, CancellationToken::new()).await.unwrap();
    stop_server.cancel();
    assert!(report.passed(), "{report}");
    // Nodes 1 and 2 died with 20 bots each; all came back through node 0, those of node 1
    // after node 2 refused them.
    assert_eq!(report.failovers, 40, "{report}");
    assert_eq!(report.failover_connects, 20 * 2 + 20, "{report}");
    assert_eq!(
        (report.never_recovered, report.disconnects),
        (0, 0),
        "{report}"
    );
    assert_eq!(report.recovery_ms.count, 40, "{report}");
    assert_eq!((report.lost, report.unexpected), (0, 0), "{report}");
    assert_eq!(
        report.received + report.missed_in_failover,
        report.expected,
        "{report}"
    );
    assert_eq!(report.joined, 60, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_with_no_node_left_give_up_within_the_login_timeout_and_fail_the_run() {
    let stop_server = CancellationToken::new();
    let faults = Faults {
        kill_nodes_at: Some(100),
        ..Faults::default()
    };
    let nodes = fake_nodes(faults, 2, stop_server.clone()).await;
    // Node 0 lives on but is taken off the list: nodes 1 and 2 (the same, twice over: bots
    // alternate) are all the bots know, and both die.
    let mut config = config(nodes[1], 20);
    config.client.servers = vec![nodes[1], nodes[1]];
    config.client.duration_secs = 10;
    config.client.login_timeout_secs = 1;
    let started = std::time::Instant::now();
    let report = run(config, CancellationToken::new()).await.unwrap();
    stop_server.cancel();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the run ends once all gave up"
    );
    assert_eq!(
        (report.failovers, report.never_recovered),
        (0, 20),
        "{report}"
    );
    assert!(report.failover_connects >= 20, "{report}");
    assert_eq!(report.lost, 0, "what they missed is not lost: {report}");
    assert_eq!(
        report.received + report.missed_in_failover,
        report.expected,
        "{report}"
    );
    assert!(!report.passed());
    assert!(
        report
            .failures()
            .contains(&"20 of 20 failovers never recovered".to_owned()),
        "{report}"
    );
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
