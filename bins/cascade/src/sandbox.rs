//! `cascade sandbox`: the provider sandbox on its own.

use clap::Args;

use crate::exit::Failure;
use crate::out::Out;

/// `cascade sandbox` options.
#[derive(Debug, Args)]
pub struct SandboxArgs {}

/// Runs the sandbox until Ctrl-C.
pub async fn run(_out: &Out, _args: SandboxArgs) -> Result<u8, Failure> {
    Err(Failure::invalid("not yet"))
}
