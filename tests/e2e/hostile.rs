//! Hostile clients against a running node. Each test also runs a well-behaved subscriber (a
//! `Bystander`) and checks it received every event, in order.

use std::time::Duration;

use crate::support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TX_PATH: &str = "/api/v1/streams/valid_transactions";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_connects_beyond_the_limit_get_503_and_subscribers_carry_on() {
    let harness = Harness::start_with(|c| {
        c.streams.max_connections = 20;
        c.streams.max_connections_per_ip = 10_000;
    })
    .await;
    let bystander = Bystander::start(&harness, 1).await;
    let url = format!("{}{TX_PATH}", harness.streams_base());
    let mut held = Vec::new();
    for _ in 0..19 {
        held.push(UrlStream::connect(&url).await);
    }
    let attempts: Vec<_> = (0..2000)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                match tokio_tungstenite::connect_async(url).await {
                    Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                        let body: serde_json::Value =
                            serde_json::from_slice(response.body().as_deref().unwrap_or_default())
                                .unwrap_or_default();
                        (response.status().as_u16(), body["status"].as_u64())
                    }
                    Ok(_) => (101, None),
                    Err(_) => (0, None),
                }
            })
        })
        .collect();
    let mut refused = 0;
    for attempt in attempts {
        let (status, body_status) = attempt.await.expect("join");
        assert_eq!(status, 503, "a connect beyond the limit");
        assert_eq!(body_status, Some(503), "JSON body");
        refused += 1;
    }
    assert_eq!(refused, 2000);
    // A slot freed is a slot usable, once the server has seen the connection go.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let again = loop {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((ws, _)) => break ws,
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 503, "refused only while full");
            }
            Err(err) => panic!("connect {url}: {err}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the freed slot is usable within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop(again);
    bystander.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_from_one_address_get_429() {
    let harness = Harness::start_with(|c| c.streams.max_connections_per_ip = 3).await;
    let url = format!("{}{TX_PATH}", harness.streams_base());
    let _held = [
        UrlStream::connect(&url).await,
        UrlStream::connect(&url).await,
        UrlStream::connect(&url).await,
    ];
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429);
            assert_eq!(
                response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()),
                Some("5")
            );
        }
        other => panic!("expected 429, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_too_big_are_refused_with_1009() {
    let harness = Harness::start().await;
    let bystander = Bystander::start(&harness, 2).await;
    let addr = harness.node().streams_addr.to_string();
    // One 10 MiB frame on a URL stream; on the JSON-RPC channel 320 KiB of text in 8 KiB
    // fragments, each far below the 64 KiB limit, the message above it.
    let one_frame = client_frame(0x2, &vec![b'x'; 10 * 1024 * 1024], true);
    let mut fragments = client_frame(0x1, b"{", false);
    for _ in 0..40 {
        fragments.extend(client_frame(0x0, &[b' '; 8 * 1024], false));
    }
    fragments.extend(client_frame(0x0, b"}", true));
    for (path, bytes) in [(TX_PATH, one_frame), ("/api/v1/streams", fragments)] {
        let mut socket = raw_upgrade(&addr, path).await;
        // The server may close before it has read everything: write what it takes.
        let _ = tokio::time::timeout(Duration::from_secs(5), socket.write_all(&bytes)).await;
        let close = read_close_frame(&mut socket, Duration::from_secs(5))
            .await
            .expect("a close frame");
        assert_eq!(close.0, 1009, "{path}: {close:?}");
    }
    bystander.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_websocket_version_is_told_the_one_spoken() {
    let harness = Harness::start().await;
    let addr = harness.node().streams_addr.to_string();
    for path in [TX_PATH, "/api/v1/streams"] {
        let request = upgrade_request(&addr, path, "")
            .replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
        let response = exchange_for(&addr, &request, Duration::from_secs(5))
            .await
            .to_lowercase();
        assert!(response.starts_with("http/1.1 426"), "{path}: {response}");
        assert!(
            response.contains("\r\nsec-websocket-version: 13\r\n"),
            "{path}: RFC 6455 4.2.2 names the version: {response}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_handshakes_are_timed_out() {
    let harness =
        Harness::start_with(|c| c.streams.handshake_timeout = Duration::from_secs(1)).await;
    let bystander = Bystander::start(&harness, 3).await;
    let addr = harness.node().streams_addr.to_string();
    let before_connecting = tokio::time::Instant::now();
    let mut sockets = Vec::new();
    for _ in 0..200 {
        let mut socket = TcpStream::connect(&addr).await.expect("connect");
        socket
            .write_all(b"GET /api/v1/streams/valid_transactions HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        sockets.push(socket);
    }
    let started = tokio::time::Instant::now();
    // Keep dribbling header bytes; the server must drop every one of them anyway.
    let mut open = sockets.len();
    let mut buf = [0u8; 1024];
    while open > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{open} slow handshakes still open"
        );
        open = 0;
        for socket in sockets.iter_mut() {
            let _ = socket.write_all(b"X").await;
            match tokio::time::timeout(Duration::from_millis(1), socket.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {}
                Ok(Ok(_)) => {} // 408 and close
                Err(_) => open += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Not before the timeout: actix starts the 1 s timer from a clock it refreshes every
    // 500 ms, so a handshake may be cut 0.5 s after its connection at the earliest, and the
    // last one connected after `before_connecting` (on a loaded machine the connecting alone
    // can take most of a second, so it is not measured from `started`).
    assert!(
        before_connecting.elapsed() >= Duration::from_millis(450),
        "not before the timeout"
    );
    bystander.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_instead_of_a_handshake_and_random_query_strings_get_400s() {
    let harness = Harness::start().await;
    let bystander = Bystander::start(&harness, 4).await;
    let addr = harness.node().streams_addr.to_string();
    // Junk bytes.
    let mut rng = 0x2545f4914f6cdd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for _ in 0..50 {
        let junk: Vec<u8> = (0..1 + next() % 4000).map(|_| next() as u8).collect();
        let mut socket = TcpStream::connect(&addr).await.expect("connect");
        let _ = socket.write_all(&junk).await;
        let _ = socket.write_all(b"\r\n\r\n").await;
        let mut response = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(3), socket.read_to_end(&mut response)).await;
        assert!(
            response.is_empty() || response.starts_with(b"HTTP/1.1 4"),
            "junk gets a 4xx or a closed socket: {}",
            String::from_utf8_lossy(&response[..response.len().min(80)])
        );
    }
    // Thousands of random query strings, each with at least one bad part.
    let keys = [
        "from_height",
        "public_key",
        "asset_id",
        "operation",
        "batch",
        "public_key_in",
        "x",
        "",
        "from%20height",
        "%ff",
        "from_height%00",
    ];
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..3000 {
        let mut parts = Vec::new();
        for _ in 0..1 + next() % 4 {
            let key = keys[(next() % keys.len() as u64) as usize];
            let value: String = (0..next() % 70)
                .map(|_| {
                    let c = (next() % 94 + 33) as u8;
                    if c.is_ascii_alphanumeric() {
                        (c as char).to_string()
                    } else {
                        format!("%{c:02X}")
                    }
                })
                .collect();
            parts.push(format!("{key}={value}"));
        }
        // Guarantee a fault: a known parameter with a value nobody accepts (unknown names
        // are ignored, as Planetmint ignores the query string).
        parts.insert(
            (next() % (parts.len() as u64 + 1)) as usize,
            format!("batch=bogus{i}"),
        );
        let query = parts.join("&");
        let request = upgrade_request(
            &addr,
            &format!("{TX_PATH}?{query}"),
            "Connection: close\r\n",
        );
        let (status, body) = http_request(&addr, &request).await;
        *statuses.entry(status).or_insert(0) += 1;
        assert_eq!(status, 400, "{query}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
        assert!(json["parameter"].is_string(), "{body}");
    }
    assert_eq!(statuses.get(&400), Some(&3000));
    bystander.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_text_gets_1007() {
    let harness = Harness::start().await;
    let bystander = Bystander::start(&harness, 5).await;
    let addr = harness.node().streams_addr.to_string();
    let mut socket = raw_upgrade(&addr, TX_PATH).await;
    socket
        .write_all(&client_frame(0x1, &[0xc3, 0x28, 0xff], true))
        .await
        .expect("write");
    let close = read_close_frame(&mut socket, Duration::from_secs(5))
        .await
        .expect("close");
    assert_eq!(close.0, 1007, "{close:?}");
    bystander.finish().await;
}

/// Frames over a client's budget (here 50 a second after a burst of 20) are read at the
/// budget's rate: the client is slowed by TCP, every request is still answered, nothing is
/// closed, and other subscribers carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_is_slowed_not_cut_off() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    const FRAMES: usize = 120;
    let harness = Harness::start_with(|c| {
        c.streams.inbound_frames_per_second = 50;
        c.streams.inbound_frames_burst = 20;
        c.streams.rpc_requests_per_second = 50;
        c.streams.rpc_requests_burst = 20;
    })
    .await;
    let bystander = Bystander::start(&harness, 6).await;
    // At least (2 * 120 - 20) / 50 = 4.4 s for the URL stream's text and pings, (120 - 20) / 50
    // = 2 s for the requests; less a margin for the bucket's refill while the client connects.
    let at_least = Duration::from_millis(1500);

    // A URL stream: text is read and ignored, every ping is answered, in order.
    let mut ws = UrlStream::connect(&format!("{}{TX_PATH}", harness.streams_base())).await;
    let started = tokio::time::Instant::now();
    for i in 0..FRAMES {
        ws.ws.feed(Message::text("hello?")).await.expect("send");
        ws.ws
            .feed(Message::Ping(i.to_string().into_bytes().into()))
            .await
            .expect("send");
    }
    ws.ws.flush().await.expect("send");
    let mut pongs = Vec::new();
    while pongs.len() < FRAMES {
        match ws
            .next_frame(Duration::from_secs(30))
            .await
            .expect("pongs in time")
        {
            Some(Ok(Message::Pong(payload))) => {
                pongs.push(String::from_utf8_lossy(&payload).into_owned())
            }
            // The bystander's blocks reach this subscriber too, while it is slowed.
            Some(Ok(Message::Ping(_) | Message::Text(_))) => {}
            other => panic!("a URL stream: expected pongs and events, got {other:?}"),
        }
    }
    assert_eq!(
        pongs,
        (0..FRAMES).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    let took = started.elapsed();
    assert!(took >= at_least, "read at the budget's rate, took {took:?}");
    ws.close().await;

    // The JSON-RPC channel: every request answered, in order, on the same connection.
    let mut rpc = RpcClient::connect(&format!("{}/api/v1/streams", harness.streams_base())).await;
    let started = tokio::time::Instant::now();
    for id in 0..FRAMES {
        let request = serde_json::json!({
            "jsonrpc": "2.0", "id": id, "method": "describe", "params": {"stream": "valid_blocks"}
        });
        rpc.feed(&request).await;
    }
    rpc.flush().await;
    for id in 0..FRAMES {
        let answer = rpc.answer().await;
        assert_eq!(answer["id"], id, "{answer}");
        assert_eq!(answer["result"]["name"], "valid_blocks", "{answer}");
    }
    let took = started.elapsed();
    assert!(took >= at_least, "read at the budget's rate, took {took:?}");
    rpc.close().await;
    bystander.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmasked_and_fragmented_control_frames_are_protocol_errors() {
    let harness = Harness::start().await;
    let addr = harness.node().streams_addr.to_string();
    // RFC 6455 5.1: a client frame must be masked.
    let mut socket = raw_upgrade(&addr, TX_PATH).await;
    socket.write_all(&[0x89, 0x00]).await.expect("write");
    let close = read_close_frame(&mut socket, Duration::from_secs(5)).await;
    assert!(
        matches!(close, Some((1002, _)) | None),
        "unmasked frame: {close:?}"
    );
    // RFC 6455 5.5: control frames must not be fragmented.
    let mut socket = raw_upgrade(&addr, TX_PATH).await;
    socket
        .write_all(&client_frame(0x9, b"frag", false))
        .await
        .expect("write");
    let close = read_close_frame(&mut socket, Duration::from_secs(5)).await;
    assert!(
        matches!(close, Some((1002, _)) | None),
        "fragmented ping: {close:?}"
    );
    // A fragmented text message from a client is accepted (and ignored).
    let mut socket = raw_upgrade(&addr, TX_PATH).await;
    socket
        .write_all(&client_frame(0x1, b"hel", false))
        .await
        .expect("write");
    socket
        .write_all(&client_frame(0x0, b"lo", true))
        .await
        .expect("write");
    socket
        .write_all(&client_frame(0x9, b"still here", true))
        .await
        .expect("write");
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf))
        .await
        .expect("pong")
        .expect("read");
    assert_eq!(&buf[..2], &[0x8a, 10], "a pong");
    assert_eq!(&buf[2..n], b"still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_outside_the_allow_list_are_refused() {
    let harness =
        Harness::start_with(|c| c.streams.allowed_origins = vec!["https://wallet.example".into()])
            .await;
    let addr = harness.node().streams_addr.to_string();
    let upgrade = |origin: Option<&str>| {
        let origin = origin
            .map(|o| format!("Origin: {o}\r\n"))
            .unwrap_or_default();
        upgrade_request(&addr, TX_PATH, &origin)
    };
    let status = |request: String| {
        let addr = addr.clone();
        async move {
            let mut socket = TcpStream::connect(&addr).await.expect("connect");
            socket.write_all(request.as_bytes()).await.expect("write");
            let mut buf = [0u8; 512];
            let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf))
                .await
                .expect("reply")
                .expect("read");
            String::from_utf8_lossy(&buf[..n])
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_owned()
        }
    };
    assert_eq!(status(upgrade(Some("https://evil.example"))).await, "403");
    assert_eq!(status(upgrade(Some("https://wallet.example"))).await, "101");
    assert_eq!(
        status(upgrade(None)).await,
        "101",
        "non-browser clients send no Origin"
    );
}
