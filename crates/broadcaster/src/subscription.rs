//! What a subscriber asked for: the stream and the query parameters of its URL.
//!
//! Parameters (absent ones mean Planetmint's behaviour):
//! - `from_height=N`: replay every event with height > N, then continue live.
//! - `public_key=K` (repeatable): transactions with an output to K.
//! - `public_key_in=outputs|inputs|any`: where `public_key` must appear: in an output
//!   (default, the documented filter), in an input's `owners_before` (what K spent), or either.
//! - `asset_id=A` (repeatable): transactions whose `asset_id` or `asset_ids` name A (an id in
//!   `asset_ids`, or the `id` of a version 2.0 asset object there).
//! - `operation=OP` (repeatable): `CREATE`, `TRANSFER`, ...
//! - `batch=block`: one message per block instead of one per transaction.
//! - `include=transaction` (valid_transactions): each event also carries the whole transaction.
//! - `partition=i/n`: one worker's share of the stream (see [`Partition`]).
//! - `token=T`: reserved for signed stream URLs; ignored when they are off.
//!
//! Values of one parameter combine with OR, different parameters with AND. Anything unknown,
//! repeated where it cannot be, or malformed is refused before the upgrade with a
//! [`ParamError`] naming the parameter.

use std::collections::HashSet;

use planetmint_streams_model::ids::{is_public_key, is_transaction_id};
use planetmint_streams_model::CommittedTransaction;

pub use planetmint_streams_model::vocabulary::{StreamKind, OPERATIONS};

/// How a subscriber's messages are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Framing {
    /// Planetmint's: one message per transaction (or per block on `valid_blocks`).
    #[default]
    PerEvent,
    /// `batch=block`: one message per block with all its (matching) transactions.
    PerBlock,
}

/// What each `valid_transactions` event carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Payload {
    /// Planetmint's event: the transaction's id, assets and height.
    #[default]
    Event,
    /// `include=transaction`: the event and the whole transaction as Planetmint's API
    /// returns it.
    WithTransaction,
}

/// Where a `public_key` filter looks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum KeyRole {
    /// The key owns one of the transaction's outputs.
    #[default]
    Outputs,
    /// The key is among the `owners_before` of one of its inputs (it spent something).
    Inputs,
    /// Either.
    Any,
}

impl KeyRole {
    /// Whether outputs are searched.
    pub fn outputs(self) -> bool {
        matches!(self, KeyRole::Outputs | KeyRole::Any)
    }

    /// Whether inputs are searched.
    pub fn inputs(self) -> bool {
        matches!(self, KeyRole::Inputs | KeyRole::Any)
    }
}

/// Largest `n` of `partition=i/n`: a bound of the protocol (json-rpc.md), the same on every
/// node so that workers may be spread over nodes.
pub const MAX_PARTITIONS: u16 = 1024;

/// `partition=i/n`: worker `index` of `count`. On valid_transactions a transaction belongs
/// to the worker whose index is its id, read as a number from its first 16 hex digits,
/// modulo `count`; on valid_blocks a block belongs to its height modulo `count`. Stateless and
/// the same on every node: `count` workers together get every event exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Partition {
    /// This worker's share, `0 <= index < count`.
    pub index: u16,
    /// How many workers share the stream, `1..=MAX_PARTITIONS`.
    pub count: u16,
}

impl Partition {
    /// Reads `i/n`.
    pub fn parse(value: &str) -> Option<Self> {
        let (index, count) = value.split_once('/')?;
        let all_digits =
            |s: &str| !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(index) || !all_digits(count) {
            return None;
        }
        let index: u16 = index.parse().ok()?;
        let count: u16 = count.parse().ok()?;
        (index < count && count <= MAX_PARTITIONS).then_some(Self { index, count })
    }

    /// Whether block `height` is this worker's (valid_blocks).
    pub fn admits_height(self, height: u64) -> bool {
        height % u64::from(self.count) == u64::from(self.index)
    }

    /// Whether transaction `id` is this worker's (valid_transactions): its first 16 hex
    /// digits as a number, modulo `count`. Ids are 64 hex digits (checked when read); should
    /// one not be, its bytes count as 0, so it still goes to exactly one worker.
    pub fn admits_transaction(self, id: &str) -> bool {
        let number = id
            .get(..16)
            .and_then(|head| u64::from_str_radix(head, 16).ok())
            .unwrap_or(0);
        number % u64::from(self.count) == u64::from(self.index)
    }
}

/// Transaction filters; empty sets mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Keys to match (see `key_role`).
    pub public_keys: HashSet<String>,
    /// Where the keys are looked for.
    pub key_role: KeyRole,
    /// Assets to match.
    pub asset_ids: HashSet<String>,
    /// Operations to match.
    pub operations: HashSet<String>,
    /// `partition=i/n`: this worker's share (applied per transaction on valid_transactions,
    /// per block height on valid_blocks; not part of [`Filter::matches`]).
    pub partition: Option<Partition>,
}

impl Filter {
    /// True when nothing is filtered (no value and no partition).
    pub fn is_empty(&self) -> bool {
        !self.has_values() && self.partition.is_none()
    }

    /// True when some key, asset or operation is asked for: such subscribers are found
    /// through the filter index. Those with at most a partition share per-block frames
    /// instead (a partition needs no lookup).
    pub fn has_values(&self) -> bool {
        !(self.public_keys.is_empty() && self.asset_ids.is_empty() && self.operations.is_empty())
    }

    /// Whether `tx` passes every given key, asset and operation filter (the partition is
    /// checked by the selection, since its meaning depends on the stream).
    pub fn matches(&self, tx: &CommittedTransaction) -> bool {
        (self.public_keys.is_empty()
            || (self.key_role.outputs()
                && tx
                    .output_public_keys
                    .iter()
                    .any(|k| self.public_keys.contains(k)))
            || (self.key_role.inputs()
                && tx.input_owners.iter().any(|k| self.public_keys.contains(k))))
            && (self.asset_ids.is_empty()
                || tx.named_asset_ids().any(|a| self.asset_ids.contains(a)))
            && (self.operations.is_empty() || self.operations.contains(&tx.operation))
    }
}

/// A subscription request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Which stream.
    pub stream: StreamKind,
    /// Replay heights above this one first.
    pub from_height: Option<u64>,
    /// Which transactions.
    pub filter: Filter,
    /// Message framing.
    pub framing: Framing,
    /// What each transaction event carries.
    pub payload: Payload,
}

/// The options every stream takes: the one declaration of them. In a stream URL they are
/// query parameters (repeatable ones given several times), in JSON-RPC `subscribe` the params
/// beside `stream` (repeatable ones as arrays), after a stream-sea stream name its query
/// string. Its JSON Schema (these doc comments, the examples) is what the catalogue and the
/// AsyncAPI document publish; the JSON-RPC parser deserializes into it; the URL parser takes
/// exactly its names; every value goes through [`SubscriptionBuilder`], so a value refused in
/// one form is refused in every other with the same message.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    /// Replay every event of every block with height > N, then continue live; nothing is
    /// missed or repeated at the seam. A height above the head waits for it.
    #[schemars(example = 41)]
    pub from_height: Option<u64>,
    /// Only transactions with an output to this key (see public_key_in); on valid_blocks,
    /// only blocks holding such a transaction. A base58 Ed25519 public key (32 bytes).
    #[schemars(
        inner(regex(pattern = r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")),
        example = ["4UsMARRttZAQYUYb8hjpbuwq5tnpJPK5ETFbDkiXrnCW"]
    )]
    pub public_key: Option<Vec<String>>,
    /// Where public_key is looked for: outputs (default), inputs (owners_before: what the key
    /// spends) or any.
    #[schemars(example = &"any")]
    pub public_key_in: Option<KeyRoleName>,
    /// Only transactions whose asset_id or asset_ids name this asset.
    #[schemars(
        inner(regex(pattern = r"^[0-9a-fA-F]{64}$")),
        example = ["8eb69874cf7d7f5d667c3b6beb77c389f5da52ebe463da89ea371d91dab6c0c7"]
    )]
    pub asset_id: Option<Vec<String>>,
    /// Only transactions of this operation (case-insensitive).
    #[schemars(
        extend("items" = {"type": "string", "enum": ["CREATE", "TRANSFER", "COMPOSE", "DECOMPOSE", "VALIDATOR_ELECTION", "CHAIN_MIGRATION_ELECTION", "VOTE"]}),
        example = ["TRANSFER"]
    )]
    pub operation: Option<Vec<String>>,
    /// block: one message per block, {"height", "transactions": [...]}, with the block's
    /// matching events; blocks left empty by filters are not sent.
    #[schemars(example = &"block")]
    pub batch: Option<BatchName>,
    /// transaction (valid_transactions only): each event also carries "transaction", the
    /// whole transaction exactly as Planetmint's GET /api/v1/transactions/<id> returns it
    /// (null in the rare case its stored rows cannot be read as one), so an indexer needs no
    /// request per event; also inside batch=block messages.
    #[schemars(example = &"transaction")]
    pub include: Option<IncludeName>,
    /// i/n: one worker's share, stateless and the same on every node. valid_transactions:
    /// the transactions whose id, read as a number from its first 16 hex digits, is i modulo
    /// n; valid_blocks: the blocks whose height is i modulo n. n workers with i = 0..n-1
    /// together get every event exactly once; each resumes with its own from_height.
    #[schemars(regex(pattern = r"^[0-9]{1,5}/[0-9]{1,5}$"), example = &"1/4")]
    pub partition: Option<String>,
}

/// `public_key_in`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyRoleName {
    /// In an output (the default).
    Outputs,
    /// In an input's owners_before.
    Inputs,
    /// Either.
    Any,
}

/// `batch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BatchName {
    /// One message per block.
    Block,
    /// One message per event (the default).
    None,
}

/// `include`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IncludeName {
    /// The whole transaction in each event.
    Transaction,
    /// The event alone (the default).
    None,
}

impl StreamOptions {
    /// Applies every option given to `builder` (its values as a URL gives them, so every
    /// check and message is the URL parser's).
    pub fn apply(
        &self,
        builder: &mut SubscriptionBuilder,
        limits: &ParamLimits,
    ) -> Result<(), ParamError> {
        if let Some(height) = self.from_height {
            builder.apply("from_height", height.to_string(), limits)?;
        }
        for (parameter, values) in [
            ("public_key", &self.public_key),
            ("asset_id", &self.asset_id),
            ("operation", &self.operation),
        ] {
            for value in values.iter().flatten() {
                builder.apply(parameter, value.clone(), limits)?;
            }
        }
        if let Some(role) = self.public_key_in {
            let role = match role {
                KeyRoleName::Outputs => "outputs",
                KeyRoleName::Inputs => "inputs",
                KeyRoleName::Any => "any",
            };
            builder.apply("public_key_in", role.to_owned(), limits)?;
        }
        if let Some(batch) = self.batch {
            let batch = match batch {
                BatchName::Block => "block",
                BatchName::None => "none",
            };
            builder.apply("batch", batch.to_owned(), limits)?;
        }
        if let Some(include) = self.include {
            let include = match include {
                IncludeName::Transaction => "transaction",
                IncludeName::None => "none",
            };
            builder.apply("include", include.to_owned(), limits)?;
        }
        if let Some(partition) = &self.partition {
            builder.apply("partition", partition.clone(), limits)?;
        }
        Ok(())
    }

    /// The JSON Schema of the options (as JSON-RPC's params, without `stream`).
    pub fn schema() -> &'static serde_json::Value {
        static SCHEMA: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
        SCHEMA.get_or_init(crate::catalogue::schema_of::<StreamOptions>)
    }

    /// The names of the options.
    pub fn names() -> impl Iterator<Item = &'static str> {
        Self::schema()["properties"]
            .as_object()
            .into_iter()
            .flat_map(|properties| properties.keys().map(String::as_str))
    }
}

/// One query parameter a stream URL accepts, as the stream catalogue publishes it: made
/// from [`StreamOptions`]'s declaration (and `token`'s).
#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    /// Name in the query string.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Whether it may be given several times (values are ORed).
    pub repeatable: bool,
    /// JSON Schema of one value.
    pub schema: serde_json::Value,
    /// A valid example value, as the query string writes it.
    pub example: String,
}

/// `token`: the one URL parameter that is not an option of the stream (the channel takes
/// credentials in `authenticate`).
const TOKEN_DESCRIPTION: &str = "Signed stream token; required only when the server runs with signed stream URLs (Authorization: Bearer carries the same where a header can be sent).";

/// The schema of one value of a property, with `null` (an option not given) left out.
fn one_value(property: &serde_json::Value) -> (serde_json::Value, bool) {
    let mut schema = property.clone();
    if let Some(object) = schema.as_object_mut() {
        object.remove("examples");
        object.remove("description");
        if let Some(serde_json::Value::Array(kinds)) = object.get("type") {
            let kinds: Vec<serde_json::Value> =
                kinds.iter().filter(|k| *k != "null").cloned().collect();
            let kind = if kinds.len() == 1 {
                kinds[0].clone()
            } else {
                serde_json::Value::Array(kinds)
            };
            object.insert("type".into(), kind);
        }
        if let Some(any) = object.remove("anyOf") {
            // `Option<Enum>`: the enum's own schema.
            if let Some(choice) = any.as_array().and_then(|choices| {
                choices
                    .iter()
                    .find(|c| c.get("type") != Some(&serde_json::Value::from("null")))
            }) {
                schema = choice.clone();
            }
        }
    }
    if schema.get("type") == Some(&serde_json::Value::from("array")) {
        return (schema["items"].clone(), true);
    }
    (schema, false)
}

/// Every parameter a stream URL accepts, as the catalogue publishes it.
pub fn parameters() -> &'static [Parameter] {
    static PARAMETERS: std::sync::OnceLock<Vec<Parameter>> = std::sync::OnceLock::new();
    PARAMETERS.get_or_init(|| {
        let root = StreamOptions::schema();
        let mut parameters: Vec<Parameter> = root["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, property)| {
                let (schema, repeatable) = one_value(property);
                let example = match property["examples"].get(0) {
                    Some(serde_json::Value::Array(values)) => values
                        .first()
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_owned(),
                    Some(serde_json::Value::String(value)) => value.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                Parameter {
                    name: name.clone(),
                    description: property["description"]
                        .as_str()
                        .unwrap_or_default()
                        .replace('\n', " "),
                    repeatable,
                    schema,
                    example,
                }
            })
            .collect();
        parameters.push(Parameter {
            name: "token".into(),
            description: TOKEN_DESCRIPTION.into(),
            repeatable: false,
            schema: serde_json::json!({"type": "string"}),
            example: "v1.example".into(),
        });
        parameters
    })
}

/// Whether `name` is a parameter of this server: the ones of [`parameters`] are read; other
/// names are ignored on stream URLs, as Planetmint ignores the query string.
pub fn is_reserved(name: &str) -> bool {
    name == "token" || StreamOptions::names().any(|option| option == name)
}

/// Limits on what a URL may ask for.
#[derive(Debug, Clone, Copy)]
pub struct ParamLimits {
    /// Longest accepted query string, in bytes.
    pub max_query_len: usize,
    /// Most values of one repeatable parameter.
    pub max_values: usize,
}

impl Default for ParamLimits {
    fn default() -> Self {
        Self {
            max_query_len: 8192,
            max_values: 100,
        }
    }
}

/// A refused query parameter (sent as HTTP 400 `{"error", "parameter"}`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{parameter}: {message}")]
pub struct ParamError {
    /// The parameter at fault (or `query` for the query string as a whole).
    pub parameter: String,
    /// What is wrong, for the client.
    pub message: String,
}

fn refuse(parameter: &str, message: impl Into<String>) -> ParamError {
    ParamError {
        parameter: parameter.to_owned(),
        message: message.into(),
    }
}

fn add_value(
    set: &mut HashSet<String>,
    parameter: &str,
    value: String,
    limits: &ParamLimits,
) -> Result<(), ParamError> {
    set.insert(value);
    if set.len() > limits.max_values {
        return Err(refuse(
            parameter,
            format!("at most {} values are accepted", limits.max_values),
        ));
    }
    Ok(())
}

impl Subscription {
    /// Parses the query string of a stream URL.
    pub fn parse(
        stream: StreamKind,
        query: &str,
        limits: &ParamLimits,
    ) -> Result<Self, ParamError> {
        if query.len() > limits.max_query_len {
            return Err(refuse(
                "query",
                format!("query string longer than {} bytes", limits.max_query_len),
            ));
        }
        let mut builder = SubscriptionBuilder::new(stream);
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            // Planetmint's routes ignore the query string, so a URL that works there (a cache
            // buster, a parameter a newer client adds) works here too; only our names count.
            if is_reserved(key.as_ref()) {
                builder.apply(key.as_ref(), value.into_owned(), limits)?;
            }
        }
        builder.finish()
    }
}

/// Builds a [`Subscription`] one parameter at a time, with the validation of stream URLs;
/// shared by the URL parser and the JSON-RPC channel (whose `subscribe` options are the same
/// parameters as JSON).
#[derive(Debug, Clone)]
pub struct SubscriptionBuilder {
    subscription: Subscription,
    seen_batch: bool,
    seen_include: bool,
    seen_token: bool,
    seen_role: bool,
}

impl SubscriptionBuilder {
    /// Nothing asked for yet: Planetmint's stream.
    pub fn new(stream: StreamKind) -> Self {
        Self {
            subscription: Subscription {
                stream,
                from_height: None,
                filter: Filter::default(),
                framing: Framing::PerEvent,
                payload: Payload::Event,
            },
            seen_batch: false,
            seen_include: false,
            seen_token: false,
            seen_role: false,
        }
    }

    /// Applies one parameter (`key=value`; repeatable ones may come several times).
    pub fn apply(
        &mut self,
        key: &str,
        value: String,
        limits: &ParamLimits,
    ) -> Result<(), ParamError> {
        let subscription = &mut self.subscription;
        match key {
            "from_height" => {
                if subscription.from_height.is_some() {
                    return Err(refuse("from_height", "given more than once"));
                }
                let height = value.parse::<u64>().map_err(|_| {
                    refuse(
                        "from_height",
                        "expected a block height: a whole number from 0 to 18446744073709551615",
                    )
                })?;
                subscription.from_height = Some(height);
            }
            "public_key" => {
                if !is_public_key(&value) {
                    return Err(refuse(
                        "public_key",
                        "expected a base58 Ed25519 public key (32 bytes)",
                    ));
                }
                add_value(
                    &mut subscription.filter.public_keys,
                    "public_key",
                    value,
                    limits,
                )?;
            }
            "public_key_in" => {
                if self.seen_role {
                    return Err(refuse("public_key_in", "given more than once"));
                }
                self.seen_role = true;
                subscription.filter.key_role = match value.as_str() {
                    "outputs" => KeyRole::Outputs,
                    "inputs" => KeyRole::Inputs,
                    "any" => KeyRole::Any,
                    _ => return Err(refuse("public_key_in", "expected outputs, inputs or any")),
                };
            }
            "asset_id" => {
                if !is_transaction_id(&value) {
                    return Err(refuse("asset_id", "expected 64 hexadecimal digits"));
                }
                add_value(
                    &mut subscription.filter.asset_ids,
                    "asset_id",
                    value.to_ascii_lowercase(),
                    limits,
                )?;
            }
            "operation" => {
                let upper = value.to_ascii_uppercase();
                if !OPERATIONS.contains(&upper.as_str()) {
                    return Err(refuse(
                        "operation",
                        format!("expected one of {}", OPERATIONS.join(", ")),
                    ));
                }
                add_value(
                    &mut subscription.filter.operations,
                    "operation",
                    upper,
                    limits,
                )?;
            }
            "batch" => {
                if self.seen_batch {
                    return Err(refuse("batch", "given more than once"));
                }
                self.seen_batch = true;
                subscription.framing = match value.as_str() {
                    "block" => Framing::PerBlock,
                    "none" => Framing::PerEvent,
                    _ => return Err(refuse("batch", "expected \"block\" (or \"none\")")),
                };
            }
            "include" => {
                if self.seen_include {
                    return Err(refuse("include", "given more than once"));
                }
                self.seen_include = true;
                subscription.payload = match value.as_str() {
                    "transaction" => Payload::WithTransaction,
                    "none" => Payload::Event,
                    _ => return Err(refuse("include", "expected \"transaction\" (or \"none\")")),
                };
            }
            "partition" => {
                if subscription.filter.partition.is_some() {
                    return Err(refuse("partition", "given more than once"));
                }
                let partition = Partition::parse(&value).ok_or_else(|| {
                    refuse(
                        "partition",
                        format!("expected i/n with 0 <= i < n <= {MAX_PARTITIONS}"),
                    )
                })?;
                subscription.filter.partition = Some(partition);
            }
            "token" => {
                if self.seen_token {
                    return Err(refuse("token", "given more than once"));
                }
                self.seen_token = true;
            }
            other => {
                let mut name: String = other.chars().take(64).collect();
                if name.is_empty() {
                    name = "query".to_owned();
                }
                return Err(refuse(
                    &name,
                    format!(
                        "unknown parameter; accepted: {}",
                        parameters()
                            .iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The subscription, once every parameter is applied (checks what needs them all).
    pub fn finish(self) -> Result<Subscription, ParamError> {
        if self.seen_role && self.subscription.filter.public_keys.is_empty() {
            return Err(refuse("public_key_in", "only meaningful with public_key"));
        }
        if self.subscription.payload == Payload::WithTransaction
            && self.subscription.stream != StreamKind::ValidTransactions
        {
            return Err(refuse(
                "include",
                "only valid_transactions events carry transactions",
            ));
        }
        Ok(self.subscription)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "4UsMARRttZAQYUYb8hjpbuwq5tnpJPK5ETFbDkiXrnCW";

    fn parse(query: &str) -> Result<Subscription, ParamError> {
        Subscription::parse(
            StreamKind::ValidTransactions,
            query,
            &ParamLimits::default(),
        )
    }

    #[test]
    fn no_parameters_is_planetmints_stream() {
        let s = parse("").expect("ok");
        assert_eq!(s.from_height, None);
        assert!(s.filter.is_empty());
        assert_eq!(s.framing, Framing::PerEvent);
    }

    #[test]
    fn every_parameter_is_read() {
        let id = "A".repeat(64);
        let s = parse(&format!(
            "from_height=42&public_key={KEY}&asset_id={id}&operation=transfer&operation=CREATE&batch=block"
        ))
        .expect("ok");
        assert_eq!(s.from_height, Some(42));
        assert!(s.filter.public_keys.contains(KEY));
        assert!(s.filter.asset_ids.contains(&"a".repeat(64)));
        assert_eq!(s.filter.operations.len(), 2);
        assert_eq!(s.framing, Framing::PerBlock);
    }

    #[test]
    fn bad_values_name_their_parameter() {
        for (query, parameter) in [
            ("from_height=-1", "from_height"),
            ("from_height=abc", "from_height"),
            ("from_height=1&from_height=2", "from_height"),
            ("from_height=99999999999999999999999", "from_height"),
            ("public_key=0OIl", "public_key"),
            ("asset_id=xyz", "asset_id"),
            ("operation=MINT", "operation"),
            ("batch=tx", "batch"),
            ("partition=4/4", "partition"),
            ("partition=0/0", "partition"),
            ("partition=0/1025", "partition"),
            ("partition=1", "partition"),
            ("partition=-1/4", "partition"),
            ("partition=+1/4", "partition"),
            ("partition=1/4/2", "partition"),
            ("partition=a/b", "partition"),
            ("partition=1/99999999999", "partition"),
            ("partition=0/2&partition=1/2", "partition"),
            ("public_key_in=inputs", "public_key_in"),
            (
                "public_key_in=sideways&public_key=4UsMARRttZAQYUYb8hjpbuwq5tnpJPK5ETFbDkiXrnCW",
                "public_key_in",
            ),
        ] {
            let err = parse(query).expect_err(query);
            assert_eq!(err.parameter, parameter, "{query}");
        }
    }

    #[test]
    fn partition_is_read_and_bounded() {
        let s = parse("partition=3/4").expect("ok");
        assert_eq!(s.filter.partition, Some(Partition { index: 3, count: 4 }));
        assert!(!s.filter.is_empty());
        assert!(!s.filter.has_values());
        let s = parse("partition=0/1024").expect("ok");
        assert_eq!(
            s.filter.partition,
            Some(Partition {
                index: 0,
                count: 1024
            })
        );
        assert_eq!(
            parse("partition=0/1").expect("ok").filter.partition,
            Some(Partition { index: 0, count: 1 })
        );
    }

    #[test]
    fn a_transaction_belongs_to_the_worker_of_its_first_16_hex_digits() {
        // 0x00000000000000ff = 255 = 3 (mod 4) = 0 (mod 5); the rest of the id does not count.
        let id = format!("00000000000000ff{}", "f".repeat(48));
        let worker = |index, count| Partition { index, count }.admits_transaction(&id);
        assert!(worker(3, 4));
        assert!(!worker(0, 4) && !worker(1, 4) && !worker(2, 4));
        assert!(worker(0, 5));
        // Upper-case digits read the same; the largest 16-digit number too.
        let upper = format!("FFFFFFFFFFFFFFFF{}", "0".repeat(48));
        // 2^64 - 1 = 1023 (mod 1024)
        assert!(Partition {
            index: 1023,
            count: 1024
        }
        .admits_transaction(&upper));
        assert!(Partition { index: 2, count: 7 }.admits_height(16));
        assert!(!Partition { index: 2, count: 7 }.admits_height(17));
    }

    #[test]
    fn unknown_parameters_are_ignored_as_planetmint_ignores_the_query_string() {
        let plain = parse("").expect("ok");
        for query in [
            "colour=blue",
            "=x",
            "_=1712345678",
            "v=2&&&",
            "cache-buster",
        ] {
            assert_eq!(parse(query).expect(query), plain, "{query}");
        }
        // Known parameters next to unknown ones still count, and bad values are still refused.
        let s = parse("_=1&from_height=3&x=y").expect("ok");
        assert_eq!(s.from_height, Some(3));
        assert_eq!(
            parse("_=1&from_height=x").expect_err("bad").parameter,
            "from_height"
        );
    }

    #[test]
    fn every_parameter_is_reserved_and_described() {
        let names: Vec<&str> = parameters().iter().map(|p| p.name.as_str()).collect();
        // The options in name order (JSON objects are written so), then the credential.
        assert_eq!(
            names,
            [
                "asset_id",
                "batch",
                "from_height",
                "include",
                "operation",
                "partition",
                "public_key",
                "public_key_in",
                "token"
            ]
        );
        for p in parameters() {
            assert!(is_reserved(&p.name), "{}", p.name);
            assert!(!p.description.is_empty(), "{} is described", p.name);
            assert!(!p.example.is_empty(), "{} has an example", p.name);
        }
        assert!(!is_reserved("colour"));
    }

    #[test]
    fn every_published_parameter_is_accepted_with_its_example_which_its_schema_accepts() {
        for p in parameters() {
            let query = if p.name == "public_key_in" {
                format!("public_key={KEY}&public_key_in={}", p.example)
            } else {
                format!("{}={}", p.name, p.example)
            };
            parse(&query).unwrap_or_else(|e| panic!("{}: {e}", p.name));
            assert!(p.schema.is_object(), "{}", p.name);
            let example = match p.schema["type"].as_str() {
                Some("integer") => serde_json::json!(p.example.parse::<u64>().expect("a number")),
                _ => serde_json::json!(p.example),
            };
            let validator = jsonschema_lite(&p.schema);
            assert!(
                validator(&example),
                "{}: {} against {}",
                p.name,
                example,
                p.schema
            );
        }
        let repeatable: Vec<&str> = parameters()
            .iter()
            .filter(|p| p.repeatable)
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(repeatable, ["asset_id", "operation", "public_key"]);
    }

    /// The checks a parameter's schema makes of one value (type, enum, pattern).
    fn jsonschema_lite(schema: &serde_json::Value) -> impl Fn(&serde_json::Value) -> bool + '_ {
        move |value| {
            let typed = match schema["type"].as_str() {
                Some("integer") => value.is_u64(),
                Some("string") => value.is_string(),
                _ => true,
            };
            let listed = schema["enum"]
                .as_array()
                .is_none_or(|values| values.contains(value));
            typed && listed
        }
    }

    #[test]
    fn limits_are_enforced() {
        let limits = ParamLimits {
            max_query_len: 40,
            max_values: 1,
        };
        let long = format!("from_height={}", "1".repeat(40));
        let err = Subscription::parse(StreamKind::ValidBlocks, &long, &limits).expect_err("long");
        assert_eq!(err.parameter, "query");
        let err = Subscription::parse(
            StreamKind::ValidBlocks,
            "operation=CREATE&operation=VOTE",
            &limits,
        )
        .expect_err("two values");
        assert_eq!(err.parameter, "operation");
    }
}
