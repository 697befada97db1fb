//! How the agent reaches file servers: one TLS trust decision for https:// and ftps:// alike.
//!
//! The trust is the platform's root certificates plus the fleet's own CA (`[download] ca_file`, PEM). Where the
//! platform has no usable roots (a phone's minimal image, say), the fleet's CA alone is trusted. Both HTTPS
//! (reqwest) and FTPS (suppaftp) use the same rustls configuration, with ring as the crypto provider.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::AgentError;

/// Idle connections a simulated fleet keeps to each file server, shared by all its phones.
pub const FLEET_IDLE_CONNECTIONS: usize = 32;
/// How long a simulated fleet keeps an idle connection.
pub const FLEET_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP(S) requests a simulated fleet has under way at once, over all its phones. The rest wait for a turn.
pub const FLEET_REQUESTS_AT_ONCE: usize = 64;

/// The clients a download uses. Cheap to clone: a whole simulated fleet shares one.
#[derive(Clone)]
pub struct Transport {
    pub(crate) http: reqwest::Client,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    /// A simulated fleet's turns ([`FLEET_REQUESTS_AT_ONCE`]); a phone has none.
    turns: Option<Arc<tokio::sync::Semaphore>>,
}

impl Transport {
    /// Trusting the platform's roots, and the CA certificates in `ca_file` if given.
    pub fn new(ca_file: Option<&Path>) -> Result<Transport, AgentError> {
        Self::build(ca_file, Ok)
    }

    /// For a simulated fleet that shares one transport: its phones share a small pool of idle connections to
    /// each file server ([`FLEET_IDLE_CONNECTIONS`], closed after [`FLEET_IDLE_TIMEOUT`]), so a wave of
    /// downloads reuses connections instead of opening one a phone, and memory stays bounded whatever the fleet's
    /// size. At most [`FLEET_REQUESTS_AT_ONCE`] requests are under way at once; the others wait for a turn. Ten
    /// thousand phones in one process would otherwise open a connection each as a wave starts, past the
    /// server's connection cap (and the process's open-files limit), and spend the wave refused and backing
    /// off; real phones each have their own sockets. With `proxy`, every HTTP(S) request goes through that
    /// proxy (`http://host:port`, a simulator's throttle), without turns: its phones are few and slow on
    /// purpose, and must not keep each other waiting past their time limit.
    pub fn for_fleet(ca_file: Option<&Path>, proxy: Option<&str>) -> Result<Transport, AgentError> {
        let mut transport = Self::build(ca_file, |b| {
            let b = b.pool_max_idle_per_host(FLEET_IDLE_CONNECTIONS).pool_idle_timeout(FLEET_IDLE_TIMEOUT);
            match proxy {
                Some(url) => Ok(b.proxy(reqwest::Proxy::all(url)?)),
                None => Ok(b.no_proxy()),
            }
        })?;
        if proxy.is_none() {
            transport.turns = Some(Arc::new(tokio::sync::Semaphore::new(FLEET_REQUESTS_AT_ONCE)));
        }
        Ok(transport)
    }

    /// Waits for a turn to make an HTTP(S) request, held until the permit is dropped: none for a phone.
    pub(crate) async fn turn(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        // The semaphore is never closed, so acquiring never fails.
        self.turns.clone()?.acquire_owned().await.ok()
    }

    fn build(
        ca_file: Option<&Path>,
        more: impl FnOnce(reqwest::ClientBuilder) -> reqwest::Result<reqwest::ClientBuilder>,
    ) -> Result<Transport, AgentError> {
        let extra = match ca_file {
            Some(path) => read_certificates(path)?,
            None => Vec::new(),
        };
        let tls = client_config(extra)?;
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("bindwave-agent/", env!("CARGO_PKG_VERSION")))
            .tls_backend_preconfigured(tls.clone());
        let http = more(builder)
            .and_then(reqwest::ClientBuilder::build)
            .map_err(|e| AgentError::HttpClient(crate::error::chain(&e)))?;
        Ok(Transport { http, tls: Arc::new(tls), turns: None })
    }
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, AgentError> {
    let pem = std::fs::read(path).map_err(crate::error::io_err("read the CA file", path))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AgentError::HttpClient(format!("{} is not a PEM certificate file: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(AgentError::HttpClient(format!(
            "{} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

fn client_config(extra: Vec<CertificateDer<'static>>) -> Result<rustls::ClientConfig, AgentError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_err = |e: rustls::Error| AgentError::HttpClient(format!("TLS setup: {e}"));
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?;
    let config = match rustls_platform_verifier::Verifier::new_with_extra_roots(extra.clone(), provider.clone()) {
        Ok(verifier) => builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth(),
        Err(e) => {
            // Plain http:// and ftp:// still work; https:// and ftps:// trust the fleet's CA, if any.
            tracing::warn!("the platform's root certificates are not usable ({e}); trusting [download] ca_file alone");
            let mut roots = rustls::RootCertStore::empty();
            for cert in extra {
                roots.add(cert).map_err(tls_err)?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let e = Transport::new(Some(&path)).err().unwrap().to_string();
        assert!(e.contains("ca.pem") && e.contains("no PEM certificate"), "{e}");
        let missing = Transport::new(Some(&dir.path().join("absent.pem"))).err().unwrap().to_string();
        assert!(missing.contains("absent.pem"), "{missing}");
    }

    #[test]
    fn without_a_ca_file_the_platform_roots_serve() {
        assert!(Transport::new(None).is_ok());
    }
}
