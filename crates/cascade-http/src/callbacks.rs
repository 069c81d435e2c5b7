//! Callback delivery from the store's durable outbox.
//!
//! When a cascade with a `callback_url` ends, the engine writes its outcome report to the
//! outbox in the same transaction as the outcome, so it is never lost. This worker claims due
//! items (with a lease, so several instances share the work), POSTs each as JSON signed with
//! the starting API key's `callback_secret`:
//!
//! ```text
//! X-Cascade-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//! X-Cascade-Delivery: <outbox item id>
//! ```
//!
//! A 2xx answer completes it. Anything else (or no answer) is retried with exponential backoff
//! (10 s, 20 s, 40 s … at most 1 h apart) until 24 h have passed since the first try; then the
//! item is kept as dead and listed by `GET /v1/callbacks/dead`. A 410 Gone gives up at once,
//! and so does a URL the server's URL policy refuses on a try (no internal addresses unless
//! allowed): a host written as an address is checked before the try, a host name when the
//! connection resolves it ([`crate::net::GuardedResolver`]), so it is looked up once.

use std::time::Duration;

use cascade_channel_kit::webhook::{CASCADE_SIGNATURE_HEADER, cascade_signature};
use cascade_engine::Timestamp;
use cascade_engine::store::OutboxItem;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::Instrument;

use crate::App;
use crate::auth::Owner;
use crate::net::refusal;

/// How callbacks are delivered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallbackSettings {
    /// The wait before the first retry; it doubles each time (10 s).
    #[serde(with = "cascade_engine::model::duration")]
    pub initial_backoff: Duration,
    /// The longest wait between tries (1 h).
    #[serde(with = "cascade_engine::model::duration")]
    pub max_backoff: Duration,
    /// How long after the first try a callback is given up on (24 h).
    #[serde(with = "cascade_engine::model::duration")]
    pub give_up_after: Duration,
    /// The limit for one POST (10 s).
    #[serde(with = "cascade_engine::model::duration")]
    pub timeout: Duration,
    /// How often the outbox is looked at when idle (1 s).
    #[serde(with = "cascade_engine::model::duration")]
    pub poll_interval: Duration,
}

impl Default for CallbackSettings {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
        }
    }
}

impl CallbackSettings {
    /// The wait after try number `tries` (1-based) failed.
    pub fn backoff(&self, tries: u32) -> Duration {
        let factor = 1u32.checked_shl(tries.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }

    /// The time from the first try to the try after number `tries`.
    pub fn elapsed_before(&self, tries: u32) -> Duration {
        (1..=tries).map(|t| self.backoff(t)).sum()
    }
}

/// What one delivery try came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// 2xx.
    Delivered,
    /// Worth another try later.
    Retry(String),
    /// Not worth another try.
    GiveUp(String),
}

const CLAIM: usize = 32;

/// The worker loop: runs until `stop` is notified.
pub(crate) async fn run(app: App, mut stop: watch::Receiver<bool>) {
    let settings = app.inner().callbacks.clone();
    let client = app.inner().url_policy.client(settings.timeout);
    let lease = settings.timeout * 3;
    loop {
        if *stop.borrow() {
            return;
        }
        let now = app.inner().engine.now();
        let items = match app.inner().engine.store().claim_outbox(now, CLAIM, lease).await {
            Ok(items) => items,
            Err(e) => {
                tracing::warn!(error = %e, "claiming callbacks failed");
                Vec::new()
            }
        };
        let full = items.len() == CLAIM;
        for item in items {
            let span = tracing::info_span!(
                "cascade.callback",
                cascade_id = %item.cascade,
                callback = item.id,
                tries = item.tries + 1,
            );
            async {
                let outcome = deliver(&app, &client, &item).await;
                record(&app, &settings, &item, outcome).await;
            }
            .instrument(span)
            .await;
        }
        if full {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.poll_interval) => {}
            changed = stop.changed() => if changed.is_err() { return },
        }
    }
}

/// One try of one callback.
pub(crate) async fn deliver(app: &App, client: &reqwest::Client, item: &OutboxItem) -> Delivery {
    let record = match app.inner().engine.store().load(item.cascade).await {
        Ok(r) => r,
        Err(e) => return Delivery::Retry(format!("store: {e}")),
    };
    let owner = record.as_ref().and_then(|r| r.meta.owner.clone());
    let parsed = owner.as_deref().and_then(Owner::parse);
    if let Some(Owner::Kommo(account)) = parsed {
        let Some(kommo) = &app.inner().kommo else {
            return Delivery::GiveUp("Kommo is no longer configured on this server".into());
        };
        let report = match record.as_ref().and_then(|r| r.state.outcome.as_ref()) {
            Some(outcome) => cascade_kommo::ContinueReport::from_outcome(item.cascade.to_string(), outcome),
            None => cascade_kommo::ContinueReport::new(item.cascade.to_string(), false),
        };
        let delivery = crate::kommo::deliver(kommo, account, &item.url, &report).await;
        tracing::info!(result = ?delivery, "kommo continue try");
        return delivery;
    }
    let secret = match parsed {
        Some(Owner::Key(name)) => app.inner().keys.by_name(name).and_then(|k| k.secret().cloned()),
        _ => None,
    };
    let Some(secret) = secret else {
        return Delivery::GiveUp(format!(
            "no callback secret for the cascade's owner {:?} (the API key was removed or has no callback_secret)",
            owner.unwrap_or_default()
        ));
    };
    // A host written as an address is checked here; a host name when the client resolves it.
    if let Err(e) = app.inner().url_policy.check_offline(&item.url) {
        return Delivery::GiveUp(format!("callback_url refused: {e}"));
    }
    let body = serde_json::to_vec(&item.body).unwrap_or_default();
    let signature = cascade_signature(secret.expose().as_bytes(), chrono::Utc::now().timestamp(), &body);
    let sent = client
        .post(&item.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(CASCADE_SIGNATURE_HEADER, signature)
        .header("X-Cascade-Delivery", item.id.to_string())
        .body(body)
        .send()
        .await;
    let delivery = match sent {
        Ok(r) if r.status().is_success() => Delivery::Delivered,
        Ok(r) if r.status() == reqwest::StatusCode::GONE => Delivery::GiveUp("410 Gone".into()),
        Ok(r) => Delivery::Retry(format!("HTTP {}", r.status())),
        Err(e) => match refusal(&e) {
            Some(refused) => Delivery::GiveUp(format!("callback_url refused: {refused}")),
            None => Delivery::Retry(format!("{e}")),
        },
    };
    tracing::info!(result = ?delivery, "callback try");
    delivery
}

async fn record(app: &App, settings: &CallbackSettings, item: &OutboxItem, delivery: Delivery) {
    let tries = item.tries + 1;
    let result = match &delivery {
        Delivery::Delivered => Ok(()),
        Delivery::GiveUp(e) => Err((e.clone(), None)),
        Delivery::Retry(e) => {
            if settings.elapsed_before(tries) > settings.give_up_after {
                Err((format!("{e}; gave up after {tries} tries"), None))
            } else {
                Err((e.clone(), Some(add(app.inner().engine.now(), settings.backoff(tries)))))
            }
        }
    };
    app.inner().metrics.callback(match &result {
        Ok(()) => "delivered",
        Err((_, Some(_))) => "retry",
        Err((_, None)) => "dead",
    });
    if let Err(e) = app.inner().engine.store().outbox_result(item.id, result).await {
        tracing::warn!(error = %e, "recording a callback result failed; it will be tried again");
    }
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    t + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_gives_up_after_a_day() {
        let s = CallbackSettings::default();
        assert_eq!(s.backoff(1), Duration::from_secs(10));
        assert_eq!(s.backoff(2), Duration::from_secs(20));
        assert_eq!(s.backoff(10), Duration::from_secs(3600));
        assert_eq!(s.backoff(200), Duration::from_secs(3600));
        let tries = (1..).find(|t| s.elapsed_before(*t) > s.give_up_after).expect("finite");
        assert!((25..40).contains(&tries), "{tries}");
    }
}
