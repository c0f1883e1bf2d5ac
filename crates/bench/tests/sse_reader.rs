//! `wsload`'s Server-Sent Events reader against a real socket: a loopback server that checks
//! the request and answers a chunked event stream (keep-alive comment, events, the node's
//! final `close` event) cut at awkward places, then a refusal with its status.

use std::time::Duration;

use planetmint_streams_bench::load::connect_tcp;
use planetmint_streams_bench::loopback;
use planetmint_streams_bench::sse::{SseError, SseStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Accepts one connection, returns its request head, writes `reply` in pieces of `piece` bytes.
async fn serve_once(listener: TcpListener, reply: Vec<u8>, piece: usize) -> String {
    let (mut socket, _) = listener.accept().await.expect("accept");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        socket.read_exact(&mut byte).await.expect("request");
        head.push(byte[0]);
    }
    for part in reply.chunks(piece) {
        socket.write_all(part).await.expect("write");
        socket.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    String::from_utf8(head).expect("ascii head")
}

fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for part in body.chunks(50) {
        out.extend_from_slice(format!("{:X}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[tokio::test]
async fn reads_a_chunked_event_stream_to_its_close_event() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let body = concat!(
        ": keep-alive\n\n",
        "event: valid_transactions\ndata: {\"transaction_id\":\"a\",\"height\":1}\n\n",
        "event: valid_transactions\nid: 1\ndata: {\"transaction_id\":\"b\",\"height\":1}\n\n",
        "event: close\nid: 1\ndata: {\"reason\":\"server shutting down\",\"last_height\":1}\n\n",
    );
    let server = tokio::spawn(serve_once(listener, chunked(body.as_bytes()), 7));
    let url = format!("http://{addr}/api/v1/streams/valid_transactions?batch=none");
    let target = loopback::target(&url).expect("target");
    let stream = connect_tcp(&target, None).await.expect("connect");
    let mut sse = SseStream::open(stream, &target).await.expect("200");
    let mut got = Vec::new();
    while let Some(event) = sse.next_event().await.expect("event") {
        got.push(event);
    }
    let head = server.await.expect("server");
    assert!(head.starts_with("GET /api/v1/streams/valid_transactions?batch=none HTTP/1.1\r\n"));
    assert!(head.contains("\r\nAccept: text/event-stream\r\n"));
    assert!(head.contains(&format!("\r\nHost: {addr}\r\n")));
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].data, r#"{"transaction_id":"a","height":1}"#);
    assert_eq!(got[1].id.as_deref(), Some("1"));
    assert_eq!(got[2].event, "close");
    assert_eq!(sse.comments(), 1);
}

#[tokio::test]
async fn a_refusal_is_an_error_with_its_status() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let reply = b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 25\r\n\r\n{\"error\":\"too many\",\"x\":1}".to_vec();
    let server = tokio::spawn(serve_once(listener, reply, 1000));
    let target = loopback::target(&format!("http://{addr}/x")).expect("target");
    let stream = connect_tcp(&target, None).await.expect("connect");
    match SseStream::open(stream, &target).await {
        Err(SseError::Status { status, body }) => {
            assert_eq!(status, 429);
            assert!(body.contains("too many"));
        }
        other => panic!("expected the 429, got {other:?}"),
    }
    server.await.expect("server");
}
