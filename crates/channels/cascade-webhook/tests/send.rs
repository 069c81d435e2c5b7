//! The webhook channel against a mock service: the documented request and answers.

use std::sync::Arc;
use std::time::Duration;

use cascade_channel_kit::webhook::verify_cascade_signature;
use cascade_engine::*;
use cascade_webhook::{Webhook, WebhookConfig};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "whsec_test_secret";

async fn setup() -> (MockServer, Webhook) {
    let server = MockServer::start().await;
    let mut config = WebhookConfig::new("line", format!("{}/send", server.uri()), SECRET);
    config.headers.insert("Authorization".into(), "Bearer service-key".into());
    config.buttons = true;
    config.max_file_size = Some(10_000_000);
    (server, Webhook::new(config).expect("config"))
}

fn request() -> SendRequest {
    SendRequest {
        cascade_id: CascadeId::new(),
        attempt: 2,
        connection: "line-1".into(),
        address: Address { kind: AddressKind::ChannelId, value: "U4af4980629".into() },
        content: Arc::new(Content {
            text: "Your order has shipped".into(),
            attachment: Some(Attachment {
                url: "https://files.test/a.jpg".into(),
                media_type: "image/jpeg".into(),
                size: 48213,
                filename: None,
            }),
            buttons: vec![Button { caption: "Track".into(), url: "https://shop.test/t".into() }],
            ..Content::default()
        }),
        conversation_open: false,
    }
}

#[tokio::test]
async fn a_send_is_one_signed_json_post() {
    let (server, line) = setup().await;
    let req = request();
    Mock::given(method("POST"))
        .and(path("/send"))
        .and(header("content-type", "application/json"))
        .and(header("authorization", "Bearer service-key"))
        .and(header("idempotency-key", format!("{}:2", req.cascade_id).as_str()))
        .and(body_json(json!({
            "cascade_id": req.cascade_id.to_string(), "attempt": 2, "connection": "line-1",
            "address": {"kind": "channel_id", "value": "U4af4980629"},
            "message": {"text": "Your order has shipped",
                "attachment": {"url": "https://files.test/a.jpg", "media_type": "image/jpeg", "size": 48213},
                "buttons": [{"caption": "Track", "url": "https://shop.test/t"}]}
        })))
        .respond_with(
            ResponseTemplate::new(202)
                .set_body_json(json!({"provider_message_id": "msg-829", "status": "sent", "cost": "0.004"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let a = line.send(&req).await.expect("accepted");
    assert_eq!(
        (a.provider_message_id.as_str(), a.status, a.cost),
        ("msg-829", Some(Status::Sent), Some("0.004".parse().expect("cost")))
    );
    let received = server.received_requests().await.expect("recorded");
    let sig = received[0].headers.get("x-cascade-signature").and_then(|v| v.to_str().ok()).expect("signed");
    let now = chrono::Utc::now().timestamp();
    assert_eq!(verify_cascade_signature(SECRET.as_bytes(), sig, &received[0].body, now), Ok(()));
    assert!(verify_cascade_signature(b"another", sig, &received[0].body, now).is_err());
}

#[tokio::test]
async fn an_empty_2xx_is_accepted_under_the_default_id() {
    let (server, line) = setup().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(204)).mount(&server).await;
    let req = request();
    let a = line.send(&req).await.expect("accepted");
    assert_eq!(a.provider_message_id, format!("{}:2", req.cascade_id));
}

async fn error_for(template: ResponseTemplate) -> SendError {
    let (server, line) = setup().await;
    Mock::given(method("POST")).respond_with(template).mount(&server).await;
    line.send(&request()).await.expect_err("error")
}

#[tokio::test]
async fn the_status_code_decides_the_class() {
    let e =
        error_for(ResponseTemplate::new(404).set_body_json(json!({"code": "no_user", "detail": "unknown LINE user"})))
            .await;
    assert_eq!(
        (e.class, e.code.as_str(), e.detail.as_str()),
        (ErrorClass::Unreachable, "no_user", "unknown LINE user")
    );
    let e = error_for(ResponseTemplate::new(429).insert_header("retry-after", "30")).await;
    assert_eq!((e.class, e.retry_after), (ErrorClass::Transient, Some(Duration::from_secs(30))));
    let e = error_for(ResponseTemplate::new(401)).await;
    assert_eq!((e.class, e.code.as_str()), (ErrorClass::Connection, "401"));
    let e = error_for(ResponseTemplate::new(422).set_body_string("bad template")).await;
    assert_eq!((e.class, e.detail.as_str()), (ErrorClass::Rejected, "bad template"));
    let e = error_for(ResponseTemplate::new(503)).await;
    assert_eq!(e.class, ErrorClass::Transient);
    let e = error_for(ResponseTemplate::new(200).set_body_string("<html>ok</html>")).await;
    assert_eq!((e.class, e.code.as_str()), (ErrorClass::Transient, "bad_reply"));
}

/// A redirect is not followed (the signed message must not go elsewhere) and is not the
/// message's fault: the configured `url` is out of date, a `connection` problem.
#[tokio::test]
async fn a_redirect_is_our_url_not_the_message() {
    let e = error_for(ResponseTemplate::new(301).insert_header("location", "https://elsewhere.test/send")).await;
    assert_eq!((e.class, e.code.as_str()), (ErrorClass::Connection, "301"));
    let e = error_for(ResponseTemplate::new(307).insert_header("location", "/v2/send")).await;
    assert_eq!(e.class, ErrorClass::Connection);
}

#[tokio::test]
async fn the_url_is_used_without_the_spaces_around_it() {
    let server = MockServer::start().await;
    let line =
        Webhook::new(WebhookConfig::new("line", format!(" {}/send?v=2\n", server.uri()), SECRET)).expect("config");
    Mock::given(path("/send"))
        .and(wiremock::matchers::query_param("v", "2"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    line.send(&request()).await.expect("accepted");
}

#[test]
fn config() {
    let line = Webhook::new(WebhookConfig::new("line", "https://bridge.test/send", SECRET)).expect("config");
    assert_eq!(line.info().adapter.as_str(), "webhook-line");
    assert!(!format!("{line:?}").contains(SECRET));
    assert_eq!(Webhook::new(WebhookConfig::new("line", "bridge.test/send", SECRET)).expect_err("url").key, "url");
    let mut c = WebhookConfig::new("line", "https://bridge.test/send", SECRET);
    c.highest_status = Status::Failed;
    assert_eq!(Webhook::new(c).expect_err("status").key, "highest_status");
    assert_eq!(
        Webhook::new(WebhookConfig::new("line", "https://bridge.test/send", "")).expect_err("secret").key,
        "secret"
    );
}
