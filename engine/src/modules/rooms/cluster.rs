//! Rooms across the nodes of a cluster: the members other nodes have in each room
//! ([`Rooms::remote`]), kept from their joins, leaves and room state, and shown to this
//! node's members as presence; their chat lines, delivered to this node's members and kept
//! in the room's history here (the node where a line was said writes it to the database).
//!
//! What the module says to other nodes is a [`RoomsEvent`], the payload of its module events
//! ([`Cluster::send_module`] under the name [`MODULE`]), as a game's own module would send.

use bytes::Bytes;
use prost::Message;

use super::store::MODULE;
use super::{Rooms, RoomsGame};
use crate::cluster::{Cluster, Kind};
use crate::hash::Map;
use crate::world::World;

/// What the rooms module of one node tells the others.
#[derive(Clone, PartialEq, Message)]
pub struct RoomsEvent {
    /// What it says.
    #[prost(oneof = "Said", tags = "1, 2, 3, 4, 5")]
    pub said: Option<Said>,
}

/// See [`RoomsEvent`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Said {
    /// A member joined a room on the sending node.
    #[prost(message, tag = "1")]
    Joined(Member),
    /// A member left a room on the sending node.
    #[prost(message, tag = "2")]
    Left(Member),
    /// A chat line for the receiving node's members of a room, which keep it in the room's
    /// history: the encoded S2C_Chat frame.
    #[prost(message, tag = "3")]
    Line(RoomFrame),
    /// A frame for the receiving node's members of a room, kept nowhere (see
    /// [`super::send_to_room`]).
    #[prost(message, tag = "4")]
    Frame(RoomFrame),
    /// Every room of the sending node with its members, replacing what was known of them.
    #[prost(message, tag = "5")]
    Rooms(RoomsState),
}

/// A member of a room.
#[derive(Clone, PartialEq, Message)]
pub struct Member {
    /// The room.
    #[prost(string, tag = "1")]
    pub room: String,
    /// The member's username.
    #[prost(string, tag = "2")]
    pub username: String,
}

/// A frame for a room's members.
#[derive(Clone, PartialEq, Message)]
pub struct RoomFrame {
    /// The room.
    #[prost(string, tag = "1")]
    pub room: String,
    /// The frame to deliver as it is.
    #[prost(bytes = "bytes", tag = "2")]
    pub frame: Bytes,
}

/// See [`Said::Rooms`].
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

/// `said`, encoded as the payload of the module's event.
pub(crate) fn encode(said: Said) -> Bytes {
    Bytes::from(RoomsEvent { said: Some(said) }.encode_to_vec())
}

/// Tells node `to` (every other node when `None`) what `said`.
pub(crate) fn tell(cluster: &mut Cluster, to: Option<&str>, said: Said) {
    cluster.send_module(to, MODULE, encode(said));
}

/// What a module event of the rooms module says; `None` for another module's (or one that
/// does not decode).
pub fn decode(event: &Kind) -> Option<Said> {
    let payload = event.clone().payload_of(MODULE).ok()?;
    RoomsEvent::decode(payload).ok()?.said
}

/// Hook: an event of the rooms module from node `from` (any other is handed back).
pub(super) fn event<G: RoomsGame>(
    world: &mut World<G>,
    from: &str,
    event: Kind,
    _: std::time::Instant,
) -> Option<Kind> {
    let payload = match event.payload_of(MODULE) {
        Ok(payload) => payload,
        Err(other) => return Some(other),
    };
    let said = match RoomsEvent::decode(payload) {
        Ok(RoomsEvent { said: Some(said) }) => said,
        Ok(RoomsEvent { said: None }) => return None,
        Err(e) => {
            spdlog::warn!(
                "cluster: an event of the rooms module from node {from} does not decode: {e}"
            );
            return None;
        }
    };
    match said {
        Said::Joined(Member { room, username }) => {
            let names = world
                .game
                .rooms_mut()
                .remote
                .entry(room.clone())
                .or_default()
                .entry(from.to_string())
                .or_default();
            if !names.contains(&username) {
                names.push(username.clone());
                presence(world, &room, &username, true);
            }
        }
        Said::Left(Member { room, username }) => {
            if forget(world.game.rooms_mut(), &room, from, &username) {
                presence(world, &room, &username, false);
            }
        }
        Said::Line(line) => deliver(world, &line.room, line.frame, true),
        Said::Frame(frame) => deliver(world, &frame.room, frame.frame, false),
        Said::Rooms(state) => replace(world, from, state),
    }
    None
}

/// Hook: node `to` is new: it gets every room of this node with its members here.
pub(super) fn state<G: RoomsGame>(world: &mut World<G>, to: &str) {
    let rooms: Vec<RoomMembers> = world
        .game
        .rooms()
        .rooms
        .values()
        .filter(|room| !room.members.is_empty())
        .map(|room| RoomMembers {
            room: room.name.clone(),
            usernames: room
                .members
                .iter()
                .filter_map(|m| world.login(*m).map(|l| l.username.clone()))
                .collect(),
        })
        .collect();
    if let Some(cluster) = world.cluster.as_mut() {
        tell(cluster, Some(to), Said::Rooms(RoomsState { rooms }));
    }
}

/// Hook: node `node` is gone: its members leave every room (this node's members see them go).
pub(super) fn node_lost<G: RoomsGame>(world: &mut World<G>, node: &str) {
    replace(world, node, RoomsState { rooms: Vec::new() });
}

/// Hook: batches of node `node` were lost on their way here, and chat lines of its members
/// with them: the members here of each room it has members in are told, in one
/// S2C_RoomMissed per room. Its state is asked for again; rooms it turns out to have members
/// in as well (joined in what was lost) are told when it comes ([`replace`]).
pub(super) fn missed_from<G: RoomsGame>(world: &mut World<G>, node: &str) {
    let rooms = world.game.rooms();
    let mut concerned: Vec<String> = rooms
        .remote
        .iter()
        .filter(|(_, nodes)| nodes.contains_key(node))
        .map(|(room, _)| room.clone())
        .collect();
    concerned.sort_unstable();
    let mut told = world
        .game
        .rooms_mut()
        .missed
        .remove(node)
        .unwrap_or_default();
    for room in concerned {
        if told.insert(room.clone()) {
            tell_missed(world, &room);
        }
    }
    world.game.rooms_mut().missed.insert(node.to_string(), told);
}

/// Tells this node's members of `room` that lines said in it on another node did not reach
/// them.
fn tell_missed<G: RoomsGame>(world: &mut World<G>, room: &str) {
    let World { game, out, .. } = world;
    let rooms = game.rooms_mut();
    let Some(entry) = rooms.rooms.get(room) else {
        return;
    };
    if entry.members.is_empty() {
        return;
    }
    let missed = protocol::world::S2cRoomMissed {
        room: room.to_string(),
    };
    let Some(frame) = out.encode(&missed) else {
        return;
    };
    for &member in &entry.members {
        out.push(member, frame.clone());
    }
    rooms.missed_total.inc();
}

/// What node `from` has in rooms is now `state`: members it no longer has leave, new ones
/// join, each seen by this node's members.
fn replace<G: RoomsGame>(world: &mut World<G>, from: &str, state: RoomsState) {
    // After lost batches: rooms it has members in that were not known then are told now.
    if let Some(told) = world.game.rooms_mut().missed.remove(from) {
        let mut late: Vec<&str> = state
            .rooms
            .iter()
            .filter(|r| !r.usernames.is_empty() && !told.contains(&r.room))
            .map(|r| r.room.as_str())
            .collect();
        late.sort_unstable();
        for room in late {
            tell_missed(world, room);
        }
    }
    let mut now: Map<String, Vec<String>> = state
        .rooms
        .into_iter()
        .map(|r| (r.room, r.usernames))
        .collect();
    let rooms = world.game.rooms_mut();
    let mut changes: Vec<(String, String, bool)> = Vec::new();
    for (room, nodes) in rooms.remote.iter_mut() {
        let Some(before) = nodes.remove(from) else {
            continue;
        };
        let after = now.remove(room).unwrap_or_default();
        for name in before.iter().filter(|n| !after.contains(n)) {
            changes.push((room.clone(), name.clone(), false));
        }
        for name in after.iter().filter(|n| !before.contains(n)) {
            changes.push((room.clone(), name.clone(), true));
        }
        if !after.is_empty() {
            nodes.insert(from.to_string(), after);
        }
    }
    for (room, names) in now.into_iter().filter(|(_, names)| !names.is_empty()) {
        for name in &names {
            changes.push((room.clone(), name.clone(), true));
        }
        rooms
            .remote
            .entry(room)
            .or_default()
            .insert(from.to_string(), names);
    }
    rooms.remote.retain(|_, nodes| !nodes.is_empty());
    for (room, name, joined) in changes {
        presence(world, &room, &name, joined);
    }
}

/// Removes `username` of node `node` from `room`; whether it was there.
fn forget(rooms: &mut Rooms, room: &str, node: &str, username: &str) -> bool {
    let Some(nodes) = rooms.remote.get_mut(room) else {
        return false;
    };
    let Some(names) = nodes.get_mut(node) else {
        return false;
    };
    let before = names.len();
    names.retain(|n| n != username);
    let removed = names.len() < before;
    if names.is_empty() {
        nodes.remove(node);
    }
    if nodes.is_empty() {
        rooms.remote.remove(room);
    }
    removed
}

/// Tells this node's members of `room` that `username` (of another node) joined or left.
fn presence<G: RoomsGame>(world: &mut World<G>, room: &str, username: &str, joined: bool) {
    let World { game, out, .. } = world;
    if let Some(entry) = game.rooms().rooms.get(room) {
        super::tell_presence(out, entry, username, joined, None);
    }
}

/// A line said on another node: to this node's members of `room`, and into its history here.
fn deliver<G: RoomsGame>(world: &mut World<G>, room: &str, frame: Bytes, history: bool) {
    let World { game, out, .. } = world;
    let rooms = game.rooms_mut();
    let keep = rooms.config.history_lines;
    let Some(entry) = rooms.rooms.get_mut(room) else {
        return;
    };
    for &member in &entry.members {
        out.push(member, frame.clone());
    }
    if history && keep > 0 {
        // The room's own copy: the batch's buffer is not kept past this tick.
        entry.history.push_back(Bytes::copy_from_slice(&frame));
        if entry.history.len() > keep {
            entry.history.pop_front();
        }
    }
}
