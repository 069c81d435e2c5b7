//! Connection pools: health, cool-down, sticky senders, subsets, rate limits.

mod common;

use std::time::Duration;

use cascade_engine::machine::PickRequest;
use cascade_engine::pool::{Connection, HealthPolicy, Pools, RateLimit};
use cascade_engine::*;
use cascade_testkit::{StubChannel, caps};
use common::t0;

fn pools(n: usize) -> Pools {
    let c =
        (0..n).map(|i| Connection::new(format!("wa-{i}"), StubChannel::new("whatsapp", caps::whatsapp()))).collect();
    Pools::new(c, HealthPolicy { failures_to_eject: 2, cool_down: Duration::from_secs(30) }).expect("pools")
}

fn pick(
    p: &Pools,
    now: Timestamp,
    preferred: Option<&ConnectionId>,
    subset: Option<&[ConnectionId]>,
) -> Option<String> {
    let channel = ChannelName::new("whatsapp");
    let req = PickRequest { channel: &channel, subset, preferred, excluded: &[], avoid: None };
    p.pool(&channel)?.pick(&req, now).map(|m| m.connection.id.to_string())
}

#[test]
fn repeated_connection_failures_take_a_connection_out_until_the_cool_down_ends() {
    let p = pools(2);
    let wa0 = ConnectionId::new("wa-0");
    p.report(&wa0, true, t0());
    assert_eq!(p.member(&wa0).map(|m| m.health().out_until), Some(None), "one failure is not enough");
    p.report(&wa0, true, t0());
    let picks: Vec<_> = (0..4).map(|_| pick(&p, t0(), None, None)).collect();
    assert!(picks.iter().all(|c| c.as_deref() == Some("wa-1")), "wa-0 is out: {picks:?}");
    let later = t0() + chrono::Duration::seconds(30);
    let picks: Vec<_> = (0..2).filter_map(|_| pick(&p, later, None, None)).collect();
    assert!(picks.contains(&"wa-0".to_string()), "back in after the cool-down: {picks:?}");
    p.report(&wa0, false, later);
    assert_eq!(p.member(&wa0).map(|m| m.health().consecutive_failures), Some(0), "a success resets the count");
}

#[test]
fn all_connections_out_means_none() {
    let p = pools(1);
    let wa0 = ConnectionId::new("wa-0");
    p.report(&wa0, true, t0());
    p.report(&wa0, true, t0());
    assert_eq!(pick(&p, t0(), None, None), None);
}

#[test]
fn sticky_sender_and_subsets() {
    let p = pools(3);
    let wa2 = ConnectionId::new("wa-2");
    for _ in 0..3 {
        assert_eq!(pick(&p, t0(), Some(&wa2), None).as_deref(), Some("wa-2"));
    }
    let subset = [ConnectionId::new("wa-1")];
    assert_eq!(
        pick(&p, t0(), Some(&wa2), Some(&subset)).as_deref(),
        Some("wa-1"),
        "stickiness never leaves the subset"
    );
}

#[test]
fn mismatched_and_duplicate_connections_are_refused() {
    let dup = Pools::new(
        vec![
            Connection::new("x", StubChannel::new("sms", caps::sms())),
            Connection::new("x", StubChannel::new("sms", caps::sms())),
        ],
        HealthPolicy::default(),
    );
    assert!(dup.unwrap_err().to_string().contains("`x` is used twice"));
    let bad = Pools::new(
        vec![Connection::new("x", StubChannel::new("sms", caps::sms())).rate_limit(RateLimit::per_second(0))],
        HealthPolicy::default(),
    );
    assert!(bad.is_err());
}

#[test]
fn pools_and_their_members_come_in_configuration_order() {
    let c = |id: &str, channel: &str| {
        let caps = match channel {
            "sms" => caps::sms(),
            "telegram" => caps::telegram(),
            _ => caps::whatsapp(),
        };
        Connection::new(id, StubChannel::new(channel, caps))
    };
    let p = Pools::new(
        vec![c("wa-b", "whatsapp"), c("sms-1", "sms"), c("wa-a", "whatsapp"), c("tg", "telegram"), c("sms-0", "sms")],
        HealthPolicy::default(),
    )
    .expect("pools");
    let seen: Vec<(String, Vec<String>)> = p
        .pools()
        .map(|pool| {
            let ids = pool.members().iter().map(|m| m.connection.id.to_string()).collect();
            (pool.channel().to_string(), ids)
        })
        .collect();
    let want = [("whatsapp", vec!["wa-b", "wa-a"]), ("sms", vec!["sms-1", "sms-0"]), ("telegram", vec!["tg"])];
    let want: Vec<(String, Vec<String>)> =
        want.iter().map(|(ch, ids)| (ch.to_string(), ids.iter().map(|i| i.to_string()).collect())).collect();
    assert_eq!(seen, want);
}

#[tokio::test(start_paused = true)]
async fn rate_limits_space_sends_out() {
    let p = Pools::new(
        vec![Connection::new("sms-1", StubChannel::new("sms", caps::sms())).rate_limit(RateLimit::per_second(5))],
        HealthPolicy::default(),
    )
    .expect("pools");
    let m = p.member(&"sms-1".into()).expect("member");
    let start = std::time::Instant::now();
    for _ in 0..10 {
        m.until_ready(false).await;
    }
    // governor keeps real time: 5 in a burst, then 5 more at 200 ms each.
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(900), "10 sends at 5/s took only {waited:?}");
}
