//! The HTTP API (JSON under `/api/v1`), bind downloads for agents (`/binds/{sha256}.bind`, with Range
//! requests), `/metrics` and `/healthz`.
//!
//! The request and response types here are the API's wire: the CLI ([`crate::client`]) uses the same ones.
//!
//! Every request but `/healthz` and the bind downloads needs a bearer token whose role allows it
//! ([`crate::tokens::required`]); the audit log's actor is that token's name. In lab mode (`insecure_lab`)
//! no token is asked for, and the actor is whatever the client says.

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use bindwave_proto::verify::{Expected, Verifier};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tower::ServiceExt;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::clock::now_millis;
use crate::engine::gates::GateReading;
use crate::engine::plan::Plan;
use crate::engine::{Action, EngineError, Input, Refused, Reply};
use crate::handle::Core;
use crate::model::{
    AuditEntry, Counts, Device, Image, ImageId, Job, Millis, ReasonGroup, Rollout, RolloutId, RolloutSpec, Wave,
};
use crate::token_store::TokenStore;
use crate::tokens::{Access, Role, TokenInfo};
use crate::ControllerError;

mod console;
mod events;
mod openapi;

/// A rollout to plan or create, and who asks. `actor` counts only in lab mode: with tokens, the actor is the
/// token's name.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RolloutRequest {
    pub spec: RolloutSpec,
    #[serde(default)]
    pub actor: String,
}

/// An operator action's why, for the audit log (and who, in lab mode only).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ActionRequest {
    #[serde(default)]
    pub actor: String,
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StopRequest {
    #[serde(default)]
    pub actor: String,
    #[serde(default)]
    pub reason: String,
    /// Abort instead of pause.
    #[serde(default)]
    pub abort: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StopResponse {
    pub stopped: Vec<RolloutId>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WaveStatus {
    /// 1-based, as operators count.
    pub number: usize,
    #[serde(flatten)]
    pub wave: Wave,
    pub counts: Counts,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RolloutStatus {
    pub rollout: Rollout,
    pub image: Option<Image>,
    pub counts: Counts,
    pub waves: Vec<WaveStatus>,
    /// A page of the devices' jobs, in plan order (`?limit=`, at most [`JOBS_PAGE_MAX`], default
    /// [`JOBS_PAGE`], after the plan order `?after=`); empty when asked for without them (`?jobs=false`).
    #[serde(default)]
    pub jobs: Vec<Job>,
    /// The `after` of the next page of jobs; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u32>,
    /// The gates of the wave in progress (or the last), each observed beside its threshold, as the engine
    /// decides on them.
    #[serde(default)]
    pub gates: Vec<GateReading>,
    /// The analysis gates of the wave being measured: measurements so far, failures beside what is tolerated,
    /// the last value.
    #[serde(default)]
    pub analyses: Vec<crate::engine::analysis::AnalysisReading>,
    /// Rejections, failures and time-outs grouped by reason, the largest group first (with `?reasons=true`).
    #[serde(default)]
    pub reasons: Vec<ReasonGroup>,
    /// The controller's time when it answered: a soak's end (`until`) is this far away.
    #[serde(default)]
    pub now: Millis,
    /// Where the rollout stands, in words (its state, wave and cause).
    #[serde(default)]
    pub summary: String,
}

/// Jobs in a page of a rollout's status, unless asked for another number.
pub const JOBS_PAGE: usize = 1_000;
/// The most jobs one page holds: one answer is copied in the core task, and held whole in memory.
pub const JOBS_PAGE_MAX: usize = 10_000;

impl RolloutStatus {
    /// Devices without an outcome yet.
    pub fn open(&self) -> usize {
        crate::model::open_in(&self.counts)
    }

    /// Devices in the rollout, from its counts (so also without its jobs).
    pub fn devices(&self) -> usize {
        self.counts.values().sum()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RolloutSummary {
    pub rollout: Rollout,
    pub counts: Counts,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiError {
    pub error: String,
}

/// A token to make: `POST /api/v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    pub name: String,
    pub role: Role,
}

/// A new token, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewToken {
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

/// How the API lets requests in.
#[derive(Clone)]
pub struct ApiOptions {
    pub tokens: TokenStore,
    /// Lab mode: no token is asked for.
    pub insecure_lab: bool,
    /// The largest image upload, in bytes.
    pub max_upload_size: u64,
    /// The webhook deliveries' log.
    pub deliveries: crate::webhooks::Deliveries,
}

/// Who sent a request: a token's name and role, or, in lab mode, nobody in particular.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `None` in lab mode.
    pub name: Option<String>,
    pub role: Role,
}

impl Caller {
    /// The audit log's actor: the token's name; in lab mode, what the client says.
    pub fn actor(&self, claimed: &str) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None if claimed.trim().is_empty() => "insecure-lab".to_string(),
            None => claimed.to_string(),
        }
    }
}

/// Where to get a token, for the 401's message.
const TOKEN_HINT: &str = "give one with --token, BINDWAVE_TOKEN, --token-file or BINDWAVE_TOKEN_FILE; the \
    controller wrote the first admin token to admin.token in its data directory, and `bindwave token create` \
    makes more";

impl IntoResponse for ControllerError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(ApiError { error: crate::error::chain(&self) })).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ControllerError>;

/// The API's routes, each with its OpenAPI operation (`#[utoipa::path]` on its handler): the router and the
/// description are made from the same list, so neither has a route the other lacks.
fn routes() -> OpenApiRouter<Core> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(healthz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
        .routes(routes!(console::index))
        .routes(routes!(console::asset))
        .routes(routes!(events::events))
        .routes(routes!(whoami))
        .routes(routes!(list_devices))
        .routes(routes!(fleet_summary))
        .routes(routes!(device_detail))
        .routes(routes!(list_images, add_image).layer(DefaultBodyLimit::disable()))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(list_rollouts, create_rollout))
        .routes(routes!(plan_rollout))
        .routes(routes!(rollout_status))
        .routes(routes!(operate))
        .routes(routes!(emergency_stop))
        .routes(routes!(audit))
        .routes(routes!(webhook_deliveries))
        .routes(routes!(backup))
        .routes(routes!(download_bind))
}

/// The API's OpenAPI description, as `/api/v1/openapi.json` serves it.
pub fn description() -> serde_json::Value {
    let (_, doc) = routes().split_for_parts();
    openapi::finish(doc)
}

pub fn router(core: Core, options: ApiOptions) -> Router {
    let options = std::sync::Arc::new(options);
    let (router, doc) = routes().split_for_parts();
    let doc = openapi::Served::new(&openapi::finish(doc));
    router
        .fallback(|| async { (StatusCode::NOT_FOUND, Json(ApiError { error: "no such endpoint".into() })) })
        .layer(axum::Extension(doc))
        .layer(axum::middleware::from_fn_with_state(options, authenticate))
        .layer(axum::middleware::from_fn_with_state(core.clone(), measure))
        .with_state(core)
}

/// Says the controller is up (for load balancers and service managers).
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "`ok`", content_type = "text/plain", body = String))
)]
async fn healthz() -> &'static str {
    "ok\n"
}

/// This description of the API, OpenAPI 3.1.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI description", content_type = "application/json"))
)]
async fn openapi_json(axum::Extension(doc): axum::Extension<openapi::Served>) -> Response {
    doc.response()
}

/// Counts and times every request by its route pattern (`/api/v1/rollouts/{id}`), never by its path, so the
/// label values stay bounded.
async fn measure(
    State(core): State<Core>,
    matched: Option<axum::extract::MatchedPath>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let route = matched.as_ref().map_or("unmatched", |m| m.as_str()).to_string();
    let method = match req.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => m.to_string(),
        _ => "other".to_string(),
    };
    let timer = core.metrics.http_seconds.with_label_values(&[&route]).start_timer();
    let response = next.run(req).await;
    timer.observe_duration();
    core.metrics.http_requests.with_label_values(&[&route, &method, response.status().as_str()]).inc();
    response
}

/// Lets a request in if the route is public, or its bearer token's role allows it; hands the handlers the
/// [`Caller`] and the [`ApiOptions`].
async fn authenticate(
    State(options): State<std::sync::Arc<ApiOptions>>,
    matched: Option<axum::extract::MatchedPath>,
    mut req: Request,
    next: axum::middleware::Next,
) -> Response {
    let access = crate::tokens::required(req.method().as_str(), matched.as_ref().map(|m| m.as_str()));
    if access == Access::Unlisted {
        let route = matched.as_ref().map_or("", |m| m.as_str());
        tracing::error!(route, "a route without an entry in the access table (tokens::ROUTES) was called");
        let why = format!("{route} has no entry in the controller's access table: this is a bug in bindwave");
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(ApiError { error: why })).into_response();
    }
    req.extensions_mut().insert(options.clone());
    if options.insecure_lab {
        req.extensions_mut().insert(Caller { name: None, role: Role::Admin });
        return next.run(req).await;
    }
    let Access::Needs(needed) = access else { return next.run(req).await };
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let refusal = match bearer.map(|token| options.tokens.find(token)) {
        Some(Ok(Some(record))) if record.role.allows(needed) => {
            req.extensions_mut().insert(Caller { name: Some(record.name), role: record.role });
            return next.run(req).await;
        }
        None => unauthorized(format!("this request needs a token (role {needed} or more): {TOKEN_HINT}")),
        Some(Ok(Some(record))) => ControllerError::Forbidden(format!(
            "the token {:?} has the role {}; this request needs the role {needed} (an admin can make you one: \
             `bindwave token create --name NAME --role {needed}`)",
            record.name, record.role
        ))
        .into_response(),
        Some(Ok(None)) => unauthorized(format!("the token is not valid (revoked, or mistyped): {TOKEN_HINT}")),
        Some(Err(e)) => e.into_response(),
    };
    drain(req.into_body()).await;
    refusal
}

/// Reads and drops what a refused request is still sending, up to [`DRAIN_BYTES`] and [`DRAIN_TIME`], so the
/// client reads the refusal: a server that closes on unread bytes resets the connection, and the client may
/// lose the answer.
async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    let mut read = 0usize;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len();
            if read > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

const DRAIN_BYTES: usize = 1 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

fn unauthorized(message: String) -> Response {
    let mut resp = ControllerError::Unauthorized(message).into_response();
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    resp
}

/// `?limit=` of [`webhook_deliveries`].
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DeliveriesQuery {
    /// How many, newest first (default 100, at most 10,000).
    limit: Option<usize>,
}

/// The newest webhook deliveries (100, or `?limit=` up to the 10,000 kept), newest first.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/deliveries",
    tag = "webhooks",
    params(DeliveriesQuery),
    responses((status = 200, description = "Deliveries, newest first", body = Vec<crate::webhooks::Delivery>))
)]
async fn webhook_deliveries(
    axum::Extension(options): axum::Extension<std::sync::Arc<ApiOptions>>,
    Query(q): Query<DeliveriesQuery>,
) -> ApiResult<Vec<crate::webhooks::Delivery>> {
    let limit = q.limit.unwrap_or(100).min(crate::webhooks::queue::KEEP);
    Ok(Json(options.deliveries.recent(limit)))
}

/// The API tokens: names, roles and when each was made (never a token itself).
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "tokens",
    responses((status = 200, description = "Every token", body = Vec<TokenInfo>))
)]
async fn list_tokens(
    axum::Extension(options): axum::Extension<std::sync::Arc<ApiOptions>>,
) -> ApiResult<Vec<TokenInfo>> {
    Ok(Json(options.tokens.list()?.iter().map(TokenInfo::from).collect()))
}

/// Makes a token with a name and a role. The token is in this answer only: the controller keeps its hash.
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "tokens",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "The new token, shown this once", body = NewToken),
        (status = 400, description = "The request is not valid: the error says what to change", body = ApiError),
        (status = 409, description = "A token has that name", body = ApiError)
    )
)]
async fn create_token(
    axum::Extension(options): axum::Extension<std::sync::Arc<ApiOptions>>,
    axum::Extension(caller): axum::Extension<Caller>,
    Json(req): Json<TokenRequest>,
) -> ApiResult<NewToken> {
    let (token, info) = options.tokens.create(&req.name, req.role).await?;
    tracing::info!(by = caller.actor(""), name = %info.name, role = info.role.as_str(), "token created");
    Ok(Json(NewToken { token, info }))
}

/// Revokes a token by its name: requests with it are refused from now on.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{name}",
    tag = "tokens",
    params(("name" = String, Path, description = "The token's name")),
    responses(
        (status = 200, description = "The token revoked", body = TokenInfo),
        (status = 404, description = "No token has that name", body = ApiError)
    )
)]
async fn revoke_token(
    axum::Extension(options): axum::Extension<std::sync::Arc<ApiOptions>>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<TokenInfo> {
    let info = options.tokens.revoke(&name).await?;
    tracing::info!(by = caller.actor(""), name = %info.name, "token revoked");
    Ok(Json(info))
}

/// Prometheus metrics: the fleet, the rollouts, the link, the store and the HTTP API.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "The Prometheus text format", content_type = "text/plain", body = String))
)]
async fn metrics(State(core): State<Core>) -> Result<Response, ControllerError> {
    let m = core.metrics.clone();
    let text = core
        .query(move |engine| {
            m.observe(engine);
            m.render()
        })
        .await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// Who the token is: its name and role (what the console shows and offers).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WhoAmI {
    /// The token's name; absent in lab mode, where no token is asked for.
    pub name: Option<String>,
    pub role: Role,
    /// The controller runs in lab mode (`--insecure-lab`).
    pub insecure_lab: bool,
}

/// The caller's token: its name and role.
#[utoipa::path(
    get,
    path = "/api/v1/whoami",
    tag = "tokens",
    responses((status = 200, description = "The token's name and role", body = WhoAmI))
)]
async fn whoami(
    axum::Extension(options): axum::Extension<std::sync::Arc<ApiOptions>>,
    axum::Extension(caller): axum::Extension<Caller>,
) -> ApiResult<WhoAmI> {
    Ok(Json(WhoAmI { name: caller.name, role: caller.role, insecure_lab: options.insecure_lab }))
}

/// One device and its part in every rollout.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeviceDetail {
    pub device: Device,
    /// Its jobs, one per rollout it belongs to, oldest rollout first: phases, outcomes and reasons.
    pub jobs: Vec<DeviceJob>,
}

/// A device's job, with its reason in words.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeviceJob {
    #[serde(flatten)]
    pub job: Job,
    /// The phase's reason in words, with its values (`hardware level 2 is not among ...`); absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_text: Option<String>,
}

impl From<Job> for DeviceJob {
    fn from(job: Job) -> DeviceJob {
        let reason_text = job.phase.reason().map(ToString::to_string);
        DeviceJob { job, reason_text }
    }
}

/// One device: what it last said in its hello, whether it is online, and its jobs in every rollout.
#[utoipa::path(
    get,
    path = "/api/v1/devices/{id}",
    tag = "devices",
    params(("id" = String, Path, description = "The device's id")),
    responses(
        (status = 200, description = "The device and its jobs", body = DeviceDetail),
        (status = 404, description = "No device has that id", body = ApiError)
    )
)]
async fn device_detail(State(core): State<Core>, Path(id): Path<String>) -> ApiResult<DeviceDetail> {
    let unknown = || ControllerError::from(EngineError::UnknownDevice(id.clone()));
    let device = bindwave_proto::wire::DeviceId::new(id.as_str()).map_err(|_| unknown())?;
    let detail = core
        .query(move |e| {
            let jobs = e.device_jobs(&device).into_iter().map(DeviceJob::from).collect();
            e.device(&device).cloned().map(|d| DeviceDetail { jobs, device: d })
        })
        .await?;
    Ok(Json(detail.ok_or_else(unknown)?))
}

/// `GET /api/v1/devices`'s query: a filter and a page, all optional.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DevicesQuery {
    /// Words every device shown must match, each a part of its id, model, part number, hardware level,
    /// software version, a label, or `online`/`offline` (case-insensitive).
    #[serde(default)]
    filter: String,
    /// At most this many devices, in id order (all without it).
    limit: Option<usize>,
    /// The page starts after this device id (the last of the page before).
    after: Option<String>,
}

/// The inventory: the devices that said hello (or a filter's match, a page of them), with what each said and
/// whether it is online, in id order.
#[utoipa::path(
    get,
    path = "/api/v1/devices",
    tag = "devices",
    params(DevicesQuery),
    responses((status = 200, description = "The devices, in id order", body = Vec<Device>))
)]
async fn list_devices(State(core): State<Core>, Query(q): Query<DevicesQuery>) -> ApiResult<Vec<Device>> {
    let devices = core.query(move |e| {
        let after = q.after.as_deref();
        e.devices()
            .filter(|d| after.is_none_or(|a| d.id.as_str() > a))
            .filter(|d| crate::model::matches_words(d, &q.filter))
            .take(q.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    });
    Ok(Json(devices.await?))
}

/// `GET /api/v1/fleet/summary`'s query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SummaryQuery {
    /// Words as `GET /api/v1/devices` takes them: `matching` counts the devices they match.
    #[serde(default)]
    filter: String,
}

/// The inventory counted: devices, online, and by model, hardware level and software version; and how many a
/// filter matches.
#[utoipa::path(
    get,
    path = "/api/v1/fleet/summary",
    tag = "devices",
    params(SummaryQuery),
    responses((status = 200, description = "The counts", body = crate::model::FleetSummary))
)]
async fn fleet_summary(
    State(core): State<Core>,
    Query(q): Query<SummaryQuery>,
) -> ApiResult<crate::model::FleetSummary> {
    Ok(Json(core.query(move |e| crate::model::FleetSummary::of(e.devices(), &q.filter)).await?))
}

/// The images added, with their header fields and signer.
#[utoipa::path(
    get,
    path = "/api/v1/images",
    tag = "images",
    responses((status = 200, description = "Every image", body = Vec<Image>))
)]
async fn list_images(State(core): State<Core>) -> ApiResult<Vec<Image>> {
    Ok(Json(core.query(|e| e.images().cloned().collect()).await?))
}

/// Every rollout with its counts by outcome.
#[utoipa::path(
    get,
    path = "/api/v1/rollouts",
    tag = "rollouts",
    responses((status = 200, description = "Every rollout, oldest first", body = Vec<RolloutSummary>))
)]
async fn list_rollouts(State(core): State<Core>) -> ApiResult<Vec<RolloutSummary>> {
    Ok(Json(
        core.query(|e| {
            e.rollouts().map(|r| RolloutSummary { rollout: r.clone(), counts: e.tally(&r.id).to_map() }).collect()
        })
        .await?,
    ))
}

/// A rollout id from a path or query, as the operator wrote it.
fn rollout_id(id: &str) -> Result<RolloutId, EngineError> {
    RolloutId::parse(id).ok_or_else(|| EngineError::UnknownRollout(id.to_string()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct StatusQuery {
    /// `false`: the counts without every device's job, for those who poll (`status --wait`, `watch`): a
    /// rollout over a million devices answers in microseconds instead of seconds, and the core is not held.
    #[serde(default = "with_jobs")]
    jobs: bool,
    /// Jobs in the page, 1 to [`JOBS_PAGE_MAX`].
    limit: Option<usize>,
    /// The page starts after this plan order (the `next` of the page before).
    after: Option<u32>,
    /// `true`: with the rejections and failures grouped by reason (`reasons`), which reads every commanded
    /// device's job; left out, a poll of the counts stays as cheap as it was.
    #[serde(default)]
    reasons: bool,
}

fn with_jobs() -> bool {
    true
}

/// One rollout: its state, image, counts, waves, and a page of its devices' jobs.
#[utoipa::path(
    get,
    path = "/api/v1/rollouts/{id}",
    tag = "rollouts",
    params(("id" = RolloutId, Path, description = "The rollout's id"), StatusQuery),
    responses(
        (status = 200, description = "The rollout's status", body = RolloutStatus),
        (status = 400, description = "The request is not valid: the error says what to change", body = ApiError),
        (status = 404, description = "No rollout has that id", body = ApiError)
    )
)]
async fn rollout_status(
    State(core): State<Core>,
    Path(id): Path<String>,
    Query(q): Query<StatusQuery>,
) -> ApiResult<RolloutStatus> {
    let id = rollout_id(&id)?;
    let limit = q.limit.unwrap_or(JOBS_PAGE);
    if !(1..=JOBS_PAGE_MAX).contains(&limit) {
        return Err(ControllerError::BadRequest(format!(
            "limit={limit}: a page holds 1 to {JOBS_PAGE_MAX} jobs; follow `next` for the rest"
        )));
    }
    let now = now_millis();
    let status = core
        .query(move |e| {
            let rollout = e.rollout(&id).cloned().ok_or_else(|| EngineError::UnknownRollout(id.to_string()))?;
            let image = e.image(&rollout.image).cloned();
            let waves = rollout
                .waves
                .iter()
                .zip(e.wave_tallies(&id))
                .enumerate()
                .map(|(i, (w, t))| WaveStatus { number: i + 1, wave: w.clone(), counts: t.to_map() })
                .collect();
            let (jobs, next) = match q.jobs {
                true => e.jobs_page(&id, q.after, limit),
                false => (Vec::new(), None),
            };
            let gates = e.gate_readings(&id);
            let analyses = e.analysis_readings(&id);
            let reasons = if q.reasons { e.reason_groups(&id) } else { Vec::new() };
            let counts = e.tally(&id).to_map();
            let summary = rollout.state.describe(rollout.waves.len());
            Ok::<_, EngineError>(RolloutStatus {
                counts,
                waves,
                jobs,
                next,
                rollout,
                image,
                gates,
                analyses,
                reasons,
                now,
                summary,
            })
        })
        .await??;
    Ok(Json(status))
}

/// What a rollout would do, changing nothing: its waves, the devices in each, the rejections the phones'
/// rule predicts by reason, and when each wave is expected to start and end.
#[utoipa::path(
    post,
    path = "/api/v1/rollouts/plan",
    tag = "rollouts",
    request_body = RolloutRequest,
    responses((status = 200, description = "The plan", body = Plan), (status = 400, description = "The request is not valid: the error says what to change", body = ApiError))
)]
async fn plan_rollout(State(core): State<Core>, Json(req): Json<RolloutRequest>) -> ApiResult<Plan> {
    let seed = rand::random();
    let now = crate::clock::now_millis();
    let planned = core.query(move |e| {
        e.plan(&req.spec, seed).map(|mut plan| {
            plan.timing = Some(e.forecast(&plan, req.spec.timezone.as_deref(), now));
            plan
        })
    });
    Ok(Json(planned.await??))
}

/// An override bypasses the phones' compatibility rule: it needs a reason, which the audit log keeps.
fn check_override(spec: &RolloutSpec) -> Result<(), ControllerError> {
    let reason = spec.override_reason.as_deref().map(str::trim).unwrap_or("");
    if spec.override_compat && reason.is_empty() {
        return Err(ControllerError::BadRequest(
            "an override needs a reason, for the audit log (`--override --reason \"...\"`)".into(),
        ));
    }
    Ok(())
}

/// Creates a rollout (started with `start` in its spec, else by the `start` action). An override needs a
/// reason.
#[utoipa::path(
    post,
    path = "/api/v1/rollouts",
    tag = "rollouts",
    request_body = RolloutRequest,
    responses(
        (status = 200, description = "The rollout made", body = Rollout),
        (status = 400, description = "The request is not valid: the error says what to change", body = ApiError),
        (status = 404, description = "No image has that id", body = ApiError)
    )
)]
async fn create_rollout(
    State(core): State<Core>,
    axum::Extension(caller): axum::Extension<Caller>,
    Json(req): Json<RolloutRequest>,
) -> ApiResult<Rollout> {
    check_override(&req.spec)?;
    let input =
        Input::CreateRollout { spec: Box::new(req.spec), seed: rand::random(), actor: caller.actor(&req.actor) };
    match core.act(input).await? {
        Reply::Rollout(r) => Ok(Json(r)),
        _ => Err(ControllerError::BadRequest("unexpected reply".into())),
    }
}

/// An operator's action on a rollout, audited with its reason.
#[utoipa::path(
    post,
    path = "/api/v1/rollouts/{id}/{action}",
    tag = "rollouts",
    params(
        ("id" = RolloutId, Path, description = "The rollout's id"),
        ("action" = Action, Path, description = "What to do")
    ),
    request_body = ActionRequest,
    responses(
        (status = 200, description = "The rollout after the action", body = Rollout),
        (status = 400, description = "The request is not valid: the error says what to change", body = ApiError),
        (status = 404, description = "No rollout has that id", body = ApiError),
        (status = 409, description = "The rollout's state does not allow the action (the error says which does)", body = ApiError)
    )
)]
async fn operate(
    State(core): State<Core>,
    Path((id, action)): Path<(String, String)>,
    axum::Extension(caller): axum::Extension<Caller>,
    Json(req): Json<ActionRequest>,
) -> ApiResult<Rollout> {
    let rollout = rollout_id(&id)?;
    let action: Action = action.parse()?;
    let actor = caller.actor(&req.actor);
    match core.act(Input::Operate { rollout, action, actor, reason: req.reason }).await? {
        Reply::Rollout(r) => Ok(Json(r)),
        _ => Err(ControllerError::BadRequest("unexpected reply".into())),
    }
}

/// The emergency stop: pauses (or, with `abort`, aborts) every running rollout at once.
#[utoipa::path(
    post,
    path = "/api/v1/stop",
    tag = "rollouts",
    request_body = StopRequest,
    responses((status = 200, description = "The rollouts stopped", body = StopResponse))
)]
async fn emergency_stop(
    State(core): State<Core>,
    axum::Extension(caller): axum::Extension<Caller>,
    Json(req): Json<StopRequest>,
) -> ApiResult<StopResponse> {
    let actor = caller.actor(&req.actor);
    match core.act(Input::EmergencyStop { actor, reason: req.reason, abort: req.abort }).await? {
        Reply::Stopped(stopped) => Ok(Json(StopResponse { stopped })),
        _ => Err(ControllerError::BadRequest("unexpected reply".into())),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Only this rollout's entries (`r12`).
    rollout: Option<String>,
}

/// The audit log: who did what to which rollout, when and why, and what the engine did of itself.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "rollouts",
    params(AuditQuery),
    responses((status = 200, description = "Entries, oldest first", body = Vec<AuditEntry>))
)]
async fn audit(State(core): State<Core>, Query(q): Query<AuditQuery>) -> ApiResult<Vec<AuditEntry>> {
    let entries = match q.rollout.as_deref().map(RolloutId::parse) {
        None => core.query(|e| e.audit(None).cloned().collect()).await?,
        Some(Some(id)) => core.query(move |e| e.audit(Some(&id)).cloned().collect()).await?,
        // No rollout has that id: none of the log is its.
        Some(None) => Vec::new(),
    };
    Ok(Json(entries))
}

/// `GET /api/v1/backup`'s query.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BackupQuery {
    /// Leave the images' binds out (for binds kept elsewhere, or a copy of the records alone).
    #[serde(default)]
    pub without_images: bool,
}

/// A consistent copy of the live controller, as a tar archive (see [`crate::backup`]); admin only, for it
/// holds the controller's keys.
#[utoipa::path(
    get,
    path = "/api/v1/backup",
    tag = "operations",
    params(BackupQuery),
    responses((status = 200, description = "A tar archive (`bindwave restore` reads it)", content_type = "application/x-tar", body = Vec<u8>))
)]
async fn backup(State(core): State<Core>, Query(q): Query<BackupQuery>) -> Result<Response, ControllerError> {
    let (manifest, body) = crate::backup::take(&core, !q.without_images).await?;
    tracing::info!(
        generation = manifest.generation,
        records = manifest.records.values().sum::<u64>(),
        images = if manifest.images_included { manifest.images.len() } else { 0 },
        "backup taken"
    );
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/x-tar")
        .header(header::CONTENT_DISPOSITION, "attachment; filename=\"bindwave-backup.tar\"")
        .body(body)
        .unwrap_or_else(|e| ControllerError::CoreStopped(e.to_string()).into_response()))
}

/// Takes a bind as the request body, streaming it to disk while the shared verifier checks it, and stores
/// it under its SHA-256 if the service's [`crate::images::ImagePolicy`] admits it (signed by a trusted
/// release key, and not empty).
#[utoipa::path(
    post,
    path = "/api/v1/images",
    tag = "images",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The bind file"),
    responses(
        (status = 200, description = "The image added (or already there)", body = Image),
        (status = 400, description = "Not a valid bind, or not signed by a release key the controller trusts", body = ApiError),
        (status = 413, description = "Larger than the controller's max_upload_size", body = ApiError)
    )
)]
async fn add_image(
    State(core): State<Core>,
    axum::Extension(options): axum::Extension<std::sync::Arc<ApiOptions>>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> ApiResult<Image> {
    let limit = options.max_upload_size;
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        drain(body).await;
        return Err(ControllerError::TooLarge { limit });
    }
    let dir = core.images_dir.clone();
    let tmp = dir.join(format!("{UPLOAD_PREFIX}{}-{}{UPLOAD_SUFFIX}", std::process::id(), rand::random::<u64>()));
    let result = receive(&tmp, body, limit).await;
    let verified = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            if matches!(e, ControllerError::InvalidBind(_)) {
                core.metrics.refused.with_label_values(&[Refused::ImageUpload.as_str()]).inc();
                tracing::warn!("upload refused: {}", crate::error::chain(&e));
            }
            return Err(e);
        }
    };
    let signed_by = match core.images.admit(&verified.header) {
        Ok(signed_by) => signed_by,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            core.metrics.refused.with_label_values(&[Refused::ImageUpload.as_str()]).inc();
            tracing::warn!("upload refused: {}", crate::error::chain(&e));
            return Err(e);
        }
    };
    let Some(sha256) = ImageId::parse(&verified.file_sha256) else {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(ControllerError::BadRequest(format!("{:?} is not a SHA-256", verified.file_sha256)));
    };
    let dest = dir.join(format!("{sha256}.bind"));
    tokio::fs::rename(&tmp, &dest).await.map_err(crate::error::io_err("store the image at", &dest))?;
    let h = &verified.header;
    let image = Image {
        sha256,
        size: verified.file_len,
        software_version: h.software_version.clone(),
        hardware_levels: h.hardware_levels.clone(),
        payload_sha256: h.payload_sha256_hex(),
        payload_len: h.payload_len,
        added_at: now_millis(),
        signed_by,
    };
    match core.act(Input::AddImage(image)).await? {
        Reply::Image(i) => Ok(Json(i)),
        _ => Err(ControllerError::BadRequest("unexpected reply".into())),
    }
}

/// The names of unfinished uploads in the images directory: `upload-<pid>-<random>.tmp`.
pub const UPLOAD_PREFIX: &str = "upload-";
pub const UPLOAD_SUFFIX: &str = ".tmp";

/// Removes what interrupted uploads left in the images directory (a crash mid-upload); returns how many.
pub fn remove_unfinished_uploads(images_dir: &std::path::Path) -> Result<usize, ControllerError> {
    let mut removed = 0;
    let entries = std::fs::read_dir(images_dir).map_err(crate::error::io_err("read", images_dir))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(UPLOAD_PREFIX) && name.ends_with(UPLOAD_SUFFIX) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(crate::error::io_err("remove the unfinished upload", &path))?;
            removed += 1;
        }
    }
    Ok(removed)
}

async fn receive(
    tmp: &std::path::Path,
    body: Body,
    limit: u64,
) -> Result<bindwave_proto::verify::Verified, ControllerError> {
    let mut file = tokio::fs::File::create(tmp).await.map_err(crate::error::io_err("create", tmp))?;
    let mut verifier = Verifier::new(Expected::default());
    let mut stream = body.into_data_stream();
    let mut received = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ControllerError::BadRequest(format!("upload interrupted: {e}")))?;
        received += chunk.len() as u64;
        if received > limit {
            return Err(ControllerError::TooLarge { limit });
        }
        verifier.feed(&chunk).map_err(ControllerError::InvalidBind)?;
        file.write_all(&chunk).await.map_err(crate::error::io_err("write", tmp))?;
    }
    file.sync_all().await.map_err(crate::error::io_err("sync", tmp))?;
    verifier.finish().map_err(ControllerError::InvalidBind)
}

/// Serves a stored bind; tower-http's ServeFile handles Range and conditional requests.
#[utoipa::path(
    get,
    path = "/binds/{file}",
    tag = "images",
    params(("file" = String, Path, description = "`<sha256>.bind`: the image's id and `.bind`")),
    responses(
        (status = 200, description = "The bind file", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The range asked for (`Range`, `If-Range`)", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "No such bind")
    )
)]
async fn download_bind(State(core): State<Core>, Path(file): Path<String>, req: Request) -> Response {
    let valid = file.strip_suffix(".bind").and_then(ImageId::parse).is_some();
    if !valid {
        // Only `<sha256>.bind` names a file: a `..` or any other name is refused before the disk is touched.
        core.metrics.refused.with_label_values(&[Refused::BadPath.as_str()]).inc();
        tracing::debug!(name = %file, "bind download refused: not <sha256>.bind");
        return (StatusCode::NOT_FOUND, "no such bind (a bind is fetched as <sha256>.bind)\n").into_response();
    }
    let path = core.images_dir.join(&file);
    match tower_http::services::ServeFile::new(path).oneshot(req).await {
        Ok(resp) => resp.map(Body::new),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_actor_is_the_tokens_name_and_only_lab_mode_takes_the_clients_word() {
        let token = Caller { name: Some("olga".into()), role: Role::Operator };
        assert_eq!(token.actor("mallory"), "olga");
        assert_eq!(token.actor(""), "olga");
        let lab = Caller { name: None, role: Role::Admin };
        assert_eq!(lab.actor("alice@desk"), "alice@desk");
        assert_eq!(lab.actor("  "), "insecure-lab");
    }

    #[test]
    fn an_override_needs_a_reason() {
        let spec = |v: serde_json::Value| serde_json::from_value::<RolloutSpec>(v).unwrap();
        assert!(check_override(&spec(serde_json::json!({"image": "abcdef"}))).is_ok());
        let e = check_override(&spec(serde_json::json!({"image": "abcdef", "override": true}))).unwrap_err();
        assert!(e.to_string().contains("--reason") && e.http_status() == 400, "{e}");
        let blank = serde_json::json!({"image": "abcdef", "override": true, "override_reason": " "});
        assert!(check_override(&spec(blank)).is_err());
        let given = serde_json::json!({"image": "abcdef", "override": true, "override_reason": "lab phone"});
        assert!(check_override(&spec(given)).is_ok());
    }
}
