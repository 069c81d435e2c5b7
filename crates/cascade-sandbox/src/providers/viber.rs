//! Viber REST Bot API: `POST /viber/pa/send_message` (and `set_webhook`).
//!
//! `X-Viber-Auth-Token`; every answer is HTTP 200 with `{"status": N, "status_message"}`,
//! `0` with a `message_token` on success. Callbacks (`delivered`, `seen`, `failed`, `message`)
//! go to the webhook URL signed with `X-Viber-Content-Signature`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};

use super::{accepted, answer, tagged, unix_ms_now};
use crate::sign;
use crate::state::{Decision, Event, Hook, State};

const CHANNEL: &str = "viber";

pub fn routes() -> Router<Arc<State>> {
    Router::new().route("/viber/pa/send_message", post(send)).route("/viber/pa/set_webhook", post(set_webhook))
}

fn status(code: u32, message: &str) -> Response {
    answer(StatusCode::OK, json!({"status": code, "status_message": message, "chat_hostname": "SN-SANDBOX_"}))
}

fn authorized(state: &State, headers: &HeaderMap) -> bool {
    headers.get("x-viber-auth-token").and_then(|v| v.to_str().ok()) == Some(state.config.viber.auth_token.as_str())
}

async fn set_webhook(AxumState(state): AxumState<Arc<State>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&state, &headers) {
        return status(2, "invalidAuthToken");
    }
    let Some(url) = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["url"].as_str().map(str::to_owned))
    else {
        return status(4, "missingData");
    };
    state.runtime_hooks.lock().unwrap_or_else(|e| e.into_inner()).insert(CHANNEL, (url, None));
    answer(
        StatusCode::OK,
        json!({"status": 0, "status_message": "ok", "event_types": ["delivered", "seen", "failed", "subscribed",
            "unsubscribed", "conversation_started"]}),
    )
}

async fn send(AxumState(state): AxumState<Arc<State>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&state, &headers) {
        return status(2, "invalidAuthToken");
    }
    let Ok(message) = serde_json::from_slice::<Value>(&body) else { return status(3, "badData") };
    let Some(receiver) = message["receiver"].as_str().filter(|r| !r.is_empty()).map(str::to_owned) else {
        return status(4, "missingData");
    };
    if message["sender"]["name"].as_str().is_none_or(str::is_empty) || message["type"].as_str().is_none() {
        return tagged(status(4, "missingData"), &receiver);
    }
    let response = match state.decide(CHANNEL, &receiver).await {
        Decision::NotOnChannel => status(5, "receiverNotRegistered"),
        Decision::Blocked => status(6, "receiverNotSubscribed"),
        Decision::ServerError => {
            answer(StatusCode::INTERNAL_SERVER_ERROR, json!({"status": 1000, "status_message": "internal error"}))
        }
        Decision::RateLimited(_) => status(12, "tooManyRequests"),
        Decision::Reset => super::reset(),
        Decision::Accept(events, delivery) => {
            let token = 5_491_000_000_000_000_000u64 + state.next_id();
            let hooks = events
                .into_iter()
                .filter_map(|(after, e)| Some((after, callback(&state, token, &receiver, &e)?)))
                .collect();
            state.dispatch(CHANNEL, hooks, delivery);
            let ok = answer(
                StatusCode::OK,
                json!({"status": 0, "status_message": "ok", "message_token": token, "chat_hostname": "SN-SANDBOX_",
                    "billing_status": 1}),
            );
            accepted(ok, token)
        }
    };
    tagged(response, &receiver)
}

fn webhook_url(state: &State) -> Option<String> {
    let runtime = state.runtime_hooks.lock().unwrap_or_else(|e| e.into_inner()).get(CHANNEL).map(|(u, _)| u.clone());
    runtime.or_else(|| state.config.viber.webhook_url.clone())
}

pub(crate) fn callback(state: &State, token: u64, receiver: &str, event: &Event) -> Option<Hook> {
    let url = webhook_url(state)?;
    let now = unix_ms_now();
    let body = match event {
        Event::Sent => return None,
        Event::Delivered => json!({"event": "delivered", "timestamp": now, "chat_hostname": "SN-SANDBOX_",
            "message_token": token, "user_id": receiver}),
        Event::Read => json!({"event": "seen", "timestamp": now, "chat_hostname": "SN-SANDBOX_",
            "message_token": token, "user_id": receiver}),
        Event::Failed(code) => json!({"event": "failed", "timestamp": now, "chat_hostname": "SN-SANDBOX_",
            "message_token": token, "user_id": receiver,
            "desc": code.clone().unwrap_or_else(|| "failed with status: 1, isValidUser: false".to_owned())}),
        Event::Reply(text) => json!({"event": "message", "timestamp": now, "chat_hostname": "SN-SANDBOX_",
            "message_token": 5_492_000_000_000_000_000u64 + state.next_id(),
            "sender": {"id": receiver, "name": "Sandbox Contact", "language": "en", "country": "US", "api_version": 10},
            "message": {"type": "text", "text": text}, "silent": false}),
    };
    let body = serde_json::to_vec(&body).expect("JSON");
    let signature = sign::hmac_sha256_hex(state.config.viber.auth_token.as_bytes(), &body);
    Some(Hook {
        url,
        content_type: "application/json",
        headers: vec![("X-Viber-Content-Signature", signature)],
        body,
        event: event.name().to_owned(),
        message_id: Some(token.to_string()),
    })
}
