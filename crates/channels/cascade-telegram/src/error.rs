//! Telegram's errors → error classes.
//!
//! The Bot API answers `{"ok": false, "error_code": N, "description": "..."}`, with
//! `parameters.retry_after` on flood control. It has no error catalogue: the rules below match
//! `error_code` and then a fragment of `description`, from the most specific to the plainest;
//! the table is shown in the crate docs.

use std::time::Duration;

use cascade_channel_kit::{ErrorClass, ErrorRule, http};
use cascade_engine::SendError;
use reqwest::StatusCode;

/// The rules: `"<error_code> <description fragment>"`, or `"<error_code>"` for the rest of that
/// code. The first match wins.
pub const ERRORS: &[ErrorRule] = &[
    ErrorRule::new("400 chat not found", ErrorClass::Unreachable, "unknown chat id, or the bot has no access to it"),
    ErrorRule::new(
        "400 group chat was migrated",
        ErrorClass::Unreachable,
        "the group became a supergroup with a new id (the detail names it)",
    ),
    ErrorRule::new("400 message is too long", ErrorClass::Rejected, "text over 4096 characters"),
    ErrorRule::new("400 message text is empty", ErrorClass::Rejected, "nothing to send"),
    ErrorRule::new("400 can't parse entities", ErrorClass::Rejected, "the text is not valid for `parse_mode`"),
    ErrorRule::new("400 wrong file identifier", ErrorClass::Rejected, "Telegram cannot use the file URL"),
    ErrorRule::new("400 failed to get http url content", ErrorClass::Rejected, "Telegram could not fetch the file URL"),
    ErrorRule::new("400 file is too big", ErrorClass::Rejected, "the file is over Telegram's limit"),
    ErrorRule::new("400", ErrorClass::Rejected, "any other bad request: the message as built is refused"),
    ErrorRule::new("401", ErrorClass::Connection, "the bot token is wrong or revoked"),
    ErrorRule::new("403 bot was blocked by the user", ErrorClass::Unreachable, "the contact blocked the bot"),
    ErrorRule::new("403 user is deactivated", ErrorClass::Unreachable, "the contact's account is deleted"),
    ErrorRule::new("403 bot can't initiate conversation", ErrorClass::Unreachable, "the contact never started the bot"),
    ErrorRule::new("403 bot was kicked", ErrorClass::Unreachable, "the bot was removed from the group or channel"),
    ErrorRule::new("403", ErrorClass::Unreachable, "any other refusal to write to this chat"),
    ErrorRule::new("404", ErrorClass::Connection, "no such bot or method: the token or `base_url` is wrong"),
    ErrorRule::new("409", ErrorClass::Connection, "the bot is in use elsewhere in a conflicting way"),
    ErrorRule::new("413", ErrorClass::Rejected, "the upload is too large"),
    ErrorRule::new("429", ErrorClass::Transient, "flood control: retried after `parameters.retry_after`"),
    ErrorRule::new("5xx", ErrorClass::Transient, "Telegram-side failure (the body may not even be JSON)"),
];

/// The rule for an error answer.
pub fn rule_for(error_code: i64, description: &str) -> Option<&'static ErrorRule> {
    let code = error_code.to_string();
    let description = description.to_ascii_lowercase();
    ERRORS.iter().find(|r| match r.code.split_once(' ') {
        Some((c, fragment)) => c == code && description.contains(fragment),
        None => r.code == code || (r.code == "5xx" && (500..600).contains(&error_code)),
    })
}

/// Classifies an error answer.
pub fn classify(status: StatusCode, error_code: Option<i64>, description: &str, retry_after: Option<u64>) -> SendError {
    let code = error_code.unwrap_or(i64::from(status.as_u16()));
    let class = rule_for(code, description).map_or_else(|| http::status_class(status), |r| r.class);
    let mut e = SendError::new(class, code.to_string(), description.to_owned());
    if let Some(secs) = retry_after {
        e = e.with_retry_after(Duration::from_secs(secs));
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specific_rules_win_over_plain_codes() {
        let c = |code, d: &str| rule_for(code, d).map(|r| r.class);
        assert_eq!(c(403, "Forbidden: bot was blocked by the user"), Some(ErrorClass::Unreachable));
        assert_eq!(c(400, "Bad Request: chat not found"), Some(ErrorClass::Unreachable));
        assert_eq!(c(400, "Bad Request: can't parse entities: unclosed tag"), Some(ErrorClass::Rejected));
        assert_eq!(c(502, "Bad Gateway"), Some(ErrorClass::Transient));
        assert_eq!(c(401, "Unauthorized"), Some(ErrorClass::Connection));
        assert_eq!(c(418, "I'm a teapot"), None);
    }

    #[test]
    fn the_docs_show_every_rule() {
        cascade_channel_kit::table::assert_documented(include_str!("../docs.md"), ERRORS);
    }
}
