//! Tarantool tuples written by Planetmint's storage code, as serde types.
//!
//! Tuples are MessagePack arrays in the field order of Planetmint's schema
//! (`docs/planetmint-tarantool.md`); serde reads a struct from such an array field by field.
//! Only the fields the stream needs are kept; the others are skipped without being
//! materialised. Trailing nullable fields may be missing from short tuples, so they default;
//! fields after the ones known here (a schema that grew) are skipped, so such rows stay readable.

use serde::de::IgnoredAny;
use serde::Deserialize;

/// A row of the `blocks` space: `[id, app_hash, height, transaction_ids, ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockTuple {
    /// Random UUID hex chosen by Planetmint (not a hash); unused by the stream.
    pub id: String,
    /// The block hash Planetmint reports (SHA3-256 hex, chained; `""` before the first transaction).
    pub app_hash: String,
    /// Block height (unique, increasing).
    pub height: u64,
    /// The block's transaction ids in block order: the order of the stream.
    pub transaction_ids: Vec<String>,
}

/// A row of `transactions` or `governance`:
/// `[id, operation, version, metadata, assets, inputs, scripts, ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionTuple {
    /// Transaction id (64 hex).
    pub id: String,
    /// `CREATE`, `TRANSFER`, `VALIDATOR_ELECTION`, `VOTE`, ...
    pub operation: String,
    /// `"2.0"` or `"3.0"` (empty when the tuple has no such field).
    pub version: String,
    /// The stored `assets` entries. Version 2.0 entries are kept whole (the stream shows them
    /// as they are); for other versions only an entry's `id` is kept.
    pub assets: Vec<AssetRef>,
    /// Inputs with their previous owners.
    pub inputs: Vec<InputRef>,
}

/// The version whose transactions carry a single asset object (Planetmint's `asset`), which
/// Planetmint stores as a one-entry `assets` array.
pub const SINGLE_ASSET_VERSION: &str = "2.0";

/// Reads the elements of a tuple one by one and skips whatever follows the fields it knows:
/// Planetmint's schema may grow trailing fields, and a row that has them is still readable.
struct Fields<'a, A> {
    seq: A,
    read: usize,
    what: &'a str,
}

impl<'de, 'a, A: serde::de::SeqAccess<'de>> Fields<'a, A> {
    fn new(seq: A, what: &'a str) -> Self {
        Self { seq, read: 0, what }
    }

    /// The next field, which the tuple must have.
    fn required<T: Deserialize<'de>>(&mut self, name: &str) -> Result<T, A::Error> {
        self.read += 1;
        match self.seq.next_element()? {
            Some(value) => Ok(value),
            None => Err(serde::de::Error::custom(format_args!(
                "{} has {} fields; field {} (`{name}`) is missing",
                self.what,
                self.read - 1,
                self.read
            ))),
        }
    }

    /// The next field, defaulted when the tuple is shorter or the field is nil.
    fn optional<T: Deserialize<'de> + Default>(&mut self) -> Result<T, A::Error> {
        self.read += 1;
        Ok(self
            .seq
            .next_element::<Option<T>>()?
            .flatten()
            .unwrap_or_default())
    }

    /// The next field through a seed, defaulted when the tuple is shorter.
    fn optional_seed<S>(&mut self, seed: S) -> Result<S::Value, A::Error>
    where
        S: serde::de::DeserializeSeed<'de>,
        S::Value: Default,
    {
        self.read += 1;
        Ok(self.seq.next_element_seed(seed)?.unwrap_or_default())
    }

    /// Skips the remaining fields, whatever they are.
    fn finish(mut self) -> Result<(), A::Error> {
        while self.seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

/// Implements `Deserialize` for a tuple type from a function reading its fields.
macro_rules! tuple_deserialize {
    ($ty:ty, $expecting:literal, |$fields:ident| $body:block) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl<'de> serde::de::Visitor<'de> for Visitor {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_seq<A: serde::de::SeqAccess<'de>>(
                        self,
                        seq: A,
                    ) -> Result<$ty, A::Error> {
                        let mut $fields = Fields::new(seq, $expecting);
                        let value = $body;
                        $fields.finish()?;
                        Ok(value)
                    }
                }
                deserializer.deserialize_seq(Visitor)
            }
        }
    };
}

tuple_deserialize!(BlockTuple, "a `blocks` tuple", |fields| {
    BlockTuple {
        id: fields.required("id")?,
        app_hash: fields.required("app_hash")?,
        height: fields.required("height")?,
        transaction_ids: fields.optional()?,
    }
});

tuple_deserialize!(TransactionTuple, "a transaction tuple", |fields| {
    let id: String = fields.required("id")?;
    let operation: String = fields.required("operation")?;
    let version: String = fields.optional()?;
    let _metadata: IgnoredAny = fields.optional_seed(SkipSeed)?;
    let whole = version == SINGLE_ASSET_VERSION;
    let assets = fields.optional_seed(AssetsSeed { whole })?;
    let inputs = fields.optional()?;
    TransactionTuple {
        id,
        operation,
        version,
        assets,
        inputs,
    }
});

/// Skips one field (present or not).
struct SkipSeed;

impl<'de> serde::de::DeserializeSeed<'de> for SkipSeed {
    type Value = IgnoredAny;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<IgnoredAny, D::Error> {
        IgnoredAny::deserialize(d)
    }
}

/// Reads `assets`: whole entries for version 2.0, only the `id` of each entry otherwise.
struct AssetsSeed {
    whole: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for AssetsSeed {
    type Value = Vec<AssetRef>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Vec<AssetRef>, D::Error> {
        if self.whole {
            let entries: Option<Vec<serde_json::Map<String, serde_json::Value>>> =
                Option::deserialize(d)?;
            Ok(entries
                .unwrap_or_default()
                .into_iter()
                .map(|entry| AssetRef {
                    id: entry
                        .get("id")
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_owned),
                    whole: Some(entry),
                })
                .collect())
        } else {
            #[derive(Deserialize)]
            struct IdOnly {
                #[serde(default)]
                id: Option<String>,
            }
            let entries: Option<Vec<IdOnly>> = Option::deserialize(d)?;
            Ok(entries
                .unwrap_or_default()
                .into_iter()
                .map(|entry| AssetRef {
                    id: entry.id,
                    whole: None,
                })
                .collect())
        }
    }
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
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AssetRef {
    /// The id of the transaction that created the asset, when this entry refers to one.
    pub id: Option<String>,
    /// The whole entry as stored, kept for version 2.0 transactions only (whose stream
    /// message shows the asset object itself).
    pub whole: Option<serde_json::Map<String, serde_json::Value>>,
}

/// One entry of a transaction's `inputs` (only the owners are read).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct InputRef {
    /// Public keys that owned the spent output (or signed the CREATE).
    #[serde(default)]
    pub owners_before: Vec<String>,
}

/// A row of `outputs`:
/// `[id, amount, public_keys, condition, output_index, transaction_id, ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputTuple {
    /// Random UUID hex; skipped.
    pub id: Skipped,
    /// Amount; skipped.
    pub amount: Skipped,
    /// Owners of the output (base58 Ed25519 keys).
    pub public_keys: Vec<String>,
    /// Crypto-condition; skipped.
    pub condition: Skipped,
    /// Position of the output in its transaction (`number` in the schema: may be a float).
    pub output_index: OutputIndex,
    /// The owning transaction.
    pub transaction_id: String,
}

tuple_deserialize!(OutputTuple, "an `outputs` tuple", |fields| {
    OutputTuple {
        id: fields.required("id")?,
        amount: fields.required("amount")?,
        public_keys: fields.optional()?,
        condition: fields.required("condition")?,
        output_index: fields.required("output_index")?,
        transaction_id: fields.required("transaction_id")?,
    }
});

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
