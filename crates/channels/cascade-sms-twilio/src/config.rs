//! The connection config of one Twilio sender.

use std::time::Duration;

use cascade_channel_kit::{ConfigError, Secret, config};
use cascade_engine::{Cost, RateLimit};
use serde::Deserialize;

/// Twilio's REST API endpoint.
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

/// One Twilio sender (a number, an alphanumeric sender id, or a Messaging Service), as
/// configured (TOML/JSON). `account_sid`, `auth_token` and one of `from` or
/// `messaging_service_sid` are required.
///
/// ```
/// let config: cascade_sms_twilio::TwilioConfig = serde_json::from_str(r#"{
///     "account_sid": "AC0123456789abcdef0123456789abcdef", "auth_token": "t0ken",
///     "from": "+15005550006", "status_callback": "https://cascade.example.com/webhooks/sms-us"
/// }"#).unwrap();
/// assert!(!format!("{config:?}").contains("t0ken"));
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    /// The account SID (`AC…`), part of the API path.
    pub account_sid: String,
    /// The account's primary auth token: Twilio signs webhooks with it, and it authenticates
    /// API calls unless an API key is set.
    pub auth_token: Secret,
    /// An API key SID (`SK…`) to authenticate API calls with instead of the auth token
    /// (Twilio's advice for production).
    #[serde(default)]
    pub api_key_sid: Option<String>,
    /// The API key's secret.
    #[serde(default)]
    pub api_key_secret: Option<Secret>,
    /// The sender: a Twilio number in E.164, a short code or an alphanumeric sender id.
    #[serde(default)]
    pub from: Option<String>,
    /// A Messaging Service (`MG…`) that picks the sender from its pool, instead of `from`.
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    /// The URL Twilio posts status callbacks to: the server's webhook for this connection
    /// (`https://<public host>/webhooks/<connection id>`). Without it, no delivery statuses come back.
    #[serde(default)]
    pub status_callback: Option<String>,
    /// Send a file as MMS (`MediaUrl`; public URLs only, up to 5 MB). Off by default: MMS
    /// works in few countries. Without it, the channel carries no files.
    #[serde(default)]
    pub mms: bool,
    /// The API root (default `https://api.twilio.com`; a regional edge, a proxy or the sandbox).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The channel name steps use (default `sms`).
    #[serde(default = "default_channel")]
    pub channel: String,
    /// The price of one message when Twilio does not say (it usually does not at send time).
    #[serde(default)]
    pub price: Option<Cost>,
    /// At most this many sends (e.g. a long code's 1 message per second).
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

impl TwilioConfig {
    /// A config sending from `from` with the defaults.
    pub fn new(account_sid: impl Into<String>, auth_token: impl Into<Secret>, from: impl Into<String>) -> Self {
        Self {
            account_sid: account_sid.into(),
            auth_token: auth_token.into(),
            api_key_sid: None,
            api_key_secret: None,
            from: Some(from.into()),
            messaging_service_sid: None,
            status_callback: None,
            mms: false,
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
        if !sid_like(&self.account_sid, "AC") {
            return Err(ConfigError::new("account_sid", "must be the account SID: AC and 32 hex digits"));
        }
        match (&self.from, &self.messaging_service_sid) {
            (None, None) => return Err(ConfigError::new("from", "set `from` or `messaging_service_sid`")),
            (Some(f), _) if f.trim().is_empty() => return Err(ConfigError::new("from", "must not be empty")),
            (_, Some(mg)) if !sid_like(mg, "MG") => {
                return Err(ConfigError::new("messaging_service_sid", "must be MG and 32 hex digits"));
            }
            _ => {}
        }
        match (&self.api_key_sid, &self.api_key_secret) {
            (Some(sk), Some(_)) if !sid_like(sk, "SK") => {
                return Err(ConfigError::new("api_key_sid", "must be SK and 32 hex digits"));
            }
            (Some(_), None) => return Err(ConfigError::new("api_key_secret", "required with api_key_sid")),
            (None, Some(_)) => return Err(ConfigError::new("api_key_sid", "required with api_key_secret")),
            _ => {}
        }
        if let Some(url) = &self.status_callback {
            config::base_url("status_callback", url.split('?').next().unwrap_or_default())?;
        }
        config::required("channel", &self.channel)
    }
}

fn sid_like(s: &str, prefix: &str) -> bool {
    s.len() == 34 && s.starts_with(prefix) && s[2..].chars().all(|c| c.is_ascii_hexdigit())
}
