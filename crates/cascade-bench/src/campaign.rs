//! Scenario `campaign-import`: a recipient list of 1,000,000 rows (CSV, in a scratch
//! directory) with 5 % invalid and 2 % duplicate phone numbers, validated streaming with
//! `cascade_campaigns::validate` (region `US`), once without a message template and once with
//! one whose `city` variable a fifth of the rows lack. Validation only: storing the recipients
//! comes with the campaign store.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use cascade_campaigns::validate::MissingVariable;
use cascade_campaigns::{Format, Report, ValidateOptions, validate};

use crate::durable::Scratch;
use crate::{proc_status_mb, report};

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

/// The message of the run with a template: `city` is empty in every fifth row; `plan` is in no
/// row but has a default.
const TEMPLATE: &str = "Hi {{contact.name}}, our {{contact.fields.city}} store opens on Monday. Your plan: {{contact.fields.plan | default(\"basic\")}}";

/// What the generated list holds, and so what its report must say.
#[derive(Default)]
struct Expected {
    invalid: u64,
    duplicate: u64,
    /// Valid rows without a city, and the first line of one.
    without_city: u64,
    first_without_city: u64,
}

/// Writes `rows` recipients; returns what their report must say.
fn generate(path: &Path, rows: usize) -> Expected {
    let file = std::fs::File::create(path).expect("create the CSV file");
    let mut out = BufWriter::with_capacity(1 << 20, file);
    writeln!(out, "phone,name,email,city").expect("write");
    let mut expected = Expected::default();
    const CITIES: [&str; 5] = ["Austin", "Boston", "\"Portland, OR\"", "Denver", ""];
    for i in 0..rows {
        let city = CITIES[i % CITIES.len()];
        let number = if i % 20 == 7 {
            expected.invalid += 1;
            INVALID[(i / 20) % INVALID.len()].to_owned()
        } else if i % 50 == 13 && i > 1000 {
            expected.duplicate += 1;
            // The number of row i - 999, which is neither invalid (i - 999 ≢ 7 mod 20) nor a
            // duplicate (i - 999 ≢ 13 mod 50).
            phone(i - 999)
        } else {
            if city.is_empty() {
                expected.without_city += 1;
                if expected.first_without_city == 0 {
                    // The header is line 1.
                    expected.first_without_city = i as u64 + 2;
                }
            }
            phone(i)
        };
        writeln!(out, "{number},Recipient {i},r{i}@example.com,{city}").expect("write");
    }
    out.flush().expect("flush");
    expected
}

/// As `cascade campaign validate --region US` checks a CSV file, with the message or without.
fn options(template: bool) -> ValidateOptions {
    ValidateOptions {
        format: Some(Format::Csv),
        region: Some("US".parse().expect("region")),
        template: template.then(|| TEMPLATE.into()),
        max_errors: usize::MAX,
        ..ValidateOptions::default()
    }
}

/// Validates the list at `path`; returns the report and the rows per second.
fn timed(path: &Path, rows: usize, options: &ValidateOptions) -> (Report, f64) {
    let file = std::fs::File::open(path).expect("open the CSV file");
    let start = Instant::now();
    let report = validate(file, options).expect("validate");
    (report, (rows as f64 / start.elapsed().as_secs_f64()).round())
}

/// What differs between a report and what the list holds, if anything.
fn check(report: &Report, rows: usize, expected: &Expected, template: bool) -> Result<(), String> {
    let counts = (report.valid, report.invalid, report.duplicate);
    let want = (rows as u64 - expected.invalid - expected.duplicate, expected.invalid, expected.duplicate);
    if counts != want {
        return Err(format!(
            "{} valid, {} invalid and {} duplicate rows reported, but the list has {}, {} and {}; the first errors: {:?}",
            counts.0,
            counts.1,
            counts.2,
            want.0,
            want.1,
            want.2,
            &report.errors[..report.errors.len().min(5)]
        ));
    }
    if template {
        let missing = report.missing_variables.as_deref().unwrap_or_default();
        let want: Vec<MissingVariable> = (expected.without_city > 0)
            .then(|| MissingVariable {
                variable: "contact.fields.city".into(),
                rows: expected.without_city,
                first_line: expected.first_without_city,
            })
            .into_iter()
            .collect();
        if missing != want {
            return Err(format!("missing variables {missing:?} reported, but the list lacks {want:?}"));
        }
        let previews = report.preview.as_ref().map_or(0, Vec::len) as u64;
        if previews != report.valid.min(3) {
            return Err(format!("{previews} previews, expected {}", report.valid.min(3)));
        }
    }
    Ok(())
}

/// Runs scenario `campaign-import` with `rows` rows (default 1,000,000). Fails, saying why,
/// when a report does not match what the list holds.
pub fn run(rows: Option<usize>) -> Result<(), String> {
    let rows = rows.unwrap_or(1_000_000);
    let scratch = Scratch::new();
    let path = scratch.0.join("recipients.csv");
    let expected = generate(&path, rows);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "  {rows} rows ({:.1} MB) written, {} invalid and {} duplicate phones; validating without and with a template (validation only: no store)",
        size as f64 / 1e6,
        expected.invalid,
        expected.duplicate
    );
    let (plain, rows_per_sec) = timed(&path, rows, &options(false));
    report(SCENARIO, "rows_per_sec", rows_per_sec);
    // The peak of the first run only: the second one's adds the heap the first one left to
    // the allocator.
    report(SCENARIO, "peak_rss_mb", (proc_status_mb("VmHWM") * 10.0).round() / 10.0);
    let (templated, rows_per_sec) = timed(&path, rows, &options(true));
    report(SCENARIO, "rows_per_sec_with_template", rows_per_sec);
    report(SCENARIO, "valid", plain.valid as f64);
    report(SCENARIO, "invalid", plain.invalid as f64);
    report(SCENARIO, "duplicate", plain.duplicate as f64);
    report(SCENARIO, "file_mb", (size as f64 / 1e5).round() / 10.0);
    check(&plain, rows, &expected, false)?;
    check(&templated, rows, &expected, true).map_err(|e| format!("with a template: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_checked_against_the_list() {
        let scratch = Scratch::new();
        let path = scratch.0.join("recipients.csv");
        let rows = 3_000;
        let expected = generate(&path, rows);
        assert_eq!((expected.invalid, expected.duplicate, expected.without_city), (150, 40, 600));
        let (plain, _) = timed(&path, rows, &options(false));
        check(&plain, rows, &expected, false).unwrap();
        let (templated, _) = timed(&path, rows, &options(true));
        check(&templated, rows, &expected, true).unwrap();

        let mut wrong = plain.clone();
        (wrong.valid, wrong.invalid) = (wrong.valid + 1, wrong.invalid - 1);
        let e = check(&wrong, rows, &expected, false).unwrap_err();
        assert!(
            e.starts_with("2811 valid, 149 invalid and 40 duplicate rows reported, but the list has 2810, 150 and 40"),
            "{e}"
        );
        let mut wrong = templated;
        wrong.missing_variables.as_mut().unwrap()[0].rows -= 1;
        let e = check(&wrong, rows, &expected, true).unwrap_err();
        assert!(e.starts_with("missing variables"), "{e}");
    }
}
