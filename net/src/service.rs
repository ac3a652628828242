//! Services turn accepts and connects into [`ServiceEvent`]s for the owner, who then makes
//! sessions of the streams with [`Session::spawn`](crate::Session::spawn).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What a service tells its owner.
#[derive(Debug)]
pub enum ServiceEvent {
    /// [`ServerService`] accepted a connection.
    Accepted {
        /// The tag given to [`ServerService::spawn`]: which listener.
        tag: u64,
        /// The new stream.
        stream: TcpStream,
        /// The peer's address.
        peer: SocketAddr,
    },
    /// [`ClientService`] connected.
    Connected {
        /// The tag given to [`ClientService::connect`].
        tag: u64,
        /// The new stream.
        stream: TcpStream,
    },
    /// [`ClientService`] could not connect.
    ConnectFailed {
        /// The tag given to [`ClientService::connect`].
        tag: u64,
        /// Why.
        error: io::Error,
    },
}

/// Connections a listener made by [`listen`] holds waiting to be accepted: a burst of
/// clients (a swarm starting, the players of a lost node reconnecting) waits in the kernel
/// rather than being dropped to retry the handshake a second later. The kernel caps it at
/// `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with a backlog of [`LISTEN_BACKLOG`] (the standard library's and
/// tokio's `bind` ask for 128), and `SO_REUSEADDR` as theirs have.
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accepts connections on a listener until shut down.
pub struct ServerService;

impl ServerService {
    /// Spawns the accept task on `tracker`; its events carry `tag`. It stops when `shutdown`
    /// is cancelled or the owner drops its end of `events`; while `events` is full it stops
    /// accepting, so the kernel's backlog holds new clients until the owner catches up.
    pub fn spawn(
        listener: TcpListener,
        tag: u64,
        events: mpsc::Sender<ServiceEvent>,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) {
        tracker.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                match accepted {
                    Ok((stream, peer)) => {
                        let event = ServiceEvent::Accepted { tag, stream, peer };
                        tokio::select! {
                            biased;
                            _ = shutdown.cancelled() => return,
                            sent = events.send(event) => if sent.is_err() { return },
                        }
                    }
                    Err(error) => {
                        // Out of file descriptors or a connection reset before accept: the
                        // listener itself is fine. Back off a little so that a descriptor
                        // shortage does not become a busy loop.
                        spdlog::warn!("net: accept failed: {error}");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                        }
                    }
                }
            }
        });
    }
}

/// Opens many connections, with a bound on connects in flight.
#[derive(Clone)]
pub struct ClientService {
    events: mpsc::Sender<ServiceEvent>,
    in_flight: Arc<Semaphore>,
    timeout: Duration,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl ClientService {
    /// A service that runs at most `max_in_flight` connects at once, each for at most
    /// `timeout`, and reports to `events`.
    pub fn new(
        events: mpsc::Sender<ServiceEvent>,
        max_in_flight: usize,
        timeout: Duration,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Self {
        ClientService {
            events,
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
            timeout,
            tracker,
            shutdown,
        }
    }

    /// Starts connecting to `addr`; the outcome arrives as [`ServiceEvent::Connected`] or
    /// [`ServiceEvent::ConnectFailed`] with `tag`.
    pub fn connect(&self, addr: SocketAddr, tag: u64) {
        let this = self.clone();
        self.tracker.spawn(async move {
            let outcome = tokio::select! {
                biased;
                _ = this.shutdown.cancelled() => return,
                outcome = this.connect_bounded(addr) => outcome,
            };
            let event = match outcome {
                Ok(stream) => ServiceEvent::Connected { tag, stream },
                Err(error) => ServiceEvent::ConnectFailed { tag, error },
            };
            let _ = this.events.send(event).await;
        });
    }

    async fn connect_bounded(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| io::Error::other("client service closed"))?;
        match tokio::time::timeout(self.timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                stream.set_nodelay(true)?;
                Ok(stream)
            }
            Ok(Err(error)) => Err(error),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect to {addr} timed out after {:?}", self.timeout),
            )),
        }
    }
}
