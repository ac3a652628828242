//! The bytes of a recording: what the core took ([`Input`]) written compactly (LEB128 varints,
//! length-prefixed strings and payloads), and read back into the same values.
//!
//! A module's answers from the DB worker ([`DbEvent::Module`]) are the module's own types: a
//! module that a recording must carry registers how to write and read them
//! ([`crate::world::Setup::record_answers`]), as the rooms module does for its history loads.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use net::{DisconnectReason, FrameError, Packet, SessionId, Transport, WsError};

use crate::cluster::link::{FromNats, Reservation};
pub use crate::codec::{
    put_bytes, put_str, put_var, AnswerCodec, AnswerDecode, AnswerEncode, Reader,
};
use crate::core::Input;
use crate::db::{AuthFailure, Authenticated, DbDone, DbEvent, Lane};

/// Writes `input`; an error names what cannot be recorded (a module's DB answer with no codec).
pub fn put_input(out: &mut Vec<u8>, input: &Input, codecs: &[AnswerCodec]) -> Result<(), String> {
    match input {
        Input::Accepted { token, peer } => {
            out.push(1);
            put_var(out, *token);
            put_addr(out, peer);
        }
        Input::Ready { session, transport } => {
            out.push(2);
            put_var(out, session.0);
            out.push(transport_code(*transport));
        }
        Input::Received { session, packet } => {
            out.push(3);
            put_var(out, session.0);
            put_var(out, u64::from(packet.id));
            put_bytes(out, &packet.payload);
        }
        Input::Closed { session, reason } => {
            out.push(4);
            put_var(out, session.0);
            put_reason(out, reason);
        }
        Input::SlowConsumer { session } => {
            out.push(5);
            put_var(out, session.0);
        }
        Input::Cluster(from_nats) => {
            out.push(6);
            put_from_nats(out, from_nats);
        }
        Input::Db(done) => {
            out.push(7);
            put_db(out, done, codecs)?;
        }
        Input::DbDied => out.push(8),
    }
    Ok(())
}

/// Reads an input [`put_input`] wrote.
pub fn input(r: &mut Reader, codecs: &[AnswerCodec]) -> Result<Input, String> {
    Ok(match r.u8()? {
        1 => Input::Accepted {
            token: r.var()?,
            peer: addr(r)?,
        },
        2 => Input::Ready {
            session: SessionId(r.var()?),
            transport: transport(r.u8()?)?,
        },
        3 => Input::Received {
            session: SessionId(r.var()?),
            packet: Packet {
                id: u16::try_from(r.var()?).map_err(|_| "a message id over 65535")?,
                payload: r.bytes()?,
            },
        },
        4 => Input::Closed {
            session: SessionId(r.var()?),
            reason: reason(r)?,
        },
        5 => Input::SlowConsumer {
            session: SessionId(r.var()?),
        },
        6 => Input::Cluster(from_nats(r)?),
        7 => Input::Db(db(r, codecs)?),
        8 => Input::DbDied,
        other => return Err(format!("unknown input kind {other}")),
    })
}

fn put_addr(out: &mut Vec<u8>, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    put_var(out, u64::from(addr.port()));
}

fn addr(r: &mut Reader) -> Result<SocketAddr, String> {
    let ip = match r.u8()? {
        4 => {
            let b = r.take(4)?;
            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        }
        6 => {
            let b = r.take(16)?;
            let octets: [u8; 16] = b[..].try_into().map_err(|_| "an IPv6 address")?;
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        other => return Err(format!("unknown address family {other}")),
    };
    let port = u16::try_from(r.var()?).map_err(|_| "a port over 65535")?;
    Ok(SocketAddr::new(ip, port))
}

fn transport_code(transport: Transport) -> u8 {
    match transport {
        Transport::Tcp => 0,
        Transport::Tls => 1,
        Transport::Ws => 2,
        Transport::Wss => 3,
        Transport::Http => 4,
        Transport::Https => 5,
    }
}

fn transport(code: u8) -> Result<Transport, String> {
    Ok(match code {
        0 => Transport::Tcp,
        1 => Transport::Tls,
        2 => Transport::Ws,
        3 => Transport::Wss,
        4 => Transport::Http,
        5 => Transport::Https,
        other => return Err(format!("unknown transport {other}")),
    })
}

/// The kinds of I/O error a recording names by number; any other is recorded as `Other`.
const IO_KINDS: [std::io::ErrorKind; 19] = {
    use std::io::ErrorKind::*;
    [
        Other,
        NotFound,
        PermissionDenied,
        ConnectionRefused,
        ConnectionReset,
        ConnectionAborted,
        NotConnected,
        AddrInUse,
        AddrNotAvailable,
        BrokenPipe,
        AlreadyExists,
        WouldBlock,
        InvalidInput,
        InvalidData,
        TimedOut,
        WriteZero,
        Interrupted,
        Unsupported,
        UnexpectedEof,
    ]
};

fn put_reason(out: &mut Vec<u8>, reason: &DisconnectReason) {
    match reason {
        DisconnectReason::PeerClosed => out.push(0),
        DisconnectReason::Protocol(error) => {
            out.push(1);
            match *error {
                FrameError::Undersized(size) => {
                    out.push(0);
                    put_var(out, size as u64);
                }
                FrameError::Truncated(size) => {
                    out.push(1);
                    put_var(out, size as u64);
                }
                FrameError::TlsHandshake => out.push(2),
                FrameError::Oversized { size, max } => {
                    out.push(3);
                    put_var(out, size as u64);
                    put_var(out, max as u64);
                }
            }
        }
        DisconnectReason::Io(kind) => {
            out.push(2);
            out.push(IO_KINDS.iter().position(|k| k == kind).unwrap_or(0) as u8);
        }
        DisconnectReason::SlowConsumer => out.push(3),
        DisconnectReason::IdleTimeout => out.push(4),
        DisconnectReason::Flooding => out.push(5),
        DisconnectReason::Replaced => out.push(6),
        DisconnectReason::ServerFull => out.push(7),
        DisconnectReason::TooManyConnections => out.push(8),
        DisconnectReason::LoginTimeout => out.push(9),
        DisconnectReason::Shutdown => out.push(10),
        DisconnectReason::Kicked(why) => {
            out.push(11);
            put_str(out, why);
        }
        DisconnectReason::Handshake(why) => {
            out.push(12);
            put_str(out, why);
        }
        DisconnectReason::Http(status) => {
            out.push(13);
            put_var(out, u64::from(*status));
        }
        DisconnectReason::WebSocket(error) => {
            out.push(14);
            match error {
                WsError::Text => out.push(0),
                WsError::Unmasked => out.push(1),
                WsError::Masked => out.push(2),
                WsError::Reserved => out.push(3),
                WsError::Opcode(code) => {
                    out.push(4);
                    out.push(*code);
                }
                WsError::BadControl => out.push(5),
                WsError::StrayContinuation => out.push(6),
                WsError::Interleaved => out.push(7),
                WsError::TooBig { size, max } => {
                    out.push(8);
                    put_var(out, *size);
                    put_var(out, *max as u64);
                }
                WsError::SplitFrame(size) => {
                    out.push(9);
                    put_var(out, *size as u64);
                }
                WsError::BadClose => out.push(10),
            }
        }
        DisconnectReason::Resumed => out.push(15),
    }
}

fn usize_of(r: &mut Reader) -> Result<usize, String> {
    let value = r.var()?;
    usize::try_from(value).map_err(|_| format!("a size of {value}"))
}

fn reason(r: &mut Reader) -> Result<DisconnectReason, String> {
    Ok(match r.u8()? {
        0 => DisconnectReason::PeerClosed,
        1 => DisconnectReason::Protocol(match r.u8()? {
            0 => FrameError::Undersized(usize_of(r)?),
            1 => FrameError::Truncated(usize_of(r)?),
            2 => FrameError::TlsHandshake,
            3 => FrameError::Oversized {
                size: usize_of(r)?,
                max: usize_of(r)?,
            },
            other => return Err(format!("unknown frame error {other}")),
        }),
        2 => {
            let code = r.u8()?;
            DisconnectReason::Io(
                *IO_KINDS
                    .get(usize::from(code))
                    .ok_or_else(|| format!("unknown I/O error kind {code}"))?,
            )
        }
        3 => DisconnectReason::SlowConsumer,
        4 => DisconnectReason::IdleTimeout,
        5 => DisconnectReason::Flooding,
        6 => DisconnectReason::Replaced,
        7 => DisconnectReason::ServerFull,
        8 => DisconnectReason::TooManyConnections,
        9 => DisconnectReason::LoginTimeout,
        10 => DisconnectReason::Shutdown,
        11 => DisconnectReason::Kicked(r.string()?),
        12 => DisconnectReason::Handshake(r.string()?),
        13 => DisconnectReason::Http(u16::try_from(r.var()?).map_err(|_| "an HTTP status")?),
        14 => DisconnectReason::WebSocket(match r.u8()? {
            0 => WsError::Text,
            1 => WsError::Unmasked,
            2 => WsError::Masked,
            3 => WsError::Reserved,
            4 => WsError::Opcode(r.u8()?),
            5 => WsError::BadControl,
            6 => WsError::StrayContinuation,
            7 => WsError::Interleaved,
            8 => WsError::TooBig {
                size: r.var()?,
                max: usize_of(r)?,
            },
            9 => WsError::SplitFrame(usize_of(r)?),
            10 => WsError::BadClose,
            other => return Err(format!("unknown WebSocket error {other}")),
        }),
        15 => DisconnectReason::Resumed,
        other => return Err(format!("unknown disconnect reason {other}")),
    })
}

fn put_from_nats(out: &mut Vec<u8>, from_nats: &FromNats) {
    match from_nats {
        FromNats::Batch(batch) => {
            out.push(0);
            put_bytes(out, &prost::Message::encode_to_vec(batch));
        }
        FromNats::Claimed {
            session,
            username,
            granted,
            revision,
        } => {
            out.push(1);
            put_var(out, session.0);
            put_str(out, username);
            out.push(u8::from(*granted));
            put_var(out, *revision);
        }
        FromNats::Held {
            username,
            holder,
            revision,
        } => {
            out.push(2);
            put_str(out, username);
            put_str(out, holder);
            put_var(out, *revision);
        }
        FromNats::Reserved {
            session,
            room,
            outcome,
        } => {
            out.push(3);
            put_var(out, session.0);
            put_str(out, room);
            out.push(match outcome {
                Reservation::Granted => 0,
                Reservation::Full => 1,
                Reservation::Unavailable => 2,
            });
        }
        FromNats::Outranked {
            session,
            username,
            holder,
        } => {
            out.push(4);
            put_var(out, session.0);
            put_str(out, username);
            put_str(out, holder);
        }
        FromNats::Connected => out.push(5),
        FromNats::Disconnected => out.push(6),
        FromNats::Freed { username, revision } => {
            out.push(7);
            put_str(out, username);
            put_var(out, *revision);
        }
    }
}

fn from_nats(r: &mut Reader) -> Result<FromNats, String> {
    Ok(match r.u8()? {
        0 => FromNats::Batch(
            crate::cluster::wire::decode(&r.bytes()?).map_err(|e| format!("a batch: {e}"))?,
        ),
        1 => FromNats::Claimed {
            session: SessionId(r.var()?),
            username: r.string()?,
            granted: r.u8()? != 0,
            revision: r.var()?,
        },
        2 => FromNats::Held {
            username: r.string()?,
            holder: r.string()?,
            revision: r.var()?,
        },
        3 => FromNats::Reserved {
            session: SessionId(r.var()?),
            room: r.string()?,
            outcome: match r.u8()? {
                0 => Reservation::Granted,
                1 => Reservation::Full,
                2 => Reservation::Unavailable,
                other => return Err(format!("unknown reservation outcome {other}")),
            },
        },
        4 => FromNats::Outranked {
            session: SessionId(r.var()?),
            username: r.string()?,
            holder: r.string()?,
        },
        5 => FromNats::Connected,
        6 => FromNats::Disconnected,
        7 => FromNats::Freed {
            username: r.string()?,
            revision: r.var()?,
        },
        other => return Err(format!("unknown cluster input {other}")),
    })
}

fn put_db(out: &mut Vec<u8>, done: &DbDone, codecs: &[AnswerCodec]) -> Result<(), String> {
    out.push(done.lane.index() as u8);
    match &done.event {
        None => out.push(0),
        Some(DbEvent::Auth { session, outcome }) => {
            out.push(1);
            put_var(out, session.0);
            match outcome {
                Ok(auth) => {
                    out.push(0);
                    put_var(out, auth.user_id);
                    put_str(out, &auth.username);
                    put_str(out, &auth.token);
                    out.push(u8::from(auth.guest));
                }
                Err(failure) => {
                    let (code, why) = match failure {
                        AuthFailure::UsernameTaken => (1, ""),
                        AuthFailure::InvalidCredentials => (2, ""),
                        AuthFailure::InvalidToken => (3, ""),
                        AuthFailure::Internal(why) => (4, why.as_str()),
                        AuthFailure::Unavailable(why) => (5, why.as_str()),
                    };
                    out.push(code);
                    put_str(out, why);
                }
            }
        }
        Some(DbEvent::Module { module, answer }) => {
            out.push(2);
            put_str(out, module);
            let codec = codecs.iter().find(|c| c.module == *module).ok_or_else(|| {
                format!("the DB answers of module {module} cannot be recorded: it registers no codec (Setup::record_answers)")
            })?;
            let mut answer_bytes = Vec::new();
            if !(codec.encode)(answer.as_ref(), &mut answer_bytes) {
                return Err(format!(
                    "a DB answer of module {module} is not of the type its codec writes"
                ));
            }
            put_bytes(out, &answer_bytes);
        }
    }
    Ok(())
}

fn db(r: &mut Reader, codecs: &[AnswerCodec]) -> Result<DbDone, String> {
    let lane = match r.u8()? {
        0 => Lane::Write,
        1 => Lane::Quick,
        2 => Lane::Login,
        3 => Lane::Register,
        other => return Err(format!("unknown DB lane {other}")),
    };
    let event = match r.u8()? {
        0 => None,
        1 => {
            let session = SessionId(r.var()?);
            let outcome = match r.u8()? {
                0 => Ok(Authenticated {
                    user_id: r.var()?,
                    username: r.string()?,
                    token: r.string()?,
                    guest: r.u8()? != 0,
                }),
                code => {
                    let why = r.string()?;
                    Err(match code {
                        1 => AuthFailure::UsernameTaken,
                        2 => AuthFailure::InvalidCredentials,
                        3 => AuthFailure::InvalidToken,
                        4 => AuthFailure::Internal(why),
                        5 => AuthFailure::Unavailable(why),
                        other => return Err(format!("unknown login failure {other}")),
                    })
                }
            };
            Some(DbEvent::Auth { session, outcome })
        }
        2 => {
            let name = r.string()?;
            let codec = codecs
                .iter()
                .find(|c| c.module == name)
                .ok_or_else(|| format!("no module {name} in this game to read its DB answer"))?;
            let mut answer = Reader::new(r.bytes()?);
            Some(DbEvent::Module {
                module: codec.module,
                answer: (codec.decode)(&mut answer)?,
            })
        }
        other => return Err(format!("unknown DB answer {other}")),
    };
    Ok(DbDone { lane, event })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn again(input: &Input) -> Input {
        let codecs = [crate::modules::rooms::store::ANSWER_CODEC];
        let mut out = Vec::new();
        put_input(&mut out, input, &codecs).unwrap();
        let mut r = Reader::new(Bytes::from(out));
        let read = super::input(&mut r, &codecs).unwrap();
        assert!(r.is_empty(), "{input:?}: bytes left");
        read
    }

    #[test]
    fn every_kind_of_input_reads_back_as_written() {
        let inputs = vec![
            Input::Accepted {
                token: u64::MAX,
                peer: "127.0.0.2:7000".parse().unwrap(),
            },
            Input::Accepted {
                token: 0,
                peer: "[2001:db8::1]:65535".parse().unwrap(),
            },
            Input::Ready {
                session: SessionId(7),
                transport: Transport::Wss,
            },
            Input::Received {
                session: SessionId(300),
                packet: Packet {
                    id: 2000,
                    payload: Bytes::from_static(b"\x0a\x05lobby"),
                },
            },
            Input::Closed {
                session: SessionId(1),
                reason: DisconnectReason::Protocol(FrameError::Oversized {
                    size: 70000,
                    max: 8192,
                }),
            },
            Input::Closed {
                session: SessionId(1),
                reason: DisconnectReason::WebSocket(WsError::TooBig {
                    size: 1 << 40,
                    max: 65536,
                }),
            },
            Input::Closed {
                session: SessionId(1),
                reason: DisconnectReason::Io(std::io::ErrorKind::ConnectionReset),
            },
            Input::Closed {
                session: SessionId(1),
                reason: DisconnectReason::Kicked("ünïcode".into()),
            },
            Input::SlowConsumer {
                session: SessionId(9),
            },
            Input::Cluster(FromNats::Held {
                username: "ann".into(),
                holder: "node1 5 3 100".into(),
                revision: 12,
            }),
            Input::Cluster(FromNats::Reserved {
                session: SessionId(4),
                room: "lobby".into(),
                outcome: Reservation::Full,
            }),
            Input::Cluster(FromNats::Batch(crate::cluster::Batch {
                from: "node2".into(),
                seq: 3,
                direct: true,
                events: Vec::new(),
                incarnation: 99,
            })),
            Input::Db(DbDone {
                lane: Lane::Login,
                event: Some(DbEvent::Auth {
                    session: SessionId(5),
                    outcome: Ok(Authenticated {
                        user_id: 17,
                        username: "Ann".into(),
                        token: "ab".repeat(32),
                        guest: false,
                    }),
                }),
            }),
            Input::Db(DbDone {
                lane: Lane::Register,
                event: Some(DbEvent::Auth {
                    session: SessionId(6),
                    outcome: Err(AuthFailure::Unavailable("restarting".into())),
                }),
            }),
            Input::Db(DbDone {
                lane: Lane::Quick,
                event: Some(DbEvent::Module {
                    module: crate::modules::rooms::store::MODULE,
                    answer: Box::new(crate::modules::rooms::store::Loaded {
                        room: "lobby".into(),
                        lines: vec![Bytes::from_static(b"one"), Bytes::from_static(b"")],
                    }),
                }),
            }),
            Input::Db(DbDone {
                lane: Lane::Write,
                event: None,
            }),
            Input::DbDied,
        ];
        for input in &inputs {
            // Debug shows every field (a module's answer by its type only: checked below).
            assert_eq!(format!("{input:?}"), format!("{:?}", again(input)));
        }
        let Input::Db(DbDone {
            event: Some(DbEvent::Module { answer, .. }),
            ..
        }) = again(&inputs[14])
        else {
            panic!("not a module answer");
        };
        let loaded = answer
            .downcast::<crate::modules::rooms::store::Loaded>()
            .unwrap();
        assert_eq!(loaded.room, "lobby");
        assert_eq!(loaded.lines, [&b"one"[..], &b""[..]]);
    }

    #[test]
    fn a_module_answer_without_a_codec_is_named_and_truncated_bytes_are_an_error() {
        let input = Input::Db(DbDone {
            lane: Lane::Quick,
            event: Some(DbEvent::Module {
                module: "votes",
                answer: Box::new(3u32),
            }),
        });
        let error = put_input(&mut Vec::new(), &input, &[]).unwrap_err();
        assert!(error.contains("module votes"), "{error}");
        let mut out = Vec::new();
        let received = Input::Received {
            session: SessionId(1),
            packet: Packet {
                id: 2000,
                payload: Bytes::from_static(b"hello"),
            },
        };
        put_input(&mut out, &received, &[]).unwrap();
        out.pop();
        let error = super::input(&mut Reader::new(Bytes::from(out)), &[]).unwrap_err();
        assert!(error.contains("wanted"), "{error}");
    }
}
