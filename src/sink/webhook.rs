//! webhook: POST the document as JSON (a JSON array when batching), with templated headers and
//! `Idempotency-Key: {uid}:{count}` so a receiver can drop replays. Transport errors, timeouts,
//! 408, 429 and 5xx are retried (honouring `Retry-After`); other 4xx are permanent
//! (`http::answer`, as for every HTTP kind).
//!
//! Redirects are not followed: a POST silently turned into a GET by a 302 would lose the event;
//! a 3xx is reported as a permanent failure naming the Location instead.
//!
//! Headers from the config are set after ours, so a configured `Content-Type` or
//! `Idempotency-Key` replaces ours. The client, the `tls:` block and `tls.serverName` are the
//! shared ones of `sink::http` and `sink::tls`.
//!
//! This module is the worked example of a receiver kind (docs/architecture.md): its config (the
//! keys of `http::PostConfig`, which teams shares), its `ReceiverKind` impl, and the sink. Its
//! checks are what building the sink finds (the default `check`).

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::header::{CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue};

use super::http::answer::Answer;
use super::http::{Endpoint, HeaderTemplate, PostConfig, header_value, render_headers};
use super::kind::{BuildEnv, Concurrency, Problem, ReceiverKind};
use super::layout::Encoding;
use super::tls::TLS_KEYS;
use super::{Doc, SendError, Sink};
use crate::config::yaml::{Ctx, Fields};

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// `receivers[].webhook`.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig(pub PostConfig);

impl std::ops::Deref for WebhookConfig {
    type Target = PostConfig;
    fn deref(&self) -> &PostConfig {
        &self.0
    }
}

impl ReceiverKind for WebhookConfig {
    const NAME: &'static str = "webhook";
    const CONCURRENCY: Concurrency = Concurrency::Lanes(16);
    const KEYS: &'static [&'static str] = &["endpoint", "headers", "layout", "tls"];
    const NESTED: &'static [(&'static str, &'static [&'static str])] = &[("tls", TLS_KEYS)];
    /// One POST per occurrence unless asked: most webhook receivers expect one object.
    const DEFAULT_MAX_EVENTS: usize = 1;

    fn parse(ctx: &mut Ctx, f: &Fields) -> Option<Self> {
        PostConfig::parse(ctx, f).map(WebhookConfig)
    }

    fn encoding(&self) -> &Encoding {
        &self.encoding
    }

    fn templates(&self) -> Vec<(String, &str)> {
        self.0.templates()
    }

    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>> {
        Ok(Box::new(WebhookSink::build(self, env.delivery.timeout)?))
    }
}

#[derive(Clone)]
pub struct WebhookSink {
    client: reqwest::Client,
    /// Where requests go (see `http::Endpoint::url`).
    url: reqwest::Url,
    /// `endpoint` as configured, for logs.
    endpoint: String,
    /// The endpoint's `host[:port]`, sent as `Host` when the URL's host is `tls.serverName`.
    host: Option<HeaderValue>,
    headers: Vec<HeaderTemplate>,
    /// The request body, built here and split off to the request: reclaimed for the next one
    /// once the request has dropped it (no allocation and fresh pages per batch).
    body: bytes::BytesMut,
}

impl WebhookSink {
    pub fn build(cfg: &WebhookConfig, timeout: Duration) -> Result<Self, Vec<Problem>> {
        let ep = Endpoint::build(&cfg.endpoint, &cfg.tls, timeout)?;
        Ok(Self {
            client: ep.client,
            url: ep.url,
            endpoint: ep.display,
            host: ep.host,
            headers: cfg.headers.clone(),
            body: bytes::BytesMut::new(),
        })
    }
}

impl Sink for WebhookSink {
    fn lane(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(self.clone()))
    }

    fn send<'a>(&'a mut self, batch: &'a [Doc]) -> BoxFuture<'a, Result<(), SendError>> {
        async move {
            self.body.clear();
            // Built once at its exact size and handed to the request as it is (no copy).
            self.body
                .reserve(batch.iter().map(|d| d.body.len() + 1).sum::<usize>() + 1);
            if batch.len() == 1 {
                self.body.extend_from_slice(&batch[0].body);
            } else {
                self.body.extend_from_slice(b"[");
                for (i, doc) in batch.iter().enumerate() {
                    if i > 0 {
                        self.body.extend_from_slice(b",");
                    }
                    self.body.extend_from_slice(&doc.body);
                }
                self.body.extend_from_slice(b"]");
            }
            // A batch is identified by its first and last occurrence.
            let key = match batch {
                [one] => one.key.to_string(),
                [first, .., last] => format!("{}..{}", first.key, last.key),
                [] => return Ok(()),
            };
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(IDEMPOTENCY_KEY, header_value(&key));
            if let Some(host) = &self.host {
                headers.insert(HOST, host.clone());
            }
            render_headers(&self.headers, &batch[0].occ, &mut headers);
            let req = self
                .client
                .post(self.url.clone())
                .headers(headers)
                .body(self.body.split().freeze());
            let what = format!("POST {}", self.endpoint);
            Answer::send(&what, req).await?.classify(&what)
        }
        .boxed()
    }
}
