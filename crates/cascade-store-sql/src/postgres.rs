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

/// Planner settings of every write batch's transaction.
///
/// The writer's statements find rows by key: multi-row writes join a list of keys with a table,
/// claims lock what an index scan finds. Nested loops over the keys' indexes are the plan for
/// them at any table size, and the only safe one for statements kept prepared: PostgreSQL plans
/// those once, generically, and keeps the plan while the table grows, and a plan made while
/// `cascades` was small (a hash over a scan of the whole table) went on reading every cascade
/// on every save until the table's statistics were renewed. Set per transaction, not per
/// connection (startup `options`), so a pooler such as PgBouncer, which refuses startup
/// parameters it does not know, can stand between.
const WRITER_SETTINGS: &str = "SELECT set_config('enable_hashjoin', 'off', true), \
     set_config('enable_mergejoin', 'off', true), set_config('enable_seqscan', 'off', true)";

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

impl crate::shared::QuickReads for PgStore {}

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
    batch_settings: Some(WRITER_SETTINGS),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The claim as it was once written, joined with the rows it locks.
    const CLAIM_AS_A_JOIN: &str = "UPDATE cascades c SET wake_at = $1, version = c.version + 1 FROM \
        (SELECT id FROM cascades WHERE wake_at <= $2 ORDER BY wake_at LIMIT $3 FOR UPDATE SKIP LOCKED) due \
        WHERE c.id = due.id RETURNING c.id";

    /// A save of eight cascades, as the writer's multi-row saves are written.
    fn save_of_eight() -> String {
        let rows: Vec<String> = (0..8)
            .map(|r| {
                let p: Vec<String> = (1..=7).map(|c| format!("${}", r * 7 + c)).collect();
                format!("({})", p.join(", "))
            })
            .collect();
        format!(
            "WITH v (id, expected, wake_at, state, finished_at, body, n) AS (VALUES {}) \
             UPDATE cascades SET version = cascades.version + 1, body = v.body FROM v \
             WHERE cascades.id = v.id AND cascades.version = v.expected RETURNING cascades.id",
            rows.join(", ")
        )
    }

    /// The plan a statement kept prepared gets on `conn` (its generic plan, made now).
    async fn kept_plan(conn: &mut sqlx::PgConnection, name: &str, types: &str, sql: &str, args: &str) -> String {
        sqlx::query("SET plan_cache_mode = force_generic_plan").execute(&mut *conn).await.expect("set");
        let list = |s: &str| if s.is_empty() { String::new() } else { format!(" ({s})") };
        let (types, args) = (list(types), list(args));
        sqlx::raw_sql(&format!("PREPARE {name}{types} AS {sql}")).execute(&mut *conn).await.expect("prepare");
        let lines: Vec<String> =
            sqlx::query_scalar(&format!("EXPLAIN EXECUTE {name}{args}")).fetch_all(&mut *conn).await.expect("explain");
        lines.join("\n")
    }

    /// Fills `cascades` with `n` rows and renews its statistics.
    async fn fill(conn: &mut sqlx::PgConnection, n: u32) {
        sqlx::query(
            "INSERT INTO cascades (id, version, wake_at, state, created_at, fingerprint, channels, event_count, body) \
             SELECT gen_random_uuid(), 1, n, 'running', n, '', '', 0, '{}' FROM generate_series(1, $1) n",
        )
        .bind(i64::from(n))
        .execute(&mut *conn)
        .await
        .expect("cascades");
        sqlx::query("ANALYZE cascades").execute(&mut *conn).await.expect("analyze");
    }

    #[tokio::test]
    async fn statements_kept_prepared_read_by_key_at_any_table_size() {
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
        let in_schema = PgConnectOptions::from_str(&url).expect("url").options([("search_path", schema.as_str())]);
        let mut plain = in_schema.connect().await.expect("connect");
        let mut writer = in_schema.connect().await.expect("connect");

        // A small table, its statistics up to date: the plans a statement prepared now keeps
        // as the table grows.
        fill(&mut plain, 5).await;
        let types = ["UUID, BIGINT, BIGINT, TEXT, BIGINT, TEXT, BIGINT"; 8].join(", ");
        let args = ["gen_random_uuid(), 1, 1, 'running', NULL, '{}', 0"; 8].join(", ");
        let save_plain = kept_plan(&mut plain, "save", &types, &save_of_eight(), &args).await;
        // In a transaction of the writer's, as every batch runs.
        sqlx::raw_sql("BEGIN").execute(&mut writer).await.expect("begin");
        sqlx::query(WRITER_SETTINGS).execute(&mut writer).await.expect("settings");
        let save_writer = kept_plan(&mut writer, "save", &types, &save_of_eight(), &args).await;
        sqlx::raw_sql("COMMIT").execute(&mut writer).await.expect("commit");

        // A claim planned generically on a larger table, with the planner's default settings:
        // the claim must not need the writer's.
        fill(&mut plain, 20_000).await;
        let claim_types = "BIGINT, BIGINT, BIGINT";
        let claim_joined = kept_plan(&mut plain, "joined", claim_types, CLAIM_AS_A_JOIN, "1, 2, 3").await;
        let claim = kept_plan(&mut plain, "claim", claim_types, CLAIM, "1, 2, 3").await;
        // Lookups by key and by owner, planned generically: the partial indexes (over the
        // cascades that have one) serve them.
        let by_key = "SELECT id, fingerprint FROM cascades WHERE idempotency_key = $1";
        let by_key = kept_plan(&mut plain, "by_key", "TEXT", by_key, "'k'").await;
        let by_owner = "SELECT id FROM cascades WHERE 1 = 1 AND owner = $1 ORDER BY id DESC LIMIT $2";
        let by_owner = kept_plan(&mut plain, "by_owner", "TEXT, BIGINT", by_owner, "'key:ops', 50").await;

        let partial: Vec<String> = sqlx::query_scalar(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() \
             AND indexname IN ('cascades_idempotency_key', 'cascades_owner') ORDER BY indexname",
        )
        .fetch_all(&mut plain)
        .await
        .expect("index definitions");

        drop((plain, writer, store));
        let mut admin = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(&mut admin).await.expect("drop schema");

        let scans = |plan: &str| plan.contains("Seq Scan on cascades");
        assert!(scans(&save_plain), "this check can tell a save reading the whole table:\n{save_plain}");
        assert!(!scans(&save_writer), "the writer's saves read only the cascades they save:\n{save_writer}");
        assert!(scans(&claim_joined), "this check can tell a claim reading the whole table:\n{claim_joined}");
        assert!(!scans(&claim), "the claim reads only the cascades it takes:\n{claim}");
        assert!(by_key.contains("using cascades_idempotency_key on"), "{by_key}");
        assert!(by_owner.contains("using cascades_owner on") || by_owner.contains("on cascades_owner"), "{by_owner}");
        assert_eq!(partial.len(), 2, "{partial:?}");
        assert!(
            partial[0].contains("UNIQUE") && partial[0].contains("WHERE (idempotency_key IS NOT NULL)"),
            "{partial:?}"
        );
        assert!(partial[1].contains("WHERE (owner IS NOT NULL)"), "{partial:?}");
    }
}
