//! A load of cascades for the fault tests: one recipient per cascade (so the sandbox's log
//! can be matched to it), a mix of sandbox behaviours, a loader that starts cascades with
//! idempotency keys and repeats a start whose answer was lost, and the checks every faulty run
//! must pass.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{Api, channels, events_of, request};

/// A small random number generator (xorshift), seeded per test so a failing run can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn seeded(test: &str) -> Self {
        let seed = std::env::var("CASCADE_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
        });
        eprintln!("{test}: CASCADE_FAULT_SEED={seed}");
        Self(seed.max(1))
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The phone number of cascade `i` (one recipient per cascade, so the sandbox's log can be
/// matched to it).
pub fn phone(i: usize) -> String {
    format!("+1201555{:04}", 1000 + i)
}

/// Sandbox rules for `count` recipients: most are delivered on WhatsApp after 300 ms; every
/// fifth never gets a WhatsApp report (the step times out, SMS delivers), every seventh is not
/// on WhatsApp, every eleventh meets one WhatsApp 500 first. Every webhook is redelivered until
/// the server takes it, as providers do, so reports sent while the server is down still land.
pub fn scenarios(count: usize) -> String {
    let mut toml = String::from("[default]\nbehaviour = \"deliver\"\nafter = \"300ms\"\nredeliver = true\n");
    for i in 0..count {
        let rule = if i % 5 == 0 {
            "behaviour = \"silent\""
        } else if i % 7 == 0 {
            "behaviour = \"not_on_channel\""
        } else if i % 11 == 0 {
            "behaviour = \"server_error\"\ntimes = 1"
        } else {
            continue;
        };
        toml += &format!(
            "\n[[recipient]]\naddress = \"{}\"\nchannels = [\"whatsapp\"]\n{rule}\nredeliver = true\n",
            phone(i)
        );
    }
    toml
}

/// WhatsApp then SMS. WhatsApp's window is short, so silent steps end soon; SMS's is long
/// enough for a report sent while the server was down to be redelivered.
pub fn body(i: usize) -> Value {
    request(
        json!(phone(i)),
        json!([
            {"channel": "whatsapp", "until": "delivered", "timeout": "2s"},
            {"channel": "sms", "until": "delivered", "timeout": "10s"},
        ]),
    )
}

/// A short lease, so work held by a killed server falls due again within a second.
pub const ENGINE: &str = "\n[engine]\nlease = \"1s\"\nsend_timeout = \"3s\"\n";

/// Starts cascades `range` from `workers` concurrent clients, each with the `Idempotency-Key`
/// `load-{i}`. A start that gets no answer (the server is down) or a 5xx is sent again, same
/// key, until it is accepted. Returns the cascade id of each `i`.
pub async fn load(bases: Vec<String>, range: std::ops::Range<usize>, workers: usize) -> HashMap<usize, String> {
    let next = Arc::new(AtomicUsize::new(range.start));
    let end = range.end;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (next, bases) = (next.clone(), bases.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    return ids;
                }
                let mut tries = 0usize;
                loop {
                    let base = &bases[(w + tries) % bases.len()];
                    tries += 1;
                    assert!(tries < 2_000, "cascade {i} was never accepted");
                    let sent = client
                        .post(format!("{base}/v1/cascades"))
                        .bearer_auth(super::KEY)
                        .header("idempotency-key", format!("load-{i}"))
                        .json(&body(i))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == StatusCode::ACCEPTED => {
                            let answer: Value = r.json().await.unwrap_or_default();
                            if let Some(id) = answer["id"].as_str() {
                                ids.push((i, id.to_owned()));
                                break;
                            }
                        }
                        Ok(r) if r.status().is_server_error() => {}
                        Ok(r) => panic!("cascade {i}: {} {}", r.status(), r.text().await.unwrap_or_default()),
                        Err(_) => {}
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    let mut all = HashMap::new();
    for t in tasks {
        all.extend(t.await.expect("loader"));
    }
    all
}

/// Waits (at most `limit`) until every cascade in `ids` has an outcome, and returns their views.
pub async fn all_finished(api: &Api, ids: &HashMap<usize, String>, limit: Duration) -> HashMap<usize, Value> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut views = HashMap::new();
    for (&i, id) in ids {
        loop {
            let view = api.get(id).await;
            if view["state"] != "running" {
                views.insert(i, view);
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "cascade {i} ({id}) still running after {limit:?}: {view:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    views
}

/// Whether a `delivered` report for the cascade came after its outcome (a report the provider
/// had to redeliver because the server or its store was down, which came too late for the
/// step's window), waiting for it at most 30 s.
async fn late_delivery(api: &Api, id: &str) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let view = api.get(id).await;
        let events = view["events"].as_array().cloned().unwrap_or_default();
        let end = events.iter().position(|e| e["type"] == "finished");
        if end.is_some_and(|end| events[end..].iter().any(|e| e["type"] == "status" && e["status"] == "delivered")) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The ids of every cascade the server holds, page by page.
async fn all_ids(api: &Api) -> std::collections::HashSet<String> {
    let mut ids = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        // A cursor is a cascade id: nothing in it needs escaping.
        let url = match &cursor {
            Some(c) => format!("{}/v1/cascades?limit=200&cursor={c}", api.base),
            None => format!("{}/v1/cascades?limit=200", api.base),
        };
        let page: Value =
            api.client.get(url).bearer_auth(super::KEY).send().await.expect("list").json().await.expect("json");
        let items = page["items"].as_array().expect("items");
        ids.extend(items.iter().filter_map(|c| c["id"].as_str().map(str::to_owned)));
        match page["next_cursor"].as_str() {
            Some(next) if !items.is_empty() => cursor = Some(next.to_owned()),
            _ => return ids,
        }
    }
}

/// What every run must show, whatever the moments of the faults.
pub async fn check(
    api: &Api,
    views: &HashMap<usize, Value>,
    ids: &HashMap<usize, String>,
    sandbox: &cascade_sandbox::Sandbox,
) {
    let stored = all_ids(api).await;
    let started: std::collections::HashSet<_> = ids.values().cloned().collect();
    assert_eq!(started.len(), ids.len(), "two keys answered with the same cascade");
    assert_eq!(stored, started, "a start repeated with its Idempotency-Key made a second cascade");
    let (mut attempts, mut unknown, mut sent, mut late) = (0, 0, 0, 0);
    for (i, view) in views {
        let finished = events_of(view, "finished").len();
        assert_eq!(finished, 1, "cascade {i}: exactly one outcome: {view:#}");
        let lost: Vec<_> = view["attempts"]
            .as_array()
            .expect("attempts")
            .iter()
            .filter(|a| a["state"] == "unknown")
            .map(|a| a["channel"].as_str().unwrap_or("?").to_owned())
            .collect();
        if view["state"] != "delivered" && lost.is_empty() {
            // Every recipient here can be reached: only a send cut off by a kill, or a report
            // held up by the fault past the step's window, can cost a cascade its delivery.
            assert!(
                late_delivery(api, &ids[i]).await,
                "cascade {i} ended {} without a lost send or a late report: {view:#}",
                view["state"]
            );
            late += 1;
        }
        for (channel, provider) in [("whatsapp", "whatsapp"), ("sms", "sms")] {
            let recorded = channels(view).iter().filter(|c| *c == channel).count();
            let cut = lost.iter().filter(|c| *c == channel).count();
            let received = super::sends_to(sandbox, provider, &phone(*i));
            // Every send the sandbox received is an attempt on record; an attempt cut off by a
            // kill may or may not have reached it.
            assert!(
                (recorded - cut..=recorded).contains(&received),
                "cascade {i}: {received} {channel} sends received, {recorded} attempts recorded ({cut} unknown): {view:#}"
            );
            sent += received;
        }
        attempts += channels(view).len();
        unknown += lost.len();
    }
    eprintln!(
        "{} cascades, {attempts} attempts ({unknown} unknown), {sent} sends received, {late} reports too late",
        views.len()
    );
}
