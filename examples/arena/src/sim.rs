//! The arena in memory, for tests and benchmarks: the engine's test kit over an [`Arena`]
//! (its core at simulated time, a database in memory; no sockets, no threads), and the frames
//! of its output decoded.

use bytes::Bytes;
use engine::core::{Input, Output};
use engine::net::{Packet, SessionId};
use engine::protocol::{ClientToServer, S2cMessage as EngineMessage};

use crate::{Arena, S2cMessage};

/// A decoded frame a session was sent: the engine's or the arena's.
#[derive(Clone, Debug, PartialEq)]
pub enum Received {
    /// One of the engine's messages (welcome, errors, logins, pong).
    Engine(EngineMessage),
    /// One of the arena's.
    Arena(S2cMessage),
}

/// An arena run by the engine's core at simulated time: the engine's test kit
/// ([`engine::testing::Sim`]) over an [`Arena`] (`Sim::new(Arena::new(rules))`), whose
/// `tick` hands back the core's output for [`received`] and [`update`] to read.
pub type Sim = engine::testing::Sim<Arena>;

/// A frame of `message` from `session`, as the network would hand it to the core.
pub fn frame<M: ClientToServer>(session: SessionId, message: &M) -> Input {
    Input::Received {
        session,
        packet: Packet {
            id: M::ID,
            payload: Bytes::from(prost::Message::encode_to_vec(message)),
        },
    }
}

/// What `session` is sent in `output`, decoded.
pub fn received(output: &Output, session: SessionId) -> Vec<Received> {
    output
        .batches
        .iter()
        .filter(|(s, _)| *s == session)
        .flat_map(|(_, frames)| frames.iter())
        .map(|frame| {
            let id = u16::from_le_bytes([frame[2], frame[3]]);
            let payload = frame.slice(4..);
            match S2cMessage::decode(id, payload.clone()) {
                Ok(message) => Received::Arena(message),
                Err(_) => Received::Engine(
                    EngineMessage::decode(id, payload)
                        .expect("a message of the engine or the arena"),
                ),
            }
        })
        .collect()
}

/// The arena's update to `session` in `output`, if it got one.
pub fn update(output: &Output, session: SessionId) -> Option<crate::arena::S2cUpdate> {
    received(output, session).into_iter().find_map(|m| match m {
        Received::Arena(S2cMessage::S2cUpdate(u)) => Some(u),
        _ => None,
    })
}
