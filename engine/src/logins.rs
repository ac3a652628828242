//! Logins as they complete: the DB worker's answers to logins, registrations and resumes
//! ([`poll_db`], [`finish`]), and the password logins that waited out the delay of an account
//! under attack ([`submit_delayed`]). The handlers that start them are in
//! [`crate::handlers::auth`]; both sides share the reservations of [`crate::throttle`].

use std::net::IpAddr;
use std::time::Instant;

use net::SessionId;
use protocol::world::{C2sLogin, S2cAuthResult};
use protocol::{ErrorCode, MessageType};

use crate::db::{token_hash, AuthFailure, Authenticated, DbEvent, DbJob, SubmitError};
use crate::dispatcher::{DispatchState, HandlerError};
use crate::throttle::Outcome;
use crate::world::{DelayedLogin, Game, Login, World};

/// How long a client is told to wait before it sends again a login the database could not
/// take for being away: the storage tries to connect again at least this often.
const UNAVAILABLE_RETRY_MS: u32 = 1_000;

/// What a tick runs before the world's timers: the logins whose delay is over go to the DB
/// worker, then [`World::tick`].
pub fn advance<G: Game>(world: &mut World<G>, now: Instant) {
    submit_delayed(world, now);
    world.tick(now);
}

/// Takes the DB worker's answers that are ready and acts on them.
pub fn poll_db<G: Game>(world: &mut World<G>, now: Instant) {
    while let Some(event) = world.db.poll() {
        match event {
            DbEvent::Auth { session, outcome } => finish(world, session, outcome, now),
            answer => world.route_db_answer(answer, now),
        }
    }
    if world.db.take_death() {
        // Nothing will answer what waits for the worker: answer it here.
        let waiting: Vec<SessionId> = world
            .clients
            .iter()
            .filter(|(_, c)| c.pending_auth.is_some())
            .map(|(id, _)| *id)
            .collect();
        for session in waiting {
            let failure = AuthFailure::Internal("DB worker died".into());
            finish(world, session, Err(failure), now);
        }
        // Sessions gone meanwhile: their reservations will get no answer either.
        for session in world.throttle.sessions_in_flight() {
            world.throttle.end(session, Outcome::Dropped, now);
        }
        crate::world::run_hooks!(world, db_died);
    }
}

/// Hands `job` to the DB worker; when it cannot be queued, the session's reservation goes
/// back and the error to answer is returned.
pub(crate) fn submit_job<G: Game>(
    world: &mut World<G>,
    session: SessionId,
    job: DbJob,
    now: Instant,
) -> Result<(), HandlerError> {
    let refused = match world.db.submit(job) {
        Ok(()) => return Ok(()),
        Err(SubmitError::Full(_)) => HandlerError::new(
            ErrorCode::RateLimited,
            "the server is busy with other logins; try again in a moment",
        ),
        Err(SubmitError::Stopped(_)) => {
            HandlerError::new(ErrorCode::Internal, "the database is not available")
        }
    };
    world.throttle.end(session, Outcome::Dropped, now);
    Err(refused)
}

/// The time a request of `session` is handled at: its last frame's arrival.
pub(crate) fn now_of<G: Game>(world: &World<G>, session: SessionId) -> Instant {
    world
        .clients
        .get(&session)
        .map_or(world.now().at, |c| c.last_seen)
}

pub(crate) fn peer_ip<G: Game>(world: &World<G>, session: SessionId) -> IpAddr {
    world
        .clients
        .get(&session)
        .expect("dispatch checks the session")
        .peer
        .ip()
}

/// Sends the password logins whose delay is over to the DB worker, in order. A login whose
/// session has gone or closed meanwhile is dropped and its reservation released.
pub fn submit_delayed<G: Game>(world: &mut World<G>, now: Instant) {
    while world.delayed_logins.front().is_some_and(|d| d.due <= now) {
        let Some(DelayedLogin { session, job, .. }) = world.delayed_logins.pop_front() else {
            break;
        };
        let waiting = world
            .clients
            .get(&session)
            .is_some_and(|c| !c.closing && !c.gone && c.pending_auth.is_some());
        if !waiting {
            // Gone or closing meanwhile: nothing waits for this login any more, and the
            // session's end, queued behind it, must not wait for it either.
            world.throttle.end(session, Outcome::Dropped, now);
            if let Some(client) = world.clients.get_mut(&session) {
                client.pending_auth = None;
            }
            continue;
        }
        if let Err(error) = submit_job(world, session, job, now) {
            let request_id = world
                .clients
                .get_mut(&session)
                .and_then(|c| c.pending_auth.take())
                .map_or(C2sLogin::ID, |p| p.request_id);
            world.send_error(session, request_id, error);
        }
    }
}

/// The names bucket of the cluster answered the claim of `session`'s login: the login
/// completes. False when there is no such login any more (the session went away or closed).
pub fn claimed<G: Game>(world: &mut World<G>, session: SessionId, _now: Instant) -> bool {
    let Some(client) = world.clients.get_mut(&session) else {
        return false;
    };
    let Some(claiming) = client.claiming.take() else {
        return false;
    };
    if client.closing || client.gone || client.login.is_some() {
        if claiming.1.guest {
            world.guests = world.guests.saturating_sub(1);
        }
        return false;
    }
    let (reply, login) = *claiming;
    answer(world, session, reply, login);
    true
}

/// Sends the login's answer (with a session token when it asked to be resumable and the
/// server keeps sessions), then logs the session in: what the game sends on a login (its
/// logged_in hook) follows the answer.
fn answer<G: Game>(
    world: &mut World<G>,
    session: SessionId,
    mut reply: S2cAuthResult,
    login: Login,
) {
    if login.resumable && world.resume.enabled() {
        // The count starts after the answer: the frames queued before it, and it.
        let skip = world.out.queued_to(session) + 1;
        reply.session_token = world.resume.start(session, skip);
    }
    world.out.send(session, &reply);
    world.bind_login(session, login);
}

/// Completes a login with the DB worker's answer.
pub fn finish<G: Game>(
    world: &mut World<G>,
    session: SessionId,
    outcome: Result<Authenticated, AuthFailure>,
    now: Instant,
) {
    // Counted whatever became of the session: a guess made is a guess made.
    let counted = match &outcome {
        Ok(_) => Outcome::Succeeded,
        Err(AuthFailure::InvalidCredentials | AuthFailure::InvalidToken) => Outcome::Failed,
        Err(
            AuthFailure::UsernameTaken | AuthFailure::Internal(_) | AuthFailure::Unavailable(_),
        ) => Outcome::Dropped,
    };
    if let Some(counted) = world.throttle.end(session, counted, now) {
        if let Some(cluster) = world.cluster.as_mut() {
            cluster.count(&counted);
        }
    }
    let Some(client) = world.clients.get_mut(&session) else {
        return; // gone meanwhile: a token it was issued simply expires unused
    };
    let Some(pending) = client.pending_auth.take() else {
        return; // logged out or replaced meanwhile
    };
    if client.closing || client.gone || client.login.is_some() {
        return; // a connection that has ended takes no name over
    }
    let request_id = pending.request_id;
    // A guest takes its place here, where the login binds (or starts claiming its name), so
    // that logins finishing in one tick cannot take more places than there are.
    let full = match &outcome {
        Ok(auth) if auth.guest => world.take_guest_place().err(),
        _ => None,
    };
    let error = match (full, outcome) {
        (Some(full), _) => full,
        (None, Ok(auth)) => {
            let reply = S2cAuthResult {
                username: auth.username.clone(),
                user_id: auth.user_id,
                token: auth.token.clone(),
                guest: auth.guest,
                session_token: String::new(),
            };
            let login = Login {
                username: auth.username,
                user_id: auth.user_id,
                guest: auth.guest,
                token_hash: (!auth.guest).then(|| token_hash(&auth.token)),
                resumable: pending.resumable,
            };
            if world.cluster.is_some() {
                // On a cluster, the name is the session's once the names bucket says so.
                let username = login.username.clone();
                let at_us = world.now().unix_us;
                if let Some(client) = world.clients.get_mut(&session) {
                    client.claiming = Some(Box::new((reply, login)));
                }
                if let Some(cluster) = world.cluster.as_mut() {
                    cluster.claim(session, &username, at_us);
                }
                return;
            }
            answer(world, session, reply, login);
            return;
        }
        (None, Err(AuthFailure::UsernameTaken)) => {
            HandlerError::new(ErrorCode::UsernameTaken, "that username is taken")
        }
        (None, Err(AuthFailure::InvalidCredentials)) if pending.username.is_none() => {
            HandlerError::new(
                ErrorCode::InvalidCredentials,
                "that username belongs to an account: log in with its password",
            )
        }
        (None, Err(AuthFailure::InvalidCredentials)) => HandlerError::new(
            ErrorCode::InvalidCredentials,
            "unknown username or wrong password",
        ),
        (None, Err(AuthFailure::InvalidToken)) => {
            HandlerError::new(ErrorCode::InvalidToken, "unknown, expired or revoked token")
        }
        (None, Err(AuthFailure::Internal(_))) => {
            HandlerError::new(ErrorCode::Internal, "the database failed; try again")
        }
        (None, Err(AuthFailure::Unavailable(_))) => HandlerError::unavailable(
            "the database is unavailable for now; the server is connecting to it again",
            UNAVAILABLE_RETRY_MS,
        ),
    };
    let guests_full = error.code == ErrorCode::ServerFull;
    world.send_error(session, request_id, error);
    if guests_full {
        // As a connection past max_sessions: told, and closed, so that a flood of guests
        // holds no place waiting for its login deadline.
        world.kick(session, net::DisconnectReason::ServerFull);
        return;
    }
    if world.clients.get(&session).is_some_and(|c| c.overdue) {
        // Its login deadline passed while this login was under way.
        world.close_for_login_timeout(session);
    }
}
