//! The AWS batch APIs (sqs, sns, kinesis, firehose, eventbridge) as `http::batch::BatchApi`s:
//! [`Aws`] adds what they share (the client, its session and credentials) to what each says in
//! an [`AwsBatch`] (its limits, entries, request and answer); and how their answers fail per
//! entry: an entry's error code decides whether it is resent (throttling, the service's own
//! fault) or failed for good, and an entry the answer does not mention is resent.

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;

use super::client::{AwsClient, AwsError, Session, transient_code};
use super::endpoint::Service;
use crate::sink::http::batch::{BatchApi, BatchSink};
use crate::sink::kind::{BuildEnv, Problem};
use crate::sink::partial::{Limits, Outcomes};
use crate::sink::{Doc, SendError};

/// What one AWS batch API says of itself; [`Aws`] makes it a `BatchApi`.
pub trait AwsBatch: Clone + Send + Sync + 'static {
    /// A document as the API takes it.
    type Entry: Send + Sync;
    /// A request's answer, as the protocol gives it (JSON, or the query protocol's XML).
    type Answer: Send;

    const LIMITS: Limits;

    /// Requests of one send in flight at once; 1 keeps them in order.
    fn concurrency(&self) -> usize {
        1
    }

    /// What a send needs before its first request besides credentials (SQS: its queue URL).
    fn prepare<'a>(&'a mut self, _session: &'a Session) -> BoxFuture<'a, Result<(), AwsError>> {
        async { Ok(()) }.boxed()
    }

    fn encode(&mut self, doc: &Doc) -> Result<(Self::Entry, usize), SendError>;

    fn request<'a>(
        &'a self,
        session: &'a Session,
        entries: &'a [Self::Entry],
    ) -> BoxFuture<'a, Result<Self::Answer, AwsError>>;

    /// Records the failed entries of an answer (`docs`: the request's documents, in order).
    fn read(&self, answer: Self::Answer, docs: &[usize], outcomes: &mut Outcomes);

    /// A request failed as a whole with `e` (SQS forgets a queue URL that is gone).
    fn failed(&mut self, _e: &AwsError) {}
}

/// An AWS batch API with its client: one service, region and credentials, shared by the lanes.
#[derive(Clone)]
pub struct Aws<K> {
    client: AwsClient,
    kind: K,
}

impl<K: AwsBatch> Aws<K> {
    /// The sink of `kind` at `service` in `region` (else the environment's), with the AWS
    /// environment `vars` (`std::env::var` in production).
    pub fn sink(
        service: &'static Service,
        region: Option<&str>,
        env: &BuildEnv,
        vars: &dyn Fn(&str) -> Option<String>,
        kind: K,
    ) -> Result<BatchSink<Aws<K>>, Vec<Problem>> {
        let client = AwsClient::build(service, region, env.delivery.timeout, vars)?;
        tracing::debug!(receiver = env.receiver, endpoint = %client.endpoint, credentials = %client.credentials_source(), "{} client", service.name);
        Ok(BatchSink::new(Aws { client, kind }))
    }
}

impl<K: AwsBatch> BatchApi for Aws<K> {
    type Target = Session;
    type Entry = K::Entry;
    type Answer = K::Answer;
    type Error = AwsError;

    fn limits(&self) -> Limits {
        K::LIMITS
    }

    fn concurrency(&self) -> usize {
        self.kind.concurrency()
    }

    fn target<'a>(&'a mut self, _: &'a [Doc]) -> BoxFuture<'a, Result<Session, SendError>> {
        async move {
            let session = self.client.session().await?;
            if let Err(e) = self.kind.prepare(&session).await {
                return Err(self.client.failed(&e));
            }
            Ok(session)
        }
        .boxed()
    }

    fn encode(&mut self, _: &Session, doc: &Doc) -> Result<(K::Entry, usize), SendError> {
        self.kind.encode(doc)
    }

    fn request<'a>(
        &'a self,
        session: &'a Session,
        entries: &'a [K::Entry],
    ) -> BoxFuture<'a, Result<K::Answer, AwsError>> {
        self.kind.request(session, entries)
    }

    fn read(&self, answer: K::Answer, _: &[Doc], docs: &[usize], outcomes: &mut Outcomes) {
        self.kind.read(answer, docs, outcomes);
    }

    fn failed(&mut self, e: AwsError) -> SendError {
        self.kind.failed(&e);
        self.client.failed(&e)
    }
}

/// One entry of an answer failed with `code`/`message`: transient when the code says so or when
/// the service says the fault is not the sender's.
pub fn fail_entry(
    outcomes: &mut Outcomes,
    doc: usize,
    what: &str,
    (code, message, sender_fault): (&str, &str, bool),
) {
    let reason = format!("{what}: {code}: {message}");
    outcomes.fail(
        doc,
        if transient_code(code) || !sender_fault {
            SendError::Transient {
                reason,
                retry_after: None,
            }
        } else {
            SendError::Permanent { reason }
        },
    );
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
                    fail_entry(outcomes, *doc, what, (code, message, true));
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

/// An answer naming its entries by `Id` (their position in the request) in a `Successful` and a
/// `Failed` list (SQS SendMessageBatch, SNS PublishBatch): each failed one with its code,
/// message and whether the fault is the sender's. An entry in neither list is resent.
pub fn read_by_id<S: AsRef<str>>(
    what: &str,
    successful: impl IntoIterator<Item = S>,
    failed: impl IntoIterator<Item = (S, S, S, bool)>,
    docs: &[usize],
    outcomes: &mut Outcomes,
) {
    let mut answered = vec![false; docs.len()];
    let id = |s: &S| s.as_ref().parse::<usize>().ok().filter(|i| *i < docs.len());
    for i in successful.into_iter().filter_map(|s| id(&s)) {
        answered[i] = true;
    }
    for (s, code, message, sender_fault) in failed {
        if let Some(i) = id(&s) {
            answered[i] = true;
            let error = (code.as_ref(), message.as_ref(), sender_fault);
            fail_entry(outcomes, docs[i], what, error);
        }
    }
    for (i, done) in answered.into_iter().enumerate() {
        if !done {
            outcomes.fail(
                docs[i],
                SendError::Transient {
                    reason: format!("{what}: entry {i} is in neither Successful nor Failed"),
                    retry_after: None,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_entries_are_resent_when_the_code_or_the_service_says_so() {
        let mut o = Outcomes::new(4);
        fail_entry(&mut o, 1, "SQS", ("ThrottlingException", "slow down", true));
        fail_entry(&mut o, 2, "SQS", ("InvalidParameterValue", "bad", true));
        // The service's own fault is retried whatever the code.
        fail_entry(&mut o, 3, "SNS", ("InternalError", "oops", false));
        let Err(SendError::Partial(list)) = o.settle() else {
            panic!("expected a per-document answer")
        };
        assert!(matches!(list[0], (1, SendError::Transient { .. })));
        assert!(matches!(list[1], (2, SendError::Permanent { .. })));
        assert!(matches!(list[2], (3, SendError::Transient { .. })));
    }

    #[test]
    fn entries_are_read_by_id_and_one_in_neither_list_is_resent() {
        let mut o = Outcomes::new(6);
        // The request held documents 2, 3 and 5 of the batch.
        read_by_id(
            "SQS SendMessageBatch",
            ["0", "9"],
            [("1", "InvalidParameterValue", "bad", true)],
            &[2, 3, 5],
            &mut o,
        );
        let Err(SendError::Partial(list)) = o.settle() else {
            panic!("expected a per-document answer")
        };
        assert_eq!(list.len(), 2);
        assert!(matches!(list[0], (3, SendError::Permanent { .. })));
        assert_eq!(
            list[1],
            (
                5,
                SendError::Transient {
                    reason: "SQS SendMessageBatch: entry 2 is in neither Successful nor Failed"
                        .into(),
                    retry_after: None
                }
            )
        );
    }
}
