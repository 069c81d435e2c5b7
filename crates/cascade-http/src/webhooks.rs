//! Provider webhooks: `POST /webhooks/{connection_id}` (and `GET` for WhatsApp's handshake).
//!
//! The connection's adapter verifies the signature over the exact bytes and the URL the
//! provider called (the public URL plus the path and query), then parses. Statuses and inbound
//! messages go to the engine; duplicates are harmless there. A bad signature is a 401 and
//! changes nothing; a malformed body a 400 (so is JSON nested deeper than
//! [`MAX_JSON_DEPTH`](crate::limits::MAX_JSON_DEPTH), refused before the adapter reads it).
//!
//! There is no rate limit here: a provider retries a `429` or a `5xx` later, so refusing its
//! webhooks would only defer the work and add the retries to it. Each webhook costs a bounded
//! amount (the body limit, one signature check, a store lookup per status), and a flood of
//! them is answered one by one.

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use cascade_channel_kit::webhook::{Intake, WebhookError, WebhookEvent, WebhookRequest};
use cascade_engine::{ConnectionId, StatusMatch};
use serde_json::json;

use crate::App;
use crate::problem::{Problem, ProblemKind};

/// Signature errors (and a connection with no secret to check one with) are 401s; the rest 400s.
fn problem(e: &WebhookError) -> Problem {
    let auth = e.is_auth() || matches!(e, WebhookError::NotConfigured(_));
    Problem::new(if auth { ProblemKind::BadSignature } else { ProblemKind::MalformedBody }, e.to_string())
}

impl App {
    /// The webhook intake of a connection, or a 404.
    fn intake(&self, connection: &str) -> Result<(ConnectionId, Arc<dyn Intake>), Problem> {
        let id = ConnectionId::from(connection);
        let intake = self.inner().intakes.get(&id).cloned();
        intake
            .map(|i| (id, i))
            .ok_or_else(|| Problem::not_found(format!("no connection {connection:?} takes webhooks here")))
    }

    /// The URL a provider called, as it saw it: the public URL's origin and path prefix, then
    /// the request's path and query.
    fn called_url(&self, uri: &axum::http::Uri) -> String {
        let base = self.inner().public_url.as_str().trim_end_matches('/');
        let pq = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
        format!("{base}{pq}")
    }
}

/// `POST /webhooks/{connection}`, in a `cascade.webhook` span with the `connection`.
#[tracing::instrument(name = "cascade.webhook", skip_all, fields(connection = %connection))]
pub async fn receive(
    State(app): State<App>,
    Path(connection): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Problem> {
    let (id, intake) = app.intake(&connection)?;
    let body = body.map_err(crate::api::body_problem)?;
    if let Err(p) = crate::limits::check_json_depth(&body) {
        app.inner().metrics.webhook(&connection, "malformed");
        return Err(p);
    }
    let url = app.called_url(&uri);
    let request = WebhookRequest::post(&url, &headers, &body);
    let events = match intake.receive(&request) {
        Ok(events) => events,
        Err(e) => {
            tracing::warn!(error = %e, "webhook refused");
            app.inner().metrics.webhook(&connection, if e.is_auth() { "bad_signature" } else { "malformed" });
            return Err(problem(&e));
        }
    };
    let (mut matched, mut unmatched, mut inbound) = (0u32, 0u32, 0u32);
    for event in events {
        match event {
            WebhookEvent::Status(update) => match app.inner().engine.status(intake.adapter(), update).await? {
                StatusMatch::Matched { cascade, attempt } => {
                    tracing::debug!(cascade = %cascade, attempt, "status recorded");
                    matched += 1;
                }
                StatusMatch::Unmatched => unmatched += 1,
            },
            WebhookEvent::Inbound(message) => {
                let stopped = app.inner().engine.inbound(&id, message).await?;
                for cascade in stopped {
                    tracing::info!(cascade = %cascade, "reply stopped the cascade");
                }
                inbound += 1;
            }
        }
    }
    app.inner().metrics.webhook(&connection, "ok");
    Ok((StatusCode::OK, axum::Json(json!({"statuses": matched, "unmatched": unmatched, "inbound": inbound})))
        .into_response())
}

/// `GET /webhooks/{connection}`: the verification handshake of providers that have one.
pub async fn handshake(
    State(app): State<App>,
    Path(connection): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let (_, intake) = app.intake(&connection)?;
    let url = app.called_url(&uri);
    let request = WebhookRequest { method: "GET", url: &url, headers: &headers, body: &[] };
    match intake.handshake(&request) {
        Some(Ok(answer)) => Ok((StatusCode::OK, answer).into_response()),
        Some(Err(e)) => {
            tracing::warn!(connection = %connection, error = %e, "webhook handshake refused");
            Err(Problem::new(ProblemKind::Forbidden, e.to_string()))
        }
        None => Err(Problem::not_found(format!("connection {connection:?} has no verification handshake"))),
    }
}
