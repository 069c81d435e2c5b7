//! The connection config of one Telegram bot.

use std::time::Duration;

use cascade_channel_kit::{ConfigError, Secret, config};
use cascade_engine::{Cost, RateLimit};
use serde::Deserialize;

/// Telegram's Bot API endpoint.
pub const DEFAULT_BASE_URL: &str = "https://api.telegram.org";

/// One bot, as configured (TOML/JSON). Only `bot_token` is required.
///
/// ```
/// let config: cascade_telegram::TelegramConfig = serde_json::from_str(
///     r#"{"bot_token": "123456:ABC-DEF", "webhook_secret": "s3cret-token", "price": "0"}"#,
/// ).unwrap();
/// assert!(!format!("{config:?}").contains("ABC-DEF"));
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// The bot's token from @BotFather.
    pub bot_token: Secret,
    /// The `secret_token` given to `setWebhook`; Telegram sends it back in
    /// `X-Telegram-Bot-Api-Secret-Token` and webhooks without it are refused.
    #[serde(default)]
    pub webhook_secret: Option<Secret>,
    /// The API root (default `https://api.telegram.org`; a local Bot API server, a proxy or
    /// the sandbox).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// `HTML`, `MarkdownV2` or `Markdown` to format texts; plain text when unset.
    #[serde(default)]
    pub parse_mode: Option<String>,
    /// Turns link previews off.
    #[serde(default)]
    pub disable_link_preview: bool,
    /// The channel name steps use (default `telegram`).
    #[serde(default = "default_channel")]
    pub channel: String,
    /// The price of one message (Telegram bots send for free; set it to count your own cost).
    #[serde(default)]
    pub price: Option<Cost>,
    /// At most this many sends (Telegram allows about 30 messages per second per bot).
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// The limit for one API call.
    #[serde(default = "config::default_timeout", with = "cascade_engine::model::duration")]
    pub timeout: Duration,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

fn default_channel() -> String {
    crate::DEFAULT_CHANNEL.to_owned()
}

impl TelegramConfig {
    /// A config with this token and the defaults.
    pub fn new(bot_token: impl Into<Secret>) -> Self {
        Self {
            bot_token: bot_token.into(),
            webhook_secret: None,
            base_url: default_base_url(),
            parse_mode: None,
            disable_link_preview: false,
            channel: default_channel(),
            price: None,
            rate_limit: None,
            timeout: config::default_timeout(),
        }
    }

    /// Checks the settings; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        config::base_url("base_url", &self.base_url)?;
        let token = self.bot_token.expose();
        if token.contains('/') || token.chars().any(char::is_whitespace) {
            return Err(ConfigError::new("bot_token", "must be the token as @BotFather gives it (no '/' or spaces)"));
        }
        if let Some(mode) = &self.parse_mode
            && !matches!(mode.as_str(), "HTML" | "MarkdownV2" | "Markdown")
        {
            return Err(ConfigError::new("parse_mode", format!("must be HTML, MarkdownV2 or Markdown, not {mode:?}")));
        }
        if let Some(secret) = &self.webhook_secret {
            let s = secret.expose();
            if s.is_empty() || s.len() > 256 || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return Err(ConfigError::new(
                    "webhook_secret",
                    "Telegram allows 1-256 characters A-Z, a-z, 0-9, _ and -",
                ));
            }
        }
        config::required("channel", &self.channel)
    }
}
