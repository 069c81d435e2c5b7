//! The adapter against a mock Twilio API: the exact requests the documentation prescribes, and
//! the documented answers.

use std::sync::Arc;

use cascade_engine::*;
use cascade_sms_twilio::{Twilio, TwilioConfig};
use serde_json::json;
use wiremock::matchers::{body_string, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "f1e2d3c4b5a6";

async fn setup(edit: impl FnOnce(&mut TwilioConfig)) -> (MockServer, Twilio) {
    let server = MockServer::start().await;
    let mut config = TwilioConfig::new(SID, TOKEN, "+15005550006");
    config.base_url = server.uri();
    config.status_callback = Some("https://cascade.example.com/webhooks/sms-us".into());
    edit(&mut config);
    (server, Twilio::new(config).expect("config"))
}

fn request(content: Content) -> SendRequest {
    SendRequest {
        cascade_id: CascadeId::new(),
        attempt: 3,
        connection: "sms-us".into(),
        address: Address { kind: AddressKind::Phone, value: "+15558675310".into() },
        content: Arc::new(content),
        conversation_open: false,
    }
}

fn text(t: &str) -> Content {
    Content { text: t.into(), ..Content::default() }
}

fn created(sid: &str, price: Option<&str>) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({
        "account_sid": SID, "api_version": "2010-04-01", "body": "x", "direction": "outbound-api",
        "error_code": null, "error_message": null, "from": "+15005550006", "num_media": "0", "num_segments": "1",
        "price": price, "price_unit": "USD", "sid": sid, "status": "queued", "to": "+15558675310",
        "uri": format!("/2010-04-01/Accounts/{SID}/Messages/{sid}.json")
    }))
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

#[tokio::test]
async fn an_sms_is_the_documented_form_post() {
    let (server, sms) = setup(|_| {}).await;
    Mock::given(method("POST"))
        .and(path(format!("/2010-04-01/Accounts/{SID}/Messages.json")))
        .and(header("authorization", basic(SID, TOKEN).as_str()))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string(
            "To=%2B15558675310&From=%2B15005550006&Body=Your+code+is+4242+%26+expires+soon\
             &StatusCallback=https%3A%2F%2Fcascade.example.com%2Fwebhooks%2Fsms-us",
        ))
        .respond_with(created("SM0123456789abcdef0123456789abcdef", None))
        .expect(1)
        .mount(&server)
        .await;
    let a = sms.send(&request(text("Your code is 4242 & expires soon"))).await.expect("accepted");
    assert_eq!(a.provider_message_id, "SM0123456789abcdef0123456789abcdef");
    assert_eq!(a.cost, None, "no price at creation: the connection's price applies");
}

#[tokio::test]
async fn urls_are_used_without_the_spaces_around_them() {
    let (server, sms) = setup(|c| {
        c.base_url = format!(" {}/ ", c.base_url);
        c.status_callback = Some(" https://cascade.example.com/webhooks/sms-us\n".into());
    })
    .await;
    Mock::given(path(format!("/2010-04-01/Accounts/{SID}/Messages.json")))
        .and(body_string(
            "To=%2B15558675310&From=%2B15005550006&Body=hi\
             &StatusCallback=https%3A%2F%2Fcascade.example.com%2Fwebhooks%2Fsms-us",
        ))
        .respond_with(created("SM0123456789abcdef0123456789abcdef", None))
        .expect(1)
        .mount(&server)
        .await;
    sms.send(&request(text("hi"))).await.expect("accepted");
}

#[tokio::test]
async fn a_messaging_service_an_api_key_and_mms() {
    let (server, sms) = setup(|c| {
        c.from = None;
        c.messaging_service_sid = Some("MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".into());
        c.api_key_sid = Some("SKbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb".into());
        c.api_key_secret = Some("key-secret".into());
        c.status_callback = None;
        c.mms = true;
    })
    .await;
    Mock::given(method("POST"))
        .and(path(format!("/2010-04-01/Accounts/{SID}/Messages.json")))
        .and(header("authorization", basic("SKbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "key-secret").as_str()))
        .and(body_string(
            "To=%2B15558675310&MessagingServiceSid=MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa&Body=Look\
             &MediaUrl=https%3A%2F%2Fcdn.test%2Fp.jpg",
        ))
        .respond_with(created("MM0123456789abcdef0123456789abcdef", Some("-0.02000")))
        .expect(1)
        .mount(&server)
        .await;
    let att =
        Attachment { url: "https://cdn.test/p.jpg".into(), media_type: "image/jpeg".into(), size: 1, filename: None };
    let a = sms.send(&request(Content { attachment: Some(att), ..text("Look") })).await.expect("accepted");
    assert_eq!(a.cost, Some("0.02".parse().expect("cost")));
    let local =
        Attachment { url: "/srv/uploads/p.jpg".into(), media_type: "image/jpeg".into(), size: 1, filename: None };
    let e = sms.send(&request(Content { attachment: Some(local), ..text("Look") })).await.expect_err("not public");
    assert_eq!((e.class, e.code.as_str()), (ErrorClass::Rejected, "media_not_public"));
}

async fn error_for(status: u16, body: serde_json::Value) -> SendError {
    let (server, sms) = setup(|_| {}).await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(status).set_body_json(body)).mount(&server).await;
    sms.send(&request(text("hi"))).await.expect_err("error")
}

#[tokio::test]
async fn documented_errors_map_to_classes() {
    let e = error_for(
        400,
        json!({"code": 21211, "message": "The 'To' number 5551234567 is not a valid phone number.",
               "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}),
    )
    .await;
    assert_eq!((e.class, e.code.as_str()), (ErrorClass::Unreachable, "21211"));
    assert!(e.detail.contains("not a valid phone number"));
    let e =
        error_for(400, json!({"code": 21610, "message": "Attempt to send to unsubscribed recipient", "status": 400}))
            .await;
    assert_eq!(e.class, ErrorClass::Unreachable);
    let e = error_for(401, json!({"code": 20003, "message": "Authenticate", "status": 401})).await;
    assert_eq!(e.class, ErrorClass::Connection);
    let e = error_for(429, json!({"code": 20429, "message": "Too Many Requests", "status": 429})).await;
    assert_eq!(e.class, ErrorClass::Transient);
    // No code: the HTTP status decides.
    let e = error_for(503, json!({"message": "Service Unavailable", "status": 503})).await;
    assert_eq!((e.class, e.code.as_str()), (ErrorClass::Transient, "http_503"));
}

#[tokio::test]
async fn bad_input_is_refused_before_any_call() {
    let (server, sms) = setup(|_| {}).await;
    let e = sms.send(&request(text(&"x".repeat(1601)))).await.expect_err("too long");
    assert_eq!(e.class, ErrorClass::Rejected);
    let e = sms.send(&request(text(""))).await.expect_err("empty");
    assert_eq!(e.code, "empty_message");
    assert!(server.received_requests().await.expect("recorded").is_empty());
}

#[test]
fn config_errors_name_the_key_and_secrets_never_show() {
    let sms = Twilio::new(TwilioConfig::new(SID, TOKEN, "+15005550006")).expect("config");
    assert!(!format!("{sms:?}").contains(TOKEN));
    assert_eq!(Twilio::new(TwilioConfig::new("AC123", TOKEN, "+1")).expect_err("sid").key, "account_sid");
    let mut c = TwilioConfig::new(SID, TOKEN, "+1");
    c.from = None;
    assert_eq!(Twilio::new(c).expect_err("sender").key, "from");
    let mut c = TwilioConfig::new(SID, TOKEN, "+1");
    c.api_key_sid = Some("SKbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb".into());
    assert_eq!(Twilio::new(c).expect_err("secret").key, "api_key_secret");
    let caps = &sms.info().capabilities;
    assert_eq!((caps.highest_status, caps.max_file_size), (Status::Delivered, MediaLimits::NONE));
}

#[tokio::test]
async fn a_201_that_cannot_be_read_is_accepted_unconfirmed_not_resent() {
    let (server, sms) = setup(|_| {}).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_string("<Response/>"))
        .mount(&server)
        .await;
    let req = request(text("hi"));
    let a = sms.send(&req).await.expect("accepted");
    assert!(a.provider_message_id.starts_with("unconfirmed:"), "{}", a.provider_message_id);
}

#[test]
fn mms_limits_follow_twilio() {
    let mut c = TwilioConfig::new(SID, TOKEN, "+15005550006");
    c.mms = true;
    let limits = Twilio::new(c).expect("config").info().capabilities.max_file_size;
    assert_eq!((limits.image, limits.video, limits.document), (Some(5_000_000), Some(500_000), Some(500_000)));
}
