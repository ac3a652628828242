//! What the world sends during a tick, gathered per session and handed to the network at the
//! end of the tick as one batch per session.
//!
//! Frames are encoded into one arena buffer and split off it as `Bytes` views, so encoding a
//! message costs no allocation of its own, and a fan-out message is encoded once and shared
//! by every receiver.
//!
//! Sending is typed: only server-to-client messages can be queued. This does not compile:
//!
//! ```compile_fail
//! let mut out = world_server::outbox::Outbox::default();
//! out.send(net::SessionId(1), &protocol::world::C2sPing::default());
//! ```
//!
//! while this does:
//!
//! ```
//! let mut out = world_server::outbox::Outbox::default();
//! out.send(net::SessionId(1), &protocol::world::S2cPong::default());
//! assert_eq!(out.take(net::SessionId(1)).len(), 1);
//! ```

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use net::{DisconnectReason, SessionId};
use protocol::ServerToClient;

/// Arena chunk size: one allocation serves many frames.
const ARENA_CHUNK: usize = 64 * 1024;

/// Frames and closes of one tick.
#[derive(Default)]
pub struct Outbox {
    arena: BytesMut,
    frames: HashMap<SessionId, Vec<Bytes>>,
    closes: Vec<(SessionId, DisconnectReason)>,
    /// Frames too large to encode, dropped (a bug or a config the protocol cannot carry).
    pub oversized: u64,
    /// Frames queued, all sessions together.
    pub frames_queued: u64,
}

impl Outbox {
    /// Encodes `message` once; the returned frame can be sent to any number of sessions.
    /// `None` (and a logged error) when it does not fit in a frame.
    pub fn encode<M: ServerToClient>(&mut self, message: &M) -> Option<Bytes> {
        let len = protocol::HEADER_LEN + prost::Message::encoded_len(message);
        if self.arena.capacity() < len {
            self.arena.reserve(len.max(ARENA_CHUNK));
        }
        match protocol::encode_frame(message, &mut self.arena) {
            Ok(()) => Some(self.arena.split().freeze()),
            Err(error) => {
                self.oversized += 1;
                spdlog::error!("world: dropped a frame: {error}");
                None
            }
        }
    }

    /// Queues `message` to `to`.
    pub fn send<M: ServerToClient>(&mut self, to: SessionId, message: &M) {
        if let Some(frame) = self.encode(message) {
            self.push(to, frame);
        }
    }

    /// Queues an encoded frame to `to`.
    pub fn push(&mut self, to: SessionId, frame: Bytes) {
        self.frames_queued += 1;
        self.frames.entry(to).or_default().push(frame);
    }

    /// Queues a close of `session`, after its frames of this tick.
    pub fn close(&mut self, session: SessionId, reason: DisconnectReason) {
        self.closes.push((session, reason));
    }

    /// Takes the frames of this tick, one batch per session.
    pub fn drain_frames(&mut self) -> impl Iterator<Item = (SessionId, Vec<Bytes>)> + '_ {
        self.frames.drain()
    }

    /// Takes the closes of this tick.
    pub fn drain_closes(&mut self) -> std::vec::Drain<'_, (SessionId, DisconnectReason)> {
        self.closes.drain(..)
    }

    /// Takes the frames queued to one session (for tests and tools).
    pub fn take(&mut self, session: SessionId) -> Vec<Bytes> {
        self.frames.remove(&session).unwrap_or_default()
    }

    /// The closes queued so far.
    pub fn closes(&self) -> &[(SessionId, DisconnectReason)] {
        &self.closes
    }
}
