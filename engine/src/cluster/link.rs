//! What crosses between the cluster core and the network side that carries its batches and
//! bucket requests (NATS, in [`super::nats`]): requests out, answers and batches in, and the
//! bounds of the queues between them. Pure data: the core and its tests use it without NATS.
//!
//! [`Link`] is the tick loop's end of the connection. Without the engine's `nats` feature it is
//! a type with no values: [`Link::connect`] says that this build has no NATS client, and a
//! server without `cluster.nats_url` never needs one.

use net::SessionId;

#[cfg(feature = "nats")]
pub use super::nats::Link;
#[cfg(not(feature = "nats"))]
pub use absent::Link;

use super::Batch;
use crate::metrics::Count;

/// Batches from other nodes waiting for the tick loop, at most.
pub const INBOUND_QUEUE: usize = 4096;

/// Name claims and releases waiting for the bucket, at most.
pub const NAMES_QUEUE: usize = 8192;

/// Batches waiting to be published, at most.
pub const OUTBOUND_QUEUE: usize = 1024;

/// What the rooms bucket answered to a reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// The room had room: one more member of this node is counted.
    Granted,
    /// The room is at capacity, counting every node.
    Full,
    /// The bucket could not be reached: the node decides alone.
    Unavailable,
}

/// What NATS brings the tick loop.
#[derive(Debug)]
pub enum FromNats {
    /// A batch of another node.
    Batch(Batch),
    /// The name a session of this node asked for is its own now (`granted`), or could not be
    /// claimed (NATS unavailable).
    Claimed {
        /// The session.
        session: SessionId,
        /// The username, folded to lowercase.
        username: String,
        /// Whether the bucket now says it holds the name.
        granted: bool,
        /// The bucket's revision of the claim (0 when not granted).
        revision: u64,
    },
    /// The bucket says `holder` holds `username` now.
    Held {
        /// The username, folded to lowercase.
        username: String,
        /// `node incarnation session`.
        holder: String,
        /// The bucket's revision of the change.
        revision: u64,
    },
    /// The answer to [`NameRequest::Reserve`].
    Reserved {
        /// The session.
        session: SessionId,
        /// The room.
        room: String,
        /// What the bucket said.
        outcome: Reservation,
    },
    /// A name claimed without the bucket (NATS was away) is held by a login that outranks
    /// this node's ([`outranks`]): the session gives it up.
    Outranked {
        /// The session.
        session: SessionId,
        /// The username, folded to lowercase.
        username: String,
        /// The holder that outranks it, as [`holder`] writes it.
        holder: String,
    },
    /// NATS is connected again after it was lost: what this node decided alone meanwhile
    /// (names, room counts) is put right in the buckets.
    Connected,
    /// NATS was lost: the other nodes' silence from now on is this node's, not theirs, and
    /// does not count them gone (what this node sends them is held until NATS is back).
    Disconnected,
    /// The bucket says nobody holds `username` now.
    Freed {
        /// The username, folded to lowercase.
        username: String,
        /// The bucket's revision of the change.
        revision: u64,
    },
}

/// What the tick loop asks of the bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameRequest {
    /// `session` logged in as `username` at `at_us`: make it the holder (compare-and-set on
    /// the revision it saw, so that of two claims at once one comes strictly after the other).
    Claim {
        /// The session.
        session: SessionId,
        /// The username, folded to lowercase.
        username: String,
        /// When it logged in (wall clock, microseconds since 1970).
        at_us: u64,
    },
    /// `session` logged out of `username`: free it, if it still holds it.
    Release {
        /// The session.
        session: SessionId,
        /// The username, folded to lowercase.
        username: String,
        /// When it logged in, as claimed.
        at_us: u64,
    },
    /// `session` logged in as `username` at `at_us` while the bucket could not be asked
    /// (NATS away), or holds it by a claim the bucket has not confirmed: make it the holder
    /// unless the holder there [`outranks`] it, in which case the answer is
    /// [`FromNats::Outranked`].
    Reclaim {
        /// The session.
        session: SessionId,
        /// The username, folded to lowercase.
        username: String,
        /// When it logged in.
        at_us: u64,
    },
    /// Members of this node in `room` are `members` (the rooms bucket counts what the node
    /// decided alone while NATS was away).
    Recount {
        /// The room.
        room: String,
        /// Members of this node in it.
        members: u32,
    },
    /// `session` would join `room`: count it, if the room's members on every node are fewer
    /// than `capacity` (compare-and-set, so two joins at once cannot both take the last place).
    Reserve {
        /// The session.
        session: SessionId,
        /// The room.
        room: String,
        /// The room's capacity.
        capacity: u32,
    },
    /// A member of this node that was counted left `room`.
    Unreserve {
        /// The room.
        room: String,
    },
    /// Node `node` (in `incarnation`) is gone: its members stop counting in every room.
    DropNode {
        /// Its name.
        node: String,
        /// Its incarnation.
        incarnation: u64,
    },
    /// This node started as `node` in `incarnation`: what earlier runs under its name left
    /// counted (a whole cluster stopped, say) stops counting.
    Started {
        /// Its name.
        node: String,
        /// Its incarnation now.
        incarnation: u64,
    },
}

/// The holder value of `session` of this node, logged in at `at_us`:
/// `node incarnation session at_us`.
pub fn holder(node: &str, incarnation: u64, session: SessionId, at_us: u64) -> String {
    format!("{node} {incarnation} {} {at_us}", session.0)
}

/// Whether the login of holder value `a` outranks that of `b` when both claim a name they
/// took apart (NATS away, or a node cut off): the later login wins, as when the same name
/// logs in twice while connected (the newer session replaces the older); equal times go to
/// the greater node name, then incarnation, then session. Every node computes it the same way
/// from the two values alone. A value of an older server (no time) counts as the earliest.
pub fn outranks(a: &str, b: &str) -> bool {
    rank(a) > rank(b)
}

/// What [`outranks`] compares: the login time, then the node, incarnation and session.
fn rank(value: &str) -> (u64, &str, u64, u64) {
    let mut parts = value.split(' ');
    let node = parts.next().unwrap_or("");
    let mut number = || {
        parts
            .next()
            .and_then(|p| p.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (incarnation, session, at_us) = (number(), number(), number());
    (at_us, node, incarnation, session)
}

// The rules of the buckets, as pure code: the NATS side applies them to JetStream's key-value
// buckets inside its compare-and-set loops (`nats.rs`), the test kit's in-memory bucket
// (`crate::testing::Bucket`) as they are, and the tick loop when the buckets cannot be asked.

/// A room's entry in the rooms bucket: how many of its members each node counts, by
/// [`member_key`].
pub type RoomCounts = std::collections::BTreeMap<String, u32>;

/// A node's key in [`RoomCounts`]: `node:incarnation`, so that a node that restarts does not
/// inherit what its earlier run counted.
pub fn member_key(node: &str, incarnation: u64) -> String {
    format!("{node}:{incarnation}")
}

/// Node `me` would add a member to a room of `capacity` whose counts are `counts`: the room is
/// [`Reservation::Full`] when the members of every node together fill it, else the member is
/// counted and [`Reservation::Granted`].
pub fn reserve_in(counts: &mut RoomCounts, me: &str, capacity: u32) -> Reservation {
    if counts.values().sum::<u32>() >= capacity {
        return Reservation::Full;
    }
    *counts.entry(me.to_string()).or_default() += 1;
    Reservation::Granted
}

/// A member node `me` counted left: it stops counting, and a node counting none is dropped.
pub fn unreserve_in(counts: &mut RoomCounts, me: &str) {
    if let Some(n) = counts.get_mut(me) {
        *n = n.saturating_sub(1);
    }
    counts.retain(|_, n| *n > 0);
}

/// Whether the entry `who` of a room stops counting after `request`: all of a node gone
/// ([`NameRequest::DropNode`]), or of a node's earlier runs when it starts again
/// ([`NameRequest::Started`]). Nothing else drops entries.
pub fn dropped_by(request: &NameRequest, who: &str) -> bool {
    match request {
        NameRequest::DropNode { node, incarnation } => who == member_key(node, *incarnation),
        NameRequest::Started { node, incarnation } => {
            who.starts_with(&format!("{node}:")) && who != member_key(node, *incarnation)
        }
        _ => false,
    }
}

/// The answer the node gives itself when the buckets cannot be asked (NATS away, or the
/// queue to it full): it fails open, serving its own players. A login goes on without the
/// claim (`granted: false`; the next claim of the name wins), a join is decided by this node
/// alone ([`Reservation::Unavailable`]); nothing waits for the other requests (a reclaim and a
/// recount are made again when NATS is back, [`FromNats::Connected`]).
pub fn unavailable(request: NameRequest) -> Option<FromNats> {
    match request {
        NameRequest::Claim {
            session, username, ..
        } => Some(FromNats::Claimed {
            session,
            username,
            granted: false,
            revision: 0,
        }),
        NameRequest::Reserve { session, room, .. } => Some(FromNats::Reserved {
            session,
            room,
            outcome: Reservation::Unavailable,
        }),
        _ => None,
    }
}

/// The counters the NATS side keeps.
#[derive(Clone)]
pub struct LinkMetrics {
    /// Bytes of batches published.
    pub sent_bytes: Count,
    /// Bytes of batches received from other nodes.
    pub received_bytes: Count,
    /// Batches dropped because a queue was full.
    pub dropped: Count,
}

#[cfg(not(feature = "nats"))]
mod absent {
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    use super::{FromNats, LinkMetrics, NameRequest};
    use crate::cluster::Batch;

    /// The tick loop's end of a NATS connection, in a build without one: no value of it
    /// exists, so every method below is unreachable.
    pub enum Link {}

    impl Link {
        /// Fails: this build has no NATS client.
        #[allow(clippy::too_many_arguments)]
        pub async fn connect(
            _url: &str,
            _node: &str,
            _incarnation: u64,
            _outage_buffer: usize,
            _metrics: LinkMetrics,
            _stop: CancellationToken,
            _tracker: &TaskTracker,
        ) -> Result<Link, String> {
            Err("this build has no NATS client (the engine's `nats` feature)".into())
        }

        /// What NATS brought, if anything.
        pub fn try_recv(&mut self) -> Option<FromNats> {
            match *self {}
        }

        /// Whether NATS is connected now.
        pub fn is_connected(&self) -> bool {
            match *self {}
        }

        /// Hands `batch` to the publisher.
        pub fn publish(&mut self, _subject: String, _batch: Batch) -> bool {
            match *self {}
        }

        /// Asks the buckets for `request`.
        pub fn ask(&self, _request: NameRequest) -> Result<(), NameRequest> {
            match *self {}
        }

        /// No more batches.
        pub fn close(&mut self) {
            match *self {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn of_two_logins_made_apart_the_later_outranks_whichever_node_asks() {
        let early = holder("node2", 9, SessionId(4), 1_000);
        let late = holder("node1", 3, SessionId(7), 2_000);
        assert!(outranks(&late, &early) && !outranks(&early, &late));
        // The same time: the greater node name, then incarnation, then session.
        let a = holder("node1", 3, SessionId(7), 1_000);
        assert!(outranks(&early, &a) && !outranks(&a, &early));
        let b = holder("node1", 3, SessionId(8), 1_000);
        assert!(outranks(&b, &a));
        assert!(!outranks(&a, &a), "nothing outranks itself");
        // An older server's value, with no time: the earliest.
        assert!(outranks(&a, "node9 1 1"));
    }

    #[test]
    fn a_room_counts_every_node_s_members_against_its_capacity() {
        let mut counts = RoomCounts::new();
        let (a, b) = (member_key("a", 1), member_key("b", 7));
        assert_eq!(reserve_in(&mut counts, &a, 3), Reservation::Granted);
        assert_eq!(reserve_in(&mut counts, &b, 3), Reservation::Granted);
        assert_eq!(reserve_in(&mut counts, &b, 3), Reservation::Granted);
        assert_eq!(reserve_in(&mut counts, &a, 3), Reservation::Full);
        assert_eq!(counts, RoomCounts::from([(a.clone(), 1), (b.clone(), 2)]));
        unreserve_in(&mut counts, &a);
        assert_eq!(
            counts,
            RoomCounts::from([(b.clone(), 2)]),
            "none left: dropped"
        );
        unreserve_in(&mut counts, &a);
        assert_eq!(counts.len(), 1, "what was not counted changes nothing");
        assert_eq!(reserve_in(&mut counts, &a, 3), Reservation::Granted);
    }

    #[test]
    fn a_node_gone_or_started_again_stops_counting_what_it_had() {
        let gone = NameRequest::DropNode {
            node: "a".into(),
            incarnation: 1,
        };
        assert!(dropped_by(&gone, "a:1"));
        assert!(!dropped_by(&gone, "a:2") && !dropped_by(&gone, "ab:1"));
        let started = NameRequest::Started {
            node: "a".into(),
            incarnation: 2,
        };
        assert!(dropped_by(&started, "a:1"));
        assert!(!dropped_by(&started, "a:2") && !dropped_by(&started, "b:1"));
        let release = NameRequest::Release {
            session: SessionId(1),
            username: "ann".into(),
            at_us: 0,
        };
        assert!(!dropped_by(&release, "a:1"));
    }

    #[test]
    fn without_the_buckets_a_login_and_a_join_go_on_and_nothing_else_is_answered() {
        let claim = NameRequest::Claim {
            session: SessionId(3),
            username: "ann".into(),
            at_us: 0,
        };
        assert!(matches!(
            unavailable(claim),
            Some(FromNats::Claimed {
                session: SessionId(3),
                granted: false,
                revision: 0,
                ..
            })
        ));
        let join = NameRequest::Reserve {
            session: SessionId(4),
            room: "lobby".into(),
            capacity: 2,
        };
        assert!(matches!(
            unavailable(join),
            Some(FromNats::Reserved {
                outcome: Reservation::Unavailable,
                ..
            })
        ));
        let release = NameRequest::Release {
            session: SessionId(3),
            username: "ann".into(),
            at_us: 0,
        };
        assert!(unavailable(release).is_none());
    }
}
