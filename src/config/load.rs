//! `load`/`parse`: YAML text to a validated `Config`, with resmoio's keys and defaults plus ours.

use std::path::Path;
use std::time::Duration;

use super::error::{ConfigError, ConfigErrors};
use super::node::{self, Kind, Node};
use super::schema::{Ctx, Fields};
use super::*;
use crate::sink::kind;
use crate::sink::registry::{self, KINDS, KindInfo};

const TOP_KEYS: &[&str] = &[
    "logLevel",
    "logFormat",
    "throttlePeriod",
    "maxEventAgeSeconds",
    "clusterName",
    "namespace",
    "leaderElection",
    "route",
    "receivers",
    "kubeQPS",
    "kubeBurst",
    "metricsNamePrefix",
    "omitLookup",
    "cacheSize",
    "eventTTL",
];
const LEADER_KEYS: &[&str] = &[
    "enabled",
    "leaderElectionID",
    "leaseName",
    "leaseNamespace",
    "identity",
    "leaseDuration",
    "renewDeadline",
    "retryPeriod",
    "shards",
    "shutdownLinger",
    "drainTimeout",
];
const ROUTE_KEYS: &[&str] = &["drop", "match", "routes"];
const RULE_KEYS: &[&str] = &[
    "labels",
    "annotations",
    "message",
    "apiVersion",
    "kind",
    "namespace",
    "reason",
    "type",
    "minCount",
    "component",
    "host",
    "receiver",
];
const DELIVERY_KEYS: &[&str] = &[
    "queue",
    "dropWhenFull",
    "timeout",
    "retry",
    "batch",
    "concurrency",
];

/// Most lanes a receiver may have: far above what any destination needs from one exporter.
const MAX_CONCURRENCY: i64 = 64;
const RETRY_KEYS: &[&str] = &["initialBackoff", "maxBackoff", "maxAttempts"];
const BATCH_KEYS: &[&str] = &["maxEvents", "maxWait"];

// Bounds of sizes that are allocated up front (a channel, a batch buffer, an LRU): larger values
// would make the exporter abort at start instead of failing here with the key's path.
const MAX_CACHE_SIZE: i64 = 1 << 20;
const MAX_QUEUE: i64 = 1 << 20;
const MAX_BATCH_EVENTS: i64 = 1 << 16;

/// Every key the loader accepts, as documented in docs/configuration.md: `leaderElection.leaseName`,
/// `rule.reason` (an item of `drop`/`match`), `receivers[].webhook.tls.caFile`, … Built from the
/// same lists the loader checks against, so the reference cannot drift from the code.
pub fn key_paths() -> Vec<String> {
    let under = |prefix: &str, keys: &[&str]| -> Vec<String> {
        keys.iter().map(|k| format!("{prefix}{k}")).collect()
    };
    let mut out = under("", TOP_KEYS);
    out.extend(under("leaderElection.", LEADER_KEYS));
    out.extend(under("route.", ROUTE_KEYS));
    out.extend(under("rule.", RULE_KEYS));
    out.extend(under("receivers[].", &["name"]));
    out.extend(under("receivers[].", DELIVERY_KEYS));
    out.extend(under("receivers[].retry.", RETRY_KEYS));
    out.extend(under("receivers[].batch.", BATCH_KEYS));
    for kind in KINDS {
        out.push(format!("receivers[].{}", kind.name));
        out.extend(under(&format!("receivers[].{}.", kind.name), kind.keys));
        for (key, nested) in kind.nested {
            out.extend(under(&format!("receivers[].{}.{key}.", kind.name), nested));
        }
    }
    out.extend(registry::unsupported().map(|k| format!("receivers[].{k}")));
    out
}

/// Config files above this size are refused while reading: `--config /dev/zero` (or a log file
/// given by mistake) must not grow the process until the kernel kills it.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = read(path, MAX_CONFIG_BYTES)?;
    parse(&text, &|name| std::env::var(name).ok())
}

/// The `logFormat` the file at `path` asks for, read leniently from a file that does not load, so
/// that its errors can be logged the way the file asks: `json` when the top level says so, even
/// among other errors or in YAML that does not parse; text otherwise (unreadable file included).
pub fn log_format_hint(path: &Path) -> LogFormat {
    read(path, MAX_CONFIG_BYTES)
        .ok()
        .and_then(|text| log_format_in(&text))
        .unwrap_or_default()
}

pub(super) fn log_format_in(text: &str) -> Option<LogFormat> {
    let value = match node::parse_yaml(text) {
        Ok(Node {
            kind: Kind::Map(entries),
            ..
        }) => match &entries.iter().find(|e| e.key == "logFormat")?.value.kind {
            Kind::Str(s) => s.clone(),
            _ => return None,
        },
        Ok(_) => return None,
        // Not YAML: a top-level `logFormat: json` line, as written.
        Err(_) => text.lines().find_map(|l| {
            let value = l.strip_prefix("logFormat:")?;
            let value = value.split(" #").next().unwrap_or("").trim();
            Some(value.trim_matches(['"', '\'']).to_owned())
        })?,
    };
    (value == "json").then_some(LogFormat::Json)
}

/// Reads at most `limit` bytes of UTF-8 text from `path`; more is an error naming the limit.
fn read(path: &Path, limit: u64) -> Result<String, ConfigErrors> {
    let cannot =
        |why: String| ConfigErrors::one("", format!("cannot read {}: {why}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| cannot(e.to_string()))?;
    read_limited(file, limit).map_err(cannot)
}

pub(super) fn read_limited(r: impl std::io::Read, limit: u64) -> Result<String, String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    r.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "larger than {}, the limit for a config file",
            human_size(limit)
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

fn human_size(bytes: u64) -> String {
    if bytes >= 1024 * 1024 && bytes.is_multiple_of(1024 * 1024) {
        format!("{} MiB", bytes / (1024 * 1024))
    } else {
        format!("{bytes} bytes")
    }
}

/// Parses and validates config text; `env` resolves `${VAR}` references.
pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
    let root = node::parse_yaml(text).map_err(|e| syntax_error(text, &e))?;
    let mut ctx = Ctx {
        errors: Vec::new(),
        warnings: Vec::new(),
        env,
    };
    let config = build(&mut ctx, &root);
    if ctx.errors.is_empty()
        && let Some(mut c) = config
    {
        c.load_warnings = ctx.warnings;
        return Ok(c);
    }
    ctx.errors.sort_by_key(|e| e.line.unwrap_or(u64::MAX));
    Err(ConfigErrors { errors: ctx.errors })
}

fn syntax_error(text: &str, e: &serde_saphyr::Error) -> ConfigErrors {
    let first = e
        .to_string()
        .lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("error: ")
        .to_owned();
    let line = e.location().map(|l| l.line()).filter(|l| *l > 0);
    let mut message = format!("invalid YAML: {first}");
    if let Some(l) = line {
        let src = text.lines().nth(l as usize - 1).unwrap_or("");
        if src.contains("{{") {
            message.push_str(" (hint: wrap values with special characters in quotes)");
        }
    }
    ConfigErrors {
        errors: vec![ConfigError {
            path: String::new(),
            message,
            line,
        }],
    }
}

fn build(ctx: &mut Ctx, root: &Node) -> Option<Config> {
    // A document that is only `---` or `~` is an empty config, like an empty file.
    let empty = Node {
        line: 1,
        kind: Kind::Map(Vec::new()),
    };
    let root = if root.kind == Kind::Null {
        &empty
    } else {
        root
    };
    let f = ctx.map(root, "", TOP_KEYS)?;
    let log_level = match ctx.string(&f, "logLevel").as_deref() {
        None | Some("") | Some("info") => LogLevel::Info,
        Some("trace") => LogLevel::Trace,
        Some("debug") => LogLevel::Debug,
        Some("warn") => LogLevel::Warn,
        Some("error") | Some("fatal") | Some("panic") => LogLevel::Error,
        Some("disabled") => {
            ctx.warnings.push(
                "logLevel: disabled turns every log line off, errors and the lease transitions included; `error` keeps those".to_owned(),
            );
            LogLevel::Off
        }
        Some(other) => {
            ctx.error(
                "logLevel",
                f.get("logLevel").map_or(0, |n| n.line),
                format!(
                    "unknown log level {other:?} (use trace, debug, info, warn, error or disabled)"
                ),
            );
            LogLevel::Info
        }
    };
    let log_format = match ctx.string(&f, "logFormat").as_deref() {
        None | Some("") | Some("pretty") | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            ctx.error(
                "logFormat",
                f.get("logFormat").map_or(0, |n| n.line),
                format!("unknown log format {other:?} (use text or json)"),
            );
            LogFormat::Text
        }
    };
    let throttle = ctx.int(&f, "throttlePeriod", 0, i64::MAX);
    let max_age = ctx.int(&f, "maxEventAgeSeconds", 0, i64::MAX);
    if f.has("throttlePeriod") && f.has("maxEventAgeSeconds") {
        ctx.error(
            "throttlePeriod",
            f.get("throttlePeriod").map_or(0, |n| n.line),
            "cannot set both throttlePeriod (deprecated) and maxEventAgeSeconds",
        );
    }
    const DEFAULT_QPS: f32 = 50.0;
    const DEFAULT_BURST: i64 = 100;
    let max_event_age =
        Duration::from_secs(max_age.or(throttle).filter(|s| *s > 0).unwrap_or(5) as u64);
    let cluster_name = ctx.string(&f, "clusterName").unwrap_or_default();
    let namespace = ctx.opt_string(&f, "namespace");
    let leader_election = leader(ctx, &f);
    // Our defaults are 10x client-go's 5 QPS / 10 burst, which resmoio inherits and which throttles
    // involved-object lookups on any busy cluster (its users' most common log complaint); lookups
    // are cached, so the steady API load stays low.
    let kube_qps = match ctx.float(&f, "kubeQPS") {
        Some(q) if q < 0.0 => {
            ctx.error(
                "kubeQPS",
                f.get("kubeQPS").map_or(0, |n| n.line),
                "must not be negative",
            );
            DEFAULT_QPS
        }
        Some(q) if q > 0.0 => q as f32,
        _ => DEFAULT_QPS,
    };
    let kube_burst = ctx
        .int(&f, "kubeBurst", 0, u32::MAX as i64)
        .filter(|b| *b > 0)
        .unwrap_or(DEFAULT_BURST) as u32;
    let metrics_name_prefix = match ctx.string(&f, "metricsNamePrefix") {
        None => "kube_event_exporter_".to_owned(),
        Some(p) if p.is_empty() => "kube_event_exporter_".to_owned(),
        Some(p) => {
            let ok = p.ends_with('_')
                && p.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
            if !ok {
                ctx.error(
                    "metricsNamePrefix",
                    f.get("metricsNamePrefix").map_or(0, |n| n.line),
                    format!(
                        "{p:?} must match ^[a-zA-Z][a-zA-Z0-9_:]*_$ (e.g. kube_event_exporter_)"
                    ),
                );
            }
            p
        }
    };
    let omit_lookup = ctx.bool(&f, "omitLookup").unwrap_or(false);
    let event_ttl = match ctx.duration(&f, "eventTTL") {
        Some(d) if d.is_zero() => {
            ctx.error(
                "eventTTL",
                f.get("eventTTL").map_or(0, |n| n.line),
                "must be more than 0 (the API server's --event-ttl, 1h by default)",
            );
            crate::source::DEFAULT_EVENT_TTL
        }
        Some(d) => d,
        None => crate::source::DEFAULT_EVENT_TTL,
    };
    let cache_size = ctx
        .int(&f, "cacheSize", 0, MAX_CACHE_SIZE)
        .filter(|c| *c > 0)
        .unwrap_or(1024) as usize;

    let mut targets = Vec::new();
    let route = match f.get("route") {
        Some(n) => route(ctx, n, "route", &mut targets),
        None => Route::default(),
    };
    // Names of every receiver entry, valid or not: an invalid receiver is reported once, not
    // again by every rule that names it.
    let (receivers, declared) = receivers(ctx, &f);
    for (path, line, name) in targets {
        if !declared.contains(&name) {
            ctx.error(
                &path,
                line,
                format!("receiver {name:?} is not defined in receivers"),
            );
        }
    }
    Some(Config {
        log_level,
        log_format,
        max_event_age,
        cluster_name,
        namespace,
        leader_election,
        route,
        receivers,
        kube_qps,
        kube_burst,
        metrics_name_prefix,
        omit_lookup,
        cache_size,
        event_ttl,
        load_warnings: Vec::new(),
    })
}

/// More shards than this would mean more Leases and watches than any cluster's event rate needs.
const MAX_SHARDS: i64 = 64;

fn leader(ctx: &mut Ctx, top: &Fields) -> LeaderElectionConfig {
    let f = top
        .get("leaderElection")
        .and_then(|n| ctx.map(n, "leaderElection", LEADER_KEYS));
    let empty = Node {
        line: 0,
        kind: Kind::Map(Vec::new()),
    };
    let f = f.unwrap_or_else(|| {
        ctx.map(&empty, "leaderElection", LEADER_KEYS)
            .expect("empty map")
    });
    let id = ctx.opt_string(&f, "leaderElectionID");
    let name = ctx.opt_string(&f, "leaseName");
    if id.is_some() && name.is_some() {
        ctx.error(
            &f.path("leaderElectionID"),
            f.get("leaderElectionID").map_or(0, |n| n.line),
            "cannot set both leaderElectionID (resmoio's name) and leaseName",
        );
    }
    let lease_duration = ctx
        .duration(&f, "leaseDuration")
        .unwrap_or(Duration::from_secs(15));
    let renew_deadline = ctx
        .duration(&f, "renewDeadline")
        .unwrap_or(Duration::from_secs(10));
    let retry_period = ctx
        .duration(&f, "retryPeriod")
        .unwrap_or(Duration::from_secs(2));
    // client-go's constraints: the lease must outlive the renew deadline, which must leave room
    // for more than one retry (JitterFactor 1.2).
    if lease_duration <= renew_deadline {
        ctx.error(
            &f.path("leaseDuration"),
            f.get("leaseDuration").map_or(f.line, |n| n.line),
            format!(
                "must be greater than renewDeadline ({renew_deadline:?} >= {lease_duration:?})"
            ),
        );
    }
    if renew_deadline.as_secs_f64() <= 1.2 * retry_period.as_secs_f64() {
        ctx.error(
            &f.path("renewDeadline"),
            f.get("renewDeadline").map_or(f.line, |n| n.line),
            format!("must be greater than 1.2 × retryPeriod ({renew_deadline:?} <= 1.2 × {retry_period:?})"),
        );
    }
    if retry_period.is_zero() {
        ctx.error(
            &f.path("retryPeriod"),
            f.get("retryPeriod").map_or(f.line, |n| n.line),
            "must be greater than 0",
        );
    }
    let enabled = ctx.bool(&f, "enabled").unwrap_or(true);
    let shards = ctx.int(&f, "shards", 1, MAX_SHARDS).unwrap_or(1) as u32;
    if shards > 1 && !enabled {
        ctx.error(
            &f.path("shards"),
            f.get("shards").map_or(f.line, |n| n.line),
            "shards need leader election: each shard is handed over through its own Lease",
        );
    }
    LeaderElectionConfig {
        enabled,
        shards,
        lease_name: name
            .or(id)
            .unwrap_or_else(|| "kube-event-exporter".to_owned()),
        lease_namespace: ctx.opt_string(&f, "leaseNamespace"),
        identity: ctx.opt_string(&f, "identity"),
        lease_duration,
        renew_deadline,
        retry_period,
        shutdown_linger: ctx.duration(&f, "shutdownLinger").unwrap_or(lease_duration),
        drain_timeout: ctx
            .duration(&f, "drainTimeout")
            .unwrap_or(Duration::from_secs(10)),
    }
}

/// A route node; `targets` collects `(rule path, line, receiver)` for the cross-check.
fn route(ctx: &mut Ctx, n: &Node, path: &str, targets: &mut Vec<(String, u64, String)>) -> Route {
    let Some(f) = ctx.map(n, path, ROUTE_KEYS) else {
        return Route::default();
    };
    let rules = |ctx: &mut Ctx, key: &str, targets: &mut Vec<(String, u64, String)>| -> Vec<Rule> {
        let items = ctx.seq(&f, key);
        items
            .iter()
            .enumerate()
            .map(|(i, r)| rule(ctx, r, &format!("{}[{i}]", f.path(key)), targets))
            .collect()
    };
    let drop = rules(ctx, "drop", targets);
    let match_ = rules(ctx, "match", targets);
    let routes = ctx
        .seq(&f, "routes")
        .iter()
        .enumerate()
        .map(|(i, r)| route(ctx, r, &format!("{}[{i}]", f.path("routes")), targets))
        .collect();
    Route {
        drop,
        match_,
        routes,
    }
}

fn rule(ctx: &mut Ctx, n: &Node, path: &str, targets: &mut Vec<(String, u64, String)>) -> Rule {
    let Some(f) = ctx.map(n, path, RULE_KEYS) else {
        return Rule::default();
    };
    let re = |ctx: &mut Ctx, key: &str| f.get(key).and_then(|n| ctx.regex(&f.path(key), n));
    let rule = Rule {
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        message: re(ctx, "message"),
        api_version: re(ctx, "apiVersion"),
        kind: re(ctx, "kind"),
        namespace: re(ctx, "namespace"),
        reason: re(ctx, "reason"),
        type_: re(ctx, "type"),
        min_count: ctx
            .int(&f, "minCount", 0, i32::MAX as i64)
            .map(|c| c as i32),
        component: re(ctx, "component"),
        host: re(ctx, "host"),
        receiver: ctx.opt_string(&f, "receiver"),
    };
    // An empty regex in a label rule still requires the key to exist, so keep it as `.*`-like "".
    let label_re = |ctx: &mut Ctx, p: &str, v: &Node| match &v.kind {
        Kind::Str(s) if s.is_empty() => Regex::new("").ok(),
        Kind::Null => Regex::new("").ok(),
        _ => ctx.regex(p, v),
    };
    let labels = ctx.string_map(&f, "labels", label_re);
    let annotations = ctx.string_map(&f, "annotations", label_re);
    if let Some(r) = &rule.receiver {
        targets.push((
            f.path("receiver"),
            f.get("receiver").map_or(0, |n| n.line),
            r.clone(),
        ));
    }
    Rule {
        labels,
        annotations,
        ..rule
    }
}

fn receivers(ctx: &mut Ctx, top: &Fields) -> (Vec<ReceiverConfig>, Vec<String>) {
    let mut allowed: Vec<&str> = vec!["name"];
    allowed.extend(registry::all_names());
    allowed.extend(DELIVERY_KEYS);
    let mut out: Vec<ReceiverConfig> = Vec::new();
    let mut seen: Vec<(String, String)> = Vec::new();
    for (i, n) in ctx.seq(top, "receivers").iter().enumerate() {
        let path = format!("receivers[{i}]");
        let Some(f) = ctx.map(n, &path, &allowed) else {
            if n.kind == Kind::Null {
                ctx.error(&path, n.line, "empty receiver");
            }
            continue;
        };
        let name = ctx.opt_string(&f, "name");
        match &name {
            None if !f.has("name") => ctx.error(&f.path("name"), f.line, "is required"),
            None => ctx.error(
                &f.path("name"),
                f.get("name").map_or(f.line, |n| n.line),
                "must not be empty",
            ),
            Some(nm) => match seen.iter().find(|(s, _)| s == nm) {
                Some((_, other)) => ctx.error(
                    &f.path("name"),
                    f.get("name").map_or(0, |n| n.line),
                    format!("duplicate receiver name {nm:?} (also {other})"),
                ),
                None => seen.push((nm.clone(), path.clone())),
            },
        }
        let kinds: Vec<&str> = f
            .keys()
            .filter(|k| registry::all_names().any(|n| n == *k))
            .collect();
        let sink = match kinds.as_slice() {
            [] => {
                ctx.error(
                    &path,
                    f.line,
                    format!(
                        "no receiver kind: set one of {}",
                        KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
                    ),
                );
                None
            }
            [name] => match registry::find(name) {
                Some(k) => sink(ctx, &f, k),
                None => {
                    ctx.error(
                        &f.path(name),
                        f.get(name).map_or(0, |n| n.line),
                        format!("receiver kind {name} is not supported yet"),
                    );
                    None
                }
            },
            many => {
                ctx.error(
                    &path,
                    f.line,
                    format!(
                        "more than one receiver kind ({}): set exactly one",
                        many.join(", ")
                    ),
                );
                None
            }
        };
        let delivery = delivery(ctx, &f);
        if let (Some(name), Some(sink)) = (name, sink)
            && !out.iter().any(|r| r.name == name)
        {
            {
                out.push(ReceiverConfig {
                    name,
                    sink,
                    delivery,
                });
            }
        }
    }
    (out, seen.into_iter().map(|(n, _)| n).collect())
}

/// The kind's map (`stdout:` alone, or null, means its defaults), parsed by the kind itself.
fn sink(ctx: &mut Ctx, r: &Fields, kind: &KindInfo) -> Option<SinkConfig> {
    let path = r.path(kind.name);
    let empty = Node {
        line: r.line,
        kind: Kind::Map(Vec::new()),
    };
    let n = r.get(kind.name).unwrap_or(&empty);
    let n = if n.kind == Kind::Null { &empty } else { n };
    let before = ctx.errors.len();
    let f = ctx.map(n, &path, kind.keys)?;
    let sink = (kind.parse)(ctx, &f)?;
    (ctx.errors.len() == before).then_some(sink)
}

fn delivery(ctx: &mut Ctx, f: &Fields) -> DeliveryConfig {
    let kind = f.keys().find_map(registry::find);
    let default_max_events = kind.map_or(256, |k| k.default_max_events) as i64;
    let concurrency = match (ctx.int(f, "concurrency", 1, MAX_CONCURRENCY), kind) {
        (Some(n), Some(k)) if n > 1 => match k.concurrency {
            kind::Concurrency::Serial(why) => {
                ctx.error(
                    &f.path("concurrency"),
                    f.get("concurrency").map_or(f.line, |n| n.line),
                    format!("the {} receiver sends one request at a time: {why}", k.name),
                );
                1
            }
            kind::Concurrency::Lanes(_) => n as usize,
        },
        (Some(n), _) => n as usize,
        (None, k) => k.map_or(1, |k| k.concurrency.default_lanes()),
    };
    let retry = f
        .get("retry")
        .and_then(|n| ctx.map(n, &f.path("retry"), RETRY_KEYS));
    let batch = f
        .get("batch")
        .and_then(|n| ctx.map(n, &f.path("batch"), BATCH_KEYS));
    let retry = match retry {
        Some(r) => {
            let initial = ctx
                .duration(&r, "initialBackoff")
                .unwrap_or(Duration::from_millis(200));
            let max = ctx
                .duration(&r, "maxBackoff")
                .unwrap_or(Duration::from_secs(30));
            if initial > max {
                ctx.error(
                    &r.path("initialBackoff"),
                    r.get("initialBackoff").map_or(r.line, |n| n.line),
                    format!("must not exceed maxBackoff ({max:?})"),
                );
            }
            if initial.is_zero() && r.has("initialBackoff") {
                ctx.error(
                    &r.path("initialBackoff"),
                    r.get("initialBackoff").map_or(r.line, |n| n.line),
                    "must be greater than 0",
                );
            }
            RetryConfig {
                initial_backoff: initial,
                max_backoff: max,
                max_attempts: ctx
                    .int(&r, "maxAttempts", 1, u32::MAX as i64)
                    .map(|n| n as u32),
            }
        }
        None => RetryConfig {
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            max_attempts: None,
        },
    };
    let batch = match batch {
        Some(b) => BatchConfig {
            max_events: ctx
                .int(&b, "maxEvents", 1, MAX_BATCH_EVENTS)
                .unwrap_or(default_max_events) as usize,
            max_wait: ctx
                .duration(&b, "maxWait")
                .unwrap_or(Duration::from_millis(200)),
        },
        None => BatchConfig {
            max_events: default_max_events as usize,
            max_wait: Duration::from_millis(200),
        },
    };
    let timeout = ctx
        .duration(f, "timeout")
        .unwrap_or(Duration::from_secs(10));
    if timeout.is_zero() {
        ctx.error(
            &f.path("timeout"),
            f.get("timeout").map_or(f.line, |n| n.line),
            "must be greater than 0",
        );
    }
    DeliveryConfig {
        queue: ctx.int(f, "queue", 1, MAX_QUEUE).unwrap_or(1024) as usize,
        drop_when_full: ctx.bool(f, "dropWhenFull").unwrap_or(false),
        timeout,
        retry,
        batch,
        concurrency,
    }
}
