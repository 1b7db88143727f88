//! eventbridge: `PutEvents` (JSON 1.1), ten entries and 256 KiB per request, requests of a batch
//! sent concurrently. An entry's `Detail` is the document (the whole event, or resmoio's
//! `details` map rendered like a layout), `Source` and `DetailType` are the configured templates
//! rendered per event, `Time` is the event's own time (so a replay is the same event), and
//! `EventBusName` the configured bus. EventBridge entries have no attributes: the occurrence key
//! travels in `Detail` (the whole event's `metadata.uid` and `count`).
//!
//! The answer's `Entries` are read one by one (resmoio ignored `FailedEntryCount`):
//! `ThrottlingException` and `InternalFailure` are resent, anything else (`MalformedDetail`,
//! `InvalidArgument`, `NotAuthorizedForSourceException`) is permanent.

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::AwsCommon;
use super::batch::{Aws, AwsBatch, read_in_order};
use super::client::{AwsError, JSON_1_1, Session, process_env};
use super::endpoint::EVENTBRIDGE;
use crate::config::yaml::{Ctx, Fields};
use crate::sink::http::batch::BatchSink;
use crate::sink::kind::{BuildEnv, Concurrency, Problem, ReceiverKind};
use crate::sink::layout::Encoding;
use crate::sink::partial::{Limits, Outcomes};
use crate::sink::render::{Renderer, named, required_template};
use crate::sink::{Doc, SendError, Sink};
use crate::template::Template;

/// PutEvents' limits: 10 entries, 256 KiB of entries (as AWS counts an entry's size).
pub const LIMITS: Limits = Limits {
    entries: 10,
    bytes: 256 * 1024,
};
const CONCURRENCY: usize = 5;

/// `receivers[].eventbridge`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventBridgeConfig {
    pub detail_type: Template,
    pub source: Template,
    pub event_bus_name: Option<String>,
    /// `region`, `details` (resmoio's layout of `Detail`) and `deDot`.
    pub common: AwsCommon,
}

impl ReceiverKind for EventBridgeConfig {
    const NAME: &'static str = "eventbridge";
    const CONCURRENCY: Concurrency = Concurrency::Lanes(4);
    const KEYS: &'static [&'static str] = &[
        "detailType",
        "details",
        "source",
        "eventBusName",
        "region",
        "deDot",
    ];
    /// Ten requests of ten entries, five at a time.
    const DEFAULT_MAX_EVENTS: usize = 100;

    fn parse(ctx: &mut Ctx, f: &Fields) -> Option<Self> {
        let required = |ctx: &mut Ctx, key: &str| {
            required_template(ctx, f, key, "PutEvents refuses an entry without it")
        };
        let detail_type = required(ctx, "detailType");
        let source = required(ctx, "source");
        if let Some(s) = &source
            && s.source().starts_with("aws.")
        {
            ctx.error(
                &f.path("source"),
                f.get("source").map_or(f.line, |n| n.line),
                "sources starting with \"aws.\" are reserved for AWS services",
            );
        }
        let event_bus_name = ctx.opt_string(f, "eventBusName");
        let common = AwsCommon::parse(ctx, f, "details");
        Some(EventBridgeConfig {
            detail_type: detail_type?,
            source: source?,
            event_bus_name,
            common: common?,
        })
    }

    fn encoding(&self) -> &Encoding {
        &self.common.encoding
    }

    fn templates(&self) -> Vec<(String, &str)> {
        let (detail_type, source) = (Some(&self.detail_type), Some(&self.source));
        named([("detailType", detail_type), ("source", source)]).collect()
    }

    fn warnings(&self) -> Vec<Problem> {
        self.common.warnings()
    }

    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>> {
        Ok(Box::new(EventBridgeSink::build(self, env, &process_env)?))
    }
}

/// PutEvents of rendered entries.
#[derive(Clone)]
pub struct EventBridge {
    cfg: EventBridgeConfig,
    renderer: Renderer,
}

pub type EventBridgeSink = BatchSink<Aws<EventBridge>>;

impl EventBridgeSink {
    pub fn build(
        cfg: &EventBridgeConfig,
        env: &BuildEnv,
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Result<EventBridgeSink, Vec<Problem>> {
        let kind = EventBridge {
            cfg: cfg.clone(),
            renderer: Renderer::new(env.receiver),
        };
        Aws::sink(&EVENTBRIDGE, cfg.common.region.as_deref(), env, vars, kind)
    }
}

impl AwsBatch for EventBridge {
    type Entry = Value;
    type Answer = Value;
    const LIMITS: Limits = LIMITS;

    fn concurrency(&self) -> usize {
        CONCURRENCY
    }

    /// `Source` and `DetailType` rendered, the document as `Detail`, the event's own time.
    fn encode(&mut self, doc: &Doc) -> Result<(Value, usize), SendError> {
        let detail = std::str::from_utf8(&doc.body).map_err(|e| SendError::Permanent {
            reason: format!("the document is not UTF-8 text: {e}"),
        })?;
        let data = doc.occ.value();
        let (dt, src) = (&self.cfg.detail_type, &self.cfg.source);
        let detail_type = self
            .renderer
            .render("detailType", dt, data, &doc.key, || dt.source().to_owned());
        let source = self
            .renderer
            .render("source", src, data, &doc.key, || src.source().to_owned());
        // As AWS counts it: the time (14), source, detail type, detail.
        let size = 14 + source.len() + detail_type.len() + detail.len();
        if size > LIMITS.bytes {
            return Err(SendError::Permanent {
                reason: format!(
                    "an entry of {size} bytes is over EventBridge's limit of {} bytes",
                    LIMITS.bytes
                ),
            });
        }
        let time = doc
            .occ
            .event
            .last_seen()
            .unwrap_or_else(jiff::Timestamp::now);
        let mut e = json!({
            "Source": source,
            "DetailType": detail_type,
            "Detail": detail,
            "Time": time.as_second(),
        });
        if let Some(bus) = &self.cfg.event_bus_name {
            e["EventBusName"] = json!(bus);
        }
        Ok((e, size))
    }

    fn request<'a>(
        &'a self,
        session: &'a Session,
        entries: &'a [Value],
    ) -> BoxFuture<'a, Result<Value, AwsError>> {
        session.call(
            "AWSEvents.PutEvents",
            JSON_1_1,
            &json!({ "Entries": entries }),
        )
    }

    fn read(&self, v: Value, docs: &[usize], outcomes: &mut Outcomes) {
        read_in_order("EventBridge PutEvents", "Entries", &v, docs, outcomes);
    }
}

#[cfg(test)]
mod tests;
