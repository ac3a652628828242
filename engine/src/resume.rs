//! Sessions that survive a dropped connection: what a resumable session keeps so that a client
//! that comes back within the grace window gets the same session, and every frame it missed,
//! exactly once.
//!
//! A login that asks for it (`resumable` in C2S_Login, C2S_Register, C2S_Resume) is given a
//! session token in its S2C_AuthResult. From then on both sides count frames:
//!
//! - the server numbers the frames it sends the session from the one after S2C_AuthResult
//!   (number 1), and keeps a copy of each in the session's replay buffer until the client's
//!   C2S_Ping says it received it (`received`);
//! - the server counts the requests it has processed from the one after the login request,
//!   and says how many in S2C_Pong (`processed`) and S2C_SessionResumed.
//!
//! When the connection drops, the session stays in the world (its rooms, presence and name
//! unchanged) for `net.resume_grace_secs`: it is *away*, and what is sent to it goes into its
//! replay buffer only. A C2S_SessionResume with its token, on a new connection, takes it back:
//! the connection is told how many requests were processed, then gets the frames after the
//! client's `received`, then what comes next. A resume of a session whose connection is still
//! up (a connection the client gave up on before the server noticed) takes it over: the older
//! connection gets REPLACED and closes, and its requests not yet processed are dropped (the
//! client sends them again, after `processed`).
//!
//! Bounds: a session's buffer holds at most `net.resume_buffer_bytes` and
//! `net.resume_buffer_frames`, and all buffers together `net.resume_total_mib`. A frame that
//! would pass a bound overflows its session's buffer: a session that is away ends there and
//! then (as at the end of the grace window); one that is connected goes on, but can no longer
//! be resumed. A client that comes back to a session that ended is told SESSION_LOST. The
//! buffers are the sessions' own bytes (frames are copied in, not shared with the tick's
//! arena), so what the server holds for them is what the bounds count.
//!
//! The core routes by it ([`crate::core`]): a connection that took a session back carries
//! that session's id in the world, so that handlers and modules never see the connection
//! change.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use net::{DisconnectReason, SessionId};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::hash::{Map, SessionMap};

/// The settings of resumable sessions (`net.resume_*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumeConfig {
    /// How long an away session waits for its client; zero turns resuming off.
    pub grace: Duration,
    /// Bytes one session's replay buffer holds at most.
    pub buffer_bytes: usize,
    /// Frames one session's replay buffer holds at most.
    pub buffer_frames: usize,
    /// Bytes all replay buffers together hold at most.
    pub total_bytes: usize,
}

impl From<&config::NetSection> for ResumeConfig {
    fn from(net: &config::NetSection) -> Self {
        ResumeConfig {
            grace: Duration::from_secs(net.resume_grace_secs),
            buffer_bytes: net.resume_buffer_bytes,
            buffer_frames: net.resume_buffer_frames,
            total_bytes: net.resume_total_mib << 20,
        }
    }
}

impl Default for ResumeConfig {
    fn default() -> Self {
        ResumeConfig::from(&config::NetSection::default())
    }
}

/// A session token: 128 random bits, 32 lowercase hexadecimal characters on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Token(u128);

impl Token {
    fn parse(text: &str) -> Option<Token> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(text, 16).ok().map(Token)
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// A session that is away: why its connection ended, and which time away this is.
#[derive(Clone, Debug)]
pub struct Away {
    /// Why the connection ended: the reason its end is recorded with if it does not come back.
    pub reason: DisconnectReason,
    /// Which of the session's times away this is (its deadline names it).
    time: u64,
}

/// A replay to send at the end of the tick: the new connection's own frames so far (its
/// welcome), S2C_SessionResumed, then the buffered frames after `from`.
struct Replay {
    preamble: Vec<Bytes>,
    from: u64,
}

/// What one resumable session keeps.
struct Resumable {
    token: Token,
    /// Frames sent since the login (the last one's number).
    sent: u64,
    /// Frames the client said it received: the buffer holds `acked + 1 ..= sent`.
    acked: u64,
    /// The frames `acked + 1 ..= sent`, back to back (each starts with its size).
    buffer: VecDeque<u8>,
    /// Requests processed since the login request.
    processed: u64,
    /// Frames of this tick's batch that come before the count starts (the login's answer and
    /// what preceded it); zero after the tick.
    skip: usize,
    away: Option<Away>,
    replay: Option<Replay>,
}

impl Resumable {
    fn frames(&self) -> u64 {
        self.sent - self.acked
    }

    /// Lets go of the frames up to `received`.
    fn trim(&mut self, received: u64) -> usize {
        let mut freed = 0;
        while self.acked < received {
            let size = frame_size(&self.buffer, 0);
            self.buffer.drain(..size);
            freed += size;
            self.acked += 1;
        }
        // A buffer that held a burst gives its room back once it is mostly empty.
        if self.buffer.capacity() > 16 * 1024 && self.buffer.len() < self.buffer.capacity() / 4 {
            self.buffer.shrink_to(self.buffer.capacity() / 2);
        }
        freed
    }

    /// The buffered frames after `from`, copied out once and split into frames.
    fn frames_after(&self, from: u64, frames: &mut Vec<Bytes>) {
        let mut at = 0;
        for _ in self.acked..from {
            at += frame_size(&self.buffer, at);
        }
        let (a, b) = self.buffer.as_slices();
        let mut out = BytesMut::with_capacity(self.buffer.len() - at);
        if at < a.len() {
            out.extend_from_slice(&a[at..]);
            out.extend_from_slice(b);
        } else {
            out.extend_from_slice(&b[at - a.len()..]);
        }
        let mut all = out.freeze();
        while !all.is_empty() {
            let size = usize::from(u16::from_le_bytes([all[0], all[1]]));
            frames.push(all.split_to(size));
        }
    }
}

/// The size of the frame at `at` in `buffer` (its first two bytes, little-endian).
fn frame_size(buffer: &VecDeque<u8>, at: usize) -> usize {
    usize::from(u16::from_le_bytes([buffer[at], buffer[at + 1]]))
}

/// Why a resume was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Resuming is off on this server.
    Off,
    /// The token is not a session token.
    Malformed,
    /// No session has this token (any more).
    Unknown,
    /// The session of this token is ending (replaced, closed by the server).
    Ending,
    /// The client says it received more frames than were sent.
    Ahead {
        /// What it says.
        received: u64,
        /// What was sent.
        sent: u64,
    },
    /// The client says it received fewer frames than it acknowledged before.
    Behind {
        /// What it says.
        received: u64,
        /// What it acknowledged.
        acked: u64,
    },
}

/// A session taken back.
#[derive(Debug, PartialEq, Eq)]
pub struct Resumed {
    /// The session.
    pub session: SessionId,
    /// The requests it had processed.
    pub processed: u64,
    /// The frames it had been sent.
    pub sent: u64,
    /// The frames the replay carries.
    pub missed: u64,
}

/// What became of a session's frames at the end of a tick ([`Resumes::outbound`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Outbound {
    /// Send the batch to this connection.
    Send(SessionId),
    /// Away: kept for the replay; nothing to send.
    Kept,
    /// Away, and its buffer overflowed: the session ends now, with the reason its connection
    /// ended.
    Overflowed(DisconnectReason),
}

/// Counters of resumable sessions, for the stats and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResumeStats {
    /// Resumable sessions whose connection ended: away, for the grace window.
    pub went_away: u64,
    /// Sessions taken back.
    pub resumed: u64,
    /// Frames sent again by those resumes.
    pub replayed: u64,
    /// Resumes refused (unknown token, bad counts, resuming off).
    pub refused: u64,
    /// Sessions whose client did not come back within the grace window.
    pub expired: u64,
    /// Replay buffers that overflowed (the session ended, or could no longer be resumed).
    pub overflowed: u64,
}

/// Every resumable session, and the connections that carry sessions taken back.
pub struct Resumes {
    config: ResumeConfig,
    sessions: SessionMap<Resumable>,
    tokens: Map<Token, SessionId>,
    /// Connection -> the session it carries, for a connection that took a session back.
    links: SessionMap<SessionId>,
    /// Session -> the connection carrying it, for a session taken back.
    wires: SessionMap<SessionId>,
    /// Away sessions in the order they went away: (deadline, session, which time away).
    deadlines: VecDeque<(Instant, SessionId, u64)>,
    /// Sessions taken back this tick: their replay goes out at the end of the tick.
    replays: Vec<SessionId>,
    /// Bytes in all replay buffers.
    held: usize,
    /// Sessions away.
    away: usize,
    rng: StdRng,
    /// Counters.
    pub stats: ResumeStats,
}

impl Resumes {
    /// No session yet. The tokens are drawn from a generator seeded with the process's hash
    /// keys ([`crate::hash::keys`]): secret, and the same in a replay of a recording.
    pub fn new(config: ResumeConfig) -> Resumes {
        let (k0, k1) = crate::hash::keys();
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&k0.to_le_bytes());
        seed[8..16].copy_from_slice(&k1.to_le_bytes());
        seed[16..].copy_from_slice(b"resumable tokens");
        Resumes {
            config,
            sessions: SessionMap::default(),
            tokens: Map::default(),
            links: SessionMap::default(),
            wires: SessionMap::default(),
            deadlines: VecDeque::new(),
            replays: Vec::new(),
            held: 0,
            away: 0,
            rng: StdRng::from_seed(seed),
            stats: ResumeStats::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ResumeConfig {
        &self.config
    }

    /// Whether sessions can be resumable here.
    pub fn enabled(&self) -> bool {
        !self.config.grace.is_zero()
    }

    /// Whether nothing is resumable and no connection carries a session taken back: the core
    /// routes nothing then.
    pub fn is_idle(&self) -> bool {
        self.sessions.is_empty() && self.links.is_empty()
    }

    /// Resumable sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is resumable.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Sessions away now.
    pub fn away(&self) -> usize {
        self.away
    }

    /// Bytes held in replay buffers.
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// `session` logged in asking to be resumable: its token. `skip` is the number of frames
    /// queued to it this tick before the count starts (its login's answer included).
    pub fn start(&mut self, session: SessionId, skip: usize) -> String {
        self.forget(session);
        let token = loop {
            let mut bytes = [0u8; 16];
            self.rng.fill_bytes(&mut bytes);
            let token = Token(u128::from_le_bytes(bytes));
            if !self.tokens.contains_key(&token) {
                break token;
            }
        };
        self.tokens.insert(token, session);
        self.sessions.insert(
            session,
            Resumable {
                token,
                sent: 0,
                acked: 0,
                buffer: VecDeque::new(),
                processed: 0,
                skip,
                away: None,
                replay: None,
            },
        );
        token.to_string()
    }

    /// `session` is no longer resumable (logged out, ended, replaced): what it kept goes.
    pub fn forget(&mut self, session: SessionId) {
        if let Some(r) = self.sessions.remove(&session) {
            self.tokens.remove(&r.token);
            self.held -= r.buffer.len();
            self.away -= usize::from(r.away.is_some());
        }
    }

    /// Whether `session` is resumable.
    pub fn is_resumable(&self, session: SessionId) -> bool {
        self.sessions.contains_key(&session)
    }

    /// The away state of `session`, if it is away.
    pub fn away_of(&self, session: SessionId) -> Option<&Away> {
        self.sessions.get(&session)?.away.as_ref()
    }

    /// The session `connection` carries: its own id, unless it took a session back.
    pub fn session_of(&self, connection: SessionId) -> SessionId {
        self.links.get(&connection).copied().unwrap_or(connection)
    }

    /// The connection that carries `session` now: its own, unless it was taken back.
    pub fn connection_of(&self, session: SessionId) -> SessionId {
        self.wires.get(&session).copied().unwrap_or(session)
    }

    /// The session `connection` carries, or `None` when another connection carries it now
    /// (the connection was taken over by a resume, or the session went away from it).
    pub fn route(&self, connection: SessionId) -> Option<SessionId> {
        let session = self.session_of(connection);
        let current = self.connection_of(session);
        let away = self
            .sessions
            .get(&session)
            .is_some_and(|r| r.away.is_some());
        (current == connection && !away).then_some(session)
    }

    /// `connection` ended and is done with: it no longer carries a session.
    pub fn unlink(&mut self, connection: SessionId) {
        if let Some(session) = self.links.remove(&connection) {
            if self.wires.get(&session) == Some(&connection) {
                self.wires.remove(&session);
            }
        }
    }

    /// `session` ended: nothing of it is kept, and its connection carries nothing.
    pub fn end(&mut self, session: SessionId) {
        self.forget(session);
        if let Some(connection) = self.wires.remove(&session) {
            self.links.remove(&connection);
        }
    }

    /// One more request of `session` processed.
    pub fn processed(&mut self, session: SessionId) {
        if let Some(r) = self.sessions.get_mut(&session) {
            r.processed += 1;
        }
    }

    /// `session`'s client says it received `received` frames: they are let go. Returns the
    /// requests processed so far, or the frames sent when `received` is more than that.
    pub fn acknowledge(&mut self, session: SessionId, received: u64) -> Result<u64, u64> {
        let Some(r) = self.sessions.get_mut(&session) else {
            return Ok(0);
        };
        if received > r.sent {
            return Err(r.sent);
        }
        self.held -= r.trim(received);
        Ok(r.processed)
    }

    /// `session`'s connection ended at `now` for `reason`: it is away, for the grace window.
    /// False when it is not resumable (it ends, as any session).
    pub fn go_away(&mut self, session: SessionId, reason: DisconnectReason, now: Instant) -> bool {
        let Some(r) = self.sessions.get_mut(&session) else {
            return false;
        };
        if r.away.is_none() {
            self.away += 1;
        }
        // Its number among all times away (its deadline names it).
        self.stats.went_away += 1;
        let time = self.stats.went_away;
        r.away = Some(Away { reason, time });
        r.replay = None;
        if let Some(connection) = self.wires.remove(&session) {
            self.links.remove(&connection);
        }
        self.deadlines
            .push_back((now + self.config.grace, session, time));
        true
    }

    /// The away sessions whose grace window ended by `now`, with why their connection ended:
    /// they end now.
    pub fn expired(&mut self, now: Instant) -> Vec<(SessionId, DisconnectReason)> {
        let mut ended = Vec::new();
        while let Some(&(deadline, session, time)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            // Still away that time (not back, nor away again since).
            let away = self.sessions.get(&session).and_then(|r| r.away.as_ref());
            if let Some(away) = away.filter(|a| a.time == time) {
                self.stats.expired += 1;
                ended.push((session, away.reason.clone()));
            }
        }
        ended
    }

    /// Takes the session of `token` back for `connection` (a new connection, not logged in),
    /// whose client has `received` frames. What the connection is to be sent before the replay
    /// (its welcome, S2C_SessionResumed) is given with [`Resumes::preamble`]. The connection
    /// that carried the session till now, if it is still up, is returned with it: it is to be
    /// closed. A session that is not `alive` (closing) is not taken back.
    pub fn resume(
        &mut self,
        connection: SessionId,
        token: &str,
        received: u64,
        alive: impl Fn(SessionId) -> bool,
    ) -> Result<(Resumed, Option<SessionId>), Refused> {
        if !self.enabled() {
            return Err(Refused::Off);
        }
        let token = Token::parse(token).ok_or(Refused::Malformed)?;
        let session = *self.tokens.get(&token).ok_or(Refused::Unknown)?;
        let r = self
            .sessions
            .get_mut(&session)
            .expect("a token has its session");
        if received > r.sent {
            return Err(Refused::Ahead {
                received,
                sent: r.sent,
            });
        }
        if received < r.acked {
            return Err(Refused::Behind {
                received,
                acked: r.acked,
            });
        }
        if !alive(session) {
            return Err(Refused::Ending);
        }
        let was_away = r.away.take().is_some();
        self.away -= usize::from(was_away);
        let older = (!was_away).then(|| self.wires.get(&session).copied().unwrap_or(session));
        let freed = r.trim(received);
        r.replay = Some(Replay {
            preamble: Vec::new(),
            from: received,
        });
        let resumed = Resumed {
            session,
            processed: r.processed,
            sent: r.sent,
            missed: r.sent - received,
        };
        self.held -= freed;
        // The older connection keeps its link until its end is processed: what it still sends
        // is routed to the session, and found not to be its current connection's.
        self.links.insert(connection, session);
        self.wires.insert(session, connection);
        self.replays.push(session);
        self.stats.resumed += 1;
        self.stats.replayed += resumed.missed;
        Ok((resumed, older))
    }

    /// Adds `frames` to what the new connection of `session`, taken back this tick, is sent
    /// before its replay.
    pub fn preamble(&mut self, session: SessionId, frames: impl IntoIterator<Item = Bytes>) {
        if let Some(replay) = self
            .sessions
            .get_mut(&session)
            .and_then(|r| r.replay.as_mut())
        {
            replay.preamble.extend(frames);
        }
    }

    /// A resume was refused.
    pub fn refused(&mut self) {
        self.stats.refused += 1;
    }

    /// `session`'s frames of this tick (`batch`, possibly empty) at the end of the tick: counted
    /// and kept for a replay when it is resumable, and made its replay when it was taken back
    /// this tick. Says where the batch goes.
    pub fn outbound(&mut self, session: SessionId, batch: &mut Vec<Bytes>) -> Outbound {
        let connection = self.connection_of(session);
        let Some(r) = self.sessions.get_mut(&session) else {
            return Outbound::Send(connection);
        };
        let skip = std::mem::take(&mut r.skip).min(batch.len());
        let config = &self.config;
        let mut stored = skip;
        let mut overflow = false;
        for frame in &batch[skip..] {
            let len = frame.len();
            if r.frames() + 1 > config.buffer_frames as u64
                || r.buffer.len() + len > config.buffer_bytes
                || self.held + len > config.total_bytes
            {
                overflow = true;
                break;
            }
            r.buffer.extend(frame.iter());
            r.sent += 1;
            self.held += len;
            stored += 1;
        }
        let away = r.away.as_ref().map(|a| a.reason.clone());
        // A replay is made in the tick of the resume, which is never the tick of the login: no
        // frame of the batch comes before the count.
        let replay = r.replay.take().map(|replay| {
            debug_assert_eq!(skip, 0);
            let mut frames = replay.preamble;
            if r.sent > replay.from {
                r.frames_after(replay.from, &mut frames);
            }
            frames
        });
        if overflow {
            self.stats.overflowed += 1;
            self.forget(session);
            if let Some(reason) = away {
                return Outbound::Overflowed(reason);
            }
        } else if away.is_some() {
            return Outbound::Kept;
        }
        if let Some(mut frames) = replay {
            // The batch's frames that were kept are in the replay; those that overflowed follow.
            frames.extend(batch.drain(stored..));
            *batch = frames;
        }
        Outbound::Send(connection)
    }

    /// The sessions taken back this tick, to hand their replay out even when the tick sent them
    /// nothing else.
    pub fn take_replays(&mut self) -> Vec<SessionId> {
        std::mem::take(&mut self.replays)
    }
}

#[cfg(test)]
mod tests {
    //! Resumable sessions in simulated time, with the chat test game: drops, resumes, replays,
    //! the grace window, overflows, races, and bad resumes.

    use super::*;
    use crate::handlers::testkit::Chat;
    use crate::testing::Sim;
    use config::ServerConfig;
    use protocol::world::{
        C2sChat, C2sLogin, C2sPing, C2sResume, C2sRoomJoin, C2sSessionResume, C2sWhisper,
        S2cAuthResult, S2cSessionResumed,
    };
    use protocol::{ErrorCode, MessageType, S2cMessage};
    use std::net::SocketAddr;

    /// A client of a resumable session, as a client author would write one: it counts the
    /// frames it receives and the requests it sends after its login.
    struct Player {
        conn: SessionId,
        session: SessionId,
        token: String,
        received: u64,
    }

    fn sim() -> Sim<Chat> {
        sim_with(|_| {})
    }

    fn sim_with(change: impl FnOnce(&mut ServerConfig)) -> Sim<Chat> {
        let mut config = ServerConfig::default();
        change(&mut config);
        Sim::with_config(config, Chat::default())
    }

    fn check(sim: &Sim<Chat>) {
        sim.core().check_invariants().unwrap();
    }

    fn decode(frames: Vec<(u16, Bytes)>) -> Vec<S2cMessage> {
        frames
            .into_iter()
            .map(|(id, payload)| S2cMessage::decode(id, payload).unwrap())
            .collect()
    }

    /// A resumable guest `name` in `rooms`, its inbox emptied.
    fn player(sim: &mut Sim<Chat>, name: &str, rooms: &[&str]) -> Player {
        let conn = sim.connect();
        sim.clear(conn);
        let login = C2sLogin {
            username: name.into(),
            password: String::new(),
            resumable: true,
        };
        sim.send(conn, &login);
        let mut token = None;
        for _ in 0..5 {
            sim.step();
            if let Some(result) = sim.take::<S2cAuthResult>(conn).pop() {
                token = Some(result.session_token);
                break;
            }
        }
        let token = token.expect("logged in");
        assert_eq!(token.len(), 32, "{token:?}");
        let mut p = Player {
            conn,
            session: conn,
            token,
            received: 0,
        };
        p.received += sim.take_all(conn).len() as u64;
        for room in rooms {
            sim.send(
                conn,
                &C2sRoomJoin {
                    room: (*room).into(),
                    ..Default::default()
                },
            );
            sim.step();
            sim.step();
            hear(sim, &mut p);
        }
        p
    }

    /// A guest `name` (not resumable) in `rooms`.
    fn guest(sim: &mut Sim<Chat>, name: &str, rooms: &[&str]) -> SessionId {
        let s = sim.guest(name);
        for room in rooms {
            sim.send(
                s,
                &C2sRoomJoin {
                    room: (*room).into(),
                    ..Default::default()
                },
            );
            sim.step();
            sim.step();
        }
        sim.clear(s);
        s
    }

    /// What `p` was sent since last time, counted.
    fn hear(sim: &mut Sim<Chat>, p: &mut Player) -> Vec<S2cMessage> {
        let frames = sim.take_all(p.conn);
        p.received += frames.len() as u64;
        decode(frames)
    }

    fn chat(room: &str, content: &str) -> C2sChat {
        C2sChat {
            room: room.into(),
            content: content.into(),
            sent_at_us: 1,
        }
    }

    fn lines(messages: &[S2cMessage]) -> Vec<String> {
        messages
            .iter()
            .filter_map(|m| match m {
                S2cMessage::S2cChat(c) => Some(c.content.clone()),
                S2cMessage::S2cWhisper(w) => Some(format!("whisper: {}", w.content)),
                _ => None,
            })
            .collect()
    }

    fn ping(received: u64) -> C2sPing {
        C2sPing {
            seq: 1,
            client_time_us: 0,
            received,
        }
    }

    /// `p` comes back on a new connection; its inbox there, after the welcome.
    fn resume(sim: &mut Sim<Chat>, p: &mut Player) -> Vec<S2cMessage> {
        let conn = sim.connect();
        sim.clear(conn);
        sim.send(
            conn,
            &C2sSessionResume {
                session_token: p.token.clone(),
                received: p.received,
            },
        );
        sim.step();
        p.conn = conn;
        decode(sim.take_all(conn))
    }

    /// The frames of a resume's answer after S2C_SessionResumed, counted; the answer.
    fn resumed(p: &mut Player, mut inbox: Vec<S2cMessage>) -> (S2cSessionResumed, Vec<S2cMessage>) {
        let S2cMessage::S2cSessionResumed(answer) = inbox.remove(0) else {
            panic!("not resumed: {inbox:?}");
        };
        p.received += inbox.len() as u64;
        assert_eq!(p.received, answer.sent, "the replay ends at what was sent");
        (answer, inbox)
    }

    fn error(messages: &[S2cMessage]) -> (ErrorCode, String) {
        match messages {
            [S2cMessage::S2cError(e)] => (e.code(), e.reason.clone()),
            other => panic!("not one error: {other:?}"),
        }
    }

    #[test]
    fn a_dropped_session_stays_in_its_rooms_and_gets_what_it_missed_once_in_order() {
        let mut sim = sim();
        let mut ann = player(&mut sim, "ann", &["lobby"]);
        let bob = guest(&mut sim, "bob", &["lobby"]);
        hear(&mut sim, &mut ann);
        sim.send(bob, &chat("lobby", "one"));
        sim.step();
        assert_eq!(lines(&hear(&mut sim, &mut ann)), ["one"]);
        // "two" is sent, and lost with the connection: the client never reads it.
        sim.send(bob, &chat("lobby", "two"));
        sim.step();
        sim.clear(ann.conn);
        sim.disconnect(ann.conn);
        sim.step();
        check(&sim);
        assert!(sim.world().clients[&ann.session].away);
        // The admin page shows her away.
        let series = crate::admin::Series::new(sim.now());
        let state: serde_json::Value = serde_json::from_str(&crate::admin::state_json(
            sim.world(),
            &series,
            sim.now(),
            &[],
        ))
        .unwrap();
        assert_eq!(state["away"], 1);
        let players = state["players"].as_array().unwrap();
        assert!(players
            .iter()
            .any(|p| p["username"] == "ann" && p["away"] == true));
        for line in ["three", "four"] {
            sim.send(bob, &chat("lobby", line));
        }
        sim.send(
            bob,
            &C2sWhisper {
                to: "ann".into(),
                content: "psst".into(),
                sent_at_us: 1,
            },
        );
        sim.run_for(Duration::from_secs(5));
        let to_bob = decode(sim.take_all(bob));
        assert!(
            !to_bob
                .iter()
                .any(|m| matches!(m, S2cMessage::S2cRoomPresence(_))),
            "the room does not see ann go: {to_bob:?}"
        );
        assert_eq!(
            lines(&to_bob),
            ["one", "two", "three", "four", "whisper: psst"]
        );
        let inbox = resume(&mut sim, &mut ann);
        let (answer, replay) = resumed(&mut ann, inbox);
        assert_eq!(
            (answer.username.as_str(), answer.guest, answer.processed),
            ("ann", true, 1),
            "the join was her one request"
        );
        assert_eq!(lines(&replay), ["two", "three", "four", "whisper: psst"]);
        check(&sim);
        // Live again, on the new connection, as the same session.
        sim.send(bob, &chat("lobby", "five"));
        sim.step();
        assert_eq!(lines(&hear(&mut sim, &mut ann)), ["five"]);
        assert_eq!(sim.world().session_of("ann"), Some(ann.session));
        sim.send(ann.conn, &chat("lobby", "back"));
        sim.step();
        assert_eq!(lines(&decode(sim.take_all(bob))), ["five", "back"]);
        assert_eq!(sim.world().resume.stats.resumed, 1);
        assert_eq!(sim.world().resume.stats.replayed, 4);
    }

    #[test]
    fn requests_processed_before_the_drop_are_not_sent_again_and_the_others_are() {
        let mut sim = sim();
        let mut ann = player(&mut sim, "ann", &["lobby"]);
        let bob = guest(&mut sim, "bob", &["lobby"]);
        // Requests 2 and 3 (the join was 1); the pong says both are processed.
        sim.send(ann.conn, &chat("lobby", "one"));
        sim.send(ann.conn, &ping(ann.received));
        sim.step();
        let heard = hear(&mut sim, &mut ann);
        assert!(
            heard
                .iter()
                .any(|m| matches!(m, S2cMessage::S2cPong(p) if p.processed == 3)),
            "{heard:?}"
        );
        // Request 4 arrives, and the connection drops right after: the echo is lost, so the
        // client does not know whether it was said.
        sim.send(ann.conn, &chat("lobby", "two"));
        sim.disconnect(ann.conn);
        sim.step();
        sim.clear(ann.conn);
        // Request 5 was written, but never reached the server.
        let inbox = resume(&mut sim, &mut ann);
        let (answer, replay) = resumed(&mut ann, inbox);
        assert_eq!(
            answer.processed, 4,
            "\"two\" was processed, \"three\" was not"
        );
        assert_eq!(lines(&replay), ["two"]);
        // So the client sends "three" again, and nothing before it.
        sim.send(ann.conn, &chat("lobby", "three"));
        sim.send(ann.conn, &ping(ann.received));
        sim.step();
        let heard = hear(&mut sim, &mut ann);
        assert!(heard
            .iter()
            .any(|m| matches!(m, S2cMessage::S2cPong(p) if p.processed == 6)));
        assert_eq!(
            lines(&decode(sim.take_all(bob))),
            ["one", "two", "three"],
            "each line said once"
        );
        check(&sim);
    }

    #[test]
    fn a_session_not_back_within_the_grace_window_ends_and_its_client_is_told_so() {
        let mut sim = sim_with(|c| c.net.resume_grace_secs = 5);
        let mut ann = player(&mut sim, "ann", &["lobby"]);
        let bob = guest(&mut sim, "bob", &["lobby"]);
        sim.disconnect(ann.conn);
        sim.run_for(Duration::from_millis(4900));
        assert_eq!(sim.world().session_of("ann"), Some(ann.session));
        assert!(sim.take_all(bob).is_empty(), "nobody saw ann go");
        sim.run_for(Duration::from_millis(200));
        check(&sim);
        assert_eq!(sim.world().session_of("ann"), None);
        let to_bob = decode(sim.take_all(bob));
        assert!(
            matches!(to_bob.as_slice(), [S2cMessage::S2cRoomPresence(p)] if p.username == "ann" && !p.joined),
            "{to_bob:?}"
        );
        let (code, reason) = error(&resume(&mut sim, &mut ann));
        assert_eq!(code, ErrorCode::SessionLost);
        assert!(reason.contains("5 s"), "{reason}");
        assert_eq!(sim.world().resume.stats.expired, 1);
        assert!(sim.world().resume.is_empty());
        // The session log says why it ended: its connection's reason.
        assert_eq!(sim.world().stats.disconnects.get("peer_closed"), Some(&1));
    }

    #[test]
    fn an_away_session_whose_buffer_overflows_ends_and_a_connected_one_can_no_longer_resume() {
        let mut sim = sim_with(|c| c.net.resume_buffer_frames = 16);
        let mut ann = player(&mut sim, "ann", &["lobby"]);
        let mut cat = player(&mut sim, "cat", &["lobby"]);
        let bob = guest(&mut sim, "bob", &["lobby"]);
        hear(&mut sim, &mut ann);
        hear(&mut sim, &mut cat);
        sim.disconnect(ann.conn);
        sim.step();
        for i in 0..20 {
            sim.send(bob, &chat("lobby", &format!("line {i}")));
            sim.step();
            check(&sim);
        }
        // ann was away, past 16 frames: she is gone, and her room saw her go.
        assert_eq!(sim.world().session_of("ann"), None);
        let to_bob = decode(sim.take_all(bob));
        assert!(to_bob
            .iter()
            .any(|m| matches!(m, S2cMessage::S2cRoomPresence(p) if p.username == "ann")));
        assert_eq!(error(&resume(&mut sim, &mut ann)).0, ErrorCode::SessionLost);
        // cat read everything, but never said so: she keeps her session, not resumable.
        assert_eq!(lines(&hear(&mut sim, &mut cat)).len(), 20);
        assert!(!sim.world().resume.is_resumable(cat.session));
        sim.disconnect(cat.conn);
        sim.step();
        assert_eq!(sim.world().session_of("cat"), None, "it ends at once");
        assert_eq!(sim.world().resume.stats.overflowed, 2);
        assert_eq!(sim.world().resume.held_bytes(), 0);
        check(&sim);
    }

    #[test]
    fn pings_let_go_of_what_the_client_received_and_a_count_ahead_is_refused() {
        let mut sim = sim();
        let mut ann = player(&mut sim, "ann", &["lobby"]);
        let bob = guest(&mut sim, "bob", &["lobby"]);
        for i in 0..10 {
            sim.send(bob, &chat("lobby", &format!("line {i}")));
        }
        sim.step();
        hear(&mut sim, &mut ann);
        assert!(sim.world().resume.held_bytes() > 0);
        sim.send(ann.conn, &ping(ann.received + 1));
        sim.step();
        let (code, reason) = error(&hear(&mut sim, &mut ann));
        assert_eq!(code, ErrorCode::BadRequest);
        assert!(reason.contains("more than the"), "{reason}");
        sim.send(ann.conn, &ping(ann.received));
        sim.step();
        hear(&mut sim, &mut ann);
        // What is held now is the last two answers (the error, the pong) only.
        let held = sim.world().resume.held_bytes();
        assert!(held < 100, "{held}");
    }

    #[test]
    fn a_resume_while_the_old_connection_is_still_up_takes_the_session_over() {
        let mut sim = sim();
        let mut ann = player(&mut sim, "ann", &["lobby"]);
        let bob = guest(&mut sim, "bob", &["lobby"]);
        let old = ann.conn;
        // The client stops hearing the old connection (stalled), the server does not know.
        sim.send(bob, &chat("lobby", "unheard"));
        sim.step();
        sim.clear(old);
        sim.clear(bob);
        let new = sim.connect();
        sim.clear(new);
        sim.send(
            new,
            &C2sSessionResume {
                session_token: ann.token.clone(),
                received: ann.received,
            },
        );
        // Sent by the old connection after the resume, in the same tick.
        sim.send(old, &chat("lobby", "from the old connection"));
        sim.step();
        ann.conn = new;
        let inbox = decode(sim.take_all(new));
        let (_, replay) = resumed(&mut ann, inbox);
        assert_eq!(lines(&replay), ["unheard"]);
        let told = decode(sim.take_all(old));
        assert!(
            matches!(told.as_slice(), [S2cMessage::S2cError(e)] if e.code() == ErrorCode::Replaced),
            "{told:?}"
        );
        assert_eq!(sim.closed(old), Some(&DisconnectReason::Replaced));
        sim.step();
        assert!(
            lines(&decode(sim.take_all(bob))).is_empty(),
            "what the old connection sent after the resume is not the session's"
        );
        assert_eq!(sim.world().session_of("ann"), Some(ann.session));
        assert!(
            !sim.world().clients[&ann.session].away,
            "the old close does not send it away"
        );
        check(&sim);
        sim.send(ann.conn, &chat("lobby", "new"));
        sim.step();
        assert_eq!(lines(&decode(sim.take_all(bob))), ["new"]);
    }

    #[test]
    fn of_two_resumes_at_once_the_later_keeps_the_session_and_the_earlier_is_told() {
        let mut sim = sim();
        let mut ann = player(&mut sim, "ann", &["lobby"]);
        let bob = guest(&mut sim, "bob", &["lobby"]);
        sim.disconnect(ann.conn);
        sim.send(bob, &chat("lobby", "missed"));
        sim.step();
        let first = sim.connect();
        let second = sim.connect();
        let resume = C2sSessionResume {
            session_token: ann.token.clone(),
            received: ann.received,
        };
        sim.send(first, &resume);
        sim.send(second, &resume);
        sim.step();
        check(&sim);
        let to_first = decode(sim.take_all(first));
        assert!(
            matches!(to_first.last(), Some(S2cMessage::S2cError(e)) if e.code() == ErrorCode::Replaced),
            "{to_first:?}"
        );
        assert_eq!(sim.closed(first), Some(&DisconnectReason::Replaced));
        ann.conn = second;
        let mut inbox = decode(sim.take_all(second));
        inbox.remove(0); // the welcome
        let (_, replay) = resumed(&mut ann, inbox);
        assert_eq!(
            lines(&replay),
            ["missed"],
            "each connection gets the replay it asked for"
        );
        sim.step();
        assert_eq!(sim.core().connections(), 2, "bob and ann's second");
        check(&sim);
    }

    #[test]
    fn a_resume_racing_a_login_of_the_same_name_leaves_the_name_with_one_session() {
        // The login lands first: the away session is replaced and ends; the resume is told
        // the session is lost.
        let mut sim = sim();
        let mut ann = player(&mut sim, "ann", &["lobby"]);
        sim.disconnect(ann.conn);
        sim.step();
        let login = sim.connect();
        sim.send(
            login,
            &C2sLogin {
                username: "ann".into(),
                password: String::new(),
                resumable: false,
            },
        );
        sim.step();
        sim.step();
        assert!(!sim.take::<S2cAuthResult>(login).is_empty());
        check(&sim);
        assert_eq!(error(&resume(&mut sim, &mut ann)).0, ErrorCode::SessionLost);
        assert_eq!(sim.world().session_of("ann"), Some(login));
        check(&sim);

        // The resume lands first (the login is at the database): the login then takes the
        // name over, and the resumed connection is told REPLACED, as any older session is.
        let mut sim = sim_with(|_| {});
        let mut ann = player(&mut sim, "ann", &["lobby"]);
        sim.disconnect(ann.conn);
        sim.step();
        let login = sim.connect();
        let back = sim.connect();
        sim.clear(back);
        // In one tick: the login goes to the database, the resume is done at once.
        sim.send(
            login,
            &C2sLogin {
                username: "ann".into(),
                password: String::new(),
                resumable: false,
            },
        );
        sim.send(
            back,
            &C2sSessionResume {
                session_token: ann.token.clone(),
                received: ann.received,
            },
        );
        sim.step();
        ann.conn = back;
        let inbox = decode(sim.take_all(back));
        resumed(&mut ann, inbox);
        sim.step();
        sim.step();
        check(&sim);
        assert_eq!(sim.world().session_of("ann"), Some(login));
        let told = decode(sim.take_all(ann.conn));
        assert!(
            matches!(told.last(), Some(S2cMessage::S2cError(e)) if e.code() == ErrorCode::Replaced),
            "{told:?}"
        );
        sim.step();
        assert!(sim.world().resume.is_empty());
        check(&sim);
    }

    #[test]
    fn bad_resumes_get_a_clear_error_and_leave_the_session_as_it_was() {
        let mut sim = sim();
        let mut ann = player(&mut sim, "ann", &["lobby"]);
        let bob = guest(&mut sim, "bob", &["lobby"]);
        sim.send(bob, &chat("lobby", "hi"));
        sim.step();
        hear(&mut sim, &mut ann);
        sim.send(ann.conn, &ping(ann.received));
        sim.step();
        hear(&mut sim, &mut ann);
        sim.disconnect(ann.conn);
        sim.step();
        sim.clear(bob);
        let attempt = |sim: &mut Sim<Chat>, token: &str, received: u64| {
            let conn = sim.connect();
            sim.clear(conn);
            sim.send(
                conn,
                &C2sSessionResume {
                    session_token: token.into(),
                    received,
                },
            );
            sim.step();
            error(&decode(sim.take_all(conn)))
        };
        let (code, reason) = attempt(&mut sim, "not a token", 0);
        assert_eq!(code, ErrorCode::BadRequest);
        assert!(reason.contains("32 hexadecimal"), "{reason}");
        let other = "0123456789abcdef0123456789abcdef";
        assert_eq!(attempt(&mut sim, other, 0).0, ErrorCode::SessionLost);
        let (code, reason) = attempt(&mut sim, &ann.token, ann.received + 5);
        assert_eq!(code, ErrorCode::BadRequest);
        assert!(reason.contains("more than the"), "{reason}");
        // The ping above acknowledged everything but the pong: fewer is behind it.
        let (code, reason) = attempt(&mut sim, &ann.token, ann.received - 2);
        assert_eq!(code, ErrorCode::BadRequest);
        assert!(reason.contains("already acknowledged"), "{reason}");
        // A connection logged in cannot take another session.
        sim.send(
            bob,
            &C2sSessionResume {
                session_token: ann.token.clone(),
                received: ann.received,
            },
        );
        sim.step();
        assert_eq!(
            error(&decode(sim.take_all(bob))).0,
            ErrorCode::AlreadyAuthenticated
        );
        // A session token is not an account token.
        let conn = sim.connect();
        sim.clear(conn);
        sim.send(
            conn,
            &C2sResume {
                token: ann.token.clone(),
                resumable: true,
            },
        );
        sim.step();
        sim.step();
        assert_eq!(
            error(&decode(sim.take_all(conn))).0,
            ErrorCode::InvalidToken
        );
        check(&sim);
        // And through it all the session waited, whole.
        let inbox = resume(&mut sim, &mut ann);
        resumed(&mut ann, inbox);
        assert_eq!(sim.world().resume.stats.refused, 4);
        check(&sim);
    }

    #[test]
    fn a_resume_storm_from_many_addresses_is_limited_per_address_and_holds_nothing() {
        let mut sim = sim();
        let ann = player(&mut sim, "ann", &["lobby"]);
        sim.disconnect(ann.conn);
        sim.step();
        let mut limited = 0;
        let mut lost = 0;
        // 30 addresses, 5 connections each, 5 bad tokens on each connection, all at once.
        let conns: Vec<SessionId> = (0..30u8)
            .flat_map(|a| (0..5u16).map(move |p| (a, p)))
            .map(|(a, p)| {
                sim.try_connect_from(SocketAddr::from(([10, 9, 0, a], 1000 + p)))
                    .expect("taken")
            })
            .collect();
        for (i, &conn) in conns.iter().enumerate() {
            sim.clear(conn);
            for j in 0..5 {
                sim.send(
                    conn,
                    &C2sSessionResume {
                        session_token: format!("{:032x}", i * 5 + j),
                        received: 0,
                    },
                );
            }
        }
        sim.step();
        for &conn in &conns {
            for m in decode(sim.take_all(conn)) {
                match m {
                    S2cMessage::S2cError(e) if e.code() == ErrorCode::SessionLost => lost += 1,
                    S2cMessage::S2cError(e) if e.code() == ErrorCode::RateLimited => limited += 1,
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(lost, 30 * 20, "each address is refused its first 20");
        assert_eq!(limited, 30 * 5, "then limited");
        assert!(sim.world().clients[&ann.session].away, "ann is untouched");
        assert_eq!(sim.world().resume.len(), 1);
        check(&sim);
    }

    #[test]
    fn what_away_sessions_hold_stays_within_each_bound_and_all_of_them_together() {
        let mut sim = sim_with(|c| {
            c.net.resume_buffer_bytes = 64 * 1024;
            c.net.resume_total_mib = 1;
        });
        let players: Vec<Player> = (0..40)
            .map(|i| player(&mut sim, &format!("player{i}"), &["lobby"]))
            .collect();
        let bob = guest(&mut sim, "bob", &["lobby"]);
        for p in &players {
            sim.disconnect(p.conn);
        }
        sim.step();
        assert_eq!(sim.world().resume.away(), 40);
        let long = "x".repeat(500);
        let mut most = 0;
        for _ in 0..80 {
            sim.send(bob, &chat("lobby", &long));
            sim.step();
            let held = sim.world().resume.held_bytes();
            assert!(held <= 1 << 20, "{held}");
            most = most.max(held);
            check(&sim);
        }
        // The total bound was reached (40 sessions × 80 lines × 500 bytes is more than 1 MiB),
        // and the sessions it overflowed ended.
        assert!(most > 900 * 1024, "{most}");
        let away = sim.world().resume.away();
        assert!(away < 40, "{away}");
        assert_eq!(sim.world().resume.stats.overflowed, 40 - away as u64);
        sim.take_all(bob);
    }

    #[test]
    fn a_connection_is_closed_once_whatever_closes_it_in_one_tick() {
        let mut sim = sim_with(|c| c.net.max_requests_per_sec = 5);
        let ann = player(&mut sim, "ann", &["lobby"]);
        // Stopped reading twice over, and flooding, all in one tick.
        let mut inputs = vec![
            crate::core::Input::SlowConsumer { session: ann.conn },
            crate::core::Input::SlowConsumer { session: ann.conn },
        ];
        for _ in 0..40 {
            inputs.push(crate::core::Input::Received {
                session: ann.conn,
                packet: net::Packet {
                    id: C2sPing::ID,
                    payload: Bytes::new(),
                },
            });
        }
        let output = sim.tick(inputs);
        let closes: Vec<_> = output
            .closes
            .iter()
            .filter(|(c, _)| *c == ann.conn)
            .collect();
        assert_eq!(closes.len(), 1, "{:?}", output.closes);
        sim.step();
        check(&sim);
        // One that stopped reading and whose connection ended in the same tick: nothing left to
        // close; it is away.
        let bob = player(&mut sim, "bob", &["lobby"]);
        let output = sim.tick(vec![
            crate::core::Input::SlowConsumer { session: bob.conn },
            crate::core::Input::Closed {
                session: bob.conn,
                reason: DisconnectReason::PeerClosed,
            },
        ]);
        assert!(output.closes.iter().all(|(c, _)| *c != bob.conn));
        assert!(sim.world().clients[&bob.session].away);
        check(&sim);
    }

    #[test]
    fn a_server_without_a_grace_window_gives_no_token_and_refuses_resumes() {
        let mut sim = sim_with(|c| c.net.resume_grace_secs = 0);
        let conn = sim.connect();
        sim.clear(conn);
        sim.send(
            conn,
            &C2sLogin {
                username: "ann".into(),
                password: String::new(),
                resumable: true,
            },
        );
        sim.step();
        sim.step();
        let result = sim.take::<S2cAuthResult>(conn).pop().unwrap();
        assert!(result.session_token.is_empty());
        sim.disconnect(conn);
        sim.step();
        assert_eq!(sim.world().session_of("ann"), None, "ends at once");
        let other = sim.connect();
        sim.clear(other);
        sim.send(
            other,
            &C2sSessionResume {
                session_token: "0123456789abcdef0123456789abcdef".into(),
                received: 0,
            },
        );
        sim.step();
        let (code, _) = error(&decode(sim.take_all(other)));
        assert_eq!(code, ErrorCode::SessionLost);
        assert_eq!(C2sSessionResume::ID, 2014);
    }
}
