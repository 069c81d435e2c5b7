//! # cascade-channel-kit
//!
//! What the cascade channel adapters (`cascade-whatsapp`, `cascade-telegram`,
//! `cascade-sms-twilio`, …) share, and what you may use to write your own:
//!
//! - [`config`]: checks of connection settings, with errors that name the key.
//! - [`Secret`]: credentials that never show in logs or `Debug` output.
//! - [`http`]: the HTTP client every adapter uses, and the classification of transport
//!   failures and unknown HTTP answers into the engine's [`ErrorClass`]es.
//! - [`media`]: where an attachment comes from (a public URL or a local file) and how it is
//!   streamed into a multipart upload.
//! - [`webhook`]: the [`Intake`] trait (verify a provider webhook, parse it into statuses and
//!   inbound messages), the [`WebhookRequest`] it reads, and HMAC helpers that compare in
//!   constant time.
//! - [`table`]: provider error codes → error classes as a table that is both code and docs.
//! - [`send`]: sends in several parts, which must not send an accepted part twice.
//!
//! ```
//! use cascade_channel_kit::{ErrorRule, table};
//! use cascade_engine::ErrorClass;
//!
//! const RULES: &[ErrorRule] = &[
//!     ErrorRule::new("404", ErrorClass::Unreachable, "no such pigeon owner"),
//!     ErrorRule::new("429", ErrorClass::Transient, "slow down"),
//! ];
//! assert_eq!(table::lookup(RULES, "429").map(|r| r.class), Some(ErrorClass::Transient));
//! ```
#![deny(missing_docs)]

pub mod config;
pub mod http;
pub mod media;
mod secret;
pub mod send;
pub mod table;
pub mod webhook;

pub use cascade_engine::ErrorClass;
pub use config::ConfigError;
pub use secret::Secret;
pub use table::ErrorRule;
pub use webhook::{Intake, WebhookError, WebhookEvent, WebhookRequest};
