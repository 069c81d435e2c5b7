//! Kommo SalesBot widget requests, read as JSON or as a PHP-style form: a request, or an error
//! naming the field at fault; never a panic. The first byte picks the content type.
#![no_main]

use libfuzzer_sys::fuzz_target;

const TYPES: [Option<&str>; 5] = [
    None,
    Some("application/x-www-form-urlencoded"),
    Some("application/json"),
    Some("text/plain"),
    Some("application/json; charset=utf-8"),
];

fuzz_target!(|data: &[u8]| {
    let Some((first, body)) = data.split_first() else { return };
    let content_type = TYPES[usize::from(*first) % TYPES.len()];
    if let Err(e) = cascade_kommo::parse_widget_request(content_type, body) {
        assert!(e.field().is_some_and(|f| !f.trim().is_empty()), "no field named: {e:?}");
    }
});
