//! The TLS front of the transports: how a port tells a TLS client from a client of frames by
//! its first bytes (`net::codec::is_client_hello`), the server's TLS config
//! (`net::tls::server_config` over a `CertSlot`, TLS 1.3 or 1.2 too, HTTP offered by ALPN or
//! not) reading a peer's records in any chunks, and the parser of the certificate's validity
//! (`net::tls::expiry`).
//!
//! Inputs are any bytes; a genuine ClientHello (made by the clients' own config, with or
//! without ALPN `http/1.1`) with bytes changed, cut or added; a frame of the game; or a
//! certificate, any bytes or one well-formed around an arbitrary validity period. Checked:
//! the sniffing answers at the first byte for anything but 0x16, by the sixth at the latest,
//! and never changes its answer as more bytes come; a frame of the protocol's messages is
//! never taken for TLS, and a ClientHello always is; the TLS server ends bad records with an
//! error (and writes its alert), never a panic; an unchanged ClientHello is taken, with ALPN
//! `http/1.1` exactly when both sides offer it (what sends the client to the HTTP front); a
//! certificate's expiry, when found, reads as a UTC date. Everything is in memory and
//! sans-IO: no input can wait.

#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use net::codec::is_client_hello;
use net::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use net::rustls::sign::{CertifiedKey, SigningKey};
use net::rustls::{ClientConnection, ServerConnection};
use net::tls::{self, CertSlot, Trust, ALPN_HTTP};

/// How a certificate's validity period is written.
#[derive(Arbitrary, Debug)]
struct Time {
    /// 0x17 (UTCTime) and 0x18 (GeneralizedTime) are times; any other tag is not.
    tag: u8,
    /// The time's text, such as `491231235959Z`.
    text: TimeText,
}

/// The text of a time.
#[derive(Arbitrary, Debug)]
enum TimeText {
    /// Digits: `YYMMDDHHMMSSZ`, or `YYYYMMDDHHMMSSZ` when `four_digit_year`, each field
    /// modulo 100 (the year modulo 10,000), so that months, days and hours go out of range.
    Digits {
        year: u16,
        month: u8,
        day: u8,
        hour: u8,
        minute: u8,
        second: u8,
        four_digit_year: bool,
    },
    /// Any text, then `Z` or not.
    Text { text: String, z: bool },
    /// Any characters (most of them several bytes long), then `Z` or not.
    Chars { chars: Vec<char>, z: bool },
    /// Any bytes.
    Bytes(Vec<u8>),
}

impl TimeText {
    /// The bytes of the time's contents.
    fn bytes(&self) -> Vec<u8> {
        match self {
            TimeText::Digits {
                year,
                month,
                day,
                hour,
                minute,
                second,
                four_digit_year,
            } => {
                let year = if *four_digit_year {
                    format!("{:04}", year % 10_000)
                } else {
                    format!("{:02}", year % 100)
                };
                let fields = [month, day, hour, minute, second].map(|f| format!("{:02}", f % 100));
                format!("{year}{}Z", fields.concat()).into_bytes()
            }
            TimeText::Text { text, z } => {
                format!("{text}{}", if *z { "Z" } else { "" }).into_bytes()
            }
            TimeText::Chars { chars, z } => {
                let text: String = chars.iter().collect();
                format!("{text}{}", if *z { "Z" } else { "" }).into_bytes()
            }
            TimeText::Bytes(bytes) => bytes.clone(),
        }
    }
}

/// A DER certificate around `not_before` and `not_after`, with the fields before them.
#[derive(Arbitrary, Debug)]
struct Certificate {
    /// Whether the optional `[0]` version is there.
    version: bool,
    /// The serial number's contents.
    serial: Vec<u8>,
    /// The issuer's contents.
    issuer: Vec<u8>,
    /// The start of the validity period.
    not_before: Time,
    /// Its end.
    not_after: Time,
    /// Whether the lengths use the long form.
    long_lengths: bool,
}

/// What the peer sends.
#[derive(Arbitrary, Debug)]
enum Peer {
    /// Any bytes.
    Raw(Vec<u8>),
    /// A genuine ClientHello, changed: bytes replaced at offsets, cut, more added.
    Hello {
        /// Whether the client offers ALPN `http/1.1`.
        alpn_http: bool,
        /// Bytes replaced: (offset, modulo the length; the new byte).
        edits: Vec<(u16, u8)>,
        /// Where it is cut, modulo its length plus one.
        cut: Option<u16>,
        /// Bytes after it.
        after: Vec<u8>,
    },
    /// A frame of the game: the id of a message of `protocol::MESSAGE_IDS`, by index.
    Frame { message: u8, payload: Vec<u8> },
    /// A certificate of any bytes, for the validity parser.
    CertificateBytes(Vec<u8>),
    /// A well-formed certificate around an arbitrary validity period.
    Certificate(Certificate),
}

/// One input: the server's TLS config, what the peer sends, and the reads it arrives in.
#[derive(Arbitrary, Debug)]
struct Input {
    /// `tls.allow_tls12`.
    allow_tls12: bool,
    /// Whether the port serves HTTP too (ALPN `http/1.1` offered).
    http: bool,
    /// What the peer sends.
    peer: Peer,
    /// The lengths of the reads (see `world_fuzz::chunks`).
    reads: Vec<u8>,
}

/// The server's signing key (P-256), made once per process. The certificate the server
/// sends with it is never checked here: no handshake gets as far as a client reading it.
fn signing_key() -> Arc<dyn SigningKey> {
    static KEY: OnceLock<Arc<dyn SigningKey>> = OnceLock::new();
    KEY.get_or_init(|| {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &rng,
        )
        .expect("ring makes a P-256 key");
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.as_ref().to_vec()));
        tls::provider()
            .key_provider
            .load_private_key(der)
            .expect("rustls takes the key ring made")
    })
    .clone()
}

/// The server configs, by (allow_tls12, http), made once each.
fn server_config(allow_tls12: bool, http: bool) -> Arc<net::rustls::ServerConfig> {
    static CONFIGS: OnceLock<Vec<Arc<net::rustls::ServerConfig>>> = OnceLock::new();
    let configs = CONFIGS.get_or_init(|| {
        let certified = Arc::new(CertifiedKey::new(
            vec![CertificateDer::from(vec![0x30, 0x00])],
            signing_key(),
        ));
        let slot = CertSlot::new(certified);
        [(false, false), (false, true), (true, false), (true, true)]
            .into_iter()
            .map(|(tls12, http)| tls::server_config(slot.clone(), tls12, http))
            .collect()
    });
    configs[usize::from(allow_tls12) * 2 + usize::from(http)].clone()
}

/// A ClientHello as the clients send it (the dummy client's and the browser's configs: with
/// ALPN `http/1.1` for WebSocket over TLS), made once each per process.
fn client_hello(alpn_http: bool) -> &'static [u8] {
    static HELLOS: OnceLock<[Vec<u8>; 2]> = OnceLock::new();
    let hellos = HELLOS.get_or_init(|| {
        let make = |alpn: bool| {
            let config = tls::client_config(&Trust::Insecure).expect("an insecure client config");
            let config = if alpn { tls::for_http(&config) } else { config };
            let name = tls::server_name("localhost").expect("a DNS name");
            let mut client = ClientConnection::new(config, name).expect("a client connection");
            let mut hello = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut hello).expect("writes to a Vec");
            }
            hello
        };
        [make(false), make(true)]
    });
    &hellos[usize::from(alpn_http)]
}

/// A DER element of `tag` around `contents`.
fn der(tag: u8, contents: &[u8], long: bool, out: &mut Vec<u8>) {
    out.push(tag);
    let len = contents.len();
    if len < 0x80 && !long {
        out.push(len as u8);
    } else {
        let bytes = (len as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count().min(3);
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
}

/// The DER of `c`: Certificate { tbsCertificate { [0] version, serial, signature, issuer,
/// validity { notBefore, notAfter } } }.
fn certificate(c: &Certificate) -> Vec<u8> {
    let long = c.long_lengths;
    let mut tbs = Vec::new();
    if c.version {
        der(0xa0, &[0x02, 0x01, 0x02], long, &mut tbs);
    }
    der(0x02, &c.serial, long, &mut tbs);
    der(0x30, &[0x06, 0x00], long, &mut tbs);
    der(0x30, &c.issuer, long, &mut tbs);
    let mut validity = Vec::new();
    der(
        c.not_before.tag,
        &c.not_before.text.bytes(),
        long,
        &mut validity,
    );
    der(
        c.not_after.tag,
        &c.not_after.text.bytes(),
        long,
        &mut validity,
    );
    der(0x30, &validity, long, &mut tbs);
    let mut certificate = Vec::new();
    der(0x30, &tbs, long, &mut certificate);
    let mut out = Vec::new();
    der(0x30, &certificate, long, &mut out);
    out
}

/// The expiry of a certificate of `bytes`: none, or a UTC date.
fn check_expiry(bytes: Vec<u8>) {
    let certified = CertifiedKey::new(vec![CertificateDer::from(bytes)], signing_key());
    if let Some((_, text)) = tls::expiry(&certified) {
        assert!(text.ends_with(" UTC"), "{text:?}");
    }
}

/// The sniffing of the first bytes of `stream`: by the sixth byte at the latest, at the
/// first for anything but 0x16, and never another answer for more bytes.
fn check_sniffing(stream: &[u8]) -> Option<bool> {
    let mut answer = None;
    for len in 0..=stream.len().min(16) {
        let now = is_client_hello(&stream[..len]);
        match (answer, now) {
            (None, _) => answer = now,
            (Some(before), Some(now)) => assert_eq!(before, now, "the answer changed at {len}"),
            (Some(_), None) => panic!("an answer was taken back at {len} bytes"),
        }
        if len >= 6 || (len >= 1 && stream[0] != 0x16) {
            assert!(now.is_some(), "no answer after {len} bytes");
        }
    }
    answer
}

/// Feeds `stream` in `reads` to a TLS server of `config`; its error, if it gave one.
fn serve(server: &mut ServerConnection, stream: &[u8], reads: &[u8]) -> Option<String> {
    let mut written = Vec::new();
    for chunk in world_fuzz::chunks(stream, reads) {
        let mut rest = chunk;
        while !rest.is_empty() {
            match server.read_tls(&mut rest) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) => return Some(error.to_string()),
            }
            if let Err(error) = server.process_new_packets() {
                // The server tells the peer, as the front's handshake does.
                while server.wants_write() {
                    server.write_tls(&mut written).expect("writes to a Vec");
                }
                return Some(error.to_string());
            }
        }
        while server.wants_write() {
            server.write_tls(&mut written).expect("writes to a Vec");
        }
    }
    None
}

fuzz_target!(|input: Input| {
    let stream: Vec<u8> = match input.peer {
        Peer::CertificateBytes(bytes) => return check_expiry(bytes),
        Peer::Certificate(c) => return check_expiry(certificate(&c)),
        Peer::Raw(bytes) => bytes,
        Peer::Frame { message, payload } => {
            let (id, _) = protocol::MESSAGE_IDS[usize::from(message) % protocol::MESSAGE_IDS.len()];
            let mut frame = bytes::BytesMut::new();
            let payload = &payload[..payload.len().min(u16::MAX as usize - net::HEADER_LEN)];
            net::codec::encode_raw(id, payload, &mut frame);
            assert_eq!(
                is_client_hello(&frame),
                Some(false),
                "a frame of {id} is taken for a ClientHello"
            );
            frame.to_vec()
        }
        Peer::Hello {
            alpn_http,
            edits,
            cut,
            after,
        } => {
            let mut hello = client_hello(alpn_http).to_vec();
            assert_eq!(
                is_client_hello(&hello),
                Some(true),
                "a ClientHello is not taken for one"
            );
            let unchanged = edits.is_empty() && cut.is_none() && after.is_empty();
            for (at, byte) in edits {
                let at = usize::from(at) % hello.len();
                hello[at] = byte;
            }
            if let Some(cut) = cut {
                hello.truncate(usize::from(cut) % (hello.len() + 1));
            }
            hello.extend_from_slice(&after);
            if unchanged {
                let mut server =
                    ServerConnection::new(server_config(input.allow_tls12, input.http))
                        .expect("a server connection");
                let error = serve(&mut server, &hello, &input.reads);
                assert_eq!(error, None, "a genuine ClientHello was refused");
                assert!(server.is_handshaking());
                let alpn = server.alpn_protocol();
                if input.http && alpn_http {
                    assert_eq!(alpn, Some(ALPN_HTTP), "both offered http/1.1");
                } else {
                    assert_eq!(alpn, None, "ALPN without both offering it");
                }
                return;
            }
            hello
        }
    };
    check_sniffing(&stream);
    let mut server = ServerConnection::new(server_config(input.allow_tls12, input.http))
        .expect("a server connection");
    serve(&mut server, &stream, &input.reads);
});
