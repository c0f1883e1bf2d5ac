//! Drop-in mode: the node in front of a real (small) upstream HTTP server standing in for
//! Planetmint's API on another port.

mod support;

use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};
use support::*;

/// Planetmint's API, played by a server that echoes what it received.
async fn upstream() -> (String, actix_web::dev::ServerHandle) {
    async fn root() -> HttpResponse {
        HttpResponse::Ok().json(json!({
            "api": {"v1": {"docs": "https://docs.planetmint.io/x", "transactions": "/api/v1/transactions/",
                           "streams": "ws://planetmint:9985/api/v1/streams/valid_transactions",
                           "streamedblocks": "ws://planetmint:9985/api/v1/streams/valid_blocks"}},
            "docs": "https://docs.planetmint.io/", "software": "Planetmint", "version": "2.5.1",
        }))
    }
    async fn v1() -> HttpResponse {
        HttpResponse::Ok().json(json!({"transactions": "/transactions/",
            "streams": "ws://planetmint:9985/api/v1/streams/valid_transactions",
            "streamedblocks": "ws://planetmint:9985/api/v1/streams/valid_blocks"}))
    }
    async fn slow() -> HttpResponse {
        tokio::time::sleep(Duration::from_secs(5)).await;
        HttpResponse::Ok().finish()
    }
    async fn echo(req: HttpRequest, body: web::Bytes) -> HttpResponse {
        let headers: serde_json::Map<String, Value> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(v.to_str().unwrap_or(""))))
            .collect();
        let status = match req.path() {
            "/api/v1/missing" => 404,
            p if p.starts_with("/api/v1/transactions") && req.method() == "POST" => 202,
            _ => 200,
        };
        HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
            .insert_header(("x-planetmint", "yes"))
            .json(json!({
                "method": req.method().as_str(),
                "path": req.path(),
                "query": req.query_string(),
                "headers": headers,
                "body": String::from_utf8_lossy(&body),
            }))
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = HttpServer::new(|| {
        App::new()
            .route("/", web::get().to(root))
            .route("/api/v1/", web::get().to(v1))
            .route("/api/v1/slow", web::get().to(slow))
            .default_service(web::to(echo))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("listen")
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://{addr}"), handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_fronts_planetmints_api_unchanged() {
    let (upstream_url, upstream) = upstream().await;
    let harness = Harness::start_with(|c| {
        c.api.upstream = Some(upstream_url.clone());
        c.api.upstream_timeout = Duration::from_secs(1);
    })
    .await;
    let api = harness.node().api_addr.to_string();
    let streams = format!(
        "{}/api/v1/streams/valid_transactions",
        harness.streams_base()
    );

    // Root documents: Planetmint's, with our stream URLs.
    let (status, root) = get_json(&api, "/").await;
    assert_eq!(status, 200);
    assert_eq!(root["software"], "Planetmint");
    assert_eq!(root["api"]["v1"]["streams"], streams.as_str());
    assert_eq!(root["api"]["v1"]["transactions"], "/api/v1/transactions/");
    let (_, v1) = get_json(&api, "/api/v1/").await;
    assert_eq!(v1["streams"], streams.as_str());
    assert_eq!(
        v1["streamedblocks"],
        format!("{}/api/v1/streams/valid_blocks", harness.streams_base()).as_str()
    );
    assert_eq!(v1["transactions"], "/transactions/");

    // GET with a query and headers.
    let (status, body) = http_request(
        &api,
        &format!("GET /api/v1/outputs?public_key=abc&spent=false HTTP/1.1\r\nHost: {api}\r\nX-Client: wallet-7\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 200);
    let echo: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/api/v1/outputs");
    assert_eq!(echo["query"], "public_key=abc&spent=false");
    assert_eq!(echo["headers"]["x-client"], "wallet-7");
    assert_eq!(echo["headers"]["x-forwarded-for"], "127.0.0.1");
    assert!(
        echo["headers"]
            .get("connection")
            .is_none_or(|c| c != "close"),
        "hop-by-hop headers are not forwarded"
    );

    // POST with a body; the upstream's status and headers come back.
    let tx = r#"{"id":"abc","operation":"CREATE"}"#;
    let raw = http_raw(
        &api,
        &format!(
            "POST /api/v1/transactions?mode=commit HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{tx}",
            tx.len()
        ),
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 202"), "{raw}");
    assert!(raw.to_ascii_lowercase().contains("x-planetmint: yes"));
    let echo: Value =
        serde_json::from_str(raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or(""))
            .expect("JSON");
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body"], tx);
    assert_eq!(echo["query"], "mode=commit");
    assert_eq!(echo["headers"]["content-type"], "application/json");

    // Upstream's own 404 passes through (not ours).
    let (status, body) = http_get(&api, "/api/v1/missing").await;
    assert_eq!(status, 404);
    assert!(body.contains("\"path\":\"/api/v1/missing\""), "{body}");

    // Our own routes stay ours.
    let (status, health) = get_json(&api, "/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");

    // Too slow: 502 with a JSON error.
    let (status, error) = get_json(&api, "/api/v1/slow").await;
    assert_eq!(status, 502);
    assert!(
        error["error"]
            .as_str()
            .unwrap_or("")
            .contains("did not answer"),
        "{error}"
    );

    // Upstream gone: 502 JSON for forwarded paths, our own root documents.
    upstream.stop(false).await;
    let (status, error) = get_json(&api, "/api/v1/blocks?transaction_id=x").await;
    assert_eq!(status, 502);
    assert!(
        error["error"]
            .as_str()
            .unwrap_or("")
            .contains("cannot be reached"),
        "{error}"
    );
    let (status, root) = get_json(&api, "/").await;
    assert_eq!(status, 200);
    assert_eq!(root["software"], "planetmint-streams");
    assert_eq!(root["api"]["v1"]["streams"], streams.as_str());
}

async fn http_raw(addr: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("in time")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}
