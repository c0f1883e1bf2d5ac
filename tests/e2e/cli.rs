//! The `planetmint-streams` binary as an operator meets it: bad configuration is refused with
//! the key named, and SIGTERM closes subscribers with 1001 and exits 0 (no Tarantool needed:
//! the node serves subscribers without one).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::*;

#[tokio::test]
async fn invalid_configuration_exits_2_naming_the_key() {
    for (env, value, key) in [
        (
            "PLANETMINT_STREAMS_STREAMS__PING_INTERVAL",
            "0s",
            "streams.ping_interval",
        ),
        (
            "PLANETMINT_STREAMS_STREAMS__QUEUE_MAX_BLOCKS",
            "lots",
            "streams.queue_max_blocks",
        ),
        (
            "PLANETMINT_STREAMS_TARANTOOL__ADDRESS",
            "no-port",
            "tarantool.address",
        ),
        ("PLANETMINT_STREAMS_LOG__FORMAT", "xml", "log.format"),
    ] {
        let output = Command::new(BIN)
            .env(env, value)
            .current_dir(std::env::temp_dir())
            .output()
            .await
            .expect("runs");
        assert_eq!(output.status.code(), Some(2), "{env}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(key), "{env}={value}: {stderr}");
    }
    let output = Command::new(BIN)
        .args(["--config", "/nonexistent/planetmint-streams.toml"])
        .output()
        .await
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("/nonexistent/planetmint-streams.toml")
    );
}

#[tokio::test]
async fn check_config_never_prints_the_tarantool_password() {
    let password = "tarantool-pw-7f3a9c";
    let output = Command::new(BIN)
        .arg("--check-config")
        .env("PLANETMINT_STREAMS_TARANTOOL__USER", "reader")
        .env("PLANETMINT_STREAMS_TARANTOOL__PASSWORD", password)
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .expect("runs");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stdout.contains(password) && !stderr.contains(password),
        "{stdout}{stderr}"
    );
    assert!(stdout.contains("password = \"<redacted>\""), "{stdout}");
    assert!(stdout.contains("user = \"reader\""), "{stdout}");
}

#[tokio::test]
async fn a_plain_http_admin_endpoint_off_loopback_is_refused_at_start_up() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("node.toml");
    let write = |bind: &str| {
        std::fs::write(
            &config,
            format!(
                "[auth]\nmode = \"signed\"\n[[auth.keys]]\nid = \"k1\"\n\
                 secret = \"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"\n\
                 [auth.admin]\nenabled = true\nbind = \"{bind}\"\n\
                 secret = \"admin-secret-admin-secret-admin-secret-01\"\n"
            ),
        )
        .expect("config")
    };
    let check = || async {
        Command::new(BIN)
            .args(["--check-config", "--config"])
            .arg(&config)
            .current_dir(std::env::temp_dir())
            .output()
            .await
            .expect("runs")
    };
    for bind in ["0.0.0.0:9987", "192.0.2.10:9987", "[::]:9987"] {
        write(bind);
        let output = check().await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{bind}: {stderr}");
        assert!(stderr.contains("auth.admin.bind"), "{stderr}");
        assert!(stderr.contains("[tls]"), "{stderr}");
        assert!(!stderr.contains("admin-secret-admin"), "{stderr}");
    }
    for bind in ["127.0.0.1:9987", "[::1]:9987"] {
        write(bind);
        let output = check().await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "{bind}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_subscribers_with_1001_and_exits_0() {
    // Ports free a moment ago can be taken before the node binds them (other tests on a busy
    // machine): then the node exits saying so, and it is started again on other ports.
    let mut attempt = 0;
    let (mut child, _logs, started, streams_port, api_port) = loop {
        attempt += 1;
        let streams_port = planetmint_streams_devchain::process::free_port().expect("port");
        let api_port = planetmint_streams_devchain::process::free_port().expect("port");
        // No Tarantool at all: the node still serves subscribers (and says it is not ready).
        let tarantool_port = planetmint_streams_devchain::process::free_port().expect("port");
        let mut child = Command::new(BIN)
            .args([
                "--tarantool",
                &format!("127.0.0.1:{tarantool_port}"),
                "--streams-bind",
                &format!("127.0.0.1:{streams_port}"),
                "--api-bind",
                &format!("127.0.0.1:{api_port}"),
                "--log-format",
                "json",
            ])
            .current_dir(std::env::temp_dir())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starts");
        let mut logs = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut seen = Vec::new();
        let started = tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(Some(line)) = logs.next_line().await {
                if line.contains("planetmint-streams started") {
                    return Some(line);
                }
                seen.push(line);
            }
            None
        })
        .await
        .expect("started in time");
        match started {
            Some(line) => break (child, logs, line, streams_port, api_port),
            None if attempt < 3 && seen.iter().any(|l| l.contains("Address already in use")) => {
                continue
            }
            None => panic!("the node exited before starting: {seen:?}"),
        }
    };
    let started: serde_json::Value = serde_json::from_str(&started).expect("JSON log line");
    assert_eq!(started["level"], "INFO");
    let (status, ready) = get_json(&format!("127.0.0.1:{api_port}"), "/ready").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["source_reachable"], false);

    let mut ws = UrlStream::connect(&format!(
        "ws://127.0.0.1:{streams_port}/api/v1/streams/valid_transactions"
    ))
    .await;
    // The subscriber reads all along, as a client does, not only once the signal is sent: what
    // reaches it before the process is gone is read (and the close answered) at once.
    let reader = tokio::spawn(async move { ws.until_close(Duration::from_secs(15)).await.1 });
    let pid = child.id().expect("pid").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    assert!(killed.success());
    let frame = reader.await.expect("join").expect("close frame");
    assert_eq!(frame.code, 1001);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits in time")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_thousand_subscribers_closes_every_one_and_exits_within_the_grace() {
    // No Tarantool: what is checked is the shutdown, whatever the source.
    let node = NodeProcess::without_tarantool();
    let mut child = node
        .command()
        .env("PLANETMINT_STREAMS_STREAMS__SHUTDOWN_GRACE", "3s")
        .env("PLANETMINT_STREAMS_STREAMS__MAX_CONNECTIONS_PER_IP", "2000")
        .spawn()
        .expect("starts");
    let streams_port = node.streams_port;
    let url = format!("ws://127.0.0.1:{streams_port}/api/v1/streams/valid_transactions");
    let mut sockets = Vec::new();
    for attempt in 0..200 {
        if tokio_tungstenite::connect_async(&url).await.is_ok() {
            break;
        }
        assert!(attempt < 199, "node never accepted a connection");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..1000 {
        sockets.push(UrlStream::connect(&url).await);
    }
    // Every subscriber reads all along, as clients do, not only once the signal is sent.
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| tokio::spawn(async move { ws.until_close(Duration::from_secs(20)).await.1 }))
        .collect();
    let pid = child.id().expect("pid").to_string();
    let signalled = std::time::Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill")
        .success());
    let mut closed_1001 = 0;
    for reader in readers {
        let frame = reader
            .await
            .expect("join")
            .expect("a close frame for every subscriber");
        assert_eq!(frame.code, 1001);
        let reason = frame.reason_json();
        assert!(reason.get("last_height").is_some(), "{reason}");
        closed_1001 += 1;
    }
    assert_eq!(closed_1001, 1000);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
    assert!(
        signalled.elapsed() < Duration::from_secs(3 + 3),
        "exited within the drain time: {:?}",
        signalled.elapsed()
    );
}
