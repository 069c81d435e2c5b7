//! Prometheus metrics, served at `/metrics` in the text exposition format.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `cascade_cascades_started_total` | | cascades created |
//! | `cascade_cascades_finished_total` | `outcome` | cascades ended, by outcome |
//! | `cascade_attempts_total` | `channel`, `adapter`, `result` | sends by result (`accepted`, `failed`, `unknown`) |
//! | `cascade_status_latency_seconds` | `channel`, `status` | from a send's start to each status (histogram) |
//! | `cascade_connection_healthy` | `connection`, `channel` | 1 while the connection is in its pool |
//! | `cascade_connection_sends` | `connection`, `channel` | sends made through the connection since start (gauge) |
//! | `cascade_due_lag_seconds` | | how late the most overdue running cascade is (0 when on time) |
//! | `cascade_callbacks_total` | `result` | callback tries (`delivered`, `retry`, `dead`) |
//! | `cascade_callbacks_pending` | | callbacks still to be delivered: the outbox depth |
//! | `cascade_callbacks_dead` | | callbacks given up on and kept |
//! | `cascade_webhooks_total` | `connection`, `result` | provider webhooks (`ok`, `bad_signature`, `malformed`) |
//! | `cascade_api_cascades_total` | `result` | `POST /v1/cascades` answers (`created`, `replayed`) |

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cascade_engine::{CascadeId, ChannelName, Engine, EventKind, Timestamp};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, watch};

use crate::App;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeL {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptL {
    channel: String,
    adapter: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusL {
    channel: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionL {
    connection: String,
    channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultL {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookL {
    connection: String,
    result: String,
}

fn latency_histogram() -> Histogram {
    // 50 ms … ~27 min.
    Histogram::new(exponential_buckets(0.05, 2.0, 16))
}

/// The server's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    started: Counter,
    finished: Family<OutcomeL, Counter>,
    attempts: Family<AttemptL, Counter>,
    latency: Family<StatusL, Histogram, fn() -> Histogram>,
    healthy: Family<ConnectionL, Gauge>,
    sends: Family<ConnectionL, Gauge>,
    due_lag: Gauge<f64, std::sync::atomic::AtomicU64>,
    callbacks: Family<ResultL, Counter>,
    pending: Gauge,
    dead: Gauge,
    webhooks: Family<WebhookL, Counter>,
    api: Family<ResultL, Counter>,
    /// Attempts in motion: (channel, adapter, started) by cascade and attempt number.
    open: Arc<Mutex<OpenAttempts>>,
}

const OPEN_CAP: usize = 200_000;

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// An attempt in motion: its number, channel, adapter and start.
type OpenAttempt = (u32, ChannelName, String, Timestamp);
type OpenAttempts = HashMap<CascadeId, Vec<OpenAttempt>>;

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("cascade");
        let started = Counter::default();
        r.register("cascades_started", "Cascades created", started.clone());
        let finished = Family::<OutcomeL, Counter>::default();
        r.register("cascades_finished", "Cascades ended, by outcome", finished.clone());
        let attempts = Family::<AttemptL, Counter>::default();
        r.register("attempts", "Sends by channel, adapter and result", attempts.clone());
        let latency = Family::<StatusL, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        r.register("status_latency_seconds", "Time from a send's start to each status", latency.clone());
        let healthy = Family::<ConnectionL, Gauge>::default();
        r.register("connection_healthy", "1 while the connection is in its pool", healthy.clone());
        let sends = Family::<ConnectionL, Gauge>::default();
        r.register("connection_sends", "Sends made through the connection since start", sends.clone());
        let due_lag = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        r.register("due_lag_seconds", "How late the most overdue running cascade is", due_lag.clone());
        let callbacks = Family::<ResultL, Counter>::default();
        r.register("callbacks", "Callback tries by result", callbacks.clone());
        let pending = Gauge::default();
        r.register("callbacks_pending", "Callbacks still to be delivered (the outbox depth)", pending.clone());
        let dead = Gauge::default();
        r.register("callbacks_dead", "Callbacks given up on and kept", dead.clone());
        let webhooks = Family::<WebhookL, Counter>::default();
        r.register("webhooks", "Provider webhooks by connection and result", webhooks.clone());
        let api = Family::<ResultL, Counter>::default();
        r.register("api_cascades", "POST /v1/cascades answers", api.clone());
        Self {
            registry: Arc::new(r),
            started,
            finished,
            attempts,
            latency,
            healthy,
            sends,
            due_lag,
            callbacks,
            pending,
            dead,
            webhooks,
            api,
            open: Arc::default(),
        }
    }

    pub(crate) fn api_started(&self, existing: bool) {
        let result = if existing { "replayed" } else { "created" };
        self.api.get_or_create(&ResultL { result: result.into() }).inc();
    }

    pub(crate) fn webhook(&self, connection: &str, result: &str) {
        self.webhooks.get_or_create(&WebhookL { connection: connection.into(), result: result.into() }).inc();
    }

    pub(crate) fn callback(&self, result: &str) {
        self.callbacks.get_or_create(&ResultL { result: result.into() }).inc();
    }

    /// Takes in one timeline entry.
    fn observe(&self, engine: &Engine, cascade: CascadeId, at: Timestamp, kind: &EventKind) {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let find = |open: &OpenAttempts, attempt: u32| {
            open.get(&cascade).and_then(|v| v.iter().find(|a| a.0 == attempt)).cloned()
        };
        let count = |attempt: u32, result: &str| {
            if let Some((_, channel, adapter, _)) = find(&open, attempt) {
                self.attempts
                    .get_or_create(&AttemptL { channel: channel.to_string(), adapter, result: result.into() })
                    .inc();
            }
        };
        match kind {
            EventKind::Created => {
                self.started.inc();
            }
            EventKind::SendStarted { attempt, channel, connection, .. } => {
                let adapter = connection
                    .as_ref()
                    .and_then(|c| engine.pools().member(c))
                    .map(|m| m.connection.channel.info().adapter.to_string())
                    .unwrap_or_default();
                if open.len() >= OPEN_CAP {
                    open.clear();
                }
                open.entry(cascade).or_default().push((*attempt, channel.clone(), adapter, at));
            }
            EventKind::Accepted { attempt, .. } => count(*attempt, "accepted"),
            EventKind::SendFailed { attempt, .. } => count(*attempt, "failed"),
            EventKind::SendUnknown { attempt } => count(*attempt, "unknown"),
            EventKind::Status { attempt, status, .. } => {
                if let Some((_, channel, _, started)) = find(&open, *attempt) {
                    let secs = (at - started).to_std().map(|d| d.as_secs_f64()).unwrap_or(0.0);
                    self.latency
                        .get_or_create(&StatusL { channel: channel.to_string(), status: status.to_string() })
                        .observe(secs);
                }
            }
            EventKind::Finished { outcome, .. } => {
                self.finished.get_or_create(&OutcomeL { outcome: outcome.state().into() }).inc();
                open.remove(&cascade);
            }
            _ => {}
        }
    }

    /// Reads the values that are looked up rather than counted, then encodes everything.
    pub async fn render(&self, engine: &Engine) -> String {
        let now = engine.now();
        for pool in engine.pools().pools() {
            for m in pool.members() {
                let l = ConnectionL { connection: m.connection.id.to_string(), channel: pool.channel().to_string() };
                let h = m.health();
                self.healthy.get_or_create(&l).set(i64::from(h.usable(now)));
                self.sends.get_or_create(&l).set(i64::try_from(h.sends).unwrap_or(i64::MAX));
            }
        }
        let lag = match engine.store().next_wake().await {
            Ok(Some(w)) if w < now => (now - w).to_std().map(|d| d.as_secs_f64()).unwrap_or(0.0),
            _ => 0.0,
        };
        self.due_lag.set(lag);
        match engine.store().outbox_counts().await {
            Ok(counts) => {
                self.pending.set(i64::try_from(counts.pending).unwrap_or(i64::MAX));
                self.dead.set(i64::try_from(counts.dead).unwrap_or(i64::MAX));
            }
            Err(e) => tracing::warn!(error = %e, "counting the callback outbox failed"),
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// Follows the engine's event stream into the metrics and the connections' recent activity
/// ([`Activity`](crate::activity::Activity)) until `stop`. `rx` is subscribed by the caller before
/// the task starts, so nothing sent in between is missed.
pub(crate) async fn listen(
    app: App,
    mut rx: broadcast::Receiver<cascade_engine::EngineEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let engine = app.inner().engine.clone();
    loop {
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            r = rx.recv() => match r {
                Ok(e) => {
                    app.inner().metrics.observe(&engine, e.cascade, e.event.at, &e.event.kind);
                    app.inner().activity.observe(e.cascade, e.event.at, &e.event.kind);
                }
                Err(broadcast::error::RecvError::Lagged(n)) => tracing::debug!(missed = n, "metrics fell behind the event stream"),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            changed = stop.changed() => if changed.is_err() { return },
        }
    }
}
