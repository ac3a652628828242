//! What went wrong, in sentences: every error code of the protocol, and every way a
//! connection ends.

use net::DisconnectReason;
use protocol::world::{
    C2sChat, C2sLogin, C2sRegister, C2sResume, C2sRoomJoin, C2sRoomLeave, C2sRoomList, C2sWhisper,
};
use protocol::{ErrorCode, MessageType};

/// The sentence for an `S2C_Error`: what failed (from `request_id`), what the code means, and
/// the server's own `reason`.
pub fn error_sentence(code: i32, reason: &str, request_id: u32) -> String {
    let meaning = match ErrorCode::try_from(code) {
        Ok(code) => code_meaning(code).to_string(),
        Err(_) => format!("the request failed (error code {code}, unknown to this client)"),
    };
    let mut sentence = match request_name(request_id) {
        Some(what) => format!("{what} failed: {meaning}"),
        None => capitalized(&meaning),
    };
    let reason = reason.trim();
    if !reason.is_empty() {
        sentence.push_str(" (server: ");
        sentence.push_str(reason);
        sentence.push(')');
    }
    sentence
}

/// `text` with its first letter in capitals.
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// What an error code means, for a person.
pub fn code_meaning(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Unspecified => "the request failed",
        ErrorCode::BadRequest => "the server refused the request as invalid",
        ErrorCode::NotAuthenticated => {
            "you are not logged in: /guest NAME, /login NAME or /register NAME first"
        }
        ErrorCode::AlreadyAuthenticated => "you are logged in already: /logout first",
        ErrorCode::Replaced => {
            "you logged in from somewhere else, which closed this connection (/connect to come back)"
        }
        ErrorCode::InvalidCredentials => "wrong username or password",
        ErrorCode::UsernameTaken => "that username is taken",
        ErrorCode::InvalidToken => {
            "the saved login is no longer valid (expired or logged out): log in again"
        }
        ErrorCode::UserOffline => "nobody is logged in with that name",
        ErrorCode::RoomFull => "the room is full",
        ErrorCode::NotInRoom => "you are not in that room",
        ErrorCode::RateLimited => "slow down: the server is limiting your requests",
        ErrorCode::ServerFull => "the server is full: trying again later",
        ErrorCode::Internal => "the server failed; try again",
        ErrorCode::TooManyConnections => {
            "your address has as many connections as the server allows: trying again later"
        }
        ErrorCode::LoginTimeout => {
            "you did not log in in time, so the server closed the connection"
        }
        ErrorCode::Unavailable => {
            "the server's database is away for a moment: try again in a few seconds"
        }
        ErrorCode::SessionLost => "the session could not be taken back: log in again",
    }
}

/// The request a `request_id` names, as the subject of a sentence.
fn request_name(id: u32) -> Option<&'static str> {
    let id = u16::try_from(id).ok()?;
    Some(match id {
        C2sChat::ID => "Chat",
        C2sLogin::ID => "Login",
        C2sRegister::ID => "Registration",
        C2sResume::ID => "Resume",
        C2sWhisper::ID => "Whisper",
        C2sRoomJoin::ID => "Join",
        C2sRoomLeave::ID => "Leave",
        C2sRoomList::ID => "Room list",
        _ => return None,
    })
}

/// Why a connection ended, for the person who was using it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Closure {
    /// The TCP connection could not be made (resolving, refused, timed out).
    Connect(String),
    /// The session ended.
    Session(DisconnectReason),
}

impl Closure {
    /// Whether trying again cannot help until the person changes something: a certificate
    /// this client does not trust.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Closure::Session(DisconnectReason::Handshake(why)) if is_certificate_problem(why))
    }
}

/// The sentence for a closed or failed connection.
pub fn closure_sentence(closure: &Closure) -> String {
    match closure {
        Closure::Connect(why) => format!("cannot connect: {why}"),
        Closure::Session(reason) => {
            match reason {
                DisconnectReason::PeerClosed => "the server closed the connection".to_string(),
                DisconnectReason::Io(kind) => format!("the connection failed ({kind})"),
                DisconnectReason::Protocol(error) => {
                    format!("the server sent a broken frame ({error})")
                }
                DisconnectReason::Shutdown => "the connection was closed".to_string(),
                DisconnectReason::Handshake(why) => handshake_sentence(why),
                DisconnectReason::WebSocket(error) => {
                    format!("the server broke the WebSocket protocol ({error})")
                }
                DisconnectReason::Http(status) => {
                    format!("the server answered with an HTTP page (status {status}), not a game session")
                }
                other => format!("the connection ended: {other}"),
            }
        }
    }
}

/// A TLS or WebSocket set-up that failed, with what to do about it.
fn handshake_sentence(why: &str) -> String {
    if is_certificate_problem(why) {
        return format!(
            "the server's certificate is not trusted ({why}); pass --ca FILE with its certificate \
             or CA, or --tls-name NAME if it is issued to another name"
        );
    }
    if why.contains("TLS") {
        return format!(
            "the TLS handshake failed ({why}); is this the server's TLS port? tcp:// and ws:// \
             URLs are for its plain ports"
        );
    }
    if why.contains("WebSocket") {
        return format!("the WebSocket upgrade failed ({why})");
    }
    format!("the connection could not be set up ({why})")
}

fn is_certificate_problem(why: &str) -> bool {
    why.contains("certificate") || why.contains("UnknownIssuer") || why.contains("NotValidForName")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code of PROTOCOL.md's table, by name, with a word its sentence must hold.
    const EXPECTED: &[(ErrorCode, &str)] = &[
        (ErrorCode::BadRequest, "invalid"),
        (ErrorCode::NotAuthenticated, "not logged in"),
        (ErrorCode::AlreadyAuthenticated, "logged in already"),
        (ErrorCode::Replaced, "from somewhere else"),
        (ErrorCode::InvalidCredentials, "wrong username or password"),
        (ErrorCode::UsernameTaken, "taken"),
        (ErrorCode::InvalidToken, "no longer valid"),
        (ErrorCode::UserOffline, "nobody is logged in"),
        (ErrorCode::RoomFull, "room is full"),
        (ErrorCode::NotInRoom, "not in that room"),
        (ErrorCode::RateLimited, "slow down"),
        (ErrorCode::ServerFull, "server is full"),
        (ErrorCode::Internal, "server failed"),
        (ErrorCode::TooManyConnections, "as many connections"),
        (ErrorCode::LoginTimeout, "did not log in in time"),
        (ErrorCode::Unavailable, "database is away"),
        (ErrorCode::SessionLost, "could not be taken back"),
    ];

    #[test]
    fn every_error_code_has_a_sentence() {
        for code in 1..=17 {
            let code = ErrorCode::try_from(code).unwrap();
            let (_, word) = EXPECTED
                .iter()
                .find(|(c, _)| *c == code)
                .unwrap_or_else(|| panic!("{code:?} has no expected sentence"));
            assert!(
                code_meaning(code).contains(word),
                "{code:?}: {}",
                code_meaning(code)
            );
        }
    }

    #[test]
    fn sentences_name_the_request_and_carry_the_reason() {
        assert_eq!(
            error_sentence(
                ErrorCode::RoomFull as i32,
                "room \"lobby\" is full (100 members)",
                C2sRoomJoin::ID as u32
            ),
            "Join failed: the room is full (server: room \"lobby\" is full (100 members))"
        );
        assert_eq!(
            error_sentence(
                ErrorCode::InvalidCredentials as i32,
                "",
                C2sLogin::ID as u32
            ),
            "Login failed: wrong username or password"
        );
        assert_eq!(
            error_sentence(ErrorCode::Replaced as i32, "another login", 0),
            "You logged in from somewhere else, which closed this connection (/connect to come \
             back) (server: another login)"
        );
    }

    #[test]
    fn an_unknown_code_is_a_failed_request() {
        assert_eq!(
            error_sentence(99, "new", C2sChat::ID as u32),
            "Chat failed: the request failed (error code 99, unknown to this client) (server: new)"
        );
    }

    #[test]
    fn closures_are_said_in_words() {
        let bad_cert = Closure::Session(DisconnectReason::Handshake(
            "TLS handshake failed: invalid peer certificate: UnknownIssuer".into(),
        ));
        assert!(closure_sentence(&bad_cert).contains("certificate is not trusted"));
        assert!(closure_sentence(&bad_cert).contains("--ca FILE"));
        assert!(bad_cert.is_permanent());
        let plain_port = Closure::Session(DisconnectReason::Handshake(
            "TLS handshake failed: received fatal alert: HandshakeFailure".into(),
        ));
        assert!(closure_sentence(&plain_port).contains("is this the server's TLS port?"));
        assert!(!plain_port.is_permanent());
        let refused = Closure::Connect("127.0.0.1:7000: Connection refused (os error 111)".into());
        assert_eq!(
            closure_sentence(&refused),
            "cannot connect: 127.0.0.1:7000: Connection refused (os error 111)"
        );
        assert_eq!(
            closure_sentence(&Closure::Session(DisconnectReason::PeerClosed)),
            "the server closed the connection"
        );
    }
}
