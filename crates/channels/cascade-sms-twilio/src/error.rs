//! Twilio error codes → error classes.
//!
//! API errors come as `{"code": N, "message", "more_info", "status"}` (the code may be absent:
//! then the HTTP status decides); delivery failures come later as `ErrorCode` on a `failed` or
//! `undelivered` status callback. Both are looked up in one table.

use cascade_channel_kit::{ErrorClass, ErrorRule, table};

/// The table, from Twilio's documented error codes.
pub const ERRORS: &[ErrorRule] = &[
    ErrorRule::new("14107", ErrorClass::Transient, "send rate between the same two numbers exceeded"),
    ErrorRule::new("20003", ErrorClass::Connection, "authentication failed (SID, token or API key)"),
    ErrorRule::new("20404", ErrorClass::Connection, "not found: the account SID or `base_url` is wrong"),
    ErrorRule::new("20429", ErrorClass::Transient, "too many requests (never processed, safe to retry)"),
    ErrorRule::new("20500", ErrorClass::Transient, "Twilio internal error"),
    ErrorRule::new("20503", ErrorClass::Transient, "Twilio service unavailable"),
    ErrorRule::new("21211", ErrorClass::Unreachable, "invalid 'To' phone number"),
    ErrorRule::new("21408", ErrorClass::Connection, "sending to this region is not enabled on the account"),
    ErrorRule::new("21602", ErrorClass::Rejected, "message body is required"),
    ErrorRule::new("21606", ErrorClass::Connection, "'From' is not a message-capable number of this account"),
    ErrorRule::new("21608", ErrorClass::Connection, "trial account: 'To' is not a verified number"),
    ErrorRule::new("21610", ErrorClass::Unreachable, "the recipient unsubscribed (replied STOP)"),
    ErrorRule::new("21611", ErrorClass::Transient, "the sender's queue is full"),
    ErrorRule::new("21612", ErrorClass::Connection, "this 'To'/'From' combination cannot be routed"),
    ErrorRule::new("21614", ErrorClass::Unreachable, "'To' is not a valid mobile number"),
    ErrorRule::new("21617", ErrorClass::Rejected, "body over 1600 characters"),
    ErrorRule::new("21620", ErrorClass::Rejected, "invalid media URL"),
    ErrorRule::new("21623", ErrorClass::Rejected, "too many media files"),
    ErrorRule::new("21635", ErrorClass::Unreachable, "'To' is a landline"),
    ErrorRule::new("30001", ErrorClass::Transient, "queue overflow"),
    ErrorRule::new("30002", ErrorClass::Connection, "account suspended"),
    ErrorRule::new("30003", ErrorClass::Transient, "destination handset unreachable (off, no signal)"),
    ErrorRule::new("30004", ErrorClass::Unreachable, "message blocked by or for the recipient"),
    ErrorRule::new("30005", ErrorClass::Unreachable, "unknown destination handset"),
    ErrorRule::new("30006", ErrorClass::Unreachable, "landline or unreachable carrier"),
    ErrorRule::new("30007", ErrorClass::Rejected, "filtered by Twilio or the carrier (spam, policy)"),
    ErrorRule::new("30008", ErrorClass::Transient, "unknown carrier error"),
    ErrorRule::new("30010", ErrorClass::Rejected, "price over the message's maximum"),
    ErrorRule::new("30022", ErrorClass::Transient, "US A2P 10DLC throughput exceeded"),
    ErrorRule::new("30032", ErrorClass::Connection, "toll-free number not verified"),
    ErrorRule::new("30034", ErrorClass::Connection, "US A2P 10DLC: sender number not registered"),
    ErrorRule::new("30036", ErrorClass::Transient, "validity period expired in the queue"),
    ErrorRule::new("63034", ErrorClass::Rejected, "media over the size limit"),
];

/// The rule for a Twilio error code.
pub fn rule_for(code: i64) -> Option<&'static ErrorRule> {
    table::lookup(ERRORS, &code.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_classes() {
        let c = |code| rule_for(code).map(|r| r.class);
        assert_eq!(c(21211), Some(ErrorClass::Unreachable), "invalid number");
        assert_eq!(c(21610), Some(ErrorClass::Unreachable), "unsubscribed");
        assert_eq!(c(30005), Some(ErrorClass::Unreachable), "unknown destination");
        assert_eq!(c(30007), Some(ErrorClass::Rejected), "carrier filtering");
        assert_eq!(c(20003), Some(ErrorClass::Connection), "auth");
        assert_eq!(c(20429), Some(ErrorClass::Transient), "rate");
        assert_eq!(c(1), None);
    }

    #[test]
    fn the_docs_show_every_rule() {
        cascade_channel_kit::table::assert_documented(include_str!("../docs.md"), ERRORS);
    }
}
