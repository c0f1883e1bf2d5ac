//! What an operator sees: `/metrics` (parsed with an independent Prometheus text parser) after
//! a scripted stream and after clients vanish. `/ready` following Tarantool down and back up:
//! `tarantool::operations`.

use std::time::Duration;

use crate::support::*;
use planetmint_streams_devchain::fixtures::Planetmint253;
use prometheus_parse::{Sample, Scrape, Value as Metric};

pub(crate) async fn scrape(api: &str) -> Scrape {
    let (status, text) = http_get(api, "/metrics").await;
    assert_eq!(status, 200);
    parse(&text)
}

pub(crate) fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid Prometheus text")
}

/// Scrapes until `ready` holds (10 s at most): for what the server counts after the client
/// has already moved on, such as a session that ends after the client's close frame.
pub(crate) async fn scrape_until(api: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    parse(&metrics_until(api, Duration::from_secs(10), |text| ready(&parse(text))).await)
}

pub(crate) fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    exported(scrape, name, labels).unwrap_or_else(|| panic!("metric {name}{labels:?} is exported"))
}

/// The sum of the samples of `name` with `labels`, if there are any.
pub(crate) fn exported(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<&Sample> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    if matching.is_empty() {
        return None;
    }
    let sum = matching
        .iter()
        .map(|s| match &s.value {
            Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => *v,
            Metric::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Metric::Summary(_) => 0.0,
        })
        .sum();
    Some(sum)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_a_scripted_stream() {
    let harness = Harness::start().await;
    let api = harness.node().api_addr.to_string();
    let base = format!("{}/api/v1/streams", harness.streams_base());
    let fixtures = Planetmint253::load().expect("fixtures");

    let mut tx_a = UrlStream::connect(&format!("{base}/valid_transactions")).await;
    let mut tx_b = UrlStream::connect(&format!("{base}/valid_transactions")).await;
    let mut blocks = UrlStream::connect(&format!("{base}/valid_blocks")).await;
    let before = scrape(&api).await;
    assert_eq!(
        value(
            &before,
            "planetmint_streams_subscribers",
            &[("stream", "valid_transactions")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &before,
            "planetmint_streams_subscribers",
            &[("stream", "valid_blocks")]
        ),
        1.0
    );
    assert_eq!(value(&before, "planetmint_streams_source_up", &[]), 1.0);

    harness.writer().await.write_fixtures(&fixtures).await;
    tx_a.take(36, Duration::from_secs(10)).await;
    tx_b.take(36, Duration::from_secs(10)).await;
    blocks.take(8, Duration::from_secs(10)).await;

    let tx = [("stream", "valid_transactions")];
    let bl = [("stream", "valid_blocks")];
    // What is counted once a write has completed can reach the scrape after the client has
    // read the bytes: wait until the sends are all counted (the values are checked below).
    let after = scrape_until(&api, |s| {
        let at_least = |name: &str, labels: &[(&str, &str)], n: f64| {
            exported(s, name, labels).is_some_and(|v| v >= n)
        };
        at_least("planetmint_streams_events_sent_total", &tx, 72.0)
            && at_least("planetmint_streams_events_sent_total", &bl, 8.0)
            && at_least("planetmint_streams_batches_sent_total", &tx, 12.0)
            && at_least("planetmint_streams_batches_sent_total", &bl, 8.0)
            && at_least("planetmint_streams_commit_to_send_seconds", &[], 20.0)
    })
    .await;
    assert_eq!(
        value(&after, "planetmint_streams_events_sent_total", &tx),
        72.0
    );
    assert_eq!(
        value(&after, "planetmint_streams_events_sent_total", &bl),
        8.0
    );
    // Six non-empty blocks, one batch (one write) each, to two subscribers.
    assert_eq!(
        value(&after, "planetmint_streams_batches_sent_total", &tx),
        12.0
    );
    assert_eq!(
        value(&after, "planetmint_streams_batches_sent_total", &bl),
        8.0
    );
    assert!(value(&after, "planetmint_streams_bytes_sent_total", &tx) > 72.0 * 200.0);
    assert_eq!(
        value(&after, "planetmint_streams_blocks_ingested_total", &[]),
        8.0
    );
    assert_eq!(
        value(
            &after,
            "planetmint_streams_transactions_ingested_total",
            &[]
        ),
        36.0
    );
    assert_eq!(
        value(&after, "planetmint_streams_blocks_published_total", &[]),
        8.0
    );
    assert_eq!(
        value(&after, "planetmint_streams_source_head_height", &[]),
        8.0
    );
    assert_eq!(
        value(&after, "planetmint_streams_streamed_height", &[]),
        8.0
    );
    assert_eq!(
        value(&after, "planetmint_streams_published_height", &[]),
        8.0
    );
    assert_eq!(
        value(&after, "planetmint_streams_commit_to_send_seconds", &[]),
        20.0,
        "one observation per batch"
    );

    // A refused request, a replay, a client leaving.
    let (status, _) = http_get(
        &harness.node().streams_addr.to_string(),
        "/api/v1/streams/valid_blocks?batch=nope",
    )
    .await;
    assert_eq!(status, 400);
    let mut replay = UrlStream::connect(&format!("{base}/valid_blocks?from_height=3")).await;
    replay.take(5, Duration::from_secs(10)).await;
    tx_b.close().await;
    // The session ends once the server has read the close frame: wait for that, not a while.
    let later = scrape_until(&api, |s| {
        exported(
            s,
            "planetmint_streams_disconnects_total",
            &[("reason", "client")],
        )
        .is_some_and(|n| n >= 1.0)
    })
    .await;
    assert_eq!(
        value(
            &later,
            "planetmint_streams_rejected_connections_total",
            &[("reason", "bad_parameter")]
        ),
        1.0
    );
    assert_eq!(
        value(&later, "planetmint_streams_replay_requests_total", &bl),
        1.0
    );
    assert_eq!(
        value(
            &later,
            "planetmint_streams_disconnects_total",
            &[("reason", "client")]
        ),
        1.0
    );
    assert_eq!(value(&later, "planetmint_streams_subscribers", &tx), 1.0);
    assert_eq!(value(&later, "planetmint_streams_subscribers", &bl), 2.0);
    assert_eq!(
        value(&later, "planetmint_streams_connections_total", &tx),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_vanish_are_counted_as_lost_connections_not_protocol_errors() {
    let harness = Harness::start().await;
    let api = harness.node().api_addr.to_string();
    let streams = harness.node().streams_addr.to_string();
    // A URL subscriber and a JSON-RPC client with a subscription close TCP without a close
    // frame, as a wallet that quits does.
    let url_subscriber = raw_upgrade(&streams, "/api/v1/streams/valid_transactions").await;
    let mut rpc = RpcClient::connect(&format!("{}/api/v1/streams", harness.streams_base())).await;
    rpc.subscribe(serde_json::json!({"stream": "valid_blocks"}))
        .await;
    drop(url_subscriber);
    drop(rpc);
    let scraped = scrape_until(&api, |s| {
        exported(
            s,
            "planetmint_streams_subscribers",
            &[("stream", "valid_transactions")],
        ) == Some(0.0)
            && exported(s, "planetmint_streams_rpc_connections", &[]) == Some(0.0)
    })
    .await;
    assert_eq!(
        value(
            &scraped,
            "planetmint_streams_subscribers",
            &[("stream", "valid_transactions")]
        ),
        0.0,
        "the subscriber's session ended"
    );
    assert_eq!(
        value(&scraped, "planetmint_streams_rpc_connections", &[]),
        0.0,
        "the JSON-RPC connection ended"
    );
    assert_eq!(
        exported(
            &scraped,
            "planetmint_streams_disconnects_total",
            &[("reason", "socket")]
        ),
        Some(2.0),
        "the URL subscriber and the JSON-RPC subscription were lost"
    );
    assert_eq!(
        exported(
            &scraped,
            "planetmint_streams_disconnects_total",
            &[("reason", "protocol_error")]
        ),
        None,
        "nobody broke the protocol"
    );
}
