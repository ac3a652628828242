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
//! let mut out = engine::outbox::Outbox::default();
//! out.send(net::SessionId(1), &protocol::world::C2sPing::default());
//! ```
//!
//! while this does:
//!
//! ```
//! let mut out = engine::outbox::Outbox::default();
//! out.send(net::SessionId(1), &protocol::world::S2cPong::default());
//! assert_eq!(out.take(net::SessionId(1)).len(), 1);
//! ```

use bytes::{Bytes, BytesMut};
use net::{DisconnectReason, SessionId};
use protocol::ServerToClient;

use crate::hash::SessionMap;

/// Arena chunk size: one allocation serves many frames.
const ARENA_CHUNK: usize = 64 * 1024;

/// Batch buffers kept for the next ticks at most, and the frames one may hold to be kept: a
/// tick that reached every session once does not keep a buffer per session for ever.
const SPARE_BATCHES: usize = 4096;
const SPARE_BATCH_FRAMES: usize = 64;
/// Batch buffers kept however few the last tick made.
const MIN_SPARE_BATCHES: usize = 64;

/// Frames and closes of one tick.
#[derive(Default)]
pub struct Outbox {
    arena: BytesMut,
    frames: SessionMap<Vec<Bytes>>,
    /// Emptied batch buffers given back ([`Outbox::recycle`]), taken before making new ones:
    /// a tick's batches cost no allocation once the buffers are there.
    spare: Vec<Vec<Bytes>>,
    closes: Vec<(SessionId, DisconnectReason)>,
    /// Frames too large to encode, dropped (a bug or a config the protocol cannot carry).
    pub oversized: u64,
    /// Of those, since [`Outbox::take_unencodable`]: how many of each message type, and the
    /// largest frame each needed.
    unencodable: Vec<(&'static str, u64, usize)>,
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
            Err(_) => {
                // Logged by the world at most once an interval per message type: a game that
                // makes such frames every tick must not flood the log.
                self.oversized += 1;
                match self.unencodable.iter_mut().find(|u| u.0 == M::NAME) {
                    Some(u) => {
                        u.1 += 1;
                        u.2 = u.2.max(len);
                    }
                    None => self.unencodable.push((M::NAME, 1, len)),
                }
                None
            }
        }
    }

    /// The frames that could not be encoded since the last call: (message type, how many,
    /// the largest frame one needed).
    pub fn take_unencodable(&mut self) -> Vec<(&'static str, u64, usize)> {
        std::mem::take(&mut self.unencodable)
    }

    /// Queues `message` to `to`; false when it could not be encoded (too large for a frame:
    /// counted, and dropped), so that a game knows the client did not get it.
    pub fn send<M: ServerToClient>(&mut self, to: SessionId, message: &M) -> bool {
        let Some(frame) = self.encode(message) else {
            return false;
        };
        self.push(to, frame);
        true
    }

    /// Queues an encoded frame to `to`.
    pub fn push(&mut self, to: SessionId, frame: Bytes) {
        self.frames_queued += 1;
        let spare = &mut self.spare;
        self.frames
            .entry(to)
            .or_insert_with(|| spare.pop().unwrap_or_default())
            .push(frame);
    }

    /// Frames queued to `session` so far this tick.
    pub fn queued_to(&self, session: SessionId) -> usize {
        self.frames.get(&session).map_or(0, Vec::len)
    }

    /// Gives back a batch buffer taken with [`Outbox::drain_frames`], emptied or not, to serve
    /// again.
    pub fn recycle(&mut self, mut batch: Vec<Bytes>) {
        if batch.capacity() > 0
            && batch.capacity() <= SPARE_BATCH_FRAMES
            && self.spare.len() < SPARE_BATCHES
        {
            batch.clear();
            self.spare.push(batch);
        }
    }

    /// The tick's batches are back ([`Outbox::recycle`]), `made` of them: spare buffers past
    /// that many are let go, and so is the room of the map of batches past four times that
    /// many, so that a server gives back what a burst (every session logging in at once) made
    /// it take, while one under steady load keeps what it uses.
    pub fn trim(&mut self, made: usize) {
        let keep = made.max(MIN_SPARE_BATCHES);
        self.spare.truncate(keep);
        if self.frames.is_empty() && self.frames.capacity() > 4 * keep {
            self.frames.shrink_to(keep);
        }
    }

    /// Queues to `to` a copy of a stored S2C_Chat frame marked `history = true`.
    ///
    /// Stored lines are kept as their live frames; the copy appends field 6 (`history`) set to
    /// true to the payload. Protobuf decoders take the last value of a repeated scalar field,
    /// so this is the same message with `history = true`, at the cost of a memcpy.
    pub fn push_history(&mut self, to: SessionId, frame: &Bytes) {
        /// Field 6 (`history`), wire type varint, value 1.
        const HISTORY_TRUE: [u8; 2] = [6 << 3, 1];
        let len = frame.len() + HISTORY_TRUE.len();
        if frame.len() < protocol::HEADER_LEN || len > protocol::MAX_FRAME_LEN {
            return;
        }
        if self.arena.capacity() < len {
            self.arena.reserve(len.max(ARENA_CHUNK));
        }
        self.arena.extend_from_slice(&(len as u16).to_le_bytes());
        self.arena.extend_from_slice(&frame[2..]);
        self.arena.extend_from_slice(&HISTORY_TRUE);
        let copy = self.arena.split().freeze();
        self.push(to, copy);
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

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::world::{RoomInfo, S2cPong, S2cRoomList};

    #[test]
    fn frames_too_large_are_dropped_and_counted_by_message_type() {
        let mut out = Outbox::default();
        let huge = S2cRoomList {
            rooms: (0..5000)
                .map(|i| RoomInfo {
                    name: format!("room-{i:0>40}"),
                    members: 1,
                    capacity: 100,
                })
                .collect(),
        };
        assert!(!out.send(SessionId(1), &huge));
        assert!(!out.send(SessionId(2), &huge));
        assert!(out.send(SessionId(1), &S2cPong::default()));
        let dropped = out.take_unencodable();
        assert_eq!(dropped.len(), 1);
        let (name, count, largest) = dropped[0];
        assert_eq!((name, count), ("S2C_RoomList", 2));
        assert!(largest > 65_535, "{largest}");
        assert_eq!(out.oversized, 2);
        assert!(out.take_unencodable().is_empty(), "taken");
        assert_eq!(out.take(SessionId(1)).len(), 1, "only the pong");
    }

    /// One tick's batches, made, taken and given back as the server does.
    fn tick(out: &mut Outbox, sessions: u64) {
        for id in 0..sessions {
            out.send(SessionId(id), &S2cPong::default());
        }
        let batches: Vec<_> = out.drain_frames().collect();
        let made = batches.len();
        for (_, batch) in batches {
            out.recycle(batch);
        }
        out.trim(made);
    }

    #[test]
    fn spare_batches_are_kept_under_a_steady_load_and_let_go_after_a_burst() {
        let mut out = Outbox::default();
        tick(&mut out, 3000);
        assert_eq!(out.spare.len(), 3000, "a steady load keeps what it uses");
        let room = out.frames.capacity();
        assert!(room >= 3000, "{room}");
        tick(&mut out, 3000);
        assert_eq!(out.spare.len(), 3000);
        assert_eq!(
            out.frames.capacity(),
            room,
            "not made again under a steady load"
        );
        tick(&mut out, 5);
        assert_eq!(out.spare.len(), MIN_SPARE_BATCHES);
        assert!(
            out.frames.capacity() < 4 * MIN_SPARE_BATCHES,
            "{}",
            out.frames.capacity()
        );
        tick(&mut out, 10_000);
        assert_eq!(out.spare.len(), SPARE_BATCHES, "bounded");
    }
}
