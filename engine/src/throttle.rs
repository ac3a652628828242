//! Login throttling: what stops password guessing and account farming, without locking out
//! the owner of an account.
//!
//! Counted in windows (`auth.failure_window_secs`, `auth.registration_window_secs`):
//!
//! - failed password logins for one username *from one address*: past the limit, that address
//!   is refused for that name; the name's owner at another address is not;
//! - failed password logins from one address across names (spraying);
//! - failed resumes from one address, apart from password logins, so that bad tokens do not
//!   lock an address out of password logins;
//! - failed logins to one account from every address together: past a few, the account is
//!   under attack and its logins are *paced*: checked one at a time, spaced 250 ms apart,
//!   doubling per failure up to a cap (8 s by default), with at most a few waiting; more are
//!   answered RATE_LIMITED. Guessing one account from any number of addresses is so held to
//!   one guess per spacing. Addresses the account logged in from recently are trusted for it
//!   and skip the pacing, so its owner at a usual address is never slowed or refused;
//! - accounts created from one address.
//!
//! A login counts against every limit from the moment it is accepted, before its password is
//! hashed (a reservation), and is released when it succeeds: a burst of guesses sent at once is
//! stopped at the limit, not after the hashing thread has tried them all.
//!
//! Pure logic with time passed in: [`LoginThrottle`] is tested in simulated time.

use crate::hash::Map;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use net::SessionId;

/// The limits, from `[auth]`.
#[derive(Clone, Debug)]
pub struct ThrottleConfig {
    /// Failed password logins for one username from one address, per window.
    pub max_failures_per_user: u32,
    /// Failed password logins from one address, per window.
    pub max_failures_per_addr: u32,
    /// Failed resumes from one address, per window.
    pub max_bad_resumes_per_addr: u32,
    /// Failed logins to one account (all addresses) before its logins are delayed.
    pub delay_after_failures: u32,
    /// The longest delay; zero for none.
    pub max_login_delay: Duration,
    /// The failed-login window.
    pub failure_window: Duration,
    /// Accounts created from one address, per registration window.
    pub max_registrations_per_address: u32,
    /// The registration window.
    pub registration_window: Duration,
    /// Addresses that skip the limits per address (failures and bad tokens from one address,
    /// accounts created from one address); the limits per name and per account still apply.
    pub exempt_addresses: Vec<config::AddrRange>,
}

impl From<&config::ServerConfig> for ThrottleConfig {
    fn from(c: &config::ServerConfig) -> Self {
        ThrottleConfig {
            max_failures_per_user: c.auth.max_failures_per_user,
            max_failures_per_addr: c.auth.max_failures_per_addr,
            max_bad_resumes_per_addr: c.auth.max_bad_resumes_per_addr,
            delay_after_failures: c.auth.delay_after_failures,
            max_login_delay: Duration::from_millis(c.auth.max_login_delay_ms),
            failure_window: Duration::from_secs(c.auth.failure_window_secs),
            max_registrations_per_address: c.auth.max_registrations_per_address,
            registration_window: Duration::from_secs(c.auth.registration_window_secs),
            exempt_addresses: c.limits.exempt(),
        }
    }
}

impl ThrottleConfig {
    /// Whether `peer` skips the limits per address.
    pub fn is_exempt(&self, peer: IpAddr) -> bool {
        self.exempt_addresses
            .iter()
            .any(|range| range.contains(peer))
    }
}

/// The first spacing of an account under attack; it doubles with each further failure.
const FIRST_DELAY: Duration = Duration::from_millis(250);

/// Paced logins (waiting or being checked) one account under attack may have; more are
/// refused. Bounds both the owner's wait at an untrusted address and what a flood holds.
pub const MAX_PACED: u32 = 8;

/// How long an address stays trusted for an account after a login from it succeeded.
const TRUST_FOR: Duration = Duration::from_secs(30 * 86_400);

/// Addresses remembered as trusted per account (the most recent).
const TRUSTED_PER_ACCOUNT: usize = 4;

/// Accounts with trusted addresses remembered at most; past it the least recent are forgotten.
const MAX_TRUSTED_ACCOUNTS: usize = 100_000;

/// The address a limit is counted against: an IPv4 address, or the /64 network of an IPv6
/// address (one host usually has a whole /64, so counting single IPv6 addresses would let one
/// host count as billions).
pub fn addr_key(addr: IpAddr) -> IpAddr {
    match config::addr::unmap(addr) {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

/// Events counted in a window that starts at the first of them, plus attempts in flight.
#[derive(Clone, Copy, Debug, Default)]
struct Window {
    count: u32,
    in_flight: u32,
    since: Option<Instant>,
    /// Accounts under attack: paced logins in flight, and when the next may be checked.
    paced: u32,
    next_check: Option<Instant>,
}

impl Window {
    /// Events in the window at `now` (0 once it has passed), plus attempts in flight.
    fn used(&self, now: Instant, window: Duration) -> u32 {
        let live = self
            .since
            .is_some_and(|since| now.saturating_duration_since(since) < window);
        if live {
            self.count + self.in_flight
        } else {
            self.in_flight
        }
    }

    /// How long until a full window has room again: the rest of the window when it is full of
    /// counted events, a second when attempts in flight fill it (they end soon).
    fn retry_in(&self, now: Instant, window: Duration, max: u32) -> Duration {
        match self.since {
            Some(since) if self.count >= max => {
                window.saturating_sub(now.saturating_duration_since(since))
            }
            _ => Duration::from_secs(1),
        }
    }

    /// Counts one event at `now`, starting a new window when the last one has passed.
    fn count(&mut self, now: Instant, window: Duration) {
        if self
            .since
            .is_none_or(|since| now.saturating_duration_since(since) >= window)
        {
            self.since = Some(now);
            self.count = 0;
        }
        self.count += 1;
    }

    fn is_idle(&self, now: Instant, window: Duration) -> bool {
        self.used(now, window) == 0 && self.paced == 0
    }
}

/// What a session has in flight, to be ended by [`LoginThrottle::end`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum Attempt {
    Login {
        addr: IpAddr,
        user: String,
        paced: bool,
    },
    Resume {
        addr: IpAddr,
    },
    Register {
        addr: IpAddr,
        user: String,
    },
}

/// What an ended attempt counted, for the other nodes of a cluster to count as well (see
/// [`LoginThrottle::count_elsewhere`]): so that failed logins, bad tokens and registrations
/// are limited across the cluster, not per node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Counted {
    /// A failed password login for `user` from `addr`.
    LoginFailed {
        /// The client's address key ([`addr_key`]).
        addr: IpAddr,
        /// The username, folded to lowercase.
        user: String,
    },
    /// A password login for `user` from `addr` succeeded.
    LoginSucceeded {
        /// The client's address key.
        addr: IpAddr,
        /// The username, folded to lowercase.
        user: String,
    },
    /// A bad token from `addr`.
    ResumeFailed {
        /// The client's address key.
        addr: IpAddr,
    },
    /// `user` was registered from `addr`.
    Registered {
        /// The client's address key.
        addr: IpAddr,
        /// The username, folded to lowercase.
        user: String,
    },
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Logged in, or the account was created.
    Succeeded,
    /// Wrong password (or unknown name), or a bad token: counted.
    Failed,
    /// Neither: the name was taken, the database failed, the session went away before its
    /// turn. Released without counting.
    Dropped,
}

/// The failed-login and registration counters of the server.
pub struct LoginThrottle {
    config: ThrottleConfig,
    by_pair: Map<(IpAddr, String), Window>,
    by_addr: Map<IpAddr, Window>,
    resumes_by_addr: Map<IpAddr, Window>,
    by_account: Map<String, Window>,
    registrations: Map<IpAddr, Window>,
    in_flight: Map<SessionId, Attempt>,
    /// Per account, the addresses it logged in from recently, and when.
    trusted: Map<String, Vec<(IpAddr, Instant)>>,
}

impl LoginThrottle {
    /// No failures counted yet.
    pub fn new(config: ThrottleConfig) -> Self {
        LoginThrottle {
            config,
            by_pair: Map::default(),
            by_addr: Map::default(),
            resumes_by_addr: Map::default(),
            by_account: Map::default(),
            registrations: Map::default(),
            in_flight: Map::default(),
            trusted: Map::default(),
        }
    }

    /// A password login of `session` from `peer` for `username`: refused (the reason, for
    /// RATE_LIMITED) when that address has failed too often, or when the account is under
    /// attack and has [`MAX_PACED`] logins waiting already; otherwise reserved, with how long
    /// it must wait before its password is checked (zero unless the account is under attack
    /// and the address is not trusted for it).
    pub fn begin_login(
        &mut self,
        session: SessionId,
        peer: IpAddr,
        username: &str,
        now: Instant,
    ) -> Result<Duration, String> {
        let c = &self.config;
        let window = c.failure_window;
        let addr = addr_key(peer);
        let user = username.to_ascii_lowercase();
        let pair_key = (addr, user.clone());
        let pair = self.by_pair.get(&pair_key).copied().unwrap_or_default();
        if pair.used(now, window) >= c.max_failures_per_user {
            let wait = pair.retry_in(now, window, c.max_failures_per_user);
            return Err(format!(
                "too many failed logins for {username} from this address; try again in {} s",
                secs(wait)
            ));
        }
        let exempt = c.is_exempt(peer);
        let from_addr = self.by_addr.get(&addr).copied().unwrap_or_default();
        if !exempt && from_addr.used(now, window) >= c.max_failures_per_addr {
            let wait = from_addr.retry_in(now, window, c.max_failures_per_addr);
            return Err(format!(
                "too many failed logins from this address; try again in {} s",
                secs(wait)
            ));
        }
        let trusted = self.is_trusted(&user, addr, now);
        let account = self.by_account.entry(user.clone()).or_default();
        let spacing = delay_for(account.used(now, window), c);
        let paced = !spacing.is_zero() && !trusted;
        let mut wait = Duration::ZERO;
        if paced {
            let due = account.next_check.map_or(now, |next| next.max(now));
            if account.paced >= MAX_PACED {
                return Err(format!(
                    "{username} is the target of many failed logins and {MAX_PACED} logins to it are waiting; try again in {} s",
                    secs(due.saturating_duration_since(now))
                ));
            }
            account.paced += 1;
            account.next_check = Some(due + spacing);
            wait = due.saturating_duration_since(now);
        }
        account.in_flight += 1;
        self.by_pair.entry(pair_key).or_default().in_flight += 1;
        self.by_addr.entry(addr).or_default().in_flight += 1;
        self.replace(session, Attempt::Login { addr, user, paced }, now);
        Ok(wait)
    }

    /// Whether `addr` logged in to `user` successfully within [`TRUST_FOR`].
    fn is_trusted(&self, user: &str, addr: IpAddr, now: Instant) -> bool {
        self.trusted.get(user).is_some_and(|addrs| {
            addrs
                .iter()
                .any(|(a, at)| *a == addr && now.saturating_duration_since(*at) < TRUST_FOR)
        })
    }

    /// Remembers that `addr` logged in to `user` at `now`.
    fn trust(&mut self, user: &str, addr: IpAddr, now: Instant) {
        if self.trusted.len() >= MAX_TRUSTED_ACCOUNTS && !self.trusted.contains_key(user) {
            // Forget the tenth of the accounts whose last trusted login is the oldest.
            let mut last: Vec<(Instant, String)> = self
                .trusted
                .iter()
                .map(|(u, addrs)| {
                    (
                        addrs.iter().map(|(_, at)| *at).max().unwrap_or(now),
                        u.clone(),
                    )
                })
                .collect();
            last.sort_unstable();
            for (_, u) in last.into_iter().take(MAX_TRUSTED_ACCOUNTS / 10) {
                self.trusted.remove(&u);
            }
        }
        let addrs = self.trusted.entry(user.to_string()).or_default();
        addrs.retain(|(a, _)| *a != addr);
        addrs.push((addr, now));
        if addrs.len() > TRUSTED_PER_ACCOUNT {
            addrs.remove(0);
        }
    }

    /// A resume of `session` from `peer`: refused when bad tokens from that address passed
    /// their limit, or reserved.
    pub fn begin_resume(
        &mut self,
        session: SessionId,
        peer: IpAddr,
        now: Instant,
    ) -> Result<(), String> {
        let c = &self.config;
        let addr = addr_key(peer);
        let exempt = c.is_exempt(peer);
        let resumes = self.resumes_by_addr.entry(addr).or_default();
        if !exempt && resumes.used(now, c.failure_window) >= c.max_bad_resumes_per_addr {
            let wait = resumes.retry_in(now, c.failure_window, c.max_bad_resumes_per_addr);
            return Err(format!(
                "too many invalid tokens from this address; try again in {} s",
                secs(wait)
            ));
        }
        resumes.in_flight += 1;
        self.replace(session, Attempt::Resume { addr }, now);
        Ok(())
    }

    /// A registration of `session` from `peer`: refused when the address created its share of
    /// accounts in the window (unless it is `exempt`), or reserved.
    pub fn begin_register(
        &mut self,
        session: SessionId,
        peer: IpAddr,
        username: &str,
        now: Instant,
    ) -> Result<(), String> {
        let c = &self.config;
        let exempt = c.is_exempt(peer);
        let addr = addr_key(peer);
        let created = self.registrations.entry(addr).or_default();
        if !exempt && created.used(now, c.registration_window) >= c.max_registrations_per_address {
            let wait =
                created.retry_in(now, c.registration_window, c.max_registrations_per_address);
            return Err(format!(
                "{} accounts were created from this address, the most allowed; try again in {} s",
                c.max_registrations_per_address,
                secs(wait)
            ));
        }
        created.in_flight += 1;
        let user = username.to_ascii_lowercase();
        self.replace(session, Attempt::Register { addr, user }, now);
        Ok(())
    }

    /// Ends what `session` has in flight (nothing when it has none); returns what it
    /// counted, if anything.
    pub fn end(&mut self, session: SessionId, outcome: Outcome, now: Instant) -> Option<Counted> {
        let attempt = self.in_flight.remove(&session)?;
        let counted = match (&attempt, outcome) {
            (Attempt::Login { addr, user, .. }, Outcome::Failed) => Some(Counted::LoginFailed {
                addr: *addr,
                user: user.clone(),
            }),
            (Attempt::Login { addr, user, .. }, Outcome::Succeeded) => {
                Some(Counted::LoginSucceeded {
                    addr: *addr,
                    user: user.clone(),
                })
            }
            (Attempt::Resume { addr }, Outcome::Failed) => {
                Some(Counted::ResumeFailed { addr: *addr })
            }
            (Attempt::Register { addr, user }, Outcome::Succeeded) => Some(Counted::Registered {
                addr: *addr,
                user: user.clone(),
            }),
            _ => None,
        };
        let window = self.config.failure_window;
        match attempt {
            Attempt::Login { addr, user, paced } => {
                if paced {
                    if let Some(account) = self.by_account.get_mut(&user) {
                        account.paced = account.paced.saturating_sub(1);
                    }
                }
                let pair_key = (addr, user.clone());
                for w in [
                    self.by_pair.get_mut(&pair_key),
                    self.by_addr.get_mut(&addr),
                    self.by_account.get_mut(&user),
                ]
                .into_iter()
                .flatten()
                {
                    w.in_flight = w.in_flight.saturating_sub(1);
                    if outcome == Outcome::Failed {
                        w.count(now, window);
                    }
                }
                if outcome == Outcome::Succeeded {
                    // The owner proved itself: its record at this address and its account's
                    // are clean (what is still in flight stays counted).
                    for w in [
                        self.by_pair.get_mut(&pair_key),
                        self.by_account.get_mut(&user),
                    ]
                    .into_iter()
                    .flatten()
                    {
                        w.count = 0;
                    }
                    self.trust(&user, addr, now);
                }
            }
            Attempt::Resume { addr } => {
                if let Some(w) = self.resumes_by_addr.get_mut(&addr) {
                    w.in_flight = w.in_flight.saturating_sub(1);
                    if outcome == Outcome::Failed {
                        w.count(now, window);
                    }
                }
            }
            Attempt::Register { addr, user } => {
                let window = self.config.registration_window;
                if let Some(w) = self.registrations.get_mut(&addr) {
                    w.in_flight = w.in_flight.saturating_sub(1);
                    if outcome == Outcome::Succeeded {
                        w.count(now, window);
                    }
                }
                if outcome == Outcome::Succeeded {
                    self.trust(&user, addr, now);
                }
            }
        }
        counted
    }

    /// Counts what another node of the cluster counted, as if it had been here: failed
    /// logins against the address, the pair and the account (so an account's pacing holds
    /// across nodes), a success clearing the pair and the account, bad tokens and
    /// registrations against the address.
    pub fn count_elsewhere(&mut self, counted: Counted, now: Instant) {
        let window = self.config.failure_window;
        match counted {
            Counted::LoginFailed { addr, user } => {
                self.by_pair
                    .entry((addr, user.clone()))
                    .or_default()
                    .count(now, window);
                self.by_addr.entry(addr).or_default().count(now, window);
                self.by_account.entry(user).or_default().count(now, window);
            }
            Counted::LoginSucceeded { addr, user } => {
                if let Some(w) = self.by_pair.get_mut(&(addr, user.clone())) {
                    w.count = 0;
                }
                if let Some(w) = self.by_account.get_mut(&user) {
                    w.count = 0;
                }
                self.trust(&user, addr, now);
            }
            Counted::ResumeFailed { addr } => {
                self.resumes_by_addr
                    .entry(addr)
                    .or_default()
                    .count(now, window);
            }
            Counted::Registered { addr, user } => {
                let window = self.config.registration_window;
                self.registrations
                    .entry(addr)
                    .or_default()
                    .count(now, window);
                self.trust(&user, addr, now);
            }
        }
    }

    /// Whether `session` has an attempt in flight.
    pub fn has_in_flight(&self, session: SessionId) -> bool {
        self.in_flight.contains_key(&session)
    }

    /// Sessions with an attempt in flight.
    pub fn sessions_in_flight(&self) -> Vec<SessionId> {
        self.in_flight.keys().copied().collect()
    }

    /// Forgets counters whose window has passed and that have nothing in flight, so that the
    /// maps hold only what is recent.
    pub fn sweep(&mut self, now: Instant) {
        let failures = self.config.failure_window;
        let registrations = self.config.registration_window;
        self.by_pair.retain(|_, w| !w.is_idle(now, failures));
        self.by_addr.retain(|_, w| !w.is_idle(now, failures));
        self.resumes_by_addr
            .retain(|_, w| !w.is_idle(now, failures));
        self.by_account.retain(|_, w| !w.is_idle(now, failures));
        self.registrations
            .retain(|_, w| !w.is_idle(now, registrations));
        self.trusted.retain(|_, addrs| {
            addrs.retain(|(_, at)| now.saturating_duration_since(*at) < TRUST_FOR);
            !addrs.is_empty()
        });
    }

    /// Counters held, all maps together.
    pub fn len(&self) -> usize {
        self.by_pair.len()
            + self.by_addr.len()
            + self.resumes_by_addr.len()
            + self.by_account.len()
            + self.registrations.len()
    }

    /// Whether no counter is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records `attempt` as what `session` has in flight; one session has one login at a
    /// time, so an earlier one (there is none unless a caller forgot to end it) is dropped.
    fn replace(&mut self, session: SessionId, attempt: Attempt, now: Instant) {
        if self.in_flight.contains_key(&session) {
            self.end(session, Outcome::Dropped, now);
        }
        self.in_flight.insert(session, attempt);
    }
}

/// The spacing of logins to an account with `used` failures and logins in flight; zero while
/// it is not under attack.
fn delay_for(used: u32, c: &ThrottleConfig) -> Duration {
    if c.max_login_delay.is_zero() || used < c.delay_after_failures {
        return Duration::ZERO;
    }
    let doublings = (used - c.delay_after_failures).min(16);
    (FIRST_DELAY * (1u32 << doublings)).min(c.max_login_delay)
}

/// Whole seconds, rounded up, at least 1.
fn secs(d: Duration) -> u64 {
    (d.as_millis().div_ceil(1000) as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default limits, with no address exempt.
    fn config() -> ThrottleConfig {
        ThrottleConfig {
            exempt_addresses: Vec::new(),
            ..ThrottleConfig::from(&config::ServerConfig::default())
        }
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([203, 0, 113, n])
    }

    #[test]
    fn logins_in_flight_count_so_a_burst_stops_at_the_limit() {
        let mut t = LoginThrottle::new(config());
        let now = Instant::now();
        let admitted = (0..200)
            .filter(|&i| t.begin_login(SessionId(i), ip(1), "bob", now).is_ok())
            .count();
        assert_eq!(admitted, 5, "max_failures_per_user from one address");
    }

    #[test]
    fn a_success_releases_its_reservation_and_a_failure_keeps_it() {
        let mut t = LoginThrottle::new(config());
        let now = Instant::now();
        for i in 0..5 {
            t.begin_login(SessionId(i), ip(1), "bob", now).unwrap();
        }
        assert!(t.begin_login(SessionId(9), ip(1), "bob", now).is_err());
        t.end(SessionId(0), Outcome::Succeeded, now);
        // The success cleared bob's record from this address.
        assert!(t.begin_login(SessionId(10), ip(1), "bob", now).is_ok());
        for i in 1..5 {
            t.end(SessionId(i), Outcome::Failed, now);
        }
        t.end(SessionId(10), Outcome::Failed, now);
        let refused = t.begin_login(SessionId(11), ip(1), "bob", now).unwrap_err();
        assert!(refused.contains("try again in 300 s"), "{refused}");
        assert!(t
            .begin_login(SessionId(12), ip(1), "bob", now + Duration::from_secs(300))
            .is_ok());
    }

    #[test]
    fn failures_for_one_name_from_one_address_do_not_refuse_its_owner_elsewhere() {
        let mut t = LoginThrottle::new(config());
        let now = Instant::now();
        for i in 0..5 {
            t.begin_login(SessionId(i), ip(1), "bob", now).unwrap();
            t.end(SessionId(i), Outcome::Failed, now);
        }
        assert!(t.begin_login(SessionId(8), ip(1), "bob", now).is_err());
        assert!(t.begin_login(SessionId(9), ip(2), "bob", now).is_ok());
    }

    #[test]
    fn bad_resumes_limit_resumes_of_the_address_but_not_its_password_logins() {
        let mut t = LoginThrottle::new(config());
        let now = Instant::now();
        for i in 0..20 {
            t.begin_resume(SessionId(i), ip(1), now).unwrap();
            t.end(SessionId(i), Outcome::Failed, now);
        }
        assert!(t.begin_resume(SessionId(50), ip(1), now).is_err());
        assert_eq!(
            t.begin_login(SessionId(51), ip(1), "bob", now),
            Ok(Duration::ZERO)
        );
    }

    #[test]
    fn spraying_many_names_from_one_address_is_stopped() {
        let mut t = LoginThrottle::new(config());
        let now = Instant::now();
        for i in 0..20 {
            t.begin_login(SessionId(i), ip(1), &format!("user{i}"), now)
                .unwrap();
            t.end(SessionId(i), Outcome::Failed, now);
        }
        let refused = t
            .begin_login(SessionId(99), ip(1), "fresh", now)
            .unwrap_err();
        assert!(refused.contains("from this address"), "{refused}");
        assert!(t.begin_login(SessionId(100), ip(2), "fresh", now).is_ok());
    }

    /// Five failures for bob, from five addresses: the account is under attack.
    fn under_attack(t: &mut LoginThrottle, now: Instant) {
        for i in 0..5u8 {
            let session = SessionId(1000 + i as u64);
            assert_eq!(
                t.begin_login(session, ip(100 + i), "bob", now),
                Ok(Duration::ZERO)
            );
            t.end(session, Outcome::Failed, now);
        }
    }

    #[test]
    fn logins_to_an_account_under_attack_are_checked_one_per_growing_spacing() {
        let mut t = LoginThrottle::new(config());
        let now = Instant::now();
        under_attack(&mut t, now);
        // Ten guesses at once from ten fresh addresses.
        let answers: Vec<Result<Duration, String>> = (0..10u8)
            .map(|i| t.begin_login(SessionId(i as u64), ip(i), "bob", now))
            .collect();
        let waits: Vec<u128> = answers
            .iter()
            .filter_map(|a| a.as_ref().ok())
            .map(Duration::as_millis)
            .collect();
        assert_eq!(waits, [0, 250, 750, 1750, 3750, 7750, 15750, 23750]);
        let refused = answers[8].as_ref().unwrap_err();
        assert!(refused.contains("8 logins to it are waiting"), "{refused}");
        assert!(answers[9].is_err());
        // As they end, room to wait opens again, behind the last one.
        t.end(SessionId(0), Outcome::Failed, now);
        assert_eq!(
            t.begin_login(SessionId(20), ip(20), "bob", now),
            Ok(Duration::from_millis(31750))
        );
    }

    #[test]
    fn an_address_the_owner_logged_in_from_skips_the_pacing_and_is_never_refused() {
        let mut t = LoginThrottle::new(config());
        let now = Instant::now();
        let home = ip(200);
        t.begin_login(SessionId(500), home, "bob", now).unwrap();
        t.end(SessionId(500), Outcome::Succeeded, now);
        under_attack(&mut t, now);
        for i in 0..8u8 {
            t.begin_login(SessionId(i as u64), ip(i), "bob", now)
                .unwrap();
        }
        assert!(
            t.begin_login(SessionId(9), ip(9), "bob", now).is_err(),
            "full"
        );
        assert_eq!(
            t.begin_login(SessionId(501), home, "BOB", now),
            Ok(Duration::ZERO)
        );
        t.end(SessionId(501), Outcome::Succeeded, now);
        // In: the account's failures are forgotten; once the guesses in flight are gone,
        // nobody is paced.
        for i in 0..8 {
            t.end(SessionId(i), Outcome::Dropped, now);
        }
        assert_eq!(
            t.begin_login(SessionId(30), ip(30), "bob", now),
            Ok(Duration::ZERO)
        );
        // Trust lasts 30 days.
        let later = now + Duration::from_secs(31 * 86_400);
        t.sweep(later);
        assert!(!t.is_trusted("bob", home, later));
    }

    #[test]
    fn the_address_an_account_was_registered_from_is_trusted_for_it() {
        let mut t = LoginThrottle::new(config());
        let now = Instant::now();
        t.begin_register(SessionId(1), ip(7), "Bob", now).unwrap();
        t.end(SessionId(1), Outcome::Succeeded, now);
        under_attack(&mut t, now);
        for i in 0..8u8 {
            t.begin_login(SessionId(10 + i as u64), ip(i), "bob", now)
                .unwrap();
        }
        assert_eq!(
            t.begin_login(SessionId(2), ip(7), "bob", now),
            Ok(Duration::ZERO)
        );
    }

    #[test]
    fn failures_below_the_threshold_do_not_pace_an_account() {
        let mut t = LoginThrottle::new(config());
        let now = Instant::now();
        for i in 0..4u8 {
            let session = SessionId(i as u64);
            assert_eq!(
                t.begin_login(session, ip(i), "bob", now),
                Ok(Duration::ZERO)
            );
            t.end(session, Outcome::Failed, now);
        }
        assert_eq!(
            t.begin_login(SessionId(9), ip(9), "bob", now),
            Ok(Duration::ZERO)
        );
    }

    #[test]
    fn registrations_per_address_are_limited_counting_those_in_flight_unless_exempt() {
        let mut t = LoginThrottle::new(config());
        let now = Instant::now();
        let admitted = (0..50)
            .filter(|&i| {
                t.begin_register(SessionId(i), ip(1), &format!("u{i}"), now)
                    .is_ok()
            })
            .count();
        assert_eq!(admitted, 10);
        // A taken name creates nothing: its reservation goes back.
        t.end(SessionId(0), Outcome::Dropped, now);
        assert!(t.begin_register(SessionId(60), ip(1), "u60", now).is_ok());
        for i in 1..10 {
            t.end(SessionId(i), Outcome::Succeeded, now);
        }
        t.end(SessionId(60), Outcome::Succeeded, now);
        let refused = t
            .begin_register(SessionId(61), ip(1), "u61", now)
            .unwrap_err();
        assert!(refused.contains("try again in 3600 s"), "{refused}");
        assert!(t.begin_register(SessionId(63), ip(2), "u63", now).is_ok());
        let later = now + Duration::from_secs(3600);
        assert!(t.begin_register(SessionId(64), ip(1), "u64", later).is_ok());
    }

    #[test]
    fn exempt_addresses_skip_the_limits_per_address_but_not_per_name() {
        let mut t = LoginThrottle::new(ThrottleConfig {
            exempt_addresses: vec!["203.0.113.0/24".parse().unwrap()],
            ..config()
        });
        let now = Instant::now();
        // Many logins at once from one exempt address (bots, an office behind one address).
        for i in 0..500 {
            let user = format!("user{i}");
            assert!(t.begin_login(SessionId(i), ip(1), &user, now).is_ok());
            assert!(t.begin_resume(SessionId(1000 + i), ip(1), now).is_ok());
            assert!(t
                .begin_register(SessionId(2000 + i), ip(1), &user, now)
                .is_ok());
        }
        // Guessing one name is stopped all the same.
        for i in 0..5 {
            assert!(t
                .begin_login(SessionId(3000 + i), ip(2), "bob", now)
                .is_ok());
        }
        assert!(t.begin_login(SessionId(3009), ip(2), "bob", now).is_err());
    }

    #[test]
    fn ipv6_addresses_of_one_slash_64_count_as_one() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(addr_key(a), addr_key(b));
        assert_ne!(addr_key(a), addr_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(addr_key(mapped), IpAddr::from([10, 0, 0, 1]));
    }

    #[test]
    fn sweep_forgets_passed_windows_but_not_attempts_in_flight() {
        let mut t = LoginThrottle::new(config());
        let now = Instant::now();
        t.begin_login(SessionId(1), ip(1), "bob", now).unwrap();
        t.end(SessionId(1), Outcome::Failed, now);
        t.begin_login(SessionId(2), ip(2), "ann", now).unwrap();
        let later = now + Duration::from_secs(301);
        t.sweep(later);
        assert_eq!(
            t.len(),
            3,
            "ann's pair, address and account, still in flight"
        );
        t.end(SessionId(2), Outcome::Dropped, later);
        t.sweep(later);
        assert!(t.is_empty());
    }
}
