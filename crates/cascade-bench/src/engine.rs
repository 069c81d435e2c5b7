//! Scenario `engine`: two-step cascades through the runtime with the in-memory store and
//! instant in-process channels. The first channel answers `unreachable`; the second accepts and
//! its "provider" reports `delivered` at once. The pieces here (engine, policy, throughput
//! run, waiting cascades) also serve `sqlite`, `postgres` and `scaling`, with more steps or
//! connections through [`Shape`].

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

/// The shape of the bench's cascades and pools: how many channels answer `unreachable` before
/// `second` accepts, and how many connections each channel has.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    /// Channels that fall over, in policy order before `second`: `first`, `first2`, `first3`…
    pub(crate) fallovers: usize,
    /// Connections per channel (`first-1`, `first-2`…), picked round-robin.
    pub(crate) connections: usize,
}

impl Shape {
    /// Two steps (`first` falls over, `second` delivers), one connection each.
    pub(crate) const TWO_STEPS: Shape = Shape { fallovers: 1, connections: 1 };

    fn fallover_channels(self) -> impl Iterator<Item = String> {
        (1..=self.fallovers).map(|k| if k == 1 { "first".to_owned() } else { format!("first{k}") })
    }

    /// The policy: every falling-over channel with default rules, then `second`, which waits
    /// `wait` (the default 60 s if `None`) for `delivered`.
    pub(crate) fn policy(self, wait: Option<Duration>) -> Policy {
        let second = Step::new("second");
        let second = match wait {
            Some(wait) => second.timeout(wait),
            None => second,
        };
        Policy::new(self.fallover_channels().map(Step::new).chain([second]))
    }
}

fn info(channel: &str) -> ChannelInfo {
    ChannelInfo { channel: channel.into(), adapter: channel.into(), capabilities: caps() }
}

/// An engine with the two bench channels on `store` (the in-memory store if `None`).
pub(crate) fn engine(store: Option<Arc<dyn Store>>, delivered: Option<mpsc::UnboundedSender<String>>) -> Engine {
    shaped_engine(store, delivered, Shape::TWO_STEPS)
}

/// An engine with the channels and connections of `shape` on `store` (the in-memory store if
/// `None`); `second`'s provider ids go to `delivered`, if set.
pub(crate) fn shaped_engine(
    store: Option<Arc<dyn Store>>,
    delivered: Option<mpsc::UnboundedSender<String>>,
    shape: Shape,
) -> Engine {
    let mut b = Engine::builder();
    if let Some(store) = store {
        b = b.store(store);
    }
    for channel in shape.fallover_channels() {
        for c in 1..=shape.connections {
            b = b.connection(Connection::new(format!("{channel}-{c}"), Unreachable(info(&channel))));
        }
    }
    for c in 1..=shape.connections {
        let second = Accepting { info: info("second"), delivered: delivered.clone() };
        b = b.connection(Connection::new(format!("second-{c}"), second));
    }
    b.build().expect("engine")
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

/// Submits `n` cascades under `policy` whose last send is accepted and never gets a status,
/// waits until every send has been made and recorded, and returns the heap bytes held per
/// cascade then, counted from the first submit. `sends` is how many sends each cascade makes;
/// `e` must have made none before.
pub(crate) async fn waiting_bytes(e: &Engine, policy: &Arc<Policy>, n: usize, sends: u64) -> f64 {
    // Counting starts with the engine already built, so its own set-up is not measured.
    start_counting();
    submit_all(e, policy, n).await;
    // Let every send finish and be recorded.
    for _ in 0..(200 + n / 1_000) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let sent = e.pools().pools().map(|p| p.members().iter().map(|m| m.health().sends).sum::<u64>()).sum::<u64>();
        if sent >= sends * n as u64 {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let held = live_bytes();
    stop_counting();
    held as f64 / n as f64
}

/// `n` two-step cascades fallen over and waiting (up to `ttl`) in a new in-memory engine:
/// the heap bytes held per waiting cascade, and the store they wait in (the engine stopped).
pub(crate) async fn waiting_in_memory(n: usize, ttl: Option<Duration>) -> (f64, Arc<dyn Store>) {
    let e = engine(None, None);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let policy = Arc::new(Shape::TWO_STEPS.policy(ttl));
    let bytes = waiting_bytes(&e, &policy, n, 2).await;
    let store = e.store().clone();
    e.shutdown(Duration::from_secs(5)).await;
    (bytes, store)
}

/// Runs the scenario.
pub fn run(count: Option<usize>) {
    crate::durable::runtime().block_on(async {
        // Memory: cascades waiting on a status after falling over.
        let (bytes, _) = waiting_in_memory(100_000, None).await;
        report("engine", "bytes_per_waiting_cascade", bytes.round());

        // Throughput: every cascade falls over and is delivered.
        let n = count.unwrap_or(200_000);
        report("engine", "cascades_per_sec", throughput(None, n, Shape::TWO_STEPS).await.round());
    });
}

/// Runs `n` cascades of `shape` to their outcome on `store` (in memory if `None`) and returns
/// cascades per second. Every cascade falls over from each `first…` channel to `second`, whose
/// provider reports `delivered` as soon as it accepts. Cascades already in the store that wait
/// more than an hour (see `waiting_bytes`) are left waiting.
pub(crate) async fn throughput(store: Option<Arc<dyn Store>>, n: usize, shape: Shape) -> f64 {
    let policy = Arc::new(shape.policy(None));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let e = shaped_engine(store, Some(tx), shape);
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
    // Wait until every cascade has its outcome: then none has a deadline within the hour
    // (the steps' timeouts are 60 s).
    let store = e.store().clone();
    while store.next_wake().await.expect("next wake").is_some_and(|w| w < e.now() + chrono::TimeDelta::hours(1)) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    e.shutdown(Duration::from_secs(5)).await;
    rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shape_names_its_steps_and_connections() {
        let shape = Shape { fallovers: 2, connections: 3 };
        let policy = shape.policy(Some(Duration::from_secs(60)));
        let channels: Vec<String> = policy.steps.iter().map(|s| s.channel.to_string()).collect();
        assert_eq!(channels, ["first", "first2", "second"]);
        assert_eq!(policy.steps.last().and_then(|s| s.timeout), Some(Duration::from_secs(60)));
        assert_eq!(Shape { fallovers: 0, ..shape }.policy(None).steps.len(), 1);

        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let e = shaped_engine(None, None, shape);
            let mut pools: Vec<(String, usize)> =
                e.pools().pools().map(|p| (p.channel().to_string(), p.members().len())).collect();
            pools.sort();
            assert_eq!(pools, [("first".into(), 3), ("first2".into(), 3), ("second".into(), 3)]);
            e.shutdown(Duration::from_secs(1)).await;
        });
    }

    #[tokio::test]
    async fn every_cascade_of_a_shape_is_delivered() {
        for shape in [Shape { fallovers: 0, connections: 1 }, Shape { fallovers: 3, connections: 2 }] {
            let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
            throughput(Some(store.clone()), 200, shape).await;
            let all = store.list(&store::ListFilter { limit: 500, ..Default::default() }).await.expect("list");
            assert_eq!(all.len(), 200);
            assert!(all.iter().all(|r| store::state_name(&r.state) == "delivered"), "{shape:?}");
            let sends = all.iter().map(|r| r.state.attempts.len()).collect::<std::collections::HashSet<_>>();
            assert_eq!(sends, [shape.fallovers + 1].into(), "one send per step");
        }
    }
}
