//! Scenario `engine`: two-step cascades through the runtime with the in-memory store and
//! instant in-process channels. The first channel answers `unreachable`; the second accepts and
//! its "provider" reports `delivered` at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cascade_engine::*;
use tokio::sync::mpsc;

use crate::alloc::{live_bytes, start_counting, stop_counting};
use crate::report;

#[derive(Debug)]
struct Unreachable(ChannelInfo);

#[async_trait]
impl Channel for Unreachable {
    fn info(&self) -> &ChannelInfo {
        &self.0
    }
    async fn send(&self, _: &SendRequest) -> Result<Accepted, SendError> {
        Err(SendError::unreachable("not_here", "the contact is not on this channel"))
    }
}

/// Accepts every send; if `delivered` is set, its provider id goes there to be reported.
#[derive(Debug)]
pub(crate) struct Accepting {
    pub(crate) info: ChannelInfo,
    pub(crate) delivered: Option<mpsc::UnboundedSender<String>>,
}

#[async_trait]
impl Channel for Accepting {
    fn info(&self) -> &ChannelInfo {
        &self.info
    }
    async fn send(&self, r: &SendRequest) -> Result<Accepted, SendError> {
        let id = format!("{}-{}", r.cascade_id, r.attempt);
        if let Some(tx) = &self.delivered {
            let _ = tx.send(id.clone());
        }
        Ok(Accepted::new(id))
    }
}

pub(crate) fn caps() -> Capabilities {
    Capabilities::text_only([AddressKind::Phone], Status::Delivered)
}

/// An engine with the two bench channels on `store` (the in-memory store if `None`).
pub(crate) fn engine(store: Option<Arc<dyn Store>>, delivered: Option<mpsc::UnboundedSender<String>>) -> Engine {
    let first = Unreachable(ChannelInfo { channel: "first".into(), adapter: "first".into(), capabilities: caps() });
    let second = Accepting {
        info: ChannelInfo { channel: "second".into(), adapter: "second".into(), capabilities: caps() },
        delivered,
    };
    let mut b = Engine::builder();
    if let Some(store) = store {
        b = b.store(store);
    }
    b.connection(Connection::new("first-1", first))
        .connection(Connection::new("second-1", second))
        .build()
        .expect("engine")
}

pub(crate) fn request(policy: &Arc<Policy>, i: usize) -> CascadeRequest {
    CascadeRequest::new(
        Contact::with_phone(format!("+1555{:07}", i % 10_000_000)).name("Ann"),
        Message::text("Hi {{contact.name}}, your order has shipped"),
        policy.clone(),
    )
}

pub(crate) async fn submit_all(engine: &Engine, policy: &Arc<Policy>, count: usize) {
    let workers = 64;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let engine = engine.clone();
        let policy = policy.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < count {
                engine.submit(request(&policy, i)).await.expect("submit");
                i += workers;
            }
        }));
    }
    for t in tasks {
        t.await.expect("submitter");
    }
}

/// Runs the scenario.
pub fn run(count: Option<usize>) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let policy = Arc::new(Policy::chain(["first", "second"]));
        // Memory: cascades waiting on a status after falling over.
        let waiting = 100_000;
        let e = engine(None, None);
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Counting starts with the engine already built, so its own set-up is not measured.
        start_counting();
        submit_all(&e, &policy, waiting).await;
        // Let every send finish and be recorded.
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let sending =
                e.pools().pools().map(|p| p.members().iter().map(|m| m.health().sends).sum::<u64>()).sum::<u64>();
            if sending >= 2 * waiting as u64 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let held = live_bytes();
        stop_counting();
        report("engine", "bytes_per_waiting_cascade", (held as f64 / waiting as f64).round());
        e.shutdown(Duration::from_secs(5)).await;
        drop(e);

        // Throughput: every cascade falls over and is delivered.
        let n = count.unwrap_or(200_000);
        report("engine", "cascades_per_sec", throughput(None, n).await.round());
    });
}

/// Runs `n` two-step cascades to their outcome on `store` (in memory if `None`) and returns
/// cascades per second. Every cascade falls over from `first` to `second`, whose provider
/// reports `delivered` as soon as it accepts.
pub(crate) async fn throughput(store: Option<Arc<dyn Store>>, n: usize) -> f64 {
    let policy = Arc::new(Policy::chain(["first", "second"]));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let e = engine(store, Some(tx));
    // The "webhook handler": each status is handled on its own task, as concurrent webhook
    // requests would be.
    let reporter = {
        let e = e.clone();
        tokio::spawn(async move {
            let mut handlers = tokio::task::JoinSet::new();
            let mut done = 0usize;
            while let Some(id) = rx.recv().await {
                let e = e.clone();
                handlers.spawn(async move {
                    let update =
                        StatusUpdate { provider_message_id: id, status: Status::Delivered, at: None, error: None };
                    // `Unmatched` means the send's answer is not recorded yet: the engine holds
                    // the status and applies it when it is.
                    e.status("second", update).await.expect("status");
                });
                while handlers.try_join_next().is_some() {}
                done += 1;
                if done == n {
                    break;
                }
            }
            while handlers.join_next().await.is_some() {}
        })
    };
    let start = Instant::now();
    submit_all(&e, &policy, n).await;
    reporter.await.expect("reporter");
    // Wait until every cascade has its outcome: then none has a next deadline.
    let store = e.store().clone();
    while store.next_wake().await.expect("next wake").is_some() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    e.shutdown(Duration::from_secs(5)).await;
    rate
}
