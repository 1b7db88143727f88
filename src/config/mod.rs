//! Configuration: the typed result of loading a resmoio-compatible `config.yaml`.
//!
//! The types here are what the rest of the exporter consumes. Loading lives in the sibling
//! modules: `node` (YAML to a generic tree with line numbers), `schema` (typed getters that collect
//! errors with their YAML path), `load` (the schema itself: keys, defaults, cross-checks), `env`
//! (`${VAR}`), `duration` (Go syntax), `error` (`ConfigErrors`), `summary` (`check-config` output).

use std::{collections::BTreeMap, time::Duration};

use crate::sink::SinkConfig;

/// The whole, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    /// Only applies to what the initial list returns, never to live watch events.
    pub max_event_age: Duration,
    pub cluster_name: String,
    /// Empty: all namespaces.
    pub namespace: Option<String>,
    pub leader_election: LeaderElectionConfig,
    pub route: Route,
    pub receivers: Vec<ReceiverConfig>,
    pub kube_qps: f32,
    pub kube_burst: u32,
    /// Prefix of every metric name, e.g. `kube_event_exporter_`.
    pub metrics_name_prefix: String,
    pub omit_lookup: bool,
    /// Size of the involved-object metadata cache.
    pub cache_size: usize,
    /// How long the API server keeps events (its `--event-ttl`): decides when lost watch history
    /// can have cost events (a possible gap).
    pub event_ttl: Duration,
    /// What the loader found worth a warning (`$VAR` without braces that resmoio would have
    /// replaced, `logLevel: disabled`): part of `warnings()`.
    pub load_warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
    /// resmoio's `disabled` (zerolog's): no log line at all.
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable text (resmoio's `pretty`); always on stderr.
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LeaderElectionConfig {
    pub enabled: bool,
    /// Shards of the event stream, each with its own Lease (`crate::shard`); 1: one Lease.
    pub shards: u32,
    pub lease_name: String,
    /// None: service-account namespace, else `$POD_NAMESPACE`, else `default` (resolved at start).
    pub lease_namespace: Option<String>,
    /// None: `$POD_NAME`, else hostname plus a random suffix (resolved at start).
    pub identity: Option<String>,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
    pub shutdown_linger: Duration,
    pub drain_timeout: Duration,
}

/// A node of the routing tree (resmoio semantics, see `crate::route`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Route {
    pub drop: Vec<Rule>,
    pub match_: Vec<Rule>,
    pub routes: Vec<Route>,
}

/// One rule. Every set field must match (AND); regexes are unanchored, as Go's `MatchString`.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    pub labels: BTreeMap<String, Regex>,
    pub annotations: BTreeMap<String, Regex>,
    pub message: Option<Regex>,
    pub api_version: Option<Regex>,
    pub kind: Option<Regex>,
    pub namespace: Option<Regex>,
    pub reason: Option<Regex>,
    pub type_: Option<Regex>,
    pub min_count: Option<i32>,
    pub component: Option<Regex>,
    pub host: Option<Regex>,
    /// Target of delivery; not a condition.
    pub receiver: Option<String>,
}

impl PartialEq for Rule {
    fn eq(&self, other: &Self) -> bool {
        fn re(a: &Option<Regex>, b: &Option<Regex>) -> bool {
            a.as_ref().map(Regex::as_str) == b.as_ref().map(Regex::as_str)
        }
        fn map(a: &BTreeMap<String, Regex>, b: &BTreeMap<String, Regex>) -> bool {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((ka, va), (kb, vb))| ka == kb && va.as_str() == vb.as_str())
        }
        map(&self.labels, &other.labels)
            && map(&self.annotations, &other.annotations)
            && re(&self.message, &other.message)
            && re(&self.api_version, &other.api_version)
            && re(&self.kind, &other.kind)
            && re(&self.namespace, &other.namespace)
            && re(&self.reason, &other.reason)
            && re(&self.type_, &other.type_)
            && self.min_count == other.min_count
            && re(&self.component, &other.component)
            && re(&self.host, &other.host)
            && self.receiver == other.receiver
    }
}

pub use regex::Regex;

/// One named receiver: the sink kind plus delivery settings shared by every kind.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverConfig {
    pub name: String,
    pub sink: SinkConfig,
    pub delivery: DeliveryConfig,
}

/// Per-receiver delivery settings (our additions to the resmoio schema).
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryConfig {
    /// Capacity of the receiver's queue, in occurrences.
    pub queue: usize,
    /// When the queue is full: false (default) blocks the router (lossless); true drops and counts.
    pub drop_when_full: bool,
    /// Timeout of one send attempt.
    pub timeout: Duration,
    pub retry: RetryConfig,
    pub batch: BatchConfig,
    /// Requests (batches) in flight at once, each in its own lane (`sink::worker`).
    pub concurrency: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// None: retry transient failures until they succeed (lossless). Some(n): give up after n attempts.
    pub max_attempts: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BatchConfig {
    /// Most occurrences in one request/write. 1 means unbatched.
    pub max_events: usize,
    /// How long a partial batch may wait for more occurrences.
    pub max_wait: Duration,
}

mod duration;
mod env;
mod error;
mod load;
mod node;
mod schema;
mod summary;

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

pub use error::{ConfigError, ConfigErrors};

/// The loader's path-aware helpers, for the receiver kinds that parse their own keys.
pub mod yaml {
    pub use super::node::{Entry, Kind, Node};
    pub use super::schema::{Ctx, Fields, to_json};
}
pub use load::{key_paths, load, log_format_hint, parse};
