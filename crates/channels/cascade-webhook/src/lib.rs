#![doc = include_str!("../docs.md")]
#![deny(missing_docs)]

mod client;
mod config;
pub mod error;
pub mod webhook;

pub use client::{ADAPTER_PREFIX, Outgoing, Webhook, default_message_id};
pub use config::WebhookConfig;
