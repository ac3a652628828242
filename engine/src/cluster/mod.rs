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
pub(crate) struct Peer {
    pub(crate) incarnation: u64,
    pub(crate) last_seen: Instant,
    /// The last sequence number seen on its broadcast stream, and on its stream to us.
    pub(crate) seq_all: u64,
    pub(crate) seq_direct: u64,
}

/// Who holds a name, as the bucket last said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Holder {
    pub(crate) revision: u64,
    pub(crate) node: String,
    pub(crate) incarnation: u64,
}

/// This node's part of the cluster.
#[derive(Debug)]
pub struct Cluster {
    pub(crate) node: String,
    pub(crate) incarnation: u64,
    pub(crate) peers: Map<String, Peer>,
    /// Nodes counted gone (silent too long, NATS away), as they were: when one comes back in
    /// the same incarnation, its batches go on from the sequence numbers it had, so that what
    /// it sends again is known as a repeat.
    pub(crate) gone: Map<String, Peer>,
    /// Whether NATS is connected, as last told: while it is not, no node is counted gone.
    pub(crate) link_up: bool,
    /// Usernames (folded to lowercase) held anywhere, and by whom.
    pub(crate) holders: Map<String, Holder>,
    /// Claims and releases for the names bucket, taken by the driver each tick.
    pub(crate) name_requests: Vec<link::NameRequest>,
    /// The names this node's sessions logged in as (folded to lowercase): the session, and
    /// when it logged in.
    pub(crate) claims: Map<String, (net::SessionId, u64)>,
    broadcast: Vec<Event>,
    direct: Map<String, Vec<Event>>,
    seq_all: u64,
    seq_direct: Map<String, u64>,
    last_sent: Option<Instant>,
    /// Batches received out of order or missing, for the log and the metrics.
    pub gaps: u64,
    /// Whether another node with this one's name was seen (and said so).
    pub(crate) warned_twin: bool,
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
            gone: Map::default(),
            link_up: true,
            holders: Map::default(),
            name_requests: vec![started],
            claims: Map::default(),
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

    /// A login of `session` as `username` at `at_us` (wall clock) is ready: it waits for the
    /// bucket to make the session the name's holder (the answer completes it,
    /// [`crate::nodes::input`]).
    pub fn claim(&mut self, session: net::SessionId, username: &str, at_us: u64) {
        let username = username.to_ascii_lowercase();
        self.claims.insert(username.clone(), (session, at_us));
        self.name_requests.push(link::NameRequest::Claim {
            session,
            username,
            at_us,
        });
    }

    /// `session` of this node logged out of `username`: the bucket frees the name if the
    /// session still holds it.
    pub fn release(&mut self, session: net::SessionId, username: &str) {
        let username = username.to_ascii_lowercase();
        let Some(&(claimant, at_us)) = self.claims.get(&username) else {
            return;
        };
        if claimant != session {
            return; // a newer login of this node has the name
        }
        self.claims.remove(&username);
        self.name_requests.push(link::NameRequest::Release {
            session,
            username,
            at_us,
        });
    }

    /// The holder value of this node's login of `username`, if it has one.
    pub(crate) fn own_holder(&self, username: &str) -> Option<String> {
        let &(session, at_us) = self.claims.get(username)?;
        Some(link::holder(&self.node, self.incarnation, session, at_us))
    }

    /// Whether the bucket, as last heard, says this node holds `username`.
    pub(crate) fn confirmed(&self, username: &str) -> bool {
        self.holders
            .get(username)
            .is_some_and(|h| h.node == self.node && h.incarnation == self.incarnation)
    }

    /// `session` of this node holds `username` by a claim the bucket has not confirmed: it
    /// claims it again, by the rule of logins made apart ([`link::outranks`]).
    pub(crate) fn reclaim(&mut self, username: &str) {
        if let Some(&(session, at_us)) = self.claims.get(username) {
            self.name_requests.push(link::NameRequest::Reclaim {
                session,
                username: username.to_string(),
                at_us,
            });
        }
    }

    /// NATS is back: every name of this node that the bucket does not say it holds is
    /// claimed again.
    pub(crate) fn reclaim_all(&mut self) {
        let mut names: Vec<String> = self
            .claims
            .keys()
            .filter(|name| !self.confirmed(name))
            .cloned()
            .collect();
        names.sort_unstable();
        for name in names {
            self.reclaim(&name);
        }
    }

    /// This node has `members` in `room`: the rooms bucket counts that many of it, whatever
    /// it counted before (NATS was away while the node decided alone).
    pub fn recount(&mut self, room: &str, members: u32) {
        self.name_requests.push(link::NameRequest::Recount {
            room: room.to_string(),
            members,
        });
    }

    /// `session` would join `room` of `capacity` members: the rooms bucket is asked to count
    /// it (the module hears back through [`crate::world::Setup::on_reserved`]).
    pub fn reserve(&mut self, session: net::SessionId, room: &str, capacity: u32) {
        self.name_requests.push(link::NameRequest::Reserve {
            session,
            room: room.to_string(),
            capacity,
        });
    }

    /// Sends `payload` from `module` to node `to`, or to every other node when `to` is
    /// `None`, with this tick's batches: each receiving node offers it to its modules'
    /// cluster hooks ([`crate::world::Setup::on_cluster_event`]) as [`Kind::Module`]. Events
    /// from one node arrive in the order sent; one sent while NATS is away is lost (the next
    /// [`crate::world::Setup::on_cluster_state`] is where a module brings a node up to date).
    pub fn send_module(&mut self, to: Option<&str>, module: &str, payload: bytes::Bytes) {
        let event = Event::new(Kind::Module(wire::ModuleEvent {
            module: module.to_string(),
            payload,
        }));
        match to {
            Some(node) => self.send(node, event),
            None => self.broadcast(event),
        }
    }

    /// This node counted `counted` against its login limits: the other nodes count it too.
    pub fn count(&mut self, counted: &crate::throttle::Counted) {
        use crate::throttle::Counted as C;
        let (what, addr, user) = match counted {
            C::LoginFailed { addr, user } => (1, addr, user.as_str()),
            C::LoginSucceeded { addr, user } => (2, addr, user.as_str()),
            C::ResumeFailed { addr } => (3, addr, ""),
            C::Registered { addr, user } => (4, addr, user.as_str()),
        };
        self.broadcast(Event::new(Kind::Counted(wire::Counted {
            what,
            addr: addr.to_string(),
            user: user.to_string(),
        })));
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

/// What another node counted, as this node's [`crate::throttle::Counted`].
pub(crate) fn counted_elsewhere(counted: wire::Counted) -> Option<crate::throttle::Counted> {
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

#[cfg(test)]
mod tests;
