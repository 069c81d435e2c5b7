//! Runnable examples of cascade (see the `examples` in this package):
//!
//! - `embed`: embeds the engine in a program with two channels written in the example itself,
//!   and shows a fallover from the first to the second.
//!
//! Run with `cargo run -p cascade-examples --example embed`.

/// The README's code, compiled as doc tests so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// The channel guide's code, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/writing-a-channel.md")]
pub struct WritingAChannelDoctests;

/// The sandbox guide's code, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/sandbox.md")]
pub struct SandboxDoctests;
