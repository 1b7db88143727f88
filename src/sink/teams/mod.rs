//! teams: an Adaptive Card to a Microsoft Teams Workflows webhook (`endpoint`).
//!
//! Office 365 connectors (resmoio's `https://outlook.office.com/webhook/…`, later
//! `….webhook.office.com`) are being retired by Microsoft; their replacement is a Workflows
//! webhook ("Post to a channel when a webhook request is received"), which takes a message with
//! an Adaptive Card attachment. Connectors take the same message, so an old URL keeps working
//! while it lasts (`check-config` warns about it).
//!
//! A batch (`batch.maxEvents`, 10) is one card (see [`card`]): one section per occurrence, each
//! ending with its occurrence key, shortened to stay under Teams' 28 KB. resmoio's keys keep
//! their meaning: `layout` shapes the document a section is read from (`message`, `reason`,
//! `metadata`, as resmoio reads them), `headers` are sent with the request (values may be
//! templates here, rendered for the batch's first occurrence).
//!
//! Answers: 2xx is delivered (a Workflows webhook answers 202, a connector 200 with `1`), except
//! a connector's 200 that says `HTTP error 429` (retried) or `HTTP error 413` (too large: sent
//! again at once with half the budget, down to 5 KB, then failed). 413 is handled the same way.
//! 429, 408 and 5xx are retried (`Retry-After` honoured); other 4xx are permanent (400: the
//! workflow refused the card; 401/403/404: the URL, its `sig`, or a deleted or disabled
//! workflow). The URL's query (its signature) never appears in logs.

pub mod card;

use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::header::{CONTENT_TYPE, HOST, HeaderMap, HeaderValue};
use serde_json::Value;

use super::http::answer::{Answer, snippet};
use super::http::{Endpoint, HeaderTemplate, PostConfig, render_headers};
use super::kind::{BuildEnv, Concurrency, Problem, ReceiverKind};
use super::layout::Encoding;
use super::notify::{Counts, rename_endpoint};
use super::tls::TLS_KEYS;
use super::{Doc, SendError, Sink};
use crate::config::yaml::{Ctx, Fields};

/// The smallest budget a 413 can shrink a card to before it fails for good.
const MIN_BUDGET: usize = 5_000;

/// `receivers[].teams`: the keys of a webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct TeamsConfig(pub PostConfig);

impl std::ops::Deref for TeamsConfig {
    type Target = PostConfig;
    fn deref(&self) -> &PostConfig {
        &self.0
    }
}

/// Office 365 connector hosts, which Microsoft retires.
fn is_connector(url: &str) -> bool {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .is_some_and(|h| {
            h.ends_with(".webhook.office.com")
                || ((h == "outlook.office.com" || h == "outlook.office365.com")
                    && url.contains("/webhook"))
        })
}

impl ReceiverKind for TeamsConfig {
    const NAME: &'static str = "teams";
    const CONCURRENCY: Concurrency = Concurrency::Lanes(4);
    const KEYS: &'static [&'static str] = &["endpoint", "layout", "headers", "tls"];
    const NESTED: &'static [(&'static str, &'static [&'static str])] = &[("tls", TLS_KEYS)];
    /// Up to 10 occurrences share a card.
    const DEFAULT_MAX_EVENTS: usize = 10;

    fn parse(ctx: &mut Ctx, f: &Fields) -> Option<Self> {
        PostConfig::parse(ctx, f).map(TeamsConfig)
    }

    fn encoding(&self) -> &Encoding {
        &self.encoding
    }

    fn templates(&self) -> Vec<(String, &str)> {
        self.0.templates()
    }

    fn warnings(&self) -> Vec<Problem> {
        if is_connector(&self.endpoint) {
            vec![(
                "endpoint",
                "is an Office 365 connector, which Microsoft is retiring: in Teams, add the workflow \"Post to a channel when a webhook request is received\" and use its URL (the card is the same)".to_owned(),
            )]
        } else {
            Vec::new()
        }
    }

    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>> {
        Ok(Box::new(TeamsSink::build(self, env)?))
    }
}

#[derive(Clone)]
pub struct TeamsSink {
    client: reqwest::Client,
    url: reqwest::Url,
    /// `scheme://host/path` of the endpoint: its query holds the workflow's signature.
    display: String,
    host: Option<HeaderValue>,
    headers: Vec<HeaderTemplate>,
    budget: usize,
    counts: Counts,
}

impl TeamsSink {
    pub fn build(cfg: &TeamsConfig, env: &BuildEnv) -> Result<Self, Vec<Problem>> {
        let ep = Endpoint::build(&cfg.endpoint, &cfg.tls, env.delivery.timeout).map_err(|ps| {
            ps.into_iter()
                .map(rename_endpoint("endpoint"))
                .collect::<Vec<_>>()
        })?;
        let display = match reqwest::Url::parse(&cfg.endpoint) {
            Ok(u) => format!(
                "{}://{}{}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                u.path()
            ),
            Err(_) => "the endpoint".to_owned(),
        };
        Ok(Self {
            client: ep.client,
            url: ep.url,
            display,
            host: ep.host,
            headers: cfg.headers.clone(),
            budget: card::DEFAULT_BUDGET,
            counts: Counts::new(env),
        })
    }

    /// The card for a batch.
    pub fn card(batch: &[Doc], budget: usize) -> Value {
        let sections = batch
            .iter()
            .map(|d| {
                let doc: Value = serde_json::from_slice(&d.body)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&d.body).into()));
                card::section(&d.key, &doc)
            })
            .collect();
        card::fit(sections, budget)
    }

    /// Posts one card: Ok, too large (413), or how it failed.
    async fn post(&self, card: &Value, first: &Doc) -> Result<Post, SendError> {
        let what = format!("teams POST {}", self.display);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(h) = &self.host {
            headers.insert(HOST, h.clone());
        }
        render_headers(&self.headers, &first.occ, &mut headers);
        let req = self
            .client
            .post(self.url.clone())
            .headers(headers)
            .body(serde_json::to_vec(card).expect("a card serializes"));
        let answer = Answer::send(&what, req).await?;
        let status = answer.status.as_u16();
        let text = answer.text();
        if status == 413 || (answer.is_success() && text.contains("HTTP error 413")) {
            return Ok(Post::TooLarge);
        }
        if let Err(e) = answer.classify(&what) {
            if status == 429 {
                self.counts.rate_limited.inc();
            }
            let hint = match status {
                400 => "the workflow refused the card",
                401 | 403 | 404 => {
                    "check the endpoint: the workflow may be deleted or turned off, or the URL's sig is wrong"
                }
                _ => "",
            };
            return Err(e.with_hint(hint));
        }
        // A connector reports its own throttling in a 200.
        if text.contains("HTTP error 429") {
            self.counts.rate_limited.inc();
            return Err(SendError::Transient {
                reason: format!("{what}: rate limited: {}", snippet(&text)),
                retry_after: None,
            });
        }
        self.counts.messages.inc();
        Ok(Post::Delivered)
    }
}

enum Post {
    Delivered,
    TooLarge,
}

impl Sink for TeamsSink {
    fn lane(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(self.clone()))
    }

    fn send<'a>(&'a mut self, batch: &'a [Doc]) -> BoxFuture<'a, Result<(), SendError>> {
        async move {
            let Some(first) = batch.first() else {
                return Ok(());
            };
            let mut budget = self.budget;
            loop {
                let card = Self::card(batch, budget);
                match self.post(&card, first).await? {
                    Post::Delivered => return Ok(()),
                    Post::TooLarge if budget / 2 >= MIN_BUDGET => {
                        budget /= 2;
                        // Kept for later cards: this endpoint's limit is lower than ours.
                        self.budget = budget;
                        tracing::debug!(budget, "teams: card too large; shortening it further");
                    }
                    Post::TooLarge => {
                        return Err(SendError::Permanent {
                            reason: format!(
                                "teams POST {}: the card is too large (413) even shortened to {budget} bytes",
                                self.display
                            ),
                        });
                    }
                }
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests;
