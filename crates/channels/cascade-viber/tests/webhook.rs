//! Callbacks in the documented formats, and their signature.

use cascade_channel_kit::webhook::hmac_sha256;
use cascade_channel_kit::{Intake, WebhookError, WebhookEvent, WebhookRequest};
use cascade_engine::{ErrorClass, Status};
use cascade_viber::webhook::parse_callback;
use cascade_viber::{Viber, ViberConfig};
use reqwest::header::{HeaderMap, HeaderValue};

const TOKEN: &str = "4453b6ac12345678-e02c5f12174805f9-daec9cbb5448c51f";

fn receive(body: &str, key: &str) -> Result<Vec<WebhookEvent>, WebhookError> {
    let mut h = HeaderMap::new();
    let sig = hex::encode(hmac_sha256(key.as_bytes(), body.as_bytes()));
    h.insert("x-viber-content-signature", HeaderValue::from_str(&sig).expect("header"));
    Viber::new(ViberConfig::new(TOKEN, "Acme")).expect("config").receive(&WebhookRequest::post(
        "https://cascade.test/webhooks/viber-1",
        &h,
        body.as_bytes(),
    ))
}

#[test]
fn receipts_and_messages() {
    let status = |body: &str| match &receive(body, TOKEN).expect("valid")[..] {
        [WebhookEvent::Status(s)] => s.clone(),
        other => panic!("{other:?}"),
    };
    let d = status(
        r#"{"event":"delivered","timestamp":1714045012345,"message_token":5741311803571721087,"user_id":"Qx1=="}"#,
    );
    assert_eq!((d.provider_message_id.as_str(), d.status), ("5741311803571721087", Status::Delivered));
    assert_eq!(d.at.map(|t| t.timestamp_millis()), Some(1714045012345));
    let s =
        status(r#"{"event":"seen","timestamp":1714045012345,"message_token":"5741311803571721087","user_id":"Qx1=="}"#);
    assert_eq!(s.status, Status::Read);
    let f =
        status(r#"{"event":"failed","timestamp":1,"message_token":7,"user_id":"Qx1==","desc":"invalid media URL"}"#);
    let e = f.error.expect("error");
    assert_eq!((f.status, e.class, e.detail.as_str()), (Status::Failed, ErrorClass::Rejected, "invalid media URL"));

    let m = r#"{"event":"message","timestamp":1714045012345,"message_token":5741311803571721088,"chat_hostname":"SN-CHAT-03_",
      "sender":{"id":"Qx1Lm0Rz9Tb2WcPp4Yk8Aa==","name":"Dana","avatar":"https://x","language":"de","country":"DE","api_version":10},
      "message":{"type":"text","text":"stop please","tracking_data":"order-5521"},"silent":false}"#;
    let [WebhookEvent::Inbound(i)] = &receive(m, TOKEN).expect("valid")[..] else { panic!() };
    assert_eq!((i.from.as_str(), i.text.as_deref()), ("Qx1Lm0Rz9Tb2WcPp4Yk8Aa==", Some("stop please")));
}

#[test]
fn other_events_are_ignored() {
    for body in [
        r#"{"event":"subscribed","timestamp":1,"user":{"id":"Qx1==","name":"Dana"},"message_token":1}"#,
        r#"{"event":"unsubscribed","timestamp":1,"user_id":"Qx1==","message_token":1}"#,
        r#"{"event":"conversation_started","timestamp":1,"message_token":1,"type":"open","user":{"id":"Qx1=="}}"#,
        r#"{"event":"webhook","timestamp":1,"chat_hostname":"SN-CHAT-03_","message_token":5753750845017966998}"#,
    ] {
        assert_eq!(receive(body, TOKEN), Ok(vec![]), "{body}");
    }
}

#[test]
fn signatures() {
    let body = r#"{"event":"seen","timestamp":1,"message_token":7,"user_id":"Qx1=="}"#;
    assert_eq!(receive(body, "another-bots-token"), Err(WebhookError::BadSignature));
    // A body replayed under the signature of another body.
    let mut h = HeaderMap::new();
    let other = hex::encode(hmac_sha256(TOKEN.as_bytes(), br#"{"event":"delivered"}"#));
    h.insert("x-viber-content-signature", HeaderValue::from_str(&other).expect("header"));
    let viber = Viber::new(ViberConfig::new(TOKEN, "Acme")).expect("config");
    assert_eq!(
        viber.receive(&WebhookRequest::post("https://c.test/", &h, body.as_bytes())),
        Err(WebhookError::BadSignature)
    );
    let none = HeaderMap::new();
    assert!(matches!(
        viber.receive(&WebhookRequest::post("https://c.test/", &none, body.as_bytes())),
        Err(WebhookError::MissingSignature { .. })
    ));
}

#[test]
fn malformed_callbacks_are_errors() {
    for body in
        ["", "{", r#"{"timestamp":1}"#, r#"{"event":"seen","timestamp":1}"#, r#"{"event":"message","timestamp":1}"#]
    {
        assert!(matches!(parse_callback(body.as_bytes()), Err(WebhookError::Malformed(_))), "{body}");
    }
}
