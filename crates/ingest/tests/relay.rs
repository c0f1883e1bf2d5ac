//! The relay against a scripted server: `IPROTO_ID` is answered locally only for servers that
//! predate it (< 2.10); for 2.10+ every request, ID included, reaches the server unchanged.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use planetmint_streams_ingest::tarantool::connect;
use tarantool_rs::ExecutorExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const IPROTO_ID: u64 = 0x49;
const IPROTO_PING: u64 = 0x40;

/// A server that greets as `version` and answers every request OK, recording request types.
async fn scripted_server(version: &str) -> (String, Arc<Mutex<Vec<u64>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("addr").to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut greeting =
        format!("Tarantool {version} (Binary) 00000000-0000-0000-0000-000000000000").into_bytes();
    greeting.resize(63, b' ');
    greeting.push(b'\n');
    let mut salt = b"c2FsdHNhbHRzYWx0c2FsdHNhbHRzYWx0c2FsdHNhbHQ=".to_vec();
    salt.resize(63, b' ');
    salt.push(b'\n');
    greeting.extend_from_slice(&salt);
    let recorded = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let recorded = recorded.clone();
            let greeting = greeting.clone();
            tokio::spawn(async move {
                if socket.write_all(&greeting).await.is_err() {
                    return;
                }
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    // Frames: msgpack uint length, then header map {0: type, 1: sync, ...}.
                    loop {
                        let mut cursor = &buf[..];
                        let Ok(len) = rmp::decode::read_int::<u64, _>(&mut cursor) else {
                            break;
                        };
                        let prefix = buf.len() - cursor.len();
                        if cursor.len() < len as usize {
                            break;
                        }
                        let mut body = &cursor[..len as usize];
                        let header = rmpv::decode::read_value(&mut body).expect("header");
                        let field = |k: u64| {
                            header.as_map().and_then(|m| {
                                m.iter()
                                    .find(|(key, _)| key.as_u64() == Some(k))
                                    .and_then(|(_, v)| v.as_u64())
                            })
                        };
                        let (kind, sync) = (field(0).unwrap_or(999), field(1).unwrap_or(0));
                        recorded.lock().expect("lock").push(kind);
                        let mut reply = Vec::new();
                        rmp::encode::write_map_len(&mut reply, 3).expect("w");
                        for (k, v) in [(0u8, 0u64), (1, sync), (5, 1)] {
                            rmp::encode::write_pfix(&mut reply, k).expect("w");
                            rmp::encode::write_uint(&mut reply, v).expect("w");
                        }
                        rmp::encode::write_map_len(&mut reply, 0).expect("w");
                        let mut frame = vec![0xce];
                        frame.extend_from_slice(&(reply.len() as u32).to_be_bytes());
                        frame.extend_from_slice(&reply);
                        if socket.write_all(&frame).await.is_err() {
                            return;
                        }
                        buf.drain(..prefix + len as usize);
                    }
                }
            });
        }
    });
    (address, seen)
}

async fn connect_and_ping(address: &str) {
    let connection = tokio::time::timeout(
        Duration::from_secs(5),
        connect(
            address,
            None,
            Duration::from_secs(2),
            (Duration::from_millis(10), Duration::from_millis(100)),
        ),
    )
    .await
    .expect("in time")
    .expect("tarantool-rs connects through the relay");
    connection.conn.ping().await.expect("ping");
}

#[tokio::test]
async fn for_2_10_every_request_reaches_the_server() {
    let (address, seen) = scripted_server("2.10.4-0-g816000e").await;
    connect_and_ping(&address).await;
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen, vec![IPROTO_ID, IPROTO_PING]);
}

#[tokio::test]
async fn for_2_6_the_id_request_is_answered_by_the_relay() {
    let (address, seen) = scripted_server("2.6.0-0-g47aa4e01e").await;
    connect_and_ping(&address).await;
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        seen,
        vec![IPROTO_PING],
        "IPROTO_ID never reaches a 2.6 server"
    );
}
