//! The continue call against a mock Kommo on 127.0.0.1: the body, the token, and what each
//! answer means.

mod common;

use std::time::Duration;

use cascade_engine::{Outcome, Status};
use cascade_kommo::{ContinueReport, ContinueResult, Kommo};
use common::*;
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CONTINUE: &str = "/api/v4/salesbot/4127/continue/88213";

async fn setup() -> (MockServer, Kommo, String) {
    let server = MockServer::start().await;
    let k = kommo(Some(&server.uri()));
    let url = format!("{}{CONTINUE}", server.uri());
    (server, k, url)
}

fn delivered() -> ContinueReport {
    let outcome = Outcome::Delivered {
        step: 1,
        attempt: 1,
        channel: "whatsapp".into(),
        connection: None,
        status: Status::Delivered,
    };
    ContinueReport::from_outcome("0193a0c4-7b1e-7c2a-9f00-5d1e2c3b4a59", &outcome)
}

#[tokio::test]
async fn continued_with_the_result_and_the_account_s_token() {
    let (server, k, url) = setup().await;
    Mock::given(method("POST"))
        .and(path(CONTINUE))
        .and(header("authorization", format!("Bearer {ACCESS_TOKEN}").as_str()))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({"data": {
            "status": "success", "channel": "whatsapp",
            "cascade_id": "0193a0c4-7b1e-7c2a-9f00-5d1e2c3b4a59", "outcome": "delivered"
        }})))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(k.continue_bot("acme", &url, &delivered()).await, ContinueResult::Continued);
}

#[tokio::test]
async fn handlers_travel_with_the_result() {
    let (server, k, url) = setup().await;
    let show = json!({"handler": "show", "params": {"type": "text", "value": "We could not reach you"}});
    Mock::given(method("POST"))
        .and(path(CONTINUE))
        .and(body_json(json!({
            "data": {"status": "fail", "channel": "", "cascade_id": "c-9", "outcome": "expired"},
            "execute_handlers": [show.clone()]
        })))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let report = ContinueReport::from_outcome("c-9", &Outcome::Expired).handler(show).expect("within limits");
    assert_eq!(k.continue_bot("acme", &url, &report).await, ContinueResult::Continued);
}

#[tokio::test]
async fn not_found_means_the_bot_stopped_waiting() {
    let (server, k, url) = setup().await;
    Mock::given(method("POST"))
        .and(path(CONTINUE))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"title": "Not Found", "status": 404})))
        .expect(1)
        .mount(&server)
        .await;
    let result = k.continue_bot("acme", &url, &delivered()).await;
    assert_eq!(result, ContinueResult::BotGone);
    assert!(!result.is_retryable());
}

#[tokio::test]
async fn server_errors_are_transient() {
    let (server, k, url) = setup().await;
    Mock::given(method("POST"))
        .and(path(CONTINUE))
        .respond_with(ResponseTemplate::new(500).set_body_string("Internal Server Error"))
        .mount(&server)
        .await;
    let result = k.continue_bot("acme", &url, &delivered()).await;
    assert!(
        matches!(&result, ContinueResult::Transient { retry_after: None, detail } if detail.contains("500")),
        "{result:?}"
    );
    assert!(result.is_retryable());
}

#[tokio::test]
async fn too_many_requests_is_transient_with_retry_after() {
    let (server, k, url) = setup().await;
    Mock::given(method("POST"))
        .and(path(CONTINUE))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "7"))
        .mount(&server)
        .await;
    let result = k.continue_bot("acme", &url, &delivered()).await;
    assert!(
        matches!(result, ContinueResult::Transient { retry_after: Some(d), .. } if d == Duration::from_secs(7)),
        "{result:?}"
    );
}

#[tokio::test]
async fn other_client_errors_are_permanent_and_keep_the_token_out() {
    let (server, k, url) = setup().await;
    Mock::given(method("POST"))
        .and(path(CONTINUE))
        .respond_with(
            ResponseTemplate::new(403).set_body_string(format!("{{\"detail\": \"{ACCESS_TOKEN} is not an admin\"}}")),
        )
        .mount(&server)
        .await;
    let result = k.continue_bot("acme", &url, &delivered()).await;
    let ContinueResult::Permanent { detail } = result else { panic!("{result:?}") };
    assert!(detail.contains("403") && !detail.contains(ACCESS_TOKEN), "{detail}");
}

#[tokio::test]
async fn no_call_to_a_foreign_url_or_for_an_unknown_account() {
    let (server, k, _) = setup().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).expect(0).mount(&server).await;
    let foreign = k.continue_bot("acme", "https://attacker.test/api/v4/salesbot/1/continue/2", &delivered()).await;
    assert!(matches!(foreign, ContinueResult::Permanent { .. }), "{foreign:?}");
    let other_port = format!("http://127.0.0.1:1{CONTINUE}");
    assert!(matches!(k.continue_bot("acme", &other_port, &delivered()).await, ContinueResult::Permanent { .. }));
    let unknown = k.continue_bot("globex", &format!("{}{CONTINUE}", server.uri()), &delivered()).await;
    assert!(matches!(unknown, ContinueResult::Permanent { .. }), "{unknown:?}");
}

#[tokio::test]
async fn no_answer_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let k = kommo(Some(&base));
    let result = k.continue_bot("acme", &format!("{base}{CONTINUE}"), &delivered()).await;
    assert!(matches!(result, ContinueResult::Transient { .. }), "{result:?}");
}
