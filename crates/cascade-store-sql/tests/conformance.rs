//! The `Store` conformance suite (the same one the in-memory store passes) on SQLite and on a
//! real PostgreSQL server.

mod common;

use std::sync::{Arc, Mutex};

use cascade_engine::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().expect("temp dir");
    cascade_testkit::store_conformance(|| common::sqlite_store(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_passes_the_conformance_suite() {
    let schemas = Arc::new(Mutex::new(Vec::new()));
    let probe = common::fresh_schema();
    let Some(_) = common::pg_store(&probe).await else { return };
    common::drop_schema(&probe).await;
    let made = schemas.clone();
    cascade_testkit::store_conformance(move || {
        let made = made.clone();
        async move {
            let schema = common::fresh_schema();
            made.lock().unwrap_or_else(|e| e.into_inner()).push(schema.clone());
            Arc::new(common::pg_store(&schema).await.expect("PostgreSQL was reachable a moment ago")) as Arc<dyn Store>
        }
    })
    .await;
    let schemas = std::mem::take(&mut *schemas.lock().unwrap_or_else(|e| e.into_inner()));
    for s in schemas {
        common::drop_schema(&s).await;
    }
}

/// A purged cascade takes its `cascade_meta` row with it; the others keep theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_removes_a_cascades_metadata_row() {
    use sqlx::{ConnectOptions, Connection};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("purge.db");
    let store = cascade_store_sql::SqliteStore::open(&path).await.expect("open");
    let now = chrono::Utc::now();
    let done = cascade_testkit::sample_record(None, "fp", "+15550000001", now);
    let running = cascade_testkit::sample_record(None, "fp", "+15550000002", now);
    store.create(done.clone(), vec![]).await.expect("create");
    store.create(running.clone(), vec![]).await.expect("create");
    let update = cascade_testkit::update(&done, cascade_testkit::finished(done.state.clone(), now), None);
    store.save(&update).await.expect("finish");
    assert_eq!(store.purge_finished(now + chrono::Duration::seconds(1), 10).await.expect("purge"), 1);
    assert_eq!(store.load(running.id()).await.expect("load"), Some(running.clone()));
    drop(store);

    let mut conn = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).connect().await.expect("connect");
    let ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM cascade_meta").fetch_all(&mut conn).await.expect("metadata rows");
    assert_eq!(ids, [*running.id().as_uuid()]);
    conn.close().await.expect("close");
}

/// A cascade whose `cascade_meta` row is missing reads as corrupt, naming what is missing,
/// not as a store that cannot be reached; claiming due work skips it and claims the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cascade_without_its_metadata_row_is_corrupt_and_skipped_by_claims() {
    use sqlx::{ConnectOptions, Connection};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("orphan.db");
    let store = cascade_store_sql::SqliteStore::open(&path).await.expect("open");
    let due = chrono::Utc::now() - chrono::Duration::seconds(60);
    // The broken one is due first, so it comes first in every claim.
    let broken = cascade_testkit::sample_record(None, "fp", "+15550000001", due);
    let healthy = cascade_testkit::sample_record(None, "fp", "+15550000002", due + chrono::Duration::seconds(1));
    store.create(broken.clone(), vec![]).await.expect("create");
    store.create(healthy.clone(), vec![]).await.expect("create");
    drop(store);

    let mut conn = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).connect().await.expect("connect");
    sqlx::query("DELETE FROM cascade_meta WHERE id = ?")
        .bind(*broken.id().as_uuid())
        .execute(&mut conn)
        .await
        .expect("delete");
    conn.close().await.expect("close");

    let store = cascade_store_sql::SqliteStore::open(&path).await.expect("reopen");
    match store.load(broken.id()).await {
        Err(cascade_engine::StoreError::Corrupt(why)) => assert!(why.contains("cascade_meta"), "{why}"),
        other => panic!("expected a corrupt record, got {other:?}"),
    }
    let claimed = store.claim_due(chrono::Utc::now(), 10, std::time::Duration::from_secs(30)).await.expect("claim");
    assert_eq!(claimed.iter().map(|r| r.id()).collect::<Vec<_>>(), [healthy.id()]);
}
