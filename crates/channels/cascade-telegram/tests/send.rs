//! The adapter against a mock Bot API: the exact requests the documentation prescribes, and
//! the documented answers.

use std::sync::Arc;
use std::time::Duration;

use cascade_engine::*;
use cascade_telegram::{Telegram, TelegramConfig};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "123456:ABC-DEF1234ghIkl";

async fn setup() -> (MockServer, Telegram) {
    let server = MockServer::start().await;
    let mut config = TelegramConfig::new(TOKEN);
    config.base_url = server.uri();
    (server, Telegram::new(config).expect("config"))
}

fn request(chat: &str, content: Content) -> SendRequest {
    SendRequest {
        cascade_id: CascadeId::new(),
        attempt: 1,
        connection: "tg-1".into(),
        address: Address { kind: AddressKind::ChannelId, value: chat.into() },
        content: Arc::new(content),
        conversation_open: false,
    }
}

fn sent(chat: i64, message_id: i64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "ok": true,
        "result": {"message_id": message_id, "date": 1735689600, "chat": {"id": chat, "type": "private"}, "text": "x"}
    }))
}

fn text(t: &str) -> Content {
    Content { text: t.into(), ..Content::default() }
}

#[tokio::test]
async fn text_with_a_button_is_one_send_message_call() {
    let (server, tg) = setup().await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{TOKEN}/sendMessage")))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "chat_id": 123456789,
            "text": "Your order has shipped",
            "reply_markup": {"inline_keyboard": [[{"text": "Track it", "url": "https://shop.test/t/88"}]]}
        })))
        .respond_with(sent(123456789, 4711))
        .expect(1)
        .mount(&server)
        .await;
    let content = Content {
        buttons: vec![Button { caption: "Track it".into(), url: "https://shop.test/t/88".into() }],
        ..text("Your order has shipped")
    };
    let accepted = tg.send(&request("123456789", content)).await.expect("sent");
    assert_eq!(accepted.provider_message_id, "123456789:4711");
    assert_eq!(accepted.status, Some(Status::Sent), "a bot's send is as far as it ever learns");
}

#[tokio::test]
async fn formatting_and_link_previews_follow_the_config() {
    let server = MockServer::start().await;
    let mut config = TelegramConfig::new(TOKEN);
    config.base_url = server.uri();
    config.parse_mode = Some("HTML".into());
    config.disable_link_preview = true;
    let tg = Telegram::new(config).expect("config");
    Mock::given(path(format!("/bot{TOKEN}/sendMessage")))
        .and(body_json(json!({
            "chat_id": "@shop_news", "text": "<b>Sale</b>", "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": true}
        })))
        .respond_with(sent(-1001234567890, 9))
        .expect(1)
        .mount(&server)
        .await;
    let accepted = tg.send(&request("@shop_news", text("<b>Sale</b>"))).await.expect("sent");
    assert_eq!(accepted.provider_message_id, "-1001234567890:9");
}

fn attachment(url: &str, media_type: &str, size: u64) -> Attachment {
    Attachment { url: url.into(), media_type: media_type.into(), size, filename: None }
}

#[tokio::test]
async fn a_public_photo_goes_by_url_with_the_text_as_caption() {
    let (server, tg) = setup().await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{TOKEN}/sendPhoto")))
        .and(body_json(json!({"chat_id": 42, "photo": "https://cdn.test/p.jpg", "caption": "New arrivals"})))
        .respond_with(sent(42, 7))
        .expect(1)
        .mount(&server)
        .await;
    let content = Content {
        attachment: Some(attachment("https://cdn.test/p.jpg", "image/jpeg", 300_000)),
        ..text("New arrivals")
    };
    tg.send(&request("42", content)).await.expect("sent");
}

#[tokio::test]
async fn a_local_document_is_uploaded_as_multipart() {
    let (server, tg) = setup().await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{TOKEN}/sendDocument")))
        .respond_with(sent(42, 8))
        .mount(&server)
        .await;
    let dir = std::env::temp_dir().join(format!("cascade-tg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("invoice.txt");
    std::fs::write(&file, b"INVOICE 42: 10.00 EUR").expect("write");
    let content = Content {
        attachment: Some(attachment(file.to_str().expect("utf-8"), "text/plain", 21)),
        ..text("Your invoice")
    };
    tg.send(&request("42", content)).await.expect("sent");

    let received = server.received_requests().await.expect("recorded");
    let r = &received[0];
    let ctype = r.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(ctype.starts_with("multipart/form-data; boundary="), "{ctype}");
    let body = String::from_utf8_lossy(&r.body);
    assert!(body.contains("name=\"chat_id\"\r\n\r\n42\r\n"), "{body}");
    assert!(body.contains("name=\"caption\"\r\n\r\nYour invoice\r\n"), "{body}");
    assert!(body.contains("name=\"document\"; filename=\"invoice.txt\""), "{body}");
    assert!(body.contains("Content-Type: text/plain\r\n\r\nINVOICE 42: 10.00 EUR"), "{body}");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_document_telegram_will_not_fetch_is_fetched_and_uploaded() {
    let (server, tg) = setup().await;
    // Telegram fetches only PDF, ZIP and GIF documents by URL: a CSV is uploaded.
    Mock::given(method("GET"))
        .and(path("/files/report.csv"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b"a,b\n1,2\n".to_vec()))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path(format!("/bot{TOKEN}/sendDocument"))).respond_with(sent(42, 9)).expect(1).mount(&server).await;
    let url = format!("{}/files/report.csv", server.uri());
    let content = Content { attachment: Some(attachment(&url, "text/csv", 8)), ..text("") };
    tg.send(&request("42", content)).await.expect("sent");
    let received = server.received_requests().await.expect("recorded");
    let upload = received.iter().find(|r| r.url.path().ends_with("sendDocument")).expect("upload");
    let body = String::from_utf8_lossy(&upload.body);
    assert!(body.contains("filename=\"report.csv\"") && body.contains("a,b\n1,2\n"), "{body}");
    assert!(!body.contains("name=\"caption\""), "no empty caption: {body}");
}

#[tokio::test]
async fn a_text_too_long_for_a_caption_follows_the_video() {
    let (server, tg) = setup().await;
    let long = "x".repeat(1500);
    Mock::given(path(format!("/bot{TOKEN}/sendVideo")))
        .and(body_json(json!({"chat_id": 42, "video": "https://cdn.test/v.mp4"})))
        .respond_with(sent(42, 10))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path(format!("/bot{TOKEN}/sendMessage")))
        .and(body_json(json!({"chat_id": 42, "text": long})))
        .respond_with(sent(42, 11))
        .expect(1)
        .mount(&server)
        .await;
    let content =
        Content { attachment: Some(attachment("https://cdn.test/v.mp4", "video/mp4", 1_000_000)), ..text(&long) };
    let accepted = tg.send(&request("42", content)).await.expect("sent");
    assert_eq!(accepted.provider_message_id, "42:11");
}

/// The video is in the chat once `sendVideo` answers: a text that fails after it must not make
/// the engine send the video again (transient) or move on as if nothing went (400).
#[tokio::test]
async fn a_text_that_fails_after_its_video_leaves_the_video_accepted() {
    for (status, body) in [
        (500, json!({"ok": false, "error_code": 500, "description": "Internal Server Error"})),
        (400, json!({"ok": false, "error_code": 400, "description": "Bad Request: can't parse entities"})),
    ] {
        let (server, tg) = setup().await;
        let long = "x".repeat(1500);
        Mock::given(path(format!("/bot{TOKEN}/sendVideo"))).respond_with(sent(42, 10)).expect(1).mount(&server).await;
        Mock::given(path(format!("/bot{TOKEN}/sendMessage")))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .expect(1)
            .mount(&server)
            .await;
        let content =
            Content { attachment: Some(attachment("https://cdn.test/v.mp4", "video/mp4", 1_000_000)), ..text(&long) };
        let accepted = tg.send(&request("42", content)).await.expect("the video went out");
        assert_eq!(accepted.provider_message_id, "42:10", "answer {status}");
        assert_eq!(accepted.status, Some(Status::Sent));
    }
}

#[tokio::test]
async fn a_base_url_with_spaces_around_it_works() {
    let server = MockServer::start().await;
    let mut config = TelegramConfig::new(TOKEN);
    config.base_url = format!("  {}/ ", server.uri());
    let tg = Telegram::new(config).expect("config");
    Mock::given(path(format!("/bot{TOKEN}/sendMessage"))).respond_with(sent(42, 1)).expect(1).mount(&server).await;
    tg.send(&request("42", text("hi"))).await.expect("sent");
}

async fn error_for(status: u16, body: serde_json::Value) -> SendError {
    let (server, tg) = setup().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(status).set_body_json(body)).mount(&server).await;
    tg.send(&request("42", text("hi"))).await.expect_err("error")
}

#[tokio::test]
async fn documented_errors_map_to_classes() {
    let e = error_for(
        403,
        json!({"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}),
    )
    .await;
    assert_eq!((e.class, e.code.as_str()), (ErrorClass::Unreachable, "403"));
    let e = error_for(400, json!({"ok": false, "error_code": 400, "description": "Bad Request: chat not found"})).await;
    assert_eq!(e.class, ErrorClass::Unreachable);
    let e = error_for(
        429,
        json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 17", "parameters": {"retry_after": 17}}),
    )
    .await;
    assert_eq!((e.class, e.retry_after), (ErrorClass::Transient, Some(Duration::from_secs(17))));
    let e = error_for(401, json!({"ok": false, "error_code": 401, "description": "Unauthorized"})).await;
    assert_eq!(e.class, ErrorClass::Connection, "a bad token is ours, not the contact's");
    let e =
        error_for(400, json!({"ok": false, "error_code": 400, "description": "Bad Request: can't parse entities: x"}))
            .await;
    assert_eq!(e.class, ErrorClass::Rejected);
    let e = error_for(
        400,
        json!({"ok": false, "error_code": 400, "description": "Bad Request: group chat was migrated to a supergroup chat",
               "parameters": {"migrate_to_chat_id": -1001987654321_i64}}),
    )
    .await;
    assert!(e.class == ErrorClass::Unreachable && e.detail.contains("-1001987654321"), "{e}");
}

#[tokio::test]
async fn an_html_error_page_is_classified_by_its_status() {
    let (server, tg) = setup().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(502).set_body_string("<html><body>502 Bad Gateway</body></html>"))
        .mount(&server)
        .await;
    let e = tg.send(&request("42", text("hi"))).await.expect_err("502");
    assert_eq!((e.class, e.code.as_str()), (ErrorClass::Transient, "http_502"));
}

#[tokio::test]
async fn bad_input_is_refused_before_any_call() {
    let (server, tg) = setup().await;
    let e = tg.send(&request("not-a-chat", text("hi"))).await.expect_err("address");
    assert_eq!(e.class, ErrorClass::Unreachable);
    let e = tg.send(&request("42", text(&"y".repeat(4097)))).await.expect_err("too long");
    assert_eq!(e.class, ErrorClass::Rejected);
    assert!(server.received_requests().await.expect("recorded").is_empty());
}

#[test]
fn the_token_never_shows() {
    let tg = Telegram::new(TelegramConfig::new(TOKEN)).expect("config");
    assert!(!format!("{tg:?}").contains("ABC-DEF"), "{tg:?}");
    let mut bad = TelegramConfig::new(TOKEN);
    bad.base_url = "api.telegram.org".into();
    assert_eq!(Telegram::new(bad).expect_err("relative").key, "base_url");
    let mut bad = TelegramConfig::new(TOKEN);
    bad.webhook_secret = Some("has spaces".into());
    assert_eq!(Telegram::new(bad).expect_err("secret").key, "webhook_secret");
    // Set from code, a secret skips the blank check of the config file; an empty one would let
    // any request whose header is empty through.
    let mut bad = TelegramConfig::new(TOKEN);
    bad.webhook_secret = Some("".into());
    assert_eq!(Telegram::new(bad).expect_err("empty secret").key, "webhook_secret");
}

#[test]
fn capabilities_say_chat_ids_only_and_sent_at_best() {
    let tg = Telegram::new(TelegramConfig::new(TOKEN)).expect("config");
    let caps = &tg.info().capabilities;
    assert_eq!(caps.address_kinds, vec![AddressKind::ChannelId]);
    assert_eq!(caps.highest_status, Status::Sent);
    assert_eq!(caps.default_until(), Status::Sent);
    assert_eq!(caps.max_file_size.image, Some(10_000_000));
    let contact = Contact::with_phone("+15551234567");
    assert_eq!(contact.address_for(&"telegram".into(), &caps.address_kinds), None, "no chat id, no step");
}

#[tokio::test]
async fn a_text_too_long_even_for_a_message_sends_nothing_not_half() {
    let (server, tg) = setup().await;
    let content = Content {
        attachment: Some(attachment("https://cdn.test/v.mp4", "video/mp4", 1_000)),
        ..text(&"z".repeat(5000))
    };
    let e = tg.send(&request("42", content)).await.expect_err("too long");
    assert_eq!(e.code, "message_too_long");
    assert!(server.received_requests().await.expect("recorded").is_empty(), "the file must not go alone");
}

/// The file's URL was checked when the cascade started; where a redirect points was not (it
/// could be an internal address), so the fetch stops at the redirect and sends nothing.
#[tokio::test]
async fn a_redirecting_file_host_is_not_followed() {
    let (server, tg) = setup().await;
    Mock::given(method("GET"))
        .and(path("/signed/report.csv"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "http://169.254.169.254/latest/meta-data"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path(format!("/bot{TOKEN}/sendDocument"))).respond_with(sent(42, 12)).expect(0).mount(&server).await;
    let url = format!("{}/signed/report.csv", server.uri());
    let content = Content { attachment: Some(attachment(&url, "text/csv", 4)), ..text("") };
    let e = tg.send(&request("42", content)).await.expect_err("a redirect is not followed");
    assert_eq!((e.class, e.code.as_str()), (ErrorClass::Rejected, "attachment_redirect"));
    assert!(e.detail.contains("302"), "{}", e.detail);
}

#[tokio::test]
async fn a_file_host_that_is_down_is_transient() {
    let (server, tg) = setup().await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(503)).mount(&server).await;
    let url = format!("{}/files/report.csv", server.uri());
    let content = Content { attachment: Some(attachment(&url, "text/csv", 4)), ..text("") };
    let e = tg.send(&request("42", content)).await.expect_err("host down");
    assert_eq!((e.class, e.code.as_str()), (ErrorClass::Transient, "attachment_fetch"));
}

#[tokio::test]
async fn an_error_page_echoing_the_path_does_not_leak_the_token() {
    let (server, tg) = setup().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(404).set_body_string(format!("Cannot POST /bot{TOKEN}/sendMessage")))
        .mount(&server)
        .await;
    let e = tg.send(&request("42", text("hi"))).await.expect_err("404");
    assert!(!e.detail.contains("ABC-DEF"), "{}", e.detail);
    assert!(e.detail.contains("/bot***/sendMessage"), "{}", e.detail);
}
