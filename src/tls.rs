//! TLS for the API and stream ports (rustls, `ring` provider), from PEM files, with optional
//! client-certificate authentication against a CA bundle.
//!
//! With `tls.client_ca_file` the handshake demands a certificate signed by it
//! ([`ClientCertificates::Required`]). The JetStream tier's API routes must also answer
//! callers without one (speedracer sends its certificate only to the gateway), so with
//! `[nats]` the API port takes [`ClientCertificates::Optional`]: a certificate presented is
//! still verified at the handshake, and the API refuses callers without one on every other
//! path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use planetmint_streams_model::ConfigProblem;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde::{Deserialize, Serialize};

/// `[tls]`: serve `https://` and `wss://` on the API and stream ports.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain (PEM), leaf first. TLS is on when this and `key_file` are set.
    pub cert_file: Option<PathBuf>,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// CA bundle (PEM): when set, clients must present a certificate signed by one of these.
    pub client_ca_file: Option<PathBuf>,
}

impl TlsConfig {
    /// Whether TLS is configured.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }

    /// Checks the combination; the error names the offending key.
    pub fn validate(&self) -> Result<(), ConfigProblem> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => {
                return Err(ConfigProblem::new(
                    "tls.key_file",
                    "tls.cert_file is set but tls.key_file is not",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigProblem::new(
                    "tls.cert_file",
                    "tls.key_file is set but tls.cert_file is not",
                ))
            }
            _ => {}
        }
        if self.client_ca_file.is_some() && self.cert_file.is_none() {
            return Err(ConfigProblem::new(
                "tls.client_ca_file",
                "client certificates need tls.cert_file and tls.key_file",
            ));
        }
        Ok(())
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path, key: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("{key}: cannot read {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{key}: {} is not PEM certificates", path.display()))?;
    if certs.is_empty() {
        bail!("{key}: {} holds no certificate", path.display());
    }
    Ok(certs)
}

/// Whether the handshake demands a client certificate (when `tls.client_ca_file` is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertificates {
    /// No certificate, no connection.
    Required,
    /// A certificate presented must be signed by the CA; none is accepted too.
    Optional,
}

/// The rustls configuration, or `None` when TLS is off (client certificates required when
/// `tls.client_ca_file` is set).
pub fn server_config(config: &TlsConfig) -> anyhow::Result<Option<ServerConfig>> {
    server_config_with(config, ClientCertificates::Required)
}

/// [`server_config`] with client certificates `required` or optional at the handshake.
pub fn server_config_with(
    config: &TlsConfig,
    client_certificates: ClientCertificates,
) -> anyhow::Result<Option<ServerConfig>> {
    let (Some(cert_file), Some(key_file)) = (&config.cert_file, &config.key_file) else {
        return Ok(None);
    };
    let chain = certificates(cert_file, "tls.cert_file")?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("tls.key_file: no private key in {}", key_file.display()))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &config.client_ca_file {
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca_file, "tls.client_ca_file")? {
                roots.add(cert).with_context(|| {
                    format!(
                        "tls.client_ca_file: bad CA certificate in {}",
                        ca_file.display()
                    )
                })?;
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            if client_certificates == ClientCertificates::Optional {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .context("tls.client_ca_file: cannot verify clients with these CAs")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut server = builder
        .with_single_cert(chain, key)
        .context("tls.cert_file/tls.key_file: the key does not match the certificate")?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(server))
}
