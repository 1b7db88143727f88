//! Shards of the event stream (`leaderElection.shards`): shard `i` of `n` owns the events whose
//! FNV-1a 64-bit hash of `metadata.uid` falls in the `i`-th of `n` equal ranges of the 64-bit
//! space — the function and ranges of KEP-5866 (`shardSelector=shardRange(object.metadata.uid,
//! '0x…', '0x…')`, start inclusive, end exclusive), so a server that serves the selector sends a
//! shard exactly what [`Shard::owns`] keeps.

use std::fmt;

/// The selector field a shard hashes.
pub const FIELD: &str = "object.metadata.uid";

/// FNV-1a, 64 bits (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Shard `index` of `count` (`index < count`, `count >= 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub fn new(index: u32, count: u32) -> Self {
        assert!(count >= 1 && index < count, "shard {index} of {count}");
        Self { index, count }
    }

    /// Every shard of `count`.
    pub fn all(count: u32) -> impl Iterator<Item = Shard> {
        (0..count).map(move |i| Shard::new(i, count))
    }

    /// `[start, end)` of the hashes this shard owns; `end` of the last shard is 2^64.
    pub fn range(&self) -> (u128, u128) {
        let space = 1u128 << 64;
        let bound = |i: u32| space * u128::from(i) / u128::from(self.count);
        (bound(self.index), bound(self.index + 1))
    }

    /// Whether this shard owns the event with this uid.
    pub fn owns(&self, uid: &str) -> bool {
        let (start, end) = self.range();
        let h = u128::from(fnv1a64(uid.as_bytes()));
        start <= h && h < end
    }

    /// The KEP-5866 selector of this shard, as sent in `shardSelector` and echoed in the list's
    /// `metadata.shardInfo.selector` by a server that applied it.
    pub fn selector(&self) -> String {
        let (start, end) = self.range();
        format!("shardRange({FIELD}, '0x{start:016x}', '0x{end:016x}')")
    }

    /// The Lease of this shard: `{lease_name}-shard-{index}-of-{count}`. The count is in the name:
    /// a different count cuts different ranges, so their cursors are not interchangeable.
    pub fn lease_name(&self, lease_name: &str) -> String {
        format!("{lease_name}-shard-{}-of-{}", self.index, self.count)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        // From the FNV reference test suite (Fowler/Noll/Vo).
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn ranges_tile_the_space_and_every_uid_has_exactly_one_owner() {
        for count in [1, 2, 3, 4, 6, 7, 64] {
            let shards: Vec<Shard> = Shard::all(count).collect();
            assert_eq!(shards[0].range().0, 0);
            assert_eq!(shards.last().unwrap().range().1, 1u128 << 64);
            for w in shards.windows(2) {
                assert_eq!(w[0].range().1, w[1].range().0, "{count} shards: contiguous");
            }
            for n in 0..500 {
                let uid = format!("6f1c{n:04}-aaaa-4bbb-8ccc-{n:012}");
                let owners = shards.iter().filter(|s| s.owns(&uid)).count();
                assert_eq!(owners, 1, "{uid} over {count} shards");
            }
        }
    }

    #[test]
    fn the_selector_is_keps_syntax_with_the_last_end_at_two_to_the_64() {
        assert_eq!(
            Shard::new(0, 2).selector(),
            "shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000')"
        );
        assert_eq!(
            Shard::new(1, 2).selector(),
            "shardRange(object.metadata.uid, '0x8000000000000000', '0x10000000000000000')"
        );
        assert_eq!(
            Shard::new(0, 1).selector(),
            "shardRange(object.metadata.uid, '0x0000000000000000', '0x10000000000000000')"
        );
        assert_eq!(
            Shard::new(2, 6).lease_name("kee"),
            "kee-shard-2-of-6".to_string()
        );
    }

    #[test]
    fn six_shards_split_uids_about_evenly() {
        let mut per = [0u32; 6];
        for n in 0..6000 {
            let uid = format!("{n:08x}-1d2e-4f00-9a0b-{:012x}", n * 7919);
            let owner = Shard::all(6).position(|s| s.owns(&uid)).unwrap();
            per[owner] += 1;
        }
        assert!(per.iter().all(|&c| (800..1200).contains(&c)), "{per:?}");
    }
}
