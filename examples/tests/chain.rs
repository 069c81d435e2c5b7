//! The classic chain — WhatsApp → Telegram → SMS — with the real adapters against mock provider
//! APIs on loopback, and statuses fed back through the adapters' own webhook intake, the way
//! the server does it.

use std::sync::Arc;

use cascade_channel_kit::{Intake, WebhookEvent, WebhookRequest};
use cascade_engine::*;
use cascade_sms_twilio::{Twilio, TwilioConfig};
use cascade_telegram::{Telegram, TelegramConfig};
use cascade_whatsapp::{WhatsApp, WhatsAppConfig};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::json;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TWILIO_TOKEN: &str = "twilio-auth-token";
const CALLBACK: &str = "https://cascade.test/webhooks/sms-1";

struct Chain {
    server: MockServer,
    engine: Engine,
    wa: Arc<WhatsApp>,
    sms: Arc<Twilio>,
}

async fn chain() -> Chain {
    let server = MockServer::start().await;
    let mut wa = WhatsAppConfig::new("wa-token", "106540352242922");
    wa.base_url = server.uri();
    wa.app_secret = Some("wa-app-secret".into());
    let mut tg = TelegramConfig::new("123456:tg-token");
    tg.base_url = server.uri();
    let mut sms = TwilioConfig::new(SID, TWILIO_TOKEN, "+15005550006");
    sms.base_url = server.uri();
    sms.status_callback = Some(CALLBACK.into());
    sms.price = Some("0.0079".parse().expect("price"));
    let wa = Arc::new(WhatsApp::new(wa).expect("whatsapp"));
    let tg = Arc::new(Telegram::new(tg).expect("telegram"));
    let sms = Arc::new(Twilio::new(sms).expect("twilio"));
    let engine = Engine::builder()
        .connection(wa.connection("wa-1"))
        .connection(tg.connection("tg-1"))
        .connection(sms.connection("sms-1"))
        .build()
        .expect("engine");
    Chain { server, engine, wa, sms }
}

fn policy() -> Policy {
    Policy::chain(["whatsapp", "telegram", "sms"])
}

/// Twilio's status callback for `sid`, signed as Twilio signs it, through the adapter's intake.
async fn twilio_callback(c: &Chain, sid: &str, status: &str) {
    let params = vec![
        ("MessageSid".to_owned(), sid.to_owned()),
        ("MessageStatus".to_owned(), status.to_owned()),
        ("AccountSid".to_owned(), SID.to_owned()),
    ];
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish();
    let mut headers = HeaderMap::new();
    let sig = cascade_sms_twilio::webhook::signature(TWILIO_TOKEN, CALLBACK, &params);
    headers.insert("x-twilio-signature", HeaderValue::from_str(&sig).expect("header"));
    let events = c.sms.receive(&WebhookRequest::post(CALLBACK, &headers, body.as_bytes())).expect("verified");
    feed(&c.engine, c.sms.adapter(), events).await;
}

async fn feed(engine: &Engine, adapter: &str, events: Vec<WebhookEvent>) {
    for e in events {
        match e {
            WebhookEvent::Status(s) => {
                let m = engine.status(adapter, s).await.expect("status");
                assert!(matches!(m, StatusMatch::Matched { .. }), "{m:?}");
            }
            WebhookEvent::Inbound(_) => panic!("no inbound expected"),
        }
    }
}

async fn wait_for_sends(server: &MockServer, n: usize) {
    for _ in 0..500 {
        if server.received_requests().await.expect("recorded").len() >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("fewer than {n} provider calls");
}

#[tokio::test]
async fn not_on_whatsapp_blocked_on_telegram_delivered_by_sms() {
    let c = chain().await;
    Mock::given(path("/v24.0/106540352242922/messages"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "(#131026) Message Undeliverable.", "type": "OAuthException", "code": 131026,
            "error_data": {"messaging_product": "whatsapp", "details": "Message Undeliverable."}, "fbtrace_id": "A"}})))
        .expect(1)
        .mount(&c.server)
        .await;
    Mock::given(path("/bot123456:tg-token/sendMessage"))
        .respond_with(ResponseTemplate::new(403).set_body_json(
            json!({"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}),
        ))
        .expect(1)
        .mount(&c.server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex("^/2010-04-01/Accounts/AC[0-9a-f]{32}/Messages.json$"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"sid": "SM1", "status": "queued", "price": null})),
        )
        .expect(1)
        .mount(&c.server)
        .await;

    let contact = Contact::with_phone("+447700900123").address("telegram", "987654321");
    let h = c
        .engine
        .submit(CascadeRequest::new(contact, Message::text("Your order has shipped"), policy()))
        .await
        .expect("submit");
    wait_for_sends(&c.server, 3).await;
    twilio_callback(&c, "SM1", "sent").await;
    twilio_callback(&c, "SM1", "delivered").await;
    let outcome = h.outcome().await.expect("outcome");
    assert!(
        matches!(&outcome, Outcome::Delivered { channel, status: Status::Delivered, .. } if channel.as_str() == "sms"),
        "{outcome:?}"
    );
    let view = c.engine.get(h.id()).await.expect("get").expect("exists");
    let attempts = &view.record.state.attempts;
    let classes: Vec<_> = attempts.iter().map(|a| a.error.as_ref().map(|e| (e.class, e.code.clone()))).collect();
    assert_eq!(
        classes,
        vec![Some((ErrorClass::Unreachable, "131026".into())), Some((ErrorClass::Unreachable, "403".into())), None]
    );
    assert_eq!(view.record.state.cost(), "0.0079".parse().expect("cost"), "only the SMS is paid for");
}

#[tokio::test]
async fn no_chat_id_skips_telegram_and_a_late_whatsapp_failure_falls_over() {
    let c = chain().await;
    Mock::given(path("/v24.0/106540352242922/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp", "contacts": [{"input": "+447700900123", "wa_id": "447700900123"}],
            "messages": [{"id": "wamid.X"}]})))
        .expect(1)
        .mount(&c.server)
        .await;
    Mock::given(path_regex("^/2010-04-01/.*"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "SM2", "status": "queued"})))
        .expect(1)
        .mount(&c.server)
        .await;
    let contact = Contact::with_phone("+447700900123");
    let h = c.engine.submit(CascadeRequest::new(contact, Message::text("Hi"), policy())).await.expect("submit");
    wait_for_sends(&c.server, 1).await;

    // WhatsApp took it, then reports it undeliverable in a signed status webhook.
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages",
        "value": {"messaging_product": "whatsapp", "metadata": {"phone_number_id": "106540352242922"},
          "statuses": [{"id": "wamid.X", "status": "failed", "timestamp": "1788000200", "recipient_id": "447700900123",
            "errors": [{"code": 131026, "title": "Message undeliverable"}]}]}}]}]})
    .to_string();
    let mut headers = HeaderMap::new();
    let mac = cascade_channel_kit::webhook::hmac_sha256(b"wa-app-secret", body.as_bytes());
    headers.insert("x-hub-signature-256", HeaderValue::from_str(&format!("sha256={}", hex::encode(mac))).expect("h"));
    let events = c.wa.receive(&WebhookRequest::post("https://cascade.test/webhooks/wa-1", &headers, body.as_bytes()));
    feed(&c.engine, c.wa.adapter(), events.expect("verified")).await;

    wait_for_sends(&c.server, 2).await;
    twilio_callback(&c, "SM2", "delivered").await;
    let outcome = h.outcome().await.expect("outcome");
    assert!(matches!(&outcome, Outcome::Delivered { channel, .. } if channel.as_str() == "sms"), "{outcome:?}");
    let view = c.engine.get(h.id()).await.expect("get").expect("exists");
    assert_eq!(view.record.state.plan.steps[1].skip, Some(SkipReason::NoAddress), "no chat id, no Telegram step");
    let channels: Vec<&str> = view.record.state.attempts.iter().map(|a| a.channel.as_str()).collect();
    assert_eq!(channels, ["whatsapp", "sms"]);
}
