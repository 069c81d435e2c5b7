//! [`PgStore`]: several engine instances on one PostgreSQL database.
//!
//! Writes go through group-commit writer tasks (each batch one transaction); reads use a
//! connection pool. Due cascades and callbacks are claimed with `FOR UPDATE SKIP LOCKED`, so
//! instances never claim the same row at once, and a claim is a lease: it pushes `wake_at`
//! forward, so the work of an instance that dies falls due again for the others.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cascade_engine::store::{
    AttemptRef, CascadeRecord, CascadeUpdate, Conversation, Created, ListFilter, OutboxItem, Store,
};
use cascade_engine::{CascadeId, ChannelName, Event, StoreError, Timestamp};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Postgres, QueryBuilder, Row, Transaction};
use uuid::Uuid;

use crate::batch::{Backend, WriteOp, WriteOut, Writer, WriterStats};
use crate::codec::{self, OutboxColumns, unavailable};

/// Settings of a [`PgStore`].
#[derive(Clone, Debug)]
pub struct PgConfig {
    /// A `postgres://` URL.
    pub url: String,
    /// The schema to keep cascade's tables in (created if missing); default: the connection's
    /// `search_path` (normally `public`).
    pub schema: Option<String>,
    /// Connections for reads (default 8).
    pub max_connections: u32,
    /// Group-commit writer tasks, each with its own connection (default 1: one writer makes
    /// the largest batches; more writers measured slower, see docs/performance.md).
    pub writers: usize,
    /// The most writes one transaction takes (default 512).
    pub max_batch: usize,
}

impl PgConfig {
    /// Defaults for a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), schema: None, max_connections: 8, writers: 1, max_batch: 512 }
    }

    /// Keeps the tables in this schema.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }
}

/// A durable [`Store`] in PostgreSQL, for one or several engine instances.
///
/// ```no_run
/// # async fn demo() -> Result<(), cascade_engine::StoreError> {
/// let store = cascade_store_sql::PgStore::connect("postgres://cascade@localhost/cascade").await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PgStore {
    read: PgPool,
    writer: Writer,
}

#[derive(Debug)]
struct PgBackend {
    write: PgPool,
}

/// A schema name fit to quote: letters, digits and underscores.
fn valid_schema(name: &str) -> bool {
    !name.is_empty() && name.len() < 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl PgStore {
    /// Connects with default settings and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(PgConfig::new(url)).await
    }

    /// Connects with these settings and brings the schema up to date.
    pub async fn connect_with(config: PgConfig) -> Result<Self, StoreError> {
        let bad_url = |e: sqlx::Error| StoreError::Unavailable(format!("database url: {e}"));
        let mut options = PgConnectOptions::from_str(&config.url).map_err(bad_url)?;
        let unreachable = |e: sqlx::Error| StoreError::Unavailable(format!("connecting to PostgreSQL: {e}"));
        if let Some(schema) = &config.schema {
            if !valid_schema(schema) {
                return Err(StoreError::Unavailable(format!(
                    "schema {schema:?}: use letters, digits and underscores only"
                )));
            }
            let mut conn = options.connect().await.map_err(unreachable)?;
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                .execute(&mut conn)
                .await
                .map_err(unreachable)?;
            conn.close().await.map_err(unreachable)?;
            options = options.options([("search_path", schema.as_str())]);
        }
        let pool = |n: u32| {
            PgPoolOptions::new()
                .max_connections(n)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options.clone())
        };
        let write = pool(config.writers.max(1) as u32).await.map_err(unreachable)?;
        crate::migrate::migrator(crate::migrate::POSTGRES).await?.run(&write).await.map_err(crate::migrate::failed)?;
        let read = pool(config.max_connections.max(1)).await.map_err(unreachable)?;
        let writer = Writer::start(Arc::new(PgBackend { write }), config.writers, config.max_batch);
        Ok(Self { read, writer })
    }

    /// Counters of the group-commit writers.
    pub fn writer_stats(&self) -> Arc<WriterStats> {
        self.writer.stats().clone()
    }
}

#[async_trait]
impl Backend for PgBackend {
    async fn run(&self, ops: &[WriteOp]) -> Result<Vec<Result<WriteOut, StoreError>>, sqlx::Error> {
        let mut tx = self.write.begin().await?;
        let mut out: Vec<Option<Result<WriteOut, StoreError>>> = ops.iter().map(|_| None).collect();
        hot_writes(&mut tx, ops, &mut out).await?;
        for (op, slot) in ops.iter().zip(out.iter_mut()) {
            if slot.is_none() {
                *slot = Some(exec(&mut tx, op).await?);
            }
        }
        tx.commit().await?;
        Ok(out.into_iter().map(|r| r.unwrap_or_else(|| Err(StoreError::Unavailable("write not run".into())))).collect())
    }
}

type Tx<'a> = Transaction<'a, Postgres>;

crate::hot::define_hot_writes!(Postgres);

async fn exec(tx: &mut Tx<'_>, op: &WriteOp) -> Result<Result<WriteOut, StoreError>, sqlx::Error> {
    Ok(match op {
        WriteOp::Create(_) | WriteOp::Save(_) => Err(StoreError::Unavailable("a hot write reached exec".into())),
        WriteOp::Touch(c) => {
            sqlx::query(
                "INSERT INTO conversations (channel, address, connection, last_inbound_at, last_delivery_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (channel, address, connection) DO UPDATE SET \
                 last_inbound_at = GREATEST(conversations.last_inbound_at, excluded.last_inbound_at), \
                 last_delivery_at = GREATEST(conversations.last_delivery_at, excluded.last_delivery_at)",
            )
            .bind(&c.channel)
            .bind(&c.address)
            .bind(&c.connection)
            .bind(c.last_inbound_at)
            .bind(c.last_delivery_at)
            .execute(&mut **tx)
            .await?;
            Ok(WriteOut::Done)
        }
        WriteOp::Claim { now, limit, until } => {
            let rows = sqlx::query(
                "UPDATE cascades c SET wake_at = $1, version = c.version + 1 FROM \
                 (SELECT id FROM cascades WHERE wake_at <= $2 ORDER BY wake_at LIMIT $3 FOR UPDATE SKIP LOCKED) due \
                 WHERE c.id = due.id RETURNING c.id, c.version, c.wake_at, c.body, c.meta",
            )
            .bind(until)
            .bind(now)
            .bind(limit)
            .fetch_all(&mut **tx)
            .await?;
            rows.iter().map(record_row).collect::<Result<_, _>>().map(WriteOut::Claimed)
        }
        WriteOp::ClaimOutbox { now, limit, until } => {
            let rows = sqlx::query(
                "UPDATE outbox o SET next_at = $1 FROM \
                 (SELECT id FROM outbox WHERE NOT dead AND next_at <= $2 ORDER BY next_at LIMIT $3 FOR UPDATE SKIP LOCKED) due \
                 WHERE o.id = due.id RETURNING o.id, o.cascade_id, o.url, o.body, o.tries, o.next_at, o.last_error, o.dead",
            )
            .bind(until)
            .bind(now)
            .bind(limit)
            .fetch_all(&mut **tx)
            .await?;
            let items: Result<Vec<OutboxItem>, StoreError> = rows.iter().map(outbox_row).collect();
            items.map(|mut items| {
                items.sort_by_key(|i| i.id);
                WriteOut::Outbox(items)
            })
        }
        WriteOp::OutboxResult { id, error } => {
            match error {
                None => sqlx::query("DELETE FROM outbox WHERE id = $1").bind(id).execute(&mut **tx).await?,
                Some((error, retry_at)) => {
                    sqlx::query(
                        "UPDATE outbox SET tries = tries + 1, last_error = $2, \
                         next_at = coalesce($3, next_at), dead = ($3::BIGINT IS NULL) WHERE id = $1",
                    )
                    .bind(id)
                    .bind(error)
                    .bind(retry_at)
                    .execute(&mut **tx)
                    .await?
                }
            };
            Ok(WriteOut::Done)
        }
        WriteOp::Purge { before, limit } => {
            let ids: Vec<Uuid> = sqlx::query_scalar(
                "SELECT id FROM cascades WHERE finished_at IS NOT NULL AND finished_at < $1 \
                 ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            )
            .bind(before)
            .bind(limit)
            .fetch_all(&mut **tx)
            .await?;
            for id in &ids {
                for sql in [
                    "DELETE FROM events WHERE cascade_id = $1",
                    "DELETE FROM provider_refs WHERE cascade_id = $1",
                    "DELETE FROM addresses WHERE cascade_id = $1",
                    "DELETE FROM cascades WHERE id = $1",
                ] {
                    sqlx::query(sql).bind(id).execute(&mut **tx).await?;
                }
            }
            Ok(WriteOut::Purged(ids.len()))
        }
    })
}

fn record_row(row: &sqlx::postgres::PgRow) -> Result<CascadeRecord, StoreError> {
    let id: Uuid = row.try_get("id").map_err(unavailable)?;
    let version: i64 = row.try_get("version").map_err(unavailable)?;
    let wake_at: Option<i64> = row.try_get("wake_at").map_err(unavailable)?;
    let body: &str = row.try_get("body").map_err(unavailable)?;
    let meta: &str = row.try_get("meta").map_err(unavailable)?;
    codec::record(id, version, wake_at, body, meta)
}

fn outbox_row(row: &sqlx::postgres::PgRow) -> Result<OutboxItem, StoreError> {
    let get = |e: sqlx::Error| unavailable(e);
    OutboxColumns {
        id: row.try_get("id").map_err(get)?,
        cascade: row.try_get("cascade_id").map_err(get)?,
        url: row.try_get("url").map_err(get)?,
        body: std::borrow::Cow::Borrowed(row.try_get("body").map_err(get)?),
        tries: row.try_get("tries").map_err(get)?,
        next_at: row.try_get("next_at").map_err(get)?,
        last_error: row.try_get("last_error").map_err(get)?,
        dead: row.try_get("dead").map_err(get)?,
    }
    .item()
}

#[async_trait]
impl Store for PgStore {
    async fn create(&self, record: CascadeRecord, events: Vec<Event>) -> Result<Created, StoreError> {
        self.writer.create(&record, &events).await
    }

    async fn load(&self, id: CascadeId) -> Result<Option<CascadeRecord>, StoreError> {
        let row = sqlx::query("SELECT id, version, wake_at, body, meta FROM cascades WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(&self.read)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(record_row).transpose()
    }

    async fn save(&self, update: &CascadeUpdate) -> Result<u64, StoreError> {
        self.writer.save(update).await
    }

    async fn events(&self, id: CascadeId) -> Result<Vec<Event>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar("SELECT body FROM events WHERE cascade_id = $1 ORDER BY seq")
            .bind(id.as_uuid())
            .fetch_all(&self.read)
            .await
            .map_err(unavailable)?;
        if rows.is_empty() && self.load(id).await?.is_none() {
            return Err(StoreError::NotFound(id));
        }
        rows.iter().map(|b| codec::event(*id.as_uuid(), b)).collect()
    }

    async fn find_attempt(&self, adapter: &str, provider_message_id: &str) -> Result<Option<AttemptRef>, StoreError> {
        let row = sqlx::query(
            "SELECT cascade_id, attempt FROM provider_refs WHERE adapter = $1 AND provider_message_id = $2",
        )
        .bind(adapter)
        .bind(provider_message_id)
        .fetch_optional(&self.read)
        .await
        .map_err(unavailable)?;
        let Some(row) = row else { return Ok(None) };
        let cascade: Uuid = row.try_get(0).map_err(unavailable)?;
        let attempt: i64 = row.try_get(1).map_err(unavailable)?;
        Ok(Some(AttemptRef { cascade: CascadeId::from_uuid(cascade), attempt: attempt as u32 }))
    }

    async fn claim_due(&self, now: Timestamp, limit: usize, lease: Duration) -> Result<Vec<CascadeRecord>, StoreError> {
        self.writer.claim_due(now, limit, lease).await
    }

    async fn next_wake(&self) -> Result<Option<Timestamp>, StoreError> {
        let next: Option<i64> = sqlx::query_scalar("SELECT min(wake_at) FROM cascades WHERE wake_at IS NOT NULL")
            .fetch_one(&self.read)
            .await
            .map_err(unavailable)?;
        Ok(next.map(codec::from_ts))
    }

    async fn running_for_address(&self, channel: &ChannelName, address: &str) -> Result<Vec<CascadeId>, StoreError> {
        let ids: Vec<Uuid> = sqlx::query_scalar("SELECT cascade_id FROM addresses WHERE channel = $1 AND address = $2")
            .bind(channel.as_str())
            .bind(address)
            .fetch_all(&self.read)
            .await
            .map_err(unavailable)?;
        Ok(ids.into_iter().map(CascadeId::from_uuid).collect())
    }

    async fn touch_conversation(&self, conversation: Conversation) -> Result<(), StoreError> {
        self.writer.touch(&conversation).await
    }

    async fn conversations(&self, addresses: &[(ChannelName, String)]) -> Result<Vec<Conversation>, StoreError> {
        let mut out = Vec::new();
        for (channel, address) in addresses {
            let rows = sqlx::query(
                "SELECT connection, last_inbound_at, last_delivery_at FROM conversations \
                 WHERE channel = $1 AND address = $2",
            )
            .bind(channel.as_str())
            .bind(address)
            .fetch_all(&self.read)
            .await
            .map_err(unavailable)?;
            for row in rows {
                let connection: &str = row.try_get(0).map_err(unavailable)?;
                out.push(codec::conversation(
                    channel.as_str(),
                    address.clone(),
                    connection,
                    row.try_get(1).map_err(unavailable)?,
                    row.try_get(2).map_err(unavailable)?,
                ));
            }
        }
        Ok(crate::sorted_conversations(out))
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<CascadeRecord>, StoreError> {
        let mut q = QueryBuilder::<Postgres>::new("SELECT id, version, wake_at, body, meta FROM cascades WHERE 1 = 1");
        crate::list_filter!(q, filter, "strpos(channels, ", ") > 0");
        let rows = q.build().fetch_all(&self.read).await.map_err(unavailable)?;
        rows.iter().map(record_row).collect()
    }

    async fn claim_outbox(&self, now: Timestamp, limit: usize, lease: Duration) -> Result<Vec<OutboxItem>, StoreError> {
        self.writer.claim_outbox(now, limit, lease).await
    }

    async fn outbox_result(&self, id: u64, result: Result<(), (String, Option<Timestamp>)>) -> Result<(), StoreError> {
        self.writer.outbox_result(id, result).await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, cascade_id, url, body, tries, next_at, last_error, dead FROM outbox \
             WHERE dead ORDER BY id LIMIT $1",
        )
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        rows.iter().map(outbox_row).collect()
    }

    async fn purge_finished(&self, before: Timestamp, limit: usize) -> Result<usize, StoreError> {
        self.writer.purge(before, limit).await
    }
}
