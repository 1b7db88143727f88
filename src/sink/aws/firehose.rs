//! firehose: `PutRecordBatch` (JSON 1.1), up to 500 records and 4 MiB per request (a record at
//! most 1,000 KiB). Each record is the document followed by a newline, so the objects Firehose
//! writes (to S3 and others) are NDJSON; resmoio sent no delimiter, which glued the documents of
//! one object together. Firehose records have no attributes: the occurrence key travels in the
//! document (`metadata.uid` and `count` of the whole event).
//!
//! The answer's `RequestResponses` are read one by one: `ServiceUnavailableException` and
//! `InternalFailure` are resent, anything else is permanent.

use base64::Engine;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::batch::{Aws, AwsBatch, read_in_order};
use super::client::{AwsError, JSON_1_1, Session, process_env};
use super::endpoint::FIREHOSE;
use super::{AwsCommon, parse_arn};
use crate::config::yaml::{Ctx, Fields};
use crate::sink::http::batch::BatchSink;
use crate::sink::kind::{BuildEnv, Concurrency, Problem, ReceiverKind};
use crate::sink::layout::Encoding;
use crate::sink::partial::{Limits, Outcomes};
use crate::sink::{Doc, SendError, Sink};

/// PutRecordBatch's limits: 500 records, 4 MiB.
pub const LIMITS: Limits = Limits {
    entries: 500,
    bytes: 4 * 1024 * 1024,
};
/// A record, before base64.
const MAX_RECORD: usize = 1000 * 1024;
const CONCURRENCY: usize = 2;

/// `receivers[].firehose`.
#[derive(Debug, Clone, PartialEq)]
pub struct FirehoseConfig {
    pub delivery_stream: String,
    /// `region`, `layout` and `deDot`.
    pub common: AwsCommon,
}

impl ReceiverKind for FirehoseConfig {
    const NAME: &'static str = "firehose";
    const CONCURRENCY: Concurrency = Concurrency::Lanes(4);
    const KEYS: &'static [&'static str] = &["deliveryStreamName", "region", "layout", "deDot"];
    const DEFAULT_MAX_EVENTS: usize = 500;

    fn parse(ctx: &mut Ctx, f: &Fields) -> Option<Self> {
        let stream = ctx.opt_string(f, "deliveryStreamName");
        match &stream {
            None => ctx.error(&f.path("deliveryStreamName"), f.line, "is required"),
            Some(s) if s.starts_with("arn:") => ctx.error(
                &f.path("deliveryStreamName"),
                f.get("deliveryStreamName").map_or(f.line, |n| n.line),
                format!(
                    "{s:?}: the delivery stream's name, not its ARN ({})",
                    parse_arn(s)
                        .and_then(|a| a.resource.strip_prefix("deliverystream/"))
                        .unwrap_or("the part after deliverystream/")
                ),
            ),
            _ => {}
        }
        let common = AwsCommon::parse(ctx, f, "layout");
        Some(FirehoseConfig {
            delivery_stream: stream?,
            common: common?,
        })
    }

    fn encoding(&self) -> &Encoding {
        &self.common.encoding
    }

    fn warnings(&self) -> Vec<Problem> {
        self.common.warnings()
    }

    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>> {
        Ok(Box::new(FirehoseSink::build(self, env, &process_env)?))
    }
}

/// PutRecordBatch to one delivery stream.
#[derive(Clone)]
pub struct Firehose {
    stream: String,
}

pub type FirehoseSink = BatchSink<Aws<Firehose>>;

impl FirehoseSink {
    pub fn build(
        cfg: &FirehoseConfig,
        env: &BuildEnv,
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Result<FirehoseSink, Vec<Problem>> {
        let stream = cfg.delivery_stream.clone();
        let region = cfg.common.region.as_deref();
        Aws::sink(&FIREHOSE, region, env, vars, Firehose { stream })
    }
}

impl AwsBatch for Firehose {
    type Entry = Value;
    type Answer = Value;
    const LIMITS: Limits = LIMITS;

    fn concurrency(&self) -> usize {
        CONCURRENCY
    }

    /// The document and a newline.
    fn encode(&mut self, doc: &Doc) -> Result<(Value, usize), SendError> {
        let size = doc.body.len() + 1;
        if size > MAX_RECORD {
            return Err(SendError::Permanent {
                reason: format!(
                    "a record of {size} bytes is over Firehose's limit of {MAX_RECORD}"
                ),
            });
        }
        let mut data = Vec::with_capacity(size);
        data.extend_from_slice(&doc.body);
        data.push(b'\n');
        let data = base64::engine::general_purpose::STANDARD.encode(&data);
        Ok((json!({ "Data": data }), size))
    }

    fn request<'a>(
        &'a self,
        session: &'a Session,
        records: &'a [Value],
    ) -> BoxFuture<'a, Result<Value, AwsError>> {
        let body = json!({ "DeliveryStreamName": self.stream, "Records": records });
        session.call("Firehose_20150804.PutRecordBatch", JSON_1_1, &body)
    }

    fn read(&self, v: Value, docs: &[usize], outcomes: &mut Outcomes) {
        let what = "Firehose PutRecordBatch";
        read_in_order(what, "RequestResponses", &v, docs, outcomes);
    }
}

#[cfg(test)]
mod tests;
