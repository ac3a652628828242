//! The hash maps of the world's state ([`Map`], [`Set`]): SipHash under this process's secret
//! keys, as std's maps are, so that names a client chooses cannot be made to collide; but the
//! same keys for every map of the process, so that the same operations on two maps leave them
//! in the same order. That is what makes a world run twice on the same inputs send the same
//! bytes in the same order: whatever iterates a map (a sweep, a fan-out, a list) visits its
//! entries in the same order both times. A recording ([`crate::record`]) keeps the keys, and
//! its replay, in another process, takes them ([`use_keys`]) before any map is made.
//!
//! A game keeps its own state in these too, where it iterates it into what it sends.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::OnceLock;

use siphasher::sip::SipHasher13;

/// A hash map of world state; see the [module](self).
pub type Map<K, V> = HashMap<K, V, State>;

/// A hash set of world state; see the [module](self).
pub type Set<K> = HashSet<K, State>;

/// A map keyed by session: the ids are the server's own, handed out in order and never a
/// client's choice, so they are hashed by one multiply ([`Ids`]) rather than SipHash. The
/// fan-out looks one up per delivery.
pub type SessionMap<V> = HashMap<net::SessionId, V, Ids>;

/// The hasher of [`SessionMap`]: a fixed 128-bit multiply, folded; the same in every process
/// (so a replay iterates as the recording did).
#[derive(Clone, Copy, Debug, Default)]
pub struct Ids;

impl BuildHasher for Ids {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

/// See [`Ids`].
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = fold(self.0 ^ value);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The high and low halves of `value` times an odd constant (the golden ratio's), xored:
/// every bit of the input reaches the low bits (the bucket) and the high ones (the tag).
fn fold(value: u64) -> u64 {
    let product = u128::from(value) * 0x9E37_79B9_7F4A_7C15u128;
    (product as u64) ^ ((product >> 64) as u64)
}

/// The process's keys: drawn at random when first needed, unless [`use_keys`] set them first.
static KEYS: OnceLock<(u64, u64)> = OnceLock::new();

/// The keys of every [`Map`] and [`Set`] of this process (drawn now if none were yet).
pub fn keys() -> (u64, u64) {
    *KEYS.get_or_init(rand::random)
}

/// Makes `keys` the process's keys, as a replay must before any map exists; whether they are
/// (false: keys were drawn or set already, and differ).
pub fn use_keys(keys: (u64, u64)) -> bool {
    *KEYS.get_or_init(|| keys) == keys
}

/// The hasher of [`Map`] and [`Set`]: SipHash-1-3 (std's) under the process's keys.
#[derive(Clone, Debug)]
pub struct State {
    keys: (u64, u64),
}

impl Default for State {
    fn default() -> Self {
        State { keys: keys() }
    }
}

impl BuildHasher for State {
    type Hasher = SipHasher13;

    fn build_hasher(&self) -> Self::Hasher {
        SipHasher13::new_with_keys(self.keys.0, self.keys.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_spread_over_the_buckets() {
        use std::hash::BuildHasher;
        // Ids in order, and ids apart by powers of two: their low bits (the bucket) and their
        // high bits (the tag) both vary.
        for ids in [
            (0..4096u64).collect::<Vec<_>>(),
            (0..4096u64).map(|i| i << 20).collect(),
        ] {
            let hashes: Vec<u64> = ids
                .iter()
                .map(|&i| Ids.hash_one(net::SessionId(i)))
                .collect();
            let buckets: HashSet<u64> = hashes.iter().map(|h| h & 4095).collect();
            let tags: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
            // Random hashes would fill about 2,590 (1 - 1/e of them).
            assert!(buckets.len() > 2000, "{} buckets of 4096", buckets.len());
            assert_eq!(tags.len(), 128, "every tag is used");
        }
    }

    #[test]
    fn two_maps_given_the_same_operations_iterate_in_the_same_order() {
        let fill = || {
            let mut map: Map<String, u32> = Map::default();
            for i in 0..500 {
                map.insert(format!("player-{i}"), i);
            }
            for i in (0..500).step_by(3) {
                map.remove(&format!("player-{i}"));
            }
            map.into_iter().collect::<Vec<_>>()
        };
        assert_eq!(fill(), fill());
    }

    #[test]
    fn the_keys_are_not_the_fixed_ones_of_the_default_hasher() {
        use std::hash::{BuildHasherDefault, DefaultHasher};
        let fixed = BuildHasherDefault::<DefaultHasher>::default();
        let ours = State::default();
        let differ = (0..8).any(|i: u64| fixed.hash_one(i) != ours.hash_one(i));
        assert!(differ, "the process's keys are drawn at random, not zero");
    }
}
