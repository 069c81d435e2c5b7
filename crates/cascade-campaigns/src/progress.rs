//! A campaign's progress: how many recipients are where, delivered by channel, what it cost
//! against sending everything through the policy's last channel, and when it should be done.

use std::collections::BTreeMap;

use cascade_engine::store::{CampaignRecord, CampaignState, RecipientState, Tally};
use cascade_engine::{CampaignId, Cost, Engine, Timestamp};
use serde::{Deserialize, Serialize};

use crate::spec::{CampaignSpec, Stored};

/// Where a campaign is, counted from its recipients.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Progress {
    /// The campaign.
    pub id: CampaignId,
    /// Its name.
    pub name: String,
    /// Its state (`importing`, `running`, `paused`, `cancelled`, `finished`).
    pub state: CampaignState,
    /// While running: `scheduled` before the start, `waiting` outside the sending window
    /// everywhere, `sending` otherwise; `None` in other states.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Recipients in the campaign.
    pub total: u64,
    /// Recipients whose cascade was started.
    pub started: u64,
    /// Started cascades that have not finished.
    pub running: u64,
    /// Cascades that delivered.
    pub delivered: u64,
    /// Delivered, by the channel that delivered.
    pub delivered_by_channel: BTreeMap<String, u64>,
    /// Cascades that failed, and recipients the engine refused to start.
    pub failed: u64,
    /// Recipients not started before the end, and cascades that expired.
    pub expired: u64,
    /// Recipients not started because the campaign was cancelled, and cascades cancelled.
    pub cancelled: u64,
    /// Recipients not started yet.
    pub remaining: u64,
    /// What the finished cascades cost.
    pub cost: Cost,
    /// What the same finished cascades would have cost sent through the policy's last (most
    /// expensive) channel, at its connections' highest price.
    pub cost_all_last_channel: Cost,
    /// That last channel.
    pub last_channel: String,
    /// The campaign's rate.
    pub rate: String,
    /// When the last recipient should be started, at the campaign's rate and within its
    /// window (judged in the campaign's time zone); `None` once none remain or when paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<Timestamp>,
    /// When this was counted.
    pub at: Timestamp,
}

impl Progress {
    /// Counts a campaign's tally. `price` is the last channel's price (see
    /// [`last_channel_price`]).
    pub fn new(record: &CampaignRecord, stored: &Stored, tally: &[Tally], price: Option<Cost>, now: Timestamp) -> Self {
        let spec = &stored.spec;
        let mut p = Progress {
            id: record.id,
            name: record.name.clone(),
            state: record.state,
            phase: None,
            total: record.recipients,
            started: 0,
            running: 0,
            delivered: 0,
            delivered_by_channel: BTreeMap::new(),
            failed: 0,
            expired: 0,
            cancelled: 0,
            remaining: 0,
            cost: Cost::ZERO,
            cost_all_last_channel: Cost::ZERO,
            last_channel: spec.policy.steps.last().map(|s| s.channel.to_string()).unwrap_or_default(),
            rate: spec.rate.to_string(),
            eta: None,
            at: now,
        };
        let mut finished = 0u64;
        for t in tally {
            p.cost = p.cost + t.cost;
            match t.state {
                RecipientState::Pending => p.remaining += t.count,
                RecipientState::Expired => p.expired += t.count,
                RecipientState::Cancelled => p.cancelled += t.count,
                RecipientState::Refused => p.failed += t.count,
                RecipientState::Started => {
                    p.started += t.count;
                    match t.outcome.as_deref() {
                        None => p.running += t.count,
                        Some("delivered") => {
                            p.delivered += t.count;
                            let channel = t.channel.as_ref().map_or("unknown", |c| c.as_str());
                            *p.delivered_by_channel.entry(channel.to_owned()).or_default() += t.count;
                        }
                        Some("expired") => p.expired += t.count,
                        Some("cancelled") => p.cancelled += t.count,
                        Some(_) => p.failed += t.count,
                    }
                    if t.outcome.is_some() {
                        finished += t.count;
                    }
                }
            }
        }
        p.cost_all_last_channel = price.unwrap_or(Cost::ZERO).times(finished);
        if record.state == CampaignState::Running {
            let start = spec.schedule.start_at.filter(|s| now < *s);
            let window_closed = spec.schedule.window.as_ref().is_some_and(|w| {
                let zones = stored.import.zones();
                !zones.is_empty() && zones.iter().all(|(_, tz)| !w.is_open(now, *tz))
            });
            p.phase = Some(
                if start.is_some() {
                    "scheduled"
                } else if window_closed {
                    "waiting"
                } else {
                    "sending"
                }
                .to_owned(),
            );
            if p.remaining > 0 {
                p.eta = Some(eta(spec, p.remaining, start.unwrap_or(now)));
            }
        }
        p
    }

    /// Whether nothing will change any more: the campaign is over and no cascade is running.
    pub fn is_settled(&self) -> bool {
        self.state.is_final() && self.running == 0
    }
}

/// When `remaining` recipients will have been started from `from` at the campaign's rate,
/// counting only the window's open hours in the campaign's time zone, and no later than its end.
fn eta(spec: &CampaignSpec, remaining: u64, from: Timestamp) -> Timestamp {
    let mut need = remaining as f64 / spec.rate.per_second();
    let end = spec.schedule.end_at;
    let secs = |s: f64| chrono::Duration::milliseconds((s * 1000.0).ceil() as i64);
    let Some(window) = &spec.schedule.window else {
        let at = from + secs(need);
        return end.map_or(at, |e| at.min(e));
    };
    let tz = spec.schedule.zone();
    let cap = |at: Timestamp| end.map_or(at, |e| at.min(e));
    let mut t = from;
    // A year of windows at most; a campaign that would take longer ends at its end date.
    for _ in 0..400 {
        let open = window.next_open(t, tz);
        // A window that never closes (`daily 00:00-24:00`) is no window at all.
        let Some(close) = window.next_close(open, tz) else { return cap(open + secs(need)) };
        let span = (close - open).num_milliseconds() as f64 / 1000.0;
        if span >= need {
            return cap(open + secs(need));
        }
        need -= span;
        t = close;
    }
    end.unwrap_or(t)
}

/// The highest price among the connections of the policy's last step's channel: the price
/// of "everything through the last channel".
pub fn last_channel_price(engine: &Engine, spec: &CampaignSpec) -> Option<Cost> {
    let last = spec.policy.steps.last()?;
    engine.pools().pool(&last.channel)?.members().iter().map(|m| m.connection.price).max()
}
