//! TLS to the broker (`mqtts://`): the CA the broker is verified against, and an optional client
//! certificate (mutual TLS, whose CN is then the client's identity).
//!
//! rustls with the process's default crypto provider: the agent installs ring, the controller aws-lc-rs, so
//! this crate links neither.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::LinkError;

/// The PEM files of a TLS link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificate(s) the broker's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// This client's certificate (chain), for brokers that require one.
    pub client_cert: Option<PathBuf>,
    /// The private key of `client_cert`.
    pub client_key: Option<PathBuf>,
}

impl TlsFiles {
    /// True when no file is set.
    pub fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.client_cert.is_none() && self.client_key.is_none()
    }

    /// The rustls client configuration these files give.
    pub fn client_config(&self) -> Result<ClientConfig, LinkError> {
        let provider = rustls::crypto::CryptoProvider::get_default().cloned().ok_or(LinkError::NoCryptoProvider)?;
        let ca_file = self.ca_file.as_deref().ok_or(LinkError::TlsWithoutCa { url: String::new() })?;
        let mut roots = RootCertStore::empty();
        for cert in certificates("broker CA file", ca_file)? {
            roots.add(cert).map_err(|source| LinkError::TlsConfig {
                what: "broker CA file",
                path: ca_file.into(),
                source,
            })?;
        }
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|source| LinkError::TlsConfig { what: "broker CA file", path: ca_file.into(), source })?
            .with_root_certificates(roots);
        match (&self.client_cert, &self.client_key) {
            (None, None) => Ok(builder.with_no_client_auth()),
            (Some(cert), Some(key)) => {
                let chain = certificates("client certificate", cert)?;
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|source| LinkError::TlsFile {
                    what: "client key",
                    path: key.clone(),
                    source,
                })?;
                builder.with_client_auth_cert(chain, key_der).map_err(|source| LinkError::TlsConfig {
                    what: "client key",
                    path: key.clone(),
                    source,
                })
            }
            _ => Err(LinkError::ClientCertWithoutKey),
        }
    }

    /// The configuration for rumqttc.
    pub(crate) fn transport(&self) -> Result<rumqttc::Transport, LinkError> {
        let config = self.client_config()?;
        Ok(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(Arc::new(config))))
    }
}

/// Every certificate in a PEM file; at least one.
fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, LinkError> {
    let file_err = |source| LinkError::TlsFile { what, path: path.to_path_buf(), source };
    let certs =
        CertificateDer::pem_file_iter(path).map_err(file_err)?.collect::<Result<Vec<_>, _>>().map_err(file_err)?;
    if certs.is_empty() {
        return Err(LinkError::NoCertificate { what, path: path.to_path_buf() });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_file_problem_names_the_file_and_what_it_is() {
        let dir = std::env::temp_dir().join(format!("bindwave-link-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let missing = TlsFiles { ca_file: Some(dir.join("missing.pem")), ..TlsFiles::default() };
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let no_cert = TlsFiles { ca_file: Some(empty.clone()), ..TlsFiles::default() };
        let half = TlsFiles { ca_file: Some(empty.clone()), client_cert: Some(empty.clone()), client_key: None };
        let e = crate::error_chain(&missing.client_config().unwrap_err());
        assert!(e.starts_with("cannot read the broker CA file ") && e.contains("missing.pem"), "{e}");
        let e = no_cert.client_config().unwrap_err().to_string();
        assert!(e.contains("empty.pem holds no certificate"), "{e}");
        assert!(matches!(half.client_config(), Err(LinkError::NoCertificate { .. } | LinkError::ClientCertWithoutKey)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
