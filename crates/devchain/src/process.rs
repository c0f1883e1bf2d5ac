//! A Tarantool process for tests and the demo: free loopback port, temporary directory,
//! Planetmint's schema; killable and restartable on the same data.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::PLANETMINT_SCHEMA_LUA;

/// How to start the process.
#[derive(Debug, Clone, Default)]
pub struct TarantoolOptions {
    /// Lua run after the schema is loaded (extra users, grants, replication settings...).
    pub extra_lua: String,
    /// Extra `box.cfg` entries, as Lua table fields (e.g. `replication = {...}, read_only = true`).
    pub extra_cfg: String,
    /// Skip loading Planetmint's schema (a replica receives it from its master).
    pub without_schema: bool,
}

/// A running Tarantool; killed when dropped.
#[derive(Debug)]
pub struct TarantoolProcess {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

/// Failure to start Tarantool.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The `tarantool` binary could not be run.
    #[error("cannot run `tarantool` (install it: apt-get install -y tarantool): {0}")]
    Spawn(std::io::Error),
    /// It did not accept connections in time; the log tail says why.
    #[error("tarantool did not start listening on port {port}; log tail:\n{log}")]
    NotListening {
        /// The port it was given.
        port: u16,
        /// Last lines of its log.
        log: String,
    },
    /// Other I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// How many times a test server is started when a port it chose is taken meanwhile.
const PORT_ATTEMPTS: u32 = 5;

/// Runs `start` again (up to [`PORT_ATTEMPTS`] times in all) while it fails only because a
/// port that was free a moment ago was taken in between (`taken`): parallel tests on a busy
/// machine.
pub async fn until_ports_are_free<T, E, Fut>(
    mut start: impl FnMut() -> Fut,
    taken: impl Fn(&E) -> bool,
) -> Result<T, E>
where
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        match start().await {
            Err(err) if attempt < PORT_ATTEMPTS && taken(&err) => attempt += 1,
            result => return result,
        }
    }
}

/// The lowest port [`free_port`] hands out: above the well-known and registered defaults
/// (Tarantool's 3301, the node's 9984/9985, NATS's 4222).
const LOWEST_TEST_PORT: u16 = 10_000;

/// A loopback port that was free a moment ago, for a server a test starts (and may stop and
/// start again on the same port).
///
/// Chosen at random below the kernel's ephemeral range: a port the kernel picks for an
/// outgoing connection or for a bind to port 0 (which parallel tests do all the time) is never
/// one of these, so a server restarted on its port finds it free. Where the range cannot be
/// read or leaves no room, the kernel picks (port 0).
pub fn free_port() -> std::io::Result<u16> {
    use rand::Rng;
    if let Some(ephemeral_start) = ephemeral_range_start() {
        if ephemeral_start > LOWEST_TEST_PORT {
            let mut rng = rand::thread_rng();
            for _ in 0..64 {
                let port = rng.gen_range(LOWEST_TEST_PORT..ephemeral_start);
                if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                    return Ok(port);
                }
            }
        }
    }
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// The first port of the kernel's ephemeral range (Linux), if it can be read.
fn ephemeral_range_start() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl TarantoolProcess {
    /// Starts Tarantool with Planetmint's schema and `guest` granted everything (as in
    /// Planetmint's deployments).
    pub async fn start() -> Result<Self, StartError> {
        Self::start_with(TarantoolOptions::default()).await
    }

    /// Starts Tarantool with `options`. The port is one that was free a moment ago; when
    /// another process took it in between (parallel tests on a busy machine), Tarantool cannot
    /// bind and it is started again on another one.
    pub async fn start_with(options: TarantoolOptions) -> Result<Self, StartError> {
        until_ports_are_free(
            || Self::start_on_free_port(&options),
            |err| matches!(err, StartError::NotListening { log, .. } if log.contains("Address already in use")),
        )
        .await
    }

    async fn start_on_free_port(options: &TarantoolOptions) -> Result<Self, StartError> {
        let dir = tempfile::Builder::new()
            .prefix("pms-tarantool-")
            .tempdir()?;
        let port = free_port()?;
        std::fs::write(
            dir.path().join("planetmint-schema.lua"),
            PLANETMINT_SCHEMA_LUA,
        )?;
        let schema = if options.without_schema {
            String::new()
        } else {
            "dofile('planetmint-schema.lua')".to_owned()
        };
        let init = format!(
            "box.cfg{{ listen = '127.0.0.1:{port}', work_dir = '{dir}', log = 'tarantool.log', \
             memtx_memory = 256 * 1024 * 1024, {extra_cfg} }}\n\
             if not box.info.ro then box.once('grant-guest', function() \
               box.schema.user.grant('guest', 'read,write,execute,create,drop,alter', 'universe', nil, {{ if_not_exists = true }}) \
             end) end\n\
             {schema}\n{extra}\n\
             local ready = io.open('ready', 'w') ready:write('ok') ready:close()\n",
            dir = dir.path().display(),
            extra_cfg = options.extra_cfg,
            extra = options.extra_lua,
        );
        std::fs::write(dir.path().join("init.lua"), init)?;
        let mut process = Self {
            dir,
            port,
            child: None,
        };
        process.spawn().await?;
        Ok(process)
    }

    async fn spawn(&mut self) -> Result<(), StartError> {
        // init.lua writes `ready` once the schema is loaded: the port opens before that.
        let ready = self.dir.path().join("ready");
        let _ = std::fs::remove_file(&ready);
        let child = Command::new("tarantool")
            .arg("init.lua")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(StartError::Spawn)?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::time::Instant::now() < deadline {
            if ready.exists() && greets(self.port).await {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(StartError::NotListening {
            port: self.port,
            log: self.log_tail(),
        })
    }

    /// Starts a read-only replica of `master` (Tarantool's own replication): it receives
    /// Planetmint's schema and every row from the master.
    pub async fn start_replica_of(master: &TarantoolProcess) -> Result<Self, StartError> {
        Self::start_with(TarantoolOptions {
            extra_cfg: format!(
                "replication = {{ '{}' }}, read_only = true, replication_connect_timeout = 5",
                master.address()
            ),
            without_schema: true,
            ..TarantoolOptions::default()
        })
        .await
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of its log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("tarantool.log")
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        tail(&self.log_path(), 20)
    }

    /// `kill -9`: no clean shutdown, as in a crash.
    pub async fn kill(&mut self) {
        kill(&mut self.child).await;
    }

    /// Starts it again on the same port and data (after [`kill`](Self::kill)).
    pub async fn restart(&mut self) -> Result<(), StartError> {
        self.kill().await;
        self.spawn().await
    }

    /// Whether it is currently running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// The last `lines` lines of the file at `path` (empty when it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `kill -9` of the child in `slot`, if any, waiting for it to end.
pub async fn kill(slot: &mut Option<Child>) {
    if let Some(mut child) = slot.take() {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

/// Whether something on `port` sends a Tarantool greeting.
async fn greets(port: u16) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let mut greeting = [0u8; 128];
        stream.read_exact(&mut greeting).await.ok()?;
        greeting.starts_with(b"Tarantool").then_some(())
    };
    tokio::time::timeout(Duration::from_millis(500), attempt)
        .await
        .ok()
        .flatten()
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_outside_the_kernels_ephemeral_range_and_free() {
        for _ in 0..20 {
            let port = free_port().expect("a port");
            if let Some(start) = ephemeral_range_start() {
                assert!(
                    (LOWEST_TEST_PORT..start).contains(&port),
                    "{port} not in {LOWEST_TEST_PORT}..{start}"
                );
            }
            std::net::TcpListener::bind(("127.0.0.1", port)).expect("still free");
        }
    }
}
