//! The campaign API in process, against the in-memory store and stub channels: creating from
//! an inline list and from an uploaded CSV, dry runs, every refused setting with its field,
//! pause/resume/cancel with their conflicts, CSV exports, the progress stream, and keys that
//! see only their own campaigns.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use cascade_engine::{Accepted, SendError, Status};
use cascade_http::Workers;
use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const ANN: &str = "+12015550101";
const BOB: &str = "+12015550102";
const CY: &str = "+12015550103";

/// An app whose stubs report every message delivered at once, with its workers (and so the
/// campaign runner) running.
async fn delivering_app() -> (TestApp, Workers) {
    let t = TestApp::new().await;
    let delivered = Accepted { provider_message_id: String::new(), cost: None, status: Some(Status::Delivered) };
    t.whatsapp.set_default(Some(Ok(delivered.clone())));
    t.sms.set_default(Some(Ok(delivered)));
    let workers = t.app.spawn_workers();
    (t, workers)
}

fn campaign(recipients: Value) -> Value {
    json!({
        "name": "spring sale",
        "message": {"text": "Hi {{contact.name}}, {{offer.code}} is yours"},
        "policy": "default",
        "variables": {"offer": {"code": "SPRING"}},
        "rate": "1000/s",
        "metadata": {"crm_list": 7},
        "recipients": recipients
    })
}

fn three() -> Value {
    json!([
        {"phone": ANN, "name": "Ann"},
        {"phone": BOB, "name": "Bob"},
        {"phone": CY, "name": "Cy"}
    ])
}

/// A campaign that starts in an hour: it stays running with every recipient pending.
fn later(recipients: Value) -> Value {
    let mut body = campaign(recipients);
    let start = chrono::Utc::now() + chrono::Duration::hours(1);
    body["schedule"] = json!({"start_at": start.to_rfc3339()});
    body
}

async fn create(t: &TestApp, key: &str, body: &Value) -> String {
    let (status, headers, created) = t.post_json("/v1/campaigns", key, body, None).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["campaign"]["id"].as_str().expect("id").to_owned();
    assert_eq!(headers["location"], format!("/v1/campaigns/{id}"));
    id
}

/// Reads the campaign until `done` holds (at most 10 s).
async fn wait_for(t: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, view) = t.get(&format!("/v1/campaigns/{id}"), SEND_KEY).await;
        assert_eq!(status, StatusCode::OK, "{view}");
        if done(&view) {
            return view;
        }
        assert!(tokio::time::Instant::now() < deadline, "the campaign did not get there in 10 s: {view}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn settled(v: &Value) -> bool {
    matches!(v["state"].as_str(), Some("finished" | "cancelled")) && v["running"] == 0
}

async fn post(t: &TestApp, path: &str, key: &str) -> (StatusCode, Value) {
    let (status, _, body) = t.request(Method::POST, path, Some(key), None, None).await;
    (status, body)
}

/// The rows of a CSV export (the header first), and its headers.
async fn export(t: &TestApp, path: &str) -> (axum::http::HeaderMap, Vec<Vec<String>>) {
    let (status, headers, body) = t.get(path, SEND_KEY).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let text = body.as_str().expect("CSV text").to_owned();
    let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(text.as_bytes());
    let rows = reader.records().map(|r| r.expect("row").iter().map(str::to_owned).collect()).collect();
    (headers, rows)
}

fn fields(p: &Value) -> Vec<&str> {
    p["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect()
}

#[tokio::test]
async fn a_campaign_from_an_inline_list_delivers_to_everyone() {
    let (t, _workers) = delivering_app().await;
    // Bob is not on WhatsApp: his cascade falls over to SMS.
    t.whatsapp.script(BOB, [Err(SendError::unreachable("131026", "not a WhatsApp user"))]);
    let (status, headers, created) = t.post_json("/v1/campaigns", SEND_KEY, &campaign(three()), None).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["campaign"]["id"].as_str().expect("id").to_owned();
    assert_eq!(headers["location"], format!("/v1/campaigns/{id}"));
    assert_eq!(created["campaign"]["total"], 3);
    assert_eq!(created["campaign"]["name"], "spring sale");
    assert_eq!(created["campaign"]["rate"], "1000/s");
    let report = &created["report"];
    assert_eq!(
        (report["valid"].as_u64(), report["invalid"].as_u64(), report["duplicate"].as_u64()),
        (Some(3), Some(0), Some(0))
    );
    assert_eq!(report["errors"], json!([]));

    let view = wait_for(&t, &id, settled).await;
    assert_eq!(view["state"], "finished", "{view}");
    assert_eq!(
        (view["started"].as_u64(), view["delivered"].as_u64(), view["failed"].as_u64()),
        (Some(3), Some(3), Some(0))
    );
    assert_eq!(view["remaining"], 0);
    assert_eq!(view["delivered_by_channel"], json!({"whatsapp": 2, "sms": 1}));
    assert_eq!(view["spec"]["rate"], "1000/s");
    assert_eq!(view["spec"]["metadata"], json!({"crm_list": 7}));
    assert_eq!(view["import"]["valid"], 3);

    let mut texts: Vec<String> = t.whatsapp.sends().iter().map(|s| s.content().text.clone()).collect();
    texts.sort();
    assert_eq!(texts, ["Hi Ann, SPRING is yours", "Hi Bob, SPRING is yours", "Hi Cy, SPRING is yours"]);
    assert_eq!(t.sms.sends().len(), 1);
    assert_eq!(t.sms.sends()[0].request.address.value, BOB);

    let (status, _, list) = t.get("/v1/campaigns", SEND_KEY).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"][0]["id"], id);
    assert_eq!(list["items"][0]["state"], "finished");
    assert_eq!(list["items"][0]["total"], 3);
    assert!(list["next_cursor"].is_null());
}

#[tokio::test]
async fn a_campaign_from_an_uploaded_csv_reports_bad_and_duplicate_rows() {
    let (t, _workers) = delivering_app().await;
    let csv =
        "phone,name,city\n+1 201 555 0101,Ann,Austin\n12,Bob,\n(201) 555-0101,Ann again,\n201 555 0102,Cy,Dallas\n";
    let (status, _, uploaded) = t.upload("customers.csv", "text/csv", csv.as_bytes()).await;
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");
    let mut body = campaign(json!({"upload_id": uploaded["upload_id"]}));
    body["message"]["text"] = json!("Hi {{contact.name}} in {{contact.fields.city | default(\"your town\")}}");
    body["region"] = json!("US");
    let (status, _, created) = t.post_json("/v1/campaigns", SEND_KEY, &body, None).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let report = &created["report"];
    assert_eq!(
        (report["valid"].as_u64(), report["invalid"].as_u64(), report["duplicate"].as_u64()),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(
        report["errors"],
        json!([{"line": 3, "reason": "phone \"12\": too short"}, {"line": 4, "reason": "duplicate of line 2"}])
    );
    assert_eq!(created["campaign"]["total"], 2);

    let id = created["campaign"]["id"].as_str().expect("id");
    let view = wait_for(&t, id, settled).await;
    assert_eq!((view["delivered"].as_u64(), view["import"]["invalid"].as_u64()), (Some(2), Some(1)));
    let mut to: Vec<String> = t.whatsapp.sends().iter().map(|s| s.request.address.value.clone()).collect();
    to.sort();
    assert_eq!(to, [ANN, BOB]);
}

#[tokio::test]
async fn a_dry_run_checks_the_list_and_stores_nothing() {
    let (t, _workers) = delivering_app().await;
    let mut body = campaign(json!([{"phone": ANN, "name": "Ann"}, {"phone": "12"}, {"phone": ANN}]));
    body["dry_run"] = json!(true);
    let (status, _, answer) = t.post_json("/v1/campaigns", SEND_KEY, &body, None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let report = &answer["report"];
    assert_eq!(
        (report["valid"].as_u64(), report["invalid"].as_u64(), report["duplicate"].as_u64()),
        (Some(1), Some(1), Some(1))
    );
    assert!(answer.get("campaign").is_none());

    let (_, _, list) = t.get("/v1/campaigns", ADMIN_KEY).await;
    assert_eq!(list["items"], json!([]));
    tokio::task::yield_now().await;
    assert!(t.whatsapp.sends().is_empty());
}

/// Each refused setting: a 422 naming its field, and nothing stored.
#[tokio::test]
async fn bad_settings_are_refused_with_their_fields() {
    let t = TestApp::new().await;
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut b = campaign(three());
        edit(&mut b);
        b
    };
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        ("bad window", with(&|b| b["schedule"] = json!({"window": "someday 09:00-17:00"})), vec!["schedule.window"]),
        ("bad time zone", with(&|b| b["schedule"] = json!({"time_zone": "Mars/Olympus"})), vec!["schedule.time_zone"]),
        ("bad rate", with(&|b| b["rate"] = json!("fast")), vec!["rate"]),
        ("no rate", with(&|b| b["rate"] = Value::Null), vec!["rate"]),
        (
            "no connection for a channel",
            with(&|b| b["policy"] = json!({"steps": [{"channel": "fax"}]})),
            vec!["policy.steps[0].channel"],
        ),
        ("unknown policy", with(&|b| b["policy"] = json!("nope")), vec!["policy"]),
        (
            "end before start",
            with(&|b| b["schedule"] = json!({"start_at": "2030-01-02T09:00:00Z", "end_at": "2030-01-01T09:00:00Z"})),
            vec!["schedule.end_at"],
        ),
        (
            "unknown upload",
            with(&|b| b["recipients"] = json!({"upload_id": "0123456789abcdef0123456789abcdef"})),
            vec!["recipients.upload_id"],
        ),
        ("no list", with(&|b| b["recipients"] = Value::Null), vec!["recipients"]),
        ("bad region", with(&|b| b["region"] = json!("XX")), vec!["region"]),
        (
            "every problem at once",
            with(&|b| {
                b["schedule"] = json!({"window": "someday 09:00-17:00"});
                b["rate"] = json!("0/s");
                b["policy"] = json!({"steps": [{"channel": "fax"}]});
            }),
            vec!["schedule.window", "rate", "policy.steps[0].channel"],
        ),
    ];
    for (name, body, expected) in cases {
        let (status, headers, p) = t.post_json("/v1/campaigns", SEND_KEY, &body, None).await;
        assert_problem(status, &p, 422, "invalid-request", Some(expected[0]));
        assert_eq!(headers["content-type"], "application/problem+json", "{name}");
        assert_eq!(fields(&p), expected, "{name}: {p}");
    }
    // A wrong type is named by its path, as for cascades.
    let (status, _, p) = t.post_json("/v1/campaigns", SEND_KEY, &with(&|b| b["dry_run"] = json!("yes")), None).await;
    assert_problem(status, &p, 422, "invalid-request", Some("dry_run"));

    let (_, _, list) = t.get("/v1/campaigns", ADMIN_KEY).await;
    assert_eq!(list["items"], json!([]), "nothing stored");
    assert!(t.whatsapp.sends().is_empty());
}

#[tokio::test]
async fn a_list_without_a_valid_recipient_is_refused_with_its_report() {
    let t = TestApp::new().await;
    let body = campaign(json!([{"phone": "12", "name": "Bob"}, {"name": "No one"}]));
    let (status, _, p) = t.post_json("/v1/campaigns", SEND_KEY, &body, None).await;
    assert_problem(status, &p, 422, "invalid-request", Some("recipients"));
    assert_eq!((p["report"]["valid"].as_u64(), p["report"]["invalid"].as_u64()), (Some(0), Some(2)));
    // An inline list's lines are the recipients' positions in it.
    let report_lines: Vec<u64> =
        p["report"]["errors"].as_array().expect("errors").iter().filter_map(|e| e["line"].as_u64()).collect();
    assert_eq!(report_lines, [1, 2]);
    assert_eq!(p["report"]["errors"][1], json!({"line": 2, "reason": "no phone, email or address"}));
    assert!(t.whatsapp.sends().is_empty());
}

#[tokio::test]
async fn pause_resume_and_their_conflicts() {
    let (t, _workers) = delivering_app().await;
    let id = create(&t, SEND_KEY, &later(three())).await;

    let (status, paused) = post(&t, &format!("/v1/campaigns/{id}/pause"), SEND_KEY).await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!((paused["id"].as_str(), paused["state"].as_str()), (Some(id.as_str()), Some("paused")));
    assert_eq!(paused["remaining"], 3);

    let (status, p) = post(&t, &format!("/v1/campaigns/{id}/pause"), SEND_KEY).await;
    assert_problem(status, &p, 409, "conflict", None);
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("paused")), "{p}");

    let (status, resumed) = post(&t, &format!("/v1/campaigns/{id}/resume"), SEND_KEY).await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(resumed["state"], "running");
    assert_eq!(resumed["phase"], "scheduled");
    let (status, p) = post(&t, &format!("/v1/campaigns/{id}/resume"), SEND_KEY).await;
    assert_problem(status, &p, 409, "conflict", None);

    let (status, p) = post(&t, "/v1/campaigns/01a1fda5-2498-71ed-bb86-cd3a71a2a031/pause", SEND_KEY).await;
    assert_problem(status, &p, 404, "not-found", None);
    let (status, p) = post(&t, "/v1/campaigns/nope/resume", SEND_KEY).await;
    assert_problem(status, &p, 404, "not-found", None);
    assert!(t.whatsapp.sends().is_empty(), "nothing starts before start_at");
}

#[tokio::test]
async fn cancel_exports_every_recipient_not_started_page_by_page() {
    let (t, _workers) = delivering_app().await;
    // More than one export page (1,000 recipients per store read).
    let list: Vec<Value> = (0..1_201).map(|i| json!({"email": format!("reader{i}@example.com")})).collect();
    let id = create(&t, SEND_KEY, &later(Value::Array(list))).await;

    let (status, cancelled) = post(&t, &format!("/v1/campaigns/{id}/cancel"), SEND_KEY).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!((cancelled["state"].as_str(), cancelled["cancelled"].as_u64()), (Some("cancelled"), Some(1_201)));
    let (status, p) = post(&t, &format!("/v1/campaigns/{id}/cancel"), SEND_KEY).await;
    assert_problem(status, &p, 409, "conflict", None);
    let (status, p) = post(&t, &format!("/v1/campaigns/{id}/resume"), SEND_KEY).await;
    assert_problem(status, &p, 409, "conflict", None);

    let (headers, rows) = export(&t, &format!("/v1/campaigns/{id}/export?status=cancelled")).await;
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(headers["content-disposition"], format!("attachment; filename=\"campaign-{id}-cancelled.csv\""));
    assert_eq!(rows[0], cascade_campaigns::export::HEADER);
    assert_eq!(rows.len(), 1 + 1_201);
    assert_eq!(
        rows[1][..6],
        ["1", "", "reader0@example.com", "", "cancelled", "not started: the campaign was cancelled"]
    );
    assert_eq!(rows[1_201][..3], ["1201", "", "reader1200@example.com"]);

    // The default is failed and expired: none here.
    let (headers, rows) = export(&t, &format!("/v1/campaigns/{id}/export")).await;
    assert_eq!(headers["content-disposition"], format!("attachment; filename=\"campaign-{id}-failed-expired.csv\""));
    assert_eq!(rows.len(), 1, "the header only: {rows:?}");
}

#[tokio::test]
async fn export_lists_failed_recipients_with_their_reasons() {
    let (t, _workers) = delivering_app().await;
    t.sms.set_default(Some(Err(SendError::rejected("30007", "carrier filtering"))));
    let mut body = campaign(three());
    body["policy"] = json!({"steps": [{"channel": "sms"}]});
    let id = create(&t, SEND_KEY, &body).await;
    let view = wait_for(&t, &id, settled).await;
    assert_eq!((view["failed"].as_u64(), view["delivered"].as_u64()), (Some(3), Some(0)), "{view}");

    let (headers, rows) = export(&t, &format!("/v1/campaigns/{id}/export?status=failed")).await;
    assert_eq!(headers["content-disposition"], format!("attachment; filename=\"campaign-{id}-failed.csv\""));
    assert_eq!(rows.len(), 4, "{rows:?}");
    let phones: Vec<&str> = rows[1..].iter().map(|r| r[1].as_str()).collect();
    assert_eq!(phones, [ANN, BOB, CY]);
    for row in &rows[1..] {
        assert_eq!(row[4], "failed", "{row:?}");
        assert!(row[5].contains("carrier filtering"), "{row:?}");
        assert!(!row[8].is_empty(), "the cascade id: {row:?}");
    }

    let (status, _, p) = t.get(&format!("/v1/campaigns/{id}/export?status=failed,lost"), SEND_KEY).await;
    assert_problem(status, &p, 422, "invalid-request", Some("status"));
    let (status, _, p) = t.get(&format!("/v1/campaigns/{id}/export?state=failed"), SEND_KEY).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
}

/// The `data:` of each event of a Server-Sent Events stream, with its `event:` name, read to
/// its end (at most 20 s).
async fn progress_events(t: &TestApp, path: &str) -> Vec<(String, Value)> {
    let r = Request::get(path).header("authorization", format!("Bearer {SEND_KEY}")).body(Body::empty()).expect("req");
    let response = t.router.clone().oneshot(r).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = response.into_body().into_data_stream();
    let mut text = String::new();
    let read = async {
        while let Some(chunk) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read).await.expect("the stream ends");
    let mut events = Vec::new();
    for block in text.split("\n\n") {
        let line = |prefix: &str| block.lines().find_map(|l| l.strip_prefix(prefix)).map(str::trim);
        if let (Some(name), Some(data)) = (line("event:"), line("data:")) {
            events.push((name.to_owned(), serde_json::from_str(data).expect("JSON data")));
        }
    }
    events
}

#[tokio::test]
async fn the_progress_stream_ends_with_a_settled_progress() {
    let (t, _workers) = delivering_app().await;
    let mut body = campaign(three());
    body["rate"] = json!("2/s");
    let id = create(&t, SEND_KEY, &body).await;
    let events = progress_events(&t, &format!("/v1/campaigns/{id}/events")).await;
    assert!(!events.is_empty());
    assert!(events.iter().all(|(name, _)| name == "progress"), "{events:?}");
    let (_, last) = events.last().expect("one");
    assert_eq!((last["state"].as_str(), last["running"].as_u64()), (Some("finished"), Some(0)), "{last}");
    assert_eq!(last["delivered"], 3);
    // Each event differs from the one before it (but for `at`).
    for pair in events.windows(2) {
        let (mut a, mut b) = (pair[0].1.clone(), pair[1].1.clone());
        a["at"] = Value::Null;
        b["at"] = Value::Null;
        assert_ne!(a, b);
    }
    // A settled campaign: its progress at once, and the end.
    let again = progress_events(&t, &format!("/v1/campaigns/{id}/events")).await;
    assert_eq!(again.len(), 1);
}

#[tokio::test]
async fn keys_see_only_their_own_campaigns() {
    let (t, _workers) = delivering_app().await;
    let crm = create(&t, SEND_KEY, &later(three())).await;
    let partner = create(&t, PARTNER_KEY, &later(three())).await;

    for (method, path) in [
        (Method::GET, format!("/v1/campaigns/{crm}")),
        (Method::GET, format!("/v1/campaigns/{crm}/events")),
        (Method::GET, format!("/v1/campaigns/{crm}/export")),
        (Method::POST, format!("/v1/campaigns/{crm}/pause")),
        (Method::POST, format!("/v1/campaigns/{crm}/resume")),
        (Method::POST, format!("/v1/campaigns/{crm}/cancel")),
    ] {
        let (status, _, p) = t.request(method, &path, Some(PARTNER_KEY), None, None).await;
        assert_problem(status, &p, 404, "not-found", None);
        assert_eq!(p["detail"], format!("no campaign {crm}"), "{path}");
    }
    let (_, _, view) = t.get(&format!("/v1/campaigns/{crm}"), SEND_KEY).await;
    assert_eq!(view["state"], "running", "untouched by the other key");

    let ids = |list: &Value| -> Vec<String> {
        list["items"].as_array().expect("items").iter().filter_map(|i| i["id"].as_str().map(str::to_owned)).collect()
    };
    let (_, _, mine) = t.get("/v1/campaigns", SEND_KEY).await;
    assert_eq!(ids(&mine), [crm.as_str()]);
    let (_, _, theirs) = t.get("/v1/campaigns", PARTNER_KEY).await;
    assert_eq!(ids(&theirs), [partner.as_str()]);
    let (_, _, none) = t.get("/v1/campaigns", READ_KEY).await;
    assert_eq!(ids(&none), Vec::<String>::new());
    // `admin` sees and controls every campaign, newest first, a page at a time.
    let (_, _, all) = t.get("/v1/campaigns?limit=1", ADMIN_KEY).await;
    assert_eq!(ids(&all), [partner.as_str()]);
    let cursor = all["next_cursor"].as_str().expect("a full page");
    let (_, _, rest) = t.get(&format!("/v1/campaigns?limit=1&cursor={cursor}"), ADMIN_KEY).await;
    assert_eq!(ids(&rest), [crm.as_str()]);
    let (status, paused) = post(&t, &format!("/v1/campaigns/{partner}/pause"), ADMIN_KEY).await;
    assert_eq!((status, paused["state"].as_str()), (StatusCode::OK, Some("paused")));

    // Creating needs `send`; a bad cursor or limit is a 422.
    let (status, _, p) = t.post_json("/v1/campaigns", READ_KEY, &campaign(three()), None).await;
    assert_problem(status, &p, 403, "forbidden", None);
    let (status, _, p) = t.get("/v1/campaigns?limit=0&cursor=x", SEND_KEY).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&p), ["cursor", "limit"]);
}

#[tokio::test]
async fn the_campaign_endpoints_are_in_the_openapi_document() {
    let t = TestApp::new().await;
    let doc: Value = serde_json::from_str(&t.text("/v1/openapi.json").await).expect("JSON");
    for path in [
        "/v1/campaigns",
        "/v1/campaigns/{id}",
        "/v1/campaigns/{id}/events",
        "/v1/campaigns/{id}/pause",
        "/v1/campaigns/{id}/resume",
        "/v1/campaigns/{id}/cancel",
        "/v1/campaigns/{id}/export",
    ] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
    assert!(doc["components"]["schemas"]["CreateCampaign"]["properties"]["rate"].is_object());
}
