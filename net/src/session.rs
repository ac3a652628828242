//! One TCP connection, driven by two tasks.
//!
//! The read task decodes frames and hands them to the owner as [`SessionEvent::Received`] on
//! a queue shared by all sessions. Inbound is bounded twice: the shared queue has a capacity,
//! and each session holds a number of credits (`inbound_credit`): one is spent per frame and
//! given back by the owner once it has processed the frame. A session out of credits stops
//! reading, so a peer that sends faster than the owner processes meets TCP backpressure and
//! cannot take more than its share of a tick.
//!
//! The write task takes whole batches (all the frames of one tick) and writes each batch with
//! vectored writes. Outbound is bounded in batches and in bytes; the owner's [`Session::send`]
//! refuses a batch that would pass either bound, and the owner then disconnects the slow
//! consumer, so a client that stops reading never grows the owner's memory.
//!
//! A session ends exactly once, with one [`SessionEvent::Closed`] carrying the first
//! [`DisconnectReason`] recorded: the peer's, the socket's, or the owner's.

use std::fmt;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::codec::{CodecError, FrameCodec, FrameError, Packet};

/// Identifies a session for as long as its owner runs; never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Why a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The peer closed the connection.
    PeerClosed,
    /// The peer sent a frame header that corrupts the stream.
    Protocol(FrameError),
    /// The socket failed.
    Io(io::ErrorKind),
    /// The peer did not read its frames fast enough and its outbound queue passed its bound.
    SlowConsumer,
    /// The peer sent nothing for too long.
    IdleTimeout,
    /// The peer kept sending requests far above its rate limit.
    Flooding,
    /// Another session logged in with the same username.
    Replaced,
    /// The owner had no room for another session.
    ServerFull,
    /// The peer's address holds as many sessions (or sessions without a login) as it may.
    TooManyConnections,
    /// The peer did not log in within the owner's deadline.
    LoginTimeout,
    /// The owner is shutting down.
    Shutdown,
    /// The owner closed the session for a reason of its own.
    Kicked(String),
}

impl DisconnectReason {
    /// A short name of the kind of reason, without its details (`protocol_error`, not which
    /// one): for counting disconnects by reason.
    pub fn label(&self) -> &'static str {
        match self {
            DisconnectReason::PeerClosed => "peer_closed",
            DisconnectReason::Protocol(_) => "protocol_error",
            DisconnectReason::Io(_) => "socket_error",
            DisconnectReason::SlowConsumer => "slow_consumer",
            DisconnectReason::IdleTimeout => "idle_timeout",
            DisconnectReason::Flooding => "flooding",
            DisconnectReason::Replaced => "replaced",
            DisconnectReason::ServerFull => "server_full",
            DisconnectReason::TooManyConnections => "too_many_connections",
            DisconnectReason::LoginTimeout => "login_timeout",
            DisconnectReason::Shutdown => "shutdown",
            DisconnectReason::Kicked(_) => "kicked",
        }
    }

    /// Every label of [`DisconnectReason::label`], for counters made before any disconnect.
    pub const LABELS: [&'static str; 12] = [
        "peer_closed",
        "protocol_error",
        "socket_error",
        "slow_consumer",
        "idle_timeout",
        "flooding",
        "replaced",
        "server_full",
        "too_many_connections",
        "login_timeout",
        "shutdown",
        "kicked",
    ];
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::PeerClosed => f.write_str("peer closed"),
            DisconnectReason::Protocol(e) => write!(f, "protocol error: {e}"),
            DisconnectReason::Io(kind) => write!(f, "socket error: {kind}"),
            DisconnectReason::SlowConsumer => f.write_str("slow consumer: outbound queue full"),
            DisconnectReason::IdleTimeout => f.write_str("idle timeout"),
            DisconnectReason::Flooding => {
                f.write_str("flooding: requests far above the rate limit")
            }
            DisconnectReason::Replaced => f.write_str("replaced by a newer login"),
            DisconnectReason::ServerFull => f.write_str("server full"),
            DisconnectReason::TooManyConnections => {
                f.write_str("too many connections from its address")
            }
            DisconnectReason::LoginTimeout => f.write_str("no login before the deadline"),
            DisconnectReason::Shutdown => f.write_str("shutdown"),
            DisconnectReason::Kicked(why) => write!(f, "kicked: {why}"),
        }
    }
}

/// What a session tells its owner.
#[derive(Debug)]
pub enum SessionEvent {
    /// A frame arrived. The owner must give its credit back with [`Session::release_credit`]
    /// once it has processed it.
    Received {
        /// The session it came from.
        session: SessionId,
        /// The frame.
        packet: Packet,
        /// When the read task decoded it.
        at: Instant,
    },
    /// The session ended; no event follows for it.
    Closed {
        /// The session that ended.
        session: SessionId,
        /// The first reason recorded.
        reason: DisconnectReason,
    },
}

/// Bounds and timings of a session.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Largest frame accepted, header included.
    pub max_packet_size: usize,
    /// Frames a session may have handed to its owner and not yet had released.
    pub inbound_credit: usize,
    /// Batches queued to the write task at most.
    pub outbound_batches: usize,
    /// Bytes queued to the write task at most.
    pub max_outbound_bytes: usize,
    /// How long a graceful close may take to flush what is queued.
    pub linger: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_packet_size: 8192,
            inbound_credit: 64,
            outbound_batches: 256,
            max_outbound_bytes: 1 << 20,
            linger: Duration::from_secs(2),
        }
    }
}

/// Why [`Session::send`] refused a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The batch would pass the outbound bound: the peer is not reading.
    #[error("outbound queue full ({queued} bytes queued)")]
    SlowConsumer {
        /// Bytes already queued.
        queued: usize,
    },
    /// The session is closing or closed.
    #[error("session closed")]
    Closed,
}

/// State shared by the owner's handle and the two tasks.
struct Shared {
    queued_bytes: AtomicUsize,
    credit: Semaphore,
    /// Both tasks stop at once.
    cancel: CancellationToken,
    /// The owner asked for a graceful close: the writer flushes, the reader discards input.
    closing: CancellationToken,
    /// The writer has written everything and closed its side (after a graceful close).
    flushed: CancellationToken,
    reason: Mutex<Option<DisconnectReason>>,
}

impl Shared {
    /// Records `reason` unless one is recorded already: the first cause is the one reported.
    fn set_reason(&self, reason: DisconnectReason) {
        let mut slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(reason);
    }

    fn reason(&self) -> DisconnectReason {
        let slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        slot.clone().unwrap_or(DisconnectReason::PeerClosed)
    }
}

/// The owner's handle on a session.
///
/// Dropping the handle without [`close`](Session::close) or [`abort`](Session::abort)
/// closes the session gracefully.
pub struct Session {
    id: SessionId,
    peer: SocketAddr,
    outbound: Option<mpsc::Sender<Vec<Bytes>>>,
    max_outbound_bytes: usize,
    shared: Arc<Shared>,
}

impl Session {
    /// Starts the read and write tasks of `stream` on `tracker`. Events go to `events`.
    pub fn spawn(
        id: SessionId,
        stream: TcpStream,
        config: &SessionConfig,
        events: mpsc::Sender<SessionEvent>,
        tracker: &TaskTracker,
    ) -> Session {
        let peer = stream
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let _ = stream.set_nodelay(true);
        let (read_half, write_half) = stream.into_split();
        let shared = Arc::new(Shared {
            queued_bytes: AtomicUsize::new(0),
            credit: Semaphore::new(config.inbound_credit.max(1)),
            cancel: CancellationToken::new(),
            closing: CancellationToken::new(),
            flushed: CancellationToken::new(),
            reason: Mutex::new(None),
        });
        let (tx, rx) = mpsc::channel(config.outbound_batches.max(1));
        tracker.spawn(read_loop(
            id,
            read_half,
            FrameCodec::new(config.max_packet_size),
            config.linger,
            events,
            shared.clone(),
        ));
        tracker.spawn(write_loop(write_half, rx, shared.clone()));
        Session {
            id,
            peer,
            outbound: Some(tx),
            max_outbound_bytes: config.max_outbound_bytes,
            shared,
        }
    }

    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Bytes handed to the write task and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.shared.queued_bytes.load(Ordering::Relaxed)
    }

    /// Whether the session has been asked to close or has ended.
    pub fn is_closing(&self) -> bool {
        self.outbound.is_none() || self.shared.cancel.is_cancelled()
    }

    /// Queues one batch of frames, to be written with vectored writes. Never waits: a batch
    /// that would take the bytes not yet written past `max_outbound_bytes` (or the batches
    /// past `outbound_batches`) is refused with [`SendError::SlowConsumer`], and the owner is
    /// expected to [`abort`](Session::abort) the session. A batch sent when nothing is
    /// waiting to be written is always taken, however large.
    pub fn send(&self, frames: Vec<Bytes>) -> Result<(), SendError> {
        let Some(outbound) = &self.outbound else {
            return Err(SendError::Closed);
        };
        let len: usize = frames.iter().map(Bytes::len).sum();
        let queued = self.shared.queued_bytes.fetch_add(len, Ordering::Relaxed);
        // Only a backlog counts: a peer that has read everything gets this batch whatever its
        // size (one tick's worth is bounded by what the owner produces in a tick).
        if queued > 0 && queued + len > self.max_outbound_bytes {
            self.shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            return Err(SendError::SlowConsumer { queued });
        }
        match outbound.try_send(frames) {
            Ok(()) => Ok(()),
            Err(error) => {
                self.shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                match error {
                    mpsc::error::TrySendError::Full(_) => Err(SendError::SlowConsumer { queued }),
                    mpsc::error::TrySendError::Closed(_) => Err(SendError::Closed),
                }
            }
        }
    }

    /// Gives back `n` inbound credits: the owner has processed `n` frames of this session.
    pub fn release_credit(&self, n: usize) {
        if n > 0 {
            self.shared.credit.add_permits(n);
        }
    }

    /// Closes gracefully: stops reading, writes what is queued (for at most the linger time),
    /// then closes the socket. `reason` is reported unless the session ended already.
    pub fn close(&mut self, reason: DisconnectReason) {
        self.shared.set_reason(reason);
        self.outbound = None;
        self.shared.closing.cancel();
    }

    /// Closes at once, dropping whatever is queued.
    pub fn abort(&mut self, reason: DisconnectReason) {
        self.shared.set_reason(reason);
        self.outbound = None;
        self.shared.cancel.cancel();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared.closing.cancel();
    }
}

async fn read_loop(
    id: SessionId,
    read_half: OwnedReadHalf,
    codec: FrameCodec,
    linger: Duration,
    events: mpsc::Sender<SessionEvent>,
    shared: Arc<Shared>,
) {
    let mut frames = FramedRead::with_capacity(read_half, codec, 8 * 1024);
    let reason = loop {
        // A credit first: without one the socket is not read and TCP pushes back on the peer.
        let permit = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => break None,
            _ = shared.closing.cancelled() => break None,
            permit = shared.credit.acquire() => permit,
        };
        match permit {
            Ok(permit) => permit.forget(),
            Err(_) => break None,
        }
        let next = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => break None,
            _ = shared.closing.cancelled() => break None,
            next = frames.next() => next,
        };
        match next {
            Some(Ok(packet)) => {
                let event = SessionEvent::Received {
                    session: id,
                    packet,
                    at: Instant::now(),
                };
                // The owner is gone: nobody is left to tell.
                if events.send(event).await.is_err() {
                    shared.cancel.cancel();
                    return;
                }
            }
            Some(Err(CodecError::Frame(error))) => break Some(DisconnectReason::Protocol(error)),
            Some(Err(CodecError::Io(error))) => break Some(io_reason(&error)),
            None => break Some(DisconnectReason::PeerClosed),
        }
    };
    if let Some(reason) = reason {
        shared.set_reason(reason);
        shared.cancel.cancel();
    } else if !shared.cancel.is_cancelled() {
        // A graceful close. Input is still read, and dropped, until the writer has flushed
        // and the peer has closed its side (or the linger time is up): closing a socket with
        // unread input would send a reset, which can destroy the last frames in flight.
        let deadline = tokio::time::sleep(linger);
        tokio::pin!(deadline);
        let mut eof = false;
        while !(eof && shared.flushed.is_cancelled()) {
            tokio::select! {
                _ = &mut deadline => break,
                _ = shared.cancel.cancelled() => break,
                _ = shared.flushed.cancelled(), if !shared.flushed.is_cancelled() => {}
                next = frames.next(), if !eof => eof = !matches!(next, Some(Ok(_))),
            }
        }
        shared.cancel.cancel();
    }
    drop(frames);
    let _ = events
        .send(SessionEvent::Closed {
            session: id,
            reason: shared.reason(),
        })
        .await;
}

fn io_reason(error: &io::Error) -> DisconnectReason {
    match error.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => DisconnectReason::PeerClosed,
        kind => DisconnectReason::Io(kind),
    }
}

/// Frames taken from the queue for one write call at most; above `IOV_MAX` the kernel refuses.
const MAX_SLICES: usize = 512;

async fn write_loop(
    mut write_half: OwnedWriteHalf,
    mut outbound: mpsc::Receiver<Vec<Bytes>>,
    shared: Arc<Shared>,
) {
    let mut frames: Vec<Bytes> = Vec::new();
    loop {
        let batch = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return,
            batch = outbound.recv() => batch,
        };
        let Some(batch) = batch else { break };
        frames.clear();
        frames.extend(batch);
        // Whatever else is queued goes in the same write.
        while frames.len() < MAX_SLICES {
            match outbound.try_recv() {
                Ok(more) => frames.extend(more),
                Err(_) => break,
            }
        }
        let len: usize = frames.iter().map(Bytes::len).sum();
        let result = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return,
            result = write_all_vectored(&mut write_half, &mut frames) => result,
        };
        shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
        // The written frames are views into the owner's arena chunks: holding them until the
        // next batch would keep an idle session's last chunk alive.
        frames.clear();
        if let Err(error) = result {
            shared.set_reason(io_reason(&error));
            shared.cancel.cancel();
            return;
        }
    }
    // The owner closed the queue: everything is written. Close our side; the reader ends the
    // session once the peer has closed too.
    tokio::select! {
        _ = shared.cancel.cancelled() => {}
        _ = write_half.shutdown() => {}
    }
    shared.flushed.cancel();
    // Keep the write half (dropping it is harmless after shutdown) until the session ends.
    shared.cancel.cancelled().await;
}

/// Writes every byte of `frames` with as few vectored writes as the socket allows.
async fn write_all_vectored(writer: &mut OwnedWriteHalf, frames: &mut [Bytes]) -> io::Result<()> {
    let mut first = 0;
    while first < frames.len() {
        let end = frames.len().min(first + MAX_SLICES);
        let slices: Vec<IoSlice<'_>> = frames[first..end].iter().map(|f| IoSlice::new(f)).collect();
        let mut written = writer.write_vectored(&slices).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        drop(slices);
        while written > 0 && first < frames.len() {
            let frame = &mut frames[first];
            let take = written.min(frame.len());
            frame.advance(take);
            written -= take;
            if frame.is_empty() {
                first += 1;
            }
        }
        while first < frames.len() && frames[first].is_empty() {
            first += 1;
        }
    }
    Ok(())
}
