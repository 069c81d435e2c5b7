//! The Connections page: each channel's pool, connection by connection — in the pool or out
//! for a cool-down, its rate limit, its sends lately, its share of the channel's sends (the
//! round-robin made visible) and its recent errors — redrawn every 10 s from a fragment.
//!
//! The figures are [`GET /v1/connections`](crate::connections)'s, put into words.

use axum::extract::State;
use axum::response::Response;
use cascade_engine::Timestamp;
use minijinja::context;
use serde::Serialize;

use super::session::Session;
use super::{PageError, render};
use crate::App;
use crate::connections::{ConnectionReport, ConnectionsReport, report};

/// How often the page redraws its figures, in seconds.
const REFRESH_SECS: u32 = 10;

/// The page's figures in words.
#[derive(Debug, Serialize)]
struct View {
    since: String,
    since_iso: String,
    now: String,
    now_iso: String,
    every: u32,
    channels: Vec<ChannelView>,
}

#[derive(Debug, Serialize)]
struct ChannelView {
    channel: String,
    total: u64,
    last_5_minutes: u64,
    connections: Vec<ConnectionView>,
    /// Whether any of its connections had an error lately.
    errors: bool,
}

#[derive(Debug, Serialize)]
struct ConnectionView {
    id: String,
    adapter: String,
    /// `healthy` or `out`, for the badge's colour.
    state: &'static str,
    /// The badge: `in the pool` or `out`.
    badge: &'static str,
    /// What follows it: `until 12:03:04 UTC, after 3 failures in a row`, `1 failure in a row`.
    health: String,
    limit: String,
    last_minute: u64,
    last_5_minutes: u64,
    peak: u32,
    share_total: ShareView,
    share_recent: ShareView,
    errors: Vec<ErrorView>,
}

/// One share: its bar's length and its text.
#[derive(Debug, Serialize)]
struct ShareView {
    /// The bar's length, 0 to 100; `None` when the channel sent nothing.
    percent: Option<u32>,
    /// `60 %` or `no sends`.
    text: String,
    /// `3 of 5 sends`.
    of: String,
}

#[derive(Debug, Serialize)]
struct ErrorView {
    at: String,
    at_iso: String,
    class: String,
    code: String,
    detail: String,
    from_status: bool,
    cascade: Option<String>,
}

fn clock(t: Timestamp) -> String {
    t.format("%H:%M:%S").to_string()
}

/// `12:03:04`, with the date when it is not `now`'s day.
fn when(t: Timestamp, now: Timestamp) -> String {
    if t.date_naive() == now.date_naive() { clock(t) } else { t.format("%Y-%m-%d %H:%M:%S").to_string() }
}

fn share(part: u64, whole: u64, fraction: Option<f64>) -> ShareView {
    match fraction {
        Some(f) => {
            let percent = (f * 100.0).round().clamp(0.0, 100.0) as u32;
            ShareView { percent: Some(percent), text: format!("{percent} %"), of: format!("{part} of {whole} sends") }
        }
        None => ShareView { percent: None, text: "no sends".to_owned(), of: String::new() },
    }
}

fn connection_view(c: ConnectionReport, total: u64, recent: u64, now: Timestamp) -> ConnectionView {
    let h = &c.health;
    let failures = |n: u32| if n == 1 { "1 failure".to_owned() } else { format!("{n} failures") };
    let (state, badge, health) = match h.out_until {
        Some(until) if !h.in_pool => {
            let until = when(until, now);
            ("out", "out", format!("until {until} UTC, after {} in a row", failures(h.consecutive_failures)))
        }
        _ if h.consecutive_failures > 0 => {
            ("healthy", "in the pool", format!("{} in a row", failures(h.consecutive_failures)))
        }
        _ => ("healthy", "in the pool", String::new()),
    };
    let limit = match &c.rate_limit {
        Some(l) if l.per == "1s" => format!("{} per second", l.count),
        Some(l) if l.per == "1m" => format!("{} per minute", l.count),
        Some(l) => format!("{} per {}", l.count, l.per),
        None => "none".to_owned(),
    };
    ConnectionView {
        share_total: share(c.sends.total, total, c.share.total),
        share_recent: share(c.sends.last_5_minutes, recent, c.share.last_5_minutes),
        id: c.id,
        adapter: c.adapter,
        state,
        badge,
        health,
        limit,
        last_minute: c.sends.last_minute,
        last_5_minutes: c.sends.last_5_minutes,
        peak: c.sends.peak_per_second,
        errors: c
            .recent_errors
            .into_iter()
            .map(|e| ErrorView {
                at: when(e.at, now),
                at_iso: e.at.to_rfc3339(),
                class: e.class.to_string(),
                code: e.code,
                detail: e.detail,
                from_status: e.stage == crate::activity::ErrorStage::Status,
                cascade: e.cascade.map(|c| c.to_string()),
            })
            .collect(),
    }
}

fn view(r: ConnectionsReport) -> View {
    let now = r.now;
    let channels = r
        .channels
        .into_iter()
        .map(|ch| {
            let (total, recent) = (ch.sends.total, ch.sends.last_5_minutes);
            let connections: Vec<ConnectionView> =
                ch.connections.into_iter().map(|c| connection_view(c, total, recent, now)).collect();
            let errors = connections.iter().any(|c| !c.errors.is_empty());
            ChannelView { channel: ch.channel, total, last_5_minutes: recent, connections, errors }
        })
        .collect();
    View {
        since: r.since.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        since_iso: r.since.to_rfc3339(),
        now: format!("{} UTC", clock(now)),
        now_iso: now.to_rfc3339(),
        every: REFRESH_SECS,
        channels,
    }
}

fn current(app: &App, session: &Session) -> View {
    view(report(&app.inner().engine, &app.inner().activity, session.key().sees_all()))
}

/// `GET /console/connections`.
pub(crate) async fn page(State(app): State<App>, session: Session) -> Result<Response, PageError> {
    render(
        "connections.html",
        context! {
            ..session.page("connections", "Connections"),
            ..context! { v => current(&app, &session) }
        },
    )
}

/// `GET /console/connections/pools`: the figures alone, for the page to swap in.
pub(crate) async fn pools(State(app): State<App>, session: Session) -> Result<Response, PageError> {
    render("pools.html", context! { v => current(&app, &session) })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::connections::{HealthReport, RateLimitReport, SendCounts, Share};

    fn at(h: u32, m: u32) -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2027, 3, 1, h, m, 0).single().expect("time")
    }

    fn connection(health: HealthReport, rate_limit: Option<RateLimitReport>) -> ConnectionReport {
        ConnectionReport {
            id: "wa-1".into(),
            adapter: "whatsapp-cloud".into(),
            health,
            rate_limit,
            sends: SendCounts { total: 3, last_minute: 1, last_5_minutes: 2, peak_per_second: 1 },
            share: Share { total: Some(0.375), last_5_minutes: None },
            recent_errors: Vec::new(),
        }
    }

    #[test]
    fn times_carry_their_date_when_it_is_not_today() {
        assert_eq!(when(at(9, 5), at(23, 0)), "09:05:00");
        assert_eq!(when(at(9, 5), at(9, 5) + chrono::Duration::days(1)), "2027-03-01 09:05:00");
    }

    #[test]
    fn health_limits_and_shares_read_as_words() {
        let out = HealthReport { in_pool: false, out_until: Some(at(12, 3)), consecutive_failures: 3 };
        let v = connection_view(connection(out, None), 8, 0, at(12, 2));
        assert_eq!((v.state, v.badge), ("out", "out"));
        assert_eq!(v.health, "until 12:03:00 UTC, after 3 failures in a row");
        assert_eq!(v.limit, "none");
        assert_eq!((v.share_total.percent, v.share_total.text.as_str()), (Some(38), "38 %"));
        assert_eq!(v.share_total.of, "3 of 8 sends");
        assert_eq!((v.share_recent.percent, v.share_recent.text.as_str()), (None, "no sends"));

        // Back in after the cool-down, on trial until a send succeeds.
        let trial = HealthReport { in_pool: true, out_until: Some(at(12, 3)), consecutive_failures: 1 };
        let limit = RateLimitReport { count: 20, per: "1s".into() };
        let v = connection_view(connection(trial, Some(limit)), 8, 2, at(12, 4));
        assert_eq!((v.state, v.badge, v.health.as_str()), ("healthy", "in the pool", "1 failure in a row"));
        assert_eq!(v.limit, "20 per second");
        let limit = RateLimitReport { count: 500, per: "1h".into() };
        let fine = HealthReport { in_pool: true, out_until: None, consecutive_failures: 0 };
        let v = connection_view(connection(fine, Some(limit)), 8, 2, at(12, 4));
        assert_eq!((v.badge, v.health.as_str(), v.limit.as_str()), ("in the pool", "", "500 per 1h"));
    }
}
