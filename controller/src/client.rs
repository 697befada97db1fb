//! The CLI's client of the controller's HTTP API.

use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::{ActionRequest, ApiError, RolloutRequest, RolloutStatus, RolloutSummary, StopRequest, StopResponse};
use crate::engine::plan::Plan;
use crate::engine::Action;
use crate::model::{AuditEntry, Device, Image, Rollout};
use crate::ControllerError;

pub struct ApiClient {
    base: String,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(base: &str) -> Result<Self, ControllerError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ControllerError::Unreachable { url: base.to_string(), detail: e.to_string() })?;
        Ok(ApiClient { base: base.trim_end_matches('/').to_string(), http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn devices(&self) -> Result<Vec<Device>, ControllerError> {
        self.send(self.http.get(self.url("/api/v1/devices"))).await
    }

    pub async fn images(&self) -> Result<Vec<Image>, ControllerError> {
        self.send(self.http.get(self.url("/api/v1/images"))).await
    }

    pub async fn rollouts(&self) -> Result<Vec<RolloutSummary>, ControllerError> {
        self.send(self.http.get(self.url("/api/v1/rollouts"))).await
    }

    pub async fn rollout(&self, id: &str) -> Result<RolloutStatus, ControllerError> {
        self.send(self.http.get(self.url(&format!("/api/v1/rollouts/{id}")))).await
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

    /// Uploads a bind file, streaming it.
    /// Uploads a bind file, streaming it; `sent` hears of every chunk's size as it goes.
    pub async fn add_image(
        &self,
        path: &Path,
        sent: impl Fn(u64) + Send + Sync + 'static,
    ) -> Result<Image, ControllerError> {
        use tokio::io::AsyncReadExt;
        let file = tokio::fs::File::open(path).await.map_err(crate::error::io_err("open", path))?;
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
        self.send(self.http.post(self.url("/api/v1/images")).body(reqwest::Body::wrap_stream(chunks))).await
    }

    /// Uploads a bind held in memory.
    pub async fn add_image_bytes(&self, bytes: Vec<u8>) -> Result<Image, ControllerError> {
        self.send(self.http.post(self.url("/api/v1/images")).body(bytes)).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post<B: Serialize, T: DeserializeOwned>(&self, url: &str, body: &B) -> Result<T, ControllerError> {
        self.send(self.http.post(url).json(body)).await
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T, ControllerError> {
        let resp = req.send().await.map_err(|e| ControllerError::Unreachable {
            url: self.base.clone(),
            detail: if e.is_connect() { "connection refused".into() } else { e.to_string() },
        })?;
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
