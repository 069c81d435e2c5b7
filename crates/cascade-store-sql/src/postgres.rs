//! [`PgStore`]: several engine instances on one PostgreSQL database.
//!
//! Writes go through group-commit writer loops on a thread of their own (each batch one
//! transaction); reads use a connection pool. Due cascades and callbacks are claimed with `FOR
//! UPDATE SKIP LOCKED`, so instances never claim the same row at once, and a claim is a lease: it
//! pushes `wake_at` forward, so the work of an instance that dies falls due again for the others.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use cascade_engine::StoreError;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Postgres};

use crate::batch::{Writer, WriterStats};

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
    /// Group-commit writer loops (on the writer's thread), each with its own connection (default 1:
    /// one writer makes the largest batches; more writers measured slower, see
    /// docs/performance.md).
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

/// A durable [`Store`](cascade_engine::Store) in PostgreSQL, for one or several engine instances.
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
        let pool = |n: u32, checked: bool, options: PgConnectOptions| {
            PgPoolOptions::new()
                .max_connections(n)
                .acquire_timeout(Duration::from_secs(10))
                .test_before_acquire(checked)
                .connect_with(options)
        };
        // The writer's connections are opened on the writer's own runtime (`Writer::start`:
        // their sockets belong to the runtime they are opened on), and migrate the schema.
        let writer_options = options.clone().statement_cache_capacity(crate::hot::WRITER_STATEMENTS);
        let writers = config.writers.max(1) as u32;
        let open = async move {
            let write = pool(writers, true, writer_options).await.map_err(unreachable)?;
            crate::migrate::migrator(crate::migrate::POSTGRES)
                .await?
                .run(&write)
                .await
                .map_err(crate::migrate::failed)?;
            Ok(PgBackend { write })
        };
        let writer = Writer::start(open, config.writers, config.max_batch).await?;
        // Readers skip the check before each use (a round trip per read): a read that meets a
        // broken connection runs again on another (`shared::reading!`).
        let read = pool(config.max_connections.max(1), false, options).await.map_err(unreachable)?;
        Ok(Self { read, writer })
    }

    /// Counters of the group-commit writers.
    pub fn writer_stats(&self) -> Arc<WriterStats> {
        self.writer.stats().clone()
    }
}

/// Claims due cascades: (lease end, now, limit), returning record columns.
///
/// This claim, like the others below, names the rows it locks by key (`= ANY(ARRAY(…))`), not
/// through a join with them: the writer runs it as a prepared statement, which PostgreSQL
/// comes to plan generically (a `LIMIT $3` of unknown size), and a join was then planned as a
/// hash over a scan of the whole table, every cascade read on every claim.
const CLAIM: &str = concat!(
    "UPDATE cascades c SET wake_at = $1, version = c.version + 1 WHERE c.id = ANY(ARRAY(\
     SELECT id FROM cascades WHERE wake_at <= $2 ORDER BY wake_at LIMIT $3 FOR UPDATE SKIP LOCKED)) \
     RETURNING ",
    crate::record_columns!("c")
);

crate::shared::define_sql_store! {
    db: Postgres,
    row: sqlx::postgres::PgRow,
    store: PgStore,
    backend: PgBackend,
    touch: "INSERT INTO conversations (channel, address, connection, last_inbound_at, last_delivery_at) \
            VALUES ($1, $2, $3, $4, $5) ON CONFLICT (channel, address, connection) DO UPDATE SET \
            last_inbound_at = GREATEST(conversations.last_inbound_at, excluded.last_inbound_at), \
            last_delivery_at = GREATEST(conversations.last_delivery_at, excluded.last_delivery_at)",
    claim: CLAIM,
    claim_outbox: "UPDATE outbox o SET next_at = $1 WHERE o.id = ANY(ARRAY(\
            SELECT id FROM outbox WHERE NOT dead AND next_at <= $2 ORDER BY next_at LIMIT $3 FOR UPDATE SKIP LOCKED)) \
            RETURNING o.id, o.cascade_id, o.url, o.body, o.tries, o.next_at, o.last_error, o.dead",
    retry_outbox: "UPDATE outbox SET tries = tries + 1, last_error = $2, \
            next_at = coalesce($3, next_at), dead = ($3::BIGINT IS NULL) WHERE id = $1",
    purge: "SELECT id FROM cascades WHERE finished_at IS NOT NULL AND finished_at < $1 \
            AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.cascade_id = cascades.id AND NOT outbox.dead) \
            ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED",
    outbox_counts: "SELECT (SELECT count(*) FROM outbox WHERE NOT dead), (SELECT count(*) FROM outbox WHERE dead)",
    contains: ("strpos(channels, ", ") > 0"),
    lease_campaigns: "UPDATE campaigns c SET lease_holder = $1, lease_until = $2 WHERE c.id = ANY(ARRAY(\
            SELECT id FROM campaigns WHERE state = 'running' \
             AND (lease_holder IS NULL OR lease_holder = $1 OR lease_until < $3) \
             ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED)) \
            RETURNING c.id, c.name, c.owner, c.state, c.spec, c.recipients, c.created_at, c.updated_at",
    claim_held: "UPDATE held_requests h SET lease_until = $1 WHERE h.key = ANY(ARRAY(\
            SELECT key FROM held_requests WHERE kind = $2 AND lease_until <= $3 \
             ORDER BY held_at, key LIMIT $4 FOR UPDATE SKIP LOCKED)) \
            RETURNING h.key, h.kind, h.body, h.held_at",
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The claim as it was once written, joined with the rows it locks.
    const CLAIM_AS_A_JOIN: &str = "UPDATE cascades c SET wake_at = $1, version = c.version + 1 FROM \
        (SELECT id FROM cascades WHERE wake_at <= $2 ORDER BY wake_at LIMIT $3 FOR UPDATE SKIP LOCKED) due \
        WHERE c.id = due.id RETURNING c.id";

    #[tokio::test]
    async fn a_claim_never_reads_every_cascade() {
        let url = std::env::var("CASCADE_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!("cascade_test_{}", uuid::Uuid::now_v7().simple());
        let store = match PgStore::connect_with(PgConfig::new(&url).schema(&schema)).await {
            Ok(store) => store,
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("PostgreSQL at {url} is required in CI: {e}")
            }
            Err(e) => {
                eprintln!("\n*** SKIPPED: PostgreSQL tests need a server at {url} ({e}). ***\n");
                return;
            }
        };
        let mut conn = store.read.acquire().await.expect("connection");
        sqlx::query(
            "INSERT INTO cascades (id, version, wake_at, state, created_at, fingerprint, channels, event_count, body) \
             SELECT gen_random_uuid(), 1, n, 'running', n, '', '', 0, '{}' FROM generate_series(1, 20000) n",
        )
        .execute(&mut *conn)
        .await
        .expect("cascades");
        sqlx::query("ANALYZE cascades").execute(&mut *conn).await.expect("analyze");
        // As a prepared statement is planned once it has run a few times.
        sqlx::query("SET plan_cache_mode = force_generic_plan").execute(&mut *conn).await.expect("set");
        let mut plan = async |name: &str, sql: &str| -> String {
            sqlx::raw_sql(&format!("PREPARE {name} (BIGINT, BIGINT, BIGINT) AS {sql}"))
                .execute(&mut *conn)
                .await
                .expect("prepare");
            let lines: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN EXECUTE {name} (1, 2, 3)"))
                .fetch_all(&mut *conn)
                .await
                .expect("explain");
            lines.join("\n")
        };
        let joined = plan("joined", CLAIM_AS_A_JOIN).await;
        let claim = plan("claim", CLAIM).await;
        drop(conn);
        assert!(joined.contains("Seq Scan on cascades"), "this check can tell a whole-table read:\n{joined}");
        assert!(!claim.contains("Seq Scan"), "the claim reads only the cascades it takes:\n{claim}");
        let mut admin = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(&mut admin).await.expect("drop schema");
    }
}
