//! Callbacks against a local receiver over real HTTP: signed outcome reports, retries with
//! backoff, and dead-lettering.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use cascade_channel_kit::webhook::verify_cascade_signature;
use cascade_http::callbacks::CallbackSettings;
use common::*;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// A call received: its headers and body.
type Call = (HeaderMap, Vec<u8>);

#[derive(Clone, Default)]
struct Receiver {
    calls: Arc<Mutex<Vec<Call>>>,
    /// Answers for the first calls; 200 after them.
    answers: Arc<Mutex<Vec<u16>>>,
    arrived: Arc<Notify>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    r.calls.lock().expect("lock").push((headers, body.to_vec()));
    r.arrived.notify_waiters();
    let mut answers = r.answers.lock().expect("lock");
    let code = if answers.is_empty() { 200 } else { answers.remove(0) };
    StatusCode::from_u16(code).expect("code")
}

impl Receiver {
    async fn start(answers: Vec<u16>) -> (Self, String) {
        let r = Receiver { answers: Arc::new(Mutex::new(answers)), ..Default::default() };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hooks/cascade", listener.local_addr().expect("addr"));
        let app = axum::Router::new().route("/hooks/cascade", axum::routing::post(receive)).with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (r, url)
    }

    async fn wait_calls(&self, n: usize) -> Vec<Call> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let arrived = self.arrived.notified();
            let calls = self.calls.lock().expect("lock").clone();
            if calls.len() >= n {
                return calls;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!("{} of {n} callbacks arrived", calls.len());
            }
        }
    }
}

fn fast() -> CallbackSettings {
    CallbackSettings {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(40),
        give_up_after: Duration::from_millis(150),
        timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(10),
    }
}

async fn start_and_cancel(t: &TestApp, callback_url: &str) -> String {
    let body = json!({
        "contact": {"phone": "+15551234567"},
        "message": {"text": "Hi"},
        "policy": "default",
        "callback_url": callback_url,
        "metadata": {"order": 7}
    });
    let (s, _, r) = t.post_json("/v1/cascades", SEND_KEY, &body, None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let id = r["id"].as_str().expect("id").to_owned();
    t.wait_sends(1).await;
    let (s, _, _) = t.request(Method::POST, &format!("/v1/cascades/{id}/cancel"), Some(SEND_KEY), None, None).await;
    assert_eq!(s, StatusCode::OK);
    id
}

#[tokio::test]
async fn the_outcome_is_posted_signed_and_retried_until_accepted() {
    let (receiver, url) = Receiver::start(vec![500, 503]).await;
    let t = TestApp::with(|b| b.allow_internal_urls(true).callbacks(fast())).await;
    let workers = t.app.spawn_workers();
    let id = start_and_cancel(&t, &url).await;

    let calls = receiver.wait_calls(3).await;
    for (headers, body) in &calls {
        let sig = headers["x-cascade-signature"].to_str().expect("text");
        let now = chrono::Utc::now().timestamp();
        verify_cascade_signature(CALLBACK_SECRET.as_bytes(), sig, body, now).expect("signed with the key's secret");
        assert!(verify_cascade_signature(b"another secret", sig, body, now).is_err());
        let report: Value = serde_json::from_slice(body).expect("json");
        assert_eq!(report["cascade_id"], id);
        assert_eq!(report["state"], "cancelled");
        assert_eq!(report["metadata"]["order"], 7);
    }
    let ids: Vec<_> = calls.iter().map(|(h, _)| h["x-cascade-delivery"].clone()).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "one outbox item, tried three times");

    // Accepted on the third try: nothing more comes, nothing is dead.
    workers.stop().await;
    assert_eq!(receiver.calls.lock().expect("lock").len(), 3);
    let (_, _, dead) = t.get("/v1/callbacks/dead", ADMIN_KEY).await;
    assert_eq!(dead["items"], json!([]));
}

#[tokio::test]
async fn a_callback_that_keeps_failing_is_kept_as_dead() {
    let (receiver, url) = Receiver::start(vec![500; 1000]).await;
    let t = TestApp::with(|b| b.allow_internal_urls(true).callbacks(fast())).await;
    let workers = t.app.spawn_workers();
    let id = start_and_cancel(&t, &url).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let (_, _, dead) = t.get("/v1/callbacks/dead", ADMIN_KEY).await;
        if dead["items"].as_array().is_some_and(|a| !a.is_empty()) {
            break dead;
        }
        assert!(tokio::time::Instant::now() < deadline, "never given up on");
        // Real HTTP and a real outbox: poll the API briefly.
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let item = &dead["items"][0];
    assert_eq!(item["cascade"], id);
    assert_eq!(item["dead"], true);
    assert!(item["last_error"].as_str().is_some_and(|e| e.contains("500") && e.contains("gave up")), "{item}");
    let tries = item["tries"].as_u64().expect("tries");
    assert!(tries >= 3, "retried with backoff before giving up: {tries}");
    workers.stop().await;
    let total = receiver.calls.lock().expect("lock").len() as u64;
    assert_eq!(total, tries, "a dead callback is not tried again");
}

#[tokio::test]
async fn a_gone_receiver_is_given_up_at_once() {
    let (receiver, url) = Receiver::start(vec![410]).await;
    let t = TestApp::with(|b| b.allow_internal_urls(true).callbacks(fast())).await;
    let workers = t.app.spawn_workers();
    start_and_cancel(&t, &url).await;
    receiver.wait_calls(1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, dead) = t.get("/v1/callbacks/dead", ADMIN_KEY).await;
        if dead["items"].as_array().is_some_and(|a| a.len() == 1) {
            assert_eq!(dead["items"][0]["tries"], 1);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "410 was not given up on");
        // Real HTTP and a real outbox: poll the API briefly.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    workers.stop().await;
}

#[tokio::test]
async fn a_callback_to_an_internal_address_is_refused_at_delivery_and_never_sent() {
    let (receiver, url) = Receiver::start(vec![]).await;
    let by_name = url.replace("127.0.0.1", "localhost");
    // Started where internal URLs are allowed, as if the names had resolved to public
    // addresses then; delivered by a server over the same store that refuses them.
    let t = TestApp::with(|b| b.allow_internal_urls(true).callbacks(fast())).await;
    start_and_cancel(&t, &by_name).await;
    start_and_cancel(&t, &url).await;
    let strict = cascade_http::App::builder(t.app.engine().clone())
        .api_key(
            cascade_http::auth::ApiKey::from_plain("crm", SEND_KEY, [cascade_http::auth::Scope::Send])
                .callback_secret(CALLBACK_SECRET),
        )
        .allow_internal_urls(false)
        .callbacks(fast())
        .build();
    let workers = strict.spawn_workers();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let (_, _, dead) = t.get("/v1/callbacks/dead", ADMIN_KEY).await;
        if dead["items"].as_array().is_some_and(|a| a.len() == 2) {
            break dead;
        }
        assert!(tokio::time::Instant::now() < deadline, "not given up on: {dead}");
        // Real HTTP and a real outbox: poll the API briefly.
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    workers.stop().await;
    let mut urls = Vec::new();
    for item in dead["items"].as_array().expect("items") {
        assert_eq!(item["tries"], 1, "given up on at once: {item}");
        let error = item["last_error"].as_str().expect("last_error");
        assert!(error.starts_with("callback_url refused: resolves to an internal address ("), "{item}");
        urls.push(item["url"].as_str().expect("url").to_owned());
    }
    urls.sort();
    let mut expected = vec![url, by_name];
    expected.sort();
    assert_eq!(urls, expected, "a host name (refused by the resolver) and an address (refused before the try)");
    assert!(receiver.calls.lock().expect("lock").is_empty(), "the receiver was never called");
}

/// The value of an unlabelled metric in a `/metrics` answer.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn the_outbox_depth_and_the_dead_callbacks_are_metrics() {
    let (receiver, url) = Receiver::start(vec![410]).await;
    let t = TestApp::with(|b| b.allow_internal_urls(true).callbacks(fast())).await;
    // No callback worker yet: the outcome report waits in the outbox.
    start_and_cancel(&t, &url).await;
    start_and_cancel(&t, &url).await;
    let text = t.text("/metrics").await;
    assert_eq!(metric(&text, "cascade_callbacks_pending"), Some(2.0), "{text}");
    assert_eq!(metric(&text, "cascade_callbacks_dead"), Some(0.0), "{text}");

    // The first try is answered 410 (given up on), the second 200 (delivered).
    let workers = t.app.spawn_workers();
    receiver.wait_calls(2).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = t.text("/metrics").await;
        let (pending, dead) = (metric(&text, "cascade_callbacks_pending"), metric(&text, "cascade_callbacks_dead"));
        if pending == Some(0.0) && dead == Some(1.0) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "pending {pending:?}, dead {dead:?}:\n{text}");
        // Real HTTP and a real outbox: poll briefly.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    workers.stop().await;
}

#[tokio::test]
async fn a_key_without_a_callback_secret_cannot_ask_for_callbacks() {
    let t = TestApp::with(|b| {
        b.allow_internal_urls(true).api_key(cascade_http::auth::ApiKey::from_plain(
            "unsigned",
            "unsigned-key-0123456789",
            [cascade_http::auth::Scope::Send],
        ))
    })
    .await;
    let body = json!({"contact": {"phone": "+15551234567"}, "message": {"text": "Hi"}, "policy": "default",
        "callback_url": "http://127.0.0.1:9/x"});
    let (s, _, p) = t.post_json("/v1/cascades", "unsigned-key-0123456789", &body, None).await;
    assert_problem(s, &p, 422, "invalid-request", Some("callback_url"));
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("callback_secret")));
    assert!(t.whatsapp.sends().is_empty());
}
