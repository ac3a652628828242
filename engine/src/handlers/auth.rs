//! Logging in and out: guests, accounts with passwords, token resume.
//!
//! Everything that touches the database or hashes a password goes to the DB worker; the
//! session waits (its other requests are served meanwhile) and [`crate::logins::finish`]
//! completes the login when the answer comes back, a tick or more later.

use net::SessionId;
use protocol::world::{C2sLogin, C2sLogout, C2sRegister, C2sResume};
use protocol::{ErrorCode, MessageType};

use crate::db::DbJob;
use crate::dispatcher::{Ctx, DispatchError, HandlerError, MessageDispatcher};
use crate::handlers::check_username;
use crate::logins::{now_of, peer_ip, submit_job};
use crate::world::Game;
use crate::world::{DelayedLogin, PendingAuth, World};

/// Passwords are 8..=128 bytes.
const PASSWORD_LEN: std::ops::RangeInclusive<usize> = 8..=128;

/// Registers the handlers of this file.
pub fn register<G: Game>(d: &mut MessageDispatcher<World<G>>) -> Result<(), DispatchError> {
    d.register_public::<C2sRegister>(register_account)?;
    d.register_public::<C2sLogin>(login)?;
    d.register_public::<C2sResume>(resume)?;
    d.register::<C2sLogout>(logout)
}

/// Refuses a login request from a session that is logged in or has one under way.
fn check_not_logged_in<G: Game>(world: &World<G>, session: SessionId) -> Result<(), HandlerError> {
    let client = world
        .clients
        .get(&session)
        .expect("dispatch checks the session");
    if let Some(current) = &client.login {
        return Err(HandlerError::new(
            ErrorCode::AlreadyAuthenticated,
            format!("already logged in as {}", current.username),
        ));
    }
    if client.pending_auth.is_some() {
        return Err(HandlerError::new(
            ErrorCode::AlreadyAuthenticated,
            "a login is already under way on this session",
        ));
    }
    Ok(())
}

fn check_password(password: &str) -> Result<(), HandlerError> {
    if PASSWORD_LEN.contains(&password.len()) {
        Ok(())
    } else {
        Err(HandlerError::bad_request(format!(
            "password must be {}-{} bytes (got {} bytes)",
            PASSWORD_LEN.start(),
            PASSWORD_LEN.end(),
            password.len()
        )))
    }
}

/// Queues `job` for the DB worker and marks the session as waiting for it.
fn submit<G: Game>(
    world: &mut World<G>,
    session: SessionId,
    job: DbJob,
    pending: PendingAuth,
) -> Result<(), HandlerError> {
    submit_job(world, session, job, now_of(world, session))?;
    if let Some(client) = world.clients.get_mut(&session) {
        client.pending_auth = Some(pending);
    }
    Ok(())
}

fn register_account<G: Game>(
    world: &mut World<G>,
    ctx: &Ctx,
    request: C2sRegister,
) -> Result<(), HandlerError> {
    check_not_logged_in(world, ctx.session)?;
    check_username(&request.username)?;
    check_password(&request.password)?;
    let peer = peer_ip(world, ctx.session);
    world
        .throttle
        .begin_register(ctx.session, peer, &request.username, ctx.now)
        .map_err(|reason| HandlerError::new(ErrorCode::RateLimited, reason))?;
    let job = DbJob::Register {
        session: ctx.session,
        username: request.username,
        password: request.password,
    };
    let pending = PendingAuth {
        request_id: C2sRegister::ID,
        username: None,
        resumable: request.resumable,
    };
    submit(world, ctx.session, job, pending)
}

fn login<G: Game>(world: &mut World<G>, ctx: &Ctx, request: C2sLogin) -> Result<(), HandlerError> {
    check_not_logged_in(world, ctx.session)?;
    check_username(&request.username)?;
    if request.password.is_empty() {
        if !world.config.allow_guests {
            return Err(HandlerError::new(
                ErrorCode::InvalidCredentials,
                "guest logins are disabled on this server: a password is needed",
            ));
        }
        // The worker checks that no account holds the name: guests never take one.
        let job = DbJob::Guest {
            session: ctx.session,
            username: request.username,
        };
        let pending = PendingAuth {
            request_id: C2sLogin::ID,
            username: None,
            resumable: request.resumable,
        };
        return submit(world, ctx.session, job, pending);
    }
    if request.password.len() > *PASSWORD_LEN.end() {
        check_password(&request.password)?;
    }
    let peer = peer_ip(world, ctx.session);
    let delay = world
        .throttle
        .begin_login(ctx.session, peer, &request.username, ctx.now)
        .map_err(|reason| HandlerError::new(ErrorCode::RateLimited, reason))?;
    let job = DbJob::Login {
        session: ctx.session,
        username: request.username.clone(),
        password: request.password,
    };
    let pending = PendingAuth {
        request_id: C2sLogin::ID,
        username: Some(request.username),
        resumable: request.resumable,
    };
    if delay.is_zero() {
        return submit(world, ctx.session, job, pending);
    }
    // The account is under attack: this login waits before its password is checked (the
    // session waits with it; its other requests keep their order behind it).
    spdlog::debug!(
        "world: session {}: login to a targeted account delayed {} ms",
        ctx.session,
        delay.as_millis()
    );
    world.delayed_logins.push_back(DelayedLogin {
        due: ctx.now + delay,
        session: ctx.session,
        job,
    });
    // Due times differ by account: keep the queue in due order.
    world
        .delayed_logins
        .make_contiguous()
        .sort_by_key(|d| d.due);
    if let Some(client) = world.clients.get_mut(&ctx.session) {
        client.pending_auth = Some(pending);
    }
    Ok(())
}

fn resume<G: Game>(
    world: &mut World<G>,
    ctx: &Ctx,
    request: C2sResume,
) -> Result<(), HandlerError> {
    check_not_logged_in(world, ctx.session)?;
    if request.token.is_empty() || request.token.len() > 256 {
        return Err(HandlerError::bad_request(format!(
            "token must be 1-256 bytes (got {} bytes)",
            request.token.len()
        )));
    }
    let peer = peer_ip(world, ctx.session);
    world
        .throttle
        .begin_resume(ctx.session, peer, ctx.now)
        .map_err(|reason| HandlerError::new(ErrorCode::RateLimited, reason))?;
    let job = DbJob::Resume {
        session: ctx.session,
        token: request.token,
    };
    let pending = PendingAuth {
        request_id: C2sResume::ID,
        username: None,
        resumable: request.resumable,
    };
    submit(world, ctx.session, job, pending)
}

/// Ends the login and revokes its token; the session stays connected and may log in again.
/// The revocation is queued first: if it cannot be, the session stays logged in and is told
/// to try again, so that a logout never leaves a live token behind.
fn logout<G: Game>(world: &mut World<G>, ctx: &Ctx, _: C2sLogout) -> Result<(), HandlerError> {
    let token_hash = world.login(ctx.session).and_then(|l| l.token_hash);
    if let Some(hash) = token_hash {
        if world.db.submit(DbJob::Revoke(hash)).is_err() {
            spdlog::error!("storage: write queue full: a logout was refused");
            return Err(HandlerError::new(
                ErrorCode::Internal,
                "the token could not be revoked; still logged in; log out again",
            ));
        }
    }
    if let Some(login) = world.logout(ctx.session) {
        spdlog::debug!(
            "world: session {} logged out ({})",
            ctx.session,
            login.username
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Authenticated;
    use crate::handlers::testkit::Harness;
    use crate::logins::finish;
    use crate::world::WorldConfig;
    use net::DisconnectReason;
    use protocol::world::S2cAuthResult;
    use protocol::world::{C2sChat, C2sRoomJoin};
    use protocol::S2cMessage;
    use std::time::Duration;

    fn guest_login(name: &str) -> C2sLogin {
        C2sLogin {
            username: name.into(),
            password: String::new(),
            ..Default::default()
        }
    }

    #[test]
    fn guest_login_answers_auth_result_marked_guest() {
        let mut h = Harness::new();
        let s = h.connect();
        h.send(s, guest_login("alice"));
        match h.take(s).as_slice() {
            [S2cMessage::S2cAuthResult(r)] => {
                assert_eq!(r.username, "alice");
                assert!(r.guest);
                assert_eq!(r.user_id, 0);
                assert!(r.token.is_empty());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(h.world_mut().session_of("ALICE"), Some(s));
    }

    #[test]
    fn messages_before_login_answer_not_authenticated() {
        let mut h = Harness::new();
        let s = h.connect();
        h.send(
            s,
            C2sRoomJoin {
                room: "lobby".into(),
                ..Default::default()
            },
        );
        let (code, request, _) = h.error(s);
        assert_eq!(
            (code, request),
            (ErrorCode::NotAuthenticated, C2sRoomJoin::ID as u32)
        );
        h.send(
            s,
            C2sChat {
                room: "lobby".into(),
                content: "hi".into(),
                sent_at_us: 0,
            },
        );
        assert_eq!(h.error(s).0, ErrorCode::NotAuthenticated);
        h.send(s, C2sLogout {});
        assert_eq!(h.error(s).0, ErrorCode::NotAuthenticated);
    }

    #[test]
    fn bad_usernames_answer_bad_request_naming_the_value() {
        let mut h = Harness::new();
        let s = h.connect();
        for name in [
            "ab",
            "",
            "way-too-long-a-name-for-this-server",
            "bad name",
            "ünï",
        ] {
            h.send(s, guest_login(name));
            let (code, request, reason) = h.error(s);
            assert_eq!(
                (code, request),
                (ErrorCode::BadRequest, C2sLogin::ID as u32)
            );
            assert!(reason.contains(&format!("{name:?}")), "{reason}");
        }
        assert!(h.world_mut().login(s).is_none());
    }

    #[test]
    fn second_login_on_a_session_answers_already_authenticated() {
        let mut h = Harness::new();
        let s = h.guest("alice");
        h.send(s, guest_login("bob"));
        assert_eq!(h.error(s).0, ErrorCode::AlreadyAuthenticated);
        assert_eq!(h.world_mut().login(s).unwrap().username, "alice");
    }

    #[test]
    fn second_session_with_a_username_replaces_the_first() {
        let mut h = Harness::new();
        let old = h.guest("alice");
        h.send(
            old,
            C2sRoomJoin {
                room: "lobby".into(),
                ..Default::default()
            },
        );
        h.take(old);
        let new = h.connect();
        h.send(new, guest_login("Alice"));
        assert!(matches!(
            h.take(new).as_slice(),
            [S2cMessage::S2cAuthResult(_)]
        ));
        let (code, request, _) = h.error(old);
        assert_eq!((code, request), (ErrorCode::Replaced, 0));
        assert_eq!(h.sim.closed(old), Some(&DisconnectReason::Replaced));
        assert_eq!(h.world_mut().session_of("alice"), Some(new));
        assert!(
            h.world_mut().game.rooms.rooms.is_empty(),
            "the replaced session left its rooms"
        );
        // The replaced session's later messages are ignored.
        h.send(
            old,
            C2sRoomJoin {
                room: "lobby".into(),
                ..Default::default()
            },
        );
        assert!(h.take(old).is_empty());
    }

    #[test]
    fn guest_login_is_refused_when_guests_are_not_allowed() {
        let mut h = Harness::with(WorldConfig {
            allow_guests: false,
            ..WorldConfig::default()
        });
        let s = h.connect();
        h.send(s, guest_login("alice"));
        assert_eq!(h.error(s).0, ErrorCode::InvalidCredentials);
    }

    #[test]
    fn logout_frees_the_username_and_keeps_the_session() {
        let mut h = Harness::new();
        let s = h.guest("alice");
        h.send(s, C2sLogout {});
        assert!(h.take(s).is_empty());
        assert_eq!(h.world_mut().session_of("alice"), None);
        h.send(
            s,
            C2sRoomJoin {
                room: "lobby".into(),
                ..Default::default()
            },
        );
        assert_eq!(h.error(s).0, ErrorCode::NotAuthenticated);
        h.send(s, guest_login("alice"));
        assert!(matches!(
            h.take(s).as_slice(),
            [S2cMessage::S2cAuthResult(_)]
        ));
    }

    fn register(name: &str, password: &str) -> C2sRegister {
        C2sRegister {
            username: name.into(),
            password: password.into(),
            ..Default::default()
        }
    }

    fn password_login(name: &str, password: &str) -> C2sLogin {
        C2sLogin {
            username: name.into(),
            password: password.into(),
            ..Default::default()
        }
    }

    fn auth_result(h: &mut Harness, s: SessionId) -> S2cAuthResult {
        match h.take(s).as_slice() {
            [S2cMessage::S2cAuthResult(r)] => r.clone(),
            other => panic!("expected S2C_AuthResult, got {other:?}"),
        }
    }

    #[test]
    fn register_creates_the_account_logs_in_and_returns_a_token() {
        let mut h = Harness::new();
        let s = h.connect();
        h.send(s, register("Alice", "correct horse"));
        let r = auth_result(&mut h, s);
        assert_eq!(
            (r.username.as_str(), r.user_id, r.guest),
            ("Alice", 1, false)
        );
        assert_eq!(r.token.len(), 64, "256 random bits, hex");
        assert!(h
            .world()
            .login(s)
            .is_some_and(|l| !l.guest && l.token_hash.is_some()));
    }

    #[test]
    fn register_answers_username_taken_ignoring_case() {
        let mut h = Harness::new();
        let s = h.connect();
        h.send(s, register("alice", "password-1"));
        auth_result(&mut h, s);
        let t = h.connect();
        h.send(t, register("ALICE", "password-2"));
        let (code, request, _) = h.error(t);
        assert_eq!(
            (code, request),
            (ErrorCode::UsernameTaken, C2sRegister::ID as u32)
        );
        assert!(h.world_mut().login(t).is_none());
    }

    #[test]
    fn register_checks_username_and_password_length() {
        let mut h = Harness::new();
        let s = h.connect();
        h.send(s, register("a b", "password-1"));
        assert_eq!(h.error(s).0, ErrorCode::BadRequest);
        h.send(s, register("alice", "short"));
        let (code, _, reason) = h.error(s);
        assert_eq!(code, ErrorCode::BadRequest);
        assert!(reason.contains("8-128 bytes (got 5 bytes)"), "{reason}");
        h.send(s, register("alice", &"x".repeat(129)));
        assert_eq!(h.error(s).0, ErrorCode::BadRequest);
        h.send(s, register("alice", &"x".repeat(128)));
        auth_result(&mut h, s);
    }

    #[test]
    fn login_with_the_right_password_works_and_a_wrong_one_or_unknown_name_does_not() {
        let mut h = Harness::new();
        let s = h.connect();
        h.send(s, register("alice", "correct horse"));
        auth_result(&mut h, s);
        h.send(s, C2sLogout {});
        let wrong = h.connect();
        h.send(wrong, password_login("alice", "wrong horse"));
        let (code, request, wrong_reason) = h.error(wrong);
        assert_eq!(
            (code, request),
            (ErrorCode::InvalidCredentials, C2sLogin::ID as u32)
        );
        h.send(wrong, password_login("nobody", "correct horse"));
        let (code, _, unknown_reason) = h.error(wrong);
        assert_eq!(code, ErrorCode::InvalidCredentials);
        assert_eq!(wrong_reason, unknown_reason, "the same reply for both");
        h.send(wrong, password_login("ALICE", "correct horse"));
        let r = auth_result(&mut h, wrong);
        assert_eq!((r.username.as_str(), r.user_id), ("alice", 1));
    }

    #[test]
    fn guests_cannot_take_a_registered_name() {
        let mut h = Harness::new();
        let s = h.connect();
        h.send(s, register("alice", "correct horse"));
        auth_result(&mut h, s);
        let g = h.connect();
        h.send(g, guest_login("Alice"));
        assert_eq!(h.error(g).0, ErrorCode::InvalidCredentials);
        assert_eq!(
            h.world_mut().session_of("alice"),
            Some(s),
            "the account holder is untouched"
        );
    }

    #[test]
    fn registering_a_name_a_guest_holds_replaces_the_guest() {
        let mut h = Harness::new();
        let g = h.guest("alice");
        let s = h.connect();
        h.send(s, register("alice", "correct horse"));
        auth_result(&mut h, s);
        assert_eq!(h.error(g).0, ErrorCode::Replaced);
        assert_eq!(h.world_mut().session_of("alice"), Some(s));
    }

    #[test]
    fn resume_logs_in_with_the_token_and_logout_revokes_it() {
        let mut h = Harness::new();
        let s = h.connect();
        h.send(s, register("alice", "correct horse"));
        let token = auth_result(&mut h, s).token;
        let t = h.connect();
        h.send(
            t,
            C2sResume {
                token: token.clone(),
                ..Default::default()
            },
        );
        let r = auth_result(&mut h, t);
        assert_eq!(
            (r.username.as_str(), r.user_id, r.token.as_str()),
            ("alice", 1, token.as_str())
        );
        assert_eq!(
            h.error(s).0,
            ErrorCode::Replaced,
            "one session per username"
        );
        h.send(t, C2sLogout {});
        assert!(h.take(t).is_empty());
        let u = h.connect();
        h.send(
            u,
            C2sResume {
                token,
                ..Default::default()
            },
        );
        let (code, request, _) = h.error(u);
        assert_eq!(
            (code, request),
            (ErrorCode::InvalidToken, C2sResume::ID as u32)
        );
    }

    #[test]
    fn unknown_token_answers_invalid_token() {
        let mut h = Harness::new();
        let s = h.connect();
        h.send(
            s,
            C2sResume {
                token: "00".repeat(32),
                ..Default::default()
            },
        );
        assert_eq!(h.error(s).0, ErrorCode::InvalidToken);
        h.send(
            s,
            C2sResume {
                token: String::new(),
                ..Default::default()
            },
        );
        assert_eq!(h.error(s).0, ErrorCode::BadRequest);
    }

    fn throttled(change: impl FnOnce(&mut crate::throttle::ThrottleConfig)) -> WorldConfig {
        // No deadline and no idle timeout: the tests wait out the throttle's windows.
        let mut config = WorldConfig {
            login_deadline: None,
            idle_timeout: None,
            max_unauthenticated_per_address: 1_000,
            max_sessions_per_address: 1_000,
            ..WorldConfig::default()
        };
        change(&mut config.throttle);
        config
    }

    #[test]
    fn failed_logins_for_a_name_from_one_address_are_rate_limited_there_only() {
        let mut h = Harness::with(throttled(|t| t.max_failures_per_user = 3));
        let s = h.connect_from([203, 0, 113, 1]);
        h.send(s, register("alice", "correct horse"));
        auth_result(&mut h, s);
        h.send(s, C2sLogout {});
        let guesser = h.connect_from([198, 51, 100, 7]);
        for _ in 0..3 {
            h.send(guesser, password_login("alice", "guess guess"));
            assert_eq!(h.error(guesser).0, ErrorCode::InvalidCredentials);
        }
        h.send(guesser, password_login("alice", "correct horse"));
        let (code, request, reason) = h.error(guesser);
        assert_eq!(
            (code, request),
            (ErrorCode::RateLimited, C2sLogin::ID as u32)
        );
        assert!(reason.contains("alice"), "{reason}");
        // The owner, at an address that has not been failing, logs in.
        h.send(s, password_login("alice", "correct horse"));
        auth_result(&mut h, s);
        // Another name from the guesser's address is not affected.
        h.send(guesser, register("bob", "correct horse"));
        auth_result(&mut h, guesser);
    }

    #[test]
    fn failed_logins_per_address_are_rate_limited_across_names_but_resumes_are_not() {
        let mut h = Harness::with(throttled(|t| t.max_failures_per_addr = 4));
        let s = h.connect_from([198, 51, 100, 7]);
        for i in 0..4 {
            h.send(s, password_login(&format!("user{i}"), "guess guess"));
            assert_eq!(h.error(s).0, ErrorCode::InvalidCredentials);
        }
        h.send(s, password_login("user9", "guess guess"));
        assert_eq!(h.error(s).0, ErrorCode::RateLimited);
        h.send(
            s,
            C2sResume {
                token: "ab".repeat(32),
                ..Default::default()
            },
        );
        assert_eq!(h.error(s).0, ErrorCode::InvalidToken);
    }

    #[test]
    fn bad_resumes_from_an_address_do_not_lock_out_its_password_logins() {
        let mut h = Harness::with(throttled(|t| t.max_bad_resumes_per_addr = 20));
        let owner = h.connect_from([203, 0, 113, 1]);
        h.send(owner, register("alice", "correct horse"));
        auth_result(&mut h, owner);
        h.send(owner, C2sLogout {});
        let s = h.connect_from([198, 51, 100, 7]);
        for _ in 0..20 {
            h.send(
                s,
                C2sResume {
                    token: "ab".repeat(32),
                    ..Default::default()
                },
            );
            assert_eq!(h.error(s).0, ErrorCode::InvalidToken);
        }
        h.send(
            s,
            C2sResume {
                token: "ab".repeat(32),
                ..Default::default()
            },
        );
        assert_eq!(h.error(s).0, ErrorCode::RateLimited);
        h.send(s, password_login("alice", "correct horse"));
        auth_result(&mut h, s);
    }

    #[test]
    fn rate_limit_window_expires() {
        let mut h = Harness::with(throttled(|t| t.max_failures_per_user = 1));
        let s = h.connect();
        h.send(s, password_login("alice", "guess guess"));
        assert_eq!(h.error(s).0, ErrorCode::InvalidCredentials);
        h.send(s, password_login("alice", "guess guess"));
        assert_eq!(h.error(s).0, ErrorCode::RateLimited);
        h.advance(WorldConfig::default().throttle.failure_window);
        h.send(s, password_login("alice", "guess guess"));
        assert_eq!(h.error(s).0, ErrorCode::InvalidCredentials);
    }

    #[test]
    fn logins_sent_at_once_count_before_they_are_hashed_so_only_the_limit_gets_through() {
        let mut h = Harness::deferred(throttled(|_| {}));
        let owner = h.connect_from([203, 0, 113, 1]);
        h.send(owner, register("bob", "correct horse"));
        h.run_db();
        auth_result(&mut h, owner);
        let guessers: Vec<SessionId> = (0..200)
            .map(|_| h.connect_from([198, 51, 100, 7]))
            .collect();
        for (i, &g) in guessers.iter().enumerate() {
            let password = if i == 149 {
                "correct horse"
            } else {
                "guess guess"
            };
            h.send(g, password_login("bob", password));
        }
        // None has been answered by the DB worker yet: all 200 are in flight at once.
        let limited = guessers
            .iter()
            .filter(|&&g| {
                h.take(g).iter().any(
                    |m| matches!(m, S2cMessage::S2cError(e) if e.code() == ErrorCode::RateLimited),
                )
            })
            .count();
        assert_eq!(
            limited, 195,
            "5 per name from one address, in flight included"
        );
        h.run_db();
        let logged_in = guessers
            .iter()
            .filter(|&&g| h.world_mut().login(g).is_some())
            .count();
        assert_eq!(
            logged_in, 0,
            "the 150th guess, right, was refused before hashing"
        );
    }

    #[test]
    fn guessing_one_account_from_many_addresses_is_paced_and_its_owner_at_home_gets_in() {
        let mut h = Harness::with(WorldConfig {
            login_deadline: None,
            ..WorldConfig::default()
        });
        let home = [203, 0, 113, 1];
        let owner = h.connect_from(home);
        h.send(owner, register("bob", "correct horse"));
        auth_result(&mut h, owner);
        h.send(owner, C2sLogout {});
        for i in 0..5u8 {
            let g = h.connect_from([198, 51, 100, i]);
            h.send(g, password_login("bob", "guess guess"));
            assert_eq!(h.error(g).0, ErrorCode::InvalidCredentials, "guess {i}");
        }
        // Under attack: ten guesses at once from ten fresh addresses.
        let guessers: Vec<SessionId> = (0..10u8).map(|i| h.connect_from([192, 0, 2, i])).collect();
        for &g in &guessers {
            h.send(g, password_login("bob", "guess guess"));
        }
        assert_eq!(h.error(guessers[0]).0, ErrorCode::InvalidCredentials);
        for &g in &guessers[1..9] {
            assert!(h.take(g).is_empty(), "waiting its turn");
            assert!(h.world_mut().is_waiting(g));
        }
        assert_eq!(
            h.error(guessers[9]).0,
            ErrorCode::RateLimited,
            "8 wait at most"
        );
        // The owner, at the address it registered from, is neither paced nor refused.
        h.send(owner, password_login("bob", "correct horse"));
        auth_result(&mut h, owner);
        // The waiting guesses are checked one at a time, 250 ms, 500 ms, ... apart.
        let mut answered_at = Vec::new();
        for step in 1..=400u64 {
            h.advance(Duration::from_millis(100));
            for &g in &guessers[1..9] {
                if !h.take(g).is_empty() {
                    answered_at.push(100 * step);
                }
            }
        }
        assert_eq!(
            answered_at,
            [300, 800, 1800, 3800, 7800, 15800, 23800, 31800]
        );
    }

    #[test]
    fn a_delayed_login_whose_session_went_away_is_never_hashed() {
        let mut h = Harness::with(throttled(|t| t.delay_after_failures = 1));
        let g = h.connect_from([198, 51, 100, 1]);
        for _ in 0..2 {
            // The first failure puts the account under attack; the second is paced, first
            // in line, so checked at once.
            h.send(g, password_login("bob", "guess guess"));
            assert_eq!(h.error(g).0, ErrorCode::InvalidCredentials);
        }
        let s = h.connect_from([198, 51, 100, 2]);
        h.send(s, password_login("bob", "guess guess"));
        assert_eq!(h.world_mut().delayed_logins.len(), 1);
        h.world_mut().clients.get_mut(&s).unwrap().gone = true;
        h.advance(Duration::from_secs(10));
        assert!(h.world_mut().delayed_logins.is_empty());
        assert!(
            !h.world_mut().throttle.has_in_flight(s),
            "its reservation was released"
        );
        assert!(
            !h.world_mut().is_waiting(s),
            "its end, queued behind the login, may go on"
        );
    }

    #[test]
    fn registrations_per_address_are_limited_unless_the_address_is_exempt() {
        let mut h = Harness::with(throttled(|t| {
            t.max_registrations_per_address = 3;
            t.exempt_addresses = vec!["10.0.0.0/8".parse().unwrap()];
        }));
        let s = h.connect_from([198, 51, 100, 7]);
        for i in 0..3 {
            h.send(s, register(&format!("user{i}"), "correct horse"));
            auth_result(&mut h, s);
            h.send(s, C2sLogout {});
        }
        h.send(s, register("user3", "correct horse"));
        let (code, request, reason) = h.error(s);
        assert_eq!(
            (code, request),
            (ErrorCode::RateLimited, C2sRegister::ID as u32)
        );
        assert!(reason.contains("3 accounts"), "{reason}");
        // A taken name created nothing and does not count.
        let other = h.connect_from([198, 51, 100, 8]);
        h.send(other, register("user0", "correct horse"));
        assert_eq!(h.error(other).0, ErrorCode::UsernameTaken);
        h.send(other, register("user3", "correct horse"));
        auth_result(&mut h, other);
        let exempt = h.connect_from([10, 1, 2, 3]);
        for i in 10..15 {
            h.send(exempt, register(&format!("user{i}"), "correct horse"));
            auth_result(&mut h, exempt);
            h.send(exempt, C2sLogout {});
        }
    }

    #[test]
    fn a_second_login_request_while_one_is_under_way_waits_for_it_and_is_refused() {
        let mut h = Harness::deferred(WorldConfig::default());
        let s = h.connect();
        // Both in one tick: the second waits behind the first, at the database.
        h.sim.send(s, &guest_login("alice"));
        h.sim.send(s, &guest_login("bob"));
        h.settle();
        assert!(h.world().is_waiting(s));
        assert!(h.take(s).is_empty());
        h.run_db();
        let replies = h.take(s);
        assert!(
            matches!(
                replies.as_slice(),
                [S2cMessage::S2cAuthResult(r), S2cMessage::S2cError(e)]
                    if r.username == "alice" && e.code() == ErrorCode::AlreadyAuthenticated
            ),
            "{replies:?}"
        );
        assert_eq!(h.world().session_of("alice"), Some(s));
    }

    #[test]
    fn a_login_finishing_after_its_connection_ended_does_not_replace_anyone() {
        let mut h = Harness::new();
        let a = h.guest("ann");
        let b = h.connect();
        let client = h.world_mut().clients.get_mut(&b).unwrap();
        client.pending_auth = Some(PendingAuth {
            request_id: C2sLogin::ID,
            username: None,
            resumable: false,
        });
        client.gone = true;
        let auth = Authenticated {
            user_id: 0,
            username: "ann".into(),
            token: String::new(),
            guest: true,
        };
        let now = h.now();
        finish(h.world_mut(), b, Ok(auth), now);
        assert_eq!(h.world_mut().session_of("ann"), Some(a));
        assert!(h.take(a).is_empty(), "ann was not told REPLACED");
        assert!(h.world_mut().login(b).is_none());
    }

    #[test]
    fn a_login_the_database_could_not_take_is_unavailable_with_a_retry_hint_and_keeps_the_session()
    {
        use crate::core::Input;
        use crate::db::{AuthFailure, DbDone, DbEvent, Lane};
        let mut h = Harness::deferred(WorldConfig::default());
        let s = h.connect();
        h.send(s, guest_login("ann"));
        let held = h.sim.take_held_db();
        assert!(
            held.iter().any(|job| matches!(job, DbJob::Guest { .. })),
            "{held:?}"
        );
        // The storage answers that its database is away.
        h.sim.input(Input::Db(DbDone {
            lane: Lane::Quick,
            event: Some(DbEvent::Auth {
                session: s,
                outcome: Err(AuthFailure::Unavailable("connection refused".into())),
            }),
        }));
        h.settle();
        match h.take(s).as_slice() {
            [S2cMessage::S2cError(e)] => {
                assert_eq!(e.code(), ErrorCode::Unavailable);
                assert_eq!(e.request_id, u32::from(C2sLogin::ID));
                assert_eq!(e.retry_after_ms, 1_000);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(h.sim.closed(s), None, "the session stays");
        assert!(!h.world().is_waiting(s));
        // Sent again once the database is back, it logs in.
        h.send(s, guest_login("ann"));
        h.run_db();
        assert_eq!(auth_result(&mut h, s).username, "ann");
    }
}
