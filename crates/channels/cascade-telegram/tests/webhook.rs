//! Webhook intake over Updates written in the documented format.

use cascade_channel_kit::{Intake, WebhookError, WebhookEvent, WebhookRequest};
use cascade_engine::InboundMessage;
use cascade_telegram::{Telegram, TelegramConfig};
use chrono::TimeZone;
use reqwest::header::{HeaderMap, HeaderValue};

const SECRET: &str = "Zx9-secret_token";

fn bot() -> Telegram {
    let mut config = TelegramConfig::new("123456:ABC");
    config.webhook_secret = Some(SECRET.into());
    Telegram::new(config).expect("config")
}

fn headers(secret: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    if let Some(s) = secret {
        h.insert("x-telegram-bot-api-secret-token", HeaderValue::from_str(s).expect("header"));
    }
    h
}

fn receive(body: &str, secret: Option<&str>) -> Result<Vec<WebhookEvent>, WebhookError> {
    let h = headers(secret);
    bot().receive(&WebhookRequest::post("https://hooks.test/webhooks/tg-1", &h, body.as_bytes()))
}

const TEXT: &str = r#"{"update_id": 905001,
  "message": {"message_id": 52, "date": 1735690000,
    "from": {"id": 123456789, "is_bot": false, "first_name": "Dana", "username": "dana_q", "language_code": "en"},
    "chat": {"id": 123456789, "first_name": "Dana", "username": "dana_q", "type": "private"},
    "text": "where is my order?", "entities": [], "some_future_field": {"x": 1}}}"#;

#[test]
fn a_text_message_is_inbound_from_its_chat() {
    let events = receive(TEXT, Some(SECRET)).expect("valid");
    assert_eq!(
        events,
        vec![WebhookEvent::Inbound(InboundMessage {
            from: "123456789".into(),
            text: Some("where is my order?".into()),
            at: chrono::Utc.timestamp_opt(1735690000, 0).single(),
        })]
    );
}

#[test]
fn a_photo_carries_its_caption() {
    let body = r#"{"update_id": 905002, "message": {"message_id": 53, "date": 1735690042,
      "from": {"id": 123456789, "is_bot": false, "first_name": "Dana"},
      "chat": {"id": 123456789, "type": "private"},
      "photo": [{"file_id": "s", "file_unique_id": "a", "width": 90, "height": 67},
                {"file_id": "l", "file_unique_id": "b", "width": 1280, "height": 960, "file_size": 131072}],
      "caption": "damaged box"}}"#;
    let events = receive(body, Some(SECRET)).expect("valid");
    assert!(
        matches!(&events[..], [WebhookEvent::Inbound(m)] if m.text.as_deref() == Some("damaged box")),
        "{events:?}"
    );
}

#[test]
fn other_updates_are_accepted_and_ignored() {
    let blocked = r#"{"update_id": 905003, "my_chat_member": {
      "chat": {"id": 123456789, "type": "private"}, "from": {"id": 123456789, "is_bot": false, "first_name": "Dana"},
      "date": 1735690100,
      "old_chat_member": {"status": "member", "user": {"id": 7, "is_bot": true, "first_name": "Acme"}},
      "new_chat_member": {"status": "kicked", "until_date": 0, "user": {"id": 7, "is_bot": true, "first_name": "Acme"}}}}"#;
    assert_eq!(receive(blocked, Some(SECRET)), Ok(vec![]));
    let edited = r#"{"update_id": 905004, "edited_message": {"message_id": 52, "date": 1, "chat": {"id": 1, "type": "private"}, "text": "x"}}"#;
    assert_eq!(receive(edited, Some(SECRET)), Ok(vec![]));
}

#[test]
fn the_secret_token_is_checked_first() {
    assert_eq!(receive(TEXT, None), Err(WebhookError::MissingSignature { header: "X-Telegram-Bot-Api-Secret-Token" }));
    // One character off, and a body replayed under another bot's secret: both refused. (Telegram
    // signs no body: the secret token is the whole scheme.)
    assert_eq!(receive(TEXT, Some("Zx9-secret_tokem")), Err(WebhookError::BadSignature));
    assert_eq!(
        receive(TEXT, Some(&SECRET[..SECRET.len() - 1])),
        Err(WebhookError::BadSignature),
        "a prefix is not enough"
    );
    // A wrong token on a malformed body: the signature error, not the parse error.
    assert_eq!(receive("{", Some("nope")), Err(WebhookError::BadSignature));
    let unconfigured = Telegram::new(TelegramConfig::new("123456:ABC")).expect("config");
    let h = headers(Some(SECRET));
    let err = unconfigured.receive(&WebhookRequest::post("https://h.test/", &h, TEXT.as_bytes())).expect_err("refused");
    assert_eq!(err, WebhookError::NotConfigured("webhook_secret"));
}

#[test]
fn malformed_bodies_are_errors_not_panics() {
    for body in
        ["", "{", "[]", r#"{"message": {}}"#, r#"{"update_id": "x"}"#, r#"{"update_id": 1, "message": {"date": 1}}"#]
    {
        let err = receive(body, Some(SECRET)).expect_err(body);
        assert!(matches!(err, WebhookError::Malformed(_)), "{body}: {err:?}");
    }
}
