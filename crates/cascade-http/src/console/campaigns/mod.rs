//! The campaigns pages: the list, the form that checks a CSV list and creates a campaign from
//! it ([`form`]), and one campaign's page — where it is, a chart of deliveries by channel over
//! time ([`chart`]), failures by reason, the cost against sending everything through the last
//! channel — redrawn live while it runs, with pause, resume and cancel, and an export of the
//! recipients that did not get the message.
//!
//! Campaigns are scoped as in the API: a key without `admin` sees only the campaigns it
//! created, and another's answer as unknown ones do.

mod chart;
mod form;

use std::convert::Infallible;
use std::time::Duration;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use cascade_campaigns::run::stored;
use cascade_campaigns::{CampaignError, Campaigns, Progress};
use cascade_engine::store::CampaignRecord;
use cascade_engine::{CampaignId, Cost, Timestamp};
use futures_util::Stream;
use minijinja::context;
use serde::{Deserialize, Serialize};

pub(crate) use form::routes as form_routes;

use super::cascades::humantime_secs;
use super::session::{Session, TokenForm};
use super::{PageError, render};
use crate::App;
use crate::auth::Scope;
use crate::campaigns::{campaign_problem, changed, export_download, export_kinds, owned, progress_events};

/// Campaigns on one page of the list (each row counts its campaign's recipients).
const PAGE: usize = 20;
/// Failure reasons shown, the most common first.
const REASONS: usize = 20;
/// How often the live page looks at a campaign's progress.
const LIVE_EVERY: Duration = Duration::from_secs(2);

fn problem(e: CampaignError) -> PageError {
    campaign_problem(e).into()
}

fn time(t: Timestamp) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The query of the list: `?before=<id>` for older campaigns.
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    before: Option<String>,
}

/// One row of the list.
#[derive(Debug, Serialize)]
struct Row {
    id: String,
    name: String,
    state: &'static str,
    delivered: u64,
    total: u64,
    created: String,
}

/// `GET /console/campaigns`: newest first, the key's own unless it has `admin`.
pub(crate) async fn list(
    State(app): State<App>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> Result<Response, PageError> {
    let before = q.before.as_deref().and_then(|b| b.parse::<CampaignId>().ok());
    let owner = (!session.key().sees_all()).then(|| session.key().owner());
    let mut records = app.campaigns().list(before, owner.as_deref(), PAGE + 1).await.map_err(problem)?;
    let more = records.len() > PAGE;
    records.truncate(PAGE);
    // Each row's delivered count is a count of its campaign's recipients: read side by side.
    let counted = futures_util::future::join_all(records.iter().map(|r| app.campaigns().progress_of(r))).await;
    let rows = records
        .iter()
        .zip(counted)
        .map(|(r, p)| {
            let p = p.map_err(problem)?;
            Ok(Row {
                id: r.id.to_string(),
                name: r.name.clone(),
                state: r.state.as_str(),
                delivered: p.delivered,
                total: r.recipients,
                created: time(r.created_at),
            })
        })
        .collect::<Result<Vec<_>, PageError>>()?;
    let next = more.then(|| records.last().map(|r| r.id.to_string())).flatten();
    render(
        "campaigns.html",
        context! { ..session.page("campaigns", "Campaigns"), ..context! { rows => rows, next => next } },
    )
}

/// A delivered count of one channel.
#[derive(Debug, Serialize)]
struct ChannelCount {
    channel: String,
    count: u64,
}

/// A failure reason and how many recipients have it.
#[derive(Debug, Serialize)]
struct Reason {
    reason: String,
    count: u64,
}

/// What the cost came to, against all through the last channel.
#[derive(Debug, Serialize)]
struct CostView {
    cost: String,
    all_last_channel: String,
    last_channel: String,
    /// `0.0158 saved (40 %)`, or `0.01 more`; `None` until something was priced.
    saving: Option<String>,
}

/// Everything the live part of a campaign's page shows.
#[derive(Debug, Serialize)]
struct ProgressView {
    id: String,
    state: &'static str,
    /// `scheduled`, `waiting` or `sending` while running.
    phase: Option<String>,
    /// Over, with no cascade running: nothing will change.
    settled: bool,
    can_pause: bool,
    can_resume: bool,
    can_cancel: bool,
    total: u64,
    started: u64,
    running: u64,
    delivered: u64,
    failed: u64,
    expired: u64,
    cancelled: u64,
    remaining: u64,
    by_channel: Vec<ChannelCount>,
    rate: String,
    eta: Option<String>,
    chart: chart::Chart,
    reasons: Vec<Reason>,
    /// Whether there may be reasons past those shown.
    more_reasons: bool,
    cost: CostView,
    counted_at: String,
}

/// The cost against all-last-channel, in words.
fn cost_view(p: &Progress) -> CostView {
    let (cost, all) = (p.cost.micros(), p.cost_all_last_channel.micros());
    let saving = (all != 0 || cost != 0).then(|| match all - cost {
        s if s < 0 => format!("{} more", Cost::from_micros(-s)),
        s if all > 0 => format!("{} saved ({:.0} %)", Cost::from_micros(s), s as f64 * 100.0 / all as f64),
        s => format!("{} saved", Cost::from_micros(s)),
    });
    CostView {
        cost: p.cost.to_string(),
        all_last_channel: p.cost_all_last_channel.to_string(),
        last_channel: p.last_channel.clone(),
        saving,
    }
}

/// Reads what a campaign's page shows: its progress, its results over time and its failures.
async fn progress_view(app: &App, record: &CampaignRecord) -> Result<ProgressView, PageError> {
    let campaigns = app.campaigns();
    let settings = stored(record)?;
    let p = campaigns.progress_of(record).await.map_err(problem)?;
    let channels: Vec<String> = settings.spec.policy.steps.iter().map(|s| s.channel.to_string()).collect();
    // The chart spans the sending: from the start (or the creation) to now, or, once nothing
    // runs, to the campaign's last change; results past that widen it.
    let from = settings.spec.schedule.start_at.map_or(record.created_at, |s| s.max(record.created_at));
    let to = if p.is_settled() { record.updated_at } else { p.at };
    let bucket = chart::bucket_for((to - from).to_std().unwrap_or_default());
    let (points, reasons) =
        futures_util::future::join(campaigns.series(record.id, bucket), campaigns.failure_reasons(record.id, REASONS))
            .await;
    let chart = chart::layout(&points.map_err(problem)?, bucket, from, to.max(from), &channels);
    let reasons: Vec<Reason> =
        reasons.map_err(problem)?.into_iter().map(|(reason, count)| Reason { reason, count }).collect();
    let mut by_channel: Vec<ChannelCount> = channels
        .iter()
        .filter_map(|c| p.delivered_by_channel.get(c).map(|&count| ChannelCount { channel: c.clone(), count }))
        .collect();
    for (c, &count) in &p.delivered_by_channel {
        if !channels.contains(c) {
            by_channel.push(ChannelCount { channel: c.clone(), count });
        }
    }
    let eta = p.eta.map(|t| {
        let left = (t - p.at).to_std().unwrap_or_default();
        format!("{} UTC (in {})", time(t), humantime_secs(Duration::from_secs(left.as_secs())))
    });
    let state = p.state;
    Ok(ProgressView {
        id: record.id.to_string(),
        state: state.as_str(),
        phase: p.phase.clone(),
        settled: p.is_settled(),
        can_pause: state == cascade_engine::store::CampaignState::Running,
        can_resume: state == cascade_engine::store::CampaignState::Paused,
        can_cancel: !state.is_final(),
        total: p.total,
        started: p.started,
        running: p.running,
        delivered: p.delivered,
        failed: p.failed,
        expired: p.expired,
        cancelled: p.cancelled,
        remaining: p.remaining,
        by_channel,
        rate: p.rate.clone(),
        eta,
        chart,
        more_reasons: reasons.len() == REASONS,
        reasons,
        cost: cost_view(&p),
        counted_at: time(p.at),
    })
}

/// `GET /console/campaigns/{id}`.
pub(crate) async fn show(
    State(app): State<App>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let record = owned(&app, session.key(), &id).await?;
    let settings = stored(&record)?;
    let spec = &settings.spec;
    let schedule = &spec.schedule;
    let view = progress_view(&app, &record).await?;
    let steps: Vec<String> = spec.policy.steps.iter().map(|s| s.channel.to_string()).collect();
    let overrides: Vec<(String, String)> = spec
        .message
        .overrides
        .iter()
        .map(|(channel, o)| {
            let mut parts = Vec::new();
            if let Some(t) = &o.text {
                parts.push(format!("text {t:?}"));
            }
            if let Some(a) = &o.attachment {
                parts.push(format!("file {}", a.url));
            }
            for b in &o.buttons {
                parts.push(format!("button {:?} → {}", b.caption, b.url));
            }
            (channel.to_string(), parts.join(", "))
        })
        .collect();
    render(
        "campaign.html",
        context! {
            ..session.page("campaigns", &record.name),
            ..context! {
                c => context! {
                    id => record.id.to_string(),
                    name => record.name,
                    owner => record.owner,
                    created => time(record.created_at),
                    chain => steps,
                    text => spec.message.text,
                    overrides => overrides,
                    rate => spec.rate.to_string(),
                    start_at => schedule.start_at.map(time),
                    end_at => schedule.end_at.map(time),
                    window => schedule.window.as_ref().map(ToString::to_string),
                    time_zone => schedule.zone().name(),
                    recipient_time_zone => schedule.recipient_time_zone,
                    list => settings.import,
                },
                p => view,
            }
        },
    )
}

/// `GET /console/campaigns/{id}/progress`: the live part of the page alone, for the page to
/// swap in.
pub(crate) async fn progress(
    State(app): State<App>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let record = owned(&app, session.key(), &id).await?;
    let view = progress_view(&app, &record).await?;
    render("campaign_progress.html", context! { ..session.page("campaigns", &record.name), ..context! { p => view } })
}

/// `GET /console/campaigns/{id}/live`: an event stream that says `change` every couple of
/// seconds while the campaign runs (and whenever its progress changes while it is paused or
/// its last cascades finish), and `end` once it is over and no cascade of it runs.
pub(crate) async fn live(
    State(app): State<App>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let record = owned(&app, session.key(), &id).await?;
    let stream = watch(app.campaigns().clone(), record.id, app.inner().shutdown.subscribe());
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

fn watch(
    campaigns: Campaigns,
    id: CampaignId,
    stop: tokio::sync::watch::Receiver<bool>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    progress_events(campaigns, id, stop, LIVE_EVERY, |last, p| {
        let name = if p.is_settled() {
            "end"
        } else if last.is_none_or(|last| changed(last, p)) || p.state == cascade_engine::store::CampaignState::Running {
            "change"
        } else {
            return None;
        };
        // The name is the data too: a browser drops events without data.
        Some(SseEvent::default().event(name).data(name))
    })
}

/// What the progress page's buttons ask for: the last part of their path.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Action {
    Pause,
    Resume,
    Cancel,
}

/// `POST /console/campaigns/{id}/{pause|resume|cancel}`.
pub(crate) async fn control(
    State(app): State<App>,
    session: Session,
    headers: HeaderMap,
    Path((id, action)): Path<(String, Action)>,
    Form(form): Form<TokenForm>,
) -> Result<Response, PageError> {
    session.check_form(&headers, &form.csrf)?;
    session.require(Scope::Send)?;
    // Whose it is is checked before anything changes.
    let record = owned(&app, session.key(), &id).await?;
    let campaigns = app.campaigns();
    match action {
        Action::Pause => campaigns.pause(record.id).await,
        Action::Resume => campaigns.resume(record.id).await,
        Action::Cancel => campaigns.cancel(record.id).await,
    }
    .map_err(problem)?;
    Ok(Redirect::to(&format!("/console/campaigns/{}", record.id)).into_response())
}

/// The query of an export: `?status=failed` (the default), or several, comma-separated.
#[derive(Debug, Deserialize)]
pub(crate) struct ExportQuery {
    status: Option<String>,
}

/// `GET /console/campaigns/{id}/export?status=failed`: the chosen recipients as CSV, as the
/// API's export writes them.
pub(crate) async fn export(
    State(app): State<App>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, PageError> {
    let kinds = export_kinds(Some(q.status.as_deref().unwrap_or("failed")))?;
    let record = owned(&app, session.key(), &id).await?;
    Ok(export_download(app.campaigns().clone(), record.id, &kinds))
}
