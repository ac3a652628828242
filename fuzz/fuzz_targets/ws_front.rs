//! The WebSocket front of the transports, as a web port or a TLS port that serves HTTP reads a
//! peer: the HTTP request head (`net::http::parse_request`, read as it arrives), the upgrade
//! (`net::ws::accept_upgrade` with the port's `Origins`), then WebSocket frames carrying
//! frames of the game (`net::ws::WsDecoder`), in any chunks. The client's side of the same
//! decoder (unmasked frames from a server) is fuzzed too.
//!
//! The stream is a request head (well-formed but for what the input changes, or any bytes)
//! followed by WebSocket frames built from arbitrary fields (fragments, control frames,
//! reserved bits, any opcode, masks, lengths in any of the three forms) and then anything.
//! Checked: reading the head as it arrives gives what reading it whole gives; an upgrade
//! accepted is answered with a `101` whose `Sec-WebSocket-Accept` the client's check takes,
//! and one refused with the statuses the front uses; the frames decoded in chunks are those
//! decoded at once, with the same error; every packet is within the frame limit, every ping
//! within 125 bytes; every error has a close code. Nothing here waits on I/O, so an input
//! cannot hang.

#![no_main]

use arbitrary::Arbitrary;
use bytes::{BufMut, BytesMut};
use libfuzzer_sys::fuzz_target;
use net::codec::{encode_raw, FrameCodec, HEADER_LEN};
use net::http::{self, HttpError};
use net::ws::{self, Incoming, Origins, Role, WsDecoder};
use net::CodecError;
use tokio_util::codec::Decoder;

/// Which origins the port takes upgrades from.
#[derive(Arbitrary, Debug)]
enum OriginsChoice {
    /// The server's own.
    Same,
    /// Any.
    Any,
    /// These, from a config list.
    List(Vec<String>),
}

/// The request head a client sends first.
#[derive(Arbitrary, Debug)]
enum Head {
    /// None: the stream is WebSocket frames from the first byte (the head was read already).
    None,
    /// Any bytes, then the blank line that ends a head (most of the time).
    Raw { bytes: Vec<u8>, end: bool },
    /// An upgrade request, with what the input changes in it.
    Upgrade(Upgrade),
}

/// An upgrade request's parts.
#[derive(Arbitrary, Debug)]
struct Upgrade {
    /// `GET` unless another method is chosen.
    method: Option<String>,
    /// The path (`/ws` when empty).
    path: String,
    /// The key's bytes, base64-encoded (16 of them make a valid key).
    key: Vec<u8>,
    /// The version, 13 unless another is chosen.
    version: Option<String>,
    /// Whether `Upgrade: websocket` is sent.
    upgrade: bool,
    /// Whether `Connection: keep-alive, Upgrade` is sent.
    connection: bool,
    /// The `Host` header, if any.
    host: Option<String>,
    /// The `Origin` header, if any.
    origin: Option<String>,
    /// More headers.
    extra: Vec<(String, String)>,
    /// Filler header lines (8 bytes each, up to 2047 of them): heads past the 8 KiB limit.
    padding: u16,
}

/// The payload of a WebSocket frame.
#[derive(Arbitrary, Debug)]
enum Payload {
    /// Frames of the game: (id, payload).
    Frames(Vec<(u16, Vec<u8>)>),
    /// A close frame's code and reason.
    Close(u16, String),
    /// Any bytes.
    Raw(Vec<u8>),
}

/// One WebSocket frame, as a peer could write it.
#[derive(Arbitrary, Debug)]
struct WsFrame {
    /// Whether it ends its message.
    fin: bool,
    /// The reserved bits (RSV1-3): set from this byte's when it is 0xf0 or more, else clear.
    reserved: u8,
    /// The opcode: its low 4 bits.
    opcode: u8,
    /// Its mask, if masked.
    mask: Option<[u8; 4]>,
    /// The length's form: 0 the shortest, 1 the 16-bit one, 2 the 64-bit one.
    length_form: u8,
    /// What it carries.
    payload: Payload,
}

/// One input.
#[derive(Arbitrary, Debug)]
struct Input {
    /// The origins the port takes.
    origins: OriginsChoice,
    /// The decoder's limits: the largest message and the largest frame of the game.
    max_message: u16,
    max_packet_size: u16,
    /// Without a head: whether the decoder is a client's (it reads a server).
    client: bool,
    /// What the stream starts with.
    head: Head,
    /// The WebSocket frames after the head.
    frames: Vec<WsFrame>,
    /// Bytes after them.
    tail: Vec<u8>,
    /// The lengths of the reads (see `world_fuzz::chunks`).
    reads: Vec<u8>,
}

/// The request head of `upgrade`.
fn request(upgrade: &Upgrade) -> Vec<u8> {
    use base64_like::encode;
    let mut text = format!(
        "{} {} HTTP/1.1\r\n",
        upgrade.method.as_deref().unwrap_or("GET"),
        if upgrade.path.is_empty() {
            "/ws"
        } else {
            &upgrade.path
        }
    );
    if let Some(host) = &upgrade.host {
        text.push_str(&format!("Host: {host}\r\n"));
    }
    if upgrade.upgrade {
        text.push_str("Upgrade: websocket\r\n");
    }
    if upgrade.connection {
        text.push_str("Connection: keep-alive, Upgrade\r\n");
    }
    text.push_str(&format!("Sec-WebSocket-Key: {}\r\n", encode(&upgrade.key)));
    text.push_str(&format!(
        "Sec-WebSocket-Version: {}\r\n",
        upgrade.version.as_deref().unwrap_or("13")
    ));
    if let Some(origin) = &upgrade.origin {
        text.push_str(&format!("Origin: {origin}\r\n"));
    }
    for (name, value) in &upgrade.extra {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    for _ in 0..upgrade.padding % 2048 {
        text.push_str("X-P: 1\r\n");
    }
    text.push_str("\r\n");
    text.into_bytes()
}

/// Appends `frame` as a peer writes it.
fn write_frame(frame: &WsFrame, max_packet_size: usize, out: &mut BytesMut) {
    let mut payload = BytesMut::new();
    match &frame.payload {
        Payload::Frames(frames) => {
            for (id, bytes) in frames {
                let bytes = &bytes[..bytes.len().min(max_packet_size.saturating_sub(HEADER_LEN))];
                encode_raw(*id, bytes, &mut payload);
            }
        }
        Payload::Close(code, reason) => {
            payload.put_u16(*code);
            payload.put_slice(reason.as_bytes());
        }
        Payload::Raw(bytes) => payload.put_slice(bytes),
    }
    let masked = if frame.mask.is_some() { 0x80 } else { 0 };
    out.put_u8(
        if frame.fin { 0x80 } else { 0 }
            | if frame.reserved >= 0xf0 {
                frame.reserved & 0x70
            } else {
                0
            }
            | (frame.opcode & 0x0f),
    );
    let len = payload.len();
    match frame.length_form % 3 {
        0 if len < 126 => out.put_u8(masked | len as u8),
        0 | 1 if len <= usize::from(u16::MAX) => {
            out.put_u8(masked | 126);
            out.put_u16(len as u16);
        }
        _ => {
            out.put_u8(masked | 127);
            out.put_u64(len as u64);
        }
    }
    if let Some(mask) = frame.mask {
        out.put_slice(&mask);
        ws::apply_mask(&mut payload, mask);
    }
    out.put_slice(&payload);
}

/// What decoding WebSocket bytes gave: the items, then the error that ended them.
#[derive(Debug, PartialEq)]
struct Decoded {
    items: Vec<Incoming>,
    error: Option<String>,
}

/// Decodes what `buf` holds; false once an error ended the stream.
fn drain(
    decoder: &mut WsDecoder,
    buf: &mut BytesMut,
    max_packet_size: usize,
    out: &mut Decoded,
) -> bool {
    loop {
        match decoder.decode(buf) {
            Ok(Some(item)) => {
                match &item {
                    Incoming::Packet(packet) => assert!(
                        HEADER_LEN + packet.payload.len() <= max_packet_size,
                        "a packet over the frame limit"
                    ),
                    Incoming::Ping(payload) => assert!(payload.len() <= 125, "a long ping"),
                    Incoming::Pong | Incoming::Close(_) => {}
                }
                out.items.push(item);
            }
            Ok(None) => return true,
            Err(error) => {
                match &error {
                    CodecError::WebSocket(e) => {
                        assert!([1002, 1003, 1007, 1009].contains(&e.close_code()), "{e:?}");
                    }
                    CodecError::Frame(_) => {}
                    CodecError::Io(e) => panic!("a decoder reported an I/O error: {e}"),
                }
                out.error = Some(format!("{error:?}"));
                return false;
            }
        }
    }
}

/// Decodes `stream` as `role` at once and in `reads`, and checks that both agree.
fn check_frames(role: Role, input: &Input, stream: &[u8]) {
    let max_message = usize::from(input.max_message);
    let codec = FrameCodec::new(usize::from(input.max_packet_size));
    let max_packet_size = codec.max_packet_size();
    let mut whole = Decoded {
        items: Vec::new(),
        error: None,
    };
    let mut decoder = WsDecoder::new(role, max_message, codec);
    let mut buf = BytesMut::from(stream);
    drain(&mut decoder, &mut buf, max_packet_size, &mut whole);

    let mut chunked = Decoded {
        items: Vec::new(),
        error: None,
    };
    let mut decoder = WsDecoder::new(role, max_message, codec);
    let mut buf = BytesMut::new();
    for chunk in world_fuzz::chunks(stream, &input.reads) {
        buf.extend_from_slice(chunk);
        if !drain(&mut decoder, &mut buf, max_packet_size, &mut chunked) {
            break;
        }
    }
    assert_eq!(whole, chunked, "the chunks changed what was decoded");
}

/// The head in `stream`, read as it arrives in `reads` (the front parses what it has after
/// each read), checked against reading it whole.
fn read_head(stream: &[u8], reads: &[u8]) -> Result<Option<(http::Request, usize)>, HttpError> {
    let whole = http::parse_request(stream);
    let mut buf = Vec::new();
    let mut seen = None;
    for chunk in world_fuzz::chunks(stream, reads) {
        buf.extend_from_slice(chunk);
        match http::parse_request(&buf) {
            Ok(None) => continue,
            other => {
                seen = Some(other);
                break;
            }
        }
    }
    let seen = seen.unwrap_or(Ok(None));
    assert_eq!(
        seen, whole,
        "reading the head as it arrives gave another head"
    );
    if let Ok(Some((_, len))) = &seen {
        assert!(*len <= http::MAX_HEAD && *len <= stream.len());
        assert!(stream[..*len].ends_with(b"\r\n\r\n"));
    }
    if let Err(HttpError::TooLong) = &seen {
        assert!(
            stream.len() >= http::MAX_HEAD,
            "too long at {} bytes",
            stream.len()
        );
    }
    seen
}

fuzz_target!(|input: Input| {
    let origins = match &input.origins {
        OriginsChoice::Same => Origins::Same,
        OriginsChoice::Any => Origins::Any,
        OriginsChoice::List(list) => Origins::from_list(list),
    };
    let mut stream = BytesMut::new();
    match &input.head {
        Head::None => {}
        Head::Raw { bytes, end } => {
            stream.put_slice(bytes);
            if *end {
                stream.put_slice(b"\r\n\r\n");
            }
        }
        Head::Upgrade(upgrade) => stream.put_slice(&request(upgrade)),
    }
    let limit = FrameCodec::new(usize::from(input.max_packet_size)).max_packet_size();
    for frame in &input.frames {
        write_frame(frame, limit, &mut stream);
    }
    stream.put_slice(&input.tail);

    if matches!(input.head, Head::None) {
        let role = if input.client {
            Role::Client
        } else {
            Role::Server
        };
        check_frames(role, &input, &stream);
        return;
    }
    let Ok(Some((request, len))) = read_head(&stream, &input.reads) else {
        return; // an error, answered 400 or 431; or a head that never ends
    };
    match ws::accept_upgrade(&request, &origins) {
        Ok(response) => {
            let (head, used) = http::parse_response(&response)
                .expect("the 101 parses")
                .expect("the 101 is whole");
            assert_eq!((head.status, used), (101, response.len()));
            let key = request
                .header("sec-websocket-key")
                .expect("an accepted upgrade has a key");
            ws::check_upgrade_response(&head, key)
                .expect("the client takes the server's accept key");
            assert_eq!(request.method, "GET");
            check_frames(Role::Server, &input, &stream[len..]);
        }
        Err(refused) => {
            assert!(
                [400, 403, 405, 426].contains(&refused.status),
                "{refused:?}"
            );
            assert!(!refused.why.is_empty());
            let answer = http::text_response(refused.status, &[], &refused.why);
            let (head, _) = http::parse_response(&answer)
                .expect("the refusal parses")
                .expect("the refusal is whole");
            assert_eq!(head.status, refused.status);
        }
    }
});

/// Standard base64, for the key of a request (the front decodes it with the `base64` crate;
/// encoding it here keeps that crate out of the fuzzer's dependencies).
mod base64_like {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    /// `bytes` in standard base64, padded.
    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
