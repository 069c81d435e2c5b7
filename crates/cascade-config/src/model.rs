//! The configuration file's shape: every key, its default, and what it means.
//! `docs/configuration.md` documents the same keys for users.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cascade_channel_kit::Secret;
use cascade_engine::{EngineConfig, Policy};
use cascade_http::auth::Scope;
use cascade_http::callbacks::CallbackSettings;
use serde::Deserialize;

/// The whole configuration (`cascade.toml` plus `CASCADE_*` overrides).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The HTTP server.
    #[serde(default)]
    pub server: ServerConfig,
    /// Where cascades are kept.
    #[serde(default)]
    pub store: StoreConfig,
    /// Engine settings (timeouts, leases, retention…).
    #[serde(default)]
    pub engine: EngineConfig,
    /// Callback delivery.
    #[serde(default)]
    pub callbacks: CallbackSettings,
    /// API keys by name.
    #[serde(default)]
    pub api_keys: BTreeMap<String, ApiKeyConfig>,
    /// Connections (sender accounts) by id.
    #[serde(default)]
    pub connections: BTreeMap<String, ConnectionConfig>,
    /// Named policies.
    #[serde(default)]
    pub policies: BTreeMap<String, Policy>,
    /// Kommo SalesBot (`POST /kommo/widget_request`); absent: the endpoint answers 404.
    #[serde(default)]
    pub kommo: Option<cascade_kommo::KommoConfig>,
}

impl Config {
    /// What a valid configuration holds, in a few words:
    /// `3 connection(s), 2 polic(ies), 1 API key(s)`.
    pub fn summary(&self) -> String {
        format!(
            "{} connection(s), {} polic(ies), {} API key(s)",
            self.connections.len(),
            self.policies.len(),
            self.api_keys.len()
        )
    }
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The address to listen on (`127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// The URL providers and contacts reach this server at; webhook URLs, file links and
    /// tracked links are made from it (`http://127.0.0.1:8080`).
    pub public_url: url::Url,
    /// Signs file links and tracked links (`/l/…` under `public_url`); 32 characters or more.
    /// Without it a random one is made at start, and links stop working across restarts.
    pub secret: Option<Secret>,
    /// Where uploads are kept (`data/uploads`).
    pub upload_dir: PathBuf,
    /// The largest upload in bytes (100 MB, 100,000,000 bytes); at most `engine.max_file_size`,
    /// to which a larger value is lowered.
    pub max_upload: u64,
    /// The largest JSON body in bytes (1 MiB).
    pub max_body: usize,
    /// How long a client has to send a request's headers; an idle kept-alive connection is
    /// closed after as long (10 s).
    #[serde(with = "cascade_engine::model::duration")]
    pub header_timeout: Duration,
    /// How long a request's body may take to arrive, from the end of its headers (30 s).
    #[serde(with = "cascade_engine::model::duration")]
    pub body_timeout: Duration,
    /// How long an upload's body may take to arrive (`POST /v1/uploads`, the console's
    /// campaign form; 10 minutes).
    #[serde(with = "cascade_engine::model::duration")]
    pub upload_timeout: Duration,
    /// How long file links stay valid (7 days); an upload no request has named for this long
    /// (and an hour) is deleted.
    #[serde(with = "cascade_engine::model::duration")]
    pub link_ttl: Duration,
    /// Let callbacks and media URLs reach loopback and private networks (the demo does).
    pub allow_internal_urls: bool,
    /// `text` or `json` log lines.
    pub log_format: LogFormat,
    /// The log filter (`info`, `cascade_engine=debug,info`, …); `RUST_LOG` wins.
    pub log_level: String,
    /// How long a SIGTERM waits for sends in flight (30 s).
    #[serde(with = "cascade_engine::model::duration")]
    pub shutdown_grace: Duration,
    /// An OpenTelemetry collector's OTLP/HTTP base URL (`http://127.0.0.1:4318`): the
    /// server's spans are exported to `{otlp_endpoint}/v1/traces`. None: no trace export.
    pub otlp_endpoint: Option<url::Url>,
    /// Headers sent with every trace export (a collector's API key), by name.
    pub otlp_headers: BTreeMap<String, Secret>,
    /// The `service.name` exported traces carry (`cascade-server`).
    pub service_name: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: url::Url::parse("http://127.0.0.1:8080/").unwrap_or_else(|_| unreachable!()),
            secret: None,
            upload_dir: PathBuf::from("data/uploads"),
            max_upload: cascade_http::DEFAULT_MAX_UPLOAD,
            max_body: cascade_http::DEFAULT_MAX_BODY,
            header_timeout: cascade_http::limits::DEFAULT_HEADER_TIMEOUT,
            body_timeout: cascade_http::limits::DEFAULT_BODY_TIMEOUT,
            upload_timeout: cascade_http::limits::DEFAULT_UPLOAD_TIMEOUT,
            link_ttl: Duration::from_secs(7 * 86_400),
            allow_internal_urls: false,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            shutdown_grace: Duration::from_secs(30),
            otlp_endpoint: None,
            otlp_headers: BTreeMap::new(),
            service_name: "cascade-server".into(),
        }
    }
}

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// For people.
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// `[store]`: `kind = "sqlite"` (default), `"postgres"` or `"memory"`.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    /// One SQLite file in WAL mode.
    Sqlite {
        /// The file (`cascade.db`), created if missing.
        #[serde(default = "default_sqlite_path")]
        path: PathBuf,
        /// `full` (fsync every commit, the default) or `normal`.
        #[serde(default)]
        durability: cascade_store_sql::Durability,
    },
    /// PostgreSQL, shared by several server instances.
    Postgres {
        /// A `postgres://` URL.
        url: Secret,
        /// The schema for cascade's tables (created if missing).
        #[serde(default)]
        schema: Option<String>,
        /// Connections for reads (8).
        #[serde(default)]
        max_connections: Option<u32>,
    },
    /// In memory: lost on exit. For tests and trying things out.
    Memory,
}

fn default_sqlite_path() -> PathBuf {
    PathBuf::from("cascade.db")
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::Sqlite { path: default_sqlite_path(), durability: Default::default() }
    }
}

/// `[api_keys.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The key's hash, `sha256:` and 64 hex digits (`cascade-server --hash-key KEY` prints it).
    #[serde(default)]
    pub hash: Option<String>,
    /// The key itself, for keys given through the environment; hashed at once.
    #[serde(default)]
    pub key: Option<Secret>,
    /// `send`, `read`, `admin`.
    pub scopes: Vec<Scope>,
    /// Signs the callbacks of cascades started with this key.
    #[serde(default)]
    pub callback_secret: Option<Secret>,
    /// Requests per second allowed (none: unlimited).
    #[serde(default)]
    pub rate_limit: Option<u32>,
}

/// `[connections.ID]`: `adapter` chooses the provider; the other keys are the adapter's.
#[derive(Debug, Deserialize)]
#[serde(tag = "adapter")]
#[allow(clippy::large_enum_variant)]
pub enum ConnectionConfig {
    /// WhatsApp Cloud API.
    #[serde(rename = "whatsapp-cloud")]
    WhatsApp(cascade_whatsapp::WhatsAppConfig),
    /// Telegram Bot API.
    #[serde(rename = "telegram-bot")]
    Telegram(cascade_telegram::TelegramConfig),
    /// Twilio Programmable Messaging (SMS/MMS).
    #[serde(rename = "twilio")]
    Twilio(cascade_sms_twilio::TwilioConfig),
    /// Viber bots.
    #[serde(rename = "viber-bot")]
    Viber(cascade_viber::ViberConfig),
    /// MAX bots.
    #[serde(rename = "max-bot")]
    Max(cascade_max::MaxConfig),
    /// Email over SMTP.
    #[serde(rename = "smtp")]
    Email(cascade_email::EmailConfig),
    /// Any HTTP endpoint of yours (the generic webhook channel).
    #[serde(rename = "webhook")]
    Webhook(cascade_webhook::WebhookConfig),
}
