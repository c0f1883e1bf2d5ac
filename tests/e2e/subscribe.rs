//! The `subscribe` command (the binary, as a user runs it) against the node: blocks with a
//! limit and pretty output, several `--subscribe` over one JSON-RPC connection resuming each
//! subscription from its height after a 4000 close, its signed-mode `authenticate`, and clean
//! ends for bad specs and the node's refusals. Across kills and restarts of the node binary:
//! `tarantool::subscribe`.

use std::process::Stdio;
use std::time::Duration;

use crate::support::*;
use planetmint_streams_devchain::generate::ChainGenerator;
use serde_json::Value;
use tokio::process::{Child, Command};

/// Where a subscriber keeps its cursor, its stdout and its stderr (appended to, across its
/// restarts), in a directory removed at the end.
pub(crate) struct SubscriberFiles {
    _dir: tempfile::TempDir,
    pub(crate) cursor: std::path::PathBuf,
    out: std::path::PathBuf,
    err: std::path::PathBuf,
}

impl SubscriberFiles {
    /// The cursor file is called `cursor`.
    pub(crate) fn new(cursor: &str) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        Self {
            cursor: dir.path().join(cursor),
            out: dir.path().join("events.jsonl"),
            err: dir.path().join("stderr.log"),
            _dir: dir,
        }
    }

    /// The JSON lines printed so far.
    pub(crate) fn lines(&self) -> Vec<Value> {
        lines(&self.out)
    }

    /// What the subscriber said on stderr so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits (up to 30 s) until `n` lines are printed; returns how many there are.
    pub(crate) async fn wait_for_lines(&self, n: usize) -> usize {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let printed = self.lines().len();
            if printed >= n || tokio::time::Instant::now() >= deadline {
                return printed;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Opens `path` for appending, to be a child's stdout or stderr.
pub(crate) fn append_to(path: &std::path::Path) -> Stdio {
    Stdio::from(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("output file"),
    )
}

/// `subscribe` from height 0 with the cursor and output of `files`, each `--subscribe` of
/// `specs` (none: the single-stream mode).
pub(crate) fn subscriber(api_port: u16, specs: &[String], files: &SubscriberFiles) -> Child {
    let mut args = vec![
        "subscribe".to_owned(),
        format!("http://127.0.0.1:{api_port}"),
        "--from-height".into(),
        "0".into(),
        "--cursor-file".into(),
        files.cursor.display().to_string(),
    ];
    for spec in specs {
        args.push("--subscribe".into());
        args.push(spec.clone());
    }
    Command::new(BIN)
        .args(&args)
        .stdout(append_to(&files.out))
        .stderr(append_to(&files.err))
        .kill_on_drop(true)
        .spawn()
        .expect("subscriber starts")
}

/// Runs the binary with `args` to its end (within `within`).
pub(crate) async fn run_to_end(args: &[String], within: Duration) -> std::process::Output {
    tokio::time::timeout(
        within,
        Command::new(BIN).args(args).kill_on_drop(true).output(),
    )
    .await
    .expect("exits in time")
    .expect("runs")
}

pub(crate) async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("stops")
        .expect("wait");
    assert!(status.success(), "stops cleanly on SIGTERM: {status}");
}

/// The JSON lines in `text`.
pub(crate) fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// The JSON lines in the file at `path` (none when it does not exist yet).
pub(crate) fn lines(path: &std::path::Path) -> Vec<Value> {
    json_lines(&std::fs::read_to_string(path).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_with_a_limit_and_pretty_output() {
    let harness = Harness::start().await;
    let mut chain = ChainGenerator::new(78, 1, 4);
    let mut writer = harness.writer().await;
    let blocks: Vec<_> = (0..5).map(|_| chain.block(1)).collect();
    for block in &blocks {
        writer.write(block).await;
    }
    let api = harness.api();
    let output = stdout_of(Command::new(BIN).args([
        "subscribe",
        &api,
        "--blocks",
        "--from-height",
        "1",
        "--limit",
        "3",
    ]))
    .await;
    let heights: Vec<u64> = output
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("JSON")["height"]
                .as_u64()
                .expect("height")
        })
        .collect();
    assert_eq!(heights, vec![2, 3, 4]);
    let text = stdout_of(Command::new(BIN).args([
        "subscribe",
        &api,
        "--from-height",
        "4",
        "--limit",
        "1",
        "--format",
        "pretty",
    ]))
    .await;
    assert!(text.starts_with("block        5  tx "), "{text}");
    assert!(text.contains(&blocks[4].transactions[0].id));
}

/// The events of `blocks` whose transaction passes `keep`, in order.
pub(crate) fn expected_where(
    blocks: &[planetmint_streams_devchain::generate::GeneratedBlock],
    keep: impl Fn(&planetmint_streams_devchain::generate::GeneratedTransaction) -> bool,
) -> Vec<Value> {
    blocks
        .iter()
        .flat_map(|b| b.transactions.iter().map(move |tx| (b.height, tx)))
        .filter(|(_, tx)| keep(tx))
        .map(|(height, tx)| {
            serde_json::json!({
                "transaction_id": tx.id,
                "asset_id": tx.asset_id,
                "asset_ids": tx.asset_ids,
                "height": height,
            })
        })
        .collect()
}

/// What the single-stream mode prints for these filter flags, from height 0, `limit` events.
pub(crate) async fn url_mode_events(api_port: u16, filter: &[&str], limit: usize) -> Vec<Value> {
    let mut args = vec![
        "subscribe".to_owned(),
        format!("http://127.0.0.1:{api_port}"),
        "--from-height".into(),
        "0".into(),
        "--limit".into(),
        limit.to_string(),
    ];
    args.extend(filter.iter().map(|s| (*s).to_owned()));
    let output = run_to_end(&args, Duration::from_secs(60)).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    json_lines(&String::from_utf8_lossy(&output.stdout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subscriptions_are_refused_cleanly() {
    let harness = Harness::start().await;
    let api = harness.api();
    let run = |args: Vec<String>| async move { run_to_end(&args, Duration::from_secs(30)).await };
    // Refused on the command line, before connecting.
    for (spec, says) in [
        ("valid_things", "unknown stream"),
        ("valid_blocks?from_height=x", "from_height"),
    ] {
        let output = run(vec![
            "subscribe".into(),
            api.clone(),
            "--subscribe".into(),
            spec.into(),
        ])
        .await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{spec}: {stderr}");
        assert!(
            stderr.contains(says) && !stderr.contains("panicked"),
            "{spec}: {stderr}"
        );
    }
    // Refused by the node: its JSON-RPC error, named and explained.
    let output = run(vec![
        "subscribe".into(),
        api.clone(),
        "--subscribe".into(),
        "ok=valid_blocks".into(),
        "--subscribe".into(),
        "bad=valid_transactions?public_key=not-a-key".into(),
    ])
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the node refused subscription \"bad\"")
            && stderr.contains("-32602")
            && stderr.contains("public_key"),
        "{stderr}"
    );
    // The single-stream flags and --subscribe do not mix.
    let output = run(vec![
        "subscribe".into(),
        api,
        "--blocks".into(),
        "--subscribe".into(),
        "valid_blocks".into(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_mode_authenticates_with_the_token_file_and_refusals_end_cleanly() {
    use planetmint_streams_auth::{
        AuthMode, Grant, KeyConfig, KeyRing, SecretString, Stream, TokenAuthority, TokenPolicy,
    };
    const SECRET: [u8; 32] = [7; 32];
    let hex: String = SECRET.iter().map(|b| format!("{b:02x}")).collect();
    let harness = Harness::start_with(|config| {
        config.auth.mode = AuthMode::Signed;
        config.auth.keys = vec![KeyConfig {
            id: "k1".into(),
            secret: Some(SecretString::new(&hex)),
            secret_file: None,
        }];
        config.auth.issuing_key = Some("k1".into());
    })
    .await;
    let authority = TokenAuthority::new(
        KeyRing::new("k1", &SECRET).expect("key"),
        TokenPolicy {
            default_ttl: Duration::from_secs(600),
            max_ttl: Duration::from_secs(3600),
            clock_skew: Duration::from_secs(30),
        },
    );
    let issue = |grant: &Grant| authority.issue(grant, None).expect("issue").token;
    let mut writer = harness.writer().await;
    for block in chain(80, 1, 3, 1) {
        writer.write(&block).await;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let all = dir.path().join("all.token");
    // A signed stream URL, as `token issue` prints it, is read for its token.
    std::fs::write(
        &all,
        format!(
            "ws://127.0.0.1:9985/api/v1/streams/valid_blocks?token={}\n",
            issue(&Grant::new(Stream::ALL))
        ),
    )
    .expect("write");
    let transactions_only = dir.path().join("tx.token");
    std::fs::write(
        &transactions_only,
        issue(&Grant::new([Stream::ValidTransactions])),
    )
    .expect("write");
    let run = |token: Option<&std::path::Path>| {
        let mut args = vec![
            "subscribe".to_owned(),
            harness.api(),
            "--subscribe".into(),
            "b=valid_blocks?from_height=0".into(),
            "--limit".into(),
            "3".into(),
        ];
        if let Some(path) = token {
            args.push("--token-file".into());
            args.push(path.display().to_string());
        }
        async move { run_to_end(&args, Duration::from_secs(30)).await }
    };
    let output = run(Some(&all)).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let heights: Vec<u64> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| {
            let line: Value = serde_json::from_str(l).expect("JSON");
            assert_eq!(line["subscription"], "b");
            line["result"]["height"].as_u64().expect("height")
        })
        .collect();
    assert_eq!(heights, vec![1, 2, 3]);
    for (token, says) in [
        (None, "-32001"),
        (Some(transactions_only.as_path()), "-32001"),
    ] {
        let output = run(token).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("the node refused") && stderr.contains(says),
            "{stderr}"
        );
        assert!(output.stdout.is_empty());
    }
}

/// Waits (up to 20 s) until the node on `api_addr` reports `name{labels}` of at least
/// `at_least` on `/metrics`.
async fn wait_for_metric(api_addr: &str, name: &str, labels: &str, at_least: f64) {
    let metrics = metrics_until(api_addr, Duration::from_secs(20), |text| {
        metric(text, name, labels) >= at_least
    })
    .await;
    let value = metric(&metrics, name, labels);
    assert!(
        value >= at_least,
        "{name}{{{labels}}} is {value}, never {at_least}"
    );
}

/// Sends `signal` (`-STOP`, `-CONT`) to `child`.
async fn signal(child: &Child, signal: &str) {
    let pid = child.id().expect("running").to_string();
    let status = Command::new("kill")
        .args([signal, &pid])
        .status()
        .await
        .expect("kill");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_closed_with_4000_resumes_every_subscription_from_its_height() {
    let harness = Harness::start_with(|config| {
        config.streams.ping_interval = Duration::from_millis(200);
        config.streams.pong_timeout = Duration::from_millis(300);
    })
    .await;
    let api_addr = harness.node().api_addr.to_string();
    let mut writer = harness.writer().await;
    let blocks = chain(81, 1, 30, 2);
    let specs = [
        "blocks=valid_blocks".to_owned(),
        "even=valid_transactions?partition=0/2".to_owned(),
    ];
    let files = SubscriberFiles::new("cursor.json");
    let port: u16 = api_addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let mut sub = subscriber(port, &specs, &files);
    let wait_lines = |n: usize| {
        let files = &files;
        async move {
            let printed = files.wait_for_lines(n).await;
            assert!(printed >= n, "{printed} of {n} lines");
        }
    };
    let expected_until = |last: u64| {
        let shown: Vec<_> = blocks
            .iter()
            .filter(|b| b.height <= last)
            .cloned()
            .collect();
        let even = expected_where(&shown, |tx| {
            u64::from_str_radix(&tx.id[..16], 16).is_ok_and(|n| n % 2 == 0)
        });
        (shown.len(), even)
    };
    // Both subscriptions are open before the first block is written.
    wait_for_metric(&api_addr, "planetmint_streams_rpc_subscriptions", "", 2.0).await;
    for block in &blocks[..10] {
        writer.write(block).await;
    }
    let (n, even) = expected_until(10);
    wait_lines(n + even.len()).await;

    // Frozen: it answers no ping, and the node closes it with 4000 ("no pong").
    signal(&sub, "-STOP").await;
    for block in &blocks[10..20] {
        writer.write(block).await;
    }
    wait_for_metric(
        &api_addr,
        "planetmint_streams_disconnects_total",
        "pong_timeout",
        1.0,
    )
    .await;
    signal(&sub, "-CONT").await;
    for block in &blocks[20..] {
        writer.write(block).await;
    }
    let (n, even) = expected_until(30);
    wait_lines(n + even.len()).await;
    stop(&mut sub).await;
    let log = files.log();
    assert!(log.contains("closed by the node (4000)"), "{log}");
    let got = files.lines();
    assert_eq!(got.len(), n + even.len(), "nothing twice:\n{log}");
    let heights: Vec<u64> = got
        .iter()
        .filter(|l| l["subscription"] == "blocks")
        .filter_map(|l| l["result"]["height"].as_u64())
        .collect();
    assert_eq!(heights, (1..=30).collect::<Vec<u64>>());
    let evens: Vec<Value> = got
        .iter()
        .filter(|l| l["subscription"] == "even")
        .map(|l| l["result"].clone())
        .collect();
    assert_eq!(evens, even);
}
