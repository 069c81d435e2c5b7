#![doc = include_str!("../docs.md")]
#![deny(missing_docs)]

mod client;
mod config;
mod error;
mod mapping;
mod report;
mod request;
mod token;

pub use client::{Entity, Kommo, Verified};
pub use config::{KOMMO_DOMAINS, KommoAccount, KommoConfig};
pub use error::{AuthError, KommoError};
pub use mapping::{Mapped, normalize_phone};
pub use report::{ContinueReport, ContinueResult, MAX_BUTTONS, MAX_HANDLERS, MAX_SHOW_VALUE};
pub use request::{WidgetRequest, parse_widget_request};
pub use token::Claims;
