//! otlp: OpenTelemetry logs over OTLP/HTTP (`POST {endpoint}/v1/logs`), binary protobuf (the
//! default) or JSON, gzip-compressed unless `compression: none`. Each occurrence is one log
//! record shaped as the OpenTelemetry Collector's `k8s_events` receiver shapes an event
//! ([`record`]), so a Collector, Loki, Elastic, Datadog or any OTLP backend takes it as it takes
//! the Collector's.
//!
//! Answers follow the OTLP/HTTP specification rather than our general rule: 429, 502, 503 and
//! 504 are retried (after their `Retry-After`), every other failure is permanent; the reason is
//! the error body's `google.rpc.Status` message. A 2xx with a `partialSuccess` that rejected
//! records is not retried (the specification forbids it, and does not say which records): the
//! rejected count is logged with the server's message and counted as failed.

pub mod json;
pub mod proto;
pub mod record;

use futures::FutureExt;
use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use prost::Message;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HOST, HeaderMap, HeaderValue};

use super::http::answer::{Answer, Verdict, classify, snippet, verdict};
use super::http::{Endpoint, HeaderTemplate, check_url, parse_headers, render_headers};
use super::kind::{BuildEnv, Concurrency, Problem, ReceiverKind};
use super::layout::Encoding;
use super::tls::{TLS_KEYS, TlsConfig};
use super::{Doc, SendError, Sink};
use crate::config::yaml::{Ctx, Fields};
use crate::telemetry::Metrics;
use proto::{AnyValue, ExportLogsPartialSuccess, ExportLogsServiceResponse, KeyValue};

/// The path OTLP/HTTP receivers serve logs on.
pub const LOGS_PATH: &str = "/v1/logs";

/// How requests are encoded (`encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Protobuf,
    Json,
}

impl Wire {
    fn content_type(self) -> &'static str {
        match self {
            Wire::Protobuf => "application/x-protobuf",
            Wire::Json => "application/json",
        }
    }
}

/// `receivers[].otlp`.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// Where requests go: the configured endpoint with `/v1/logs` appended unless it ends so.
    pub url: String,
    pub wire: Wire,
    pub gzip: bool,
    /// Header values are Go templates, rendered with a batch's first occurrence.
    pub headers: Vec<HeaderTemplate>,
    /// Added to every record's resource (`service.name: kube-events`).
    pub resource_attributes: Vec<(String, String)>,
    pub encoding: Encoding,
    pub tls: TlsConfig,
}

impl ReceiverKind for OtlpConfig {
    const NAME: &'static str = "otlp";
    const CONCURRENCY: Concurrency = Concurrency::Lanes(4);
    const KEYS: &'static [&'static str] = &[
        "endpoint",
        "encoding",
        "compression",
        "headers",
        "resourceAttributes",
        "layout",
        "tls",
    ];
    const NESTED: &'static [(&'static str, &'static [&'static str])] = &[("tls", TLS_KEYS)];

    fn parse(ctx: &mut Ctx, f: &Fields) -> Option<Self> {
        let url = logs_url(ctx, f);
        let wire = match ctx.opt_string(f, "encoding").as_deref() {
            None | Some("protobuf") => Some(Wire::Protobuf),
            Some("json") => Some(Wire::Json),
            Some(other) => {
                ctx.error(
                    &f.path("encoding"),
                    f.get("encoding").map_or(f.line, |n| n.line),
                    format!("expected protobuf or json, found {other:?}"),
                );
                None
            }
        };
        let gzip = match ctx.opt_string(f, "compression").as_deref() {
            None | Some("gzip") => Some(true),
            Some("none") => Some(false),
            Some(other) => {
                ctx.error(
                    &f.path("compression"),
                    f.get("compression").map_or(f.line, |n| n.line),
                    format!("expected gzip or none, found {other:?}"),
                );
                None
            }
        };
        let headers = parse_headers(ctx, f);
        let resource_attributes = ctx
            .string_map(f, "resourceAttributes", |ctx, path, n| match &n.kind {
                crate::config::yaml::Kind::Str(s) => ctx.expand(path, n.line, s),
                crate::config::yaml::Kind::Int(i) => Some(i.to_string()),
                _ => {
                    ctx.error(
                        path,
                        n.line,
                        format!("expected a string, found {}", n.kind.describe()),
                    );
                    None
                }
            })
            .into_iter()
            .collect();
        let tls = TlsConfig::parse(ctx, f);
        let encoding = Encoding::parse(ctx, f, false);
        Some(OtlpConfig {
            url: url?,
            wire: wire?,
            gzip: gzip?,
            headers,
            resource_attributes,
            encoding: encoding?,
            tls,
        })
    }

    fn encoding(&self) -> &Encoding {
        &self.encoding
    }

    fn templates(&self) -> Vec<(String, &str)> {
        self.headers
            .iter()
            .map(|h| (format!("headers.{}", h.key), h.template.source()))
            .collect()
    }

    fn check(&self, env: &BuildEnv) -> Vec<Problem> {
        OtlpSink::build(self, env).err().unwrap_or_default()
    }

    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>> {
        Ok(Box::new(OtlpSink::build(self, env)?))
    }
}

/// `endpoint`, the receiver's base URL as `OTEL_EXPORTER_OTLP_ENDPOINT` is one: `/v1/logs` is
/// appended unless the path already ends with it.
fn logs_url(ctx: &mut Ctx, f: &Fields) -> Option<String> {
    let line = f.get("endpoint").map_or(f.line, |n| n.line);
    let Some(endpoint) = ctx.opt_string(f, "endpoint") else {
        ctx.error(
            &f.path("endpoint"),
            f.line,
            "is required (e.g. http://otel-collector:4318)",
        );
        return None;
    };
    if let Err(why) = check_url(&endpoint) {
        ctx.error(&f.path("endpoint"), line, why);
        return None;
    }
    let mut url = reqwest::Url::parse(&endpoint).ok()?;
    let mut path = url.path().trim_end_matches('/').to_owned();
    if !path.ends_with(LOGS_PATH) {
        path.push_str(LOGS_PATH);
    }
    url.set_path(&path);
    Some(url.to_string())
}

#[derive(Clone)]
pub struct OtlpSink {
    receiver: String,
    client: reqwest::Client,
    url: reqwest::Url,
    what: String,
    /// Ours (content type and encoding, `Host` for `tls.serverName`), before the configured ones.
    fixed: HeaderMap,
    headers: Vec<HeaderTemplate>,
    wire: Wire,
    gzip: bool,
    resource_attributes: Vec<KeyValue>,
    /// With a layout, a record's body is the layout's document; without, the event's message.
    layout: bool,
    /// Records a 2xx answer's `partialSuccess` rejected.
    rejected: Counter,
}

impl OtlpSink {
    pub fn build(cfg: &OtlpConfig, env: &BuildEnv) -> Result<Self, Vec<Problem>> {
        let ep = Endpoint::build(&cfg.url, &cfg.tls, env.delivery.timeout)?;
        let mut fixed = HeaderMap::new();
        fixed.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(cfg.wire.content_type()),
        );
        if cfg.gzip {
            fixed.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        if let Some(host) = ep.host {
            fixed.insert(HOST, host);
        }
        Ok(Self {
            receiver: env.receiver.to_owned(),
            client: ep.client,
            what: format!("POST {}", ep.display),
            url: ep.url,
            fixed,
            headers: cfg.headers.clone(),
            wire: cfg.wire,
            gzip: cfg.gzip,
            resource_attributes: cfg
                .resource_attributes
                .iter()
                .map(|(k, v)| KeyValue::string(k, v.clone()))
                .collect(),
            layout: cfg.encoding.layout.is_some(),
            rejected: env
                .metrics
                .sink_failed
                .get_or_create(&Metrics::receiver(env.receiver))
                .clone(),
        })
    }

    /// The request body for `batch`, encoded and compressed as configured.
    fn body(&self, batch: &[Doc]) -> Vec<u8> {
        let records = batch.iter().map(|d| {
            let body = if self.layout {
                // The encoder wrote the layout's document as JSON.
                serde_json::from_slice(&d.body)
                    .map(|v| AnyValue::from_json(&v))
                    .unwrap_or_else(|_| AnyValue::string(String::from_utf8_lossy(&d.body)))
            } else {
                record::message(&d.occ)
            };
            (&*d.occ, body)
        });
        let mut req = record::request(records, jiff::Timestamp::now());
        for rl in &mut req.resource_logs {
            if let Some(r) = rl.resource.as_mut() {
                r.attributes
                    .extend(self.resource_attributes.iter().cloned());
            }
        }
        let plain = match self.wire {
            Wire::Protobuf => req.encode_to_vec(),
            Wire::Json => json::encode(&req),
        };
        if !self.gzip {
            return plain;
        }
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(plain.len() / 4),
            flate2::Compression::fast(),
        );
        gz.write_all(&plain).expect("writing to a Vec cannot fail");
        gz.finish().expect("writing to a Vec cannot fail")
    }

    /// What a 2xx answer's `partialSuccess` says, in the answer's own encoding.
    fn partial_success(&self, answer: &Answer) -> Option<ExportLogsPartialSuccess> {
        if answer.body.is_empty() {
            return None;
        }
        if is_json(&answer.headers) {
            json::partial_success(&answer.body)
        } else {
            ExportLogsServiceResponse::decode(answer.body.as_ref())
                .ok()?
                .partial_success
        }
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().starts_with("application/json"))
}

/// The message of an error answer's `google.rpc.Status`, else the body's head.
fn status_message(answer: &Answer) -> String {
    let message = if is_json(&answer.headers) {
        serde_json::from_slice::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
    } else {
        proto::Status::decode(answer.body.as_ref())
            .ok()
            .map(|s| s.message)
    };
    match message {
        Some(m) if !m.is_empty() => m,
        _ => snippet(&answer.text()),
    }
}

/// What a failed answer means for OTLP/HTTP: only 429, 502, 503 and 504 are retried.
fn failure(what: &str, status: StatusCode, headers: &HeaderMap, detail: &str) -> SendError {
    let retryable = matches!(status.as_u16(), 429 | 502 | 503 | 504);
    if verdict(status.as_u16()) == Verdict::Retry && !retryable {
        let mut reason = format!("{what} answered {status}");
        if !detail.is_empty() {
            reason.push_str(": ");
            reason.push_str(&snippet(detail));
        }
        reason.push_str(" (OTLP retries only 429, 502, 503 and 504)");
        return SendError::Permanent { reason };
    }
    match classify(what, status, headers, detail) {
        Err(e) => e,
        // Not reached for a failure; kept total rather than panicking.
        Ok(()) => SendError::Permanent {
            reason: format!("{what} answered {status}"),
        },
    }
}

impl Sink for OtlpSink {
    fn lane(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(self.clone()))
    }

    fn send<'a>(&'a mut self, batch: &'a [Doc]) -> BoxFuture<'a, Result<(), SendError>> {
        async move {
            if batch.is_empty() {
                return Ok(());
            }
            let first = &batch[0];
            let body = self.body(batch);
            let mut headers = self.fixed.clone();
            render_headers(&self.headers, &first.occ, &mut headers);
            let req = self
                .client
                .post(self.url.clone())
                .headers(headers)
                .body(body);
            let answer = Answer::send(&self.what, req).await?;
            if !answer.is_success() {
                return Err(failure(
                    &self.what,
                    answer.status,
                    &answer.headers,
                    &status_message(&answer),
                ));
            }
            if let Some(p) = self.partial_success(&answer)
                && (p.rejected_log_records > 0 || !p.error_message.is_empty())
            {
                let rejected = u64::try_from(p.rejected_log_records).unwrap_or(0);
                self.rejected.inc_by(rejected);
                tracing::warn!(
                    receiver = %self.receiver,
                    first = %first.key,
                    count = batch.len(),
                    rejected,
                    reason = %snippet(&p.error_message),
                    "the OTLP endpoint rejected records of a delivered request; not retried (OTLP partial success)"
                );
            }
            Ok(())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests;
