//! Campaign state kept by a [`Store`](super::Store): campaigns, their recipients, and what
//! became of each recipient's cascade.
//!
//! The store keeps state, not meaning: a campaign's settings (message, policy, schedule, rate)
//! are the `spec` JSON that `cascade-campaigns` reads and writes. What the store guarantees:
//!
//! - recipients are numbered (`seq`) in list order and added idempotently by number, so an
//!   import can be repeated after a crash;
//! - a recipient moves `pending` → `started` (with its cascade's id), or `pending` → `expired`
//!   or `cancelled`, never back;
//! - when a campaign's cascade finishes, its result is written onto the recipient in the same
//!   transaction as the cascade's last write ([`CascadeUpdate::recipient`](super::CascadeUpdate::recipient)),
//!   so progress never misses an outcome and survives the cascade's purge;
//! - one instance at a time drives a campaign: [`Store::lease_campaigns`](super::Store::lease_campaigns)
//!   hands a running campaign to an instance for a while, and to another once that lapses.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::{CampaignId, CascadeId, ChannelName, Contact, Cost, Timestamp};

/// Where a campaign is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignState {
    /// Its recipient list is being stored; nothing is sent.
    Importing,
    /// Launched: it sends whenever its schedule allows, until no recipient is pending.
    Running,
    /// Paused by an operator: nothing new is started until it is resumed.
    Paused,
    /// Cancelled: recipients not started never will be.
    Cancelled,
    /// Every recipient was started or expired.
    Finished,
}

impl CampaignState {
    /// Every state, in the order above.
    pub const ALL: [CampaignState; 5] = [
        CampaignState::Importing,
        CampaignState::Running,
        CampaignState::Paused,
        CampaignState::Cancelled,
        CampaignState::Finished,
    ];

    /// The name used in JSON and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignState::Importing => "importing",
            CampaignState::Running => "running",
            CampaignState::Paused => "paused",
            CampaignState::Cancelled => "cancelled",
            CampaignState::Finished => "finished",
        }
    }

    /// Whether nothing more will ever be started (cancelled or finished).
    pub fn is_final(self) -> bool {
        matches!(self, CampaignState::Cancelled | CampaignState::Finished)
    }
}

impl fmt::Display for CampaignState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CampaignState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| format!("unknown campaign state {s:?}"))
    }
}

/// A stored campaign.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct CampaignRecord {
    /// Its id.
    pub id: CampaignId,
    /// A name for people.
    pub name: String,
    /// Who created it (`key:NAME`), as for cascades.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Where it is in its life.
    pub state: CampaignState,
    /// Its settings, as `cascade-campaigns` writes them.
    pub spec: serde_json::Value,
    /// How many recipients it has.
    pub recipients: u64,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed: its state, its settings, or the mark a running import makes.
    pub updated_at: Timestamp,
}

/// Where a recipient is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientState {
    /// Not started yet.
    Pending,
    /// Its cascade was started.
    Started,
    /// Not started before the campaign's end.
    Expired,
    /// Not started because the campaign was cancelled.
    Cancelled,
    /// The engine refused to start its cascade (no step of the policy can reach the contact,
    /// a template variable is missing…): its `result` says why, with the outcome `refused`.
    Refused,
}

impl RecipientState {
    /// Every state, in the order above.
    pub const ALL: [RecipientState; 5] = [
        RecipientState::Pending,
        RecipientState::Started,
        RecipientState::Expired,
        RecipientState::Cancelled,
        RecipientState::Refused,
    ];

    /// The name used in JSON and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            RecipientState::Pending => "pending",
            RecipientState::Started => "started",
            RecipientState::Expired => "expired",
            RecipientState::Cancelled => "cancelled",
            RecipientState::Refused => "refused",
        }
    }
}

impl fmt::Display for RecipientState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RecipientState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| format!("unknown recipient state {s:?}"))
    }
}

/// A recipient to store.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct NewRecipient {
    /// Its number in the campaign, from 0 in list order; unique per campaign.
    pub seq: u64,
    /// Its line in the uploaded list (header = 1), for reports.
    pub line: u64,
    /// The contact.
    pub contact: Contact,
    /// The IANA time zone its sending window is judged in.
    pub zone: String,
}

/// What became of a started recipient's cascade.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct RecipientResult {
    /// `delivered`, `failed`, `cancelled` or `expired` (the cascade's outcome).
    pub outcome: String,
    /// The channel that delivered, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<ChannelName>,
    /// What the cascade cost.
    pub cost: Cost,
    /// Why it did not deliver, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it ended: the cascade's finish, or when the recipient was refused. `None` in
    /// results stored before this was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
}

/// A cascade's result for the recipient it was started for, written with the cascade's last
/// update ([`CascadeUpdate::recipient`](super::CascadeUpdate::recipient)).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct RecipientOutcome {
    /// The campaign.
    pub campaign: CampaignId,
    /// The recipient's number.
    pub seq: u64,
    /// The result.
    pub result: RecipientResult,
}

/// A stored recipient.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct RecipientRecord {
    /// Its number in the campaign.
    pub seq: u64,
    /// Its line in the uploaded list.
    pub line: u64,
    /// The contact.
    pub contact: Contact,
    /// The time zone of its sending window.
    pub zone: String,
    /// Where it is.
    pub state: RecipientState,
    /// Its cascade, once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cascade: Option<CascadeId>,
    /// When it was started, expired or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<Timestamp>,
    /// Its cascade's result, once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<RecipientResult>,
}

/// Which recipients [`Store::campaign_recipients`](super::Store::campaign_recipients) returns.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct RecipientFilter {
    /// Only recipients in one of these states (all when empty).
    pub states: Vec<RecipientState>,
    /// Only recipients whose result has one of these outcomes (`failed`, `expired`, …; a
    /// refused recipient's is `refused`). Combined with `states` by "or": `states =
    /// [expired]`, `outcomes = [failed]` returns the recipients never started before the end
    /// and those whose cascade failed.
    pub outcomes: Vec<String>,
    /// Only recipients still pending whose zone is one of these (ignored when `None`).
    pub zones: Option<Vec<String>>,
    /// Only recipients numbered above this (paging).
    pub after: Option<u64>,
    /// The most to return.
    pub limit: usize,
}

/// One group of a campaign's recipients, by state, outcome and delivering channel, with
/// what their cascades cost ([`Store::campaign_tally`](super::Store::campaign_tally)).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Tally {
    /// The recipients' state.
    pub state: RecipientState,
    /// Their cascades' outcome (`None` while running or not started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The delivering channel, for delivered ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<ChannelName>,
    /// How many.
    pub count: u64,
    /// What their finished cascades cost together.
    pub cost: Cost,
}

/// How many of a campaign's recipients ended one way within one stretch of time
/// ([`Store::campaign_series`](super::Store::campaign_series)).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// The start of the stretch: a whole number of buckets since the Unix epoch.
    pub at: Timestamp,
    /// The result's outcome: `delivered`, `failed`, `cancelled`, `expired` or `refused`.
    pub outcome: String,
    /// The delivering channel, for delivered ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<ChannelName>,
    /// How many.
    pub count: u64,
}

/// What starting a recipient came to ([`Store::mark_started`](super::Store::mark_started)).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum StartResult {
    /// Its cascade was started (or had been: a repeated idempotency key).
    Started(CascadeId),
    /// The engine refused the request, for this reason.
    Refused(String),
}

/// Marks a cascade as one recipient's of a campaign ([`CascadeRequest::campaign`](crate::CascadeRequest::campaign)).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct CampaignMember {
    /// The campaign.
    pub campaign: CampaignId,
    /// The recipient's number.
    pub seq: u64,
}
