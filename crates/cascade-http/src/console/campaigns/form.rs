//! The form that creates a campaign: a name, a CSV file, a policy, the message with its
//! per-channel content, the schedule and the rate. **Check** runs the API's dry run (valid,
//! invalid and duplicate counts, the invalid rows with their lines, the message rendered for
//! the first recipients); **Create** creates the campaign and shows it.
//!
//! The form is read into the API's own [`CreateCampaign`] and goes through the same checks as
//! `POST /v1/campaigns` ([`App::check_campaign`]). The file is stored as an upload the moment
//! it arrives, and the form carries the upload's id from then on: a browser cannot fill a file
//! input in again, so **Create** after **Check** needs no second upload.
//!
//! The post is `multipart/form-data` with the form's token before the file (browsers send
//! fields in the order of the page): the token and the key's `send` scope are checked before
//! anything is stored. Its size is bounded here rather than by the router's body limit: the
//! file by the upload limit as it is written to disk, the other fields together by the JSON
//! body limit.

use std::collections::BTreeMap;

use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, get};
use cascade_campaigns::schedule::parse_zone;
use cascade_engine::{Attachment, Button, ChannelName, ContentOverride, Timestamp, ValidationError};
use chrono::TimeZone;
use minijinja::context;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::super::session::Session;
use super::super::{PageError, render};
use crate::App;
use crate::api::MessageBody;
use crate::auth::Scope;
use crate::campaigns::CreateCampaign;
use crate::uploads::{UploadError, guess_media_type};

/// The most parts a post may have (the form has a few dozen fields).
const MAX_PARTS: usize = 200;
/// The channel whose image and button the form asks for.
const VIBER: &str = "viber";

/// `GET` and `POST /console/campaigns/new`, the post without the router's body limit (see the
/// module's documentation).
pub(crate) fn routes() -> MethodRouter<App> {
    get(new).post(create).layer(DefaultBodyLimit::disable())
}

/// What the form holds, as typed.
#[derive(Debug, Serialize)]
struct CampaignForm {
    name: String,
    policy: String,
    text: String,
    /// The text on each channel, where it differs (`text.sms`).
    texts: BTreeMap<String, String>,
    viber_image: String,
    viber_caption: String,
    viber_url: String,
    start_at: String,
    end_at: String,
    /// `utc`, or `zone` when the dates are in the campaign's time zone.
    dates_in: String,
    window: String,
    time_zone: String,
    recipient_time_zone: bool,
    rate: String,
    region: String,
    /// The list, once stored: an upload's id, and the file's name (from the upload).
    upload: String,
    upload_name: String,
}

impl Default for CampaignForm {
    fn default() -> Self {
        Self {
            name: String::new(),
            policy: String::new(),
            text: String::new(),
            texts: BTreeMap::new(),
            viber_image: String::new(),
            viber_caption: String::new(),
            viber_url: String::new(),
            start_at: String::new(),
            end_at: String::new(),
            dates_in: "utc".to_owned(),
            window: String::new(),
            time_zone: "UTC".to_owned(),
            recipient_time_zone: false,
            rate: String::new(),
            region: String::new(),
            upload: String::new(),
            upload_name: String::new(),
        }
    }
}

impl CampaignForm {
    /// Takes one posted field.
    fn set(&mut self, name: &str, value: String) {
        match name {
            "name" => self.name = value,
            "policy" => self.policy = value,
            "text" => self.text = value,
            "viber_image" => self.viber_image = value.trim().to_owned(),
            "viber_caption" => self.viber_caption = value,
            "viber_url" => self.viber_url = value.trim().to_owned(),
            "start_at" => self.start_at = value.trim().to_owned(),
            "end_at" => self.end_at = value.trim().to_owned(),
            "dates_in" => self.dates_in = value,
            "window" => self.window = value.trim().to_owned(),
            "time_zone" => self.time_zone = value.trim().to_owned(),
            "recipient_time_zone" => self.recipient_time_zone = true,
            "rate" => self.rate = value.trim().to_owned(),
            "region" => self.region = value.trim().to_owned(),
            "upload" => self.upload = value.trim().to_owned(),
            other => {
                if let Some(channel) = other.strip_prefix("text.").filter(|c| !c.is_empty()) {
                    self.texts.insert(channel.to_owned(), value);
                }
            }
        }
    }
}

/// A problem with the form: the field it is about (to mark it) and what to say.
#[derive(Debug)]
struct FormError {
    field: String,
    text: String,
}

impl FormError {
    fn new(field: &str, label: &str, message: impl std::fmt::Display) -> Self {
        Self { field: field.to_owned(), text: format!("{label}: {message}") }
    }

    /// A problem the API's checks found, named by the form's field.
    fn from_api(e: &ValidationError) -> Self {
        let f = e.field.as_str();
        let (field, label) = match f {
            "name" => ("name".to_owned(), "Name".to_owned()),
            "message.text" => ("text".to_owned(), "Message".to_owned()),
            "schedule.start_at" => ("start_at".to_owned(), "Start at".to_owned()),
            "schedule.end_at" => ("end_at".to_owned(), "End at".to_owned()),
            "schedule.window" => ("window".to_owned(), "Daily window".to_owned()),
            "schedule.time_zone" => ("time_zone".to_owned(), "Time zone".to_owned()),
            "rate" => ("rate".to_owned(), "Rate".to_owned()),
            "region" => ("region".to_owned(), "Region".to_owned()),
            f if f == "policy" || f.starts_with("policy.") => ("policy".to_owned(), "Policy".to_owned()),
            f if f.starts_with("schedule") => ("window".to_owned(), "Schedule".to_owned()),
            f if f.starts_with("recipients") || f == "format" => ("list".to_owned(), "CSV file".to_owned()),
            f if f.starts_with("message.overrides.viber.attachment") => {
                ("viber_image".to_owned(), "Viber image".to_owned())
            }
            f if f.starts_with("message.overrides.viber.buttons") => {
                ("viber_url".to_owned(), "Viber button".to_owned())
            }
            f if f.starts_with("message.overrides.") => {
                let rest = &f["message.overrides.".len()..];
                match rest.split_once('.') {
                    Some((channel, _)) => (format!("text.{channel}"), format!("Text on {channel}")),
                    None => (format!("text.{rest}"), format!("Content on {rest}")),
                }
            }
            "" => (String::new(), "Campaign".to_owned()),
            other => (other.to_owned(), other.to_owned()),
        };
        Self { field, text: format!("{label}: {}", e.message) }
    }
}

/// A policy in the form's select, with the channels it uses (space-separated).
#[derive(Debug, Serialize)]
struct PolicyOption {
    name: String,
    channels: String,
}

/// The content fields of one channel, with what was typed in them.
#[derive(Debug, Serialize)]
struct ChannelFields {
    name: String,
    text: String,
}

/// Renders the form with what was typed, its problems and the list's report.
fn page(
    app: &App,
    session: &Session,
    form: &CampaignForm,
    errors: &[FormError],
    report: Option<Value>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let mut channels: Vec<String> = Vec::new();
    let mut policies = Vec::new();
    for name in app.policies().names() {
        let used: Vec<String> = app
            .policies()
            .resolve(&name)
            .map(|p| p.steps.iter().map(|s| s.channel.to_string()).collect())
            .unwrap_or_default();
        for c in &used {
            if !channels.contains(c) {
                channels.push(c.clone());
            }
        }
        policies.push(PolicyOption { name, channels: used.join(" ") });
    }
    if !channels.iter().any(|c| c == VIBER) {
        channels.push(VIBER.to_owned());
    }
    let uploads = app.inner().uploads.as_ref();
    let mut page = render(
        "campaign_new.html",
        context! {
            ..session.page("campaigns", "New campaign"),
            ..context! {
                form => form,
                policies => policies,
                channels => channels
                    .iter()
                    .map(|c| ChannelFields { text: form.texts.get(c).cloned().unwrap_or_default(), name: c.clone() })
                    .collect::<Vec<_>>(),
                zones => chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()).collect::<Vec<_>>(),
                errors => errors.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(),
                invalid => errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(),
                report => report,
                uploads => uploads.is_some(),
                max_upload => uploads.map(|u| u.max_size()),
            }
        },
    )?;
    *page.status_mut() = status;
    Ok(page)
}

/// `GET /console/campaigns/new`: an empty form.
pub(crate) async fn new(State(app): State<App>, session: Session) -> Result<Response, PageError> {
    session.require(Scope::Send)?;
    let names = app.policies().names();
    let policy = if names.iter().any(|n| n == "default") {
        "default".to_owned()
    } else {
        names.first().cloned().unwrap_or_default()
    };
    page(&app, &session, &CampaignForm { policy, ..CampaignForm::default() }, &[], None, StatusCode::OK)
}

/// What a post held.
#[derive(Debug, Default)]
struct Posted {
    form: CampaignForm,
    csrf: Option<String>,
    /// `check` or `create`.
    action: String,
    /// A problem with the file, shown on the form.
    file_error: Option<String>,
    /// Whether a file came with this post.
    new_file: bool,
}

/// Reads the post: the fields as they come, the file into an upload once the token before it
/// was checked.
async fn read(app: &App, session: &Session, headers: &HeaderMap, request: Request) -> Result<Posted, PageError> {
    let bad = |e: axum::extract::multipart::MultipartError| match crate::limits::BodyError::find(&e) {
        // Past the upload limit, or too slow (`server.upload_timeout`).
        Some(limit) => PageError::from(limit.problem()),
        None => PageError::new(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| PageError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let uploads = app.inner().uploads.clone();
    let max_body = app.inner().max_body;
    let max_total =
        usize::try_from(uploads.as_ref().map_or(0, |u| u.max_size())).unwrap_or(usize::MAX).saturating_add(max_body);
    let too_large = || PageError::new(StatusCode::PAYLOAD_TOO_LARGE, "the form is larger than this server accepts");
    let (mut text_bytes, mut total, mut parts) = (0usize, 0usize, 0usize);
    let mut p = Posted::default();
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        parts += 1;
        if parts > MAX_PARTS {
            return Err(too_large());
        }
        let name = field.name().unwrap_or_default().to_owned();
        if name == "list" {
            let filename = field.file_name().map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n).to_owned());
            let Some(filename) = filename.filter(|n| !n.is_empty()) else {
                // No file chosen: the part is empty.
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    total += chunk.len();
                    if total > max_total {
                        return Err(too_large());
                    }
                }
                continue;
            };
            // Nothing is stored for a form from elsewhere, or for a key that may not send.
            session.check_form(headers, p.csrf.as_deref().unwrap_or_default())?;
            session.require(Scope::Send)?;
            let Some(uploads) = &uploads else {
                p.file_error = Some("uploads are not enabled on this server (set server.upload_dir)".to_owned());
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    total += chunk.len();
                    if total > max_total {
                        return Err(too_large());
                    }
                }
                continue;
            };
            let declared = field.content_type().map(str::to_owned).filter(|t| t != "application/octet-stream");
            let media_type = declared.unwrap_or_else(|| guess_media_type(Some(&filename)).to_owned());
            let mut writer = uploads.begin().await.map_err(upload_failed)?;
            let mut failed = None;
            while let Some(chunk) = field.chunk().await.map_err(bad)? {
                total += chunk.len();
                if total > max_total {
                    writer.abort().await;
                    return Err(too_large());
                }
                if failed.is_none()
                    && let Err(e) = writer.write(&chunk).await
                {
                    failed = Some(e);
                }
            }
            match failed {
                None => {
                    let info = uploads.finish(writer, Some(filename), media_type).await.map_err(upload_failed)?;
                    p.form.upload = info.upload_id;
                    p.form.upload_name = info.filename.unwrap_or_default();
                    p.new_file = true;
                }
                Some(UploadError::TooLarge(limit)) => {
                    writer.abort().await;
                    p.file_error = Some(format!("{filename} is larger than the {limit}-byte limit"));
                }
                Some(e) => {
                    writer.abort().await;
                    return Err(upload_failed(e));
                }
            }
            continue;
        }
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(bad)? {
            text_bytes += chunk.len();
            total += chunk.len();
            if text_bytes > max_body || total > max_total {
                return Err(too_large());
            }
            value.extend_from_slice(&chunk);
        }
        let value = String::from_utf8(value)
            .map_err(|_| PageError::new(StatusCode::BAD_REQUEST, format!("the field {name:?} is not UTF-8 text")))?;
        match name.as_str() {
            "csrf" => p.csrf = Some(value),
            "action" => p.action = value,
            // A new file replaces the one kept, whichever part came first.
            "upload" if p.new_file => {}
            _ => p.form.set(&name, value),
        }
    }
    if !p.form.upload.is_empty()
        && p.form.upload_name.is_empty()
        && let Some(info) = match &uploads {
            Some(u) => u.info(&p.form.upload).await,
            None => None,
        }
    {
        p.form.upload_name = info.filename.unwrap_or_default();
    }
    Ok(p)
}

fn upload_failed(e: UploadError) -> PageError {
    tracing::warn!(error = %e, "a campaign list could not be stored");
    PageError::new(StatusCode::SERVICE_UNAVAILABLE, format!("the file could not be stored: {e}"))
}

/// `POST /console/campaigns/new`: **Check** shows the list's report; **Create** creates the
/// campaign and goes to its page. Problems are shown on the form, each naming its field.
pub(crate) async fn create(
    State(app): State<App>,
    session: Session,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, PageError> {
    let posted = read(&app, &session, &headers, request).await?;
    session.check_form(&headers, posted.csrf.as_deref().unwrap_or_default())?;
    session.require(Scope::Send)?;
    let Posted { form, action, file_error, .. } = posted;
    let (req, mut errors) = request_of(&form);
    if let Some(e) = file_error {
        errors.push(FormError::new("list", "CSV file", e));
    } else if form.upload.is_empty() {
        errors.push(FormError::new("list", "CSV file", "choose the list of recipients to send to"));
    }
    let invalid = |errors: &[FormError]| page(&app, &session, &form, errors, None, StatusCode::UNPROCESSABLE_ENTITY);
    let checked = match app.check_campaign(req).await {
        Ok(c) if errors.is_empty() => c,
        Ok(_) => return invalid(&errors),
        Err(p) => {
            // The list's absence is said once, in the form's words.
            let listed = errors.iter().any(|e| e.field == "list");
            errors.extend(p.errors.iter().map(FormError::from_api).filter(|e| !(listed && e.field == "list")));
            if errors.is_empty() {
                errors.push(FormError::new("", "Campaign", &p.detail));
            }
            return invalid(&errors);
        }
    };
    if action != "create" {
        return match app.dry_run_campaign(checked).await {
            Ok(report) => page(&app, &session, &form, &[], serde_json::to_value(report).ok(), StatusCode::OK),
            Err(p) => {
                let mut errors: Vec<FormError> = p.errors.iter().map(FormError::from_api).collect();
                if errors.is_empty() {
                    errors.push(FormError::new("list", "CSV file", &p.detail));
                }
                invalid(&errors)
            }
        };
    }
    match app.create_campaign(checked, session.key()).await {
        Ok((record, _)) => Ok(Redirect::to(&format!("/console/campaigns/{}", record.id)).into_response()),
        Err(p) if p.status == 422 => {
            let errors: Vec<FormError> = p.errors.iter().map(FormError::from_api).collect();
            page(&app, &session, &form, &errors, p.report.clone(), StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(p) => Err(p.into()),
    }
}

/// The API request the form describes, and what is wrong with the form itself (dates that are
/// not dates, half a button).
fn request_of(form: &CampaignForm) -> (CreateCampaign, Vec<FormError>) {
    let mut errors = Vec::new();
    let mut overrides: BTreeMap<ChannelName, ContentOverride> = BTreeMap::new();
    for (channel, text) in &form.texts {
        if !text.trim().is_empty() {
            overrides.entry(ChannelName::from(channel.as_str())).or_default().text = Some(text.clone());
        }
    }
    if !form.viber_image.is_empty() {
        // Viber fetches the picture from its URL; its size is not known here.
        let guessed = guess_media_type(Some(form.viber_image.split(['?', '#']).next().unwrap_or_default()));
        let media_type = if guessed.starts_with("image/") { guessed } else { "image/jpeg" };
        let attachment =
            Attachment { url: form.viber_image.clone(), media_type: media_type.to_owned(), size: 0, filename: None };
        overrides.entry(ChannelName::from(VIBER)).or_default().attachment = Some(attachment);
    }
    match (form.viber_caption.trim(), form.viber_url.as_str()) {
        ("", "") => {}
        (caption, url) if !caption.is_empty() && !url.is_empty() => {
            let button = Button { caption: caption.to_owned(), url: url.to_owned() };
            overrides.entry(ChannelName::from(VIBER)).or_default().buttons = vec![button];
        }
        ("", _) => errors.push(FormError::new("viber_caption", "Viber button", "give the button a caption too")),
        _ => errors.push(FormError::new("viber_url", "Viber button", "give the button a URL too")),
    }

    let mut schedule = Map::new();
    let zone = parse_zone(&form.time_zone);
    let dates_zone = if form.dates_in == "zone" { zone.unwrap_or(chrono_tz::UTC) } else { chrono_tz::UTC };
    for (field, label, value) in [("start_at", "Start at", &form.start_at), ("end_at", "End at", &form.end_at)] {
        match instant(value, dates_zone) {
            Ok(Some(t)) => {
                schedule.insert(field.into(), json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
            }
            Ok(None) => {}
            Err(e) => errors.push(FormError::new(field, label, e)),
        }
    }
    if !form.window.is_empty() {
        schedule.insert("window".into(), json!(form.window));
    }
    if !form.time_zone.is_empty() {
        // The canonical name when it is one by another spelling; else as typed, for the check
        // to name.
        schedule.insert("time_zone".into(), json!(zone.map_or(form.time_zone.clone(), |z| z.name().to_owned())));
    }
    if form.recipient_time_zone {
        schedule.insert("recipient_time_zone".into(), json!(true));
    }

    let req = CreateCampaign {
        name: form.name.clone(),
        message: MessageBody { text: form.text.clone(), attachment: None, overrides },
        policy: Value::String(form.policy.clone()),
        variables: Value::Null,
        schedule: Value::Object(schedule),
        rate: if form.rate.is_empty() { Value::Null } else { Value::String(form.rate.clone()) },
        region: (!form.region.is_empty()).then(|| form.region.clone()),
        format: None,
        metadata: Value::Null,
        recipients: if form.upload.is_empty() { Value::Null } else { json!({ "upload_id": form.upload }) },
        dry_run: false,
    };
    (req, errors)
}

/// A `datetime-local` value (`2026-06-01T09:00`) in `zone`, as an instant.
fn instant(value: &str, zone: chrono_tz::Tz) -> Result<Option<Timestamp>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    let local = chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| format!("{value:?} is not a date and time such as 2026-06-01T09:00"))?;
    match zone.from_local_datetime(&local) {
        chrono::LocalResult::Single(t) => Ok(Some(t.with_timezone(&chrono::Utc))),
        // Clocks going back: the first of the two.
        chrono::LocalResult::Ambiguous(t, _) => Ok(Some(t.with_timezone(&chrono::Utc))),
        chrono::LocalResult::None => Err(format!("{value} does not exist in {} (the clocks skip it)", zone.name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(fields: &[(&str, &str)]) -> CampaignForm {
        let mut f = CampaignForm::default();
        for (k, v) in fields {
            f.set(k, (*v).to_owned());
        }
        f
    }

    #[test]
    fn the_form_becomes_the_apis_request() {
        let f = form(&[
            ("name", "Spring"),
            ("policy", "default"),
            ("text", "Hi {{contact.name}}"),
            ("text.sms", "Hi {{contact.name}}, short"),
            ("text.whatsapp", "  "),
            ("viber_image", "https://cdn.example.com/spring.png?v=2"),
            ("viber_caption", "Shop now"),
            ("viber_url", "https://shop.example.com/"),
            ("start_at", "2026-03-29T01:30"),
            ("end_at", "2026-03-29T12:00"),
            ("dates_in", "zone"),
            ("window", "09:00-20:00"),
            ("time_zone", "Europe/Berlin"),
            ("recipient_time_zone", "on"),
            ("rate", "50/s"),
            ("region", "DE"),
            ("upload", "0123456789abcdef0123456789abcdef"),
        ]);
        let (req, errors) = request_of(&f);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(req.name, "Spring");
        assert_eq!(req.policy, json!("default"));
        let sms = &req.message.overrides[&ChannelName::from("sms")];
        assert_eq!(sms.text.as_deref(), Some("Hi {{contact.name}}, short"));
        assert!(!req.message.overrides.contains_key(&ChannelName::from("whatsapp")), "blank texts are no override");
        let viber = &req.message.overrides[&ChannelName::from("viber")];
        let image = viber.attachment.as_ref().expect("image");
        assert_eq!(
            (image.url.as_str(), image.media_type.as_str()),
            ("https://cdn.example.com/spring.png?v=2", "image/png")
        );
        assert_eq!(viber.buttons, [Button { caption: "Shop now".into(), url: "https://shop.example.com/".into() }]);
        // Berlin is at +01:00 before the clocks change at 02:00 that night, +02:00 after.
        assert_eq!(
            req.schedule,
            json!({
                "start_at": "2026-03-29T00:30:00Z",
                "end_at": "2026-03-29T10:00:00Z",
                "window": "09:00-20:00",
                "time_zone": "Europe/Berlin",
                "recipient_time_zone": true
            })
        );
        assert_eq!((req.rate, req.region.as_deref()), (json!("50/s"), Some("DE")));
        assert_eq!(req.recipients, json!({"upload_id": "0123456789abcdef0123456789abcdef"}));
    }

    #[test]
    fn what_is_wrong_with_the_form_names_its_field() {
        let f = form(&[
            ("start_at", "tomorrow"),
            ("end_at", "2026-03-29T02:30"),
            ("dates_in", "zone"),
            ("time_zone", "Europe/Berlin"),
            ("viber_caption", "Go"),
        ]);
        let (req, errors) = request_of(&f);
        let texts: Vec<&str> = errors.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "Viber button: give the button a URL too",
                "Start at: \"tomorrow\" is not a date and time such as 2026-06-01T09:00",
                "End at: 2026-03-29T02:30 does not exist in Europe/Berlin (the clocks skip it)",
            ]
        );
        assert_eq!(errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["viber_url", "start_at", "end_at"]);
        assert_eq!((req.rate, req.recipients), (Value::Null, Value::Null));
        assert_eq!(req.schedule, json!({"time_zone": "Europe/Berlin"}));
        // In UTC the same time exists.
        let f = form(&[("end_at", "2026-03-29T02:30")]);
        assert_eq!(request_of(&f).0.schedule["end_at"], "2026-03-29T02:30:00Z");
    }

    #[test]
    fn the_apis_fields_are_the_forms() {
        let named = |field: &str| {
            let e = FormError::from_api(&ValidationError::new(field, "bad"));
            (e.field, e.text)
        };
        assert_eq!(named("recipients.upload_id"), ("list".into(), "CSV file: bad".into()));
        assert_eq!(named("message.overrides.sms.text"), ("text.sms".into(), "Text on sms: bad".into()));
        assert_eq!(named("message.overrides.viber"), ("text.viber".into(), "Content on viber: bad".into()));
        assert_eq!(named("message.overrides.viber.attachment.url"), ("viber_image".into(), "Viber image: bad".into()));
        assert_eq!(named("policy.steps[1].channel"), ("policy".into(), "Policy: bad".into()));
        assert_eq!(named("schedule.window"), ("window".into(), "Daily window: bad".into()));
        assert_eq!(named("rate"), ("rate".into(), "Rate: bad".into()));
    }
}
