//! What nodes send each other over NATS: one [`Batch`] of [`Event`]s per stream per tick, in
//! protobuf (prost). Between nodes of one version only; clients never see it.

use prost::{Message, Oneof};

/// A tick's events from one node, on one stream (to all, or to one node).
#[derive(Clone, PartialEq, Message)]
pub struct Batch {
    /// The sending node.
    #[prost(string, tag = "1")]
    pub from: String,
    /// Its sequence number on this stream, from 1.
    #[prost(uint64, tag = "2")]
    pub seq: u64,
    /// Whether this is the stream to one node (else the one to all).
    #[prost(bool, tag = "3")]
    pub direct: bool,
    /// The events, in the order they happened.
    #[prost(message, repeated, tag = "4")]
    pub events: Vec<Event>,
    /// A number the sending node drew when it started: a node restarted under the same name
    /// is a new one, with sequence numbers from 1 again.
    #[prost(uint64, tag = "5")]
    pub incarnation: u64,
}

/// One thing a node tells others.
#[derive(Clone, PartialEq, Message)]
pub struct Event {
    /// What.
    #[prost(oneof = "Kind", tags = "1, 2, 11, 13")]
    pub kind: Option<Kind>,
}

impl Event {
    /// An event of `kind`.
    pub fn new(kind: Kind) -> Event {
        Event { kind: Some(kind) }
    }
}

/// The kinds of [`Event`].
#[derive(Clone, PartialEq, Oneof)]
pub enum Kind {
    /// A node started (or came back): send it your state.
    #[prost(message, tag = "1")]
    Hello(Hello),
    /// Still here.
    #[prost(message, tag = "2")]
    Heartbeat(Heartbeat),
    // Tags 5 to 9 and 12 were the rooms' and chat's events: now theirs, as a module's (13).
    // Tag 10 was a game's own event, now a module's (tag 13).
    /// A login, resume or registration the sending node counted against its limits.
    #[prost(message, tag = "11")]
    Counted(Counted),
    /// A module's own event (a game's too): see [`crate::cluster::Cluster::send_module`].
    #[prost(message, tag = "13")]
    Module(ModuleEvent),
}

impl Kind {
    /// The payload of `module`'s own event; any other event is handed back, for a cluster
    /// hook ([`crate::world::Setup::on_cluster_event`]) to return as it is:
    ///
    /// ```ignore
    /// let payload = match event.payload_of("votes") {
    ///     Ok(payload) => payload,
    ///     Err(other) => return Some(other),
    /// };
    /// ```
    pub fn payload_of(self, module: &str) -> Result<bytes::Bytes, Kind> {
        match self {
            Kind::Module(event) if event.module == module => Ok(event.payload),
            other => Err(other),
        }
    }
}

/// See [`Kind::Module`].
#[derive(Clone, PartialEq, Message)]
pub struct ModuleEvent {
    /// The module's name, which routes it to the module's hook.
    #[prost(string, tag = "1")]
    pub module: String,
    /// What the module sent, as it sent it.
    #[prost(bytes = "bytes", tag = "2")]
    pub payload: bytes::Bytes,
}

/// See [`Kind::Counted`] and [`crate::throttle::Counted`].
#[derive(Clone, PartialEq, Message)]
pub struct Counted {
    /// 1: a failed login, 2: a login, 3: a bad token, 4: a registration.
    #[prost(uint32, tag = "1")]
    pub what: u32,
    /// The client's address key.
    #[prost(string, tag = "2")]
    pub addr: String,
    /// The username, folded to lowercase (empty for a bad token).
    #[prost(string, tag = "3")]
    pub user: String,
}

/// See [`Kind::Hello`].
#[derive(Clone, PartialEq, Message)]
pub struct Hello {}

/// See [`Kind::Heartbeat`].
#[derive(Clone, PartialEq, Message)]
pub struct Heartbeat {}

/// Decodes a batch as received from NATS.
pub fn decode(payload: &[u8]) -> Result<Batch, prost::DecodeError> {
    Batch::decode(payload)
}
