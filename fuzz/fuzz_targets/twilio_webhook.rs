//! Twilio callbacks: the form parsed into events or a malformed-body error that says why, and
//! the signature check over any URL, form and header; never a panic. The input is the URL
//! Twilio called, a NUL byte, the body, a NUL byte and the signature header.
#![no_main]

use cascade_channel_kit::WebhookError;
use cascade_sms_twilio::webhook::{parse_callback, verify_signature};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let (url, body, signature) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default(), parts.next());
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    match parse_callback(&params) {
        Ok(_) => {}
        Err(WebhookError::Malformed(reason)) => assert!(!reason.is_empty()),
        Err(other) => panic!("a parse error that is not Malformed: {other:?}"),
    }
    let url = String::from_utf8_lossy(url);
    let signature = String::from_utf8_lossy(signature.unwrap_or_default());
    if let Err(e) = verify_signature("f1e2d3c4b5a6", &url, &params, body, &signature) {
        assert_eq!(e, WebhookError::BadSignature);
    }
});
