//! # cascade-config
//!
//! cascade's configuration: one TOML file plus `CASCADE_*` environment overrides (figment;
//! `__` separates levels, so `CASCADE_SERVER__LISTEN=0.0.0.0:8080` sets `server.listen` and
//! `CASCADE_API_KEYS__CRM__KEY=…` sets `api_keys.crm.key`), checked key by key, then built into
//! a running engine with its connections and policies, and the HTTP app around it.
//!
//! Each problem names its key and where the value came from (the file, or the environment).
//! Reading stops at the first value of the wrong type or unknown key; the checks after it
//! (connections, policies, keys, server settings) report every problem at once.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = cascade_config::load(Some("cascade.toml".as_ref())).map_err(|p| p.to_string())?;
//! let built = cascade_config::build(&config).await.map_err(|p| p.to_string())?;
//! let listener = tokio::net::TcpListener::bind(config.server.listen).await?;
//! # let _ = (built, listener);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod model;
pub mod telemetry;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;

use cascade_channel_kit::{ConfigError, Intake};
use cascade_engine::{Capabilities, Channel, ChannelName, Connection, Engine, Store};
use cascade_http::App;
use cascade_http::auth::ApiKey;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use sha2::Digest;

pub use model::*;

/// One problem with the configuration.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ConfigProblem {
    /// The key, dotted (`connections.wa-main.phone_number_id`).
    pub key: String,
    /// Where the value came from: the file, or the environment variable (when known).
    pub source: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.source, self.key.is_empty()) {
            (Some(s), true) => write!(f, "{s}: {}", self.message),
            (Some(s), false) => write!(f, "{s}: {}: {}", self.key, self.message),
            (None, _) => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// Every problem found.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub struct ConfigProblems(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Reads `file` (if given) and the `CASCADE_*` environment into a [`Config`], then checks it
/// ([`check`]). A missing file is an error when named.
pub fn load(file: Option<&Path>) -> Result<Config, ConfigProblems> {
    let mut figment = Figment::new();
    if let Some(file) = file {
        if !file.exists() {
            return Err(ConfigProblems(vec![ConfigProblem {
                key: String::new(),
                source: Some(file.display().to_string()),
                message: "the configuration file does not exist".into(),
            }]));
        }
        figment = figment.merge(Toml::file_exact(file));
    }
    load_from(figment.merge(env()), file)
}

/// The top-level sections: only `CASCADE_<SECTION>__…` variables are configuration, so other
/// `CASCADE_*` variables (`CASCADE_CONFIG`, the CLI's `CASCADE_SERVER` URL…) are left alone.
const SECTIONS: [&str; 8] = ["server", "store", "engine", "callbacks", "api_keys", "connections", "policies", "kommo"];

fn env() -> Env {
    Env::prefixed("CASCADE_")
        .filter(|k| {
            let k = k.as_str().to_ascii_lowercase();
            SECTIONS.iter().any(|s| k.strip_prefix(s).is_some_and(|rest| rest.starts_with("__")))
        })
        .split("__")
}

/// Reads a configuration from TOML text (and no environment), then checks it. For tests and
/// tools that hold the text already.
pub fn from_toml(text: &str) -> Result<Config, ConfigProblems> {
    load_from(Figment::from(Toml::string(text)), None)
}

fn load_from(figment: Figment, file: Option<&Path>) -> Result<Config, ConfigProblems> {
    let config: Config = figment.extract().map_err(|e| figment_problems(e, file))?;
    let problems = check(&config);
    if problems.is_empty() { Ok(config) } else { Err(ConfigProblems(problems)) }
}

fn figment_problems(error: figment::Error, file: Option<&Path>) -> ConfigProblems {
    ConfigProblems(
        error
            .into_iter()
            .map(|e| {
                let key = e.path.join(".");
                let source = e
                    .metadata
                    .as_ref()
                    .map(|m| match &m.source {
                        Some(figment::Source::File(p)) => p.display().to_string(),
                        Some(s) => {
                            let var = m.interpolate(&e.profile.clone().unwrap_or_default(), &e.path);
                            if m.name.contains("environment") {
                                format!("environment variable {var}")
                            } else {
                                s.to_string()
                            }
                        }
                        None => m.name.to_string(),
                    })
                    .or_else(|| file.map(|f| f.display().to_string()));
                ConfigProblem { key, source, message: e.kind.to_string() }
            })
            .collect(),
    )
}

fn problem(key: impl Into<String>, message: impl Into<String>) -> ConfigProblem {
    ConfigProblem { key: key.into(), source: None, message: message.into() }
}

/// What the connections add up to: engine connections, webhook intakes, and the channels
/// they serve with their capabilities.
struct Adapters {
    connections: Vec<Connection>,
    intakes: Vec<(String, Arc<dyn Intake>)>,
    channels: BTreeMap<ChannelName, Capabilities>,
    ids: BTreeSet<String>,
}

fn adapters(config: &Config, problems: &mut Vec<ConfigProblem>) -> Adapters {
    let mut out =
        Adapters { connections: Vec::new(), intakes: Vec::new(), channels: BTreeMap::new(), ids: BTreeSet::new() };
    for (id, conn) in &config.connections {
        let key = |e: ConfigError| problem(format!("connections.{id}.{}", e.key), e.message);
        fn add<T: Channel + Intake>(
            out: &mut Adapters,
            id: &str,
            made: Result<T, ConfigError>,
            connection: impl FnOnce(&Arc<T>) -> Connection,
        ) -> Result<(), ConfigError> {
            let a = Arc::new(made?);
            out.connections.push(connection(&a));
            out.intakes.push((id.to_owned(), a));
            Ok(())
        }
        let r = match conn {
            ConnectionConfig::WhatsApp(c) => {
                add(&mut out, id, cascade_whatsapp::WhatsApp::new(c.clone()), |a| a.connection(id.as_str()))
            }
            ConnectionConfig::Telegram(c) => {
                add(&mut out, id, cascade_telegram::Telegram::new(c.clone()), |a| a.connection(id.as_str()))
            }
            ConnectionConfig::Twilio(c) => {
                add(&mut out, id, cascade_sms_twilio::Twilio::new(c.clone()), |a| a.connection(id.as_str()))
            }
            ConnectionConfig::Viber(c) => {
                add(&mut out, id, cascade_viber::Viber::new(c.clone()), |a| a.connection(id.as_str()))
            }
            ConnectionConfig::Max(c) => {
                add(&mut out, id, cascade_max::Max::new(c.clone()), |a| a.connection(id.as_str()))
            }
            ConnectionConfig::Webhook(c) => {
                add(&mut out, id, cascade_webhook::Webhook::new(c.clone()), |a| a.connection(id.as_str()))
            }
            ConnectionConfig::Email(c) => cascade_email::Email::new(c.clone()).map(|e| {
                out.connections.push(Arc::new(e).connection(id.as_str()));
            }),
        };
        match r {
            Ok(()) => {
                out.ids.insert(id.clone());
                if let Some(c) = out.connections.last() {
                    let info = c.channel.info();
                    out.channels.entry(info.channel.clone()).or_insert_with(|| info.capabilities.clone());
                }
            }
            Err(e) => problems.push(key(e)),
        }
    }
    out
}

/// Checks a loaded configuration: each connection's settings (by building its adapter), that
/// every policy step names a configured channel, connections and a status it can report, the
/// API keys, and the server settings. Returns every problem.
pub fn check(config: &Config) -> Vec<ConfigProblem> {
    checked(config).1
}

/// [`check`], keeping the adapters it built so [`build`] need not build them again.
fn checked(config: &Config) -> (Adapters, Vec<ConfigProblem>) {
    let mut problems = Vec::new();
    let adapters = adapters(config, &mut problems);
    if config.connections.is_empty() {
        problems.push(problem("connections", "no connection is configured; add at least one [connections.ID]"));
    }
    for (name, policy) in &config.policies {
        if policy.steps.is_empty() {
            problems.push(problem(format!("policies.{name}.steps"), "a policy needs at least one step"));
        }
        for (i, step) in policy.steps.iter().enumerate() {
            let at = format!("policies.{name}.steps[{i}]");
            let Some(caps) = adapters.channels.get(&step.channel) else {
                if !config.connections.is_empty() {
                    let known: Vec<&str> = adapters.channels.keys().map(ChannelName::as_str).collect();
                    problems.push(problem(
                        format!("{at}.channel"),
                        format!(
                            "no connection serves channel {:?}; configured channels: {}",
                            step.channel.as_str(),
                            known.join(", ")
                        ),
                    ));
                }
                continue;
            };
            if let Some(until) = step.until
                && !caps.can_report(until)
            {
                problems.push(problem(
                    format!("{at}.until"),
                    format!(
                        "channel {:?} never reports `{until}` (it reports up to `{}`)",
                        step.channel.as_str(),
                        caps.highest_status
                    ),
                ));
            }
            for c in step.connections.iter().flatten() {
                if !adapters.ids.contains(c.as_str()) {
                    problems.push(problem(format!("{at}.connections"), format!("no connection {:?}", c.as_str())));
                }
            }
        }
    }
    for (name, key) in &config.api_keys {
        let at = format!("api_keys.{name}");
        match (&key.hash, &key.key) {
            (Some(h), None) => {
                if ApiKey::from_hash(name.as_str(), h, Vec::new()).is_err() {
                    problems.push(problem(
                        format!("{at}.hash"),
                        "expected \"sha256:\" and 64 hex digits (`cascade-server --hash-key KEY` prints one)",
                    ));
                }
            }
            (None, Some(k)) if k.expose().len() < 16 => {
                problems.push(problem(format!("{at}.key"), "must be at least 16 characters"));
            }
            (None, Some(_)) => {}
            (Some(_), Some(_)) => problems.push(problem(at.clone(), "give `hash` or `key`, not both")),
            (None, None) => problems.push(problem(at.clone(), "needs `hash` (or `key`, from the environment)")),
        }
        if key.scopes.is_empty() {
            problems.push(problem(format!("{at}.scopes"), "give at least one of send, read, admin"));
        }
        if key.rate_limit == Some(0) {
            problems.push(problem(format!("{at}.rate_limit"), "must be at least 1 (leave it out for no limit)"));
        }
    }
    if let Some(k) = &config.kommo {
        if let Err(e) = cascade_kommo::Kommo::new(k.clone()) {
            problems.push(problem(format!("kommo.{}", e.key), e.message));
        }
        let named = k.default_policy.iter().map(|p| ("kommo.default_policy".to_owned(), p)).chain(
            k.accounts
                .iter()
                .filter_map(|(a, acc)| acc.policy.as_ref().map(|p| (format!("kommo.accounts.{a}.policy"), p))),
        );
        for (key, policy) in named {
            if !config.policies.contains_key(policy) {
                problems.push(problem(key, format!("no policy named {policy:?} in [policies]")));
            }
        }
    }
    if let Some(s) = &config.server.secret
        && s.expose().len() < 32
    {
        problems.push(problem("server.secret", "must be at least 32 characters"));
    }
    if !matches!(config.server.public_url.scheme(), "http" | "https") {
        problems.push(problem("server.public_url", "must be an http:// or https:// URL"));
    }
    if let StoreConfig::Postgres { url, .. } = &config.store
        && !(url.expose().starts_with("postgres://") || url.expose().starts_with("postgresql://"))
    {
        problems.push(problem("store.url", "must be a postgres:// URL"));
    }
    (adapters, problems)
}

/// A running engine and the HTTP app around it, built from a [`Config`].
#[derive(Debug)]
pub struct Built {
    /// The engine (its scheduler is running).
    pub engine: Engine,
    /// The HTTP app: mount [`App::router`], start [`App::spawn_workers`].
    pub app: App,
}

/// Opens the store, builds every connection, starts the engine and makes the app. Must run
/// inside a tokio runtime.
pub async fn build(config: &Config) -> Result<Built, ConfigProblems> {
    let (adapters, problems) = checked(config);
    if !problems.is_empty() {
        return Err(ConfigProblems(problems));
    }
    let store = open_store(&config.store).await.map_err(|p| ConfigProblems(vec![p]))?;
    let root: Vec<u8> = match &config.server.secret {
        Some(s) => s.expose().as_bytes().to_vec(),
        None => {
            tracing::warn!(
                "server.secret is not set: file and tracked links will stop working when the server restarts"
            );
            [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()].iter().flat_map(|u| *u.as_bytes()).collect()
        }
    };
    let derive = |purpose: &str| {
        let mut h = sha2::Sha256::new();
        h.update(purpose.as_bytes());
        h.update(&root);
        h.finalize().to_vec()
    };
    let links_base = format!("{}/l/", config.server.public_url.as_str().trim_end_matches('/'));
    let mut engine = Engine::builder()
        .store(store)
        .config(config.engine.clone())
        .link_tracking(cascade_engine::LinkTracking::new(links_base, derive("cascade links v1")));
    for c in adapters.connections {
        engine = engine.connection(c);
    }
    let engine = engine.build().map_err(|e| ConfigProblems(vec![problem("connections", e.to_string())]))?;
    let secret = derive("cascade files v1");
    let mut app = App::builder(engine.clone())
        .public_url(config.server.public_url.clone())
        .secret(secret)
        .uploads(&config.server.upload_dir, config.server.max_upload)
        .allow_internal_urls(config.server.allow_internal_urls)
        .max_body(config.server.max_body)
        .link_ttl(config.server.link_ttl)
        .callbacks(config.callbacks.clone());
    for (name, policy) in &config.policies {
        let mut p = policy.clone();
        p.name = Some(name.clone());
        app = app.policy(name, p);
    }
    if let Some(k) = &config.kommo {
        let kommo = cascade_kommo::Kommo::new(k.clone())
            .map_err(|e| ConfigProblems(vec![problem(format!("kommo.{}", e.key), e.message)]))?;
        app = app.kommo(kommo);
    }
    for (id, intake) in adapters.intakes {
        app = app.intake(id, intake);
    }
    for (name, k) in &config.api_keys {
        let mut key = match (&k.hash, &k.key) {
            (Some(h), _) => ApiKey::from_hash(name.as_str(), h, k.scopes.clone())
                .map_err(|e| ConfigProblems(vec![problem(format!("api_keys.{name}.hash"), e.to_string())]))?,
            (None, Some(plain)) => ApiKey::from_plain(name.as_str(), plain.expose(), k.scopes.clone()),
            (None, None) => unreachable!("checked"),
        };
        if let Some(s) = &k.callback_secret {
            key = key.callback_secret(s.clone());
        }
        if let Some(r) = k.rate_limit.and_then(NonZeroU32::new) {
            key = key.rate_limit(r);
        }
        app = app.api_key(key);
    }
    let app = app.try_build().map_err(|e| {
        ConfigProblems(vec![problem(
            "server.upload_dir",
            format!("cannot create {}: {e}", config.server.upload_dir.display()),
        )])
    })?;
    Ok(Built { engine, app })
}

async fn open_store(config: &StoreConfig) -> Result<Arc<dyn Store>, ConfigProblem> {
    Ok(match config {
        StoreConfig::Sqlite { path, durability } => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| problem("store.path", format!("cannot create {}: {e}", dir.display())))?;
            }
            let mut c = cascade_store_sql::SqliteConfig::new(path);
            c.durability = *durability;
            let store = cascade_store_sql::SqliteStore::open_with(c)
                .await
                .map_err(|e| problem("store.path", format!("cannot open {}: {e}", path.display())))?;
            Arc::new(store)
        }
        StoreConfig::Postgres { url, schema, max_connections } => {
            let mut c = cascade_store_sql::PgConfig::new(url.expose());
            c.schema = schema.clone();
            if let Some(n) = max_connections {
                c.max_connections = *n;
            }
            let store = cascade_store_sql::PgStore::connect_with(c)
                .await
                .map_err(|e| problem("store.url", format!("cannot connect: {e}")))?;
            Arc::new(store)
        }
        StoreConfig::Memory => Arc::new(cascade_engine::MemoryStore::new()),
    })
}
