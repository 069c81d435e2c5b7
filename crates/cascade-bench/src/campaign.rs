//! Scenario `campaign-import`: a recipient list of 1,000,000 rows (CSV, in a scratch
//! directory) with 5 % invalid and 2 % duplicate phone numbers, validated streaming with
//! `cascade_campaigns::validate` (region `US`). Validation only: storing the recipients comes
//! with the campaign store.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use cascade_campaigns::{Format, ValidateOptions, validate};

use crate::durable::Scratch;
use crate::report;

const SCENARIO: &str = "campaign-import";

/// Invalid phone numbers, one of each kind in turn.
const INVALID: [&str; 8] =
    ["12", "n/a", "+999 123", "201-555-CALL", "+1 055 123 4567", "201+5550123", "---", "99999999999999999999"];

/// A valid US number, unique for each `i` below 80 million, written in one of four ways.
fn phone(i: usize) -> String {
    const AREAS: [u32; 10] = [201, 212, 305, 312, 415, 512, 617, 702, 808, 919];
    let area = AREAS[i % 10];
    let exchange = 200 + (i / 10 / 10_000) % 800;
    let line = (i / 10) % 10_000;
    match i % 4 {
        0 => format!("+1 {area}-{exchange}-{line:04}"),
        1 => format!("({area}) {exchange}-{line:04}"),
        2 => format!("{area}.{exchange}.{line:04}"),
        _ => format!("1{area}{exchange}{line:04}"),
    }
}

/// Writes `rows` recipients; returns the invalid and duplicate rows written.
fn generate(path: &Path, rows: usize) -> (usize, usize) {
    let file = std::fs::File::create(path).expect("create the CSV file");
    let mut out = BufWriter::with_capacity(1 << 20, file);
    writeln!(out, "phone,name,email,city").expect("write");
    let (mut invalid, mut duplicate) = (0, 0);
    const CITIES: [&str; 5] = ["Austin", "Boston", "\"Portland, OR\"", "Denver", ""];
    for i in 0..rows {
        let number = if i % 20 == 7 {
            invalid += 1;
            INVALID[(i / 20) % INVALID.len()].to_owned()
        } else if i % 50 == 13 && i > 1000 {
            duplicate += 1;
            // The number of row i - 999, which is neither invalid (i - 999 ≢ 7 mod 20) nor a
            // duplicate (i - 999 ≢ 13 mod 50).
            phone(i - 999)
        } else {
            phone(i)
        };
        let city = CITIES[i % CITIES.len()];
        writeln!(out, "{number},Recipient {i},r{i}@example.com,{city}").expect("write");
    }
    out.flush().expect("flush");
    (invalid, duplicate)
}

/// Peak resident memory of this process (VmHWM), in MB.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(f64::NAN);
    kb / 1024.0
}

/// Runs scenario `campaign-import` with `rows` rows (default 1,000,000).
pub fn run(rows: Option<usize>) {
    let rows = rows.unwrap_or(1_000_000);
    let scratch = Scratch::new();
    let path = scratch.0.join("recipients.csv");
    let (invalid, duplicate) = generate(&path, rows);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "  {rows} rows ({:.1} MB) written, {invalid} invalid and {duplicate} duplicate phones; validating (validation only: no store)",
        size as f64 / 1e6
    );
    let options = ValidateOptions {
        format: Some(Format::Csv),
        region: Some("US".parse().expect("region")),
        max_errors: usize::MAX,
        ..ValidateOptions::default()
    };
    let file = std::fs::File::open(&path).expect("open the CSV file");
    let start = Instant::now();
    let result = validate(file, &options).expect("validate");
    let elapsed = start.elapsed().as_secs_f64();
    report(SCENARIO, "rows_per_sec", (rows as f64 / elapsed).round());
    report(SCENARIO, "peak_rss_mb", (peak_rss_mb() * 10.0).round() / 10.0);
    report(SCENARIO, "valid", result.valid as f64);
    report(SCENARIO, "invalid", result.invalid as f64);
    report(SCENARIO, "duplicate", result.duplicate as f64);
    report(SCENARIO, "file_mb", (size as f64 / 1e5).round() / 10.0);
    if result.invalid != invalid as u64 || result.duplicate != duplicate as u64 {
        eprintln!(
            "  unexpected counts: {invalid} invalid and {duplicate} duplicate written; first errors: {:?}",
            &result.errors[..result.errors.len().min(5)]
        );
    }
}
