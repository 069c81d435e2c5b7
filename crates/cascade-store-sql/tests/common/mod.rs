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
