//! Webhook intake: Telegram `Update`s, authenticated by `X-Telegram-Bot-Api-Secret-Token`.
//!
//! Bots receive no delivery statuses, so only inbound messages come out of a webhook: a
//! `message` from a contact (text, or a file's caption) becomes an [`InboundMessage`] whose
//! `from` is the chat id, the same value the contact's `telegram` address holds. Everything
//! else (`edited_message`, `my_chat_member` when a contact blocks the bot, callback queries…)
//! is accepted and ignored.

use cascade_channel_kit::webhook::verify_shared_secret;
use cascade_channel_kit::{Intake, WebhookError, WebhookEvent, WebhookRequest};
use cascade_engine::InboundMessage;
use chrono::{TimeZone, Utc};
use serde::Deserialize;

use crate::Telegram;
use crate::client::ADAPTER;

/// The header carrying the webhook's secret token.
pub const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

#[derive(Deserialize)]
struct Update {
    #[allow(dead_code)]
    update_id: i64,
    #[serde(default)]
    message: Option<Message>,
}

#[derive(Deserialize)]
struct Message {
    date: i64,
    chat: Chat,
    #[serde(default)]
    from: Option<User>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    caption: Option<String>,
}

#[derive(Deserialize)]
struct Chat {
    id: i64,
}

#[derive(Deserialize)]
struct User {
    #[serde(default)]
    is_bot: bool,
}

/// Parses one `Update` body (without checking the secret): the inbound message it carries, if any.
pub fn parse_update(body: &[u8]) -> Result<Vec<WebhookEvent>, WebhookError> {
    let update: Update =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(format!("Telegram Update: {e}")))?;
    let Some(m) = update.message else { return Ok(Vec::new()) };
    if m.from.as_ref().is_some_and(|u| u.is_bot) {
        return Ok(Vec::new());
    }
    Ok(vec![WebhookEvent::Inbound(InboundMessage {
        from: m.chat.id.to_string(),
        text: m.text.or(m.caption),
        at: Utc.timestamp_opt(m.date, 0).single(),
    })])
}

impl Telegram {
    /// Checks the secret token header against the configured `webhook_secret`.
    pub fn verify(&self, request: &WebhookRequest<'_>) -> Result<(), WebhookError> {
        verify_shared_secret(request, SECRET_HEADER, self.config.webhook_secret.as_ref(), "webhook_secret")
    }
}

impl Intake for Telegram {
    fn adapter(&self) -> &str {
        ADAPTER
    }

    fn receive(&self, request: &WebhookRequest<'_>) -> Result<Vec<WebhookEvent>, WebhookError> {
        self.verify(request)?;
        parse_update(request.body)
    }
}
