#![doc = include_str!("../docs.md")]
#![deny(missing_docs)]

mod client;
mod config;
pub mod error;

pub use client::{ADAPTER, Email};
pub use config::{DEFAULT_MAX_ATTACHMENT, EmailConfig, Security};
