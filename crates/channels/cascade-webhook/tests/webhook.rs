//! Intake of the documented report format, and its signature.

use cascade_channel_kit::webhook::cascade_signature;
use cascade_channel_kit::{WebhookError, WebhookEvent, WebhookRequest};
use cascade_engine::{ErrorClass, Status};
use cascade_webhook::webhook::parse_report;
use cascade_webhook::{Webhook, WebhookConfig};
use reqwest::header::{HeaderMap, HeaderValue};

const SECRET: &str = "whsec_test_secret";
const REPORT: &str = r#"{
  "statuses": [
    {"provider_message_id": "msg-829", "status": "delivered", "at": "2026-11-21T10:15:00Z"},
    {"provider_message_id": "msg-830", "status": "failed",
     "error": {"class": "unreachable", "code": "blocked", "detail": "the user blocked the bot"}}
  ],
  "inbound": [{"from": "U4af4980629", "text": "thanks!", "at": "2026-11-21T10:16:00Z"}],
  "service_version": 3
}"#;

fn line() -> Webhook {
    Webhook::new(WebhookConfig::new("line", "https://bridge.test/send", SECRET)).expect("config")
}

fn check(header: &str, body: &str, now: i64) -> Result<(), WebhookError> {
    let mut h = HeaderMap::new();
    h.insert("x-cascade-signature", HeaderValue::from_str(header).expect("header"));
    line().verify_at(&WebhookRequest::post("https://cascade.test/webhooks/line-1", &h, body.as_bytes()), now)
}

#[test]
fn the_documented_report() {
    let events = parse_report(REPORT.as_bytes()).expect("valid");
    assert_eq!(events.len(), 3);
    let WebhookEvent::Status(delivered) = &events[0] else { panic!("{events:?}") };
    assert_eq!((delivered.provider_message_id.as_str(), delivered.status), ("msg-829", Status::Delivered));
    assert!(delivered.at.is_some());
    let WebhookEvent::Status(failed) = &events[1] else { panic!("{events:?}") };
    assert_eq!(failed.error.as_ref().map(|e| e.class), Some(ErrorClass::Unreachable));
    let WebhookEvent::Inbound(reply) = &events[2] else { panic!("{events:?}") };
    assert_eq!((reply.from.as_str(), reply.text.as_deref()), ("U4af4980629", Some("thanks!")));
    assert_eq!(parse_report(b"{}").expect("empty report"), vec![]);
}

#[test]
fn signatures_and_replays() {
    let now = 1_790_000_000;
    let good = cascade_signature(SECRET.as_bytes(), now, REPORT.as_bytes());
    assert_eq!(check(&good, REPORT, now + 10), Ok(()));
    assert_eq!(
        check(&cascade_signature(b"wrong", now, REPORT.as_bytes()), REPORT, now),
        Err(WebhookError::BadSignature)
    );
    // The same body replayed an hour later is stale; re-dated, its signature no longer matches.
    assert_eq!(check(&good, REPORT, now + 3600), Err(WebhookError::Stale));
    let redated = good.replace(&format!("t={now}"), &format!("t={}", now + 3600));
    assert_eq!(check(&redated, REPORT, now + 3600), Err(WebhookError::BadSignature));
    // A signature made for another body.
    let other = cascade_signature(SECRET.as_bytes(), now, b"{}");
    assert_eq!(check(&other, REPORT, now), Err(WebhookError::BadSignature));
}

#[test]
fn malformed_reports_are_errors() {
    for body in [
        "",
        "[",
        r#"{"statuses": [{"status": "delivered"}]}"#,
        r#"{"statuses": [{"provider_message_id": "x", "status": "lost"}]}"#,
    ] {
        assert!(matches!(parse_report(body.as_bytes()), Err(WebhookError::Malformed(_))), "{body}");
    }
}
