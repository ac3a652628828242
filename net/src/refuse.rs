//! Connections the owner does not take (server full, too many from one address): each is
//! answered with one frame saying why, then closed, at a bounded cost however many arrive.
//!
//! At most `max_in_flight` refusals are under way at once, each a small task that sets the
//! connection up as a session would (TLS, WebSocket: see [`crate::transport`]), writes the
//! frame the way the client reads frames, closes its side, and reads (and drops) what the peer
//! still sends until it closes or the linger time is up, so that the close does not reset the
//! frame away; all of it within the linger time. Past that bound a refused connection of a
//! plain port gets one non-blocking write of the frame (a fresh socket's buffer takes it) and
//! one of a TLS port nothing, and is closed at once. No session, no queue is made for it.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::transport::{self, Framing, Negotiated, Negotiation};
use crate::ws::{self, Role};

/// How a refusal was carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A task writes the frame and closes gracefully.
    Graceful,
    /// Too many refusals under way: the frame was written without waiting, and the socket
    /// closed at once.
    Immediate,
}

/// Answers and closes refused connections, at most `max_in_flight` gracefully at a time.
#[derive(Clone)]
pub struct Refuser {
    permits: Arc<Semaphore>,
    max_in_flight: usize,
    linger: Duration,
}

/// Bytes read and dropped at most per read while lingering.
const DISCARD_CHUNK: usize = 512;

impl Refuser {
    /// A refuser with `max_in_flight` graceful refusals at once, each lasting at most
    /// `linger`.
    pub fn new(max_in_flight: usize, linger: Duration) -> Self {
        let max_in_flight = max_in_flight.max(1);
        Refuser {
            permits: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            linger,
        }
    }

    /// Graceful refusals under way.
    pub fn in_flight(&self) -> usize {
        self.max_in_flight - self.permits.available_permits()
    }

    /// Sends `frame` on `stream` and closes it; never waits. `negotiation` is how the port
    /// sets its connections up.
    pub fn refuse(
        &self,
        stream: TcpStream,
        frame: Bytes,
        negotiation: &Negotiation,
        tracker: &TaskTracker,
    ) -> Refusal {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            let tls = matches!(negotiation, Negotiation::Accept(side) if side.tls.is_some());
            if !tls {
                let _ = stream.try_write(&frame);
            }
            return Refusal::Immediate;
        };
        let linger = self.linger;
        let negotiation = negotiation.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(linger, async {
                let negotiated = match &negotiation {
                    Negotiation::Accept(side) => transport::accept(side, stream, linger).await,
                    _ => Ok(Negotiated::frames(stream)),
                };
                let Ok(Negotiated::Frames {
                    reader,
                    mut writer,
                    framing,
                    ..
                }) = negotiated
                else {
                    return; // an HTTP exchange, answered; or a failed one
                };
                let mut out = BytesMut::new();
                if framing == Framing::WebSocket(Role::Server) {
                    ws::encode_header(true, ws::opcode::BINARY, frame.len(), None, &mut out);
                    out.extend_from_slice(&frame);
                    ws::encode_close(Role::Server, ws::close::POLICY, "refused", &mut out);
                } else {
                    out.extend_from_slice(&frame);
                }
                if writer.write_all(&out).await.is_err() || writer.shutdown().await.is_err() {
                    return;
                }
                let mut reader = reader;
                let mut sink = [0u8; DISCARD_CHUNK];
                while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
        });
        Refusal::Graceful
    }
}
