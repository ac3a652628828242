//! The network side of the cluster: a NATS connection, the subscriptions to `world.all` and
//! this node's inbox, and the queues between them and the tick loop.
//!
//! Both queues are bounded. Inbound, batches wait for the tick loop in a queue of
//! [`INBOUND_QUEUE`]; when it is full (the tick loop is far behind) a batch is dropped, and the
//! receiver's sequence check says so in the log. Outbound, the tick loop hands each batch to
//! the publisher task without waiting (a queue of [`OUTBOUND_QUEUE`] that the task drains at
//! once). The publisher keeps every batch until NATS has taken it: it publishes what it holds,
//! then a marker to a subject of its own, and lets the batches go when the marker comes back
//! (NATS handles one connection's messages in order). While NATS is away it keeps them, up to
//! `cluster.outage_buffer_mib`, and publishes them in order when NATS is back; past the bound a
//! batch is dropped and counted, and the other nodes see the gap. A batch published twice
//! (its marker lost with the connection) is one the receivers have by its sequence number, and
//! they drop it. NATS itself reconnects without end; while it is away the node serves its own
//! players, says so in its log and in `/readyz`, and when it is back the other nodes, which
//! counted it gone, ask for its state again.
//!
//! Built with the engine's `nats` feature (on by default); what crosses between this side and
//! the tick loop is in [`super::link`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::link::{
    holder, FromNats, LinkMetrics, NameRequest, Reservation, INBOUND_QUEUE, NAMES_QUEUE,
    OUTBOUND_QUEUE,
};
use super::{inbox, link, wire, Batch, ALL};

/// How long a claim may take before the login goes on without it.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the first connect may take before the server gives up and says so.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the publisher waits for its marker to come back before it counts what it
/// published as not taken (to be published again).
const MARKER_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a closing publisher waits for NATS to come back with batches still held.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The JetStream key-value bucket that says which session holds each username.
pub const NAMES_BUCKET: &str = "world_names";

/// The JetStream key-value bucket that counts each room's members, per node, so that a room's
/// capacity holds across the nodes.
pub const ROOMS_BUCKET: &str = "world_rooms";

/// The bucket key of a username (lowercase): keys may not start or end with a dot, which
/// usernames may, and `=` is not in usernames, so this is one to one.
fn name_key(username: &str) -> String {
    format!("u_{}", username.replace('.', "="))
}

fn key_name(key: &str) -> Option<String> {
    key.strip_prefix("u_").map(|k| k.replace('=', "."))
}

/// The tick loop's ends of the NATS connection.
pub struct Link {
    /// What NATS brings: batches of other nodes, and what the names bucket says.
    inbound: mpsc::Receiver<FromNats>,
    names: Option<mpsc::Sender<NameRequest>>,
    outbound: Option<mpsc::Sender<(String, Batch)>>,
    connected: Arc<AtomicBool>,
    /// Set when NATS is connected again after it was lost; told once as
    /// [`FromNats::Connected`].
    reconnected: Arc<AtomicBool>,
    /// Set when NATS is lost; told once as [`FromNats::Disconnected`].
    went_away: Arc<AtomicBool>,
}

impl Link {
    /// Connects to `url` as node `node` and subscribes. Fails, saying why in the driver's
    /// words, when NATS cannot be reached within 5 s.
    #[allow(clippy::too_many_arguments)]
    pub async fn connect(
        url: &str,
        node: &str,
        incarnation: u64,
        outage_buffer: usize,
        metrics: LinkMetrics,
        stop: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Link, String> {
        let connected = Arc::new(AtomicBool::new(false));
        let reconnected = Arc::new(AtomicBool::new(false));
        let went_away = Arc::new(AtomicBool::new(false));
        let (state, again, away) = (connected.clone(), reconnected.clone(), went_away.clone());
        let lost = Arc::new(AtomicBool::new(false));
        let options = async_nats::ConnectOptions::new()
            .name(format!("world-server {node}"))
            .connection_timeout(CONNECT_TIMEOUT)
            .event_callback(move |event| {
                let (state, again, lost, away) =
                    (state.clone(), again.clone(), lost.clone(), away.clone());
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            if !state.swap(true, Ordering::Relaxed) {
                                spdlog::info!("cluster: connected to NATS");
                            }
                            if lost.swap(false, Ordering::Relaxed) {
                                again.store(true, Ordering::Relaxed);
                            }
                        }
                        async_nats::Event::Disconnected => {
                            state.store(false, Ordering::Relaxed);
                            lost.store(true, Ordering::Relaxed);
                            away.store(true, Ordering::Relaxed);
                            spdlog::warn!(
                                "cluster: lost NATS; serving this node's players alone until it is back"
                            );
                        }
                        other => spdlog::debug!("cluster: NATS: {other}"),
                    }
                }
            });
        let client = options.connect(url).await.map_err(|e| e.to_string())?;
        connected.store(true, Ordering::Relaxed);
        let all = client.subscribe(ALL).await.map_err(|e| e.to_string())?;
        let mine = client
            .subscribe(inbox(node))
            .await
            .map_err(|e| e.to_string())?;
        let jetstream = async_nats::jetstream::new(client.clone());
        let kv = open_bucket(&jetstream, NAMES_BUCKET).await?;
        let rooms = open_bucket(&jetstream, ROOMS_BUCKET).await?;
        let (inbound_tx, inbound) = mpsc::channel(INBOUND_QUEUE);
        // One claim per login and one release per logout; when the queue is full, the tick
        // loop answers the claim itself (see `Link::ask`).
        let (names_tx, mut names_rx) = mpsc::channel::<NameRequest>(NAMES_QUEUE);
        {
            let (kv, answers, node) = (kv.clone(), inbound_tx.clone(), node.to_string());
            let up = connected.clone();
            let me = link::member_key(&node, incarnation);
            let bucket = Arc::new(Buckets {
                names: kv.clone(),
                rooms: rooms.clone(),
                answers,
                node,
                incarnation,
                me,
                up,
            });
            // Requests are carried out side by side (a few dozen at a time): each is a round
            // trip or two to JetStream, and those of one session come one after the other
            // anyway (a release after its claim was answered).
            let running = Arc::new(tokio::sync::Semaphore::new(BUCKET_REQUESTS_AT_ONCE));
            let spawner = tracker.clone();
            tracker.spawn(async move {
                while let Some(request) = names_rx.recv().await {
                    let Ok(permit) = running.clone().acquire_owned().await else {
                        break;
                    };
                    let bucket = bucket.clone();
                    spawner.spawn(async move {
                        bucket.serve(request).await;
                        drop(permit);
                    });
                }
            });
        }
        {
            let (kv, events, stop) = (kv.clone(), inbound_tx.clone(), stop.clone());
            tracker.spawn(async move { watch_names(kv, events, stop).await });
        }
        let (outbound_tx, outbound_rx) = mpsc::channel::<(String, Batch)>(OUTBOUND_QUEUE);

        let received = metrics.clone();
        tracker.spawn(async move {
            let mut messages = futures_util::stream::select(all, mine);
            loop {
                let message = tokio::select! {
                    _ = stop.cancelled() => break,
                    message = messages.next() => message,
                };
                let Some(message) = message else { break };
                received.received_bytes.inc_by(message.payload.len() as u64);
                match wire::decode(&message.payload) {
                    Ok(batch) => {
                        if inbound_tx.try_send(FromNats::Batch(batch)).is_err() {
                            received.dropped.inc();
                        }
                    }
                    Err(error) => {
                        spdlog::warn!(
                            "cluster: a batch on {} does not decode: {error}",
                            message.subject
                        );
                    }
                }
            }
        });
        let markers = client
            .subscribe(format!("world.marker.{node}.{incarnation}"))
            .await
            .map_err(|e| e.to_string())?;
        let publisher = Publisher {
            client: client.clone(),
            connected: connected.clone(),
            markers,
            subject: format!("world.marker.{node}.{incarnation}"),
            marker: 0,
            held: std::collections::VecDeque::new(),
            held_bytes: 0,
            bound: outage_buffer,
            metrics,
            warned: None,
        };
        tracker.spawn(publisher.run(outbound_rx));
        Ok(Link {
            inbound,
            names: Some(names_tx),
            outbound: Some(outbound_tx),
            connected,
            reconnected,
            went_away,
        })
    }

    /// What NATS brought since the last call, one at a time; `None` when nothing waits.
    pub fn try_recv(&mut self) -> Option<FromNats> {
        if self.went_away.swap(false, Ordering::Relaxed) {
            return Some(FromNats::Disconnected);
        }
        if self.reconnected.swap(false, Ordering::Relaxed) {
            return Some(FromNats::Connected);
        }
        self.inbound.try_recv().ok()
    }

    /// Whether NATS is connected now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Hands `batch` to the publisher, which encodes and publishes it; false when its queue
    /// is full (the batch is dropped).
    pub fn publish(&mut self, subject: String, batch: Batch) -> bool {
        let Some(outbound) = &self.outbound else {
            return false;
        };
        outbound.try_send((subject, batch)).is_ok()
    }

    /// Asks the buckets for `request`; gives it back when their queue is full (a claim is
    /// then not granted, and the login goes on without it; a reservation is unavailable; a
    /// release is left undone, and the next claim of the name takes it over).
    pub fn ask(&self, request: NameRequest) -> Result<(), NameRequest> {
        match &self.names {
            Some(names) => names.try_send(request).map_err(|e| e.into_inner()),
            None => Err(request),
        }
    }

    /// No more batches: the publisher sends what it has, flushes, and ends.
    pub fn close(&mut self) {
        self.outbound = None;
        // The bucket task ends once it has carried out what it has (the last releases).
        self.names = None;
    }
}

/// The publisher task: batches from the tick loop, held until NATS has taken them.
struct Publisher {
    client: async_nats::Client,
    connected: Arc<AtomicBool>,
    /// This node's markers, back from NATS.
    markers: async_nats::Subscriber,
    subject: String,
    marker: u64,
    /// Encoded batches not yet taken by NATS, oldest first, and their bytes.
    held: std::collections::VecDeque<(String, Bytes)>,
    held_bytes: usize,
    bound: usize,
    metrics: LinkMetrics,
    /// When the last warning of a batch dropped over the bound was logged.
    warned: Option<std::time::Instant>,
}

impl Publisher {
    async fn run(mut self, mut outbound: mpsc::Receiver<(String, Batch)>) {
        let mut closed_at: Option<tokio::time::Instant> = None;
        loop {
            if closed_at.is_none() {
                if self.held.is_empty() {
                    match outbound.recv().await {
                        Some(batch) => self.hold(batch),
                        None => closed_at = Some(tokio::time::Instant::now()),
                    }
                } else if !self.connected.load(Ordering::Relaxed) {
                    // Away: take what comes, and look again now and then.
                    tokio::select! {
                        got = outbound.recv() => match got {
                            Some(batch) => self.hold(batch),
                            None => closed_at = Some(tokio::time::Instant::now()),
                        },
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
                while let Ok(batch) = outbound.try_recv() {
                    self.hold(batch);
                }
            }
            if let Some(at) = closed_at {
                if self.held.is_empty() {
                    break;
                }
                if at.elapsed() >= CLOSE_WAIT {
                    spdlog::warn!(
                        "cluster: stopping with {} batches NATS has not taken; they are lost",
                        self.held.len()
                    );
                    break;
                }
                if !self.connected.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
            if !self.connected.load(Ordering::Relaxed) || self.held.is_empty() {
                continue;
            }
            self.send_held().await;
        }
    }

    /// Encodes `batch` (off the tick loop) and holds it, unless the held bytes would pass the
    /// bound: then it is dropped, counted, and said at most every 5 s.
    fn hold(&mut self, (subject, batch): (String, Batch)) {
        let payload = Bytes::from(prost::Message::encode_to_vec(&batch));
        if self.held_bytes + payload.len() > self.bound {
            self.metrics.dropped.inc();
            if self
                .warned
                .is_none_or(|at| at.elapsed() >= Duration::from_secs(5))
            {
                self.warned = Some(std::time::Instant::now());
                spdlog::warn!(
                    "cluster: {} bytes held for NATS, the most cluster.outage_buffer_mib allows: batches are dropped, and the other nodes will miss them",
                    self.held_bytes
                );
            }
            return;
        }
        self.held_bytes += payload.len();
        self.held.push_back((subject, payload));
    }

    /// Publishes what is held, in order, then a marker; what was published is let go once
    /// the marker is back, else kept to be published again.
    async fn send_held(&mut self) {
        let count = self.held.len();
        for (subject, payload) in self.held.iter() {
            if self
                .client
                .publish(subject.clone(), payload.clone())
                .await
                .is_err()
            {
                return;
            }
        }
        self.marker += 1;
        let marker = Bytes::copy_from_slice(&self.marker.to_le_bytes());
        if self
            .client
            .publish(self.subject.clone(), marker.clone())
            .await
            .is_err()
        {
            return;
        }
        let markers = &mut self.markers;
        let back = tokio::time::timeout(MARKER_TIMEOUT, async {
            while let Some(message) = markers.next().await {
                if message.payload == marker {
                    return true;
                }
            }
            false
        })
        .await;
        if back != Ok(true) {
            return; // published again once NATS answers
        }
        for (_, payload) in self.held.drain(..count) {
            self.held_bytes -= payload.len();
            self.metrics.sent_bytes.inc_by(payload.len() as u64);
        }
    }
}

/// The key-value bucket `name`, created when it is not there yet (by the first node to
/// start; the others find it).
async fn open_bucket(
    jetstream: &async_nats::jetstream::Context,
    name: &str,
) -> Result<async_nats::jetstream::kv::Store, String> {
    let config = async_nats::jetstream::kv::Config {
        bucket: name.to_string(),
        history: 1,
        ..Default::default()
    };
    match jetstream.create_key_value(config).await {
        Ok(kv) => Ok(kv),
        Err(create) => jetstream.get_key_value(name).await.map_err(|e| {
            format!(
                "no JetStream key-value bucket {name} ({create}; {e}); start nats-server with -js"
            )
        }),
    }
}

/// Makes `value` the holder of `key`, whoever held it: created when absent, else updated on
/// the revision read (compare-and-set), again when another claim came in between. The
/// revision it got; `None` when the bucket cannot be reached.
async fn claim(kv: &async_nats::jetstream::kv::Store, key: &str, value: String) -> Option<u64> {
    let value = Bytes::from(value);
    for _ in 0..8 {
        if let Ok(revision) = kv.create(key, value.clone()).await {
            return Some(revision);
        }
        match kv.entry(key).await {
            Ok(Some(entry)) => {
                if let Ok(revision) = kv.update(key, value.clone(), entry.revision).await {
                    return Some(revision);
                }
            }
            Ok(None) => continue,
            Err(error) => {
                spdlog::warn!("cluster: cannot claim a name: {error}");
                return None;
            }
        }
    }
    None
}

/// How long a reclaim keeps trying while the buckets do not answer yet (NATS just back).
const RECLAIM_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes `value` the holder of `key` unless the holder there outranks it
/// ([`link::outranks`]): `Ok` with the revision, or `Err` with that holder; compare-and-set,
/// again when another claim came in between, and again every 200 ms while the bucket does not
/// answer, for [`RECLAIM_TIMEOUT`] at most (`None` then).
async fn reclaim(
    kv: &async_nats::jetstream::kv::Store,
    key: &str,
    value: String,
) -> Option<Result<u64, String>> {
    let deadline = tokio::time::Instant::now() + RECLAIM_TIMEOUT;
    let bytes = Bytes::from(value.clone());
    while tokio::time::Instant::now() < deadline {
        let entry = tokio::time::timeout(CLAIM_TIMEOUT, kv.entry(key)).await;
        let written = match entry {
            Ok(Ok(Some(entry))) if entry.operation == async_nats::jetstream::kv::Operation::Put => {
                let there = String::from_utf8_lossy(&entry.value).into_owned();
                if there == value {
                    return Some(Ok(entry.revision));
                }
                if link::outranks(&there, &value) {
                    return Some(Err(there));
                }
                kv.update(key, bytes.clone(), entry.revision).await.ok()
            }
            Ok(Ok(Some(entry))) => kv.update(key, bytes.clone(), entry.revision).await.ok(),
            Ok(Ok(None)) => kv.create(key, bytes.clone()).await.ok(),
            _ => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if let Some(revision) = written {
            return Some(Ok(revision));
        }
    }
    None
}

/// Sets the count of `me` in the room of `key` to `members`, compare-and-set.
async fn set_count(kv: &async_nats::jetstream::kv::Store, key: &str, me: &str, members: u32) {
    for _ in 0..16 {
        let (mut counts, revision) = match kv.entry(key).await {
            Ok(Some(entry)) if entry.operation == async_nats::jetstream::kv::Operation::Put => {
                (counts_of(&entry.value), Some(entry.revision))
            }
            Ok(Some(entry)) => (Default::default(), Some(entry.revision)),
            Ok(None) => (Default::default(), None),
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if members == 0 {
            counts.remove(me);
        } else {
            counts.insert(me.to_string(), members);
        }
        let value = counts_value(&counts);
        let written = match revision {
            Some(revision) => kv.update(key, value, revision).await.is_ok(),
            None => kv.create(key, value).await.is_ok(),
        };
        if written {
            return;
        }
    }
}

/// Frees `key` if `value` still holds it.
async fn release(kv: &async_nats::jetstream::kv::Store, key: &str, value: &str) {
    if let Ok(Some(entry)) = kv.entry(key).await {
        if entry.operation == async_nats::jetstream::kv::Operation::Put
            && entry.value.as_ref() == value.as_bytes()
        {
            let _ = kv.delete_expect_revision(key, Some(entry.revision)).await;
        }
    }
}

/// Every change of the names bucket, to the tick loop, from where the last watch stopped
/// (a watch ends when NATS goes away; the next one starts after the last revision seen).
async fn watch_names(
    kv: async_nats::jetstream::kv::Store,
    events: mpsc::Sender<FromNats>,
    stop: CancellationToken,
) {
    let mut next: u64 = 0;
    while !stop.is_cancelled() {
        let watch = if next == 0 {
            kv.watch_all().await
        } else {
            kv.watch_all_from_revision(next).await
        };
        if let Ok(mut watch) = watch {
            loop {
                let entry = tokio::select! {
                    _ = stop.cancelled() => return,
                    entry = watch.next() => entry,
                };
                let Some(Ok(entry)) = entry else { break };
                next = entry.revision + 1;
                let Some(username) = key_name(&entry.key) else {
                    continue;
                };
                let revision = entry.revision;
                let event = match entry.operation {
                    async_nats::jetstream::kv::Operation::Put => FromNats::Held {
                        username,
                        holder: String::from_utf8_lossy(&entry.value).into_owned(),
                        revision,
                    },
                    _ => FromNats::Freed { username, revision },
                };
                if events.send(event).await.is_err() {
                    return;
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// A room's counts as kept in the rooms bucket: `node:incarnation=count`, space-separated.
fn counts_of(value: &[u8]) -> std::collections::BTreeMap<String, u32> {
    String::from_utf8_lossy(value)
        .split(' ')
        .filter_map(|pair| {
            let (who, n) = pair.split_once('=')?;
            Some((who.to_string(), n.parse().ok()?))
        })
        .collect()
}

fn counts_value(counts: &std::collections::BTreeMap<String, u32>) -> Bytes {
    Bytes::from(
        counts
            .iter()
            .map(|(who, n)| format!("{who}={n}"))
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Counts one more member of `me` in the room of `key` if its members, all nodes together,
/// are fewer than `capacity`; compare-and-set on the revision read, again when another
/// change came in between.
async fn reserve(
    kv: &async_nats::jetstream::kv::Store,
    key: &str,
    me: &str,
    capacity: u32,
) -> Reservation {
    for _ in 0..16 {
        let (mut counts, revision) = match kv.entry(key).await {
            Ok(Some(entry)) if entry.operation == async_nats::jetstream::kv::Operation::Put => {
                (counts_of(&entry.value), Some(entry.revision))
            }
            Ok(Some(entry)) => (Default::default(), Some(entry.revision)),
            Ok(None) => (Default::default(), None),
            Err(_) => return Reservation::Unavailable,
        };
        if link::reserve_in(&mut counts, me, capacity) == Reservation::Full {
            return Reservation::Full;
        }
        let value = counts_value(&counts);
        let written = match revision {
            Some(revision) => kv.update(key, value, revision).await.is_ok(),
            None => kv.create(key, value).await.is_ok(),
        };
        if written {
            return Reservation::Granted;
        }
    }
    Reservation::Unavailable
}

/// Changes the counts of the room of `key` with `change`, compare-and-set.
async fn recount(
    kv: &async_nats::jetstream::kv::Store,
    key: &str,
    change: impl Fn(&mut std::collections::BTreeMap<String, u32>),
) {
    for _ in 0..16 {
        let Ok(Some(entry)) = kv.entry(key).await else {
            return;
        };
        if entry.operation != async_nats::jetstream::kv::Operation::Put {
            return;
        }
        let mut counts = counts_of(&entry.value);
        let before = counts.clone();
        change(&mut counts);
        if counts == before {
            return;
        }
        if kv
            .update(key, counts_value(&counts), entry.revision)
            .await
            .is_ok()
        {
            return;
        }
    }
}

/// The entries (`node:incarnation`) `gone` says are gone stop counting in every room.
async fn drop_counts(kv: &async_nats::jetstream::kv::Store, gone: impl Fn(&str) -> bool) {
    let Ok(keys) = kv.keys().await else {
        return;
    };
    let keys: Vec<String> = keys.filter_map(|k| async { k.ok() }).collect().await;
    for key in keys {
        recount(kv, &key, |counts| counts.retain(|who, _| !gone(who))).await;
    }
}

/// How many bucket requests are carried out at once.
const BUCKET_REQUESTS_AT_ONCE: usize = 64;

/// The two buckets, and where their answers go.
struct Buckets {
    names: async_nats::jetstream::kv::Store,
    rooms: async_nats::jetstream::kv::Store,
    answers: mpsc::Sender<FromNats>,
    node: String,
    incarnation: u64,
    /// `node:incarnation`, this node's entry in the rooms bucket.
    me: String,
    up: Arc<AtomicBool>,
}

impl Buckets {
    async fn serve(&self, request: NameRequest) {
        let (kv, rooms, answers, node, incarnation, me, up) = (
            &self.names,
            &self.rooms,
            &self.answers,
            &self.node,
            self.incarnation,
            &self.me,
            &self.up,
        );
        match request {
            // Without NATS, at once: the node serves its own players.
            request @ (NameRequest::Claim { .. }
            | NameRequest::Reserve { .. }
            | NameRequest::Reclaim { .. }
            | NameRequest::Recount { .. })
                if !up.load(Ordering::Relaxed) =>
            {
                if let Some(answer) = link::unavailable(request) {
                    // A closed queue: the server is stopping, and nobody waits for it.
                    let _ = answers.send(answer).await;
                }
            }
            NameRequest::Claim {
                session,
                username,
                at_us,
            } => {
                let value = holder(node, incarnation, session, at_us);
                let revision =
                    tokio::time::timeout(CLAIM_TIMEOUT, claim(kv, &name_key(&username), value))
                        .await
                        .ok()
                        .flatten();
                // A closed queue: the server is stopping, and nobody waits for the answer.
                let _ = answers
                    .send(FromNats::Claimed {
                        session,
                        username,
                        granted: revision.is_some(),
                        revision: revision.unwrap_or(0),
                    })
                    .await;
            }
            NameRequest::Reclaim {
                session,
                username,
                at_us,
            } => {
                let value = holder(node, incarnation, session, at_us);
                let answer = match reclaim(kv, &name_key(&username), value).await {
                    Some(Ok(revision)) => FromNats::Claimed {
                        session,
                        username,
                        granted: true,
                        revision,
                    },
                    Some(Err(holder)) => FromNats::Outranked {
                        session,
                        username,
                        holder,
                    },
                    // Still unreachable: the next reconnection claims it again.
                    None => return,
                };
                let _ = answers.send(answer).await;
            }
            NameRequest::Recount { room, members } => {
                let key = name_key(&room);
                let _ = tokio::time::timeout(RECLAIM_TIMEOUT, set_count(rooms, &key, me, members))
                    .await;
            }
            NameRequest::Release {
                session,
                username,
                at_us,
            } => {
                let value = holder(node, incarnation, session, at_us);
                if up.load(Ordering::Relaxed) {
                    let _ = tokio::time::timeout(
                        CLAIM_TIMEOUT,
                        release(kv, &name_key(&username), &value),
                    )
                    .await;
                }
            }
            NameRequest::Reserve {
                session,
                room,
                capacity,
            } => {
                let outcome = tokio::time::timeout(
                    CLAIM_TIMEOUT,
                    reserve(rooms, &name_key(&room), me, capacity),
                )
                .await
                .unwrap_or(Reservation::Unavailable);
                let answer = FromNats::Reserved {
                    session,
                    room,
                    outcome,
                };
                let _ = answers.send(answer).await;
            }
            NameRequest::Unreserve { room } => {
                let key = name_key(&room);
                let _ = tokio::time::timeout(
                    CLAIM_TIMEOUT,
                    recount(rooms, &key, |counts| link::unreserve_in(counts, me)),
                )
                .await;
            }
            request @ (NameRequest::DropNode { .. } | NameRequest::Started { .. }) => {
                let _ = tokio::time::timeout(
                    Duration::from_secs(10),
                    drop_counts(rooms, |who| link::dropped_by(&request, who)),
                )
                .await;
            }
        }
    }
}
