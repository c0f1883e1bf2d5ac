//! A nats-server process with JetStream (and a WebSocket listener) for tests, benchmarks and
//! the demo: free loopback ports, a temporary directory; killable (`kill -9`) and restartable
//! on the same ports and JetStream store. Debian's `nats-server` package (2.9) is enough.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::process::{self, free_port};

/// How to start nats-server.
#[derive(Debug, Clone, Default)]
pub struct NatsOptions {
    /// Configuration included as it is (e.g. the `auth.conf` that
    /// `planetmint-streams nats-config` writes, for operator mode).
    pub include: Option<String>,
    /// More configuration lines.
    pub extra_conf: String,
    /// A 3-node cluster member: the cluster's name, this node's cluster port and every
    /// node's cluster port (see [`NatsServer::start_cluster`]).
    pub cluster: Option<(String, u16, Vec<u16>)>,
}

/// A running nats-server; killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    dir: tempfile::TempDir,
    port: u16,
    websocket_port: u16,
    child: Option<Child>,
}

/// Failure to start nats-server.
#[derive(Debug, thiserror::Error)]
pub enum NatsStartError {
    /// The `nats-server` binary could not be run.
    #[error("cannot run `nats-server` (install it: apt-get install -y nats-server): {0}")]
    Spawn(std::io::Error),
    /// It did not accept connections in time; the log tail says why.
    #[error("nats-server did not start on port {port}; log tail:\n{log}")]
    NotListening {
        /// Its client port.
        port: u16,
        /// Last lines of its log.
        log: String,
    },
    /// Other I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl NatsServer {
    /// Starts nats-server with JetStream, no authentication, WebSocket without TLS.
    pub async fn start() -> Result<Self, NatsStartError> {
        Self::start_with(NatsOptions::default()).await
    }

    /// Starts nats-server with `options` (another port when the one chosen was taken).
    pub async fn start_with(options: NatsOptions) -> Result<Self, NatsStartError> {
        process::until_ports_are_free(
            || Self::start_on_free_ports(&options),
            |err| matches!(err, NatsStartError::NotListening { log, .. } if log.contains("address already in use")),
        )
        .await
    }

    /// Three nats-servers clustered on loopback (JetStream replicated across them).
    pub async fn start_cluster(name: &str) -> Result<Vec<Self>, NatsStartError> {
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
        let mut nodes = Vec::new();
        for &port in &routes {
            let options = NatsOptions {
                cluster: Some((name.to_owned(), port, routes.clone())),
                ..NatsOptions::default()
            };
            nodes.push(Self::prepare(&options)?);
        }
        for node in &mut nodes {
            node.spawn_process()?;
        }
        for node in &mut nodes {
            node.wait_listening().await?;
        }
        Ok(nodes)
    }

    fn prepare(options: &NatsOptions) -> Result<Self, NatsStartError> {
        let dir = tempfile::Builder::new().prefix("pms-nats-").tempdir()?;
        let port = free_port()?;
        let websocket_port = free_port()?;
        let mut conf = format!(
            "listen: 127.0.0.1:{port}\n\
             server_name: pms-{port}\n\
             jetstream {{\n  store_dir: \"{store}\"\n}}\n\
             websocket {{\n  listen: \"127.0.0.1:{websocket_port}\"\n  no_tls: true\n}}\n",
            store = dir.path().join("jetstream").display(),
        );
        if let Some((name, cluster_port, routes)) = &options.cluster {
            let routes: Vec<String> = routes
                .iter()
                .map(|p| format!("    nats-route://127.0.0.1:{p}"))
                .collect();
            conf.push_str(&format!(
                "cluster {{\n  name: {name}\n  listen: 127.0.0.1:{cluster_port}\n  routes: [\n{}\n  ]\n}}\n",
                routes.join("\n")
            ));
        }
        if let Some(include) = &options.include {
            std::fs::write(dir.path().join("included.conf"), include)?;
            conf.push_str("include \"included.conf\"\n");
        }
        conf.push_str(&options.extra_conf);
        std::fs::write(dir.path().join("nats.conf"), conf)?;
        Ok(Self {
            dir,
            port,
            websocket_port,
            child: None,
        })
    }

    async fn start_on_free_ports(options: &NatsOptions) -> Result<Self, NatsStartError> {
        let mut server = Self::prepare(options)?;
        server.spawn().await?;
        Ok(server)
    }

    fn spawn_process(&mut self) -> Result<(), NatsStartError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = Command::new("nats-server")
            .args(["-c", "nats.conf"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .map_err(NatsStartError::Spawn)?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_listening(&mut self) -> Result<(), NatsStartError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::time::Instant::now() < deadline {
            if greets(self.port).await
                && TcpStream::connect(("127.0.0.1", self.websocket_port))
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(NatsStartError::NotListening {
            port: self.port,
            log: self.log_tail(),
        })
    }

    async fn spawn(&mut self) -> Result<(), NatsStartError> {
        self.spawn_process()?;
        self.wait_listening().await
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `ws://127.0.0.1:PORT` (the WebSocket listener).
    pub fn websocket_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.websocket_port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The working directory (configuration, log, JetStream store).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        process::tail(&self.log_path(), 30)
    }

    /// `kill -9`.
    pub async fn kill(&mut self) {
        process::kill(&mut self.child).await;
    }

    /// Starts it again on the same ports and JetStream store (after [`kill`](Self::kill)).
    pub async fn restart(&mut self) -> Result<(), NatsStartError> {
        self.kill().await;
        self.spawn().await
    }
}

/// Whether something on `port` sends a NATS `INFO` line.
async fn greets(port: u16) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let mut info = [0u8; 4];
        stream.read_exact(&mut info).await.ok()?;
        (&info == b"INFO").then_some(())
    };
    tokio::time::timeout(Duration::from_millis(500), attempt)
        .await
        .ok()
        .flatten()
        .is_some()
}
