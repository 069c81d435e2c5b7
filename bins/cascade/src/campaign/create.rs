//! `cascade campaign create`: upload a recipient list and start a campaign on the server, or
//! check it there (`--dry-run`); `--watch` then follows it like `campaign status --watch`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use cascade_campaigns::{Rate, Region, Window};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Map, Value, json};

use super::progress;
use super::report::{ReportView, plural, print_report};
use super::validate::PROGRESS_FROM;
use crate::Global;
use crate::cascades::{PolicyArgs, client, metadata, variables};
use crate::exit::{self, Failure};
use crate::out::Out;

/// `cascade campaign create` options.
#[derive(Debug, Args)]
#[command(after_help = "\
The list is uploaded, then checked and stored by the server: the answer is its report (valid,
invalid and duplicate rows, errors by line, a preview of the message, variables some rows lack)
and the new campaign, running at once (or `scheduled` until --start-at). Invalid and duplicate
rows are left out.

Schedule: nothing starts before --start-at; what has not started by --end-at ends `expired`;
--window limits the days and hours, on the clock of --time-zone (or, with
--recipient-time-zone, of each recipient's own time zone where it is known).

Exit codes: 0 created (or checked, with --dry-run); with --watch, 0 the campaign finished and 1
it was cancelled; 2 bad arguments, a list or settings the server refused (the message names
each field); 4 refused (key, scope, rate limit); 5 the server cannot be reached, or the file
cannot be read.

Examples:
  cascade campaign create --file customers.csv --region US --text 'Hi {{contact.name}}!' --rate 50/s --dry-run
  cascade campaign create --file customers.csv --name 'Spring sale' --text 'Hi {{contact.name}}, {{offer.code}} is yours' \\
      --var offer.code=SPRING --chain whatsapp,sms --timeout 2m --rate 50/s --watch
  cascade campaign create --file list.json --text 'Your plan renews soon' --policy renewals --rate 600/min \\
      --start-at +2h --end-at +1d --window 'mon-fri 09:00-21:00' --time-zone Europe/Berlin --recipient-time-zone
  cascade campaign create --file customers.csv --text Hi --rate 10/s --metadata crm_list=7 --json | jq -r .campaign.id")]
pub struct CreateArgs {
    /// The recipient list: CSV with a header row, or a JSON array of objects (see `campaign
    /// validate --help`).
    #[arg(long, value_name = "FILE")]
    file: PathBuf,
    /// The message text (a template over each recipient: `{{contact.name}}`,
    /// `{{contact.fields.COLUMN}}`, and --var).
    #[arg(long, value_name = "TEMPLATE")]
    text: String,
    /// A name for people (default: the file's name).
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    policy: PolicyArgs,
    /// How fast cascades are started: `50/s`, `600/min`, `1000/h`.
    #[arg(long)]
    rate: String,
    /// Start nothing before: an RFC 3339 time, or a duration from now (`+2h`).
    #[arg(long, value_name = "TIME")]
    start_at: Option<String>,
    /// Recipients not started by then end `expired`: an RFC 3339 time, or a duration from now
    /// (`+1d`).
    #[arg(long, value_name = "TIME")]
    end_at: Option<String>,
    /// The days and hours to send in: `mon-fri 09:00-21:00`, `daily 10:00-20:00`.
    #[arg(long)]
    window: Option<String>,
    /// The time zone of the window: an IANA name such as `Europe/Berlin` (default UTC).
    #[arg(long, value_name = "ZONE")]
    time_zone: Option<String>,
    /// Judge the window in each recipient's own time zone where it is known (a time_zone
    /// column, or a phone number's country with one time zone).
    #[arg(long)]
    recipient_time_zone: bool,
    /// The country of phone numbers written without `+` or `00`: an ISO code such as US, GB, DE.
    #[arg(long, value_name = "CODE")]
    region: Option<String>,
    /// A template variable, the same for every recipient; dots make nested objects
    /// (`offer.code=SPRING` → `{{offer.code}}`; repeatable).
    #[arg(long, value_name = "PATH=VALUE")]
    var: Vec<String>,
    /// Metadata kept on every cascade of the campaign (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    metadata: Vec<String>,
    /// Check the list and the settings on the server; store and send nothing.
    #[arg(long, conflicts_with = "watch")]
    dry_run: bool,
    /// Then follow the campaign live until it ends, as `campaign status --watch`.
    #[arg(long)]
    watch: bool,
}

/// `--start-at`, `--end-at`: an RFC 3339 time as given, or now plus a duration (`+2h`, `2h`).
fn instant(option: &str, s: &str, now: chrono::DateTime<chrono::Utc>) -> Result<String, Failure> {
    if chrono::DateTime::parse_from_rfc3339(s).is_ok() {
        return Ok(s.to_owned());
    }
    let bad = || {
        Failure::invalid(format!(
            "--{option} {s:?}: give an RFC 3339 time (2026-01-31T09:00:00Z) or a duration from now (+30m, +2h, +1d)"
        ))
    };
    let ahead = cascade_engine::model::duration::parse(s.strip_prefix('+').unwrap_or(s)).map_err(|_| bad())?;
    let ahead = chrono::Duration::from_std(ahead).map_err(|_| bad())?;
    let at = now.checked_add_signed(ahead).ok_or_else(bad)?;
    Ok(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// The `POST /v1/campaigns` body for these options, but for its `recipients`. Every option is
/// checked here, before anything is uploaded.
fn body(a: &CreateArgs, now: chrono::DateTime<chrono::Utc>) -> Result<Value, Failure> {
    a.rate.parse::<Rate>().map_err(|e| Failure::invalid(format!("--rate: {e}")))?;
    if let Some(r) = &a.region {
        r.parse::<Region>().map_err(|e| Failure::invalid(format!("--region: {e}")))?;
    }
    let mut schedule = Map::new();
    if let Some(s) = &a.start_at {
        schedule.insert("start_at".into(), json!(instant("start-at", s, now)?));
    }
    if let Some(s) = &a.end_at {
        schedule.insert("end_at".into(), json!(instant("end-at", s, now)?));
    }
    if let Some(w) = &a.window {
        let window = w.parse::<Window>().map_err(|e| Failure::invalid(format!("--window: {e}")))?;
        schedule.insert("window".into(), json!(window.to_string()));
    }
    if let Some(z) = &a.time_zone {
        let zone = cascade_campaigns::schedule::parse_zone(z).ok_or_else(|| {
            Failure::invalid(format!(
                "--time-zone {z:?}: not an IANA time zone (write it like Europe/Berlin, America/New_York, UTC)"
            ))
        })?;
        schedule.insert("time_zone".into(), json!(zone.name()));
    }
    if a.recipient_time_zone {
        schedule.insert("recipient_time_zone".into(), json!(true));
    }
    let name = match &a.name {
        Some(n) => n.clone(),
        None => a.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "campaign".into()),
    };
    let mut body = json!({
        "name": name,
        "message": {"text": a.text},
        "policy": a.policy.to_json()?,
        "rate": a.rate.trim(),
    });
    let variables = variables(&a.var)?;
    if !variables.is_empty() {
        body["variables"] = Value::Object(variables);
    }
    let metadata = metadata(&a.metadata)?;
    if !metadata.is_empty() {
        body["metadata"] = Value::Object(metadata);
    }
    if !schedule.is_empty() {
        body["schedule"] = Value::Object(schedule);
    }
    if let Some(r) = &a.region {
        body["region"] = json!(r.trim());
    }
    if a.dry_run {
        body["dry_run"] = json!(true);
    }
    Ok(body)
}

/// What shows the upload and the import on a terminal: a bar of bytes for big files, else a
/// spinner; nothing with `--json` or when stderr is not a terminal.
fn upload_bar(out: &Out, size: u64) -> ProgressBar {
    if out.json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
    let template = if size >= PROGRESS_FROM {
        "{spinner} {msg} {bytes}/{total_bytes} [{bar:30}] {percent}% {eta} left"
    } else {
        "{spinner} {msg} {elapsed}"
    };
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> "),
    );
    bar.set_message("uploading");
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Uploads the list, creates the campaign (or checks it), prints the report and the campaign;
/// with `--watch`, follows it.
pub(super) async fn run(g: &Global, out: &Out, a: CreateArgs) -> Result<u8, Failure> {
    let mut body = body(&a, chrono::Utc::now())?;
    let path = &a.file;
    if !path.exists() {
        return Err(Failure::invalid(format!("--file {}: no such file", path.display())));
    }
    if !path.is_file() {
        return Err(Failure::invalid(format!("--file {}: not a file", path.display())));
    }
    let client = client(g)?;
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let bar = upload_bar(out, size);
    let uploaded = client.upload_with_progress(path, &bar).await;
    let uploaded = match uploaded {
        Ok(u) => u,
        Err(f) => {
            bar.finish_and_clear();
            return Err(f);
        }
    };
    let Some(upload_id) = uploaded.get("upload_id").and_then(Value::as_str) else {
        bar.finish_and_clear();
        return Err(Failure::io(format!("the server's upload answer has no upload_id: {uploaded}")));
    };
    body["recipients"] = json!({"upload_id": upload_id});
    // The server reads and stores the whole list before it answers.
    bar.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").unwrap_or_else(|_| bar.style()));
    bar.set_message(if a.dry_run { "checking the list" } else { "importing the list" });
    let created = client.create_campaign(&body).await;
    bar.finish_and_clear();
    let title = path.display().to_string();
    let more = "--json lists up to 100; `cascade campaign validate --json` lists them all";
    let answer = match created {
        Ok(answer) => answer,
        Err(f) => {
            // A list without a valid recipient: the problem carries the report.
            if !out.json
                && let Some(report) = f.detail.as_ref().and_then(|d| d.get("report"))
                && let Ok(view) = ReportView::from_json(report)
            {
                print_report(out, &title, &view, a.region.is_some(), more);
                println!();
            }
            return Err(f);
        }
    };
    if out.json {
        out.json_line(&answer);
    } else {
        let view = ReportView::from_json(&answer["report"])?;
        print_report(out, &title, &view, a.region.is_some(), more);
        println!();
        if a.dry_run {
            println!("Dry run: nothing was stored or sent.");
            if view.left_out() > 0 {
                println!("A campaign from this list would leave out {}.", plural(view.left_out(), "row", "rows"));
            }
            return Ok(exit::OK);
        }
        if view.left_out() > 0 {
            println!(
                "{} left out; `cascade campaign validate --file {}` checks the list again once they are fixed.",
                plural(view.left_out(), "row was", "rows were"),
                path.display()
            );
        }
    }
    if a.dry_run {
        return Ok(exit::OK);
    }
    let campaign = &answer["campaign"];
    let id = campaign
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| Failure::io(format!("the server's answer has no campaign id: {answer}")))?;
    if !out.json {
        let state = campaign["state"].as_str().unwrap_or("running");
        let phase = campaign["phase"].as_str().map(|p| format!(" ({p})")).unwrap_or_default();
        println!(
            "campaign {}: {}{phase}, {} at {}",
            out.bold(&id),
            out.state(state),
            plural(campaign["total"].as_u64().unwrap_or(0), "recipient", "recipients"),
            campaign["rate"].as_str().unwrap_or(&a.rate)
        );
        if !a.watch {
            eprintln!("follow it with: cascade campaign status {id} --watch");
        }
    }
    if a.watch {
        if !out.json {
            println!();
        }
        return progress::watch(&client, out, &id).await;
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        args: CreateArgs,
    }

    fn args(extra: &[&str]) -> CreateArgs {
        let base = ["create", "--file", "list.csv", "--text", "Hi {{contact.name}}", "--rate", "50/s"];
        Cmd::try_parse_from(base.iter().chain(extra)).expect("arguments").args
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        "2026-01-31T09:00:00Z".parse().expect("time")
    }

    #[test]
    fn the_body_has_every_setting() {
        let a = args(&[
            "--chain",
            "whatsapp,sms",
            "--timeout",
            "2m",
            "--start-at",
            "+2h",
            "--end-at",
            "2026-02-02T00:00:00Z",
            "--window",
            "Mon-Fri 09:00-21:00",
            "--time-zone",
            "europe/berlin",
            "--recipient-time-zone",
            "--region",
            "us",
            "--var",
            "offer.code=SPRING",
            "--metadata",
            "crm=7",
            "--dry-run",
        ]);
        let b = body(&a, now()).expect("a body");
        assert_eq!(
            b,
            json!({
                "name": "list.csv",
                "message": {"text": "Hi {{contact.name}}"},
                "policy": {"steps": [{"channel": "whatsapp", "timeout": "2m"}, {"channel": "sms", "timeout": "2m"}]},
                "rate": "50/s",
                "variables": {"offer": {"code": "SPRING"}},
                "metadata": {"crm": "7"},
                "schedule": {
                    "start_at": "2026-01-31T11:00:00Z",
                    "end_at": "2026-02-02T00:00:00Z",
                    "window": "mon-fri 09:00-21:00",
                    "time_zone": "Europe/Berlin",
                    "recipient_time_zone": true
                },
                "region": "us",
                "dry_run": true
            })
        );
        let plain = body(&args(&["--name", "Spring"]), now()).expect("a body");
        assert_eq!(plain["policy"], "default");
        assert_eq!(plain["name"], "Spring");
        assert!(plain.get("schedule").is_none() && plain.get("variables").is_none(), "{plain}");
    }

    #[test]
    fn bad_settings_are_named_before_anything_is_sent() {
        let mut a = args(&[]);
        a.rate = "fast".into();
        let e = body(&a, now()).expect_err("a bad rate");
        assert!(e.message.contains("--rate: rate \"fast\""), "{}", e.message);
        for (extra, says) in [
            (&["--window", "mon-fry 09:00-21:00"][..], "--window"),
            (&["--time-zone", "Mars/Olympus"], "--time-zone"),
            (&["--start-at", "tomorrow"], "--start-at"),
            (&["--region", "XX"], "--region"),
            (&["--var", "novalue"], "KEY=VALUE"),
        ] {
            let e = body(&args(extra), now()).expect_err(says);
            assert_eq!(e.code, exit::INVALID);
            assert!(e.message.contains(says), "{says}: {}", e.message);
        }
    }

    #[test]
    fn policy_and_chain_conflict_and_watch_is_not_for_dry_runs() {
        let base = ["create", "--file", "l.csv", "--text", "Hi", "--rate", "1/s"];
        for extra in [&["--policy", "p", "--chain", "sms"][..], &["--dry-run", "--watch"]] {
            let e = Cmd::try_parse_from(base.iter().chain(extra)).expect_err("a conflict");
            assert!(e.to_string().contains("cannot be used with"), "{e}");
        }
    }
}
