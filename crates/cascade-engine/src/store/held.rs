//! Held requests: requests a server answered before it finished working on them, kept by a
//! [`Store`](super::Store) until the work is done, so a crash in between loses nothing.
//!
//! A server that must answer quickly (Kommo's SalesBot waits two seconds) holds the request
//! ([`Store::hold_request`](super::Store::hold_request)), answers, works, and releases it
//! ([`Store::release_request`](super::Store::release_request)). Holding takes a lease: while
//! it runs, the request is the holder's. A request whose lease ran out (its holder died, or is
//! stuck) is handed out again by [`Store::claim_held_requests`](super::Store::claim_held_requests),
//! which renews the lease for the claimer: the lease *is* the timer, as for due cascades. The
//! work must therefore be safe to do twice (a cascade started with an idempotency key is).

use serde::{Deserialize, Serialize};

use crate::model::Timestamp;

/// A request to hold.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct NewHeldRequest {
    /// Names the request among all held ones: holding a key again keeps the first request.
    /// Prefix it with the kind (`kommo:…`).
    pub key: String,
    /// What the request is, so each worker claims its own (`kommo.widget_request`).
    pub kind: String,
    /// What the work needs to be done again (JSON the store does not read).
    pub body: serde_json::Value,
}

/// A held request, as claimed.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct HeldRequest {
    /// Its key.
    pub key: String,
    /// Its kind.
    pub kind: String,
    /// Its body, as held.
    pub body: serde_json::Value,
    /// When it was first held.
    pub held_at: Timestamp,
}
