//! Helpers of the end-to-end tests: an in-process server on `127.0.0.1:0`, and a test client
//! over a raw `TcpStream` that speaks the wire format of `PROTOCOL.md` by hand (framing with
//! `protocol::encode_frame`, decoding with `S2cMessage::decode`), so that the tests check the
//! server against the contract and not against the server's own client code.
#![allow(dead_code)]

pub mod certs;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, BytesMut};
use config::ServerConfig;
use protocol::world::{
    C2sChat, C2sLogin, C2sPing, C2sRoomJoin, C2sRoomList, S2cAuthResult, S2cChat, S2cError,
    S2cPong, S2cRoomJoined, S2cRoomList, S2cWelcome,
};
use protocol::{ClientToServer, ErrorCode, S2cMessage, ServerToClient, HEADER_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use world_server::{ServerError, Stats};

/// How long a test waits for a frame (or for a close) before it fails. Generous, so that a
/// loaded two-core machine does not make the suite flaky; a passing test never waits this long.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `run` may take to return after its shutdown future completes.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// A server config for tests: a short tick (the suite is fast), a short linger, no web port
/// (many servers run at once), defaults otherwise. Tests change what they exercise.
///
/// The database is a file of its own in a fresh temporary directory (removed when the
/// [`TestServer`] is dropped), so that no test sees another's accounts or history; password
/// hashing is made cheap (the cost is the server's business, not these tests').
pub fn test_config() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.server.name = "e2e-world".to_string();
    config.server.tick_ms = 5;
    config.net.linger_ms = 500;
    // No web port: tests that need one take a free port ([`with_web`]).
    config.web.listen = String::new();
    config.storage.path = fresh_dir().join("world.db");
    config.storage.synchronous = "normal".to_string();
    config.auth.argon2_memory_kib = 64;
    config.auth.argon2_iterations = 1;
    config
}

/// Gives `config` a web port on a free port of 127.0.0.1, and returns its address.
pub fn with_web(config: &mut ServerConfig) -> SocketAddr {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    config.web.listen = addr.to_string();
    addr
}

/// A new empty directory under the system's temporary directory, unique in this process.
pub fn fresh_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static SWEPT: std::sync::Once = std::sync::Once::new();
    // Not every test removes its directory: those of test processes that are gone are.
    SWEPT.call_once(|| {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix("world-e2e-")
                .and_then(|rest| rest.split('-').next());
            if pid.is_some_and(|pid| !Path::new("/proc").join(pid).exists()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    });
    let dir = std::env::temp_dir().join(format!(
        "world-e2e-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

/// Installs the process's logger once, at `warn` unless `E2E_LOG` names another level
/// (`E2E_LOG=info cargo test ...` shows every connect and disconnect).
pub fn quiet_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let level = std::env::var("E2E_LOG").unwrap_or_else(|_| "warn".to_string());
        let log = config::LogConfig::default();
        if let Err(error) = config::logging::init(&log, Some(&level), "e2e") {
            eprintln!("e2e: cannot set up logging: {error}");
        }
    });
}

/// A world server running in this process on an ephemeral port.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its web port (the page, WebSocket), when it has one.
    pub web: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<Stats, ServerError>>>,
    /// The temporary directory of its database, removed on drop.
    db_dir: Option<PathBuf>,
}

/// Waits until something listens on `addr` (a port the server binds itself).
pub async fn wait_for_port(addr: SocketAddr) {
    let deadline = Instant::now() + RECV_TIMEOUT;
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A server of `config` with its admin listener on a free port of 127.0.0.1.
pub async fn server_with_admin_and(mut config: config::ServerConfig) -> (TestServer, SocketAddr) {
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    config.admin.listen = admin.to_string();
    let server = start_server(config).await;
    // The listener is bound before the game port is announced, but the test got the game
    // port from its own bind: wait for the admin one.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(admin).await.is_err() {
        assert!(Instant::now() < deadline, "no admin listener on {admin}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (server, admin)
}

/// Binds `127.0.0.1:0` and spawns `world_server::run` on it; the server stops on
/// [`TestServer::shutdown`] (or when the handle is dropped).
pub async fn start_server(config: ServerConfig) -> TestServer {
    quiet_logs();
    let listener = net::listen("127.0.0.1:0".parse().unwrap()).expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("listener address");
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async move {
        // A dropped sender stops the server too.
        let _ = stopped.await;
    };
    let db_dir = config
        .storage
        .path
        .parent()
        .filter(|dir| dir.starts_with(std::env::temp_dir()))
        .map(PathBuf::from);
    let web = config.web.address();
    let handle = tokio::spawn(world_server::run(listener, config, shutdown));
    if let Some(web) = web {
        wait_for_port(web).await;
    }
    TestServer {
        addr,
        web,
        stop: Some(stop),
        handle: Some(handle),
        db_dir,
    }
}

impl TestServer {
    /// Completes the shutdown future and waits for `run` to return; panics when it fails or
    /// takes longer than [`SHUTDOWN_TIMEOUT`].
    pub async fn shutdown(mut self) -> Stats {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let handle = self.handle.take().expect("server handle");
        match tokio::time::timeout(SHUTDOWN_TIMEOUT, handle).await {
            Ok(Ok(Ok(stats))) => stats,
            Ok(Ok(Err(error))) => panic!("world_server::run returned an error: {error}"),
            Ok(Err(join)) => panic!("the server task panicked or was cancelled: {join}"),
            Err(_) => {
                panic!("world_server::run did not return within {SHUTDOWN_TIMEOUT:?} of shutdown")
            }
        }
    }

    /// Like [`shutdown`](Self::shutdown), but leaves the database in place for a server
    /// started next with the same config (which then owns it).
    pub async fn shutdown_keeping_db(mut self) -> Stats {
        self.db_dir = None;
        self.shutdown().await
    }

    /// A new client, connected, that has read its welcome.
    pub async fn client(&self) -> TestClient {
        TestClient::connect(self.addr).await
    }

    /// A new client logged in as the guest `name`.
    pub async fn guest(&self, name: &str) -> TestClient {
        let mut client = self.client().await;
        client.login_guest(name).await;
        client
    }

    /// A new client logged in as the guest `name` and in `room`.
    pub async fn member(&self, name: &str, room: &str) -> TestClient {
        let mut client = self.guest(name).await;
        client.join(room).await;
        client
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(dir) = self.db_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// How a read of the stream ended when it did not deliver a frame.
#[derive(Debug)]
pub enum Closed {
    /// Orderly end of stream (FIN).
    Eof,
    /// The connection was reset or otherwise failed.
    Error(io::Error),
}

/// The connection of a [`TestClient`]: TCP, or TLS over TCP.
enum Io {
    Tcp(TcpStream),
    Tls(Box<net::tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Io {
    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Io::Tcp(stream) => stream.write_all(bytes).await,
            Io::Tls(stream) => {
                stream.write_all(bytes).await?;
                stream.flush().await
            }
        }
    }

    async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Io::Tcp(stream) => stream.read_buf(buf).await,
            Io::Tls(stream) => stream.read_buf(buf).await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Io::Tcp(stream) => stream.shutdown().await,
            Io::Tls(stream) => stream.shutdown().await,
        }
    }
}

/// How a WebSocket connection of a [`TestClient`] ended, and what it was reading.
#[derive(Debug, Default)]
pub struct WsState {
    /// Bytes read from the socket, not yet taken apart into WebSocket frames.
    raw: BytesMut,
    /// The server's close frame: its code and reason.
    pub close: Option<(u16, String)>,
    /// The payloads of the pongs the server sent.
    pub pongs: Vec<Vec<u8>>,
}

/// A client of frames written and read by hand from the wire contract, over a raw TCP
/// stream, TLS, or a WebSocket (each frame sent in a binary message of its own, masked; the
/// server's messages taken apart by hand, RFC 6455), so that the tests check the server
/// against the contract and not against its own code.
pub struct TestClient {
    stream: Io,
    buf: BytesMut,
    /// The WebSocket state, when connected over WebSocket.
    pub ws: Option<WsState>,
    /// The S2C_Welcome this connection started with (default when connected raw).
    pub welcome: S2cWelcome,
    /// The username once logged in.
    pub name: String,
}

impl TestClient {
    /// Connects and reads the first frame, which must be S2C_Welcome.
    pub async fn connect(addr: SocketAddr) -> TestClient {
        let mut client = TestClient::connect_raw(addr).await;
        client.welcome = client.expect::<S2cWelcome>().await;
        client
    }

    /// Connects and reads the welcome; a refused connect is an error (for polling a server
    /// that is still starting).
    pub async fn try_connect(addr: SocketAddr) -> io::Result<TestClient> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut client = TestClient::from_stream(stream);
        client.welcome = client.expect::<S2cWelcome>().await;
        Ok(client)
    }

    /// Connects without reading anything.
    pub async fn connect_raw(addr: SocketAddr) -> TestClient {
        let stream = tokio::time::timeout(RECV_TIMEOUT, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connect to {addr} timed out"))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_nodelay(true).expect("set_nodelay");
        TestClient::from_stream(stream)
    }

    /// Connects from the local address `source` (any of 127.0.0.0/8 plays a client host of
    /// its own) without reading anything.
    pub async fn connect_raw_from(addr: SocketAddr, source: std::net::IpAddr) -> TestClient {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(source, 0))
            .unwrap_or_else(|e| panic!("bind {source}: {e}"));
        let stream = tokio::time::timeout(RECV_TIMEOUT, socket.connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connect to {addr} timed out"))
            .unwrap_or_else(|e| panic!("connect to {addr} from {source}: {e}"));
        stream.set_nodelay(true).expect("set_nodelay");
        TestClient::from_stream(stream)
    }

    /// Connects from `source` and reads the welcome.
    pub async fn connect_from(addr: SocketAddr, source: std::net::IpAddr) -> TestClient {
        let mut client = TestClient::connect_raw_from(addr, source).await;
        client.welcome = client.expect::<S2cWelcome>().await;
        client
    }

    /// Connects with a small socket receive buffer (so that a client that stops reading makes
    /// the server's writes back up quickly), and reads the welcome.
    pub async fn connect_with_recv_buffer(addr: SocketAddr, bytes: u32) -> TestClient {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        let stream = tokio::time::timeout(RECV_TIMEOUT, socket.connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connect to {addr} timed out"))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_nodelay(true).expect("set_nodelay");
        let mut client = TestClient::from_stream(stream);
        client.welcome = client.expect::<S2cWelcome>().await;
        client
    }

    fn from_stream(stream: TcpStream) -> TestClient {
        TestClient {
            stream: Io::Tcp(stream),
            buf: BytesMut::with_capacity(16 * 1024),
            ws: None,
            welcome: S2cWelcome::default(),
            name: String::new(),
        }
    }

    /// Connects to the TLS port `addr`, trusting the certificate in the PEM file `ca` (for
    /// the name `127.0.0.1`), and reads the welcome.
    pub async fn connect_tls(addr: SocketAddr, ca: &Path) -> TestClient {
        let mut client = TestClient::connect_tls_raw(addr, ca, None).await;
        client.welcome = client.expect::<S2cWelcome>().await;
        client
    }

    /// Connects to the TLS port `addr` with the client config `config` (or one trusting
    /// `ca`), without reading anything.
    pub async fn connect_tls_raw(
        addr: SocketAddr,
        ca: &Path,
        config: Option<std::sync::Arc<net::rustls::ClientConfig>>,
    ) -> TestClient {
        let stream = TestClient::connect_raw(addr).await.into_tcp();
        let tls = tls_handshake(stream, ca, config)
            .await
            .unwrap_or_else(|e| panic!("TLS handshake with {addr}: {e}"));
        TestClient::from_stream_io(Io::Tls(Box::new(tls)))
    }

    /// Connects to the web port `addr` over WebSocket (the upgrade at `/ws`), and reads the
    /// welcome.
    pub async fn connect_ws(addr: SocketAddr) -> TestClient {
        let mut client = TestClient::connect_raw(addr).await;
        let (status, _) = client.ws_upgrade(&addr.to_string(), "/ws", None).await;
        assert_eq!(status, 101, "the WebSocket upgrade");
        client.welcome = client.expect::<S2cWelcome>().await;
        client
    }

    /// Connects to the TLS port `addr` over WebSocket (`wss://`: asking for HTTP by ALPN),
    /// trusting `ca`, and reads the welcome.
    pub async fn connect_wss(addr: SocketAddr, ca: &Path) -> TestClient {
        let trust = net::tls::client_config(&net::tls::Trust::CaFile(ca.to_path_buf()))
            .expect("a TLS client config");
        let http = net::tls::for_http(&trust);
        let mut client = TestClient::connect_tls_raw(addr, ca, Some(http)).await;
        let (status, _) = client.ws_upgrade(&addr.to_string(), "/ws", None).await;
        assert_eq!(status, 101, "the WebSocket upgrade");
        client.welcome = client.expect::<S2cWelcome>().await;
        client
    }

    /// Sends a WebSocket upgrade request for `path` to `host` (with `origin`, if any) and
    /// reads the response head: its status and head text. On 101 the client speaks
    /// WebSocket from then on.
    pub async fn ws_upgrade(
        &mut self,
        host: &str,
        path: &str,
        origin: Option<&str>,
    ) -> (u16, String) {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        );
        if let Some(origin) = origin {
            request.push_str(&format!("Origin: {origin}\r\n"));
        }
        request.push_str("\r\n");
        self.send_raw(request.as_bytes()).await;
        let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
        let end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf));
            match read.await {
                Ok(Ok(n)) if n > 0 => {}
                other => panic!("no answer to the upgrade: {other:?}"),
            }
        };
        let head = String::from_utf8(self.buf.split_to(end).to_vec()).expect("a UTF-8 head");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        if status == 101 {
            // "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" is RFC 6455's answer to this key (section 1.3).
            assert!(
                head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
                "{head}"
            );
            let raw = self.buf.split();
            self.ws = Some(WsState {
                raw,
                ..WsState::default()
            });
        }
        (status, head)
    }

    fn from_stream_io(stream: Io) -> TestClient {
        TestClient {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
            ws: None,
            welcome: S2cWelcome::default(),
            name: String::new(),
        }
    }

    fn into_tcp(self) -> TcpStream {
        match self.stream {
            Io::Tcp(stream) => stream,
            Io::Tls(_) => panic!("already TLS"),
        }
    }

    /// The socket itself, for tests that drive it by hand.
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        match &mut self.stream {
            Io::Tcp(stream) => stream,
            Io::Tls(stream) => stream.get_mut().0,
        }
    }

    /// Writes bytes on the connection as they are, WebSocket or not; a failure is returned
    /// (the server may have closed).
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Sends one WebSocket frame: `fin`, `opcode`, `payload`, masked unless `masked` is false
    /// (which breaks RFC 6455: for tests of the server's answer).
    pub async fn send_ws_frame(&mut self, fin: bool, opcode: u8, payload: &[u8], masked: bool) {
        let frame = ws_frame(fin, opcode, payload, masked);
        tokio::time::timeout(RECV_TIMEOUT, self.stream.write_all(&frame))
            .await
            .expect("write timed out")
            .expect("write failed");
    }

    /// The session id the welcome announced.
    pub fn session_id(&self) -> u64 {
        self.welcome.session_id
    }

    /// Sends one message as one frame.
    pub async fn send<M: ClientToServer>(&mut self, message: &M) {
        let frame = protocol::frame(message).expect("message fits in a frame");
        self.send_raw(&frame).await;
    }

    /// Sends many messages in one write (back to back, as one burst).
    pub async fn send_all<M: ClientToServer>(&mut self, messages: &[M]) {
        let mut buf = BytesMut::new();
        for message in messages {
            protocol::encode_frame(message, &mut buf).expect("message fits in a frame");
        }
        self.send_raw(&buf).await;
    }

    /// Sends a frame with any id and payload, well-formed or not as far as the id and
    /// payload go.
    pub async fn send_frame(&mut self, id: u16, payload: &[u8]) {
        self.send_raw(&raw_frame(id, payload)).await;
    }

    /// Writes bytes as they are; over WebSocket, as one binary message.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        tokio::time::timeout(RECV_TIMEOUT, self.try_send_raw(bytes))
            .await
            .expect("write timed out")
            .expect("write failed");
    }

    /// Writes bytes (over WebSocket, as one binary message), reporting a failure instead of
    /// panicking (the server may have closed).
    pub async fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.ws.is_some() {
            let frame = ws_frame(true, 2, bytes, true);
            self.stream.write_all(&frame).await
        } else {
            self.stream.write_all(bytes).await
        }
    }

    /// The next frame, or how the stream ended; `None` when nothing arrived within `within`.
    pub async fn next_within(&mut self, within: Duration) -> Option<Result<S2cMessage, Closed>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(message) = self.parse_buffered() {
                return Some(Ok(message));
            }
            if let Some(ws) = self.ws.as_mut() {
                // Take the server's WebSocket frames apart: binary payloads carry frames.
                let mut pongs = Vec::new();
                while let Some((fin, opcode, payload)) = parse_ws_frame(&mut ws.raw) {
                    match opcode {
                        0 | 2 => self.buf.extend_from_slice(&payload),
                        8 => {
                            let code = if payload.len() >= 2 {
                                u16::from_be_bytes([payload[0], payload[1]])
                            } else {
                                1005
                            };
                            let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or(&[]));
                            ws.close = Some((code, reason.into_owned()));
                        }
                        9 => pongs.push(ws_frame(true, 10, &payload, true)),
                        10 => ws.pongs.push(payload),
                        other => panic!("the server sent opcode {other} (fin {fin})"),
                    }
                }
                for pong in pongs {
                    let _ = self.stream.write_all(&pong).await;
                }
                if let Some(message) = self.parse_buffered() {
                    return Some(Ok(message));
                }
                if self.ws.as_ref().is_some_and(|ws| ws.close.is_some()) {
                    return Some(Err(Closed::Eof));
                }
            }
            let into = match self.ws.as_mut() {
                Some(ws) => &mut ws.raw,
                None => &mut self.buf,
            };
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(into));
            match read.await {
                Err(_) => return None,
                Ok(Ok(0)) => return Some(Err(Closed::Eof)),
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Some(Err(Closed::Error(error))),
            }
        }
    }

    /// Parses one whole frame out of the read buffer, if there is one.
    fn parse_buffered(&mut self) -> Option<S2cMessage> {
        if self.buf.len() < HEADER_LEN {
            return None;
        }
        let size = u16::from_le_bytes([self.buf[0], self.buf[1]]) as usize;
        assert!(
            size >= HEADER_LEN,
            "the server sent a frame of size {size}, smaller than the header"
        );
        if self.buf.len() < size {
            return None;
        }
        let mut frame = self.buf.split_to(size);
        let id = u16::from_le_bytes([frame[2], frame[3]]);
        frame.advance(HEADER_LEN);
        match S2cMessage::decode(id, frame.freeze()) {
            Ok(message) => Some(message),
            Err(error) => panic!("the server sent a frame that does not decode: {error}"),
        }
    }

    /// The next message; panics on timeout or on a closed connection.
    pub async fn recv(&mut self) -> S2cMessage {
        match self.next_within(RECV_TIMEOUT).await {
            Some(Ok(message)) => message,
            Some(Err(closed)) => panic!(
                "session {} ({}): connection closed ({closed:?}) while a frame was expected",
                self.welcome.session_id, self.name
            ),
            None => panic!(
                "session {} ({}): no frame within {RECV_TIMEOUT:?}",
                self.welcome.session_id, self.name
            ),
        }
    }

    /// The next message, which must be an `M`.
    pub async fn expect<M: ServerToClient>(&mut self) -> M {
        let message = self.recv().await;
        let got = format!("{message:?}");
        M::from_any(message).unwrap_or_else(|| {
            panic!(
                "session {} ({}): expected {}, got {got}",
                self.welcome.session_id,
                self.name,
                M::NAME
            )
        })
    }

    /// Reads until a message satisfies `predicate`, which is returned; the messages skipped
    /// are returned too, in order. Panics on timeout or close.
    pub async fn recv_until_with_skipped(
        &mut self,
        mut predicate: impl FnMut(&S2cMessage) -> bool,
    ) -> (S2cMessage, Vec<S2cMessage>) {
        let deadline = Instant::now() + RECV_TIMEOUT;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_within(left).await {
                Some(Ok(message)) if predicate(&message) => return (message, skipped),
                Some(Ok(message)) => skipped.push(message),
                Some(Err(closed)) => panic!(
                    "session {} ({}): connection closed ({closed:?}) while waiting; skipped {skipped:?}",
                    self.welcome.session_id, self.name
                ),
                None => panic!(
                    "session {} ({}): the awaited frame did not come within {RECV_TIMEOUT:?}; skipped {skipped:?}",
                    self.welcome.session_id, self.name
                ),
            }
        }
    }

    /// Reads until a message satisfies `predicate` and returns it, skipping the others.
    pub async fn recv_until(&mut self, predicate: impl FnMut(&S2cMessage) -> bool) -> S2cMessage {
        self.recv_until_with_skipped(predicate).await.0
    }

    /// The next message, which must be S2C_Error with `code`.
    pub async fn expect_error(&mut self, code: ErrorCode) -> S2cError {
        let error = self.expect::<S2cError>().await;
        assert_eq!(
            error.code(),
            code,
            "session {} ({}): expected error {code:?}, got {error:?}",
            self.welcome.session_id,
            self.name
        );
        error
    }

    /// Reads until the server closes the connection (EOF, or a reset), and returns the frames
    /// that came first. Panics when it stays open for [`RECV_TIMEOUT`].
    pub async fn expect_closed(&mut self) -> Vec<S2cMessage> {
        self.expect_closed_within(RECV_TIMEOUT).await
    }

    /// [`expect_closed`](Self::expect_closed) with a deadline of its own.
    pub async fn expect_closed_within(&mut self, within: Duration) -> Vec<S2cMessage> {
        let deadline = Instant::now() + within;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_within(left).await {
                Some(Ok(message)) => before.push(message),
                Some(Err(_)) => return before,
                None => panic!(
                    "session {} ({}): still open after {within:?} (received {} frames: {:?})",
                    self.welcome.session_id,
                    self.name,
                    before.len(),
                    before.iter().take(5).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Asserts that nothing arrives within `within` (a bounded wait for an absence).
    pub async fn expect_silence(&mut self, within: Duration) {
        if let Some(next) = self.next_within(within).await {
            panic!(
                "session {} ({}): expected nothing, got {next:?}",
                self.welcome.session_id, self.name
            );
        }
    }

    /// Logs in as the guest `name`; the reply must be S2C_AuthResult.
    pub async fn login_guest(&mut self, name: &str) -> S2cAuthResult {
        self.send(&C2sLogin {
            username: name.to_string(),
            password: String::new(),
            ..Default::default()
        })
        .await;
        let result = self.expect::<S2cAuthResult>().await;
        self.name = result.username.clone();
        result
    }

    /// Registers `name` with `password` and returns the S2C_AuthResult.
    pub async fn register(&mut self, name: &str, password: &str) -> S2cAuthResult {
        self.send(&protocol::world::C2sRegister {
            username: name.into(),
            password: password.into(),
            ..Default::default()
        })
        .await;
        self.expect::<S2cAuthResult>().await
    }

    /// Reads until the presence of `username` joining a room (skipping what comes first).
    pub async fn await_presence(&mut self, username: &str) {
        self.recv_until(
            |m| matches!(m, S2cMessage::S2cRoomPresence(p) if p.username == username && p.joined),
        )
        .await;
    }

    /// Joins `room`; skips chat and presence that may arrive first, fails on an error.
    pub async fn join(&mut self, room: &str) -> S2cRoomJoined {
        self.send(&C2sRoomJoin {
            room: room.to_string(),
            ..Default::default()
        })
        .await;
        match self
            .recv_until(|m| {
                matches!(m, S2cMessage::S2cRoomJoined(j) if j.room == room)
                    || matches!(m, S2cMessage::S2cError(_))
            })
            .await
        {
            S2cMessage::S2cRoomJoined(joined) => joined,
            other => panic!("{} could not join {room}: {other:?}", self.name),
        }
    }

    /// Sends a ping and waits for its pong (skipping anything else).
    pub async fn ping(&mut self, seq: u32) -> S2cPong {
        let client_time_us = protocol::now_us();
        self.send(&C2sPing {
            seq,
            client_time_us,
            ..Default::default()
        })
        .await;
        match self
            .recv_until(|m| matches!(m, S2cMessage::S2cPong(p) if p.seq == seq))
            .await
        {
            S2cMessage::S2cPong(pong) => pong,
            _ => unreachable!(),
        }
    }

    /// Sends a ping and requires its pong to be the very next frame: proof that nothing else
    /// was queued to this session before the ping was answered.
    pub async fn ping_next(&mut self, seq: u32) -> S2cPong {
        self.send(&C2sPing {
            seq,
            client_time_us: 1,
            ..Default::default()
        })
        .await;
        let pong = self.expect::<S2cPong>().await;
        assert_eq!(pong.seq, seq);
        pong
    }

    /// Sends a chat line.
    pub async fn say(&mut self, room: &str, content: &str, sent_at_us: u64) {
        self.send(&C2sChat {
            room: room.to_string(),
            content: content.to_string(),
            sent_at_us,
        })
        .await;
    }

    /// Reads until a chat line in `room` from `from` with `content` arrives.
    pub async fn expect_chat(&mut self, room: &str, from: &str, content: &str) -> S2cChat {
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

    /// Asks for the room list and waits for it.
    pub async fn room_list(&mut self) -> S2cRoomList {
        self.send(&C2sRoomList {}).await;
        match self
            .recv_until(|m| matches!(m, S2cMessage::S2cRoomList(_)))
            .await
        {
            S2cMessage::S2cRoomList(list) => list,
            _ => unreachable!(),
        }
    }

    /// The member count of `room` in a fresh room list; `None` when the room is not listed.
    pub async fn member_count(&mut self, room: &str) -> Option<u32> {
        let list = self.room_list().await;
        list.rooms
            .iter()
            .find(|r| r.name == room)
            .map(|r| r.members)
    }

    /// Closes the connection from the client's side.
    pub async fn close(mut self) {
        let _ = self.stream.shutdown().await;
    }
}

/// A WebSocket frame as a client sends it (RFC 6455, 5.2): masked unless `masked` is false.
pub fn ws_frame(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        len @ 0..=125 => out.push(mask_bit | len as u8),
        len @ 126..=65535 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    if masked {
        let mask = [0x5a, 0x13, 0xc7, 0x2e];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Takes one whole server frame (unmasked) off the front of `raw`: fin, opcode, payload.
pub fn parse_ws_frame(raw: &mut BytesMut) -> Option<(bool, u8, Vec<u8>)> {
    if raw.len() < 2 {
        return None;
    }
    assert_eq!(raw[1] & 0x80, 0, "a server frame is never masked");
    let (len, header) = match raw[1] & 0x7f {
        126 if raw.len() >= 4 => (u16::from_be_bytes([raw[2], raw[3]]) as usize, 4),
        127 if raw.len() >= 10 => {
            let mut len = [0u8; 8];
            len.copy_from_slice(&raw[2..10]);
            (u64::from_be_bytes(len) as usize, 10)
        }
        126 | 127 => return None,
        len => (len as usize, 2),
    };
    if raw.len() < header + len {
        return None;
    }
    let frame = raw.split_to(header + len);
    Some((
        frame[0] & 0x80 != 0,
        frame[0] & 0x0f,
        frame[header..].to_vec(),
    ))
}

/// A TLS handshake on `stream` as a client trusting the certificate in `ca` (or with
/// `config`), for the name `127.0.0.1`.
pub async fn tls_handshake(
    stream: TcpStream,
    ca: &Path,
    config: Option<std::sync::Arc<net::rustls::ClientConfig>>,
) -> io::Result<net::tokio_rustls::client::TlsStream<TcpStream>> {
    let config = match config {
        Some(config) => config,
        None => net::tls::client_config(&net::tls::Trust::CaFile(ca.to_path_buf()))
            .map_err(io::Error::other)?,
    };
    let name = net::rustls::pki_types::ServerName::try_from("127.0.0.1").expect("an IP address");
    net::tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
}

/// One frame with any id and payload.
pub fn raw_frame(id: u16, payload: &[u8]) -> Vec<u8> {
    let size = HEADER_LEN + payload.len();
    assert!(size <= u16::MAX as usize);
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(size as u16).to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HTTP answer: the status code and the body.
#[derive(Debug)]
pub struct HttpAnswer {
    /// The status code, e.g. 200.
    pub status: u16,
    /// The `Content-Type` header, empty without one.
    pub content_type: String,
    /// The body, as text.
    pub body: String,
}

/// Sends `request` (a whole HTTP/1.1 request, head and body) to `addr` and reads the answer
/// to the end of the connection; `None` when the connection is closed without an answer.
pub async fn http_raw(addr: SocketAddr, request: &[u8]) -> Option<HttpAnswer> {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the admin listener");
    // A peer that closes before reading everything may reset the connection: no answer.
    if stream.write_all(request).await.is_err() {
        return None;
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(RECV_TIMEOUT, stream.read_to_end(&mut answer)).await;
    read.expect("the admin listener answers within the timeout")
        .ok()?;
    if answer.is_empty() {
        return None;
    }
    let text = String::from_utf8(answer).expect("an HTTP answer in UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("an HTTP status line");
    let content_type = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Type: "))
        .unwrap_or_default()
        .to_string();
    Some(HttpAnswer {
        status,
        content_type,
        body: body.to_string(),
    })
}

/// `GET path` on `addr`.
pub async fn http_get(addr: SocketAddr, path: &str) -> HttpAnswer {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    http_raw(addr, request.as_bytes())
        .await
        .unwrap_or_else(|| panic!("GET {path}: the connection closed without an answer"))
}

/// A free port on 127.0.0.1 (bound, then released for a server to take).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Says in one line, past the test harness's capture, that `test` did not run and why: a test
/// that needs a component this machine lacks passes without it, and says so.
pub fn skip(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped {test}: {why}");
}

/// Path of an up-to-date `world-server` binary; builds one when needed (once per process).
pub fn world_server_binary() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| binary("world-server", "world-server"))
}

/// Path of an up-to-date binary `name` of the workspace's package `package`: the one
/// `cargo test` built beside this test when it is fresh, else one built now, into a target
/// directory of its own (`target/e2e-bin`, so that it never waits on the lock of the build
/// running this test).
pub fn binary(package: &str, name: &str) -> PathBuf {
    let file = if cfg!(windows) {
        format!("{name}.exe")
    } else {
        name.to_string()
    };
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<this test> -> target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf();
    let candidate = profile_dir.join(&file);
    if is_fresh(&candidate, &profile_dir.join(format!("{name}.d"))) {
        return candidate;
    }
    let target_dir = profile_dir
        .parent()
        .expect("target directory")
        .join("e2e-bin");
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_string();
    let cargo = std::env::var("CARGO")
        .ok()
        .or_else(|| option_env!("CARGO").map(str::to_string))
        .unwrap_or_else(|| "cargo".to_string());
    let mut command = Command::new(cargo);
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet", "-p", package, "--bin", name])
        .arg("--target-dir")
        .arg(&target_dir);
    if profile == "release" {
        command.arg("--release");
    }
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("run cargo build -p {package}: {e}"));
    assert!(
        status.success(),
        "cargo build -p {package} failed: {status}"
    );
    let built = target_dir.join(&profile).join(&file);
    assert!(built.exists(), "{} was not built", built.display());
    built
}

/// Whether `binary` exists and is newer than every file its dep-info lists.
fn is_fresh(binary: &Path, dep_info: &Path) -> bool {
    let Ok(built) = std::fs::metadata(binary).and_then(|m| m.modified()) else {
        return false;
    };
    let Ok(deps) = std::fs::read_to_string(dep_info) else {
        return false;
    };
    // "target: dep1 dep2 ...", spaces inside paths escaped as "\ ".
    let Some((_, list)) = deps.lines().next().and_then(|l| l.split_once(": ")) else {
        return false;
    };
    let list = list.replace("\\ ", "\u{0}");
    list.split_whitespace()
        .map(|p| PathBuf::from(p.replace('\u{0}', " ")))
        .all(|source| {
            std::fs::metadata(&source)
                .and_then(|m| m.modified())
                .is_ok_and(|modified: SystemTime| modified <= built)
        })
}

/// A tmpfs of the test's own (a small disk to fill, or a read-only one), unmounted on drop.
#[cfg(target_os = "linux")]
pub struct Tmpfs(pub PathBuf);

#[cfg(target_os = "linux")]
impl Tmpfs {
    /// A tmpfs mounted with `options` (`size=2m`, `ro,size=64k`); `None` when this process may
    /// not mount (not root, or in a container that forbids it).
    pub fn mount(options: &str) -> Option<Tmpfs> {
        let dir = fresh_dir();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(&dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if mounted {
            Some(Tmpfs(dir))
        } else {
            let _ = std::fs::remove_dir(&dir);
            None
        }
    }
}

#[cfg(target_os = "linux")]
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A swarm of `bots` bots on `servers` for `secs` seconds (rooms of 10, a line every 250 ms),
/// which must finish within `within` and pass.
pub async fn swarm(
    servers: Vec<SocketAddr>,
    bots: usize,
    secs: u64,
    within: Duration,
) -> dummy_client::Report {
    swarm_with(servers, bots, secs, within, |_| {}).await
}

/// [`swarm`], with `change` made to its config first.
pub async fn swarm_with(
    servers: Vec<SocketAddr>,
    bots: usize,
    secs: u64,
    within: Duration,
    change: impl FnOnce(&mut dummy_client::ClientConfig),
) -> dummy_client::Report {
    let mut config = dummy_client::ClientConfig::default();
    config.client.servers = servers;
    config.client.bots = bots;
    config.client.duration_secs = secs;
    config.client.drain_secs = 5;
    config.client.ramp_up_per_sec = 1000;
    config.bots.bots_per_room = 10;
    config.bots.chat_interval_ms = 250;
    change(&mut config);
    config.validate("test swarm").unwrap();
    let report = tokio::time::timeout(within, dummy_client::run(config, Default::default()))
        .await
        .unwrap_or_else(|_| panic!("the swarm did not finish within {within:?}"))
        .expect("the swarm could not start");
    assert!(report.passed(), "{:?}\n{report}", report.failures());
    report
}
