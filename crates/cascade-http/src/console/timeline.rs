//! A cascade's timeline as a picture: one lane per channel tried, each attempt a bar on a
//! time axis with its statuses as marks, the fallovers between lanes with their reasons, and
//! the same story as a list of lines for screen readers and tests.
//!
//! Everything is laid out here, in numbers; the template only draws what it is given.

use cascade_engine::machine::CascadeState;
use cascade_engine::{Attempt, AttemptState, Event, EventKind, Outcome, Status, Timestamp};
use serde::Serialize;

/// The drawing's width in SVG units (it scales to the page).
const WIDTH: f64 = 1000.0;
/// Room on the left for the lane names.
const LEFT: f64 = 120.0;
/// Room on the right, so the last mark's label fits.
const RIGHT: f64 = 30.0;
/// A lane's height.
const LANE: f64 = 72.0;
/// Room on top for the time axis.
const TOP: f64 = 28.0;

/// The whole picture.
#[derive(Debug, Serialize)]
pub(crate) struct TimelineView {
    pub(crate) width: f64,
    pub(crate) height: f64,
    pub(crate) left: f64,
    pub(crate) lanes: Vec<Lane>,
    pub(crate) ticks: Vec<Tick>,
    pub(crate) fallovers: Vec<Fallover>,
    /// Where "now" is, while the cascade runs.
    pub(crate) now_x: Option<f64>,
    /// The story in words, oldest first.
    pub(crate) lines: Vec<Line>,
    /// `running`, `delivered`, `failed`, `cancelled` or `expired`.
    pub(crate) state: &'static str,
    /// The outcome in words.
    pub(crate) outcome: String,
    /// What every attempt cost together.
    pub(crate) cost: String,
    pub(crate) finished: bool,
}

/// One channel's lane.
#[derive(Debug, Serialize)]
pub(crate) struct Lane {
    pub(crate) channel: String,
    pub(crate) y: f64,
    pub(crate) bars: Vec<Bar>,
    /// Why the step was skipped, when it was.
    pub(crate) skipped: Option<String>,
}

/// One attempt.
#[derive(Debug, Serialize)]
pub(crate) struct Bar {
    pub(crate) x: f64,
    pub(crate) w: f64,
    pub(crate) y: f64,
    /// `sending`, `accepted`, `failed`, `unknown`, or `won` for the delivering attempt.
    pub(crate) class: &'static str,
    /// `#2 via wa-main`.
    pub(crate) label: String,
    pub(crate) marks: Vec<Mark>,
}

/// A status (or an error) on an attempt.
#[derive(Debug, Serialize)]
pub(crate) struct Mark {
    pub(crate) x: f64,
    /// Where its label's baseline goes: under the bar, on the first row where it does not run
    /// into an earlier label.
    pub(crate) ly: f64,
    pub(crate) label: String,
    pub(crate) class: String,
    /// When, relative to the start (`+12.3 s`).
    pub(crate) offset: String,
}

/// A time axis tick.
#[derive(Debug, Serialize)]
pub(crate) struct Tick {
    pub(crate) x: f64,
    pub(crate) label: String,
}

/// A move from one lane to the next.
#[derive(Debug, Serialize)]
pub(crate) struct Fallover {
    pub(crate) x: f64,
    pub(crate) y1: f64,
    pub(crate) y2: f64,
    pub(crate) reason: String,
}

/// One line of the story.
#[derive(Debug, Serialize)]
pub(crate) struct Line {
    pub(crate) offset: String,
    pub(crate) text: String,
    pub(crate) class: &'static str,
}

/// Lays out the timeline of `state` with its `events` as of `now`.
pub(crate) fn layout(state: &CascadeState, events: &[Event], now: Timestamp) -> TimelineView {
    let t0 = state.created_at;
    let end = state.finished_at.unwrap_or(now).max(t0);
    // At least 10 s wide, and a little room after the last thing that happened.
    let span = ((end - t0).num_milliseconds() as f64 / 1000.0 * 1.05).max(10.0);
    let scale = (WIDTH - LEFT - RIGHT) / span;
    let x = |t: Timestamp| LEFT + ((t - t0).num_milliseconds().max(0) as f64 / 1000.0) * scale;

    // Lanes in the order their channels were first reached.
    let mut lanes: Vec<Lane> = Vec::new();
    let lane_of = |channel: &str, lanes: &mut Vec<Lane>| -> usize {
        if let Some(i) = lanes.iter().position(|l| l.channel == channel) {
            return i;
        }
        let y = TOP + lanes.len() as f64 * LANE;
        lanes.push(Lane { channel: channel.to_owned(), y, bars: Vec::new(), skipped: None });
        lanes.len() - 1
    };
    for e in events {
        match &e.kind {
            EventKind::SendStarted { channel, .. } => {
                lane_of(channel.as_str(), &mut lanes);
            }
            EventKind::StepSkipped { channel, reason, .. } => {
                let i = lane_of(channel.as_str(), &mut lanes);
                lanes[i].skipped = Some(format!("skipped: {reason}"));
            }
            _ => {}
        }
    }

    let won = match &state.outcome {
        Some(Outcome::Delivered { attempt, .. }) => Some(*attempt),
        _ => None,
    };
    for a in &state.attempts {
        let i = lane_of(a.channel.as_str(), &mut lanes);
        let until = attempt_end(a, state, events).unwrap_or(end);
        let (bx, bw) = (x(a.started_at), (x(until) - x(a.started_at)).max(3.0));
        let y = lanes[i].y + 14.0;
        let failed_status = a.statuses.iter().any(|s| s.status == Status::Failed);
        let code = a.error.as_ref().map(|e| e.code.clone()).unwrap_or_default();
        let mut marks: Vec<Mark> = a
            .statuses
            .iter()
            .map(|s| {
                let label = if s.status == Status::Failed && !code.is_empty() {
                    format!("failed {code}")
                } else {
                    s.status.to_string()
                };
                Mark { x: x(s.at), ly: 0.0, label, class: s.status.to_string(), offset: offset(s.at - t0) }
            })
            .collect();
        // A send that failed outright (no `failed` status for it): the error is its own mark.
        if let Some(err) = a.error.as_ref().filter(|_| !failed_status) {
            let at = failed_at(a, events).unwrap_or(until);
            marks.push(Mark {
                x: x(at),
                ly: 0.0,
                label: format!("{} {}", err.class, err.code),
                class: "error".to_owned(),
                offset: offset(at - t0),
            });
        }
        place_labels(&mut marks, y + 30.0);
        let class = if won == Some(a.number) {
            "won"
        } else {
            match a.state {
                AttemptState::Sending => "sending",
                AttemptState::Accepted => "accepted",
                AttemptState::Failed => "failed",
                AttemptState::Unknown => "unknown",
            }
        };
        let via = a.connection.as_ref().map(|c| format!(" via {c}")).unwrap_or_default();
        lanes[i].bars.push(Bar { x: bx, w: bw, y, class, label: format!("#{}{via}", a.number), marks });
    }

    let mut fallovers = Vec::new();
    let mut lines = Vec::new();
    for e in events {
        let (text, class) = describe(&e.kind);
        lines.push(Line { offset: offset(e.at - t0), text, class });
        if let EventKind::StepFailed { failure } = &e.kind
            && let Some(from) = lanes.iter().position(|l| l.channel == failure.channel.as_str())
        {
            let y1 = lanes[from].y + 22.0;
            let y2 = lanes.get(from + 1).map_or(y1 + LANE * 0.6, |l| l.y + 22.0);
            fallovers.push(Fallover { x: x(e.at), y1, y2, reason: failure.reason.clone() });
        }
    }

    let ticks = ticks(span).into_iter().map(|s| Tick { x: LEFT + s * scale, label: seconds_label(s) }).collect();
    let cost = state.attempts.iter().fold(cascade_engine::Cost::ZERO, |c, a| c + a.cost);
    let finished = state.outcome.is_some();
    TimelineView {
        width: WIDTH,
        height: TOP + lanes.len().max(1) as f64 * LANE + 8.0,
        left: LEFT,
        now_x: (!finished).then(|| x(now)),
        lanes,
        ticks,
        fallovers,
        lines,
        state: state.outcome.as_ref().map_or("running", Outcome::state),
        outcome: outcome_text(state.outcome.as_ref()),
        cost: cost.to_string(),
        finished,
    }
}

/// Roughly how wide a label of `chars` characters is, in SVG units (11 px text).
fn label_width(chars: usize) -> f64 {
    chars as f64 * 6.4 + 6.0
}

/// Puts each mark's label on the first of three rows under the bar where it overlaps no label
/// placed before it (the last row when all are taken).
fn place_labels(marks: &mut [Mark], first_row: f64) {
    const ROWS: usize = 3;
    const ROW: f64 = 12.0;
    let mut taken: Vec<Vec<(f64, f64)>> = vec![Vec::new(); ROWS];
    marks.sort_by(|a, b| a.x.total_cmp(&b.x));
    for m in marks.iter_mut() {
        let half = label_width(m.label.chars().count()) / 2.0;
        let span = (m.x - half, m.x + half);
        let row =
            (0..ROWS).find(|r| taken[*r].iter().all(|(from, to)| span.1 <= *from || span.0 >= *to)).unwrap_or(ROWS - 1);
        taken[row].push(span);
        m.ly = first_row + row as f64 * ROW;
    }
}

/// When an attempt stopped being the one that mattered: the next attempt of its step, the
/// step's failure, or the end of the cascade.
fn attempt_end(a: &Attempt, state: &CascadeState, events: &[Event]) -> Option<Timestamp> {
    let next = state.attempts.iter().filter(|b| b.step == a.step && b.number > a.number).map(|b| b.started_at).min();
    let step_failed = events.iter().find_map(|e| match &e.kind {
        EventKind::StepFailed { failure } if failure.step == a.step && e.at >= a.started_at => Some(e.at),
        _ => None,
    });
    [next, step_failed, state.finished_at].into_iter().flatten().min()
}

/// When the attempt's send failed (the error mark goes there).
fn failed_at(a: &Attempt, events: &[Event]) -> Option<Timestamp> {
    events.iter().find_map(|e| match &e.kind {
        EventKind::SendFailed { attempt, .. } if *attempt == a.number => Some(e.at),
        EventKind::Status { attempt, error: Some(_), .. } if *attempt == a.number => Some(e.at),
        _ => None,
    })
}

fn describe(kind: &EventKind) -> (String, &'static str) {
    match kind {
        EventKind::Created => ("accepted; the cascade starts".to_owned(), "info"),
        EventKind::ExistingChatFirst { channel, .. } => {
            (format!("an open chat on {channel}: that step goes first"), "info")
        }
        EventKind::StepSkipped { channel, reason, .. } => (format!("{channel} skipped: {reason}"), "skip"),
        EventKind::SendStarted { attempt, channel, connection, .. } => {
            let via = connection.as_ref().map(|c| format!(" via {c}")).unwrap_or_default();
            (format!("attempt #{attempt}: sending on {channel}{via}"), "send")
        }
        EventKind::Accepted { attempt, cost, .. } => (format!("attempt #{attempt}: accepted (cost {cost})"), "send"),
        EventKind::SendFailed { attempt, error, retry_at } => {
            let retry = if retry_at.is_some() { "; will retry" } else { "" };
            (format!("attempt #{attempt}: {} error {}: {}{retry}", error.class, error.code, error.detail), "error")
        }
        EventKind::SendUnknown { attempt } => {
            (format!("attempt #{attempt}: the process stopped during the send; waiting for a status"), "error")
        }
        EventKind::Status { attempt, status, error, .. } => match error {
            Some(e) => (format!("attempt #{attempt}: {status} ({}: {})", e.code, e.detail), "error"),
            None => (format!("attempt #{attempt}: {status}"), "status"),
        },
        EventKind::StepFailed { failure } => {
            (format!("fallover from {}: {}", failure.channel, failure.reason), "fallover")
        }
        EventKind::Replied { channel } => (format!("the contact replied on {channel}"), "status"),
        EventKind::Finished { outcome, cost } => {
            (format!("{} (total cost {cost})", outcome_text(Some(outcome))), "end")
        }
    }
}

fn outcome_text(outcome: Option<&Outcome>) -> String {
    match outcome {
        None => "running".to_owned(),
        Some(Outcome::Delivered { channel, status, step, connection, .. }) => {
            let via = connection.as_ref().map(|c| format!(" via {c}")).unwrap_or_default();
            format!("delivered: {status} on {channel}{via} (step {})", step + 1)
        }
        Some(Outcome::Failed { steps }) => format!("failed: every step tried ({})", steps.len()),
        Some(Outcome::Cancelled) => "cancelled".to_owned(),
        Some(Outcome::Expired) => "expired: its time to live passed".to_owned(),
    }
}

/// `+0.4 s`, `+1 min 05 s`, `+2 h 03 min`.
fn offset(d: chrono::TimeDelta) -> String {
    let ms = d.num_milliseconds().max(0);
    if ms < 60_000 {
        format!("+{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("+{} min {:02} s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("+{} h {:02} min", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

/// Tick positions (seconds from the start) for an axis `span` seconds long: about six of
/// them at a round step.
fn ticks(span: f64) -> Vec<f64> {
    const STEPS: [f64; 16] =
        [1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 43200.0];
    let step = STEPS.iter().copied().find(|s| span / s <= 8.0).unwrap_or(86_400.0);
    (0..).map(|i| f64::from(i) * step).take_while(|s| *s <= span).collect()
}

fn seconds_label(s: f64) -> String {
    let s = s.round() as u64;
    match s {
        0 => "0".to_owned(),
        s if s < 60 => format!("{s} s"),
        s if s < 3600 && s % 60 == 0 => format!("{} min", s / 60),
        s if s < 3600 => format!("{}:{:02}", s / 60, s % 60),
        s => format!("{} h", s as f64 / 3600.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_span() {
        assert_eq!(ticks(10.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(65.0), vec![0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0]);
        let long = ticks(3.0 * 3600.0);
        assert!(long.len() <= 9 && long.len() >= 4, "{long:?}");
        assert_eq!(seconds_label(0.0), "0");
        assert_eq!(seconds_label(30.0), "30 s");
        assert_eq!(seconds_label(120.0), "2 min");
        assert_eq!(seconds_label(90.0), "1:30");
        assert_eq!(seconds_label(7200.0), "2 h");
    }

    #[test]
    fn labels_that_would_overlap_go_on_separate_rows() {
        let mark = |x: f64, label: &str| Mark {
            x,
            ly: 0.0,
            label: label.to_owned(),
            class: String::new(),
            offset: String::new(),
        };
        let mut marks = vec![mark(300.0, "delivered"), mark(100.0, "accepted"), mark(104.0, "sent"), mark(108.0, "x")];
        place_labels(&mut marks, 50.0);
        let rows: Vec<(f64, f64)> = marks.iter().map(|m| (m.x, m.ly)).collect();
        assert_eq!(rows, [(100.0, 50.0), (104.0, 62.0), (108.0, 74.0), (300.0, 50.0)]);
        // A fourth label in the same spot shares the last row rather than leaving the lane.
        let mut crowded: Vec<Mark> = (0..5).map(|i| mark(100.0 + f64::from(i), "accepted")).collect();
        place_labels(&mut crowded, 0.0);
        assert!(crowded.iter().all(|m| m.ly <= 24.0));
    }

    #[test]
    fn offsets_read_naturally() {
        assert_eq!(offset(chrono::TimeDelta::milliseconds(400)), "+0.4 s");
        assert_eq!(offset(chrono::TimeDelta::seconds(65)), "+1 min 05 s");
        assert_eq!(offset(chrono::TimeDelta::seconds(7380)), "+2 h 03 min");
        assert_eq!(offset(chrono::TimeDelta::seconds(-5)), "+0.0 s");
    }
}
