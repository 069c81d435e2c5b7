use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What kind of failure a provider error is, which decides what the engine does next.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The contact cannot be reached on this channel (not a user, blocked us, invalid address):
    /// go to the next step now.
    Unreachable,
    /// The content was refused permanently: go to the next step now, and surface it loudly.
    Rejected,
    /// A passing failure (timeout, 5xx, rate limit): retry on the same channel, on another
    /// connection if there is one, with backoff, inside the step's time window.
    Transient,
    /// Our own credentials or configuration are bad: mark the connection unhealthy and retry on
    /// another connection, else go to the next step.
    Connection,
}

impl ErrorClass {
    /// The lower-case name used in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Unreachable => "unreachable",
            ErrorClass::Rejected => "rejected",
            ErrorClass::Transient => "transient",
            ErrorClass::Connection => "connection",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure to send, or a failure reported later by a status, classified by the adapter.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, thiserror::Error)]
#[error("{class} error {code}: {detail}")]
pub struct SendError {
    /// What the engine should do about it.
    pub class: ErrorClass,
    /// The provider's own error code (or an adapter-chosen one such as `http_503`).
    pub code: String,
    /// A human-readable explanation.
    pub detail: String,
    /// For `transient` errors: how long the provider asked us to wait before trying again.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "super::duration::option")]
    pub retry_after: Option<Duration>,
}

impl SendError {
    /// An error of the given class.
    pub fn new(class: ErrorClass, code: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { class, code: code.into(), detail: detail.into(), retry_after: None }
    }

    /// The contact is not reachable on this channel.
    pub fn unreachable(code: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorClass::Unreachable, code, detail)
    }

    /// The content was refused permanently.
    pub fn rejected(code: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorClass::Rejected, code, detail)
    }

    /// A passing failure worth retrying.
    pub fn transient(code: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorClass::Transient, code, detail)
    }

    /// A call that got no answer in time (`transient`, code `timeout`). The provider may have
    /// the message all the same, so the detail says that a retry can deliver it twice.
    pub fn timeout(detail: impl std::fmt::Display) -> Self {
        Self::transient(
            "timeout",
            format!("{detail} (the provider may have the message: a retry can deliver it twice)"),
        )
    }

    /// Our credentials or configuration are bad.
    pub fn connection(code: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorClass::Connection, code, detail)
    }

    /// Sets the provider's retry-after hint.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }
}
