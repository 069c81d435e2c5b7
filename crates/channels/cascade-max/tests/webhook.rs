//! Webhook intake over updates written in the documented `Update` format.

use cascade_channel_kit::{Intake, WebhookError, WebhookEvent, WebhookRequest};
use cascade_engine::InboundMessage;
use cascade_max::{Max, MaxConfig};
use chrono::TimeZone;
use reqwest::header::{HeaderMap, HeaderValue};

const SECRET: &str = "hook-Secret_42";

fn bot(secret: Option<&str>) -> Max {
    let mut config = MaxConfig::new("f9LHodD0cOKmJcmsPZ6DSBrVNl3yA8bT");
    config.webhook_secret = secret.map(Into::into);
    Max::new(config).expect("config")
}

fn receive(bot: &Max, body: &str, secret: Option<&str>) -> Result<Vec<WebhookEvent>, WebhookError> {
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    if let Some(s) = secret {
        h.insert("x-max-bot-api-secret", HeaderValue::from_str(s).expect("header"));
    }
    bot.receive(&WebhookRequest::post("https://hooks.test/webhooks/max-1", &h, body.as_bytes()))
}

const DIALOG: &str = r#"{"update_type": "message_created", "timestamp": 1735690000123, "user_locale": "ru",
  "message": {
    "sender": {"user_id": 5001234, "first_name": "Дана", "name": "Дана", "is_bot": false, "last_activity_time": 1735689999000},
    "recipient": {"chat_id": 88001, "chat_type": "dialog", "user_id": 90001},
    "timestamp": 1735690000100,
    "body": {"mid": "mid.0000000000015a71.abc", "seq": 113508447234, "text": "где мой заказ?", "attachments": null},
    "some_future_field": 1}}"#;

#[test]
fn a_message_in_a_dialog_is_inbound_from_the_user() {
    let events = receive(&bot(Some(SECRET)), DIALOG, Some(SECRET)).expect("valid");
    assert_eq!(
        events,
        vec![WebhookEvent::Inbound(InboundMessage {
            from: "5001234".into(),
            text: Some("где мой заказ?".into()),
            at: chrono::Utc.timestamp_millis_opt(1735690000100).single(),
        })]
    );
}

#[test]
fn a_message_in_a_group_chat_is_inbound_from_the_chat() {
    let body =
        DIALOG.replace(r#""chat_id": 88001, "chat_type": "dialog""#, r#""chat_id": -70123, "chat_type": "chat""#);
    let events = receive(&bot(Some(SECRET)), &body, Some(SECRET)).expect("valid");
    assert!(matches!(&events[..], [WebhookEvent::Inbound(m)] if m.from == "chat:-70123"), "{events:?}");
}

#[test]
fn a_message_with_only_a_file_has_no_text() {
    let body = DIALOG.replace(r#""text": "где мой заказ?", "attachments": null"#,
        r#""attachments": [{"type": "image", "payload": {"photo_id": 1, "token": "t", "url": "https://i.max.test/1"}}]"#);
    let events = receive(&bot(Some(SECRET)), &body, Some(SECRET)).expect("valid");
    assert!(matches!(&events[..], [WebhookEvent::Inbound(m)] if m.text.is_none() && m.from == "5001234"), "{events:?}");
}

#[test]
fn bots_and_other_updates_are_ignored() {
    let from_bot = DIALOG.replace(r#""is_bot": false"#, r#""is_bot": true"#);
    assert_eq!(receive(&bot(Some(SECRET)), &from_bot, Some(SECRET)).expect("valid"), vec![]);
    let started = r#"{"update_type": "bot_started", "timestamp": 1735690000123, "chat_id": 88001,
      "user": {"user_id": 5001234, "name": "Дана", "is_bot": false}, "payload": "promo-5521", "user_locale": "ru"}"#;
    assert_eq!(receive(&bot(Some(SECRET)), started, Some(SECRET)).expect("valid"), vec![]);
    let removed =
        r#"{"update_type": "message_removed", "timestamp": 1, "message_id": "mid.1", "chat_id": 1, "user_id": 2}"#;
    assert_eq!(receive(&bot(Some(SECRET)), removed, Some(SECRET)).expect("valid"), vec![]);
}

#[test]
fn a_callback_button_is_inbound_with_its_payload() {
    let body = r#"{"update_type": "message_callback", "timestamp": 1735690001000,
      "callback": {"timestamp": 1735690000999, "callback_id": "cb.1", "payload": "yes",
                   "user": {"user_id": 5001234, "name": "Дана", "is_bot": false}},
      "message": {"recipient": {"chat_id": 88001, "chat_type": "dialog"}, "body": {"mid": "mid.2", "seq": 1}}}"#;
    let events = receive(&bot(Some(SECRET)), body, Some(SECRET)).expect("valid");
    assert!(
        matches!(&events[..], [WebhookEvent::Inbound(m)] if m.from == "5001234" && m.text.as_deref() == Some("yes")),
        "{events:?}"
    );
}

#[test]
fn the_secret_is_checked_first() {
    let b = bot(Some(SECRET));
    assert!(matches!(receive(&b, DIALOG, None), Err(WebhookError::MissingSignature { .. })));
    assert_eq!(receive(&b, DIALOG, Some("hook-Secret_43")), Err(WebhookError::BadSignature));
    assert_eq!(receive(&b, "not json", Some("wrong-secret")), Err(WebhookError::BadSignature));
    assert_eq!(receive(&bot(None), DIALOG, Some(SECRET)), Err(WebhookError::NotConfigured("webhook_secret")));
}

#[test]
fn malformed_updates_are_errors() {
    let b = bot(Some(SECRET));
    assert!(matches!(receive(&b, "{", Some(SECRET)), Err(WebhookError::Malformed(_))));
    assert!(matches!(
        receive(&b, r#"{"update_type": "message_created"}"#, Some(SECRET)),
        Err(WebhookError::Malformed(_))
    ));
    assert_eq!(cascade_max::webhook::parse_update(DIALOG.as_bytes()).expect("public parser").len(), 1);
}
