//! Kommo SalesBot's widget_request through the router: token verification, one cascade per
//! return_url, and the continue call to a local receiver when the cascade ends.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cascade_http::callbacks::CallbackSettings;
use common::*;
use hmac::{Hmac, Mac};
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
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"alg": "HS512", "typ": "JWT"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = Hmac::<sha2::Sha512>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

#[derive(Clone, Default)]
struct Bot {
    calls: Arc<Mutex<Vec<(String, Value)>>>,
    answer: Arc<Mutex<u16>>,
}

async fn bot(State(b): State<Bot>, headers: HeaderMap, body: axum::Json<Value>) -> StatusCode {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    b.calls.lock().expect("lock").push((auth, body.0));
    StatusCode::from_u16(*b.answer.lock().expect("lock")).expect("code")
}

async fn setup(answer: u16) -> (TestApp, Bot, String) {
    let b = Bot { answer: Arc::new(Mutex::new(answer)), ..Default::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let router = axum::Router::new()
        .route("/api/v4/salesbot/{bot}/continue/{id}", axum::routing::post(bot))
        .with_state(b.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let mut acme = cascade_kommo::KommoAccount::new(ACCESS_TOKEN);
    acme.api_base_url = Some(base.clone());
    acme.policy = Some("default".into());
    let config = cascade_kommo::KommoConfig::new(INTEGRATION, SECRET).account("acme", acme);
    let settings = CallbackSettings { poll_interval: Duration::from_millis(10), ..CallbackSettings::default() };
    let t = TestApp::with(|a| a.kommo(cascade_kommo::Kommo::new(config).expect("kommo")).callbacks(settings)).await;
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
