//! The worker of one receiver: batch → encode → send with retries → acknowledge.

use std::time::Instant;

use bytes::BytesMut;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Delivery, Doc, Encoder, SendError, Sink, retry::Backoff};
use crate::config::{DeliveryConfig, ReceiverConfig};
use crate::progress::Ack;
use crate::telemetry::{Metrics, metrics::ReceiverLabel};

pub struct Worker {
    name: String,
    delivery: DeliveryConfig,
    sink: Box<dyn Sink>,
    encoder: Encoder,
    metrics: Metrics,
    label: ReceiverLabel,
    abort: CancellationToken,
    permanent_causes: Causes,
    /// Where the default documents of a batch are written, one after the other; reclaimed for
    /// the next batch once the sink has dropped the last one (bytes reuses a buffer with no
    /// other handle left), so a steady stream writes into the same, cache-warm memory.
    arena: BytesMut,
}

/// Room reserved per occurrence of a batch in the arena: a kube-sim event is about 700 bytes.
const ARENA_PER_DOC: usize = 1024;

impl Worker {
    pub fn new(
        rc: &ReceiverConfig,
        sink: Box<dyn Sink>,
        encoder: Encoder,
        metrics: Metrics,
        abort: CancellationToken,
    ) -> Self {
        Self {
            name: rc.name.clone(),
            delivery: rc.delivery.clone(),
            sink,
            encoder,
            label: Metrics::receiver(&rc.name),
            metrics,
            abort,
            permanent_causes: Causes::default(),
            arena: BytesMut::new(),
        }
    }

    /// Runs until the queue is closed and drained, or `abort` fires (then whatever is unsent keeps
    /// its ack un-done).
    pub async fn run(mut self, mut rx: mpsc::Receiver<Delivery>) {
        let max = self.delivery.batch.max_events.max(1);
        let mut batch: Vec<Delivery> = Vec::with_capacity(max);
        loop {
            let first = tokio::select! {
                biased;
                _ = self.abort.cancelled() => return,
                d = rx.recv() => d,
            };
            let Some(first) = first else { return };
            batch.push(first);
            // Fill the batch with what is already queued, then wait up to maxWait for more.
            if max > 1 {
                let deadline = tokio::time::Instant::now() + self.delivery.batch.max_wait;
                while batch.len() < max {
                    match rx.try_recv() {
                        Ok(d) => batch.push(d),
                        Err(mpsc::error::TryRecvError::Disconnected) => break,
                        Err(mpsc::error::TryRecvError::Empty) => {
                            match tokio::time::timeout_at(deadline, rx.recv()).await {
                                Ok(Some(d)) => batch.push(d),
                                _ => break,
                            }
                        }
                    }
                }
            }
            self.metrics
                .queue_depth
                .get_or_create(&self.label)
                .dec_by(batch.len() as i64);
            if !self.deliver(&mut batch).await {
                return;
            }
        }
    }

    /// Sends one batch. False if aborted (the batch's acks are dropped un-done).
    async fn deliver(&mut self, batch: &mut Vec<Delivery>) -> bool {
        let mut docs = Vec::with_capacity(batch.len());
        let mut acks: Vec<Ack> = Vec::with_capacity(batch.len());
        self.arena.reserve(batch.len() * ARENA_PER_DOC);
        for d in batch.drain(..) {
            match self.encoder.encode_in(&d.occ, &mut self.arena) {
                Ok(body) => {
                    docs.push(Doc {
                        key: d.occ.key.clone(),
                        body,
                        occ: d.occ,
                    });
                    acks.push(d.ack);
                }
                Err(e) => {
                    // Rendering is deterministic: retrying cannot help.
                    self.metrics.sink_failed.get_or_create(&self.label).inc();
                    tracing::warn!(receiver = %self.name, key = %d.occ.key, error = %e, "layout failed to render; occurrence not sent");
                    d.ack.done();
                }
            }
        }
        if docs.is_empty() {
            return true;
        }
        let mut backoff = Backoff::new(self.delivery.retry.clone());
        loop {
            let started = Instant::now();
            let result = tokio::select! {
                biased;
                _ = self.abort.cancelled() => return false,
                r = tokio::time::timeout(self.delivery.timeout, self.sink.send(&docs)) => r.unwrap_or_else(|_| Err(SendError::Transient {
                    reason: format!("timed out after {:?}", self.delivery.timeout),
                    retry_after: None,
                })),
            };
            self.metrics
                .send_seconds
                .get_or_create(&self.label)
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(()) => {
                    self.metrics
                        .batch_size
                        .get_or_create(&self.label)
                        .observe(docs.len() as f64);
                    self.metrics
                        .sink_sent
                        .get_or_create(&self.label)
                        .inc_by(docs.len() as u64);
                    if backoff.attempts() > 0 {
                        tracing::info!(receiver = %self.name, attempts = backoff.attempts() + 1, "delivered after retries");
                    }
                    Ack::done_all(acks);
                    return true;
                }
                Err(SendError::Permanent { reason }) => {
                    self.metrics
                        .sink_failed
                        .get_or_create(&self.label)
                        .inc_by(docs.len() as u64);
                    tracing::warn!(receiver = %self.name, first = %docs[0].key, count = docs.len(), %reason, "permanent failure; not retried");
                    Ack::done_all(acks);
                    return true;
                }
                Err(SendError::Partial(failed)) => {
                    let Some(retry) = self.settle_partial(&mut docs, &mut acks, failed) else {
                        return true;
                    };
                    let (reason, retry_after) = retry;
                    let Some(delay) = backoff.next_delay(retry_after) else {
                        self.give_up(&docs, &reason, backoff.attempts());
                        Ack::done_all(acks);
                        return true;
                    };
                    self.metrics.sink_retried.get_or_create(&self.label).inc();
                    if backoff.attempts() == 1 || backoff.attempts().is_multiple_of(10) {
                        tracing::warn!(receiver = %self.name, first = %docs[0].key, count = docs.len(), %reason, attempt = backoff.attempts(), delay_ms = delay.as_millis() as u64, "some documents failed; retrying those");
                    }
                    tokio::select! {
                        biased;
                        _ = self.abort.cancelled() => return false,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Err(SendError::Transient {
                    reason,
                    retry_after,
                }) => {
                    let Some(delay) = backoff.next_delay(retry_after) else {
                        self.give_up(&docs, &reason, backoff.attempts());
                        Ack::done_all(acks);
                        return true;
                    };
                    self.metrics.sink_retried.get_or_create(&self.label).inc();
                    // First failure and then every 10th, so a long outage does not flood the log.
                    if backoff.attempts() == 1 || backoff.attempts().is_multiple_of(10) {
                        tracing::warn!(receiver = %self.name, first = %docs[0].key, count = docs.len(), %reason, attempt = backoff.attempts(), delay_ms = delay.as_millis() as u64, "send failed; retrying");
                    }
                    tokio::select! {
                        biased;
                        _ = self.abort.cancelled() => return false,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    fn give_up(&self, docs: &[Doc], reason: &str, attempts: u32) {
        self.metrics
            .sink_failed
            .get_or_create(&self.label)
            .inc_by(docs.len() as u64);
        tracing::warn!(receiver = %self.name, first = %docs[0].key, count = docs.len(), %reason, attempts, "giving up after maxAttempts");
    }

    /// Acknowledges what a per-document answer delivered or failed for good, and keeps in
    /// `docs`/`acks` only what is worth sending again. Returns the reason and the longest
    /// `Retry-After` of those, or None when nothing is left to send.
    fn settle_partial(
        &mut self,
        docs: &mut Vec<Doc>,
        acks: &mut Vec<Ack>,
        failed: Vec<(usize, SendError)>,
    ) -> Option<(String, Option<std::time::Duration>)> {
        let mut outcome: Vec<Option<SendError>> = (0..docs.len()).map(|_| None).collect();
        for (i, e) in failed {
            if let Some(slot) = outcome.get_mut(i) {
                *slot = Some(e);
            }
        }
        let (mut delivered, mut permanent) = (0u64, 0u64);
        let mut retry: Option<(String, Option<std::time::Duration>)> = None;
        let mut keep_docs = Vec::new();
        let mut keep_acks = Vec::new();
        for ((doc, ack), outcome) in docs.drain(..).zip(acks.drain(..)).zip(outcome) {
            match outcome {
                None => {
                    delivered += 1;
                    ack.done();
                }
                Some(SendError::Transient {
                    reason,
                    retry_after,
                }) => {
                    let longest = retry.as_ref().and_then(|r| r.1).max(retry_after);
                    retry = Some((retry.map_or(reason, |r| r.0), longest));
                    keep_docs.push(doc);
                    keep_acks.push(ack);
                }
                Some(SendError::Permanent { reason }) => {
                    permanent += 1;
                    // Once per cause (a mapping error can hit every document of a kind): the
                    // rest are counted in sink_failed and logged at debug.
                    if self.permanent_causes.first(&reason) {
                        tracing::warn!(receiver = %self.name, key = %doc.key, %reason, "permanent failure of one document; not retried (further documents failing for this reason are counted, logged at debug)");
                    } else {
                        tracing::debug!(receiver = %self.name, key = %doc.key, %reason, "permanent failure of one document; not retried");
                    }
                    ack.done();
                }
                Some(SendError::Partial(_)) => {
                    // Not a per-document answer: treat as retryable rather than lose it.
                    retry.get_or_insert(("nested partial answer".to_owned(), None));
                    keep_docs.push(doc);
                    keep_acks.push(ack);
                }
            }
        }
        if delivered > 0 {
            self.metrics
                .sink_sent
                .get_or_create(&self.label)
                .inc_by(delivered);
        }
        if permanent > 0 {
            self.metrics
                .sink_failed
                .get_or_create(&self.label)
                .inc_by(permanent);
        }
        *docs = keep_docs;
        *acks = keep_acks;
        retry
    }
}

/// The reasons of per-document permanent failures seen so far, to log each one once. Bounded:
/// when full it starts over (a cause is then logged once more).
#[derive(Default)]
struct Causes(std::collections::HashSet<String>);

impl Causes {
    const MAX: usize = 1024;

    /// True the first time `reason` is seen.
    fn first(&mut self, reason: &str) -> bool {
        if self.0.contains(reason) {
            return false;
        }
        if self.0.len() >= Self::MAX {
            self.0.clear();
        }
        self.0.insert(reason.to_owned())
    }
}
