//! Resumable sessions (`bots.resumable`) and chaos (`bots.chaos_per_min`): a bot whose
//! connection drops takes its session back, as the protocol page's "Resuming a session" says a
//! client does.
//!
//! A resumable bot counts the frames it receives after its login's answer and the requests it
//! sends after its login request; it keeps each request until a pong (or the resume's answer)
//! says the server processed it, and acknowledges what it received in every ping (pings go
//! at least every [`ACK_INTERVAL`]). When its connection drops (chaos closes the socket, or
//! stalls it: the bot stops reading and writing it and notices [`STALL_NOTICED`] later, as a
//! client that misses its pong does; or the server's side ends it), the bot stays a member
//! of its room for the ledger: every line said meanwhile is still *due* to it, and must come
//! in the replay, once. It connects again at once (after a close) and sends
//! `C2S_SessionResume`; what it says meanwhile is kept, numbered, and sent after the answer
//! with the requests the server had not processed. A resume refused (`SESSION_LOST`), or not
//! done within `client.login_timeout_secs` of the drop, fails the run: the bot leaves its
//! room, and the lines owed to it are lost.

use std::collections::VecDeque;

use protocol::world::{C2sSessionResume, S2cSessionResumed};

use super::*;

/// The longest a resumable bot goes without acknowledging what it received.
pub(super) const ACK_INTERVAL: Duration = Duration::from_secs(1);
/// How long a bot takes to notice a stalled connection: two acknowledgements unanswered.
pub(super) const STALL_NOTICED: Duration = Duration::from_secs(2);
/// How long a stalled connection is kept open (silent) before the bot lets it go; the server
/// closes it first when the resume takes the session over.
const STALL_KEPT: Duration = Duration::from_secs(10);
/// Requests a bot keeps for the server at most. A bot that keeps more has had no pong for
/// far longer than a resume may take: it stops being resumable.
const MAX_KEPT: usize = 4096;
/// Wait before the connect of a resume after a refused connect or a connection that ended
/// before the answer; it doubles with each attempt.
const RESUME_BACKOFF: Duration = Duration::from_millis(100);

/// How a connection was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DropKind {
    /// Chaos closed the socket.
    Closed,
    /// Chaos stopped reading and writing the socket, and left it open.
    Stalled,
    /// The connection ended on its own (the server's side, the network).
    Lost,
}

impl DropKind {
    fn label(self) -> &'static str {
        match self {
            DropKind::Closed => "closed",
            DropKind::Stalled => "stalled",
            DropKind::Lost => "lost",
        }
    }
}

/// What a resumable bot keeps and counts. See the module docs.
#[derive(Debug, Default)]
pub(super) struct Resumable {
    /// The session token; empty until the login's answer.
    token: Box<str>,
    /// Frames are counted: after the login's answer, and after a resume's answer.
    counting: bool,
    /// Frames received since the login's answer.
    pub(super) received: u64,
    /// Requests sent since the login request (the number of the last).
    sent: u64,
    /// Requests the server said it processed.
    processed: u64,
    /// Requests `processed + 1 ..= sent`, to send again after a resume.
    kept: VecDeque<Bytes>,
    /// The drop under way: when, and how.
    lost: Option<(Instant, DropKind)>,
    /// When its next connect is due, while dropped.
    retry_at: Option<Instant>,
    /// When the connect of the resume under way started.
    connect_at: Option<Instant>,
    /// Connects of the resume under way.
    attempts: u32,
}

impl Resumable {
    /// A bot whose login request went out: the requests after it are numbered.
    pub(super) fn numbering() -> Box<Resumable> {
        Box::default()
    }

    /// Whether a drop is under way (the bot is taking its session back).
    pub(super) fn is_away(&self) -> bool {
        self.lost.is_some()
    }

    /// Numbers `frame`, a request, and keeps it for the server. False when the bot keeps too
    /// many to go on being resumable.
    pub(super) fn number(&mut self, frame: &Bytes) -> bool {
        self.sent += 1;
        self.kept.push_back(frame.clone());
        self.kept.len() <= MAX_KEPT
    }

    /// One more frame received, when counting.
    pub(super) fn count(&mut self) {
        if self.counting {
            self.received += 1;
        }
    }

    /// The server processed `processed` requests: those are not kept any more.
    pub(super) fn processed(&mut self, processed: u64) {
        if processed <= self.processed {
            return;
        }
        self.processed = processed.min(self.sent);
        let left = (self.sent - self.processed) as usize;
        while self.kept.len() > left {
            self.kept.pop_front();
        }
    }
}

impl Swarm {
    /// Logins ask for resumable sessions.
    pub(super) fn resumable(&self) -> bool {
        self.config.bots.resumable || self.config.bots.chaos_per_min > 0.0
    }

    /// The chance that chaos drops one bot's connection in one tick.
    pub(super) fn chaos_per_tick(&self) -> f64 {
        let tick = self.config.client.tick().as_secs_f64();
        (self.config.bots.chaos_per_min / 60.0 * tick).min(1.0)
    }

    /// The login's answer gave `token`: frames are counted from now on. A server that keeps
    /// no sessions gives none: the bot is then an ordinary one.
    pub(super) fn resumable_login(&mut self, index: u32, token: &str) {
        let bot = &mut self.bots[index as usize];
        let Some(resume) = bot.resume.as_mut() else {
            return;
        };
        if token.is_empty() {
            bot.resume = None;
            self.counters.not_resumable += 1;
            return;
        }
        resume.token = token.into();
        resume.counting = true;
    }

    /// Chaos drops the connection of bot `index` (in its room): closes it, or stalls it.
    pub(super) fn chaos(&mut self, index: u32, now: Instant) {
        let stall = rand::rng().random_bool(0.5);
        let bot = &mut self.bots[index as usize];
        let Some(mut session) = bot.session.take() else {
            return;
        };
        if stall {
            // Left open and unread: to the server, a link that went silent.
            self.stalled.push_back((now + STALL_KEPT, session));
            self.dropped(index, DropKind::Stalled, now);
        } else {
            session.abort(DisconnectReason::Kicked("chaos: connection dropped".into()));
            self.dropped(index, DropKind::Closed, now);
        }
    }

    /// The connection of bot `index`, resumable and in its room, dropped at `now` (`how`): it
    /// takes its session back on a new one. Whatever the old connection still brings is
    /// stale from now on.
    pub(super) fn dropped(&mut self, index: u32, how: DropKind, now: Instant) {
        let bot = &mut self.bots[index as usize];
        let Some(resume) = bot.resume.as_mut() else {
            return;
        };
        bot.connects += 1;
        bot.tag = tag(index, bot.connects);
        bot.session = None;
        bot.out.clear();
        bot.next_ping = None;
        bot.retry_auth_at = None;
        bot.phase = Phase::Dropped;
        resume.counting = false;
        resume.lost = Some((now, how));
        resume.attempts = 0;
        resume.retry_at = Some(match how {
            DropKind::Stalled => now + STALL_NOTICED,
            DropKind::Closed | DropKind::Lost => now,
        });
        self.counters.resuming += 1;
        *self
            .counters
            .drops
            .entry(how.label().to_owned())
            .or_default() += 1;
        spdlog::debug!("swarm: bot {index}: connection {}", how.label());
    }

    /// A dropped bot whose connect is due connects again; one past its deadline fails.
    pub(super) fn resume_timers(&mut self, index: u32, service: &ClientService, now: Instant) {
        let deadline = self.config.client.login_timeout();
        let bot = &mut self.bots[index as usize];
        let Some(resume) = bot.resume.as_mut() else {
            return;
        };
        let Some((lost_at, _)) = resume.lost else {
            return;
        };
        if now.saturating_duration_since(lost_at) >= deadline {
            let why = format!("not resumed within {}s", deadline.as_secs());
            self.resume_failed(index, "timed out", why);
            return;
        }
        if bot.phase != Phase::Dropped || resume.retry_at.is_none_or(|at| at > now) {
            return;
        }
        resume.retry_at = None;
        resume.attempts += 1;
        resume.connect_at = Some(now);
        bot.connects += 1;
        bot.tag = tag(index, bot.connects);
        bot.phase = Phase::Connecting;
        bot.connect_started = now;
        bot.closing = false;
        self.counters.resume_connects += 1;
        service.connect(self.servers[bot.node], bot.tag);
    }

    /// A connect or a connection of a resume failed before the answer: it tries again.
    pub(super) fn resume_later(&mut self, index: u32, now: Instant) {
        let bot = &mut self.bots[index as usize];
        let Some(resume) = bot.resume.as_mut() else {
            return;
        };
        bot.session = None;
        bot.phase = Phase::Dropped;
        let backoff = RESUME_BACKOFF * 2u32.saturating_pow(resume.attempts.min(4));
        resume.retry_at = Some(now + backoff);
    }

    /// Whether bot `index` is taking its session back (its connect or connection is a
    /// resume's).
    pub(super) fn is_resuming(&self, index: u32) -> bool {
        self.bots[index as usize]
            .resume
            .as_ref()
            .is_some_and(|r| r.is_away())
    }

    /// The new connection of a dropped bot is up: it asks for its session, and sends nothing
    /// else until the answer.
    pub(super) fn send_session_resume(&mut self, index: u32) {
        let bot = &mut self.bots[index as usize];
        let Some(resume) = bot.resume.as_ref() else {
            return;
        };
        bot.phase = Phase::Resuming;
        let request = C2sSessionResume {
            session_token: resume.token.to_string(),
            received: resume.received,
        };
        match self.encoder.frame(&request) {
            Ok(frame) => {
                // Not a numbered request: the count goes on after it.
                bot.out.push(frame);
                if !bot.dirty {
                    bot.dirty = true;
                    self.dirty.push(index);
                }
            }
            Err(error) => spdlog::error!("swarm: bot {index}: {error}"),
        }
    }

    /// The session is back: the frames that follow are those the bot missed; the requests the
    /// server had not processed go again, in order.
    pub(super) fn resumed(&mut self, index: u32, answer: S2cSessionResumed, at: Instant) {
        let bot = &mut self.bots[index as usize];
        let Some(resume) = bot.resume.as_mut() else {
            return;
        };
        let Some((lost_at, how)) = resume.lost.take() else {
            return;
        };
        if answer.processed > resume.sent || answer.sent < resume.received {
            spdlog::warn!(
                "swarm: bot {index}: the server processed {} of {} requests and sent {} of {} frames received",
                answer.processed,
                resume.sent,
                answer.sent,
                resume.received
            );
        }
        resume.processed(answer.processed);
        resume.counting = true;
        self.counters.replayed += answer.sent.saturating_sub(resume.received);
        let resent = resume.kept.len() as u64;
        bot.out.extend(resume.kept.iter().cloned());
        if !bot.dirty {
            bot.dirty = true;
            self.dirty.push(index);
        }
        if let Some(connect_at) = resume.connect_at.take() {
            let took = at.saturating_duration_since(connect_at);
            report::record(&mut self.resume_latency, took.as_micros() as u64);
        }
        let outage = at.saturating_duration_since(lost_at);
        report::record(&mut self.outage, outage.as_micros() as u64);
        bot.phase = Phase::Joined;
        if let Some(ping) = self.config.bots.ping_interval() {
            bot.next_ping = Some(at + random_phase(ping.min(ACK_INTERVAL)));
        }
        self.counters.resumes += 1;
        self.counters.resuming -= 1;
        self.counters.resent += resent;
        spdlog::debug!(
            "swarm: bot {index}: resumed after {outage:?} ({}): {} frames missed, {resent} requests sent again",
            how.label(),
            answer.sent.saturating_sub(self.bots[index as usize].resume.as_ref().map_or(0, |r| r.received))
        );
    }

    /// The resume of bot `index` failed (`cause`, logged with `why`): it is out of its room,
    /// and what it was owed is lost. It fails the run.
    pub(super) fn resume_failed(&mut self, index: u32, cause: &str, why: String) {
        spdlog::warn!("swarm: bot {index}: could not take its session back: {why}");
        let bot = &mut self.bots[index as usize];
        bot.resume = None;
        bot.closing = true;
        if let Some(session) = &mut bot.session {
            session.abort(DisconnectReason::Kicked(why));
        }
        self.counters.resuming -= 1;
        self.counters.resume_failures += 1;
        *self
            .counters
            .resume_errors
            .entry(cause.to_owned())
            .or_default() += 1;
        self.leave(index);
    }

    /// Stalled connections kept past their time are let go.
    pub(super) fn let_go_of_stalled(&mut self, now: Instant) {
        while self.stalled.front().is_some_and(|(until, _)| *until <= now) {
            self.stalled.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u8) -> Bytes {
        Bytes::from(vec![n; 5])
    }

    #[test]
    fn requests_are_kept_until_the_server_says_it_processed_them() {
        let mut r = Resumable::numbering();
        for n in 1..=5 {
            assert!(r.number(&frame(n)));
        }
        r.processed(3);
        let kept: Vec<u8> = r.kept.iter().map(|f| f[0]).collect();
        assert_eq!(kept, [4, 5], "the two the server has not processed");
        r.processed(2);
        assert_eq!(r.kept.len(), 2, "an older count changes nothing");
        r.processed(9);
        assert!(r.kept.is_empty(), "more than was sent: all of it");
        assert!(r.number(&frame(6)));
        assert_eq!(r.kept.len(), 1);
        r.processed(6);
        assert!(r.kept.is_empty());
    }

    #[test]
    fn frames_count_only_once_the_login_or_the_resume_is_answered() {
        let mut r = Resumable::numbering();
        r.count();
        assert_eq!(r.received, 0, "the login's answer and what came before");
        r.counting = true;
        r.count();
        r.count();
        assert_eq!(r.received, 2);
    }

    #[test]
    fn a_bot_that_keeps_too_many_requests_stops_being_resumable() {
        let mut r = Resumable::numbering();
        for _ in 0..MAX_KEPT {
            assert!(r.number(&frame(0)));
        }
        assert!(!r.number(&frame(0)));
    }
}
