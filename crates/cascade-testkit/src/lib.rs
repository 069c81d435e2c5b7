//! # cascade-testkit
//!
//! Test doubles and shared test suites for every cascade crate:
//!
//! - [`StubChannel`]: a [`Channel`](cascade_engine::Channel) that answers from a script and records every send — the
//!   double engine tests use instead of a provider;
//! - [`caps`]: capability presets shaped like the real channels;
//! - [`ManualClock`]: time that moves only when told;
//! - [`strategies`]: proptest strategies for policies and event streams;
//! - [`mutate`]: arbitrary bytes and broken real payloads for robustness tests, and a deadline
//!   that turns a hang into a failure;
//! - [`CoreOnlyStore`]: a store with none of the trait's optional parts;
//! - [`store_conformance`]: one suite every [`Store`](cascade_engine::Store) implementation
//!   must pass.
//!
//! ```
//! use cascade_testkit::{StubChannel, caps};
//! let sms = StubChannel::new("sms", caps::sms());
//! sms.script("+15550000000", [Err(cascade_engine::SendError::unreachable("21211", "invalid number"))]);
//! assert_eq!(sms.sends().len(), 0);
//! ```
#![deny(missing_docs)]

mod clock;
mod conformance;
mod core_only;
pub mod mutate;
pub mod strategies;
mod stub;

pub use clock::ManualClock;
pub use conformance::{finished, sample_record, store_conformance, update};
pub use core_only::CoreOnlyStore;
pub use stub::{SentMessage, StubChannel};

/// Capability presets shaped like the real channels.
pub mod caps {
    use std::time::Duration;

    use cascade_engine::{AddressKind, Capabilities, MediaLimits, Status};

    const MB: u64 = 1024 * 1024;

    /// Like WhatsApp: phone or WhatsApp id, files, reports up to `read`, replies, 24 h window.
    pub fn whatsapp() -> Capabilities {
        Capabilities {
            address_kinds: vec![AddressKind::ChannelId, AddressKind::Phone],
            max_file_size: MediaLimits {
                image: Some(5 * MB),
                video: Some(16 * MB),
                audio: Some(16 * MB),
                document: Some(100 * MB),
            },
            highest_status: Status::Read,
            inbound: true,
            buttons: true,
            conversation_window: Some(Duration::from_secs(24 * 3600)),
        }
    }

    /// Like a Telegram bot: chat id only, files up to 50 MB, reports only `sent`, replies.
    pub fn telegram() -> Capabilities {
        Capabilities {
            address_kinds: vec![AddressKind::ChannelId],
            max_file_size: MediaLimits::all(50 * MB),
            highest_status: Status::Sent,
            inbound: true,
            buttons: true,
            conversation_window: None,
        }
    }

    /// Like SMS: phone only, text only, reports up to `delivered`.
    pub fn sms() -> Capabilities {
        Capabilities::text_only([AddressKind::ChannelId, AddressKind::Phone], Status::Delivered)
    }
}
