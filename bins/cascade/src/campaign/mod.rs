//! `cascade campaign ...`: bulk campaigns, one message to a recipient list, each recipient
//! through a cascade of its own (docs/campaigns.md).
//!
//! - `validate` checks a recipient list offline ([`validate`]);
//! - `create` uploads a list and starts a campaign on the server, or checks it there with
//!   `--dry-run` ([`create`]);
//! - `status` (`--watch`: a live progress bar), `pause`, `resume`, `cancel` and `list` read
//!   and control the server's campaigns ([`progress`]);
//! - `export` streams the recipients that did not get the message as CSV ([`export`]).

mod create;
mod export;
mod progress;
mod report;
mod validate;

use clap::Subcommand;

use crate::Global;
use crate::exit::Failure;
use crate::out::Out;

/// `cascade campaign ...`
#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// Check a recipient list (CSV or JSON) without sending anything: counts of valid, invalid
    /// and duplicate rows, each error with its line, and a preview of the message.
    #[command(after_help = validate::VALIDATE_HELP)]
    Validate(validate::ValidateArgs),
    /// Upload a recipient list and start a campaign: one message to every recipient, each
    /// through its own cascade, at a rate, within a schedule.
    Create(Box<create::CreateArgs>),
    /// Show a campaign's progress (`--watch`: follow it live until it ends).
    Status(progress::StatusArgs),
    /// Pause a running campaign: nothing new starts; cascades already started go on.
    Pause(progress::PauseArgs),
    /// Resume a paused campaign.
    Resume(progress::ResumeArgs),
    /// Cancel a campaign: recipients not started never will be; running cascades are cancelled.
    Cancel(progress::CancelArgs),
    /// Export recipients as CSV (by default those that failed or expired), with the reasons.
    Export(export::ExportArgs),
    /// List campaigns, newest first.
    List(progress::ListArgs),
}

/// Runs a campaign command.
pub async fn run(g: &Global, out: &Out, command: CampaignCommand) -> Result<u8, Failure> {
    match command {
        CampaignCommand::Validate(a) => validate::run(out, a).await,
        CampaignCommand::Create(a) => create::run(g, out, *a).await,
        CampaignCommand::Status(a) => progress::status(g, out, a).await,
        CampaignCommand::Pause(a) => progress::control(g, out, &a.id, progress::Action::Pause).await,
        CampaignCommand::Resume(a) => progress::control(g, out, &a.id, progress::Action::Resume).await,
        CampaignCommand::Cancel(a) => progress::control(g, out, &a.id, progress::Action::Cancel).await,
        CampaignCommand::Export(a) => export::run(g, out, a).await,
        CampaignCommand::List(a) => progress::list(g, out, a).await,
    }
}
