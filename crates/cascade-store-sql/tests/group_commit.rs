//! Concurrent writes share transactions: durable throughput is not one commit per write.

mod common;

use std::sync::Arc;

use cascade_engine::Store;
use cascade_engine::store::Created;
use cascade_store_sql::SqliteStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_share_commits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(dir.path().join("batch.db")).await.expect("open"));
    let stats = store.writer_stats();
    let n = 400;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let store = store.clone();
        let record = cascade_testkit::sample_record(None, "", &format!("+1555{i:07}"), chrono::Utc::now());
        tasks.spawn(async move { store.create(record, Vec::new()).await });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.expect("task").expect("create"), Created::New);
    }
    assert_eq!(stats.writes(), n as u64, "every write committed");
    assert!(
        stats.batches() * 4 <= n as u64,
        "{} commits for {n} concurrent writes: they should share transactions",
        stats.batches()
    );
    assert_eq!(common::all_cascades(store.as_ref()).await.len(), n);
}
