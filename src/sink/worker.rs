//! The worker of one receiver: batch → encode → send with retries → acknowledge, with up to
//! `concurrency` requests in flight.
//!
//! With one request at a time the worker sends batches in queue order. With more, a destination
//! that answers in 50 ms takes `concurrency` requests per 50 ms instead of one: each request has
//! its own sender (`Sink::lane`: the same client, its own buffers), and the worker keeps order
//! where it matters. Each occurrence has an order key (`OrderKey`: its involved object, or Loki's
//! stream); a key is in at most one request at a time, and its occurrences go in queue order, so
//! the occurrences of one object arrive in order whatever the others do. A request that keeps
//! retrying holds back only its keys: the rest go on until the queue's bound is reached.
//! Acknowledgements stay exact: each occurrence acks on its own, and the cursor is the low
//! watermark of them all, whatever order the requests finish in.

use std::sync::Mutex;
use std::time::Instant;

use bytes::BytesMut;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::partial::Outcomes;
use super::queue::Queued;
use super::schedule::Schedule;
use super::{Delivery, Doc, Encoder, OrderKey, SendError, Sink, retry::Backoff};
use crate::config::{DeliveryConfig, ReceiverConfig};
use crate::progress::Ack;
use crate::telemetry::{Metrics, metrics::ReceiverLabel};

pub struct Worker {
    shared: Shared,
    senders: Vec<Box<dyn Sink>>,
    key: OrderKey,
}

/// What every request of the receiver shares.
struct Shared {
    name: String,
    delivery: DeliveryConfig,
    encoder: Encoder,
    metrics: Metrics,
    label: ReceiverLabel,
    /// Requests being sent.
    in_flight: Gauge,
    abort: CancellationToken,
    permanent_causes: Mutex<Causes>,
    /// The destination asked to wait (`Retry-After`): no request of the receiver starts before
    /// then, not only the one that was told. A rate limit is the endpoint's, not a request's.
    hold_until: Mutex<Option<tokio::time::Instant>>,
}

impl Shared {
    /// Waits out a `Retry-After` any request of the receiver was given. False if aborted.
    async fn held(&self) -> bool {
        loop {
            let until = *self.hold_until.lock().expect("hold lock");
            match until {
                Some(t) if t > tokio::time::Instant::now() => tokio::select! {
                    biased;
                    _ = self.abort.cancelled() => return false,
                    _ = tokio::time::sleep_until(t) => {}
                },
                _ => return true,
            }
        }
    }

    /// The destination said to wait `d` before the next request.
    fn hold(&self, d: std::time::Duration) {
        let until = tokio::time::Instant::now() + d;
        let mut hold = self.hold_until.lock().expect("hold lock");
        *hold = Some(hold.map_or(until, |h| h.max(until)));
    }
}

/// One sender, and the arena its default documents are written in, one batch after the other;
/// reclaimed for the next batch once the sink has dropped the last one (bytes reuses a buffer
/// with no other handle left), so a steady stream writes into the same, cache-warm memory.
struct Lane {
    sink: Box<dyn Sink>,
    arena: BytesMut,
}

/// Room reserved per occurrence of a batch in the arena: a kube-sim event is about 700 bytes.
const ARENA_PER_DOC: usize = 1024;

impl Worker {
    /// `senders`: one per request that may be in flight (the first built by the kind, the others
    /// its `Sink::lane`s).
    pub fn new(
        rc: &ReceiverConfig,
        senders: Vec<Box<dyn Sink>>,
        key: OrderKey,
        encoder: Encoder,
        metrics: Metrics,
        abort: CancellationToken,
    ) -> Self {
        let label = Metrics::receiver(&rc.name);
        let in_flight = metrics.sink_in_flight.get_or_create(&label).clone();
        Self {
            shared: Shared {
                name: rc.name.clone(),
                delivery: rc.delivery.clone(),
                encoder,
                in_flight,
                label,
                metrics,
                abort,
                permanent_causes: Mutex::default(),
                hold_until: Mutex::default(),
            },
            senders,
            key,
        }
    }

    /// Runs until the queue is closed and everything in it sent, or `abort` fires (then whatever
    /// is unsent keeps its ack un-done).
    pub async fn run(self, rx: mpsc::UnboundedReceiver<Queued>) {
        let Worker {
            shared,
            senders,
            key,
        } = self;
        let mut lanes: Vec<Lane> = senders
            .into_iter()
            .map(|sink| Lane {
                sink,
                arena: BytesMut::new(),
            })
            .collect();
        if lanes.len() == 1 {
            // One request at a time: queue order is every order.
            return lanes[0].run(&shared, rx).await;
        }
        concurrently(&shared, lanes, &key, rx).await;
    }
}

/// Up to `lanes.len()` requests at once, a key in at most one of them (`schedule`).
async fn concurrently(
    shared: &Shared,
    mut free: Vec<Lane>,
    key: &OrderKey,
    mut rx: mpsc::UnboundedReceiver<Queued>,
) {
    let max = shared.delivery.batch.max_events.max(1);
    let max_wait = shared.delivery.batch.max_wait;
    let room = shared.delivery.queue.max(1);
    let mut waiting: Schedule<Queued> = Schedule::default();
    let mut running = FuturesUnordered::new();
    let mut open = true;
    // Made once, polled on every turn: a `cancelled()` or a `sleep_until` made per turn takes a
    // lock and a waiter-list entry, or a timer entry, each time (5% of a webhook's CPU in the
    // profile, the loop turning about once per occurrence under load).
    let mut aborted = std::pin::pin!(shared.abort.cancelled());
    let mut timer = std::pin::pin!(tokio::time::sleep_until(tokio::time::Instant::now()));
    loop {
        // Start a request while a sender is free and a batch is due.
        while !free.is_empty() {
            // Nothing more can come in while every room of the queue is taken: what is ready
            // goes rather than wait `maxWait` for occurrences that cannot arrive.
            let flush = !open || waiting.len() >= room;
            let Some((batch, keys)) =
                waiting.next_batch(max, max_wait, flush, tokio::time::Instant::now)
            else {
                break;
            };
            shared
                .metrics
                .queue_depth
                .get_or_create(&shared.label)
                .dec_by(batch.len() as i64);
            let mut lane = free.pop().expect("a free sender");
            running.push(async move {
                let mut batch: Vec<Delivery> = batch.into_iter().map(Queued::take).collect();
                let delivered = lane.deliver(shared, &mut batch).await;
                (lane, keys, delivered)
            });
        }
        if !open && waiting.is_empty() && running.is_empty() {
            return;
        }
        // A partial batch is due once its oldest occurrence has waited `maxWait` (or at once
        // when the queue is full, above).
        let due = (!free.is_empty())
            .then(|| waiting.due_at(max_wait))
            .flatten();
        if let Some(due) = due
            && timer.deadline() != due
        {
            timer.as_mut().reset(due);
        }
        // The abort is polled last: under load a branch above is ready on most turns, and
        // polling a registered `cancelled()` takes its lock each time. A request started after
        // an abort ends at once (`deliver` checks it first), so nothing is sent for it.
        tokio::select! {
            biased;
            Some((lane, keys, delivered)) = running.next(), if !running.is_empty() => {
                if !delivered {
                    return;
                }
                waiting.done(&keys);
                free.push(lane);
            }
            queued = rx.recv(), if open => match queued {
                Some(queued) => {
                    let since = tokio::time::Instant::now();
                    let mut wait = |queued: Queued| {
                        waiting.push(key.of(&queued.delivery().occ), since, queued);
                    };
                    wait(queued);
                    // Everything else already queued comes in now: one scheduling pass for a
                    // burst rather than one per occurrence (a closed queue is seen by `recv`).
                    while let Ok(queued) = rx.try_recv() {
                        wait(queued);
                    }
                }
                None => open = false,
            },
            _ = &mut timer, if due.is_some() => {}
            _ = &mut aborted => return,
        }
    }
}

impl Lane {
    /// Batches and sends what is queued, in queue order, one request at a time, until the queue
    /// closes or `abort`.
    async fn run(&mut self, shared: &Shared, mut rx: mpsc::UnboundedReceiver<Queued>) {
        let max = shared.delivery.batch.max_events.max(1);
        let mut batch: Vec<Delivery> = Vec::with_capacity(max);
        let mut aborted = std::pin::pin!(shared.abort.cancelled());
        loop {
            // The abort is polled second, as in `concurrently`: `deliver` checks it first.
            let first = tokio::select! {
                biased;
                d = rx.recv() => d,
                _ = &mut aborted => return,
            };
            let Some(first) = first else { return };
            batch.push(first.take());
            // Fill the batch with what is already queued, then wait up to maxWait for more.
            // One timer for the batch, made when the first wait needs it: a `timeout_at` per
            // wait registered and removed a timer entry per occurrence under load (occurrences
            // come one at a time, each a wait).
            if max > 1 {
                let deadline = tokio::time::Instant::now() + shared.delivery.batch.max_wait;
                let mut timer = std::pin::pin!(None::<tokio::time::Sleep>);
                while batch.len() < max {
                    match rx.try_recv() {
                        Ok(d) => batch.push(d.take()),
                        Err(mpsc::error::TryRecvError::Disconnected) => break,
                        Err(mpsc::error::TryRecvError::Empty) => {
                            if timer.is_none() {
                                timer.set(Some(tokio::time::sleep_until(deadline)));
                            }
                            let expired = timer.as_mut().as_pin_mut().expect("set above");
                            tokio::select! {
                                biased;
                                d = rx.recv() => match d {
                                    Some(d) => batch.push(d.take()),
                                    None => break,
                                },
                                () = expired => break,
                            }
                        }
                    }
                }
            }
            shared
                .metrics
                .queue_depth
                .get_or_create(&shared.label)
                .dec_by(batch.len() as i64);
            if !self.deliver(shared, &mut batch).await {
                return;
            }
        }
    }

    /// Sends one batch. False if aborted (the batch's acks are dropped un-done).
    async fn deliver(&mut self, shared: &Shared, batch: &mut Vec<Delivery>) -> bool {
        let mut docs = Vec::with_capacity(batch.len());
        let mut acks: Vec<Ack> = Vec::with_capacity(batch.len());
        self.arena.reserve(batch.len() * ARENA_PER_DOC);
        for d in batch.drain(..) {
            match shared.encoder.encode_in(&d.occ, &mut self.arena) {
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
                    shared
                        .metrics
                        .sink_failed
                        .get_or_create(&shared.label)
                        .inc();
                    tracing::warn!(receiver = %shared.name, key = %d.occ.key, error = %e, "layout failed to render; occurrence not sent");
                    d.ack.done();
                }
            }
        }
        if docs.is_empty() {
            return true;
        }
        let mut backoff = Backoff::new(shared.delivery.retry.clone());
        loop {
            if !shared.held().await {
                return false;
            }
            let started = Instant::now();
            let result = {
                let _sending = InFlight::new(&shared.in_flight);
                tokio::select! {
                    biased;
                    _ = shared.abort.cancelled() => return false,
                    r = tokio::time::timeout(shared.delivery.timeout, self.sink.send(&docs)) => r.unwrap_or_else(|_| Err(SendError::Transient {
                        reason: format!("timed out after {:?}", shared.delivery.timeout),
                        retry_after: None,
                    })),
                }
            };
            shared
                .metrics
                .send_seconds
                .get_or_create(&shared.label)
                .observe(started.elapsed().as_secs_f64());
            let (reason, retry_after, what) = match result {
                Ok(()) => {
                    shared
                        .metrics
                        .batch_size
                        .get_or_create(&shared.label)
                        .observe(docs.len() as f64);
                    shared
                        .metrics
                        .sink_sent
                        .get_or_create(&shared.label)
                        .inc_by(docs.len() as u64);
                    if backoff.attempts() > 0 {
                        tracing::info!(receiver = %shared.name, attempts = backoff.attempts() + 1, "delivered after retries");
                    }
                    Ack::done_all(acks);
                    return true;
                }
                Err(SendError::Permanent { reason }) => {
                    shared
                        .metrics
                        .sink_failed
                        .get_or_create(&shared.label)
                        .inc_by(docs.len() as u64);
                    tracing::warn!(receiver = %shared.name, first = %docs[0].key, count = docs.len(), %reason, "permanent failure; not retried");
                    Ack::done_all(acks);
                    return true;
                }
                Err(SendError::Partial(failed)) => {
                    match shared.settle_partial(&mut docs, &mut acks, failed) {
                        Some((reason, retry_after)) => {
                            (reason, retry_after, "some documents failed; retrying those")
                        }
                        None => return true,
                    }
                }
                Err(SendError::Transient {
                    reason,
                    retry_after,
                }) => (reason, retry_after, "send failed; retrying"),
            };
            // The destination asked every request to wait, not only this one.
            if let Some(d) = retry_after {
                shared.hold(d);
            }
            let Some(delay) = backoff.next_delay(retry_after) else {
                shared.give_up(&docs, &reason, backoff.attempts());
                Ack::done_all(acks);
                return true;
            };
            shared
                .metrics
                .sink_retried
                .get_or_create(&shared.label)
                .inc();
            // First failure and then every 10th, so a long outage does not flood the log.
            if backoff.attempts() == 1 || backoff.attempts().is_multiple_of(10) {
                tracing::warn!(receiver = %shared.name, first = %docs[0].key, count = docs.len(), %reason, attempt = backoff.attempts(), delay_ms = delay.as_millis() as u64, "{what}");
            }
            tokio::select! {
                biased;
                _ = shared.abort.cancelled() => return false,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}

/// Counts one request in `sink_in_flight` while it lives (however the send ends: answered,
/// timed out, or aborted).
struct InFlight<'a>(&'a Gauge);

impl<'a> InFlight<'a> {
    fn new(gauge: &'a Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Shared {
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
        &self,
        docs: &mut Vec<Doc>,
        acks: &mut Vec<Ack>,
        failed: Vec<(usize, SendError)>,
    ) -> Option<(String, Option<std::time::Duration>)> {
        let outcome = Outcomes::from_failed(docs.len(), failed).into_vec();
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
                    let first = self
                        .permanent_causes
                        .lock()
                        .expect("causes lock")
                        .first(&reason);
                    if first {
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
