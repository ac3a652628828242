//! Rooms: join (creating), leave, list, the presence the other members see, and each room's
//! history, kept in memory and in the database, on one node or across a cluster. A module: a
//! game opts into it by keeping a [`Rooms`] in its state ([`RoomsGame`]) and adding
//! [`RoomsModule`] in [`Game::register`], which registers its handlers and hooks.

use std::collections::VecDeque;

use bytes::Bytes;
use net::SessionId;
use protocol::world::{
    C2sRoomJoin, C2sRoomLeave, C2sRoomList, RoomInfo, S2cChat, S2cRoomJoined, S2cRoomLeft,
    S2cRoomList, S2cRoomMissed, S2cRoomPresence,
};
use protocol::{ErrorCode, MessageType};

use crate::db::DbEvent;
use crate::dispatcher::{Ctx, DispatchError, DispatchState, HandlerError};
use crate::handlers::check_room_name;
use crate::hash::{Map, SessionMap, Set};
use crate::metrics::Registry;
use crate::world::Game;
use crate::world::{dedup_newest, keep_newest, offer, Login, Module, Setup, World};

pub mod cluster;
pub mod store;
use prometheus_client::metrics::gauge::Gauge;

/// The rules of rooms and chat, from `[world]`.
#[derive(Clone, Debug)]
pub struct RoomsConfig {
    /// Members a room holds at most.
    pub room_capacity: u32,
    /// Bytes of chat content at most.
    pub max_chat_len: usize,
    /// Rooms one session can be in at once.
    pub max_rooms_per_session: usize,
    /// Chat lines each room keeps and replays on join; 0 for none.
    pub history_lines: usize,
    /// Rooms with stored history at most.
    pub max_history_rooms: usize,
    /// How long the history of an empty room is kept; `None` forever.
    pub history_retention: Option<std::time::Duration>,
}

impl From<&config::ServerConfig> for RoomsConfig {
    fn from(c: &config::ServerConfig) -> Self {
        RoomsConfig {
            room_capacity: c.world.room_capacity as u32,
            max_chat_len: c.world.max_chat_len,
            max_rooms_per_session: c.world.max_rooms_per_session,
            history_lines: c.world.history_lines,
            max_history_rooms: c.world.max_history_rooms,
            history_retention: (c.world.history_retention_days > 0).then(|| {
                std::time::Duration::from_secs(
                    c.world.history_retention_days.saturating_mul(86_400),
                )
            }),
        }
    }
}

/// How often the history of rooms empty past the retention is deleted.
const HISTORY_PRUNE: std::time::Duration = std::time::Duration::from_secs(3600);

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig::from(&config::ServerConfig::default())
    }
}

/// A room with members.
#[derive(Debug)]
pub struct Room {
    /// The room's name.
    pub name: String,
    /// Members in the order they joined.
    pub members: Vec<SessionId>,
    /// The last chat lines, oldest first, as encoded live S2C_Chat frames.
    pub history: VecDeque<Bytes>,
    /// Its history is being loaded from the database: joins wait in `waiting`.
    pub loading: bool,
    /// Sessions whose join completes when the history has loaded.
    pub waiting: Vec<SessionId>,
    /// The `server_time_us` of its last line said here: each line's is later than the one
    /// before, so that a client can say which it had last (`since_us` in C2S_RoomJoin).
    pub last_line_us: u64,
}

impl Room {
    /// The `server_time_us` of a line said now (`now_us`): later than the last one's.
    pub fn line_time(&mut self, now_us: u64) -> u64 {
        self.last_line_us = now_us.max(self.last_line_us + 1);
        self.last_line_us
    }

    /// A new, empty room.
    pub fn new(name: String) -> Room {
        Room {
            name,
            members: Vec::new(),
            history: VecDeque::new(),
            loading: false,
            waiting: Vec::new(),
            last_line_us: 0,
        }
    }
}

/// What one session has of rooms.
#[derive(Debug, Default)]
pub struct Membership {
    /// The rooms it is in, in the order it joined them.
    pub rooms: Vec<String>,
    /// A join waiting for the room's history to load.
    pub joining: bool,
    /// Joins under way that asked for the lines after a time only (`since_us`), by room.
    pub since: Vec<(String, u64)>,
}

/// The module's state.
#[derive(Debug)]
pub struct Rooms {
    /// The rules.
    pub config: RoomsConfig,
    /// Rooms that have members (or joins waiting for their history), by name.
    pub rooms: Map<String, Room>,
    /// What each session is in.
    pub members: SessionMap<Membership>,
    /// Chat lines of this tick to append to the history table.
    pub pending_history: Vec<Bytes>,
    /// Rooms with history that emptied since the last batch.
    pub pending_emptied: Vec<String>,
    /// Rooms created since the last batch: marked in use before any history is written, so
    /// that no trim of the history table takes theirs.
    pub pending_in_use: Vec<String>,
    /// Members on the other nodes of the cluster: room, node, usernames in the order they
    /// joined. Empty for a server on its own.
    pub remote: Map<String, Map<String, Vec<String>>>,
    /// On a cluster: joins waiting for the rooms bucket to count them, by session.
    pub reserving: Map<SessionId, String>,
    /// On a cluster: (session, room) the rooms bucket counts, from the reservation until the
    /// session leaves the room.
    pub reserved: Set<(SessionId, String)>,
    /// On a cluster: nodes whose batches to this one were lost, and the rooms whose members
    /// were told so (S2C_RoomMissed), until the node's state comes again (rooms it has members
    /// in by then are told too, once).
    pub missed: Map<String, Set<String>>,
    /// `world_rooms` and `world_room_members`, once registered.
    gauges: Option<(Gauge, Gauge)>,
    /// `world_room_missed_total`: rooms told they missed lines of another node.
    missed_total: crate::metrics::Count,
}

impl Rooms {
    /// No rooms yet.
    pub fn new(config: RoomsConfig) -> Rooms {
        Rooms {
            config,
            rooms: Map::default(),
            members: SessionMap::default(),
            pending_history: Vec::new(),
            pending_emptied: Vec::new(),
            pending_in_use: Vec::new(),
            remote: Map::default(),
            reserving: Map::default(),
            reserved: Set::default(),
            missed: Map::default(),
            gauges: None,
            missed_total: crate::metrics::Count::default(),
        }
    }

    /// Members of `room` on other nodes.
    pub fn remote_count(&self, room: &str) -> usize {
        self.remote
            .get(room)
            .map_or(0, |nodes| nodes.values().map(Vec::len).sum())
    }

    /// The other nodes with members in `room`.
    pub fn remote_nodes(&self, room: &str) -> impl Iterator<Item = &String> {
        self.remote
            .get(room)
            .into_iter()
            .flat_map(|nodes| nodes.keys())
    }

    /// The rooms `session` is in, in the order it joined them.
    pub fn rooms_of(&self, session: SessionId) -> &[String] {
        self.members
            .get(&session)
            .map_or(&[], |m| m.rooms.as_slice())
    }

    /// The room `name` if `session` is one of its members; otherwise the error to answer:
    /// BAD_REQUEST for a malformed name, NOT_IN_ROOM for a room the session is not in.
    pub fn room_of_member(&self, session: SessionId, name: &str) -> Result<&Room, HandlerError> {
        check_room_name(name)?;
        let member = self.rooms_of(session).iter().any(|r| r == name);
        match self.rooms.get(name) {
            Some(room) if member => Ok(room),
            _ => Err(HandlerError::new(
                ErrorCode::NotInRoom,
                format!("not in room {name:?}"),
            )),
        }
    }
}

/// A game with rooms: its state holds a [`Rooms`].
pub trait RoomsGame: Game {
    /// The rooms.
    fn rooms(&self) -> &Rooms;
    /// The rooms, to change.
    fn rooms_mut(&mut self) -> &mut Rooms;
}

/// The rooms module: C2S_RoomJoin, C2S_RoomLeave and C2S_RoomList, presence and history,
/// and its hooks (a login ends: its rooms; history loads and writes; the cluster's rooms; its
/// metrics, admin view and stats). For a game whose state holds a [`Rooms`]:
///
/// ```ignore
/// impl Game for MyWorld {
///     fn register(setup: &mut Setup<Self>) -> Result<(), DispatchError> {
///         setup.add(RoomsModule)?;
///         setup.add(ChatModule)
///     }
/// }
/// ```
pub struct RoomsModule;

impl<G: RoomsGame> Module<G> for RoomsModule {
    fn build(self, setup: &mut Setup<G>) -> Result<(), DispatchError> {
        setup.register::<C2sRoomJoin>(join)?;
        setup.register::<C2sRoomLeave>(leave)?;
        setup.register::<C2sRoomList>(list)?;
        setup
            .on_logged_out(logged_out)
            .on_disconnected(|world: &mut World<G>, session, _| disconnected(world, session))
            .on_waiting(is_waiting)
            .every(HISTORY_PRUNE, prune_history)
            .on_db_answer(db_answer)
            .record_answers(store::ANSWER_CODEC)
            .on_db_died(db_died)
            .on_writes(flush_writes, has_pending_writes)
            .on_cluster_event(cluster::event)
            .on_cluster_state(cluster::state)
            .on_node_lost(cluster::node_lost)
            .on_missed_from(cluster::missed_from)
            .on_reserved(reserved)
            .on_reconnected(recount)
            .metrics(register_metrics)
            .admin(admin)
            .stats(stats);
        Ok(())
    }
}

/// Hook: the module's metrics, `world_rooms` and `world_room_members`, kept up to date with
/// each tick's writes.
fn register_metrics<G: RoomsGame>(world: &mut World<G>, registry: &mut Registry) {
    let rooms = Gauge::default();
    let members = Gauge::default();
    registry.register("world_rooms", "Rooms with members", rooms.clone());
    registry.register(
        "world_room_members",
        "Members of rooms, all rooms together",
        members.clone(),
    );
    let game = world.game.rooms_mut();
    registry.register(
        "world_room_missed",
        "Rooms whose members were told (S2C_RoomMissed) that lines of another node did not reach them",
        game.missed_total.clone(),
    );
    game.gauges = Some((rooms, members));
}

/// Rooms listed on the admin page at most, the fullest first, and members of each.
const ADMIN_ROOMS: usize = 200;
const ADMIN_MEMBERS: usize = 100;

/// Hook: what the admin page shows: `{"rooms": [{"name", "members": [...], "count"}]}`, the
/// fullest rooms first.
fn admin<G: RoomsGame>(world: &World<G>) -> serde_json::Value {
    let mut rooms: Vec<&Room> = world.game.rooms().rooms.values().collect();
    rooms.sort_by(|a, b| {
        b.members
            .len()
            .cmp(&a.members.len())
            .then(a.name.cmp(&b.name))
    });
    let listed: Vec<serde_json::Value> = rooms
        .iter()
        .take(ADMIN_ROOMS)
        .map(|room| {
            let members: Vec<String> = room
                .members
                .iter()
                .take(ADMIN_MEMBERS)
                .filter_map(|m| world.login(*m).map(|l| l.username.clone()))
                .collect();
            serde_json::json!({
                "name": room.name,
                "count": room.members.len(),
                "members": members,
            })
        })
        .collect();
    serde_json::json!({ "rooms": listed, "room_count": rooms.len() })
}

/// Hook: what the module adds to the stats line: how many rooms.
fn stats<G: RoomsGame>(world: &World<G>) -> String {
    format!(", {} rooms", world.game.rooms().rooms.len())
}

/// Hook: a login ended; the session leaves its rooms (the others see it go), and a join
/// waiting for the rooms bucket is void (its answer finds the session gone from it).
fn logged_out<G: RoomsGame>(world: &mut World<G>, session: SessionId, login: &Login) {
    let rooms = world.game.rooms_mut();
    rooms.reserving.remove(&session);
    let Some(membership) = rooms.members.get_mut(&session) else {
        return;
    };
    let rooms = std::mem::take(&mut membership.rooms);
    membership.joining = false;
    for room in rooms {
        remove_member(world, &room, session, &login.username);
    }
}

/// Hook: a session ended. What the rooms bucket still counts of it (a join that waited for a
/// room's history) is given back.
fn disconnected<G: RoomsGame>(world: &mut World<G>, session: SessionId) {
    let World { game, cluster, .. } = world;
    let rooms = game.rooms_mut();
    rooms.members.remove(&session);
    rooms.reserving.remove(&session);
    for room in rooms.rooms.values_mut() {
        room.waiting.retain(|&s| s != session);
    }
    let counted: Vec<String> = rooms
        .reserved
        .iter()
        .filter(|(s, _)| *s == session)
        .map(|(_, room)| room.clone())
        .collect();
    for room in counted {
        rooms.reserved.remove(&(session, room.clone()));
        if let Some(cluster) = cluster.as_mut() {
            cluster.unreserve(&room);
        }
    }
}

/// Hook: the rooms bucket answered the reservation of `session` for `room`: the join goes
/// on (a full room is ROOM_FULL, wherever its members are; without the bucket, this node
/// decides alone).
fn reserved<G: RoomsGame>(
    world: &mut World<G>,
    session: SessionId,
    room: String,
    outcome: crate::cluster::link::Reservation,
) {
    use crate::cluster::link::Reservation;
    let rooms = world.game.rooms_mut();
    if rooms.reserving.get(&session) != Some(&room) {
        // The session went away or was logged out meanwhile (replaced by a newer login, say),
        // or this is not its join any more: the room would be made for nobody.
        if outcome == Reservation::Granted {
            if let Some(cluster) = world.cluster.as_mut() {
                cluster.unreserve(&room);
            }
        }
        return;
    }
    rooms.reserving.remove(&session);
    if let Some(membership) = rooms.members.get_mut(&session) {
        membership.joining = false;
    }
    let capacity = rooms.config.room_capacity as usize;
    let result = match outcome {
        Reservation::Full => Err(room_full(&room, capacity)),
        Reservation::Granted | Reservation::Unavailable => {
            if outcome == Reservation::Granted {
                rooms.reserved.insert((session, room.clone()));
            }
            admit(
                world,
                session,
                C2sRoomJoin {
                    room: room.clone(),
                    ..Default::default()
                },
                true,
            )
        }
    };
    if let Err(error) = result {
        let rooms = world.game.rooms_mut();
        let member = rooms.rooms_of(session).contains(&room)
            || rooms
                .rooms
                .get(&room)
                .is_some_and(|r| r.waiting.contains(&session));
        if !member && rooms.reserved.remove(&(session, room.clone())) {
            if let Some(cluster) = world.cluster.as_mut() {
                cluster.unreserve(&room);
            }
        }
        world.send_error(session, C2sRoomJoin::ID, error);
    }
}

/// Hook: NATS is back: the rooms bucket counts this node's members of each room as they are
/// (joins decided alone while it was away were not counted), and every one of them counts from
/// now on (its leave uncounts it). Members over a room's capacity stay; joins are refused
/// until the room is below it again.
fn recount<G: RoomsGame>(world: &mut World<G>) {
    let rooms = world.game.rooms_mut();
    let mut counts: Vec<(String, u32)> = Vec::new();
    for (name, room) in &rooms.rooms {
        let here = room.members.iter().chain(&room.waiting);
        counts.push((name.clone(), here.clone().count() as u32));
        for &session in here {
            rooms.reserved.insert((session, name.clone()));
        }
    }
    counts.sort_unstable();
    if let Some(cluster) = world.cluster.as_mut() {
        for (room, members) in counts {
            cluster.recount(&room, members);
        }
    }
}

/// Hook: whether `session` waits for a room's history.
fn is_waiting<G: RoomsGame>(world: &World<G>, session: SessionId) -> bool {
    world
        .game
        .rooms()
        .members
        .get(&session)
        .is_some_and(|m| m.joining)
}

/// Hook: the DB worker's answer to a history load ([`store::load`]).
fn db_answer<G: RoomsGame>(
    world: &mut World<G>,
    answer: DbEvent,
    _: std::time::Instant,
) -> Option<DbEvent> {
    match answer {
        DbEvent::Module {
            module: store::MODULE,
            answer,
        } => match answer.downcast::<store::Loaded>() {
            Ok(loaded) => {
                let store::Loaded { room, lines } = *loaded;
                history_loaded(world, &room, lines);
                None
            }
            Err(answer) => Some(DbEvent::Module {
                module: store::MODULE,
                answer,
            }),
        },
        other => Some(other),
    }
}

/// Timer: deletes the history of rooms empty for longer than the retention.
fn prune_history<G: RoomsGame>(world: &mut World<G>, _: std::time::Instant) {
    let config = &world.game.rooms().config;
    let Some(retention) = config.history_retention else {
        return;
    };
    if config.history_lines == 0 {
        return;
    }
    let before_us = world
        .now()
        .unix_us
        .saturating_sub(retention.as_micros() as u64);
    // A full write queue skips this round; the next one catches up.
    let _ = world.db.submit(store::prune(before_us));
}

/// Hook: the DB worker died; rooms waiting for their history start without it.
fn db_died<G: RoomsGame>(world: &mut World<G>) {
    let loading: Vec<String> = world
        .game
        .rooms()
        .rooms
        .values()
        .filter(|r| r.loading)
        .map(|r| r.name.clone())
        .collect();
    for room in loading {
        history_loaded(world, &room, Vec::new());
    }
}

/// Hook: this tick's writes: rooms marked in use, history lines, rooms that emptied.
fn flush_writes<G: RoomsGame>(world: &mut World<G>) {
    let now_us = world.now().unix_us;
    let World { db, game, .. } = world;
    let rooms = game.rooms_mut();
    let limits = crate::storage::LogLimits {
        entries: rooms.config.history_lines,
        max_logs: rooms.config.max_history_rooms,
    };
    if let Some((count, members)) = &rooms.gauges {
        count.set(rooms.rooms.len() as i64);
        members.set(rooms.rooms.values().map(|r| r.members.len() as i64).sum());
    }
    dedup_newest(&mut rooms.pending_in_use, "rooms in use");
    dedup_newest(&mut rooms.pending_emptied, "emptied rooms");
    offer(db, &mut rooms.pending_in_use, store::in_use, "rooms in use");
    if !rooms.pending_in_use.is_empty() {
        // The write queue is full: lines written before the marks could trim those rooms.
        // They wait (at most MAX_PENDING_WRITES of them) for the marks to go first.
        keep_newest(&mut rooms.pending_history, "history lines");
        return;
    }
    offer(
        db,
        &mut rooms.pending_history,
        |frames| store::append(frames, limits),
        "history lines",
    );
    // After the lines of those rooms (which mark them in use), and only for rooms still
    // empty: one emptied and filled again within a tick is in use.
    if rooms.pending_history.is_empty() {
        let live = &rooms.rooms;
        rooms
            .pending_emptied
            .retain(|room| !live.contains_key(room));
        offer(
            db,
            &mut rooms.pending_emptied,
            |rooms| store::emptied(rooms, now_us),
            "emptied rooms",
        );
    }
}

/// Hook: whether writes of the module wait for a full write queue.
fn has_pending_writes<G: RoomsGame>(world: &World<G>) -> bool {
    let rooms = world.game.rooms();
    !rooms.pending_history.is_empty()
        || !rooms.pending_emptied.is_empty()
        || !rooms.pending_in_use.is_empty()
}

fn join<G: RoomsGame>(
    world: &mut World<G>,
    ctx: &Ctx,
    request: C2sRoomJoin,
) -> Result<(), HandlerError> {
    check_room_name(&request.room)?;
    let asked = (request.since_us > 0).then(|| (request.room.clone(), request.since_us));
    if let Some((room, since)) = &asked {
        let member = world
            .game
            .rooms_mut()
            .members
            .entry(ctx.session)
            .or_default();
        member.since.retain(|(r, _)| r != room);
        member.since.push((room.clone(), *since));
    }
    let admitted = admit(world, ctx.session, request, false);
    if let (Err(_), Some((room, _))) = (&admitted, &asked) {
        if let Some(member) = world.game.rooms_mut().members.get_mut(&ctx.session) {
            member.since.retain(|(r, _)| r != room);
        }
    }
    admitted
}

/// A join of `request.room` by `session`. On a cluster, unless `counted` (the rooms bucket
/// has answered), it first waits for the bucket to count it: a room's capacity holds across
/// the nodes.
fn admit<G: RoomsGame>(
    world: &mut World<G>,
    session: SessionId,
    request: C2sRoomJoin,
    counted: bool,
) -> Result<(), HandlerError> {
    let rooms = world.game.rooms_mut();
    let capacity = rooms.config.room_capacity as usize;
    let history_lines = rooms.config.history_lines;
    let mine = rooms.rooms_of(session);
    if mine.contains(&request.room) {
        // Joining again only repeats the answer: no presence, no history.
        send_joined(world, session, &request.room);
        return Ok(());
    }
    if mine.len() >= rooms.config.max_rooms_per_session {
        return Err(HandlerError::bad_request(format!(
            "already in {} rooms, the most max_rooms_per_session allows (joining {:?})",
            mine.len(),
            request.room
        )));
    }
    if !counted && world.cluster.is_some() {
        let rooms = world.game.rooms_mut();
        rooms.reserving.insert(session, request.room.clone());
        rooms.members.entry(session).or_default().joining = true;
        if let Some(cluster) = world.cluster.as_mut() {
            cluster.reserve(session, &request.room, capacity as u32);
        }
        return Ok(());
    }
    let rooms = world.game.rooms_mut();
    // The bucket counted it: every node's members are in that count.
    let bucket_says = rooms.reserved.contains(&(session, request.room.clone()));
    let remote = rooms.remote_count(&request.room);
    match rooms.rooms.get_mut(&request.room) {
        Some(room) => {
            if !bucket_says && room.members.len() + room.waiting.len() + remote >= capacity {
                return Err(room_full(&request.room, capacity));
            }
            if room.loading {
                room.waiting.push(session);
                rooms.members.entry(session).or_default().joining = true;
                return Ok(());
            }
        }
        None => {
            if !bucket_says && remote >= capacity {
                return Err(room_full(&request.room, capacity));
            }
            let mut room = Room::new(request.room.clone());
            if history_lines > 0 {
                // Marked in use first, so that no trim of the history table takes its lines;
                // and this tick's lines (of a room that emptied this very tick) are written
                // before the load reads them.
                rooms.pending_in_use.push(request.room.clone());
                world.flush_writes();
                let job = store::load(request.room.clone(), history_lines);
                // Lines still waiting for a full write queue would reach the database after
                // the load: the room then starts with them alone rather than without them.
                let rooms = world.game.rooms();
                let unwritten = rooms.pending_history.len() + rooms.pending_in_use.len();
                let submitted = if unwritten == 0 {
                    world.db.submit(job).map_err(|e| format!("{e:?}"))
                } else {
                    Err(format!("{unwritten} history writes waiting"))
                };
                let rooms = world.game.rooms_mut();
                match submitted {
                    Ok(()) => {
                        // The join completes when the history is here, so that it comes first.
                        room.loading = true;
                        room.waiting.push(session);
                        rooms.rooms.insert(request.room, room);
                        rooms.members.entry(session).or_default().joining = true;
                        return Ok(());
                    }
                    Err(why) => {
                        spdlog::warn!(
                            "storage: history of {:?} not loaded ({why}); the room starts with what is in memory",
                            request.room
                        );
                        room.history = rooms
                            .pending_history
                            .iter()
                            .filter(|f| chat_room_is(f, &request.room))
                            .cloned()
                            .collect();
                        while room.history.len() > history_lines {
                            room.history.pop_front();
                        }
                    }
                }
            }
            world
                .game
                .rooms_mut()
                .rooms
                .insert(request.room.clone(), room);
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
fn enter<G: RoomsGame>(world: &mut World<G>, session: SessionId, name: &str) {
    let Some(client) = world.clients.get(&session) else {
        return;
    };
    let Some(login) = client.login.as_ref() else {
        return; // logged out while the history loaded
    };
    if client.closing {
        return;
    }
    let username = login.username.clone();
    let rooms = world.game.rooms();
    if rooms.rooms_of(session).iter().any(|r| r == name) {
        return;
    }
    let capacity = rooms.config.room_capacity as usize;
    let remote = rooms.remote_count(name);
    let bucket_says = rooms.reserved.contains(&(session, name.to_string()));
    match rooms.rooms.get(name) {
        None => return,
        Some(room) if !bucket_says && room.members.len() + remote >= capacity => {
            world.send_error(session, C2sRoomJoin::ID, room_full(name, capacity));
            return;
        }
        Some(_) => {}
    }
    let World { game, out, .. } = world;
    let rooms = game.rooms_mut();
    let Some(room) = rooms.rooms.get_mut(name) else {
        return;
    };
    room.members.push(session);
    rooms
        .members
        .entry(session)
        .or_default()
        .rooms
        .push(name.to_string());
    tell_presence(out, &rooms.rooms[name], &username, true, Some(session));
    if let Some(cluster) = world.cluster.as_mut() {
        cluster::tell(
            cluster,
            None,
            cluster::Said::Joined(cluster::Member {
                room: name.to_string(),
                username,
            }),
        );
    }
    send_joined(world, session, name);
    let World { game, out, .. } = world;
    let rooms = game.rooms_mut();
    let since = rooms.members.get_mut(&session).and_then(|m| {
        let at = m.since.iter().position(|(r, _)| r == name)?;
        Some(m.since.swap_remove(at).1)
    });
    let room = &rooms.rooms[name];
    let Some(since) = since else {
        for frame in &room.history {
            out.push_history(session, frame);
        }
        return;
    };
    // Only the lines after `since`; when the oldest kept is later than that and the history
    // is full, lines in between may be gone: the client is told first.
    let keep = rooms.config.history_lines;
    let oldest = room.history.front().map_or(u64::MAX, server_time_of);
    if keep > 0 && room.history.len() >= keep && oldest > since {
        out.send(
            session,
            &S2cRoomMissed {
                room: name.to_string(),
            },
        );
    }
    for frame in room.history.iter().filter(|f| server_time_of(f) > since) {
        out.push_history(session, frame);
    }
}

/// The `server_time_us` of a stored S2C_Chat frame (0 for one that does not decode).
fn server_time_of(frame: &Bytes) -> u64 {
    frame
        .get(protocol::HEADER_LEN..)
        .and_then(|payload| <S2cChat as prost::Message>::decode(payload).ok())
        .map_or(0, |chat| chat.server_time_us)
}

fn send_joined<G: RoomsGame>(world: &mut World<G>, session: SessionId, name: &str) {
    let rooms = world.game.rooms();
    let Some(room) = rooms.rooms.get(name) else {
        return;
    };
    let mut members: Vec<String> = room
        .members
        .iter()
        .filter_map(|m| world.login(*m).map(|l| l.username.clone()))
        .collect();
    if let Some(nodes) = rooms.remote.get(name) {
        let mut nodes: Vec<(&String, &Vec<String>)> = nodes.iter().collect();
        nodes.sort_unstable();
        members.extend(
            nodes
                .into_iter()
                .flat_map(|(_, names)| names.iter().cloned()),
        );
    }
    let joined = S2cRoomJoined {
        room: name.to_string(),
        members,
        capacity: rooms.config.room_capacity,
    };
    world.out.send(session, &joined);
}

/// The DB worker loaded a room's history: the waiting joins complete, history first.
fn history_loaded<G: RoomsGame>(world: &mut World<G>, name: &str, lines: Vec<Bytes>) {
    let rooms = world.game.rooms_mut();
    let keep = rooms.config.history_lines;
    let mut history = VecDeque::from(lines);
    while history.len() > keep {
        history.pop_front();
    }
    let Some(room) = rooms.rooms.get_mut(name) else {
        return;
    };
    // Lines said while loading (none: a loading room has no members) come after the stored ones.
    history.extend(room.history.drain(..));
    room.history = history;
    room.loading = false;
    let waiting = std::mem::take(&mut room.waiting);
    for &session in &waiting {
        if let Some(membership) = rooms.members.get_mut(&session) {
            membership.joining = false;
        }
    }
    for session in waiting {
        enter(world, session, name);
    }
    let rooms = world.game.rooms_mut();
    if rooms.rooms.get(name).is_some_and(|r| r.members.is_empty()) {
        rooms.rooms.remove(name);
        rooms.pending_emptied.push(name.to_string());
    }
}

fn leave<G: RoomsGame>(
    world: &mut World<G>,
    ctx: &Ctx,
    request: C2sRoomLeave,
) -> Result<(), HandlerError> {
    check_room_name(&request.room)?;
    let membership = world
        .game
        .rooms_mut()
        .members
        .get_mut(&ctx.session)
        .filter(|m| m.rooms.contains(&request.room));
    let Some(membership) = membership else {
        return Err(HandlerError::new(
            ErrorCode::NotInRoom,
            format!("not in room {:?}", request.room),
        ));
    };
    membership.rooms.retain(|r| *r != request.room);
    let username = world
        .login(ctx.session)
        .expect("dispatch checked the login")
        .username
        .clone();
    remove_member(world, &request.room, ctx.session, &username);
    world
        .out
        .send(ctx.session, &S2cRoomLeft { room: request.room });
    Ok(())
}

/// Lists the rooms that have members, sorted by name. A list too long for one frame keeps the
/// busiest rooms that fit (about 900 with the longest names).
fn list<G: RoomsGame>(world: &mut World<G>, ctx: &Ctx, _: C2sRoomList) -> Result<(), HandlerError> {
    let state = world.game.rooms();
    let mut rooms: Vec<RoomInfo> = state
        .rooms
        .values()
        .filter(|room| !room.members.is_empty())
        .map(|room| RoomInfo {
            name: room.name.clone(),
            members: (room.members.len() + state.remote_count(&room.name)) as u32,
            capacity: state.config.room_capacity,
        })
        .collect();
    // Rooms with members on other nodes only.
    rooms.extend(
        state
            .remote
            .keys()
            .filter(|name| !state.rooms.contains_key(*name))
            .map(|name| RoomInfo {
                name: name.clone(),
                members: state.remote_count(name) as u32,
                capacity: state.config.room_capacity,
            })
            .filter(|room| room.members > 0),
    );
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

/// Takes `session` out of the member list of `room` (its own room list is the caller's),
/// tells the other members, and drops the room when it is empty.
fn remove_member<G: RoomsGame>(
    world: &mut World<G>,
    room: &str,
    session: SessionId,
    username: &str,
) {
    let World {
        game, out, cluster, ..
    } = world;
    let rooms = game.rooms_mut();
    let Some(entry) = rooms.rooms.get_mut(room) else {
        return;
    };
    let was_member = entry.members.contains(&session);
    entry.members.retain(|&m| m != session);
    entry.waiting.retain(|&m| m != session);
    if was_member {
        if let Some(cluster) = cluster.as_mut() {
            self::cluster::tell(
                cluster,
                None,
                self::cluster::Said::Left(self::cluster::Member {
                    room: room.to_string(),
                    username: username.to_string(),
                }),
            );
        }
    }
    if rooms.reserved.remove(&(session, room.to_string())) {
        if let Some(cluster) = cluster.as_mut() {
            cluster.unreserve(room);
        }
    }
    if entry.members.is_empty() && !entry.loading {
        rooms.rooms.remove(room);
        if rooms.config.history_lines > 0 {
            rooms.pending_emptied.push(room.to_string());
        }
        return;
    }
    tell_presence(out, entry, username, false, None);
}

/// Tells the members of `room` (but `except`) that `username` joined or left it, in one
/// frame for all.
pub(crate) fn tell_presence(
    out: &mut crate::outbox::Outbox,
    room: &Room,
    username: &str,
    joined: bool,
    except: Option<SessionId>,
) {
    let presence = S2cRoomPresence {
        room: room.name.clone(),
        username: username.to_string(),
        joined,
    };
    let Some(frame) = out.encode(&presence) else {
        return;
    };
    for &member in room.members.iter().filter(|&&m| Some(m) != except) {
        out.push(member, frame.clone());
    }
}

/// Sends `message` to every member of `room`, on this node and on every other node of a
/// cluster, the sender included when a member: encoded once, pushed to each member here, and
/// sent once to each other node with members in the room, which gives it to its own. Nothing
/// is kept (a chat line, which the room's history keeps, goes through the chat module). A
/// room nobody is in, here or elsewhere, gets nothing. Errors `INTERNAL` when the message does
/// not fit in a frame.
pub fn send_to_room<G: RoomsGame, M: protocol::ServerToClient>(
    world: &mut World<G>,
    room: &str,
    message: &M,
) -> Result<(), HandlerError> {
    let Some(frame) = world.out.encode(message) else {
        return Err(HandlerError::new(
            ErrorCode::Internal,
            format!("{} does not fit in a frame", M::NAME),
        ));
    };
    fan_out(world, room, &frame, |room, frame| {
        cluster::Said::Frame(cluster::RoomFrame { room, frame })
    });
    Ok(())
}

/// Pushes `frame` to the members of `room` here, and sends what `said` makes of it (encoded
/// once) to each other node with members in it.
pub(crate) fn fan_out<G: RoomsGame>(
    world: &mut World<G>,
    room: &str,
    frame: &Bytes,
    said: impl Fn(String, Bytes) -> cluster::Said,
) {
    let World {
        game, out, cluster, ..
    } = world;
    let rooms = game.rooms_mut();
    if let Some(cluster) = cluster.as_mut() {
        let mut payload = None;
        for node in rooms.remote_nodes(room) {
            let payload = payload
                .get_or_insert_with(|| self::cluster::encode(said(room.to_string(), frame.clone())))
                .clone();
            cluster.send_module(Some(node), store::MODULE, payload);
        }
    }
    if let Some(room) = rooms.rooms.get(room) {
        for &member in &room.members {
            out.push(member, frame.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::testkit::Harness;
    use protocol::{MessageType, S2cMessage};

    fn join_msg(room: &str) -> C2sRoomJoin {
        C2sRoomJoin {
            room: room.into(),
            ..Default::default()
        }
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
                assert_eq!(j.capacity, RoomsConfig::default().room_capacity);
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
        let mut h = Harness::with_rooms(RoomsConfig {
            room_capacity: 2,
            ..RoomsConfig::default()
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
        assert!(h.world_mut().game.rooms.rooms.is_empty());
    }

    #[test]
    fn too_many_rooms_answers_bad_request() {
        let mut h = Harness::with_rooms(RoomsConfig {
            max_rooms_per_session: 2,
            ..RoomsConfig::default()
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
        assert!(h.world_mut().game.rooms.rooms.is_empty());
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
        h.disconnect(b);
        let left: Vec<String> = h
            .take(a)
            .into_iter()
            .map(|m| match m {
                S2cMessage::S2cRoomPresence(p) if !p.joined => p.room,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(left, vec!["r1", "r2"]);
        assert_eq!(h.world_mut().session_of("bob"), None);
        assert_eq!(h.world_mut().game.rooms.rooms["r1"].members, vec![a]);
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
        let mut h = Harness::over(
            crate::world::WorldConfig {
                max_requests_per_sec: 0,
                ..crate::world::WorldConfig::default()
            },
            RoomsConfig {
                max_rooms_per_session: 1024,
                ..RoomsConfig::default()
            },
            false,
        );
        let a = h.guest("alice");
        let b = h.guest("bob");
        for i in 0..1000 {
            h.send(a, join_msg(&format!("{i:04}-{}", "x".repeat(59))));
        }
        h.send(b, join_msg(&format!("0999-{}", "x".repeat(59))));
        h.take(a);
        h.take(b);
        h.send(a, C2sRoomList {});
        let (id, payload) = h.sim.take_all(a).pop().expect("a reply");
        assert_eq!(id, S2cRoomList::ID);
        assert!(payload.len() + protocol::HEADER_LEN <= protocol::MAX_FRAME_LEN);
        let list = match S2cMessage::decode(S2cRoomList::ID, payload).unwrap() {
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
        let mut h =
            crate::handlers::testkit::Harness::deferred(crate::world::WorldConfig::default());
        let a = h.connect();
        h.send(
            a,
            protocol::world::C2sLogin {
                username: "ann".into(),
                password: String::new(),
                ..Default::default()
            },
        );
        h.run_db();
        h.take(a);
        h.send(
            a,
            C2sRoomJoin {
                room: "lobby".into(),
                ..Default::default()
            },
        );
        let kinds: Vec<String> = h
            .held_db()
            .into_iter()
            .filter_map(|job| match job {
                crate::db::DbJob::Module(job) if job.module == store::MODULE => {
                    Some(if job.write { "mark in use" } else { "load" })
                }
                _ => None,
            })
            .map(String::from)
            .collect();
        // No lines yet: the only write is the mark.
        assert_eq!(kinds, ["mark in use", "load"]);
        h.run_db();
        assert!(matches!(
            h.take(a).as_slice(),
            [S2cMessage::S2cRoomJoined(_)]
        ));
    }
}
