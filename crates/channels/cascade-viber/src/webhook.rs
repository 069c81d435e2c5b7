//! Webhook intake: Viber callbacks, signed with `X-Viber-Content-Signature` (hex HMAC-SHA256 of
//! the raw body, keyed with the auth token).
//!
//! `delivered` → `delivered`, `seen` → `read`, `failed` → `failed` (`rejected`: the message
//! failed the client's checks), `message` → an inbound message from the sender's Viber id.
//! `subscribed`, `unsubscribed`, `conversation_started` and the `webhook` check are accepted and
//! ignored.

use cascade_channel_kit::webhook::verify_sha256_hex;
use cascade_channel_kit::{Intake, WebhookError, WebhookEvent, WebhookRequest};
use cascade_engine::{InboundMessage, SendError, Status, StatusUpdate};
use chrono::{TimeZone, Utc};
use serde::Deserialize;

use crate::Viber;
use crate::client::{ADAPTER, Token};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Viber-Content-Signature";

#[derive(Deserialize)]
struct Callback {
    event: String,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(default)]
    message_token: Option<Token>,
    #[serde(default)]
    desc: Option<String>,
    #[serde(default)]
    sender: Option<Sender>,
    #[serde(default)]
    message: Option<Message>,
}

#[derive(Deserialize)]
struct Sender {
    id: String,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    text: Option<String>,
}

/// Parses a callback body (without checking the signature).
pub fn parse_callback(body: &[u8]) -> Result<Vec<WebhookEvent>, WebhookError> {
    let c: Callback =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(format!("Viber callback: {e}")))?;
    let at = c.timestamp.and_then(|ms| Utc.timestamp_millis_opt(ms).single());
    let status = match c.event.as_str() {
        "delivered" => Status::Delivered,
        "seen" => Status::Read,
        "failed" => Status::Failed,
        "message" => {
            let sender = c.sender.ok_or_else(|| WebhookError::Malformed("Viber message without sender".into()))?;
            let text = c.message.and_then(|m| m.text).filter(|t| !t.is_empty());
            return Ok(vec![WebhookEvent::Inbound(InboundMessage { from: sender.id, text, at })]);
        }
        _ => return Ok(Vec::new()),
    };
    let token =
        c.message_token.ok_or_else(|| WebhookError::Malformed(format!("Viber {} without message_token", c.event)))?;
    let error = (status == Status::Failed)
        .then(|| SendError::rejected("failed", c.desc.unwrap_or_else(|| "failed on the contact's device".into())));
    Ok(vec![WebhookEvent::Status(StatusUpdate { provider_message_id: token.into_string(), status, at, error })])
}

impl Viber {
    /// Checks `X-Viber-Content-Signature`.
    pub fn verify(&self, request: &WebhookRequest<'_>) -> Result<(), WebhookError> {
        let given = request.signature_header(SIGNATURE_HEADER)?;
        verify_sha256_hex(self.config.auth_token.expose().as_bytes(), request.body, given)
    }
}

impl Intake for Viber {
    fn adapter(&self) -> &str {
        ADAPTER
    }

    fn receive(&self, request: &WebhookRequest<'_>) -> Result<Vec<WebhookEvent>, WebhookError> {
        self.verify(request)?;
        parse_callback(request.body)
    }
}
