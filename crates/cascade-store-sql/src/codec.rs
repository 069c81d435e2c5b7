//! Turning records into rows and back, shared by both backends.
//!
//! Encoding (JSON, the most expensive part of a write) happens in the caller's task, before a
//! write joins a batch, so the single writer spends its time on SQL (and on decoding what
//! claims return).

use std::sync::Arc;

use cascade_engine::machine::{CascadeState, Phase};
use cascade_engine::plan::Plan;
use cascade_engine::store::{
    CampaignRecord, CascadeMeta, CascadeRecord, CascadeUpdate, Conversation, HeldRequest, NewHeldRequest, NewRecipient,
    OutboxItem, ProviderRef, RecipientOutcome, RecipientRecord, RecipientResult, StoredPolicy, Tally,
};
use cascade_engine::{
    Attempt, CampaignId, CascadeId, ConnectionId, Cost, Event, Outcome, Policy, StepFailure, StoreError, Timestamp,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A timestamp as stored: nanoseconds since the Unix epoch (years 1678 to 2261).
pub(crate) fn ts(t: Timestamp) -> i64 {
    cascade_engine::timestamp_nanos(t)
}

/// A stored timestamp.
pub(crate) fn from_ts(n: i64) -> Timestamp {
    chrono::DateTime::from_timestamp_nanos(n)
}

/// A lease or deadline `d` after `now`, as stored.
pub(crate) fn after(now: Timestamp, d: std::time::Duration) -> i64 {
    ts(now).saturating_add(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("cannot encode: {e}")))
}

fn parse<'a, T: serde::Deserialize<'a>>(what: &str, text: &'a str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// The `body` column: a cascade's state without its plan.
///
/// The plan never changes after creation, so it is written once, into the cascade's
/// `cascade_meta` row ([`MetaColumn`]), instead of with every save (it was about a third of
/// each rewritten body).
/// Rows written before schema version 9 (SQLite) or 8 (PostgreSQL) keep it here, and
/// [`record`] reads them too.
#[derive(Serialize)]
struct BodyColumn<'a> {
    id: CascadeId,
    #[serde(with = "cascade_engine::model::rfc3339")]
    created_at: Timestamp,
    phase: &'a Phase,
    cursor: u16,
    #[serde(skip_serializing_if = "Option::is_none", with = "cascade_engine::model::rfc3339::option")]
    step_started_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    excluded: &'a [ConnectionId],
    attempts: &'a [Attempt],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    failures: &'a [StepFailure],
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'a Outcome>,
    #[serde(skip_serializing_if = "Option::is_none", with = "cascade_engine::model::rfc3339::option")]
    finished_at: Option<Timestamp>,
}

impl<'a> From<&'a CascadeState> for BodyColumn<'a> {
    fn from(state: &'a CascadeState) -> Self {
        // Every field named: one added to the state does not compile until it is stored.
        let CascadeState {
            id,
            created_at,
            plan: _,
            phase,
            cursor,
            step_started_at,
            excluded,
            attempts,
            failures,
            outcome,
            finished_at,
        } = state;
        Self {
            id: *id,
            created_at: *created_at,
            phase,
            cursor: *cursor,
            step_started_at: *step_started_at,
            excluded,
            attempts,
            failures,
            outcome: outcome.as_ref(),
            finished_at: *finished_at,
        }
    }
}

/// A stored `body`, with the plan of rows written before it moved to `meta`.
#[derive(Deserialize)]
struct StoredBody {
    id: CascadeId,
    created_at: Timestamp,
    #[serde(default)]
    plan: Option<Arc<Plan>>,
    phase: Phase,
    cursor: u16,
    #[serde(default)]
    step_started_at: Option<Timestamp>,
    #[serde(default)]
    excluded: Vec<ConnectionId>,
    #[serde(default)]
    attempts: Vec<Attempt>,
    #[serde(default)]
    failures: Vec<StepFailure>,
    #[serde(default)]
    outcome: Option<Outcome>,
    #[serde(default)]
    finished_at: Option<Timestamp>,
}

/// The `meta` column of `cascade_meta`: the request's metadata and the cascade's plan, both
/// written once, when the cascade is created.
#[derive(Serialize)]
struct MetaColumn<'a> {
    plan: &'a Plan,
    #[serde(flatten)]
    meta: &'a CascadeMeta,
}

/// The plan of a stored `meta` (absent from rows written before schema version 9 on SQLite, 8
/// on PostgreSQL, whose `body` has it).
#[derive(Deserialize)]
struct StoredPlan {
    #[serde(default)]
    plan: Option<Arc<Plan>>,
}

/// The `channels` column: every channel of the plan between bars, for `LIKE '%|sms|%'`.
fn channels(state: &CascadeState) -> String {
    let mut s = String::from("|");
    for step in &state.plan.steps {
        s.push_str(step.channel.as_str());
        s.push('|');
    }
    s
}

/// Every (channel, address) a reply to a cascade may come from.
pub(crate) fn addresses(state: &CascadeState) -> Vec<(String, String)> {
    state.plan.reply_addresses().into_iter().map(|(c, a)| (c.to_string(), a.to_owned())).collect()
}

/// A new cascade, ready to insert.
#[derive(Debug)]
pub(crate) struct NewCascade {
    pub id: Uuid,
    pub version: i64,
    pub wake_at: Option<i64>,
    pub state: &'static str,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub idempotency_key: Option<String>,
    pub fingerprint: String,
    pub channels: String,
    /// Who started it (`meta.owner`), for list filters.
    pub owner: Option<String>,
    pub body: String,
    pub meta: String,
    pub events: EventsRow,
    /// Addresses to index (empty if it is already finished).
    pub addresses: Vec<(String, String)>,
}

impl NewCascade {
    pub(crate) fn encode(record: &CascadeRecord, events: &[Event]) -> Result<Self, StoreError> {
        let state = &record.state;
        Ok(Self {
            id: *record.id().as_uuid(),
            version: record.version as i64,
            wake_at: record.wake_at.map(ts),
            state: cascade_engine::store::state_name(state),
            created_at: ts(state.created_at),
            finished_at: state.finished_at.map(ts),
            idempotency_key: record.meta.idempotency_key.clone(),
            fingerprint: record.meta.fingerprint.clone(),
            channels: channels(state),
            owner: record.meta.owner.clone(),
            body: json(&BodyColumn::from(state))?,
            meta: json(&MetaColumn { plan: &state.plan, meta: &record.meta })?,
            events: EventsRow::encode(events)?,
            addresses: if state.is_finished() { Vec::new() } else { addresses(state) },
        })
    }
}

/// The timeline entries one write appends, stored as one `events` row numbered as the first of
/// them: the entry itself when there is one, an array of the entries in order when there are
/// several. One row per write, not one per entry: a cascade's three or four writes append its
/// eight or so entries, and each row costs an insert into the table and its index.
#[derive(Debug)]
pub(crate) struct EventsRow {
    /// How many entries (the cascade's `event_count` grows by this).
    pub count: i64,
    /// The row's `body`; `None` when the write appends no entry (and so no row).
    pub body: Option<String>,
}

impl EventsRow {
    pub(crate) fn encode(events: &[Event]) -> Result<Self, StoreError> {
        let body = match events {
            [] => None,
            [one] => Some(json(one)?),
            several => Some(json(&several)?),
        };
        Ok(Self { count: events.len() as i64, body })
    }
}

/// A fenced write-back, ready to run.
#[derive(Debug)]
pub(crate) struct SaveRow {
    pub id: Uuid,
    pub expected_version: i64,
    pub wake_at: Option<i64>,
    pub state: &'static str,
    pub finished_at: Option<i64>,
    pub body: String,
    pub events: EventsRow,
    pub provider_refs: Vec<ProviderRef>,
    /// Addresses to drop from the index (the cascade has finished).
    pub drop_addresses: Vec<(String, String)>,
    pub outbox: Option<OutboxRow>,
    /// The result to write onto the campaign recipient the cascade was started for.
    pub recipient: Option<RecipientResultRow>,
}

/// A callback to enqueue.
#[derive(Debug)]
pub(crate) struct OutboxRow {
    pub url: String,
    pub body: String,
    pub next_at: i64,
}

impl SaveRow {
    pub(crate) fn encode(u: &CascadeUpdate) -> Result<Self, StoreError> {
        let state = &u.state;
        let finished = state.is_finished();
        Ok(Self {
            id: *state.id.as_uuid(),
            expected_version: u.expected_version as i64,
            wake_at: u.wake_at.map(ts),
            state: cascade_engine::store::state_name(state),
            finished_at: state.finished_at.map(ts),
            body: json(&BodyColumn::from(state))?,
            events: EventsRow::encode(&u.events)?,
            provider_refs: u.provider_refs.clone(),
            drop_addresses: if finished { addresses(state) } else { Vec::new() },
            outbox: match &u.outbox {
                Some(o) => Some(OutboxRow {
                    url: o.url.clone(),
                    body: json(&o.body)?,
                    next_at: ts(state.finished_at.unwrap_or(state.created_at)),
                }),
                None => None,
            },
            recipient: u.recipient.as_ref().map(RecipientResultRow::from),
        })
    }
}

/// A finished cascade's result, ready to write onto its campaign recipient.
#[derive(Debug)]
pub(crate) struct RecipientResultRow {
    pub campaign: Uuid,
    pub seq: i64,
    pub outcome: String,
    pub channel: Option<String>,
    pub cost: i64,
    pub reason: Option<String>,
    pub at: Option<i64>,
}

impl From<&RecipientOutcome> for RecipientResultRow {
    fn from(r: &RecipientOutcome) -> Self {
        Self {
            campaign: *r.campaign.as_uuid(),
            seq: seq(r.seq),
            outcome: r.result.outcome.clone(),
            channel: r.result.channel.as_ref().map(ToString::to_string),
            cost: r.result.cost.micros(),
            reason: r.result.reason.clone(),
            at: r.result.at.map(ts),
        }
    }
}

/// A recipient number as stored.
pub(crate) fn seq(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A campaign, ready to upsert.
#[derive(Debug)]
pub(crate) struct CampaignRow {
    pub id: Uuid,
    pub name: String,
    pub owner: Option<String>,
    pub state: &'static str,
    pub spec: String,
    pub recipients: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl CampaignRow {
    pub(crate) fn encode(c: &CampaignRecord) -> Result<Self, StoreError> {
        Ok(Self {
            id: *c.id.as_uuid(),
            name: c.name.clone(),
            owner: c.owner.clone(),
            state: c.state.as_str(),
            spec: json(&c.spec)?,
            recipients: seq(c.recipients),
            created_at: ts(c.created_at),
            updated_at: ts(c.updated_at),
        })
    }
}

/// A recipient, ready to insert.
#[derive(Debug)]
pub(crate) struct RecipientRow {
    pub seq: i64,
    pub line: i64,
    pub contact: String,
    pub zone: String,
}

impl RecipientRow {
    pub(crate) fn encode(r: &NewRecipient) -> Result<Self, StoreError> {
        Ok(Self { seq: seq(r.seq), line: seq(r.line), contact: json(&r.contact)?, zone: r.zone.clone() })
    }
}

/// Stored campaign columns.
#[derive(Debug)]
pub(crate) struct CampaignColumns<'a> {
    pub id: Uuid,
    pub name: String,
    pub owner: Option<String>,
    pub state: &'a str,
    pub spec: &'a str,
    pub recipients: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl CampaignColumns<'_> {
    pub(crate) fn record(self) -> Result<CampaignRecord, StoreError> {
        let what = || format!("campaign {}", self.id);
        Ok(CampaignRecord {
            id: CampaignId::from_uuid(self.id),
            state: self.state.parse().map_err(|e| StoreError::Corrupt(format!("{}: {e}", what())))?,
            spec: parse(&what(), self.spec)?,
            name: self.name,
            owner: self.owner,
            recipients: self.recipients as u64,
            created_at: from_ts(self.created_at),
            updated_at: from_ts(self.updated_at),
        })
    }
}

/// A policy save, ready to write: the policy as JSON and the version expected, if any.
#[derive(Debug)]
pub(crate) struct PolicyRow {
    pub name: String,
    pub policy: String,
    pub expected: Option<i64>,
    pub updated_at: i64,
}

impl PolicyRow {
    pub(crate) fn encode(
        name: &str,
        policy: &Policy,
        expected: Option<u64>,
        at: Timestamp,
    ) -> Result<Self, StoreError> {
        Ok(Self { name: name.to_owned(), policy: json(policy)?, expected: expected.map(seq), updated_at: ts(at) })
    }
}

/// A stored policy from its columns.
pub(crate) fn stored_policy(
    name: String,
    policy: &str,
    version: i64,
    updated_at: i64,
) -> Result<StoredPolicy, StoreError> {
    Ok(StoredPolicy {
        policy: parse(&format!("policy {name:?}"), policy)?,
        name,
        version: version as u64,
        updated_at: from_ts(updated_at),
    })
}

/// A request to hold, ready to write: its body as JSON, held and leased from `now`.
#[derive(Debug)]
pub(crate) struct HeldRow {
    pub key: String,
    pub kind: String,
    pub body: String,
    pub held_at: i64,
    pub lease_until: i64,
}

impl HeldRow {
    pub(crate) fn encode(r: &NewHeldRequest, now: Timestamp, lease: std::time::Duration) -> Result<Self, StoreError> {
        Ok(Self {
            key: r.key.clone(),
            kind: r.kind.clone(),
            body: json(&r.body)?,
            held_at: ts(now),
            lease_until: after(now, lease),
        })
    }
}

/// A held request from its columns.
pub(crate) fn held_request(key: String, kind: String, body: &str, held_at: i64) -> Result<HeldRequest, StoreError> {
    Ok(HeldRequest { body: parse(&format!("held request {key:?}"), body)?, key, kind, held_at: from_ts(held_at) })
}

/// Stored recipient columns.
#[derive(Debug)]
pub(crate) struct RecipientColumns<'a> {
    pub seq: i64,
    pub line: i64,
    pub contact: &'a str,
    pub zone: String,
    pub state: &'a str,
    pub cascade: Option<Uuid>,
    pub changed_at: Option<i64>,
    pub outcome: Option<String>,
    pub channel: Option<&'a str>,
    pub cost: Option<i64>,
    pub reason: Option<String>,
    pub result_at: Option<i64>,
}

impl RecipientColumns<'_> {
    pub(crate) fn record(self) -> Result<RecipientRecord, StoreError> {
        let what = || format!("campaign recipient {}", self.seq);
        Ok(RecipientRecord {
            seq: self.seq as u64,
            line: self.line as u64,
            contact: parse(&what(), self.contact)?,
            state: self.state.parse().map_err(|e| StoreError::Corrupt(format!("{}: {e}", what())))?,
            zone: self.zone,
            cascade: self.cascade.map(CascadeId::from_uuid),
            changed_at: self.changed_at.map(from_ts),
            result: self.outcome.map(|outcome| RecipientResult {
                outcome,
                channel: self.channel.map(Into::into),
                cost: Cost::from_micros(self.cost.unwrap_or(0)),
                reason: self.reason,
                at: self.result_at.map(from_ts),
            }),
        })
    }
}

/// A conversation touch, ready to upsert.
#[derive(Debug)]
pub(crate) struct ConversationRow {
    pub channel: String,
    pub address: String,
    pub connection: String,
    pub last_inbound_at: Option<i64>,
    pub last_delivery_at: Option<i64>,
}

impl From<&Conversation> for ConversationRow {
    fn from(c: &Conversation) -> Self {
        Self {
            channel: c.channel.to_string(),
            address: c.address.clone(),
            connection: c.connection.to_string(),
            last_inbound_at: c.last_inbound_at.map(ts),
            last_delivery_at: c.last_delivery_at.map(ts),
        }
    }
}

/// The records a claim read, from each claimed row's decoding. A row that cannot be read
/// (`Corrupt`) would fail every claim after it (it stays first by `wake_at`): it is logged and
/// keeps its lease, unread, and the others go on. Any other error fails the claim.
pub(crate) fn claimed(
    rows: impl IntoIterator<Item = Result<CascadeRecord, StoreError>>,
) -> Result<Vec<CascadeRecord>, StoreError> {
    let mut claimed = Vec::new();
    for row in rows {
        match row {
            Ok(record) => claimed.push(record),
            Err(StoreError::Corrupt(why)) => {
                tracing::error!(%why, "a due cascade cannot be read; skipped until its lease ends")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(claimed)
}

/// Builds a record from its stored columns.
pub(crate) fn record(
    id: Uuid,
    version: i64,
    wake_at: Option<i64>,
    body: &str,
    meta: &str,
) -> Result<CascadeRecord, StoreError> {
    let body: StoredBody = parse(&format!("cascade {id}"), body)?;
    let what = format!("cascade {id} meta");
    let plan = match body.plan {
        Some(plan) => plan,
        None => {
            parse::<StoredPlan>(&what, meta)?.plan.ok_or_else(|| StoreError::Corrupt(format!("{what}: no plan")))?
        }
    };
    let meta: CascadeMeta = parse(&what, meta)?;
    let state = CascadeState {
        id: body.id,
        created_at: body.created_at,
        plan,
        phase: body.phase,
        cursor: body.cursor,
        step_started_at: body.step_started_at,
        excluded: body.excluded,
        attempts: body.attempts,
        failures: body.failures,
        outcome: body.outcome,
        finished_at: body.finished_at,
    };
    Ok(CascadeRecord { state, meta: Arc::new(meta), version: version as u64, wake_at: wake_at.map(from_ts) })
}

/// The timeline entries of one `events` row (see [`EventsRow`]): one entry, or an array of
/// them.
pub(crate) fn events(id: Uuid, body: &str) -> Result<Vec<Event>, StoreError> {
    if body.trim_start().starts_with('[') {
        parse(&format!("cascade {id} events"), body)
    } else {
        parse(&format!("cascade {id} event"), body).map(|one| vec![one])
    }
}

/// A stored conversation.
pub(crate) fn conversation(
    channel: &str,
    address: String,
    connection: &str,
    last_inbound_at: Option<i64>,
    last_delivery_at: Option<i64>,
) -> Conversation {
    Conversation {
        channel: channel.into(),
        connection: connection.into(),
        address,
        last_inbound_at: last_inbound_at.map(from_ts),
        last_delivery_at: last_delivery_at.map(from_ts),
    }
}

/// Stored outbox columns.
#[derive(Debug)]
pub(crate) struct OutboxColumns<'a> {
    pub id: i64,
    pub cascade: Uuid,
    pub url: String,
    pub body: &'a str,
    pub tries: i64,
    pub next_at: i64,
    pub last_error: Option<String>,
    pub dead: bool,
}

impl OutboxColumns<'_> {
    pub(crate) fn item(self) -> Result<OutboxItem, StoreError> {
        Ok(OutboxItem {
            id: self.id as u64,
            cascade: CascadeId::from_uuid(self.cascade),
            body: parse(&format!("callback {}", self.id), self.body)?,
            url: self.url,
            tries: self.tries as u32,
            next_at: from_ts(self.next_at),
            last_error: self.last_error,
            dead: self.dead,
        })
    }
}

/// One group of a campaign's recipients from its stored columns.
pub(crate) fn tally(
    state: &str,
    outcome: Option<String>,
    channel: Option<&str>,
    count: i64,
    cost: i64,
) -> Result<Tally, StoreError> {
    Ok(Tally {
        state: state.parse().map_err(StoreError::Corrupt)?,
        outcome,
        channel: channel.map(Into::into),
        count: count as u64,
        cost: Cost::from_micros(cost),
    })
}

/// Whether `e` says the connection it came from is gone (the database restarted, the
/// network dropped it), so the same statement may well work on another connection.
pub(crate) fn broken(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        // Class 57P: the server is shutting down or restarting (admin_shutdown,
        // crash_shutdown, cannot_connect_now).
        sqlx::Error::Database(d) => d.code().is_some_and(|c| c.starts_with("57P")),
        _ => false,
    }
}

/// A database error as a store error.
pub(crate) fn unavailable(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::ColumnNotFound(_) => {
            StoreError::Corrupt(e.to_string())
        }
        e => StoreError::Unavailable(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use cascade_engine::{AttemptState, ChannelName, ErrorClass, SendError, Status, StatusRecord};

    use super::*;

    /// A state with every optional part set: attempts with statuses and an error, a failed
    /// step, an excluded connection, an outcome.
    fn full_state() -> CascadeRecord {
        let at: Timestamp = "2026-11-22T00:02:34.483683410Z".parse().expect("time");
        let mut record = cascade_testkit::sample_record(Some("k"), "fp", "+15550000001", at);
        let s = &mut record.state;
        s.step_started_at = Some(at);
        s.excluded = vec![ConnectionId::new("sms-2")];
        s.attempts = vec![Attempt {
            number: 1,
            step: 0,
            channel: ChannelName::new("sms"),
            connection: Some(ConnectionId::new("sms-1")),
            state: AttemptState::Failed,
            provider_message_id: Some("SM1".into()),
            highest: Some(Status::Sent),
            statuses: vec![StatusRecord { status: Status::Sent, at, provider_at: Some(at) }],
            error: Some(Box::new(SendError::unreachable("not_here", "no such number"))),
            cost: Cost::from_micros(5_000),
            started_at: at,
        }];
        s.failures = vec![StepFailure {
            step: 0,
            channel: ChannelName::new("sms"),
            class: Some(ErrorClass::Unreachable),
            reason: "no such number".into(),
        }];
        s.phase = Phase::Finished;
        s.outcome = Some(Outcome::Failed { steps: s.failures.clone() });
        s.finished_at = Some(at);
        record
    }

    /// `body` is exactly the state's own JSON without its plan (the same fields, names and
    /// omissions), and a stored row reads back as the record it was made from.
    #[test]
    fn body_is_the_state_without_its_plan() {
        let new = cascade_testkit::sample_record(None, "", "+15550000002", chrono::Utc::now());
        for record in [new, full_state()] {
            let mut expected = serde_json::to_value(&record.state).expect("state");
            expected.as_object_mut().expect("object").remove("plan");
            assert_eq!(serde_json::to_value(BodyColumn::from(&record.state)).expect("body"), expected);

            let row = NewCascade::encode(&record, &[]).expect("encode");
            let back = super::record(row.id, row.version, row.wake_at, &row.body, &row.meta).expect("decode");
            assert_eq!(back, record);
        }
    }
}
