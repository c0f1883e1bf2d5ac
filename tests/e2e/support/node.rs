//! Nodes under test: the real node in this process (`node::start_with_source`) on an
//! in-memory source ([`Harness`]), the default for every test that is not about Tarantool;
//! the real node on a real Tarantool ([`TarantoolHarness`]), for those that are.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use planetmint_streams::config::Config;
use planetmint_streams::RunningNode;
use planetmint_streams_devchain::generate::GeneratedBlock;
use planetmint_streams_devchain::process::TarantoolProcess;
use planetmint_streams_ingest::MemorySource;
use planetmint_streams_model::CommittedBlock;

use super::chain::{ChainWriter, Store};
use super::clients::http::http_get;

/// How long a node may take to reach its source and to become ready.
const START_WITHIN: Duration = Duration::from_secs(20);

/// A loopback address on a port from `free_port` (outside the kernel's ephemeral range, so a
/// node stopped and started again on it finds it free).
fn free_address() -> String {
    let port = planetmint_streams_devchain::process::free_port().expect("a free port");
    format!("127.0.0.1:{port}")
}

/// A configuration for tests: free loopback ports, short timers. The Tarantool address is the
/// default one, which nothing reads on an in-memory source.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.tarantool.reconnect_min = Duration::from_millis(20);
    config.tarantool.reconnect_max = Duration::from_millis(300);
    config.tarantool.request_timeout = Duration::from_secs(3);
    config.tarantool.long_poll = Duration::from_millis(500);
    config.streams.bind = free_address();
    config.streams.advertised_host = "127.0.0.1".into();
    config.streams.workers = 2;
    config.streams.shutdown_grace = Duration::from_secs(3);
    config.api.bind = free_address();
    config
}

/// [`test_config`] for a node reading the Tarantool at `address`.
pub fn tarantool_config(address: &str) -> Config {
    let mut config = test_config();
    config.tarantool.address = address.to_owned();
    config
}

/// Signed mode with one signing key (`k1`), for tests of credentials (see [`issue_token`]).
pub fn signed_with_key(config: &mut Config) {
    config.auth.mode = planetmint_streams_auth::AuthMode::Signed;
    config.auth.keys = vec![planetmint_streams_auth::KeyConfig {
        id: "k1".into(),
        secret: Some(planetmint_streams_auth::SecretString::new("00".repeat(32))),
        secret_file: None,
    }];
}

/// A stream token of `node`'s signing keys for `streams`, valid for `ttl` (the default when
/// `None`).
pub fn issue_token(
    node: &RunningNode,
    streams: impl IntoIterator<Item = planetmint_streams_auth::Stream>,
    ttl: Option<Duration>,
) -> String {
    node.gatekeeper
        .token_authority()
        .expect("signing keys")
        .issue(&planetmint_streams_auth::Grant::new(streams), ttl)
        .expect("a token")
        .token
}

/// What every node under test offers the tests.
pub trait NodeUnderTest {
    /// The running node.
    fn node(&self) -> &RunningNode;

    /// Where its blocks are committed.
    fn store(&self) -> Store;

    /// The API's base URL (`http://127.0.0.1:PORT`).
    fn api(&self) -> String {
        format!("http://{}", self.node().api_addr)
    }

    /// The stream server's base URL (`ws://127.0.0.1:PORT`).
    fn streams_base(&self) -> String {
        format!("ws://{}", self.node().streams_addr)
    }

    /// A writer committing blocks to its source, as Planetmint does.
    #[allow(async_fn_in_trait)]
    async fn writer(&self) -> ChainWriter {
        self.store().writer().await
    }

    /// Waits until `/ready` says 200.
    #[allow(async_fn_in_trait)]
    async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + START_WITHIN;
        loop {
            let (status, body) = http_get(&self.node().api_addr.to_string(), "/ready").await;
            if status == 200 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node never became ready: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Waits until the node's ingest has reached its source (whatever the API says).
async fn wait_started(node: &RunningNode) {
    let deadline = tokio::time::Instant::now() + START_WITHIN;
    let status = &node.status;
    while !(status.is_started() && status.is_reachable()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node never reached its source"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The real node on an in-memory source: everything but Tarantool.
pub struct Harness {
    /// The source the node reads; tests commit blocks to it (see [`NodeUnderTest::writer`]).
    pub source: Arc<MemorySource>,
    /// The node (`None` once a test has taken it to shut it down).
    pub node: Option<RunningNode>,
    config: Config,
}

impl Harness {
    /// A node with [`test_config`] on an empty source.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A node with [`test_config`] changed by `adjust`, on an empty source.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::over(&[], adjust).await
    }

    /// A node started after `blocks` were committed (its memory ring is empty: a resume from
    /// an old height reads the source).
    pub async fn over(blocks: &[GeneratedBlock], adjust: impl FnOnce(&mut Config)) -> Self {
        let source = Arc::new(MemorySource::new());
        for block in blocks {
            source
                .commit_rows(&block.rows())
                .expect("history committed");
        }
        let mut config = test_config();
        adjust(&mut config);
        let node = start_on_test_ports(&mut config, |config| {
            planetmint_streams::start_with_source(config, source.clone())
        })
        .await;
        Self {
            source,
            node: Some(node),
            config,
        }
    }

    /// Stops the node gracefully (SIGTERM's shutdown: subscribers get 1001);
    /// [`Harness::start_again`] brings it back on the same ports and the same chain.
    pub async fn stop(&mut self) {
        let node = self.node.take().expect("node running");
        self.config.streams.bind = node.streams_addr.to_string();
        self.config.api.bind = node.api_addr.to_string();
        node.shutdown().await;
    }

    /// Starts the stopped node again on its ports (see [`Harness::stop`]).
    pub async fn start_again(&mut self) {
        assert!(self.node.is_none(), "the node was stopped first");
        self.node = Some(start_node(&self.config, &self.source).await);
    }

    /// Commits `block` (made by hand, e.g. [`synthetic_block`](planetmint_streams_devchain::generate::synthetic_block)) and waits until the node has
    /// published it.
    pub async fn commit(&self, block: CommittedBlock) {
        let height = block.height;
        self.source.commit(block);
        let deadline = tokio::time::Instant::now() + START_WITHIN;
        while self.node().hub.last_published() < Some(height) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "block {height} was never published"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Starts the node again on the same source and on `ports` (the addresses the stopped
    /// node had), with the same configuration.
    pub async fn restart_on(&mut self, streams: SocketAddr, api: SocketAddr) {
        assert!(self.node.is_none(), "the node was stopped first");
        let mut config = self.config.clone();
        config.streams.bind = streams.to_string();
        config.api.bind = api.to_string();
        self.node = Some(start_node(&config, &self.source).await);
    }
}

/// Starts a node with `start` and waits until it has reached its source. When a port of
/// `config` was taken between [`test_config`] choosing it and the node binding it (another
/// test's `free_port`), it starts again on other free ports.
async fn start_on_test_ports<Fut>(config: &mut Config, start: impl Fn(Config) -> Fut) -> RunningNode
where
    Fut: std::future::Future<Output = anyhow::Result<RunningNode>>,
{
    let taken = |err: &anyhow::Error| {
        err.chain().any(|cause| {
            cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse)
        })
    };
    let mut attempt = 1;
    loop {
        match start(config.clone()).await {
            Ok(node) => {
                wait_started(&node).await;
                return node;
            }
            Err(err) if attempt < 3 && taken(&err) => {
                attempt += 1;
                config.streams.bind = free_address();
                config.api.bind = free_address();
            }
            Err(err) => panic!("node starts: {err:?}"),
        }
    }
}

async fn start_node(config: &Config, source: &Arc<MemorySource>) -> RunningNode {
    let node = planetmint_streams::start_with_source(config.clone(), source.clone())
        .await
        .expect("node starts");
    wait_started(&node).await;
    node
}

impl NodeUnderTest for Harness {
    fn node(&self) -> &RunningNode {
        self.node.as_ref().expect("node running")
    }

    fn store(&self) -> Store {
        Store::Memory(self.source.clone())
    }
}

/// A Tarantool with Planetmint's schema and the real node reading it: for the tests whose
/// subject is Tarantool (the source, its outages, its read modes, rows as Planetmint wrote
/// them, replicas).
pub struct TarantoolHarness {
    /// The Tarantool process (tests kill and restart it).
    pub tarantool: TarantoolProcess,
    /// The node (`None` once a test has taken it to shut it down).
    pub node: Option<RunningNode>,
}

impl TarantoolHarness {
    /// A fresh Tarantool and a node with [`tarantool_config`] reading it.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A fresh Tarantool and a node with [`tarantool_config`] changed by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let tarantool = TarantoolProcess::start().await.expect("tarantool starts");
        let mut config = tarantool_config(&tarantool.address());
        adjust(&mut config);
        let node = start_on_test_ports(&mut config, planetmint_streams::start).await;
        Self {
            tarantool,
            node: Some(node),
        }
    }
}

impl NodeUnderTest for TarantoolHarness {
    fn node(&self) -> &RunningNode {
        self.node.as_ref().expect("node running")
    }

    fn store(&self) -> Store {
        Store::Tarantool(self.tarantool.address())
    }
}
