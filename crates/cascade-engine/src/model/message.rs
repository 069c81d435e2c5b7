use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ChannelName;

/// What the business wants to say, before rendering.
///
/// `text` is a template (see [`crate::template`]); `overrides` replace parts of the content on
/// one channel (a shorter SMS text, a Viber button, a WhatsApp template).
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// The text template.
    #[serde(default)]
    pub text: String,
    /// One optional file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
    /// Per-channel content overrides, keyed by channel name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<ChannelName, ContentOverride>,
}

impl Message {
    /// A text-only message.
    pub fn text(text: impl Into<String>) -> Self {
        Self { text: text.into(), ..Self::default() }
    }
}

/// A reference to a file to send, with what the engine needs to decide whether a channel can
/// carry it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// Where adapters fetch or link the file from (a public or signed URL).
    pub url: String,
    /// The MIME type, e.g. `image/jpeg`, `video/mp4`, `application/pdf`.
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
    /// The file name shown to the contact, where the channel shows one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

impl Attachment {
    /// How channels treat this file: images as images, video as video, the rest as documents.
    pub fn kind(&self) -> MediaKind {
        MediaKind::of(&self.media_type)
    }
}

/// The kinds of file channels distinguish.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// `image/*`.
    Image,
    /// `video/*`.
    Video,
    /// `audio/*`.
    Audio,
    /// Anything else.
    Document,
}

impl MediaKind {
    /// The kind of a MIME type.
    pub fn of(media_type: &str) -> Self {
        let top = media_type.split('/').next().unwrap_or("").trim().to_ascii_lowercase();
        match top.as_str() {
            "image" => MediaKind::Image,
            "video" => MediaKind::Video,
            "audio" => MediaKind::Audio,
            _ => MediaKind::Document,
        }
    }

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
            MediaKind::Document => "document",
        }
    }
}

/// A button with a caption that opens a URL (Viber rich messages, WhatsApp CTA, Telegram inline).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Button {
    /// The text on the button (a template).
    pub caption: String,
    /// The URL it opens (a template).
    pub url: String,
}

/// A provider-side pre-approved template, e.g. a WhatsApp message template, required for
/// business-initiated messages outside a service window.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderTemplate {
    /// The template's name at the provider.
    pub name: String,
    /// Its language code, e.g. `en_US`.
    pub language: String,
    /// Body parameters, in order; each is a cascade template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<String>,
}

/// Replaces parts of the message on one channel or step. Unset parts keep the message's own.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentOverride {
    /// Text template for this channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Subject template (email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// HTML body template (email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// A different file for this channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
    /// Send no file on this channel even if the message has one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drop_attachment: bool,
    /// Buttons (caption + URL).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Button>,
    /// A provider template to send instead of free text (WhatsApp outside the service window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<ProviderTemplate>,
}

impl ContentOverride {
    /// Lays `top` over `self`: every part `top` sets wins.
    pub fn layered(&self, top: &ContentOverride) -> ContentOverride {
        ContentOverride {
            text: top.text.clone().or_else(|| self.text.clone()),
            subject: top.subject.clone().or_else(|| self.subject.clone()),
            html: top.html.clone().or_else(|| self.html.clone()),
            attachment: top.attachment.clone().or_else(|| self.attachment.clone()),
            drop_attachment: top.drop_attachment || self.drop_attachment,
            buttons: if top.buttons.is_empty() { self.buttons.clone() } else { top.buttons.clone() },
            template: top.template.clone().or_else(|| self.template.clone()),
        }
    }
}

/// Rendered content, exactly what one attempt sends: templates already filled in.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
pub struct Content {
    /// The text (or caption, when there is a file and the channel allows captions).
    pub text: String,
    /// Subject (email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// HTML alternative (email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// The file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
    /// Buttons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Button>,
    /// A provider template with rendered parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<ProviderTemplate>,
}
