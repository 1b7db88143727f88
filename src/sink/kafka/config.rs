//! `receivers[].kafka`: resmoio's keys (`topic`, `brokers`, `clientId`, `compressionCodec`,
//! `version`, `tls`, `sasl`, `avro`, `layout`) plus `delivery`.
//!
//! Differences from resmoio, each an error at load instead of a silent fallback: an unknown
//! `compressionCodec` (resmoio sends uncompressed), an unknown SASL mechanism (resmoio uses
//! PLAIN), a `version` that is not `x.y[.z]` or predates record headers (0.11), and `avro`, which
//! is not supported.

use std::path::PathBuf;

use crate::config::yaml::{Ctx, Fields};
use crate::sink::layout::Encoding;
use crate::sink::secret::Secret;
use crate::sink::tls::{read_certificates, read_private_key};

pub const KEYS: &[&str] = &[
    "topic",
    "brokers",
    "clientId",
    "compressionCodec",
    "version",
    "tls",
    "sasl",
    "avro",
    "layout",
    "delivery",
];

/// resmoio's Kafka `tls:` (its own block, with `enable`, without `serverName`: librdkafka checks
/// the broker's certificate against the host name the broker advertises).
pub const TLS_KEYS: &[&str] = &[
    "enable",
    "caFile",
    "certFile",
    "keyFile",
    "insecureSkipVerify",
];
pub const SASL_KEYS: &[&str] = &["enable", "username", "password", "mechanism"];
pub const AVRO_KEYS: &[&str] = &["schemaID", "schema"];

/// The client id when `clientId` is not set (sarama's would be `sarama`).
pub const DEFAULT_CLIENT_ID: &str = "kube-event-exporter";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub const NAMES: &[&str] = &["none", "gzip", "snappy", "lz4", "zstd"];

    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "none" => Self::None,
            "gzip" => Self::Gzip,
            "snappy" => Self::Snappy,
            "lz4" => Self::Lz4,
            "zstd" => Self::Zstd,
            _ => return None,
        })
    }

    /// librdkafka's `compression.codec`.
    pub fn librdkafka(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    /// librdkafka's `sasl.mechanism`.
    pub fn librdkafka(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// What a crash or a failed send can cause (docs/configuration.md, "Delivery guarantees").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Semantics {
    /// Idempotent producer, `acks=all`; a batch is acknowledged (and the cursor may move) only
    /// once the broker acknowledged every record of it; failures are retried.
    AtLeastOnce,
    /// `acks=1`, no retries, no idempotence; a batch is acknowledged once it is queued in the
    /// client. Records lost on the way are logged and counted, never resent.
    AtMostOnce,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct KafkaTls {
    pub enable: bool,
    pub insecure_skip_verify: bool,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sasl {
    pub mechanism: Mechanism,
    pub username: String,
    pub password: Secret,
}

/// `receivers[].kafka`.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaConfig {
    pub topic: String,
    /// `host:port` each.
    pub brokers: Vec<String>,
    pub client_id: String,
    pub compression: Compression,
    /// `version` as written (`2.1.0`), given to librdkafka as `broker.version.fallback`.
    pub version: Option<String>,
    pub tls: KafkaTls,
    /// `None` unless `sasl.enable` is true.
    pub sasl: Option<Sasl>,
    pub semantics: Semantics,
    pub encoding: Encoding,
    /// `(key, why)` for settings that are ignored (TLS files without `tls.enable`, …).
    pub ignored: Vec<(&'static str, String)>,
}

fn line(f: &Fields, key: &str) -> u64 {
    f.get(key).map_or(f.line, |n| n.line)
}

/// Kafka's topic name rule: 1–249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn check_topic(name: &str) -> Result<(), String> {
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a valid topic name"));
    }
    if name.len() > 249 {
        return Err(format!(
            "is {} characters long; Kafka allows at most 249",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{name:?} contains {c:?}: a topic name has only letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// `host:port`, port a number in 1..=65535 (IPv6 as `[::1]:9092`).
pub fn check_broker(b: &str) -> Result<(), String> {
    let Some((host, port)) = b.rsplit_once(':') else {
        return Err(format!("{b:?} needs a port: host:port, e.g. {b}:9092"));
    };
    if host.is_empty() || host.contains("://") || b.contains('/') {
        return Err(format!(
            "{b:?} is not host:port (write brokers without a scheme, e.g. kafka-0.kafka:9092)"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{b:?}: {port:?} is not a port number")),
    }
}

/// `x.y` or `x.y.z` (sarama's `version` strings, e.g. `2.1.0`), at least 0.11 (record headers).
fn check_version(v: &str) -> Result<(), String> {
    let parts: Vec<&str> = v.split('.').collect();
    let nums: Option<Vec<u32>> = parts.iter().map(|p| p.parse().ok()).collect();
    match nums {
        Some(n) if (2..=4).contains(&n.len()) => {
            if (n[0], n[1]) < (0, 11) {
                Err(format!(
                    "{v}: brokers before 0.11 carry no record headers (the Idempotency-Key) and no idempotent producer"
                ))
            } else {
                Ok(())
            }
        }
        _ => Err(format!("{v:?} is not a Kafka version such as 2.1.0")),
    }
}

pub fn parse(ctx: &mut Ctx, f: &Fields) -> Option<KafkaConfig> {
    let mut ignored = Vec::new();
    let topic = ctx.string(f, "topic");
    match &topic {
        None if !f.has("topic") => ctx.error(&f.path("topic"), f.line, "is required"),
        Some(t) => {
            if let Err(why) = check_topic(t) {
                ctx.error(&f.path("topic"), line(f, "topic"), why);
            }
        }
        None => {}
    }
    let mut brokers = Vec::new();
    let nodes = ctx.seq(f, "brokers");
    for (i, n) in nodes.iter().enumerate() {
        let path = format!("{}[{i}]", f.path("brokers"));
        let b = match &n.kind {
            crate::config::yaml::Kind::Str(s) => ctx.expand(&path, n.line, s),
            _ => {
                ctx.error(
                    &path,
                    n.line,
                    format!("expected host:port, found {}", n.kind.describe()),
                );
                None
            }
        };
        if let Some(b) = b {
            // A `${BROKERS}` list expands to one comma-separated string.
            for one in b.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                match check_broker(one) {
                    Ok(()) => brokers.push(one.to_owned()),
                    Err(why) => ctx.error(&path, n.line, why),
                }
            }
        }
    }
    if brokers.is_empty() && nodes.is_empty() {
        ctx.error(
            &f.path("brokers"),
            line(f, "brokers"),
            "is required: a list of host:port, e.g. [kafka-0.kafka:9092]",
        );
    }
    let client_id = ctx
        .opt_string(f, "clientId")
        .unwrap_or_else(|| DEFAULT_CLIENT_ID.to_owned());
    let compression = match ctx.opt_string(f, "compressionCodec") {
        None => Some(Compression::None),
        Some(c) => Compression::parse(&c).or_else(|| {
            ctx.error(
                &f.path("compressionCodec"),
                line(f, "compressionCodec"),
                format!(
                    "unknown codec {c:?} (one of {})",
                    Compression::NAMES.join(", ")
                ),
            );
            None
        }),
    };
    let version = ctx.opt_string(f, "version");
    if let Some(v) = &version
        && let Err(why) = check_version(v)
    {
        ctx.error(&f.path("version"), line(f, "version"), why);
    }
    let tls = parse_tls(ctx, f, &mut ignored);
    let sasl = parse_sasl(ctx, f, &mut ignored);
    if let Some(n) = f.get("avro") {
        // Checked for its keys so a typo is reported with the rest.
        ctx.map(n, &f.path("avro"), AVRO_KEYS);
        ctx.error(
            &f.path("avro"),
            n.line,
            "Avro is not supported by this exporter: remove avro to send JSON (the layout or the whole event); consumers that decode with an Avro deserializer (resmoio's header and schema) must switch to a JSON deserializer for this topic, or read it from a new topic",
        );
    }
    let semantics = match ctx.opt_string(f, "delivery").as_deref() {
        None | Some("atLeastOnce") => Some(Semantics::AtLeastOnce),
        Some("atMostOnce") => Some(Semantics::AtMostOnce),
        Some("exactlyOnce") => {
            ctx.error(
                &f.path("delivery"),
                line(f, "delivery"),
                "exactlyOnce is not supported yet (docs/architecture.md, \"Kafka exactly-once\"): use atLeastOnce and drop replays by the Idempotency-Key header",
            );
            None
        }
        Some(other) => {
            ctx.error(
                &f.path("delivery"),
                line(f, "delivery"),
                format!("unknown delivery {other:?} (atLeastOnce or atMostOnce)"),
            );
            None
        }
    };
    let encoding = Encoding::parse(ctx, f, false);
    Some(KafkaConfig {
        topic: topic?,
        brokers,
        client_id,
        compression: compression?,
        version,
        tls: tls?,
        sasl: sasl?,
        semantics: semantics?,
        encoding: encoding?,
        ignored,
    })
}

fn parse_tls(
    ctx: &mut Ctx,
    f: &Fields,
    ignored: &mut Vec<(&'static str, String)>,
) -> Option<KafkaTls> {
    let Some(n) = f.get("tls") else {
        return Some(KafkaTls::default());
    };
    let t = ctx.map(n, &f.path("tls"), TLS_KEYS)?;
    let tls = KafkaTls {
        enable: ctx.bool(&t, "enable").unwrap_or(false),
        insecure_skip_verify: ctx.bool(&t, "insecureSkipVerify").unwrap_or(false),
        ca_file: ctx.opt_string(&t, "caFile").map(PathBuf::from),
        cert_file: ctx.opt_string(&t, "certFile").map(PathBuf::from),
        key_file: ctx.opt_string(&t, "keyFile").map(PathBuf::from),
    };
    match (&tls.cert_file, &tls.key_file) {
        (Some(_), None) => ctx.error(
            &t.path("certFile"),
            line(&t, "certFile"),
            "certFile is set without keyFile",
        ),
        (None, Some(_)) => ctx.error(
            &t.path("keyFile"),
            line(&t, "keyFile"),
            "keyFile is set without certFile",
        ),
        _ => {}
    }
    if !tls.enable && (tls.ca_file.is_some() || tls.cert_file.is_some() || tls.insecure_skip_verify)
    {
        // resmoio ignores them too; said aloud here.
        ignored.push((
            "tls.enable",
            "is not true: the other tls settings are ignored and the connection is plaintext"
                .to_owned(),
        ));
    }
    Some(tls)
}

fn parse_sasl(
    ctx: &mut Ctx,
    f: &Fields,
    ignored: &mut Vec<(&'static str, String)>,
) -> Option<Option<Sasl>> {
    let Some(n) = f.get("sasl") else {
        return Some(None);
    };
    let s = ctx.map(n, &f.path("sasl"), SASL_KEYS)?;
    let enable = ctx.bool(&s, "enable").unwrap_or(false);
    let username = ctx.opt_string(&s, "username");
    let password = ctx.opt_string(&s, "password");
    let mechanism = match ctx.opt_string(&s, "mechanism") {
        None => Some(Mechanism::Plain),
        Some(m) => match m.to_ascii_lowercase().as_str() {
            "plain" => Some(Mechanism::Plain),
            "sha256" | "scram-sha-256" => Some(Mechanism::ScramSha256),
            "sha512" | "scram-sha-512" => Some(Mechanism::ScramSha512),
            "gssapi" | "oauthbearer" => {
                ctx.error(
                    &s.path("mechanism"),
                    line(&s, "mechanism"),
                    format!(
                        "{m} is not supported by this exporter (plain, sha256 or sha512: SASL/PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"
                    ),
                );
                None
            }
            _ => {
                ctx.error(
                    &s.path("mechanism"),
                    line(&s, "mechanism"),
                    format!("unknown mechanism {m:?} (plain, sha256 or sha512)"),
                );
                None
            }
        },
    };
    if !enable {
        if username.is_some() || password.is_some() {
            ignored.push((
                "sasl.enable",
                "is not true: username and password are ignored and no SASL authentication is made"
                    .to_owned(),
            ));
        }
        return Some(None);
    }
    let mut ok = true;
    for (key, v) in [("username", &username), ("password", &password)] {
        if v.is_none() {
            ctx.error(&s.path(key), s.line, "is required when sasl.enable is true");
            ok = false;
        }
    }
    let mechanism = mechanism?;
    if !ok {
        return None;
    }
    Some(Some(Sasl {
        mechanism,
        username: username?,
        password: Secret(password?),
    }))
}

impl KafkaConfig {
    /// The TLS files that cannot be read or parsed, by key (what `run` would refuse).
    pub fn check_files(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if !self.tls.enable {
            return problems;
        }
        if let Some(ca) = &self.tls.ca_file
            && let Err(why) = read_certificates(ca)
        {
            problems.push(("tls.caFile", why));
        }
        if let Some(cert) = &self.tls.cert_file
            && let Err(why) = read_certificates(cert)
        {
            problems.push(("tls.certFile", why));
        }
        if let Some(key) = &self.tls.key_file
            && let Err(why) = read_private_key(key)
        {
            problems.push(("tls.keyFile", why));
        }
        problems
    }
}
