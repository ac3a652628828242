//! Frames in and out without an allocation per message.
//!
//! Outbound, [`Encoder`] encodes every frame of a tick into one shared arena (`BytesMut`) and
//! splits each frame off as `Bytes`: the arena's block is shared by all the frames cut from it
//! and reused once they are written. The chat message itself is a reused `C2S_Chat` whose
//! strings keep their capacity.
//!
//! Inbound, `S2C_Chat` is by far the most frequent message (every line reaches every member),
//! so it is read by [`ChatView::parse`], which borrows its strings from the frame's payload
//! instead of allocating three `String`s per line as `S2cMessage::decode` would. Every other
//! message goes through `S2cMessage::decode`. A test checks the view against prost on the
//! same bytes, so a change of field numbers in `chat.proto` cannot go unnoticed.

use bytes::{Bytes, BytesMut};
use protocol::{encode_frame, MessageType};

/// How much the arena grows at a time; one block serves many frames.
const ARENA_BLOCK: usize = 64 * 1024;

/// Encodes frames into a shared arena.
#[derive(Debug, Default)]
pub struct Encoder {
    arena: BytesMut,
}

impl Encoder {
    /// An empty encoder.
    pub fn new() -> Self {
        Encoder::default()
    }

    /// One frame carrying `message`, cut from the arena.
    pub fn frame<M: MessageType>(&mut self, message: &M) -> Result<Bytes, protocol::FrameTooLarge> {
        let len = protocol::HEADER_LEN + message.encoded_len();
        if self.arena.capacity() - self.arena.len() < len {
            // A new block; frames cut from the old one keep it alive until they are written.
            self.arena.reserve(len.max(ARENA_BLOCK));
        }
        encode_frame(message, &mut self.arena)?;
        Ok(self.arena.split().freeze())
    }
}

/// Why a chat payload could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// The payload ends inside a field.
    #[error("payload truncated")]
    Truncated,
    /// A varint longer than ten bytes.
    #[error("varint too long")]
    Varint,
    /// A wire type proto3 does not use here (groups, or 6 and 7).
    #[error("unsupported wire type {0}")]
    WireType(u8),
    /// A string field that is not UTF-8.
    #[error("field {0} is not UTF-8")]
    Utf8(u32),
}

/// An `S2C_Chat` read in place: its strings borrow the payload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChatView<'a> {
    /// `room`.
    pub room: &'a str,
    /// `from`.
    pub from: &'a str,
    /// `content`.
    pub content: &'a str,
    /// `sent_at_us`.
    pub sent_at_us: u64,
    /// `server_time_us`.
    pub server_time_us: u64,
    /// `history`.
    pub history: bool,
}

impl<'a> ChatView<'a> {
    /// Reads the payload of an `S2C_Chat` frame. Unknown fields are skipped, as prost does.
    pub fn parse(mut buf: &'a [u8]) -> Result<Self, ViewError> {
        let mut view = ChatView::default();
        while !buf.is_empty() {
            let key = varint(&mut buf)?;
            let field = (key >> 3) as u32;
            match (key & 7) as u8 {
                0 => {
                    let value = varint(&mut buf)?;
                    match field {
                        4 => view.sent_at_us = value,
                        5 => view.server_time_us = value,
                        6 => view.history = value != 0,
                        _ => {}
                    }
                }
                2 => {
                    let len =
                        usize::try_from(varint(&mut buf)?).map_err(|_| ViewError::Truncated)?;
                    if buf.len() < len {
                        return Err(ViewError::Truncated);
                    }
                    let (bytes, rest) = buf.split_at(len);
                    buf = rest;
                    let text = || std::str::from_utf8(bytes).map_err(|_| ViewError::Utf8(field));
                    match field {
                        1 => view.room = text()?,
                        2 => view.from = text()?,
                        3 => view.content = text()?,
                        _ => {}
                    }
                }
                1 => buf = buf.get(8..).ok_or(ViewError::Truncated)?,
                5 => buf = buf.get(4..).ok_or(ViewError::Truncated)?,
                other => return Err(ViewError::WireType(other)),
            }
        }
        Ok(view)
    }
}

/// Reads one base-128 varint off the front of `buf`.
fn varint(buf: &mut &[u8]) -> Result<u64, ViewError> {
    let mut value = 0u64;
    for (i, &byte) in buf.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Ok(value);
        }
    }
    Err(if buf.len() < 10 {
        ViewError::Truncated
    } else {
        ViewError::Varint
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use protocol::world::{C2sChat, S2cChat};

    #[test]
    fn the_chat_view_reads_what_prost_encodes() {
        let chat = S2cChat {
            room: "room-k3f9-0".into(),
            from: "bot-00042.k3f9".into(),
            content: "17 ......".into(),
            sent_at_us: 1_700_000_000_123_456,
            server_time_us: u64::MAX,
            history: true,
        };
        let bytes = chat.encode_to_vec();
        let view = ChatView::parse(&bytes).unwrap();
        assert_eq!(view.room, chat.room);
        assert_eq!(view.from, chat.from);
        assert_eq!(view.content, chat.content);
        assert_eq!(view.sent_at_us, chat.sent_at_us);
        assert_eq!(view.server_time_us, chat.server_time_us);
        assert!(view.history);
    }

    #[test]
    fn an_empty_payload_is_a_default_chat() {
        assert_eq!(ChatView::parse(&[]).unwrap(), ChatView::default());
    }

    #[test]
    fn a_truncated_payload_is_an_error_not_a_panic() {
        let chat = S2cChat {
            room: "r".into(),
            content: "0 ...".into(),
            ..Default::default()
        };
        let bytes = chat.encode_to_vec();
        for cut in 1..bytes.len() {
            let _ = ChatView::parse(&bytes[..cut]);
        }
        assert_eq!(
            ChatView::parse(&bytes[..bytes.len() - 1]),
            Err(ViewError::Truncated)
        );
        assert_eq!(ChatView::parse(&[0x80]), Err(ViewError::Truncated));
        assert_eq!(ChatView::parse(&[0x0b]), Err(ViewError::WireType(3)));
    }

    #[test]
    fn unknown_fields_are_skipped() {
        // field 9 varint 5, field 10 fixed64, field 11 fixed32, field 12 bytes "ab", then room.
        let mut bytes = vec![9 << 3, 5, (10 << 3) | 1, 0, 0, 0, 0, 0, 0, 0, 0];
        bytes.extend([(11 << 3) | 5, 0, 0, 0, 0, (12 << 3) | 2, 2, b'a', b'b']);
        bytes.extend([(1 << 3) | 2, 1, b'r']);
        assert_eq!(ChatView::parse(&bytes).unwrap().room, "r");
    }

    #[test]
    fn frames_cut_from_the_arena_are_whole_frames() {
        let mut encoder = Encoder::new();
        let chat = C2sChat {
            room: "room".into(),
            content: "1 ..".into(),
            sent_at_us: 5,
        };
        let a = encoder.frame(&chat).unwrap();
        let b = encoder.frame(&chat).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, protocol::frame(&chat).unwrap());
        assert_eq!(u16::from_le_bytes([a[0], a[1]]) as usize, a.len());
        assert_eq!(u16::from_le_bytes([a[2], a[3]]), C2sChat::ID);
    }
}
