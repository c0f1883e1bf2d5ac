//! An index of filtered subscribers by the values they filter on, so matching a block costs
//! about one hash lookup per output key, input key, asset and transaction, however many
//! subscribers there are (10,000 wallets with a key each cost the same as one).
//!
//! Each filtered subscriber is indexed on one dimension of its filter: public keys when it has
//! them (the most selective), else asset ids, else operations. A lookup yields candidates; the
//! subscriber's whole filter (every dimension, AND) is then checked on those transactions only.
//!
//! Adding or removing a subscriber costs one hash operation per value of its own filter,
//! however many other subscribers share those values (the ids under a value are a set), and
//! changing a filter touches only the values that changed: no request can hold the hub's lock
//! for longer than its own filter takes.

use std::collections::{HashMap, HashSet};

use planetmint_streams_model::CommittedBlock;

use crate::shrink::{release_unused, release_unused_set};
use crate::subscription::Filter;

/// Subscriber ids under each filter value.
type Postings = HashMap<String, HashSet<u64>>;

/// Subscriber ids by filter value.
#[derive(Debug, Default)]
pub struct FilterIndex {
    output_keys: Postings,
    input_keys: Postings,
    assets: Postings,
    operations: Postings,
}

fn add<'a>(map: &mut Postings, values: impl IntoIterator<Item = &'a String>, id: u64) {
    for value in values {
        map.entry(value.clone()).or_default().insert(id);
    }
}

fn remove<'a>(map: &mut Postings, values: impl IntoIterator<Item = &'a String>, id: u64) {
    for value in values {
        if let Some(ids) = map.get_mut(value) {
            ids.remove(&id);
            if ids.is_empty() {
                map.remove(value);
            } else {
                release_unused_set(ids);
            }
        }
    }
    release_unused(map);
}

/// The dimension a filter is indexed on, and its values there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dimension {
    /// Public keys in outputs, inputs, or both.
    Keys {
        outputs: bool,
        inputs: bool,
    },
    Assets,
    Operations,
    None,
}

fn dimension(filter: &Filter) -> (Dimension, &HashSet<String>) {
    if !filter.public_keys.is_empty() {
        let role = filter.key_role;
        (
            Dimension::Keys {
                outputs: role.outputs(),
                inputs: role.inputs(),
            },
            &filter.public_keys,
        )
    } else if !filter.asset_ids.is_empty() {
        (Dimension::Assets, &filter.asset_ids)
    } else if !filter.operations.is_empty() {
        (Dimension::Operations, &filter.operations)
    } else {
        (Dimension::None, &filter.operations)
    }
}

impl FilterIndex {
    /// The posting maps of a dimension.
    fn maps(&mut self, dimension: Dimension) -> Vec<&mut Postings> {
        match dimension {
            Dimension::Keys { outputs, inputs } => {
                let mut maps = Vec::with_capacity(2);
                if outputs {
                    maps.push(&mut self.output_keys);
                }
                if inputs {
                    maps.push(&mut self.input_keys);
                }
                maps
            }
            Dimension::Assets => vec![&mut self.assets],
            Dimension::Operations => vec![&mut self.operations],
            Dimension::None => Vec::new(),
        }
    }

    /// Indexes subscriber `id` with (non-empty) `filter`.
    pub fn insert(&mut self, id: u64, filter: &Filter) {
        let (dimension, values) = dimension(filter);
        for map in self.maps(dimension) {
            add(map, values, id);
        }
    }

    /// Removes subscriber `id`, indexed earlier with `filter`.
    pub fn remove(&mut self, id: u64, filter: &Filter) {
        let (dimension, values) = dimension(filter);
        for map in self.maps(dimension) {
            remove(map, values, id);
        }
    }

    /// Re-indexes subscriber `id` from `old` to `new`: when both are indexed on the same
    /// dimension, only the values that differ are touched.
    pub fn replace(&mut self, id: u64, old: &Filter, new: &Filter) {
        let (old_dimension, old_values) = dimension(old);
        let (new_dimension, new_values) = dimension(new);
        if old_dimension != new_dimension {
            self.remove(id, old);
            self.insert(id, new);
            return;
        }
        for map in self.maps(new_dimension) {
            remove(map, old_values.difference(new_values), id);
            add(map, new_values.difference(old_values), id);
        }
    }

    /// Subscribers that may want some of `block`'s transactions, each with the indices of
    /// those transactions (ascending, no repeats). Their full filters still need checking.
    pub fn candidates(&self, block: &CommittedBlock) -> HashMap<u64, Vec<usize>> {
        let mut found: HashMap<u64, Vec<usize>> = HashMap::new();
        let mut note = |ids: Option<&HashSet<u64>>, index: usize| {
            for &id in ids.into_iter().flatten() {
                let txs = found.entry(id).or_default();
                if txs.last() != Some(&index) {
                    txs.push(index);
                }
            }
        };
        for (index, tx) in block.transactions.iter().enumerate() {
            if !self.output_keys.is_empty() {
                for key in &tx.output_public_keys {
                    note(self.output_keys.get(key), index);
                }
            }
            if !self.input_keys.is_empty() {
                for key in &tx.input_owners {
                    note(self.input_keys.get(key), index);
                }
            }
            if !self.assets.is_empty() {
                for asset in tx.named_asset_ids() {
                    note(self.assets.get(asset), index);
                }
            }
            if !self.operations.is_empty() {
                note(self.operations.get(&tx.operation), index);
            }
        }
        found
    }

    /// Number of indexed values (for tests and metrics).
    pub fn len(&self) -> usize {
        self.output_keys.len() + self.input_keys.len() + self.assets.len() + self.operations.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscription::KeyRole;

    fn keys(values: &[&str], role: KeyRole) -> Filter {
        Filter {
            public_keys: values.iter().map(|v| (*v).to_owned()).collect(),
            key_role: role,
            ..Filter::default()
        }
    }

    fn outputs(index: &FilterIndex) -> &Postings {
        &index.output_keys
    }

    fn inputs(index: &FilterIndex) -> &Postings {
        &index.input_keys
    }

    fn assets(index: &FilterIndex) -> &Postings {
        &index.assets
    }

    fn ids(index: &FilterIndex, map: fn(&FilterIndex) -> &Postings, value: &str) -> Vec<u64> {
        let mut ids: Vec<u64> = map(index)
            .get(value)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn replacing_a_filter_moves_only_what_changed_and_leaves_nothing_behind() {
        let mut index = FilterIndex::default();
        let a = keys(&["k1", "k2"], KeyRole::Outputs);
        index.insert(1, &a);
        index.insert(2, &keys(&["k2"], KeyRole::Outputs));
        let b = keys(&["k2", "k3"], KeyRole::Outputs);
        index.replace(1, &a, &b);
        assert_eq!(ids(&index, outputs, "k1"), Vec::<u64>::new());
        assert_eq!(ids(&index, outputs, "k2"), vec![1, 2]);
        assert_eq!(ids(&index, outputs, "k3"), vec![1]);
        // Another dimension (inputs too, then assets): everything moves.
        let c = keys(&["k3"], KeyRole::Any);
        index.replace(1, &b, &c);
        assert_eq!(ids(&index, inputs, "k3"), vec![1]);
        let d = Filter {
            asset_ids: ["a".repeat(64)].into_iter().collect(),
            ..Filter::default()
        };
        index.replace(1, &c, &d);
        assert_eq!(ids(&index, assets, &"a".repeat(64)), vec![1]);
        index.remove(1, &d);
        index.remove(2, &keys(&["k2"], KeyRole::Outputs));
        assert!(index.is_empty());
    }
}
