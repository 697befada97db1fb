//! The web console: a page and its scripts and styles, embedded in the binary (`controller/console/`), served at
//! `/` and `/console/{file}`. No build step and nothing to install: plain HTML, CSS and JavaScript modules.
//! The page holds no data and no logic the API lacks: it reads and acts through the same HTTP API as the CLI,
//! with the operator's token, and the roles decide as they do there.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Every file of the console: its name under `/console/`, its type, its text.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", "text/javascript; charset=utf-8", include_str!("../../console/app.js")),
    ("api.js", "text/javascript; charset=utf-8", include_str!("../../console/api.js")),
    ("dom.js", "text/javascript; charset=utf-8", include_str!("../../console/dom.js")),
    ("views.js", "text/javascript; charset=utf-8", include_str!("../../console/views.js")),
    ("rollout.js", "text/javascript; charset=utf-8", include_str!("../../console/rollout.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("../../console/style.css")),
];

const INDEX: &str = include_str!("../../console/index.html");

/// The page loads only its own files and talks only to this controller; no other site may frame it.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn serve(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // Small, and changed with every release: asked again each time, answered from the binary.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The web console's page: the fleet, rollouts live in their waves, images, and the operator's actions.
#[utoipa::path(
    get,
    path = "/",
    tag = "console",
    responses((status = 200, description = "The console's page", content_type = "text/html", body = String))
)]
pub async fn index() -> Response {
    serve("text/html; charset=utf-8", INDEX)
}

/// One of the console's scripts or styles.
#[utoipa::path(
    get,
    path = "/console/{file}",
    tag = "console",
    params(("file" = String, Path, description = "The file's name")),
    responses(
        (status = 200, description = "The file", content_type = "text/javascript", body = String),
        (status = 404, description = "The console has no such file")
    )
)]
pub async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, ..)| *name == file) {
        Some((_, content_type, body)) => serve(content_type, body),
        None => (StatusCode::NOT_FOUND, "the console has no such file\n").into_response(),
    }
}
