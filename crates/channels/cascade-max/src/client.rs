//! Sending: `POST {base_url}/messages?user_id=…` (or `chat_id=…`), files uploaded first.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cascade_channel_kit::media::{self, Source};
use cascade_channel_kit::{ConfigError, http};
use cascade_engine::{
    Accepted, AddressKind, Attachment, Button, Capabilities, Channel, ChannelInfo, Connection, ConnectionId, MediaKind,
    MediaLimits, SendError, SendRequest, Status,
};
use reqwest::multipart::{Form, Part};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::MaxConfig;
use crate::error::classify;

/// The adapter name.
pub const ADAPTER: &str = "max-bot";
/// The channel name a connection serves unless its config names another.
pub const DEFAULT_CHANNEL: &str = "max";
/// Longest text, in characters.
pub const MAX_TEXT: usize = 4000;
/// The updates [`Max::subscribe`] asks for.
pub const UPDATE_TYPES: &[&str] = &["message_created", "message_callback", "bot_started"];
/// How many times a message whose upload MAX is still processing is sent again.
const NOT_READY_RETRIES: u32 = 3;
/// File limits. MAX documents none for bots; these are assumed (the platform's apps take files
/// of this size) and keep a step from uploading something a contact's phone will not open.
pub const LIMITS: MediaLimits = MediaLimits {
    image: Some(10_000_000),
    video: Some(100_000_000),
    audio: Some(100_000_000),
    document: Some(100_000_000),
};

/// Where a message goes: a user (a dialog with the bot) or a group chat / channel.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Recipient {
    /// `user_id=`: the contact's `max` address is their user id.
    User(i64),
    /// `chat_id=`: the address is `chat:<id>`.
    Chat(i64),
}

impl Recipient {
    /// Reads a contact's `max` address: `<user id>` or `chat:<chat id>`. Anything else is
    /// `unreachable`: it cannot name a MAX user.
    pub fn parse(address: &str) -> Result<Self, SendError> {
        let address = address.trim();
        let (make, id): (fn(i64) -> Recipient, &str) = match address.strip_prefix("chat:") {
            Some(id) => (Recipient::Chat, id),
            None => (Recipient::User, address),
        };
        id.trim().parse().map(make).map_err(|_| {
            SendError::unreachable("invalid_address", format!("{address:?} is not a MAX user id or chat:<chat id>"))
        })
    }

    fn query(self) -> (&'static str, String) {
        match self {
            Recipient::User(id) => ("user_id", id.to_string()),
            Recipient::Chat(id) => ("chat_id", id.to_string()),
        }
    }
}

/// A MAX bot as a cascade [`Channel`] (and, through [`Intake`](cascade_channel_kit::Intake),
/// its webhook updates).
pub struct Max {
    pub(crate) config: MaxConfig,
    info: ChannelInfo,
    base: String,
    /// For the API and for fetching files to upload (no redirects for either; the token goes
    /// per request, so a fetch does not carry it).
    http: reqwest::Client,
}

impl std::fmt::Debug for Max {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Max").field("config", &self.config).field("info", &self.info).finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct Sent {
    message: SentMessage,
}

#[derive(Deserialize)]
struct SentMessage {
    body: SentBody,
}

#[derive(Deserialize)]
struct SentBody {
    mid: String,
}

#[derive(Deserialize)]
struct UploadSlot {
    url: String,
    #[serde(default)]
    token: Option<String>,
}

#[derive(Deserialize)]
struct Uploaded {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    photos: Option<Map<String, Value>>,
}

impl Max {
    /// An adapter for one bot. Fails, naming the key, on a config that cannot work.
    pub fn new(config: MaxConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let base = cascade_channel_kit::config::base_url("base_url", &config.base_url)?;
        let capabilities = Capabilities {
            address_kinds: vec![AddressKind::ChannelId],
            max_file_size: LIMITS,
            highest_status: Status::Sent,
            inbound: true,
            buttons: true,
            conversation_window: None,
        };
        let info = ChannelInfo { channel: config.channel.as_str().into(), adapter: ADAPTER.into(), capabilities };
        Ok(Self { http: http::client(config.timeout), info, base, config })
    }

    /// The engine connection for this bot, with its price and rate limit.
    pub fn connection(self: &Arc<Self>, id: impl Into<ConnectionId>) -> Connection {
        cascade_channel_kit::config::connection(self.clone(), id, self.config.price, self.config.rate_limit)
    }

    fn token(&self) -> &str {
        self.config.access_token.expose()
    }

    /// An API call; a failure answer becomes the classified error.
    async fn api(&self, call: reqwest::RequestBuilder) -> Result<http::Answer, SendError> {
        let answer = http::call(call.header("Authorization", self.token())).await?;
        if answer.status.is_success() {
            return Ok(answer);
        }
        let body = answer.json::<ErrorBody>().ok();
        let (code, message) = body.map(|b| (b.code, b.message)).unwrap_or_default();
        let message = message.map(|m| http::redact(&m, self.token()));
        let mut error = classify(answer.status, code.as_deref(), message.as_deref());
        if let Some(after) = http::retry_after(&answer.headers) {
            error = error.with_retry_after(after);
        }
        Err(error)
    }

    /// Registers `url` for webhook updates (`POST /subscriptions`), with the configured
    /// `webhook_secret`, for the updates in [`UPDATE_TYPES`].
    pub async fn subscribe(&self, url: &str) -> Result<(), SendError> {
        let mut body = json!({"url": url, "update_types": UPDATE_TYPES});
        if let Some(secret) = &self.config.webhook_secret {
            body["secret"] = json!(secret.expose());
        }
        self.api(self.http.post(format!("{}/subscriptions", self.base)).json(&body)).await.map(drop)
    }

    /// The `attachments` entry for a file: images by URL as they are; everything else (and
    /// local images) uploaded first, then referred to by token.
    async fn attachment(&self, file: &Attachment) -> Result<Value, SendError> {
        let kind = match file.kind() {
            MediaKind::Image => "image",
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
            MediaKind::Document => "file",
        };
        let source = Source::of(file)?;
        if let (MediaKind::Image, Source::Url(url)) = (file.kind(), &source) {
            return Ok(json!({"type": "image", "payload": {"url": url}}));
        }
        let answer = self.api(self.http.post(format!("{}/uploads?type={kind}", self.base))).await?;
        let slot: UploadSlot = answer.json().map_err(|_| upload_error("the upload slot", &answer))?;
        let part: Part = match &source {
            Source::File(path) => media::file_part(path, file).await?,
            Source::Url(url) => media::fetched_part(&self.http, url, file).await?,
        };
        let call =
            self.http.post(&slot.url).header("Authorization", self.token()).multipart(Form::new().part("data", part));
        let answer = http::call(call).await?;
        if !answer.status.is_success() {
            return Err(answer.unexpected());
        }
        let uploaded = answer.json::<Uploaded>().ok();
        let token = match kind {
            // Video and audio get their token with the slot; the upload answers a receipt.
            "video" | "audio" => slot.token.or_else(|| uploaded.and_then(|u| u.token)),
            "image" => uploaded.and_then(|u| {
                u.token.or_else(|| u.photos?.values().find_map(|p| p.get("token")?.as_str().map(str::to_owned)))
            }),
            _ => uploaded.and_then(|u| u.token),
        };
        let token = token.ok_or_else(|| upload_error("the upload", &answer))?;
        Ok(json!({"type": kind, "payload": {"token": token}}))
    }

    /// The `NewMessageBody` for a request (uploading its file, if any).
    pub async fn body(&self, request: &SendRequest) -> Result<Value, SendError> {
        let content = &request.content;
        if content.text.chars().count() > MAX_TEXT {
            return Err(SendError::rejected("message_too_long", format!("text over {MAX_TEXT} characters")));
        }
        let mut attachments = Vec::new();
        if let Some(file) = &content.attachment {
            attachments.push(self.attachment(file).await?);
        }
        if !content.buttons.is_empty() {
            attachments.push(keyboard(&content.buttons));
        }
        let mut body = json!({"text": content.text, "attachments": attachments, "notify": self.config.notify});
        if self.config.disable_link_preview {
            body["disable_link_preview"] = json!(true);
        }
        if let Some(format) = &self.config.format {
            body["format"] = json!(format);
        }
        Ok(body)
    }
}

fn upload_error(what: &str, answer: &http::Answer) -> SendError {
    SendError::transient("upload", format!("{what} answered without a token ({}): {}", answer.status, answer.snippet()))
}

/// One `link` button per row.
fn keyboard(buttons: &[Button]) -> Value {
    let rows: Vec<Value> = buttons.iter().map(|b| json!([{"type": "link", "text": b.caption, "url": b.url}])).collect();
    json!({"type": "inline_keyboard", "payload": {"buttons": rows}})
}

#[async_trait]
impl Channel for Max {
    fn info(&self) -> &ChannelInfo {
        &self.info
    }

    async fn send(&self, request: &SendRequest) -> Result<Accepted, SendError> {
        let recipient = Recipient::parse(&request.address.value)?;
        let body = self.body(request).await?;
        let (key, id) = recipient.query();
        let url = format!("{}/messages?{key}={id}", self.base);
        // The one retry inside a send (docs/writing-a-channel.md): `attachment.not.ready` means
        // the message was not taken while MAX processes the upload, so posting it again cannot
        // send it twice, and handing the engine a `transient` would only upload the file again.
        let mut wait = self.config.attachment_wait;
        let mut tries = 0;
        let answer = loop {
            match self.api(self.http.post(&url).json(&body)).await {
                Err(e) if e.code == "attachment.not.ready" && tries < NOT_READY_RETRIES => {
                    tries += 1;
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
                other => break other?,
            }
        };
        Ok(match answer.json::<Sent>() {
            Ok(sent) => Accepted::new(sent.message.body.mid).with_status(Status::Sent),
            Err(_) => http::unreadable_success(request),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients() {
        assert_eq!(Recipient::parse(" 12345 ").expect("user"), Recipient::User(12345));
        assert_eq!(Recipient::parse("chat:-70123").expect("chat"), Recipient::Chat(-70123));
        let err = Recipient::parse("@acme").expect_err("a name");
        assert_eq!((err.class, err.code.as_str()), (cascade_engine::ErrorClass::Unreachable, "invalid_address"));
    }
}
