//! Every adapter's webhook intake, configured as a server would, with real payloads in each
//! provider's documented format (the adapters' own tests hold the same) and the means to sign a
//! body the way the provider does. The robustness tests break these payloads and signatures.
#![allow(dead_code)]

use std::sync::{Arc, LazyLock};

use axum::http::{HeaderMap, HeaderValue};
use cascade_channel_kit::Intake;
use cascade_channel_kit::webhook::{cascade_signature, hmac_sha256};

/// The public URL the test servers run under (the builder's default): providers sign and call
/// `{PUBLIC_URL}webhooks/{connection}`.
pub const PUBLIC_URL: &str = "http://127.0.0.1:8080/";

const WHATSAPP_SECRET: &str = "whatsapp-app-secret";
const TELEGRAM_SECRET: &str = "Zx9-secret_token";
const TWILIO_TOKEN: &str = "f1e2d3c4b5a6";
const VIBER_TOKEN: &str = "4453b6ac12345678-e02c5f12174805f9-daec9cbb5448c51f";
const MAX_SECRET: &str = "hook-Secret_42";
const WEBHOOK_SECRET: &str = "whsec_test_secret";
/// The WhatsApp phone number id the intake keeps changes for.
pub const PHONE_ID: &str = "100000000000001";
/// The WhatsApp handshake's verify token.
pub const VERIFY_TOKEN: &str = "verify-me";

/// A provider's webhook as cascade receives it.
pub struct Provider {
    /// The connection id in `/webhooks/{connection}`.
    pub connection: &'static str,
    /// The channel the connection belongs to.
    pub channel: &'static str,
    /// The adapter name statuses are matched by.
    pub adapter: &'static str,
    /// The intake, configured with its secret.
    pub intake: Arc<dyn Intake>,
    /// The header the provider authenticates its calls with.
    pub signature_header: &'static str,
    /// Whether that header depends on the body (an HMAC), or is a fixed shared secret.
    pub signs_body: bool,
    /// Real payloads.
    pub seeds: Vec<Vec<u8>>,
    sign: fn(&[u8], &str) -> String,
}

/// Its connection id: what a failing case needs to say.
impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Provider({})", self.connection)
    }
}

impl Provider {
    /// The URL the provider calls.
    pub fn url(&self) -> String {
        format!("{PUBLIC_URL}webhooks/{}", self.connection)
    }

    /// The signature header's value the provider would send with `body`.
    pub fn signature(&self, body: &[u8]) -> String {
        (self.sign)(body, &self.url())
    }

    /// Headers with `signature` (when given) in the signature header, and a content type.
    pub fn headers(&self, signature: Option<&[u8]>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static(self.content_type()));
        if let Some(s) = signature {
            h.insert(self.signature_header, HeaderValue::from_bytes(s).expect("a valid header value"));
        }
        h
    }

    /// The content type the provider posts with.
    pub fn content_type(&self) -> &'static str {
        if self.channel == "sms" { "application/x-www-form-urlencoded" } else { "application/json" }
    }
}

/// Every provider, built once.
pub fn providers() -> &'static [Provider] {
    static ALL: LazyLock<Vec<Provider>> = LazyLock::new(build);
    &ALL
}

/// The provider of `connection`.
pub fn provider(connection: &str) -> &'static Provider {
    providers().iter().find(|p| p.connection == connection).expect("a provider of that connection")
}

fn build() -> Vec<Provider> {
    vec![whatsapp(), telegram(), twilio(), viber(), max(), webhook()]
}

fn whatsapp() -> Provider {
    let mut c = cascade_whatsapp::WhatsAppConfig::new("token", PHONE_ID);
    c.app_secret = Some(WHATSAPP_SECRET.into());
    c.verify_token = Some(VERIFY_TOKEN.into());
    c.base_url = "http://127.0.0.1:9".into();
    let envelope = |value: &str| {
        format!(
            r#"{{"object": "whatsapp_business_account", "entry": [{{"id": "300000000000001", "changes": [{{"field": "messages",
            "value": {{"messaging_product": "whatsapp",
              "metadata": {{"display_phone_number": "15550001111", "phone_number_id": "{PHONE_ID}"}}, {value}}}}}]}}]}}"#
        )
        .into_bytes()
    };
    Provider {
        connection: "wa-1",
        channel: "whatsapp",
        adapter: "whatsapp-cloud",
        intake: Arc::new(cascade_whatsapp::WhatsApp::new(c).expect("config")),
        signature_header: "x-hub-signature-256",
        signs_body: true,
        seeds: vec![
            envelope(
                r#""statuses": [
                  {"id": "wamid.A", "status": "delivered", "timestamp": "1788000100", "recipient_id": "447700900123",
                   "pricing": {"billable": true, "pricing_model": "PMP", "type": "regular", "category": "utility"}},
                  {"id": "wamid.B", "status": "sent", "timestamp": 1718000000, "recipient_id": "447700900123",
                   "conversation": {"id": "c0ffee", "expiration_timestamp": "1718086400", "origin": {"type": "service"}},
                   "pricing": {"billable": false, "pricing_model": "CBP", "category": "service"}}]"#,
            ),
            envelope(
                r#""statuses": [{"id": "wamid.F", "status": "failed", "timestamp": "1788000200", "recipient_id": "447700900123",
                  "errors": [{"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable",
                    "error_data": {"details": "Message Undeliverable."}, "href": "/docs/error-codes"}]}]"#,
            ),
            envelope(
                r#""contacts": [{"profile": {"name": "Dana Park"}, "wa_id": "447700900123"}],
                "messages": [
                  {"from": "447700900123", "id": "wamid.IN1", "timestamp": "1788000300", "type": "text", "text": {"body": "Is it in stock?"}},
                  {"from": "447700900123", "id": "wamid.IN2", "timestamp": "1788000400", "type": "image",
                   "image": {"caption": "This one", "mime_type": "image/jpeg", "sha256": "q1w2", "id": "990000000000123"}},
                  {"from": "447700900123", "id": "wamid.IN4", "timestamp": "1788000460", "type": "button",
                   "button": {"text": "Stop promotions", "payload": "STOP"}}]"#,
            ),
        ],
        sign: |body, _| format!("sha256={}", hex::encode(hmac_sha256(WHATSAPP_SECRET.as_bytes(), body))),
    }
}

fn telegram() -> Provider {
    let mut c = cascade_telegram::TelegramConfig::new("123456:ABC");
    c.webhook_secret = Some(TELEGRAM_SECRET.into());
    c.base_url = "http://127.0.0.1:9".into();
    Provider {
        connection: "tg-1",
        channel: "telegram",
        adapter: "telegram-bot",
        intake: Arc::new(cascade_telegram::Telegram::new(c).expect("config")),
        signature_header: "x-telegram-bot-api-secret-token",
        signs_body: false,
        seeds: vec![
            br#"{"update_id": 905001,
              "message": {"message_id": 52, "date": 1735690000,
                "from": {"id": 123456789, "is_bot": false, "first_name": "Dana", "username": "dana_q", "language_code": "en"},
                "chat": {"id": 123456789, "first_name": "Dana", "username": "dana_q", "type": "private"},
                "text": "where is my order?", "entities": [], "some_future_field": {"x": 1}}}"#
                .to_vec(),
            br#"{"update_id": 905002, "message": {"message_id": 53, "date": 1735690042,
              "from": {"id": 123456789, "is_bot": false, "first_name": "Dana"},
              "chat": {"id": 123456789, "type": "private"},
              "photo": [{"file_id": "s", "file_unique_id": "a", "width": 90, "height": 67}],
              "caption": "damaged box"}}"#
                .to_vec(),
            br#"{"update_id": 905003, "my_chat_member": {
              "chat": {"id": 123456789, "type": "private"}, "from": {"id": 123456789, "is_bot": false, "first_name": "Dana"},
              "date": 1735690100,
              "old_chat_member": {"status": "member", "user": {"id": 7, "is_bot": true, "first_name": "Acme"}},
              "new_chat_member": {"status": "kicked", "until_date": 0, "user": {"id": 7, "is_bot": true, "first_name": "Acme"}}}}"#
                .to_vec(),
        ],
        sign: |_, _| TELEGRAM_SECRET.to_owned(),
    }
}

fn twilio() -> Provider {
    let mut c =
        cascade_sms_twilio::TwilioConfig::new("AC0123456789abcdef0123456789abcdef", TWILIO_TOKEN, "+15005550006");
    c.base_url = "http://127.0.0.1:9".into();
    Provider {
        connection: "sms-1",
        channel: "sms",
        adapter: "twilio",
        intake: Arc::new(cascade_sms_twilio::Twilio::new(c).expect("config")),
        signature_header: "x-twilio-signature",
        signs_body: true,
        seeds: vec![
            b"SmsSid=SM0123456789abcdef0123456789abcdef&SmsStatus=delivered&MessageStatus=delivered\
              &To=%2B15558675310&MessageSid=SM0123456789abcdef0123456789abcdef\
              &AccountSid=AC0123456789abcdef0123456789abcdef&From=%2B15005550006&ApiVersion=2010-04-01\
              &RawDlrDoneDate=2611211532"
                .to_vec(),
            b"MessageSid=SM1&MessageStatus=undelivered&ErrorCode=30007&To=%2B15558675310".to_vec(),
            b"ToCountry=US&SmsMessageSid=SM9&NumMedia=0&SmsSid=SM9&SmsStatus=received&Body=STOP+please\
              &To=%2B15005550006&MessageSid=SM9&AccountSid=AC0123456789abcdef0123456789abcdef\
              &From=%2B15558675310&ApiVersion=2010-04-01"
                .to_vec(),
            b"MessageSid=MM9&SmsStatus=received&Body=&NumMedia=1&MediaContentType0=image%2Fjpeg\
              &MediaUrl0=https%3A%2F%2Fapi.twilio.com%2F2010-04-01%2FAccounts%2FAC1%2FMessages%2FMM9%2FMedia%2FME1\
              &From=%2B15558675310&To=%2B15005550006"
                .to_vec(),
        ],
        sign: |body, url| {
            let params: Vec<(String, String)> =
                url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
            cascade_sms_twilio::webhook::signature(TWILIO_TOKEN, url, &params)
        },
    }
}

fn viber() -> Provider {
    let mut c = cascade_viber::ViberConfig::new(VIBER_TOKEN, "Acme");
    c.base_url = "http://127.0.0.1:9".into();
    Provider {
        connection: "viber-1",
        channel: "viber",
        adapter: "viber-bot",
        intake: Arc::new(cascade_viber::Viber::new(c).expect("config")),
        signature_header: "x-viber-content-signature",
        signs_body: true,
        seeds: vec![
            br#"{"event":"delivered","timestamp":1714045012345,"message_token":5741311803571721087,"user_id":"Qx1=="}"#
                .to_vec(),
            br#"{"event":"seen","timestamp":1714045012345,"message_token":"5741311803571721087","user_id":"Qx1=="}"#
                .to_vec(),
            br#"{"event":"failed","timestamp":1,"message_token":7,"user_id":"Qx1==","desc":"invalid media URL"}"#.to_vec(),
            br#"{"event":"message","timestamp":1714045012345,"message_token":5741311803571721088,"chat_hostname":"SN-CHAT-03_",
              "sender":{"id":"Qx1Lm0Rz9Tb2WcPp4Yk8Aa==","name":"Dana","avatar":"https://x","language":"de","country":"DE","api_version":10},
              "message":{"type":"text","text":"stop please","tracking_data":"order-5521"},"silent":false}"#
                .to_vec(),
            br#"{"event":"subscribed","timestamp":1,"user":{"id":"Qx1==","name":"Dana"},"message_token":1}"#.to_vec(),
        ],
        sign: |body, _| hex::encode(hmac_sha256(VIBER_TOKEN.as_bytes(), body)),
    }
}

fn max() -> Provider {
    let mut c = cascade_max::MaxConfig::new("f9LHodD0cOKmJcmsPZ6DSBrVNl3yA8bT");
    c.webhook_secret = Some(MAX_SECRET.into());
    c.base_url = "http://127.0.0.1:9".into();
    Provider {
        connection: "max-1",
        channel: "max",
        adapter: "max-bot",
        intake: Arc::new(cascade_max::Max::new(c).expect("config")),
        signature_header: "x-max-bot-api-secret",
        signs_body: false,
        seeds: vec![
            r#"{"update_type": "message_created", "timestamp": 1735690000123, "user_locale": "ru",
              "message": {
                "sender": {"user_id": 5001234, "first_name": "Дана", "name": "Дана", "is_bot": false, "last_activity_time": 1735689999000},
                "recipient": {"chat_id": 88001, "chat_type": "dialog", "user_id": 90001},
                "timestamp": 1735690000100,
                "body": {"mid": "mid.0000000000015a71.abc", "seq": 113508447234, "text": "где мой заказ?", "attachments": null},
                "some_future_field": 1}}"#
                .as_bytes()
                .to_vec(),
            br#"{"update_type": "message_callback", "timestamp": 1735690001000,
              "callback": {"timestamp": 1735690000999, "callback_id": "cb.1", "payload": "yes",
                           "user": {"user_id": 5001234, "name": "Dana", "is_bot": false}},
              "message": {"recipient": {"chat_id": -70123, "chat_type": "chat"}, "body": {"mid": "mid.2", "seq": 1}}}"#
                .to_vec(),
            br#"{"update_type": "bot_started", "timestamp": 1735690000123, "chat_id": 88001,
              "user": {"user_id": 5001234, "name": "Dana", "is_bot": false}, "payload": "promo-5521", "user_locale": "ru"}"#
                .to_vec(),
        ],
        sign: |_, _| MAX_SECRET.to_owned(),
    }
}

fn webhook() -> Provider {
    let c = cascade_webhook::WebhookConfig::new("line", "https://bridge.test/send", WEBHOOK_SECRET);
    Provider {
        connection: "line-1",
        channel: "line",
        adapter: "webhook-line",
        intake: Arc::new(cascade_webhook::Webhook::new(c).expect("config")),
        signature_header: "x-cascade-signature",
        signs_body: true,
        seeds: vec![
            br#"{
              "statuses": [
                {"provider_message_id": "msg-829", "status": "delivered", "at": "2026-11-21T10:15:00Z"},
                {"provider_message_id": "msg-830", "status": "failed",
                 "error": {"class": "unreachable", "code": "blocked", "detail": "the user blocked the bot"}}
              ],
              "inbound": [{"from": "U4af4980629", "text": "thanks!", "at": "2026-11-21T10:16:00Z"}],
              "service_version": 3
            }"#
            .to_vec(),
            br#"{"inbound": [{"from": "U4af4980629", "text": null}]}"#.to_vec(),
        ],
        sign: |body, _| cascade_signature(WEBHOOK_SECRET.as_bytes(), chrono::Utc::now().timestamp(), body),
    }
}
