//! Helpers shared by this crate's tests: fresh SQLite files and fresh PostgreSQL schemas.

#![allow(dead_code)]

use std::sync::Arc;

use cascade_engine::Store;
use cascade_store_sql::{PgConfig, PgStore, SqliteStore};

/// The PostgreSQL server tests use.
pub fn pg_url() -> String {
    std::env::var("CASCADE_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A new schema name, unique to this test run.
pub fn fresh_schema() -> String {
    format!("cascade_test_{}", uuid::Uuid::now_v7().simple())
}

/// Connects a store in `schema`; `None` (after saying so loudly) when PostgreSQL cannot be
/// reached outside CI. In CI (`CI=true`) an unreachable server fails the test.
pub async fn pg_store(schema: &str) -> Option<PgStore> {
    match PgStore::connect_with(PgConfig::new(pg_url()).schema(schema)).await {
        Ok(s) => Some(s),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("PostgreSQL at {} is required in CI: {e}", pg_url())
        }
        Err(e) => {
            eprintln!(
                "\n*** SKIPPED: PostgreSQL tests need a server at {} ({e}). \
                 Set CASCADE_TEST_DATABASE_URL or start PostgreSQL. ***\n",
                pg_url()
            );
            None
        }
    }
}

/// Drops a test schema.
pub async fn drop_schema(schema: &str) {
    use sqlx::{ConnectOptions, Connection};
    let Ok(options) = pg_url().parse::<sqlx::postgres::PgConnectOptions>() else { return };
    if let Ok(mut conn) = options.connect().await {
        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).execute(&mut conn).await;
        let _ = conn.close().await;
    }
}

/// A SQLite store in a new file inside `dir`.
pub async fn sqlite_store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    let path = dir.path().join(format!("{}.db", uuid::Uuid::now_v7().simple()));
    Arc::new(SqliteStore::open(&path).await.expect("open sqlite"))
}

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use cascade_engine::store::ListFilter;
use cascade_engine::{
    Accepted, Capabilities, CascadeId, Channel, ChannelInfo, ChannelName, SendError, SendRequest, Status,
};

/// What a [`LoggingChannel`] does with a send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Accept and report nothing more: the step waits for its timeout.
    Silent,
    /// Accept with `delivered` at once.
    Deliver,
    /// Never answer (as if the process died mid-request).
    Hang,
}

/// One send seen by a [`LoggingChannel`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The cascade.
    pub cascade: CascadeId,
    /// The attempt number.
    pub attempt: u32,
    /// The channel.
    pub channel: String,
    /// Which engine instance sent it.
    pub instance: String,
}

impl Sent {
    /// One log line.
    pub fn line(&self) -> String {
        format!("{} {} {} {}\n", self.cascade, self.attempt, self.channel, self.instance)
    }

    /// Parses a log line.
    pub fn parse(line: &str) -> Sent {
        let mut p = line.split_whitespace();
        let mut next = || p.next().unwrap_or_else(|| panic!("short send log line {line:?}"));
        Sent {
            cascade: next().parse().expect("cascade id"),
            attempt: next().parse().expect("attempt"),
            channel: next().into(),
            instance: next().into(),
        }
    }
}

/// Where a [`LoggingChannel`] records sends: memory, or a file that survives `kill -9`.
#[derive(Clone, Debug)]
pub enum Log {
    /// In this process.
    Memory(Arc<Mutex<Vec<Sent>>>),
    /// Appended to a file, one line per send, written before the send answers.
    File(Arc<Mutex<std::fs::File>>),
}

/// A channel that records every send (before answering) and answers by its [`Mode`]. Its
/// provider ids are `<cascade>-<attempt>`, unique across instances and restarts.
#[derive(Debug)]
pub struct LoggingChannel {
    info: ChannelInfo,
    mode: Mode,
    instance: String,
    log: Log,
}

impl LoggingChannel {
    /// A channel named `channel` with `caps`.
    pub fn new(channel: &str, caps: Capabilities, mode: Mode, instance: &str, log: Log) -> Self {
        let info = ChannelInfo {
            channel: ChannelName::new(channel),
            adapter: ChannelName::new(format!("log-{channel}")),
            capabilities: caps,
        };
        Self { info, mode, instance: instance.into(), log }
    }
}

#[async_trait]
impl Channel for LoggingChannel {
    fn info(&self) -> &ChannelInfo {
        &self.info
    }

    async fn send(&self, r: &SendRequest) -> Result<Accepted, SendError> {
        let sent = Sent {
            cascade: r.cascade_id,
            attempt: r.attempt,
            channel: self.info.channel.to_string(),
            instance: self.instance.clone(),
        };
        match &self.log {
            Log::Memory(v) => v.lock().unwrap_or_else(|e| e.into_inner()).push(sent),
            Log::File(f) => {
                let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
                f.write_all(sent.line().as_bytes()).expect("append to the send log");
            }
        }
        let id = format!("{}-{}", r.cascade_id, r.attempt);
        match self.mode {
            Mode::Silent => Ok(Accepted::new(id)),
            Mode::Deliver => Ok(Accepted::new(id).with_status(Status::Delivered)),
            Mode::Hang => std::future::pending().await,
        }
    }
}

/// Waits (real time: the database is real) until no cascade is running, or panics after
/// `limit`.
pub async fn wait_all_finished(store: &dyn Store, limit: Duration) {
    let start = std::time::Instant::now();
    let running = ListFilter { state: Some("running".into()), limit: 1, ..ListFilter::default() };
    loop {
        if store.list(&running).await.expect("list").is_empty() {
            return;
        }
        assert!(start.elapsed() < limit, "cascades still running after {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every cascade in the store.
pub async fn all_cascades(store: &dyn Store) -> Vec<cascade_engine::store::CascadeRecord> {
    store.list(&ListFilter { limit: usize::MAX >> 1, ..ListFilter::default() }).await.expect("list")
}
