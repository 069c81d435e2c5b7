//! The [`Store`] trait: where cascades live between events, and the single source of truth for
//! their timers.
//!
//! Each cascade is a [`CascadeRecord`]: the state machine's state, the request's metadata, a
//! `version` that fences every write-back, and `wake_at`, its next deadline. Timers are data:
//! [`Store::claim_due`] hands out cascades whose `wake_at` has passed and pushes `wake_at`
//! forward by a lease at the same time, so work held by an instance that died falls due again
//! by itself. [`MemoryStore`] implements it in memory; durable stores live in their own crates
//! and pass the same conformance suite (`cascade-testkit`).

pub mod campaign;
pub mod held;
mod memory;
mod packed;
pub mod policy;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::machine::CascadeState;
use crate::model::{CampaignId, CascadeId, ChannelName, ConnectionId, Contact, Event, Policy, Timestamp};

pub use campaign::{
    CampaignMember, CampaignRecord, CampaignState, NewRecipient, RecipientFilter, RecipientOutcome, RecipientRecord,
    RecipientResult, RecipientState, SeriesPoint, StartResult, Tally,
};
pub use held::{HeldRequest, NewHeldRequest};
pub use memory::MemoryStore;
pub use policy::StoredPolicy;

/// A store failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The record changed since it was read (its version moved on): reload and apply again.
    #[error("version conflict on cascade {0}")]
    Conflict(CascadeId),
    /// No such cascade.
    #[error("no cascade {0}")]
    NotFound(CascadeId),
    /// The store cannot be reached or cannot persist right now.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be read back.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A policy save or delete named a version that is not the stored one
    /// ([`Store::save_policy`], [`Store::delete_policy`]); nothing changed.
    #[error("policy {name:?} is at version {current}, not the one expected (0 means none is stored)")]
    PolicyConflict {
        /// The policy's name.
        name: String,
        /// Its stored version now; 0 when none is stored.
        current: u64,
    },
}

/// What the engine knows of an existing chat with a contact on a channel and connection.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Conversation {
    /// The channel.
    pub channel: ChannelName,
    /// The connection the chat is with.
    pub connection: ConnectionId,
    /// The contact's address on the channel.
    pub address: String,
    /// When the contact last wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_inbound_at: Option<Timestamp>,
    /// When a message of ours was last delivered there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery_at: Option<Timestamp>,
}

impl Conversation {
    /// The later of the last inbound message and the last delivery.
    pub fn last_activity(&self) -> Option<Timestamp> {
        self.last_inbound_at.max(self.last_delivery_at)
    }
}

/// What a cascade was started with, beyond its plan.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct CascadeMeta {
    /// The contact.
    pub contact: Contact,
    /// The idempotency key, if one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// A digest of the request, to tell a repeat from a different request with the same key.
    pub fingerprint: String,
    /// Where to POST the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// Caller data returned with the outcome.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub metadata: serde_json::Value,
    /// Who started the cascade ([`CascadeRequest::owner`](crate::CascadeRequest::owner)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The campaign recipient it was started for ([`CascadeRequest::campaign`](crate::CascadeRequest::campaign)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<CampaignMember>,
}

/// One stored cascade.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct CascadeRecord {
    /// The state machine's state (its id is the cascade's id).
    pub state: CascadeState,
    /// The request's metadata.
    pub meta: Arc<CascadeMeta>,
    /// Bumped by every write; writes name the version they read.
    pub version: u64,
    /// The next deadline, `None` once finished.
    pub wake_at: Option<Timestamp>,
}

impl CascadeRecord {
    /// The cascade id.
    pub fn id(&self) -> CascadeId {
        self.state.id
    }
}

/// The outcome of [`Store::create`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Created {
    /// Stored as new.
    New,
    /// The idempotency key is taken; `same_request` tells whether the request matched.
    Existing {
        /// The cascade holding the key.
        id: CascadeId,
        /// Whether the stored request has the same fingerprint.
        same_request: bool,
    },
}

/// Links a provider message id to an attempt, so status webhooks find it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ProviderRef {
    /// The adapter that sent it.
    pub adapter: ChannelName,
    /// The provider's message id.
    pub provider_message_id: String,
    /// The attempt.
    pub attempt: u32,
}

/// Where a provider message id points.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AttemptRef {
    /// The cascade.
    pub cascade: CascadeId,
    /// The attempt number.
    pub attempt: u32,
}

/// A write-back after a transition, fenced by `expected_version`.
#[derive(Clone, Debug)]
pub struct CascadeUpdate {
    /// The state after the transition.
    pub state: CascadeState,
    /// The version that was read; the write fails with [`StoreError::Conflict`] if it moved.
    pub expected_version: u64,
    /// The next deadline.
    pub wake_at: Option<Timestamp>,
    /// Timeline entries to append.
    pub events: Vec<Event>,
    /// New provider message ids to index.
    pub provider_refs: Vec<ProviderRef>,
    /// A callback to deliver (written in the same transaction, so it is never lost).
    pub outbox: Option<NewOutboxItem>,
    /// The result to record on the campaign recipient the cascade was started for, when this
    /// update finishes it (written in the same transaction).
    pub recipient: Option<RecipientOutcome>,
}

/// A callback to enqueue.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct NewOutboxItem {
    /// The cascade it reports on.
    pub cascade: CascadeId,
    /// Where to POST.
    pub url: String,
    /// The JSON body.
    pub body: serde_json::Value,
}

/// A callback waiting for delivery.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct OutboxItem {
    /// Store-assigned id.
    pub id: u64,
    /// The cascade it reports on.
    pub cascade: CascadeId,
    /// Where to POST.
    pub url: String,
    /// The JSON body.
    pub body: serde_json::Value,
    /// Delivery tries made so far.
    pub tries: u32,
    /// When to try next.
    pub next_at: Timestamp,
    /// The last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Given up on: kept for inspection until its cascade is purged, never tried again.
    pub dead: bool,
}

/// How many callbacks the outbox holds ([`Store::outbox_counts`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct OutboxCounts {
    /// Callbacks still to be delivered: due now, waiting for a retry, or being tried.
    pub pending: u64,
    /// Callbacks given up on, kept until their cascade is purged ([`Store::dead_letters`]).
    pub dead: u64,
}

/// A filter for [`Store::list`].
#[derive(Clone, PartialEq, Debug, Default)]
pub struct ListFilter {
    /// `running`, `delivered`, `failed`, `cancelled` or `expired`.
    pub state: Option<String>,
    /// Only cascades whose plan uses this channel.
    pub channel: Option<ChannelName>,
    /// Only cascades created at or after this time.
    pub since: Option<Timestamp>,
    /// Only cascades with ids before this one (newest first paging).
    pub before: Option<CascadeId>,
    /// Only cascades whose [`CascadeMeta::owner`] is exactly this (`key:crm`).
    pub owner: Option<String>,
    /// The most to return.
    pub limit: usize,
}

/// The state of a cascade as a list filter sees it.
pub fn state_name(state: &CascadeState) -> &'static str {
    state.outcome.as_ref().map_or("running", |o| o.state())
}

/// Where cascades, their timelines, timers, conversations and callbacks are kept.
///
/// Every method is atomic. Implementations must pass the conformance suite in
/// `cascade-testkit` (`store_conformance`).
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a new cascade with its first timeline entries, unless its idempotency key is
    /// taken. Durable once this returns.
    async fn create(&self, record: CascadeRecord, events: Vec<Event>) -> Result<Created, StoreError>;

    /// Reads a cascade.
    async fn load(&self, id: CascadeId) -> Result<Option<CascadeRecord>, StoreError>;

    /// Writes a cascade back if its version is still `expected_version`; the new version is
    /// `expected_version + 1`.
    async fn save(&self, update: &CascadeUpdate) -> Result<u64, StoreError>;

    /// The cascade's timeline, in order.
    async fn events(&self, id: CascadeId) -> Result<Vec<Event>, StoreError>;

    /// The attempt a provider message id belongs to.
    async fn find_attempt(&self, adapter: &str, provider_message_id: &str) -> Result<Option<AttemptRef>, StoreError>;

    /// Claims up to `limit` cascades due at `now`: pushes their `wake_at` to `now + lease`,
    /// bumps their version, and returns them.
    async fn claim_due(&self, now: Timestamp, limit: usize, lease: Duration) -> Result<Vec<CascadeRecord>, StoreError>;

    /// The earliest `wake_at` of any running cascade.
    async fn next_wake(&self) -> Result<Option<Timestamp>, StoreError>;

    /// Running cascades that send to `address` on `channel` (for replies).
    async fn running_for_address(&self, channel: &ChannelName, address: &str) -> Result<Vec<CascadeId>, StoreError>;

    /// Records a conversation, merging the timestamps (each keeps the later value).
    async fn touch_conversation(&self, conversation: Conversation) -> Result<(), StoreError>;

    /// The known conversations with any of these (channel, address) pairs.
    async fn conversations(&self, addresses: &[(ChannelName, String)]) -> Result<Vec<Conversation>, StoreError>;

    /// Cascades matching a filter, newest first.
    async fn list(&self, filter: &ListFilter) -> Result<Vec<CascadeRecord>, StoreError>;

    /// Claims up to `limit` callbacks due at `now`, pushing their `next_at` by `lease`.
    async fn claim_outbox(&self, now: Timestamp, limit: usize, lease: Duration) -> Result<Vec<OutboxItem>, StoreError>;

    /// Records the result of a delivery try: `Ok` removes the item; `Err` keeps it with its
    /// error, to retry at `retry_at` or, if `None`, as dead.
    async fn outbox_result(&self, id: u64, result: Result<(), (String, Option<Timestamp>)>) -> Result<(), StoreError>;

    /// Callbacks given up on, newest first (highest id first): up to `limit` of those whose id
    /// is below `before`, or of all of them when `before` is `None`. Pass the last id of a page
    /// as `before` to get the next.
    async fn dead_letters(&self, before: Option<u64>, limit: usize) -> Result<Vec<OutboxItem>, StoreError>;

    /// How many callbacks are pending and how many are dead, without reading them: one cheap
    /// query (the metrics endpoint calls it on every scrape). Delivered callbacks are gone
    /// and counted in neither.
    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError>;

    /// Deletes up to `limit` finished cascades last updated before `before`, with their
    /// timelines, provider ids and dead callbacks; returns how many. A cascade with a callback
    /// still to be delivered is kept until that callback is delivered or given up on.
    async fn purge_finished(&self, before: Timestamp, limit: usize) -> Result<usize, StoreError>;

    // Campaigns (see [`campaign`]). A store that keeps none answers every call with
    // `Unavailable`; the engine runs cascades without them.

    /// Stores a new campaign, or updates the stored one with the same id: its name, settings,
    /// recipient count and `updated_at`. The state of a stored campaign moves only through
    /// [`Store::set_campaign_state`] (so a save cannot undo an operator's cancel), and its
    /// owner and creation time never change.
    async fn save_campaign(&self, campaign: &CampaignRecord) -> Result<(), StoreError> {
        let _ = campaign;
        Err(no_campaigns())
    }

    /// Reads a campaign.
    async fn load_campaign(&self, id: CampaignId) -> Result<Option<CampaignRecord>, StoreError> {
        let _ = id;
        Err(no_campaigns())
    }

    /// Campaigns newest first: up to `limit` with ids below `before` (all when `None`), only
    /// `owner`'s when given.
    async fn list_campaigns(
        &self,
        before: Option<CampaignId>,
        owner: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CampaignRecord>, StoreError> {
        let _ = (before, owner, limit);
        Err(no_campaigns())
    }

    /// Moves a campaign to `to` if its state is one of `from`, stamping `updated_at` with
    /// `now`; returns whether it moved (`false` also when there is no such campaign).
    async fn set_campaign_state(
        &self,
        id: CampaignId,
        from: &[CampaignState],
        to: CampaignState,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let _ = (id, from, to, now);
        Err(no_campaigns())
    }

    /// Takes or renews the lease of up to `limit` running campaigns for `holder` until
    /// `until`: those with no lease, a lapsed one (ended before `now`), or one `holder` already
    /// has. Returns them. A campaign leased to another live holder is not returned. An
    /// `until` before `now` gives `holder`'s leases up (a graceful stop).
    async fn lease_campaigns(
        &self,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<CampaignRecord>, StoreError> {
        let _ = (holder, now, until, limit);
        Err(no_campaigns())
    }

    /// Adds recipients to a campaign; a number (`seq`) already stored is left as it is, so an
    /// interrupted import can be repeated.
    async fn add_recipients(&self, campaign: CampaignId, recipients: &[NewRecipient]) -> Result<(), StoreError> {
        let _ = (campaign, recipients);
        Err(no_campaigns())
    }

    /// A campaign's recipients matching `filter`, by number.
    async fn campaign_recipients(
        &self,
        campaign: CampaignId,
        filter: &RecipientFilter,
    ) -> Result<Vec<RecipientRecord>, StoreError> {
        let _ = (campaign, filter);
        Err(no_campaigns())
    }

    /// Records at `at` what starting pending recipients came to: `started` with its cascade,
    /// or `refused` with a result whose outcome is `refused`, no channel, no cost, and the
    /// reason. Recipients no longer pending are left alone.
    async fn mark_started(
        &self,
        campaign: CampaignId,
        started: &[(u64, StartResult)],
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let _ = (campaign, started, at);
        Err(no_campaigns())
    }

    /// Moves every pending recipient of a campaign to `to` (`expired` or `cancelled`) at `at`;
    /// returns how many moved.
    async fn close_pending(&self, campaign: CampaignId, to: RecipientState, at: Timestamp) -> Result<u64, StoreError> {
        let _ = (campaign, to, at);
        Err(no_campaigns())
    }

    /// A campaign's recipients counted by state, outcome and delivering channel.
    async fn campaign_tally(&self, campaign: CampaignId) -> Result<Vec<Tally>, StoreError> {
        let _ = campaign;
        Err(no_campaigns())
    }

    /// A campaign's results over time: the recipients whose result has a time
    /// ([`RecipientResult::at`]), counted by the `bucket` that time falls in (buckets start at
    /// whole multiples of `bucket` since the Unix epoch; one shorter than a nanosecond counts
    /// as one), by outcome and by delivering channel. Ordered by time, outcome and channel (no
    /// channel first). Aggregated by the store: the recipients themselves are not read out.
    async fn campaign_series(&self, campaign: CampaignId, bucket: Duration) -> Result<Vec<SeriesPoint>, StoreError> {
        let _ = (campaign, bucket);
        Err(no_campaigns())
    }

    /// Why a campaign's recipients did not get the message: the reasons of the results whose
    /// outcome is `failed` or `refused` (an empty one for a result without a reason), each
    /// with how many recipients have it, most first and equal counts by reason; at most
    /// `limit` of them.
    async fn campaign_reasons(&self, campaign: CampaignId, limit: usize) -> Result<Vec<(String, u64)>, StoreError> {
        let _ = (campaign, limit);
        Err(no_campaigns())
    }

    // Named policies (see [`policy`]). A store that keeps none answers every call with
    // `Unavailable`; the server then knows only the policies of its configuration.

    /// Stores `policy` under `name` at `at`, as version 1 when none is stored and as the
    /// stored version plus one otherwise. With `expected`, only if the stored version is that
    /// one (`Some(0)`: only if none is stored); else [`StoreError::PolicyConflict`] with the
    /// version there is, and nothing changes. Returns what was stored.
    async fn save_policy(
        &self,
        name: &str,
        policy: &Policy,
        expected: Option<u64>,
        at: Timestamp,
    ) -> Result<StoredPolicy, StoreError> {
        let _ = (name, policy, expected, at);
        Err(no_policies())
    }

    /// Reads a stored policy.
    async fn load_policy(&self, name: &str) -> Result<Option<StoredPolicy>, StoreError> {
        let _ = name;
        Err(no_policies())
    }

    /// Every stored policy, by name.
    async fn list_policies(&self) -> Result<Vec<StoredPolicy>, StoreError> {
        Err(no_policies())
    }

    /// Deletes a stored policy; returns whether there was one. With `expected`, only if the
    /// stored version is that one (0 when none is stored); else
    /// [`StoreError::PolicyConflict`] and nothing changes.
    async fn delete_policy(&self, name: &str, expected: Option<u64>) -> Result<bool, StoreError> {
        let _ = (name, expected);
        Err(no_policies())
    }

    // Held requests (see [`held`]). A store that keeps none answers every call with
    // `Unavailable`; a server cannot then take requests it answers before finishing them
    // (Kommo's `widget_request`).

    /// Holds a request at `now`, leased until `now + lease`; returns whether it is new. A key
    /// already held keeps its first request and lease (`false`).
    async fn hold_request(
        &self,
        request: &NewHeldRequest,
        now: Timestamp,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let _ = (request, now, lease);
        Err(no_held_requests())
    }

    /// Claims up to `limit` held requests of `kind` whose lease ended by `now`: renews their
    /// lease until `now + lease` and returns them, first held first.
    async fn claim_held_requests(
        &self,
        kind: &str,
        now: Timestamp,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<HeldRequest>, StoreError> {
        let _ = (kind, now, limit, lease);
        Err(no_held_requests())
    }

    /// Lets a held request go: its work is done. Releasing a key not held does nothing.
    async fn release_request(&self, key: &str) -> Result<(), StoreError> {
        let _ = key;
        Err(no_held_requests())
    }

    /// The most records an engine should keep decoded in front of this store, if the store
    /// has a limit of its own ([`EngineConfig::cache_size`](crate::EngineConfig::cache_size)
    /// applies below it). A store whose reads cost microseconds, not a round trip, asks for
    /// few: the cache then only spares it the reads of cascades in motion.
    fn cache_limit(&self) -> Option<usize> {
        None
    }
}

fn no_campaigns() -> StoreError {
    StoreError::Unavailable("this store keeps no campaigns".into())
}

fn no_policies() -> StoreError {
    StoreError::Unavailable("this store keeps no policies".into())
}

fn no_held_requests() -> StoreError {
    StoreError::Unavailable("this store keeps no held requests".into())
}
