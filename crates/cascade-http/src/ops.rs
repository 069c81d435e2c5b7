//! Operations endpoints: `/healthz` (the process answers), `/readyz` (the store answers, so
//! its migrations were applied when it opened), `/metrics` (Prometheus).

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::App;
use crate::problem::{Problem, ProblemKind};

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

/// A known path with a method it does not take: a 405 problem (axum keeps the `Allow` header).
pub async fn method_not_allowed(method: Method, uri: Uri) -> Problem {
    Problem::new(ProblemKind::MethodNotAllowed, format!("{} does not take {method}", uri.path()))
}

/// Middleware for every route: a path that is not UTF-8 once percent-decoded (`/v1/cascades/%FF`)
/// names nothing here, and is a 404 problem before a route's path extractor answers it in
/// plain text.
pub async fn decodable_path(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if percent_encoding::percent_decode_str(path).decode_utf8().is_err() {
        return Problem::not_found(format!("nothing is at {path}: it is not UTF-8 once percent-decoded"))
            .into_response();
    }
    next.run(request).await
}
