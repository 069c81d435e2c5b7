//! WhatsApp Cloud API error codes → error classes.
//!
//! Errors come as `{"error": {"code": N, "message", "error_data": {"details"}, ...}}` in the
//! send answer, and as `errors[]` on `failed` status webhooks. Meta asks integrations to branch
//! on `code`, not on the HTTP status (throttling comes with 400 as well as 429), so the table
//! is keyed by code; a code it does not know falls back to the HTTP status.

use cascade_channel_kit::{ErrorClass, ErrorRule, table};
use serde::Deserialize;

/// The table, from Meta's documented error codes.
pub const ERRORS: &[ErrorRule] = &[
    ErrorRule::new("0", ErrorClass::Connection, "authentication failed (token expired or invalidated)"),
    ErrorRule::new("1", ErrorClass::Transient, "invalid request or possible server error"),
    ErrorRule::new("2", ErrorClass::Transient, "temporary downtime or overload"),
    ErrorRule::new("3", ErrorClass::Connection, "the app lacks the capability or permission"),
    ErrorRule::new("4", ErrorClass::Transient, "the app hit its API call rate limit"),
    ErrorRule::new("10", ErrorClass::Connection, "permission not granted or removed"),
    ErrorRule::new("33", ErrorClass::Connection, "the business phone number was deleted"),
    ErrorRule::new("100", ErrorClass::Rejected, "invalid parameter (unknown field, value over a limit)"),
    ErrorRule::new("190", ErrorClass::Connection, "access token expired"),
    ErrorRule::new("200-299", ErrorClass::Connection, "API permission not granted or removed"),
    ErrorRule::new("368", ErrorClass::Connection, "the business account is restricted for a policy violation"),
    ErrorRule::new("80007", ErrorClass::Transient, "the business account hit its rate limit"),
    ErrorRule::new("130403", ErrorClass::Unreachable, "the business has blocked this user"),
    ErrorRule::new("130429", ErrorClass::Transient, "message throughput limit reached"),
    ErrorRule::new("130472", ErrorClass::Rejected, "the user's number is part of a marketing experiment"),
    ErrorRule::new("130497", ErrorClass::Connection, "the business may not message users in this country"),
    ErrorRule::new("131000", ErrorClass::Transient, "something went wrong at WhatsApp"),
    ErrorRule::new("131005", ErrorClass::Connection, "access denied (permission not granted or removed)"),
    ErrorRule::new("131008", ErrorClass::Rejected, "a required parameter is missing"),
    ErrorRule::new("131009", ErrorClass::Rejected, "a parameter value is invalid"),
    ErrorRule::new("131016", ErrorClass::Transient, "service temporarily unavailable"),
    ErrorRule::new("131021", ErrorClass::Unreachable, "the recipient is the sender's own number"),
    ErrorRule::new(
        "131026",
        ErrorClass::Unreachable,
        "undeliverable: not on WhatsApp, old client, or terms not accepted",
    ),
    ErrorRule::new(
        "131030",
        ErrorClass::Connection,
        "a test number may not write to this recipient (not in the allowed list)",
    ),
    ErrorRule::new("131031", ErrorClass::Connection, "the business account is locked"),
    ErrorRule::new("131037", ErrorClass::Connection, "the number has no approved display name"),
    ErrorRule::new("131042", ErrorClass::Connection, "business eligibility or payment problem"),
    ErrorRule::new("131045", ErrorClass::Connection, "the phone number is not registered (certificate)"),
    ErrorRule::new(
        "131047",
        ErrorClass::Rejected,
        "re-engagement: over 24 hours since the contact wrote; only a template may go",
    ),
    ErrorRule::new("131048", ErrorClass::Connection, "spam rate limit on this number: use another number for now"),
    ErrorRule::new(
        "131049",
        ErrorClass::Rejected,
        "not delivered to keep engagement healthy (per-user marketing limit)",
    ),
    ErrorRule::new("131050", ErrorClass::Unreachable, "the contact stopped marketing messages from this business"),
    ErrorRule::new("131051", ErrorClass::Rejected, "unsupported message type"),
    ErrorRule::new("131053", ErrorClass::Rejected, "the media could not be used (type or size)"),
    ErrorRule::new("131056", ErrorClass::Transient, "pair rate limit: too many messages to this contact just now"),
    ErrorRule::new("131057", ErrorClass::Transient, "the business account is in maintenance"),
    ErrorRule::new("132000", ErrorClass::Rejected, "template parameter count does not match"),
    ErrorRule::new("132001", ErrorClass::Rejected, "template does not exist in this language, or is not approved"),
    ErrorRule::new("132005", ErrorClass::Rejected, "template text too long once filled in"),
    ErrorRule::new("132007", ErrorClass::Rejected, "template content violates a policy"),
    ErrorRule::new("132012", ErrorClass::Rejected, "template parameter format does not match"),
    ErrorRule::new("132015", ErrorClass::Rejected, "template paused for low quality"),
    ErrorRule::new("132016", ErrorClass::Rejected, "template disabled"),
    ErrorRule::new("133010", ErrorClass::Connection, "the phone number is not registered"),
    ErrorRule::new("135000", ErrorClass::Rejected, "generic user error in the request"),
];

/// The `error_data` of a Graph error or of a `failed` status's error.
#[derive(Deserialize)]
pub(crate) struct ErrorData {
    #[serde(default)]
    details: Option<String>,
}

/// The detail of an error: its title, and Meta's `details` when there are any and they say
/// more than the title (Meta often repeats it: "Message undeliverable: Message undeliverable").
pub(crate) fn describe(title: String, data: Option<&ErrorData>) -> String {
    let details = data.and_then(|d| d.details.as_deref()).map(str::trim).filter(|d| !d.is_empty());
    match details {
        Some(d) if !d.trim_end_matches('.').eq_ignore_ascii_case(title.trim().trim_end_matches('.')) => {
            format!("{title}: {d}")
        }
        _ => title,
    }
}

#[cfg(test)]
mod describe_tests {
    use super::*;

    #[test]
    fn details_that_repeat_the_title_are_left_out() {
        let data = |d: &str| ErrorData { details: Some(d.to_owned()) };
        assert_eq!(
            describe("Message undeliverable".into(), Some(&data("Message Undeliverable."))),
            "Message undeliverable"
        );
        assert_eq!(
            describe("Rate limit hit".into(), Some(&data("Too many messages"))),
            "Rate limit hit: Too many messages"
        );
        assert_eq!(describe("Re-engagement message".into(), None), "Re-engagement message");
    }
}

/// The rule for a Graph error code.
pub fn rule_for(code: i64) -> Option<&'static ErrorRule> {
    if (200..=299).contains(&code) {
        return table::lookup(ERRORS, "200-299");
    }
    table::lookup(ERRORS, &code.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_classes() {
        let c = |code| rule_for(code).map(|r| r.class);
        assert_eq!(c(131026), Some(ErrorClass::Unreachable), "not a WhatsApp user");
        assert_eq!(c(130429), Some(ErrorClass::Transient), "throttling");
        assert_eq!(c(190), Some(ErrorClass::Connection), "expired token is ours, never the contact's");
        assert_eq!(c(250), Some(ErrorClass::Connection));
        assert_eq!(c(131047), Some(ErrorClass::Rejected));
        assert_eq!(c(999_999), None);
    }

    #[test]
    fn the_docs_show_every_rule() {
        cascade_channel_kit::table::assert_documented(include_str!("../docs.md"), ERRORS);
    }
}
