//! Kommo (amoCRM) SalesBot: `POST /kommo/widget_request`.
//!
//! The bot's `widget_request` step posts `token`, `data` and `return_url`. The token is
//! verified (HS512 with the integration's secret, expiry, integration id, audience = this
//! server's origin, and `return_url` on the token's own account); `data` becomes a cascade
//! whose idempotency key is derived from `return_url`, so a resent request never starts a
//! second one. If no cascade can be started (bad data), the bot is told `fail` at once.
//!
//! The answer is a 200 within two seconds, and Kommo never sends a request it got one for
//! again: so the request is persisted first. The store holds it
//! ([`Store::hold_request`](cascade_engine::Store::hold_request), kind [`HELD_KIND`], keyed
//! like the cascade, with the verified claims but not the token) until its cascade is
//! submitted or the bot was told `fail`; a store that cannot hold it answers `503` and
//! nothing starts. If looking up the contact's phone or email in Kommo takes longer than the
//! answer may wait, the rest continues in the background. If the process dies meanwhile, the
//! held request's lease (5 minutes) runs out and a worker started by
//! [`App::spawn_workers`](crate::App::spawn_workers) (looking at start-up, then every 30 s),
//! on this instance after a restart or on another one, takes it over: it does the work
//! again, and finds the cascade by its key if it was started before the crash. A failure that
//! may pass (the Kommo API or the store unavailable, the server stopping) leaves the request
//! held for the same worker; after an hour of them the bot is told `fail`.
//!
//! When the cascade ends, the callback worker posts
//! `{"data": {"status": "success" | "fail", ...}}` to `return_url` with the account's token
//! (see [`crate::callbacks`]); a 404 there means the bot stopped waiting, and is recorded as
//! such. `docs/kommo.md` has the set-up.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cascade_engine::store::NewHeldRequest;
use cascade_engine::{CascadeRequest, Message, SubmitError};
use cascade_kommo::{ContinueReport, Kommo, KommoError, Verified, WidgetRequest};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;

use crate::App;
use crate::problem::{Problem, ProblemKind};

/// How long the endpoint works before answering and finishing in the background.
const BUDGET: Duration = Duration::from_millis(1500);

/// The kind of the requests this endpoint has the store hold
/// ([`NewHeldRequest::kind`](cascade_engine::store::NewHeldRequest::kind)).
pub const HELD_KIND: &str = "kommo.widget_request";

/// How long a held request is its instance's: longer than looking a contact up can take (a
/// few calls of at most `kommo.timeout` each). Then [`resume`] of any instance takes it over.
const LEASE: Duration = Duration::from_secs(300);

/// How often [`resume`] looks for held requests whose lease ran out.
const POLL: Duration = Duration::from_secs(30);

/// Failed claims in a row between two warnings about them: an hour's worth at [`POLL`].
const FAILURES_PER_HOUR: u32 = 3_600 / POLL.as_secs() as u32;

/// How many held requests [`resume`] takes, and works on together, at a time: few enough that
/// all of them finish well inside their lease (each may make a few Kommo calls of at most
/// `kommo.timeout`).
const CLAIM: usize = 4;

/// What a held request keeps: everything [`start`] needs, the token left out.
#[derive(Serialize, Deserialize)]
struct Held {
    verified: Verified,
    request: WidgetRequest,
}

fn problem(e: &KommoError) -> Problem {
    let kind = match e.http_status() {
        401 => ProblemKind::Unauthorized,
        400 => ProblemKind::MalformedBody,
        422 => ProblemKind::InvalidRequest,
        _ => ProblemKind::Unavailable,
    };
    let mut p = Problem::new(kind, e.to_string());
    if let Some(f) = e.field() {
        p = p.field(f.to_string());
    }
    p
}

/// `POST /kommo/widget_request`.
pub async fn widget_request(
    State(app): State<App>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Problem> {
    let kommo =
        app.inner().kommo.clone().ok_or_else(|| Problem::not_found("Kommo is not configured on this server"))?;
    let body = body.map_err(crate::api::body_problem)?;
    crate::limits::check_json_depth(&body)?;
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let req = cascade_kommo::parse_widget_request(ct, &body).map_err(|e| problem(&e))?;
    // `data` may come as JSON inside a form field, which the body's own check does not see.
    if req.data.values().any(|v| crate::limits::value_nests_deeper_than(v, crate::limits::MAX_JSON_DEPTH - 1)) {
        return Err(Problem::new(
            ProblemKind::MalformedBody,
            format!("data nests arrays and objects more than {} levels deep", crate::limits::MAX_JSON_DEPTH),
        )
        .field("data"));
    }
    let audience = app.inner().public_url.origin().ascii_serialization();
    let verified = kommo.verify(&req, &audience, chrono::Utc::now().timestamp()).map_err(|e| {
        tracing::warn!(error = %e, "kommo widget_request refused");
        problem(&e)
    })?;
    // Persisted before anything else happens: Kommo never sends a request it got a 200 for again.
    let key = Kommo::idempotency_key(&req.return_url);
    let held = Held { verified, request: req };
    let body = serde_json::to_value(&held).map_err(|e| {
        tracing::error!(error = %e, "kommo widget_request could not be encoded");
        Problem::new(ProblemKind::Internal, "the request could not be processed")
    })?;
    let hold = NewHeldRequest { key: key.clone(), kind: HELD_KIND.into(), body };
    let now = app.inner().engine.now();
    if !app.inner().engine.store().hold_request(&hold, now, LEASE).await? {
        // Kommo sent it again while the first is still held: that one's work (or, if its
        // instance died, the worker that takes it over) continues the bot.
        tracing::info!(account = %held.verified.account, "kommo: widget_request already held");
        return Ok(accepted(None));
    }
    let work = {
        let app = app.clone();
        async move { work(&app, &kommo, &key, &held, now).await }
    };
    let mut task = tokio::spawn(work);
    match tokio::time::timeout(BUDGET, &mut task).await {
        Ok(Ok(Worked::Started(id))) => Ok(accepted(Some(id))),
        Ok(Ok(Worked::Refused)) => Ok((StatusCode::OK, axum::Json(json!({"status": "failed"}))).into_response()),
        // Held: done again once its lease runs out.
        Ok(Ok(Worked::Later)) => Ok(accepted(None)),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "kommo widget_request task failed");
            Err(Problem::new(ProblemKind::Internal, "the request could not be processed"))
        }
        // Still looking the contact up: the task goes on, Kommo gets its answer now.
        Err(_) => Ok(accepted(None)),
    }
}

/// The `200` of a request taken: with its cascade's id when it has one already.
fn accepted(cascade: Option<String>) -> Response {
    let body = match cascade {
        Some(id) => json!({"status": "accepted", "cascade_id": id}),
        None => json!({"status": "accepted"}),
    };
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// What became of a held request's work.
#[derive(Debug)]
enum Worked {
    /// Its cascade runs (started now or before); the request is released.
    Started(String),
    /// No cascade can start (bad data, no policy…) and the bot was told `fail`; released.
    Refused,
    /// It could not be done now (the Kommo API or the store unavailable, the server stopping):
    /// the request stays held and is done again once its lease runs out.
    Later,
}

/// How long a held request is retried after failures that may pass: then the bot is told
/// `fail` and the request let go.
const GIVE_UP: Duration = Duration::from_secs(3600);

/// Does a held request's work (held since `held_at`) and releases it unless it must be
/// done again later.
async fn work(app: &App, kommo: &Kommo, key: &str, held: &Held, held_at: cascade_engine::Timestamp) -> Worked {
    let worked = match start(app, kommo, &held.verified, &held.request).await {
        Ok(Some(id)) => Worked::Started(id),
        Ok(None) => Worked::Refused,
        Err(reason)
            if app.inner().engine.now() - held_at >= chrono::Duration::from_std(GIVE_UP).unwrap_or_default() =>
        {
            tracing::warn!(account = %held.verified.account, reason = %reason, "kommo: a widget_request failed for an hour; giving up");
            if let Err(e) = fail(kommo, &held.verified, &held.request, reason).await {
                tracing::warn!(account = %held.verified.account, error = %e, "kommo: the bot could not be told `fail`");
            }
            Worked::Refused
        }
        Err(reason) => {
            tracing::warn!(account = %held.verified.account, reason = %reason, "kommo: a widget_request could not be done now; it is done again once its lease runs out");
            return Worked::Later;
        }
    };
    if let Err(e) = app.inner().engine.store().release_request(key).await {
        // Done again once its lease runs out: the same cascade is found, none is added.
        tracing::warn!(error = %e, "kommo: the held widget_request could not be released");
    }
    worked
}

/// Takes over held requests whose lease ran out (their instance died, stopped, or failed to
/// do them) and does their work again, a few at a time and concurrently: at once, then every
/// [`POLL`] (more often while there are many), until `stop` is notified. Without Kommo
/// configured there is nothing to do.
pub(crate) async fn resume(app: App, mut stop: watch::Receiver<bool>) {
    let Some(kommo) = app.inner().kommo.clone() else { return };
    let store = app.inner().engine.store().clone();
    // Claims failing in a row: said on the first, then once an hour (a store that keeps no
    // held requests fails every time).
    let mut failures = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        let claimed = match store.claim_held_requests(HELD_KIND, app.inner().engine.now(), CLAIM, LEASE).await {
            Ok(claimed) => {
                if failures > 0 {
                    tracing::info!(failures, "claiming held kommo widget_requests works again");
                }
                failures = 0;
                claimed
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(FAILURES_PER_HOUR) {
                    tracing::warn!(error = %e, failures, "claiming held kommo widget_requests failed");
                }
                Vec::new()
            }
        };
        let full = claimed.len() == CLAIM;
        let mut running = tokio::task::JoinSet::new();
        for item in claimed {
            match serde_json::from_value::<Held>(item.body) {
                Ok(held) => {
                    tracing::info!(account = %held.verified.account, held_at = %item.held_at, "kommo: resuming a widget_request");
                    let (app, kommo) = (app.clone(), kommo.clone());
                    running.spawn(async move { work(&app, &kommo, &item.key, &held, item.held_at).await });
                }
                Err(e) => {
                    tracing::error!(key = %item.key, error = %e, "kommo: a held widget_request cannot be read; dropped");
                    if let Err(e) = store.release_request(&item.key).await {
                        tracing::warn!(key = %item.key, error = %e, "kommo: an unreadable held widget_request could not be released");
                    }
                }
            }
        }
        while running.join_next().await.is_some() {}
        if full {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            changed = stop.changed() => if changed.is_err() { return },
        }
    }
}

/// Tells the bot `fail`. `Err` (with why) if Kommo could not be told now and should be told
/// later.
async fn fail(kommo: &Kommo, verified: &Verified, req: &WidgetRequest, reason: String) -> Result<(), String> {
    tracing::warn!(account = %verified.account, reason = %reason, "kommo: no cascade started; telling the bot `fail`");
    let report = ContinueReport::new("", false);
    let result = kommo.continue_bot(&verified.account, &req.return_url, &report).await;
    tracing::info!(result = ?result, "kommo: fail reported");
    match result {
        cascade_kommo::ContinueResult::Transient { detail, .. } => Err(format!("telling the bot `fail`: {detail}")),
        _ => Ok(()),
    }
}

/// Maps and starts the cascade; if none can start, tells the bot `fail` (`Ok(None)`).
/// `Ok(Some(id))`: its cascade runs. `Err(why)`: a failure that may pass (the Kommo API or
/// the store unavailable, the engine stopping, Kommo not reachable to be told `fail`).
async fn start(app: &App, kommo: &Kommo, verified: &Verified, req: &WidgetRequest) -> Result<Option<String>, String> {
    let refuse = |reason: String| async move { fail(kommo, verified, req, reason).await.map(|()| None) };
    let mapped = match kommo.to_cascade(verified, req).await {
        Ok(m) => m,
        Err(e @ KommoError::Upstream(_)) => return Err(e.to_string()),
        Err(e) => return refuse(e.to_string()).await,
    };
    let policy_value = match mapped.policy {
        Some(name) => serde_json::Value::String(name),
        None => {
            return refuse("no policy: set data[policy], the account's policy or kommo.default_policy".into()).await;
        }
    };
    let policy = match app.resolve_policy(&policy_value) {
        Ok(p) => p,
        Err(errors) => return refuse(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")).await,
    };
    let mut request = CascadeRequest::new(mapped.contact, Message::text(mapped.text), policy);
    request.variables = mapped.variables;
    request.idempotency_key = Some(Kommo::idempotency_key(&req.return_url));
    request.callback_url = Some(req.return_url.clone());
    request.owner = Some(Kommo::owner(&verified.account));
    request.metadata = json!({"kommo": {"account": verified.account}});
    match app.inner().engine.submit(request).await {
        Ok(handle) => {
            tracing::info!(cascade = %handle.id(), account = %verified.account, existing = handle.is_existing(), "kommo: cascade started");
            Ok(Some(handle.id().to_string()))
        }
        // This bot step has its cascade already (the contact read from Kommo changed since it
        // was started): that one continues the bot.
        Err(SubmitError::IdempotencyConflict { existing, .. }) => {
            tracing::info!(cascade = %existing, account = %verified.account, "kommo: cascade already started");
            Ok(Some(existing.to_string()))
        }
        Err(e @ (SubmitError::ShuttingDown | SubmitError::Store(_))) => Err(e.to_string()),
        Err(e) => refuse(e.to_string()).await,
    }
}

/// Delivers a finished Kommo cascade's report to its bot (called by the callback worker).
pub(crate) async fn deliver(
    kommo: &Kommo,
    account: &str,
    return_url: &str,
    report: &ContinueReport,
) -> crate::callbacks::Delivery {
    use crate::callbacks::Delivery;
    match kommo.continue_bot(account, return_url, report).await {
        cascade_kommo::ContinueResult::Continued => Delivery::Delivered,
        cascade_kommo::ContinueResult::BotGone => {
            Delivery::GiveUp("404: the bot stopped waiting before the cascade ended".into())
        }
        cascade_kommo::ContinueResult::Transient { detail, .. } => Delivery::Retry(detail),
        cascade_kommo::ContinueResult::Permanent { detail } => Delivery::GiveUp(detail),
    }
}
