//! Webhook intake: status and message notifications, signed with `X-Hub-Signature-256`, and
//! the GET verification handshake.
//!
//! One POST may batch several `entry[]`, `changes[]` and items: every status in
//! `value.statuses[]` and every message in `value.messages[]` becomes an event. Status webhooks
//! come in more than one pricing shape (conversation-based `CBP` with a `conversation` object,
//! per-message `PMP` without); the pricing fields are not used and any shape is accepted.
//! Changes for another phone number id (one app, several numbers, one webhook URL) are skipped.

use cascade_channel_kit::webhook::{constant_time_eq, verify_sha256_hex};
use cascade_channel_kit::{Intake, Secret, WebhookError, WebhookEvent, WebhookRequest};
use cascade_engine::{InboundMessage, SendError, Status, StatusUpdate, Timestamp};
use chrono::{TimeZone, Utc};
use serde::Deserialize;

use crate::WhatsApp;
use crate::client::ADAPTER;
use crate::error::{ErrorData, describe, rule_for};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

#[derive(Deserialize)]
struct Notification {
    #[serde(default)]
    object: Option<String>,
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    value: Option<Value>,
}

#[derive(Deserialize)]
struct Value {
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    statuses: Vec<WaStatus>,
    #[serde(default)]
    messages: Vec<WaMessage>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    phone_number_id: Option<String>,
}

#[derive(Deserialize)]
struct WaStatus {
    id: String,
    status: String,
    #[serde(default)]
    timestamp: Option<NumberText>,
    #[serde(default)]
    errors: Vec<WaError>,
}

#[derive(Deserialize)]
struct WaError {
    code: i64,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error_data: Option<ErrorData>,
}

#[derive(Deserialize)]
struct WaMessage {
    from: String,
    #[serde(default)]
    timestamp: Option<NumberText>,
    #[serde(default)]
    text: Option<Body>,
    #[serde(default)]
    image: Option<Caption>,
    #[serde(default)]
    video: Option<Caption>,
    #[serde(default)]
    document: Option<Caption>,
    #[serde(default)]
    button: Option<ButtonReply>,
}

#[derive(Deserialize)]
struct Body {
    body: String,
}

#[derive(Deserialize)]
struct Caption {
    #[serde(default)]
    caption: Option<String>,
}

#[derive(Deserialize)]
struct ButtonReply {
    #[serde(default)]
    text: Option<String>,
}

/// Unix seconds, sent as a string (documented) or a number (tolerated).
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberText {
    Text(String),
    Number(i64),
}

impl NumberText {
    fn time(&self) -> Option<Timestamp> {
        let secs = match self {
            NumberText::Text(s) => s.trim().parse().ok()?,
            NumberText::Number(n) => *n,
        };
        Utc.timestamp_opt(secs, 0).single()
    }
}

/// The normalized status for a WhatsApp status name; `None` for ones cascade does not use.
pub fn status_of(name: &str) -> Option<Status> {
    match name {
        "sent" => Some(Status::Sent),
        "delivered" => Some(Status::Delivered),
        // A played voice message has been heard: as good as read.
        "read" | "played" => Some(Status::Read),
        "failed" => Some(Status::Failed),
        _ => None,
    }
}

/// Parses a notification body (without checking the signature). `phone_number_id`, when given,
/// keeps only changes for that number.
pub fn parse_notification(body: &[u8], phone_number_id: Option<&str>) -> Result<Vec<WebhookEvent>, WebhookError> {
    let n: Notification =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(format!("WhatsApp notification: {e}")))?;
    if n.object.as_deref().is_some_and(|o| o != "whatsapp_business_account") {
        return Ok(Vec::new());
    }
    let mut events = Vec::new();
    for change in n.entry.into_iter().flat_map(|e| e.changes) {
        if change.field.as_deref().is_some_and(|f| f != "messages") {
            continue;
        }
        let Some(value) = change.value else { continue };
        let theirs = value.metadata.as_ref().and_then(|m| m.phone_number_id.as_deref());
        if let (Some(ours), Some(theirs)) = (phone_number_id, theirs)
            && ours != theirs
        {
            continue;
        }
        for s in value.statuses {
            let Some(status) = status_of(&s.status) else { continue };
            let error = (status == Status::Failed).then(|| failure(&s.errors));
            events.push(WebhookEvent::Status(StatusUpdate {
                provider_message_id: s.id,
                status,
                at: s.timestamp.as_ref().and_then(NumberText::time),
                error,
            }));
        }
        for m in value.messages {
            let text = m
                .text
                .map(|t| t.body)
                .or_else(|| [m.image, m.video, m.document].into_iter().flatten().find_map(|c| c.caption))
                .or_else(|| m.button.and_then(|b| b.text));
            events.push(WebhookEvent::Inbound(InboundMessage {
                from: e164(&m.from),
                text,
                at: m.timestamp.as_ref().and_then(NumberText::time),
            }));
        }
    }
    Ok(events)
}

/// The classified error of a `failed` status (its first `errors[]` item).
fn failure(errors: &[WaError]) -> SendError {
    let Some(e) = errors.first() else {
        return SendError::transient("failed", "failed without an error code");
    };
    let class = rule_for(e.code).map_or(cascade_engine::ErrorClass::Rejected, |r| r.class);
    let title = e.title.clone().or_else(|| e.message.clone()).unwrap_or_default();
    SendError::new(class, e.code.to_string(), describe(title, e.error_data.as_ref()))
}

/// A WhatsApp id (`447700900123`) as the E.164 number contacts are addressed by.
fn e164(wa_id: &str) -> String {
    if wa_id.starts_with('+') || !wa_id.chars().all(|c| c.is_ascii_digit()) {
        wa_id.to_owned()
    } else {
        format!("+{wa_id}")
    }
}

/// A secret that is set and not blank.
fn configured(secret: Option<&Secret>) -> Option<&Secret> {
    secret.filter(|s| !s.expose().trim().is_empty())
}

impl WhatsApp {
    /// Checks `X-Hub-Signature-256` (`sha256=` and the hex HMAC-SHA256 of the raw body, keyed
    /// with the app secret).
    pub fn verify(&self, request: &WebhookRequest<'_>) -> Result<(), WebhookError> {
        // A blank secret (possible when the config is built in code) is no secret: anyone can sign.
        let Some(secret) = configured(self.config.app_secret.as_ref()) else {
            return Err(WebhookError::NotConfigured("app_secret"));
        };
        let header = request.signature_header(SIGNATURE_HEADER)?;
        let hex = header.trim().strip_prefix("sha256=").ok_or(WebhookError::BadSignature)?;
        verify_sha256_hex(secret.expose().as_bytes(), request.body, hex)
    }
}

impl Intake for WhatsApp {
    fn adapter(&self) -> &str {
        ADAPTER
    }

    /// `hub.mode=subscribe` with our `verify_token` is answered with `hub.challenge`.
    fn handshake(&self, request: &WebhookRequest<'_>) -> Option<Result<String, WebhookError>> {
        let Some(expected) = configured(self.config.verify_token.as_ref()) else {
            return Some(Err(WebhookError::NotConfigured("verify_token")));
        };
        let (mut mode, mut token, mut challenge) = (None, None, None);
        for (k, v) in request.query() {
            match k.as_str() {
                "hub.mode" => mode = Some(v),
                "hub.verify_token" => token = Some(v),
                "hub.challenge" => challenge = Some(v),
                _ => {}
            }
        }
        Some(match (mode.as_deref(), token, challenge) {
            (Some("subscribe"), Some(t), Some(c)) if constant_time_eq(t.as_bytes(), expected.expose().as_bytes()) => {
                Ok(c)
            }
            (Some("subscribe"), Some(_), Some(_)) => {
                Err(WebhookError::Handshake("hub.verify_token does not match".into()))
            }
            _ => Err(WebhookError::Handshake("expected hub.mode=subscribe, hub.verify_token and hub.challenge".into())),
        })
    }

    fn receive(&self, request: &WebhookRequest<'_>) -> Result<Vec<WebhookEvent>, WebhookError> {
        self.verify(request)?;
        parse_notification(request.body, Some(&self.config.phone_number_id))
    }
}
