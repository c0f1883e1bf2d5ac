//! The rows Planetmint 2.5.3's own storage code wrote (`tests/fixtures/planetmint-2.5.3`: CREATE
//! and TRANSFER; `tests/fixtures/planetmint-2.5.3-all-ops`: every operation kind and both
//! transaction versions), and what its event stream must carry for them.

use std::path::{Path, PathBuf};

use planetmint_streams_ingest::memory::BlockRows;
use rmpv::Value;

use crate::writer::{PlanetmintWriter, WriteError};

/// Where the fixture files are in this repository.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/planetmint-2.5.3")
}

/// Where the fixture with every operation kind is in this repository.
pub fn all_ops_fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/planetmint-2.5.3-all-ops")
}

/// The fixture data, as written by Planetmint.
#[derive(Debug, Clone)]
pub struct Planetmint253 {
    /// `blocks` rows by height (0 to 8).
    pub blocks: Vec<serde_json::Value>,
    /// `transactions` rows.
    pub transactions: Vec<serde_json::Value>,
    /// `governance` rows (elections and votes; empty in the CREATE/TRANSFER fixture).
    pub governance: Vec<serde_json::Value>,
    /// `outputs` rows.
    pub outputs: Vec<serde_json::Value>,
    /// What `valid_transactions` must carry (plus `operation`, `public_keys` for filters).
    pub expected_transactions: Vec<serde_json::Value>,
    /// What `valid_blocks` must carry.
    pub expected_blocks: Vec<serde_json::Value>,
}

fn read_jsonl(dir: &Path, name: &str) -> std::io::Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(dir.join(name))?;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{name}: {e}"))
            })
        })
        .collect()
}

fn to_tuple(json: &serde_json::Value) -> Value {
    rmpv::ext::to_value(json).unwrap_or(Value::Nil)
}

impl Planetmint253 {
    /// Loads the files from [`fixture_dir`].
    pub fn load() -> std::io::Result<Self> {
        Self::load_from(&fixture_dir())
    }

    /// Loads the files from [`all_ops_fixture_dir`].
    pub fn load_all_ops() -> std::io::Result<Self> {
        Self::load_from(&all_ops_fixture_dir())
    }

    /// Loads the files from `dir`.
    pub fn load_from(dir: &Path) -> std::io::Result<Self> {
        let governance = if dir.join("governance.jsonl").exists() {
            read_jsonl(dir, "governance.jsonl")?
        } else {
            Vec::new()
        };
        Ok(Self {
            blocks: read_jsonl(dir, "blocks.jsonl")?,
            transactions: read_jsonl(dir, "transactions.jsonl")?,
            governance,
            outputs: read_jsonl(dir, "outputs.jsonl")?,
            expected_transactions: read_jsonl(dir, "expected-transactions.jsonl")?,
            expected_blocks: read_jsonl(dir, "expected-blocks.jsonl")?,
        })
    }

    /// Heights of the fixture blocks.
    pub fn heights(&self) -> Vec<u64> {
        self.blocks.iter().filter_map(|b| b[2].as_u64()).collect()
    }

    /// The rows of the block at `height`, as Planetmint wrote them: the block row, its
    /// transactions' rows (from `transactions` and `governance`) and their outputs.
    pub fn block_rows(&self, height: u64) -> Result<BlockRows, WriteError> {
        let Some(block) = self.blocks.iter().find(|b| b[2].as_u64() == Some(height)) else {
            return Err(WriteError::BadRow(format!(
                "no fixture block at height {height}"
            )));
        };
        let ids: Vec<&str> = block[3]
            .as_array()
            .map(|ids| ids.iter().filter_map(|id| id.as_str()).collect())
            .unwrap_or_default();
        let transactions: Vec<Value> = ids
            .iter()
            .filter_map(|id| {
                self.transactions
                    .iter()
                    .chain(&self.governance)
                    .find(|tx| tx[0].as_str() == Some(id))
            })
            .map(to_tuple)
            .collect();
        let outputs: Vec<Value> = self
            .outputs
            .iter()
            .filter(|o| o[5].as_str().is_some_and(|tx| ids.contains(&tx)))
            .map(to_tuple)
            .collect();
        Ok(BlockRows {
            block: to_tuple(block),
            transactions,
            outputs,
        })
    }

    /// Writes the block at `height` as Planetmint did: its transactions and their outputs, then
    /// the block row.
    pub async fn write_block(
        &self,
        writer: &PlanetmintWriter,
        height: u64,
    ) -> Result<(), WriteError> {
        let rows = self.block_rows(height)?;
        writer
            .write_rows(&rows.transactions, &rows.outputs, &rows.block)
            .await
    }

    /// Expected `valid_transactions` messages (the four stream fields only) for `height`.
    pub fn expected_events(&self, height: u64) -> Vec<serde_json::Value> {
        self.expected_transactions
            .iter()
            .filter(|e| e["height"].as_u64() == Some(height))
            .map(|e| {
                serde_json::json!({
                    "transaction_id": e["transaction_id"],
                    "asset_id": e["asset_id"],
                    "asset_ids": e["asset_ids"],
                    "height": e["height"],
                })
            })
            .collect()
    }
}
