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
}
