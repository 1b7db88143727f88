//! The metrics registry. One `Metrics` value is built at start and passed (cloned: every field is an
//! `Arc` inside) to each stage; nothing is global.

use std::sync::{Arc, OnceLock, RwLock};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
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

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabel {
    /// The shard's index (`leaderElection.shards`).
    pub shard: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceFailureLabels {
    /// `list` or `watch`.
    pub op: String,
    pub cause: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiRequestLabels {
    pub verb: String,
    pub resource: String,
    /// The HTTP status, or `none` when no answer came.
    pub code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    revision: String,
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
    /// Documents the destination already had (a replay answered 409 by Elasticsearch/OpenSearch).
    pub sink_already_delivered: Counters<ReceiverLabel>,
    /// Messages posted by the notification receivers (a Slack message or digest, a Teams card,
    /// an Opsgenie alert).
    pub sink_messages: Counters<ReceiverLabel>,
    /// Answers that asked to slow down (HTTP 429, Slack's `ratelimited`).
    pub sink_rate_limited: Counters<ReceiverLabel>,
    pub queue_depth: Family<ReceiverLabel, Gauge>,
    /// Requests (batches) being sent, across the receiver's lanes.
    pub sink_in_flight: Family<ReceiverLabel, Gauge>,
    pub send_seconds: Family<ReceiverLabel, Histogram>,
    pub batch_size: Family<ReceiverLabel, Histogram>,
    pub is_leader: Gauge,
    pub leader_transitions: Counter,
    pub cursor_lag_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub takeover_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub watch_restarts: Counters<CauseLabel>,
    pub relists: Counter,
    pub possible_gaps: Counter,
    /// List and watch requests that failed, by operation and cause.
    pub source_failures: Counters<SourceFailureLabels>,
    /// How long the source has gone without reading from the API server (0 while a watch is open).
    pub source_blind_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Requests to the Kubernetes API, by verb, resource and answer.
    pub api_requests: Counters<ApiRequestLabels>,
    pub enrich_cache_hits: Counter,
    pub enrich_cache_misses: Counter,
    pub enrich_errors: Counter,
    /// Sharded (`leaderElection.shards` > 1): shards this replica holds, shards it gave up to
    /// rebalance, each held shard's lag, and whether the server filters each shard's events.
    pub shards_held: Gauge,
    pub rebalances: Counter,
    pub shard_cursor_lag_seconds: Family<ShardLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub source_server_sharded: Family<ShardLabel, Gauge>,
    /// Per held shard: (lag, blind) seconds; the unlabelled gauges show the worst of them.
    shard_lags: Arc<std::sync::Mutex<std::collections::BTreeMap<u32, (f64, f64)>>>,
    /// Handles resolved on first use, for counts made per frame or per occurrence (a label
    /// `String` allocated and hashed each time showed in the benchmark profile). A sample still
    /// appears when first counted, as before.
    resolved: Arc<Resolved>,
}

/// The watch types and filter reasons the source counts.
const RECEIVED_TYPES: [&str; 6] = ["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR", "LIST"];
const FILTER_REASONS: [&str; 5] = [
    "too_old",
    "not_new_occurrence",
    "already_exported",
    "deleted",
    "other_shard",
];
/// The `cause` labels of `watch_restarts_total` (`source::phase::Cause`).
pub const RESTART_CAUSES: [&str; 5] = ["closed", "expired", "stale", "empty", "error"];
/// The `op` and `cause` labels of `source_failures_total` (`source::SourceError::cause`).
pub const SOURCE_OPS: [&str; 2] = ["list", "watch"];
pub const SOURCE_FAILURE_CAUSES: [&str; 10] = [
    "unauthorized",
    "forbidden",
    "not_found",
    "throttled",
    "server_error",
    "rejected",
    "transport",
    "malformed",
    "broken",
    "request",
];

#[derive(Default)]
struct Resolved {
    received: [OnceLock<Counter>; RECEIVED_TYPES.len()],
    filtered: [OnceLock<Counter>; FILTER_REASONS.len()],
    queue_depth: RwLock<Vec<(Arc<str>, Gauge)>>,
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
            sink_already_delivered: Family::default(),
            sink_messages: Family::default(),
            sink_rate_limited: Family::default(),
            queue_depth: Family::default(),
            sink_in_flight: Family::default(),
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
            source_failures: Family::default(),
            source_blind_seconds: Gauge::default(),
            api_requests: Family::default(),
            enrich_cache_hits: Counter::default(),
            enrich_cache_misses: Counter::default(),
            enrich_errors: Counter::default(),
            shards_held: Gauge::default(),
            rebalances: Counter::default(),
            shard_cursor_lag_seconds: Family::default(),
            source_server_sharded: Family::default(),
            shard_lags: Arc::default(),
            resolved: Arc::default(),
        };
        reg.register(
            "shards_held",
            "Shards of the event stream this replica holds and exports (leaderElection.shards)",
            m.shards_held.clone(),
        );
        reg.register(
            "shard_rebalances",
            "Shards this replica handed over so that every replica holds its share",
            m.rebalances.clone(),
        );
        reg.register(
            "shard_cursor_lag_seconds",
            "cursor_lag_seconds of each shard this replica holds",
            m.shard_cursor_lag_seconds.clone(),
        );
        reg.register(
            "source_server_sharded",
            "1 when the API server applied the shard's shardSelector at its last list (KEP-5866), 0 when this replica filters locally",
            m.source_server_sharded.clone(),
        );
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
            "sink_already_delivered",
            "Occurrences the destination already had (a replay deduplicated by document id)",
            m.sink_already_delivered.clone(),
        );
        reg.register(
            "sink_messages",
            "Messages a notification receiver posted (Slack message or digest, Teams card, Opsgenie alert)",
            m.sink_messages.clone(),
        );
        reg.register(
            "sink_rate_limited",
            "Answers that asked a receiver to slow down (HTTP 429, Slack's ratelimited)",
            m.sink_rate_limited.clone(),
        );
        reg.register(
            "queue_depth",
            "Occurrences waiting in a receiver queue",
            m.queue_depth.clone(),
        );
        reg.register(
            "sink_in_flight",
            "Requests (batches) a receiver is sending now, across its lanes (at most its concurrency)",
            m.sink_in_flight.clone(),
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
            "Complete lists of events (start, 410 Gone, stale watch)",
            m.relists.clone(),
        );
        reg.register(
            "possible_gaps",
            "Relists after lost watch history that may have missed events (expired before they were read, or repeats collapsed)",
            m.possible_gaps.clone(),
        );
        reg.register(
            "source_failures",
            "List and watch requests for events that failed, by operation and cause",
            m.source_failures.clone(),
        );
        reg.register(
            "api_requests",
            "Requests to the Kubernetes API, by verb, resource and HTTP status (none: no answer)",
            m.api_requests.clone(),
        );
        reg.register(
            "source_blind_seconds",
            "How long the event source has gone without reading from the API server (0 while a watch is open)",
            m.source_blind_seconds.clone(),
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
        // The usual `*_build_info` gauge (always 1) rather than an OpenMetrics `info` metric, which
        // the Prometheus text format and promtool do not know.
        let build_info: Family<BuildLabels, Gauge> = Family::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
                revision: env!("KEE_GIT_REVISION").to_string(),
            })
            .set(1);
        reg.register(
            "build_info",
            "Build information: version and git revision (always 1)",
            build_info,
        );
        // Every fixed label exists from the start, at 0: `rate()` and `increase()` over a series
        // that appears only at its first increment miss that increment, and an alert over a sum
        // of two such series has no series at all until both moved.
        for t in RECEIVED_TYPES {
            let _ = m
                .events_received
                .get_or_create(&TypeLabel { r#type: t.into() });
        }
        for r in FILTER_REASONS {
            let _ = m
                .events_filtered
                .get_or_create(&ReasonLabel { reason: r.into() });
        }
        for c in RESTART_CAUSES {
            let _ = m
                .watch_restarts
                .get_or_create(&CauseLabel { cause: c.into() });
        }
        for op in SOURCE_OPS {
            for cause in SOURCE_FAILURE_CAUSES {
                let _ = m.source_failures.get_or_create(&SourceFailureLabels {
                    op: op.into(),
                    cause: cause.into(),
                });
            }
        }
        Self {
            registry: Arc::new(reg),
            ..m
        }
    }

    /// Creates every per-receiver series at 0 (counters, queue depth, histograms), so that each
    /// receiver's series exist before its first delivery, failure or drop: an alert such as
    /// `rate(sink_failed_total) + rate(sink_dropped_total)` can only fire over series that exist.
    /// Whether the server applied shard `index`'s selector at its last list.
    pub fn set_server_sharded(&self, index: u32, served: bool) {
        self.source_server_sharded
            .get_or_create(&shard_label(index))
            .set(i64::from(served));
    }

    /// A held shard's lag and blind time (None: the shard is no longer held); the unlabelled
    /// `cursor_lag_seconds` and `source_blind_seconds` then read the worst of the held shards.
    pub fn set_shard_lag(&self, index: u32, lag_blind: Option<(f64, f64)>) {
        let mut lags = self.shard_lags.lock().expect("shard lags lock");
        let gauge = self
            .shard_cursor_lag_seconds
            .get_or_create(&shard_label(index));
        match lag_blind {
            Some(v) => {
                lags.insert(index, v);
                gauge.set(v.0);
            }
            None => {
                lags.remove(&index);
                gauge.set(0.0);
                // Said of held shards only: a released one's answer is the next holder's to give.
                self.source_server_sharded.remove(&shard_label(index));
            }
        }
        let worst = lags
            .values()
            .fold((0.0f64, 0.0f64), |w, v| (w.0.max(v.0), w.1.max(v.1)));
        self.cursor_lag_seconds.set(worst.0);
        self.source_blind_seconds.set(worst.1);
    }

    pub fn init_receiver(&self, receiver: &str) {
        let r = Metrics::receiver(receiver);
        for f in self.receiver_counters() {
            let _ = f.get_or_create(&r);
        }
        let _ = self.queue_depth.get_or_create(&r);
        let _ = self.sink_in_flight.get_or_create(&r);
        let _ = self.send_seconds.get_or_create(&r);
        let _ = self.batch_size.get_or_create(&r);
    }

    /// A receiver's `routed`, `sink_sent`, `sink_failed` and `sink_dropped` counts.
    pub fn receiver_counts(&self, receiver: &str) -> [u64; 4] {
        let r = Metrics::receiver(receiver);
        [
            &self.routed,
            &self.sink_sent,
            &self.sink_failed,
            &self.sink_dropped,
        ]
        .map(|f| f.get_or_create(&r).get())
    }

    /// Every counter family labelled by receiver.
    fn receiver_counters(&self) -> [&Counters<ReceiverLabel>; 8] {
        [
            &self.routed,
            &self.sink_sent,
            &self.sink_failed,
            &self.sink_retried,
            &self.sink_dropped,
            &self.sink_already_delivered,
            &self.sink_messages,
            &self.sink_rate_limited,
        ]
    }

    /// `api_requests_total{verb, resource, code}` + 1.
    pub fn count_api_request(&self, verb: &str, resource: &str, code: &str) {
        self.api_requests
            .get_or_create(&ApiRequestLabels {
                verb: verb.into(),
                resource: resource.into(),
                code: code.into(),
            })
            .inc();
    }

    /// `source_failures_total{op, cause}` + 1.
    pub fn count_source_failure(&self, op: &str, cause: &str) {
        self.source_failures
            .get_or_create(&SourceFailureLabels {
                op: op.into(),
                cause: cause.into(),
            })
            .inc();
    }

    /// `events_received{type}` + 1.
    pub fn count_received(&self, type_: &str) {
        let resolve = || {
            self.events_received
                .get_or_create(&TypeLabel {
                    r#type: type_.to_string(),
                })
                .clone()
        };
        match RECEIVED_TYPES.iter().position(|t| *t == type_) {
            Some(i) => self.resolved.received[i].get_or_init(resolve).inc(),
            None => resolve().inc(),
        };
    }

    /// `events_filtered{reason}` + 1.
    pub fn count_filtered(&self, reason: &str) {
        let resolve = || {
            self.events_filtered
                .get_or_create(&ReasonLabel {
                    reason: reason.to_string(),
                })
                .clone()
        };
        match FILTER_REASONS.iter().position(|r| *r == reason) {
            Some(i) => self.resolved.filtered[i].get_or_init(resolve).inc(),
            None => resolve().inc(),
        };
    }

    /// `queue_depth{receiver}`, the receiver's gauge resolved once.
    pub fn queue_depth_of(&self, receiver: &str) -> Gauge {
        let known = self.resolved.queue_depth.read().expect("metrics lock");
        if let Some((_, g)) = known.iter().find(|(name, _)| &**name == receiver) {
            return g.clone();
        }
        drop(known);
        let gauge = self
            .queue_depth
            .get_or_create(&Metrics::receiver(receiver))
            .clone();
        let mut known = self.resolved.queue_depth.write().expect("metrics lock");
        if !known.iter().any(|(name, _)| &**name == receiver) {
            known.push((receiver.into(), gauge.clone()));
        }
        gauge
    }

    pub fn receiver(name: &str) -> ReceiverLabel {
        ReceiverLabel {
            receiver: name.to_string(),
        }
    }

    /// OpenMetrics text of every metric (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encoding into a String cannot fail");
        out
    }

    /// Puts one sample in every labelled family, so that each is exposed: what the docs test and
    /// promtool's lint need to see every family a busy exporter serves.
    pub fn sample_every_family(&self, receiver: &str) {
        let r = Metrics::receiver(receiver);
        self.events_received
            .get_or_create(&TypeLabel {
                r#type: "ADDED".into(),
            })
            .inc();
        self.events_filtered
            .get_or_create(&ReasonLabel {
                reason: "too_old".into(),
            })
            .inc();
        self.watch_restarts
            .get_or_create(&CauseLabel {
                cause: "closed".into(),
            })
            .inc();
        self.count_api_request("watch", "events", "200");
        for f in self.receiver_counters() {
            f.get_or_create(&r).inc();
        }
        self.queue_depth.get_or_create(&r).set(1);
        self.sink_in_flight.get_or_create(&r).set(1);
        self.send_seconds.get_or_create(&r).observe(0.1);
        self.batch_size.get_or_create(&r).observe(1.0);
        self.set_shard_lag(0, Some((1.0, 0.0)));
        self.set_server_sharded(0, true);
    }

    /// The Prometheus text format (version 0.0.4) of every metric, for scrapers that ask for it
    /// (and `promtool check metrics`).
    pub fn encode_prometheus(&self) -> String {
        openmetrics_to_prometheus(&self.encode())
    }
}

/// Rewrites prometheus-client's OpenMetrics text as Prometheus text 0.0.4. The two differ, for
/// what we expose, in three ways: a counter family is named without `_total` in OpenMetrics and
/// with it (as its samples) in Prometheus text; `# UNIT` and `# EOF` do not exist in Prometheus
/// text; and samples may carry exemplars (` # {…} value`), which it cannot express. OpenMetrics
/// types without a Prometheus equivalent become `untyped`.
fn openmetrics_to_prometheus(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // A `# HELP` line waits for its `# TYPE` line, which decides the family's name.
    let mut help: Option<(&str, &str)> = None;
    let flush = |out: &mut String, help: &mut Option<(&str, &str)>| {
        if let Some((name, text)) = help.take() {
            out.push_str(&format!("# HELP {name} {text}\n"));
        }
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            flush(&mut out, &mut help);
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (family, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (name, kind) = match kind {
                "counter" => (format!("{family}_total"), "counter"),
                "gauge" | "histogram" | "summary" => (family.to_string(), kind),
                _ => (family.to_string(), "untyped"),
            };
            if let Some((h, text)) = help
                && h == family
            {
                out.push_str(&format!("# HELP {name} {text}\n"));
                help = None;
            }
            flush(&mut out, &mut help);
            out.push_str(&format!("# TYPE {name} {kind}\n"));
        } else if line.starts_with('#') {
            // `# UNIT`, `# EOF`.
            flush(&mut out, &mut help);
        } else if !line.is_empty() {
            flush(&mut out, &mut help);
            let sample = line.split_once(" # ").map_or(line, |(s, _)| s);
            out.push_str(sample);
            out.push('\n');
        }
    }
    flush(&mut out, &mut help);
    out
}

fn shard_label(index: u32) -> ShardLabel {
    ShardLabel {
        shard: index.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_handles_count_into_their_families() {
        let m = Metrics::default();
        m.count_received("ADDED");
        m.count_received("ADDED");
        m.count_received("SURPRISE");
        m.count_filtered("deleted");
        m.count_filtered("other");
        m.queue_depth_of("a").inc();
        m.queue_depth_of("a").inc();
        m.queue_depth_of("b").dec();
        let text = m.encode();
        for sample in [
            "events_received_total{type=\"ADDED\"} 2",
            "events_received_total{type=\"SURPRISE\"} 1",
            "events_filtered_total{reason=\"deleted\"} 1",
            "events_filtered_total{reason=\"other\"} 1",
            "queue_depth{receiver=\"a\"} 2",
            "queue_depth{receiver=\"b\"} -1",
        ] {
            assert!(text.contains(sample), "{sample} in {text}");
        }
        m.queue_depth.get_or_create(&Metrics::receiver("a")).dec();
        assert_eq!(m.queue_depth_of("a").get(), 1);
    }

    #[test]
    fn every_fixed_label_and_every_receiver_series_exists_at_zero() {
        let m = Metrics::default();
        m.init_receiver("archive");
        let text = m.encode_prometheus();
        for sample in [
            "kube_event_exporter_events_received_total{type=\"MODIFIED\"} 0",
            "kube_event_exporter_events_filtered_total{reason=\"too_old\"} 0",
            "kube_event_exporter_watch_restarts_total{cause=\"expired\"} 0",
            "kube_event_exporter_source_failures_total{op=\"list\",cause=\"forbidden\"} 0",
            "kube_event_exporter_source_failures_total{op=\"watch\",cause=\"transport\"} 0",
            "kube_event_exporter_possible_gaps_total 0",
            "kube_event_exporter_source_blind_seconds 0.0",
            "kube_event_exporter_routed_total{receiver=\"archive\"} 0",
            "kube_event_exporter_sink_sent_total{receiver=\"archive\"} 0",
            "kube_event_exporter_sink_failed_total{receiver=\"archive\"} 0",
            "kube_event_exporter_sink_dropped_total{receiver=\"archive\"} 0",
            "kube_event_exporter_sink_retried_total{receiver=\"archive\"} 0",
            "kube_event_exporter_sink_already_delivered_total{receiver=\"archive\"} 0",
            "kube_event_exporter_queue_depth{receiver=\"archive\"} 0",
            "kube_event_exporter_sink_in_flight{receiver=\"archive\"} 0",
            "kube_event_exporter_send_seconds_count{receiver=\"archive\"} 0",
        ] {
            assert!(
                text.contains(&format!("{sample}\n")),
                "{sample} in:\n{text}"
            );
        }
    }

    #[test]
    fn prometheus_text_names_counter_families_as_their_samples_and_has_no_eof() {
        let m = Metrics::default();
        m.relists.inc();
        m.sink_sent
            .get_or_create(&Metrics::receiver("dump"))
            .inc_by(3);
        m.send_seconds
            .get_or_create(&Metrics::receiver("dump"))
            .observe(0.01);
        let text = m.encode_prometheus();
        assert!(
            text.contains("# TYPE kube_event_exporter_relists_total counter\n")
                && text.contains("# HELP kube_event_exporter_relists_total ")
                && text.contains("\nkube_event_exporter_relists_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("kube_event_exporter_sink_sent_total{receiver=\"dump\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE kube_event_exporter_send_seconds histogram\n")
                && text.contains(
                    "kube_event_exporter_send_seconds_bucket{le=\"+Inf\",receiver=\"dump\"} 1\n"
                ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE kube_event_exporter_build_info gauge\n"),
            "{text}"
        );
        let build = text
            .lines()
            .find(|l| l.starts_with("kube_event_exporter_build_info{"))
            .unwrap_or_else(|| panic!("no build_info sample:\n{text}"));
        assert!(
            build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
                && build.contains("revision=\"")
                && build.ends_with("} 1"),
            "{build}"
        );
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        assert!(!text.contains(" info\n"), "{text}");
        // Every sample belongs to the family declared before it.
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap().to_string();
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|b| *b == family)
                    .unwrap_or(name);
                assert_eq!(base, family, "{line}");
            }
        }
    }

    /// What promtool thinks of the Prometheus text of every metric, each with a sample; `None`
    /// when promtool is not installed (`.ci/run` installs it and checks a live exporter too).
    fn promtool(text: &str) -> Option<(bool, String)> {
        use std::io::Write;
        let mut child = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        child.stdin.take()?.write_all(text.as_bytes()).ok()?;
        let out = child.wait_with_output().ok()?;
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Some((out.status.success(), report))
    }

    #[test]
    fn promtool_accepts_the_prometheus_text() {
        let m = Metrics::default();
        m.sample_every_family("dump");
        let text = m.encode_prometheus();
        match promtool(&text) {
            Some((ok, report)) => assert!(ok, "promtool check metrics:\n{report}\n{text}"),
            None => eprintln!("promtool not installed: skipped (apt-get install prometheus)"),
        }
    }

    #[test]
    fn exemplars_units_and_unknown_types_are_translated() {
        let om = "# HELP a_seconds A.\n# TYPE a_seconds counter\n# UNIT a_seconds seconds\na_seconds_total 2 # {trace_id=\"x\"} 1\n# HELP s State.\n# TYPE s stateset\ns{s=\"x\"} 1\n# EOF\n";
        assert_eq!(
            openmetrics_to_prometheus(om),
            "# HELP a_seconds_total A.\n# TYPE a_seconds_total counter\na_seconds_total 2\n# HELP s State.\n# TYPE s untyped\ns{s=\"x\"} 1\n"
        );
    }
}
