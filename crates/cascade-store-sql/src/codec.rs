//! Turning records into rows and back, shared by both backends.
//!
//! Encoding (JSON, the most expensive part of a write) happens in the caller's task, before a
//! write joins a batch, so the single writer spends its time on SQL only.

use std::sync::Arc;

use cascade_engine::machine::CascadeState;
use cascade_engine::store::{CascadeMeta, CascadeRecord, CascadeUpdate, Conversation, OutboxItem, ProviderRef};
use cascade_engine::{CascadeId, Event, StoreError, Timestamp};
use uuid::Uuid;

/// A timestamp as stored: nanoseconds since the Unix epoch (years 1678 to 2261).
pub(crate) fn ts(t: Timestamp) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 { i64::MIN } else { i64::MAX })
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

/// The `channels` column: every channel of the plan between bars, for `LIKE '%|sms|%'`.
fn channels(state: &CascadeState) -> String {
    let mut s = String::from("|");
    for step in &state.plan.steps {
        s.push_str(step.channel.as_str());
        s.push('|');
    }
    s
}

/// Every (channel, address) a cascade sends to.
pub(crate) fn addresses(state: &CascadeState) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = state
        .plan
        .steps
        .iter()
        .filter_map(|s| Some((s.channel.to_string(), s.address.as_ref()?.value.clone())))
        .collect();
    out.sort();
    out.dedup();
    out
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
    pub events: Vec<String>,
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
            body: json(state)?,
            meta: json(&*record.meta)?,
            events: events.iter().map(json).collect::<Result<_, _>>()?,
            addresses: if state.is_finished() { Vec::new() } else { addresses(state) },
        })
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
    pub events: Vec<String>,
    pub provider_refs: Vec<ProviderRef>,
    /// Addresses to drop from the index (the cascade has finished).
    pub drop_addresses: Vec<(String, String)>,
    pub outbox: Option<OutboxRow>,
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
            body: json(state)?,
            events: u.events.iter().map(json).collect::<Result<_, _>>()?,
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

/// Builds a record from its stored columns.
pub(crate) fn record(
    id: Uuid,
    version: i64,
    wake_at: Option<i64>,
    body: &str,
    meta: &str,
) -> Result<CascadeRecord, StoreError> {
    let state: CascadeState = parse(&format!("cascade {id}"), body)?;
    let meta: CascadeMeta = parse(&format!("cascade {id} meta"), meta)?;
    Ok(CascadeRecord { state, meta: Arc::new(meta), version: version as u64, wake_at: wake_at.map(from_ts) })
}

/// A stored timeline entry.
pub(crate) fn event(id: Uuid, body: &str) -> Result<Event, StoreError> {
    parse(&format!("cascade {id} event"), body)
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

/// A database error as a store error.
pub(crate) fn unavailable(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::ColumnNotFound(_) => {
            StoreError::Corrupt(e.to_string())
        }
        e => StoreError::Unavailable(e.to_string()),
    }
}
