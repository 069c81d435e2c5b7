//! The adapter against a mock Graph API: the exact requests the documentation prescribes, and
//! the documented answers.

use std::sync::Arc;
use std::time::Duration;

use cascade_engine::*;
use cascade_whatsapp::{WhatsApp, WhatsAppConfig};
use serde_json::json;
use wiremock::matchers::{body_json, body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "EAAGm0PX4ZCpsBA-test-token";
const PHONE_ID: &str = "106540352242922";

async fn setup(edit: impl FnOnce(&mut WhatsAppConfig)) -> (MockServer, WhatsApp) {
    let server = MockServer::start().await;
    let mut config = WhatsAppConfig::new(TOKEN, PHONE_ID);
    config.base_url = server.uri();
    edit(&mut config);
    (server, WhatsApp::new(config).expect("config"))
}

fn request(content: Content, conversation_open: bool) -> SendRequest {
    SendRequest {
        cascade_id: CascadeId::new(),
        attempt: 1,
        connection: "wa-1".into(),
        address: Address { kind: AddressKind::Phone, value: "+447700900123".into() },
        content: Arc::new(content),
        conversation_open,
    }
}

fn accepted(wamid: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": "+447700900123", "wa_id": "447700900123"}],
        "messages": [{"id": wamid}]
    }))
}

fn messages_path() -> String {
    format!("/v24.0/{PHONE_ID}/messages")
}

fn text(t: &str) -> Content {
    Content { text: t.into(), ..Content::default() }
}

fn template() -> ProviderTemplate {
    ProviderTemplate {
        name: "order_shipped".into(),
        language: "en_US".into(),
        params: vec!["Dana".into(), "A-991".into()],
    }
}

#[tokio::test]
async fn a_text_message_is_the_documented_request() {
    let (server, wa) = setup(|_| {}).await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "messaging_product": "whatsapp", "recipient_type": "individual", "to": "+447700900123",
            "type": "text", "text": {"preview_url": false, "body": "Your order #A-991 has shipped."}
        })))
        .respond_with(accepted("wamid.HBgMNDQ3NzAwOTAwMTIzFQIAERgSQUJD"))
        .expect(1)
        .mount(&server)
        .await;
    let a = wa.send(&request(text("Your order #A-991 has shipped."), false)).await.expect("accepted");
    assert_eq!(a.provider_message_id, "wamid.HBgMNDQ3NzAwOTAwMTIzFQIAERgSQUJD");
    assert_eq!(a.status, None, "statuses come by webhook");
}

#[tokio::test]
async fn outside_the_window_the_template_goes_inside_it_the_text() {
    let (server, wa) = setup(|_| {}).await;
    Mock::given(path(messages_path()))
        .and(body_json(json!({
            "messaging_product": "whatsapp", "recipient_type": "individual", "to": "+447700900123",
            "type": "template",
            "template": {"name": "order_shipped", "language": {"code": "en_US"},
                "components": [{"type": "body", "parameters": [{"type": "text", "text": "Dana"}, {"type": "text", "text": "A-991"}]}]}
        })))
        .respond_with(accepted("wamid.TEMPLATE"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path(messages_path()))
        .and(body_json(json!({
            "messaging_product": "whatsapp", "recipient_type": "individual", "to": "+447700900123",
            "type": "text", "text": {"preview_url": false, "body": "Dana, A-991 is on its way"}
        })))
        .respond_with(accepted("wamid.TEXT"))
        .expect(1)
        .mount(&server)
        .await;
    let content = Content { template: Some(template()), ..text("Dana, A-991 is on its way") };
    let closed = wa.send(&request(content.clone(), false)).await.expect("template");
    assert_eq!(closed.provider_message_id, "wamid.TEMPLATE");
    let open = wa.send(&request(content, true)).await.expect("text");
    assert_eq!(open.provider_message_id, "wamid.TEXT");
}

fn attachment(url: &str, media_type: &str) -> Attachment {
    Attachment { url: url.into(), media_type: media_type.into(), size: 1000, filename: None }
}

#[tokio::test]
async fn files_by_link_take_their_whatsapp_type() {
    let (server, wa) = setup(|_| {}).await;
    Mock::given(path(messages_path()))
        .and(body_json(json!({
            "messaging_product": "whatsapp", "recipient_type": "individual", "to": "+447700900123",
            "type": "image", "image": {"link": "https://cdn.test/p/42.jpg", "caption": "Front view"}
        })))
        .respond_with(accepted("wamid.IMG"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path(messages_path()))
        .and(body_json(json!({
            "messaging_product": "whatsapp", "recipient_type": "individual", "to": "+447700900123",
            "type": "video", "video": {"link": "https://cdn.test/v.mp4"}
        })))
        .respond_with(accepted("wamid.VID"))
        .expect(1)
        .mount(&server)
        .await;
    // A GIF is not a WhatsApp image: it goes as a document, with its name.
    Mock::given(path(messages_path()))
        .and(body_json(json!({
            "messaging_product": "whatsapp", "recipient_type": "individual", "to": "+447700900123",
            "type": "document",
            "document": {"link": "https://cdn.test/a.gif?sig=1", "caption": "Invoice", "filename": "a.gif"}
        })))
        .respond_with(accepted("wamid.DOC"))
        .expect(1)
        .mount(&server)
        .await;
    let img = Content { attachment: Some(attachment("https://cdn.test/p/42.jpg", "image/jpeg")), ..text("Front view") };
    assert_eq!(wa.send(&request(img, true)).await.expect("image").provider_message_id, "wamid.IMG");
    let vid = Content { attachment: Some(attachment("https://cdn.test/v.mp4", "video/mp4")), ..text("") };
    assert_eq!(wa.send(&request(vid, true)).await.expect("video").provider_message_id, "wamid.VID");
    let doc = Content { attachment: Some(attachment("https://cdn.test/a.gif?sig=1", "image/gif")), ..text("Invoice") };
    assert_eq!(wa.send(&request(doc, true)).await.expect("document").provider_message_id, "wamid.DOC");
}

#[tokio::test]
async fn a_local_file_is_uploaded_once_and_sent_by_id() {
    let (server, wa) = setup(|_| {}).await;
    Mock::given(method("POST"))
        .and(path(format!("/v24.0/{PHONE_ID}/media")))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "1037543291543636"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path(messages_path()))
        .and(body_json(json!({
            "messaging_product": "whatsapp", "recipient_type": "individual", "to": "+447700900123",
            "type": "document",
            "document": {"id": "1037543291543636", "caption": "Your contract", "filename": "contract.pdf"}
        })))
        .respond_with(accepted("wamid.DOC"))
        .expect(2)
        .mount(&server)
        .await;
    let dir = std::env::temp_dir().join(format!("cascade-wa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("contract.pdf");
    std::fs::write(&file, b"%PDF-1.4 contract").expect("write");
    let att = Attachment {
        url: format!("file://{}", file.display()),
        media_type: "application/pdf".into(),
        size: 17,
        filename: None,
    };
    let content = Content { attachment: Some(att), ..text("Your contract") };
    wa.send(&request(content.clone(), true)).await.expect("first");
    wa.send(&request(content, true)).await.expect("second, reusing the media id");

    let received = server.received_requests().await.expect("recorded");
    let upload = received.iter().find(|r| r.url.path().ends_with("/media")).expect("upload");
    let body = String::from_utf8_lossy(&upload.body);
    assert!(body.contains("name=\"messaging_product\"\r\n\r\nwhatsapp\r\n"), "{body}");
    assert!(body.contains("name=\"type\"\r\n\r\napplication/pdf\r\n"), "{body}");
    assert!(body.contains("name=\"file\"; filename=\"contract.pdf\"\r\nContent-Type: application/pdf"), "{body}");
    assert!(body.contains("%PDF-1.4 contract"), "{body}");
    std::fs::remove_dir_all(dir).ok();
}

async fn error_for(status: u16, code: i64, details: &str) -> SendError {
    let (server, wa) = setup(|_| {}).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(status).set_body_json(json!({"error": {
            "message": format!("(#{code}) Some title"), "type": "OAuthException", "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details},
            "error_subcode": 2494055, "fbtrace_id": "AbCdEfGh123_xyz"
        }})))
        .mount(&server)
        .await;
    wa.send(&request(text("hi"), true)).await.expect_err("error")
}

#[tokio::test]
async fn documented_errors_map_to_classes_by_code_not_http_status() {
    let e = error_for(400, 131026, "Message Undeliverable.").await;
    assert_eq!((e.class, e.code.as_str()), (ErrorClass::Unreachable, "131026"));
    assert!(e.detail.contains("Message Undeliverable."), "{e}");
    // Throttling arrives as HTTP 400: the code decides.
    let e = error_for(400, 130429, "Rate limit hit").await;
    assert_eq!(e.class, ErrorClass::Transient);
    let e = error_for(401, 190, "Error validating access token: Session has expired").await;
    assert_eq!(e.class, ErrorClass::Connection, "an expired token is ours, not the contact's");
    let e = error_for(400, 131047, "More than 24 hours have passed").await;
    assert_eq!(e.class, ErrorClass::Rejected);
    let e = error_for(404, 132001, "template name does not exist in the translation").await;
    assert_eq!(e.class, ErrorClass::Rejected);
    let e = error_for(500, 131016, "Service unavailable").await;
    assert_eq!(e.class, ErrorClass::Transient);
    // A code the table does not know falls back to the HTTP status.
    let e = error_for(503, 999_001, "?").await;
    assert_eq!(e.class, ErrorClass::Transient);
}

#[tokio::test]
async fn a_non_graph_answer_is_classified_by_its_status() {
    let (server, wa) = setup(|_| {}).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(502).set_body_string("<html>Bad Gateway</html>"))
        .mount(&server)
        .await;
    let e = wa.send(&request(text("hi"), true)).await.expect_err("502");
    assert_eq!((e.class, e.code.as_str()), (ErrorClass::Transient, "http_502"));
}

#[tokio::test]
async fn a_hung_api_is_a_transient_timeout() {
    let (server, wa) = setup(|c| c.timeout = Duration::from_millis(200)).await;
    Mock::given(method("POST")).respond_with(accepted("late").set_delay(Duration::from_secs(5))).mount(&server).await;
    let e = wa.send(&request(text("hi"), true)).await.expect_err("timeout");
    assert_eq!((e.class, e.code.as_str()), (ErrorClass::Transient, "timeout"));
}

#[test]
fn config_errors_name_the_key_and_secrets_never_show() {
    let wa = WhatsApp::new(WhatsAppConfig::new(TOKEN, PHONE_ID)).expect("config");
    assert!(!format!("{wa:?}").contains("EAAG"), "{wa:?}");
    assert_eq!(WhatsApp::new(WhatsAppConfig::new(TOKEN, "+1 555")).expect_err("id").key, "phone_number_id");
    let mut c = WhatsAppConfig::new(TOKEN, PHONE_ID);
    c.api_version = "24".into();
    assert_eq!(WhatsApp::new(c).expect_err("version").key, "api_version");
    let caps = &wa.info().capabilities;
    assert_eq!((caps.highest_status, caps.conversation_window), (Status::Read, Some(Duration::from_secs(86_400))));
    assert_eq!(caps.max_file_size.video, Some(16_000_000));
}

#[tokio::test]
async fn a_text_too_long_to_follow_its_file_sends_nothing() {
    let (server, wa) = setup(|_| {}).await;
    let content =
        Content { attachment: Some(attachment("https://cdn.test/p/42.jpg", "image/jpeg")), ..text(&"w".repeat(4097)) };
    let e = wa.send(&request(content, true)).await.expect_err("too long");
    assert_eq!(e.code, "message_too_long");
    assert!(server.received_requests().await.expect("recorded").is_empty());
}

/// The image is with the contact once Graph answers: a text that fails after it must not make
/// the engine send the image again (transient) or move on as if nothing went (400).
#[tokio::test]
async fn a_text_that_fails_after_its_file_leaves_the_file_accepted() {
    for (status, code) in [(500, 131016), (400, 131047)] {
        let (server, wa) = setup(|_| {}).await;
        Mock::given(path(messages_path()))
            .and(body_partial_json(json!({"type": "image", "image": {"link": "https://cdn.test/p/42.jpg"}})))
            .respond_with(accepted("wamid.IMG"))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(path(messages_path()))
            .and(body_partial_json(json!({"type": "text"})))
            .respond_with(ResponseTemplate::new(status).set_body_json(json!({"error": {
                "message": "failed", "type": "OAuthException", "code": code, "fbtrace_id": "Ab1"}})))
            .expect(1)
            .mount(&server)
            .await;
        let content = Content {
            attachment: Some(attachment("https://cdn.test/p/42.jpg", "image/jpeg")),
            ..text(&"w".repeat(1500))
        };
        let a = wa.send(&request(content, true)).await.expect("the image went out");
        assert_eq!(a.provider_message_id, "wamid.IMG", "answer {status}");
    }
}

#[tokio::test]
async fn a_success_without_a_message_id_is_not_sent_twice() {
    let (server, wa) = setup(|_| {}).await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200).set_body_string("OK")).mount(&server).await;
    let req = request(text("hi"), true);
    let a = wa.send(&req).await.expect("accepted, unconfirmed");
    assert_eq!(a.provider_message_id, format!("unconfirmed:{}:1", req.cascade_id));
}

#[tokio::test]
async fn graph_errors_never_carry_the_token() {
    let (server, wa) = setup(|_| {}).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {
            "message": format!("Malformed access token {TOKEN}"), "type": "OAuthException", "code": 190}})))
        .mount(&server)
        .await;
    let e = wa.send(&request(text("hi"), true)).await.expect_err("401");
    assert_eq!(e.class, ErrorClass::Connection);
    assert!(!e.detail.contains(TOKEN), "{}", e.detail);
}

#[tokio::test]
async fn with_upload_links_a_public_file_is_fetched_and_sent_by_id() {
    let (server, wa) = setup(|c| c.upload_links = true).await;
    Mock::given(method("GET"))
        .and(path("/cdn/p.jpg"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b"JPEGDATA".to_vec()))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path(format!("/v24.0/{PHONE_ID}/media")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "555"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path(messages_path()))
        .and(body_json(json!({
            "messaging_product": "whatsapp", "recipient_type": "individual", "to": "+447700900123",
            "type": "image", "image": {"id": "555"}
        })))
        .respond_with(accepted("wamid.UP"))
        .expect(1)
        .mount(&server)
        .await;
    let url = format!("{}/cdn/p.jpg", server.uri());
    let content = Content { attachment: Some(attachment(&url, "image/jpeg")), ..text("") };
    wa.send(&request(content, true)).await.expect("sent");
    let received = server.received_requests().await.expect("recorded");
    let upload = received.iter().find(|r| r.url.path().ends_with("/media")).expect("upload");
    assert!(String::from_utf8_lossy(&upload.body).contains("JPEGDATA"));
}
