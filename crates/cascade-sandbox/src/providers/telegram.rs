//! Telegram Bot API: `POST /telegram/bot<token>/<method>` for the send methods.
//!
//! Parameters as JSON, a form or multipart (files); answers `{"ok": true, "result": Message}` or
//! `{"ok": false, "error_code", "description"[, "parameters": {"retry_after"}]}`. Telegram reports
//! nothing after a send, so a failure the scenario asks for is refused at once. Replies go to
//! the webhook URL as `Update`s, with `X-Telegram-Bot-Api-Secret-Token` when a secret is set.

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequest, Multipart, Path, Request, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use serde_json::{Map, Value, json};

use super::{accepted, answer, form_json, tagged, unix_now};
use crate::state::{Decision, Event, Hook, State};

const CHANNEL: &str = "telegram";
const SEND_METHODS: &[&str] =
    &["sendMessage", "sendPhoto", "sendVideo", "sendDocument", "sendAudio", "sendAnimation", "sendVoice"];

pub fn routes() -> Router<Arc<State>> {
    Router::new().route("/telegram/{bot}/{method}", post(call))
}

fn refuse(status: StatusCode, description: &str) -> Response {
    answer(status, json!({"ok": false, "error_code": status.as_u16(), "description": description}))
}

/// The call's parameters, whatever the encoding (files in multipart are read and dropped).
async fn parameters(request: Request) -> Result<Map<String, Value>, Response> {
    let kind = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let bad = |what: String| refuse(StatusCode::BAD_REQUEST, &format!("Bad Request: {what}"));
    if kind.starts_with("multipart/form-data") {
        let mut form = Multipart::from_request(request, &()).await.map_err(|e| bad(e.body_text()))?;
        let mut out = Map::new();
        while let Some(field) = form.next_field().await.map_err(|e| bad(e.body_text()))? {
            let name = field.name().unwrap_or_default().to_owned();
            if field.file_name().is_some() {
                let bytes = field.bytes().await.map_err(|e| bad(e.body_text()))?;
                out.insert(name, json!(format!("<file, {} bytes>", bytes.len())));
            } else {
                out.insert(name, json!(field.text().await.map_err(|e| bad(e.body_text()))?));
            }
        }
        return Ok(out);
    }
    let body = axum::body::to_bytes(request.into_body(), crate::MAX_BODY).await.map_err(|e| bad(e.to_string()))?;
    let value = if kind.starts_with("application/x-www-form-urlencoded") {
        form_json(&body)
    } else if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|_| bad("can't parse JSON object".into()))?
    };
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(bad("parameters must be an object".into())),
    }
}

async fn call(
    AxumState(state): AxumState<Arc<State>>,
    Path((bot, method)): Path<(String, String)>,
    request: Request,
) -> Response {
    if bot.strip_prefix("bot") != Some(state.config.telegram.bot_token.as_str()) {
        return refuse(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    if !SEND_METHODS.contains(&method.as_str()) {
        return refuse(StatusCode::NOT_FOUND, "Not Found: method not found");
    }
    let params = match parameters(request).await {
        Ok(p) => p,
        Err(refused) => return refused,
    };
    let chat = match params.get("chat_id") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
        _ => return refuse(StatusCode::BAD_REQUEST, "Bad Request: chat_id is empty"),
    };
    let text = params.get("text").and_then(Value::as_str).unwrap_or_default().to_owned();
    if method == "sendMessage" && text.trim().is_empty() {
        return tagged(refuse(StatusCode::BAD_REQUEST, "Bad Request: message text is empty"), &chat);
    }
    let response = match state.decide(CHANNEL, &chat).await {
        Decision::NotOnChannel => refuse(StatusCode::BAD_REQUEST, "Bad Request: chat not found"),
        Decision::Blocked => refuse(StatusCode::FORBIDDEN, "Forbidden: bot was blocked by the user"),
        Decision::ServerError => refuse(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
        Decision::Reset => super::reset(),
        Decision::RateLimited(after) => {
            let secs = after.as_secs().max(1);
            answer(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"ok": false, "error_code": 429, "description": format!("Too Many Requests: retry after {secs}"),
                    "parameters": {"retry_after": secs}}),
            )
        }
        Decision::Accept(events, delivery) => {
            if let Some(Event::Failed(code)) = events.iter().map(|(_, e)| e).find(|e| matches!(e, Event::Failed(_))) {
                let description = code.clone().unwrap_or_else(|| "Forbidden: user is deactivated".to_owned());
                refuse(StatusCode::FORBIDDEN, &description)
            } else {
                let hooks = events
                    .into_iter()
                    .filter_map(|(after, e)| match e {
                        Event::Reply(reply) => Some((after, update(&state, &chat, &reply)?)),
                        _ => None,
                    })
                    .collect();
                state.dispatch(CHANNEL, hooks, delivery);
                let chat_value: Value = chat.parse::<i64>().map(Value::from).unwrap_or_else(|_| json!(chat));
                let message_id = state.next_id();
                let mut message = json!({"message_id": message_id,
                    "from": {"id": 100000001, "is_bot": true, "first_name": "Sandbox", "username": "cascade_sandbox_bot"},
                    "chat": {"id": chat_value, "first_name": "Sandbox Contact", "type": "private"},
                    "date": unix_now()});
                match params.get("caption").and_then(Value::as_str) {
                    Some(caption) if method != "sendMessage" => message["caption"] = json!(caption),
                    _ if method == "sendMessage" => message["text"] = json!(text),
                    _ => {}
                }
                accepted(answer(StatusCode::OK, json!({"ok": true, "result": message})), message_id)
            }
        }
    };
    tagged(response, &chat)
}

/// An `Update` with the contact's reply; `None` without a webhook URL.
pub(crate) fn update(state: &State, chat: &str, text: &str) -> Option<Hook> {
    let account = &state.config.telegram;
    let url = account.webhook_url.clone()?;
    let id: Value = chat.parse::<i64>().map(Value::from).unwrap_or_else(|_| json!(chat));
    let body = serde_json::to_vec(&json!({"update_id": 500_000 + state.next_id(), "message": {
        "message_id": state.next_id(), "from": {"id": id, "is_bot": false, "first_name": "Sandbox Contact"},
        "chat": {"id": id, "first_name": "Sandbox Contact", "type": "private"}, "date": unix_now(), "text": text}}))
    .expect("JSON");
    let headers = account.secret_token.iter().map(|s| ("X-Telegram-Bot-Api-Secret-Token", s.clone())).collect();
    Some(Hook { url, content_type: "application/json", headers, body, event: "reply".into(), message_id: None })
}
