//! Operations endpoints: `/healthz` (the process answers), `/readyz` (the store answers, so
//! its migrations were applied when it opened), `/metrics` (Prometheus).

use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::App;
use crate::problem::Problem;

/// `GET /healthz`: 200 while the process serves requests.
pub async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// `GET /readyz`: 200 when the store answers, 503 otherwise.
pub async fn readyz(State(app): State<App>) -> Response {
    match app.inner().engine.store().next_wake().await {
        Ok(_) => axum::Json(json!({"status": "ready", "store": "ok"})).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"status": "not ready", "store": e.to_string()})))
            .into_response(),
    }
}

/// `GET /metrics`: the Prometheus text format.
pub async fn metrics(State(app): State<App>) -> Response {
    let body = app.inner().metrics.render(&app.inner().engine).await;
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}

/// Any other path: a 404 problem.
pub async fn not_found(uri: Uri) -> Problem {
    Problem::not_found(format!("no endpoint at {}", uri.path()))
}
