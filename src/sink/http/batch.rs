//! The sender of every batch API (SQS SendMessageBatch, SNS PublishBatch, Kinesis PutRecords,
//! Firehose PutRecordBatch, EventBridge PutEvents, Pub/Sub publish, BigQuery insertAll, Cloud
//! Logging entries.write): a worker batch encoded entry by entry, cut into requests within the
//! API's limits (`partial::chunks`), the requests sent (concurrently where order does not
//! matter), and every entry's outcome read from the answers, so that a 200 with failed entries
//! resends only those, and only when the failure may pass.
//!
//! A kind says what differs in a [`BatchApi`]: its limits, how a document becomes an entry, the
//! request of a run of entries, and how its answer is read; [`BatchSink`] is then its `Sink`.

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};

use crate::sink::partial::{Limits, Outcomes, chunks};
use crate::sink::{Doc, SendError, Sink};

/// One batch API of one destination. Clones (a receiver's lanes) share its client.
pub trait BatchApi: Clone + Send + Sync + 'static {
    /// What one send prepares once for all its requests (credentials, a resolved URL or path).
    type Target: Send + Sync;
    /// A document as the API takes it.
    type Entry: Send + Sync;
    /// A request's answer, before it is read.
    type Answer: Send;
    /// How a request fails as a whole.
    type Error: Send;

    /// Entries and bytes per request.
    fn limits(&self) -> Limits;

    /// Requests of one send in flight at once; 1 sends them one after the other, in order.
    fn concurrency(&self) -> usize {
        1
    }

    fn target<'a>(&'a mut self, batch: &'a [Doc])
    -> BoxFuture<'a, Result<Self::Target, SendError>>;

    /// The entry of one document and its size as the API counts it, or why it cannot be sent.
    fn encode(
        &mut self,
        target: &Self::Target,
        doc: &Doc,
    ) -> Result<(Self::Entry, usize), SendError>;

    /// The request of a run of entries (within the limits).
    fn request<'a>(
        &'a self,
        target: &'a Self::Target,
        entries: &'a [Self::Entry],
    ) -> BoxFuture<'a, Result<Self::Answer, Self::Error>>;

    /// Records in `outcomes` what the answer says failed: `docs` are the request's documents,
    /// in the order of its entries, by index in `batch`.
    fn read(&self, answer: Self::Answer, batch: &[Doc], docs: &[usize], outcomes: &mut Outcomes);

    /// A request that failed as a whole: the error each of its documents gets (and whatever the
    /// API learns from it, e.g. that its credentials expired).
    fn failed(&mut self, error: Self::Error) -> SendError;
}

/// Sends `batch` through `api`; the worker's answer (`partial::Outcomes::settle`).
pub async fn send<A: BatchApi>(api: &mut A, batch: &[Doc]) -> Result<(), SendError> {
    if batch.is_empty() {
        return Ok(());
    }
    let target = api.target(batch).await?;
    let mut outcomes = Outcomes::new(batch.len());
    let (mut entries, mut docs, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
    for (i, doc) in batch.iter().enumerate() {
        match api.encode(&target, doc) {
            Ok((entry, size)) => {
                entries.push(entry);
                docs.push(i);
                sizes.push(size);
            }
            Err(e) => outcomes.fail(i, e),
        }
    }
    let results: Vec<_> = {
        let (api, target, entries) = (&*api, &target, &entries);
        futures::stream::iter(chunks(&sizes, api.limits()))
            .map(|r| async move { (r.clone(), api.request(target, &entries[r]).await) })
            .buffered(api.concurrency().max(1))
            .collect()
            .await
    };
    for (range, result) in results {
        match result {
            Ok(answer) => api.read(answer, batch, &docs[range], &mut outcomes),
            Err(e) => {
                let e = api.failed(e);
                outcomes.fail_all(docs[range].iter().copied(), &e);
            }
        }
    }
    outcomes.settle()
}

/// The `Sink` of a batch API.
#[derive(Clone)]
pub struct BatchSink<A> {
    pub api: A,
}

impl<A: BatchApi> BatchSink<A> {
    pub fn new(api: A) -> Self {
        Self { api }
    }
}

impl<A: BatchApi> Sink for BatchSink<A> {
    fn lane(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(self.clone()))
    }

    fn send<'a>(&'a mut self, batch: &'a [Doc]) -> BoxFuture<'a, Result<(), SendError>> {
        send(&mut self.api, batch).boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::event::{Event, Occurrence};

    /// Entries are the documents' keys; a request fails as a whole when it holds "down", and
    /// its answer fails the entries that hold "bad".
    #[derive(Clone, Default)]
    struct Fake {
        requests: Arc<Mutex<Vec<Vec<String>>>>,
    }

    impl BatchApi for Fake {
        type Target = ();
        type Entry = String;
        type Answer = Vec<String>;
        type Error = String;

        fn limits(&self) -> Limits {
            Limits {
                entries: 2,
                bytes: 100,
            }
        }

        fn target<'a>(&'a mut self, _: &'a [Doc]) -> BoxFuture<'a, Result<(), SendError>> {
            async { Ok(()) }.boxed()
        }

        fn encode(&mut self, _: &(), doc: &Doc) -> Result<(String, usize), SendError> {
            if doc.key.contains("huge") {
                return Err(SendError::Permanent {
                    reason: "too large".into(),
                });
            }
            Ok((doc.key.to_string(), doc.key.len()))
        }

        fn request<'a>(
            &'a self,
            _: &'a (),
            entries: &'a [String],
        ) -> BoxFuture<'a, Result<Vec<String>, String>> {
            self.requests.lock().unwrap().push(entries.to_vec());
            let answer = if entries.iter().any(|e| e.contains("down")) {
                Err("down".to_owned())
            } else {
                Ok(entries.to_vec())
            };
            async move { answer }.boxed()
        }

        fn read(&self, answer: Vec<String>, _: &[Doc], docs: &[usize], o: &mut Outcomes) {
            for (entry, &doc) in answer.iter().zip(docs) {
                if entry.contains("bad") {
                    o.fail(
                        doc,
                        SendError::Permanent {
                            reason: format!("{entry} refused"),
                        },
                    );
                }
            }
        }

        fn failed(&mut self, error: String) -> SendError {
            SendError::Transient {
                reason: error,
                retry_after: None,
            }
        }
    }

    fn docs(keys: &[&str]) -> Vec<Doc> {
        keys.iter()
            .map(|k| {
                let e: Event = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": k, "uid": k}, "count": 1
                }))
                .unwrap();
                let occ = Arc::new(Occurrence::new(e));
                Doc {
                    key: (*k).into(),
                    body: occ.json().clone(),
                    occ,
                }
            })
            .collect()
    }

    #[tokio::test]
    async fn a_batch_is_cut_in_order_and_each_document_settled_by_its_own_answer() {
        let mut api = Fake::default();
        let batch = docs(&["a", "huge", "b", "bad", "c", "down", "d"]);
        let Err(SendError::Partial(failed)) = send(&mut api, &batch).await else {
            panic!("expected a per-document answer")
        };
        let got: Vec<(usize, &str)> = failed.iter().map(|(i, e)| (*i, e.reason())).collect();
        assert_eq!(
            got,
            [
                (1, "too large"),
                (3, "bad refused"),
                (5, "down"),
                (6, "down")
            ]
        );
        let requests = api.requests.lock().unwrap().clone();
        assert_eq!(
            requests,
            [vec!["a", "b"], vec!["bad", "c"], vec!["down", "d"]]
        );
    }

    #[tokio::test]
    async fn a_batch_that_failed_alike_is_one_error_and_an_empty_one_sends_nothing() {
        let mut api = Fake::default();
        assert_eq!(
            send(&mut api, &docs(&["down1", "down2"])).await,
            Err(SendError::Transient {
                reason: "down".into(),
                retry_after: None
            })
        );
        assert_eq!(send(&mut api, &[]).await, Ok(()));
        assert_eq!(api.requests.lock().unwrap().len(), 1);
    }
}
