//! Named policies: the configuration's, and the ones stored in the store and edited while the
//! server runs, through `/v1/policies` or the operator console.
//!
//! [`PolicyCatalog`] knows them all. The configuration's policies are the defaults; a stored
//! policy of the same name overrides one (its [`PolicySource`] is then `edited`), and deleting
//! the stored one brings the configuration's back. A configuration policy cannot be deleted
//! through the API: it is part of the config file.
//!
//! Requests name policies on their hot path (`POST /v1/cascades`), so [`PolicyCatalog::resolve`]
//! never waits for the store: stored policies are kept in memory, read when the app's
//! [workers](crate::App::spawn_workers) start and again every [`REFRESH_EVERY`] (several
//! instances on one PostgreSQL database converge that way), and updated at once by a save or a
//! delete on this instance. A store that keeps no policies (a custom [`Store`] that leaves the
//! policy methods out) leaves the configuration's in force; saving then answers `503`.
//!
//! Every stored policy has a version, 1 when first saved and one more with every save, which
//! the API shows as the `ETag` (`"3"`); a policy only in the configuration is at version 0.
//! Saves and deletes may name the version they expect (`If-Match: "3"`), so two people editing
//! the same policy cannot silently undo each other's change.
//!
//! [`Store`]: cascade_engine::Store

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cascade_engine::store::StoredPolicy;
use cascade_engine::{Engine, Policy, StoreError, Timestamp, ValidationError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::App;
use crate::api::{body_problem, require_json};
use crate::auth::Scope;
use crate::problem::{Problem, ProblemKind, parse_json};

/// How often stored policies are read again, so edits made on another instance apply here.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// The longest policy name.
pub const MAX_NAME_LEN: usize = 64;

/// Where a policy comes from.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicySource {
    /// The configuration only (version 0): it cannot be deleted, only overridden.
    Config,
    /// The store only: deleting it removes the name.
    Store,
    /// The store, over a configuration policy of the same name: deleting the stored one brings
    /// the configuration's back.
    Edited,
}

impl PolicySource {
    /// The name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicySource::Config => "config",
            PolicySource::Store => "store",
            PolicySource::Edited => "edited",
        }
    }
}

/// One named policy as requests see it.
#[derive(Clone, PartialEq, Debug, Serialize, ToSchema)]
pub struct PolicyEntry {
    /// The name requests refer to it by.
    pub name: String,
    /// Where the policy in force comes from.
    pub source: PolicySource,
    /// The stored version (the `ETag`); 0 for a policy only in the configuration.
    pub version: u64,
    /// When the stored policy was last saved (absent for a configuration policy).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub updated_at: Option<Timestamp>,
    /// The policy in force: `{"steps": [{"channel", "until", "timeout", …}], …}`.
    #[schema(value_type = Object)]
    pub policy: Arc<Policy>,
}

impl PolicyEntry {
    /// The entity tag of this version: `"3"` (`"0"` for a configuration policy).
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

/// The answer to `GET /v1/policies`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyList {
    /// Every policy, by name.
    pub items: Vec<PolicyEntry>,
}

/// Every named policy: the configuration's, with the stored ones over them. Owned by the
/// [`App`] ([`App::policies`]).
#[derive(Debug)]
pub struct PolicyCatalog {
    engine: Engine,
    config: BTreeMap<String, Arc<Policy>>,
    cache: RwLock<Cache>,
}

/// The stored policies as last read or written here.
#[derive(Debug, Default)]
struct Cache {
    stored: BTreeMap<String, Cached>,
    /// Bumped by every save and delete made here: a refresh that read the store before one of
    /// them finished would undo it, so it is dropped (the next one brings everything).
    generation: u64,
    /// Whether the last refresh could read the store (`None` before the first), so a change
    /// is logged once, not every few seconds.
    readable: Option<bool>,
}

#[derive(Clone, Debug)]
struct Cached {
    policy: Arc<Policy>,
    version: u64,
    updated_at: Timestamp,
}

impl From<StoredPolicy> for Cached {
    fn from(p: StoredPolicy) -> Self {
        let mut policy = p.policy;
        policy.name = Some(p.name);
        Self { policy: Arc::new(policy), version: p.version, updated_at: p.updated_at }
    }
}

/// Whether `name` may name a policy: 1 to [`MAX_NAME_LEN`] letters, digits, `_`, `.` and `-`.
///
/// ```
/// use cascade_http::policies::valid_name;
/// assert!(valid_name("whatsapp-first_v2.1"));
/// assert!(!valid_name("") && !valid_name("two words") && !valid_name("ünicode"));
/// ```
pub fn valid_name(name: &str) -> bool {
    // `new` is the console's page for making one.
    name != "new"
        && (1..=MAX_NAME_LEN).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl PolicyCatalog {
    /// A catalog over the configuration's policies; stored ones are read by
    /// [`refresh`](Self::refresh).
    pub fn new(engine: Engine, config: impl IntoIterator<Item = (String, Arc<Policy>)>) -> Self {
        Self { engine, config: config.into_iter().collect(), cache: RwLock::new(Cache::default()) }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        // The cache is plain data, consistent after any panic: keep serving.
        self.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The policy in force under `name`: the stored one, else the configuration's. Never
    /// waits for the store.
    pub fn resolve(&self, name: &str) -> Option<Arc<Policy>> {
        if let Some(p) = self.read().stored.get(name) {
            return Some(p.policy.clone());
        }
        self.config.get(name).cloned()
    }

    /// Every known name, sorted.
    pub fn names(&self) -> Vec<String> {
        let cache = self.read();
        let names: BTreeSet<&String> = self.config.keys().chain(cache.stored.keys()).collect();
        names.into_iter().cloned().collect()
    }

    /// Every policy, by name.
    pub fn list(&self) -> Vec<PolicyEntry> {
        let cache = self.read();
        let names: BTreeSet<&String> = self.config.keys().chain(cache.stored.keys()).collect();
        names.into_iter().filter_map(|n| self.entry(n, cache.stored.get(n))).collect()
    }

    /// One policy, if the name is known.
    pub fn get(&self, name: &str) -> Option<PolicyEntry> {
        self.entry(name, self.read().stored.get(name))
    }

    fn entry(&self, name: &str, stored: Option<&Cached>) -> Option<PolicyEntry> {
        let config = self.config.get(name);
        let (source, policy, version, updated_at) = match (stored, config) {
            (Some(s), Some(_)) => (PolicySource::Edited, s.policy.clone(), s.version, Some(s.updated_at)),
            (Some(s), None) => (PolicySource::Store, s.policy.clone(), s.version, Some(s.updated_at)),
            (None, Some(c)) => (PolicySource::Config, c.clone(), 0, None),
            (None, None) => return None,
        };
        Some(PolicyEntry { name: name.to_owned(), source, version, updated_at, policy })
    }

    /// Checks a policy against the engine's channels without storing it: it has steps, every
    /// step's channel has connections, its `until` is a status the channel reports, its
    /// `connections` are connections of that channel, `track_links` only with link tracking
    /// ([`Engine::check_policy`]). Errors name fields from the policy's root
    /// (`steps[1].channel`).
    pub fn check(&self, policy: &Policy) -> Result<(), Vec<ValidationError>> {
        self.engine.check_policy(policy).map_err(|mut errors| {
            let mut channels: Vec<&str> = self.engine.pools().pools().map(|p| p.channel().as_str()).collect();
            channels.sort_unstable();
            for e in errors.iter_mut().filter(|e| e.field.ends_with(".channel")) {
                e.message = format!(
                    "{}; channels with connections: {}",
                    e.message,
                    if channels.is_empty() { "none".to_owned() } else { channels.join(", ") }
                );
            }
            errors
        })
    }

    /// Validates and stores `policy` under `name`, over any configuration policy of that name,
    /// and puts it in force here at once (other instances within [`REFRESH_EVERY`]). With
    /// `expected`, only if the stored version is that one (0: none stored yet); else a `412`.
    /// An invalid name or policy is a `422` naming each field (`name`, `steps[1].channel`); a
    /// store that keeps no policies, a `503`.
    pub async fn save(&self, name: &str, mut policy: Policy, expected: Option<u64>) -> Result<PolicyEntry, Problem> {
        let mut errors = Vec::new();
        if !valid_name(name) {
            errors.push(name_error(name));
        } else if let Some(own) = policy.name.as_deref().filter(|own| *own != name) {
            errors.push(ValidationError::new(
                "name",
                format!(
                    "the policy calls itself {own:?} but is saved as {name:?}; leave `name` out or make them agree"
                ),
            ));
        }
        if let Err(e) = self.check(&policy) {
            errors.extend(e);
        }
        if !errors.is_empty() {
            return Err(Problem::invalid(errors));
        }
        policy.name = Some(name.to_owned());
        let stored = self
            .engine
            .store()
            .save_policy(name, &policy, expected, self.engine.now())
            .await
            .map_err(|e| store_problem(e, "saved"))?;
        tracing::info!(policy = name, version = stored.version, "policy saved");
        let cached = Cached::from(stored);
        {
            let mut cache = self.write();
            cache.generation += 1;
            // Two saves that finished out of order: keep the later version. Version 1 is a
            // name stored anew, so whatever was cached had been deleted meanwhile.
            if cached.version == 1 || cache.stored.get(name).is_none_or(|c| c.version <= cached.version) {
                cache.stored.insert(name.to_owned(), cached.clone());
            }
        }
        let source = if self.config.contains_key(name) { PolicySource::Edited } else { PolicySource::Store };
        Ok(PolicyEntry {
            name: name.to_owned(),
            source,
            version: cached.version,
            updated_at: Some(cached.updated_at),
            policy: cached.policy,
        })
    }

    /// Deletes the stored policy `name`: a configuration policy of that name is in force again
    /// (here at once, on other instances within [`REFRESH_EVERY`]). With `expected`, only if
    /// the stored version is that one; else a `412`. A policy only in the configuration cannot
    /// be deleted (`409`); an unknown name is a `404`.
    pub async fn delete(&self, name: &str, expected: Option<u64>) -> Result<(), Problem> {
        let deleted = match self.engine.store().delete_policy(name, expected).await {
            Ok(deleted) => deleted,
            // A store that keeps no policies (or cannot be read now) can still tell a name
            // that was never stored.
            Err(StoreError::Unavailable(_)) if !self.read().stored.contains_key(name) => false,
            Err(e) => return Err(store_problem(e, "deleted")),
        };
        {
            let mut cache = self.write();
            cache.generation += 1;
            cache.stored.remove(name);
        }
        if deleted {
            tracing::info!(policy = name, "stored policy deleted");
            Ok(())
        } else if self.config.contains_key(name) {
            Err(Problem::new(
                ProblemKind::Conflict,
                format!(
                    "policy {name:?} comes from the configuration and has no stored version to delete; change it \
                     with PUT (which stores a version over it) or in the config file"
                ),
            ))
        } else {
            Err(no_policy(name, &self.names()))
        }
    }

    /// Reads the stored policies again and puts them in force, unless a save or delete made
    /// here while they were read is newer. When the store cannot be read the last policies
    /// read stay in force, and the error is returned (and logged once, when it starts).
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let generation = self.read().generation;
        let listed = self.engine.store().list_policies().await;
        let mut cache = self.write();
        match listed {
            Ok(list) => {
                if cache.readable != Some(true) {
                    tracing::info!(stored = list.len(), configured = self.config.len(), "policies read from the store");
                }
                cache.readable = Some(true);
                if cache.generation == generation {
                    cache.stored = list.into_iter().map(|p| (p.name.clone(), Cached::from(p))).collect();
                }
                Ok(())
            }
            Err(e) => {
                match cache.readable {
                    None => tracing::info!(
                        error = %e,
                        "no stored policies: only the configuration's are in force, and saving policies answers 503"
                    ),
                    Some(true) => {
                        tracing::warn!(error = %e, "cannot read stored policies; the last ones read stay in force")
                    }
                    Some(false) => {}
                }
                cache.readable = Some(false);
                Err(e)
            }
        }
    }
}

fn name_error(name: &str) -> ValidationError {
    ValidationError::new(
        "name",
        format!("{name:?} is not a policy name: use 1 to {MAX_NAME_LEN} letters, digits, `_`, `.` and `-` (not `new`)"),
    )
}

/// A `404` for an unknown policy, naming the known ones.
fn no_policy(name: &str, known: &[String]) -> Problem {
    Problem::not_found(format!(
        "no policy named {name:?}; configured: {}",
        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
    ))
}

fn store_problem(e: StoreError, what: &str) -> Problem {
    match e {
        StoreError::Unavailable(reason) => {
            tracing::warn!(error = %reason, "a policy could not be {what}");
            Problem::unavailable(format!(
                "the policy could not be {what}: the store cannot keep policies right now ({reason}); the \
                 configuration's policies stay in force"
            ))
        }
        e => e.into(),
    }
}

/// Keeps the stored policies in memory up to date: reads them at once, then every
/// [`REFRESH_EVERY`] until `stop`.
pub(crate) async fn run(app: App, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        // Failures are logged by `refresh` and keep the last policies read.
        let _ = app.policies().refresh().await;
        tokio::select! {
            _ = tokio::time::sleep(REFRESH_EVERY) => {}
            changed = stop.changed() => if changed.is_err() { return },
        }
    }
}

/// The version an `If-Match` header names (`"3"`), if there is one.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, Problem> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().strip_prefix('"')?.strip_suffix('"')?.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| Problem::invalid_field("If-Match", "must be one ETag this API gave, such as \"3\""))
}

/// A policy as an answer, with its `ETag`.
fn entry_response(status: StatusCode, entry: PolicyEntry) -> Response {
    let etag = HeaderValue::from_str(&entry.etag()).unwrap_or(HeaderValue::from_static("\"0\""));
    let mut response = (status, Json(entry)).into_response();
    response.headers_mut().insert(header::ETAG, etag);
    response
}

/// `GET /v1/policies`: every named policy, by name, with where it comes from and its version.
#[utoipa::path(get, path = "/v1/policies",
    responses((status = 200, body = PolicyList), (status = 401, body = crate::problem::ProblemDetails),
        (status = 403, body = crate::problem::ProblemDetails)))]
pub async fn list(State(app): State<App>, headers: HeaderMap) -> Result<Response, Problem> {
    app.inner().keys.authorize(&headers, Scope::Read)?;
    Ok(Json(PolicyList { items: app.policies().list() }).into_response())
}

/// `GET /v1/policies/{name}`: one policy, its version as the `ETag`.
#[utoipa::path(get, path = "/v1/policies/{name}", params(("name" = String, Path)),
    responses((status = 200, body = PolicyEntry, headers(("ETag" = String, description = "The version: \"3\"; \"0\" for a configuration policy"))),
        (status = 401, body = crate::problem::ProblemDetails), (status = 403, body = crate::problem::ProblemDetails),
        (status = 404, body = crate::problem::ProblemDetails)))]
pub async fn get_one(
    State(app): State<App>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    app.inner().keys.authorize(&headers, Scope::Read)?;
    let entry = app.policies().get(&name).ok_or_else(|| no_policy(&name, &app.policies().names()))?;
    Ok(entry_response(StatusCode::OK, entry))
}

/// `PUT /v1/policies/{name}` (admin): stores a policy under `name`, over the configuration's
/// of that name if there is one. `201` when the name had no stored version, else `200`.
#[utoipa::path(put, path = "/v1/policies/{name}", request_body(content = Object, description = "The policy: `{\"steps\": [{\"channel\": \"whatsapp\", \"until\": \"delivered\", \"timeout\": \"30s\"}, {\"channel\": \"sms\"}]}`"),
    params(("name" = String, Path), ("If-Match" = Option<String>, Header, description = "Only if the stored version is this ETag (\"0\": none stored yet)")),
    responses((status = 200, body = PolicyEntry), (status = 201, body = PolicyEntry),
        (status = 400, body = crate::problem::ProblemDetails), (status = 401, body = crate::problem::ProblemDetails),
        (status = 403, body = crate::problem::ProblemDetails), (status = 412, body = crate::problem::ProblemDetails),
        (status = 415, body = crate::problem::ProblemDetails), (status = 422, body = crate::problem::ProblemDetails),
        (status = 503, body = crate::problem::ProblemDetails)))]
pub async fn put(
    State(app): State<App>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Problem> {
    app.inner().keys.authorize(&headers, Scope::Admin)?;
    require_json(&headers)?;
    let body = body.map_err(body_problem)?;
    let expected = if_match(&headers)?;
    let policy: Policy = parse_json(&body)?;
    let entry = app.policies().save(&name, policy, expected).await?;
    let created = entry.version == 1;
    let mut response = entry_response(if created { StatusCode::CREATED } else { StatusCode::OK }, entry);
    if created && let Ok(location) = HeaderValue::from_str(&format!("/v1/policies/{name}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `DELETE /v1/policies/{name}` (admin): deletes the stored policy; a configuration policy of
/// that name is in force again. `204` when done.
#[utoipa::path(delete, path = "/v1/policies/{name}",
    params(("name" = String, Path), ("If-Match" = Option<String>, Header, description = "Only if the stored version is this ETag")),
    responses((status = 204, description = "Deleted"), (status = 401, body = crate::problem::ProblemDetails),
        (status = 403, body = crate::problem::ProblemDetails), (status = 404, body = crate::problem::ProblemDetails),
        (status = 409, description = "A policy only in the configuration", body = crate::problem::ProblemDetails),
        (status = 412, body = crate::problem::ProblemDetails), (status = 503, body = crate::problem::ProblemDetails)))]
pub async fn delete(State(app): State<App>, headers: HeaderMap, Path(name): Path<String>) -> Result<Response, Problem> {
    app.inner().keys.authorize(&headers, Scope::Admin)?;
    let expected = if_match(&headers)?;
    app.policies().delete(&name, expected).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
