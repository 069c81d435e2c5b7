//! A cascade's timeline as lines for people: the time since it started, the channel, what
//! happened. Used by `send --wait`, `status` and the demo.

use std::collections::HashMap;

use cascade_engine::{Event, EventKind, Outcome, Status, Timestamp};

use crate::out::Out;

/// Renders one cascade's timeline entries in order, remembering which channel each attempt
/// went to.
#[derive(Debug, Default)]
pub struct Timeline {
    start: Option<Timestamp>,
    attempts: HashMap<u32, String>,
}

/// One entry, rendered: when (seconds since the start), on which channel, what.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// Seconds since the cascade was created.
    pub offset: f64,
    /// The channel it is about (empty for the cascade as a whole).
    pub channel: String,
    /// What happened, coloured when the output takes colours.
    pub text: String,
}

impl Line {
    /// `  +1.20s  whatsapp   delivered`.
    pub fn render(&self, out: &Out) -> String {
        format!("{}  {:<9} {}", out.dim(format!("{:>+8.2}s", self.offset)), self.channel, self.text)
    }
}

impl Timeline {
    /// The line for `event`.
    pub fn line(&mut self, out: &Out, event: &Event) -> Line {
        let start = *self.start.get_or_insert(event.at);
        let offset = (event.at - start).num_milliseconds() as f64 / 1000.0;
        let (channel, text) = self.describe(out, &event.kind);
        Line { offset, channel, text }
    }

    fn channel_of(&self, attempt: u32) -> String {
        self.attempts.get(&attempt).cloned().unwrap_or_default()
    }

    fn describe(&mut self, out: &Out, kind: &EventKind) -> (String, String) {
        match kind {
            EventKind::Created => (String::new(), "created".into()),
            EventKind::ExistingChatFirst { channel, connection, .. } => (
                channel.to_string(),
                format!(
                    "existing chat: goes first{}",
                    connection.as_ref().map(|c| format!(" on {c}")).unwrap_or_default()
                ),
            ),
            EventKind::StepSkipped { channel, reason, .. } => {
                (channel.to_string(), format!("{} ({reason})", out.state("skipped")))
            }
            EventKind::SendStarted { attempt, channel, connection, .. } => {
                self.attempts.insert(*attempt, channel.to_string());
                (
                    channel.to_string(),
                    format!("sending{}", connection.as_ref().map(|c| format!(" via {c}")).unwrap_or_default()),
                )
            }
            EventKind::Accepted { attempt, provider_message_id, cost } => (
                self.channel_of(*attempt),
                format!("{} {}  cost {cost}", out.state("accepted"), out.dim(provider_message_id)),
            ),
            EventKind::SendFailed { attempt, error, retry_at } => (
                self.channel_of(*attempt),
                format!(
                    "{} {} {}: {}{}",
                    out.state("failed"),
                    out.state(&error.class.to_string()),
                    error.code,
                    error.detail,
                    if retry_at.is_some() { " — retrying" } else { "" }
                ),
            ),
            EventKind::SendUnknown { attempt } => {
                (self.channel_of(*attempt), format!("{} (the process stopped during the send)", out.state("unknown")))
            }
            EventKind::Status { attempt, status, error, .. } => {
                let mut text = out.state(&status.to_string());
                if let Some(e) = error.as_deref().filter(|_| *status == Status::Failed) {
                    text.push_str(&format!(" {} {}: {}", out.state(&e.class.to_string()), e.code, e.detail));
                }
                (self.channel_of(*attempt), text)
            }
            EventKind::StepFailed { failure } => {
                (failure.channel.to_string(), format!("step over: {} → next step", failure.reason))
            }
            EventKind::Replied { channel } => (channel.to_string(), out.state("replied")),
            EventKind::Finished { outcome, cost } => {
                (String::new(), format!("{}  cost {cost}", outcome_text(out, outcome)))
            }
        }
    }
}

/// An outcome in a few words: `delivered on whatsapp (read)`, `failed after 3 steps`.
pub fn outcome_text(out: &Out, outcome: &Outcome) -> String {
    match outcome {
        Outcome::Delivered { channel, status, .. } => {
            format!("{} on {channel} ({status})", out.state("delivered"))
        }
        Outcome::Failed { steps } => format!("{} after {} step(s)", out.state("failed"), steps.len()),
        Outcome::Cancelled => out.state("cancelled"),
        Outcome::Expired => out.state("expired"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cascade_engine::{Cost, ErrorClass, SendError};

    fn at(ms: i64) -> Timestamp {
        chrono::DateTime::from_timestamp_millis(1_800_000_000_000 + ms).expect("time")
    }

    #[test]
    fn attempts_are_named_by_their_channel_and_times_are_relative() {
        let out = Out { json: false, color: false };
        let mut t = Timeline::default();
        let events = [
            Event { at: at(0), kind: EventKind::Created },
            Event {
                at: at(10),
                kind: EventKind::SendStarted {
                    attempt: 1,
                    step: 0,
                    channel: "whatsapp".into(),
                    connection: Some("wa-1".into()),
                },
            },
            Event {
                at: at(1500),
                kind: EventKind::Status {
                    attempt: 1,
                    status: Status::Failed,
                    provider_at: None,
                    error: Some(Box::new(SendError::new(ErrorClass::Unreachable, "131026", "undeliverable"))),
                },
            },
        ];
        let lines: Vec<Line> = events.iter().map(|e| t.line(&out, e)).collect();
        assert_eq!(lines[0].text, "created");
        assert_eq!(lines[1].text, "sending via wa-1");
        assert_eq!(lines[2].channel, "whatsapp");
        assert!((lines[2].offset - 1.5).abs() < 1e-9);
        assert_eq!(lines[2].text, "failed unreachable 131026: undeliverable");
        assert_eq!(lines[2].render(&out), "   +1.50s  whatsapp  failed unreachable 131026: undeliverable");
        let finished =
            Event { at: at(2000), kind: EventKind::Finished { outcome: Outcome::Cancelled, cost: Cost::ZERO } };
        assert_eq!(t.line(&out, &finished).text, format!("cancelled  cost {}", Cost::ZERO));
    }
}
