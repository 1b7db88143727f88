//! Wiring of the stages for one exporting run:
//!
//! ```text
//! Source ──Item──► enrich (bounded concurrency, order kept) ──► route ──Delivery──► Receivers
//!                                                        progress::Tracker ◄──ack──┘
//! ```
//!
//! `Exporter::start` starts the receivers and spawns the stages on a [`Scope`] of the process-wide
//! tasks. Its end is made of the steps the shutdown coordinator (`shutdown::coordinate`) puts in
//! order: `stop_reading`, `drain`, `join` — or `abort` when the lease is lost. The delivery cursor
//! is `tracker().cursor()`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::enrich::Enricher;
use crate::progress::{Cursor, Tracker};
use crate::shard::Shard;
use crate::sink::{Receivers, SinkError};
use crate::source::{Reading, Source, SourceConfig, Start};
use crate::tasks::{Scope, Tasks};
use crate::telemetry::{Health, Metrics};

/// Items buffered between the source and enrichment.
const SOURCE_BUFFER: usize = 1024;

/// What a run shares with the rest of the process: metrics, health, and the tasks everything is
/// spawned on.
#[derive(Clone)]
pub struct Handles {
    pub metrics: Metrics,
    pub health: Health,
    pub tasks: Tasks,
}

pub struct Exporter {
    tasks: Scope,
    stop_source: CancellationToken,
    /// Aborts delivery: sinks drop what they hold unacknowledged, the pipeline stops.
    abort: CancellationToken,
    tracker: Tracker,
    pipeline_done: tokio::sync::oneshot::Receiver<()>,
    /// Occurrences the source handed on, and those the pipeline registered for delivery: the
    /// difference was read but never reached a receiver (an aborted drain).
    emitted: Arc<AtomicU64>,
    dispatched: Arc<AtomicU64>,
    /// The receivers' names and the counters their totals are read from.
    receivers: Vec<String>,
    metrics: Metrics,
}

/// What one receiver did in this process, for the line a shutdown logs per receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverTotals {
    pub receiver: String,
    /// Delivered (including what the destination already had).
    pub sent: u64,
    /// Failed for good (counted, logged, not retried).
    pub failed: u64,
    /// Dropped because the queue was full (`dropWhenFull`).
    pub dropped: u64,
    /// Routed to it but neither sent, failed nor dropped: what a successor replays.
    pub pending: u64,
}

/// How a drain went.
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
    /// Starts the receivers, then exporting from `start`. A receiver that cannot start fails here,
    /// with nothing left running.
    pub async fn start(
        config: &Config,
        client: kube::Client,
        start: Start,
        handles: Handles,
    ) -> Result<Self, SinkError> {
        Self::start_shard(config, client, start, handles, None).await
    }

    /// As [`Exporter::start`], for one shard of the event stream (None: all of it).
    pub async fn start_shard(
        config: &Config,
        client: kube::Client,
        start: Start,
        handles: Handles,
        shard: Option<Shard>,
    ) -> Result<Self, SinkError> {
        let Handles {
            metrics,
            health,
            tasks,
        } = handles;
        let tasks = tasks.scope();
        let abort = CancellationToken::new();
        let receivers =
            Receivers::start(&config.receivers, &metrics, tasks.tracker(), abort.clone()).await?;
        let tracker = Tracker::new(match &start {
            Start::Resume(p) => Some(p.clone()),
            Start::Cold => None,
        });
        let source_cfg = SourceConfig {
            namespace: config.namespace.clone(),
            max_event_age: config.max_event_age,
            event_ttl: config.event_ttl,
            shard,
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
        let reading = Reading::new();
        let source = Source::new(client, source_cfg, metrics.clone(), health)
            .count_emitted(emitted.clone())
            .report_reading(reading.clone())
            .abort_on(abort.clone());
        let source_stop = stop_source.clone();
        tasks.tracker().spawn(async move {
            if let Err(e) = source.run(start, tx, source_stop).await {
                tracing::error!(error = %e, "event source stopped");
            }
        });
        tasks.tracker().spawn(report_lag(
            tracker.clone(),
            reading,
            metrics.clone(),
            shard,
            abort.clone(),
        ));
        let (done_tx, pipeline_done) = tokio::sync::oneshot::channel();
        let names = config.receivers.iter().map(|r| r.name.clone()).collect();
        let totals_from = metrics.clone();
        let pipeline = crate::pipeline::Pipeline {
            abort: abort.clone(),
            route: config.route.clone(),
            cluster_name: config.cluster_name.as_str().into(),
            receivers,
            tracker: tracker.clone(),
            metrics,
            dispatched: dispatched.clone(),
        };
        tasks.tracker().spawn(async move {
            pipeline.run(rx, enricher).await;
            let _ = done_tx.send(());
        });
        Ok(Self {
            tasks,
            stop_source,
            abort,
            tracker,
            pipeline_done,
            emitted,
            dispatched,
            receivers: names,
            metrics: totals_from,
        })
    }

    /// Each receiver's totals in this process (its counters: they start with the process).
    pub fn receiver_totals(&self) -> Vec<ReceiverTotals> {
        self.receivers
            .iter()
            .map(|name| {
                let [routed, sent, failed, dropped] = self.metrics.receiver_counts(name);
                ReceiverTotals {
                    receiver: name.clone(),
                    sent,
                    failed,
                    dropped,
                    pending: routed.saturating_sub(sent + failed + dropped),
                }
            })
            .collect()
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// Stops reading from the API: what was read still goes through the sinks. A list under way
    /// is read to its end first (its checkpoint is where the cursor can move), within the drain.
    pub fn stop_reading(&self) {
        self.stop_source.cancel();
    }

    /// Waits until everything read was delivered (the pipeline ended after `stop_reading` and every
    /// occurrence is acknowledged), for at most `timeout`. Then whatever is left is aborted (its
    /// acks are dropped, so the cursor stays before it) and its tasks have stopped when this
    /// returns, so the report counts what they did not deliver.
    pub async fn drain(&mut self, timeout: Duration) -> DrainReport {
        let drained = tokio::time::timeout(timeout, async {
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
            self.abort.cancel();
            self.tasks.join().await;
        }
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

    /// After `drain`: stops what still runs (the lag reporter; nothing is left to deliver) and waits
    /// for every task of the run.
    pub async fn join(self) {
        self.abort.cancel();
        self.tasks.join().await;
    }

    /// Stops at once (a lost lease): nothing more is read or delivered, nothing in flight is
    /// acknowledged; returns when every task of the run has stopped.
    pub async fn abort(self) {
        self.stop_source.cancel();
        self.abort.cancel();
        self.tasks.join().await;
    }
}

/// Keeps `source_blind_seconds` at how long the source has gone without reading from the API
/// server, and `cursor_lag_seconds` at what is owed: the age of the oldest occurrence not yet
/// acknowledged by every receiver, or, when longer, the time the source has been blind (a leader
/// that cannot read owes everything written meanwhile, so its lag must not read 0). Until the
/// run is aborted at the end of its shutdown.
/// A shard's run reports per shard; the process-wide gauges read the worst shard.
async fn report_lag(
    tracker: Tracker,
    reading: Reading,
    metrics: Metrics,
    shard: Option<Shard>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let set = |lag_blind: Option<(f64, f64)>| match shard {
        Some(s) => metrics.set_shard_lag(s.index, lag_blind),
        None => {
            let (lag, blind) = lag_blind.unwrap_or_default();
            metrics.cursor_lag_seconds.set(lag);
            metrics.source_blind_seconds.set(blind);
        }
    };
    loop {
        let blind = reading.blind_for();
        let owed = tracker.oldest_pending_age().max(blind);
        set(Some((owed.as_secs_f64(), blind.as_secs_f64())));
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
    }
    set(None);
}
