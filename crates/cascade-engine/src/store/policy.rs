//! Named policies kept by a [`Store`](super::Store), so they can be edited while the server
//! runs and shared by every instance on one database.
//!
//! The store keeps a policy as it was given, under its name, with a `version` that starts at 1
//! and grows by one with every save. Saves and deletes may name the version they expect
//! (compare-and-set): `Some(0)` means "there must be none stored", `Some(n)` "the stored one
//! must be at version `n`"; anything else is refused with
//! [`StoreError::PolicyConflict`](super::StoreError::PolicyConflict) and changes nothing.
//! A deleted policy's name starts again at version 1 when it is saved anew.

use serde::{Deserialize, Serialize};

use crate::model::{Policy, Timestamp};

/// A policy kept by a store under its name.
///
/// ```
/// use cascade_engine::Policy;
/// use cascade_engine::store::StoredPolicy;
/// let stored = StoredPolicy {
///     name: "default".into(),
///     policy: Policy::chain(["whatsapp", "sms"]),
///     version: 1,
///     updated_at: chrono::Utc::now(),
/// };
/// let json = serde_json::to_value(&stored).unwrap();
/// assert_eq!(json["policy"]["steps"][1]["channel"], "sms");
/// ```
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct StoredPolicy {
    /// The name requests refer to it by (`"policy": "default"`).
    pub name: String,
    /// The policy.
    pub policy: Policy,
    /// 1 when first saved, one more with every save since.
    pub version: u64,
    /// When it was last saved.
    pub updated_at: Timestamp,
}
