//! Scenarios `http` and `webhook`: a real cascade-http server (`axum::serve` on a loopback
//! port, as `cascade-server` runs it) over a SQLite file with full durability, one connection
//! per channel with stub channels that accept at once, and reqwest clients on keep-alive
//! connections. Server and clients are in this process on runtimes of their own (two worker
//! threads each), so the clients' work shares the machine's cores with the server's.
//!
//! - `http`: many clients `POST /v1/cascades` with an API key, each waiting for its answer
//!   before sending the next request.
//! - `webhook`: each cascade's WhatsApp send is accepted, then a signed WhatsApp `failed`
//!   status is posted to `/webhooks/{connection}`; the figure is the time from sending that
//!   request to the moment the SMS channel's `send` is called.
//!
//! The server, the clients and the measuring pieces here also serve the `load` scenario.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cascade_channel_kit::webhook::hmac_sha256;
use cascade_engine::{
    Accepted, CascadeId, Channel, ChannelInfo, Connection, Engine, EventKind, Policy, SendError, SendRequest, Status,
    Step,
};
use cascade_http::auth::{ApiKey, Scope};
use cascade_http::{App, Workers};
use cascade_store_sql::{SqliteStore, WriterStats};
use cascade_testkit::{StubChannel, caps};
use tokio::runtime::Runtime;
use tokio::sync::{broadcast, oneshot};

use crate::durable::Scratch;
use crate::report;
use crate::wire::{self, Wire};

/// The API key of the bench's clients (scopes `send` and `read`).
pub(crate) const SEND_KEY: &str = "bench-send-key-0123456789";
const APP_SECRET: &str = "bench-whatsapp-app-secret";
/// The WhatsApp connection, whose webhooks are taken at `/webhooks/wa-main`.
pub(crate) const WHATSAPP: &str = "wa-main";
/// The SMS connection, whose Twilio status callbacks are taken at `/webhooks/sms-main`.
pub(crate) const SMS: &str = "sms-main";
/// The Twilio auth token the SMS connection's status callbacks are signed with.
const TWILIO_TOKEN: &str = "bench-twilio-auth-token";
/// Thread names: the server's runtime and the clients' runtime.
const SERVER_THREADS: &str = "cascade-server";
pub(crate) const CLIENT_THREADS: &str = "bench-client";

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn runtime(threads: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(threads)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The server: an app over a SQLite file in a scratch directory, served on a loopback port by
/// a runtime of its own.
pub(crate) struct Server {
    rt: Runtime,
    pub(crate) app: App,
    pub(crate) addr: SocketAddr,
    workers: Workers,
    serve: tokio::task::JoinHandle<()>,
    pub(crate) writes: Arc<WriterStats>,
    scratch: Scratch,
}

/// A stub `whatsapp` channel with WhatsApp Cloud's adapter name, so that the real WhatsApp
/// webhook intake matches its sends. It keeps every send it was given.
fn whatsapp_stub() -> StubChannel {
    StubChannel::with_adapter("whatsapp", cascade_whatsapp::ADAPTER, caps::whatsapp())
}

impl Server {
    /// Starts a server with the channels `whatsapp` (connection `wa-main`, whose adapter
    /// should be WhatsApp Cloud's) and `sms` (connection `sms-main`, Twilio's for its status
    /// callbacks), the real webhook intakes of both, and an API key with scopes `send` and
    /// `read`. The policy `default` is [whatsapp until delivered, sms]. `on_start` runs on the
    /// server's runtime before it takes requests.
    pub(crate) fn start(whatsapp: impl Channel, sms: impl Channel, on_start: impl FnOnce(&App)) -> Self {
        let scratch = Scratch::new();
        let rt = runtime(SERVER_THREADS);
        let path = scratch.0.join("http.db");
        let (app, addr, workers, serve, writes) = rt.block_on(async move {
            // Durability `full` (the default): every commit is fsynced.
            let store = SqliteStore::open(&path).await.expect("open sqlite");
            let writes = store.writer_stats();
            let engine = Engine::builder()
                .store(Arc::new(store))
                .connection(Connection::new(WHATSAPP, whatsapp))
                .connection(Connection::new(SMS, sms))
                .build()
                .expect("engine");
            let policy = Policy::new([
                Step::new("whatsapp").until(Status::Delivered).timeout(Duration::from_secs(3600)),
                Step::new("sms"),
            ]);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
            let addr = listener.local_addr().expect("local address");
            // Twilio signs the URL it calls: the server must know its own.
            let public_url = reqwest::Url::parse(&format!("http://{addr}/")).expect("public URL");
            let app = App::builder(engine)
                .policy("default", policy)
                .intake(WHATSAPP, whatsapp_intake())
                .intake(SMS, twilio_intake())
                .api_key(ApiKey::from_plain("bench", SEND_KEY, [Scope::Send, Scope::Read]))
                .secret(b"bench-secret-0123456789abcdef-0123456789".to_vec())
                .public_url(public_url)
                .build();
            on_start(&app);
            let workers = app.spawn_workers();
            let router = app.router();
            let serve = tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
            (app, addr, workers, serve, writes)
        });
        Self { rt, app, addr, workers, serve, writes, scratch }
    }

    /// The URL of `path` on this server.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Runs `f` on the server's runtime.
    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Stops serving, lets sends in flight finish, and removes the database.
    pub(crate) fn stop(self) {
        let Self { rt, app, workers, serve, scratch, .. } = self;
        rt.block_on(async move {
            serve.abort();
            app.engine().shutdown(Duration::from_secs(10)).await;
            workers.stop().await;
            drop(app);
        });
        rt.shutdown_timeout(Duration::from_secs(5));
        drop(scratch);
    }
}

/// The real WhatsApp Cloud adapter, used only for its webhook intake (its API is never called).
fn whatsapp_intake() -> Arc<cascade_whatsapp::WhatsApp> {
    let mut c = cascade_whatsapp::WhatsAppConfig::new("token", "100000000000001");
    c.app_secret = Some(APP_SECRET.into());
    c.base_url = "http://127.0.0.1:9".into();
    Arc::new(cascade_whatsapp::WhatsApp::new(c).expect("WhatsApp config"))
}

/// The real Twilio adapter, used only for its webhook intake (its API is never called).
fn twilio_intake() -> Arc<cascade_sms_twilio::Twilio> {
    let mut c =
        cascade_sms_twilio::TwilioConfig::new("AC00000000000000000000000000000001", TWILIO_TOKEN, "+15550001111");
    c.base_url = "http://127.0.0.1:9".into();
    Arc::new(cascade_sms_twilio::Twilio::new(c).expect("Twilio config"))
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("HTTP client")
}

fn start_body(i: usize) -> String {
    serde_json::json!({
        "contact": {"name": "Ann", "phone": format!("+1555{:07}", i % 10_000_000)},
        "message": {"text": "Hi {{contact.name}}, your order has shipped"},
        "policy": "default"
    })
    .to_string()
}

pub(crate) fn post_start(client: &reqwest::Client, url: &str, i: usize) -> reqwest::RequestBuilder {
    client.post(url).bearer_auth(SEND_KEY).header("content-type", "application/json").body(start_body(i))
}

/// The same request as [`post_start`], as bytes for a [`Wire`].
fn start_request(addr: SocketAddr, i: usize) -> Vec<u8> {
    wire::post(addr, "/v1/cascades", SEND_KEY, &start_body(i))
}

/// The `q` quantile (nearest rank) of sorted microseconds, in milliseconds.
pub(crate) fn quantile_ms(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1]) / 1000.0
}

pub(crate) fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// CPU seconds used so far by this process's threads (`/proc/self/task/*/schedstat`): the
/// server's runtime, the SQLite store's threads, the clients' runtime, and the rest.
pub(crate) fn cpu_seconds() -> [f64; 4] {
    let mut by = [0.0; 4];
    for thread in crate::cpu::threads().into_values() {
        let name = thread.name;
        let group = if name.starts_with(SERVER_THREADS) {
            0
        } else if crate::cpu::is_sqlite(&name) {
            1
        } else if name.starts_with(CLIENT_THREADS) {
            2
        } else {
            3
        };
        by[group] += thread.seconds;
    }
    by
}

/// CPU used between two readings, as percent of one core over `wall`.
pub(crate) fn report_cpu(scenario: &str, before: [f64; 4], after: [f64; 4], wall: Duration) {
    let names = ["server_cpu_pct", "sqlite_cpu_pct", "client_cpu_pct", "other_cpu_pct"];
    for (i, name) in names.iter().enumerate() {
        report(scenario, name, ((after[i] - before[i]) / wall.as_secs_f64() * 100.0).round());
    }
}

/// Runs scenario `http`: `count` `POST /v1/cascades` (default 20,000) from `clients`
/// concurrent clients (default 64), each on its own keep-alive connection.
pub fn http(count: Option<usize>, clients: Option<usize>) {
    let n = count.unwrap_or(20_000);
    let clients = clients.unwrap_or(64).clamp(1, n);
    let server = Server::start(whatsapp_stub(), StubChannel::new("sms", caps::sms()), |_| {});
    let addr = server.addr;
    let writes = server.writes.clone();
    let rt = runtime(CLIENT_THREADS);
    let (wall, mut latencies, non_202, cpu, commits) = rt.block_on(async move {
        // Each client opens its connection with one request, not counted.
        let mut warm = tokio::task::JoinSet::new();
        for c in 0..clients {
            warm.spawn(async move {
                let mut wire = Wire::connect(addr).await.expect("connect to the server");
                let answer = wire.call(&start_request(addr, n + c)).await.expect("warm-up request");
                assert_eq!(answer.status, 202, "warm-up request: {}", String::from_utf8_lossy(&answer.body));
                wire
            });
        }
        let wires = warm.join_all().await;

        let next = Arc::new(AtomicUsize::new(0));
        let cpu_before = cpu_seconds();
        let commits_before = (writes.writes(), writes.batches());
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for mut wire in wires {
            let next = next.clone();
            tasks.spawn(async move {
                let mut latencies = Vec::with_capacity(n / clients + 1);
                let mut non_202 = 0usize;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let request = start_request(addr, i);
                    let sent = Instant::now();
                    match wire.call(&request).await {
                        Ok(answer) => {
                            latencies.push(micros(sent.elapsed()));
                            if answer.status != 202 {
                                if non_202 == 0 {
                                    eprintln!(
                                        "http: answer {}: {}",
                                        answer.status,
                                        String::from_utf8_lossy(&answer.body)
                                    );
                                }
                                non_202 += 1;
                            }
                        }
                        Err(e) => {
                            // The connection is no longer usable: this client stops.
                            eprintln!("http: request failed: {e}");
                            non_202 += 1;
                            break;
                        }
                    }
                }
                (latencies, non_202)
            });
        }
        let mut all = Vec::with_capacity(n);
        let mut non_202 = 0;
        for (latencies, failed) in tasks.join_all().await {
            all.extend(latencies);
            non_202 += failed;
        }
        let wall = start.elapsed();
        let commits = (writes.writes() - commits_before.0, writes.batches() - commits_before.1);
        (wall, all, non_202, (cpu_before, cpu_seconds()), commits)
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    server.stop();

    latencies.sort_unstable();
    report("http", "requests_per_sec", (n as f64 / wall.as_secs_f64()).round());
    report("http", "p50_ms", quantile_ms(&latencies, 0.50));
    report("http", "p99_ms", quantile_ms(&latencies, 0.99));
    report("http", "non_202", non_202 as f64);
    if commits.1 > 0 {
        report("http", "writes_per_commit", commits.0 as f64 / commits.1 as f64);
    }
    report_cpu("http", cpu.0, cpu.1, wall);
}

/// The time `send` is called, per cascade, for those a waiter asked about.
type SendTimes = Arc<Mutex<HashMap<CascadeId, oneshot::Sender<Instant>>>>;

/// A stub channel that tells, per cascade, when its `send` was called.
#[derive(Debug)]
struct Timed {
    stub: StubChannel,
    waiters: SendTimes,
}

#[async_trait]
impl Channel for Timed {
    fn info(&self) -> &ChannelInfo {
        self.stub.info()
    }

    async fn send(&self, request: &SendRequest) -> Result<Accepted, SendError> {
        let called = Instant::now();
        if let Some(tx) = lock(&self.waiters).remove(&request.cascade_id) {
            let _ = tx.send(called);
        }
        self.stub.send(request).await
    }
}

/// Provider ids of accepted WhatsApp sends, per cascade: there already, or awaited.
enum Slot {
    Ready(String),
    Waiting(oneshot::Sender<String>),
}

type AcceptedIds = Arc<Mutex<HashMap<CascadeId, Slot>>>;

/// Fills `ids` from the engine's events: a WhatsApp send's `accepted`, once it is recorded.
async fn collect_accepted(mut events: broadcast::Receiver<cascade_engine::EngineEvent>, ids: AcceptedIds) {
    loop {
        match events.recv().await {
            Ok(e) => {
                let EventKind::Accepted { provider_message_id, .. } = e.event.kind else { continue };
                if !provider_message_id.starts_with(cascade_whatsapp::ADAPTER) {
                    continue;
                }
                let mut ids = lock(&ids);
                match ids.remove(&e.cascade) {
                    Some(Slot::Waiting(tx)) => {
                        let _ = tx.send(provider_message_id);
                    }
                    _ => {
                        ids.insert(e.cascade, Slot::Ready(provider_message_id));
                    }
                }
            }
            Err(broadcast::error::RecvError::Lagged(k)) => eprintln!("webhook: {k} engine events missed"),
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}

async fn accepted_id(ids: &AcceptedIds, cascade: CascadeId) -> String {
    let rx = {
        let mut map = lock(ids);
        match map.remove(&cascade) {
            Some(Slot::Ready(id)) => return id,
            _ => {
                let (tx, rx) = oneshot::channel();
                map.insert(cascade, Slot::Waiting(tx));
                rx
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("the WhatsApp send accepted within 10 s")
        .expect("the event collector is running")
}

/// A WhatsApp Cloud status webhook for `provider_message_id`: `delivered`, or (if `failed`)
/// `failed` with the error WhatsApp gives for a number that is not on WhatsApp (131026,
/// classified `unreachable`).
pub(crate) fn whatsapp_status(provider_message_id: &str, failed: bool) -> Vec<u8> {
    let mut status = serde_json::json!({
        "id": provider_message_id, "status": "delivered", "timestamp": "1700000000",
        "recipient_id": "15551234567"
    });
    if failed {
        status["status"] = "failed".into();
        status["errors"] = serde_json::json!([{"code": 131026, "title": "Message undeliverable",
            "message": "Message undeliverable", "error_data": {"details": "Message Undeliverable."}}]);
    }
    serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": "100000000000001"},
            "statuses": [status]
        }}]}]
    })
    .to_string()
    .into_bytes()
}

/// `X-Hub-Signature-256` of a body.
pub(crate) fn sign(body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(APP_SECRET.as_bytes(), body)))
}

/// A Twilio status callback for `message_sid`, posted to `url`: its form parameters and its
/// `X-Twilio-Signature`. `delivered`, or (if `failed`) `undelivered` with error 30005 (unknown
/// handset, classified `unreachable`).
pub(crate) fn twilio_status(url: &str, message_sid: &str, failed: bool) -> (Vec<(String, String)>, String) {
    let mut params = vec![
        ("AccountSid".to_owned(), "AC00000000000000000000000000000001".to_owned()),
        ("MessageSid".to_owned(), message_sid.to_owned()),
        ("MessageStatus".to_owned(), if failed { "undelivered" } else { "delivered" }.to_owned()),
        ("To".to_owned(), "+15551234567".to_owned()),
    ];
    if failed {
        params.push(("ErrorCode".to_owned(), "30005".to_owned()));
    }
    let signature = cascade_sms_twilio::webhook::signature(TWILIO_TOKEN, url, &params);
    (params, signature)
}

/// Runs scenario `webhook`: `count` cascades (default 2,000) from `clients` concurrent clients
/// (default 4), each started over HTTP, its WhatsApp send accepted, then failed by a signed
/// status webhook; measured from sending the webhook to the SMS send being called.
pub fn webhook(count: Option<usize>, clients: Option<usize>) {
    let n = count.unwrap_or(2_000);
    let clients = clients.unwrap_or(4).clamp(1, n);
    let sms_calls: SendTimes = Arc::default();
    let sms = Timed { stub: StubChannel::new("sms", caps::sms()), waiters: sms_calls.clone() };
    let ids: AcceptedIds = Arc::default();
    let server = Server::start(whatsapp_stub(), sms, |app| {
        tokio::spawn(collect_accepted(app.engine().events(), ids.clone()));
    });
    let (start_url, hook_url) = (server.url("/v1/cascades"), server.url(&format!("/webhooks/{WHATSAPP}")));
    let rt = runtime(CLIENT_THREADS);
    let (mut latencies, failures) = rt.block_on(async move {
        let client = client();
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..clients {
            let (client, next, ids, sms_calls) = (client.clone(), next.clone(), ids.clone(), sms_calls.clone());
            let (start_url, hook_url) = (start_url.clone(), hook_url.clone());
            tasks.spawn(async move {
                let mut latencies = Vec::with_capacity(n / clients + 1);
                let mut failures = 0usize;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let r = post_start(&client, &start_url, i).send().await.expect("POST /v1/cascades");
                    let started: serde_json::Value = r.json().await.expect("JSON answer");
                    let Some(cascade) = started["id"].as_str().and_then(|id| id.parse::<CascadeId>().ok()) else {
                        eprintln!("webhook: no cascade started: {started}");
                        failures += 1;
                        continue;
                    };
                    let pmid = accepted_id(&ids, cascade).await;
                    let body = whatsapp_status(&pmid, true);
                    let signature = sign(&body);
                    let (tx, called) = oneshot::channel();
                    lock(&sms_calls).insert(cascade, tx);
                    let request = client
                        .post(&hook_url)
                        .header("content-type", "application/json")
                        .header("x-hub-signature-256", signature)
                        .body(body);
                    let sent = Instant::now();
                    let answer = match request.send().await {
                        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                        Err(e) => (0, e.to_string()),
                    };
                    if answer.0 != 200 || !answer.1.contains("\"statuses\":1") {
                        eprintln!("webhook: answer {}: {}", answer.0, answer.1);
                        lock(&sms_calls).remove(&cascade);
                        failures += 1;
                        continue;
                    }
                    match tokio::time::timeout(Duration::from_secs(10), called).await {
                        Ok(Ok(at)) => latencies.push(micros(at.saturating_duration_since(sent))),
                        _ => {
                            eprintln!("webhook: no SMS send for {cascade} within 10 s");
                            failures += 1;
                        }
                    }
                }
                (latencies, failures)
            });
        }
        let mut all = Vec::with_capacity(n);
        let mut failures = 0;
        for (latencies, failed) in tasks.join_all().await {
            all.extend(latencies);
            failures += failed;
        }
        (all, failures)
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    server.stop();

    latencies.sort_unstable();
    report("webhook", "p50_ms", quantile_ms(&latencies, 0.50));
    report("webhook", "p99_ms", quantile_ms(&latencies, 0.99));
    report("webhook", "count", latencies.len() as f64);
    report("webhook", "failures", failures as f64);
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;
    use cascade_channel_kit::{ErrorClass, Intake, WebhookEvent, WebhookRequest};
    use cascade_engine::StatusUpdate;

    use super::*;

    fn one_status(events: Vec<WebhookEvent>) -> StatusUpdate {
        match <[WebhookEvent; 1]>::try_from(events) {
            Ok([WebhookEvent::Status(update)]) => update,
            other => panic!("one status expected, got {other:?}"),
        }
    }

    #[test]
    fn whatsapp_status_webhooks_pass_the_real_intake() {
        let intake = whatsapp_intake();
        let url = "http://127.0.0.1:1/webhooks/wa-main";
        for failed in [false, true] {
            let body = whatsapp_status("wamid.7", failed);
            let mut headers = HeaderMap::new();
            headers.insert("x-hub-signature-256", sign(&body).parse().expect("header value"));
            let update = one_status(intake.receive(&WebhookRequest::post(url, &headers, &body)).expect("accepted"));
            assert_eq!(update.provider_message_id, "wamid.7");
            assert_eq!(update.status, if failed { Status::Failed } else { Status::Delivered });
            assert_eq!(update.error.map(|e| e.class), failed.then_some(ErrorClass::Unreachable));

            let mut changed = body.clone();
            changed.push(b' ');
            let refused = intake.receive(&WebhookRequest::post(url, &headers, &changed));
            assert!(refused.is_err_and(|e| e.is_auth()), "a body changed after signing is refused");
        }
    }

    #[test]
    fn twilio_status_callbacks_pass_the_real_intake() {
        let intake = twilio_intake();
        let url = "http://127.0.0.1:4000/webhooks/sms-main";
        for failed in [false, true] {
            let (params, signature) = twilio_status(url, "cascade-3", failed);
            // The body as the bench's client sends it.
            let request = reqwest::Client::new().post(url).form(&params).build().expect("request");
            let body = request.body().and_then(|b| b.as_bytes()).expect("form body").to_vec();
            let mut headers = HeaderMap::new();
            headers.insert("content-type", "application/x-www-form-urlencoded".parse().expect("header value"));
            headers.insert("x-twilio-signature", signature.parse().expect("header value"));
            let update = one_status(intake.receive(&WebhookRequest::post(url, &headers, &body)).expect("accepted"));
            assert_eq!(update.provider_message_id, "cascade-3");
            assert_eq!(update.status, if failed { Status::Failed } else { Status::Delivered });
            assert_eq!(update.error.map(|e| e.class), failed.then_some(ErrorClass::Unreachable));

            let elsewhere = "http://127.0.0.1:4001/webhooks/sms-main";
            let refused = intake.receive(&WebhookRequest::post(elsewhere, &headers, &body));
            assert!(refused.is_err_and(|e| e.is_auth()), "the signature covers the URL");
        }
    }
}
