//! The `Store` conformance suite: the same checks for every implementation.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cascade_engine::machine::{CascadeState, Phase};
use cascade_engine::plan::{Plan, PlannedStep};
use cascade_engine::store::{
    CampaignMember, CampaignRecord, CampaignState, CascadeMeta, CascadeRecord, CascadeUpdate, Conversation, Created,
    HeldRequest, ListFilter, NewHeldRequest, NewOutboxItem, NewRecipient, OutboxCounts, ProviderRef, RecipientFilter,
    RecipientOutcome, RecipientRecord, RecipientResult, RecipientState, StartResult, Tally,
};
use cascade_engine::{
    Address, AddressKind, CampaignId, CascadeId, ChannelName, ConnectionId, Contact, Content, ContentOverride, Cost,
    Event, EventKind, Outcome, Policy, RetryPolicy, Status, Step, Store, StoreError, Timestamp,
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
        bulk: false,
        other_addresses: Vec::new(),
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
            campaign: None,
        }),
        version: 1,
        wake_at: Some(wake),
    }
}

fn ev(kind: EventKind) -> Event {
    Event { at: t0(), kind }
}

/// A write-back of `rec` with `state` and the next wake-up `wake`, no timeline entries and
/// nothing else beside it.
pub fn update(rec: &CascadeRecord, state: CascadeState, wake: Option<Timestamp>) -> CascadeUpdate {
    CascadeUpdate {
        state,
        expected_version: rec.version,
        wake_at: wake,
        events: Vec::new(),
        provider_refs: Vec::new(),
        outbox: None,
        recipient: None,
    }
}

/// `state`, cancelled and finished at `at`.
pub fn finished(mut state: CascadeState, at: Timestamp) -> CascadeState {
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
    campaigns_saved_loaded_and_listed(make().await).await;
    campaign_state_compare_and_set(make().await).await;
    campaign_leases(make().await).await;
    recipients_added_by_number(make().await).await;
    recipient_filters(make().await).await;
    starting_and_closing_recipients(make().await).await;
    recipient_results_written_with_the_last_save(make().await).await;
    campaign_results_over_time_and_by_reason(make().await).await;
    policies_saved_loaded_and_listed(make().await).await;
    policy_compare_and_set(make().await).await;
    held_requests(make().await).await;
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

/// A campaign created at `t0() + at` seconds.
fn campaign(name: &str, owner: Option<&str>, state: CampaignState, at: i64) -> CampaignRecord {
    CampaignRecord {
        id: CampaignId::new(),
        name: name.into(),
        owner: owner.map(Into::into),
        state,
        spec: serde_json::json!({
            "message": { "text": format!("Hello from {name}") },
            "policy": ["whatsapp", "sms"],
            "rate": { "per_minute": 600 },
            "window": { "from": "09:00", "to": "20:00" },
        }),
        recipients: 0,
        created_at: t0() + secs(at),
        updated_at: t0() + secs(at),
    }
}

const BERLIN: &str = "Europe/Berlin";
const NEW_YORK: &str = "America/New_York";

/// Recipient `seq`: line `seq + 2` (after the header), a phone made from the number, zones
/// alternating Berlin (even) and New York (odd).
fn recipient(seq: u64) -> NewRecipient {
    NewRecipient {
        seq,
        line: seq + 2,
        contact: Contact::with_phone(format!("+1555{seq:07}")).name(format!("Contact {seq}")).field("n", seq),
        zone: if seq.is_multiple_of(2) { BERLIN } else { NEW_YORK }.into(),
    }
}

fn recipients(seqs: std::ops::Range<u64>) -> Vec<NewRecipient> {
    seqs.map(recipient).collect()
}

/// Every recipient of a campaign, by number.
async fn all_recipients(store: &dyn Store, id: CampaignId) -> Vec<RecipientRecord> {
    let filter = RecipientFilter { limit: usize::MAX >> 1, ..RecipientFilter::default() };
    store.campaign_recipients(id, &filter).await.expect("campaign recipients")
}

/// The numbers of the recipients a filter returns.
async fn seqs(store: &dyn Store, id: CampaignId, filter: RecipientFilter) -> Vec<u64> {
    store.campaign_recipients(id, &filter).await.expect("campaign recipients").iter().map(|r| r.seq).collect()
}

fn ids(list: &[CampaignRecord]) -> Vec<CampaignId> {
    list.iter().map(|c| c.id).collect()
}

/// A tally, in an order that does not depend on the store.
fn sorted(mut tally: Vec<Tally>) -> Vec<Tally> {
    tally.sort_by(|a, b| {
        let key = |t: &Tally| (t.state.as_str(), t.outcome.clone(), t.channel.clone());
        key(a).cmp(&key(b))
    });
    tally
}

async fn campaigns_saved_loaded_and_listed(store: Arc<dyn Store>) {
    let mut made = Vec::new();
    for (i, owner) in [Some("key:a"), Some("key:b"), Some("key:a"), None].into_iter().enumerate() {
        let c = campaign(&format!("campaign {i}"), owner, CampaignState::Importing, i as i64);
        store.save_campaign(&c).await.expect("save campaign");
        made.push(c);
    }
    for c in &made {
        let loaded = store.load_campaign(c.id).await.expect("load campaign");
        check!(loaded.as_ref() == Some(c), "a saved campaign loads as saved: {loaded:?}, expected {c:?}");
    }
    check!(
        store.load_campaign(CampaignId::new()).await.expect("load campaign").is_none(),
        "an unknown campaign loads as none"
    );

    // Saving again replaces name, settings, recipient count and update time; the state moves
    // only through `set_campaign_state`, and owner and creation time never change.
    let mut changed = made[1].clone();
    changed.name = "renamed".into();
    changed.state = CampaignState::Finished;
    changed.owner = Some("key:other".into());
    changed.created_at = t0() + secs(30);
    changed.spec = serde_json::json!({ "message": { "text": "changed" }, "rate": null });
    changed.recipients = 1_000_000;
    changed.updated_at = t0() + secs(60);
    store.save_campaign(&changed).await.expect("save campaign again");
    let loaded = store.load_campaign(changed.id).await.expect("load campaign");
    let expected = CampaignRecord {
        state: made[1].state,
        owner: made[1].owner.clone(),
        created_at: made[1].created_at,
        ..changed
    };
    check!(loaded.as_ref() == Some(&expected), "a second save replaces the settings only: {loaded:?}");
    made[1] = expected;

    let all = store.list_campaigns(None, None, 10).await.expect("list campaigns");
    let newest_first: Vec<CampaignId> = made.iter().rev().map(|c| c.id).collect();
    check!(ids(&all) == newest_first, "campaigns list newest first: got {:?}", ids(&all));
    check!(all[2] == made[1], "a listed campaign is the stored one");
    let mine = store.list_campaigns(None, Some("key:a"), 10).await.expect("list campaigns");
    check!(ids(&mine) == [made[2].id, made[0].id], "the owner filter lists only that owner's: {:?}", ids(&mine));
    let none = store.list_campaigns(None, Some("key:nobody"), 10).await.expect("list campaigns");
    check!(none.is_empty(), "an owner with no campaigns lists none");
    let page = store.list_campaigns(None, None, 2).await.expect("list campaigns");
    check!(ids(&page) == [made[3].id, made[2].id], "the limit keeps the newest: {:?}", ids(&page));
    let next = store.list_campaigns(Some(page[1].id), None, 2).await.expect("list campaigns");
    check!(ids(&next) == [made[1].id, made[0].id], "`before` pages below the cursor: {:?}", ids(&next));
    let last = store.list_campaigns(Some(made[0].id), None, 2).await.expect("list campaigns");
    check!(last.is_empty(), "past the oldest campaign the page is empty");
    let owned = store.list_campaigns(Some(made[2].id), Some("key:a"), 10).await.expect("list campaigns");
    check!(ids(&owned) == [made[0].id], "the owner filter pages like the rest: {:?}", ids(&owned));
}

async fn campaign_state_compare_and_set(store: Arc<dyn Store>) {
    let c = campaign("cas", Some("key:a"), CampaignState::Importing, 0);
    store.save_campaign(&c).await.expect("save campaign");
    let id = c.id;
    let state = |s: Arc<dyn Store>| async move {
        let loaded = s.load_campaign(id).await.expect("load campaign").expect("campaign exists");
        (loaded.state, loaded.updated_at)
    };

    let moved = store
        .set_campaign_state(c.id, &[CampaignState::Running], CampaignState::Paused, t0() + secs(1))
        .await
        .expect("set state");
    check!(!moved, "a campaign not in a `from` state does not move");
    check!(
        state(store.clone()).await == (CampaignState::Importing, t0()),
        "a refused move changes neither state nor update time"
    );
    let moved = store.set_campaign_state(c.id, &[], CampaignState::Running, t0() + secs(1)).await.expect("set state");
    check!(!moved, "no `from` state moves nothing");

    let moved = store
        .set_campaign_state(c.id, &[CampaignState::Importing], CampaignState::Running, t0() + secs(2))
        .await
        .expect("set state");
    check!(moved, "a campaign in the `from` state moves");
    check!(
        state(store.clone()).await == (CampaignState::Running, t0() + secs(2)),
        "a move stores the new state and stamps the update time"
    );
    let again = store
        .set_campaign_state(c.id, &[CampaignState::Importing], CampaignState::Running, t0() + secs(3))
        .await
        .expect("set state");
    check!(!again, "the same move twice succeeds once");

    let moved = store
        .set_campaign_state(
            c.id,
            &[CampaignState::Running, CampaignState::Paused],
            CampaignState::Cancelled,
            t0() + secs(4),
        )
        .await
        .expect("set state");
    check!(moved, "a campaign in any of several `from` states moves");
    check!(state(store.clone()).await == (CampaignState::Cancelled, t0() + secs(4)), "the campaign is cancelled");

    let unknown = store
        .set_campaign_state(CampaignId::new(), &CampaignState::ALL, CampaignState::Running, t0())
        .await
        .expect("set state");
    check!(!unknown, "an unknown campaign does not move");
    check!(store.load_campaign(CampaignId::new()).await.expect("load").is_none(), "moving creates nothing");
}

async fn campaign_leases(store: Arc<dyn Store>) {
    let mut made = Vec::new();
    for (i, state) in [CampaignState::Running, CampaignState::Importing, CampaignState::Running, CampaignState::Paused]
        .into_iter()
        .enumerate()
    {
        let c = campaign(&format!("lease {i}"), None, state, i as i64);
        store.save_campaign(&c).await.expect("save campaign");
        made.push(c);
    }
    let running = [made[0].id, made[2].id];
    let sorted_ids = |list: &[CampaignRecord]| {
        let mut v = ids(list);
        v.sort();
        v
    };

    let a = store.lease_campaigns("a", t0(), t0() + secs(30), 10).await.expect("lease");
    check!(sorted_ids(&a) == running, "a lease takes every running campaign and only those: {:?}", ids(&a));
    check!(a.iter().all(|c| made.contains(c)), "leased campaigns come back as stored: {a:?}");
    let b = store.lease_campaigns("b", t0() + secs(10), t0() + secs(40), 10).await.expect("lease");
    check!(b.is_empty(), "a campaign leased to a live holder is not leased to another: {:?}", ids(&b));

    let renewed = store.lease_campaigns("a", t0() + secs(20), t0() + secs(50), 10).await.expect("lease");
    check!(sorted_ids(&renewed) == running, "the holder renews its own leases: {:?}", ids(&renewed));
    let b = store.lease_campaigns("b", t0() + secs(45), t0() + secs(75), 10).await.expect("lease");
    check!(b.is_empty(), "a renewed lease runs to its new end, not the old one: {:?}", ids(&b));
    let b = store.lease_campaigns("b", t0() + secs(50), t0() + secs(80), 10).await.expect("lease");
    check!(b.is_empty(), "a lease is live up to and including its end: {:?}", ids(&b));

    let b = store.lease_campaigns("b", t0() + secs(51), t0() + secs(81), 10).await.expect("lease");
    check!(sorted_ids(&b) == running, "once a lease has lapsed another holder gets it: {:?}", ids(&b));
    let a = store.lease_campaigns("a", t0() + secs(60), t0() + secs(90), 10).await.expect("lease");
    check!(a.is_empty(), "the first holder lost the campaigns to the second: {:?}", ids(&a));

    // Only running campaigns: one paused is not returned, even to its holder; resumed, it is.
    let paused = store
        .set_campaign_state(made[0].id, &[CampaignState::Running], CampaignState::Paused, t0() + secs(61))
        .await
        .expect("pause");
    check!(paused, "a running campaign pauses");
    let b = store.lease_campaigns("b", t0() + secs(62), t0() + secs(92), 10).await.expect("lease");
    check!(ids(&b) == [made[2].id], "a paused campaign is not leased, even to its holder: {:?}", ids(&b));
    let resumed = store
        .set_campaign_state(made[1].id, &[CampaignState::Importing], CampaignState::Running, t0() + secs(63))
        .await
        .expect("launch");
    check!(resumed, "an importing campaign is launched");
    let c = store.lease_campaigns("c", t0() + secs(64), t0() + secs(94), 10).await.expect("lease");
    check!(ids(&c) == [made[1].id], "a newly running campaign is free to lease: {:?}", ids(&c));
    let state = c.first().map(|c| c.state);
    check!(state == Some(CampaignState::Running), "a leased campaign comes back with its current state: {state:?}");

    let later = t0() + secs(1000);
    let one = store.lease_campaigns("d", later, later + secs(30), 1).await.expect("lease");
    check!(one.len() == 1, "a lease respects the limit, got {}", one.len());
    let rest = store.lease_campaigns("d", later, later + secs(30), 10).await.expect("lease");
    check!(rest.len() == 2, "and takes the rest next time, got {}", rest.len());
    let none = store.lease_campaigns("e", later, later + secs(30), 0).await.expect("lease");
    check!(none.is_empty(), "a limit of 0 leases nothing");
}

async fn recipients_added_by_number(store: Arc<dyn Store>) {
    let unknown = store.add_recipients(CampaignId::new(), &recipients(0..2)).await;
    check!(unknown.is_err(), "recipients of an unknown campaign are refused, got {unknown:?}");

    let c = campaign("import", None, CampaignState::Importing, 0);
    store.save_campaign(&c).await.expect("save campaign");
    store.add_recipients(c.id, &recipients(0..5)).await.expect("add recipients");
    store.add_recipients(c.id, &[]).await.expect("add no recipients");
    let all = all_recipients(&*store, c.id).await;
    let expected: Vec<RecipientRecord> = recipients(0..5)
        .into_iter()
        .map(|r| RecipientRecord {
            seq: r.seq,
            line: r.line,
            contact: r.contact,
            zone: r.zone,
            state: RecipientState::Pending,
            cascade: None,
            changed_at: None,
            result: None,
        })
        .collect();
    check!(all == expected, "added recipients are stored pending, as given, by number: {all:?}");

    // Repeating an import leaves the stored numbers alone, progress and all.
    let cascade = CascadeId::new();
    store.mark_started(c.id, &[(1, StartResult::Started(cascade))], t0() + secs(5)).await.expect("mark started");
    let mut again = recipients(0..8);
    again[1].contact = Contact::with_phone("+15559999999");
    again[1].zone = "Asia/Tokyo".into();
    store.add_recipients(c.id, &again).await.expect("add recipients again");
    let all = all_recipients(&*store, c.id).await;
    check!(all.len() == 8, "a repeated import adds only the new numbers, got {} recipients", all.len());
    check!(
        all[0] == expected[0] && all[2..5] == expected[2..],
        "re-adding pending recipients leaves them as first stored: {:?}",
        &all[..5]
    );
    let one = &all[1];
    check!(
        one.state == RecipientState::Started
            && one.cascade == Some(cascade)
            && one.changed_at == Some(t0() + secs(5))
            && one.contact == expected[1].contact
            && one.zone == expected[1].zone,
        "re-adding a started recipient does not reset or replace it: {one:?}"
    );
    check!(
        all.iter().map(|r| r.seq).eq(0..8) && all[5..].iter().all(|r| r.state == RecipientState::Pending),
        "new numbers are added pending, in order"
    );

    // A large import in one call, then the same again.
    let big = recipients(100..5100);
    store.add_recipients(c.id, &big).await.expect("add many recipients");
    store.add_recipients(c.id, &big).await.expect("add many recipients again");
    let all = all_recipients(&*store, c.id).await;
    check!(all.len() == 5008, "every recipient of a large import is stored once, got {}", all.len());
    let last = all.last().map(|r| (r.seq, r.line, r.contact.clone(), r.zone.clone()));
    check!(
        last == Some((5099, 5101, recipient(5099).contact, NEW_YORK.into())),
        "the last of a large import is stored as given: {last:?}"
    );
    let tally = store.campaign_tally(c.id).await.expect("tally");
    let pending: u64 = tally.iter().filter(|t| t.state == RecipientState::Pending).map(|t| t.count).sum();
    check!(pending == 5007, "the tally counts every pending recipient, got {pending}");

    let other = campaign("other", None, CampaignState::Importing, 1);
    store.save_campaign(&other).await.expect("save campaign");
    check!(all_recipients(&*store, other.id).await.is_empty(), "recipients belong to their own campaign");
    store.add_recipients(other.id, &recipients(0..3)).await.expect("add recipients");
    check!(all_recipients(&*store, other.id).await.len() == 3, "numbers are per campaign");
}

/// Stores a running cascade for recipient `seq` of `campaign` and marks the recipient started.
async fn start_recipient(store: &dyn Store, campaign: CampaignId, seq: u64) -> CascadeRecord {
    let mut r = sample_record(None, "fp", &format!("+1555{seq:07}"), t0());
    Arc::make_mut(&mut r.meta).campaign = Some(CampaignMember { campaign, seq });
    store.create(r.clone(), vec![ev(EventKind::Created)]).await.expect("create");
    store.mark_started(campaign, &[(seq, StartResult::Started(r.id()))], t0() + secs(1)).await.expect("mark started");
    r
}

/// Saves `rec` finished, with its recipient's result.
async fn finish_recipient(store: &dyn Store, rec: &CascadeRecord, result: RecipientResult) {
    let member = rec.meta.campaign.expect("a campaign cascade");
    let mut u = update(rec, finished(rec.state.clone(), t0() + secs(10)), None);
    u.recipient = Some(RecipientOutcome { campaign: member.campaign, seq: member.seq, result });
    store.save(&u).await.expect("finishing save");
}

/// A result that came at `t0() + 10 s`, when [`finish_recipient`] finishes its cascade.
fn result(outcome: &str, channel: Option<&str>, micros: i64, reason: Option<&str>) -> RecipientResult {
    RecipientResult {
        outcome: outcome.into(),
        channel: channel.map(ChannelName::new),
        cost: Cost::from_micros(micros),
        reason: reason.map(Into::into),
        at: Some(t0() + secs(10)),
    }
}

async fn recipient_filters(store: Arc<dyn Store>) {
    use RecipientState::{Pending, Refused, Started};

    let c = campaign("filters", None, CampaignState::Running, 0);
    store.save_campaign(&c).await.expect("save campaign");
    store.add_recipients(c.id, &recipients(0..10)).await.expect("add recipients");
    // 0 delivered, 1 failed, 2 running, 3 refused; 4 to 9 pending (even ones in Berlin).
    let r0 = start_recipient(&*store, c.id, 0).await;
    let r1 = start_recipient(&*store, c.id, 1).await;
    start_recipient(&*store, c.id, 2).await;
    finish_recipient(&*store, &r0, result("delivered", Some("sms"), 7_900, None)).await;
    finish_recipient(&*store, &r1, result("failed", None, 0, Some("sms: unreachable"))).await;
    store
        .mark_started(c.id, &[(3, StartResult::Refused("no step can reach the contact".into()))], t0() + secs(2))
        .await
        .expect("mark refused");
    let f = |states: &[RecipientState], outcomes: &[&str]| RecipientFilter {
        states: states.to_vec(),
        outcomes: outcomes.iter().map(|o| (*o).to_owned()).collect(),
        zones: None,
        after: None,
        limit: 100,
    };
    let all = seqs(&*store, c.id, f(&[], &[])).await;
    check!(all == (0..10).collect::<Vec<_>>(), "no states and no outcomes is every recipient, by number: {all:?}");
    let got = seqs(&*store, c.id, f(&[Pending], &[])).await;
    check!(got == [4, 5, 6, 7, 8, 9], "the state filter keeps pending ones: {got:?}");
    let got = seqs(&*store, c.id, f(&[Started], &[])).await;
    check!(got == [0, 1, 2], "started ones, finished or not: {got:?}");
    let got = seqs(&*store, c.id, f(&[Started, Refused], &[])).await;
    check!(got == [0, 1, 2, 3], "several states: {got:?}");
    let got = seqs(&*store, c.id, f(&[], &["failed"])).await;
    check!(got == [1], "the outcome filter keeps those whose cascade ended so: {got:?}");
    let got = seqs(&*store, c.id, f(&[], &["delivered", "failed"])).await;
    check!(got == [0, 1], "several outcomes: {got:?}");
    let got = seqs(&*store, c.id, f(&[Refused], &["failed"])).await;
    check!(got == [1, 3], "states and outcomes combine by \"or\": {got:?}");
    let got = seqs(&*store, c.id, f(&[Pending], &["delivered"])).await;
    check!(got == [0, 4, 5, 6, 7, 8, 9], "pending or delivered: {got:?}");
    let got = seqs(&*store, c.id, f(&[], &["expired"])).await;
    check!(got.is_empty(), "an outcome no cascade had matches none: {got:?}");

    let zoned = |states: &[RecipientState], zones: &[&str]| RecipientFilter {
        zones: Some(zones.iter().map(|z| (*z).to_owned()).collect()),
        ..f(states, &[])
    };
    let got = seqs(&*store, c.id, zoned(&[Pending], &[BERLIN])).await;
    check!(got == [4, 6, 8], "zones keep pending recipients in those zones: {got:?}");
    let got = seqs(&*store, c.id, zoned(&[Pending], &[BERLIN, NEW_YORK])).await;
    check!(got == [4, 5, 6, 7, 8, 9], "several zones: {got:?}");
    let got = seqs(&*store, c.id, zoned(&[], &[NEW_YORK])).await;
    check!(got == [0, 1, 2, 3, 5, 7, 9], "zones restrict pending recipients only: {got:?}");
    let got = seqs(&*store, c.id, zoned(&[], &[])).await;
    check!(got == [0, 1, 2, 3], "no zone at all leaves no pending recipient: {got:?}");
    let got = seqs(&*store, c.id, zoned(&[Pending], &["Asia/Tokyo"])).await;
    check!(got.is_empty(), "a zone nobody is in matches no pending recipient: {got:?}");

    let got = seqs(&*store, c.id, RecipientFilter { after: Some(5), ..f(&[Pending], &[]) }).await;
    check!(got == [6, 7, 8, 9], "`after` keeps numbers above it: {got:?}");
    let got = seqs(&*store, c.id, RecipientFilter { limit: 2, ..f(&[Pending], &[]) }).await;
    check!(got == [4, 5], "the limit keeps the lowest numbers: {got:?}");
    let got = seqs(&*store, c.id, RecipientFilter { after: Some(5), limit: 2, ..zoned(&[Pending], &[BERLIN]) }).await;
    check!(got == [6, 8], "every field at once: {got:?}");
    let got = seqs(&*store, c.id, RecipientFilter { after: Some(9), ..f(&[], &[]) }).await;
    check!(got.is_empty(), "nothing after the last number: {got:?}");
    let got = seqs(&*store, c.id, RecipientFilter { limit: 0, ..f(&[], &[]) }).await;
    check!(got.is_empty(), "a limit of 0 returns nothing: {got:?}");
    let got = seqs(&*store, CampaignId::new(), f(&[], &[])).await;
    check!(got.is_empty(), "an unknown campaign has no recipients: {got:?}");

    let refused = store.campaign_recipients(c.id, &f(&[Refused], &[])).await.expect("campaign recipients");
    let expected = RecipientResult {
        at: Some(t0() + secs(2)),
        ..result("refused", None, 0, Some("no step can reach the contact"))
    };
    check!(
        refused.len() == 1
            && refused[0].result.as_ref() == Some(&expected)
            && refused[0].cascade.is_none()
            && refused[0].changed_at == Some(t0() + secs(2)),
        "a refused recipient carries its reason as a `refused` result, at the time it was refused: {refused:?}"
    );
}

async fn starting_and_closing_recipients(store: Arc<dyn Store>) {
    let c = campaign("closing", None, CampaignState::Running, 0);
    let other = campaign("untouched", None, CampaignState::Running, 1);
    for x in [&c, &other] {
        store.save_campaign(x).await.expect("save campaign");
    }
    store.add_recipients(c.id, &recipients(0..6)).await.expect("add recipients");
    store.add_recipients(other.id, &recipients(0..2)).await.expect("add recipients");

    let (a, b) = (CascadeId::new(), CascadeId::new());
    let t1 = t0() + secs(1);
    store
        .mark_started(c.id, &[(0, StartResult::Started(a)), (1, StartResult::Started(b))], t1)
        .await
        .expect("mark started");
    store.mark_started(c.id, &[], t1).await.expect("mark nothing");
    let all = all_recipients(&*store, c.id).await;
    let summary = |r: &RecipientRecord| (r.seq, r.state, r.cascade, r.changed_at);
    check!(
        all[..2].iter().map(summary).collect::<Vec<_>>()
            == [(0, RecipientState::Started, Some(a), Some(t1)), (1, RecipientState::Started, Some(b), Some(t1))],
        "started recipients get their cascade and time: {all:?}"
    );
    check!(all[2..].iter().all(|r| r.state == RecipientState::Pending && r.changed_at.is_none()), "others wait");

    let t2 = t0() + secs(2);
    store.mark_started(c.id, &[(0, StartResult::Started(CascadeId::new()))], t2).await.expect("mark started again");
    store.mark_started(c.id, &[(1, StartResult::Refused("late".into()))], t2).await.expect("refuse a started one");
    let all = all_recipients(&*store, c.id).await;
    check!(
        summary(&all[0]) == (0, RecipientState::Started, Some(a), Some(t1))
            && summary(&all[1]) == (1, RecipientState::Started, Some(b), Some(t1))
            && all[1].result.is_none(),
        "a recipient no longer pending is not started again: {:?}",
        &all[..2]
    );

    let t3 = t0() + secs(3);
    let closed = store.close_pending(c.id, RecipientState::Expired, t3).await.expect("close pending");
    check!(closed == 4, "closing counts the pending recipients it moved, got {closed}");
    let all = all_recipients(&*store, c.id).await;
    check!(
        all[..2].iter().map(summary).collect::<Vec<_>>()
            == [(0, RecipientState::Started, Some(a), Some(t1)), (1, RecipientState::Started, Some(b), Some(t1))],
        "closing leaves started recipients alone: {:?}",
        &all[..2]
    );
    check!(
        all[2..].iter().all(|r| r.state == RecipientState::Expired && r.changed_at == Some(t3) && r.cascade.is_none()),
        "closed recipients are expired at the time given: {:?}",
        &all[2..]
    );
    let again = store.close_pending(c.id, RecipientState::Cancelled, t3).await.expect("close pending");
    check!(again == 0, "nothing is left to close, got {again}");
    store.mark_started(c.id, &[(2, StartResult::Started(CascadeId::new()))], t3).await.expect("mark started");
    let two = &all_recipients(&*store, c.id).await[2];
    check!(
        two.state == RecipientState::Expired && two.cascade.is_none(),
        "an expired recipient is never started: {two:?}"
    );

    let pending = seqs(
        &*store,
        other.id,
        RecipientFilter { states: vec![RecipientState::Pending], limit: 10, ..Default::default() },
    )
    .await;
    check!(pending == [0, 1], "closing one campaign leaves another's recipients alone: {pending:?}");
    let cancelled = store.close_pending(other.id, RecipientState::Cancelled, t3).await.expect("close pending");
    check!(cancelled == 2, "a cancelled campaign's pending recipients are cancelled, got {cancelled}");
    let states: Vec<RecipientState> = all_recipients(&*store, other.id).await.iter().map(|r| r.state).collect();
    check!(states == [RecipientState::Cancelled; 2], "they are cancelled: {states:?}");
    let unknown = store.close_pending(CampaignId::new(), RecipientState::Expired, t3).await.expect("close pending");
    check!(unknown == 0, "an unknown campaign closes nothing, got {unknown}");
}

async fn recipient_results_written_with_the_last_save(store: Arc<dyn Store>) {
    let c = campaign("results", None, CampaignState::Running, 0);
    store.save_campaign(&c).await.expect("save campaign");
    store.add_recipients(c.id, &recipients(0..5)).await.expect("add recipients");
    let mut started = Vec::new();
    for seq in 0..4 {
        started.push(start_recipient(&*store, c.id, seq).await);
    }

    // A save that does not finish the cascade carries no result.
    let v = store.save(&update(&started[0], started[0].state.clone(), started[0].wake_at)).await.expect("save");
    check!(all_recipients(&*store, c.id).await[0].result.is_none(), "a save without a recipient result writes none");
    let r0 = CascadeRecord { version: v, ..started[0].clone() };

    let delivered = result("delivered", Some("sms"), 50_000, None);
    let cheap = result("delivered", Some("sms"), 30_000, None);
    let failed = result("failed", None, 10_000, Some("whatsapp: rejected; sms: unreachable"));
    finish_recipient(&*store, &r0, delivered.clone()).await;
    finish_recipient(&*store, &started[1], cheap.clone()).await;
    finish_recipient(&*store, &started[2], failed.clone()).await;

    // A save refused for its version writes no result either: the result goes with the save.
    let stale = &started[0];
    let mut u = update(stale, finished(stale.state.clone(), t0()), None);
    u.recipient = Some(RecipientOutcome { campaign: c.id, seq: 3, result: failed.clone() });
    let refused = store.save(&u).await;
    check!(matches!(refused, Err(StoreError::Conflict(_))), "a stale finishing save is refused, got {refused:?}");

    let all = all_recipients(&*store, c.id).await;
    let results: Vec<Option<RecipientResult>> = all.iter().map(|r| r.result.clone()).collect();
    check!(
        results == [Some(delivered.clone()), Some(cheap.clone()), Some(failed.clone()), None, None],
        "each finishing save writes its result onto its recipient, and only it: {results:?}"
    );
    check!(
        all[..4].iter().all(|r| r.state == RecipientState::Started) && all[4].state == RecipientState::Pending,
        "a result does not change where a recipient is"
    );

    let tally = sorted(store.campaign_tally(c.id).await.expect("tally"));
    let group = |state, outcome: Option<&str>, channel: Option<&str>, count, micros| Tally {
        state,
        outcome: outcome.map(Into::into),
        channel: channel.map(ChannelName::new),
        count,
        cost: Cost::from_micros(micros),
    };
    let expected = sorted(vec![
        group(RecipientState::Started, Some("delivered"), Some("sms"), 2, 80_000),
        group(RecipientState::Started, Some("failed"), None, 1, 10_000),
        group(RecipientState::Started, None, None, 1, 0),
        group(RecipientState::Pending, None, None, 1, 0),
    ]);
    check!(
        tally == expected,
        "the tally counts recipients and sums costs by state, outcome and channel: {tally:?}, expected {expected:?}"
    );
    let empty = store.campaign_tally(CampaignId::new()).await.expect("tally");
    check!(empty.is_empty(), "an unknown campaign tallies nothing: {empty:?}");

    // The results outlive the cascades.
    let purged = store.purge_finished(t0() + secs(100), 10).await.expect("purge");
    check!(purged == 3, "the finished cascades are purged, got {purged}");
    let after = sorted(store.campaign_tally(c.id).await.expect("tally"));
    check!(after == expected, "results survive their cascades' purge: {after:?}");
    let first = &all_recipients(&*store, c.id).await[0];
    check!(first.result.as_ref() == Some(&delivered), "a purged cascade's recipient keeps its result: {first:?}");
}

async fn campaign_results_over_time_and_by_reason(store: Arc<dyn Store>) {
    use cascade_engine::store::SeriesPoint;

    let c = campaign("series", None, CampaignState::Running, 0);
    let other = campaign("other series", None, CampaignState::Running, 1);
    for x in [&c, &other] {
        store.save_campaign(x).await.expect("save campaign");
    }
    store.add_recipients(c.id, &recipients(0..12)).await.expect("add recipients");
    store.add_recipients(other.id, &recipients(0..1)).await.expect("add recipients");
    let at = |s: i64| Some(t0() + secs(s));
    let ended = |outcome: &str, channel: Option<&str>, reason: Option<&str>, when: Option<Timestamp>| RecipientResult {
        at: when,
        ..result(outcome, channel, 1_000, reason)
    };
    // Minute 0: two by SMS, one by WhatsApp, one failed; minute 1: one by SMS, two failed, one
    // cancelled; minute 2 (refused at 150 s): one refused. One result has no time (stored
    // before times were kept), one cascade still runs, one recipient is pending.
    let finished = [
        ended("delivered", Some("sms"), None, at(5)),
        ended("delivered", Some("sms"), None, at(59)),
        ended("delivered", Some("whatsapp"), None, at(30)),
        ended("failed", None, Some("sms: unreachable"), at(40)),
        ended("delivered", Some("sms"), None, at(60)),
        ended("failed", None, Some("whatsapp: rejected; sms: unreachable"), at(61)),
        ended("failed", None, Some("sms: unreachable"), at(119)),
        ended("cancelled", None, Some("cancelled"), at(90)),
        ended("failed", None, None, None),
    ];
    for (seq, result) in finished.iter().enumerate() {
        let r = start_recipient(&*store, c.id, seq as u64).await;
        finish_recipient(&*store, &r, result.clone()).await;
    }
    start_recipient(&*store, c.id, 9).await;
    store
        .mark_started(c.id, &[(10, StartResult::Refused("no step can reach the contact".into()))], t0() + secs(150))
        .await
        .expect("mark refused");
    let r = start_recipient(&*store, other.id, 0).await;
    finish_recipient(&*store, &r, ended("failed", None, Some("sms: unreachable"), at(5))).await;

    let point = |s: i64, outcome: &str, channel: Option<&str>, count| SeriesPoint {
        at: t0() + secs(s),
        outcome: outcome.into(),
        channel: channel.map(ChannelName::new),
        count,
    };
    let series = store.campaign_series(c.id, Duration::from_secs(60)).await.expect("series");
    let expected = vec![
        point(0, "delivered", Some("sms"), 2),
        point(0, "delivered", Some("whatsapp"), 1),
        point(0, "failed", None, 1),
        point(60, "cancelled", None, 1),
        point(60, "delivered", Some("sms"), 1),
        point(60, "failed", None, 2),
        point(120, "refused", None, 1),
    ];
    check!(
        series == expected,
        "results with a time are counted by minute, outcome and channel, in that order: {series:?}, expected {expected:?}"
    );
    let hourly = store.campaign_series(c.id, Duration::from_secs(3_600)).await.expect("series");
    let expected = vec![
        point(0, "cancelled", None, 1),
        point(0, "delivered", Some("sms"), 3),
        point(0, "delivered", Some("whatsapp"), 1),
        point(0, "failed", None, 3),
        point(0, "refused", None, 1),
    ];
    check!(hourly == expected, "a wider bucket sums them: {hourly:?}, expected {expected:?}");
    let fine = store.campaign_series(c.id, Duration::from_secs(1)).await.expect("series");
    check!(
        fine.len() == 9
            && fine.iter().map(|p| p.count).sum::<u64>() == 9
            && fine[0] == point(5, "delivered", Some("sms"), 1),
        "one-second buckets keep each time apart: {fine:?}"
    );
    let none = store.campaign_series(CampaignId::new(), Duration::from_secs(60)).await.expect("series");
    check!(none.is_empty(), "an unknown campaign has no series: {none:?}");

    let reasons = store.campaign_reasons(c.id, 10).await.expect("reasons");
    let expected: Vec<(String, u64)> = vec![
        ("sms: unreachable".into(), 2),
        (String::new(), 1),
        ("no step can reach the contact".into(), 1),
        ("whatsapp: rejected; sms: unreachable".into(), 1),
    ];
    check!(
        reasons == expected,
        "failed and refused results are counted by reason, most first, then by reason (timeless ones too): \
         {reasons:?}, expected {expected:?}"
    );
    let top = store.campaign_reasons(c.id, 2).await.expect("reasons");
    check!(top == expected[..2], "the limit keeps the most common: {top:?}");
    let none = store.campaign_reasons(CampaignId::new(), 10).await.expect("reasons");
    check!(none.is_empty(), "an unknown campaign has no reasons: {none:?}");
}

/// A policy that sets every rule, so a round trip through a store shows nothing is lost.
fn full_policy() -> Policy {
    let mut p = Policy::new([
        Step::new("whatsapp").until(Status::Read).timeout(Duration::from_secs(45)),
        Step {
            content: Some(ContentOverride { text: Some("Short: {{contact.name}}".into()), ..Default::default() }),
            connections: Some(vec![ConnectionId::new("sms-1"), ConnectionId::new("sms-2")]),
            ..Step::new("sms")
        },
    ]);
    p.name = Some("full".into());
    p.existing_chat_first = false;
    p.ttl = Some(Duration::from_secs(3_600));
    p.late_success_wins = false;
    p.track_links = true;
    p.retry = RetryPolicy {
        max_sends_per_step: 2,
        initial_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(5),
    };
    p
}

fn names(list: &[cascade_engine::store::StoredPolicy]) -> Vec<&str> {
    list.iter().map(|p| p.name.as_str()).collect()
}

async fn policies_saved_loaded_and_listed(store: Arc<dyn Store>) {
    check!(store.load_policy("full").await.expect("load policy").is_none(), "an unknown policy loads as none");
    check!(store.list_policies().await.expect("list policies").is_empty(), "a new store lists no policy");

    let full = full_policy();
    let saved = store.save_policy("full", &full, None, t0()).await.expect("save policy");
    check!(
        saved.name == "full" && saved.policy == full && saved.version == 1 && saved.updated_at == t0(),
        "a first save stores version 1 at the time given: {saved:?}"
    );
    let loaded = store.load_policy("full").await.expect("load policy");
    check!(loaded.as_ref() == Some(&saved), "a saved policy loads as saved, every rule kept: {loaded:?}");

    let chain = Policy::chain(["telegram", "sms"]);
    let again = store.save_policy("full", &chain, None, t0() + secs(5)).await.expect("save policy again");
    check!(
        again.version == 2 && again.policy == chain && again.updated_at == t0() + secs(5),
        "a save without an expected version replaces the policy and bumps the version: {again:?}"
    );
    let loaded = store.load_policy("full").await.expect("load policy");
    check!(loaded.as_ref() == Some(&again), "the replaced policy loads: {loaded:?}");

    for (i, name) in ["b-policy", "a.policy", "C_1", "a"].into_iter().enumerate() {
        store.save_policy(name, &Policy::chain(["sms"]), None, t0() + secs(i as i64)).await.expect("save policy");
    }
    let all = store.list_policies().await.expect("list policies");
    check!(names(&all) == ["C_1", "a", "a.policy", "b-policy", "full"], "policies list by name: {:?}", names(&all));
    check!(all[4] == again, "a listed policy is the stored one: {:?}", all[4]);
    check!(all[..4].iter().all(|p| p.version == 1), "each name has its own version: {all:?}");
}

/// Whether `r` is the refusal of a write to policy `cas` whose stored version is `at`.
fn conflict<T>(r: &Result<T, StoreError>, at: u64) -> bool {
    matches!(r, Err(StoreError::PolicyConflict { name, current }) if name == "cas" && *current == at)
}

async fn policy_compare_and_set(store: Arc<dyn Store>) {
    let one = Policy::chain(["whatsapp", "sms"]);
    let two = Policy::chain(["sms", "whatsapp"]);
    let absent = store.save_policy("cas", &one, Some(3), t0()).await;
    check!(conflict(&absent, 0), "a save expecting a version of a policy not stored is refused with 0: {absent:?}");
    check!(store.load_policy("cas").await.expect("load").is_none(), "a refused save stores nothing");
    let created = store.save_policy("cas", &one, Some(0), t0()).await.expect("create");
    check!(created.version == 1, "expecting 0 creates version 1: {created:?}");
    let taken = store.save_policy("cas", &two, Some(0), t0() + secs(1)).await;
    check!(conflict(&taken, 1), "expecting 0 when one is stored is refused with its version: {taken:?}");
    let moved = store.save_policy("cas", &two, Some(1), t0() + secs(2)).await.expect("save at version 1");
    check!(moved.version == 2 && moved.policy == two, "a save expecting the stored version succeeds: {moved:?}");
    let stale = store.save_policy("cas", &one, Some(1), t0() + secs(3)).await;
    check!(conflict(&stale, 2), "a save expecting an older version is refused: {stale:?}");
    let loaded = store.load_policy("cas").await.expect("load");
    check!(loaded.as_ref() == Some(&moved), "refused saves change nothing: {loaded:?}");

    let stale = store.delete_policy("cas", Some(1)).await;
    check!(conflict(&stale, 2), "a delete expecting an older version is refused: {stale:?}");
    check!(store.load_policy("cas").await.expect("load").is_some(), "a refused delete deletes nothing");
    let deleted = store.delete_policy("cas", Some(2)).await.expect("delete");
    check!(deleted, "a delete expecting the stored version deletes it");
    check!(store.load_policy("cas").await.expect("load").is_none(), "a deleted policy loads as none");
    check!(!store.delete_policy("cas", None).await.expect("delete again"), "deleting nothing answers false");
    check!(!store.delete_policy("cas", Some(0)).await.expect("delete expecting none"), "expecting 0 deletes nothing");
    let gone = store.delete_policy("cas", Some(2)).await;
    check!(conflict(&gone, 0), "a delete expecting a version of a policy not stored is refused with 0: {gone:?}");

    let anew = store.save_policy("cas", &one, Some(0), t0() + secs(4)).await.expect("save anew");
    check!(anew.version == 1, "a name saved anew after its delete starts at version 1: {anew:?}");
    store.save_policy("other", &two, None, t0()).await.expect("save another");
    check!(store.delete_policy("other", None).await.expect("delete"), "a delete without a version deletes");
    let left = store.list_policies().await.expect("list policies");
    check!(names(&left) == ["cas"], "deleting one policy leaves the others: {:?}", names(&left));
}

fn to_hold(key: &str, kind: &str, n: i64) -> NewHeldRequest {
    let body = serde_json::json!({"n": n, "text": "Grüße", "deep": {"list": [1, "two", null, 2.5]}});
    NewHeldRequest { key: key.into(), kind: kind.into(), body }
}

fn keys(claimed: &[HeldRequest]) -> Vec<&str> {
    claimed.iter().map(|r| r.key.as_str()).collect()
}

async fn held_requests(store: Arc<dyn Store>) {
    let lease = Duration::from_secs(300);
    let claim = |kind: &'static str, at: i64, limit: usize| {
        let store = store.clone();
        async move { store.claim_held_requests(kind, t0() + secs(at), limit, lease).await.expect("claim held requests") }
    };
    check!(claim("kommo", 10_000, 10).await.is_empty(), "a new store holds no request");
    let first = store.hold_request(&to_hold("k:a", "kommo", 1), t0(), lease).await.expect("hold");
    check!(first, "a request held for the first time is new");
    check!(claim("kommo", 299, 10).await.is_empty(), "a held request is not handed out while its lease runs");
    let again = store.hold_request(&to_hold("k:a", "kommo", 2), t0() + secs(400), lease).await.expect("hold again");
    check!(!again, "holding a key already held is not new");
    store.hold_request(&to_hold("k:b", "kommo", 3), t0() + secs(1), lease).await.expect("hold");
    store.hold_request(&to_hold("k:c", "other", 4), t0(), lease).await.expect("hold");

    let claimed = claim("kommo", 300, 10).await;
    let expected =
        HeldRequest { key: "k:a".into(), kind: "kommo".into(), body: to_hold("", "", 1).body, held_at: t0() };
    check!(
        claimed == [expected.clone()],
        "a request whose lease ended is handed out as first held (its first body and time), got {claimed:?}"
    );
    let next = claim("kommo", 301, 10).await;
    check!(keys(&next) == ["k:b"], "a claim renews the lease of what it hands out: got {:?}", keys(&next));
    let both = claim("kommo", 1000, 10).await;
    check!(keys(&both) == ["k:a", "k:b"], "claims hand out the first held first: got {:?}", keys(&both));
    check!(both[0] == expected, "a claimed request stays as held: {:?}", both[0]);
    let one = claim("kommo", 2000, 1).await;
    check!(keys(&one) == ["k:a"], "claims respect the limit: got {:?}", keys(&one));
    let other = claim("other", 2000, 10).await;
    check!(keys(&other) == ["k:c"], "claims hand out their own kind only: got {:?}", keys(&other));

    store.release_request("k:a").await.expect("release");
    store.release_request("k:a").await.expect("release again");
    store.release_request("k:none").await.expect("release a key not held");
    let left = claim("kommo", 10_000, 10).await;
    check!(keys(&left) == ["k:b"], "a released request is gone, the others stay: got {:?}", keys(&left));
    let anew = store.hold_request(&to_hold("k:a", "kommo", 5), t0() + secs(20_000), lease).await.expect("hold anew");
    check!(anew, "a released key is held anew as new");
    let anew = claim("kommo", 20_300, 10).await;
    check!(
        anew.iter().any(|r| r.key == "k:a" && r.body["n"] == 5 && r.held_at == t0() + secs(20_000)),
        "a key held anew has its new body and time: {anew:?}"
    );
}
