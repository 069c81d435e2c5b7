//! Campaigns on the durable stores beyond the conformance suite: several stores leasing the
//! same campaigns at once (several instances on one PostgreSQL database, several processes on
//! one SQLite file) never hand one campaign to two holders, and a large recipient list goes in
//! batch by batch, idempotently.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use cascade_engine::store::{CampaignRecord, CampaignState, NewRecipient, RecipientFilter, RecipientState};
use cascade_engine::{CampaignId, Contact, Store, Timestamp};

fn t0() -> Timestamp {
    chrono::DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default()
}

fn campaign(i: usize) -> CampaignRecord {
    CampaignRecord {
        id: CampaignId::new(),
        name: format!("campaign {i}"),
        owner: Some("key:test".into()),
        state: CampaignState::Running,
        spec: serde_json::json!({ "message": { "text": "hi" } }),
        recipients: 0,
        created_at: t0(),
        updated_at: t0(),
    }
}

/// Saves `n` running campaigns through the first store, then, round after round, has eight
/// holders spread over `stores` lease them all at once: no campaign may go to two holders, and
/// what none of them got is still free afterwards. Each round starts after the last one's
/// leases lapsed, so every campaign is up for grabs again.
async fn concurrent_leases(stores: Vec<Arc<dyn Store>>, n: usize) {
    let mut all = HashSet::new();
    for i in 0..n {
        let c = campaign(i);
        stores[0].save_campaign(&c).await.expect("save campaign");
        all.insert(c.id);
    }
    for round in 0..10 {
        let now = t0() + chrono::Duration::seconds(100 * round);
        let until = now + chrono::Duration::seconds(60);
        let mut tasks = Vec::new();
        for h in 0..8 {
            let store = stores[h % stores.len()].clone();
            tasks.push(tokio::spawn(async move {
                let leased = store.lease_campaigns(&format!("holder-{h}"), now, until, n / 8).await.expect("lease");
                leased.into_iter().map(|c| c.id).collect::<Vec<_>>()
            }));
        }
        let mut seen = HashSet::new();
        for t in tasks {
            for id in t.await.expect("lease task") {
                assert!(seen.insert(id), "round {round}: campaign {id} was leased to two holders at once");
            }
        }
        let rest = stores[1 % stores.len()].lease_campaigns("late", now, until, n).await.expect("lease");
        for c in &rest {
            assert!(seen.insert(c.id), "round {round}: campaign {} was leased to a late holder while leased", c.id);
        }
        assert_eq!(seen, all, "round {round}: every running campaign is leased to exactly one holder");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_instances_never_lease_one_campaign_twice() {
    let schema = common::fresh_schema();
    let Some(first) = common::pg_store(&schema).await else { return };
    let second = common::pg_store(&schema).await.expect("PostgreSQL was reachable a moment ago");
    concurrent_leases(vec![Arc::new(first), Arc::new(second)], 64).await;
    common::drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_stores_on_one_file_never_lease_one_campaign_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("campaigns.db");
    let first = cascade_store_sql::SqliteStore::open(&path).await.expect("open");
    let second = cascade_store_sql::SqliteStore::open(&path).await.expect("open again");
    concurrent_leases(vec![Arc::new(first), Arc::new(second)], 64).await;
}

/// Imports `n` recipients in batches of `batch`, the middle batch twice (an import resumed
/// after a crash), and checks the count, the order and the first pending page.
async fn import(store: Arc<dyn Store>, n: u64, batch: u64) {
    let c = CampaignRecord { state: CampaignState::Importing, ..campaign(0) };
    store.save_campaign(&c).await.expect("save campaign");
    let rows = |from: u64| -> Vec<NewRecipient> {
        (from..(from + batch).min(n))
            .map(|seq| NewRecipient {
                seq,
                line: seq + 2,
                contact: Contact::with_phone(format!("+1555{seq:07}")).field("plan", "gold"),
                zone: if seq.is_multiple_of(3) { "Europe/Berlin" } else { "America/New_York" }.into(),
            })
            .collect()
    };
    for from in (0..n).step_by(batch as usize) {
        store.add_recipients(c.id, &rows(from)).await.expect("add recipients");
    }
    store.add_recipients(c.id, &rows(n / 2 / batch * batch)).await.expect("add a batch again");

    let tally = store.campaign_tally(c.id).await.expect("tally");
    assert_eq!(tally.len(), 1, "{tally:?}");
    assert_eq!((tally[0].state, tally[0].count), (RecipientState::Pending, n));
    let page = RecipientFilter {
        states: vec![RecipientState::Pending],
        zones: Some(vec!["Europe/Berlin".into()]),
        after: Some(n / 2),
        limit: 100,
        ..RecipientFilter::default()
    };
    let got = store.campaign_recipients(c.id, &page).await.expect("recipients");
    let expected: Vec<u64> = (n / 2 + 1..n).filter(|s| s.is_multiple_of(3)).take(100).collect();
    assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), expected);
    assert!(got.iter().all(|r| r.line == r.seq + 2 && r.contact.fields["plan"] == "gold"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_imports_a_large_list_in_batches() {
    let dir = tempfile::tempdir().expect("temp dir");
    import(common::sqlite_store(&dir).await, 50_000, 5_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_imports_a_large_list_in_batches() {
    let schema = common::fresh_schema();
    let Some(store) = common::pg_store(&schema).await else { return };
    import(Arc::new(store), 50_000, 5_000).await;
    common::drop_schema(&schema).await;
}
