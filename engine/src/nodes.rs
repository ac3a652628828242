//! The world's side of the cluster ([`crate::cluster`]): what the other nodes and the buckets
//! tell this node, and the nodes it stops hearing. [`input`] takes what NATS brought (a
//! batch of another node; a name claimed, held or freed; a room's reservation) and
//! [`advance`] notices, every tick, the nodes gone silent; the core calls both.

use std::time::Instant;

use net::DisconnectReason;

use crate::cluster::link;
use crate::cluster::wire;
use crate::cluster::{counted_elsewhere, Batch, Event, Holder, Kind, Peer, NODE_TIMEOUT};
use crate::dispatcher::{DispatchState, HandlerError};
use crate::world::{Game, World};

/// What NATS brought.
pub fn input<G: Game>(world: &mut World<G>, from_nats: link::FromNats, now: Instant) {
    match from_nats {
        link::FromNats::Batch(batch) => receive(world, batch, now),
        link::FromNats::Claimed {
            session,
            username,
            granted,
            revision,
        } => {
            if let (true, Some(cluster)) = (granted, world.cluster.as_mut()) {
                let ours = Holder {
                    revision,
                    node: cluster.node.clone(),
                    incarnation: cluster.incarnation,
                };
                if cluster
                    .holders
                    .get(&username)
                    .is_none_or(|h| h.revision < revision)
                {
                    cluster.holders.insert(username.clone(), ours);
                }
            } else if !granted {
                spdlog::warn!(
                    "cluster: session {session} logs in as {username} without the names bucket (NATS unavailable)"
                );
            }
            let completed = crate::logins::claimed(world, session, now);
            if granted && !completed && world.session_of(&username) != Some(session) {
                // The session went away meanwhile: the name it was given goes back. (A
                // session logged in already was claiming it again: it keeps it.)
                if let Some(cluster) = world.cluster.as_mut() {
                    cluster.release(session, &username);
                }
            }
        }
        link::FromNats::Held {
            username,
            holder,
            revision,
        } => held(world, username, &holder, revision),
        link::FromNats::Outranked {
            session,
            username,
            holder,
        } => {
            let node = holder.split(' ').next().unwrap_or("").to_string();
            if world.session_of(&username) == Some(session) {
                spdlog::info!(
                    "cluster: {username} logged in on node {node} later, while the nodes were apart: session {session} gives the name up"
                );
                replace(world, session, &username, &node);
            }
        }
        link::FromNats::Disconnected => {
            if let Some(cluster) = world.cluster.as_mut() {
                cluster.link_up = false;
            }
        }
        link::FromNats::Connected => {
            spdlog::info!("cluster: NATS is back: this node's names and room counts are put right");
            if let Some(cluster) = world.cluster.as_mut() {
                cluster.link_up = true;
                // Silent because this node could not hear them: they count from now.
                for peer in cluster.peers.values_mut() {
                    peer.last_seen = now;
                }
                cluster.reclaim_all();
            }
            crate::world::run_hooks!(world, reconnected);
        }
        link::FromNats::Reserved {
            session,
            room,
            outcome,
        } => {
            for i in 0..world.hooks.reserved.len() {
                let hook = world.hooks.reserved[i];
                hook(world, session, room.clone(), outcome);
            }
        }
        link::FromNats::Freed { username, revision } => {
            if let Some(cluster) = world.cluster.as_mut() {
                if cluster
                    .holders
                    .get(&username)
                    .is_some_and(|h| h.revision < revision)
                {
                    cluster.holders.remove(&username);
                }
            }
        }
    }
}

/// The bucket says `holder` (`node incarnation session`) holds `username` since `revision`:
/// a session of this node holding it (by an older revision) is replaced.
fn held<G: Game>(world: &mut World<G>, username: String, holder: &str, revision: u64) {
    let Some(cluster) = world.cluster.as_mut() else {
        return;
    };
    let mut parts = holder.split(' ');
    let (Some(node), Some(incarnation)) = (parts.next(), parts.next()) else {
        return;
    };
    let incarnation = incarnation.parse().unwrap_or(0);
    if cluster
        .holders
        .get(&username)
        .is_some_and(|h| h.revision >= revision)
    {
        return; // older than what is known
    }
    let ours = node == cluster.node && incarnation == cluster.incarnation;
    // A login of this node the bucket has not confirmed (made while NATS was away) that
    // outranks the holder keeps the name, and claims it again: the other node gives way.
    let unconfirmed = !cluster.confirmed(&username);
    let keeps = !ours
        && unconfirmed
        && cluster
            .own_holder(&username)
            .is_some_and(|mine| link::outranks(&mine, holder));
    cluster.holders.insert(
        username.clone(),
        Holder {
            revision,
            node: node.to_string(),
            incarnation,
        },
    );
    if ours {
        return; // this node's own claim: its sessions sort it out themselves
    }
    if keeps {
        cluster.reclaim(&username);
        return;
    }
    if let Some(session) = world.session_of(&username) {
        replace(world, session, &username, node);
    }
}

/// `session` loses `username` to a login on node `node`: told REPLACED, and closed.
fn replace<G: Game>(world: &mut World<G>, session: net::SessionId, username: &str, node: &str) {
    world.send_error(
        session,
        0,
        HandlerError::new(
            protocol::ErrorCode::Replaced,
            format!("{username} logged in on node {node}"),
        ),
    );
    world.kick(session, DisconnectReason::Replaced);
}

/// A batch from another node.
pub fn receive<G: Game>(world: &mut World<G>, batch: Batch, now: Instant) {
    let Some(cluster) = world.cluster.as_mut() else {
        return;
    };
    if batch.from == cluster.node {
        if batch.incarnation != cluster.incarnation && !cluster.warned_twin {
            cluster.warned_twin = true;
            spdlog::error!(
                "cluster: another node is also named {}: give each node its own cluster.node",
                cluster.node
            );
        }
        return; // our own broadcast
    }
    let from = batch.from.clone();
    let restarted = cluster
        .peers
        .get(&from)
        .is_some_and(|p| p.incarnation != batch.incarnation);
    if restarted {
        // What the node had before it restarted is gone with it.
        spdlog::info!("cluster: node {from} restarted");
        forget_node(world, &from);
    }
    let Some(cluster) = world.cluster.as_mut() else {
        return;
    };
    let known = cluster.peers.contains_key(&from);
    // Back from being counted gone, in the same run: it goes on from where it was.
    let before = cluster
        .gone
        .remove(&from)
        .filter(|p| p.incarnation == batch.incarnation);
    let peer = cluster.peers.entry(from.clone()).or_insert(Peer {
        incarnation: batch.incarnation,
        last_seen: now,
        seq_all: before.as_ref().map_or(0, |p| p.seq_all),
        seq_direct: before.as_ref().map_or(0, |p| p.seq_direct),
    });
    peer.last_seen = now;
    let last = if batch.direct {
        &mut peer.seq_direct
    } else {
        &mut peer.seq_all
    };
    if batch.seq <= *last {
        return; // a repeat
    }
    if *last > 0 && batch.seq > *last + 1 {
        cluster.gaps += batch.seq - *last - 1;
        world.metrics.cluster_missing.inc_by(batch.seq - *last - 1);
        spdlog::warn!(
            "cluster: {} batches from node {from} missing (sequence {} after {})",
            batch.seq - *last - 1,
            batch.seq,
            *last
        );
    }
    let missed = *last > 0 && batch.seq > *last + 1;
    *last = batch.seq;
    if missed && known {
        // What it said in them (joins, leaves) is not known here: its state again.
        cluster.send(&from, Event::new(Kind::Hello(wire::Hello {})));
    }
    if !known {
        spdlog::info!("cluster: node {from} joined");
        world.metrics.cluster_nodes.set(cluster.peers.len() as i64);
        // We may have missed what it said before we heard it (a start, an outage): we ask
        // for its state. (Its own hello, if this is one, asks for ours; after an outage it
        // asks when it hears us.)
        cluster.send(&from, Event::new(Kind::Hello(wire::Hello {})));
    }
    if missed {
        // Lines for this node's members may have been among them (they travel on the stream
        // to this node, and a gap in the stream to all is what shows a node that stopped
        // sending here: one that counted this node gone while it was cut off): the modules
        // tell who may have missed them.
        crate::world::run_hooks!(world, missed_from, &from);
    }
    for event in batch.events {
        apply(world, &from, event, now);
    }
}

fn apply<G: Game>(world: &mut World<G>, from: &str, event: Event, now: Instant) {
    let Some(kind) = event.kind else {
        return;
    };
    match kind {
        Kind::Hello(_) => send_state(world, from),
        Kind::Heartbeat(_) => {}
        Kind::Counted(counted) => {
            if let Some(counted) = counted_elsewhere(counted) {
                world.throttle.count_elsewhere(counted, now);
            }
        }
        other => world.route_cluster_event(from, other, now),
    }
}

/// Sends node `to` this node's state: the modules' (see [`crate::world::Setup::on_cluster_state`]). (Who holds
/// which name, it has from the names bucket.)
fn send_state<G: Game>(world: &mut World<G>, to: &str) {
    crate::world::run_hooks!(world, cluster_state, to);
}

/// Every tick: nodes silent for [`NODE_TIMEOUT`] are gone.
pub fn advance<G: Game>(world: &mut World<G>, now: Instant) {
    let Some(cluster) = world.cluster.as_mut() else {
        return;
    };
    if !cluster.link_up {
        return; // their silence is this node's own outage
    }
    let gone: Vec<String> = cluster
        .peers
        .iter()
        .filter(|(_, p)| now.duration_since(p.last_seen) >= NODE_TIMEOUT)
        .map(|(name, _)| name.clone())
        .collect();
    for node in gone {
        spdlog::warn!(
            "cluster: node {node} silent for {} s: its players leave",
            NODE_TIMEOUT.as_secs()
        );
        forget_node(world, &node);
    }
}

/// Node `node` is gone (or restarted): its users and what the game had of it go.
fn forget_node<G: Game>(world: &mut World<G>, node: &str) {
    let Some(cluster) = world.cluster.as_mut() else {
        return;
    };
    if let Some(peer) = cluster.peers.remove(node) {
        // Its members stop counting in the rooms bucket (every node asks; it is done once).
        cluster.name_requests.push(link::NameRequest::DropNode {
            node: node.to_string(),
            incarnation: peer.incarnation,
        });
        cluster.gone.insert(node.to_string(), peer);
    }
    world.metrics.cluster_nodes.set(cluster.peers.len() as i64);
    crate::world::run_hooks!(world, node_lost, node);
}
