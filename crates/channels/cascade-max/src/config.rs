//! The connection config of one MAX bot.

use std::time::Duration;

use cascade_channel_kit::{ConfigError, Secret, config};
use cascade_engine::{Cost, RateLimit};
use serde::Deserialize;

/// The MAX bot API root the platform asks bots to use.
pub const DEFAULT_BASE_URL: &str = "https://platform-api2.max.ru";

/// One MAX bot, as configured (TOML/JSON). `access_token` is required.
///
/// ```
/// let config: cascade_max::MaxConfig = serde_json::from_str(
///     r#"{"access_token": "f9LHodD0cOKmJcmsPZ6DSBrVNl3yA8bT", "webhook_secret": "hook-secret_1"}"#,
/// ).unwrap();
/// assert!(!format!("{config:?}").contains("f9LHodD0"));
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaxConfig {
    /// The bot's token (`Authorization: <token>`; never logged).
    pub access_token: Secret,
    /// The `secret` given to `POST /subscriptions`; MAX sends it back in
    /// `X-Max-Bot-Api-Secret` and webhooks without it are refused.
    #[serde(default)]
    pub webhook_secret: Option<Secret>,
    /// The API root (default `https://platform-api2.max.ru`; a proxy or the sandbox).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The text's markup: `markdown` or `html` (default: plain text).
    #[serde(default)]
    pub format: Option<String>,
    /// Whether contacts get a push notification (default `true`).
    #[serde(default = "yes")]
    pub notify: bool,
    /// Whether to skip link previews (default `false`).
    #[serde(default)]
    pub disable_link_preview: bool,
    /// The first wait before sending again when MAX has not finished processing an upload
    /// (`attachment.not.ready`); it doubles on each of three further tries (default `1s`).
    #[serde(default = "default_attachment_wait", with = "cascade_engine::model::duration")]
    pub attachment_wait: Duration,
    /// The channel name steps use (default `max`).
    #[serde(default = "default_channel")]
    pub channel: String,
    /// The price of one message.
    #[serde(default)]
    pub price: Option<Cost>,
    /// At most this many sends (MAX allows 30 requests a second per bot).
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

fn default_attachment_wait() -> Duration {
    Duration::from_secs(1)
}

fn yes() -> bool {
    true
}

impl MaxConfig {
    /// A config with the required settings and the defaults.
    pub fn new(access_token: impl Into<Secret>) -> Self {
        Self {
            access_token: access_token.into(),
            webhook_secret: None,
            base_url: default_base_url(),
            format: None,
            notify: true,
            disable_link_preview: false,
            attachment_wait: default_attachment_wait(),
            channel: default_channel(),
            price: None,
            rate_limit: None,
            timeout: config::default_timeout(),
        }
    }

    /// Checks the settings; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        config::base_url("base_url", &self.base_url)?;
        config::required("channel", &self.channel)?;
        if let Some(format) = &self.format
            && !matches!(format.as_str(), "markdown" | "html")
        {
            return Err(ConfigError::new("format", format!("must be markdown or html, not {format:?}")));
        }
        if let Some(secret) = &self.webhook_secret {
            let s = secret.expose();
            if !(5..=256).contains(&s.len()) || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return Err(ConfigError::new("webhook_secret", "MAX allows 5-256 characters A-Z, a-z, 0-9, _ and -"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_key() {
        let bad = |f: fn(&mut MaxConfig)| {
            let mut c = MaxConfig::new("token");
            f(&mut c);
            c.validate().expect_err("invalid").key
        };
        assert_eq!(bad(|c| c.format = Some("MarkdownV2".into())), "format");
        assert_eq!(bad(|c| c.webhook_secret = Some("abc".into())), "webhook_secret");
        assert_eq!(bad(|c| c.webhook_secret = Some("has space".into())), "webhook_secret");
        assert_eq!(bad(|c| c.base_url = "platform-api2.max.ru".into()), "base_url");
        assert!(MaxConfig::new("token").validate().is_ok());
    }
}
