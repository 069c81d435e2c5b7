//! `cascade demo`: the demo.

use clap::Args;

use crate::exit::Failure;
use crate::out::Out;

/// `cascade sandbox` options.
#[derive(Debug, Args)]
pub struct DemoArgs {}

/// Runs the demo.
pub async fn run(_out: &Out, _args: DemoArgs) -> Result<u8, Failure> {
    Err(Failure::invalid("not yet"))
}
