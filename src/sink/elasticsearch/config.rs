//! The keys of `elasticsearch` and `opensearch` receivers (the same for both): resmoio's, with
//! their meaning, plus `dataStream`, `gzip` and `aws` (SigV4 for Amazon OpenSearch).

use base64::Engine;

use super::index::IndexPattern;
use crate::config::yaml::{Ctx, Fields, Kind};
use crate::sink::http::{check_header_value, check_url};
use crate::sink::layout::Encoding;
use crate::sink::render::scalar_source;
use crate::sink::secret::Secret;
use crate::sink::tls::{TLS_KEYS, TlsConfig};

pub const KEYS: &[&str] = &[
    "hosts",
    "index",
    "indexFormat",
    "username",
    "password",
    "cloudID",
    "apiKey",
    "headers",
    "useEventID",
    "deDot",
    "layout",
    "type",
    "tls",
    "dataStream",
    "gzip",
    "aws",
];

pub const AWS_KEYS: &[&str] = &["region", "service"];

pub const NESTED: &[(&str, &[&str])] = &[("tls", TLS_KEYS), ("aws", AWS_KEYS)];

/// An `elasticsearch` or `opensearch` receiver's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchConfig {
    /// Base URLs (`https://es:9200`, or `https://…/prefix`); from `cloudID` when it is set.
    pub hosts: Vec<String>,
    pub index: IndexPattern,
    pub auth: Auth,
    /// Sent with every request, as written (resmoio's are not templates either).
    pub headers: Vec<(String, String)>,
    /// One document per event (`_id` = the event's uid), replaced by later occurrences only.
    pub use_event_id: bool,
    /// Some(true): always a data stream; Some(false): never; None: detected from the server's
    /// answer.
    pub data_stream: Option<bool>,
    /// `_type`, for Elasticsearch 6.x/7.x (ignored, with a warning, by newer servers).
    pub doc_type: Option<String>,
    pub gzip: bool,
    pub tls: TlsConfig,
    pub aws: Option<AwsConfig>,
    pub encoding: Encoding,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    None,
    /// The `Authorization` value: `Basic …` or `ApiKey …`; a credential, never printed.
    Header(Secret),
    /// AWS SigV4 (the `aws` block).
    SigV4,
}

/// `aws:`: sign requests with SigV4 (Amazon OpenSearch Service and Serverless).
#[derive(Debug, Clone, PartialEq)]
pub struct AwsConfig {
    /// None: `AWS_REGION` / `AWS_DEFAULT_REGION` at start.
    pub region: Option<String>,
    /// `es` (managed domains) or `aoss` (Serverless).
    pub service: String,
}

pub fn parse(ctx: &mut Ctx, f: &Fields) -> Option<SearchConfig> {
    let before = ctx.errors.len();
    let mut hosts = Vec::new();
    for (i, n) in ctx.seq(f, "hosts").iter().enumerate() {
        let path = format!("{}[{i}]", f.path("hosts"));
        let s = match &n.kind {
            Kind::Str(s) => ctx.expand(&path, n.line, s),
            _ => {
                ctx.error(
                    &path,
                    n.line,
                    format!("expected a URL, found {}", n.kind.describe()),
                );
                None
            }
        };
        if let Some(s) = s {
            match check_url(&s) {
                Ok(()) => hosts.push(s.trim_end_matches('/').to_owned()),
                Err(why) => ctx.error(&path, n.line, why),
            }
        }
    }
    let line = |key: &str| f.get(key).map_or(f.line, |n| n.line);
    if let Some(cloud) = ctx.opt_string(f, "cloudID") {
        if !hosts.is_empty() {
            ctx.error(
                &f.path("cloudID"),
                line("cloudID"),
                "set either hosts or cloudID, not both",
            );
        }
        match cloud_url(&cloud) {
            Ok(url) => hosts = vec![url],
            Err(why) => ctx.error(&f.path("cloudID"), line("cloudID"), why),
        }
    } else if hosts.is_empty() && !f.has("hosts") {
        ctx.error(&f.path("hosts"), f.line, "is required (or cloudID)");
    } else if hosts.is_empty() && ctx.errors.len() == before {
        ctx.error(&f.path("hosts"), line("hosts"), "lists no host");
    }

    // indexFormat wins over index, as in resmoio.
    let index = match (ctx.opt_string(f, "indexFormat"), ctx.opt_string(f, "index")) {
        (Some(fmt), _) => IndexPattern::format(&fmt)
            .map_err(|why| ctx.error(&f.path("indexFormat"), line("indexFormat"), why))
            .ok(),
        (None, Some(name)) => IndexPattern::fixed(&name)
            .map_err(|why| ctx.error(&f.path("index"), line("index"), why))
            .ok(),
        (None, None) => {
            ctx.error(&f.path("index"), f.line, "is required (or indexFormat)");
            None
        }
    };

    let username = ctx.opt_string(f, "username");
    let password = ctx.opt_string(f, "password");
    let api_key = ctx.opt_string(f, "apiKey");
    if password.is_some() && username.is_none() {
        ctx.error(
            &f.path("password"),
            line("password"),
            "is set without username",
        );
    }
    let aws = parse_aws(ctx, f);
    let auth = match (&api_key, &username, &aws) {
        (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
            ctx.error(
                &f.path("aws"),
                line("aws"),
                "SigV4 signing replaces apiKey and username/password: set only one",
            );
            Auth::None
        }
        (_, _, Some(_)) => Auth::SigV4,
        // As go-elasticsearch: an API key wins over username/password.
        (Some(key), _, None) => Auth::Header(Secret(format!("ApiKey {key}"))),
        (None, Some(user), None) => Auth::Header(Secret(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{user}:{}", password.as_deref().unwrap_or("")))
        ))),
        (None, None, None) => Auth::None,
    };
    if let Auth::Header(h) = &auth
        && check_header_value(h.expose()).is_err()
    {
        let key = if api_key.is_some() {
            "apiKey"
        } else {
            "username"
        };
        ctx.error(
            &f.path(key),
            line(key),
            "contains a line break or another control character (a secret read from a file often ends with a newline: strip it)",
        );
    }

    let headers: Vec<(String, String)> = ctx
        .string_map(f, "headers", |ctx, p, v| {
            let name = p.rsplit('.').next().unwrap_or("").to_owned();
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                ctx.error(p, v.line, format!("invalid header name {name:?}"));
                return None;
            }
            let value = scalar_source(ctx, p, v)?;
            match check_header_value(&value) {
                Ok(()) => Some((name, value)),
                Err(why) => {
                    ctx.error(p, v.line, why);
                    None
                }
            }
        })
        .into_values()
        .collect();

    let use_event_id = ctx.bool(f, "useEventID").unwrap_or(false);
    let data_stream = ctx.bool(f, "dataStream");
    if data_stream == Some(true) && use_event_id {
        ctx.error(
            &f.path("useEventID"),
            line("useEventID"),
            "a data stream is append-only: it cannot keep one document per event updated in place (remove useEventID, or dataStream)",
        );
    }
    let doc_type = ctx.opt_string(f, "type");
    let gzip = ctx.bool(f, "gzip").unwrap_or(true);
    let tls = TlsConfig::parse(ctx, f);
    if tls.server_name.is_some() && hosts.iter().any(|h| h.starts_with("http://")) {
        ctx.error(
            &format!("{}.serverName", f.path("tls")),
            line("tls"),
            "needs https:// hosts",
        );
    }
    let encoding = Encoding::parse(ctx, f, true);
    if ctx.errors.len() != before {
        return None;
    }
    Some(SearchConfig {
        hosts,
        index: index?,
        auth,
        headers,
        use_event_id,
        data_stream,
        doc_type,
        gzip,
        tls,
        aws,
        encoding: encoding?,
    })
}

fn parse_aws(ctx: &mut Ctx, f: &Fields) -> Option<AwsConfig> {
    let n = f.get("aws")?;
    let a = ctx.map(n, &f.path("aws"), AWS_KEYS)?;
    let region = ctx.opt_string(&a, "region");
    let service = ctx.opt_string(&a, "service").unwrap_or_else(|| "es".into());
    if !matches!(service.as_str(), "es" | "aoss") {
        ctx.error(
            &a.path("service"),
            a.get("service").map_or(a.line, |n| n.line),
            format!("{service:?}: expected es (OpenSearch Service) or aoss (Serverless)"),
        );
    }
    Some(AwsConfig { region, service })
}

/// The endpoint of an Elastic Cloud ID: `name:base64(host[:port]$es-uuid$kibana-uuid)` is
/// `https://{es-uuid}.{host}[:port]`.
pub fn cloud_url(cloud_id: &str) -> Result<String, String> {
    let encoded = cloud_id
        .rsplit_once(':')
        .map_or(cloud_id, |(_, e)| e)
        .trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| "not a Cloud ID (expected name:base64 text)".to_owned())?;
    let mut parts = decoded.split('$');
    let host = parts.next().unwrap_or("");
    let uuid = parts.next().unwrap_or("");
    if host.is_empty() || uuid.is_empty() {
        return Err("not a Cloud ID (its decoded value lacks host$uuid)".to_owned());
    }
    let (host, port) = match host.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h, Some(p)),
        _ => (host, None),
    };
    let url = match port {
        Some(p) => format!("https://{uuid}.{host}:{p}"),
        None => format!("https://{uuid}.{host}"),
    };
    check_url(&url)?;
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_ids_decode_to_the_elasticsearch_endpoint() {
        let id = format!(
            "my-deployment:{}",
            base64::engine::general_purpose::STANDARD
                .encode("us-east-1.aws.found.io$abc123$def456")
        );
        assert_eq!(
            cloud_url(&id).unwrap(),
            "https://abc123.us-east-1.aws.found.io"
        );
        let with_port = format!(
            "x:{}",
            base64::engine::general_purpose::STANDARD.encode("example.com:9243$uuid$k")
        );
        assert_eq!(
            cloud_url(&with_port).unwrap(),
            "https://uuid.example.com:9243"
        );
        assert!(cloud_url("nonsense").is_err());
    }

    fn search_config(keys: &str) -> SearchConfig {
        let yaml = format!(
            "route:\n  routes:\n    - match:\n        - receiver: es\nreceivers:\n  - name: es\n    elasticsearch:\n      hosts: [http://127.0.0.1:9200]\n      index: ev\n{keys}"
        );
        let cfg = crate::config::parse(&yaml, &|_| None).unwrap_or_else(|e| panic!("{e}"));
        match &cfg.receivers[0].sink {
            crate::sink::SinkConfig::Elasticsearch(c) => c.0.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_authorization_value_is_a_secret_that_debug_does_not_print() {
        let keyed = search_config("      apiKey: k3y-s3cr3t\n");
        let Auth::Header(h) = &keyed.auth else {
            panic!("{:?}", keyed.auth)
        };
        assert_eq!(h.expose(), "ApiKey k3y-s3cr3t");
        let printed = format!("{keyed:?}");
        assert!(!printed.contains("k3y-s3cr3t"), "{printed}");
        assert!(printed.contains("auth: Header(***)"), "{printed}");

        let basic = search_config("      username: elastic\n      password: hunter2\n");
        let Auth::Header(h) = &basic.auth else {
            panic!("{:?}", basic.auth)
        };
        // base64("elastic:hunter2")
        assert_eq!(h.expose(), "Basic ZWxhc3RpYzpodW50ZXIy");
        let printed = format!("{basic:?}");
        assert!(
            !printed.contains("ZWxhc3RpYzpodW50ZXIy") && !printed.contains("hunter2"),
            "{printed}"
        );
    }
}
