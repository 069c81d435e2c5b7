//! Twilio Programmable Messaging: `POST /twilio/2010-04-01/Accounts/{AccountSid}/Messages.json`.
//!
//! HTTP Basic auth with the account SID and auth token; a form with `To`, `From` or
//! `MessagingServiceSid`, `Body`, `MediaUrl`, `StatusCallback`; `201` with the Message
//! resource, or `{"code", "message", "more_info", "status"}`. Status callbacks go to the
//! message's `StatusCallback`, replies to the account's inbound URL, both as forms signed with
//! `X-Twilio-Signature`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use base64::Engine as _;
use serde_json::json;

use super::{accepted, answer, form_pairs, tagged};
use crate::sign;
use crate::state::{Decision, Event, Hook, State};

const CHANNEL: &str = "sms";
/// The number replies come to when a message had none (a messaging service).
const SANDBOX_NUMBER: &str = "+15550009999";

pub fn routes() -> Router<Arc<State>> {
    Router::new().route("/twilio/2010-04-01/Accounts/{account_sid}/Messages.json", post(send))
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    answer(
        status,
        json!({"code": code, "message": message, "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16()}),
    )
}

fn authorized(state: &State, headers: &HeaderMap) -> bool {
    let account = &state.config.twilio;
    let Some(encoded) =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else { return false };
    decoded == format!("{}:{}", account.account_sid, account.auth_token).as_bytes()
}

async fn send(
    AxumState(state): AxumState<Arc<State>>,
    Path(account_sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&state, &headers) {
        return error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    if account_sid != state.config.twilio.account_sid {
        return error(StatusCode::NOT_FOUND, 20404, "The requested resource was not found");
    }
    let form = form_pairs(&body);
    let get = |k: &str| form.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let Some(to) = get("To").filter(|t| !t.trim().is_empty()) else {
        return error(StatusCode::BAD_REQUEST, 21604, "A 'To' phone number is required.");
    };
    let from = get("From");
    if from.is_none() && get("MessagingServiceSid").is_none() {
        return tagged(error(StatusCode::BAD_REQUEST, 21603, "A 'From' phone number is required."), &to);
    }
    let text = get("Body").unwrap_or_default();
    let media = form.iter().filter(|(k, _)| k == "MediaUrl").count();
    if text.is_empty() && media == 0 {
        return tagged(error(StatusCode::BAD_REQUEST, 21602, "Message body is required."), &to);
    }
    let callback = get("StatusCallback");
    let response = match state.decide(CHANNEL, &to).await {
        Decision::NotOnChannel => {
            error(StatusCode::BAD_REQUEST, 21614, &format!("'To' number {to} is not a valid mobile number"))
        }
        Decision::Blocked => error(StatusCode::BAD_REQUEST, 21610, "Attempt to send to unsubscribed recipient"),
        Decision::ServerError => error(StatusCode::INTERNAL_SERVER_ERROR, 20500, "Internal Server Error"),
        Decision::Reset => super::reset(),
        Decision::RateLimited(after) => {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests");
            if let Ok(v) = HeaderValue::from_str(&after.as_secs().max(1).to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Decision::Accept(events, delivery) => {
            let sid = format!("SM{:032x}", state.next_id());
            let from = from.clone().unwrap_or_else(|| SANDBOX_NUMBER.to_owned());
            let hooks = events
                .into_iter()
                .filter_map(|(after, event)| {
                    let hook = match &event {
                        // SMS has no read receipts.
                        Event::Read => None,
                        Event::Reply(reply) => inbound(&state, &to, &from, reply),
                        _ => status_callback(&state, callback.as_deref()?, &sid, &to, &from, &event),
                    };
                    Some((after, hook?))
                })
                .collect();
            state.dispatch(CHANNEL, hooks, delivery);
            let account = &state.config.twilio.account_sid;
            let now = chrono::Utc::now().to_rfc2822();
            let created = answer(
                StatusCode::CREATED,
                json!({"sid": sid, "account_sid": account, "to": to, "from": get("From"),
                    "messaging_service_sid": get("MessagingServiceSid"), "body": text, "status": "queued",
                    "num_segments": "1", "num_media": media.to_string(), "direction": "outbound-api",
                    "api_version": "2010-04-01", "price": null, "price_unit": "USD", "error_code": null,
                    "error_message": null, "date_created": now, "date_updated": now, "date_sent": null,
                    "uri": format!("/2010-04-01/Accounts/{account}/Messages/{sid}.json"),
                    "subresource_uris": {"media": format!("/2010-04-01/Accounts/{account}/Messages/{sid}/Media.json")}}),
            );
            accepted(created, sid)
        }
    };
    tagged(response, &to)
}

fn signed_form(state: &State, url: &str, params: Vec<(String, String)>) -> (Vec<u8>, String) {
    let signature = sign::twilio(&state.config.twilio.auth_token, url, &params);
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish().into_bytes();
    (body, signature)
}

fn status_callback(state: &State, url: &str, sid: &str, to: &str, from: &str, event: &Event) -> Option<Hook> {
    let (status, code) = match event {
        Event::Sent => ("sent", None),
        Event::Delivered => ("delivered", None),
        Event::Failed(code) => ("undelivered", Some(code.clone().unwrap_or_else(|| "30003".to_owned()))),
        Event::Read | Event::Reply(_) => return None,
    };
    let mut params: Vec<(String, String)> = [
        ("AccountSid", state.config.twilio.account_sid.as_str()),
        ("ApiVersion", "2010-04-01"),
        ("From", from),
        ("MessageSid", sid),
        ("MessageStatus", status),
        ("SmsSid", sid),
        ("SmsStatus", status),
        ("To", to),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(code) = code {
        params.push(("ErrorCode".into(), code));
    }
    let (body, signature) = signed_form(state, url, params);
    Some(Hook {
        url: url.to_owned(),
        content_type: "application/x-www-form-urlencoded",
        headers: vec![("X-Twilio-Signature", signature)],
        body,
        event: event.name().to_owned(),
        message_id: Some(sid.to_owned()),
    })
}

pub(crate) fn inbound(state: &State, contact: &str, our_number: &str, text: &str) -> Option<Hook> {
    let url = state.config.twilio.inbound_url.clone()?;
    let sid = format!("SM{:032x}", state.next_id());
    let params: Vec<(String, String)> = [
        ("AccountSid", state.config.twilio.account_sid.as_str()),
        ("ApiVersion", "2010-04-01"),
        ("Body", text),
        ("From", contact),
        ("MessageSid", sid.as_str()),
        ("NumMedia", "0"),
        ("NumSegments", "1"),
        ("SmsMessageSid", sid.as_str()),
        ("SmsSid", sid.as_str()),
        ("SmsStatus", "received"),
        ("To", our_number),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let (body, signature) = signed_form(state, &url, params);
    Some(Hook {
        url,
        content_type: "application/x-www-form-urlencoded",
        headers: vec![("X-Twilio-Signature", signature)],
        body,
        event: "reply".into(),
        message_id: None,
    })
}
