//! Real servers for tests, started on loopback by the tests themselves.
//!
//! [`postgres()`] starts one PostgreSQL server per test process (Debian's `postgresql`: `initdb`
//! and `postgres` on the `PATH` or in `/usr/lib/postgresql/*/bin`), in a temporary directory,
//! on a free port of 127.0.0.1, and gives each caller a database of its own. The server stops
//! when the test process ends, however it ends: it is started with a parent-death signal from
//! a thread that lives as long as the process. Where the binaries are missing, the caller gets
//! the reason instead, to skip in one line.
//!
//! [`OwnPostgres`] is a PostgreSQL server of one test's own, which the test stops (as a crash
//! would) and starts again.
//!
//! [`Nats`] starts a NATS server for one test; [`browser`] drives a headless Chromium over
//! the DevTools protocol, for tests of web pages.

pub mod browser;

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A PostgreSQL server this process started.
#[derive(Debug)]
pub struct Postgres {
    port: u16,
    dir: PathBuf,
}

impl Postgres {
    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its data directory and log (`server.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The URL of database `name` on it.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://world@127.0.0.1:{}/{name}", self.port)
    }

    /// A new, empty database for one test; returns its URL.
    pub fn fresh_database(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.sql(&format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// The first column of the first row of `query` in the database at `url`, as an
    /// integer (on a thread of its own, like [`sql`](Self::sql)).
    pub fn scalar(url: &str, query: &str) -> i64 {
        let (url, query) = (url.to_string(), query.to_string());
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls)
                .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
            client
                .query_one(&query, &[])
                .unwrap_or_else(|e| panic!("{query}: {e}"))
                .get::<_, i64>(0)
        })
        .join()
        .expect("the SQL thread")
    }

    /// Runs `statement` in the `postgres` database (on a thread of its own: the client must not
    /// run inside an async runtime).
    pub fn sql(&self, statement: &str) {
        Postgres::sql_in(&self.url("postgres"), statement);
    }

    /// Runs `statement` in the database at `url`, as [`sql`](Self::sql) does.
    pub fn sql_in(url: &str, statement: &str) {
        let (url, statement) = (url.to_string(), statement.to_string());
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls)
                .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
            client
                .batch_execute(&statement)
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        })
        .join()
        .expect("the SQL thread");
    }
}

/// The PostgreSQL server of this test process, started on first use; `Err` says why there is
/// none (to skip the test in one line).
pub fn postgres() -> Result<&'static Postgres, String> {
    static SERVER: OnceLock<Result<Postgres, String>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            // The server is the child of a thread that never ends, so that its parent-death
            // signal comes when the process ends, not when the first test's thread does.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(start_postgres());
                loop {
                    std::thread::park();
                }
            });
            rx.recv()
                .unwrap_or_else(|_| Err("the PostgreSQL thread died".into()))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Where Debian's PostgreSQL binaries are: the `PATH`, then `/usr/lib/postgresql/*/bin`,
/// newest first.
fn postgres_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| dir.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort();
    versions.reverse();
    on_path
        .into_iter()
        .chain(versions)
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
}

/// A free port of 127.0.0.1 (free when asked; the server binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn start_postgres() -> Result<Postgres, String> {
    let cluster = Cluster::init(format!("world-pg-{}", std::process::id()))?;
    let port = free_port();
    let child = cluster.launch(port)?;
    // The server of the whole process: it stops when the process ends.
    std::mem::forget(child);
    let server = Postgres {
        port,
        dir: cluster.dir.clone(),
    };
    wait_ready(&server)?;
    Ok(server)
}

/// A PostgreSQL data directory made by `initdb`, and how to run its server.
#[derive(Debug)]
struct Cluster {
    bin: PathBuf,
    root: bool,
    dir: PathBuf,
}

impl Cluster {
    /// A new data directory under the temporary directory, in `name`.
    fn init(name: String) -> Result<Cluster, String> {
        let bin = postgres_bin().ok_or("PostgreSQL is not installed (no initdb and postgres on the PATH or in /usr/lib/postgresql/*/bin; Debian: apt-get install postgresql)")?;
        let root = std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        if Command::new("setpriv").arg("--version").output().is_err() {
            return Err("setpriv (util-linux) is missing".into());
        }
        // Data directories of test processes that are gone.
        if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
            for entry in entries.flatten() {
                let dir = entry.file_name().to_string_lossy().into_owned();
                let pid = dir
                    .strip_prefix("world-pg-")
                    .map(|rest| rest.split('-').next().unwrap_or(rest).to_string());
                if let Some(pid) = pid {
                    if !Path::new("/proc").join(pid).exists() {
                        let _ = std::fs::remove_dir_all(entry.path());
                    }
                }
            }
        }
        let dir = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        if root {
            let chown = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .map_err(|e| format!("chown: {e}"))?;
            if !chown.success() {
                return Err("cannot give the data directory to the postgres user".into());
            }
        }
        let cluster = Cluster { bin, root, dir };
        let mut initdb = Command::new("setpriv");
        cluster.as_user(&mut initdb);
        let out = initdb
            .arg("--")
            .arg(cluster.bin.join("initdb"))
            .arg("-D")
            .arg(cluster.dir.join("data"))
            .args(["-U", "world", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(cluster)
    }

    /// PostgreSQL refuses to run as root: as root, it runs as Debian's `postgres` user.
    fn as_user(&self, command: &mut Command) {
        if self.root {
            command.args(["--reuid=postgres", "--regid=postgres", "--clear-groups"]);
        }
    }

    /// Starts the server on `port`, with a parent-death signal from the calling thread; it
    /// logs to `server.log` (appended).
    fn launch(&self, port: u16) -> Result<std::process::Child, String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .map_err(|e| e.to_string())?;
        let mut server = Command::new("setpriv");
        server.arg("--pdeathsig=INT");
        self.as_user(&mut server);
        server
            .arg("--")
            .arg(self.bin.join("postgres"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-p")
            .arg(port.to_string())
            .arg("-k")
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("postgres: {e}"))
    }
}

/// Waits until `server` answers a query, for 30 s at most.
fn wait_ready(server: &Postgres) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let url = server.url("postgres");
        let ready = std::thread::spawn(move || {
            postgres::Client::connect(&url, postgres::NoTls)
                .and_then(|mut c| c.simple_query("SELECT 1"))
                .is_ok()
        })
        .join()
        .unwrap_or(false);
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "PostgreSQL did not answer on port {} within 30 s (log: {})",
                server.port,
                server.dir.join("server.log").display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A PostgreSQL server of one test's own, which the test stops and starts again (as an
/// operator or a crash would). It stops when dropped, or when the thread that started it ends.
#[derive(Debug)]
pub struct OwnPostgres {
    server: Postgres,
    cluster: Cluster,
    child: Option<std::process::Child>,
}

impl OwnPostgres {
    /// Initialises a data directory and starts the server on a free port; `Err` says why
    /// there is none (to skip the test in one line).
    pub fn start() -> Result<OwnPostgres, String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "world-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let cluster = Cluster::init(name)?;
        let port = free_port();
        let child = cluster.launch(port)?;
        let own = OwnPostgres {
            server: Postgres {
                port,
                dir: cluster.dir.clone(),
            },
            cluster,
            child: Some(child),
        };
        wait_ready(&own.server)?;
        Ok(own)
    }

    /// [`OwnPostgres::start`] for the test named `test`; `None` after saying in one line why
    /// it is skipped.
    pub fn for_test(test: &str) -> Option<OwnPostgres> {
        match OwnPostgres::start() {
            Ok(pg) => Some(pg),
            Err(why) => {
                eprintln!("skipped {test}: {why}");
                None
            }
        }
    }

    /// The server, for its URLs and databases.
    pub fn server(&self) -> &Postgres {
        &self.server
    }

    /// Stops the server as `pg_ctl stop -m immediate` does (SIGQUIT: no checkpoint, every
    /// connection cut), and waits for it to exit.
    pub fn stop_immediate(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: a signal to a process this value started and has not reaped.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGQUIT);
            }
            let _ = child.wait();
        }
    }

    /// Pauses the server and every process of it (SIGSTOP): connections stay open, and
    /// nothing is answered, as behind a network cut that drops packets.
    pub fn pause(&self) {
        self.signal_all(libc::SIGSTOP);
    }

    /// Lets the server go on after [`OwnPostgres::pause`] (SIGCONT).
    pub fn resume(&self) {
        self.signal_all(libc::SIGCONT);
    }

    /// Sends `signal` to the server and to each process it started (its backends).
    fn signal_all(&self, signal: libc::c_int) {
        let Some(child) = &self.child else {
            return;
        };
        let root = child.id();
        let mut pids = vec![root];
        // Its children, from each process's parent in /proc.
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
                // "pid (name) state ppid ...": the name may hold spaces, not a ')'.
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|ppid| ppid.parse::<u32>().ok());
                if ppid == Some(root) {
                    pids.push(pid);
                }
            }
        }
        for pid in pids {
            // SAFETY: a signal to the server this value started, or to one of its children.
            unsafe {
                libc::kill(pid as libc::pid_t, signal);
            }
        }
    }

    /// Starts the server again on the same port and data, and waits until it answers.
    pub fn start_again(&mut self) -> Result<(), String> {
        if self.child.is_none() {
            self.child = Some(self.cluster.launch(self.server.port)?);
        }
        wait_ready(&self.server)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        // A paused server stops only once it runs.
        self.resume();
        if let Some(mut child) = self.child.take() {
            // SAFETY: as in stop_immediate.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGINT);
            }
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.cluster.dir);
    }
}

/// A NATS server (Debian's `nats-server`) on a free port of 127.0.0.1, for one test: stopped
/// when dropped, or when the test's thread ends, however it ends.
#[derive(Debug)]
pub struct Nats {
    port: u16,
    child: Option<std::process::Child>,
    /// JetStream's store, kept from a kill to the resume; `None` without JetStream.
    store: Option<PathBuf>,
}

impl Nats {
    /// Starts one with JetStream (world servers keep who holds each name in its key-value
    /// store); `Err` says why there is none (to skip the test in one line).
    pub fn start() -> Result<Nats, String> {
        Nats::start_with(true)
    }

    /// Starts one without JetStream.
    pub fn start_without_jetstream() -> Result<Nats, String> {
        Nats::start_with(false)
    }

    fn start_with(jetstream: bool) -> Result<Nats, String> {
        if Command::new("nats-server")
            .arg("--version")
            .output()
            .is_err()
        {
            return Err(
                "nats-server is not installed (Debian: apt-get install nats-server)".into(),
            );
        }
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let store = jetstream.then(|| {
            std::env::temp_dir().join(format!(
                "world-nats-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ))
        });
        let mut nats = Nats {
            port: free_port(),
            child: None,
            store,
        };
        nats.resume()?;
        Ok(nats)
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills it (SIGKILL): an outage.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (and store), after [`kill`](Self::kill).
    pub fn resume(&mut self) -> Result<(), String> {
        let mut command = Command::new("setpriv");
        command
            .arg("--pdeathsig=KILL")
            .arg("--")
            .arg("nats-server")
            .args(["-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string());
        if let Some(store) = &self.store {
            command.arg("-js").arg("-sd").arg(store);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("nats-server: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!(
                    "nats-server did not listen on {} within 10 s",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
        if let Some(store) = &self.store {
            let _ = std::fs::remove_dir_all(store);
        }
    }
}
