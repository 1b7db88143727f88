//! slack: messages to Slack, with `chat.postMessage` and a bot token (`token` + `channel`) or
//! with an incoming webhook (`webhook`).
//!
//! Each occurrence is rendered with resmoio's templates: `channel`, `message` (the text), and an
//! attachment from `color`, `title`, `author_name`, `footer` and `fields`. A batch is grouped by
//! rendered channel; a channel's group is one message: the occurrence as resmoio sends it when
//! alone, else one digest ("N events", a line per occurrence). Slack takes about one message per
//! second per channel, so posts to a channel are spaced by `minInterval` (from the previous
//! answer); occurrences that arrive meanwhile wait in the queue and become the next digest,
//! instead of minutes of single posts queued behind Slack's rate limit. Every message carries its
//! occurrence keys in its metadata.
//!
//! Answers: `chat.postMessage` says HTTP 200 with `{"ok": false, "error": "…"}` when it refuses:
//! `ratelimited`, `internal_error`, `fatal_error`, `service_unavailable`, `request_timeout` (and
//! the migration errors) are retried; any other error (`channel_not_found`, `not_in_channel`,
//! `invalid_auth`, `is_archived`…) fails that channel's occurrences for good, with Slack's reason.
//! A webhook answers `ok`, or a 4xx with the reason as text (`invalid_payload`,
//! `channel_is_archived`, `no_service`…), permanent. 429 (both) is retried after `Retry-After`
//! and holds further posts to that channel (or webhook) as long; 408 and 5xx are retried.

mod config;
pub mod message;

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderMap, HeaderValue};
use serde_json::Value;

pub use config::{
    DEFAULT_API_URL, DEFAULT_DIGEST_LINES, DEFAULT_MIN_INTERVAL, KEYS, Mode, SlackConfig,
};
pub use message::{Attachment, Rendered};

use super::http::Endpoint;
use super::http::answer::{Answer, retry_after, snippet};
use super::kind::{BuildEnv, Problem};
use super::notify::{Counts, Pacer, rename_endpoint};
use super::partial::settle;
use super::render::Renderer;
use super::{Doc, SendError, Sink};

/// `chat.postMessage` errors worth retrying: Slack's own trouble, rate limiting, and a workspace
/// in the middle of an Enterprise Grid migration.
const TRANSIENT_ERRORS: &[&str] = &[
    "ratelimited",
    "rate_limited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
    "team_added_to_org",
    "org_login_required",
];

enum Target {
    Api { auth: HeaderValue },
    Webhook,
}

pub struct SlackSink {
    cfg: SlackConfig,
    client: reqwest::Client,
    /// `…/chat.postMessage`, or the webhook.
    url: reqwest::Url,
    /// What the logs call it: `chat.postMessage` or `the webhook`.
    what: &'static str,
    host: Option<HeaderValue>,
    target: Target,
    pacer: Pacer,
    renderer: Renderer,
    counts: Counts,
}

impl SlackSink {
    pub fn build(cfg: &SlackConfig, env: &BuildEnv) -> Result<Self, Vec<Problem>> {
        let (url, key, target, what) = match &cfg.mode {
            Mode::Api { token, api_url } => {
                let base = if api_url.ends_with('/') {
                    api_url.clone()
                } else {
                    format!("{api_url}/")
                };
                let auth = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                    .map_err(|_| vec![("token", "not a valid header value".to_owned())])?;
                (
                    format!("{base}chat.postMessage"),
                    "apiURL",
                    Target::Api { auth },
                    "chat.postMessage",
                )
            }
            Mode::Webhook { url } => (url.clone(), "webhook", Target::Webhook, "the webhook"),
        };
        let ep = Endpoint::build(&url, &cfg.tls, env.delivery.timeout)
            .map_err(|ps| ps.into_iter().map(rename_endpoint(key)).collect::<Vec<_>>())?;
        Ok(Self {
            cfg: cfg.clone(),
            client: ep.client,
            url: ep.url,
            what,
            host: ep.host,
            target,
            pacer: Pacer::new(cfg.min_interval),
            renderer: Renderer::new(env.receiver),
            counts: Counts::new(env),
        })
    }

    /// The occurrence's channel (None with a webhook and no `channel`), or why it has none.
    fn channel(&mut self, doc: &Doc) -> Result<Option<String>, SendError> {
        let Some(t) = &self.cfg.channel else {
            return Ok(None);
        };
        let c = self
            .renderer
            .render("channel", t, doc.occ.value(), &doc.key, String::new);
        let c = c.trim();
        if c.is_empty() || c.contains("<no value>") {
            if matches!(self.target, Target::Webhook) {
                // The webhook's own channel.
                return Ok(None);
            }
            return Err(SendError::Permanent {
                reason: format!(
                    "channel {:?} renders {c:?} for this event: no channel to post to",
                    t.source()
                ),
            });
        }
        Ok(Some(c.to_owned()))
    }

    /// The occurrence's message and attachment.
    pub fn render(&mut self, doc: &Doc) -> Rendered {
        let data = doc.occ.value();
        let cfg = &self.cfg;
        let r = &mut self.renderer;
        let text = r.render("message", &cfg.message, data, &doc.key, || {
            crate::template::Template::parse(super::render::DEFAULT_MESSAGE)
                .ok()
                .and_then(|t| t.render(data).ok())
                .unwrap_or_default()
        });
        let attachment = cfg.has_attachment().then(|| Attachment {
            color: r.render_opt("color", cfg.color.as_ref(), data, &doc.key),
            title: r.render_opt("title", cfg.title.as_ref(), data, &doc.key),
            author_name: r.render_opt("author_name", cfg.author_name.as_ref(), data, &doc.key),
            footer: r.render_opt("footer", cfg.footer.as_ref(), data, &doc.key),
            fields: cfg
                .fields
                .iter()
                .map(|(k, t)| {
                    let v = r.render(&format!("fields.{k}"), t, data, &doc.key, String::new);
                    (k.clone(), v)
                })
                .collect(),
        });
        Rendered {
            key: doc.key.to_string(),
            text,
            attachment,
        }
    }

    /// Posts one message; `Err` says how it failed and whether Slack asked to hold off.
    async fn post(&self, body: &Value, channel: Option<&str>) -> Result<(), (SendError, bool)> {
        let what = match channel {
            Some(c) => format!("slack {} to {c}", self.what),
            None => format!("slack {}", self.what),
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        if let Target::Api { auth } = &self.target {
            headers.insert(AUTHORIZATION, auth.clone());
        }
        if let Some(h) = &self.host {
            headers.insert(HOST, h.clone());
        }
        let req = self
            .client
            .post(self.url.clone())
            .headers(headers)
            .body(serde_json::to_vec(body).expect("a message serializes"));
        let answer = Answer::send(&what, req).await.map_err(|e| (e, false))?;
        let text = answer.text();
        let limited = answer.status.as_u16() == 429;
        let hint = match (&self.target, text.trim()) {
            _ if limited => "rate limited",
            (Target::Webhook, "no_service" | "no_team" | "no_service_id") => {
                "the webhook was removed or disabled: create a new one"
            }
            (Target::Webhook, "channel_is_archived") => "the webhook's channel is archived",
            (Target::Webhook, "action_prohibited" | "posting_to_general_channel_denied") => {
                "an admin restricted posting to the webhook's channel"
            }
            _ => "",
        };
        answer
            .classify(&what)
            .map_err(|e| (e.with_hint(hint), limited))?;
        match self.target {
            Target::Webhook => Ok(()),
            Target::Api { .. } => api_answer(&what, &text, &answer.headers),
        }
    }
}

/// A `chat.postMessage` answer that came with a 2xx.
fn api_answer(what: &str, body: &str, headers: &HeaderMap) -> Result<(), (SendError, bool)> {
    let v: Value = serde_json::from_str(body).map_err(|_| {
        (
            SendError::Permanent {
                reason: format!(
                    "{what}: the answer is not Slack's (no JSON): {}; is apiURL Slack's Web API?",
                    snippet(body)
                ),
            },
            false,
        )
    })?;
    if v.get("ok").and_then(Value::as_bool) == Some(true) {
        if let Some(w) = v.get("warning").and_then(Value::as_str) {
            tracing::debug!(
                warning = w,
                "{what}: Slack accepted the message with a warning"
            );
        }
        return Ok(());
    }
    let error = v
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("(no error given)");
    let mut reason = format!("{what}: Slack answered ok:false, error {error}");
    if let Some(hint) = hint(error) {
        reason.push_str(&format!(" ({hint})"));
    }
    if let Some(m) = v
        .pointer("/response_metadata/messages")
        .and_then(Value::as_array)
    {
        let msgs: Vec<&str> = m.iter().filter_map(Value::as_str).collect();
        if !msgs.is_empty() {
            reason.push_str(&format!(": {}", snippet(&msgs.join("; "))));
        }
    }
    if TRANSIENT_ERRORS.contains(&error) {
        let limited = matches!(error, "ratelimited" | "rate_limited");
        Err((
            SendError::Transient {
                reason,
                retry_after: retry_after(headers),
            },
            limited,
        ))
    } else {
        Err((SendError::Permanent { reason }, false))
    }
}

/// What to do about the usual `chat.postMessage` errors.
fn hint(error: &str) -> Option<&'static str> {
    Some(match error {
        "channel_not_found" => {
            "no such channel, or the app cannot see it: use a channel ID, and invite the app to private channels"
        }
        "not_in_channel" => {
            "invite the app to the channel (/invite @app), or give it the chat:write.public scope"
        }
        "is_archived" => "the channel is archived",
        "invalid_auth" | "not_authed" | "token_revoked" | "token_expired" | "account_inactive" => {
            "check token"
        }
        "missing_scope" => "the token needs the chat:write scope",
        "msg_too_long" => "the message is too long",
        "restricted_action" | "restricted_action_read_only_channel" => {
            "a workspace setting prevents the app from posting there"
        }
        _ => return None,
    })
}

impl Sink for SlackSink {
    fn send<'a>(&'a mut self, batch: &'a [Doc]) -> BoxFuture<'a, Result<(), SendError>> {
        async move {
            let mut failed: Vec<(usize, SendError)> = Vec::new();
            // Groups by channel, in order of first appearance.
            let mut groups: Vec<(Option<String>, Vec<usize>)> = Vec::new();
            for (i, doc) in batch.iter().enumerate() {
                match self.channel(doc) {
                    Ok(c) => match groups.iter_mut().find(|(g, _)| *g == c) {
                        Some((_, members)) => members.push(i),
                        None => groups.push((c, vec![i])),
                    },
                    Err(e) => failed.push((i, e)),
                }
            }
            // Posts to a key Slack told to hold off in this send are not tried again.
            let mut held: Vec<(String, Option<Duration>, String)> = Vec::new();
            for (channel, members) in groups {
                // A webhook is one destination, whatever the channel.
                let key = match self.target {
                    Target::Api { .. } => channel.clone().unwrap_or_default(),
                    Target::Webhook => String::new(),
                };
                if let Some((_, after, reason)) = held.iter().find(|(k, _, _)| *k == key) {
                    for i in members {
                        failed.push((
                            i,
                            SendError::Transient {
                                reason: reason.clone(),
                                retry_after: *after,
                            },
                        ));
                    }
                    continue;
                }
                let rendered: Vec<Rendered> =
                    members.iter().map(|&i| self.render(&batch[i])).collect();
                let body = match rendered.as_slice() {
                    [one] => message::single(channel.as_deref(), one),
                    many => message::digest(channel.as_deref(), many, self.cfg.digest_lines),
                };
                self.pacer.wait(&key).await;
                let result = self.post(&body, channel.as_deref()).await;
                match result {
                    Ok(()) => {
                        self.counts.messages.inc();
                        self.pacer.answered(&key, None);
                    }
                    Err((e, limited)) => {
                        let after = match &e {
                            SendError::Transient { retry_after, .. } => *retry_after,
                            _ => None,
                        };
                        if limited {
                            self.counts.rate_limited.inc();
                            // Slack's word, or a second of our own when it gave none.
                            self.pacer
                                .answered(&key, Some(after.unwrap_or(Duration::from_secs(1))));
                            let reason = match &e {
                                SendError::Transient { reason, .. } => reason.clone(),
                                _ => String::new(),
                            };
                            held.push((key.clone(), after, reason));
                        } else {
                            self.pacer.answered(&key, None);
                        }
                        for &i in &members {
                            failed.push((i, e.clone()));
                        }
                    }
                }
            }
            settle(batch.len(), failed)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests;
