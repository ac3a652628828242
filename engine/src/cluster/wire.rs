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
    #[prost(oneof = "Kind", tags = "1, 2, 5, 6, 7, 8, 9, 11, 12, 13")]
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
    /// A whisper for a user of the receiving node: the encoded S2C_Whisper frame.
    #[prost(message, tag = "5")]
    Whisper(Whisper),
    /// A member joined a room on the sending node.
    #[prost(message, tag = "6")]
    Joined(Membership),
    /// A member left a room on the sending node.
    #[prost(message, tag = "7")]
    Left(Membership),
    /// A chat line for the receiving node's members of a room: the encoded S2C_Chat frame.
    #[prost(message, tag = "8")]
    Chat(Chat),
    /// Every room of the sending node with its members, replacing what was known of them.
    #[prost(message, tag = "9")]
    Rooms(RoomsState),
    // Tag 10 was a game's own event, now a module's (tag 13).
    /// A login, resume or registration the sending node counted against its limits.
    #[prost(message, tag = "11")]
    Counted(Counted),
    /// A frame for the receiving node's members of a room, kept nowhere (an emote, a game's
    /// own message to a room): see [`crate::modules::rooms::send_to_room`].
    #[prost(message, tag = "12")]
    RoomFrame(Chat),
    /// A module's own event (a game's too): see [`crate::cluster::Cluster::send_module`].
    #[prost(message, tag = "13")]
    Module(ModuleEvent),
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

/// See [`Kind::Whisper`].
#[derive(Clone, PartialEq, Message)]
pub struct Whisper {
    /// The receiver's username.
    #[prost(string, tag = "1")]
    pub to: String,
    /// The frame to deliver as it is.
    #[prost(bytes = "bytes", tag = "2")]
    pub frame: bytes::Bytes,
}

/// A member of a room.
#[derive(Clone, PartialEq, Message)]
pub struct Membership {
    /// The room.
    #[prost(string, tag = "1")]
    pub room: String,
    /// The member's username.
    #[prost(string, tag = "2")]
    pub username: String,
}

/// See [`Kind::Chat`].
#[derive(Clone, PartialEq, Message)]
pub struct Chat {
    /// The room.
    #[prost(string, tag = "1")]
    pub room: String,
    /// The frame to deliver as it is.
    #[prost(bytes = "bytes", tag = "2")]
    pub frame: bytes::Bytes,
}

/// See [`Kind::Rooms`].
#[derive(Clone, PartialEq, Message)]
pub struct RoomsState {
    /// The rooms.
    #[prost(message, repeated, tag = "1")]
    pub rooms: Vec<RoomMembers>,
}

/// One room of a node and its members there.
#[derive(Clone, PartialEq, Message)]
pub struct RoomMembers {
    /// The room.
    #[prost(string, tag = "1")]
    pub room: String,
    /// Its members on that node, in the order they joined.
    #[prost(string, repeated, tag = "2")]
    pub usernames: Vec<String>,
}

/// Decodes a batch as received from NATS.
pub fn decode(payload: &[u8]) -> Result<Batch, prost::DecodeError> {
    Batch::decode(payload)
}
