//! Errors the engine returns to its callers.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::CascadeId;
use crate::store::StoreError;

/// One problem with a cascade request, naming the offending field by its JSON path
/// (`policy.steps[1].until`, `message.overrides.sms.text`, `contact.phone`).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ValidationError {
    /// The JSON path of the field.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl ValidationError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why a cascade could not be started. Nothing was sent and nothing was stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The request is invalid; every problem found, each naming its field.
    #[error("invalid cascade request: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ValidationError>),
    /// The idempotency key was used before with a different request.
    #[error("idempotency key `{key}` was already used for a different request (cascade {existing})")]
    IdempotencyConflict {
        /// The key.
        key: String,
        /// The cascade it belongs to.
        existing: CascadeId,
    },
    /// The store failed; the request may be retried.
    #[error("store error: {0}")]
    Store(#[from] StoreError),
    /// The engine is shutting down.
    #[error("the engine is shutting down")]
    ShuttingDown,
}

/// An error from an operation on an existing cascade.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// No cascade with this id.
    #[error("no cascade {0}")]
    NotFound(CascadeId),
    /// The store failed.
    #[error("store error: {0}")]
    Store(#[from] StoreError),
    /// The engine is shutting down.
    #[error("the engine is shutting down")]
    ShuttingDown,
}
