//! Kommo SalesBot's widget_request through the router: token verification, one cascade per
//! return_url, the continue call to a local receiver when the cascade ends, and the held
//! request that lets another instance (or the same one restarted) finish a request whose
//! instance died while it looked the contact up.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use cascade_engine::clock::TokioClock;
use cascade_engine::store::ListFilter;
use cascade_engine::{EngineBuilder, MemoryStore, Store};
use cascade_http::callbacks::CallbackSettings;
use cascade_http::kommo::HELD_KIND;
use cascade_testkit::CoreOnlyStore;
use common::*;
use serde_json::{Value, json};

const INTEGRATION: &str = "5f2c9a43-8d1e-4c1b-9a57-0c6f1e2d3b4a";
const SECRET: &str = "kommo-client-secret-0123456789abcdef";
const ACCESS_TOKEN: &str = "long-lived-access-token";

fn token(secret: &str) -> String {
    let now = chrono::Utc::now().timestamp() as f64;
    let claims = json!({
        "iss": "https://acme.kommo.com", "aud": "http://127.0.0.1:8080", "jti": "j1",
        "iat": now - 1.0, "nbf": now - 1.0, "exp": now + 300.0,
        "account_id": 30112233, "client_uuid": INTEGRATION,
    });
    kommo_jwt(&claims, secret)
}

/// Kommo as the tests see it: the bot waiting for its continue call, and the account's API.
#[derive(Clone, Default)]
struct Bot {
    calls: Arc<Mutex<Vec<(String, Value)>>>,
    answer: Arc<Mutex<u16>>,
    /// The next lead lookup never answers (the instance that makes it is as good as dead).
    hang_next_lookup: Arc<AtomicBool>,
    /// Lead lookups answer 503 (Kommo's API is down).
    lookups_fail: Arc<AtomicBool>,
    lookups: Arc<Mutex<u32>>,
}

async fn bot(State(b): State<Bot>, headers: HeaderMap, body: axum::Json<Value>) -> StatusCode {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    b.calls.lock().expect("lock").push((auth, body.0));
    StatusCode::from_u16(*b.answer.lock().expect("lock")).expect("code")
}

/// `GET /api/v4/leads/{id}?with=contacts`: its main contact is 902.
async fn lead(State(b): State<Bot>) -> axum::response::Response {
    use axum::response::IntoResponse;
    *b.lookups.lock().expect("lock") += 1;
    if b.hang_next_lookup.swap(false, Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    if b.lookups_fail.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    axum::Json(json!({"_embedded": {"contacts": [{"id": 902, "is_main": true}]}})).into_response()
}

/// `GET /api/v4/contacts/902`.
async fn contact() -> axum::Json<Value> {
    axum::Json(json!({"name": "Ann", "custom_fields_values": [
        {"field_code": "PHONE", "values": [{"value": "+1 (555) 123-4567", "enum_code": "MOB"}]}
    ]}))
}

/// Kommo's side on a local port; returns it and its base URL.
async fn mock_kommo(answer: u16) -> (Bot, String) {
    let b = Bot { answer: Arc::new(Mutex::new(answer)), ..Default::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let router = axum::Router::new()
        .route("/api/v4/salesbot/{bot}/continue/{id}", axum::routing::post(bot))
        .route("/api/v4/leads/{id}", axum::routing::get(lead))
        .route("/api/v4/contacts/{id}", axum::routing::get(contact))
        .with_state(b.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (b, base)
}

/// Kommo with the account `acme`, whose API is at `base`.
fn kommo_for(base: &str) -> cascade_kommo::Kommo {
    let mut acme = cascade_kommo::KommoAccount::new(ACCESS_TOKEN);
    acme.api_base_url = Some(base.to_owned());
    acme.policy = Some("default".into());
    let config = cascade_kommo::KommoConfig::new(INTEGRATION, SECRET).account("acme", acme);
    cascade_kommo::Kommo::new(config).expect("kommo")
}

/// An app serving the account `acme` whose API is at `base`, with its engine built by `engine`.
async fn app_for(base: &str, engine: impl FnOnce(EngineBuilder) -> EngineBuilder) -> TestApp {
    let settings = CallbackSettings { poll_interval: Duration::from_millis(10), ..CallbackSettings::default() };
    let kommo = kommo_for(base);
    TestApp::with_engine_builder(engine, |a| a.kommo(kommo).callbacks(settings)).await
}

async fn setup(answer: u16) -> (TestApp, Bot, String) {
    let (b, base) = mock_kommo(answer).await;
    let t = app_for(&base, |e| e).await;
    (t, b, format!("{base}/api/v4/salesbot/4127/continue/88213"))
}

fn form(token: &str, return_url: &str) -> Vec<u8> {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "token={}&return_url={}&data[text]={}&data[phone]={}&data[name]=Ann&data[deal][name]={}",
        enc(token),
        enc(return_url),
        enc("Hi {{contact.name}}, about {{deal.name}}"),
        enc("+1 (555) 123-4567"),
        enc("Roof repair")
    )
    .into_bytes()
}

/// A request without the contact's phone: it is read from Kommo, from lead 5521.
fn form_with_lead(token: &str, return_url: &str) -> Vec<u8> {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "token={}&return_url={}&data[text]={}&data[phone]={}&data[lead_id]=5521",
        enc(token),
        enc(return_url),
        enc("Hi {{contact.name}}"),
        enc("{{contact.phone}}"),
    )
    .into_bytes()
}

/// The held widget_requests of `store` whose lease ends within a day (claiming them).
async fn held(store: &dyn Store) -> Vec<cascade_engine::store::HeldRequest> {
    let later = chrono::Utc::now() + chrono::Duration::days(1);
    store.claim_held_requests(HELD_KIND, later, 100, Duration::from_secs(1)).await.expect("claim held")
}

async fn post(t: &TestApp, body: Vec<u8>) -> (StatusCode, Value) {
    let (s, _, v) = t
        .request(Method::POST, "/kommo/widget_request", None, Some(("application/x-www-form-urlencoded", body)), None)
        .await;
    (s, v)
}

async fn wait_calls(b: &Bot, n: usize) -> Vec<(String, Value)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let calls = b.calls.lock().expect("lock").clone();
        if calls.len() >= n {
            return calls;
        }
        assert!(tokio::time::Instant::now() < deadline, "{} of {n} continue calls", calls.len());
        // Real HTTP from a background worker: poll briefly.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_widget_request_starts_one_cascade_and_the_bot_is_continued() {
    let (t, bot, return_url) = setup(200).await;
    let workers = t.app.spawn_workers();
    let (s, r) = post(&t, form(&token(SECRET), &return_url)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let id = r["cascade_id"].as_str().expect("cascade id").to_owned();
    // Kommo resends: the same return_url never starts a second cascade.
    let (s, again) = post(&t, form(&token(SECRET), &return_url)).await;
    assert_eq!((s, again["cascade_id"].as_str()), (StatusCode::OK, Some(id.as_str())));

    let sent = t.wait_sends(1).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].content().text, "Hi Ann, about Roof repair");
    assert_eq!(sent[0].request.address.value, "+15551234567");

    let pmid = sent[0].result.as_ref().expect("accepted").provider_message_id.clone();
    let payload = whatsapp_status(&pmid, "delivered");
    let (s, _, _) = t.webhook("wa-main", &payload, &sign_whatsapp(&payload)).await;
    assert_eq!(s, StatusCode::OK);

    let calls = wait_calls(&bot, 1).await;
    assert_eq!(calls[0].0, format!("Bearer {ACCESS_TOKEN}"));
    assert_eq!(calls[0].1["data"]["status"], "success");
    assert_eq!(calls[0].1["data"]["channel"], "whatsapp");
    assert_eq!(calls[0].1["data"]["cascade_id"], id);
    workers.stop().await;
    let (_, _, dead) = t.get("/v1/callbacks/dead", ADMIN_KEY).await;
    assert_eq!(dead["items"], json!([]));
}

#[tokio::test]
async fn a_bad_token_is_refused_and_starts_nothing() {
    let (t, bot, return_url) = setup(200).await;
    let (s, p) = post(&t, form(&token("another secret"), &return_url)).await;
    assert_problem(s, &p, 401, "unauthorized", Some("token"));
    let (s, p) = post(&t, form(&token(SECRET), "https://evil.example.com/api/v4/salesbot/1/continue/2")).await;
    assert_problem(s, &p, 401, "unauthorized", Some("return_url"));
    let (s, p) = post(&t, b"token=&return_url=".to_vec()).await;
    assert_eq!(s.as_u16() / 100, 4, "{p}");
    assert!(t.whatsapp.sends().is_empty());
    assert!(bot.calls.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn a_bot_that_stopped_waiting_is_recorded() {
    let (t, bot, return_url) = setup(404).await;
    let workers = t.app.spawn_workers();
    let (s, r) = post(&t, form(&token(SECRET), &return_url)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let id = r["cascade_id"].as_str().expect("id").to_owned();
    t.wait_sends(1).await;
    let (s, _, _) = t.request(Method::POST, &format!("/v1/cascades/{id}/cancel"), Some(ADMIN_KEY), None, None).await;
    assert_eq!(s, StatusCode::OK);
    let calls = wait_calls(&bot, 1).await;
    assert_eq!(calls[0].1["data"]["status"], "fail");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, dead) = t.get("/v1/callbacks/dead", ADMIN_KEY).await;
        if let Some(item) = dead["items"].as_array().and_then(|a| a.first()) {
            assert!(item["last_error"].as_str().is_some_and(|e| e.contains("stopped waiting")), "{item}");
            assert_eq!(item["tries"], 1, "a 404 is not retried");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    workers.stop().await;
}

#[tokio::test]
async fn a_request_is_let_go_once_started_or_refused() {
    let (t, bot, return_url) = setup(200).await;
    let (s, r) = post(&t, form_with_lead(&token(SECRET), &return_url)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert!(r["cascade_id"].is_string(), "{r}");
    assert_eq!(*bot.lookups.lock().expect("lock"), 1, "the phone was read from Kommo");
    assert_eq!(held(t.app.engine().store().as_ref()).await, [], "a started request is let go");
    // Nor is one that could not start (no text): the bot was told `fail` instead.
    let no_text = String::from_utf8(form(&token(SECRET), &format!("{return_url}1"))).expect("utf-8");
    let no_text = no_text.replace("data[text]", "data[other]");
    let (s, r) = post(&t, no_text.into_bytes()).await;
    assert_eq!((s, r["status"].as_str()), (StatusCode::OK, Some("failed")), "{r}");
    assert_eq!(wait_calls(&bot, 1).await[0].1["data"]["status"], "fail");
    assert_eq!(held(t.app.engine().store().as_ref()).await, []);
}

#[tokio::test]
async fn a_request_its_instance_did_not_finish_is_finished_by_the_next_one() {
    let (bot, base) = mock_kommo(200).await;
    let return_url = format!("{base}/api/v4/salesbot/4127/continue/88213");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    // The first instance holds the request, answers in time, and hangs in the lookup: as
    // good as dead (a crash would leave the same in the store).
    bot.hang_next_lookup.store(true, Ordering::SeqCst);
    let first = app_for(&base, |e| e.store(store.clone())).await;
    let started = tokio::time::Instant::now();
    let (s, r) = post(&first, form_with_lead(&token(SECRET), &return_url)).await;
    assert_eq!((s, &r), (StatusCode::OK, &json!({"status": "accepted"})));
    assert!(started.elapsed() < Duration::from_secs(2), "answered after {:?}", started.elapsed());
    assert_eq!(store.list(&ListFilter { limit: 10, ..ListFilter::default() }).await.expect("list"), []);

    // The next instance, once the lease ran out (its clock is six minutes on), takes it over
    // as its workers start.
    let six_minutes_on = TokioClock::starting_at(chrono::Utc::now() + chrono::Duration::minutes(6));
    let next = app_for(&base, |e| e.store(store.clone()).clock(six_minutes_on)).await;
    let workers = next.app.spawn_workers();
    let sent = next.wait_sends(1).await;
    assert_eq!(sent[0].content().text, "Hi Ann");
    assert_eq!(sent[0].request.address.value, "+15551234567");
    workers.stop().await;

    let cascades = store.list(&ListFilter { limit: 10, ..ListFilter::default() }).await.expect("list");
    assert_eq!(cascades.len(), 1, "one cascade");
    assert_eq!(cascades[0].meta.idempotency_key, Some(cascade_kommo::Kommo::idempotency_key(&return_url)));
    assert_eq!(cascades[0].meta.callback_url.as_deref(), Some(return_url.as_str()));
    assert!(first.whatsapp.sends().is_empty() && first.sms.sends().is_empty());
    assert_eq!(next.whatsapp.sends().len() + next.sms.sends().len(), 1, "sent once");
    assert_eq!(held(store.as_ref()).await, [], "the request is let go once its cascade started");
    assert!(bot.calls.lock().expect("lock").is_empty(), "the bot was not told `fail`");
    assert_eq!(*bot.lookups.lock().expect("lock"), 2, "looked up by the first and the next instance only");
}

/// A request held because Kommo's API failed the contact lookup.
struct Held {
    bot: Bot,
    /// Kommo's API.
    base: String,
    return_url: String,
    store: Arc<dyn Store>,
    /// The instance that answered it.
    first: TestApp,
}

/// Kommo's API fails lookups; a widget_request is answered `accepted` (a failure that may pass
/// is not one to tell the bot) and stays held in the store.
async fn held_after_a_failed_lookup() -> Held {
    let (bot, base) = mock_kommo(200).await;
    let return_url = format!("{base}/api/v4/salesbot/4127/continue/88213");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    bot.lookups_fail.store(true, Ordering::SeqCst);
    let first = app_for(&base, |e| e.store(store.clone())).await;
    let (s, r) = post(&first, form_with_lead(&token(SECRET), &return_url)).await;
    assert_eq!((s, &r), (StatusCode::OK, &json!({"status": "accepted"})), "not a failure: it may pass");
    Held { bot, base, return_url, store, first }
}

#[tokio::test]
async fn a_request_kommo_cannot_answer_for_now_is_kept_for_later_and_done_once() {
    let Held { bot, base, return_url, store, first } = held_after_a_failed_lookup().await;
    // Kommo sends it again while it is held: that one is left to the first.
    let (s, r) = post(&first, form_with_lead(&token(SECRET), &return_url)).await;
    assert_eq!((s, &r), (StatusCode::OK, &json!({"status": "accepted"})));
    assert_eq!(*bot.lookups.lock().expect("lock"), 1, "the resent request did no work of its own");
    assert!(bot.calls.lock().expect("lock").is_empty(), "the bot was not told `fail`");

    // Kommo's API is back; once the lease ran out, the request is done.
    bot.lookups_fail.store(false, Ordering::SeqCst);
    let six_minutes_on = TokioClock::starting_at(chrono::Utc::now() + chrono::Duration::minutes(6));
    let next = app_for(&base, |e| e.store(store.clone()).clock(six_minutes_on)).await;
    let workers = next.app.spawn_workers();
    assert_eq!(next.wait_sends(1).await[0].request.address.value, "+15551234567");
    workers.stop().await;
    assert_eq!(store.list(&ListFilter { limit: 10, ..ListFilter::default() }).await.expect("list").len(), 1);
    assert_eq!(held(store.as_ref()).await, [], "let go once its cascade started");
    assert!(bot.calls.lock().expect("lock").is_empty(), "the bot was never told `fail`");
}

#[tokio::test]
async fn a_request_kommo_cannot_answer_for_an_hour_fails_the_bot_and_is_let_go() {
    let Held { bot, base, store, first: _first, .. } = held_after_a_failed_lookup().await;

    // An hour on, Kommo's API still fails: the bot is told `fail` and the request let go.
    let an_hour_on = TokioClock::starting_at(chrono::Utc::now() + chrono::Duration::minutes(61));
    let next = app_for(&base, |e| e.store(store.clone()).clock(an_hour_on)).await;
    let workers = next.app.spawn_workers();
    assert_eq!(wait_calls(&bot, 1).await[0].1["data"]["status"], "fail");
    workers.stop().await;
    assert_eq!(*bot.lookups.lock().expect("lock"), 2, "tried once more before giving up");
    assert_eq!(held(store.as_ref()).await, [], "let go");
    assert!(next.whatsapp.sends().is_empty() && next.sms.sends().is_empty());
}

#[tokio::test]
async fn a_store_that_cannot_hold_the_request_is_a_503_and_starts_nothing() {
    let (bot, base) = mock_kommo(200).await;
    let return_url = format!("{base}/api/v4/salesbot/4127/continue/88213");
    let t = app_for(&base, |e| e.store(Arc::new(CoreOnlyStore::new()))).await;
    let (s, p) = post(&t, form(&token(SECRET), &return_url)).await;
    assert_problem(s, &p, 503, "unavailable", None);
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("keeps no held requests")), "{p}");
    assert_eq!(
        t.app.engine().store().list(&ListFilter { limit: 10, ..ListFilter::default() }).await.expect("list"),
        []
    );
    assert!(t.whatsapp.sends().is_empty() && bot.calls.lock().expect("lock").is_empty());
}

/// Log lines written by a test's subscriber.
#[derive(Clone)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// With a store that keeps no held requests every claim fails: the worker that takes them
/// over says so at start-up and then once an hour, not on every try (every 30 s).
#[tokio::test(start_paused = true)]
async fn a_store_without_held_requests_is_warned_about_once_an_hour() {
    let logs = Captured(Arc::new(Mutex::new(Vec::new())));
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let kommo = kommo_for("http://127.0.0.1:9");
    // The callback worker's default poll (1 s), not `app_for`'s 10 ms: the clock runs 2 hours.
    let t = TestApp::with_engine_builder(|e| e.store(Arc::new(CoreOnlyStore::new())), |a| a.kommo(kommo)).await;
    let workers = t.app.spawn_workers();
    // Two hours and a minute: tries at 0 s, 30 s, … 7,260 s (243 of them).
    tokio::time::sleep(Duration::from_secs(2 * 3_600 + 60)).await;
    let text = String::from_utf8(logs.0.lock().expect("lock").clone()).expect("utf-8");
    let warnings: Vec<&str> =
        text.lines().filter(|l| l.contains("claiming held kommo widget_requests failed")).collect();
    assert_eq!(warnings.len(), 3, "at 0 s, after 120 failures and after 240: {warnings:#?}");
    assert!(warnings[1].contains("failures=120") && warnings[2].contains("failures=240"), "{warnings:#?}");
    workers.stop().await;
}
