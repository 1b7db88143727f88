//! Wiring of the stages for one exporting run:
//!
//! ```text
//! Source ──Item──► enrich (bounded concurrency, order kept) ──► route ──Delivery──► Receivers
//!                                                        progress::Tracker ◄──ack──┘
//! ```
//!
//! `Exporter::start` spawns the stages on a `TaskTracker`; `Exporter::shutdown` stops the source,
//! lets everything already read drain through the sinks (bounded by the drain timeout), and joins
//! every task. The delivery cursor is `tracker().cursor()`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::config::{Config, Route};
use crate::enrich::Enricher;
use crate::progress::{Cursor, Tracker};
use crate::route;
use crate::sink::{Delivery, Receivers};
use crate::source::{Item, Source, SourceConfig, Start, event::Occurrence};
use crate::telemetry::{Health, Metrics};

/// Lookups in flight at once; order of delivery is preserved regardless.
const ENRICH_CONCURRENCY: usize = 16;
/// Items buffered between the source and enrichment.
const SOURCE_BUFFER: usize = 1024;

/// What every stage of a run shares: metrics, health, the task tracker everything is spawned on,
/// and the token that aborts delivery (after a drain timeout).
#[derive(Clone)]
pub struct Handles {
    pub metrics: Metrics,
    pub health: Health,
    pub tasks: TaskTracker,
    pub abort: CancellationToken,
}

pub struct Exporter {
    tasks: TaskTracker,
    stop_source: CancellationToken,
    abort: CancellationToken,
    tracker: Tracker,
    pipeline_done: tokio::sync::oneshot::Receiver<()>,
    /// Occurrences the source handed on, and those the pipeline registered for delivery: the
    /// difference was read but never reached a receiver (an aborted drain).
    emitted: Arc<AtomicU64>,
    dispatched: Arc<AtomicU64>,
}

/// How a shutdown went.
#[derive(Debug, Clone, PartialEq)]
pub struct DrainReport {
    /// Everything read from the API was delivered (or deliberately not: filtered, dropped, failed).
    pub drained: bool,
    pub cursor: Cursor,
    /// Items still not complete (only when `drained` is false).
    pub in_flight: usize,
    /// Of those, occurrences that some receiver never acknowledged.
    pub undelivered: usize,
}

impl Exporter {
    /// Starts exporting. `receivers` are already started (their workers run on `tasks` too).
    pub fn start(
        config: &Config,
        client: kube::Client,
        receivers: Receivers,
        start: Start,
        handles: Handles,
    ) -> Self {
        let Handles {
            metrics,
            health,
            tasks,
            abort,
        } = handles;
        let tracker = Tracker::new(match &start {
            Start::Resume(p) => Some(p.clone()),
            Start::Cold => None,
        });
        let source_cfg = SourceConfig {
            namespace: config.namespace.clone(),
            max_event_age: config.max_event_age,
            ..SourceConfig::default()
        };
        let enricher = (!config.omit_lookup).then(|| {
            Arc::new(Enricher::new(
                client.clone(),
                config.cache_size,
                config.kube_qps,
                config.kube_burst,
                metrics.clone(),
            ))
        });
        let (tx, rx) = mpsc::channel(SOURCE_BUFFER);
        let stop_source = CancellationToken::new();
        let (emitted, dispatched) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let source =
            Source::new(client, source_cfg, metrics.clone(), health).count_emitted(emitted.clone());
        let source_stop = stop_source.clone();
        tasks.spawn(async move {
            if let Err(e) = source.run(start, tx, source_stop).await {
                tracing::error!(error = %e, "event source stopped");
            }
        });
        tasks.spawn(report_lag(tracker.clone(), metrics.clone(), abort.clone()));
        let (done_tx, pipeline_done) = tokio::sync::oneshot::channel();
        let pipeline = Pipeline {
            abort: abort.clone(),
            route: config.route.clone(),
            cluster_name: config.cluster_name.clone(),
            receivers,
            tracker: tracker.clone(),
            metrics,
            dispatched: dispatched.clone(),
        };
        tasks.spawn(async move {
            pipeline.run(rx, enricher).await;
            let _ = done_tx.send(());
        });
        Self {
            tasks,
            stop_source,
            abort,
            tracker,
            pipeline_done,
            emitted,
            dispatched,
        }
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// Stops reading from the API, drains what was read through the sinks within `drain_timeout`,
    /// then aborts whatever is left (its acks are dropped, so the cursor stays before it) and joins
    /// every task.
    pub async fn shutdown(mut self, drain_timeout: Duration) -> DrainReport {
        self.stop_source.cancel();
        let drained = tokio::time::timeout(drain_timeout, async {
            let _ = (&mut self.pipeline_done).await;
            self.tracker.wait_idle().await;
        })
        .await
        .is_ok();
        if !drained {
            tracing::warn!(
                in_flight = self.tracker.in_flight(),
                "drain timed out; aborting undelivered occurrences"
            );
        }
        self.abort.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        DrainReport {
            drained,
            cursor: self.tracker.cursor(),
            in_flight: self.tracker.in_flight(),
            undelivered: self.tracker.undelivered()
                + self
                    .emitted
                    .load(Ordering::Relaxed)
                    .saturating_sub(self.dispatched.load(Ordering::Relaxed))
                    as usize,
        }
    }
}

/// Enrich → route → hand to receivers, in source order.
struct Pipeline {
    /// Cancelled after a drain timeout or a lost lease: stop dispatching at once.
    abort: CancellationToken,
    route: Route,
    cluster_name: String,
    receivers: Receivers,
    tracker: Tracker,
    metrics: Metrics,
    dispatched: Arc<AtomicU64>,
}

impl Pipeline {
    async fn run(self, rx: mpsc::Receiver<Item>, enricher: Option<Arc<Enricher>>) {
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

/// Keeps `cursor_lag_seconds` at the age of the oldest occurrence not yet acknowledged by every
/// receiver (0 when nothing is owed), until the run is aborted at the end of its shutdown.
async fn report_lag(tracker: Tracker, metrics: Metrics, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        metrics
            .cursor_lag_seconds
            .set(tracker.oldest_pending_age().as_secs_f64());
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
    }
    metrics.cursor_lag_seconds.set(0.0);
}

/// An mpsc receiver as a `Stream`.
fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
