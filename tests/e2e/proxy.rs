//! Drop-in mode: the node in front of a real (small) upstream HTTP server standing in for
//! Planetmint's API on another port.

use std::time::Duration;

use crate::support::*;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

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
    let raw = exchange(
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

    // Upstream gone: 502 JSON for forwarded paths, our own root documents. (Its workers wind
    // down after `stop` returns, and a connection the node keeps to one can still be answered
    // meanwhile: the node is asked until the upstream is gone for it too.)
    upstream.stop(false).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (status, error) = loop {
        let (status, error) = get_json(&api, "/api/v1/blocks?transaction_id=x").await;
        if status != 200 || tokio::time::Instant::now() >= deadline {
            break (status, error);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
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

/// Planetmint's API played by a server that records every request it gets and reads bodies
/// as they come without keeping them (so what the node must not hold is not held here either).
struct Recorder {
    url: String,
    handle: actix_web::dev::ServerHandle,
    seen: std::sync::Arc<Seen>,
}

#[derive(Default)]
struct Seen {
    requests: std::sync::Mutex<Vec<Value>>,
    body_bytes: std::sync::atomic::AtomicUsize,
}

impl Recorder {
    async fn start() -> Self {
        async fn sink(
            req: HttpRequest,
            mut payload: web::Payload,
            seen: web::Data<Seen>,
        ) -> HttpResponse {
            use futures_util::StreamExt;
            let headers: serde_json::Map<String, Value> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), Value::from(v.to_str().unwrap_or(""))))
                .collect();
            let mut body = 0;
            while let Some(Ok(chunk)) = payload.next().await {
                body += chunk.len();
                seen.body_bytes
                    .fetch_add(chunk.len(), std::sync::atomic::Ordering::AcqRel);
            }
            let record = json!({"method": req.method().as_str(), "uri": req.uri().to_string(),
                                "headers": headers, "body_bytes": body});
            seen.requests
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(record.clone());
            HttpResponse::Ok().json(record)
        }
        let seen = std::sync::Arc::new(Seen::default());
        let data = web::Data::from(seen.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(sink))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            url: format!("http://{addr}"),
            handle,
            seen,
        }
    }

    fn requests(&self) -> Vec<Value> {
        self.seen
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn body_bytes(&self) -> usize {
        self.seen
            .body_bytes
            .load(std::sync::atomic::Ordering::Acquire)
    }
}

async fn api_metric(api: &str, labels: &str) -> f64 {
    let (_, text) = http_get(api, "/metrics").await;
    metric(&text, "planetmint_streams_api_refused_total", labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_targets_that_are_not_a_path_get_400_and_reach_nothing() {
    let upstream = Recorder::start().await;
    let harness = Harness::start_with(|c| c.api.upstream = Some(upstream.url.clone())).await;
    let api = harness.node().api_addr.to_string();
    let upstream_host = upstream.url.trim_start_matches("http://").to_owned();
    let targets = [
        "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
        "POST * HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".to_owned(),
        format!("GET http://{upstream_host}/api/v1/blocks HTTP/1.1\r\nHost: x\r\n\r\n"),
        "GET http://169.254.169.254/latest/meta-data HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
        format!("CONNECT {upstream_host} HTTP/1.1\r\nHost: {upstream_host}\r\n\r\n"),
    ];
    for request in &targets {
        let mut stream = open_from("127.0.0.1", &api, request.as_bytes()).await;
        let (status, _, body) = read_response(&mut stream, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{request:?}: no response"));
        assert_eq!(status, 400, "{request:?}: {body}");
        assert!(body.contains("must be a path"), "{request:?}: {body}");
        assert!(
            closed_within(&mut stream, Duration::from_secs(10)).await,
            "{request:?}: closed after the refusal"
        );
    }
    assert_eq!(
        upstream.requests(),
        Vec::<Value>::new(),
        "nothing forwarded"
    );
    assert_eq!(
        api_metric(&api, "reason=\"bad_target\"").await,
        targets.len() as f64
    );

    // A path is forwarded as before, and the node keeps serving.
    let (status, echo) = get_json(&api, "/api/v1/blocks?height=1").await;
    assert_eq!(status, 200);
    assert_eq!(echo["uri"], "/api/v1/blocks?height=1");
    assert_eq!(upstream.requests().len(), 1);
    upstream.handle.stop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_come_from_the_connection_not_the_client() {
    let echo = echoed_by_the_upstream(
        "GET /api/v1/outputs HTTP/1.1\r\nHost: node.example:9984\r\nForwarded: for=6.6.6.6;proto=https\r\n\
         X-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n\
         X-Forwarded-For: 10.1.1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    let headers = &echo["headers"];
    assert_eq!(headers.get("forwarded"), None, "{headers}");
    assert_eq!(headers.get("x-real-ip"), None, "{headers}");
    assert_eq!(headers["x-forwarded-proto"], "http", "plain connection");
    assert_eq!(headers["x-forwarded-host"], "node.example:9984");
    assert_eq!(headers["x-forwarded-for"], "10.1.1.1, 127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_x_forwarded_for_header_is_kept_in_order() {
    let echo = echoed_by_the_upstream(
        "GET /api/v1/outputs HTTP/1.1\r\nHost: node.example:9984\r\n\
         X-Forwarded-For: 10.1.1.1\r\nX-Forwarded-For: 10.2.2.2, 10.3.3.3\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        echo["headers"]["x-forwarded-for"], "10.1.1.1, 10.2.2.2, 10.3.3.3, 127.0.0.1",
        "{echo}"
    );
}

/// Sends `request` as it is to a node proxying to a recording upstream; returns what the
/// upstream saw (its JSON echo), after checking the node answered 200.
async fn echoed_by_the_upstream(request: &str) -> Value {
    let upstream = Recorder::start().await;
    let harness = Harness::start_with(|c| c.api.upstream = Some(upstream.url.clone())).await;
    let api = harness.node().api_addr.to_string();
    let (status, body) = http_request(&api, request).await;
    assert_eq!(status, 200, "{body}");
    upstream.handle.stop(false).await;
    serde_json::from_str(&body).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_with_dot_segments_never_leave_the_upstreams_prefix() {
    let upstream = Recorder::start().await;
    // Planetmint's API behind a path prefix: `..` must not climb out of it.
    let base = format!("{}/planetmint", upstream.url);
    let harness = Harness::start_with(|c| c.api.upstream = Some(base)).await;
    let api = harness.node().api_addr.to_string();
    for path in [
        "/api/v1/../../admin",
        "/api/v1/%2e%2e/%2E%2E/admin",
        "/api/v1/.%2e/x",
        "/api/./v1/x",
        "/api/v1/..%2f..%2fadmin",
        "/api/v1/%252e%252e/x",
    ] {
        let (status, body) = http_request(
            &api,
            &format!("GET {path} HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains("dot segment"), "{path}: {body}");
    }
    assert_eq!(
        upstream.requests(),
        Vec::<Value>::new(),
        "nothing forwarded"
    );
    // Dots inside names are not dot segments: forwarded under the prefix.
    let (status, echo) = get_json(&api, "/api/v1/a.b/...c").await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(echo["uri"], "/planetmint/api/v1/a.b/...c");
    upstream.handle.stop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_502_body_names_neither_the_upstream_nor_the_os_error() {
    let port = planetmint_streams_devchain::process::free_port().expect("port");
    let harness = Harness::start_with(|c| {
        c.api.upstream = Some(format!("http://127.0.0.1:{port}"));
    })
    .await;
    let api = harness.node().api_addr.to_string();
    let (status, body) = http_get(&api, "/api/v1/transactions/abc").await;
    assert_eq!(status, 502);
    let error: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        error,
        json!({"error": "Planetmint's API cannot be reached", "status": 502})
    );
    assert!(!body.contains(&port.to_string()), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_streamed_within_their_size_and_time_limits() {
    let upstream = Recorder::start().await;
    let harness = Harness::start_with(|c| {
        c.api.upstream = Some(upstream.url.clone());
        c.api.upstream_max_body = 64 * 1024;
        c.api.body_timeout = Duration::from_secs(1);
    })
    .await;
    let api = harness.node().api_addr.to_string();
    let post = |headers: &str| {
        format!("POST /api/v1/transactions HTTP/1.1\r\nHost: x\r\n{headers}\r\n").into_bytes()
    };

    // Announced too large: 413 before a byte of the body is read, nothing forwarded.
    let mut stream = open_from("127.0.0.1", &api, &post("Content-Length: 70000\r\n")).await;
    let (status, _, body) = read_response(&mut stream, Duration::from_secs(10))
        .await
        .expect("413");
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("65536"), "{body}");
    assert!(closed_within(&mut stream, Duration::from_secs(10)).await);
    assert!(upstream.requests().is_empty());

    // Chunked and growing past the limit: cut off with 413, connection closed.
    let mut stream = open_from("127.0.0.1", &api, &post("Transfer-Encoding: chunked\r\n")).await;
    {
        use tokio::io::AsyncWriteExt;
        let chunk = format!("{:x}\r\n{}\r\n", 8192, "a".repeat(8192));
        for _ in 0..9 {
            if stream.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
        }
    }
    let (status, _, _) = read_response(&mut stream, Duration::from_secs(10))
        .await
        .expect("413");
    assert_eq!(status, 413);
    assert!(closed_within(&mut stream, Duration::from_secs(10)).await);

    // A body that stops coming: 408 after api.body_timeout, closed; others are served meanwhile.
    let mut stalled = open_from(
        "127.0.0.1",
        &api,
        &[post("Content-Length: 1000\r\n"), b"0123456789".to_vec()].concat(),
    )
    .await;
    let (status, _) = http_get(&api, "/health").await;
    assert_eq!(status, 200);
    let started = std::time::Instant::now();
    let (status, head, body) = read_response(&mut stalled, Duration::from_secs(15))
        .await
        .expect("408");
    assert_eq!(status, 408, "{body}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(closed_within(&mut stalled, Duration::from_secs(10)).await);
    assert!(started.elapsed() < Duration::from_secs(12));

    // Whole bodies go through, sized or chunked, byte for byte.
    let body = "x".repeat(60_000);
    let mut stream = open_from(
        "127.0.0.1",
        &api,
        &[
            post(&format!("Content-Length: {}\r\n", body.len())),
            body.clone().into_bytes(),
        ]
        .concat(),
    )
    .await;
    let (status, _, echo) = read_response(&mut stream, Duration::from_secs(10))
        .await
        .expect("200");
    assert_eq!(status, 200, "{echo}");
    let echo: Value = serde_json::from_str(&echo).expect("JSON");
    assert_eq!(echo["body_bytes"], 60_000);
    assert_eq!(echo["headers"]["content-length"], "60000");

    let chunked = format!(
        "{:x}\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        1000,
        "y".repeat(1000),
        24,
        "z".repeat(24)
    );
    let mut stream = open_from(
        "127.0.0.1",
        &api,
        &[post("Transfer-Encoding: chunked\r\n"), chunked.into_bytes()].concat(),
    )
    .await;
    let (status, _, echo) = read_response(&mut stream, Duration::from_secs(10))
        .await
        .expect("200");
    assert_eq!(status, 200, "{echo}");
    let echo: Value = serde_json::from_str(&echo).expect("JSON");
    assert_eq!(echo["body_bytes"], 1024);
    upstream.handle.stop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_upstream_bodies_are_never_read() {
    let harness = Harness::start().await;
    let api = harness.node().api_addr.to_string();
    for head in [
        "Content-Length: 10485760\r\n",
        "Transfer-Encoding: chunked\r\n",
    ] {
        let request = format!("POST /api/v1/transactions HTTP/1.1\r\nHost: x\r\n{head}\r\n");
        let mut stream = open_from(
            "127.0.0.1",
            &api,
            &[request.into_bytes(), b"5\r\nhello\r\n".to_vec()].concat(),
        )
        .await;
        // The answer comes although the body is far from complete, and the connection ends.
        let (status, _, body) = read_response(&mut stream, Duration::from_secs(10))
            .await
            .expect("404");
        assert_eq!(status, 404, "{head}: {body}");
        assert!(
            closed_within(&mut stream, Duration::from_secs(10)).await,
            "{head}: the rest of the body is not waited for"
        );
    }
    // Routes the node answers itself never read a body either.
    for (request, expected) in [
        ("POST /health HTTP/1.1\r\nHost: x\r\n", 404),
        ("GET /health HTTP/1.1\r\nHost: x\r\n", 200),
        ("POST /api/v1/streams HTTP/1.1\r\nHost: x\r\n", 405),
    ] {
        let mut stream = open_from(
            "127.0.0.1",
            &api,
            format!("{request}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n").as_bytes(),
        )
        .await;
        let (status, _, body) = read_response(&mut stream, Duration::from_secs(10))
            .await
            .expect("answer");
        assert_eq!(status, expected, "{request}: {body}");
        assert!(
            closed_within(&mut stream, Duration::from_secs(10)).await,
            "{request}: the unfinished body is not waited for"
        );
    }
    let (status, _) = http_get(&api, "/health").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_limited_per_client_and_in_all() {
    let upstream = Recorder::start().await;
    let harness = Harness::start_with(|c| {
        c.api.upstream = Some(upstream.url.clone());
        c.api.bind = "0.0.0.0:0".into();
        c.api.max_connections_per_ip = 2;
        c.api.max_connections = 3;
    })
    .await;
    let api = format!("127.0.0.1:{}", harness.node().api_addr.port());
    // A connection that is surely counted (it was answered) and stays open (its next
    // request's body never comes; api.body_timeout is 30 s).
    let held = |source: &'static str| {
        let api = api.clone();
        async move {
            let mut stream =
                open_from(source, &api, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
            let (status, _, body) = read_response(&mut stream, Duration::from_secs(10))
                .await
                .expect("answer");
            {
                use tokio::io::AsyncWriteExt;
                // A refused connection may be closed already: then the write fails, fine.
                let _ = stream
                    .write_all(b"POST /api/v1/transactions HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
                    .await;
            }
            (status, body, stream)
        }
    };
    let (a1, _, first) = held("127.0.0.1").await;
    let (a2, _, _second) = held("127.0.0.1").await;
    assert_eq!((a1, a2), (200, 200));
    let (status, body, _) = held("127.0.0.1").await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body.contains("too many connections from your address"),
        "{body}"
    );

    let (b1, _, _third) = held("127.0.0.2").await;
    assert_eq!(b1, 200, "another client still gets in");
    let (status, body, _) = held("127.0.0.3").await;
    assert_eq!(status, 503, "{body}");

    // A slot comes back when its connection ends.
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut stream = open_from(
            "127.0.0.1",
            &api,
            b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        let (status, _, _) = read_response(&mut stream, Duration::from_secs(10))
            .await
            .expect("answer");
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "slot never released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop((_second, _third));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let (status, text) = http_get(&api, "/metrics").await;
        if status == 200 {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "slots never released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        metric(
            &text,
            "planetmint_streams_api_refused_total",
            "too_many_from_ip"
        ) >= 1.0
    );
    assert!(metric(&text, "planetmint_streams_api_refused_total", "server_full") >= 1.0);
    upstream.handle.stop(false).await;
}

/// Resident memory of a process, in KiB (`VmRSS` in /proc).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("process status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The issue's measurement, with real processes: 20 connections each send 4 MiB of a 10 MiB
/// body to the node's binary in drop-in mode and then trickle a byte every 500 ms. The node
/// passes the bytes on (the upstream has them before the bodies are complete), its memory
/// stays flat, others are served meanwhile, and every trickling connection gets 408 and is
/// closed after `api.body_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_bodies_hold_neither_memory_nor_connections() {
    use tokio::io::AsyncWriteExt;
    const CONNECTIONS: usize = 20;
    const SENT: usize = 4 << 20;
    let upstream = Recorder::start().await;
    // No Tarantool: the proxy is what is measured, whatever the source.
    let node = NodeProcess::without_tarantool();
    let child = node
        .command()
        .env("PLANETMINT_STREAMS_API__UPSTREAM", &upstream.url)
        // The old default, so that the bodies are allowed and only their handling is measured.
        .env("PLANETMINT_STREAMS_API__UPSTREAM_MAX_BODY", "16777216")
        // Long enough for 80 MiB to pass on a busy machine (0.2 s measured here with two CPU
        // hogs beside it: 50 times that); the trickle then outlasts it.
        .env("PLANETMINT_STREAMS_API__BODY_TIMEOUT", "10s")
        .spawn()
        .expect("node starts");
    let pid = child.id().expect("pid");
    node.wait_serving().await;
    let api = node.api();
    let before = rss_kib(pid);

    let mut tricklers = Vec::new();
    for _ in 0..CONNECTIONS {
        let api = api.clone();
        tricklers.push(tokio::spawn(async move {
            let head = format!(
                "POST /api/v1/transactions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                10 << 20
            );
            let mut stream = open_from("127.0.0.1", &api, head.as_bytes()).await;
            let block = vec![b'a'; 64 * 1024];
            for _ in 0..SENT / block.len() {
                // (A failure shows below: the upstream would not get every byte.)
                if stream.write_all(&block).await.is_err() {
                    break;
                }
            }
            // Then one byte every 500 ms until the node ends it.
            let (mut reader, mut writer) = stream.into_split();
            let trickle = tokio::spawn(async move {
                while writer.write_all(b"a").await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            });
            let mut answer = Vec::new();
            let read = tokio::time::timeout(
                Duration::from_secs(60),
                tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut answer),
            )
            .await;
            trickle.abort();
            assert!(read.is_ok(), "the node ends the connection");
            String::from_utf8_lossy(&answer).into_owned()
        }));
    }

    // The upstream receives the bodies while they are still unfinished (10 MiB announced, 4 MiB
    // sent): they are streamed. (Most of the bytes, not all: on a busy machine the last chunk
    // of a connection may still be in flight when its body timeout ends it.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while upstream.body_bytes() < CONNECTIONS * SENT * 9 / 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "upstream got {} of {} bytes",
            upstream.body_bytes(),
            CONNECTIONS * SENT
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let during = rss_kib(pid);
    let started = std::time::Instant::now();
    let (status, _) = http_get(&api, "/health").await;
    assert_eq!(status, 200, "others are served meanwhile");
    assert!(started.elapsed() < Duration::from_secs(5));

    for trickler in tricklers {
        let answer = trickler.await.expect("trickler");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    let after = rss_kib(pid);
    eprintln!(
        "node RSS: {before} KiB before, {during} KiB with {CONNECTIONS} x {} MiB in flight, {after} KiB after",
        SENT >> 20
    );
    assert!(
        during.saturating_sub(before) < 32 * 1024,
        "RSS grew from {before} KiB to {during} KiB while {} MiB of bodies passed through",
        (CONNECTIONS * SENT) >> 20
    );
    let (status, _) = http_get(&api, "/health").await;
    assert_eq!(status, 200);
    drop(child);
    upstream.handle.stop(false).await;
}
