//! Rooms: join (creating), leave, list, and the presence the other members see.

use net::SessionId;
use protocol::world::{
    C2sRoomJoin, C2sRoomLeave, C2sRoomList, RoomInfo, S2cRoomJoined, S2cRoomLeft, S2cRoomList,
    S2cRoomPresence,
};
use protocol::ErrorCode;

use crate::dispatcher::{Ctx, DispatchError, HandlerError, MessageDispatcher};
use crate::handlers::check_room_name;
use crate::world::{Room, World};

/// Registers the handlers of this file.
pub fn register(d: &mut MessageDispatcher<World>) -> Result<(), DispatchError> {
    d.register::<C2sRoomJoin>(join)?;
    d.register::<C2sRoomLeave>(leave)?;
    d.register::<C2sRoomList>(list)
}

fn join(world: &mut World, ctx: &Ctx, request: C2sRoomJoin) -> Result<(), HandlerError> {
    check_room_name(&request.room)?;
    let capacity = world.config.room_capacity;
    let max_rooms = world.config.max_rooms_per_session;
    let client = world.clients.get(&ctx.session).expect("dispatch checked the login");
    let username = client.login.as_ref().expect("dispatch checked the login").username.clone();
    let already = client.rooms.contains(&request.room);
    if !already && client.rooms.len() >= max_rooms {
        return Err(HandlerError::bad_request(format!(
            "already in {} rooms, the most max_rooms_per_session allows (joining {:?})",
            client.rooms.len(),
            request.room
        )));
    }
    let room = world
        .rooms
        .entry(request.room.clone())
        .or_insert_with(|| Room {
            name: request.room.clone(),
            members: Vec::new(),
        });
    if !already {
        if room.members.len() >= capacity as usize {
            return Err(HandlerError::new(
                ErrorCode::RoomFull,
                format!("room {:?} is full ({capacity} members)", request.room),
            ));
        }
        room.members.push(ctx.session);
    }
    let members: Vec<SessionId> = room.members.clone();
    if !already {
        if let Some(client) = world.clients.get_mut(&ctx.session) {
            client.rooms.push(request.room.clone());
        }
        let presence = S2cRoomPresence {
            room: request.room.clone(),
            username,
            joined: true,
        };
        if let Some(frame) = world.out.encode(&presence) {
            for &member in members.iter().filter(|&&m| m != ctx.session) {
                world.out.push(member, frame.clone());
            }
        }
    }
    let joined = S2cRoomJoined {
        room: request.room,
        members: members
            .iter()
            .filter_map(|m| world.login(*m).map(|l| l.username.clone()))
            .collect(),
        capacity,
    };
    world.out.send(ctx.session, &joined);
    Ok(())
}

fn leave(world: &mut World, ctx: &Ctx, request: C2sRoomLeave) -> Result<(), HandlerError> {
    check_room_name(&request.room)?;
    let client = world.clients.get_mut(&ctx.session).expect("dispatch checked the login");
    let Some(index) = client.rooms.iter().position(|r| *r == request.room) else {
        return Err(HandlerError::new(
            ErrorCode::NotInRoom,
            format!("not in room {:?}", request.room),
        ));
    };
    client.rooms.remove(index);
    let username = client.login.as_ref().expect("dispatch checked the login").username.clone();
    world.remove_member(&request.room, ctx.session, &username);
    world.out.send(ctx.session, &S2cRoomLeft { room: request.room });
    Ok(())
}

fn list(world: &mut World, ctx: &Ctx, _: C2sRoomList) -> Result<(), HandlerError> {
    let mut rooms: Vec<RoomInfo> = world
        .rooms
        .values()
        .map(|room| RoomInfo {
            name: room.name.clone(),
            members: room.members.len() as u32,
            capacity: world.config.room_capacity,
        })
        .collect();
    rooms.sort_by(|a, b| a.name.cmp(&b.name));
    world.out.send(ctx.session, &S2cRoomList { rooms });
    Ok(())
}

impl World {
    /// The room `name` if `session` is one of its members; otherwise the error to answer:
    /// BAD_REQUEST for a malformed name, NOT_IN_ROOM for a room the session is not in.
    pub fn room_of_member(&self, session: SessionId, name: &str) -> Result<&Room, HandlerError> {
        check_room_name(name)?;
        let member = self
            .clients
            .get(&session)
            .is_some_and(|c| c.rooms.iter().any(|r| r == name));
        match self.rooms.get(name) {
            Some(room) if member => Ok(room),
            _ => Err(HandlerError::new(
                ErrorCode::NotInRoom,
                format!("not in room {name:?}"),
            )),
        }
    }

    /// Takes `session` out of the member list of `room` (its own room list is the caller's),
    /// tells the other members, and drops the room when it is empty.
    pub(crate) fn remove_member(&mut self, room: &str, session: SessionId, username: &str) {
        let Some(entry) = self.rooms.get_mut(room) else {
            return;
        };
        entry.members.retain(|&m| m != session);
        if entry.members.is_empty() {
            self.rooms.remove(room);
            return;
        }
        let presence = S2cRoomPresence {
            room: room.to_string(),
            username: username.to_string(),
            joined: false,
        };
        let Some(frame) = self.out.encode(&presence) else {
            return;
        };
        if let Some(entry) = self.rooms.get(room) {
            for &member in &entry.members {
                self.out.push(member, frame.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::testkit::Harness;
    use crate::world::WorldConfig;
    use protocol::{MessageType, S2cMessage};

    fn join_msg(room: &str) -> C2sRoomJoin {
        C2sRoomJoin { room: room.into() }
    }

    #[test]
    fn join_creates_the_room_and_lists_members_to_the_joiner() {
        let mut h = Harness::new();
        let a = h.guest("alice");
        h.send(a, join_msg("lobby"));
        match h.take(a).as_slice() {
            [S2cMessage::S2cRoomJoined(j)] => {
                assert_eq!(j.room, "lobby");
                assert_eq!(j.members, vec!["alice".to_string()]);
                assert_eq!(j.capacity, WorldConfig::default().room_capacity);
            }
            other => panic!("{other:?}"),
        }
        let b = h.guest("bob");
        h.send(b, join_msg("lobby"));
        match h.take(b).as_slice() {
            [S2cMessage::S2cRoomJoined(j)] => assert_eq!(j.members, vec!["alice", "bob"]),
            other => panic!("{other:?}"),
        }
        match h.take(a).as_slice() {
            [S2cMessage::S2cRoomPresence(p)] => {
                assert_eq!((p.room.as_str(), p.username.as_str(), p.joined), ("lobby", "bob", true));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn joining_twice_repeats_the_joined_reply_without_presence() {
        let mut h = Harness::new();
        let a = h.guest("alice");
        let b = h.guest("bob");
        h.send(a, join_msg("lobby"));
        h.send(b, join_msg("lobby"));
        h.take(a);
        h.take(b);
        h.send(b, join_msg("lobby"));
        assert!(matches!(h.take(b).as_slice(), [S2cMessage::S2cRoomJoined(j)] if j.members.len() == 2));
        assert!(h.take(a).is_empty());
    }

    #[test]
    fn full_room_answers_room_full() {
        let mut h = Harness::with(WorldConfig { room_capacity: 2, ..WorldConfig::default() });
        for name in ["alice", "bob"] {
            let s = h.guest(name);
            h.send(s, join_msg("small"));
            h.take(s);
        }
        let c = h.guest("carol");
        h.send(c, join_msg("small"));
        let (code, request, reason) = h.error(c);
        assert_eq!((code, request), (ErrorCode::RoomFull, C2sRoomJoin::ID as u32));
        assert!(reason.contains("small"));
    }

    #[test]
    fn bad_room_names_answer_bad_request() {
        let mut h = Harness::new();
        let a = h.guest("alice");
        for room in ["", "has space", &"x".repeat(65), "ü"] {
            h.send(a, join_msg(room));
            assert_eq!(h.error(a).0, ErrorCode::BadRequest, "{room:?}");
        }
        assert!(h.world.rooms.is_empty());
    }

    #[test]
    fn too_many_rooms_answers_bad_request() {
        let mut h = Harness::with(WorldConfig { max_rooms_per_session: 2, ..WorldConfig::default() });
        let a = h.guest("alice");
        for room in ["r1", "r2"] {
            h.send(a, join_msg(room));
            h.take(a);
        }
        h.send(a, join_msg("r3"));
        assert_eq!(h.error(a).0, ErrorCode::BadRequest);
    }

    #[test]
    fn leave_tells_the_others_and_drops_the_empty_room() {
        let mut h = Harness::new();
        let a = h.guest("alice");
        let b = h.guest("bob");
        h.send(a, join_msg("lobby"));
        h.send(b, join_msg("lobby"));
        h.take(a);
        h.take(b);
        h.send(b, C2sRoomLeave { room: "lobby".into() });
        assert!(matches!(h.take(b).as_slice(), [S2cMessage::S2cRoomLeft(l)] if l.room == "lobby"));
        assert!(matches!(h.take(a).as_slice(), [S2cMessage::S2cRoomPresence(p)] if !p.joined && p.username == "bob"));
        h.send(a, C2sRoomLeave { room: "lobby".into() });
        h.take(a);
        assert!(h.world.rooms.is_empty());
    }

    #[test]
    fn leaving_a_room_one_is_not_in_answers_not_in_room() {
        let mut h = Harness::new();
        let a = h.guest("alice");
        h.send(a, C2sRoomLeave { room: "nowhere".into() });
        assert_eq!(h.error(a).0, ErrorCode::NotInRoom);
    }

    #[test]
    fn disconnect_leaves_every_room() {
        let mut h = Harness::new();
        let a = h.guest("alice");
        let b = h.guest("bob");
        for room in ["r1", "r2"] {
            h.send(a, join_msg(room));
            h.send(b, join_msg(room));
        }
        h.take(a);
        h.take(b);
        h.world.disconnect(b);
        let left: Vec<String> = h
            .take(a)
            .into_iter()
            .map(|m| match m {
                S2cMessage::S2cRoomPresence(p) if !p.joined => p.room,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(left, vec!["r1", "r2"]);
        assert_eq!(h.world.session_of("bob"), None);
        assert_eq!(h.world.rooms["r1"].members, vec![a]);
    }

    #[test]
    fn list_shows_rooms_with_member_counts_sorted_by_name() {
        let mut h = Harness::new();
        let a = h.guest("alice");
        let b = h.guest("bob");
        h.send(a, join_msg("zeta"));
        h.send(a, join_msg("alpha"));
        h.send(b, join_msg("alpha"));
        h.take(a);
        h.take(b);
        h.send(a, C2sRoomList {});
        match h.take(a).as_slice() {
            [S2cMessage::S2cRoomList(l)] => {
                let rooms: Vec<(&str, u32)> =
                    l.rooms.iter().map(|r| (r.name.as_str(), r.members)).collect();
                assert_eq!(rooms, vec![("alpha", 2), ("zeta", 1)]);
            }
            other => panic!("{other:?}"),
        }
    }
}
