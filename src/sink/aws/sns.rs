//! sns: `PublishBatch` (query protocol: a form, an XML answer), ten messages and 256 KiB per
//! request, requests of a batch sent concurrently (one after the other to a FIFO topic). The
//! region is the topic ARN's. Each message carries the occurrence key as the message attribute
//! `occurrence_key` (subscribers get it: SQS with raw delivery as a message attribute, others in
//! the notification's `MessageAttributes`). On a FIFO topic (`.fifo`) `MessageDeduplicationId`
//! is the occurrence key and `MessageGroupId` the involved object's uid.
//!
//! The answer's `Failed` members are read one by one: throttling or a fault that is not the
//! sender's is resent, anything else is permanent.

use futures::FutureExt;
use futures::future::BoxFuture;

use super::batch::{Aws, AwsBatch, read_by_id};
use super::client::{AwsError, Session, process_env};
use super::endpoint::SNS;
use super::{
    AwsCommon, KEY_ATTRIBUTE, MESSAGE_BATCH, fifo_ids, is_fifo, message, message_requests,
    parse_arn, xml,
};
use crate::config::yaml::{self, Ctx};
use crate::sink::http::batch::BatchSink;
use crate::sink::kind::{BuildEnv, Concurrency, Problem, ReceiverKind};
use crate::sink::layout::Encoding;
use crate::sink::partial::{Limits, Outcomes};
use crate::sink::{Doc, SendError, Sink};

/// The largest message a topic takes (its attributes included).
const MAX_MESSAGE: usize = 256 * 1024;

/// `receivers[].sns`.
#[derive(Debug, Clone, PartialEq)]
pub struct SnsConfig {
    pub topic_arn: String,
    /// `region`, `layout` and `deDot`.
    pub common: AwsCommon,
}

impl SnsConfig {
    pub fn fifo(&self) -> bool {
        is_fifo(&self.topic_arn)
    }

    fn arn_region(&self) -> &str {
        parse_arn(&self.topic_arn).map_or("", |a| a.region)
    }
}

impl ReceiverKind for SnsConfig {
    const NAME: &'static str = "sns";
    const CONCURRENCY: Concurrency = Concurrency::Lanes(4);
    const KEYS: &'static [&'static str] = &["topicARN", "region", "layout", "deDot"];
    /// Ten requests of ten messages, five at a time.
    const DEFAULT_MAX_EVENTS: usize = 100;

    fn parse(ctx: &mut Ctx, f: &yaml::Fields) -> Option<Self> {
        let topic = ctx.opt_string(f, "topicARN");
        match &topic {
            None => ctx.error(&f.path("topicARN"), f.line, "is required"),
            Some(t) if parse_arn(t).is_none_or(|a| a.service != "sns" || a.region.is_empty()) => {
                ctx.error(
                    &f.path("topicARN"),
                    f.get("topicARN").map_or(f.line, |n| n.line),
                    format!("{t:?} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"),
                )
            }
            _ => {}
        }
        let common = AwsCommon::parse(ctx, f, "layout");
        Some(SnsConfig {
            topic_arn: topic?,
            common: common?,
        })
    }

    fn encoding(&self) -> &Encoding {
        &self.common.encoding
    }

    fn warnings(&self) -> Vec<Problem> {
        let mut w = self.common.warnings();
        if let Some(r) = &self.common.region
            && r != self.arn_region()
        {
            w.push((
                "region",
                format!(
                    "the topic is in {}, whose endpoint is used (SNS takes a topic only in its own region), not {r}",
                    self.arn_region()
                ),
            ));
        }
        w
    }

    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>> {
        Ok(Box::new(SnsSink::build(self, env, &process_env)?))
    }
}

/// PublishBatch to one topic.
#[derive(Clone)]
pub struct Sns {
    topic_arn: String,
    fifo: bool,
}

pub type SnsSink = BatchSink<Aws<Sns>>;

impl SnsSink {
    pub fn build(
        cfg: &SnsConfig,
        env: &BuildEnv,
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Result<SnsSink, Vec<Problem>> {
        let kind = Sns {
            topic_arn: cfg.topic_arn.clone(),
            fifo: cfg.fifo(),
        };
        Aws::sink(&SNS, Some(cfg.arn_region()), env, vars, kind)
    }
}

impl AwsBatch for Sns {
    /// A message's form fields, without the `PublishBatchRequestEntries.member.N.` prefix.
    type Entry = Vec<(&'static str, String)>;
    /// The answer's XML.
    type Answer = String;
    const LIMITS: Limits = MESSAGE_BATCH;

    /// A FIFO topic's requests go one after the other, to keep its order.
    fn concurrency(&self) -> usize {
        message_requests(self.fifo)
    }

    fn encode(&mut self, doc: &Doc) -> Result<(Self::Entry, usize), SendError> {
        let (body, size) = message(doc, "SNS", MAX_MESSAGE)?;
        let mut fields = vec![
            ("Message", body.to_owned()),
            ("MessageAttributes.entry.1.Name", KEY_ATTRIBUTE.to_owned()),
            (
                "MessageAttributes.entry.1.Value.DataType",
                "String".to_owned(),
            ),
            (
                "MessageAttributes.entry.1.Value.StringValue",
                doc.key.to_string(),
            ),
        ];
        if self.fifo {
            let (group, dedup) = fifo_ids(doc);
            fields.push(("MessageGroupId", group));
            fields.push(("MessageDeduplicationId", dedup));
        }
        Ok((fields, size))
    }

    /// Each entry's `Id` is its position in the request.
    fn request<'a>(
        &'a self,
        session: &'a Session,
        entries: &'a [Self::Entry],
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        let mut form = reqwest::Url::parse("http://form/").expect("a valid URL");
        {
            let mut q = form.query_pairs_mut();
            q.append_pair("Action", "PublishBatch")
                .append_pair("Version", "2010-03-31")
                .append_pair("TopicArn", &self.topic_arn);
            for (j, fields) in entries.iter().enumerate() {
                let prefix = format!("PublishBatchRequestEntries.member.{}.", j + 1);
                q.append_pair(&format!("{prefix}Id"), &j.to_string());
                for (k, v) in fields {
                    q.append_pair(&format!("{prefix}{k}"), v);
                }
            }
        }
        let body = form.query().unwrap_or("").to_owned();
        session.query("PublishBatch", body).boxed()
    }

    fn read(&self, answer: String, docs: &[usize], outcomes: &mut Outcomes) {
        let members = |list: &str| {
            xml::element(&answer, list)
                .map(|l| xml::elements(l, "member"))
                .unwrap_or_default()
        };
        let text = |m: &str, tag: &str| xml::text(m, tag).unwrap_or_default();
        let failed = members("Failed").into_iter().map(|m| {
            let sender = xml::text(m, "SenderFault").is_none_or(|s| s != "false");
            (text(m, "Id"), text(m, "Code"), text(m, "Message"), sender)
        });
        let successful = members("Successful").into_iter().map(|m| text(m, "Id"));
        read_by_id("SNS PublishBatch", successful, failed, docs, outcomes);
    }
}

#[cfg(test)]
mod tests;
