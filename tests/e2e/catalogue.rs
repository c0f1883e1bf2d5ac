//! The described streams: `GET /api/v1/streams` and the AsyncAPI document, as a client tool
//! reads them, and real messages checked against the published schemas.

use std::time::Duration;

use planetmint_streams_devchain::fixtures::Planetmint253;
use serde_json::Value;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_describes_both_streams_and_real_messages_match_its_schemas() {
    let harness = Harness::start().await;
    let api = harness.node().api_addr.to_string();
    let (status, catalogue) = get_json(&api, "/api/v1/streams").await;
    assert_eq!(status, 200);
    let streams = catalogue["streams"].as_array().expect("streams");
    let names: Vec<&str> = streams.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["valid_transactions", "valid_blocks"]);
    let (_, v1) = get_json(&api, "/api/v1/").await;
    assert_eq!(streams[0]["url"], v1["streams"]);
    assert_eq!(streams[1]["url"], v1["streamedblocks"]);
    let parameters: Vec<&str> = streams[0]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for expected in [
        "from_height",
        "public_key",
        "public_key_in",
        "asset_id",
        "operation",
        "batch",
        "partition",
        "token",
    ] {
        assert!(parameters.contains(&expected), "{expected} is described");
    }
    assert!(catalogue["close_codes"]["4000"].is_string());

    // The published schemas accept what the streams send, and reject a message without height.
    let compile = |schema: &Value| jsonschema::validator_for(schema).expect("a valid JSON Schema");
    let tx_schema = compile(&streams[0]["message_schema"]);
    let batch_schema = compile(&streams[0]["batch_message_schema"]);
    let block_schema = compile(&streams[1]["message_schema"]);
    let fixtures = Planetmint253::load().expect("fixtures");
    let base = format!("{}/api/v1/streams", harness.streams_base());
    let mut tx_ws = UrlStream::connect(&format!("{base}/valid_transactions")).await;
    let mut batch_ws = UrlStream::connect(&format!("{base}/valid_transactions?batch=block")).await;
    let mut block_ws = UrlStream::connect(&format!("{base}/valid_blocks")).await;
    harness.writer().await.write_fixtures(&fixtures).await;
    for message in tx_ws.take(36, Duration::from_secs(10)).await {
        assert!(tx_schema.is_valid(&message), "{message}");
        let mut broken = message.clone();
        broken.as_object_mut().expect("object").remove("height");
        assert!(!tx_schema.is_valid(&broken), "the schema requires height");
    }
    for message in batch_ws.take(6, Duration::from_secs(10)).await {
        assert!(batch_schema.is_valid(&message), "{message}");
    }
    for message in block_ws.take(8, Duration::from_secs(10)).await {
        assert!(block_schema.is_valid(&message), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_asyncapi_document_names_both_channels() {
    let harness = Harness::start().await;
    let api = harness.node().api_addr.to_string();
    let (status, doc) = get_json(&api, "/api/v1/streams/asyncapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["asyncapi"], "3.0.0");
    let channels = doc["channels"].as_object().expect("channels");
    assert_eq!(
        channels["valid_transactions"]["address"],
        "/api/v1/streams/valid_transactions"
    );
    assert_eq!(
        channels["valid_blocks"]["address"],
        "/api/v1/streams/valid_blocks"
    );
    assert_eq!(
        doc["servers"]["streams"]["host"],
        format!("127.0.0.1:{}", harness.node().streams_addr.port())
    );
    assert_eq!(doc["servers"]["streams"]["protocol"], "ws");
    // Every $ref points at something in the document.
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    if k == "$ref" {
                        if let Some(r) = v.as_str() {
                            out.push(r);
                        }
                    }
                    refs(v, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() >= 8);
    for r in all.iter().filter(|r| !r.starts_with("#/$defs")) {
        let pointer = r.strip_prefix('#').expect("local ref");
        assert!(doc.pointer(pointer).is_some(), "{r} resolves");
    }
    for message in ["transaction", "blockBatch", "block"] {
        let payload = &doc["components"]["messages"][message]["payload"];
        jsonschema::validator_for(payload).unwrap_or_else(|e| panic!("{message}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_documents_are_readable_from_other_origins_and_the_page_is_locked_down() {
    let harness = Harness::start().await;
    let api = harness.node().api_addr.to_string();
    let head = |path: &'static str| {
        let api = api.clone();
        async move {
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {api}\r\nOrigin: https://wallet.example\r\nConnection: close\r\n\r\n"
            );
            let text = exchange_for(&api, &request, Duration::from_secs(5))
                .await
                .to_ascii_lowercase();
            text.split("\r\n\r\n").next().unwrap_or("").to_owned()
        }
    };
    for path in ["/", "/api/v1/", "/api/v1/streams", "/ready"] {
        assert!(
            head(path).await.contains("access-control-allow-origin: *"),
            "{path}"
        );
    }
    assert!(
        !head("/metrics")
            .await
            .contains("access-control-allow-origin"),
        "metrics stay same-origin"
    );
    let page = head("/explorer").await;
    assert!(
        page.contains("content-security-policy: default-src 'none'"),
        "{page}"
    );
    // The page may connect to its own API and the advertised streams origin, nowhere else.
    let streams = format!(
        "connect-src 'self' ws://127.0.0.1:{};",
        harness.node().streams_addr.port()
    );
    assert!(page.contains(&streams), "{streams} in {page}");
    // No other page may frame it (clickjacking), and it runs no inline script: its script and
    // styles are files of the node's own.
    assert!(page.contains("x-frame-options: deny"), "{page}");
    assert!(page.contains("frame-ancestors 'none'"), "{page}");
    assert!(page.contains("script-src 'self';"), "{page}");
    assert!(!page.contains("unsafe-inline"), "{page}");
    let script = head("/explorer.js").await;
    assert!(script.starts_with("http/1.1 200"), "{script}");
    assert!(script.contains("content-type: text/javascript"), "{script}");
    assert!(
        script.contains("x-content-type-options: nosniff"),
        "{script}"
    );
    let styles = head("/explorer.css").await;
    assert!(styles.starts_with("http/1.1 200"), "{styles}");
    assert!(styles.contains("content-type: text/css"), "{styles}");
}
