//! The arena in memory: the engine's core at simulated time, no sockets.

use arena::arena::{C2sMove, S2cSpawned};
use arena::sim::{frame, received, update, Received, Sim};
use arena::{Arena, ArenaConfig, S2cMessage};
use engine::core::Input;
use engine::net::DisconnectReason;
use engine::protocol::ErrorCode;

fn small() -> ArenaConfig {
    ArenaConfig {
        world_size: 200.0,
        view_radius: 20.0,
        speed: 10.0,
        ..ArenaConfig::default()
    }
}

fn walk(dx: f32, dy: f32, sent_at_us: u64) -> C2sMove {
    C2sMove { dx, dy, sent_at_us }
}

#[test]
fn a_player_logging_in_is_spawned_then_sent_one_update_every_tick() {
    let mut sim = Sim::new(Arena::new(small()));
    let session = sim.world_mut().clients.len();
    assert_eq!(session, 0);
    let token = 0;
    let output = sim.tick(vec![Input::Accepted {
        token,
        peer: "10.0.0.1:9".parse().unwrap(),
    }]);
    let ann = output.opened[0].1;
    sim.tick(vec![frame(
        ann,
        &engine::protocol::world::C2sLogin {
            username: "ann".into(),
            password: String::new(),
            ..Default::default()
        },
    )]);
    // The guest check is answered by the DB worker, taken at the next tick.
    let output = sim.tick(vec![]);
    let replies = received(&output, ann);
    let spawned: Vec<&S2cSpawned> = replies
        .iter()
        .filter_map(|m| match m {
            Received::Arena(S2cMessage::S2cSpawned(s)) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(spawned.len(), 1, "{replies:?}");
    assert_eq!(spawned[0].entity, ann.0);
    assert_eq!(
        (
            spawned[0].view_radius,
            spawned[0].speed,
            spawned[0].world_size
        ),
        (20.0, 10.0, 200.0)
    );
    assert!(matches!(
        replies[0],
        Received::Engine(engine::protocol::S2cMessage::S2cAuthResult(_))
    ));
    for _ in 0..3 {
        let output = sim.tick(vec![]);
        let updates = received(&output, ann)
            .into_iter()
            .filter(|m| matches!(m, Received::Arena(S2cMessage::S2cUpdate(_))))
            .count();
        assert_eq!(updates, 1, "one update per tick");
        assert_eq!(output.batches.iter().filter(|(s, _)| *s == ann).count(), 1);
    }
}

#[test]
fn an_entity_coming_into_view_is_entered_once_listed_while_near_and_left_once_gone() {
    let mut sim = Sim::new(Arena::new(small()));
    let ann = sim.guest("ann");
    let bob = sim.guest("bob");
    sim.world_mut().game.place(ann, 50.0, 50.0);
    sim.world_mut().game.place(bob, 100.0, 50.0);
    let output = sim.tick(vec![]);
    assert!(
        update(&output, ann).unwrap().entities.is_empty(),
        "50 apart"
    );
    // Bob walks towards ann at 10 units a second: 0.5 a tick.
    sim.tick(vec![frame(bob, &walk(-1.0, 0.0, 7))]);
    let mut entered_at = None;
    for t in 0..100 {
        let u = update(&sim.tick(vec![]), ann).unwrap();
        if !u.entered.is_empty() {
            assert_eq!(u.entered.len(), 1);
            assert_eq!(
                (u.entered[0].id, u.entered[0].name.as_str()),
                (bob.0, "bob")
            );
            entered_at = Some(t);
        }
        if entered_at.is_some() {
            assert_eq!(u.entities.len(), 1);
            assert!((u.entities[0].x - 50.0).abs() <= 20.0);
            break;
        }
    }
    let entered_at = entered_at.expect("bob came into view");
    // Until bob is 20 units from ann: entered after walking 30 units, 60 ticks.
    assert!((58..=62).contains(&entered_at), "{entered_at}");
    let bob_update = update(&sim.tick(vec![]), bob).unwrap();
    assert_eq!(bob_update.move_sent_at_us, 7, "the move applied is echoed");
    // Bob goes away: left once, then no more.
    sim.tick(vec![frame(bob, &walk(0.0, 1.0, 8))]);
    let mut lefts = 0;
    for _ in 0..100 {
        let u = update(&sim.tick(vec![]), ann).unwrap();
        lefts += u.left.iter().filter(|&&id| id == bob.0).count();
    }
    assert_eq!(lefts, 1);
}

#[test]
fn a_move_longer_than_one_goes_no_faster_than_the_speed() {
    let mut sim = Sim::new(Arena::new(small()));
    let ann = sim.guest("ann");
    sim.world_mut().game.place(ann, 10.0, 10.0);
    sim.tick(vec![frame(ann, &walk(1000.0, 0.0, 1))]);
    let before = update(&sim.tick(vec![]), ann).unwrap().x;
    for _ in 0..19 {
        sim.tick(vec![]);
    }
    let after = update(&sim.tick(vec![]), ann).unwrap().x;
    // 20 ticks of 50 ms at 10 units a second.
    assert!(
        ((after - before) - 10.0).abs() < 0.01,
        "{before} -> {after}"
    );
}

#[test]
fn entities_stay_inside_the_world() {
    let mut sim = Sim::new(Arena::new(small()));
    let ann = sim.guest("ann");
    sim.world_mut().game.place(ann, 1.0, 199.0);
    sim.tick(vec![frame(ann, &walk(-1.0, 1.0, 1))]);
    for _ in 0..100 {
        sim.tick(vec![]);
    }
    let u = update(&sim.tick(vec![]), ann).unwrap();
    assert_eq!(u.x, 0.0);
    assert!(u.y < 200.0 && u.y > 199.9);
}

#[test]
fn a_move_that_is_not_a_number_answers_bad_request_and_changes_nothing() {
    let mut sim = Sim::new(Arena::new(small()));
    let ann = sim.guest("ann");
    let output = sim.tick(vec![frame(ann, &walk(f32::NAN, 0.0, 1))]);
    let error = received(&output, ann).into_iter().find_map(|m| match m {
        Received::Engine(engine::protocol::S2cMessage::S2cError(e)) => Some(e),
        _ => None,
    });
    let error = error.expect("an error");
    assert_eq!(error.code(), ErrorCode::BadRequest);
    assert_eq!(error.request_id, 2100);
    let player = &sim.world_mut().game.players[&ann];
    assert_eq!((player.dx, player.dy), (0.0, 0.0));
}

#[test]
fn a_move_before_login_answers_not_authenticated() {
    let mut sim = Sim::new(Arena::new(small()));
    let output = sim.tick(vec![Input::Accepted {
        token: 0,
        peer: "10.0.0.1:9".parse().unwrap(),
    }]);
    let s = output.opened[0].1;
    let output = sim.tick(vec![frame(s, &walk(1.0, 0.0, 1))]);
    let codes: Vec<ErrorCode> = received(&output, s)
        .into_iter()
        .filter_map(|m| match m {
            Received::Engine(engine::protocol::S2cMessage::S2cError(e)) => Some(e.code()),
            _ => None,
        })
        .collect();
    assert_eq!(codes, [ErrorCode::NotAuthenticated]);
}

#[test]
fn a_player_whose_connection_ends_leaves_the_others_view() {
    let mut sim = Sim::new(Arena::new(small()));
    let ann = sim.guest("ann");
    let bob = sim.guest("bob");
    sim.world_mut().game.place(ann, 50.0, 50.0);
    sim.world_mut().game.place(bob, 55.0, 50.0);
    assert_eq!(update(&sim.tick(vec![]), ann).unwrap().entities.len(), 1);
    let output = sim.tick(vec![Input::Closed {
        session: bob,
        reason: DisconnectReason::PeerClosed,
    }]);
    let u = update(&output, ann).unwrap();
    assert_eq!(u.left, [bob.0]);
    assert!(u.entities.is_empty());
    assert!(!sim.world_mut().game.players.contains_key(&bob));
}

#[test]
fn every_update_lists_exactly_the_entities_within_the_view_radius_of_the_true_positions() {
    let mut sim = Sim::new(Arena::new(ArenaConfig {
        world_size: 150.0,
        view_radius: 15.0,
        speed: 30.0,
        ..ArenaConfig::default()
    }));
    let names: Vec<String> = (0..300).map(|i| format!("bot{i:03}")).collect();
    let sessions = sim.guests(&names);
    for t in 0..60u32 {
        let moves: Vec<Input> = sessions
            .iter()
            .enumerate()
            .filter(|(i, _)| (*i as u32 + t).is_multiple_of(7))
            .map(|(i, &s)| {
                let angle = ((i as u32).wrapping_mul(2654435761).wrapping_add(t * 40503) % 6283)
                    as f32
                    / 1000.0;
                frame(s, &walk(angle.cos(), angle.sin(), 0))
            })
            .collect();
        let output = sim.tick(moves);
        // Every player's own position this tick, from its own update: the truth.
        let truth: Vec<(u64, f32, f32)> = sessions
            .iter()
            .map(|&s| {
                let u = update(&output, s).unwrap();
                (s.0, u.x, u.y)
            })
            .collect();
        for &s in sessions.iter().step_by(11) {
            let u = update(&output, s).unwrap();
            let mut seen: Vec<u64> = u.entities.iter().map(|e| e.id).collect();
            seen.sort();
            let mut expected: Vec<u64> = truth
                .iter()
                .filter(|(id, x, y)| {
                    *id != s.0 && ((x - u.x).powi(2) + (y - u.y).powi(2)) <= 15.0 * 15.0
                })
                .map(|(id, _, _)| *id)
                .collect();
            expected.sort();
            assert_eq!(seen, expected, "tick {t}, player {s}");
            for e in &u.entities {
                let (_, x, y) = truth.iter().find(|(id, _, _)| *id == e.id).unwrap();
                assert_eq!((e.x, e.y), (*x, *y), "positions of this tick");
            }
        }
    }
}

#[test]
fn the_arena_counts_its_entities_and_what_it_sends_in_its_own_metrics() {
    let mut sim = Sim::new(Arena::new(small()));
    let mut registry = engine::metrics::Registry::default();
    sim.world_mut().register_metrics(&mut registry);
    // Three players side by side: each sees the two others every tick.
    let names: Vec<String> = ["ann", "bob", "cyd"].map(String::from).to_vec();
    let sessions = sim.guests(&names);
    for (i, &s) in sessions.iter().enumerate() {
        sim.world_mut().game.place(s, 100.0 + i as f32, 100.0);
    }
    let before = sim.world_mut().game.metrics.entities_sent.get();
    sim.tick(vec![]);
    sim.tick(vec![]);
    let text = engine::metrics::encode(&registry);
    assert!(
        text.contains("# HELP arena_entities Entities in the arena"),
        "{text}"
    );
    assert!(text.contains("\narena_entities 3\n"), "{text}");
    let sent = sim.world_mut().game.metrics.entities_sent.get();
    assert_eq!(
        sent - before,
        2 * 3 * 2,
        "two ticks, three players, two in view each"
    );
    assert!(
        text.contains(&format!("\narena_entities_sent_total {sent}\n")),
        "{text}"
    );
}

/// `n` guests with names of 32 characters, logged in a thousand at a time (the logins one
/// tick may have waiting for the database).
fn crowd(sim: &mut Sim, n: usize) -> Vec<engine::net::SessionId> {
    let names: Vec<String> = (0..n).map(|i| format!("{i:0>32}")).collect();
    names
        .chunks(1000)
        .flat_map(|chunk| sim.guests(chunk))
        .collect()
}

/// 5,000 players on one spot: each is sent one update every tick, of the `view_max` nearest,
/// every one of them named the first time it comes into view; the frame stays small.
#[test]
fn a_crowd_of_five_thousand_on_one_spot_keeps_every_player_updated_within_a_frame() {
    let mut sim = Sim::new(Arena::new(ArenaConfig::default()));
    let sessions = crowd(&mut sim, 5000);
    for &s in &sessions {
        sim.world_mut().game.place(s, 500.0, 500.0);
    }
    let view_max = ArenaConfig::default().view_max;
    for t in 0..3 {
        // What each player was told it sees before this tick.
        let before: Vec<Vec<u64>> = sessions
            .iter()
            .map(|s| sim.world().game.players[s].visible.clone())
            .collect();
        let output = sim.tick(vec![]);
        for (i, &s) in sessions.iter().enumerate() {
            let u = update(&output, s).unwrap_or_else(|| panic!("tick {t}: no update for {s}"));
            assert_eq!(u.entities.len(), view_max, "tick {t}");
            // Every entity new to it is named in this update, and only those.
            let mut new: Vec<u64> = u
                .entities
                .iter()
                .map(|e| e.id)
                .filter(|id| !before[i].contains(id))
                .collect();
            new.sort();
            let mut entered: Vec<u64> = u.entered.iter().map(|e| e.id).collect();
            entered.sort();
            assert_eq!(entered, new, "tick {t}, player {s}");
            assert!(u.entered.iter().all(|e| e.name.len() == 32));
        }
        let largest = output
            .batches
            .iter()
            .flat_map(|(_, frames)| frames.iter())
            .map(|f| f.len())
            .max()
            .unwrap();
        assert!(largest < 8192, "{largest} bytes");
    }
    assert_eq!(sim.world().game.players.len(), 5000);
}

/// An update too large to be sent leaves what the player is known to see as it was: the next
/// one names every entity it has not been told of.
#[test]
fn a_player_whose_update_could_not_be_sent_is_told_the_names_it_missed() {
    let mut sim = Sim::new(Arena::new(ArenaConfig {
        view_max: 5000,
        ..ArenaConfig::default()
    }));
    let sessions = crowd(&mut sim, 1400);
    for &s in &sessions {
        sim.world_mut().game.place(s, 500.0, 500.0);
    }
    // 1,399 entities, each named: more than a frame's 65,535 bytes.
    let told = sim.world().game.players[&sessions[0]].visible.clone();
    let output = sim.tick(vec![]);
    assert!(update(&output, sessions[0]).is_none(), "too large to send");
    assert_eq!(
        sim.world().game.players[&sessions[0]].visible,
        told,
        "what it is known to see is what it was last told"
    );
    sim.world_mut().game.config.view_max = 100;
    let output = sim.tick(vec![]);
    let u = update(&output, sessions[0]).unwrap();
    assert_eq!(u.entities.len(), 100);
    // Every entity it was never told of is named, however many updates it missed.
    let mut untold: Vec<u64> = u
        .entities
        .iter()
        .map(|e| e.id)
        .filter(|id| !told.contains(id))
        .collect();
    untold.sort();
    let mut entered: Vec<u64> = u.entered.iter().map(|e| e.id).collect();
    entered.sort();
    assert_eq!(entered, untold);
    assert!(entered.len() > 50, "{} named", entered.len());
}

#[test]
fn a_move_of_any_finite_size_moves_at_full_speed() {
    for (dx, dy) in [(1e30, 0.0), (f32::MAX, f32::MAX), (-3e38, 1.0)] {
        let mut sim = Sim::new(Arena::new(small()));
        let ann = sim.guest("ann");
        sim.world_mut().game.place(ann, 100.0, 100.0);
        sim.tick(vec![frame(ann, &walk(dx, dy, 1))]);
        let before = update(&sim.tick(vec![]), ann).unwrap();
        for _ in 0..9 {
            sim.tick(vec![]);
        }
        let after = update(&sim.tick(vec![]), ann).unwrap();
        let moved = (after.x - before.x).hypot(after.y - before.y);
        // 10 ticks of 50 ms at 10 units a second.
        assert!((moved - 5.0).abs() < 0.01, "({dx}, {dy}): moved {moved}");
    }
}

/// The same inputs at the same (simulated) times give the same bytes, a run apart: the arena
/// takes its time from the core, as a recording's replay needs ([`engine::record`]).
#[test]
fn the_same_inputs_give_the_same_updates_byte_for_byte_whenever_they_run() {
    let run = || {
        let mut sim = Sim::new(Arena::new(small()));
        let players = sim.guests(&["ann".to_string(), "bob".to_string(), "cid".to_string()]);
        let mut bytes = Vec::new();
        for step in 0..20u64 {
            let moves: Vec<Input> = players
                .iter()
                .enumerate()
                .map(|(i, &p)| frame(p, &walk(i as f32 - 1.0, 1.0, step)))
                .collect();
            let output = sim.tick(moves);
            for (session, frames) in &output.batches {
                bytes.extend_from_slice(&session.0.to_le_bytes());
                for frame in frames {
                    bytes.extend_from_slice(frame);
                }
            }
        }
        bytes
    };
    let first = run();
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert!(first == run(), "the second run sent other bytes");
}
