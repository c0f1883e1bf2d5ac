//! A client nobody here wrote (Python's `websockets` library) discovers the stream from the API
//! root and receives every transaction of the blocks Planetmint 2.5.3's storage code wrote.
//! `make test` provides the interpreter (PMS_PYTHON, a venv with `websockets`).

use std::process::Stdio;
use std::time::Duration;

use crate::support::*;
use planetmint_streams_devchain::fixtures::Planetmint253;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

async fn collect_with_python(
    api: &str,
    count: usize,
    which: &str,
    write: impl std::future::Future<Output = ()>,
) -> Vec<Value> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/discover_and_collect.py"
    );
    let mut child = Command::new(python())
        .args([script, api, &count.to_string(), which])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python runs");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("python connects in time")
        .expect("read")
        .expect("a first line");
    assert!(first.contains("connected"), "{first}");
    write.await;
    let mut events = Vec::new();
    while events.len() < count {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("messages in time")
            .expect("read")
            .expect("python ended early");
        events.push(serde_json::from_str(&line).expect("JSON line"));
    }
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("python exits")
        .expect("wait");
    assert!(status.success());
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_client_receives_planetmints_blocks() {
    let harness = Harness::start().await;
    let fixtures = Planetmint253::load().expect("fixtures");
    let mut writer = harness.writer().await;
    let api = harness.api();
    let write_all = writer.write_fixtures(&fixtures);
    let events = collect_with_python(&api, 36, "streams", write_all).await;
    let expected: Vec<Value> = (1..=8).flat_map(|h| fixtures.expected_events(h)).collect();
    assert_eq!(events, expected);
}
