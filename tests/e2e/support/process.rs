//! Programs the tests run as processes: the `planetmint-streams` binary itself (for what only
//! a process shows: signals, being killed, its own memory) and the Python of `make test`.

use std::time::Duration;

use tokio::net::TcpStream;

use super::clients::http::http_get;

/// The node binary built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_planetmint-streams");

/// How long a node process may take to answer.
const START_WITHIN: Duration = Duration::from_secs(10);

/// The `planetmint-streams` binary run as a process on fixed loopback ports, to be killed and
/// started again on the same ports.
pub struct NodeProcess {
    /// The Tarantool it reads (`host:port`).
    pub tarantool: String,
    /// The stream server's port.
    pub streams_port: u16,
    /// The API's port.
    pub api_port: u16,
    /// More environment variables for the process (e.g. `PLANETMINT_STREAMS_NATS__URL`).
    pub env: Vec<(String, String)>,
}

impl NodeProcess {
    /// Ports chosen now, for a node reading `tarantool`.
    pub fn new(tarantool: &str) -> Self {
        Self {
            tarantool: tarantool.to_owned(),
            streams_port: planetmint_streams_devchain::process::free_port().expect("port"),
            api_port: planetmint_streams_devchain::process::free_port().expect("port"),
            env: Vec::new(),
        }
    }

    /// Ports chosen now, for a node whose Tarantool address leads nowhere: it serves
    /// subscribers and its API all the same (and says it is not ready).
    pub fn without_tarantool() -> Self {
        let nowhere = planetmint_streams_devchain::process::free_port().expect("port");
        Self::new(&format!("127.0.0.1:{nowhere}"))
    }

    /// The command that starts the binary on these ports (stderr discarded; killed when the
    /// child is dropped); callers may add settings before spawning it.
    pub fn command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(BIN);
        command
            .args([
                "--tarantool",
                &self.tarantool,
                "--streams-bind",
                &format!("127.0.0.1:{}", self.streams_port),
                "--api-bind",
                &format!("127.0.0.1:{}", self.api_port),
                "--advertised-host",
                "127.0.0.1",
            ])
            .env("PLANETMINT_STREAMS_TARANTOOL__LONG_POLL", "200ms")
            .envs(self.env.iter().cloned())
            .current_dir(std::env::temp_dir())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Starts the binary (see [`NodeProcess::command`]).
    pub fn spawn(&self) -> tokio::process::Child {
        self.command().spawn().expect("node starts")
    }

    /// The API address.
    pub fn api(&self) -> String {
        format!("127.0.0.1:{}", self.api_port)
    }

    /// The transactions stream URL.
    pub fn transactions_url(&self) -> String {
        format!(
            "ws://127.0.0.1:{}/api/v1/streams/valid_transactions",
            self.streams_port
        )
    }

    /// Waits until `/ready` answers 200.
    pub async fn wait_ready(&self) {
        self.wait_for("/ready").await
    }

    /// Waits until `/health` answers 200: the process serves (whether it reaches a Tarantool
    /// or not).
    pub async fn wait_serving(&self) {
        self.wait_for("/health").await
    }

    async fn wait_for(&self, path: &str) {
        let api = self.api();
        let deadline = tokio::time::Instant::now() + START_WITHIN * 2;
        while tokio::time::Instant::now() < deadline {
            if TcpStream::connect(&api).await.is_ok() && http_get(&api, path).await.0 == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("node on {api} never answered 200 on {path}");
    }
}

/// Runs `command` to its end, checks that it succeeded (showing its stderr if not) and
/// returns its stdout.
pub async fn stdout_of(command: &mut tokio::process::Command) -> String {
    let output = command.output().await.expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The Python of `make test` (a venv with `websockets` and `kosoku`), or `PMS_PYTHON`.
pub fn python() -> String {
    std::env::var("PMS_PYTHON").unwrap_or_else(|_| {
        let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/target/py/bin/python3");
        assert!(
            std::path::Path::new(venv).exists(),
            "this test needs Python with `websockets`: run `make test` (or scripts/ensure-deps.sh), or set PMS_PYTHON"
        );
        venv.to_owned()
    })
}
