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
//! leave the world of the others (modules see it: [`crate::world::Setup::on_node_lost`]). A node seen that is not
//! known (new, or back after an outage) is asked for its state, and sends it.
//!
//! Failed logins, bad tokens and registrations counted by one node are counted by every
//! node, so the limits of `[auth]` hold across the cluster.
//!
//! Who holds a username is what the JetStream key-value bucket `world_names` says. A login is
//! answered only once the bucket has made its session the holder (compare-and-set on the
//! revision it read: of two logins at once on two nodes, one is strictly after the other).
//! Every node watches the bucket: a node whose session a newer revision names another holder
//! replaces it (S2C_Error REPLACED), as a second login on one node does. Revisions order the
//! changes, so a stale one never undoes a newer one. Without NATS, a login goes on without
//! the claim (the node serves its own players), and the next claim of the name wins.
//!
//! The network side is [`crate::server`]: it connects to NATS, subscribes, decodes batches
//! into [`crate::core::Input::Cluster`], and publishes what [`Cluster::take_batches`] returns.

pub mod link;
#[cfg(feature = "nats")]
pub mod nats;
pub mod wire;

use crate::hash::Map;
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

/// Who holds a name, as the bucket last said.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Holder {
    revision: u64,
    node: String,
    incarnation: u64,
}

/// This node's part of the cluster.
#[derive(Debug)]
pub struct Cluster {
    node: String,
    incarnation: u64,
    peers: Map<String, Peer>,
    /// Usernames (folded to lowercase) held anywhere, and by whom.
    holders: Map<String, Holder>,
    /// Claims and releases for the names bucket, taken by the driver each tick.
    name_requests: Vec<link::NameRequest>,
    broadcast: Vec<Event>,
    direct: Map<String, Vec<Event>>,
    seq_all: u64,
    seq_direct: Map<String, u64>,
    last_sent: Option<Instant>,
    /// Batches received out of order or missing, for the log and the metrics.
    pub gaps: u64,
    /// Whether another node with this one's name was seen (and said so).
    warned_twin: bool,
}

impl Cluster {
    /// This node, `node`, knowing no other yet. Its first batch says hello.
    pub fn new(node: String) -> Cluster {
        Cluster::with_incarnation(node, rand::random())
    }

    /// [`Cluster::new`], with the incarnation number the driver drew.
    pub fn with_incarnation(node: String, incarnation: u64) -> Cluster {
        let started = link::NameRequest::Started {
            node: node.clone(),
            incarnation,
        };
        Cluster {
            node,
            incarnation,
            peers: Map::default(),
            holders: Map::default(),
            name_requests: vec![started],
            broadcast: vec![Event::new(Kind::Hello(wire::Hello {}))],
            direct: Map::default(),
            seq_all: 0,
            seq_direct: Map::default(),
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

    /// This node's incarnation number.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The node other than this one where `username` is logged in, if any: the holder of
    /// the name, if that node (in that incarnation) is alive. (A node that died leaves its
    /// names in the bucket; they count for nothing until it is back, and the next login of
    /// such a name takes it over.)
    pub fn node_of(&self, username: &str) -> Option<&str> {
        let holder = self.holders.get(&username.to_ascii_lowercase())?;
        let alive = self
            .peers
            .get(&holder.node)
            .is_some_and(|p| p.incarnation == holder.incarnation);
        alive.then_some(holder.node.as_str())
    }

    /// A member of this node that the rooms bucket counted left `room`.
    pub fn unreserve(&mut self, room: &str) {
        self.name_requests.push(link::NameRequest::Unreserve {
            room: room.to_string(),
        });
    }

    /// This tick's claims and releases of names, for the bucket.
    pub fn take_name_requests(&mut self) -> Vec<link::NameRequest> {
        std::mem::take(&mut self.name_requests)
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

/// A login of `session` as `username` is ready: it waits for the bucket to make the session
/// the name's holder ([`input`] completes it).
pub fn claim<G: Game>(world: &mut World<G>, session: net::SessionId, username: &str) {
    if let Some(cluster) = world.cluster.as_mut() {
        cluster.name_requests.push(link::NameRequest::Claim {
            session,
            username: username.to_ascii_lowercase(),
        });
    }
}

/// `session` would join `room` of `capacity` members: the rooms bucket is asked to count it
/// (the module hears back through [`crate::world::Setup::on_reserved`]).
pub fn reserve<G: Game>(world: &mut World<G>, session: net::SessionId, room: &str, capacity: u32) {
    if let Some(cluster) = world.cluster.as_mut() {
        cluster.name_requests.push(link::NameRequest::Reserve {
            session,
            room: room.to_string(),
            capacity,
        });
    }
}

/// `session` of this node logged out of `username`: the bucket frees the name if the
/// session still holds it.
pub fn logged_out<G: Game>(world: &mut World<G>, session: net::SessionId, username: &str) {
    if let Some(cluster) = world.cluster.as_mut() {
        cluster.name_requests.push(link::NameRequest::Release {
            session,
            username: username.to_ascii_lowercase(),
        });
    }
}

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
            if !crate::logins::claimed(world, session, now) && granted {
                // The session went away meanwhile: the name it was given goes back.
                logged_out(world, session, &username);
            }
        }
        link::FromNats::Held {
            username,
            holder,
            revision,
        } => held(world, username, &holder, revision),
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
    if let Some(session) = world.session_of(&username) {
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
        other => world.route_cluster_event(from, other, now),
    }
}

/// Sends node `to` this node's state: the modules' (see [`crate::world::Setup::on_cluster_state`]). (Who holds
/// which name, it has from the names bucket.)
fn send_state<G: Game>(world: &mut World<G>, to: &str) {
    crate::world::run_hooks!(world, cluster_state, to);
}

/// Sends `payload` from `module` to node `to`, or to every other node when `to` is `None`,
/// with this tick's batch: each receiving node offers it to its modules' cluster hooks
/// ([`crate::world::Setup::on_cluster_event`]) as [`Kind::Module`]. Nothing is sent on a
/// server not in a cluster. Events from one node arrive in the order sent; an event sent
/// while NATS is away is lost (the next [`crate::world::Setup::on_cluster_state`] is where a
/// module brings a node up to date).
pub fn send_module<G: Game>(
    world: &mut World<G>,
    to: Option<&str>,
    module: &str,
    payload: bytes::Bytes,
) {
    let Some(cluster) = world.cluster.as_mut() else {
        return;
    };
    let event = Event::new(Kind::Module(wire::ModuleEvent {
        module: module.to_string(),
        payload,
    }));
    match to {
        Some(node) => cluster.send(node, event),
        None => cluster.broadcast(event),
    }
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
    if let Some(peer) = cluster.peers.remove(node) {
        // Its members stop counting in the rooms bucket (every node asks; it is done once).
        cluster.name_requests.push(link::NameRequest::DropNode {
            node: node.to_string(),
            incarnation: peer.incarnation,
        });
    }
    world.metrics.cluster_nodes.set(cluster.peers.len() as i64);
    crate::world::run_hooks!(world, node_lost, node);
}

#[cfg(test)]
mod tests;
