//! The client as a person uses it: the real binary in a terminal (a detached tmux session),
//! driven with `tmux send-keys` and read with `tmux capture-pane`, against a real server in
//! this process; other users are raw TCP clients that speak the wire format by hand.
//!
//! Where tmux is missing, each test says so in one line and passes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use config::ServerConfig;
use protocol::world::{
    C2sChat, C2sLogin, C2sRoomJoin, C2sRoomLeave, C2sWhisper, S2cChat, S2cRoomJoined, S2cWhisper,
};
use protocol::{MessageType, S2cMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// How long a test waits for the screen or a frame. Generous: a loaded two-core machine
/// must not make the suite flaky, and a passing test never waits this long.
const TIMEOUT: Duration = Duration::from_secs(30);

const BIN: &str = env!("CARGO_BIN_EXE_world-client");

// ---------------------------------------------------------------------------------------
// The server.

/// A new empty directory under the system's temporary directory, removed when dropped (a
/// failed test included).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "world-client-e2e-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The server's logs at `warn` unless `E2E_LOG` names another level: they go to the test's
/// output, not to the client's screen.
fn quiet_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let level = std::env::var("E2E_LOG").unwrap_or_else(|_| "warn".to_string());
        if let Err(error) =
            config::logging::init(&config::LogConfig::default(), Some(&level), "e2e")
        {
            eprintln!("cannot set up logging: {error}");
        }
    });
}

/// A free port on 127.0.0.1, for a listener the server binds itself (web, TLS).
fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    probe.local_addr().expect("local address").port()
}

/// The server's defaults, with its database in `dir`, cheap password hashing, and no web
/// port (tests that use WebSocket give it one of its own).
fn server_config(dir: &Path) -> ServerConfig {
    quiet_logs();
    let mut config = ServerConfig::default();
    config.web.listen = String::new();
    config.server.name = "tui-world".to_string();
    config.storage.path = dir.join("world.db");
    config.storage.synchronous = "normal".to_string();
    config.auth.argon2_memory_kib = 64;
    config.auth.argon2_iterations = 1;
    config.net.linger_ms = 300;
    config
}

/// A world server running in this process.
struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<world_server::Stats, world_server::ServerError>>>,
}

impl Server {
    async fn start(config: ServerConfig) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        Server::on(listener, config)
    }

    /// Binds `addr` again (a restart), waiting while the old socket lets it go.
    async fn restart(addr: SocketAddr, config: ServerConfig) -> Server {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match TcpListener::bind(addr).await {
                Ok(listener) => return Server::on(listener, config),
                Err(e) if Instant::now() < deadline => {
                    eprintln!("bind {addr} again: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot bind {addr} again: {e}"),
            }
        }
    }

    fn on(listener: TcpListener, config: ServerConfig) -> Server {
        let addr = listener.local_addr().expect("listener address");
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(world_server::run(listener, config, async move {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let handle = self.handle.take().expect("server handle");
        match tokio::time::timeout(TIMEOUT, handle).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(e))) => panic!("the server failed: {e}"),
            Ok(Err(e)) => panic!("the server panicked: {e}"),
            Err(_) => panic!("the server did not stop within {TIMEOUT:?}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Another user: a raw TCP client, frames built and parsed by hand.

struct Peer {
    name: String,
    stream: TcpStream,
    buf: BytesMut,
}

impl Peer {
    /// Connects and logs in as the guest `name`.
    async fn guest(addr: SocketAddr, name: &str) -> Peer {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut peer = Peer {
            name: name.to_string(),
            stream,
            buf: BytesMut::new(),
        };
        peer.send(&C2sLogin {
            username: name.to_string(),
            password: String::new(),
            ..Default::default()
        })
        .await;
        peer.recv_until(|m| matches!(m, S2cMessage::S2cAuthResult(_)))
            .await;
        peer
    }

    async fn send<M: MessageType>(&mut self, message: &M) {
        let frame = protocol::frame(message).expect("a frame");
        self.stream.write_all(&frame).await.expect("write");
    }

    async fn join(&mut self, room: &str) -> S2cRoomJoined {
        self.send(&C2sRoomJoin {
            room: room.into(),
            ..Default::default()
        })
        .await;
        match self
            .recv_until(|m| matches!(m, S2cMessage::S2cRoomJoined(j) if j.room == room))
            .await
        {
            S2cMessage::S2cRoomJoined(joined) => joined,
            _ => unreachable!(),
        }
    }

    async fn say(&mut self, room: &str, content: &str) {
        self.send(&C2sChat {
            room: room.into(),
            content: content.into(),
            sent_at_us: protocol::now_us(),
        })
        .await;
    }

    async fn whisper(&mut self, to: &str, content: &str) {
        self.send(&C2sWhisper {
            to: to.into(),
            content: content.into(),
            sent_at_us: protocol::now_us(),
        })
        .await;
    }

    async fn expect_chat(&mut self, room: &str, from: &str, content: &str) -> S2cChat {
        match self
            .recv_until(|m| {
                matches!(m, S2cMessage::S2cChat(c)
                    if c.room == room && c.from == from && c.content == content)
            })
            .await
        {
            S2cMessage::S2cChat(chat) => chat,
            _ => unreachable!(),
        }
    }

    async fn expect_whisper(&mut self, from: &str, content: &str) -> S2cWhisper {
        match self
            .recv_until(|m| {
                matches!(m, S2cMessage::S2cWhisper(w) if w.from == from && w.content == content)
            })
            .await
        {
            S2cMessage::S2cWhisper(whisper) => whisper,
            _ => unreachable!(),
        }
    }

    /// Reads until a message satisfies `predicate`; panics after [`TIMEOUT`] or on a close.
    async fn recv_until(&mut self, mut predicate: impl FnMut(&S2cMessage) -> bool) -> S2cMessage {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        let mut skipped = Vec::new();
        loop {
            while self.buf.len() >= 4 {
                let size = usize::from(u16::from_le_bytes([self.buf[0], self.buf[1]]));
                assert!(size >= 4, "{}: a frame of size {size}", self.name);
                if self.buf.len() < size {
                    break;
                }
                let mut frame = self.buf.split_to(size);
                let id = u16::from_le_bytes([frame[2], frame[3]]);
                frame.advance(4);
                let message = S2cMessage::decode(id, frame.freeze())
                    .unwrap_or_else(|e| panic!("{}: {e}", self.name));
                if predicate(&message) {
                    return message;
                }
                skipped.push(message);
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await;
            match read {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    panic!("{}: the connection closed; skipped {skipped:?}", self.name)
                }
                Ok(Ok(_)) => {}
                Err(_) => panic!(
                    "{}: the awaited message did not come within {TIMEOUT:?}; skipped {skipped:?}",
                    self.name
                ),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// A proxy between the client and the server, which the test cuts.

/// What the proxy does to the connections it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    /// Forwards both ways.
    Open,
    /// Closes both sides: a dropped connection, which both ends see end.
    Sever,
    /// Keeps both sides open and forwards nothing more: a stalled connection, which neither
    /// end sees end.
    Blackhole,
}

/// A TCP proxy on 127.0.0.1 to one upstream address: every connection it accepts is carried
/// to a connection of its own to the upstream, until [`Proxy::cut`].
struct Proxy {
    addr: SocketAddr,
    /// One sender per connection carried so far.
    links: Arc<Mutex<Vec<watch::Sender<Cut>>>>,
    /// While set, a connection accepted is closed at once.
    refusing: Arc<AtomicBool>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("listener address");
        let links = Arc::new(Mutex::new(Vec::new()));
        let refusing = Arc::new(AtomicBool::new(false));
        let accept = tokio::spawn({
            let links = Arc::clone(&links);
            let refusing = Arc::clone(&refusing);
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    if refusing.load(Ordering::Relaxed) {
                        continue;
                    }
                    // The upstream refusing is the client's connection refused: it is dropped.
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cut, cuts) = watch::channel(Cut::Open);
                    links.lock().expect("links").push(cut);
                    tokio::spawn(carry(client, server, cuts));
                }
            }
        });
        Proxy {
            addr,
            links,
            refusing,
            accept,
        }
    }

    /// Closes the connections accepted from now on at once (`true`), or carries them again.
    fn refuse(&self, refuse: bool) {
        self.refusing.store(refuse, Ordering::Relaxed);
    }

    /// Does `cut` to every connection carried now; those accepted later are carried whole.
    fn cut(&self, cut: Cut) {
        for link in self.links.lock().expect("links").iter() {
            // A connection that ended has no receiver left.
            let _ = link.send(cut);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut(Cut::Sever);
    }
}

/// Carries bytes between `client` and `server` until either closes or the proxy severs them;
/// after a blackhole, reads both and forwards nothing.
async fn carry(mut client: TcpStream, mut server: TcpStream, mut cuts: watch::Receiver<Cut>) {
    let (mut up, mut down) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let mut forward = true;
    loop {
        tokio::select! {
            read = client.read(&mut up) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) if forward => {
                    if server.write_all(&up[..n]).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
            },
            read = server.read(&mut down) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) if forward => {
                    if client.write_all(&down[..n]).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
            },
            changed = cuts.changed() => {
                if changed.is_err() {
                    return;
                }
                let cut = *cuts.borrow_and_update();
                match cut {
                    Cut::Open => {}
                    Cut::Sever => return,
                    Cut::Blackhole => forward = false,
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The client, in tmux.

/// Whether tmux runs here; if not, says the test is skipped, in one line past the capture.
fn have_tmux(test: &str) -> bool {
    let ok = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipped {test}: needs tmux (apt-get install tmux)"
        );
    }
    ok
}

/// A tmux server of its own (its own socket) running the client in a 120 × 40 window.
struct Tmux {
    socket: String,
    /// The socket's file, which the tmux server leaves behind.
    socket_path: Option<PathBuf>,
}

impl Tmux {
    /// Runs `world-client ARGS` in a new detached session; when the client exits, the pane
    /// says `world-client exited CODE` and stays.
    fn start(name: &str, args: &[String]) -> Tmux {
        let socket = format!("world-client-test-{}-{name}", std::process::id());
        let mut tmux = Tmux {
            socket,
            socket_path: None,
        };
        let _ = tmux.command(&["kill-server"]).output();
        let quoted: Vec<String> = std::iter::once(BIN.to_string())
            .chain(args.iter().cloned())
            .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
            .collect();
        let script = format!(
            "{}; echo \"world-client exited $?\"; sleep 600",
            quoted.join(" ")
        );
        let status = tmux
            .command(&[
                "new-session",
                "-d",
                "-s",
                "main",
                "-x",
                "120",
                "-y",
                "40",
                "sh",
                "-c",
                &script,
            ])
            .env("TERM", "xterm-256color")
            .status()
            .expect("run tmux");
        assert!(status.success(), "tmux new-session failed: {status}");
        let path = tmux
            .command(&["display-message", "-p", "#{socket_path}"])
            .output()
            .expect("tmux display-message");
        let path = String::from_utf8_lossy(&path.stdout).trim().to_string();
        tmux.socket_path = (!path.is_empty()).then(|| PathBuf::from(path));
        tmux
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("tmux");
        command
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args);
        command
    }

    /// Runs the client again in a new window of the same tmux server, which is shown.
    fn restart_client(&self, args: &[String]) {
        let quoted: Vec<String> = std::iter::once(BIN.to_string())
            .chain(args.iter().cloned())
            .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
            .collect();
        let script = format!(
            "{}; echo \"world-client exited $?\"; sleep 600",
            quoted.join(" ")
        );
        // The new session first, then the old one goes: killing the server's only session
        // would end the server, and a new session started meanwhile could meet it dying.
        let status = self
            .command(&[
                "new-session",
                "-d",
                "-s",
                "next",
                "-x",
                "120",
                "-y",
                "40",
                "sh",
                "-c",
                &script,
            ])
            .env("TERM", "xterm-256color")
            .status()
            .expect("run tmux");
        assert!(status.success(), "tmux new-session failed: {status}");
        let killed = self.command(&["kill-session", "-t", "main"]).status();
        assert!(
            killed.is_ok_and(|s| s.success()),
            "tmux kill-session failed"
        );
        let renamed = self
            .command(&["rename-session", "-t", "next", "main"])
            .status();
        assert!(
            renamed.is_ok_and(|s| s.success()),
            "tmux rename-session failed"
        );
    }

    /// Types `text` literally.
    fn type_text(&self, text: &str) {
        let status = self
            .command(&["send-keys", "-t", "main", "-l", text])
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    /// Presses a key by tmux's name for it (`Enter`, `C-c`, `PageUp`).
    fn key(&self, key: &str) {
        let status = self
            .command(&["send-keys", "-t", "main", key])
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    /// Types `text` and presses Enter.
    fn line(&self, text: &str) {
        self.type_text(text);
        self.key("Enter");
    }

    /// What the window shows now.
    fn screen(&self) -> String {
        let output = self
            .command(&["capture-pane", "-p", "-t", "main"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits until the window shows `text`; returns the screen. Panics after [`TIMEOUT`],
    /// showing the screen.
    async fn wait_for(&self, text: &str) -> String {
        self.wait_until(text, |screen| screen.contains(text)).await
    }

    async fn wait_until(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("the screen did not show {what:?} within {TIMEOUT:?}:\n{screen}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The status line (the second row from the bottom of the client's screen).
    fn status_line(&self) -> String {
        let screen = self.screen();
        let rows: Vec<&str> = screen.lines().collect();
        rows.iter()
            .rev()
            .find(|row| row.contains(" | "))
            .map(|row| row.to_string())
            .unwrap_or_default()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command(&["kill-server"]).output();
        if let Some(path) = &self.socket_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_joins_chats_both_ways_whispers_lists_rooms_and_reads_errors_over_tcp() {
    let test = "a_guest_joins_chats_both_ways_whispers_lists_rooms_and_reads_errors_over_tcp";
    if !have_tmux(test) {
        return;
    }
    let dir = TempDir::new("guest");
    let mut config = server_config(&dir);
    config.world.max_rooms_per_session = 2;
    let server = Server::start(config).await;
    let url = format!("tcp://{}", server.addr);

    let mut bob = Peer::guest(server.addr, "bob").await;
    bob.join("lobby").await;
    bob.say("lobby", "said before ann came").await;
    bob.expect_chat("lobby", "bob", "said before ann came")
        .await;

    let config_dir = dir.join("config");
    let tmux = Tmux::start(
        "guest",
        &args(&[
            &url,
            "--config-dir",
            config_dir.to_str().unwrap(),
            "--guest",
            "ann",
        ]),
    );
    tmux.wait_for(&format!("{url} | tcp | ann (guest) | online"))
        .await;

    // Joining: the tab, the replayed history (marked), the members.
    tmux.line("/join lobby");
    let screen = tmux.wait_for("said before ann came").await;
    assert!(screen.contains("#lobby"), "{screen}");
    assert!(screen.contains("[history]"), "{screen}");
    tmux.wait_for("members 2/100").await;
    bob.recv_until(
        |m| matches!(m, S2cMessage::S2cRoomPresence(p) if p.username == "ann" && p.joined),
    )
    .await;

    // Chat both ways.
    bob.say("lobby", "hi ann, bob here").await;
    tmux.wait_for("<bob> hi ann, bob here").await;
    tmux.line("hello bob, from ann");
    bob.expect_chat("lobby", "ann", "hello bob, from ann").await;
    tmux.wait_for("<ann> hello bob, from ann").await;

    // Whispers both ways, the echo shown.
    tmux.line("/w bob a secret for bob");
    bob.expect_whisper("ann", "a secret for bob").await;
    tmux.wait_for("[whisper to bob] a secret for bob").await;
    bob.whisper("ann", "a secret for ann").await;
    tmux.wait_for("[whisper from bob] a secret for ann").await;

    // The room list.
    tmux.line("/rooms");
    tmux.wait_for("1 room with members:").await;
    tmux.wait_for("2 of 100 members  (you are in)").await;

    // Errors in words, with the server's reason.
    tmux.line("/join bad!room");
    tmux.wait_for("Join failed: the server refused the request as invalid (server: room name")
        .await;
    tmux.line("/join second");
    tmux.wait_for("You joined #second").await;
    tmux.line("/join third");
    tmux.wait_for("(server: already in 2 rooms").await;
    tmux.line("/w nobody-here hello?");
    tmux.wait_for("Whisper failed: nobody is logged in with that name")
        .await;

    // Presence in a room that is not shown, then shown.
    bob.send(&C2sRoomLeave {
        room: "lobby".into(),
    })
    .await;
    tmux.line("/room lobby");
    tmux.wait_for("<-- bob left").await;
    tmux.wait_for("members 1/100").await;

    tmux.line("/help");
    tmux.wait_for("/register NAME").await;

    // A login to the same name elsewhere replaces this one: said, and no reconnect.
    let _other_ann = Peer::guest(server.addr, "ann").await;
    tmux.wait_for("You logged in from somewhere else").await;
    tmux.wait_for("| offline: Replaced by a login from somewhere else")
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        tmux.status_line().contains("| offline: "),
        "{}",
        tmux.screen()
    );

    tmux.line("/quit");
    tmux.wait_for("world-client exited 0").await;
    drop(tmux);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_registers_logs_out_logs_in_with_its_password_and_resumes_at_the_next_start() {
    let test =
        "an_account_registers_logs_out_logs_in_with_its_password_and_resumes_at_the_next_start";
    if !have_tmux(test) {
        return;
    }
    let dir = TempDir::new("account");
    let server = Server::start(server_config(&dir)).await;
    let url = format!("tcp://{}", server.addr);
    let config_dir = dir.join("config");
    let client_args = args(&[&url, "--config-dir", config_dir.to_str().unwrap()]);
    let tmux = Tmux::start("account", &client_args);
    tmux.wait_for("| not logged in | online").await;

    // Register: the password asked twice, masked.
    tmux.line("/register carol");
    tmux.wait_for("new password for carol:").await;
    tmux.type_text("correct-horse");
    tmux.wait_for("new password for carol: *************").await;
    tmux.key("Enter");
    tmux.wait_for("the password for carol again:").await;
    tmux.line("correct-horse");
    let screen = tmux.wait_for("| carol | online").await;
    assert!(!screen.contains("correct-horse"), "{screen}");

    // The token is saved, owner-only, under the server's URL.
    let tokens = config_dir.join("tokens.toml");
    let text = std::fs::read_to_string(&tokens).expect("the tokens file");
    assert!(text.contains(&format!("[servers.\"{url}\"]")), "{text}");
    assert!(text.contains("username = \"carol\""), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&tokens), 0o600);
        assert_eq!(mode(&config_dir), 0o700);
    }

    // Logout forgets it.
    tmux.line("/logout");
    tmux.wait_for("Logged out carol").await;
    tmux.wait_for("| not logged in | online").await;
    let text = std::fs::read_to_string(&tokens).expect("the tokens file");
    assert!(!text.contains("carol"), "{text}");

    // A wrong password, in words; then the right one.
    tmux.line("/login carol");
    tmux.wait_for("password for carol:").await;
    tmux.line("wrong-password");
    tmux.wait_for("Login failed: wrong username or password")
        .await;
    tmux.line("/login carol");
    tmux.wait_for("password for carol:").await;
    tmux.line("correct-horse");
    tmux.wait_for("| carol | online").await;
    let text = std::fs::read_to_string(&tokens).expect("the tokens file");
    assert!(text.contains("username = \"carol\""), "{text}");
    tmux.line("/quit");
    tmux.wait_for("world-client exited 0").await;

    // The next start resumes with the token, no password asked.
    tmux.restart_client(&client_args);
    tmux.wait_for("Logged in as carol.").await;
    tmux.wait_for("| carol | online").await;
    tmux.key("C-c");
    tmux.wait_for("world-client exited 0").await;
    drop(tmux);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_server_restart_the_client_reconnects_resumes_and_is_back_in_its_room() {
    let test = "after_a_server_restart_the_client_reconnects_resumes_and_is_back_in_its_room";
    if !have_tmux(test) {
        return;
    }
    let dir = TempDir::new("restart");
    let server = Server::start(server_config(&dir)).await;
    let addr = server.addr;
    let url = format!("tcp://{addr}");
    let config_dir = dir.join("config");
    let tmux = Tmux::start(
        "restart",
        &args(&[&url, "--config-dir", config_dir.to_str().unwrap()]),
    );
    tmux.wait_for("| not logged in | online").await;
    tmux.line("/register dave");
    tmux.wait_for("new password for dave:").await;
    tmux.line("dave-password");
    tmux.wait_for("the password for dave again:").await;
    tmux.line("dave-password");
    tmux.wait_for("| dave | online").await;
    tmux.line("/join lobby");
    tmux.wait_for("You joined #lobby").await;

    server.stop().await;
    tmux.wait_until("a reconnect under way", |s| {
        s.contains("disconnected: reconnecting in") || s.contains("connecting again (attempt")
    })
    .await;
    assert!(
        tmux.status_line().contains("not logged in"),
        "{}",
        tmux.screen()
    );

    let server = Server::restart(addr, server_config(&dir)).await;
    tmux.wait_for("Back in #lobby").await;
    tmux.wait_for("| dave | online").await;
    let mut eve = Peer::guest(addr, "eve").await;
    let joined = eve.join("lobby").await;
    assert!(joined.members.contains(&"dave".to_string()), "{joined:?}");
    eve.say("lobby", "welcome back, dave").await;
    tmux.wait_for("<eve> welcome back, dave").await;
    tmux.line("thanks eve");
    eve.expect_chat("lobby", "dave", "thanks eve").await;

    tmux.line("/quit");
    tmux.wait_for("world-client exited 0").await;
    drop(tmux);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_chats_over_websocket() {
    let test = "a_guest_chats_over_websocket";
    if !have_tmux(test) {
        return;
    }
    let dir = TempDir::new("ws");
    let mut config = server_config(&dir);
    let web = format!("127.0.0.1:{}", free_port());
    config.web.listen = web.clone();
    let server = Server::start(config).await;
    let url = format!("ws://{web}/ws");
    let config_dir = dir.join("config");
    let tmux = Tmux::start(
        "ws",
        &args(&[
            &url,
            "--config-dir",
            config_dir.to_str().unwrap(),
            "--guest",
            "erin",
        ]),
    );
    tmux.wait_for(&format!("{url} | ws | erin (guest) | online"))
        .await;
    tmux.line("/join lobby");
    tmux.wait_for("You joined #lobby").await;
    let mut frank = Peer::guest(server.addr, "frank").await;
    frank.join("lobby").await;
    tmux.wait_for("--> frank joined").await;
    frank.say("lobby", "hi erin, over tcp").await;
    tmux.wait_for("<frank> hi erin, over tcp").await;
    tmux.line("hi frank, over websocket");
    frank
        .expect_chat("lobby", "erin", "hi frank, over websocket")
        .await;
    tmux.line("/w frank whispered over websocket");
    frank
        .expect_whisper("erin", "whispered over websocket")
        .await;
    tmux.line("/quit");
    tmux.wait_for("world-client exited 0").await;
    drop(tmux);
    server.stop().await;
}

/// Reads until `ann` says `last` in `lobby`, adding every line `ann` says there to `said`.
async fn ann_says(bob: &mut Peer, said: &mut Vec<String>, last: &str) {
    bob.recv_until(|m| match m {
        S2cMessage::S2cChat(c) if c.room == "lobby" && c.from == "ann" => {
            said.push(c.content.clone());
            c.content == last
        }
        _ => false,
    })
    .await;
}

/// Ann in the terminal client, reaching the server through a proxy the test cuts, and Bob
/// straight to it, both in the lobby.
struct Cuttable {
    server: Server,
    proxy: Proxy,
    bob: Peer,
    tmux: Tmux,
    _dir: TempDir,
}

/// [`Cuttable`], on a server of `change`d settings; `name` names the tmux session and the
/// directory.
async fn ann_through_a_proxy(name: &str, change: impl FnOnce(&mut ServerConfig)) -> Cuttable {
    let dir = TempDir::new(name);
    let mut config = server_config(&dir);
    change(&mut config);
    let server = Server::start(config).await;
    let proxy = Proxy::start(server.addr).await;
    let url = format!("tcp://{}", proxy.addr);
    let mut bob = Peer::guest(server.addr, "bob").await;
    bob.join("lobby").await;
    let config_dir = dir.join("config");
    let tmux = Tmux::start(
        name,
        &args(&[
            &url,
            "--config-dir",
            config_dir.to_str().unwrap(),
            "--guest",
            "ann",
        ]),
    );
    tmux.wait_for(&format!("{url} | tcp | ann (guest) | online"))
        .await;
    tmux.line("/join lobby");
    tmux.wait_for("You joined #lobby").await;
    Cuttable {
        server,
        proxy,
        bob,
        tmux,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_or_stalled_connection_is_resumed_with_every_line_once_both_ways() {
    let test = "a_dropped_or_stalled_connection_is_resumed_with_every_line_once_both_ways";
    if !have_tmux(test) {
        return;
    }
    let Cuttable {
        server,
        proxy,
        mut bob,
        tmux,
        _dir,
    } = ann_through_a_proxy("resume", |_| {}).await;
    bob.recv_until(
        |m| matches!(m, S2cMessage::S2cRoomPresence(p) if p.username == "ann" && p.joined),
    )
    .await;
    let mut said = Vec::new();
    bob.say("lobby", "before the cut").await;
    tmux.wait_for("<bob> before the cut").await;
    tmux.line("ann before the cut");
    ann_says(&mut bob, &mut said, "ann before the cut").await;

    // Dropped: both ends see the connection end. Bob goes on talking, and Ann types a line
    // while (or just before) her client notices.
    proxy.cut(Cut::Sever);
    bob.say("lobby", "said while ann was away, one").await;
    tmux.line("ann typed around the cut");
    bob.say("lobby", "said while ann was away, two").await;
    tmux.wait_for("Reconnected;").await;
    ann_says(&mut bob, &mut said, "ann typed around the cut").await;
    tmux.wait_for("<bob> said while ann was away, two").await;

    // Stalled: nothing passes and nothing ends; the client finds out by its unanswered ping.
    proxy.cut(Cut::Blackhole);
    tmux.line("ann typed into a stall");
    bob.say("lobby", "said during the stall").await;
    tmux.wait_for("No answer from the server for 5 s").await;
    tmux.wait_until("the second resume", |s| {
        s.matches("Reconnected;").count() >= 2
    })
    .await;
    ann_says(&mut bob, &mut said, "ann typed into a stall").await;
    tmux.wait_for("<bob> said during the stall").await;

    // Every line once, both ways: Ann's, as Bob got them up to her last...
    tmux.line("ann after it all");
    ann_says(&mut bob, &mut said, "ann after it all").await;
    assert_eq!(
        said,
        [
            "ann before the cut",
            "ann typed around the cut",
            "ann typed into a stall",
            "ann after it all"
        ]
    );
    // ...and Bob's (and Ann's echoes) on Ann's screen, with no room joined again.
    bob.say("lobby", "the end").await;
    let screen = tmux.wait_for("<bob> the end").await;
    for line in [
        "<bob> before the cut",
        "<bob> said while ann was away, one",
        "<bob> said while ann was away, two",
        "<bob> said during the stall",
        "<ann> ann before the cut",
        "<ann> ann typed around the cut",
        "<ann> ann typed into a stall",
        "<ann> ann after it all",
    ] {
        assert_eq!(screen.matches(line).count(), 1, "{line:?}:\n{screen}");
    }
    assert!(!screen.contains("Back in #lobby"), "{screen}");
    assert!(!screen.contains("may have been missed"), "{screen}");
    assert!(!screen.contains("[history]"), "{screen}");
    assert!(
        tmux.status_line().contains("ann (guest) | online"),
        "{screen}"
    );

    tmux.line("/quit");
    tmux.wait_for("world-client exited 0").await;
    drop(tmux);
    drop(proxy);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_the_server_no_longer_has_is_logged_in_again_and_says_lines_may_be_missed() {
    let test = "a_session_the_server_no_longer_has_is_logged_in_again_and_says_lines_may_be_missed";
    if !have_tmux(test) {
        return;
    }
    let Cuttable {
        server,
        proxy,
        mut bob,
        tmux,
        _dir,
    } = ann_through_a_proxy("resume-lost", |c| c.net.resume_grace_secs = 1).await;
    // Away for longer than the server's grace window: the session ends there meanwhile.
    proxy.refuse(true);
    proxy.cut(Cut::Sever);
    bob.say("lobby", "said while ann was gone").await;
    tmux.wait_for("Disconnected:").await;
    tmux.line("ann typed while cut off");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    proxy.refuse(false);
    tmux.wait_for("some lines may have been missed").await;
    tmux.wait_for("Back in #lobby").await;
    // The room's history brings the line back; what Ann typed goes once she is back in.
    tmux.wait_for("said while ann was gone").await;
    tmux.wait_for("| ann (guest) | online").await;
    bob.expect_chat("lobby", "ann", "ann typed while cut off")
        .await;
    tmux.line("ann is back");
    bob.expect_chat("lobby", "ann", "ann is back").await;

    tmux.line("/quit");
    tmux.wait_for("world-client exited 0").await;
    drop(tmux);
    drop(proxy);
    server.stop().await;
}

/// A self-signed certificate for `localhost` and 127.0.0.1, as PEM files in `dir`.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("certificate parameters");
    let key = rcgen::KeyPair::generate().expect("a key pair");
    let cert = params.self_signed(&key).expect("a self-signed certificate");
    let paths = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&paths.0, cert.pem()).expect("write the certificate");
    std::fs::write(&paths.1, key.serialize_pem()).expect("write the key");
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_trusted_certificate_connects_and_an_untrusted_one_is_said_in_words() {
    let test = "over_tls_a_trusted_certificate_connects_and_an_untrusted_one_is_said_in_words";
    if !have_tmux(test) {
        return;
    }
    let dir = TempDir::new("tls");
    let (cert, key) = self_signed(&dir);
    let tls_port = free_port();
    let mut config = server_config(&dir);
    config.tls.listen = format!("127.0.0.1:{tls_port}");
    config.tls.cert = cert.clone();
    config.tls.key = key;
    let server = Server::start(config).await;
    let config_dir = dir.join("config");

    let url = format!("wss://127.0.0.1:{tls_port}/ws");
    let tmux = Tmux::start(
        "tls",
        &args(&[
            &url,
            "--ca",
            cert.to_str().unwrap(),
            "--config-dir",
            config_dir.to_str().unwrap(),
            "--guest",
            "gil",
        ]),
    );
    tmux.wait_for(&format!("{url} | wss | gil (guest) | online"))
        .await;
    tmux.line("/join lobby");
    tmux.wait_for("You joined #lobby").await;
    let mut hal = Peer::guest(server.addr, "hal").await;
    hal.join("lobby").await;
    tmux.line("hello over wss");
    hal.expect_chat("lobby", "gil", "hello over wss").await;
    tmux.line("/quit");
    tmux.wait_for("world-client exited 0").await;

    // Without --ca, the self-signed certificate is refused, and said so; no retry.
    let url = format!("tls://localhost:{tls_port}");
    tmux.restart_client(&args(&[&url, "--config-dir", config_dir.to_str().unwrap()]));
    tmux.wait_for("certificate is not trusted").await;
    tmux.wait_for("offline: the certificate is not trusted")
        .await;
    tmux.line("/quit");
    tmux.wait_for("world-client exited 0").await;

    // tls:// to the plain port: the TLS handshake fails, in words.
    let url = format!("tls://127.0.0.1:{}", server.addr.port());
    tmux.restart_client(&args(&[
        &url,
        "--insecure",
        "--config-dir",
        config_dir.to_str().unwrap(),
    ]));
    tmux.wait_for("is this the server's TLS port?").await;
    tmux.line("/quit");
    tmux.wait_for("world-client exited 0").await;
    drop(tmux);
    server.stop().await;
}

#[test]
fn a_bad_argument_is_one_line_naming_it_and_exit_2() {
    for (args, expected) in [
        (
            &["ftp://x:1"][..],
            "world-client: URL \"ftp://x:1\": must start with",
        ),
        (
            &["--guest", "a b"][..],
            "world-client: --guest \"a b\": a username is 3-32",
        ),
        (
            &["--bogus"][..],
            "world-client: unexpected argument '--bogus'",
        ),
        (
            &["tls://localhost:7443", "--ca", "/nonexistent/ca.pem"][..],
            "world-client: --ca \"/nonexistent/ca.pem\":",
        ),
    ] {
        let output = Command::new(BIN)
            .args(args)
            .output()
            .expect("run world-client");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
}
