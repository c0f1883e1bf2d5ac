//! `/ready` and the source's metrics following Tarantool down (killed) and back up.

use std::time::Duration;

use planetmint_streams_devchain::process::TarantoolProcess;

use crate::operations::{scrape, value};
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_flips_with_tarantool_and_reconnects_are_counted() {
    let mut harness = TarantoolHarness::start().await;
    let api = harness.node().api_addr.to_string();
    let (status, ready) = get_json(&api, "/ready").await;
    assert_eq!(status, 200);
    assert_eq!(ready["ready"], true);
    let (status, health) = get_json(&api, "/health").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));

    harness.tarantool.kill().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let down = loop {
        let (status, ready) = get_json(&api, "/ready").await;
        if status == 503 {
            break ready;
        }
        assert!(tokio::time::Instant::now() < deadline, "/ready turns 503");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(down["ready"], false);
    assert_eq!(down["source_reachable"], false);
    assert!(
        down["reason"]
            .as_str()
            .unwrap_or("")
            .contains("unreachable"),
        "{down}"
    );
    let (status, _) = get_json(&api, "/health").await;
    assert_eq!(status, 200, "the process is still alive");
    let scraped = scrape(&api).await;
    assert_eq!(value(&scraped, "planetmint_streams_source_up", &[]), 0.0);
    assert!(
        value(
            &scraped,
            "planetmint_streams_source_errors_total",
            &[("kind", "unavailable")]
        ) >= 1.0
    );

    harness.tarantool.restart().await.expect("restart");
    harness.wait_ready().await;
    let scraped = scrape(&api).await;
    assert_eq!(value(&scraped, "planetmint_streams_source_up", &[]), 1.0);
    assert!(value(&scraped, "planetmint_streams_source_reconnects_total", &[]) >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_stderr_is_gone_keeps_following_and_stops_cleanly() {
    // stderr is a pipe whose reader has already gone, as when a supervisor or journald that
    // held it died: every log line fails to be written, from the first one on.
    let tarantool = TarantoolProcess::start().await.expect("tarantool");
    let node = NodeProcess::new(&tarantool.address());
    let (reader, stderr) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut child = node.command().stderr(stderr).spawn().expect("node starts");
    node.wait_ready().await;

    let mut subscriber = UrlStream::connect(&node.transactions_url()).await;
    let blocks = chain(31, 1, 3, 2);
    let mut writer = Store::Tarantool(tarantool.address()).writer().await;
    for block in &blocks {
        writer.write(block).await;
    }
    let expected = expected_events(&blocks);
    let received = subscriber
        .take(expected.len(), Duration::from_secs(20))
        .await;
    assert_eq!(received, expected, "every block followed and sent");

    let pid = child.id().expect("pid").to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    assert!(killed.success());
    let (_, closed) = subscriber.until_close(Duration::from_secs(15)).await;
    assert_eq!(closed.expect("a close frame").code, 1001);
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits in time")
        .expect("wait");
    assert_eq!(status.code(), Some(0), "a clean exit, not a panic");
}
