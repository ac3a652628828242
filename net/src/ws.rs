//! Sans-IO WebSocket (RFC 6455): the upgrade handshake of both sides, and the frames.
//!
//! Each binary message carries whole frames of this crate's format (`u16 size`, `u16 id`,
//! payload), the same bytes TCP carries: a message may hold several frames, and must not end
//! inside one. [`WsDecoder`] turns a WebSocket byte stream into [`Incoming`] items: the
//! frames of each message as [`Packet`]s (zero-copy views of the read buffer), and the
//! control frames. A message is bounded by `max_message` from the headers alone, before
//! anything is buffered for it, fragmented or not. Text messages, unmasked client frames,
//! reserved bits, unknown opcodes and malformed control frames are errors, each with the
//! close code that answers it ([`WsError::close_code`]).
//!
//! Writing needs no state: [`encode_header`] gives the header of a message whose payload is
//! the frames of a batch, so the server sends a batch as one message with one vectored
//! write; a client masks ([`encode_masked`]).

use base64::Engine as _;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use sha1::{Digest, Sha1};
use tokio_util::codec::Decoder;

use crate::codec::{CodecError, FrameCodec, Packet};
use crate::http::{self, Request, ResponseHead};

/// The GUID of the `Sec-WebSocket-Accept` computation (RFC 6455, 1.3).
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Opcodes.
pub mod opcode {
    /// Continues a fragmented message.
    pub const CONTINUATION: u8 = 0x0;
    /// A text message (refused: frames travel in binary messages).
    pub const TEXT: u8 = 0x1;
    /// A binary message.
    pub const BINARY: u8 = 0x2;
    /// Close.
    pub const CLOSE: u8 = 0x8;
    /// Ping.
    pub const PING: u8 = 0x9;
    /// Pong.
    pub const PONG: u8 = 0xA;
}

/// Close codes (RFC 6455, 7.4.1).
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The endpoint is going away (server shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// A protocol error.
    pub const PROTOCOL: u16 = 1002;
    /// A data type the endpoint does not accept (a text message).
    pub const UNSUPPORTED: u16 = 1003;
    /// Data inconsistent with the message type (a message ending inside a frame).
    pub const INVALID_DATA: u16 = 1007;
    /// A policy was violated (flooding, a login deadline, a replaced login).
    pub const POLICY: u16 = 1008;
    /// A message too big to process.
    pub const TOO_BIG: u16 = 1009;
    /// The server met an unexpected condition.
    pub const INTERNAL: u16 = 1011;
}

/// Which end of the connection this is: a server reads masked frames and writes unmasked
/// ones, a client the other way round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The accepting side.
    Server,
    /// The connecting side.
    Client,
}

pub use crate::codec::WsError;

impl WsError {
    /// The close code that answers the error.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::Text => close::UNSUPPORTED,
            WsError::TooBig { .. } => close::TOO_BIG,
            WsError::SplitFrame(_) => close::INVALID_DATA,
            _ => close::PROTOCOL,
        }
    }
}

/// What a WebSocket connection delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A frame of a binary message.
    Packet(Packet),
    /// A ping, to be answered by a pong with the same payload.
    Ping(Bytes),
    /// A pong.
    Pong,
    /// The peer closes, with its code (none when the frame had no payload).
    Close(Option<u16>),
}

/// `Sec-WebSocket-Accept` for `key`.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// A fresh random `Sec-WebSocket-Key`.
pub fn new_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>())
}

/// Which `Origin`s a server takes upgrades from. A request without `Origin` (a program, not
/// a browser) is always taken: the check protects users of a browser from pages of other
/// sites, which always send it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origins {
    /// The server's own: the origin's host and port are the request's `Host`.
    Same,
    /// Any origin.
    Any,
    /// These origins (`scheme://host[:port]`, compared ignoring case), and the server's own.
    List(Vec<String>),
}

impl Origins {
    /// From a config list: empty is [`Origins::Same`], `["*"]` is [`Origins::Any`].
    pub fn from_list(list: &[String]) -> Origins {
        if list.is_empty() {
            Origins::Same
        } else if list.iter().any(|o| o == "*") {
            Origins::Any
        } else {
            Origins::List(
                list.iter()
                    .map(|o| o.trim_end_matches('/').into())
                    .collect(),
            )
        }
    }

    /// Whether `origin` may upgrade a request that named `host`.
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        let same = origin
            .split_once("://")
            .is_some_and(|(_, authority)| host.is_some_and(|h| h.eq_ignore_ascii_case(authority)));
        match self {
            Origins::Any => true,
            Origins::Same => same,
            Origins::List(list) => same || list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }
}

/// An upgrade the server refuses: the HTTP status, and why (the body, and the log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The status answered.
    pub status: u16,
    /// Why, in one line.
    pub why: String,
}

/// Checks an upgrade request to the WebSocket path; the `101 Switching Protocols` response
/// that accepts it, or why not.
pub fn accept_upgrade(request: &Request, origins: &Origins) -> Result<Vec<u8>, Refused> {
    let refuse = |status, why: &str| {
        Err(Refused {
            status,
            why: why.to_string(),
        })
    };
    if request.method != "GET" {
        return refuse(405, "a WebSocket upgrade is a GET");
    }
    if !request.has_token("upgrade", "websocket") || !request.has_token("connection", "upgrade") {
        return refuse(
            426,
            "this path takes WebSocket upgrades (Upgrade: websocket, Connection: Upgrade)",
        );
    }
    if request.header("sec-websocket-version") != Some("13") {
        return refuse(
            426,
            &format!(
                "unsupported Sec-WebSocket-Version {:?}: 13 is supported",
                request.header("sec-websocket-version").unwrap_or("")
            ),
        );
    }
    let key = request.header("sec-websocket-key").unwrap_or("");
    let decoded = base64::engine::general_purpose::STANDARD.decode(key);
    if decoded.map(|k| k.len()) != Ok(16) {
        return refuse(
            400,
            &format!("Sec-WebSocket-Key {key:?} is not 16 bytes in base64"),
        );
    }
    if let Some(origin) = request.header("origin") {
        if !origins.allows(origin, request.header("host")) {
            return refuse(
                403,
                &format!("origin {origin:?} is not among websocket.allowed_origins"),
            );
        }
    }
    let accept = accept_key(key);
    Ok(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes())
}

/// The upgrade request of a client: `GET path` to `host` with `key`, and `origin` if any.
pub fn upgrade_request(host: &str, path: &str, key: &str, origin: Option<&str>) -> Vec<u8> {
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(origin) = origin {
        request.push_str(&format!("Origin: {origin}\r\n"));
    }
    request.push_str("\r\n");
    request.into_bytes()
}

/// Checks the server's answer to an upgrade request sent with `key`.
pub fn check_upgrade_response(head: &ResponseHead, key: &str) -> Result<(), String> {
    if head.status != 101 {
        return Err(format!(
            "the server answered the WebSocket upgrade with HTTP {} {}",
            head.status,
            http::reason_phrase(head.status)
        ));
    }
    match head.header("sec-websocket-accept") {
        Some(accept) if accept == accept_key(key) => Ok(()),
        Some(accept) => Err(format!("wrong Sec-WebSocket-Accept {accept:?}")),
        None => Err("no Sec-WebSocket-Accept in the upgrade response".into()),
    }
}

/// Appends a frame header: `fin`, `opcode`, a payload of `len` bytes, masked with `mask` if
/// given (the payload must then be masked with it too).
pub fn encode_header(fin: bool, opcode: u8, len: usize, mask: Option<[u8; 4]>, dst: &mut BytesMut) {
    dst.put_u8(if fin { 0x80 } else { 0 } | opcode);
    let masked = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        dst.put_u8(masked | len as u8);
    } else if len <= u16::MAX as usize {
        dst.put_u8(masked | 126);
        dst.put_u16(len as u16);
    } else {
        dst.put_u8(masked | 127);
        dst.put_u64(len as u64);
    }
    if let Some(mask) = mask {
        dst.put_slice(&mask);
    }
}

/// Appends one whole message (`opcode`, the bytes of `parts` in order as its payload) masked
/// with a fresh random key: what a client sends.
pub fn encode_masked(opcode: u8, parts: &[Bytes], dst: &mut BytesMut) {
    let len = parts.iter().map(Bytes::len).sum();
    let mask: [u8; 4] = rand::random();
    encode_header(true, opcode, len, Some(mask), dst);
    let start = dst.len();
    for part in parts {
        dst.put_slice(part);
    }
    apply_mask(&mut dst[start..], mask);
}

/// Appends a close frame with `code` and `reason` (cut to fit 123 bytes at a character
/// boundary), masked when `role` is a client.
pub fn encode_close(role: Role, code: u16, reason: &str, dst: &mut BytesMut) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = BytesMut::with_capacity(2 + end);
    payload.put_u16(code);
    payload.put_slice(&reason.as_bytes()[..end]);
    encode_control(role, opcode::CLOSE, &payload, dst);
}

/// Appends a control frame (ping, pong, close) with `payload` (at most 125 bytes).
pub fn encode_control(role: Role, opcode: u8, payload: &[u8], dst: &mut BytesMut) {
    let payload = &payload[..payload.len().min(125)];
    match role {
        Role::Server => {
            encode_header(true, opcode, payload.len(), None, dst);
            dst.put_slice(payload);
        }
        Role::Client => encode_masked(opcode, &[Bytes::copy_from_slice(payload)], dst),
    }
}

/// XORs `buf` with `mask`, the mask's first byte on `buf`'s first.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    let done = buf.len() - buf.len() % 8;
    for (i, byte) in buf[done..].iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

/// One frame header, parsed.
struct Header {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: u64,
    header_len: usize,
}

fn parse_header(src: &[u8]) -> Result<Option<Header>, WsError> {
    if src.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (src[0], src[1]);
    if b0 & 0x70 != 0 {
        return Err(WsError::Reserved);
    }
    let opcode = b0 & 0x0F;
    let masked = b1 & 0x80 != 0;
    let (len, mut header_len) = match b1 & 0x7F {
        126 if src.len() < 4 => return Ok(None),
        126 => (u16::from_be_bytes([src[2], src[3]]) as u64, 4),
        127 if src.len() < 10 => return Ok(None),
        127 => {
            let mut len = [0u8; 8];
            len.copy_from_slice(&src[2..10]);
            (u64::from_be_bytes(len), 10)
        }
        len => (len as u64, 2),
    };
    let mask = if masked {
        if src.len() < header_len + 4 {
            return Ok(None);
        }
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&src[header_len..header_len + 4]);
        header_len += 4;
        Some(mask)
    } else {
        None
    };
    Ok(Some(Header {
        fin: b0 & 0x80 != 0,
        opcode,
        mask,
        len,
        header_len,
    }))
}

/// Decoder of a WebSocket stream into [`Incoming`] items, frames of this crate's format
/// inside its binary messages.
#[derive(Debug)]
pub struct WsDecoder {
    role: Role,
    max_message: usize,
    frames: FrameCodec,
    /// A fragmented message being put together.
    partial: Option<BytesMut>,
    /// A whole message whose frames are being handed out.
    ready: BytesMut,
}

impl WsDecoder {
    /// A decoder for `role`, taking messages of at most `max_message` bytes holding frames
    /// `frames` accepts.
    pub fn new(role: Role, max_message: usize, frames: FrameCodec) -> WsDecoder {
        WsDecoder {
            role,
            max_message,
            frames,
            partial: None,
            ready: BytesMut::new(),
        }
    }

    /// The next frame of the message being handed out; an error when the message ends
    /// inside a frame.
    fn next_packet(&mut self) -> Result<Option<Packet>, CodecError> {
        if self.ready.is_empty() {
            return Ok(None);
        }
        match self.frames.decode(&mut self.ready)? {
            Some(packet) => Ok(Some(packet)),
            None => Err(CodecError::WebSocket(WsError::SplitFrame(self.ready.len()))),
        }
    }
}

impl Decoder for WsDecoder {
    type Item = Incoming;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Incoming>, CodecError> {
        loop {
            if let Some(packet) = self.next_packet()? {
                return Ok(Some(Incoming::Packet(packet)));
            }
            let Some(header) = parse_header(src)? else {
                return Ok(None);
            };
            match (self.role, header.mask.is_some()) {
                (Role::Server, false) => return Err(WsError::Unmasked.into()),
                (Role::Client, true) => return Err(WsError::Masked.into()),
                _ => {}
            }
            let control = header.opcode & 0x08 != 0;
            if control && (header.len > 125 || !header.fin) {
                return Err(WsError::BadControl.into());
            }
            match header.opcode {
                opcode::CONTINUATION
                | opcode::BINARY
                | opcode::CLOSE
                | opcode::PING
                | opcode::PONG => {}
                opcode::TEXT => return Err(WsError::Text.into()),
                other => return Err(WsError::Opcode(other).into()),
            }
            // The message's size is checked from the headers, before anything is buffered.
            let so_far = self.partial.as_ref().map_or(0, BytesMut::len) as u64;
            if !control && so_far + header.len > self.max_message as u64 {
                return Err(WsError::TooBig {
                    size: so_far + header.len,
                    max: self.max_message,
                }
                .into());
            }
            let whole = header.header_len + header.len as usize;
            if src.len() < whole {
                src.reserve(whole - src.len());
                return Ok(None);
            }
            src.advance(header.header_len);
            let mut payload = src.split_to(header.len as usize);
            if let Some(mask) = header.mask {
                apply_mask(&mut payload, mask);
            }
            match header.opcode {
                opcode::PING => return Ok(Some(Incoming::Ping(payload.freeze()))),
                opcode::PONG => return Ok(Some(Incoming::Pong)),
                opcode::CLOSE => return parse_close(&payload).map(|c| Some(Incoming::Close(c))),
                opcode::BINARY if self.partial.is_some() => return Err(WsError::Interleaved.into()),
                opcode::BINARY if header.fin => self.ready = payload,
                opcode::BINARY => self.partial = Some(payload),
                _ => {
                    let Some(partial) = self.partial.as_mut() else {
                        return Err(WsError::StrayContinuation.into());
                    };
                    partial.extend_from_slice(&payload);
                    if header.fin {
                        self.ready = self.partial.take().unwrap_or_default();
                    }
                }
            }
        }
    }
}

fn parse_close(payload: &[u8]) -> Result<Option<u16>, CodecError> {
    match payload {
        [] => Ok(None),
        [_] => Err(WsError::BadClose.into()),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !valid || std::str::from_utf8(reason).is_err() {
                return Err(WsError::BadClose.into());
            }
            Ok(Some(code))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode_raw, FrameError};

    fn frames(list: &[(u16, &[u8])]) -> Bytes {
        let mut buf = BytesMut::new();
        for (id, payload) in list {
            encode_raw(*id, payload, &mut buf);
        }
        buf.freeze()
    }

    /// A client's frame: `fin`, `opcode`, `payload`, masked.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> BytesMut {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = BytesMut::new();
        encode_header(fin, opcode, payload.len(), Some(mask), &mut out);
        let start = out.len();
        out.extend_from_slice(payload);
        apply_mask(&mut out[start..], mask);
        out
    }

    fn server() -> WsDecoder {
        WsDecoder::new(Role::Server, 4096, FrameCodec::new(1024))
    }

    fn decode_all(
        decoder: &mut WsDecoder,
        buf: &mut BytesMut,
    ) -> Result<Vec<Incoming>, CodecError> {
        let mut out = Vec::new();
        while let Some(item) = decoder.decode(buf)? {
            out.push(item);
        }
        Ok(out)
    }

    fn ws_error(result: Result<Vec<Incoming>, CodecError>) -> WsError {
        match result {
            Err(CodecError::WebSocket(e)) => e,
            other => panic!("expected a WebSocket error, got {other:?}"),
        }
    }

    #[test]
    fn the_accept_key_is_the_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn masking_twice_gives_the_bytes_back_at_every_length() {
        for len in 0..40 {
            let original: Vec<u8> = (0..len as u8).collect();
            let mut buf = original.clone();
            apply_mask(&mut buf, [1, 2, 3, 4]);
            if len > 0 {
                assert_ne!(buf, original);
                assert_eq!(
                    buf[len - 1],
                    original[len - 1] ^ [1, 2, 3, 4][(len - 1) % 4]
                );
            }
            apply_mask(&mut buf, [1, 2, 3, 4]);
            assert_eq!(buf, original);
        }
    }

    #[test]
    fn a_message_of_several_frames_gives_each_in_order() {
        let payload = frames(&[(2000, b"one"), (2001, b""), (2030, b"three")]);
        let mut buf = client_frame(true, opcode::BINARY, &payload);
        let items = decode_all(&mut server(), &mut buf).unwrap();
        let ids: Vec<u16> = items
            .iter()
            .map(|i| match i {
                Incoming::Packet(p) => p.id,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ids, [2000, 2001, 2030]);
        assert!(buf.is_empty());
    }

    #[test]
    fn a_fragmented_message_is_put_together() {
        let payload = frames(&[(2000, b"hello world")]);
        let mut buf = client_frame(false, opcode::BINARY, &payload[..3]);
        buf.extend_from_slice(&client_frame(true, opcode::PING, b"p"));
        buf.extend_from_slice(&client_frame(false, opcode::CONTINUATION, &payload[3..7]));
        buf.extend_from_slice(&client_frame(true, opcode::CONTINUATION, &payload[7..]));
        let items = decode_all(&mut server(), &mut buf).unwrap();
        assert_eq!(items[0], Incoming::Ping(Bytes::from_static(b"p")));
        match &items[1] {
            Incoming::Packet(p) => assert_eq!((p.id, &p.payload[..]), (2000, &b"hello world"[..])),
            other => panic!("{other:?}"),
        }
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn bytes_arriving_one_at_a_time_decode_the_same() {
        let payload = frames(&[(2000, b"abc"), (2001, b"de")]);
        let whole = client_frame(true, opcode::BINARY, &payload);
        let mut decoder = server();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for byte in whole.iter() {
            buf.extend_from_slice(&[*byte]);
            got.extend(decode_all(&mut decoder, &mut buf).unwrap());
        }
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn a_frame_split_across_messages_is_an_error() {
        let payload = frames(&[(2000, b"hello")]);
        let mut buf = client_frame(true, opcode::BINARY, &payload[..5]);
        buf.extend_from_slice(&client_frame(true, opcode::BINARY, &payload[5..]));
        let error = ws_error(decode_all(&mut server(), &mut buf));
        assert_eq!(error, WsError::SplitFrame(5));
        assert_eq!(error.close_code(), close::INVALID_DATA);
    }

    #[test]
    fn a_text_message_is_refused_with_1003() {
        let mut buf = client_frame(true, opcode::TEXT, b"hello");
        let error = ws_error(decode_all(&mut server(), &mut buf));
        assert_eq!((error.clone(), error.close_code()), (WsError::Text, 1003));
    }

    #[test]
    fn a_message_too_big_is_refused_from_its_header_before_buffering() {
        let mut buf = BytesMut::new();
        encode_header(true, opcode::BINARY, 10 << 20, Some([1, 2, 3, 4]), &mut buf);
        let error = ws_error(decode_all(&mut server(), &mut buf));
        assert_eq!(
            error,
            WsError::TooBig {
                size: 10 << 20,
                max: 4096
            }
        );
        assert_eq!(error.close_code(), close::TOO_BIG);
        assert!(buf.capacity() < 4096);
    }

    #[test]
    fn fragments_that_never_end_stop_at_the_limit() {
        let mut decoder = server();
        let mut buf = client_frame(false, opcode::BINARY, &[0; 1000]);
        let mut error = None;
        for _ in 0..10 {
            buf.extend_from_slice(&client_frame(false, opcode::CONTINUATION, &[0; 1000]));
            if let Err(e) = decode_all(&mut decoder, &mut buf) {
                error = Some(e);
                break;
            }
        }
        assert!(
            matches!(
                error,
                Some(CodecError::WebSocket(WsError::TooBig {
                    size: 5000,
                    max: 4096
                }))
            ),
            "{error:?}"
        );
    }

    #[test]
    fn broken_frames_are_protocol_errors() {
        let unmasked = {
            let mut b = BytesMut::new();
            encode_header(true, opcode::BINARY, 0, None, &mut b);
            b
        };
        let mut reserved = client_frame(true, opcode::BINARY, b"");
        reserved[0] |= 0x40;
        let mut long_ping = BytesMut::new();
        encode_header(true, opcode::PING, 126, Some([0; 4]), &mut long_ping);
        long_ping.extend_from_slice(&[0; 126]);
        let mut interleaved = client_frame(false, opcode::BINARY, b"ab");
        interleaved.extend_from_slice(&client_frame(true, opcode::BINARY, b"cd"));
        let cases: [(BytesMut, WsError); 7] = [
            (unmasked, WsError::Unmasked),
            (reserved, WsError::Reserved),
            (client_frame(true, 0x3, b""), WsError::Opcode(3)),
            (long_ping, WsError::BadControl),
            (client_frame(false, opcode::PING, b""), WsError::BadControl),
            (
                client_frame(true, opcode::CONTINUATION, b"x"),
                WsError::StrayContinuation,
            ),
            (interleaved, WsError::Interleaved),
        ];
        for (mut buf, expected) in cases {
            let error = ws_error(decode_all(&mut server(), &mut buf));
            assert_eq!(error, expected);
            assert_eq!(error.close_code(), close::PROTOCOL);
        }
    }

    #[test]
    fn an_oversized_frame_inside_a_message_is_the_frame_codecs_error() {
        let mut inner = BytesMut::new();
        inner.put_u16_le(2000);
        inner.put_u16_le(2000);
        let mut buf = client_frame(true, opcode::BINARY, &inner);
        let result = decode_all(&mut server(), &mut buf);
        assert!(matches!(
            result,
            Err(CodecError::Frame(FrameError::Oversized {
                size: 2000,
                max: 1024
            }))
        ));
    }

    #[test]
    fn close_frames_give_their_code_and_bad_ones_are_errors() {
        let mut close = BytesMut::new();
        encode_close(Role::Client, 1000, "bye", &mut close);
        assert_eq!(
            decode_all(&mut server(), &mut close).unwrap(),
            [Incoming::Close(Some(1000))]
        );
        let mut empty = client_frame(true, opcode::CLOSE, b"");
        assert_eq!(
            decode_all(&mut server(), &mut empty).unwrap(),
            [Incoming::Close(None)]
        );
        for bad in [&[3u8][..], &[0x03, 0xed], &[0x03, 0xe8, 0xff]] {
            let mut buf = client_frame(true, opcode::CLOSE, bad);
            assert_eq!(
                ws_error(decode_all(&mut server(), &mut buf)),
                WsError::BadClose
            );
        }
    }

    #[test]
    fn a_client_reads_unmasked_frames_and_refuses_masked_ones() {
        let payload = frames(&[(1000, b"chat")]);
        let mut buf = BytesMut::new();
        encode_header(true, opcode::BINARY, payload.len(), None, &mut buf);
        buf.extend_from_slice(&payload);
        let mut client = WsDecoder::new(Role::Client, 1 << 20, FrameCodec::new(65535));
        let items = decode_all(&mut client, &mut buf).unwrap();
        assert_eq!(items.len(), 1);
        let mut masked = client_frame(true, opcode::BINARY, &payload);
        assert_eq!(
            ws_error(decode_all(&mut client, &mut masked)),
            WsError::Masked
        );
    }

    #[test]
    fn a_masked_message_from_parts_decodes_on_the_server() {
        let parts = [frames(&[(2000, b"a")]), frames(&[(2001, b"bc")])];
        let mut buf = BytesMut::new();
        encode_masked(opcode::BINARY, &parts, &mut buf);
        let items = decode_all(&mut server(), &mut buf).unwrap();
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn headers_of_every_length_class_round_trip() {
        for len in [0usize, 125, 126, 65535, 65536, 100_000] {
            let mut buf = BytesMut::new();
            encode_header(true, opcode::BINARY, len, None, &mut buf);
            let header = parse_header(&buf).unwrap().unwrap();
            assert_eq!((header.len, header.header_len), (len as u64, buf.len()));
        }
    }

    fn upgrade(extra: &str) -> Request {
        let text = format!(
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:7000\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
        );
        http::parse_request(text.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn a_good_upgrade_is_accepted_with_the_accept_key() {
        let response =
            accept_upgrade(&upgrade("Sec-WebSocket-Version: 13\r\n"), &Origins::Same).unwrap();
        let (head, len) = http::parse_response(&response).unwrap().unwrap();
        assert_eq!((head.status, len), (101, response.len()));
        assert!(check_upgrade_response(&head, "dGhlIHNhbXBsZSBub25jZQ==").is_ok());
        assert!(head.header("content-length").is_none());
    }

    #[test]
    fn bad_upgrades_get_the_right_status() {
        let cases = [
            ("", 426),
            ("Sec-WebSocket-Version: 8\r\n", 426),
            (
                "Sec-WebSocket-Version: 13\r\nOrigin: https://evil.example\r\n",
                403,
            ),
        ];
        for (extra, status) in cases {
            let refused = accept_upgrade(&upgrade(extra), &Origins::Same).unwrap_err();
            assert_eq!(refused.status, status, "{extra:?}: {}", refused.why);
        }
        let mut bad_key = upgrade("Sec-WebSocket-Version: 13\r\n");
        for (name, value) in &mut bad_key.headers {
            if name == "Sec-WebSocket-Key" {
                *value = "short".into();
            }
        }
        assert_eq!(
            accept_upgrade(&bad_key, &Origins::Same).unwrap_err().status,
            400
        );
    }

    #[test]
    fn origins_allow_the_servers_own_and_the_listed() {
        let host = Some("127.0.0.1:7000");
        assert!(Origins::Same.allows("http://127.0.0.1:7000", host));
        assert!(Origins::Same.allows("https://127.0.0.1:7000", host));
        assert!(!Origins::Same.allows("http://127.0.0.1:7001", host));
        assert!(!Origins::Same.allows("null", host));
        let list = Origins::from_list(&["https://game.example/".to_string()]);
        assert!(list.allows("https://GAME.example", host));
        assert!(list.allows("http://127.0.0.1:7000", host));
        assert!(!list.allows("https://other.example", host));
        assert!(Origins::from_list(&["*".to_string()]).allows("null", None));
    }
}
