//! The body of `POST /v1/cascades`: a request, or a problem with a detail (a syntax error says
//! where, a wrong shape names the field); never a panic.
#![no_main]

use cascade_http::api::StartRequest;
use cascade_http::problem::parse_json;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Err(p) = parse_json::<StartRequest>(body) {
        assert!(!p.detail.is_empty());
        assert!(matches!(p.status, 400 | 422), "{p:?}");
    }
});
