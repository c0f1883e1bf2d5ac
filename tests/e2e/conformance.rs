//! RFC 6455 conformance of the stream server, judged by an implementation that is not ours:
//! `kosoku` (PyPI) runs the Autobahn test suite's cases against the node (on an in-memory
//! source: the cases are about the WebSocket server), and this test reads its report and asserts the outcome of every selected case. Which cases
//! run, which are left out and why, and the results: docs/security.md, "Protocol conformance".
//! `make test` installs kosoku (scripts/ensure-deps.sh puts it in target/py).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use planetmint_streams_devchain::generate::ChainGenerator;
use serde_json::Value;
use tokio::process::Command;

use crate::support::*;

/// The Autobahn case groups that apply to a server that sends and never echoes: pings and
/// pongs (2), reserved bits (3), reserved opcodes (4), fragmentation (5), UTF-8 of text
/// messages, valid (6.1, 6.2) and invalid (6.3, 6.4), and the close handshake (7).
const SELECTED: &[&str] = &[
    "2.*", "3.*", "4.*", "5.*", "6.1.*", "6.2.*", "6.3.*", "6.4.*", "7.*",
];

/// Cases of the selected groups left out, with the reason.
const EXCLUDED: &[(&str, &str)] = &[(
    "7.1.1",
    "it sends a text message and checks only that it comes back before the close; the streams \
     are one-way, so nothing else in it is observable",
)];

/// The outcome a case must have.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Autobahn's verdicts: behavior, behaviorClose, and the close code the server sent.
    Verdict(&'static str, &'static str, Option<u16>),
    /// The server answers the client's close with the client's own code (7.7.x).
    EchoesCloseCode,
    /// The case expects its text message echoed. The streams ignore what clients send, so
    /// Autobahn's verdict is FAILED for that alone; what is asserted is everything else: the
    /// events received are exactly the expected ones without the echoed message (the pongs,
    /// in order and with their payloads), and the close handshake is clean with 1000.
    NoEcho,
}

fn expectation(case: &str) -> Expect {
    use Expect::*;
    let under = |group: &str| case.starts_with(group);
    match case {
        // A control frame with 126 bytes of payload is a protocol error.
        "2.5" => Verdict("OK", "OK", Some(1002)),
        _ if under("2.") => Verdict("OK", "OK", Some(1000)),
        // Reserved bits set without an extension: protocol error (RFC 6455 5.2).
        "3.1" | "3.5" | "3.6" | "3.7" => Verdict("OK", "OK", Some(1002)),
        "3.2" | "3.3" | "3.4" => Verdict("NON-STRICT", "OK", Some(1002)),
        "4.1.1" | "4.1.2" | "4.2.1" | "4.2.2" => Verdict("OK", "OK", Some(1002)),
        // A text message, then a reserved opcode: the text is not echoed (NON-STRICT by
        // Autobahn's rules, exactly what a one-way stream does), the connection fails with 1002.
        _ if under("4.") => Verdict("NON-STRICT", "OK", Some(1002)),
        "5.3" | "5.4" | "5.5" | "5.6" | "5.7" | "5.8" | "5.19" | "5.20" => NoEcho,
        "5.15" => Verdict("NON-STRICT", "OK", Some(1002)),
        _ if under("5.") => Verdict("OK", "OK", Some(1002)),
        _ if under("6.1.") || under("6.2.") => NoEcho,
        "6.3.1" => Verdict("OK", "OK", Some(1007)),
        // Invalid UTF-8 split across fragments fails the connection with 1007 (RFC 6455 5.6,
        // 8.1); the valid fragmented text of 6.1.x and 6.2.x (split
        // inside code points in 6.2.3, 6.2.4) stays NoEcho.
        "6.3.2" => Verdict("OK", "OK", Some(1007)),
        "6.4.1" | "6.4.2" => Verdict("OK", "OK", Some(1007)),
        // One frame sent in chops: invalid once the frame is complete, not at the bad byte.
        "6.4.3" | "6.4.4" => Verdict("NON-STRICT", "OK", Some(1007)),
        // A 256 KiB text message then a close: the frame is above max_frame_size (64 KiB).
        "7.1.6" => Verdict("INFORMATIONAL", "INFORMATIONAL", Some(1009)),
        "7.3.2" | "7.3.6" | "7.5.1" => Verdict("OK", "OK", Some(1002)),
        _ if under("7.7.") => EchoesCloseCode,
        _ if under("7.9.") => Verdict("OK", "OK", Some(1002)),
        // Close codes 5000 and 65535: undefined by the RFC; the server says protocol error.
        _ if under("7.13.") => Verdict("INFORMATIONAL", "INFORMATIONAL", Some(1002)),
        _ if under("7.1.") || under("7.3.") => Verdict("OK", "OK", Some(1000)),
        _ => panic!("case {case} is new to this test: decide what the stream server must do"),
    }
}

/// The kosoku executable of the test venv.
fn kosoku() -> PathBuf {
    let bin = match std::env::var_os("PMS_PYTHON") {
        Some(python) => Path::new(&python)
            .parent()
            .expect("PMS_PYTHON is a path")
            .join("kosoku"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/py/bin/kosoku"),
    };
    assert!(
        bin.exists(),
        "this test needs kosoku (the Autobahn test cases) at {}: run `make test`, or \
         scripts/ensure-deps.sh, which installs it into target/py",
        bin.display()
    );
    bin
}

/// One case's result, from kosoku's per-case JSON report.
struct CaseResult {
    behavior: String,
    behavior_close: String,
    remote_close: Option<u16>,
    local_close: Option<u16>,
    duration_ms: u64,
    report: Value,
}

impl CaseResult {
    fn verdict(&self) -> String {
        verdict_text(&self.behavior, &self.behavior_close, self.remote_close)
    }
}

fn verdict_text(behavior: &str, close: &str, code: Option<u16>) -> String {
    let code = code.map_or("-".into(), |c| c.to_string());
    format!("{behavior} / {close} / {code}")
}

/// Sorts case ids as numbers: 2.9 before 2.10.
fn case_order(id: &str) -> Vec<u32> {
    id.split('.').filter_map(|n| n.parse().ok()).collect()
}

/// Runs kosoku against `url`; returns the results in case order.
async fn run_kosoku(kosoku: &Path, url: &str, out: &Path) -> Vec<(String, CaseResult)> {
    let mut command = Command::new(kosoku);
    command.args(["-m", "fuzzingclient", url, "-p", "4"]);
    for group in SELECTED {
        command.args(["-i", group]);
    }
    for (case, _) in EXCLUDED {
        command.args(["-x", case]);
    }
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        command
            .arg("-o")
            .arg(out)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("kosoku finishes within 2 minutes")
    .expect("kosoku runs");
    // kosoku exits 1 when any case did not pass (the NoEcho cases never do): the report is
    // what counts.
    let index: Value = std::fs::read(out.join("index.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_else(|| {
            panic!(
                "kosoku wrote no report (exit {:?})\nstdout: {}\nstderr: {}",
                output.status.code(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
    // One agent: the server under test (named by its address, as it sends no Server header).
    let agents = index.as_object().expect("index by agent");
    assert_eq!(agents.len(), 1, "one server under test: {index}");
    let cases = agents.values().next().expect("agent").as_object().unwrap();
    let mut results: Vec<(String, CaseResult)> = cases
        .iter()
        .map(|(id, entry)| {
            let file = entry["reportfile"].as_str().expect("reportfile");
            let report: Value =
                serde_json::from_slice(&std::fs::read(out.join(file)).expect("the case's report"))
                    .expect("JSON report");
            let code = |v: &Value| v.as_u64().map(|c| c as u16);
            let result = CaseResult {
                behavior: report["behavior"].as_str().unwrap_or_default().to_owned(),
                behavior_close: report["behaviorClose"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                remote_close: code(&report["remoteCloseCode"]),
                local_close: code(&report["localCloseCode"]),
                duration_ms: report["duration"].as_u64().unwrap_or_default(),
                report,
            };
            (id.clone(), result)
        })
        .collect();
    results.sort_by_key(|(id, _)| case_order(id));
    results
}

/// Checks one case against its expectation; `Err` says what is wrong.
fn check(expect: Expect, result: &CaseResult) -> Result<(), String> {
    let verdict = |b: &str, c: &str, code: Option<u16>| {
        result.behavior == b && result.behavior_close == c && result.remote_close == code
    };
    match expect {
        Expect::Verdict(b, c, code) => {
            if verdict(b, c, code) {
                Ok(())
            } else {
                Err(format!(
                    "expected {}; {}",
                    verdict_text(b, c, code),
                    result.report["resultClose"]
                ))
            }
        }
        Expect::EchoesCloseCode => {
            if verdict("OK", "OK", result.local_close) {
                Ok(())
            } else {
                Err(format!(
                    "expected {} (the code sent, echoed)",
                    verdict_text("OK", "OK", result.local_close)
                ))
            }
        }
        Expect::NoEcho => {
            let wanted: Vec<&Value> = result.report["expected"]["OK"]
                .as_array()
                .expect("the OK sequence")
                .iter()
                .filter(|event| event[0] != "message")
                .collect();
            let received: Vec<&Value> = result.report["received"]
                .as_array()
                .expect("received events")
                .iter()
                .collect();
            if received != wanted {
                Err(format!(
                    "events: expected {wanted:?} (no echo), received {received:?}"
                ))
            } else if !verdict("FAILED", "OK", Some(1000)) || result.report["wasClean"] != true {
                Err("expected a clean close handshake with 1000".into())
            } else {
                Ok(())
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autobahn_cases_for_a_one_way_stream() {
    let kosoku = kosoku();
    let harness = Harness::start_with(|c| {
        // No server ping may land inside a case (each lasts up to ~3 s): the cases compare
        // every frame they receive.
        c.streams.ping_interval = Duration::from_secs(120);
        c.streams.pong_timeout = Duration::from_secs(120);
    })
    .await;
    // No block is written: the only frames the server sends are its answers to the cases.
    let url = format!(
        "{}/api/v1/streams/valid_transactions",
        harness.streams_base()
    );
    let out = tempfile::tempdir().expect("report dir");
    let started = Instant::now();
    let results = run_kosoku(&kosoku, &url, out.path()).await;
    let elapsed = started.elapsed();

    let mut failures = Vec::new();
    println!(
        "{:<8} {:<40} {:<34} {:>5}  check",
        "case", "expected", "behavior / close / code", "ms"
    );
    for (id, result) in &results {
        let expect = expectation(id);
        let outcome = check(expect, result);
        let expected = match expect {
            Expect::Verdict(b, c, code) => verdict_text(b, c, code),
            Expect::EchoesCloseCode => "OK / OK / the code sent".into(),
            Expect::NoEcho => "no echo; clean close 1000".into(),
        };
        println!(
            "{id:<8} {expected:<40} {:<34} {:>5}  {}",
            result.verdict(),
            result.duration_ms,
            if outcome.is_ok() { "ok" } else { "MISMATCH" }
        );
        if let Err(why) = outcome {
            failures.push(format!("{id}: {} — {why}", result.verdict()));
        }
    }
    println!("{} cases in {elapsed:?}", results.len());

    // Every case of the selected groups ran, less the exclusions: a case kosoku skipped or
    // could not run would otherwise go unnoticed.
    let ids: Vec<&str> = results.iter().map(|(id, _)| id.as_str()).collect();
    for (case, _) in EXCLUDED {
        assert!(!ids.contains(case), "{case} is excluded but ran");
    }
    for group in SELECTED {
        let prefix = group.trim_end_matches('*');
        assert!(
            ids.iter().any(|id| id.starts_with(prefix)),
            "no case of {group} ran"
        );
    }
    assert_eq!(
        results.len(),
        97,
        "the number of cases kosoku 0.1.0 has in the selected groups, less the exclusions"
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases are not as expected:\n{}",
        failures.len(),
        results.len(),
        failures.join("\n")
    );
    // Every case's connection was let go, and the stream still works for a new subscriber.
    let deadline = Instant::now() + Duration::from_secs(5);
    while harness.node().hub.subscriber_count() > 0 {
        assert!(Instant::now() < deadline, "sessions left after the cases");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut ws = UrlStream::connect(&url).await;
    let block = ChainGenerator::new(7, 1, 4).block(2);
    harness.writer().await.write(&block).await;
    let events = ws.take(2, Duration::from_secs(10)).await;
    assert_eq!(events, expected_events(std::slice::from_ref(&block)));
}
