//! The tick loop: one task owns every bot, with the same shape as the server's loop.
//!
//! Every `tick_ms` it
//!
//! 1. starts the connects this tick's share of the ramp-up allows,
//! 2. drains service events (a connect succeeded: spawn the session, send the login request
//!    of the run's [`AuthMode`]: guest login, register, password login or resume),
//! 3. drains session events (frames: advance the bot; closed: account for the loss),
//! 4. runs the bots' timers (login deadlines, chat lines, pings),
//! 5. flushes: one batch of frames per session, and the credits of the frames it processed,
//! 6. prints a progress line once a second and moves the run on through its phases.
//!
//! Nothing is shared with the network tasks but the bounded queues of `net`: no locks, no task
//! per bot, and a reception costs O(1) (see [`crate::ledger`]).
//!
//! # Failover
//!
//! With several servers (`client.servers`, `--server A,B,C`), a bot whose connection ends
//! (closed or reset by the server's side, as when its node dies) while it logs in or is in its
//! room logs in again on another node: the next in the list, then the one after, round the
//! list. It resumes with its token when it has one (the one a register or login run was
//! issued, or a resume run's), otherwise it logs in as it did at first (a guest under its own
//! name, an account with its password), and joins its room again. The first connect starts
//! at once; after a refused connect, a closed connection, a refused login or join, each next
//! one waits [`FAILOVER_BACKOFF_MIN`], doubling up to [`FAILOVER_BACKOFF_MAX`] (less a random
//! part of up to half, so that bots spread out), and a node that refuses the connection is
//! thus passed over for the next. A bot not back in its room `client.login_timeout_secs`
//! after its connection ended gives up: it *never recovered*, and the run fails. The time
//! from the end of its connection to its room joined again is its *recovery*. A session the
//! server ended on purpose (`REPLACED`, `SERVER_FULL`), and any session with a single server,
//! is a disconnect as before. Sending stops at the end of the run as before; a failover under
//! way then still completes during the drain (which waits for it).
//!
//! While a bot is away, what it misses is accounted for as the ledger's *in doubt*
//! deliveries (see [`crate::ledger`]): missed in failover when they do not come, not lost.
//!
//! This file is the bots' state machine and the loop; `progress.rs` writes the line of every
//! second, `summary.rs` turns the counters into the [`Report`] at the end.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use config::client::AuthMode;
use config::ClientConfig;
use hdrhistogram::Histogram;
use net::{
    ClientService, DisconnectReason, FrameError, Packet, SendError, ServiceEvent, Session,
    SessionConfig, SessionEvent, SessionId,
};
use protocol::world::{
    C2sChat, C2sLogin, C2sPing, C2sRegister, C2sResume, C2sRoomJoin, C2sSessionResume,
    S2cAuthResult, S2cChat,
};
use protocol::{ErrorCode, MessageType, S2cMessage};
use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod progress;
mod resume;
mod summary;

use resume::{DropKind, Resumable};

use crate::ledger::Ledger;
use crate::names::{parse_content, write_content, NameScheme, Names};
use crate::record::{Series, Settings, Totals};
use crate::report::{self, LatencySummary, LoginSummary, Report};
use crate::tokens::Tokens;
use crate::wire::{ChatView, Encoder};

/// Capacity of the queue of session events shared by all sessions: room for what `bots` bots
/// receive in about 400 ms at the defaults (or 65,536), so that a tick loop that falls behind
/// on a busy machine does not make the read tasks wait for room one event at a time, each
/// woken in turn, which costs the machine more than the events themselves (what a bot may hand
/// over is bounded by its credits anyway). Only what is queued takes memory.
pub fn session_event_queue(bots: usize) -> usize {
    bots.saturating_mul(EVENTS_PER_BOT).max(65_536)
}

/// Events a bot's share of the session queue holds.
const EVENTS_PER_BOT: usize = 32;
/// Capacity of the queue of connect outcomes.
const SERVICE_EVENT_QUEUE: usize = 4_096;
/// Frames a session may hand over before the tick loop gives their credits back. Credits come
/// back at every flush, so this is per tick: far above what a bot receives in one tick.
const INBOUND_CREDIT: usize = 256;
/// Disconnects logged at `info` one by one; the rest at `debug`, so that a dying server does
/// not flood the console with thousands of lines.
const DISCONNECTS_LOGGED: u64 = 20;
/// Time the graceful close of every session may take, on top of the sessions' linger.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Wait before the second connect of a failover; it doubles for each further one.
pub const FAILOVER_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between two connects of a failover.
pub const FAILOVER_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long the other nodes may still list a member of a dead node: the server's node
/// timeout (3 s), its heartbeat and a tick, rounded up. A room mate that failed over this
/// recently and is listed once in a bot's `S2C_RoomJoined` may be that stale entry, so the
/// bot counts it as seen only when it sees it join (presence).
const STALE_MEMBER: Duration = Duration::from_secs(5);

/// Converts `Instant`s to the protocol's microseconds since the Unix epoch, from one base
/// taken at start: latencies then do not jump with the wall clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base: Instant,
    base_us: u64,
}

impl Clock {
    /// A clock whose base is now.
    pub fn new() -> Self {
        Clock {
            base: Instant::now(),
            base_us: protocol::now_us(),
        }
    }

    /// `at` in microseconds since the Unix epoch.
    pub fn unix_us(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.base) {
            Some(after) => self.base_us + after.as_micros() as u64,
            None => self
                .base_us
                .saturating_sub(self.base.duration_since(at).as_micros() as u64),
        }
    }

    /// Now, in microseconds since the Unix epoch.
    pub fn now_us(&self) -> u64 {
        self.unix_us(Instant::now())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Where a bot is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Its connect has not been started.
    Idle,
    /// Connecting.
    Connecting,
    /// Connected, `C2S_Login` (or `C2S_Register`, `C2S_Resume`) sent.
    LoggingIn,
    /// Logged in, `C2S_RoomJoin` sent.
    Joining,
    /// In its room.
    Joined,
    /// Never made it into its room: connect or login failed.
    Failed,
    /// Was in its room, then its session ended.
    Gone,
    /// Failing over: its connection ended, its next connect (to another node) is due at
    /// [`Failover::retry_at`].
    Away,
    /// Its resumable session's connection dropped: its next connect, to take the session
    /// back, is due (see `resume.rs`). Still a member of its room.
    Dropped,
    /// Connected again, `C2S_SessionResume` sent.
    Resuming,
}

/// A bot on its way back to its room through another node (several servers only).
#[derive(Clone, Copy, Debug)]
struct Failover {
    /// When its connection ended.
    lost_at: Instant,
    /// When it gives up: `lost_at + client.login_timeout_secs`.
    deadline: Instant,
    /// Connects started so far.
    attempts: u32,
    /// When its next connect starts (in [`Phase::Away`]).
    retry_at: Instant,
    /// It was in its room when its connection ended (rather than on its way in).
    was_in: bool,
}

/// The connect tag and session id of connect number `connects` of bot `index`: stale events
/// of an earlier connect of the bot are told apart from those of its current one.
fn tag(index: u32, connects: u32) -> u64 {
    u64::from(index) | u64::from(connects) << 32
}

/// One bot. Its index in [`Swarm::bots`] is the low half of its connect tags and session ids
/// (see [`tag`]).
struct Bot {
    phase: Phase,
    name: Box<str>,
    /// The token to resume with: a resume run's, or the last one the server issued it.
    token: Option<Box<str>>,
    session: Option<Session>,
    /// The tag of its current connect and session.
    tag: u64,
    /// Connects started after its first (failovers).
    connects: u32,
    /// The index in [`Swarm::servers`] of the node it is on, or trying.
    node: usize,
    /// Its failover under way.
    failover: Option<Failover>,
    /// When its last failover began.
    last_lost: Option<Instant>,
    /// The message id of the login request of its current session.
    auth_id: u16,
    /// Counted in [`Counters::logged_in`] and [`Counters::joined`] (once per bot).
    ever_logged_in: bool,
    ever_joined: bool,
    /// Frames of this tick, sent as one batch at the flush.
    out: Vec<Bytes>,
    /// Frames processed this tick, whose credits go back at the flush.
    credits: usize,
    /// In the flush list of this tick.
    dirty: bool,
    /// Counted in its room's settled bots (joined, or failed for good).
    settled: bool,
    /// The client closed or aborted the session: its end is not a disconnect.
    closing: bool,
    /// A fatal error the server announced before closing (`REPLACED`, `SERVER_FULL`).
    fatal: Option<ErrorCode>,
    connect_started: Instant,
    connected_at: Instant,
    next_chat: Option<Instant>,
    next_ping: Option<Instant>,
    /// When to send its login request again: the server answered it UNAVAILABLE, with a
    /// `retry_after_ms` (its database away for a moment).
    retry_auth_at: Option<Instant>,
    ping_seq: u32,
    /// Members of its room it knows are in (itself included): from S2C_RoomJoined, then
    /// presence. Its room chats once every member knows every other (on a cluster, every
    /// node then knows every member, so no line can race a join across nodes).
    seen: u32,
    /// Its resumable session's counts (`bots.resumable`).
    resume: Option<Box<Resumable>>,
}

impl Bot {
    fn new(name: String, now: Instant) -> Self {
        Bot {
            phase: Phase::Idle,
            name: name.into_boxed_str(),
            token: None,
            session: None,
            tag: 0,
            connects: 0,
            node: 0,
            failover: None,
            last_lost: None,
            auth_id: 0,
            ever_logged_in: false,
            ever_joined: false,
            out: Vec::new(),
            credits: 0,
            dirty: false,
            settled: false,
            closing: false,
            fatal: None,
            connect_started: now,
            connected_at: now,
            next_chat: None,
            next_ping: None,
            retry_auth_at: None,
            ping_seq: 0,
            seen: 0,
            resume: None,
        }
    }
}

/// The phases of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunPhase {
    /// Connecting, logging in, chatting.
    Running,
    /// Sending stopped; receiving what is still in flight.
    Draining { since: Instant },
    /// Done: the ledger is closed.
    Finished,
}

/// Counters beside the ledger's.
#[derive(Default)]
struct Counters {
    started: u64,
    connected: u64,
    connect_failures: u64,
    connect_errors: BTreeMap<String, u64>,
    logged_in: u64,
    joined: u64,
    /// Bots in their rooms now.
    in_room: u64,
    login_failures: u64,
    login_errors: BTreeMap<String, u64>,
    disconnects: u64,
    disconnect_reasons: BTreeMap<String, u64>,
    history_received: u64,
    missed_notices: u64,
    pings_sent: u64,
    pongs_received: u64,
    errors: BTreeMap<String, u64>,
    error_total: u64,
    bad_frames: u64,
    /// Failovers completed: bots back in their room through another node.
    failovers: u64,
    /// Failovers under way.
    failing_over: u64,
    /// Why the connections ended that started failovers.
    failover_reasons: BTreeMap<String, u64>,
    /// Failovers that gave up.
    never_recovered: u64,
    /// Connects started by failovers.
    failover_connects: u64,
    /// Connections dropped, by how (chaos closed or stalled them, or they were lost).
    drops: BTreeMap<String, u64>,
    /// Sessions taken back.
    resumes: u64,
    /// Resumes under way.
    resuming: u64,
    /// Resumes that failed, and why.
    resume_failures: u64,
    resume_errors: BTreeMap<String, u64>,
    /// Connects started by resumes.
    resume_connects: u64,
    /// Frames the server sent again in resumes.
    replayed: u64,
    /// Requests the bots sent again after resumes.
    resent: u64,
    /// Logins that asked for a resumable session and were given none.
    not_resumable: u64,
}

/// Every bot of a run, and the loop that drives them. See the module docs.
pub struct Swarm {
    config: ClientConfig,
    auth: AuthMode,
    /// Tokens the server issued to bots of this run, by username.
    issued: Tokens,
    /// The servers; bot `i` on the `i mod n`-th.
    servers: Vec<SocketAddr>,
    names: Names,
    clock: Clock,
    bots: Vec<Bot>,
    room_names: Vec<String>,
    /// Bots of each room not yet settled; the room chats once this reaches 0.
    unsettled: Vec<u32>,
    /// Rooms whose bots chat already.
    chatting: Vec<bool>,
    ledger: Ledger,
    counters: Counters,
    latency: Histogram<u64>,
    /// One sample a second, for the progress line and the report.
    series: Series,
    /// The run's settings, with what the server's `S2C_Welcome` said.
    settings: Settings,
    rtt: Histogram<u64>,
    login: Histogram<u64>,
    auth_time: Histogram<u64>,
    /// Recovery of each failover: connection ended to room joined again.
    recovery: Histogram<u64>,
    /// Each resume: its connect started to `S2C_SessionResumed`.
    resume_latency: Histogram<u64>,
    /// Each drop: the connection dropped to `S2C_SessionResumed`.
    outage: Histogram<u64>,
    /// Connections chaos stalled, kept open and unread until then.
    stalled: std::collections::VecDeque<(Instant, Session)>,
    encoder: Encoder,
    chat: C2sChat,
    dirty: Vec<u32>,
    session_config: SessionConfig,
    /// The session config of a bot on each server (TCP, TLS, WebSocket), by server index.
    session_configs: Vec<SessionConfig>,
    session_tx: mpsc::Sender<SessionEvent>,
    tracker: TaskTracker,
    started_at: Instant,
    /// When the first bot connected: the run's clock.
    clock_start: Option<Instant>,
    /// When sending stopped.
    stopped_at: Option<Instant>,
    drain_secs: f64,
    cancelled: bool,
    phase: RunPhase,
    next_progress: Instant,
    ticks: u64,
    slow_ticks: u64,
    tick_max: Duration,
}

impl Swarm {
    /// A swarm for `config`, nothing started yet; `run_id` makes its names unique.
    pub fn new(
        config: ClientConfig,
        run_id: &str,
        session_tx: mpsc::Sender<SessionEvent>,
        tracker: TaskTracker,
    ) -> Result<Self, crate::RunError> {
        let bots = u32::try_from(config.client.bots).map_err(|_| crate::RunError::Config {
            key: "client.bots",
            value: config.client.bots.to_string(),
            rule: format!("at most {}", u32::MAX),
        })?;
        let auth = config
            .bots
            .auth_mode()
            .map_err(|_| crate::RunError::Config {
                key: "bots.auth",
                value: format!("{:?}", config.bots.auth),
                rule: format!("one of {}", AuthMode::ALL.map(AuthMode::as_str).join(", ")),
            })?;
        let bots_per_room = u32::try_from(config.bots.bots_per_room.max(1)).unwrap_or(u32::MAX);
        let names = Names::new(
            &config.bots.name_prefix,
            &config.bots.room_prefix,
            run_id,
            bots_per_room as usize,
        )
        .with_scheme(NameScheme::for_auth(auth));
        names.check(bots).map_err(|e| crate::RunError::Config {
            key: e.key,
            value: e.value,
            rule: e.rule,
        })?;
        let now = Instant::now();
        let mut ledger = Ledger::new(bots, bots_per_room);
        if config.bots.resumable || config.bots.chaos_per_min > 0.0 {
            // A resume that sent a line twice must show as such.
            ledger.track_order();
        }
        let rooms = u64::from(ledger.rooms());
        let room_names = (0..ledger.rooms())
            .map(|room| names.room(room * bots_per_room))
            .collect();
        let unsettled: Vec<u32> = (0..ledger.rooms())
            .map(|room| ledger.bots_of_room(room).len() as u32)
            .collect();
        let session_config = SessionConfig {
            max_packet_size: config.client.max_packet_size,
            inbound_credit: INBOUND_CREDIT,
            ..SessionConfig::default()
        };
        let session_configs = crate::transport::session_configs(
            &config.client,
            &config.client.targets(),
            &session_config,
        )?;
        Ok(Swarm {
            auth,
            issued: Tokens::new(),
            servers: config.client.targets(),
            bots: (0..bots)
                .map(|i| Bot::new(names.username(i), now))
                .collect(),
            room_names,
            chatting: vec![false; unsettled.len()],
            unsettled,
            ledger,
            names,
            clock: Clock::new(),
            counters: Counters::default(),
            latency: report::new_histogram(),
            series: Series::new(now),
            settings: Settings {
                bots_per_room: Some(config.bots.bots_per_room as u64),
                rooms: Some(rooms),
                chat_interval_ms: Some(config.bots.chat_interval_ms),
                message_size_bytes: Some(config.bots.message_size as u64),
                ping_interval_ms: Some(config.bots.ping_interval_ms),
                ..Settings::of(&config)
            },
            rtt: report::new_histogram(),
            login: report::new_histogram(),
            auth_time: report::new_histogram(),
            recovery: report::new_histogram(),
            resume_latency: report::new_histogram(),
            outage: report::new_histogram(),
            stalled: std::collections::VecDeque::new(),
            encoder: Encoder::new(),
            chat: C2sChat::default(),
            dirty: Vec::new(),
            session_config,
            session_configs,
            session_tx,
            tracker,
            started_at: now,
            clock_start: None,
            stopped_at: None,
            drain_secs: 0.0,
            cancelled: false,
            phase: RunPhase::Running,
            next_progress: now + Duration::from_secs(1),
            ticks: 0,
            slow_ticks: 0,
            tick_max: Duration::ZERO,
            config,
        })
    }

    /// How the bots log in.
    pub fn auth(&self) -> AuthMode {
        self.auth
    }

    /// Number of bots.
    pub fn bots(&self) -> usize {
        self.bots.len()
    }

    /// Gives each bot its token from `tokens` for a resume run; a bot left without one
    /// fails its login. Returns how many bots got a token.
    pub fn set_tokens(&mut self, tokens: &Tokens) -> usize {
        let mut found = 0;
        for bot in &mut self.bots {
            bot.token = tokens.get(&bot.name).map(Box::from);
            found += usize::from(bot.token.is_some());
        }
        found
    }

    /// Runs the whole swarm to its report. `shutdown` stops it early (it still drains).
    /// Also returns the tokens the server issued to bots that logged in to accounts.
    pub async fn run(
        mut self,
        mut session_rx: mpsc::Receiver<SessionEvent>,
        shutdown: CancellationToken,
    ) -> (Report, Tokens) {
        let (service_tx, mut service_rx) = mpsc::channel(SERVICE_EVENT_QUEUE);
        let connect_stop = CancellationToken::new();
        let service = crate::ramp::connector(
            &self.config,
            service_tx,
            connect_stop.clone(),
            self.tracker.clone(),
        );
        spdlog::info!(
            "swarm: run {}: {} {} bots against {}, {} per room, a line every {} ms",
            self.names.run_id(),
            self.bots.len(),
            self.auth,
            self.config.client.targets_text(),
            self.config.bots.bots_per_room,
            self.config.bots.chat_interval_ms
        );

        let tick = self.config.client.tick();
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        while self.phase != RunPhase::Finished {
            tokio::select! {
                _ = interval.tick() => {}
                _ = shutdown.cancelled(), if !self.cancelled => {}
            }
            let now = Instant::now();
            if shutdown.is_cancelled() && !self.cancelled {
                self.cancelled = true;
                spdlog::info!("swarm: stopping early: draining, then reporting");
            }
            if self.phase == RunPhase::Running {
                self.start_connects(&service, now);
            }
            while let Ok(event) = service_rx.try_recv() {
                self.on_service_event(event, now);
            }
            while let Ok(event) = session_rx.try_recv() {
                self.on_session_event(event);
            }
            self.run_timers(&service, now);
            self.flush();
            self.advance(now);
            if now >= self.next_progress {
                self.print_progress(now);
            }
            let took = now.elapsed();
            self.ticks += 1;
            self.tick_max = self.tick_max.max(took);
            if took > tick {
                self.slow_ticks += 1;
            }
        }

        connect_stop.cancel();
        let report = self.report();
        self.close_all(&mut session_rx, &mut service_rx).await;
        self.tracker.close();
        let linger = self.session_config.linger + CLOSE_GRACE;
        if tokio::time::timeout(linger, self.tracker.wait())
            .await
            .is_err()
        {
            spdlog::warn!("swarm: some network tasks did not end within {linger:?}");
        }
        (report, self.issued)
    }

    /// Starts the connects that the ramp-up allows by now.
    fn start_connects(&mut self, service: &ClientService, now: Instant) {
        let total = self.bots.len() as u64;
        if self.counters.started >= total || self.cancelled {
            return;
        }
        let per_sec = self.config.client.ramp_up_per_sec;
        let target = crate::ramp::due(self.started_at, now, per_sec, total);
        while self.counters.started < target {
            let index = self.counters.started as u32;
            let bot = &mut self.bots[index as usize];
            bot.phase = Phase::Connecting;
            bot.connect_started = now;
            bot.node = index as usize % self.servers.len();
            bot.tag = tag(index, 0);
            service.connect(self.servers[bot.node], bot.tag);
            self.counters.started += 1;
        }
    }

    fn on_service_event(&mut self, event: ServiceEvent, now: Instant) {
        match event {
            ServiceEvent::Connected { tag, stream } => {
                let Some(index) = self.bot_of(tag) else {
                    return;
                };
                let bot = &mut self.bots[index as usize];
                if bot.phase != Phase::Connecting || self.phase == RunPhase::Finished {
                    return;
                }
                let config = &self.session_configs[bot.node % self.session_configs.len()];
                let session = Session::spawn(
                    SessionId(tag),
                    stream,
                    config,
                    self.session_tx.clone(),
                    &self.tracker,
                );
                bot.session = Some(session);
                bot.connected_at = now;
                bot.closing = false;
                bot.fatal = None;
                if self.is_resuming(index) {
                    self.send_session_resume(index);
                    return;
                }
                let bot = &mut self.bots[index as usize];
                bot.phase = Phase::LoggingIn;
                if let Some(ping) = self.config.bots.ping_interval() {
                    bot.next_ping = Some(now + random_phase(ping));
                }
                if bot.failover.is_none() {
                    self.counters.connected += 1;
                }
                if self.clock_start.is_none() {
                    self.clock_start = Some(now);
                    spdlog::info!("swarm: first bot connected; the run's clock starts");
                }
                self.send_auth(index);
            }
            ServiceEvent::ConnectFailed { tag, error } => {
                let Some(index) = self.bot_of(tag) else {
                    return;
                };
                if self.bots[index as usize].phase != Phase::Connecting {
                    return;
                }
                if self.is_resuming(index) {
                    spdlog::debug!("swarm: bot {index} resuming: could not connect: {error}");
                    self.resume_later(index, now);
                    return;
                }
                if self.bots[index as usize].failover.is_some() {
                    spdlog::debug!(
                        "swarm: bot {index} failing over: {} refused it: {error}",
                        self.servers[self.bots[index as usize].node]
                    );
                    self.retry(index, now);
                    return;
                }
                spdlog::debug!("swarm: bot {index} could not connect: {error}");
                self.counters.connect_failures += 1;
                *self
                    .counters
                    .connect_errors
                    .entry(error.kind().to_string())
                    .or_default() += 1;
                self.bots[index as usize].phase = Phase::Failed;
                self.settle(index, now);
            }
            ServiceEvent::Accepted { .. } => {}
        }
    }

    /// Sends the login request of the run's auth mode; `C2S_Resume` needs the bot's token.
    /// A bot failing over resumes with its token when it has one, and otherwise logs in as
    /// at first (an account that a register run created, with its password).
    fn send_auth(&mut self, index: u32) {
        self.send_auth_request(index);
        if self.resumable() {
            // The requests after the login request are numbered from 1.
            self.bots[index as usize].resume = Some(Resumable::numbering());
        }
    }

    /// The login request of [`Swarm::send_auth`].
    fn send_auth_request(&mut self, index: u32) {
        let resumable = self.resumable();
        let bot = &self.bots[index as usize];
        let username = bot.name.to_string();
        if bot.failover.is_some() {
            let bot = &mut self.bots[index as usize];
            match (&bot.token, self.auth) {
                (Some(token), _) => {
                    let token = token.to_string();
                    bot.auth_id = C2sResume::ID;
                    self.queue(index, &C2sResume { token, resumable });
                }
                (None, auth) => {
                    bot.auth_id = C2sLogin::ID;
                    let password = self.password(auth);
                    self.queue(
                        index,
                        &C2sLogin {
                            username,
                            password,
                            resumable,
                        },
                    );
                }
            }
            return;
        }
        let auth_id = self.auth_request_id();
        self.bots[index as usize].auth_id = auth_id;
        let bot = &self.bots[index as usize];
        match self.auth {
            AuthMode::Guest | AuthMode::Login => {
                let password = self.password(self.auth);
                self.queue(
                    index,
                    &C2sLogin {
                        username,
                        password,
                        resumable,
                    },
                );
            }
            AuthMode::Register => {
                let password = self.config.bots.password.clone();
                self.queue(
                    index,
                    &C2sRegister {
                        username,
                        password,
                        resumable,
                    },
                );
            }
            AuthMode::Resume => match &bot.token {
                Some(token) => {
                    let token = token.to_string();
                    self.queue(index, &C2sResume { token, resumable });
                }
                None => self.fail_login(
                    index,
                    "no token",
                    format!(
                        "no token for {username} in {}",
                        self.config.bots.tokens_file.display()
                    ),
                ),
            },
        }
    }

    /// The password of a login in `auth` mode: none for a guest.
    fn password(&self, auth: AuthMode) -> String {
        match auth {
            AuthMode::Guest => String::new(),
            _ => self.config.bots.password.clone(),
        }
    }

    /// The id of the login request of the run's auth mode, to match `S2C_Error`s with.
    fn auth_request_id(&self) -> u16 {
        match self.auth {
            AuthMode::Guest | AuthMode::Login => C2sLogin::ID,
            AuthMode::Register => C2sRegister::ID,
            AuthMode::Resume => C2sResume::ID,
        }
    }

    /// The bot whose current connect or session has tag `tag`; `None` for a stale one (an
    /// earlier connect of a bot that failed over since).
    fn bot_of(&self, tag: u64) -> Option<u32> {
        let index = tag as u32;
        self.bots
            .get(index as usize)
            .filter(|bot| bot.tag == tag)
            .map(|_| index)
    }

    fn on_session_event(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::Received {
                session,
                packet,
                at,
            } => {
                if let Some(index) = self.bot_of(session.0) {
                    self.on_received(index, packet, at);
                }
            }
            SessionEvent::Closed { session, reason } => {
                if let Some(index) = self.bot_of(session.0) {
                    self.on_closed(index, reason);
                }
            }
            SessionEvent::Ready { .. } => {}
        }
    }

    fn on_received(&mut self, index: u32, packet: Packet, at: Instant) {
        let bot = &mut self.bots[index as usize];
        bot.credits += 1;
        if !bot.dirty {
            bot.dirty = true;
            self.dirty.push(index);
        }
        if bot.closing {
            return;
        }
        if let Some(resume) = bot.resume.as_mut() {
            resume.count();
        }
        if packet.id == S2cChat::ID {
            self.on_chat(index, &packet.payload, at);
            return;
        }
        match S2cMessage::decode(packet.id, packet.payload) {
            Ok(message) => self.on_message(index, message, at),
            Err(error) => {
                self.counters.bad_frames += 1;
                spdlog::debug!("swarm: bot {index}: {error}");
            }
        }
    }

    /// A chat line arrived at `receiver`: O(1), and no allocation.
    fn on_chat(&mut self, receiver: u32, payload: &[u8], at: Instant) {
        let chat = match ChatView::parse(payload) {
            Ok(chat) => chat,
            Err(error) => {
                self.counters.bad_frames += 1;
                spdlog::debug!("swarm: bot {receiver}: bad S2C_Chat: {error}");
                return;
            }
        };
        if chat.history {
            self.counters.history_received += 1;
            return;
        }
        if self.phase == RunPhase::Finished {
            return;
        }
        let sender = self.names.bot_index(chat.from).filter(|&s| {
            self.bots
                .get(s as usize)
                .is_some_and(|b| *b.name == *chat.from)
        });
        let room = &self.room_names[self.ledger.room_of(receiver) as usize];
        let (Some(sender), Some(seq), true) =
            (sender, parse_content(chat.content), chat.room == room)
        else {
            self.ledger.unexpected();
            return;
        };
        if let Some(sent_at_us) = self.ledger.receive(receiver, sender, seq) {
            let latency = self.clock.unix_us(at).saturating_sub(sent_at_us);
            report::record(&mut self.latency, latency);
            self.series.latency(latency);
        }
    }

    fn on_message(&mut self, index: u32, message: S2cMessage, at: Instant) {
        let phase = self.bots[index as usize].phase;
        match message {
            S2cMessage::S2cWelcome(welcome) => {
                if welcome.protocol_version != protocol::PROTOCOL_VERSION {
                    spdlog::warn!(
                        "swarm: bot {index}: server speaks protocol {}, this client {}",
                        welcome.protocol_version,
                        protocol::PROTOCOL_VERSION
                    );
                }
                self.settings.welcomed(&welcome);
            }
            S2cMessage::S2cAuthResult(auth) if phase == Phase::LoggingIn => {
                self.on_auth_result(index, auth, at)
            }
            S2cMessage::S2cRoomJoined(joined) if phase == Phase::Joining => {
                if joined.room != self.room_names[self.ledger.room_of(index) as usize] {
                    spdlog::debug!("swarm: bot {index} joined {} unasked", joined.room);
                    return;
                }
                if self.bots[index as usize].failover.is_some() {
                    self.rejoined(index, &joined.members, at);
                    return;
                }
                let bot = &mut self.bots[index as usize];
                bot.ever_joined = true;
                bot.phase = Phase::Joined;
                let took = at.saturating_duration_since(bot.connect_started);
                report::record(&mut self.login, took.as_micros() as u64);
                self.counters.joined += 1;
                self.counters.in_room += 1;
                self.ledger.join(index);
                let (seen, listed) = self.seen_in(index, &joined.members, at);
                for mate in seen {
                    // Only matters once a room mate has failed over (unseen until then).
                    self.ledger.saw(index, mate);
                }
                self.bots[index as usize].seen = listed;
                self.settle(index, at);
            }
            S2cMessage::S2cRoomPresence(presence)
                if phase == Phase::Joined
                    && presence.room == self.room_names[self.ledger.room_of(index) as usize] =>
            {
                let room = self.ledger.room_of(index);
                if let Some(mate) = self.mate_of(&presence.username, room) {
                    let bot = &mut self.bots[index as usize];
                    bot.seen = if presence.joined {
                        bot.seen + 1
                    } else {
                        bot.seen.saturating_sub(1)
                    };
                    if presence.joined {
                        // Its node knows the mate's node has it in the room: lines of this
                        // bot reach it from now on. (A leave is not news for the ledger: the
                        // mate's own connection tells, and one may be a dead node's stale
                        // entry of a mate back elsewhere.)
                        self.ledger.saw(index, mate);
                    }
                    self.start_room_if_ready(room, at);
                }
            }
            S2cMessage::S2cRoomLeft(left)
                if phase == Phase::Joined
                    && left.room == self.room_names[self.ledger.room_of(index) as usize] =>
            {
                // The server took the bot out of its room: as good as a disconnect for the
                // accounting, and reported as one.
                self.count_disconnect(index, "removed from its room".to_owned());
                self.leave(index);
            }
            S2cMessage::S2cSessionResumed(answer) if phase == Phase::Resuming => {
                self.resumed(index, answer, at);
            }
            S2cMessage::S2cPong(pong) => {
                if let Some(resume) = self.bots[index as usize].resume.as_mut() {
                    resume.processed(pong.processed);
                }
                self.counters.pongs_received += 1;
                let rtt = self.clock.unix_us(at).saturating_sub(pong.client_time_us);
                report::record(&mut self.rtt, rtt);
            }
            S2cMessage::S2cError(error) => self.on_error(index, error),
            S2cMessage::S2cRoomMissed(missed) => {
                self.counters.missed_notices += 1;
                spdlog::debug!(
                    "swarm: bot {index}: told that lines of room {} did not reach it",
                    missed.room
                );
            }
            _ => {}
        }
    }

    fn on_auth_result(&mut self, index: u32, auth: S2cAuthResult, at: Instant) {
        let bot = &mut self.bots[index as usize];
        if auth.username != *bot.name {
            // Chat from this bot would carry a name the ledger does not know: a resume
            // token of another user, or an account whose name differs in case.
            let why = format!("logged in as {} instead of {}", auth.username, bot.name);
            self.fail_login(index, "logged in as another user", why);
            return;
        }
        bot.phase = Phase::Joining;
        if !auth.token.is_empty() {
            bot.token = Some(auth.token.as_str().into());
            self.issued.insert(&auth.username, &auth.token);
        }
        self.resumable_login(index, &auth.session_token);
        let bot = &mut self.bots[index as usize];
        if bot.failover.is_none() {
            let took = at.saturating_duration_since(bot.connected_at);
            report::record(&mut self.auth_time, took.as_micros() as u64);
        }
        if !bot.ever_logged_in {
            bot.ever_logged_in = true;
            self.counters.logged_in += 1;
        }
        let room = self.room_names[self.ledger.room_of(index) as usize].clone();
        self.queue(
            index,
            &C2sRoomJoin {
                room,
                ..Default::default()
            },
        );
    }

    fn on_error(&mut self, index: u32, error: protocol::world::S2cError) {
        let code = ErrorCode::try_from(error.code).ok();
        let name = code.map_or_else(
            || format!("UNKNOWN({})", error.code),
            |c| c.as_str_name().to_owned(),
        );
        *self.counters.errors.entry(name.clone()).or_default() += 1;
        self.counters.error_total += 1;
        spdlog::debug!(
            "swarm: bot {index}: error {:?} for request {}: {}",
            code,
            error.request_id,
            error.reason
        );
        if matches!(code, Some(ErrorCode::Replaced | ErrorCode::ServerFull)) {
            self.bots[index as usize].fatal = code;
        }
        let bot = &self.bots[index as usize];
        let (phase, auth_id, failing_over) = (bot.phase, bot.auth_id, bot.failover.is_some());
        let request = u16::try_from(error.request_id).unwrap_or(0);
        if phase == Phase::Resuming && request == C2sSessionResume::ID {
            let why = format!("{name}: {}", error.reason);
            self.resume_failed(index, &name, why);
            return;
        }
        let refused = (request == auth_id && phase == Phase::LoggingIn)
            || (request == C2sRoomJoin::ID && phase == Phase::Joining);
        if request == C2sChat::ID {
            self.ledger.reject_oldest(index);
        } else if code == Some(ErrorCode::Unavailable)
            && request == auth_id
            && phase == Phase::LoggingIn
        {
            // Sent again when the server said, within the login timeout.
            let wait = Duration::from_millis(u64::from(error.retry_after_ms.max(100)));
            self.bots[index as usize].retry_auth_at = Some(Instant::now() + wait);
        } else if refused && failing_over {
            spdlog::debug!(
                "swarm: bot {index} failing over: {} refused it: {name}: {}",
                self.servers[bot.node],
                error.reason
            );
            self.abort_attempt(index, Instant::now());
        } else if request == auth_id && phase == Phase::LoggingIn {
            let why = format!("{} refused: {}", self.auth, error.reason);
            self.fail_login(index, &name, why);
        } else if request == C2sRoomJoin::ID && phase == Phase::Joining {
            let why = format!("room join refused: {}", error.reason);
            self.fail_login(index, &format!("room join {name}"), why);
        }
    }

    fn on_closed(&mut self, index: u32, reason: DisconnectReason) {
        let now = Instant::now();
        let bot = &mut self.bots[index as usize];
        bot.session = None;
        if bot.closing {
            return;
        }
        if self.is_resuming(index) {
            // The connection of a resume ended before its answer: another one.
            spdlog::debug!("swarm: bot {index} resuming: connection ended: {reason}");
            self.resume_later(index, now);
            return;
        }
        let bot = &self.bots[index as usize];
        let resumable = bot.resume.is_some() && bot.phase == Phase::Joined;
        if resumable && bot.fatal.is_none() && connection_ended(&reason) {
            self.dropped(index, DropKind::Lost, now);
            return;
        }
        let bot = &mut self.bots[index as usize];
        if bot.failover.is_some() {
            // An attempt of a failover ended before the bot was back: the next node.
            spdlog::debug!("swarm: bot {index} failing over: session ended: {reason}");
            self.retry(index, now);
            return;
        }
        let phase = bot.phase;
        let fails_over = self.servers.len() > 1
            && self.phase != RunPhase::Finished
            && bot.fatal.is_none()
            && connection_ended(&reason)
            && matches!(phase, Phase::LoggingIn | Phase::Joining | Phase::Joined);
        if fails_over {
            self.fail_over(index, reason.to_string(), now);
            return;
        }
        let reason = match bot.fatal {
            Some(ErrorCode::Replaced) => DisconnectReason::Replaced.to_string(),
            Some(ErrorCode::ServerFull) => DisconnectReason::ServerFull.to_string(),
            _ => reason.to_string(),
        };
        self.count_disconnect(index, reason);
        match phase {
            Phase::LoggingIn | Phase::Joining => {
                self.count_login_failure("disconnected");
                self.bots[index as usize].phase = Phase::Failed;
                self.settle(index, Instant::now());
            }
            Phase::Joined => self.leave(index),
            _ => {}
        }
    }

    /// The connection of a bot on its way in or in its room ended (`reason`), with several
    /// servers: it fails over. What it was owed, and its own lines in flight, are in doubt.
    fn fail_over(&mut self, index: u32, reason: String, now: Instant) {
        let was_in = self.bots[index as usize].phase == Phase::Joined;
        if was_in {
            self.counters.in_room -= 1;
            let doubted = self.ledger.away(index);
            spdlog::debug!("swarm: bot {index}: {doubted} deliveries in doubt");
        }
        let node = self.servers[self.bots[index as usize].node];
        let bot = &mut self.bots[index as usize];
        bot.next_chat = None;
        bot.next_ping = None;
        bot.retry_auth_at = None;
        bot.last_lost = Some(now);
        bot.failover = Some(Failover {
            lost_at: now,
            deadline: now + self.config.client.login_timeout(),
            attempts: 0,
            retry_at: now,
            was_in,
        });
        self.counters.failing_over += 1;
        let started = self.counters.failovers + self.counters.failing_over;
        if started <= DISCONNECTS_LOGGED {
            spdlog::info!(
                "swarm: bot {index} lost its connection to {node} ({reason}); failing over"
            );
            if started == DISCONNECTS_LOGGED {
                spdlog::info!("swarm: further failovers are logged at debug level");
            }
        } else {
            spdlog::debug!(
                "swarm: bot {index} lost its connection to {node} ({reason}); failing over"
            );
        }
        *self.counters.failover_reasons.entry(reason).or_default() += 1;
        self.retry(index, now);
    }

    /// The bot fails over to the next node: at once for its first connect, after a backoff
    /// for the others.
    fn retry(&mut self, index: u32, now: Instant) {
        let nodes = self.servers.len();
        let bot = &mut self.bots[index as usize];
        let Some(failover) = bot.failover.as_mut() else {
            return;
        };
        bot.phase = Phase::Away;
        bot.session = None;
        bot.node = (bot.node + 1) % nodes;
        failover.retry_at = now + failover_backoff(failover.attempts);
    }

    /// A login or join of a failover was refused: the session goes, the next node is tried.
    fn abort_attempt(&mut self, index: u32, now: Instant) {
        let bot = &mut self.bots[index as usize];
        bot.closing = true;
        if let Some(session) = &mut bot.session {
            session.abort(DisconnectReason::Kicked(
                "failing over to the next node".to_owned(),
            ));
        }
        self.retry(index, now);
    }

    /// The next connect of a failover.
    fn connect_again(&mut self, index: u32, service: &ClientService, now: Instant) {
        let bot = &mut self.bots[index as usize];
        let Some(failover) = bot.failover.as_mut() else {
            return;
        };
        failover.attempts += 1;
        bot.connects += 1;
        bot.tag = tag(index, bot.connects);
        bot.phase = Phase::Connecting;
        bot.connect_started = now;
        bot.closing = false;
        self.counters.failover_connects += 1;
        service.connect(self.servers[bot.node], bot.tag);
    }

    /// The failover of a bot ran out of time: it never recovered, and is out for good.
    fn give_up(&mut self, index: u32, now: Instant) {
        let bot = &mut self.bots[index as usize];
        let Some(failover) = bot.failover.take() else {
            return;
        };
        bot.phase = if failover.was_in {
            Phase::Gone
        } else {
            Phase::Failed
        };
        bot.closing = true;
        bot.next_chat = None;
        bot.next_ping = None;
        bot.retry_auth_at = None;
        if let Some(session) = &mut bot.session {
            session.abort(DisconnectReason::Kicked("failover gave up".to_owned()));
        }
        spdlog::warn!(
            "swarm: bot {index} did not get back into its room within {}s of losing its connection ({} connects): never recovered",
            self.config.client.login_timeout().as_secs(),
            failover.attempts
        );
        self.counters.failing_over -= 1;
        self.counters.never_recovered += 1;
        self.ledger.leave(index);
        self.settle(index, now);
    }

    /// The room mates of `index` that its `S2C_RoomJoined` (listing `members`, received at
    /// `at`) shows it in their present session, and how many of the names are room mates.
    /// A mate in its room is seen when listed twice (a dead node's stale entry and the new
    /// one), or once when that cannot be a stale entry: it never failed over, or not lately.
    fn seen_in(&self, index: u32, members: &[String], at: Instant) -> (Vec<u32>, u32) {
        let room = self.ledger.room_of(index);
        let mut listed: BTreeMap<u32, u32> = BTreeMap::new();
        for mate in members.iter().filter_map(|name| self.mate_of(name, room)) {
            *listed.entry(mate).or_default() += 1;
        }
        let seen = listed
            .iter()
            .filter(|&(&mate, &times)| {
                let last_lost = self.bots[mate as usize].last_lost;
                self.ledger.is_member(mate)
                    && (times > 1
                        || last_lost
                            .is_none_or(|lost| at.saturating_duration_since(lost) >= STALE_MEMBER))
            })
            .map(|(&mate, _)| mate)
            .collect();
        (seen, listed.values().sum())
    }

    /// A bot failing over is in its room again (`members` as its `S2C_RoomJoined` lists
    /// them).
    fn rejoined(&mut self, index: u32, members: &[String], at: Instant) {
        let room = self.ledger.room_of(index);
        let (seen, listed) = self.seen_in(index, members, at);
        self.ledger.rejoin(index, seen);

        let running = self.phase == RunPhase::Running;
        let chatting = self.chatting[room as usize];
        let interval = self.config.bots.chat_interval();
        let bot = &mut self.bots[index as usize];
        let Some(failover) = bot.failover.take() else {
            return;
        };
        bot.phase = Phase::Joined;
        bot.seen = listed;
        if chatting && running {
            bot.next_chat = Some(at + random_phase(interval));
        }
        if !bot.ever_joined {
            bot.ever_joined = true;
            self.counters.joined += 1;
        }
        let took = at.saturating_duration_since(failover.lost_at);
        report::record(&mut self.recovery, took.as_micros() as u64);
        self.counters.failing_over -= 1;
        self.counters.failovers += 1;
        self.counters.in_room += 1;
        spdlog::debug!(
            "swarm: bot {index} back in its room through {} after {took:?} ({} connects)",
            self.servers[bot.node],
            failover.attempts
        );
        self.settle(index, at);
        self.start_room_if_ready(room, at);
    }

    fn count_disconnect(&mut self, index: u32, reason: String) {
        self.counters.disconnects += 1;
        if self.counters.disconnects <= DISCONNECTS_LOGGED {
            spdlog::info!("swarm: bot {index} disconnected: {reason}");
            if self.counters.disconnects == DISCONNECTS_LOGGED {
                spdlog::info!("swarm: further disconnects are logged at debug level");
            }
        } else {
            spdlog::debug!("swarm: bot {index} disconnected: {reason}");
        }
        *self.counters.disconnect_reasons.entry(reason).or_default() += 1;
    }

    /// A bot in its room is out of it for good.
    fn leave(&mut self, index: u32) {
        let bot = &mut self.bots[index as usize];
        bot.phase = Phase::Gone;
        bot.next_chat = None;
        bot.next_ping = None;
        bot.retry_auth_at = None;
        self.counters.in_room -= 1;
        let lost = self.ledger.leave(index);
        if lost > 0 {
            spdlog::debug!("swarm: bot {index} left with {lost} lines still owed: lost");
        }
    }

    /// Counts a login failure; `cause` is its key in the report (an `ErrorCode` name, or a
    /// short phrase).
    fn count_login_failure(&mut self, cause: &str) {
        self.counters.login_failures += 1;
        match self.counters.login_errors.get_mut(cause) {
            Some(n) => *n += 1,
            None => {
                self.counters.login_errors.insert(cause.to_owned(), 1);
            }
        }
    }

    /// A connected bot did not make it into its room: abort its session. `cause` is counted,
    /// `why` logged.
    fn fail_login(&mut self, index: u32, cause: &str, why: String) {
        spdlog::debug!("swarm: bot {index}: {why}");
        if self.bots[index as usize].failover.is_some() {
            self.give_up(index, Instant::now());
            return;
        }
        self.count_login_failure(cause);
        let bot = &mut self.bots[index as usize];
        bot.phase = Phase::Failed;
        bot.closing = true;
        bot.next_ping = None;
        bot.retry_auth_at = None;
        if let Some(session) = &mut bot.session {
            session.abort(DisconnectReason::Kicked(why));
        }
        self.settle(index, Instant::now());
    }

    /// The bot is joined or failed for good; when that completes its room, the room chats.
    fn settle(&mut self, index: u32, now: Instant) {
        let bot = &mut self.bots[index as usize];
        if bot.settled {
            return;
        }
        bot.settled = true;
        let room = self.ledger.room_of(index);
        let left = &mut self.unsettled[room as usize];
        *left -= 1;
        if *left > 0 {
            return;
        }
        self.start_room_if_ready(room, now);
    }

    /// The bot of this run called `name`, when it is in `room`.
    fn mate_of(&self, name: &str, room: u32) -> Option<u32> {
        self.names
            .bot_index(name)
            .filter(|&bot| (bot as usize) < self.bots.len() && self.ledger.room_of(bot) == room)
    }

    /// Starts the chat of `room` once every bot of it has confirmed its join (or failed) and
    /// every member knows every other: the member set is known everywhere, so no line can
    /// race a join. Each bot starts at a random phase of its interval.
    fn start_room_if_ready(&mut self, room: u32, now: Instant) {
        if self.chatting[room as usize] || self.unsettled[room as usize] > 0 {
            return;
        }
        let members = self.ledger.member_count(room);
        let known = self
            .ledger
            .bots_of_room(room)
            .filter(|&b| self.bots[b as usize].phase == Phase::Joined)
            .all(|b| self.bots[b as usize].seen >= members);
        if !known {
            return;
        }
        self.chatting[room as usize] = true;
        let interval = self.config.bots.chat_interval();
        for member in self.ledger.bots_of_room(room) {
            let bot = &mut self.bots[member as usize];
            if bot.phase == Phase::Joined {
                bot.next_chat = Some(now + random_phase(interval));
            }
        }
        spdlog::debug!(
            "swarm: room {} ready with {} members",
            self.room_names[room as usize],
            members
        );
    }

    fn run_timers(&mut self, service: &ClientService, now: Instant) {
        let login_timeout = self.config.client.login_timeout();
        let running = self.phase == RunPhase::Running;
        let chat_interval = self.config.bots.chat_interval();
        // A resumable bot acknowledges what it received at least every second.
        let ping_interval = match self.config.bots.ping_interval() {
            Some(ping) if self.resumable() => Some(ping.min(resume::ACK_INTERVAL)),
            ping => ping,
        };
        let chaos = self.chaos_per_tick();
        self.let_go_of_stalled(now);
        for index in 0..self.bots.len() as u32 {
            if self.is_resuming(index) {
                self.resume_timers(index, service, now);
            }
            let bot = &mut self.bots[index as usize];
            if let Some(failover) = bot.failover {
                if now >= failover.deadline {
                    self.give_up(index, now);
                    continue;
                }
                if bot.phase == Phase::Away {
                    if now >= failover.retry_at {
                        self.connect_again(index, service, now);
                    }
                    continue;
                }
            }
            let bot = &mut self.bots[index as usize];
            match bot.phase {
                Phase::LoggingIn | Phase::Joining if bot.failover.is_some() => {}
                Phase::LoggingIn | Phase::Joining => {
                    if now.duration_since(bot.connected_at) >= login_timeout {
                        let why = format!(
                            "not logged in and joined within {}s",
                            login_timeout.as_secs()
                        );
                        self.fail_login(index, "timed out", why);
                        continue;
                    }
                    if bot.retry_auth_at.is_some_and(|at| at <= now) {
                        bot.retry_auth_at = None;
                        self.send_auth(index);
                    }
                }
                Phase::Joined => {}
                // Still in its room: it goes on chatting, its lines kept until it is back.
                Phase::Dropped | Phase::Resuming if running => {
                    if let Some(due) = bot.next_chat.filter(|&due| due <= now) {
                        bot.next_chat = Some(next_due(due, chat_interval, now));
                        self.send_chat(index);
                    }
                    continue;
                }
                _ => continue,
            }
            if !running {
                continue;
            }
            if chaos > 0.0
                && self.bots[index as usize].resume.is_some()
                && self.chatting[self.ledger.room_of(index) as usize]
                && rand::rng().random_bool(chaos)
            {
                self.chaos(index, now);
                continue;
            }
            let bot = &mut self.bots[index as usize];
            if let Some(due) = bot.next_chat.filter(|&due| due <= now) {
                bot.next_chat = Some(next_due(due, chat_interval, now));
                self.send_chat(index);
            }
            let bot = &mut self.bots[index as usize];
            if let (Some(due), Some(interval)) =
                (bot.next_ping.filter(|&d| d <= now), ping_interval)
            {
                bot.next_ping = Some(next_due(due, interval, now));
                let seq = bot.ping_seq;
                bot.ping_seq = seq.wrapping_add(1);
                let ping = C2sPing {
                    seq,
                    client_time_us: self.clock.now_us(),
                    received: bot.resume.as_ref().map_or(0, |r| r.received),
                };
                self.counters.pings_sent += 1;
                self.queue(index, &ping);
            }
        }
    }

    fn send_chat(&mut self, index: u32) {
        let sent_at_us = self.clock.now_us();
        let Some(seq) = self.ledger.send(index, sent_at_us) else {
            return;
        };
        let room = &self.room_names[self.ledger.room_of(index) as usize];
        self.chat.room.clear();
        self.chat.room.push_str(room);
        write_content(&mut self.chat.content, seq, self.config.bots.message_size);
        self.chat.sent_at_us = sent_at_us;
        let chat = std::mem::take(&mut self.chat);
        self.queue(index, &chat);
        self.chat = chat;
    }

    /// Encodes `message` into the arena and adds it to the bot's batch of this tick.
    fn queue<M: MessageType>(&mut self, index: u32, message: &M) {
        let frame = match self.encoder.frame(message) {
            Ok(frame) => frame,
            Err(error) => {
                // Config validation keeps message_size under max_packet_size; a frame this
                // large is a bug, not a condition of the run.
                spdlog::error!("swarm: bot {index}: {error}");
                return;
            }
        };
        let bot = &mut self.bots[index as usize];
        if let Some(resume) = bot.resume.as_mut() {
            if !resume.number(&frame) {
                spdlog::warn!(
                    "swarm: bot {index}: too many requests unacknowledged: no longer resumable"
                );
                bot.resume = None;
            } else if resume.is_away() {
                // Sent when the session is back.
                return;
            }
        }
        bot.out.push(frame);
        if !bot.dirty {
            bot.dirty = true;
            self.dirty.push(index);
        }
    }

    /// One batch per session with frames; credits back for every frame processed.
    fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &index in &dirty {
            let bot = &mut self.bots[index as usize];
            bot.dirty = false;
            let credits = std::mem::take(&mut bot.credits);
            let Some(session) = &mut bot.session else {
                bot.out.clear();
                continue;
            };
            session.release_credit(credits);
            if bot.out.is_empty() {
                continue;
            }
            match session.send(&mut bot.out) {
                Ok(()) => {}
                Err(SendError::Closed) => {}
                Err(SendError::SlowConsumer { queued }) => {
                    // The server stopped reading from this bot: no point queueing more.
                    spdlog::debug!("swarm: bot {index}: {queued} bytes queued, aborting");
                    session.abort(DisconnectReason::Kicked(
                        "server not reading: client outbound queue full".to_owned(),
                    ));
                }
            }
        }
        dirty.clear();
        self.dirty = dirty;
    }

    /// Moves the run from phase to phase.
    fn advance(&mut self, now: Instant) {
        match self.phase {
            RunPhase::Running => {
                let over = self
                    .clock_start
                    .is_some_and(|start| now >= start + self.config.client.duration());
                let all_failed = self.counters.started == self.bots.len() as u64
                    && self
                        .bots
                        .iter()
                        .all(|b| matches!(b.phase, Phase::Failed | Phase::Gone));
                if over || self.cancelled || all_failed {
                    self.stopped_at = Some(now);
                    self.phase = RunPhase::Draining { since: now };
                    spdlog::info!(
                        "swarm: sending stopped; draining {} deliveries in flight",
                        self.ledger.counts().in_flight
                    );
                }
            }
            RunPhase::Draining { since } => {
                // Failovers under way complete first: their bots are back, or never recovered.
                let drained = self.ledger.counts().in_flight == 0
                    && self.counters.failing_over == 0
                    && self.counters.resuming == 0;
                if drained || now.duration_since(since) >= self.config.client.drain() {
                    self.drain_secs = now.duration_since(since).as_secs_f64();
                    let lost = self.ledger.finish();
                    if lost > 0 {
                        spdlog::warn!(
                            "swarm: {lost} deliveries still in flight after draining: lost"
                        );
                    }
                    self.phase = RunPhase::Finished;
                }
            }
            RunPhase::Finished => {}
        }
    }

    /// Closes every session gracefully and waits (bounded) until each has ended, giving back
    /// the credits of whatever still arrives so that no reader is stuck.
    async fn close_all(
        &mut self,
        session_rx: &mut mpsc::Receiver<SessionEvent>,
        service_rx: &mut mpsc::Receiver<ServiceEvent>,
    ) {
        let mut open = 0usize;
        for bot in &mut self.bots {
            bot.closing = true;
            bot.out.clear();
            if let Some(session) = &mut bot.session {
                session.close(DisconnectReason::Shutdown);
                open += 1;
            }
        }
        service_rx.close();
        let deadline = tokio::time::Instant::now() + self.session_config.linger + CLOSE_GRACE;
        while open > 0 {
            let event = match tokio::time::timeout_at(deadline, session_rx.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) | Err(_) => break,
            };
            match event {
                SessionEvent::Received { session, .. } => {
                    let bot = self.bot_of(session.0).map(|i| &self.bots[i as usize]);
                    if let Some(Some(s)) = bot.map(|b| &b.session) {
                        s.release_credit(1);
                    }
                }
                SessionEvent::Closed { session, .. } => {
                    if let Some(index) = self.bot_of(session.0) {
                        if self.bots[index as usize].session.take().is_some() {
                            open -= 1;
                        }
                    }
                }
                SessionEvent::Ready { .. } => {}
            }
        }
        if open > 0 {
            spdlog::warn!("swarm: {open} sessions did not close in time; aborting them");
        }
        for bot in &mut self.bots {
            if let Some(mut session) = bot.session.take() {
                session.abort(DisconnectReason::Shutdown);
            }
        }
    }
}

/// Whether a session ended because its connection did (closed, reset, cut inside a frame), as
/// when the server's process dies: what a failover is for. Not a close the server chose.
fn connection_ended(reason: &DisconnectReason) -> bool {
    matches!(
        reason,
        DisconnectReason::PeerClosed
            | DisconnectReason::Io(_)
            | DisconnectReason::Protocol(FrameError::Truncated(_))
    )
}

/// The wait before connect number `attempts + 1` of a failover: none for the first, then
/// [`FAILOVER_BACKOFF_MIN`] doubling up to [`FAILOVER_BACKOFF_MAX`], less a random part of up to
/// half.
fn failover_backoff(attempts: u32) -> Duration {
    if attempts == 0 {
        return Duration::ZERO;
    }
    let full = FAILOVER_BACKOFF_MIN
        .saturating_mul(1 << (attempts - 1).min(16))
        .min(FAILOVER_BACKOFF_MAX);
    full - random_phase(full / 2)
}

/// A uniformly random offset in `0..interval`, so that bots do not fire in lockstep.
fn random_phase(interval: Duration) -> Duration {
    let micros = interval.as_micros().max(1) as u64;
    Duration::from_micros(rand::rng().random_range(0..micros))
}

/// The next due time of a periodic timer that fired at `due`; a timer that fell behind more
/// than one period skips ahead instead of firing a burst.
fn next_due(due: Instant, interval: Duration, now: Instant) -> Instant {
    let next = due + interval;
    if next <= now {
        now + interval
    } else {
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_queue_holds_what_every_bot_hears_in_400_ms() {
        // At the defaults (rooms of 20, a line every 250 ms) a bot receives 80 lines a second.
        let defaults = ClientConfig::default();
        let per_sec = defaults.bots.bots_per_room as u64 * 1000 / defaults.bots.chat_interval_ms;
        assert_eq!(per_sec, 80);
        for bots in [1, 400, 2_000, 10_000, 19_000] {
            let room = session_event_queue(bots) as u64;
            assert!(
                room >= bots as u64 * per_sec * 4 / 10,
                "{bots} bots: {room}"
            );
            assert!(room >= 65_536, "{bots} bots: {room}");
        }
    }

    #[test]
    fn the_clock_converts_instants_around_its_base() {
        let clock = Clock::new();
        let later = clock.base + Duration::from_micros(1500);
        assert_eq!(clock.unix_us(later), clock.base_us + 1500);
        if let Some(earlier) = clock.base.checked_sub(Duration::from_micros(20)) {
            assert_eq!(clock.unix_us(earlier), clock.base_us - 20);
        }
        assert!(clock.now_us() >= clock.base_us);
    }

    #[test]
    fn a_timer_that_fell_behind_skips_instead_of_bursting() {
        let start = Instant::now();
        let interval = Duration::from_millis(250);
        assert_eq!(next_due(start, interval, start), start + interval);
        let late = start + Duration::from_secs(1);
        assert_eq!(next_due(start, interval, late), late + interval);
    }

    #[test]
    fn an_unvalidated_auth_mode_is_refused_naming_the_key() {
        let mut config = ClientConfig::default();
        config.bots.auth = "sso".to_owned();
        let (tx, _rx) = mpsc::channel(1);
        let error = Swarm::new(config, "k3f9", tx, TaskTracker::new())
            .err()
            .expect("an unknown mode is refused");
        assert_eq!(
            error.to_string(),
            r#"invalid config: bots.auth must be one of guest, register, login, resume (got "sso")"#
        );
    }

    #[test]
    fn account_modes_give_bots_account_names_and_tokens_by_name() {
        let mut config = ClientConfig::default();
        config.client.bots = 3;
        config.bots.auth = "resume".to_owned();
        let (tx, _rx) = mpsc::channel(1);
        let mut swarm = Swarm::new(config, "k3f9", tx, TaskTracker::new()).unwrap();
        assert_eq!(swarm.auth(), AuthMode::Resume);
        let names: Vec<&str> = swarm.bots.iter().map(|b| &*b.name).collect();
        assert_eq!(names, ["bot-00001", "bot-00002", "bot-00003"]);
        let mut tokens = Tokens::new();
        tokens.insert("bot-00001", "t1");
        tokens.insert("bot-00003", "t3");
        tokens.insert("alice", "ta");
        assert_eq!(swarm.set_tokens(&tokens), 2);
        assert_eq!(swarm.bots[0].token.as_deref(), Some("t1"));
        assert_eq!(swarm.bots[1].token, None);
        assert_eq!(swarm.auth_request_id(), C2sResume::ID);
    }

    #[test]
    fn a_failover_connects_at_once_then_backs_off_doubling_up_to_a_second() {
        assert_eq!(failover_backoff(0), Duration::ZERO);
        for (attempts, full) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (40, 1000),
        ] {
            let full = Duration::from_millis(full);
            for _ in 0..20 {
                let wait = failover_backoff(attempts);
                assert!(wait <= full && wait > full / 2, "{attempts}: {wait:?}");
            }
        }
    }

    #[test]
    fn only_a_connection_that_ended_fails_over() {
        assert!(connection_ended(&DisconnectReason::PeerClosed));
        assert!(connection_ended(&DisconnectReason::Io(
            std::io::ErrorKind::ConnectionReset
        )));
        assert!(connection_ended(&DisconnectReason::Protocol(
            FrameError::Truncated(3)
        )));
        for chosen in [
            DisconnectReason::Replaced,
            DisconnectReason::ServerFull,
            DisconnectReason::IdleTimeout,
            DisconnectReason::Protocol(FrameError::Undersized(1)),
            DisconnectReason::Kicked("x".into()),
        ] {
            assert!(!connection_ended(&chosen), "{chosen}");
        }
    }

    #[test]
    fn tags_tell_the_connects_of_one_bot_apart() {
        let (config, (tx, _rx)) = (ClientConfig::default(), mpsc::channel(1));
        let mut swarm = Swarm::new(config, "k3f9", tx, TaskTracker::new()).unwrap();
        swarm.bots[7].tag = tag(7, 2);
        assert_eq!(swarm.bot_of(tag(7, 2)), Some(7));
        assert_eq!(
            swarm.bot_of(tag(7, 1)),
            None,
            "an earlier connect's session"
        );
        assert_eq!(swarm.bot_of(tag(100_000, 0)), None);
        assert_eq!(tag(7, 0), 7, "first connects keep the bot's index");
    }

    #[test]
    fn random_phases_stay_within_the_interval() {
        for _ in 0..100 {
            assert!(random_phase(Duration::from_millis(250)) < Duration::from_millis(250));
        }
        assert_eq!(random_phase(Duration::ZERO), Duration::ZERO);
    }
}
