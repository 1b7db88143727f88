//! Batches answered per document: cut into requests within an API's limits, each document's
//! outcome recorded as the answers come, and the batch's answer settled from them for the worker
//! (`Ok`, one error for the whole batch, or `SendError::Partial`), which then acknowledges what
//! was delivered or failed for good and resends only the rest.

use std::ops::Range;

use super::SendError;

/// The limits of one request of a batch API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entries per request.
    pub entries: usize,
    /// Bytes per request, as the API counts them.
    pub bytes: usize,
}

/// Consecutive ranges of entries of these `sizes`, in order, each within `limits`. An entry
/// larger than `limits.bytes` goes alone in its range: the server names what is wrong with it.
pub fn chunks(sizes: &[usize], limits: Limits) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, &size) in sizes.iter().enumerate() {
        if i > start && (i - start >= limits.entries || bytes + size > limits.bytes) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// What happened to each document of a batch: delivered, or failed with its error.
#[derive(Debug)]
pub struct Outcomes {
    failed: Vec<Option<SendError>>,
}

impl Outcomes {
    /// `len` documents, each delivered until a failure is recorded.
    pub fn new(len: usize) -> Self {
        Self {
            failed: vec![None; len],
        }
    }

    /// `len` documents, each failed with `until` until it is recorded as delivered or failed
    /// otherwise: where a document the sender forgot must never count as sent.
    pub fn pending(len: usize, until: SendError) -> Self {
        Self {
            failed: vec![Some(until); len],
        }
    }

    /// A per-document answer (`SendError::Partial`'s list) over `len` documents.
    pub fn from_failed(len: usize, failed: Vec<(usize, SendError)>) -> Self {
        let mut o = Self::new(len);
        for (i, e) in failed {
            o.fail(i, e);
        }
        o
    }

    pub fn len(&self) -> usize {
        self.failed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.failed.is_empty()
    }

    pub fn delivered(&mut self, doc: usize) {
        if let Some(slot) = self.failed.get_mut(doc) {
            *slot = None;
        }
    }

    pub fn fail(&mut self, doc: usize, e: SendError) {
        if let Some(slot) = self.failed.get_mut(doc) {
            *slot = Some(e);
        }
    }

    /// Every one of `docs` failed alike (a request that failed as a whole).
    pub fn fail_all(&mut self, docs: impl IntoIterator<Item = usize>, e: &SendError) {
        for d in docs {
            self.fail(d, e.clone());
        }
    }

    /// Each document's failure, in order (None: delivered).
    pub fn into_vec(self) -> Vec<Option<SendError>> {
        self.failed
    }

    /// The batch's answer: Ok when nothing failed; the error itself when every document failed
    /// the same way (one reason to log, one retry); else the failed documents by index.
    pub fn settle(self) -> Result<(), SendError> {
        let len = self.failed.len();
        let failed: Vec<(usize, SendError)> = self
            .failed
            .into_iter()
            .enumerate()
            .filter_map(|(i, e)| e.map(|e| (i, e)))
            .collect();
        match failed.first() {
            None => Ok(()),
            Some((_, first)) if failed.len() == len && failed.iter().all(|(_, e)| e == first) => {
                Err(failed.into_iter().next().expect("not empty").1)
            }
            Some(_) => Err(SendError::Partial(failed)),
        }
    }
}

/// [`Outcomes::settle`] of a per-document list of failures over `len` documents.
pub fn settle(len: usize, failed: Vec<(usize, SendError)>) -> Result<(), SendError> {
    Outcomes::from_failed(len, failed).settle()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permanent(r: &str) -> SendError {
        SendError::Permanent { reason: r.into() }
    }

    fn transient(r: &str) -> SendError {
        SendError::Transient {
            reason: r.into(),
            retry_after: None,
        }
    }

    #[test]
    fn batches_are_split_by_count_and_by_bytes_in_order() {
        let l = Limits {
            entries: 3,
            bytes: 10,
        };
        assert_eq!(chunks(&[1; 7], l), vec![0..3, 3..6, 6..7]);
        assert_eq!(chunks(&[4, 4, 4, 4], l), vec![0..2, 2..4]);
        // Too large alone: its own range.
        assert_eq!(chunks(&[2, 11, 2], l), vec![0..1, 1..2, 2..3]);
        assert_eq!(chunks(&[10, 1], l), vec![0..1, 1..2]);
        assert!(chunks(&[], l).is_empty());
        let l = Limits {
            entries: 10,
            bytes: 100,
        };
        assert_eq!(chunks(&[60, 60, 30, 10], l), vec![0..1, 1..4]);
    }

    #[test]
    fn nothing_failed_is_delivered() {
        assert_eq!(Outcomes::new(3).settle(), Ok(()));
        assert_eq!(settle(2, Vec::new()), Ok(()));
    }

    #[test]
    fn every_document_failing_alike_is_the_batch_s_error() {
        let mut o = Outcomes::new(2);
        o.fail_all(0..2, &transient("down"));
        assert_eq!(o.settle(), Err(transient("down")));
        assert_eq!(settle(1, vec![(0, permanent("r"))]), Err(permanent("r")));
    }

    #[test]
    fn anything_else_is_a_per_document_answer_in_index_order() {
        assert_eq!(
            settle(3, vec![(2, permanent("r")), (0, transient("t"))]),
            Err(SendError::Partial(vec![
                (0, transient("t")),
                (2, permanent("r"))
            ]))
        );
        // All failed, not alike.
        assert_eq!(
            settle(2, vec![(0, permanent("a")), (1, permanent("b"))]),
            Err(SendError::Partial(vec![
                (0, permanent("a")),
                (1, permanent("b"))
            ]))
        );
        // One failing alone while others were delivered.
        assert_eq!(
            settle(2, vec![(1, permanent("a"))]),
            Err(SendError::Partial(vec![(1, permanent("a"))]))
        );
    }

    #[test]
    fn a_pending_document_stays_failed_until_recorded() {
        let mut o = Outcomes::pending(3, transient("not sent"));
        o.delivered(0);
        o.fail(1, permanent("bad"));
        assert_eq!(
            o.settle(),
            Err(SendError::Partial(vec![
                (1, permanent("bad")),
                (2, transient("not sent"))
            ]))
        );
    }
}
