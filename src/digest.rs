//! 64-bit digests as map keys: the de-duplication memory's uids and the delivery schedule's order
//! keys are hashed once, with foldhash under a fixed seed, and the maps keyed by those digests do
//! not hash them a second time.
//!
//! foldhash rather than the standard library's SipHash: a third of the cost per key. SipHash's
//! resistance to chosen keys is moot here: a collision only shares a count between two events
//! (`source::seen`, probability 2⁻⁴⁶ in a full table) or keeps two objects' occurrences in order
//! together (`sink::schedule`).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

/// A map keyed by digests.
pub type DigestMap<V> = HashMap<u64, V, BuildHasherDefault<DigestHasher>>;
/// A set of digests.
pub type DigestSet = HashSet<u64, BuildHasherDefault<DigestHasher>>;

/// The digest of `value`: the same for the life of the process (fixed seed), different for each
/// `seed` (so two uses of digests do not share their collisions).
pub fn of<T: Hash + ?Sized>(seed: u64, value: &T) -> u64 {
    foldhash::quality::FixedState::with_seed(seed).hash_one(value)
}

/// A hasher that ends in a digest like [`of`]'s, for a value hashed in parts.
pub fn hasher(seed: u64) -> impl Hasher {
    foldhash::quality::FixedState::with_seed(seed).build_hasher()
}

/// The keys are digests already: hashing them a second time would only cost.
#[derive(Default)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `u64` keys; this keeps the hasher correct for anything else.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_is_stable_and_seeded() {
        assert_eq!(of(1, "uid-a"), of(1, "uid-a"));
        assert_ne!(of(1, "uid-a"), of(1, "uid-b"));
        assert_ne!(of(1, "uid-a"), of(2, "uid-a"));
        let mut m = DigestMap::default();
        m.insert(of(1, "uid-a"), 3);
        assert_eq!(m.get(&of(1, "uid-a")), Some(&3));
    }
}
