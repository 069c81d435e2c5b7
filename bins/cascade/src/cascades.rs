//! `send`, `status`, `list`, `cancel`: cascades on a server.

use clap::Args;

use crate::Global;
use crate::exit::Failure;
use crate::out::Out;

/// `cascade send` options.
#[derive(Debug, Args)]
pub struct SendArgs {}
/// `cascade status` options.
#[derive(Debug, Args)]
pub struct StatusArgs {}
/// `cascade list` options.
#[derive(Debug, Args)]
pub struct ListArgs {}
/// `cascade cancel` options.
#[derive(Debug, Args)]
pub struct CancelArgs {}

/// Starts a cascade.
pub async fn send(_g: &Global, _out: &Out, _a: SendArgs) -> Result<u8, Failure> {
    Err(Failure::invalid("not yet"))
}
/// Shows a cascade.
pub async fn status(_g: &Global, _out: &Out, _a: StatusArgs) -> Result<u8, Failure> {
    Err(Failure::invalid("not yet"))
}
/// Lists cascades.
pub async fn list(_g: &Global, _out: &Out, _a: ListArgs) -> Result<u8, Failure> {
    Err(Failure::invalid("not yet"))
}
/// Cancels a cascade.
pub async fn cancel(_g: &Global, _out: &Out, _a: CancelArgs) -> Result<u8, Failure> {
    Err(Failure::invalid("not yet"))
}
