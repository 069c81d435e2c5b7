//! The policies pages: every named policy with where it comes from, and an editor whose steps
//! are reordered by dragging, by buttons or by keyboard, saved through the [`PolicyCatalog`]
//! (so into the store, over a configuration policy of the same name).
//!
//! The editor changes what people change (each step's channel, the status it waits for, its
//! timeout; the time to live and the two switches); whatever else a policy holds (content
//! overrides, connection subsets, retries) rides along unseen in hidden fields and is saved
//! as it was.
//!
//! [`PolicyCatalog`]: crate::policies::PolicyCatalog

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use cascade_engine::{Policy, Status, Step};
use minijinja::{Value, context};
use serde::{Deserialize, Serialize};
use serde_json::{Map, json};

use super::cascades::humantime_secs;
use super::session::Session;
use super::{PageError, render};
use crate::App;
use crate::auth::Scope;
use crate::policies::{PolicyEntry, PolicySource};

/// One step as the editor shows it.
#[derive(Debug, Default, Serialize)]
struct StepRow {
    channel: String,
    until: String,
    timeout: String,
    /// The step's other settings, as JSON, carried through the form unchanged.
    extra: String,
}

/// The editor's settings beside the steps.
#[derive(Debug, Serialize)]
struct Settings {
    ttl: String,
    existing_chat_first: bool,
    late_success_wins: bool,
    /// The policy's other settings, as JSON.
    rest: String,
}

fn rows(policy: &Policy) -> Vec<StepRow> {
    policy
        .steps
        .iter()
        .map(|s| {
            let mut extra = serde_json::to_value(s).unwrap_or_else(|_| json!({}));
            if let Some(o) = extra.as_object_mut() {
                for k in ["channel", "until", "timeout"] {
                    o.remove(k);
                }
            }
            StepRow {
                channel: s.channel.to_string(),
                until: s.until.map(|u| u.to_string()).unwrap_or_default(),
                timeout: s.timeout.map(cascade_engine::duration::format).unwrap_or_default(),
                extra: if extra.as_object().is_some_and(Map::is_empty) { String::new() } else { extra.to_string() },
            }
        })
        .collect()
}

fn settings(policy: &Policy) -> Settings {
    let mut rest = serde_json::to_value(policy).unwrap_or_else(|_| json!({}));
    if let Some(o) = rest.as_object_mut() {
        for k in ["name", "steps", "ttl", "existing_chat_first", "late_success_wins"] {
            o.remove(k);
        }
    }
    Settings {
        ttl: policy.ttl.map(cascade_engine::duration::format).unwrap_or_default(),
        existing_chat_first: policy.existing_chat_first,
        late_success_wins: policy.late_success_wins,
        rest: rest.to_string(),
    }
}

fn source_text(source: PolicySource) -> &'static str {
    match source {
        PolicySource::Config => "configuration",
        PolicySource::Store => "stored",
        PolicySource::Edited => "stored, over the configuration's",
    }
}

/// `GET /console/policies`.
pub(crate) async fn list(State(app): State<App>, session: Session) -> Result<Response, PageError> {
    let items: Vec<Value> = app
        .policies()
        .list()
        .iter()
        .map(|e| {
            context! {
                name => e.name,
                source => e.source.as_str(),
                source_text => source_text(e.source),
                version => e.version,
                steps => e.policy.steps.iter().map(|s| {
                    let until = s.until.map(|u| u.to_string()).unwrap_or_else(|| "default".to_owned());
                    let timeout = humantime_secs(s.timeout.unwrap_or(Step::DEFAULT_TIMEOUT));
                    context! { channel => s.channel.to_string(), until => until, timeout => timeout }
                }).collect::<Vec<_>>(),
            }
        })
        .collect();
    render("policies.html", context! { ..session.page("policies", "Policies"), ..context! { items => items } })
}

/// The query of the editor: `?saved=<version>` after a save.
#[derive(Debug, Deserialize)]
pub(crate) struct EditorQuery {
    saved: Option<u64>,
}

/// `GET /console/policies/new`: an empty editor.
pub(crate) async fn new(State(app): State<App>, session: Session) -> Result<Response, PageError> {
    session.require(Scope::Admin)?;
    let blank = Policy::new([Step::new(first_channel(&app))]);
    editor(&app, &session, None, &blank, 0, None, Vec::new())
}

/// `GET /console/policies/{name}`.
pub(crate) async fn show(
    State(app): State<App>,
    session: Session,
    Path(name): Path<String>,
    Query(q): Query<EditorQuery>,
) -> Result<Response, PageError> {
    let entry = app.policies().get(&name).ok_or_else(|| PageError::not_found(format!("no policy named {name:?}")))?;
    let notice = q.saved.map(|v| format!("Saved (version {v}). New cascades that name {name:?} follow it now."));
    editor(&app, &session, Some(&entry), &entry.policy, entry.version, notice, Vec::new())
}

fn first_channel(app: &App) -> String {
    app.inner().engine.pools().pools().next().map(|p| p.channel().to_string()).unwrap_or_default()
}

fn editor(
    app: &App,
    session: &Session,
    entry: Option<&PolicyEntry>,
    policy: &Policy,
    version: u64,
    notice: Option<String>,
    errors: Vec<String>,
) -> Result<Response, PageError> {
    editor_rows(
        app,
        session,
        entry,
        entry.map(|e| e.name.clone()),
        rows(policy),
        settings(policy),
        version,
        notice,
        errors,
    )
}

#[allow(clippy::too_many_arguments)] // one page's worth of parts
fn editor_rows(
    app: &App,
    session: &Session,
    entry: Option<&PolicyEntry>,
    name: Option<String>,
    steps: Vec<StepRow>,
    settings: Settings,
    version: u64,
    notice: Option<String>,
    errors: Vec<String>,
) -> Result<Response, PageError> {
    let mut channels: Vec<String> = app.inner().engine.pools().pools().map(|p| p.channel().to_string()).collect();
    for s in &steps {
        if !s.channel.is_empty() && !channels.contains(&s.channel) {
            channels.push(s.channel.clone());
        }
    }
    let statuses: Vec<String> = Status::PROGRESS.iter().skip(1).map(ToString::to_string).collect();
    let failed = !errors.is_empty();
    let title = name.clone().unwrap_or_else(|| "New policy".to_owned());
    let mut page = render(
        "policy.html",
        context! {
            ..session.page("policies", &title),
            ..context! {
                name => name,
                is_new => entry.is_none(),
                source => entry.map(|e| e.source.as_str()),
                source_text => entry.map(|e| source_text(e.source)),
                editable => session.key().allows(Scope::Admin),
                version => version,
                steps => steps,
                blank => StepRow { channel: first_channel(app), ..StepRow::default() },
                settings => settings,
                channels => channels,
                statuses => statuses,
                notice => notice,
                errors => errors,
            }
        },
    )?;
    if failed {
        *page.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(page)
}

/// What the editor posts, field by field in the order shown: the steps are the runs of
/// `channel`, `until`, `timeout`, `extra`.
#[derive(Debug, Default)]
struct Posted {
    csrf: String,
    name: Option<String>,
    version: u64,
    steps: Vec<StepRow>,
    settings: Option<Settings>,
}

fn read_form(fields: Vec<(String, String)>) -> Posted {
    let mut p = Posted::default();
    let mut s =
        Settings { ttl: String::new(), existing_chat_first: false, late_success_wins: false, rest: String::new() };
    for (k, v) in fields {
        match k.as_str() {
            "csrf" => p.csrf = v,
            "name" => p.name = Some(v.trim().to_owned()),
            "version" => p.version = v.parse().unwrap_or(0),
            "channel" => p.steps.push(StepRow { channel: v, ..StepRow::default() }),
            "until" | "timeout" | "extra" => {
                if let Some(step) = p.steps.last_mut() {
                    match k.as_str() {
                        "until" => step.until = v,
                        "timeout" => step.timeout = v.trim().to_owned(),
                        _ => step.extra = v,
                    }
                }
            }
            "ttl" => s.ttl = v.trim().to_owned(),
            "existing_chat_first" => s.existing_chat_first = true,
            "late_success_wins" => s.late_success_wins = true,
            "rest" => s.rest = v,
            _ => {}
        }
    }
    p.settings = Some(s);
    p
}

/// The policy the form describes, or what is wrong with it, field by field.
fn policy_of(steps: &[StepRow], s: &Settings) -> Result<Policy, Vec<String>> {
    let mut errors = Vec::new();
    let object = |text: &str, field: &str, errors: &mut Vec<String>| -> Map<String, serde_json::Value> {
        if text.trim().is_empty() {
            return Map::new();
        }
        // The page wrote these; nothing it writes nests anywhere near the limit.
        let parsed = if crate::limits::nests_deeper_than(text.as_bytes(), crate::limits::MAX_JSON_DEPTH) {
            None
        } else {
            serde_json::from_str::<serde_json::Value>(text).ok()
        };
        match parsed {
            Some(serde_json::Value::Object(o)) => o,
            _ => {
                errors.push(format!("{field}: the hidden settings were damaged; reload the page"));
                Map::new()
            }
        }
    };
    let mut policy = object(&s.rest, "policy", &mut errors);
    let mut list = Vec::new();
    for (i, row) in steps.iter().enumerate() {
        let mut step = object(&row.extra, &format!("steps[{i}]"), &mut errors);
        step.insert("channel".into(), json!(row.channel));
        if !row.until.is_empty() {
            step.insert("until".into(), json!(row.until));
        }
        if !row.timeout.is_empty() {
            step.insert("timeout".into(), json!(row.timeout));
        }
        list.push(serde_json::Value::Object(step));
    }
    policy.insert("steps".into(), serde_json::Value::Array(list));
    if !s.ttl.is_empty() {
        policy.insert("ttl".into(), json!(s.ttl));
    }
    policy.insert("existing_chat_first".into(), json!(s.existing_chat_first));
    policy.insert("late_success_wins".into(), json!(s.late_success_wins));
    if !errors.is_empty() {
        return Err(errors);
    }
    crate::problem::from_value_at::<Policy>("policy", serde_json::Value::Object(policy)).map_err(|e| {
        let field = e.field.strip_prefix("policy.").unwrap_or(&e.field).to_owned();
        vec![format!("{field}: {}", e.message)]
    })
}

/// `POST /console/policies` (a new one, named in the form) and `POST /console/policies/{name}`.
pub(crate) async fn save(
    State(app): State<App>,
    session: Session,
    headers: HeaderMap,
    name: Option<Path<String>>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let posted = read_form(fields);
    session.check_form(&headers, &posted.csrf)?;
    session.require(Scope::Admin)?;
    let is_new = name.is_none();
    let name = match name {
        Some(Path(n)) => n,
        None => posted.name.clone().unwrap_or_default(),
    };
    let settings = posted.settings.unwrap_or_else(|| settings(&Policy::new([])));
    let entry = (!is_new).then(|| app.policies().get(&name)).flatten();
    let back = |steps, settings, errors| {
        let shown = if is_new { Some(name.clone()).filter(|n| !n.is_empty()) } else { Some(name.clone()) };
        editor_rows(&app, &session, entry.as_ref(), shown, steps, settings, posted.version, None, errors)
    };
    let policy = match policy_of(&posted.steps, &settings) {
        Ok(p) => p,
        Err(errors) => return back(posted.steps, settings, errors),
    };
    // A new policy must not replace one of that name; an edit, only the version it started from.
    let expected = if is_new && app.policies().get(&name).is_some() {
        return back(posted.steps, settings, vec![format!("name: a policy named {name:?} exists already")]);
    } else if is_new {
        Some(0)
    } else {
        Some(posted.version)
    };
    match app.policies().save(&name, policy, expected).await {
        Ok(saved) => {
            let q = url::form_urlencoded::byte_serialize(saved.name.as_bytes()).collect::<String>();
            Ok(Redirect::to(&format!("/console/policies/{q}?saved={}", saved.version)).into_response())
        }
        Err(p) if p.status == 412 => back(
            posted.steps,
            settings,
            vec![format!(
                "Someone saved {name:?} since this page was opened; reload it to see theirs, then make your change again."
            )],
        ),
        Err(p) if p.status == 422 => {
            let errors = p
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.field.strip_prefix("policy.").unwrap_or(&e.field), e.message))
                .collect();
            back(posted.steps, settings, errors)
        }
        Err(p) => Err(p.into()),
    }
}

/// The delete form: its token, and the version the page showed.
#[derive(Debug, Deserialize)]
pub(crate) struct DeleteForm {
    csrf: String,
    #[serde(default)]
    version: Option<u64>,
}

/// `POST /console/policies/{name}/delete`: deletes the stored policy (a configuration policy
/// of that name comes back).
pub(crate) async fn delete(
    State(app): State<App>,
    session: Session,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<DeleteForm>,
) -> Result<Response, PageError> {
    session.check_form(&headers, &form.csrf)?;
    session.require(Scope::Admin)?;
    // Only the version the page showed: not one someone saved since.
    match app.policies().delete(&name, form.version).await {
        Ok(()) => {}
        Err(p) if p.status == 412 => {
            return Err(PageError::new(
                StatusCode::CONFLICT,
                format!("Someone saved {name:?} since this page was opened; it was not deleted. Reload to see theirs."),
            ));
        }
        Err(p) => return Err(p.into()),
    }
    let target = if app.policies().get(&name).is_some() {
        format!("/console/policies/{}", url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>())
    } else {
        "/console/policies".to_owned()
    };
    Ok(Redirect::to(&target).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn the_form_reads_back_into_the_policy_it_shows_in_the_order_shown() {
        let original: Policy = serde_json::from_value(json!({
            "steps": [
                {"channel": "whatsapp", "until": "read", "timeout": "2m",
                 "content": {"text": "Hi on WhatsApp"}, "connections": ["wa-main"]},
                {"channel": "sms"}
            ],
            "ttl": "1h",
            "late_success_wins": false,
            "retry": {"max_sends_per_step": 5}
        }))
        .expect("policy");
        let (r, s) = (rows(&original), settings(&original));
        assert_eq!((r[0].until.as_str(), r[0].timeout.as_str()), ("read", "2m"));
        assert!(r[0].extra.contains("Hi on WhatsApp") && r[1].extra.is_empty(), "{r:?}");

        // Posted in the new order: sms first.
        let mut fields = pairs(&[("csrf", "t"), ("version", "3")]);
        for row in [&r[1], &r[0]] {
            fields.extend(pairs(&[
                ("channel", &row.channel),
                ("until", &row.until),
                ("timeout", &row.timeout),
                ("extra", &row.extra),
            ]));
        }
        fields.extend(pairs(&[("ttl", &s.ttl), ("existing_chat_first", "on"), ("rest", &s.rest)]));
        let posted = read_form(fields);
        assert_eq!((posted.csrf.as_str(), posted.version), ("t", 3));
        let settings = posted.settings.expect("settings");
        let policy = policy_of(&posted.steps, &settings).expect("valid");
        assert_eq!(policy.steps.len(), 2);
        assert_eq!(policy.steps[0], original.steps[1]);
        assert_eq!(policy.steps[1], original.steps[0], "content and connections ride along");
        assert_eq!((policy.ttl, policy.retry.clone()), (original.ttl, original.retry.clone()));
        assert!(!policy.late_success_wins && policy.existing_chat_first);
    }

    #[test]
    fn bad_values_are_named_by_field() {
        let steps = vec![
            StepRow { channel: "sms".into(), ..StepRow::default() },
            StepRow { channel: "whatsapp".into(), timeout: "soon".into(), ..StepRow::default() },
        ];
        let s = settings(&Policy::new([]));
        let errors = policy_of(&steps, &s).expect_err("bad timeout");
        assert!(errors[0].starts_with("steps[1].timeout: invalid duration `soon`"), "{errors:?}");
        let damaged = vec![StepRow { channel: "sms".into(), extra: "{oops".into(), ..StepRow::default() }];
        let errors = policy_of(&damaged, &s).expect_err("damaged");
        assert!(errors[0].starts_with("steps[0]: the hidden settings were damaged"), "{errors:?}");
        // Nested past the limit (valid JSON, and within serde_json's own): refused, not read.
        let deep = format!("{{\"content\": {{\"x\": {}1{}}}}}", "[".repeat(100), "]".repeat(100));
        let nested = vec![StepRow { channel: "sms".into(), extra: deep, ..StepRow::default() }];
        let errors = policy_of(&nested, &s).expect_err("too deep");
        assert!(errors[0].starts_with("steps[0]: the hidden settings were damaged"), "{errors:?}");
        let s = Settings { rest: "[".repeat(100_000), ..settings(&Policy::new([])) };
        let errors = policy_of(&[], &s).expect_err("too deep");
        assert!(errors[0].starts_with("policy: the hidden settings were damaged"), "{errors:?}");
    }
}
