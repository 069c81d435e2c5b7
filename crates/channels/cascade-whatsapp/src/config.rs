//! The connection config of one WhatsApp business phone number.

use std::time::Duration;

use cascade_channel_kit::{ConfigError, Secret, config};
use cascade_engine::{Cost, RateLimit};
use serde::Deserialize;

/// Meta's Graph API endpoint.
pub const DEFAULT_BASE_URL: &str = "https://graph.facebook.com";
/// The Graph API version used unless configured.
pub const DEFAULT_API_VERSION: &str = "v24.0";

/// One business phone number, as configured (TOML/JSON). `access_token` and `phone_number_id`
/// are required; `app_secret` and `verify_token` are needed for webhooks.
///
/// ```
/// let config: cascade_whatsapp::WhatsAppConfig = serde_json::from_str(
///     r#"{"access_token": "EAAG...", "phone_number_id": "106540352242922", "app_secret": "f00"}"#,
/// ).unwrap();
/// assert!(!format!("{config:?}").contains("EAAG"));
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppConfig {
    /// A system-user access token with `whatsapp_business_messaging`.
    pub access_token: Secret,
    /// The business phone number's id (not the number itself).
    pub phone_number_id: String,
    /// The app secret: webhooks are signed with it (`X-Hub-Signature-256`).
    #[serde(default)]
    pub app_secret: Option<Secret>,
    /// The token typed into the app dashboard for the webhook's verification handshake.
    #[serde(default)]
    pub verify_token: Option<Secret>,
    /// The API root (default `https://graph.facebook.com`; a proxy or the sandbox).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The Graph API version (default `v24.0`).
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// Upload files that have a public URL too, and send them by media id (Meta's advice),
    /// instead of letting WhatsApp fetch the link. Local files are always uploaded.
    #[serde(default)]
    pub upload_links: bool,
    /// Ask WhatsApp to render a preview of the first link in a text.
    #[serde(default)]
    pub link_preview: bool,
    /// The channel name steps use (default `whatsapp`).
    #[serde(default = "default_channel")]
    pub channel: String,
    /// The price of one message, for the cost report.
    #[serde(default)]
    pub price: Option<Cost>,
    /// At most this many sends (Cloud API's default throughput is 80 messages per second).
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// The limit for one API call.
    #[serde(default = "config::default_timeout", with = "cascade_engine::model::duration")]
    pub timeout: Duration,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

fn default_api_version() -> String {
    DEFAULT_API_VERSION.to_owned()
}

fn default_channel() -> String {
    crate::DEFAULT_CHANNEL.to_owned()
}

impl WhatsAppConfig {
    /// A config with the required settings and the defaults.
    pub fn new(access_token: impl Into<Secret>, phone_number_id: impl Into<String>) -> Self {
        Self {
            access_token: access_token.into(),
            phone_number_id: phone_number_id.into(),
            app_secret: None,
            verify_token: None,
            base_url: default_base_url(),
            api_version: default_api_version(),
            upload_links: false,
            link_preview: false,
            channel: default_channel(),
            price: None,
            rate_limit: None,
            timeout: config::default_timeout(),
        }
    }

    /// Checks the settings; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        config::base_url("base_url", &self.base_url)?;
        if self.phone_number_id.is_empty() || !self.phone_number_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(ConfigError::new(
                "phone_number_id",
                format!("must be the numeric phone number id from the app dashboard, not {:?}", self.phone_number_id),
            ));
        }
        let v = self.api_version.strip_prefix('v').unwrap_or_default();
        if !v.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())) {
            return Err(ConfigError::new(
                "api_version",
                format!("must look like \"v24.0\", not {:?}", self.api_version),
            ));
        }
        config::required("channel", &self.channel)
    }
}
