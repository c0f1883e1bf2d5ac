//! TLS on both ports with certificates made by the test, and client-certificate
//! authentication: a client that trusts the test CA streams over wss://; without a client
//! certificate it is refused when the node asks for one.

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use planetmint_streams::config::Config;
use planetmint_streams_devchain::fixtures::Planetmint253;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Pki {
    dir: tempfile::TempDir,
    ca: CertificateDer<'static>,
    client_chain: Vec<CertificateDer<'static>>,
    client_key: Vec<u8>,
}

impl Pki {
    /// Has the node serve TLS with this PKI's server certificate, advertised as `localhost`.
    fn serve_tls(&self, config: &mut Config) {
        let dir = self.dir.path();
        config.streams.advertised_host = "localhost".into();
        config.tls.cert_file = Some(dir.join("server.pem"));
        config.tls.key_file = Some(dir.join("server.key"));
    }
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("tmp");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::CrlSign,
    ];
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("CA");

    let server_key = KeyPair::generate().expect("key");
    let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("params")
        .signed_by(&server_key, &ca)
        .expect("server certificate");
    std::fs::write(dir.path().join("server.pem"), server.pem()).expect("write");
    std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).expect("write");
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write");

    let client_key = KeyPair::generate().expect("key");
    let mut client_params = CertificateParams::new(vec!["wallet-1".to_owned()]).expect("params");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params
        .signed_by(&client_key, &ca)
        .expect("client certificate");
    Pki {
        dir,
        ca: ca.der().clone(),
        client_chain: vec![client.der().clone()],
        client_key: client_key.serialize_der(),
    }
}

fn client_config(pki: &Pki, with_certificate: bool) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).expect("root");
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    let config = if with_certificate {
        let key = PrivateKeyDer::try_from(pki.client_key.clone()).expect("key");
        builder
            .with_client_auth_cert(pki.client_chain.clone(), key)
            .expect("client cert")
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(config)
}

async fn https_get(
    addr: std::net::SocketAddr,
    path: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<(u16, Value)> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut response = Vec::new();
    // A refused client certificate shows up as an error while reading.
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut response)).await??;
    let (status, body) = parse_http_response(&response);
    Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
}

async fn wss(
    url: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<UrlStream, tokio_tungstenite::tungstenite::Error> {
    UrlStream::connect_with(url, &Options::tls(config)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ports_serve_tls_and_the_root_document_advertises_wss() {
    let pki = pki();
    let harness = Harness::start_with(|c| {
        pki.serve_tls(c);
    })
    .await;
    let client = client_config(&pki, false);
    let (status, v1) = https_get(harness.node().api_addr, "/api/v1/", client.clone())
        .await
        .expect("https");
    assert_eq!(status, 200);
    let url = v1["streams"].as_str().expect("streams").to_owned();
    assert_eq!(
        url,
        format!(
            "wss://localhost:{}/api/v1/streams/valid_transactions",
            harness.node().streams_addr.port()
        )
    );

    let mut ws = wss(&url, client)
        .await
        .expect("wss connects with the CA trusted");
    let fixtures = Planetmint253::load().expect("fixtures");
    harness.writer().await.write_fixture(&fixtures, 1).await;
    let events = ws.take(6, Duration::from_secs(10)).await;
    assert_eq!(events, fixtures.expected_events(1));

    // A client that does not trust the CA gets no connection.
    let untrusting = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth(),
    );
    assert!(wss(&url, untrusting).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_when_a_ca_is_configured() {
    let pki = pki();
    let dir = pki.dir.path().to_owned();
    let harness = Harness::start_with(|c| {
        pki.serve_tls(c);
        c.tls.client_ca_file = Some(dir.join("ca.pem"));
    })
    .await;
    let url = format!(
        "wss://localhost:{}/api/v1/streams/valid_blocks",
        harness.node().streams_addr.port()
    );
    assert!(
        wss(&url, client_config(&pki, false)).await.is_err(),
        "no client certificate: refused"
    );
    assert!(https_get(
        harness.node().api_addr,
        "/health",
        client_config(&pki, false)
    )
    .await
    .is_err());
    let mut ws = wss(&url, client_config(&pki, true))
        .await
        .expect("a certificate signed by the CA is accepted");
    let fixtures = Planetmint253::load().expect("fixtures");
    harness.writer().await.write_fixture(&fixtures, 1).await;
    let block = ws.take(1, Duration::from_secs(10)).await;
    assert_eq!(block[0], fixtures.expected_blocks[0]);
    let (status, _) = https_get(
        harness.node().api_addr,
        "/health",
        client_config(&pki, true),
    )
    .await
    .expect("https");
    assert_eq!(status, 200);
}

/// One HTTPS request (raw HTTP/1.1 text) over a fresh TLS connection; the whole answer.
async fn https_raw(
    addr: std::net::SocketAddr,
    request: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<String> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    tls.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut response)).await??;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_the_admin_endpoint_is_https_and_the_proxy_says_https_upstream() {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    async fn echo(req: HttpRequest) -> HttpResponse {
        let proto = req
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        HttpResponse::Ok().json(serde_json::json!({"x-forwarded-proto": proto}))
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = format!("http://{}", listener.local_addr().expect("addr"));
    let server = HttpServer::new(|| App::new().default_service(web::to(echo)))
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
    let upstream_handle = server.handle();
    tokio::spawn(server);

    let pki = pki();
    let admin_secret = "admin-secret-admin-secret-admin-secret-01";
    let harness = Harness::start_with(|c| {
        pki.serve_tls(c);
        c.api.upstream = Some(upstream.clone());
        signed_with_key(c);
        c.auth.admin.enabled = true;
        c.auth.admin.bind = "127.0.0.1:0".into();
        c.auth.admin.secret = Some(planetmint_streams_auth::SecretString::new(admin_secret));
    })
    .await;
    let client = client_config(&pki, false);
    let admin = harness.node().admin_addr.expect("admin endpoint");
    let body = r#"{"streams": ["valid_blocks"], "ttl": "1m"}"#;
    let answer = https_raw(
        admin,
        &format!(
            "POST /admin/tokens HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {admin_secret}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        client.clone(),
    )
    .await
    .expect("the admin endpoint speaks TLS");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("wss://localhost:"), "{answer}");

    // Plain HTTP to the admin port gets no HTTP answer (the secret would travel in clear).
    let mut plain = tokio::net::TcpStream::connect(admin)
        .await
        .expect("connect");
    plain
        .write_all(b"GET /admin/tokens HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut answer))
        .await
        .expect("the admin port ends a plain HTTP connection");
    assert!(
        !answer.starts_with(b"HTTP/"),
        "no plain HTTP answer on the admin port: {}",
        String::from_utf8_lossy(&answer)
    );

    // Forwarded requests say https upstream, whatever the client claims.
    let answer = https_raw(
        harness.node().api_addr,
        "GET /api/v1/outputs HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: http\r\nConnection: close\r\n\r\n",
        client,
    )
    .await
    .expect("https");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains(r#""x-forwarded-proto":"https""#),
        "{answer}"
    );
    upstream_handle.stop(false).await;
}
