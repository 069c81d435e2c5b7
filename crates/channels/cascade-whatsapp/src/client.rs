//! Sending: `POST /{version}/{phone-number-id}/messages`, and media uploads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cascade_channel_kit::media::{self, Source};
use cascade_channel_kit::{ConfigError, http, send};
use cascade_engine::{
    Accepted, AddressKind, Attachment, Capabilities, Channel, ChannelInfo, Connection, ConnectionId, MediaKind,
    MediaLimits, ProviderTemplate, SendError, SendRequest, Status,
};
use reqwest::multipart::Form;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::WhatsAppConfig;
use crate::error::{ErrorData, describe, rule_for};

/// The adapter name statuses are matched by.
pub const ADAPTER: &str = "whatsapp-cloud";
/// The channel name a connection serves unless its config names another.
pub const DEFAULT_CHANNEL: &str = "whatsapp";
/// Longest text body, in characters.
pub const MAX_TEXT: usize = 4096;
/// Longest media caption, in characters.
pub const MAX_CAPTION: usize = 1024;
/// WhatsApp's service window: free-form messages only within 24 hours of the contact's last message.
pub const SERVICE_WINDOW: Duration = Duration::from_secs(24 * 3600);

const MB: u64 = 1_000_000;
/// Images 5 MB, video 16 MB, documents (and audio, sent as a document) 100 MB.
pub const LIMITS: MediaLimits =
    MediaLimits { image: Some(5 * MB), video: Some(16 * MB), audio: Some(100 * MB), document: Some(100 * MB) };
/// Uploaded media ids stay valid 30 days; reuse them for a little less.
const MEDIA_ID_LIFETIME: Duration = Duration::from_secs(29 * 24 * 3600);
const MEDIA_CACHE_SIZE: usize = 1024;

/// A WhatsApp business phone number as a cascade [`Channel`] (and, through
/// [`Intake`](cascade_channel_kit::Intake), its webhook).
pub struct WhatsApp {
    pub(crate) config: WhatsAppConfig,
    info: ChannelInfo,
    root: String,
    /// For the API and for fetching files to upload (no redirects for either; the token goes
    /// per request, so a fetch does not carry it).
    http: reqwest::Client,
    /// Media ids of files already uploaded (a campaign sends the same file many times).
    uploaded: Mutex<HashMap<String, (String, Instant)>>,
}

impl std::fmt::Debug for WhatsApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhatsApp").field("config", &self.config).field("info", &self.info).finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct SendAnswer {
    #[serde(default)]
    messages: Vec<SentMessage>,
}

#[derive(Deserialize)]
struct SentMessage {
    id: String,
}

#[derive(Deserialize)]
struct UploadAnswer {
    id: String,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: GraphError,
}

#[derive(Deserialize)]
struct GraphError {
    code: i64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    error_data: Option<ErrorData>,
}

/// How the media object names its file.
enum MediaRef {
    Link(String),
    Id(String),
}

impl WhatsApp {
    /// An adapter for one business phone number. Fails, naming the key, on a config that cannot work.
    pub fn new(config: WhatsAppConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let root = format!(
            "{}/{}/{}",
            cascade_channel_kit::config::base_url("base_url", &config.base_url)?,
            config.api_version,
            config.phone_number_id
        );
        let capabilities = Capabilities {
            address_kinds: vec![AddressKind::ChannelId, AddressKind::Phone],
            max_file_size: LIMITS,
            highest_status: Status::Read,
            inbound: true,
            buttons: false,
            conversation_window: Some(SERVICE_WINDOW),
        };
        let info = ChannelInfo { channel: config.channel.as_str().into(), adapter: ADAPTER.into(), capabilities };
        Ok(Self { http: http::client(config.timeout), info, root, config, uploaded: Mutex::default() })
    }

    /// The engine connection for this number, with its price and rate limit.
    pub fn connection(self: &Arc<Self>, id: impl Into<ConnectionId>) -> Connection {
        cascade_channel_kit::config::connection(self.clone(), id, self.config.price, self.config.rate_limit)
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.bearer_auth(self.config.access_token.expose())
    }

    async fn post_message(&self, req: &SendRequest, body: &Value) -> Result<Accepted, SendError> {
        let answer = http::call(self.authorized(self.http.post(format!("{}/messages", self.root))).json(body)).await?;
        if answer.status.is_success() {
            return Ok(match answer.json::<SendAnswer>().ok().and_then(|s| s.messages.into_iter().next()) {
                Some(m) => Accepted::new(m.id),
                None => http::unreadable_success(req),
            });
        }
        Err(self.graph_error(&answer))
    }

    /// A Graph error, with the access token taken out of its text (Graph echoes malformed tokens).
    fn graph_error(&self, answer: &http::Answer) -> SendError {
        let mut e = graph_error(answer);
        e.detail = http::redact(&e.detail, self.config.access_token.expose());
        e
    }

    /// The media object for a file: by link, or by the id of an upload.
    async fn media_ref(&self, file: &Attachment) -> Result<MediaRef, SendError> {
        let source = Source::of(file)?;
        if let Source::Url(url) = &source
            && !self.config.upload_links
        {
            return Ok(MediaRef::Link(url.clone()));
        }
        let key = format!("{}|{}|{}", file.url, file.size, file.media_type);
        if let Some((id, at)) = self.uploaded.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
            && at.elapsed() < MEDIA_ID_LIFETIME
        {
            return Ok(MediaRef::Id(id.clone()));
        }
        let part = match &source {
            Source::File(path) => media::file_part(path, file).await?,
            Source::Url(url) => media::fetched_part(&self.http, url, file).await?,
        };
        let form =
            Form::new().text("messaging_product", "whatsapp").text("type", file.media_type.clone()).part("file", part);
        let answer =
            http::call(self.authorized(self.http.post(format!("{}/media", self.root))).multipart(form)).await?;
        let id = match answer.json::<UploadAnswer>() {
            Ok(a) if answer.status.is_success() => a.id,
            _ => return Err(self.graph_error(&answer)),
        };
        let mut cache = self.uploaded.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MEDIA_CACHE_SIZE {
            cache.clear();
        }
        cache.insert(key, (id.clone(), Instant::now()));
        Ok(MediaRef::Id(id))
    }

    fn text_body(&self, to: &str, text: &str) -> Value {
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "text",
            "text": {"preview_url": self.config.link_preview, "body": text},
        })
    }

    async fn send_free_form(&self, req: &SendRequest, to: &str) -> Result<Accepted, SendError> {
        let content = &req.content;
        // Checked before any call, so a text that cannot follow its file sends nothing at all.
        if content.text.chars().count() > MAX_TEXT {
            return Err(SendError::rejected("message_too_long", format!("text over {MAX_TEXT} characters")));
        }
        let Some(file) = &content.attachment else {
            return self.post_message(req, &self.text_body(to, &content.text)).await;
        };
        let kind = media_type_of(file);
        let mut object = serde_json::Map::new();
        match self.media_ref(file).await? {
            MediaRef::Link(link) => object.insert("link".into(), json!(link)),
            MediaRef::Id(id) => object.insert("id".into(), json!(id)),
        };
        let caption_fits = content.text.chars().count() <= MAX_CAPTION;
        if caption_fits && !content.text.is_empty() {
            object.insert("caption".into(), json!(content.text));
        }
        if kind == "document" {
            object.insert("filename".into(), json!(media::file_name(file)));
        }
        let body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": kind,
            kind: object,
        });
        let sent = self.post_message(req, &body).await?;
        if caption_fits {
            return Ok(sent);
        }
        // A text too long for a caption follows the file; its id is the one statuses are waited
        // for. If it fails, the file's acceptance stands (retrying would send the file again).
        Ok(self
            .post_message(req, &self.text_body(to, &content.text))
            .await
            .unwrap_or_else(|e| send::partly_sent(req, sent, &e)))
    }

    async fn send_template(
        &self,
        req: &SendRequest,
        to: &str,
        template: &ProviderTemplate,
    ) -> Result<Accepted, SendError> {
        let mut object = json!({"name": template.name, "language": {"code": template.language}});
        if !template.params.is_empty() {
            let parameters: Vec<Value> = template.params.iter().map(|p| json!({"type": "text", "text": p})).collect();
            object["components"] = json!([{"type": "body", "parameters": parameters}]);
        }
        let body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "template",
            "template": object,
        });
        self.post_message(req, &body).await
    }
}

/// The WhatsApp message type for a file: JPEG and PNG images as `image`, MP4 and 3GPP video as
/// `video`, anything else (other images and video, audio, documents) as `document`.
pub fn media_type_of(file: &Attachment) -> &'static str {
    let t = file.media_type.to_ascii_lowercase();
    match file.kind() {
        MediaKind::Image if t == "image/jpeg" || t == "image/png" => "image",
        MediaKind::Video if t == "video/mp4" || t == "video/3gpp" => "video",
        _ => "document",
    }
}

/// Classifies an error answer by its Graph error code (never by the HTTP status alone, unless
/// the body is not a Graph error).
fn graph_error(answer: &http::Answer) -> SendError {
    let Ok(ErrorAnswer { error }) = answer.json::<ErrorAnswer>() else {
        return answer.unexpected();
    };
    let class = rule_for(error.code).map_or_else(|| http::status_class(answer.status), |r| r.class);
    let detail = describe(error.message, error.error_data.as_ref());
    let mut e = SendError::new(class, error.code.to_string(), detail);
    if let Some(after) = http::retry_after(&answer.headers) {
        e = e.with_retry_after(after);
    }
    e
}

#[async_trait]
impl Channel for WhatsApp {
    fn info(&self) -> &ChannelInfo {
        &self.info
    }

    /// Outside the service window, a step's approved template goes instead of the free-form
    /// message; inside it (the contact wrote within 24 hours), the message itself.
    async fn send(&self, request: &SendRequest) -> Result<Accepted, SendError> {
        let to = request.address.value.trim();
        if to.is_empty() {
            return Err(SendError::unreachable("invalid_address", "empty WhatsApp address"));
        }
        match &request.content.template {
            Some(template) if !request.conversation_open => self.send_template(request, to, template).await,
            _ => self.send_free_form(request, to).await,
        }
    }
}
