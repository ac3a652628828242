//! Connection-level messages: ping.

use protocol::world::{C2sPing, S2cPong};

use crate::dispatcher::{Ctx, DispatchError, HandlerError, MessageDispatcher};
use crate::world::Game;
use crate::world::World;

/// Registers the handlers of this file.
pub fn register<G: Game>(d: &mut MessageDispatcher<World<G>>) -> Result<(), DispatchError> {
    d.register_public::<C2sPing>(ping)
}

/// C2S_Ping -> S2C_Pong, at any time. On a resumable session the ping says how many frames
/// the client received (the server lets go of them) and the pong how many requests the server
/// processed.
fn ping<G: Game>(world: &mut World<G>, ctx: &Ctx, ping: C2sPing) -> Result<(), HandlerError> {
    let processed = world
        .resume
        .acknowledge(ctx.session, ping.received)
        .map_err(|sent| {
            HandlerError::bad_request(format!(
                "received {} is more than the {sent} frames this session was sent",
                ping.received
            ))
        })?;
    let pong = S2cPong {
        seq: ping.seq,
        client_time_us: ping.client_time_us,
        server_time_us: ctx.now_us,
        processed,
    };
    world.out.send(ctx.session, &pong);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::testkit::Harness;
    use protocol::S2cMessage;

    #[test]
    fn ping_before_login_gets_pong_with_the_same_seq_and_client_time() {
        let mut h = Harness::new();
        let s = h.connect();
        h.send(
            s,
            C2sPing {
                seq: 42,
                client_time_us: 123,
                ..Default::default()
            },
        );
        match h.take(s).as_slice() {
            [S2cMessage::S2cPong(p)] => {
                assert_eq!((p.seq, p.client_time_us), (42, 123));
                assert!(p.server_time_us > 0);
            }
            other => panic!("{other:?}"),
        }
    }
}
