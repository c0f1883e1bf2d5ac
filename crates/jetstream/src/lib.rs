//! The JetStream tier: both streams published into NATS JetStream, for what a stateless node
//! cannot give its clients (durable server-side cursors, seek by sequence or time, consumer
//! groups across nodes, fan-out past one machine). Optional, off without `[nats]`.
//!
//! It sits beside the broadcaster on the `model` seam and knows nothing of sockets or of
//! Tarantool: live blocks come through a [`BlockSink`](planetmint_streams_model::BlockSink)
//! ([`LiveSink`], fed by the follower next to the hub), history from the
//! [`BlockSource`](planetmint_streams_model::BlockSource).
//!
//! - [`config`]: `[nats]` and its validation.
//! - [`names`]: subjects, JetStream stream names and message headers.
//! - [`publisher`]: the publisher (exactly once, in chain order, never slowing the fan-out).
//! - [`streams`]: creating and checking the JetStream streams.
//! - [`seek`]: a height turned into the stream sequence to start from.
//! - [`jwt`]: NATS JWTs, encoded and verified.
//! - [`credentials`]: the gateway's identity JWTs and clients' user JWTs
//!   ([`Issuer`](credentials::Issuer)), and the keys `planetmint-streams nats-config` writes.
//! - [`metrics`]: lag, errors and throughput on `/metrics`.
#![forbid(unsafe_code)]

pub mod config;
pub mod credentials;
pub mod jwt;
pub mod metrics;
pub mod names;
pub mod publisher;
pub mod seek;
pub mod streams;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use planetmint_streams_model::vocabulary::StreamKind;
use planetmint_streams_model::BlockSource;
use prometheus::Registry;

pub use config::NatsConfig;
pub use credentials::{Identity, Issuer, NatsSetup};
pub use metrics::JetStreamMetrics;
pub use names::StreamNames;
pub use publisher::{LiveSink, Publisher};
pub use seek::{SeekAnswer, SeekError};

/// Why the tier could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    /// The signing key or credentials could not be loaded.
    #[error(transparent)]
    Credentials(#[from] credentials::CredentialsError),
    /// The metrics could not be registered.
    #[error("registering the JetStream metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// What the rest of the node asks of the tier (cheap to clone).
#[derive(Clone)]
pub struct JetStreamTier {
    shared: Arc<publisher::Shared>,
    issuer: Arc<Issuer>,
}

impl JetStreamTier {
    /// The tier `config` describes, reading history from `source`, its metrics in `registry`;
    /// with the [`Publisher`] to run and the [`LiveSink`] the follower must feed.
    pub fn new(
        config: NatsConfig,
        source: Arc<dyn BlockSource>,
        registry: &Registry,
    ) -> Result<(Self, Publisher, Arc<LiveSink>), TierError> {
        let issuer = Arc::new(Issuer::from_config(&config)?);
        let metrics = JetStreamMetrics::new(registry)?;
        let shared = Arc::new(publisher::Shared {
            names: StreamNames::both(&config.prefix),
            config,
            metrics,
            head: AtomicU64::new(0),
            context: Mutex::new(None),
        });
        let (publisher, sink) = publisher::publisher(shared.clone(), source);
        Ok((Self { shared, issuer }, publisher, sink))
    }

    /// `[nats]`.
    pub fn config(&self) -> &NatsConfig {
        &self.shared.config
    }

    /// Where both streams live, transactions first.
    pub fn names(&self) -> &[StreamNames; 2] {
        &self.shared.names
    }

    /// Where `kind` lives.
    pub fn names_of(&self, kind: StreamKind) -> &StreamNames {
        match kind {
            StreamKind::ValidTransactions => &self.shared.names[0],
            StreamKind::ValidBlocks => &self.shared.names[1],
        }
    }

    /// The stream a speedracer dataset names: one of our subjects (speedracer lowercases it).
    pub fn dataset(&self, dataset: &str) -> Option<&StreamNames> {
        let subject = dataset.to_lowercase();
        self.shared.names.iter().find(|n| n.subject == subject)
    }

    /// Signs gateway and user JWTs.
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// Seek by height on `kind`'s stream.
    pub async fn seek(&self, kind: StreamKind, height: u64) -> Result<SeekAnswer, SeekError> {
        let context = self.shared.context().ok_or(SeekError::NotConnected)?;
        seek::sequence_for_height(&context, self.names_of(kind), height).await
    }

    /// Whether the publisher is connected with both streams checked.
    pub fn is_up(&self) -> bool {
        self.shared.metrics.up.get() == 1
    }

    /// How many blocks the streams are behind the chain's head.
    pub fn lag_blocks(&self) -> u64 {
        u64::try_from(self.shared.metrics.lag_blocks.get()).unwrap_or(0)
    }

    /// Every event up to this height is in both streams.
    pub fn published_height(&self) -> u64 {
        u64::try_from(self.shared.metrics.published_height.get()).unwrap_or(0)
    }

    /// The highest height the follower handed on.
    pub fn head_height(&self) -> u64 {
        self.shared.head.load(Ordering::Relaxed)
    }
}
