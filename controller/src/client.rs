//! The CLI's client of the controller's HTTP API: HTTPS verified against the controller's CA, with a bearer
//! token.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::{
    ActionRequest, ApiError, NewToken, RolloutRequest, RolloutStatus, RolloutSummary, StopRequest, StopResponse,
    TokenRequest,
};
use crate::engine::plan::Plan;
use crate::engine::Action;
use crate::model::{AuditEntry, Device, Image, Rollout};
use crate::tokens::TokenInfo;
use crate::ControllerError;

/// How to reach a controller: its URL, the token to show it, and the CA its certificate must chain to.
#[derive(Debug, Clone, Default)]
pub struct Remote {
    pub url: String,
    pub token: Option<String>,
    /// PEM; without it, the platform's roots are trusted.
    pub ca_file: Option<PathBuf>,
}

pub struct ApiClient {
    base: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client without a token, trusting the platform's roots.
    pub fn new(base: &str) -> Result<Self, ControllerError> {
        Self::connect(&Remote { url: base.to_string(), ..Remote::default() })
    }

    /// A client for a controller: its token on every request, and (with a CA file) only that CA trusted.
    pub fn connect(remote: &Remote) -> Result<Self, ControllerError> {
        let base = remote.url.trim_end_matches('/').to_string();
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        if let Some(ca) = &remote.ca_file {
            let pem = std::fs::read(ca).map_err(crate::error::io_err("read the CA file", ca))?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).ok().filter(|c| !c.is_empty()).ok_or_else(|| {
                    ControllerError::Tls {
                        detail: format!(
                            "{} holds no PEM certificate (give the controller's CA with --ca-file)",
                            ca.display()
                        ),
                    }
                })?;
            builder = builder.tls_certs_only(certs);
        }
        if let Some(token) = &remote.token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .map_err(|_| ControllerError::BadRequest("the token holds characters no token has".into()))?;
            value.set_sensitive(true);
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(reqwest::header::AUTHORIZATION, value);
            builder = builder.default_headers(headers);
        }
        let http =
            builder.build().map_err(|e| ControllerError::Unreachable { url: base.clone(), detail: e.to_string() })?;
        Ok(ApiClient { base, http })
    }

    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, ControllerError> {
        self.send(self.http.get(self.url("/api/v1/tokens"))).await
    }

    pub async fn create_token(&self, req: &TokenRequest) -> Result<NewToken, ControllerError> {
        self.post(&self.url("/api/v1/tokens"), req).await
    }

    pub async fn revoke_token(&self, name: &str) -> Result<TokenInfo, ControllerError> {
        self.send(self.http.delete(self.url(&format!("/api/v1/tokens/{name}")))).await
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn devices(&self) -> Result<Vec<Device>, ControllerError> {
        self.send(self.http.get(self.url("/api/v1/devices"))).await
    }

    /// The devices matching every word of `filter` (all of them for an empty one).
    pub async fn devices_matching(&self, filter: &str) -> Result<Vec<Device>, ControllerError> {
        self.send(self.http.get(self.url("/api/v1/devices")).query(&[("filter", filter)])).await
    }

    /// One device and its jobs in every rollout.
    pub async fn device(&self, id: &str) -> Result<crate::api::DeviceDetail, ControllerError> {
        self.send(self.http.get(self.url(&format!("/api/v1/devices/{id}")))).await
    }

    pub async fn images(&self) -> Result<Vec<Image>, ControllerError> {
        self.send(self.http.get(self.url("/api/v1/images"))).await
    }

    pub async fn rollouts(&self) -> Result<Vec<RolloutSummary>, ControllerError> {
        self.send(self.http.get(self.url("/api/v1/rollouts"))).await
    }

    /// A rollout's status with every device's job, fetched a page at a time, and its reasons grouped.
    pub async fn rollout(&self, id: &str) -> Result<RolloutStatus, ControllerError> {
        let page = |after: Option<u32>| {
            let after = after.map_or(String::new(), |a| format!("&after={a}"));
            self.url(&format!("/api/v1/rollouts/{id}?limit={}{after}", crate::api::JOBS_PAGE_MAX))
        };
        let first = self.url(&format!("/api/v1/rollouts/{id}?limit={}&reasons=true", crate::api::JOBS_PAGE_MAX));
        let mut status: RolloutStatus = self.send(self.http.get(first)).await?;
        while let Some(after) = status.next.take() {
            let more: RolloutStatus = self.send(self.http.get(page(Some(after)))).await?;
            status.jobs.extend(more.jobs);
            status.next = more.next;
        }
        Ok(status)
    }

    /// A rollout's status without its jobs: what a poll needs.
    pub async fn rollout_counts(&self, id: &str) -> Result<RolloutStatus, ControllerError> {
        self.send(self.http.get(self.url(&format!("/api/v1/rollouts/{id}?jobs=false")))).await
    }

    pub async fn plan(&self, req: &RolloutRequest) -> Result<Plan, ControllerError> {
        self.post(&self.url("/api/v1/rollouts/plan"), req).await
    }

    pub async fn create_rollout(&self, req: &RolloutRequest) -> Result<Rollout, ControllerError> {
        self.post(&self.url("/api/v1/rollouts"), req).await
    }

    pub async fn operate(&self, id: &str, action: Action, req: &ActionRequest) -> Result<Rollout, ControllerError> {
        self.post(&self.url(&format!("/api/v1/rollouts/{id}/{}", action.as_str())), req).await
    }

    pub async fn stop(&self, req: &StopRequest) -> Result<StopResponse, ControllerError> {
        self.post(&self.url("/api/v1/stop"), req).await
    }

    pub async fn audit(&self, rollout: Option<&str>) -> Result<Vec<AuditEntry>, ControllerError> {
        let mut req = self.http.get(self.url("/api/v1/audit"));
        if let Some(r) = rollout {
            req = req.query(&[("rollout", r)]);
        }
        self.send(req).await
    }

    /// The newest webhook deliveries.
    pub async fn webhook_deliveries(&self, limit: usize) -> Result<Vec<crate::webhooks::Delivery>, ControllerError> {
        self.send(self.http.get(self.url("/api/v1/webhooks/deliveries")).query(&[("limit", limit)])).await
    }

    /// Uploads a bind file, streaming it.
    /// Uploads a bind file, streaming it; `sent` hears of every chunk's size as it goes.
    pub async fn add_image(
        &self,
        path: &Path,
        sent: impl Fn(u64) + Send + Sync + 'static,
    ) -> Result<Image, ControllerError> {
        use tokio::io::AsyncReadExt;
        let file = tokio::fs::File::open(path).await.map_err(crate::error::io_err("open", path))?;
        let size = file.metadata().await.map_err(crate::error::io_err("read the size of", path))?.len();
        let chunks = futures_util::stream::unfold((file, sent), |(mut file, sent)| async move {
            let mut buf = vec![0u8; 256 * 1024];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    sent(n as u64);
                    Some((Ok::<_, std::io::Error>(buf), (file, sent)))
                }
                Err(e) => Some((Err(e), (file, sent))),
            }
        });
        // The declared length lets the controller refuse an upload over its limit before it is sent.
        let req = self
            .http
            .post(self.url("/api/v1/images"))
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(chunks));
        self.send(req).await
    }

    /// Downloads a backup of the controller into the new file `into` (owner-only: it holds the controller's
    /// keys). Returns its size. A download that breaks off is an error; the caller removes what was written.
    pub async fn backup(&self, into: &Path, without_images: bool) -> Result<u64, ControllerError> {
        use tokio::io::AsyncWriteExt;
        let query = crate::api::BackupQuery { without_images };
        let resp = self.http.get(self.url("/api/v1/backup")).query(&query).send().await;
        let mut resp = resp.map_err(|e| self.unreachable(&e))?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await.unwrap_or_default();
            let message = serde_json::from_slice::<ApiError>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_string());
            return Err(ControllerError::Api { status, message });
        }
        let mut opts = tokio::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        opts.mode(0o600);
        let mut file = opts.open(into).await.map_err(crate::error::io_err("create", into))?;
        let mut written = 0u64;
        loop {
            let chunk = resp.chunk().await.map_err(|e| ControllerError::Unreachable {
                url: self.base.clone(),
                detail: format!("the backup's download broke off after {written} bytes ({e}); take it again"),
            })?;
            let Some(chunk) = chunk else { break };
            file.write_all(&chunk).await.map_err(crate::error::io_err("write", into))?;
            written += chunk.len() as u64;
        }
        file.sync_all().await.map_err(crate::error::io_err("sync", into))?;
        Ok(written)
    }

    /// Uploads a bind held in memory.
    pub async fn add_image_bytes(&self, bytes: Vec<u8>) -> Result<Image, ControllerError> {
        self.send(self.http.post(self.url("/api/v1/images")).body(bytes)).await
    }

    /// What a failed request means: an untrusted certificate, or no controller at all.
    fn unreachable(&self, e: &reqwest::Error) -> ControllerError {
        let mut causes = Vec::new();
        let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
        while let Some(cause) = source {
            causes.push(cause.to_string());
            source = cause.source();
        }
        if let Some(tls) = causes.iter().find(|c| c.contains("certificate")) {
            return ControllerError::Tls {
                detail: format!(
                    "the controller at {} is not trusted ({tls}): give the CA that signed its certificate with \
                     --ca-file or BINDWAVE_CA_FILE (a controller's development CA is tls/ca.pem in its data directory)",
                    self.base
                ),
            };
        }
        let mut detail = if e.is_connect() {
            causes.last().map_or_else(|| "connection refused".to_string(), |c| format!("cannot connect ({c})"))
        } else {
            causes.last().cloned().unwrap_or_else(|| e.to_string())
        };
        let refused = causes.iter().any(|c| c.contains("os error 111"));
        if !refused && self.base.starts_with("http://") {
            detail.push_str("; a controller not in lab mode speaks HTTPS: use --controller https://...");
        } else if !refused && causes.iter().any(|c| c.contains("corrupt message") || c.contains("InvalidContentType")) {
            detail.push_str("; a controller in lab mode speaks plain HTTP: use --controller http://...");
        }
        ControllerError::Unreachable { url: self.base.clone(), detail }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post<B: Serialize, T: DeserializeOwned>(&self, url: &str, body: &B) -> Result<T, ControllerError> {
        self.send(self.http.post(url).json(body)).await
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T, ControllerError> {
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ControllerError::Unreachable { url: self.base.clone(), detail: e.to_string() })?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ApiError>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_string());
            return Err(ControllerError::Api { status: status.as_u16(), message });
        }
        serde_json::from_slice(&bytes).map_err(|e| ControllerError::Api {
            status: status.as_u16(),
            message: format!("unexpected response (is {} a bindwave controller?): {e}", self.base),
        })
    }
}
