//! Scenario `campaign-rate`: does a campaign keep its rate, as the provider sees it?
//!
//! The provider sandbox (`cascade-sandbox`) serves Twilio's API on a loopback port, on a
//! runtime of its own. A server-free engine (no HTTP API: the runner and the engine in this
//! process, on another runtime) over a SQLite file with full durability has one connection, the
//! real Twilio adapter (`cascade-sms-twilio`) pointed at the sandbox. A campaign of
//! `rate × seconds` recipients (default 1,000/s for 30 s) is created through
//! `Campaigns::create`, to start at once, with no sending window; each cascade is one SMS step
//! that succeeds once Twilio accepts the message. When every recipient has been started and
//! every send answered, the sandbox's request log is the witness: its messages are counted per
//! wall-clock second (by the time the sandbox logged each), the first and last seconds, which
//! the campaign fills only in part, left out.

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cascade_campaigns::{CampaignSpec, Campaigns, CampaignsConfig, Format, NewCampaign, Schedule};
use cascade_engine::store::{CampaignState, RecipientFilter, RecipientState};
use cascade_engine::{CampaignId, Engine, Message, Policy, Status, Step};
use cascade_sandbox::{Sandbox, SandboxConfig};
use cascade_sms_twilio::{Twilio, TwilioConfig};
use cascade_store_sql::SqliteStore;
use tokio::runtime::Runtime;

use crate::durable::Scratch;
use crate::{cpu, report, round1};

const SCENARIO: &str = "campaign-rate";
const ENGINE_THREADS: &str = "bench-engine";
const SANDBOX_THREADS: &str = "sandbox";

fn runtime(threads: &str) -> Result<Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(threads)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))
}

/// One message the sandbox received: for whom, and when it logged it (ms since the epoch).
#[derive(Clone, Debug, PartialEq)]
struct Received {
    to: String,
    at_ms: i64,
    status: u16,
}

/// What the sandbox's log says about a campaign's sending.
#[derive(Debug, PartialEq)]
struct Witness {
    /// Messages per full wall-clock second, in order.
    per_second: Vec<u32>,
    /// Messages in all, and the distinct recipients they went to.
    messages: usize,
    recipients: usize,
    /// Messages the sandbox did not answer `201 Created`.
    refused: usize,
    /// From the first message to the last, in seconds.
    span: f64,
}

impl Witness {
    /// Counts `received`; fails when a recipient got more than one message or when fewer
    /// recipients got one than were `started`.
    fn of(received: &[Received], started: u64) -> Result<Self, String> {
        let mut by_recipient: HashMap<&str, u32> = HashMap::with_capacity(received.len());
        for r in received {
            *by_recipient.entry(r.to.as_str()).or_default() += 1;
        }
        let mut twice: Vec<(&str, u32)> = by_recipient.iter().filter(|(_, n)| **n > 1).map(|(t, n)| (*t, *n)).collect();
        if !twice.is_empty() {
            twice.sort_unstable();
            return Err(format!(
                "the sandbox received more than one message for {} recipients, e.g. {:?}",
                twice.len(),
                &twice[..twice.len().min(3)]
            ));
        }
        if (by_recipient.len() as u64) < started {
            return Err(format!(
                "{started} recipients were started, but the sandbox received messages for only {}",
                by_recipient.len()
            ));
        }
        let mut seconds: BTreeMap<i64, u32> = BTreeMap::new();
        for r in received {
            *seconds.entry(r.at_ms.div_euclid(1000)).or_default() += 1;
        }
        let (first, last) = match (seconds.keys().next(), seconds.keys().next_back()) {
            (Some(f), Some(l)) => (*f, *l),
            _ => (0, 0),
        };
        // Every second strictly between the first and the last, empty ones included.
        let per_second = ((first + 1)..last).map(|s| seconds.get(&s).copied().unwrap_or(0)).collect();
        let (lo, hi) = received.iter().fold((i64::MAX, i64::MIN), |(lo, hi), r| (lo.min(r.at_ms), hi.max(r.at_ms)));
        Ok(Witness {
            per_second,
            messages: received.len(),
            recipients: by_recipient.len(),
            refused: received.iter().filter(|r| r.status != 201).count(),
            span: if received.is_empty() { 0.0 } else { (hi - lo) as f64 / 1000.0 },
        })
    }

    fn mean(&self) -> f64 {
        if self.per_second.is_empty() {
            return f64::NAN;
        }
        self.per_second.iter().map(|n| f64::from(*n)).sum::<f64>() / self.per_second.len() as f64
    }

    /// The largest |count − rate| / rate over the full seconds, in percent.
    fn max_deviation_pct(&self, rate: f64) -> f64 {
        self.per_second.iter().map(|n| (f64::from(*n) - rate).abs() / rate * 100.0).fold(f64::NAN, f64::max)
    }

    fn sorted(&self) -> Vec<u32> {
        let mut s = self.per_second.clone();
        s.sort_unstable();
        s
    }
}

/// The runner's batches, as the store recorded them: every recipient of a batch is marked
/// started at one instant.
#[derive(Debug, Default)]
struct Batches {
    count: usize,
    mean_size: f64,
    /// Between one batch's marking and the next's (ms).
    interval_p50_ms: f64,
    interval_max_ms: f64,
}

impl Batches {
    fn of(mut marked_ns: Vec<i64>) -> Self {
        marked_ns.sort_unstable();
        let total = marked_ns.len();
        marked_ns.dedup();
        if marked_ns.is_empty() {
            return Self::default();
        }
        let mut gaps: Vec<f64> = marked_ns.windows(2).map(|w| (w[1] - w[0]) as f64 / 1e6).collect();
        gaps.sort_by(f64::total_cmp);
        let at = |q: f64| gaps.get(((q * gaps.len() as f64).ceil() as usize).clamp(1, gaps.len().max(1)) - 1);
        Self {
            count: marked_ns.len(),
            mean_size: total as f64 / marked_ns.len() as f64,
            interval_p50_ms: at(0.5).copied().unwrap_or(f64::NAN),
            interval_max_ms: gaps.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// A recipient list of `n` US numbers, one per row, in CSV.
fn list(n: usize) -> Cursor<Vec<u8>> {
    let mut csv = String::with_capacity(n * 40 + 16);
    csv.push_str("phone,name\n");
    for i in 0..n {
        csv.push_str(&crate::campaign::phone(i));
        csv.push_str(&format!(",Recipient {i}\n"));
    }
    Cursor::new(csv.into_bytes())
}

fn spec(rate: usize) -> Result<CampaignSpec, String> {
    Ok(CampaignSpec {
        message: Message::text("Hi {{contact.name}}, our store opens on Monday"),
        // One SMS step, done once Twilio has accepted the message: every cascade ends with its
        // send answered, so the campaign settles without status callbacks.
        policy: Arc::new(Policy::new([Step::new("sms").until(Status::Accepted)])),
        variables: serde_json::Value::Null,
        schedule: Schedule::default(),
        rate: format!("{rate}/s").parse().map_err(|e| format!("--count {rate}: {e}"))?,
        metadata: serde_json::Value::Null,
    })
}

/// What a run measured.
#[derive(Debug)]
struct Run {
    witness: Witness,
    batches: Batches,
    /// CPU seconds: the engine's runtime (runner, engine, adapter), SQLite's threads, the
    /// sandbox's runtime, and the rest; and the wall time they were used over.
    cpu: [f64; 4],
    wall: f64,
}

/// Runs the campaign and counts what the sandbox received.
fn run_campaign(rate: usize, seconds: usize) -> Result<Run, String> {
    let n = rate * seconds;
    let scratch = Scratch::new();
    let sandbox_rt = runtime(SANDBOX_THREADS)?;
    let sandbox = sandbox_rt.block_on(Sandbox::start(SandboxConfig::default())).map_err(|e| format!("sandbox: {e}"))?;
    let base_url = sandbox.base_url("sms");
    let rt = runtime(ENGINE_THREADS)?;
    let db = scratch.0.join("rate.db");
    let task = rt.spawn(async move {
        // Durability `full` (the default): every commit is fsynced.
        let store = Arc::new(SqliteStore::open(&db).await.map_err(|e| format!("open {}: {e}", db.display()))?);
        let mut twilio = TwilioConfig::new(
            cascade_sandbox::DEFAULT_TWILIO_ACCOUNT_SID,
            cascade_sandbox::DEFAULT_TWILIO_AUTH_TOKEN,
            "+15550009999",
        );
        twilio.base_url = base_url;
        let twilio = Arc::new(Twilio::new(twilio).map_err(|e| format!("Twilio config: {e}"))?);
        let engine = Engine::builder()
            .store(store)
            .connection(twilio.connection("sms-main"))
            .build()
            .map_err(|e| format!("engine: {e}"))?;
        let campaigns = Campaigns::new(engine.clone(), CampaignsConfig::default());
        campaigns.start();
        let new = NewCampaign {
            name: "bench rate".into(),
            owner: None,
            spec: spec(rate)?,
            region: Some("US".parse().expect("region")),
            format: Some(Format::Csv),
        };
        let threads_before = cpu::threads();
        let start = Instant::now();
        let (record, report) = campaigns.create(new, list(n), |_| {}).await.map_err(|e| format!("create: {e}"))?;
        if report.valid != n as u64 {
            return Err(format!(
                "{} of {n} recipients valid: {:?}",
                report.valid,
                &report.errors[..report.errors.len().min(3)]
            ));
        }
        let started = settle(&campaigns, record.id, seconds).await?;
        let wall = start.elapsed().as_secs_f64();
        let used = cpu::used(&threads_before, &cpu::threads());
        let filter = RecipientFilter { states: vec![RecipientState::Started], limit: usize::MAX, ..Default::default() };
        let marked = campaigns.recipients(record.id, &filter).await.map_err(|e| format!("recipients: {e}"))?;
        let marked_ns = marked.iter().filter_map(|r| r.changed_at?.timestamp_nanos_opt()).collect();
        campaigns.stop();
        engine.shutdown(Duration::from_secs(5)).await;
        Ok::<_, String>((started, Batches::of(marked_ns), used, wall))
    });
    let (started, batches, used, wall) = rt.block_on(task).map_err(|e| format!("the campaign task failed: {e}"))??;
    rt.shutdown_timeout(Duration::from_secs(5));

    let mut cpu = [0.0; 4];
    for (_, t) in used {
        let group = if t.name.starts_with(ENGINE_THREADS) {
            0
        } else if crate::cpu::is_sqlite(&t.name) {
            1
        } else if t.name.starts_with(SANDBOX_THREADS) {
            2
        } else {
            3
        };
        cpu[group] += t.seconds;
    }
    let received: Vec<Received> = sandbox
        .requests()
        .into_iter()
        .filter(|r| r.provider == "sms" && r.method == "POST")
        .filter_map(|r| {
            let at = chrono::DateTime::parse_from_rfc3339(&r.at).ok()?.timestamp_millis();
            Some(Received { to: r.recipient?, at_ms: at, status: r.status })
        })
        .collect();
    sandbox_rt.block_on(sandbox.stop());
    sandbox_rt.shutdown_timeout(Duration::from_secs(5));
    let witness = Witness::of(&received, started)?;
    Ok(Run { witness, batches, cpu, wall })
}

/// Waits until the campaign is finished and every cascade has ended (each send answered);
/// returns the recipients started. Gives up after three times the expected duration plus a
/// minute. While the campaign runs it reads only the campaign's row (and, every 5 s, the
/// engine's send counter for the progress line): counting its recipients is a scan of them,
/// which would compete with the runner.
async fn settle(campaigns: &Campaigns, id: CampaignId, seconds: usize) -> Result<u64, String> {
    let limit = Duration::from_secs(seconds as u64 * 3 + 60);
    let start = Instant::now();
    let mut said = Instant::now();
    let sends = || -> u64 {
        campaigns.engine().pools().pools().map(|p| p.members().iter().map(|m| m.health().sends).sum::<u64>()).sum()
    };
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let state = campaigns.get(id).await.map_err(|e| format!("campaign: {e}"))?.state;
        if state == CampaignState::Finished {
            let p = campaigns.progress(id).await.map_err(|e| format!("progress: {e}"))?;
            if p.running == 0 {
                return Ok(p.started);
            }
        } else if state != CampaignState::Running {
            return Err(format!("the campaign is {state}"));
        }
        if said.elapsed() >= Duration::from_secs(5) {
            said = Instant::now();
            eprintln!("  {:.0?}: {} sends answered, campaign {state}", start.elapsed(), sends());
        }
        if start.elapsed() > limit {
            return Err(format!("the campaign has not settled after {limit:?}"));
        }
    }
}

/// Runs scenario `campaign-rate`: `rate` per second (default 1,000) for `seconds` (default 30).
/// Fails when the sandbox received a message twice for one recipient, or fewer messages than
/// recipients were started.
pub fn run(rate: Option<usize>, seconds: Option<usize>) -> Result<(), String> {
    let rate = rate.unwrap_or(1_000);
    let seconds = seconds.unwrap_or(30);
    eprintln!("  a campaign of {} recipients at {rate}/s through the Twilio adapter and the sandbox", rate * seconds);
    let run = run_campaign(rate, seconds)?;
    let w = &run.witness;
    let sorted = w.sorted();
    report(SCENARIO, "achieved_per_sec", round1(w.mean()));
    report(SCENARIO, "max_deviation_pct", w.max_deviation_pct(rate as f64));
    report(SCENARIO, "seconds", w.per_second.len() as f64);
    if let (Some(min), Some(max)) = (sorted.first(), sorted.last()) {
        report(SCENARIO, "min_per_sec", f64::from(*min));
        report(SCENARIO, "p50_per_sec", f64::from(sorted[(sorted.len() - 1) / 2]));
        report(SCENARIO, "max_per_sec", f64::from(*max));
    }
    report(SCENARIO, "overall_per_sec", round1(w.messages.saturating_sub(1) as f64 / w.span));
    report(SCENARIO, "messages", w.messages as f64);
    report(SCENARIO, "recipients", w.recipients as f64);
    report(SCENARIO, "non_201", w.refused as f64);
    report(SCENARIO, "runner_batches", run.batches.count as f64);
    report(SCENARIO, "runner_batch_mean", run.batches.mean_size);
    report(SCENARIO, "runner_interval_p50_ms", run.batches.interval_p50_ms);
    report(SCENARIO, "runner_interval_max_ms", run.batches.interval_max_ms);
    let names = ["engine_cpu_pct", "sqlite_cpu_pct", "sandbox_cpu_pct", "other_cpu_pct"];
    for (name, seconds) in names.iter().zip(run.cpu) {
        report(SCENARIO, name, cpu::pct(seconds, run.wall));
    }
    eprintln!("  per second: {:?}", w.per_second);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(to: usize, ms: i64) -> Received {
        Received { to: format!("+1201555{to:04}"), at_ms: ms, status: 201 }
    }

    #[test]
    fn the_witness_counts_full_seconds_and_catches_repeats_and_losses() {
        // 3 in the partial first second, 10, 9 and an empty one in full seconds, 2 in the last.
        let mut received = Vec::new();
        let mut next = 0;
        let mut add = |second: i64, n: usize| {
            for k in 0..n {
                received.push(at(next, 1_700_000_000_000 + second * 1000 + (k as i64 * 997) % 1000));
                next += 1;
            }
        };
        add(0, 3);
        add(1, 10);
        add(2, 9);
        add(4, 2);
        let w = Witness::of(&received, 24).unwrap();
        assert_eq!(w.per_second, vec![10, 9, 0]);
        assert_eq!((w.messages, w.recipients, w.refused), (24, 24, 0));
        assert!((w.mean() - 19.0 / 3.0).abs() < 1e-9);
        assert_eq!(w.max_deviation_pct(10.0), 100.0);
        assert_eq!(w.sorted(), vec![0, 9, 10]);

        let e = Witness::of(&received, 25).unwrap_err();
        assert_eq!(e, "25 recipients were started, but the sandbox received messages for only 24");
        let mut twice = received.clone();
        twice.push(received[5].clone());
        let e = Witness::of(&twice, 24).unwrap_err();
        assert!(e.starts_with("the sandbox received more than one message for 1 recipients"), "{e}");
    }

    #[test]
    fn batches_are_read_from_the_marking_times() {
        let ms = 1_000_000;
        let b = Batches::of(vec![0, 0, 20 * ms, 20 * ms, 20 * ms, 45 * ms]);
        assert_eq!((b.count, b.mean_size), (3, 2.0));
        assert_eq!((b.interval_p50_ms, b.interval_max_ms), (20.0, 25.0));
    }

    /// A short campaign end to end: every recipient gets exactly one message, seen by the
    /// sandbox.
    #[test]
    fn a_small_campaign_reaches_the_sandbox_once_per_recipient() {
        let run = run_campaign(50, 3).unwrap();
        assert_eq!((run.witness.messages, run.witness.recipients, run.witness.refused), (150, 150, 0));
        assert!(run.batches.count > 0);
    }
}
