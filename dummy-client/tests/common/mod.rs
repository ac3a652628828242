//! Helpers of the tests against the real world server: a temporary directory, and the
//! server in process on `127.0.0.1:0`.
#![allow(dead_code)]

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use config::ServerConfig;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A free port of 127.0.0.1 (bound, then released for a server to take).
pub fn free_addr() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A self-signed certificate for 127.0.0.1 and localhost, valid for a month, written to
/// `dir` as `server.crt` and `server.key`.
pub fn certificate(dir: &TempDir) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.path("server.crt"), dir.path("server.key"));
    fs::write(&cert_path, cert.pem()).unwrap();
    fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

/// A directory of its own under the system's temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "dummy-client-{name}-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The world server on `127.0.0.1:0`, with its database in `dir`.
pub struct Server {
    pub addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<world_server::Stats, world_server::ServerError>>,
}

/// Logs at `warn` (or `ACCOUNTS_LOG`), so that the server's per-connection lines do not
/// bury the test output.
pub fn quiet_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let level = std::env::var("ACCOUNTS_LOG").unwrap_or_else(|_| "warn".to_owned());
        if let Err(error) =
            config::logging::init(&config::LogConfig::default(), Some(&level), "test")
        {
            eprintln!("test: cannot set up logging: {error}");
        }
    });
}

/// Waits (10 s at most) until the server at `addr` answers a `C2S_Ping`.
async fn answers_a_ping(addr: std::net::SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ping = protocol::frame(&protocol::world::C2sPing::default()).unwrap();
    let answered = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(&ping).await.unwrap();
        let mut header = [0u8; protocol::HEADER_LEN];
        stream.read_exact(&mut header).await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(10), answered)
        .await
        .unwrap_or_else(|_| panic!("the server on {addr} did not answer a ping within 10 s"));
}

impl Server {
    pub async fn start(dir: &TempDir) -> Self {
        Server::start_with(dir, |_| {}).await
    }

    /// A server of the tests' config, changed by `change` (to give it a web or TLS port).
    pub async fn start_with(dir: &TempDir, change: impl FnOnce(&mut ServerConfig)) -> Self {
        quiet_logs();
        let mut config = ServerConfig::default();
        config.server.tick_ms = 5;
        // No web port: tests run many servers at once.
        config.web.listen = String::new();
        config.net.linger_ms = 200;
        // Accounts and tokens in memory: these tests measure the bots, not the disk, and a
        // disk busy writing back (a build's output) can hold an SQLite commit, and the
        // logins queued behind it, for seconds, longer than a run of these tests.
        config.storage.backend = "memory".into();
        config.storage.path = dir.path("world.db");
        config.auth.argon2_memory_kib = 64;
        config.auth.argon2_iterations = 1;
        change(&mut config);
        let ports = [config.web.address(), config.tls.address()];
        let listener = net::listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let handle = tokio::spawn(world_server::run(listener, config, shutdown));
        // The port is bound before the server has opened its database (which a busy disk can
        // make take seconds): a run started before it answers would count that as its own.
        answers_a_ping(addr).await;
        for port in ports.into_iter().flatten() {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while tokio::net::TcpStream::connect(port).await.is_err() {
                assert!(std::time::Instant::now() < deadline, "nothing on {port}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Server {
            addr,
            stop: Some(stop),
            handle,
        }
    }

    /// Stops the server and returns its final counters.
    pub async fn stop_with_stats(mut self) -> world_server::Stats {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match tokio::time::timeout(Duration::from_secs(10), self.handle).await {
            Ok(Ok(Ok(stats))) => stats,
            other => panic!("the server did not stop cleanly: {other:?}"),
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match tokio::time::timeout(Duration::from_secs(10), self.handle).await {
            Ok(Ok(Ok(_))) => {}
            other => panic!("the server did not stop cleanly: {other:?}"),
        }
    }
}
