//! Named policies through `/v1/policies` and [`PolicyCatalog`](cascade_http::policies::PolicyCatalog):
//! a stored policy is in force for the next cascade, overrides the configuration's of the same
//! name until it is deleted, is checked whole with each error naming its field, is written
//! only with `admin` and only at the version named by `If-Match`; instances on one store
//! converge on refresh; and a store that keeps no policies leaves the configuration's in force.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use cascade_engine::{Connection, Engine, MemoryStore, Policy, Status, Step, Store, StoreError};
use cascade_http::App;
use cascade_http::auth::{ApiKey, Scope};
use cascade_http::policies::PolicySource;
use cascade_testkit::{CoreOnlyStore, StubChannel, caps};
use common::*;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Calls the router with an optional JSON body and `If-Match`.
async fn call(
    t: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
    if_match: Option<&str>,
) -> (StatusCode, HeaderMap, Value) {
    let mut r = Request::builder().method(method).uri(path).header("authorization", format!("Bearer {key}"));
    if let Some(v) = if_match {
        r = r.header("if-match", v);
    }
    let body = match body {
        Some(b) => {
            r = r.header("content-type", "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let response = t.router.clone().oneshot(r.body(body).expect("request")).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn put(t: &TestApp, name: &str, policy: Value, if_match: Option<&str>) -> (StatusCode, HeaderMap, Value) {
    call(t, Method::PUT, &format!("/v1/policies/{name}"), ADMIN_KEY, Some(policy), if_match).await
}

async fn delete(t: &TestApp, name: &str, if_match: Option<&str>) -> (StatusCode, HeaderMap, Value) {
    call(t, Method::DELETE, &format!("/v1/policies/{name}"), ADMIN_KEY, None, if_match).await
}

/// Starts a cascade to a contact reachable on both stubs; returns its id.
async fn start(t: &TestApp, policy: &str) -> String {
    let body = json!({"contact": {"phone": "+15551234567"}, "message": {"text": "Hi"}, "policy": policy});
    let (status, _, started) = t.post_json("/v1/cascades", SEND_KEY, &body, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    started["id"].as_str().expect("id").to_owned()
}

/// The channels of a cascade's plan, in step order.
async fn plan_channels(t: &TestApp, id: &str) -> Vec<String> {
    let (status, _, view) = t.get(&format!("/v1/cascades/{id}"), SEND_KEY).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    view["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["channel"].as_str().expect("channel").to_owned())
        .collect()
}

#[tokio::test]
async fn a_saved_policy_is_in_force_for_the_next_cascade() {
    let t = TestApp::new().await;
    let policy = json!({"steps": [
        {"channel": "sms", "until": "delivered", "timeout": "30s"},
        {"channel": "whatsapp", "until": "read", "timeout": "2m"}
    ], "existing_chat_first": false});
    let (status, headers, entry) = put(&t, "sms-first", policy, None).await;
    assert_eq!(status, StatusCode::CREATED, "{entry}");
    assert_eq!(headers["etag"], "\"1\"");
    assert_eq!(headers["location"], "/v1/policies/sms-first");
    assert_eq!(entry["name"], "sms-first");
    assert_eq!(entry["source"], "store");
    assert_eq!(entry["version"], 1);
    assert_eq!(entry["policy"]["steps"][1]["until"], "read");
    assert!(entry["updated_at"].is_string(), "{entry}");

    let id = start(&t, "sms-first").await;
    assert_eq!(plan_channels(&t, &id).await, ["sms", "whatsapp"]);
    t.wait_sends(1).await;
    assert_eq!(t.sms.sends().len(), 1, "the first step of the stored policy is SMS");
    assert!(t.whatsapp.sends().is_empty());
    let (_, _, view) = t.get(&format!("/v1/cascades/{id}"), SEND_KEY).await;
    assert_eq!(view["attempts"][0]["channel"], "sms", "{view}");
    assert_eq!(view["steps"][1]["until"], "read", "{view}");

    // Reordered and saved again: the next cascade follows the new order.
    let reordered = json!({"steps": [{"channel": "whatsapp"}, {"channel": "sms", "timeout": "45s"}]});
    let (status, headers, entry) = put(&t, "sms-first", reordered, None).await;
    assert_eq!(status, StatusCode::OK, "{entry}");
    assert_eq!(headers["etag"], "\"2\"");
    assert_eq!(entry["version"], 2);
    let id = start(&t, "sms-first").await;
    assert_eq!(plan_channels(&t, &id).await, ["whatsapp", "sms"]);

    let (status, headers, one) = t.get("/v1/policies/sms-first", READ_KEY).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(headers["etag"], "\"2\"");
    assert_eq!(one["policy"]["steps"][1]["timeout"], "45s", "{one}");
    let (status, _, list) = t.get("/v1/policies", READ_KEY).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<(&str, &str)> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| (e["name"].as_str().expect("name"), e["source"].as_str().expect("source")))
        .collect();
    assert_eq!(names, [("default", "config"), ("sms-first", "store")]);
}

#[tokio::test]
async fn a_stored_policy_overrides_the_configuration_until_deleted() {
    let t = TestApp::new().await;
    let (status, headers, config) = t.get("/v1/policies/default", READ_KEY).await;
    assert_eq!(status, StatusCode::OK, "{config}");
    assert_eq!(headers["etag"], "\"0\"");
    assert_eq!(config["source"], "config");
    assert_eq!(config["version"], 0);
    assert!(config.get("updated_at").is_none(), "{config}");

    let (status, headers, edited) = put(&t, "default", json!({"steps": [{"channel": "sms"}]}), Some("\"0\"")).await;
    assert_eq!(status, StatusCode::CREATED, "{edited}");
    assert_eq!(headers["etag"], "\"1\"");
    assert_eq!(edited["source"], "edited");
    assert_eq!(edited["policy"]["name"], "default");
    let id = start(&t, "default").await;
    assert_eq!(plan_channels(&t, &id).await, ["sms"], "the stored policy wins over the configuration's");
    let entry = t.app.policies().get("default").expect("known");
    assert_eq!((entry.source, entry.version), (PolicySource::Edited, 1));

    let (status, _, body) = delete(&t, "default", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (_, headers, reverted) = t.get("/v1/policies/default", READ_KEY).await;
    assert_eq!(reverted["source"], "config");
    assert_eq!(headers["etag"], "\"0\"");
    let id = start(&t, "default").await;
    assert_eq!(plan_channels(&t, &id).await, ["whatsapp", "sms"], "deleting brings the configuration's back");

    // The configuration's own cannot be deleted.
    let (status, _, p) = delete(&t, "default", None).await;
    assert_problem(status, &p, 409, "conflict", None);
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("configuration")), "{p}");
    assert!(t.app.policies().resolve("default").is_some());
}

#[tokio::test]
async fn validation_errors_name_the_field_and_store_nothing() {
    let t = TestApp::new().await;
    let long = "x".repeat(65);
    let cases = [
        (
            "sms-first",
            json!({"steps": [{"channel": "sms"}, {"channel": "fax"}]}),
            "steps[1].channel",
            "no connection serves channel `fax`; channels with connections: sms, whatsapp",
        ),
        ("sms-first", json!({"steps": []}), "steps", "at least one step"),
        ("sms-first", json!({"steps": [{"channel": "sms", "until": "soon"}]}), "steps[0].until", "unknown variant"),
        (
            "sms-first",
            json!({"steps": [{"channel": "sms", "until": "read"}]}),
            "steps[0].until",
            "never reports `read`",
        ),
        (
            "sms-first",
            json!({"steps": [{"channel": "sms", "connections": ["wa-main"]}]}),
            "steps[0].connections[0]",
            "`wa-main` is not a connection of channel `sms`",
        ),
        ("sms-first", json!({"steps": [{"channel": "sms", "timeout": "0s"}]}), "steps[0].timeout", "longer than zero"),
        ("sms-first", json!({"steps": [{"channel": "sms"}], "colour": "red"}), "colour", "unknown field"),
        ("sms-first", json!({"name": "other", "steps": [{"channel": "sms"}]}), "name", "saved as \"sms-first\""),
        ("bad%20name", json!({"steps": [{"channel": "sms"}]}), "name", "not a policy name"),
        (long.as_str(), json!({"steps": [{"channel": "sms"}]}), "name", "1 to 64"),
    ];
    for (name, body, field, message) in cases {
        let (status, _, p) = put(&t, name, body.clone(), None).await;
        assert_problem(status, &p, 422, "invalid-request", Some(field));
        let first = &p["errors"][0];
        assert_eq!(first["field"], field, "{p}");
        assert!(first["message"].as_str().is_some_and(|m| m.contains(message)), "{body}: {p}");
    }
    // Every problem is listed, not only the first.
    let (_, _, p) =
        put(&t, "sms-first", json!({"steps": [{"channel": "fax"}, {"channel": "sms", "until": "read"}]}), None).await;
    let fields: Vec<&str> =
        p["errors"].as_array().expect("errors").iter().filter_map(|e| e["field"].as_str()).collect();
    assert_eq!(fields, ["steps[0].channel", "steps[1].until"]);

    let (status, _, p) = call(&t, Method::PUT, "/v1/policies/x", ADMIN_KEY, None, None).await;
    assert_problem(status, &p, 415, "unsupported-media-type", Some("Content-Type"));
    assert_eq!(t.app.policies().names(), ["default"], "nothing was stored");
    assert!(t.app.engine().store().list_policies().await.expect("list").is_empty());
}

#[tokio::test]
async fn only_admin_keys_write_policies() {
    let t = TestApp::new().await;
    let body = json!({"steps": [{"channel": "sms"}]});
    for key in [READ_KEY, SEND_KEY] {
        let (status, _, p) = call(&t, Method::PUT, "/v1/policies/sms-only", key, Some(body.clone()), None).await;
        assert_problem(status, &p, 403, "forbidden", None);
        let (status, _, p) = call(&t, Method::DELETE, "/v1/policies/default", key, None, None).await;
        assert_problem(status, &p, 403, "forbidden", None);
    }
    let (status, _, p) = t.request(Method::GET, "/v1/policies", None, None, None).await;
    assert_problem(status, &p, 401, "unauthorized", Some("Authorization"));
    assert!(t.app.policies().get("sms-only").is_none());
    let (status, _, _) = put(&t, "sms-only", body, None).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, one) = t.get("/v1/policies/sms-only", READ_KEY).await;
    assert_eq!(status, StatusCode::OK, "a read key reads: {one}");
}

#[tokio::test]
async fn if_match_guards_saves_and_deletes() {
    let t = TestApp::new().await;
    let one = json!({"steps": [{"channel": "sms"}]});
    let two = json!({"steps": [{"channel": "whatsapp"}, {"channel": "sms"}]});
    let (status, _, _) = put(&t, "guarded", one.clone(), Some("\"0\"")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, p) = put(&t, "guarded", two.clone(), Some("\"0\"")).await;
    assert_problem(status, &p, 412, "precondition-failed", Some("If-Match"));
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("version 1")), "{p}");
    let (status, headers, saved) = put(&t, "guarded", two.clone(), Some("\"1\"")).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(headers["etag"], "\"2\"");
    // A second editor who read version 1 cannot undo the change.
    let (status, _, p) = put(&t, "guarded", one.clone(), Some("\"1\"")).await;
    assert_problem(status, &p, 412, "precondition-failed", Some("If-Match"));
    let policy = t.app.policies().resolve("guarded").expect("stored");
    assert_eq!(policy.steps.len(), 2, "the refused save changed nothing");

    let (status, _, p) = delete(&t, "guarded", Some("\"1\"")).await;
    assert_problem(status, &p, 412, "precondition-failed", Some("If-Match"));
    assert!(t.app.policies().get("guarded").is_some());
    let (status, _, p) = put(&t, "guarded", one.clone(), Some("3")).await;
    assert_problem(status, &p, 422, "invalid-request", Some("If-Match"));
    let (status, _, _) = delete(&t, "guarded", Some("\"2\"")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(t.app.policies().get("guarded").is_none());
    let (status, _, p) = put(&t, "guarded", one, Some("\"2\"")).await;
    assert_problem(status, &p, 412, "precondition-failed", Some("If-Match"));
}

#[tokio::test]
async fn unknown_names_are_not_found() {
    let t = TestApp::new().await;
    put(&t, "sms-only", json!({"steps": [{"channel": "sms"}]}), None).await;
    let (status, _, p) = t.get("/v1/policies/nope", READ_KEY).await;
    assert_problem(status, &p, 404, "not-found", None);
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("default, sms-only")), "{p}");
    let (status, _, p) = delete(&t, "nope", None).await;
    assert_problem(status, &p, 404, "not-found", None);
    let body = json!({"contact": {"phone": "+15551234567"}, "message": {"text": "Hi"}, "policy": "nope"});
    let (status, _, p) = t.post_json("/v1/cascades", SEND_KEY, &body, None).await;
    assert_problem(status, &p, 422, "invalid-request", Some("policy"));
    assert!(
        p["detail"].as_str().is_some_and(|d| d.contains("no policy named \"nope\"; configured: default, sms-only")),
        "stored names are listed too: {p}"
    );
}

#[tokio::test]
async fn policies_are_in_the_openapi_document() {
    let t = TestApp::new().await;
    let (status, _, doc) = t.get("/v1/openapi.json", READ_KEY).await;
    assert_eq!(status, StatusCode::OK);
    let one = &doc["paths"]["/v1/policies/{name}"];
    for method in ["get", "put", "delete"] {
        assert!(one[method].is_object(), "{method} /v1/policies/{{name}} is documented");
    }
    assert!(doc["paths"]["/v1/policies"]["get"].is_object());
    assert!(doc["components"]["schemas"]["PolicyEntry"].is_object());
}

/// An engine on `store` with the test's two stub channels, and an app with the `default`
/// policy from its configuration.
fn app_on(store: Arc<dyn Store>) -> App {
    let engine = Engine::builder()
        .store(store)
        .connection(Connection::new("wa-main", StubChannel::new("whatsapp", caps::whatsapp())))
        .connection(Connection::new("sms-main", StubChannel::new("sms", caps::sms())))
        .build()
        .expect("engine");
    let default = Policy::new([Step::new("whatsapp").until(Status::Delivered), Step::new("sms")]);
    App::builder(engine)
        .policy("default", default)
        .api_key(ApiKey::from_plain("ops", ADMIN_KEY, [Scope::Admin]))
        .build()
}

#[tokio::test]
async fn instances_on_one_store_converge_on_refresh() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (a, b) = (app_on(store.clone()), app_on(store));
    a.policies().save("default", Policy::chain(["sms"]), None).await.expect("save on a");
    a.policies().save("fresh", Policy::chain(["whatsapp"]), None).await.expect("save on a");
    assert_eq!(a.policies().resolve("default").map(|p| p.steps.len()), Some(1), "in force at once where saved");
    assert_eq!(b.policies().resolve("default").map(|p| p.steps.len()), Some(2), "not yet read on b");
    assert!(b.policies().resolve("fresh").is_none());

    b.policies().refresh().await.expect("refresh");
    assert_eq!(b.policies().resolve("default").map(|p| p.steps.len()), Some(1));
    assert_eq!(b.policies().names(), ["default", "fresh"]);
    assert_eq!(b.policies().get("fresh").map(|e| (e.source, e.version)), Some((PolicySource::Store, 1)));

    b.policies().delete("fresh", Some(1)).await.expect("delete on b");
    a.policies().refresh().await.expect("refresh");
    assert!(a.policies().resolve("fresh").is_none(), "a delete on one instance reaches the other");

    // The workers read the store when they start.
    let c = app_on(a.engine().store().clone());
    assert!(c.policies().get("default").is_some_and(|e| e.source == PolicySource::Config));
    let workers = c.spawn_workers();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while c.policies().get("default").is_none_or(|e| e.source != PolicySource::Edited) {
        assert!(tokio::time::Instant::now() < deadline, "the workers read the stored policies");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    workers.stop().await;
}

#[tokio::test]
async fn a_store_that_keeps_no_policies_leaves_the_configuration_in_force() {
    let app = app_on(Arc::new(CoreOnlyStore::new()));
    let refreshed = app.policies().refresh().await;
    assert!(matches!(refreshed, Err(StoreError::Unavailable(_))), "{refreshed:?}");
    assert_eq!(app.policies().names(), ["default"]);
    assert_eq!(app.policies().get("default").map(|e| e.source), Some(PolicySource::Config));

    let t = TestApp { router: app.router(), app, ..TestApp::new().await };
    let (status, headers, p) = put(&t, "default", json!({"steps": [{"channel": "sms"}]}), None).await;
    assert_problem(status, &p, 503, "unavailable", None);
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("keeps no policies")), "{p}");
    assert!(headers.contains_key("retry-after"));
    let (status, _, p) = delete(&t, "default", None).await;
    assert_problem(status, &p, 409, "conflict", None);
    let (status, _, p) = delete(&t, "nope", None).await;
    assert_problem(status, &p, 404, "not-found", None);
    assert_eq!(t.app.policies().resolve("default").map(|p| p.steps.len()), Some(2));
}
