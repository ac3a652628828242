//! What the chat world's core costs per message, in memory (no sockets, no threads): decoding
//! a request, a request through the whole tick (admission, decode, dispatch, the answer's
//! encoding, the batch), and a chat line fanned out to a room of 20 and of 100 members (the
//! tick in which one member says it: decode, dispatch, the room's history, one frame encoded
//! once and pushed to every member's batch).
//!
//! cargo bench -p world-server --bench core

#[path = "../tests/common/room.rs"]
mod room;

use bytes::{Bytes, BytesMut};
use divan::Bencher;
use engine::protocol::world::{C2sChat, C2sPing};
use engine::protocol::{encode_frame, C2sMessage, MessageType, HEADER_LEN};

fn main() {
    divan::main();
}

/// A C2S_Chat payload decoded to its message.
#[divan::bench]
fn decode_chat(bencher: Bencher) {
    let chat = C2sChat {
        room: "lobby".into(),
        content: "hello, everyone in the lobby".into(),
        sent_at_us: 1_767_225_600_000_000,
    };
    let mut frame = BytesMut::new();
    encode_frame(&chat, &mut frame).expect("a chat line fits in a frame");
    let payload: Bytes = frame.freeze().slice(HEADER_LEN..);
    bencher.bench(|| C2sMessage::decode(C2sChat::ID, divan::black_box(payload.clone())));
}

/// One C2S_Ping through a whole tick of the core, answered with S2C_Pong.
#[divan::bench]
fn dispatch_ping(bencher: Bencher) {
    let (mut sim, sessions) = room::room_of(1);
    let mut seq = 0;
    bencher.bench_local(|| {
        seq += 1;
        sim.send(
            sessions[0],
            &C2sPing {
                seq,
                client_time_us: 0,
                ..Default::default()
            },
        );
        let output = sim.tick([]);
        sim.recycle(output);
    });
}

/// One chat line to a room of `members`, each line from the next member.
#[divan::bench(args = [20, 100])]
fn fan_out(bencher: Bencher, members: usize) {
    let (mut sim, sessions) = room::room_of(members);
    let mut n = 0u64;
    bencher.bench_local(|| {
        n += 1;
        let from = sessions[n as usize % sessions.len()];
        room::say(&mut sim, from, n)
    });
}
