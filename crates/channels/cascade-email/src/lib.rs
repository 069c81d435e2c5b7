#![doc = include_str!("../docs.md")]
#![deny(missing_docs)]

mod client;
mod config;
pub mod error;

pub use client::{ADAPTER, DEFAULT_CHANNEL, Email};
pub use config::{DEFAULT_MAX_ATTACHMENT, EmailConfig, Security};
