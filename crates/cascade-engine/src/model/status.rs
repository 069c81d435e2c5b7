use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A normalized delivery status.
///
/// The progress statuses are ordered: `accepted` < `sent` < `delivered` < `read` < `clicked` <
/// `replied`. Reaching a later one implies the earlier ones (a `read` without a `delivered` still
/// means delivered). `failed` stands apart: it is not on the ladder and never counts as success.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The provider's API took the message.
    Accepted,
    /// The provider handed it on towards the contact.
    Sent,
    /// It reached the contact's device or mailbox.
    Delivered,
    /// The contact opened it.
    Read,
    /// The contact followed a tracked link in it.
    Clicked,
    /// The contact answered.
    Replied,
    /// The provider gave up on it.
    Failed,
}

impl Status {
    /// Every progress status, in order.
    pub const PROGRESS: [Status; 6] =
        [Status::Accepted, Status::Sent, Status::Delivered, Status::Read, Status::Clicked, Status::Replied];

    /// The position on the progress ladder, or `None` for `failed`.
    pub fn rank(self) -> Option<u8> {
        match self {
            Status::Accepted => Some(0),
            Status::Sent => Some(1),
            Status::Delivered => Some(2),
            Status::Read => Some(3),
            Status::Clicked => Some(4),
            Status::Replied => Some(5),
            Status::Failed => None,
        }
    }

    /// Whether this status satisfies a step waiting `until` `target`.
    ///
    /// ```
    /// use cascade_engine::Status;
    /// assert!(Status::Read.reaches(Status::Delivered));
    /// assert!(!Status::Sent.reaches(Status::Delivered));
    /// assert!(!Status::Failed.reaches(Status::Accepted));
    /// ```
    pub fn reaches(self, target: Status) -> bool {
        match (self.rank(), target.rank()) {
            (Some(a), Some(b)) => a >= b,
            _ => false,
        }
    }

    /// The lower-case name used in JSON, config and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Sent => "sent",
            Status::Delivered => "delivered",
            Status::Read => "read",
            Status::Clicked => "clicked",
            Status::Replied => "replied",
            Status::Failed => "failed",
        }
    }

    /// The higher of two progress statuses (`failed` never wins over progress).
    pub fn max_progress(a: Option<Status>, b: Status) -> Option<Status> {
        match (a, b.rank()) {
            (_, None) => a,
            (None, Some(_)) => Some(b),
            (Some(a), Some(_)) => Some(if b.reaches(a) { b } else { a }),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Status::Failed].into_iter().chain(Status::PROGRESS).find(|st| st.as_str() == s).ok_or_else(|| {
            format!("unknown status `{s}`: expected accepted, sent, delivered, read, clicked, replied or failed")
        })
    }
}
