//! Webhook intake: MAX `Update`s, posted to the URL given to `POST /subscriptions` with the
//! subscription's `secret` in `X-Max-Bot-Api-Secret`.
//!
//! MAX tells bots nothing about delivery or reading, so no update is a status. `message_created`
//! (from a user, not a bot) and `message_callback` (a callback button pressed) are inbound
//! messages; `bot_started`, `bot_stopped` and the rest are accepted and ignored.

use cascade_channel_kit::webhook::verify_shared_secret;
use cascade_channel_kit::{Intake, WebhookError, WebhookEvent, WebhookRequest};
use cascade_engine::InboundMessage;
use chrono::{TimeZone, Utc};
use serde::Deserialize;

use crate::Max;
use crate::client::ADAPTER;

/// The header carrying the subscription's secret.
pub const SECRET_HEADER: &str = "X-Max-Bot-Api-Secret";

#[derive(Deserialize)]
struct Update {
    update_type: String,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    callback: Option<Callback>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    sender: Option<User>,
    recipient: Recipient,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(default)]
    body: Option<Body>,
}

#[derive(Deserialize)]
struct User {
    user_id: i64,
    #[serde(default)]
    is_bot: bool,
}

#[derive(Deserialize)]
struct Recipient {
    #[serde(default)]
    chat_id: Option<i64>,
    #[serde(default)]
    chat_type: Option<String>,
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct Callback {
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(default)]
    payload: Option<String>,
    user: User,
}

/// The address a reply comes from, as the adapter sends to it: the user id in a dialog,
/// `chat:<id>` in a group chat or channel.
fn from(sender: &User, recipient: &Recipient) -> String {
    match (&recipient.chat_type, recipient.chat_id) {
        (Some(kind), Some(chat)) if kind != "dialog" => format!("chat:{chat}"),
        _ => sender.user_id.to_string(),
    }
}

/// Parses an update body (without checking the secret).
pub fn parse_update(body: &[u8]) -> Result<Vec<WebhookEvent>, WebhookError> {
    let update: Update =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(format!("MAX update: {e}")))?;
    let at = |ms: Option<i64>| ms.or(update.timestamp).and_then(|ms| Utc.timestamp_millis_opt(ms).single());
    match update.update_type.as_str() {
        "message_created" => {
            let m = update
                .message
                .as_ref()
                .ok_or_else(|| WebhookError::Malformed("message_created without message".into()))?;
            let Some(sender) = m.sender.as_ref().filter(|s| !s.is_bot) else { return Ok(Vec::new()) };
            let text = m.body.as_ref().and_then(|b| b.text.clone()).filter(|t| !t.is_empty());
            Ok(vec![WebhookEvent::Inbound(InboundMessage {
                from: from(sender, &m.recipient),
                text,
                at: at(m.timestamp),
            })])
        }
        "message_callback" => {
            let c = update
                .callback
                .as_ref()
                .ok_or_else(|| WebhookError::Malformed("message_callback without callback".into()))?;
            let from = match &update.message {
                Some(m) => from(&c.user, &m.recipient),
                None => c.user.user_id.to_string(),
            };
            Ok(vec![WebhookEvent::Inbound(InboundMessage { from, text: c.payload.clone(), at: at(c.timestamp) })])
        }
        _ => Ok(Vec::new()),
    }
}

impl Max {
    /// Checks `X-Max-Bot-Api-Secret` against `webhook_secret`.
    pub fn verify(&self, request: &WebhookRequest<'_>) -> Result<(), WebhookError> {
        verify_shared_secret(request, SECRET_HEADER, self.config.webhook_secret.as_ref(), "webhook_secret")
    }
}

impl Intake for Max {
    fn adapter(&self) -> &str {
        ADAPTER
    }

    fn receive(&self, request: &WebhookRequest<'_>) -> Result<Vec<WebhookEvent>, WebhookError> {
        self.verify(request)?;
        parse_update(request.body)
    }
}
