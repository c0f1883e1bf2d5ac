//! An index of filtered subscribers by the values they filter on, so matching a block costs
//! about one hash lookup per output key, input key, asset and transaction, however many
//! subscribers there are (10,000 wallets with a key each cost the same as one).
//!
//! Each filtered subscriber is indexed on one dimension of its filter: public keys when it has
//! them (the most selective), else asset ids, else operations. A lookup yields candidates; the
//! subscriber's whole filter (every dimension, AND) is then checked on those transactions only.

use std::collections::HashMap;

use planetmint_streams_model::CommittedBlock;

use crate::shrink::{release_unused, release_unused_vec};
use crate::subscription::Filter;

/// Subscriber ids by filter value.
#[derive(Debug, Default)]
pub struct FilterIndex {
    output_keys: HashMap<String, Vec<u64>>,
    input_keys: HashMap<String, Vec<u64>>,
    assets: HashMap<String, Vec<u64>>,
    operations: HashMap<String, Vec<u64>>,
}

fn add(map: &mut HashMap<String, Vec<u64>>, values: impl IntoIterator<Item = String>, id: u64) {
    for value in values {
        map.entry(value).or_default().push(id);
    }
}

fn remove(map: &mut HashMap<String, Vec<u64>>, values: impl IntoIterator<Item = String>, id: u64) {
    for value in values {
        if let Some(ids) = map.get_mut(&value) {
            ids.retain(|&other| other != id);
            if ids.is_empty() {
                map.remove(&value);
            } else {
                release_unused_vec(ids);
            }
        }
    }
    release_unused(map);
}

impl FilterIndex {
    /// Indexes subscriber `id` with (non-empty) `filter`.
    pub fn insert(&mut self, id: u64, filter: &Filter) {
        self.apply(id, filter, add);
    }

    /// Removes subscriber `id`, indexed earlier with `filter`.
    pub fn remove(&mut self, id: u64, filter: &Filter) {
        self.apply(id, filter, remove);
    }

    fn apply(
        &mut self,
        id: u64,
        filter: &Filter,
        op: fn(&mut HashMap<String, Vec<u64>>, std::collections::hash_set::IntoIter<String>, u64),
    ) {
        if !filter.public_keys.is_empty() {
            if filter.key_role.outputs() {
                op(
                    &mut self.output_keys,
                    filter.public_keys.clone().into_iter(),
                    id,
                );
            }
            if filter.key_role.inputs() {
                op(
                    &mut self.input_keys,
                    filter.public_keys.clone().into_iter(),
                    id,
                );
            }
        } else if !filter.asset_ids.is_empty() {
            op(&mut self.assets, filter.asset_ids.clone().into_iter(), id);
        } else if !filter.operations.is_empty() {
            op(
                &mut self.operations,
                filter.operations.clone().into_iter(),
                id,
            );
        }
    }

    /// Subscribers that may want some of `block`'s transactions, each with the indices of
    /// those transactions (ascending, no repeats). Their full filters still need checking.
    pub fn candidates(&self, block: &CommittedBlock) -> HashMap<u64, Vec<usize>> {
        let mut found: HashMap<u64, Vec<usize>> = HashMap::new();
        let mut note = |ids: Option<&Vec<u64>>, index: usize| {
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
