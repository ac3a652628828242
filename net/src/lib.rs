//! Transport for the world server and the dummy client: framing, sessions, services.
//!
//! This crate knows frames (`u16 size`, `u16 id`, payload) and TCP; it knows nothing of
//! protobuf or of what the ids mean. Network tasks never touch world state: everything they
//! learn reaches the owner of the state (a tick loop) as [`ServiceEvent`]s and
//! [`SessionEvent`]s on bounded queues.
//!
//! # Layout
//!
//! - [`codec`]: sans-IO decoder of the frame format, [`Packet`] views into the read buffer.
//! - [`session`]: one TCP connection: a read task, a write task, bounded queues both ways,
//!   and the typed [`DisconnectReason`] it ends with.
//! - [`refuse`]: [`Refuser`] answers connections the owner does not take, at a bounded cost.
//! - [`service`]: [`ServerService`] accepts, [`ClientService`] connects (many at once, with a
//!   bound on connects in flight); both report through [`ServiceEvent`].
#![warn(missing_docs)]

pub mod codec;
pub mod refuse;
pub mod service;
pub mod session;

pub use codec::{CodecError, FrameCodec, FrameError, Packet, HEADER_LEN};
pub use refuse::{Refusal, Refuser};
pub use service::{ClientService, ServerService, ServiceEvent};
pub use session::{DisconnectReason, SendError, Session, SessionConfig, SessionEvent, SessionId};
