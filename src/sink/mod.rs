//! Receivers: one bounded queue and one worker per receiver (docs/architecture.md, "How an
//! occurrence flows").
//!
//! The router hands each receiver a [`Delivery`] (the shared occurrence plus the ack it owes). The
//! worker batches, encodes, sends with retries, and acknowledges only what the sink durably took,
//! what failed permanently (counted) or what `dropWhenFull` dropped (counted). Anything else — a
//! worker aborted mid-retry — drops its ack un-done, which holds the delivery cursor back so a
//! successor replays it: the lossless guarantee.

pub mod aws;
pub mod elasticsearch;
mod encode;
pub mod file;
pub mod gcp;
pub mod http;
pub mod kafka;
pub mod kind;
pub mod layout;
pub mod loki;
pub mod notify;
pub mod opsgenie;
pub mod otlp;
pub mod partial;
pub mod pipe;
mod queue;
pub mod registry;
pub mod render;
mod retry;
mod schedule;
pub mod secret;
pub mod slack;
pub mod stdout;
pub mod syslog;
pub mod teams;
#[cfg(test)]
pub mod testing;
pub mod tls;
pub mod webhook;
mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::config::{ConfigError, ConfigErrors, ReceiverConfig};
use crate::digest;
use crate::event::Occurrence;
use crate::progress::Ack;
use crate::telemetry::Metrics;

pub use encode::Encoder;
pub use kind::{BuildEnv, Concurrency, Problem, ReceiverKind};
pub use registry::{KINDS, SinkConfig};
pub use retry::{Backoff, parse_retry_after};

/// One occurrence for one receiver.
#[derive(Debug)]
pub struct Delivery {
    pub occ: Arc<Occurrence>,
    pub ack: Ack,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// What [`check`] found, every problem with its YAML path.
    #[error("receivers cannot start: {}", .0.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(ConfigErrors),
    #[error("receiver {receiver}: {message}")]
    Config { receiver: String, message: String },
    #[error("receiver {receiver}: cannot write {path}: {source}")]
    File {
        receiver: String,
        path: String,
        source: std::io::Error,
    },
}

/// Why a send failed, as the worker needs to know it.
#[derive(Debug, Clone, PartialEq)]
pub enum SendError {
    /// Worth retrying (transport error, timeout, 408, 429, 5xx, I/O error).
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (other 4xx).
    Permanent { reason: String },
    /// The destination answered per document (Elasticsearch `_bulk`): these documents of the
    /// batch, by index, failed as given; every other one was delivered. Only the transient ones
    /// are sent again.
    Partial(Vec<(usize, SendError)>),
}

impl SendError {
    /// The reason given (empty for a per-document answer, whose documents have their own).
    pub fn reason(&self) -> &str {
        match self {
            SendError::Transient { reason, .. } | SendError::Permanent { reason } => reason,
            SendError::Partial(_) => "",
        }
    }

    /// The same error with what to do about it appended to its reason: `… (check token)`.
    pub fn with_hint(mut self, hint: &str) -> SendError {
        if let SendError::Transient { reason, .. } | SendError::Permanent { reason } = &mut self
            && !hint.is_empty()
        {
            reason.push_str(" (");
            reason.push_str(hint);
            reason.push(')');
        }
        self
    }
}

/// One encoded document of a batch.
pub struct Doc {
    /// The occurrence's key, shared with it (a copy per document was an allocation each).
    pub key: std::sync::Arc<str>,
    pub body: bytes::Bytes,
    pub occ: Arc<Occurrence>,
}

/// A destination. `send` gets a batch, never empty (the worker sends none), and answers for it:
/// delivered, failed as a whole (transient or permanent), or per document (`Partial`).
pub trait Sink: Send + 'static {
    fn send<'a>(
        &'a mut self,
        batch: &'a [Doc],
    ) -> futures::future::BoxFuture<'a, Result<(), SendError>>;

    /// Another sender to the same destination, for one more request in flight: the same client
    /// (its connections, credentials and caches), its own per-request buffers. None: this kind
    /// sends one request at a time (its `ReceiverKind::CONCURRENCY` is `Serial`).
    fn lane(&self) -> Option<Box<dyn Sink>> {
        None
    }

    /// Which occurrences must arrive in order, one request after the other: by default those of
    /// one involved object.
    fn order_key(&self) -> OrderKey {
        OrderKey::InvolvedObject
    }
}

/// What keeps occurrences in order when requests run concurrently: occurrences with the same key
/// are never in two requests at once, and go in queue order.
#[derive(Clone)]
pub enum OrderKey {
    /// The involved object (its uid; else its namespace, kind and name): its occurrences, and so
    /// every count of each of its events, arrive in order.
    InvolvedObject,
    /// A kind's own key, e.g. Loki's stream, whose entries must arrive in time order.
    With(Arc<dyn Fn(&Occurrence) -> u64 + Send + Sync>),
}

/// The seed of order-key digests (`OrderKey::of`, and Loki's streams).
pub const ORDER_KEY_SEED: u64 = 0x6b65_652d_6f72_6472;

impl OrderKey {
    /// The key of `occ` (a hash: two keys that collide are merely kept in order together).
    pub fn of(&self, occ: &Occurrence) -> u64 {
        match self {
            OrderKey::InvolvedObject => {
                let o = &occ.event.involved_object;
                match o.uid.as_deref().filter(|u| !u.is_empty()) {
                    Some(uid) => digest::of(ORDER_KEY_SEED, uid),
                    None => digest::of(ORDER_KEY_SEED, &(&o.namespace, &o.kind, &o.name)),
                }
            }
            OrderKey::With(f) => f(occ),
        }
    }
}

/// Every check [`Receivers::start`] makes before it spawns a worker, made without starting,
/// sending or creating anything (each kind's `check`: files can be appended to, TLS files exist
/// and parse, clients build). Every problem is reported with its YAML path. `check-config` runs
/// this after loading; `start` runs it first.
pub fn check(configs: &[ReceiverConfig]) -> Result<(), ConfigErrors> {
    let stdout = || -> stdout::Writer { Box::new(tokio::io::sink()) };
    let metrics = Metrics::default();
    let mut errors = Vec::new();
    for (i, rc) in configs.iter().enumerate() {
        let env = BuildEnv {
            receiver: &rc.name,
            delivery: &rc.delivery,
            stdout: &stdout,
            metrics: &metrics,
        };
        for (key, why) in rc.sink.receiver().check(&env) {
            errors.push(ConfigError {
                path: format!("receivers[{i}].{}.{key}", rc.sink.kind()),
                message: format!("{why} (receiver {:?})", rc.name),
                line: None,
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors { errors })
    }
}

/// Every configured receiver, by name.
pub struct Receivers {
    handles: BTreeMap<String, ReceiverHandle>,
}

/// The sending side of one receiver's queue. Cheap to clone.
#[derive(Clone)]
pub struct ReceiverHandle {
    name: Arc<str>,
    tx: queue::QueueSender,
    drop_when_full: bool,
    metrics: Metrics,
}

impl Receivers {
    /// Builds every receiver and spawns its worker on `tasks`. Anything checkable at start fails here,
    /// before any worker runs: everything [`check`] checks (unwritable file, missing or unparsable
    /// CA/cert/key, invalid template, …).
    pub async fn start(
        configs: &[ReceiverConfig],
        metrics: &Metrics,
        tasks: &TaskTracker,
        abort: CancellationToken,
    ) -> Result<Receivers, SinkError> {
        Self::start_with(configs, metrics, tasks, abort, || {
            Box::new(tokio::io::stdout())
        })
        .await
    }

    /// As `start`, with stdout receivers writing to what `stdout` makes (tests capture it).
    pub async fn start_with(
        configs: &[ReceiverConfig],
        metrics: &Metrics,
        tasks: &TaskTracker,
        abort: CancellationToken,
        stdout: impl Fn() -> stdout::Writer,
    ) -> Result<Receivers, SinkError> {
        check(configs).map_err(SinkError::Invalid)?;
        let mut built = Vec::new();
        for rc in configs {
            let env = BuildEnv {
                receiver: &rc.name,
                delivery: &rc.delivery,
                stdout: &stdout,
                metrics,
            };
            let receiver = rc.sink.receiver();
            let sink = receiver.build(&env).map_err(|problems| SinkError::Config {
                receiver: rc.name.clone(),
                message: problems
                    .iter()
                    .map(|(key, why)| format!("{key}: {why}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            })?;
            let key = sink.order_key();
            let mut lanes = Vec::with_capacity(rc.delivery.concurrency);
            for _ in 1..rc.delivery.concurrency {
                lanes.push(sink.lane().ok_or_else(|| SinkError::Config {
                    receiver: rc.name.clone(),
                    message: format!("the {} receiver cannot send concurrently", rc.sink.kind()),
                })?);
            }
            lanes.insert(0, sink);
            built.push((rc, lanes, key, receiver.encoding().encoder().clone()));
        }
        // Spawn only once every receiver was built, so a bad one leaves nothing running.
        let mut handles = BTreeMap::new();
        for (rc, lanes, key, encoder) in built {
            metrics.init_receiver(&rc.name);
            let (tx, rx) = queue::queue(rc.delivery.queue);
            let w = worker::Worker::new(rc, lanes, key, encoder, metrics.clone(), abort.clone());
            tasks.spawn(w.run(rx));
            let handle = ReceiverHandle {
                name: rc.name.as_str().into(),
                tx,
                drop_when_full: rc.delivery.drop_when_full,
                metrics: metrics.clone(),
            };
            handles.insert(rc.name.clone(), handle);
        }
        Ok(Receivers { handles })
    }

    pub fn get(&self, name: &str) -> Option<&ReceiverHandle> {
        self.handles.get(name)
    }

    pub fn names(&self) -> Vec<String> {
        self.handles.keys().cloned().collect()
    }

    /// Stops accepting: each worker drains its queue, flushes and exits.
    pub fn close(self) {
        drop(self.handles);
    }
}

impl ReceiverHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Enqueues. A full queue waits (lossless backpressure) unless the receiver has `dropWhenFull`.
    pub async fn send(&self, d: Delivery) {
        let queued = if self.drop_when_full {
            self.tx.try_send(d)
        } else {
            self.tx.send(d).await
        };
        match queued {
            Ok(()) => {
                self.metrics.queue_depth_of(&self.name).inc();
            }
            Err(queue::Refused::Full(d)) => {
                self.metrics
                    .sink_dropped
                    .get_or_create(&Metrics::receiver(&self.name))
                    .inc();
                tracing::debug!(receiver = %self.name, key = %d.occ.key, "queue full: dropped (dropWhenFull)");
                d.ack.done();
            }
            Err(queue::Refused::Closed(d)) => {
                tracing::warn!(receiver = %self.name, key = %d.occ.key, "receiver stopped; occurrence left for the successor");
            }
        }
    }
}

#[cfg(test)]
mod tests;
