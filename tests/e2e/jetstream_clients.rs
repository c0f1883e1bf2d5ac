//! The client examples of docs/jetstream.md, as they are printed there, against a real node
//! and nats-server: the Python one (nats-py) from a height, from a time, as a durable consumer
//! that continues where it stopped and as a consumer group whose workers share the events; the
//! browser one (nats.ws) under Node.js 20 with its WebSocket; the Rust one is the crate's
//! example (compiled with the workspace), printed unchanged.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::support::jetstream::*;
use crate::support::*;
use planetmint_streams_devchain::nats::NatsServer;
use serde_json::Value;
use tokio::process::Command;

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/jetstream.md");

/// The code block after `<!-- example: NAME -->` in docs/jetstream.md.
fn doc_example(name: &str) -> String {
    let doc = std::fs::read_to_string(DOC).expect("docs/jetstream.md");
    let marker = format!("<!-- example: {name} -->");
    let after = &doc[doc.find(&marker).unwrap_or_else(|| panic!("no {marker}")) + marker.len()..];
    let mut lines = after.lines().skip_while(|l| l.trim().is_empty());
    assert!(
        lines.next().is_some_and(|l| l.starts_with("```")),
        "{name}: a code block"
    );
    let mut code = String::new();
    for line in lines.take_while(|l| !l.starts_with("```")) {
        code.push_str(line);
        code.push('\n');
    }
    code
}

/// Runs the Python example with `args` until it exits; its events.
async fn python_example(script: &Path, api: &str, args: &[&str]) -> Vec<Value> {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(python())
            .arg(script)
            .arg(api)
            .args(args)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the example ends in time")
    .expect("python runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_seeks_by_height_and_time_and_shares_a_durable_consumer() {
    let nats = NatsServer::start().await.expect("nats-server");
    let harness = Harness::start_with(|c| c.nats = Some(nats_config(&nats))).await;
    let store = harness.store();
    let api = harness.api();
    let dir = tempfile::tempdir().expect("tmp");
    let script = dir.path().join("jetstream_follow.py");
    std::fs::write(&script, doc_example("jetstream_follow.py")).expect("write");

    let blocks = chain(34, 1, 12, 2);
    let (writer, _) = spawn_writer(store.clone(), blocks[..6].to_vec(), Duration::ZERO);
    writer.await.expect("written");
    let js = context(&nats.url()).await;
    wait_for(&js, "valid_transactions", 12, Duration::from_secs(30)).await;
    let all = expected_events(&blocks);

    // From a height: block 3's events and everything after.
    let from_3 = python_example(&script, &api, &["--height", "3", "--count", "8"]).await;
    assert_eq!(from_3, all[4..12].to_vec());

    // From a time: what JetStream stored after it.
    let since = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("time");
    let (writer, _) = spawn_writer(store.clone(), blocks[6..8].to_vec(), Duration::ZERO);
    writer.await.expect("written");
    let after = python_example(&script, &api, &["--since", &since, "--count", "4"]).await;
    assert_eq!(after, all[12..16].to_vec());

    // A durable consumer continues where it stopped.
    let first = python_example(&script, &api, &["--durable", "indexer", "--count", "5"]).await;
    let second = python_example(&script, &api, &["--durable", "indexer", "--count", "11"]).await;
    assert_eq!(first, all[..5].to_vec());
    assert_eq!(second, all[5..16].to_vec());

    // Two workers of one consumer group share the events: each exactly once between them.
    let (writer, _) = spawn_writer(store, blocks[8..].to_vec(), Duration::from_millis(20));
    let worker = |n: &'static str| {
        let (script, api) = (script.clone(), api.clone());
        tokio::spawn(async move {
            python_example(&script, &api, &["--durable", "pool", "--count", n]).await
        })
    };
    let (a, b) = (worker("12"), worker("12"));
    writer.await.expect("written");
    let (a, b) = (a.await.expect("worker a"), b.await.expect("worker b"));
    assert_eq!(a.len() + b.len(), 24);
    let mut shared: Vec<Value> = a.into_iter().chain(b).collect();
    let key = |v: &Value| v["transaction_id"].as_str().unwrap_or_default().to_owned();
    shared.sort_by_key(key);
    let mut expected = all.clone();
    expected.sort_by_key(key);
    assert_eq!(shared, expected, "every event to one worker");
}

/// nats.ws as `make test` installs it (scripts/ensure-deps.sh), or `PMS_NATS_WS`.
fn nats_ws() -> PathBuf {
    let path = std::env::var("PMS_NATS_WS").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/target/js/node_modules/nats.ws/esm/nats.js"
        )
        .to_owned()
    });
    assert!(
        Path::new(&path).exists(),
        "this test needs nats.ws: run `make test` (or scripts/ensure-deps.sh), or set PMS_NATS_WS"
    );
    PathBuf::from(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_example_follows_blocks_from_a_height_over_nats_websocket() {
    let nats = NatsServer::start().await.expect("nats-server");
    let harness = Harness::start_with(|c| c.nats = Some(nats_config(&nats))).await;
    let blocks = chain(35, 1, 6, 1);
    let (writer, _) = spawn_writer(harness.store(), blocks.clone(), Duration::ZERO);
    writer.await.expect("written");
    let js = context(&nats.url()).await;
    wait_for(&js, "valid_blocks", 6, Duration::from_secs(30)).await;

    // The page's module script, run by Node.js (fetch and, with the flag, WebSocket are the
    // browser's): the CDN import pointed at the installed package, API, HEIGHT, LIMIT set.
    let page = doc_example("jetstream_follow.html");
    let script = page
        .split("<script type=\"module\">")
        .nth(1)
        .and_then(|rest| rest.split("</script>").next())
        .expect("a module script");
    let cdn = "https://cdn.jsdelivr.net/npm/nats.ws@1.30.3/esm/nats.js";
    assert!(script.contains(cdn));
    let script = script
        .replace(cdn, "./nats.mjs")
        .replace(
            "const API = \"http://localhost:9984\";",
            &format!("const API = \"{}\";", harness.api()),
        )
        .replace("const HEIGHT = 1;", "const HEIGHT = 4;")
        .replace("const LIMIT = Infinity;", "const LIMIT = 3;");
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::copy(nats_ws(), dir.path().join("nats.mjs")).expect("copy nats.ws");
    std::fs::write(dir.path().join("follow.mjs"), script).expect("write");
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new("node")
            .args(["--experimental-websocket", "follow.mjs"])
            .current_dir(dir.path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("node ends in time")
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected: Vec<String> = blocks[3..]
        .iter()
        .map(|b| format!("{} {} 1 transactions", b.height, b.app_hash))
        .collect();
    assert_eq!(stdout.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn the_rust_example_in_the_docs_is_the_compiled_one() {
    let compiled = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/jetstream/examples/follow.rs"
    ))
    .expect("example");
    assert_eq!(doc_example("crates/jetstream/examples/follow.rs"), compiled);
}
