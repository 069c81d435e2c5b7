//! The emulated providers, one module each, and what they share.

pub mod max;
pub mod telegram;
pub mod twilio;
pub mod viber;
pub mod whatsapp;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::RecipientTag;
use crate::state::{Event, Hook, State};

/// The webhook a provider sends when the contact at `from` writes `text` to us (`to`: our
/// number, for SMS). `Err` names what is missing: an unknown channel, an address the provider
/// cannot have, or no webhook URL configured.
pub fn inbound_hook(
    state: &State,
    channel: &str,
    from: &str,
    to: Option<&str>,
    text: &str,
) -> Result<(&'static str, Hook), String> {
    let no_url = || format!("no webhook URL is configured for {channel}");
    match channel {
        "whatsapp" => {
            let wa_id = digits(from);
            whatsapp::hook(state, "", &wa_id, &Event::Reply(text.to_owned()))
                .map(|h| ("whatsapp", h))
                .ok_or_else(no_url)
        }
        "telegram" => telegram::update(state, from, text).map(|h| ("telegram", h)).ok_or_else(no_url),
        "sms" | "twilio" => {
            let to = to.unwrap_or("+15550000000");
            twilio::inbound(state, from, to, text).map(|h| ("sms", h)).ok_or_else(no_url)
        }
        "viber" => {
            viber::callback(state, 0, from, &Event::Reply(text.to_owned())).map(|h| ("viber", h)).ok_or_else(no_url)
        }
        "max" => {
            if from.parse::<i64>().is_err() {
                return Err(format!("a MAX user id is a number, not {from:?}"));
            }
            let query = std::collections::HashMap::from([("user_id".to_owned(), from.to_owned())]);
            max::update(state, &query, text).map(|h| ("max", h)).ok_or_else(no_url)
        }
        other => Err(format!("no channel {other:?} in the sandbox (one of whatsapp, telegram, sms, viber, max)")),
    }
}

/// A form body's pairs, in order.
pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// A form body as a JSON object; a repeated key becomes an array.
pub fn form_json(body: &[u8]) -> Value {
    let mut out = Map::new();
    for (k, v) in form_pairs(body) {
        match out.get_mut(&k) {
            Some(Value::Array(items)) => items.push(json!(v)),
            Some(first) => *first = json!([first.clone(), v]),
            None => {
                out.insert(k, json!(v));
            }
        }
    }
    Value::Object(out)
}

/// A JSON answer.
pub fn answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// `response`, marked as being for `recipient` in the request log.
pub fn tagged(mut response: Response, recipient: &str) -> Response {
    response.extensions_mut().insert(RecipientTag(recipient.to_owned()));
    response
}

/// `response`, marked in the request log as a send the sandbox accepted under `message_id`.
pub fn accepted(mut response: Response, message_id: impl ToString) -> Response {
    response.extensions_mut().insert(crate::MessageTag(message_id.to_string()));
    response
}

/// No answer at all: the sandbox resets the connection once the handler returns this. A router
/// mounted in another server (not [`crate::Sandbox::start`]) cannot reset its connections, and
/// answers `502 Bad Gateway` with no body instead.
pub fn reset() -> Response {
    let mut response = StatusCode::BAD_GATEWAY.into_response();
    response.extensions_mut().insert(crate::ResetTag);
    response
}

/// Seconds since the epoch.
pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Milliseconds since the epoch.
pub fn unix_ms_now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Digits only (WhatsApp ids, Twilio numbers without the `+`).
pub fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}
