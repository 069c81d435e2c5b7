#![doc = include_str!("../docs.md")]
#![deny(missing_docs)]

mod client;
mod config;
pub mod error;
pub mod webhook;

pub use client::{ADAPTER, DEFAULT_CHANNEL, MAX_CAPTION, MAX_TEXT, Telegram, UPLOAD_LIMITS, provider_message_id};
pub use config::{DEFAULT_BASE_URL, TelegramConfig};
