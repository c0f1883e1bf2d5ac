//! [`TarantoolSource`]: committed blocks read from Planetmint's Tarantool.
//!
//! In push mode every read is one call of the installed Lua function, which waits on the server
//! for a commit (long-poll) and returns whole blocks (row, transactions, outputs) as one
//! MessagePack string, decoded here with rmp-serde straight into the model's tuple types. In
//! poll mode (no `eval` permission, or `mode = "poll"`) blocks are read with plain selects,
//! pipelined over the one connection.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::try_join_all;
use planetmint_streams_model::api::StoredRows;
use planetmint_streams_model::tuple::{BlockTuple, OutputTuple, TransactionTuple};
use planetmint_streams_model::{
    BlockBatch, BlockSource, CommittedBlock, FetchedBlocks, HeightBounds, SourceError,
};
use serde::Deserialize;
use tarantool_rs::{CallResponse, Connection, ExecutorExt, IteratorType};
use tokio::sync::Mutex;
use tracing::{info, warn};

use super::config::{ReadMode, TarantoolConfig};
use super::connect::connect_through;
use super::relay::{Relay, RelayConfig, RelayState};

/// The Lua helpers (see the file for what they do and why).
pub const STREAMS_LUA: &str = include_str!("streams.lua");
/// Version of the protocol between this code and `streams.lua`.
const LUA_PROTOCOL: u64 = 3;

/// Committed blocks from Planetmint's Tarantool.
pub struct TarantoolSource {
    config: TarantoolConfig,
    relay: Relay,
    client: Mutex<Option<Client>>,
}

#[derive(Clone)]
struct Client {
    conn: Connection,
    /// Relay session in which the Lua helpers were installed (push mode), if any.
    installed_in: Option<u64>,
    active: ActiveMode,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ActiveMode {
    Push,
    Poll(SpaceIds),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct SpaceIds {
    blocks: u32,
    blocks_by_height: u32,
    transactions: u32,
    governance: Option<u32>,
    outputs: Option<(u32, u32)>,
    /// `abci_chains` and its `height` index: which empty rows `init_chain` stored.
    abci_chains: Option<(u32, u32)>,
}

/// One block as `streams.lua` returns it: `[block_row, [tx_row | nil, ...], [output_row, ...],
/// [positions of governance rows], chain_start, commit time | nil]`.
#[derive(Deserialize)]
struct BlockRecord(
    BlockTuple,
    Vec<Option<TransactionTuple>>,
    Vec<OutputTuple>,
    // Positions of governance rows: only the field-by-field path (error reports) reads them.
    #[serde(default)]
    #[allow(dead_code)]
    Vec<usize>,
    #[serde(default)] bool,
    #[serde(default)] Option<f64>,
);

/// Names of Planetmint's spaces, as error reports give them.
const SPACE_BLOCKS: &str = "blocks";
const SPACE_TRANSACTIONS: &str = "transactions";
const SPACE_GOVERNANCE: &str = "governance";
const SPACE_OUTPUTS: &str = "outputs";

fn unusable(space: &str, key: impl Into<String>, problem: impl ToString) -> SourceError {
    SourceError::UnusableRow {
        space: space.to_owned(),
        key: key.into(),
        problem: problem.to_string(),
    }
}

/// What identifies a raw row in an error report: its first field (the primary key of every
/// Planetmint space), shown as it is.
fn row_key(row: &rmpv::Value) -> String {
    match row.as_array().and_then(|fields| fields.first()) {
        Some(rmpv::Value::String(s)) => s.as_str().map_or_else(|| s.to_string(), str::to_owned),
        Some(other) => other.to_string(),
        None => row.to_string(),
    }
}

/// Decodes one raw row, naming the space and key when it cannot be used.
fn decode_row<T: serde::de::DeserializeOwned>(
    space: &str,
    row: rmpv::Value,
) -> Result<T, SourceError> {
    let key = row_key(&row);
    rmpv::ext::from_value(row).map_err(|e| unusable(space, key, e))
}

/// A block from its decoded rows, with `init_chain`'s rows marked.
fn assemble(
    row: BlockTuple,
    txs: Vec<Option<TransactionTuple>>,
    outputs: &[OutputTuple],
    chain_start: bool,
) -> Result<CommittedBlock, SourceError> {
    let height = row.height;
    let mut block = CommittedBlock::assemble(row, txs, outputs)
        .map_err(|e| unusable(SPACE_BLOCKS, format!("height {height}"), e))?;
    block.chain_start = chain_start && block.transactions.is_empty();
    Ok(block)
}

/// Decodes the MessagePack reply of `planetmint_streams.blocks` into committed blocks, each
/// keeping its record's bytes (a slice of `bytes`) for `include=transaction`.
///
/// When a row in it cannot be used, the blocks before that row's block are returned (they
/// stream), or, when it is in the first block, an [`SourceError::UnusableRow`] naming it.
pub fn decode_blocks_reply(bytes: Bytes) -> Result<BlockBatch, SourceError> {
    let corrupt = |what: &str| SourceError::corrupt(format!("undecodable blocks reply: {what}"));
    let mut rest: &[u8] = &bytes;
    let outer = rmp::decode::read_array_len(&mut rest).map_err(|e| corrupt(&e.to_string()))?;
    if outer != 2 {
        return Err(corrupt("expected [watermark, records]"));
    }
    let head: u64 = rmp::decode::read_int(&mut rest).map_err(|e| corrupt(&e.to_string()))?;
    let count = rmp::decode::read_array_len(&mut rest).map_err(|e| corrupt(&e.to_string()))?;
    let mut blocks = Vec::with_capacity(count.min(4096) as usize);
    for _ in 0..count {
        let start = bytes.len() - rest.len();
        // Fast path: straight into the tuple types. A record that does not decode that way is
        // decoded again field by field, to name the row at fault.
        let mut cursor = rest;
        let decoded = match rmp_serde::from_read::<_, BlockRecord>(&mut cursor) {
            Ok(BlockRecord(row, txs, outputs, _, chain_start, committed_at)) => {
                rest = cursor;
                assemble(row, txs, &outputs, chain_start).map(|mut block| {
                    block.committed_at = committed_at.and_then(commit_time);
                    block
                })
            }
            Err(fast) => {
                let mut cursor = rest;
                let record = rmpv::decode::read_value(&mut cursor)
                    .map_err(|_| corrupt(&fast.to_string()))?;
                rest = cursor;
                decode_record(record)
            }
        };
        match decoded {
            Ok(mut block) => {
                let end = bytes.len() - rest.len();
                block.rows = Some(StoredRows::new(bytes.slice(start..end)));
                blocks.push(block);
            }
            Err(err) if blocks.is_empty() => return Err(err),
            Err(_) => break,
        }
    }
    Ok(BlockBatch { head, blocks })
}

fn decode_record(record: rmpv::Value) -> Result<CommittedBlock, SourceError> {
    let rmpv::Value::Array(parts) = record else {
        return Err(SourceError::corrupt(
            "a blocks reply record is not an array",
        ));
    };
    let mut parts = parts.into_iter();
    let row: BlockTuple = decode_row(SPACE_BLOCKS, parts.next().unwrap_or(rmpv::Value::Nil))?;
    let raw_txs = match parts.next() {
        Some(rmpv::Value::Array(txs)) => txs,
        _ => Vec::new(),
    };
    let raw_outputs = match parts.next() {
        Some(rmpv::Value::Array(outputs)) => outputs,
        _ => Vec::new(),
    };
    let in_governance: Vec<usize> = parts
        .next()
        .and_then(|v| rmpv::ext::from_value(v).ok())
        .unwrap_or_default();
    let chain_start = parts.next().and_then(|v| v.as_bool()).unwrap_or(false);
    let committed_at = parts.next().and_then(|v| v.as_f64()).and_then(commit_time);
    let mut txs = Vec::with_capacity(raw_txs.len());
    for (position, raw) in raw_txs.into_iter().enumerate() {
        if raw.is_nil() {
            txs.push(None);
            continue;
        }
        let space = if in_governance.contains(&position) {
            SPACE_GOVERNANCE
        } else {
            SPACE_TRANSACTIONS
        };
        txs.push(Some(decode_row(space, raw)?));
    }
    let outputs = raw_outputs
        .into_iter()
        .map(|raw| decode_row(SPACE_OUTPUTS, raw))
        .collect::<Result<Vec<OutputTuple>, _>>()?;
    let mut block = assemble(row, txs, &outputs, chain_start)?;
    block.committed_at = committed_at;
    Ok(block)
}

/// A commit time in seconds since the epoch (Tarantool's `fiber.time()`), if it is one.
fn commit_time(seconds: f64) -> Option<SystemTime> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .and_then(|since| UNIX_EPOCH.checked_add(since))
}

fn classify(err: tarantool_rs::Error) -> SourceError {
    use tarantool_rs::Error as E;
    match err {
        E::Response(resp) => SourceError::refused(resp.to_string()),
        E::Auth(resp) => SourceError::refused("authentication failed").because(resp),
        E::CallEval(value) => SourceError::refused(format!("Lua error: {value}")),
        E::Decode(e) => SourceError::corrupt("undecodable reply").because(e),
        E::Encode(e) => SourceError::corrupt("unencodable request").because(e),
        other => SourceError::unavailable("no answer from Tarantool").because(other),
    }
}

impl TarantoolSource {
    /// A source for `config`; connects lazily and reconnects by itself.
    pub async fn new(config: TarantoolConfig) -> std::io::Result<Self> {
        let relay = Relay::start(RelayConfig {
            upstream: config.address.clone(),
            connect_timeout: config.connect_timeout,
            backoff: (config.reconnect_min, config.reconnect_max),
        })
        .await?;
        Ok(Self {
            config,
            relay,
            client: Mutex::new(None),
        })
    }

    /// Connection state (reachability, sessions, server version).
    pub fn relay_state(&self) -> &Arc<RelayState> {
        self.relay.state()
    }

    /// Whether blocks are currently read through the server-side long-poll (`true`) or by
    /// polling with selects (`false`); `None` before the first successful connection.
    pub async fn is_pushing(&self) -> Option<bool> {
        self.client
            .lock()
            .await
            .as_ref()
            .map(|client| client.active == ActiveMode::Push && client.installed_in.is_some())
    }

    /// The configuration in use.
    pub fn config(&self) -> &TarantoolConfig {
        &self.config
    }

    async fn with_timeout<T>(
        &self,
        extra: Duration,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, SourceError>>,
    ) -> Result<T, SourceError> {
        tokio::time::timeout(self.config.request_timeout + extra, fut)
            .await
            .unwrap_or_else(|_| {
                Err(SourceError::unavailable(format!(
                    "{what}: no answer from Tarantool at {} within {:?}",
                    self.config.address,
                    self.config.request_timeout + extra
                )))
            })
    }

    /// A connected client with the Lua helpers installed in the current server session
    /// (or poll mode set up).
    async fn client(&self) -> Result<Client, SourceError> {
        let mut guard = self.client.lock().await;
        if guard.is_none() {
            let conn = connect_through(&self.relay, self.config.credentials())
                .await
                .map_err(classify)?;
            *guard = Some(Client {
                conn,
                installed_in: None,
                active: ActiveMode::Push,
            });
        }
        let client = guard
            .as_mut()
            .ok_or_else(|| SourceError::unavailable("not connected"))?;
        let session = self.relay.state().sessions();
        let needs_setup = match client.active {
            ActiveMode::Push => client.installed_in != Some(session),
            ActiveMode::Poll(_) => false,
        };
        if needs_setup {
            self.set_up(client, session).await?;
        }
        Ok(client.clone())
    }

    async fn set_up(&self, client: &mut Client, session: u64) -> Result<(), SourceError> {
        if self.config.mode != ReadMode::Poll {
            match install_lua(&client.conn).await {
                Ok(version) => {
                    if client.installed_in.is_none() {
                        info!(tarantool_version = %version, "long-poll installed in Tarantool; new blocks are pushed");
                    }
                    client.installed_in = Some(session);
                    client.active = ActiveMode::Push;
                    return Ok(());
                }
                Err(err) if self.config.mode == ReadMode::Push => return Err(err),
                Err(err @ SourceError::Unavailable { .. }) => return Err(err),
                Err(err) => warn!(
                    error = %err.chain(),
                    poll_interval_ms = self.config.poll_interval.as_millis() as u64,
                    "cannot install the long-poll in Tarantool (eval not allowed?); polling instead"
                ),
            }
        }
        let ids = space_ids(&client.conn).await?;
        client.active = ActiveMode::Poll(ids);
        Ok(())
    }

    /// Forgets the installation after an error that suggests the server lost it.
    async fn invalidate_on(&self, err: &SourceError) {
        if matches!(err, SourceError::Refused { message, .. } if message.contains("planetmint_streams"))
        {
            if let Some(client) = self.client.lock().await.as_mut() {
                client.installed_in = None;
            }
        }
    }

    async fn read(
        &self,
        after: u64,
        upto: Option<u64>,
        max_blocks: usize,
        wait: Duration,
    ) -> Result<BlockBatch, SourceError> {
        self.read_answer(after, upto, max_blocks, wait)
            .await?
            .decode()
    }

    /// A read, up to the source's answer (decoded by [`Answer::decode`]).
    async fn read_answer(
        &self,
        after: u64,
        upto: Option<u64>,
        max_blocks: usize,
        wait: Duration,
    ) -> Result<Answer, SourceError> {
        let client = self
            .with_timeout(Duration::ZERO, "connect", self.client())
            .await?;
        let result = match client.active {
            ActiveMode::Push => {
                self.with_timeout(wait, "read blocks", async {
                    call_blocks(
                        &client.conn,
                        after,
                        upto,
                        max_blocks,
                        self.config.batch_transactions,
                        wait,
                    )
                    .await
                })
                .await
            }
            ActiveMode::Poll(ids) => {
                let batch = self
                    .with_timeout(
                        Duration::ZERO,
                        "read blocks",
                        select_blocks(&client.conn, ids, after, upto, max_blocks),
                    )
                    .await?;
                if batch.blocks.is_empty() && !wait.is_zero() {
                    tokio::time::sleep(self.config.poll_interval.min(wait)).await;
                }
                Ok(Answer::Selected(batch))
            }
        };
        if let Err(err) = &result {
            self.invalidate_on(err).await;
        }
        result
    }
}

/// What Tarantool answered to a read: the Lua helper's reply (still to be decoded), or the
/// blocks poll mode selected (decoded while they were assembled).
enum Answer {
    Call(CallResponse),
    Selected(BlockBatch),
}

impl Answer {
    fn decode(self) -> Result<BlockBatch, SourceError> {
        match self {
            Answer::Call(reply) => decode_call_reply(reply),
            Answer::Selected(batch) => Ok(batch),
        }
    }
}

async fn install_lua(conn: &Connection) -> Result<String, SourceError> {
    let reply = conn.eval(STREAMS_LUA, ()).await.map_err(classify)?;
    let (protocol, version): (u64, String) = reply.decode_two().map_err(|e| {
        SourceError::corrupt("unexpected reply from installing the Lua helpers").because(e)
    })?;
    if protocol != LUA_PROTOCOL {
        return Err(SourceError::refused(format!(
            "Lua helpers speak protocol {protocol}, expected {LUA_PROTOCOL}"
        )));
    }
    Ok(version)
}

async fn call_blocks(
    conn: &Connection,
    after: u64,
    upto: Option<u64>,
    max_blocks: usize,
    max_transactions: usize,
    wait: Duration,
) -> Result<Answer, SourceError> {
    let upto = upto.map_or(-1i64, |h| i64::try_from(h).unwrap_or(i64::MAX));
    conn.call(
        "planetmint_streams.blocks",
        (
            after,
            upto,
            max_blocks as u64,
            max_transactions as u64,
            wait.as_secs_f64(),
        ),
    )
    .await
    .map(Answer::Call)
    .map_err(classify)
}

/// The Lua helper's reply: one MessagePack string of block records.
fn decode_call_reply(reply: CallResponse) -> Result<BlockBatch, SourceError> {
    let value: rmpv::Value = reply
        .decode_first()
        .map_err(|e| SourceError::corrupt("unexpected blocks reply").because(e))?;
    let bytes = match value {
        rmpv::Value::String(s) => Bytes::from(s.into_bytes()),
        rmpv::Value::Binary(b) => Bytes::from(b),
        other => {
            return Err(SourceError::corrupt(format!(
                "blocks reply is not a MessagePack string: {other}"
            )))
        }
    };
    decode_blocks_reply(bytes)
}

async fn space_ids(conn: &Connection) -> Result<SpaceIds, SourceError> {
    let missing = |what: &str| SourceError::refused(format!("Planetmint schema: {what} not found"));
    let blocks = conn
        .space("blocks")
        .await
        .map_err(classify)?
        .ok_or_else(|| missing("space blocks"))?;
    let blocks_by_height = blocks
        .index("height")
        .ok_or_else(|| missing("index blocks.height"))?
        .metadata()
        .id();
    let transactions = conn
        .space("transactions")
        .await
        .map_err(classify)?
        .ok_or_else(|| missing("space transactions"))?
        .metadata()
        .id();
    let governance = conn
        .space("governance")
        .await
        .map_err(classify)?
        .map(|s| s.metadata().id());
    let outputs = match conn.space("outputs").await.map_err(classify)? {
        Some(space) => space
            .index("transaction_id")
            .map(|index| (space.metadata().id(), index.metadata().id())),
        None => None,
    };
    let abci_chains = match conn.space("abci_chains").await.map_err(classify)? {
        Some(space) => space
            .index("height")
            .map(|index| (space.metadata().id(), index.metadata().id())),
        None => None,
    };
    Ok(SpaceIds {
        blocks: blocks.metadata().id(),
        blocks_by_height,
        transactions,
        governance,
        outputs,
        abci_chains,
    })
}

/// Rows of `space` (through `index`) equal to `key`, each decoded or reported by space and key.
/// The raw rows of `space` whose `index` key is `key`, as the server sent them.
async fn select_raw(
    conn: &Connection,
    (space, index): (u32, u32),
    limit: Option<u32>,
    key: &str,
) -> Result<Vec<rmpv::Value>, SourceError> {
    conn.select(space, index, limit, None, Some(IteratorType::Eq), (key,))
        .await
        .map_err(classify)
}

/// The raw row of transaction `id` and whether it is in `governance` (`None`: stored nowhere).
async fn select_transaction(
    conn: &Connection,
    ids: SpaceIds,
    id: &str,
) -> Result<Option<(rmpv::Value, bool)>, SourceError> {
    let rows = select_raw(conn, (ids.transactions, 0), Some(1), id).await?;
    if let Some(row) = rows.into_iter().next() {
        return Ok(Some((row, false)));
    }
    let Some(governance) = ids.governance else {
        return Ok(None);
    };
    let rows = select_raw(conn, (governance, 0), Some(1), id).await?;
    Ok(rows.into_iter().next().map(|row| (row, true)))
}

async fn select_outputs(
    conn: &Connection,
    ids: SpaceIds,
    id: &str,
) -> Result<Vec<rmpv::Value>, SourceError> {
    let Some(outputs) = ids.outputs else {
        return Ok(Vec::new());
    };
    select_raw(conn, outputs, None, id).await
}

/// Whether an `abci_chains` row has `height`: the empty block row there is `init_chain`'s.
async fn starts_chain(conn: &Connection, ids: SpaceIds, height: u64) -> Result<bool, SourceError> {
    let Some((space, index)) = ids.abci_chains else {
        return Ok(false);
    };
    let rows: Vec<rmpv::Value> = conn
        .select(
            space,
            index,
            Some(1),
            None,
            Some(IteratorType::Eq),
            (height,),
        )
        .await
        .map_err(classify)?;
    Ok(!rows.is_empty())
}

/// The block of block row `raw` (already read as `row`): its rows are gathered into the record
/// shape `streams.lua` returns, so both read modes decode, and keep, blocks the same way.
async fn select_block(
    conn: &Connection,
    ids: SpaceIds,
    raw: rmpv::Value,
    row: &BlockTuple,
) -> Result<CommittedBlock, SourceError> {
    let txs = try_join_all(
        row.transaction_ids
            .iter()
            .map(|id| select_transaction(conn, ids, id)),
    )
    .await?;
    let outputs: Vec<rmpv::Value> = try_join_all(
        row.transaction_ids
            .iter()
            .map(|id| select_outputs(conn, ids, id)),
    )
    .await?
    .into_iter()
    .flatten()
    .collect();
    let chain_start = row.transaction_ids.is_empty() && starts_chain(conn, ids, row.height).await?;
    let mut in_governance = Vec::new();
    let mut tx_rows = Vec::with_capacity(txs.len());
    for (position, found) in txs.into_iter().enumerate() {
        match found {
            Some((tx, governance)) => {
                if governance {
                    in_governance.push(rmpv::Value::from(position));
                }
                tx_rows.push(tx);
            }
            None => tx_rows.push(rmpv::Value::Nil),
        }
    }
    let record = rmpv::Value::Array(vec![
        raw,
        rmpv::Value::Array(tx_rows),
        rmpv::Value::Array(outputs),
        rmpv::Value::Array(in_governance),
        rmpv::Value::Boolean(chain_start),
    ]);
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &record).map_err(|e| {
        SourceError::corrupt(format!("re-encoding block {}", row.height)).because(e)
    })?;
    let mut block = decode_record(record)?;
    block.rows = Some(StoredRows::new(Bytes::from(bytes)));
    Ok(block)
}

async fn select_blocks(
    conn: &Connection,
    ids: SpaceIds,
    after: u64,
    upto: Option<u64>,
    max_blocks: usize,
) -> Result<BlockBatch, SourceError> {
    let limit = u32::try_from(max_blocks).unwrap_or(u32::MAX);
    let rows: Vec<rmpv::Value> = conn
        .select(
            ids.blocks,
            ids.blocks_by_height,
            Some(limit),
            None,
            Some(IteratorType::Gt),
            (after,),
        )
        .await
        .map_err(classify)?;
    let head = highest_height(conn, ids).await?.unwrap_or(0);
    let mut blocks = Vec::with_capacity(rows.len());
    for raw in rows {
        // Blocks before an unusable row stream; the error is reported when it comes first.
        let block = match decode_row::<BlockTuple>(SPACE_BLOCKS, raw.clone()) {
            Ok(row) if upto.is_some_and(|upto| row.height > upto) => break,
            Ok(row) => select_block(conn, ids, raw, &row).await,
            Err(err) => Err(err),
        };
        match block {
            Ok(block) => blocks.push(block),
            Err(err @ SourceError::UnusableRow { .. }) if blocks.is_empty() => return Err(err),
            Err(SourceError::UnusableRow { .. }) => break,
            Err(err) => return Err(err),
        }
    }
    Ok(BlockBatch { head, blocks })
}

/// Height of the first block row in `direction` (`Le`: the highest, `Ge`: the lowest).
async fn edge_height(
    conn: &Connection,
    ids: SpaceIds,
    direction: IteratorType,
) -> Result<Option<u64>, SourceError> {
    let rows: Vec<rmpv::Value> = conn
        .select(
            ids.blocks,
            ids.blocks_by_height,
            Some(1),
            None,
            Some(direction),
            (),
        )
        .await
        .map_err(classify)?;
    // Only the height is needed here: the index guarantees it is an unsigned field.
    Ok(rows
        .first()
        .and_then(|row| row.as_array()?.get(2)?.as_u64()))
}

async fn highest_height(conn: &Connection, ids: SpaceIds) -> Result<Option<u64>, SourceError> {
    edge_height(conn, ids, IteratorType::Le).await
}

async fn lowest_height(conn: &Connection, ids: SpaceIds) -> Result<Option<u64>, SourceError> {
    edge_height(conn, ids, IteratorType::Ge).await
}

#[async_trait]
impl BlockSource for TarantoolSource {
    async fn next_blocks(
        &self,
        after: u64,
        max_blocks: usize,
        wait: Duration,
    ) -> Result<BlockBatch, SourceError> {
        self.read(after, None, max_blocks, wait).await
    }

    async fn blocks_between(
        &self,
        after: u64,
        upto: u64,
        max_blocks: usize,
    ) -> Result<Vec<CommittedBlock>, SourceError> {
        self.fetch_between(after, upto, max_blocks).await?.decode()
    }

    async fn fetch_between(
        &self,
        after: u64,
        upto: u64,
        max_blocks: usize,
    ) -> Result<FetchedBlocks, SourceError> {
        if upto <= after {
            return Ok(FetchedBlocks::decoded(Vec::new()));
        }
        let answer = self
            .read_answer(after, Some(upto), max_blocks, Duration::ZERO)
            .await?;
        Ok(FetchedBlocks::later(move || {
            answer.decode().map(|batch| batch.blocks)
        }))
    }

    async fn bounds(&self) -> Result<Option<HeightBounds>, SourceError> {
        let client = self
            .with_timeout(Duration::ZERO, "connect", self.client())
            .await?;
        let result = self
            .with_timeout(Duration::ZERO, "read bounds", async {
                match client.active {
                    ActiveMode::Push => {
                        let reply = client
                            .conn
                            .call("planetmint_streams.bounds", ())
                            .await
                            .map_err(classify)?;
                        let bounds: Vec<u64> = reply.decode_first().map_err(|e| {
                            SourceError::corrupt("unexpected bounds reply").because(e)
                        })?;
                        Ok(match bounds.as_slice() {
                            [lowest, highest] => Some(HeightBounds {
                                lowest: *lowest,
                                highest: *highest,
                            }),
                            _ => None,
                        })
                    }
                    ActiveMode::Poll(ids) => {
                        let lowest = lowest_height(&client.conn, ids).await?;
                        let highest = highest_height(&client.conn, ids).await?;
                        Ok(lowest
                            .zip(highest)
                            .map(|(lowest, highest)| HeightBounds { lowest, highest }))
                    }
                }
            })
            .await;
        if let Err(err) = &result {
            self.invalidate_on(err).await;
        }
        result
    }
}
