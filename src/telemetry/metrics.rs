//! The metrics registry. One `Metrics` value is built at start and passed (cloned: every field is an
//! `Arc` inside) to each stage; nothing is global.

use std::sync::Arc;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
        info::Info,
    },
    registry::Registry,
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverLabel {
    pub receiver: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    /// ADDED, MODIFIED, DELETED, BOOKMARK, ERROR, LIST.
    pub r#type: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabel {
    pub cause: String,
}

type Counters<L> = Family<L, Counter>;

/// Every metric the exporter exposes. Names get the configured prefix (default `kube_event_exporter_`).
#[derive(Clone)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    /// Watch/list items received, by type.
    pub events_received: Counters<TypeLabel>,
    /// Occurrences exported to at least zero receivers after source filtering (new occurrences).
    pub occurrences: Counter,
    /// Items not exported by the source, by reason (too_old, not_new_occurrence, already_exported, deleted).
    pub events_filtered: Counters<ReasonLabel>,
    /// Watch frames that could not be decoded; skipped.
    pub malformed_frames: Counter,
    pub routed: Counters<ReceiverLabel>,
    pub sink_sent: Counters<ReceiverLabel>,
    pub sink_failed: Counters<ReceiverLabel>,
    pub sink_retried: Counters<ReceiverLabel>,
    pub sink_dropped: Counters<ReceiverLabel>,
    pub queue_depth: Family<ReceiverLabel, Gauge>,
    pub send_seconds: Family<ReceiverLabel, Histogram>,
    pub batch_size: Family<ReceiverLabel, Histogram>,
    pub is_leader: Gauge,
    pub leader_transitions: Counter,
    pub cursor_lag_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub takeover_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub watch_restarts: Counters<CauseLabel>,
    pub relists: Counter,
    pub possible_gaps: Counter,
    pub enrich_cache_hits: Counter,
    pub enrich_cache_misses: Counter,
    pub enrich_errors: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new("kube_event_exporter_")
    }
}

impl Metrics {
    /// `prefix` ends with `_` (validated by the config), e.g. `kube_event_exporter_`.
    pub fn new(prefix: &str) -> Self {
        let mut reg = Registry::with_prefix(prefix.trim_end_matches('_'));
        let m = Self {
            registry: Arc::new(Registry::default()),
            events_received: Family::default(),
            occurrences: Counter::default(),
            events_filtered: Family::default(),
            malformed_frames: Counter::default(),
            routed: Family::default(),
            sink_sent: Family::default(),
            sink_failed: Family::default(),
            sink_retried: Family::default(),
            sink_dropped: Family::default(),
            queue_depth: Family::default(),
            send_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            batch_size: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(1.0, 2.0, 12))
            }),
            is_leader: Gauge::default(),
            leader_transitions: Counter::default(),
            cursor_lag_seconds: Gauge::default(),
            takeover_seconds: Gauge::default(),
            watch_restarts: Family::default(),
            relists: Counter::default(),
            possible_gaps: Counter::default(),
            enrich_cache_hits: Counter::default(),
            enrich_cache_misses: Counter::default(),
            enrich_errors: Counter::default(),
        };
        reg.register(
            "events_received",
            "Watch and list items received, by type",
            m.events_received.clone(),
        );
        reg.register(
            "occurrences",
            "New event occurrences passed to routing",
            m.occurrences.clone(),
        );
        reg.register(
            "events_filtered",
            "Items the source did not export, by reason",
            m.events_filtered.clone(),
        );
        reg.register(
            "malformed_frames",
            "Watch frames or list items that could not be decoded",
            m.malformed_frames.clone(),
        );
        reg.register(
            "routed",
            "Occurrences routed to a receiver",
            m.routed.clone(),
        );
        reg.register(
            "sink_sent",
            "Occurrences delivered by a receiver",
            m.sink_sent.clone(),
        );
        reg.register(
            "sink_failed",
            "Occurrences a receiver failed permanently",
            m.sink_failed.clone(),
        );
        reg.register(
            "sink_retried",
            "Send attempts retried after a transient failure",
            m.sink_retried.clone(),
        );
        reg.register(
            "sink_dropped",
            "Occurrences dropped because the receiver queue was full (dropWhenFull)",
            m.sink_dropped.clone(),
        );
        reg.register(
            "queue_depth",
            "Occurrences waiting in a receiver queue",
            m.queue_depth.clone(),
        );
        reg.register(
            "send_seconds",
            "Duration of one send (batch) to a receiver",
            m.send_seconds.clone(),
        );
        reg.register("batch_size", "Occurrences per send", m.batch_size.clone());
        reg.register(
            "is_leader",
            "1 while this replica holds the Lease and exports",
            m.is_leader.clone(),
        );
        reg.register(
            "leader_transitions",
            "Times this replica acquired or lost the Lease",
            m.leader_transitions.clone(),
        );
        reg.register(
            "cursor_lag_seconds",
            "Age of the event at the delivery cursor",
            m.cursor_lag_seconds.clone(),
        );
        reg.register(
            "takeover_seconds",
            "Last takeover: from the previous holder's last Lease write to this replica's acquisition",
            m.takeover_seconds.clone(),
        );
        reg.register(
            "watch_restarts",
            "Watch restarts, by cause",
            m.watch_restarts.clone(),
        );
        reg.register(
            "relists",
            "Full lists of events (start, 410 Gone, stale watch)",
            m.relists.clone(),
        );
        reg.register(
            "possible_gaps",
            "Resumes where events may have been lost because history was gone",
            m.possible_gaps.clone(),
        );
        reg.register(
            "enrich_cache_hits",
            "Involved-object lookups answered from the cache",
            m.enrich_cache_hits.clone(),
        );
        reg.register(
            "enrich_cache_misses",
            "Involved-object lookups sent to the API server",
            m.enrich_cache_misses.clone(),
        );
        reg.register(
            "enrich_errors",
            "Involved-object lookups that failed (event exported without metadata)",
            m.enrich_errors.clone(),
        );
        reg.register(
            "build",
            "Build information",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                ("revision", env!("KEE_GIT_REVISION").to_string()),
            ]),
        );
        Self {
            registry: Arc::new(reg),
            ..m
        }
    }

    pub fn receiver(name: &str) -> ReceiverLabel {
        ReceiverLabel {
            receiver: name.to_string(),
        }
    }

    /// Prometheus/OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encoding into a String cannot fail");
        out
    }
}
