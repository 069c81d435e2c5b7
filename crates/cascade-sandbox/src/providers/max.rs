//! MAX bot API: `POST /max/messages?user_id=|chat_id=`, `/max/uploads`, `/max/subscriptions`.
//!
//! `Authorization: <token>`; errors `{"code": "<key>", "message"}` with the HTTP status; success
//! the sent `Message`. Files: `POST /uploads?type=` gives an upload URL on the sandbox, whose
//! answer carries the token as MAX's does for each type. MAX reports no delivery or reading to
//! bots, so a failure the scenario asks for is refused at once; replies go to the subscription
//! URL as `message_created` updates with `X-Max-Bot-Api-Secret`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};

use super::{accepted, answer, tagged, unix_ms_now};
use crate::state::{Decision, Event, Hook, State};

const CHANNEL: &str = "max";
const BOT_ID: i64 = 90_000_001;

pub fn routes() -> Router<Arc<State>> {
    Router::new()
        .route("/max/messages", post(send))
        .route("/max/uploads", post(uploads))
        .route("/max/upload/{kind}/{n}", post(upload))
        .route("/max/subscriptions", post(subscribe))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    answer(status, json!({"code": code, "message": message}))
}

fn check(state: &State, headers: &HeaderMap) -> Option<Response> {
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if given == Some(state.config.max.access_token.as_str()) {
        None
    } else {
        Some(error(StatusCode::UNAUTHORIZED, "verify.token", "Invalid access_token"))
    }
}

async fn subscribe(AxumState(state): AxumState<Arc<State>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refused) = check(&state, &headers) {
        return refused;
    }
    let Some(body) = serde_json::from_slice::<Value>(&body).ok() else {
        return error(StatusCode::BAD_REQUEST, "proto.payload", "Invalid JSON");
    };
    let Some(url) = body["url"].as_str().filter(|u| u.starts_with("http")) else {
        return error(StatusCode::BAD_REQUEST, "proto.payload", "url: must be an HTTP(S) URL");
    };
    let secret = body["secret"].as_str().map(str::to_owned);
    state.runtime_hooks.lock().unwrap_or_else(|e| e.into_inner()).insert(CHANNEL, (url.to_owned(), secret));
    answer(StatusCode::OK, json!({"success": true}))
}

async fn uploads(
    AxumState(state): AxumState<Arc<State>>,
    headers: HeaderMap,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Some(refused) = check(&state, &headers) {
        return refused;
    }
    let kind = query.get("type").map(String::as_str).unwrap_or_default();
    if !matches!(kind, "image" | "video" | "audio" | "file") {
        return error(StatusCode::BAD_REQUEST, "proto.payload", "type: must be image, video, audio or file");
    }
    let n = state.next_id();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1");
    let mut slot = json!({"url": format!("http://{host}/max/upload/{kind}/{n}")});
    if matches!(kind, "video" | "audio") {
        slot["token"] = json!(format!("{kind}-token-{n}"));
    }
    answer(StatusCode::OK, slot)
}

async fn upload(Path((kind, n)): Path<(String, u64)>) -> Response {
    match kind.as_str() {
        "image" => answer(StatusCode::OK, json!({"photos": {format!("p{n}"): {"token": format!("image-token-{n}")}}})),
        "file" => answer(StatusCode::OK, json!({"fileId": n, "token": format!("file-token-{n}")})),
        // Video and audio: the token came with the slot; the upload answers a receipt.
        _ => axum::response::IntoResponse::into_response((StatusCode::OK, "<retval>1</retval>")),
    }
}

async fn send(
    AxumState(state): AxumState<Arc<State>>,
    headers: HeaderMap,
    Query(query): Query<std::collections::HashMap<String, String>>,
    body: Bytes,
) -> Response {
    if let Some(refused) = check(&state, &headers) {
        return refused;
    }
    let (recipient, address) = match (query.get("user_id"), query.get("chat_id")) {
        (Some(user), _) => {
            (json!({"chat_id": 88_000_000, "chat_type": "dialog", "user_id": user.parse::<i64>().ok()}), user.clone())
        }
        (None, Some(chat)) => {
            (json!({"chat_id": chat.parse::<i64>().ok(), "chat_type": "chat"}), format!("chat:{chat}"))
        }
        (None, None) => return error(StatusCode::BAD_REQUEST, "proto.payload", "user_id or chat_id is required"),
    };
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return tagged(error(StatusCode::BAD_REQUEST, "proto.payload", "Invalid JSON"), &address);
    };
    let text = message["text"].as_str().unwrap_or_default().to_owned();
    if text.chars().count() > 4000 {
        return tagged(
            error(StatusCode::BAD_REQUEST, "proto.payload", "text: size must be between 0 and 4000"),
            &address,
        );
    }
    let response = match state.decide(CHANNEL, &address).await {
        Decision::NotOnChannel => error(StatusCode::NOT_FOUND, "chat.not.found", &format!("Chat {address} not found")),
        Decision::Blocked => error(StatusCode::FORBIDDEN, "chat.denied", "chat.denied: dialogs.suspended"),
        Decision::ServerError => error(StatusCode::SERVICE_UNAVAILABLE, "service.unavailable", "Service unavailable"),
        Decision::RateLimited(_) => error(StatusCode::TOO_MANY_REQUESTS, "too.many.requests", "Too many requests"),
        Decision::Reset => super::reset(),
        Decision::Accept(events, delivery) => {
            if let Some(Event::Failed(code)) = events.iter().map(|(_, e)| e).find(|e| matches!(e, Event::Failed(_))) {
                let code = code.clone().unwrap_or_else(|| "chat.denied".to_owned());
                error(StatusCode::FORBIDDEN, &code, &code)
            } else {
                let hooks = events
                    .into_iter()
                    .filter_map(|(after, e)| match e {
                        Event::Reply(reply) => Some((after, update(&state, &query, &reply)?)),
                        _ => None,
                    })
                    .collect();
                state.dispatch(CHANNEL, hooks, delivery);
                let n = state.next_id();
                let mid = format!("mid.{n:016x}");
                let sent = answer(
                    StatusCode::OK,
                    json!({"message": {
                        "sender": {"user_id": BOT_ID, "first_name": "Sandbox", "name": "Sandbox", "username": "cascade_sandbox_bot",
                            "is_bot": true, "last_activity_time": unix_ms_now()},
                        "recipient": recipient, "timestamp": unix_ms_now(),
                        "body": {"mid": mid, "seq": 113_000_000_000u64 + n, "text": text,
                            "attachments": message.get("attachments").cloned().unwrap_or(Value::Null)}}}),
                );
                accepted(sent, mid)
            }
        }
    };
    tagged(response, &address)
}

pub(crate) fn update(state: &State, query: &std::collections::HashMap<String, String>, text: &str) -> Option<Hook> {
    let runtime = state.runtime_hooks.lock().unwrap_or_else(|e| e.into_inner()).get(CHANNEL).cloned();
    let (url, secret) =
        runtime.or_else(|| Some((state.config.max.webhook_url.clone()?, state.config.max.secret.clone())))?;
    let (sender, recipient) = match (query.get("user_id"), query.get("chat_id")) {
        (Some(user), _) => {
            (user.parse::<i64>().ok()?, json!({"chat_id": 88_000_000, "chat_type": "dialog", "user_id": BOT_ID}))
        }
        (None, Some(chat)) => (70_000_001, json!({"chat_id": chat.parse::<i64>().ok()?, "chat_type": "chat"})),
        (None, None) => return None,
    };
    let now = unix_ms_now();
    let n = state.next_id();
    let body = serde_json::to_vec(&json!({"update_type": "message_created", "timestamp": now, "user_locale": "ru",
        "message": {"sender": {"user_id": sender, "first_name": "Sandbox", "name": "Sandbox Contact", "is_bot": false,
            "last_activity_time": now}, "recipient": recipient, "timestamp": now,
            "body": {"mid": format!("mid.in{n:014x}"), "seq": 114_000_000_000u64 + n, "text": text}}}))
    .expect("JSON");
    let headers = secret.into_iter().map(|s| ("X-Max-Bot-Api-Secret", s)).collect();
    Some(Hook { url, content_type: "application/json", headers, body, event: "reply".into(), message_id: None })
}
