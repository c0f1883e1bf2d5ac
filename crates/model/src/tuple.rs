//! Tarantool tuples written by Planetmint's storage code, as serde types.
//!
//! Tuples are MessagePack arrays in the field order of Planetmint's schema
//! (`docs/planetmint-tarantool.md`); serde reads a struct from such an array field by field.
//! Only the fields the stream needs are kept; the others are skipped without being
//! materialised. Trailing nullable fields may be missing from short tuples, so they default.

use serde::de::IgnoredAny;
use serde::Deserialize;

/// A row of the `blocks` space: `[id, app_hash, height, transaction_ids]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BlockTuple {
    /// Random UUID hex chosen by Planetmint (not a hash); unused by the stream.
    pub id: String,
    /// The block hash Planetmint reports (SHA3-256 hex, chained; `""` before the first transaction).
    pub app_hash: String,
    /// Block height (unique, increasing).
    pub height: u64,
    /// The block's transaction ids in block order: the order of the stream.
    #[serde(default)]
    pub transaction_ids: Vec<String>,
}

/// A row of `transactions` or `governance`:
/// `[id, operation, version, metadata, assets, inputs, scripts]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TransactionTuple {
    /// Transaction id (64 hex).
    pub id: String,
    /// `CREATE`, `TRANSFER`, `VALIDATOR_ELECTION`, `VOTE`, ...
    pub operation: String,
    /// `"2.0"` or `"3.0"`; skipped.
    #[serde(default)]
    pub version: Skipped,
    /// Metadata CID or nil; skipped.
    #[serde(default)]
    pub metadata: Skipped,
    /// `{"data": CID}` on CREATE, `{"id": tx id}` when an asset is spent.
    #[serde(default)]
    pub assets: Vec<AssetRef>,
    /// Inputs with their previous owners.
    #[serde(default)]
    pub inputs: Vec<InputRef>,
    /// Trailing nullable map, absent from short tuples; skipped.
    #[serde(default)]
    pub scripts: Skipped,
}

/// A field the stream does not need: consumed without allocating.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped;

impl<'de> Deserialize<'de> for Skipped {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer).map(|_| Skipped)
    }
}

/// One entry of a transaction's `assets`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct AssetRef {
    /// The id of the transaction that created the asset, when this entry refers to one.
    #[serde(default)]
    pub id: Option<String>,
}

/// One entry of a transaction's `inputs` (only the owners are read).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct InputRef {
    /// Public keys that owned the spent output (or signed the CREATE).
    #[serde(default)]
    pub owners_before: Vec<String>,
}

/// A row of `outputs`: `[id, amount, public_keys, condition, output_index, transaction_id]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OutputTuple {
    /// Random UUID hex; skipped.
    pub id: Skipped,
    /// Amount; skipped.
    pub amount: Skipped,
    /// Owners of the output (base58 Ed25519 keys).
    #[serde(default)]
    pub public_keys: Vec<String>,
    /// Crypto-condition; skipped.
    pub condition: Skipped,
    /// Position of the output in its transaction (`number` in the schema: may be a float).
    pub output_index: OutputIndex,
    /// The owning transaction.
    pub transaction_id: String,
}

/// `output_index` is declared `number` in Planetmint's schema, so accept integers and floats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct OutputIndex(pub u64);

impl<'de> Deserialize<'de> for OutputIndex {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = OutputIndex;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a non-negative output index")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<OutputIndex, E> {
                Ok(OutputIndex(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<OutputIndex, E> {
                u64::try_from(v)
                    .map(OutputIndex)
                    .map_err(|_| E::custom("negative output index"))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<OutputIndex, E> {
                if v >= 0.0 && v.fract() == 0.0 && v < u64::MAX as f64 {
                    Ok(OutputIndex(v as u64))
                } else {
                    Err(E::custom("output index is not a whole non-negative number"))
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}
