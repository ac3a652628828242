//! The arena: a second game on the engine, built as any outside game would be, with nothing
//! but the engine's public API.
//!
//! Players log in (the engine's logins: guests, accounts, tokens) and get an entity at a spot
//! of the world. They send where they want to go ([`arena::C2sMove`]); every tick the server
//! moves every entity, at most [`ArenaConfig::speed`] units a second (the server decides where
//! things are, not the clients), and sends each player one [`arena::S2cUpdate`]: its own
//! position, every entity within [`ArenaConfig::view_radius`], and which entities came into
//! or went out of view since the last one. Who is near whom comes from a [`grid::Grid`] of
//! cells as wide as the view radius, so a tick costs time linear in the number of entities.
//!
//! A view holds the [`ArenaConfig::view_max`] nearest entities at most, nearest first: what
//! is farther is out of view until it comes nearer. So an update fits in a frame and a tick's
//! cost stays linear however many players crowd one spot (the grid finds the nearest of a
//! crowd without looking at all of it). An update that cannot be sent changes nothing of what
//! the player is known to see, so the next one says again what came into view.
//!
//! # Layout
//!
//! - `proto/arena.proto`: the game's messages, compiled by `protocol-build` from `build.rs`
//!   (ids checked against the engine's): [`arena`] holds the types, the crate root their ids
//!   ([`MESSAGE_IDS`]) and the enums that decode them by id ([`S2cMessage`], [`C2sMessage`]).
//! - [`Arena`]: the game's state and its [`Game`] hooks; [`grid`]: the spatial grid.
//! - [`sim`]: the arena run by the engine's core in memory, for tests and benchmarks.
//! - `src/main.rs`: the binary, one call to `engine::cli::main`.

#![warn(missing_docs)]

pub mod grid;
pub mod sim;

/// The arena's messages, generated from `proto/arena.proto`.
#[allow(missing_docs)]
pub mod arena {
    include!(concat!(env!("OUT_DIR"), "/arena.rs"));
}

include!(concat!(env!("OUT_DIR"), "/message_types.rs"));

use std::time::{Duration, Instant};

use engine::hash::Map;
use engine::metrics::prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use engine::metrics::Registry;
use engine::net::SessionId;
use engine::world::{Login, Setup};
use engine::{Ctx, DispatchError, Game, HandlerError, World};

use arena::{C2sMove, Entered, Entity, S2cSpawned, S2cUpdate};
use grid::Grid;

/// The longest step of the simulation in one tick.
const MAX_STEP: Duration = Duration::from_millis(250);

/// The arena's rules: its `[game]` section (`world_size`, `view_radius`, `speed`), each key
/// at its default when left out.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArenaConfig {
    /// The world is `[0, world_size)` in x and in y.
    pub world_size: f32,
    /// Entities this close to a player are in its view.
    pub view_radius: f32,
    /// Units a second an entity moves at full intent.
    pub speed: f32,
    /// Entities in one update at most, the nearest: a crowd's update stays within a frame
    /// and its tick within budget.
    pub view_max: usize,
}

impl Default for ArenaConfig {
    /// A world of 1000 × 1000 units, a view of 40 units, 10 units a second: 5,000 players see
    /// about 25 others each. Views of 64 entities at most: an update of about 1 KB, 4 KB with
    /// every one of them new (names of 32 characters), and more than a screen shows.
    fn default() -> Self {
        ArenaConfig {
            world_size: 1000.0,
            view_radius: 40.0,
            speed: 10.0,
            view_max: 64,
        }
    }
}

/// One player's entity.
#[derive(Clone, Debug, PartialEq)]
pub struct Player {
    /// The entity's id: its session's.
    pub id: u64,
    /// Where it is.
    pub x: f32,
    /// Where it is.
    pub y: f32,
    /// Where it goes: a direction of length 1 at most.
    pub dx: f32,
    /// Where it goes.
    pub dy: f32,
    /// `sent_at_us` of the last move applied.
    pub move_sent_at_us: u64,
    /// The entities in its view at the last update, by id, sorted.
    pub visible: Vec<u64>,
}

/// The arena's own metrics: a game's metrics sit in the same registry as the engine's.
#[derive(Clone, Debug, Default)]
pub struct ArenaMetrics {
    /// Entities in the world.
    pub entities: Gauge,
    /// Entities sent in updates, all updates together: what area of interest costs.
    pub entities_sent: Counter,
}

/// The arena's state.
#[derive(Debug)]
pub struct Arena {
    /// The rules.
    pub config: ArenaConfig,
    /// Every player's entity, by session.
    pub players: Map<SessionId, Player>,
    /// Every entity's player name, by entity id.
    pub names: Map<u64, String>,
    /// Ticks run.
    pub tick: u64,
    grid: Grid,
    /// The arena's metrics, on `/metrics` next to the engine's.
    pub metrics: ArenaMetrics,
    // Buffers kept from tick to tick, so that an update costs no allocation of its own.
    in_view: Vec<Entity>,
    ids: Vec<u64>,
    nearest: Vec<(f32, u64, f32, f32)>,
}

impl Arena {
    /// An arena with nobody in it.
    pub fn new(config: ArenaConfig) -> Arena {
        Arena {
            grid: Grid::new(config.world_size, config.view_radius),
            config,
            players: Map::default(),
            names: Map::default(),
            tick: 0,
            metrics: ArenaMetrics::default(),
            in_view: Vec::new(),
            ids: Vec::new(),
            nearest: Vec::new(),
        }
    }

    /// Where a new entity appears: a spot of the world that depends only on its id.
    pub fn spawn_point(&self, id: u64) -> (f32, f32) {
        let mut z = id.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let unit = |bits: u64| (bits & 0xff_ffff) as f32 / (1u64 << 24) as f32;
        let size = self.config.world_size;
        (unit(z) * size, unit(z >> 32) * size)
    }

    /// Puts `session`'s entity at (`x`, `y`), for tests and tools.
    pub fn place(&mut self, session: SessionId, x: f32, y: f32) {
        let max = self.max_coord();
        if let Some(player) = self.players.get_mut(&session) {
            player.x = x.clamp(0.0, max);
            player.y = y.clamp(0.0, max);
        }
    }

    fn max_coord(&self) -> f32 {
        // The largest float below world_size: positions stay inside [0, world_size).
        f32::from_bits(self.config.world_size.to_bits() - 1).max(0.0)
    }

    /// Moves every entity one step of `dt` seconds and puts them in the grid.
    fn step(&mut self, dt: f32) {
        let step = self.config.speed * dt;
        let max = self.max_coord();
        self.grid.clear();
        for player in self.players.values_mut() {
            player.x = (player.x + player.dx * step).clamp(0.0, max);
            player.y = (player.y + player.dy * step).clamp(0.0, max);
            self.grid.insert(player.id, player.x, player.y);
        }
        self.grid.index();
    }
}

impl config::GameConfig for ArenaConfig {
    fn check(&self, rules: &config::Rules) -> Result<(), config::ConfigError> {
        rules.range("game.world_size", self.world_size, 10.0..=1_000_000.0)?;
        rules.range("game.view_radius", self.view_radius, 1.0..=self.world_size)?;
        rules.range("game.speed", self.speed, 0.01..=1_000_000.0)?;
        rules.range("game.view_max", self.view_max, 1..=1000)
    }
}

/// C2S_Move: the player's new intent, applied from the next tick.
fn on_move(world: &mut World<Arena>, ctx: &Ctx, m: C2sMove) -> Result<(), HandlerError> {
    if !(m.dx.is_finite() && m.dy.is_finite()) {
        return Err(HandlerError::bad_request(format!(
            "move direction must be finite (got {}, {})",
            m.dx, m.dy
        )));
    }
    let Some(player) = world.game.players.get_mut(&ctx.session) else {
        return Ok(()); // logged in a moment ago, not spawned yet: nothing to move
    };
    // Brought within [-1, 1] first: the square of a finite move of 1e20 or more overflows to
    // infinity, and would stop the entity instead of moving it at full speed.
    let big = m.dx.abs().max(m.dy.abs());
    let (dx, dy) = if big > 1.0 {
        (m.dx / big, m.dy / big)
    } else {
        (m.dx, m.dy)
    };
    let length = dx.hypot(dy);
    let scale = if length > 1.0 { 1.0 / length } else { 1.0 };
    player.dx = dx * scale;
    player.dy = dy * scale;
    player.move_sent_at_us = m.sent_at_us;
    Ok(())
}

impl Game for Arena {
    const NAME: &'static str = "arena";
    // Its players are guests: nothing of theirs outlives the match, so no database file.
    const STORAGE: &'static str = "memory";

    fn register(setup: &mut Setup<Self>) -> Result<(), DispatchError> {
        setup.register::<C2sMove>(on_move)?;
        setup.metrics(Arena::register_metrics).stats(Arena::stats);
        Ok(())
    }

    fn logged_in(world: &mut World<Self>, session: SessionId) {
        let Some(name) = world.login(session).map(|l| l.username.clone()) else {
            return;
        };
        let id = session.0;
        let (x, y) = world.game.spawn_point(id);
        let arena = &mut world.game;
        arena.players.insert(
            session,
            Player {
                id,
                x,
                y,
                dx: 0.0,
                dy: 0.0,
                move_sent_at_us: 0,
                visible: Vec::new(),
            },
        );
        arena.names.insert(id, name);
        let spawned = S2cSpawned {
            entity: id,
            x,
            y,
            view_radius: arena.config.view_radius,
            speed: arena.config.speed,
            world_size: arena.config.world_size,
            tick_ms: world.config.tick_ms,
        };
        world.out.send(session, &spawned);
    }

    fn logged_out(world: &mut World<Self>, session: SessionId, _: &Login) {
        // The others see it go in their next update, as it is no longer in their view.
        if let Some(player) = world.game.players.remove(&session) {
            world.game.names.remove(&player.id);
        }
    }

    fn tick(world: &mut World<Self>, _: Instant, dt: Duration) {
        // The time since the last tick, so that speeds hold when a tick runs late; at most a
        // quarter of a second, so that a stalled server does not throw entities across the
        // world in one step.
        let dt = dt.min(MAX_STEP).as_secs_f32();
        // The tick's time, as the core gives it: never a clock of the game's own, so that a
        // run replays the same ([`engine::record`]).
        let now_us = world.now().unix_us;
        let World { game, out, .. } = world;
        game.tick += 1;
        game.step(dt);
        let Arena {
            config,
            players,
            names,
            tick,
            grid,
            metrics,
            in_view,
            ids,
            nearest,
        } = game;
        metrics.entities.set(players.len() as i64);
        let mut sent = 0;
        for (&session, player) in players.iter_mut() {
            let me = player.id;
            grid.nearest(
                player.x,
                player.y,
                config.view_radius,
                config.view_max,
                me,
                nearest,
            );
            in_view.clear();
            in_view.extend(nearest.iter().map(|&(_, id, x, y)| Entity { id, x, y }));
            in_view.sort_unstable_by_key(|e| e.id);
            ids.clear();
            ids.extend(in_view.iter().map(|e| e.id));
            sent += in_view.len() as u64;
            let (entered, left) = diff(&player.visible, ids);
            let update = S2cUpdate {
                tick: *tick,
                x: player.x,
                y: player.y,
                entities: std::mem::take(in_view),
                entered: entered
                    .into_iter()
                    .map(|id| Entered {
                        id,
                        name: names.get(&id).cloned().unwrap_or_default(),
                    })
                    .collect(),
                left,
                move_sent_at_us: player.move_sent_at_us,
                server_time_us: now_us,
            };
            let sent_it = out.send(session, &update);
            *in_view = update.entities;
            if sent_it {
                std::mem::swap(&mut player.visible, ids);
            }
        }
        metrics.entities_sent.inc_by(sent);
    }
}

impl Arena {
    /// Its metrics: entities, and entities sent in updates.
    fn register_metrics(world: &mut World<Self>, registry: &mut Registry) {
        let metrics = &world.game.metrics;
        registry.register(
            "arena_entities",
            "Entities in the arena",
            metrics.entities.clone(),
        );
        registry.register(
            "arena_entities_sent",
            "Entities sent in updates, all updates together",
            metrics.entities_sent.clone(),
        );
    }

    /// What it adds to the stats line: how many entities.
    fn stats(world: &World<Self>) -> String {
        format!(", {} entities", world.game.players.len())
    }
}

/// What is in `now` and not in `before` (entered), and the other way round (left); both
/// sorted.
fn diff(before: &[u64], now: &[u64]) -> (Vec<u64>, Vec<u64>) {
    let (mut entered, mut left) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < before.len() || j < now.len() {
        match (before.get(i), now.get(j)) {
            (Some(b), Some(n)) if b == n => {
                i += 1;
                j += 1;
            }
            (Some(b), Some(n)) if b < n => {
                left.push(*b);
                i += 1;
            }
            (Some(_), Some(n)) | (None, Some(n)) => {
                entered.push(*n);
                j += 1;
            }
            (Some(b), None) => {
                left.push(*b);
                i += 1;
            }
            (None, None) => break,
        }
    }
    (entered, left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_of_sorted_views_gives_what_came_and_what_went() {
        assert_eq!(diff(&[1, 3, 5], &[2, 3, 6]), (vec![2, 6], vec![1, 5]));
        assert_eq!(diff(&[], &[4]), (vec![4], vec![]));
        assert_eq!(diff(&[4], &[]), (vec![], vec![4]));
        assert_eq!(diff(&[1, 2], &[1, 2]), (vec![], vec![]));
    }

    #[test]
    fn spawn_points_lie_inside_the_world_and_differ() {
        let arena = Arena::new(ArenaConfig::default());
        let points: Vec<(f32, f32)> = (1..200).map(|id| arena.spawn_point(id)).collect();
        assert!(points
            .iter()
            .all(|&(x, y)| (0.0..1000.0).contains(&x) && (0.0..1000.0).contains(&y)));
        let mut xs: Vec<u32> = points.iter().map(|p| p.0.to_bits()).collect();
        xs.sort();
        xs.dedup();
        assert!(xs.len() > 190);
    }
}
