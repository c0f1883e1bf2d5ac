//! An in-memory [`BlockSource`] for tests of the follower, the broadcaster and the whole node
//! (`node::start_with_source`): everything downstream of Tarantool, without a database.
//!
//! Blocks go in either already assembled ([`MemorySource::commit`]) or as the rows Planetmint
//! writes to Tarantool ([`MemorySource::commit_rows`] with [`BlockRows`]): those are decoded
//! by the Tarantool source's own decoder, so a block committed from rows is what the Tarantool
//! source would have yielded for the same rows, including the rows `include=transaction`
//! rebuilds transactions from.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use planetmint_streams_model::tuple::BlockTuple;
use planetmint_streams_model::{
    BlockBatch, BlockSource, CommittedBlock, HeightBounds, SourceError,
};
use rmpv::Value;
use tokio::sync::Notify;

use crate::tarantool::source::decode_blocks_reply;

/// One block as Planetmint's rows: what its commit leaves in Tarantool.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockRows {
    /// The `blocks` row: `[id, app_hash, height, transaction_ids, ...]`.
    pub block: Value,
    /// The block's rows of `transactions` and `governance`, in any order (matched to the
    /// block row's `transaction_ids` by their first field, the id).
    pub transactions: Vec<Value>,
    /// The `outputs` rows of those transactions, in any order.
    pub outputs: Vec<Value>,
}

/// Blocks kept in a map; can be made unavailable to simulate an outage.
#[derive(Debug, Default)]
pub struct MemorySource {
    state: Mutex<State>,
    committed: Notify,
}

#[derive(Debug, Default)]
struct State {
    blocks: BTreeMap<u64, CommittedBlock>,
    unavailable: bool,
}

impl MemorySource {
    /// An empty, available source.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Commits a block (wakes waiting readers).
    pub fn commit(&self, block: CommittedBlock) {
        self.state().blocks.insert(block.height, block);
        self.committed.notify_waiters();
    }

    /// Commits a block given as Planetmint's rows, assembled the way the Tarantool source
    /// assembles what it reads (its decoder, the rows kept for `include=transaction`), with
    /// the commit time set to now; returns its height. A block row naming a transaction with
    /// no row here is refused as the Tarantool source refuses it (an unusable row), and
    /// nothing is committed. No block committed this way starts a chain (Planetmint's
    /// `init_chain` rows come from Tarantool's `abci_chains`, which this source has not).
    pub fn commit_rows(&self, rows: &BlockRows) -> Result<u64, SourceError> {
        let block = decode_rows(rows)?;
        let height = block.height;
        self.commit(block);
        Ok(height)
    }

    /// Makes every request fail as if the database were down (or back up).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.state().unavailable = unavailable;
        self.committed.notify_waiters();
    }

    /// Forgets blocks below `height` (history no longer available).
    pub fn prune_below(&self, height: u64) {
        let mut state = self.state();
        state.blocks = state.blocks.split_off(&height);
    }

    fn collect(&self, after: u64, upto: u64, max_blocks: usize) -> Result<BlockBatch, SourceError> {
        let state = self.state();
        if state.unavailable {
            return Err(SourceError::unavailable("memory source switched off"));
        }
        let head = state.blocks.keys().next_back().copied().unwrap_or(0);
        let blocks = state
            .blocks
            .range(after.saturating_add(1)..)
            .take_while(|(height, _)| **height <= upto)
            .take(max_blocks)
            .map(|(_, block)| block.clone())
            .collect();
        Ok(BlockBatch { head, blocks })
    }
}

/// The block of `rows`, through the decoder of the Tarantool source's blocks reply: a reply of
/// one record `[block_row, [transaction_row | nil, ...], [output_row, ...], [], false,
/// commit_time]`, as `streams.lua` returns it.
fn decode_rows(rows: &BlockRows) -> Result<CommittedBlock, SourceError> {
    let row: BlockTuple = rmpv::ext::from_value(rows.block.clone())
        .map_err(|e| SourceError::corrupt("not a `blocks` row").because(e))?;
    let id_of = |tx: &Value| -> Option<String> {
        match tx {
            Value::Array(fields) => fields.first().and_then(Value::as_str).map(str::to_owned),
            _ => None,
        }
    };
    let transactions: Vec<Value> = row
        .transaction_ids
        .iter()
        .map(|id| {
            rows.transactions
                .iter()
                .find(|tx| id_of(tx).as_deref() == Some(id))
                .cloned()
                .unwrap_or(Value::Nil)
        })
        .collect();
    let outputs: Vec<Value> = rows
        .outputs
        .iter()
        .filter(|output| match output {
            Value::Array(fields) => fields
                .get(5)
                .and_then(Value::as_str)
                .is_some_and(|tx| row.transaction_ids.iter().any(|id| id == tx)),
            _ => false,
        })
        .cloned()
        .collect();
    let committed_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs_f64())
        .unwrap_or_default();
    let record = Value::Array(vec![
        rows.block.clone(),
        Value::Array(transactions),
        Value::Array(outputs),
        Value::Array(Vec::new()),
        Value::Boolean(false),
        Value::F64(committed_at),
    ]);
    let reply = Value::Array(vec![Value::from(row.height), Value::Array(vec![record])]);
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &reply)
        .map_err(|e| SourceError::corrupt("unencodable rows").because(e))?;
    let mut batch = decode_blocks_reply(Bytes::from(bytes))?;
    batch
        .blocks
        .pop()
        .ok_or_else(|| SourceError::corrupt("the rows decoded to no block"))
}

#[async_trait]
impl BlockSource for MemorySource {
    async fn next_blocks(
        &self,
        after: u64,
        max_blocks: usize,
        wait: Duration,
    ) -> Result<BlockBatch, SourceError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let committed = self.committed.notified();
            let batch = self.collect(after, u64::MAX, max_blocks)?;
            if !batch.blocks.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(batch);
            }
            if tokio::time::timeout_at(deadline, committed).await.is_err() {
                return self.collect(after, u64::MAX, max_blocks);
            }
        }
    }

    async fn blocks_between(
        &self,
        after: u64,
        upto: u64,
        max_blocks: usize,
    ) -> Result<Vec<CommittedBlock>, SourceError> {
        Ok(self.collect(after, upto, max_blocks)?.blocks)
    }

    async fn bounds(&self) -> Result<Option<HeightBounds>, SourceError> {
        let state = self.state();
        if state.unavailable {
            return Err(SourceError::unavailable("memory source switched off"));
        }
        let lowest = state.blocks.keys().next().copied();
        let highest = state.blocks.keys().next_back().copied();
        Ok(lowest
            .zip(highest)
            .map(|(lowest, highest)| HeightBounds { lowest, highest }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx_row(id: &str, operation: &str, asset: Value, owners_before: &str) -> Value {
        Value::Array(vec![
            Value::from(id),
            Value::from(operation),
            Value::from("3.0"),
            Value::Nil,
            Value::Array(vec![asset]),
            Value::Array(vec![Value::Map(vec![
                (
                    Value::from("owners_before"),
                    Value::Array(vec![Value::from(owners_before)]),
                ),
                (Value::from("fulfills"), Value::Nil),
                (Value::from("fulfillment"), Value::from("ff")),
            ])]),
            Value::Nil,
        ])
    }

    fn output_row(tx: &str, index: u64, key: &str) -> Value {
        Value::Array(vec![
            Value::from(format!("o{tx}{index}")),
            Value::from(1),
            Value::Array(vec![Value::from(key)]),
            Value::Map(vec![
                (Value::from("uri"), Value::from("ni:///sha-256;x")),
                (
                    Value::from("details"),
                    Value::Map(vec![
                        (Value::from("type"), Value::from("ed25519-sha-256")),
                        (Value::from("public_key"), Value::from(key)),
                    ]),
                ),
            ]),
            Value::from(index),
            Value::from(tx),
        ])
    }

    fn rows() -> BlockRows {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let data = Value::Map(vec![(Value::from("data"), Value::from("Qm"))]);
        let spends = Value::Map(vec![(Value::from("id"), Value::from(a.as_str()))]);
        BlockRows {
            block: Value::Array(vec![
                Value::from("u"),
                Value::from("hash-7"),
                Value::from(7),
                Value::Array(vec![Value::from(a.as_str()), Value::from(b.as_str())]),
            ]),
            // In another order than the block's: matched by id.
            transactions: vec![
                tx_row(&b, "TRANSFER", spends, "k2"),
                tx_row(&a, "CREATE", data, "k1"),
            ],
            outputs: vec![
                output_row(&b, 0, "k3"),
                output_row(&a, 1, "k2"),
                output_row(&a, 0, "k1"),
                output_row(&"c".repeat(64), 0, "not this block's"),
            ],
        }
    }

    #[tokio::test]
    async fn rows_are_assembled_in_block_order_and_kept_for_include() {
        let source = MemorySource::new();
        assert_eq!(source.commit_rows(&rows()).expect("commits"), 7);
        let batch = source
            .next_blocks(0, 10, Duration::ZERO)
            .await
            .expect("read");
        assert_eq!(batch.head, 7);
        let block = &batch.blocks[0];
        assert_eq!((block.height, block.hash.as_str()), (7, "hash-7"));
        let ids: Vec<&str> = block.transaction_ids().collect();
        assert_eq!(ids, ["a".repeat(64), "b".repeat(64)]);
        assert_eq!(block.transactions[0].output_public_keys, ["k1", "k2"]);
        assert_eq!(block.transactions[1].asset_id, "a".repeat(64));
        assert_eq!(block.transactions[1].input_owners, ["k2"]);
        assert!(
            block.committed_at.is_some(),
            "a commit time, as Tarantool's"
        );
        assert!(!block.chain_start);
        let rebuilt = block
            .rows
            .as_ref()
            .expect("rows kept")
            .api_transactions()
            .expect("a block record");
        assert_eq!(rebuilt.len(), 2);
        let first = rebuilt[0].as_ref().expect("rebuilt");
        assert_eq!(first["id"], "a".repeat(64));
        assert_eq!(first["outputs"].as_array().map(Vec::len), Some(2));
    }

    #[tokio::test]
    async fn a_block_row_without_its_transaction_row_is_refused() {
        let source = MemorySource::new();
        let mut rows = rows();
        rows.transactions.pop();
        let err = source.commit_rows(&rows).expect_err("refused");
        assert!(err.to_string().contains(&"a".repeat(64)), "{err}");
        assert_eq!(
            source.bounds().await.expect("bounds"),
            None,
            "nothing committed"
        );
    }
}
