//! The cascades pages: a filterable list with a form to send one message, and one cascade's
//! timeline, redrawn live while it runs.

use std::convert::Infallible;
use std::time::Duration;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use cascade_engine::store::{ListFilter, state_name};
use cascade_engine::{CascadeId, ChannelName, EventKind, Outcome};
use futures_util::Stream;
use minijinja::{Value, context};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::broadcast;

use super::session::Session;
use super::{PageError, render, timeline};
use crate::App;
use crate::api::StartRequest;
use crate::auth::Scope;

/// Rows on one page of the list.
const PAGE: usize = 50;

/// The list's filters, as the form sends them.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    channel: String,
    /// `1h`, `24h`, `7d` or empty for any time.
    #[serde(default)]
    since: String,
    #[serde(default)]
    before: String,
}

/// One row of the list.
#[derive(Debug, Serialize)]
struct Row {
    id: String,
    created: String,
    contact: String,
    channels: Vec<String>,
    state: &'static str,
    via: String,
    cost: String,
}

const STATES: [&str; 5] = ["running", "delivered", "failed", "cancelled", "expired"];

/// `GET /console/cascades`.
pub(crate) async fn list(
    State(app): State<App>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> Result<Response, PageError> {
    list_page(&app, &session, q, None, None).await
}

async fn list_page(
    app: &App,
    session: &Session,
    q: ListQuery,
    form: Option<StartForm>,
    errors: Option<Vec<String>>,
) -> Result<Response, PageError> {
    let since = match q.since.as_str() {
        "1h" => Some(chrono::TimeDelta::hours(1)),
        "24h" => Some(chrono::TimeDelta::hours(24)),
        "7d" => Some(chrono::TimeDelta::days(7)),
        _ => None,
    }
    .map(|d| app.inner().engine.now() - d);
    let filter = ListFilter {
        state: STATES.contains(&q.state.as_str()).then(|| q.state.clone()),
        channel: (!q.channel.is_empty()).then(|| ChannelName::from(q.channel.as_str())),
        since,
        before: q.before.parse::<CascadeId>().ok(),
        owner: (!session.key().sees_all()).then(|| session.key().owner()),
        limit: PAGE + 1,
    };
    let mut records = app.inner().engine.store().list(&filter).await?;
    let more = records.len() > PAGE;
    records.truncate(PAGE);
    let next = more.then(|| records.last().map(|r| r.id().to_string())).flatten();
    let rows: Vec<Row> = records
        .iter()
        .map(|r| {
            let c = &r.meta.contact;
            let contact = c.phone.clone().or_else(|| c.email.clone()).or_else(|| c.name.clone()).unwrap_or_default();
            let via = match &r.state.outcome {
                Some(Outcome::Delivered { channel, .. }) => channel.to_string(),
                _ => String::new(),
            };
            let cost = r.state.attempts.iter().fold(cascade_engine::Cost::ZERO, |c, a| c + a.cost);
            Row {
                id: r.id().to_string(),
                created: r.state.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                contact,
                channels: r.state.plan.steps.iter().map(|s| s.channel.to_string()).collect(),
                state: state_name(&r.state),
                via,
                cost: cost.to_string(),
            }
        })
        .collect();
    let channels: Vec<String> = app.inner().engine.pools().pools().map(|p| p.channel().to_string()).collect();
    let next_query = next.map(|before| {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("state", &q.state)
            .append_pair("channel", &q.channel)
            .append_pair("since", &q.since)
            .append_pair("before", &before)
            .finish()
    });
    let failed = errors.is_some();
    let mut page = render(
        "cascades.html",
        context! {
            ..session.page("cascades", "Cascades"),
            ..context! {
                rows => rows,
                q => q,
                states => STATES,
                channels => channels,
                policies => app.policies().names(),
                next_query => next_query,
                form => form.unwrap_or_default(),
                errors => errors.unwrap_or_default(),
            }
        },
    )?;
    if failed {
        *page.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(page)
}

/// The "send a message" form.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct StartForm {
    #[serde(default, skip_serializing)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    policy: String,
}

/// `POST /console/cascades`: starts a cascade, then shows it.
pub(crate) async fn start(
    State(app): State<App>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<StartForm>,
) -> Result<Response, PageError> {
    session.check_form(&headers, &form.csrf)?;
    session.require(Scope::Send)?;
    let mut contact = json!({ "phone": form.phone.trim() });
    if !form.name.trim().is_empty() {
        contact["name"] = json!(form.name.trim());
    }
    let body = json!({ "contact": contact, "message": { "text": form.text }, "policy": form.policy });
    let req: StartRequest = match serde_json::from_value(body) {
        Ok(r) => r,
        Err(e) => return list_page(&app, &session, ListQuery::default(), Some(form), Some(vec![e.to_string()])).await,
    };
    let request = match app.to_cascade_request(req, session.key()).await {
        Ok(r) => r,
        Err(p) => {
            let mut errors: Vec<String> = p.errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
            if errors.is_empty() {
                errors.push(p.detail.clone());
            }
            return list_page(&app, &session, ListQuery::default(), Some(form), Some(errors)).await;
        }
    };
    let handle = app.inner().engine.submit(request).await.map_err(crate::Problem::from)?;
    app.inner().metrics.api_started(handle.is_existing());
    Ok(Redirect::to(&format!("/console/cascades/{}", handle.id())).into_response())
}

/// The cascade, if the session may see it.
async fn visible(app: &App, session: &Session, id: &str) -> Result<cascade_engine::CascadeView, PageError> {
    let parsed: CascadeId = id.parse().map_err(|_| PageError::not_found(format!("{id:?} is not a cascade id")))?;
    app.inner()
        .engine
        .get(parsed)
        .await?
        .filter(|v| session.key().may_see(v.record.meta.owner.as_deref()))
        .ok_or_else(|| PageError::not_found(format!("no cascade {id}")))
}

/// `GET /console/cascades/{id}`.
pub(crate) async fn show(
    State(app): State<App>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let view = visible(&app, &session, &id).await?;
    let (state, meta) = (&view.record.state, &view.record.meta);
    let steps: Vec<Value> = state
        .plan
        .steps
        .iter()
        .map(|s| {
            context! {
                channel => s.channel.to_string(),
                until => s.until.to_string(),
                timeout => humantime_secs(s.timeout),
                skip => s.skip.as_ref().map(ToString::to_string),
            }
        })
        .collect();
    let tl = timeline::layout(state, &view.events, app.inner().engine.now());
    render(
        "cascade.html",
        context! {
            ..session.page("cascades", "Cascade"),
            ..context! {
                id => id,
                contact => context! { name => meta.contact.name, phone => meta.contact.phone, email => meta.contact.email },
                created => state.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                owner => meta.owner,
                campaign => meta.campaign.as_ref().map(|c| c.campaign.to_string()),
                steps => steps,
                tl => tl,
            }
        },
    )
}

/// `GET /console/cascades/{id}/timeline`: the timeline alone, for the live page to swap in.
pub(crate) async fn timeline(
    State(app): State<App>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let view = visible(&app, &session, &id).await?;
    let tl = timeline::layout(&view.record.state, &view.events, app.inner().engine.now());
    render("timeline.html", context! { tl => tl })
}

/// `GET /console/cascades/{id}/live`: an event stream that says `change` whenever the
/// cascade's timeline grows (and every few seconds while it runs, as its time axis does),
/// and `end` when it has finished.
pub(crate) async fn live(
    State(app): State<App>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    // Whose it is, first: only a cascade the key may see, and only a running one, is watched
    // (a subscription is kept until the cascade ends). An event between the read and the
    // subscription is not lost: every `change` redraws the whole timeline from the store.
    let view = visible(&app, &session, &id).await?;
    let done = view.record.state.is_finished();
    let rx = (!done).then(|| app.inner().engine.subscribe(view.record.id()));
    let live = Live { app: app.clone(), id: view.record.id(), rx, done, stop: app.inner().shutdown.subscribe() };
    Ok(Sse::new(changes(live)).keep_alive(KeepAlive::default()).into_response())
}

struct Live {
    app: App,
    id: CascadeId,
    rx: Option<broadcast::Receiver<cascade_engine::Event>>,
    done: bool,
    stop: tokio::sync::watch::Receiver<bool>,
}

fn changes(live: Live) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    // Each event carries its name as data too: a browser drops events without data.
    let first = if live.done { "end" } else { "change" };
    let head = futures_util::stream::iter([Ok(SseEvent::default().event(first).data(first))]);
    let rest = futures_util::stream::unfold(live, |mut l| async move {
        let rx = l.rx.as_mut().filter(|_| !l.done)?;
        let name = tokio::select! {
            r = rx.recv() => match r {
                Ok(e) if matches!(e.kind, EventKind::Finished { .. }) => { l.done = true; "end" }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => "change",
                Err(broadcast::error::RecvError::Closed) => return None,
            },
            () = tokio::time::sleep(Duration::from_secs(5)) => "tick",
            _ = l.stop.wait_for(|s| *s) => return None,
        };
        // Time moves the axis on; and a cascade another server finishes sends no event here.
        let name = if name == "tick" {
            match l.app.inner().engine.store().load(l.id).await {
                Ok(Some(r)) if r.state.is_finished() => {
                    l.done = true;
                    "end"
                }
                _ => "change",
            }
        } else {
            name
        };
        Some((Ok(SseEvent::default().event(name).data(name)), l))
    });
    futures_util::StreamExt::chain(head, rest)
}

/// `POST /console/cascades/{id}/cancel`.
pub(crate) async fn cancel(
    State(app): State<App>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<super::session::TokenForm>,
) -> Result<Response, PageError> {
    session.check_form(&headers, &form.csrf)?;
    session.require(Scope::Send)?;
    let view = visible(&app, &session, &id).await?;
    app.inner().engine.cancel(view.record.id()).await?;
    Ok(Redirect::to(&format!("/console/cascades/{id}")).into_response())
}

/// `90 s`, `5 min`, `1 h 30 min`.
pub(crate) fn humantime_secs(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s < 120 && s % 60 != 0 || s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}
