//! Writes blocks into Tarantool the way Planetmint commits them.
//!
//! Planetmint's ABCI commit stores each transaction and its outputs (ordinary transactions in
//! `transactions`, elections and votes in `governance`), then the block row, last: the row is
//! the commit marker. Every write is its own request. `replace` is used instead of `insert` so
//! that a block can be written again after a crash without failing on rows that survived.

use std::time::Duration;

use planetmint_streams_ingest::tarantool::{connect, TarantoolConnection};
use planetmint_streams_model::tuple::BlockTuple;
use rmpv::Value;
use tarantool_rs::{ExecutorExt, IteratorType, Value as TValue};

use crate::generate::GeneratedBlock;

/// Failure to write.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Tarantool refused or could not be reached.
    #[error("tarantool: {0}")]
    Tarantool(#[from] tarantool_rs::Error),
    /// The schema lacks a space.
    #[error("space {0} does not exist: load Planetmint's schema first")]
    MissingSpace(&'static str),
    /// The schema lacks an index.
    #[error("index {0} does not exist: load Planetmint's schema first")]
    MissingIndex(&'static str),
    /// A space asked for by name does not exist.
    #[error("space {0} does not exist")]
    UnknownSpace(String),
    /// A row is not an array.
    #[error("row is not a tuple: {0}")]
    BadRow(String),
}

/// The ids of Planetmint's spaces a block is written to.
#[derive(Debug, Clone, Copy)]
pub struct Spaces {
    /// `blocks`.
    pub blocks: u32,
    /// `transactions`.
    pub transactions: u32,
    /// `governance`.
    pub governance: u32,
    /// `outputs`.
    pub outputs: u32,
}

/// A writer connected to one Tarantool.
#[derive(Debug)]
pub struct PlanetmintWriter {
    connection: TarantoolConnection,
    spaces: Spaces,
}

const GOVERNANCE_OPERATIONS: &[&str] = &["VALIDATOR_ELECTION", "CHAIN_MIGRATION_ELECTION", "VOTE"];

fn tuple_fields(row: &Value) -> Result<Vec<TValue>, WriteError> {
    match row {
        Value::Array(fields) => Ok(fields.clone()),
        other => Err(WriteError::BadRow(other.to_string())),
    }
}

impl PlanetmintWriter {
    /// The ids of the spaces it writes to, looked up when it connected.
    pub fn space_ids(&self) -> Spaces {
        self.spaces
    }

    /// Connects to the Tarantool at `address` (2.6 or 2.10+).
    pub async fn connect(address: &str) -> Result<Self, WriteError> {
        let connection = connect(
            address,
            None,
            Duration::from_secs(2),
            (Duration::from_millis(20), Duration::from_millis(500)),
        )
        .await?;
        let spaces = Self::spaces(&connection).await?;
        Ok(Self { connection, spaces })
    }

    async fn spaces(connection: &TarantoolConnection) -> Result<Spaces, WriteError> {
        let conn = &connection.conn;
        let id = |name: &'static str| async move {
            conn.space(name)
                .await?
                .map(|s| s.metadata().id())
                .ok_or(WriteError::MissingSpace(name))
        };
        Ok(Spaces {
            blocks: id("blocks").await?,
            transactions: id("transactions").await?,
            governance: id("governance").await?,
            outputs: id("outputs").await?,
        })
    }

    /// Height of the highest block row, if there is one.
    pub async fn head_height(&self) -> Result<Option<u64>, WriteError> {
        Ok(self.head_block().await?.map(|(height, _)| height))
    }

    /// The highest block: its height and `app_hash`; `None` when there is none.
    pub async fn head_block(&self) -> Result<Option<(u64, String)>, WriteError> {
        let conn = &self.connection.conn;
        let blocks = conn
            .space("blocks")
            .await?
            .ok_or(WriteError::MissingSpace("blocks"))?;
        let index = blocks
            .index("height")
            .ok_or(WriteError::MissingIndex("blocks.height"))?
            .metadata()
            .id();
        let rows: Vec<BlockTuple> = conn
            .select(
                self.spaces.blocks,
                index,
                Some(1),
                None,
                Some(IteratorType::Le),
                (),
            )
            .await?;
        Ok(rows.first().map(|row| (row.height, row.app_hash.clone())))
    }

    /// The id of the space `name`.
    pub async fn space_id(&self, name: &str) -> Result<u32, WriteError> {
        self.connection
            .conn
            .space(name)
            .await?
            .map(|s| s.metadata().id())
            .ok_or_else(|| WriteError::UnknownSpace(name.to_owned()))
    }

    /// The underlying tarantool-rs connection.
    pub fn connection(&self) -> &tarantool_rs::Connection {
        &self.connection.conn
    }

    /// Writes one row into a space by id.
    pub async fn replace_row(&self, space: u32, row: &Value) -> Result<(), WriteError> {
        self.connection
            .conn
            .replace(space, tuple_fields(row)?)
            .await?;
        Ok(())
    }

    /// Writes a block: its transactions and outputs, then its row.
    pub async fn write_block(&self, block: &GeneratedBlock) -> Result<(), WriteError> {
        let (governance, ordinary): (Vec<_>, Vec<_>) = block
            .transactions
            .iter()
            .partition(|tx| GOVERNANCE_OPERATIONS.contains(&tx.operation.as_str()));
        for (space, txs) in [
            (self.spaces.transactions, ordinary),
            (self.spaces.governance, governance),
        ] {
            for tx in txs {
                self.replace_row(space, &tx.row).await?;
                for output in &tx.outputs {
                    self.replace_row(self.spaces.outputs, output).await?;
                }
            }
        }
        self.replace_row(self.spaces.blocks, &block.row).await
    }

    /// Writes what a chain migration leaves in Tarantool, in Planetmint's order: the
    /// `abci_chains` row the concluded election stores (`chain_id` from `height`, not synced),
    /// then the empty block row `init_chain` stores at `height` (repeating `app_hash`), then
    /// the chain marked synced. Planetmint publishes no event for that block row.
    pub async fn migrate_chain(
        &self,
        chain_id: &str,
        height: u64,
        app_hash: &str,
        block_id: &str,
    ) -> Result<(), WriteError> {
        let conn = &self.connection.conn;
        let chains = conn
            .space("abci_chains")
            .await?
            .ok_or(WriteError::MissingSpace("abci_chains"))?
            .metadata()
            .id();
        let chain = |synced: bool| {
            Value::Array(vec![
                Value::from(chain_id),
                Value::from(height),
                Value::from(synced),
            ])
        };
        self.replace_row(chains, &chain(false)).await?;
        let row = Value::Array(vec![
            Value::from(block_id),
            Value::from(app_hash),
            Value::from(height),
            Value::Array(vec![]),
        ]);
        self.replace_row(self.spaces.blocks, &row).await?;
        self.replace_row(chains, &chain(true)).await
    }

    /// Writes rows given as raw tuples (fixture data): transactions (elections and votes into
    /// `governance`), outputs, then the block.
    pub async fn write_rows(
        &self,
        transactions: &[Value],
        outputs: &[Value],
        block: &Value,
    ) -> Result<(), WriteError> {
        // Planetmint writes a block's ordinary transactions before its governance ones.
        let is_governance = |tx: &&Value| {
            tx.as_array()
                .and_then(|fields| fields.get(1))
                .and_then(Value::as_str)
                .is_some_and(|op| GOVERNANCE_OPERATIONS.contains(&op))
        };
        for tx in transactions.iter().filter(|tx| !is_governance(tx)) {
            self.replace_row(self.spaces.transactions, tx).await?;
        }
        for tx in transactions.iter().filter(is_governance) {
            self.replace_row(self.spaces.governance, tx).await?;
        }
        for output in outputs {
            self.replace_row(self.spaces.outputs, output).await?;
        }
        self.replace_row(self.spaces.blocks, block).await
    }

    /// Writes a block, retrying (with a new connection if need be) until it is stored or
    /// `give_up` passes: for writers that must survive Tarantool restarts.
    pub async fn write_block_retrying(
        &mut self,
        address: &str,
        block: &GeneratedBlock,
        give_up: Duration,
    ) -> Result<(), WriteError> {
        let deadline = tokio::time::Instant::now() + give_up;
        loop {
            let attempt =
                tokio::time::timeout(Duration::from_secs(2), self.write_block(block)).await;
            match attempt {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(err)) if tokio::time::Instant::now() >= deadline => return Err(err),
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(WriteError::Tarantool(tarantool_rs::Error::Timeout))
                }
                _ => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if let Ok(Ok(fresh)) =
                        tokio::time::timeout(Duration::from_secs(2), Self::connect(address)).await
                    {
                        *self = fresh;
                    }
                }
            }
        }
    }
}
