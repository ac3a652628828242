//! A world as a server makes it, in its core: what the server and a replay of its recording
//! ([`crate::record`]) build the same way.

use std::time::Instant;

use config::ServerConfig;

use crate::cluster::Cluster;
use crate::core::Core;
use crate::db::DbQueue;
use crate::dispatcher::MessageDispatcher;
use crate::error::ServerError;
use crate::metrics::{Metrics, Registry};
use crate::world::{Game, World, WorldConfig};

/// What a world is made of before it is made: its handlers and hooks, and its metrics.
pub(crate) struct Parts<G: Game> {
    dispatcher: MessageDispatcher<World<G>>,
    hooks: crate::world::Hooks<G>,
    pub(crate) registry: Registry,
    pub(crate) metrics: Metrics,
}

impl<G: Game> Parts<G> {
    /// The game's handlers and hooks, and its metrics in a registry of their own.
    pub(crate) fn new() -> Result<Parts<G>, ServerError> {
        let (dispatcher, hooks) = crate::handlers::setup::<G>()?;
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry, &dispatcher.registered());
        Ok(Parts {
            dispatcher,
            hooks,
            registry,
            metrics,
        })
    }

    /// The world of `game` made at `started` (a node of a cluster when `node` names it and
    /// its incarnation), in its core, as a server makes it and a replay makes it again.
    pub(crate) fn core(
        self,
        config: &ServerConfig,
        game: G,
        started: Instant,
        node: Option<(String, u64)>,
    ) -> (Core<G>, Registry) {
        let Parts {
            dispatcher,
            hooks,
            mut registry,
            metrics,
        } = self;
        let queue = DbQueue::new(config.storage.queue);
        let mut world = World::new(WorldConfig::from(config), game, hooks, queue, started);
        world.metrics = metrics;
        if let Some((node, incarnation)) = node {
            world.cluster = Some(Cluster::with_incarnation(node, incarnation));
        }
        world.register_metrics(&mut registry);
        crate::world::schedule_stats(&mut world, started);
        (Core::new(world, dispatcher), registry)
    }
}
