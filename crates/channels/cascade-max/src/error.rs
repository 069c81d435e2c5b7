//! MAX errors → error classes.
//!
//! A failed call answers an HTTP error status with `{"code": "<key>", "message": "..."}`. The
//! platform documents the HTTP statuses (400, 401, 404, 405, 429, 503) and, in its upload
//! guide, the `attachment.not.ready` key; it does not list its keys, so the other keys below
//! are those the API is seen to send in practice. The key is looked up first, then the status; anything else falls back to the kit's
//! status classes.

use cascade_channel_kit::{ErrorClass, ErrorRule, http, table};
use cascade_engine::SendError;
use reqwest::StatusCode;

/// The table.
pub const ERRORS: &[ErrorRule] = &[
    ErrorRule::new(
        "attachment.not.ready",
        ErrorClass::Transient,
        "MAX is still processing the uploaded file (after the adapter's own waits)",
    ),
    ErrorRule::new(
        "chat.denied",
        ErrorClass::Unreachable,
        "the bot may not write there: the user blocked or never started it, or left the chat",
    ),
    ErrorRule::new("chat.not.found", ErrorClass::Unreachable, "no such chat or user for this bot"),
    ErrorRule::new("account.blocked", ErrorClass::Connection, "the bot's own MAX account is blocked"),
    ErrorRule::new("400", ErrorClass::Rejected, "invalid request"),
    ErrorRule::new("401", ErrorClass::Connection, "authentication failed: the token"),
    ErrorRule::new("403", ErrorClass::Connection, "forbidden, without a known key"),
    ErrorRule::new("404", ErrorClass::Unreachable, "the recipient was not found"),
    ErrorRule::new("405", ErrorClass::Connection, "method not allowed: a wrong `base_url`"),
    ErrorRule::new("429", ErrorClass::Transient, "too many requests"),
    ErrorRule::new("503", ErrorClass::Transient, "the service is unavailable"),
];

/// The error for an answer with `status` and, when the body has one, `code` and `message`.
/// A `404` without MAX's JSON body comes from something that is not the API (a wrong
/// `base_url`, a proxy) and is `connection`.
pub fn classify(status: StatusCode, code: Option<&str>, message: Option<&str>) -> SendError {
    let by_key = code.and_then(|c| table::lookup(ERRORS, c));
    let by_status = match (status.as_u16(), code) {
        (404, None) => None,
        (s, _) => table::lookup(ERRORS, &s.to_string()),
    };
    let class = match (by_key.or(by_status), status.as_u16(), code) {
        (Some(rule), _, _) => rule.class,
        (None, 404, None) => ErrorClass::Connection,
        (None, _, _) => http::status_class(status),
    };
    let key = code.map(str::to_owned).unwrap_or_else(|| format!("http_{}", status.as_u16()));
    let detail = match message {
        Some(m) => format!("{status}: {m}"),
        None => status.to_string(),
    };
    SendError::new(class, key, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_before_statuses() {
        let c = |s: u16, code: Option<&str>| classify(StatusCode::from_u16(s).expect("status"), code, None).class;
        assert_eq!(c(403, Some("chat.denied")), ErrorClass::Unreachable);
        assert_eq!(c(403, None), ErrorClass::Connection);
        assert_eq!(c(400, Some("attachment.not.ready")), ErrorClass::Transient);
        assert_eq!(c(400, Some("some.new.key")), ErrorClass::Rejected);
        assert_eq!(c(404, Some("chat.not.found")), ErrorClass::Unreachable);
        assert_eq!(c(403, Some("account.blocked")), ErrorClass::Connection);
        assert_eq!(c(404, None), ErrorClass::Connection);
        assert_eq!(c(500, None), ErrorClass::Transient);
        let e = classify(StatusCode::UNAUTHORIZED, Some("verify.token"), Some("Invalid access_token"));
        assert_eq!((e.class, e.code.as_str()), (ErrorClass::Connection, "verify.token"));
    }

    #[test]
    fn the_docs_show_every_rule() {
        table::assert_documented(include_str!("../docs.md"), ERRORS);
    }
}
