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

use super::batch::{self, Limits, Outcomes};
use super::client::{AwsClient, process_env};
use super::endpoint::SNS;
use super::{fifo_id, object_uid, parse_arn, parse_region, region_warnings, xml};
use crate::config::yaml::{self, Ctx};
use crate::sink::kind::{BuildEnv, Concurrency, Problem, ReceiverKind};
use crate::sink::layout::Encoding;
use crate::sink::{Doc, SendError, Sink};

/// PublishBatch's limits: 10 messages, 256 KiB in all (messages and attributes).
pub const LIMITS: Limits = Limits {
    entries: 10,
    bytes: 256 * 1024,
};
const MAX_MESSAGE: usize = 256 * 1024;
const CONCURRENCY: usize = 5;
const KEY_ATTRIBUTE: &str = "occurrence_key";

/// A message's form fields, without the `PublishBatchRequestEntries.member.N.` prefix.
type Fields = Vec<(&'static str, String)>;

/// `receivers[].sns`.
#[derive(Debug, Clone, PartialEq)]
pub struct SnsConfig {
    pub topic_arn: String,
    pub region: Option<String>,
    pub encoding: Encoding,
}

impl SnsConfig {
    pub fn fifo(&self) -> bool {
        self.topic_arn.ends_with(".fifo")
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
        let region = parse_region(ctx, f);
        let encoding = Encoding::parse(ctx, f, true);
        Some(SnsConfig {
            topic_arn: topic?,
            region,
            encoding: encoding?,
        })
    }

    fn encoding(&self) -> &Encoding {
        &self.encoding
    }

    fn warnings(&self) -> Vec<Problem> {
        let mut w = region_warnings(self.region.as_deref());
        if let Some(r) = &self.region
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

    fn check(&self, env: &BuildEnv) -> Vec<Problem> {
        SnsSink::build(self, env, &process_env)
            .err()
            .unwrap_or_default()
    }

    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>> {
        Ok(Box::new(SnsSink::build(self, env, &process_env)?))
    }
}

#[derive(Clone)]
pub struct SnsSink {
    client: AwsClient,
    topic_arn: String,
    fifo: bool,
}

impl SnsSink {
    pub fn build(
        cfg: &SnsConfig,
        env: &BuildEnv,
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Result<SnsSink, Vec<Problem>> {
        let client = AwsClient::build(&SNS, Some(cfg.arn_region()), env.delivery.timeout, vars)?;
        Ok(SnsSink {
            client,
            topic_arn: cfg.topic_arn.clone(),
            fifo: cfg.fifo(),
        })
    }

    /// The form fields of one message (`PublishBatchRequestEntries.member.N.` prefixed later)
    /// and its size, or why it cannot be sent.
    fn entry(&self, doc: &Doc) -> Result<(Fields, usize), SendError> {
        let body = std::str::from_utf8(&doc.body).map_err(|e| SendError::Permanent {
            reason: format!("the document is not UTF-8 text: {e}"),
        })?;
        let size = body.len() + KEY_ATTRIBUTE.len() + "String".len() + doc.key.len();
        if size > MAX_MESSAGE {
            return Err(SendError::Permanent {
                reason: format!(
                    "a message of {size} bytes is over SNS's limit of {MAX_MESSAGE} bytes"
                ),
            });
        }
        let mut fields = vec![
            ("Message", body.to_owned()),
            ("MessageAttributes.entry.1.Name", KEY_ATTRIBUTE.to_owned()),
            (
                "MessageAttributes.entry.1.Value.DataType",
                "String".to_owned(),
            ),
            (
                "MessageAttributes.entry.1.Value.StringValue",
                doc.key.clone(),
            ),
        ];
        if self.fifo {
            fields.push(("MessageGroupId", fifo_id(object_uid(doc))));
            fields.push(("MessageDeduplicationId", fifo_id(&doc.key)));
        }
        Ok((fields, size))
    }
}

/// A PublishBatch answer: `Failed` members recorded, entries in neither list resent.
fn read_answer(xml_text: &str, docs: &[usize], outcomes: &mut Outcomes) {
    const WHAT: &str = "SNS PublishBatch";
    let mut answered = vec![false; docs.len()];
    let id = |m: &str| {
        xml::text(m, "Id")
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|i| *i < docs.len())
    };
    if let Some(ok) = xml::element(xml_text, "Successful") {
        for m in xml::elements(ok, "member") {
            if let Some(i) = id(m) {
                answered[i] = true;
            }
        }
    }
    if let Some(failed) = xml::element(xml_text, "Failed") {
        for m in xml::elements(failed, "member") {
            if let Some(i) = id(m) {
                answered[i] = true;
                let code = xml::text(m, "Code").unwrap_or_default();
                let message = xml::text(m, "Message").unwrap_or_default();
                let sender = xml::text(m, "SenderFault").is_none_or(|s| s != "false");
                outcomes.fail_entry(docs[i], WHAT, &code, &message, sender);
            }
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

impl Sink for SnsSink {
    fn lane(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(self.clone()))
    }

    fn send<'a>(&'a mut self, batch: &'a [Doc]) -> BoxFuture<'a, Result<(), SendError>> {
        async move {
            if batch.is_empty() {
                return Ok(());
            }
            let session = self.client.session().await?;
            let mut outcomes = Outcomes::new(batch.len());
            // (document index, fields, size) of what can be sent.
            let mut entries = Vec::with_capacity(batch.len());
            for (i, doc) in batch.iter().enumerate() {
                match self.entry(doc) {
                    Ok((fields, size)) => entries.push((i, fields, size)),
                    Err(err) => outcomes.fail(i, err),
                }
            }
            let sizes: Vec<usize> = entries.iter().map(|(_, _, s)| *s).collect();
            let ranges = batch::chunks(&sizes, LIMITS);
            let concurrency = if self.fifo { 1 } else { CONCURRENCY };
            let (session, topic, entries_ref) = (&session, &self.topic_arn, &entries);
            let results = batch::run(ranges, concurrency, |r| async move {
                let mut form = reqwest::Url::parse("http://form/").expect("a valid URL");
                {
                    let mut q = form.query_pairs_mut();
                    q.append_pair("Action", "PublishBatch")
                        .append_pair("Version", "2010-03-31")
                        .append_pair("TopicArn", topic);
                    for (j, (_, fields, _)) in entries_ref[r].iter().enumerate() {
                        let prefix = format!("PublishBatchRequestEntries.member.{}.", j + 1);
                        q.append_pair(&format!("{prefix}Id"), &j.to_string());
                        for (k, v) in fields {
                            q.append_pair(&format!("{prefix}{k}"), v);
                        }
                    }
                }
                let body = form.query().unwrap_or("").to_owned();
                session.query("PublishBatch", body).await
            })
            .await;
            for (range, result) in results {
                let docs: Vec<usize> = entries[range].iter().map(|(i, _, _)| *i).collect();
                match result {
                    Ok(text) => read_answer(&text, &docs, &mut outcomes),
                    Err(e) => outcomes.fail_all(docs, &e),
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
