//! The tokio runtime that drives cascades: [`Engine`].
//!
//! It validates and plans requests, stores them durably before anything is sent, runs the
//! state machine on every input, persists each transition (fenced by version), then carries
//! out the actions: sends on spawned tasks, outcomes to watchers, the event stream and the
//! callback outbox. Timers are data: one scheduler task claims due cascades from the store and
//! sleeps until the earliest deadline or until woken; no task waits per cascade.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, broadcast};
use tracing::Instrument;

use crate::channel::{InboundMessage, SendRequest, StatusUpdate};
use crate::clock::TokioClock;
use crate::error::{EngineError, SubmitError, ValidationError};
use crate::links::{self, LinkTracking};
use crate::machine::{Action, CascadeState, Input, Phase};
use crate::model::{
    Attempt, CascadeId, ChannelName, ConnectionId, Contact, ErrorClass, Event, EventKind, Message, Outcome, Policy,
    SendError, Status, Timestamp,
};
use crate::plan::{self, DEFAULT_MAX_FILE_SIZE, PlanInput};
use crate::pool::{Connection, HealthPolicy, PoolError, Pools};
use crate::store::{
    CampaignMember, CascadeMeta, CascadeRecord, CascadeUpdate, Conversation, Created, MemoryStore, NewOutboxItem,
    ProviderRef, RecipientOutcome, RecipientResult, Store, StoreError,
};

/// Engine settings. The defaults suit most deployments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// The largest attachment accepted at all, in bytes (100 MB, 100,000,000 bytes).
    pub max_file_size: u64,
    /// When connections are taken out and let back in.
    pub health: HealthPolicy,
    /// How long one `send` may take before it counts as a transient timeout (30 s).
    #[serde(with = "crate::model::duration")]
    pub send_timeout: Duration,
    /// How far a claim pushes a due cascade's deadline; work held by a dead instance falls due
    /// again after this (30 s).
    #[serde(with = "crate::model::duration")]
    pub lease: Duration,
    /// How many due cascades one claim takes (256).
    pub claim_batch: usize,
    /// The longest the scheduler sleeps without looking at the store (1 s). Other instances'
    /// work is seen at least this often.
    #[serde(with = "crate::model::duration")]
    pub poll_interval: Duration,
    /// How long a status for an unknown provider message id is kept in case its send result
    /// is still on its way (60 s).
    #[serde(with = "crate::model::duration")]
    pub status_grace: Duration,
    /// Finished cascades older than this are deleted with their timelines (30 days); `None`
    /// keeps them for ever (written `"off"` in a configuration file; zero is refused).
    #[serde(with = "crate::model::duration::or_off")]
    pub retention: Option<Duration>,
    /// How often the retention sweep runs (1 min). It deletes in batches of
    /// `retention_batch` (500), yielding between batches, so live work is never held up.
    #[serde(with = "crate::model::duration")]
    pub retention_interval: Duration,
    /// Cascades deleted per retention batch (500).
    pub retention_batch: usize,
    /// Records of cascades in motion kept in memory (16,384), so a send result or a status
    /// that follows soon after needs no read from the store. Writes stay fenced by version, so
    /// an entry another instance made stale only costs a reload. 0 turns the cache off. A
    /// store may ask for fewer ([`Store::cache_limit`]): the in-memory store keeps 2,048.
    pub cache_size: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            health: HealthPolicy::default(),
            send_timeout: Duration::from_secs(30),
            lease: Duration::from_secs(30),
            claim_batch: 256,
            poll_interval: Duration::from_secs(1),
            status_grace: Duration::from_secs(60),
            retention: Some(Duration::from_secs(30 * 86_400)),
            retention_interval: Duration::from_secs(60),
            retention_batch: 500,
            cache_size: 16_384,
        }
    }
}

/// A request to start one cascade.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CascadeRequest {
    /// Who to write to.
    pub contact: Contact,
    /// What to say.
    pub message: Message,
    /// How to try.
    pub policy: Arc<Policy>,
    /// Caller objects for templates (`{"deal": {...}}`).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub variables: serde_json::Value,
    /// A repeat with the same key returns the same cascade and sends nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Where to POST the outcome (delivered from the store's outbox by the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// Caller data kept with the cascade and returned with its outcome.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub metadata: serde_json::Value,
    /// Who started the cascade, as the embedder names it (the server uses `key:NAME` for an
    /// API key, `kommo:ACCOUNT` for a Kommo bot): it decides how the outcome is reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The campaign recipient this cascade is for. Its sends are bulk traffic: on a connection
    /// with a rate limit they wait while any single cascade's send is waiting there. Its result
    /// is written onto the recipient when it finishes ([`Store::campaign_tally`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<CampaignMember>,
}

impl CascadeRequest {
    /// A request with no variables, key, callback or metadata.
    pub fn new(contact: Contact, message: Message, policy: impl Into<Arc<Policy>>) -> Self {
        Self {
            contact,
            message,
            policy: policy.into(),
            variables: serde_json::Value::Null,
            idempotency_key: None,
            callback_url: None,
            metadata: serde_json::Value::Null,
            owner: None,
            campaign: None,
        }
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets the template variables.
    pub fn variables(mut self, vars: serde_json::Value) -> Self {
        self.variables = vars;
        self
    }

    /// Sets the callback URL.
    pub fn callback_url(mut self, url: impl Into<String>) -> Self {
        self.callback_url = Some(url.into());
        self
    }

    /// A digest of everything but the idempotency key.
    fn fingerprint(&self) -> String {
        let mut copy = self.clone();
        copy.idempotency_key = None;
        let bytes = serde_json::to_vec(&copy).unwrap_or_default();
        Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A timeline entry of one cascade, on the engine-wide event stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngineEvent {
    /// The cascade.
    pub cascade: CascadeId,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// What [`Engine::status`] did with a status update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusMatch {
    /// Recorded on this attempt.
    Matched {
        /// The cascade.
        cascade: CascadeId,
        /// The attempt.
        attempt: u32,
    },
    /// No attempt has this provider message id (yet): kept for a while in case the send's
    /// answer is still on its way, then dropped.
    Unmatched,
}

/// A cascade with its timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct CascadeView {
    /// The stored record.
    pub record: CascadeRecord,
    /// The timeline.
    pub events: Vec<Event>,
}

/// Builds an [`Engine`].
#[derive(Debug, Default)]
pub struct EngineBuilder {
    store: Option<Arc<dyn Store>>,
    connections: Vec<Connection>,
    config: EngineConfig,
    link_tracking: Option<LinkTracking>,
    clock: Option<TokioClock>,
}

/// A mistake in the engine's set-up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The connections do not form valid pools.
    #[error(transparent)]
    Pools(#[from] PoolError),
    /// No connection at all.
    #[error("the engine needs at least one connection")]
    NoConnections,
    /// The link tracking settings are unusable (a short key, a base URL that is not an
    /// absolute http(s) URL).
    #[error("link tracking: {0}")]
    LinkTracking(String),
}

impl EngineBuilder {
    /// Uses this store (default: a new [`MemoryStore`]).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Adds a connection to its channel's pool.
    pub fn connection(mut self, connection: Connection) -> Self {
        self.connections.push(connection);
        self
    }

    /// Sets the engine settings.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Turns on link tracking: cascades whose policy has
    /// [`track_links`](crate::Policy::track_links) get their links rewritten to
    /// `{base_url}{token}`, and [`Engine::follow_link`] records the clicks (see
    /// [`crate::links`]). Without it, such cascades are refused.
    pub fn link_tracking(mut self, tracking: LinkTracking) -> Self {
        self.link_tracking = Some(tracking);
        self
    }

    /// Reads time from this clock (default: anchored at the wall-clock time of [`build`](Self::build)).
    /// Tests anchor it at a chosen date with [`TokioClock::starting_at`] and move it with
    /// tokio's paused clock.
    pub fn clock(mut self, clock: TokioClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Builds the engine and starts its scheduler. Must be called inside a tokio runtime.
    pub fn build(self) -> Result<Engine, BuildError> {
        if self.connections.is_empty() {
            return Err(BuildError::NoConnections);
        }
        let links = self.link_tracking.map(LinkTracking::checked).transpose().map_err(BuildError::LinkTracking)?;
        let pools = Pools::new(self.connections, self.config.health)?;
        let store = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let cache_size = store.cache_limit().map_or(self.config.cache_size, |l| l.min(self.config.cache_size));
        let per_shard = cache_size.div_ceil(SHARDS);
        let (events, _) = broadcast::channel(4096);
        let inner = Arc::new(Inner {
            store,
            pools,
            config: self.config,
            links,
            clock: self.clock.unwrap_or_default(),
            shards: (0..SHARDS).map(|_| tokio::sync::Mutex::new(RecordCache::new(per_shard))).collect(),
            in_flight: Mutex::new(HashSet::new()),
            watchers: Mutex::new(HashMap::new()),
            events,
            wake: Notify::new(),
            stop: Notify::new(),
            stopping: AtomicBool::new(false),
            sends: AtomicUsize::new(0),
            sends_done: Notify::new(),
            orphans: Mutex::new(HashMap::new()),
        });
        let engine = Engine { inner };
        let scheduler = engine.clone();
        tokio::spawn(async move { scheduler.run_scheduler().await });
        if engine.inner.config.retention.is_some() {
            let sweeper = engine.clone();
            tokio::spawn(async move { sweeper.run_retention().await });
        }
        Ok(engine)
    }
}

/// The cascade engine. Cheap to clone; every clone drives the same cascades.
#[derive(Clone, Debug)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    pools: Pools,
    config: EngineConfig,
    links: Option<LinkTracking>,
    clock: TokioClock,
    /// One lock per shard of cascade ids: transitions of one cascade never overlap. Each
    /// holds the shard's cache of recent records.
    shards: Box<[tokio::sync::Mutex<RecordCache>]>,
    in_flight: Mutex<HashSet<(CascadeId, u32)>>,
    watchers: Mutex<HashMap<CascadeId, broadcast::Sender<Event>>>,
    events: broadcast::Sender<EngineEvent>,
    wake: Notify,
    stop: Notify,
    stopping: AtomicBool,
    sends: AtomicUsize,
    sends_done: Notify,
    orphans: Mutex<HashMap<(String, String), Vec<HeldStatus>>>,
}

const SHARDS: usize = 256;

/// Recent records of one shard, evicted oldest first.
#[derive(Debug)]
struct RecordCache {
    records: HashMap<CascadeId, CascadeRecord>,
    order: std::collections::VecDeque<CascadeId>,
    capacity: usize,
}

impl RecordCache {
    fn new(capacity: usize) -> Self {
        Self { records: HashMap::new(), order: std::collections::VecDeque::new(), capacity }
    }

    fn take(&mut self, id: CascadeId) -> Option<CascadeRecord> {
        self.records.remove(&id)
    }

    fn put(&mut self, record: CascadeRecord) {
        if self.capacity == 0 || record.state.is_finished() {
            self.records.remove(&record.id());
            return;
        }
        let id = record.id();
        if self.records.insert(id, record).is_none() {
            self.order.push_back(id);
        }
        while self.records.len() > self.capacity {
            let Some(old) = self.order.pop_front() else { break };
            self.records.remove(&old);
        }
        if self.order.len() > 4 * self.capacity.max(4) {
            // Ids taken out and never put back linger in `order`: rebuild it.
            let records = &self.records;
            self.order.retain(|id| records.contains_key(id));
        }
    }
}

/// A status waiting for its send's answer, with when it arrived.
type HeldStatus = (StatusUpdate, Timestamp);

/// Runs `work` as a task of its own and waits for it, so that a caller who stops waiting (an
/// HTTP request whose client hung up) does not stop it halfway: between a state written to
/// the store and the sends and events that go with it. `None` if the task could not finish
/// (the runtime is shutting down). A panic in `work` is resumed in the caller.
async fn detached<T: Send + 'static>(work: impl std::future::Future<Output = T> + Send + 'static) -> Option<T> {
    // Boxed first, then wrapped in the span: these futures are kilobytes, and each move of one
    // (into a wrapper, into the task) copies all of it.
    match tokio::spawn(Box::pin(work).in_current_span()).await {
        Ok(v) => Some(v),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => None,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    t + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn sub(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_sub_signed(chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}

/// A submitted cascade.
#[derive(Clone, Debug)]
pub struct CascadeHandle {
    id: CascadeId,
    existing: bool,
    engine: Engine,
}

impl CascadeHandle {
    /// The cascade's id.
    pub fn id(&self) -> CascadeId {
        self.id
    }

    /// Whether the request repeated an earlier one (same idempotency key): nothing new was sent.
    pub fn is_existing(&self) -> bool {
        self.existing
    }

    /// Waits for the outcome.
    pub async fn outcome(&self) -> Result<Outcome, EngineError> {
        self.engine.outcome(self.id).await
    }

    /// Live timeline entries from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.engine.subscribe(self.id)
    }
}

impl Engine {
    /// Starts building an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The connection pools.
    pub fn pools(&self) -> &Pools {
        &self.inner.pools
    }

    /// The settings it runs with (for example `max_file_size`, which an upload limit in front
    /// of the engine must not exceed).
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Checks a policy against this engine's channels before any request uses it
    /// ([`plan::check_policy`]): steps, channels with connections,
    /// reachable `until`s, connection subsets, and `track_links` only with link tracking.
    /// Errors name fields from the policy's root (`steps[1].channel`).
    pub fn check_policy(&self, policy: &Policy) -> Result<(), Vec<ValidationError>> {
        plan::check_policy(policy, &self.inner.pools, self.inner.links.is_some())
    }

    /// Engine time.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// The engine-wide event stream (every timeline entry of every cascade). Slow receivers
    /// lose the oldest entries (see [`broadcast`]).
    pub fn events(&self) -> broadcast::Receiver<EngineEvent> {
        self.inner.events.subscribe()
    }

    /// Live timeline entries of one cascade from now on.
    pub fn subscribe(&self, id: CascadeId) -> broadcast::Receiver<Event> {
        lock(&self.inner.watchers).entry(id).or_insert_with(|| broadcast::channel(256).0).subscribe()
    }

    /// Validates, stores and starts a cascade. It is durable when this returns; nothing is sent
    /// before that. A repeated idempotency key returns the earlier cascade (and sends nothing);
    /// the same key with a different request is refused.
    ///
    /// Runs in a `cascade.submit` span whose `cascade_id` is the cascade's (the earlier one's,
    /// for a repeated key).
    ///
    /// The work runs to its end even if the caller stops waiting (an HTTP client that hangs
    /// up): a cascade stored is always started.
    #[tracing::instrument(name = "cascade.submit", skip_all, fields(cascade_id = tracing::field::Empty))]
    pub async fn submit(&self, request: CascadeRequest) -> Result<CascadeHandle, SubmitError> {
        let engine = self.clone();
        detached(async move { engine.submit_now(request).await }).await.unwrap_or(Err(SubmitError::ShuttingDown))
    }

    async fn submit_now(&self, request: CascadeRequest) -> Result<CascadeHandle, SubmitError> {
        let inner = &self.inner;
        if inner.stopping.load(Ordering::Acquire) {
            return Err(SubmitError::ShuttingDown);
        }
        let now = inner.clock.now();
        let addresses: Vec<(ChannelName, String)> = request
            .policy
            .steps
            .iter()
            .filter_map(|s| {
                let caps = inner.pools.pool(&s.channel)?.capabilities();
                caps.conversation_window?;
                Some((s.channel.clone(), request.contact.address_for(&s.channel, &caps.address_kinds)?.value))
            })
            .collect();
        let conversations =
            if addresses.is_empty() { Vec::new() } else { inner.store.conversations(&addresses).await? };
        // The id comes first: tracked links carry it.
        let id = CascadeId::new();
        tracing::Span::current().record("cascade_id", tracing::field::display(id));
        let plan = plan::build(
            &PlanInput {
                cascade: id,
                link_tracking: inner.links.as_ref(),
                contact: &request.contact,
                message: &request.message,
                policy: &request.policy,
                variables: &request.variables,
                conversations: &conversations,
                max_file_size: inner.config.max_file_size,
                now,
            },
            &inner.pools,
        )
        .map_err(SubmitError::Invalid)?;
        let other_addresses = inner
            .pools
            .pools()
            .filter(|p| p.capabilities().inbound && !plan.steps.iter().any(|s| &s.channel == p.channel()))
            .filter_map(|p| {
                let address = request.contact.address_for(p.channel(), &p.capabilities().address_kinds)?;
                Some(plan::ChannelAddress { channel: p.channel().clone(), address: address.value })
            })
            .collect();
        let plan = plan::Plan { bulk: request.campaign.is_some(), other_addresses, ..plan };

        let mut state = CascadeState::new(id, plan, now);
        let t = state.apply(Input::Start, now, &mut inner.pools.picker(now));
        let meta = CascadeMeta {
            fingerprint: if request.idempotency_key.is_some() { request.fingerprint() } else { String::new() },
            contact: request.contact,
            idempotency_key: request.idempotency_key,
            callback_url: request.callback_url,
            metadata: request.metadata,
            owner: request.owner,
            campaign: request.campaign,
        };
        let outbox = self.outbox_for(&state, &meta, &t.actions);
        let recipient = recipient_outcome(&state, &meta, &t.actions);
        let mut record = CascadeRecord { wake_at: self.wake_for(&state, now), state, meta: Arc::new(meta), version: 1 };
        let sends: Vec<u32> = t
            .actions
            .iter()
            .filter_map(|a| if let Action::Send { attempt } = a { Some(*attempt) } else { None })
            .collect();
        {
            let mut f = lock(&inner.in_flight);
            f.extend(sends.iter().map(|a| (id, *a)));
        }
        let created = inner.store.create(record.clone(), t.events.clone()).await;
        let created = match created {
            Ok(c) => c,
            Err(e) => {
                lock(&inner.in_flight).retain(|(c, _)| *c != id);
                return Err(e.into());
            }
        };
        match created {
            Created::New => {}
            Created::Existing { id: existing, same_request } => {
                tracing::Span::current().record("cascade_id", tracing::field::display(existing));
                lock(&inner.in_flight).retain(|(c, _)| *c != id);
                if !same_request {
                    let key = record.meta.idempotency_key.clone().unwrap_or_default();
                    return Err(SubmitError::IdempotencyConflict { key, existing });
                }
                return Ok(CascadeHandle { id: existing, existing: true, engine: self.clone() });
            }
        }
        if outbox.is_some() || recipient.is_some() {
            // A cascade can end at `Start` (every step's connections out of their pools): its
            // callback goes to the outbox, and its result to its campaign recipient, like any
            // other's.
            let update = CascadeUpdate {
                state: record.state.clone(),
                expected_version: record.version,
                wake_at: record.wake_at,
                events: Vec::new(),
                provider_refs: Vec::new(),
                outbox,
                recipient,
            };
            inner.store.save(&update).await?;
            record.version += 1;
        }
        tracing::debug!(cascade = %id, "cascade created");
        // The shard stays locked until the record is cached, so the send results that follow
        // find it there.
        let mut cache = self.shard(id).lock().await;
        self.after_transition(&record.state, t.events, &t.actions);
        cache.put(record);
        drop(cache);
        Ok(CascadeHandle { id, existing: false, engine: self.clone() })
    }

    /// Feeds a status parsed from `adapter`'s webhook.
    ///
    /// Like every call that changes a cascade, it runs to its end even if the caller stops
    /// waiting: a change stored is always acted on (its sends made, its events published).
    pub async fn status(&self, adapter: &str, update: StatusUpdate) -> Result<StatusMatch, EngineError> {
        let (engine, adapter) = (self.clone(), adapter.to_owned());
        detached(async move { engine.status_now(&adapter, update).await })
            .await
            .unwrap_or(Err(EngineError::ShuttingDown))
    }

    async fn status_now(&self, adapter: &str, update: StatusUpdate) -> Result<StatusMatch, EngineError> {
        let pmid = update.provider_message_id.clone();
        let mut found = self.inner.store.find_attempt(adapter, &pmid).await?;
        if found.is_none() {
            let now = self.now();
            let grace = chrono::Duration::from_std(self.inner.config.status_grace).unwrap_or(chrono::Duration::MAX);
            let key = (adapter.to_owned(), pmid.clone());
            {
                let mut orphans = lock(&self.inner.orphans);
                orphans.retain(|_, v| {
                    v.retain(|(_, at)| now - *at < grace);
                    !v.is_empty()
                });
                orphans.entry(key.clone()).or_default().push((update.clone(), now));
            }
            // The send's answer may have been recorded between the lookup and the hold, after
            // its replay of held statuses ran: look once more. Whoever takes the held status
            // out of `orphans` (this call or the replay) applies it, so it is applied once.
            found = self.inner.store.find_attempt(adapter, &pmid).await?;
            if found.is_none() {
                return Ok(StatusMatch::Unmatched);
            }
            let mut orphans = lock(&self.inner.orphans);
            let held = orphans.get_mut(&key).and_then(|v| {
                let i = v.iter().position(|(u, at)| *u == update && *at == now)?;
                Some(v.remove(i))
            });
            if orphans.get(&key).is_some_and(Vec::is_empty) {
                orphans.remove(&key);
            }
            if held.is_none() {
                // The replay took it.
                return Ok(found.map_or(StatusMatch::Unmatched, |r| StatusMatch::Matched {
                    cascade: r.cascade,
                    attempt: r.attempt,
                }));
            }
        }
        let Some(r) = found else { return Ok(StatusMatch::Unmatched) };
        let delivered = update.status.reaches(Status::Delivered);
        let now = self.now();
        let applied = self
            .apply(
                r.cascade,
                None,
                |state| {
                    // A store may index provider ids by a hash (the memory store does): make sure.
                    let recorded = state.attempt(r.attempt).and_then(|a| a.provider_message_id.as_deref());
                    if recorded != Some(pmid.as_str()) {
                        tracing::warn!(
                            cascade = %r.cascade,
                            attempt = r.attempt,
                            provider_message_id = %pmid,
                            "status matched an attempt with another provider id; ignored"
                        );
                        return None;
                    }
                    Some(Input::Status { attempt: r.attempt, update: update.clone() })
                },
                |state| if delivered { self.delivery_conversation(state, r.attempt, now) } else { None },
            )
            .await?;
        if let Some(Some(conv)) = applied {
            self.inner.store.touch_conversation(conv).await?;
        }
        Ok(StatusMatch::Matched { cascade: r.cascade, attempt: r.attempt })
    }

    /// Follows a tracked link: checks the token, records `clicked` on the most recent attempt
    /// of the link's step that the provider accepted, and returns the original URL to redirect
    /// to. `Ok(None)` means no such link: a token that is malformed, forged, signed with
    /// another key, for a cascade this store no longer holds (past retention), or any token
    /// when link tracking is off.
    ///
    /// The click is an ordinary status for that attempt: it lands on the timeline, ends a step
    /// waiting for `clicked` (or anything below it) as delivered, and follows the late-success
    /// rule for earlier steps. A click on a finished cascade is recorded on its attempt but
    /// changes no outcome; a click on a step with no accepted attempt records nothing. Either
    /// way the URL is returned. Each attempt records its first click only, so repeated clicks
    /// cost reads, not writes. If recording fails, the failure is logged and the URL is still
    /// returned: the contact gets where the link goes.
    ///
    /// The URL comes from the cascade's stored plan, never from the token, so this is not an
    /// open redirect. Bytes outside ASCII are percent-encoded, so it fits a `Location` header.
    ///
    /// Link-preview fetchers (messengers unfurling a link, mail scanners) are not the contact:
    /// answer them, and `HEAD` requests, with [`Engine::link_target`] instead.
    pub async fn follow_link(&self, token: &str) -> Result<Option<String>, EngineError> {
        let (engine, token) = (self.clone(), token.to_owned());
        detached(async move { engine.resolve_link(&token, true).await }).await.unwrap_or(Err(EngineError::ShuttingDown))
    }

    /// Like [`Engine::follow_link`], without recording a click: where a tracked link leads.
    pub async fn link_target(&self, token: &str) -> Result<Option<String>, EngineError> {
        self.resolve_link(token, false).await
    }

    async fn resolve_link(&self, token: &str, click: bool) -> Result<Option<String>, EngineError> {
        let Some(tracking) = &self.inner.links else { return Ok(None) };
        let Some((id, number)) = tracking.verify(token) else { return Ok(None) };
        let Some(record) = self.inner.store.load(id).await? else { return Ok(None) };
        let Some((step, url)) = record.state.plan.link(number) else { return Ok(None) };
        let target = links::location_safe(url);
        if !click {
            return Ok(Some(target));
        }
        let now = self.now();
        let clicked = |state: &CascadeState| {
            let a = clicked_attempt(state, step)?;
            if a.statuses.iter().any(|s| s.status == Status::Clicked) {
                return None; // the first click is on record
            }
            let update = StatusUpdate {
                provider_message_id: a.provider_message_id.clone()?,
                status: Status::Clicked,
                at: None,
                error: None,
            };
            Some(Input::Status { attempt: a.number, update })
        };
        let observe = |state: &CascadeState| {
            let a = clicked_attempt(state, step)?;
            self.delivery_conversation(state, a.number, now)
        };
        // The record was just read: apply the click to it rather than read it again.
        match self.apply(id, Some(record), clicked, observe).await {
            Ok(Some(Some(conv))) => {
                if let Err(e) = self.inner.store.touch_conversation(conv).await {
                    tracing::warn!(cascade = %id, error = %e, "could not record the conversation of a click");
                }
            }
            Ok(_) | Err(EngineError::NotFound(_)) => {}
            Err(e) => tracing::warn!(cascade = %id, error = %e, "could not record a click"),
        }
        Ok(Some(target))
    }

    /// Feeds an inbound message received on `connection`: records the conversation and stops
    /// every running cascade to that sender on that channel (a reply stops the chain).
    /// Returns the cascades it stopped.
    pub async fn inbound(
        &self,
        connection: &ConnectionId,
        message: InboundMessage,
    ) -> Result<Vec<CascadeId>, EngineError> {
        let (engine, connection) = (self.clone(), connection.clone());
        detached(async move { engine.inbound_now(&connection, message).await })
            .await
            .unwrap_or(Err(EngineError::ShuttingDown))
    }

    async fn inbound_now(
        &self,
        connection: &ConnectionId,
        message: InboundMessage,
    ) -> Result<Vec<CascadeId>, EngineError> {
        let Some(member) = self.inner.pools.member(connection) else { return Ok(Vec::new()) };
        let channel = member.connection.channel.info().channel.clone();
        let conv = Conversation {
            channel: channel.clone(),
            connection: connection.clone(),
            address: message.from.clone(),
            last_inbound_at: Some(message.at.unwrap_or_else(|| self.now())),
            last_delivery_at: None,
        };
        self.inner.store.touch_conversation(conv).await?;
        let ids = self.inner.store.running_for_address(&channel, &message.from).await?;
        let mut stopped = Vec::new();
        for id in ids {
            let replied = self
                .apply(
                    id,
                    None,
                    |s| {
                        let to_sender =
                            s.plan.reply_addresses().into_iter().any(|(c, a)| *c == channel && a == message.from);
                        (to_sender && !s.is_finished()).then(|| Input::Reply { channel: channel.clone() })
                    },
                    |s| matches!(&s.outcome, Some(Outcome::Delivered { status: Status::Replied, .. })),
                )
                .await;
            let replied = match replied {
                // An address index row whose cascade is gone (purged, or a database restored
                // from pieces): nothing to stop there, and the others still hear of the reply.
                Err(EngineError::NotFound(_)) => continue,
                other => other?,
            };
            if replied == Some(true) {
                stopped.push(id);
            }
        }
        Ok(stopped)
    }

    /// Cancels a running cascade. Returns `false` if it had already ended.
    pub async fn cancel(&self, id: CascadeId) -> Result<bool, EngineError> {
        let engine = self.clone();
        detached(async move {
            let applied = engine.apply(id, None, |s| (!s.is_finished()).then_some(Input::Cancel), |_| ()).await?;
            Ok(applied.is_some())
        })
        .await
        .unwrap_or(Err(EngineError::ShuttingDown))
    }

    /// A cascade with its timeline.
    pub async fn get(&self, id: CascadeId) -> Result<Option<CascadeView>, EngineError> {
        let Some(record) = self.inner.store.load(id).await? else { return Ok(None) };
        let events = self.inner.store.events(id).await?;
        Ok(Some(CascadeView { record, events }))
    }

    /// Waits for a cascade's outcome.
    pub async fn outcome(&self, id: CascadeId) -> Result<Outcome, EngineError> {
        let mut rx = self.subscribe(id);
        loop {
            let rec = self.inner.store.load(id).await?.ok_or(EngineError::NotFound(id))?;
            if let Some(o) = rec.state.outcome {
                return Ok(o);
            }
            loop {
                match rx.recv().await {
                    Ok(Event { kind: EventKind::Finished { outcome, .. }, .. }) => return Ok(outcome),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return Err(EngineError::ShuttingDown),
                }
            }
        }
    }

    /// Stops taking new cascades, stops the scheduler, and waits (up to `grace`) for sends in
    /// flight to finish and be recorded. Cascades keep their state in the store and continue
    /// when an engine on the same store starts again.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.stopping.store(true, Ordering::Release);
        self.inner.wake.notify_waiters();
        self.inner.stop.notify_waiters();
        let deadline = tokio::time::Instant::now() + grace;
        while self.inner.sends.load(Ordering::Acquire) > 0 {
            let done = self.inner.sends_done.notified();
            if self.inner.sends.load(Ordering::Acquire) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, done).await.is_err() {
                tracing::warn!(
                    sends = self.inner.sends.load(Ordering::Acquire),
                    "shutdown grace ended with sends in flight"
                );
                break;
            }
        }
    }

    // ---- internals ----

    /// The conversation a delivery of `attempt` opens or keeps open, on channels that have
    /// conversations.
    fn delivery_conversation(&self, state: &CascadeState, attempt: u32, now: Timestamp) -> Option<Conversation> {
        let a = state.attempt(attempt)?;
        self.inner.pools.pool(&a.channel)?.capabilities().conversation_window?;
        Some(Conversation {
            channel: a.channel.clone(),
            connection: a.connection.clone()?,
            address: state.plan.steps[a.step as usize].address.as_ref()?.value.clone(),
            last_inbound_at: None,
            last_delivery_at: Some(now),
        })
    }

    fn wake_for(&self, state: &CascadeState, now: Timestamp) -> Option<Timestamp> {
        let w = state.wake_at()?;
        if matches!(state.phase, Phase::Sending { .. }) {
            // A send in flight is looked at again after its timeout plus a lease: if the
            // process that made it died, the result is recorded as unknown then.
            let guard = add(now, self.inner.config.send_timeout + self.inner.config.lease);
            return Some(w.min(guard));
        }
        Some(w)
    }

    fn outbox_for(&self, state: &CascadeState, meta: &CascadeMeta, actions: &[Action]) -> Option<NewOutboxItem> {
        if !actions.contains(&Action::Finished) {
            return None;
        }
        let url = meta.callback_url.clone()?;
        Some(NewOutboxItem { cascade: state.id, url, body: outcome_report(state, meta) })
    }

    fn shard(&self, id: CascadeId) -> &tokio::sync::Mutex<RecordCache> {
        &self.inner.shards[(id.as_uuid().as_u128() % SHARDS as u128) as usize]
    }

    /// Applies an input to a stored cascade: read (from `fresh`, the cache or the store),
    /// transition, save (fenced; on a version conflict, reload and apply again), then act.
    /// `input` sees the current state and may decline (`None`). Returns the outcome after the
    /// transition seen through `observe`, or `None` if `input` declined. Runs in a
    /// `cascade.apply` span with the `cascade_id`.
    #[tracing::instrument(name = "cascade.apply", level = "debug", skip_all, fields(cascade_id = %id))]
    async fn apply<R>(
        &self,
        id: CascadeId,
        fresh: Option<CascadeRecord>,
        input: impl Fn(&CascadeState) -> Option<Input>,
        observe: impl FnOnce(&CascadeState) -> R,
    ) -> Result<Option<R>, EngineError> {
        let inner = &self.inner;
        let mut cache = self.shard(id).lock().await;
        let cached = cache.take(id);
        let mut next = fresh.map(|r| (r, false)).or(cached.map(|r| (r, true)));
        for _ in 0..8 {
            let (rec, from_cache) = match next.take() {
                Some(r) => r,
                None => (inner.store.load(id).await?.ok_or(EngineError::NotFound(id))?, false),
            };
            let Some(inp) = input(&rec.state) else {
                if from_cache {
                    // A cached record may be stale: decide on the stored one.
                    continue;
                }
                cache.put(rec);
                return Ok(None);
            };
            let now = inner.clock.now();
            let before_refs: Vec<bool> = rec.state.attempts.iter().map(|a| a.provider_message_id.is_some()).collect();
            let (rec_version, rec_wake) = (rec.version, rec.wake_at);
            let meta = rec.meta;
            let mut state = rec.state;
            let t = state.apply(inp, now, &mut inner.pools.picker(now));
            let provider_refs = self.new_provider_refs(&before_refs, &state);
            let outbox = self.outbox_for(&state, &meta, &t.actions);
            let recipient = recipient_outcome(&state, &meta, &t.actions);
            let wake_at = self.wake_for(&state, now);
            let sends: Vec<u32> = t
                .actions
                .iter()
                .filter_map(|a| if let Action::Send { attempt } = a { Some(*attempt) } else { None })
                .collect();
            lock(&inner.in_flight).extend(sends.iter().map(|a| (id, *a)));
            let update = CascadeUpdate {
                state,
                expected_version: rec_version,
                wake_at,
                events: t.events,
                provider_refs,
                outbox,
                recipient,
            };
            match inner.store.save(&update).await {
                Ok(version) => {
                    if wake_at.is_some_and(|w| rec_wake.is_none_or(|old| w < old)) {
                        inner.wake.notify_one();
                    }
                    let CascadeUpdate { state, events, provider_refs, .. } = update;
                    self.after_transition(&state, events, &t.actions);
                    self.replay_orphans(&provider_refs);
                    let seen = observe(&state);
                    cache.put(CascadeRecord { state, meta, version, wake_at });
                    return Ok(Some(seen));
                }
                Err(e) => {
                    let mut f = lock(&inner.in_flight);
                    for a in &sends {
                        f.remove(&(id, *a));
                    }
                    if !matches!(e, StoreError::Conflict(_)) {
                        return Err(e.into());
                    }
                }
            }
        }
        Err(EngineError::Store(StoreError::Conflict(id)))
    }

    /// Provider ids that `after` has and `before` (which attempts had one) did not.
    fn new_provider_refs(&self, before: &[bool], after: &CascadeState) -> Vec<ProviderRef> {
        after
            .attempts
            .iter()
            .enumerate()
            .filter(|(i, a)| a.provider_message_id.is_some() && !before.get(*i).copied().unwrap_or(false))
            .map(|(_, a)| a)
            .filter_map(|a| {
                let member = self.inner.pools.member(a.connection.as_ref()?)?;
                Some(ProviderRef {
                    adapter: member.connection.channel.info().adapter.clone(),
                    provider_message_id: a.provider_message_id.clone()?,
                    attempt: a.number,
                })
            })
            .collect()
    }

    /// Statuses that arrived before their send's answer was recorded are applied now.
    fn replay_orphans(&self, refs: &[ProviderRef]) {
        if refs.is_empty() {
            return;
        }
        let mut found = Vec::new();
        {
            let mut orphans = lock(&self.inner.orphans);
            if orphans.is_empty() {
                return;
            }
            for r in refs {
                if let Some(v) = orphans.remove(&(r.adapter.to_string(), r.provider_message_id.clone())) {
                    found.extend(v.into_iter().map(|(u, _)| (r.adapter.clone(), u)));
                }
            }
        }
        for (adapter, update) in found {
            let engine = self.clone();
            tokio::spawn(Box::pin(async move {
                if let Err(e) = engine.status_now(adapter.as_str(), update).await {
                    tracing::warn!(error = %e, "could not apply a held-back status");
                }
            }));
        }
    }

    /// Publishes events and carries out actions of a transition that is already stored.
    fn after_transition(&self, state: &CascadeState, events: Vec<Event>, actions: &[Action]) {
        let inner = &self.inner;
        let id = state.id;
        let finished = actions.contains(&Action::Finished);
        {
            let mut watchers = lock(&inner.watchers);
            if let Some(tx) = watchers.get(&id) {
                for e in &events {
                    let _ = tx.send(e.clone());
                }
            }
            if finished {
                watchers.remove(&id);
            }
        }
        if inner.events.receiver_count() > 0 {
            for event in events {
                let _ = inner.events.send(EngineEvent { cascade: id, event });
            }
        }
        if finished && let Some(o) = &state.outcome {
            tracing::info!(cascade = %id, outcome = o.state(), cost = %state.cost(), "cascade finished");
        }
        for a in actions {
            if let Action::Send { attempt } = a {
                self.spawn_send(state, *attempt);
            }
        }
    }

    fn spawn_send(&self, state: &CascadeState, number: u32) {
        let inner = &self.inner;
        let id = state.id;
        let now = inner.clock.now();
        let prepared = state.attempt(number).and_then(|a| {
            let step = &state.plan.steps[a.step as usize];
            let connection = a.connection.clone()?;
            let member = inner.pools.member(&connection)?;
            Some((
                member.connection.channel.clone(),
                SendRequest {
                    cascade_id: id,
                    attempt: number,
                    conversation_open: step
                        .window
                        .as_ref()
                        .is_some_and(|w| w.connection == connection && now < w.until),
                    connection,
                    address: step.address.clone()?,
                    content: step.content.clone(),
                },
            ))
        });
        let bulk = state.plan.bulk;
        let Some((channel, request)) = prepared else {
            tracing::error!(cascade = %id, attempt = number, "send action without a connection or address");
            lock(&inner.in_flight).remove(&(id, number));
            return;
        };
        inner.sends.fetch_add(1, Ordering::AcqRel);
        let engine = self.clone();
        let span = tracing::info_span!(
            "cascade.send",
            cascade_id = %id,
            attempt = number,
            connection = %request.connection,
            channel = %channel.info().channel,
        );
        let send = async move {
            let inner = &engine.inner;
            if let Some(m) = inner.pools.member(&request.connection) {
                m.until_ready(bulk).await;
            }
            let result = match tokio::time::timeout(inner.config.send_timeout, channel.send(&request)).await {
                Ok(r) => r,
                Err(_) => Err(SendError::timeout(format_args!(
                    "no answer within {}",
                    crate::model::duration::format(inner.config.send_timeout)
                ))),
            };
            let connection_failure = matches!(&result, Err(e) if e.class == ErrorClass::Connection);
            inner.pools.report(&request.connection, connection_failure, inner.clock.now());
            if let Err(e) = &result {
                tracing::debug!(cascade = %id, attempt = number, error = %e, "send failed");
            }
            // The result must reach the store. While it cannot be written (the database
            // restarting, a full disk) keep trying, backing off to every 2 s, until the engine
            // stops: meanwhile the send stays in flight, so the scheduler does not take it for
            // lost. A result still unwritten at shutdown is found `unknown` at the next start,
            // and that send is never repeated.
            let mut delay = Duration::from_millis(50);
            let mut failures = 0u32;
            loop {
                let r = engine
                    .apply(id, None, |_| Some(Input::SendResult { attempt: number, result: result.clone() }), |_| ())
                    .await;
                match r {
                    Ok(_) | Err(EngineError::NotFound(_)) => break,
                    Err(e) if inner.stopping.load(Ordering::Acquire) || !matches!(e, EngineError::Store(_)) => {
                        tracing::warn!(cascade = %id, attempt = number, error = %e, "send result not recorded: the attempt will be found unknown");
                        break;
                    }
                    Err(e) => {
                        failures += 1;
                        if failures == 1 || failures.is_multiple_of(30) {
                            tracing::warn!(cascade = %id, attempt = number, failures, error = %e, "could not record a send result; retrying");
                        }
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(2));
                    }
                }
            }
            lock(&inner.in_flight).remove(&(id, number));
            if inner.sends.fetch_sub(1, Ordering::AcqRel) == 1 {
                inner.sends_done.notify_waiters();
            }
        };
        tokio::spawn(Box::pin(send).instrument(span));
    }

    /// Deletes finished cascades past the retention age, a batch at a time, until stopped.
    async fn run_retention(self) {
        let inner = &self.inner;
        let Some(age) = inner.config.retention else { return };
        let batch = inner.config.retention_batch.max(1);
        loop {
            let stop = inner.stop.notified();
            tokio::select! {
                _ = tokio::time::sleep(inner.config.retention_interval) => {}
                _ = stop => {}
            }
            if inner.stopping.load(Ordering::Acquire) {
                return;
            }
            match self.purge_finished_before(sub(inner.clock.now(), age), batch).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(cascades = n, "retention: deleted finished cascades"),
                Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
            }
        }
    }

    /// Deletes every finished cascade that finished before `before`, in batches of `batch`
    /// (yielding between them), but those with a callback still to deliver
    /// ([`Store::purge_finished`]). Returns how many went. The retention sweep calls this; an
    /// operator may too.
    pub async fn purge_finished_before(&self, before: Timestamp, batch: usize) -> Result<usize, EngineError> {
        let mut total = 0;
        loop {
            let n = self.inner.store.purge_finished(before, batch.max(1)).await?;
            total += n;
            if n < batch.max(1) || self.inner.stopping.load(Ordering::Acquire) {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }

    async fn run_scheduler(self) {
        let inner = &self.inner;
        loop {
            if inner.stopping.load(Ordering::Acquire) {
                return;
            }
            let now = inner.clock.now();
            let claimed = match inner.store.claim_due(now, inner.config.claim_batch, inner.config.lease).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming due cascades failed");
                    Vec::new()
                }
            };
            let full = claimed.len() == inner.config.claim_batch;
            for rec in claimed {
                let id = rec.id();
                // `rec` is fresh from the claim: no reload needed.
                let r = self
                    .apply(
                        id,
                        Some(rec),
                        |s| match s.phase {
                            Phase::Finished => None,
                            Phase::Sending { attempt } => (!lock(&inner.in_flight).contains(&(id, attempt)))
                                .then_some(Input::SendLost { attempt }),
                            _ => Some(Input::Tick),
                        },
                        |_| (),
                    )
                    .await;
                if let Err(e) = r {
                    tracing::warn!(cascade = %id, error = %e, "processing a due cascade failed");
                }
            }
            if full {
                continue;
            }
            let next = inner.store.next_wake().await.ok().flatten();
            let poll = tokio::time::Instant::now() + inner.config.poll_interval;
            let until = next.map_or(poll, |w| inner.clock.instant_at(w).min(poll));
            let notified = inner.wake.notified();
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = notified => {}
            }
        }
    }
}

/// The attempt a click on a link of step `step` is credited to: the step's most recent attempt
/// the provider accepted.
fn clicked_attempt(state: &CascadeState, step: u16) -> Option<&Attempt> {
    state.attempts.iter().rev().find(|a| a.step == step && a.provider_message_id.is_some())
}

/// The result for the campaign recipient a cascade was started for, when `actions` finish it.
fn recipient_outcome(state: &CascadeState, meta: &CascadeMeta, actions: &[Action]) -> Option<RecipientOutcome> {
    let member = meta.campaign?;
    if !actions.contains(&Action::Finished) {
        return None;
    }
    let outcome = state.outcome.as_ref()?;
    let (channel, reason) = match outcome {
        Outcome::Delivered { channel, .. } => (Some(channel.clone()), None),
        Outcome::Failed { steps } => {
            let reasons: Vec<String> = steps.iter().map(|f| format!("{}: {}", f.channel, f.reason)).collect();
            (None, Some(reasons.join("; ")))
        }
        Outcome::Cancelled => (None, Some("cancelled".to_owned())),
        Outcome::Expired => (None, Some("the cascade's time to live passed".to_owned())),
    };
    Some(RecipientOutcome {
        campaign: member.campaign,
        seq: member.seq,
        result: RecipientResult {
            outcome: outcome.state().to_owned(),
            channel,
            cost: state.cost(),
            reason,
            at: state.finished_at,
        },
    })
}

/// The outcome report sent to callbacks and returned by the API: the outcome, the path taken
/// (every attempt with its statuses and reasons), the total cost, and the caller's metadata.
pub fn outcome_report(state: &CascadeState, meta: &CascadeMeta) -> serde_json::Value {
    serde_json::json!({
        "cascade_id": state.id,
        "state": crate::store::state_name(state),
        "outcome": state.outcome,
        "attempts": state.attempts,
        "failures": state.failures,
        "cost": state.cost(),
        "created_at": state.created_at,
        "finished_at": state.finished_at,
        "metadata": meta.metadata,
    })
}
