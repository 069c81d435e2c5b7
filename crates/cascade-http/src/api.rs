//! The public API under `/v1`: start, read, list, cancel and watch cascades; upload files.
//!
//! Every handler checks the API key's scope first, then reads and validates the whole request
//! before anything is stored: bad input changes nothing. A key without `admin` sees only the
//! cascades it started (their owner is `key:<name>`); another's answer as unknown ones do.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::str::FromStr;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use cascade_engine::machine::CascadeState;
use cascade_engine::runtime::outcome_report;
use cascade_engine::store::{CascadeMeta, ListFilter, state_name};
use cascade_engine::{
    Attachment, CascadeId, CascadeRequest, ChannelName, Contact, ContentOverride, Event, EventKind, Message, Policy,
    ValidationError,
};
use futures_util::Stream;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use utoipa::ToSchema;

use crate::App;
use crate::auth::{ApiKey, Scope};
use crate::problem::{Problem, ProblemKind, parse_json};
use crate::uploads::{UploadError, guess_media_type};

/// The body of `POST /v1/cascades`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// Who to write to: `name`, `phone` (E.164), `email`, `addresses` (channel → id), `fields`.
    #[schema(value_type = Object)]
    pub contact: Contact,
    /// What to say.
    pub message: MessageBody,
    /// A policy name (from the configuration, or stored with `PUT /v1/policies/{name}`), or an
    /// inline policy `{"steps": [...]}`.
    #[schema(value_type = Object)]
    pub policy: Value,
    /// Objects for templates: `{"deal": {"name": "..."}}` is `{{deal.name}}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: Value,
    /// Where to POST the outcome when the cascade ends (signed with the API key's secret).
    #[serde(default)]
    pub callback_url: Option<String>,
    /// Your data, kept with the cascade and returned with its outcome.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Value,
}

/// The message of a [`StartRequest`].
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageBody {
    /// The text template (`Hi {{contact.name}}`).
    #[serde(default)]
    pub text: String,
    /// One file: an earlier upload, or a URL with its media type and size.
    #[serde(default)]
    pub attachment: Option<AttachmentBody>,
    /// Per-channel content: `{"sms": {"text": "..."}, "viber": {"buttons": [...]}}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub overrides: BTreeMap<ChannelName, ContentOverride>,
}

/// A file to send: `upload_id`, or `url` with `media_type` and `size`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachmentBody {
    /// An id from `POST /v1/uploads`.
    #[serde(default)]
    pub upload_id: Option<String>,
    /// A public `https://` URL of the file.
    #[serde(default)]
    pub url: Option<String>,
    /// Its media type (`image/jpeg`); required with `url`.
    #[serde(default)]
    pub media_type: Option<String>,
    /// Its size in bytes; required with `url`.
    #[serde(default)]
    pub size: Option<u64>,
    /// The file name shown to the contact.
    #[serde(default)]
    pub filename: Option<String>,
}

/// The answer to `POST /v1/cascades`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Started {
    /// The cascade's id.
    pub id: String,
    /// `running` (or, for a repeat, the cascade's state now).
    pub state: String,
    /// Whether this is an earlier cascade returned for a repeated `Idempotency-Key`.
    pub existing: bool,
}

/// `POST /v1/cascades`: validates, stores durably, then starts a cascade.
#[utoipa::path(post, path = "/v1/cascades", request_body = StartRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "A repeat with the same key returns the same cascade")),
    responses((status = 202, body = Started), (status = 400, body = crate::problem::ProblemDetails), (status = 401, body = crate::problem::ProblemDetails),
        (status = 403, body = crate::problem::ProblemDetails), (status = 409, body = crate::problem::ProblemDetails), (status = 413, body = crate::problem::ProblemDetails),
        (status = 415, body = crate::problem::ProblemDetails), (status = 422, body = crate::problem::ProblemDetails), (status = 429, body = crate::problem::ProblemDetails),
        (status = 503, body = crate::problem::ProblemDetails)))]
pub async fn start(
    State(app): State<App>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Problem> {
    let key = app.inner().keys.authorize(&headers, Scope::Send)?;
    require_json(&headers)?;
    let body = body.map_err(body_problem)?;
    let req: StartRequest = parse_json(&body)?;
    let idempotency = idempotency_key(&headers)?;
    let mut request = app.to_cascade_request(req, &key).await?;
    request.idempotency_key = idempotency.map(|k| format!("{}:{k}", key.name()));
    let handle = app.inner().engine.submit(request).await?;
    let existing = handle.is_existing();
    let state = if existing {
        match app.inner().engine.store().load(handle.id()).await? {
            Some(r) => state_name(&r.state).to_owned(),
            None => "running".to_owned(),
        }
    } else {
        "running".to_owned()
    };
    app.inner().metrics.api_started(existing);
    let mut response =
        (StatusCode::ACCEPTED, Json(Started { id: handle.id().to_string(), state, existing })).into_response();
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&format!("/v1/cascades/{}", handle.id())).unwrap_or(HeaderValue::from_static("/")),
    );
    if existing {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

impl App {
    /// Turns a validated API body into an engine request owned by `key`: resolves the policy
    /// name, the upload, and checks the URLs the server would call.
    pub(crate) async fn to_cascade_request(&self, req: StartRequest, key: &ApiKey) -> Result<CascadeRequest, Problem> {
        let mut errors = Vec::new();
        let content = self.resolve_content(req.message, &req.policy, &mut errors).await;
        if let Some(url) = &req.callback_url {
            if key.secret().is_none() {
                errors.push(ValidationError::new(
                    "callback_url",
                    format!("API key {:?} has no callback_secret to sign callbacks with; configure one", key.name()),
                ));
            } else if let Err(e) = self.inner().url_policy.check(url).await {
                errors.push(ValidationError::new("callback_url", e.to_string()));
            }
        }
        if !req.variables.is_null() && !req.variables.is_object() {
            errors.push(ValidationError::new("variables", "must be an object"));
        }
        let Some((message, policy)) = content.filter(|_| errors.is_empty()) else {
            return Err(Problem::invalid(errors));
        };
        let mut request = CascadeRequest::new(req.contact, message, policy);
        request.variables = req.variables;
        request.callback_url = req.callback_url;
        request.metadata = req.metadata;
        request.owner = Some(key.owner());
        Ok(request)
    }

    /// The message and policy of a request: resolves the policy name and the upload, and
    /// checks the file URLs the server or the providers would fetch. What is wrong is added to
    /// `errors` (and `None` returned when either could not be made).
    pub(crate) async fn resolve_content(
        &self,
        message: MessageBody,
        policy: &Value,
        errors: &mut Vec<ValidationError>,
    ) -> Option<(Message, Arc<Policy>)> {
        let inline_policy = policy.is_object();
        let mut policy = match self.resolve_policy(policy) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.extend(e);
                None
            }
        };
        // `None`: the attachment is wrong; `Some(None)`: there is none.
        let attachment = match message.attachment {
            Some(a) => match self.resolve_attachment(a).await {
                Ok(a) => Some(Some(a)),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
            None => Some(None),
        };
        // Every other file URL the request carries is fetched too (by an adapter or a
        // provider): per-channel overrides and, for a policy of its own, its steps' content. A
        // named policy's content comes from the configuration and is trusted like it.
        let mut urls: Vec<(String, &mut String)> = Vec::new();
        let mut overrides = message.overrides;
        for (channel, over) in &mut overrides {
            if let Some(a) = &mut over.attachment {
                urls.push((format!("message.overrides.{channel}.attachment.url"), &mut a.url));
            }
        }
        if inline_policy && let Some(p) = &mut policy {
            for (i, step) in Arc::make_mut(p).steps.iter_mut().enumerate() {
                if let Some(a) = step.content.as_mut().and_then(|c| c.attachment.as_mut()) {
                    urls.push((format!("policy.steps[{i}].content.attachment.url"), &mut a.url));
                }
            }
        }
        let url_policy = self.inner().url_policy;
        let checked = futures_util::future::join_all(urls.iter().map(|(_, url)| url_policy.check(url))).await;
        let mut failed = false;
        for ((field, url), result) in urls.into_iter().zip(checked) {
            match result {
                Ok(checked) => *url = checked.to_string(),
                Err(e) => {
                    failed = true;
                    errors.push(ValidationError::new(field, e.to_string()));
                }
            }
        }
        let (attachment, policy) = (attachment?, policy?);
        (!failed).then_some((Message { text: message.text, attachment, overrides }, policy))
    }

    pub(crate) fn resolve_policy(&self, value: &Value) -> Result<Arc<Policy>, Vec<ValidationError>> {
        match value {
            Value::String(name) => self.policies().resolve(name).ok_or_else(|| {
                let known = self.policies().names();
                vec![ValidationError::new(
                    "policy",
                    format!(
                        "no policy named {name:?}; configured: {}",
                        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                    ),
                )]
            }),
            Value::Object(_) => {
                crate::problem::from_value_at::<Policy>("policy", value.clone()).map(Arc::new).map_err(|e| vec![e])
            }
            _ => Err(vec![ValidationError::new("policy", "must be a policy name or an object with `steps`")]),
        }
    }

    async fn resolve_attachment(&self, a: AttachmentBody) -> Result<Attachment, ValidationError> {
        const F: &str = "message.attachment";
        match (a.upload_id, a.url) {
            (Some(id), None) => {
                let uploads = self.inner().uploads.as_ref().ok_or_else(|| {
                    ValidationError::new(format!("{F}.upload_id"), "uploads are not enabled on this server")
                })?;
                let missing = || ValidationError::new(format!("{F}.upload_id"), format!("no upload {id:?}"));
                // Marked in use before the link is made, so the link finds it for its lifetime.
                let info = uploads.take(&id).await.ok_or_else(missing)?;
                Ok(Attachment {
                    url: self.file_url(&id),
                    media_type: a.media_type.unwrap_or(info.media_type),
                    size: info.size,
                    filename: a.filename.or(info.filename),
                })
            }
            (None, Some(url)) => {
                let checked = self
                    .inner()
                    .url_policy
                    .check(&url)
                    .await
                    .map_err(|e| ValidationError::new(format!("{F}.url"), e.to_string()))?;
                let media_type = a
                    .media_type
                    .ok_or_else(|| ValidationError::new(format!("{F}.media_type"), "required with `url`"))?;
                let size = a.size.ok_or_else(|| ValidationError::new(format!("{F}.size"), "required with `url`"))?;
                Ok(Attachment { url: checked.to_string(), media_type, size, filename: a.filename })
            }
            (Some(_), Some(_)) => Err(ValidationError::new(F, "give either `upload_id` or `url`, not both")),
            (None, None) => Err(ValidationError::new(F, "needs `upload_id` or `url`")),
        }
    }

    /// A signed, expiring link to an upload under the public URL.
    pub fn file_url(&self, id: &str) -> String {
        let expires = chrono::Utc::now().timestamp() + self.inner().link_ttl.as_secs() as i64;
        let query = self.inner().uploads.as_ref().map(|u| u.sign(id, expires)).unwrap_or_default();
        let base = self.inner().public_url.as_str().trim_end_matches('/');
        format!("{base}/files/{id}?{query}")
    }
}

pub(crate) fn require_json(headers: &HeaderMap) -> Result<(), Problem> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json")) {
        Ok(())
    } else {
        Err(Problem::new(
            ProblemKind::UnsupportedMediaType,
            format!(
                "send the body as `Content-Type: application/json`, not {:?}",
                if ct.is_empty() { "nothing" } else { ct }
            ),
        )
        .field("Content-Type"))
    }
}

/// The answer to a body that could not be read: the limit it passed (`413`) or the time it
/// took (`408`), as [`limits`](crate::limits) found, else a `400`.
pub(crate) fn body_problem(e: axum::extract::rejection::BytesRejection) -> Problem {
    if let Some(limit) = crate::limits::BodyError::find(&e) {
        limit.problem()
    } else if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::new(ProblemKind::PayloadTooLarge, "the body is larger than this server accepts")
    } else {
        Problem::new(ProblemKind::MalformedBody, format!("the body could not be read: {e}"))
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(v) = headers.get("idempotency-key") else { return Ok(None) };
    let bad = || Problem::invalid_field("Idempotency-Key", "must be 1 to 255 visible ASCII characters");
    let s = v.to_str().map_err(|_| bad())?.trim();
    if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(s.to_owned()))
}

fn parse_id(id: &str) -> Result<CascadeId, Problem> {
    id.parse().map_err(|_| Problem::not_found(format!("no cascade {id:?} (ids are UUIDs)")))
}

/// The full view of a cascade: its outcome report, the contact, the plan and the timeline.
fn cascade_json(state: &CascadeState, meta: &CascadeMeta, events: Option<&[Event]>) -> Value {
    let mut v = outcome_report(state, meta);
    if let Value::Object(m) = &mut v {
        m.insert("id".into(), json!(state.id));
        m.insert("contact".into(), json!(meta.contact));
        let steps: Vec<Value> = state
            .plan
            .steps
            .iter()
            .map(|s| {
                json!({
                    "channel": s.channel,
                    "until": s.until,
                    "timeout": cascade_engine::model::duration::format(s.timeout),
                    "skip": s.skip,
                })
            })
            .collect();
        m.insert("steps".into(), Value::Array(steps));
        m.insert("expires_at".into(), json!(state.plan.expires_at));
        if let Some(events) = events {
            m.insert("events".into(), json!(events));
        }
    }
    v
}

/// `GET /v1/cascades/{id}`: the state, outcome, every attempt with its statuses, errors and
/// cost, and the timeline. Another key's cascade is a 404, as an unknown one (but for `admin`).
#[utoipa::path(get, path = "/v1/cascades/{id}", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 401, body = crate::problem::ProblemDetails), (status = 404, body = crate::problem::ProblemDetails)))]
pub async fn get_one(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, Problem> {
    let key = app.inner().keys.authorize(&headers, Scope::Read)?;
    let id = parse_id(&id)?;
    let view = app.inner().engine.get(id).await?.filter(|v| key.may_see(v.record.meta.owner.as_deref()));
    let view = view.ok_or_else(|| no_cascade(id))?;
    Ok(Json(cascade_json(&view.record.state, &view.record.meta, Some(&view.events))).into_response())
}

/// The answer for a cascade that does not exist or that the key may not see: the same for
/// both, so a key cannot tell another key's cascade ids from unknown ones.
fn no_cascade(id: CascadeId) -> Problem {
    Problem::not_found(format!("no cascade {id}"))
}

/// The query of `GET /v1/cascades`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `running`, `delivered`, `failed`, `cancelled` or `expired`.
    pub state: Option<String>,
    /// Only cascades whose policy uses this channel.
    pub channel: Option<String>,
    /// Only cascades created at or after this RFC 3339 time.
    pub since: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<usize>,
}

/// `GET /v1/cascades`: newest first, filtered, paged by cursor; the key's own cascades only,
/// unless it has `admin`.
#[utoipa::path(get, path = "/v1/cascades", params(ListQuery),
    responses((status = 200, body = Object), (status = 401, body = crate::problem::ProblemDetails), (status = 422, body = crate::problem::ProblemDetails)))]
pub async fn list(State(app): State<App>, headers: HeaderMap, request: Request) -> Result<Response, Problem> {
    let key = app.inner().keys.authorize(&headers, Scope::Read)?;
    let q: ListQuery = query(request).await?;
    let mut errors = Vec::new();
    const STATES: [&str; 5] = ["running", "delivered", "failed", "cancelled", "expired"];
    if let Some(s) = &q.state
        && !STATES.contains(&s.as_str())
    {
        errors.push(ValidationError::new("state", format!("must be one of {}", STATES.join(", "))));
    }
    let since = match q.since.as_deref().map(chrono::DateTime::parse_from_rfc3339) {
        Some(Ok(t)) => Some(t.with_timezone(&chrono::Utc)),
        Some(Err(e)) => {
            errors.push(ValidationError::new(
                "since",
                format!("must be an RFC 3339 time such as 2026-01-31T09:00:00Z ({e})"),
            ));
            None
        }
        None => None,
    };
    let Page { before, limit } = Page::<CascadeId>::parse(q.cursor.as_deref(), q.limit, 50, 200, &mut errors);
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let filter = ListFilter {
        state: q.state,
        channel: q.channel.map(ChannelName::from),
        since,
        before,
        owner: (!key.sees_all()).then(|| key.owner()),
        limit,
    };
    let records = app.inner().engine.store().list(&filter).await?;
    let next = next_cursor(&records, limit, |r| r.id().to_string());
    let items: Vec<Value> = records.iter().map(|r| cascade_json(&r.state, &r.meta, None)).collect();
    Ok(Json(json!({"items": items, "next_cursor": next})).into_response())
}

/// The query string of a request, or a `422` quoting what is wrong with it.
pub(crate) async fn query<Q: DeserializeOwned>(request: Request) -> Result<Q, Problem> {
    let Query(q) = Query::<Q>::from_request(request, &())
        .await
        .map_err(|e| Problem::new(ProblemKind::InvalidRequest, format!("bad query string: {}", e.body_text())))?;
    Ok(q)
}

/// One page of a list paged by cursor: the items before `before` (the last id of the page
/// before), at most `limit` of them.
#[derive(Debug)]
pub(crate) struct Page<C> {
    pub(crate) before: Option<C>,
    pub(crate) limit: usize,
}

impl<C: FromStr> Page<C> {
    /// Reads a `cursor` and a `limit` (1 to `max`, `default` when not given); what is wrong
    /// with them is added to `errors`.
    pub(crate) fn parse(
        cursor: Option<&str>,
        limit: Option<usize>,
        default: usize,
        max: usize,
        errors: &mut Vec<ValidationError>,
    ) -> Self {
        let before = match cursor.map(str::parse::<C>) {
            Some(Ok(id)) => Some(id),
            Some(Err(_)) => {
                errors.push(ValidationError::new("cursor", "not a cursor this API gave"));
                None
            }
            None => None,
        };
        let limit = limit.unwrap_or(default);
        if !(1..=max).contains(&limit) {
            errors.push(ValidationError::new("limit", format!("must be 1 to {max}")));
        }
        Self { before, limit }
    }
}

/// The cursor of the page after `items`: the last item's id when the page is full (`limit`).
pub(crate) fn next_cursor<T>(items: &[T], limit: usize, id: impl FnOnce(&T) -> String) -> Option<String> {
    items.last().filter(|_| items.len() == limit).map(id)
}

/// `POST /v1/cascades/{id}/cancel`: stops a running cascade the key started (any, for `admin`).
#[utoipa::path(post, path = "/v1/cascades/{id}/cancel", params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 401, body = crate::problem::ProblemDetails), (status = 404, body = crate::problem::ProblemDetails)))]
pub async fn cancel(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, Problem> {
    let key = app.inner().keys.authorize(&headers, Scope::Send)?;
    let id = parse_id(&id)?;
    // Whose it is is checked before anything changes (the owner of a cascade never changes);
    // an `admin` key may cancel any, so the engine's answer is enough for it.
    if !key.sees_all() {
        let record = app.inner().engine.store().load(id).await?;
        if !record.is_some_and(|r| key.may_see(r.meta.owner.as_deref())) {
            return Err(no_cascade(id));
        }
    }
    let cancelled = app.inner().engine.cancel(id).await?;
    let state = if cancelled {
        "cancelled"
    } else {
        // It had ended already: how.
        let record = app.inner().engine.store().load(id).await?.ok_or_else(|| no_cascade(id))?;
        state_name(&record.state)
    };
    Ok(Json(json!({"id": id, "cancelled": cancelled, "state": state})).into_response())
}

/// `GET /v1/cascades/{id}/events`: the timeline so far, then each new entry live, as
/// Server-Sent Events (`event:` is the entry's `type`); the stream ends with `finished`.
#[utoipa::path(get, path = "/v1/cascades/{id}/events", params(("id" = String, Path)),
    responses((status = 200, content_type = "text/event-stream", body = String), (status = 404, body = crate::problem::ProblemDetails)))]
pub async fn events(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, Problem> {
    let key = app.inner().keys.authorize(&headers, Scope::Read)?;
    let id = parse_id(&id)?;
    // Subscribe before reading, so nothing between the read and the subscription is missed.
    let rx = app.inner().engine.subscribe(id);
    let view = app.inner().engine.get(id).await?.filter(|v| key.may_see(v.record.meta.owner.as_deref()));
    let view = view.ok_or_else(|| no_cascade(id))?;
    let done = view.record.state.is_finished();
    let stream = timeline_stream(view.events, rx, done, app.inner().shutdown.subscribe());
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

struct Timeline {
    backlog: VecDeque<Event>,
    seen: Vec<Event>,
    rx: broadcast::Receiver<Event>,
    done: bool,
    n: usize,
    stop: tokio::sync::watch::Receiver<bool>,
}

fn timeline_stream(
    stored: Vec<Event>,
    rx: broadcast::Receiver<Event>,
    done: bool,
    stop: tokio::sync::watch::Receiver<bool>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let t = Timeline { backlog: stored.clone().into(), seen: stored, rx, done, n: 0, stop };
    futures_util::stream::unfold(t, |mut t| async move {
        let event = match t.backlog.pop_front() {
            Some(e) => e,
            None if t.done => return None,
            None => loop {
                let received = tokio::select! {
                    r = t.rx.recv() => r,
                    // The server is stopping: end the stream so shutdown is not held open.
                    _ = t.stop.wait_for(|stopping| *stopping) => return None,
                };
                match received {
                    Ok(e) if t.seen.contains(&e) => {}
                    Ok(e) => break e,
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            },
        };
        if matches!(event.kind, EventKind::Finished { .. }) {
            t.done = true;
            t.backlog.clear();
        }
        let data = serde_json::to_value(&event).unwrap_or(Value::Null);
        let name = data.get("type").and_then(Value::as_str).unwrap_or("event").to_owned();
        let sse = SseEvent::default().event(name).id(t.n.to_string()).data(data.to_string());
        t.n += 1;
        Some((Ok(sse), t))
    })
}

/// The query of `GET /v1/callbacks/dead`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeadQuery {
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 100).
    pub limit: Option<usize>,
}

/// `GET /v1/callbacks/dead`: callbacks given up on (admin), newest first, paged by cursor.
#[utoipa::path(get, path = "/v1/callbacks/dead", params(DeadQuery),
    responses((status = 200, body = Object), (status = 401, body = crate::problem::ProblemDetails), (status = 403, body = crate::problem::ProblemDetails),
        (status = 422, body = crate::problem::ProblemDetails)))]
pub async fn dead_callbacks(State(app): State<App>, headers: HeaderMap, request: Request) -> Result<Response, Problem> {
    app.inner().keys.authorize(&headers, Scope::Admin)?;
    let q: DeadQuery = query(request).await?;
    let mut errors = Vec::new();
    let Page { before, limit } = Page::<u64>::parse(q.cursor.as_deref(), q.limit, 100, 500, &mut errors);
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let items = app.inner().engine.store().dead_letters(before, limit).await?;
    let next = next_cursor(&items, limit, |i| i.id.to_string());
    Ok(Json(json!({"items": items, "next_cursor": next})).into_response())
}

/// The answer to `POST /v1/uploads`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Uploaded {
    /// What was stored.
    #[serde(flatten)]
    pub info: crate::uploads::UploadInfo,
    /// A signed link to it, as providers will fetch it.
    pub url: String,
}

/// `POST /v1/uploads`: a `multipart/form-data` body with one part named `file`, streamed to
/// disk. Answers `201` with the `upload_id` to use in `message.attachment`.
#[utoipa::path(post, path = "/v1/uploads", request_body(content_type = "multipart/form-data", content = String),
    responses((status = 201, body = Uploaded), (status = 413, body = crate::problem::ProblemDetails), (status = 415, body = crate::problem::ProblemDetails)))]
pub async fn upload(State(app): State<App>, headers: HeaderMap, request: Request) -> Result<Response, Problem> {
    app.inner().keys.authorize(&headers, Scope::Send)?;
    let uploads = app
        .inner()
        .uploads
        .clone()
        .ok_or_else(|| Problem::not_found("uploads are not enabled on this server (set server.upload_dir)"))?;
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("multipart/form-data") {
        return Err(Problem::new(
            ProblemKind::UnsupportedMediaType,
            "send the file as multipart/form-data with a part named `file`",
        )
        .field("Content-Type"));
    }
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| Problem::new(ProblemKind::MalformedBody, e.body_text()))?;
    let too_large = || {
        Problem::new(
            ProblemKind::PayloadTooLarge,
            format!("the file is larger than the {}-byte limit (server.max_upload)", uploads.max_size()),
        )
        .field("file")
    };
    loop {
        let field = multipart.next_field().await.map_err(|e| multipart_problem(e, &too_large))?;
        let Some(mut field) = field else {
            return Err(Problem::invalid_field("file", "the form has no part named `file`"));
        };
        if field.name() != Some("file") {
            continue;
        }
        let filename = field.file_name().map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n).to_owned());
        let declared = field.content_type().map(str::to_owned).filter(|t| t != "application/octet-stream");
        let media_type = declared.unwrap_or_else(|| guess_media_type(filename.as_deref()).to_owned());
        let mut writer = uploads.begin().await.map_err(upload_problem)?;
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    if let Err(e) = writer.write(&chunk).await {
                        writer.abort().await;
                        return Err(match e {
                            UploadError::TooLarge(_) => too_large(),
                            e => upload_problem(e),
                        });
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    writer.abort().await;
                    return Err(multipart_problem(e, &too_large));
                }
            }
        }
        let info = uploads.finish(writer, filename, media_type).await.map_err(upload_problem)?;
        let url = app.file_url(&info.upload_id);
        return Ok((StatusCode::CREATED, Json(Uploaded { info, url })).into_response());
    }
}

fn multipart_problem(e: axum::extract::multipart::MultipartError, too_large: &dyn Fn() -> Problem) -> Problem {
    if let Some(limit @ crate::limits::BodyError::TimedOut { .. }) = crate::limits::BodyError::find(&e) {
        limit.problem()
    } else if e.status() == StatusCode::PAYLOAD_TOO_LARGE
        || matches!(crate::limits::BodyError::find(&e), Some(crate::limits::BodyError::TooLarge { .. }))
    {
        too_large()
    } else {
        Problem::new(ProblemKind::MalformedBody, e.body_text())
    }
}

fn upload_problem(e: UploadError) -> Problem {
    tracing::warn!(error = %e, "upload failed");
    Problem::unavailable(e.to_string())
}

/// The query of a signed file link.
#[derive(Debug, Deserialize)]
pub struct FileQuery {
    expires: i64,
    sig: String,
}

/// `GET /files/{id}?expires=…&sig=…`: an upload, for providers that fetch by URL.
pub async fn file(
    State(app): State<App>,
    Path(id): Path<String>,
    query: Result<Query<FileQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let uploads = app.inner().uploads.as_ref().ok_or_else(|| Problem::not_found("no such file"))?;
    let Ok(Query(q)) = query else {
        return Err(Problem::new(ProblemKind::Forbidden, "this link needs its `expires` and `sig`"));
    };
    if !uploads.verify(&id, q.expires, &q.sig, chrono::Utc::now().timestamp()) {
        return Err(Problem::new(ProblemKind::Forbidden, "the link is invalid or has expired"));
    }
    let info = uploads.info(&id).await.ok_or_else(|| Problem::not_found("no such file"))?;
    let file = tokio::fs::File::open(uploads.path(&id)).await.map_err(|_| Problem::not_found("no such file"))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let mut response = Response::new(body);
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&info.media_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(info.size));
    if let Some(name) = info.filename.as_deref()
        && let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{}\"", name.replace(['"', '\\'], "_")))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
