//! The pipeline of one exporting run: each item the source read is enriched (bounded
//! concurrency, source order kept), routed, and handed to its receivers' queues with an ack that
//! the progress tracker counts toward the delivery cursor.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Route;
use crate::enrich::Enricher;
use crate::event::Occurrence;
use crate::progress::Tracker;
use crate::route;
use crate::sink::{Delivery, Receivers};
use crate::source::Item;
use crate::telemetry::Metrics;

/// Lookups in flight at once; order of delivery is preserved regardless.
const ENRICH_CONCURRENCY: usize = 16;

/// Enrich → route → hand to receivers, in source order.
pub struct Pipeline {
    /// Cancelled after a drain timeout or a lost lease: stop dispatching at once.
    pub abort: CancellationToken,
    pub route: Route,
    pub cluster_name: String,
    pub receivers: Receivers,
    pub tracker: Tracker,
    pub metrics: Metrics,
    pub dispatched: Arc<AtomicU64>,
}

impl Pipeline {
    pub async fn run(self, rx: mpsc::Receiver<Item>, enricher: Option<Arc<Enricher>>) {
        let stream = tokio_stream_from(rx).map(|item| {
            let enricher = enricher.clone();
            async move {
                match (item, enricher) {
                    (Item::Occurrence { event, position }, Some(enricher)) => Item::Occurrence {
                        event: Box::new(enricher.enrich(*event).await),
                        position,
                    },
                    (item, _) => item,
                }
            }
        });
        let mut stream = std::pin::pin!(stream.buffered(ENRICH_CONCURRENCY));
        loop {
            let item = tokio::select! {
                biased;
                _ = self.abort.cancelled() => return,
                item = stream.next() => item,
            };
            let Some(item) = item else { break };
            tokio::select! {
                biased;
                // Dropping a half-dispatched item drops its acks: the cursor stays before it.
                _ = self.abort.cancelled() => return,
                _ = self.dispatch(item) => {}
            }
        }
        // The source is done and everything it read is queued: let the workers drain and exit.
        self.receivers.close();
    }

    async fn dispatch(&self, item: Item) {
        let (mut event, position) = match item {
            Item::Checkpoint(position) => {
                self.tracker.begin(Some(position)).release();
                return;
            }
            Item::Occurrence { event, position } => (event, position),
        };
        self.metrics.occurrences.inc();
        self.dispatched.fetch_add(1, Ordering::Relaxed);
        event.cluster_name.clone_from(&self.cluster_name);
        let ticket = self.tracker.begin(position);
        let names: Vec<String> = route::receivers_for(&self.route, &event)
            .into_iter()
            .map(str::to_string)
            .collect();
        let occ = Arc::new(Occurrence::new(*event));
        for name in names {
            let Some(handle) = self.receivers.get(&name) else {
                // The config loader rejects routes to undefined receivers; this cannot happen.
                tracing::error!(receiver = %name, "route names an unknown receiver");
                continue;
            };
            self.metrics
                .routed
                .get_or_create(&Metrics::receiver(&name))
                .inc();
            handle
                .send(Delivery {
                    occ: occ.clone(),
                    ack: ticket.ack(),
                })
                .await;
        }
        ticket.release();
    }
}

/// An mpsc receiver as a `Stream`.
fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
