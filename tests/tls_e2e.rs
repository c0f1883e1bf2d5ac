//! TLS on both ports with certificates made by the test, and client-certificate
//! authentication: a client that trusts the test CA streams over wss://; without a client
//! certificate it is refused when the node asks for one.

mod support;

use std::sync::Arc;
use std::time::Duration;

use planetmint_streams_devchain::fixtures::Planetmint253;
use planetmint_streams_devchain::writer::PlanetmintWriter;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::Connector;

struct Pki {
    dir: tempfile::TempDir,
    ca: CertificateDer<'static>,
    client_chain: Vec<CertificateDer<'static>>,
    client_key: Vec<u8>,
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
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

async fn wss(
    url: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    tokio_tungstenite::connect_async_tls_with_config(
        url,
        None,
        false,
        Some(Connector::Rustls(config)),
    )
    .await
    .map(|(ws, _)| ws)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ports_serve_tls_and_the_root_document_advertises_wss() {
    let pki = pki();
    let dir = pki.dir.path().to_owned();
    let harness = Harness::start_with(|c| {
        c.streams.advertised_host = "localhost".into();
        c.tls.cert_file = Some(dir.join("server.pem"));
        c.tls.key_file = Some(dir.join("server.key"));
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
    let writer = PlanetmintWriter::connect(&harness.tarantool.address())
        .await
        .expect("writer");
    fixtures.write_block(&writer, 1).await.expect("write");
    let events = take_json(&mut ws, 6, Duration::from_secs(10)).await;
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
        c.streams.advertised_host = "localhost".into();
        c.tls.cert_file = Some(dir.join("server.pem"));
        c.tls.key_file = Some(dir.join("server.key"));
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
    let writer = PlanetmintWriter::connect(&harness.tarantool.address())
        .await
        .expect("writer");
    fixtures.write_block(&writer, 1).await.expect("write");
    let block = take_json(&mut ws, 1, Duration::from_secs(10)).await;
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
