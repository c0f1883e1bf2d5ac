//! The `subscribe` command against a real node: the node is killed and restarted, the
//! subscriber itself is stopped and restarted with its cursor file, and the concatenated
//! stdout must hold every event exactly once, in order.

mod support;

use std::process::Stdio;
use std::time::Duration;

use planetmint_streams_devchain::generate::ChainGenerator;
use planetmint_streams_devchain::process::TarantoolProcess;
use planetmint_streams_devchain::writer::PlanetmintWriter;
use serde_json::Value;
use support::*;
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_planetmint-streams");

fn subscriber(api_port: u16, cursor: &std::path::Path, out: &std::path::Path) -> Child {
    let stdout = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .expect("output file");
    Command::new(BIN)
        .args([
            "subscribe",
            &format!("http://127.0.0.1:{api_port}"),
            "--from-height",
            "0",
            "--cursor-file",
            &cursor.display().to_string(),
        ])
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("subscriber starts")
}

async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("stops")
        .expect("wait");
    assert!(status.success(), "stops cleanly on SIGTERM: {status}");
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_exactly_once_across_node_and_subscriber_restarts() {
    let tarantool = TarantoolProcess::start().await.expect("tarantool");
    let node = NodeProcess::new(&tarantool.address());
    let mut node_process = node.spawn();
    node.wait_ready().await;
    let dir = tempfile::tempdir().expect("tmp");
    let cursor = dir.path().join("cursor");
    let out = dir.path().join("events.jsonl");
    let mut sub = subscriber(node.api_port, &cursor, &out);

    let blocks = chain(77, 1, 120, 2);
    let expected = expected_events(&blocks);
    let (writer, mut progress) = spawn_writer(
        tarantool.address(),
        blocks.clone(),
        Duration::from_millis(25),
    );

    progress.wait_for(|h| *h >= 30).await.expect("progress");
    stop(&mut sub).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    sub = subscriber(node.api_port, &cursor, &out);

    progress.wait_for(|h| *h >= 60).await.expect("progress");
    let _ = node_process.start_kill(); // the node dies without a goodbye
    let _ = node_process.wait().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    node_process = node.spawn();
    node.wait_ready().await;

    progress.wait_for(|h| *h >= 90).await.expect("progress");
    stop(&mut sub).await;
    sub = subscriber(node.api_port, &cursor, &out);

    writer.await.expect("writer");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while lines(&out).len() < expected.len() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop(&mut sub).await;
    let got = lines(&out);
    assert_eq!(got.len(), expected.len(), "every event once");
    assert_eq!(got, expected, "in order");
    assert_eq!(
        std::fs::read_to_string(&cursor).expect("cursor").trim(),
        "120"
    );
    let _ = node_process.start_kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_with_a_limit_and_pretty_output() {
    let harness = Harness::start().await;
    let mut chain = ChainGenerator::new(78, 1, 4);
    let writer = PlanetmintWriter::connect(&harness.tarantool.address())
        .await
        .expect("writer");
    let blocks: Vec<_> = (0..5).map(|_| chain.block(1)).collect();
    for block in &blocks {
        writer.write_block(block).await.expect("write");
    }
    let api = harness.api();
    let output = stdout_of(Command::new(BIN).args([
        "subscribe",
        &api,
        "--blocks",
        "--from-height",
        "1",
        "--limit",
        "3",
    ]))
    .await;
    let heights: Vec<u64> = output
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("JSON")["height"]
                .as_u64()
                .expect("height")
        })
        .collect();
    assert_eq!(heights, vec![2, 3, 4]);
    let text = stdout_of(Command::new(BIN).args([
        "subscribe",
        &api,
        "--from-height",
        "4",
        "--limit",
        "1",
        "--format",
        "pretty",
    ]))
    .await;
    assert!(text.starts_with("block        5  tx "), "{text}");
    assert!(text.contains(&blocks[4].transactions[0].id));
}
