//! The JetStream tier end to end, with a real nats-server (JetStream on, WebSocket on) and
//! the node on the in-memory source (on a real Tarantool where the node binary is killed -9:
//! only a Tarantool feeds the binary): every event of both streams is in JetStream once, in
//! chain order, with the URL stream's payload, after the node is killed -9 mid-stream, after
//! NATS is killed and restarted, and with two nodes publishing at once; seek by height names
//! the right sequence; the catalogue and speedracer's configuration document name NATS.

use std::time::Duration;

use crate::support::jetstream::*;
use crate::support::*;
use planetmint_streams::config::Config;
use planetmint_streams_devchain::nats::NatsServer;
use planetmint_streams_jetstream::NatsConfig;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_jetstream_once_in_order_as_the_url_stream_sends_them_and_seek_finds_heights()
{
    let nats = NatsServer::start().await.expect("nats-server starts");
    let harness = Harness::start_with(|c| {
        c.nats = Some(NatsConfig {
            // A tiny live queue: bursts overflow it and the publisher catches up from the source.
            queue_blocks: 2,
            ..nats_config(&nats)
        });
    })
    .await;
    let api = harness.node().api_addr.to_string();
    let mut ws = UrlStream::connect(&format!(
        "{}/api/v1/streams/valid_transactions",
        harness.streams_base()
    ))
    .await;
    let blocks = chain(28, 1, 40, 3);
    let (writer, _) = spawn_writer(harness.store(), blocks.clone(), Duration::ZERO);
    writer.await.expect("written");

    let js = context(&nats.url()).await;
    assert_streams_hold(&js, &blocks).await;
    // The same messages the URL stream sent, one for one.
    let sent = ws.take(120, Duration::from_secs(30)).await;
    let held = contents(&js, "valid_transactions").await;
    assert_eq!(payloads(&held), sent);

    let text = metrics_until(&api, Duration::from_secs(20), |text| {
        metric(text, "planetmint_streams_jetstream_lag_blocks", "") == 0.0
            && metric(text, "planetmint_streams_jetstream_published_height", "") >= 40.0
    })
    .await;
    assert_eq!(
        metric(
            &text,
            "planetmint_streams_jetstream_published_events_total",
            "stream=\"valid_transactions\""
        ),
        120.0
    );
    assert_eq!(metric(&text, "planetmint_streams_jetstream_up", ""), 1.0);
    eprintln!(
        "live blocks dropped by the publisher's queue (read again from the source): {}",
        metric(
            &text,
            "planetmint_streams_jetstream_live_dropped_blocks_total",
            ""
        )
    );

    // Seek by height: the first event at or above the height.
    for height in [1u64, 2, 17, 40] {
        let (status, answer) = get_json(
            &api,
            &format!("/api/v1/streams/valid_transactions/jetstream?height={height}"),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["stream"], "valid_transactions");
        assert_eq!(answer["subject"], "valid_transactions");
        let sequence = answer["sequence"].as_u64().expect("sequence");
        let at = &held[sequence as usize - 1];
        assert_eq!(at.height, height, "{answer}");
        if sequence > 1 {
            assert!(held[sequence as usize - 2].height < height);
        }
    }
    let (status, answer) = get_json(&api, "/api/v1/streams/valid_blocks/jetstream?height=41").await;
    assert_eq!(status, 200);
    assert_eq!(answer["sequence"], 41, "past the end: the next sequence");
    assert_eq!(answer["height"], Value::Null);
    let (status, answer) = get_json(&api, "/api/v1/streams/valid_blocks/jetstream?height=x").await;
    assert_eq!(
        (status, answer["parameter"].as_str()),
        (400, Some("height"))
    );
    let (status, _) = get_json(&api, "/api/v1/streams/nothing/jetstream?height=1").await;
    assert_eq!(status, 404);

    // Discovery: the catalogue and speedracer's configuration document name NATS.
    let (_, catalogue) = get_json(&api, "/api/v1/streams").await;
    assert_eq!(catalogue["jetstream"]["nats_urls"][0], nats.url());
    assert_eq!(
        catalogue["jetstream"]["nats_websocket_url"],
        nats.websocket_url()
    );
    for entry in catalogue["streams"].as_array().expect("streams") {
        let name = entry["name"].as_str().expect("name");
        assert_eq!(entry["jetstream"]["stream"], name);
        assert_eq!(entry["jetstream"]["subject"], name);
    }
    let (status, config) = get_json(&api, "/api/v1/config").await;
    assert_eq!(status, 200);
    assert_eq!(config["nats_url"], nats.url());
    assert_eq!(config["nats_websocket_url"], nats.websocket_url());
    assert_eq!(config["mas_url"], format!("http://{api}"));
    assert_eq!(
        config["api_gateway_url"],
        format!("http://{api}/api/v1/gateway/jwt")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_stream_and_a_nats_restart_neither_lose_nor_repeat_an_event() {
    let tarantool = planetmint_streams_devchain::process::TarantoolProcess::start()
        .await
        .expect("tarantool");
    let mut nats = NatsServer::start().await.expect("nats-server");
    let mut node = NodeProcess::new(&tarantool.address());
    node.env = nats_env(&nats);
    let mut child = node.spawn();
    node.wait_ready().await;

    let blocks = chain(29, 1, 70, 2);
    let (writer, mut progress) = spawn_writer(
        Store::Tarantool(tarantool.address()),
        blocks.clone(),
        Duration::from_millis(40),
    );
    let js = context(&nats.url()).await;

    // kill -9 while it publishes, then start it again: it resumes after what JetStream holds.
    wait_for(&js, "valid_transactions", 20, Duration::from_secs(30)).await;
    child.start_kill().expect("kill");
    let _ = child.wait().await;
    let killed_at = *progress.borrow();
    let mut child = node.spawn();
    node.wait_ready().await;
    progress
        .wait_for(|h| *h >= killed_at + 10)
        .await
        .expect("writer goes on");

    // NATS killed -9: the WebSocket stream flows on and the node stays ready; publishing
    // catches up from Tarantool once NATS is back.
    nats.kill().await;
    let mut ws = UrlStream::connect(&format!(
        "{}/api/v1/streams/valid_blocks",
        format_args!("ws://127.0.0.1:{}", node.streams_port)
    ))
    .await;
    let during = ws.take(5, Duration::from_secs(20)).await;
    assert_eq!(
        during.len(),
        5,
        "the WebSocket stream flows while NATS is down"
    );
    assert_eq!(http_get(&node.api(), "/ready").await.0, 200);
    let text = metrics_until(&node.api(), Duration::from_secs(20), |text| {
        metric(text, "planetmint_streams_jetstream_up", "") == 0.0
    })
    .await;
    assert_eq!(metric(&text, "planetmint_streams_jetstream_up", ""), 0.0);
    nats.restart().await.expect("nats-server restarts");

    writer.await.expect("written");
    let js = context(&nats.url()).await;
    assert_streams_hold(&js, &blocks).await;
    let text = metrics_until(&node.api(), Duration::from_secs(20), |text| {
        metric(text, "planetmint_streams_jetstream_lag_blocks", "") == 0.0
    })
    .await;
    assert!(
        metric(
            &text,
            "planetmint_streams_jetstream_publish_errors_total",
            ""
        ) > 0.0,
        "the outage was counted"
    );
    child.start_kill().expect("kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_publishing_at_once_store_each_event_once() {
    let nats = NatsServer::start().await.expect("nats-server");
    let harness = Harness::start_with(|c| c.nats = Some(nats_config(&nats))).await;
    let mut second: Config = test_config();
    second.nats = Some(nats_config(&nats));
    let other = planetmint_streams::start_with_source(second, harness.source.clone())
        .await
        .expect("second node");
    let blocks = chain(30, 1, 60, 3);
    let (writer, _) = spawn_writer(harness.store(), blocks.clone(), Duration::from_millis(5));
    writer.await.expect("written");
    let js = context(&nats.url()).await;
    assert_streams_hold(&js, &blocks).await;

    // Each stored event was stored by exactly one of them.
    let stored = |text: &str| {
        metric(
            text,
            "planetmint_streams_jetstream_published_events_total",
            "",
        )
    };
    let done = |text: &str| metric(text, "planetmint_streams_jetstream_lag_blocks", "") == 0.0;
    let first = metrics_until(
        &harness.node().api_addr.to_string(),
        Duration::from_secs(20),
        done,
    )
    .await;
    let second = metrics_until(&other.api_addr.to_string(), Duration::from_secs(20), done).await;
    let total = (180 + 60) as f64;
    assert_eq!(
        stored(&first) + stored(&second),
        total,
        "nothing stored twice"
    );
    let count = |text: &str, name: &str, labels: &str| metric(text, name, labels);
    let (already, refused) = (
        "planetmint_streams_jetstream_already_stored_events_total",
        "planetmint_streams_jetstream_publish_errors_total",
    );
    let wrong = "reason=\"wrong_last_sequence\"";
    eprintln!(
        "stored by node 1: {}, by node 2: {}; found already stored: {} and {}; refused for a wrong last sequence: {} and {}",
        stored(&first),
        stored(&second),
        count(&first, already, ""),
        count(&second, already, ""),
        count(&first, refused, wrong),
        count(&second, refused, wrong),
    );
    other.shutdown().await;
}

/// The deploy files' shape: a 3-node JetStream cluster, streams replicated 3 times, the node
/// given every server's URL. One NATS node is killed -9 mid-stream: the node moves to another
/// server, and each event is still stored once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_with_three_replicas_survives_losing_a_node() {
    let mut cluster = NatsServer::start_cluster("pms-test")
        .await
        .expect("a 3-node cluster");
    let urls: Vec<String> = cluster.iter().map(NatsServer::url).collect();
    let harness = Harness::start_with(|c| {
        c.nats = Some(NatsConfig {
            url: urls.join(","),
            replicas: 3,
            ..nats_config(&cluster[0])
        });
    })
    .await;
    let blocks = chain(36, 1, 40, 2);
    let (writer, mut progress) =
        spawn_writer(harness.store(), blocks.clone(), Duration::from_millis(25));
    progress
        .wait_for(|h| *h >= 15)
        .await
        .expect("writer goes on");
    // Mid-stream for the cluster too: the streams (three replicas) hold events when the node
    // goes. On the in-memory source the writer can be at 15 before the node has created
    // them, and a cluster that lost a node that early was seen to answer nothing about the
    // stream for a minute (`valid_transactions holds None`, with two CPU hogs beside the
    // suite): that tests nats-server's start, not the publisher.
    let js = context(&cluster[1].url()).await;
    wait_for(&js, "valid_transactions", 1, Duration::from_secs(60)).await;
    cluster[0].kill().await;
    writer.await.expect("written");
    assert_streams_hold(&js, &blocks).await;
    let mut stream = js.get_stream("valid_blocks").await.expect("stream");
    let info = stream.info().await.expect("info");
    assert_eq!(info.config.num_replicas, 3);
}

/// Another publisher stored a block's events (under other message ids, so de-duplication
/// cannot help) before this node heard of the block: the node's publishes carry a stale
/// expected last sequence, JetStream refuses them, the node re-reads where the streams stand
/// and goes on after them. Nothing is stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_fell_behind_another_is_refused_by_the_expected_last_sequence() {
    use async_nats::jetstream::message::PublishMessage as Publish;
    let nats = NatsServer::start().await.expect("nats-server");
    let harness = Harness::start_with(|c| c.nats = Some(nats_config(&nats))).await;
    let api = harness.node().api_addr.to_string();
    let store = harness.store();
    let blocks = chain(33, 1, 12, 2);
    let js = context(&nats.url()).await;
    let (writer, _) = spawn_writer(store.clone(), blocks[..5].to_vec(), Duration::ZERO);
    writer.await.expect("written");
    wait_for(&js, "valid_blocks", 5, Duration::from_secs(30)).await;
    metrics_until(&api, Duration::from_secs(20), |text| {
        metric(text, "planetmint_streams_jetstream_published_height", "") >= 5.0
    })
    .await;

    // The other publisher: block 6's events, in order, with the headers ours carry.
    let block = &blocks[5];
    let events = expected_events(std::slice::from_ref(block));
    for (tx, event) in block.transactions.iter().zip(&events) {
        js.send_publish(
            "valid_transactions",
            Publish::build()
                .payload(serde_json::to_vec(event).expect("json").into())
                .message_id(format!("other-publisher:{}", tx.id))
                .header("Planetmint-Height", block.height.to_string().as_str())
                .header("Planetmint-Transaction-Id", tx.id.as_str()),
        )
        .await
        .expect("publish")
        .await
        .expect("stored");
    }
    let block_event = &expected_block_events(std::slice::from_ref(block))[0];
    js.send_publish(
        "valid_blocks",
        Publish::build()
            .payload(serde_json::to_vec(block_event).expect("json").into())
            .message_id("other-publisher:6")
            .header("Planetmint-Height", "6"),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");

    let (writer, _) = spawn_writer(store, blocks[5..].to_vec(), Duration::from_millis(5));
    writer.await.expect("written");
    let refused = metrics_until(&api, Duration::from_secs(20), |text| {
        metric(text, "planetmint_streams_jetstream_published_height", "") >= 12.0
    })
    .await;
    assert!(
        metric(
            &refused,
            "planetmint_streams_jetstream_publish_errors_total",
            "reason=\"wrong_last_sequence\""
        ) >= 1.0,
        "the stale publish was refused"
    );
    let transactions = wait_for(&js, "valid_transactions", 24, Duration::from_secs(30)).await;
    assert_eq!(
        payloads(&transactions),
        expected_events(&blocks),
        "each event once, in order"
    );
    let held_blocks = wait_for(&js, "valid_blocks", 12, Duration::from_secs(30)).await;
    assert_eq!(payloads(&held_blocks), expected_block_events(&blocks));
    assert!(held_blocks[5].msg_id.starts_with("other-publisher"));
}

/// `nats.tls_*`: the node publishes to a nats-server that speaks TLS only and asks for a
/// client certificate, trusting its CA through `nats.tls_ca_file`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_publishes_over_tls_with_a_client_certificate() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let dir = tempfile::tempdir().expect("tmp");
    let path = |name: &str| dir.path().join(name);
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("CA");
    std::fs::write(path("ca.pem"), ca.pem()).expect("write");
    for (name, host) in [("server", "127.0.0.1"), ("client", "planetmint-streams")] {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec![host.to_owned()])
            .expect("params")
            .signed_by(&key, &ca)
            .expect("certificate");
        std::fs::write(path(&format!("{name}.pem")), cert.pem()).expect("write");
        std::fs::write(path(&format!("{name}.key")), key.serialize_pem()).expect("write");
    }
    let nats = NatsServer::start_with(planetmint_streams_devchain::nats::NatsOptions {
        extra_conf: format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n}}\n",
            path("server.pem").display(),
            path("server.key").display(),
            path("ca.pem").display()
        ),
        ..Default::default()
    })
    .await
    .expect("nats-server with TLS");
    let harness = Harness::start_with(|c| {
        c.nats = Some(NatsConfig {
            url: format!("tls://127.0.0.1:{}", nats.port()),
            tls_ca_file: Some(path("ca.pem")),
            tls_cert_file: Some(path("client.pem")),
            tls_key_file: Some(path("client.key")),
            require_tls: true,
            ..nats_config(&nats)
        });
    })
    .await;
    let blocks = chain(37, 1, 5, 2);
    let (writer, _) = spawn_writer(harness.store(), blocks.clone(), Duration::ZERO);
    writer.await.expect("written");
    let text = metrics_until(
        &harness.node().api_addr.to_string(),
        Duration::from_secs(30),
        |text| metric(text, "planetmint_streams_jetstream_published_height", "") >= 5.0,
    )
    .await;
    assert_eq!(
        metric(
            &text,
            "planetmint_streams_jetstream_published_events_total",
            "stream=\"valid_transactions\""
        ),
        10.0,
        "published over TLS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_nats_section_is_refused_naming_the_key() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_planetmint-streams"))
        .arg("--check-config")
        .env("PLANETMINT_STREAMS_NATS__URL", "http://127.0.0.1:4222")
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nats.url"), "{stderr}");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_planetmint-streams"))
        .arg("--check-config")
        .env("PLANETMINT_STREAMS_NATS__URL", "nats://127.0.0.1:4222")
        .env("PLANETMINT_STREAMS_NATS__PREFIX", "Planetmint.Main")
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("nats.prefix"));
}
