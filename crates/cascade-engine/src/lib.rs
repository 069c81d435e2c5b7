//! # cascade-engine
//!
//! The core of cascade, a cascading message delivery engine: one message to one contact goes
//! through an ordered chain of channels (e.g. WhatsApp → Telegram → SMS), one at a time, until a
//! channel reports the status the step waits for.
//!
//! This crate holds the model ([`Contact`], [`Message`], [`Policy`], [`Status`], [`Outcome`]…),
//! the [`Channel`] trait adapters implement, validation and planning ([`plan`]), the pure state
//! machine ([`machine`]), connection pools ([`pool`]), templates ([`template`]), link tracking
//! ([`links`]), the [`Store`] trait with an in-memory implementation, and the tokio runtime
//! ([`Engine`]). It depends on no other cascade crate.
//!
//! ```no_run
//! # async fn demo(whatsapp: impl cascade_engine::Channel, sms: impl cascade_engine::Channel) -> Result<(), Box<dyn std::error::Error>> {
//! use cascade_engine::*;
//!
//! let engine = Engine::builder()
//!     .connection(Connection::new("wa-main", whatsapp))
//!     .connection(Connection::new("sms-main", sms).price("0.0079".parse()?))
//!     .build()?;
//! let handle = engine
//!     .submit(CascadeRequest::new(
//!         Contact::with_phone("+15551234567").name("Ann"),
//!         Message::text("Hi {{contact.name}}, your order has shipped"),
//!         Policy::chain(["whatsapp", "sms"]),
//!     ))
//!     .await?;
//! println!("{:?}", handle.outcome().await?);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod channel;
pub mod clock;
pub mod error;
pub mod links;
pub mod machine;
pub mod model;
pub mod plan;
pub mod pool;
pub mod runtime;
pub mod store;
pub mod template;

#[cfg(any(test, feature = "mock"))]
pub use channel::MockChannel;
pub use channel::{
    Accepted, Capabilities, Channel, ChannelInfo, ChatInfo, InboundMessage, MediaLimits, SendRequest, StatusUpdate,
};
pub use error::{EngineError, SubmitError, ValidationError};
pub use links::LinkTracking;
pub use model::*;
pub use pool::{Connection, HealthPolicy, RateLimit};
pub use runtime::{
    BuildError, CascadeHandle, CascadeRequest, CascadeView, Engine, EngineBuilder, EngineConfig, EngineEvent,
    StatusMatch,
};
pub use store::{MemoryStore, Store, StoreError};
