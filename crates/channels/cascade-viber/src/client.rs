//! Sending: `POST {base_url}/send_message`.

use std::sync::Arc;

use async_trait::async_trait;
use cascade_channel_kit::media::{self, Source};
use cascade_channel_kit::{ConfigError, http, send};
use cascade_engine::{
    Accepted, AddressKind, Attachment, Button, Capabilities, Channel, ChannelInfo, Connection, ConnectionId, MediaKind,
    MediaLimits, SendError, SendRequest, Status,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::ViberConfig;
use crate::error::rule_for;

/// The adapter name statuses are matched by.
pub const ADAPTER: &str = "viber-bot";
/// The channel name a connection serves unless its config names another.
pub const DEFAULT_CHANNEL: &str = "viber";
/// Longest text message, in characters.
pub const MAX_TEXT: usize = 7000;
/// Longest picture caption, in characters.
pub const MAX_CAPTION: usize = 768;
/// Longest text on a rich-media button.
pub const MAX_CARD_TEXT: usize = 250;
/// Pictures up to 1 MB (what every client shows), video up to 26 MB, files up to 50 MB.
pub const LIMITS: MediaLimits = MediaLimits {
    image: Some(1_000_000),
    video: Some(26_000_000),
    audio: Some(50_000_000),
    document: Some(50_000_000),
};

/// A Viber bot as a cascade [`Channel`] (and, through [`Intake`](cascade_channel_kit::Intake),
/// its callbacks).
pub struct Viber {
    pub(crate) config: ViberConfig,
    info: ChannelInfo,
    url: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Viber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viber").field("config", &self.config).field("info", &self.info).finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Answer {
    status: i64,
    #[serde(default)]
    status_message: Option<String>,
    #[serde(default)]
    message_token: Option<Token>,
}

/// A message token: a 64-bit number, sometimes sent as a string.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Token {
    Number(u64),
    Text(String),
}

impl Token {
    pub(crate) fn into_string(self) -> String {
        match self {
            Token::Number(n) => n.to_string(),
            Token::Text(s) => s,
        }
    }
}

impl Viber {
    /// An adapter for one bot. Fails, naming the key, on a config that cannot work.
    pub fn new(config: ViberConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let url = format!("{}/send_message", cascade_channel_kit::config::base_url("base_url", &config.base_url)?);
        let capabilities = Capabilities {
            address_kinds: vec![AddressKind::ChannelId],
            max_file_size: LIMITS,
            highest_status: Status::Read,
            inbound: true,
            buttons: true,
            conversation_window: None,
        };
        let info = ChannelInfo { channel: config.channel.as_str().into(), adapter: ADAPTER.into(), capabilities };
        Ok(Self { http: http::client(config.timeout), info, url, config })
    }

    /// The engine connection for this bot, with its price and rate limit.
    pub fn connection(self: &Arc<Self>, id: impl Into<ConnectionId>) -> Connection {
        cascade_channel_kit::config::connection(self.clone(), id, self.config.price, self.config.rate_limit)
    }

    fn base(&self, receiver: &str, kind: &str) -> Map<String, Value> {
        let mut sender = Map::new();
        sender.insert("name".into(), json!(self.config.sender_name));
        if let Some(avatar) = &self.config.sender_avatar {
            sender.insert("avatar".into(), json!(avatar));
        }
        let mut m = Map::new();
        m.insert("receiver".into(), json!(receiver));
        m.insert("min_api_version".into(), json!(if kind == "rich_media" { 7 } else { 1 }));
        m.insert("sender".into(), Value::Object(sender));
        m.insert("type".into(), json!(kind));
        m
    }

    /// The bodies to post, in order: one, or a text and then the file it could not caption. The
    /// last one's token is what statuses are waited for (the text's, if the file then fails).
    pub fn bodies(&self, request: &SendRequest) -> Result<Vec<Value>, SendError> {
        let receiver = request.address.value.trim();
        let content = &request.content;
        let text = content.text.as_str();
        if text.chars().count() > MAX_TEXT {
            return Err(SendError::rejected("message_too_long", format!("text over {MAX_TEXT} characters")));
        }
        let file = match &content.attachment {
            Some(a) => match Source::of(a)? {
                Source::Url(url) => Some((a, url)),
                Source::File(_) => {
                    return Err(SendError::rejected(
                        "media_not_public",
                        "Viber fetches files by URL; this file is only on this machine",
                    ));
                }
            },
            None => None,
        };
        let picture = file.as_ref().filter(|(a, _)| a.kind() == MediaKind::Image);
        // One card with the picture, the text and the button(s), when the text fits on a card.
        if !content.buttons.is_empty() && text.chars().count() <= MAX_CARD_TEXT && (file.is_none() || picture.is_some())
        {
            let mut card = self.base(receiver, "rich_media");
            card.insert("alt_text".into(), json!(alt_text(text, &content.buttons)));
            card.insert("rich_media".into(), rich_media(picture.map(|(_, url)| url.as_str()), text, &content.buttons));
            return Ok(vec![Value::Object(card)]);
        }
        let Some((a, url)) = file else {
            let mut m = self.text(receiver, text);
            add_keyboard(&mut m, &content.buttons);
            return Ok(vec![Value::Object(m)]);
        };
        let image = a.kind() == MediaKind::Image;
        let fits = text.chars().count() <= MAX_CAPTION;
        // A picture carries a text that fits as its caption; any other text goes first, alone.
        let text_first = !(text.is_empty() || (image && fits));
        let mut m = match a.kind() {
            MediaKind::Image => {
                let mut m = self.base(receiver, "picture");
                m.insert("text".into(), json!(if fits { text } else { "" }));
                m.insert("media".into(), json!(url));
                m
            }
            MediaKind::Video => {
                let mut m = self.base(receiver, "video");
                m.insert("media".into(), json!(url));
                m.insert("size".into(), json!(a.size));
                m
            }
            MediaKind::Audio | MediaKind::Document => file_body(self.base(receiver, "file"), a, &url),
        };
        add_keyboard(&mut m, &content.buttons);
        let file = Value::Object(m);
        Ok(if text_first { vec![Value::Object(self.text(receiver, text)), file] } else { vec![file] })
    }

    fn text(&self, receiver: &str, text: &str) -> Map<String, Value> {
        let mut m = self.base(receiver, "text");
        m.insert("text".into(), json!(text));
        m
    }

    async fn post(&self, request: &SendRequest, body: &Value) -> Result<Accepted, SendError> {
        let call = self.http.post(&self.url).header("X-Viber-Auth-Token", self.config.auth_token.expose()).json(body);
        let answer = http::call(call).await?;
        let Ok(parsed) = answer.json::<Answer>() else {
            return if answer.status.is_success() {
                Ok(http::unreadable_success(request))
            } else {
                Err(answer.unexpected())
            };
        };
        if parsed.status == 0 {
            return Ok(match parsed.message_token {
                Some(t) => Accepted::new(t.into_string()),
                None => http::unreadable_success(request),
            });
        }
        let rule = rule_for(parsed.status);
        let detail = parsed.status_message.unwrap_or_else(|| rule.meaning.to_owned());
        Err(SendError::new(rule.class, parsed.status.to_string(), detail))
    }
}

fn file_body(mut m: Map<String, Value>, a: &Attachment, url: &str) -> Map<String, Value> {
    m.insert("media".into(), json!(url));
    m.insert("size".into(), json!(a.size));
    m.insert("file_name".into(), json!(media::file_name(a)));
    m
}

fn alt_text(text: &str, buttons: &[Button]) -> String {
    let links: Vec<&str> = buttons.iter().map(|b| b.url.as_str()).collect();
    if text.is_empty() { links.join(" ") } else { format!("{text} {}", links.join(" ")) }
}

/// A card: the picture (opening the first button's URL), the text, then one row per button.
fn rich_media(picture: Option<&str>, text: &str, buttons: &[Button]) -> Value {
    let mut rows = Vec::new();
    if let Some(url) = picture {
        rows.push(
            json!({"Columns": 6, "Rows": 3, "ActionType": "open-url", "ActionBody": buttons[0].url, "Image": url}),
        );
    }
    if !text.is_empty() {
        rows.push(json!({"Columns": 6, "Rows": 2, "ActionType": "none", "ActionBody": "none", "Text": text,
            "TextSize": "regular", "TextHAlign": "left", "TextVAlign": "middle"}));
    }
    let used: u64 = rows.iter().filter_map(|r| r["Rows"].as_u64()).sum();
    for b in buttons.iter().take((7 - used) as usize) {
        rows.push(json!({"Columns": 6, "Rows": 1, "ActionType": "open-url", "ActionBody": b.url, "Text": b.caption,
            "TextSize": "regular"}));
    }
    let total: u64 = rows.iter().filter_map(|r| r["Rows"].as_u64()).sum();
    json!({"Type": "rich_media", "ButtonsGroupColumns": 6, "ButtonsGroupRows": total, "BgColor": "#FFFFFF", "Buttons": rows})
}

fn add_keyboard(m: &mut Map<String, Value>, buttons: &[Button]) {
    if buttons.is_empty() {
        return;
    }
    let buttons: Vec<Value> = buttons
        .iter()
        .map(|b| json!({"Columns": 6, "Rows": 1, "ActionType": "open-url", "ActionBody": b.url, "Text": b.caption}))
        .collect();
    m.insert("keyboard".into(), json!({"Type": "keyboard", "DefaultHeight": false, "Buttons": buttons}));
}

#[async_trait]
impl Channel for Viber {
    fn info(&self) -> &ChannelInfo {
        &self.info
    }

    /// Posts the bodies in order. Once one is accepted the contact has it: a later failure
    /// leaves the send accepted with what went out (retrying would send it again).
    async fn send(&self, request: &SendRequest) -> Result<Accepted, SendError> {
        let bodies = self.bodies(request)?;
        let (first, rest) =
            bodies.split_first().ok_or_else(|| SendError::rejected("empty_message", "nothing to send"))?;
        let mut accepted = self.post(request, first).await?;
        for body in rest {
            match self.post(request, body).await {
                Ok(next) => accepted = next,
                Err(e) => return Ok(send::partly_sent(request, accepted, &e)),
            }
        }
        Ok(accepted)
    }
}
