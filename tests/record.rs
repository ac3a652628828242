//! Record and replay with the real binary: `world-server --record DIR` under a swarm of bots,
//! then `world-server replay DIR`, which runs every tick again and finds each tick's output
//! the recorded one; a changed configuration is found at the first tick it changes, a damaged
//! byte at its record, a killed server's recording replays up to its last whole tick, a
//! recording that reaches its bound stops while the server goes on, and a node of a cluster
//! (NATS's batches and answers among its inputs) replays as well.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, world_server_binary, TestClient};

/// A `world-server` process recording to `dir/rec`, with its database and log in `dir`.
struct Recording {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Recording {
    /// Starts one with `args` added, and waits until it serves.
    async fn start(args: &[&str]) -> Recording {
        Recording::start_binary(world_server_binary(), args).await
    }

    /// [`Recording::start`] of the server binary `binary`.
    async fn start_binary(binary: &Path, args: &[&str]) -> Recording {
        let dir = common::fresh_dir();
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let child = Command::new(binary)
            .current_dir(&dir)
            .args(["--listen", &addr.to_string(), "--web", "off"])
            .arg("--record")
            .arg(dir.join("rec"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TestClient::try_connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "the server never listened");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Recording { child, dir, addr }
    }

    /// The recording's directory.
    fn rec(&self) -> PathBuf {
        self.dir.join("rec")
    }

    /// What the server logged.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Stops it with SIGTERM and waits for it to exit 0.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}: {}", self.log());
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `world-server replay DIR` with `args` added.
fn replay(dir: &Path, args: &[&str]) -> Output {
    replay_with(world_server_binary(), dir, args)
}

/// `BINARY replay DIR` with `args` added.
fn replay_with(binary: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new(binary)
        .arg("replay")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

/// A swarm of `bots` bots on `servers` for `secs` seconds, which must pass.
async fn swarm(servers: Vec<SocketAddr>, bots: usize, secs: u64) -> dummy_client::Report {
    common::swarm(servers, bots, secs, Duration::from_secs(90)).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The number after `word` in `text` (`"221 ticks"` for `"ticks"`: 221).
fn count_before(text: &str, word: &str) -> u64 {
    let at = text
        .find(&format!(" {word}"))
        .unwrap_or_else(|| panic!("{text}"));
    text[..at]
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swarm_recorded_replays_tick_for_tick_and_a_change_or_damage_is_found_where_it_is() {
    let mut server = Recording::start(&[]).await;
    let report = swarm(vec![server.addr], 200, 4).await;
    assert!(report.received > 10_000, "{report}");
    server.stop();
    let rec = server.rec();
    let replayed = replay(&rec, &[]);
    let out = text(&replayed.stdout);
    assert!(replayed.status.success(), "{out}{}", text(&replayed.stderr));
    assert!(
        out.contains(
            "every tick's output is the recorded one; the recording ended: the server stopped"
        ),
        "{out}"
    );
    let ticks = count_before(&out, "ticks");
    let inputs = count_before(&out, "inputs");
    // A tick every 50 ms for the run, and every line each bot sent among the inputs.
    assert!(ticks > 80, "{out}");
    assert!(inputs > report.sent, "{out}\n{report}");
    let size: u64 = std::fs::read_dir(&rec)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    eprintln!(
        "recorded {ticks} ticks, {inputs} inputs, {} deliveries: {size} bytes",
        report.received
    );

    // Under another configuration (lines of at most 5 bytes), the first tick with a line
    // differs, and its batches are shown.
    let small = server.dir.join("small.toml");
    std::fs::write(&small, "[world]\nmax_chat_len = 5\n").unwrap();
    let changed = replay(&rec, &["--config", small.to_str().unwrap()]);
    let out = text(&changed.stdout);
    assert_eq!(changed.status.code(), Some(1), "{out}");
    assert!(out.contains("differs from the recording"), "{out}");
    assert!(out.contains("  batches: recorded "), "{out}");
    assert!(out.contains("replayed batches:"), "{out}");

    // One byte changed in the middle: the record it is in is named.
    let segment = rec.join("000000.rec");
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&segment, &bytes).unwrap();
    let damaged = replay(&rec, &[]);
    let out = text(&damaged.stdout);
    assert_eq!(damaged.status.code(), Some(1), "{out}");
    assert!(out.contains("000000.rec: the record at byte"), "{out}");
    assert!(out.contains("does not match its checksum"), "{out}");

    // A directory that holds a recording is not recorded into again.
    let again = Command::new(world_server_binary())
        .args(["--listen", "127.0.0.1:0", "--web", "off", "--record"])
        .arg(&rec)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    let err = text(&again.stderr);
    assert!(err.contains("holds a recording already"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_servers_recording_replays_to_its_last_tick_and_a_full_one_stops_alone() {
    // Killed: no end record, and every whole tick replays.
    let mut killed = Recording::start(&[]).await;
    swarm(vec![killed.addr], 100, 2).await;
    let _ = killed.child.kill();
    let _ = killed.child.wait();
    let replayed = replay(&killed.rec(), &[]);
    let out = text(&replayed.stdout);
    assert!(replayed.status.success(), "{out}");
    assert!(out.contains("the recording has no end record"), "{out}");
    assert!(count_before(&out, "ticks") > 20, "{out}");

    // Bounded: at 1 MiB the recording stops, says so (in the log, read once the server is
    // stopped and its log flushed), and the server serves on.
    let mut bounded = Recording::start(&["--record-max-mib", "1"]).await;
    // About 1.5 MiB of inputs: 400 bots saying 4 lines a second for 10 s.
    let report = swarm(vec![bounded.addr], 400, 10).await;
    assert_eq!(report.lost, 0, "{report}");
    bounded.stop();
    let log = bounded.log();
    assert!(
        log.contains("recording stopped") && log.contains("--record-max-mib"),
        "{log}"
    );
    let size: u64 = std::fs::read_dir(bounded.rec())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(size <= 1 << 20, "{size} bytes");
    let replayed = replay(&bounded.rec(), &[]);
    let out = text(&replayed.stdout);
    assert!(replayed.status.success(), "{out}");
    assert!(out.contains("reached its bound of 1 MiB"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_of_a_cluster_each_replay_their_recording_nats_inputs_and_all() {
    let test = "the_nodes_of_a_cluster_each_replay_their_recording_nats_inputs_and_all";
    let nats = match testkit::Nats::start() {
        Ok(nats) => nats,
        Err(why) => return common::skip(test, &why),
    };
    let mut nodes = Vec::new();
    for name in ["a", "b"] {
        nodes.push(Recording::start(&["--nats", &nats.url(), "--node", name]).await);
    }
    let report = swarm(nodes.iter().map(|n| n.addr).collect(), 100, 3).await;
    assert_eq!(report.expected, report.sent * 10, "{report}");
    for node in &mut nodes {
        node.stop();
        let replayed = replay(&node.rec(), &[]);
        let out = text(&replayed.stdout);
        assert!(replayed.status.success(), "{out}{}", text(&replayed.stderr));
        assert!(
            out.contains("every tick's output is the recorded one"),
            "{out}"
        );
    }
}

/// Another game on the engine records and replays the same way: the arena, its bots walking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_arena_recorded_under_its_bots_replays_tick_for_tick() {
    let arena = common::binary("arena", "arena");
    let mut server = Recording::start_binary(&arena, &[]).await;
    let bots = Command::new(common::binary("dummy-client", "dummy-client"))
        .args(["--server", &server.addr.to_string(), "--scenario", "arena"])
        .args(["--bots", "100", "--duration", "3", "--log-level", "warn"])
        .output()
        .unwrap();
    assert!(bots.status.success(), "{}", text(&bots.stdout));
    server.stop();
    let replayed = replay_with(&arena, &server.rec(), &[]);
    let out = text(&replayed.stdout);
    assert!(replayed.status.success(), "{out}{}", text(&replayed.stderr));
    assert!(
        out.contains("every tick's output is the recorded one"),
        "{out}"
    );
    assert!(count_before(&out, "ticks") > 50, "{out}");
}
