//! `make demo` (scripts/demo.sh) as a newcomer runs it, on free ports: the key and the asset
//! the README and docs/clients.md name show events, the chain is the documented one
//! (crates/devchain/src/demo.rs), one SIGTERM to the demo's process group gives subscribers
//! close 1001 and stops everything, and a second start over the same data continues the same
//! chain block for block.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::*;
use planetmint_streams_devchain::demo;
use planetmint_streams_devchain::process::free_port;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const NODE: &str = env!("CARGO_BIN_EXE_planetmint-streams");

/// `planetmint-streams-devchain` next to the node's binary. It belongs to another package, so
/// `cargo test` does not build it for this test: built here (quick when it is up to date).
pub fn devchain_binary() -> PathBuf {
    let bin_dir = Path::new(NODE).parent().expect("the binary's directory");
    let profile = match bin_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => "dev",
    };
    let target_dir = bin_dir.parent().expect("the target directory");
    let status = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "--locked",
            "-p",
            "planetmint-streams-devchain",
            "--bin",
            "planetmint-streams-devchain",
            "--profile",
            profile,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building planetmint-streams-devchain");
    bin_dir.join("planetmint-streams-devchain")
}

/// scripts/demo.sh in a process group of its own, with its data in `dir`.
struct Demo {
    child: Child,
    api: String,
    streams: u16,
    tarantool: u16,
}

impl Demo {
    async fn start(dir: &Path) -> Self {
        let bin_dir = devchain_binary().parent().expect("bin dir").to_path_buf();
        let (api, streams, tarantool, nats, nats_websocket) = (
            free_port().expect("port"),
            free_port().expect("port"),
            free_port().expect("port"),
            free_port().expect("port"),
            free_port().expect("port"),
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("demo.log"))
            .expect("log file");
        let child = Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo.sh"))
            .env("DEMO_TARANTOOL_PORT", tarantool.to_string())
            .env("DEMO_API_PORT", api.to_string())
            .env("DEMO_STREAMS_PORT", streams.to_string())
            .env("DEMO_BIND_HOST", "127.0.0.1")
            .env("DEMO_BLOCKS_PER_SECOND", "10")
            .env("DEMO_DIR", dir)
            .env("DEMO_BIN_DIR", &bin_dir)
            // The JetStream tier runs too where nats-server is installed (as in CI), on free ports.
            .env("DEMO_NATS_PORT", nats.to_string())
            .env("DEMO_NATS_WEBSOCKET_PORT", nats_websocket.to_string())
            .process_group(0)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("demo.sh starts");
        Self {
            child,
            api: format!("127.0.0.1:{api}"),
            streams,
            tarantool,
        }
    }

    /// Waits until `/ready` is 200 with the head at `height` or above; returns the head.
    async fn ready_at(&self, height: u64) -> u64 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(&self.api).await.is_ok() {
                let (status, ready) = get_json(&self.api, "/ready").await;
                let head = ready["head_height"].as_u64().unwrap_or(0);
                if status == 200 && head >= height {
                    return head;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the demo never reached height {height} (see its demo.log)"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn url(&self, stream_and_query: &str) -> String {
        format!(
            "ws://127.0.0.1:{}/api/v1/streams/{stream_and_query}",
            self.streams
        )
    }

    /// One SIGTERM to the whole process group, as `kill -TERM -PGID` (or a terminal) sends it.
    async fn terminate_group(&self) {
        let pgid = self.child.id().expect("running");
        let sent = Command::new("kill")
            .args(["-TERM", "--", &format!("-{pgid}")])
            .status()
            .await
            .expect("kill");
        assert!(sent.success());
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // Whatever is left of the group (after a failed assertion): Tarantool, the writer.
        if let Some(pgid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .status();
        }
    }
}

/// `valid_blocks` messages from `from` (exclusive) up to `to` (inclusive).
async fn blocks(demo: &Demo, from: u64, to: u64) -> Vec<Value> {
    let mut ws = UrlStream::connect(&demo.url(&format!("valid_blocks?from_height={from}"))).await;
    let mut out: Vec<Value> = Vec::new();
    while out.last().and_then(|b| b["height"].as_u64()) < Some(to) {
        out.push(ws.next_event(Duration::from_secs(30)).await);
    }
    ws.close().await;
    out
}

/// The documented chain's hash at each height from the first generated one to `to`.
fn documented_hashes(to: u64) -> Vec<(u64, String)> {
    let mut chain = demo::chain(demo::FIRST_GENERATED_HEIGHT);
    let mut out = Vec::new();
    while chain.next_height() <= to {
        let block = chain.block(demo::TRANSACTIONS_PER_BLOCK);
        out.push((block.height, block.app_hash));
    }
    out
}

fn hashes_between(blocks: &[Value], from: u64, to: u64) -> Vec<(u64, String)> {
    blocks
        .iter()
        .filter_map(|b| Some((b["height"].as_u64()?, b["hash"].as_str()?.to_owned())))
        .filter(|(h, _)| (from..=to).contains(h))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_the_documented_key_and_asset_and_stops_with_1001() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = Demo::start(dir.path()).await;
    let head = demo.ready_at(30).await;

    // The key of the README's filter examples: its transactions, from the start of the chain.
    let mut by_key = UrlStream::connect(&demo.url(&format!(
        "valid_transactions?public_key={}&from_height=0&batch=block",
        demo::KEY
    )))
    .await;
    let found = by_key.take(3, Duration::from_secs(30)).await;
    assert!(
        found
            .iter()
            .all(|b| !b["transactions"].as_array().expect("a batch").is_empty()),
        "{found:?}"
    );
    by_key.close().await;

    // The asset: created at its documented height, then transferred.
    let mut by_asset = UrlStream::connect(&demo.url(&format!(
        "valid_transactions?asset_id={}&from_height=0",
        demo::ASSET
    )))
    .await;
    let events = by_asset.take(3, Duration::from_secs(30)).await;
    assert_eq!(events[0]["transaction_id"], demo::ASSET, "{events:?}");
    assert_eq!(events[0]["height"], demo::ASSET_HEIGHT);
    assert!(events[1..].iter().all(|e| e["asset_id"] == demo::ASSET));
    by_asset.close().await;

    // The chain is the documented one, block for block.
    let seen = blocks(&demo, 0, head).await;
    let first = demo::FIRST_GENERATED_HEIGHT;
    assert_eq!(
        hashes_between(&seen, first, head),
        documented_hashes(head)
            .into_iter()
            .filter(|(h, _)| *h >= first)
            .collect::<Vec<_>>()
    );

    // One SIGTERM to the process group (the node's own and the one demo.sh passes on).
    let mut live = UrlStream::connect(&demo.url("valid_blocks")).await;
    let _ = live.next_event(Duration::from_secs(10)).await;
    demo.terminate_group().await;
    let (_, frame) = live.until_close(Duration::from_secs(20)).await;
    let frame = frame.expect("a close frame, not a dropped connection");
    assert_eq!(frame.code, 1001, "{}", frame.reason);
    let mut demo = demo;
    let status = tokio::time::timeout(Duration::from_secs(30), demo.child.wait())
        .await
        .expect("demo.sh ends")
        .expect("wait");
    // Its TERM trap ran: everything stopped in order, then `exit 143`.
    assert_eq!(status.code(), Some(143), "{status}");
    assert!(
        TcpStream::connect(format!("127.0.0.1:{}", demo.tarantool))
            .await
            .is_err(),
        "Tarantool stopped with the demo"
    );
    let stopped_at = head.max(
        seen.last()
            .and_then(|b| b["height"].as_u64())
            .unwrap_or(head),
    );
    drop(demo);

    // Started again over the same data: the chain goes on as if it had never stopped.
    let again = Demo::start(dir.path()).await;
    let head = again.ready_at(stopped_at + 5).await;
    let seen = blocks(&again, stopped_at.saturating_sub(3), head).await;
    assert_eq!(
        hashes_between(&seen, stopped_at.saturating_sub(2), head),
        documented_hashes(head)
            .into_iter()
            .filter(|(h, _)| *h >= stopped_at.saturating_sub(2))
            .collect::<Vec<_>>(),
        "the blocks after a restart are the uninterrupted chain's"
    );
    again.terminate_group().await;
}

#[test]
fn the_docs_name_the_demo_key_and_asset() {
    let read = |path: &str| {
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    for path in ["README.md", "docs/clients.md", "scripts/demo.sh"] {
        let text = read(path);
        assert!(text.contains(demo::KEY), "{path} names the demo key");
        assert!(text.contains(demo::ASSET), "{path} names the demo asset");
    }
    let page = read("crates/api/assets/explorer.html");
    assert!(
        page.contains(demo::KEY),
        "the explorer suggests the demo key"
    );
    assert!(
        page.contains(demo::ASSET),
        "the explorer suggests the demo asset"
    );
}
