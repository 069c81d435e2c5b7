//! The campaign runner: [`Campaigns`] creates campaigns from recipient lists and drives them.
//!
//! Every recipient gets a cascade of its own, started through the [`Engine`] with the
//! idempotency key `campaign:{id}:{seq}`. The key is what makes a campaign safe across
//! crashes: a recipient is taken from the store, its cascade submitted, and only then marked
//! `started`; after a crash in between, the recipient is still pending, is submitted again,
//! and the engine returns the cascade it already has instead of sending twice.
//!
//! One instance drives a campaign at a time: it holds a lease on it in the store and renews it
//! every `poll`; it gives the lease up when it stops, and if it dies, another instance takes
//! over once the lease lapses. The driver
//! keeps to the campaign's rate with a token bucket, starts nothing before `start_at` or outside
//! the sending window (judged per time zone of the recipients), expires what is left at
//! `end_at`, and notices a pause or cancel within a second even when another instance made it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cascade_engine::store::{
    CampaignMember, CampaignRecord, CampaignState, NewRecipient, RecipientFilter, RecipientRecord, RecipientState,
    SeriesPoint, StartResult, Tally,
};
use cascade_engine::{CampaignId, CascadeRequest, Engine, StoreError, SubmitError, Timestamp};
use chrono_tz::Tz;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::schedule::{Window, recipient_zone};
use crate::spec::{CampaignSpec, ImportSummary, Stored};
use crate::validate::{Report, ValidateOptions, validate_with};
use crate::{Format, Region};

/// Runner settings.
#[derive(Clone, Debug)]
pub struct CampaignsConfig {
    /// This instance's name in leases (default: a random one per process).
    pub holder: String,
    /// How long a lease on a campaign lasts without renewal (10 s): after a crash, another
    /// instance (or this one restarted) takes the campaign over within this. A graceful stop
    /// gives the leases up at once.
    pub lease: Duration,
    /// How often leases are renewed and new or resumed campaigns looked for, and how often a
    /// driver re-reads its campaign's state (1 s).
    pub poll: Duration,
    /// Recipients stored per write during an import (2,000).
    pub import_batch: usize,
    /// An import that has given no sign of life for this long (10 min) was cut short by a
    /// stopped process: its campaign is cancelled, with the recipients it stored. A running
    /// import marks its campaign every quarter of this, even while its list arrives slowly;
    /// runners judge the silence by their own clock, from when they first saw the mark
    /// unchanged, so clocks that differ between instances do not matter. Zero turns this off.
    pub import_stale: Duration,
}

impl CampaignsConfig {
    /// How often a running import marks its campaign, and runners look for imports cut short:
    /// a quarter of [`import_stale`](Self::import_stale), at least 100 ms; `None` when that
    /// is off (zero).
    pub fn mark_every(&self) -> Option<Duration> {
        (!self.import_stale.is_zero()).then(|| (self.import_stale / 4).max(Duration::from_millis(100)))
    }
}

impl Default for CampaignsConfig {
    fn default() -> Self {
        Self {
            holder: format!("instance-{}", CampaignId::new()),
            lease: Duration::from_secs(10),
            poll: Duration::from_secs(1),
            import_batch: 2_000,
            import_stale: Duration::from_secs(600),
        }
    }
}

/// What went wrong with a campaign operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CampaignError {
    /// The settings are unusable; each problem names its field.
    #[error("invalid campaign: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The recipient list could not be read at all.
    #[error("recipient list: {0}")]
    List(#[from] crate::ValidateError),
    /// The list has no valid recipient; the report says why.
    #[error("the list has no valid recipient ({} invalid, {} duplicate)", .0.invalid, .0.duplicate)]
    NoRecipients(Box<Report>),
    /// No such campaign.
    #[error("no campaign {0}")]
    NotFound(CampaignId),
    /// The campaign is not in a state the operation applies to.
    #[error("campaign {id} is {state}: cannot {action} it")]
    Conflict {
        /// The campaign.
        id: CampaignId,
        /// Its state.
        state: CampaignState,
        /// What was asked (`pause`, `resume`, `cancel`).
        action: &'static str,
    },
    /// The store failed; the operation may be retried.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// A campaign to create.
#[derive(Clone, Debug)]
pub struct NewCampaign {
    /// A name for people.
    pub name: String,
    /// Who creates it (`key:NAME`); its cascades carry the same owner.
    pub owner: Option<String>,
    /// The settings.
    pub spec: CampaignSpec,
    /// The country of phone numbers written without a country code.
    pub region: Option<Region>,
    /// CSV or JSON (`None`: decided from the first character).
    pub format: Option<Format>,
}

/// Campaigns: creation, the runner, progress and control. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Campaigns {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    engine: Engine,
    config: CampaignsConfig,
    /// Wakes the runner (a campaign was launched or resumed here).
    wake: Notify,
    /// Wakes the drivers to re-read their campaign's state (paused or cancelled here).
    changed: Notify,
    /// Bumped with every pause, resume or cancel made here: a driver that sees it move
    /// re-reads its campaign's state before starting anyone else.
    generation: AtomicU64,
    driving: Mutex<HashSet<CampaignId>>,
    /// Imports seen running elsewhere: the mark last read, and when (this process's clock) it
    /// was first read unchanged.
    imports_seen: Mutex<HashMap<CampaignId, (Timestamp, Instant)>>,
    stopping: AtomicBool,
    stop: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    t + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The stored settings of a campaign.
pub fn stored(record: &CampaignRecord) -> Result<Stored, StoreError> {
    serde_json::from_value(record.spec.clone())
        .map_err(|e| StoreError::Corrupt(format!("campaign {} settings: {e}", record.id)))
}

impl Campaigns {
    /// Campaigns over `engine`'s store. Call [`Campaigns::start`] to drive them.
    pub fn new(engine: Engine, config: CampaignsConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                engine,
                config,
                wake: Notify::new(),
                changed: Notify::new(),
                generation: AtomicU64::new(0),
                driving: Mutex::new(HashSet::new()),
                imports_seen: Mutex::new(HashMap::new()),
                stopping: AtomicBool::new(false),
                stop: Notify::new(),
            }),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Starts the runner task: it leases running campaigns and drives each until it is paused,
    /// cancelled or finished, or until [`Campaigns::stop`].
    pub fn start(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move { me.run().await })
    }

    /// Stops the runner and its drivers (recipients in the middle of being started are
    /// started by whichever instance drives the campaign next). The runner task gives its
    /// leases up before it ends.
    pub fn stop(&self) {
        self.inner.stopping.store(true, Ordering::Release);
        self.inner.stop.notify_waiters();
        self.inner.changed.notify_waiters();
    }

    /// Checks settings against the engine: the schedule's dates, that a connection serves
    /// every step's channel, and that per-channel content is for channels the policy uses (the
    /// engine would refuse every recipient otherwise). Every problem, each naming its field.
    pub fn check(&self, spec: &CampaignSpec) -> Result<(), CampaignError> {
        let mut problems = Vec::new();
        if let Err(e) = spec.schedule.check() {
            problems.push(e);
        }
        if spec.policy.steps.is_empty() {
            problems.push("policy.steps: at least one step is needed".to_owned());
        }
        for (i, step) in spec.policy.steps.iter().enumerate() {
            if self.inner.engine.pools().pool(&step.channel).is_none() {
                problems.push(format!(
                    "policy.steps[{i}].channel: no connection serves channel {:?}",
                    step.channel.as_str()
                ));
            }
        }
        for channel in spec.message.overrides.keys() {
            if !spec.policy.steps.iter().any(|s| &s.channel == channel) {
                problems.push(format!(
                    "message.overrides.{channel}: override for channel `{channel}`, which no step of the policy uses"
                ));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(CampaignError::Invalid(problems)) }
    }

    /// Creates a campaign: checks its settings, streams the list into the store (validated,
    /// phones in E.164, each recipient with the time zone of its window), then launches it.
    /// Returns the campaign and the list's report. A list with no valid recipient leaves the
    /// campaign cancelled and returns [`CampaignError::NoRecipients`].
    ///
    /// `on_stored` is called after each batch of recipients is stored, with the count so far.
    pub async fn create<R: Read + Send + 'static>(
        &self,
        new: NewCampaign,
        list: R,
        on_stored: impl Fn(u64) + Send,
    ) -> Result<(CampaignRecord, Report), CampaignError> {
        self.check(&new.spec)?;
        let store = self.inner.engine.store().clone();
        let now = self.inner.engine.now();
        let id = CampaignId::new();
        let mut record = CampaignRecord {
            id,
            name: new.name,
            owner: new.owner,
            state: CampaignState::Importing,
            spec: serde_json::to_value(Stored { spec: new.spec.clone(), import: ImportSummary::default() })
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            recipients: 0,
            created_at: now,
            updated_at: now,
        };
        store.save_campaign(&record).await?;

        let schedule = &new.spec.schedule;
        let (zone, by_recipient) = (schedule.zone(), schedule.recipient_time_zone);
        let options = ValidateOptions {
            format: new.format,
            region: new.region,
            template: Some(new.spec.message.text.clone()),
            variables: new.spec.variables.clone(),
            preview: 3,
            max_errors: 1_000,
        };
        let batch_size = self.inner.config.import_batch.max(1);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<NewRecipient>>(4);
        let reader = tokio::task::spawn_blocking(move || {
            let mut zones = BTreeSet::<&'static str>::new();
            let mut batch = Vec::with_capacity(batch_size);
            let mut seq = 0u64;
            let mut open = true;
            let report = validate_with(list, &options, |r| {
                let tz = if by_recipient { recipient_zone(&r.contact, zone, true) } else { zone };
                zones.insert(tz.name());
                batch.push(NewRecipient { seq, line: r.line, contact: r.contact.clone(), zone: tz.name().to_owned() });
                seq += 1;
                if batch.len() == batch_size && open {
                    open = tx.blocking_send(std::mem::replace(&mut batch, Vec::with_capacity(batch_size))).is_ok();
                }
            });
            if !batch.is_empty() && open {
                let _ = tx.blocking_send(batch);
            }
            report.map(|r| (r, zones.into_iter().map(str::to_owned).collect::<Vec<_>>()))
        });
        let mut stored_count = 0u64;
        let mut store_error = None;
        // Signs of life, so that no instance takes this import for one a crash cut short.
        // (how often, when next), or none when marks are off.
        let mut marks = self.inner.config.mark_every().map(|every| (every, Instant::now() + every));
        let mut given_up = false;
        loop {
            // `None`: the time for a mark came first.
            let received = match marks {
                Some((_, at)) => tokio::time::timeout_at(at, rx.recv()).await.ok(),
                None => Some(rx.recv().await),
            };
            let batch = match received {
                Some(None) => break,
                Some(Some(batch)) => Some(batch),
                None => None,
            };
            if let Some((every, at)) = marks
                && Instant::now() >= at
                && store_error.is_none()
                && !given_up
            {
                let now = self.inner.engine.now();
                let still = [CampaignState::Importing];
                match store.set_campaign_state(id, &still, CampaignState::Importing, now).await {
                    // Cancelled meanwhile: store no more (the launch below then fails).
                    Ok(false) => given_up = true,
                    Ok(true) => {}
                    Err(e) => {
                        tracing::warn!(campaign = %id, error = %e, "could not mark a running import; trying again")
                    }
                }
                marks = Some((every, Instant::now() + every));
            }
            let Some(batch) = batch else { continue };
            if store_error.is_some() || given_up {
                continue; // drain, so the reader finishes
            }
            match store.add_recipients(id, &batch).await {
                Ok(()) => {
                    stored_count += batch.len() as u64;
                    on_stored(stored_count);
                }
                Err(e) => store_error = Some(e),
            }
        }
        let read = reader.await.map_err(|e| StoreError::Unavailable(format!("the import task failed: {e}")))?;
        let finish = |state| {
            let store = store.clone();
            async move { store.set_campaign_state(id, &[CampaignState::Importing], state, self.inner.engine.now()).await }
        };
        let (report, zones) = match (read, store_error) {
            (_, Some(e)) => {
                finish(CampaignState::Cancelled).await.ok();
                return Err(e.into());
            }
            (Err(e), None) => {
                finish(CampaignState::Cancelled).await?;
                return Err(e.into());
            }
            (Ok(r), None) => r,
        };
        if report.valid == 0 {
            finish(CampaignState::Cancelled).await?;
            return Err(CampaignError::NoRecipients(Box::new(report)));
        }
        let import = ImportSummary { valid: report.valid, invalid: report.invalid, duplicate: report.duplicate, zones };
        record.spec =
            serde_json::to_value(Stored { spec: new.spec, import }).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        record.recipients = report.valid;
        record.updated_at = self.inner.engine.now();
        store.save_campaign(&record).await?;
        // Launched only if nobody cancelled it during the import; if someone did, the
        // recipients stored after the cancel are closed too.
        if !finish(CampaignState::Running).await? {
            store.close_pending(id, RecipientState::Cancelled, self.inner.engine.now()).await?;
            let state = self.get(id).await?.state;
            return Err(CampaignError::Conflict { id, state, action: "launch" });
        }
        record.state = CampaignState::Running;
        self.inner.wake.notify_one();
        tracing::info!(campaign = %id, recipients = report.valid, "campaign launched");
        Ok((record, report))
    }

    /// A campaign.
    pub async fn get(&self, id: CampaignId) -> Result<CampaignRecord, CampaignError> {
        self.inner.engine.store().load_campaign(id).await?.ok_or(CampaignError::NotFound(id))
    }

    /// Pauses a running campaign: nothing new is started until it is resumed (cascades already
    /// started go on). Returns the campaign.
    pub async fn pause(&self, id: CampaignId) -> Result<CampaignRecord, CampaignError> {
        self.transition(id, &[CampaignState::Running], CampaignState::Paused, "pause").await
    }

    /// Resumes a paused campaign.
    pub async fn resume(&self, id: CampaignId) -> Result<CampaignRecord, CampaignError> {
        let record = self.transition(id, &[CampaignState::Paused], CampaignState::Running, "resume").await?;
        self.inner.wake.notify_one();
        Ok(record)
    }

    /// Cancels a campaign that is not over: recipients not started are `cancelled`, and the
    /// cascades still running are cancelled too (in the background). Returns the campaign.
    pub async fn cancel(&self, id: CampaignId) -> Result<CampaignRecord, CampaignError> {
        let from = [CampaignState::Importing, CampaignState::Running, CampaignState::Paused];
        let record = self.transition(id, &from, CampaignState::Cancelled, "cancel").await?;
        let store = self.inner.engine.store();
        let closed = store.close_pending(id, RecipientState::Cancelled, self.inner.engine.now()).await?;
        tracing::info!(campaign = %id, not_started = closed, "campaign cancelled");
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.cancel_running(id).await {
                tracing::warn!(campaign = %id, error = %e, "could not cancel every running cascade of a cancelled campaign");
            }
        });
        Ok(record)
    }

    async fn cancel_running(&self, id: CampaignId) -> Result<(), CampaignError> {
        let engine = &self.inner.engine;
        let mut after = None;
        loop {
            let filter = RecipientFilter {
                states: vec![RecipientState::Started],
                after,
                limit: 1_000,
                ..RecipientFilter::default()
            };
            let page = engine.store().campaign_recipients(id, &filter).await?;
            let Some(last) = page.last() else { return Ok(()) };
            after = Some(last.seq);
            for r in page.iter().filter(|r| r.result.is_none()) {
                if let Some(c) = r.cascade
                    && let Err(e) = engine.cancel(c).await
                {
                    tracing::debug!(cascade = %c, error = %e, "could not cancel a campaign cascade");
                }
            }
        }
    }

    async fn transition(
        &self,
        id: CampaignId,
        from: &[CampaignState],
        to: CampaignState,
        action: &'static str,
    ) -> Result<CampaignRecord, CampaignError> {
        let store = self.inner.engine.store();
        if !store.set_campaign_state(id, from, to, self.inner.engine.now()).await? {
            let record = self.get(id).await?;
            return Err(CampaignError::Conflict { id, state: record.state, action });
        }
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        self.inner.changed.notify_waiters();
        self.get(id).await
    }

    /// A campaign's progress.
    pub async fn progress(&self, id: CampaignId) -> Result<crate::progress::Progress, CampaignError> {
        self.progress_of(&self.get(id).await?).await
    }

    /// The progress of a campaign already read (counts its recipients; reads nothing else).
    pub async fn progress_of(&self, record: &CampaignRecord) -> Result<crate::progress::Progress, CampaignError> {
        let tally: Vec<Tally> = self.inner.engine.store().campaign_tally(record.id).await?;
        let stored = stored(record)?;
        let price = crate::progress::last_channel_price(&self.inner.engine, &stored.spec);
        Ok(crate::progress::Progress::new(record, &stored, &tally, price, self.inner.engine.now()))
    }

    /// A page of a campaign's recipients: those matching `filter`, by number.
    pub async fn recipients(
        &self,
        id: CampaignId,
        filter: &RecipientFilter,
    ) -> Result<Vec<RecipientRecord>, CampaignError> {
        Ok(self.inner.engine.store().campaign_recipients(id, filter).await?)
    }

    /// A campaign's results over time: how many recipients ended each way (outcome and
    /// delivering channel) in each `bucket` of time, counted by the store
    /// ([`cascade_engine::Store::campaign_series`]).
    pub async fn series(&self, id: CampaignId, bucket: Duration) -> Result<Vec<SeriesPoint>, CampaignError> {
        Ok(self.inner.engine.store().campaign_series(id, bucket).await?)
    }

    /// Why a campaign's recipients did not get the message: failed and refused ones counted by
    /// reason, most first, at most `limit` reasons ([`cascade_engine::Store::campaign_reasons`]).
    pub async fn failure_reasons(&self, id: CampaignId, limit: usize) -> Result<Vec<(String, u64)>, CampaignError> {
        Ok(self.inner.engine.store().campaign_reasons(id, limit).await?)
    }

    /// Campaigns newest first (see [`cascade_engine::Store::list_campaigns`]).
    pub async fn list(
        &self,
        before: Option<CampaignId>,
        owner: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CampaignRecord>, CampaignError> {
        Ok(self.inner.engine.store().list_campaigns(before, owner, limit).await?)
    }

    /// Cancels the campaigns whose import a stopped process cut short, closing the recipients
    /// they stored; returns how many. An import is taken for cut short once this has seen its
    /// mark unchanged for [`CampaignsConfig::import_stale`] by this process's clock: the first
    /// call only notes the marks (and so, after a restart, a campaign left importing is given
    /// up `import_stale` after the runner starts).
    pub async fn give_up_stale_imports(&self) -> Result<usize, CampaignError> {
        let inner = &self.inner;
        let store = inner.engine.store();
        let stale = inner.config.import_stale;
        if stale.is_zero() {
            return Ok(0);
        }
        let mut importing = Vec::new();
        let mut before = None;
        loop {
            let page = store.list_campaigns(before, None, 500).await?;
            let Some(last) = page.last() else { break };
            before = Some(last.id);
            importing.extend(page.into_iter().filter(|c| c.state == CampaignState::Importing));
        }
        let silent: Vec<&CampaignRecord> = {
            let mut seen = lock(&inner.imports_seen);
            seen.retain(|id, _| importing.iter().any(|c| c.id == *id));
            let at = Instant::now();
            importing
                .iter()
                .filter(|c| {
                    let (mark, since) = seen.entry(c.id).or_insert((c.updated_at, at));
                    if *mark != c.updated_at {
                        (*mark, *since) = (c.updated_at, at);
                    }
                    at.duration_since(*since) >= stale
                })
                .collect()
        };
        let now = inner.engine.now();
        let mut given_up = 0;
        for c in silent {
            if store.set_campaign_state(c.id, &[CampaignState::Importing], CampaignState::Cancelled, now).await? {
                let closed = store.close_pending(c.id, RecipientState::Cancelled, now).await?;
                tracing::warn!(
                    campaign = %c.id,
                    stored = closed,
                    since = %c.updated_at,
                    "campaign import cut short (its process stopped): cancelled"
                );
                given_up += 1;
            }
        }
        Ok(given_up)
    }

    /// Looks for imports cut short, at start and every quarter of `import_stale`, on a task of
    /// its own: a slow look never holds up the renewal of the runner's leases.
    async fn watch_imports(self) {
        let inner = &self.inner;
        let Some(every) = inner.config.mark_every() else { return };
        while !inner.stopping.load(Ordering::Acquire) {
            if let Err(e) = self.give_up_stale_imports().await {
                tracing::warn!(error = %e, "could not look for campaign imports cut short");
            }
            let stop = inner.stop.notified();
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop => {}
            }
        }
    }

    async fn run(self) {
        let inner = &self.inner;
        let store = inner.engine.store().clone();
        tokio::spawn(self.clone().watch_imports());
        loop {
            if inner.stopping.load(Ordering::Acquire) {
                // Give the campaigns up, so an instance starting now takes them at once
                // instead of after the lease: a lease ending before `now` has lapsed.
                let now = inner.engine.now();
                let past = now - chrono::Duration::milliseconds(1);
                if let Err(e) = store.lease_campaigns(&inner.config.holder, now, past, 1_000).await {
                    tracing::warn!(error = %e, "could not give up the campaign leases");
                }
                return;
            }
            let now = inner.engine.now();
            match store.lease_campaigns(&inner.config.holder, now, after(now, inner.config.lease), 1_000).await {
                Ok(leased) => {
                    for record in leased {
                        if !lock(&inner.driving).insert(record.id) {
                            continue;
                        }
                        let me = self.clone();
                        tokio::spawn(async move {
                            let id = record.id;
                            if let Err(e) = me.drive(record).await {
                                tracing::warn!(campaign = %id, error = %e, "campaign driver stopped");
                            }
                            lock(&me.inner.driving).remove(&id);
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not lease campaigns"),
            }
            let stop = inner.stop.notified();
            tokio::select! {
                _ = tokio::time::sleep(inner.config.poll) => {}
                _ = inner.wake.notified() => {}
                _ = stop => {}
            }
        }
    }

    /// Drives one leased campaign until it is no longer running here.
    async fn drive(&self, record: CampaignRecord) -> Result<(), CampaignError> {
        let inner = &self.inner;
        let engine = &inner.engine;
        let store = engine.store().clone();
        let id = record.id;
        let stored = stored(&record)?;
        let spec = Arc::new(stored.spec);
        let zones = stored.import.zones();
        let schedule = &spec.schedule;
        let mut pacer = Pacer::new(spec.rate.per_second());
        let mut checked = Instant::now();
        let mut seen = inner.generation.load(Ordering::Acquire);
        let mut cursor: Option<u64> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            if inner.stopping.load(Ordering::Acquire) {
                return Ok(());
            }
            let changed = inner.changed.notified();
            let generation = inner.generation.load(Ordering::Acquire);
            if checked.elapsed() >= inner.config.poll || generation != seen {
                (checked, seen) = (Instant::now(), generation);
                let state = store.load_campaign(id).await?.map(|r| r.state);
                if state != Some(CampaignState::Running) {
                    return Ok(());
                }
            }
            let now = engine.now();
            let mut wait_until = None;
            if let Some(start) = schedule.start_at.filter(|s| now < *s) {
                wait_until = Some(start);
            } else if schedule.end_at.is_some_and(|e| now >= e) {
                let expired = store.close_pending(id, RecipientState::Expired, now).await?;
                store.set_campaign_state(id, &[CampaignState::Running], CampaignState::Finished, now).await?;
                tracing::info!(campaign = %id, expired, "campaign ended");
                return Ok(());
            }
            let open = match (&schedule.window, wait_until) {
                (_, Some(_)) | (None, None) => None,
                (Some(w), None) => {
                    let open = open_zones(w, &zones, now);
                    if open.is_empty() {
                        wait_until = zones.iter().map(|(_, tz)| w.next_open(now, *tz)).min();
                    }
                    Some(open)
                }
            };
            if let Some(at) = wait_until {
                // Before the start or outside the window: sleep until then (or the end), waking
                // every `poll` to notice a pause or cancel.
                let at = schedule.end_at.map_or(at, |e| at.min(e));
                let nap = (at - now).to_std().unwrap_or_default().min(inner.config.poll);
                pacer.reset();
                sleep_or_change(nap.max(Duration::from_millis(1)), changed).await;
                continue;
            }
            let n = pacer.take(Instant::now());
            if n == 0 {
                tokio::time::sleep_until(pacer.ready_at()).await;
                continue;
            }
            let filter = RecipientFilter {
                states: vec![RecipientState::Pending],
                zones: open.clone(),
                after: cursor,
                limit: n,
                ..RecipientFilter::default()
            };
            let batch = store.campaign_recipients(id, &filter).await?;
            pacer.give_back(n - batch.len().min(n));
            // Read on from the last recipient taken, so a read does not walk past every
            // recipient already started; after a short read, start from the beginning again
            // (recipients of zones that were closed, or left pending by a failed batch).
            let resumed = cursor.is_some();
            cursor = if batch.len() < n { None } else { batch.last().map(|r| r.seq) };
            if batch.is_empty() && resumed {
                continue;
            }
            if batch.is_empty() {
                // Without a window that read was already over every pending recipient.
                let any =
                    RecipientFilter { states: vec![RecipientState::Pending], limit: 1, ..RecipientFilter::default() };
                if open.is_none() || store.campaign_recipients(id, &any).await?.is_empty() {
                    store.set_campaign_state(id, &[CampaignState::Running], CampaignState::Finished, now).await?;
                    tracing::info!(campaign = %id, "campaign finished: every recipient started");
                    return Ok(());
                }
                // Pending recipients, all in zones whose window is closed.
                sleep_or_change(inner.config.poll, changed).await;
                continue;
            }
            match self.start_batch(&record, &spec, batch).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(campaign = %id, error = %e, "could not start recipients; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Submits the cascades of a batch of pending recipients together, then records them.
    /// Recipients whose submission failed for a reason that may pass (the store, a shutdown)
    /// stay pending and are tried again.
    async fn start_batch(
        &self,
        record: &CampaignRecord,
        spec: &Arc<CampaignSpec>,
        batch: Vec<RecipientRecord>,
    ) -> Result<(), CampaignError> {
        let engine = &self.inner.engine;
        let mut tasks = tokio::task::JoinSet::new();
        for r in batch {
            let request = request_for(record, spec, r.seq, r.contact);
            let engine = engine.clone();
            tasks.spawn(async move { (r.seq, engine.submit(request).await) });
        }
        let mut results = Vec::new();
        let mut retry = None;
        while let Some(joined) = tasks.join_next().await {
            let Ok((seq, submitted)) = joined else { continue };
            match submitted {
                Ok(handle) => results.push((seq, StartResult::Started(handle.id()))),
                Err(SubmitError::Invalid(problems)) => {
                    let reason = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
                    results.push((seq, StartResult::Refused(reason)));
                }
                Err(SubmitError::IdempotencyConflict { existing, .. }) => {
                    // Started before with other settings (they cannot change): it has its cascade.
                    results.push((seq, StartResult::Started(existing)));
                }
                Err(e) => retry = Some(e),
            }
        }
        results.sort_by_key(|(seq, _)| *seq);
        let store = engine.store();
        store.mark_started(record.id, &results, engine.now()).await?;
        // A cancel that closed the pending recipients while this batch was being submitted
        // left these out of the cancel's sweep (they were not marked started yet): cancel
        // their cascades here. (A cancel after the marking finds them started.)
        if store.load_campaign(record.id).await?.is_some_and(|c| c.state == CampaignState::Cancelled) {
            for (_, start) in &results {
                if let StartResult::Started(cascade) = start
                    && let Err(e) = engine.cancel(*cascade).await
                {
                    tracing::debug!(cascade = %cascade, error = %e, "could not cancel a campaign cascade");
                }
            }
        }
        match retry {
            Some(SubmitError::Store(e)) => Err(e.into()),
            Some(e) => Err(StoreError::Unavailable(e.to_string()).into()),
            None => Ok(()),
        }
    }
}

/// The cascade request for one recipient.
fn request_for(
    record: &CampaignRecord,
    spec: &CampaignSpec,
    seq: u64,
    contact: cascade_engine::Contact,
) -> CascadeRequest {
    let mut metadata = match &spec.metadata {
        serde_json::Value::Object(m) => m.clone(),
        serde_json::Value::Null => serde_json::Map::new(),
        other => serde_json::Map::from_iter([("data".to_owned(), other.clone())]),
    };
    metadata.insert("campaign".into(), serde_json::Value::String(record.id.to_string()));
    metadata.insert("recipient".into(), serde_json::Value::from(seq));
    CascadeRequest {
        contact,
        message: spec.message.clone(),
        policy: spec.policy.clone(),
        variables: spec.variables.clone(),
        idempotency_key: Some(format!("campaign:{}:{seq}", record.id)),
        callback_url: None,
        metadata: serde_json::Value::Object(metadata),
        owner: record.owner.clone(),
        campaign: Some(CampaignMember { campaign: record.id, seq }),
    }
}

/// The zones among `zones` whose window is open at `now`.
fn open_zones(window: &Window, zones: &[(String, Tz)], now: Timestamp) -> Vec<String> {
    zones.iter().filter(|(_, tz)| window.is_open(now, *tz)).map(|(name, _)| name.clone()).collect()
}

async fn sleep_or_change(nap: Duration, changed: tokio::sync::futures::Notified<'_>) {
    tokio::select! {
        _ = tokio::time::sleep(nap) => {}
        _ = changed => {}
    }
}

/// Keeps a campaign to its rate: a token bucket refilled at the rate, taken in batches of
/// about 20 ms of sending, holding at most a quarter of a second's worth so a stall is made
/// up within the same second rather than as a burst later.
#[derive(Debug)]
struct Pacer {
    per_second: f64,
    tokens: f64,
    batch: f64,
    cap: f64,
    at: Instant,
}

impl Pacer {
    fn new(per_second: f64) -> Self {
        let batch = (per_second * 0.02).ceil().max(1.0);
        let cap = (per_second * 0.25).max(batch);
        Self { per_second, tokens: batch, batch, cap, at: Instant::now() }
    }

    /// Starts over with one batch in hand (after a wait: nothing saved up while not sending).
    fn reset(&mut self) {
        self.tokens = self.batch;
        self.at = Instant::now();
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.cap);
        self.at = now;
    }

    /// How many may start now: none until a batch is in hand, then all in hand.
    fn take(&mut self, now: Instant) -> usize {
        self.refill(now);
        if self.tokens < self.batch {
            return 0;
        }
        let n = self.tokens.floor();
        self.tokens -= n;
        n as usize
    }

    /// Returns tokens taken but not used (fewer recipients were pending).
    fn give_back(&mut self, n: usize) {
        self.tokens = (self.tokens + n as f64).min(self.cap);
    }

    /// When a batch will be in hand.
    fn ready_at(&self) -> Instant {
        let missing = (self.batch - self.tokens).max(0.0);
        self.at + Duration::from_secs_f64(missing / self.per_second)
    }
}
