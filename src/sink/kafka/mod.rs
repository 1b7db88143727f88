//! kafka: one record per occurrence to a topic, with librdkafka (rdkafka) as the client.
//!
//! - Record key: the involved object's uid (the event's own uid when the object has none), so
//!   every occurrence of one object lands on one partition, in order. librdkafka partitions with
//!   `murmur2_random`, the Java client's hash, so other producers of the same keys agree.
//! - Header `Idempotency-Key`: the occurrence key `{uid}:{count}`, the same on a replayed record, so
//!   a consumer drops replays by it.
//! - Value: the document (the whole event as JSON, or the `layout`).
//!
//! `delivery: atLeastOnce` (the default): idempotent producer, `acks=all`. A batch is enqueued
//! in order and `send` returns once the broker acknowledged every record of it; a record that
//! failed is reported per document (`SendError::Partial`), so the worker resends only those, and
//! the cursor cannot pass an unacknowledged record. Within one producer session the idempotent
//! producer's sequence numbers make librdkafka's own retries duplicate-free; a record resent
//! after a timeout or by a successor after a crash is a duplicate carrying the same
//! `Idempotency-Key`.
//!
//! `delivery: atMostOnce`: `acks=1`, no retries, not idempotent. A batch counts as delivered
//! once it is queued in the client; what the broker then refuses or never sees is logged, not
//! resent. The queue is flushed (for at most `timeout`) when the receiver stops.
//!
//! A fatal error of the idempotent producer (librdkafka's "the producer cannot go on", e.g. an
//! out-of-order sequence) fails the batch as transient and the producer is built anew for the
//! retry, which starts a new producer id.

mod config;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use super::kind::{BuildEnv, Concurrency, Problem, ReceiverKind};
use super::layout::Encoding;
use super::{Doc, SendError, Sink};
use crate::config::yaml::{Ctx, Fields};
use crate::event::Occurrence;

pub use config::{
    AVRO_KEYS, Compression, DEFAULT_CLIENT_ID, KafkaConfig, KafkaTls, Mechanism, SASL_KEYS, Sasl,
    Semantics, TLS_KEYS, check_broker, check_topic,
};

/// The header that carries the occurrence key.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

impl ReceiverKind for KafkaConfig {
    const NAME: &'static str = "kafka";
    const CONCURRENCY: Concurrency = Concurrency::Serial(
        "librdkafka keeps requests in flight itself (up to 5 per broker with the idempotent producer), and one batch of the receiver spans them",
    );
    const KEYS: &'static [&'static str] = config::KEYS;
    const NESTED: &'static [(&'static str, &'static [&'static str])] =
        &[("tls", TLS_KEYS), ("sasl", SASL_KEYS), ("avro", AVRO_KEYS)];
    /// librdkafka batches per partition itself; a batch of ours is what one acknowledgement
    /// waits for.
    const DEFAULT_MAX_EVENTS: usize = 500;

    fn parse(ctx: &mut Ctx, f: &Fields) -> Option<Self> {
        config::parse(ctx, f)
    }

    fn encoding(&self) -> &Encoding {
        &self.encoding
    }

    fn warnings(&self) -> Vec<Problem> {
        self.ignored.clone()
    }

    fn check(&self, _env: &BuildEnv) -> Vec<Problem> {
        // Building the client would connect: only what the client would read is checked.
        self.check_files()
    }

    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>> {
        let problems = self.check_files();
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Box::new(KafkaSink::build(
            env.receiver,
            self,
            env.delivery.timeout,
        )?))
    }
}

/// librdkafka's log lines and client errors, in our log with the receiver's name.
struct Context {
    receiver: Arc<str>,
    /// The client's latest error, to explain a record that timed out (a refused TLS
    /// certificate, a failed SASL handshake, brokers down).
    last_error: Arc<Mutex<Option<String>>>,
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let receiver = &*self.receiver;
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!(receiver, facility = fac, "librdkafka: {message}")
            }
            // Its errors are a broker's (refused connections, a failed handshake): retried.
            RDKafkaLogLevel::Error | RDKafkaLogLevel::Warning => {
                tracing::warn!(receiver, facility = fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(receiver, facility = fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(receiver, facility = fac, "librdkafka: {message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // "All brokers down" follows the error that took them down: keep that one.
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::AllBrokersDown)
            && let Ok(mut last) = self.last_error.lock()
        {
            *last = Some(reason.to_owned());
        }
        // A failed connection is already in the log line above; the sends it holds up are retried.
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::BrokerTransportFailure) {
            tracing::debug!(receiver = %self.receiver, %error, "kafka client: {reason}");
        } else {
            tracing::warn!(receiver = %self.receiver, %error, "kafka client: {reason}");
        }
    }
}

/// The librdkafka settings of a receiver (also what the tests read back).
pub fn client_config(receiver: &str, cfg: &KafkaConfig, timeout: Duration) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", cfg.brokers.join(","))
        .set("client.id", &cfg.client_id)
        .set("compression.codec", cfg.compression.librdkafka())
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("reconnect.backoff.max.ms", "2000")
        .set("log.connection.close", "false");
    // librdkafka gives up on a record a little before the worker gives up on the batch, so the
    // failure is reported per record instead of the whole batch timing out.
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as u64;
    // (More than linger.ms, which librdkafka requires.)
    let message_timeout = (ms * 9 / 10).max(10);
    c.set("message.timeout.ms", message_timeout.to_string())
        .set(
            "request.timeout.ms",
            message_timeout.min(30_000).to_string(),
        );
    match cfg.semantics {
        Semantics::AtLeastOnce => {
            c.set("enable.idempotence", "true").set("acks", "all");
        }
        Semantics::AtMostOnce => {
            c.set("enable.idempotence", "false")
                .set("acks", "1")
                .set("message.send.max.retries", "0");
        }
    }
    if let Some(v) = &cfg.version {
        c.set("broker.version.fallback", v);
    }
    let protocol = match (cfg.tls.enable, cfg.sasl.is_some()) {
        (false, false) => "plaintext",
        (true, false) => "ssl",
        (false, true) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    c.set("security.protocol", protocol);
    if cfg.tls.enable {
        match &cfg.tls.ca_file {
            Some(ca) => c.set("ssl.ca.location", ca.display().to_string()),
            // The system's bundle, wherever this distribution keeps it.
            None => c.set("ssl.ca.location", "probe"),
        };
        if let (Some(cert), Some(key)) = (&cfg.tls.cert_file, &cfg.tls.key_file) {
            c.set("ssl.certificate.location", cert.display().to_string())
                .set("ssl.key.location", key.display().to_string());
        }
        if cfg.tls.insecure_skip_verify {
            c.set("enable.ssl.certificate.verification", "false")
                .set("ssl.endpoint.identification.algorithm", "none");
        } else {
            c.set("ssl.endpoint.identification.algorithm", "https");
        }
    }
    if let Some(s) = &cfg.sasl {
        c.set("sasl.mechanism", s.mechanism.librdkafka())
            .set("sasl.username", &s.username)
            .set("sasl.password", s.password.expose());
    }
    // What librdkafka sends to `Context::log`: as much as this module's log filter lets through.
    c.set_log_level(if tracing::enabled!(tracing::Level::DEBUG) {
        RDKafkaLogLevel::Debug
    } else if tracing::enabled!(tracing::Level::INFO) {
        RDKafkaLogLevel::Info
    } else {
        RDKafkaLogLevel::Warning
    });
    tracing::debug!(receiver, protocol, "kafka client settings");
    c
}

pub struct KafkaSink {
    receiver: Arc<str>,
    topic: String,
    semantics: Semantics,
    settings: ClientConfig,
    producer: FutureProducer<Context>,
    /// How long the queue may take to flush when the receiver stops (atMostOnce).
    flush: Duration,
    /// Batches in a row of which no record was acknowledged.
    stalled: u32,
    /// atMostOnce: delivery reports not read yet (the records were acknowledged on enqueue).
    unconfirmed: Vec<DeliveryFuture>,
    last_error: Arc<Mutex<Option<String>>>,
}

/// After this many batches in a row without a single acknowledgement, the producer is replaced.
const STALLED_BATCHES: u32 = 2;

fn create(
    receiver: &Arc<str>,
    settings: &ClientConfig,
    last_error: &Arc<Mutex<Option<String>>>,
) -> Result<FutureProducer<Context>, String> {
    settings
        .create_with_context(Context {
            receiver: receiver.clone(),
            last_error: last_error.clone(),
        })
        .map_err(|e| format!("cannot create the Kafka client: {e}"))
}

impl KafkaSink {
    pub fn build(
        receiver: &str,
        cfg: &KafkaConfig,
        timeout: Duration,
    ) -> Result<Self, Vec<Problem>> {
        let receiver: Arc<str> = receiver.into();
        let settings = client_config(&receiver, cfg, timeout);
        let last_error = Arc::default();
        let producer =
            create(&receiver, &settings, &last_error).map_err(|why| vec![("brokers", why)])?;
        Ok(Self {
            receiver,
            topic: cfg.topic.clone(),
            semantics: cfg.semantics,
            settings,
            producer,
            flush: timeout,
            stalled: 0,
            unconfirmed: Vec::new(),
            last_error,
        })
    }

    /// A producer in a fatal state (idempotence broken) cannot send again: build a new one.
    fn renew_if_fatal(&mut self) -> Result<(), SendError> {
        let Some((code, reason)) = self.producer.client().fatal_error() else {
            return Ok(());
        };
        tracing::error!(receiver = %self.receiver, ?code, %reason, "the Kafka producer failed fatally; starting a new one");
        self.renew()?;
        Err(SendError::Transient {
            reason: format!("fatal producer error {code:?}: {reason}"),
            retry_after: None,
        })
    }

    /// A new producer, hence a new producer id whose sequence numbers start at 0.
    fn renew(&mut self) -> Result<(), SendError> {
        self.stalled = 0;
        self.producer =
            create(&self.receiver, &self.settings, &self.last_error).map_err(|reason| {
                SendError::Transient {
                    reason,
                    retry_after: None,
                }
            })?;
        Ok(())
    }

    /// Enqueues every document in order; a full client queue is waited out (in-flight records
    /// of this batch make room as they are acknowledged).
    async fn enqueue(
        &self,
        batch: &[Doc],
    ) -> (Vec<(usize, DeliveryFuture)>, Vec<(usize, SendError)>) {
        let mut pending = Vec::with_capacity(batch.len());
        let mut failed = Vec::new();
        for (i, doc) in batch.iter().enumerate() {
            let key = record_key(&doc.occ);
            let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
                key: IDEMPOTENCY_KEY,
                value: Some(doc.key.as_bytes()),
            });
            let mut record = FutureRecord::to(&self.topic)
                .key(key)
                .payload(&doc.body[..])
                .headers(headers);
            loop {
                match self.producer.send_result(record) {
                    Ok(f) => {
                        pending.push((i, f));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err((e, _)) => {
                        failed.push((i, classify(&e, &self.topic, &self.last_error)));
                        break;
                    }
                }
            }
        }
        (pending, failed)
    }
}

/// The record key: the involved object's uid, else the event's.
pub fn record_key(occ: &Occurrence) -> &str {
    occ.event
        .involved_object
        .uid
        .as_deref()
        .filter(|u| !u.is_empty())
        .or(occ.event.metadata.uid.as_deref())
        .unwrap_or("")
}

/// Retrying cannot help a record the broker finds too large or malformed; everything else
/// (brokers down, leaders moving, timeouts, a topic not there yet, authorization that an
/// operator can fix) is retried, holding the cursor back.
fn classify(e: &KafkaError, topic: &str, last_error: &Mutex<Option<String>>) -> SendError {
    use RDKafkaErrorCode as C;
    let code = e.rdkafka_error_code();
    let mut reason = format!("topic {topic}: {e}");
    if code == Some(C::MessageTimedOut)
        && let Some(last) = last_error.lock().ok().and_then(|l| l.clone())
    {
        reason.push_str(&format!(" (the client's last error: {last})"));
    }
    match code {
        Some(
            C::MessageSizeTooLarge
            | C::InvalidMessageSize
            | C::InvalidMessage
            | C::InvalidRecord
            | C::InvalidTimestamp
            | C::MessageBatchTooLarge,
        ) => SendError::Permanent { reason },
        _ => SendError::Transient {
            reason,
            retry_after: None,
        },
    }
}

impl Sink for KafkaSink {
    fn send<'a>(&'a mut self, batch: &'a [Doc]) -> BoxFuture<'a, Result<(), SendError>> {
        async move {
            if batch.is_empty() {
                return Ok(());
            }
            self.renew_if_fatal()?;
            let (pending, mut failed) = self.enqueue(batch).await;
            match self.semantics {
                Semantics::AtMostOnce => {
                    // Acknowledged on enqueue; what the broker then refuses is only logged, as
                    // the reports come in (read at the next batch, and at the end).
                    self.unconfirmed.extend(pending.into_iter().map(|(_, f)| f));
                    self.log_refused();
                    // Nothing is resent: an enqueue failure is final too.
                    for (_, e) in failed.iter_mut() {
                        if let SendError::Transient { reason, .. } = e {
                            *e = SendError::Permanent {
                                reason: format!("{reason} (atMostOnce: not resent)"),
                            };
                        }
                    }
                }
                Semantics::AtLeastOnce => {
                    for (i, f) in pending {
                        match f.await {
                            Ok(Ok(_)) => {}
                            Ok(Err((e, _))) => failed.push((i, classify(&e, &self.topic, &self.last_error))),
                            Err(_) => failed.push((
                                i,
                                SendError::Transient {
                                    reason: "the Kafka client dropped the record".to_owned(),
                                    retry_after: None,
                                },
                            )),
                        }
                    }
                }
            }
            if failed.is_empty() {
                self.stalled = 0;
                if let Ok(mut last) = self.last_error.lock() {
                    *last = None;
                }
                return Ok(());
            }
            failed.sort_by_key(|(i, _)| *i);
            // Every record failed alike (brokers down): one transient failure for the batch.
            if failed.len() == batch.len()
                && failed
                    .iter()
                    .all(|(_, e)| matches!(e, SendError::Transient { .. }))
            {
                self.stalled += 1;
                if self.stalled >= STALLED_BATCHES {
                    // A broker that lost the producer's state (restarted empty, its log
                    // truncated) answers UNKNOWN_PRODUCER_ID, and librdkafka's epoch bump does
                    // not always recover from it: the next attempt starts from a new producer id.
                    tracing::warn!(receiver = %self.receiver, batches = self.stalled, "no record acknowledged for several batches in a row; starting a new producer");
                    self.renew()?;
                }
                return Err(failed.swap_remove(0).1);
            }
            self.stalled = 0;
            Err(SendError::Partial(failed))
        }
        .boxed()
    }
}

impl KafkaSink {
    /// atMostOnce: logs the records whose delivery reports say the brokers refused them (or the
    /// client dropped them), and forgets every report that came in. The rest wait for later.
    fn log_refused(&mut self) {
        let (mut lost, mut first) = (0usize, None);
        self.unconfirmed.retain_mut(|f| match f.now_or_never() {
            None => true,
            Some(Ok(Ok(_))) => false,
            Some(Ok(Err((e, _)))) => {
                lost += 1;
                first.get_or_insert_with(|| e.to_string());
                false
            }
            Some(Err(_)) => {
                lost += 1;
                first.get_or_insert_with(|| "client closed".to_owned());
                false
            }
        });
        if lost > 0 {
            tracing::warn!(receiver = %self.receiver, topic = %self.topic, lost, reason = first.unwrap_or_default(), "atMostOnce: records not delivered (not resent)");
        }
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        // The client purges its queue when dropped: give atMostOnce records their chance first.
        if self.semantics == Semantics::AtMostOnce
            && self.producer.in_flight_count() > 0
            && let Err(e) = self.producer.flush(self.flush)
        {
            tracing::warn!(receiver = %self.receiver, in_flight = self.producer.in_flight_count(), error = %e, "atMostOnce: records still queued when the receiver stopped are dropped");
        }
        self.log_refused();
    }
}
