//! Giving back the capacity of collections that grew for a crowd that has left.
//!
//! A `HashMap` or `Vec` keeps the capacity of its largest size until it is dropped: the hub's
//! registry of 15,000 subscribers keeps its 15,000 slots (about 1 MB) after they leave, and the
//! fan-out walks every slot of a sparse map (ADR 0005). Once a collection uses at most a
//! quarter of its capacity it is shrunk to twice its length; the next shrink then needs its
//! length to halve again, so the rehashing costs O(1) per removal over time, and small
//! collections (below [`SHRINK_MIN_CAPACITY`]) are left alone.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash};

/// Collections with at most this much capacity are never shrunk (a few KB at most, and
/// resizing them back and forth would cost more than it frees).
pub const SHRINK_MIN_CAPACITY: usize = 64;

/// Whether a collection of `len` entries and `capacity` slots should give slots back.
fn sparse(len: usize, capacity: usize) -> bool {
    capacity > SHRINK_MIN_CAPACITY && len <= capacity / 4
}

/// Shrinks `map` to twice its length when it uses at most a quarter of its capacity.
pub(crate) fn release_unused<K: Eq + Hash, V, S: BuildHasher>(map: &mut HashMap<K, V, S>) {
    if sparse(map.len(), map.capacity()) {
        map.shrink_to(map.len() * 2);
    }
}

/// Shrinks `set` to twice its length when it uses at most a quarter of its capacity.
pub(crate) fn release_unused_set<K: Eq + Hash, S: BuildHasher>(set: &mut HashSet<K, S>) {
    if sparse(set.len(), set.capacity()) {
        set.shrink_to(set.len() * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_emptied_after_a_crowd_gives_its_capacity_back() {
        let mut map: HashMap<u64, [u64; 3]> = HashMap::new();
        for id in 0..15_000 {
            map.insert(id, [id; 3]);
        }
        let peak = map.capacity();
        assert!(peak >= 15_000);
        for id in 0..15_000 {
            map.remove(&id);
            release_unused(&mut map);
            // Never much more than four times what is left (or the small floor).
            assert!(
                map.capacity() <= (4 * map.len() + 4).max(SHRINK_MIN_CAPACITY * 2),
                "{} slots for {} entries",
                map.capacity(),
                map.len()
            );
        }
        assert!(map.capacity() <= SHRINK_MIN_CAPACITY * 2);
    }

    #[test]
    fn a_map_in_use_keeps_its_capacity() {
        let mut map: HashMap<u64, u64> = (0..1000).map(|i| (i, i)).collect();
        let capacity = map.capacity();
        for id in 0..500 {
            map.remove(&id);
            release_unused(&mut map);
        }
        // Half full: nothing to give back (a shrink would leave about 1,000 slots; removals
        // alone only turn slots into tombstones).
        assert!(
            map.capacity() > capacity * 3 / 4,
            "{} of {capacity} slots left with 500 entries",
            map.capacity()
        );
        let mut small: HashMap<u64, u64> = (0..SHRINK_MIN_CAPACITY as u64 / 2)
            .map(|i| (i, i))
            .collect();
        let small_capacity = small.capacity();
        small.retain(|&k, _| k == 0);
        release_unused(&mut small);
        assert_eq!(
            small.capacity(),
            small_capacity,
            "small maps are left alone"
        );
    }

    #[test]
    fn the_hub_gives_back_the_registry_of_a_crowd_that_left() {
        use crate::hub::{Hub, Selection};
        use crate::queue::{QueueLimits, SubscriberQueue};
        use crate::subscription::{Filter, Framing, StreamKind};
        use crate::BroadcastMetrics;
        use planetmint_streams_model::BlockSink;
        use std::sync::Arc;

        let hub = Hub::new(4, BroadcastMetrics::unregistered().expect("metrics"));
        hub.start_after(0);
        let before = hub.registry_capacity();
        let queue = Arc::new(SubscriberQueue::new(QueueLimits {
            max_blocks: 4,
            max_bytes: 1 << 16,
        }));
        let selection = Arc::new(Selection {
            stream: StreamKind::ValidTransactions,
            filter: Filter::default(),
            framing: Framing::PerEvent,
            payload: crate::subscription::Payload::Event,
            key: 0,
            envelope: None,
        });
        let ids: Vec<_> = (0..10_000)
            .map(|_| hub.attach_live(&queue, &selection))
            .collect();
        assert!(hub.registry_capacity() >= 10_000);
        for id in ids {
            hub.detach(id);
        }
        assert_eq!(hub.subscriber_count(), 0);
        assert!(
            hub.registry_capacity() <= before.max(SHRINK_MIN_CAPACITY * 2),
            "{} slots kept for no subscriber",
            hub.registry_capacity()
        );
    }

    #[test]
    fn a_set_emptied_gives_its_capacity_back() {
        let mut set: HashSet<u64> = (0..10_000).collect();
        set.retain(|&n| n < 100);
        release_unused_set(&mut set);
        assert!(set.capacity() < 1000, "capacity {}", set.capacity());
        assert_eq!(set.len(), 100);
    }
}
