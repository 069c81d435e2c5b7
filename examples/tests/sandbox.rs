//! The real adapters against the provider sandbox over real HTTP: sends are answered as the
//! providers answer them, and the sandbox's signed webhooks pass the adapters' own verification
//! (two independent implementations of each provider's wire format meeting in the middle).

use std::sync::Arc;
use std::time::Duration;

use cascade_channel_kit::{Intake, WebhookEvent, WebhookRequest};
use cascade_engine::*;
use cascade_max::{Max, MaxConfig};
use cascade_sandbox::{Sandbox, SandboxConfig, Scenarios};
use cascade_sms_twilio::{Twilio, TwilioConfig};
use cascade_telegram::{Telegram, TelegramConfig};
use cascade_viber::{Viber, ViberConfig};
use cascade_whatsapp::{WhatsApp, WhatsAppConfig};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const SCENARIOS: &str = r#"
[default]
behaviour = "read"
delivered_after = "50ms"
read_after = "100ms"

[[recipient]]
address = "+15550100002"
channels = ["whatsapp"]
behaviour = "not_on_channel"

[[recipient]]
address = "+15550100003"
behaviour = "server_error"
times = 1

[[recipient]]
address = "700003"
behaviour = "rate_limited"
retry_after = "3s"

[[recipient]]
address = "700004"
behaviour = "blocked"

[[recipient]]
address = "700005"
behaviour = "reply"
after = "100ms"
text = "yes please"

[[recipient]]
address = "viber-blocked=="
behaviour = "blocked"

[[recipient]]
address = "+15550100006"
behaviour = "fail"
after = "50ms"
code = "30006"
reorder = true
"#;

/// A sandbox whose webhooks go to a receiver that records them.
async fn setup() -> (Sandbox, MockServer) {
    let receiver = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&receiver).await;
    let mut config =
        SandboxConfig { scenarios: Scenarios::from_toml(SCENARIOS).expect("scenarios"), ..SandboxConfig::default() };
    config.whatsapp.webhook_url = Some(format!("{}/webhooks/wa", receiver.uri()));
    config.telegram.webhook_url = Some(format!("{}/webhooks/tg", receiver.uri()));
    config.telegram.secret_token = Some("tg-secret".into());
    config.viber.webhook_url = Some(format!("{}/webhooks/viber", receiver.uri()));
    config.max.webhook_url = Some(format!("{}/webhooks/max", receiver.uri()));
    config.max.secret = Some("max-secret".into());
    (Sandbox::start(config).await.expect("sandbox"), receiver)
}

fn request(kind: AddressKind, to: &str, text: &str) -> SendRequest {
    SendRequest {
        cascade_id: CascadeId::new(),
        attempt: 1,
        connection: "c-1".into(),
        address: Address { kind, value: to.into() },
        content: Arc::new(Content { text: text.into(), ..Content::default() }),
        conversation_open: true,
    }
}

/// The webhooks that reached `path`, once there are at least `n` (real HTTP: polled).
async fn received(receiver: &MockServer, path: &str, n: usize) -> Vec<wiremock::Request> {
    for _ in 0..100 {
        let got: Vec<_> = receiver
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path() == path)
            .collect();
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} webhooks reached {path}");
}

/// Feeds recorded webhooks to an adapter's intake, as the server does.
fn intake(adapter: &dyn Intake, base: &str, hooks: &[wiremock::Request]) -> Vec<WebhookEvent> {
    let mut events = Vec::new();
    for hook in hooks {
        let mut headers = HeaderMap::new();
        for (name, value) in hook.headers.iter() {
            let name = HeaderName::from_bytes(name.as_str().as_bytes()).expect("name");
            headers.insert(name, HeaderValue::from_bytes(value.as_bytes()).expect("value"));
        }
        // The URL as the sandbox called it (the recorded one has lost its port).
        let url = format!("{}{}", base, &hook.url[url::Position::BeforePath..]);
        let parsed =
            adapter.receive(&WebhookRequest::post(&url, &headers, &hook.body)).expect("signed and well-formed");
        events.extend(parsed);
    }
    events
}

fn statuses(events: &[WebhookEvent]) -> Vec<(String, Status)> {
    events
        .iter()
        .filter_map(|e| match e {
            WebhookEvent::Status(s) => Some((s.provider_message_id.clone(), s.status)),
            WebhookEvent::Inbound(_) => None,
        })
        .collect()
}

fn whatsapp(sandbox: &Sandbox) -> WhatsApp {
    let mut c =
        WhatsAppConfig::new(cascade_sandbox::DEFAULT_WHATSAPP_TOKEN, cascade_sandbox::DEFAULT_WHATSAPP_PHONE_NUMBER_ID);
    c.base_url = sandbox.base_url("whatsapp");
    c.app_secret = Some(cascade_sandbox::DEFAULT_WHATSAPP_APP_SECRET.into());
    WhatsApp::new(c).expect("config")
}

#[tokio::test]
async fn whatsapp_statuses_come_back_signed() {
    let (sandbox, receiver) = setup().await;
    let wa = whatsapp(&sandbox);
    let accepted = wa.send(&request(AddressKind::Phone, "+15550100001", "Your order shipped")).await.expect("accepted");
    let events = intake(&wa, &receiver.uri(), &received(&receiver, "/webhooks/wa", 3).await);
    let id = accepted.provider_message_id;
    assert_eq!(
        statuses(&events),
        vec![(id.clone(), Status::Sent), (id.clone(), Status::Delivered), (id, Status::Read)]
    );
    let log = sandbox.requests();
    assert_eq!(log.len(), 1, "sent exactly once: {log:?}");
    assert_eq!(
        (log[0].provider.as_str(), log[0].recipient.as_deref(), log[0].status),
        ("whatsapp", Some("+15550100001"), 200)
    );
}

#[tokio::test]
async fn not_on_whatsapp_is_accepted_then_undeliverable() {
    let (sandbox, receiver) = setup().await;
    let wa = whatsapp(&sandbox);
    wa.send(&request(AddressKind::Phone, "+15550100002", "hi")).await.expect("accepted, as WhatsApp does");
    let events = intake(&wa, &receiver.uri(), &received(&receiver, "/webhooks/wa", 1).await);
    match &events[..] {
        [WebhookEvent::Status(s)] => {
            assert_eq!(s.status, Status::Failed);
            let error = s.error.as_ref().expect("error");
            assert_eq!((error.class, error.code.as_str()), (ErrorClass::Unreachable, "131026"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn wrong_credentials_are_refused_as_the_provider_does() {
    let (sandbox, _receiver) = setup().await;
    let mut c = WhatsAppConfig::new("not-the-token", cascade_sandbox::DEFAULT_WHATSAPP_PHONE_NUMBER_ID);
    c.base_url = sandbox.base_url("whatsapp");
    let err =
        WhatsApp::new(c).expect("config").send(&request(AddressKind::Phone, "+1555", "x")).await.expect_err("401");
    assert_eq!((err.class, err.code.as_str()), (ErrorClass::Connection, "190"));
    let mut t = TwilioConfig::new(cascade_sandbox::DEFAULT_TWILIO_ACCOUNT_SID, "wrong", "+15550009999");
    t.base_url = sandbox.base_url("sms");
    let err = Twilio::new(t).expect("config").send(&request(AddressKind::Phone, "+1555", "x")).await.expect_err("401");
    assert_eq!((err.class, err.code.as_str()), (ErrorClass::Connection, "20003"));
}

#[tokio::test]
async fn twilio_server_error_then_delivered_with_signed_callbacks() {
    let (sandbox, receiver) = setup().await;
    let callback = format!("{}/webhooks/sms", receiver.uri());
    let mut c = TwilioConfig::new(
        cascade_sandbox::DEFAULT_TWILIO_ACCOUNT_SID,
        cascade_sandbox::DEFAULT_TWILIO_AUTH_TOKEN,
        "+15550009999",
    );
    c.base_url = sandbox.base_url("sms");
    c.status_callback = Some(callback);
    let sms = Twilio::new(c).expect("config");
    let req = request(AddressKind::Phone, "+15550100003", "code 5521");
    let err = sms.send(&req).await.expect_err("500 first");
    assert_eq!(err.class, ErrorClass::Transient);
    let accepted = sms.send(&req).await.expect("then accepted");
    let events = intake(&sms, &receiver.uri(), &received(&receiver, "/webhooks/sms", 2).await);
    let id = accepted.provider_message_id;
    assert_eq!(statuses(&events), vec![(id.clone(), Status::Sent), (id, Status::Delivered)]);
    assert_eq!(sandbox.requests().iter().map(|r| r.status).collect::<Vec<_>>(), vec![500, 201]);
}

#[tokio::test]
async fn twilio_failures_can_arrive_reordered() {
    let (sandbox, receiver) = setup().await;
    let mut c = TwilioConfig::new(
        cascade_sandbox::DEFAULT_TWILIO_ACCOUNT_SID,
        cascade_sandbox::DEFAULT_TWILIO_AUTH_TOKEN,
        "+15550009999",
    );
    c.base_url = sandbox.base_url("sms");
    c.status_callback = Some(format!("{}/webhooks/sms", receiver.uri()));
    let sms = Twilio::new(c).expect("config");
    let accepted = sms.send(&request(AddressKind::Phone, "+15550100006", "x")).await.expect("accepted");
    let events = intake(&sms, &receiver.uri(), &received(&receiver, "/webhooks/sms", 2).await);
    let id = accepted.provider_message_id;
    // Newest first: the failure before the `sent` it follows.
    assert_eq!(statuses(&events), vec![(id.clone(), Status::Failed), (id, Status::Sent)]);
    let WebhookEvent::Status(failed) = &events[0] else { panic!("status") };
    assert_eq!(failed.error.as_ref().map(|e| (e.class, e.code.as_str())), Some((ErrorClass::Unreachable, "30006")));
}

#[tokio::test]
async fn telegram_refusals_and_replies() {
    let (sandbox, receiver) = setup().await;
    let mut c = TelegramConfig::new(cascade_sandbox::DEFAULT_TELEGRAM_TOKEN);
    c.base_url = sandbox.base_url("telegram");
    c.webhook_secret = Some("tg-secret".into());
    let tg = Telegram::new(c).expect("config");

    let err = tg.send(&request(AddressKind::ChannelId, "700003", "x")).await.expect_err("429");
    assert_eq!((err.class, err.retry_after), (ErrorClass::Transient, Some(Duration::from_secs(3))));
    let err = tg.send(&request(AddressKind::ChannelId, "700004", "x")).await.expect_err("blocked");
    assert_eq!(err.class, ErrorClass::Unreachable);

    let accepted = tg.send(&request(AddressKind::ChannelId, "700005", "Want the upgrade?")).await.expect("sent");
    assert_eq!(accepted.status, Some(Status::Sent));
    let events = intake(&tg, &receiver.uri(), &received(&receiver, "/webhooks/tg", 1).await);
    assert!(
        matches!(&events[..], [WebhookEvent::Inbound(m)] if m.from == "700005" && m.text.as_deref() == Some("yes please")),
        "{events:?}"
    );
}

#[tokio::test]
async fn viber_delivered_and_seen_or_not_subscribed() {
    let (sandbox, receiver) = setup().await;
    let mut c = ViberConfig::new(cascade_sandbox::DEFAULT_VIBER_TOKEN, "Acme");
    c.base_url = sandbox.base_url("viber");
    let viber = Viber::new(c).expect("config");
    let err = viber.send(&request(AddressKind::ChannelId, "viber-blocked==", "x")).await.expect_err("blocked");
    assert_eq!((err.class, err.code.as_str()), (ErrorClass::Unreachable, "6"));
    let accepted = viber.send(&request(AddressKind::ChannelId, "viber-user==", "hello")).await.expect("sent");
    let events = intake(&viber, &receiver.uri(), &received(&receiver, "/webhooks/viber", 2).await);
    let id = accepted.provider_message_id;
    assert_eq!(statuses(&events), vec![(id.clone(), Status::Delivered), (id, Status::Read)]);
}

#[tokio::test]
async fn max_blocked_and_replies() {
    let (sandbox, receiver) = setup().await;
    let mut c = MaxConfig::new(cascade_sandbox::DEFAULT_MAX_TOKEN);
    c.base_url = sandbox.base_url("max");
    c.webhook_secret = Some("max-secret".into());
    let max = Max::new(c).expect("config");
    let err = max.send(&request(AddressKind::ChannelId, "700004", "x")).await.expect_err("blocked");
    assert_eq!((err.class, err.code.as_str()), (ErrorClass::Unreachable, "chat.denied"));
    max.send(&request(AddressKind::ChannelId, "700005", "Want the upgrade?")).await.expect("sent");
    let events = intake(&max, &receiver.uri(), &received(&receiver, "/webhooks/max", 1).await);
    assert!(
        matches!(&events[..], [WebhookEvent::Inbound(m)] if m.from == "700005" && m.text.as_deref() == Some("yes please")),
        "{events:?}"
    );
}

#[tokio::test]
async fn the_request_log_is_served() {
    let (sandbox, _receiver) = setup().await;
    let wa = whatsapp(&sandbox);
    wa.send(&request(AddressKind::Phone, "+15550100001", "one")).await.expect("sent");
    let log: serde_json::Value =
        reqwest::get(format!("{}/_sandbox/requests", sandbox.url())).await.expect("get").json().await.expect("json");
    assert_eq!(log.as_array().map(Vec::len), Some(1));
    assert_eq!(log[0]["body"]["to"], "+15550100001");
    assert_eq!(log[0]["path"], "/whatsapp/v24.0/100000000000001/messages");
}

#[tokio::test]
async fn a_contact_can_write_first_on_every_channel() {
    let (sandbox, receiver) = setup().await;
    assert_eq!(sandbox.inbound("whatsapp", "+15550100001", "Is my order ready?").await, Ok(200));
    let wa = intake(&whatsapp(&sandbox), &receiver.uri(), &received(&receiver, "/webhooks/wa", 1).await);
    assert!(
        matches!(&wa[..], [WebhookEvent::Inbound(m)] if m.from == "+15550100001" && m.text.as_deref() == Some("Is my order ready?")),
        "{wa:?}"
    );
    let mut c = TelegramConfig::new(cascade_sandbox::DEFAULT_TELEGRAM_TOKEN);
    c.webhook_secret = Some("tg-secret".into());
    assert_eq!(sandbox.inbound("telegram", "700009", "hello").await, Ok(200));
    let tg = intake(&Telegram::new(c).expect("config"), &receiver.uri(), &received(&receiver, "/webhooks/tg", 1).await);
    assert!(matches!(&tg[..], [WebhookEvent::Inbound(m)] if m.from == "700009"), "{tg:?}");

    // Over HTTP too; mistakes are named.
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/_sandbox/inbound", sandbox.url()))
        .body(r#"{"channel": "viber", "from": "viber-user==", "text": "hi"}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{}/_sandbox/inbound", sandbox.url()))
        .body(r#"{"channel": "icq", "from": "1", "text": "hi"}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 422);
    assert!(r.text().await.expect("text").contains("icq"));
    assert!(sandbox.inbound("sms", "+15550100001", "hi").await.expect_err("no inbound_url").contains("no webhook URL"));
}
