#![doc = include_str!("../docs.md")]
#![deny(missing_docs)]

mod client;
mod config;
pub mod error;
pub mod webhook;

pub use client::{ADAPTER, DEFAULT_CHANNEL, LIMITS, MAX_TEXT, Max, Recipient, UPDATE_TYPES};
pub use config::{DEFAULT_BASE_URL, MaxConfig};
