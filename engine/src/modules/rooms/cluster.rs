//! Rooms across the nodes of a cluster: the members other nodes have in each room
//! ([`Rooms::remote`]), kept from their joins, leaves and room state, and shown to this
//! node's members as presence; their chat lines, delivered to this node's members and kept
//! in the room's history here (the node where a line was said writes it to the database).

use bytes::Bytes;

use super::{Rooms, RoomsGame};
use crate::cluster::wire::{Membership, RoomMembers, RoomsState};
use crate::cluster::{Event, Kind};
use crate::hash::Map;
use crate::world::World;

/// Hook: an event of the rooms module from node `from` (any other is handed back).
pub(super) fn event<G: RoomsGame>(
    world: &mut World<G>,
    from: &str,
    event: Kind,
    _: std::time::Instant,
) -> Option<Kind> {
    match event {
        Kind::Joined(Membership { room, username }) => {
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
        Kind::Left(Membership { room, username }) => {
            if forget(world.game.rooms_mut(), &room, from, &username) {
                presence(world, &room, &username, false);
            }
        }
        Kind::Chat(chat) => deliver(world, &chat.room, chat.frame, true),
        Kind::RoomFrame(frame) => deliver(world, &frame.room, frame.frame, false),
        Kind::Rooms(state) => replace(world, from, state),
        other => return Some(other),
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
        cluster.send(to, Event::new(Kind::Rooms(RoomsState { rooms })));
    }
}

/// Hook: node `node` is gone: its members leave every room (this node's members see them go).
pub(super) fn node_lost<G: RoomsGame>(world: &mut World<G>, node: &str) {
    replace(world, node, RoomsState { rooms: Vec::new() });
}

/// What node `from` has in rooms is now `state`: members it no longer has leave, new ones
/// join, each seen by this node's members.
fn replace<G: RoomsGame>(world: &mut World<G>, from: &str, state: RoomsState) {
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
