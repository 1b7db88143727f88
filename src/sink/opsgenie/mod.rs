//! opsgenie: one alert per occurrence, `POST {URL}/v2/alerts` with `Authorization: GenieKey …`.
//!
//! The alert's `alias` is deterministic: the occurrence key `{uid}:{count}` unless `alias` is set
//! (resmoio's README uses `{{ .UID }}`: one alert per event, whose repeats raise its count).
//! Opsgenie deduplicates open alerts by alias, so an occurrence sent again after a crash is not a
//! second alert. The occurrence key is also the `occurrence_key` detail of every alert.
//! `priority` (P1…P5, a template if need be) is applied; resmoio's never was (its issue #71).
//!
//! Texts are cut to Opsgenie's limits before sending (message 130 characters, alias 512,
//! description 15000, tags 20 of 50, details 8000 in all, entity 512, source 100) instead of
//! being refused; an alias longer than 512 keeps its head and a hash of the whole, so it stays
//! unique and deterministic.
//!
//! Answers: 202 means accepted for processing (Opsgenie creates the alert asynchronously). 429,
//! 408, 5xx and transport errors are retried, with this alert and the rest of the batch (honouring
//! `Retry-After`); 400/422 (a rejected field) fail that alert for good, with Opsgenie's message;
//! 401, 402, 403 and 404 (the key, the plan, the integration's rights, the URL) fail the rest of
//! the batch too without trying it.

mod config;

use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderMap, HeaderValue};
use serde_json::{Map, Value, json};

pub use config::{
    DEFAULT_PRIORITY, DEFAULT_URL, KEYS, OCCURRENCE_KEY, OpsgenieConfig, Priority, Responder,
    base_url, priority,
};

use super::http::Endpoint;
use super::http::answer::{Answer, classify, snippet};
use super::kind::{BuildEnv, Problem};
use super::notify::{Counts, rename_endpoint};
use super::partial::settle;
use super::render::{DEFAULT_MESSAGE, Renderer, truncate};
use super::{Doc, SendError, Sink};
use crate::template::Template;

pub const MESSAGE_MAX: usize = 130;
pub const ALIAS_MAX: usize = 512;
pub const DESCRIPTION_MAX: usize = 15000;
pub const TAG_MAX: usize = 50;
pub const TAGS_MAX: usize = 20;
pub const DETAILS_MAX: usize = 8000;
pub const ENTITY_MAX: usize = 512;
pub const SOURCE_MAX: usize = 100;

#[derive(Clone)]
pub struct OpsgenieSink {
    cfg: OpsgenieConfig,
    client: reqwest::Client,
    /// `{URL}/v2/alerts`.
    url: reqwest::Url,
    display: String,
    headers: HeaderMap,
    renderer: Renderer,
    /// Rendered priorities that were not P1…P5, each logged once.
    bad_priorities: std::collections::HashSet<String>,
    receiver: String,
    counts: Counts,
}

impl OpsgenieSink {
    pub fn build(cfg: &OpsgenieConfig, env: &BuildEnv) -> Result<Self, Vec<Problem>> {
        let url = format!("{}/v2/alerts", cfg.url);
        let ep = Endpoint::build(&url, &cfg.tls, env.delivery.timeout).map_err(|ps| {
            ps.into_iter()
                .map(rename_endpoint("URL"))
                .collect::<Vec<_>>()
        })?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let mut auth = HeaderValue::from_str(&format!("GenieKey {}", cfg.api_key.expose()))
            .map_err(|_| vec![("apiKey", "not a valid header value".to_owned())])?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        if let Some(h) = ep.host {
            headers.insert(HOST, h);
        }
        Ok(Self {
            cfg: cfg.clone(),
            client: ep.client,
            url: ep.url,
            display: url,
            headers,
            renderer: Renderer::new(env.receiver),
            bad_priorities: Default::default(),
            receiver: env.receiver.to_owned(),
            counts: Counts::new(env),
        })
    }

    /// The alert for one occurrence, as Opsgenie's create-alert request.
    pub fn alert(&mut self, doc: &Doc) -> Value {
        let data = doc.occ.value();
        let key = &*doc.key;
        let cfg = &self.cfg;
        let r = &mut self.renderer;
        let mut m = Map::new();
        let message = r.render("message", &cfg.message, data, key, || {
            Template::parse(DEFAULT_MESSAGE)
                .ok()
                .and_then(|t| t.render(data).ok())
                .unwrap_or_default()
        });
        let message = if message.trim().is_empty() {
            // Opsgenie refuses an alert without a message.
            key.to_owned()
        } else {
            message
        };
        m.insert(
            "message".into(),
            truncate(message.trim(), MESSAGE_MAX).into(),
        );
        let alias = r
            .render_opt("alias", cfg.alias.as_ref(), data, key)
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| key.to_owned());
        m.insert("alias".into(), Value::String(bounded_alias(&alias)));
        if let Some(d) = r.render_opt("description", cfg.description.as_ref(), data, key) {
            m.insert("description".into(), truncate(&d, DESCRIPTION_MAX).into());
        }
        let mut responders = Vec::new();
        for (i, resp) in cfg.responders.iter().enumerate() {
            let v = r.render(
                &format!("responders[{i}]"),
                &resp.by.1,
                data,
                key,
                String::new,
            );
            if !v.trim().is_empty() {
                responders.push(json!({"type": resp.kind, resp.by.0: v.trim()}));
            }
        }
        if !responders.is_empty() {
            m.insert("responders".into(), Value::Array(responders));
        }
        let mut tags: Vec<String> = Vec::new();
        for (i, t) in cfg.tags.iter().enumerate() {
            let v = r.render(&format!("tags[{i}]"), t, data, key, String::new);
            let v = truncate(v.trim(), TAG_MAX).into_owned();
            if !v.is_empty() && !tags.contains(&v) && tags.len() < TAGS_MAX {
                tags.push(v);
            }
        }
        if !tags.is_empty() {
            m.insert("tags".into(), json!(tags));
        }
        let mut details: Vec<(String, String)> = cfg
            .details
            .iter()
            .map(|(k, t)| {
                let v = r.render(&format!("details.{k}"), t, data, key, String::new);
                (k.clone(), v)
            })
            .collect();
        fit_details(&mut details, key);
        let mut dm = Map::new();
        for (k, v) in details {
            dm.insert(k, Value::String(v));
        }
        dm.insert(OCCURRENCE_KEY.into(), Value::String(key.to_owned()));
        m.insert("details".into(), Value::Object(dm));
        if let Some(e) = r.render_opt("entity", cfg.entity.as_ref(), data, key) {
            m.insert("entity".into(), truncate(&e, ENTITY_MAX).into());
        }
        if let Some(s) = r.render_opt("source", cfg.source.as_ref(), data, key) {
            m.insert("source".into(), truncate(&s, SOURCE_MAX).into());
        }
        let p = match &cfg.priority {
            Priority::Fixed(p) => *p,
            Priority::Template(t) => {
                let v = r.render("priority", t, data, key, String::new);
                match priority(&v) {
                    Some(p) => p,
                    None => {
                        if self.bad_priorities.len() < 64 && self.bad_priorities.insert(v.clone()) {
                            tracing::warn!(receiver = %self.receiver, rendered = %v, occurrence = key, "priority did not render P1…P5; sent as P3 (logged once per value)");
                        }
                        DEFAULT_PRIORITY
                    }
                }
            }
        };
        m.insert("priority".into(), Value::String(p.to_owned()));
        Value::Object(m)
    }

    /// Creates one alert; `Err` says how it failed and whether the rest of the batch would fail
    /// the same way (transport, 429, 5xx, or a key, plan or URL problem).
    async fn create(&self, body: &Value) -> Result<(), (SendError, bool)> {
        let what = format!("opsgenie POST {}", self.display);
        let req = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .body(serde_json::to_vec(body).expect("an alert serializes"));
        let answer = Answer::send(&what, req).await.map_err(|e| (e, true))?;
        let status = answer.status;
        if status.as_u16() == 429 {
            self.counts.rate_limited.inc();
        }
        let text = answer.text();
        if let Err(e) = classify(&what, status, &answer.headers, &error_text(&text)) {
            let e = e.with_hint(hint(status));
            let all =
                matches!(e, SendError::Transient { .. }) || matches!(status.as_u16(), 401..=404);
            return Err((e, all));
        }
        self.counts.messages.inc();
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            tracing::debug!(request_id = ?v.get("requestId"), result = ?v.get("result"), "opsgenie accepted the alert");
        }
        Ok(())
    }
}

/// Opsgenie's error body (`{"message": "…", "errors": {"field": "why"}, "took", "requestId"}`)
/// as one line; the body as written when it is not that.
fn error_text(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return snippet(body);
    };
    let mut s = v
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if let Some(errors) = v.get("errors").and_then(Value::as_object) {
        for (field, why) in errors {
            s.push_str(&format!(
                "; {field}: {}",
                why.as_str().map_or_else(|| why.to_string(), str::to_owned)
            ));
        }
    }
    if let Some(id) = v.get("requestId").and_then(Value::as_str) {
        s.push_str(&format!(" (requestId {id})"));
    }
    if s.is_empty() { snippet(body) } else { s }
}

fn hint(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "apiKey is not valid, or its integration is disabled",
        402 => "the Opsgenie plan does not allow this",
        403 => {
            "the integration's key may not create alerts (use an API integration's key, not an account API key)"
        }
        404 => "check URL: api.opsgenie.com, or api.eu.opsgenie.com for EU accounts",
        _ => "",
    }
}

/// An alias Opsgenie accepts (at most 512 characters): a longer one keeps its head and a hash of
/// the whole (FNV-1a), so it stays deterministic and distinct.
pub fn bounded_alias(alias: &str) -> String {
    if alias.chars().count() <= ALIAS_MAX {
        return alias.to_owned();
    }
    let mut h: u64 = 0xcbf29ce484222325;
    for b in alias.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    let head: String = alias.chars().take(ALIAS_MAX - 17).collect();
    format!("{head}~{h:016x}")
}

/// Cuts detail values (never their names or the occurrence key) until names and values fit
/// Opsgenie's 8000 characters, the longest value first.
pub fn fit_details(details: &mut [(String, String)], key: &str) {
    let total = |d: &[(String, String)]| -> usize {
        d.iter()
            .map(|(k, v)| k.chars().count() + v.chars().count())
            .sum::<usize>()
            + OCCURRENCE_KEY.len()
            + key.len()
    };
    while total(details) > DETAILS_MAX {
        let Some((_, longest)) = details
            .iter_mut()
            .max_by_key(|(_, v)| v.chars().count())
            .filter(|(_, v)| v.chars().count() > 16)
        else {
            break;
        };
        let n = longest.chars().count();
        let keep = (n / 2).max(16).min(n - 1);
        *longest = truncate(longest, keep).into_owned();
    }
}

impl Sink for OpsgenieSink {
    fn lane(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(self.clone()))
    }

    fn send<'a>(&'a mut self, batch: &'a [Doc]) -> BoxFuture<'a, Result<(), SendError>> {
        async move {
            let mut failed: Vec<(usize, SendError)> = Vec::new();
            let mut stop: Option<SendError> = None;
            for (i, doc) in batch.iter().enumerate() {
                if let Some(e) = &stop {
                    failed.push((i, e.clone()));
                    continue;
                }
                let body = self.alert(doc);
                if let Err((e, all)) = self.create(&body).await {
                    if all {
                        stop = Some(e.clone());
                    }
                    failed.push((i, e));
                }
            }
            settle(batch.len(), failed)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests;
