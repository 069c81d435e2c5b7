//! Sending: `sendMessage`, `sendPhoto`, `sendVideo`, `sendDocument`.

use std::sync::Arc;

use async_trait::async_trait;
use cascade_channel_kit::media::{self, Source};
use cascade_channel_kit::{ConfigError, http, send};
use cascade_engine::{
    Accepted, AddressKind, Attachment, Capabilities, Channel, ChannelInfo, Connection, ConnectionId, Content,
    MediaKind, MediaLimits, SendError, SendRequest, Status,
};
use reqwest::multipart::Form;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::TelegramConfig;
use crate::error::classify;

/// The adapter name statuses are matched by.
pub const ADAPTER: &str = "telegram-bot";
/// The channel name a connection serves unless its config names another.
pub const DEFAULT_CHANNEL: &str = "telegram";

/// Longest text of `sendMessage`, in characters.
pub const MAX_TEXT: usize = 4096;
/// Longest caption of a file, in characters.
pub const MAX_CAPTION: usize = 1024;

const MB: u64 = 1_000_000;
/// Files Telegram fetches by URL: photos up to 5 MB, anything else up to 20 MB.
const URL_LIMITS: MediaLimits =
    MediaLimits { image: Some(5 * MB), video: Some(20 * MB), audio: Some(20 * MB), document: Some(20 * MB) };
/// Files uploaded to Telegram: photos up to 10 MB, anything else up to 50 MB.
pub const UPLOAD_LIMITS: MediaLimits =
    MediaLimits { image: Some(10 * MB), video: Some(50 * MB), audio: Some(50 * MB), document: Some(50 * MB) };
/// Documents Telegram accepts by URL (it fetches nothing else with `sendDocument`).
const DOCUMENT_URL_TYPES: &[&str] = &["application/pdf", "application/zip", "image/gif"];

/// A Telegram bot as a cascade [`Channel`] (and, through [`Intake`](cascade_channel_kit::Intake),
/// its webhook).
///
/// Sends to chat ids only: a bot can write to a user who started it, so contacts need a
/// `telegram` address (the chat id) and those without one skip the step. The API's answer means
/// the message is in the chat, so sends are accepted with status `sent`, the highest a bot
/// ever learns.
pub struct Telegram {
    pub(crate) config: TelegramConfig,
    info: ChannelInfo,
    base: String,
    /// For the API and for fetching files to re-upload (no redirects for either; the token is
    /// in the method URLs, never on the client, so a fetch does not carry it).
    http: reqwest::Client,
}

impl std::fmt::Debug for Telegram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The method URLs hold the token: only the (redacted) config is shown.
        f.debug_struct("Telegram").field("config", &self.config).field("info", &self.info).finish_non_exhaustive()
    }
}

/// One API answer: `{ok, result}` or `{ok: false, error_code, description, parameters}`.
#[derive(Deserialize)]
struct ApiAnswer {
    ok: bool,
    #[serde(default)]
    result: Option<SentMessage>,
    #[serde(default)]
    error_code: Option<i64>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<ResponseParameters>,
}

#[derive(Deserialize)]
struct SentMessage {
    message_id: i64,
    chat: Chat,
}

#[derive(Deserialize)]
struct Chat {
    id: i64,
}

#[derive(Deserialize)]
struct ResponseParameters {
    #[serde(default)]
    retry_after: Option<u64>,
    #[serde(default)]
    migrate_to_chat_id: Option<i64>,
}

/// How one file goes out.
enum FilePlan {
    /// Telegram fetches it: the URL goes in the JSON body.
    ByUrl(String),
    /// We upload it from disk.
    UploadFile(std::path::PathBuf),
    /// We fetch it and upload it (a document type Telegram will not fetch, or over its fetch limit).
    Reupload(String),
}

impl Telegram {
    /// An adapter for one bot. Fails, naming the key, on a config that cannot work.
    pub fn new(config: TelegramConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let base = format!(
            "{}/bot{}",
            cascade_channel_kit::config::base_url("base_url", &config.base_url)?,
            config.bot_token.expose()
        );
        let capabilities = Capabilities {
            address_kinds: vec![AddressKind::ChannelId],
            max_file_size: UPLOAD_LIMITS,
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

    fn method_url(&self, method: &str) -> String {
        format!("{}/{method}", self.base)
    }

    /// The common fields: chat, formatting, buttons.
    fn common(&self, chat_id: &Value, content: &Content) -> serde_json::Map<String, Value> {
        let mut body = serde_json::Map::new();
        body.insert("chat_id".into(), chat_id.clone());
        if let Some(mode) = &self.config.parse_mode {
            body.insert("parse_mode".into(), json!(mode));
        }
        if !content.buttons.is_empty() {
            let rows: Vec<Value> = content.buttons.iter().map(|b| json!([{"text": b.caption, "url": b.url}])).collect();
            body.insert("reply_markup".into(), json!({ "inline_keyboard": rows }));
        }
        body
    }

    async fn send_text(&self, req: &SendRequest, chat_id: &Value) -> Result<Accepted, SendError> {
        let content = &req.content;
        check_text(content)?;
        let mut body = self.common(chat_id, content);
        body.insert("text".into(), json!(content.text));
        if self.config.disable_link_preview {
            body.insert("link_preview_options".into(), json!({"is_disabled": true}));
        }
        self.answer(req, self.http.post(self.method_url("sendMessage")).json(&body)).await
    }

    async fn send_file(&self, req: &SendRequest, chat_id: &Value, file: &Attachment) -> Result<Accepted, SendError> {
        let content = &req.content;
        // Checked before the file goes, so a text that cannot follow it sends nothing at all.
        check_text(content)?;
        let kind = file.kind();
        let (method, field) = match kind {
            MediaKind::Image => ("sendPhoto", "photo"),
            MediaKind::Video => ("sendVideo", "video"),
            MediaKind::Audio | MediaKind::Document => ("sendDocument", "document"),
        };
        let caption_fits = content.text.chars().count() <= MAX_CAPTION;
        // A text too long for a caption goes as its own message after the file (and carries the buttons).
        let mut fields = self.common(chat_id, content);
        if caption_fits {
            if !content.text.is_empty() {
                fields.insert("caption".into(), json!(content.text));
            }
        } else {
            fields.remove("reply_markup");
        }
        let plan = match media::Source::of(file)? {
            Source::Url(url) => {
                let field_kind = if field == "document" { MediaKind::Document } else { kind };
                let fetchable = field != "document" || DOCUMENT_URL_TYPES.contains(&file.media_type.as_str());
                if fetchable && URL_LIMITS.get(field_kind).is_some_and(|l| file.size <= l) {
                    FilePlan::ByUrl(url)
                } else {
                    FilePlan::Reupload(url)
                }
            }
            Source::File(path) => FilePlan::UploadFile(path),
        };
        let request = self.http.post(self.method_url(method));
        let request = match plan {
            FilePlan::ByUrl(url) => {
                fields.insert(field.into(), json!(url));
                request.json(&fields)
            }
            FilePlan::UploadFile(path) => request.multipart(form(fields, field, media::file_part(&path, file).await?)),
            FilePlan::Reupload(url) => {
                request.multipart(form(fields, field, media::fetched_part(&self.http, &url, file).await?))
            }
        };
        let sent = self.answer(req, request).await?;
        if caption_fits {
            return Ok(sent);
        }
        // The file is in the chat: if the text fails, the file's acceptance stands (retrying
        // would send the file again).
        Ok(self.send_text(req, chat_id).await.unwrap_or_else(|e| send::partly_sent(req, sent, &e)))
    }

    async fn answer(&self, req: &SendRequest, request: reqwest::RequestBuilder) -> Result<Accepted, SendError> {
        let token = self.config.bot_token.expose();
        let answer = http::call(request).await.map_err(|mut e| {
            e.detail = http::redact(&e.detail, token);
            e
        })?;
        let parsed = match answer.json::<ApiAnswer>() {
            Ok(p) => p,
            Err(_) if answer.status.is_success() => return Ok(http::unreadable_success(req)),
            Err(_) => {
                // A proxy's error page may echo the request path, and the token with it.
                let mut e = answer.unexpected();
                e.detail = http::redact(&e.detail, token);
                return Err(e);
            }
        };
        if parsed.ok {
            let Some(m) = parsed.result else { return Ok(http::unreadable_success(req)) };
            return Ok(Accepted::new(provider_message_id(m.chat.id, m.message_id)).with_status(Status::Sent));
        }
        let params = parsed.parameters.unwrap_or(ResponseParameters { retry_after: None, migrate_to_chat_id: None });
        let mut description = parsed.description.unwrap_or_default();
        if let Some(new_id) = params.migrate_to_chat_id {
            description.push_str(&format!(" (new chat id {new_id})"));
        }
        Err(classify(answer.status, parsed.error_code, &http::redact(&description, token), params.retry_after))
    }
}

/// The provider message id of a sent message: message ids are unique only within a chat.
pub fn provider_message_id(chat_id: i64, message_id: i64) -> String {
    format!("{chat_id}:{message_id}")
}

fn form(fields: serde_json::Map<String, Value>, field: &'static str, part: reqwest::multipart::Part) -> Form {
    let mut form = Form::new();
    for (k, v) in fields {
        // Nested objects (reply_markup) go as JSON strings; plain values as text.
        let text = match v {
            Value::String(s) => s,
            other => other.to_string(),
        };
        form = form.text(k, text);
    }
    form.part(field, part)
}

fn check_text(content: &Content) -> Result<(), SendError> {
    if content.text.chars().count() > MAX_TEXT {
        return Err(SendError::rejected("message_too_long", format!("text over {MAX_TEXT} characters")));
    }
    Ok(())
}

fn chat_id(address: &str) -> Result<Value, SendError> {
    let a = address.trim();
    if let Ok(id) = a.parse::<i64>() {
        return Ok(json!(id));
    }
    if a.starts_with('@') && a.len() > 1 {
        return Ok(json!(a));
    }
    Err(SendError::unreachable("invalid_chat_id", format!("not a Telegram chat id or @channel: {a:?}")))
}

#[async_trait]
impl Channel for Telegram {
    fn info(&self) -> &ChannelInfo {
        &self.info
    }

    async fn send(&self, request: &SendRequest) -> Result<Accepted, SendError> {
        let chat = chat_id(&request.address.value)?;
        match &request.content.attachment {
            None => self.send_text(request, &chat).await,
            Some(file) => self.send_file(request, &chat, file).await,
        }
    }
}
