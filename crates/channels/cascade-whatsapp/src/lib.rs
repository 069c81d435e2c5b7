#![doc = include_str!("../docs.md")]
#![deny(missing_docs)]

mod client;
mod config;
pub mod error;
pub mod webhook;

pub use client::{ADAPTER, DEFAULT_CHANNEL, LIMITS, MAX_CAPTION, MAX_TEXT, SERVICE_WINDOW, WhatsApp, media_type_of};
pub use config::{DEFAULT_API_VERSION, DEFAULT_BASE_URL, WhatsAppConfig};
