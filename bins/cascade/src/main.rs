//! `cascade`: the command line for people and scripts.
//!
//! It starts, watches, lists and cancels cascades on a server (`--server`, `--api-key`, or
//! `CASCADE_SERVER` / `CASCADE_API_KEY`); checks campaign recipient lists offline, and creates,
//! follows, pauses, resumes, cancels, exports and lists campaigns on a server; checks
//! configuration files, runs an adapter's webhook intake over a saved payload, runs the
//! provider sandbox on its own, and runs the demo: a
//! server on SQLite with the sandbox behind every channel and a handful of contacts whose
//! cascades show what the engine does.
//!
//! Human output by default (colours only on a terminal), `--json` for scripts. Exit codes are
//! in [`exit`] and `docs/cli.md`.

/// mimalloc instead of the system allocator ([`cascade_alloc`]): the engine allocates many
/// small short-lived values per cascade, and glibc's malloc spent a third of the engine's time
/// on them.
#[global_allocator]
static ALLOCATOR: cascade_alloc::Allocator = cascade_alloc::Allocator;

mod campaign;
mod cascades;
mod client;
mod configcheck;
mod demo;
mod exit;
mod out;
mod sandbox;
mod timeline;
mod webhook;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::exit::Failure;
use crate::out::Out;

const EXAMPLES: &str = "\
Examples:
  cascade demo                                   run the demo: server, sandbox, contacts, summary
  cascade demo --serve                           ... and keep the server running for curl and the CLI
  cascade send --to +15551234567 --text 'Hi {{contact.name}}' --name Ann --wait
  cascade send --to +15551234567 --telegram 4242 --chain whatsapp,telegram,sms --timeout 30s --text Hi
  cascade status 0191c1a4-7d2e-7c3a-9f00-3f1a2b3c4d5e --watch
  cascade list --state failed --since 2026-01-31T00:00:00Z --json
  cascade config check cascade.toml
  cascade campaign validate --file customers.csv --region US --json
  cascade campaign create --file customers.csv --region US --text 'Hi {{contact.name}}' --rate 50/s --watch
  cascade campaign create --file customers.csv --text Hi --rate 600/min --window 'mon-fri 09:00-21:00' --time-zone Europe/Berlin
  cascade campaign status 0191d2e4-5b6a-7c8d-9e0f-1a2b3c4d5e6f --watch
  cascade campaign export 0191d2e4-5b6a-7c8d-9e0f-1a2b3c4d5e6f --status failed,expired -o failed.csv
  cascade sandbox --listen 127.0.0.1:9090 --scenarios scenarios.toml
  cascade webhook parse --adapter whatsapp --secret APP_SECRET --header 'X-Hub-Signature-256: sha256=...' body.json

Exit codes: 0 ok; 1 the cascade did not deliver (--wait, --watch), the watched campaign was
cancelled, or the demo went wrong; 2 bad arguments or input; 3 bad webhook signature; 4 refused
by the server (auth, not found, conflict, rate limit); 5 server unreachable, server error or
local I/O error.";

/// Start and watch message cascades and campaigns, check configs, debug provider webhooks, run
/// the demo.
#[derive(Debug, Parser)]
#[command(name = "cascade", version, about, after_help = EXAMPLES)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The server's base URL.
    #[arg(long, global = true, env = "CASCADE_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// The API key (`Authorization: Bearer`).
    #[arg(long, global = true, env = "CASCADE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Print JSON for scripts instead of text for people.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a cascade: one message to one contact, tried channel after channel.
    Send(Box<cascades::SendArgs>),
    /// Show a cascade: state, outcome, attempts and timeline (`--watch`: follow it live).
    Status(cascades::StatusArgs),
    /// List cascades, newest first.
    List(cascades::ListArgs),
    /// Cancel a running cascade.
    Cancel(cascades::CancelArgs),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(configcheck::ConfigCommand),
    /// Debug a provider integration.
    #[command(subcommand)]
    Webhook(webhook::WebhookCommand),
    /// Run the provider sandbox on its own.
    Sandbox(sandbox::SandboxArgs),
    /// Run the demo: server, sandbox and contacts, with a live timeline and a summary.
    Demo(demo::DemoArgs),
    /// Bulk campaigns: check a recipient list; create, follow, pause, resume, cancel, export and
    /// list campaigns.
    #[command(subcommand)]
    Campaign(campaign::CampaignCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Out::new(cli.global.json);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return Failure::io(format!("cannot start the runtime: {e}")).report(&out),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Send(a) => cascades::send(&cli.global, &out, *a).await,
            Command::Status(a) => cascades::status(&cli.global, &out, a).await,
            Command::List(a) => cascades::list(&cli.global, &out, a).await,
            Command::Cancel(a) => cascades::cancel(&cli.global, &out, a).await,
            Command::Config(c) => configcheck::run(&out, c),
            Command::Webhook(c) => webhook::run(&out, c),
            Command::Sandbox(a) => sandbox::run(&out, a).await,
            Command::Demo(a) => demo::run(&out, a).await,
            Command::Campaign(c) => campaign::run(&cli.global, &out, c).await,
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => failure.report(&out),
    }
}
