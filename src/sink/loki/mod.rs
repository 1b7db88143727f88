//! loki: Loki's push API (`POST /loki/api/v1/push`), protobuf + snappy by default, JSON with
//! `format: json`.
//!
//! Each occurrence is one entry: the encoded document as the line, the event's own time
//! ([`Event::last_seen`], to the nanosecond) as the timestamp, its stream from the templated
//! `streamLabels`, and structured metadata from `structuredMetadata` plus `occurrence_key`
//! (`{uid}:{count}`) so consumers can drop replays. A batch is grouped by stream, sorted by time
//! within a stream, and split into one push per distinct set of rendered `headers` (a templated
//! `X-Scope-OrgID` sends each occurrence to its own tenant).
//!
//! Replies: 2xx is delivered. 400 (out of order, too old, line too long, bad labels…) means
//! Loki stored the batch's valid entries and rejected the others for good; the batch is then
//! split in halves and resent until each rejected entry is known (Loki drops the resent valid
//! ones as identical), so only those are counted as failed — within half the attempt's timeout,
//! after which what is still undecided is counted as failed with Loki's reason (it was stored
//! if it was valid). 413 is split the same way. 408, 429 and 5xx are retried (honouring
//! `Retry-After`); other 4xx are permanent, and redirects are not followed.
//!
//! A replay after a crash sends the same entry again (same stream, timestamp, line and
//! structured metadata): Loki drops such an identical entry at ingestion (the stream's last
//! line, the head block) and at query time (`mergeEntryIterator`).

mod config;
pub mod proto;
pub mod push;
mod value;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue};

pub use config::{DEFAULT_METADATA, LabelTemplate, LokiConfig, OCCURRENCE_KEY};
pub use push::Format;

use super::http::answer::Answer;
use super::http::{Endpoint, header_value};
use super::kind::{BuildEnv, Concurrency, Problem, ReceiverKind};
use super::layout::Encoding;
use super::partial::Outcomes;
use super::secret::Secret;
use super::tls::TLS_KEYS;
use super::{Doc, OrderKey, SendError, Sink};
use crate::event::Occurrence;
use crate::template::Template;
use proto::Timestamp;
use push::{Entry, Stream};
use value::ValueSource;

const X_SCOPE_ORGID: HeaderName = HeaderName::from_static("x-scope-orgid");

impl ReceiverKind for LokiConfig {
    const NAME: &'static str = "loki";
    const CONCURRENCY: Concurrency = Concurrency::Lanes(4);
    const KEYS: &'static [&'static str] = config::KEYS;
    const NESTED: &'static [(&'static str, &'static [&'static str])] = &[("tls", TLS_KEYS)];

    fn parse(ctx: &mut crate::config::yaml::Ctx, f: &crate::config::yaml::Fields) -> Option<Self> {
        config::parse(ctx, f)
    }

    fn encoding(&self) -> &Encoding {
        &self.encoding
    }

    fn templates(&self) -> Vec<(String, &str)> {
        let labels = self
            .stream_labels
            .iter()
            .map(|l| (format!("streamLabels.{}", l.name), l.template.source()));
        let metadata = self.structured_metadata.iter().map(|l| {
            (
                format!("structuredMetadata.{}", l.name),
                l.template.source(),
            )
        });
        let headers = self
            .headers
            .iter()
            .map(|h| (format!("headers.{}", h.key), h.template.source()));
        labels.chain(metadata).chain(headers).collect()
    }

    fn warnings(&self) -> Vec<Problem> {
        config::warnings(self)
    }

    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>> {
        Ok(Box::new(LokiSink::build(self, env.delivery.timeout)?))
    }
}

#[derive(Clone)]
pub struct LokiSink {
    client: reqwest::Client,
    url: reqwest::Url,
    /// `url` as configured, for messages.
    display: String,
    /// Content-Type, X-Scope-OrgID, Authorization, Host (for `tls.serverName`).
    base: HeaderMap,
    labels: Vec<(String, ValueSource)>,
    /// The stream when every label is fixed: rendered once.
    fixed_stream: Option<Arc<Stream>>,
    metadata: Vec<(Arc<str>, ValueSource)>,
    occurrence_key: Arc<str>,
    headers: Vec<(HeaderName, Template, String)>,
    format: Format,
    /// The attempt's timeout (`timeout:`): the splitting of a rejected batch stays within it.
    timeout: Duration,
}

impl LokiSink {
    pub fn build(cfg: &LokiConfig, timeout: Duration) -> Result<Self, Vec<Problem>> {
        let ep = Endpoint::build(&cfg.url, &cfg.tls, timeout)
            .map_err(|ps| ps.into_iter().map(rename_endpoint).collect::<Vec<_>>())?;
        let mut base = HeaderMap::new();
        base.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(cfg.format.content_type()),
        );
        if let Some(t) = &cfg.tenant {
            base.insert(X_SCOPE_ORGID, header_value(t));
        }
        if let Some(user) = &cfg.username {
            let pass = cfg.password.as_ref().map_or("", Secret::expose);
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            let mut v = header_value(&format!("Basic {token}"));
            v.set_sensitive(true);
            base.insert(AUTHORIZATION, v);
        }
        if let Some(host) = ep.host {
            base.insert(HOST, host);
        }
        // Headers without a template action are the same for every push: set once, after ours
        // (a configured one replaces ours). The others are rendered per occurrence.
        let (fixed, templated): (Vec<_>, Vec<_>) = cfg
            .headers
            .iter()
            .partition(|h| !h.template.source().contains("{{"));
        for h in fixed {
            base.insert(h.name.clone(), header_value(h.template.source()));
        }
        let fixed_stream = cfg
            .stream_labels
            .iter()
            .all(LabelTemplate::is_static)
            .then(|| {
                Arc::new(Stream::new(
                    cfg.stream_labels
                        .iter()
                        .map(|l| (l.name.clone(), l.template.source().to_owned()))
                        .collect(),
                ))
            });
        Ok(Self {
            client: ep.client,
            url: ep.url,
            display: ep.display,
            base,
            labels: cfg
                .stream_labels
                .iter()
                .map(|l| (l.name.clone(), ValueSource::new(&l.template)))
                .collect(),
            fixed_stream,
            metadata: cfg
                .structured_metadata
                .iter()
                .map(|l| (Arc::from(l.name.as_str()), ValueSource::new(&l.template)))
                .collect(),
            occurrence_key: Arc::from(OCCURRENCE_KEY),
            headers: templated
                .into_iter()
                .map(|h| {
                    (
                        h.name.clone(),
                        h.template.clone(),
                        h.template.source().to_owned(),
                    )
                })
                .collect(),
            format: cfg.format,
            timeout,
        })
    }

    /// The entry of one document, or why it cannot be sent (rendering is deterministic: a
    /// label that fails to render fails every time).
    fn entry(
        &self,
        doc: &Doc,
        streams: &mut HashMap<String, Arc<Stream>>,
    ) -> Result<Entry, SendError> {
        let event = &doc.occ.event;
        let data = || doc.occ.value();
        let stream = match &self.fixed_stream {
            Some(s) => s.clone(),
            None => {
                let mut pairs = Vec::with_capacity(self.labels.len());
                for (name, t) in &self.labels {
                    let v = t.render(event, data).map_err(|e| SendError::Permanent {
                        reason: format!("streamLabels.{name} failed to render: {e}"),
                    })?;
                    pairs.push((name.clone(), v));
                }
                let s = Stream::new(pairs);
                streams
                    .entry(s.key.clone())
                    .or_insert_with(|| Arc::new(s))
                    .clone()
            }
        };
        if stream.pairs.is_empty() {
            return Err(SendError::Permanent {
                reason: "every stream label rendered empty: Loki rejects an entry without labels"
                    .into(),
            });
        }
        let mut metadata = Vec::with_capacity(self.metadata.len() + 1);
        metadata.push((self.occurrence_key.clone(), doc.key.to_string()));
        for (name, t) in &self.metadata {
            let v = t.render(event, data).map_err(|e| SendError::Permanent {
                reason: format!("structuredMetadata.{name} failed to render: {e}"),
            })?;
            if !v.is_empty() {
                metadata.push((name.clone(), v));
            }
        }
        let ts = doc
            .occ
            .event
            .last_seen()
            .unwrap_or_else(jiff::Timestamp::now);
        Ok(Entry {
            stream,
            ts: Timestamp::from_jiff(ts),
            line: doc.body.clone(),
            metadata,
        })
    }

    /// The configured headers rendered for one document (like resmoio, a header that fails to
    /// render is sent as written).
    fn headers_for(&self, doc: &Doc) -> Vec<(HeaderName, HeaderValue)> {
        self.headers
            .iter()
            .map(|(name, t, raw)| {
                let v = t.render(doc.occ.value()).unwrap_or_else(|_| raw.clone());
                (name.clone(), header_value(&v))
            })
            .collect()
    }

    /// One push of `entries` with `extra` headers, classified.
    async fn push(
        &self,
        entries: &[&Entry],
        extra: &[(HeaderName, HeaderValue)],
        time_left: Duration,
    ) -> Reply {
        let body = match push::encode(entries, self.format) {
            Ok(b) => b,
            Err(e) => {
                return Reply::Fail(SendError::Permanent {
                    reason: format!("encoding the push: {e}"),
                });
            }
        };
        let mut headers = self.base.clone();
        for (name, value) in extra {
            headers.insert(name.clone(), value.clone());
        }
        let req = self
            .client
            .post(self.url.clone())
            .headers(headers)
            .timeout(time_left.max(Duration::from_millis(1)))
            .body(body);
        let what = format!("POST {}", self.display);
        match Answer::send(&what, req).await {
            Ok(answer) => reply(&what, &answer),
            Err(e) => Reply::Fail(e),
        }
    }
}

/// Endpoint problems are reported under `url` (the shared code names the key `endpoint`).
fn rename_endpoint((key, why): Problem) -> Problem {
    (if key == "endpoint" { "url" } else { key }, why)
}

/// What one push's reply means.
#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Delivered,
    /// Loki rejected some entries for good and stored the others (400), or the body was too
    /// large (413): worth splitting.
    Rejected(String),
    Fail(SendError),
}

/// What Loki's answer to one push means: its 400 and 413 are worth splitting; everything else
/// as for any HTTP answer.
fn reply(what: &str, answer: &Answer) -> Reply {
    match (answer.status.as_u16(), answer.classify(what)) {
        (_, Ok(())) => Reply::Delivered,
        (400 | 413, Err(e)) => {
            let mut reason = e.reason().to_owned();
            if answer
                .text()
                .contains("structured metadata, but this feature is disallowed")
            {
                reason.push_str(" (this receiver sends structured metadata, at least occurrence_key: Loki needs limits_config.allow_structured_metadata, the default since Loki 3.0, with schema v13)");
            }
            Reply::Rejected(reason)
        }
        (_, Err(e)) => Reply::Fail(e),
    }
}

/// A part of the batch to push: one set of rendered headers, some entries (by index in the
/// batch), and, once split from a rejected push, Loki's reason for it.
struct Part {
    headers: usize,
    docs: Vec<usize>,
    rejected: Option<String>,
}

impl Sink for LokiSink {
    fn lane(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(self.clone()))
    }

    /// Loki takes each stream's entries in time order: a stream is in one request at a time.
    /// (Labels that are all fixed make one stream: one request at a time, whatever
    /// `concurrency` says.)
    fn order_key(&self) -> OrderKey {
        let labels = self.labels.clone();
        OrderKey::With(Arc::new(move |occ: &Occurrence| {
            let mut h = crate::digest::hasher(super::ORDER_KEY_SEED);
            for (name, t) in &labels {
                name.hash(&mut h);
                t.render(&occ.event, || occ.value()).ok().hash(&mut h);
            }
            h.finish()
        }))
    }

    fn send<'a>(&'a mut self, batch: &'a [Doc]) -> BoxFuture<'a, Result<(), SendError>> {
        async move {
            let started = Instant::now();
            // Sub-pushes of a rejected batch start within half the attempt's timeout and end
            // before 90% of it, so the worker's timeout never cancels the answers already known.
            let split_budget = self.timeout / 2;
            let deadline = self.timeout.mul_f64(0.9);
            // Every part is decided before the loop ends; a document it missed is never
            // silently counted as sent.
            let mut outcome = Outcomes::pending(
                batch.len(),
                SendError::Transient {
                    reason: "not pushed".into(),
                    retry_after: None,
                },
            );
            let mut entries: Vec<Option<Entry>> = Vec::with_capacity(batch.len());
            let mut streams = HashMap::new();
            let mut header_sets: Vec<Vec<(HeaderName, HeaderValue)>> = Vec::new();
            let mut parts: Vec<Part> = Vec::new();
            for (i, doc) in batch.iter().enumerate() {
                match self.entry(doc, &mut streams) {
                    Ok(e) => entries.push(Some(e)),
                    Err(fail) => {
                        outcome.fail(i, fail);
                        entries.push(None);
                        continue;
                    }
                }
                let hs = if self.headers.is_empty() {
                    0
                } else {
                    let h = self.headers_for(doc);
                    match header_sets.iter().position(|s| *s == h) {
                        Some(p) => p,
                        None => {
                            header_sets.push(h);
                            header_sets.len() - 1
                        }
                    }
                };
                match parts.iter_mut().find(|p| p.headers == hs) {
                    Some(p) => p.docs.push(i),
                    None => parts.push(Part {
                        headers: hs,
                        docs: vec![i],
                        rejected: None,
                    }),
                }
            }
            if header_sets.is_empty() {
                header_sets.push(Vec::new());
            }
            let mut queue: std::collections::VecDeque<Part> = parts.into();
            while let Some(part) = queue.pop_front() {
                let elapsed = started.elapsed();
                if let Some(reason) = &part.rejected
                    && (elapsed >= split_budget || elapsed >= deadline)
                {
                    // Loki stored whatever was valid in the rejected push: what is left
                    // undecided is not resent.
                    let fail = SendError::Permanent {
                        reason: format!(
                            "{reason} (one of {} entries Loki rejected in one push; not resolved per entry within this attempt's time)",
                            part.docs.len()
                        ),
                    };
                    outcome.fail_all(part.docs, &fail);
                    continue;
                }
                if elapsed >= deadline {
                    let fail = SendError::Transient {
                        reason: format!(
                            "not pushed within {deadline:?}: this attempt's time ran out"
                        ),
                        retry_after: None,
                    };
                    outcome.fail_all(part.docs, &fail);
                    continue;
                }
                let refs: Vec<&Entry> = part
                    .docs
                    .iter()
                    .filter_map(|&i| entries[i].as_ref())
                    .collect();
                let reply = self
                    .push(&refs, &header_sets[part.headers], deadline - elapsed)
                    .await;
                match reply {
                    Reply::Delivered => {
                        for &i in &part.docs {
                            outcome.delivered(i);
                        }
                    }
                    Reply::Rejected(reason) if part.docs.len() > 1 => {
                        let mut first = part.docs;
                        let second = first.split_off(first.len() / 2);
                        queue.push_front(Part {
                            headers: part.headers,
                            docs: second,
                            rejected: Some(reason.clone()),
                        });
                        queue.push_front(Part {
                            headers: part.headers,
                            docs: first,
                            rejected: Some(reason),
                        });
                    }
                    Reply::Rejected(reason) => {
                        outcome.fail(part.docs[0], SendError::Permanent { reason });
                    }
                    Reply::Fail(fail) => {
                        outcome.fail_all(part.docs, &fail);
                    }
                }
            }
            outcome.settle()
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests;
