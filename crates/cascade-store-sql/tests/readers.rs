//! Readers are not checked before each use: a read that gets a connection the server has cut
//! runs again on another, so a database restart does not turn reads into errors.

mod common;

use std::sync::Arc;

use cascade_engine::{CascadeId, Store};
use cascade_store_sql::{PgConfig, PgStore};
use sqlx::{ConnectOptions, Connection};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reads_go_on_after_the_server_cuts_every_connection() {
    let schema = common::fresh_schema();
    // Probe first, so a machine without PostgreSQL skips (loudly) as the other tests do.
    let Some(probe) = common::pg_store(&schema).await else { return };
    drop(probe);
    // The store's connections carry a name of their own, so only they are cut.
    let name = format!("cascade-readers-{}", uuid::Uuid::now_v7().simple());
    let url = common::pg_url();
    let url = format!("{url}{}application_name={name}", if url.contains('?') { '&' } else { '?' });
    let store = Arc::new(PgStore::connect_with(PgConfig::new(url).schema(&schema)).await.expect("connect"));
    let record = cascade_testkit::sample_record(None, "", "+15550000001", chrono::Utc::now());
    let id = record.id();
    store.create(record, Vec::new()).await.expect("create");
    // Open several readers at once, so the pool holds more than one.
    for found in loads_at_once(&store, id, 16).await {
        assert_eq!(found, Some(id));
    }

    let mut admin =
        common::pg_url().parse::<sqlx::postgres::PgConnectOptions>().expect("url").connect().await.expect("admin");
    let cut: i64 =
        sqlx::query_scalar("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .expect("terminate");
    // One is the writer's; the rest are pooled readers.
    assert!(cut >= 3, "only {cut} connections were cut: the test would prove little");
    // Termination is asynchronous: wait until those backends are gone, so the reads below
    // meet connections that are really cut.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .expect("count");
        if left == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{left} cut connections still there after 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    admin.close().await.expect("close");

    // Every read still answers, the first ones included, one after another and at once.
    for i in 0..8 {
        let found = store.load(id).await.unwrap_or_else(|e| panic!("read {i} after the cut: {e}"));
        assert_eq!(found.map(|r| r.id()), Some(id));
    }
    for found in loads_at_once(&store, id, 16).await {
        assert_eq!(found, Some(id));
    }
    assert!(store.find_attempt("nobody", "nothing").await.expect("find").is_none());
    drop(store);
    common::drop_schema(&schema).await;
}

/// `n` loads of `id` run at once: the ids they found.
async fn loads_at_once(store: &Arc<PgStore>, id: CascadeId, n: usize) -> Vec<Option<CascadeId>> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let store = store.clone();
        tasks.spawn(async move { store.load(id).await.expect("load").map(|r| r.id()) });
    }
    tasks.join_all().await
}
