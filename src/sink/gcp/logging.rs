//! `cloudLogging`: Cloud Logging's `entries.write` (`POST /v2/entries:write`), as GKE's event
//! exporter writes events: log `events`, the entry's resource `k8s_pod` (an event about a pod of
//! its own namespace), `k8s_node` (about a node) or `k8s_cluster`, with the labels `project_id`,
//! `location`, `cluster_name` (+ `namespace_name`/`pod_name`, `node_name`); severity `WARNING`
//! for Warning events and `INFO` otherwise; the event's own time as the entry's timestamp.
//!
//! Each entry's `insertId` is the occurrence key (also the `occurrence_key` label): Logging treats
//! entries of a log with the same timestamp and insertId as one, so a replay after a crash does
//! not show twice. Requests use `partialSuccess`: the valid entries are written and a
//! `WriteLogEntriesPartialErrors` detail lists the others by index; those are failed (INVALID_ARGUMENT
//! and the like) or resent alone (UNAVAILABLE, RESOURCE_EXHAUSTED…). A batch is cut into requests
//! of at most 1000 entries and 10 MB.

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;

use super::{
    Answer, Api, Google, GoogleBatch, GoogleCommon, OCCURRENCE_KEY, json_str, parse_name,
    rpc_code_is_transient, whole_request_error,
};
use crate::config::yaml::{Ctx, Fields};
use crate::event::Event;
use crate::sink::kind::{BuildEnv, Concurrency, Problem, ReceiverKind, keys};
use crate::sink::layout::Encoding;
use crate::sink::partial::Outcomes;
use crate::sink::{Doc, SendError, Sink};

pub const DEFAULT_ENDPOINT: &str = "https://logging.googleapis.com";

/// `receivers[].cloudLogging`.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudLoggingConfig {
    /// None: the key file's project, else the metadata server's.
    pub project: Option<String>,
    pub log_name: String,
    /// None: the metadata server's `cluster-location`.
    pub location: Option<String>,
    /// None: the top-level `clusterName`, else the metadata server's `cluster-name`.
    pub cluster_name: Option<String>,
    /// The key file, `endpoint`, `layout` and `deDot`.
    pub common: GoogleCommon,
}

impl ReceiverKind for CloudLoggingConfig {
    const NAME: &'static str = "cloudLogging";
    const CONCURRENCY: Concurrency = Concurrency::Lanes(8);
    const KEYS: &'static [&'static str] = &keys::<8>(
        &[
            "project",
            "logName",
            "location",
            "clusterName",
            "credentialsFile",
        ],
        GoogleCommon::KEYS,
    );
    const DEFAULT_MAX_EVENTS: usize = 500;

    fn parse(ctx: &mut Ctx, f: &Fields) -> Option<Self> {
        let project = parse_name(ctx, f, "project", false);
        let log_name = ctx.opt_string(f, "logName");
        if let Some(l) = &log_name
            && let Err(why) = check_log_id(l)
        {
            ctx.error(
                &f.path("logName"),
                f.get("logName").map_or(f.line, |n| n.line),
                why,
            );
        }
        let location = parse_name(ctx, f, "location", false);
        let cluster_name = ctx.opt_string(f, "clusterName");
        let common = GoogleCommon::parse(ctx, f, "credentialsFile")?;
        Some(Self {
            project,
            log_name: log_name.unwrap_or_else(|| "events".to_owned()),
            location,
            cluster_name,
            common,
        })
    }

    fn encoding(&self) -> &Encoding {
        &self.common.encoding
    }

    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>> {
        let kind = CloudLogging {
            cfg: self.clone(),
            site: None,
        };
        let api = self.common.access.api(DEFAULT_ENDPOINT, env)?;
        Ok(Box::new(Google::sink(api, kind)))
    }
}

/// A log ID: letters, digits, `/ _ - .`, at most 512 characters.
fn check_log_id(id: &str) -> Result<(), String> {
    if id.len() > 512
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '.'))
    {
        return Err(format!(
            "{id:?} is not a log ID (letters, digits, '/', '_', '-', '.', at most 512)"
        ));
    }
    Ok(())
}

/// Where the cluster is, resolved once.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub project: String,
    pub location: String,
    /// None: each event's `clusterName`.
    pub cluster: Option<String>,
}

/// entries.write to one log.
#[derive(Clone)]
pub struct CloudLogging {
    cfg: CloudLoggingConfig,
    site: Option<Site>,
}

impl CloudLogging {
    async fn site(&mut self, api: &mut Api, first: &Event) -> Result<Site, SendError> {
        if let Some(s) = &self.site {
            return Ok(s.clone());
        }
        let tokens = api.tokens();
        let project = tokens.project(self.cfg.project.as_deref()).await?;
        let location = match &self.cfg.location {
            Some(l) => l.clone(),
            None => tokens
                .metadata("instance/attributes/cluster-location")
                .await
                .map_err(|e| e.with_hint("set cloudLogging.location"))?,
        };
        let cluster = match &self.cfg.cluster_name {
            Some(c) => Some(c.clone()),
            None if !first.cluster_name.is_empty() => None,
            None => Some(
                tokens
                    .metadata("instance/attributes/cluster-name")
                    .await
                    .map_err(|e| e.with_hint("set cloudLogging.clusterName or clusterName"))?,
            ),
        };
        let site = Site {
            project,
            location,
            cluster,
        };
        self.site = Some(site.clone());
        Ok(site)
    }
}

/// Cloud Logging's severity for an event, as GKE's exporter maps it.
pub fn severity(ev: &Event) -> &'static str {
    if ev.type_.as_deref() == Some("Warning") {
        "WARNING"
    } else {
        "INFO"
    }
}

/// One entry of `entries`: resource, timestamp, severity, insertId, labels, jsonPayload.
pub fn write_entry(out: &mut Vec<u8>, site: &Site, doc: &Doc) {
    let ev = &doc.occ.event;
    let io = &ev.involved_object;
    let cluster = site.cluster.as_deref().unwrap_or(&ev.cluster_name);
    let ns = ev.metadata.namespace.as_deref().unwrap_or("");
    let (rtype, extra): (&str, Vec<(&str, &str)>) = match io.kind.as_deref() {
        Some("Pod") if !ns.is_empty() && io.namespace.as_deref() == Some(ns) => (
            "k8s_pod",
            vec![
                ("namespace_name", ns),
                ("pod_name", io.name.as_deref().unwrap_or("")),
            ],
        ),
        Some("Node") => (
            "k8s_node",
            vec![("node_name", io.name.as_deref().unwrap_or(""))],
        ),
        _ => ("k8s_cluster", vec![]),
    };
    out.extend_from_slice(b"{\"insertId\":");
    json_str(out, &doc.key);
    if let Some(ts) = ev.last_seen() {
        out.extend_from_slice(b",\"timestamp\":");
        json_str(out, &ts.to_string());
    }
    out.extend_from_slice(b",\"severity\":\"");
    out.extend_from_slice(severity(ev).as_bytes());
    out.extend_from_slice(b"\",\"resource\":{\"type\":\"");
    out.extend_from_slice(rtype.as_bytes());
    out.extend_from_slice(b"\",\"labels\":{\"project_id\":");
    json_str(out, &site.project);
    out.extend_from_slice(b",\"location\":");
    json_str(out, &site.location);
    out.extend_from_slice(b",\"cluster_name\":");
    json_str(out, cluster);
    for (k, v) in extra {
        out.push(b',');
        json_str(out, k);
        out.push(b':');
        json_str(out, v);
    }
    out.extend_from_slice(b"}},\"labels\":{\"");
    out.extend_from_slice(OCCURRENCE_KEY.as_bytes());
    out.extend_from_slice(b"\":");
    json_str(out, &doc.key);
    out.extend_from_slice(b"},\"jsonPayload\":");
    out.extend_from_slice(&doc.body);
    out.push(b'}');
}

#[derive(Deserialize)]
struct PartialErrors {
    #[serde(rename = "@type", default)]
    type_: String,
    #[serde(rename = "logEntryErrors", default)]
    log_entry_errors: std::collections::BTreeMap<String, RpcStatus>,
}

#[derive(Deserialize)]
pub struct RpcStatus {
    #[serde(default)]
    pub code: i64,
    #[serde(default)]
    pub message: String,
}

const PARTIAL_ERRORS_TYPE: &str =
    "type.googleapis.com/google.logging.v2.WriteLogEntriesPartialErrors";

/// The per-entry errors of a failed entries.write answer (indexes into the request's entries),
/// or None when the answer has none (the whole request failed).
pub fn partial_errors(body: &[u8]) -> Option<Vec<(usize, RpcStatus)>> {
    let e: super::ErrorBody = serde_json::from_slice(body).ok()?;
    let detail = e
        .error
        .details
        .into_iter()
        .filter_map(|d| serde_json::from_value::<PartialErrors>(d).ok())
        .find(|d| d.type_ == PARTIAL_ERRORS_TYPE)?;
    let mut out: Vec<(usize, RpcStatus)> = detail
        .log_entry_errors
        .into_iter()
        .filter_map(|(i, s)| Some((i.parse().ok()?, s)))
        .collect();
    out.sort_by_key(|(i, _)| *i);
    (!out.is_empty()).then_some(out)
}

/// Where a send's entries go: the cluster's place and the whole log name.
pub struct Log {
    site: Site,
    name: String,
}

impl GoogleBatch for CloudLogging {
    type Target = Log;

    fn target<'a>(
        &'a mut self,
        api: &'a mut Api,
        batch: &'a [Doc],
    ) -> BoxFuture<'a, Result<Log, SendError>> {
        async move {
            let site = self.site(api, &batch[0].occ.event).await?;
            let name = format!(
                "projects/{}/logs/{}",
                site.project,
                urlencode_log(&self.cfg.log_name)
            );
            Ok(Log { site, name })
        }
        .boxed()
    }

    fn encode(&mut self, log: &Log, doc: &Doc) -> Result<Vec<u8>, SendError> {
        let mut e = Vec::with_capacity(doc.body.len() + 400);
        write_entry(&mut e, &log.site, doc);
        Ok(e)
    }

    fn request(&self, log: &Log) -> (String, Vec<u8>, &'static [u8]) {
        let mut head = b"{\"logName\":".to_vec();
        json_str(&mut head, &log.name);
        head.extend_from_slice(b",\"partialSuccess\":true,\"entries\":[");
        ("/v2/entries:write".to_owned(), head, b"]}")
    }

    /// With `partialSuccess` the valid entries are written and the others listed by index.
    fn read(&self, api: &Api, a: Answer, batch: &[Doc], docs: &[usize], outcomes: &mut Outcomes) {
        if a.is_success() {
            return;
        }
        let what = format!("entries.write to {}", api.base());
        let Some(errors) = partial_errors(&a.body) else {
            let e = whole_request_error(&what, &a);
            return outcomes.fail_all(docs.iter().copied(), &e);
        };
        for (i, s) in errors {
            let Some(&doc) = docs.get(i) else { continue };
            let reason = format!(
                "{what}: entry {}: code {} {}",
                batch[doc].key, s.code, s.message
            );
            let e = if rpc_code_is_transient(s.code) {
                SendError::Transient {
                    reason,
                    retry_after: a.retry_after(),
                }
            } else {
                SendError::Permanent { reason }
            };
            outcomes.fail(doc, e);
        }
    }
}

/// A log ID in a log name: `/` is written `%2F`.
fn urlencode_log(id: &str) -> String {
    id.replace('/', "%2F")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_errors_are_read_by_index_from_the_error_details() {
        let body = br#"{"error":{"code":400,"message":"Log entry with size 300K exceeds maximum size of 256K","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.DebugInfo","detail":"x"},{"@type":"type.googleapis.com/google.logging.v2.WriteLogEntriesPartialErrors","logEntryErrors":{"2":{"code":3,"message":"too big"},"0":{"code":14,"message":"unavailable"}}}]}}"#;
        let errors = partial_errors(body).unwrap();
        assert_eq!(errors.len(), 2);
        assert_eq!((errors[0].0, errors[0].1.code), (0, 14));
        assert_eq!((errors[1].0, errors[1].1.code), (2, 3));
        assert!(
            partial_errors(
                br#"{"error":{"code":400,"message":"bad logName","status":"INVALID_ARGUMENT"}}"#
            )
            .is_none()
        );
        assert!(partial_errors(b"<html>").is_none());
    }

    #[test]
    fn log_ids_are_checked() {
        assert!(check_log_id("events").is_ok());
        assert!(check_log_id("k8s/events.v1").is_ok());
        assert!(check_log_id("bad name").is_err());
    }
}
