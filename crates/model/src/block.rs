//! A committed block as the stream sees it, assembled from Planetmint's rows.
//!
//! The asset rules of the event stream are applied here, once per transaction:
//! - `asset_id` (the documented field): a CREATE's own id; otherwise the `id` of the first
//!   asset it spends, or its own id when no asset entry carries one (elections).
//! - `asset_ids` (what Planetmint 2.x emits): for each asset entry its `id`, else the
//!   transaction's own id.

use std::collections::HashMap;

use crate::tuple::{AssetRef, BlockTuple, OutputTuple, TransactionTuple};

/// A block whose row exists in `blocks` (Planetmint's commit marker), with its transactions
/// in block order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedBlock {
    /// Block height.
    pub height: u64,
    /// The block hash Planetmint reports (`app_hash` of the block row).
    pub hash: String,
    /// Transactions in the order of the block row's `transaction_ids`.
    pub transactions: Vec<CommittedTransaction>,
}

/// What the stream needs of one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedTransaction {
    /// Transaction id (64 hex).
    pub id: String,
    /// Operation (`CREATE`, `TRANSFER`, ...).
    pub operation: String,
    /// The documented `asset_id` field.
    pub asset_id: String,
    /// Planetmint 2.x's `asset_ids` field.
    pub asset_ids: Vec<String>,
    /// Every public key of every output, in output order, without repeats.
    pub output_public_keys: Vec<String>,
    /// Every `owners_before` key of every input, without repeats.
    pub input_owners: Vec<String>,
}

/// Why a block could not be assembled from the rows read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssemblyError {
    /// The block row names a transaction found in neither `transactions` nor `governance`.
    #[error("block {height} lists transaction {transaction_id}, which is stored in neither `transactions` nor `governance`")]
    MissingTransaction {
        /// Height of the block.
        height: u64,
        /// The missing id.
        transaction_id: String,
    },
    /// A transaction row was returned for a block that does not list it.
    #[error("block {height}: transaction row {found} does not match the block's id {expected} at this position")]
    MismatchedTransaction {
        /// Height of the block.
        height: u64,
        /// The id the block row lists.
        expected: String,
        /// The id of the row that was read.
        found: String,
    },
}

/// `asset_id` for the stream: a CREATE's own id, otherwise the first asset entry's `id`.
pub fn asset_id(transaction_id: &str, operation: &str, assets: &[AssetRef]) -> String {
    if operation == "CREATE" {
        return transaction_id.to_owned();
    }
    assets
        .iter()
        .find_map(|asset| asset.id.clone())
        .unwrap_or_else(|| transaction_id.to_owned())
}

/// `asset_ids` for the stream: each asset entry's `id`, else the transaction's own id.
pub fn asset_ids(transaction_id: &str, assets: &[AssetRef]) -> Vec<String> {
    assets
        .iter()
        .map(|asset| {
            asset
                .id
                .clone()
                .unwrap_or_else(|| transaction_id.to_owned())
        })
        .collect()
}

fn push_unique(keys: &mut Vec<String>, key: &str) {
    if !keys.iter().any(|known| known == key) {
        keys.push(key.to_owned());
    }
}

impl CommittedTransaction {
    /// Builds the stream's view of a transaction from its row and its `outputs` rows
    /// (in any order: they are sorted by `output_index` here).
    pub fn from_rows<'a>(
        row: TransactionTuple,
        outputs: impl IntoIterator<Item = &'a OutputTuple>,
    ) -> Self {
        let mut outputs: Vec<&OutputTuple> = outputs.into_iter().collect();
        outputs.sort_by_key(|output| output.output_index);
        let mut output_public_keys = Vec::new();
        for output in outputs {
            for key in &output.public_keys {
                push_unique(&mut output_public_keys, key);
            }
        }
        let mut input_owners = Vec::new();
        for input in &row.inputs {
            for key in &input.owners_before {
                push_unique(&mut input_owners, key);
            }
        }
        Self {
            asset_id: asset_id(&row.id, &row.operation, &row.assets),
            asset_ids: asset_ids(&row.id, &row.assets),
            id: row.id,
            operation: row.operation,
            output_public_keys,
            input_owners,
        }
    }
}

impl CommittedBlock {
    /// Assembles a block from its row, the rows of its transactions (one per id of
    /// `block.transaction_ids`, in that order; `None` where no row was found) and the
    /// `outputs` rows of those transactions (any order).
    pub fn assemble(
        block: BlockTuple,
        transactions: Vec<Option<TransactionTuple>>,
        outputs: &[OutputTuple],
    ) -> Result<Self, AssemblyError> {
        let mut outputs_by_tx: HashMap<&str, Vec<&OutputTuple>> = HashMap::new();
        for output in outputs {
            outputs_by_tx
                .entry(output.transaction_id.as_str())
                .or_default()
                .push(output);
        }
        let mut rows = transactions.into_iter();
        let mut assembled = Vec::with_capacity(block.transaction_ids.len());
        for expected in &block.transaction_ids {
            let row = match rows.next().flatten() {
                Some(row) => row,
                None => {
                    return Err(AssemblyError::MissingTransaction {
                        height: block.height,
                        transaction_id: expected.clone(),
                    })
                }
            };
            if &row.id != expected {
                return Err(AssemblyError::MismatchedTransaction {
                    height: block.height,
                    expected: expected.clone(),
                    found: row.id,
                });
            }
            let tx_outputs = outputs_by_tx.remove(expected.as_str()).unwrap_or_default();
            assembled.push(CommittedTransaction::from_rows(row, tx_outputs));
        }
        Ok(Self {
            height: block.height,
            hash: block.app_hash,
            transactions: assembled,
        })
    }

    /// The block's transaction ids in block order.
    pub fn transaction_ids(&self) -> impl Iterator<Item = &str> {
        self.transactions.iter().map(|tx| tx.id.as_str())
    }
}

#[cfg(test)]
mod tests {
    //! The asset rules checked on every transaction Planetmint 2.5.3's own storage code wrote
    //! (tests/fixtures/planetmint-2.5.3), against what its own `eventify_block` emitted.
    use super::*;
    use crate::event::{block_event_json, transaction_event_json, BlockEvent, TransactionEvent};
    use serde_json::Value;

    fn fixture(name: &str) -> Vec<Value> {
        let path = format!(
            "{}/../../tests/fixtures/planetmint-2.5.3/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).expect("fixture line is JSON"))
            .collect()
    }

    /// Decodes a tuple the way the ingest does: from MessagePack bytes.
    fn from_msgpack<T: serde::de::DeserializeOwned>(value: &Value) -> T {
        let bytes = rmp_serde::to_vec(value).expect("encode fixture tuple");
        rmp_serde::from_slice(&bytes).expect("decode fixture tuple")
    }

    fn fixture_blocks() -> Vec<CommittedBlock> {
        let transactions: Vec<TransactionTuple> = fixture("transactions.jsonl")
            .iter()
            .map(from_msgpack)
            .collect();
        let outputs: Vec<OutputTuple> = fixture("outputs.jsonl").iter().map(from_msgpack).collect();
        fixture("blocks.jsonl")
            .iter()
            .map(from_msgpack::<BlockTuple>)
            .map(|block| {
                let rows = block
                    .transaction_ids
                    .iter()
                    .map(|id| transactions.iter().find(|tx| &tx.id == id).cloned())
                    .collect();
                CommittedBlock::assemble(block, rows, &outputs).expect("fixture block assembles")
            })
            .collect()
    }

    #[test]
    fn every_fixture_transaction_gets_planetmints_asset_fields() {
        let expected = fixture("expected-transactions.jsonl");
        let blocks = fixture_blocks();
        let produced: Vec<(u64, &CommittedTransaction)> = blocks
            .iter()
            .flat_map(|b| b.transactions.iter().map(move |tx| (b.height, tx)))
            .collect();
        assert_eq!(produced.len(), expected.len());
        assert_eq!(produced.len(), 36);
        for ((height, tx), want) in produced.iter().zip(&expected) {
            assert_eq!(tx.id, want["transaction_id"], "order of transactions");
            assert_eq!(*height, want["height"]);
            assert_eq!(tx.asset_id, want["asset_id"], "asset_id of {}", tx.id);
            let want_ids: Vec<&str> = want["asset_ids"]
                .as_array()
                .expect("asset_ids is an array")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert_eq!(tx.asset_ids, want_ids, "asset_ids of {}", tx.id);
            assert_eq!(tx.operation, want["operation"]);
            let mut keys = tx.output_public_keys.clone();
            keys.sort();
            let want_keys: Vec<&str> = want["public_keys"]
                .as_array()
                .expect("public_keys is an array")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert_eq!(keys, want_keys, "output keys of {}", tx.id);

            // The serialized message carries exactly the four stream fields.
            let bytes = transaction_event_json(*height, tx);
            let json: Value = serde_json::from_slice(&bytes).expect("valid JSON");
            let object = json.as_object().expect("an object");
            assert_eq!(object.len(), 4);
            for field in ["transaction_id", "asset_id", "asset_ids", "height"] {
                assert_eq!(json[field], want[field], "{field} of {}", tx.id);
            }
            let decoded: TransactionEvent<'_> = serde_json::from_slice(&bytes).expect("decodes");
            assert_eq!(decoded.transaction_id, tx.id);
        }
    }

    #[test]
    fn fixture_blocks_give_planetmints_valid_blocks_messages() {
        let expected = fixture("expected-blocks.jsonl");
        let blocks: Vec<CommittedBlock> = fixture_blocks()
            .into_iter()
            .filter(|b| b.height > 0)
            .collect();
        assert_eq!(blocks.len(), expected.len());
        for (block, want) in blocks.iter().zip(&expected) {
            let bytes = block_event_json(block);
            let json: Value = serde_json::from_slice(&bytes).expect("JSON");
            assert_eq!(&json, want);
            let decoded: BlockEvent<'_> = serde_json::from_slice(&bytes).expect("decodes");
            assert_eq!(decoded.height, block.height);
        }
    }

    #[test]
    fn a_block_row_without_its_transaction_is_refused() {
        let block = BlockTuple {
            id: "x".into(),
            app_hash: "h".into(),
            height: 7,
            transaction_ids: vec!["a".repeat(64)],
        };
        let err = CommittedBlock::assemble(block, vec![None], &[]).unwrap_err();
        assert_eq!(
            err,
            AssemblyError::MissingTransaction {
                height: 7,
                transaction_id: "a".repeat(64)
            }
        );
    }

    #[test]
    fn elections_and_multi_asset_transactions_follow_the_rules() {
        let own = "e".repeat(64);
        let data_only = [AssetRef { id: None }];
        assert_eq!(asset_id(&own, "VALIDATOR_ELECTION", &data_only), own);
        assert_eq!(asset_ids(&own, &data_only), vec![own.clone()]);
        let spent = [
            AssetRef {
                id: Some("1".repeat(64)),
            },
            AssetRef {
                id: Some("2".repeat(64)),
            },
        ];
        assert_eq!(asset_id(&own, "COMPOSE", &spent), "1".repeat(64));
        assert_eq!(
            asset_ids(&own, &spent),
            vec!["1".repeat(64), "2".repeat(64)]
        );
        assert_eq!(asset_id(&own, "CREATE", &spent), own);
        assert_eq!(asset_ids(&own, &[]), Vec::<String>::new());
    }

    #[test]
    fn short_tuples_without_trailing_scripts_decode() {
        let short = serde_json::json!(["a", "CREATE", "3.0", null, [{"data": "Qm"}], []]);
        let tx: TransactionTuple = from_msgpack(&short);
        assert_eq!(tx.operation, "CREATE");
        let float_index = serde_json::json!(["o", 1, ["k"], {}, 2.0, "t"]);
        let out: OutputTuple = from_msgpack(&float_index);
        assert_eq!(out.output_index.0, 2);
    }
}
