//! The connection config of one Viber bot.

use std::time::Duration;

use cascade_channel_kit::{ConfigError, Secret, config};
use cascade_engine::{Cost, RateLimit};
use serde::Deserialize;

/// Viber's REST Bot API root.
pub const DEFAULT_BASE_URL: &str = "https://chatapi.viber.com/pa";

/// One Viber bot, as configured (TOML/JSON). `auth_token` and `sender_name` are required.
///
/// ```
/// let config: cascade_viber::ViberConfig = serde_json::from_str(
///     r#"{"auth_token": "4453b6ac12345678-e02c5f12174805f9-daec9cbb5448c51f", "sender_name": "Acme"}"#,
/// ).unwrap();
/// assert!(!format!("{config:?}").contains("4453b6ac"));
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViberConfig {
    /// The bot's token (`X-Viber-Auth-Token`); Viber also signs callbacks with it.
    pub auth_token: Secret,
    /// The sender name shown with each message (up to 28 characters).
    pub sender_name: String,
    /// The sender's avatar URL.
    #[serde(default)]
    pub sender_avatar: Option<String>,
    /// The API root (default `https://chatapi.viber.com/pa`; a proxy or the sandbox).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The channel name steps use (default `viber`).
    #[serde(default = "default_channel")]
    pub channel: String,
    /// The price of one message.
    #[serde(default)]
    pub price: Option<Cost>,
    /// At most this many sends.
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

impl ViberConfig {
    /// A config with the required settings and the defaults.
    pub fn new(auth_token: impl Into<Secret>, sender_name: impl Into<String>) -> Self {
        Self {
            auth_token: auth_token.into(),
            sender_name: sender_name.into(),
            sender_avatar: None,
            base_url: default_base_url(),
            channel: default_channel(),
            price: None,
            rate_limit: None,
            timeout: config::default_timeout(),
        }
    }

    /// Checks the settings; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        config::base_url("base_url", &self.base_url)?;
        config::required("sender_name", &self.sender_name)?;
        if self.sender_name.chars().count() > 28 {
            return Err(ConfigError::new("sender_name", "Viber allows at most 28 characters"));
        }
        config::required("channel", &self.channel)
    }
}
