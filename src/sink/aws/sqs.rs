//! sqs: `SendMessageBatch` (JSON protocol), ten messages or 256 KiB per request, requests of a
//! batch sent concurrently (one after the other for a FIFO queue, to keep its order). The queue
//! URL comes from `GetQueueUrl` on the first send and is kept (`queueName` may also be the URL).
//!
//! Each message carries the occurrence key as the message attribute `occurrence_key`. On a FIFO
//! queue (`.fifo`) `MessageDeduplicationId` is the occurrence key, so SQS drops a replay within
//! its five-minute deduplication window, and `MessageGroupId` is the involved object's uid, so
//! one object's occurrences are delivered in order.
//!
//! An answer's `Failed` entries are read one by one: throttling or a fault that is not the
//! sender's is resent, anything else (an invalid body, a message over the queue's size limit)
//! is permanent.

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::batch::{self, Limits, Outcomes};
use super::client::{AwsClient, AwsError, JSON_1_0, Session, process_env};
use super::endpoint::SQS;
use super::{fifo_id, object_uid, parse_region, region_warnings};
use crate::config::yaml::{Ctx, Fields};
use crate::sink::kind::{BuildEnv, Concurrency, Problem, ReceiverKind};
use crate::sink::layout::Encoding;
use crate::sink::{Doc, SendError, Sink};

/// SendMessageBatch's limits: 10 entries; 256 KiB in all (the classic queue size limit: a queue
/// created with a larger `MaximumMessageSize` still takes them).
pub const LIMITS: Limits = Limits {
    entries: 10,
    bytes: 256 * 1024,
};
/// The largest message any queue takes (sent alone when over [`LIMITS`]`.bytes`).
const MAX_MESSAGE: usize = 1024 * 1024;
/// Requests of one batch in flight at once (standard queues).
const CONCURRENCY: usize = 5;
const KEY_ATTRIBUTE: &str = "occurrence_key";

/// `receivers[].sqs`.
#[derive(Debug, Clone, PartialEq)]
pub struct SqsConfig {
    /// The queue's name (`queueName`), or its URL.
    pub queue: String,
    pub region: Option<String>,
    pub encoding: Encoding,
}

impl SqsConfig {
    pub fn fifo(&self) -> bool {
        self.queue.ends_with(".fifo")
    }

    fn is_url(&self) -> bool {
        self.queue.starts_with("https://") || self.queue.starts_with("http://")
    }
}

/// SQS queue names: 1 to 80 alphanumeric characters, `-` or `_`, plus `.fifo` for FIFO queues.
fn valid_queue_name(name: &str) -> bool {
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    !base.is_empty()
        && name.len() <= 80
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl ReceiverKind for SqsConfig {
    const NAME: &'static str = "sqs";
    const CONCURRENCY: Concurrency = Concurrency::Lanes(4);
    const KEYS: &'static [&'static str] = &["queueName", "region", "layout", "deDot"];
    /// Ten requests of ten messages, five at a time.
    const DEFAULT_MAX_EVENTS: usize = 100;

    fn parse(ctx: &mut Ctx, f: &Fields) -> Option<Self> {
        let queue = ctx.opt_string(f, "queueName");
        if queue.is_none() {
            ctx.error(&f.path("queueName"), f.line, "is required");
        }
        let region = parse_region(ctx, f);
        let encoding = Encoding::parse(ctx, f, true);
        Some(SqsConfig {
            queue: queue?,
            region,
            encoding: encoding?,
        })
    }

    fn encoding(&self) -> &Encoding {
        &self.encoding
    }

    fn warnings(&self) -> Vec<Problem> {
        let mut w = region_warnings(self.region.as_deref());
        if !self.is_url() && !valid_queue_name(&self.queue) {
            w.push((
                "queueName",
                format!(
                    "{:?} is not an SQS queue name (1-80 letters, digits, - or _, and .fifo for a \
                     FIFO queue): GetQueueUrl will fail",
                    self.queue
                ),
            ));
        }
        w
    }

    fn check(&self, env: &BuildEnv) -> Vec<Problem> {
        SqsSink::build(self, env, &process_env)
            .err()
            .unwrap_or_default()
    }

    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>> {
        Ok(Box::new(SqsSink::build(self, env, &process_env)?))
    }
}

#[derive(Clone)]
pub struct SqsSink {
    client: AwsClient,
    queue: String,
    /// The queue URL, once known.
    url: Option<String>,
    fifo: bool,
}

impl SqsSink {
    /// With the AWS environment `vars` (`std::env::var` in production).
    pub fn build(
        cfg: &SqsConfig,
        env: &BuildEnv,
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Result<SqsSink, Vec<Problem>> {
        let client = AwsClient::build(&SQS, cfg.region.as_deref(), env.delivery.timeout, vars)?;
        tracing::debug!(receiver = env.receiver, endpoint = %client.endpoint, credentials = %client.credentials_source(), "sqs client");
        Ok(SqsSink {
            client,
            url: cfg.is_url().then(|| cfg.queue.clone()),
            queue: cfg.queue.clone(),
            fifo: cfg.fifo(),
        })
    }

    async fn queue_url(&mut self, session: &Session) -> Result<String, AwsError> {
        if let Some(u) = &self.url {
            return Ok(u.clone());
        }
        let body = serde_json::to_vec(&json!({ "QueueName": self.queue })).expect("JSON");
        let v = session
            .json("AmazonSQS.GetQueueUrl", JSON_1_0, body)
            .await?;
        let url = v
            .get("QueueUrl")
            .and_then(Value::as_str)
            .ok_or_else(|| AwsError {
                action: format!("SQS GetQueueUrl at {}", session.endpoint),
                status: None,
                headers: Default::default(),
                code: String::new(),
                message: format!("no QueueUrl in the answer: {v}"),
                sender_fault: false,
            })?
            .to_owned();
        self.url = Some(url.clone());
        Ok(url)
    }

    /// One message per document, or why it cannot be sent.
    fn entry(&self, doc: &Doc) -> Result<(Value, usize), SendError> {
        let body = std::str::from_utf8(&doc.body).map_err(|e| SendError::Permanent {
            reason: format!("the document is not UTF-8 text: {e}"),
        })?;
        let size = body.len() + KEY_ATTRIBUTE.len() + "String".len() + doc.key.len();
        if size > MAX_MESSAGE {
            return Err(SendError::Permanent {
                reason: format!(
                    "a message of {size} bytes is over SQS's limit of {MAX_MESSAGE} bytes"
                ),
            });
        }
        let mut e = json!({
            "MessageBody": body,
            "MessageAttributes": {
                KEY_ATTRIBUTE: {"DataType": "String", "StringValue": doc.key},
            },
        });
        if self.fifo {
            e["MessageGroupId"] = json!(fifo_id(object_uid(doc)));
            e["MessageDeduplicationId"] = json!(fifo_id(&doc.key));
        }
        Ok((e, size))
    }
}

/// Every entry of a SendMessageBatch answer, by request position: `Failed` ones recorded.
fn read_answer(v: &Value, docs: &[usize], outcomes: &mut Outcomes) {
    const WHAT: &str = "SQS SendMessageBatch";
    let mut answered = vec![false; docs.len()];
    let id = |e: &Value| {
        e.get("Id")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|i| *i < docs.len())
    };
    for s in v
        .get("Successful")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(i) = id(s) {
            answered[i] = true;
        }
    }
    for f in v
        .get("Failed")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(i) = id(f) {
            answered[i] = true;
            let s = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("");
            let sender = f
                .get("SenderFault")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            outcomes.fail_entry(docs[i], WHAT, s("Code"), s("Message"), sender);
        }
    }
    for (i, done) in answered.into_iter().enumerate() {
        if !done {
            outcomes.fail(
                docs[i],
                SendError::Transient {
                    reason: format!("{WHAT}: entry {i} is in neither Successful nor Failed"),
                    retry_after: None,
                },
            );
        }
    }
}

impl Sink for SqsSink {
    fn lane(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(self.clone()))
    }

    fn send<'a>(&'a mut self, batch: &'a [Doc]) -> BoxFuture<'a, Result<(), SendError>> {
        async move {
            if batch.is_empty() {
                return Ok(());
            }
            let session = self.client.session().await?;
            let url = match self.queue_url(&session).await {
                Ok(u) => u,
                Err(e) => {
                    if e.credentials_expired() {
                        self.client.invalidate_credentials();
                    }
                    return Err(e.to_send_error());
                }
            };
            let mut outcomes = Outcomes::new(batch.len());
            // (document index, entry, size) of what can be sent.
            let mut entries = Vec::with_capacity(batch.len());
            for (i, doc) in batch.iter().enumerate() {
                match self.entry(doc) {
                    Ok((e, size)) => entries.push((i, e, size)),
                    Err(err) => outcomes.fail(i, err),
                }
            }
            let sizes: Vec<usize> = entries.iter().map(|(_, _, s)| *s).collect();
            let ranges = batch::chunks(&sizes, LIMITS);
            let concurrency = if self.fifo { 1 } else { CONCURRENCY };
            let (session, url, entries_ref) = (&session, &url, &entries);
            let results = batch::run(ranges, concurrency, |r| async move {
                let list: Vec<Value> = entries_ref[r]
                    .iter()
                    .enumerate()
                    .map(|(j, (_, e, _))| {
                        let mut e = e.clone();
                        e["Id"] = json!(j.to_string());
                        e
                    })
                    .collect();
                let body =
                    serde_json::to_vec(&json!({ "QueueUrl": url, "Entries": list })).expect("JSON");
                session
                    .json("AmazonSQS.SendMessageBatch", JSON_1_0, body)
                    .await
            })
            .await;
            for (range, result) in results {
                let docs: Vec<usize> = entries[range].iter().map(|(i, _, _)| *i).collect();
                match result {
                    Ok(v) => read_answer(&v, &docs, &mut outcomes),
                    Err(e) => {
                        if e.code == "QueueDoesNotExist"
                            || e.code == "AWS.SimpleQueueService.NonExistentQueue"
                        {
                            // Recreated under a new URL, perhaps: ask again next time.
                            if !self.queue.starts_with("http") {
                                self.url = None;
                            }
                        }
                        outcomes.fail_all(docs, &e);
                    }
                }
            }
            if outcomes.credentials_expired {
                self.client.invalidate_credentials();
            }
            outcomes.settle()
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests;
