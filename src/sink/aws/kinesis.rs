//! kinesis: `PutRecords` (JSON 1.1), up to 500 records and 5 MiB per request (a record and its
//! key at most 1 MiB), one request after the other so each object's records keep their order.
//! The partition key is the involved object's uid: one object's occurrences go to one shard, in
//! order. The record is the document; Kinesis records have no attributes, so the occurrence key
//! travels in it (`metadata.uid` and `count` of the whole event, or whatever the layout keeps).
//!
//! The answer's `Records` are read one by one: `ProvisionedThroughputExceededException`,
//! `InternalFailure` and KMS throttling are resent, anything else is permanent.

use base64::Engine;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::batch::{Aws, AwsBatch, read_in_order};
use super::client::{AwsError, JSON_1_1, Session, process_env};
use super::endpoint::KINESIS;
use super::{AwsCommon, bounded_key, object_uid, parse_arn};
use crate::config::yaml::{Ctx, Fields};
use crate::sink::http::batch::BatchSink;
use crate::sink::kind::{BuildEnv, Concurrency, Problem, ReceiverKind};
use crate::sink::layout::Encoding;
use crate::sink::partial::{Limits, Outcomes};
use crate::sink::{Doc, SendError, Sink};

/// PutRecords' limits: 500 records, 5 MiB of data and partition keys.
pub const LIMITS: Limits = Limits {
    entries: 500,
    bytes: 5 * 1024 * 1024,
};
/// A record's data and partition key.
const MAX_RECORD: usize = 1024 * 1024;
const MAX_PARTITION_KEY: usize = 256;

/// `receivers[].kinesis`.
#[derive(Debug, Clone, PartialEq)]
pub struct KinesisConfig {
    /// The stream's name (`streamName`), or its ARN.
    pub stream: String,
    /// `region`, `layout` and `deDot`.
    pub common: AwsCommon,
}

impl KinesisConfig {
    fn arn_region(&self) -> Option<&str> {
        parse_arn(&self.stream).map(|a| a.region)
    }
}

impl ReceiverKind for KinesisConfig {
    const NAME: &'static str = "kinesis";
    const CONCURRENCY: Concurrency = Concurrency::Lanes(4);
    const KEYS: &'static [&'static str] = &["streamName", "region", "layout", "deDot"];
    const DEFAULT_MAX_EVENTS: usize = 500;

    fn parse(ctx: &mut Ctx, f: &Fields) -> Option<Self> {
        let stream = ctx.opt_string(f, "streamName");
        let line = f.get("streamName").map_or(f.line, |n| n.line);
        match &stream {
            None => ctx.error(&f.path("streamName"), f.line, "is required"),
            Some(s)
                if s.starts_with("arn:") && parse_arn(s).is_none_or(|a| a.service != "kinesis") =>
            {
                ctx.error(
                    &f.path("streamName"),
                    line,
                    format!("{s:?} is not a Kinesis stream ARN (arn:aws:kinesis:REGION:ACCOUNT:stream/NAME)"),
                );
            }
            _ => {}
        }
        let common = AwsCommon::parse(ctx, f, "layout");
        Some(KinesisConfig {
            stream: stream?,
            common: common?,
        })
    }

    fn encoding(&self) -> &Encoding {
        &self.common.encoding
    }

    fn warnings(&self) -> Vec<Problem> {
        let mut w = self.common.warnings();
        let name = &self.stream;
        let valid = name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !name.starts_with("arn:") && !valid {
            w.push((
                "streamName",
                format!("{name:?} is not a Kinesis stream name (1-128 of a-z, A-Z, 0-9, _ . -)"),
            ));
        }
        if let (Some(r), Some(a)) = (&self.common.region, self.arn_region())
            && r != a
        {
            w.push((
                "region",
                format!("the stream's ARN is in {a}, which is used instead of {r}"),
            ));
        }
        w
    }

    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>> {
        Ok(Box::new(KinesisSink::build(self, env, &process_env)?))
    }
}

/// PutRecords to one stream.
#[derive(Clone)]
pub struct Kinesis {
    /// `StreamName` or `StreamARN`, and its value.
    stream: (&'static str, String),
}

pub type KinesisSink = BatchSink<Aws<Kinesis>>;

impl KinesisSink {
    pub fn build(
        cfg: &KinesisConfig,
        env: &BuildEnv,
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Result<KinesisSink, Vec<Problem>> {
        let region = cfg.arn_region().or(cfg.common.region.as_deref());
        let field = if parse_arn(&cfg.stream).is_some() {
            "StreamARN"
        } else {
            "StreamName"
        };
        let stream = (field, cfg.stream.clone());
        Aws::sink(&KINESIS, region, env, vars, Kinesis { stream })
    }
}

impl AwsBatch for Kinesis {
    type Entry = Value;
    type Answer = Value;
    const LIMITS: Limits = LIMITS;

    /// The partition key is the involved object's uid.
    fn encode(&mut self, doc: &Doc) -> Result<(Value, usize), SendError> {
        let key = bounded_key(object_uid(doc), MAX_PARTITION_KEY);
        let size = doc.body.len() + key.len();
        if size > MAX_RECORD {
            return Err(SendError::Permanent {
                reason: format!(
                    "a record of {size} bytes (data and partition key) is over Kinesis's limit of {MAX_RECORD}"
                ),
            });
        }
        let data = base64::engine::general_purpose::STANDARD.encode(&doc.body);
        Ok((json!({ "Data": data, "PartitionKey": key }), size))
    }

    fn request<'a>(
        &'a self,
        session: &'a Session,
        records: &'a [Value],
    ) -> BoxFuture<'a, Result<Value, AwsError>> {
        let (field, stream) = &self.stream;
        let mut body = json!({ "Records": records });
        body[*field] = json!(stream);
        session.call("Kinesis_20131202.PutRecords", JSON_1_1, &body)
    }

    fn read(&self, v: Value, docs: &[usize], outcomes: &mut Outcomes) {
        read_in_order("Kinesis PutRecords", "Records", &v, docs, outcomes);
    }
}

#[cfg(test)]
mod tests;
