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
