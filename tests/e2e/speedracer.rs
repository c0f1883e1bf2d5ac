//! Seed 001 for real: the published `speedracer` 0.0.13 client library (Python; nothing of
//! ours), given only the node's URL, against a node with the JetStream tier and a real
//! nats-server (JetStream, WebSocket).
//!
//! Development (no TLS, no auth): it subscribes from `Offset.BEGIN` and gets every event,
//! then the live ones, seeks to sequence 1 and to a time. Production shape (`tls.cert_file`,
//! `tls.client_ca_file`, `auth.mode = "signed"`, nats-server in operator mode configured by
//! `planetmint-streams nats-config`): a second `Connection` with the same certificate
//! continues where the first stopped with nothing repeated (its durable consumer), a
//! certificate from another CA gets nothing, and a client's NATS user JWT reads its dataset
//! only. `make test` installs speedracer into target/py (PMS_PYTHON).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use crate::support::jetstream::*;
use crate::support::*;
use planetmint_streams_devchain::generate::GeneratedBlock;
use planetmint_streams_devchain::nats::{NatsOptions, NatsServer};
use planetmint_streams_jetstream::NatsConfig;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The speedracer driver (tests/clients/speedracer_driver.py) as a child process.
struct Driver {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Driver {
    fn start(url: &str, cert: &Path, key: &Path, dataset: &str, ca: Option<&Path>) -> Self {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/speedracer_driver.py"
        );
        let mut command = Command::new(python());
        command.arg(script).arg(url).arg(cert).arg(key).arg(dataset);
        if let Some(ca) = ca {
            command.arg(ca);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python runs");
        let stdin = child.stdin.take().expect("stdin");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Self {
            child,
            stdin,
            lines,
        }
    }

    async fn line(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(90), self.lines.next_line())
            .await
            .expect("speedracer answers in time")
            .expect("read")
            .expect("speedracer ended early");
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"))
    }

    /// Sends `command` and returns what it printed before its `{"ok": ...}` (panics on
    /// `{"error": ...}`).
    async fn run(&mut self, command: &str) -> Vec<Value> {
        match self.try_run(command).await {
            Ok(lines) => lines,
            Err(error) => panic!("speedracer `{command}`: {error}"),
        }
    }

    async fn try_run(&mut self, command: &str) -> Result<Vec<Value>, String> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("write");
        let mut out = Vec::new();
        loop {
            let line = self.line().await;
            if let Some(error) = line.get("error") {
                return Err(error.to_string());
            }
            if line.get("ok").is_some() {
                return Ok(out);
            }
            out.push(line);
        }
    }

    async fn quit(mut self) {
        let _ = self.stdin.write_all(b"quit\n").await;
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("speedracer exits")
            .expect("wait");
        assert!(status.success());
    }
}

/// `(seq, height, data)` of each message read.
fn messages(lines: &[Value]) -> Vec<(u64, u64, Value)> {
    lines
        .iter()
        .map(|l| {
            (
                l["seq"].as_u64().expect("seq"),
                l["height"].as_u64().expect("height"),
                l["data"].clone(),
            )
        })
        .collect()
}

fn sequences(lines: &[Value]) -> Vec<u64> {
    messages(lines).into_iter().map(|(seq, _, _)| seq).collect()
}

fn data(lines: &[Value]) -> Vec<Value> {
    messages(lines).into_iter().map(|(_, _, d)| d).collect()
}

async fn write(store: &Store, blocks: &[GeneratedBlock]) {
    let (writer, _) = spawn_writer(store.clone(), blocks.to_vec(), Duration::ZERO);
    writer.await.expect("written");
}

/// A self-signed certificate and key in `dir` (speedracer insists on certificate files even
/// when nobody asks for one).
fn throwaway_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["speedracer-user".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    let (cert_path, key_path) = (dir.join("dev.crt"), dir.join("dev.key"));
    std::fs::write(&cert_path, cert.pem()).expect("write");
    std::fs::write(&key_path, key.serialize_pem()).expect("write");
    (cert_path, key_path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speedracer_reads_from_the_beginning_then_live_and_seeks_by_sequence_and_time() {
    let nats = NatsServer::start().await.expect("nats-server");
    let harness = Harness::start_with(|c| c.nats = Some(nats_config(&nats))).await;
    let store = harness.store();
    let blocks = chain(31, 1, 10, 2);
    write(&store, &blocks[..5]).await;
    let js = context(&nats.url()).await;
    wait_for(&js, "valid_transactions", 10, Duration::from_secs(30)).await;

    let dir = tempfile::tempdir().expect("tmp");
    let (cert, key) = throwaway_certificate(dir.path());
    // Only the node's URL: speedracer finds NATS through /api/v1/config.
    let mut speedracer = Driver::start(&harness.api(), &cert, &key, "valid_transactions", None);
    speedracer.run("subscribe begin 10").await;
    let first = speedracer.run("read 10").await;
    assert_eq!(sequences(&first), (1..=10).collect::<Vec<_>>());
    assert_eq!(
        data(&first),
        expected_events(&blocks[..5]),
        "every event from the beginning"
    );

    write(&store, &blocks[5..8]).await;
    let live = speedracer.run("read 6").await;
    assert_eq!(sequences(&live), (11..=16).collect::<Vec<_>>());
    assert_eq!(
        data(&live),
        expected_events(&blocks[5..8]),
        "then the live ones"
    );

    speedracer.run("seek 1").await;
    let again = speedracer.run("read 16").await;
    assert_eq!(sequences(&again), (1..=16).collect::<Vec<_>>(), "seek to 1");
    assert_eq!(data(&again), expected_events(&blocks[..8]));

    speedracer.run("mark").await;
    write(&store, &blocks[8..]).await;
    wait_for(&js, "valid_transactions", 20, Duration::from_secs(30)).await;
    speedracer.run("seek_mark").await;
    let since = speedracer.run("read 4").await;
    assert_eq!(
        data(&since),
        expected_events(&blocks[8..]),
        "seek to a time: the events published after it"
    );
    speedracer.quit().await;
}

/// A CA, the node's server certificate, and client certificates it signs.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(dir: tempfile::TempDir, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::CrlSign,
        ];
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        let ca =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        std::fs::write(dir.path().join(format!("{name}.pem")), ca.pem()).expect("write");
        Self { dir, ca }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The node's certificate for `localhost`: (cert, key) paths.
    fn server(&self) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params")
            .signed_by(&key, &self.ca)
            .expect("server certificate");
        std::fs::write(self.path("server.pem"), cert.pem()).expect("write");
        std::fs::write(self.path("server.key"), key.serialize_pem()).expect("write");
        (self.path("server.pem"), self.path("server.key"))
    }

    /// A client certificate with subject CN `cn`: (cert, key) paths and the DER pieces.
    fn client(&self, cn: &str) -> (PathBuf, PathBuf, CertificateDer<'static>, Vec<u8>) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params
            .signed_by(&key, &self.ca)
            .expect("client certificate");
        let (cert_path, key_path) = (
            self.path(&format!("{cn}.crt")),
            self.path(&format!("{cn}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).expect("write");
        std::fs::write(&key_path, key.serialize_pem()).expect("write");
        (cert_path, key_path, cert.der().clone(), key.serialize_der())
    }
}

/// One HTTPS GET (with `headers`) over a fresh TLS connection: status, headers and body
/// text, or the I/O error of a refused handshake.
async fn https_get(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<(u16, String)> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await?;
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut response)).await??;
    let text = String::from_utf8_lossy(&response).into_owned();
    Ok((parse_http_response(&response).0, text))
}

fn client_tls(
    ca: &Pki,
    identity: Option<(CertificateDer<'static>, Vec<u8>)>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.ca.der().clone()).expect("root");
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    Arc::new(match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(vec![cert], PrivateKeyDer::try_from(key).expect("key"))
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_certificates_and_operator_mode_a_durable_subscription_resumes_and_strangers_get_nothing(
) {
    let pki = Pki::new(tempfile::tempdir().expect("tmp"), "clients-ca");
    let stranger_ca = Pki::new(tempfile::tempdir().expect("tmp"), "other-ca");
    let (server_cert, server_key) = pki.server();
    let (wallet_cert, wallet_key, wallet_der, wallet_key_der) = pki.client("wallet-1");
    let (stranger_cert, stranger_key, _, _) = stranger_ca.client("wallet-1");

    // The NATS side, as an operator would set it up.
    let keys = pki.path("nats");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_planetmint-streams"))
        .args(["nats-config", "--out"])
        .arg(&keys)
        .stdout(Stdio::null())
        .status()
        .expect("nats-config runs");
    assert!(status.success());
    let auth_conf = std::fs::read_to_string(keys.join("auth.conf")).expect("auth.conf");
    let nats = NatsServer::start_with(NatsOptions {
        include: Some(auth_conf),
        ..NatsOptions::default()
    })
    .await
    .expect("nats-server in operator mode");

    let ca_file = pki.path("clients-ca.pem");
    let harness = Harness::start_with(|c| {
        c.streams.advertised_host = "localhost".into();
        c.tls.cert_file = Some(server_cert.clone());
        c.tls.key_file = Some(server_key.clone());
        c.tls.client_ca_file = Some(ca_file.clone());
        signed_with_key(c);
        c.nats = Some(NatsConfig {
            credentials_file: Some(keys.join("publisher.creds")),
            account_signing_key_file: Some(keys.join("account-signing.nk")),
            ..nats_config(&nats)
        });
    })
    .await;
    let store = harness.store();
    let blocks = chain(32, 1, 8, 2);
    write(&store, &blocks[..4]).await;
    let publisher = async_nats::ConnectOptions::with_credentials_file(keys.join("publisher.creds"))
        .await
        .expect("creds")
        .connect(nats.url())
        .await
        .expect("the node's own credentials connect");
    let js = async_nats::jetstream::new(publisher);
    wait_for(&js, "valid_transactions", 8, Duration::from_secs(30)).await;

    // The API port: the configuration and user JWT routes answer without a certificate,
    // the rest of the API does not; a certificate from another CA gets no connection.
    let api = harness.node().api_addr;
    let anonymous = client_tls(&pki, None);
    let (status, _) = https_get(api, "/api/v1/config", "", anonymous.clone())
        .await
        .expect("https");
    assert_eq!(status, 200);
    let (status, _) = https_get(api, "/health", "", anonymous.clone())
        .await
        .expect("https");
    assert_eq!(status, 401, "other paths still need a certificate");
    let (status, _) = https_get(api, "/api/v1/gateway/jwt", "", anonymous.clone())
        .await
        .expect("https");
    assert_eq!(status, 401, "the gateway needs a certificate");

    let url = format!("https://localhost:{}", api.port());
    let ca = Some(ca_file.as_path());
    // A first Connection reads 3 events and goes away; a second one with the same
    // certificate (a restarted program) continues with the 4th: its durable consumer.
    let mut first = Driver::start(&url, &wallet_cert, &wallet_key, "valid_transactions", ca);
    first.run("subscribe begin 1").await;
    let read = first.run("read 3").await;
    assert_eq!(sequences(&read), vec![1, 2, 3]);
    first.quit().await;
    let mut second = Driver::start(&url, &wallet_cert, &wallet_key, "valid_transactions", ca);
    second.run("subscribe begin 1").await;
    let read = second.run("read 5").await;
    assert_eq!(
        sequences(&read),
        vec![4, 5, 6, 7, 8],
        "nothing repeated, nothing skipped"
    );
    assert_eq!(data(&read), expected_events(&blocks[..4])[3..].to_vec());
    write(&store, &blocks[4..]).await;
    let live = second.run("read 8").await;
    assert_eq!(data(&live), expected_events(&blocks[4..]));
    second.quit().await;

    // A certificate signed by another CA (same CN) gets nothing.
    let mut stranger = Driver::start(
        &url,
        &stranger_cert,
        &stranger_key,
        "valid_transactions",
        ca,
    );
    let refused = stranger.try_run("subscribe begin 1").await;
    assert!(
        refused.is_err(),
        "a stranger's certificate was accepted: {refused:?}"
    );

    // A user JWT reads its own dataset only.
    let wallet = client_tls(&pki, Some((wallet_der, wallet_key_der)));
    let (status, gateway) = https_get(api, "/api/v1/gateway/jwt", "", wallet)
        .await
        .expect("https");
    assert_eq!(status, 200, "{gateway}");
    let gateway_jwt = gateway
        .split("\r\n\r\n")
        .nth(1)
        .expect("body")
        .trim()
        .to_owned();
    let (status, answer) = https_get(
        api,
        "/api/v1/user/jwt/valid_blocks",
        &format!("Authorization: Bearer {gateway_jwt}\r\n"),
        anonymous.clone(),
    )
    .await
    .expect("https");
    assert_eq!(status, 200, "{answer}");
    let consumer = answer
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("planetmint-consumer: ")
                .map(str::to_owned)
        })
        .expect("Planetmint-Consumer header");
    assert_eq!(
        consumer,
        planetmint_streams_jetstream::credentials::consumer_name("wallet-1")
    );
    let user_jwt = answer
        .split("\r\n\r\n")
        .nth(1)
        .expect("body")
        .trim()
        .to_owned();
    let (status, _) = https_get(
        api,
        "/api/v1/user/jwt/valid_blocks",
        "Authorization: Bearer not-a-jwt\r\n",
        anonymous,
    )
    .await
    .expect("https");
    assert_eq!(status, 403, "a forged gateway JWT gets no NATS credentials");

    let reader =
        async_nats::ConnectOptions::with_jwt(user_jwt, |_nonce| async move { Ok(Vec::new()) })
            .connect(nats.url())
            .await
            .expect("a bearer user JWT connects");
    let reader_js = async_nats::jetstream::new(reader);
    let mut blocks_stream = reader_js
        .get_stream("valid_blocks")
        .await
        .expect("its own dataset's stream");
    assert_eq!(blocks_stream.info().await.expect("info").state.messages, 8);
    assert!(
        reader_js.get_stream("valid_transactions").await.is_err(),
        "another dataset's stream is out of reach"
    );
}
