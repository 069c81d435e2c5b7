use std::fmt;

use serde::{Deserialize, Serialize};

use super::{ChannelName, ConnectionId, Cost, ErrorClass, SendError, Status, Timestamp};

/// Where one send stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptState {
    /// Handed to the adapter; no answer recorded yet.
    Sending,
    /// The provider accepted it (statuses may follow).
    Accepted,
    /// The send failed, or a `failed` status came for it.
    Failed,
    /// The process stopped while the send was in flight: whether the provider took it is not
    /// known. The engine waits for a status until the step's deadline, then goes on.
    Unknown,
}

/// One status received for an attempt.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct StatusRecord {
    /// The status.
    pub status: Status,
    /// When the engine received it.
    #[serde(with = "super::rfc3339")]
    pub at: Timestamp,
    /// When the provider says it happened, if it says.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "super::rfc3339::option")]
    pub provider_at: Option<Timestamp>,
}

/// One send of the message on one channel through one connection.
///
/// Every call to an adapter's `send` is an attempt: a retry on another connection is a new
/// attempt of the same step, so the number of attempts equals the number of sends made.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Attempt {
    /// 1-based, in the order sends were made.
    pub number: u32,
    /// The policy step (0-based index) this attempt belongs to.
    pub step: u16,
    /// The channel.
    pub channel: ChannelName,
    /// The connection used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<ConnectionId>,
    /// Where the send stands.
    pub state: AttemptState,
    /// The provider's id for the message, once accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
    /// The highest progress status reached (statuses never go down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub highest: Option<Status>,
    /// Every status received, in arrival order, duplicates included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<StatusRecord>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Box<SendError>>,
    /// What it cost.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cost: Cost,
    /// When the send started.
    #[serde(with = "super::rfc3339")]
    pub started_at: Timestamp,
}

fn is_zero(c: &Cost) -> bool {
    *c == Cost::ZERO
}

/// Why a step was skipped without sending.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SkipReason {
    /// The contact has no address this channel accepts.
    NoAddress,
    /// The file is larger than the channel carries.
    FileTooLarge {
        /// The file's size.
        size: u64,
        /// The channel's limit for this kind of file.
        limit: u64,
    },
    /// The channel cannot carry this kind of file at all.
    MediaUnsupported {
        /// `image`, `video`, `audio` or `document`.
        media: String,
    },
    /// No connection of the channel could take the send (all unhealthy, or none configured).
    NoConnection,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NoAddress => f.write_str("the contact has no address on this channel"),
            SkipReason::FileTooLarge { size, limit } => {
                write!(f, "the file ({size} bytes) is larger than the channel's limit ({limit} bytes)")
            }
            SkipReason::MediaUnsupported { media } => write!(f, "the channel cannot carry {media} files"),
            SkipReason::NoConnection => f.write_str("no healthy connection could take the send"),
        }
    }
}

/// Why one step did not deliver.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct StepFailure {
    /// The step index.
    pub step: u16,
    /// Its channel.
    pub channel: ChannelName,
    /// The error class that ended it, if an error did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<ErrorClass>,
    /// A human-readable reason.
    pub reason: String,
}

/// How a cascade ended. Exactly one per cascade.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Outcome {
    /// A step reached its `until` status (or the contact replied).
    Delivered {
        /// The winning step.
        step: u16,
        /// The winning attempt's number.
        attempt: u32,
        /// Its channel.
        channel: ChannelName,
        /// Its connection.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        connection: Option<ConnectionId>,
        /// The status reached.
        status: Status,
    },
    /// Every step was exhausted; the reason per step.
    Failed {
        /// Why each step did not deliver, in policy order.
        steps: Vec<StepFailure>,
    },
    /// Cancelled by the caller.
    Cancelled,
    /// The overall time to live passed.
    Expired,
}

impl Outcome {
    /// `delivered`, `failed`, `cancelled` or `expired`.
    pub fn state(&self) -> &'static str {
        match self {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Failed { .. } => "failed",
            Outcome::Cancelled => "cancelled",
            Outcome::Expired => "expired",
        }
    }

    /// Whether the message got through.
    pub fn is_delivered(&self) -> bool {
        matches!(self, Outcome::Delivered { .. })
    }
}

/// One entry of a cascade's timeline.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Event {
    /// When it happened (engine time).
    #[serde(with = "super::rfc3339")]
    pub at: Timestamp,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened, for the timeline, the event stream and logs.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The cascade was accepted and will start.
    Created,
    /// The contact has an active conversation on this channel: it goes first.
    ExistingChatFirst {
        /// The step moved to the front.
        step: u16,
        /// Its channel.
        channel: ChannelName,
        /// The conversation's connection, used again (sticky sender).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        connection: Option<ConnectionId>,
    },
    /// A step was skipped without sending.
    StepSkipped {
        /// The step.
        step: u16,
        /// Its channel.
        channel: ChannelName,
        /// Why.
        reason: SkipReason,
    },
    /// A send was handed to an adapter.
    SendStarted {
        /// The attempt.
        attempt: u32,
        /// Its step.
        step: u16,
        /// Its channel.
        channel: ChannelName,
        /// The connection chosen.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        connection: Option<ConnectionId>,
    },
    /// The provider accepted the send.
    Accepted {
        /// The attempt.
        attempt: u32,
        /// The provider's message id.
        provider_message_id: String,
        /// What it cost.
        cost: Cost,
    },
    /// The send failed.
    SendFailed {
        /// The attempt.
        attempt: u32,
        /// The classified error.
        error: Box<SendError>,
        /// When it will be retried, if it will.
        #[serde(default, skip_serializing_if = "Option::is_none", with = "super::rfc3339::option")]
        retry_at: Option<Timestamp>,
    },
    /// The process stopped during the send; its result is not known.
    SendUnknown {
        /// The attempt.
        attempt: u32,
    },
    /// A status arrived for an attempt.
    Status {
        /// The attempt.
        attempt: u32,
        /// The status.
        status: Status,
        /// When the provider says it happened.
        #[serde(default, skip_serializing_if = "Option::is_none", with = "super::rfc3339::option")]
        provider_at: Option<Timestamp>,
        /// For `failed`: the classified error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<Box<SendError>>,
    },
    /// A step ended without success and the cascade moves on.
    StepFailed {
        /// The failure.
        #[serde(flatten)]
        failure: StepFailure,
    },
    /// The contact wrote to us.
    Replied {
        /// The channel they wrote on.
        channel: ChannelName,
    },
    /// The cascade ended.
    Finished {
        /// The outcome.
        outcome: Outcome,
        /// The total cost of every attempt.
        cost: Cost,
    },
}
