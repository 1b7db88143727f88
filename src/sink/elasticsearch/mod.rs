//! elasticsearch / opensearch: batches written with `_bulk` (NDJSON, gzip), each item's answer
//! read on its own.
//!
//! Idempotent by default: every occurrence is a `create` with `_id` = its key `{uid}:{count}`,
//! so a replay (after a crash, or by a successor) is a 409 from the server, never a second
//! document. `useEventID: true` keeps resmoio's meaning — one document per event, `_id` = the
//! event's uid — made safe with external versioning (`version` = the occurrence's count): an
//! older occurrence replayed later cannot overwrite a newer one (its 409 counts as delivered).
//!
//! Per item: 2xx delivered; 409 already delivered (counted in `sink_already_delivered_total`);
//! 429, 5xx and 408 resent alone with backoff; anything else (a mapping error, a bad index name)
//! permanent: counted, logged once per cause, never retried. A whole request is retried on
//! transport errors, 408, 429 and 5xx (on the next host of `hosts`), and split in halves on 413.
//!
//! Data streams accept only `create` and need `@timestamp`: with `dataStream: true`, or once the
//! server answers that an index is a data stream, documents for it are created with `@timestamp`
//! set to the event's time when the document has none.
//!
//! The index is `index`, or `indexFormat` rendered per event with the event's time (see
//! `index.rs`). `type` is sent as `_type` to Elasticsearch 6.x/7.x and ignored, with a warning,
//! by newer servers (asked once with `GET /`).

pub mod aws;
pub mod bulk;
mod config;
pub mod golayout;
mod index;

use std::collections::HashSet;
use std::io::Write;
use std::ops::Range;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use reqwest::StatusCode;
use reqwest::header::{
    AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue,
};

use self::bulk::{Action, Op, Outcome};
pub use self::config::{AwsConfig, SearchConfig};
use self::golayout::GoLayout;
use super::http::Endpoint;
use super::http::answer::{Answer, transport_error};
use super::kind::{BuildEnv, Concurrency, Problem, ReceiverKind};
use super::layout::Encoding;
use super::partial::Outcomes;
use super::{Doc, SendError, Sink};
use crate::config::yaml::{Ctx, Fields};
use crate::telemetry::Metrics;

/// `receivers[].elasticsearch`.
#[derive(Debug, Clone, PartialEq)]
pub struct ElasticsearchConfig(pub SearchConfig);

/// `receivers[].opensearch`: the same keys and behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenSearchConfig(pub SearchConfig);

macro_rules! search_kind {
    ($ty:ident, $name:literal) => {
        impl ReceiverKind for $ty {
            const NAME: &'static str = $name;
            const CONCURRENCY: Concurrency = Concurrency::Lanes(4);
            const KEYS: &'static [&'static str] = config::KEYS;
            const NESTED: &'static [(&'static str, &'static [&'static str])] = config::NESTED;
            /// One `_bulk` request carries up to this many occurrences.
            const DEFAULT_MAX_EVENTS: usize = 500;

            fn parse(ctx: &mut Ctx, f: &Fields) -> Option<Self> {
                config::parse(ctx, f).map($ty)
            }

            fn encoding(&self) -> &Encoding {
                &self.0.encoding
            }

            fn templates(&self) -> Vec<(String, &str)> {
                if self.0.index.templates().next().is_some() {
                    vec![("indexFormat".to_owned(), self.0.index.source())]
                } else {
                    Vec::new()
                }
            }

            fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>> {
                Ok(Box::new(SearchSink::build($name, &self.0, env)?))
            }
        }
    };
}

search_kind!(ElasticsearchConfig, "elasticsearch");
search_kind!(OpenSearchConfig, "opensearch");

/// Only what the worker needs of the answer: the errors and each item's status and error.
const BULK_QUERY: &str = "filter_path=errors,items.*.status,items.*.error";

/// One of `hosts`.
#[derive(Clone)]
struct Host {
    client: reqwest::Client,
    bulk: reqwest::Url,
    root: reqwest::Url,
    display: String,
    /// The configured `host[:port]` when `tls.serverName` replaces it in the URL.
    host_header: Option<HeaderValue>,
}

/// What to do with `type`.
#[derive(Debug, Clone, PartialEq)]
enum TypeMode {
    /// Not asked yet (`GET /` before the first batch).
    Unknown,
    Send(String),
    Omit,
}

#[derive(Clone)]
pub struct SearchSink {
    kind: &'static str,
    receiver: String,
    hosts: Vec<Host>,
    current: usize,
    index: index::IndexPattern,
    use_event_id: bool,
    data_stream: Option<bool>,
    /// Indices the server said are data streams.
    data_streams: HashSet<String>,
    gzip: bool,
    headers: HeaderMap,
    signer: Option<crate::sink::aws::Signer>,
    type_mode: TypeMode,
    /// `type` as configured.
    doc_type: Option<String>,
    already: Counter,
    timestamp: GoLayout,
    body: Vec<u8>,
}

/// One document of a batch as sent.
struct Entry {
    doc: usize,
    bytes: Range<usize>,
    index: String,
    as_data_stream: bool,
}

/// How a request failed.
enum Fail {
    /// 413: the server's `http.max_content_length` is smaller than the request.
    TooLarge(String),
    Send(SendError),
}

impl SearchSink {
    pub fn build(
        kind: &'static str,
        cfg: &SearchConfig,
        env: &BuildEnv,
    ) -> Result<SearchSink, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut hosts = Vec::new();
        for (i, h) in cfg.hosts.iter().enumerate() {
            match Endpoint::build(&format!("{h}/_bulk"), &cfg.tls, env.delivery.timeout) {
                Ok(ep) => {
                    let mut bulk = ep.url;
                    bulk.set_query(Some(BULK_QUERY));
                    let mut root = bulk.clone();
                    root.set_query(None);
                    let path = root.path().trim_end_matches("_bulk").to_owned();
                    root.set_path(&path);
                    hosts.push(Host {
                        client: ep.client,
                        bulk,
                        root,
                        display: h.clone(),
                        host_header: ep.host,
                    });
                }
                Err(ps) => problems.extend(ps.into_iter().map(|(key, why)| {
                    let key: &'static str = if key == "endpoint" { "hosts" } else { key };
                    (key, format!("{h} (hosts[{i}]): {why}"))
                })),
            }
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        if cfg.gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        if let config::Auth::Header(value) = &cfg.auth {
            match HeaderValue::from_str(value.expose()) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    headers.insert(AUTHORIZATION, v);
                }
                Err(_) => problems.push(("apiKey", "not a valid header value".to_owned())),
            }
        }
        // Configured headers after ours: a configured one replaces ours.
        for (name, value) in &cfg.headers {
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                (Ok(n), Ok(v)) => {
                    headers.insert(n, v);
                }
                _ => problems.push(("headers", format!("{name}: not a valid header"))),
            }
        }
        let signer = match &cfg.aws {
            Some(a) => match aws::signer(a, &|k| std::env::var(k).ok()) {
                Ok(s) => Some(s),
                Err(why) => {
                    problems.push(("aws", why));
                    None
                }
            },
            None => None,
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(SearchSink {
            kind,
            receiver: env.receiver.to_owned(),
            hosts,
            current: 0,
            index: cfg.index.clone(),
            use_event_id: cfg.use_event_id,
            data_stream: cfg.data_stream,
            data_streams: HashSet::new(),
            gzip: cfg.gzip,
            headers,
            signer,
            type_mode: TypeMode::Unknown,
            doc_type: cfg.doc_type.clone(),
            already: env
                .metrics
                .sink_already_delivered
                .get_or_create(&Metrics::receiver(env.receiver))
                .clone(),
            timestamp: GoLayout::parse("2006-01-02T15:04:05.000Z07:00"),
            body: Vec::new(),
        })
    }

    fn host(&self) -> &Host {
        &self.hosts[self.current % self.hosts.len()]
    }

    /// The next attempt goes to the next host (after a transport error or a 5xx).
    fn rotate(&mut self) {
        self.current = (self.current + 1) % self.hosts.len();
    }

    /// Decides once whether `type` is sent: only Elasticsearch before 8 still has mapping types.
    async fn type_mode(&mut self) -> Result<(), SendError> {
        let Some(t) = self.doc_type.clone() else {
            self.type_mode = TypeMode::Omit;
            return Ok(());
        };
        if self.type_mode != TypeMode::Unknown {
            return Ok(());
        }
        let host = self.host();
        let (url, client) = (host.root.clone(), host.client.clone());
        let mut headers = self.headers.clone();
        headers.remove(CONTENT_TYPE);
        headers.remove(CONTENT_ENCODING);
        if let Some(h) = &host.host_header {
            headers.insert(HOST, h.clone());
        }
        if let Some(signer) = &mut self.signer {
            signer
                .sign(&client, "GET", url.as_str(), &mut headers, b"")
                .await
                .map_err(|reason| SendError::Transient {
                    reason,
                    retry_after: None,
                })?;
        }
        let resp = client
            .get(url.clone())
            .headers(headers)
            .send()
            .await
            .map_err(|e| {
                transport_error(&format!("GET {url} (the server version, for type)"), &e)
            })?;
        let status = resp.status();
        let info: Option<serde_json::Value> = resp.json().await.ok();
        let version = info.as_ref().and_then(|v| v.get("version"));
        let number = version
            .and_then(|v| v.get("number"))
            .and_then(|n| n.as_str())
            .unwrap_or("");
        let opensearch = version
            .and_then(|v| v.get("distribution"))
            .and_then(|d| d.as_str())
            == Some("opensearch");
        let major: Option<u32> = number.split('.').next().and_then(|m| m.parse().ok());
        self.type_mode = match major {
            Some(m) if !opensearch && m < 8 => TypeMode::Send(t),
            Some(_) => {
                tracing::warn!(receiver = %self.receiver, kind = self.kind, version = number, opensearch, r#type = %t,
                    "type is ignored: this server has no mapping types (Elasticsearch 8 and OpenSearch removed them)");
                TypeMode::Omit
            }
            None => {
                tracing::warn!(receiver = %self.receiver, kind = self.kind, %status, r#type = %t,
                    "type is ignored: GET / did not tell the server version");
                TypeMode::Omit
            }
        };
        Ok(())
    }

    /// Appends the batch's documents to `self.body`: one entry per document that has an index;
    /// a document whose index cannot be rendered fails permanently without being sent.
    fn prepare(&mut self, batch: &[Doc], outcomes: &mut Outcomes) -> Vec<Entry> {
        self.body.clear();
        let doc_type = match &self.type_mode {
            TypeMode::Send(t) => Some(t.clone()),
            _ => None,
        };
        let mut entries = Vec::with_capacity(batch.len());
        for (i, doc) in batch.iter().enumerate() {
            let at = doc
                .occ
                .event
                .last_seen()
                .unwrap_or_else(jiff::Timestamp::now);
            let index = match self.index.render(|| doc.occ.value(), at) {
                Ok(name) => name,
                Err(reason) => {
                    outcomes.fail(i, SendError::Permanent { reason });
                    continue;
                }
            };
            let as_data_stream =
                self.data_stream == Some(true) || self.data_streams.contains(&index);
            let start = self.body.len();
            let uid = doc.occ.event.uid();
            let (op, id) = if self.use_event_id && !as_data_stream && !uid.is_empty() {
                (
                    Op::IndexVersioned(i64::from(doc.occ.event.occurrence_count())),
                    uid,
                )
            } else {
                (Op::Create, &*doc.key)
            };
            bulk::write_action(
                &mut self.body,
                &Action {
                    op,
                    index: &index,
                    id,
                    doc_type: doc_type.as_deref(),
                },
            );
            let ts = as_data_stream.then(|| self.timestamp.format(at));
            bulk::write_doc(&mut self.body, &doc.body, ts.as_deref());
            entries.push(Entry {
                doc: i,
                bytes: start..self.body.len(),
                index,
                as_data_stream,
            });
        }
        entries
    }

    /// One `_bulk` request with `entries`.
    async fn submit(&mut self, entries: &[Entry]) -> Result<Vec<Outcome>, Fail> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(Vec::new());
        };
        let payload = first.bytes.start..last.bytes.end;
        let body: Vec<u8> = if self.gzip {
            // Level 1: most of the size gain of gzip for a fraction of its CPU.
            let mut gz = flate2::write::GzEncoder::new(
                Vec::with_capacity(payload.len() / 4),
                flate2::Compression::fast(),
            );
            gz.write_all(&self.body[payload])
                .expect("writing to a Vec cannot fail");
            gz.finish().expect("writing to a Vec cannot fail")
        } else {
            self.body[payload].to_vec()
        };
        let host = &self.hosts[self.current % self.hosts.len()];
        let mut headers = self.headers.clone();
        if let Some(h) = &host.host_header {
            headers.insert(HOST, h.clone());
        }
        let url = host.bulk.clone();
        let display = host.display.clone();
        let client = host.client.clone();
        if let Some(signer) = &mut self.signer {
            signer
                .sign(&client, "POST", url.as_str(), &mut headers, &body)
                .await
                .map_err(|reason| {
                    Fail::Send(SendError::Transient {
                        reason,
                        retry_after: None,
                    })
                })?;
        }
        let what = format!("POST {display}/_bulk");
        let answer = match Answer::send(&what, client.post(url).headers(headers).body(body)).await {
            Ok(a) => a,
            Err(e) => {
                self.rotate();
                return Err(Fail::Send(e));
            }
        };
        match answer.classify(&what) {
            Ok(()) => bulk::parse_answer(&answer.body, entries.len()).map_err(|why| {
                Fail::Send(SendError::Transient {
                    reason: format!("{what}: {why}"),
                    retry_after: None,
                })
            }),
            Err(e) if answer.status == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(Fail::TooLarge(e.reason().to_owned()))
            }
            Err(e) => {
                if answer.status.is_server_error() {
                    self.rotate();
                }
                Err(Fail::Send(e))
            }
        }
    }

    /// Sends every entry, in as many requests as the server's size limit needs. A request that
    /// fails as a whole fails each of its entries (and of those not sent yet) the same way.
    async fn submit_all(
        &mut self,
        entries: &[Entry],
    ) -> Result<Vec<Result<Outcome, SendError>>, SendError> {
        let mut out: Vec<Option<Result<Outcome, SendError>>> =
            (0..entries.len()).map(|_| None).collect();
        // Ranges of `entries` still to send, the next one last.
        let mut todo: Vec<Range<usize>> = Vec::new();
        todo.push(0..entries.len());
        while let Some(r) = todo.pop() {
            match self.submit(&entries[r.clone()]).await {
                Ok(outcomes) => {
                    for (slot, o) in out[r].iter_mut().zip(outcomes) {
                        *slot = Some(Ok(o));
                    }
                }
                Err(Fail::TooLarge(_)) if r.len() > 1 => {
                    let mid = r.start + r.len() / 2;
                    todo.push(mid..r.end);
                    todo.push(r.start..mid);
                }
                Err(Fail::TooLarge(reason)) => {
                    out[r.start] = Some(Err(SendError::Permanent {
                        reason: format!("{reason} (one document larger than the server takes)"),
                    }));
                }
                Err(Fail::Send(e)) => {
                    if r.len() == entries.len() {
                        return Err(e);
                    }
                    for slot in out.iter_mut().filter(|s| s.is_none()) {
                        *slot = Some(Err(e.clone()));
                    }
                    break;
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Err(SendError::Transient {
                        reason: "not sent".to_owned(),
                        retry_after: None,
                    })
                })
            })
            .collect())
    }

    /// What one item's answer means for the worker.
    fn settle(&mut self, entry: &Entry, outcome: Outcome) -> Option<SendError> {
        match outcome {
            Outcome::Delivered => None,
            Outcome::AlreadyDelivered => {
                self.already.inc();
                None
            }
            Outcome::Retry { reason } => Some(SendError::Transient {
                reason: format!("index {}: {reason}", entry.index),
                retry_after: None,
            }),
            Outcome::DataStream { reason }
                if self.data_stream.is_none() && !entry.as_data_stream =>
            {
                if self.data_streams.insert(entry.index.clone()) {
                    tracing::info!(receiver = %self.receiver, kind = self.kind, index = %entry.index, %reason,
                        use_event_id = self.use_event_id,
                        "the index is a data stream: its documents are created with @timestamp from now on (useEventID does not apply to an append-only stream)");
                }
                Some(SendError::Transient {
                    reason: format!("index {} is a data stream: resending", entry.index),
                    retry_after: Some(Duration::ZERO),
                })
            }
            Outcome::DataStream { reason } => Some(SendError::Permanent {
                reason: format!("{} index {}: {reason}", self.kind, entry.index),
            }),
            Outcome::Failed { cause, .. } => Some(SendError::Permanent {
                reason: format!("{} index {}: {cause}", self.kind, entry.index),
            }),
        }
    }
}

impl Sink for SearchSink {
    fn lane(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(self.clone()))
    }

    fn send<'a>(&'a mut self, batch: &'a [Doc]) -> BoxFuture<'a, Result<(), SendError>> {
        async move {
            self.type_mode().await?;
            let mut outcomes = Outcomes::new(batch.len());
            let entries = self.prepare(batch, &mut outcomes);
            if !entries.is_empty() {
                match self.submit_all(&entries).await {
                    Ok(answers) => {
                        for (entry, answer) in entries.iter().zip(answers) {
                            match answer.map(|o| self.settle(entry, o)) {
                                Ok(None) => {}
                                Ok(Some(e)) | Err(e) => outcomes.fail(entry.doc, e),
                            }
                        }
                    }
                    // Nothing written: every document sent fails as the request did.
                    Err(e) => outcomes.fail_all(entries.iter().map(|en| en.doc), &e),
                }
            }
            outcomes.settle()
        }
        .boxed()
    }
}
