//! The adapter against a mock Viber API: the documented requests and answers.

use std::sync::Arc;

use cascade_engine::*;
use cascade_viber::{Viber, ViberConfig};
use serde_json::json;
use wiremock::matchers::{body_json, body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "4453b6ac12345678-e02c5f12174805f9-daec9cbb5448c51f";
const USER: &str = "Qx1Lm0Rz9Tb2WcPp4Yk8Aa==";

async fn setup() -> (MockServer, Viber) {
    let server = MockServer::start().await;
    let mut config = ViberConfig::new(TOKEN, "Acme");
    config.base_url = format!("{}/pa", server.uri());
    (server, Viber::new(config).expect("config"))
}

fn request(content: Content) -> SendRequest {
    SendRequest {
        cascade_id: CascadeId::new(),
        attempt: 1,
        connection: "viber-1".into(),
        address: Address { kind: AddressKind::ChannelId, value: USER.into() },
        content: Arc::new(content),
        conversation_open: false,
    }
}

fn ok(token: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "status": 0, "status_message": "ok", "message_token": token, "chat_hostname": "SN-CHAT-05_", "billing_status": 1
    }))
}

fn text(t: &str) -> Content {
    Content { text: t.into(), ..Content::default() }
}

fn picture() -> Attachment {
    Attachment {
        url: "https://cdn.test/img/spring.jpg".into(),
        media_type: "image/jpeg".into(),
        size: 80_000,
        filename: None,
    }
}

#[tokio::test]
async fn a_text_message() {
    let (server, viber) = setup().await;
    Mock::given(method("POST"))
        .and(path("/pa/send_message"))
        .and(header("x-viber-auth-token", TOKEN))
        .and(body_json(json!({
            "receiver": USER, "min_api_version": 1, "sender": {"name": "Acme"}, "type": "text",
            "text": "Your order #5521 has shipped."
        })))
        .respond_with(ok(5741311803571721087))
        .expect(1)
        .mount(&server)
        .await;
    let a = viber.send(&request(text("Your order #5521 has shipped."))).await.expect("sent");
    assert_eq!(a.provider_message_id, "5741311803571721087", "64-bit tokens survive");
}

#[tokio::test]
async fn picture_text_and_one_button_is_one_card() {
    let (server, viber) = setup().await;
    Mock::given(path("/pa/send_message"))
        .and(body_json(json!({
            "receiver": USER, "min_api_version": 7, "sender": {"name": "Acme"}, "type": "rich_media",
            "alt_text": "Spring sale https://shop.test/spring",
            "rich_media": {"Type": "rich_media", "ButtonsGroupColumns": 6, "ButtonsGroupRows": 6, "BgColor": "#FFFFFF",
                "Buttons": [
                    {"Columns": 6, "Rows": 3, "ActionType": "open-url", "ActionBody": "https://shop.test/spring",
                     "Image": "https://cdn.test/img/spring.jpg"},
                    {"Columns": 6, "Rows": 2, "ActionType": "none", "ActionBody": "none", "Text": "Spring sale",
                     "TextSize": "regular", "TextHAlign": "left", "TextVAlign": "middle"},
                    {"Columns": 6, "Rows": 1, "ActionType": "open-url", "ActionBody": "https://shop.test/spring",
                     "Text": "Open shop", "TextSize": "regular"}
                ]}
        })))
        .respond_with(ok(1))
        .expect(1)
        .mount(&server)
        .await;
    let content = Content {
        attachment: Some(picture()),
        buttons: vec![Button { caption: "Open shop".into(), url: "https://shop.test/spring".into() }],
        ..text("Spring sale")
    };
    viber.send(&request(content)).await.expect("sent");
}

#[tokio::test]
async fn a_picture_with_caption_and_a_file_after_its_text() {
    let (server, viber) = setup().await;
    Mock::given(path("/pa/send_message"))
        .and(body_json(json!({
            "receiver": USER, "min_api_version": 1, "sender": {"name": "Acme"}, "type": "picture",
            "text": "Spring catalogue", "media": "https://cdn.test/img/spring.jpg"
        })))
        .respond_with(ok(2))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/pa/send_message"))
        .and(body_json(json!({"receiver": USER, "min_api_version": 1, "sender": {"name": "Acme"}, "type": "text", "text": "Invoice"})))
        .respond_with(ok(3))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/pa/send_message"))
        .and(body_json(json!({
            "receiver": USER, "min_api_version": 1, "sender": {"name": "Acme"}, "type": "file",
            "media": "https://cdn.test/inv/5521.pdf", "size": 48213, "file_name": "invoice-5521.pdf"
        })))
        .respond_with(ok(4))
        .expect(1)
        .mount(&server)
        .await;
    viber.send(&request(Content { attachment: Some(picture()), ..text("Spring catalogue") })).await.expect("picture");
    let pdf = Attachment {
        url: "https://cdn.test/inv/5521.pdf".into(),
        media_type: "application/pdf".into(),
        size: 48213,
        filename: Some("invoice-5521.pdf".into()),
    };
    let a = viber.send(&request(Content { attachment: Some(pdf), ..text("Invoice") })).await.expect("file");
    assert_eq!(a.provider_message_id, "4", "statuses are waited for on the file");
}

/// The text is with the contact once Viber takes it: a file that fails after it must not make
/// the engine send the text again (transient) or move on as if nothing went (400).
#[tokio::test]
async fn a_file_that_fails_after_its_text_leaves_the_text_accepted() {
    for status in [500, 400] {
        let (server, viber) = setup().await;
        Mock::given(path("/pa/send_message"))
            .and(body_partial_json(json!({"type": "text", "text": "Invoice"})))
            .respond_with(ok(3))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(path("/pa/send_message"))
            .and(body_partial_json(json!({"type": "file"})))
            .respond_with(ResponseTemplate::new(status).set_body_string("upstream failed"))
            .expect(1)
            .mount(&server)
            .await;
        let pdf = Attachment {
            url: "https://cdn.test/inv/5521.pdf".into(),
            media_type: "application/pdf".into(),
            size: 48213,
            filename: None,
        };
        let a =
            viber.send(&request(Content { attachment: Some(pdf), ..text("Invoice") })).await.expect("the text went");
        assert_eq!(a.provider_message_id, "3", "answer {status}");
    }
}

#[test]
fn a_text_goes_first_unless_it_is_a_pictures_caption() {
    let viber = Viber::new(ViberConfig::new(TOKEN, "Acme")).expect("config");
    let kinds = |content: Content| -> Vec<String> {
        let bodies = viber.bodies(&request(content)).expect("bodies");
        bodies.iter().map(|b| b["type"].as_str().unwrap_or_default().to_owned()).collect()
    };
    let video = Attachment { url: "https://cdn.test/v.mp4".into(), media_type: "video/mp4".into(), ..picture() };
    assert_eq!(kinds(Content { attachment: Some(picture()), ..text("short") }), ["picture"]);
    assert_eq!(kinds(Content { attachment: Some(picture()), ..text(&"c".repeat(769)) }), ["text", "picture"]);
    assert_eq!(kinds(Content { attachment: Some(picture()), ..text("") }), ["picture"]);
    assert_eq!(kinds(Content { attachment: Some(video.clone()), ..text("watch") }), ["text", "video"]);
    assert_eq!(kinds(Content { attachment: Some(video), ..text("") }), ["video"]);
    assert_eq!(kinds(text("only text")), ["text"]);
}

async fn error_for(status: i64, message: &str) -> SendError {
    let (server, viber) = setup().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": status, "status_message": message})))
        .mount(&server)
        .await;
    viber.send(&request(text("hi"))).await.expect_err("error")
}

#[tokio::test]
async fn status_codes_map_to_classes() {
    let e = error_for(6, "receiverNotSubscribed").await;
    assert_eq!((e.class, e.code.as_str(), e.detail.as_str()), (ErrorClass::Unreachable, "6", "receiverNotSubscribed"));
    assert_eq!(error_for(5, "receiverNotRegistered").await.class, ErrorClass::Unreachable);
    assert_eq!(error_for(12, "tooManyRequests").await.class, ErrorClass::Transient);
    assert_eq!(error_for(2, "invalidAuthToken").await.class, ErrorClass::Connection);
    assert_eq!(error_for(3, "badData").await.class, ErrorClass::Rejected);
}

#[tokio::test]
async fn local_files_and_long_texts_are_refused_before_any_call() {
    let (server, viber) = setup().await;
    let local = Attachment { url: "/srv/up/a.jpg".into(), ..picture() };
    let e = viber.send(&request(Content { attachment: Some(local), ..text("x") })).await.expect_err("local");
    assert_eq!(e.code, "media_not_public");
    let e = viber.send(&request(text(&"v".repeat(7001)))).await.expect_err("long");
    assert_eq!(e.code, "message_too_long");
    assert!(server.received_requests().await.expect("recorded").is_empty());
    assert!(!format!("{viber:?}").contains("daec9cbb"));
}
