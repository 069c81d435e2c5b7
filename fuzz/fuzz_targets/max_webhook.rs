//! MAX updates: events, or a malformed-body error that says why; never a panic.
#![no_main]

use cascade_channel_kit::WebhookError;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    match cascade_max::webhook::parse_update(body) {
        Ok(_) => {}
        Err(WebhookError::Malformed(reason)) => assert!(!reason.is_empty()),
        Err(other) => panic!("a parse error that is not Malformed: {other:?}"),
    }
});
