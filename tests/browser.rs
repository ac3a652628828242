//! The browser client in a real headless Chromium (skipped, saying so, where Debian's
//! `chromium` is not installed): the JavaScript codec generated from `proto/` reads and writes
//! the bytes that the Rust types (prost) do, both ways; and the chat page, served by the game
//! port, logs in, joins, chats, whispers and leaves beside a raw TCP client, and takes its
//! session back when its connection is cut or stalls (it connects through a TCP proxy that
//! the test cuts and freezes), missing and repeating nothing either way.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prost::Message as _;
use protocol::world::{
    C2sChat, C2sLogin, C2sLogout, C2sPing, C2sRegister, C2sResume, C2sRoomJoin, C2sRoomLeave,
    C2sRoomList, C2sSessionResume, C2sWhisper, RoomInfo, S2cAuthResult, S2cChat, S2cError, S2cPong,
    S2cRoomJoined, S2cRoomLeft, S2cRoomList, S2cRoomPresence, S2cSessionResumed, S2cWelcome,
    S2cWhisper,
};
use protocol::{C2sMessage, ErrorCode, MessageType, S2cMessage, HEADER_LEN};
use serde_json::{json, Value};
use testkit::browser::{Browser, Page, NO_CHROMIUM};

/// How long a page may take to show what a test waits for.
const PAGE_TIMEOUT: Duration = Duration::from_secs(10);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn frame<M: MessageType>(message: &M) -> Vec<u8> {
    protocol::frame(message).expect("fits a frame").to_vec()
}

/// Helpers for the assertions, in the page: bytes from and to hex, and any decoded value as
/// plain JSON (a BigInt as its digits and `n`, bytes as hex).
const HELPERS: &str = r#"
function unhex(text) {
  return Uint8Array.from(text.match(/../g) || [], function (pair) { return parseInt(pair, 16); });
}
function hex(bytes) {
  return Array.from(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
}
function plain(v) {
  if (typeof v === "bigint") return v.toString() + "n";
  if (v instanceof Uint8Array) return hex(v);
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === "object") {
    var out = {};
    for (var key in v) out[key] = plain(v[key]);
    return out;
  }
  return v;
}
function thrown(f) {
  try { f(); } catch (e) { return e.message; }
  return "nothing thrown";
}
"#;

/// A blank page with the generated codec and the helpers loaded.
fn codec_page(browser: &Browser) -> Page {
    let page = browser.new_page("about:blank").expect("a page");
    page.eval(protocol::MESSAGES_JS)
        .expect("the generated script runs");
    page.eval(HELPERS).expect("the helpers run");
    page
}

/// What the page's `decodeFrames` makes of `bytes`, as plain JSON.
fn js_decode(page: &Page, bytes: &[u8]) -> Value {
    page.eval(&format!("plain(decodeFrames(unhex('{}')))", hex(bytes)))
        .unwrap_or_else(|e| panic!("decodeFrames({}): {e}", hex(bytes)))
}

/// The hex of what the page's `encodeFrame(name, <obj>)` gives, `obj` a JavaScript literal.
fn js_encode(page: &Page, name: &str, obj: &str) -> String {
    let value = page
        .eval(&format!("hex(encodeFrame('{name}', {obj}))"))
        .unwrap_or_else(|e| panic!("encodeFrame({name}, {obj}): {e}"));
    value.as_str().expect("hex text").to_string()
}

fn launch(test: &str) -> Option<Browser> {
    match Browser::launch() {
        Ok(browser) => Some(browser),
        Err(why) if why == NO_CHROMIUM => {
            common::skip(test, &why);
            None
        }
        Err(why) => panic!("chromium is installed but does not start: {why}"),
    }
}

/// Every scalar type of proto3, as prost writes it: the runtime's general cases.
#[derive(Clone, PartialEq, prost::Message)]
struct Scalars {
    #[prost(int32, tag = "1")]
    a: i32,
    #[prost(int64, tag = "2")]
    b: i64,
    #[prost(uint32, tag = "3")]
    c: u32,
    #[prost(uint64, tag = "4")]
    d: u64,
    #[prost(sint32, tag = "5")]
    e: i32,
    #[prost(sint64, tag = "6")]
    f: i64,
    #[prost(bool, tag = "7")]
    g: bool,
    #[prost(fixed32, tag = "8")]
    h: u32,
    #[prost(fixed64, tag = "9")]
    i: u64,
    #[prost(sfixed32, tag = "10")]
    j: i32,
    #[prost(sfixed64, tag = "11")]
    k: i64,
    #[prost(float, tag = "12")]
    l: f32,
    #[prost(double, tag = "13")]
    m: f64,
    #[prost(string, tag = "14")]
    n: String,
    #[prost(bytes = "vec", tag = "15")]
    o: Vec<u8>,
    #[prost(uint32, repeated, tag = "16")]
    p: Vec<u32>,
    #[prost(sint64, repeated, packed = "false", tag = "17")]
    q: Vec<i64>,
    #[prost(int64, repeated, tag = "18")]
    r: Vec<i64>,
}

/// Field 16 of [`Scalars`] unpacked, as an older writer may send it.
#[derive(Clone, PartialEq, prost::Message)]
struct UnpackedP {
    #[prost(uint32, repeated, packed = "false", tag = "16")]
    p: Vec<u32>,
}

/// [`Scalars`] for the page's runtime, as protocol-build would write it.
const SCALARS_TABLE: &str = r#"PROTOCOL.define({"messages": {"test.Scalars": {"name": "Scalars", "fields": [
  {"number": 1, "name": "a", "type": "int32", "kind": "scalar", "repeated": false},
  {"number": 2, "name": "b", "type": "int64", "kind": "scalar", "repeated": false},
  {"number": 3, "name": "c", "type": "uint32", "kind": "scalar", "repeated": false},
  {"number": 4, "name": "d", "type": "uint64", "kind": "scalar", "repeated": false},
  {"number": 5, "name": "e", "type": "sint32", "kind": "scalar", "repeated": false},
  {"number": 6, "name": "f", "type": "sint64", "kind": "scalar", "repeated": false},
  {"number": 7, "name": "g", "type": "bool", "kind": "scalar", "repeated": false},
  {"number": 8, "name": "h", "type": "fixed32", "kind": "scalar", "repeated": false},
  {"number": 9, "name": "i", "type": "fixed64", "kind": "scalar", "repeated": false},
  {"number": 10, "name": "j", "type": "sfixed32", "kind": "scalar", "repeated": false},
  {"number": 11, "name": "k", "type": "sfixed64", "kind": "scalar", "repeated": false},
  {"number": 12, "name": "l", "type": "float", "kind": "scalar", "repeated": false},
  {"number": 13, "name": "m", "type": "double", "kind": "scalar", "repeated": false},
  {"number": 14, "name": "n", "type": "string", "kind": "scalar", "repeated": false},
  {"number": 15, "name": "o", "type": "bytes", "kind": "scalar", "repeated": false},
  {"number": 16, "name": "p", "type": "uint32", "kind": "scalar", "repeated": true},
  {"number": 17, "name": "q", "type": "sint64", "kind": "scalar", "repeated": true, "packed": false},
  {"number": 18, "name": "r", "type": "int64", "kind": "scalar", "repeated": true}
]}}})"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_codec_in_chromium_reads_and_writes_what_prost_does() {
    tokio::task::spawn_blocking(codec_in_chromium)
        .await
        .expect("the browser thread");
}

fn codec_in_chromium() {
    let test = "the_generated_codec_in_chromium_reads_and_writes_what_prost_does";
    let Some(browser) = launch(test) else {
        return;
    };
    let page = codec_page(&browser);

    // The example of PROTOCOL.md, both ways.
    let login = C2sLogin {
        username: "ann".into(),
        password: String::new(),
        ..Default::default()
    };
    assert_eq!(hex(&frame(&login)), "0900db070a03616e6e");
    assert_eq!(
        js_encode(&page, "C2S_Login", "{username: 'ann'}"),
        "0900db070a03616e6e"
    );
    assert_eq!(
        js_encode(&page, "C2S_Login", "{username: 'ann', password: ''}"),
        "0900db070a03616e6e",
        "a default value is left out"
    );
    assert_eq!(
        js_decode(&page, &frame(&login)),
        json!([{"name": "C2S_Login", "id": 2011, "msg": {"username": "ann", "password": "", "resumable": false}}])
    );

    // A list of nested messages, one of them all defaults (an empty message, still there).
    let list = S2cRoomList {
        rooms: vec![
            RoomInfo {
                name: "lobby".into(),
                members: 3,
                capacity: 100,
            },
            RoomInfo::default(),
            RoomInfo {
                name: "x".repeat(64),
                members: 100,
                capacity: 100,
            },
        ],
    };
    assert_eq!(
        js_decode(&page, &frame(&list)),
        json!([{"name": "S2C_RoomList", "id": 1032, "msg": {"rooms": [
            {"name": "lobby", "members": 3, "capacity": 100},
            {"name": "", "members": 0, "capacity": 0},
            {"name": "x".repeat(64), "members": 100, "capacity": 100},
        ]}}])
    );
    assert_eq!(
        js_encode(
            &page,
            "S2C_RoomList",
            &format!(
                "{{rooms: [{{name: 'lobby', members: 3, capacity: 100}}, {{}}, \
                 {{name: '{}', members: 100, capacity: 100}}]}}",
                "x".repeat(64)
            )
        ),
        hex(&frame(&list))
    );

    // 64-bit times: a Number while it is safe, a BigInt beyond; UTF-8 text.
    let chat = S2cChat {
        room: "lobby".into(),
        from: "ann".into(),
        content: "héllo ✓ 🌍".into(),
        sent_at_us: 1_700_000_000_123_456,
        server_time_us: u64::MAX,
        history: true,
    };
    assert_eq!(
        js_decode(&page, &frame(&chat)),
        json!([{"name": "S2C_Chat", "id": 1000, "msg": {
            "room": "lobby", "from": "ann", "content": "héllo ✓ 🌍",
            "sent_at_us": 1_700_000_000_123_456u64, "server_time_us": "18446744073709551615n",
            "history": true
        }}])
    );
    let chat_js = "{room: 'lobby', from: 'ann', content: 'héllo ✓ 🌍', \
                   sent_at_us: 1700000000123456, server_time_us: SERVER_TIME, history: true}";
    for server_time in ["18446744073709551615n", "'18446744073709551615'"] {
        assert_eq!(
            js_encode(
                &page,
                "S2C_Chat",
                &chat_js.replace("SERVER_TIME", server_time)
            ),
            hex(&frame(&chat)),
            "server_time_us from {server_time}"
        );
    }
    for (time, decoded) in [
        ((1u64 << 53) - 1, json!(9_007_199_254_740_991u64)),
        (1u64 << 53, json!("9007199254740992n")),
    ] {
        let chat = S2cChat {
            server_time_us: time,
            ..S2cChat::default()
        };
        assert_eq!(
            js_decode(&page, &frame(&chat))[0]["msg"]["server_time_us"],
            decoded
        );
    }

    // An enum: its number decoded, its name or number encoded; its names in the table.
    let error = S2cError {
        code: ErrorCode::RoomFull as i32,
        reason: "room \"attic\" is full (3 members)".into(),
        request_id: C2sRoomJoin::ID as u32,
        retry_after_ms: 1500,
    };
    assert_eq!(
        js_decode(&page, &frame(&error)),
        json!([{"name": "S2C_Error", "id": 1003, "msg": {
            "code": 9, "reason": "room \"attic\" is full (3 members)", "request_id": 2030,
            "retry_after_ms": 1500
        }}])
    );
    for code in ["'ROOM_FULL'", "9"] {
        assert_eq!(
            js_encode(
                &page,
                "S2C_Error",
                &format!(
                    "{{code: {code}, reason: 'room \"attic\" is full (3 members)', request_id: 2030, retry_after_ms: 1500}}"
                )
            ),
            hex(&frame(&error))
        );
    }
    for value in 0..100 {
        let Ok(code) = ErrorCode::try_from(value) else {
            continue;
        };
        assert_eq!(
            page.eval(&format!("PROTOCOL.enumName('world.ErrorCode', {value})"))
                .unwrap(),
            code.as_str_name()
        );
    }
    assert_eq!(
        page.eval("PROTOCOL.enumName('ErrorCode', 4242)").unwrap(),
        Value::Null,
        "a code without a name"
    );

    // Every message of each direction: what prost writes, the page reads and writes back
    // byte for byte; what the page writes, prost reads.
    let s2c: Vec<Vec<u8>> = vec![
        frame(&chat),
        frame(&S2cPong {
            seq: 7,
            client_time_us: 1,
            server_time_us: 2,
            ..Default::default()
        }),
        frame(&S2cWelcome {
            session_id: 1,
            protocol_version: 1,
            tick_ms: 50,
            max_packet_size: 8192,
            server_name: "world".into(),
        }),
        frame(&error),
        frame(&S2cAuthResult {
            username: "ann".into(),
            user_id: 12,
            token: "ab".repeat(32),
            guest: false,
            ..Default::default()
        }),
        frame(&S2cWhisper {
            from: "bob".into(),
            to: "ann".into(),
            content: "psst".into(),
            sent_at_us: 5,
        }),
        frame(&S2cRoomJoined {
            room: "lobby".into(),
            members: vec!["ann".into(), "bob".into(), "bot".into()],
            capacity: 100,
        }),
        frame(&S2cRoomLeft {
            room: "lobby".into(),
        }),
        frame(&list),
        frame(&S2cRoomPresence {
            room: "lobby".into(),
            username: "bob".into(),
            joined: true,
        }),
        frame(&protocol::world::S2cRoomMissed {
            room: "lobby".into(),
        }),
        frame(&S2cSessionResumed {
            username: "ann".into(),
            user_id: 12,
            guest: false,
            processed: 40,
            sent: (1 << 53) + 1,
        }),
    ];
    let ids: Vec<u16> = s2c
        .iter()
        .map(|f| u16::from_le_bytes([f[2], f[3]]))
        .collect();
    for id in protocol::MESSAGE_IDS.iter().map(|(id, _)| *id) {
        assert!(
            id >= 2000 || ids.contains(&id),
            "S2C message {id} is not tested"
        );
    }
    for bytes in &s2c {
        let again = page
            .eval(&format!(
                "(function () {{ var f = decodeFrames(unhex('{}'))[0]; return hex(encodeFrame(f.name, f.msg)); }})()",
                hex(bytes)
            ))
            .unwrap();
        assert_eq!(
            again,
            hex(bytes),
            "{:?}",
            S2cMessage::decode(
                u16::from_le_bytes([bytes[2], bytes[3]]),
                Bytes::copy_from_slice(&bytes[HEADER_LEN..])
            )
        );
    }
    let c2s: Vec<(&str, &str, C2sMessage)> = vec![
        (
            "C2S_Chat",
            "{room: 'lobby', content: 'hi <b>&amp;</b>', sent_at_us: 1700000000123456}",
            C2sMessage::C2sChat(C2sChat {
                room: "lobby".into(),
                content: "hi <b>&amp;</b>".into(),
                sent_at_us: 1_700_000_000_123_456,
            }),
        ),
        (
            "C2S_Ping",
            "{seq: 4294967295, client_time_us: 18446744073709551615n, received: 12}",
            C2sMessage::C2sPing(C2sPing {
                seq: u32::MAX,
                client_time_us: u64::MAX,
                received: 12,
            }),
        ),
        (
            "C2S_Register",
            "{username: 'ann', password: 'correct horse'}",
            C2sMessage::C2sRegister(C2sRegister {
                username: "ann".into(),
                password: "correct horse".into(),
                ..Default::default()
            }),
        ),
        (
            "C2S_Login",
            "{username: 'ann', password: 'pässword', resumable: true}",
            C2sMessage::C2sLogin(C2sLogin {
                username: "ann".into(),
                password: "pässword".into(),
                resumable: true,
            }),
        ),
        (
            "C2S_Resume",
            "{token: 'ab'.repeat(32)}",
            C2sMessage::C2sResume(C2sResume {
                token: "ab".repeat(32),
                ..Default::default()
            }),
        ),
        ("C2S_Logout", "{}", C2sMessage::C2sLogout(C2sLogout {})),
        (
            "C2S_SessionResume",
            "{session_token: 'cd'.repeat(16), received: 9007199254740993n}",
            C2sMessage::C2sSessionResume(C2sSessionResume {
                session_token: "cd".repeat(16),
                received: (1 << 53) + 1,
            }),
        ),
        (
            "C2S_Whisper",
            "{to: 'bob', content: 'psst', sent_at_us: 3}",
            C2sMessage::C2sWhisper(C2sWhisper {
                to: "bob".into(),
                content: "psst".into(),
                sent_at_us: 3,
            }),
        ),
        (
            "C2S_RoomJoin",
            "{room: 'lobby'}",
            C2sMessage::C2sRoomJoin(C2sRoomJoin {
                room: "lobby".into(),
                ..Default::default()
            }),
        ),
        (
            "C2S_RoomLeave",
            "{room: 'lobby'}",
            C2sMessage::C2sRoomLeave(C2sRoomLeave {
                room: "lobby".into(),
            }),
        ),
        (
            "C2S_RoomList",
            "{}",
            C2sMessage::C2sRoomList(C2sRoomList {}),
        ),
    ];
    for (id, name) in protocol::MESSAGE_IDS {
        assert!(
            *id < 2000 || c2s.iter().any(|(n, _, _)| n == name),
            "C2S message {name} is not tested"
        );
    }
    for (name, obj, expected) in c2s {
        let bytes = unhex(&js_encode(&page, name, obj));
        let size = u16::from_le_bytes([bytes[0], bytes[1]]) as usize;
        assert_eq!(size, bytes.len(), "{name}: the size counts the header");
        let id = u16::from_le_bytes([bytes[2], bytes[3]]);
        let decoded = C2sMessage::decode(id, Bytes::copy_from_slice(&bytes[HEADER_LEN..]))
            .unwrap_or_else(|e| panic!("{name}: prost cannot read the page's frame: {e}"));
        assert_eq!(decoded, expected, "{name}");
        assert_eq!(decoded.name(), name);
    }

    // Several frames in one buffer, as one WebSocket message of a tick carries them.
    let mut tick = Vec::new();
    for bytes in s2c.iter().take(3) {
        tick.extend_from_slice(bytes);
    }
    let frames = js_decode(&page, &tick);
    let names: Vec<&str> = frames
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["S2C_Chat", "S2C_Pong", "S2C_Welcome"]);
    assert_eq!(js_decode(&page, &[]), json!([]));

    // A partial frame is rejected, alone or after whole ones; so is a size below the header.
    let thrown = |bytes: &[u8]| -> String {
        page.eval(&format!(
            "thrown(function () {{ decodeFrames(unhex('{}')); }})",
            hex(bytes)
        ))
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
    };
    let whole = frame(&list);
    assert_eq!(
        thrown(&whole[..whole.len() - 1]),
        format!(
            "protocol: partial frame: id 1032 needs {} bytes, {} left",
            whole.len(),
            whole.len() - 1
        )
    );
    let mut split = tick.clone();
    split.extend_from_slice(&whole[..7]);
    assert!(thrown(&split).starts_with("protocol: partial frame"));
    assert_eq!(
        thrown(&whole[..3]),
        "protocol: partial frame: 3 bytes of a 4-byte header"
    );
    assert_eq!(
        thrown(&[2, 0, 0xe8, 0x03]),
        "protocol: frame size 2 is smaller than the header"
    );
    // A payload that is not what its id says.
    assert!(thrown(&common::raw_frame(1000, &[0x0a, 0x05, b'a'])).contains("truncated"));
    assert!(thrown(&common::raw_frame(1000, &[0x0a, 0x02, 0xc3, 0x28])).contains("invalid UTF-8"));

    // An id no message has is passed over with its id; fields no message has are skipped.
    assert_eq!(
        js_decode(&page, &common::raw_frame(1999, &[0x08, 0x01])),
        json!([{"name": null, "id": 1999, "msg": null}])
    );
    let mut payload = BytesMut::new();
    chat.encode(&mut payload).unwrap();
    // Field 20 varint, 21 length-delimited, 22 fixed32, 23 fixed64, 24 a group.
    payload.extend_from_slice(&[0xa0, 0x01, 0x96, 0x01]);
    payload.extend_from_slice(&[0xaa, 0x01, 0x02, 0x68, 0x69]);
    payload.extend_from_slice(&[0xb5, 0x01, 1, 2, 3, 4]);
    payload.extend_from_slice(&[0xb9, 0x01, 1, 2, 3, 4, 5, 6, 7, 8]);
    payload.extend_from_slice(&[0xc3, 0x01, 0x08, 0x01, 0xc4, 0x01]);
    assert_eq!(
        js_decode(&page, &common::raw_frame(1000, &payload)),
        js_decode(&page, &frame(&chat))
    );

    // Every scalar type against prost: extremes, then small values.
    page.eval(SCALARS_TABLE).unwrap();
    let extremes = Scalars {
        a: -1,
        b: i64::MIN,
        c: u32::MAX,
        d: 1 << 53,
        e: i32::MIN,
        f: -(1 << 60),
        g: true,
        h: 4_000_000_000,
        i: u64::MAX,
        j: -7,
        k: i64::MIN + 1,
        l: 1.5,
        m: -2.25,
        n: "ß".into(),
        o: vec![0, 255],
        p: vec![1, 300, 70_000],
        q: vec![-1, 1, i64::MAX],
        r: vec![-3, (1 << 53) + 1],
    };
    let extremes_json = json!({
        "a": -1, "b": "-9223372036854775808n", "c": 4_294_967_295u32, "d": "9007199254740992n",
        "e": -2_147_483_648, "f": "-1152921504606846976n", "g": true, "h": 4_000_000_000u32,
        "i": "18446744073709551615n", "j": -7, "k": "-9223372036854775807n", "l": 1.5,
        "m": -2.25, "n": "ß", "o": "00ff", "p": [1, 300, 70000],
        "q": [-1, 1, "9223372036854775807n"], "r": [-3, "9007199254740993n"]
    });
    let extremes_js = "{a: -1, b: -9223372036854775808n, c: 4294967295, d: 9007199254740992n, \
        e: -2147483648, f: -1152921504606846976n, g: true, h: 4000000000, \
        i: 18446744073709551615n, j: -7, k: '-9223372036854775807', l: 1.5, m: -2.25, n: 'ß', \
        o: unhex('00ff'), p: [1, 300, 70000], q: [-1, 1, 9223372036854775807n], \
        r: [-3, 9007199254740993n]}";
    let small = Scalars {
        b: -5,
        d: (1 << 53) - 1,
        f: -6,
        k: -8,
        q: vec![-2],
        ..Scalars::default()
    };
    let small_json = json!({
        "a": 0, "b": -5, "c": 0, "d": 9_007_199_254_740_991u64, "e": 0, "f": -6, "g": false,
        "h": 0, "i": 0, "j": 0, "k": -8, "l": 0, "m": 0, "n": "", "o": "", "p": [], "q": [-2],
        "r": []
    });
    let small_js = "{b: -5, d: 9007199254740991, f: -6, k: -8, q: [-2]}";
    for (message, decoded, literal) in [
        (&extremes, &extremes_json, extremes_js),
        (&small, &small_json, small_js),
    ] {
        let bytes = message.encode_to_vec();
        assert_eq!(
            &page
                .eval(&format!(
                    "plain(PROTOCOL.decode('test.Scalars', unhex('{}')))",
                    hex(&bytes)
                ))
                .unwrap(),
            decoded
        );
        let written = page
            .eval(&format!("hex(PROTOCOL.encode('Scalars', {literal}))"))
            .unwrap();
        assert_eq!(written, hex(&bytes), "{message:?}");
    }
    // A repeated number packed (as prost writes field 16) or not: the same list.
    let unpacked = UnpackedP {
        p: vec![1, 300, 70_000],
    }
    .encode_to_vec();
    assert_eq!(
        page.eval(&format!(
            "plain(PROTOCOL.decode('Scalars', unhex('{}')).p)",
            hex(&unpacked)
        ))
        .unwrap(),
        json!([1, 300, 70000])
    );
    // What cannot be written is said, not sent.
    for (literal, error) in [
        (
            "{c: -1}",
            "Scalars.c: -1 is not an integer in 0..4294967295",
        ),
        (
            "{d: 18446744073709551616n}",
            "Scalars.d: 18446744073709551616 is out of range",
        ),
        (
            "{a: 1.5}",
            "Scalars.a: 1.5 is not an integer in -2147483648..2147483647",
        ),
        ("{n: 5}", "Scalars.n: expected a string"),
        ("{nope: 1}", "Scalars has no field nope"),
    ] {
        assert_eq!(
            page.eval(&format!(
                "thrown(function () {{ PROTOCOL.encode('Scalars', {literal}); }})"
            ))
            .unwrap(),
            format!("protocol: {error}"),
            "{literal}"
        );
    }
    assert_eq!(
        page.eval("thrown(function () { encodeFrame('Scalars', {}); })")
            .unwrap(),
        "protocol: Scalars has no message id"
    );
    let long = C2sChat {
        content: "x".repeat(70_000),
        ..C2sChat::default()
    };
    assert_eq!(
        page.eval("thrown(function () { encodeFrame('C2S_Chat', {content: 'x'.repeat(70000)}); })")
            .unwrap(),
        format!(
            "protocol: C2S_Chat needs a {}-byte frame, more than 65535",
            HEADER_LEN + long.encoded_len()
        )
    );

    // Loaded twice (the engine's file, then a game's), the tables stay.
    page.eval(protocol::MESSAGES_JS).unwrap();
    assert_eq!(
        page.eval("typeof PROTOCOL.messages['test.Scalars']")
            .unwrap(),
        "object"
    );
    assert!(page.console().is_empty(), "{:?}", page.console());
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

// ---- the chat page against a server ----

/// Runs `f` on `page` on a blocking thread (the browser driver blocks).
async fn on<T: Send + 'static>(page: &Arc<Page>, f: impl FnOnce(&Page) -> T + Send + 'static) -> T {
    let page = Arc::clone(page);
    tokio::task::spawn_blocking(move || f(&page))
        .await
        .expect("the browser thread")
}

/// Evaluates `js` on `page`; panics on an exception.
async fn eval(page: &Arc<Page>, js: &str) -> Value {
    let js = js.to_string();
    on(page, move |p| p.eval(&js))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until `js` is truthy on `page`; panics, with the page's state, when it does not come.
async fn wait(page: &Arc<Page>, js: &str) -> Value {
    let js = js.to_string();
    match on(page, move |p| p.wait_for(&js, PAGE_TIMEOUT)).await {
        Ok(value) => value,
        Err(error) => {
            let state = eval(page, PAGE_STATE).await;
            panic!("{error}\npage: {state:#}");
        }
    }
}

/// What a failed wait shows of the page.
const PAGE_STATE: &str = "({status: document.getElementById('status').textContent, \
    error: document.getElementById('error').hidden ? null : document.getElementById('error').textContent, \
    tabs: Array.from(document.querySelectorAll('#tabs button'), b => b.textContent), \
    lines: Array.from(document.querySelectorAll('#messages .line'), l => l.className + ': ' + l.textContent)})";

/// Types `value` into the input `#id` and clicks `#button`.
async fn type_and_click(page: &Arc<Page>, id: &str, value: &str, button: &str) {
    eval(
        page,
        &format!(
            "document.getElementById('{id}').value = {}; document.getElementById('{button}').click()",
            json!(value)
        ),
    )
    .await;
}

/// Logs `page` in as the guest `name`.
async fn log_in_as_guest(page: &Arc<Page>, name: &str) {
    wait(
        page,
        "document.getElementById('status').dataset.state === 'connected'",
    )
    .await;
    type_and_click(page, "login-name", name, "guest").await;
    wait(
        page,
        "document.getElementById('status').dataset.state === 'online'",
    )
    .await;
    let user = eval(page, "document.getElementById('user').textContent").await;
    assert_eq!(user, format!("{name} (guest)"));
}

/// Joins `room` by its name and waits for its tab.
async fn join(page: &Arc<Page>, room: &str) {
    type_and_click(page, "room-name", room, "join").await;
    wait(
        page,
        &format!("document.querySelector('#tabs [data-view=\"{room}\"].current')"),
    )
    .await;
}

/// The text of the lines of the view `view` with class `class`.
fn lines(view: &str, class: &str) -> String {
    format!(
        "Array.from(document.querySelectorAll('#messages [data-view=\"{view}\"] .line.{class}'), l => l.textContent)"
    )
}

/// Waits for a line of class `class` in `view` whose text contains every one of `parts`.
async fn wait_line(page: &Arc<Page>, view: &str, class: &str, parts: &[&str]) {
    let test = parts
        .iter()
        .map(|part| format!("t.includes({})", json!(part)))
        .collect::<Vec<_>>()
        .join(" && ");
    wait(page, &format!("{}.some(t => {test})", lines(view, class))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn two_pages_and_a_bot_chat_whisper_and_leave_through_the_websocket() {
    let test = "two_pages_and_a_bot_chat_whisper_and_leave_through_the_websocket";
    let Some(browser) = tokio::task::spawn_blocking(move || launch(test))
        .await
        .unwrap()
    else {
        return;
    };
    let browser = Arc::new(browser);
    let mut config = common::test_config();
    config.world.room_capacity = 3;
    let web = common::with_web(&mut config);
    let server = common::start_server(config).await;
    let url = format!("http://{web}/");

    let open = |browser: &Arc<Browser>| {
        let (browser, url) = (Arc::clone(browser), url.clone());
        async move {
            let page = tokio::task::spawn_blocking(move || browser.new_page(&url))
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("the page does not load: {e}"));
            Arc::new(page)
        }
    };
    let ann = open(&browser).await;
    let bob = open(&browser).await;
    log_in_as_guest(&ann, "ann").await;
    log_in_as_guest(&bob, "bob").await;
    join(&ann, "lobby").await;
    join(&bob, "lobby").await;
    wait(
        &ann,
        "document.querySelector('#members [data-user=\"bob\"]')",
    )
    .await;
    wait_line(&ann, "lobby", "presence", &["bob joined"]).await;

    // A bot over raw TCP in the same room.
    let mut bot = server.member("bot", "lobby").await;
    for page in [&ann, &bob] {
        wait(
            page,
            "document.querySelector('#members [data-user=\"bot\"]')",
        )
        .await;
        assert_eq!(
            eval(page, "document.getElementById('member-count').textContent").await,
            "3 / 3"
        );
    }

    // ann says a line with markup in it: bob and the bot get it, as text.
    let said = "hello <b>everyone</b> & all";
    type_and_click(&ann, "input", said, "send").await;
    wait_line(&bob, "lobby", "chat", &["ann", said]).await;
    wait_line(&ann, "lobby", "chat", &["ann", said]).await;
    let line = bot.expect_chat("lobby", "ann", said).await;
    let now = protocol::now_us();
    assert!(
        line.sent_at_us <= now && line.sent_at_us > now - 60_000_000,
        "sent_at_us is the page's clock in microseconds: {}",
        line.sent_at_us
    );
    assert_eq!(
        eval(&bob, "document.querySelectorAll('#messages b').length").await,
        0,
        "text is never markup"
    );

    // bob whispers ann: ann sees it from bob, bob sees the echo.
    type_and_click(&bob, "input", "/w ann psst, ann", "send").await;
    wait_line(&ann, "@whispers", "whisper", &["bob → ann", "psst, ann"]).await;
    wait_line(&bob, "@whispers", "whisper", &["to ann", "psst, ann"]).await;

    // The bot says a line: both pages show it.
    bot.say("lobby", "beep from the bot", protocol::now_us())
        .await;
    for page in [&ann, &bob] {
        wait_line(page, "lobby", "chat", &["bot", "beep from the bot"]).await;
    }

    // ann leaves the lobby: the tab goes, bob and the bot see her go.
    eval(
        &ann,
        "document.querySelector('#tabs [data-view=\"lobby\"]').click()",
    )
    .await;
    eval(&ann, "document.getElementById('leave').click()").await;
    wait(
        &ann,
        "!document.querySelector('#tabs [data-view=\"lobby\"]')",
    )
    .await;
    wait_line(&bob, "lobby", "presence", &["ann left"]).await;
    wait(
        &bob,
        "!document.querySelector('#members [data-user=\"ann\"]')",
    )
    .await;
    bot.recv_until(
        |m| matches!(m, S2cMessage::S2cRoomPresence(p) if p.username == "ann" && !p.joined),
    )
    .await;

    // Back in the lobby, ann gets its lines again, marked as history.
    join(&ann, "lobby").await;
    wait_line(&ann, "lobby", "chat.history", &["history", "ann", said]).await;
    wait_line(
        &ann,
        "lobby",
        "chat.history",
        &["history", "bot", "beep from the bot"],
    )
    .await;

    // A room at its capacity: the page says so in words.
    let mut attic = Vec::new();
    for name in ["cyd", "dan", "eve"] {
        attic.push(server.member(name, "attic").await);
    }
    type_and_click(&bob, "room-name", "attic", "join").await;
    wait(
        &bob,
        "document.getElementById('error').dataset.code === 'ROOM_FULL'",
    )
    .await;
    let error = eval(&bob, "document.getElementById('error-text').textContent").await;
    let error = error.as_str().unwrap();
    assert!(
        error.starts_with("Room is full") && error.contains("attic"),
        "{error}"
    );
    assert_eq!(
        eval(&bob, "document.getElementById('error').hidden").await,
        false
    );

    // The room list counts the members.
    eval(&bob, "document.getElementById('list-rooms').click()").await;
    wait(
        &bob,
        "(document.querySelector('#rooms [data-room=\"attic\"] .count') || {}).textContent === '3/3'",
    )
    .await;

    for (name, page) in [("ann", &ann), ("bob", &bob)] {
        let console = on(page, |p| p.console()).await;
        assert!(console.is_empty(), "{name}'s console: {console:#?}");
    }
    drop((ann, bob));
    server.shutdown().await;
}

// ---- a page whose connection drops ----

/// A TCP proxy in front of the server's web port, which the test cuts or freezes: a page
/// loaded through it connects its WebSocket through it too, so the page's connection drops
/// (or stalls) from outside the page, as on a real network.
struct Proxy {
    addr: std::net::SocketAddr,
    links: Arc<std::sync::Mutex<Vec<Link>>>,
    refusing: Arc<std::sync::atomic::AtomicBool>,
    accept: tokio::task::JoinHandle<()>,
}

/// One connection through the [`Proxy`]: the task that carries it both ways, and whether
/// each way is frozen (it forwards nothing more, and stays open).
struct Link {
    task: tokio::task::JoinHandle<()>,
    /// Toward the server.
    up: Arc<std::sync::atomic::AtomicBool>,
    /// Toward the client.
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    async fn start(to: std::net::SocketAddr) -> Proxy {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let links: Arc<std::sync::Mutex<Vec<Link>>> = Arc::default();
        let refusing = Arc::new(AtomicBool::new(false));
        let accept = tokio::spawn({
            let (links, refusing) = (Arc::clone(&links), Arc::clone(&refusing));
            async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    if refusing.load(Ordering::SeqCst) {
                        continue; // dropped: the client sees its connection fail
                    }
                    let up = Arc::new(AtomicBool::new(false));
                    let down = Arc::new(AtomicBool::new(false));
                    let task = tokio::spawn(carry(inbound, to, Arc::clone(&up), Arc::clone(&down)));
                    links.lock().unwrap().push(Link { task, up, down });
                }
            }
        });
        Proxy {
            addr,
            links,
            refusing,
            accept,
        }
    }

    /// Closes every connection open now (both ends see it go) and refuses new ones until
    /// [`Proxy::restore`].
    fn cut(&self) {
        self.refusing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.task.abort();
        }
    }

    /// Takes new connections again.
    fn restore(&self) {
        self.refusing
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Stops forwarding on every connection open now, leaving them open: both ends wait for
    /// bytes that never come. New connections pass.
    fn freeze(&self) {
        for link in self.links.lock().unwrap().iter() {
            link.up.store(true, std::sync::atomic::Ordering::SeqCst);
            link.down.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Stops forwarding toward the client on every connection open now: what the client
    /// sends still reaches the server, but no answer comes back. New connections pass.
    fn freeze_toward_client(&self) {
        for link in self.links.lock().unwrap().iter() {
            link.down.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for link in self.links.lock().unwrap().drain(..) {
            link.task.abort();
        }
    }
}

/// Carries `inbound` to a new connection to `to` and back until either side ends.
async fn carry(
    inbound: tokio::net::TcpStream,
    to: std::net::SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    down: Arc<std::sync::atomic::AtomicBool>,
) {
    let Ok(outbound) = tokio::net::TcpStream::connect(to).await else {
        return;
    };
    let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
    let (a_read, a_write) = inbound.into_split();
    let (b_read, b_write) = outbound.into_split();
    tokio::select! {
        _ = pump(a_read, b_write, &up) => {}
        _ = pump(b_read, a_write, &down) => {}
    }
}

/// Copies `from` to `to` until `from` ends; once frozen, what it reads goes nowhere and it
/// waits forever (holding both connections open).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: &std::sync::atomic::AtomicBool,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.load(std::sync::atomic::Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Opens `url` in a new page of `browser`.
async fn open_page(browser: &Arc<Browser>, url: &str) -> Arc<Page> {
    let (browser, url) = (Arc::clone(browser), url.to_string());
    let page = tokio::task::spawn_blocking(move || browser.new_page(&url))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the page does not load: {e}"));
    Arc::new(page)
}

/// Like [`wait`], with a timeout of its own (a stall takes seconds to show).
async fn wait_within(page: &Arc<Page>, js: &str, timeout: Duration) -> Value {
    let js = js.to_string();
    match on(page, move |p| p.wait_for(&js, timeout)).await {
        Ok(value) => value,
        Err(error) => {
            let state = eval(page, PAGE_STATE).await;
            panic!("{error}\npage: {state:#}");
        }
    }
}

/// The chat lines of `view`, as (from, text), in the order shown.
async fn chat_lines(page: &Arc<Page>, view: &str) -> Vec<(String, String)> {
    let lines = eval(
        page,
        &format!(
            "Array.from(document.querySelectorAll('#messages [data-view=\"{view}\"] .line.chat'), \
             l => [l.className, l.querySelector('.from').textContent, l.querySelector('.text').textContent])"
        ),
    )
    .await;
    lines
        .as_array()
        .unwrap()
        .iter()
        .map(|line| {
            assert_eq!(line[0], "line chat", "a live line, not history: {line}");
            (
                line[1].as_str().unwrap().to_string(),
                line[2].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Reads the bot's frames until `ann` says `last` in the lobby; returns what ann said until
/// then, `last` included, and fails on any presence change of ann (the session never left).
async fn ann_said_until(bot: &mut common::TestClient, last: &str) -> Vec<String> {
    let (found, skipped) = bot
        .recv_until_with_skipped(
            |m| matches!(m, S2cMessage::S2cChat(c) if c.from == "ann" && c.content == last),
        )
        .await;
    let mut said = Vec::new();
    for message in skipped.iter().chain([&found]) {
        match message {
            S2cMessage::S2cChat(chat) if chat.from == "ann" => said.push(chat.content.clone()),
            S2cMessage::S2cRoomPresence(p) if p.username == "ann" => {
                panic!("the bot saw ann come or go: {p:?}")
            }
            _ => {}
        }
    }
    said
}

/// The console lines of `page` that are the page's own doing (the browser's notes on
/// connections that failed, while the proxy refused them, are the test's).
async fn own_console(page: &Arc<Page>) -> Vec<String> {
    on(page, |p| p.console())
        .await
        .into_iter()
        .filter(|line| !line.contains("WebSocket connection to"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_resumes_its_session_after_a_cut_and_stalls_missing_and_repeating_nothing() {
    let test = "the_page_resumes_its_session_after_a_cut_and_stalls_missing_and_repeating_nothing";
    let Some(browser) = tokio::task::spawn_blocking(move || launch(test))
        .await
        .unwrap()
    else {
        return;
    };
    let browser = Arc::new(browser);
    let mut config = common::test_config();
    let web = common::with_web(&mut config);
    let server = common::start_server(config).await;
    let proxy = Proxy::start(web).await;
    let ann = open_page(&browser, &format!("http://{}/", proxy.addr)).await;
    log_in_as_guest(&ann, "ann").await;
    join(&ann, "lobby").await;
    let mut bot = server.member("bot", "lobby").await;
    wait(
        &ann,
        "document.querySelector('#members [data-user=\"bot\"]')",
    )
    .await;

    let mut said = Vec::new();
    let mut bot_says = |bot_lines: std::ops::RangeInclusive<u32>| {
        let lines: Vec<String> = bot_lines.map(|i| format!("bot line {i}")).collect();
        said.extend(lines.iter().cloned());
        lines
    };
    for line in bot_says(1..=3) {
        bot.say("lobby", &line, protocol::now_us()).await;
    }
    wait_line(&ann, "lobby", "chat", &["bot", "bot line 3"]).await;

    // The link is cut right behind a line typed in the page: the line may or may not have
    // reached the server. Then a line is typed while the page knows it is away, and the bot
    // goes on chatting.
    type_and_click(&ann, "input", "ann before the cut", "send").await;
    proxy.cut();
    wait(
        &ann,
        "document.getElementById('status').dataset.state === 'closed' && \
         document.getElementById('status').textContent.includes('Resuming the session')",
    )
    .await;
    type_and_click(&ann, "input", "ann while away", "send").await;
    assert_eq!(
        eval(&ann, "document.getElementById('input').value").await,
        "",
        "a line typed while away is taken, to be sent once the session is back"
    );
    for line in bot_says(4..=13) {
        bot.say("lobby", &line, protocol::now_us()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.restore();
    wait_line(&ann, "lobby", "info", &["resumed"]).await;
    wait_line(&ann, "lobby", "chat", &["bot", "bot line 13"]).await;
    wait_line(&ann, "lobby", "chat", &["ann", "ann while away"]).await;
    wait(
        &ann,
        "document.getElementById('status').dataset.state === 'online'",
    )
    .await;

    type_and_click(&ann, "input", "ann after the cut", "send").await;
    assert_eq!(
        ann_said_until(&mut bot, "ann after the cut").await,
        ["ann before the cut", "ann while away", "ann after the cut"],
        "each line typed in the page reaches the bot once, in order"
    );

    // A stall: the link stays open but carries nothing. The page sees its ping go unanswered,
    // and takes the session over on a new connection while the server still holds the old.
    proxy.freeze();
    type_and_click(&ann, "input", "ann in the stall", "send").await;
    for line in bot_says(14..=20) {
        bot.say("lobby", &line, protocol::now_us()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_within(
        &ann,
        &format!(
            "{}.filter(t => t.includes('resumed')).length === 2",
            lines("lobby", "info")
        ),
        Duration::from_secs(30),
    )
    .await;
    wait_line(&ann, "lobby", "chat", &["bot", "bot line 20"]).await;
    wait_line(&ann, "lobby", "chat", &["ann", "ann in the stall"]).await;
    type_and_click(&ann, "input", "ann after the stall", "send").await;
    assert_eq!(
        ann_said_until(&mut bot, "ann after the stall").await,
        ["ann in the stall", "ann after the stall"]
    );
    wait_line(&ann, "lobby", "chat", &["ann", "ann after the stall"]).await;

    // A stall one way: the line typed reaches the server, its echo and the pongs do not. The
    // server says on the resume that it processed the line, which is not sent again.
    proxy.freeze_toward_client();
    type_and_click(&ann, "input", "ann unheard", "send").await;
    bot.expect_chat("lobby", "ann", "ann unheard").await;
    for line in bot_says(21..=25) {
        bot.say("lobby", &line, protocol::now_us()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_within(
        &ann,
        &format!(
            "{}.filter(t => t.includes('resumed')).length === 3",
            lines("lobby", "info")
        ),
        Duration::from_secs(30),
    )
    .await;
    wait_line(&ann, "lobby", "chat", &["bot", "bot line 25"]).await;
    type_and_click(&ann, "input", "ann heard again", "send").await;
    assert_eq!(
        ann_said_until(&mut bot, "ann heard again").await,
        ["ann heard again"],
        "a line the server processed before the resume is not sent again"
    );
    wait_line(&ann, "lobby", "chat", &["ann", "ann heard again"]).await;

    // Every line said is shown once, in order, live; the room was never joined again.
    let shown = chat_lines(&ann, "lobby").await;
    let from_bot: Vec<&str> = shown
        .iter()
        .filter(|(from, _)| from == "bot")
        .map(|(_, text)| text.as_str())
        .collect();
    assert_eq!(from_bot, said, "the bot's lines on the page");
    let from_ann: Vec<&str> = shown
        .iter()
        .filter(|(from, _)| from == "ann")
        .map(|(_, text)| text.as_str())
        .collect();
    assert_eq!(
        from_ann,
        [
            "ann before the cut",
            "ann while away",
            "ann after the cut",
            "ann in the stall",
            "ann after the stall",
            "ann unheard",
            "ann heard again"
        ]
    );
    let info = eval(&ann, &lines("lobby", "info")).await;
    let info: Vec<&str> = info
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        !info
            .iter()
            .any(|l| l.contains("Back in") || l.contains("rejoin")),
        "the room is not joined again: {info:?}"
    );
    let console = own_console(&ann).await;
    assert!(console.is_empty(), "ann's console: {console:#?}");
    drop(ann);
    drop(proxy);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_back_too_late_logs_in_again_and_says_lines_may_be_missing() {
    let test = "a_page_back_too_late_logs_in_again_and_says_lines_may_be_missing";
    let Some(browser) = tokio::task::spawn_blocking(move || launch(test))
        .await
        .unwrap()
    else {
        return;
    };
    let browser = Arc::new(browser);
    let mut config = common::test_config();
    config.net.resume_grace_secs = 1;
    let web = common::with_web(&mut config);
    let server = common::start_server(config).await;
    let proxy = Proxy::start(web).await;
    let ann = open_page(&browser, &format!("http://{}/", proxy.addr)).await;
    log_in_as_guest(&ann, "ann").await;
    join(&ann, "lobby").await;
    let mut bot = server.member("bot", "lobby").await;
    wait(
        &ann,
        "document.querySelector('#members [data-user=\"bot\"]')",
    )
    .await;

    // Away past the grace window: the session ends (the bot sees ann leave).
    proxy.cut();
    bot.say("lobby", "said while ann was gone", protocol::now_us())
        .await;
    bot.recv_until(
        |m| matches!(m, S2cMessage::S2cRoomPresence(p) if p.username == "ann" && !p.joined),
    )
    .await;
    proxy.restore();

    // The page is told SESSION_LOST, logs in again, joins its room again and says so.
    wait_within(
        &ann,
        &format!(
            "{}.some(t => t.includes('some lines may have been missed'))",
            lines("lobby", "info")
        ),
        Duration::from_secs(20),
    )
    .await;
    wait_line(&ann, "lobby", "info", &["Back in lobby"]).await;
    bot.await_presence("ann").await;
    wait(
        &ann,
        "document.getElementById('status').dataset.state === 'online'",
    )
    .await;
    // What was said meanwhile comes back as the room's history.
    wait_line(
        &ann,
        "lobby",
        "chat.history",
        &["bot", "said while ann was gone"],
    )
    .await;
    type_and_click(&ann, "input", "ann is back", "send").await;
    bot.expect_chat("lobby", "ann", "ann is back").await;
    let console = own_console(&ann).await;
    assert!(console.is_empty(), "ann's console: {console:#?}");
    drop(ann);
    drop(proxy);
    server.shutdown().await;
}
