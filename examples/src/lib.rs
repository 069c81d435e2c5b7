//! Runnable examples of cascade (see the `examples` in this package):
//!
//! - `embed`: embeds the engine in a program with two channels written in the example itself,
//!   and shows a fallover from the first to the second.
//!
//! Run with `cargo run -p cascade-examples --example embed`.
