//! The end-to-end harness shared by `server.rs` and `rules.rs`: the real `cascade-server`
//! binary on a free port with a SQLite file in a temporary directory, the provider sandbox
//! in-process with its webhooks pointed back at the server, one connection per sandbox
//! provider, and small helpers for the API, the sandbox's request log, callback receivers and
//! a webhook relay. [`browser`] drives a headless Chromium for the console's tests.

#![allow(dead_code)] // each test file uses its own part of the harness

pub mod browser;
pub mod load;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use cascade_sandbox::{Sandbox, SandboxConfig, Scenarios};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The API key (admin) every harness server knows.
pub const KEY: &str = "e2e-api-key-0123456789";
/// The `callback_secret` of [`KEY`].
pub const CALLBACK_SECRET: &str = "e2e-callback-secret-0123456789";
/// The Telegram webhook secret the sandbox and the server share.
pub const TELEGRAM_SECRET: &str = "e2e-telegram-webhook-secret";
/// The MAX subscription secret the sandbox and the server share.
pub const MAX_SECRET: &str = "e2e-max-webhook-secret";

/// The connection ids of the harness configuration, by channel.
pub const WA: &str = "wa";
pub const SMS: &str = "sms";
pub const TG: &str = "tg";
pub const VIBER: &str = "viber";
pub const MAX: &str = "max";

/// How long a bounded wait polls before it fails.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

pub fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("cascade-server-e2e-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&d).expect("dir");
    d
}

/// A sandbox configuration whose webhooks (statuses and replies of every provider) go to the
/// harness server on `port`.
pub fn sandbox_config(port: u16, scenarios: &str) -> SandboxConfig {
    let scenarios = Scenarios::from_toml(scenarios).expect("scenarios");
    let public = format!("http://127.0.0.1:{port}");
    let mut c = SandboxConfig { scenarios, ..SandboxConfig::default() };
    c.whatsapp.webhook_url = Some(format!("{public}/webhooks/{WA}"));
    c.telegram.webhook_url = Some(format!("{public}/webhooks/{TG}"));
    c.telegram.secret_token = Some(TELEGRAM_SECRET.to_owned());
    c.viber.webhook_url = Some(format!("{public}/webhooks/{VIBER}"));
    c.max.webhook_url = Some(format!("{public}/webhooks/{MAX}"));
    c.max.secret = Some(MAX_SECRET.to_owned());
    c.twilio.inbound_url = Some(format!("{public}/webhooks/{SMS}"));
    c
}

/// Writes the server's configuration into `dir`: SQLite there, a connection to every sandbox
/// provider with the sandbox's default credentials and a price each, the admin [`KEY`] with
/// [`CALLBACK_SECRET`], and a `default` policy (WhatsApp, then SMS, 20 s each).
pub fn write_config(dir: &Path, port: u16, sandbox: &Sandbox) -> PathBuf {
    write_config_with(dir, port, sandbox, "")
}

/// [`write_config`], with `extra` TOML appended (sections the base leaves out, such as
/// `[engine]`, or more connections); `@SANDBOX@` in it is the sandbox's URL.
pub fn write_config_with(dir: &Path, port: u16, sandbox: &Sandbox, extra: &str) -> PathBuf {
    write_config_on(dir, port, sandbox, &StoreChoice::Sqlite, extra)
}

/// Where a harness server keeps its cascades.
#[derive(Clone, Debug)]
pub enum StoreChoice {
    /// `cascade.db` in the server's directory.
    Sqlite,
    /// A schema of its own on a PostgreSQL server (see [`postgres`]).
    Postgres {
        /// The server's URL.
        url: String,
        /// The schema, created by the server at start.
        schema: String,
    },
}

impl StoreChoice {
    fn section(&self, dir: &Path) -> String {
        match self {
            StoreChoice::Sqlite => format!("kind = \"sqlite\"\npath = \"{}/cascade.db\"", dir.display()),
            StoreChoice::Postgres { url, schema } => {
                format!("kind = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}\"\nmax_connections = 4")
            }
        }
    }
}

/// The PostgreSQL server the tests use (`CASCADE_TEST_DATABASE_URL`, by default the local
/// `test` database) with a new schema name, when it answers. Outside CI an unreachable server
/// skips the test, saying so loudly; in CI (`CI=true`) it fails it.
pub async fn postgres() -> Option<StoreChoice> {
    let url =
        std::env::var("CASCADE_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    match sqlx::postgres::PgPool::connect(&url).await {
        Ok(pool) => pool.close().await,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("PostgreSQL at {url} is required in CI: {e}")
        }
        Err(e) => {
            eprintln!("\n*** PostgreSQL at {url} cannot be reached ({e}): this test is SKIPPED ***\n");
            return None;
        }
    }
    let schema = format!("e2e_{}_{}", std::process::id(), free_port());
    Some(StoreChoice::Postgres { url, schema })
}

/// Drops the schema of a [`StoreChoice::Postgres`] (nothing for SQLite).
pub async fn drop_store(store: &StoreChoice) {
    if let StoreChoice::Postgres { url, schema } = store
        && let Ok(pool) = sqlx::postgres::PgPool::connect(url).await
    {
        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&pool).await;
        pool.close().await;
    }
}

/// [`write_config_with`] on the given store. Several servers may share one PostgreSQL schema:
/// give each its own `dir` and `port`.
pub fn write_config_on(dir: &Path, port: u16, sandbox: &Sandbox, store: &StoreChoice, extra: &str) -> PathBuf {
    let store = store.section(dir);
    let public = format!("http://127.0.0.1:{port}");
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "{public}"
secret = "e2e-secret-0123456789abcdef0123456789"
upload_dir = "{dir}/uploads"
allow_internal_urls = true
shutdown_grace = "5s"

[store]
{store}

[callbacks]
initial_backoff = "1s"
poll_interval = "100ms"
timeout = "5s"

[api_keys.e2e]
key = "{KEY}"
scopes = ["admin"]
callback_secret = "{CALLBACK_SECRET}"

[connections.{WA}]
adapter = "whatsapp-cloud"
access_token = "{wa_token}"
phone_number_id = "{wa_phone}"
app_secret = "{wa_secret}"
base_url = "{wa_base}"
price = "0.0085"

[connections.{SMS}]
adapter = "twilio"
account_sid = "{tw_sid}"
auth_token = "{tw_token}"
from = "+15550009999"
status_callback = "{public}/webhooks/{SMS}"
base_url = "{tw_base}"
price = "0.0079"

[connections.{TG}]
adapter = "telegram-bot"
bot_token = "{tg_token}"
webhook_secret = "{TELEGRAM_SECRET}"
base_url = "{tg_base}"

[connections.{VIBER}]
adapter = "viber-bot"
auth_token = "{viber_token}"
sender_name = "Cascade E2E"
base_url = "{viber_base}"
price = "0.01"

[connections.{MAX}]
adapter = "max-bot"
access_token = "{max_token}"
webhook_secret = "{MAX_SECRET}"
base_url = "{max_base}"

[policies.default]
steps = [
  {{ channel = "whatsapp", until = "delivered", timeout = "20s" }},
  {{ channel = "sms", until = "delivered", timeout = "20s" }},
]
"#,
        dir = dir.display(),
        wa_token = cascade_sandbox::DEFAULT_WHATSAPP_TOKEN,
        wa_phone = cascade_sandbox::DEFAULT_WHATSAPP_PHONE_NUMBER_ID,
        wa_secret = cascade_sandbox::DEFAULT_WHATSAPP_APP_SECRET,
        wa_base = sandbox.base_url("whatsapp"),
        tw_sid = cascade_sandbox::DEFAULT_TWILIO_ACCOUNT_SID,
        tw_token = cascade_sandbox::DEFAULT_TWILIO_AUTH_TOKEN,
        tw_base = sandbox.base_url("twilio"),
        tg_token = cascade_sandbox::DEFAULT_TELEGRAM_TOKEN,
        tg_base = sandbox.base_url("telegram"),
        viber_token = cascade_sandbox::DEFAULT_VIBER_TOKEN,
        viber_base = sandbox.base_url("viber"),
        max_token = cascade_sandbox::DEFAULT_MAX_TOKEN,
        max_base = sandbox.base_url("max"),
    );
    let path = dir.join("cascade.toml");
    std::fs::write(&path, text + &extra.replace("@SANDBOX@", &sandbox.url())).expect("config");
    path
}

/// The `cascade-server` binary, killed when dropped. Its stderr goes to `server.log` beside
/// the configuration file.
pub struct Server {
    child: Child,
    pub base: String,
    log: PathBuf,
}

impl Server {
    pub async fn start(config: &Path, port: u16) -> Self {
        Self::try_start(config, port).await.unwrap_or_else(|log| panic!("the server exited with {log}"))
    }

    /// [`Server::start`]; `Err` with its status and log if the server exits while starting.
    pub async fn try_start(config: &Path, port: u16) -> Result<Self, String> {
        let log = config.with_file_name("server.log");
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_cascade-server"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(Self { child, base, log });
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("{status}:\n{}", std::fs::read_to_string(&log).unwrap_or_default()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server did not become ready:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    }

    /// The server process's id (its memory is in `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.stop("TERM")
    }

    /// Sends `signal` (`TERM`, `KILL`) and waits (at most 10 s) for the exit status.
    pub fn stop(&mut self, signal: &str) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args([format!("-{signal}").as_str(), &pid]).status().expect("kill");
        assert!(status.success());
        for _ in 0..200 {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("the server did not stop within 10 s of SIG{signal}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `/v1` API of a server, with [`KEY`].
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Self {
        Self { base: base.to_owned(), client: reqwest::Client::new() }
    }

    /// `POST /v1/cascades`, with an `Idempotency-Key` if given.
    pub async fn post(&self, body: &Value, idempotency_key: Option<&str>) -> reqwest::Response {
        let mut call = self.client.post(format!("{}/v1/cascades", self.base)).bearer_auth(KEY).json(body);
        if let Some(key) = idempotency_key {
            call = call.header("idempotency-key", key);
        }
        call.send().await.expect("POST /v1/cascades")
    }

    /// Starts a cascade (which must be accepted) and returns its id.
    pub async fn start(&self, body: &Value) -> String {
        let response = self.post(body, None).await;
        let status = response.status();
        let answer: Value = response.json().await.expect("json");
        assert_eq!(status, 202, "{answer}");
        answer["id"].as_str().expect("id").to_owned()
    }

    /// `GET /v1/cascades/{id}`.
    pub async fn get(&self, id: &str) -> Value {
        let response =
            self.client.get(format!("{}/v1/cascades/{id}", self.base)).bearer_auth(KEY).send().await.expect("GET");
        assert_eq!(response.status(), 200, "GET /v1/cascades/{id}");
        response.json().await.expect("json")
    }

    /// `GET /v1/cascades`: the first page.
    pub async fn list(&self) -> Value {
        let response =
            self.client.get(format!("{}/v1/cascades", self.base)).bearer_auth(KEY).send().await.expect("list");
        assert_eq!(response.status(), 200, "GET /v1/cascades");
        response.json().await.expect("json")
    }

    /// `POST /v1/cascades/{id}/cancel`.
    pub async fn cancel(&self, id: &str) -> Value {
        let response = self
            .client
            .post(format!("{}/v1/cascades/{id}/cancel", self.base))
            .bearer_auth(KEY)
            .send()
            .await
            .expect("cancel");
        assert_eq!(response.status(), 200, "cancel {id}");
        response.json().await.expect("json")
    }

    /// Polls the cascade until `done` holds (at most [`WAIT`]), and returns it.
    pub async fn wait_for(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let view = self.get(id).await;
            if done(&view) {
                return view;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("cascade {id}: no {what} within {WAIT:?}: {view:#}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls the cascade until its state is `state`.
    pub async fn wait_state(&self, id: &str, state: &str) -> Value {
        self.wait_for(id, &format!("state {state:?}"), |v| v["state"] == state).await
    }
}

/// Whether two addresses are the same contact, compared as the sandbox compares them.
pub fn same_address(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.trim_start_matches("whatsapp:").chars().filter(|c| !matches!(c, '+' | ' ' | '-')).collect::<String>()
    };
    norm(a) == norm(b)
}

/// Sends the sandbox received for `provider` (`whatsapp`, `sms`, `telegram`, `viber`,
/// `max`) addressed to `address`, whatever it answered.
pub fn sends_to(sandbox: &Sandbox, provider: &str, address: &str) -> usize {
    sandbox
        .requests()
        .iter()
        .filter(|r| r.provider == provider && r.recipient.as_deref().is_some_and(|to| same_address(to, address)))
        .count()
}

/// Sends the sandbox received for `provider`, to anyone.
pub fn sends(sandbox: &Sandbox, provider: &str) -> usize {
    sandbox.requests().iter().filter(|r| r.provider == provider && r.recipient.is_some()).count()
}

/// A server and its sandbox, one per test: its own port, temporary directory and SQLite file.
/// The directory is removed when the test passes and kept (with `server.log`) when it fails.
pub struct System {
    pub sandbox: Sandbox,
    pub server: Server,
    pub api: Api,
    pub port: u16,
    pub dir: PathBuf,
    pub config: PathBuf,
}

impl System {
    /// A system whose sandbox follows `scenarios` (TOML, docs/sandbox.md).
    pub async fn start(scenarios: &str) -> Self {
        Self::start_with(scenarios, "").await
    }

    /// [`System::start`], with `extra` TOML appended to the server's configuration.
    /// A port found free may be taken (by another test's listener) before the server binds
    /// it: then it starts again on another, up to three times.
    pub async fn start_with(scenarios: &str, extra: &str) -> Self {
        let mut tries = 0;
        loop {
            tries += 1;
            let port = free_port();
            match Self::try_start_on_store(port, sandbox_config(port, scenarios), &StoreChoice::Sqlite, extra).await {
                Ok(system) => return system,
                Err(log) if tries < 3 && log.contains("Address already in use") => continue,
                Err(log) => panic!("the server exited with {log}"),
            }
        }
    }

    /// A system on `port` with this sandbox configuration (from [`sandbox_config`], adjusted)
    /// and `extra` TOML appended to the server's configuration.
    pub async fn start_on(port: u16, sandbox: SandboxConfig, extra: &str) -> Self {
        Self::start_on_store(port, sandbox, &StoreChoice::Sqlite, extra).await
    }

    /// [`System::start_on`] with the cascades kept in `store`.
    pub async fn start_on_store(port: u16, sandbox: SandboxConfig, store: &StoreChoice, extra: &str) -> Self {
        Self::try_start_on_store(port, sandbox, store, extra)
            .await
            .unwrap_or_else(|log| panic!("the server exited with {log}"))
    }

    async fn try_start_on_store(
        port: u16,
        sandbox: SandboxConfig,
        store: &StoreChoice,
        extra: &str,
    ) -> Result<Self, String> {
        let sandbox = Sandbox::start(sandbox).await.expect("sandbox");
        let dir = temp_dir();
        let config = write_config_on(&dir, port, &sandbox, store, extra);
        let server = Server::try_start(&config, port).await?;
        let api = Api::new(&server.base);
        Ok(Self { sandbox, server, api, port, dir, config })
    }

    /// Stops the server with SIGKILL (`kill`) or SIGTERM, and starts it again on the same
    /// configuration, store and port.
    pub async fn restart(&mut self, kill: bool) -> std::process::ExitStatus {
        let status = self.server.stop(if kill { "KILL" } else { "TERM" });
        self.server = Server::start(&self.config, self.port).await;
        status
    }

    /// `http://127.0.0.1:PORT/webhooks/{connection}`.
    pub fn webhook_url(&self, connection: &str) -> String {
        format!("{}/webhooks/{connection}", self.server.base)
    }

    pub fn sends_to(&self, provider: &str, address: &str) -> usize {
        sends_to(&self.sandbox, provider, address)
    }

    pub fn sends(&self, provider: &str) -> usize {
        sends(&self.sandbox, provider)
    }
}

impl Drop for System {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("the server's directory (config, SQLite, server.log) is kept: {}", self.dir.display());
            eprintln!("server.log:\n{}", self.server.log());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One HTTP request a test server received.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A callback receiver on 127.0.0.1: answers every POST with 200 and hands it to the test.
pub struct Receiver {
    pub url: String,
    rx: mpsc::UnboundedReceiver<Received>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let url = format!("http://{}/callback", listener.local_addr().expect("addr"));
        let app = axum::Router::new().route(
            "/callback",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(Received { headers, body });
                    "ok"
                }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, rx, task }
    }

    /// The next request (at most [`WAIT`]).
    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.rx.recv()).await.expect("no callback in time").expect("receiver open")
    }

    /// A request arriving within `within`, if any.
    pub async fn try_next(&mut self, within: Duration) -> Option<Received> {
        tokio::time::timeout(within, self.rx.recv()).await.ok().flatten()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One webhook that went through a [`Relay`], with the answer it got.
#[derive(Clone, Debug)]
pub struct Relayed {
    pub request: Received,
    pub status: u16,
    pub answer: Value,
}

/// Stands between a provider and the server: forwards each webhook unchanged (body and
/// headers, so signatures still verify) to `target`, answers with the server's answer, and
/// keeps a copy of both.
pub struct Relay {
    pub url: String,
    seen: Arc<Mutex<Vec<Relayed>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub async fn start(target: String) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let url = format!("http://{}/relay", listener.local_addr().expect("addr"));
        let client = reqwest::Client::new();
        let log = seen.clone();
        let app = axum::Router::new().route(
            "/relay",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (client, target, log) = (client.clone(), target.clone(), log.clone());
                async move {
                    let mut call = client.post(&target).body(body.clone());
                    for (name, value) in &headers {
                        if name != "host" && name != "content-length" {
                            call = call.header(name, value);
                        }
                    }
                    // A server that is gone (the test is over) is a 502, as from a proxy.
                    let (status, text) = match call.send().await {
                        Ok(response) => (response.status().as_u16(), response.text().await.unwrap_or_default()),
                        Err(e) => (502, e.to_string()),
                    };
                    let answer = serde_json::from_str(&text).unwrap_or(json!(text));
                    log.lock().expect("relay log").push(Relayed {
                        request: Received { headers, body },
                        status,
                        answer: answer.clone(),
                    });
                    (axum::http::StatusCode::from_u16(status).expect("status"), axum::Json(answer))
                }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, seen, task }
    }

    /// Everything relayed so far.
    pub fn seen(&self) -> Vec<Relayed> {
        self.seen.lock().expect("relay log").clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The body of a start request: `contact` (an object, or a phone number), a text, and a
/// policy of the request's own with these `steps` and a one-minute TTL.
pub fn request(contact: Value, steps: Value) -> Value {
    let contact = match contact {
        Value::String(phone) => json!({"name": "Ann", "phone": phone}),
        other => other,
    };
    json!({
        "contact": contact,
        "message": {"text": "Hi {{contact.name}}"},
        "policy": {"steps": steps, "ttl": "1m"},
    })
}

/// The attempts' channels, in order.
pub fn channels(view: &Value) -> Vec<String> {
    view["attempts"].as_array().expect("attempts").iter().map(|a| a["channel"].as_str().unwrap_or("?").into()).collect()
}

/// The statuses of attempt `number` (from 1), in arrival order (none while there is no such
/// attempt).
pub fn statuses(view: &Value, number: usize) -> Vec<String> {
    view["attempts"][number - 1]["statuses"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .map(|s| s["status"].as_str().unwrap_or("?").into())
        .collect()
}

/// The timeline's event types, in order.
pub fn event_types(view: &Value) -> Vec<String> {
    view["events"].as_array().expect("events").iter().map(|e| e["type"].as_str().unwrap_or("?").into()).collect()
}

/// The timeline's events of one type.
pub fn events_of<'a>(view: &'a Value, kind: &str) -> Vec<&'a Value> {
    view["events"].as_array().expect("events").iter().filter(|e| e["type"] == kind).collect()
}
