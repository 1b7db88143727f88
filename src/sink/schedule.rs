//! Which waiting occurrences go into the next request when several may be in flight: in queue
//! order, never two requests with the same order key at once (so one key's occurrences arrive in
//! order), a batch full or due after `maxWait`.
//!
//! Kept per key, so each decision costs in proportion to the batch it makes rather than to
//! everything waiting: a queue of a thousand occurrences behind a few busy keys (Loki's streams)
//! is not scanned again for every arrival and every answer.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use crate::digest::{DigestMap, DigestSet};

struct Waiting<T> {
    seq: u64,
    since: Instant,
    item: T,
}

/// The waiting occurrences (`T`) of one receiver, by order key.
pub struct Schedule<T> {
    /// Keyed by the order keys, digests already (`OrderKey::of`).
    queues: DigestMap<VecDeque<Waiting<T>>>,
    /// Keys with something waiting and no request in flight, by the arrival of their oldest.
    ready: BTreeSet<(u64, u64)>,
    /// Keys in a request now.
    busy: DigestSet,
    /// How many wait under ready keys.
    ready_len: usize,
    len: usize,
    next_seq: u64,
    /// Emptied queues kept for the next keys: most keys hold one occurrence at a time, and a
    /// queue allocated and freed per occurrence was one allocation too many on the hot path.
    spare: Vec<VecDeque<Waiting<T>>>,
}

/// Emptied queues kept at most (their room for a few occurrences each).
const SPARE_QUEUES: usize = 256;

impl<T> Default for Schedule<T> {
    fn default() -> Self {
        Self {
            queues: DigestMap::default(),
            ready: BTreeSet::new(),
            busy: DigestSet::default(),
            ready_len: 0,
            len: 0,
            next_seq: 0,
            spare: Vec::new(),
        }
    }
}

impl<T> Schedule<T> {
    /// `item`, arrived at `since`, waits behind everything with its `key`.
    pub fn push(&mut self, key: u64, since: Instant, item: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let spare = &mut self.spare;
        let q = self
            .queues
            .entry(key)
            .or_insert_with(|| spare.pop().unwrap_or_default());
        // Under a busy key it waits for that key's request; otherwise it can go, and heads
        // `ready` when its key had nothing waiting.
        if !self.busy.contains(&key) {
            if q.is_empty() {
                self.ready.insert((seq, key));
            }
            self.ready_len += 1;
        }
        q.push_back(Waiting { seq, since, item });
        self.len += 1;
    }

    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many wait, ready or not.
    pub fn len(&self) -> usize {
        self.len
    }

    /// When the oldest occurrence that could go now has waited `max_wait`.
    pub fn due_at(&self, max_wait: Duration) -> Option<Instant> {
        Some(self.oldest_ready()? + max_wait)
    }

    /// When the oldest occurrence that could go now arrived.
    fn oldest_ready(&self) -> Option<Instant> {
        let &(_, key) = self.ready.first()?;
        Some(self.queues.get(&key)?.front()?.since)
    }

    /// The next request: up to `max` occurrences of keys in no request, oldest first; sent
    /// when full, when its oldest waited `max_wait`, when `flush`, or at once for batches of
    /// one. Its keys are busy until [`done`](Self::done). None when nothing is due. The clock
    /// (`now`) is read only when the rest does not decide: the worker asks about once per
    /// occurrence under load.
    pub fn next_batch(
        &mut self,
        max: usize,
        max_wait: Duration,
        flush: bool,
        now: impl FnOnce() -> Instant,
    ) -> Option<(Vec<T>, Vec<u64>)> {
        let max = max.max(1);
        let oldest = self.oldest_ready()?;
        let due = max == 1 || flush || self.ready_len >= max || oldest + max_wait <= now();
        if !due {
            return None;
        }
        let mut batch = Vec::with_capacity(max.min(self.ready_len));
        let mut keys = Vec::new();
        // Merge the ready keys' queues by arrival; a key taken from stays out of `ready`.
        let mut taking: BTreeSet<(u64, u64)> = BTreeSet::new();
        while batch.len() < max {
            let from_ready = self.ready.first().copied();
            let from_taking = taking.first().copied();
            let (seq, key) = match (from_ready, from_taking) {
                (Some(r), Some(t)) if r < t => self.ready.pop_first()?,
                (Some(_), None) => self.ready.pop_first()?,
                (_, Some(_)) => taking.pop_first()?,
                (None, None) => break,
            };
            let Some(q) = self.queues.get_mut(&key) else {
                continue;
            };
            debug_assert_eq!(q.front().map(|w| w.seq), Some(seq));
            let Some(w) = q.pop_front() else { continue };
            if self.busy.insert(key) {
                keys.push(key);
            }
            batch.push(w.item);
            self.ready_len -= 1;
            self.len -= 1;
            match q.front() {
                Some(next) => {
                    taking.insert((next.seq, key));
                }
                None => {
                    if let Some(q) = self.queues.remove(&key)
                        && self.spare.len() < SPARE_QUEUES
                    {
                        self.spare.push(q);
                    }
                }
            }
        }
        // What the taken keys still hold waits for their request.
        for (_, key) in taking {
            if let Some(q) = self.queues.get(&key) {
                self.ready_len -= q.len();
            }
        }
        Some((batch, keys))
    }

    /// The request holding `keys` ended: what waits under them may go.
    pub fn done(&mut self, keys: &[u64]) {
        for &key in keys {
            self.busy.remove(&key);
            if let Some(q) = self.queues.get(&key)
                && let Some(head) = q.front()
            {
                self.ready.insert((head.seq, key));
                self.ready_len += q.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_millis(200);

    fn schedule(items: &[(u64, &'static str)], at: Instant) -> Schedule<&'static str> {
        let mut s = Schedule::default();
        for &(key, item) in items {
            s.push(key, at, item);
        }
        s
    }

    #[test]
    fn a_batch_takes_every_ready_key_in_arrival_order() {
        let now = Instant::now();
        let mut s = schedule(&[(1, "a1"), (2, "b1"), (1, "a2"), (3, "c1")], now);
        let (batch, mut keys) = s.next_batch(10, WAIT, true, || now).unwrap();
        keys.sort_unstable();
        assert_eq!(batch, ["a1", "b1", "a2", "c1"]);
        assert_eq!(keys, [1, 2, 3]);
        assert!(s.is_empty());
    }

    #[test]
    fn a_busy_key_waits_for_its_request_and_the_others_go() {
        let now = Instant::now();
        let mut s = schedule(&[(1, "a1"), (2, "b1"), (1, "a2"), (3, "c1")], now);
        let (first, keys) = s.next_batch(1, WAIT, false, || now).unwrap();
        assert_eq!((first, keys.clone()), (vec!["a1"], vec![1]));
        // a2 waits for a1's request; b1 and c1 go.
        let (second, _) = s.next_batch(10, WAIT, true, || now).unwrap();
        assert_eq!(second, ["b1", "c1"]);
        assert!(s.next_batch(10, WAIT, true, || now).is_none());
        s.done(&keys);
        let (third, _) = s.next_batch(10, WAIT, true, || now).unwrap();
        assert_eq!(third, ["a2"]);
    }

    #[test]
    fn a_partial_batch_waits_for_max_wait_and_a_full_one_goes_at_once() {
        let now = Instant::now();
        let mut s = schedule(&[(1, "a1"), (2, "b1")], now);
        assert!(s.next_batch(3, WAIT, false, || now).is_none());
        assert_eq!(s.due_at(WAIT), Some(now + WAIT));
        s.push(3, now, "c1");
        let (batch, _) = s.next_batch(3, WAIT, false, || now).unwrap();
        assert_eq!(batch, ["a1", "b1", "c1"]);
        s.push(4, now, "d1");
        assert!(s.next_batch(3, WAIT, false, || now + WAIT / 2).is_none());
        assert_eq!(
            s.next_batch(3, WAIT, false, || now + WAIT).unwrap().0,
            ["d1"]
        );
    }

    #[test]
    fn a_batch_stops_at_max_and_the_rest_keeps_its_order() {
        let now = Instant::now();
        let mut s = schedule(&[(1, "a1"), (1, "a2"), (2, "b1"), (1, "a3")], now);
        let (batch, keys) = s.next_batch(2, WAIT, false, || now).unwrap();
        assert_eq!((batch, keys.clone()), (vec!["a1", "a2"], vec![1]));
        // Key 1 is busy: only b1 is ready, a partial batch not yet due.
        assert!(s.next_batch(2, WAIT, false, || now).is_none());
        s.done(&keys);
        let (batch, _) = s.next_batch(2, WAIT, false, || now).unwrap();
        assert_eq!(batch, ["b1", "a3"]);
    }

    #[test]
    fn arrivals_under_a_busy_key_are_not_counted_ready() {
        let now = Instant::now();
        let mut s = schedule(&[(1, "a1")], now);
        let (_, keys) = s.next_batch(1, WAIT, false, || now).unwrap();
        s.push(1, now, "a2");
        s.push(1, now, "a3");
        assert!(
            s.due_at(WAIT).is_none(),
            "nothing can go while key 1 is busy"
        );
        assert!(s.next_batch(2, WAIT, true, || now).is_none());
        s.done(&keys);
        assert_eq!(
            s.next_batch(2, WAIT, false, || now).unwrap().0,
            ["a2", "a3"]
        );
    }
}
