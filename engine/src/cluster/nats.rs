//! The network side of the cluster: a NATS connection, the subscriptions to `world.all` and
//! this node's inbox, and the queues between them and the tick loop.
//!
//! Both queues are bounded. Inbound, batches wait for the tick loop in a queue of
//! [`INBOUND_QUEUE`]; when it is full (the tick loop is far behind) a batch is dropped, and the
//! receiver's sequence check says so in the log. Outbound, the tick loop hands each batch to
//! the publisher task without waiting; when its queue of [`OUTBOUND_QUEUE`] is full (NATS is
//! down or slow and the client's own buffer is full too) the batch is dropped and counted, and
//! the other nodes see the gap. NATS itself reconnects without end; while it is away the node
//! serves its own players, says so in its log and in `/readyz`, and when it is back the other
//! nodes, which counted it gone, ask for its state again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{inbox, wire, Batch, ALL};
use crate::metrics::Count;

/// Batches from other nodes waiting for the tick loop, at most.
pub const INBOUND_QUEUE: usize = 4096;

/// Batches waiting to be published, at most.
pub const OUTBOUND_QUEUE: usize = 1024;

/// How long the first connect may take before the server gives up and says so.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The tick loop's ends of the NATS connection.
pub struct Link {
    /// Batches from other nodes.
    pub inbound: mpsc::Receiver<Batch>,
    outbound: Option<mpsc::Sender<(String, Bytes)>>,
    connected: Arc<AtomicBool>,
    client: async_nats::Client,
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

impl Link {
    /// Connects to `url` as node `node` and subscribes. Fails, saying why in the driver's
    /// words, when NATS cannot be reached within 5 s.
    pub async fn connect(
        url: &str,
        node: &str,
        metrics: LinkMetrics,
        stop: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Link, String> {
        let connected = Arc::new(AtomicBool::new(false));
        let state = connected.clone();
        let options = async_nats::ConnectOptions::new()
            .name(format!("world-server {node}"))
            .connection_timeout(CONNECT_TIMEOUT)
            .event_callback(move |event| {
                let state = state.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            if !state.swap(true, Ordering::Relaxed) {
                                spdlog::info!("cluster: connected to NATS");
                            }
                        }
                        async_nats::Event::Disconnected => {
                            state.store(false, Ordering::Relaxed);
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
        let (inbound_tx, inbound) = mpsc::channel(INBOUND_QUEUE);
        let (outbound_tx, mut outbound_rx) = mpsc::channel::<(String, Bytes)>(OUTBOUND_QUEUE);

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
                        if inbound_tx.try_send(batch).is_err() {
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
        let publisher = client.clone();
        tracker.spawn(async move {
            while let Some((subject, payload)) = outbound_rx.recv().await {
                let len = payload.len() as u64;
                if let Err(error) = publisher.publish(subject, payload).await {
                    spdlog::warn!("cluster: cannot publish: {error}");
                    continue;
                }
                metrics.sent_bytes.inc_by(len);
            }
            // The tick loop is done: what it handed over goes out before the server stops.
            let _ = publisher.flush().await;
        });
        Ok(Link {
            inbound,
            outbound: Some(outbound_tx),
            connected,
            client,
        })
    }

    /// Whether NATS is connected now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Hands `batch` to the publisher; false when its queue is full (the batch is dropped).
    pub fn publish(&mut self, subject: String, batch: &Batch) -> bool {
        let Some(outbound) = &self.outbound else {
            return false;
        };
        let payload = Bytes::from(prost::Message::encode_to_vec(batch));
        outbound.try_send((subject, payload)).is_ok()
    }

    /// No more batches: the publisher sends what it has, flushes, and ends.
    pub fn close(&mut self) {
        self.outbound = None;
    }

    /// The client, for the server's own use (a flush at shutdown).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }
}
