//! # cascade-bench
//!
//! Runs benchmark scenarios and prints one JSON line per figure:
//! `{"scenario":"engine","metric":"cascades_per_sec","value":N}`.
//!
//! ```text
//! cargo run --release -p cascade-bench -- engine            # all figures of a scenario
//! cargo run --release -p cascade-bench -- engine --count 50000
//! cargo run --release -p cascade-bench -- sqlite --waiting 1000000
//! cargo run --release -p cascade-bench -- postgres
//! cargo run --release -p cascade-bench -- http --count 20000 --clients 64
//! cargo run --release -p cascade-bench -- webhook --count 2000 --clients 4
//! cargo run --release -p cascade-bench -- load --count 150000 --seconds 60 --clients 32
//! cargo run --release -p cascade-bench -- scaling --count 100000 --waiting 1000000
//! cargo run --release -p cascade-bench -- campaign-import
//! cargo run --release -p cascade-bench -- campaign-rate --count 1000 --seconds 30
//! ```
//!
//! Scenarios: `engine` (the runtime with the in-memory store and instant in-process channels),
//! `sqlite` and `postgres` (the same cascades on a durable store; `sqlite` also measures the
//! memory of a process with `--waiting N` cascades waiting, default 1,000,000, 0 to skip).
//! `postgres` uses `CASCADE_BENCH_DATABASE_URL` (default: the local server's `test` database).
//! `http` and `webhook` run a real cascade-http server on a loopback port over a SQLite file,
//! with HTTP clients in the same process: `http` measures `POST /v1/cascades` throughput and
//! latency, `webhook` the time from a WhatsApp `failed` status webhook to the next channel's
//! send (`--clients N`: concurrent clients).
//! `load` is a bounded load test against the same server: `--clients N` clients (default 32)
//! run a fixed mix (40 % starts, 40 % signed WhatsApp and Twilio status webhooks for accepted
//! sends, 15 % reads of one cascade, 5 % lists) until `--count N` operations (default 150,000)
//! or `--seconds N` (default 60), whichever comes first, and it reports per kind of operation
//! throughput and p50/p99/max latency, the resident memory and heap every second, and the
//! cascades finished against those started.
//! `scaling` measures how throughput and memory grow with the cascades waiting in the store
//! (`--waiting N` / 100, / 10 and N, default 1,000,000), the connections per channel (1, 10,
//! 100) and the steps per policy (1, 3, 6), printing one JSON line per row with the varied
//! quantity as a key.
//! `campaign-import` validates a generated CSV recipient list of `--count N` rows (default
//! 1,000,000; 5 % invalid and 2 % duplicate phones), without and with a message template, then
//! validates and stores it in a SQLite file through `Campaigns::create` (in a child process,
//! `campaign-import-stored`, so its peak memory is its own), and reports rows per second and
//! the peak resident memory of each; it fails (exit code 1) when a report's counts differ from
//! what the list holds or the store does not hold every valid row.
//! `campaign-rate` runs a campaign of `--count N` per second (default 1,000) for `--seconds N`
//! (default 30) through the real Twilio adapter into the provider sandbox on a loopback port,
//! with the runner and engine in this process over SQLite, and counts per wall-clock second
//! the messages the sandbox received; it fails when a recipient got two messages or fewer
//! recipients got one than were started.
//! Budgets and recorded results live in `docs/performance.md`.

mod alloc;
mod campaign;
mod cpu;
mod durable;
mod engine;
mod http;
mod load;
mod rate;
mod scaling;
mod wire;

use std::process::ExitCode;

/// Prints one figure as a JSON line.
pub fn report(scenario: &str, metric: &str, value: f64) {
    report_with(scenario, metric, &[], value);
}

/// Prints one figure as a JSON line with more keys that say what it was measured at, e.g.
/// `{"scenario":"load","metric":"rss_mb","t":3,"value":81.2}` or a row of a table
/// (`"waiting":100000`). Whole numbers are printed without a fraction, others with two
/// decimals.
pub fn report_with(scenario: &str, metric: &str, at: &[(&str, f64)], value: f64) {
    let mut line = serde_json::Map::new();
    line.insert("scenario".into(), scenario.into());
    line.insert("metric".into(), metric.into());
    for (key, v) in at {
        line.insert((*key).into(), number(*v));
    }
    line.insert("value".into(), number(value));
    println!("{}", serde_json::Value::Object(line));
}

/// `v` to one decimal, for figures in MB and per-second rates.
pub fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn number(value: f64) -> serde_json::Value {
    if value.fract() == 0.0 {
        serde_json::json!(value as i64)
    } else {
        serde_json::json!((value * 100.0).round() / 100.0)
    }
}

/// A memory figure of this process from `/proc/self/status` (`VmRSS`: resident now, `VmHWM`:
/// peak resident), in MB; NaN where there is none.
pub fn proc_status_mb(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(f64::NAN);
    kb / 1024.0
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: cascade-bench <scenario> [--count N] [--waiting N] [--clients N] [--seconds N]\nscenarios: engine, sqlite, postgres, http, webhook, load, scaling, campaign-import, campaign-rate"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(scenario) = args.first() else { return usage() };
    let number = |flag: &str| -> Result<Option<usize>, ExitCode> {
        match args.iter().position(|a| a == flag) {
            Some(i) => match args.get(i + 1).and_then(|v| v.parse::<usize>().ok()) {
                Some(n) => Ok(Some(n)),
                None => {
                    eprintln!("{flag} needs a whole number");
                    Err(ExitCode::from(2))
                }
            },
            None => Ok(None),
        }
    };
    let (count, waiting, clients, seconds) =
        match (number("--count"), number("--waiting"), number("--clients"), number("--seconds")) {
            (Ok(c), Ok(w), Ok(k), Ok(s)) => (c.filter(|n| *n > 0), w, k.filter(|n| *n > 0), s.filter(|n| *n > 0)),
            (Err(code), ..) | (_, Err(code), ..) | (_, _, Err(code), _) | (.., Err(code)) => return code,
        };
    match scenario.as_str() {
        "engine" => engine::run(count),
        "sqlite" => durable::sqlite(count, waiting.unwrap_or(1_000_000)),
        "postgres" => durable::postgres(count),
        "http" => http::http(count, clients),
        "webhook" => http::webhook(count, clients),
        "load" => load::run(count, clients, seconds),
        "scaling" => scaling::run(count, waiting.unwrap_or(1_000_000)),
        "campaign-import" => {
            if let Err(e) = campaign::run(count) {
                eprintln!("campaign-import failed: {e}");
                return ExitCode::FAILURE;
            }
        }
        "campaign-rate" => {
            if let Err(e) = rate::run(count, seconds) {
                eprintln!("campaign-rate failed: {e}");
                return ExitCode::FAILURE;
            }
        }
        campaign::STORED => {
            if let Err(e) = campaign::stored(args.get(1), args.get(2), count) {
                eprintln!("campaign-import (stored) failed: {e}");
                return ExitCode::FAILURE;
            }
        }
        other => {
            eprintln!("unknown scenario `{other}`");
            return usage();
        }
    }
    ExitCode::SUCCESS
}
