//! Stored policies written at once from several places: saves that name the same version race,
//! and exactly one of them wins each round, on SQLite and on two PostgreSQL stores sharing one
//! database (as two server instances do).

mod common;

use std::sync::Arc;

use cascade_engine::{Policy, Store, StoreError};

/// `writers` saves at a time, each expecting the version read before the round, for `rounds`
/// rounds; checks one wins each round and the rest are refused with the winner's version.
async fn race(stores: &[Arc<dyn Store>], rounds: u64) {
    let writers = 6;
    let first = stores[0].save_policy("raced", &Policy::chain(["sms"]), Some(0), chrono::Utc::now()).await;
    assert_eq!(first.expect("create").version, 1);
    for round in 1..=rounds {
        let saves = (0..writers).map(|w| {
            let store = stores[w % stores.len()].clone();
            let policy = Policy::chain(if w % 2 == 0 { ["sms", "whatsapp"] } else { ["whatsapp", "sms"] });
            async move { store.save_policy("raced", &policy, Some(round), chrono::Utc::now()).await }
        });
        let results = join_spawned(saves).await;
        let won: Vec<u64> = results.iter().filter_map(|r| r.as_ref().ok().map(|p| p.version)).collect();
        assert_eq!(won, [round + 1], "round {round}: exactly one save wins: {results:?}");
        for r in results.iter().filter(|r| r.is_err()) {
            assert!(
                matches!(r, Err(StoreError::PolicyConflict { current, .. }) if *current == round + 1),
                "round {round}: the others are refused with the winner's version: {r:?}"
            );
        }
        for store in stores {
            let stored = store.load_policy("raced").await.expect("load").expect("stored");
            assert_eq!(stored.version, round + 1, "every store reads the winner");
        }
    }
}

/// Runs the futures concurrently (spawned, so a multi-threaded runtime runs them in parallel).
async fn join_spawned<F, T>(futures: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_policy_saves_at_one_version_race_to_one_winner() {
    let dir = tempfile::tempdir().expect("temp dir");
    race(&[common::sqlite_store(&dir).await], 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_policy_saves_from_two_instances_race_to_one_winner() {
    let schema = common::fresh_schema();
    let Some(a) = common::pg_store(&schema).await else { return };
    let b = common::pg_store(&schema).await.expect("PostgreSQL was reachable a moment ago");
    let stores: [Arc<dyn Store>; 2] = [Arc::new(a), Arc::new(b)];
    race(&stores, 10).await;
    let listed = stores[1].list_policies().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].version, 11, "ten rounds after the first save");
    common::drop_schema(&schema).await;
}
