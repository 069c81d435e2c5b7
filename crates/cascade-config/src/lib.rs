//! # cascade-config
//!
//! cascade's configuration: one TOML file plus `CASCADE_*` environment overrides (figment;
//! `__` separates levels, so `CASCADE_SERVER__LISTEN=0.0.0.0:8080` sets `server.listen` and
//! `CASCADE_API_KEYS__CRM__KEY=…` sets `api_keys.crm.key`), checked key by key, then built into
//! a running engine with its connections and policies, and the HTTP app around it.
//!
//! Each problem names its key and where the value came from (the file, or the environment).
//! Each section, connection, policy and API key is read on its own, so a value of the wrong type
//! or an unknown key does not hide the problems after it, and the checks (connections, policies,
//! keys, server settings) report every problem at once.
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
    let config = extract(&figment, file)?;
    let problems = check(&config);
    if problems.is_empty() { Ok(config) } else { Err(ConfigProblems(problems)) }
}

/// Reads the configuration one part at a time — each section, and each connection, policy and
/// API key on its own — so that one wrong value does not hide the problems after it. Every
/// problem found is returned.
fn extract(figment: &Figment, file: Option<&Path>) -> Result<Config, ConfigProblems> {
    let mut problems = Vec::new();
    let mut config = Config::default();
    let top = match figment.extract::<figment::value::Dict>() {
        Ok(d) => d,
        Err(e) => return Err(figment_problems(e, file, &[])),
    };
    for name in top.keys() {
        if !SECTIONS.contains(&name.as_str()) {
            problems.push(ConfigProblem {
                key: name.clone(),
                source: file.map(|f| f.display().to_string()),
                message: format!("unknown section `{name}`, expected one of {}", SECTIONS.join(", ")),
            });
        }
    }
    fn section<T: serde::de::DeserializeOwned>(
        figment: &Figment,
        top: &figment::value::Dict,
        name: &str,
        file: Option<&Path>,
        problems: &mut Vec<ConfigProblem>,
    ) -> Option<T> {
        if !top.contains_key(name) {
            return None;
        }
        figment.focus(name).extract::<T>().map_err(|e| problems.extend(figment_problems(e, file, &[name]).0)).ok()
    }
    fn entries<T: serde::de::DeserializeOwned>(
        figment: &Figment,
        top: &figment::value::Dict,
        name: &str,
        file: Option<&Path>,
        problems: &mut Vec<ConfigProblem>,
    ) -> BTreeMap<String, T> {
        let mut out = BTreeMap::new();
        match top.get(name) {
            None => {}
            Some(figment::value::Value::Dict(_, dict)) => {
                for id in dict.keys() {
                    let path = format!("{name}.{id}");
                    if id.contains('.') {
                        problems.push(problem(path, "a name may not contain `.`"));
                        continue;
                    }
                    match figment.focus(&path).extract::<T>() {
                        Ok(v) => {
                            out.insert(id.clone(), v);
                        }
                        Err(e) => problems.extend(figment_problems(e, file, &[name, id]).0),
                    }
                }
            }
            Some(_) => problems.push(problem(name, format!("expected a table of [{name}.NAME] entries"))),
        }
        out
    }
    if let Some(v) = section(figment, &top, "server", file, &mut problems) {
        config.server = v;
    }
    if let Some(v) = section(figment, &top, "store", file, &mut problems) {
        config.store = v;
    }
    if let Some(v) = section(figment, &top, "engine", file, &mut problems) {
        config.engine = v;
    }
    if let Some(v) = section(figment, &top, "callbacks", file, &mut problems) {
        config.callbacks = v;
    }
    config.kommo = section(figment, &top, "kommo", file, &mut problems);
    config.api_keys = entries(figment, &top, "api_keys", file, &mut problems);
    config.connections = entries(figment, &top, "connections", file, &mut problems);
    config.policies = entries(figment, &top, "policies", file, &mut problems);
    if !problems.is_empty() {
        // Problems of what could be read (a policy naming a channel no connection serves) are
        // worth showing too, unless they only follow from the parts that could not be read.
        let unread: BTreeSet<String> = problems.iter().map(|p| p.key.clone()).collect();
        let unread_channels = unread_channels(&top, &config);
        let served_by_unread = |key: &str| {
            config.policies.iter().any(|(name, policy)| {
                policy.steps.iter().enumerate().any(|(i, step)| {
                    key.starts_with(&format!("policies.{name}.steps[{i}]"))
                        && unread_channels.contains(step.channel.as_str())
                })
            })
        };
        if config.connections.is_empty() {
            // `check` says nothing of steps' channels without connections; say it here.
            for (name, policy) in &config.policies {
                for (i, step) in policy.steps.iter().enumerate() {
                    if !unread_channels.contains(step.channel.as_str()) {
                        problems.push(problem(
                            format!("policies.{name}.steps[{i}].channel"),
                            format!("no connection serves channel {:?}", step.channel.as_str()),
                        ));
                    }
                }
            }
        }
        problems.extend(check(&config).into_iter().filter(|p| {
            let follows_from_unread = unread.iter().any(|k| p.key.starts_with(k.as_str()))
                || (p.key == "connections" && !unread_channels.is_empty())
                || served_by_unread(&p.key);
            !follows_from_unread
        }));
        return Err(ConfigProblems(problems));
    }
    Ok(config)
}

/// The channels of the connections that could not be read (their `channel`, or their adapter's
/// default), so that policy steps naming them are not reported as unserved.
fn unread_channels(top: &figment::value::Dict, config: &Config) -> BTreeSet<String> {
    let Some(figment::value::Value::Dict(_, connections)) = top.get("connections") else {
        return BTreeSet::new();
    };
    connections
        .iter()
        .filter(|(id, _)| !config.connections.contains_key(id.as_str()))
        .filter_map(|(_, raw)| {
            let figment::value::Value::Dict(_, fields) = raw else { return None };
            if let Some(channel) = fields.get("channel").and_then(|v| v.as_str()) {
                return Some(channel.to_owned());
            }
            let adapter = fields.get("adapter").and_then(|v| v.as_str())?;
            let channel = match adapter {
                cascade_whatsapp::ADAPTER => cascade_whatsapp::DEFAULT_CHANNEL,
                cascade_telegram::ADAPTER => cascade_telegram::DEFAULT_CHANNEL,
                cascade_sms_twilio::ADAPTER => cascade_sms_twilio::DEFAULT_CHANNEL,
                cascade_viber::ADAPTER => cascade_viber::DEFAULT_CHANNEL,
                cascade_max::ADAPTER => cascade_max::DEFAULT_CHANNEL,
                cascade_email::ADAPTER => cascade_email::DEFAULT_CHANNEL,
                _ => return None,
            };
            Some(channel.to_owned())
        })
        .collect()
}

/// `error`'s problems, each with its key (under `prefix`, the path of the part that was read)
/// and where the value came from.
fn figment_problems(error: figment::Error, file: Option<&Path>, prefix: &[&str]) -> ConfigProblems {
    ConfigProblems(
        error
            .into_iter()
            .map(|mut e| {
                let mut path: Vec<String> = prefix.iter().map(|p| p.to_string()).collect();
                path.append(&mut e.path);
                e.path = path;
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
                match &e.kind {
                    figment::error::Kind::MissingField(field) => {
                        let key = if key.is_empty() { field.to_string() } else { format!("{key}.{field}") };
                        ConfigProblem { key, source, message: "required, but missing".into() }
                    }
                    kind => ConfigProblem { key, source, message: kind.to_string() },
                }
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
    limit_problems(&config.server, &mut problems);
    telemetry_problems(&config.server, &mut problems);
    if let StoreConfig::Postgres { url, .. } = &config.store
        && !(url.expose().starts_with("postgres://") || url.expose().starts_with("postgresql://"))
    {
        problems.push(problem("store.url", "must be a postgres:// URL"));
    }
    (adapters, problems)
}

/// Problems with the request limits of `[server]`: a zero limit or timeout would refuse every
/// request, or (a zero header timeout) leave connections open for ever, or (a zero link
/// lifetime) make every file link expire at once.
fn limit_problems(server: &ServerConfig, problems: &mut Vec<ConfigProblem>) {
    for (key, value) in [
        ("server.header_timeout", server.header_timeout),
        ("server.body_timeout", server.body_timeout),
        ("server.upload_timeout", server.upload_timeout),
        ("server.link_ttl", server.link_ttl),
    ] {
        if value.is_zero() {
            problems.push(problem(key, "must be more than 0 (e.g. \"10s\")"));
        }
    }
    if server.upload_timeout < server.body_timeout {
        problems.push(problem(
            "server.upload_timeout",
            format!(
                "must be at least server.body_timeout ({}): uploads are the largest bodies",
                cascade_engine::model::duration::format(server.body_timeout)
            ),
        ));
    }
    if server.max_body < 1024 {
        problems.push(problem("server.max_body", "must be at least 1024 bytes"));
    }
}

/// Problems with the trace export keys of `[server]`.
fn telemetry_problems(server: &ServerConfig, problems: &mut Vec<ConfigProblem>) {
    if let Some(url) = &server.otlp_endpoint
        && (!matches!(url.scheme(), "http" | "https") || !url.has_host())
    {
        problems.push(problem(
            "server.otlp_endpoint",
            "must be the http:// or https:// base URL of an OTLP/HTTP collector, e.g. http://127.0.0.1:4318",
        ));
    }
    for (name, value) in &server.otlp_headers {
        if !telemetry::is_header_name(name) {
            problems.push(problem(format!("server.otlp_headers.{name}"), "is not a valid HTTP header name"));
        } else if !telemetry::is_header_value(value.expose()) {
            problems.push(problem(
                format!("server.otlp_headers.{name}"),
                "must not contain control characters (line breaks)",
            ));
        }
    }
    if server.service_name.trim().is_empty() {
        problems.push(problem("server.service_name", "must not be empty"));
    }
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
    if config.server.max_upload > config.engine.max_file_size {
        tracing::warn!(
            max_upload = config.server.max_upload,
            max_file_size = config.engine.max_file_size,
            "server.max_upload is over engine.max_file_size: uploads are limited to engine.max_file_size"
        );
    }
    let mut app = App::builder(engine.clone())
        .public_url(config.server.public_url.clone())
        .secret(secret)
        .uploads(&config.server.upload_dir, config.server.max_upload)
        .allow_internal_urls(config.server.allow_internal_urls)
        .max_body(config.server.max_body)
        .header_timeout(config.server.header_timeout)
        .body_timeout(config.server.body_timeout)
        .upload_timeout(config.server.upload_timeout)
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
