//! `campaign status` (`--watch`), `pause`, `resume`, `cancel` and `list`: a server's
//! campaigns, read and controlled, and followed live as a progress bar.

use std::io::IsTerminal;
use std::time::Duration;

use cascade_campaigns::Progress;
use cascade_engine::store::CampaignState;
use cascade_engine::{Cost, Timestamp};
use clap::Args;
use console::Style;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;
use serde_json::Value;

use crate::Global;
use crate::cascades::client;
use crate::client::{Client, Entry};
use crate::exit::{self, Failure};
use crate::out::Out;

/// `cascade campaign status` options.
#[derive(Debug, Args)]
#[command(after_help = "\
Watching: a progress bar (recipients started of all) with the delivered, failed and running
counts and the ETA, then the final summary. Exit codes with --watch: 0 the campaign finished,
1 it was cancelled; 4 no such campaign; 5 the server cannot be reached.

Examples:
  cascade campaign status 0191d2e4-5b6a-7c8d-9e0f-1a2b3c4d5e6f
  cascade campaign status 0191d2e4-5b6a-7c8d-9e0f-1a2b3c4d5e6f --watch
  cascade campaign status 0191d2e4-5b6a-7c8d-9e0f-1a2b3c4d5e6f --watch --json | jq -c '{delivered, failed, remaining}'")]
pub struct StatusArgs {
    /// The campaign's id.
    id: String,
    /// Follow it live until it ends: exit 0 when it finished, 1 when it was cancelled.
    #[arg(long)]
    watch: bool,
}

/// `cascade campaign pause` options.
#[derive(Debug, Args)]
#[command(after_help = "\
Exit codes: 0 paused; 4 no such campaign, or it is not running (409).

Example:
  cascade campaign pause 0191d2e4-5b6a-7c8d-9e0f-1a2b3c4d5e6f")]
pub struct PauseArgs {
    /// The campaign's id.
    pub(super) id: String,
}

/// `cascade campaign resume` options.
#[derive(Debug, Args)]
#[command(after_help = "\
Exit codes: 0 running again; 4 no such campaign, or it is not paused (409).

Example:
  cascade campaign resume 0191d2e4-5b6a-7c8d-9e0f-1a2b3c4d5e6f")]
pub struct ResumeArgs {
    /// The campaign's id.
    pub(super) id: String,
}

/// `cascade campaign cancel` options.
#[derive(Debug, Args)]
#[command(after_help = "\
Exit codes: 0 cancelled; 4 no such campaign, or it has already ended (409).

Examples:
  cascade campaign cancel 0191d2e4-5b6a-7c8d-9e0f-1a2b3c4d5e6f
  cascade campaign export 0191d2e4-5b6a-7c8d-9e0f-1a2b3c4d5e6f --status cancelled -o not-sent.csv")]
pub struct CancelArgs {
    /// The campaign's id.
    pub(super) id: String,
}

/// `cascade campaign list` options.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  cascade campaign list
  cascade campaign list --limit 10 --json | jq -r '.items[].id'")]
pub struct ListArgs {
    /// How many (1 to 200).
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Continue after an earlier page (its `next_cursor`).
    #[arg(long)]
    cursor: Option<String>,
}

/// A change of a campaign's state.
#[derive(Clone, Copy, Debug)]
pub(super) enum Action {
    Pause,
    Resume,
    Cancel,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Cancel => "cancel",
        }
    }
}

/// A progress as the server wrote it.
fn parse_progress(value: &Value) -> Result<Progress, Failure> {
    Progress::deserialize(value)
        .map_err(|e| Failure::io(format!("the server's campaign progress does not read as one: {e}")))
}

/// Shows a campaign; with `--watch`, follows it to its end.
pub(super) async fn status(g: &Global, out: &Out, a: StatusArgs) -> Result<u8, Failure> {
    let client = client(g)?;
    if a.watch {
        return watch(&client, out, &a.id).await;
    }
    let value = client.campaign(&a.id).await?;
    if out.json {
        out.json_line(&value);
    } else {
        print_progress(out, &parse_progress(&value)?, Some(&value));
    }
    Ok(exit::OK)
}

/// Follows a campaign's progress until it is over and none of its cascades runs: a progress
/// bar on a terminal, a line per change otherwise, one JSON object per change with `--json`;
/// then the summary. 0 when it finished, 1 when it was cancelled.
pub(super) async fn watch(client: &Client, out: &Out, id: &str) -> Result<u8, Failure> {
    let terminal = !out.json && std::io::stderr().is_terminal();
    let bar = if terminal {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(format!("connecting to the progress of campaign {id}"));
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    } else {
        ProgressBar::hidden()
    };
    let bar_style = ProgressStyle::with_template("{spinner} {prefix} [{bar:24}] {pos}/{len}  {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let mut last: Option<Progress> = None;
    let lost = format!("lost the progress stream of campaign {id}; see `cascade campaign status {id}`");
    let followed = client
        .follow_campaign(id, &lost, |_, value| {
            let p = parse_progress(&value)?;
            if out.json {
                out.json_line(&value);
            } else if terminal {
                if last.is_none() {
                    bar.set_style(bar_style.clone());
                }
                bar.set_length(p.total);
                bar.set_position(p.total.saturating_sub(p.remaining));
                bar.set_prefix(state_text(out, &p));
                bar.set_message(bar_message(&p));
            } else {
                println!(
                    "{}  {}  {}/{} started · {}",
                    out.dim(p.at.format("%H:%M:%S")),
                    state_text(out, &p),
                    p.total.saturating_sub(p.remaining),
                    p.total,
                    bar_message(&p)
                );
            }
            let settled = p.is_settled();
            last = Some(p);
            Ok(if settled { Entry::Last } else { Entry::New })
        })
        .await;
    bar.finish_and_clear();
    followed?;
    let Some(p) = last else {
        return Err(Failure::io(format!("the progress stream of campaign {id} ended without a progress")));
    };
    if !out.json {
        if !terminal {
            println!();
        }
        print_progress(out, &p, None);
    }
    Ok(if p.state == CampaignState::Finished { exit::OK } else { exit::UNDELIVERED })
}

/// `running (sending)`, `paused`, `finished`: coloured.
fn state_text(out: &Out, p: &Progress) -> String {
    let state = out.state(p.state.as_str());
    match &p.phase {
        Some(phase) => format!("{state} ({phase})"),
        None => state,
    }
}

/// The counts beside the bar: delivered, failed, running, and how long until the last
/// recipient starts.
fn bar_message(p: &Progress) -> String {
    let mut m = format!("delivered {} · failed {} · running {}", p.delivered, p.failed, p.running);
    if p.expired > 0 {
        m.push_str(&format!(" · expired {}", p.expired));
    }
    if p.cancelled > 0 {
        m.push_str(&format!(" · cancelled {}", p.cancelled));
    }
    if let Some(eta) = p.eta {
        let left = (eta - p.at).num_seconds();
        if left > 0 {
            m.push_str(&format!(" · eta in {}", span(left as u64)));
        }
    }
    m
}

/// `2026-01-31 12:05:00 UTC (in 3m 20s)`.
fn eta_text(eta: Timestamp, now: Timestamp) -> String {
    let left = (eta - now).num_seconds();
    let when = eta.format("%Y-%m-%d %H:%M:%S UTC");
    if left > 0 { format!("{when} (in {})", span(left as u64)) } else { when.to_string() }
}

/// A duration for people, to two units: `45s`, `3m 20s`, `2h 5m`, `3d 4h`.
fn span(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// `0.0485 (all by sms: 0.08, 39% saved)`: what the finished cascades cost against sending
/// them all through the policy's last channel.
fn cost_text(p: &Progress) -> String {
    let all = p.cost_all_last_channel;
    if all.micros() <= 0 || p.last_channel.is_empty() {
        return p.cost.to_string();
    }
    let saved = saved_percent(p.cost, all);
    let saving = if saved >= 0.0 { format!("{saved:.0}% saved") } else { format!("{:.0}% more", -saved) };
    format!("{} (all by {}: {all}, {saving})", p.cost, p.last_channel)
}

/// How much less `cost` is than `baseline`, in percent of it.
fn saved_percent(cost: Cost, baseline: Cost) -> f64 {
    if baseline.micros() == 0 { 0.0 } else { 100.0 * (1.0 - cost.as_f64() / baseline.as_f64()) }
}

/// The summary of a campaign. `view`: the whole `GET /v1/campaigns/{id}` answer, for its
/// schedule and creation time.
fn print_progress(out: &Out, p: &Progress, view: Option<&Value>) {
    let (green, red, yellow) = (Style::new().green().bold(), Style::new().red().bold(), Style::new().yellow());
    let count = |n: u64, style: &Style| if n > 0 { out.paint(n, style) } else { n.to_string() };
    println!("{} {}  {}", out.bold("campaign"), p.id, p.name);
    let row = |name: &str, value: String| println!("  {name:<10} {value}");
    row("state", state_text(out, p));
    let percent = (p.started * 100).checked_div(p.total).unwrap_or(0);
    row("started", format!("{} of {} ({percent}%)", p.started, p.total));
    row("running", p.running.to_string());
    let by_channel: Vec<String> = p.delivered_by_channel.iter().map(|(c, n)| format!("{c} {n}")).collect();
    let split = if by_channel.is_empty() { String::new() } else { format!(" ({})", by_channel.join(", ")) };
    row("delivered", format!("{}{split}", count(p.delivered, &green)));
    row("failed", count(p.failed, &red));
    row("expired", count(p.expired, &red));
    row("cancelled", count(p.cancelled, &yellow));
    row("remaining", p.remaining.to_string());
    row("cost", cost_text(p));
    row("rate", p.rate.clone());
    if let Some(eta) = p.eta {
        row("eta", eta_text(eta, p.at));
    }
    if let Some(schedule) = view.and_then(|v| schedule_text(&v["spec"]["schedule"])) {
        row("schedule", schedule);
    }
    if let Some(created) = view.and_then(|v| v["created_at"].as_str()) {
        row("created", time_text(created));
    }
}

/// A campaign's schedule in a line: `from …, until …, mon-fri 09:00-21:00 Europe/Berlin`.
fn schedule_text(s: &Value) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(t) = s["start_at"].as_str() {
        parts.push(format!("from {}", time_text(t)));
    }
    if let Some(t) = s["end_at"].as_str() {
        parts.push(format!("until {}", time_text(t)));
    }
    if let Some(w) = s["window"].as_str() {
        let zone = s["time_zone"].as_str().unwrap_or("UTC");
        let own = if s["recipient_time_zone"] == true { ", each recipient's own time zone where known" } else { "" };
        parts.push(format!("{w} {zone}{own}"));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// An RFC 3339 time as `2026-01-31 12:05:00 UTC` (as given when it is not one).
fn time_text(t: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|t| t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| t.to_owned())
}

/// Pauses, resumes or cancels a campaign and prints its new state.
pub(super) async fn control(g: &Global, out: &Out, id: &str, action: Action) -> Result<u8, Failure> {
    let value = client(g)?.campaign_action(id, action.as_str()).await?;
    if out.json {
        out.json_line(&value);
        return Ok(exit::OK);
    }
    let p = parse_progress(&value)?;
    println!("{} {}  {}", out.bold("campaign"), p.id, state_text(out, &p));
    let mut counts = format!(
        "  {} of {} started, {} running, {} delivered, {} remaining",
        p.started, p.total, p.running, p.delivered, p.remaining
    );
    if p.cancelled > 0 {
        counts.push_str(&format!(", {} cancelled", p.cancelled));
    }
    println!("{counts}");
    match action {
        Action::Pause => eprintln!("resume it with: cascade campaign resume {}", p.id),
        Action::Cancel if p.running > 0 => eprintln!("its running cascades are being cancelled"),
        _ => {}
    }
    Ok(exit::OK)
}

/// Lists campaigns, newest first.
pub(super) async fn list(g: &Global, out: &Out, a: ListArgs) -> Result<u8, Failure> {
    let mut query = vec![("limit", a.limit.to_string())];
    if let Some(c) = &a.cursor {
        query.push(("cursor", c.clone()));
    }
    let page = client(g)?.campaigns(&query).await?;
    if out.json {
        out.json_line(&page);
        return Ok(exit::OK);
    }
    let items = page.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
    if items.is_empty() {
        println!("no campaigns");
        return Ok(exit::OK);
    }
    // List items carry no counts (they would take a tally each): `status ID` has them.
    let mut table = out.table(&["id", "name", "state", "recipients", "rate", "created"]);
    for c in &items {
        let text = |key: &str| c.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        let recipients = c.get("total").and_then(Value::as_u64).unwrap_or(0).to_string();
        table.add_row(vec![
            text("id"),
            text("name"),
            out.state(&text("state")),
            recipients,
            text("rate"),
            time_text(&text("created_at")),
        ]);
    }
    println!("{table}");
    if let Some(next) = page.get("next_cursor").and_then(Value::as_str) {
        eprintln!("more: cascade campaign list --cursor {next}");
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_keep_two_units() {
        assert_eq!(span(45), "45s");
        assert_eq!(span(200), "3m 20s");
        assert_eq!(span(2 * 3600 + 5 * 60 + 9), "2h 5m");
        assert_eq!(span(3 * 86_400 + 4 * 3600), "3d 4h");
    }

    #[test]
    fn savings_against_the_last_channel() {
        assert_eq!(saved_percent(Cost::from_micros(25), Cost::from_micros(100)), 75.0);
        assert_eq!(saved_percent(Cost::ZERO, Cost::ZERO), 0.0);
        assert!(saved_percent(Cost::from_micros(150), Cost::from_micros(100)) < 0.0);
    }

    #[test]
    fn schedules_read_in_a_line() {
        let s = serde_json::json!({"start_at": "2026-01-31T09:00:00Z", "window": "mon-fri 09:00-21:00",
            "time_zone": "Europe/Berlin"});
        assert_eq!(
            schedule_text(&s).as_deref(),
            Some("from 2026-01-31 09:00:00 UTC, mon-fri 09:00-21:00 Europe/Berlin")
        );
        assert_eq!(schedule_text(&Value::Null), None);
    }
}
