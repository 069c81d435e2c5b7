//! `GET /v1/connections`: each channel's connections, in configuration order, with their
//! health, rate limit, sends lately, share of the channel's sends and recent errors — the
//! console's Connections page as JSON.
//!
//! Health and the sends since start are the pools' own ([`Member::health`]); the sends of the
//! last minutes and the recent errors are what this server instance saw since it started
//! ([`Activity`]).
//!
//! [`Member::health`]: cascade_engine::pool::Member::health

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use cascade_engine::{Engine, Timestamp};
use serde::Serialize;
use utoipa::ToSchema;

use crate::activity::{Activity, RecentError};
use crate::auth::Scope;
use crate::{App, Problem};

/// The answer to `GET /v1/connections`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionsReport {
    /// When this server instance started counting: the recent sends and errors are what it
    /// saw since then.
    #[schema(value_type = String, format = DateTime)]
    pub since: Timestamp,
    /// When the report was made.
    #[schema(value_type = String, format = DateTime)]
    pub now: Timestamp,
    /// Every channel, in configuration order.
    pub channels: Vec<ChannelReport>,
}

/// One channel's pool.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelReport {
    /// The channel (`whatsapp`).
    pub channel: String,
    /// Its sends, all connections together.
    pub sends: SendCounts,
    /// Its connections, in configuration order.
    pub connections: Vec<ConnectionReport>,
}

/// One connection.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionReport {
    /// Its id (the `ID` of `[connections.ID]`).
    pub id: String,
    /// Its adapter (`whatsapp-cloud`).
    pub adapter: String,
    /// Its health in the pool.
    pub health: HealthReport,
    /// Its configured rate limit, if any.
    #[schema(nullable = true)]
    pub rate_limit: Option<RateLimitReport>,
    /// Its sends.
    pub sends: SendCounts,
    /// Its share of the channel's sends.
    pub share: Share,
    /// Its last send errors, newest first (at most 10).
    pub recent_errors: Vec<RecentError>,
}

/// A connection's health.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthReport {
    /// Whether the pool uses it now; `false` while it is out for a cool-down.
    pub in_pool: bool,
    /// Until when it is out (set while it is, and after, until a send through it ends
    /// without a `connection`-class error).
    #[schema(value_type = Option<String>, format = DateTime, nullable = true)]
    pub out_until: Option<Timestamp>,
    /// `connection`-class failures in a row (enough of them take it out).
    pub consecutive_failures: u32,
}

/// A configured send rate: at most `count` sends per `per`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RateLimitReport {
    /// How many sends…
    pub count: u32,
    /// …per this long (`1s`, `1m`).
    pub per: String,
}

/// Send counts.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct SendCounts {
    /// Since the server started (the pools' own count).
    pub total: u64,
    /// In the last 60 seconds.
    pub last_minute: u64,
    /// In the last 300 seconds.
    pub last_5_minutes: u64,
    /// The most in one second over the last 300 seconds.
    pub peak_per_second: u32,
}

/// A connection's part of its channel's sends, from 0 to 1; `null` while the channel has
/// sent nothing in that time.
#[derive(Debug, Serialize, ToSchema)]
pub struct Share {
    /// Since the server started.
    #[schema(nullable = true)]
    pub total: Option<f64>,
    /// In the last 300 seconds.
    #[schema(nullable = true)]
    pub last_5_minutes: Option<f64>,
}

/// The report as of now; error records name their cascade only when `sees_all`.
pub(crate) fn report(engine: &Engine, activity: &Activity, sees_all: bool) -> ConnectionsReport {
    let now = engine.now();
    let channels = engine
        .pools()
        .pools()
        .map(|pool| {
            let mut connections: Vec<ConnectionReport> = pool
                .members()
                .iter()
                .map(|m| {
                    let h = m.health();
                    let a = activity.connection(&m.connection.id, now).unwrap_or_default();
                    let mut recent_errors = a.recent_errors;
                    if !sees_all {
                        // Another key's cascade, and the provider's words about it (they often
                        // quote the recipient), are not this key's to see: class and code stay.
                        for e in &mut recent_errors {
                            e.cascade = None;
                            e.attempt = None;
                            e.detail.clear();
                        }
                    }
                    ConnectionReport {
                        id: m.connection.id.to_string(),
                        adapter: m.connection.channel.info().adapter.to_string(),
                        health: HealthReport {
                            in_pool: h.usable(now),
                            out_until: h.out_until,
                            consecutive_failures: h.consecutive_failures,
                        },
                        rate_limit: m.connection.rate_limit.map(|r| RateLimitReport {
                            count: r.count,
                            per: cascade_engine::model::duration::format(r.per),
                        }),
                        sends: SendCounts {
                            total: h.sends,
                            last_minute: a.last_minute,
                            last_5_minutes: a.last_5_minutes,
                            peak_per_second: a.peak_per_second,
                        },
                        share: Share { total: None, last_5_minutes: None },
                        recent_errors,
                    }
                })
                .collect();
            let sends = SendCounts {
                total: connections.iter().map(|c| c.sends.total).sum(),
                last_minute: connections.iter().map(|c| c.sends.last_minute).sum(),
                last_5_minutes: connections.iter().map(|c| c.sends.last_5_minutes).sum(),
                peak_per_second: connections.iter().map(|c| c.sends.peak_per_second).max().unwrap_or(0),
            };
            for c in &mut connections {
                c.share = Share {
                    total: fraction(c.sends.total, sends.total),
                    last_5_minutes: fraction(c.sends.last_5_minutes, sends.last_5_minutes),
                };
            }
            ChannelReport { channel: pool.channel().to_string(), sends, connections }
        })
        .collect();
    ConnectionsReport { since: activity.started_at(), now, channels }
}

fn fraction(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// `GET /v1/connections`: every connection, grouped by channel in configuration order, with
/// its health, rate limit, sends lately, share of its channel's sends and recent errors, as
/// this server instance saw them since it started. Errors name their cascade only for an
/// `admin` key.
#[utoipa::path(get, path = "/v1/connections",
    responses((status = 200, body = ConnectionsReport), (status = 401, body = crate::problem::ProblemDetails),
        (status = 403, body = crate::problem::ProblemDetails)))]
pub async fn list(State(app): State<App>, headers: HeaderMap) -> Result<Response, Problem> {
    let key = app.inner().keys.authorize(&headers, Scope::Read)?;
    Ok(Json(report(&app.inner().engine, &app.inner().activity, key.sees_all())).into_response())
}

#[cfg(test)]
mod tests {
    use cascade_engine::pool::RateLimit;
    use cascade_engine::{CascadeId, Connection, ConnectionId, Cost, ErrorClass, EventKind, SendError};
    use cascade_testkit::{StubChannel, caps};

    use super::*;

    fn engine() -> Engine {
        let wa = || StubChannel::new("whatsapp", caps::whatsapp());
        Engine::builder()
            .connection(Connection::new("wa-b", wa()).rate_limit(RateLimit::per_second(20)))
            .connection(Connection::new("sms-1", StubChannel::new("sms", caps::sms())))
            .connection(Connection::new("wa-a", wa()))
            .build()
            .expect("engine")
    }

    fn send(a: &Activity, engine: &Engine, connection: &str, ok: bool) {
        let (c, at) = (CascadeId::new(), engine.now());
        let member = engine.pools().member(&ConnectionId::new(connection)).expect("member");
        let channel = member.connection.channel.info().channel.clone();
        let kind = EventKind::SendStarted { attempt: 1, step: 0, channel, connection: Some(connection.into()) };
        a.observe(c, at, &kind);
        let result = if ok {
            EventKind::Accepted { attempt: 1, provider_message_id: "pm".into(), cost: Cost::ZERO }
        } else {
            let error = SendError::new(ErrorClass::Connection, "401", "bad token");
            EventKind::SendFailed { attempt: 1, error: Box::new(error), retry_at: None }
        };
        a.observe(c, at, &result);
        engine.pools().report(&ConnectionId::new(connection), !ok, at);
    }

    #[tokio::test]
    async fn channels_and_connections_come_in_configuration_order_with_their_shares() {
        let engine = engine();
        let a = Activity::of_engine(&engine);
        for (connection, ok) in [("wa-b", true), ("wa-b", true), ("wa-b", false), ("wa-a", true)] {
            send(&a, &engine, connection, ok);
        }
        let r = report(&engine, &a, true);
        let order: Vec<(&str, Vec<&str>)> = r
            .channels
            .iter()
            .map(|ch| (ch.channel.as_str(), ch.connections.iter().map(|c| c.id.as_str()).collect()))
            .collect();
        assert_eq!(order, [("whatsapp", vec!["wa-b", "wa-a"]), ("sms", vec!["sms-1"])]);
        let wa = &r.channels[0];
        assert_eq!((wa.sends.total, wa.sends.last_minute, wa.sends.last_5_minutes), (4, 4, 4));
        let (b, a_) = (&wa.connections[0], &wa.connections[1]);
        assert_eq!((b.share.total, b.share.last_5_minutes), (Some(0.75), Some(0.75)));
        assert_eq!((a_.share.total, a_.share.last_5_minutes), (Some(0.25), Some(0.25)));
        assert_eq!(b.rate_limit.as_ref().map(|l| (l.count, l.per.as_str())), Some((20, "1s")));
        assert!(a_.rate_limit.is_none());
        assert_eq!(b.health.consecutive_failures, 1);
        assert!(b.health.in_pool);
        assert_eq!(b.recent_errors.len(), 1);
        assert!(b.recent_errors[0].cascade.is_some());
        // A channel that sent nothing has no shares yet.
        let sms = &r.channels[1].connections[0];
        assert_eq!((sms.share.total, sms.share.last_5_minutes), (None, None));

        // Keys that see only their own cascades are not told which cascades failed.
        let r = report(&engine, &a, false);
        let e = &r.channels[0].connections[0].recent_errors[0];
        assert_eq!((e.cascade, e.attempt, e.code.as_str()), (None, None, "401"));
        let json = serde_json::to_value(e).expect("json");
        assert!(json.get("cascade").is_none() && json.get("attempt").is_none(), "{json}");
    }
}
