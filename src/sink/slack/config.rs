//! `receivers[].slack`: resmoio's keys (`token`, `channel`, `message`, `color`, `title`,
//! `author_name`, `footer`, `fields`, all templates) with their meaning, plus ours: `webhook` (an
//! incoming webhook instead of a token), `apiURL`, `minInterval`, `digestLines`, `tls`.

use std::time::Duration;

use super::SlackSink;
use crate::config::yaml::{Ctx, Fields};
use crate::sink::Sink;
use crate::sink::http::{check_header_value, check_url};
use crate::sink::kind::{BuildEnv, Concurrency, Problem, ReceiverKind};
use crate::sink::layout::Encoding;
use crate::sink::render::{
    DEFAULT_MESSAGE, keyed, named, opt_template, parse_template, template_map,
};
use crate::sink::secret::Secret;
use crate::sink::tls::{TLS_KEYS, TlsConfig};
use crate::template::Template;

/// Slack's Web API, where `chat.postMessage` lives.
pub const DEFAULT_API_URL: &str = "https://slack.com/api/";

/// Slack's rate for posting: about one message per second per channel.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Occurrences listed in a digest message when `digestLines` is not set.
pub const DEFAULT_DIGEST_LINES: usize = 20;

pub const KEYS: &[&str] = &[
    "token",
    "channel",
    "message",
    "color",
    "title",
    "author_name",
    "footer",
    "fields",
    "webhook",
    "apiURL",
    "minInterval",
    "digestLines",
    "tls",
];

/// How messages reach Slack.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// `chat.postMessage` with a bot token (`token`), to `channel`.
    Api { token: Secret, api_url: String },
    /// An incoming webhook (`webhook`): the channel is the webhook's.
    Webhook { url: String },
}

/// `receivers[].slack`.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackConfig {
    pub mode: Mode,
    /// Required with a token; with a webhook only legacy (custom integration) webhooks use it.
    pub channel: Option<Template>,
    /// `DEFAULT_MESSAGE` when unset.
    pub message: Template,
    pub color: Option<Template>,
    pub title: Option<Template>,
    pub author_name: Option<Template>,
    pub footer: Option<Template>,
    /// Attachment fields, sorted by title (as resmoio does).
    pub fields: Vec<(String, Template)>,
    /// The least time between two posts to one channel; 0 turns pacing off.
    pub min_interval: Duration,
    /// At most this many occurrences listed in a digest; the rest are counted.
    pub digest_lines: usize,
    pub tls: TlsConfig,
    /// Always the plain event: a message is built from templates, not from a layout.
    pub encoding: Encoding,
}

impl SlackConfig {
    /// The attachment is sent when any of its keys is set (resmoio sends it only with `fields`,
    /// silently dropping `color`, `title`, `author_name` and `footer` otherwise).
    pub fn has_attachment(&self) -> bool {
        !self.fields.is_empty()
            || self.color.is_some()
            || self.title.is_some()
            || self.author_name.is_some()
            || self.footer.is_some()
    }
}

impl ReceiverKind for SlackConfig {
    const NAME: &'static str = "slack";
    const CONCURRENCY: Concurrency = Concurrency::Serial(
        "Slack takes one message per second per channel, so its posts are paced instead",
    );
    const KEYS: &'static [&'static str] = KEYS;
    const NESTED: &'static [(&'static str, &'static [&'static str])] = &[("tls", TLS_KEYS)];
    /// Up to 100 occurrences per channel fold into one digest.
    const DEFAULT_MAX_EVENTS: usize = 100;

    fn parse(ctx: &mut Ctx, f: &Fields) -> Option<Self> {
        let line = |key: &str| f.get(key).map_or(f.line, |n| n.line);
        let token = ctx.opt_string(f, "token");
        let webhook = ctx.opt_string(f, "webhook");
        let api_url = ctx.opt_string(f, "apiURL");
        for (key, url) in [("webhook", &webhook), ("apiURL", &api_url)] {
            if let Some(u) = url
                && let Err(why) = check_url(u)
            {
                ctx.error(&f.path(key), line(key), why);
            }
        }
        if let Some(t) = &token
            && let Err(why) = check_header_value(t)
        {
            ctx.error(&f.path("token"), line("token"), why);
        }
        let before = ctx.errors.len();
        let channel = opt_template(ctx, f, "channel");
        let channel_failed = ctx.errors.len() > before;
        let mode = match (token, webhook) {
            (Some(_), Some(_)) => {
                ctx.error(
                    &f.path("webhook"),
                    line("webhook"),
                    "set token (chat.postMessage) or webhook (an incoming webhook URL), not both",
                );
                None
            }
            (None, None) => {
                ctx.error(
                &f.path("token"),
                f.line,
                "is required: a bot token (xoxb-…) for chat.postMessage, or set webhook to an incoming webhook URL instead",
            );
                None
            }
            (Some(token), None) => {
                if channel.is_none() && !channel_failed {
                    ctx.error(
                    &f.path("channel"),
                    f.line,
                    "is required with token: a channel ID (C0123456789) or name (#alerts), may be a template",
                );
                }
                Some(Mode::Api {
                    token: Secret(token),
                    api_url: api_url.unwrap_or_else(|| DEFAULT_API_URL.to_owned()),
                })
            }
            (None, Some(url)) => {
                if api_url.is_some() {
                    ctx.error(
                        &f.path("apiURL"),
                        line("apiURL"),
                        "is the Web API's address for token; a webhook is posted to as written",
                    );
                }
                Some(Mode::Webhook { url })
            }
        };
        let before = ctx.errors.len();
        let message = match opt_template(ctx, f, "message") {
            Some(t) => Some(t),
            None if ctx.errors.len() > before => None,
            None => parse_template(ctx, &f.path("message"), f.line, DEFAULT_MESSAGE),
        };
        let color = opt_template(ctx, f, "color");
        let title = opt_template(ctx, f, "title");
        let author_name = opt_template(ctx, f, "author_name");
        let footer = opt_template(ctx, f, "footer");
        let fields = template_map(ctx, f, "fields");
        let min_interval = ctx
            .duration(f, "minInterval")
            .unwrap_or(DEFAULT_MIN_INTERVAL);
        let digest_lines = ctx
            .int(f, "digestLines", 1, 100)
            .map_or(DEFAULT_DIGEST_LINES, |n| n as usize);
        let tls = TlsConfig::parse(ctx, f);
        Some(SlackConfig {
            mode: mode?,
            channel,
            message: message?,
            color,
            title,
            author_name,
            footer,
            fields,
            min_interval,
            digest_lines,
            tls,
            encoding: Encoding::default(),
        })
    }

    fn encoding(&self) -> &Encoding {
        &self.encoding
    }

    fn templates(&self) -> Vec<(String, &str)> {
        named([
            ("message", Some(&self.message)),
            ("channel", self.channel.as_ref()),
            ("color", self.color.as_ref()),
            ("title", self.title.as_ref()),
            ("author_name", self.author_name.as_ref()),
            ("footer", self.footer.as_ref()),
        ])
        .chain(keyed("fields", &self.fields))
        .collect()
    }

    /// Settings that work but deserve a word.
    fn warnings(&self) -> Vec<Problem> {
        let cfg = self;
        let mut out = Vec::new();
        if let Mode::Api { token, .. } = &cfg.mode
            && token.expose().starts_with("https://")
        {
            out.push((
            "token",
            "is a URL: an incoming webhook goes in webhook, not token (Slack will answer invalid_auth)"
                .to_owned(),
        ));
        }
        out
    }

    fn check(&self, env: &BuildEnv) -> Vec<Problem> {
        let mut problems = SlackSink::build(self, env).err().unwrap_or_default();
        if self.min_interval >= env.delivery.timeout {
            problems.push((
                "minInterval",
                format!(
                    "{:?} is not below the receiver's timeout ({:?}): the wait between two posts to a channel counts against it",
                    self.min_interval, env.delivery.timeout
                ),
            ));
        }
        problems
    }

    fn build(&self, env: &BuildEnv) -> Result<Box<dyn Sink>, Vec<Problem>> {
        Ok(Box::new(SlackSink::build(self, env)?))
    }
}
