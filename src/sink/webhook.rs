//! webhook: POST the document as JSON (a JSON array when batching), with templated headers and
//! `Idempotency-Key: {uid}:{count}` so a receiver can drop replays. Transport errors, timeouts,
//! 408, 429 and 5xx are retried (honouring `Retry-After`); other 4xx are permanent.
//!
//! Redirects are not followed: a POST silently turned into a GET by a 302 would lose the event;
//! a 3xx is reported as a permanent failure naming the Location instead.

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};

use super::{Doc, SendError, Sink, SinkError, retry::parse_retry_after};
use crate::config::WebhookConfig;
use crate::template::Template;

const USER_AGENT: &str = concat!("kube-event-exporter/", env!("CARGO_PKG_VERSION"));

pub struct WebhookSink {
    client: reqwest::Client,
    endpoint: String,
    headers: Vec<(HeaderName, Template, String)>,
    body: Vec<u8>,
}

impl WebhookSink {
    pub fn new(receiver: &str, cfg: &WebhookConfig, timeout: Duration) -> Result<Self, SinkError> {
        let err = |message: String| SinkError::Config {
            receiver: receiver.to_string(),
            message,
        };
        let read = |what: &str, path: &std::path::Path| {
            std::fs::read(path)
                .map_err(|e| err(format!("reading tls.{what} {}: {e}", path.display())))
        };
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT)
            .tls_danger_accept_invalid_certs(cfg.tls.insecure_skip_verify);
        if let Some(ca) = &cfg.tls.ca_file {
            let pem = read("caFile", ca)?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| err(format!("tls.caFile {}: {e}", ca.display())))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let (Some(cert), Some(key)) = (&cfg.tls.cert_file, &cfg.tls.key_file) {
            let mut pem = read("certFile", cert)?;
            pem.extend_from_slice(b"\n");
            pem.extend(read("keyFile", key)?);
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| err(format!("tls client certificate: {e}")))?;
            builder = builder.identity(identity);
        }
        if cfg.tls.server_name.is_some() {
            return Err(err("tls.serverName is not supported yet: point endpoint at the name the certificate carries".into()));
        }
        let client = builder
            .build()
            .map_err(|e| err(format!("building the HTTP client: {e}")))?;
        let mut headers = Vec::new();
        for (name, value) in &cfg.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| err(format!("header {name:?}: {e}")))?;
            let template =
                Template::parse(value).map_err(|e| err(format!("header {name}: {e}")))?;
            headers.push((header, template, value.clone()));
        }
        Ok(Self {
            client,
            endpoint: cfg.endpoint.clone(),
            headers,
            body: Vec::new(),
        })
    }
}

/// The 200-character head of a reply body, for logs.
fn snippet(body: &str) -> String {
    let s: String = body.chars().take(200).collect();
    s.replace('\n', " ")
}

impl Sink for WebhookSink {
    fn send<'a>(&'a mut self, batch: &'a [Doc]) -> BoxFuture<'a, Result<(), SendError>> {
        async move {
            self.body.clear();
            if batch.len() == 1 {
                self.body.extend_from_slice(&batch[0].body);
            } else {
                self.body.push(b'[');
                for (i, doc) in batch.iter().enumerate() {
                    if i > 0 {
                        self.body.push(b',');
                    }
                    self.body.extend_from_slice(&doc.body);
                }
                self.body.push(b']');
            }
            // A batch is identified by its first and last occurrence.
            let key = match batch {
                [one] => one.key.clone(),
                [first, .., last] => format!("{}..{}", first.key, last.key),
                [] => return Ok(()),
            };
            let mut req = self
                .client
                .post(&self.endpoint)
                .header(CONTENT_TYPE, "application/json")
                .header("Idempotency-Key", key)
                .body(self.body.clone());
            for (name, template, raw) in &self.headers {
                // Like resmoio: a header that fails to render is sent as written.
                let value = template
                    .render(batch[0].occ.value())
                    .unwrap_or_else(|_| raw.clone());
                if let Ok(v) = HeaderValue::from_str(&value) {
                    req = req.header(name, v);
                }
            }
            let resp = req.send().await.map_err(|e| SendError::Transient {
                reason: format!("POST {}: {}", self.endpoint, error_chain(&e)),
                retry_after: None,
            })?;
            let status = resp.status();
            if status.is_success() {
                return Ok(());
            }
            let retry_after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = resp.text().await.unwrap_or_default();
            let reason = format!(
                "POST {} answered {status}: {}",
                self.endpoint,
                snippet(&body)
            );
            let code = status.as_u16();
            if code == 408 || code == 429 || status.is_server_error() {
                Err(SendError::Transient {
                    reason,
                    retry_after,
                })
            } else if status.is_redirection() {
                Err(SendError::Permanent {
                    reason: format!("{reason} (redirect to {location:?} not followed)"),
                })
            } else {
                Err(SendError::Permanent { reason })
            }
        }
        .boxed()
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}
