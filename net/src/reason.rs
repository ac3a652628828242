//! [`DisconnectReason`]: why a session ended, as its owner is told and as metrics and logs
//! name it.

use std::{fmt, io};

use crate::codec::{FrameError, WsError};
use crate::ws;

/// Why a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The peer closed the connection.
    PeerClosed,
    /// The peer sent a frame header that corrupts the stream.
    Protocol(FrameError),
    /// The socket failed.
    Io(io::ErrorKind),
    /// The peer did not read its frames fast enough and its outbound queue passed its bound.
    SlowConsumer,
    /// The peer sent nothing for too long.
    IdleTimeout,
    /// The peer kept sending requests far above its rate limit.
    Flooding,
    /// Another session logged in with the same username.
    Replaced,
    /// The owner had no room for another session.
    ServerFull,
    /// The peer's address holds as many sessions (or sessions without a login) as it may.
    TooManyConnections,
    /// The peer did not log in within the owner's deadline.
    LoginTimeout,
    /// The owner is shutting down.
    Shutdown,
    /// The owner closed the session for a reason of its own.
    Kicked(String),
    /// Setting the connection up failed: a TLS handshake, plain bytes on a TLS port, a TLS
    /// handshake on a plain port, a WebSocket upgrade refused (client side), or too slow.
    Handshake(String),
    /// The connection was an HTTP request (the page, an error), answered with this status.
    Http(u16),
    /// The peer broke the WebSocket protocol.
    WebSocket(WsError),
    /// The connection took an earlier session back: it carries that session from now on, and
    /// its own ends here.
    Resumed,
}

impl DisconnectReason {
    /// A short name of the kind of reason, without its details (`protocol_error`, not which
    /// one): for counting disconnects by reason.
    pub fn label(&self) -> &'static str {
        match self {
            DisconnectReason::PeerClosed => "peer_closed",
            DisconnectReason::Protocol(_) => "protocol_error",
            DisconnectReason::Io(_) => "socket_error",
            DisconnectReason::SlowConsumer => "slow_consumer",
            DisconnectReason::IdleTimeout => "idle_timeout",
            DisconnectReason::Flooding => "flooding",
            DisconnectReason::Replaced => "replaced",
            DisconnectReason::ServerFull => "server_full",
            DisconnectReason::TooManyConnections => "too_many_connections",
            DisconnectReason::LoginTimeout => "login_timeout",
            DisconnectReason::Shutdown => "shutdown",
            DisconnectReason::Kicked(_) => "kicked",
            DisconnectReason::Handshake(_) => "handshake_failed",
            DisconnectReason::Http(_) => "http",
            DisconnectReason::WebSocket(_) => "websocket_error",
            DisconnectReason::Resumed => "resumed",
        }
    }

    /// Every label of [`DisconnectReason::label`], for counters made before any disconnect.
    pub const LABELS: [&'static str; 16] = [
        "peer_closed",
        "protocol_error",
        "socket_error",
        "slow_consumer",
        "idle_timeout",
        "flooding",
        "replaced",
        "server_full",
        "too_many_connections",
        "login_timeout",
        "shutdown",
        "kicked",
        "handshake_failed",
        "http",
        "websocket_error",
        "resumed",
    ];
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::PeerClosed => f.write_str("peer closed"),
            DisconnectReason::Protocol(e) => write!(f, "protocol error: {e}"),
            DisconnectReason::Io(kind) => write!(f, "socket error: {kind}"),
            DisconnectReason::SlowConsumer => f.write_str("slow consumer: outbound queue full"),
            DisconnectReason::IdleTimeout => f.write_str("idle timeout"),
            DisconnectReason::Flooding => {
                f.write_str("flooding: requests far above the rate limit")
            }
            DisconnectReason::Replaced => f.write_str("replaced by a newer login"),
            DisconnectReason::ServerFull => f.write_str("server full"),
            DisconnectReason::TooManyConnections => {
                f.write_str("too many connections from its address")
            }
            DisconnectReason::LoginTimeout => f.write_str("no login before the deadline"),
            DisconnectReason::Shutdown => f.write_str("shutdown"),
            DisconnectReason::Kicked(why) => write!(f, "kicked: {why}"),
            DisconnectReason::Handshake(why) => write!(f, "handshake failed: {why}"),
            DisconnectReason::Http(status) => write!(f, "an HTTP request, answered {status}"),
            DisconnectReason::WebSocket(e) => write!(f, "WebSocket protocol error: {e}"),
            DisconnectReason::Resumed => f.write_str("took an earlier session back"),
        }
    }
}

/// The WebSocket close code that says `reason` (RFC 6455, 7.4).
pub fn close_code(reason: &DisconnectReason) -> u16 {
    match reason {
        DisconnectReason::Shutdown => ws::close::GOING_AWAY,
        DisconnectReason::Protocol(_) => ws::close::PROTOCOL,
        DisconnectReason::WebSocket(e) => e.close_code(),
        // "Try Again Later" (IANA's registry).
        DisconnectReason::ServerFull => 1013,
        DisconnectReason::Replaced
        | DisconnectReason::Flooding
        | DisconnectReason::LoginTimeout
        | DisconnectReason::TooManyConnections
        | DisconnectReason::IdleTimeout
        | DisconnectReason::SlowConsumer
        | DisconnectReason::Kicked(_) => ws::close::POLICY,
        _ => ws::close::NORMAL,
    }
}

/// The reason a failed socket gives.
pub(crate) fn io_reason(error: &io::Error) -> DisconnectReason {
    match error.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => DisconnectReason::PeerClosed,
        kind => DisconnectReason::Io(kind),
    }
}
