//! SMTP failures → error classes.
//!
//! The adapter drives the SMTP dialogue one command at a time, so it knows at which stage a
//! server said no. The rule is chosen by the stage and the reply code's class; the error's
//! `code` is the server's reply code (`550`) or, without one, the stage (`connect`, `tls`).

use cascade_channel_kit::{ErrorClass, ErrorRule, table};
use cascade_engine::SendError;
use lettre::transport::smtp::Error as SmtpError;

/// The table. Keys are `<stage> <reply class>` (`RCPT 5xx`) or a failure without a reply.
pub const ERRORS: &[ErrorRule] = &[
    ErrorRule::new("connect", ErrorClass::Transient, "the server could not be reached or hung up"),
    ErrorRule::new("timeout", ErrorClass::Transient, "no answer within the configured timeout"),
    ErrorRule::new("tls", ErrorClass::Connection, "the TLS handshake failed (certificate, name, protocol)"),
    ErrorRule::new("starttls", ErrorClass::Connection, "`security = \"starttls\"` but the server does not offer it"),
    ErrorRule::new("auth", ErrorClass::Connection, "authentication failed or is required (530, 534, 535, 538)"),
    ErrorRule::new("protocol", ErrorClass::Transient, "an answer that is not SMTP, or the session broke"),
    ErrorRule::new("smtputf8", ErrorClass::Unreachable, "a non-ASCII address and a server without SMTPUTF8"),
    ErrorRule::new("any 4xx", ErrorClass::Transient, "temporary refusal (greylisting, mailbox busy, quota)"),
    ErrorRule::new("RCPT 5xx", ErrorClass::Unreachable, "no such mailbox or domain; the address will not work"),
    ErrorRule::new("MAIL 5xx", ErrorClass::Rejected, "the server will not take mail from this sender"),
    ErrorRule::new("DATA 5xx", ErrorClass::Rejected, "the server refused the message itself (content, size, policy)"),
    ErrorRule::new("invalid_address", ErrorClass::Unreachable, "the contact's email address is not an address"),
];

/// Where in the dialogue a reply came.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stage {
    /// Opening the connection, TLS, `EHLO`, `STARTTLS`.
    Connect,
    /// `AUTH`.
    Auth,
    /// `MAIL FROM`.
    Mail,
    /// `RCPT TO`.
    Rcpt,
    /// `DATA` and the message itself.
    Data,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Auth => "AUTH",
            Stage::Mail => "MAIL",
            Stage::Rcpt => "RCPT",
            Stage::Data => "DATA",
        }
    }
}

fn rule(key: &str) -> &'static ErrorRule {
    table::lookup(ERRORS, key).expect("every key used is in the table")
}

/// The rule for an SMTP reply code at a stage.
pub fn rule_for_reply(stage: Stage, code: u16) -> &'static ErrorRule {
    match (stage, code) {
        (_, 530 | 534 | 535 | 538) | (Stage::Auth, 500..=599) => rule("auth"),
        (_, 400..=499) => rule("any 4xx"),
        (Stage::Rcpt, _) => rule("RCPT 5xx"),
        (Stage::Mail, _) => rule("MAIL 5xx"),
        (Stage::Connect, _) => rule("protocol"),
        (Stage::Auth | Stage::Data, _) => rule("DATA 5xx"),
    }
}

/// Classifies what lettre reported at `stage`.
pub fn classify(stage: Stage, error: &SmtpError) -> SendError {
    let detail = format!("{}: {error}", stage.name());
    if let Some(code) = error.status() {
        let code = u16::from(code);
        return SendError::new(rule_for_reply(stage, code).class, code.to_string(), detail);
    }
    let key = if error.is_timeout() {
        "timeout"
    } else if is_tls(error) {
        "tls"
    } else if stage == Stage::Auth && error.is_client() {
        // No mechanism in common with the server.
        "auth"
    } else if stage == Stage::Connect {
        "connect"
    } else {
        "protocol"
    };
    SendError::new(rule(key).class, key, detail)
}

/// A failed TLS handshake: lettre reports it as a connection error whose cause is the TLS
/// library's, carried as an `InvalidData` I/O error.
fn is_tls(error: &SmtpError) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData) {
            return true;
        }
        source = e.source();
    }
    error.is_tls()
}

/// The error for a rule without a reply.
pub fn without_reply(key: &str, detail: impl Into<String>) -> SendError {
    SendError::new(rule(key).class, key, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_map_by_stage() {
        assert_eq!(rule_for_reply(Stage::Rcpt, 550).class, ErrorClass::Unreachable);
        assert_eq!(rule_for_reply(Stage::Rcpt, 451).class, ErrorClass::Transient);
        assert_eq!(rule_for_reply(Stage::Data, 554).class, ErrorClass::Rejected);
        assert_eq!(rule_for_reply(Stage::Mail, 553).class, ErrorClass::Rejected);
        assert_eq!(rule_for_reply(Stage::Mail, 530).class, ErrorClass::Connection);
        assert_eq!(rule_for_reply(Stage::Auth, 535).class, ErrorClass::Connection);
        assert_eq!(rule_for_reply(Stage::Auth, 454).class, ErrorClass::Transient);
    }

    #[test]
    fn the_docs_show_every_rule() {
        table::assert_documented(include_str!("../docs.md"), ERRORS);
    }
}
