//! A committed block as the stream sees it, assembled from Planetmint's rows.
//!
//! The asset rules of the event stream are applied here, once per transaction, as Planetmint
//! 2.5.3's own code computes them (checked against `tests/fixtures/planetmint-2.5.3-all-ops`):
//! - `asset_id` (the documented field; Planetmint's server omits it), by planetmint-transactions'
//!   `read_out_asset_id` rule: operations that create an asset (CREATE, COMPOSE,
//!   VALIDATOR_ELECTION, CHAIN_MIGRATION_ELECTION) name their own id; the others (TRANSFER,
//!   VOTE, DECOMPOSE) name the asset they spend, the first asset entry that carries an `id`.
//! - `asset_ids` (what Planetmint's `Dispatcher.eventify_block` emits): for a version 2.0
//!   transaction the asset object itself (`{"data": ...}` or `{"id": ...}`); otherwise, for each
//!   asset entry its `id`, else the transaction's own id.

use std::collections::HashMap;

use crate::api::StoredRows;
use crate::tuple::{AssetRef, BlockTuple, OutputTuple, TransactionTuple, SINGLE_ASSET_VERSION};

/// Operations whose transaction creates an asset: their `asset_id` is their own id
/// (planetmint-transactions' `read_out_asset_id`).
pub const ASSET_CREATING_OPERATIONS: &[&str] = &[
    "CREATE",
    "COMPOSE",
    "VALIDATOR_ELECTION",
    "CHAIN_MIGRATION_ELECTION",
];

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
    /// The row Planetmint's `init_chain` stores (at genesis, and at the first height of a chain
    /// after a migration): an empty block Planetmint publishes no event for.
    pub chain_start: bool,
    /// The rows the block was read from, kept for `include=transaction` (rebuilt only when a
    /// subscriber asks); `None` for blocks that did not come from Planetmint's storage.
    pub rows: Option<StoredRows>,
    /// When Tarantool committed the block (its clock), when the source knows it: the start of
    /// the commit-to-send latency.
    pub committed_at: Option<std::time::SystemTime>,
}

/// One entry of the stream's `asset_ids`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssetIdsEntry {
    /// An asset id (transactions of version 3.0 and later).
    Id(String),
    /// The asset object itself, as stored (version 2.0: `{"data": ...}` or `{"id": ...}`).
    Object(serde_json::Map<String, serde_json::Value>),
}

impl AssetIdsEntry {
    /// The asset id this entry names: the id itself, or the `id` of an asset object (a
    /// version 2.0 object with only `data` names no id: the asset is the transaction itself).
    pub fn id(&self) -> Option<&str> {
        match self {
            AssetIdsEntry::Id(id) => Some(id),
            AssetIdsEntry::Object(object) => object.get("id").and_then(|id| id.as_str()),
        }
    }
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
    pub asset_ids: Vec<AssetIdsEntry>,
    /// Every public key of every output, in output order, without repeats.
    pub output_public_keys: Vec<String>,
    /// Every `owners_before` key of every input, without repeats.
    pub input_owners: Vec<String>,
}

impl CommittedTransaction {
    /// Every asset id this transaction names: its `asset_id`, then each id in `asset_ids`
    /// (a string entry, or the `id` of a version 2.0 asset object). `asset_id=` filters
    /// match on these.
    pub fn named_asset_ids(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.asset_id.as_str()).chain(
            self.asset_ids
                .iter()
                .filter_map(AssetIdsEntry::id)
                .filter(move |id| *id != self.asset_id),
        )
    }
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

/// `asset_id` for the stream: the transaction's own id for an operation that creates an asset
/// ([`ASSET_CREATING_OPERATIONS`]), otherwise the first asset entry's `id` (its own id when no
/// entry carries one).
pub fn asset_id(transaction_id: &str, operation: &str, assets: &[AssetRef]) -> String {
    if ASSET_CREATING_OPERATIONS.contains(&operation) {
        return transaction_id.to_owned();
    }
    assets
        .iter()
        .find_map(|asset| asset.id.clone())
        .unwrap_or_else(|| transaction_id.to_owned())
}

/// `asset_ids` for the stream, as Planetmint's `eventify_block` gives it: for version 2.0 the
/// asset object itself; otherwise each asset entry's `id`, else the transaction's own id.
pub fn asset_ids(transaction_id: &str, version: &str, assets: &[AssetRef]) -> Vec<AssetIdsEntry> {
    if version == SINGLE_ASSET_VERSION {
        if let Some(whole) = assets.first().and_then(|asset| asset.whole.clone()) {
            return vec![AssetIdsEntry::Object(whole)];
        }
    }
    assets
        .iter()
        .map(|asset| {
            AssetIdsEntry::Id(
                asset
                    .id
                    .clone()
                    .unwrap_or_else(|| transaction_id.to_owned()),
            )
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
            asset_ids: asset_ids(&row.id, &row.version, &row.assets),
            id: row.id,
            operation: row.operation,
            output_public_keys,
            input_owners,
        }
    }
}

impl CommittedBlock {
    /// A block that did not come from Planetmint's storage (generated chains, benchmarks,
    /// tests): its hash is its height in hex, no stored rows, no commit time.
    pub fn synthetic(height: u64, transactions: Vec<CommittedTransaction>) -> Self {
        CommittedBlock {
            height,
            hash: format!("{height:064x}"),
            transactions,
            chain_start: false,
            rows: None,
            committed_at: None,
        }
    }

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
            chain_start: false,
            rows: None,
            committed_at: None,
        })
    }

    /// Whether Planetmint publishes an event for this block (every block but the rows
    /// `init_chain` stores).
    pub fn is_announced(&self) -> bool {
        !self.chain_start
    }

    /// The block's transaction ids in block order.
    pub fn transaction_ids(&self) -> impl Iterator<Item = &str> {
        self.transactions.iter().map(|tx| tx.id.as_str())
    }
}

#[cfg(test)]
mod tests {
    //! The asset rules checked on every transaction Planetmint 2.5.3's own storage code wrote
    //! (tests/fixtures/planetmint-2.5.3 and tests/fixtures/planetmint-2.5.3-all-ops), against
    //! what its own `eventify_block` and `read_out_asset_id` give.
    use super::*;
    use crate::event::{block_event_json, transaction_event_json, BlockEvent, TransactionEvent};
    use serde_json::Value;

    const FIXTURE: &str = "planetmint-2.5.3";
    const ALL_OPS: &str = "planetmint-2.5.3-all-ops";

    fn fixture(set: &str, name: &str) -> Vec<Value> {
        let path = format!(
            "{}/../../tests/fixtures/{set}/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(_) if name == "governance.jsonl" => String::new(),
            Err(e) => panic!("{path}: {e}"),
        };
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

    fn fixture_blocks(set: &str) -> Vec<CommittedBlock> {
        let mut rows = fixture(set, "transactions.jsonl");
        rows.extend(fixture(set, "governance.jsonl"));
        let transactions: Vec<TransactionTuple> = rows.iter().map(from_msgpack).collect();
        let outputs: Vec<OutputTuple> = fixture(set, "outputs.jsonl")
            .iter()
            .map(from_msgpack)
            .collect();
        fixture(set, "blocks.jsonl")
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

    fn check_transactions(set: &str, count: usize) {
        let expected = fixture(set, "expected-transactions.jsonl");
        let blocks = fixture_blocks(set);
        let produced: Vec<(u64, &CommittedTransaction)> = blocks
            .iter()
            .flat_map(|b| b.transactions.iter().map(move |tx| (b.height, tx)))
            .collect();
        assert_eq!(produced.len(), expected.len());
        assert_eq!(produced.len(), count);
        for ((height, tx), want) in produced.iter().zip(&expected) {
            assert_eq!(tx.id, want["transaction_id"], "order of transactions");
            assert_eq!(*height, want["height"]);
            assert_eq!(tx.asset_id, want["asset_id"], "asset_id of {}", tx.id);
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

            // The serialized message carries exactly the four stream fields, each equal to
            // what Planetmint's code computes.
            let bytes = transaction_event_json(*height, tx);
            let json: Value = serde_json::from_slice(&bytes).expect("valid JSON");
            let object = json.as_object().expect("an object");
            assert_eq!(object.len(), 4);
            for field in ["transaction_id", "asset_id", "asset_ids", "height"] {
                assert_eq!(
                    json[field], want[field],
                    "{field} of {} ({})",
                    tx.id, want["operation"]
                );
            }
            let decoded: TransactionEvent<'_> = serde_json::from_slice(&bytes).expect("decodes");
            assert_eq!(decoded.transaction_id, tx.id);
            assert_eq!(decoded, TransactionEvent::of(*height, tx));
            // Whatever the version, the message's assets name the asset filters match on.
            assert!(tx.named_asset_ids().any(|id| id == tx.asset_id));
        }
    }

    fn check_blocks(set: &str) {
        let expected = fixture(set, "expected-blocks.jsonl");
        let blocks: Vec<CommittedBlock> = fixture_blocks(set)
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
    fn every_fixture_transaction_gets_planetmints_asset_fields() {
        check_transactions(FIXTURE, 36);
    }

    #[test]
    fn fixture_blocks_give_planetmints_valid_blocks_messages() {
        check_blocks(FIXTURE);
    }

    #[test]
    fn every_operation_kind_and_version_gets_planetmints_asset_fields() {
        check_transactions(ALL_OPS, 64);
        // Every kind of the issue is in there, v2.0 ones with their asset objects.
        let blocks = fixture_blocks(ALL_OPS);
        let kinds: std::collections::BTreeSet<(&str, bool)> = blocks
            .iter()
            .flat_map(|b| &b.transactions)
            .map(|tx| {
                let objects = tx
                    .asset_ids
                    .iter()
                    .any(|a| matches!(a, AssetIdsEntry::Object(_)));
                (tx.operation.as_str(), objects)
            })
            .collect();
        for kind in [
            ("CREATE", false),
            ("CREATE", true),
            ("TRANSFER", false),
            ("TRANSFER", true),
            ("COMPOSE", false),
            ("DECOMPOSE", false),
            ("VALIDATOR_ELECTION", false),
            ("CHAIN_MIGRATION_ELECTION", false),
            ("VOTE", false),
        ] {
            assert!(kinds.contains(&kind), "{kind:?} in the all-ops fixture");
        }
    }

    #[test]
    fn all_ops_blocks_give_planetmints_valid_blocks_messages() {
        check_blocks(ALL_OPS);
    }

    #[test]
    fn version_2_transfers_name_their_asset_for_filters() {
        let blocks = fixture_blocks(ALL_OPS);
        let transfer = blocks
            .iter()
            .flat_map(|b| &b.transactions)
            .find(|tx| {
                tx.operation == "TRANSFER"
                    && matches!(tx.asset_ids.first(), Some(AssetIdsEntry::Object(_)))
            })
            .expect("a v2.0 TRANSFER");
        let named: Vec<&str> = transfer.named_asset_ids().collect();
        assert_eq!(named, vec![transfer.asset_id.as_str()]);
        assert_eq!(transfer.asset_ids[0].id(), Some(transfer.asset_id.as_str()));
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

    fn id_ref(id: &str) -> AssetRef {
        AssetRef {
            id: Some(id.to_owned()),
            whole: None,
        }
    }

    #[test]
    fn elections_and_multi_asset_transactions_follow_the_rules() {
        let own = "e".repeat(64);
        let data_only = [AssetRef::default()];
        assert_eq!(asset_id(&own, "VALIDATOR_ELECTION", &data_only), own);
        assert_eq!(
            asset_ids(&own, "3.0", &data_only),
            vec![AssetIdsEntry::Id(own.clone())]
        );
        let composed = [
            AssetRef::default(),
            id_ref(&"1".repeat(64)),
            id_ref(&"2".repeat(64)),
        ];
        // COMPOSE creates a new asset: its own id (read_out_asset_id), not the first consumed.
        assert_eq!(asset_id(&own, "COMPOSE", &composed), own);
        assert_eq!(
            asset_ids(&own, "3.0", &composed),
            vec![
                AssetIdsEntry::Id(own.clone()),
                AssetIdsEntry::Id("1".repeat(64)),
                AssetIdsEntry::Id("2".repeat(64))
            ]
        );
        // DECOMPOSE: new assets first, then the composed one it spends.
        let decomposed = [
            AssetRef::default(),
            AssetRef::default(),
            id_ref(&"3".repeat(64)),
        ];
        assert_eq!(asset_id(&own, "DECOMPOSE", &decomposed), "3".repeat(64));
        assert_eq!(
            asset_id(&own, "VOTE", &[id_ref(&"4".repeat(64))]),
            "4".repeat(64)
        );
        assert_eq!(asset_id(&own, "CREATE", &composed), own);
        assert_eq!(asset_ids(&own, "3.0", &[]), Vec::<AssetIdsEntry>::new());
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

    #[test]
    fn rows_with_more_fields_than_known_decode_and_ignore_the_rest() {
        let grown = serde_json::json!([
            "a", "TRANSFER", "3.0", null, [{"id": "b"}], [{"owners_before": ["k"]}], null,
            "new field", {"nested": [1, 2]}
        ]);
        let tx: TransactionTuple = from_msgpack(&grown);
        assert_eq!(tx.assets[0].id.as_deref(), Some("b"));
        assert_eq!(tx.inputs[0].owners_before, vec!["k".to_owned()]);
        let block: BlockTuple = from_msgpack(&serde_json::json!(["u", "h", 3, ["a"], 42, "x"]));
        assert_eq!(block.transaction_ids, vec!["a".to_owned()]);
        let out: OutputTuple =
            from_msgpack(&serde_json::json!(["o", 1, ["k"], {}, 0, "t", true, [1]]));
        assert_eq!(out.transaction_id, "t");
    }

    #[test]
    fn rows_missing_a_field_or_of_the_wrong_type_are_refused_with_the_field() {
        let bytes = rmp_serde::to_vec(&serde_json::json!(["a"])).expect("encode");
        let err = rmp_serde::from_slice::<TransactionTuple>(&bytes).unwrap_err();
        assert!(err.to_string().contains("`operation`"), "{err}");
        let bytes = rmp_serde::to_vec(&serde_json::json!(["u", "h", "three", []])).expect("encode");
        assert!(rmp_serde::from_slice::<BlockTuple>(&bytes).is_err());
    }
}
