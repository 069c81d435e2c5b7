//! The vocabulary of cascade as plain, serializable data.
//!
//! Everything here is inert: no I/O, no clock. The state machine ([`crate::machine`]) and the
//! runtime ([`crate::runtime`]) give these types their behaviour.

mod contact;
mod cost;
pub mod duration;
mod error;
mod ids;
mod message;
mod policy;
mod record;
pub mod rfc3339;
mod status;

pub use contact::{Address, AddressKind, Contact, is_e164};
pub use cost::Cost;
pub use error::{ErrorClass, SendError};
pub use ids::{CampaignId, CascadeId, ChannelName, ConnectionId};
pub use message::{Attachment, Button, Content, ContentOverride, MediaKind, Message, ProviderTemplate};
pub use policy::{Policy, RetryPolicy, Step};
pub use record::{Attempt, AttemptState, Event, EventKind, Outcome, SkipReason, StatusRecord, StepFailure};
pub use status::Status;

/// A point in time, always UTC.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// `t` as nanoseconds since the Unix epoch, the way stores keep and order times: times outside
/// what that can hold (before 1678, after 2261) count as its limits.
///
/// ```
/// use cascade_engine::{Timestamp, timestamp_nanos};
/// assert_eq!(timestamp_nanos(Timestamp::UNIX_EPOCH), 0);
/// assert_eq!(timestamp_nanos(Timestamp::MAX_UTC), i64::MAX);
/// assert_eq!(timestamp_nanos(Timestamp::MIN_UTC), i64::MIN);
/// ```
pub fn timestamp_nanos(t: Timestamp) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 { i64::MIN } else { i64::MAX })
}
