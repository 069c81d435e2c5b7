//! The `Store` conformance suite: the same checks for every implementation.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cascade_engine::machine::{CascadeState, Phase};
use cascade_engine::plan::{Plan, PlannedStep};
use cascade_engine::store::{
    CascadeMeta, CascadeRecord, CascadeUpdate, Conversation, Created, ListFilter, NewOutboxItem, OutboxCounts,
    ProviderRef,
};
use cascade_engine::{
    Address, AddressKind, CascadeId, ChannelName, ConnectionId, Contact, Content, Event, EventKind, Outcome,
    RetryPolicy, Status, Store, StoreError, Timestamp,
};

fn t0() -> Timestamp {
    chrono::DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default()
}

fn secs(s: i64) -> chrono::Duration {
    chrono::Duration::seconds(s)
}

/// A stored record of a new one-step SMS cascade to `phone`, created at a fixed instant, with
/// an optional idempotency key and the given request fingerprint, due at `wake`.
pub fn sample_record(key: Option<&str>, fingerprint: &str, phone: &str, wake: Timestamp) -> CascadeRecord {
    let plan = Plan {
        steps: vec![PlannedStep {
            channel: ChannelName::new("sms"),
            until: Status::Delivered,
            timeout: Duration::from_secs(60),
            address: Some(Address { kind: AddressKind::Phone, value: phone.into() }),
            content: Arc::new(Content { text: "hi".into(), ..Content::default() }),
            links: Vec::new(),
            skip: None,
            connections: None,
            sticky: None,
            window: None,
        }],
        first: None,
        late_success_wins: true,
        retry: RetryPolicy::default(),
        expires_at: t0() + secs(86_400),
    };
    let state = CascadeState::new(CascadeId::new(), plan, t0());
    CascadeRecord {
        state,
        meta: Arc::new(CascadeMeta {
            contact: Contact::with_phone(phone),
            idempotency_key: key.map(Into::into),
            fingerprint: fingerprint.into(),
            callback_url: None,
            metadata: serde_json::Value::Null,
            owner: Some("key:test".into()),
        }),
        version: 1,
        wake_at: Some(wake),
    }
}

fn ev(kind: EventKind) -> Event {
    Event { at: t0(), kind }
}

fn update(rec: &CascadeRecord, state: CascadeState, wake: Option<Timestamp>) -> CascadeUpdate {
    CascadeUpdate {
        state,
        expected_version: rec.version,
        wake_at: wake,
        events: Vec::new(),
        provider_refs: Vec::new(),
        outbox: None,
    }
}

fn finished(mut state: CascadeState, at: Timestamp) -> CascadeState {
    state.phase = Phase::Finished;
    state.outcome = Some(Outcome::Cancelled);
    state.finished_at = Some(at);
    state
}

macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            panic!("store conformance: {}", format!($($msg)+));
        }
    };
}

/// Runs every conformance check against stores made by `make` (each check gets a fresh,
/// empty store). Panics with the failed rule's description.
pub async fn store_conformance<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    create_load_and_idempotency(make().await).await;
    fenced_saves_and_events(make().await).await;
    claiming_and_leases(make().await).await;
    provider_ids_addresses_and_conversations(make().await).await;
    outbox(make().await).await;
    outbox_counts(make().await).await;
    dead_letter_pages(make().await).await;
    listing_and_retention(make().await).await;
    retention_and_callbacks(make().await).await;
}

async fn create_load_and_idempotency(store: Arc<dyn Store>) {
    let a = sample_record(Some("key-1"), "fp-a", "+15550000001", t0());
    let created = store.create(a.clone(), vec![ev(EventKind::Created)]).await.expect("create");
    check!(created == Created::New, "a new cascade is created as new, got {created:?}");
    let loaded = store.load(a.id()).await.expect("load").expect("created cascade loads");
    check!(loaded == a, "a loaded cascade equals what was created");
    check!(store.load(CascadeId::new()).await.expect("load").is_none(), "an unknown id loads as none");

    let same = sample_record(Some("key-1"), "fp-a", "+15550000001", t0());
    let r = store.create(same.clone(), vec![]).await.expect("create repeat");
    check!(
        r == Created::Existing { id: a.id(), same_request: true },
        "a repeated key returns the first cascade, got {r:?}"
    );
    check!(store.load(same.id()).await.expect("load").is_none(), "a repeated key stores nothing new");

    let other = sample_record(Some("key-1"), "fp-b", "+15550000001", t0());
    let r = store.create(other, vec![]).await.expect("create conflicting");
    check!(
        r == Created::Existing { id: a.id(), same_request: false },
        "the same key with another request is flagged, got {r:?}"
    );

    let no_key = sample_record(None, "fp-a", "+15550000001", t0());
    check!(store.create(no_key, vec![]).await.expect("create") == Created::New, "no key never collides");
}

async fn fenced_saves_and_events(store: Arc<dyn Store>) {
    let a = sample_record(None, "fp", "+15550000002", t0());
    store.create(a.clone(), vec![ev(EventKind::Created)]).await.expect("create");
    let mut u = update(&a, a.state.clone(), Some(t0() + secs(5)));
    u.events = vec![ev(EventKind::Replied { channel: "sms".into() })];
    let v = store.save(&u).await.expect("save");
    check!(v == 2, "a save bumps the version to 2, got {v}");
    let stale = store.save(&u).await;
    check!(matches!(stale, Err(StoreError::Conflict(_))), "a save naming an old version is refused, got {stale:?}");
    let events = store.events(a.id()).await.expect("events");
    check!(events.len() == 2, "events append in order: got {} events", events.len());
    check!(matches!(events[1].kind, EventKind::Replied { .. }), "the appended event comes last");
    let loaded = store.load(a.id()).await.expect("load").expect("exists");
    check!(loaded.version == 2 && loaded.wake_at == Some(t0() + secs(5)), "version and wake_at are stored");
}

async fn claiming_and_leases(store: Arc<dyn Store>) {
    let due = sample_record(None, "fp", "+15550000003", t0());
    let later = sample_record(None, "fp", "+15550000004", t0() + secs(100));
    store.create(due.clone(), vec![]).await.expect("create");
    store.create(later.clone(), vec![]).await.expect("create");
    check!(store.next_wake().await.expect("next_wake") == Some(t0()), "next_wake is the earliest deadline");

    let lease = Duration::from_secs(30);
    let claimed = store.claim_due(t0() + secs(1), 10, lease).await.expect("claim");
    check!(claimed.len() == 1 && claimed[0].id() == due.id(), "only due cascades are claimed");
    check!(claimed[0].wake_at == Some(t0() + secs(31)), "a claim pushes wake_at by the lease");
    check!(claimed[0].version == due.version + 1, "a claim bumps the version");
    let again = store.claim_due(t0() + secs(2), 10, lease).await.expect("claim");
    check!(again.is_empty(), "a claimed cascade is not claimed again within its lease");
    let stale = store.save(&update(&due, due.state.clone(), None)).await;
    check!(matches!(stale, Err(StoreError::Conflict(_))), "a claim fences out writers that read before it");
    let expired = store.claim_due(t0() + secs(40), 10, lease).await.expect("claim");
    check!(expired.len() == 1 && expired[0].id() == due.id(), "an expired lease falls due again");

    let limited = store.claim_due(t0() + secs(1000), 1, lease).await.expect("claim");
    check!(limited.len() == 1, "claims respect the limit");

    let rec = store.load(later.id()).await.expect("load").expect("exists");
    store.save(&update(&rec, finished(rec.state.clone(), t0()), None)).await.expect("save");
    let rest = store.claim_due(t0() + secs(10_000), 10, lease).await.expect("claim");
    check!(rest.iter().all(|r| r.id() != later.id()), "a cascade with no wake_at is never claimed");
}

async fn provider_ids_addresses_and_conversations(store: Arc<dyn Store>) {
    let a = sample_record(None, "fp", "+15550000005", t0());
    store.create(a.clone(), vec![]).await.expect("create");
    let mut u = update(&a, a.state.clone(), a.wake_at);
    u.provider_refs = vec![ProviderRef { adapter: "twilio".into(), provider_message_id: "SM1".into(), attempt: 1 }];
    store.save(&u).await.expect("save");
    let found = store.find_attempt("twilio", "SM1").await.expect("find");
    check!(found.is_some_and(|r| r.cascade == a.id() && r.attempt == 1), "a provider id finds its attempt");
    check!(store.find_attempt("other", "SM1").await.expect("find").is_none(), "provider ids are per adapter");

    let sms = ChannelName::new("sms");
    let running = store.running_for_address(&sms, "+15550000005").await.expect("by address");
    check!(running == vec![a.id()], "a running cascade is found by its address, got {running:?}");
    let rec = store.load(a.id()).await.expect("load").expect("exists");
    store.save(&update(&rec, finished(rec.state.clone(), t0()), None)).await.expect("save");
    let running = store.running_for_address(&sms, "+15550000005").await.expect("by address");
    check!(running.is_empty(), "a finished cascade is no longer found by address");

    let conn = ConnectionId::new("sms-1");
    let base = Conversation {
        channel: sms.clone(),
        connection: conn.clone(),
        address: "+15550000005".into(),
        last_inbound_at: Some(t0() + secs(10)),
        last_delivery_at: None,
    };
    store.touch_conversation(base.clone()).await.expect("touch");
    store
        .touch_conversation(Conversation {
            last_inbound_at: Some(t0()),
            last_delivery_at: Some(t0() + secs(3)),
            ..base.clone()
        })
        .await
        .expect("touch");
    let convs = store.conversations(&[(sms.clone(), "+15550000005".into())]).await.expect("conversations");
    check!(convs.len() == 1, "one conversation per channel, address and connection, got {}", convs.len());
    check!(
        convs[0].last_inbound_at == Some(t0() + secs(10)) && convs[0].last_delivery_at == Some(t0() + secs(3)),
        "conversation times keep the later value"
    );
    let none = store.conversations(&[(sms.clone(), "+15559999999".into())]).await.expect("conversations");
    check!(none.is_empty(), "other addresses have no conversations");

    // Several pairs in one call: each matches as a pair, and the answer is ordered by channel
    // and connection.
    let wa = ChannelName::new("whatsapp");
    let other = Conversation { address: "+15550000015".into(), connection: ConnectionId::new("sms-2"), ..base.clone() };
    let chat = Conversation { channel: wa.clone(), connection: ConnectionId::new("wa-1"), ..base.clone() };
    store.touch_conversation(other.clone()).await.expect("touch");
    store.touch_conversation(chat.clone()).await.expect("touch");
    let asked = [(wa.clone(), base.address.clone()), (sms.clone(), other.address.clone()), (sms, base.address.clone())];
    let convs = store.conversations(&asked).await.expect("conversations");
    let got: Vec<(&str, &str, &str)> =
        convs.iter().map(|c| (c.channel.as_str(), c.connection.as_str(), c.address.as_str())).collect();
    check!(
        got == [
            ("sms", "sms-1", "+15550000005"),
            ("sms", "sms-2", "+15550000015"),
            ("whatsapp", "wa-1", "+15550000005")
        ],
        "conversations of several pairs come in one list, by channel and connection: got {got:?}"
    );
    let crossed = store.conversations(&[(wa, other.address.clone())]).await.expect("conversations");
    check!(crossed.is_empty(), "a channel matches only with its own address, got {crossed:?}");
}

async fn outbox(store: Arc<dyn Store>) {
    let a = sample_record(None, "fp", "+15550000006", t0());
    store.create(a.clone(), vec![]).await.expect("create");
    let mut u = update(&a, finished(a.state.clone(), t0()), None);
    u.outbox = Some(NewOutboxItem {
        cascade: a.id(),
        url: "https://example.test/cb".into(),
        body: serde_json::json!({"ok": true}),
    });
    store.save(&u).await.expect("save");
    let lease = Duration::from_secs(60);
    let items = store.claim_outbox(t0() + secs(1), 10, lease).await.expect("claim outbox");
    check!(items.len() == 1 && items[0].cascade == a.id(), "a finishing save enqueues its callback");
    check!(
        store.claim_outbox(t0() + secs(2), 10, lease).await.expect("claim").is_empty(),
        "a claimed callback is leased"
    );
    let id = items[0].id;
    store.outbox_result(id, Err(("HTTP 500".into(), Some(t0() + secs(5))))).await.expect("retry");
    let items = store.claim_outbox(t0() + secs(6), 10, lease).await.expect("claim");
    check!(items.len() == 1 && items[0].tries == 1, "a failed try is retried at its time and counted");
    store.outbox_result(id, Err(("gave up".into(), None))).await.expect("dead");
    check!(
        store.claim_outbox(t0() + secs(10_000), 10, lease).await.expect("claim").is_empty(),
        "dead callbacks are not retried"
    );
    let dead = store.dead_letters(None, 10).await.expect("dead letters");
    check!(
        dead.len() == 1 && dead[0].last_error.as_deref() == Some("gave up"),
        "dead callbacks are listed with their error"
    );

    let b = sample_record(None, "fp", "+15550000007", t0());
    store.create(b.clone(), vec![]).await.expect("create");
    let mut u = update(&b, finished(b.state.clone(), t0()), None);
    u.outbox =
        Some(NewOutboxItem { cascade: b.id(), url: "https://example.test/cb".into(), body: serde_json::json!({}) });
    store.save(&u).await.expect("save");
    let items = store.claim_outbox(t0() + secs(1), 10, lease).await.expect("claim");
    store.outbox_result(items[0].id, Ok(())).await.expect("done");
    check!(
        store.claim_outbox(t0() + secs(10_000), 10, lease).await.expect("claim").is_empty(),
        "a delivered callback is gone"
    );
}

async fn outbox_counts(store: Arc<dyn Store>) {
    let counts = store.outbox_counts().await.expect("outbox counts");
    check!(counts == OutboxCounts::default(), "an empty outbox counts nothing, got {counts:?}");
    for i in 0..5 {
        let r = sample_record(None, "fp", &format!("+1555000020{i}"), t0());
        store.create(r.clone(), vec![]).await.expect("create");
        let mut u = update(&r, finished(r.state.clone(), t0()), None);
        u.outbox = Some(NewOutboxItem {
            cascade: r.id(),
            url: format!("https://example.test/cb/{i}"),
            body: serde_json::json!({ "i": i }),
        });
        store.save(&u).await.expect("save");
    }
    let counts = store.outbox_counts().await.expect("outbox counts");
    check!(counts == OutboxCounts { pending: 5, dead: 0 }, "enqueued callbacks are pending, got {counts:?}");

    let lease = Duration::from_secs(60);
    let items = store.claim_outbox(t0() + secs(1), 10, lease).await.expect("claim outbox");
    check!(items.len() == 5, "every callback is claimed, got {}", items.len());
    let counts = store.outbox_counts().await.expect("outbox counts");
    check!(counts == OutboxCounts { pending: 5, dead: 0 }, "claimed callbacks are still pending, got {counts:?}");

    store.outbox_result(items[0].id, Ok(())).await.expect("delivered");
    store.outbox_result(items[1].id, Ok(())).await.expect("delivered");
    store.outbox_result(items[2].id, Err(("gave up".into(), None))).await.expect("dead");
    store.outbox_result(items[3].id, Err(("HTTP 503".into(), Some(t0() + secs(30))))).await.expect("retry");
    let counts = store.outbox_counts().await.expect("outbox counts");
    check!(
        counts == OutboxCounts { pending: 2, dead: 1 },
        "delivered callbacks count in neither, dead ones as dead, retried and untried ones as pending; got {counts:?}"
    );

    store.outbox_result(items[2].id, Err(("gave up again".into(), None))).await.expect("dead again");
    store.outbox_result(items[4].id, Err(("410 Gone".into(), None))).await.expect("dead");
    let counts = store.outbox_counts().await.expect("outbox counts");
    check!(counts == OutboxCounts { pending: 1, dead: 2 }, "a callback given up on twice counts once; got {counts:?}");
    let dead = store.dead_letters(None, 10).await.expect("dead letters");
    check!(dead.len() as u64 == counts.dead, "the dead count matches the dead letters, {} listed", dead.len());
}

async fn dead_letter_pages(store: Arc<dyn Store>) {
    let lease = Duration::from_secs(60);
    let mut ids = Vec::new();
    for i in 0..5 {
        let a = sample_record(None, "fp", &format!("+1555000030{i}"), t0());
        store.create(a.clone(), vec![]).await.expect("create");
        let mut u = update(&a, finished(a.state.clone(), t0()), None);
        u.outbox = Some(NewOutboxItem {
            cascade: a.id(),
            url: "https://example.test/cb".into(),
            body: serde_json::json!({ "n": i }),
        });
        store.save(&u).await.expect("save");
        let items = store.claim_outbox(t0() + secs(1), 10, lease).await.expect("claim outbox");
        check!(items.len() == 1, "one callback due, got {}", items.len());
        // Every callback but the third dies; that one waits for a retry.
        let retry = (i == 2).then(|| t0() + secs(100));
        store.outbox_result(items[0].id, Err((format!("error {i}"), retry))).await.expect("result");
        ids.push(items[0].id);
    }
    let dead: Vec<u64> = vec![ids[4], ids[3], ids[1], ids[0]];
    let first = store.dead_letters(None, 3).await.expect("dead letters");
    let got: Vec<u64> = first.iter().map(|i| i.id).collect();
    check!(
        got == dead[..3],
        "dead callbacks page newest first, skipping live ones: got {got:?}, expected {:?}",
        &dead[..3]
    );
    check!(first.iter().all(|i| i.dead), "a listed dead callback is marked dead");
    let rest = store.dead_letters(Some(got[2]), 3).await.expect("dead letters");
    let got: Vec<u64> = rest.iter().map(|i| i.id).collect();
    check!(got == dead[3..], "the next page starts below the cursor: got {got:?}, expected {:?}", &dead[3..]);
    let none = store.dead_letters(Some(dead[3]), 3).await.expect("dead letters");
    check!(none.is_empty(), "past the oldest dead callback the page is empty");
    let newest: Vec<u64> = store.dead_letters(None, 2).await.expect("dead letters").iter().map(|i| i.id).collect();
    check!(newest == dead[..2], "a shorter first page is the newest dead callbacks: got {newest:?}");
}

async fn listing_and_retention(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut r = sample_record(Some(&format!("k{i}")), "fp", &format!("+1555000010{i}"), t0());
        if i == 3 {
            Arc::make_mut(&mut r.meta).owner = Some("key:other".into());
        }
        store.create(r.clone(), vec![]).await.expect("create");
        ids.push(r.id());
        if i % 2 == 0 {
            store.save(&update(&r, finished(r.state.clone(), t0() + secs(i)), None)).await.expect("save");
        }
    }
    let all = store.list(&ListFilter { limit: 10, ..ListFilter::default() }).await.expect("list");
    check!(all.len() == 5, "list returns every cascade, got {}", all.len());
    check!(all.windows(2).all(|w| w[0].id() > w[1].id()), "list is newest first");
    let running = store
        .list(&ListFilter { state: Some("running".into()), limit: 10, ..ListFilter::default() })
        .await
        .expect("list");
    check!(running.len() == 2, "list filters by state, got {}", running.len());
    let page =
        store.list(&ListFilter { before: Some(all[1].id()), limit: 10, ..ListFilter::default() }).await.expect("list");
    check!(page.len() == 3 && page[0].id() == all[2].id(), "list pages with `before`");
    let other = store
        .list(&ListFilter { channel: Some("whatsapp".into()), limit: 10, ..ListFilter::default() })
        .await
        .expect("list");
    check!(other.is_empty(), "list filters by channel");
    let owned = store
        .list(&ListFilter { owner: Some("key:other".into()), limit: 10, ..ListFilter::default() })
        .await
        .expect("list");
    check!(owned.len() == 1 && owned[0].id() == ids[3], "list filters by owner, got {} cascades", owned.len());
    let mine = store
        .list(&ListFilter { owner: Some("key:test".into()), before: Some(ids[4]), limit: 2, ..ListFilter::default() })
        .await
        .expect("list");
    check!(
        mine.iter().map(|r| r.id()).collect::<Vec<_>>() == [ids[2], ids[1]],
        "the owner filter pages like the others"
    );
    let nobody = store
        .list(&ListFilter { owner: Some("key:nobody".into()), limit: 10, ..ListFilter::default() })
        .await
        .expect("list");
    check!(nobody.is_empty(), "an owner with no cascades lists none");

    let purged = store.purge_finished(t0() + secs(3), 10).await.expect("purge");
    check!(purged == 2, "finished cascades older than the cut-off are purged, got {purged}");
    check!(store.load(ids[0]).await.expect("load").is_none(), "a purged cascade is gone");
    check!(store.load(ids[1]).await.expect("load").is_some(), "running cascades are never purged");
    check!(store.load(ids[4]).await.expect("load").is_some(), "newer finished cascades stay");
    let again = store.create(sample_record(Some("k0"), "other", "+15550000100", t0()), vec![]).await.expect("create");
    check!(again == Created::New, "a purged cascade's idempotency key is free again");
}

async fn retention_and_callbacks(store: Arc<dyn Store>) {
    // Three finished cascades with a callback each: delivered, given up on, to be retried.
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = sample_record(None, "fp", &format!("+1555000040{i}"), t0());
        store.create(r.clone(), vec![]).await.expect("create");
        let mut u = update(&r, finished(r.state.clone(), t0()), None);
        u.outbox = Some(NewOutboxItem {
            cascade: r.id(),
            url: "https://example.test/cb".into(),
            body: serde_json::json!({ "i": i }),
        });
        store.save(&u).await.expect("save");
        ids.push(r.id());
    }
    let lease = Duration::from_secs(60);
    let items = store.claim_outbox(t0() + secs(1), 10, lease).await.expect("claim outbox");
    check!(items.len() == 3, "every callback is claimed, got {}", items.len());
    let callback = |id: CascadeId| items.iter().find(|i| i.cascade == id).map(|i| i.id).unwrap_or_default();
    store.outbox_result(callback(ids[0]), Ok(())).await.expect("delivered");
    store.outbox_result(callback(ids[1]), Err(("gave up".into(), None))).await.expect("dead");
    store.outbox_result(callback(ids[2]), Err(("HTTP 503".into(), Some(t0() + secs(30))))).await.expect("retry");

    let purged = store.purge_finished(t0() + secs(10), 10).await.expect("purge");
    check!(purged == 2, "cascades whose callbacks were delivered or given up on are purged, got {purged}");
    check!(
        store.load(ids[0]).await.expect("load").is_none() && store.load(ids[1]).await.expect("load").is_none(),
        "a purged cascade is gone"
    );
    check!(
        store.load(ids[2]).await.expect("load").is_some(),
        "a cascade whose callback is still to be delivered is kept"
    );
    let dead = store.dead_letters(None, 10).await.expect("dead letters");
    check!(dead.is_empty(), "a purged cascade's dead callbacks go with it, {} left", dead.len());
    let counts = store.outbox_counts().await.expect("outbox counts");
    check!(counts == OutboxCounts { pending: 1, dead: 0 }, "only the callback to retry is left, got {counts:?}");

    // Given up on, the last callback no longer keeps its cascade: both go at the next purge.
    store.outbox_result(callback(ids[2]), Err(("gave up".into(), None))).await.expect("dead");
    let purged = store.purge_finished(t0() + secs(10), 10).await.expect("purge");
    check!(purged == 1, "a cascade whose callback was given up on is purged, got {purged}");
    check!(store.load(ids[2]).await.expect("load").is_none(), "a purged cascade is gone");
    let counts = store.outbox_counts().await.expect("outbox counts");
    check!(counts == OutboxCounts::default(), "no callback is left behind, got {counts:?}");
}
