//! The arena scenario (`--scenario arena`): bots that walk at random in the arena game
//! (`examples/arena`), and a check of what every bot is shown.
//!
//! Each bot connects (at `client.ramp_up_per_sec`), logs in as a guest, is spawned, and every
//! `bots.move_interval_ms` turns to a random direction. The server sends each bot one
//! `S2C_Update` per tick, numbered by the server's tick, with the bot's own position and every
//! entity in its view. The bots' own positions at a tick are the truth of that tick: once
//! every bot has been sent a tick, the swarm checks the bots' views of it against the truth
//! (every other bot within the view radius, at the position it had then; a tolerance of one
//! tick of movement at the edge of the view), checks that `entered` and `left` are exactly
//! what changed since the bot's last update, and that no tick is skipped. Up to 500 views are
//! checked per tick: with more bots, they take turns, so every bot's view is still checked
//! every few ticks. Latency is measured
//! from a move's `sent_at_us` to the first update that echoes it (read time), so it includes
//! the wait for the server's next tick.
//!
//! The run passes when every bot connected, logged in and was spawned, every view checked
//! matched, no update was skipped or inconsistent, and no bot was disconnected.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::time::{Duration, Instant};

use arena::arena::{C2sMove, S2cUpdate};
use arena::grid::Grid;
use bytes::Bytes;
use config::ClientConfig;
use hdrhistogram::Histogram;
use net::{
    ClientService, DisconnectReason, SendError, ServiceEvent, Session, SessionConfig, SessionEvent,
    SessionId,
};
use protocol::world::C2sLogin;
use rand::Rng;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::names::new_run_id;
use crate::record::{self, Document, RunRecord, Series, Settings, Totals};
use crate::report::{fmt_us, join_counts, new_histogram, record, LatencySummary};
use crate::swarm::{session_event_queue, Clock};

/// Frames a session may hand over before the loop gives their credits back (per tick).
const INBOUND_CREDIT: usize = 256;
/// Ticks of the server an update may lag behind the newest before its tick is checked
/// without it (the bot is then counted as having skipped it).
const CHECK_LAG: u64 = 40;
/// Views checked per server tick at most: with more bots, they take turns.
const CHECKS_PER_TICK: u64 = 500;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Connecting,
    LoggingIn,
    Walking,
    Failed,
    Gone,
}

struct Bot {
    phase: Phase,
    name: String,
    session: Option<Session>,
    connected_at: Instant,
    entity: u64,
    next_move: Instant,
    last_tick: Option<u64>,
    visible: HashSet<u64>,
    echo: u64,
    out: Vec<Bytes>,
    credit: usize,
    update_bytes: u64,
}

/// What the server said about the world, from the bots' `S2C_Spawned`.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Rules {
    /// The view radius.
    pub view_radius: f32,
    /// Units a second.
    #[serde(rename = "speed_per_sec")]
    pub speed: f32,
    /// The world's side.
    pub world_size: f32,
    /// The server's tick.
    pub tick_ms: u32,
}

/// An entity as a bot saw it: id and position.
type Seen = (u64, f32, f32);

/// One server tick, as the bots were sent it.
#[derive(Default)]
struct TickViews {
    /// Each bot's own position.
    truth: HashMap<u64, (f32, f32)>,
    /// Each bot's view: (observer, entities in view).
    views: Vec<(u64, Vec<Seen>)>,
}

/// What an arena run counted. Its `--json` and `--html` forms are [`ArenaReport::to_json`]
/// and [`ArenaReport::to_html`]; serialized, it is their `results`, in the document's units
/// (milliseconds): the server, bot count and series are the document's own.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ArenaReport {
    /// The server.
    #[serde(skip)]
    pub server: String,
    /// Bots configured.
    #[serde(skip)]
    pub bots: u64,
    /// Connected.
    pub connected: u64,
    /// Logged in and spawned.
    pub spawned: u64,
    /// Connects that failed.
    pub connect_failures: u64,
    /// Logins that failed or timed out.
    pub login_failures: u64,
    /// Seconds the bots walked (from the first connect).
    #[serde(rename = "walk_ms", serialize_with = "record::secs_as_ms")]
    pub walk_secs: f64,
    /// The rules the server announced.
    #[serde(flatten)]
    pub rules: Rules,
    /// Updates received, all bots.
    pub updates: u64,
    /// Updates per second, all bots.
    pub updates_per_sec: f64,
    /// Bytes of updates per second per spawned bot.
    #[serde(rename = "bytes_per_bot_per_sec")]
    pub bytes_per_sec_per_bot: f64,
    /// Mean number of entities in one update.
    pub mean_in_view: f64,
    /// Moves sent.
    pub moves: u64,
    /// Move to the first update echoing it, in microseconds.
    #[serde(rename = "latency_ms", serialize_with = "record::latency_as_ms")]
    pub latency_us: LatencySummary,
    /// Server ticks whose views were all checked.
    pub ticks_checked: u64,
    /// (Observer, entity) pairs checked.
    pub pairs_checked: u64,
    /// Entities missing from a view they should have been in.
    pub missing: u64,
    /// Entities in a view they should not have been in.
    pub extra: u64,
    /// Entities in view at a position other than their own at that tick.
    pub wrong_position: u64,
    /// Pairs at the edge of the view, within one tick of movement, told either way.
    pub at_edge: u64,
    /// Updates whose `entered` or `left` differ from what changed since the last one.
    pub inconsistent_events: u64,
    /// Server ticks a bot was not sent an update of.
    pub skipped_updates: u64,
    /// S2C_Error by code.
    pub errors: BTreeMap<String, u64>,
    /// Disconnects by reason.
    pub disconnects: BTreeMap<String, u64>,
    /// The settings, the per-second series and the latency distribution.
    #[serde(skip)]
    pub run: RunRecord,
}

impl ArenaReport {
    /// Why the run failed; empty when it passed.
    pub fn failures(&self) -> Vec<String> {
        let mut why = Vec::new();
        if self.spawned < self.bots {
            why.push(format!(
                "{} of {} bots were not spawned ({} connect, {} login failures)",
                self.bots - self.spawned,
                self.bots,
                self.connect_failures,
                self.login_failures
            ));
        }
        if self.updates == 0 {
            why.push("no update was received".to_string());
        }
        for (what, n) in [
            ("entities missing from a view", self.missing),
            ("entities in a view they were not near", self.extra),
            ("entities shown at a wrong position", self.wrong_position),
            (
                "updates with wrong entered or left",
                self.inconsistent_events,
            ),
            ("updates skipped", self.skipped_updates),
        ] {
            if n > 0 {
                why.push(format!("{n} {what}"));
            }
        }
        let disconnects: u64 = self.disconnects.values().sum();
        if disconnects > 0 {
            why.push(format!("{disconnects} bots disconnected"));
        }
        why
    }

    /// Whether the run passed.
    pub fn passed(&self) -> bool {
        self.failures().is_empty()
    }

    /// The JSON document of the run (schema in [`crate::record`]).
    pub fn document(&self) -> Document<'_, &ArenaReport> {
        Document::new("arena", &self.run, self, self.failures())
    }

    /// [`ArenaReport::document`] as pretty-printed JSON: the `--json` file.
    pub fn to_json(&self) -> String {
        self.document().to_json()
    }

    /// [`ArenaReport::document`] as a self-contained HTML page: the `--html` file.
    pub fn to_html(&self) -> String {
        self.document().to_html()
    }
}

impl std::fmt::Display for ArenaReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "dummy-client report: arena against {}", self.server)?;
        writeln!(
            f,
            "  bots        {} configured, {} connected, {} spawned (failures: connect {}, login {})",
            self.bots, self.connected, self.spawned, self.connect_failures, self.login_failures
        )?;
        writeln!(
            f,
            "  world       {} x {}, view radius {}, speed {}/s, tick {} ms",
            self.rules.world_size,
            self.rules.world_size,
            self.rules.view_radius,
            self.rules.speed,
            self.rules.tick_ms
        )?;
        writeln!(
            f,
            "  updates     {} ({:.0}/s over {:.1}s), {:.0} bytes/s per bot, {:.1} entities in view on average",
            self.updates, self.updates_per_sec, self.walk_secs, self.bytes_per_sec_per_bot, self.mean_in_view
        )?;
        let l = &self.latency_us;
        writeln!(
            f,
            "  latency     p50 {}  p90 {}  p99 {}  max {}  ({} moves echoed of {} sent; move to the update showing it)",
            fmt_us(l.p50),
            fmt_us(l.p90),
            fmt_us(l.p99),
            fmt_us(l.max),
            l.count,
            self.moves
        )?;
        writeln!(
            f,
            "  views       {} ticks, {} pairs checked: missing {}, extra {}, wrong position {}, at the edge {}",
            self.ticks_checked, self.pairs_checked, self.missing, self.extra, self.wrong_position, self.at_edge
        )?;
        writeln!(
            f,
            "  events      inconsistent {}, skipped updates {}",
            self.inconsistent_events, self.skipped_updates
        )?;
        writeln!(f, "  errors      {}", join_counts(&self.errors))?;
        writeln!(
            f,
            "  disconnects {} ({})",
            self.disconnects.values().sum::<u64>(),
            join_counts(&self.disconnects)
        )?;
        let failures = self.failures();
        if failures.is_empty() {
            writeln!(f, "  result      PASSED")
        } else {
            writeln!(f, "  result      FAILED: {}", failures.join("; "))
        }
    }
}

struct ArenaSwarm {
    config: ClientConfig,
    session_config: SessionConfig,
    tracker: TaskTracker,
    session_tx: mpsc::Sender<SessionEvent>,
    bots: Vec<Bot>,
    by_entity: HashMap<u64, u32>,
    clock: Clock,
    started_at: Instant,
    first_connect: Option<Instant>,
    started: u64,
    ticks: BTreeMap<u64, TickViews>,
    newest_tick: u64,
    latency: Histogram<u64>,
    /// One sample a second, for the progress line and the report.
    series: Series,
    in_view_sum: u64,
    report: ArenaReport,
}

/// Runs the arena scenario as `config` describes, until its duration is over or `shutdown` is
/// cancelled. An error means the run could not start (a TLS trust file that cannot serve).
pub async fn run_arena(
    config: ClientConfig,
    shutdown: CancellationToken,
) -> Result<ArenaReport, crate::RunError> {
    let run_id = new_run_id();
    let (session_tx, mut session_rx) = mpsc::channel(session_event_queue(config.client.bots));
    let now = Instant::now();
    let bots = (0..config.client.bots)
        .map(|i| Bot {
            phase: Phase::Idle,
            name: format!("{}{i:05}.{run_id}", config.bots.name_prefix),
            session: None,
            connected_at: now,
            entity: 0,
            next_move: now,
            last_tick: None,
            visible: HashSet::new(),
            echo: 0,
            out: Vec::new(),
            credit: 0,
            update_bytes: 0,
        })
        .collect();
    let base = SessionConfig {
        max_packet_size: config.client.max_packet_size,
        inbound_credit: INBOUND_CREDIT,
        outbound_batches: 1024,
        max_outbound_bytes: 1 << 20,
        linger: Duration::from_secs(1),
        ..SessionConfig::default()
    };
    let session_config =
        crate::transport::session_configs(&config.client, &[config.client.server], &base)?
            .remove(0);
    let mut swarm = ArenaSwarm {
        session_config,
        report: ArenaReport {
            server: config.client.server.to_string(),
            bots: config.client.bots as u64,
            run: RunRecord::starting(Settings {
                move_interval_ms: Some(config.bots.move_interval_ms),
                ..Settings::of(&config)
            }),
            ..ArenaReport::default()
        },
        series: Series::new(now),
        config,
        tracker: TaskTracker::new(),
        session_tx,
        bots,
        by_entity: HashMap::new(),
        clock: Clock::new(),
        started_at: now,
        first_connect: None,
        started: 0,
        ticks: BTreeMap::new(),
        newest_tick: 0,
        latency: new_histogram(),
        in_view_sum: 0,
    };
    let (service_tx, mut service_rx) = mpsc::channel(4096);
    let connect_stop = CancellationToken::new();
    let service = crate::ramp::connector(
        &swarm.config,
        service_tx,
        connect_stop.clone(),
        swarm.tracker.clone(),
    );
    spdlog::info!(
        "arena: {} bots against {}, a turn every {} ms",
        swarm.bots.len(),
        swarm.config.client.server,
        swarm.config.bots.move_interval_ms
    );
    let tick = swarm.config.client.tick();
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let duration = Duration::from_secs(swarm.config.client.duration_secs);
    let mut next_progress = now + Duration::from_secs(1);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.cancelled() => {}
        }
        let now = Instant::now();
        // Every bot started and none left that can still walk (all connects or logins
        // failed): nothing more can happen.
        let settled = swarm.started == swarm.bots.len() as u64
            && swarm
                .bots
                .iter()
                .all(|b| matches!(b.phase, Phase::Failed | Phase::Gone));
        let over = shutdown.is_cancelled()
            || settled
            || swarm
                .first_connect
                .is_some_and(|first| now.duration_since(first) >= duration);
        if over {
            break;
        }
        swarm.start_connects(&service, now);
        while let Ok(event) = service_rx.try_recv() {
            swarm.on_service_event(event, now);
        }
        while let Ok(event) = session_rx.try_recv() {
            swarm.on_session_event(event);
        }
        swarm.run_timers(now);
        swarm.flush();
        swarm.check_ticks(false);
        if now >= next_progress {
            swarm.progress(now);
            next_progress += Duration::from_secs(1);
        }
    }
    connect_stop.cancel();
    swarm.check_ticks(true);
    let totals = swarm.totals();
    swarm.series.finish(Instant::now(), totals);
    let walked = swarm
        .first_connect
        .map_or(Duration::ZERO, |first| first.elapsed());
    for bot in &mut swarm.bots {
        if let Some(mut session) = bot.session.take() {
            session.close(DisconnectReason::Shutdown);
        }
    }
    swarm.tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(3), swarm.tracker.wait()).await;
    Ok(swarm.finish(walked))
}

impl ArenaSwarm {
    fn start_connects(&mut self, service: &ClientService, now: Instant) {
        let total = self.bots.len() as u64;
        let per_sec = self.config.client.ramp_up_per_sec;
        let target = crate::ramp::due(self.started_at, now, per_sec, total);
        while self.started < target {
            let index = self.started as usize;
            self.bots[index].phase = Phase::Connecting;
            service.connect(self.config.client.server, index as u64);
            self.started += 1;
        }
        // Login deadlines.
        let timeout = self.config.client.login_timeout();
        for bot in &mut self.bots {
            if bot.phase == Phase::LoggingIn && now.duration_since(bot.connected_at) > timeout {
                bot.phase = Phase::Failed;
                self.report.login_failures += 1;
                if let Some(mut session) = bot.session.take() {
                    session.abort(DisconnectReason::Kicked("login timeout".into()));
                }
            }
        }
    }

    fn on_service_event(&mut self, event: ServiceEvent, now: Instant) {
        match event {
            ServiceEvent::Connected { tag, stream } => {
                let Some(bot) = self.bots.get_mut(tag as usize) else {
                    return;
                };
                let session = Session::spawn(
                    SessionId(tag),
                    stream,
                    &self.session_config,
                    self.session_tx.clone(),
                    &self.tracker,
                );
                bot.session = Some(session);
                bot.phase = Phase::LoggingIn;
                bot.connected_at = now;
                self.report.connected += 1;
                self.first_connect.get_or_insert(now);
                let login = C2sLogin {
                    username: bot.name.clone(),
                    password: String::new(),
                    ..Default::default()
                };
                if let Ok(frame) = protocol::frame(&login) {
                    bot.out.push(frame);
                }
            }
            ServiceEvent::ConnectFailed { tag, .. } => {
                if let Some(bot) = self.bots.get_mut(tag as usize) {
                    bot.phase = Phase::Failed;
                    self.report.connect_failures += 1;
                }
            }
            ServiceEvent::Accepted { .. } => {}
        }
    }

    fn on_session_event(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::Received {
                session,
                packet,
                at,
            } => {
                let index = session.0 as usize;
                let Some(bot) = self.bots.get_mut(index) else {
                    return;
                };
                bot.credit += 1;
                let len = packet.payload.len() + net::HEADER_LEN;
                if let Ok(message) = arena::S2cMessage::decode(packet.id, packet.payload.clone()) {
                    self.on_arena_message(index, message, len, at);
                    return;
                }
                match protocol::S2cMessage::decode(packet.id, packet.payload) {
                    Ok(protocol::S2cMessage::S2cError(e)) => {
                        *self
                            .report
                            .errors
                            .entry(format!("{:?}", e.code()))
                            .or_default() += 1;
                        if bot.phase == Phase::LoggingIn {
                            bot.phase = Phase::Failed;
                            self.report.login_failures += 1;
                        }
                    }
                    Ok(protocol::S2cMessage::S2cWelcome(welcome)) => {
                        self.report.run.settings.welcomed(&welcome);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        *self.report.errors.entry("undecodable".into()).or_default() += 1;
                    }
                }
            }
            SessionEvent::Closed { session, reason } => {
                let Some(bot) = self.bots.get_mut(session.0 as usize) else {
                    return;
                };
                bot.session = None;
                if bot.phase == Phase::Walking {
                    bot.phase = Phase::Gone;
                    *self
                        .report
                        .disconnects
                        .entry(reason.to_string())
                        .or_default() += 1;
                } else if bot.phase == Phase::LoggingIn {
                    bot.phase = Phase::Failed;
                    self.report.login_failures += 1;
                }
            }
            SessionEvent::Ready { .. } => {}
        }
    }

    fn on_arena_message(
        &mut self,
        index: usize,
        message: arena::S2cMessage,
        len: usize,
        at: Instant,
    ) {
        let turns = (self.bots.len() as u64).div_ceil(CHECKS_PER_TICK).max(1);
        let bot = &mut self.bots[index];
        match message {
            arena::S2cMessage::S2cSpawned(s) => {
                bot.entity = s.entity;
                bot.phase = Phase::Walking;
                bot.next_move = Instant::now();
                self.by_entity.insert(s.entity, index as u32);
                self.report.spawned += 1;
                self.report.rules = Rules {
                    view_radius: s.view_radius,
                    speed: s.speed,
                    world_size: s.world_size,
                    tick_ms: s.tick_ms,
                };
            }
            arena::S2cMessage::S2cUpdate(u) => {
                self.report.updates += 1;
                bot.update_bytes += len as u64;
                self.in_view_sum += u.entities.len() as u64;
                if u.move_sent_at_us != 0 && u.move_sent_at_us != bot.echo {
                    bot.echo = u.move_sent_at_us;
                    let read_us = self.clock.unix_us(at);
                    let us = read_us.saturating_sub(u.move_sent_at_us);
                    record(&mut self.latency, us);
                    self.series.latency(us);
                }
                if let Some(last) = bot.last_tick {
                    if u.tick > last + 1 {
                        self.report.skipped_updates += u.tick - last - 1;
                    } else if u.tick <= last {
                        self.report.inconsistent_events += 1;
                    }
                }
                bot.last_tick = Some(u.tick);
                if !events_match(&bot.visible, &u) {
                    self.report.inconsistent_events += 1;
                }
                bot.visible = u.entities.iter().map(|e| e.id).collect();
                self.newest_tick = self.newest_tick.max(u.tick);
                let views = self.ticks.entry(u.tick).or_default();
                views.truth.insert(bot.entity, (u.x, u.y));
                // Every bot's position is the truth of every tick; the views checked are a
                // share of the bots each tick, taking turns, so that every bot's view is checked
                // every few ticks while the check costs the swarm a bounded share of its time.
                if (bot.entity + u.tick).is_multiple_of(turns) {
                    views.views.push((
                        bot.entity,
                        u.entities.iter().map(|e| (e.id, e.x, e.y)).collect(),
                    ));
                }
            }
        }
    }

    /// Random walk: a new direction every move interval, from a random phase.
    fn run_timers(&mut self, now: Instant) {
        let interval = Duration::from_millis(self.config.bots.move_interval_ms);
        let mut rng = rand::rng();
        for bot in &mut self.bots {
            if bot.phase != Phase::Walking || now < bot.next_move {
                continue;
            }
            let angle: f32 = rng.random_range(0.0..std::f32::consts::TAU);
            let m = C2sMove {
                dx: angle.cos(),
                dy: angle.sin(),
                sent_at_us: self.clock.unix_us(now),
            };
            if let Ok(frame) = protocol::frame(&m) {
                bot.out.push(frame);
                self.report.moves += 1;
            }
            let jitter = rng.random_range(0..=interval.as_millis() as u64 / 4);
            bot.next_move = now + interval + Duration::from_millis(jitter);
        }
    }

    fn flush(&mut self) {
        for bot in &mut self.bots {
            let Some(session) = &mut bot.session else {
                continue;
            };
            if !bot.out.is_empty() {
                if let Err(SendError::SlowConsumer { .. }) = session.send(&mut bot.out) {
                    session.abort(DisconnectReason::SlowConsumer);
                }
            }
            if bot.credit > 0 {
                session.release_credit(std::mem::take(&mut bot.credit));
            }
        }
    }

    /// Checks every tick that every walking bot has been sent (or that lags far behind the
    /// newest; at the end, `all` of them).
    fn check_ticks(&mut self, all: bool) {
        let walking: Vec<u64> = self
            .bots
            .iter()
            .filter(|b| b.phase == Phase::Walking)
            .filter_map(|b| b.last_tick)
            .collect();
        let complete = walking.iter().copied().min().unwrap_or(0);
        let lagging = self.newest_tick.saturating_sub(CHECK_LAG);
        while let Some((&tick, _)) = self.ticks.first_key_value() {
            if !(all && tick <= complete) && tick > complete.max(lagging) {
                break;
            }
            let Some((_, views)) = self.ticks.pop_first() else {
                break;
            };
            if all && tick > complete {
                continue; // the last ticks, not sent to every bot before the run ended
            }
            check(&mut self.report, &views);
            self.report.ticks_checked += 1;
        }
    }

    /// The running totals the series samples.
    fn totals(&self) -> Totals {
        Totals {
            bots: self
                .bots
                .iter()
                .filter(|b| b.phase == Phase::Walking)
                .count() as u64,
            sent: self.report.moves,
            received: self.report.updates,
            errors: self.report.errors.values().sum(),
            disconnects: self.report.disconnects.values().sum(),
            failovers: 0,
        }
    }

    fn progress(&mut self, now: Instant) {
        let totals = self.totals();
        let (walking, disconnects) = (totals.bots, totals.disconnects);
        let second = self.series.close(now, totals);
        let elapsed = now.duration_since(self.started_at).as_secs();
        let p99 = if second.received == 0 {
            "-".to_owned()
        } else {
            fmt_us((second.latency_p99_ms * 1000.0) as u64)
        };
        let spawned = self.report.spawned.max(1);
        let bytes: u64 = self.bots.iter().map(|b| b.update_bytes).sum();
        let line = format!(
            "[{elapsed:>4}s] bots walking {walking}/{} | last second: moves sent {}, updates received {}, move-to-update p99 {p99} | so far: KB received per bot {}, views missing {}, extra {}, updates skipped {}, disconnects {disconnects}\n",
            self.report.bots,
            second.sent,
            second.received,
            bytes / spawned / 1024,
            self.report.missing,
            self.report.extra,
            self.report.skipped_updates,
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
    }

    fn finish(mut self, walked: Duration) -> ArenaReport {
        let secs = walked.as_secs_f64().max(1e-9);
        let bytes: u64 = self.bots.iter().map(|b| b.update_bytes).sum();
        self.report.walk_secs = walked.as_secs_f64();
        self.report.updates_per_sec = self.report.updates as f64 / secs;
        self.report.bytes_per_sec_per_bot = bytes as f64 / secs / self.report.spawned.max(1) as f64;
        self.report.mean_in_view = self.in_view_sum as f64 / self.report.updates.max(1) as f64;
        self.report.latency_us = LatencySummary::of(&self.latency);
        self.report.run.series = self.series.into_seconds();
        self.report.run.latency_distribution = record::distribution(&self.latency);
        for bot in &self.bots {
            if matches!(
                bot.phase,
                Phase::LoggingIn | Phase::Connecting | Phase::Idle
            ) {
                self.report.login_failures += 1;
            }
        }
        self.report
    }
}

/// Checks every view of one tick against the truth of that tick, counting into `report`.
fn check(report: &mut ArenaReport, views: &TickViews) {
    let rules = report.rules;
    let radius = rules.view_radius;
    let tolerance = rules.speed * rules.tick_ms as f32 / 1000.0;
    let mut grid = Grid::new(rules.world_size, radius + tolerance);
    for (&id, &(x, y)) in &views.truth {
        grid.insert(id, x, y);
    }
    let r2 = radius * radius;
    for (observer, seen) in &views.views {
        let Some(&(ox, oy)) = views.truth.get(observer) else {
            continue;
        };
        let shown: HashMap<u64, (f32, f32)> = seen.iter().map(|&(id, x, y)| (id, (x, y))).collect();
        grid.near(ox, oy, radius + tolerance, |id, x, y| {
            if id == *observer {
                return;
            }
            report.pairs_checked += 1;
            let d2 = (x - ox) * (x - ox) + (y - oy) * (y - oy);
            let inside = d2 <= r2;
            let edge = (d2.sqrt() - radius).abs() <= tolerance;
            match shown.get(&id) {
                Some(&(sx, sy)) => {
                    if !inside && !edge {
                        report.extra += 1;
                    } else if !inside {
                        report.at_edge += 1;
                    }
                    if (sx - x).abs() > 1e-3 || (sy - y).abs() > 1e-3 {
                        report.wrong_position += 1;
                    }
                }
                None if inside && !edge => report.missing += 1,
                None if inside => report.at_edge += 1,
                None => {}
            }
        });
        // Shown but farther than the view and the tolerance: not found by the query.
        for (id, &(x, y)) in &shown {
            if views.truth.contains_key(id) {
                let d = ((x - ox).powi(2) + (y - oy).powi(2)).sqrt();
                if d > radius + tolerance {
                    report.extra += 1;
                }
            }
        }
    }
}

/// Whether `entered` and `left` of `u` are exactly what changed from `before` to its entities.
fn events_match(before: &HashSet<u64>, u: &S2cUpdate) -> bool {
    let now: HashSet<u64> = u.entities.iter().map(|e| e.id).collect();
    let entered: HashSet<u64> = u.entered.iter().map(|e| e.id).collect();
    let left: HashSet<u64> = u.left.iter().copied().collect();
    entered == now.difference(before).copied().collect()
        && left == before.difference(&now).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arena::arena::{Entered, Entity};

    fn update(entities: &[u64], entered: &[u64], left: &[u64]) -> S2cUpdate {
        S2cUpdate {
            entities: entities
                .iter()
                .map(|&id| Entity { id, x: 0.0, y: 0.0 })
                .collect(),
            entered: entered
                .iter()
                .map(|&id| Entered {
                    id,
                    name: String::new(),
                })
                .collect(),
            left: left.to_vec(),
            ..S2cUpdate::default()
        }
    }

    fn rules() -> ArenaReport {
        ArenaReport {
            rules: Rules {
                view_radius: 10.0,
                speed: 10.0,
                world_size: 100.0,
                tick_ms: 50,
            },
            ..ArenaReport::default()
        }
    }

    #[test]
    fn the_report_prints_errors_and_disconnects_as_the_chat_report_does() {
        let mut report = rules();
        let text = report.to_string();
        assert!(text.contains("\n  errors      none\n"), "{text}");
        assert!(text.contains("\n  disconnects 0 (none)\n"), "{text}");
        report.errors.insert("RATE_LIMITED".into(), 2);
        report.disconnects.insert("peer closed".into(), 3);
        let text = report.to_string();
        assert!(text.contains("\n  errors      RATE_LIMITED 2\n"), "{text}");
        assert!(
            text.contains("\n  disconnects 3 (peer closed 3)\n"),
            "{text}"
        );
    }

    #[test]
    fn a_view_that_misses_a_near_entity_or_shows_a_far_one_or_a_wrong_place_is_counted() {
        let mut views = TickViews::default();
        views.truth.insert(1, (50.0, 50.0));
        views.truth.insert(2, (55.0, 50.0)); // near 1
        views.truth.insert(3, (80.0, 50.0)); // far from 1
        views.truth.insert(4, (50.0, 57.0)); // near 1
        views
            .views
            .push((1, vec![(3, 80.0, 50.0), (4, 50.0, 58.0)]));
        let mut report = rules();
        check(&mut report, &views);
        assert_eq!(
            (report.missing, report.extra, report.wrong_position),
            (1, 1, 1),
            "2 missing, 3 extra, 4 misplaced"
        );
        let right = TickViews {
            truth: views.truth.clone(),
            views: vec![(1, vec![(2, 55.0, 50.0), (4, 50.0, 57.0)])],
        };
        let mut report = rules();
        check(&mut report, &right);
        assert_eq!(
            (report.missing, report.extra, report.wrong_position),
            (0, 0, 0)
        );
        assert_eq!(report.pairs_checked, 2);
    }

    #[test]
    fn an_entity_within_one_tick_of_the_edge_may_be_shown_or_not() {
        let mut views = TickViews::default();
        views.truth.insert(1, (50.0, 50.0));
        views.truth.insert(2, (60.3, 50.0)); // 10.3 away: past the radius, within 0.5
        views.views.push((1, vec![(2, 60.3, 50.0)]));
        let mut report = rules();
        check(&mut report, &views);
        assert_eq!((report.extra, report.at_edge), (0, 1));
    }

    #[test]
    fn entered_and_left_must_be_exactly_what_changed() {
        let before: HashSet<u64> = [1, 2].into_iter().collect();
        assert!(events_match(&before, &update(&[2, 3], &[3], &[1])));
        assert!(!events_match(&before, &update(&[2, 3], &[], &[1])));
        assert!(!events_match(&before, &update(&[2, 3], &[3], &[])));
        assert!(!events_match(&before, &update(&[1, 2], &[2], &[])));
    }
}
