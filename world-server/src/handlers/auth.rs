//! Logging in and out. Guests log in with an empty password; accounts with passwords and
//! tokens are not served yet: a login with a password finds no account.

use protocol::world::{C2sLogin, C2sLogout, S2cAuthResult};
use protocol::ErrorCode;

use crate::dispatcher::{Ctx, DispatchError, HandlerError, MessageDispatcher};
use crate::handlers::check_username;
use crate::world::{Login, World};

/// Registers the handlers of this file.
pub fn register(d: &mut MessageDispatcher<World>) -> Result<(), DispatchError> {
    d.register_public::<C2sLogin>(login)?;
    d.register::<C2sLogout>(logout)
}

fn login(world: &mut World, ctx: &Ctx, request: C2sLogin) -> Result<(), HandlerError> {
    if let Some(current) = world.login(ctx.session) {
        return Err(HandlerError::new(
            ErrorCode::AlreadyAuthenticated,
            format!("already logged in as {}", current.username),
        ));
    }
    check_username(&request.username)?;
    if !request.password.is_empty() {
        return Err(HandlerError::new(
            ErrorCode::InvalidCredentials,
            format!("no account named {:?} with that password", request.username),
        ));
    }
    if !world.config.allow_guests {
        return Err(HandlerError::new(
            ErrorCode::InvalidCredentials,
            "guest logins are disabled on this server: a password is needed",
        ));
    }
    let login = Login {
        username: request.username,
        user_id: 0,
        guest: true,
    };
    let reply = S2cAuthResult {
        username: login.username.clone(),
        user_id: 0,
        token: String::new(),
        guest: true,
    };
    world.bind_login(ctx.session, login);
    world.out.send(ctx.session, &reply);
    Ok(())
}

/// Ends the login; the session stays connected and may log in again.
fn logout(world: &mut World, ctx: &Ctx, _: C2sLogout) -> Result<(), HandlerError> {
    if let Some(login) = world.logout(ctx.session) {
        spdlog::info!("world: session {} logged out ({})", ctx.session, login.username);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::testkit::Harness;
    use crate::world::WorldConfig;
    use net::DisconnectReason;
    use protocol::world::{C2sChat, C2sRoomJoin};
    use protocol::{MessageType, S2cMessage};

    fn guest_login(name: &str) -> C2sLogin {
        C2sLogin {
            username: name.into(),
            password: String::new(),
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
        assert_eq!(h.world.session_of("ALICE"), Some(s));
    }

    #[test]
    fn messages_before_login_answer_not_authenticated() {
        let mut h = Harness::new();
        let s = h.connect();
        h.send(s, C2sRoomJoin { room: "lobby".into() });
        let (code, request, _) = h.error(s);
        assert_eq!((code, request), (ErrorCode::NotAuthenticated, C2sRoomJoin::ID as u32));
        h.send(s, C2sChat { room: "lobby".into(), content: "hi".into(), sent_at_us: 0 });
        assert_eq!(h.error(s).0, ErrorCode::NotAuthenticated);
        h.send(s, C2sLogout {});
        assert_eq!(h.error(s).0, ErrorCode::NotAuthenticated);
    }

    #[test]
    fn bad_usernames_answer_bad_request_naming_the_value() {
        let mut h = Harness::new();
        let s = h.connect();
        for name in ["ab", "", "way-too-long-a-name-for-this-server", "bad name", "ünï"] {
            h.send(s, guest_login(name));
            let (code, request, reason) = h.error(s);
            assert_eq!((code, request), (ErrorCode::BadRequest, C2sLogin::ID as u32));
            assert!(reason.contains(&format!("{name:?}")), "{reason}");
        }
        assert!(h.world.login(s).is_none());
    }

    #[test]
    fn second_login_on_a_session_answers_already_authenticated() {
        let mut h = Harness::new();
        let s = h.guest("alice");
        h.send(s, guest_login("bob"));
        assert_eq!(h.error(s).0, ErrorCode::AlreadyAuthenticated);
        assert_eq!(h.world.login(s).unwrap().username, "alice");
    }

    #[test]
    fn second_session_with_a_username_replaces_the_first() {
        let mut h = Harness::new();
        let old = h.guest("alice");
        h.send(old, C2sRoomJoin { room: "lobby".into() });
        h.take(old);
        let new = h.connect();
        h.send(new, guest_login("Alice"));
        assert!(matches!(h.take(new).as_slice(), [S2cMessage::S2cAuthResult(_)]));
        let (code, request, _) = h.error(old);
        assert_eq!((code, request), (ErrorCode::Replaced, 0));
        assert_eq!(h.world.out.closes(), &[(old, DisconnectReason::Replaced)]);
        assert_eq!(h.world.session_of("alice"), Some(new));
        assert!(h.world.rooms.is_empty(), "the replaced session left its rooms");
        // The replaced session's later messages are ignored.
        h.send(old, C2sRoomJoin { room: "lobby".into() });
        assert!(h.take(old).is_empty());
    }

    #[test]
    fn login_with_a_password_finds_no_account() {
        let mut h = Harness::new();
        let s = h.connect();
        h.send(s, C2sLogin { username: "alice".into(), password: "secret-password".into() });
        assert_eq!(h.error(s).0, ErrorCode::InvalidCredentials);
    }

    #[test]
    fn guest_login_is_refused_when_guests_are_not_allowed() {
        let mut h = Harness::with(WorldConfig { allow_guests: false, ..WorldConfig::default() });
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
        assert_eq!(h.world.session_of("alice"), None);
        h.send(s, C2sRoomJoin { room: "lobby".into() });
        assert_eq!(h.error(s).0, ErrorCode::NotAuthenticated);
        h.send(s, guest_login("alice"));
        assert!(matches!(h.take(s).as_slice(), [S2cMessage::S2cAuthResult(_)]));
    }
}
