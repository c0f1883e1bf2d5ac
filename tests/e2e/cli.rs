//! The `planetmint-streams` binary as an operator meets it: bad configuration is refused with
//! the key named, SIGTERM closes subscribers with 1001 and exits 0, also when more stop
//! signals follow at once (a process group's Ctrl-C plus a wrapper script's SIGTERM, as in
//! `make demo`); a second Ctrl-C a moment later exits at once; `client new` and
//! `client hash-secret` make client credentials the node accepts, and credential files are
//! reloaded on change and on SIGHUP (no Tarantool needed: the node serves subscribers
//! without one).

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
    // No Tarantool at all: the node still serves subscribers (and says it is not ready).
    let LoggedNode {
        mut child,
        started,
        api,
        streams_port,
        logs: _logs,
    } = logged_node(None, &[]).await;
    let started: serde_json::Value = serde_json::from_str(&started).expect("JSON log line");
    assert_eq!(started["level"], "INFO");
    let (status, ready) = get_json(&api, "/ready").await;
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

const K1: &str = "4UsMARRttZAQYUYb8hjpbuwq5tnpJPK5ETFbDkiXrnCW";
const SIGNED: &str = "[auth]\nmode = \"signed\"\n[[auth.keys]]\nid = \"k1\"\n\
     secret = \"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"\n";

/// `[auth]` in signed mode with `settings` (lines of `[auth]` keys) and one signing key.
fn signed_with(settings: &str) -> String {
    SIGNED.replacen("[[auth.keys]]", &format!("{settings}[[auth.keys]]"), 1)
}

fn admitted(
    config: &planetmint_streams::Config,
    id: &str,
    secret: &str,
) -> Result<planetmint_streams_auth::Access, planetmint_streams_auth::AuthError> {
    planetmint_streams::node::gatekeeper(config)
        .expect("gatekeeper")
        .verify(planetmint_streams_auth::Credential::ClientSecret {
            client_id: id,
            secret,
        })
}

#[tokio::test]
async fn client_new_prints_a_secret_once_and_an_entry_the_node_admits_it_with() {
    let output = stdout_of(Command::new(BIN).args([
        "client",
        "new",
        "--id",
        "acme",
        "--stream",
        "valid_blocks",
        "--public-key",
        K1,
        "--max-connections",
        "3",
        "--json",
    ]))
    .await;
    let made: serde_json::Value = serde_json::from_str(&output).expect("JSON");
    let secret = made["secret"].as_str().expect("secret");
    let entry = made["entry"].as_str().expect("entry");
    assert!(secret.len() >= 43, "{secret}");
    assert!(entry.starts_with("[[auth.clients]]"), "{entry}");
    assert!(
        !entry.contains(secret),
        "the entry holds the hash only: {entry}"
    );
    assert!(entry.contains(made["secret_hash"].as_str().expect("hash")));

    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("node.toml");
    std::fs::write(&path, format!("{SIGNED}{entry}")).expect("config");
    let config = planetmint_streams::Config::load(Some(&path), figment::Figment::new())
        .expect("the printed entry is valid configuration");
    let access = admitted(&config, "acme", secret).expect("admitted with the printed secret");
    assert_eq!(
        access.streams,
        [planetmint_streams_auth::Stream::ValidBlocks].into()
    );
    assert_eq!(access.pins.public_keys, [K1.to_owned()].into());
    assert_eq!(access.max_connections, Some(3));
    assert_eq!(
        admitted(&config, "acme", &format!("{secret}x")).map(|_| ()),
        Err(planetmint_streams_auth::AuthError::BadClientSecret)
    );
    let checked = stdout_of(
        Command::new(BIN)
            .args(["--check-config", "--config"])
            .arg(&path)
            .current_dir(dir.path()),
    )
    .await;
    assert!(checked.contains("id = \"acme\""), "{checked}");
    assert!(!checked.contains(secret), "{checked}");

    // As text: the secret once, then the entry; for a clients file, [[clients]].
    let text =
        stdout_of(Command::new(BIN).args(["client", "new", "--id", "beta", "--clients-file"]))
            .await;
    let secret_line = text
        .lines()
        .find(|line| !line.starts_with('#') && !line.is_empty())
        .expect("the secret line");
    assert_eq!(text.matches(secret_line).count(), 1, "{text}");
    assert!(text.contains("[[clients]]\nid = \"beta\""), "{text}");
    let output = Command::new(BIN)
        .args(["client", "new", "--id", "gamma", "--stream", "blocks"])
        .output()
        .await
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--stream"));
}

#[tokio::test]
async fn client_hash_secret_hashes_stdin_and_refuses_weak_secrets_without_echoing_them() {
    use tokio::io::AsyncWriteExt;
    let run = |input: &'static str| async move {
        let mut child = Command::new(BIN)
            .args(["client", "hash-secret"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).await.expect("write");
        drop(stdin);
        child.wait_with_output().await.expect("runs")
    };
    let secret = "an-operators-own-secret-of-forty-chars-00";
    let output = run("an-operators-own-secret-of-forty-chars-00\n").await;
    assert!(output.status.success(), "{output:?}");
    let hash = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let parsed = planetmint_streams_auth::SecretHash::parse(&hash).expect("a hash");
    assert!(parsed.matches(secret));
    assert!(!hash.contains(secret));

    let weak = run("hunter2-hunter2\n").await;
    assert_eq!(weak.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&weak.stderr);
    assert!(stderr.contains("at least 32"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[tokio::test]
async fn a_bad_client_entry_stops_the_node_with_exit_2_naming_the_key_and_entry() {
    let dir = tempfile::tempdir().expect("tmp");
    let inline = dir.path().join("inline.toml");
    let plain = "plain-secret-pasted-where-the-hash-goes-01";
    std::fs::write(
        &inline,
        format!(
            "{SIGNED}[[auth.clients]]\nid = \"acme\"\nsecret_hash = \"{plain}\"\nstreams = [\"valid_blocks\"]\n"
        ),
    )
    .expect("write");
    let clients = dir.path().join("clients.toml");
    std::fs::write(
        &clients,
        "[[clients]]\nid = \"ok\"\nsecret_file = \"/nonexistent/ok.secret\"\nstreams = [\"valid_blocks\"]\n",
    )
    .expect("write");
    let from_file = dir.path().join("from-file.toml");
    std::fs::write(
        &from_file,
        signed_with(&format!(
            "clients_file = {:?}\n",
            clients.display().to_string()
        )),
    )
    .expect("write");
    for (config, key, parts) in [
        (
            &inline,
            "auth.clients.secret_hash",
            vec!["entry 1", "\"acme\""],
        ),
        (
            &from_file,
            "auth.clients_file",
            vec!["entry 1", "\"ok\"", "secret_file", "/nonexistent/ok.secret"],
        ),
    ] {
        for check in [true, false] {
            let tarantool = format!(
                "127.0.0.1:{}",
                planetmint_streams_devchain::process::free_port().expect("port")
            );
            let mut command = Command::new(BIN);
            command
                .arg("--config")
                .arg(config)
                .args(["--tarantool", &tarantool]);
            if check {
                command.arg("--check-config");
            }
            let output = tokio::time::timeout(Duration::from_secs(20), command.output())
                .await
                .expect("exits at once")
                .expect("runs");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{stderr}");
            assert!(stderr.contains(key), "{stderr}");
            for part in &parts {
                assert!(stderr.contains(part), "{stderr} lacks {part}");
            }
            assert!(!stderr.contains(plain), "{stderr}");
        }
    }
}

/// A node binary started by a test: the child, its log lines as they come, and its addresses.
struct LoggedNode {
    child: tokio::process::Child,
    /// The `planetmint-streams started` log line.
    started: String,
    logs: tokio::sync::mpsc::UnboundedReceiver<String>,
    api: String,
    streams_port: u16,
}

/// Starts the binary with JSON logs on stderr and no Tarantool (it serves subscribers all the
/// same) on free loopback ports (again on others when one was taken meanwhile), with `config`
/// when given and `env` added; returns once it logged `planetmint-streams started`.
async fn logged_node(config: Option<&std::path::Path>, env: &[(&str, &str)]) -> LoggedNode {
    for _attempt in 0..3 {
        let port = || planetmint_streams_devchain::process::free_port().expect("port");
        let (streams_port, api_port, tarantool_port) = (port(), port(), port());
        let mut command = Command::new(BIN);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command
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
            .envs(env.iter().copied())
            .current_dir(std::env::temp_dir())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let (sender, mut logs) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        let started = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = logs.recv().await {
                if line.contains("planetmint-streams started") {
                    return Some(line);
                }
                seen.push(line);
            }
            None
        })
        .await
        .expect("started in time");
        if let Some(started) = started {
            return LoggedNode {
                child,
                started,
                logs,
                api: format!("127.0.0.1:{api_port}"),
                streams_port,
            };
        }
        assert!(
            seen.iter().any(|l| l.contains("Address already in use")),
            "the node exited before starting: {seen:?}"
        );
    }
    panic!("no free ports in three attempts");
}

/// Reads log lines until one contains every one of `parts`; returns it.
async fn log_line_with(
    logs: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    parts: &[&str],
) -> String {
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = logs.recv().await {
            if parts.iter().all(|part| line.contains(part)) {
                return line;
            }
        }
        panic!("the node's log ended without a line with {parts:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("no log line with {parts:?} within 30 s"))
}

/// Replaces a file's content at once (a new file renamed over it), as an operator should: a
/// reload never reads a half-written file.
fn replace(path: &std::path::Path, text: impl AsRef<[u8]>) -> std::io::Result<()> {
    let fresh = path.with_extension("new");
    std::fs::write(&fresh, text)?;
    std::fs::rename(&fresh, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_files_reload_on_change_and_on_sighup_and_a_bad_one_is_counted_and_kept_out() {
    use planetmint_streams_auth::SecretHash;
    let dir = tempfile::tempdir().expect("tmp");
    let clients = dir.path().join("clients.toml");
    let entry = |id: &str, secret: &str| {
        format!(
            "[[clients]]\nid = \"{id}\"\nsecret_hash = \"{}\"\nstreams = [\"valid_blocks\"]\n",
            SecretHash::new(secret).expect("hash")
        )
    };
    replace(&clients, entry("first", &"1".repeat(40))).expect("write");
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        signed_with(&format!(
            "clients_file = {:?}\nreload_interval = \"1s\"\n",
            clients.display().to_string()
        )),
    )
    .expect("write");
    let LoggedNode {
        mut child,
        mut logs,
        api,
        ..
    } = logged_node(Some(&config), &[]).await;
    let reloads = |text: &str, result: &str| {
        metric(
            text,
            "planetmint_streams_auth_reloads_total",
            &format!("result=\"{result}\""),
        )
    };
    let text = metrics_until(&api, Duration::from_secs(5), |_| true).await;
    assert!(
        text.contains("planetmint_streams_auth_reloads_total{result=\"ok\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("planetmint_streams_auth_reloads_total{result=\"error\"} 0"),
        "{text}"
    );

    // A changed file is picked up by its modification time.
    replace(
        &clients,
        format!(
            "{}\n{}",
            entry("first", &"1".repeat(40)),
            entry("second", &"2".repeat(40))
        ),
    )
    .expect("write");
    let line = log_line_with(&mut logs, &["credentials reloaded", "file changed"]).await;
    assert!(line.contains("\"clients\":2"), "{line}");
    let text = metrics_until(&api, Duration::from_secs(10), |t| reloads(t, "ok") >= 1.0).await;
    assert_eq!(reloads(&text, "ok"), 1.0, "{text}");

    // A bad file is refused, counted, and named in the log; its secret never shows.
    let plain = "plain-secret-pasted-where-the-hash-goes-02";
    replace(
        &clients,
        format!("{}\n[[clients]]\nid = \"third\"\nsecret_hash = \"{plain}\"\nstreams = [\"valid_blocks\"]\n", entry("first", &"1".repeat(40))),
    )
    .expect("write");
    let line = log_line_with(&mut logs, &["credentials not reloaded"]).await;
    for part in [
        "auth.clients_file",
        "entry 2",
        "\\\"third\\\"",
        "secret_hash",
        "file changed",
    ] {
        assert!(line.contains(part), "{line} lacks {part}");
    }
    assert!(!line.contains(plain), "{line}");
    let text = metrics_until(&api, Duration::from_secs(10), |t| {
        reloads(t, "error") >= 1.0
    })
    .await;
    assert_eq!(reloads(&text, "error"), 1.0, "{text}");

    // SIGHUP reloads at once, whatever the modification time says.
    let pid = child.id().expect("pid").to_string();
    let hup = Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .await
        .expect("kill");
    assert!(hup.success());
    let line = log_line_with(&mut logs, &["credentials not reloaded", "SIGHUP"]).await;
    assert!(line.contains("entry 2"), "{line}");
    replace(&clients, entry("fourth", &"4".repeat(40))).expect("write");
    log_line_with(&mut logs, &["credentials reloaded", "\"clients\":1"]).await;
    let text = metrics_until(&api, Duration::from_secs(10), |t| reloads(t, "ok") >= 2.0).await;
    assert_eq!(
        (reloads(&text, "ok"), reloads(&text, "error")),
        (2.0, 2.0),
        "{text}"
    );

    let term = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    assert!(term.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits")
        .expect("wait");
    assert_eq!(
        status.code(),
        Some(0),
        "SIGHUP did not end the node, SIGTERM did"
    );
}

async fn signal(child: &tokio::process::Child, name: &str) {
    let pid = child.id().expect("pid").to_string();
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .await
        .expect("kill");
    assert!(sent.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_stop_signals_during_the_drain_still_give_subscribers_1001() {
    let LoggedNode {
        mut child,
        mut logs,
        streams_port,
        ..
    } = logged_node(None, &[]).await;
    let mut ws = UrlStream::connect(&format!(
        "ws://127.0.0.1:{streams_port}/api/v1/streams/valid_transactions"
    ))
    .await;
    signal(&child, "TERM").await;
    log_line_with(&mut logs, &["shutting down"]).await;
    // What `make demo` used to send on one Ctrl-C or one SIGTERM to its process group: the
    // script passes a SIGTERM on, and a terminal's SIGINT reaches the node as well.
    signal(&child, "TERM").await;
    signal(&child, "INT").await;
    let (_, frame) = ws.until_close(Duration::from_secs(10)).await;
    let frame = frame.expect("a close frame, not a dropped connection");
    assert_eq!(frame.code, 1001, "{}", frame.reason);
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits in time")
        .expect("wait");
    assert_eq!(status.code(), Some(0), "a clean exit, not the at-once 130");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_a_moment_later_exits_at_once() {
    // A long drain, held open by a subscriber that never answers the close.
    let LoggedNode {
        mut child,
        mut logs,
        streams_port,
        ..
    } = logged_node(
        None,
        &[("PLANETMINT_STREAMS_STREAMS__SHUTDOWN_GRACE", "60s")],
    )
    .await;
    let _silent = raw_upgrade(
        &format!("127.0.0.1:{streams_port}"),
        "/api/v1/streams/valid_transactions",
    )
    .await;
    signal(&child, "INT").await;
    log_line_with(&mut logs, &["shutting down"]).await;
    // A person presses Ctrl-C again after a moment (the node ignores repeats within 1 s).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "still draining"
    );
    signal(&child, "INT").await;
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("exits at once, not after the 60 s grace")
        .expect("wait");
    assert_eq!(status.code(), Some(130));
}
