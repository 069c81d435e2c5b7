//! `cascade webhook parse`: an adapter's own webhook intake over a saved payload.

use clap::Subcommand;

use crate::exit::Failure;
use crate::out::Out;

/// `cascade webhook ...`
#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Verify and parse a saved provider webhook with the adapter's own intake.
    Parse,
}

/// Runs a webhook command.
pub fn run(_out: &Out, _command: WebhookCommand) -> Result<u8, Failure> {
    Err(Failure::invalid("not yet"))
}
