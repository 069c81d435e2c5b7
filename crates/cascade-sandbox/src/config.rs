//! The sandbox's accounts: the credentials each emulated provider accepts, and where it sends
//! its webhooks.
//!
//! Every field has a fixed default, so a sandbox and the demo's connections agree without any
//! setup; the defaults are the `DEFAULT_*` constants.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::scenario::Scenarios;

/// The WhatsApp access token the sandbox accepts by default.
pub const DEFAULT_WHATSAPP_TOKEN: &str = "sandbox-whatsapp-token";
/// The WhatsApp app secret webhooks are signed with by default.
pub const DEFAULT_WHATSAPP_APP_SECRET: &str = "sandbox-whatsapp-app-secret";
/// The WhatsApp phone number id the sandbox knows by default.
pub const DEFAULT_WHATSAPP_PHONE_NUMBER_ID: &str = "100000000000001";
/// The Telegram bot token the sandbox accepts by default.
pub const DEFAULT_TELEGRAM_TOKEN: &str = "100000001:sandbox-telegram-token";
/// The Twilio account SID by default.
pub const DEFAULT_TWILIO_ACCOUNT_SID: &str = "AC00000000000000000000000000000001";
/// The Twilio auth token by default (also the webhook signing key).
pub const DEFAULT_TWILIO_AUTH_TOKEN: &str = "sandbox-twilio-auth-token";
/// The Viber auth token by default (also the webhook signing key).
pub const DEFAULT_VIBER_TOKEN: &str = "sandbox-viber-token";
/// The MAX access token by default.
pub const DEFAULT_MAX_TOKEN: &str = "sandbox-max-token";

/// The WhatsApp Cloud API account.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WhatsAppAccount {
    /// The bearer token sends must carry.
    pub access_token: String,
    /// The key of `X-Hub-Signature-256` on webhooks.
    pub app_secret: String,
    /// The sender's phone number id (the path segment of `/messages`).
    pub phone_number_id: String,
    /// Where status and message webhooks go (none: not sent).
    pub webhook_url: Option<String>,
    /// Refuse every free-form message (anything but a template) with error 131047, as the real
    /// service does outside a contact's 24-hour window: the sandbox keeps no window, so with this
    /// on only templates go through. Off by default so that the demo needs no templates.
    pub enforce_window: bool,
}

impl Default for WhatsAppAccount {
    fn default() -> Self {
        Self {
            access_token: DEFAULT_WHATSAPP_TOKEN.into(),
            app_secret: DEFAULT_WHATSAPP_APP_SECRET.into(),
            phone_number_id: DEFAULT_WHATSAPP_PHONE_NUMBER_ID.into(),
            webhook_url: None,
            enforce_window: false,
        }
    }
}

/// The Telegram bot.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelegramAccount {
    /// The token in `/bot<token>/`.
    pub bot_token: String,
    /// Sent back in `X-Telegram-Bot-Api-Secret-Token` (as `setWebhook`'s `secret_token`).
    pub secret_token: Option<String>,
    /// Where updates (replies) go.
    pub webhook_url: Option<String>,
}

impl Default for TelegramAccount {
    fn default() -> Self {
        Self { bot_token: DEFAULT_TELEGRAM_TOKEN.into(), secret_token: None, webhook_url: None }
    }
}

/// The Twilio account.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TwilioAccount {
    /// The account SID (Basic auth user and path segment).
    pub account_sid: String,
    /// The auth token (Basic auth password, and the key of `X-Twilio-Signature`).
    pub auth_token: String,
    /// Where incoming messages (replies) go; status callbacks go to each message's
    /// `StatusCallback`.
    pub inbound_url: Option<String>,
}

impl Default for TwilioAccount {
    fn default() -> Self {
        Self {
            account_sid: DEFAULT_TWILIO_ACCOUNT_SID.into(),
            auth_token: DEFAULT_TWILIO_AUTH_TOKEN.into(),
            inbound_url: None,
        }
    }
}

/// The Viber bot.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ViberAccount {
    /// `X-Viber-Auth-Token`, and the key of `X-Viber-Content-Signature`.
    pub auth_token: String,
    /// Where callbacks go (also set by `set_webhook`).
    pub webhook_url: Option<String>,
}

impl Default for ViberAccount {
    fn default() -> Self {
        Self { auth_token: DEFAULT_VIBER_TOKEN.into(), webhook_url: None }
    }
}

/// The MAX bot.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaxAccount {
    /// The `Authorization` token.
    pub access_token: String,
    /// Where updates go (also set by `POST /subscriptions`).
    pub webhook_url: Option<String>,
    /// Sent back in `X-Max-Bot-Api-Secret` (also set by `POST /subscriptions`).
    pub secret: Option<String>,
}

impl Default for MaxAccount {
    fn default() -> Self {
        Self { access_token: DEFAULT_MAX_TOKEN.into(), webhook_url: None, secret: None }
    }
}

/// Everything a sandbox needs.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// Where to listen (default `127.0.0.1:0`: a free port).
    pub listen: SocketAddr,
    /// Recipients' behaviours (set in code or loaded with [`Scenarios::load`]).
    #[serde(skip)]
    pub scenarios: Scenarios,
    /// WhatsApp.
    pub whatsapp: WhatsAppAccount,
    /// Telegram.
    pub telegram: TelegramAccount,
    /// Twilio (SMS).
    pub twilio: TwilioAccount,
    /// Viber.
    pub viber: ViberAccount,
    /// MAX.
    pub max: MaxAccount,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            scenarios: Scenarios::default(),
            whatsapp: WhatsAppAccount::default(),
            telegram: TelegramAccount::default(),
            twilio: TwilioAccount::default(),
            viber: ViberAccount::default(),
            max: MaxAccount::default(),
        }
    }
}
