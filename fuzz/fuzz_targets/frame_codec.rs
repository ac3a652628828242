//! The frame decoder (`net::codec::FrameCodec`) on any byte stream, read in any chunks.
//!
//! The stream is well-formed frames (so that the fuzzer starts deep) followed by anything. It
//! is decoded twice: at once, and in the chunks the input gives, with the end of the stream
//! after the last chunk (`decode_eof`). Both must give the same frames and the same error;
//! the frames encoded again must be the bytes they were decoded from; no frame is larger
//! than the limit; and an error must be the one the bytes where decoding stopped call for.

#![no_main]

use arbitrary::Arbitrary;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use net::codec::{encode_raw, FrameCodec, Packet, HEADER_LEN};
use net::{CodecError, FrameError};
use tokio_util::codec::Decoder;

/// One input: the decoder's limit, the stream, and the chunks it arrives in.
#[derive(Arbitrary, Debug)]
struct Input {
    /// `max_packet_size`, clamped by the codec to 4..=65535.
    max_packet_size: u16,
    /// Frames that start the stream: (id, payload).
    frames: Vec<(u16, Vec<u8>)>,
    /// Bytes after them.
    tail: Vec<u8>,
    /// The lengths of the reads (see `world_fuzz::chunks`).
    reads: Vec<u8>,
}

/// What decoding a stream gave: its frames, then the error that ended it, if any.
#[derive(Debug, PartialEq)]
struct Decoded {
    packets: Vec<Packet>,
    error: Option<String>,
}

/// Decodes everything `buf` holds; at the end of the stream (`eof`), what is left is an error.
fn drain(codec: &mut FrameCodec, buf: &mut BytesMut, eof: bool, out: &mut Decoded) -> bool {
    loop {
        let next = if eof {
            codec.decode_eof(buf)
        } else {
            codec.decode(buf)
        };
        match next {
            Ok(Some(packet)) => out.packets.push(packet),
            Ok(None) => return true,
            Err(error) => {
                out.error = Some(format!("{error:?}"));
                check_error(&error);
                return false;
            }
        }
    }
}

/// The decoder reports only errors of the frame format.
fn check_error(error: &CodecError) {
    assert!(
        matches!(error, CodecError::Frame(_)),
        "the frame codec reported {error:?}"
    );
}

fuzz_target!(|input: Input| {
    let mut stream = BytesMut::new();
    for (id, payload) in &input.frames {
        let payload = &payload[..payload.len().min(u16::MAX as usize - HEADER_LEN)];
        encode_raw(*id, payload, &mut stream);
    }
    stream.extend_from_slice(&input.tail);
    let stream = stream.freeze();

    let mut codec = FrameCodec::new(usize::from(input.max_packet_size));
    let max = codec.max_packet_size();
    assert_eq!(
        max,
        usize::from(input.max_packet_size).clamp(HEADER_LEN, 65535)
    );

    // At once.
    let mut whole = Decoded {
        packets: Vec::new(),
        error: None,
    };
    let mut buf = BytesMut::from(&stream[..]);
    if drain(&mut codec, &mut buf, false, &mut whole) {
        drain(&mut codec, &mut buf, true, &mut whole);
    }

    // In chunks.
    let mut chunked = Decoded {
        packets: Vec::new(),
        error: None,
    };
    let mut codec = FrameCodec::new(usize::from(input.max_packet_size));
    let mut buf = BytesMut::new();
    let mut going = true;
    for chunk in world_fuzz::chunks(&stream, &input.reads) {
        buf.extend_from_slice(chunk);
        if !drain(&mut codec, &mut buf, false, &mut chunked) {
            going = false;
            break;
        }
    }
    if going {
        drain(&mut codec, &mut buf, true, &mut chunked);
    }
    assert_eq!(whole, chunked, "the chunks changed what was decoded");

    // The frames are the bytes they came from, each within the limit.
    let mut again = BytesMut::new();
    for packet in &whole.packets {
        assert!(
            HEADER_LEN + packet.payload.len() <= max,
            "a frame over the limit"
        );
        encode_raw(packet.id, &packet.payload, &mut again);
    }
    let consumed = again.len();
    assert_eq!(&again[..], &stream[..consumed], "frames re-encoded differ");

    // The end: nothing left, or the error the next bytes call for.
    let rest = &stream[consumed..];
    let expected = match rest {
        [] => None,
        [_] => Some(FrameError::Truncated(1)),
        [lo, hi, ..] => {
            let size = usize::from(u16::from_le_bytes([*lo, *hi]));
            Some(if size < HEADER_LEN {
                FrameError::Undersized(size)
            } else if size > max {
                FrameError::Oversized { size, max }
            } else {
                assert!(size > rest.len(), "a whole frame was left undecoded");
                FrameError::Truncated(rest.len())
            })
        }
    };
    assert_eq!(
        whole.error,
        expected.map(|e| format!("{:?}", CodecError::Frame(e))),
        "the error does not fit the bytes left"
    );
    if let [lo, hi, ..] = rest {
        let checked = codec.check_header([*lo, *hi]);
        assert_eq!(
            checked.is_ok(),
            matches!(expected, Some(FrameError::Truncated(_))),
            "check_header disagrees with decode"
        );
    }
});
