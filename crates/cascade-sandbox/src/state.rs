//! What the sandbox remembers: the request log, the webhooks it sent, per-recipient counters,
//! and the scheduling of reports.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::config::SandboxConfig;
use crate::scenario::{Behaviour, Delivery, Scenarios};

/// One request the sandbox received.
#[derive(Clone, Debug, Serialize)]
pub struct Recorded {
    /// Its place in the log, from 1.
    pub seq: u64,
    /// When it arrived (RFC 3339).
    pub at: String,
    /// `whatsapp`, `telegram`, `sms`, `viber`, `max` or `sandbox`.
    pub provider: String,
    /// The HTTP method.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The body: JSON as JSON, a form as an object, anything else as a short description.
    pub body: Value,
    /// The recipient the request was for, when it was a send.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// The status the sandbox answered; 0 when it answered nothing (a [`reset`](Recorded::reset)).
    pub status: u16,
    /// The provider message id the sandbox gave the message, when it accepted a send: a send
    /// with an id is one the provider has (and reports on); one without was refused or reset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The sandbox reset the connection instead of answering (behaviour `reset`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reset: bool,
    /// The client hung up before the answer was ready (it timed out). The sandbox carried the
    /// request through all the same, as a provider that already had it would: a send here
    /// with a `message_id` went out although its client never learned so.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub abandoned: bool,
}

/// One webhook the sandbox sent (or tried to).
#[derive(Clone, Debug, Serialize)]
pub struct SentWebhook {
    /// When it was sent (RFC 3339).
    pub at: String,
    /// The provider it imitates.
    pub provider: String,
    /// Where it went.
    pub url: String,
    /// What it said (`delivered`, `read`, `failed`, `reply`, …).
    pub event: String,
    /// The provider message id it is about, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The answer's status, or `None` when the call failed.
    pub status: Option<u16>,
}

/// What happens to a message after it is accepted.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Event {
    /// Sent to the handset.
    Sent,
    /// Delivered.
    Delivered,
    /// Read.
    Read,
    /// Failed, with the provider's code if the scenario names one.
    Failed(Option<String>),
    /// The contact replies.
    Reply(String),
}

impl Event {
    /// Its name in the webhook log.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Sent => "sent",
            Event::Delivered => "delivered",
            Event::Read => "read",
            Event::Failed(_) => "failed",
            Event::Reply(_) => "reply",
        }
    }
}

/// What to do with one send.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Decision {
    /// Accept it; then these events, at these delays.
    Accept(Vec<(Duration, Event)>, Delivery),
    /// The recipient is not on this channel.
    NotOnChannel,
    /// The recipient blocked the sender.
    Blocked,
    /// Fail the call with a server error.
    ServerError,
    /// Refuse the call as rate-limited.
    RateLimited(Duration),
    /// Reset the connection without an answer.
    Reset,
}

/// A webhook ready to go: the provider's body and headers, signed.
#[derive(Clone, Debug)]
pub struct Hook {
    /// Where.
    pub url: String,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Further headers (signatures).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// For the log: the event and the message.
    pub event: String,
    /// For the log.
    pub message_id: Option<String>,
}

/// The sandbox's state, shared by its handlers.
#[derive(Debug)]
pub struct State {
    /// The accounts.
    pub config: SandboxConfig,
    scenarios: RwLock<Scenarios>,
    log: Mutex<Vec<Recorded>>,
    webhooks: Mutex<Vec<SentWebhook>>,
    refusals: Mutex<HashMap<(String, String), u32>>,
    ids: AtomicU64,
    http: reqwest::Client,
    /// Webhook URLs and secrets set at run time (`set_webhook`, `/subscriptions`).
    pub runtime_hooks: Mutex<HashMap<&'static str, (String, Option<String>)>>,
}

impl State {
    /// A state for `config`.
    pub fn new(config: SandboxConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            scenarios: RwLock::new(config.scenarios.clone()),
            config,
            log: Mutex::default(),
            webhooks: Mutex::default(),
            refusals: Mutex::default(),
            ids: AtomicU64::new(0),
            http,
            runtime_hooks: Mutex::default(),
        }
    }

    /// A number unique within this sandbox, from 1.
    pub fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Replaces the scenarios (counters start over).
    pub fn set_scenarios(&self, scenarios: Scenarios) {
        *self.scenarios.write().unwrap_or_else(|e| e.into_inner()) = scenarios;
        self.refusals.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Adds a request to the log; its `seq`.
    pub fn record(&self, mut r: Recorded) -> u64 {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        r.seq = log.len() as u64 + 1;
        let seq = r.seq;
        log.push(r);
        seq
    }

    /// Marks the request `seq` as abandoned by its client (see [`Recorded::abandoned`]).
    pub(crate) fn mark_abandoned(&self, seq: u64) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = log.iter_mut().find(|r| r.seq == seq) {
            r.abandoned = true;
        }
    }

    /// The request log.
    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The webhooks sent so far.
    pub fn webhooks(&self) -> Vec<SentWebhook> {
        self.webhooks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Forgets the logs (not the scenarios).
    pub fn clear(&self) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.webhooks.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Decides a send to `address` on `channel`, waiting first if the recipient is slow. The
    /// faults that stop after some sends (`server_error`, `rate_limited`, `reset`, `slow` with
    /// `times`) count this recipient's sends on this channel.
    pub async fn decide(&self, channel: &str, address: &str) -> Decision {
        let (behaviour, delivery) = self.scenarios.read().unwrap_or_else(|e| e.into_inner()).lookup(channel, address);
        let refused_before = |times: u32| {
            let mut counts = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
            let n = counts.entry((channel.to_owned(), address.to_owned())).or_default();
            *n += 1;
            *n <= times
        };
        let ms = Duration::from_millis;
        let delivered = |after: Duration| vec![(ms(100).min(after / 2), Event::Sent), (after, Event::Delivered)];
        let events = match behaviour {
            Behaviour::Deliver { after } => delivered(after),
            Behaviour::Read { delivered_after, read_after } => {
                let mut e = delivered(delivered_after);
                e.push((read_after.max(delivered_after), Event::Read));
                e
            }
            Behaviour::Reply { after, text } => {
                let mut e = delivered(after / 2);
                e.push((after, Event::Reply(text)));
                e
            }
            Behaviour::Silent => Vec::new(),
            Behaviour::NotOnChannel => return Decision::NotOnChannel,
            Behaviour::Blocked => return Decision::Blocked,
            Behaviour::Fail { after, code } => {
                vec![(ms(100).min(after / 2), Event::Sent), (after, Event::Failed(code))]
            }
            Behaviour::ServerError { times } if refused_before(times) => return Decision::ServerError,
            Behaviour::RateLimited { times, retry_after } if refused_before(times) => {
                return Decision::RateLimited(retry_after);
            }
            Behaviour::Reset { times } if refused_before(times) => return Decision::Reset,
            Behaviour::ServerError { .. } | Behaviour::RateLimited { .. } | Behaviour::Reset { .. } => {
                delivered(Duration::from_secs(1))
            }
            Behaviour::Slow { delay, times } => {
                if times.is_none_or(refused_before) {
                    tokio::time::sleep(delay).await;
                }
                delivered(Duration::from_secs(1))
            }
        };
        Decision::Accept(events, delivery)
    }

    /// Sends one message's `hooks`, each at its delay and in order, from one task (so that a
    /// message's reports never overtake each other unless asked): twice each when duplicating;
    /// all at the last one's time, newest first, when reordering.
    pub fn dispatch(
        self: &std::sync::Arc<Self>,
        provider: &'static str,
        mut hooks: Vec<(Duration, Hook)>,
        delivery: Delivery,
    ) {
        if hooks.is_empty() {
            return;
        }
        hooks.sort_by_key(|(after, _)| *after);
        if delivery.reorder {
            let last = hooks.last().map(|(d, _)| *d).unwrap_or_default();
            hooks.reverse();
            for (after, _) in &mut hooks {
                *after = last;
            }
        }
        let copies = if delivery.duplicate { 2 } else { 1 };
        let state = self.clone();
        let start = tokio::time::Instant::now();
        tokio::spawn(async move {
            for (after, hook) in hooks {
                tokio::time::sleep_until(start + after).await;
                for _ in 0..copies {
                    if delivery.redeliver {
                        state.post_until_taken(provider, &hook).await;
                    } else {
                        state.post(provider, &hook).await;
                    }
                }
            }
        });
    }

    /// Sends one webhook until the server answers it with a 2xx, as providers that redeliver
    /// do: again after 1 s, 2 s, 4 s, … up to 8 tries. Every try is logged.
    pub(crate) async fn post_until_taken(&self, provider: &'static str, hook: &Hook) {
        let mut pause = Duration::from_secs(1);
        for _ in 1..8 {
            if self.post(provider, hook).await.is_some_and(|s| (200..300).contains(&s)) {
                return;
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
        self.post(provider, hook).await;
    }

    /// Sends one webhook now and logs it; the answer's status (`None`: not delivered).
    pub(crate) async fn post(&self, provider: &'static str, hook: &Hook) -> Option<u16> {
        let mut call = self.http.post(&hook.url).header("Content-Type", hook.content_type).body(hook.body.clone());
        for (name, value) in &hook.headers {
            call = call.header(*name, value);
        }
        let status = match call.send().await {
            Ok(r) => Some(r.status().as_u16()),
            Err(e) => {
                tracing::warn!(provider, url = %hook.url, error = %e.without_url(), "sandbox webhook not delivered");
                None
            }
        };
        self.webhooks.lock().unwrap_or_else(|e| e.into_inner()).push(SentWebhook {
            at: now_rfc3339(),
            provider: provider.to_owned(),
            url: hook.url.clone(),
            event: hook.event.clone(),
            message_id: hook.message_id.clone(),
            status,
        });
        status
    }
}

/// Now, as RFC 3339.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
