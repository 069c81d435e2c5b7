//! The campaign API under `/v1/campaigns`: create a campaign from a recipient list (an upload
//! or an inline array), read and list campaigns, watch their progress, pause, resume and
//! cancel them, and export the recipients that did not get the message.
//!
//! Campaigns are scoped like cascades: a key without `admin` sees and controls only the
//! campaigns it created (their owner is `key:<name>`); another's answer as unknown ones do.
//! The work itself is [`cascade_campaigns::Campaigns`]'s; this module reads requests, checks
//! them whole (every problem with its field), and streams lists in and exports out without
//! holding them in memory.

use std::convert::Infallible;
use std::io::Read;
use std::str::FromStr;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use cascade_campaigns::export::{self, ExportKind};
use cascade_campaigns::run::stored;
use cascade_campaigns::validate::Report;
use cascade_campaigns::{
    CampaignError, CampaignSpec, Campaigns, Format, ImportError, NewCampaign, Progress, Rate, Region, Schedule,
    ValidateError, ValidateOptions,
};
use cascade_engine::store::CampaignRecord;
use cascade_engine::{CampaignId, ValidationError};
use futures_util::Stream;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::App;
use crate::api::{MessageBody, Page, body_problem, next_cursor, query, require_json};
use crate::auth::{ApiKey, Scope};
use crate::problem::{Problem, ProblemKind, parse_json};

/// How many row errors a report in an answer lists at most (the counts are always whole).
pub const REPORT_ERRORS: usize = 100;
/// Recipients read from the store per page of an export.
pub const EXPORT_PAGE: usize = 1_000;
/// How often a progress stream looks for changes.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// The body of `POST /v1/campaigns`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCampaign {
    /// A name for people.
    pub name: String,
    /// What to say, as for a cascade: the text is a template over each recipient's contact
    /// (`{{contact.name}}`, `{{contact.fields.city}}`) and `variables`.
    pub message: MessageBody,
    /// A policy name (from the configuration, or stored with `PUT /v1/policies/{name}`), or an
    /// inline policy `{"steps": [...]}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub policy: Value,
    /// Objects for templates, the same for every recipient.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: Value,
    /// When to send.
    #[serde(default)]
    #[schema(value_type = Option<ScheduleBody>)]
    pub schedule: Value,
    /// How fast: cascades started per second, minute or hour (`"50/s"`, `"600/min"`, `"1000/h"`).
    #[serde(default)]
    #[schema(value_type = String, example = "50/s")]
    pub rate: Value,
    /// The country of phone numbers written without a country code (`US`, `GB`, `DE`).
    #[serde(default)]
    pub region: Option<String>,
    /// The upload's format, `csv` or `json` (default: from the upload's file name, else from
    /// its first character).
    #[serde(default)]
    pub format: Option<String>,
    /// Your data, kept on every cascade of the campaign (beside `campaign` and `recipient`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// The list: `{"upload_id": "…"}` (a CSV or JSON file from `POST /v1/uploads`), or an
    /// array of recipients `[{"phone": "+15551234567", "name": "Ann", "city": "Austin"}, …]`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub recipients: Value,
    /// Check the settings and the list, store nothing, answer the list's report.
    #[serde(default)]
    pub dry_run: bool,
}

/// The `schedule` of a campaign (every member optional).
#[derive(Debug, ToSchema)]
pub struct ScheduleBody {
    /// Nothing is started before this RFC 3339 time (default: at once).
    pub start_at: Option<String>,
    /// Recipients not started by this RFC 3339 time end as `expired` (default: no end).
    pub end_at: Option<String>,
    /// The days and hours to send in: `mon-fri 09:00-21:00`, `daily 10:00-20:00`.
    pub window: Option<String>,
    /// The IANA time zone of the window (`Europe/Berlin`; default `UTC`).
    pub time_zone: Option<String>,
    /// Judge the window in each recipient's own time zone where it is known.
    pub recipient_time_zone: Option<bool>,
}

/// A campaign in a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignSummary {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `importing`, `running`, `paused`, `cancelled` or `finished`.
    pub state: String,
    /// Its recipients.
    pub total: u64,
    /// Its rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it last changed (RFC 3339): its state, its settings once imported, or the mark a
    /// running import makes every few minutes.
    pub updated_at: String,
}

/// The query of `GET /v1/campaigns`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CampaignListQuery {
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<usize>,
}

/// The query of `GET /v1/campaigns/{id}/export`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// Which recipients, comma-separated: `failed`, `expired`, `cancelled`, `delivered`,
    /// `pending` (default `failed,expired`).
    pub status: Option<String>,
}

/// A recipient list to read: bytes of an inline array, or an uploaded file.
struct List {
    reader: Box<dyn Read + Send>,
    format: Option<Format>,
}

/// `POST /v1/campaigns`: checks the settings and the list whole, stores the recipients
/// (streamed), and launches the campaign; or, with `dry_run`, only checks.
#[utoipa::path(post, path = "/v1/campaigns", request_body = CreateCampaign,
    responses((status = 201, description = "`{\"campaign\": progress, \"report\": the list's report}`", body = Object),
        (status = 200, description = "`dry_run`: `{\"report\": …}`", body = Object),
        (status = 400, body = crate::problem::ProblemDetails), (status = 401, body = crate::problem::ProblemDetails),
        (status = 403, body = crate::problem::ProblemDetails), (status = 413, body = crate::problem::ProblemDetails),
        (status = 415, body = crate::problem::ProblemDetails), (status = 422, body = crate::problem::ProblemDetails),
        (status = 429, body = crate::problem::ProblemDetails), (status = 503, body = crate::problem::ProblemDetails)))]
pub async fn create(
    State(app): State<App>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Problem> {
    let key = app.inner().keys.authorize(&headers, Scope::Send)?;
    require_json(&headers)?;
    let body = body.map_err(body_problem)?;
    let req: CreateCampaign = parse_json(&body)?;
    let dry_run = req.dry_run;
    let checked = app.check_campaign(req).await?;
    if dry_run {
        let report = app.dry_run_campaign(checked).await?;
        return Ok(Json(json!({"report": report})).into_response());
    }
    let (record, report) = app.create_campaign(checked, &key).await?;
    let progress = app.campaigns().progress_of(&record).await.map_err(campaign_problem)?;
    let mut response = (StatusCode::CREATED, Json(json!({"campaign": progress, "report": report}))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/campaigns/{}", record.id)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// A campaign request read and checked whole, its list open: what `POST /v1/campaigns` and
/// the console's form both make of their input, then check ([`App::dry_run_campaign`]) or
/// create ([`App::create_campaign`]).
pub(crate) struct CheckedCampaign {
    name: String,
    spec: CampaignSpec,
    region: Option<Region>,
    list: List,
}

impl App {
    /// The campaigns of this server.
    pub fn campaigns(&self) -> &Campaigns {
        &self.inner().campaigns
    }

    /// Reads a campaign request and checks it whole: the name, the message and policy, the
    /// schedule, the rate, the region and format, the list (opened, not read yet) and the
    /// settings against the engine. A `422` lists every problem, each with its field.
    pub(crate) async fn check_campaign(&self, req: CreateCampaign) -> Result<CheckedCampaign, Problem> {
        let mut errors = Vec::new();
        let name = req.name.trim().to_owned();
        if name.is_empty() {
            errors.push(ValidationError::new("name", "must not be empty"));
        } else if name.chars().count() > 200 {
            errors.push(ValidationError::new("name", "at most 200 characters"));
        }
        let content = self.resolve_content(req.message, &req.policy, &mut errors).await;
        if !req.variables.is_null() && !req.variables.is_object() {
            errors.push(ValidationError::new("variables", "must be an object"));
        }
        let schedule = if req.schedule.is_null() {
            Some(Schedule::default())
        } else {
            from_value::<Schedule>("schedule", req.schedule, &mut errors)
        };
        let rate = if req.rate.is_null() {
            errors.push(ValidationError::new(
                "rate",
                "required: how many cascades to start per second, minute or hour (\"50/s\", \"600/min\")",
            ));
            None
        } else {
            from_value::<Rate>("rate", req.rate, &mut errors)
        };
        let region = match req.region.as_deref().map(Region::from_str) {
            Some(Ok(r)) => Some(r),
            Some(Err(e)) => {
                errors.push(ValidationError::new("region", e.to_string()));
                None
            }
            None => None,
        };
        let format = match req.format.as_deref().map(|f| f.trim().to_ascii_lowercase()) {
            Some(f) if f == "csv" => Some(Format::Csv),
            Some(f) if f == "json" => Some(Format::Json),
            Some(_) => {
                errors.push(ValidationError::new("format", "must be `csv` or `json`"));
                None
            }
            None => None,
        };
        let list = self.open_list(req.recipients, format, &mut errors).await;
        // The settings against the engine (a connection for every step's channel, the dates),
        // also when something else is wrong, so the answer lists every problem.
        if let Some((message, policy)) = &content {
            let probe = CampaignSpec {
                message: message.clone(),
                policy: policy.clone(),
                variables: Value::Null,
                schedule: schedule.clone().unwrap_or_default(),
                rate: rate.unwrap_or(Rate { count: 1, per: Duration::from_secs(1) }),
                metadata: Value::Null,
            };
            if let Err(e) = self.campaigns().check(&probe) {
                errors.extend(campaign_problem(e).errors.clone());
            }
        }
        let (Some((message, policy)), Some(schedule), Some(rate), Some(list)) = (content, schedule, rate, list) else {
            return Err(Problem::invalid(errors));
        };
        if !errors.is_empty() {
            return Err(Problem::invalid(errors));
        }
        let spec = CampaignSpec { message, policy, variables: req.variables, schedule, rate, metadata: req.metadata };
        Ok(CheckedCampaign { name, spec, region, list })
    }

    /// Checks a campaign's list without storing anything: the valid, invalid and duplicate
    /// counts, the first [`REPORT_ERRORS`] row errors with their lines, the message rendered
    /// for the first recipients, and the variables some rows lack.
    pub(crate) async fn dry_run_campaign(&self, checked: CheckedCampaign) -> Result<Report, Problem> {
        let CheckedCampaign { spec, region, list: List { reader, format }, .. } = checked;
        let options = ValidateOptions {
            format,
            region,
            template: Some(spec.message.text),
            variables: spec.variables,
            preview: 3,
            max_errors: REPORT_ERRORS,
        };
        tokio::task::spawn_blocking(move || cascade_campaigns::validate(reader, &options))
            .await
            .map_err(|e| Problem::new(ProblemKind::Internal, format!("the check failed: {e}")))?
            .map_err(|e| campaign_problem(CampaignError::List(e)))
    }

    /// Creates a checked campaign owned by `key`: stores its recipients (streamed) and
    /// launches it. Returns it with its list's report (at most [`REPORT_ERRORS`] row errors
    /// listed).
    pub(crate) async fn create_campaign(
        &self,
        checked: CheckedCampaign,
        key: &ApiKey,
    ) -> Result<(CampaignRecord, Report), Problem> {
        let CheckedCampaign { name, spec, region, list: List { reader, format } } = checked;
        let new = NewCampaign { name, owner: Some(key.owner()), spec, region, format };
        // In a task of its own: a client that goes away does not stop an import half way.
        let campaigns = self.campaigns().clone();
        let created = tokio::spawn(async move { campaigns.create(new, reader, |_| {}).await })
            .await
            .map_err(|e| Problem::new(ProblemKind::Internal, format!("the import failed: {e}")))?;
        let (record, mut report) = created.map_err(campaign_problem)?;
        shorten_report(&mut report);
        Ok((record, report))
    }

    /// Opens the list of a request: an inline array (as JSON), or an upload (streamed from
    /// disk). What is wrong is added to `errors`.
    async fn open_list(
        &self,
        recipients: Value,
        format: Option<Format>,
        errors: &mut Vec<ValidationError>,
    ) -> Option<List> {
        const F: &str = "recipients";
        match recipients {
            Value::Array(items) => {
                if format == Some(Format::Csv) {
                    errors.push(ValidationError::new("format", "an inline list is JSON; `csv` is for uploads"));
                    return None;
                }
                Some(List { reader: Box::new(std::io::Cursor::new(inline_list(&items))), format: Some(Format::Json) })
            }
            Value::Object(mut m) => {
                let id = match m.remove("upload_id") {
                    Some(Value::String(id)) => id,
                    Some(_) => {
                        errors.push(ValidationError::new(format!("{F}.upload_id"), "must be a string"));
                        return None;
                    }
                    None => {
                        errors.push(ValidationError::new(
                            F,
                            "give `{\"upload_id\": \"…\"}` from POST /v1/uploads, or an array of recipients",
                        ));
                        return None;
                    }
                };
                if let Some(other) = m.keys().next() {
                    errors.push(ValidationError::new(format!("{F}.{other}"), "unknown field; expected `upload_id`"));
                    return None;
                }
                let field = format!("{F}.upload_id");
                let Some(uploads) = self.inner().uploads.as_ref() else {
                    errors.push(ValidationError::new(field, "uploads are not enabled on this server"));
                    return None;
                };
                let Some(info) = uploads.info(&id).await else {
                    errors.push(ValidationError::new(field, format!("no upload {id:?}")));
                    return None;
                };
                let file = match tokio::fs::File::open(uploads.path(&id)).await {
                    Ok(f) => f.into_std().await,
                    Err(e) => {
                        tracing::warn!(upload = %id, error = %e, "an upload could not be opened");
                        errors.push(ValidationError::new(field, format!("upload {id:?} cannot be read")));
                        return None;
                    }
                };
                let by_name = info.filename.as_deref().and_then(|n| Format::from_path(std::path::Path::new(n)));
                Some(List { reader: Box::new(file), format: format.or(by_name) })
            }
            Value::Null => {
                errors.push(ValidationError::new(F, "required: `{\"upload_id\": \"…\"}` or an array of recipients"));
                None
            }
            _ => {
                errors.push(ValidationError::new(F, "must be `{\"upload_id\": \"…\"}` or an array of recipients"));
                None
            }
        }
    }
}

/// An inline list as JSON with one recipient per line, the first on line 1, so that the
/// `line` of a row in a report is its position in the array (counting from 1).
fn inline_list(items: &[Value]) -> Vec<u8> {
    let mut out = b"[".to_vec();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b",\n");
        }
        // A `Value` always serializes; strings escape their line breaks.
        out.extend_from_slice(&serde_json::to_vec(item).unwrap_or_default());
    }
    out.push(b']');
    out
}

/// Reads `value` as a `T`, naming the field at fault under `field`.
fn from_value<T: DeserializeOwned>(field: &str, value: Value, errors: &mut Vec<ValidationError>) -> Option<T> {
    crate::problem::from_value_at(field, value).map_err(|e| errors.push(e)).ok()
}

/// Keeps at most [`REPORT_ERRORS`] row errors, counting the others.
fn shorten_report(report: &mut Report) {
    if report.errors.len() > REPORT_ERRORS {
        report.errors_not_listed += (report.errors.len() - REPORT_ERRORS) as u64;
        report.errors.truncate(REPORT_ERRORS);
    }
}

/// A campaign error as a problem document.
pub(crate) fn campaign_problem(e: CampaignError) -> Problem {
    match e {
        CampaignError::Invalid(problems) => Problem::invalid(
            problems
                .iter()
                .map(|p| match p.split_once(": ") {
                    Some((field, message)) if !field.contains(' ') => ValidationError::new(field, message),
                    _ => ValidationError::new("", p.clone()),
                })
                .collect(),
        ),
        CampaignError::List(ValidateError::Template(e)) => Problem::invalid_field("message.text", e.to_string()),
        CampaignError::List(ValidateError::Import(ImportError::Io(e))) => {
            tracing::warn!(error = %e, "a recipient list could not be read");
            Problem::unavailable(format!("the recipient list could not be read: {e}"))
        }
        CampaignError::List(e) => Problem::invalid_field("recipients", e.to_string()),
        CampaignError::NoRecipients(mut report) => {
            shorten_report(&mut report);
            let mut p = Problem::invalid_field(
                "recipients",
                format!(
                    "the list has no valid recipient ({} invalid, {} duplicate); see `report`",
                    report.invalid, report.duplicate
                ),
            );
            p.report = serde_json::to_value(&report).ok();
            p
        }
        CampaignError::NotFound(id) => no_campaign(id),
        e @ CampaignError::Conflict { .. } => Problem::new(ProblemKind::Conflict, e.to_string()),
        CampaignError::Store(e) => e.into(),
        e => Problem::unavailable(e.to_string()),
    }
}

/// The answer for a campaign that does not exist or that the key may not see: the same for
/// both, so a key cannot tell another key's campaign ids from unknown ones.
fn no_campaign(id: CampaignId) -> Problem {
    Problem::not_found(format!("no campaign {id}"))
}

fn parse_id(id: &str) -> Result<CampaignId, Problem> {
    id.parse().map_err(|_| Problem::not_found(format!("no campaign {id:?} (ids are UUIDs)")))
}

/// The campaign `id` if `key` may see it, else a 404.
pub(crate) async fn owned(app: &App, key: &ApiKey, id: &str) -> Result<CampaignRecord, Problem> {
    let id = parse_id(id)?;
    let record = app.campaigns().get(id).await.map_err(campaign_problem)?;
    if key.may_see(record.owner.as_deref()) { Ok(record) } else { Err(no_campaign(id)) }
}

/// `GET /v1/campaigns`: newest first, paged by cursor; the key's own campaigns only, unless it
/// has `admin`.
#[utoipa::path(get, path = "/v1/campaigns", params(CampaignListQuery),
    responses((status = 200, description = "`{\"items\": [summary], \"next_cursor\": …}`", body = Object),
        (status = 401, body = crate::problem::ProblemDetails), (status = 422, body = crate::problem::ProblemDetails)))]
pub async fn list(State(app): State<App>, headers: HeaderMap, request: Request) -> Result<Response, Problem> {
    let key = app.inner().keys.authorize(&headers, Scope::Read)?;
    let q: CampaignListQuery = query(request).await?;
    let mut errors = Vec::new();
    let Page { before, limit } = Page::<CampaignId>::parse(q.cursor.as_deref(), q.limit, 50, 200, &mut errors);
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let owner = (!key.sees_all()).then(|| key.owner());
    let records = app.campaigns().list(before, owner.as_deref(), limit).await.map_err(campaign_problem)?;
    let next = next_cursor(&records, limit, |r| r.id.to_string());
    let items: Vec<CampaignSummary> = records.iter().map(summary).collect();
    Ok(Json(json!({"items": items, "next_cursor": next})).into_response())
}

fn summary(r: &CampaignRecord) -> CampaignSummary {
    let time = |t: cascade_engine::Timestamp| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    CampaignSummary {
        id: r.id.to_string(),
        name: r.name.clone(),
        state: r.state.to_string(),
        total: r.recipients,
        rate: stored(r).ok().map(|s| s.spec.rate.to_string()),
        created_at: time(r.created_at),
        updated_at: time(r.updated_at),
    }
}

/// `GET /v1/campaigns/{id}`: the progress, the settings (`spec`) and what the import found
/// (`import`). Another key's campaign is a 404, as an unknown one (but for `admin`).
#[utoipa::path(get, path = "/v1/campaigns/{id}", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 401, body = crate::problem::ProblemDetails), (status = 404, body = crate::problem::ProblemDetails)))]
pub async fn get_one(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, Problem> {
    let key = app.inner().keys.authorize(&headers, Scope::Read)?;
    let record = owned(&app, &key, &id).await?;
    let settings = stored(&record).map_err(Problem::from)?;
    let progress = app.campaigns().progress_of(&record).await.map_err(campaign_problem)?;
    let mut v = serde_json::to_value(&progress).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("spec".into(), json!(settings.spec));
        m.insert("import".into(), json!(settings.import));
        m.insert("created_at".into(), json!(record.created_at));
        m.insert("updated_at".into(), json!(record.updated_at));
    }
    Ok(Json(v).into_response())
}

/// `POST /v1/campaigns/{id}/pause`: nothing new is started until it is resumed (cascades
/// already started go on). `409` unless it is running.
#[utoipa::path(post, path = "/v1/campaigns/{id}/pause", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::problem::ProblemDetails), (status = 409, body = crate::problem::ProblemDetails)))]
pub async fn pause(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, Problem> {
    control(app, headers, id, Action::Pause).await
}

/// `POST /v1/campaigns/{id}/resume`: a paused campaign sends again. `409` unless it is paused.
#[utoipa::path(post, path = "/v1/campaigns/{id}/resume", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::problem::ProblemDetails), (status = 409, body = crate::problem::ProblemDetails)))]
pub async fn resume(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, Problem> {
    control(app, headers, id, Action::Resume).await
}

/// `POST /v1/campaigns/{id}/cancel`: recipients not started never will be (`cancelled`), and
/// the cascades still running are cancelled. `409` once it is cancelled or finished.
#[utoipa::path(post, path = "/v1/campaigns/{id}/cancel", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::problem::ProblemDetails), (status = 409, body = crate::problem::ProblemDetails)))]
pub async fn cancel(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, Problem> {
    control(app, headers, id, Action::Cancel).await
}

#[derive(Clone, Copy, Debug)]
enum Action {
    Pause,
    Resume,
    Cancel,
}

async fn control(app: App, headers: HeaderMap, id: String, action: Action) -> Result<Response, Problem> {
    let key = app.inner().keys.authorize(&headers, Scope::Send)?;
    // Whose it is is checked before anything changes (the owner of a campaign never changes).
    let record = owned(&app, &key, &id).await?;
    let campaigns = app.campaigns();
    let done = match action {
        Action::Pause => campaigns.pause(record.id).await,
        Action::Resume => campaigns.resume(record.id).await,
        Action::Cancel => campaigns.cancel(record.id).await,
    };
    let record = done.map_err(campaign_problem)?;
    let progress = campaigns.progress_of(&record).await.map_err(campaign_problem)?;
    Ok(Json(progress).into_response())
}

/// `GET /v1/campaigns/{id}/events`: the progress as Server-Sent Events (`event: progress`),
/// at once and then whenever it changes (looked at every second), until the campaign is over
/// and no cascade of it runs: that last progress ends the stream.
#[utoipa::path(get, path = "/v1/campaigns/{id}/events", params(("id" = String, Path)),
    responses((status = 200, content_type = "text/event-stream", body = String), (status = 404, body = crate::problem::ProblemDetails)))]
pub async fn events(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, Problem> {
    let key = app.inner().keys.authorize(&headers, Scope::Read)?;
    let record = owned(&app, &key, &id).await?;
    let stream = progress_stream(app.campaigns().clone(), record.id, app.inner().shutdown.subscribe());
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

/// Whether two progresses differ but for when they were counted.
pub(crate) fn changed(before: &Progress, now: &Progress) -> bool {
    let mut now = now.clone();
    now.at = before.at;
    *before != now
}

fn progress_stream(
    campaigns: Campaigns,
    id: CampaignId,
    stop: tokio::sync::watch::Receiver<bool>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let mut n = 0u64;
    progress_events(campaigns, id, stop, WATCH_EVERY, move |last, progress| {
        if !progress.is_settled() && last.is_some_and(|last| !changed(last, progress)) {
            return None;
        }
        let data = serde_json::to_string(progress).unwrap_or_default();
        let event = SseEvent::default().event("progress").id(n.to_string()).data(data);
        n += 1;
        Some(event)
    })
}

/// Reads a campaign's progress at once and then every `every`, and hands each reading, with
/// the last one an event was sent for, to `event`: the events it makes are the stream. The
/// stream ends after the event for a settled campaign (over, and no cascade of it running),
/// when the campaign is gone, or when the server stops (`stop`), so shutdown is not held open.
/// A reading that fails is tried again at the next tick.
pub(crate) fn progress_events(
    campaigns: Campaigns,
    id: CampaignId,
    stop: tokio::sync::watch::Receiver<bool>,
    every: Duration,
    event: impl FnMut(Option<&Progress>, &Progress) -> Option<SseEvent> + Send + 'static,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    struct Watcher<F> {
        campaigns: Campaigns,
        id: CampaignId,
        last: Option<Progress>,
        first: bool,
        done: bool,
        stop: tokio::sync::watch::Receiver<bool>,
        event: F,
    }
    let w = Watcher { campaigns, id, last: None, first: true, done: false, stop, event };
    futures_util::stream::unfold(w, move |mut w| async move {
        if w.done {
            return None;
        }
        loop {
            if !w.first {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = w.stop.wait_for(|stopping| *stopping) => return None,
                }
            }
            w.first = false;
            let progress = match w.campaigns.progress(w.id).await {
                Ok(p) => p,
                Err(CampaignError::NotFound(_)) => return None,
                Err(e) => {
                    tracing::debug!(campaign = %w.id, error = %e, "reading a campaign's progress failed; trying again");
                    continue;
                }
            };
            let Some(event) = (w.event)(w.last.as_ref(), &progress) else { continue };
            w.done = progress.is_settled();
            w.last = Some(progress);
            return Some((Ok(event), w));
        }
    })
}

/// `GET /v1/campaigns/{id}/export?status=failed,expired`: the chosen recipients as CSV, each
/// with what became of it and why, read from the store a page at a time while it is sent.
#[utoipa::path(get, path = "/v1/campaigns/{id}/export", params(("id" = String, Path), ExportQuery),
    responses((status = 200, content_type = "text/csv", body = String), (status = 404, body = crate::problem::ProblemDetails),
        (status = 422, body = crate::problem::ProblemDetails)))]
pub async fn export(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, Problem> {
    let key = app.inner().keys.authorize(&headers, Scope::Read)?;
    let q: ExportQuery = query(request).await?;
    let kinds = export_kinds(q.status.as_deref())?;
    let record = owned(&app, &key, &id).await?;
    Ok(export_download(app.campaigns().clone(), record.id, &kinds))
}

/// The recipients an export's `status` names (`failed,expired` when not given), with the
/// names as written for the file name.
pub(crate) fn export_kinds(status: Option<&str>) -> Result<Vec<(String, ExportKind)>, Problem> {
    let names: Vec<String> = status
        .unwrap_or("failed,expired")
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    let kinds = export::parse_kinds(&names.join(",")).map_err(|e| Problem::invalid_field("status", e))?;
    if kinds.is_empty() {
        return Err(Problem::invalid_field(
            "status",
            "name at least one of failed, expired, cancelled, delivered, pending",
        ));
    }
    Ok(names.into_iter().zip(kinds).collect())
}

/// A CSV download of a campaign's recipients of `kinds`, streamed from the store a page at a
/// time (`campaign-<id>-failed-expired.csv`).
pub(crate) fn export_download(campaigns: Campaigns, id: CampaignId, kinds: &[(String, ExportKind)]) -> Response {
    let names: Vec<&str> = kinds.iter().map(|(n, _)| n.as_str()).collect();
    let filename = format!("campaign-{id}-{}.csv", names.join("-"));
    let body = Body::from_stream(export_stream(campaigns, id, kinds.iter().map(|(_, k)| *k).collect()));
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

struct Exporter {
    campaigns: Campaigns,
    id: CampaignId,
    kinds: Vec<ExportKind>,
    after: Option<u64>,
    header: bool,
    done: bool,
}

fn csv_chunk(write: impl FnOnce(&mut csv::Writer<Vec<u8>>) -> csv::Result<()>) -> std::io::Result<Bytes> {
    let mut out = csv::Writer::from_writer(Vec::new());
    write(&mut out).map_err(std::io::Error::other)?;
    out.into_inner().map(Bytes::from).map_err(|e| std::io::Error::other(e.to_string()))
}

/// The header row, then one chunk per page of [`EXPORT_PAGE`] recipients. A store error ends
/// the body with an error, so the client sees a broken download rather than a short file.
fn export_stream(
    campaigns: Campaigns,
    id: CampaignId,
    kinds: Vec<ExportKind>,
) -> impl Stream<Item = std::io::Result<Bytes>> {
    let e = Exporter { campaigns, id, kinds, after: None, header: false, done: false };
    futures_util::stream::unfold(e, |mut e| async move {
        if !e.header {
            e.header = true;
            return Some((csv_chunk(|w| w.write_record(export::HEADER)), e));
        }
        if e.done {
            return None;
        }
        let filter = export::filter(&e.kinds, e.after, EXPORT_PAGE);
        let page = match e.campaigns.recipients(e.id, &filter).await {
            Ok(page) => page,
            Err(err) => {
                tracing::warn!(campaign = %e.id, error = %err, "an export stopped: the store failed");
                e.done = true;
                return Some((Err(std::io::Error::other(err.to_string())), e));
            }
        };
        e.done = page.len() < EXPORT_PAGE;
        let last = page.last()?.seq;
        e.after = Some(last);
        Some((csv_chunk(|w| export::write_rows(w, &page)), e))
    })
}
