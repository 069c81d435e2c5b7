//! The connection config of one webhook channel.

use std::collections::BTreeMap;
use std::time::Duration;

use cascade_channel_kit::{ConfigError, Secret, config};
use cascade_engine::{AddressKind, Cost, RateLimit, Status};
use serde::Deserialize;

/// One HTTP service acting as a channel, as configured (TOML/JSON). `url`, `secret` and
/// `channel` are required.
///
/// ```
/// let config: cascade_webhook::WebhookConfig = serde_json::from_str(r#"{
///     "channel": "line", "url": "https://bridge.example.com/send", "secret": "whsec_123",
///     "address_kinds": ["channel_id"], "highest_status": "read", "inbound": true
/// }"#).unwrap();
/// assert!(!format!("{config:?}").contains("whsec_123"));
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The channel name steps use (`line`, `push`, …).
    pub channel: String,
    /// Where sends are POSTed.
    pub url: String,
    /// The shared secret: sends are signed with it, and status webhooks must be.
    pub secret: Secret,
    /// The contact addresses the service takes, in order of preference (default: the contact's
    /// address for this channel, then phone, then email).
    #[serde(default = "default_kinds")]
    pub address_kinds: Vec<AddressKind>,
    /// The best status the service reports (default `delivered`).
    #[serde(default = "default_highest")]
    pub highest_status: Status,
    /// Whether the service posts contacts' replies back.
    #[serde(default)]
    pub inbound: bool,
    /// Whether it can show buttons.
    #[serde(default)]
    pub buttons: bool,
    /// The largest file it takes (it gets the file's URL, not its bytes); none if unset.
    #[serde(default)]
    pub max_file_size: Option<u64>,
    /// Extra headers on every send (e.g. the service's own API key); values are secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// The price of one message.
    #[serde(default)]
    pub price: Option<Cost>,
    /// At most this many sends.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// The limit for one call.
    #[serde(default = "config::default_timeout", with = "cascade_engine::model::duration")]
    pub timeout: Duration,
}

fn default_kinds() -> Vec<AddressKind> {
    vec![AddressKind::ChannelId, AddressKind::Phone, AddressKind::Email]
}

fn default_highest() -> Status {
    Status::Delivered
}

impl WebhookConfig {
    /// A config with the required settings and the defaults.
    pub fn new(channel: impl Into<String>, url: impl Into<String>, secret: impl Into<Secret>) -> Self {
        Self {
            channel: channel.into(),
            url: url.into(),
            secret: secret.into(),
            address_kinds: default_kinds(),
            highest_status: default_highest(),
            inbound: false,
            buttons: false,
            max_file_size: None,
            headers: BTreeMap::new(),
            price: None,
            rate_limit: None,
            timeout: config::default_timeout(),
        }
    }

    /// Checks the settings; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        config::required("channel", &self.channel)?;
        // Set in code, a secret skips the blank check of the config file; signing with an empty
        // one would let anyone forge our sends and the service's status reports.
        config::required("secret", self.secret.expose())?;
        let base = self.url.trim().split('?').next().unwrap_or_default();
        config::base_url("url", base)?;
        if self.address_kinds.is_empty() {
            return Err(ConfigError::new("address_kinds", "name at least one of channel_id, phone, email"));
        }
        if matches!(self.highest_status, Status::Failed | Status::Clicked) {
            return Err(ConfigError::new("highest_status", "must be accepted, sent, delivered, read or replied"));
        }
        for name in self.headers.keys() {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(ConfigError::new(format!("headers.{name}"), "not a valid header name"));
            }
        }
        Ok(())
    }
}
