//! The hash maps of the world's state ([`Map`], [`Set`]): SipHash under this process's secret
//! keys, as std's maps are, so that names a client chooses cannot be made to collide; but the
//! same keys for every map of the process, so that the same operations on two maps leave them
//! in the same order. That is what makes a world run twice on the same inputs, in one process,
//! send the same bytes in the same order: whatever iterates a map (a sweep, a fan-out, a list)
//! visits its entries in the same order both times.
//!
//! A game keeps its own state in these too, where it iterates it into what it sends.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::OnceLock;

/// A hash map of world state; see the [module](self).
pub type Map<K, V> = HashMap<K, V, State>;

/// A hash set of world state; see the [module](self).
pub type Set<K> = HashSet<K, State>;

/// The hasher of [`Map`] and [`Set`]: SipHash under the process's keys, drawn at random once.
#[derive(Clone, Debug)]
pub struct State(RandomState);

impl Default for State {
    fn default() -> Self {
        static KEYS: OnceLock<RandomState> = OnceLock::new();
        State(KEYS.get_or_init(RandomState::new).clone())
    }
}

impl BuildHasher for State {
    type Hasher = <RandomState as BuildHasher>::Hasher;

    fn build_hasher(&self) -> Self::Hasher {
        self.0.build_hasher()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
