//! opscenter: one `CreateOpsItem` (Systems Manager, JSON 1.1) per occurrence, one after the
//! other. resmoio's templated keys (`title`, `description`, `source`, `category`, `severity`,
//! `priority`, `operationalData`, `tags`, `relatedOpsItems`, `notifications`), rendered per event
//! and cut to OpsCenter's limits. Every OpsItem carries the occurrence key in its operational
//! data: `occurrence_key`, and `/aws/dedup` = `{"dedupString": key}`, with which OpsCenter
//! deduplicates a replay into the open OpsItem instead of opening a second one.
//!
//! A template that fails to render is sent as written (logged once per key); a `priority` that
//! renders to something other than 1-5 is left out, with a warning (resmoio dropped the event).
//! `relatedOpsItems` are the OpsItem ids the list renders to (resmoio filled them from the
//! `operationalData` values, a bug).

use futures::FutureExt;
use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use serde_json::{Map, Value, json};

use super::AwsCommon;
use super::client::{AwsClient, JSON_1_1, process_env};
use super::endpoint::SSM;
use crate::config::yaml::{Ctx, Fields};
use crate::sink::kind::{BuildEnv, Concurrency, Problem, ReceiverKind};
use crate::sink::layout::Encoding;
use crate::sink::render::{
    DEFAULT_MESSAGE, Renderer, keyed, listed, named, opt_template, required_template,
    template_list, template_map, truncate,
};
use crate::sink::{Doc, SendError, Sink};
use crate::telemetry::Metrics;
use crate::template::Template;

/// OpsCenter's limits, in characters.
const TITLE: usize = 1024;
const DESCRIPTION: usize = 2048;
const SOURCE: usize = 128;
const CATEGORY: usize = 64;
const SEVERITY: usize = 64;
/// An operational data value (the whole of it is limited to 20 KB).
const DATA_VALUE: usize = 4096;
const TAG_VALUE: usize = 256;

/// `receivers[].opscenter`.
#[derive(Debug, Clone, PartialEq)]
pub struct OpsCenterConfig {
    pub title: Template,
    pub description: Template,
    pub source: Template,
    pub category: Option<Template>,
    pub severity: Option<Template>,
    pub priority: Option<Template>,
    pub operational_data: Vec<(String, Template)>,
    pub tags: Vec<(String, Template)>,
    pub related_ops_items: Vec<Template>,
    pub notifications: Vec<Template>,
    /// `region` only. No layout: the OpsItem is made of the templates; the event is their data.
    pub common: AwsCommon,
}

/// Operational data keys OpsCenter reserves (its own `/aws/…` keys are set by us).
fn reserved(key: &str) -> bool {
    let k = key.trim_start_matches('/').to_ascii_lowercase();
    ["aws", "amzn", "ssm"].iter().any(|p| k.starts_with(p))
}

impl ReceiverKind for OpsCenterConfig {
    const NAME: &'static str = "opscenter";
    const CONCURRENCY: Concurrency = Concurrency::Lanes(4);
    const KEYS: &'static [&'static str] = &[
        "title",
        "description",
        "source",
        "category",
        "severity",
        "priority",
        "operationalData",
        "tags",
        "relatedOpsItems",
        "notifications",
        "region",
    ];
    const DEFAULT_MAX_EVENTS: usize = 10;

    fn parse(ctx: &mut Ctx, f: &Fields) -> Option<Self> {
        let before = ctx.errors.len();
        let required = |ctx: &mut Ctx, key: &str| {
            required_template(ctx, f, key, "CreateOpsItem refuses an OpsItem without it")
        };
        let title = required(ctx, "title");
        let description = required(ctx, "description");
        let source = required(ctx, "source");
        let category = opt_template(ctx, f, "category");
        let severity = opt_template(ctx, f, "severity");
        let priority = opt_template(ctx, f, "priority");
        if let Some(p) = &priority
            && !p.source().contains("{{")
            && !matches!(p.source().trim().parse::<i64>(), Ok(1..=5))
        {
            ctx.error(
                &f.path("priority"),
                f.get("priority").map_or(f.line, |n| n.line),
                format!("{:?}: OpsCenter priorities are 1 to 5", p.source()),
            );
        }
        let operational_data = template_map(ctx, f, "operationalData");
        for (k, _) in &operational_data {
            if reserved(k) || k.len() > 128 {
                ctx.error(
                    &format!("{}.{k}", f.path("operationalData")),
                    f.get("operationalData").map_or(f.line, |n| n.line),
                    "keys of 1-128 characters not starting with aws, amzn or ssm (reserved by AWS)",
                );
            }
        }
        let tags = template_map(ctx, f, "tags");
        let related_ops_items = template_list(ctx, f, "relatedOpsItems");
        let notifications = template_list(ctx, f, "notifications");
        let common = AwsCommon::parse_region_only(ctx, f);
        if ctx.errors.len() != before {
            return None;
        }
        Some(OpsCenterConfig {
            title: title?,
            description: description?,
            source: source?,
            category,
            severity,
            priority,
            operational_data,
            tags,
            related_ops_items,
            notifications,
            common,
        })
    }

    fn encoding(&self) -> &Encoding {
        &self.common.encoding
    }

    fn templates(&self) -> Vec<(String, &str)> {
        named([
            ("title", Some(&self.title)),
            ("description", Some(&self.description)),
            ("source", Some(&self.source)),
            ("category", self.category.as_ref()),
            ("severity", self.severity.as_ref()),
            ("priority", self.priority.as_ref()),
        ])
        .chain(keyed("operationalData", &self.operational_data))
        .chain(keyed("tags", &self.tags))
        .chain(listed("relatedOpsItems", &self.related_ops_items))
        .chain(listed("notifications", &self.notifications))
        .collect()
    }

    fn warnings(&self) -> Vec<Problem> {
        self.common.warnings()
    }

    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>> {
        Ok(Box::new(OpsCenterSink::build(self, env, &process_env)?))
    }
}

#[derive(Clone)]
pub struct OpsCenterSink {
    client: AwsClient,
    cfg: OpsCenterConfig,
    renderer: Renderer,
    fallback: Template,
    already: Counter,
}

impl OpsCenterSink {
    pub fn build(
        cfg: &OpsCenterConfig,
        env: &BuildEnv,
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Result<OpsCenterSink, Vec<Problem>> {
        let region = cfg.common.region.as_deref();
        let client = AwsClient::build(&SSM, region, env.delivery.timeout, vars)?;
        Ok(OpsCenterSink {
            client,
            cfg: cfg.clone(),
            renderer: Renderer::new(env.receiver),
            fallback: Template::parse(DEFAULT_MESSAGE).expect("the default message parses"),
            already: env
                .metrics
                .sink_already_delivered
                .get_or_create(&Metrics::receiver(env.receiver))
                .clone(),
        })
    }

    /// The CreateOpsItem request of one occurrence.
    pub fn request(&mut self, doc: &Doc) -> Value {
        let data = doc.occ.value();
        let key = &*doc.key;
        let cfg = &self.cfg;
        let r = &mut self.renderer;
        let text = |r: &mut Renderer, name: &str, t: &Template, max: usize| {
            truncate(&r.render(name, t, data, key, || t.source().to_owned()), max).into_owned()
        };
        let fallback = self
            .fallback
            .render(data)
            .unwrap_or_else(|_| key.to_owned());
        let non_empty = |s: String, max: usize| {
            if s.trim().is_empty() {
                truncate(&fallback, max).into_owned()
            } else {
                s
            }
        };
        let title = non_empty(text(r, "title", &cfg.title, TITLE), TITLE);
        let description = non_empty(
            text(r, "description", &cfg.description, DESCRIPTION),
            DESCRIPTION,
        );
        let mut source = text(r, "source", &cfg.source, SOURCE);
        if source.trim().is_empty() {
            source = "kube-event-exporter".to_owned();
        }
        let mut item = json!({
            "Title": title,
            "Description": description,
            "Source": source,
        });
        for (field, t, max) in [
            ("Category", &cfg.category, CATEGORY),
            ("Severity", &cfg.severity, SEVERITY),
        ] {
            if let Some(t) = t {
                let v = text(r, &field.to_ascii_lowercase(), t, max);
                if !v.trim().is_empty() {
                    item[field] = json!(v);
                }
            }
        }
        if let Some(t) = &cfg.priority {
            let v = r.render("priority", t, data, key, String::new);
            match v.trim().parse::<i64>() {
                Ok(p @ 1..=5) => item["Priority"] = json!(p),
                _ => {
                    tracing::warn!(occurrence = key, priority = %v, "priority is not 1 to 5: the OpsItem is created without one")
                }
            }
        }
        let mut od = Map::new();
        for (k, t) in &cfg.operational_data {
            let v = text(r, &format!("operationalData.{k}"), t, DATA_VALUE);
            od.insert(k.clone(), json!({"Value": v, "Type": "SearchableString"}));
        }
        od.insert(
            "occurrence_key".to_owned(),
            json!({"Value": key, "Type": "SearchableString"}),
        );
        od.insert(
            "/aws/dedup".to_owned(),
            json!({"Value": json!({"dedupString": key}).to_string(), "Type": "SearchableString"}),
        );
        item["OperationalData"] = Value::Object(od);
        if !cfg.tags.is_empty() {
            let tags: Vec<Value> = cfg
                .tags
                .iter()
                .map(|(k, t)| json!({"Key": k, "Value": text(r, &format!("tags.{k}"), t, TAG_VALUE)}))
                .collect();
            item["Tags"] = json!(tags);
        }
        let list = |r: &mut Renderer, name: &str, ts: &[Template]| -> Vec<String> {
            ts.iter()
                .enumerate()
                .map(|(i, t)| {
                    r.render(&format!("{name}[{i}]"), t, data, key, || {
                        t.source().to_owned()
                    })
                })
                .filter(|s| !s.trim().is_empty())
                .collect()
        };
        let related = list(r, "relatedOpsItems", &cfg.related_ops_items);
        if !related.is_empty() {
            item["RelatedOpsItems"] = json!(
                related
                    .iter()
                    .map(|id| json!({"OpsItemId": id}))
                    .collect::<Vec<_>>()
            );
        }
        let notifications = list(r, "notifications", &cfg.notifications);
        if !notifications.is_empty() {
            item["Notifications"] = json!(
                notifications
                    .iter()
                    .map(|arn| json!({"Arn": arn}))
                    .collect::<Vec<_>>()
            );
        }
        item
    }
}

impl Sink for OpsCenterSink {
    fn lane(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(self.clone()))
    }

    fn send<'a>(&'a mut self, batch: &'a [Doc]) -> BoxFuture<'a, Result<(), SendError>> {
        async move {
            let session = self.client.session().await?;
            let mut failed = Vec::new();
            for (i, doc) in batch.iter().enumerate() {
                let body = serde_json::to_vec(&self.request(doc)).expect("JSON serializes");
                match session
                    .json("AmazonSSM.CreateOpsItem", JSON_1_1, body)
                    .await
                {
                    Ok(_) => {}
                    // OpsCenter found the open OpsItem of this dedup string: delivered before.
                    Err(e) if e.code == "OpsItemAlreadyExistsException" => {
                        self.already.inc();
                    }
                    Err(e) => {
                        if e.credentials_expired() {
                            self.client.invalidate_credentials();
                        }
                        let stop = e.transient();
                        failed.push((i, e.to_send_error()));
                        // A transient error (throttling, an outage) holds for the rest too:
                        // resend them with it rather than hammer the service.
                        if stop {
                            for j in i + 1..batch.len() {
                                failed.push((j, e.to_send_error()));
                            }
                            break;
                        }
                    }
                }
            }
            crate::sink::partial::settle(batch.len(), failed)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests;
