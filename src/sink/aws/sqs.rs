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

use super::batch::{Aws, AwsBatch, read_by_id};
use super::client::{AwsError, JSON_1_0, Session, process_env};
use super::endpoint::SQS;
use super::{
    AwsCommon, KEY_ATTRIBUTE, MESSAGE_BATCH, fifo_ids, is_fifo, message, message_requests,
};
use crate::config::yaml::{Ctx, Fields};
use crate::sink::http::batch::BatchSink;
use crate::sink::kind::{BuildEnv, Concurrency, Problem, ReceiverKind};
use crate::sink::layout::Encoding;
use crate::sink::partial::{Limits, Outcomes};
use crate::sink::{Doc, SendError, Sink};

/// The largest message any queue takes (sent alone when over `MESSAGE_BATCH.bytes`).
const MAX_MESSAGE: usize = 1024 * 1024;

/// `receivers[].sqs`.
#[derive(Debug, Clone, PartialEq)]
pub struct SqsConfig {
    /// The queue's name (`queueName`), or its URL.
    pub queue: String,
    /// `region`, `layout` and `deDot`.
    pub common: AwsCommon,
}

impl SqsConfig {
    pub fn fifo(&self) -> bool {
        is_fifo(&self.queue)
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
        let common = AwsCommon::parse(ctx, f, "layout");
        Some(SqsConfig {
            queue: queue?,
            common: common?,
        })
    }

    fn encoding(&self) -> &Encoding {
        &self.common.encoding
    }

    fn warnings(&self) -> Vec<Problem> {
        let mut w = self.common.warnings();
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

    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>> {
        Ok(Box::new(SqsSink::build(self, env, &process_env)?))
    }
}

/// SendMessageBatch to one queue.
#[derive(Clone)]
pub struct Sqs {
    queue: String,
    /// The queue URL, once known.
    url: Option<String>,
    fifo: bool,
}

pub type SqsSink = BatchSink<Aws<Sqs>>;

impl SqsSink {
    /// With the AWS environment `vars` (`std::env::var` in production).
    pub fn build(
        cfg: &SqsConfig,
        env: &BuildEnv,
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Result<SqsSink, Vec<Problem>> {
        let kind = Sqs {
            url: cfg.is_url().then(|| cfg.queue.clone()),
            queue: cfg.queue.clone(),
            fifo: cfg.fifo(),
        };
        Aws::sink(&SQS, cfg.common.region.as_deref(), env, vars, kind)
    }
}

impl AwsBatch for Sqs {
    type Entry = Value;
    type Answer = Value;
    const LIMITS: Limits = MESSAGE_BATCH;

    /// A FIFO queue's requests go one after the other, to keep its order.
    fn concurrency(&self) -> usize {
        message_requests(self.fifo)
    }

    /// The queue's URL, from GetQueueUrl the first time (`queueName` may be the URL).
    fn prepare<'a>(&'a mut self, session: &'a Session) -> BoxFuture<'a, Result<(), AwsError>> {
        async move {
            if self.url.is_some() {
                return Ok(());
            }
            let body = json!({ "QueueName": self.queue });
            let v = session
                .call("AmazonSQS.GetQueueUrl", JSON_1_0, &body)
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
                })?;
            self.url = Some(url.to_owned());
            Ok(())
        }
        .boxed()
    }

    fn encode(&mut self, doc: &Doc) -> Result<(Value, usize), SendError> {
        let (body, size) = message(doc, "SQS", MAX_MESSAGE)?;
        let mut e = json!({
            "MessageBody": body,
            "MessageAttributes": {
                KEY_ATTRIBUTE: {"DataType": "String", "StringValue": &*doc.key},
            },
        });
        if self.fifo {
            let (group, dedup) = fifo_ids(doc);
            e["MessageGroupId"] = json!(group);
            e["MessageDeduplicationId"] = json!(dedup);
        }
        Ok((e, size))
    }

    /// Each entry's `Id` is its position in the request.
    fn request<'a>(
        &'a self,
        session: &'a Session,
        entries: &'a [Value],
    ) -> BoxFuture<'a, Result<Value, AwsError>> {
        let list: Vec<Value> = entries
            .iter()
            .enumerate()
            .map(|(j, e)| {
                let mut e = e.clone();
                e["Id"] = json!(j.to_string());
                e
            })
            .collect();
        let body = json!({ "QueueUrl": self.url, "Entries": list });
        session.call("AmazonSQS.SendMessageBatch", JSON_1_0, &body)
    }

    fn read(&self, v: Value, docs: &[usize], outcomes: &mut Outcomes) {
        let list = |k: &str| v.get(k).and_then(Value::as_array).into_iter().flatten();
        let s = |e: &'_ Value, k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let failed = list("Failed").map(|f| {
            let sender = f.get("SenderFault").and_then(Value::as_bool);
            (
                s(f, "Id"),
                s(f, "Code"),
                s(f, "Message"),
                sender.unwrap_or(true),
            )
        });
        let successful = list("Successful").map(|e| s(e, "Id"));
        read_by_id("SQS SendMessageBatch", successful, failed, docs, outcomes);
    }

    fn failed(&mut self, e: &AwsError) {
        // Recreated under a new URL, perhaps: ask again next time.
        let gone = matches!(
            e.code.as_str(),
            "QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue"
        );
        if gone && !self.queue.starts_with("http") {
            self.url = None;
        }
    }
}

#[cfg(test)]
mod tests;
