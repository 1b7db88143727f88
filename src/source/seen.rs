//! What this process has already seen of each event: the highest occurrence count per event uid.
//!
//! It decides whether a MODIFIED is a new occurrence (count grew) and keeps a relist after 410 from
//! re-exporting what was already exported. Bounded (LRU) so memory stays flat on busy clusters; an
//! evicted uid is treated as unseen, which at worst re-exports one occurrence under the same key
//! (idempotent sinks absorb it) — never loses one.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::num::NonZeroUsize;

use lru::LruCache;

/// Default capacity: comfortably above the number of live events of a busy cluster (events live 1 h).
pub const DEFAULT_CAPACITY: usize = 262_144;

pub struct Seen {
    counts: LruCache<u64, i32>,
}

impl Seen {
    pub fn new(capacity: usize) -> Self {
        Self {
            counts: LruCache::new(NonZeroUsize::new(capacity.max(1)).expect("max(1) is non-zero")),
        }
    }

    /// 64-bit digest of the uid: 16 bytes an entry instead of a 36-byte string plus its allocation.
    /// A deterministic hasher, so a uid maps to the same slot for the life of the process.
    fn key(uid: &str) -> u64 {
        BuildHasherDefault::<DefaultHasher>::default().hash_one(uid)
    }

    /// The highest count recorded for this uid.
    pub fn get(&mut self, uid: &str) -> Option<i32> {
        self.counts.get(&Self::key(uid)).copied()
    }

    /// Records `count` for `uid`; returns true if it is higher than what was recorded (or the uid is
    /// unknown): a new occurrence.
    pub fn observe(&mut self, uid: &str, count: i32) -> bool {
        let key = Self::key(uid);
        match self.counts.get_mut(&key) {
            Some(prev) if *prev >= count => false,
            Some(prev) => {
                *prev = count;
                true
            }
            None => {
                self.counts.put(key, count);
                true
            }
        }
    }

    pub fn forget(&mut self, uid: &str) {
        self.counts.pop(&Self::key(uid));
    }

    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
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
}
