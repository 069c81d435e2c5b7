//! Signature checks (with Twilio's documented example) and callback parsing.

use cascade_channel_kit::{Intake, WebhookError, WebhookEvent, WebhookRequest};
use cascade_engine::{ErrorClass, InboundMessage, Status};
use cascade_sms_twilio::webhook::{parse_callback, signature, verify_signature};
use cascade_sms_twilio::{Twilio, TwilioConfig};
use reqwest::header::{HeaderMap, HeaderValue};

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[test]
fn twilios_documented_example() {
    // docs: "Webhooks security", the worked example.
    let params = pairs(&[
        ("Digits", "1234"),
        ("To", "+18005551212"),
        ("From", "+14158675310"),
        ("Caller", "+14158675310"),
        ("CallSid", "CA1234567890ABCDE"),
    ]);
    assert_eq!(
        signature("12345", "https://example.com/myapp.php?foo=1&bar=2", &params),
        "L/OH5YylLD5NRKLltdqwSvS0BnU="
    );
    // The helper libraries' vector, and the same URL with its default port written out.
    let params = pairs(&[
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ]);
    let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    assert_eq!(signature("12345", url, &params), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    assert_eq!(verify_signature("12345", url, &params, b"", "RSOYDt4T1cUTdK1PDd93/VVr8B8="), Ok(()));
    let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
    assert_eq!(signature("12345", with_port, &params), "kvajT1Ptam85bY51eRf/AJRuM3w=");
    assert_eq!(verify_signature("12345", with_port, &params, b"", "RSOYDt4T1cUTdK1PDd93/VVr8B8="), Ok(()));
    assert_eq!(verify_signature("12345", url, &params, b"", "kvajT1Ptam85bY51eRf/AJRuM3w="), Ok(()));
    // Repeated names sort by value too.
    let repeated = pairs(&[("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]);
    assert_eq!(signature("12345", url, &repeated), "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
}

#[test]
fn json_bodies_are_checked_by_their_hash() {
    let body = br#"{"property": "value", "boolean": true}"#;
    let url = "https://mycompany.com/myapp.php?foo=1&bar=2\
               &bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
    assert_eq!(verify_signature("12345", url, &[], body, "a9nBmqA0ju/hNViExpshrM61xv4="), Ok(()));
    let tampered = br#"{"property": "other", "boolean": true}"#;
    assert_eq!(
        verify_signature("12345", url, &[], tampered, "a9nBmqA0ju/hNViExpshrM61xv4="),
        Err(WebhookError::BadSignature)
    );
}

const TOKEN: &str = "f1e2d3c4b5a6";
const URL: &str = "https://cascade.example.com/webhooks/sms-us";

fn sms() -> Twilio {
    Twilio::new(TwilioConfig::new("AC0123456789abcdef0123456789abcdef", TOKEN, "+15005550006")).expect("config")
}

fn post(body: &str, token: &str, url: &str) -> Result<Vec<WebhookEvent>, WebhookError> {
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(body.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let mut h = HeaderMap::new();
    h.insert("x-twilio-signature", HeaderValue::from_str(&signature(token, URL, &params)).expect("header"));
    sms().receive(&WebhookRequest::post(url, &h, body.as_bytes()))
}

const DELIVERED: &str = "SmsSid=SM0123456789abcdef0123456789abcdef&SmsStatus=delivered\
    &MessageStatus=delivered&To=%2B15558675310&MessageSid=SM0123456789abcdef0123456789abcdef\
    &AccountSid=AC0123456789abcdef0123456789abcdef&From=%2B15005550006&ApiVersion=2010-04-01\
    &RawDlrDoneDate=2611211532";

#[test]
fn a_signed_status_callback() {
    let events = post(DELIVERED, TOKEN, URL).expect("valid");
    let [WebhookEvent::Status(s)] = &events[..] else { panic!("{events:?}") };
    assert_eq!((s.provider_message_id.as_str(), s.status), ("SM0123456789abcdef0123456789abcdef", Status::Delivered));
    assert_eq!(s.error, None);
}

#[test]
fn wrong_or_replayed_signatures_are_refused() {
    assert_eq!(post(DELIVERED, "another-token", URL), Err(WebhookError::BadSignature));
    // The signature covers the URL: a body replayed to another connection's URL is refused.
    assert_eq!(post(DELIVERED, TOKEN, "https://cascade.example.com/webhooks/sms-eu"), Err(WebhookError::BadSignature));
    // And every parameter, including ones we do not read.
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(DELIVERED.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let mut h = HeaderMap::new();
    h.insert("x-twilio-signature", HeaderValue::from_str(&signature(TOKEN, URL, &params)).expect("header"));
    let extended = format!("{DELIVERED}&ChannelStatusMessage=hello");
    assert_eq!(sms().receive(&WebhookRequest::post(URL, &h, extended.as_bytes())), Err(WebhookError::BadSignature));
    let none = HeaderMap::new();
    assert_eq!(
        sms().receive(&WebhookRequest::post(URL, &none, DELIVERED.as_bytes())),
        Err(WebhookError::MissingSignature { header: "X-Twilio-Signature" })
    );
}

#[test]
fn failures_carry_their_error_code() {
    let p = pairs(&[("MessageSid", "SM1"), ("MessageStatus", "undelivered"), ("ErrorCode", "30007")]);
    let events = parse_callback(&p).expect("valid");
    let [WebhookEvent::Status(s)] = &events[..] else { panic!("{events:?}") };
    let e = s.error.as_ref().expect("error");
    assert_eq!((s.status, e.class, e.code.as_str()), (Status::Failed, ErrorClass::Rejected, "30007"));
    let p = pairs(&[("MessageSid", "SM2"), ("MessageStatus", "failed"), ("ErrorCode", "30005")]);
    let [WebhookEvent::Status(s)] = &parse_callback(&p).expect("valid")[..] else { panic!() };
    assert_eq!(s.error.as_ref().map(|e| e.class), Some(ErrorClass::Unreachable));
    // Statuses in order of the ladder, and ones cascade does not use.
    let status = |name: &str| {
        let p = pairs(&[("MessageSid", "SM3"), ("MessageStatus", name)]);
        parse_callback(&p).expect("valid").into_iter().next().map(|e| match e {
            WebhookEvent::Status(s) => s.status,
            other => panic!("{other:?}"),
        })
    };
    assert_eq!(status("sent"), Some(Status::Sent));
    assert_eq!(status("read"), Some(Status::Read));
    assert_eq!(status("queued"), Some(Status::Accepted));
    assert_eq!(status("partially_delivered"), None);
}

#[test]
fn an_incoming_message() {
    let p = pairs(&[
        ("ToCountry", "US"),
        ("SmsMessageSid", "SM9"),
        ("NumMedia", "0"),
        ("SmsSid", "SM9"),
        ("SmsStatus", "received"),
        ("Body", "STOP please"),
        ("To", "+15005550006"),
        ("MessageSid", "SM9"),
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("From", "+15558675310"),
        ("ApiVersion", "2010-04-01"),
    ]);
    assert_eq!(
        parse_callback(&p).expect("valid"),
        vec![WebhookEvent::Inbound(InboundMessage {
            from: "+15558675310".into(),
            text: Some("STOP please".into()),
            at: None
        })]
    );
}

#[test]
fn an_incoming_picture_without_text() {
    let p = pairs(&[
        ("MessageSid", "MM9"),
        ("SmsStatus", "received"),
        ("Body", ""),
        ("NumMedia", "1"),
        ("MediaContentType0", "image/jpeg"),
        ("MediaUrl0", "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM9/Media/ME1"),
        ("From", "+15558675310"),
        ("To", "+15005550006"),
    ]);
    assert_eq!(
        parse_callback(&p).expect("valid"),
        vec![WebhookEvent::Inbound(InboundMessage { from: "+15558675310".into(), text: None, at: None })]
    );
}

#[test]
fn malformed_callbacks_are_errors() {
    for p in [
        pairs(&[]),
        pairs(&[("MessageStatus", "sent")]),
        pairs(&[("MessageSid", "SM1")]),
        pairs(&[("SmsStatus", "received")]),
    ] {
        assert!(matches!(parse_callback(&p), Err(WebhookError::Malformed(_))), "{p:?}");
    }
}
