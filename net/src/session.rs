//! One connection, driven by two tasks, whatever carries its frames: TCP, TLS, WebSocket.
//!
//! First the connection is set up as [`SessionConfig::negotiation`] says (see
//! [`crate::transport`]): nothing for plain TCP; a TLS handshake, the detection of what the
//! client speaks, a WebSocket upgrade or an HTTP answer for a server's port; a TLS handshake
//! and an upgrade for a client. Batches the owner sends meanwhile wait in the outbound queue.
//! A negotiated session reports [`SessionEvent::Ready`] with its [`Transport`].
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
//! Over WebSocket, each batch is one binary message; pings are answered, and a close is a
//! close frame with a code saying why ([`close_code`]), both ways.
//!
//! A session ends exactly once, with one [`SessionEvent::Closed`] carrying the first
//! [`DisconnectReason`] recorded: the peer's, the socket's, or the owner's.

use std::fmt;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::codec::{Decoder, FramedRead};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::codec::{CodecError, FrameCodec, FrameError, Packet};
use crate::transport::{self, BoxRead, BoxWrite, Framing, Negotiated, Negotiation, Transport};
use crate::ws::{self, Incoming, Role, WsDecoder};

/// Identifies a session for as long as its owner runs; never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

use crate::reason::io_reason;
pub use crate::reason::{close_code, DisconnectReason};

/// What a session tells its owner.
#[derive(Debug)]
pub enum SessionEvent {
    /// The connection is set up (after a negotiation; a session of plain TCP frames does not
    /// report it). For [`Transport::Http`] and [`Transport::Https`] the exchange is over, and
    /// [`SessionEvent::Closed`] follows.
    Ready {
        /// The session.
        session: SessionId,
        /// What it speaks.
        transport: Transport,
    },
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
    /// How the connection is set up before frames flow.
    pub negotiation: Negotiation,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_packet_size: 8192,
            inbound_credit: 64,
            outbound_batches: 256,
            max_outbound_bytes: 1 << 20,
            linger: Duration::from_secs(2),
            negotiation: Negotiation::Frames,
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
        let shared = Arc::new(Shared {
            queued_bytes: AtomicUsize::new(0),
            credit: Semaphore::new(config.inbound_credit.max(1)),
            cancel: CancellationToken::new(),
            closing: CancellationToken::new(),
            flushed: CancellationToken::new(),
            reason: Mutex::new(None),
        });
        let (tx, rx) = mpsc::channel(config.outbound_batches.max(1));
        tracker.spawn(drive(
            id,
            stream,
            config.clone(),
            events,
            shared.clone(),
            rx,
            tracker.clone(),
        ));
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

/// Sets the connection up, then runs the write task and the read loop.
async fn drive(
    id: SessionId,
    stream: TcpStream,
    config: SessionConfig,
    events: mpsc::Sender<SessionEvent>,
    shared: Arc<Shared>,
    outbound: mpsc::Receiver<Vec<Bytes>>,
    tracker: TaskTracker,
) {
    let negotiated = match &config.negotiation {
        Negotiation::Frames => Some(Ok(Negotiated::frames(stream))),
        Negotiation::Accept(side) => {
            // Boxed: the negotiation's state lives on the heap while it runs and goes with
            // it, rather than in every session's task for its whole life.
            let accept = Box::pin(transport::accept(side, stream, config.linger));
            bounded(&shared, side.timeout, accept).await
        }
        Negotiation::Connect(side) => {
            let connect = Box::pin(transport::connect(side, stream));
            bounded(&shared, side.timeout, connect).await
        }
    };
    let negotiated_at_all = !matches!(config.negotiation, Negotiation::Frames);
    let reason = match negotiated {
        Some(Ok(Negotiated::Frames {
            transport,
            reader,
            writer,
            framing,
            buffered,
        })) => {
            if negotiated_at_all {
                let ready = SessionEvent::Ready {
                    session: id,
                    transport,
                };
                if events.send(ready).await.is_err() {
                    shared.cancel.cancel();
                    return;
                }
            }
            let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
            // A socket of its own writes through at once; TLS keeps what it is given until
            // flushed.
            let flush = !matches!(transport, Transport::Tcp | Transport::Ws);
            tracker.spawn(write_loop(
                writer,
                outbound,
                control_rx,
                (framing, flush),
                shared.clone(),
            ));
            let frames = FrameCodec::new(config.max_packet_size);
            let deframer = match (framing, &config.negotiation) {
                (Framing::WebSocket(role), Negotiation::Accept(side)) => {
                    let max = side.web.as_ref().map_or(0, |w| w.max_message);
                    Deframer::WebSocket(WsDecoder::new(role, max, frames))
                }
                (Framing::WebSocket(role), Negotiation::Connect(side)) => {
                    let max = side.websocket.as_ref().map_or(0, |w| w.max_message);
                    Deframer::WebSocket(WsDecoder::new(role, max, frames))
                }
                _ => Deframer::Raw(frames, false),
            };
            let reader: BoxRead = if buffered.is_empty() {
                reader
            } else {
                Box::pin(AsyncReadExt::chain(std::io::Cursor::new(buffered), reader))
            };
            let reading = Reading {
                id,
                linger: config.linger,
                events: &events,
                shared: &shared,
                control: control_tx,
            };
            if !reading
                .run(FramedRead::with_capacity(reader, deframer, 8 * 1024))
                .await
            {
                return;
            }
            None
        }
        Some(Ok(Negotiated::Answered { transport, reason })) => {
            let ready = SessionEvent::Ready {
                session: id,
                transport,
            };
            let _ = events.send(ready).await;
            Some(reason)
        }
        Some(Err(reason)) => Some(reason),
        // The owner closed it first: its reason stands.
        None => None,
    };
    if let Some(reason) = reason {
        shared.set_reason(reason);
    }
    shared.cancel.cancel();
    let _ = events
        .send(SessionEvent::Closed {
            session: id,
            reason: shared.reason(),
        })
        .await;
}

/// Runs a negotiation for at most `timeout`; `None` when the owner closes the session first.
async fn bounded(
    shared: &Shared,
    timeout: Duration,
    negotiation: impl std::future::Future<Output = Result<Negotiated, DisconnectReason>>,
) -> Option<Result<Negotiated, DisconnectReason>> {
    tokio::select! {
        biased;
        _ = shared.cancel.cancelled() => None,
        _ = shared.closing.cancelled() => None,
        done = tokio::time::timeout(timeout, negotiation) => Some(done.unwrap_or_else(|_| {
            Err(DisconnectReason::Handshake(format!(
                "the connection was not set up within {} s",
                timeout.as_secs_f64()
            )))
        })),
    }
}

/// Control frames the read task asks the write task to send (WebSocket only).
#[derive(Debug)]
enum Control {
    /// Answer a ping.
    Pong(Bytes),
}

/// Control frames waiting for the writer at most; a ping past it goes unanswered (a peer is
/// owed a pong for its latest ping only).
const CONTROL_QUEUE: usize = 4;

/// The decoder of the read task: frames back to back (and whether the stream's start was
/// checked for a TLS ClientHello), or in WebSocket messages.
enum Deframer {
    Raw(FrameCodec, bool),
    WebSocket(WsDecoder),
}

impl Decoder for Deframer {
    type Item = Incoming;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Incoming>, CodecError> {
        match self {
            Deframer::Raw(codec, checked) => {
                if !*checked {
                    // A TLS client at a port of plain frames is told at once, not waited on.
                    match crate::codec::is_client_hello(src) {
                        None => return Ok(None),
                        Some(true) => return Err(FrameError::TlsHandshake.into()),
                        Some(false) => *checked = true,
                    }
                }
                Ok(codec.decode(src)?.map(Incoming::Packet))
            }
            Deframer::WebSocket(ws) => ws.decode(src),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Incoming>, CodecError> {
        match self.decode(src)? {
            Some(item) => Ok(Some(item)),
            None if src.is_empty() => Ok(None),
            None => Err(FrameError::Truncated(src.len()).into()),
        }
    }
}

/// The read task of a set-up session.
struct Reading<'a> {
    id: SessionId,
    linger: Duration,
    events: &'a mpsc::Sender<SessionEvent>,
    shared: &'a Shared,
    control: mpsc::Sender<Control>,
}

impl Reading<'_> {
    /// Reads until the session ends; `false` when the owner is gone and nobody is left to
    /// tell.
    async fn run(self, mut frames: FramedRead<BoxRead, Deframer>) -> bool {
        let shared = self.shared;
        let websocket = matches!(frames.decoder(), Deframer::WebSocket(_));
        let mut credit = false;
        let ending = loop {
            // A credit first: without one the socket is not read and TCP pushes back on the
            // peer.
            if !credit {
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
                credit = true;
            }
            let next = tokio::select! {
                biased;
                _ = shared.cancel.cancelled() => break None,
                _ = shared.closing.cancelled() => break None,
                next = frames.next() => next,
            };
            match next {
                Some(Ok(Incoming::Packet(packet))) => {
                    credit = false;
                    let event = SessionEvent::Received {
                        session: self.id,
                        packet,
                        at: Instant::now(),
                    };
                    if self.events.send(event).await.is_err() {
                        shared.cancel.cancel();
                        return false;
                    }
                }
                Some(Ok(Incoming::Ping(payload))) => {
                    let _ = self.control.try_send(Control::Pong(payload));
                }
                Some(Ok(Incoming::Pong)) => {}
                // The peer's close is answered with ours, gracefully.
                Some(Ok(Incoming::Close(_))) => break Some((DisconnectReason::PeerClosed, true)),
                Some(Err(CodecError::WebSocket(error))) => {
                    break Some((DisconnectReason::WebSocket(error), true))
                }
                Some(Err(CodecError::Frame(error))) => {
                    break Some((DisconnectReason::Protocol(error), websocket))
                }
                Some(Err(CodecError::Io(error))) => break Some((io_reason(&error), false)),
                None => break Some((DisconnectReason::PeerClosed, false)),
            }
        };
        match ending {
            // Over WebSocket, a protocol error or the peer's close gets a close frame: the
            // writer sends it after what is queued, as in a close by the owner.
            Some((reason, true)) => {
                shared.set_reason(reason);
                shared.closing.cancel();
                self.linger(&mut frames).await;
            }
            Some((reason, false)) => {
                shared.set_reason(reason);
                shared.cancel.cancel();
            }
            None if !shared.cancel.is_cancelled() => self.linger(&mut frames).await,
            None => {}
        }
        true
    }

    /// A graceful close. Input is still read, and dropped, until the writer has flushed and
    /// the peer has closed its side (or the linger time is up): closing a socket with unread
    /// input would send a reset, which can destroy the last frames in flight.
    async fn linger(&self, frames: &mut FramedRead<BoxRead, Deframer>) {
        let shared = self.shared;
        let deadline = tokio::time::sleep(self.linger);
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
}

/// Frames taken from the queue for one write call at most; above `IOV_MAX` the kernel refuses.
const MAX_SLICES: usize = 512;

/// The write task: batches as they come, control frames in between, and at a graceful close
/// what is queued, then (over WebSocket) a close frame, then the end of this side.
async fn write_loop(
    mut writer: BoxWrite,
    mut outbound: mpsc::Receiver<Vec<Bytes>>,
    mut control: mpsc::Receiver<Control>,
    (framing, flush): (Framing, bool),
    shared: Arc<Shared>,
) {
    let mut frames: Vec<Bytes> = Vec::new();
    let mut scratch = BytesMut::new();
    let mut closing = false;
    // Only over WebSocket does the read task ask for pongs or close gracefully itself: frames
    // on a socket wait on the outbound queue alone, as cheaply as before there was anything
    // else to wait on.
    let websocket = framing != Framing::Raw;
    loop {
        let batch = if closing {
            // Closing with the owner's sender still held (the read task ended it): what is
            // queued now is the last.
            outbound.try_recv().ok()
        } else {
            tokio::select! {
                biased;
                _ = shared.cancel.cancelled() => return,
                Some(Control::Pong(payload)) = control.recv(), if websocket => {
                    scratch.clear();
                    ws::encode_control(role(framing), ws::opcode::PONG, &payload, &mut scratch);
                    let pong = scratch.split().freeze();
                    if write_or_end(&mut writer, &mut [pong], &shared, flush).await.is_err() {
                        return;
                    }
                    continue;
                }
                batch = outbound.recv() => batch,
                _ = shared.closing.cancelled(), if websocket => {
                    closing = true;
                    continue;
                }
            }
        };
        let Some(batch) = batch else { break };
        frames.clear();
        if framing != Framing::Raw {
            frames.push(Bytes::new()); // the message header, below
        }
        frames.extend(batch);
        // Whatever else is queued goes in the same write.
        while frames.len() < MAX_SLICES {
            match outbound.try_recv() {
                Ok(more) => frames.extend(more),
                Err(_) => break,
            }
        }
        let len: usize = frames.iter().map(Bytes::len).sum();
        match framing {
            Framing::Raw => {}
            Framing::WebSocket(Role::Server) => {
                // One binary message: its header, then the frames as they are.
                scratch.clear();
                ws::encode_header(true, ws::opcode::BINARY, len, None, &mut scratch);
                frames[0] = scratch.split().freeze();
            }
            Framing::WebSocket(Role::Client) => {
                // A client masks: one copy, into one buffer.
                scratch.clear();
                ws::encode_masked(ws::opcode::BINARY, &frames[1..], &mut scratch);
                frames.clear();
                frames.push(scratch.split().freeze());
            }
        }
        let result = write_or_end(&mut writer, &mut frames, &shared, flush).await;
        shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
        // The written frames are views into the owner's arena chunks: holding them until the
        // next batch would keep an idle session's last chunk alive.
        frames.clear();
        if result.is_err() {
            return;
        }
    }
    // Everything is written. Over WebSocket, say why in a close frame; then close this side.
    // The reader ends the session once the peer has closed too.
    if let Framing::WebSocket(role) = framing {
        let reason = shared.reason();
        scratch.clear();
        ws::encode_close(role, close_code(&reason), &reason.to_string(), &mut scratch);
        let close = scratch.split().freeze();
        if write_or_end(&mut writer, &mut [close], &shared, flush)
            .await
            .is_err()
        {
            return;
        }
    }
    tokio::select! {
        _ = shared.cancel.cancelled() => {}
        _ = writer.shutdown() => {}
    }
    shared.flushed.cancel();
    // Keep the write half (dropping it is harmless after shutdown) until the session ends.
    shared.cancel.cancelled().await;
}

fn role(framing: Framing) -> Role {
    match framing {
        Framing::WebSocket(role) => role,
        Framing::Raw => Role::Server,
    }
}

/// Writes `frames` (and flushes, where the writer keeps what it was given: TLS) unless the
/// session is cancelled; a failed write ends the session.
async fn write_or_end(
    writer: &mut BoxWrite,
    frames: &mut [Bytes],
    shared: &Shared,
    flush: bool,
) -> Result<(), ()> {
    let result = tokio::select! {
        biased;
        _ = shared.cancel.cancelled() => return Err(()),
        result = async {
            write_all_vectored(writer, frames).await?;
            if flush {
                writer.flush().await?;
            }
            Ok::<(), io::Error>(())
        } => result,
    };
    result.map_err(|error| {
        shared.set_reason(io_reason(&error));
        shared.cancel.cancel();
    })
}

/// Writes every byte of `frames` with as few vectored writes as the socket allows.
async fn write_all_vectored(writer: &mut BoxWrite, frames: &mut [Bytes]) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every session's task lives as long as its connection: the negotiations (TLS state,
    /// HTTP buffers, some kilobytes) must not sit in it once they are done.
    #[tokio::test]
    async fn a_sessions_task_holds_no_negotiation_state() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (events, _) = mpsc::channel(1);
        let (_, outbound) = mpsc::channel(1);
        let shared = Arc::new(Shared {
            queued_bytes: AtomicUsize::new(0),
            credit: Semaphore::new(1),
            cancel: CancellationToken::new(),
            closing: CancellationToken::new(),
            flushed: CancellationToken::new(),
            reason: Mutex::new(None),
        });
        let config = SessionConfig::default();
        let task = drive(
            SessionId(1),
            stream,
            config,
            events,
            shared,
            outbound,
            TaskTracker::new(),
        );
        let size = std::mem::size_of_val(&task);
        assert!(size < 2048, "a session's task takes {size} bytes");
    }
}
