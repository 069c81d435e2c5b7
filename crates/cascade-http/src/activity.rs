//! What each connection has been doing lately: its last send errors, and how many sends it
//! made in each of the last [`WINDOW_SECS`] seconds. The console's Connections page and
//! `GET /v1/connections` ([`connections`](crate::connections)) show it.
//!
//! It follows the engine's event stream (fed where the [metrics](crate::metrics) are), so it
//! knows what **this server instance** saw **since it started**, and starts empty: other
//! instances sharing the store count their own sends, and a restart forgets. A send is
//! counted when its result is known (the provider's answer, or a status that proves the
//! provider took it), under the second it became known. Events the listener falls behind on
//! are lost to it, as to the metrics.
//!
//! Memory is bounded whatever the load: per configured connection, [`RECENT_ERRORS`] errors
//! (their code and detail cut to a few hundred characters) and [`WINDOW_SECS`] one-second
//! counters; and the attempts of running cascades, to map an attempt number back to its
//! connection, for at most [`OPEN_CAP`] cascades (past that they are forgotten at once, and
//! the results of the sends in flight then go uncounted). Each event takes one lock for
//! a few hash lookups.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use cascade_engine::{CascadeId, ConnectionId, Engine, ErrorClass, EventKind, SendError, Timestamp};
use serde::Serialize;
use utoipa::ToSchema;

/// Errors kept per connection, the newest.
pub const RECENT_ERRORS: usize = 10;
/// The seconds the send counters cover: five minutes.
pub const WINDOW_SECS: usize = 300;
/// Running cascades whose attempts are remembered.
pub const OPEN_CAP: usize = 200_000;
/// The longest error code kept, in characters.
const MAX_CODE: usize = 64;
/// The longest error detail kept, in characters.
const MAX_DETAIL: usize = 300;

/// Where an error was reported.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorStage {
    /// In the provider's answer to the send.
    Send,
    /// In a `failed` status reported after the provider took the send.
    Status,
}

/// One send error of a connection.
#[derive(Clone, PartialEq, Debug, Serialize, ToSchema)]
pub struct RecentError {
    /// When it was recorded.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// Its class: `unreachable`, `rejected`, `transient` or `connection`.
    #[schema(value_type = String)]
    pub class: ErrorClass,
    /// The provider's code (`131026`), or one the adapter chose (`http_503`).
    pub code: String,
    /// What the provider said.
    pub detail: String,
    /// In the answer to the send, or in a later status.
    pub stage: ErrorStage,
    /// The cascade: shown only to keys that see every cascade.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub cascade: Option<CascadeId>,
    /// The attempt within it: shown only with `cascade`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
}

/// What one connection did lately, as of a moment.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct ConnectionActivity {
    /// Sends in the last 60 seconds.
    pub last_minute: u64,
    /// Sends in the last 300 seconds.
    pub last_5_minutes: u64,
    /// The most sends in one second over the last 300 seconds.
    pub peak_per_second: u32,
    /// Its last send errors, newest first.
    pub recent_errors: Vec<RecentError>,
}

/// The recent activity of every configured connection, per server instance. Owned by the
/// [`App`](crate::App).
#[derive(Debug)]
pub struct Activity {
    started_at: Timestamp,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    connections: HashMap<ConnectionId, Track>,
    /// The attempts of running cascades.
    open: HashMap<CascadeId, Vec<Open>>,
}

/// An attempt in motion.
#[derive(Debug)]
struct Open {
    attempt: u32,
    connection: ConnectionId,
    /// Whether its send has been counted.
    counted: bool,
}

#[derive(Debug)]
struct Track {
    errors: VecDeque<RecentError>,
    window: Window,
}

/// Sends per second over the last [`WINDOW_SECS`] seconds: a ring of counters, each holding
/// the second it counts, so a slot from an earlier lap is recognised and started over.
#[derive(Debug)]
struct Window {
    slots: Box<[(i64, u32)]>,
}

impl Window {
    fn new() -> Self {
        Self { slots: vec![(i64::MIN, 0); WINDOW_SECS].into_boxed_slice() }
    }

    /// Counts one send in second `second` (Unix time).
    fn add(&mut self, second: i64) {
        let i = second.rem_euclid(WINDOW_SECS as i64) as usize;
        let slot = &mut self.slots[i];
        if slot.0 == second {
            slot.1 = slot.1.saturating_add(1);
        } else if slot.0 < second {
            *slot = (second, 1);
        }
        // Else the slot counts a later lap: this send is older than the window.
    }

    /// The slots of the `secs` seconds up to and including `now` (Unix time).
    fn recent(&self, now: i64, secs: i64) -> impl Iterator<Item = u32> + '_ {
        self.slots.iter().filter(move |(s, _)| *s > now - secs && *s <= now).map(|(_, n)| *n)
    }

    fn count(&self, now: i64, secs: i64) -> u64 {
        self.recent(now, secs).map(u64::from).sum()
    }

    fn peak(&self, now: i64, secs: i64) -> u32 {
        self.recent(now, secs).max().unwrap_or(0)
    }
}

impl Track {
    fn new() -> Self {
        Self { errors: VecDeque::with_capacity(RECENT_ERRORS), window: Window::new() }
    }
}

impl Activity {
    /// An empty tracker of `connections`, counting from `started_at`. Events of other
    /// connections are ignored.
    pub fn new(connections: impl IntoIterator<Item = ConnectionId>, started_at: Timestamp) -> Self {
        let connections = connections.into_iter().map(|c| (c, Track::new())).collect();
        Self { started_at, state: Mutex::new(State { connections, open: HashMap::new() }) }
    }

    /// An empty tracker of every connection of `engine`, counting from its time now.
    pub fn of_engine(engine: &Engine) -> Self {
        let ids = engine.pools().pools().flat_map(|p| p.members().iter().map(|m| m.connection.id.clone()));
        Self::new(ids.collect::<Vec<_>>(), engine.now())
    }

    /// When it started counting.
    pub fn started_at(&self) -> Timestamp {
        self.started_at
    }

    /// Takes in one timeline entry of `cascade`, recorded at `at`.
    pub fn observe(&self, cascade: CascadeId, at: Timestamp, kind: &EventKind) {
        use EventKind::{Accepted, Finished, SendFailed, SendStarted, Status};
        if !matches!(kind, SendStarted { .. } | Accepted { .. } | SendFailed { .. } | Status { .. } | Finished { .. }) {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match kind {
            EventKind::SendStarted { attempt, connection: Some(connection), .. } => {
                if !s.connections.contains_key(connection) {
                    return;
                }
                if s.open.len() >= OPEN_CAP && !s.open.contains_key(&cascade) {
                    s.open.clear();
                }
                let open = Open { attempt: *attempt, connection: connection.clone(), counted: false };
                s.open.entry(cascade).or_default().push(open);
            }
            EventKind::Accepted { attempt, .. } => s.sent(cascade, *attempt, at),
            EventKind::SendFailed { attempt, error, .. } => {
                s.sent(cascade, *attempt, at);
                s.failed(cascade, *attempt, at, error, ErrorStage::Send);
            }
            EventKind::Status { attempt, error, .. } => {
                // A status before the answer proves the send; after it, this counts nothing.
                s.sent(cascade, *attempt, at);
                if let Some(error) = error {
                    s.failed(cascade, *attempt, at, error, ErrorStage::Status);
                }
            }
            EventKind::Finished { .. } => {
                s.open.remove(&cascade);
            }
            _ => {}
        }
    }

    /// What `connection` did in the five minutes up to `now`; `None` for a connection it
    /// does not track.
    pub fn connection(&self, connection: &ConnectionId, now: Timestamp) -> Option<ConnectionActivity> {
        let s = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let t = s.connections.get(connection)?;
        let now = now.timestamp();
        Some(ConnectionActivity {
            last_minute: t.window.count(now, 60),
            last_5_minutes: t.window.count(now, WINDOW_SECS as i64),
            peak_per_second: t.window.peak(now, WINDOW_SECS as i64),
            recent_errors: t.errors.iter().rev().cloned().collect(),
        })
    }
}

impl State {
    fn find(&mut self, cascade: CascadeId, attempt: u32) -> Option<&mut Open> {
        self.open.get_mut(&cascade)?.iter_mut().find(|o| o.attempt == attempt)
    }

    /// Counts the send of an attempt, once.
    fn sent(&mut self, cascade: CascadeId, attempt: u32, at: Timestamp) {
        let Some(open) = self.find(cascade, attempt).filter(|o| !o.counted) else { return };
        open.counted = true;
        let connection = open.connection.clone();
        if let Some(t) = self.connections.get_mut(&connection) {
            t.window.add(at.timestamp());
        }
    }

    fn failed(&mut self, cascade: CascadeId, attempt: u32, at: Timestamp, error: &SendError, stage: ErrorStage) {
        let Some(connection) = self.find(cascade, attempt).map(|o| o.connection.clone()) else { return };
        let Some(t) = self.connections.get_mut(&connection) else { return };
        if t.errors.len() >= RECENT_ERRORS {
            t.errors.pop_front();
        }
        t.errors.push_back(RecentError {
            at,
            class: error.class,
            code: cut(&error.code, MAX_CODE),
            detail: cut(&error.detail, MAX_DETAIL),
            stage,
            cascade: Some(cascade),
            attempt: Some(attempt),
        });
    }
}

/// The first `max` characters of `s`, with `…` when there were more.
fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use cascade_engine::{ChannelName, Cost, Status};
    use chrono::{TimeZone, Utc};

    use super::*;

    fn t(secs: i64) -> Timestamp {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).single().expect("time")
    }

    fn started(attempt: u32, connection: &str) -> EventKind {
        EventKind::SendStarted {
            attempt,
            step: 0,
            channel: ChannelName::new("whatsapp"),
            connection: Some(ConnectionId::new(connection)),
        }
    }

    fn accepted(attempt: u32) -> EventKind {
        EventKind::Accepted { attempt, provider_message_id: format!("pm-{attempt}"), cost: Cost::ZERO }
    }

    fn failed(attempt: u32, code: &str) -> EventKind {
        let error = SendError::new(ErrorClass::Rejected, code, "not a WhatsApp user");
        EventKind::SendFailed { attempt, error: Box::new(error), retry_at: None }
    }

    fn tracker() -> Activity {
        Activity::new([ConnectionId::new("wa-1"), ConnectionId::new("wa-2")], t(0))
    }

    fn of(a: &Activity, connection: &str, now: i64) -> ConnectionActivity {
        a.connection(&ConnectionId::new(connection), t(now)).expect("tracked")
    }

    #[test]
    fn the_window_counts_the_last_minute_and_five_minutes_and_rolls_over() {
        let mut w = Window::new();
        for s in [0, 0, 0, 30, 59, 61, 299] {
            w.add(s);
        }
        assert_eq!((w.count(299, 60), w.count(299, 300), w.peak(299, 300)), (1, 7, 3));
        assert_eq!((w.count(60, 60), w.count(60, 300)), (2, 5), "seconds 1 to 60");
        // Second 300 takes second 0's slot: the three sends of second 0 leave the window.
        w.add(300);
        assert_eq!((w.count(300, 60), w.count(300, 300), w.peak(300, 300)), (2, 5, 1));
        // A send from before the window does not undo a newer lap.
        w.add(0);
        assert_eq!(w.count(300, 300), 5);
        // Much later, everything has left it.
        assert_eq!((w.count(10_000, 300), w.peak(10_000, 300)), (0, 0));
        w.add(10_000);
        assert_eq!((w.count(10_000, 60), w.count(10_000, 300)), (1, 1));
        assert_eq!(w.slots.len(), WINDOW_SECS, "the ring never grows");
    }

    #[test]
    fn sends_and_errors_are_counted_for_the_connection_that_made_them() {
        let a = tracker();
        let (c1, c2) = (CascadeId::new(), CascadeId::new());
        a.observe(c1, t(1), &started(1, "wa-1"));
        a.observe(c1, t(2), &failed(1, "131026"));
        a.observe(c1, t(2), &started(2, "wa-2"));
        a.observe(c1, t(3), &accepted(2));
        // A status that proves the send before its answer counts it once.
        a.observe(c2, t(4), &started(1, "wa-2"));
        let status = |error: Option<SendError>| EventKind::Status {
            attempt: 1,
            status: if error.is_some() { Status::Failed } else { Status::Delivered },
            provider_at: None,
            error: error.map(Box::new),
        };
        a.observe(c2, t(5), &status(None));
        a.observe(c2, t(6), &accepted(1));
        a.observe(c2, t(7), &status(Some(SendError::new(ErrorClass::Unreachable, "30003", "unreachable handset"))));

        let wa1 = of(&a, "wa-1", 10);
        assert_eq!((wa1.last_minute, wa1.last_5_minutes, wa1.peak_per_second), (1, 1, 1));
        assert_eq!(wa1.recent_errors.len(), 1);
        let e = &wa1.recent_errors[0];
        assert_eq!(
            (e.class, e.code.as_str(), e.detail.as_str()),
            (ErrorClass::Rejected, "131026", "not a WhatsApp user")
        );
        assert_eq!((e.at, e.stage, e.cascade, e.attempt), (t(2), ErrorStage::Send, Some(c1), Some(1)));
        let wa2 = of(&a, "wa-2", 10);
        assert_eq!(wa2.last_5_minutes, 2, "one send of each cascade");
        assert_eq!(wa2.recent_errors[0].stage, ErrorStage::Status);
        assert_eq!(wa2.recent_errors[0].code, "30003");

        // Once a cascade has ended its attempts are forgotten.
        a.observe(c2, t(8), &EventKind::Finished { outcome: cascade_engine::Outcome::Cancelled, cost: Cost::ZERO });
        a.observe(c2, t(9), &status(Some(SendError::new(ErrorClass::Unreachable, "30003", "late"))));
        assert_eq!(of(&a, "wa-2", 10).recent_errors.len(), 1);
        assert!(!a.state.lock().expect("lock").open.contains_key(&c2));
        // Connections it does not track are not counted, nor remembered.
        let c3 = CascadeId::new();
        a.observe(c3, t(9), &started(1, "elsewhere"));
        a.observe(c3, t(9), &accepted(1));
        assert!(a.connection(&ConnectionId::new("elsewhere"), t(10)).is_none());
        assert!(!a.state.lock().expect("lock").open.contains_key(&c3));
    }

    #[test]
    fn a_connection_keeps_only_its_last_errors_newest_first() {
        let a = tracker();
        let c = CascadeId::new();
        for n in 1..=25u32 {
            a.observe(c, t(i64::from(n)), &started(n, "wa-1"));
            a.observe(c, t(i64::from(n)), &failed(n, &format!("code-{n}")));
        }
        let wa1 = of(&a, "wa-1", 30);
        let codes: Vec<&str> = wa1.recent_errors.iter().map(|e| e.code.as_str()).collect();
        let want: Vec<String> = (16..=25).rev().map(|n| format!("code-{n}")).collect();
        assert_eq!(codes, want);
        assert_eq!(wa1.last_5_minutes, 25);
        assert_eq!(of(&a, "wa-2", 30), ConnectionActivity::default());
    }

    #[test]
    fn long_codes_and_details_are_cut() {
        let a = tracker();
        let c = CascadeId::new();
        a.observe(c, t(1), &started(1, "wa-1"));
        let error = SendError::new(ErrorClass::Transient, "c".repeat(100), "é".repeat(1000));
        a.observe(c, t(1), &EventKind::SendFailed { attempt: 1, error: Box::new(error), retry_at: None });
        let e = &of(&a, "wa-1", 1).recent_errors[0];
        assert_eq!(e.code.chars().count(), MAX_CODE + 1);
        assert_eq!(e.detail.chars().count(), MAX_DETAIL + 1);
        assert!(e.detail.ends_with('…'));
        assert_eq!(cut("short", 10), "short");
    }

    #[test]
    fn running_cascades_remembered_are_bounded() {
        let a = tracker();
        let first = CascadeId::new();
        a.observe(first, t(0), &started(1, "wa-1"));
        for _ in 1..OPEN_CAP {
            a.observe(CascadeId::new(), t(0), &started(1, "wa-1"));
        }
        assert_eq!(a.state.lock().expect("lock").open.len(), OPEN_CAP);
        // One more starts the map over; the earlier attempts go uncounted.
        let last = CascadeId::new();
        a.observe(last, t(1), &started(1, "wa-2"));
        assert_eq!(a.state.lock().expect("lock").open.len(), 1);
        a.observe(first, t(1), &accepted(1));
        a.observe(last, t(1), &accepted(1));
        assert_eq!((of(&a, "wa-1", 1).last_minute, of(&a, "wa-2", 1).last_minute), (0, 1));
    }
}
