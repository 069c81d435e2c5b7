//! The service's HTTP answer → error classes.
//!
//! The generic channel has no provider codes: the status code of the service's answer decides,
//! so a service written in any language only has to pick the right status.

use cascade_channel_kit::{ErrorClass, ErrorRule, table};

/// The table: HTTP status → class.
pub const ERRORS: &[ErrorRule] = &[
    ErrorRule::new("400", ErrorClass::Rejected, "the message is refused as built"),
    ErrorRule::new("401", ErrorClass::Connection, "the service does not accept our credentials"),
    ErrorRule::new("403", ErrorClass::Connection, "the service forbids this sender"),
    ErrorRule::new("404", ErrorClass::Unreachable, "no such recipient on the service"),
    ErrorRule::new("408", ErrorClass::Transient, "the service timed out"),
    ErrorRule::new("409", ErrorClass::Rejected, "the service refuses it in its current state"),
    ErrorRule::new("410", ErrorClass::Unreachable, "the recipient is gone (unsubscribed, blocked)"),
    ErrorRule::new("413", ErrorClass::Rejected, "too large"),
    ErrorRule::new("422", ErrorClass::Rejected, "the message is refused as built"),
    ErrorRule::new("425", ErrorClass::Transient, "too early: retry"),
    ErrorRule::new("429", ErrorClass::Transient, "slow down (its `Retry-After` is honoured)"),
    ErrorRule::new("4xx", ErrorClass::Rejected, "any other client error"),
    ErrorRule::new("5xx", ErrorClass::Transient, "the service failed (its `Retry-After` is honoured)"),
    ErrorRule::new("3xx", ErrorClass::Connection, "a redirect: redirects are not followed, so `url` is out of date"),
    ErrorRule::new("1xx", ErrorClass::Transient, "an interim answer and no final one"),
];

/// The rule for an HTTP status that is not a success. A redirect is our misconfiguration, not
/// the message's fault: the signed send must not follow it elsewhere, so the `url` needs fixing.
pub fn rule_for(status: u16) -> &'static ErrorRule {
    let exact = table::lookup(ERRORS, &status.to_string());
    let range = match status {
        100..=199 => "1xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    exact.or_else(|| table::lookup(ERRORS, range)).expect("the table covers every range")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_a_class() {
        assert_eq!(rule_for(404).class, ErrorClass::Unreachable);
        assert_eq!(rule_for(418).class, ErrorClass::Rejected);
        assert_eq!(rule_for(503).class, ErrorClass::Transient);
        assert_eq!(rule_for(401).class, ErrorClass::Connection);
        // Not client errors: a redirect is our `url`, an interim answer is worth retrying.
        assert_eq!(rule_for(301).class, ErrorClass::Connection);
        assert_eq!(rule_for(308).class, ErrorClass::Connection);
        assert_eq!(rule_for(101).class, ErrorClass::Transient);
    }

    #[test]
    fn the_docs_show_every_rule() {
        cascade_channel_kit::table::assert_documented(include_str!("../docs.md"), ERRORS);
    }
}
