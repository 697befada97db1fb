//! TLS for the HTTP API and the bind downloads: a rustls server configuration (aws-lc-rs) from a certificate
//! chain and a private key in PEM files.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::ControllerError;

/// The server configuration for `cert` (a PEM chain, the server's certificate first) and `key` (PEM, PKCS#8,
/// PKCS#1 or SEC1). Speaks HTTP/1.1 (ALPN `http/1.1`).
pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, ControllerError> {
    let file_err = |path: &Path, detail: String| ControllerError::Tls {
        detail: format!("{}: {detail} (set tls_cert and tls_key to PEM files)", path.display()),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err(cert, format!("cannot read the certificate: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(cert, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(file_err(cert, "holds no certificate".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, format!("no private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ControllerError::Tls { detail: e.to_string() })?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| ControllerError::Tls {
            detail: format!("{} and {} do not make a server identity: {e}", cert.display(), key.display()),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_or_wrong_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("server.pem");
        let e = server_config(&missing, &dir.path().join("server.key")).unwrap_err().to_string();
        assert!(e.contains("server.pem") && e.contains("tls_cert"), "{e}");
        std::fs::write(&missing, "not pem").unwrap();
        let e = server_config(&missing, &dir.path().join("server.key")).unwrap_err().to_string();
        assert!(e.contains("holds no certificate"), "{e}");
    }
}
