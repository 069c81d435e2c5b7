//! [`SqliteStore`]: the embedded default. One file, WAL journal, one writer with group commit
//! (on its own thread, with a connection it runs the writes of every cascade on directly, and
//! an sqlx connection for the rest), a few sqlx reader connections.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cascade_engine::StoreError;
use sqlx::Sqlite;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::batch::{Backend, WriteOp, WriteOut, Writer, WriterStats, one_by_one};
use crate::direct::Direct;

/// How hard SQLite works to keep committed writes on a power cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// fsync on every commit (`synchronous = FULL`): an accepted cascade survives a power cut.
    /// Group commit shares each fsync between all writes of a batch. The default.
    #[default]
    Full,
    /// fsync at checkpoints only (`synchronous = NORMAL`): survives a process crash, may lose
    /// the last commits on a power cut.
    Normal,
}

impl Durability {
    /// The `synchronous` setting it is, for every connection of the store.
    pub(crate) fn synchronous(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

/// How long a connection waits for another's lock on the database, on every connection of the
/// store.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of a [`SqliteStore`].
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    /// The database file; created if missing.
    pub path: PathBuf,
    /// Commit durability (default: [`Durability::Full`]).
    pub durability: Durability,
    /// Pooled reader connections (default 4); also the most idle quick-read connections kept
    /// for the next read (at least one per core).
    pub readers: u32,
    /// The most writes one transaction takes (default 512).
    pub max_batch: usize,
}

impl SqliteConfig {
    /// Defaults for a file.
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self { path: path.as_ref().to_owned(), durability: Durability::Full, readers: 4, max_batch: 512 }
    }
}

/// A durable [`Store`](cascade_engine::Store) in one SQLite file.
///
/// ```no_run
/// # async fn demo() -> Result<(), cascade_engine::StoreError> {
/// let store = cascade_store_sql::SqliteStore::open("cascade.db").await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SqliteStore {
    read: SqlitePool,
    quick: crate::direct::Reads,
    writer: Writer,
}

/// Every status webhook looks its provider id up, and every new cascade its contact's
/// conversations: answered on the calling thread (`direct::Reads`), an indexed lookup of a few
/// microseconds, not through sqlx's pool and connection thread; through the pool when the
/// database is locked.
impl crate::shared::QuickReads for SqliteStore {
    fn find_attempt_now(
        &self,
        adapter: &str,
        provider_message_id: &str,
    ) -> Option<Result<Option<cascade_engine::store::AttemptRef>, StoreError>> {
        self.quick.find_attempt(adapter, provider_message_id).ok()
    }

    fn conversations_now(
        &self,
        addresses: &[(cascade_engine::ChannelName, String)],
    ) -> Option<Result<Vec<cascade_engine::store::Conversation>, StoreError>> {
        self.quick.conversations(addresses).ok().map(|found| found.map(crate::sorted_conversations))
    }
}

/// The writer: the writes every cascade makes on a connection of the writer's thread
/// ([`Direct`]), every other batch through sqlx.
#[derive(Debug)]
struct SqliteBackend {
    direct: std::sync::Mutex<Direct>,
    general: SqlxWriter,
}

/// The sqlx connection the writer runs batches [`Direct`] does not take on.
#[derive(Debug)]
struct SqlxWriter {
    write: SqlitePool,
}

#[async_trait::async_trait]
impl Backend for SqliteBackend {
    async fn run(&self, ops: &[&WriteOp]) -> Result<Vec<Result<WriteOut, StoreError>>, StoreError> {
        let (direct, general): (Vec<&WriteOp>, Vec<&WriteOp>) = ops.iter().copied().partition(|op| Direct::takes(op));
        if general.is_empty() {
            return self.direct(ops);
        }
        if direct.is_empty() {
            return self.general.run(ops).await;
        }
        // Both kinds: two transactions, the direct one first. Once it has committed, this
        // batch may no longer fail as a whole (its writes would be run again), so a failed
        // sqlx part is run again write by write here, each answering for itself.
        let direct_out = self.direct(&direct)?;
        let general_out = match self.general.run(&general).await {
            Ok(out) => out,
            Err(e) => one_by_one(&self.general, &general, e, None).await,
        };
        // Each part answers its writes in order: merged back in the batch's order.
        let (mut direct_out, mut general_out) = (direct_out.into_iter(), general_out.into_iter());
        Ok(ops
            .iter()
            .map(|op| if Direct::takes(op) { direct_out.next() } else { general_out.next() })
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Unavailable("write not run".into()))))
            .collect())
    }
}

impl SqliteBackend {
    fn direct(&self, ops: &[&WriteOp]) -> Result<Vec<Result<WriteOut, StoreError>>, StoreError> {
        // Only the writer's loop runs batches, one at a time: the lock is never contended,
        // nor poisoned (no write panics while holding it).
        self.direct.lock().unwrap_or_else(std::sync::PoisonError::into_inner).run(ops)
    }
}

impl SqliteStore {
    /// Opens (or creates) the database file with default settings and brings its schema up to
    /// date.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(SqliteConfig::new(path)).await
    }

    /// Opens (or creates) a database with these settings and brings its schema up to date.
    pub async fn open_with(config: SqliteConfig) -> Result<Self, StoreError> {
        if config.path.as_os_str() == ":memory:" {
            // Each connection would open a database of its own.
            return Err(StoreError::Unavailable(
                "a SQLite store needs a file; for no persistence use the in-memory store".into(),
            ));
        }
        let options = SqliteConnectOptions::new()
            .filename(&config.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .pragma("synchronous", config.durability.synchronous())
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(false)
            // Sorts and temporary indexes in memory, not in files created and deleted under
            // /var/tmp dozens of times a second.
            .pragma("temp_store", "memory");
        let open_error = |e: sqlx::Error| StoreError::Unavailable(format!("{}: {e}", config.path.display()));
        // A connection to a local file does not go stale: no liveness round trip (a hand-off
        // to the connection's thread and back) before each use.
        let write = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone().statement_cache_capacity(crate::hot::WRITER_STATEMENTS))
            .await
            .map_err(open_error)?;
        crate::migrate::migrator(crate::migrate::SQLITE).await?.run(&write).await.map_err(crate::migrate::failed)?;
        let read = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(config.readers.max(1))
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.read_only(true))
            .await
            .map_err(open_error)?;
        let path = config.path.clone();
        let durability = config.durability;
        let writer = Writer::start(
            async move {
                let direct = std::sync::Mutex::new(Direct::open(&path, durability)?);
                Ok(SqliteBackend { direct, general: SqlxWriter { write } })
            },
            1,
            config.max_batch,
        )
        .await?;
        let quick = crate::direct::Reads::new(&config.path, config.readers as usize);
        Ok(Self { read, quick, writer })
    }

    /// Counters of the group-commit writer.
    pub fn writer_stats(&self) -> Arc<WriterStats> {
        self.writer.stats().clone()
    }
}

/// Upserts a conversation: (channel, address, connection, inbound, delivery), each time kept
/// the later.
pub(crate) const TOUCH: &str = "INSERT INTO conversations (channel, address, connection, last_inbound_at, last_delivery_at) \
            VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (channel, address, connection) DO UPDATE SET \
            last_inbound_at = CASE WHEN last_inbound_at IS NULL THEN excluded.last_inbound_at \
              WHEN excluded.last_inbound_at IS NULL THEN last_inbound_at \
              ELSE max(last_inbound_at, excluded.last_inbound_at) END, \
            last_delivery_at = CASE WHEN last_delivery_at IS NULL THEN excluded.last_delivery_at \
              WHEN excluded.last_delivery_at IS NULL THEN last_delivery_at \
              ELSE max(last_delivery_at, excluded.last_delivery_at) END";

/// Claims due cascades: (lease end, now, limit), returning record columns.
pub(crate) const CLAIM: &str = concat!(
    "UPDATE cascades SET wake_at = ?1, version = version + 1 WHERE id IN \
         (SELECT id FROM cascades WHERE wake_at <= ?2 ORDER BY wake_at LIMIT ?3) \
         RETURNING ",
    crate::record_columns!("cascades")
);

/// Claims due callbacks: (lease end, now, limit), returning outbox columns.
pub(crate) const CLAIM_OUTBOX: &str = "UPDATE outbox SET next_at = ?1 WHERE id IN \
            (SELECT id FROM outbox WHERE dead = 0 AND next_at <= ?2 ORDER BY next_at LIMIT ?3) \
            RETURNING id, cascade_id, url, body, tries, next_at, last_error, dead";

/// Records a failed delivery try: (id, error, retry at or `NULL` for dead).
pub(crate) const RETRY_OUTBOX: &str = "UPDATE outbox SET tries = tries + 1, last_error = ?2, \
            next_at = coalesce(?3, next_at), dead = (?3 IS NULL) WHERE id = ?1";

crate::shared::define_sql_store! {
    db: Sqlite,
    row: sqlx::sqlite::SqliteRow,
    store: SqliteStore,
    backend: SqlxWriter,
    touch: TOUCH,
    claim: CLAIM,
    claim_outbox: CLAIM_OUTBOX,
    retry_outbox: RETRY_OUTBOX,
    purge: "SELECT id FROM cascades WHERE finished_at IS NOT NULL AND finished_at < ?1 \
            AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.cascade_id = cascades.id AND outbox.dead = 0) \
            ORDER BY finished_at LIMIT ?2",
    outbox_counts: "SELECT (SELECT count(*) FROM outbox WHERE dead = 0), \
            (SELECT count(*) FROM outbox WHERE dead = 1)",
    contains: ("instr(channels, ", ") > 0"),
    lease_campaigns: "UPDATE campaigns SET lease_holder = ?1, lease_until = ?2 WHERE id IN \
            (SELECT id FROM campaigns WHERE state = 'running' \
             AND (lease_holder IS NULL OR lease_holder = ?1 OR lease_until < ?3) ORDER BY id LIMIT ?4) \
            RETURNING id, name, owner, state, spec, recipients, created_at, updated_at",
    claim_held: "UPDATE held_requests SET lease_until = ?1 WHERE key IN \
            (SELECT key FROM held_requests WHERE kind = ?2 AND lease_until <= ?3 ORDER BY held_at, key LIMIT ?4) \
            RETURNING key, kind, body, held_at",
    batch_settings: None::<&str>,
}

#[cfg(test)]
mod tests {
    use cascade_engine::store::Created;
    use cascade_engine::{Policy, Step};

    use super::*;
    use crate::codec::{NewCascade, PolicyRow};

    #[tokio::test]
    async fn a_database_in_memory_is_refused() {
        let refused = SqliteStore::open(":memory:").await;
        assert!(
            matches!(&refused, Err(StoreError::Unavailable(why)) if why.contains("needs a file")),
            "{:?}",
            refused.err()
        );
    }

    #[tokio::test]
    async fn a_batch_of_both_kinds_runs_each_part_on_its_connection_and_answers_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("split.db");
        drop(SqliteStore::open(&path).await.expect("open the store"));
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(SqliteConnectOptions::new().filename(&path))
            .await
            .expect("sqlx connection");
        let backend = SqliteBackend {
            direct: std::sync::Mutex::new(Direct::open(&path, Durability::Full).expect("direct")),
            general: SqlxWriter { write: write.clone() },
        };
        let now = chrono::Utc::now();
        let create = |phone: &str| {
            let record = cascade_testkit::sample_record(None, "", phone, now);
            WriteOp::Create(Box::new(NewCascade::encode(&record, &[]).expect("encode")))
        };
        let policy = Policy::new([Step::new("sms")]);
        let save_policy =
            |expected| WriteOp::SavePolicy(Box::new(PolicyRow::encode("p", &policy, expected, now).expect("encode")));
        let (a, b) = (create("+15550000001"), create("+15550000002"));
        let (first, conflict) = (save_policy(None), save_policy(Some(7)));

        let out = backend.run(&[&a, &first, &b, &conflict]).await.expect("batch");
        assert!(matches!(out[0], Ok(WriteOut::Created(Created::New))), "{:?}", out[0]);
        assert!(matches!(out[1], Ok(WriteOut::Saved(1))), "{:?}", out[1]);
        assert!(matches!(out[2], Ok(WriteOut::Created(Created::New))), "{:?}", out[2]);
        assert!(
            matches!(out[3], Err(StoreError::PolicyConflict { current: 1, .. })),
            "a refusal answers for its own write: {:?}",
            out[3]
        );
        let cascades: i64 = sqlx::query_scalar("SELECT count(*) FROM cascades").fetch_one(&write).await.expect("count");
        assert_eq!(cascades, 2);
    }
}
