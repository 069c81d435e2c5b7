//! The router in process: every endpoint's success path, each error class with a bad input
//! (asserting status, problem type and field, and that nothing was stored or sent), auth and
//! scopes, provider webhook signatures, uploads and signed file links.

mod common;

use axum::http::{Method, StatusCode};
use cascade_testkit::caps;
use common::*;
use serde_json::{Value, json};

fn start_body() -> Value {
    json!({
        "contact": {"name": "Ann", "phone": "+15551234567"},
        "message": {"text": "Hi {{contact.name}}, order {{deal.id}} shipped"},
        "policy": "default",
        "variables": {"deal": {"id": 42}},
        "metadata": {"crm_id": "L-1"}
    })
}

#[tokio::test]
async fn start_get_list_and_replay() {
    let t = TestApp::new().await;
    let (status, headers, body) = t.post_json("/v1/cascades", SEND_KEY, &start_body(), Some("order-42")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["state"], "running");
    assert_eq!(body["existing"], false);
    let id = body["id"].as_str().expect("id").to_owned();
    assert_eq!(headers["location"], format!("/v1/cascades/{id}"));

    let sent = t.wait_sends(1).await;
    assert_eq!(sent[0].content().text, "Hi Ann, order 42 shipped");

    let (status, _, view) = t.get(&format!("/v1/cascades/{id}"), SEND_KEY).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["id"], id);
    assert_eq!(view["contact"]["name"], "Ann");
    assert_eq!(view["metadata"]["crm_id"], "L-1");
    assert_eq!(view["attempts"][0]["channel"], "whatsapp");
    assert_eq!(view["attempts"][0]["provider_message_id"], "whatsapp-cloud-1");
    assert_eq!(view["steps"].as_array().map(Vec::len), Some(2));
    assert!(view["events"].as_array().is_some_and(|e| e.iter().any(|e| e["type"] == "accepted")));

    // The same key and body: the same cascade, nothing sent again.
    let (status, headers, again) = t.post_json("/v1/cascades", SEND_KEY, &start_body(), Some("order-42")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(again["id"], id);
    assert_eq!(again["existing"], true);
    assert_eq!(headers["idempotent-replayed"], "true");
    // The same key, another body: 409, nothing stored.
    let mut other = start_body();
    other["message"]["text"] = json!("different");
    let (status, _, p) = t.post_json("/v1/cascades", SEND_KEY, &other, Some("order-42")).await;
    assert_problem(status, &p, 409, "idempotency-conflict", Some("Idempotency-Key"));

    let (status, _, list) = t.get("/v1/cascades?state=running&channel=whatsapp", SEND_KEY).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    let (_, _, none) = t.get("/v1/cascades?state=delivered", SEND_KEY).await;
    assert_eq!(none["items"].as_array().map(Vec::len), Some(0));
    assert_eq!(t.whatsapp.sends().len(), 1);
}

#[tokio::test]
async fn list_pages_with_a_cursor() {
    let t = TestApp::new().await;
    for i in 0..5 {
        let mut b = start_body();
        b["contact"]["phone"] = json!(format!("+1555123456{i}"));
        let (status, _, _) = t.post_json("/v1/cascades", SEND_KEY, &b, None).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let (_, _, first) = t.get("/v1/cascades?limit=3", SEND_KEY).await;
    assert_eq!(first["items"].as_array().map(Vec::len), Some(3));
    let cursor = first["next_cursor"].as_str().expect("more pages");
    let (_, _, second) = t.get(&format!("/v1/cascades?limit=3&cursor={cursor}"), SEND_KEY).await;
    assert_eq!(second["items"].as_array().map(Vec::len), Some(2));
    assert!(second["next_cursor"].is_null());
    let ids: std::collections::HashSet<_> = first["items"]
        .as_array()
        .into_iter()
        .chain(second["items"].as_array())
        .flatten()
        .map(|i| i["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), 5);

    let (status, _, p) = t.get("/v1/cascades?state=lost&limit=0&since=yesterday", SEND_KEY).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> =
        p["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
    assert_eq!(fields, ["state", "since", "limit"]);
}

/// Each bad input: its status, problem type and field, and nothing stored or sent.
#[tokio::test]
async fn bad_input_changes_nothing() {
    let t = TestApp::new().await;
    let cases: Vec<(&str, Value, u16, &str, Option<&str>)> = vec![
        (
            "wrong type",
            json!({"contact": {"phone": 5551234567u64}, "message": {"text": "x"}, "policy": "default"}),
            422,
            "invalid-request",
            Some("contact.phone"),
        ),
        (
            "unknown field",
            json!({"contact": {"phone": "+15551234567", "fax": "1"}, "message": {"text": "x"}, "policy": "default"}),
            422,
            "invalid-request",
            Some("contact.fax"),
        ),
        (
            "missing message",
            json!({"contact": {"phone": "+15551234567"}, "policy": "default"}),
            422,
            "invalid-request",
            None,
        ),
        (
            "unknown policy",
            json!({"contact": {"phone": "+15551234567"}, "message": {"text": "x"}, "policy": "nope"}),
            422,
            "invalid-request",
            Some("policy"),
        ),
        (
            "bad inline policy",
            json!({"contact": {"phone": "+15551234567"}, "message": {"text": "x"}, "policy": {"steps": [{"channel": "sms", "until": "soon"}]}}),
            422,
            "invalid-request",
            Some("policy.steps[0].until"),
        ),
        (
            "invalid phone",
            json!({"contact": {"phone": "555-1234"}, "message": {"text": "x"}, "policy": "default"}),
            422,
            "invalid-request",
            Some("contact.phone"),
        ),
        (
            "unknown variable",
            json!({"contact": {"phone": "+15551234567"}, "message": {"text": "Hi {{deal.nme}}"}, "policy": "default", "variables": {"deal": {"name": "x"}}}),
            422,
            "invalid-request",
            Some("message.text"),
        ),
        (
            "internal callback",
            json!({"contact": {"phone": "+15551234567"}, "message": {"text": "x"}, "policy": "default", "callback_url": "http://127.0.0.1:9/hook"}),
            422,
            "invalid-request",
            Some("callback_url"),
        ),
        (
            "metadata callback",
            json!({"contact": {"phone": "+15551234567"}, "message": {"text": "x"}, "policy": "default", "callback_url": "http://169.254.169.254/latest"}),
            422,
            "invalid-request",
            Some("callback_url"),
        ),
        (
            "internal media",
            json!({"contact": {"phone": "+15551234567"}, "message": {"text": "x", "attachment": {"url": "http://10.0.0.5/a.jpg", "media_type": "image/jpeg", "size": 10}}, "policy": "default"}),
            422,
            "invalid-request",
            Some("message.attachment.url"),
        ),
        (
            "media without size",
            json!({"contact": {"phone": "+15551234567"}, "message": {"text": "x", "attachment": {"url": "https://8.8.8.8/a.jpg", "media_type": "image/jpeg"}}, "policy": "default"}),
            422,
            "invalid-request",
            Some("message.attachment.size"),
        ),
        (
            "unknown upload",
            json!({"contact": {"phone": "+15551234567"}, "message": {"text": "x", "attachment": {"upload_id": "0123456789abcdef0123456789abcdef"}}, "policy": "default"}),
            422,
            "invalid-request",
            Some("message.attachment.upload_id"),
        ),
    ];
    for (name, body, status, kind, field) in cases {
        let (s, _, p) = t.post_json("/v1/cascades", SEND_KEY, &body, None).await;
        assert_eq!(s.as_u16(), status, "{name}: {p}");
        assert_eq!(p["type"], format!("urn:cascade:problem:{kind}"), "{name}: {p}");
        assert_eq!(p["field"].as_str(), field, "{name}: {p}");
    }

    let raw = |body: &'static [u8], ct: &'static str| {
        t.request(Method::POST, "/v1/cascades", Some(SEND_KEY), Some((ct, body.to_vec())), None)
    };
    let (s, _, p) = raw(b"{\"contact\": ", "application/json").await;
    assert_problem(s, &p, 400, "malformed-body", None);
    let (s, _, p) = raw(b"contact=x", "application/x-www-form-urlencoded").await;
    assert_problem(s, &p, 415, "unsupported-media-type", Some("Content-Type"));
    let big = format!("{{\"contact\": {{\"name\": \"{}\"}}}}", "x".repeat(2 << 20));
    let (s, _, p) = t
        .request(Method::POST, "/v1/cascades", Some(SEND_KEY), Some(("application/json", big.into_bytes())), None)
        .await;
    assert_problem(s, &p, 413, "payload-too-large", None);
    let (s, _, p) = t.post_json("/v1/cascades", SEND_KEY, &start_body(), Some(&"k".repeat(256))).await;
    assert_problem(s, &p, 422, "invalid-request", Some("Idempotency-Key"));

    let (_, _, list) = t.get("/v1/cascades", ADMIN_KEY).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "nothing was stored");
    assert!(t.whatsapp.sends().is_empty() && t.sms.sends().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn auth_and_scopes() {
    const SEND_ONLY: &str = "send-only-key-0123456789";
    let t = TestApp::with(|b| {
        b.api_key(cascade_http::auth::ApiKey::from_plain("sender", SEND_ONLY, [cascade_http::auth::Scope::Send]))
    })
    .await;
    let (s, _, p) =
        t.request(Method::POST, "/v1/cascades", None, Some(("application/json", b"{}".to_vec())), None).await;
    assert_problem(s, &p, 401, "unauthorized", Some("Authorization"));
    let (s, _, p) = t.post_json("/v1/cascades", "not-a-key-at-all", &start_body(), None).await;
    assert_problem(s, &p, 401, "unauthorized", Some("Authorization"));
    let (s, _, p) = t.post_json("/v1/cascades", READ_KEY, &start_body(), None).await;
    assert_problem(s, &p, 403, "forbidden", None);
    let (s, _, p) = t.get("/v1/cascades", SEND_ONLY).await;
    assert_problem(s, &p, 403, "forbidden", None);
    let (s, _, p) = t.get("/v1/callbacks/dead", READ_KEY).await;
    assert_problem(s, &p, 403, "forbidden", None);
    let (s, _, body) = t.get("/v1/callbacks/dead", ADMIN_KEY).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["items"], json!([]));
    let (s, _, _) = t.get("/v1/cascades", ADMIN_KEY).await;
    assert_eq!(s, StatusCode::OK, "admin has every scope");
    let (s, _, p) = t.get("/v1/cascades/00000000-0000-0000-0000-000000000000", READ_KEY).await;
    assert_problem(s, &p, 404, "not-found", None);
    let (s, _, p) = t.get("/v1/nothing-here", READ_KEY).await;
    assert_problem(s, &p, 404, "not-found", None);
    assert!(t.whatsapp.sends().is_empty());
}

#[tokio::test]
async fn cancel_stops_a_running_cascade() {
    let t = TestApp::new().await;
    let (_, _, body) = t.post_json("/v1/cascades", SEND_KEY, &start_body(), None).await;
    let id = body["id"].as_str().expect("id").to_owned();
    t.wait_sends(1).await;
    let (s, _, r) = t.request(Method::POST, &format!("/v1/cascades/{id}/cancel"), Some(SEND_KEY), None, None).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!((r["cancelled"].as_bool(), r["state"].as_str()), (Some(true), Some("cancelled")));
    let (_, _, r) = t.request(Method::POST, &format!("/v1/cascades/{id}/cancel"), Some(SEND_KEY), None, None).await;
    assert_eq!((r["cancelled"].as_bool(), r["state"].as_str()), (Some(false), Some("cancelled")));
}

#[tokio::test]
async fn a_signed_status_webhook_finishes_the_step_and_a_bad_one_changes_nothing() {
    let t = TestApp::new().await;
    let (_, _, body) = t.post_json("/v1/cascades", SEND_KEY, &start_body(), None).await;
    let id = body["id"].as_str().expect("id").to_owned();
    let sent = t.wait_sends(1).await;
    let pmid = sent[0].result.as_ref().expect("accepted").provider_message_id.clone();
    let payload = whatsapp_status(&pmid, "delivered");

    let (s, _, p) = t.webhook("wa-main", &payload, "sha256=00").await;
    assert_problem(s, &p, 401, "bad-signature", None);
    let (_, _, view) = t.get(&format!("/v1/cascades/{id}"), SEND_KEY).await;
    assert_eq!(view["state"], "running", "a bad signature changes nothing");

    let (s, _, p) = t.webhook("wa-main", b"{not json", &sign_whatsapp(b"{not json")).await;
    assert_problem(s, &p, 400, "malformed-body", None);
    let (s, _, p) = t.webhook("nobody", &payload, &sign_whatsapp(&payload)).await;
    assert_problem(s, &p, 404, "not-found", None);

    let (s, _, r) = t.webhook("wa-main", &payload, &sign_whatsapp(&payload)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["statuses"], 1);
    // The duplicate is harmless.
    let (s, _, _) = t.webhook("wa-main", &payload, &sign_whatsapp(&payload)).await;
    assert_eq!(s, StatusCode::OK);
    let (_, _, view) = t.get(&format!("/v1/cascades/{id}"), SEND_KEY).await;
    assert_eq!(view["state"], "delivered", "{view}");
    assert_eq!(view["outcome"]["channel"], "whatsapp");
    assert!(t.sms.sends().is_empty(), "delivered on the first step: no fallover");

    // The WhatsApp verification handshake.
    let (s, _, body) = t
        .request(
            Method::GET,
            "/webhooks/wa-main?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=12345",
            None,
            None,
            None,
        )
        .await;
    assert_eq!((s, body), (StatusCode::OK, json!(12345)));
    let (s, _, _) = t
        .request(
            Method::GET,
            "/webhooks/wa-main?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
            None,
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn uploads_are_streamed_signed_and_sent() {
    let t = TestApp::new().await;
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let (s, _, up) = t.upload("photo.jpg", "image/jpeg", &bytes).await;
    assert_eq!(s, StatusCode::CREATED, "{up}");
    assert_eq!(up["size"], 100_000);
    assert_eq!(up["media_type"], "image/jpeg");
    let url = up["url"].as_str().expect("url").to_owned();
    let path = url.strip_prefix("http://127.0.0.1:8080").expect("under the public URL").to_owned();

    let (s, got) = t.raw_get(&path).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got, bytes);
    let tampered = path.replace("sig=", "sig=0");
    let (s, _) = t.raw_get(&tampered).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // A cascade naming the upload marks it in use (its details' modification time), so the
    // sweep keeps it: a mark a day old is renewed.
    let mark = t.upload_dir.join(format!("{}.json", up["upload_id"].as_str().expect("upload_id")));
    let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
    std::fs::File::options().write(true).open(&mark).expect("details").set_modified(day_ago).expect("set the mark");
    let mut body = start_body();
    body["message"]["attachment"] = json!({"upload_id": up["upload_id"]});
    let (s, _, r) = t.post_json("/v1/cascades", SEND_KEY, &body, None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let marked = std::fs::metadata(&mark).expect("details").modified().expect("mark");
    assert!(marked > day_ago + std::time::Duration::from_secs(3_600), "the cascade renewed the mark");
    let sent = t.wait_sends(1).await;
    let a = sent[0].content().attachment.clone().expect("attachment");
    assert_eq!((a.size, a.media_type.as_str(), a.filename.as_deref()), (100_000, "image/jpeg", Some("photo.jpg")));
    assert!(a.url.starts_with("http://127.0.0.1:8080/files/"), "{}", a.url);

    let (s, _, p) = t.upload("big.bin", "application/octet-stream", &vec![0u8; 300_001]).await;
    assert_problem(s, &p, 413, "payload-too-large", Some("file"));
    let (s, _, p) =
        t.request(Method::POST, "/v1/uploads", Some(SEND_KEY), Some(("application/json", b"{}".to_vec())), None).await;
    assert_problem(s, &p, 415, "unsupported-media-type", Some("Content-Type"));
    let leftovers = std::fs::read_dir(&t.upload_dir).expect("dir").count();
    assert_eq!(leftovers, 2, "one upload and its details; the refused one left nothing");
}

#[tokio::test]
async fn events_stream_the_timeline_to_the_end() {
    let t = TestApp::new().await;
    let (_, _, body) = t.post_json("/v1/cascades", SEND_KEY, &start_body(), None).await;
    let id = body["id"].as_str().expect("id").to_owned();
    let sent = t.wait_sends(1).await;
    let pmid = sent[0].result.as_ref().expect("accepted").provider_message_id.clone();
    let app = t.clone();
    let watcher = tokio::spawn(async move { app.sse(&format!("/v1/cascades/{id}/events")).await });
    tokio::task::yield_now().await;
    let payload = whatsapp_status(&pmid, "delivered");
    let (s, _, _) = t.webhook("wa-main", &payload, &sign_whatsapp(&payload)).await;
    assert_eq!(s, StatusCode::OK);
    let names = tokio::time::timeout(std::time::Duration::from_secs(10), watcher).await.expect("ends").expect("task");
    assert_eq!(names.first().map(String::as_str), Some("created"));
    assert_eq!(names.last().map(String::as_str), Some("finished"), "{names:?}");
    assert!(names.contains(&"status".to_owned()), "{names:?}");
}

#[tokio::test]
async fn operations_endpoints() {
    let t = TestApp::new().await;
    let (s, _, b) = t.request(Method::GET, "/healthz", None, None, None).await;
    assert_eq!((s, b["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, _, b) = t.request(Method::GET, "/readyz", None, None, None).await;
    assert_eq!((s, b["store"].as_str()), (StatusCode::OK, Some("ok")));
    let (_, _, _) = t.post_json("/v1/cascades", SEND_KEY, &start_body(), None).await;
    t.wait_sends(1).await;
    let metrics = t.text("/metrics").await;
    assert!(metrics.contains("cascade_api_cascades_total{result=\"created\"} 1"), "{metrics}");
    assert!(metrics.contains("cascade_connection_healthy{connection=\"wa-main\",channel=\"whatsapp\"} 1"), "{metrics}");
    assert!(metrics.contains("cascade_due_lag_seconds"), "{metrics}");
    let (s, _, doc) = t.request(Method::GET, "/v1/openapi.json", None, None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    for path in
        ["/v1/cascades", "/v1/cascades/{id}", "/v1/cascades/{id}/cancel", "/v1/cascades/{id}/events", "/v1/uploads"]
    {
        assert!(doc["paths"][path].is_object(), "{path} missing from the OpenAPI document");
    }
    assert!(doc["components"]["schemas"]["StartRequest"]["properties"]["contact"].is_object());
    let _ = caps::sms();
}

#[tokio::test]
async fn tracked_links_redirect_and_record_the_click() {
    let t = TestApp::new().await;
    let body = json!({
        "contact": {"phone": "+15551234567"},
        "message": {"text": "Your offer: https://shop.example.com/offer?id=7."},
        "policy": {"track_links": true, "steps": [{"channel": "whatsapp", "until": "clicked"}, {"channel": "sms"}]}
    });
    let (s, _, r) = t.post_json("/v1/cascades", SEND_KEY, &body, None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let id = r["id"].as_str().expect("id").to_owned();
    let sent = t.wait_sends(1).await;
    let text = &sent[0].content().text;
    assert!(!text.contains("shop.example.com"), "the link is rewritten: {text}");
    let link = text.split_whitespace().find(|w| w.contains("/l/")).expect("a tracked link").trim_end_matches('.');
    let path = link.strip_prefix("http://127.0.0.1:8080").expect("under the public URL");

    let follow = |ua: &'static str| {
        let r = axum::http::Request::get(path).header("user-agent", ua).body(axum::body::Body::empty()).expect("req");
        let router = t.router.clone();
        async move { tower::ServiceExt::oneshot(router, r).await.expect("infallible") }
    };
    // A messenger drawing the link's preview does not count as a click.
    let preview = follow("WhatsApp/2.23.20.0").await;
    assert_eq!(preview.status(), StatusCode::FOUND);
    let (_, _, view) = t.get(&format!("/v1/cascades/{id}"), SEND_KEY).await;
    assert_eq!(view["state"], "running");

    let click = follow("Mozilla/5.0 (iPhone)").await;
    assert_eq!(click.status(), StatusCode::FOUND);
    assert_eq!(click.headers()["location"], "https://shop.example.com/offer?id=7");
    let (_, _, view) = t.get(&format!("/v1/cascades/{id}"), SEND_KEY).await;
    assert_eq!(view["state"], "delivered", "{view}");
    assert_eq!(view["outcome"]["status"], "clicked");
    assert!(t.sms.sends().is_empty());

    let forged = path.replace("/l/", "/l/A");
    let (s, _) = t.raw_get(&forged).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn event_streams_end_when_the_server_begins_to_stop() {
    let t = TestApp::new().await;
    let (_, _, body) = t.post_json("/v1/cascades", SEND_KEY, &start_body(), None).await;
    let id = body["id"].as_str().expect("id").to_owned();
    t.wait_sends(1).await;
    let app = t.clone();
    let watcher = tokio::spawn(async move { app.sse(&format!("/v1/cascades/{id}/events")).await });
    tokio::task::yield_now().await;
    t.app.begin_shutdown();
    let names = tokio::time::timeout(std::time::Duration::from_secs(10), watcher)
        .await
        .expect("the stream ends although the cascade still runs")
        .expect("task");
    assert!(!names.contains(&"finished".to_owned()), "{names:?}");
}

/// A request that names no file but carries one in a per-channel override or in a step of its
/// own policy: every such URL is checked like `message.attachment.url`.
fn with_file_at(overrides: Value, policy: Value) -> Value {
    json!({
        "contact": {"phone": "+15551234567"},
        "message": {"text": "Your invoice", "overrides": overrides},
        "policy": policy
    })
}

fn file(url: &str) -> Value {
    json!({"url": url, "media_type": "application/pdf", "size": 1000})
}

/// Every file URL a request carries — per-channel overrides and the content of an inline
/// policy's steps — is refused when it points inside (or is not http), with its exact path,
/// and a refused request stores and sends nothing.
#[tokio::test]
async fn file_urls_in_overrides_and_inline_steps_are_checked() {
    let t = TestApp::new().await;
    let steps = |content: Value| json!({"steps": [{"channel": "whatsapp"}, {"channel": "sms", "content": content}]});
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "private address in an override",
            with_file_at(json!({"whatsapp": {"attachment": file("http://10.0.0.5/invoice.pdf")}}), json!("default")),
            vec!["message.overrides.whatsapp.attachment.url"],
        ),
        (
            "a local file in an override",
            with_file_at(json!({"sms": {"attachment": file("file:///etc/passwd")}}), json!("default")),
            vec!["message.overrides.sms.attachment.url"],
        ),
        (
            "a name that resolves to loopback",
            with_file_at(json!({"whatsapp": {"attachment": file("http://localhost:8080/x.pdf")}}), json!("default")),
            vec!["message.overrides.whatsapp.attachment.url"],
        ),
        (
            "cloud metadata in an inline step",
            with_file_at(json!({}), steps(json!({"attachment": file("http://169.254.169.254/latest/meta-data")}))),
            vec!["policy.steps[1].content.attachment.url"],
        ),
        (
            "both at once",
            with_file_at(
                json!({"whatsapp": {"attachment": file("http://[::1]/a.pdf")}}),
                steps(json!({"text": "short", "attachment": file("http://192.168.1.1/b.pdf")})),
            ),
            vec!["message.overrides.whatsapp.attachment.url", "policy.steps[1].content.attachment.url"],
        ),
    ];
    for (name, body, fields) in cases {
        let (s, _, p) = t.post_json("/v1/cascades", SEND_KEY, &body, None).await;
        assert_problem(s, &p, 422, "invalid-request", Some(fields[0]));
        let got: Vec<&str> =
            p["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
        assert_eq!(got, fields, "{name}: {p}");
    }
    let (_, _, p) = t
        .post_json(
            "/v1/cascades",
            SEND_KEY,
            &with_file_at(json!({"whatsapp": {"attachment": file("http://10.0.0.5/invoice.pdf")}}), json!("default")),
            None,
        )
        .await;
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("internal address (10.0.0.5)")), "{p}");

    let (_, _, list) = t.get("/v1/cascades", ADMIN_KEY).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "nothing was stored");
    assert!(t.whatsapp.sends().is_empty() && t.sms.sends().is_empty(), "nothing was sent");
}

/// Public file URLs pass and are sent as given; buttons are links the contact opens, not
/// files the server fetches, so their URLs are not restricted.
#[tokio::test]
async fn public_files_and_any_button_pass() {
    let t = TestApp::new().await;
    let body = with_file_at(
        json!({"whatsapp": {
            "attachment": file("https://8.8.8.8/invoice.pdf"),
            "buttons": [{"caption": "Intranet", "url": "http://10.0.0.5/orders/42"}]
        }}),
        json!({"steps": [{
            "channel": "whatsapp",
            "content": {"buttons": [{"caption": "Local", "url": "http://127.0.0.1/x"}]}
        }]}),
    );
    let (s, _, r) = t.post_json("/v1/cascades", SEND_KEY, &body, None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let sent = t.wait_sends(1).await;
    let content = sent[0].content();
    assert_eq!(content.attachment.as_ref().map(|a| a.url.as_str()), Some("https://8.8.8.8/invoice.pdf"));
    assert_eq!(content.buttons[0].url, "http://127.0.0.1/x", "the step's buttons win over the channel's");

    // A server that allows internal URLs (a demo on one machine) takes them in overrides too.
    let open = TestApp::with(|b| b.allow_internal_urls(true)).await;
    let body = with_file_at(json!({"whatsapp": {"attachment": file("http://10.0.0.5/invoice.pdf")}}), json!("default"));
    let (s, _, r) = open.post_json("/v1/cascades", SEND_KEY, &body, None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
}

fn cascade_ids(list: &Value) -> Vec<String> {
    list["items"].as_array().expect("items").iter().filter_map(|i| i["id"].as_str().map(str::to_owned)).collect()
}

async fn start_as(t: &TestApp, key: &str) -> String {
    let (s, _, r) = t.post_json("/v1/cascades", key, &start_body(), None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    r["id"].as_str().expect("id").to_owned()
}

/// Two keys on one server: each reads, lists, watches and cancels only its own cascades; a
/// foreign id answers exactly like an unknown one; an admin key sees and cancels all.
#[tokio::test]
async fn keys_see_only_their_own_cascades() {
    let t = TestApp::new().await;
    let crm: Vec<String> =
        [start_as(&t, SEND_KEY).await, start_as(&t, SEND_KEY).await, start_as(&t, SEND_KEY).await].into();
    let partner = start_as(&t, PARTNER_KEY).await;
    // One started without any API key (as Kommo's and embedders' are): only admin sees it.
    let policy = cascade_engine::Policy::new([cascade_engine::Step::new("sms")]);
    let request = cascade_engine::CascadeRequest::new(
        cascade_engine::Contact::with_phone("+15557654321"),
        cascade_engine::Message::text("hi"),
        policy,
    );
    let ownerless = t.app.engine().submit(request).await.expect("submitted").id().to_string();

    // Read.
    let (s, _, view) = t.get(&format!("/v1/cascades/{}", crm[0]), SEND_KEY).await;
    assert_eq!((s, view["id"].as_str()), (StatusCode::OK, Some(crm[0].as_str())));
    let unknown = cascade_engine::CascadeId::new().to_string();
    let (s, _, missing) = t.get(&format!("/v1/cascades/{unknown}"), PARTNER_KEY).await;
    assert_problem(s, &missing, 404, "not-found", None);
    for (key, id) in [(PARTNER_KEY, &crm[0]), (READ_KEY, &crm[0]), (SEND_KEY, &partner), (SEND_KEY, &ownerless)] {
        let (s, _, p) = t.get(&format!("/v1/cascades/{id}"), key).await;
        assert_problem(s, &p, 404, "not-found", None);
        assert_eq!(p["detail"], format!("no cascade {id}"), "worded as for an unknown id");
        assert_eq!(p.as_object().map(|o| o.len()), missing.as_object().map(|o| o.len()), "{p} vs {missing}");
    }
    for id in crm.iter().chain([&partner, &ownerless]) {
        let (s, _, _) = t.get(&format!("/v1/cascades/{id}"), ADMIN_KEY).await;
        assert_eq!(s, StatusCode::OK, "admin reads {id}");
    }

    // List: only one's own, paged among one's own; admin lists all.
    let (_, _, page) = t.get("/v1/cascades?limit=2", SEND_KEY).await;
    assert_eq!(cascade_ids(&page), [crm[2].clone(), crm[1].clone()]);
    let cursor = page["next_cursor"].as_str().expect("a full page has a cursor");
    let (_, _, rest) = t.get(&format!("/v1/cascades?limit=2&cursor={cursor}"), SEND_KEY).await;
    assert_eq!(cascade_ids(&rest), [crm[0].clone()], "the partner's newer cascade is not on the crm's pages");
    let (_, _, theirs) = t.get("/v1/cascades", PARTNER_KEY).await;
    assert_eq!(cascade_ids(&theirs), [partner.as_str()]);
    let (_, _, none) = t.get("/v1/cascades", READ_KEY).await;
    assert!(cascade_ids(&none).is_empty(), "a key that started nothing lists nothing");
    let (_, _, all) = t.get("/v1/cascades?channel=whatsapp", ADMIN_KEY).await;
    assert_eq!(cascade_ids(&all).len(), 4, "admin lists every key's cascades (filters still apply)");
    let (_, _, all) = t.get("/v1/cascades", ADMIN_KEY).await;
    assert_eq!(cascade_ids(&all).len(), 5, "and those of no key");

    // Cancel: a foreign id is a 404 and changes nothing.
    let cancel = |id: String, key: &'static str| {
        let t = t.clone();
        async move { t.request(Method::POST, &format!("/v1/cascades/{id}/cancel"), Some(key), None, None).await }
    };
    let (s, _, p) = cancel(crm[0].clone(), PARTNER_KEY).await;
    assert_problem(s, &p, 404, "not-found", None);
    let (s, _, p) = cancel(unknown.clone(), PARTNER_KEY).await;
    assert_problem(s, &p, 404, "not-found", None);
    let (_, _, view) = t.get(&format!("/v1/cascades/{}", crm[0]), SEND_KEY).await;
    assert_eq!(view["state"], "running", "the partner's cancel changed nothing");
    let (s, _, r) = cancel(crm[0].clone(), SEND_KEY).await;
    assert_eq!((s, r["cancelled"].as_bool()), (StatusCode::OK, Some(true)), "{r}");
    let (s, _, r) = cancel(partner.clone(), ADMIN_KEY).await;
    assert_eq!((s, r["cancelled"].as_bool()), (StatusCode::OK, Some(true)), "admin cancels any: {r}");

    // Watch: the stream of a foreign cascade is a 404; one's own (ended) streams to the end.
    let (s, _, p) = t.get(&format!("/v1/cascades/{}/events", crm[0]), PARTNER_KEY).await;
    assert_problem(s, &p, 404, "not-found", None);
    let (s, _, p) = t.get(&format!("/v1/cascades/{partner}/events"), SEND_KEY).await;
    assert_problem(s, &p, 404, "not-found", None);
    let own = t.sse_as(SEND_KEY, &format!("/v1/cascades/{}/events", crm[0])).await;
    assert_eq!(own.last().map(String::as_str), Some("finished"), "{own:?}");
    let theirs = t.sse_as(ADMIN_KEY, &format!("/v1/cascades/{partner}/events")).await;
    assert_eq!(theirs.last().map(String::as_str), Some("finished"), "{theirs:?}");
}

/// Puts `n` callbacks in the outbox and gives every one up; returns their ids, oldest first.
async fn dead_callbacks(t: &TestApp, n: usize) -> Vec<u64> {
    use cascade_engine::store::{CascadeUpdate, NewOutboxItem};
    let store = t.app.engine().store().clone();
    let mut ids = Vec::new();
    for i in 0..n {
        let at = chrono::Utc::now();
        let record = cascade_testkit::sample_record(None, "fp", &format!("+1555000{i:04}"), at);
        store.create(record.clone(), vec![]).await.expect("create");
        let mut state = record.state.clone();
        state.phase = cascade_engine::machine::Phase::Finished;
        state.outcome = Some(cascade_engine::Outcome::Cancelled);
        state.finished_at = Some(at);
        let update = CascadeUpdate {
            state,
            expected_version: record.version,
            wake_at: None,
            events: Vec::new(),
            provider_refs: Vec::new(),
            outbox: Some(NewOutboxItem {
                cascade: record.id(),
                url: "https://crm.example.com/hooks".into(),
                body: json!({"n": i}),
            }),
            recipient: None,
        };
        store.save(&update).await.expect("save");
        let later = chrono::Utc::now() + chrono::Duration::hours(1);
        let items = store.claim_outbox(later, 10, std::time::Duration::from_secs(60)).await.expect("claim");
        assert_eq!(items.len(), 1);
        store.outbox_result(items[0].id, Err((format!("HTTP 503 ({i})"), None))).await.expect("dead");
        ids.push(items[0].id);
    }
    ids
}

fn callback_ids(page: &Value) -> Vec<u64> {
    page["items"].as_array().expect("items").iter().filter_map(|i| i["id"].as_u64()).collect()
}

/// `GET /v1/callbacks/dead` pages newest first with `limit` and `cursor`, to the last one.
#[tokio::test]
async fn dead_callbacks_are_paged_newest_first() {
    let t = TestApp::new().await;
    let mut ids = dead_callbacks(&t, 5).await;
    ids.reverse();

    let (s, _, page) = t.get("/v1/callbacks/dead?limit=2", ADMIN_KEY).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(callback_ids(&page), ids[..2]);
    assert_eq!(page["items"][0]["dead"], true);
    assert_eq!(page["items"][0]["last_error"], "HTTP 503 (4)");
    assert_eq!(page["items"][0]["body"], json!({"n": 4}));
    let mut seen = callback_ids(&page);
    let mut cursor = page["next_cursor"].as_str().expect("a full page has a cursor").to_owned();
    loop {
        let (s, _, page) = t.get(&format!("/v1/callbacks/dead?limit=2&cursor={cursor}"), ADMIN_KEY).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        seen.extend(callback_ids(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every dead callback once, newest first");

    let (_, _, all) = t.get("/v1/callbacks/dead", ADMIN_KEY).await;
    assert_eq!(callback_ids(&all), ids, "the default page (100) holds all five");
    assert!(all["next_cursor"].is_null());
    let (_, _, last) = t.get(&format!("/v1/callbacks/dead?cursor={}", ids[4]), ADMIN_KEY).await;
    assert_eq!(last["items"], json!([]), "below the oldest there is nothing");

    let (s, _, p) = t.get("/v1/callbacks/dead?limit=501&cursor=abc", ADMIN_KEY).await;
    assert_problem(s, &p, 422, "invalid-request", Some("cursor"));
    let fields: Vec<&str> =
        p["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
    assert_eq!(fields, ["cursor", "limit"]);
    let (s, _, p) = t.get("/v1/callbacks/dead?limit=0", ADMIN_KEY).await;
    assert_problem(s, &p, 422, "invalid-request", Some("limit"));
    let (s, _, p) = t.get("/v1/callbacks/dead?page=2", ADMIN_KEY).await;
    assert_problem(s, &p, 422, "invalid-request", None);
    let (s, _, p) = t.get("/v1/callbacks/dead?limit=500", SEND_KEY).await;
    assert_problem(s, &p, 403, "forbidden", None);
}

/// The upload limit and the engine's file limit are one value (100 MB by default), and an
/// upload limit set above the engine's is lowered to it: a file the server took is never
/// refused for its size when it is sent.
#[tokio::test]
async fn an_upload_the_server_takes_is_never_too_large_to_send() {
    assert_eq!(cascade_http::DEFAULT_MAX_UPLOAD, 100_000_000);
    assert_eq!(cascade_engine::plan::DEFAULT_MAX_FILE_SIZE, cascade_http::DEFAULT_MAX_UPLOAD);
    assert_eq!(cascade_engine::EngineConfig::default().max_file_size, cascade_http::DEFAULT_MAX_UPLOAD);

    // The test app asks for 300,000-byte uploads; the engine here takes files up to 1,000.
    let config = cascade_engine::EngineConfig { max_file_size: 1_000, ..Default::default() };
    let t = TestApp::with_engine(config, |b| b).await;
    let (s, _, up) = t.upload("exact.jpg", "image/jpeg", &[7u8; 1_000]).await;
    assert_eq!(s, StatusCode::CREATED, "{up}");
    let (s, _, p) = t.upload("over.jpg", "image/jpeg", &[7u8; 1_001]).await;
    assert_problem(s, &p, 413, "payload-too-large", Some("file"));
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("1000-byte")), "{p}");

    let mut body = start_body();
    body["message"]["attachment"] = json!({"upload_id": up["upload_id"]});
    let (s, _, r) = t.post_json("/v1/cascades", SEND_KEY, &body, None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "the largest upload is sent: {r}");

    // The same boundary for a file given by URL.
    body["message"]["attachment"] = json!({"url": "https://8.8.8.8/a.jpg", "media_type": "image/jpeg", "size": 1_000});
    let (s, _, r) = t.post_json("/v1/cascades", SEND_KEY, &body, None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    body["message"]["attachment"]["size"] = json!(1_001);
    let (s, _, p) = t.post_json("/v1/cascades", SEND_KEY, &body, None).await;
    assert_problem(s, &p, 422, "invalid-request", Some("message.attachment.size"));
}
