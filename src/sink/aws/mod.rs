//! The AWS receivers — `sqs`, `sns`, `kinesis`, `firehose`, `eventbridge`, `opscenter` — and what
//! they share with each other and with elasticsearch/opensearch's SigV4 for Amazon OpenSearch:
//!
//! - credentials.rs, profile.rs: credentials from the standard chain (environment, shared
//!   files, web identity/IRSA, the container endpoint/EKS Pod Identity, instance metadata);
//! - endpoint.rs: the region and each service's endpoint (`AWS_ENDPOINT_URL_<SERVICE>`, …);
//! - signing.rs: SigV4 (`aws-sigv4`);
//! - client.rs: the JSON and query protocols, the services' errors and which are retried;
//! - batch.rs: how the batch APIs answer per entry;
//! - here: [`AwsCommon`], the keys every kind's config has (`region`, the layout, `deDot`), and
//!   what the message kinds share (FIFO ids, the occurrence-key attribute, ARNs).
//!
//! The batch kinds (sqs, sns, kinesis, firehose, eventbridge) are `http::batch::BatchApi`s:
//! their limits, entries, request and answer; the sending, splitting and settling is shared with
//! the Google kinds. opscenter creates one OpsItem per request and sends on its own.
//!
//! Why `aws-sigv4` + reqwest rather than the `aws-sdk-*` crates: the receivers use one call each
//! (SendMessageBatch, PublishBatch, PutRecords, PutRecordBatch, PutEvents, CreateOpsItem) and
//! must read every entry of a batch answer themselves anyway; the SDKs would add six service
//! crates, the smithy runtime and a second HTTP stack (hyper 0.14 or their own client with its
//! own TLS provider choice), several megabytes of binary, and a rust-version above the
//! workspace's. The signature, the part worth not writing, is the SDK's own crate.

pub mod batch;
pub mod client;
pub mod credentials;
pub mod endpoint;
pub mod eventbridge;
#[cfg(test)]
mod fake;
pub mod firehose;
pub mod kinesis;
pub mod opscenter;
pub mod profile;
pub mod signing;
pub mod sns;
pub mod sqs;
mod xml;

pub use signing::Signer;

use super::kind::Problem;
use super::layout::Encoding;
use super::partial::Limits;
use super::{Doc, SendError};
use crate::config::yaml::{Ctx, Fields};

/// What every AWS kind's config has besides its own resource: the `region` and how occurrences
/// become documents. Each kind's config embeds it (`common`), so the six parse, check and read
/// these keys one way.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsCommon {
    /// Unset: the environment's, then the profile's.
    pub region: Option<String>,
    /// The layout (`layout`, eventbridge's `details`) and `deDot`; opscenter has neither.
    pub encoding: Encoding,
}

impl AwsCommon {
    /// `region`, and the layout under `layout_key` with `deDot`. Every problem goes to `ctx`;
    /// `None` when the layout has one (a bad `region` is recorded there and left unset).
    pub fn parse(ctx: &mut Ctx, f: &Fields, layout_key: &str) -> Option<Self> {
        let region = ctx.opt_string(f, "region");
        let encoding = Encoding::parse_key(ctx, f, layout_key, true)?;
        Some(AwsCommon { region, encoding })
    }

    /// `region` alone, for opscenter: its OpsItem is made of its templates, not of a document.
    pub fn parse_region_only(ctx: &mut Ctx, f: &Fields) -> Self {
        AwsCommon {
            region: ctx.opt_string(f, "region"),
            encoding: Encoding::default(),
        }
    }

    /// The warnings about these keys, to which a kind adds those about its own.
    pub fn warnings(&self) -> Vec<Problem> {
        region_warnings(self.region.as_deref())
    }
}

/// A `region` that is not shaped like one (resmoio's README has `us-east1`): the endpoint would
/// not resolve. A warning, since new regions keep appearing.
pub fn region_warnings(region: Option<&str>) -> Vec<Problem> {
    match region {
        Some(r) if !endpoint::looks_like_region(r) => vec![(
            "region",
            format!("{r:?} does not look like an AWS region (like us-east-1)"),
        )],
        _ => Vec::new(),
    }
}

/// The involved object's uid (the event's own when the object has none): the partition key,
/// message group or ordering key of an occurrence, so one object's occurrences stay in order.
pub fn object_uid(doc: &Doc) -> &str {
    let e = &doc.occ.event;
    e.involved_object
        .uid
        .as_deref()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| e.uid())
}

/// An SQS/SNS FIFO id (`MessageGroupId`, `MessageDeduplicationId`): up to 128 characters,
/// alphanumeric or punctuation. Anything else (never an occurrence key of a Kubernetes uid) is
/// replaced by its SHA-256, which keeps it stable across replays.
pub fn fifo_id(s: &str) -> String {
    let ok = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        s.to_owned()
    } else {
        hex_sha256(s.as_bytes())
    }
}

/// SQS SendMessageBatch's and SNS PublishBatch's limits: 10 messages, 256 KiB in all (for SQS
/// the classic queue size limit: a queue created with a larger `MaximumMessageSize` still takes
/// them).
pub const MESSAGE_BATCH: Limits = Limits {
    entries: 10,
    bytes: 256 * 1024,
};

/// Requests of one batch in flight at once to a queue or topic: five, or one after the other to
/// a FIFO one, which keeps its order.
pub fn message_requests(fifo: bool) -> usize {
    if fifo { 1 } else { 5 }
}

/// A FIFO queue or topic (its name ends in `.fifo`).
pub fn is_fifo(name: &str) -> bool {
    name.ends_with(".fifo")
}

/// The message attribute of SQS and SNS messages that carries the occurrence key.
pub const KEY_ATTRIBUTE: &str = "occurrence_key";

/// An SQS or SNS message: the document as text and the message's size as `service` counts it
/// (the body and the occurrence-key attribute), or why it cannot be sent.
pub fn message<'a>(doc: &'a Doc, service: &str, max: usize) -> Result<(&'a str, usize), SendError> {
    let body = std::str::from_utf8(&doc.body).map_err(|e| SendError::Permanent {
        reason: format!("the document is not UTF-8 text: {e}"),
    })?;
    let size = body.len() + KEY_ATTRIBUTE.len() + "String".len() + doc.key.len();
    if size > max {
        return Err(SendError::Permanent {
            reason: format!("a message of {size} bytes is over {service}'s limit of {max} bytes"),
        });
    }
    Ok((body, size))
}

/// A FIFO message's `MessageGroupId` (the involved object: its occurrences in order) and
/// `MessageDeduplicationId` (the occurrence key: a replay is dropped).
pub fn fifo_ids(doc: &Doc) -> (String, String) {
    (fifo_id(object_uid(doc)), fifo_id(&doc.key))
}

/// The parts of an ARN `arn:partition:service:region:account:resource`.
#[derive(Debug, PartialEq)]
pub struct Arn<'a> {
    pub service: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub resource: &'a str,
}

pub fn parse_arn(s: &str) -> Option<Arn<'_>> {
    let mut parts = s.splitn(6, ':');
    if parts.next()? != "arn" {
        return None;
    }
    let _partition = parts.next()?;
    let arn = Arn {
        service: parts.next()?,
        region: parts.next()?,
        account: parts.next()?,
        resource: parts.next()?,
    };
    (!arn.service.is_empty() && !arn.resource.is_empty()).then_some(arn)
}

/// A key that is used as it is when it has 1 to `max` characters, else replaced by its SHA-256
/// (stable across replays, so the same object keeps the same partition).
pub fn bounded_key(s: &str, max: usize) -> String {
    if !s.is_empty() && s.chars().count() <= max {
        s.to_owned()
    } else {
        hex_sha256(s.as_bytes())
    }
}

pub fn hex_sha256(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_ids_are_kept_when_valid_and_hashed_otherwise() {
        let key = "0b5c7e0e-8f0a-4b8e-9b1c-1c2d3e4f5a6b:12";
        assert_eq!(fifo_id(key), key);
        let long = "x".repeat(129);
        assert_eq!(fifo_id(&long).len(), 64);
        assert_eq!(fifo_id(&long), fifo_id(&long));
        assert_eq!(fifo_id("a b").len(), 64);
        assert!(region_warnings(Some("us-east1")).len() == 1);
        assert!(region_warnings(Some("us-east-1")).is_empty() && region_warnings(None).is_empty());
        let a = parse_arn("arn:aws:sns:us-east-1:1234567890123456:mytopic").unwrap();
        assert_eq!(
            (a.service, a.region, a.account, a.resource),
            ("sns", "us-east-1", "1234567890123456", "mytopic")
        );
        assert_eq!(
            parse_arn("arn:aws:kinesis:eu-west-1:1:stream/s")
                .unwrap()
                .resource,
            "stream/s"
        );
        assert!(parse_arn("events").is_none() && parse_arn("arn:aws:sns").is_none());
        assert_eq!(bounded_key("abc", 256), "abc");
        assert_eq!(bounded_key(&"k".repeat(257), 256).len(), 64);
    }
}
