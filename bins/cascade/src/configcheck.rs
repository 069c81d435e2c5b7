//! `cascade config check FILE`: every problem in a configuration, each with its key and file.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;

use crate::exit::{self, Failure};
use crate::out::Out;

/// `cascade config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file (with its `CASCADE_*` environment overrides): print every
    /// problem with its key and file; exit 0 when valid, 2 when not.
    #[command(
        after_help = "Examples:\n  cascade config check cascade.toml\n  CASCADE_SERVER__SECRET=... cascade config check cascade.toml --json"
    )]
    Check {
        /// The configuration file.
        file: PathBuf,
    },
}

/// Runs a config command.
pub fn run(out: &Out, command: ConfigCommand) -> Result<u8, Failure> {
    let ConfigCommand::Check { file } = command;
    if !file.is_file() {
        return Err(Failure::invalid(format!("{}: no such file", file.display())));
    }
    match cascade_config::load(Some(&file)) {
        Ok(config) => {
            if out.json {
                out.json_line(&json!({
                    "file": file.display().to_string(),
                    "valid": true,
                    "problems": [],
                    "connections": config.connections.len(),
                    "policies": config.policies.len(),
                    "api_keys": config.api_keys.len(),
                }));
            } else {
                println!("{}: {} ({})", file.display(), out.state("valid"), config.summary());
            }
            Ok(exit::OK)
        }
        Err(problems) => {
            if out.json {
                let list: Vec<_> = problems
                    .0
                    .iter()
                    .map(|p| json!({"key": p.key, "source": p.source, "message": p.message}))
                    .collect();
                out.json_line(&json!({"file": file.display().to_string(), "valid": false, "problems": list}));
            } else {
                println!("{}: {} problem(s)", file.display(), problems.0.len());
                for p in &problems.0 {
                    println!("  {p}");
                }
            }
            Ok(exit::INVALID)
        }
    }
}
