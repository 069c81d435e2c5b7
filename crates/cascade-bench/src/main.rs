//! # cascade-bench
//!
//! Runs benchmark scenarios and prints one JSON line per figure:
//! `{"scenario":"engine","metric":"cascades_per_sec","value":N}`.
//!
//! ```text
//! cargo run --release -p cascade-bench -- engine            # all figures of a scenario
//! cargo run --release -p cascade-bench -- engine --count 50000
//! ```
//!
//! Scenarios: `engine` (the runtime with the in-memory store and instant in-process channels).
//! Budgets and recorded results live in `docs/performance.md`.

mod alloc;
mod engine;

use std::process::ExitCode;

/// Prints one figure as a JSON line.
pub fn report(scenario: &str, metric: &str, value: f64) {
    let v = if value.fract() == 0.0 {
        serde_json::json!(value as i64)
    } else {
        serde_json::json!((value * 100.0).round() / 100.0)
    };
    println!("{}", serde_json::json!({"scenario": scenario, "metric": metric, "value": v}));
}

fn usage() -> ExitCode {
    eprintln!("usage: cascade-bench <scenario> [--count N]\nscenarios: engine");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(scenario) = args.first() else { return usage() };
    let count = match args.iter().position(|a| a == "--count") {
        Some(i) => match args.get(i + 1).and_then(|v| v.parse::<usize>().ok()) {
            Some(n) if n > 0 => Some(n),
            _ => {
                eprintln!("--count needs a positive whole number");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    match scenario.as_str() {
        "engine" => engine::run(count),
        other => {
            eprintln!("unknown scenario `{other}`");
            return usage();
        }
    }
    ExitCode::SUCCESS
}
