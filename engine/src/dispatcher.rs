//! Routes decoded client messages to their handlers, keyed by each message type's
//! compile-time id.
//!
//! ```ignore
//! dispatcher.register::<C2sChat>(chat::say)?;         // needs a login
//! dispatcher.register_public::<C2sPing>(session::ping)?; // allowed before login
//! ```
//!
//! An id that no handler is registered for, and a payload that does not decode as the message
//! its id names, are bad requests: the sender gets `S2C_Error BAD_REQUEST` and stays connected.

use std::time::Instant;

use bytes::Bytes;
use net::SessionId;
use protocol::{ClientToServer, ErrorCode};

/// What a handler sees besides the world and the message.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    /// The session that sent the message.
    pub session: SessionId,
    /// The tick's time.
    pub now: Instant,
    /// The tick's time in microseconds since the Unix epoch.
    pub now_us: u64,
}

/// A request that failed: the sender gets `S2C_Error` with this code and reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerError {
    /// The error code.
    pub code: ErrorCode,
    /// One line: what was wrong, with which value.
    pub reason: String,
    /// When not 0: the request may succeed if sent again after this many milliseconds
    /// (S2C_Error's `retry_after_ms`).
    pub retry_after_ms: u32,
}

impl HandlerError {
    /// An error with `code` and `reason`.
    pub fn new(code: ErrorCode, reason: impl Into<String>) -> Self {
        HandlerError {
            code,
            reason: reason.into(),
            retry_after_ms: 0,
        }
    }

    /// An `UNAVAILABLE` with `reason`: send the request again after `retry_after_ms`.
    pub fn unavailable(reason: impl Into<String>, retry_after_ms: u32) -> Self {
        HandlerError {
            retry_after_ms,
            ..HandlerError::new(ErrorCode::Unavailable, reason)
        }
    }

    /// A `BAD_REQUEST` with `reason`.
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, reason)
    }
}

/// A handler of message `M` over state `S`.
pub type Handler<S, M> = fn(&mut S, &Ctx, M) -> Result<(), HandlerError>;

/// What the dispatcher needs from the state it dispatches into.
pub trait DispatchState {
    /// Whether `session` is logged in (messages registered with
    /// [`MessageDispatcher::register`] need it).
    fn is_authenticated(&self, session: SessionId) -> bool;
    /// Sends `S2C_Error` to `session`.
    fn send_error(&mut self, session: SessionId, request_id: u16, error: HandlerError);
}

/// Why a registration or a packet was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    /// A second handler for one message type.
    #[error("a handler for {name} (id {id}) is registered already")]
    Duplicate {
        /// The message's id.
        id: u16,
        /// The message's proto name.
        name: &'static str,
    },
    /// A client-to-server message whose id lies outside 2000-2999 (the build refuses such an
    /// id; a type made by hand could have one).
    #[error("{name} has id {id}, outside the client-to-server range 2000-2999")]
    OutOfRange {
        /// The message's id.
        id: u16,
        /// The message's proto name.
        name: &'static str,
    },
    /// No handler is registered for the id (S2C ids included).
    #[error("unknown message id {0}")]
    UnknownId(u16),
    /// The payload does not decode as the message the id names.
    #[error("{0}")]
    Undecodable(String),
}

/// A registered handler behind its message type: decodes the payload as that type and calls
/// the handler. Decoding here, at dispatch, keeps the payload a zero-copy view until then and
/// needs no enum of every message, so a game's own messages dispatch like the engine's.
type Erased<S> = Box<dyn Fn(&mut S, &Ctx, Bytes) -> Result<(), HandlerError> + Send>;

struct Entry<S> {
    name: &'static str,
    public: bool,
    call: Erased<S>,
}

/// First client-to-server id; handlers are kept in a table indexed from it.
const FIRST_ID: u16 = 2000;
const TABLE_LEN: usize = 1000;

/// Message id to handler, for one state type.
pub struct MessageDispatcher<S> {
    table: Vec<Option<Entry<S>>>,
}

impl<S: DispatchState + 'static> Default for MessageDispatcher<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: DispatchState + 'static> MessageDispatcher<S> {
    /// An empty dispatcher.
    pub fn new() -> Self {
        MessageDispatcher {
            table: (0..TABLE_LEN).map(|_| None).collect(),
        }
    }

    /// Registers `handler` for `M`; the sender must be logged in, else it gets
    /// `NOT_AUTHENTICATED`.
    pub fn register<M: ClientToServer>(
        &mut self,
        handler: Handler<S, M>,
    ) -> Result<(), DispatchError> {
        self.insert(handler, false)
    }

    /// Registers `handler` for `M`, allowed before login too.
    pub fn register_public<M: ClientToServer>(
        &mut self,
        handler: Handler<S, M>,
    ) -> Result<(), DispatchError> {
        self.insert(handler, true)
    }

    fn insert<M: ClientToServer>(
        &mut self,
        handler: Handler<S, M>,
        public: bool,
    ) -> Result<(), DispatchError> {
        let Some(slot) = M::ID
            .checked_sub(FIRST_ID)
            .and_then(|index| self.table.get_mut(index as usize))
        else {
            return Err(DispatchError::OutOfRange {
                id: M::ID,
                name: M::NAME,
            });
        };
        if slot.is_some() {
            return Err(DispatchError::Duplicate {
                id: M::ID,
                name: M::NAME,
            });
        }
        *slot = Some(Entry {
            name: M::NAME,
            public,
            call: Box::new(move |state, ctx, payload| match M::decode(payload) {
                Ok(message) => handler(state, ctx, message),
                Err(source) => Err(HandlerError::bad_request(
                    protocol::DecodeError::Payload {
                        id: M::ID,
                        name: M::NAME,
                        source,
                    }
                    .to_string(),
                )),
            }),
        });
        Ok(())
    }

    fn entry(&self, id: u16) -> Option<&Entry<S>> {
        let index = id.checked_sub(FIRST_ID)? as usize;
        self.table.get(index)?.as_ref()
    }

    /// Every message type a handler is registered for: (id, proto name), in id order.
    pub fn registered(&self) -> Vec<(u16, &'static str)> {
        self.table
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().map(|e| (FIRST_ID + i as u16, e.name)))
            .collect()
    }

    /// Whether a handler is registered for `id`.
    pub fn handles(&self, id: u16) -> bool {
        self.entry(id).is_some()
    }

    /// The proto name of the message registered for `id`.
    pub fn name_of(&self, id: u16) -> Option<&'static str> {
        self.entry(id).map(|e| e.name)
    }

    /// Decodes one frame's payload as the message its id names and runs that message's
    /// handler; an unknown id, an undecodable payload, a missing login and the handler's own
    /// error go back to the sender as `S2C_Error` with the frame's id.
    pub fn dispatch_packet(&self, state: &mut S, ctx: &Ctx, id: u16, payload: Bytes) {
        let Some(entry) = self.entry(id) else {
            state.send_error(
                ctx.session,
                id,
                HandlerError::bad_request(DispatchError::UnknownId(id).to_string()),
            );
            return;
        };
        if !entry.public && !state.is_authenticated(ctx.session) {
            state.send_error(
                ctx.session,
                id,
                HandlerError::new(
                    ErrorCode::NotAuthenticated,
                    format!("{} needs a login", entry.name),
                ),
            );
            return;
        }
        if let Err(error) = (entry.call)(state, ctx, payload) {
            state.send_error(ctx.session, id, error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::world::{C2sChat, C2sPing};
    use protocol::MessageType;

    #[derive(Default)]
    struct State {
        logged_in: bool,
        pings: Vec<u32>,
        chats: Vec<String>,
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

    fn ping(s: &mut State, _: &Ctx, m: C2sPing) -> Result<(), HandlerError> {
        s.pings.push(m.seq);
        Ok(())
    }

    fn chat(s: &mut State, _: &Ctx, m: C2sChat) -> Result<(), HandlerError> {
        if m.content.is_empty() {
            return Err(HandlerError::bad_request("content is empty"));
        }
        s.chats.push(m.content);
        Ok(())
    }

    fn ctx() -> Ctx {
        Ctx {
            session: SessionId(1),
            now: Instant::now(),
            now_us: 0,
        }
    }

    fn payload<M: prost::Message>(m: &M) -> Bytes {
        Bytes::from(m.encode_to_vec())
    }

    fn dispatcher() -> MessageDispatcher<State> {
        let mut d = MessageDispatcher::new();
        d.register_public::<C2sPing>(ping).unwrap();
        d.register::<C2sChat>(chat).unwrap();
        d
    }

    #[test]
    fn registered_message_reaches_its_handler() {
        let d = dispatcher();
        let mut s = State::default();
        let m = C2sPing {
            seq: 7,
            client_time_us: 1,
            ..Default::default()
        };
        d.dispatch_packet(&mut s, &ctx(), C2sPing::ID, payload(&m));
        assert_eq!(s.pings, vec![7]);
        assert!(s.errors.is_empty());
    }

    #[test]
    fn duplicate_registration_fails_naming_the_type() {
        let mut d = dispatcher();
        let err = d.register_public::<C2sPing>(ping).unwrap_err();
        assert_eq!(
            err,
            DispatchError::Duplicate {
                id: 2001,
                name: "C2S_Ping"
            }
        );
        assert!(err.to_string().contains("C2S_Ping"));
    }

    #[test]
    fn unknown_id_answers_bad_request_instead_of_panicking() {
        let d = dispatcher();
        let mut s = State::default();
        for id in [0u16, 1000, 1003, 1999, 2010, 2999, 3000, u16::MAX] {
            d.dispatch_packet(&mut s, &ctx(), id, Bytes::new());
        }
        assert_eq!(s.errors.len(), 8);
        for (id, e) in &s.errors {
            assert_eq!(e.code, ErrorCode::BadRequest);
            assert!(e.reason.contains(&id.to_string()), "{e:?}");
        }
    }

    #[test]
    fn undecodable_payload_answers_bad_request_naming_the_message() {
        let d = dispatcher();
        let mut s = State::default();
        d.dispatch_packet(
            &mut s,
            &ctx(),
            C2sPing::ID,
            Bytes::from_static(&[0xff, 0xff, 0xff]),
        );
        assert_eq!(s.errors.len(), 1);
        assert_eq!(s.errors[0].0, C2sPing::ID);
        assert_eq!(s.errors[0].1.code, ErrorCode::BadRequest);
        assert!(
            s.errors[0].1.reason.contains("C2S_Ping"),
            "{:?}",
            s.errors[0]
        );
    }

    #[test]
    fn message_that_needs_login_answers_not_authenticated() {
        let d = dispatcher();
        let mut s = State::default();
        let m = C2sChat {
            room: "r".into(),
            content: "hi".into(),
            sent_at_us: 0,
        };
        d.dispatch_packet(&mut s, &ctx(), C2sChat::ID, payload(&m));
        assert!(s.chats.is_empty());
        assert_eq!(s.errors[0].1.code, ErrorCode::NotAuthenticated);
        s.logged_in = true;
        d.dispatch_packet(&mut s, &ctx(), C2sChat::ID, payload(&m));
        assert_eq!(s.chats, vec!["hi".to_string()]);
    }

    #[test]
    fn handler_error_reaches_the_sender_with_the_request_id() {
        let d = dispatcher();
        let mut s = State {
            logged_in: true,
            ..State::default()
        };
        let m = C2sChat::default();
        d.dispatch_packet(&mut s, &ctx(), C2sChat::ID, payload(&m));
        assert_eq!(
            s.errors,
            vec![(2000, HandlerError::bad_request("content is empty"))]
        );
    }
}
