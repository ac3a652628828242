//! Sans-IO framing.
//!
//! Every packet is one frame:
//!
//! ```text
//!  0        2        4                         size
//!  +--------+--------+-------------------------+
//!  |  size  |   id   |  payload                |
//!  +--------+--------+-------------------------+
//!    u16 LE   u16 LE   size - 4 bytes
//! ```
//!
//! `size` counts the whole frame, header included. A `size` below the header length or above
//! the configured maximum corrupts the stream: the decoder reports it from the header alone,
//! before it reserves or buffers anything for the frame, and the connection ends.
//! The decoder never allocates per frame: a [`Packet`]'s payload is a view (`Bytes`) into
//! the read buffer.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// Length of the frame header: `u16 size` then `u16 id`.
pub const HEADER_LEN: usize = 4;

/// One frame off the wire: its id and a zero-copy view of its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// The frame's message id.
    pub id: u16,
    /// The payload, header excluded.
    pub payload: Bytes,
}

/// A frame header that corrupts the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// `size` is smaller than the header itself.
    #[error("frame size {0} is smaller than the {HEADER_LEN}-byte header")]
    Undersized(usize),
    /// The connection closed inside a frame.
    #[error("connection closed inside a frame ({0} bytes of it received)")]
    Truncated(usize),
    /// The stream opens with a TLS ClientHello: a TLS client at a port of plain frames.
    #[error("a TLS ClientHello where plain frames were expected (TLS has a port of its own)")]
    TlsHandshake,
    /// `size` is larger than the receiver accepts.
    #[error("frame size {size} exceeds max_packet_size {max}")]
    Oversized {
        /// The size the header announced.
        size: usize,
        /// The receiver's limit.
        max: usize,
    },
}

/// A peer that broke RFC 6455, or this crate's rule of whole frames per message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// A text message: frames travel in binary messages.
    #[error("a text message (frames travel in binary messages)")]
    Text,
    /// A client frame without a mask.
    #[error("a client frame without a mask")]
    Unmasked,
    /// A server frame with a mask.
    #[error("a server frame with a mask")]
    Masked,
    /// Reserved bits set (no extension was agreed).
    #[error("reserved bits set in a frame header")]
    Reserved,
    /// An opcode RFC 6455 does not define.
    #[error("unknown opcode {0:#x}")]
    Opcode(u8),
    /// A control frame longer than 125 bytes, or fragmented.
    #[error("a control frame longer than 125 bytes or fragmented")]
    BadControl,
    /// A continuation frame with no message to continue.
    #[error("a continuation frame outside a message")]
    StrayContinuation,
    /// A new message while a fragmented one is still open.
    #[error("a new message before the fragmented one ended")]
    Interleaved,
    /// A message over the size limit.
    #[error("a message of at least {size} bytes, over the {max}-byte limit")]
    TooBig {
        /// The size the headers announced so far.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// A message that ends inside a frame.
    #[error("a message ending inside a frame ({0} bytes of the frame in it): every message carries whole frames")]
    SplitFrame(usize),
    /// A close frame whose payload is not a code and UTF-8 text.
    #[error("a close frame with a malformed payload")]
    BadClose,
}

/// Why a stream of frames cannot be read further.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The stream is corrupt.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The WebSocket layer is broken.
    #[error(transparent)]
    WebSocket(#[from] WsError),
    /// The socket failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Decoder of frames no larger than `max_packet_size` bytes, header included.
#[derive(Clone, Copy, Debug)]
pub struct FrameCodec {
    max_packet_size: usize,
}

impl FrameCodec {
    /// A decoder that accepts frames of up to `max_packet_size` bytes (at most 65535).
    pub fn new(max_packet_size: usize) -> Self {
        FrameCodec {
            max_packet_size: max_packet_size.clamp(HEADER_LEN, u16::MAX as usize),
        }
    }

    /// The largest frame accepted.
    pub fn max_packet_size(&self) -> usize {
        self.max_packet_size
    }

    /// Checks a frame header without consuming anything: the frame's size when it is valid.
    pub fn check_header(&self, header: [u8; 2]) -> Result<usize, FrameError> {
        let size = u16::from_le_bytes(header) as usize;
        if size < HEADER_LEN {
            Err(FrameError::Undersized(size))
        } else if size > self.max_packet_size {
            Err(FrameError::Oversized {
                size,
                max: self.max_packet_size,
            })
        } else {
            Ok(size)
        }
    }
}

impl Decoder for FrameCodec {
    type Item = Packet;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, CodecError> {
        if src.len() < 2 {
            return Ok(None);
        }
        let size = self.check_header([src[0], src[1]])?;
        if src.len() < size {
            // The header is valid, so this reserve is bounded by max_packet_size.
            src.reserve(size - src.len());
            return Ok(None);
        }
        let mut frame = src.split_to(size);
        let id = u16::from_le_bytes([frame[2], frame[3]]);
        frame.advance(HEADER_LEN);
        Ok(Some(Packet {
            id,
            payload: frame.freeze(),
        }))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, CodecError> {
        match self.decode(src)? {
            Some(packet) => Ok(Some(packet)),
            None if src.is_empty() => Ok(None),
            None => Err(FrameError::Truncated(src.len()).into()),
        }
    }
}

/// Whether a stream that starts with `first` is a TLS ClientHello rather than frames: `None`
/// while it cannot tell yet. A TLS record of a handshake (0x16), version 3.x, holding a
/// ClientHello (1). As a frame it would be one of at least 790 bytes whose id's low byte is
/// at most 4, so its first 6 bytes are all there long before its end; and a frame that does
/// not start with 0x16 is told apart at its first byte.
pub fn is_client_hello(first: &[u8]) -> Option<bool> {
    match first {
        [] => None,
        [b0, ..] if *b0 != 0x16 => Some(false),
        [_, b1, b2, _, _, b5, ..] => Some(*b1 == 0x03 && *b2 <= 0x04 && *b5 == 0x01),
        _ => None,
    }
}

/// Appends a frame with `id` and `payload` to `dst`. For tests and tools; messages are framed by
/// the `protocol` crate.
pub fn encode_raw(id: u16, payload: &[u8], dst: &mut BytesMut) {
    let size = HEADER_LEN + payload.len();
    assert!(size <= u16::MAX as usize, "frame of {size} bytes");
    dst.reserve(size);
    dst.extend_from_slice(&(size as u16).to_le_bytes());
    dst.extend_from_slice(&id.to_le_bytes());
    dst.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(id: u16, payload: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        encode_raw(id, payload, &mut b);
        b
    }

    #[test]
    fn whole_frame_decodes_to_id_and_payload() {
        let mut buf = frame(2001, b"hello");
        let packet = FrameCodec::new(1024).decode(&mut buf).unwrap().unwrap();
        assert_eq!(packet.id, 2001);
        assert_eq!(&packet.payload[..], b"hello");
        assert!(buf.is_empty());
    }

    #[test]
    fn empty_payload_is_a_valid_frame() {
        let mut buf = frame(2032, b"");
        let packet = FrameCodec::new(1024).decode(&mut buf).unwrap().unwrap();
        assert_eq!((packet.id, packet.payload.len()), (2032, 0));
    }

    #[test]
    fn frame_split_across_reads_waits_for_the_rest() {
        let whole = frame(7, b"split payload");
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::new();
        for (i, byte) in whole.iter().enumerate() {
            buf.extend_from_slice(&[*byte]);
            let out = codec.decode(&mut buf).unwrap();
            if i + 1 < whole.len() {
                assert!(out.is_none(), "decoded early at byte {i}");
            } else {
                assert_eq!(&out.unwrap().payload[..], b"split payload");
            }
        }
    }

    #[test]
    fn merged_frames_decode_one_by_one_in_order() {
        let mut buf = frame(1, b"a");
        buf.extend_from_slice(&frame(2, b"bb"));
        buf.extend_from_slice(&frame(3, b""));
        let mut codec = FrameCodec::new(1024);
        let ids: Vec<u16> = std::iter::from_fn(|| codec.decode(&mut buf).unwrap())
            .map(|p| p.id)
            .collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_header_needs_more_bytes() {
        let mut buf = BytesMut::from(&[9u8][..]);
        assert!(FrameCodec::new(1024).decode(&mut buf).unwrap().is_none());
        assert_eq!(buf.len(), 1);
    }

    #[test]
    fn undersized_frame_is_a_protocol_error() {
        for size in 0u16..4 {
            let mut buf = BytesMut::from(&size.to_le_bytes()[..]);
            let err = FrameCodec::new(1024).decode(&mut buf).unwrap_err();
            assert!(
                matches!(err, CodecError::Frame(FrameError::Undersized(s)) if s == size as usize)
            );
        }
    }

    #[test]
    fn oversized_frame_is_rejected_from_its_header_before_buffering() {
        let mut buf = BytesMut::with_capacity(2);
        buf.extend_from_slice(&60000u16.to_le_bytes());
        let err = FrameCodec::new(1024).decode(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            CodecError::Frame(FrameError::Oversized {
                size: 60000,
                max: 1024
            })
        ));
        assert!(buf.capacity() < 1024, "reserved {} bytes", buf.capacity());
    }

    #[test]
    fn end_of_stream_inside_a_frame_is_a_truncated_frame() {
        let whole = frame(7, b"abcdef");
        let mut buf = BytesMut::from(&whole[..5]);
        let err = FrameCodec::new(1024).decode_eof(&mut buf).unwrap_err();
        assert!(
            matches!(err, CodecError::Frame(FrameError::Truncated(5))),
            "{err:?}"
        );
        let mut empty = BytesMut::new();
        assert!(FrameCodec::new(1024)
            .decode_eof(&mut empty)
            .unwrap()
            .is_none());
    }

    #[test]
    fn frame_of_exactly_max_size_is_accepted() {
        let payload = vec![0xAB; 1020];
        let mut buf = frame(5, &payload);
        let packet = FrameCodec::new(1024).decode(&mut buf).unwrap().unwrap();
        assert_eq!(packet.payload.len(), 1020);
    }

    #[test]
    fn a_client_hello_is_told_from_frames_by_its_first_bytes() {
        let hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00];
        assert_eq!(is_client_hello(&hello), Some(true));
        for len in 0..6 {
            assert_eq!(is_client_hello(&hello[..len]), None, "at {len}");
        }
        // C2S_Login, and a 22-byte frame starting with 0x16.
        assert_eq!(is_client_hello(&[0x09, 0x00, 0xdb, 0x07]), Some(false));
        assert_eq!(is_client_hello(&[0x09]), Some(false));
        assert_eq!(
            is_client_hello(&[0x16, 0x00, 0xd0, 0x07, 0x0a, 0x03]),
            Some(false)
        );
    }

    #[test]
    fn garbage_bytes_fail_or_wait_but_never_panic() {
        let mut seed = 0x2545F4914F6CDD1Du64;
        for _ in 0..2000 {
            let mut buf = BytesMut::new();
            for _ in 0..(seed % 64) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                buf.extend_from_slice(&[seed as u8]);
            }
            let mut codec = FrameCodec::new(256);
            while let Ok(Some(_)) = codec.decode(&mut buf) {}
        }
    }
}
