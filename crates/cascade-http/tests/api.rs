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

    let (status, _, view) = t.get(&format!("/v1/cascades/{id}"), READ_KEY).await;
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

    let (status, _, list) = t.get("/v1/cascades?state=running&channel=whatsapp", READ_KEY).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    let (_, _, none) = t.get("/v1/cascades?state=delivered", READ_KEY).await;
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
    let (_, _, first) = t.get("/v1/cascades?limit=3", READ_KEY).await;
    assert_eq!(first["items"].as_array().map(Vec::len), Some(3));
    let cursor = first["next_cursor"].as_str().expect("more pages");
    let (_, _, second) = t.get(&format!("/v1/cascades?limit=3&cursor={cursor}"), READ_KEY).await;
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

    let (status, _, p) = t.get("/v1/cascades?state=lost&limit=0&since=yesterday", READ_KEY).await;
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

    let (_, _, list) = t.get("/v1/cascades", READ_KEY).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "nothing was stored");
    assert!(t.whatsapp.sends().is_empty() && t.sms.sends().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn auth_and_scopes() {
    let t = TestApp::new().await;
    let (s, _, p) =
        t.request(Method::POST, "/v1/cascades", None, Some(("application/json", b"{}".to_vec())), None).await;
    assert_problem(s, &p, 401, "unauthorized", Some("Authorization"));
    let (s, _, p) = t.post_json("/v1/cascades", "not-a-key-at-all", &start_body(), None).await;
    assert_problem(s, &p, 401, "unauthorized", Some("Authorization"));
    let (s, _, p) = t.post_json("/v1/cascades", READ_KEY, &start_body(), None).await;
    assert_problem(s, &p, 403, "forbidden", None);
    let (s, _, p) = t.get("/v1/cascades", SEND_KEY).await;
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
    let (_, _, view) = t.get(&format!("/v1/cascades/{id}"), READ_KEY).await;
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
    let (_, _, view) = t.get(&format!("/v1/cascades/{id}"), READ_KEY).await;
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

    let mut body = start_body();
    body["message"]["attachment"] = json!({"upload_id": up["upload_id"]});
    let (s, _, r) = t.post_json("/v1/cascades", SEND_KEY, &body, None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
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
    let (_, _, view) = t.get(&format!("/v1/cascades/{id}"), READ_KEY).await;
    assert_eq!(view["state"], "running");

    let click = follow("Mozilla/5.0 (iPhone)").await;
    assert_eq!(click.status(), StatusCode::FOUND);
    assert_eq!(click.headers()["location"], "https://shop.example.com/offer?id=7");
    let (_, _, view) = t.get(&format!("/v1/cascades/{id}"), READ_KEY).await;
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
