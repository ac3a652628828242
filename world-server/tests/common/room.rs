//! A room of the chat world in memory (the engine's core at simulated time), and one line
//! said in it: shared by the allocation test and the benches.

use engine::modules::rooms::RoomsConfig;
use engine::net::SessionId;
use engine::protocol::world::{C2sChat, C2sRoomJoin};
use engine::testing::Sim;
use world_server::ChatWorld;

/// A room of `members` guests, warmed up: every member has said a line, and the buffers the
/// tick uses are there.
pub fn room_of(members: usize) -> (Sim<ChatWorld>, Vec<SessionId>) {
    let mut config = config::ServerConfig::default();
    config.world.room_capacity = 1000;
    let mut sim = Sim::with_config(config.clone(), ChatWorld::new(RoomsConfig::from(&config)));
    let names: Vec<String> = (0..members).map(|i| format!("member{i}")).collect();
    let sessions = sim.guests(&names);
    for &session in &sessions {
        sim.send(
            session,
            &C2sRoomJoin {
                room: "lobby".into(),
                ..Default::default()
            },
        );
    }
    sim.run_for(std::time::Duration::from_secs(1));
    for &session in &sessions {
        sim.clear(session);
    }
    for round in 0..3 {
        for &session in &sessions {
            say(&mut sim, session, round);
        }
    }
    (sim, sessions)
}

/// One tick in which `from` says a line; how many deliveries it made, and the buffers go back.
pub fn say(sim: &mut Sim<ChatWorld>, from: SessionId, n: u64) -> usize {
    sim.send(
        from,
        &C2sChat {
            room: "lobby".into(),
            content: "hello".into(),
            sent_at_us: n,
        },
    );
    let output = sim.tick([]);
    let delivered = output.batches.iter().map(|(_, frames)| frames.len()).sum();
    sim.recycle(output);
    delivered
}
