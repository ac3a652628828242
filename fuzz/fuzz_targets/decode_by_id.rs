//! A frame's payload decoded by its id: as the clients do (`protocol::C2sMessage::decode`,
//! `protocol::S2cMessage::decode`), as the server's dispatcher does
//! (`engine::MessageDispatcher::dispatch_packet`), and, for the payloads of NATS, as a node
//! decodes another's batch (`engine::cluster::wire::decode`) and the modules' events in it.
//!
//! Any id, any payload: no panic. An id is unknown exactly when `protocol::MESSAGE_IDS` has
//! no message of that direction with it; a message decoded is of the id's type, encodes into
//! a frame, and that frame's payload decodes to the same message (and encodes to the same
//! bytes: prost's encoding of a decoded message is canonical). The dispatcher calls the
//! handler exactly when the payload decodes, with that message, and answers the rest with
//! BAD_REQUEST (or NOT_AUTHENTICATED before the payload is looked at).

#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use engine::dispatcher::{Ctx, DispatchState, HandlerError, MessageDispatcher};
use engine::net::SessionId;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use protocol::world::{
    C2sChat, C2sLogin, C2sLogout, C2sPing, C2sRegister, C2sResume, C2sRoomJoin, C2sRoomLeave,
    C2sRoomList, C2sWhisper,
};
use protocol::{
    C2sMessage, ClientToServer, DecodeError, ErrorCode, MessageType, S2cMessage, MESSAGE_IDS,
};

/// Which id a frame has.
#[derive(Arbitrary, Debug)]
enum Id {
    /// The id of a message of `protocol::MESSAGE_IDS`, by index.
    Known(u8),
    /// An id in or near the two ranges (1000-1999 server to client, 2000-2999 client to
    /// server): mostly unknown ones.
    Near(bool, u8),
    /// Any id.
    Any(u16),
}

/// One input.
#[derive(Arbitrary, Debug)]
struct Input {
    /// The frame's id.
    id: Id,
    /// Its payload.
    payload: Vec<u8>,
    /// Whether the sender is logged in, for the dispatcher.
    logged_in: bool,
}

/// The dispatcher's state: what the handlers were given and the errors it answered.
#[derive(Default)]
struct State {
    logged_in: bool,
    /// The id and encoding of the message a handler was called with.
    handled: Option<(u16, Vec<u8>)>,
    errors: Vec<(u16, HandlerError)>,
}

impl DispatchState for State {
    fn is_authenticated(&self, _: SessionId) -> bool {
        self.logged_in
    }

    fn send_error(&mut self, _: SessionId, request_id: u16, error: HandlerError) {
        self.errors.push((request_id, error));
    }
}

/// A handler of `M` that notes what it was called with.
fn record<M: ClientToServer>(state: &mut State, _: &Ctx, message: M) -> Result<(), HandlerError> {
    state.handled = Some((M::ID, message.encode_to_vec()));
    Ok(())
}

/// A dispatcher with a handler for every client-to-server message: the login messages and
/// ping public, as the engine registers them, the others needing a login.
fn dispatcher() -> MessageDispatcher<State> {
    let mut d = MessageDispatcher::new();
    let registered = [
        d.register_public::<C2sPing>(record),
        d.register_public::<C2sLogin>(record),
        d.register_public::<C2sRegister>(record),
        d.register_public::<C2sResume>(record),
        d.register::<C2sLogout>(record),
        d.register::<C2sChat>(record),
        d.register::<C2sWhisper>(record),
        d.register::<C2sRoomJoin>(record),
        d.register::<C2sRoomLeave>(record),
        d.register::<C2sRoomList>(record),
    ];
    for result in registered {
        result.expect("each message is registered once");
    }
    d
}

/// Whether a registered message may be sent before login.
fn is_public(id: u16) -> bool {
    [C2sPing::ID, C2sLogin::ID, C2sRegister::ID, C2sResume::ID].contains(&id)
}

/// The encoding of the message in `$message` (an enum of decoded messages) and its frame,
/// for the variants listed; `None` for one not listed (a message added since).
macro_rules! encoded {
    ($message:expr, $enum:ident: $($variant:ident),* $(,)?) => {
        match $message {
            $($enum::$variant(m) => Some((m.encode_to_vec(), protocol::frame(m))),)*
            #[allow(unreachable_patterns)]
            _ => None,
        }
    };
}

/// Checks a decoded message of `id` from `payload` against its id and its re-encoding;
/// `decode` is the enum's own decoder, `encoded` its variant's encoding and frame.
fn check_round_trip<T: PartialEq + std::fmt::Debug>(
    id: u16,
    name: &str,
    message: &T,
    encoded: Option<(Vec<u8>, Result<Bytes, protocol::FrameTooLarge>)>,
    decode: impl Fn(u16, Bytes) -> Result<T, DecodeError>,
) {
    assert!(
        MESSAGE_IDS.contains(&(id, name)),
        "id {id} decoded as {name}, which MESSAGE_IDS does not pair with it"
    );
    let Some((bytes, frame)) = encoded else {
        return;
    };
    let again = decode(id, Bytes::from(bytes.clone())).expect("a re-encoded message decodes");
    assert_eq!(&again, message, "{name} changed through encode and decode");
    let frame = frame.expect("a message decoded from a frame fits in one");
    assert_eq!(
        usize::from(u16::from_le_bytes([frame[0], frame[1]])),
        frame.len()
    );
    assert_eq!(u16::from_le_bytes([frame[2], frame[3]]), id);
    assert_eq!(
        &frame[protocol::HEADER_LEN..],
        &bytes[..],
        "{name}'s frame payload"
    );
}

/// Checks what a decoder said of an id no message of its direction has, or of a payload.
fn check_error(id: u16, known: bool, error: &DecodeError) {
    match error {
        DecodeError::UnknownId(unknown) => {
            assert_eq!(*unknown, id);
            assert!(!known, "id {id} is in MESSAGE_IDS but was called unknown");
        }
        DecodeError::Payload { id: of, name, .. } => {
            assert_eq!(*of, id);
            assert!(MESSAGE_IDS.contains(&(id, name)));
            assert!(std::error::Error::source(error).is_some());
        }
    }
    assert!(!error.to_string().is_empty());
}

fuzz_target!(|input: Input| {
    let id = match input.id {
        Id::Known(i) => MESSAGE_IDS[usize::from(i) % MESSAGE_IDS.len()].0,
        Id::Near(server, i) => (if server { 995 } else { 1995 }) + u16::from(i) % 48,
        Id::Any(id) => id,
    };
    let payload = Bytes::from(input.payload);
    let c2s = (2000..3000).contains(&id) && MESSAGE_IDS.iter().any(|(i, _)| *i == id);
    let s2c = (1000..2000).contains(&id) && MESSAGE_IDS.iter().any(|(i, _)| *i == id);

    // Client to server, as the protocol crate decodes it.
    let decoded = C2sMessage::decode(id, payload.clone());
    match &decoded {
        Ok(message) => {
            assert_eq!(message.id(), id);
            let encoded = encoded!(message, C2sMessage:
                C2sChat, C2sPing, C2sRegister, C2sLogin, C2sResume, C2sLogout, C2sWhisper,
                C2sRoomJoin, C2sRoomLeave, C2sRoomList);
            check_round_trip(id, message.name(), message, encoded, C2sMessage::decode);
        }
        Err(error) => check_error(id, c2s, error),
    }

    // Server to client, as the clients decode it.
    match &S2cMessage::decode(id, payload.clone()) {
        Ok(message) => {
            assert_eq!(message.id(), id);
            let encoded = encoded!(message, S2cMessage:
                S2cChat, S2cPong, S2cWelcome, S2cError, S2cAuthResult, S2cWhisper,
                S2cRoomJoined, S2cRoomLeft, S2cRoomList, S2cRoomPresence);
            check_round_trip(id, message.name(), message, encoded, S2cMessage::decode);
        }
        Err(error) => check_error(id, s2c, error),
    }

    // The server's dispatcher: decodes by the id's registered type at dispatch.
    let dispatcher = dispatcher();
    let mut state = State {
        logged_in: input.logged_in,
        ..State::default()
    };
    let ctx = Ctx {
        session: SessionId(1),
        now: std::time::Instant::now(),
        now_us: 0,
    };
    dispatcher.dispatch_packet(&mut state, &ctx, id, payload.clone());
    let registered = dispatcher.handles(id);
    let may = registered && (input.logged_in || is_public(id));
    match (&state.handled, state.errors.as_slice()) {
        (Some((handled, bytes)), []) => {
            assert!(
                may,
                "the handler of {id} ran for a session that may not send it"
            );
            assert_eq!(*handled, id);
            let message = decoded
                .as_ref()
                .expect("the dispatcher decoded what C2sMessage did not");
            let again = C2sMessage::decode(id, Bytes::from(bytes.clone())).expect("re-encoded");
            assert_eq!(&again, message, "the dispatcher decoded another message");
        }
        (None, [(request, error)]) => {
            assert_eq!(*request, id);
            let expected = if registered && !may {
                ErrorCode::NotAuthenticated
            } else {
                ErrorCode::BadRequest
            };
            assert_eq!(error.code, expected, "{error:?}");
            if may {
                assert!(
                    decoded.is_err(),
                    "a payload that decodes was refused: {error:?}"
                );
            }
            if !registered {
                assert!(error.reason.contains(&id.to_string()), "{error:?}");
            }
        }
        other => panic!("the dispatcher both handled and refused, or neither: {other:?}"),
    }

    // The payload of a NATS message, as a node decodes another's batch.
    if let Ok(batch) = engine::cluster::wire::decode(&payload) {
        let bytes = batch.encode_to_vec();
        let again = engine::cluster::wire::decode(&bytes).expect("a re-encoded batch decodes");
        assert!(again == batch, "a batch changed through encode and decode");
        for event in batch.events {
            if let Some(kind) = event.kind {
                let _ = engine::modules::rooms::cluster::decode(&kind);
            }
        }
    }
    if let Ok(event) = engine::modules::rooms::cluster::RoomsEvent::decode(payload.clone()) {
        let again = engine::modules::rooms::cluster::RoomsEvent::decode(&event.encode_to_vec()[..]);
        assert!(
            again.ok() == Some(event),
            "a rooms event changed through encode and decode"
        );
    }
    if let Ok(whisper) = engine::modules::chat::Whisper::decode(payload) {
        let again = engine::modules::chat::Whisper::decode(&whisper.encode_to_vec()[..]);
        assert!(
            again.ok() == Some(whisper),
            "a whisper changed through encode and decode"
        );
    }
});
