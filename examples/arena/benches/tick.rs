//! How the arena's tick grows with the number of entities, in memory (the engine's core, no
//! sockets), release build: every entity walking, every player sent its update, each tick.
//! The world grows with the number of entities so that their density stays that of the
//! default (5,000 in 1000 × 1000): each sees about as many others whatever their number, and
//! the tick must then grow linearly, not with the square of the number of entities.
//!
//! cargo bench -p arena --bench tick
//! ARENA_BENCH_TICKS=400 cargo bench -p arena --bench tick

use std::time::Instant;

use arena::arena::C2sMove;
use arena::sim::{frame, Sim};
use arena::{Arena, ArenaConfig};

fn main() {
    if let Err(error) = config::logging::init(&config::LogConfig::default(), Some("warn"), "bench")
    {
        eprintln!("bench: {error}");
    }
    let ticks: usize = std::env::var("ARENA_BENCH_TICKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    println!("entities  world   in view  tick p50     tick p99     per entity   bytes/tick");
    for n in [1000usize, 2000, 4000, 8000, 16000] {
        let defaults = ArenaConfig::default();
        let world_size = (n as f32 / 5000.0).sqrt() * defaults.world_size;
        let mut sim = Sim::with_config(
            room_for_all(),
            Arena::new(ArenaConfig {
                world_size,
                ..defaults
            }),
        );
        let sessions = log_in(&mut sim, n);
        let mut times = Vec::with_capacity(ticks);
        let mut bytes = 0usize;
        let mut in_view = 0usize;
        for t in 0..ticks {
            // Each player turns now and then: a random walk, the same for every run.
            let moves: Vec<engine::core::Input> = sessions
                .iter()
                .enumerate()
                .filter(|(i, _)| (i + t).is_multiple_of(20))
                .map(|(i, &s)| {
                    let angle = ((i * 7919 + t * 104_729) % 6283) as f32 / 1000.0;
                    frame(
                        s,
                        &C2sMove {
                            dx: angle.cos(),
                            dy: angle.sin(),
                            sent_at_us: 0,
                        },
                    )
                })
                .collect();
            let started = Instant::now();
            let output = sim.tick(moves);
            times.push(started.elapsed());
            bytes = output
                .batches
                .iter()
                .flat_map(|(_, f)| f.iter())
                .map(|f| f.len())
                .sum();
        }
        in_view = in_view.max(
            sim.world()
                .game
                .players
                .values()
                .map(|p| p.visible.len())
                .sum::<usize>()
                / n,
        );
        times.sort();
        let p50 = times[times.len() / 2];
        let p99 = times[times.len() * 99 / 100];
        println!(
            "{n:>8}  {world_size:>5.0}  {in_view:>7}  {:>8.2} ms  {:>8.2} ms  {:>8.2} µs  {bytes:>10}",
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0,
            p50.as_secs_f64() * 1e6 / n as f64
        );
    }
    // Crowds: every player on one spot, each seeing the `view_max` nearest.
    println!();
    println!("crowd on one spot  tick p50     tick p99     largest update");
    for n in [1300usize, 5000] {
        let mut sim = Sim::with_config(room_for_all(), Arena::new(ArenaConfig::default()));
        let sessions = log_in(&mut sim, n);
        for &s in &sessions {
            sim.world_mut().game.place(s, 500.0, 500.0);
        }
        let mut times = Vec::with_capacity(ticks);
        let mut largest = 0;
        for _ in 0..ticks {
            let started = Instant::now();
            let output = sim.tick(vec![]);
            times.push(started.elapsed());
            largest = output
                .batches
                .iter()
                .flat_map(|(_, f)| f.iter())
                .map(|f| f.len())
                .max()
                .unwrap_or(0)
                .max(largest);
        }
        times.sort();
        println!(
            "{n:>17}  {:>8.2} ms  {:>8.2} ms  {largest:>8} bytes",
            times[times.len() / 2].as_secs_f64() * 1000.0,
            times[times.len() * 99 / 100].as_secs_f64() * 1000.0,
        );
    }
}

/// A server with room for the largest run, every place open to guests.
fn room_for_all() -> config::ServerConfig {
    let mut config = config::ServerConfig::default();
    config.server.max_sessions = 20_000;
    config.limits.account_reserve_percent = 0;
    config
}

/// `n` guests with names of 32 characters, logged in a thousand at a time (the logins one
/// tick may have waiting for the database).
fn log_in(sim: &mut Sim, n: usize) -> Vec<engine::net::SessionId> {
    let names: Vec<String> = (0..n).map(|i| format!("{i:0>32}")).collect();
    names
        .chunks(1000)
        .flat_map(|chunk| sim.guests(chunk))
        .collect()
}
