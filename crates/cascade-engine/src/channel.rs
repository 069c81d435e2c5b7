//! The [`Channel`] trait that adapters implement, and the data that crosses it.
//!
//! An adapter crate (WhatsApp, Telegram, Twilio, or your own) builds one [`Channel`] value per
//! configured connection and hands it to [`crate::EngineBuilder::connection`]. The engine never
//! sees provider wire types: it calls [`Channel::send`] with rendered [`Content`] and an
//! [`Address`], and receives [`Accepted`] or a classified [`SendError`]. Statuses and inbound
//! messages come back separately, through the adapter's webhook intake, as [`StatusUpdate`] and
//! [`InboundMessage`] values fed to [`crate::Engine::status`] and [`crate::Engine::inbound`].

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::model::{
    Address, AddressKind, CascadeId, ChannelName, ConnectionId, Content, Cost, MediaKind, SendError, Status, Timestamp,
};

/// What a channel can carry and report. The engine checks it before calling `send`: steps the
/// contact or the content cannot use are skipped with a reason, and policies that wait for a
/// status the channel never reports are refused up front.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Capabilities {
    /// The address kinds the channel sends to, in order of preference.
    pub address_kinds: Vec<AddressKind>,
    /// The largest file per media kind; `None` means the channel cannot carry that kind.
    pub max_file_size: MediaLimits,
    /// The highest progress status the provider reports (`sent` for Telegram bots and email,
    /// `delivered` for SMS, `read` for WhatsApp and Viber).
    pub highest_status: Status,
    /// Whether inbound messages (replies) come back from this channel.
    pub inbound: bool,
    /// Whether buttons (caption + URL) can be sent.
    pub buttons: bool,
    /// How long after the contact's last inbound message a conversation counts as active
    /// (WhatsApp's 24-hour service window). `None`: conversations never make it go first.
    #[serde(default, with = "crate::model::duration::option")]
    pub conversation_window: Option<Duration>,
}

impl Capabilities {
    /// A text-only channel sending to `address_kinds` and reporting up to `highest_status`.
    pub fn text_only(address_kinds: impl Into<Vec<AddressKind>>, highest_status: Status) -> Self {
        Self {
            address_kinds: address_kinds.into(),
            max_file_size: MediaLimits::NONE,
            highest_status,
            inbound: false,
            buttons: false,
            conversation_window: None,
        }
    }

    /// The default `until` for a step on this channel: what it reports, up to `delivered`.
    pub fn default_until(&self) -> Status {
        if self.highest_status.reaches(Status::Delivered) { Status::Delivered } else { self.highest_status }
    }

    /// Whether a step may wait for `status` on this channel (`clicked` also needs link
    /// tracking, which the caller checks).
    pub fn can_report(&self, status: Status) -> bool {
        match status {
            Status::Replied => self.inbound,
            Status::Clicked => true,
            Status::Failed => false,
            s => self.highest_status.reaches(s),
        }
    }
}

/// The largest file a channel carries, per media kind (`None`: cannot carry it).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct MediaLimits {
    /// Images.
    pub image: Option<u64>,
    /// Video.
    pub video: Option<u64>,
    /// Audio.
    pub audio: Option<u64>,
    /// Documents (anything else).
    pub document: Option<u64>,
}

impl MediaLimits {
    /// Carries no files.
    pub const NONE: MediaLimits = MediaLimits { image: None, video: None, audio: None, document: None };

    /// Every kind up to the same size.
    pub const fn all(limit: u64) -> Self {
        MediaLimits { image: Some(limit), video: Some(limit), audio: Some(limit), document: Some(limit) }
    }

    /// The limit for one kind.
    pub fn get(&self, kind: MediaKind) -> Option<u64> {
        match kind {
            MediaKind::Image => self.image,
            MediaKind::Video => self.video,
            MediaKind::Audio => self.audio,
            MediaKind::Document => self.document,
        }
    }
}

/// Who a channel value is: the channel it serves, the adapter behind it, and its capabilities.
#[derive(Clone, PartialEq, Debug)]
pub struct ChannelInfo {
    /// The channel as the customer sees it (`whatsapp`, `sms`, …). Steps name this.
    pub channel: ChannelName,
    /// The adapter that carries it (`whatsapp-cloud`, `twilio`, …). Statuses are matched to
    /// attempts by adapter and provider message id.
    pub adapter: ChannelName,
    /// What it can carry and report.
    pub capabilities: Capabilities,
}

/// One send, as the engine hands it to an adapter.
#[derive(Clone, PartialEq, Debug)]
pub struct SendRequest {
    /// The cascade (for logs and idempotency keys at the provider).
    pub cascade_id: CascadeId,
    /// The attempt number within the cascade.
    pub attempt: u32,
    /// The connection the engine chose.
    pub connection: ConnectionId,
    /// Where to send.
    pub address: Address,
    /// What to send, fully rendered.
    pub content: std::sync::Arc<Content>,
    /// Whether the contact's conversation window is open on this connection, as far as the
    /// engine knows (channels with a conversation window only). WhatsApp uses it to choose
    /// between the free-form message and the step's approved template.
    pub conversation_open: bool,
}

/// The provider took the message.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Accepted {
    /// The provider's id for the message: statuses refer to it.
    pub provider_message_id: String,
    /// What the provider says it cost, when it says; otherwise the connection's price is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
    /// A status already known at send time (e.g. `sent` for Telegram, whose API answer means
    /// the message is in the chat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

impl Accepted {
    /// Accepted with this provider id.
    pub fn new(provider_message_id: impl Into<String>) -> Self {
        Self { provider_message_id: provider_message_id.into(), cost: None, status: None }
    }

    /// Also reports a status reached at once.
    pub fn with_status(mut self, status: Status) -> Self {
        self.status = Some(status);
        self
    }
}

/// An existing chat the adapter knows of (from [`Channel::existing_chat`]).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ChatInfo {
    /// When the contact last wrote to us on this connection.
    pub last_inbound_at: Timestamp,
}

/// A normalized delivery status parsed from a provider webhook.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// The provider's id of the message it is about.
    pub provider_message_id: String,
    /// The status.
    pub status: Status,
    /// When the provider says it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
    /// For `failed`: the classified error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SendError>,
}

/// A message from a contact, parsed from a provider webhook.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct InboundMessage {
    /// The sender's address on the channel (phone, chat id, …).
    pub from: String,
    /// The text, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// When the provider says it was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
}

/// A messenger adapter for one connection (sender account).
///
/// Two methods are required: [`info`](Channel::info) says what the channel is and can do, and
/// [`send`](Channel::send) sends one rendered message. [`existing_chat`](Channel::existing_chat)
/// is optional. Adapters map every provider error to an [`ErrorClass`](crate::ErrorClass); the
/// engine owns retries, fallover and timing.
///
/// ```
/// use async_trait::async_trait;
/// use cascade_engine::*;
///
/// #[derive(Debug)]
/// struct Pigeon(ChannelInfo);
///
/// #[async_trait]
/// impl Channel for Pigeon {
///     fn info(&self) -> &ChannelInfo {
///         &self.0
///     }
///     async fn send(&self, req: &SendRequest) -> Result<Accepted, SendError> {
///         if req.address.value.ends_with('0') {
///             return Err(SendError::unreachable("no_roof", "no roof to land on"));
///         }
///         Ok(Accepted::new(format!("pigeon-{}", req.attempt)))
///     }
/// }
/// ```
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait Channel: Send + Sync + std::fmt::Debug + 'static {
    /// The channel, adapter and capabilities.
    fn info(&self) -> &ChannelInfo;

    /// Sends one message. Must not retry on its own: return a classified error and let the
    /// engine decide.
    async fn send(&self, request: &SendRequest) -> Result<Accepted, SendError>;

    /// Asks the provider whether the contact has an open chat with this connection. The default
    /// knows nothing; the engine also keeps its own record of conversations.
    async fn existing_chat(&self, _address: &Address) -> Result<Option<ChatInfo>, SendError> {
        Ok(None)
    }
}
