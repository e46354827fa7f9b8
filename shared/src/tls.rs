//! TLS helpers: PEM loading (with the 0600 rule for private keys), the server configuration
//! that requires a client certificate signed by our CA, and the client configuration that
//! services use to reach each other.

use crate::config::TlsFiles;
use crate::secret::{SecretError, read_private_file};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificates from {path}: {reason}")]
    Certs { path: String, reason: String },
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

/// Installs aws-lc-rs as the process-wide rustls provider; call first thing in `main`.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::Certs {
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate in file".into()));
    }
    Ok(certs)
}

/// Loads a PEM private key, refusing a file that others can read.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_private_file(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        SecretError::Invalid {
            path: path.to_owned(),
            reason: format!("no PEM private key: {e}"),
        }
        .into()
    })
}

pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    CertificateRevocationListDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Certs {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(ca)? {
        roots
            .add(c)
            .map_err(|e| TlsError::Config(format!("CA {}: {e}", ca.display())))?;
    }
    Ok(roots)
}

/// TLS 1.3 server that requires a client certificate chaining to `files.ca` (or one of
/// `extra_cas`, the domains' own CAs) and not on `crls`.
pub fn server_config(
    files: &TlsFiles,
    extra_cas: &[&Path],
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<ServerConfig, TlsError> {
    let mut roots = roots(&files.ca)?;
    for ca in extra_cas {
        for c in load_certs(ca)? {
            roots
                .add(c)
                .map_err(|e| TlsError::Config(format!("CA {}: {e}", ca.display())))?;
        }
    }
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .with_crls(crls)
        .allow_unknown_revocation_status()
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut cfg = ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(&files.cert)?, load_key(&files.key)?)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// TLS 1.2/1.3 server for browsers (the portal): no client certificate, HTTP/2 or HTTP/1.1.
pub fn browser_server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let mut cfg = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(load_certs(&files.cert)?, load_key(&files.key)?)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// TLS 1.3 client that trusts only `files.ca` and presents the service's own certificate.
pub fn client_config(files: &TlsFiles) -> Result<ClientConfig, TlsError> {
    ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_root_certificates(roots(&files.ca)?)
        .with_client_auth_cert(load_certs(&files.cert)?, load_key(&files.key)?)
        .map_err(|e| TlsError::Config(e.to_string()))
}
