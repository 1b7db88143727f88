//! What this process has already seen of each event: the highest occurrence count per event uid.
//!
//! It decides whether a MODIFIED is a new occurrence (count grew) and keeps a relist after 410 from
//! re-exporting what was already exported. Bounded so memory stays flat on busy clusters; an
//! evicted uid is treated as unseen, which at worst re-exports one occurrence under the same key
//! (idempotent sinks absorb it) — never loses one.
//!
//! Two generations instead of a linked LRU: uids go into `recent`; when it holds half the capacity
//! it becomes `older` and the previous `older` is emptied whole, its table kept for the next
//! generation. A uid touched in `older` moves back to `recent`. So the last `capacity / 2` uids
//! touched are always remembered and never more than `capacity` are. Both maps grow with what is
//! in them until the first generation is full (a linked LRU reserved its whole table up front:
//! 8 MiB for the default capacity, touched page by page by the first few thousand events) and an
//! entry is 16 bytes in place, with no allocation or list links of its own.

use crate::digest::{self, DigestMap};

/// Default capacity: comfortably above the number of live events of a busy cluster (events live 1 h).
pub const DEFAULT_CAPACITY: usize = 262_144;

/// Uid digest → highest count seen.
type Counts = DigestMap<i32>;

pub struct Seen {
    recent: Counts,
    older: Counts,
    /// `recent` turns into `older` when it holds this many.
    generation: usize,
}

impl Seen {
    pub fn new(capacity: usize) -> Self {
        Self {
            recent: Counts::default(),
            older: Counts::default(),
            generation: (capacity / 2).max(1),
        }
    }

    /// 64-bit digest of the uid: 16 bytes an entry instead of a 36-byte string plus its allocation.
    /// Fixed seed, so a uid has one digest for the life of the process. Two uids sharing a digest
    /// would share a count: a new uid meets a digest already in a full table with probability
    /// 2⁻⁴⁶, and the uids are the API server's UUIDs, not chosen by whoever creates an event.
    fn key(uid: &str) -> u64 {
        digest::of(0x6b65_652d_7365_656e, uid)
    }

    /// The highest count recorded for this uid.
    pub fn get(&self, uid: &str) -> Option<i32> {
        let key = Self::key(uid);
        self.recent
            .get(&key)
            .or_else(|| self.older.get(&key))
            .copied()
    }

    /// Records `count` for `uid`; returns true if it is higher than what was recorded (or the uid is
    /// unknown): a new occurrence.
    pub fn observe(&mut self, uid: &str, count: i32) -> bool {
        use std::collections::hash_map::Entry;
        let key = Self::key(uid);
        // A full generation turns over before the lookup, so one probe of `recent` finds the uid
        // or the place it goes: the tables are megabytes, and each probe is a cache miss.
        if self.recent.len() >= self.generation {
            // The dropped generation's table is cleared and reused, not freed: a fresh one would
            // grow by doubling again, each step a rehash into memory the kernel has to fault in
            // and zero (about 2% of the exporter's CPU under load, in the profile).
            std::mem::swap(&mut self.older, &mut self.recent);
            self.recent.clear();
        }
        match self.recent.entry(key) {
            Entry::Occupied(mut seen) => {
                if *seen.get() >= count {
                    return false;
                }
                seen.insert(count);
                true
            }
            Entry::Vacant(place) => {
                let (recorded, new) = match self.older.remove(&key) {
                    Some(prev) if prev >= count => (prev, false),
                    _ => (count, true),
                };
                place.insert(recorded);
                new
            }
        }
    }

    pub fn forget(&mut self, uid: &str) {
        let key = Self::key(uid);
        self.recent.remove(&key);
        self.older.remove(&key);
    }

    pub fn len(&self) -> usize {
        self.recent.len() + self.older.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_growing_counts_are_new() {
        let mut s = Seen::new(8);
        assert!(s.observe("a", 1));
        assert!(!s.observe("a", 1));
        assert!(s.observe("a", 3));
        assert!(!s.observe("a", 2));
        assert_eq!(s.get("a"), Some(3));
    }

    #[test]
    fn bounded() {
        let mut s = Seen::new(2);
        s.observe("a", 1);
        s.observe("b", 1);
        s.observe("c", 1);
        assert_eq!(s.len(), 2);
        assert_eq!(s.get("a"), None, "least recently used is evicted");
    }

    #[test]
    fn the_last_half_of_the_capacity_is_always_remembered() {
        let capacity = 100;
        let mut s = Seen::new(capacity);
        for i in 0..1000usize {
            assert!(s.observe(&format!("uid-{i}"), 1), "uid-{i} is new");
            assert!(
                s.len() <= capacity,
                "{} entries for a capacity of {capacity}",
                s.len()
            );
            for back in 0..capacity / 2 {
                if let Some(j) = i.checked_sub(back) {
                    assert_eq!(s.get(&format!("uid-{j}")), Some(1), "uid-{j} after uid-{i}");
                }
            }
        }
    }

    #[test]
    fn a_new_generation_reuses_the_table_of_the_one_dropped() {
        let mut s = Seen::new(2048);
        for i in 0..1024 {
            s.observe(&format!("first-{i}"), 1);
        }
        let first = s.recent.capacity();
        assert!(first >= 1024);
        // The first rotation: `recent` starts empty, in the table of the (empty) older one.
        for i in 0..1024 {
            s.observe(&format!("second-{i}"), 1);
        }
        // The second: the first generation's table is emptied and takes the new uids.
        s.observe("third-0", 1);
        assert_eq!(s.recent.len(), 1);
        assert_eq!(s.recent.capacity(), first, "no new table, no regrowth");
        assert_eq!(s.get("first-0"), None, "the dropped generation is gone");
        assert_eq!(s.get("second-0"), Some(1));
    }

    #[test]
    fn a_uid_touched_again_survives_the_generation_it_was_in() {
        let mut s = Seen::new(4);
        s.observe("kept", 1);
        s.observe("a", 1);
        // "kept" and "a" are now the older generation; touching "kept" brings it back.
        s.observe("b", 1);
        assert!(!s.observe("kept", 1), "same count: not a new occurrence");
        s.observe("c", 1);
        s.observe("d", 1);
        assert_eq!(s.get("kept"), Some(1));
        assert_eq!(s.get("a"), None, "untouched for two generations");
        assert!(s.observe("kept", 2), "a higher count is new");
    }

    #[test]
    fn forget_removes_from_either_generation() {
        let mut s = Seen::new(2);
        s.observe("a", 1);
        s.observe("b", 1);
        s.forget("a");
        s.forget("b");
        assert!(s.is_empty());
        assert!(s.observe("a", 1), "forgotten: new again");
    }
}
