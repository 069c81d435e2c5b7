//! Group commit: writes from many tasks share transactions.
//!
//! Every write becomes a [`WriteOp`] on a queue. A writer loop (on the writer's own thread) takes
//! whatever has queued up (up to a limit), runs it all in one transaction (on SQLite, a batch
//! holding writes of both its connections' kinds commits as two), then answers each caller. While one batch commits, the next one gathers, so under load the cost of a
//! commit (an fsync) is shared by many writes; with no load a write commits at once, without
//! waiting for company.
//!
//! A batch that fails as a whole (a lost connection, a deadlock) is rolled back and its writes
//! are tried again one by one, so one bad write never fails its neighbours.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use cascade_engine::StoreError;
use cascade_engine::store::{
    CampaignRecord, CampaignState, CascadeRecord, Created, HeldRequest, NewHeldRequest, NewRecipient, OutboxItem,
    RecipientState, StartResult, StoredPolicy,
};
use cascade_engine::{CampaignId, Policy, Timestamp};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::codec::{CampaignRow, ConversationRow, HeldRow, NewCascade, PolicyRow, RecipientRow, SaveRow, ts};

/// One write.
#[derive(Debug)]
pub(crate) enum WriteOp {
    Create(Box<NewCascade>),
    Save(Box<SaveRow>),
    Touch(ConversationRow),
    Claim {
        now: i64,
        limit: i64,
        until: i64,
    },
    ClaimOutbox {
        now: i64,
        limit: i64,
        until: i64,
    },
    /// `error` is `None` on success; else the error and when to retry (`None`: give up).
    OutboxResult {
        id: i64,
        error: Option<(String, Option<i64>)>,
    },
    Purge {
        before: i64,
        limit: i64,
    },
    SaveCampaign(Box<CampaignRow>),
    /// Moves a campaign to `to` if it is in one of `from`.
    SetCampaignState {
        id: uuid::Uuid,
        from: Vec<&'static str>,
        to: &'static str,
        now: i64,
    },
    LeaseCampaigns {
        holder: String,
        now: i64,
        until: i64,
        limit: i64,
    },
    AddRecipients {
        campaign: uuid::Uuid,
        rows: Vec<RecipientRow>,
    },
    /// Recipients started, as (seq, cascade), and refused, as (seq, reason); each seq once.
    MarkStarted {
        campaign: uuid::Uuid,
        started: Vec<(i64, uuid::Uuid)>,
        refused: Vec<(i64, String)>,
        at: i64,
    },
    ClosePending {
        campaign: uuid::Uuid,
        to: &'static str,
        at: i64,
    },
    /// Stores a policy (compare-and-set when it names the version expected); answers the new
    /// version.
    SavePolicy(Box<PolicyRow>),
    /// Deletes a policy if it is at `expected` (0: none stored), or whatever its version when
    /// `None`; answers whether one was deleted.
    DeletePolicy {
        name: String,
        expected: Option<i64>,
    },
    /// Holds a request unless its key is held; answers whether it was new.
    Hold(Box<HeldRow>),
    /// Claims held requests of `kind` whose lease ended by `now`, leasing them until `until`.
    ClaimHeld {
        kind: String,
        now: i64,
        limit: i64,
        until: i64,
    },
    /// Lets a held request go.
    Release {
        key: String,
    },
}

/// What a write returns.
#[derive(Debug)]
pub(crate) enum WriteOut {
    Created(Created),
    Saved(u64),
    Claimed(Vec<CascadeRecord>),
    Outbox(Vec<OutboxItem>),
    Purged(usize),
    Campaigns(Vec<CampaignRecord>),
    Held(Vec<HeldRequest>),
    Moved(bool),
    Count(u64),
    Done,
}

/// A database that can run a batch of writes in one transaction.
#[async_trait]
pub(crate) trait Backend: Send + Sync + 'static {
    /// Runs `ops` in one transaction (SQLite's may take two, see `direct`) and commits. An
    /// `Err` means nothing was committed; per-write refusals (a version conflict, a taken key)
    /// are in the `Ok` list.
    async fn run(&self, ops: &[&WriteOp]) -> Result<Vec<Result<WriteOut, StoreError>>, StoreError>;
}

type Job = (WriteOp, oneshot::Sender<Result<WriteOut, StoreError>>);

/// Counters of the writer, for benchmarks and metrics.
#[derive(Debug, Default)]
pub struct WriterStats {
    batches: AtomicU64,
    writes: AtomicU64,
}

impl WriterStats {
    /// Batches committed (on SQLite, a batch holding writes of both its connections' kinds
    /// commits as two transactions and counts once).
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Writes in the batches committed, refused ones included (a version conflict, a taken
    /// key: answered, with nothing to write).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}

/// The queue in front of the writer loops.
#[derive(Debug)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Job>,
    stats: Arc<WriterStats>,
}

/// The name of the writer's thread.
pub const WRITER_THREAD: &str = "cascade-writer";

impl Writer {
    /// Starts `workers` writer loops (one for SQLite, which has one writer anyway) taking up
    /// to `max_batch` writes per transaction, on a thread of their own ([`WRITER_THREAD`]) with
    /// a single-threaded runtime, over the backend `open` makes on that runtime. They stop
    /// when the `Writer` is dropped.
    ///
    /// Each statement of a batch waits for the database's answer: a reply on the connection's
    /// socket (PostgreSQL, whose sockets belong to the runtime they were opened on, hence
    /// `open` runs there), or on SQLite's sqlx path a hand-off back from sqlx's connection
    /// thread (its writes of every cascade run on this thread itself, `direct`). On the
    /// runtime the engine's tasks share, each of those wake-ups waited in line behind them, so
    /// a batch took several times its own work and every write waited for it.
    pub(crate) async fn start<B, F>(open: F, workers: usize, max_batch: usize) -> Result<Self, StoreError>
    where
        B: Backend,
        F: Future<Output = Result<B, StoreError>> + Send + 'static,
    {
        let (queue, rx) = mpsc::channel::<Job>(max_batch.max(1) * 8);
        let rx = Arc::new(Mutex::new(rx));
        let stats = Arc::new(WriterStats::default());
        let failed = |e: std::io::Error| StoreError::Unavailable(format!("starting the writer thread: {e}"));
        let (ready, started) = oneshot::channel();
        let loop_stats = stats.clone();
        std::thread::Builder::new()
            .name(WRITER_THREAD.into())
            .spawn(move || {
                // Built here, not by the caller: a runtime may not be dropped inside another's
                // async context, as it would be if the thread could not be started.
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready.send(Err(failed(e)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let backend = match open.await {
                        Ok(backend) => Arc::new(backend),
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready.send(Ok(()));
                    let loops: Vec<_> = (0..workers.max(1))
                        .map(|_| tokio::spawn(work(backend.clone(), rx.clone(), max_batch.max(1), loop_stats.clone())))
                        .collect();
                    for l in loops {
                        if let Err(e) = l.await {
                            // Its queued writes are answered "the store's writer has stopped".
                            tracing::error!(error = %e, "a store writer loop stopped");
                        }
                    }
                })
            })
            .map_err(failed)?;
        started.await.map_err(|_| StoreError::Unavailable("the writer thread stopped while starting".into()))??;
        Ok(Self { queue, stats })
    }

    /// Queues a write and waits until it is committed (or refused).
    pub(crate) async fn write(&self, op: WriteOp) -> Result<WriteOut, StoreError> {
        let (tx, rx) = oneshot::channel();
        let closed = || StoreError::Unavailable("the store's writer has stopped".into());
        self.queue.send((op, tx)).await.map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    pub(crate) fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }
}

async fn work<B: Backend>(
    backend: Arc<B>,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    max_batch: usize,
    stats: Arc<WriterStats>,
) {
    loop {
        let mut jobs = Vec::new();
        {
            let mut rx = rx.lock().await;
            match rx.recv().await {
                Some(job) => jobs.push(job),
                None => return,
            }
            while jobs.len() < max_batch
                && let Ok(job) = rx.try_recv()
            {
                jobs.push(job);
            }
        }
        let (ops, replies): (Vec<WriteOp>, Vec<_>) = jobs.into_iter().unzip();
        let refs: Vec<&WriteOp> = ops.iter().collect();
        let results = match backend.run(&refs).await {
            Ok(results) => {
                stats.batches.fetch_add(1, Ordering::Relaxed);
                stats.writes.fetch_add(ops.len() as u64, Ordering::Relaxed);
                results
            }
            Err(e) => one_by_one(&*backend, &refs, e, Some(&stats)).await,
        };
        for (result, reply) in results.into_iter().zip(replies) {
            let _ = reply.send(result);
        }
    }
}

/// Runs again, one by one, the writes of a batch that failed as a whole with `error`, so one
/// bad write never fails its neighbours: each answers for itself. A batch of one answers
/// `error`.
pub(crate) async fn one_by_one<B: Backend + ?Sized>(
    backend: &B,
    ops: &[&WriteOp],
    error: StoreError,
    stats: Option<&WriterStats>,
) -> Vec<Result<WriteOut, StoreError>> {
    if ops.len() == 1 {
        return vec![Err(error)];
    }
    tracing::warn!(%error, writes = ops.len(), "a write batch failed; retrying its writes one by one");
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        out.push(match backend.run(&[op]).await {
            Ok(mut r) => {
                if let Some(stats) = stats {
                    stats.batches.fetch_add(1, Ordering::Relaxed);
                    stats.writes.fetch_add(1, Ordering::Relaxed);
                }
                r.pop().unwrap_or_else(|| Err(StoreError::Unavailable("empty batch result".into())))
            }
            Err(e) => Err(e),
        });
    }
    out
}

fn unexpected(out: WriteOut) -> StoreError {
    StoreError::Unavailable(format!("the writer answered with {out:?}"))
}

/// The write half of the `Store` trait, the same for every backend.
impl Writer {
    pub(crate) async fn create(
        &self,
        record: &CascadeRecord,
        events: &[cascade_engine::Event],
    ) -> Result<Created, StoreError> {
        match self.write(WriteOp::Create(Box::new(NewCascade::encode(record, events)?))).await? {
            WriteOut::Created(c) => Ok(c),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn save(&self, update: &cascade_engine::store::CascadeUpdate) -> Result<u64, StoreError> {
        match self.write(WriteOp::Save(Box::new(SaveRow::encode(update)?))).await? {
            WriteOut::Saved(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn claim_due(
        &self,
        now: cascade_engine::Timestamp,
        limit: usize,
        lease: std::time::Duration,
    ) -> Result<Vec<CascadeRecord>, StoreError> {
        let op =
            WriteOp::Claim { now: crate::codec::ts(now), limit: limit as i64, until: crate::codec::after(now, lease) };
        match self.write(op).await? {
            WriteOut::Claimed(c) => Ok(c),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn touch(&self, c: &cascade_engine::store::Conversation) -> Result<(), StoreError> {
        match self.write(WriteOp::Touch(c.into())).await? {
            WriteOut::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn claim_outbox(
        &self,
        now: cascade_engine::Timestamp,
        limit: usize,
        lease: std::time::Duration,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let op = WriteOp::ClaimOutbox {
            now: crate::codec::ts(now),
            limit: limit as i64,
            until: crate::codec::after(now, lease),
        };
        match self.write(op).await? {
            WriteOut::Outbox(items) => Ok(items),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn outbox_result(
        &self,
        id: u64,
        result: Result<(), (String, Option<cascade_engine::Timestamp>)>,
    ) -> Result<(), StoreError> {
        let error = result.err().map(|(e, at)| (e, at.map(crate::codec::ts)));
        match self.write(WriteOp::OutboxResult { id: id as i64, error }).await? {
            WriteOut::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn purge(&self, before: cascade_engine::Timestamp, limit: usize) -> Result<usize, StoreError> {
        match self.write(WriteOp::Purge { before: crate::codec::ts(before), limit: limit as i64 }).await? {
            WriteOut::Purged(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn save_campaign(&self, campaign: &CampaignRecord) -> Result<(), StoreError> {
        match self.write(WriteOp::SaveCampaign(Box::new(CampaignRow::encode(campaign)?))).await? {
            WriteOut::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn set_campaign_state(
        &self,
        id: CampaignId,
        from: &[CampaignState],
        to: CampaignState,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        if from.is_empty() {
            return Ok(false);
        }
        let op = WriteOp::SetCampaignState {
            id: *id.as_uuid(),
            from: from.iter().map(|s| s.as_str()).collect(),
            to: to.as_str(),
            now: ts(now),
        };
        match self.write(op).await? {
            WriteOut::Moved(moved) => Ok(moved),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn lease_campaigns(
        &self,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<CampaignRecord>, StoreError> {
        let op = WriteOp::LeaseCampaigns {
            holder: holder.to_owned(),
            now: ts(now),
            until: ts(until),
            limit: i64::try_from(limit).unwrap_or(i64::MAX),
        };
        match self.write(op).await? {
            WriteOut::Campaigns(c) => Ok(c),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn add_recipients(
        &self,
        campaign: CampaignId,
        recipients: &[NewRecipient],
    ) -> Result<(), StoreError> {
        let rows = recipients.iter().map(RecipientRow::encode).collect::<Result<_, _>>()?;
        match self.write(WriteOp::AddRecipients { campaign: *campaign.as_uuid(), rows }).await? {
            WriteOut::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn mark_started(
        &self,
        campaign: CampaignId,
        results: &[(u64, StartResult)],
        at: Timestamp,
    ) -> Result<(), StoreError> {
        // A number named twice keeps its first result, as if the pairs were applied in turn.
        let mut seen = std::collections::HashSet::with_capacity(results.len());
        let (mut started, mut refused) = (Vec::new(), Vec::new());
        for (seq, result) in results.iter().filter(|(seq, _)| seen.insert(*seq)) {
            let seq = crate::codec::seq(*seq);
            match result {
                StartResult::Started(id) => started.push((seq, *id.as_uuid())),
                StartResult::Refused(reason) => refused.push((seq, reason.clone())),
            }
        }
        if started.is_empty() && refused.is_empty() {
            return Ok(());
        }
        let op = WriteOp::MarkStarted { campaign: *campaign.as_uuid(), started, refused, at: ts(at) };
        match self.write(op).await? {
            WriteOut::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn save_policy(
        &self,
        name: &str,
        policy: &Policy,
        expected: Option<u64>,
        at: Timestamp,
    ) -> Result<StoredPolicy, StoreError> {
        let row = PolicyRow::encode(name, policy, expected, at)?;
        match self.write(WriteOp::SavePolicy(Box::new(row))).await? {
            WriteOut::Saved(version) => {
                Ok(StoredPolicy { name: name.to_owned(), policy: policy.clone(), version, updated_at: at })
            }
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn delete_policy(&self, name: &str, expected: Option<u64>) -> Result<bool, StoreError> {
        let op = WriteOp::DeletePolicy { name: name.to_owned(), expected: expected.map(crate::codec::seq) };
        match self.write(op).await? {
            WriteOut::Moved(deleted) => Ok(deleted),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn close_pending(
        &self,
        campaign: CampaignId,
        to: RecipientState,
        at: Timestamp,
    ) -> Result<u64, StoreError> {
        match self.write(WriteOp::ClosePending { campaign: *campaign.as_uuid(), to: to.as_str(), at: ts(at) }).await? {
            WriteOut::Count(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn hold_request(
        &self,
        request: &NewHeldRequest,
        now: Timestamp,
        lease: std::time::Duration,
    ) -> Result<bool, StoreError> {
        match self.write(WriteOp::Hold(Box::new(HeldRow::encode(request, now, lease)?))).await? {
            WriteOut::Moved(new) => Ok(new),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn claim_held_requests(
        &self,
        kind: &str,
        now: Timestamp,
        limit: usize,
        lease: std::time::Duration,
    ) -> Result<Vec<HeldRequest>, StoreError> {
        let op = WriteOp::ClaimHeld {
            kind: kind.to_owned(),
            now: ts(now),
            limit: i64::try_from(limit).unwrap_or(i64::MAX),
            until: crate::codec::after(now, lease),
        };
        match self.write(op).await? {
            WriteOut::Held(held) => Ok(held),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn release_request(&self, key: &str) -> Result<(), StoreError> {
        match self.write(WriteOp::Release { key: key.to_owned() }).await? {
            WriteOut::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}
