//! One connection, whatever carries its frames: TCP, TLS, WebSocket.
//!
//! A connection of plain frames over TCP (no TLS, no HTTP to tell apart) is the common case
//! and the cheapest: one read task, which reads the socket when it is readable into a buffer
//! of its thread and keeps only the bytes of a frame not yet whole, so an idle session holds
//! no buffer; and its owner writes each batch to the socket itself, with one non-blocking
//! vectored write, while nothing waits to be written. Only what the socket does not take at
//! once goes to a write task, spawned the first time it is needed, and later batches queue
//! behind it until it has written everything (order is kept).
//!
//! Any other connection is first set up as [`SessionConfig::negotiation`] says (see
//! [`crate::transport`]): a TLS handshake, the detection of what the client speaks, a
//! WebSocket upgrade or an HTTP answer for a server's port; a TLS handshake and an upgrade for
//! a client. Batches the owner sends meanwhile wait in the outbound queue, and a write task
//! writes every batch. A negotiated session reports [`SessionEvent::Ready`] with its
//! [`Transport`].
//!
//! The read task decodes frames and hands them to the owner as [`SessionEvent::Received`] on
//! a queue shared by all sessions. Inbound is bounded twice: the shared queue has a capacity,
//! and each session holds a number of credits (`inbound_credit`): one is spent per frame and
//! given back by the owner once it has processed the frame. A session out of credits stops
//! reading, so a peer that sends faster than the owner processes meets TCP backpressure and
//! cannot take more than its share of a tick.
//!
//! Batches are written with vectored writes. Outbound is bounded in batches and in bytes
//! waiting for the write task; the owner's [`Session::send`] refuses a batch that would pass
//! either bound, and the owner then disconnects the slow consumer, so a client that stops
//! reading never grows the owner's memory.
//!
//! Over WebSocket, each batch is one binary message; pings are answered, and a close is a
//! close frame with a code saying why ([`close_code`]), both ways.
//!
//! A session ends exactly once, with one [`SessionEvent::Closed`] carrying the first
//! [`DisconnectReason`] recorded: the peer's, the socket's, or the owner's.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio_util::codec::{Decoder, FramedRead};
use tokio_util::task::TaskTracker;

use crate::codec::{CodecError, FrameCodec, FrameError, Packet};
use crate::transport::{
    self, BoxRead, BoxWrite, Framing, Negotiated, Negotiation, SharedTcp, Transport,
};
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
    /// Frames the reader may still hand over: it takes one per frame, the owner gives them
    /// back.
    credit: AtomicUsize,
    /// The read task, waiting for a credit or the end: woken when credits are given back and
    /// when the session closes or ends.
    reader: AtomicWaker,
    /// Whether the session is cancelled, closing, flushed.
    signals: Signals,
    reason: Mutex<Option<DisconnectReason>>,
}

/// A session's flags: set once, never cleared, waited on by its tasks. One waiter list for
/// all three (a waiter looks at its own flag when woken): what cancellation tokens would do,
/// without their tree and its allocations.
struct Signals {
    set: AtomicU8,
    notify: Notify,
}

/// One of a session's [`Signals`].
#[derive(Clone, Copy)]
enum Flag {
    /// Both tasks stop at once.
    Cancel = 1,
    /// The owner asked for a graceful close (or the session ended): the writer flushes, the
    /// reader discards input.
    Closing = 2,
    /// The writer has written everything and closed its side (after a graceful close).
    Flushed = 4,
}

impl Signals {
    fn is_set(&self, flag: Flag) -> bool {
        self.set.load(Ordering::Acquire) & flag as u8 != 0
    }

    /// Sets `flags` and wakes whoever waits on any flag.
    fn set(&self, flags: u8) {
        if self.set.fetch_or(flags, Ordering::AcqRel) & flags != flags {
            self.notify.notify_waiters();
        }
    }

    /// Waits until `flag` is set.
    async fn wait(&self, flag: Flag) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the look: a `set` in between wakes it.
            notified.as_mut().enable();
            if self.is_set(flag) {
                return;
            }
            notified.await;
        }
    }
}

impl Shared {
    fn new(credit: usize) -> Shared {
        Shared {
            queued_bytes: AtomicUsize::new(0),
            credit: AtomicUsize::new(credit.max(1)),
            reader: AtomicWaker::new(),
            signals: Signals {
                set: AtomicU8::new(0),
                notify: Notify::new(),
            },
            reason: Mutex::new(None),
        }
    }

    /// Ends the session: both tasks stop (cancelling closes too).
    fn cancel(&self) {
        self.signals.set(Flag::Cancel as u8 | Flag::Closing as u8);
        self.reader.wake();
    }

    /// A graceful close: the reader stops taking frames, the writer flushes.
    fn close(&self) {
        self.signals.set(Flag::Closing as u8);
        self.reader.wake();
    }

    /// Ready once the session is closing (or has ended), for the read task: no waiter is
    /// queued, its waker is kept in `reader`.
    fn poll_closing(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.reader.register(cx.waker());
        match self.signals.is_set(Flag::Closing) {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    }

    /// Takes a credit if there is one.
    fn take_credit(&self) -> bool {
        self.credit
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Takes a credit, waiting for the owner to give one back; `false` if the session closes
    /// first.
    fn poll_credit(&self, cx: &mut Context<'_>) -> Poll<bool> {
        if self.take_credit() {
            return Poll::Ready(true);
        }
        self.reader.register(cx.waker());
        // Given back (or closed) between the first look and the registration: not missed.
        if self.take_credit() {
            Poll::Ready(true)
        } else if self.signals.is_set(Flag::Closing) {
            Poll::Ready(false)
        } else {
            Poll::Pending
        }
    }

    /// Ends the session on a failed write.
    fn write_failed(&self, error: &io::Error) {
        self.set_reason(io_reason(error));
        self.cancel();
    }

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
    outbound: Outbound,
    max_outbound_bytes: usize,
    shared: Arc<Shared>,
}

/// Where a session's batches go.
enum Outbound {
    /// To the write task (TLS, WebSocket: what the negotiation made).
    Queue(mpsc::Sender<Vec<Bytes>>),
    /// Straight to the plain TCP socket from the owner's thread, while nothing waits to be
    /// written. What the socket does not take at once goes to a write task, spawned on
    /// `tracker` the first time it is needed: an idle session, or one whose peer reads as fast
    /// as it is sent to, has no write task and no queue.
    Direct {
        socket: Arc<TcpStream>,
        writer: OnceLock<mpsc::Sender<Vec<Bytes>>>,
        tracker: TaskTracker,
        batches: usize,
    },
    /// Closing or closed: nothing more is sent.
    Closed,
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
        let _ = stream.set_nodelay(true);
        let shared = Arc::new(Shared::new(config.inbound_credit));
        let outbound = if config.negotiation.is_plain() {
            // Frames from the first byte: no negotiation, and the socket is shared at once.
            let socket = Arc::new(stream);
            let plain = Plain {
                id,
                max_packet_size: config.max_packet_size,
                linger: config.linger,
                ready: !matches!(config.negotiation, Negotiation::Frames),
            };
            tracker.spawn(plain.read(socket.clone(), events, shared.clone()));
            Outbound::Direct {
                socket,
                writer: OnceLock::new(),
                tracker: tracker.clone(),
                batches: config.outbound_batches,
            }
        } else {
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
            Outbound::Queue(tx)
        };
        Session {
            id,
            outbound,
            max_outbound_bytes: config.max_outbound_bytes,
            shared,
        }
    }

    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// Bytes handed to the write task and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.shared.queued_bytes.load(Ordering::Relaxed)
    }

    /// Whether the session has been asked to close or has ended.
    pub fn is_closing(&self) -> bool {
        matches!(self.outbound, Outbound::Closed) || self.shared.signals.is_set(Flag::Cancel)
    }

    /// Sends one batch of frames with vectored writes, taking them out of `frames` (which
    /// keeps its capacity, for the next batch). Never waits: over plain TCP, while nothing
    /// waits to be written, the batch is written at once, and only what the socket does not
    /// take now goes to the write task. A batch that would take the bytes not yet written past
    /// `max_outbound_bytes` (or the batches past `outbound_batches`) is refused with
    /// [`SendError::SlowConsumer`], and the owner is expected to [`abort`](Session::abort)
    /// the session. A batch sent when nothing is waiting to be written is always taken,
    /// however large.
    pub fn send(&self, frames: &mut Vec<Bytes>) -> Result<(), SendError> {
        if frames.is_empty() && !matches!(self.outbound, Outbound::Closed) {
            return Ok(());
        }
        let frames: Vec<Bytes> = match &self.outbound {
            Outbound::Closed => {
                frames.clear();
                return Err(SendError::Closed);
            }
            // Nothing is queued, so nothing a write task holds can come after this.
            // (Without a write task nothing can be queued: the shared count is not read.)
            Outbound::Direct { socket, writer, .. }
                if writer.get().is_none()
                    || self.shared.queued_bytes.load(Ordering::Acquire) == 0 =>
            {
                match write_now(socket, frames) {
                    Ok(written) if written == frames.len() => {
                        frames.clear();
                        return Ok(());
                    }
                    Ok(written) => frames.drain(written..).collect(),
                    Err(error) => {
                        frames.clear();
                        self.shared.write_failed(&error);
                        return Err(SendError::Closed);
                    }
                }
            }
            _ => std::mem::take(frames),
        };
        let outbound = match &self.outbound {
            Outbound::Queue(queue) => queue,
            Outbound::Direct {
                socket,
                writer,
                tracker,
                batches,
            } => writer.get_or_init(|| self.spawn_writer(socket, tracker, *batches)),
            Outbound::Closed => unreachable!("a closed session returned above"),
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

    /// The write task of a plain TCP session, for what its socket did not take at once.
    fn spawn_writer(
        &self,
        socket: &Arc<TcpStream>,
        tracker: &TaskTracker,
        batches: usize,
    ) -> mpsc::Sender<Vec<Bytes>> {
        let (tx, rx) = mpsc::channel(batches.max(1));
        tracker.spawn(write_loop(
            Box::pin(SharedTcp(socket.clone())),
            rx,
            None,
            (Framing::Raw, false),
            self.shared.clone(),
        ));
        tx
    }

    /// No more batches: a write task writes what it holds, then closes the sending side (as
    /// this does at once when nothing is held).
    fn end_sending(&mut self) {
        if let Outbound::Direct { socket, writer, .. } = &self.outbound {
            if writer.get().is_none() {
                let _ = SharedTcp::shutdown(socket);
                self.shared.signals.set(Flag::Flushed as u8);
            }
        }
        self.outbound = Outbound::Closed;
    }

    /// Gives back `n` inbound credits: the owner has processed `n` frames of this session.
    pub fn release_credit(&self, n: usize) {
        // The reader waits for a credit only when it has none: credits given back while it
        // has some do not wake it (it may be waiting for input, with the same waker).
        if n > 0 && self.shared.credit.fetch_add(n, Ordering::AcqRel) == 0 {
            self.shared.reader.wake();
        }
    }

    /// Closes gracefully: stops reading, writes what is queued (for at most the linger time),
    /// then closes the socket. `reason` is reported unless the session ended already.
    pub fn close(&mut self, reason: DisconnectReason) {
        self.shared.set_reason(reason);
        if !matches!(self.outbound, Outbound::Closed) {
            self.end_sending();
        }
        self.shared.close();
    }

    /// Closes at once, dropping whatever is queued.
    pub fn abort(&mut self, reason: DisconnectReason) {
        self.shared.set_reason(reason);
        self.outbound = Outbound::Closed;
        self.shared.cancel();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !matches!(self.outbound, Outbound::Closed) {
            self.end_sending();
        }
        self.shared.close();
    }
}

/// The read task of a plain TCP session: what a session is while it is idle, so it holds no
/// buffer and nothing of a negotiation.
struct Plain {
    id: SessionId,
    max_packet_size: usize,
    linger: Duration,
    /// Whether to report [`SessionEvent::Ready`] (a port that could have negotiated).
    ready: bool,
}

impl Plain {
    /// The read task of `socket`.
    fn read(
        self,
        socket: Arc<TcpStream>,
        events: mpsc::Sender<SessionEvent>,
        shared: Arc<Shared>,
    ) -> PlainRead {
        PlainRead::Reading(PlainReader {
            id: self.id,
            linger: self.linger,
            events,
            shared,
            source: Source::Tcp(TcpSource {
                socket,
                deframer: Deframer::Raw(FrameCodec::new(self.max_packet_size), false),
                pending: BytesMut::new(),
                eof: false,
            }),
            credit: false,
            ready: self.ready,
            delivering: None,
        })
    }
}

/// The read task of a plain TCP session, written as a future of its own rather than an `async
/// fn` (which keeps copies of its arguments, and room for the largest of its waits, in every
/// state): it is what a session is while idle, so it is kept as small as it can be. Its rare
/// waits (for room in the owner's queue, and the end) are on the heap while they last.
enum PlainRead {
    Reading(PlainReader),
    /// The end: a graceful close's linger, then the owner is told.
    Ending(Wait<()>),
    Done,
}

struct PlainReader {
    id: SessionId,
    linger: Duration,
    events: mpsc::Sender<SessionEvent>,
    shared: Arc<Shared>,
    source: Source,
    /// Whether a credit is held for the next frame.
    credit: bool,
    /// Whether [`SessionEvent::Ready`] is still to be reported.
    ready: bool,
    /// An event waiting for room in the owner's queue.
    delivering: Option<Wait<Result<(), Gone>>>,
}

/// A rare wait of a plain session's read task, on the heap while it lasts.
type Wait<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The owner is gone: nobody is left to hand events to.
struct Gone;

impl Future for PlainRead {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let ending = match this {
            PlainRead::Reading(reader) => match ready!(reader.poll_read(cx)) {
                Ok(ending) => ending,
                Err(Gone) => {
                    reader.shared.cancel();
                    return Poll::Ready(());
                }
            },
            PlainRead::Ending(end) => return end.as_mut().poll(cx),
            PlainRead::Done => return Poll::Ready(()),
        };
        if let PlainRead::Reading(reader) = std::mem::replace(this, PlainRead::Done) {
            *this = PlainRead::Ending(Box::pin(reader.end(ending)));
        }
        self.poll(cx)
    }
}

impl PlainReader {
    /// Reads until the session ends, handing frames to the owner; how it ended.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<Ending, Gone>> {
        loop {
            if let Some(wait) = &mut self.delivering {
                ready!(wait.as_mut().poll(cx))?;
                self.delivering = None;
            }
            if self.ready {
                self.ready = false;
                let ready = SessionEvent::Ready {
                    session: self.id,
                    transport: Transport::Tcp,
                };
                self.deliver(ready)?;
                continue;
            }
            match ready!(poll_step(
                &self.shared,
                &mut self.source,
                &mut self.credit,
                cx
            )) {
                Step::Packet(packet) => self.deliver(received(self.id, packet))?,
                Step::Ping(_) => {}
                Step::End(ending) => return Poll::Ready(Ok(ending)),
            }
        }
    }

    /// Hands `event` to the owner, or starts waiting for room in its queue.
    fn deliver(&mut self, event: SessionEvent) -> Result<(), Gone> {
        self.delivering = hand_over(&self.events, event)?;
        Ok(())
    }

    async fn end(mut self, ending: Ending) {
        let reading = Reading {
            id: self.id,
            linger: self.linger,
            events: &self.events,
            shared: &self.shared,
            control: None,
        };
        reading.end(&mut self.source, ending).await;
        finish(self.id, &self.events, &self.shared, None).await;
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
                    shared.cancel();
                    return;
                }
            }
            // Pongs, which only the WebSocket's reader asks for.
            let (control_tx, control_rx) = match framing {
                Framing::WebSocket(_) => {
                    let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
                    (Some(tx), Some(rx))
                }
                Framing::Raw => (None, None),
            };
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
            let reading = Reading {
                id,
                linger: config.linger,
                events: &events,
                shared: &shared,
                control: control_tx,
            };
            let deframer = match (framing, &config.negotiation) {
                (Framing::WebSocket(role), Negotiation::Accept(side)) => {
                    let max = side.web.as_ref().map_or(0, |w| w.max_message);
                    Deframer::WebSocket(Box::new(WsDecoder::new(role, max, frames)))
                }
                (Framing::WebSocket(role), Negotiation::Connect(side)) => {
                    let max = side.websocket.as_ref().map_or(0, |w| w.max_message);
                    Deframer::WebSocket(Box::new(WsDecoder::new(role, max, frames)))
                }
                _ => Deframer::Raw(frames, false),
            };
            let reader: BoxRead = if buffered.is_empty() {
                reader
            } else {
                Box::pin(AsyncReadExt::chain(std::io::Cursor::new(buffered), reader))
            };
            let framed = FramedRead::with_capacity(reader, deframer, READ_CHUNK);
            if !reading.run(Source::Framed(Box::new(framed))).await {
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
    finish(id, &events, &shared, reason).await;
}

/// Ends the session: records `reason` (unless one was first), stops both tasks, and tells the
/// owner.
async fn finish(
    id: SessionId,
    events: &mpsc::Sender<SessionEvent>,
    shared: &Shared,
    reason: Option<DisconnectReason>,
) {
    if let Some(reason) = reason {
        shared.set_reason(reason);
    }
    shared.cancel();
    let _ = events
        .send(SessionEvent::Closed {
            session: id,
            reason: shared.reason(),
        })
        .await;
}

/// Hands `event` to the owner at once while its queue has room; else the wait for room, on the
/// heap while it lasts (a read task does not carry room for it all its life).
fn hand_over(
    events: &mpsc::Sender<SessionEvent>,
    event: SessionEvent,
) -> Result<Option<Wait<Result<(), Gone>>>, Gone> {
    match events.try_send(event) {
        Ok(()) => Ok(None),
        Err(mpsc::error::TrySendError::Full(event)) => {
            let events = events.clone();
            Ok(Some(Box::pin(async move {
                events.send(event).await.map_err(|_| Gone)
            })))
        }
        Err(mpsc::error::TrySendError::Closed(_)) => Err(Gone),
    }
}

/// Hands `event` to the owner, waiting for room if need be.
async fn deliver(events: &mpsc::Sender<SessionEvent>, event: SessionEvent) -> Result<(), Gone> {
    match hand_over(events, event)? {
        None => Ok(()),
        Some(wait) => wait.await,
    }
}

/// Bytes read from a socket at most at once: a frame at its largest.
const READ_CHUNK: usize = 8 * 1024;

thread_local! {
    /// Where plain TCP sessions read into, one per thread: a session keeps only what it read
    /// (a copy of exactly those bytes), and nothing while idle.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// What a session reads frames from.
enum Source {
    /// A stream through its decoder (TLS, WebSocket); boxed, so that a plain session's task
    /// is not as large as this.
    Framed(Box<FramedRead<BoxRead, Deframer>>),
    /// A plain TCP socket.
    Tcp(TcpSource),
}

/// A plain TCP socket read on readiness: what is there is read into the thread's scratch
/// buffer, and the session keeps a copy of only those bytes until they are whole frames, so an
/// idle session holds no buffer.
struct TcpSource {
    socket: Arc<TcpStream>,
    deframer: Deframer,
    /// Bytes read and not yet a whole frame; empty (no allocation) between frames.
    pending: BytesMut,
    eof: bool,
}

impl TcpSource {
    /// The next frame (or the end, or an error) if it can be had without waiting.
    fn try_next(&mut self) -> Option<Option<Result<Incoming, CodecError>>> {
        loop {
            if !self.pending.is_empty() {
                match self.deframer.decode(&mut self.pending) {
                    Ok(Some(item)) => {
                        if self.pending.is_empty() {
                            // Let go of the buffer the frame is a view of.
                            self.pending = BytesMut::new();
                        }
                        return Some(Some(Ok(item)));
                    }
                    Ok(None) => {}
                    Err(error) => return Some(Some(Err(error))),
                }
            }
            if self.eof {
                return Some(match self.pending.len() {
                    0 => None,
                    left => Some(Err(FrameError::Truncated(left).into())),
                });
            }
            let read = SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let mut got = 0;
                let read = self.socket.try_io(tokio::io::Interest::READABLE, || {
                    use std::io::Read;
                    got = (&*socket2::SockRef::from(&*self.socket)).read(&mut scratch)?;
                    self.pending.extend_from_slice(&scratch[..got]);
                    if got > 0 && got < scratch.len() {
                        // The socket is drained: say so, so that the next read waits for
                        // readiness instead of asking the kernel again for nothing.
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    Ok(got)
                });
                if got > 0 {
                    Ok(got)
                } else {
                    read
                }
            });
            match read {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return None,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Some(Some(Err(CodecError::Io(error)))),
            }
        }
    }
}

impl Source {
    /// The next frame (or the end, or an error) if it can be had without waiting.
    fn try_next(&mut self) -> Option<Option<Result<Incoming, CodecError>>> {
        match self {
            Source::Framed(_) => None,
            Source::Tcp(tcp) => tcp.try_next(),
        }
    }

    /// The next frame, the end, or an error, once there is one.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Incoming, CodecError>>> {
        match self {
            Source::Framed(framed) => framed.poll_next_unpin(cx),
            Source::Tcp(tcp) => loop {
                if let Some(next) = tcp.try_next() {
                    return Poll::Ready(next);
                }
                match tcp.socket.poll_read_ready(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(error)) => {
                        return Poll::Ready(Some(Err(CodecError::Io(error))))
                    }
                    Poll::Pending => return Poll::Pending,
                }
            },
        }
    }

    /// The next frame, the end, or an error, waiting for it.
    async fn next(&mut self) -> Option<Result<Incoming, CodecError>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    fn is_websocket(&self) -> bool {
        matches!(self, Source::Framed(framed) if matches!(framed.decoder(), Deframer::WebSocket(_)))
    }
}

/// Runs a negotiation for at most `timeout`; `None` when the owner closes the session first.
async fn bounded(
    shared: &Shared,
    timeout: Duration,
    negotiation: impl std::future::Future<Output = Result<Negotiated, DisconnectReason>>,
) -> Option<Result<Negotiated, DisconnectReason>> {
    tokio::select! {
        biased;
        // Cancelling closes too.
        _ = shared.signals.wait(Flag::Closing) => None,
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
    WebSocket(Box<WsDecoder>),
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

/// How a read loop ended: why, and whether the close is graceful (the writer sends what is
/// queued first); `None` when the owner closed the session.
type Ending = Option<(DisconnectReason, bool)>;

/// What a read loop comes to next.
enum Step {
    /// A frame for the owner (its credit is spent).
    Packet(Packet),
    /// A ping to answer (WebSocket).
    Ping(Bytes),
    /// The loop is over.
    End(Ending),
}

/// One step of a read loop: a credit first (without one the socket is not read, and TCP
/// pushes back on the peer), then the next frame, unless the session closes first. Both waits
/// keep their waker in the shared state and the socket: an idle session's task holds no
/// waiter of its own.
fn poll_step(
    shared: &Shared,
    frames: &mut Source,
    credit: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<Step> {
    loop {
        if !*credit {
            if !ready!(shared.poll_credit(cx)) {
                return Poll::Ready(Step::End(None));
            }
            *credit = true;
        }
        let next = match frames.try_next() {
            Some(next) => next,
            None => {
                if shared.poll_closing(cx).is_ready() {
                    return Poll::Ready(Step::End(None));
                }
                ready!(frames.poll_next(cx))
            }
        };
        let ending = match next {
            Some(Ok(Incoming::Packet(packet))) => {
                *credit = false;
                return Poll::Ready(Step::Packet(packet));
            }
            Some(Ok(Incoming::Ping(payload))) => return Poll::Ready(Step::Ping(payload)),
            Some(Ok(Incoming::Pong)) => continue,
            // The peer's close is answered with ours, gracefully.
            Some(Ok(Incoming::Close(_))) => (DisconnectReason::PeerClosed, true),
            Some(Err(CodecError::WebSocket(error))) => (DisconnectReason::WebSocket(error), true),
            Some(Err(CodecError::Frame(error))) => {
                (DisconnectReason::Protocol(error), frames.is_websocket())
            }
            Some(Err(CodecError::Io(error))) => (io_reason(&error), false),
            None => (DisconnectReason::PeerClosed, false),
        };
        return Poll::Ready(Step::End(Some(ending)));
    }
}

/// The event of a frame `packet` of session `id`, read now.
fn received(id: SessionId, packet: Packet) -> SessionEvent {
    SessionEvent::Received {
        session: id,
        packet,
        at: Instant::now(),
    }
}

/// The read task of a set-up session.
struct Reading<'a> {
    id: SessionId,
    linger: Duration,
    events: &'a mpsc::Sender<SessionEvent>,
    shared: &'a Shared,
    control: Option<mpsc::Sender<Control>>,
}

impl Reading<'_> {
    /// Reads until the session ends; `false` when the owner is gone and nobody is left to
    /// tell.
    async fn run(self, mut frames: Source) -> bool {
        let mut credit = false;
        let ending = loop {
            let step =
                std::future::poll_fn(|cx| poll_step(self.shared, &mut frames, &mut credit, cx));
            match step.await {
                Step::Packet(packet) => {
                    if deliver(self.events, received(self.id, packet))
                        .await
                        .is_err()
                    {
                        self.shared.cancel();
                        return false;
                    }
                }
                Step::Ping(payload) => {
                    if let Some(control) = &self.control {
                        let _ = control.try_send(Control::Pong(payload));
                    }
                }
                Step::End(ending) => break ending,
            }
        };
        self.end(&mut frames, ending).await;
        true
    }

    /// The read loop is over: a graceful close lingers, anything else ends the session.
    async fn end(&self, frames: &mut Source, ending: Ending) {
        let shared = self.shared;
        match ending {
            // Over WebSocket, a protocol error or the peer's close gets a close frame: the
            // writer sends it after what is queued, as in a close by the owner.
            Some((reason, true)) => {
                shared.set_reason(reason);
                shared.close();
                Box::pin(self.linger(frames)).await;
            }
            Some((reason, false)) => {
                shared.set_reason(reason);
                shared.cancel();
            }
            None if !shared.signals.is_set(Flag::Cancel) => Box::pin(self.linger(frames)).await,
            None => {}
        }
    }

    /// A graceful close. Input is still read, and dropped, until the writer has flushed and
    /// the peer has closed its side (or the linger time is up): closing a socket with unread
    /// input would send a reset, which can destroy the last frames in flight.
    async fn linger(&self, frames: &mut Source) {
        let shared = self.shared;
        let deadline = tokio::time::sleep(self.linger);
        tokio::pin!(deadline);
        let mut eof = false;
        while !(eof && shared.signals.is_set(Flag::Flushed)) {
            tokio::select! {
                _ = &mut deadline => break,
                _ = shared.signals.wait(Flag::Cancel) => break,
                _ = shared.signals.wait(Flag::Flushed), if !shared.signals.is_set(Flag::Flushed) => {}
                next = frames.next(), if !eof => eof = !matches!(next, Some(Ok(_))),
            }
        }
        shared.cancel();
    }
}

/// Frames taken from the queue for one write call at most; above `IOV_MAX` the kernel refuses.
const MAX_SLICES: usize = 512;

/// The write task: batches as they come, control frames in between, and at a graceful close
/// what is queued, then (over WebSocket) a close frame, then the end of this side.
async fn write_loop(
    mut writer: BoxWrite,
    mut outbound: mpsc::Receiver<Vec<Bytes>>,
    mut control: Option<mpsc::Receiver<Control>>,
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
                _ = shared.signals.wait(Flag::Cancel) => return,
                Some(Control::Pong(payload)) = next_control(&mut control), if websocket => {
                    scratch.clear();
                    ws::encode_control(role(framing), ws::opcode::PONG, &payload, &mut scratch);
                    let pong = scratch.split().freeze();
                    if write_or_end(&mut writer, &mut [pong], &shared, flush).await.is_err() {
                        return;
                    }
                    continue;
                }
                batch = outbound.recv() => batch,
                _ = shared.signals.wait(Flag::Closing), if websocket => {
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
        // Release: an owner that then sees nothing queued may write to the socket itself.
        shared.queued_bytes.fetch_sub(len, Ordering::Release);
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
        _ = shared.signals.wait(Flag::Cancel) => {}
        _ = writer.shutdown() => {}
    }
    shared.signals.set(Flag::Flushed as u8);
    // Keep the write half (dropping it is harmless after shutdown) until the session ends.
    shared.signals.wait(Flag::Cancel).await;
}

/// The next control frame asked for; never, without a control queue.
async fn next_control(control: &mut Option<mpsc::Receiver<Control>>) -> Option<Control> {
    match control {
        Some(control) => control.recv().await,
        None => std::future::pending().await,
    }
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
        _ = shared.signals.wait(Flag::Cancel) => return Err(()),
        result = async {
            write_all_vectored(writer, frames).await?;
            if flush {
                writer.flush().await?;
            }
            Ok::<(), io::Error>(())
        } => result,
    };
    result.map_err(|error| shared.write_failed(&error))
}

/// Writes every byte of `frames` with as few vectored writes as the socket allows.
async fn write_all_vectored(writer: &mut BoxWrite, frames: &mut [Bytes]) -> io::Result<()> {
    let mut first = skip_empty(frames, 0);
    while first < frames.len() {
        let written = {
            let mut slices = [IoSlice::new(&[]); SLICES_AT_ONCE];
            let n = fill_slices(&mut slices, &frames[first..]);
            writer.write_vectored(&slices[..n]).await?
        };
        first = advance(frames, first, written)?;
    }
    Ok(())
}

/// Frames written by one call at most (the slices live on the stack); a batch of more takes
/// more calls.
const SLICES_AT_ONCE: usize = 64;

/// Writes what the socket takes of `frames` now, without waiting: how many frames were written
/// whole (the next one is advanced past what of it was written).
fn write_now(socket: &TcpStream, frames: &mut [Bytes]) -> io::Result<usize> {
    use std::io::Write;
    let mut first = skip_empty(frames, 0);
    while first < frames.len() {
        let written = {
            let mut slices = [IoSlice::new(&[]); SLICES_AT_ONCE];
            let n = fill_slices(&mut slices, &frames[first..]);
            // Straight to the kernel, as the read does: tokio's readiness flag, a line of
            // memory per socket, is read and set only by the write task, which a socket that
            // would block gets (a flag it left stale costs that task one try).
            match (&*socket2::SockRef::from(socket)).write_vectored(&slices[..n]) {
                Ok(written) => written,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(first),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        };
        first = advance(frames, first, written)?;
    }
    Ok(first)
}

/// Points `slices` at the first frames; how many it holds.
fn fill_slices<'a>(slices: &mut [IoSlice<'a>], frames: &'a [Bytes]) -> usize {
    let n = slices.len().min(frames.len());
    for (slice, frame) in slices.iter_mut().zip(frames) {
        *slice = IoSlice::new(frame);
    }
    n
}

/// Takes `written` bytes off the frames from `first` on: the first frame not written whole.
fn advance(frames: &mut [Bytes], mut first: usize, mut written: usize) -> io::Result<usize> {
    if written == 0 {
        return Err(io::ErrorKind::WriteZero.into());
    }
    while written > 0 && first < frames.len() {
        let frame = &mut frames[first];
        let take = written.min(frame.len());
        frame.advance(take);
        written -= take;
        if frame.is_empty() {
            first += 1;
        }
    }
    Ok(skip_empty(frames, first))
}

fn skip_empty(frames: &[Bytes], mut first: usize) -> usize {
    while first < frames.len() && frames[first].is_empty() {
        first += 1;
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One end of a TCP connection on loopback.
    async fn connected() -> TcpStream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap()
    }

    /// Every session's task lives as long as its connection: the negotiations (TLS state,
    /// HTTP buffers, some kilobytes) must not sit in it once they are done.
    #[tokio::test]
    async fn a_sessions_task_holds_no_negotiation_state() {
        let (events, _) = mpsc::channel(1);
        let (_, outbound) = mpsc::channel(1);
        let shared = Arc::new(Shared::new(1));
        let config = SessionConfig::default();
        let task = drive(
            SessionId(1),
            connected().await,
            config,
            events,
            shared,
            outbound,
            TaskTracker::new(),
        );
        let size = std::mem::size_of_val(&task);
        assert!(size < 2048, "a session's task takes {size} bytes");
    }

    /// A plain session's task is what an idle connection costs: its waits keep their wakers
    /// in the shared state and the socket, its rare ones (a full event queue, the linger of a
    /// close) are boxed while they last, and the decoders of TLS and WebSocket are not in it.
    #[tokio::test]
    async fn a_plain_sessions_task_is_small() {
        let (events, _) = mpsc::channel(1);
        let plain = Plain {
            id: SessionId(1),
            max_packet_size: 8192,
            linger: Duration::from_secs(1),
            ready: true,
        };
        let task = plain.read(
            Arc::new(connected().await),
            events,
            Arc::new(Shared::new(1)),
        );
        let size = std::mem::size_of_val(&task);
        assert!(size <= 160, "a plain session's task takes {size} bytes");
        let shared = std::mem::size_of::<Shared>();
        assert!(
            shared <= 128,
            "a session's shared state takes {shared} bytes"
        );
    }
}
