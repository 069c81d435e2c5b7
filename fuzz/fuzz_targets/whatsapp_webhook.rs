//! WhatsApp notifications: events, or a malformed-body error that says why; never a panic.
#![no_main]

use cascade_channel_kit::WebhookError;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    match cascade_whatsapp::webhook::parse_notification(body, Some("100000000000001")) {
        Ok(_) => {}
        Err(WebhookError::Malformed(reason)) => assert!(!reason.is_empty()),
        Err(other) => panic!("a parse error that is not Malformed: {other:?}"),
    }
});
