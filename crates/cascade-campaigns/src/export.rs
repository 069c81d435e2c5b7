//! Exporting a campaign's recipients as CSV: those that failed, expired or were cancelled,
//! each with the reason, so the list can be fixed and sent again.

use std::str::FromStr;

use cascade_engine::store::{RecipientFilter, RecipientRecord, RecipientState};

/// Which recipients to export.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ExportKind {
    /// Cascades that failed, and recipients the engine refused to start.
    Failed,
    /// Recipients not started before the end, and cascades that expired.
    Expired,
    /// Recipients not started because of a cancel, and cascades cancelled.
    Cancelled,
    /// Cascades that delivered.
    Delivered,
    /// Recipients not started yet.
    Pending,
}

impl FromStr for ExportKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim() {
            "failed" => ExportKind::Failed,
            "expired" => ExportKind::Expired,
            "cancelled" => ExportKind::Cancelled,
            "delivered" => ExportKind::Delivered,
            "pending" => ExportKind::Pending,
            other => {
                return Err(format!(
                    "unknown status {other:?} (expected failed, expired, cancelled, delivered or pending)"
                ));
            }
        })
    }
}

/// Reads a comma-separated list of kinds (`failed,expired`).
pub fn parse_kinds(list: &str) -> Result<Vec<ExportKind>, String> {
    list.split(',').filter(|s| !s.trim().is_empty()).map(str::parse).collect()
}

/// The store filter selecting `kinds` (a page of `limit` after recipient `after`).
pub fn filter(kinds: &[ExportKind], after: Option<u64>, limit: usize) -> RecipientFilter {
    let mut f = RecipientFilter { after, limit, ..RecipientFilter::default() };
    for k in kinds {
        match k {
            ExportKind::Failed => {
                f.states.push(RecipientState::Refused);
                f.outcomes.push("failed".into());
            }
            ExportKind::Expired => {
                f.states.push(RecipientState::Expired);
                f.outcomes.push("expired".into());
            }
            ExportKind::Cancelled => {
                f.states.push(RecipientState::Cancelled);
                f.outcomes.push("cancelled".into());
            }
            ExportKind::Delivered => f.outcomes.push("delivered".into()),
            ExportKind::Pending => f.states.push(RecipientState::Pending),
        }
    }
    f
}

/// The CSV header of an export.
pub const HEADER: [&str; 10] =
    ["line", "phone", "email", "name", "status", "reason", "channel", "cost", "cascade_id", "at"];

/// One recipient as an export row (the columns of [`HEADER`]). `status` is the cascade's
/// outcome once it has one (`delivered`, `failed`, `expired`, `cancelled`, `refused`), else
/// the recipient's state (`pending`, `started`, `expired`, `cancelled`).
pub fn row(r: &RecipientRecord) -> [String; 10] {
    let result = r.result.as_ref();
    [
        r.line.to_string(),
        r.contact.phone.clone().unwrap_or_default(),
        r.contact.email.clone().unwrap_or_default(),
        r.contact.name.clone().unwrap_or_default(),
        result.map_or_else(|| r.state.as_str().to_owned(), |x| x.outcome.clone()),
        result.and_then(|x| x.reason.clone()).unwrap_or_else(|| default_reason(r.state).to_owned()),
        result.and_then(|x| x.channel.as_ref().map(ToString::to_string)).unwrap_or_default(),
        result.map(|x| x.cost.to_string()).unwrap_or_default(),
        r.cascade.map(|c| c.to_string()).unwrap_or_default(),
        r.changed_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default(),
    ]
}

fn default_reason(state: RecipientState) -> &'static str {
    match state {
        RecipientState::Expired => "not started before the campaign's end",
        RecipientState::Cancelled => "not started: the campaign was cancelled",
        _ => "",
    }
}

/// Writes recipients as CSV rows (after [`HEADER`], which the caller writes once).
pub fn write_rows<W: std::io::Write>(out: &mut csv::Writer<W>, rows: &[RecipientRecord]) -> csv::Result<()> {
    for r in rows {
        out.write_record(row(r))?;
    }
    Ok(())
}
