//! A recipient list's report for people: the counts, the first errors with their lines, the
//! preview of the message and the variables some rows lack. `campaign validate` prints the
//! report it made; `campaign create` the one the server answered (the same JSON).

use console::Style;
use serde::Deserialize;

use crate::exit::Failure;
use crate::out::Out;

/// Errors listed for people.
pub(super) const SHOWN_ERRORS: usize = 10;

/// A list's report, as `cascade_campaigns::Report` writes it in JSON.
#[derive(Debug, Deserialize)]
pub(super) struct ReportView {
    pub(super) valid: u64,
    pub(super) invalid: u64,
    pub(super) duplicate: u64,
    #[serde(default)]
    errors: Vec<RowError>,
    #[serde(default)]
    preview: Option<Vec<Preview>>,
    #[serde(default)]
    missing_variables: Option<Vec<MissingVariable>>,
}

#[derive(Debug, Deserialize)]
struct RowError {
    line: u64,
    reason: String,
}

#[derive(Debug, Deserialize)]
struct Preview {
    line: u64,
    to: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MissingVariable {
    variable: String,
    rows: u64,
    first_line: u64,
}

impl ReportView {
    /// Reads a report from its JSON.
    pub(super) fn from_json(value: &serde_json::Value) -> Result<Self, Failure> {
        Self::deserialize(value).map_err(|e| Failure::io(format!("the list's report does not read as one: {e}")))
    }

    /// Rows left out: invalid and duplicate.
    pub(super) fn left_out(&self) -> u64 {
        self.invalid + self.duplicate
    }
}

/// `n` and the noun, singular or plural.
pub(super) fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Prints the report under `title` (the file's name). `region_given`: whether national numbers
/// could be read. `more`: where to see the errors not shown (`--json lists them all`).
pub(super) fn print_report(out: &Out, title: &str, report: &ReportView, region_given: bool, more: &str) {
    let rows = report.valid + report.invalid + report.duplicate;
    let (green, red, yellow) = (Style::new().green().bold(), Style::new().red().bold(), Style::new().yellow().bold());
    println!("{title}: {}", plural(rows, "recipient row", "recipient rows"));
    println!("  {:<10} {}", "valid", out.paint(report.valid, &green));
    println!("  {:<10} {}", "invalid", out.paint(report.invalid, if report.invalid > 0 { &red } else { &green }));
    println!(
        "  {:<10} {}",
        "duplicate",
        out.paint(report.duplicate, if report.duplicate > 0 { &yellow } else { &green })
    );
    if !region_given {
        println!("{}", out.dim("  (no --region: numbers without + or 00 and a country code are invalid)"));
    }
    let errors = report.left_out();
    if errors > 0 {
        println!();
        let listed = &report.errors[..report.errors.len().min(SHOWN_ERRORS)];
        let shown = listed.len() as u64;
        if shown < errors {
            println!("{}", out.bold(format!("Errors (the first {shown} of {errors}):")));
        } else {
            println!("{}", out.bold("Errors:"));
        }
        let width = listed.last().map_or(1, |e| e.line.to_string().len());
        for e in listed {
            println!("  line {:<width$}  {}", e.line, e.reason);
        }
        if shown < errors {
            println!("  … and {} more ({more})", errors - shown);
        }
    }
    if let Some(preview) = &report.preview {
        println!();
        if preview.is_empty() {
            println!("{}", out.bold("Preview: no valid recipient to render the message for."));
        } else {
            println!(
                "{}",
                out.bold(format!("Preview (the first {}):", plural(preview.len() as u64, "recipient", "recipients")))
            );
        }
        for p in preview {
            println!("  line {} → {}", p.line, p.to);
            match &p.text {
                Some(text) => {
                    for l in text.lines() {
                        println!("    {l}");
                    }
                }
                None => println!("    {}", out.paint(p.error.as_deref().unwrap_or("cannot render"), &red)),
            }
        }
    }
    if let Some(missing) = &report.missing_variables {
        println!();
        if missing.is_empty() {
            println!("Every valid row has every variable the message uses.");
        } else {
            println!("{}", out.bold("Variables some rows lack (those rows cannot be sent this message):"));
            for m in missing {
                println!(
                    "  {:<24} {} of {}, the first at line {}",
                    m.variable,
                    plural(m.rows, "row", "rows"),
                    report.valid,
                    m.first_line
                );
            }
            if let Some(first) = missing.first() {
                println!("  Fill the column, or give a default: {{{{{} | default(\"…\")}}}}", first.variable);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_validation_report_reads_back_from_its_json() {
        let options = cascade_campaigns::ValidateOptions {
            template: Some("Hi {{contact.name}}".into()),
            ..cascade_campaigns::ValidateOptions::default()
        };
        let report =
            cascade_campaigns::validate(&b"phone,name\n+12015550123,Ann\n12,Bob\n"[..], &options).expect("a list");
        let view = ReportView::from_json(&serde_json::to_value(&report).expect("json")).expect("a report");
        assert_eq!((view.valid, view.invalid, view.duplicate, view.left_out()), (1, 1, 0, 1));
        assert_eq!(view.errors[0].line, 3);
        let preview = view.preview.as_ref().expect("a preview");
        assert_eq!(preview[0].text.as_deref(), Some("Hi Ann"));
        assert_eq!(view.missing_variables.as_ref().map(Vec::len), Some(0));
    }
}
