//! Exit codes, and the error every command returns.
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | done (the cascade delivered, with `--wait` or `--watch`; the campaign finished, with `campaign status --watch`) |
//! | 1 | the cascade ended without delivery (`--wait`, `--watch`); a watched campaign was cancelled; a demo contact did not end as its scenario says |
//! | 2 | bad arguments or input: a usage error, a config with problems, a payload the adapter cannot parse, a request the server found invalid (400, 413, 415, 422) |
//! | 3 | `webhook parse`: the signature is missing or does not match |
//! | 4 | refused by the server: no or wrong key (401, 403), not found (404), conflict (409), rate limited (429) |
//! | 5 | the server could not be reached or failed (5xx), or a local file could not be read or written |

use std::process::ExitCode;

use crate::out::Out;

/// Success.
pub const OK: u8 = 0;
/// The cascade ended without delivery, or the watched campaign was cancelled.
pub const UNDELIVERED: u8 = 1;
/// Bad arguments or input.
pub const INVALID: u8 = 2;
/// A webhook signature is missing or wrong.
pub const SIGNATURE: u8 = 3;
/// The server refused the request.
pub const REFUSED: u8 = 4;
/// The server is unreachable or failed, or local I/O failed.
pub const UNAVAILABLE: u8 = 5;

/// Why a command stopped: its exit code and a message for stderr (and, with `--json`, an
/// `{"error": ...}` object on stdout).
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: u8,
    /// What went wrong, for a person.
    pub message: String,
    /// Details for `--json` (the server's problem document, the config problems).
    pub detail: Option<serde_json::Value>,
}

impl Failure {
    /// A failure with `code`.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), detail: None }
    }

    /// Bad arguments or input (exit 2).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(INVALID, message)
    }

    /// Local I/O or an unreachable server (exit 5).
    pub fn io(message: impl Into<String>) -> Self {
        Self::new(UNAVAILABLE, message)
    }

    /// Adds details for `--json`.
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }

    /// Prints it and gives the process's exit code.
    pub fn report(self, out: &Out) -> ExitCode {
        if out.json {
            let mut v = serde_json::json!({"error": self.message, "exit_code": self.code});
            if let Some(d) = self.detail {
                v["detail"] = d;
            }
            println!("{v}");
        }
        eprintln!("cascade: {}", self.message);
        ExitCode::from(self.code)
    }
}
