//! Webhook intake over notifications written in the documented formats, and the handshake.

use cascade_channel_kit::webhook::hmac_sha256;
use cascade_channel_kit::{Intake, WebhookError, WebhookEvent, WebhookRequest};
use cascade_engine::{ErrorClass, InboundMessage, Status, StatusUpdate};
use cascade_whatsapp::{WhatsApp, WhatsAppConfig};
use chrono::TimeZone;
use reqwest::header::{HeaderMap, HeaderValue};

const APP_SECRET: &str = "6c4f1e7a2b9d";
const PHONE_ID: &str = "400000000000002";

fn number() -> WhatsApp {
    let mut c = WhatsAppConfig::new("token", PHONE_ID);
    c.app_secret = Some(APP_SECRET.into());
    c.verify_token = Some("dashboard-token".into());
    WhatsApp::new(c).expect("config")
}

fn signed(body: &str, secret: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let sig = format!("sha256={}", hex::encode(hmac_sha256(secret.as_bytes(), body.as_bytes())));
    h.insert("x-hub-signature-256", HeaderValue::from_str(&sig).expect("header"));
    h
}

fn receive(body: &str) -> Result<Vec<WebhookEvent>, WebhookError> {
    let h = signed(body, APP_SECRET);
    number().receive(&WebhookRequest::post("https://hooks.test/webhooks/wa-1", &h, body.as_bytes()))
}

fn envelope(value: &str) -> String {
    format!(
        r#"{{"object": "whatsapp_business_account", "entry": [{{"id": "300000000000001", "changes": [{{"field": "messages",
        "value": {{"messaging_product": "whatsapp",
          "metadata": {{"display_phone_number": "15550001111", "phone_number_id": "{PHONE_ID}"}}, {value}}}}}]}}]}}"#
    )
}

fn at(secs: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::Utc.timestamp_opt(secs, 0).single()
}

#[test]
fn statuses_in_both_pricing_shapes() {
    // Per-message pricing (current) and conversation-based pricing (older), batched.
    let body = envelope(
        r#""statuses": [
          {"id": "wamid.A", "status": "delivered", "timestamp": "1788000100", "recipient_id": "447700900123",
           "pricing": {"billable": true, "pricing_model": "PMP", "type": "regular", "category": "utility"}},
          {"id": "wamid.B", "status": "sent", "timestamp": "1718000000", "recipient_id": "447700900123",
           "conversation": {"id": "c0ffee", "expiration_timestamp": "1718086400", "origin": {"type": "service"}},
           "pricing": {"billable": false, "pricing_model": "CBP", "category": "service"}},
          {"id": "wamid.C", "status": "read", "timestamp": "1788000500", "recipient_id": "447700900123",
           "recipient_user_id": "US.123", "some_new_field": [1, 2]},
          {"id": "wamid.D", "status": "deleted", "timestamp": "1788000600", "recipient_id": "447700900123"}
        ]"#,
    );
    let events = receive(&body).expect("valid");
    let status = |id: &str, status, t| {
        WebhookEvent::Status(StatusUpdate { provider_message_id: id.into(), status, at: at(t), error: None })
    };
    assert_eq!(
        events,
        vec![
            status("wamid.A", Status::Delivered, 1788000100),
            status("wamid.B", Status::Sent, 1718000000),
            status("wamid.C", Status::Read, 1788000500),
        ],
        "an unknown status name is skipped"
    );
}

#[test]
fn a_failure_carries_its_classified_error() {
    let body = envelope(
        r#""statuses": [{"id": "wamid.F", "status": "failed", "timestamp": "1788000200", "recipient_id": "447700900123",
          "errors": [{"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable",
            "error_data": {"details": "Message Undeliverable."}, "href": "/docs/error-codes"}]}]"#,
    );
    let events = receive(&body).expect("valid");
    let [WebhookEvent::Status(s)] = &events[..] else { panic!("{events:?}") };
    assert_eq!(s.status, Status::Failed);
    let e = s.error.as_ref().expect("error");
    assert_eq!((e.class, e.code.as_str()), (ErrorClass::Unreachable, "131026"));
    assert_eq!(e.detail, "Message undeliverable", "details that repeat the title are left out");

    let body = envelope(
        r#""statuses": [{"id": "wamid.G", "status": "failed", "timestamp": "1788000200",
          "errors": [{"code": 131047, "title": "Re-engagement message"}]}]"#,
    );
    let events = receive(&body).expect("valid");
    let [WebhookEvent::Status(s)] = &events[..] else { panic!("{events:?}") };
    assert_eq!(s.error.as_ref().map(|e| e.class), Some(ErrorClass::Rejected));
}

#[test]
fn inbound_text_media_and_buttons() {
    let body = envelope(
        r#""contacts": [{"profile": {"name": "Dana Park"}, "wa_id": "447700900123"}],
        "messages": [
          {"from": "447700900123", "id": "wamid.IN1", "timestamp": "1788000300", "type": "text", "text": {"body": "Is it in stock?"}},
          {"from": "447700900123", "id": "wamid.IN2", "timestamp": "1788000400", "type": "image",
           "image": {"caption": "This one", "mime_type": "image/jpeg", "sha256": "q1w2", "id": "990000000000123"}},
          {"from": "447700900123", "id": "wamid.IN3", "timestamp": "1788000450", "type": "sticker",
           "sticker": {"mime_type": "image/webp", "id": "1"}},
          {"from": "447700900123", "id": "wamid.IN4", "timestamp": "1788000460", "type": "button",
           "button": {"text": "Stop promotions", "payload": "STOP"}}
        ]"#,
    );
    let events = receive(&body).expect("valid");
    let inbound = |text: Option<&str>, t| {
        WebhookEvent::Inbound(InboundMessage { from: "+447700900123".into(), text: text.map(Into::into), at: at(t) })
    };
    assert_eq!(
        events,
        vec![
            inbound(Some("Is it in stock?"), 1788000300),
            inbound(Some("This one"), 1788000400),
            inbound(None, 1788000450),
            inbound(Some("Stop promotions"), 1788000460),
        ]
    );
}

#[test]
fn batched_entries_and_other_numbers() {
    let body = format!(
        r#"{{"object": "whatsapp_business_account", "entry": [
          {{"id": "1", "changes": [{{"field": "messages", "value": {{"metadata": {{"phone_number_id": "{PHONE_ID}"}},
             "statuses": [{{"id": "wamid.1", "status": "sent", "timestamp": "1"}}]}}}}]}},
          {{"id": "2", "changes": [
             {{"field": "messages", "value": {{"metadata": {{"phone_number_id": "{PHONE_ID}"}},
               "statuses": [{{"id": "wamid.2", "status": "delivered", "timestamp": "2"}}]}}}},
             {{"field": "messages", "value": {{"metadata": {{"phone_number_id": "999"}},
               "statuses": [{{"id": "wamid.other", "status": "delivered", "timestamp": "2"}}]}}}},
             {{"field": "account_update", "value": {{"event": "VERIFIED_ACCOUNT"}}}}
          ]}}]}}"#
    );
    let ids: Vec<String> = receive(&body)
        .expect("valid")
        .into_iter()
        .map(|e| match e {
            WebhookEvent::Status(s) => s.provider_message_id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, ["wamid.1", "wamid.2"]);
}

#[test]
fn signatures() {
    let body = envelope(r#""statuses": [{"id": "wamid.A", "status": "delivered", "timestamp": "1"}]"#);
    let wa = number();
    let post =
        |h: &HeaderMap, b: &str| wa.receive(&WebhookRequest::post("https://h.test/", h, b.as_bytes())).map(|_| ());
    assert_eq!(post(&signed(&body, APP_SECRET), &body), Ok(()));
    assert_eq!(post(&signed(&body, "another-apps-secret"), &body), Err(WebhookError::BadSignature));
    // A body replayed under a signature made for another body.
    let other = envelope(r#""statuses": [{"id": "wamid.B", "status": "read", "timestamp": "2"}]"#);
    assert_eq!(post(&signed(&other, APP_SECRET), &body), Err(WebhookError::BadSignature));
    assert_eq!(post(&HeaderMap::new(), &body), Err(WebhookError::MissingSignature { header: "X-Hub-Signature-256" }));
    let mut bare = HeaderMap::new();
    let hex_only = hex::encode(hmac_sha256(APP_SECRET.as_bytes(), body.as_bytes()));
    bare.insert("x-hub-signature-256", HeaderValue::from_str(&hex_only).expect("header"));
    assert_eq!(post(&bare, &body), Err(WebhookError::BadSignature), "the sha256= prefix is part of the scheme");
    // Non-ASCII bodies are verified over the raw bytes as sent.
    let unicode = envelope(
        r#""messages": [{"from": "1", "timestamp": "1", "type": "text", "text": {"body": "Gr\u00fc\u00dfe 👋"}}]"#,
    );
    assert!(receive(&unicode).is_ok());
}

#[test]
fn malformed_bodies_are_errors_not_panics() {
    for body in [
        "",
        "{",
        "[]",
        r#"{"entry": {}}"#,
        r#"{"entry": [{"changes": [{"value": {"statuses": [{"status": "sent"}]}}]}]}"#,
    ] {
        let err = receive(body).expect_err(body);
        assert!(matches!(err, WebhookError::Malformed(_)), "{body}: {err:?}");
    }
}

#[test]
fn the_verification_handshake() {
    let wa = number();
    let h = HeaderMap::new();
    let get =
        |url: &str| wa.handshake(&WebhookRequest { method: "GET", url, headers: &h, body: b"" }).expect("supported");
    assert_eq!(
        get(
            "https://h.test/webhooks/wa-1?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=dashboard-token"
        ),
        Ok("1158201444".into())
    );
    assert!(matches!(
        get("https://h.test/webhooks/wa-1?hub.mode=subscribe&hub.challenge=1&hub.verify_token=guess"),
        Err(WebhookError::Handshake(_))
    ));
    assert!(matches!(get("https://h.test/webhooks/wa-1?hub.mode=unsubscribe"), Err(WebhookError::Handshake(_))));
}

#[test]
fn without_secrets_webhooks_are_refused() {
    let wa = WhatsApp::new(WhatsAppConfig::new("token", PHONE_ID)).expect("config");
    let body = envelope(r#""statuses": []"#);
    let h = signed(&body, APP_SECRET);
    let post = WebhookRequest::post("https://h.test/", &h, body.as_bytes());
    assert_eq!(wa.receive(&post), Err(WebhookError::NotConfigured("app_secret")));
    let get = WebhookRequest {
        method: "GET",
        url: "https://h.test/?hub.mode=subscribe&hub.challenge=1&hub.verify_token=x",
        headers: &h,
        body: b"",
    };
    assert_eq!(wa.handshake(&get), Some(Err(WebhookError::NotConfigured("verify_token"))));

    // Blank secrets set in code (the config file refuses them) are not configured either: an
    // HMAC keyed with nothing, or an empty verify token, is one anyone can produce.
    let mut config = WhatsAppConfig::new("token", PHONE_ID);
    config.app_secret = Some("".into());
    config.verify_token = Some("".into());
    let wa = WhatsApp::new(config).expect("config");
    let h = signed(&body, "");
    let post = WebhookRequest::post("https://h.test/", &h, body.as_bytes());
    assert_eq!(wa.receive(&post), Err(WebhookError::NotConfigured("app_secret")));
    let get = WebhookRequest {
        method: "GET",
        url: "https://h.test/?hub.mode=subscribe&hub.challenge=1&hub.verify_token=",
        headers: &h,
        body: b"",
    };
    assert_eq!(wa.handshake(&get), Some(Err(WebhookError::NotConfigured("verify_token"))));
}
