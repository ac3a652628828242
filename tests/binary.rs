//! The real `world-server` binary: serves clients on the address given, exits 0 on SIGTERM
//! saying it shut down, refuses a bad config file or a `storage.path` it cannot open with exit
//! code 2, and a corrupt database or one in use by another server with 1, each with one line
//! naming the file, the key and the value.
//!
//! `CARGO_BIN_EXE_world-server` only exists inside the `world-server` package, so the binary
//! is found next to this test's own executable (`target/<profile>/world-server`). When it is
//! missing or older than a source file it was built from (per its `.d` dep-info file), it is
//! built into a target directory of its own (`target/e2e-bin`), so that this never waits on
//! the lock of a cargo that is running these very tests.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, world_server_binary, TestClient};
use protocol::S2cMessage;

/// A temporary config file, deleted on drop.
struct TempConfig(PathBuf);

impl TempConfig {
    fn new(tag: &str, text: &str) -> TempConfig {
        let path = std::env::temp_dir().join(format!(
            "world-server-e2e-{}-{tag}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).expect("write temp config");
        TempConfig(path)
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A running server process, killed on drop if still running; its stderr collected.
struct ServerProcess {
    child: Child,
    stderr: Arc<Mutex<String>>,
    /// Its working directory (where its default `world.db` goes), removed on drop.
    dir: PathBuf,
}

impl ServerProcess {
    /// Starts the server with `args`; without a `--web` among them, with `--web off`, so that
    /// servers of tests running at once do not all take the default web port.
    fn spawn(args: &[&str]) -> ServerProcess {
        let dir = common::fresh_dir();
        let web_off: &[&str] = if args.contains(&"--web") {
            &[]
        } else {
            &["--web", "off"]
        };
        let mut child = Command::new(world_server_binary())
            .args(args)
            .args(web_off)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn world-server");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("stderr pipe");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        ServerProcess { child, stderr, dir }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Connects to `addr` once the process listens (it binds after start-up).
    async fn connect(&mut self, addr: SocketAddr) -> TestClient {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "world-server exited with {status} before accepting; stderr:\n{}",
                    self.stderr()
                );
            }
            if let Ok(client) = TestClient::try_connect(addr).await {
                return client;
            }
            assert!(
                Instant::now() < deadline,
                "world-server did not listen on {addr}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed: {status}");
    }

    /// Waits for the process to exit, at most `within`.
    async fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "world-server still running {within:?} after the signal; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the binary to completion (for start-up failures) and returns (exit code, stderr).
fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let mut process = ServerProcess::spawn(args);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = process.child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "world-server {args:?} did not exit; stderr:\n{}",
            process.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // Let the reader thread take the last bytes.
    std::thread::sleep(Duration::from_millis(100));
    (status.code(), process.stderr())
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_clients_and_exits_zero_on_sigterm_saying_it_shut_down() {
    let config = TempConfig::new(
        "serve",
        "[server]\nname = \"binary-e2e\"\ntick_ms = 20\n[log]\nlevel = \"info\"\n",
    );
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let listen = addr.to_string();
    let config_path = config.0.to_str().unwrap().to_string();
    let mut server = ServerProcess::spawn(&["--config", &config_path, "--listen", &listen]);

    let mut alice = server.connect(addr).await;
    assert_eq!(
        alice.welcome.server_name, "binary-e2e",
        "{:?}",
        alice.welcome
    );
    assert_eq!(alice.welcome.tick_ms, 20);
    assert_eq!(alice.welcome.protocol_version, 1);
    assert_eq!(alice.welcome.max_packet_size, 8192);
    alice.login_guest("alice").await;
    alice.join("lobby").await;
    let mut bob = TestClient::connect(addr).await;
    bob.login_guest("bob").await;
    bob.join("lobby").await;
    alice.say("lobby", "over a real process", 5).await;
    bob.expect_chat("lobby", "alice", "over a real process")
        .await;

    server.signal("TERM");
    let status = server.wait(Duration::from_secs(10)).await;
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status}; stderr:\n{}",
        server.stderr()
    );
    for client in [&mut alice, &mut bob] {
        let frames = client.expect_closed_within(Duration::from_secs(5)).await;
        assert!(
            frames
                .iter()
                .all(|m| matches!(m, S2cMessage::S2cChat(_) | S2cMessage::S2cRoomPresence(_))),
            "{frames:?}"
        );
    }
    std::thread::sleep(Duration::from_millis(100));
    let log = server.stderr();
    assert!(
        log.contains("SIGTERM"),
        "the log should say SIGTERM arrived:\n{log}"
    );
    assert!(
        log.contains("shutting down"),
        "the log should say it shuts down:\n{log}"
    );
    assert!(
        log.contains("stopped"),
        "the log should say it stopped:\n{log}"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the port still accepts after exit"
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_flag_serves_metrics_and_health_beside_the_game_port_until_shutdown() {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (listen, admin_flag) = (addr.to_string(), admin.to_string());
    let mut server = ServerProcess::spawn(&["--listen", &listen, "--admin", &admin_flag]);
    let mut ann = server.connect(addr).await;
    ann.login_guest("ann").await;
    ann.ping(1).await;

    let health = common::http_get(admin, "/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let metrics = common::http_get(admin, "/metrics").await;
    assert_eq!(metrics.status, 200);
    for line in [
        "world_sessions 1",
        "world_sessions_logged_in 1",
        "world_connections_accepted_total 1",
        "world_messages_in_total{message=\"C2S_Ping\"} 1",
    ] {
        assert!(
            metrics.body.lines().any(|l| l == line),
            "{line:?} missing from /metrics:\n{}",
            metrics.body
        );
    }
    let log = server.stderr();
    assert!(
        log.contains(&format!("admin page on http://{admin}/")),
        "the log should say where the admin listener is:\n{log}"
    );

    server.signal("TERM");
    let status = server.wait(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", server.stderr());
    assert!(
        tokio::net::TcpStream::connect(admin).await.is_err(),
        "the admin port still accepts after exit"
    );
}

#[test]
fn an_admin_address_that_is_the_game_port_exits_2_saying_so() {
    let listen = format!("127.0.0.1:{}", free_port());
    let (code, stderr) = run_to_exit(&["--listen", &listen, "--admin", &listen]);
    assert_eq!(code, Some(2), "stderr:\n{stderr}");
    assert_eq!(
        one_line(&stderr),
        format!(
            "world-server: invalid config \"the command line\": admin.listen must be another address than server.listen (got \"{listen}\")"
        )
    );
}

#[test]
fn an_admin_address_in_use_exits_1_naming_it_before_the_game_port_is_announced() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = taken.local_addr().unwrap().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let (code, stderr) = run_to_exit(&["--listen", &listen, "--admin", &admin]);
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on admin.listen {admin}: ")),
        "{stderr}"
    );
    assert!(!stderr.contains("listening on"), "{stderr}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_exits_zero_on_sigint_too() {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let listen = addr.to_string();
    let mut server = ServerProcess::spawn(&["--listen", &listen]);
    let mut client = server.connect(addr).await;
    assert_eq!(client.welcome.session_id, 1);
    server.signal("INT");
    let status = server.wait(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", server.stderr());
    client.expect_closed_within(Duration::from_secs(5)).await;
}

#[test]
fn bad_config_value_exits_2_with_one_line_naming_file_key_and_value() {
    let config = TempConfig::new("tick0", "[server]\ntick_ms = 0\n");
    let path = config.0.to_str().unwrap();
    let (code, stderr) = run_to_exit(&["--config", path]);
    assert_eq!(code, Some(2), "stderr:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got:\n{stderr}");
    let line = lines[0];
    assert!(line.contains(path), "names the file: {line}");
    assert!(line.contains("server.tick_ms"), "names the key: {line}");
    assert!(line.contains("(got 0)"), "names the value: {line}");
}

#[test]
fn unknown_config_key_exits_2_naming_the_key() {
    let config = TempConfig::new("unknown", "[server]\ntick_msx = 5\n");
    let path = config.0.to_str().unwrap();
    let (code, stderr) = run_to_exit(&["--config", path]);
    assert_eq!(code, Some(2), "stderr:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got:\n{stderr}");
    assert!(lines[0].contains(path), "names the file: {}", lines[0]);
    assert!(
        lines[0].contains("server.tick_msx"),
        "names the key: {}",
        lines[0]
    );
    assert!(
        lines[0].ends_with("(did you mean \"server.tick_ms\"?)"),
        "suggests the nearest key: {}",
        lines[0]
    );
}

#[test]
fn missing_config_file_exits_2_naming_the_path() {
    let path = std::env::temp_dir().join(format!(
        "world-server-e2e-{}-does-not-exist.toml",
        std::process::id()
    ));
    let path = path.to_str().unwrap();
    let (code, stderr) = run_to_exit(&["--config", path]);
    assert_eq!(code, Some(2), "stderr:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got:\n{stderr}");
    assert!(lines[0].contains(path), "names the file: {}", lines[0]);
}

/// Registers `name` on a fresh connection and returns the token of its S2C_AuthResult.
async fn register(process: &mut ServerProcess, addr: SocketAddr, name: &str) -> String {
    let mut client = process.connect(addr).await;
    client
        .send(&protocol::world::C2sRegister {
            username: name.into(),
            password: format!("{name}-password"),
            ..Default::default()
        })
        .await;
    let result: protocol::world::S2cAuthResult = client.expect().await;
    assert_eq!(result.username, name);
    result.token
}

/// What the server acknowledged (S2C_AuthResult for a register: the account and its token)
/// is still there after the process is killed with SIGKILL, mid-traffic, and started again.
#[cfg(unix)]
#[tokio::test]
async fn acknowledged_accounts_and_tokens_survive_sigkill() {
    let data = common::fresh_dir();
    let db = data.join("crash.db");
    let config = TempConfig::new(
        "crash",
        &format!(
            "[storage]\npath = {:?}\n[auth]\nargon2_memory_kib = 64\nargon2_iterations = 1\n",
            db.to_str().unwrap()
        ),
    );
    let config_path = config.0.to_str().unwrap().to_string();

    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let listen = addr.to_string();
    let mut server = ServerProcess::spawn(&["--listen", &listen, "--config", &config_path]);
    let mut accounts = Vec::new();
    for i in 0..20 {
        let name = format!("crash-{i:02}");
        let token = register(&mut server, addr, &name).await;
        accounts.push((name, token));
    }
    // Traffic in flight when the process dies: a register whose answer nobody waits for.
    let mut in_flight = server.connect(addr).await;
    in_flight
        .send(&protocol::world::C2sRegister {
            username: "crash-late".into(),
            password: "crash-late-password".into(),
            ..Default::default()
        })
        .await;
    server.signal("KILL");
    let status = server.wait(Duration::from_secs(10)).await;
    assert!(!status.success(), "killed, not exited: {status}");
    drop(server);

    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let listen = addr.to_string();
    let mut server = ServerProcess::spawn(&["--listen", &listen, "--config", &config_path]);
    for (name, token) in &accounts {
        let mut by_password = server.connect(addr).await;
        by_password
            .send(&protocol::world::C2sLogin {
                username: name.clone(),
                password: format!("{name}-password"),
                ..Default::default()
            })
            .await;
        let result: protocol::world::S2cAuthResult = by_password.expect().await;
        assert_eq!(&result.username, name, "account {name} survived");
        let mut by_token = server.connect(addr).await;
        by_token
            .send(&protocol::world::C2sResume {
                token: token.clone(),
                ..Default::default()
            })
            .await;
        let result: protocol::world::S2cAuthResult = by_token.expect().await;
        assert_eq!(&result.username, name, "token of {name} survived");
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}

/// What a crash may lose of chat, as the protocol page says: lines go to the history in one
/// batch per tick, so a SIGKILL loses only lines echoed in the last two ticks (0.1 s) before
/// it. A client says a line every few milliseconds; the server is killed mid-stream and
/// started again; the history it replays ends where the loss allows.
#[cfg(unix)]
#[tokio::test]
async fn chat_lines_lost_to_a_sigkill_are_at_most_those_echoed_in_the_last_two_ticks() {
    use protocol::world::{C2sRoomJoin, S2cChat};
    let data = common::fresh_dir();
    let db = data.join("chat.db");
    let config = TempConfig::new(
        "chat-crash",
        &format!(
            "[storage]\npath = {:?}\nsynchronous = \"normal\"\n[world]\nhistory_lines = 1000\n",
            db.to_str().unwrap()
        ),
    );
    let config_path = config.0.to_str().unwrap().to_string();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let listen = addr.to_string();
    let mut server = ServerProcess::spawn(&["--listen", &listen, "--config", &config_path]);
    let mut talker = server.connect(addr).await;
    talker.login_guest("talker").await;
    talker.join("lobby").await;
    // Lines every 4 ms for a second, each echo's arrival noted.
    let mut echoed: Vec<(u64, Instant)> = Vec::new();
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(1) {
        talker.say("lobby", &format!("line {n}"), n).await;
        n += 1;
        while let Some(Ok(message)) = talker.next_within(Duration::from_millis(4)).await {
            if let protocol::S2cMessage::S2cChat(c) = message {
                echoed.push((c.sent_at_us, Instant::now()));
            }
        }
    }
    // Killed the moment an echo arrives: its tick's batch has just gone to the database.
    talker.say("lobby", &format!("line {n}"), n).await;
    loop {
        if let protocol::S2cMessage::S2cChat(c) = talker.recv().await {
            echoed.push((c.sent_at_us, Instant::now()));
            break;
        }
    }
    server.signal("KILL");
    let killed = Instant::now();
    // Echoes already on their way are read: they were echoed before the kill.
    while let Some(Ok(message)) = talker.next_within(Duration::from_millis(200)).await {
        if let protocol::S2cMessage::S2cChat(c) = message {
            echoed.push((c.sent_at_us, killed));
        }
    }
    let _ = server.wait(Duration::from_secs(10)).await;
    drop(server);

    let mut server = ServerProcess::spawn(&["--listen", &listen, "--config", &config_path]);
    let mut reader = server.connect(addr).await;
    reader.login_guest("reader").await;
    reader
        .send(&C2sRoomJoin {
            room: "lobby".into(),
            ..Default::default()
        })
        .await;
    let mut kept = Vec::new();
    while let Some(Ok(message)) = reader.next_within(Duration::from_millis(500)).await {
        if let protocol::S2cMessage::S2cChat(S2cChat {
            history: true,
            sent_at_us,
            ..
        }) = message
        {
            kept.push(sent_at_us);
        }
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
    assert!(echoed.len() > 100, "{} lines echoed", echoed.len());
    let last_kept = *kept.last().expect("the history survived");
    assert_eq!(
        kept,
        (0..=last_kept).collect::<Vec<_>>(),
        "in order, none missing"
    );
    let lost: Vec<&(u64, Instant)> = echoed.iter().filter(|(n, _)| *n > last_kept).collect();
    let window = Duration::from_millis(100);
    let too_old: Vec<_> = lost
        .iter()
        .filter(|(_, at)| killed.duration_since(*at) > window)
        .map(|(n, at)| (n, killed.duration_since(*at)))
        .collect();
    eprintln!(
        "{} lines echoed, {} kept, {} lost (echoed within {:?} of the kill)",
        echoed.len(),
        kept.len(),
        lost.len(),
        lost.first().map(|(_, at)| killed.duration_since(*at))
    );
    assert!(
        too_old.is_empty(),
        "lines echoed earlier than two ticks before the kill were lost: {too_old:?}"
    );
}

/// The one non-empty line of `stderr`; panics when there are more or none.
fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got:\n{stderr}");
    lines[0]
}

/// A config file with `storage.path = db`, and an address nobody listens on.
fn storage_config(tag: &str, db: &Path) -> (TempConfig, String) {
    let config = TempConfig::new(
        tag,
        &format!("[storage]\npath = {:?}\n", db.to_str().unwrap()),
    );
    (config, format!("127.0.0.1:{}", free_port()))
}

#[test]
fn an_unreachable_postgres_database_stops_the_server_in_one_line_without_its_password() {
    let port = common::free_port();
    let url = format!("postgres://world:hunter2@127.0.0.1:{port}/world");
    let config = TempConfig::new(
        "pg-unreachable",
        &format!("[storage]\nbackend = \"postgres\"\npostgres_url = \"{url}\"\n"),
    );
    let listen = format!("127.0.0.1:{}", common::free_port());
    let (code, stderr) =
        run_to_exit(&["--config", config.0.to_str().unwrap(), "--listen", &listen]);
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    let line = one_line(&stderr);
    assert!(
        line.starts_with(&format!(
            "world-server: storage.postgres_url \"postgres://world:***@127.0.0.1:{port}/world\": cannot connect: "
        )),
        "{line}"
    );
    assert!(!line.contains("hunter2"), "{line}");
}

#[test]
fn a_bad_node_name_or_nats_url_on_the_command_line_exits_2_naming_it() {
    let (code, stderr) = run_to_exit(&["--node", "a b"]);
    assert_eq!(code, Some(2), "stderr:\n{stderr}");
    assert_eq!(
        one_line(&stderr),
        r#"world-server: invalid config "the command line": cluster.node must be empty or at most 64 letters, digits, '-', '_' and '.' (got "a b")"#
    );
    let (code, stderr) = run_to_exit(&["--nats", "localhost:4222"]);
    assert_eq!(code, Some(2), "stderr:\n{stderr}");
    assert!(one_line(&stderr).contains("cluster.nats_url"), "{stderr}");
}

#[test]
fn an_unreachable_nats_stops_the_server_in_one_line() {
    let port = common::free_port();
    let config = TempConfig::new(
        "nats-unreachable",
        &format!("[cluster]\nnats_url = \"nats://127.0.0.1:{port}\"\n"),
    );
    let listen = format!("127.0.0.1:{}", common::free_port());
    // The database is opened (and created) first: its info lines are not the point here.
    let (code, stderr) = run_to_exit(&[
        "--config",
        config.0.to_str().unwrap(),
        "--listen",
        &listen,
        "--log-level",
        "warn",
    ]);
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    let line = one_line(&stderr);
    assert!(
        line.starts_with(&format!(
            "world-server: cluster.nats_url \"nats://127.0.0.1:{port}\": cannot connect: "
        )),
        "{line}"
    );
    assert!(!line.contains("listening"), "{line}");
}

#[test]
fn a_corrupt_database_stops_the_server_before_it_listens() {
    use world_server::storage::{LogEntry, LogLimits, SqliteStorage, Storage};
    let data = common::fresh_dir();
    let db = data.join("world.db");
    {
        let mut storage = SqliteStorage::open(&db, false).unwrap();
        let lines: Vec<LogEntry> = (0..2000)
            .map(|n| LogEntry {
                key: "lobby".into(),
                at_us: n,
                data: format!("line {n} of the lobby").into(),
            })
            .collect();
        let limits = LogLimits {
            entries: 5000,
            max_logs: 10,
        };
        storage.log_append("rooms", &lines, limits).unwrap();
        storage.create_account("ann", "hash", 1).unwrap();
    }
    // Damage every page after the first; the header and the schema stay valid.
    let mut bytes = std::fs::read(&db).unwrap();
    let page_size = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
    assert!(bytes.len() >= 3 * page_size, "{} bytes", bytes.len());
    for page in bytes.chunks_mut(page_size).skip(1) {
        page[100..600].fill(0xab);
    }
    std::fs::write(&db, bytes).unwrap();

    let (config, listen) = storage_config("corrupt", &db);
    let (code, stderr) =
        run_to_exit(&["--config", config.0.to_str().unwrap(), "--listen", &listen]);
    let _ = std::fs::remove_dir_all(&data);
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    let line = one_line(&stderr);
    assert!(!line.contains("listening"), "{line}");
    assert!(
        line.starts_with(&format!(
            "world-server: storage.path {:?}: the database is corrupt (integrity_check: ",
            db.to_str().unwrap()
        )),
        "{line}"
    );
    assert!(line.ends_with("); restore it from a backup"), "{line}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_database_refuses_to_start_naming_the_first() {
    let data = common::fresh_dir();
    let db = data.join("shared.db");
    let (config, listen) = storage_config("shared", &db);
    let config_path = config.0.to_str().unwrap().to_string();
    let addr: SocketAddr = listen.parse().unwrap();
    let mut first = ServerProcess::spawn(&["--config", &config_path, "--listen", &listen]);
    let mut client = first.connect(addr).await;
    client.login_guest("ann").await;

    let other = format!("127.0.0.1:{}", free_port());
    let (code, stderr) = run_to_exit(&["--config", &config_path, "--listen", &other]);
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    assert_eq!(
        one_line(&stderr),
        format!(
            "world-server: storage.path {:?}: in use by another server (pid {}); \
             stop it or give this one another storage.path",
            db.to_str().unwrap(),
            first.child.id()
        )
    );
    // The first one is unharmed.
    client.join("lobby").await;

    // Once it has stopped, the database is free again.
    first.signal("TERM");
    let status = first.wait(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", first.stderr());
    let mut second = ServerProcess::spawn(&["--config", &config_path, "--listen", &other]);
    second
        .connect(other.parse().unwrap())
        .await
        .login_guest("bob")
        .await;
    drop(second);
    let _ = std::fs::remove_dir_all(&data);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite3_shell_backs_up_the_database_of_a_running_server() {
    if Command::new("sqlite3").arg("-version").output().is_err() {
        println!("skipped: no sqlite3 shell on this machine");
        return;
    }
    let data = common::fresh_dir();
    let db = data.join("live.db");
    let (config, listen) = storage_config("backup", &db);
    let config_path = config.0.to_str().unwrap().to_string();
    let addr: SocketAddr = listen.parse().unwrap();
    let mut server = ServerProcess::spawn(&["--config", &config_path, "--listen", &listen]);
    let mut client = server.connect(addr).await;
    client.login_guest("ann").await;

    let copy = data.join("copy.db");
    let output = Command::new("sqlite3")
        .arg(&db)
        .arg(format!(".backup '{}'", copy.display()))
        .output()
        .expect("run sqlite3");
    assert!(
        output.status.success(),
        "sqlite3 .backup failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let check = Command::new("sqlite3")
        .arg(&copy)
        .arg("PRAGMA quick_check; SELECT count(*) FROM accounts;")
        .output()
        .expect("run sqlite3");
    assert_eq!(
        String::from_utf8_lossy(&check.stdout),
        "ok\n0\n",
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}

/// Runs the binary with `storage.path = db`; asserts exit code 2 and returns its one line.
fn refused_storage_path(tag: &str, db: &Path) -> String {
    let (config, listen) = storage_config(tag, db);
    let (code, stderr) =
        run_to_exit(&["--config", config.0.to_str().unwrap(), "--listen", &listen]);
    assert_eq!(code, Some(2), "stderr:\n{stderr}");
    one_line(&stderr).to_string()
}

#[cfg(target_os = "linux")]
#[test]
fn a_storage_path_in_proc_exits_2_saying_the_directory_allows_no_new_files() {
    let line = refused_storage_path("proc", Path::new("/proc/world-test.db"));
    assert_eq!(
        line,
        "world-server: storage.path \"/proc/world-test.db\": cannot create the database file: \
         \"/proc\" does not allow new files (No such file or directory (os error 2))"
    );
}

#[test]
fn a_storage_path_that_is_a_directory_exits_2_saying_so() {
    let dir = common::fresh_dir();
    let line = refused_storage_path("dir", &dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        line,
        format!(
            "world-server: storage.path {:?}: is a directory",
            dir.to_str().unwrap()
        )
    );
}

#[test]
fn a_storage_path_in_a_missing_directory_exits_2_naming_the_directory() {
    let dir = common::fresh_dir();
    let missing = dir.join("missing");
    let line = refused_storage_path("missing", &missing.join("world.db"));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        line,
        format!(
            "world-server: storage.path {:?}: parent directory {:?} does not exist",
            missing.join("world.db").to_str().unwrap(),
            missing.to_str().unwrap()
        )
    );
    assert!(!missing.exists(), "the directory is not created");
}

#[cfg(target_os = "linux")]
#[test]
fn a_storage_path_on_a_read_only_file_system_exits_2_with_the_system_s_reason() {
    let Some(mount) = common::Tmpfs::mount("ro,size=64k") else {
        println!("skipped: cannot mount a read-only tmpfs here (needs root)");
        return;
    };
    let db = mount.0.join("world.db");
    let line = refused_storage_path("ro", &db);
    assert_eq!(
        line,
        format!(
            "world-server: storage.path {:?}: cannot create the database file: \
             Read-only file system (os error 30)",
            db.to_str().unwrap()
        )
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_storage_path_in_sys_exits_2_with_the_system_s_reason() {
    // sysfs refuses new files, even to root: "Permission denied", or "Read-only file system"
    // where it is mounted read-only.
    let line = refused_storage_path("sys", Path::new("/sys/world-test.db"));
    let prefix =
        "world-server: storage.path \"/sys/world-test.db\": cannot create the database file: ";
    let reason = line
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        reason == "Permission denied (os error 13)"
            || reason == "Read-only file system (os error 30)",
        "{line}"
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_its_journals_and_the_log_file_are_readable_by_the_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let data = common::fresh_dir();
    let db = data.join("world.db");
    let log = data.join("logs").join("world-server.log");
    let config = TempConfig::new(
        "modes",
        &format!(
            "[storage]\npath = {:?}\n[log]\nfile = {:?}\n",
            db.to_str().unwrap(),
            log.to_str().unwrap()
        ),
    );
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let listen = addr.to_string();
    let config_path = config.0.to_str().unwrap().to_string();
    let mut server = ServerProcess::spawn(&["--config", &config_path, "--listen", &listen]);
    let mut client = server.connect(addr).await;
    client.login_guest("ann").await;
    client.join("lobby").await;

    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let mut lock = db.as_os_str().to_owned();
    lock.push(".lock");
    let mut files = vec![db.clone(), PathBuf::from(wal), PathBuf::from(lock), log];
    let mut shm = db.as_os_str().to_owned();
    shm.push("-shm");
    if Path::new(&shm).exists() {
        files.push(PathBuf::from(shm));
    }
    let modes: Vec<(String, u32)> = files
        .iter()
        .map(|file| {
            let meta = std::fs::metadata(file).unwrap_or_else(|e| {
                panic!("{}: {e}; stderr:\n{}", file.display(), server.stderr())
            });
            (
                file.display().to_string(),
                meta.permissions().mode() & 0o777,
            )
        })
        .collect();
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
    for (file, mode) in modes {
        assert_eq!(mode, 0o600, "{file} is {mode:o}");
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_open_at_a_sigkill_are_recorded_at_the_next_start() {
    let data = common::fresh_dir();
    let db = data.join("log.db");
    let config = TempConfig::new(
        "session-log",
        &format!("[storage]\npath = {:?}\n", db.to_str().unwrap()),
    );
    let config_path = config.0.to_str().unwrap().to_string();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let listen = addr.to_string();
    let mut server = ServerProcess::spawn(&["--listen", &listen, "--config", &config_path]);
    let mut ann = server.connect(addr).await;
    ann.login_guest("ann").await;
    let _anonymous = server.connect(addr).await;
    let gone = server.connect(addr).await;
    gone.close().await;
    // The log is written once per tick: give it a few.
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.signal("KILL");
    server.wait(Duration::from_secs(10)).await;
    drop(server);

    let mut server = ServerProcess::spawn(&["--listen", &listen, "--config", &config_path]);
    server.connect(addr).await;
    server.signal("TERM");
    assert!(server.wait(Duration::from_secs(10)).await.success());
    let stderr = server.stderr();
    assert!(
        stderr.contains("the last run stopped without closing 2 sessions"),
        "{stderr}"
    );
    drop(server);

    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: Vec<(i64, Option<String>, String)> = conn
        .prepare("SELECT session_id, username, reason FROM sessions ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let unclean = world_server::storage::UNCLEAN_STOP.to_string();
    assert_eq!(
        rows[..3],
        [
            (3, None, "peer closed".to_string()),
            (1, Some("ann".to_string()), unclean.clone()),
            (2, None, unclean),
        ],
        "{rows:?}"
    );
    let open: i64 = conn
        .query_row("SELECT count(*) FROM open_sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(open, 0, "the second run closed cleanly");
    drop(conn);
    let _ = std::fs::remove_dir_all(&data);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_and_tls_flags_serve_the_page_frames_and_wss_and_sighup_takes_a_new_certificate() {
    let dir = common::fresh_dir();
    let first = common::certs::self_signed(&dir, "first");
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    std::fs::copy(&first.cert, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    // Only SIGHUP reloads: no polling of the files.
    let config = TempConfig::new("tls", "[tls]\nreload_secs = 0\n[log]\nlevel = \"info\"\n");
    let listen = format!("127.0.0.1:{}", free_port());
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut server = ServerProcess::spawn(&[
        "--config",
        config.0.to_str().unwrap(),
        "--listen",
        &listen,
        "--web",
        &web.to_string(),
        "--tls-listen",
        &tls.to_string(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let mut plain = server.connect(listen.parse().unwrap()).await;
    plain.login_guest("plain").await;
    let page = common::http_get(web, "/").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/app.js"), "{}", page.body);
    let mut secure = TestClient::connect_tls(tls, &cert).await;
    secure.login_guest("secure").await;
    let mut socket = TestClient::connect_wss(tls, &cert).await;
    socket.login_guest("socket").await;
    let presented = |addr| async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let any = net::tls::client_config(&net::tls::Trust::Insecure).unwrap();
        let tls = common::tls_handshake(stream, Path::new(""), Some(any))
            .await
            .unwrap();
        tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    };
    assert_eq!(presented(tls).await, first.der);

    let second = common::certs::self_signed(&dir, "second");
    std::fs::copy(&second.cert, &cert).unwrap();
    std::fs::copy(&second.key, &key).unwrap();
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while presented(tls).await != second.der {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not bring the new certificate; stderr:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        server.stderr().contains("tls: new certificate"),
        "{}",
        server.stderr()
    );
    // The sessions made before go on, over each transport.
    for client in [&mut plain, &mut secure, &mut socket] {
        client.ping(3).await;
    }
    server.signal("TERM");
    let status = server.wait(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", server.stderr());
}

#[test]
fn a_certificate_that_cannot_serve_exits_2_in_one_line_naming_the_key() {
    let dir = common::fresh_dir();
    let good = common::certs::self_signed(&dir, "good");
    let missing = dir.join("missing.pem");
    let listen = format!("127.0.0.1:{}", free_port());
    let tls = format!("127.0.0.1:{}", free_port());
    let (code, stderr) = run_to_exit(&[
        "--listen",
        &listen,
        "--tls-listen",
        &tls,
        "--tls-cert",
        missing.to_str().unwrap(),
        "--tls-key",
        good.key.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "stderr:\n{stderr}");
    assert_eq!(
        one_line(&stderr),
        format!(
            "world-server: tls.cert {missing:?}: cannot read it: No such file or directory (os error 2)"
        )
    );
    // A TLS port without a certificate is a config error, before anything starts.
    let (code, stderr) = run_to_exit(&["--listen", &listen, "--tls-listen", &tls]);
    assert_eq!(code, Some(2), "stderr:\n{stderr}");
    assert_eq!(
        one_line(&stderr),
        "world-server: invalid config \"the command line\": tls.cert must be a PEM file when tls.listen is set (got \"\")"
    );
}

#[test]
fn a_web_port_in_use_exits_1_saying_what_to_do() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let web = taken.local_addr().unwrap().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let (code, stderr) = run_to_exit(&["--listen", &listen, "--web", &web]);
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    assert_eq!(
        one_line(&stderr),
        format!(
            "world-server: cannot listen on web.listen {web}: Address already in use (os error 98) (another server on this machine? give each its own: --web ADDR:PORT, or --web off)"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_is_taken_where_an_address_is_and_a_port_in_use_says_which_option_moves_it() {
    let port = free_port();
    let mut server = ServerProcess::spawn(&["--listen", &format!("localhost:{port}")]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut client = server.connect(addr).await;
    client.ping(1).await;
    // A second server on the same port: one line, and the option that gives it another.
    let (code, stderr) = run_to_exit(&["--listen", &addr.to_string()]);
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    assert_eq!(
        one_line(&stderr),
        format!(
            "world-server: cannot listen on server.listen {addr}: Address already in use (os error 98) (another server on this machine? give each its own: --listen ADDR:PORT)"
        )
    );
    let (code, stderr) = run_to_exit(&["--listen", "nowhere"]);
    assert_eq!(code, Some(2), "stderr:\n{stderr}");
    assert_eq!(
        one_line(&stderr),
        "world-server: --listen \"nowhere\" must be ADDR:PORT or HOST:PORT"
    );
}
