//! Delivery progress: sequence numbers, acknowledgements and the low watermark (the cursor).
//!
//! Every item the source emits (an occurrence, or a checkpoint such as "the list at resourceVersion R
//! is done") gets a sequence number in source order. Each receiver an occurrence is routed to holds an
//! [`Ack`]; the item is complete when every `Ack` has been `done()` and the router has released its
//! own hold. The cursor is the position of the highest sequence number below which every item is
//! complete. Nothing else moves it.
//!
//! An `Ack` dropped without `done()` (a worker cancelled mid-delivery) marks its item *abandoned*:
//! the cursor then never passes it, so a successor replays it rather than losing it.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use jiff::Timestamp;
use tokio::sync::watch;

/// Where a successor may resume: every event up to and including `resource_version` is delivered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Position {
    /// Inline (resourceVersions are short): a position is made for every frame.
    pub resource_version: crate::event::Text,
    /// The last-seen time of the event at this position (None for checkpoints without an event).
    pub event_time: Option<Timestamp>,
    /// Every event written after `resource_version` was written after this time: the source had
    /// read the API's history that far (an event's own time, a consistent list's start, the end
    /// of a watch that stayed open). When a resume finds that history gone, only events written
    /// after this and expired since can be missing (`source::gap`). None: unknown.
    pub checked_at: Option<Timestamp>,
}

/// The low watermark as observed by the elector and the metrics.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cursor {
    /// Sequence number of the last complete item (0 when nothing completed yet).
    pub seq: u64,
    pub position: Option<Position>,
}

#[derive(Debug)]
struct Slot {
    seq: u64,
    position: Option<Position>,
    done: bool,
    /// When the source emitted it (`clock::coarse_now()`): the cursor lag is the age of the
    /// oldest incomplete item.
    begun: std::time::Duration,
}

#[derive(Debug, Default)]
struct State {
    next_seq: u64,
    /// Items not yet known complete, in sequence order; complete ones at the front are popped.
    pending: VecDeque<Slot>,
    cursor: Cursor,
    abandoned: u64,
}

/// Tracks every in-flight item. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Tracker {
    state: Arc<Mutex<State>>,
    cursor_tx: Arc<watch::Sender<Cursor>>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Tracker {
    /// `start` is the position already delivered (a resumed cursor), if any.
    pub fn new(start: Option<Position>) -> Self {
        let cursor = Cursor {
            seq: 0,
            position: start,
        };
        let (tx, _) = watch::channel(cursor.clone());
        Self {
            state: Arc::new(Mutex::new(State {
                next_seq: 1,
                cursor,
                ..State::default()
            })),
            cursor_tx: Arc::new(tx),
        }
    }

    /// Registers the next item. `position` is where the cursor may move once this item and every
    /// earlier one is complete; `None` leaves it where it is (e.g. list items, whose order is not
    /// resourceVersion order, before the list's own checkpoint).
    pub fn begin(&self, position: Option<Position>) -> Ticket {
        let mut st = self.state.lock().expect("progress lock");
        let seq = st.next_seq;
        st.next_seq += 1;
        st.pending.push_back(Slot {
            seq,
            position,
            done: false,
            begun: crate::clock::coarse_now(),
        });
        drop(st);
        Ticket {
            inner: Arc::new(TicketInner {
                seq,
                remaining: AtomicUsize::new(1),
                abandoned: AtomicBool::new(false),
                tracker: self.clone(),
            }),
        }
    }

    pub fn cursor(&self) -> Cursor {
        self.cursor_tx.borrow().clone()
    }

    /// Notified whenever the cursor moves.
    pub fn subscribe(&self) -> watch::Receiver<Cursor> {
        self.cursor_tx.subscribe()
    }

    /// Items registered but not complete (including abandoned ones).
    pub fn in_flight(&self) -> usize {
        self.state.lock().expect("progress lock").pending.len()
    }

    /// How long the oldest item not yet acknowledged by every receiver has waited: what the
    /// exporter owes. Zero when nothing is pending (a quiet cluster owes nothing).
    pub fn oldest_pending_age(&self) -> std::time::Duration {
        let st = self.state.lock().expect("progress lock");
        // Complete items at the front are popped at once, so the front is the oldest incomplete.
        st.pending
            .front()
            .map(|s| crate::clock::coarse_now().saturating_sub(s.begun))
            .unwrap_or_default()
    }

    /// Occurrences not acknowledged by every receiver (in flight or abandoned); complete items
    /// waiting behind them are not counted.
    pub fn undelivered(&self) -> usize {
        let st = self.state.lock().expect("progress lock");
        st.pending.iter().filter(|s| !s.done).count()
    }

    /// Items whose delivery was abandoned (an `Ack` dropped without `done`).
    pub fn abandoned(&self) -> u64 {
        self.state.lock().expect("progress lock").abandoned
    }

    /// Waits until every registered item is complete. An abandoned item never completes, so callers
    /// bound this with a timeout.
    pub async fn wait_idle(&self) {
        let mut rx = self.subscribe();
        loop {
            if self.in_flight() == 0 {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    fn complete(&self, seq: u64) {
        self.complete_all(std::iter::once(seq));
    }

    /// Marks every item of `seqs` complete, then moves the cursor once: one lock and one
    /// notification for a whole batch.
    fn complete_all(&self, seqs: impl Iterator<Item = u64>) {
        let mut st = self.state.lock().expect("progress lock");
        let Some(front) = st.pending.front().map(|s| s.seq) else {
            return;
        };
        for seq in seqs {
            let Some(slot) = st.pending.get_mut((seq - front) as usize) else {
                continue;
            };
            debug_assert_eq!(slot.seq, seq);
            slot.done = true;
        }
        let mut moved = false;
        while st.pending.front().is_some_and(|s| s.done) {
            let slot = st.pending.pop_front().expect("front exists");
            st.cursor.seq = slot.seq;
            if slot.position.is_some() {
                st.cursor.position = slot.position;
            }
            moved = true;
        }
        if moved {
            let cursor = st.cursor.clone();
            drop(st);
            // Published outside the lock, so two threads may publish out of order: the later
            // cursor never gives way to an earlier one (subscribers write it into the Lease).
            self.cursor_tx.send_if_modified(|current| {
                let ahead = cursor.seq > current.seq;
                if ahead {
                    *current = cursor;
                }
                ahead
            });
        }
    }

    fn same(&self, other: &Tracker) -> bool {
        Arc::ptr_eq(&self.state, &other.state)
    }

    fn abandon(&self) {
        self.state.lock().expect("progress lock").abandoned += 1;
    }
}

#[derive(Debug)]
struct TicketInner {
    seq: u64,
    remaining: AtomicUsize,
    abandoned: AtomicBool,
    tracker: Tracker,
}

impl TicketInner {
    fn release_one(&self) {
        if self.release_is_last() {
            self.tracker.complete(self.seq);
        }
    }

    /// Gives one hold back; true if that completes the item.
    fn release_is_last(&self) -> bool {
        self.remaining.fetch_sub(1, Ordering::AcqRel) == 1
            && !self.abandoned.load(Ordering::Acquire)
    }
}

/// The router's hold on an item: hand out one [`Ack`] per receiver, then `release()`.
#[derive(Debug)]
pub struct Ticket {
    inner: Arc<TicketInner>,
}

impl Ticket {
    pub fn seq(&self) -> u64 {
        self.inner.seq
    }

    /// One acknowledgement owed by one receiver.
    pub fn ack(&self) -> Ack {
        self.inner.remaining.fetch_add(1, Ordering::AcqRel);
        Ack {
            inner: Some(self.inner.clone()),
        }
    }

    /// The router is done handing out acks; the item completes once every ack is done.
    pub fn release(self) {
        self.inner.release_one();
    }
}

/// Owed by a receiver for one item: call `done()` once the sink has durably handed it off (or
/// permanently failed it, or dropped it by `dropWhenFull`, both counted elsewhere).
#[derive(Debug)]
#[must_use = "an Ack dropped without done() holds the cursor back forever"]
pub struct Ack {
    inner: Option<Arc<TicketInner>>,
}

impl Ack {
    pub fn seq(&self) -> u64 {
        self.inner.as_ref().map(|i| i.seq).unwrap_or_default()
    }

    pub fn done(mut self) {
        if let Some(inner) = self.inner.take() {
            inner.release_one();
        }
    }

    /// `done()` for each of `acks`, in order, with the cursor moved once per tracker for the
    /// whole lot instead of once per ack (a worker acknowledges a batch at a time): the same
    /// final cursor, one lock and one notification.
    pub fn done_all(acks: impl IntoIterator<Item = Ack>) {
        let mut completed: Vec<Arc<TicketInner>> = Vec::new();
        for mut ack in acks {
            if let Some(inner) = ack.inner.take()
                && inner.release_is_last()
            {
                completed.push(inner);
            }
        }
        let mut rest = &completed[..];
        while let Some(first) = rest.first() {
            let n = rest
                .iter()
                .take_while(|i| i.tracker.same(&first.tracker))
                .count();
            first.tracker.complete_all(rest[..n].iter().map(|i| i.seq));
            rest = &rest[n..];
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner.abandoned.store(true, Ordering::Release);
            inner.tracker.abandon();
            inner.release_one();
        }
    }
}

#[cfg(test)]
#[path = "progress_props.rs"]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(rv: &str) -> Option<Position> {
        Some(Position {
            resource_version: rv.into(),
            event_time: None,
            checked_at: None,
        })
    }

    #[test]
    fn cursor_moves_only_past_contiguous_complete_items() {
        let t = Tracker::new(None);
        let a = t.begin(pos("10"));
        let b = t.begin(pos("11"));
        let c = t.begin(pos("12"));
        let (a1, a2) = (a.ack(), a.ack());
        let b1 = b.ack();
        a.release();
        b.release();
        c.release(); // routed nowhere: complete at once, but behind a and b
        assert_eq!(t.cursor().position, None);
        b1.done();
        assert_eq!(t.cursor().position, None, "b is done but a is not");
        a1.done();
        assert_eq!(t.cursor().position, None, "a still owes one ack");
        a2.done();
        assert_eq!(t.cursor().position, pos("12"));
        assert_eq!(t.cursor().seq, 3);
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn lag_is_the_age_of_the_oldest_unacknowledged_item_and_zero_when_idle() {
        let t = Tracker::new(None);
        assert_eq!(t.oldest_pending_age(), std::time::Duration::ZERO);
        let a = t.begin(pos("10"));
        let ack = a.ack();
        a.release();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let b = t.begin(pos("11"));
        b.release();
        let owed = t.oldest_pending_age() + crate::clock::coarse_resolution();
        assert!(owed >= std::time::Duration::from_millis(30), "{owed:?}");
        ack.done();
        assert_eq!(t.oldest_pending_age(), std::time::Duration::ZERO);
    }

    #[test]
    fn items_without_position_keep_the_previous_one() {
        let t = Tracker::new(pos("5"));
        t.begin(None).release();
        assert_eq!(t.cursor().position, pos("5"));
        assert_eq!(t.cursor().seq, 1);
    }

    #[test]
    fn done_all_moves_the_cursor_as_done_one_by_one() {
        let t = Tracker::new(None);
        let other = Tracker::new(None);
        let (a, b, c) = (t.begin(pos("1")), t.begin(pos("2")), t.begin(pos("3")));
        let o = other.begin(pos("9"));
        let (a1, b1, b2, c1, o1) = (a.ack(), b.ack(), b.ack(), c.ack(), o.ack());
        for ticket in [a, b, c, o] {
            ticket.release();
        }
        let mut cursor = t.subscribe();
        cursor.mark_unchanged();
        // b still owes b2: the cursor moves past a only.
        Ack::done_all([c1, o1, a1, b1]);
        assert_eq!(t.cursor().position, pos("1"));
        assert_eq!(other.cursor().position, pos("9"));
        assert!(cursor.has_changed().unwrap());
        Ack::done_all([b2]);
        assert_eq!(t.cursor().position, pos("3"));
        assert_eq!((t.cursor().seq, t.in_flight()), (3, 0));
        Ack::done_all([]);
    }

    #[test]
    fn dropped_ack_holds_the_cursor_back() {
        let t = Tracker::new(None);
        let a = t.begin(pos("1"));
        let lost = a.ack();
        a.release();
        drop(lost);
        t.begin(pos("2")).release();
        assert_eq!(t.cursor().position, None);
        assert_eq!(t.abandoned(), 1);
        assert_eq!(t.in_flight(), 2);
    }
}
