//! Scenario `load`: a bounded load test on loopback. One server as in `http` (a real
//! cascade-http app over a SQLite file with full durability, served on a loopback port) takes a
//! fixed mix of operations from many clients in the same process: cascades started, signed
//! status webhooks for sends the providers accepted, and reads. It stops by itself after
//! `--count` operations or `--seconds`, whichever comes first, and reports per kind of operation
//! its throughput and latencies, and the process's memory every second: resident, and the heap
//! allocated through Rust's allocator since the first operation and not freed (counted by the
//! bench's counting allocator; SQLite's own allocations go to the C allocator and are not in
//! it).
//!
//! The two channels accept every send at once and keep nothing (so the memory figures are the
//! server's, not a test double's); the WhatsApp connection takes WhatsApp Cloud's status
//! webhooks (`X-Hub-Signature-256`), the SMS connection Twilio's status callbacks
//! (`X-Twilio-Signature`), both through the real adapters' intakes.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cascade_engine::store::{ListFilter, state_name};
use cascade_engine::{Capabilities, CascadeId, ChannelInfo, EngineEvent, EventKind};
use cascade_testkit::caps;
use tokio::sync::{Notify, broadcast};

use crate::alloc::{live_bytes, start_counting, stop_counting};
use crate::engine::Accepting;
use crate::http::{
    CLIENT_THREADS, SEND_KEY, SMS, Server, WHATSAPP, client, cpu_seconds, lock, micros, post_start, quantile_ms,
    report_cpu, runtime, sign, twilio_status, whatsapp_status,
};
use crate::{proc_status_mb, report, report_with, round1};

const SCENARIO: &str = "load";

/// A kind of operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `POST /v1/cascades`.
    Start,
    /// A signed status webhook for an accepted send.
    Webhook,
    /// `GET /v1/cascades/{id}` of a cascade started earlier.
    Get,
    /// `GET /v1/cascades?limit=20`.
    List,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Start, Kind::Webhook, Kind::Get, Kind::List];

    fn name(self) -> &'static str {
        match self {
            Kind::Start => "start",
            Kind::Webhook => "webhook",
            Kind::Get => "get",
            Kind::List => "list",
        }
    }
}

/// The mix, repeated: of every 20 operations, 8 starts (40 %), 8 webhooks (40 %), 3 reads of
/// one cascade (15 %) and 1 list (5 %), interleaved.
const MIX: [Kind; 20] = {
    use Kind::{Get as G, List as L, Start as S, Webhook as W};
    [S, W, S, W, G, S, W, S, W, G, S, W, S, W, G, S, W, S, W, L]
};

/// Of the webhooks for WhatsApp sends, one in this many says `failed` (the cascade falls over
/// to SMS); the others say `delivered`.
const WHATSAPP_FAILS_ONE_IN: usize = 5;
/// Of the webhooks for SMS sends, one in this many says `undelivered` (the cascade fails).
const SMS_FAILS_ONE_IN: usize = 10;

/// A send the provider accepted, waiting for its status webhook.
#[derive(Debug)]
struct Pending {
    sms: bool,
    provider_message_id: String,
    /// Whether its webhook says the send failed.
    failed: bool,
}

/// Accepted sends, oldest first, from the engine's event stream.
#[derive(Default)]
struct Accepted {
    queue: Mutex<VecDeque<Pending>>,
    ready: Notify,
    /// Engine events the collector missed (it fell behind the stream).
    missed: AtomicU64,
}

impl Accepted {
    fn push(&self, pending: Pending) {
        lock(&self.queue).push_back(pending);
        self.ready.notify_one();
    }

    /// The oldest accepted send, waiting for one until `deadline` or until `over` says the
    /// run is over.
    async fn take(&self, deadline: Instant, over: impl Fn() -> bool) -> Option<Pending> {
        loop {
            {
                let mut queue = lock(&self.queue);
                if let Some(p) = queue.pop_front() {
                    if !queue.is_empty() {
                        // Pass the wake-up on: another client may be waiting.
                        self.ready.notify_one();
                    }
                    return Some(p);
                }
            }
            if Instant::now() >= deadline || over() {
                return None;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), self.ready.notified()).await;
        }
    }

    /// Follows the engine's events: a send started on a channel, then accepted, is queued for
    /// its webhook, which says `failed` for one in [`WHATSAPP_FAILS_ONE_IN`] WhatsApp sends and
    /// one in [`SMS_FAILS_ONE_IN`] SMS sends, in the order they were accepted.
    async fn collect(self: Arc<Self>, mut events: broadcast::Receiver<EngineEvent>) {
        let mut started: HashMap<(CascadeId, u32), bool> = HashMap::new();
        let (mut whatsapp_sends, mut sms_sends) = (0usize, 0usize);
        loop {
            match events.recv().await {
                Ok(e) => match e.event.kind {
                    EventKind::SendStarted { attempt, channel, .. } => {
                        if started.len() >= 100_000 {
                            // Only after missed events: starts whose answer was never seen.
                            started.clear();
                        }
                        started.insert((e.cascade, attempt), channel == "sms");
                    }
                    EventKind::Accepted { attempt, provider_message_id, .. } => {
                        if let Some(sms) = started.remove(&(e.cascade, attempt)) {
                            let (seq, one_in) = if sms {
                                (&mut sms_sends, SMS_FAILS_ONE_IN)
                            } else {
                                (&mut whatsapp_sends, WHATSAPP_FAILS_ONE_IN)
                            };
                            *seq += 1;
                            self.push(Pending { sms, provider_message_id, failed: *seq % one_in == 0 });
                        }
                    }
                    EventKind::SendFailed { attempt, .. } | EventKind::SendUnknown { attempt } => {
                        started.remove(&(e.cascade, attempt));
                    }
                    _ => {}
                },
                Err(broadcast::error::RecvError::Lagged(k)) => {
                    self.missed.fetch_add(k, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    }
}

/// What the clients share.
struct Shared {
    base: String,
    count: usize,
    deadline: Instant,
    /// The next operation's number.
    next: AtomicUsize,
    /// Operations answered (or failed) so far.
    done: AtomicU64,
    accepted: Arc<Accepted>,
    /// Cascades started, for reads.
    started: Mutex<Vec<CascadeId>>,
}

/// One kind of operation's figures, from one client or all.
#[derive(Debug, Default)]
struct Tally {
    /// Microseconds from sending each request to having read its whole answer.
    latencies: Vec<u32>,
    /// Answers other than the kind's success (`202`, `200`), failed requests included.
    non_2xx: usize,
    /// Webhooks answered `200` that matched no send.
    unmatched: usize,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.non_2xx += other.non_2xx;
        self.unmatched += other.unmatched;
    }
}

/// Runs one client until the count or the deadline is reached; a tally per kind, in
/// [`Kind::ALL`]'s order.
async fn client_loop(shared: Arc<Shared>, client: reqwest::Client) -> [Tally; 4] {
    let mut tallies: [Tally; 4] = Default::default();
    let (start_url, list_url) =
        (format!("{}/v1/cascades", shared.base), format!("{}/v1/cascades?limit=20", shared.base));
    let (whatsapp_url, sms_url) =
        (format!("{}/webhooks/{WHATSAPP}", shared.base), format!("{}/webhooks/{SMS}", shared.base));
    loop {
        if Instant::now() >= shared.deadline {
            break;
        }
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        if i >= shared.count {
            break;
        }
        let mut kind = MIX[i % MIX.len()];
        let picked = (kind == Kind::Get).then(|| {
            let started = lock(&shared.started);
            // Any cascade started so far, spread evenly.
            (!started.is_empty()).then(|| started[(i.wrapping_mul(2_654_435_761) >> 7) % started.len()])
        });
        let request = match kind {
            Kind::Start => post_start(&client, &start_url, i),
            Kind::Webhook => {
                let over = || shared.next.load(Ordering::Relaxed) >= shared.count;
                let Some(p) = shared.accepted.take(shared.deadline, over).await else { break };
                let failed = p.failed;
                if p.sms {
                    let (params, signature) = twilio_status(&sms_url, &p.provider_message_id, failed);
                    client.post(&sms_url).header(cascade_sms_twilio::webhook::SIGNATURE_HEADER, signature).form(&params)
                } else {
                    let body = whatsapp_status(&p.provider_message_id, failed);
                    client
                        .post(&whatsapp_url)
                        .header("content-type", "application/json")
                        .header("x-hub-signature-256", sign(&body))
                        .body(body)
                }
            }
            Kind::Get => match picked.flatten() {
                Some(id) => client.get(format!("{start_url}/{id}")).bearer_auth(SEND_KEY),
                None => {
                    // Nothing started yet: the list instead.
                    kind = Kind::List;
                    client.get(&list_url).bearer_auth(SEND_KEY)
                }
            },
            Kind::List => client.get(&list_url).bearer_auth(SEND_KEY),
        };
        let sent = Instant::now();
        let answer = match request.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                r.bytes().await.map(|body| (status, body)).map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        let latency = micros(sent.elapsed());
        shared.done.fetch_add(1, Ordering::Relaxed);
        let tally = &mut tallies[kind as usize];
        tally.latencies.push(latency);
        let expected = if kind == Kind::Start { 202 } else { 200 };
        match answer {
            Ok((status, body)) if status == expected => match kind {
                Kind::Start => {
                    let id = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["id"].as_str().and_then(|id| id.parse::<CascadeId>().ok()));
                    match id {
                        Some(id) => lock(&shared.started).push(id),
                        None => tally.non_2xx += 1,
                    }
                }
                Kind::Webhook if !body.windows(12).any(|w| w == b"\"statuses\":1") => tally.unmatched += 1,
                _ => {}
            },
            Ok((status, body)) => {
                if tally.non_2xx == 0 {
                    eprintln!("load: {} answered {status}: {}", kind.name(), String::from_utf8_lossy(&body));
                }
                tally.non_2xx += 1;
            }
            Err(e) => {
                if tally.non_2xx == 0 {
                    eprintln!("load: {} failed: {e}", kind.name());
                }
                tally.non_2xx += 1;
            }
        }
    }
    tallies
}

/// One memory sample, in MB: resident memory, and heap bytes allocated since counting started
/// and not freed.
#[derive(Clone, Copy, Debug)]
struct Memory {
    rss: f64,
    heap: f64,
}

impl Memory {
    fn now() -> Self {
        Self { rss: proc_status_mb("VmRSS"), heap: live_bytes() as f64 / 1e6 }
    }

    /// Prints it as the sample at `t` seconds.
    fn report(self, t: f64) {
        report_with(SCENARIO, "rss_mb", &[("t", t)], round1(self.rss));
        report_with(SCENARIO, "heap_mb", &[("t", t)], round1(self.heap));
    }
}

/// Samples this process's memory, and the operations answered, every second from now until
/// `stop` says so or is dropped, printing each sample; then one last sample. Returns the
/// memory samples.
fn sample(shared: Arc<Shared>, stop: std::sync::mpsc::Receiver<()>) -> Vec<Memory> {
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut last_ops = 0;
    for second in 0u32.. {
        let memory = Memory::now();
        let ops = shared.done.load(Ordering::Relaxed);
        memory.report(f64::from(second));
        if second > 0 {
            report_with(SCENARIO, "ops", &[("t", f64::from(second))], (ops - last_ops) as f64);
        }
        samples.push(memory);
        last_ops = ops;
        let next = start + Duration::from_secs(u64::from(second) + 1);
        if stop.recv_timeout(next.saturating_duration_since(Instant::now()))
            != Err(std::sync::mpsc::RecvTimeoutError::Timeout)
        {
            break;
        }
    }
    let memory = Memory::now();
    memory.report(start.elapsed().as_secs_f64());
    samples.push(memory);
    samples
}

/// Cascades in the server's store by state (`running`, `delivered`, `failed`…), read page by
/// page.
async fn states(server: &Server) -> HashMap<&'static str, u64> {
    let store = server.app.engine().store().clone();
    let mut by = HashMap::new();
    let mut filter = ListFilter { limit: 500, ..ListFilter::default() };
    loop {
        let page = store.list(&filter).await.expect("list cascades");
        for r in &page {
            *by.entry(state_name(&r.state)).or_default() += 1;
        }
        match page.last() {
            Some(last) if page.len() == filter.limit => filter.before = Some(last.id()),
            _ => break,
        }
    }
    by
}

/// Heap held at the end by the clients' own bookkeeping, in MB: their latencies, the ids of the
/// cascades started, and the accepted sends waiting for a webhook.
fn bench_heap(per_client: &[[Tally; 4]], shared: &Shared) -> f64 {
    let latencies: usize = per_client.iter().flatten().map(|t| t.latencies.capacity() * size_of::<u32>()).sum();
    let started = lock(&shared.started).capacity() * size_of::<CascadeId>();
    let queue = lock(&shared.accepted.queue);
    let pending =
        queue.capacity() * size_of::<Pending>() + queue.iter().map(|p| p.provider_message_id.capacity()).sum::<usize>();
    (latencies + started + pending) as f64 / 1e6
}

/// Runs scenario `load`: `clients` clients (default 32) run the mix until `count` operations
/// (default 150,000) have been taken or `seconds` (default 60) have passed.
pub fn run(count: Option<usize>, clients: Option<usize>, seconds: Option<usize>) {
    let count = count.unwrap_or(150_000);
    let clients = clients.unwrap_or(32).clamp(1, count);
    let seconds = seconds.unwrap_or(60);
    let channel = |name: &str, adapter: &str, capabilities: Capabilities| Accepting {
        info: ChannelInfo { channel: name.into(), adapter: adapter.into(), capabilities },
        delivered: None,
    };
    let server = Server::start(
        channel("whatsapp", cascade_whatsapp::ADAPTER, caps::whatsapp()),
        channel("sms", cascade_sms_twilio::ADAPTER, caps::sms()),
        |_| {},
    );
    let events = server.app.engine().events();
    let writes = server.writes.clone();
    let rt = runtime(CLIENT_THREADS);
    let accepted = Arc::new(Accepted::default());
    rt.spawn(accepted.clone().collect(events));

    // Each client opens its connection with one request, not counted.
    let base = server.url("");
    let client = client();
    rt.block_on(async {
        let mut warm = tokio::task::JoinSet::new();
        for _ in 0..clients {
            let request = client.get(format!("{base}/v1/cascades?limit=1")).bearer_auth(SEND_KEY);
            warm.spawn(async move {
                let r = request.send().await.expect("warm-up request");
                assert_eq!(r.status().as_u16(), 200, "warm-up request: {}", r.text().await.unwrap_or_default());
            });
        }
        warm.join_all().await;
    });

    // Heap bytes are counted from here (the counter costs a little time on every allocation).
    start_counting();
    let start = Instant::now();
    let shared = Arc::new(Shared {
        base,
        count,
        deadline: start + Duration::from_secs(seconds as u64),
        next: AtomicUsize::new(0),
        done: AtomicU64::new(0),
        accepted: accepted.clone(),
        started: Mutex::default(),
    });
    let (stop, stopped) = std::sync::mpsc::channel();
    let sampler = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("bench-sampler".into())
            .spawn(move || sample(shared, stopped))
            .expect("sampler")
    };
    let cpu_before = cpu_seconds();
    let commits_before = (writes.writes(), writes.batches());
    let per_client = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..clients {
            tasks.spawn(client_loop(shared.clone(), client.clone()));
        }
        tasks.join_all().await
    });
    let wall = start.elapsed();
    let cpu_after = cpu_seconds();
    let commits = (writes.writes() - commits_before.0, writes.batches() - commits_before.1);
    let _ = stop.send(());
    let memory = sampler.join().expect("sampler");
    stop_counting();
    let peak = proc_status_mb("VmHWM");
    let bookkeeping = bench_heap(&per_client, &shared);
    let mut tallies: [Tally; 4] = Default::default();
    for client in per_client {
        for (sum, t) in tallies.iter_mut().zip(client) {
            sum.add(t);
        }
    }
    let by_state = server.block_on(states(&server));
    let backlog = lock(&accepted.queue).len();
    let missed = accepted.missed.load(Ordering::Relaxed);
    let started = lock(&shared.started).len();
    rt.shutdown_timeout(Duration::from_secs(5));
    server.stop();

    let secs = wall.as_secs_f64();
    let mut ops = 0;
    for (kind, mut tally) in Kind::ALL.into_iter().zip(tallies) {
        let name = kind.name();
        tally.latencies.sort_unstable();
        let n = tally.latencies.len();
        ops += n;
        report(SCENARIO, &format!("{name}_count"), n as f64);
        report(SCENARIO, &format!("{name}_per_sec"), (n as f64 / secs).round());
        if n > 0 {
            report(SCENARIO, &format!("{name}_p50_ms"), quantile_ms(&tally.latencies, 0.50));
            report(SCENARIO, &format!("{name}_p99_ms"), quantile_ms(&tally.latencies, 0.99));
            report(SCENARIO, &format!("{name}_max_ms"), quantile_ms(&tally.latencies, 1.0));
        }
        report(SCENARIO, &format!("{name}_non_2xx"), tally.non_2xx as f64);
        if kind == Kind::Webhook {
            report(SCENARIO, "webhook_unmatched", tally.unmatched as f64);
        }
    }
    report(SCENARIO, "clients", clients as f64);
    report(SCENARIO, "ops", ops as f64);
    report(SCENARIO, "seconds", secs);
    report(SCENARIO, "ops_per_sec", (ops as f64 / secs).round());
    // The sampler always takes a first and a last sample.
    let (first, last) = (memory[0], memory[memory.len() - 1]);
    report(SCENARIO, "rss_first_mb", round1(first.rss));
    report(SCENARIO, "rss_last_mb", round1(last.rss));
    report(SCENARIO, "rss_growth_mb", round1(last.rss - first.rss));
    report(SCENARIO, "peak_rss_mb", round1(peak));
    report(SCENARIO, "heap_growth_mb", round1(last.heap));
    report(SCENARIO, "bench_heap_mb", round1(bookkeeping));
    report(SCENARIO, "cascades_started", started as f64);
    let count_of = |state: &str| by_state.get(state).copied().unwrap_or(0) as f64;
    let finished: u64 = by_state.iter().filter(|(s, _)| **s != "running").map(|(_, n)| n).sum();
    report(SCENARIO, "cascades_finished", finished as f64);
    report(SCENARIO, "cascades_delivered", count_of("delivered"));
    report(SCENARIO, "cascades_failed", count_of("failed"));
    report(SCENARIO, "cascades_running", count_of("running"));
    report(SCENARIO, "webhook_backlog", backlog as f64);
    report(SCENARIO, "events_missed", missed as f64);
    if commits.1 > 0 {
        report(SCENARIO, "writes_per_commit", commits.0 as f64 / commits.1 as f64);
    }
    report_cpu(SCENARIO, cpu_before, cpu_after, wall);
}

#[cfg(test)]
mod tests {
    use cascade_engine::{Cost, Event, SendError};

    use super::*;

    #[test]
    fn the_mix_is_40_40_15_5() {
        let count = |kind| MIX.iter().filter(|k| **k == kind).count();
        assert_eq!(Kind::ALL.map(count), [8, 8, 3, 1]);
    }

    fn event(cascade: CascadeId, kind: EventKind) -> EngineEvent {
        EngineEvent { cascade, event: Event { at: chrono::Utc::now(), kind } }
    }

    fn started(cascade: CascadeId, attempt: u32, channel: &str) -> EngineEvent {
        event(cascade, EventKind::SendStarted { attempt, step: 0, channel: channel.into(), connection: None })
    }

    fn accepted(cascade: CascadeId, attempt: u32, id: String) -> EngineEvent {
        event(cascade, EventKind::Accepted { attempt, provider_message_id: id, cost: Cost::ZERO })
    }

    #[tokio::test]
    async fn accepted_sends_are_queued_oldest_first_and_a_fixed_share_fails() {
        let (tx, rx) = broadcast::channel(256);
        let queue = Arc::new(Accepted::default());
        let follower = tokio::spawn(queue.clone().collect(rx));
        for i in 0..10 {
            let cascade = CascadeId::new();
            tx.send(started(cascade, 1, "whatsapp")).expect("send");
            tx.send(accepted(cascade, 1, format!("wa-{i}"))).expect("send");
            tx.send(started(cascade, 2, "sms")).expect("send");
            tx.send(accepted(cascade, 2, format!("sms-{i}"))).expect("send");
        }
        // A send that failed, and an acceptance whose start was never seen: nothing to answer.
        let cascade = CascadeId::new();
        tx.send(started(cascade, 1, "whatsapp")).expect("send");
        let error = Box::new(SendError::unreachable("x", "not on WhatsApp"));
        tx.send(event(cascade, EventKind::SendFailed { attempt: 1, error, retry_at: None })).expect("send");
        tx.send(accepted(cascade, 1, "orphan".into())).expect("send");
        drop(tx);
        follower.await.expect("follower");

        let queue = lock(&queue.queue);
        let got: Vec<(&str, bool, bool)> =
            queue.iter().map(|p| (p.provider_message_id.as_str(), p.sms, p.failed)).collect();
        let mut want = Vec::new();
        for i in 0..10 {
            want.push((format!("wa-{i}"), false, (i + 1) % WHATSAPP_FAILS_ONE_IN == 0));
            want.push((format!("sms-{i}"), true, (i + 1) % SMS_FAILS_ONE_IN == 0));
        }
        let want: Vec<(&str, bool, bool)> = want.iter().map(|(id, sms, failed)| (id.as_str(), *sms, *failed)).collect();
        assert_eq!(got, want);
        assert_eq!(got.iter().filter(|p| p.2).count(), 3, "WhatsApp sends 5 and 10, SMS send 10");
    }

    #[tokio::test]
    async fn a_lagging_follower_counts_what_it_missed() {
        let (tx, rx) = broadcast::channel(4);
        let queue = Arc::new(Accepted::default());
        for i in 0..10 {
            tx.send(started(CascadeId::new(), 1, &format!("c{i}"))).expect("send");
        }
        drop(tx);
        queue.clone().collect(rx).await;
        assert_eq!(queue.missed.load(Ordering::Relaxed), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn take_waits_for_a_send_and_gives_up_at_the_deadline_or_the_end() {
        let queue = Arc::new(Accepted::default());
        let deadline = Instant::now() + Duration::from_secs(3600);
        let waiter = tokio::spawn({
            let queue = queue.clone();
            async move { queue.take(deadline, || false).await.map(|p| p.provider_message_id) }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        queue.push(Pending { sms: false, provider_message_id: "first".into(), failed: false });
        assert_eq!(waiter.await.expect("waiter").as_deref(), Some("first"));

        assert!(queue.take(deadline, || true).await.is_none(), "the run is over");
        assert!(queue.take(Instant::now(), || false).await.is_none(), "the deadline has passed");
    }
}
