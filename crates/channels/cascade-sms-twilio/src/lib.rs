#![doc = include_str!("../docs.md")]
#![deny(missing_docs)]

mod client;
mod config;
pub mod error;
pub mod webhook;

pub use client::{ADAPTER, DEFAULT_CHANNEL, MAX_BODY, MMS_LIMITS, Twilio};
pub use config::{DEFAULT_BASE_URL, TwilioConfig};
