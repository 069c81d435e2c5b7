//! Viber's `status` codes → error classes.
//!
//! `send_message` answers HTTP 200 with `{"status": N, "status_message": "..."}`; any `status`
//! but 0 is an error, looked up here. A later `failed` callback (the message failed the
//! client's checks) is `rejected`.

use cascade_channel_kit::{ErrorClass, ErrorRule, table};

/// The table, from Viber's documented status codes.
pub const ERRORS: &[ErrorRule] = &[
    ErrorRule::new("1", ErrorClass::Connection, "invalidUrl: the account's webhook URL is not valid"),
    ErrorRule::new("2", ErrorClass::Connection, "invalidAuthToken"),
    ErrorRule::new("3", ErrorClass::Rejected, "badData: the request is malformed"),
    ErrorRule::new("4", ErrorClass::Rejected, "missingData: a mandatory field is missing"),
    ErrorRule::new("5", ErrorClass::Unreachable, "receiverNotRegistered: not a Viber user"),
    ErrorRule::new("6", ErrorClass::Unreachable, "receiverNotSubscribed: the contact is not subscribed to the bot"),
    ErrorRule::new("7", ErrorClass::Connection, "publicAccountBlocked"),
    ErrorRule::new("8", ErrorClass::Connection, "publicAccountNotFound"),
    ErrorRule::new("9", ErrorClass::Connection, "publicAccountSuspended"),
    ErrorRule::new("10", ErrorClass::Connection, "webhookNotSet: Viber needs a webhook before sends"),
    ErrorRule::new("11", ErrorClass::Unreachable, "receiverNoSuitableDevice: no device that supports bots"),
    ErrorRule::new(
        "12",
        ErrorClass::Transient,
        "tooManyRequests: rate control (100 per user per hour without a reply)",
    ),
    ErrorRule::new(
        "13",
        ErrorClass::Rejected,
        "apiVersionNotSupported: the contact's Viber is too old for this message",
    ),
    ErrorRule::new("14", ErrorClass::Rejected, "incompatibleWithVersion: min_api_version too low for this message"),
    ErrorRule::new("15", ErrorClass::Connection, "publicAccountNotAuthorized"),
    ErrorRule::new("16", ErrorClass::Rejected, "inchatReplyMessageNotAllowed"),
    ErrorRule::new("17", ErrorClass::Rejected, "publicAccountIsNotInline"),
    ErrorRule::new("18", ErrorClass::Connection, "noPublicChat"),
    ErrorRule::new("19", ErrorClass::Rejected, "cannotSendBroadcast"),
    ErrorRule::new("20", ErrorClass::Rejected, "broadcastNotAllowed"),
    ErrorRule::new("21", ErrorClass::Unreachable, "unsupportedCountry: not supported in the contact's country"),
    ErrorRule::new("22", ErrorClass::Rejected, "paymentUnsupported"),
    ErrorRule::new("23", ErrorClass::Connection, "freeMessagesExceeded: the bot's free monthly messages are used up"),
    ErrorRule::new("24", ErrorClass::Connection, "noBalance: the bot has no balance"),
    ErrorRule::new("other", ErrorClass::Transient, "general error"),
];

/// The rule for a `status` code (never 0).
pub fn rule_for(status: i64) -> &'static ErrorRule {
    table::lookup(ERRORS, &status.to_string())
        .or_else(|| table::lookup(ERRORS, "other"))
        .expect("the table has a rule for other codes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_classes() {
        assert_eq!(rule_for(6).class, ErrorClass::Unreachable);
        assert_eq!(rule_for(12).class, ErrorClass::Transient);
        assert_eq!(rule_for(2).class, ErrorClass::Connection);
        assert_eq!(rule_for(99).class, ErrorClass::Transient);
    }

    #[test]
    fn the_docs_show_every_rule() {
        cascade_channel_kit::table::assert_documented(include_str!("../docs.md"), ERRORS);
    }
}
