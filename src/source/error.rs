//! What can go wrong in one list or watch request, with the context an operator needs to place it
//! (which request, which page, from which resourceVersion).
//!
//! The messages name the operation; the cause is the error's `source()`, which
//! `telemetry::error_chain` appends (a transport error's useful words are several causes deep).
//! `Request` quotes its cause itself: it is the one error `Source::run` returns, and its caller
//! logs it with `%` (the chain skips the repeat).
//! 410 Gone, a stale watch, cancellation and a closed receiver are not errors here: they are
//! ordinary outcomes of a step (`phase::Outcome`), decided on by `phase::step`.

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The request cannot even be built (a namespace that is not a valid path segment, say):
    /// retrying cannot help, so the source stops with this error.
    #[error("building the {op} request: {source}")]
    Request {
        op: &'static str,
        source: kube::core::request::Error,
    },
    /// A list page was refused or never arrived.
    #[error("listing events (page {page})")]
    List { page: u32, source: kube::Error },
    /// A list page arrived but is not an event list.
    #[error("decoding page {page} of the event list")]
    ListPage {
        page: u32,
        source: serde_json::Error,
    },
    /// Without the list's resourceVersion there is nowhere to watch from.
    #[error("the event list has no metadata.resourceVersion")]
    NoListVersion,
    /// The watch request was refused or never answered.
    #[error("watching events from resourceVersion {from}")]
    Watch { from: String, source: kube::Error },
    /// The watch was answered, then its stream broke.
    #[error("reading the watch from resourceVersion {from}")]
    WatchBroke {
        from: String,
        source: std::io::Error,
    },
    /// The watch answered an ERROR frame other than 410 Gone.
    #[error("the watch from resourceVersion {from} answered an error: {code} {reason}: {message}")]
    ErrorFrame {
        from: String,
        code: u16,
        reason: String,
        message: String,
    },
}

impl SourceError {
    /// Whether trying again (after a backoff) can succeed.
    pub fn retryable(&self) -> bool {
        !matches!(self, Self::Request { .. })
    }

    /// The failure came after the API server answered: a working connection, so the backoff
    /// starts over instead of escalating.
    pub fn after_connect(&self) -> bool {
        matches!(self, Self::WatchBroke { .. })
    }

    /// The `cause` label of `source_failures_total` (one of `SOURCE_FAILURE_CAUSES`).
    pub fn cause(&self) -> &'static str {
        match self {
            Self::List { source, .. } | Self::Watch { source, .. } => match source {
                kube::Error::Api(status) => status_cause(status.code),
                kube::Error::Auth(_) => "unauthorized",
                kube::Error::SerdeError(_) => "malformed",
                _ => "transport",
            },
            Self::ListPage { .. } | Self::NoListVersion => "malformed",
            Self::WatchBroke { .. } => "broken",
            Self::ErrorFrame { code, .. } => status_cause(*code),
            Self::Request { .. } => "request",
        }
    }
}

fn status_cause(code: u16) -> &'static str {
    match code {
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        429 => "throttled",
        500..=599 => "server_error",
        _ => "rejected",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_request_and_the_chain_adds_the_cause() {
        let e = SourceError::WatchBroke {
            from: "42".into(),
            source: std::io::Error::other("connection reset"),
        };
        assert_eq!(
            crate::telemetry::error_chain(&e),
            "reading the watch from resourceVersion 42: connection reset"
        );
        assert!(e.retryable() && e.after_connect());
        assert!(!SourceError::NoListVersion.after_connect());
    }

    #[test]
    fn causes_are_the_fixed_labels_of_the_failure_counter() {
        let api = |code: u16| SourceError::List {
            page: 1,
            source: kube::Error::Api(
                kube::core::Status::failure("no", "Forbidden")
                    .with_code(code)
                    .boxed(),
            ),
        };
        let causes: Vec<&str> = [401, 403, 404, 429, 503, 400]
            .map(|c| api(c).cause())
            .to_vec();
        assert_eq!(
            causes,
            [
                "unauthorized",
                "forbidden",
                "not_found",
                "throttled",
                "server_error",
                "rejected"
            ]
        );
        let broke = SourceError::WatchBroke {
            from: "1".into(),
            source: std::io::Error::other("reset"),
        };
        for e in [api(403), broke, SourceError::NoListVersion] {
            assert!(
                crate::telemetry::metrics::SOURCE_FAILURE_CAUSES.contains(&e.cause()),
                "{}",
                e.cause()
            );
        }
    }
}
