//! A client nobody here wrote (Python's `websockets` library) discovers the stream from the API
//! root and receives every transaction of the blocks Planetmint 2.5.3's storage code wrote; the
//! README's scripts/watch.py goes on through a node restart whatever the port answers meanwhile.
//! `make test` provides the interpreter (PMS_PYTHON, a venv with `websockets`).

use std::process::Stdio;
use std::time::Duration;

use planetmint_streams_devchain::fixtures::Planetmint253;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::*;

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

/// scripts/watch.py (the README's watcher) keeps going while the node restarts: refused
/// connections, and a port that accepts connections but gives no HTTP answer (what a client
/// meets while a node starts or stops; `websockets` raises `InvalidMessage`), then prints every
/// event exactly once when the node is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_py_survives_a_node_restart_that_answers_no_handshake() {
    let tarantool = planetmint_streams_devchain::process::TarantoolProcess::start()
        .await
        .expect("tarantool");
    let node = NodeProcess::new(&tarantool.address());
    let mut process = node.spawn();
    node.wait_ready().await;
    let fixtures = Planetmint253::load().expect("fixtures");
    let mut writer = Store::Tarantool(tarantool.address()).writer().await;
    let heights = fixtures.heights();
    let (before, after) = heights.split_at(heights.len() / 2);
    for height in before {
        writer.write_fixture(&fixtures, *height).await;
    }
    let mut watch = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/watch.py"))
        .arg(format!("http://{}", node.api()))
        .args(["--from-height", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("watch.py runs");
    let mut out = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let mut err = BufReader::new(watch.stderr.take().expect("stderr")).lines();
    let expected: Vec<Value> = heights
        .iter()
        .flat_map(|h| fixtures.expected_events(*h))
        .collect();
    let first: usize = before
        .iter()
        .map(|h| fixtures.expected_events(*h).len())
        .sum();
    let mut events: Vec<Value> = Vec::new();
    let mut next_event = async |events: &mut Vec<Value>| {
        let line = tokio::time::timeout(Duration::from_secs(60), out.next_line())
            .await
            .expect("an event in time")
            .expect("read")
            .expect("watch.py ended early");
        events.push(serde_json::from_str(&line).expect("a JSON line"));
    };
    while events.len() < first {
        next_event(&mut events).await;
    }

    // The node goes away; for a while its stream port accepts connections and closes them
    // without an answer, as while it starts and stops.
    let _ = process.start_kill();
    let _ = process.wait().await;
    let mute = std::net::TcpListener::bind(("127.0.0.1", node.streams_port)).expect("bind");
    mute.set_nonblocking(true).expect("nonblocking");
    let mut unanswered = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while unanswered < 2 {
        match mute.accept() {
            Ok((socket, _)) => {
                drop(socket);
                unanswered += 1;
            }
            Err(_) => {
                if let Some(status) = watch.try_wait().expect("try_wait") {
                    panic!("watch.py ended ({status}) on a connection without a handshake");
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "watch.py stopped trying"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    drop(mute);
    assert!(
        watch.try_wait().expect("try_wait").is_none(),
        "watch.py died on a connection without a handshake"
    );

    let _process = node.spawn();
    node.wait_ready().await;
    for height in after {
        writer.write_fixture(&fixtures, *height).await;
    }
    while events.len() < expected.len() {
        next_event(&mut events).await;
    }
    assert_eq!(events, expected, "every event once, in order");
    let mut log = Vec::new();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_millis(200), err.next_line()).await
    {
        log.push(line);
    }
    assert!(
        log.iter().any(|l| l.contains("InvalidMessage")),
        "it met a connection without a handshake: {log:?}"
    );
}
