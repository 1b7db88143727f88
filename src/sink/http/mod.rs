//! What every HTTP receiver shares: the `endpoint` URL check, templated `headers`, the client
//! (timeouts, no redirects, our User-Agent, the `tls:` block, `tls.serverName`), and what an
//! answer means ([`answer`]).
//!
//! `serverName` is the name for SNI and certificate verification: requests go to
//! `https://{serverName}:{port}` through a resolver that maps that name to the endpoint's host,
//! with the endpoint's `Host` header, over HTTP/1.1.

pub mod answer;
pub mod batch;

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::kind::Problem;
use super::layout::Encoding;
use super::render::scalar_source;
use super::tls::{TlsConfig, check_server_name};
use crate::config::yaml::{Ctx, Fields};
use crate::event::Occurrence;
use crate::telemetry::error_chain;
use crate::template::Template;

pub const USER_AGENT: &str = concat!("kube-event-exporter/", env!("CARGO_PKG_VERSION"));

/// A required URL key (`endpoint`): present, http(s), with a host.
pub fn parse_url(ctx: &mut Ctx, f: &Fields, key: &str) -> Option<String> {
    let url = ctx.opt_string(f, key);
    match &url {
        None => ctx.error(&f.path(key), f.line, "is required"),
        Some(e) => {
            if let Err(msg) = check_url(e) {
                ctx.error(&f.path(key), f.get(key).map_or(0, |n| n.line), msg);
            }
        }
    }
    url
}

pub fn check_url(e: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(e).map_err(|err| format!("invalid URL {e:?}: {err}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("invalid URL {e:?}: scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("invalid URL {e:?}: missing host"));
    }
    Ok(())
}

/// The keys of a receiver that posts each batch to one URL (`webhook`, `teams`): `endpoint`,
/// templated `headers`, the `tls:` block, and `layout`.
#[derive(Debug, Clone, PartialEq)]
pub struct PostConfig {
    pub endpoint: String,
    /// Header values are Go templates rendered per occurrence.
    pub headers: Vec<HeaderTemplate>,
    pub encoding: Encoding,
    pub tls: TlsConfig,
}

impl PostConfig {
    pub fn parse(ctx: &mut Ctx, f: &Fields) -> Option<PostConfig> {
        let endpoint = parse_url(ctx, f, "endpoint");
        let headers = parse_headers(ctx, f);
        let tls = TlsConfig::parse(ctx, f);
        // Checked here, not at start: the name replaces the endpoint's host for TLS only.
        if let (Some(_), Some(e)) = (&tls.server_name, &endpoint)
            && let Ok(url) = reqwest::Url::parse(e)
            && url.scheme() != "https"
        {
            ctx.error(
                &format!("{}.serverName", f.path("tls")),
                f.get("tls").map_or(f.line, |n| n.line),
                format!("needs an https:// endpoint, not {}://", url.scheme()),
            );
        }
        let encoding = Encoding::parse(ctx, f, false);
        Some(PostConfig {
            endpoint: endpoint?,
            headers,
            encoding: encoding?,
            tls,
        })
    }

    /// The header templates, for `ReceiverKind::templates`.
    pub fn templates(&self) -> Vec<(String, &str)> {
        self.headers
            .iter()
            .map(|h| (format!("headers.{}", h.key), h.template.source()))
            .collect()
    }
}

/// One configured header: its value is a Go template rendered per occurrence.
#[derive(Debug, Clone)]
pub struct HeaderTemplate {
    /// The key as written in the config (`X-Reason`), for messages.
    pub key: String,
    pub name: HeaderName,
    pub template: Template,
}

impl PartialEq for HeaderTemplate {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.template.source() == other.template.source()
    }
}

/// The `headers` map of `f`: valid names, values that are valid header values and templates.
pub fn parse_headers(ctx: &mut Ctx, f: &Fields) -> Vec<HeaderTemplate> {
    ctx.string_map(f, "headers", |ctx, p, v| {
        let raw = p.rsplit('.').next().unwrap_or("");
        let name = match HeaderName::from_bytes(raw.as_bytes()) {
            Ok(name) => Some(name),
            Err(_) => {
                ctx.error(p, v.line, format!("invalid header name {raw:?}"));
                None
            }
        };
        let s = scalar_source(ctx, p, v)?;
        if let Err(why) = check_header_value(&s) {
            ctx.error(p, v.line, why);
            return None;
        }
        match Template::parse(&s) {
            Ok(template) => Some(HeaderTemplate {
                key: raw.to_owned(),
                name: name?,
                template,
            }),
            Err(e) => {
                ctx.error(p, v.line, e.to_string());
                None
            }
        }
    })
    .into_values()
    .collect()
}

/// Renders the configured headers for `data` into `out`, replacing ours (a configured
/// `Content-Type` or `Idempotency-Key` wins). Like resmoio, a header that fails to render is sent
/// as written.
/// The occurrence's template data is built only when headers are configured: with the default
/// batch of one, building it for nothing cost about as much as decoding the event again.
pub fn render_headers(headers: &[HeaderTemplate], occ: &Occurrence, out: &mut HeaderMap) {
    for h in headers {
        let value = h
            .template
            .render(occ.value())
            .unwrap_or_else(|_| h.template.source().to_owned());
        out.insert(h.name.clone(), header_value(&value));
    }
}

/// What `http` accepts in a header value: visible ASCII, space, tab and bytes >= 0x80. The error
/// names the offending character by position, never the value: it is often a secret.
pub fn check_header_value(value: &str) -> Result<(), String> {
    if http::HeaderValue::from_str(value).is_ok() {
        return Ok(());
    }
    let (i, c) = value
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_ascii_control() && *c != '\t')
        .unwrap_or((0, '\0'));
    let what = match c {
        '\n' | '\r' => "a line break".to_owned(),
        c => format!("the control character U+{:04X}", c as u32),
    };
    let hint = if matches!(c, '\n' | '\r') && i + 1 == value.chars().count() {
        " (a secret read from a file or `kubectl create secret --from-file` often ends with a newline: strip it)"
    } else {
        ""
    };
    Err(format!(
        "not a valid HTTP header value: {what} at character {} of {}{hint}; the header would not be sent",
        i + 1,
        value.chars().count()
    ))
}

/// A rendered header value as `http` accepts it: line breaks and other control characters (from
/// the event, e.g. a multi-line `.Message`) become spaces rather than dropping the header.
pub fn header_value(rendered: &str) -> HeaderValue {
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

/// What every HTTP client of a receiver is built from, so that they all behave alike: the
/// attempt's timeout (and at most 10 s to connect), no redirects (a POST silently turned into a
/// GET by a 302 would lose the event: a 3xx is reported instead), our User-Agent, and proxies
/// from the environment as reqwest reads them (`HTTPS_PROXY`, `NO_PROXY`). An [`Endpoint`]
/// adds the receiver's `tls:` block.
pub fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT)
}

/// A client without a `tls:` block: the AWS and Google endpoints and their credential services.
pub fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    client_builder(timeout)
        .build()
        .map_err(|e| format!("building the HTTP client: {}", error_chain(&e)))
}

/// An HTTP destination: the client built from the receiver's timeout and `tls:` block, and the
/// URL requests go to.
pub struct Endpoint {
    pub client: reqwest::Client,
    /// Where requests go: the configured URL, with its host replaced by `tls.serverName` when set
    /// (the resolver maps that name back to the configured host).
    pub url: reqwest::Url,
    /// The URL as configured, for logs.
    pub display: String,
    /// The configured `host[:port]`, to send as `Host` when the URL's host is `tls.serverName`.
    pub host: Option<HeaderValue>,
}

impl Endpoint {
    /// Everything that can go wrong before the first request, checked without sending one: the
    /// URL parses, the TLS files exist and parse, `tls.serverName` is usable and the client
    /// builds. Every problem is returned.
    pub fn build(url: &str, tls: &TlsConfig, timeout: Duration) -> Result<Endpoint, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut builder = tls.apply(client_builder(timeout), &mut problems);
        let mut parsed = match reqwest::Url::parse(url) {
            Ok(u) => Some(u),
            Err(e) => {
                problems.push(("endpoint", format!("invalid URL {url:?}: {e}")));
                None
            }
        };
        let mut host = None;
        if let (Some(name), Some(u)) = (&tls.server_name, parsed.as_mut()) {
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
        let client = builder.build().map_err(|e| {
            problems.push((
                "tls",
                format!("building the HTTP client: {}", error_chain(&e)),
            ))
        });
        match (client, parsed) {
            (Ok(client), Some(url_)) if problems.is_empty() => Ok(Endpoint {
                client,
                url: url_,
                display: url.to_owned(),
                host,
            }),
            _ => Err(problems),
        }
    }
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
    check_server_name(name)?;
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
