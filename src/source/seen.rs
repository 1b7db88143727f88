//! What this process has already seen of each event: the highest occurrence count per event uid.
//!
//! It decides whether a MODIFIED is a new occurrence (count grew) and keeps a relist after 410 from
//! re-exporting what was already exported. Bounded so memory stays flat on busy clusters; an
//! evicted uid is treated as unseen, which at worst re-exports one occurrence under the same key
//! (idempotent sinks absorb it) — never loses one.
//!
//! Two generations instead of a linked LRU: each uid carries the generation it was last touched
//! in. When the current generation has touched half the capacity, a new one starts and the uids
//! not touched in the one ending are dropped whole. So the last `capacity / 2` uids touched are
//! always remembered and never more than `capacity` are. One table for both generations: a
//! lookup is one probe (a cache miss in a full table), where a map per generation took two for
//! every new uid. The table grows with what is in it (a linked LRU reserved its whole table up
//! front: 8 MiB for the default capacity, touched page by page by the first few thousand events)
//! and an entry is 16 bytes in place, with no allocation or list links of its own.

use crate::digest::{self, DigestMap};

/// Default capacity: comfortably above the number of live events of a busy cluster (events live 1 h).
pub const DEFAULT_CAPACITY: usize = 262_144;

#[derive(Clone, Copy)]
struct Entry {
    /// The highest count seen.
    count: i32,
    /// The generation that last touched the uid: the current one or the one before.
    generation: u32,
}

pub struct Seen {
    /// Uid digest → entry.
    counts: DigestMap<Entry>,
    generation: u32,
    /// Uids the current generation holds (touched and not forgotten).
    touched: usize,
    /// A generation ends when it has touched this many.
    per_generation: usize,
}

impl Seen {
    pub fn new(capacity: usize) -> Self {
        Self {
            counts: DigestMap::default(),
            generation: 0,
            touched: 0,
            per_generation: (capacity / 2).max(1),
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
        self.counts.get(&Self::key(uid)).map(|e| e.count)
    }

    /// Records `count` for `uid`; returns true if it is higher than what was recorded (or the uid is
    /// unknown): a new occurrence.
    pub fn observe(&mut self, uid: &str, count: i32) -> bool {
        let key = Self::key(uid);
        let prev = match self.counts.get_mut(&key) {
            Some(e) if e.generation == self.generation => {
                if e.count >= count {
                    return false;
                }
                e.count = count;
                return true;
            }
            Some(e) => Some(e.count),
            None => None,
        };
        // Touched for the first time in this generation: it may have to start a new one.
        if self.touched >= self.per_generation {
            let ending = self.generation;
            self.counts.retain(|_, e| e.generation == ending);
            self.generation = ending.wrapping_add(1);
            self.touched = 0;
        }
        self.touched += 1;
        let new = prev.is_none_or(|p| count > p);
        let entry = Entry {
            count: if new { count } else { prev.unwrap_or(count) },
            generation: self.generation,
        };
        self.counts.insert(key, entry);
        new
    }

    /// Drops the uid (a deleted event); its place in the current generation is free again.
    pub fn forget(&mut self, uid: &str) {
        if let Some(e) = self.counts.remove(&Self::key(uid))
            && e.generation == self.generation
        {
            self.touched -= 1;
        }
    }

    pub fn len(&self) -> usize {
        self.counts.len()
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

    /// The model: a map per generation, the older one dropped whole when the newer fills (what
    /// this module kept before it used one table).
    struct Model {
        recent: std::collections::HashMap<String, i32>,
        older: std::collections::HashMap<String, i32>,
        generation: usize,
    }

    impl Model {
        fn observe(&mut self, uid: &str, count: i32) -> bool {
            if let Some(prev) = self.recent.get_mut(uid) {
                let new = count > *prev;
                *prev = (*prev).max(count);
                return new;
            }
            let (recorded, new) = match self.older.remove(uid) {
                Some(prev) if prev >= count => (prev, false),
                _ => (count, true),
            };
            if self.recent.len() >= self.generation {
                self.older = std::mem::take(&mut self.recent);
            }
            self.recent.insert(uid.to_string(), recorded);
            new
        }

        fn get(&self, uid: &str) -> Option<i32> {
            self.recent
                .get(uid)
                .or_else(|| self.older.get(uid))
                .copied()
        }
    }

    proptest::proptest! {
        #[test]
        fn one_table_answers_as_a_map_per_generation(
            capacity in 1usize..12,
            ops in proptest::collection::vec((0u8..16, 1i32..5, proptest::bool::weighted(0.05)), 0..400),
        ) {
            let mut seen = Seen::new(capacity);
            let mut model = Model {
                recent: Default::default(),
                older: Default::default(),
                generation: (capacity / 2).max(1),
            };
            for (uid, count, forget) in ops {
                let uid = format!("uid-{uid}");
                if forget {
                    seen.forget(&uid);
                    model.recent.remove(&uid);
                    model.older.remove(&uid);
                    continue;
                }
                proptest::prop_assert_eq!(seen.observe(&uid, count), model.observe(&uid, count), "{}", uid);
                proptest::prop_assert!(seen.len() <= capacity.max(2));
                for other in 0..16 {
                    let other = format!("uid-{other}");
                    proptest::prop_assert_eq!(seen.get(&other), model.get(&other), "{}", other);
                }
            }
        }
    }
}
