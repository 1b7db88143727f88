//! What an HTTP answer means for what it answered, decided in one place for every HTTP kind:
//! 2xx is delivered; 408, 429 and 5xx are worth retrying, after the answer's `Retry-After` when
//! it has one; anything else is permanent (a redirect too: a POST turned into a GET by a 302
//! would lose the event, so redirects are not followed and the Location is named instead).
//!
//! A kind with answers of its own checks those first (Loki's and Elasticsearch's 413 split the
//! batch, Teams' 413 shortens the card, Google's 401 drops the cached token and retries) and
//! leaves the rest to [`classify`]. Statuses that come without an answer of their own (the items
//! of an Elasticsearch `_bulk` answer) follow the same rule through [`verdict`].

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, RETRY_AFTER};

use crate::sink::render::{one_line, truncate};
use crate::sink::{SendError, parse_retry_after};
use crate::telemetry::error_chain;

/// What a status means, before any reason is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    Retry,
    Permanent,
}

/// The rule: 2xx delivered; 408, 429, 5xx retried; anything else permanent.
pub fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        408 | 429 | 500..=599 => Verdict::Retry,
        _ => Verdict::Permanent,
    }
}

/// The answer `status` (with `headers`) to a request described by `what` (`POST https://…`):
/// Ok when delivered, else the error, its reason `{what} answered {status}: {detail}` (`detail`
/// is the body, or what the service's error body says, cut to a one-line snippet).
pub fn classify(
    what: &str,
    status: StatusCode,
    headers: &HeaderMap,
    detail: &str,
) -> Result<(), SendError> {
    let v = verdict(status.as_u16());
    if v == Verdict::Delivered {
        return Ok(());
    }
    let mut reason = format!("{what} answered {status}");
    if !detail.trim().is_empty() {
        reason.push_str(": ");
        reason.push_str(&snippet(detail));
    }
    if v == Verdict::Retry {
        return Err(SendError::Transient {
            reason,
            retry_after: retry_after(headers),
        });
    }
    if status.is_redirection()
        && let Some(to) = headers.get(LOCATION).and_then(|v| v.to_str().ok())
    {
        reason.push_str(&format!(" (redirect to {to} not followed)"));
    }
    Err(SendError::Permanent { reason })
}

/// The `Retry-After` of an answer (seconds or an HTTP date).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// The 300-character head of a reply body, on one line, for reasons and logs.
pub fn snippet(body: &str) -> String {
    one_line(&truncate(body, 300))
}

/// A request that got no answer (connect, TLS, timeout, reset): worth retrying.
pub fn transport_error(what: &str, e: &reqwest::Error) -> SendError {
    SendError::Transient {
        reason: format!("{what}: {}", error_chain(e)),
        retry_after: None,
    }
}

/// An answer, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// Sends `req` and reads its answer; no answer is a transient error named by `what`.
    pub async fn send(what: &str, req: reqwest::RequestBuilder) -> Result<Answer, SendError> {
        let resp = req.send().await.map_err(|e| transport_error(what, &e))?;
        Ok(Answer::read(resp).await)
    }

    /// Reads `resp`. The status decides what an answer means: a body that breaks off is read
    /// as empty (a 2xx stays delivered; a reader of the body finds it is not what it expected).
    pub async fn read(resp: reqwest::Response) -> Answer {
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.unwrap_or_default();
        Answer {
            status,
            headers,
            body,
        }
    }

    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    pub fn retry_after(&self) -> Option<Duration> {
        retry_after(&self.headers)
    }

    /// [`classify`] with the body as the detail.
    pub fn classify(&self, what: &str) -> Result<(), SendError> {
        classify(what, self.status, &self.headers, &self.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&'static str, &str)], body: &str) -> Result<(), SendError> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, v.parse().unwrap());
        }
        classify(
            "POST http://x/hook",
            StatusCode::from_u16(status).unwrap(),
            &h,
            body,
        )
    }

    #[test]
    fn a_2xx_is_delivered() {
        for status in [200, 201, 202, 204] {
            assert_eq!(answer(status, &[], "anything"), Ok(()), "{status}");
        }
    }

    #[test]
    fn a_408_is_retried() {
        assert_eq!(
            answer(408, &[], ""),
            Err(SendError::Transient {
                reason: "POST http://x/hook answered 408 Request Timeout".into(),
                retry_after: None,
            })
        );
    }

    #[test]
    fn a_429_is_retried_after_its_retry_after_when_it_has_one() {
        assert_eq!(
            answer(429, &[("retry-after", "7")], "slow down"),
            Err(SendError::Transient {
                reason: "POST http://x/hook answered 429 Too Many Requests: slow down".into(),
                retry_after: Some(Duration::from_secs(7)),
            })
        );
        assert_eq!(
            answer(429, &[], "slow down"),
            Err(SendError::Transient {
                reason: "POST http://x/hook answered 429 Too Many Requests: slow down".into(),
                retry_after: None,
            })
        );
        // An unreadable Retry-After is no floor rather than an error.
        assert!(matches!(
            answer(429, &[("retry-after", "soon")], ""),
            Err(SendError::Transient {
                retry_after: None,
                ..
            })
        ));
    }

    #[test]
    fn a_5xx_is_retried_honouring_retry_after() {
        for status in [500, 502, 503, 504] {
            assert!(
                matches!(
                    answer(status, &[("retry-after", "2")], "down"),
                    Err(SendError::Transient { retry_after: Some(d), .. }) if d == Duration::from_secs(2)
                ),
                "{status}"
            );
        }
    }

    #[test]
    fn another_4xx_is_permanent_with_a_one_line_snippet_of_the_body() {
        let body = format!("bad\r\npayload {}", "x".repeat(400));
        let Err(SendError::Permanent { reason }) = answer(400, &[], &body) else {
            panic!("not permanent");
        };
        assert!(
            reason.starts_with("POST http://x/hook answered 400 Bad Request: bad payload xxx"),
            "{reason}"
        );
        assert!(!reason.contains('\n'), "{reason}");
        assert!(reason.ends_with('…'), "the snippet is cut: {reason}");
        let prefix = "POST http://x/hook answered 400 Bad Request: ".len();
        assert!(reason.chars().count() <= prefix + 300, "{reason}");
        for status in [401, 403, 404, 409, 413, 422] {
            assert!(
                matches!(answer(status, &[], ""), Err(SendError::Permanent { .. })),
                "{status}"
            );
        }
    }

    #[test]
    fn a_redirect_is_permanent_and_names_where_it_pointed() {
        assert_eq!(
            answer(302, &[("location", "http://elsewhere/")], ""),
            Err(SendError::Permanent {
                reason: "POST http://x/hook answered 302 Found (redirect to http://elsewhere/ not followed)"
                    .into()
            })
        );
    }

    #[test]
    fn the_rule_for_statuses_without_an_answer_of_their_own() {
        assert_eq!(verdict(201), Verdict::Delivered);
        assert_eq!(verdict(408), Verdict::Retry);
        assert_eq!(verdict(429), Verdict::Retry);
        assert_eq!(verdict(503), Verdict::Retry);
        assert_eq!(verdict(400), Verdict::Permanent);
        assert_eq!(verdict(0), Verdict::Permanent);
    }
}
