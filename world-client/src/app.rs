//! The client's state and everything it decides, with no terminal, no socket and no clock.
//!
//! [`App`] takes what happens, each with the time it happened: a key ([`App::on_key`]), a
//! message from the server ([`App::on_server`]), the connection made or lost
//! ([`App::on_connected`], [`App::on_closed`]), and time passing ([`App::on_tick`], due at
//! [`App::next_deadline`]). Each returns the [`Action`]s for the caller to carry out: requests
//! to send, connecting again, saving or forgetting the token, quitting. So every rule (what a
//! command sends, when to reconnect, which rooms to rejoin, when to ping) is tested by feeding
//! an `App` and reading what it asks for.
//!
//! # Resumable sessions
//!
//! Every login asks for a session that survives a dropped connection (PROTOCOL.md, "Resuming
//! a session"). While the server grants one, the app counts the frames it receives after the
//! login's answer and the requests it sends after the login request, keeps each request until a
//! pong says the server processed it, and pings with what it received within [`ACK_INTERVAL`]
//! of frames arriving or a request going out. When the connection drops, or a ping goes
//! unanswered for [`STALL_TIMEOUT`], it connects again and sends `C2S_SessionResume` after the
//! welcome, and nothing else until the answer: on `S2C_SessionResumed` the missed frames follow
//! and the requests the server had not processed go again, in order; the rooms are still
//! joined. When the session cannot be taken back, it logs in again and rejoins the rooms, as
//! without one.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use net::Transport;
use protocol::world::{
    C2sChat, C2sLogin, C2sLogout, C2sPing, C2sRegister, C2sResume, C2sRoomJoin, C2sRoomLeave,
    C2sRoomList, C2sSessionResume, C2sWhisper, S2cAuthResult, S2cChat, S2cError, S2cPong,
    S2cRoomJoined, S2cRoomList, S2cRoomPresence, S2cSessionResumed, S2cWhisper,
};
use protocol::{C2sMessage, ErrorCode, S2cMessage};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::command::{self, Command, HELP, KEYS};
use crate::tokens::Saved;
use crate::url::ServerUrl;
use crate::words::{self, Closure};

/// How often a connected client pings: the server closes a connection silent for 60 s.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);
/// How soon a resumable session pings after frames arrive or a request goes out: the ping
/// tells the server what was received (it lets go of those frames), its pong says what was
/// processed (the client lets go of those requests). One ping is in flight at a time, so under
/// steady traffic this is about one ping a second.
pub const ACK_INTERVAL: Duration = Duration::from_secs(1);
/// How long a ping of a resumable session waits for its pong before the connection counts as
/// stalled: it is given up and the session taken back on a new one. Replies come in order, so
/// a pong waits behind the answers to earlier requests; a few seconds leave room for a slow
/// join while catching a dead connection long before TCP would.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a new connection may take to answer a resume: the set-up (TLS, WebSocket), the
/// welcome and `S2C_SessionResumed`. Past it the connection is given up and another tried.
pub const RESUME_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests a resumable session holds to send again: those sent and not yet confirmed by a
/// pong, and those typed while the session is away. Past it a new request is refused until
/// pongs confirm some. A request is one frame, at most the server's `max_packet_size`, so this
/// bounds the memory too (2 MiB at the default 8 KiB); a person typing never comes near it,
/// since a pong is due within [`STALL_TIMEOUT`].
pub const MAX_UNCONFIRMED: usize = 256;
/// The largest frame assumed before the server's welcome announces its own.
const DEFAULT_MAX_PACKET: usize = 8192;
/// The wait before the first attempt to connect again; it doubles with each failure.
pub const FIRST_RETRY: Duration = Duration::from_millis(500);
/// The longest wait between attempts to connect again.
pub const MAX_RETRY: Duration = Duration::from_secs(10);
/// Lines a tab keeps; older ones go.
pub const MAX_LINES: usize = 5000;

/// What the caller is asked to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send this request on the current connection.
    Send(C2sMessage),
    /// Open a new connection (dropping the current one, if any).
    Connect,
    /// Save this login's token for the server.
    SaveToken(Saved),
    /// Forget the token saved for the server.
    ForgetToken,
    /// Leave: restore the terminal and exit.
    Quit,
}

/// The login to make as soon as the client is connected, from the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StartLogin {
    /// A saved token if there is one, otherwise nothing (the person logs in).
    #[default]
    Auto,
    /// A guest login with this name (`--guest NAME`).
    Guest(String),
    /// The saved token, and say so when there is none (`--resume`).
    Resume,
}

/// The connection's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    /// Connecting: TCP, then TLS or the WebSocket upgrade if the URL says so.
    Connecting {
        /// 1 for the first attempt after a loss.
        attempt: u32,
    },
    /// Connected: frames flow.
    Online,
    /// Lost; connecting again at `at`.
    Waiting {
        /// The wait chosen.
        delay: Duration,
        /// When the next attempt starts.
        at: Instant,
        /// The number of the next attempt.
        attempt: u32,
    },
    /// Not connected and not trying again until told to (`/connect` or a login command).
    Offline(String),
}

/// The login's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Not logged in.
    LoggedOut,
    /// A login request is waiting for its answer; says which.
    Pending(String),
    /// Logged in.
    LoggedIn {
        /// As this username.
        username: String,
        /// As a guest.
        guest: bool,
    },
}

/// Where a resumable session stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The login request is sent: requests are counted from here, frames from its answer.
    LoggingIn,
    /// Logged in on this connection: frames and requests are counted.
    Live,
    /// The connection dropped: the session is to be taken back on the next one.
    Away,
    /// Connected again: `C2S_SessionResume` goes once the welcome arrives.
    AwaitingWelcome,
    /// `C2S_SessionResume` is sent: nothing else goes until its answer.
    Resuming,
}

/// A resumable session: what it takes to take it back after a dropped connection, with no gap
/// either way.
#[derive(Clone, Debug)]
struct Resumable {
    phase: Phase,
    /// The session token, from `S2C_AuthResult`; empty until then.
    token: String,
    /// The login's username and kind, from `S2C_AuthResult`.
    username: String,
    guest: bool,
    /// Frames received since `S2C_AuthResult` (every frame: pongs and errors too).
    received: u64,
    /// Requests sent since the login request (pings too): the number of the latest.
    sent: u64,
    /// Requests sent and not yet known to be processed, with their numbers, oldest first.
    /// Pings are counted but not kept: sent again, one would say nothing new.
    kept: VecDeque<(u64, C2sMessage)>,
    /// The rooms joined when the connection dropped: still joined on the server.
    rooms: BTreeSet<String>,
    /// While the missed frames come back.
    replay: Option<Replay>,
}

/// The frames missed while away, coming back after `S2C_SessionResumed`.
#[derive(Clone, Debug)]
struct Replay {
    /// Frames still to come.
    left: u64,
    /// Lines (chat, whispers, presence) among those that came.
    lines: usize,
    /// Requests sent again.
    resent: usize,
}

impl Resumable {
    fn logging_in() -> Resumable {
        Resumable {
            phase: Phase::LoggingIn,
            token: String::new(),
            username: String::new(),
            guest: false,
            received: 0,
            sent: 0,
            kept: VecDeque::new(),
            rooms: BTreeSet::new(),
            replay: None,
        }
    }

    /// Whether requests sent now are counted.
    fn counts_requests(&self) -> bool {
        matches!(self.phase, Phase::LoggingIn | Phase::Live)
    }

    /// Whether the session is away or being taken back: requests wait.
    fn is_away(&self) -> bool {
        matches!(
            self.phase,
            Phase::Away | Phase::AwaitingWelcome | Phase::Resuming
        )
    }

    /// The server processed the requests up to `processed`: they are let go.
    fn processed(&mut self, processed: u64) {
        while self.kept.front().is_some_and(|(n, _)| *n <= processed) {
            self.kept.pop_front();
        }
    }
}

/// Who to log in as again after a reconnect.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Identity {
    /// A guest with this name.
    Guest(String),
    /// The account of the saved token.
    Token,
}

/// One line of a tab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// When: the server's time for chat, the client's for the rest (microseconds since the
    /// Unix epoch).
    pub at_us: u64,
    /// What.
    pub kind: LineKind,
}

/// What a line says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineKind {
    /// A chat line of the room.
    Chat {
        /// Who said it.
        from: String,
        /// What.
        content: String,
        /// A stored line replayed on join.
        history: bool,
        /// Said by this client's user.
        mine: bool,
    },
    /// Someone joined or left the room.
    Presence {
        /// Who.
        username: String,
        /// Joined (or left).
        joined: bool,
    },
    /// A private line, to or from this client's user.
    Whisper {
        /// The sender.
        from: String,
        /// The receiver.
        to: String,
        /// What.
        content: String,
        /// Sent by this client's user (the server's echo).
        mine: bool,
    },
    /// Something the client says.
    Info(String),
    /// Something that went wrong.
    Error(String),
}

/// A tab: the status tab (always first) or a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tab {
    /// The room; `None` for the status tab.
    pub room: Option<String>,
    /// Its lines, oldest first.
    pub lines: VecDeque<Line>,
    /// The room's members, sorted.
    pub members: BTreeSet<String>,
    /// The room's capacity, from `S2C_RoomJoined`.
    pub capacity: u32,
    /// Whether this client is in the room now (not while disconnected).
    pub joined: bool,
    /// Lines that came while another tab was shown.
    pub unread: usize,
    /// Rows scrolled up from the bottom.
    pub scroll: usize,
    /// The server time of the latest chat line, to skip the history replayed on a rejoin.
    last_chat_us: u64,
}

impl Tab {
    fn new(room: Option<String>) -> Tab {
        Tab {
            room,
            lines: VecDeque::new(),
            members: BTreeSet::new(),
            capacity: 0,
            joined: false,
            unread: 0,
            scroll: 0,
            last_chat_us: 0,
        }
    }

    /// The tab's title: `status` or `#room`.
    pub fn title(&self) -> String {
        match &self.room {
            Some(room) => format!("#{room}"),
            None => "status".to_string(),
        }
    }

    fn push(&mut self, line: Line) {
        if self.lines.len() == MAX_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
        // Someone reading back keeps their place.
        if self.scroll > 0 {
            self.scroll += 1;
        }
    }
}

/// A password being typed.
#[derive(Clone, PartialEq, Eq)]
pub struct Prompt {
    /// What it is for.
    pub purpose: PromptPurpose,
    /// What has been typed (shown as `*`).
    pub secret: String,
}

impl std::fmt::Debug for Prompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prompt")
            .field("purpose", &self.purpose)
            .field("secret", &"<secret>")
            .finish()
    }
}

/// What a password prompt is for.
#[derive(Clone, PartialEq, Eq)]
pub enum PromptPurpose {
    /// The password of a new account.
    Register {
        /// The account.
        username: String,
    },
    /// The same again, to catch a typo.
    RegisterAgain {
        /// The account.
        username: String,
        /// The first entry.
        first: String,
    },
    /// The password of an account.
    Login {
        /// The account.
        username: String,
    },
}

impl std::fmt::Debug for PromptPurpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

impl PromptPurpose {
    /// The question shown before the masked entry.
    pub fn label(&self) -> String {
        match self {
            PromptPurpose::Register { username } => format!("new password for {username}: "),
            PromptPurpose::RegisterAgain { username, .. } => {
                format!("the password for {username} again: ")
            }
            PromptPurpose::Login { username } => format!("password for {username}: "),
        }
    }
}

/// The line being typed, and the lines typed before.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Input {
    /// The text.
    pub text: String,
    /// The cursor, in characters from the start.
    pub cursor: usize,
    history: Vec<String>,
    recall: Option<usize>,
}

impl Input {
    fn byte_at(&self, chars: usize) -> usize {
        self.text
            .char_indices()
            .nth(chars)
            .map_or(self.text.len(), |(i, _)| i)
    }

    fn insert(&mut self, c: char) {
        let at = self.byte_at(self.cursor);
        self.text.insert(at, c);
        self.cursor += 1;
    }

    fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            let at = self.byte_at(self.cursor);
            self.text.remove(at);
        }
    }

    fn delete(&mut self) {
        if self.cursor < self.text.chars().count() {
            let at = self.byte_at(self.cursor);
            self.text.remove(at);
        }
    }

    fn set(&mut self, text: String) {
        self.cursor = text.chars().count();
        self.text = text;
    }

    fn take(&mut self) -> String {
        self.cursor = 0;
        self.recall = None;
        let text = std::mem::take(&mut self.text);
        if self.history.last() != Some(&text) {
            self.history.push(text.clone());
        }
        text
    }

    fn recall(&mut self, older: bool) {
        let len = self.history.len();
        let next = match (self.recall, older) {
            (None, true) if len > 0 => Some(len - 1),
            (Some(i), true) => Some(i.saturating_sub(1)),
            (Some(i), false) if i + 1 < len => Some(i + 1),
            (Some(_), false) => {
                self.recall = None;
                self.set(String::new());
                return;
            }
            _ => return,
        };
        if let Some(i) = next {
            self.recall = Some(i);
            self.set(self.history[i].clone());
        }
    }
}

/// A message shown on its own line until the next command: the latest error or event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The text.
    pub text: String,
    /// Whether it is an error (shown in red).
    pub error: bool,
}

/// The client.
#[derive(Debug)]
pub struct App {
    /// The server's URL, as given.
    pub server: ServerUrl,
    /// What the connection speaks: from the URL, confirmed when the connection is set up.
    pub transport: Transport,
    /// The server's name, from its welcome.
    pub server_name: Option<String>,
    /// The connection.
    pub link: Link,
    /// The login.
    pub auth: Auth,
    /// The tabs; the first is the status tab.
    pub tabs: Vec<Tab>,
    /// The tab shown.
    pub current: usize,
    /// The line being typed.
    pub input: Input,
    /// A password being typed, instead of a line.
    pub prompt: Option<Prompt>,
    /// The latest error or event.
    pub notice: Option<Notice>,
    /// The round trip of the latest ping.
    pub rtt: Option<Duration>,
    identity: Option<Identity>,
    saved: Option<Saved>,
    /// A login asked for while not connected: sent once connected.
    queued_login: Option<C2sMessage>,
    /// The request of the pending login, to know which answer ends it.
    pending_login: Option<u16>,
    /// Rooms this user asked to join: their tab is shown when joined.
    joining: BTreeSet<String>,
    /// Rooms being joined again after a reconnect.
    rejoining: BTreeSet<String>,
    next_retry: Duration,
    /// Connections lost or failed since one last worked.
    failures: u32,
    next_ping: Option<Instant>,
    ping_seq: u32,
    ping_sent: Option<(u32, Instant)>,
    /// The latest failure of this outage: a failure said already is not added again.
    last_failure: Option<String>,
    /// The resumable session, if the login asked for one and the server granted it.
    session: Option<Resumable>,
    /// Requests typed while the session was away: sent once it is back (or logged in again).
    held: VecDeque<C2sMessage>,
    /// When the pending answer (a pong of a resumable session, or a resume) is due; past it,
    /// the connection is taken for stalled.
    answer_due: Option<Instant>,
    /// The time of the latest event: when a request is sent (on a key, which carries no time),
    /// the ping that confirms it is scheduled from here.
    clock: Option<Instant>,
    /// The largest frame the server takes, from its welcome.
    max_packet_size: usize,
    /// The server said REPLACED or LOGIN_TIMEOUT: do not connect again on its own.
    stay_offline: Option<String>,
    quitting: bool,
    page: usize,
    max_scroll: usize,
}

impl App {
    /// A client of `server` that will log in as `start` says, with the login saved for this
    /// server, if any. Returns it with its first actions (connect).
    pub fn new(server: ServerUrl, start: StartLogin, saved: Option<Saved>) -> (App, Vec<Action>) {
        let identity = match &start {
            StartLogin::Guest(name) => Some(Identity::Guest(name.clone())),
            StartLogin::Auto | StartLogin::Resume if saved.is_some() => Some(Identity::Token),
            _ => None,
        };
        let mut app = App {
            transport: server.transport,
            server,
            server_name: None,
            link: Link::Connecting { attempt: 1 },
            auth: Auth::LoggedOut,
            tabs: vec![Tab::new(None)],
            current: 0,
            input: Input::default(),
            prompt: None,
            notice: None,
            rtt: None,
            identity,
            saved,
            queued_login: None,
            pending_login: None,
            joining: BTreeSet::new(),
            rejoining: BTreeSet::new(),
            next_retry: FIRST_RETRY,
            failures: 0,
            next_ping: None,
            ping_seq: 0,
            ping_sent: None,
            last_failure: None,
            session: None,
            held: VecDeque::new(),
            answer_due: None,
            clock: None,
            max_packet_size: DEFAULT_MAX_PACKET,
            stay_offline: None,
            quitting: false,
            page: 10,
            max_scroll: 0,
        };
        app.info(format!(
            "world-client: connecting to {}. /help lists the commands.",
            app.server
        ));
        if start == StartLogin::Resume && app.saved.is_none() {
            app.error(format!(
                "--resume: no login is saved for {}; log in with /guest, /login or /register",
                app.server
            ));
        }
        (app, vec![Action::Connect])
    }

    /// The username logged in, if any.
    pub fn username(&self) -> Option<&str> {
        match &self.auth {
            Auth::LoggedIn { username, .. } => Some(username),
            _ => None,
        }
    }

    /// The tab shown.
    pub fn current_tab(&self) -> &Tab {
        &self.tabs[self.current]
    }

    /// The tab of `room`, if this client has one.
    pub fn room_tab(&self, room: &str) -> Option<&Tab> {
        self.tabs.iter().find(|t| t.room.as_deref() == Some(room))
    }

    /// Whether a token is saved for this server.
    pub fn has_saved_login(&self) -> bool {
        self.saved.is_some()
    }

    /// Tells the app how many rows of chat are visible, and how far up the current tab can
    /// scroll: what the last drawing found.
    pub fn set_view(&mut self, page: usize, max_scroll: usize) {
        self.page = page.max(1);
        self.max_scroll = max_scroll;
        let tab = &mut self.tabs[self.current];
        tab.scroll = tab.scroll.min(max_scroll);
    }

    /// When [`on_tick`](Self::on_tick) is next due: a reconnect, a ping, or the end of the
    /// wait for an answer.
    pub fn next_deadline(&self) -> Option<Instant> {
        let retry = match self.link {
            Link::Waiting { at, .. } => Some(at),
            _ => None,
        };
        let ping = self.next_ping.filter(|_| !self.ping_held());
        [retry, ping, self.answer_due].into_iter().flatten().min()
    }

    /// Time passed: connect again, ping, or give a stalled connection up, when due.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        self.clock = Some(now);
        let mut actions = Vec::new();
        if let Link::Waiting { at, attempt, .. } = self.link {
            if now >= at {
                self.link = Link::Connecting { attempt };
                actions.push(Action::Connect);
            }
        }
        if self.link == Link::Online && self.answer_due.is_some_and(|due| now >= due) {
            return self.stalled();
        }
        if let Some(due) = self.next_ping {
            if now >= due && self.link == Link::Online && !self.ping_held() {
                actions.push(self.ping(now));
            }
        }
        actions
    }

    /// Whether a due ping waits: nothing but the resume goes while a session is taken back,
    /// and a resumable session has one ping in flight at a time.
    fn ping_held(&self) -> bool {
        match &self.session {
            Some(s) if matches!(s.phase, Phase::AwaitingWelcome | Phase::Resuming) => true,
            Some(s) if s.phase == Phase::Live => self.ping_sent.is_some(),
            _ => false,
        }
    }

    fn ping(&mut self, now: Instant) -> Action {
        self.ping_seq = self.ping_seq.wrapping_add(1);
        self.ping_sent = Some((self.ping_seq, now));
        self.next_ping = Some(now + PING_INTERVAL);
        let received = match &mut self.session {
            Some(s) if s.counts_requests() => {
                s.sent += 1;
                if s.phase == Phase::Live {
                    self.answer_due = Some(now + STALL_TIMEOUT);
                }
                s.received
            }
            _ => 0,
        };
        Action::Send(C2sMessage::C2sPing(C2sPing {
            seq: self.ping_seq,
            client_time_us: protocol::now_us(),
            received,
        }))
    }

    /// A ping is due within [`ACK_INTERVAL`] of `at`, unless one is due sooner.
    fn confirm_soon(&mut self, at: Instant) {
        if let Some(due) = self.next_ping {
            self.next_ping = Some(due.min(at + ACK_INTERVAL));
        }
    }

    /// `request`, sent now: numbered and kept when the session is resumable, and a ping
    /// scheduled to learn when the server processed it.
    fn request(&mut self, request: C2sMessage) -> Action {
        if let Some(s) = self.session.as_mut().filter(|s| s.counts_requests()) {
            s.sent += 1;
            s.kept.push_back((s.sent, request.clone()));
            if let Some(at) = self.clock {
                self.confirm_soon(at);
            }
        }
        Action::Send(request)
    }

    /// Requests this client holds to send again, or to send once the session is back.
    fn unconfirmed(&self) -> usize {
        self.held.len() + self.session.as_ref().map_or(0, |s| s.kept.len())
    }

    /// The connection is made (frames may be sent; a TLS or WebSocket set-up may still be
    /// under way, and what is sent waits for it). Logs in as before, or as asked, or takes the
    /// session back once the welcome comes.
    pub fn on_connected(&mut self, now: Instant) -> Vec<Action> {
        self.clock = Some(now);
        self.link = Link::Online;
        self.stay_offline = None;
        self.next_ping = Some(now + PING_INTERVAL);
        if self.queued_login.is_some() {
            // A login asked for while away replaces the session.
            self.session = None;
        }
        if let Some(s) = self.session.as_mut().filter(|s| s.phase == Phase::Away) {
            s.phase = Phase::AwaitingWelcome;
            self.auth = Auth::Pending(format!("taking the session of {} back", s.username));
            self.answer_due = Some(now + RESUME_TIMEOUT);
            return Vec::new();
        }
        let login = match self.queued_login.take() {
            Some(login) => Some(login),
            None => self.login_again(),
        };
        match login {
            Some(login) => vec![self.start_login(login)],
            // The server waits a moment for a client's first bytes before it speaks first:
            // a ping ends that wait, and says the connection works.
            None => vec![self.ping(now)],
        }
    }

    /// The connection is set up and speaks `transport`.
    pub fn on_ready(&mut self, transport: Transport) {
        self.transport = transport;
    }

    /// What a lost connection takes with it. A resumable session stays, away, with the
    /// rooms it is in; a login still waiting for its answer goes.
    fn lose_connection(&mut self) {
        self.auth = Auth::LoggedOut;
        self.pending_login = None;
        self.next_ping = None;
        self.ping_sent = None;
        self.answer_due = None;
        self.rtt = None;
        self.rejoining.clear();
        let joined: BTreeSet<String> = self
            .tabs
            .iter()
            .filter(|t| t.joined)
            .filter_map(|t| t.room.clone())
            .collect();
        for tab in self.tabs.iter_mut().skip(1) {
            tab.joined = false;
        }
        match self.session.as_mut() {
            Some(s) if s.phase == Phase::LoggingIn => self.session = None,
            Some(s) => {
                if s.phase == Phase::Live {
                    s.rooms = joined;
                }
                s.phase = Phase::Away;
                s.replay = None;
            }
            None => {}
        }
    }

    /// No pong (or no answer to a resume) in time: the connection is given up, and a new one
    /// made at once (the session is taken back on it).
    fn stalled(&mut self) -> Vec<Action> {
        let waited = if self
            .session
            .as_ref()
            .is_some_and(|s| s.phase == Phase::Live)
        {
            STALL_TIMEOUT
        } else {
            RESUME_TIMEOUT
        };
        self.stalled_with(format!(
            "No answer from the server for {} s: connecting again.",
            waited.as_secs()
        ))
    }

    /// Gives the connection up, says `text`, and connects again at once.
    fn stalled_with(&mut self, text: String) -> Vec<Action> {
        self.lose_connection();
        self.failures += 1;
        self.link = Link::Connecting {
            attempt: self.failures,
        };
        self.error(text);
        vec![Action::Connect]
    }

    /// The connection ended (or could not be made): connect again after a while, unless the
    /// user quit, logged in elsewhere, or must change something first.
    pub fn on_closed(&mut self, closure: Closure, now: Instant) -> Vec<Action> {
        self.clock = Some(now);
        let was_online = self.link == Link::Online;
        self.lose_connection();
        if self.quitting {
            return Vec::new();
        }
        let said = words::closure_sentence(&closure);
        if let Some(why) = self.stay_offline.take() {
            // Replaced: the session ended on the server.
            self.session = None;
            self.error(format!("Disconnected: {said}. {why}"));
            self.link = Link::Offline(why);
            return Vec::new();
        }
        if closure.is_permanent() {
            self.error(format!(
                "Disconnected: {said}. Not retrying: /connect to try again."
            ));
            self.link = Link::Offline("the certificate is not trusted".to_string());
            return Vec::new();
        }
        // Attempts since the last connection that worked (a login or a ping answered): a
        // server that accepts and closes at once counts as failing too.
        self.failures += 1;
        let attempt = self.failures;
        let delay = self.next_retry;
        self.next_retry = (self.next_retry * 2).min(MAX_RETRY);
        self.link = Link::Waiting {
            delay,
            at: now + delay,
            attempt,
        };
        let text = format!(
            "{}: {said}. Connecting again in {:.1} s.",
            if was_online {
                "Disconnected"
            } else {
                "Not connected"
            },
            delay.as_secs_f64()
        );
        // A long outage fails the same way every few seconds: the line once, the notice and
        // the status line each time.
        if self.last_failure.as_deref() == Some(said.as_str()) {
            self.notice = Some(Notice { text, error: true });
        } else {
            self.last_failure = Some(said);
            self.error(text);
        }
        Vec::new()
    }

    /// A message from the server.
    pub fn on_server(&mut self, message: S2cMessage, now: Instant) -> Vec<Action> {
        self.clock = Some(now);
        let is_pong = matches!(message, S2cMessage::S2cPong(_));
        let is_line = matches!(
            message,
            S2cMessage::S2cChat(_) | S2cMessage::S2cWhisper(_) | S2cMessage::S2cRoomPresence(_)
        );
        let replayed = self.count_frame(is_pong, is_line, now);
        let actions = self.message(message, now);
        if let Some(replay) = replayed {
            self.replay_done(replay);
        }
        actions
    }

    /// A frame arrived: numbered when the session is resumable, and a ping scheduled to tell
    /// the server. Returns the replay when this frame was its last.
    fn count_frame(&mut self, is_pong: bool, is_line: bool, now: Instant) -> Option<Replay> {
        let s = self.session.as_mut().filter(|s| s.phase == Phase::Live)?;
        s.received += 1;
        let mut last = None;
        if let Some(replay) = s.replay.as_mut() {
            replay.left -= 1;
            replay.lines += usize::from(is_line);
            if replay.left == 0 {
                last = s.replay.take();
            }
        }
        // A pong alone is acknowledged by the next ping whenever it goes: acknowledging it
        // at once would ping forever.
        if !is_pong {
            self.confirm_soon(now);
        }
        last
    }

    /// The replay is over (or was empty): says what came back.
    fn replay_done(&mut self, replay: Replay) {
        let Replay { lines, resent, .. } = replay;
        let mut text = match lines {
            0 => "Reconnected; nothing was missed.".to_string(),
            1 => "Reconnected; 1 line from while you were away came back.".to_string(),
            n => format!("Reconnected; {n} lines from while you were away came back."),
        };
        match resent {
            0 => {}
            1 => text.push_str(" 1 request of yours was sent again."),
            n => text.push_str(&format!(" {n} requests of yours were sent again.")),
        }
        self.info(text);
    }

    fn message(&mut self, message: S2cMessage, now: Instant) -> Vec<Action> {
        match message {
            S2cMessage::S2cWelcome(welcome) => {
                // The outage, if any, is over.
                self.last_failure = None;
                if self.notice.as_ref().is_some_and(|n| n.error) {
                    self.notice = None;
                }
                self.info(format!(
                    "Connected to {} ({}, {}).",
                    if welcome.server_name.is_empty() {
                        "the server"
                    } else {
                        &welcome.server_name
                    },
                    self.server,
                    self.transport
                ));
                self.server_name = Some(welcome.server_name);
                if welcome.max_packet_size > 0 {
                    self.max_packet_size = welcome.max_packet_size as usize;
                }
                match self.session.as_mut() {
                    Some(s) if s.phase == Phase::AwaitingWelcome => {
                        s.phase = Phase::Resuming;
                        vec![Action::Send(C2sMessage::C2sSessionResume(
                            C2sSessionResume {
                                session_token: s.token.clone(),
                                received: s.received,
                            },
                        ))]
                    }
                    _ => Vec::new(),
                }
            }
            S2cMessage::S2cPong(pong) => {
                self.pong(pong, now);
                Vec::new()
            }
            S2cMessage::S2cAuthResult(result) => self.logged_in(result),
            S2cMessage::S2cSessionResumed(resumed) => self.resumed(resumed, now),
            S2cMessage::S2cError(error)
                if self
                    .session
                    .as_ref()
                    .is_some_and(|s| s.phase == Phase::Resuming) =>
            {
                self.resume_failed(error)
            }
            S2cMessage::S2cError(error) => self.server_error(error),
            S2cMessage::S2cRoomJoined(joined) => {
                self.joined(joined);
                Vec::new()
            }
            S2cMessage::S2cRoomLeft(left) => {
                self.joining.remove(&left.room);
                if let Some(i) = self.tab_index(&left.room) {
                    self.tabs.remove(i);
                    if self.current >= i && self.current > 0 {
                        self.current -= 1;
                    }
                }
                self.info(format!("You left #{}.", left.room));
                Vec::new()
            }
            S2cMessage::S2cRoomList(list) => {
                self.room_list(list);
                Vec::new()
            }
            S2cMessage::S2cRoomPresence(presence) => {
                self.presence(presence);
                Vec::new()
            }
            S2cMessage::S2cRoomMissed(missed) => {
                if let Some(i) = self.tab_index(&missed.room) {
                    self.tabs[i].push(Line {
                        at_us: protocol::now_us(),
                        kind: LineKind::Info(format!(
                            "Some lines said in #{} did not reach you.",
                            missed.room
                        )),
                    });
                }
                Vec::new()
            }
            S2cMessage::S2cChat(chat) => {
                self.chat(chat);
                Vec::new()
            }
            S2cMessage::S2cWhisper(whisper) => {
                self.whisper(whisper);
                Vec::new()
            }
        }
    }

    fn pong(&mut self, pong: S2cPong, now: Instant) {
        if let Some((seq, sent)) = self.ping_sent {
            if pong.seq == seq {
                self.rtt = Some(now.saturating_duration_since(sent));
                self.ping_sent = None;
                self.answer_due = None;
                // A round trip proves the connection works.
                self.next_retry = FIRST_RETRY;
                self.failures = 0;
            }
        }
        if let Some(s) = self.session.as_mut().filter(|s| s.phase == Phase::Live) {
            s.processed(pong.processed);
            // Requests the pong does not cover yet: the next ping asks again soon.
            if !s.kept.is_empty() {
                self.confirm_soon(now);
            }
        }
    }

    /// `S2C_SessionResumed`: the session is back on this connection. The missed frames
    /// follow; the requests the server had not processed go again, in order, then those
    /// typed meanwhile. The rooms are still joined.
    fn resumed(&mut self, resumed: S2cSessionResumed, now: Instant) -> Vec<Action> {
        let Some(s) = self.session.as_mut().filter(|s| s.phase == Phase::Resuming) else {
            return Vec::new();
        };
        s.phase = Phase::Live;
        s.processed(resumed.processed);
        // Numbering goes on from what the server processed: the requests after it go again.
        s.sent = resumed.processed;
        let again: Vec<C2sMessage> = s.kept.drain(..).map(|(_, r)| r).collect();
        let missed = resumed.sent.saturating_sub(s.received);
        let replay = Replay {
            left: missed,
            lines: 0,
            resent: again.len(),
        };
        if missed > 0 {
            s.replay = Some(replay.clone());
        }
        let rooms = s.rooms.clone();
        self.auth = Auth::LoggedIn {
            username: resumed.username,
            guest: resumed.guest,
        };
        self.answer_due = None;
        self.ping_sent = None;
        self.next_retry = FIRST_RETRY;
        self.failures = 0;
        self.last_failure = None;
        self.next_ping = Some(now + ACK_INTERVAL);
        let mut actions = Vec::new();
        for request in again {
            actions.push(self.request(request));
        }
        for room in rooms {
            match self.tab_index(&room) {
                Some(i) => self.tabs[i].joined = true,
                // Its tab was closed while away: the session is still in it.
                None => actions.push(self.request(C2sMessage::C2sRoomLeave(C2sRoomLeave { room }))),
            }
        }
        while let Some(request) = self.held.pop_front() {
            actions.push(self.request(request));
        }
        if missed == 0 {
            self.replay_done(replay);
        }
        actions
    }

    /// The login that logs this client in again as who it was: its guest name, or its saved
    /// token; `None` when it has neither.
    fn login_again(&self) -> Option<C2sMessage> {
        match &self.identity {
            Some(Identity::Guest(name)) => Some(guest_login(name)),
            Some(Identity::Token) => self.saved.as_ref().map(|saved| {
                C2sMessage::C2sResume(C2sResume {
                    token: saved.token.clone(),
                    ..Default::default()
                })
            }),
            None => None,
        }
    }

    /// The resume was refused (`SESSION_LOST`, or any other error): log in again as before a
    /// resumable session, and rejoin the rooms.
    fn resume_failed(&mut self, error: S2cError) -> Vec<Action> {
        let lost = self.session.take();
        self.answer_due = None;
        self.auth = Auth::LoggedOut;
        let unsure = lost.as_ref().is_some_and(|s| !s.kept.is_empty());
        let mut text = if ErrorCode::try_from(error.code) == Ok(ErrorCode::SessionLost) {
            "The session ended on the server while you were away".to_string()
        } else {
            format!(
                "The session could not be taken back ({})",
                words::error_sentence(error.code, &error.reason, 0)
            )
        };
        text.push_str(": logging in again; some lines may have been missed.");
        if unsure {
            text.push_str(
                " What you sent just before the connection dropped may not have arrived.",
            );
        }
        self.error(text);
        match self.login_again() {
            Some(login) => vec![self.start_login(login)],
            None => {
                self.error("Log in again: /guest NAME, /login NAME or /register NAME.".into());
                Vec::new()
            }
        }
    }

    /// An error of the caller's: a token that could not be saved, a request not sent.
    pub fn report_error(&mut self, text: String) {
        self.error(text);
    }

    /// A request could not be written (the connection broke before its end was reported).
    /// A resumable session gives the connection up and is taken back on a new one, where
    /// what the server did not process goes again; otherwise the person is told.
    pub fn on_send_failed(&mut self, why: String) -> Vec<Action> {
        let resumable = self
            .session
            .as_ref()
            .is_some_and(|s| matches!(s.phase, Phase::Live | Phase::Resuming));
        if resumable && self.link == Link::Online {
            return self.stalled_with(format!("The connection broke ({why}): connecting again."));
        }
        if self.session.as_ref().is_some_and(Resumable::is_away) {
            // Given up already: what was not sent goes again once the session is back.
            return Vec::new();
        }
        self.error(format!("The request was not sent: {why}."));
        Vec::new()
    }

    /// A frame the client could not read (a newer server's message, say).
    pub fn on_undecodable(&mut self, why: String, now: Instant) {
        self.clock = Some(now);
        if let Some(replay) = self.count_frame(false, false, now) {
            self.replay_done(replay);
        }
        self.push_current(LineKind::Info(format!(
            "(a message from the server this client cannot read: {why})"
        )));
    }

    fn logged_in(&mut self, result: S2cAuthResult) -> Vec<Action> {
        let mut actions = Vec::new();
        self.pending_login = None;
        match self.session.as_mut() {
            // Frames are counted from the next one.
            Some(s) if s.phase == Phase::LoggingIn && !result.session_token.is_empty() => {
                s.phase = Phase::Live;
                s.token = result.session_token.clone();
                s.username = result.username.clone();
                s.guest = result.guest;
            }
            // The server keeps no sessions.
            _ => self.session = None,
        }
        self.next_retry = FIRST_RETRY;
        self.failures = 0;
        self.auth = Auth::LoggedIn {
            username: result.username.clone(),
            guest: result.guest,
        };
        if result.guest {
            self.identity = Some(Identity::Guest(result.username.clone()));
            self.info(format!("Logged in as {} (guest).", result.username));
        } else {
            self.identity = Some(Identity::Token);
            self.info(format!("Logged in as {}.", result.username));
            if !result.token.is_empty() {
                let saved = Saved {
                    username: result.username,
                    token: result.token,
                };
                if self.saved.as_ref() != Some(&saved) {
                    self.saved = Some(saved.clone());
                    actions.push(Action::SaveToken(saved));
                }
            }
        }
        // The rooms this client was in before the connection was lost: only the lines since
        // the last one it has come back (the server says when some of them are gone).
        let rooms: Vec<(String, u64)> = self
            .tabs
            .iter()
            .filter(|t| !t.joined)
            .filter_map(|t| Some((t.room.clone()?, t.last_chat_us)))
            .collect();
        for (room, since_us) in rooms {
            self.rejoining.insert(room.clone());
            actions.push(self.request(C2sMessage::C2sRoomJoin(C2sRoomJoin { room, since_us })));
        }
        // What was typed while the connection was down.
        while let Some(request) = self.held.pop_front() {
            actions.push(self.request(request));
        }
        actions
    }

    fn server_error(&mut self, error: S2cError) -> Vec<Action> {
        let mut actions = Vec::new();
        let code = ErrorCode::try_from(error.code).ok();
        let request = u16::try_from(error.request_id).ok();
        if request.is_some() && request == self.pending_login {
            self.pending_login = None;
            self.auth = Auth::LoggedOut;
            self.session = None;
            match self.held.len() {
                0 => {}
                1 => self.error("The line typed while disconnected was not sent.".into()),
                n => self.error(format!(
                    "The {n} lines typed while disconnected were not sent."
                )),
            }
            self.held.clear();
        }
        match code {
            Some(ErrorCode::Replaced) => {
                // The session ended: there is nothing to take back, nor a pong to wait for.
                self.session = None;
                self.answer_due = None;
                self.stay_offline = Some(
                    "Replaced by a login from somewhere else: /connect to come back.".to_string(),
                );
            }
            Some(ErrorCode::LoginTimeout) => {
                self.stay_offline = Some("Log in (or /connect) to connect again.".to_string());
            }
            Some(ErrorCode::InvalidToken) => {
                if self.identity == Some(Identity::Token) {
                    self.identity = None;
                }
                if self.saved.take().is_some() {
                    actions.push(Action::ForgetToken);
                }
            }
            _ => {}
        }
        self.error(words::error_sentence(
            error.code,
            &error.reason,
            error.request_id,
        ));
        actions
    }

    fn joined(&mut self, joined: S2cRoomJoined) {
        let rejoin = self.rejoining.remove(&joined.room);
        let asked = self.joining.remove(&joined.room);
        let index = match self.tab_index(&joined.room) {
            Some(i) => i,
            None => {
                self.tabs.push(Tab::new(Some(joined.room.clone())));
                self.tabs.len() - 1
            }
        };
        let tab = &mut self.tabs[index];
        tab.members = joined.members.iter().cloned().collect();
        tab.capacity = joined.capacity;
        tab.joined = true;
        let count = tab.members.len();
        let line = if rejoin {
            format!("Back in #{} ({count} here).", joined.room)
        } else {
            format!(
                "You joined #{} ({count} of {} places taken).",
                joined.room, joined.capacity
            )
        };
        tab.push(Line {
            at_us: protocol::now_us(),
            kind: LineKind::Info(line),
        });
        if asked || !rejoin {
            self.show(index);
        }
    }

    fn room_list(&mut self, list: S2cRoomList) {
        if list.rooms.is_empty() {
            self.info("No room has members.".to_string());
            return;
        }
        let width = list.rooms.iter().map(|r| r.name.len()).max().unwrap_or(0) + 1;
        let n = list.rooms.len();
        self.info(format!(
            "{n} {} with members:",
            if n == 1 { "room" } else { "rooms" }
        ));
        for room in list.rooms {
            let mark = if self.room_tab(&room.name).is_some_and(|t| t.joined) {
                "  (you are in)"
            } else {
                ""
            };
            self.info(format!(
                "  {:<width$}  {} of {} members{mark}",
                format!("#{}", room.name),
                room.members,
                room.capacity
            ));
        }
    }

    fn presence(&mut self, presence: S2cRoomPresence) {
        let Some(i) = self.tab_index(&presence.room) else {
            return;
        };
        let tab = &mut self.tabs[i];
        if presence.joined {
            tab.members.insert(presence.username.clone());
        } else {
            tab.members.remove(&presence.username);
        }
        tab.push(Line {
            at_us: protocol::now_us(),
            kind: LineKind::Presence {
                username: presence.username,
                joined: presence.joined,
            },
        });
    }

    fn chat(&mut self, chat: S2cChat) {
        let Some(i) = self.tab_index(&chat.room) else {
            return;
        };
        let mine = self.username() == Some(chat.from.as_str());
        let shown = i == self.current;
        let tab = &mut self.tabs[i];
        // After a rejoin the server replays the history: skip the lines this tab has.
        if chat.history && chat.server_time_us <= tab.last_chat_us {
            return;
        }
        tab.last_chat_us = tab.last_chat_us.max(chat.server_time_us);
        if !shown && !chat.history {
            tab.unread += 1;
        }
        tab.push(Line {
            at_us: chat.server_time_us,
            kind: LineKind::Chat {
                from: chat.from,
                content: chat.content,
                history: chat.history,
                mine,
            },
        });
    }

    fn whisper(&mut self, whisper: S2cWhisper) {
        let mine = self.username() == Some(whisper.from.as_str());
        self.push_current(LineKind::Whisper {
            from: whisper.from,
            to: whisper.to,
            content: whisper.content,
            mine,
        });
    }

    /// A key was pressed.
    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Action> {
        if key.kind == KeyEventKind::Release {
            return Vec::new();
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && key.code == KeyCode::Char('c') {
            return self.quit();
        }
        if self.prompt.is_some() {
            return self.prompt_key(key);
        }
        match key.code {
            KeyCode::Enter => {
                self.notice = None;
                let line = self.input.take();
                return self.submit(&line);
            }
            KeyCode::Tab => self.cycle(true),
            KeyCode::BackTab => self.cycle(false),
            KeyCode::Char('n') if ctrl => self.cycle(true),
            KeyCode::Char('p') if ctrl => self.cycle(false),
            KeyCode::Char('u') if ctrl => self.input.set(String::new()),
            KeyCode::Char('a') if ctrl => self.input.cursor = 0,
            KeyCode::Char('e') if ctrl => self.input.cursor = self.input.text.chars().count(),
            KeyCode::Char(c) if !ctrl => self.input.insert(c),
            KeyCode::Backspace => self.input.backspace(),
            KeyCode::Delete => self.input.delete(),
            KeyCode::Left => self.input.cursor = self.input.cursor.saturating_sub(1),
            KeyCode::Right => {
                self.input.cursor = (self.input.cursor + 1).min(self.input.text.chars().count())
            }
            KeyCode::Home => self.input.cursor = 0,
            KeyCode::End if self.input.text.is_empty() => self.tabs[self.current].scroll = 0,
            KeyCode::End => self.input.cursor = self.input.text.chars().count(),
            KeyCode::Up => self.input.recall(true),
            KeyCode::Down => self.input.recall(false),
            KeyCode::PageUp => {
                let (page, max) = (self.page, self.max_scroll);
                let tab = &mut self.tabs[self.current];
                tab.scroll = (tab.scroll + page).min(max);
            }
            KeyCode::PageDown => {
                let page = self.page;
                let tab = &mut self.tabs[self.current];
                tab.scroll = tab.scroll.saturating_sub(page);
            }
            KeyCode::Esc => {
                self.notice = None;
                self.input.set(String::new());
            }
            _ => {}
        }
        Vec::new()
    }

    /// Pasted text: typed into the line (newlines become spaces) or the password.
    pub fn on_paste(&mut self, text: &str) {
        for c in text.chars().map(|c| if c.is_control() { ' ' } else { c }) {
            match &mut self.prompt {
                Some(prompt) => prompt.secret.push(c),
                None => self.input.insert(c),
            }
        }
    }

    fn prompt_key(&mut self, key: KeyEvent) -> Vec<Action> {
        let Some(prompt) = &mut self.prompt else {
            return Vec::new();
        };
        match key.code {
            KeyCode::Char(c) => prompt.secret.push(c),
            KeyCode::Backspace => {
                prompt.secret.pop();
            }
            KeyCode::Esc => {
                self.prompt = None;
                self.info("Cancelled.".to_string());
            }
            KeyCode::Enter => {
                let Some(prompt) = self.prompt.take() else {
                    return Vec::new();
                };
                return self.password_entered(prompt);
            }
            _ => {}
        }
        Vec::new()
    }

    fn password_entered(&mut self, prompt: Prompt) -> Vec<Action> {
        if prompt.secret.is_empty() {
            self.error("No password typed: nothing was sent.".to_string());
            return Vec::new();
        }
        match prompt.purpose {
            PromptPurpose::Register { username } => {
                self.prompt = Some(Prompt {
                    purpose: PromptPurpose::RegisterAgain {
                        username,
                        first: prompt.secret,
                    },
                    secret: String::new(),
                });
                Vec::new()
            }
            PromptPurpose::RegisterAgain { username, first } => {
                if first != prompt.secret {
                    self.error(format!(
                        "The two passwords differ: /register {username} to try again."
                    ));
                    return Vec::new();
                }
                self.login(C2sMessage::C2sRegister(C2sRegister {
                    username,
                    password: prompt.secret,
                    ..Default::default()
                }))
            }
            PromptPurpose::Login { username } => self.login(C2sMessage::C2sLogin(C2sLogin {
                username,
                password: prompt.secret,
                ..Default::default()
            })),
        }
    }

    fn submit(&mut self, line: &str) -> Vec<Action> {
        let command = match command::parse(line) {
            None => return Vec::new(),
            Some(Err(usage)) => {
                self.error(usage.to_string());
                return Vec::new();
            }
            Some(Ok(command)) => command,
        };
        match command {
            Command::Say(text) => {
                let Some(room) = self.current_tab().room.clone() else {
                    self.error(
                        "This is the status tab: /join ROOM to chat, or Tab to a room's tab."
                            .to_string(),
                    );
                    return Vec::new();
                };
                let chat = C2sMessage::C2sChat(C2sChat {
                    room,
                    content: text,
                    sent_at_us: protocol::now_us(),
                });
                self.send(chat, "the line was not sent")
            }
            Command::Guest(name) => self.login(guest_login(&name)),
            Command::Register(username) => self.ask_password(PromptPurpose::Register { username }),
            Command::Login(username) => self.ask_password(PromptPurpose::Login { username }),
            Command::Resume => match &self.saved {
                Some(saved) => {
                    let resume = C2sMessage::C2sResume(C2sResume {
                        token: saved.token.clone(),
                        ..Default::default()
                    });
                    self.login(resume)
                }
                None => {
                    self.error(format!(
                        "No login is saved for {}: /login NAME or /register NAME.",
                        self.server
                    ));
                    Vec::new()
                }
            },
            Command::Logout => self.logout(),
            Command::Rooms => self.send(C2sMessage::C2sRoomList(C2sRoomList {}), "not asked"),
            Command::Join(room) => {
                if self.room_tab(&room).is_some_and(|t| t.joined) {
                    if let Some(i) = self.tab_index(&room) {
                        self.show(i);
                    }
                    return Vec::new();
                }
                self.joining.insert(room.clone());
                self.send(
                    C2sMessage::C2sRoomJoin(C2sRoomJoin {
                        room,
                        ..Default::default()
                    }),
                    "not joined",
                )
            }
            Command::Leave(room) => {
                let room = match room.or_else(|| self.current_tab().room.clone()) {
                    Some(room) => room,
                    None => {
                        self.error("usage: /leave ROOM (this is the status tab)".to_string());
                        return Vec::new();
                    }
                };
                // A room left while disconnected is not joined again (and a session taken
                // back leaves it then).
                if let Some(i) = self.tab_index(&room).filter(|&i| !self.tabs[i].joined) {
                    let away = self.session.as_ref().is_some_and(Resumable::is_away);
                    if self.link != Link::Online || away {
                        self.tabs.remove(i);
                        self.current = self.current.min(self.tabs.len() - 1);
                        self.info(format!("Closed the tab of #{room}."));
                        return Vec::new();
                    }
                }
                self.send(C2sMessage::C2sRoomLeave(C2sRoomLeave { room }), "not left")
            }
            Command::Room(name) => {
                let index = if name == "status" {
                    Some(0)
                } else {
                    self.tab_index(&name)
                };
                match index {
                    Some(i) => self.show(i),
                    None => self.error(format!("You have no tab for #{name}: /join {name}.")),
                }
                Vec::new()
            }
            Command::Whisper { to, text } => self.send(
                C2sMessage::C2sWhisper(C2sWhisper {
                    to,
                    content: text,
                    sent_at_us: protocol::now_us(),
                }),
                "the whisper was not sent",
            ),
            Command::Connect => {
                if self.link == Link::Online {
                    self.info("Connected already.".to_string());
                    return Vec::new();
                }
                self.next_retry = FIRST_RETRY;
                self.failures = 0;
                self.connect_now()
            }
            Command::Clear => {
                self.tabs[self.current].lines.clear();
                self.tabs[self.current].scroll = 0;
                Vec::new()
            }
            Command::Help => {
                self.info("Commands:".to_string());
                for (usage, what) in HELP {
                    self.info(format!("  {usage:<16} {what}"));
                }
                self.info("Keys:".to_string());
                for (keys, what) in KEYS {
                    self.info(format!("  {keys:<32} {what}"));
                }
                Vec::new()
            }
            Command::Quit => self.quit(),
        }
    }

    fn quit(&mut self) -> Vec<Action> {
        self.quitting = true;
        vec![Action::Quit]
    }

    fn ask_password(&mut self, purpose: PromptPurpose) -> Vec<Action> {
        if let Some(refusal) = self.login_refusal() {
            self.error(refusal);
            return Vec::new();
        }
        self.prompt = Some(Prompt {
            purpose,
            secret: String::new(),
        });
        Vec::new()
    }

    /// Why a login cannot start now, if it cannot.
    fn login_refusal(&self) -> Option<String> {
        match &self.auth {
            Auth::LoggedIn { username, .. } => Some(format!(
                "You are logged in as {username} already: /logout first."
            )),
            Auth::Pending(what) => Some(format!("Wait: {what}.")),
            Auth::LoggedOut => None,
        }
    }

    /// A login request: sent now when connected, otherwise once connected.
    fn login(&mut self, request: C2sMessage) -> Vec<Action> {
        if let Some(refusal) = self.login_refusal() {
            self.error(refusal);
            return Vec::new();
        }
        match self.link {
            Link::Online => vec![self.start_login(request)],
            Link::Connecting { .. } => {
                self.queued_login = Some(request);
                self.info("Logging in once connected.".to_string());
                Vec::new()
            }
            Link::Waiting { .. } | Link::Offline(_) => {
                self.queued_login = Some(request);
                self.info("Connecting now to log in.".to_string());
                self.connect_now()
            }
        }
    }

    fn start_login(&mut self, request: C2sMessage) -> Action {
        let what = match &request {
            C2sMessage::C2sLogin(l) if l.password.is_empty() => {
                format!("logging in as {} (guest)", l.username)
            }
            C2sMessage::C2sLogin(l) => format!("logging in as {}", l.username),
            C2sMessage::C2sRegister(r) => format!("registering {}", r.username),
            C2sMessage::C2sResume(_) => match &self.saved {
                Some(saved) => format!("logging in as {} with the saved token", saved.username),
                None => "logging in with the saved token".to_string(),
            },
            _ => "logging in".to_string(),
        };
        // Every login asks for a session that survives a dropped connection.
        let request = match request {
            C2sMessage::C2sLogin(login) => C2sMessage::C2sLogin(C2sLogin {
                resumable: true,
                ..login
            }),
            C2sMessage::C2sRegister(register) => C2sMessage::C2sRegister(C2sRegister {
                resumable: true,
                ..register
            }),
            C2sMessage::C2sResume(resume) => C2sMessage::C2sResume(C2sResume {
                resumable: true,
                ..resume
            }),
            other => other,
        };
        self.pending_login = Some(request.id());
        self.auth = Auth::Pending(what);
        self.session = Some(Resumable::logging_in());
        Action::Send(request)
    }

    fn connect_now(&mut self) -> Vec<Action> {
        self.stay_offline = None;
        match self.link {
            Link::Connecting { .. } | Link::Online => Vec::new(),
            _ => {
                self.link = Link::Connecting { attempt: 1 };
                vec![Action::Connect]
            }
        }
    }

    fn logout(&mut self) -> Vec<Action> {
        if self
            .session
            .as_ref()
            .is_some_and(|s| s.phase == Phase::Resuming)
        {
            // The session may be back with the answer: the logout goes after it.
            self.error("Wait: the session is being taken back; /logout once it is.".into());
            return Vec::new();
        }
        let mut actions = Vec::new();
        let was = self.username().map(str::to_string);
        if was.is_some() && self.link == Link::Online {
            actions.push(Action::Send(C2sMessage::C2sLogout(C2sLogout {})));
        }
        if self.saved.take().is_some() {
            actions.push(Action::ForgetToken);
        }
        self.identity = None;
        self.auth = Auth::LoggedOut;
        self.queued_login = None;
        self.session = None;
        self.held.clear();
        self.answer_due = None;
        self.joining.clear();
        self.rejoining.clear();
        self.tabs.truncate(1);
        self.current = 0;
        match was {
            Some(name) => self.info(format!(
                "Logged out {name}; the token saved for {} is forgotten.",
                self.server
            )),
            None => self.info(format!(
                "Not logged in; no token is saved for {} any more.",
                self.server
            )),
        }
        actions
    }

    /// `request` on the connection, or an error saying it was not sent and what happens. A
    /// resumable session keeps it to send again, or holds it while away.
    fn send(&mut self, request: C2sMessage, unsent: &str) -> Vec<Action> {
        let size = crate::conn::frame(&request).map_or(usize::MAX, |f| f.len());
        if size > self.max_packet_size {
            // The server would close the connection on it.
            self.error(format!(
                "Too long for the server (at most {} bytes a request): {unsent}.",
                self.max_packet_size
            ));
            return Vec::new();
        }
        if self.session.is_some() && self.unconfirmed() >= MAX_UNCONFIRMED {
            self.error(format!(
                "{MAX_UNCONFIRMED} requests wait for the server to confirm them: {unsent}."
            ));
            return Vec::new();
        }
        let away = self.session.as_ref().is_some_and(Resumable::is_away);
        if away && !matches!(self.link, Link::Offline(_)) {
            self.held.push_back(request);
            self.info("Not connected: this goes once the session is back.".to_string());
            return Vec::new();
        }
        if self.link == Link::Online {
            return vec![self.request(request)];
        }
        let state = match &self.link {
            Link::Connecting { .. } => "connecting".to_string(),
            Link::Waiting { delay, .. } => {
                format!("connecting again in {:.1} s", delay.as_secs_f64())
            }
            Link::Offline(why) => why.clone(),
            Link::Online => unreachable!("sent above"),
        };
        self.error(format!("Not connected ({state}): {unsent}."));
        Vec::new()
    }

    fn cycle(&mut self, forward: bool) {
        let n = self.tabs.len();
        let next = if forward {
            (self.current + 1) % n
        } else {
            (self.current + n - 1) % n
        };
        self.show(next);
    }

    fn show(&mut self, index: usize) {
        self.current = index.min(self.tabs.len() - 1);
        self.tabs[self.current].unread = 0;
    }

    fn tab_index(&self, room: &str) -> Option<usize> {
        self.tabs
            .iter()
            .position(|t| t.room.as_deref() == Some(room))
    }

    fn push_current(&mut self, kind: LineKind) {
        self.tabs[self.current].push(Line {
            at_us: protocol::now_us(),
            kind,
        });
    }

    fn info(&mut self, text: String) {
        self.push_current(LineKind::Info(text));
    }

    fn error(&mut self, text: String) {
        self.notice = Some(Notice {
            text: text.clone(),
            error: true,
        });
        self.push_current(LineKind::Error(text));
    }
}

fn guest_login(name: &str) -> C2sMessage {
    C2sMessage::C2sLogin(C2sLogin {
        username: name.to_string(),
        password: String::new(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::world::{RoomInfo, S2cPong, S2cRoomLeft, S2cWelcome};
    use protocol::MessageType;

    fn url() -> ServerUrl {
        ServerUrl::parse("tcp://127.0.0.1:7000").unwrap()
    }

    fn saved(username: &str) -> Saved {
        Saved {
            username: username.into(),
            token: "ab".repeat(32),
        }
    }

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn ctrl(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
    }

    /// Types `text` and presses Enter; returns the actions of the Enter.
    fn enter(app: &mut App, text: &str) -> Vec<Action> {
        for c in text.chars() {
            assert!(app.on_key(key(KeyCode::Char(c))).is_empty());
        }
        app.on_key(key(KeyCode::Enter))
    }

    fn send(message: C2sMessage) -> Vec<Action> {
        vec![Action::Send(message)]
    }

    fn auth(username: &str, guest: bool, token: &str) -> S2cMessage {
        S2cMessage::S2cAuthResult(S2cAuthResult {
            username: username.into(),
            user_id: u64::from(!guest),
            token: token.into(),
            guest,
            ..Default::default()
        })
    }

    fn joined(room: &str, members: &[&str]) -> S2cMessage {
        S2cMessage::S2cRoomJoined(S2cRoomJoined {
            room: room.into(),
            members: members.iter().map(|m| m.to_string()).collect(),
            capacity: 100,
        })
    }

    fn chat(room: &str, from: &str, content: &str, at: u64, history: bool) -> S2cMessage {
        S2cMessage::S2cChat(S2cChat {
            room: room.into(),
            from: from.into(),
            content: content.into(),
            sent_at_us: 0,
            server_time_us: at,
            history,
        })
    }

    fn error(code: ErrorCode, reason: &str, request: u16) -> S2cMessage {
        S2cMessage::S2cError(S2cError {
            code: code as i32,
            reason: reason.into(),
            request_id: u32::from(request),
            retry_after_ms: 0,
        })
    }

    fn last_line(app: &App) -> &LineKind {
        &app.current_tab().lines.back().expect("a line").kind
    }

    /// A guest `ann` connected and logged in, in `lobby` with `bob`.
    fn ann_in_lobby(now: Instant) -> App {
        let (mut app, _) = App::new(url(), StartLogin::Guest("ann".into()), None);
        app.on_connected(now);
        app.on_server(auth("ann", true, ""), now);
        assert_eq!(
            enter(&mut app, "/join lobby"),
            send(C2sMessage::C2sRoomJoin(C2sRoomJoin {
                room: "lobby".into(),
                ..Default::default()
            }))
        );
        app.on_server(joined("lobby", &["ann", "bob"]), now);
        app
    }

    #[test]
    fn a_guest_given_at_start_logs_in_as_soon_as_connected() {
        let now = Instant::now();
        let (mut app, first) = App::new(url(), StartLogin::Guest("ann".into()), None);
        assert_eq!(first, vec![Action::Connect]);
        assert_eq!(app.link, Link::Connecting { attempt: 1 });
        assert_eq!(
            app.on_connected(now),
            send(C2sMessage::C2sLogin(C2sLogin {
                username: "ann".into(),
                password: String::new(),
                resumable: true,
            }))
        );
        assert!(matches!(app.auth, Auth::Pending(_)));
        assert!(app.on_server(auth("ann", true, ""), now).is_empty());
        assert_eq!(
            app.auth,
            Auth::LoggedIn {
                username: "ann".into(),
                guest: true
            }
        );
    }

    #[test]
    fn without_a_login_the_first_request_is_a_ping_and_its_pong_gives_the_round_trip() {
        let now = Instant::now();
        let (mut app, _) = App::new(url(), StartLogin::Auto, None);
        let actions = app.on_connected(now);
        let [Action::Send(C2sMessage::C2sPing(ping))] = actions.as_slice() else {
            panic!("{actions:?}");
        };
        app.on_server(
            S2cMessage::S2cPong(S2cPong {
                seq: ping.seq,
                client_time_us: 0,
                server_time_us: 0,
                ..Default::default()
            }),
            now + Duration::from_millis(3),
        );
        assert_eq!(app.rtt, Some(Duration::from_millis(3)));
    }

    #[test]
    fn a_saved_token_resumes_at_start_and_resume_without_one_says_so() {
        let now = Instant::now();
        let (mut app, _) = App::new(url(), StartLogin::Auto, Some(saved("carol")));
        assert_eq!(
            app.on_connected(now),
            send(C2sMessage::C2sResume(C2sResume {
                token: "ab".repeat(32),
                resumable: true,
            }))
        );
        let (mut app, _) = App::new(url(), StartLogin::Resume, None);
        assert!(matches!(last_line(&app), LineKind::Error(e) if e.contains("no login is saved")));
        assert!(matches!(
            app.on_connected(now).as_slice(),
            [Action::Send(C2sMessage::C2sPing(_))]
        ));
        assert!(enter(&mut app, "/resume").is_empty());
        assert!(matches!(last_line(&app), LineKind::Error(e) if e.contains("No login is saved")));
    }

    #[test]
    fn register_asks_the_password_twice_masked_and_saves_the_token() {
        let now = Instant::now();
        let (mut app, _) = App::new(url(), StartLogin::Auto, None);
        app.on_connected(now);
        assert!(enter(&mut app, "/register carol").is_empty());
        assert!(app.prompt.is_some());
        assert!(enter(&mut app, "one-password").is_empty());
        assert!(
            app.input.text.is_empty(),
            "the password never reaches the input line"
        );
        assert!(matches!(
            app.prompt.as_ref().map(|p| &p.purpose),
            Some(PromptPurpose::RegisterAgain { .. })
        ));
        assert!(!format!("{:?}", app.prompt).contains("one-password"));
        assert!(enter(&mut app, "another-one").is_empty());
        assert!(matches!(last_line(&app), LineKind::Error(e) if e.contains("passwords differ")));
        assert!(app.prompt.is_none());
        enter(&mut app, "/register carol");
        enter(&mut app, "secret-pass");
        assert_eq!(
            enter(&mut app, "secret-pass"),
            send(C2sMessage::C2sRegister(C2sRegister {
                username: "carol".into(),
                password: "secret-pass".into(),
                resumable: true,
            }))
        );
        let token = "cd".repeat(32);
        assert_eq!(
            app.on_server(auth("carol", false, &token), now),
            vec![Action::SaveToken(Saved {
                username: "carol".into(),
                token
            })]
        );
        assert!(app.has_saved_login());
    }

    #[test]
    fn a_password_prompt_is_cancelled_with_esc_and_an_empty_password_is_not_sent() {
        let now = Instant::now();
        let (mut app, _) = App::new(url(), StartLogin::Auto, None);
        app.on_connected(now);
        enter(&mut app, "/login bob");
        app.on_key(key(KeyCode::Char('x')));
        app.on_key(key(KeyCode::Esc));
        assert!(app.prompt.is_none());
        enter(&mut app, "/login bob");
        // An empty password would be a guest login.
        assert!(app.on_key(key(KeyCode::Enter)).is_empty());
        assert!(matches!(last_line(&app), LineKind::Error(e) if e.contains("No password")));
    }

    #[test]
    fn logout_sends_logout_forgets_the_token_and_closes_the_room_tabs() {
        let now = Instant::now();
        let (mut app, _) = App::new(url(), StartLogin::Auto, Some(saved("carol")));
        app.on_connected(now);
        app.on_server(auth("carol", false, &"ab".repeat(32)), now);
        app.on_server(joined("lobby", &["carol"]), now);
        assert_eq!(app.tabs.len(), 2);
        assert_eq!(
            enter(&mut app, "/logout"),
            vec![
                Action::Send(C2sMessage::C2sLogout(C2sLogout {})),
                Action::ForgetToken
            ]
        );
        assert_eq!(app.auth, Auth::LoggedOut);
        assert_eq!((app.tabs.len(), app.current), (1, 0));
        assert!(!app.has_saved_login());
    }

    #[test]
    fn a_login_while_logged_in_or_pending_is_refused_here() {
        let now = Instant::now();
        let mut app = ann_in_lobby(now);
        assert!(enter(&mut app, "/guest other").is_empty());
        assert!(matches!(last_line(&app), LineKind::Error(e) if e.contains("/logout first")));
        let (mut app, _) = App::new(url(), StartLogin::Guest("ann".into()), None);
        app.on_connected(now);
        assert!(enter(&mut app, "/guest other").is_empty());
        assert!(matches!(last_line(&app), LineKind::Error(e) if e.starts_with("Wait:")));
    }

    #[test]
    fn a_failed_login_ends_the_pending_state_with_its_sentence() {
        let now = Instant::now();
        let (mut app, _) = App::new(url(), StartLogin::Auto, None);
        app.on_connected(now);
        enter(&mut app, "/login bob");
        enter(&mut app, "wrong-pass");
        assert!(matches!(app.auth, Auth::Pending(_)));
        app.on_server(
            error(
                ErrorCode::InvalidCredentials,
                "invalid credentials",
                C2sLogin::ID,
            ),
            now,
        );
        assert_eq!(app.auth, Auth::LoggedOut);
        let notice = app.notice.clone().unwrap();
        assert!(notice.error);
        assert!(notice
            .text
            .contains("Login failed: wrong username or password"));
    }

    #[test]
    fn chat_goes_to_the_current_room_and_the_status_tab_says_to_join_one() {
        let now = Instant::now();
        let (mut app, _) = App::new(url(), StartLogin::Guest("ann".into()), None);
        app.on_connected(now);
        app.on_server(auth("ann", true, ""), now);
        assert!(enter(&mut app, "hello").is_empty());
        assert!(matches!(last_line(&app), LineKind::Error(e) if e.contains("/join ROOM")));
        enter(&mut app, "/join lobby");
        app.on_server(joined("lobby", &["ann"]), now);
        assert_eq!(app.current_tab().title(), "#lobby");
        let actions = enter(&mut app, "hello");
        let [Action::Send(C2sMessage::C2sChat(line))] = actions.as_slice() else {
            panic!("{actions:?}");
        };
        assert_eq!(
            (line.room.as_str(), line.content.as_str()),
            ("lobby", "hello")
        );
        app.on_server(chat("lobby", "ann", "hello", 10, false), now);
        assert!(matches!(last_line(&app), LineKind::Chat { mine: true, .. }));
    }

    #[test]
    fn history_is_marked_and_not_shown_twice_after_a_rejoin() {
        let now = Instant::now();
        let mut app = ann_in_lobby(now);
        app.on_server(chat("lobby", "bob", "old", 5, true), now);
        app.on_server(chat("lobby", "bob", "new", 6, false), now);
        app.on_closed(Closure::Session(net::DisconnectReason::PeerClosed), now);
        app.on_tick(now + Duration::from_secs(1));
        app.on_connected(now);
        let rejoin = app.on_server(auth("ann", true, ""), now);
        assert_eq!(
            rejoin,
            send(C2sMessage::C2sRoomJoin(C2sRoomJoin {
                room: "lobby".into(),
                since_us: 6,
            })),
            "only what was said after the last line it has"
        );
        app.on_server(joined("lobby", &["ann", "bob"]), now);
        // A server that sends the whole history anyway: nothing is shown twice.
        app.on_server(chat("lobby", "bob", "old", 5, true), now);
        app.on_server(chat("lobby", "bob", "new", 6, true), now);
        let chats: Vec<(&str, bool)> = app.tabs[1]
            .lines
            .iter()
            .filter_map(|l| match &l.kind {
                LineKind::Chat {
                    content, history, ..
                } => Some((content.as_str(), *history)),
                _ => None,
            })
            .collect();
        assert_eq!(chats, [("old", true), ("new", false)]);
        assert!(matches!(last_line(&app), LineKind::Info(i) if i.starts_with("Back in #lobby")));
    }

    #[test]
    fn presence_keeps_the_member_list_and_says_who_came_and_went() {
        let now = Instant::now();
        let mut app = ann_in_lobby(now);
        let presence = |name: &str, joined: bool| {
            S2cMessage::S2cRoomPresence(S2cRoomPresence {
                room: "lobby".into(),
                username: name.into(),
                joined,
            })
        };
        app.on_server(presence("cid", true), now);
        app.on_server(presence("bob", false), now);
        let members: Vec<&str> = app.tabs[1].members.iter().map(String::as_str).collect();
        assert_eq!(members, ["ann", "cid"]);
        assert_eq!(
            last_line(&app),
            &LineKind::Presence {
                username: "bob".into(),
                joined: false
            }
        );
    }

    #[test]
    fn lines_that_never_came_from_another_node_are_said_in_their_room() {
        let now = Instant::now();
        let mut app = ann_in_lobby(now);
        app.on_server(
            S2cMessage::S2cRoomMissed(protocol::world::S2cRoomMissed {
                room: "lobby".into(),
            }),
            now,
        );
        assert!(
            matches!(last_line(&app), LineKind::Info(i) if i.starts_with("Some lines said in #lobby")),
            "{:?}",
            last_line(&app)
        );
    }

    #[test]
    fn lines_in_other_tabs_count_as_unread_until_shown() {
        let now = Instant::now();
        let mut app = ann_in_lobby(now);
        enter(&mut app, "/join dev");
        app.on_server(joined("dev", &["ann"]), now);
        assert_eq!(app.current, 2);
        app.on_server(chat("lobby", "bob", "psst", 7, false), now);
        assert_eq!(app.tabs[1].unread, 1);
        app.on_key(ctrl('p'));
        assert_eq!((app.current, app.tabs[1].unread), (1, 0));
        app.on_key(key(KeyCode::Tab));
        app.on_key(key(KeyCode::Tab));
        assert_eq!(app.current, 0);
        app.on_key(key(KeyCode::BackTab));
        assert_eq!(app.current, 2);
        app.on_key(ctrl('n'));
        assert_eq!(app.current, 0);
        enter(&mut app, "/room #lobby");
        assert_eq!(app.current, 1);
        enter(&mut app, "/room status");
        assert_eq!(app.current, 0);
        enter(&mut app, "/room nowhere");
        assert!(matches!(last_line(&app), LineKind::Error(e) if e.contains("no tab for #nowhere")));
    }

    #[test]
    fn leave_takes_the_current_room_and_its_tab_goes_when_the_server_confirms() {
        let now = Instant::now();
        let mut app = ann_in_lobby(now);
        assert_eq!(
            enter(&mut app, "/leave"),
            send(C2sMessage::C2sRoomLeave(C2sRoomLeave {
                room: "lobby".into()
            }))
        );
        app.on_server(
            S2cMessage::S2cRoomLeft(S2cRoomLeft {
                room: "lobby".into(),
            }),
            now,
        );
        assert_eq!((app.tabs.len(), app.current), (1, 0));
        assert!(enter(&mut app, "/leave").is_empty());
        assert!(matches!(last_line(&app), LineKind::Error(e) if e.contains("status tab")));
    }

    #[test]
    fn whispers_show_in_the_current_tab_and_the_echo_is_marked_mine() {
        let now = Instant::now();
        let mut app = ann_in_lobby(now);
        assert_eq!(
            enter(&mut app, "/w bob see you").len(),
            1,
            "a whisper is sent"
        );
        let whisper = |from: &str, to: &str| {
            S2cMessage::S2cWhisper(S2cWhisper {
                from: from.into(),
                to: to.into(),
                content: "see you".into(),
                sent_at_us: 0,
            })
        };
        app.on_server(whisper("ann", "bob"), now);
        assert!(matches!(
            last_line(&app),
            LineKind::Whisper { mine: true, .. }
        ));
        app.on_server(whisper("bob", "ann"), now);
        assert!(matches!(
            last_line(&app),
            LineKind::Whisper { mine: false, .. }
        ));
    }

    #[test]
    fn the_room_list_is_listed_with_counts() {
        let now = Instant::now();
        let mut app = ann_in_lobby(now);
        assert_eq!(
            enter(&mut app, "/rooms"),
            send(C2sMessage::C2sRoomList(C2sRoomList {}))
        );
        app.on_server(
            S2cMessage::S2cRoomList(S2cRoomList {
                rooms: vec![
                    RoomInfo {
                        name: "dev".into(),
                        members: 3,
                        capacity: 100,
                    },
                    RoomInfo {
                        name: "lobby".into(),
                        members: 2,
                        capacity: 100,
                    },
                ],
            }),
            now,
        );
        let texts: Vec<String> = app
            .current_tab()
            .lines
            .iter()
            .rev()
            .take(3)
            .filter_map(|l| match &l.kind {
                LineKind::Info(t) => Some(t.clone()),
                _ => None,
            })
            .collect();
        assert!(
            texts[0].contains("#lobby")
                && texts[0].contains("2 of 100")
                && texts[0].contains("you are in")
        );
        assert!(texts[1].contains("#dev") && texts[1].contains("3 of 100"));
        assert_eq!(texts[2], "2 rooms with members:");
    }

    #[test]
    fn a_lost_connection_is_made_again_with_doubling_waits_up_to_ten_seconds() {
        let start = Instant::now();
        let mut app = ann_in_lobby(start);
        app.on_closed(Closure::Session(net::DisconnectReason::PeerClosed), start);
        assert_eq!(app.auth, Auth::LoggedOut);
        assert!(!app.tabs[1].joined);
        let mut waits = Vec::new();
        for _ in 0..7 {
            let Link::Waiting { delay, at, .. } = app.link else {
                panic!("{:?}", app.link);
            };
            assert_eq!(app.next_deadline(), Some(at));
            assert!(app.on_tick(at - Duration::from_millis(1)).is_empty());
            waits.push(delay.as_millis());
            assert_eq!(app.on_tick(at), vec![Action::Connect]);
            app.on_closed(Closure::Connect("refused".into()), at);
        }
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 10000, 10000]);
        assert!(matches!(app.link, Link::Waiting { attempt: 8, .. }));
        // Connected again: the same guest, then the same rooms.
        let Link::Waiting { at, .. } = app.link else {
            unreachable!()
        };
        app.on_tick(at);
        assert_eq!(
            app.on_connected(at),
            send(C2sMessage::C2sLogin(C2sLogin {
                username: "ann".into(),
                password: String::new(),
                resumable: true,
            }))
        );
        assert_eq!(
            app.on_server(auth("ann", true, ""), at),
            send(C2sMessage::C2sRoomJoin(C2sRoomJoin {
                room: "lobby".into(),
                ..Default::default()
            }))
        );
        // The waits start over after a login.
        app.on_closed(Closure::Session(net::DisconnectReason::PeerClosed), at);
        assert!(matches!(app.link, Link::Waiting { delay, .. } if delay == FIRST_RETRY));
    }

    #[test]
    fn an_account_comes_back_with_its_token() {
        let now = Instant::now();
        let (mut app, _) = App::new(url(), StartLogin::Auto, None);
        app.on_connected(now);
        enter(&mut app, "/login dave");
        enter(&mut app, "secret-pass");
        let token = "ef".repeat(32);
        app.on_server(auth("dave", false, &token), now);
        app.on_closed(Closure::Session(net::DisconnectReason::PeerClosed), now);
        app.on_tick(now + MAX_RETRY);
        assert_eq!(
            app.on_connected(now),
            send(C2sMessage::C2sResume(C2sResume {
                token,
                resumable: true,
            }))
        );
    }

    #[test]
    fn replaced_stays_offline_until_connect_is_asked() {
        let now = Instant::now();
        let mut app = ann_in_lobby(now);
        app.on_server(error(ErrorCode::Replaced, "a newer login took it", 0), now);
        app.on_closed(Closure::Session(net::DisconnectReason::PeerClosed), now);
        assert!(matches!(app.link, Link::Offline(_)));
        assert_eq!(app.next_deadline(), None);
        assert!(enter(&mut app, "hello").is_empty());
        assert!(matches!(last_line(&app), LineKind::Error(e) if e.starts_with("Not connected")));
        assert_eq!(enter(&mut app, "/connect"), vec![Action::Connect]);
        assert_eq!(app.link, Link::Connecting { attempt: 1 });
    }

    #[test]
    fn a_bad_certificate_is_not_retried() {
        let now = Instant::now();
        let (mut app, _) = App::new(url(), StartLogin::Auto, None);
        app.on_closed(
            Closure::Session(net::DisconnectReason::Handshake(
                "TLS handshake failed: invalid peer certificate: UnknownIssuer".into(),
            )),
            now,
        );
        assert!(matches!(app.link, Link::Offline(_)));
        assert!(app.notice.unwrap().text.contains("--ca FILE"));
    }

    #[test]
    fn quitting_ignores_the_close_that_follows() {
        let now = Instant::now();
        let mut app = ann_in_lobby(now);
        assert_eq!(enter(&mut app, "/quit"), vec![Action::Quit]);
        assert!(app
            .on_closed(Closure::Session(net::DisconnectReason::Shutdown), now)
            .is_empty());
        let mut app = ann_in_lobby(now);
        assert_eq!(app.on_key(ctrl('c')), vec![Action::Quit]);
    }

    #[test]
    fn an_invalid_token_is_forgotten() {
        let now = Instant::now();
        let (mut app, _) = App::new(url(), StartLogin::Auto, Some(saved("carol")));
        app.on_connected(now);
        let actions = app.on_server(
            error(ErrorCode::InvalidToken, "unknown token", C2sResume::ID),
            now,
        );
        assert_eq!(actions, vec![Action::ForgetToken]);
        assert!(!app.has_saved_login());
        assert_eq!(app.auth, Auth::LoggedOut);
    }

    #[test]
    fn a_login_while_disconnected_connects_and_is_sent_once_connected() {
        let now = Instant::now();
        let (mut app, _) = App::new(url(), StartLogin::Auto, None);
        app.on_closed(Closure::Connect("refused".into()), now);
        assert_eq!(enter(&mut app, "/guest ann"), vec![Action::Connect]);
        assert_eq!(
            app.on_connected(now),
            send(C2sMessage::C2sLogin(C2sLogin {
                username: "ann".into(),
                password: String::new(),
                resumable: true,
            }))
        );
    }

    #[test]
    fn a_ping_goes_every_twenty_seconds_while_connected() {
        let now = Instant::now();
        let mut app = ann_in_lobby(now);
        assert_eq!(app.next_deadline(), Some(now + PING_INTERVAL));
        assert!(app.on_tick(now + PING_INTERVAL / 2).is_empty());
        let actions = app.on_tick(now + PING_INTERVAL);
        assert!(matches!(
            actions.as_slice(),
            [Action::Send(C2sMessage::C2sPing(_))]
        ));
        assert_eq!(app.next_deadline(), Some(now + PING_INTERVAL * 2));
        app.on_closed(Closure::Session(net::DisconnectReason::PeerClosed), now);
        assert!(!app
            .on_tick(now + PING_INTERVAL * 2 - Duration::from_millis(1))
            .iter()
            .any(|a| matches!(a, Action::Send(_))));
    }

    #[test]
    fn page_keys_scroll_within_what_the_view_allows() {
        let now = Instant::now();
        let mut app = ann_in_lobby(now);
        app.set_view(5, 12);
        app.on_key(key(KeyCode::PageUp));
        assert_eq!(app.current_tab().scroll, 5);
        app.on_key(key(KeyCode::PageUp));
        app.on_key(key(KeyCode::PageUp));
        assert_eq!(app.current_tab().scroll, 12);
        app.on_key(key(KeyCode::PageDown));
        assert_eq!(app.current_tab().scroll, 7);
        app.on_key(key(KeyCode::End));
        assert_eq!(app.current_tab().scroll, 0);
    }

    #[test]
    fn the_input_line_edits_and_recalls_earlier_lines() {
        let now = Instant::now();
        let mut app = ann_in_lobby(now);
        for c in "helo".chars() {
            app.on_key(key(KeyCode::Char(c)));
        }
        app.on_key(key(KeyCode::Left));
        app.on_key(key(KeyCode::Char('l')));
        assert_eq!(app.input.text, "hello");
        app.on_key(key(KeyCode::Home));
        app.on_key(key(KeyCode::Delete));
        assert_eq!(app.input.text, "ello");
        app.on_key(key(KeyCode::Enter));
        app.on_key(key(KeyCode::Up));
        assert_eq!(app.input.text, "ello");
        app.on_key(key(KeyCode::Down));
        assert_eq!(app.input.text, "");
        app.on_paste("two\nlines");
        assert_eq!(app.input.text, "two lines");
    }

    #[test]
    fn the_welcome_names_the_server_and_ends_an_outage_notice() {
        let now = Instant::now();
        let (mut app, _) = App::new(url(), StartLogin::Auto, None);
        app.on_closed(Closure::Connect("refused".into()), now);
        assert!(app.notice.is_some());
        app.on_tick(now + FIRST_RETRY);
        app.on_connected(now);
        app.on_server(
            S2cMessage::S2cWelcome(S2cWelcome {
                session_id: 1,
                protocol_version: 1,
                tick_ms: 50,
                max_packet_size: 8192,
                server_name: "world".into(),
            }),
            now,
        );
        assert_eq!(app.notice, None);
        assert_eq!(app.server_name.as_deref(), Some("world"));
        assert!(
            matches!(last_line(&app), LineKind::Info(i) if i.starts_with("Connected to world"))
        );
    }

    // Resumable sessions.

    const SESSION: &str = "0123456789abcdef0123456789abcdef";

    fn resumable_auth(username: &str, guest: bool) -> S2cMessage {
        S2cMessage::S2cAuthResult(S2cAuthResult {
            username: username.into(),
            user_id: u64::from(!guest),
            guest,
            session_token: SESSION.into(),
            ..Default::default()
        })
    }

    fn welcome() -> S2cMessage {
        S2cMessage::S2cWelcome(S2cWelcome {
            session_id: 2,
            protocol_version: 1,
            tick_ms: 50,
            max_packet_size: 8192,
            server_name: "world".into(),
        })
    }

    fn pong(seq: u32, processed: u64) -> S2cMessage {
        S2cMessage::S2cPong(S2cPong {
            seq,
            processed,
            ..Default::default()
        })
    }

    fn resumed(processed: u64, sent: u64) -> S2cMessage {
        S2cMessage::S2cSessionResumed(S2cSessionResumed {
            username: "ann".into(),
            user_id: 0,
            guest: true,
            processed,
            sent,
        })
    }

    fn say(room: &str, content: &str) -> C2sMessage {
        C2sMessage::C2sChat(C2sChat {
            room: room.into(),
            content: content.into(),
            sent_at_us: 0,
        })
    }

    /// The requests among `actions`, chat lines with their time left out (it is the clock's).
    fn requests(actions: &[Action]) -> Vec<C2sMessage> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(C2sMessage::C2sChat(c)) => Some(C2sMessage::C2sChat(C2sChat {
                    sent_at_us: 0,
                    ..c.clone()
                })),
                Action::Send(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    fn counts(app: &App) -> (u64, u64, Vec<u64>) {
        let s = app.session.as_ref().expect("a resumable session");
        (s.received, s.sent, s.kept.iter().map(|(n, _)| *n).collect())
    }

    /// A resumable guest `ann` in `lobby` with `bob`: the join is request 1, its answer
    /// frame 1.
    fn ann_resumable(now: Instant) -> App {
        let (mut app, _) = App::new(url(), StartLogin::Guest("ann".into()), None);
        app.on_connected(now);
        app.on_server(resumable_auth("ann", true), now);
        enter(&mut app, "/join lobby");
        app.on_server(joined("lobby", &["ann", "bob"]), now);
        app
    }

    /// Drops `app`'s connection at `at`, connects again and sends the resume; returns when
    /// the new connection is waiting for the resume's answer.
    fn drop_and_resume(app: &mut App, at: Instant) -> Vec<Action> {
        app.on_closed(Closure::Session(net::DisconnectReason::PeerClosed), at);
        let at = at + FIRST_RETRY;
        assert_eq!(app.on_tick(at), vec![Action::Connect]);
        assert!(
            app.on_connected(at).is_empty(),
            "nothing goes before the welcome"
        );
        app.on_server(welcome(), at)
    }

    #[test]
    fn every_login_asks_for_a_resumable_session() {
        let now = Instant::now();
        let (mut app, _) = App::new(url(), StartLogin::Auto, Some(saved("carol")));
        assert_eq!(
            app.on_connected(now),
            send(C2sMessage::C2sResume(C2sResume {
                token: "ab".repeat(32),
                resumable: true,
            }))
        );
        // A server that keeps no sessions answers with no token: nothing is counted.
        app.on_server(auth("carol", false, &"ab".repeat(32)), now);
        assert!(app.session.is_none());
        app.on_server(joined("lobby", &["carol"]), now);
        assert!(app.session.is_none());
    }

    #[test]
    fn frames_after_the_login_answer_and_requests_after_the_login_request_are_counted() {
        let now = Instant::now();
        let (mut app, _) = App::new(url(), StartLogin::Guest("ann".into()), None);
        app.on_connected(now);
        // Before the login's answer: not counted.
        app.on_server(welcome(), now);
        // A request right behind the login, before its answer, is number 1.
        assert_eq!(
            requests(&enter(&mut app, "/join lobby")),
            [C2sMessage::C2sRoomJoin(C2sRoomJoin {
                room: "lobby".into(),
                ..Default::default()
            })]
        );
        assert_eq!(counts(&app), (0, 1, vec![1]));
        app.on_server(resumable_auth("ann", true), now);
        assert_eq!(counts(&app), (0, 1, vec![1]));
        // Every frame after it counts: pongs, errors and frames this client cannot read too.
        app.on_server(joined("lobby", &["ann"]), now);
        app.on_server(chat("lobby", "bob", "hi", 7, false), now);
        app.on_server(error(ErrorCode::NotInRoom, "not in #x", C2sChat::ID), now);
        app.on_server(pong(77, 0), now);
        app.on_undecodable("unknown id 1999".into(), now);
        assert_eq!(counts(&app).0, 5);
        // Every request: pings too, though only the others are kept.
        enter(&mut app, "hello");
        let ping = app.on_tick(now + ACK_INTERVAL);
        assert!(matches!(
            ping.as_slice(),
            [Action::Send(C2sMessage::C2sPing(_))]
        ));
        assert_eq!(counts(&app), (5, 3, vec![1, 2]));
    }

    #[test]
    fn a_ping_carries_what_was_received_within_a_second_and_its_pong_lets_requests_go() {
        let now = Instant::now();
        let mut app = ann_resumable(now);
        assert_eq!(app.next_deadline(), Some(now + ACK_INTERVAL));
        let t1 = now + ACK_INTERVAL;
        let actions = app.on_tick(t1);
        let [Action::Send(C2sMessage::C2sPing(ping))] = actions.as_slice() else {
            panic!("{actions:?}");
        };
        assert_eq!(ping.received, 1);
        // One ping in flight at a time: the next waits for its pong, which is due within
        // the stall timeout.
        app.on_server(chat("lobby", "bob", "one", 8, false), t1);
        assert_eq!(app.next_deadline(), Some(t1 + STALL_TIMEOUT));
        assert!(app.on_tick(t1 + ACK_INTERVAL).is_empty());
        // The pong: the join and the ping were processed.
        let t2 = t1 + Duration::from_millis(1500);
        app.on_server(pong(ping.seq, 2), t2);
        assert_eq!(counts(&app), (3, 2, vec![]));
        assert_eq!(app.rtt, Some(Duration::from_millis(1500)));
        // The chat line came a while ago: the next ping is due now, and says 3 (the pong too).
        assert_eq!(app.next_deadline(), Some(t1 + ACK_INTERVAL));
        let actions = app.on_tick(t2);
        let [Action::Send(C2sMessage::C2sPing(next))] = actions.as_slice() else {
            panic!("{actions:?}");
        };
        assert_eq!(next.received, 3);
        // A pong alone does not call for another ping soon.
        app.on_server(pong(next.seq, 3), t2);
        assert_eq!(app.next_deadline(), Some(t2 + PING_INTERVAL));
    }

    #[test]
    fn after_a_drop_the_session_resume_goes_after_the_welcome_with_what_was_received() {
        let now = Instant::now();
        let mut app = ann_resumable(now);
        app.on_server(chat("lobby", "bob", "one", 8, false), now);
        let actions = drop_and_resume(&mut app, now);
        assert_eq!(
            actions,
            send(C2sMessage::C2sSessionResume(C2sSessionResume {
                session_token: SESSION.into(),
                received: 2,
            }))
        );
        assert!(matches!(&app.auth, Auth::Pending(what) if what.contains("ann")));
        assert!(!app.tabs[1].joined);
    }

    #[test]
    fn after_session_resumed_exactly_the_requests_the_server_did_not_process_go_again() {
        let now = Instant::now();
        let mut app = ann_resumable(now);
        let actions = app.on_tick(now + ACK_INTERVAL);
        let [Action::Send(C2sMessage::C2sPing(ping))] = actions.as_slice() else {
            panic!("{actions:?}");
        };
        app.on_server(pong(ping.seq, 2), now + ACK_INTERVAL);
        for line in ["one", "two", "three"] {
            enter(&mut app, line);
        }
        assert_eq!(counts(&app), (2, 5, vec![3, 4, 5]));
        drop_and_resume(&mut app, now + ACK_INTERVAL);
        // "one" was processed, and nothing was missed.
        let actions = app.on_server(resumed(3, 2), now + ACK_INTERVAL * 2);
        assert_eq!(
            requests(&actions),
            [say("lobby", "two"), say("lobby", "three")]
        );
        // Numbering goes on from what the server processed.
        assert_eq!(counts(&app), (2, 5, vec![4, 5]));
        // The rooms are still joined: nothing is joined again.
        assert!(app.tabs[1].joined);
        assert_eq!(
            app.auth,
            Auth::LoggedIn {
                username: "ann".into(),
                guest: true
            }
        );
        assert_eq!(
            last_line(&app),
            &LineKind::Info(
                "Reconnected; nothing was missed. 2 requests of yours were sent again.".into()
            )
        );
    }

    #[test]
    fn the_missed_frames_follow_the_answer_and_are_counted_on() {
        let now = Instant::now();
        let mut app = ann_resumable(now);
        drop_and_resume(&mut app, now);
        assert!(app.on_server(resumed(1, 4), now).is_empty());
        app.on_server(chat("lobby", "bob", "said while away", 9, false), now);
        app.on_server(pong(3, 1), now);
        app.on_server(chat("lobby", "bob", "and this", 10, false), now);
        assert_eq!(counts(&app).0, 4);
        assert_eq!(
            last_line(&app),
            &LineKind::Info("Reconnected; 2 lines from while you were away came back.".into())
        );
        let chats: Vec<&str> = app.tabs[1]
            .lines
            .iter()
            .filter_map(|l| match &l.kind {
                LineKind::Chat { content, .. } => Some(content.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(chats, ["said while away", "and this"]);
        // Live traffic is counted on.
        app.on_server(chat("lobby", "bob", "live", 11, false), now);
        assert_eq!(counts(&app).0, 5);
    }

    #[test]
    fn nothing_is_sent_between_the_session_resume_and_its_answer() {
        let now = Instant::now();
        let mut app = ann_resumable(now);
        let resume = drop_and_resume(&mut app, now);
        assert!(matches!(
            resume.as_slice(),
            [Action::Send(C2sMessage::C2sSessionResume(_))]
        ));
        let at = now + FIRST_RETRY;
        // Typed lines, a join, and time passing (a ping was due): all wait.
        assert!(enter(&mut app, "typed meanwhile").is_empty());
        assert!(enter(&mut app, "/join dev").is_empty());
        assert!(enter(&mut app, "/guest other").is_empty());
        assert!(enter(&mut app, "/logout").is_empty());
        assert!(matches!(last_line(&app), LineKind::Error(e) if e.starts_with("Wait:")));
        assert_eq!(app.next_deadline(), Some(at + RESUME_TIMEOUT));
        for wait in [
            ACK_INTERVAL,
            STALL_TIMEOUT,
            RESUME_TIMEOUT - Duration::from_millis(1),
        ] {
            assert!(app.on_tick(at + wait).is_empty(), "{wait:?}");
        }
        // The answer: then they go, in order.
        let actions = app.on_server(resumed(1, 1), at + Duration::from_secs(2));
        assert_eq!(
            requests(&actions),
            [
                say("lobby", "typed meanwhile"),
                C2sMessage::C2sRoomJoin(C2sRoomJoin {
                    room: "dev".into(),
                    ..Default::default()
                })
            ]
        );
        assert_eq!(counts(&app), (1, 3, vec![2, 3]));
    }

    #[test]
    fn session_lost_falls_back_to_logging_in_again_and_rejoining_the_rooms() {
        let now = Instant::now();
        let mut app = ann_resumable(now);
        enter(&mut app, "unconfirmed");
        drop_and_resume(&mut app, now);
        let actions = app.on_server(
            error(
                ErrorCode::SessionLost,
                "no session has this token",
                C2sSessionResume::ID,
            ),
            now,
        );
        assert_eq!(
            actions,
            send(C2sMessage::C2sLogin(C2sLogin {
                username: "ann".into(),
                password: String::new(),
                resumable: true,
            }))
        );
        assert_eq!(
            last_line(&app),
            &LineKind::Error(
                "The session ended on the server while you were away: logging in again; some \
                 lines may have been missed. What you sent just before the connection dropped \
                 may not have arrived."
                    .into()
            )
        );
        // A new session: the rooms are joined again.
        assert_eq!(
            app.on_server(resumable_auth("ann", true), now),
            send(C2sMessage::C2sRoomJoin(C2sRoomJoin {
                room: "lobby".into(),
                ..Default::default()
            }))
        );
        assert_eq!(counts(&app), (0, 1, vec![1]));
    }

    #[test]
    fn a_ping_unanswered_for_five_seconds_gives_the_connection_up_and_the_session_is_taken_back() {
        let now = Instant::now();
        let mut app = ann_resumable(now);
        let sent = now + ACK_INTERVAL;
        app.on_tick(sent);
        assert!(app
            .on_tick(sent + STALL_TIMEOUT - Duration::from_millis(1))
            .is_empty());
        assert_eq!(app.on_tick(sent + STALL_TIMEOUT), vec![Action::Connect]);
        assert_eq!(app.link, Link::Connecting { attempt: 1 });
        assert!(
            matches!(last_line(&app), LineKind::Error(e) if e.starts_with("No answer from the server for 5 s"))
        );
        let at = sent + STALL_TIMEOUT;
        assert!(app.on_connected(at).is_empty());
        assert_eq!(
            app.on_server(welcome(), at),
            send(C2sMessage::C2sSessionResume(C2sSessionResume {
                session_token: SESSION.into(),
                received: 1,
            }))
        );
        // No answer to the resume either: another connection.
        assert_eq!(app.on_tick(at + RESUME_TIMEOUT), vec![Action::Connect]);
    }

    #[test]
    fn a_request_that_cannot_be_written_gives_the_connection_up_and_goes_again() {
        let now = Instant::now();
        let mut app = ann_resumable(now);
        enter(&mut app, "lost in the write");
        assert_eq!(
            app.on_send_failed("session closed".into()),
            vec![Action::Connect]
        );
        // The requests after it in the same batch are not reported.
        assert!(app.on_send_failed("not connected".into()).is_empty());
        app.on_connected(now);
        app.on_server(welcome(), now);
        let actions = app.on_server(resumed(1, 1), now);
        assert_eq!(requests(&actions), [say("lobby", "lost in the write")]);
    }

    #[test]
    fn a_room_left_while_away_is_left_once_the_session_is_back() {
        let now = Instant::now();
        let mut app = ann_resumable(now);
        app.on_closed(Closure::Session(net::DisconnectReason::PeerClosed), now);
        assert!(enter(&mut app, "/leave lobby").is_empty());
        assert_eq!(app.tabs.len(), 1);
        app.on_tick(now + FIRST_RETRY);
        app.on_connected(now);
        app.on_server(welcome(), now);
        let actions = app.on_server(resumed(1, 1), now);
        assert_eq!(
            requests(&actions),
            [C2sMessage::C2sRoomLeave(C2sRoomLeave {
                room: "lobby".into()
            })]
        );
    }

    #[test]
    fn requests_waiting_for_the_server_are_bounded() {
        let now = Instant::now();
        let mut app = ann_resumable(now);
        for i in 1..MAX_UNCONFIRMED {
            assert_eq!(enter(&mut app, &format!("line {i}")).len(), 1, "line {i}");
        }
        assert!(enter(&mut app, "one too many").is_empty());
        assert!(
            matches!(last_line(&app), LineKind::Error(e) if e.contains("wait for the server")),
            "{:?}",
            last_line(&app)
        );
        // A pong lets them go.
        app.on_server(pong(0, MAX_UNCONFIRMED as u64), now);
        assert_eq!(enter(&mut app, "room again").len(), 1);
        // A request the server would close the connection on is not sent at all.
        assert!(enter(&mut app, &"x".repeat(9000)).is_empty());
        assert!(matches!(last_line(&app), LineKind::Error(e) if e.starts_with("Too long")));
    }
}
