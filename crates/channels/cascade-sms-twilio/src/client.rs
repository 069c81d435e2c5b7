//! Sending: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`.

use std::sync::Arc;

use async_trait::async_trait;
use cascade_channel_kit::media::Source;
use cascade_channel_kit::{ConfigError, http};
use cascade_engine::{
    Accepted, AddressKind, Capabilities, Channel, ChannelInfo, Connection, ConnectionId, Cost, MediaLimits, SendError,
    SendRequest, Status,
};
use serde::Deserialize;

use crate::TwilioConfig;
use crate::error::rule_for;

/// The adapter name statuses are matched by.
pub const ADAPTER: &str = "twilio";
/// The channel name a connection serves unless its config names another.
pub const DEFAULT_CHANNEL: &str = "sms";
/// Longest body, in characters.
pub const MAX_BODY: usize = 1600;
/// MMS files: images (JPEG, PNG, GIF) up to 5 MB, any other type up to 500 KB.
pub const MMS_LIMITS: MediaLimits =
    MediaLimits { image: Some(5_000_000), video: Some(500_000), audio: Some(500_000), document: Some(500_000) };

/// A Twilio sender as a cascade [`Channel`] (and, through
/// [`Intake`](cascade_channel_kit::Intake), its status and message webhooks).
pub struct Twilio {
    pub(crate) config: TwilioConfig,
    info: ChannelInfo,
    url: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Twilio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Twilio").field("config", &self.config).field("info", &self.info).finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Created {
    sid: String,
    #[serde(default)]
    price: Option<String>,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
}

impl Twilio {
    /// An adapter for one sender. Fails, naming the key, on a config that cannot work.
    pub fn new(config: TwilioConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            cascade_channel_kit::config::base_url("base_url", &config.base_url)?,
            config.account_sid
        );
        let capabilities = Capabilities {
            address_kinds: vec![AddressKind::Phone],
            max_file_size: if config.mms { MMS_LIMITS } else { MediaLimits::NONE },
            highest_status: Status::Delivered,
            inbound: true,
            buttons: false,
            conversation_window: None,
        };
        let info = ChannelInfo { channel: config.channel.as_str().into(), adapter: ADAPTER.into(), capabilities };
        Ok(Self { http: http::client(config.timeout), info, url, config })
    }

    /// The engine connection for this sender, with its price and rate limit.
    pub fn connection(self: &Arc<Self>, id: impl Into<ConnectionId>) -> Connection {
        cascade_channel_kit::config::connection(self.clone(), id, self.config.price, self.config.rate_limit)
    }

    /// The form parameters of a send, in the order they are posted.
    pub fn form(&self, request: &SendRequest) -> Result<Vec<(&'static str, String)>, SendError> {
        let content = &request.content;
        let mut form = vec![("To", request.address.value.trim().to_owned())];
        match (&self.config.messaging_service_sid, &self.config.from) {
            (Some(mg), _) => form.push(("MessagingServiceSid", mg.clone())),
            (None, Some(from)) => form.push(("From", from.clone())),
            (None, None) => return Err(SendError::connection("no_sender", "neither from nor messaging_service_sid")),
        }
        if content.text.chars().count() > MAX_BODY {
            return Err(SendError::rejected("body_too_long", format!("SMS body over {MAX_BODY} characters")));
        }
        if !content.text.is_empty() {
            form.push(("Body", content.text.clone()));
        }
        if let Some(file) = content.attachment.as_ref().filter(|_| self.config.mms) {
            match Source::of(file)? {
                Source::Url(url) => form.push(("MediaUrl", url)),
                Source::File(_) => {
                    return Err(SendError::rejected(
                        "media_not_public",
                        "MMS needs a public URL Twilio can fetch; this file is only on this machine",
                    ));
                }
            }
        }
        if form.iter().all(|(k, _)| *k != "Body" && *k != "MediaUrl") {
            return Err(SendError::rejected("empty_message", "nothing to send: no text and no file"));
        }
        if let Some(callback) = &self.config.status_callback {
            // Checked as a URL, which forgives surrounding spaces; Twilio is given it without them.
            form.push(("StatusCallback", callback.trim().to_owned()));
        }
        Ok(form)
    }
}

#[async_trait]
impl Channel for Twilio {
    fn info(&self) -> &ChannelInfo {
        &self.info
    }

    async fn send(&self, request: &SendRequest) -> Result<Accepted, SendError> {
        let form = self.form(request)?;
        let (user, password) = match (&self.config.api_key_sid, &self.config.api_key_secret) {
            (Some(sk), Some(secret)) => (sk.as_str(), secret.expose()),
            _ => (self.config.account_sid.as_str(), self.config.auth_token.expose()),
        };
        let answer = http::call(self.http.post(&self.url).basic_auth(user, Some(password)).form(&form)).await?;
        if answer.status.is_success() {
            let Ok(created) = answer.json::<Created>() else { return Ok(http::unreadable_success(request)) };
            let mut accepted = Accepted::new(created.sid);
            accepted.cost = created.price.as_deref().and_then(|p| p.trim_start_matches('-').parse::<Cost>().ok());
            return Ok(accepted);
        }
        let Ok(error) = answer.json::<ApiError>() else { return Err(answer.unexpected()) };
        let Some(code) = error.code else { return Err(answer.unexpected()) };
        let class = rule_for(code).map_or_else(|| http::status_class(answer.status), |r| r.class);
        let mut e = SendError::new(class, code.to_string(), error.message.unwrap_or_default());
        if let Some(after) = http::retry_after(&answer.headers) {
            e = e.with_retry_after(after);
        }
        Err(e)
    }
}
