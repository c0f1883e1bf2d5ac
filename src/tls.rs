//! TLS for the API and stream ports (rustls, `ring` provider), from PEM files, with optional
//! client-certificate authentication against a CA bundle.

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

/// The rustls configuration, or `None` when TLS is off.
pub fn server_config(config: &TlsConfig) -> anyhow::Result<Option<ServerConfig>> {
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
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
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
