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
