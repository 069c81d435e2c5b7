//! A database made before the `owner` column existed: opening it applies the new migration,
//! which fills the column from the cascades' stored metadata, so the owner filter finds the
//! cascades that were there before.

mod common;

use std::sync::Arc;

use cascade_engine::Store;
use cascade_engine::store::ListFilter;

/// Stores one cascade owned by `key:crm` and one by `kommo:acme`; returns the first's id.
async fn two_owners(store: &dyn Store) -> cascade_engine::CascadeId {
    let now = chrono::Utc::now();
    let mut crm = cascade_testkit::sample_record(None, "fp", "+15550000001", now);
    Arc::make_mut(&mut crm.meta).owner = Some("key:crm".into());
    let mut kommo = cascade_testkit::sample_record(None, "fp", "+15550000002", now);
    Arc::make_mut(&mut kommo.meta).owner = Some("kommo:acme".into());
    store.create(crm.clone(), vec![]).await.expect("create");
    store.create(kommo, vec![]).await.expect("create");
    crm.id()
}

async fn owned_by(store: &dyn Store, owner: &str) -> Vec<cascade_engine::CascadeId> {
    let filter = ListFilter { owner: Some(owner.into()), limit: 10, ..ListFilter::default() };
    store.list(&filter).await.expect("list").iter().map(|r| r.id()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_fills_the_owner_column_of_existing_cascades() {
    use sqlx::{ConnectOptions, Connection};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("old.db");
    let store = cascade_store_sql::SqliteStore::open(&path).await.expect("open");
    let id = two_owners(&store).await;
    drop(store);

    // Back to the schema of version 1, as an older server left it.
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).connect().await.expect("connect");
    for sql in [
        "DROP INDEX cascades_owner",
        "ALTER TABLE cascades DROP COLUMN owner",
        "DELETE FROM _sqlx_migrations WHERE version = 2",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    conn.close().await.expect("close");

    let store = cascade_store_sql::SqliteStore::open(&path).await.expect("reopen and migrate");
    assert_eq!(owned_by(&store, "key:crm").await, [id]);
    assert_eq!(owned_by(&store, "kommo:acme").await.len(), 1);
    assert!(owned_by(&store, "key:other").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fills_the_owner_column_of_existing_cascades() {
    use sqlx::{ConnectOptions, Connection};
    let schema = common::fresh_schema();
    let Some(store) = common::pg_store(&schema).await else { return };
    let id = two_owners(&store).await;
    drop(store);

    let options: sqlx::postgres::PgConnectOptions = common::pg_url().parse().expect("url");
    let mut conn = options.options([("search_path", schema.as_str())]).connect().await.expect("connect");
    for sql in ["ALTER TABLE cascades DROP COLUMN owner", "DELETE FROM _sqlx_migrations WHERE version = 2"] {
        sqlx::query(sql).execute(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    conn.close().await.expect("close");

    let store = common::pg_store(&schema).await.expect("reconnect and migrate");
    assert_eq!(owned_by(&store, "key:crm").await, [id]);
    assert_eq!(owned_by(&store, "kommo:acme").await.len(), 1);
    assert!(owned_by(&store, "key:other").await.is_empty());
    drop(store);
    common::drop_schema(&schema).await;
}
