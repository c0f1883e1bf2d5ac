//! The messages of the event stream, as clients receive them.
//!
//! Serialization happens once per block (the broadcaster shares the bytes with every
//! subscriber); the same types deserialize what a client receives, so tests and the
//! subscribe command read the wire format through the definitions that write it.

use std::borrow::Cow;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::block::{AssetIdsEntry, CommittedBlock, CommittedTransaction};

/// One message of `valid_transactions`: a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct TransactionEvent<'a> {
    /// The transaction's id (SHA3-256, 64 hex digits).
    #[serde(borrow)]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub transaction_id: Cow<'a, str>,
    /// The asset the transaction is about (planetmint-transactions' `read_out_asset_id`):
    /// its own id for CREATE, COMPOSE and elections (they create an asset), otherwise the id
    /// of the asset it spends (TRANSFER, VOTE, DECOMPOSE).
    #[serde(borrow)]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub asset_id: Cow<'a, str>,
    /// Planetmint's own field, as its `eventify_block` computes it: for a version 2.0
    /// transaction the asset object itself (`{"data": ...}` or `{"id": ...}`); otherwise, for
    /// each asset entry, its id or the transaction's own id.
    #[serde(borrow)]
    pub asset_ids: Vec<AssetIdsItem<'a>>,
    /// Height of the block holding the transaction.
    pub height: u64,
    /// With `include=transaction` only: the whole transaction as Planetmint's
    /// `GET /api/v1/transactions/<id>` returns it (`null` when the stored rows cannot be read
    /// as one, a row that API could not serve either).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<Cow<'a, serde_json::Value>>,
}

/// One item of `asset_ids`: an asset id, or (version 2.0 transactions) the asset object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum AssetIdsItem<'a> {
    /// An asset id (64 hex digits): transactions of version 3.0.
    Id(#[serde(borrow)] Cow<'a, str>),
    /// The asset object of a version 2.0 transaction, as Planetmint stores it:
    /// `{"data": ...}` (CREATE) or `{"id": "<asset id>"}` (TRANSFER).
    Object(Cow<'a, serde_json::Map<String, serde_json::Value>>),
}

impl AssetIdsItem<'_> {
    /// The asset id this item names, if any (an object's `id`).
    pub fn id(&self) -> Option<&str> {
        match self {
            AssetIdsItem::Id(id) => Some(id),
            AssetIdsItem::Object(object) => object.get("id").and_then(|id| id.as_str()),
        }
    }
}

impl<'a> From<&'a AssetIdsEntry> for AssetIdsItem<'a> {
    fn from(entry: &'a AssetIdsEntry) -> Self {
        match entry {
            AssetIdsEntry::Id(id) => AssetIdsItem::Id(Cow::Borrowed(id)),
            AssetIdsEntry::Object(object) => AssetIdsItem::Object(Cow::Borrowed(object)),
        }
    }
}

impl<'a> From<&'a str> for AssetIdsItem<'a> {
    fn from(id: &'a str) -> Self {
        AssetIdsItem::Id(Cow::Borrowed(id))
    }
}

/// The message of `valid_blocks`: a committed block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct BlockEvent<'a> {
    /// Block height.
    pub height: u64,
    /// The block hash Planetmint reports (its `app_hash`; empty before the first transaction).
    #[serde(borrow)]
    pub hash: Cow<'a, str>,
    /// The block's transaction ids in block order (empty for an empty block).
    #[serde(borrow)]
    pub transaction_ids: Vec<Cow<'a, str>>,
}

/// The message of `valid_transactions?batch=block`: a block's (matching) transactions at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct BlockBatchEvent<'a> {
    /// Block height.
    pub height: u64,
    /// The block's (matching) transaction events in block order.
    #[serde(borrow)]
    pub transactions: Vec<TransactionEvent<'a>>,
}

impl<'a> TransactionEvent<'a> {
    /// The event of `tx` in the block at `height`, borrowing from it.
    pub fn of(height: u64, tx: &'a CommittedTransaction) -> Self {
        Self {
            transaction_id: Cow::Borrowed(&tx.id),
            asset_id: Cow::Borrowed(&tx.asset_id),
            asset_ids: tx.asset_ids.iter().map(AssetIdsItem::from).collect(),
            height,
            transaction: None,
        }
    }
}

impl<'a> BlockEvent<'a> {
    /// The event of `block`, borrowing from it.
    pub fn of(block: &'a CommittedBlock) -> Self {
        Self {
            height: block.height,
            hash: Cow::Borrowed(&block.hash),
            transaction_ids: block.transaction_ids().map(Cow::Borrowed).collect(),
        }
    }
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs (strings, integers, arrays) into memory cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// JSON of one `valid_transactions` message.
pub fn transaction_event_json(height: u64, tx: &CommittedTransaction) -> Vec<u8> {
    to_json(&TransactionEvent::of(height, tx))
}

/// JSON of a `valid_transactions` message with `include=transaction`: the message `event`
/// (as [`transaction_event_json`] made it) with `"transaction"` added as its last member,
/// so the event's own members are serialized once whichever payload a subscriber asked for.
pub fn transaction_event_with_transaction_json(
    event: &[u8],
    transaction: Option<&serde_json::Value>,
) -> Vec<u8> {
    let head = event.strip_suffix(b"}").unwrap_or(event);
    let mut out = Vec::with_capacity(event.len() + 1024);
    out.extend_from_slice(head);
    out.extend_from_slice(b",\"transaction\":");
    match transaction {
        // Writing a JSON value into memory cannot fail.
        Some(transaction) => serde_json::to_writer(&mut out, transaction).unwrap_or_default(),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
    out
}

/// JSON of the `valid_blocks` message of a block.
pub fn block_event_json(block: &CommittedBlock) -> Vec<u8> {
    to_json(&BlockEvent::of(block))
}

/// JSON of a `batch=block` message from already serialized transaction events, so a block's
/// events are serialized once whichever framing a subscriber asked for.
pub fn block_batch_json<'e>(height: u64, events: impl IntoIterator<Item = &'e [u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"{\"height\":");
    out.extend_from_slice(height.to_string().as_bytes());
    out.extend_from_slice(b",\"transactions\":[");
    for (i, event) in events.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(event);
    }
    out.extend_from_slice(b"]}");
    out
}
