//! The pipeline of one exporting run: each item the source read is enriched (bounded
//! concurrency, source order kept), routed, and handed to its receivers' queues with an ack that
//! the progress tracker counts toward the delivery cursor.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{FutureExt, StreamExt};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Route;
use crate::enrich::Enricher;
use crate::event::{Occurrence, Text};
use crate::progress::Tracker;
use crate::route;
use crate::sink::{Delivery, ReceiverHandle, Receivers};
use crate::source::Item;
use crate::telemetry::Metrics;

/// Lookups in flight at once; order of delivery is preserved regardless.
const ENRICH_CONCURRENCY: usize = 16;

/// Items taken from the source's channel at once when there is nothing to look up.
const RECV_BATCH: usize = 256;

/// Enrich → route → hand to receivers, in source order.
pub struct Pipeline {
    /// Cancelled after a drain timeout or a lost lease: stop dispatching at once.
    pub abort: CancellationToken,
    pub route: Route,
    pub cluster_name: Text,
    pub receivers: Receivers,
    pub tracker: Tracker,
    pub metrics: Metrics,
    pub dispatched: Arc<AtomicU64>,
}

impl Pipeline {
    pub async fn run(self, rx: mpsc::Receiver<Item>, enricher: Option<Arc<Enricher>>) {
        let mut targets = Targets::default();
        let completed = match enricher {
            // Nothing to look up (`omitLookup`): items go from the source's channel straight to
            // routing, without the ordered-concurrency machinery (a task allocated per item).
            None => self.drive_channel(rx, &mut targets).await,
            Some(enricher) => {
                let stream = tokio_stream_from(rx).map(move |item| {
                    let enricher = enricher.clone();
                    async move {
                        match item {
                            Item::Occurrence { event, position } => Item::Occurrence {
                                event: Box::new(enricher.enrich(*event).await),
                                position,
                            },
                            item => item,
                        }
                    }
                });
                self.drive(stream.buffered(ENRICH_CONCURRENCY), &mut targets)
                    .await
            }
        };
        if completed {
            // The source is done and everything it read is queued: let the workers drain and
            // exit.
            self.receivers.close();
        }
    }

    /// Without enrichment: the items already in the channel are taken at once (up to
    /// `RECV_BATCH`), then dispatched in order; false if aborted.
    async fn drive_channel<'a>(
        &'a self,
        mut rx: mpsc::Receiver<Item>,
        targets: &mut Targets<'a>,
    ) -> bool {
        let mut items = Vec::with_capacity(RECV_BATCH);
        // Registered once for the run, not once per turn (a lock and a waiter-list entry each).
        let mut aborted = std::pin::pin!(self.abort.cancelled());
        loop {
            // Items already queued are taken without polling the abort; only a wait for more
            // registers for it.
            let n = match rx.recv_many(&mut items, RECV_BATCH).now_or_never() {
                Some(n) => n,
                None => tokio::select! {
                    biased;
                    _ = &mut aborted => return false,
                    n = rx.recv_many(&mut items, RECV_BATCH) => n,
                },
            };
            // Checked once per batch, not per item: items that need no waiting are dispatched in
            // microseconds, and whatever is dispatched after an abort is dropped by the aborted
            // workers, unacknowledged. A queue closed after an abort is not completed either.
            if self.abort.is_cancelled() {
                return false;
            }
            if n == 0 {
                return true;
            }
            for item in items.drain(..) {
                if !self.dispatch_or_abort(item, targets).await {
                    return false;
                }
            }
        }
    }

    /// Dispatches every item of `items` in order; false if aborted.
    async fn drive<'a>(
        &'a self,
        items: impl futures::Stream<Item = Item>,
        targets: &mut Targets<'a>,
    ) -> bool {
        let mut items = std::pin::pin!(items);
        let mut aborted = std::pin::pin!(self.abort.cancelled());
        loop {
            let item = tokio::select! {
                biased;
                _ = &mut aborted => return false,
                item = items.next() => item,
            };
            let Some(item) = item else { return true };
            if self.abort.is_cancelled() || !self.dispatch_or_abort(item, targets).await {
                return false;
            }
        }
    }

    /// Dispatches one item (the caller has checked the abort); an abort while it waits for a
    /// full receiver queue drops it half-dispatched, and so its acks: the cursor stays before
    /// it. False if aborted. Most items need no waiting: those are dispatched without
    /// registering for the abort signal (a lock and a waiter list entry each time, in the
    /// profile).
    async fn dispatch_or_abort<'a>(&'a self, item: Item, targets: &mut Targets<'a>) -> bool {
        let mut dispatch = std::pin::pin!(self.dispatch(item, targets));
        if dispatch.as_mut().now_or_never().is_some() {
            return true;
        }
        tokio::select! {
            biased;
            _ = self.abort.cancelled() => false,
            _ = dispatch => true,
        }
    }

    async fn dispatch<'a>(&'a self, item: Item, targets: &mut Targets<'a>) {
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
        let mut names = std::mem::take(&mut targets.names);
        route::receivers_into(&self.route, &event, &mut names);
        let occ = Arc::new(Occurrence::new(event));
        for name in names.drain(..) {
            let Some((handle, routed)) = targets.get(self, name) else {
                // The config loader rejects routes to undefined receivers; this cannot happen.
                tracing::error!(receiver = %name, "route names an unknown receiver");
                continue;
            };
            routed.inc();
            handle
                .send(Delivery {
                    occ: occ.clone(),
                    ack: ticket.ack(),
                })
                .await;
        }
        ticket.release();
        targets.names = names;
    }
}

/// The receivers routed to so far, each with its `routed` counter: found once per run instead of
/// a map lookup and a label allocation per occurrence. A receiver's `routed` sample appears when
/// the first occurrence is routed to it, as before.
#[derive(Default)]
struct Targets<'a> {
    known: Vec<(&'a str, &'a ReceiverHandle, Counter)>,
    /// The receivers of the occurrence being dispatched: one list kept for the run rather than one
    /// allocated per occurrence.
    names: Vec<&'a str>,
}

impl<'a> Targets<'a> {
    fn get(&mut self, p: &'a Pipeline, name: &'a str) -> Option<(&'a ReceiverHandle, &Counter)> {
        let i = match self.known.iter().position(|(n, ..)| *n == name) {
            Some(i) => i,
            None => {
                let handle = p.receivers.get(name)?;
                let routed = p
                    .metrics
                    .routed
                    .get_or_create(&Metrics::receiver(name))
                    .clone();
                self.known.push((name, handle, routed));
                self.known.len() - 1
            }
        };
        let (_, handle, routed) = &self.known[i];
        Some((handle, routed))
    }
}

/// An mpsc receiver as a `Stream`.
fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
