//! webhook: POST the document as JSON (a JSON array when batching), with templated headers and
//! `Idempotency-Key: {uid}:{count}` so a receiver can drop replays. Transport errors, timeouts,
//! 408, 429 and 5xx are retried (honouring `Retry-After`); other 4xx are permanent.
//!
//! Redirects are not followed: a POST silently turned into a GET by a 302 would lose the event;
//! a 3xx is reported as a permanent failure naming the Location instead.
//!
//! Headers from the config are set after ours, so a configured `Content-Type` or
//! `Idempotency-Key` replaces ours. TLS: `caFile` replaces the system roots (as Go's `RootCAs`),
//! `certFile`/`keyFile` are the client identity, and `serverName` is the name for SNI and
//! certificate verification: requests go to `https://{serverName}:{port}` through a resolver that
//! maps that name to the endpoint's host, with the endpoint's `Host` header, over HTTP/1.1.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::header::{CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use super::{Doc, SendError, Sink, SinkError, retry::parse_retry_after};
use crate::config::WebhookConfig;
use crate::template::Template;

const USER_AGENT: &str = concat!("kube-event-exporter/", env!("CARGO_PKG_VERSION"));
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// A problem with a webhook receiver's settings: the key under `webhook` (`tls.caFile`) and what
/// is wrong with it.
pub type Problem = (&'static str, String);

pub struct WebhookSink {
    client: reqwest::Client,
    /// Where requests go: `endpoint`, with its host replaced by `tls.serverName` when set (the
    /// resolver maps that name back to the endpoint's host).
    url: reqwest::Url,
    /// `endpoint` as configured, for logs.
    endpoint: String,
    /// The endpoint's `host[:port]`, sent as `Host` when the URL's host is `tls.serverName`.
    host: Option<HeaderValue>,
    headers: Vec<(HeaderName, Template, String)>,
    body: Vec<u8>,
}

impl WebhookSink {
    pub fn new(receiver: &str, cfg: &WebhookConfig, timeout: Duration) -> Result<Self, SinkError> {
        Self::build(cfg, timeout).map_err(|problems| SinkError::Config {
            receiver: receiver.to_string(),
            message: problems
                .iter()
                .map(|(key, why)| format!("{key}: {why}"))
                .collect::<Vec<_>>()
                .join("; "),
        })
    }

    /// Everything about the receiver that can go wrong before the first request, checked without
    /// sending one: the TLS files exist and parse, `tls.serverName` is usable, the header names
    /// and templates are valid and the HTTP client builds. Every problem is returned.
    pub fn build(cfg: &WebhookConfig, timeout: Duration) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT)
            .tls_danger_accept_invalid_certs(cfg.tls.insecure_skip_verify);
        if let Some(ca) = &cfg.tls.ca_file {
            // The bundle replaces the system roots, as resmoio's `caFile` does (Go's RootCAs).
            match read_certificates(ca) {
                Ok(certs) => {
                    let certs: Result<Vec<_>, _> = certs
                        .iter()
                        .map(|der| reqwest::Certificate::from_der(der))
                        .collect();
                    match certs {
                        Ok(certs) => builder = builder.tls_certs_only(certs),
                        Err(e) => problems.push(("tls.caFile", format!("{}: {e}", ca.display()))),
                    }
                }
                Err(why) => problems.push(("tls.caFile", why)),
            }
        }
        if let (Some(cert), Some(key)) = (&cfg.tls.cert_file, &cfg.tls.key_file) {
            let certs = read_certificates(cert).map_err(|why| problems.push(("tls.certFile", why)));
            let key_pem = read_private_key(key).map_err(|why| problems.push(("tls.keyFile", why)));
            if let (Ok(_), Ok(key_pem)) = (certs, key_pem) {
                let mut pem = std::fs::read(cert).unwrap_or_default();
                pem.extend_from_slice(b"\n");
                pem.extend(key_pem);
                match reqwest::Identity::from_pem(&pem) {
                    Ok(identity) => builder = builder.identity(identity),
                    Err(e) => problems.push((
                        "tls.certFile",
                        format!(
                            "{} with {}: {}",
                            cert.display(),
                            key.display(),
                            error_chain(&e)
                        ),
                    )),
                }
            }
        }
        let mut url = match reqwest::Url::parse(&cfg.endpoint) {
            Ok(u) => Some(u),
            Err(e) => {
                problems.push(("endpoint", format!("invalid URL {:?}: {e}", cfg.endpoint)));
                None
            }
        };
        let mut host = None;
        if let (Some(name), Some(u)) = (&cfg.tls.server_name, url.as_mut()) {
            match server_name(name, u) {
                Ok((resolver, authority)) => {
                    // The endpoint's host stays the Host header, as with Go's tls.Config.ServerName;
                    // HTTP/1.1 only, since an HTTP/2 :authority would carry the server name.
                    builder = builder.dns_resolver(resolver).http1_only();
                    host = Some(authority);
                }
                Err(why) => problems.push(("tls.serverName", why)),
            }
        }
        let mut headers = Vec::new();
        for (name, value) in &cfg.headers {
            let header = match HeaderName::from_bytes(name.as_bytes()) {
                Ok(h) => h,
                Err(e) => {
                    problems.push(("headers", format!("{name}: {e}")));
                    continue;
                }
            };
            match Template::parse(value) {
                Ok(template) => headers.push((header, template, value.clone())),
                Err(e) => problems.push(("headers", format!("{name}: {e}"))),
            }
        }
        let client = builder.build().map_err(|e| {
            problems.push((
                "tls",
                format!("building the HTTP client: {}", error_chain(&e)),
            ))
        });
        match (client, url) {
            (Ok(client), Some(url)) if problems.is_empty() => Ok(Self {
                client,
                url,
                endpoint: cfg.endpoint.clone(),
                host,
                headers,
                body: Vec::new(),
            }),
            _ => Err(problems),
        }
    }
}

/// The PEM certificates of `path` (at least one, each a valid X.509 trust anchor).
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    for (i, der) in certs.iter().enumerate() {
        rustls::RootCertStore::empty()
            .add(der.clone())
            .map_err(|e| {
                format!(
                    "{}: certificate {} does not parse: {e}",
                    path.display(),
                    i + 1
                )
            })?;
    }
    Ok(certs)
}

/// The PEM text of `path` if it holds a private key.
fn read_private_key(path: &Path) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        format!(
            "{}: no private key in it (expected PEM: -----BEGIN PRIVATE KEY-----): {e}",
            path.display()
        )
    })?;
    Ok(pem)
}

/// `tls.serverName`: the name used for SNI and to verify the certificate, instead of the
/// endpoint's host. The request goes to `https://{serverName}:{port}/…` and a resolver maps that
/// name to the endpoint's host; returns the resolver and the endpoint's `Host` header value.
fn server_name(
    name: &str,
    url: &mut reqwest::Url,
) -> Result<(ServerNameResolver, HeaderValue), String> {
    if url.scheme() != "https" {
        return Err(format!(
            "needs an https:// endpoint, not {}://",
            url.scheme()
        ));
    }
    match rustls::pki_types::ServerName::try_from(name) {
        Ok(rustls::pki_types::ServerName::DnsName(_)) => {}
        Ok(_) => {
            return Err(format!(
                "{name:?} is an IP address: write it in endpoint instead (serverName is a DNS name)"
            ));
        }
        Err(e) => return Err(format!("{name:?} is not a valid DNS name: {e}")),
    }
    let target = match url.host_str() {
        Some(h) => match h.trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(ip) => Target::Ip(ip),
            Err(_) => Target::Name(h.to_owned()),
        },
        None => return Err("the endpoint has no host".to_owned()),
    };
    let authority = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => return Err("the endpoint has no host".to_owned()),
    };
    let host = HeaderValue::from_str(&authority).map_err(|e| e.to_string())?;
    url.set_host(Some(name))
        .map_err(|e| format!("{name:?} cannot be a URL host: {e}"))?;
    Ok((
        ServerNameResolver {
            name: name.to_ascii_lowercase(),
            target,
        },
        host,
    ))
}

#[derive(Clone)]
enum Target {
    Name(String),
    Ip(std::net::IpAddr),
}

/// Resolves `tls.serverName` to the endpoint's host (by DNS when it is a name); any other name is
/// resolved as usual.
struct ServerNameResolver {
    name: String,
    target: Target,
}

impl reqwest::dns::Resolve for ServerNameResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let target = if name.as_str().eq_ignore_ascii_case(&self.name) {
            self.target.clone()
        } else {
            Target::Name(name.as_str().to_owned())
        };
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match target {
                Target::Ip(ip) => vec![SocketAddr::new(ip, 0)],
                Target::Name(host) => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A rendered header value as `http` accepts it: line breaks and other control characters (from
/// the event, e.g. a multi-line `.Message`) become spaces rather than dropping the header.
fn header_value(rendered: &str) -> HeaderValue {
    HeaderValue::from_str(rendered).unwrap_or_else(|_| {
        let clean: String = rendered
            .chars()
            .map(|c| {
                if c.is_ascii_control() && c != '\t' {
                    ' '
                } else {
                    c
                }
            })
            .collect();
        HeaderValue::from_str(&clean).expect("no control characters left")
    })
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
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(IDEMPOTENCY_KEY, header_value(&key));
            if let Some(host) = &self.host {
                headers.insert(HOST, host.clone());
            }
            for (name, template, raw) in &self.headers {
                // Like resmoio: a header that fails to render is sent as written. A configured
                // header replaces ours (Content-Type, Idempotency-Key) instead of doubling it.
                let value = template
                    .render(batch[0].occ.value())
                    .unwrap_or_else(|_| raw.clone());
                headers.insert(name.clone(), header_value(&value));
            }
            let req = self
                .client
                .post(self.url.clone())
                .headers(headers)
                .body(self.body.clone());
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
