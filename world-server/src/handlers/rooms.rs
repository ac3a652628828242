//! Rooms: join (creating), leave, list, and the presence the other members see.

use net::SessionId;
use std::collections::VecDeque;

use bytes::Bytes;

use protocol::world::{
    C2sRoomJoin, C2sRoomLeave, C2sRoomList, RoomInfo, S2cChat, S2cRoomJoined, S2cRoomLeft,
    S2cRoomList, S2cRoomPresence,
};
use protocol::{ErrorCode, MessageType};

use crate::db::DbJob;
use crate::dispatcher::DispatchState;
use crate::storage::HistoryLine;

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
    let session = ctx.session;
    let capacity = world.config.room_capacity as usize;
    let client = world
        .clients
        .get(&session)
        .expect("dispatch checked the login");
    if client.rooms.contains(&request.room) {
        // Joining again only repeats the answer: no presence, no history.
        send_joined(world, session, &request.room);
        return Ok(());
    }
    if client.rooms.len() >= world.config.max_rooms_per_session {
        return Err(HandlerError::bad_request(format!(
            "already in {} rooms, the most max_rooms_per_session allows (joining {:?})",
            client.rooms.len(),
            request.room
        )));
    }
    match world.rooms.get_mut(&request.room) {
        Some(room) => {
            if room.members.len() + room.waiting.len() >= capacity {
                return Err(room_full(&request.room, capacity));
            }
            if room.loading {
                room.waiting.push(session);
                if let Some(client) = world.clients.get_mut(&session) {
                    client.joining = true;
                }
                return Ok(());
            }
        }
        None => {
            let mut room = Room::new(request.room.clone());
            if world.config.history_lines > 0 {
                // Marked in use first, so that no trim of the history table takes its lines;
                // and this tick's lines (of a room that emptied this very tick) are written
                // before the load reads them.
                world.pending_in_use.push(request.room.clone());
                world.flush_writes();
                let job = DbJob::LoadHistory {
                    room: request.room.clone(),
                };
                // Lines still waiting for a full write queue would reach the database after
                // the load: the room then starts with them alone rather than without them.
                let unwritten = world.pending_history.len() + world.pending_in_use.len();
                let submitted = if unwritten == 0 {
                    world.db.submit(job).map_err(|e| format!("{e:?}"))
                } else {
                    Err(format!("{unwritten} history writes waiting"))
                };
                match submitted {
                    Ok(()) => {
                        // The join completes when the history is here, so that it comes first.
                        room.loading = true;
                        room.waiting.push(session);
                        world.rooms.insert(request.room, room);
                        if let Some(client) = world.clients.get_mut(&session) {
                            client.joining = true;
                        }
                        return Ok(());
                    }
                    Err(why) => {
                        spdlog::warn!(
                            "storage: history of {:?} not loaded ({why}); the room starts with what is in memory",
                            request.room
                        );
                        room.history = world
                            .pending_history
                            .iter()
                            .filter(|f| chat_room_is(f, &request.room))
                            .cloned()
                            .collect();
                        let keep = world.config.history_lines;
                        while room.history.len() > keep {
                            room.history.pop_front();
                        }
                    }
                }
            }
            world.rooms.insert(request.room.clone(), room);
        }
    }
    enter(world, session, &request.room);
    Ok(())
}

/// Whether an encoded S2C_Chat frame is a line of `room`.
fn chat_room_is(frame: &Bytes, room: &str) -> bool {
    frame
        .get(protocol::HEADER_LEN..)
        .and_then(|payload| <S2cChat as prost::Message>::decode(payload).ok())
        .is_some_and(|chat| chat.room == room)
}

fn room_full(room: &str, capacity: usize) -> HandlerError {
    HandlerError::new(
        ErrorCode::RoomFull,
        format!("room {room:?} is full ({capacity} members)"),
    )
}

/// Completes a join of a room that is ready: membership, presence to the others,
/// S2C_RoomJoined, then the room's history.
fn enter(world: &mut World, session: SessionId, name: &str) {
    let Some(client) = world.clients.get(&session) else {
        return;
    };
    let Some(login) = client.login.as_ref() else {
        return; // logged out while the history loaded
    };
    if client.closing || client.rooms.iter().any(|r| r == name) {
        return;
    }
    let username = login.username.clone();
    let capacity = world.config.room_capacity as usize;
    let Some(room) = world.rooms.get_mut(name) else {
        return;
    };
    if room.members.len() >= capacity {
        world.send_error(session, C2sRoomJoin::ID, room_full(name, capacity));
        return;
    }
    room.members.push(session);
    if let Some(client) = world.clients.get_mut(&session) {
        client.rooms.push(name.to_string());
    }
    let presence = S2cRoomPresence {
        room: name.to_string(),
        username,
        joined: true,
    };
    if let Some(frame) = world.out.encode(&presence) {
        for &member in world.rooms[name].members.iter().filter(|&&m| m != session) {
            world.out.push(member, frame.clone());
        }
    }
    send_joined(world, session, name);
    for frame in &world.rooms[name].history {
        world.out.push_history(session, frame);
    }
}

fn send_joined(world: &mut World, session: SessionId, name: &str) {
    let Some(room) = world.rooms.get(name) else {
        return;
    };
    let joined = S2cRoomJoined {
        room: name.to_string(),
        members: room
            .members
            .iter()
            .filter_map(|m| world.login(*m).map(|l| l.username.clone()))
            .collect(),
        capacity: world.config.room_capacity,
    };
    world.out.send(session, &joined);
}

/// The DB worker loaded a room's history: the waiting joins complete, history first.
pub fn history_loaded(world: &mut World, name: &str, lines: Vec<HistoryLine>) {
    let keep = world.config.history_lines;
    let mut history = VecDeque::with_capacity(lines.len().min(keep));
    for line in lines {
        let chat = S2cChat {
            room: line.room,
            from: line.from,
            content: line.content,
            sent_at_us: line.sent_at_us,
            server_time_us: line.server_time_us,
            history: false,
        };
        if let Ok(frame) = protocol::frame(&chat) {
            history.push_back(frame);
        }
    }
    while history.len() > keep {
        history.pop_front();
    }
    let Some(room) = world.rooms.get_mut(name) else {
        return;
    };
    // Lines said while loading (none: a loading room has no members) come after the stored ones.
    history.extend(room.history.drain(..));
    room.history = history;
    room.loading = false;
    let waiting = std::mem::take(&mut room.waiting);
    for session in waiting {
        if let Some(client) = world.clients.get_mut(&session) {
            client.joining = false;
        }
        enter(world, session, name);
    }
    if world.rooms.get(name).is_some_and(|r| r.members.is_empty()) {
        world.rooms.remove(name);
        world.pending_emptied.push(name.to_string());
    }
}

fn leave(world: &mut World, ctx: &Ctx, request: C2sRoomLeave) -> Result<(), HandlerError> {
    check_room_name(&request.room)?;
    let client = world
        .clients
        .get_mut(&ctx.session)
        .expect("dispatch checked the login");
    let Some(index) = client.rooms.iter().position(|r| *r == request.room) else {
        return Err(HandlerError::new(
            ErrorCode::NotInRoom,
            format!("not in room {:?}", request.room),
        ));
    };
    client.rooms.remove(index);
    let username = client
        .login
        .as_ref()
        .expect("dispatch checked the login")
        .username
        .clone();
    world.remove_member(&request.room, ctx.session, &username);
    world
        .out
        .send(ctx.session, &S2cRoomLeft { room: request.room });
    Ok(())
}

/// Lists the rooms that have members, sorted by name. A list too long for one frame keeps the
/// busiest rooms that fit (about 900 with the longest names).
fn list(world: &mut World, ctx: &Ctx, _: C2sRoomList) -> Result<(), HandlerError> {
    let mut rooms: Vec<RoomInfo> = world
        .rooms
        .values()
        .filter(|room| !room.members.is_empty())
        .map(|room| RoomInfo {
            name: room.name.clone(),
            members: room.members.len() as u32,
            capacity: world.config.room_capacity,
        })
        .collect();
    rooms.sort_by(|a, b| b.members.cmp(&a.members).then_with(|| a.name.cmp(&b.name)));
    let budget = protocol::MAX_FRAME_LEN - protocol::HEADER_LEN;
    let mut used = 0;
    let fits = rooms
        .iter()
        .take_while(|room| {
            // Field tag, length prefix, and the entry itself.
            let len = prost::Message::encoded_len(*room);
            used += 1 + prost::encoding::encoded_len_varint(len as u64) + len;
            used <= budget
        })
        .count();
    rooms.truncate(fits);
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
        entry.waiting.retain(|&m| m != session);
        if entry.members.is_empty() && !entry.loading {
            self.rooms.remove(room);
            if self.config.history_lines > 0 {
                self.pending_emptied.push(room.to_string());
            }
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
                assert_eq!(
                    (p.room.as_str(), p.username.as_str(), p.joined),
                    ("lobby", "bob", true)
                );
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
        assert!(
            matches!(h.take(b).as_slice(), [S2cMessage::S2cRoomJoined(j)] if j.members.len() == 2)
        );
        assert!(h.take(a).is_empty());
    }

    #[test]
    fn full_room_answers_room_full() {
        let mut h = Harness::with(WorldConfig {
            room_capacity: 2,
            ..WorldConfig::default()
        });
        for name in ["alice", "bob"] {
            let s = h.guest(name);
            h.send(s, join_msg("small"));
            h.take(s);
        }
        let c = h.guest("carol");
        h.send(c, join_msg("small"));
        let (code, request, reason) = h.error(c);
        assert_eq!(
            (code, request),
            (ErrorCode::RoomFull, C2sRoomJoin::ID as u32)
        );
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
        let mut h = Harness::with(WorldConfig {
            max_rooms_per_session: 2,
            ..WorldConfig::default()
        });
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
        h.send(
            b,
            C2sRoomLeave {
                room: "lobby".into(),
            },
        );
        assert!(matches!(h.take(b).as_slice(), [S2cMessage::S2cRoomLeft(l)] if l.room == "lobby"));
        assert!(
            matches!(h.take(a).as_slice(), [S2cMessage::S2cRoomPresence(p)] if !p.joined && p.username == "bob")
        );
        h.send(
            a,
            C2sRoomLeave {
                room: "lobby".into(),
            },
        );
        h.take(a);
        assert!(h.world.rooms.is_empty());
    }

    #[test]
    fn leaving_a_room_one_is_not_in_answers_not_in_room() {
        let mut h = Harness::new();
        let a = h.guest("alice");
        h.send(
            a,
            C2sRoomLeave {
                room: "nowhere".into(),
            },
        );
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
        h.world.disconnect(b, &net::DisconnectReason::PeerClosed);
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
                let rooms: Vec<(&str, u32)> = l
                    .rooms
                    .iter()
                    .map(|r| (r.name.as_str(), r.members))
                    .collect();
                assert_eq!(rooms, vec![("alpha", 2), ("zeta", 1)]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_room_list_too_long_for_one_frame_keeps_the_busiest_rooms_that_fit() {
        let mut h = Harness::with(WorldConfig {
            max_rooms_per_session: 1024,
            max_requests_per_sec: 0,
            ..WorldConfig::default()
        });
        let a = h.guest("alice");
        let b = h.guest("bob");
        for i in 0..1000 {
            h.send(a, join_msg(&format!("{i:04}-{}", "x".repeat(59))));
        }
        h.send(b, join_msg(&format!("0999-{}", "x".repeat(59))));
        h.take(a);
        h.take(b);
        h.send(a, C2sRoomList {});
        let frame = h.world.out.take(a).pop().expect("a reply");
        assert!(frame.len() <= protocol::MAX_FRAME_LEN);
        let list = match S2cMessage::decode(S2cRoomList::ID, frame.slice(4..)).unwrap() {
            S2cMessage::S2cRoomList(l) => l,
            other => panic!("{other:?}"),
        };
        assert!(
            list.rooms.len() > 500 && list.rooms.len() < 1000,
            "{}",
            list.rooms.len()
        );
        assert!(
            list.rooms.iter().any(|r| r.members == 2),
            "the busiest room is kept"
        );
        assert!(
            list.rooms.windows(2).all(|w| w[0].name < w[1].name),
            "sorted by name"
        );
    }

    #[test]
    fn a_room_created_is_marked_in_use_before_any_history_is_written_or_loaded() {
        let mut h = crate::handlers::testkit::Harness::deferred(WorldConfig::default());
        let a = h.connect();
        h.send(
            a,
            protocol::world::C2sLogin {
                username: "ann".into(),
                password: String::new(),
            },
        );
        h.run_db();
        h.take(a);
        h.send(
            a,
            C2sRoomJoin {
                room: "lobby".into(),
            },
        );
        h.world.flush_writes();
        let kinds: Vec<String> = h
            .world
            .db
            .queued()
            .iter()
            .map(|job| match job {
                DbJob::RoomsInUse(rooms) => format!("in use {rooms:?}"),
                DbJob::LoadHistory { room } => format!("load {room}"),
                DbJob::AppendHistory(_) => "lines".to_string(),
                DbJob::RecordSessions(_) => "sessions".to_string(),
                other => format!("{other:?}"),
            })
            .filter(|k| k != "sessions")
            .collect();
        assert_eq!(kinds, ["in use [\"lobby\"]", "load lobby"]);
    }
}
