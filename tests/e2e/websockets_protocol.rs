//! RFC 6455 behaviour of the stream server as seen by a client whose protocol implementation is
//! not ours: Python's `websockets` library (tests/clients/protocol_checks.py), against the
//! node. Pings and pongs both ways, the close handshake started by either side, fragmented
//! messages from a client. `make test` provides the interpreter (PMS_PYTHON, a venv with
//! `websockets`).

use std::process::Stdio;
use std::time::Duration;

use crate::support::*;
use planetmint_streams_devchain::generate::{ChainGenerator, GeneratedBlock};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const TX_PATH: &str = "/api/v1/streams/valid_transactions";
const BLOCKS_PATH: &str = "/api/v1/streams/valid_blocks";

/// One run of protocol_checks.py: started once its WebSocket is open.
struct Check {
    name: String,
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Check {
    async fn start(check: &str, url: &str, args: &[&str]) -> Self {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/protocol_checks.py"
        );
        let mut child = Command::new(python())
            .arg(script)
            .arg(check)
            .arg(url)
            .args(args)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python runs");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut this = Self {
            name: format!("{check} {}", args.join(" ")),
            child,
            lines,
        };
        let first = this.line().await;
        assert_eq!(first["connected"], url, "{}: {first}", this.name);
        this
    }

    /// The next JSON line the script prints.
    async fn line(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{}: no output in time", self.name))
            .expect("read")
            .unwrap_or_else(|| panic!("{}: python ended early (see its stderr)", self.name));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{}: {e}: {line}", self.name))
    }

    /// The check's result; the script must then exit successfully.
    async fn result(mut self) -> Value {
        let line = self.line().await;
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("python exits")
            .expect("wait");
        assert!(status.success(), "{}: {status}", self.name);
        println!("{}: {line}", self.name);
        line.get("result")
            .cloned()
            .unwrap_or_else(|| panic!("{}: expected a result, got {line}", self.name))
    }
}

fn chain(seed: u64, blocks: usize) -> Vec<GeneratedBlock> {
    let mut generator = ChainGenerator::new(seed, 1, 6);
    (0..blocks).map(|_| generator.block(2)).collect()
}

/// Writes `blocks` one by one, `gap` apart, in the background.
fn write_spaced(
    harness: &impl NodeUnderTest,
    blocks: &[GeneratedBlock],
    gap: Duration,
) -> tokio::task::JoinHandle<()> {
    let store = harness.store();
    let blocks = blocks.to_vec();
    tokio::spawn(async move {
        let mut writer = store.writer().await;
        for block in &blocks {
            tokio::time::sleep(gap).await;
            writer.write(block).await;
        }
    })
}

/// RFC 6455 5.5.1: after the close handshake the server closes the TCP connection at once
/// (it used to linger up to a second, actix-http's default `client_disconnect_timeout`).
fn assert_tcp_close_lingers(seconds: f64, what: &str) {
    assert!(
        seconds < 0.3,
        "{what}: the server closed TCP only {seconds} s after the close frame"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_pings_get_pongs_echoing_their_payload() {
    let harness = Harness::start().await;
    let url = format!("{}{TX_PATH}", harness.streams_base());
    let result = Check::start("pings", &url, &[]).await.result().await;
    let sent: Vec<String> = [
        &b""[..],
        b"Hello, world!",
        &(0u8..125).collect::<Vec<u8>>(),
        "ünïcødé ✓".as_bytes(),
    ]
    .iter()
    .map(|p| hex(p))
    .collect();
    let pings = result["pings"].as_array().expect("pings");
    assert_eq!(pings.len(), sent.len());
    for (ping, payload) in pings.iter().zip(&sent) {
        assert_eq!(ping["sent"], payload.as_str());
        assert_eq!(ping["answered"], true, "no pong for {ping}");
    }
    // The pongs on the wire, in order: each carries its ping's payload (RFC 6455 5.5.3).
    assert_eq!(result["pong_payloads"], json!(sent));
    assert_eq!(result["open"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_pings_are_answered_and_the_connection_outlives_many_intervals() {
    let harness = Harness::start_with(|c| {
        c.streams.ping_interval = Duration::from_millis(200);
        c.streams.pong_timeout = Duration::from_secs(1);
    })
    .await;
    let url = format!("{}{TX_PATH}", harness.streams_base());
    let blocks = chain(11, 6);
    let expected = expected_events(&blocks);
    let window = 3.0; // seconds: 15 ping intervals, 3 pong timeouts
    let check = Check::start(
        "keepalive",
        &url,
        &[&window.to_string(), &expected.len().to_string()],
    )
    .await;
    let writing = write_spaced(&harness, &blocks, Duration::from_millis(150));
    let result = check.result().await;
    writing.await.expect("writer");

    // Had `websockets` not answered (or the server not taken its pongs), the server would have
    // closed with 4000 "no pong" after 1.2 s.
    assert_eq!(result["closed"], Value::Null, "{result}");
    assert_eq!(result["open"], true);
    let pings = result["server_pings"].as_u64().expect("count");
    assert!(
        pings >= 8,
        "a ping every 200 ms for 3 s, got {pings}: {result}"
    );
    assert_eq!(result["pongs_sent"], pings, "every ping answered");
    assert_eq!(result["pong_payloads"], result["server_ping_payloads"]);
    assert_eq!(result["events"], json!(expected), "events flowed meanwhile");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_initiated_closes_are_completed_with_the_same_code() {
    let harness = Harness::start().await;
    let base = harness.streams_base();
    let closes = [
        (TX_PATH, "1000", ""),
        (TX_PATH, "4100", "moving to another node ✓"),
        (BLOCKS_PATH, "1001", "going away"),
    ];
    let mut checks = Vec::new();
    for (path, code, reason) in closes {
        checks.push(Check::start("close", &format!("{base}{path}"), &[code, reason]).await);
    }
    for (check, (path, code, reason)) in checks.into_iter().zip(closes) {
        let result = check.result().await;
        let code: u64 = code.parse().unwrap();
        assert_eq!(result["sent"], json!({"code": code, "reason": reason}));
        // RFC 6455 5.5.1: the answer to a close frame is a close frame, typically echoing
        // its code; the server adds no reason.
        assert_eq!(
            result["received"],
            json!({"code": code, "reason": ""}),
            "{path} {code}: {result}"
        );
        assert_eq!(result["state"], "CLOSED");
        // The server closed the TCP connection (RFC 6455 7.1.1: the server closes it first;
        // `websockets` would otherwise have given up after its close_timeout, 5 s)...
        assert_eq!(result["tcp_closed"], true);
        // ...but not at once.
        let seconds = result["tcp_closed_after_close_frame"]
            .as_f64()
            .expect("seconds");
        assert_tcp_close_lingers(seconds, &format!("{path} close {code}"));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while harness.node().hub.subscriber_count() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "sessions left open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_messages_from_a_client_are_ignored_while_events_flow() {
    let harness = Harness::start().await;
    let url = format!("{}{TX_PATH}", harness.streams_base());
    let blocks = chain(12, 15);
    let expected = expected_events(&blocks);
    let check = Check::start("fragmented", &url, &[&expected.len().to_string()]).await;
    let writing = write_spaced(&harness, &blocks, Duration::from_millis(100));
    let result = check.result().await;
    writing.await.expect("writer");

    // What `websockets` put on the wire: a text message in fragments, then a binary one.
    let frames = result["frames_sent"].as_array().expect("frames");
    assert_eq!(frames[0]["opcode"], "TEXT");
    assert_eq!(frames[0]["fin"], false);
    assert!(
        frames
            .iter()
            .filter(|f| f["opcode"] == "CONT")
            .any(|f| f["fin"] == true),
        "{frames:?}"
    );
    assert!(
        frames
            .iter()
            .any(|f| f["opcode"] == "BINARY" && f["fin"] == false),
        "{frames:?}"
    );
    assert!(
        result["events_while_sending"].as_u64().unwrap() >= 1,
        "blocks came while the fragments went out: {result}"
    );
    assert_eq!(result["events"], json!(expected), "every event, in order");
    assert_eq!(result["open"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_close_frames_parse_in_websockets() {
    let mut harness = Harness::start().await;
    let base = harness.streams_base();
    let mut transactions = Check::start("shutdown", &format!("{base}{TX_PATH}"), &[]).await;
    let mut blocks = Check::start("shutdown", &format!("{base}{BLOCKS_PATH}"), &[]).await;
    let block = chain(13, 1).remove(0);
    harness.writer().await.write(&block).await;
    for expected in expected_events(std::slice::from_ref(&block)) {
        assert_eq!(transactions.line().await["event"], expected);
    }
    assert_eq!(blocks.line().await["event"]["height"], 1);

    let node = harness.node.take().expect("node");
    let stopping = tokio::spawn(node.shutdown());
    for (check, messages) in [(transactions, 2), (blocks, 1)] {
        let result = check.result().await;
        // `websockets` validates close frames (code range, UTF-8 reason, length): it would
        // have failed the connection with 1002/1007 instead of echoing 1001.
        let received = &result["received"];
        assert_eq!(received["code"], 1001, "{result}");
        let reason: Value =
            serde_json::from_str(received["reason"].as_str().expect("reason")).expect("JSON");
        assert_eq!(
            reason,
            json!({"reason": "server shutting down", "last_height": 1})
        );
        assert_eq!(result["sent"]["code"], 1001, "the client echoed the close");
        assert_eq!(result["clean"], true);
        assert_eq!(result["messages_before"], messages);
        let seconds = result["tcp_closed_after_close_frame"]
            .as_f64()
            .expect("seconds");
        assert_tcp_close_lingers(seconds, "shutdown close 1001");
    }
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("stops in time")
        .expect("join");
}
