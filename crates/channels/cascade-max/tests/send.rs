//! The adapter against a mock MAX bot API: the documented requests and answers.

use std::sync::Arc;
use std::time::Duration;

use cascade_engine::*;
use cascade_max::{Max, MaxConfig};
use serde_json::json;
use wiremock::matchers::{body_json, body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "f9LHodD0cOKmJcmsPZ6DSBrVNl3yA8bT";

async fn setup() -> (MockServer, Max) {
    let server = MockServer::start().await;
    let mut config = MaxConfig::new(TOKEN);
    config.base_url = server.uri();
    config.attachment_wait = Duration::from_millis(10);
    (server, Max::new(config).expect("config"))
}

fn request(to: &str, content: Content) -> SendRequest {
    SendRequest {
        cascade_id: CascadeId::new(),
        attempt: 1,
        connection: "max-1".into(),
        address: Address { kind: AddressKind::ChannelId, value: to.into() },
        content: Arc::new(content),
        conversation_open: false,
    }
}

fn text(t: &str) -> Content {
    Content { text: t.into(), ..Content::default() }
}

/// The documented answer: the message that was sent.
fn sent(mid: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"message": {
        "sender": {"user_id": 90001, "name": "Acme", "username": "acme_bot", "is_bot": true, "last_activity_time": 1735690000000u64},
        "recipient": {"chat_id": 88001, "chat_type": "dialog", "user_id": 5001234},
        "timestamp": 1735690000100u64,
        "body": {"mid": mid, "seq": 113508447234u64, "text": "x", "attachments": []}
    }}))
}

fn error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({"code": code, "message": message}))
}

#[tokio::test]
async fn a_text_to_a_user() {
    let (server, max) = setup().await;
    Mock::given(method("POST"))
        .and(path("/messages"))
        .and(query_param("user_id", "5001234"))
        .and(header("authorization", TOKEN))
        .and(body_json(json!({"text": "Ваш заказ №5521 отправлен.", "attachments": [], "notify": true})))
        .respond_with(sent("mid.0000000000015a71.abc"))
        .expect(1)
        .mount(&server)
        .await;
    let accepted = max.send(&request("5001234", text("Ваш заказ №5521 отправлен."))).await.expect("sent");
    assert_eq!(accepted.provider_message_id, "mid.0000000000015a71.abc");
    assert_eq!(accepted.status, Some(Status::Sent));
}

#[tokio::test]
async fn a_text_to_a_chat_with_markup() {
    let server = MockServer::start().await;
    let mut config = MaxConfig::new(TOKEN);
    config.base_url = server.uri();
    config.format = Some("markdown".into());
    config.notify = false;
    config.disable_link_preview = true;
    Mock::given(method("POST"))
        .and(path("/messages"))
        .and(query_param("chat_id", "-70123"))
        .and(body_json(json!({"text": "**Sale**", "attachments": [], "notify": false,
            "disable_link_preview": true, "format": "markdown"})))
        .respond_with(sent("mid.2"))
        .expect(1)
        .mount(&server)
        .await;
    let max = Max::new(config).expect("config");
    assert_eq!(max.send(&request("chat:-70123", text("**Sale**"))).await.expect("sent").provider_message_id, "mid.2");
}

#[tokio::test]
async fn a_picture_by_url_with_text_and_a_button() {
    let (server, max) = setup().await;
    Mock::given(method("POST"))
        .and(path("/messages"))
        .and(body_json(json!({"text": "Spring sale: -20%", "notify": true, "attachments": [
            {"type": "image", "payload": {"url": "https://cdn.test/img/spring.jpg"}},
            {"type": "inline_keyboard", "payload": {"buttons": [[{"type": "link", "text": "Shop now", "url": "https://acme.test/sale"}]]}}
        ]})))
        .respond_with(sent("mid.3"))
        .expect(1)
        .mount(&server)
        .await;
    let content = Content {
        attachment: Some(Attachment {
            url: "https://cdn.test/img/spring.jpg".into(),
            media_type: "image/jpeg".into(),
            size: 80_000,
            filename: None,
        }),
        buttons: vec![Button { caption: "Shop now".into(), url: "https://acme.test/sale".into() }],
        ..text("Spring sale: -20%")
    };
    max.send(&request("5001234", content)).await.expect("sent");
}

#[tokio::test]
async fn a_local_document_is_uploaded_then_sent_by_token() {
    let (server, max) = setup().await;
    let file = std::env::temp_dir().join(format!("cascade-max-invoice-{}.pdf", std::process::id()));
    std::fs::write(&file, b"%PDF-1.4 invoice 5521").expect("write");
    Mock::given(method("POST"))
        .and(path("/uploads"))
        .and(query_param("type", "file"))
        .and(header("authorization", TOKEN))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"url": format!("{}/upload/f-1?sig=abc", server.uri())})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/upload/f-1"))
        .and(query_param("sig", "abc"))
        .and(body_string_contains("name=\"data\"; filename=\"Invoice 5521.pdf\""))
        .and(body_string_contains("%PDF-1.4 invoice 5521"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"fileId": 77, "token": "tok-file-77"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/messages"))
        .and(body_json(json!({"text": "Your invoice", "notify": true,
            "attachments": [{"type": "file", "payload": {"token": "tok-file-77"}}]})))
        .respond_with(sent("mid.4"))
        .expect(1)
        .mount(&server)
        .await;
    let content = Content {
        attachment: Some(Attachment {
            url: format!("file://{}", file.display()),
            media_type: "application/pdf".into(),
            size: 21,
            filename: Some("Invoice 5521.pdf".into()),
        }),
        ..text("Your invoice")
    };
    let result = max.send(&request("5001234", content)).await;
    std::fs::remove_file(&file).ok();
    assert_eq!(result.expect("sent").provider_message_id, "mid.4");
}

#[tokio::test]
async fn a_video_by_url_is_fetched_uploaded_and_waited_for() {
    let (server, max) = setup().await;
    Mock::given(method("GET"))
        .and(path("/files/clip.mp4"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b"\x00\x00\x00\x18ftypmp42 clip".to_vec()))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/uploads"))
        .and(query_param("type", "video"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"url": format!("{}/upload/v-1", server.uri()), "token": "tok-video-9"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/upload/v-1"))
        .and(body_string_contains("ftypmp42 clip"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<retval>1</retval>"))
        .expect(1)
        .mount(&server)
        .await;
    // MAX processes the video after the upload: the first two sends are refused.
    Mock::given(method("POST"))
        .and(path("/messages"))
        .respond_with(error(400, "attachment.not.ready", "Key: errors.process.attachment.video.not.processed"))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/messages"))
        .and(body_json(json!({"text": "", "notify": true,
            "attachments": [{"type": "video", "payload": {"token": "tok-video-9"}}]})))
        .respond_with(sent("mid.5"))
        .expect(1)
        .mount(&server)
        .await;
    let content = Content {
        attachment: Some(Attachment {
            url: format!("{}/files/clip.mp4", server.uri()),
            media_type: "video/mp4".into(),
            size: 21,
            filename: None,
        }),
        ..text("")
    };
    assert_eq!(max.send(&request("5001234", content)).await.expect("sent").provider_message_id, "mid.5");
}

#[tokio::test]
async fn an_upload_never_ready_is_transient() {
    let (server, max) = setup().await;
    Mock::given(method("POST"))
        .and(path("/messages"))
        .respond_with(error(400, "attachment.not.ready", "Key: errors.process.attachment.file.not.processed"))
        .expect(4)
        .mount(&server)
        .await;
    let err = max.send(&request("5001234", text("x"))).await.expect_err("never ready");
    assert_eq!((err.class, err.code.as_str()), (ErrorClass::Transient, "attachment.not.ready"));
}

#[tokio::test]
async fn errors_are_classed_by_key_then_status() {
    let cases: Vec<(ResponseTemplate, ErrorClass, &str)> = vec![
        (error(403, "chat.denied", "chat.denied: dialogs.suspended"), ErrorClass::Unreachable, "chat.denied"),
        (error(404, "chat.not.found", "Chat 5001234 not found"), ErrorClass::Unreachable, "chat.not.found"),
        (error(401, "verify.token", "Invalid access_token"), ErrorClass::Connection, "verify.token"),
        (error(429, "too.many.requests", "Too many requests"), ErrorClass::Transient, "too.many.requests"),
        (error(400, "proto.payload", "text: size must be between 0 and 4000"), ErrorClass::Rejected, "proto.payload"),
        (ResponseTemplate::new(404).set_body_string("<html>Not Found</html>"), ErrorClass::Connection, "http_404"),
        (ResponseTemplate::new(503), ErrorClass::Transient, "http_503"),
    ];
    for (answer, class, code) in cases {
        let (server, max) = setup().await;
        Mock::given(method("POST")).and(path("/messages")).respond_with(answer).mount(&server).await;
        let err = max.send(&request("5001234", text("x"))).await.expect_err(code);
        assert_eq!((err.class, err.code.as_str()), (class, code), "{err}");
    }
}

#[tokio::test]
async fn the_token_is_never_echoed() {
    let (server, max) = setup().await;
    Mock::given(method("POST"))
        .and(path("/messages"))
        .respond_with(error(401, "verify.token", &format!("Invalid access_token: {TOKEN}")))
        .mount(&server)
        .await;
    let err = max.send(&request("5001234", text("x"))).await.expect_err("401");
    assert!(!err.detail.contains(TOKEN) && err.detail.contains("***"), "{err}");
}

#[tokio::test]
async fn content_and_addresses_that_cannot_go_send_nothing() {
    let (server, max) = setup().await;
    let err = max.send(&request("5001234", text(&"x".repeat(4001)))).await.expect_err("too long");
    assert_eq!((err.class, err.code.as_str()), (ErrorClass::Rejected, "message_too_long"));
    let err = max.send(&request("@dana", text("x"))).await.expect_err("not an id");
    assert_eq!(err.class, ErrorClass::Unreachable);
    assert!(server.received_requests().await.expect("recorded").is_empty());
}

#[tokio::test]
async fn subscribing_the_webhook() {
    let server = MockServer::start().await;
    let mut config = MaxConfig::new(TOKEN);
    config.base_url = server.uri();
    config.webhook_secret = Some("hook-Secret_42".into());
    Mock::given(method("POST"))
        .and(path("/subscriptions"))
        .and(header("authorization", TOKEN))
        .and(body_json(json!({"url": "https://hooks.acme.test/webhooks/max-1",
            "update_types": ["message_created", "message_callback", "bot_started"], "secret": "hook-Secret_42"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .expect(1)
        .mount(&server)
        .await;
    Max::new(config).expect("config").subscribe("https://hooks.acme.test/webhooks/max-1").await.expect("subscribed");
}
