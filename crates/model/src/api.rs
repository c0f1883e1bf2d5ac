//! A transaction as Planetmint 2.5.3's `GET /api/v1/transactions/<id>` returns it, rebuilt from
//! the rows its storage code wrote (for `include=transaction`, issue 19).
//!
//! What Planetmint 2.5.3 does (read in its tag `v2.5.3`: `backend/tarantool/sync_io/query.py`
//! `get_complete_transactions_by_ids`, `backend/models/{dbtransaction,input,output,asset,
//! metadata,script}.py`, and `web/views/transactions.py`, which returns `DbTransaction.to_dict()`
//! as it is):
//! - the row comes from `transactions`, else `governance`: `[id, operation, version, metadata,
//!   assets, inputs, script]`; the outputs are the `outputs` rows of the id, sorted by
//!   `output_index`;
//! - `inputs`: `{"owners_before", "fulfills", "fulfillment"}` per stored input, `fulfills` being
//!   `{"transaction_id", "output_index"}` or null when the stored one is empty;
//! - `outputs`: `{"public_keys", "condition": {"uri", "details"}, "amount"}` with the amount as a
//!   decimal string; `details` is rebuilt: a key without `subconditions` becomes
//!   `{"type", "public_key"}`, a threshold `{"type", "threshold", "subconditions"}` (each
//!   subcondition the same way), then null members of the outer `details` only are dropped;
//! - `assets`: each stored object entry as `{"data": ...}` when it has `data`, else
//!   `{"id": ...}`; for version `"2.0"` the FIRST entry alone, as an object, still under the key
//!   `assets` (not the `asset` of the version 2.0 wire format);
//! - `metadata` as stored, `version`, `id`; `script` only when stored (as `{"script": ...}`).
//!
//! Where Planetmint's own code would raise (a missing member it indexes), this returns an
//! error rather than a guess: that API answers 500 for such a row.
//!
//! The ingest keeps each block's rows as Tarantool returned them ([`StoredRows`]: MessagePack,
//! shared with the reply they came in), so the rebuild costs nothing until a subscriber asks
//! for whole transactions, and then happens once per block.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Map, Value};
use sha3::{Digest, Sha3_256};

/// A row from which Planetmint's API could not build the transaction either.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transaction {id}: {what}")]
pub struct ApiShapeError {
    /// The transaction (as far as it could be read).
    pub id: String,
    /// What is missing or unusable.
    pub what: RowProblem,
}

/// What makes a stored row unusable for the API's document (where Planetmint's own code
/// would raise).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowProblem {
    /// The row is shorter than the field.
    #[error("the row has no {name} (field {position})")]
    MissingField {
        /// The field's name.
        name: &'static str,
        /// Its position in the row, from 1.
        position: usize,
    },
    /// An object of the row lacks a member Planetmint reads.
    #[error("{what} has no {name}")]
    MissingMember {
        /// What the object is.
        what: &'static str,
        /// The member.
        name: &'static str,
    },
    /// A value of the wrong shape.
    #[error("{0}")]
    Shape(&'static str),
}

fn field<'a>(row: &'a [Value], index: usize, name: &'static str) -> Result<&'a Value, RowProblem> {
    row.get(index).ok_or(RowProblem::MissingField {
        name,
        position: index + 1,
    })
}

fn member<'a>(
    object: &'a Value,
    name: &'static str,
    what: &'static str,
) -> Result<&'a Value, RowProblem> {
    object
        .get(name)
        .ok_or(RowProblem::MissingMember { what, name })
}

/// Python's truthiness of a JSON value (what `if value:` decides in Planetmint).
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn input(stored: &Value) -> Result<Value, RowProblem> {
    let fulfills = member(stored, "fulfills", "an input")?;
    let fulfills = if truthy(fulfills) {
        let mut out = Map::new();
        for name in ["transaction_id", "output_index"] {
            out.insert(
                name.to_owned(),
                member(fulfills, name, "an input's fulfills")?.clone(),
            );
        }
        Value::Object(out)
    } else {
        Value::Null
    };
    let mut out = Map::new();
    out.insert(
        "owners_before".to_owned(),
        member(stored, "owners_before", "an input")?.clone(),
    );
    out.insert("fulfills".to_owned(), fulfills);
    out.insert(
        "fulfillment".to_owned(),
        member(stored, "fulfillment", "an input")?.clone(),
    );
    Ok(Value::Object(out))
}

/// `ConditionDetails.from_dict(...).to_dict()`: absent members read as null.
fn details(stored: &Value) -> Result<Map<String, Value>, RowProblem> {
    if !stored.is_object() {
        return Err(RowProblem::Shape(
            "an output's condition details are not an object",
        ));
    }
    let get = |name: &str| stored.get(name).cloned().unwrap_or(Value::Null);
    let mut out = Map::new();
    out.insert("type".to_owned(), get("type"));
    match stored.get("subconditions") {
        None => {
            out.insert("public_key".to_owned(), get("public_key"));
        }
        Some(Value::Array(subconditions)) => {
            out.insert("threshold".to_owned(), get("threshold"));
            let subconditions = subconditions
                .iter()
                .map(|s| details(s).map(Value::Object))
                .collect::<Result<Vec<_>, _>>()?;
            out.insert("subconditions".to_owned(), Value::Array(subconditions));
        }
        Some(_) => {
            return Err(RowProblem::Shape(
                "an output's subconditions are not a list",
            ))
        }
    }
    Ok(out)
}

/// `str(amount)` of the stored integer (or string).
fn amount(stored: &Value) -> Result<Value, RowProblem> {
    match stored {
        Value::Number(n) if n.is_u64() || n.is_i64() => Ok(Value::String(n.to_string())),
        Value::String(s) => Ok(Value::String(s.clone())),
        _ => Err(RowProblem::Shape("an output's amount is not an integer")),
    }
}

fn output(row: &[Value]) -> Result<Value, RowProblem> {
    let condition = field(row, 3, "condition")?;
    let mut details = details(condition.get("details").unwrap_or(&Value::Null))?;
    // `remove_generated_or_none_output_keys`: null members of the outer details only.
    details.retain(|_, v| !v.is_null());
    let mut condition_out = Map::new();
    condition_out.insert(
        "uri".to_owned(),
        condition.get("uri").cloned().unwrap_or(Value::Null),
    );
    condition_out.insert("details".to_owned(), Value::Object(details));
    let mut out = Map::new();
    out.insert(
        "public_keys".to_owned(),
        field(row, 2, "public_keys")?.clone(),
    );
    out.insert("condition".to_owned(), Value::Object(condition_out));
    out.insert("amount".to_owned(), amount(field(row, 1, "amount")?)?);
    Ok(Value::Object(out))
}

fn asset(stored: &Map<String, Value>) -> Result<Value, RowProblem> {
    let key = if stored.contains_key("data") {
        "data"
    } else {
        "id"
    };
    let value = stored
        .get(key)
        .ok_or(RowProblem::Shape("an asset has neither data nor id"))?;
    let mut out = Map::new();
    out.insert(key.to_owned(), value.clone());
    Ok(Value::Object(out))
}

/// The transaction of row `row` (`transactions` or `governance`) with its `outputs` rows (in
/// any order), as Planetmint 2.5.3's API returns it (member order aside).
pub fn api_transaction(row: &[Value], outputs: &[&[Value]]) -> Result<Value, ApiShapeError> {
    let id = row.first().and_then(Value::as_str).unwrap_or_default();
    build(row, outputs).map_err(|what| ApiShapeError {
        id: id.to_owned(),
        what,
    })
}

fn build(row: &[Value], outputs: &[&[Value]]) -> Result<Value, RowProblem> {
    let version = field(row, 2, "version")?;
    let assets: Vec<Value> = match field(row, 4, "assets")? {
        Value::Array(entries) => entries
            .iter()
            .filter_map(Value::as_object)
            .map(asset)
            .collect::<Result<_, _>>()?,
        _ => return Err(RowProblem::Shape("assets is not a list")),
    };
    let assets = if version == "2.0" {
        assets.into_iter().next().ok_or(RowProblem::Shape(
            "a version 2.0 transaction without an asset",
        ))?
    } else {
        Value::Array(assets)
    };
    let inputs = match field(row, 5, "inputs")? {
        Value::Array(entries) => entries.iter().map(input).collect::<Result<Vec<_>, _>>()?,
        _ => return Err(RowProblem::Shape("inputs is not a list")),
    };
    let mut sorted: Vec<&[Value]> = outputs.to_vec();
    let mut keyed = Vec::with_capacity(sorted.len());
    for output in sorted.drain(..) {
        let index = field(output, 4, "output_index")?
            .as_f64()
            .ok_or(RowProblem::Shape("an output_index is not a number"))?;
        keyed.push((index, output));
    }
    // Python's sorted(): stable.
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let outputs = keyed
        .into_iter()
        .map(|(_, o)| output(o))
        .collect::<Result<Vec<_>, _>>()?;

    let mut tx = Map::new();
    tx.insert("inputs".to_owned(), Value::Array(inputs));
    tx.insert("outputs".to_owned(), Value::Array(outputs));
    tx.insert("operation".to_owned(), field(row, 1, "operation")?.clone());
    tx.insert("metadata".to_owned(), field(row, 3, "metadata")?.clone());
    tx.insert("assets".to_owned(), assets);
    tx.insert("version".to_owned(), version.clone());
    tx.insert("id".to_owned(), field(row, 0, "id")?.clone());
    match field(row, 6, "script")? {
        Value::Null => {}
        script => {
            let mut out = Map::new();
            out.insert(
                "script".to_owned(),
                member(script, "script", "the script")?.clone(),
            );
            tx.insert("script".to_owned(), Value::Object(out));
        }
    }
    Ok(Value::Object(tx))
}

/// The rows one block was assembled from, as Tarantool returned them: one MessagePack array
/// `[block_row, [transaction_row | nil, ...], [output_row, ...], ...]` (further elements are
/// ignored). The bytes are a slice of the reply they came in, so keeping them copies nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredRows(Bytes);

impl std::fmt::Debug for StoredRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoredRows({} bytes)", self.0.len())
    }
}

/// Stored rows that do not have the shape of a block record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored rows of a block: {0}")]
pub struct StoredRowsError(String);

impl StoredRows {
    /// Rows of one block record, MessagePack-encoded.
    pub fn new(record: Bytes) -> Self {
        Self(record)
    }

    /// Size of the stored rows in bytes (for caches bounded in bytes).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every transaction of the block, in block order, as Planetmint's API returns it: one
    /// result per transaction row (an error where Planetmint's API could not build it either).
    pub fn api_transactions(&self) -> Result<Vec<Result<Value, ApiShapeError>>, StoredRowsError> {
        let record: Vec<Value> = rmp_serde::from_slice(&self.0)
            .map_err(|e| StoredRowsError(format!("undecodable: {e}")))?;
        let list = |index: usize, what: &str| -> Result<&Vec<Value>, StoredRowsError> {
            match record.get(index) {
                Some(Value::Array(items)) => Ok(items),
                _ => Err(StoredRowsError(format!("no list of {what}"))),
            }
        };
        let rows = list(1, "transaction rows")?;
        let mut outputs: HashMap<&str, Vec<&[Value]>> = HashMap::new();
        for output in list(2, "output rows")? {
            let Some(fields) = output.as_array() else {
                return Err(StoredRowsError("an output row is not a list".to_owned()));
            };
            if let Some(id) = fields.get(5).and_then(Value::as_str) {
                outputs.entry(id).or_default().push(fields);
            }
        }
        Ok(rows
            .iter()
            .map(|row| {
                let fields = row.as_array().map(Vec::as_slice).unwrap_or_default();
                let id = fields.first().and_then(Value::as_str).unwrap_or_default();
                let own = outputs.get(id).map(Vec::as_slice).unwrap_or_default();
                api_transaction(fields, own)
            })
            .collect())
    }
}

/// The id Planetmint derives from a transaction as its API returns it (planetmint-transactions'
/// `Transaction.validate_id`): SHA3-256 of its canonical JSON (keys sorted, no spaces, UTF-8
/// unescaped, as Python's `json.dumps(sort_keys=True, separators=(",", ":"),
/// ensure_ascii=False)`), signatures included and `id` null. Version 2.0 transactions were
/// signed with their one asset under `asset`, which the API names `assets`.
pub fn planetmint_id(transaction: &Value) -> String {
    let mut signed = transaction.clone();
    if let Some(object) = signed.as_object_mut() {
        object.insert("id".to_owned(), Value::Null);
        if object.get("version").and_then(Value::as_str) == Some("2.0") {
            if let Some(asset) = object.remove("assets") {
                object.insert("asset".to_owned(), asset);
            }
        }
    }
    let mut text = String::new();
    canonical_json(&signed, &mut text);
    Sha3_256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Python's canonical JSON of `value` (see [`planetmint_id`]); transactions hold strings,
/// integers, booleans and nulls, which both write alike.
fn canonical_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical_json(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    //! Planetmint derives a transaction's id from the transaction itself (SHA3-256 of its
    //! canonical JSON, signatures included, with `id` null: planetmint-transactions'
    //! `Transaction.validate_id`), so a rebuilt
    //! transaction whose hash is its id is exactly, member for member, what was signed. For
    //! version 3.0 that is what the API returns; for version 2.0 the API differs from the
    //! signed form only by naming `asset` `assets`, which the test undoes before hashing.
    use super::*;

    fn fixture(name: &str) -> Vec<Value> {
        let path = format!(
            "{}/../../tests/fixtures/planetmint-2.5.3-all-ops/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    }

    #[test]
    fn every_fixture_transaction_is_rebuilt_exactly_as_signed() {
        let mut rows = fixture("transactions.jsonl");
        rows.extend(fixture("governance.jsonl"));
        let outputs = fixture("outputs.jsonl");
        let mut versions = std::collections::BTreeMap::new();
        for row in &rows {
            let row = row.as_array().expect("row");
            let id = row[0].as_str().expect("id");
            let own: Vec<&[Value]> = outputs
                .iter()
                .filter_map(Value::as_array)
                .filter(|o| o[5] == id)
                .map(Vec::as_slice)
                .collect();
            let api = api_transaction(row, &own).expect("rebuilt");
            assert_eq!(planetmint_id(&api), id, "{api}");
            assert_eq!(api["id"], id);
            assert!(api.get("script").is_none(), "no script stored, none shown");
            let n = api["outputs"].as_array().expect("outputs").len();
            assert_eq!(n, own.len());
            *versions
                .entry((api["operation"].to_string(), api["version"].to_string()))
                .or_insert(0) += 1;
            if api["version"] == "2.0" {
                assert!(api["assets"].is_object(), "2.0: one asset object: {api}");
            } else {
                assert!(api["assets"].is_array(), "{api}");
            }
        }
        assert_eq!(rows.len(), 64);
        // Every operation kind, and both versions of CREATE and TRANSFER.
        assert_eq!(versions.len(), 9, "{versions:?}");
    }

    #[test]
    fn outputs_are_ordered_by_index_and_amounts_are_strings() {
        let row: Vec<Value> = serde_json::from_value(serde_json::json!([
            "ab", "CREATE", "3.0", null, [{"data": "Qm"}, 5], [], null
        ]))
        .expect("row");
        let out = |index: u64, amount: Value| -> Vec<Value> {
            serde_json::from_value(serde_json::json!([
                "x", amount, ["k"],
                {"uri": "u", "details": {"type": "threshold-sha-256", "threshold": 1,
                  "subconditions": [{"type": "ed25519-sha-256"}]}},
                index, "ab"
            ]))
            .expect("output")
        };
        let second = out(1, serde_json::json!(18_446_744_073_709_551_615u64));
        let first = out(0, serde_json::json!(3));
        let api = api_transaction(&row, &[&second, &first]).expect("rebuilt");
        assert_eq!(api["outputs"][0]["amount"], "3");
        assert_eq!(api["outputs"][1]["amount"], "18446744073709551615");
        // Non-object asset entries are dropped, as Planetmint's Asset.from_list_dict does.
        assert_eq!(api["assets"], serde_json::json!([{"data": "Qm"}]));
        // A subcondition keeps its null public_key; only the outer details are pruned.
        assert_eq!(
            api["outputs"][0]["condition"]["details"],
            serde_json::json!({"type": "threshold-sha-256", "threshold": 1,
                "subconditions": [{"type": "ed25519-sha-256", "public_key": null}]})
        );
        // A stored input without fulfillment: Planetmint's API fails too, so no guess here.
        let bad: Vec<Value> = serde_json::from_value(serde_json::json!([
            "cd", "CREATE", "3.0", null, [], [{"owners_before": [], "fulfills": null}], null
        ]))
        .expect("row");
        assert_eq!(api_transaction(&bad, &[]).expect_err("bad").id, "cd");
    }
}
