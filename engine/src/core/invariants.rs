//! What must hold of the world between two ticks, checked from the state itself: for the
//! fuzzer of the core (`fuzz/fuzz_targets/core.rs`), which checks them after every tick of
//! arbitrary inputs, and for the tests, which check them after scripted ones.
//!
//! Each check recounts what the world keeps in two places and compares: logins and the
//! usernames they hold, sessions and what their addresses and networks count, guests and the
//! guest count, the core's connections and the world's sessions, each room's members and each
//! member's rooms. A check answers with the first thing that does not hold, in words, naming
//! the session, name or room.
//!
//! - [`Core::check_invariants`](crate::core::Core::check_invariants): the engine's own
//!   state (the core's and the world's);
//! - [`check_world`](crate::core::invariants::check_world): the world's part of it alone;
//! - [`check_rooms`](crate::core::invariants::check_rooms): the rooms module's, for a game
//!   with rooms.

use std::collections::BTreeMap;
use std::net::IpAddr;

use net::SessionId;

use super::{Core, Item};
use crate::modules::rooms::RoomsGame;
use crate::throttle::addr_key;
use crate::world::{AddressUse, Game, World};

impl<G: Game> Core<G> {
    /// Checks what must hold between two ticks of the core: the world's invariants
    /// ([`check_world`]), and that the core's connections, queues and credits agree with
    /// its sessions. After a tick the queue is empty and every credit owed is given back;
    /// every connection is a session of the world; a session whose connection has ended is
    /// one whose requests still wait for the DB worker, with its end parked behind them.
    pub fn check_invariants(&self) -> Result<(), String> {
        check_world(&self.world)?;
        if !self.queue.is_empty() {
            return Err(format!(
                "{} items are still queued after the tick",
                self.queue.len()
            ));
        }
        if !self.owed.is_empty() {
            return Err(format!(
                "sessions {:?} are still owed credit after the tick",
                self.owed
            ));
        }
        let max = self.world.config.max_sessions;
        if self.connections.len() > max {
            return Err(format!(
                "{} connections open, more than max_sessions {max}",
                self.connections.len()
            ));
        }
        let resume = &self.world.resume;
        for (&id, connection) in &self.connections {
            if id.0 >= self.next_session {
                return Err(format!(
                    "connection of session {id}, an id not given out yet"
                ));
            }
            // A connection a resume took the session from is being closed.
            let Some(session) = resume.route(id) else {
                continue;
            };
            let Some(client) = self.world.clients.get(&session) else {
                return Err(format!(
                    "connection of session {session}, which is not a session of the world"
                ));
            };
            if client.gone {
                return Err(format!(
                    "session {session} is marked gone while its connection is open"
                ));
            }
            if client.peer != connection.peer {
                return Err(format!(
                    "session {session} is from {} in the world and from {} in the core",
                    client.peer, connection.peer
                ));
            }
            if connection.owed_credit != 0 {
                return Err(format!(
                    "session {session} is owed {} credits after the tick",
                    connection.owed_credit
                ));
            }
        }
        for (&session, parked) in &self.parked {
            if !self.world.clients.contains_key(&resume.session_of(session)) {
                return Err(format!(
                    "requests of session {session} are parked, and it is not a session"
                ));
            }
            if parked.is_empty() {
                return Err(format!("session {session} has an empty parked queue"));
            }
            if let Some(other) = parked.iter().find(|q| q.session != session) {
                return Err(format!(
                    "an item of session {} is parked among those of session {session}",
                    other.session
                ));
            }
            let ends = parked
                .iter()
                .filter(|q| matches!(q.item, Item::Closed { .. }))
                .count();
            let last_is_end = matches!(parked.back().map(|q| &q.item), Some(Item::Closed { .. }));
            if ends > 1 || (ends == 1 && !last_is_end) {
                return Err(format!(
                    "the end of session {session} is parked before its last request"
                ));
            }
        }
        for (&session, client) in &self.world.clients {
            let connection = resume.connection_of(session);
            if client.away != resume.away_of(session).is_some() {
                return Err(format!(
                    "session {session} is away in the world ({}) and not in its resume state",
                    client.away
                ));
            }
            if resume.is_resumable(session) && (client.login.is_none() || client.closing) {
                return Err(format!(
                    "session {session} is resumable and not logged in, or closing"
                ));
            }
            if client.away {
                if self.connections.contains_key(&connection) {
                    return Err(format!("session {session} is away with a connection"));
                }
                continue;
            }
            if self.connections.contains_key(&connection) {
                continue;
            }
            if !client.gone {
                return Err(format!(
                    "session {session} has no connection and is not marked gone"
                ));
            }
            let end_parked = self
                .parked
                .get(&connection)
                .and_then(|q| q.back())
                .is_some_and(|q| matches!(q.item, Item::Closed { .. }));
            if !end_parked {
                return Err(format!(
                    "session {session} has no connection and its end is not parked: it would stay forever"
                ));
            }
        }
        Ok(())
    }
}

/// Checks the world's invariants: every login holds its username and every username held is
/// a login; a closing session is logged out; the guest count is the guests logged in or
/// claiming their names; each address and network counts its sessions as they are; sessions
/// are within `max_sessions`.
pub fn check_world<G: Game>(world: &World<G>) -> Result<(), String> {
    let config = &world.config;
    if world.clients.len() > config.max_sessions {
        return Err(format!(
            "{} sessions, more than max_sessions {}",
            world.clients.len(),
            config.max_sessions
        ));
    }
    for (name, &session) in &world.users {
        let Some(client) = world.clients.get(&session) else {
            return Err(format!(
                "username {name:?} is held by session {session}, which is not connected"
            ));
        };
        match &client.login {
            Some(login) if login.username.to_ascii_lowercase() == *name => {}
            Some(login) => {
                return Err(format!(
                    "username {name:?} is held by session {session}, logged in as {:?}",
                    login.username
                ))
            }
            None => {
                return Err(format!(
                    "username {name:?} is held by session {session}, which is not logged in"
                ))
            }
        }
    }
    let mut guests = 0;
    let mut addresses: BTreeMap<IpAddr, AddressUse> = BTreeMap::new();
    let mut prefixes: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for (&session, client) in &world.clients {
        let used = addresses.entry(addr_key(client.peer.ip())).or_default();
        used.sessions += 1;
        *prefixes.entry(prefix_of(client.peer.ip())).or_default() += 1;
        if let Some(claiming) = &client.claiming {
            if client.login.is_some() || client.pending_auth.is_some() {
                return Err(format!(
                    "session {session} claims a name while it has a login or one under way"
                ));
            }
            guests += usize::from(claiming.1.guest);
        }
        let Some(login) = &client.login else {
            used.unauthenticated += 1;
            if client.unauthenticated_since.is_none() {
                return Err(format!(
                    "session {session} is not logged in and has no login deadline"
                ));
            }
            continue;
        };
        guests += usize::from(login.guest);
        let key = login.username.to_ascii_lowercase();
        if world.users.get(&key) != Some(&session) {
            return Err(format!(
                "session {session} is logged in as {:?}, which the users map gives to {:?}",
                login.username,
                world.users.get(&key)
            ));
        }
        if client.closing {
            return Err(format!(
                "session {session} is closing and still logged in as {:?}",
                login.username
            ));
        }
        if client.pending_auth.is_some() {
            return Err(format!(
                "session {session} is logged in and has a login under way"
            ));
        }
        if client.unauthenticated_since.is_some() {
            return Err(format!(
                "session {session} is logged in and has a login deadline"
            ));
        }
    }
    if guests != world.guests {
        return Err(format!(
            "{guests} guests logged in or claiming their names, and the guest count says {}",
            world.guests
        ));
    }
    let counted: BTreeMap<IpAddr, AddressUse> =
        world.addresses.iter().map(|(k, v)| (*k, *v)).collect();
    if counted != addresses {
        return Err(format!(
            "the addresses count {counted:?}, and the sessions are {addresses:?}"
        ));
    }
    let counted: BTreeMap<IpAddr, usize> = world.prefixes.iter().map(|(k, v)| (*k, *v)).collect();
    if counted != prefixes {
        return Err(format!(
            "the networks count {counted:?}, and the sessions are {prefixes:?}"
        ));
    }
    Ok(())
}

/// The network [`crate::world::WorldConfig::max_sessions_per_prefix`] counts `addr` in (its
/// IPv4 /24 or IPv6 /48), worked out here on its own so that the check does not take the
/// world's word for it.
fn prefix_of(addr: IpAddr) -> IpAddr {
    match config::addr::unmap(addr) {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & 0xffff_ff00).into()),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 80) - 1)).into()),
    }
}

/// Checks the rooms module's invariants: each room's members are logged-in sessions that
/// list the room among theirs, and each session's rooms list it as a member, once; a room
/// without members is one whose history is loading; joins waiting for a history are of a
/// loading room and mark their session as joining, and a joining session waits for a history
/// or for the rooms bucket (else its later requests would wait forever); a session is in at
/// most `max_rooms_per_session` rooms; and, on a server on its own, a room holds at most
/// `room_capacity` members and joins.
pub fn check_rooms<G: RoomsGame>(world: &World<G>) -> Result<(), String> {
    let rooms = world.game.rooms();
    let config = &rooms.config;
    for (name, room) in &rooms.rooms {
        if room.name != *name {
            return Err(format!("room {name:?} is named {:?}", room.name));
        }
        if !room.waiting.is_empty() && !room.loading {
            return Err(format!(
                "room {name:?} has joins waiting for a history that is not loading: {:?}",
                room.waiting
            ));
        }
        for (i, &session) in room.members.iter().enumerate() {
            if room.members[..i].contains(&session) {
                return Err(format!("session {session} is twice a member of {name:?}"));
            }
            if room.waiting.contains(&session) {
                return Err(format!(
                    "session {session} is a member of {name:?} and waits to join it"
                ));
            }
            let Some(client) = world.clients.get(&session) else {
                return Err(format!(
                    "room {name:?} has session {session} as a member, which is not connected"
                ));
            };
            if client.login.is_none() || client.closing {
                return Err(format!(
                    "room {name:?} has session {session} as a member, which is logged out or closing"
                ));
            }
            if !rooms.rooms_of(session).contains(name) {
                return Err(format!(
                    "room {name:?} has session {session} as a member, whose rooms are {:?}",
                    rooms.rooms_of(session)
                ));
            }
        }
        for (i, &session) in room.waiting.iter().enumerate() {
            if room.waiting[..i].contains(&session) {
                return Err(format!("session {session} waits twice to join {name:?}"));
            }
            if !world.clients.contains_key(&session) {
                return Err(format!(
                    "session {session} waits to join {name:?} and is not connected"
                ));
            }
        }
        let here = room.members.len() + room.waiting.len();
        if world.cluster.is_none() && here > config.room_capacity as usize {
            return Err(format!(
                "room {name:?} holds {here} members and joins, more than room_capacity {}",
                config.room_capacity
            ));
        }
    }
    for (&session, membership) in &rooms.members {
        let Some(client) = world.clients.get(&session) else {
            return Err(format!("session {session} has rooms and is not connected"));
        };
        for (i, name) in membership.rooms.iter().enumerate() {
            if membership.rooms[..i].contains(name) {
                return Err(format!("session {session} lists {name:?} twice"));
            }
            let member = rooms
                .rooms
                .get(name)
                .is_some_and(|r| r.members.contains(&session));
            if !member {
                return Err(format!(
                    "session {session} lists room {name:?}, which does not have it as a member"
                ));
            }
        }
        if membership.rooms.len() > config.max_rooms_per_session {
            return Err(format!(
                "session {session} is in {} rooms, more than max_rooms_per_session {}",
                membership.rooms.len(),
                config.max_rooms_per_session
            ));
        }
        if client.closing {
            continue; // logged out: what it waited for is dropped when it comes
        }
        let waits =
            waiting_room(world, session).is_some() || rooms.reserving.contains_key(&session);
        if membership.joining != waits {
            return Err(format!(
                "session {session} is {}joining, and it {} for a history or the rooms bucket",
                if membership.joining { "" } else { "not " },
                if waits { "waits" } else { "does not wait" }
            ));
        }
    }
    for (&session, room) in &rooms.reserving {
        if !world.clients.contains_key(&session) {
            return Err(format!(
                "session {session} waits for the rooms bucket to count it in {room:?} and is not connected"
            ));
        }
    }
    for (session, room) in &rooms.reserved {
        let Some(client) = world.clients.get(session) else {
            return Err(format!(
                "the rooms bucket counts session {session} in {room:?}, and it is not connected"
            ));
        };
        if client.closing {
            continue;
        }
        let there = rooms
            .rooms
            .get(room)
            .is_some_and(|r| r.members.contains(session) || r.waiting.contains(session));
        if !there {
            return Err(format!(
                "the rooms bucket counts session {session} in {room:?}, which it is not in"
            ));
        }
    }
    for (&session, client) in &world.clients {
        if client.closing {
            continue;
        }
        let waiting: Vec<&str> = rooms
            .rooms
            .values()
            .filter(|r| r.waiting.contains(&session))
            .map(|r| r.name.as_str())
            .collect();
        if waiting.len() > 1 {
            return Err(format!(
                "session {session} waits to join several rooms at once: {waiting:?}"
            ));
        }
        if !waiting.is_empty() && !rooms.members.get(&session).is_some_and(|m| m.joining) {
            return Err(format!(
                "session {session} waits to join {waiting:?} and is not marked joining"
            ));
        }
    }
    // Last, so that every other check has passed when this one fails.
    for (name, room) in &rooms.rooms {
        if room.members.is_empty() && !room.loading {
            return Err(format!(
                "room {name:?} has no member and is kept though its history is not loading"
            ));
        }
    }
    Ok(())
}

/// The room whose history `session` waits for, if any.
fn waiting_room<G: RoomsGame>(world: &World<G>, session: SessionId) -> Option<&str> {
    world
        .game
        .rooms()
        .rooms
        .values()
        .find(|r| r.waiting.contains(&session))
        .map(|r| r.name.as_str())
}

#[cfg(test)]
mod tests {
    //! The checks pass over a scripted run of the chat world, and catch state broken by hand.

    use std::time::Duration;

    use config::ServerConfig;
    use protocol::world::{C2sChat, C2sLogin, C2sRoomJoin, C2sRoomLeave, C2sWhisper};

    use super::*;
    use crate::handlers::testkit::Chat;
    use crate::testing::Sim;

    /// Both checks of `sim`, as the fuzzer runs them after every tick.
    fn check(sim: &Sim<Chat>) -> Result<(), String> {
        sim.core().check_invariants()?;
        check_rooms(sim.world())
    }

    /// A small chat world with rooms of two whose database answers only when told
    /// (`holding`), or at the next step.
    fn sim(holding: bool) -> Sim<Chat> {
        let mut config = ServerConfig::default();
        config.world.room_capacity = 2;
        config.world.max_rooms_per_session = 2;
        let rooms = crate::modules::rooms::RoomsConfig::from(&config);
        if holding {
            Sim::holding_db(config, Chat::new(rooms))
        } else {
            Sim::with_config(config, Chat::new(rooms))
        }
    }

    #[test]
    fn the_invariants_hold_through_logins_joins_chat_and_closes_with_a_held_database() {
        let mut sim = sim(true);
        let sessions: Vec<SessionId> = (0..4).map(|_| sim.connect()).collect();
        check(&sim).unwrap();
        for (i, &s) in sessions.iter().enumerate() {
            sim.send(
                s,
                &C2sLogin {
                    username: format!("user{}", i % 3),
                    password: String::new(),
                    ..Default::default()
                },
            );
            sim.send(
                s,
                &C2sRoomJoin {
                    room: "lobby".into(),
                    ..Default::default()
                },
            );
            sim.send(
                s,
                &C2sChat {
                    room: "lobby".into(),
                    content: "hi".into(),
                    sent_at_us: 1,
                },
            );
        }
        sim.disconnect(sessions[1]);
        for round in 0..12 {
            sim.step();
            check(&sim).unwrap_or_else(|e| panic!("round {round}: {e}"));
            if round % 3 == 2 {
                sim.run_db();
            }
        }
        sim.send(
            sessions[3],
            &C2sWhisper {
                to: "user0".into(),
                content: "psst".into(),
                sent_at_us: 2,
            },
        );
        sim.send(
            sessions[3],
            &C2sRoomLeave {
                room: "lobby".into(),
            },
        );
        sim.database_down(true);
        sim.run_for(Duration::from_secs(2));
        check(&sim).unwrap();
        sim.database_down(false);
        sim.run_db();
        sim.run_for(Duration::from_secs(1));
        check(&sim).unwrap();
        let lobby = &sim.world().game.rooms.rooms["lobby"];
        assert!(
            !lobby.members.is_empty(),
            "the run got as far as a room with members"
        );
    }

    #[test]
    fn a_username_held_by_a_session_that_is_gone_is_caught() {
        let mut sim = sim(false);
        sim.guest("ann");
        check(&sim).unwrap();
        sim.world_mut().users.insert("ghost".into(), SessionId(999));
        let error = check(&sim).unwrap_err();
        assert!(error.contains("\"ghost\""), "{error}");
    }

    #[test]
    fn a_member_whose_own_rooms_do_not_list_the_room_is_caught() {
        let mut sim = Sim::new(Chat::default());
        let ann = sim.guest("ann");
        sim.send(
            ann,
            &C2sRoomJoin {
                room: "lobby".into(),
                ..Default::default()
            },
        );
        sim.run_for(Duration::from_millis(200));
        check(&sim).unwrap();
        sim.world_mut()
            .game
            .rooms
            .members
            .get_mut(&ann)
            .unwrap()
            .rooms
            .clear();
        let error = check(&sim).unwrap_err();
        assert!(error.contains("\"lobby\""), "{error}");
    }

    #[test]
    fn a_guest_count_off_by_one_is_caught() {
        let mut sim = sim(false);
        sim.guest("ann");
        sim.world_mut().guests += 1;
        let error = check(&sim).unwrap_err();
        assert!(error.contains("guest count"), "{error}");
    }
}
