//! [`FailoverSource`]: several Tarantool endpoints in order of preference (typically a local
//! read replica, then the master), one in use at a time.
//!
//! Every read goes to the endpoint in use. When it is unavailable, the others are tried in
//! order of preference and the first that answers becomes the one in use; reads are by height
//! ("after the cursor"), so switching loses and repeats nothing, even when a replica lags. An
//! endpoint that failed is skipped at once while its relay cannot reach it, so a failover takes
//! a round trip, not a timeout. Every `failback_interval` a more preferred endpoint is probed
//! and taken back once it answers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use planetmint_streams_model::{
    BlockBatch, BlockSource, CommittedBlock, FetchedBlocks, HeightBounds, SourceError,
};
use prometheus::IntCounter;
use tracing::{info, warn};

use super::config::TarantoolConfig;
use super::source::TarantoolSource;

struct Endpoint {
    address: String,
    source: TarantoolSource,
}

impl Endpoint {
    /// Known to be down: it was connected before and its relay cannot reach it now.
    fn known_down(&self) -> bool {
        let state = self.source.relay_state();
        state.sessions() > 0 && !state.reachable()
    }
}

/// Reads from the first available of several Tarantool endpoints.
pub struct FailoverSource {
    endpoints: Vec<Endpoint>,
    active: AtomicUsize,
    failback_interval: Duration,
    last_failback_probe: Mutex<Instant>,
    failovers: IntCounter,
}

impl FailoverSource {
    /// Endpoints `config.address` then `config.fallbacks`, each with the same settings.
    /// `failovers` counts switches between them.
    pub async fn new(config: &TarantoolConfig, failovers: IntCounter) -> std::io::Result<Self> {
        let mut endpoints = Vec::new();
        for address in std::iter::once(&config.address).chain(&config.fallbacks) {
            let endpoint_config = TarantoolConfig {
                address: address.clone(),
                ..config.clone()
            };
            endpoints.push(Endpoint {
                address: address.clone(),
                source: TarantoolSource::new(endpoint_config).await?,
            });
        }
        Ok(Self {
            endpoints,
            active: AtomicUsize::new(0),
            failback_interval: config.failback_interval,
            last_failback_probe: Mutex::new(Instant::now()),
            failovers,
        })
    }

    /// Address of the endpoint in use.
    pub fn active_address(&self) -> &str {
        &self.endpoints[self.active.load(Ordering::Acquire)].address
    }

    /// The endpoint sources, in order of preference (for tests and diagnostics).
    pub fn sources(&self) -> impl Iterator<Item = &TarantoolSource> {
        self.endpoints.iter().map(|e| &e.source)
    }

    fn switch_to(&self, index: usize, why: &str) {
        let previous = self.active.swap(index, Ordering::AcqRel);
        if previous != index {
            self.failovers.inc();
            info!(
                from = %self.endpoints[previous].address,
                to = %self.endpoints[index].address,
                why,
                "switched Tarantool endpoint; streaming continues from the cursor"
            );
        }
    }

    /// Takes a more preferred endpoint back when it answers again.
    async fn fail_back(&self) {
        let active = self.active.load(Ordering::Acquire);
        if active == 0 {
            return;
        }
        {
            let mut last = self
                .last_failback_probe
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last.elapsed() < self.failback_interval {
                return;
            }
            *last = Instant::now();
        }
        for (index, endpoint) in self.endpoints.iter().enumerate().take(active) {
            let timeout = endpoint.source.config().connect_timeout;
            if let Ok(Ok(_)) = tokio::time::timeout(timeout, endpoint.source.bounds()).await {
                self.switch_to(index, "a preferred endpoint answers again");
                return;
            }
        }
    }

    /// Runs `read` on the endpoint in use, failing over on unavailability.
    async fn read(&self, read: Read) -> Result<Reply, SourceError> {
        self.fail_back().await;
        let active = self.active.load(Ordering::Acquire);
        let order =
            std::iter::once(active).chain((0..self.endpoints.len()).filter(|&i| i != active));
        let mut first_error = None;
        for index in order {
            let endpoint = &self.endpoints[index];
            if endpoint.known_down() && index != active {
                continue;
            }
            if index == active && endpoint.known_down() && self.endpoints.len() > 1 {
                first_error.get_or_insert(SourceError::unavailable(format!(
                    "{} is unreachable",
                    endpoint.address
                )));
                continue;
            }
            match read.run(&endpoint.source).await {
                Ok(value) => {
                    if index != active {
                        self.switch_to(index, "the endpoint in use is unavailable");
                    }
                    return Ok(value);
                }
                Err(err @ SourceError::Unavailable { .. }) => {
                    if index == active && self.endpoints.len() > 1 {
                        warn!(endpoint = %endpoint.address, error = %err.chain(), "Tarantool endpoint unavailable; trying the others");
                    }
                    first_error.get_or_insert(err);
                }
                // A refusal or bad data is not cured by another endpoint of the same cluster.
                Err(err) => return Err(err),
            }
        }
        Err(first_error
            .unwrap_or_else(|| SourceError::unavailable("no Tarantool endpoint configured")))
    }
}

/// One read, to run on whichever endpoint is in use.
#[derive(Debug, Clone, Copy)]
enum Read {
    Next {
        after: u64,
        max_blocks: usize,
        wait: Duration,
    },
    Between {
        after: u64,
        upto: u64,
        max_blocks: usize,
    },
    Bounds,
}

enum Reply {
    Batch(BlockBatch),
    Blocks(FetchedBlocks),
    Bounds(Option<HeightBounds>),
}

impl Read {
    async fn run(self, source: &TarantoolSource) -> Result<Reply, SourceError> {
        Ok(match self {
            Read::Next {
                after,
                max_blocks,
                wait,
            } => Reply::Batch(source.next_blocks(after, max_blocks, wait).await?),
            Read::Between {
                after,
                upto,
                max_blocks,
            } => Reply::Blocks(source.fetch_between(after, upto, max_blocks).await?),
            Read::Bounds => Reply::Bounds(source.bounds().await?),
        })
    }
}

fn mismatched() -> SourceError {
    SourceError::corrupt("internal: a read answered with the wrong kind of reply")
}

#[async_trait]
impl BlockSource for FailoverSource {
    async fn next_blocks(
        &self,
        after: u64,
        max_blocks: usize,
        wait: Duration,
    ) -> Result<BlockBatch, SourceError> {
        match self
            .read(Read::Next {
                after,
                max_blocks,
                wait,
            })
            .await?
        {
            Reply::Batch(batch) => Ok(batch),
            _ => Err(mismatched()),
        }
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
        match self
            .read(Read::Between {
                after,
                upto,
                max_blocks,
            })
            .await?
        {
            Reply::Blocks(blocks) => Ok(blocks),
            _ => Err(mismatched()),
        }
    }

    async fn bounds(&self) -> Result<Option<HeightBounds>, SourceError> {
        match self.read(Read::Bounds).await? {
            Reply::Bounds(bounds) => Ok(bounds),
            _ => Err(mismatched()),
        }
    }
}
