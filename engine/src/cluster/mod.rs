//! Several servers (nodes) as one world, over NATS: the sans-IO part, owned by the tick loop.
//!
//! Each tick, a node sends at most one batch to all nodes (on `world.all`: who logged in and
//! out, joins and leaves, heartbeats) and at most one batch to each node that needs something
//! of it (on `world.node.<name>`: chat lines for the rooms it has members in, whispers to its
//! users, its state for a node that just appeared). A batch carries a sequence number per
//! stream, so that a receiver drops a repeat and says in its log when batches went missing
//! (say the publisher's queue was full). Lines are shipped as the encoded client frame, so a
//! line is encoded once in the whole cluster, and it crosses once per node that has members
//! of its room, not once per member.
//!
//! A node that has not been heard for [`NODE_TIMEOUT`] is gone: its users and room members
//! leave the world of the others (games see [`Game::node_lost`]). A node seen that is not
//! known (new, or back after an outage) is asked for its state, and sends it.
//!
//! Failed logins, bad tokens and registrations counted by one node are counted by every
//! node, so the limits of `[auth]` hold across the cluster.
//!
//! Who holds a username is the newest login across the cluster: a login broadcasts the name
//! with its time; the node holding an older login of it replaces that session
//! (S2C_Error REPLACED), as a second login on one node does. Until the broadcast arrives (one
//! NATS round trip, a tick or two) two nodes can both have the name.
//!
//! The network side is [`crate::server`]: it connects to NATS, subscribes, decodes batches
//! into [`crate::core::Input::Cluster`], and publishes what [`Cluster::take_batches`] returns.

pub mod nats;
pub mod wire;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use net::DisconnectReason;

use crate::dispatcher::{DispatchState, HandlerError};
use crate::world::{Game, World};
pub use wire::{Batch, Event, Kind};

/// How often a node says it is alive, when it has nothing else to say.
pub const HEARTBEAT: Duration = Duration::from_millis(500);

/// A node silent this long is gone.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(3);

/// The subject every node listens on.
pub const ALL: &str = "world.all";

/// The subject of one node's own inbox.
pub fn inbox(node: &str) -> String {
    format!("world.node.{node}")
}

/// Another node, as this one knows it.
#[derive(Debug)]
struct Peer {
    incarnation: u64,
    last_seen: Instant,
    /// The last sequence number seen on its broadcast stream, and on its stream to us.
    seq_all: u64,
    seq_direct: u64,
}

/// Who logged in as a name most recently, cluster-wide.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Claim {
    at_us: u64,
    node: String,
}

/// This node's part of the cluster.
#[derive(Debug)]
pub struct Cluster {
    node: String,
    incarnation: u64,
    peers: HashMap<String, Peer>,
    /// Usernames (folded to lowercase) logged in anywhere, and where.
    claims: HashMap<String, Claim>,
    broadcast: Vec<Event>,
    direct: HashMap<String, Vec<Event>>,
    seq_all: u64,
    seq_direct: HashMap<String, u64>,
    last_sent: Option<Instant>,
    /// Batches received out of order or missing, for the log and the metrics.
    pub gaps: u64,
    /// Whether another node with this one's name was seen (and said so).
    warned_twin: bool,
}

impl Cluster {
    /// This node, `node`, knowing no other yet. Its first batch says hello.
    pub fn new(node: String) -> Cluster {
        Cluster {
            node,
            incarnation: rand::random(),
            peers: HashMap::new(),
            claims: HashMap::new(),
            broadcast: vec![Event::new(Kind::Hello(wire::Hello {}))],
            direct: HashMap::new(),
            seq_all: 0,
            seq_direct: HashMap::new(),
            last_sent: None,
            gaps: 0,
            warned_twin: false,
        }
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The nodes heard from and not gone, sorted.
    pub fn peers(&self) -> Vec<&str> {
        let mut peers: Vec<&str> = self.peers.keys().map(String::as_str).collect();
        peers.sort_unstable();
        peers
    }

    /// Sends `event` to every other node.
    pub fn broadcast(&mut self, event: Event) {
        self.broadcast.push(event);
    }

    /// Sends `event` to node `to`.
    pub fn send(&mut self, to: &str, event: Event) {
        self.direct.entry(to.to_string()).or_default().push(event);
    }

    /// The node other than this one where `username` is logged in, if any.
    pub fn node_of(&self, username: &str) -> Option<&str> {
        self.claims
            .get(&username.to_ascii_lowercase())
            .filter(|c| c.node != self.node)
            .map(|c| c.node.as_str())
    }

    /// This tick's batches: (subject, batch), the broadcast first, each at most about
    /// [`MAX_BATCH_BYTES`] (a node's whole state for a new node can take several). A
    /// heartbeat goes when nothing else has for [`HEARTBEAT`].
    pub fn take_batches(&mut self, now: Instant) -> Vec<(String, Batch)> {
        let quiet = self
            .last_sent
            .is_none_or(|at| now.duration_since(at) >= HEARTBEAT);
        if self.broadcast.is_empty() && quiet {
            self.broadcast
                .push(Event::new(Kind::Heartbeat(wire::Heartbeat {})));
        }
        let mut batches = Vec::new();
        if !self.broadcast.is_empty() {
            for events in chunks(std::mem::take(&mut self.broadcast)) {
                self.seq_all += 1;
                batches.push((
                    ALL.to_string(),
                    Batch {
                        from: self.node.clone(),
                        seq: self.seq_all,
                        direct: false,
                        events,
                        incarnation: self.incarnation,
                    },
                ));
            }
            self.last_sent = Some(now);
        }
        for (to, events) in self.direct.drain() {
            for events in chunks(events) {
                let seq = self.seq_direct.entry(to.clone()).or_default();
                *seq += 1;
                batches.push((
                    inbox(&to),
                    Batch {
                        from: self.node.clone(),
                        seq: *seq,
                        direct: true,
                        events,
                        incarnation: self.incarnation,
                    },
                ));
            }
        }
        batches
    }
}

/// A user of this node logged in as `username` at `at_us`: the other nodes hear of it, and
/// the one holding an older login of the name replaces it.
pub fn logged_in<G: Game>(world: &mut World<G>, username: &str, at_us: u64) {
    let Some(cluster) = world.cluster.as_mut() else {
        return;
    };
    let claim = Claim {
        at_us,
        node: cluster.node.clone(),
    };
    cluster.claims.insert(username.to_ascii_lowercase(), claim);
    cluster.broadcast(Event::new(Kind::UserIn(wire::User {
        username: username.to_string(),
        at_us,
    })));
}

/// A user of this node logged out.
pub fn logged_out<G: Game>(world: &mut World<G>, username: &str) {
    let Some(cluster) = world.cluster.as_mut() else {
        return;
    };
    let key = username.to_ascii_lowercase();
    if cluster
        .claims
        .get(&key)
        .is_some_and(|c| c.node == cluster.node)
    {
        cluster.claims.remove(&key);
    }
    cluster.broadcast(Event::new(Kind::UserOut(wire::User {
        username: username.to_string(),
        at_us: 0,
    })));
}

/// A batch is cut at about this many bytes of events, well under NATS's default limit of
/// 1 MiB a message.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// `events` in runs of at most about [`MAX_BATCH_BYTES`], in order (none for none).
fn chunks(events: Vec<Event>) -> Vec<Vec<Event>> {
    let mut out: Vec<Vec<Event>> = Vec::new();
    let mut size = MAX_BATCH_BYTES;
    for event in events {
        let len = prost::Message::encoded_len(&event);
        if size + len > MAX_BATCH_BYTES {
            out.push(Vec::new());
            size = 0;
        }
        size += len;
        out.last_mut().expect("a run was started").push(event);
    }
    out
}

/// This node counted `counted` against its login limits: the other nodes count it too.
pub fn counted<G: Game>(world: &mut World<G>, counted: &crate::throttle::Counted) {
    use crate::throttle::Counted as C;
    let Some(cluster) = world.cluster.as_mut() else {
        return;
    };
    let (what, addr, user) = match counted {
        C::LoginFailed { addr, user } => (1, addr, user.as_str()),
        C::LoginSucceeded { addr, user } => (2, addr, user.as_str()),
        C::ResumeFailed { addr } => (3, addr, ""),
        C::Registered { addr, user } => (4, addr, user.as_str()),
    };
    cluster.broadcast(Event::new(Kind::Counted(wire::Counted {
        what,
        addr: addr.to_string(),
        user: user.to_string(),
    })));
}

/// What another node counted, as this node's [`crate::throttle::Counted`].
fn counted_elsewhere(counted: wire::Counted) -> Option<crate::throttle::Counted> {
    use crate::throttle::Counted as C;
    let addr = counted.addr.parse().ok()?;
    let user = counted.user;
    Some(match counted.what {
        1 => C::LoginFailed { addr, user },
        2 => C::LoginSucceeded { addr, user },
        3 => C::ResumeFailed { addr },
        4 => C::Registered { addr, user },
        _ => return None,
    })
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
    let peer = cluster.peers.entry(from.clone()).or_insert(Peer {
        incarnation: batch.incarnation,
        last_seen: now,
        seq_all: 0,
        seq_direct: 0,
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
        Kind::UserIn(user) => claim(world, from, user),
        Kind::UserOut(user) => {
            let Some(cluster) = world.cluster.as_mut() else {
                return;
            };
            let key = user.username.to_ascii_lowercase();
            if cluster.claims.get(&key).is_some_and(|c| c.node == from) {
                cluster.claims.remove(&key);
            }
        }
        Kind::Counted(counted) => {
            if let Some(counted) = counted_elsewhere(counted) {
                world.throttle.count_elsewhere(counted, now);
            }
        }
        Kind::Whisper(whisper) => {
            if let Some(session) = world.session_of(&whisper.to) {
                world.out.push(session, whisper.frame);
            }
        }
        other => G::cluster_event(world, from, other, now),
    }
}

/// `from` logged `user` in: the newest login holds the name.
fn claim<G: Game>(world: &mut World<G>, from: &str, user: wire::User) {
    let Some(cluster) = world.cluster.as_mut() else {
        return;
    };
    let key = user.username.to_ascii_lowercase();
    let theirs = Claim {
        at_us: user.at_us,
        node: from.to_string(),
    };
    let newer = cluster
        .claims
        .get(&key)
        .is_none_or(|c| (theirs.at_us, &theirs.node) > (c.at_us, &c.node));
    if !newer {
        return; // ours is newer: they replace theirs when they hear of it
    }
    cluster.claims.insert(key, theirs);
    if let Some(session) = world.session_of(&user.username) {
        world.send_error(
            session,
            0,
            HandlerError::new(
                protocol::ErrorCode::Replaced,
                format!("{} logged in on node {from}", user.username),
            ),
        );
        world.kick(session, DisconnectReason::Replaced);
    }
}

/// Sends node `to` this node's state: its users, then the game's (see
/// [`Game::cluster_state`]).
fn send_state<G: Game>(world: &mut World<G>, to: &str) {
    let users: Vec<wire::User> = world
        .clients
        .values()
        .filter_map(|c| c.login.as_ref().map(|l| (l, c.logged_in_at_us)))
        .map(|(login, at_us)| wire::User {
            username: login.username.clone(),
            at_us,
        })
        .collect();
    let Some(cluster) = world.cluster.as_mut() else {
        return;
    };
    for user in users {
        cluster.send(to, Event::new(Kind::UserIn(user)));
    }
    G::cluster_state(world, to);
}

/// Every tick: nodes silent for [`NODE_TIMEOUT`] are gone.
pub fn advance<G: Game>(world: &mut World<G>, now: Instant) {
    let Some(cluster) = world.cluster.as_mut() else {
        return;
    };
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
    cluster.peers.remove(node);
    cluster.claims.retain(|_, c| c.node != node);
    world.metrics.cluster_nodes.set(cluster.peers.len() as i64);
    G::node_lost(world, node);
}

#[cfg(test)]
mod tests;
