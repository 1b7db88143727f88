//! `receivers[].opsgenie`: resmoio's keys (`apiKey`, `URL`, `priority`, `message`, `alias`,
//! `description`, `tags`, `details`; every string a template) with their meaning, plus ours:
//! `responders`, `entity`, `source`, `tls`.

use super::OpsgenieSink;
use crate::config::yaml::{Ctx, Fields, Kind};
use crate::sink::Sink;
use crate::sink::http::{check_header_value, check_url};
use crate::sink::kind::{BuildEnv, Concurrency, Problem, ReceiverKind};
use crate::sink::layout::Encoding;
use crate::sink::render::{
    DEFAULT_MESSAGE, keyed, listed, named, opt_template, parse_template, template_list,
    template_map,
};
use crate::sink::secret::Secret;
use crate::sink::tls::{TLS_KEYS, TlsConfig};
use crate::template::Template;

/// Opsgenie's API (US); EU accounts use `api.eu.opsgenie.com`.
pub const DEFAULT_URL: &str = "https://api.opsgenie.com";

/// The detail that carries the occurrence key on every alert.
pub const OCCURRENCE_KEY: &str = "occurrence_key";

pub const KEYS: &[&str] = &[
    "apiKey",
    "URL",
    "priority",
    "message",
    "alias",
    "description",
    "tags",
    "details",
    "responders",
    "entity",
    "source",
    "tls",
];

const RESPONDER_KEYS: &[&str] = &["type", "id", "name", "username"];

/// `P1` (critical) … `P5` (informational).
pub const PRIORITIES: &[&str] = &["P1", "P2", "P3", "P4", "P5"];

/// resmoio's default priority, and what an invalid rendered one becomes.
pub const DEFAULT_PRIORITY: &str = "P3";

#[derive(Debug, Clone, PartialEq)]
pub enum Priority {
    Fixed(&'static str),
    /// Rendered per occurrence; a value that is not P1…P5 is sent as P3, with a warning.
    Template(Template),
}

/// `P1`…`P5` for `s` (trimmed, any case), if it is one.
pub fn priority(s: &str) -> Option<&'static str> {
    let s = s.trim();
    PRIORITIES
        .iter()
        .copied()
        .find(|p| p.eq_ignore_ascii_case(s))
}

/// Who the alert is routed to: a team, user, escalation or schedule, by id or name (a user by
/// id or username). Values are templates.
#[derive(Debug, Clone, PartialEq)]
pub struct Responder {
    pub kind: String,
    /// `id`, `name` or `username`, and its template.
    pub by: (&'static str, Template),
}

/// `receivers[].opsgenie`.
#[derive(Debug, Clone, PartialEq)]
pub struct OpsgenieConfig {
    pub api_key: Secret,
    /// The API's base URL (`https://api.opsgenie.com`); alerts go to `{url}/v2/alerts`.
    pub url: String,
    pub priority: Priority,
    pub message: Template,
    /// The deduplication key; the occurrence key when unset.
    pub alias: Option<Template>,
    pub description: Option<Template>,
    pub tags: Vec<Template>,
    /// Sorted by name; `occurrence_key` is added to every alert.
    pub details: Vec<(String, Template)>,
    pub responders: Vec<Responder>,
    pub entity: Option<Template>,
    pub source: Option<Template>,
    pub tls: TlsConfig,
    pub encoding: Encoding,
}

/// resmoio's `URL` is a host (`api.eu.opsgenie.com`, what its SDK takes); a full URL is taken as
/// written (a proxy, a test server).
pub fn base_url(value: &str) -> String {
    let v = value.trim().trim_end_matches('/');
    if v.contains("://") {
        v.to_owned()
    } else {
        format!("https://{v}")
    }
}

fn parse_responders(ctx: &mut Ctx, f: &Fields) -> Vec<Responder> {
    let items = ctx.seq(f, "responders");
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}[{i}]", f.path("responders"));
        let Some(r) = ctx.map(item, &path, RESPONDER_KEYS) else {
            if item.kind == Kind::Null {
                ctx.error(
                    &path,
                    item.line,
                    "expected a map such as {type: team, name: ops}",
                );
            }
            continue;
        };
        let kind = ctx.opt_string(&r, "type");
        let kind = match kind.as_deref() {
            Some(k @ ("team" | "user" | "escalation" | "schedule")) => k.to_owned(),
            other => {
                ctx.error(
                    &r.path("type"),
                    r.get("type").map_or(item.line, |n| n.line),
                    match other {
                        None => "is required: team, user, escalation or schedule".to_owned(),
                        Some(o) => {
                            format!("expected team, user, escalation or schedule, found {o:?}")
                        }
                    },
                );
                continue;
            }
        };
        let allowed: &[&'static str] = if kind == "user" {
            &["id", "username"]
        } else {
            &["id", "name"]
        };
        let set: Vec<&'static str> = RESPONDER_KEYS[1..]
            .iter()
            .copied()
            .filter(|k| r.has(k))
            .collect();
        match set.as_slice() {
            [one] if allowed.contains(one) => {
                if let Some(t) = opt_template(ctx, &r, one) {
                    out.push(Responder { kind, by: (one, t) });
                }
            }
            _ => ctx.error(
                &path,
                item.line,
                format!(
                    "a {kind} is named by exactly one of {}",
                    allowed.join(" or ")
                ),
            ),
        }
    }
    if out.len() > 50 {
        ctx.error(
            &f.path("responders"),
            f.get("responders").map_or(f.line, |n| n.line),
            format!("Opsgenie takes at most 50 responders, found {}", out.len()),
        );
    }
    out
}

impl ReceiverKind for OpsgenieConfig {
    const NAME: &'static str = "opsgenie";
    const CONCURRENCY: Concurrency = Concurrency::Lanes(4);
    const KEYS: &'static [&'static str] = KEYS;
    const NESTED: &'static [(&'static str, &'static [&'static str])] = &[("tls", TLS_KEYS)];
    /// Alerts are created one request each, in order: a batch is what one attempt's timeout
    /// covers.
    const DEFAULT_MAX_EVENTS: usize = 10;

    fn parse(ctx: &mut Ctx, f: &Fields) -> Option<Self> {
        let line = |key: &str| f.get(key).map_or(f.line, |n| n.line);
        let api_key = ctx.opt_string(f, "apiKey");
        match &api_key {
        None => ctx.error(
            &f.path("apiKey"),
            f.line,
            "is required: the key of an API integration (Opsgenie: Teams → Integrations → API), e.g. ${OPSGENIE_API_KEY}",
        ),
        Some(k) => {
            if let Err(why) = check_header_value(k) {
                ctx.error(&f.path("apiKey"), line("apiKey"), why);
            }
        }
    }
        let url = base_url(
            &ctx.opt_string(f, "URL")
                .unwrap_or_else(|| DEFAULT_URL.to_owned()),
        );
        if let Err(why) = check_url(&url) {
            ctx.error(&f.path("URL"), line("URL"), why);
        }
        let priority = match ctx.opt_string(f, "priority") {
            None => Some(Priority::Fixed(DEFAULT_PRIORITY)),
            Some(p) if p.contains("{{") => {
                parse_template(ctx, &f.path("priority"), line("priority"), &p)
                    .map(Priority::Template)
            }
            Some(p) => match priority(&p) {
                Some(fixed) => Some(Priority::Fixed(fixed)),
                None => {
                    ctx.error(
                    &f.path("priority"),
                    line("priority"),
                    format!("expected P1, P2, P3, P4 or P5 (or a template rendering one), found {p:?}"),
                );
                    None
                }
            },
        };
        let before = ctx.errors.len();
        let message = match opt_template(ctx, f, "message") {
            Some(t) => Some(t),
            None if ctx.errors.len() > before => None,
            None => parse_template(ctx, &f.path("message"), f.line, DEFAULT_MESSAGE),
        };
        let alias = opt_template(ctx, f, "alias");
        let description = opt_template(ctx, f, "description");
        let tags = template_list(ctx, f, "tags");
        let details = template_map(ctx, f, "details");
        if details.iter().any(|(k, _)| k == OCCURRENCE_KEY) {
            ctx.error(
            &format!("{}.{OCCURRENCE_KEY}", f.path("details")),
            line("details"),
            format!("{OCCURRENCE_KEY} is set by the exporter on every alert ({{uid}}:{{count}}) and cannot be replaced"),
        );
        }
        let responders = parse_responders(ctx, f);
        let entity = opt_template(ctx, f, "entity");
        let source = opt_template(ctx, f, "source");
        let tls = TlsConfig::parse(ctx, f);
        Some(OpsgenieConfig {
            api_key: Secret(api_key?),
            url,
            priority: priority?,
            message: message?,
            alias,
            description,
            tags,
            details,
            responders,
            entity,
            source,
            tls,
            encoding: Encoding::default(),
        })
    }

    fn encoding(&self) -> &Encoding {
        &self.encoding
    }

    fn templates(&self) -> Vec<(String, &str)> {
        let priority = match &self.priority {
            Priority::Template(t) => Some(t),
            Priority::Fixed(_) => None,
        };
        let responders = self.responders.iter().enumerate();
        named([
            ("message", Some(&self.message)),
            ("priority", priority),
            ("alias", self.alias.as_ref()),
            ("description", self.description.as_ref()),
            ("entity", self.entity.as_ref()),
            ("source", self.source.as_ref()),
        ])
        .chain(listed("tags", &self.tags))
        .chain(keyed("details", &self.details))
        .chain(responders.map(|(i, r)| (format!("responders[{i}].{}", r.by.0), r.by.1.source())))
        .collect()
    }

    /// Settings that work but deserve a word.
    fn warnings(&self) -> Vec<Problem> {
        let cfg = self;
        let mut out = Vec::new();
        if let Some(a) = &cfg.alias
            && !a.source().contains("{{")
        {
            out.push((
            "alias",
            format!(
                "{:?} is the same for every event: Opsgenie deduplicates open alerts by alias, so all of them become one alert (its count grows); leave alias unset for one alert per occurrence, or use {{{{ .UID }}}} for one per event",
                a.source()
            ),
        ));
        }
        if cfg.tags.len() > 20 {
            out.push((
                "tags",
                format!(
                    "{} tags: Opsgenie keeps 20; the rest are not sent",
                    cfg.tags.len()
                ),
            ));
        }
        out
    }

    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>> {
        Ok(Box::new(OpsgenieSink::build(self, env)?))
    }
}
