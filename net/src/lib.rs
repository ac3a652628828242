//! Transport for the world server and the dummy client: framing, sessions, services.
//!
//! This crate knows frames (`u16 size`, `u16 id`, payload) and what carries them: TCP, TLS
//! (rustls) and WebSocket (RFC 6455, frames in binary messages), and the few HTTP answers of a
//! game port; it knows nothing of protobuf or of what the ids mean. Network tasks never touch world state: everything they
//! learn reaches the owner of the state (a tick loop) as [`ServiceEvent`]s and
//! [`SessionEvent`]s on bounded queues.
//!
//! # Layout
//!
//! - [`codec`]: sans-IO decoder of the frame format, [`Packet`] views into the read buffer.
//! - [`session`]: one connection: a read task, a write task, bounded queues both ways.
//! - [`reason`]: the typed [`DisconnectReason`] a session ends with.
//! - [`transport`]: how a connection is set up before frames flow ([`Negotiation`]): TLS,
//!   telling clients apart by their first bytes, the WebSocket upgrade, HTTP answers.
//! - [`ws`]: sans-IO WebSocket frames and handshake; [`http`]: sans-IO HTTP/1.1 heads;
//!   [`tls`]: certificates (checked, replaceable while serving) and client trust.
//! - [`refuse`]: [`Refuser`] answers connections the owner does not take, at a bounded cost.
//! - [`service`]: [`ServerService`] accepts, [`ClientService`] connects (many at once, with a
//!   bound on connects in flight); both report through [`ServiceEvent`].
#![warn(missing_docs)]

pub mod calendar;
pub mod codec;
pub mod http;
pub mod reason;
pub mod refuse;
pub mod service;
pub mod session;
pub mod tls;
pub mod transport;
pub mod ws;

pub use rustls;
pub use tokio_rustls;

pub use codec::{CodecError, FrameCodec, FrameError, Packet, WsError, HEADER_LEN};
pub use refuse::{Refusal, Refuser};
pub use service::{listen, ClientService, ServerService, ServiceEvent, LISTEN_BACKLOG};
pub use session::{
    close_code, DisconnectReason, SendError, Session, SessionConfig, SessionEvent, SessionId,
};
pub use transport::{
    AcceptSide, ConnectSide, Framing, Negotiation, Transport, Web, WebFile, WsTarget,
};
pub use ws::Origins;
