//! A worker batch as the batch APIs take it: split in order into requests of at most N entries
//! and B bytes, sent (concurrently where order does not matter), and every entry's outcome read
//! from the answers, so that a 200 with failed entries resends only those, and only when the
//! failure may pass.

use std::ops::Range;

use futures::StreamExt;
use serde_json::Value;

use super::client::{AwsError, Session};
use crate::sink::SendError;
pub use crate::sink::partial::{self, Limits, chunks};

/// The outcome of every document of a batch, and whether an answer said the credentials
/// expired.
pub struct Outcomes {
    docs: partial::Outcomes,
    pub credentials_expired: bool,
}

impl Outcomes {
    pub fn new(len: usize) -> Self {
        Self {
            docs: partial::Outcomes::new(len),
            credentials_expired: false,
        }
    }

    pub fn fail(&mut self, doc: usize, e: SendError) {
        self.docs.fail(doc, e);
    }

    /// A whole request failed: each of its documents gets the error.
    pub fn fail_all(&mut self, docs: impl IntoIterator<Item = usize>, e: &AwsError) {
        self.credentials_expired |= e.credentials_expired();
        self.docs.fail_all(docs, &e.to_send_error());
    }

    /// One entry of an answer failed with `code`/`message`: transient when the code says so
    /// or when the service says the fault is not the sender's.
    pub fn fail_entry(
        &mut self,
        doc: usize,
        what: &str,
        code: &str,
        message: &str,
        sender_fault: bool,
    ) {
        let reason = format!("{what}: {code}: {message}");
        let transient = super::client::transient_code(code) || !sender_fault;
        self.fail(
            doc,
            if transient {
                SendError::Transient {
                    reason,
                    retry_after: None,
                }
            } else {
                SendError::Permanent { reason }
            },
        );
    }

    /// The worker's answer (`partial::Outcomes::settle`).
    pub fn settle(self) -> Result<(), SendError> {
        self.docs.settle()
    }
}

/// Runs `send` for every range, at most `concurrency` at a time (1: one after the other, in
/// order), and returns each range with its result, in order.
pub async fn run<'a, T, F, Fut>(
    ranges: Vec<Range<usize>>,
    concurrency: usize,
    send: F,
) -> Vec<(Range<usize>, Result<T, AwsError>)>
where
    F: Fn(Range<usize>) -> Fut,
    Fut: std::future::Future<Output = Result<T, AwsError>> + 'a,
{
    futures::stream::iter(ranges.into_iter().map(|r| {
        let fut = send(r.clone());
        async move { (r, fut.await) }
    }))
    .buffered(concurrency.max(1))
    .collect()
    .await
}

/// One entry of a batch request, ready to send: the document it carries (index in the worker
/// batch), the entry's JSON and its size as the API counts it.
pub struct Entry {
    pub doc: usize,
    pub json: Value,
    pub size: usize,
}

/// A JSON-protocol batch API.
pub struct JsonApi<'a> {
    /// `Kinesis_20131202.PutRecords`.
    pub target: &'a str,
    pub content_type: &'static str,
    pub limits: Limits,
    /// Requests in flight at once (1 where order matters).
    pub concurrency: usize,
}

/// Sends `entries` in requests within `api.limits` (`envelope` makes a request's body from its
/// entries), and reads each answer with `read` (the answer, the request's documents in order,
/// the outcomes). A request that failed as a whole fails each of its documents; its error is
/// returned too, for the caller's own handling (a queue that vanished).
pub async fn send_json(
    session: &Session,
    api: &JsonApi<'_>,
    entries: &[Entry],
    envelope: impl Fn(Vec<Value>) -> Value,
    read: impl Fn(&Value, &[usize], &mut Outcomes),
    outcomes: &mut Outcomes,
) -> Vec<AwsError> {
    let sizes: Vec<usize> = entries.iter().map(|e| e.size).collect();
    let ranges = chunks(&sizes, api.limits);
    let envelope = &envelope;
    let results = run(ranges, api.concurrency, |r| async move {
        let list: Vec<Value> = entries[r].iter().map(|e| e.json.clone()).collect();
        let body = serde_json::to_vec(&envelope(list)).expect("JSON serializes");
        session.json(api.target, api.content_type, body).await
    })
    .await;
    let mut errors = Vec::new();
    for (range, result) in results {
        let docs: Vec<usize> = entries[range].iter().map(|e| e.doc).collect();
        match result {
            Ok(v) => read(&v, &docs, outcomes),
            Err(e) => {
                outcomes.fail_all(docs, &e);
                errors.push(e);
            }
        }
    }
    errors
}

/// An answer listing one result per entry, in the request's order, a failed one with
/// `ErrorCode`/`ErrorMessage` (Kinesis `Records`, Firehose `RequestResponses`, EventBridge
/// `Entries`). A missing result is resent.
pub fn read_in_order(what: &str, list: &str, v: &Value, docs: &[usize], outcomes: &mut Outcomes) {
    let results = v.get(list).and_then(Value::as_array);
    for (i, doc) in docs.iter().enumerate() {
        match results.and_then(|r| r.get(i)) {
            Some(r) => {
                if let Some(code) = r.get("ErrorCode").and_then(Value::as_str) {
                    let message = r.get("ErrorMessage").and_then(Value::as_str).unwrap_or("");
                    outcomes.fail_entry(*doc, what, code, message, true);
                }
            }
            None => outcomes.fail(
                *doc,
                SendError::Transient {
                    reason: format!("{what}: no result for entry {i} in the answer's {list}"),
                    retry_after: None,
                },
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_settle_into_one_error_or_a_per_document_answer() {
        assert!(Outcomes::new(3).settle().is_ok());
        let mut o = Outcomes::new(3);
        o.fail_entry(1, "SQS", "ThrottlingException", "slow down", true);
        o.fail_entry(2, "SQS", "InvalidParameterValue", "bad", true);
        match o.settle() {
            Err(SendError::Partial(list)) => {
                assert_eq!(list.len(), 2);
                assert!(matches!(list[0], (1, SendError::Transient { .. })));
                assert!(matches!(list[1], (2, SendError::Permanent { .. })));
            }
            other => panic!("{other:?}"),
        }
        // The service's own fault is retried whatever the code.
        let mut o = Outcomes::new(1);
        o.fail_entry(0, "SNS", "InternalError", "oops", false);
        assert!(matches!(o.settle(), Err(SendError::Transient { .. })));
        let mut o = Outcomes::new(2);
        let e = AwsError {
            action: "x".into(),
            status: None,
            headers: Default::default(),
            code: String::new(),
            message: "connection refused".into(),
            sender_fault: false,
        };
        o.fail_all(0..2, &e);
        assert!(matches!(o.settle(), Err(SendError::Transient { .. })));
    }
}
