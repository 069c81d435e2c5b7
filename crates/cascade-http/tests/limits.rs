//! The router's limits on request bodies, in process: a body is refused with `413` on its
//! declared length before a byte is read, read no further than the limit when it declares
//! none, and cut off with `408` when it does not arrive in time (on tokio's paused clock).
//! Every route that takes a body is held to them.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode};
use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use tower::ServiceExt;

/// The routes that read a body, with the media type each takes.
const ROUTES: [(Method, &str, &str); 5] = [
    (Method::POST, "/v1/cascades", "application/json"),
    (Method::POST, "/v1/campaigns", "application/json"),
    (Method::PUT, "/v1/policies/limits", "application/json"),
    (Method::POST, "/webhooks/wa-main", "application/json"),
    (Method::POST, "/kommo/widget_request", "application/json"),
];

const LIMIT: usize = 64 * 1024;
const CHUNK: usize = 4 * 1024;

/// A body of spaces that never ends, counting what is taken from it.
fn endless(taken: Arc<AtomicU64>) -> Body {
    Body::from_stream(futures_util::stream::repeat_with(move || {
        taken.fetch_add(CHUNK as u64, Ordering::SeqCst);
        Ok::<_, Infallible>(Bytes::from(vec![b' '; CHUNK]))
    }))
}

/// A body that sends `{` and then one more space every `every`, for ever.
fn trickle(every: Duration) -> Body {
    let first = futures_util::stream::once(async { Ok::<_, Infallible>(Bytes::from_static(b"{")) });
    let rest = futures_util::stream::unfold((), move |()| async move {
        tokio::time::sleep(every).await;
        Some((Ok::<_, Infallible>(Bytes::from_static(b" ")), ()))
    });
    Body::from_stream(first.chain(rest))
}

/// The test app with Kommo configured (so its endpoint reads bodies) and `customize`d.
async fn app(customize: impl FnOnce(cascade_http::AppBuilder) -> cascade_http::AppBuilder) -> TestApp {
    let kommo = cascade_kommo::KommoConfig::new("integration", "kommo-secret-0123456789")
        .account("acme", cascade_kommo::KommoAccount::new("kommo-access-token"));
    TestApp::with(|b| customize(b.kommo(cascade_kommo::Kommo::new(kommo).expect("kommo")))).await
}

async fn send(t: &TestApp, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    // On the paused clock, an hour passes at once if nothing cuts the body off.
    let answer = tokio::time::timeout(Duration::from_secs(3600), t.router.clone().oneshot(request));
    let response = answer.await.expect("an answer within the hour").expect("infallible");
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn request(method: &Method, path: &str, media_type: &str, length: Option<u64>, body: Body) -> Request<Body> {
    let mut r = Request::builder()
        .method(method.clone())
        .uri(path)
        .header("authorization", format!("Bearer {ADMIN_KEY}"))
        .header("content-type", media_type);
    if let Some(n) = length {
        r = r.header("content-length", n);
    }
    r.body(body).expect("request")
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_before_the_body_is_read() {
    let t = app(|b| b.max_body(LIMIT)).await;
    for (method, path, media_type) in ROUTES {
        let taken = Arc::new(AtomicU64::new(0));
        let r = request(&method, path, media_type, Some(LIMIT as u64 + 1), endless(taken.clone()));
        let (status, headers, p) = send(&t, r).await;
        assert_problem(status, &p, 413, "payload-too-large", None);
        assert_eq!(p["detail"], format!("the body is larger than the {LIMIT}-byte limit (server.max_body)"), "{path}");
        assert_eq!(headers["connection"], "close", "{path}: the unread body ends the connection");
        assert_eq!(taken.load(Ordering::SeqCst), 0, "{path}: nothing was read");
    }
    // At the limit, the body is read (and found to be nothing but spaces).
    let body = Body::from(vec![b' '; LIMIT]);
    let (status, _, p) =
        send(&t, request(&Method::POST, "/v1/cascades", "application/json", Some(LIMIT as u64), body)).await;
    assert_problem(status, &p, 400, "malformed-body", None);
}

#[tokio::test]
async fn a_body_without_a_length_is_read_no_further_than_the_limit() {
    let t = app(|b| b.max_body(LIMIT)).await;
    for (method, path, media_type) in ROUTES {
        let taken = Arc::new(AtomicU64::new(0));
        let (status, headers, p) = send(&t, request(&method, path, media_type, None, endless(taken.clone()))).await;
        assert_problem(status, &p, 413, "payload-too-large", None);
        assert!(p["detail"].as_str().is_some_and(|d| d.contains("65536-byte limit")), "{path}: {p}");
        assert_eq!(headers["connection"], "close");
        let taken = taken.load(Ordering::SeqCst);
        assert!(taken <= (LIMIT + CHUNK) as u64, "{path}: {taken} bytes taken for a {LIMIT}-byte limit");
    }
}

#[tokio::test]
async fn an_upload_without_a_length_stops_at_the_upload_limit() {
    // The test app takes 300,000-byte uploads.
    let t = TestApp::new().await;
    let taken = Arc::new(AtomicU64::new(0));
    let head = "--b\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n\r\n";
    let body = futures_util::stream::once(async move { Ok::<_, Infallible>(Bytes::from(head)) }).chain(
        futures_util::stream::repeat_with({
            let taken = taken.clone();
            move || {
                taken.fetch_add(CHUNK as u64, Ordering::SeqCst);
                Ok(Bytes::from(vec![7u8; CHUNK]))
            }
        }),
    );
    let r = request(&Method::POST, "/v1/uploads", "multipart/form-data; boundary=b", None, Body::from_stream(body));
    let (status, headers, p) = send(&t, r).await;
    assert_problem(status, &p, 413, "payload-too-large", Some("file"));
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("300000-byte limit (server.max_upload)")), "{p}");
    assert_eq!(headers["connection"], "close");
    let taken = taken.load(Ordering::SeqCst);
    assert!(taken <= 300_000 + 64 * 1024 + CHUNK as u64, "{taken} bytes taken");
    assert_eq!(std::fs::read_dir(&t.upload_dir).expect("dir").count(), 0, "no part file is left");

    // Declared over the limit (with room for the form around the file): refused unread.
    let taken = Arc::new(AtomicU64::new(0));
    let r = request(
        &Method::POST,
        "/v1/uploads",
        "multipart/form-data; boundary=b",
        Some(100_000_000),
        endless(taken.clone()),
    );
    let (status, _, p) = send(&t, r).await;
    assert_problem(status, &p, 413, "payload-too-large", None);
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("300000-byte limit (server.max_upload)")), "{p}");
    assert_eq!(taken.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_body_that_does_not_arrive_in_time_is_a_408() {
    let t = app(|b| b).await;
    for (method, path, media_type) in ROUTES {
        // One byte, then nothing: cut off when the body timeout (30 s) is up.
        let stalled = futures_util::stream::once(async { Ok::<_, Infallible>(Bytes::from_static(b"{")) })
            .chain(futures_util::stream::pending());
        let started = tokio::time::Instant::now();
        let (status, headers, p) =
            send(&t, request(&method, path, media_type, Some(100), Body::from_stream(stalled))).await;
        assert_problem(status, &p, 408, "request-timeout", None);
        assert_eq!(p["detail"], "the body did not arrive within 30s of the headers (server.body_timeout)", "{path}");
        assert_eq!(headers["connection"], "close");
        assert_eq!(started.elapsed().as_secs(), 30, "{path}");
    }
    // A byte a second never stalls, but 30 s is all a body gets.
    let started = tokio::time::Instant::now();
    let r = request(&Method::POST, "/v1/cascades", "application/json", None, trickle(Duration::from_secs(1)));
    let (status, _, p) = send(&t, r).await;
    assert_problem(status, &p, 408, "request-timeout", None);
    assert_eq!(started.elapsed().as_secs(), 30);
}

#[tokio::test(start_paused = true)]
async fn uploads_have_their_own_time() {
    let t = app(|b| b.upload_timeout(Duration::from_secs(120))).await;
    let head = "--b\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n\r\n";
    let body = futures_util::stream::once(async move { Ok::<_, Infallible>(Bytes::from(head)) }).chain(
        futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some((Ok(Bytes::from_static(b"x")), ()))
        }),
    );
    let started = tokio::time::Instant::now();
    let r = request(&Method::POST, "/v1/uploads", "multipart/form-data; boundary=b", None, Body::from_stream(body));
    let (status, headers, p) = send(&t, r).await;
    assert_problem(status, &p, 408, "request-timeout", None);
    assert_eq!(p["detail"], "the body did not arrive within 120s of the headers (server.upload_timeout)");
    assert_eq!(headers["connection"], "close");
    assert_eq!(started.elapsed().as_secs(), 120, "the upload timeout, not the body timeout");
    assert_eq!(std::fs::read_dir(&t.upload_dir).expect("dir").count(), 0, "no part file is left");
}

#[tokio::test]
async fn deeply_nested_json_is_a_400_on_every_route() {
    let t = app(|b| b).await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes();
    let in_metadata = format!(
        r#"{{"contact": {{"phone": "+15551234567"}}, "message": {{"text": "x"}}, "policy": "default", "metadata": {}{}}}"#,
        "[".repeat(65),
        "]".repeat(65)
    );
    for (method, path, media_type) in ROUTES {
        let r = request(&method, path, media_type, None, Body::from(deep.clone()));
        let (status, _, p) = send(&t, r).await;
        assert_problem(status, &p, 400, "malformed-body", None);
        assert_eq!(p["detail"], "the body nests arrays and objects more than 64 levels deep", "{path}");
    }
    let r = request(&Method::POST, "/v1/cascades", "application/json", None, Body::from(in_metadata));
    let (status, _, p) = send(&t, r).await;
    assert_problem(status, &p, 400, "malformed-body", None);
    // Kommo's `data` as JSON inside a form field: within serde_json's own limit, over ours.
    let data = format!("{{\"x\": {}1{}}}", "[".repeat(100), "]".repeat(100));
    let form = format!(
        "token=t&return_url=https%3A%2F%2Facme.kommo.com%2Fx&data={}",
        url::form_urlencoded::byte_serialize(data.as_bytes()).collect::<String>()
    );
    let r =
        request(&Method::POST, "/kommo/widget_request", "application/x-www-form-urlencoded", None, Body::from(form));
    let (status, _, p) = send(&t, r).await;
    assert_problem(status, &p, 400, "malformed-body", Some("data"));
    assert_eq!(p["detail"], "data nests arrays and objects more than 64 levels deep");
    assert!(t.whatsapp.sends().is_empty(), "nothing was started");
}
