//! `cascade campaign validate`: check a recipient list offline, before a campaign sends to it.
//!
//! The list (CSV with a header row, or a JSON array of objects; docs/campaigns.md) is read
//! streamed: phone numbers are normalized to E.164 (`--region` for numbers without a country
//! code), and every row comes out valid, invalid (with a reason) or a duplicate of an earlier
//! line. With `--text`, the message is rendered for the first recipients and the template
//! variables some rows lack are named.
//!
//! `--json` prints one object: `{"valid", "invalid", "duplicate", "errors": [{"line",
//! "reason"}]}`, plus `"preview"` and `"missing_variables"` with `--text`.
//!
//! Exit codes: 0 the list was read (even with invalid rows), 2 bad arguments or a file that
//! is not a recipient list, 5 the file cannot be read.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use cascade_campaigns::recipients::ImportError;
use cascade_campaigns::{Format, Region, ValidateError, ValidateOptions, validate};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::report::{ReportView, SHOWN_ERRORS, plural, print_report};
use crate::exit::{self, Failure};
use crate::out::Out;

pub(super) const VALIDATE_HELP: &str = "\
The list: CSV with a header row (`,` `;` or tab separated) or a JSON array of objects.
Columns: phone (phone_number, mobile, ...), email (e-mail, ...), name, telegram, viber, max,
whatsapp, address.<channel>; any other column is a custom field, {{contact.fields.<column>}}.
Details: docs/campaigns.md.

Exit codes: 0 the list was read, even with invalid rows; 2 bad arguments, or a file that is not
a recipient list (not CSV or JSON, no phone/email/address column); 5 the file cannot be read.

Examples:
  cascade campaign validate --file customers.csv --region US
  cascade campaign validate --file customers.csv --region GB --text 'Hi {{contact.name}}!' --preview 5
  cascade campaign validate --file list.json --json | jq '.errors[] | select(.reason | startswith(\"phone\"))'";

/// The arguments of `cascade campaign validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The recipient list: `.json` is read as JSON, `.csv`/`.tsv`/`.txt` as CSV; other names
    /// by their first character (`[` is JSON).
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
    /// The country of phone numbers written without `+` or `00`: an ISO code such as US, GB, DE.
    #[arg(long, value_name = "CODE")]
    pub region: Option<String>,
    /// A message template (`Hi {{contact.name}}`): render it for the first recipients and
    /// name the variables some rows lack.
    #[arg(long, value_name = "TEMPLATE")]
    pub text: Option<String>,
    /// How many recipients to render `--text` for.
    #[arg(long, value_name = "N", requires = "text")]
    pub preview: Option<usize>,
}

/// Files from this size on get a progress bar (on a terminal).
pub(super) const PROGRESS_FROM: u64 = 1 << 20;

/// Checks the list, off the async runtime (it reads the file synchronously).
pub(super) async fn run(out: &Out, args: ValidateArgs) -> Result<u8, Failure> {
    let out = *out;
    tokio::task::spawn_blocking(move || validate_file(&out, args))
        .await
        .map_err(|e| Failure::io(format!("the check stopped: {e}")))?
}

fn validate_file(out: &Out, args: ValidateArgs) -> Result<u8, Failure> {
    let region = match &args.region {
        Some(code) => Some(code.parse::<Region>().map_err(|e| Failure::invalid(format!("--region: {e}")))?),
        None => None,
    };
    let path = &args.file;
    if !path.exists() {
        return Err(Failure::invalid(format!("{}: no such file", path.display())));
    }
    if !path.is_file() {
        return Err(Failure::invalid(format!("{}: not a file", path.display())));
    }
    let file =
        std::fs::File::open(path).map_err(|e| Failure::io(format!("{}: cannot open it: {e}", path.display())))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let options = ValidateOptions {
        format: Format::from_path(path),
        region,
        template: args.text.clone(),
        preview: args.preview.unwrap_or(3),
        max_errors: if out.json { usize::MAX } else { SHOWN_ERRORS },
        ..ValidateOptions::default()
    };
    let bar = progress_bar(out, size);
    let result = validate(bar.wrap_read(file), &options);
    bar.finish_and_clear();
    let report = result.map_err(|e| failure(path, e))?;
    if out.json {
        out.json_line(&serde_json::to_value(&report).unwrap_or_default());
    } else {
        let view = ReportView::from_json(&serde_json::to_value(&report).unwrap_or_default())?;
        print_report(out, &path.display().to_string(), &view, region.is_some(), "--json lists them all");
        println!();
        if view.left_out() == 0 {
            println!("The list is ready: every row is a recipient.");
        } else {
            println!(
                "The list was read: {} will be left out (exit code 0); fix them in the file to include them.",
                plural(view.left_out(), "row", "rows")
            );
        }
    }
    Ok(exit::OK)
}

fn progress_bar(out: &Out, size: u64) -> ProgressBar {
    if out.json || size < PROGRESS_FROM || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} checking {bytes}/{total_bytes} [{bar:30}] {percent}% {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

fn failure(path: &Path, e: ValidateError) -> Failure {
    match e {
        ValidateError::Import(ImportError::Io(io)) => Failure::io(format!("{}: cannot read it: {io}", path.display())),
        ValidateError::Import(format) => {
            Failure::invalid(format!("{}: not a recipient list: {format}", path.display()))
        }
        ValidateError::Template(t) => Failure::invalid(format!("--text: {t}")),
        other => Failure::invalid(format!("{}: {other}", path.display())),
    }
}
