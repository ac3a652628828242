//! Several world servers as one world over a real NATS server (Debian's `nats-server`, started
//! by each test on loopback; without it each test says in one line that it skipped): players
//! on different nodes share a room's presence, chat and list, whisper each other, and a login
//! on one node replaces an older one of the name on another; a node killed with SIGKILL
//! leaves the others' rooms within the node timeout, and the bots of a swarm on it fail over
//! to the other nodes without a real loss; a NATS outage is survived, each node serving its
//! own players, and the nodes are one world again when NATS is back.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, start_server, test_config, TestClient, TestServer};
use protocol::world::{C2sRoomJoin, C2sRoomList, C2sWhisper, S2cRoomJoined};
use protocol::{ErrorCode, S2cMessage};

/// A NATS server for this test, or `None` after saying why there is none.
fn nats(test: &str) -> Option<testkit::Nats> {
    match testkit::Nats::start() {
        Ok(nats) => Some(nats),
        Err(why) => {
            common::skip(test, &why);
            None
        }
    }
}

/// A node called `name` on `nats`, in this process.
async fn node(nats: &testkit::Nats, name: &str) -> TestServer {
    node_with(nats, name, |_| {}).await
}

/// [`node`], with `change` made to its config first.
async fn node_with(
    nats: &testkit::Nats,
    name: &str,
    change: impl FnOnce(&mut config::ServerConfig),
) -> TestServer {
    let mut config = test_config();
    config.cluster.nats_url = nats.url();
    config.cluster.node = name.into();
    change(&mut config);
    start_server(config).await
}

/// Polls `path` on the admin listener `admin` until `done` holds for its status and body.
async fn admin_until(admin: std::net::SocketAddr, path: &str, done: impl Fn(u16, &str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(answer) = common::http_raw(
            admin,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
        .await
        {
            if done(answer.status, &answer.body) {
                return;
            }
            assert!(Instant::now() < deadline, "{path}: {answer:?}");
        }
        assert!(Instant::now() < deadline, "{path}: no answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `client`'s room list has `room` with `members` members.
async fn until_listed(client: &mut TestClient, room: &str, members: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        client.send(&C2sRoomList {}).await;
        // Presence and chat may come first.
        let S2cMessage::S2cRoomList(list) = client
            .recv_until(|m| matches!(m, S2cMessage::S2cRoomList(_)))
            .await
        else {
            unreachable!("recv_until returns what it waited for")
        };
        if list
            .rooms
            .iter()
            .any(|r| r.name == room && r.members == members)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{room} never had {members} members: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_on_two_nodes_share_a_room_its_chat_and_whispers() {
    let Some(nats) = nats("players_on_two_nodes_share_a_room_its_chat_and_whispers") else {
        return;
    };
    let (a, b) = (node(&nats, "a").await, node(&nats, "b").await);
    let mut alice = a.member("alice", "lobby").await;
    let mut bob = b.guest("bob").await;
    until_listed(&mut bob, "lobby", 1).await;
    bob.send(&C2sRoomJoin {
        room: "lobby".into(),
        ..Default::default()
    })
    .await;
    let joined = bob.expect::<S2cRoomJoined>().await;
    assert_eq!(joined.members, ["bob", "alice"]);
    alice.await_presence("bob").await;
    until_listed(&mut alice, "lobby", 2).await;

    for i in 0..50 {
        alice.say("lobby", &format!("line {i}"), i).await;
    }
    for i in 0..50 {
        let chat = bob
            .expect_chat("lobby", "alice", &format!("line {i}"))
            .await;
        assert_eq!(chat.sent_at_us, i, "in the order alice said them");
    }
    bob.say("lobby", "back", 99).await;
    alice
        .recv_until(
            |m| matches!(m, S2cMessage::S2cChat(c) if c.from == "alice" && c.sent_at_us == 49),
        )
        .await;
    let echo = alice.expect_chat("lobby", "bob", "back").await;
    assert!(!echo.history);
    bob.expect_chat("lobby", "bob", "back").await;
    bob.expect_silence(Duration::from_millis(300)).await;

    bob.send(&C2sWhisper {
        to: "alice".into(),
        content: "psst".into(),
        sent_at_us: 1,
    })
    .await;
    let whisper = alice
        .recv_until(|m| matches!(m, S2cMessage::S2cWhisper(_)))
        .await;
    assert!(matches!(whisper, S2cMessage::S2cWhisper(w) if w.from == "bob" && w.content == "psst"));
    bob.send(&C2sWhisper {
        to: "nobody".into(),
        content: "hello?".into(),
        sent_at_us: 2,
    })
    .await;
    bob.recv_until(
        |m| matches!(m, S2cMessage::S2cError(e) if e.code == ErrorCode::UserOffline as i32),
    )
    .await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_jetstream_refuses_to_start_saying_so() {
    let nats = match testkit::Nats::start_without_jetstream() {
        Ok(nats) => nats,
        Err(why) => {
            return common::skip("a_node_without_jetstream_refuses_to_start_saying_so", &why)
        }
    };
    let mut config = test_config();
    config.cluster.nats_url = nats.url();
    config.cluster.node = "a".into();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = world_server::run(listener, config, std::future::pending())
        .await
        .expect_err("no node without the names bucket");
    let line = error.to_string();
    assert!(
        line.starts_with(&format!(
            "cluster.nats_url \"{}\": cannot connect: ",
            nats.url()
        )) && line.contains("start nats-server with -js"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_on_another_node_replaces_the_older_session_of_the_name() {
    let Some(nats) = nats("a_login_on_another_node_replaces_the_older_session_of_the_name") else {
        return;
    };
    let (a, b) = (node(&nats, "a").await, node(&nats, "b").await);
    let mut first = a.member("ann", "lobby").await;
    let mut watcher = b.guest("watcher").await;
    until_listed(&mut watcher, "lobby", 1).await;
    let _second = b.guest("ann").await;
    let closed = first.expect_closed_within(Duration::from_secs(5)).await;
    assert!(
        closed
            .iter()
            .any(|m| matches!(m, S2cMessage::S2cError(e) if e.code == ErrorCode::Replaced as i32)),
        "{closed:?}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_survive_a_nats_outage_and_are_one_world_again_after_it() {
    let Some(mut nats) = nats("the_nodes_survive_a_nats_outage_and_are_one_world_again_after_it")
    else {
        return;
    };
    let admin: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let a = node_with(&nats, "a", |c| c.admin.listen = admin.to_string()).await;
    let b = node(&nats, "b").await;
    let mut alice = a.member("alice", "lobby").await;
    let mut bob = b.member("bob", "lobby").await;
    until_listed(&mut alice, "lobby", 2).await;
    admin_until(admin, "/api/state", |_, body| {
        body.contains(r#""cluster":{"node":"a","peers":["b"]"#)
    })
    .await;

    nats.kill();
    admin_until(admin, "/readyz", |status, body| {
        status == 503 && body.contains("not connected to NATS")
    })
    .await;
    // Each node serves its own players. The other node is not counted gone for a silence
    // that is this node's own outage: its member stays listed (what is said to it waits).
    tokio::time::sleep(Duration::from_secs(4)).await;
    until_listed(&mut alice, "lobby", 2).await;
    let mut carol = a.guest("carol").await;
    carol.join("lobby").await;
    carol.say("lobby", "still here", 5).await;
    alice
        .recv_until(|m| matches!(m, S2cMessage::S2cChat(c) if c.content == "still here"))
        .await;

    nats.resume().unwrap();
    admin_until(admin, "/readyz", |status, _| status == 200).await;
    // Back: each node asks the other for its state; bob sees alice and carol again.
    until_listed(&mut bob, "lobby", 3).await;
    until_listed(&mut alice, "lobby", 3).await;
    alice.say("lobby", "after", 6).await;
    bob.recv_until(|m| matches!(m, S2cMessage::S2cChat(c) if c.content == "after"))
        .await;
    a.shutdown().await;
    b.shutdown().await;
}

/// The same guest name logged in on two nodes while NATS is away: once it is back, the later
/// login holds the name on both nodes (the earlier is told REPLACED within 5 s), and a
/// whisper to the name reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_taken_on_two_nodes_during_a_nats_outage_has_one_holder_after_it() {
    let Some(mut nats) =
        nats("a_name_taken_on_two_nodes_during_a_nats_outage_has_one_holder_after_it")
    else {
        return;
    };
    let admin: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let a = node_with(&nats, "a", |c| c.admin.listen = admin.to_string()).await;
    let b = node(&nats, "b").await;
    let mut cyd = a.guest("cyd").await;
    // Node b serves once it has met NATS: up before NATS goes, or it would not start at all.
    let _bea = b.guest("bea").await;
    nats.kill();
    admin_until(admin, "/readyz", |status, _| status == 503).await;
    let mut early = a.guest("ann").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut late = b.guest("ann").await;
    nats.resume().unwrap();
    admin_until(admin, "/readyz", |status, _| status == 200).await;
    let back = Instant::now();
    let closed = early.expect_closed_within(Duration::from_secs(5)).await;
    assert!(
        closed
            .iter()
            .any(|m| matches!(m, S2cMessage::S2cError(e) if e.code == ErrorCode::Replaced as i32)),
        "{closed:?}"
    );
    eprintln!(
        "one holder {:.2} s after NATS answered again",
        back.elapsed().as_secs_f64()
    );
    // The whisper may cross before node a has heard who holds the name: sent until it lands.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        cyd.send(&C2sWhisper {
            to: "ann".into(),
            content: "which ann?".into(),
            sent_at_us: 1,
        })
        .await;
        let landed = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                if let S2cMessage::S2cWhisper(w) = late.recv().await {
                    return w.content;
                }
            }
        })
        .await;
        if landed.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no whisper reached the holder");
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// Three nodes, a member of the lobby on each saying a line every 200 ms, and nats-server killed
/// for 10 s in the middle: every line reaches every other member, once and in order (those
/// said during the outage when NATS is back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_across_three_nodes_loses_nothing_to_a_ten_second_nats_outage() {
    let test = "chat_across_three_nodes_loses_nothing_to_a_ten_second_nats_outage";
    let Some(mut nats) = nats(test) else {
        return;
    };
    let nodes = [
        node(&nats, "a").await,
        node(&nats, "b").await,
        node(&nats, "c").await,
    ];
    let mut members = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        members.push(node.member(&format!("talker-{i}"), "lobby").await);
    }
    until_listed(&mut members[0], "lobby", 3).await;
    let (said_tx, said_rx) = tokio::sync::watch::channel(false);
    let talk = Duration::from_secs(14);
    let tasks: Vec<_> = members
        .into_iter()
        .enumerate()
        .map(|(i, mut member)| {
            let said = said_rx.clone();
            tokio::spawn(async move {
                // Lines said, and from whom each line heard came (sender, its number).
                let mut heard: Vec<(String, u64)> = Vec::new();
                let started = Instant::now();
                let mut n = 0u64;
                let mut next = started;
                loop {
                    if started.elapsed() < talk && Instant::now() >= next {
                        member.say("lobby", &format!("{i} {n}"), n).await;
                        n += 1;
                        next += Duration::from_millis(200);
                    }
                    if started.elapsed() >= talk && *said.borrow() {
                        break;
                    }
                    match member.next_within(Duration::from_millis(20)).await {
                        Some(Ok(S2cMessage::S2cChat(c))) => {
                            heard.push((c.from.clone(), c.sent_at_us))
                        }
                        Some(Err(closed)) => panic!("talker-{i}: connection closed: {closed:?}"),
                        _ => {}
                    }
                    assert!(started.elapsed() < Duration::from_secs(60), "never settled");
                }
                (member, n, heard)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    nats.kill();
    tokio::time::sleep(Duration::from_secs(10)).await;
    nats.resume().unwrap();
    // Talking ends at 14 s; then 8 s for what was held to arrive.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let _ = said_tx.send(true);
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    let said: Vec<u64> = results.iter().map(|(_, n, _)| *n).collect();
    for (i, (_, _, heard)) in results.iter().enumerate() {
        for (j, &count) in said.iter().enumerate() {
            let from = format!("talker-{j}");
            let lines: Vec<u64> = heard
                .iter()
                .filter(|(who, _)| *who == from)
                .map(|(_, n)| *n)
                .collect();
            assert_eq!(
                lines,
                (0..count).collect::<Vec<_>>(),
                "talker-{i} heard from {from}: {} of {count} lines",
                lines.len()
            );
        }
    }
    eprintln!("{test}: lines said per member {said:?}, every one heard by every member");
    drop(results);
    for node in nodes {
        node.shutdown().await;
    }
}

/// Two nodes, the sending one holding at most 1 MiB for NATS: a member on node a says 2 MiB of
/// lines while nats-server is away. When NATS is back, the member on node b hears the lines
/// that were held, in order, then one S2C_RoomMissed for the lobby, then the lines said after;
/// node a counts the batches it dropped and node b the room it told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_outage_buffer_the_members_of_a_room_are_told_once_that_they_missed_lines() {
    let test = "past_the_outage_buffer_the_members_of_a_room_are_told_once_that_they_missed_lines";
    let Some(mut nats) = nats(test) else {
        return;
    };
    let limits = |config: &mut config::ServerConfig| {
        config.cluster.nats_url = nats.url();
        config.world.max_chat_len = 7000;
        config.net.max_requests_per_sec = 1000;
    };
    let mut config = test_config();
    limits(&mut config);
    config.cluster.node = "a".into();
    config.cluster.outage_buffer_mib = 1;
    let (a, a_admin) = common::server_with_admin_and(config).await;
    let mut config = test_config();
    limits(&mut config);
    config.cluster.node = "b".into();
    let (b, b_admin) = common::server_with_admin_and(config).await;
    let mut talker = a.member("talker", "lobby").await;
    let mut listener = b.member("listener", "lobby").await;
    until_listed(&mut listener, "lobby", 2).await;
    talker.say("lobby", "before", 0).await;
    listener.expect_chat("lobby", "talker", "before").await;
    nats.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // 300 lines of 7,000 bytes: twice what a holds.
    let line = "x".repeat(6990);
    for n in 1..=300u64 {
        talker.say("lobby", &format!("{n:>9} {line}"), n).await;
        if n % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Every line echoed to the talker: said, as far as node a is concerned.
    let mut echoed = 0;
    while echoed < 300 {
        if let S2cMessage::S2cChat(c) = talker.recv().await {
            if c.from == "talker" && c.sent_at_us > 0 {
                echoed += 1;
            }
        }
    }
    admin_until(a_admin, "/metrics", |_, body| {
        metric(body, "world_cluster_batches_dropped_total") > 0.0
    })
    .await;
    nats.resume().unwrap();
    talker.say("lobby", "after", 301).await;
    // What the listener hears: the lines held, in order from the first; the notice where the
    // lost ones would have been; then, in order, any later line that was held (a batch small
    // enough for the room left) and the line after.
    let mut heard = Vec::new();
    let mut before_notice = None;
    let mut notices = 0;
    loop {
        match listener.recv().await {
            S2cMessage::S2cChat(c) if c.content == "after" => break,
            S2cMessage::S2cChat(c) => heard.push(c.sent_at_us),
            S2cMessage::S2cRoomMissed(m) => {
                assert_eq!(m.room, "lobby");
                notices += 1;
                before_notice = Some(heard.len());
            }
            _ => {}
        }
    }
    assert_eq!(notices, 1, "told once");
    let held = before_notice.unwrap();
    assert!(held > 0 && heard.len() < 300, "{} lines heard", heard.len());
    assert_eq!(
        heard[..held],
        (1..=held as u64).collect::<Vec<_>>(),
        "in order"
    );
    assert!(
        heard[held..].windows(2).all(|w| w[0] < w[1])
            && heard.get(held).is_none_or(|&n| n > held as u64 + 1),
        "after the notice, later lines only, in order: {:?}",
        &heard[held..]
    );
    let heard = &heard[..held];
    admin_until(b_admin, "/metrics", |_, body| {
        metric(body, "world_room_missed_total") == 1.0
    })
    .await;
    eprintln!(
        "{test}: 300 lines said during the outage, {} held and heard, then one notice",
        heard.len()
    );
    drop((talker, listener));
    a.shutdown().await;
    b.shutdown().await;
}

/// The value of the metric `name` (without labels) in a Prometheus text page; 0 when absent.
fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// Node `name` as a `world-server` process of its own (to be killed), on `nats` and, with
/// `postgres_url`, on that database (else an SQLite file of its own); returns the process,
/// a client connected to it, its directory and its address.
async fn node_process(
    nats: &testkit::Nats,
    name: &str,
    postgres_url: Option<&str>,
) -> (
    std::process::Child,
    TestClient,
    std::path::PathBuf,
    std::net::SocketAddr,
) {
    let port = free_port();
    let dir = common::fresh_dir();
    let storage = match postgres_url {
        Some(url) => format!("backend = \"postgres\"\npostgres_url = \"{url}\"\n"),
        None => format!("path = \"{}\"\n", dir.join("node.db").display()),
    };
    std::fs::write(
        dir.join("node.toml"),
        format!(
            "[cluster]\nnats_url = \"{}\"\nnode = \"{name}\"\n[storage]\n{storage}",
            nats.url()
        ),
    )
    .unwrap();
    let child = Command::new(common::world_server_binary())
        .arg("--config")
        .arg(dir.join("node.toml"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--web",
            "off",
            "--log-level",
            "warn",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let client = loop {
        if let Ok(client) = TestClient::try_connect(addr).await {
            break client;
        }
        assert!(Instant::now() < deadline, "node {name} never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    (child, client, dir, addr)
}

/// A node process that is killed (SIGKILL) and whose directory is removed when the test ends,
/// passed or not.
struct Killed(std::process::Child, std::path::PathBuf);

impl Killed {
    /// Kills the node now (SIGKILL) and waits for it.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_with_sigkill_leaves_the_other_nodes_rooms() {
    let Some(nats) = nats("a_node_killed_with_sigkill_leaves_the_other_nodes_rooms") else {
        return;
    };
    let a = node(&nats, "a").await;
    let (mut b, mut bob, dir, _) = node_process(&nats, "b", None).await;
    bob.login_guest("bob").await;
    bob.join("lobby").await;
    let mut alice = a.member("alice", "lobby").await;
    until_listed(&mut alice, "lobby", 2).await;

    let killed = Instant::now();
    b.kill().unwrap(); // SIGKILL
    b.wait().unwrap();
    alice
        .recv_until(
            |m| matches!(m, S2cMessage::S2cRoomPresence(p) if p.username == "bob" && !p.joined),
        )
        .await;
    let gone_after = killed.elapsed();
    eprintln!("node b's players left node a's rooms {gone_after:?} after its SIGKILL");
    assert!(
        gone_after < world_server::cluster::NODE_TIMEOUT + Duration::from_secs(2),
        "{gone_after:?}"
    );
    until_listed(&mut alice, "lobby", 1).await;
    let _ = std::fs::remove_dir_all(&dir);
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_players_of_a_killed_node_resume_on_another_with_their_token() {
    let test = "the_players_of_a_killed_node_resume_on_another_with_their_token";
    let Some(nats) = nats(test) else { return };
    let pg = match testkit::postgres() {
        Ok(pg) => pg,
        Err(why) => return common::skip(test, &why),
    };
    let url = pg.fresh_database();
    let mut config = test_config();
    config.cluster.nats_url = nats.url();
    config.cluster.node = "a".into();
    config.storage.backend = "postgres".into();
    config.storage.postgres_url = url.clone();
    config.world.history_lines = 3;
    let a = start_server(config).await;
    let (mut b, mut bob, dir, _) = node_process(&nats, "b", Some(&url)).await;
    let registered = bob.register("bob", "correct horse").await;
    bob.join("lobby").await;
    let mut alice = a.member("alice", "lobby").await;
    until_listed(&mut alice, "lobby", 2).await;
    alice.say("lobby", "before", 1).await;
    let had = bob.expect_chat("lobby", "alice", "before").await;
    b.kill().unwrap();
    b.wait().unwrap();
    alice
        .recv_until(
            |m| matches!(m, S2cMessage::S2cRoomPresence(p) if p.username == "bob" && !p.joined),
        )
        .await;
    // Said while bob was away: more than node a keeps (3).
    for i in 1..=4 {
        alice.say("lobby", &format!("during {i}"), 1).await;
        alice
            .expect_chat("lobby", "alice", &format!("during {i}"))
            .await;
    }
    // Bob comes back on node a with the token node b gave him, and is in the lobby again,
    // with what he missed of it: told that some is gone, then the 3 lines kept.
    let mut back = a.client().await;
    back.send(&protocol::world::C2sResume {
        token: registered.token,
        ..Default::default()
    })
    .await;
    let resumed = back.expect::<protocol::world::S2cAuthResult>().await;
    assert_eq!(resumed.user_id, registered.user_id);
    back.send(&protocol::world::C2sRoomJoin {
        room: "lobby".into(),
        since_us: had.server_time_us,
    })
    .await;
    back.expect::<protocol::world::S2cRoomJoined>().await;
    let missed = back.expect::<protocol::world::S2cRoomMissed>().await;
    assert_eq!(missed.room, "lobby");
    for i in 2..=4 {
        let line = back.expect::<protocol::world::S2cChat>().await;
        assert_eq!((line.content, line.history), (format!("during {i}"), true));
    }
    alice.await_presence("bob").await;
    alice.say("lobby", "after", 1).await;
    let live = back.expect::<protocol::world::S2cChat>().await;
    assert_eq!((live.content.as_str(), live.history), ("after", false));
    let _ = std::fs::remove_dir_all(&dir);
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swarm_spread_over_three_nodes_loses_and_duplicates_nothing() {
    let Some(nats) = nats("a_swarm_spread_over_three_nodes_loses_and_duplicates_nothing") else {
        return;
    };
    let nodes = [
        node(&nats, "a").await,
        node(&nats, "b").await,
        node(&nats, "c").await,
    ];
    let servers = nodes.iter().map(|n| n.addr).collect();
    let report = common::swarm(servers, 150, 4, Duration::from_secs(60)).await;
    assert_eq!(report.joined, 150, "{report}");
    assert_eq!((report.lost, report.unexpected), (0, 0), "{report}");
    assert_eq!(report.received, report.expected, "{report}");
    // Each line reaches the 10 members of its room, on all three nodes.
    assert_eq!(report.expected, report.sent * 10, "{report}");
    assert!(report.sent > 1000, "{report}");
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chaos_swarm_over_three_nodes_resumes_every_dropped_session_with_nothing_lost_or_doubled()
{
    let Some(nats) = nats("a_chaos_swarm_over_three_nodes_resumes_every_dropped_session") else {
        return;
    };
    let nodes = [
        node(&nats, "a").await,
        node(&nats, "b").await,
        node(&nats, "c").await,
    ];
    let servers = nodes.iter().map(|n| n.addr).collect();
    // Each bot drops its connection about once every 5 s, closing or stalling it, and takes
    // its session back on its node while its room, spread over the three, goes on.
    let report = common::swarm_with(servers, 150, 6, Duration::from_secs(90), |c| {
        c.bots.chaos_per_min = 12.0;
    })
    .await;
    assert_eq!(report.joined, 150, "{report}");
    assert!(report.resumes >= 60, "{report}");
    assert!(report.drops.contains_key("closed") && report.drops.contains_key("stalled"));
    assert_eq!(report.resume_failures, 0, "{report}");
    assert_eq!(
        (report.lost, report.unexpected, report.duplicated),
        (0, 0, 0),
        "{report}"
    );
    assert_eq!(report.received, report.expected, "{report}");
    assert_eq!(report.expected, report.sent * 10, "{report}");
    assert!(report.replayed_frames > 0, "{report}");
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bots_of_a_node_killed_mid_run_fail_over_to_the_others_and_nothing_is_really_lost() {
    let test =
        "the_bots_of_a_node_killed_mid_run_fail_over_to_the_others_and_nothing_is_really_lost";
    let Some(nats) = nats(test) else { return };
    let mut nodes = Vec::new();
    let mut addrs = Vec::new();
    for name in ["a", "b", "c"] {
        let (child, _client, dir, addr) = node_process(&nats, name, None).await;
        nodes.push(Killed(child, dir));
        addrs.push(addr);
    }
    let mut config = dummy_client::ClientConfig::default();
    config.client.servers = addrs.clone();
    config.client.bots = 150;
    config.client.duration_secs = 10;
    config.client.drain_secs = 5;
    config.client.ramp_up_per_sec = 1000;
    config.bots.bots_per_room = 10;
    config.bots.chat_interval_ms = 250;
    config.validate("cluster failover test").unwrap();
    let login_timeout = config.client.login_timeout();
    let swarm = tokio::spawn(dummy_client::run(config, Default::default()));

    // Every bot is in and chatting well before this; node b (bots 1, 4, 7, ...) dies.
    tokio::time::sleep(Duration::from_secs(3)).await;
    nodes[1].kill();
    eprintln!("node b ({}) killed with SIGKILL", addrs[1]);

    let report = tokio::time::timeout(Duration::from_secs(60), swarm)
        .await
        .expect("the swarm did not finish within 60 s")
        .expect("the swarm task panicked")
        .expect("the swarm could not start");
    eprintln!("{report}");
    assert!(report.passed(), "{:?}\n{report}", report.failures());
    assert_eq!(report.joined, 150, "{report}");
    // Each of node b's 50 bots came back once, through node c (the next in the list).
    assert_eq!(report.failovers, 50, "{report}");
    assert_eq!(report.never_recovered, 0, "{report}");
    assert_eq!(
        report.failover_reasons.values().sum::<u64>(),
        50,
        "{report}"
    );
    assert_eq!(
        report.failover_connects, 50,
        "node c took every one: {report}"
    );
    assert_eq!(
        report.disconnects, 0,
        "a failover is not a disconnect: {report}"
    );
    let recovery = report.recovery_ms;
    assert_eq!(recovery.count, 50, "{report}");
    assert!(
        recovery.p50 > 0.0 && recovery.p50 <= recovery.p99 && recovery.p99 <= recovery.max,
        "{report}"
    );
    assert!(
        recovery.max < login_timeout.as_secs_f64() * 1000.0,
        "{report}"
    );
    // Exact accounting: what the gaps kept from the bots is missed, nothing is lost.
    assert_eq!((report.lost, report.unexpected), (0, 0), "{report}");
    assert!(report.missed_in_failover > 0, "{report}");
    assert_eq!(
        report.received + report.missed_in_failover,
        report.expected,
        "{report}"
    );
    assert!(report.sent > 3000, "{report}");
    // The bots chat after the failover too: the last seconds of the run have all 150 in.
    let last = report.run.series.iter().rev().nth(2).expect("a long run");
    assert_eq!(last.bots, 150, "{:?}", report.run.series);
    assert_eq!(
        report.run.series.iter().map(|s| s.failovers).sum::<u64>(),
        50
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_holds_its_capacity_across_nodes_when_joins_arrive_at_once() {
    let Some(nats) = nats("a_room_holds_its_capacity_across_nodes_when_joins_arrive_at_once")
    else {
        return;
    };
    let capacity = |c: &mut config::ServerConfig| c.world.room_capacity = 4;
    let a = node_with(&nats, "a", capacity).await;
    let b = node_with(&nats, "b", capacity).await;
    let mut clients = Vec::new();
    for i in 0..10 {
        let node = if i % 2 == 0 { &a } else { &b };
        clients.push(node.guest(&format!("joiner{i}")).await);
    }
    // Every join at once, five on each node.
    for client in &mut clients {
        client
            .send(&C2sRoomJoin {
                room: "hall".into(),
                ..Default::default()
            })
            .await;
    }
    let (mut joined, mut full) = (Vec::new(), 0);
    for (i, client) in clients.iter_mut().enumerate() {
        match client
            .recv_until(|m| matches!(m, S2cMessage::S2cRoomJoined(_) | S2cMessage::S2cError(_)))
            .await
        {
            S2cMessage::S2cRoomJoined(_) => joined.push(i),
            S2cMessage::S2cError(e) if e.code == ErrorCode::RoomFull as i32 => full += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((joined.len(), full), (4, 6), "joined: {joined:?}");
    // One leaves: a place is free, for a joiner on either node.
    let leaver = joined[0];
    clients[leaver]
        .send(&protocol::world::C2sRoomLeave {
            room: "hall".into(),
        })
        .await;
    let waiting = (0..10).find(|i| !joined.contains(i)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        clients[waiting]
            .send(&C2sRoomJoin {
                room: "hall".into(),
                ..Default::default()
            })
            .await;
        match clients[waiting]
            .recv_until(|m| matches!(m, S2cMessage::S2cRoomJoined(_) | S2cMessage::S2cError(_)))
            .await
        {
            S2cMessage::S2cRoomJoined(_) => break,
            _ => assert!(Instant::now() < deadline, "the freed place never came"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.shutdown().await;
    b.shutdown().await;
}
