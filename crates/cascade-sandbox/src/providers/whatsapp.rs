//! WhatsApp Cloud API: `POST /whatsapp/{version}/{phone_number_id}/messages` and `/media`.
//!
//! Bearer auth; Graph error bodies (`{"error": {"message", "type", "code", "fbtrace_id"}}`);
//! success `{"messaging_product", "contacts": [{"input", "wa_id"}], "messages": [{"id"}]}`.
//! A number not on WhatsApp (and one that blocked the business, which WhatsApp does not
//! disclose) is accepted, then fails with 131026, as the real service does. Statuses and
//! replies go to the webhook URL signed with `X-Hub-Signature-256`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};

use super::{accepted, answer, digits, tagged, unix_now};
use crate::sign;
use crate::state::{Decision, Event, Hook, State};

const CHANNEL: &str = "whatsapp";

pub fn routes() -> Router<Arc<State>> {
    Router::new()
        .route("/whatsapp/{version}/{phone_number_id}/messages", post(send))
        .route("/whatsapp/{version}/{phone_number_id}/media", post(media))
}

fn graph_error(status: StatusCode, code: i64, kind: &str, message: &str, details: Option<&str>) -> Response {
    let mut error = json!({"message": message, "type": kind, "code": code, "fbtrace_id": "ASandboxTrace0001"});
    if let Some(details) = details {
        error["error_data"] = json!({"messaging_product": "whatsapp", "details": details});
    }
    answer(status, json!({"error": error}))
}

/// Bearer auth and the phone number id, as Graph checks them.
fn check(state: &State, headers: &HeaderMap, phone_number_id: &str) -> Option<Response> {
    let account = &state.config.whatsapp;
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(account.access_token.as_str()) {
        return Some(graph_error(
            StatusCode::UNAUTHORIZED,
            190,
            "OAuthException",
            "Invalid OAuth access token - Cannot parse access token",
            None,
        ));
    }
    if phone_number_id != account.phone_number_id {
        let message = format!(
            "Unsupported post request. Object with ID '{phone_number_id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."
        );
        return Some(graph_error(StatusCode::BAD_REQUEST, 100, "GraphMethodException", &message, None));
    }
    None
}

async fn media(
    AxumState(state): AxumState<Arc<State>>,
    Path((_version, phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = check(&state, &headers, &phone_number_id) {
        return refused;
    }
    answer(StatusCode::OK, json!({"id": format!("{}", 900_000_000_000_000u64 + state.next_id())}))
}

async fn send(
    AxumState(state): AxumState<Arc<State>>,
    Path((_version, phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = check(&state, &headers, &phone_number_id) {
        return refused;
    }
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return graph_error(StatusCode::BAD_REQUEST, 100, "OAuthException", "(#100) Invalid parameter", None);
    };
    for required in ["messaging_product", "to", "type"] {
        if message.get(required).and_then(Value::as_str).is_none_or(str::is_empty) {
            let text = format!("(#100) The parameter {required} is required.");
            return graph_error(StatusCode::BAD_REQUEST, 100, "OAuthException", &text, None);
        }
    }
    let to = message["to"].as_str().unwrap_or_default().to_owned();
    let wa_id = digits(&to);
    let kind = message["type"].as_str().unwrap_or_default();
    let decision = state.decide(CHANNEL, &to).await;
    let response = match decision {
        Decision::ServerError => graph_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            2,
            "OAuthException",
            "An unexpected error has occurred. Please retry your request later.",
            None,
        ),
        Decision::RateLimited(_) => graph_error(
            StatusCode::TOO_MANY_REQUESTS,
            130429,
            "OAuthException",
            "(#130429) Rate limit hit",
            Some("Cloud API message throughput has been reached."),
        ),
        Decision::Reset => super::reset(),
        other => {
            let id = format!("wamid.HBgLMTU1NTAxMDAwMDEVAgARGBI{:016X}AA==", state.next_id());
            let (events, delivery) = match other {
                Decision::Accept(events, delivery) => {
                    let window_closed = state.config.whatsapp.enforce_window && kind != "template";
                    if window_closed {
                        (vec![(Duration::from_millis(200), Event::Failed(Some("131047".into())))], delivery)
                    } else {
                        (events, delivery)
                    }
                }
                // Not on WhatsApp, or blocked: accepted, then undeliverable.
                _ => (vec![(Duration::from_millis(300), Event::Failed(Some("131026".into())))], Default::default()),
            };
            let hooks =
                events.into_iter().filter_map(|(after, e)| Some((after, hook(&state, &id, &wa_id, &e)?))).collect();
            state.dispatch(CHANNEL, hooks, delivery);
            let mut ok = json!({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": wa_id}],
                "messages": [{"id": id}]});
            if kind == "template" {
                ok["messages"][0]["message_status"] = json!("accepted");
            }
            accepted(answer(StatusCode::OK, ok), &id)
        }
    };
    tagged(response, &to)
}

fn error_title(code: &str) -> &'static str {
    match code {
        "131026" => "Message undeliverable",
        "131047" => "Re-engagement message",
        "131049" => "This message was not delivered to maintain healthy ecosystem engagement.",
        _ => "Failure",
    }
}

/// The notification for one event, signed; `None` without a webhook URL.
pub(crate) fn hook(state: &State, id: &str, wa_id: &str, event: &Event) -> Option<Hook> {
    let account = &state.config.whatsapp;
    let url = account.webhook_url.clone()?;
    let metadata = json!({"display_phone_number": "15550000000", "phone_number_id": account.phone_number_id});
    let now = unix_now().to_string();
    let value = match event {
        Event::Reply(text) => json!({"messaging_product": "whatsapp", "metadata": metadata,
            "contacts": [{"profile": {"name": "Sandbox Contact"}, "wa_id": wa_id}],
            "messages": [{"from": wa_id, "id": format!("wamid.IN{:016X}", state.next_id()), "timestamp": now,
                "type": "text", "text": {"body": text}}]}),
        _ => {
            let mut status = json!({"id": id, "status": event.name(), "timestamp": now, "recipient_id": wa_id});
            if matches!(event, Event::Sent) {
                status["conversation"] = json!({"id": "sandbox-conversation", "origin": {"type": "utility"}});
                status["pricing"] = json!({"billable": true, "pricing_model": "PMP", "category": "utility"});
            }
            if let Event::Failed(code) = event {
                let code = code.as_deref().unwrap_or("131026");
                status["errors"] = json!([{"code": code.parse::<i64>().unwrap_or(131026), "title": error_title(code),
                    "message": error_title(code), "error_data": {"details": error_title(code)}}]);
            }
            json!({"messaging_product": "whatsapp", "metadata": metadata, "statuses": [status]})
        }
    };
    let body = serde_json::to_vec(&json!({"object": "whatsapp_business_account",
        "entry": [{"id": "100000000000009", "changes": [{"value": value, "field": "messages"}]}]}))
    .expect("JSON");
    let signature = format!("sha256={}", sign::hmac_sha256_hex(account.app_secret.as_bytes(), &body));
    Some(Hook {
        url,
        content_type: "application/json",
        headers: vec![("X-Hub-Signature-256", signature)],
        body,
        event: event.name().to_owned(),
        message_id: Some(id.to_owned()),
    })
}
