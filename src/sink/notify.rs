//! What the notification receivers (`slack`, `teams`, `opsgenie`) share besides rendering
//! (`sink::render`) and the HTTP answer's meaning (`sink::http::answer`): their counters, and the
//! pacing of posts per destination.

use std::collections::HashMap;
use std::time::Duration;

use super::kind::BuildEnv;
use crate::telemetry::Metrics;

/// A required http(s) URL at `key`, without the `endpoint` naming of [`super::http::parse_url`]
/// in later problems: `Endpoint::build` names its URL problems `endpoint`, which callers rename.
pub fn rename_endpoint(
    key: &'static str,
) -> impl Fn((&'static str, String)) -> (&'static str, String) {
    move |(k, why)| {
        if k == "endpoint" {
            (key, why)
        } else {
            (k, why)
        }
    }
}

/// A notification receiver's own counters: messages posted (`sink_messages_total`) and answers
/// that asked to slow down (`sink_rate_limited_total`).
#[derive(Clone)]
pub struct Counts {
    pub messages: prometheus_client::metrics::counter::Counter,
    pub rate_limited: prometheus_client::metrics::counter::Counter,
}

impl Counts {
    pub fn new(env: &BuildEnv) -> Self {
        let label = Metrics::receiver(env.receiver);
        Self {
            messages: env.metrics.sink_messages.get_or_create(&label).clone(),
            rate_limited: env.metrics.sink_rate_limited.get_or_create(&label).clone(),
        }
    }
}

/// At most one post per `min` per destination (a Slack channel, a webhook URL): the next post
/// waits until `min` after the previous answer arrived (or longer, when the service said so with
/// `Retry-After`). Measuring from the answer keeps the gap seen by the server at least `min`.
pub struct Pacer {
    min: Duration,
    next: HashMap<String, tokio::time::Instant>,
}

impl Pacer {
    pub fn new(min: Duration) -> Self {
        Self {
            min,
            next: HashMap::new(),
        }
    }

    /// When a post to `key` may go out.
    pub fn ready_at(&self, key: &str) -> Option<tokio::time::Instant> {
        self.next
            .get(key)
            .copied()
            .filter(|t| *t > tokio::time::Instant::now())
    }

    /// Waits until a post to `key` may go out.
    pub async fn wait(&self, key: &str) {
        if let Some(at) = self.ready_at(key) {
            tokio::time::sleep_until(at).await;
        }
    }

    /// An answer for `key` just arrived (`hold`: the service asked to wait that long).
    pub fn answered(&mut self, key: &str, hold: Option<Duration>) {
        let now = tokio::time::Instant::now();
        let gap = hold.map_or(self.min, |h| h.max(self.min));
        if gap.is_zero() {
            return;
        }
        if self.next.len() >= 4096 {
            self.next.retain(|_, t| *t > now);
        }
        self.next.insert(key.to_owned(), now + gap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_pacer_spaces_posts_per_key_from_the_answer() {
        let mut p = Pacer::new(Duration::from_secs(1));
        assert!(p.ready_at("a").is_none(), "the first post goes at once");
        p.answered("a", None);
        assert!(p.ready_at("a").is_some());
        assert!(p.ready_at("b").is_none(), "another key is not held");
        let before = tokio::time::Instant::now();
        p.wait("a").await;
        assert_eq!(before.elapsed(), Duration::from_secs(1));
        p.answered("a", Some(Duration::from_secs(30)));
        let before = tokio::time::Instant::now();
        p.wait("a").await;
        assert_eq!(
            before.elapsed(),
            Duration::from_secs(30),
            "Retry-After wins"
        );
        let mut none = Pacer::new(Duration::ZERO);
        none.answered("a", None);
        assert!(none.ready_at("a").is_none(), "minInterval 0 never waits");
    }
}
