//! The tokio runtime: real tasks, the in-memory store, stub and mock channels, and tokio's
//! paused clock for every wait (no real sleeping).

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use cascade_engine::*;
use cascade_testkit::{StubChannel, caps};

struct Setup {
    engine: Engine,
    wa: StubChannel,
    tg: StubChannel,
    sms: StubChannel,
}

fn setup() -> Setup {
    let wa = StubChannel::new("whatsapp", caps::whatsapp());
    let tg = StubChannel::new("telegram", caps::telegram());
    let sms = StubChannel::new("sms", caps::sms());
    let engine = Engine::builder()
        .connection(Connection::new("wa-1", wa.clone()))
        .connection(Connection::new("tg-1", tg.clone()))
        .connection(Connection::new("sms-1", sms.clone()).price(Cost::from_micros(7900)))
        .build()
        .expect("engine");
    Setup { engine, wa, tg, sms }
}

fn ann() -> Contact {
    Contact::with_phone("+15551234567").name("Ann").address("telegram", "777")
}

fn request() -> CascadeRequest {
    CascadeRequest::new(ann(), Message::text("Hi {{contact.name}}"), Policy::chain(["whatsapp", "telegram", "sms"]))
}

/// Lets spawned tasks run (sends, results) without moving the paused clock.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

async fn delivered(engine: &Engine, adapter: &str, pmid: &str, status: Status) -> StatusMatch {
    let update = StatusUpdate { provider_message_id: pmid.into(), status, at: None, error: None };
    engine.status(adapter, update).await.expect("status")
}

#[tokio::test(start_paused = true)]
async fn falls_over_from_whatsapp_to_telegram_and_delivers() {
    let s = setup();
    s.wa.script("+15551234567", [Err(SendError::unreachable("131026", "not a WhatsApp user"))]);
    let h = s.engine.submit(request()).await.expect("submit");
    settle().await;
    assert_eq!(s.wa.sends().len(), 1);
    assert_eq!(s.tg.sends().len(), 1, "fell over at once to telegram");
    assert_eq!(s.tg.sends()[0].content().text, "Hi Ann");
    assert_eq!(s.tg.sends()[0].request.address.value, "777");
    let pmid = s.tg.accepted_ids()[0].clone();
    // Telegram reports only `sent`: that is its success.
    assert!(matches!(
        delivered(&s.engine, "stub-telegram", &pmid, Status::Sent).await,
        StatusMatch::Matched { attempt: 2, .. }
    ));
    let outcome = h.outcome().await.expect("outcome");
    assert!(
        matches!(outcome, Outcome::Delivered { ref channel, status: Status::Sent, .. } if channel.as_str() == "telegram")
    );
    assert!(s.sms.sends().is_empty(), "nothing sent after the outcome");
    let view = s.engine.get(h.id()).await.expect("get").expect("exists");
    assert!(view.events.iter().any(|e| matches!(e.kind, EventKind::StepFailed { .. })));
    assert!(matches!(view.events.last().map(|e| &e.kind), Some(EventKind::Finished { .. })));
}

#[tokio::test(start_paused = true)]
async fn silence_times_out_and_falls_over_with_the_paused_clock() {
    let s = setup();
    let mut policy = Policy::new([Step::new("whatsapp").timeout(Duration::from_secs(60)), Step::new("sms")]);
    policy.late_success_wins = false;
    let h = s.engine.submit(CascadeRequest::new(ann(), Message::text("hello"), policy)).await.expect("submit");
    settle().await;
    assert_eq!(s.wa.sends().len(), 1);
    tokio::time::sleep(Duration::from_secs(59)).await;
    settle().await;
    assert!(s.sms.sends().is_empty(), "not before the step timeout");
    tokio::time::sleep(Duration::from_secs(2)).await;
    settle().await;
    assert_eq!(s.sms.sends().len(), 1, "the step timed out and SMS was tried");
    let pmid = s.sms.accepted_ids()[0].clone();
    delivered(&s.engine, "stub-sms", &pmid, Status::Delivered).await;
    let outcome = h.outcome().await.expect("outcome");
    assert!(matches!(outcome, Outcome::Delivered { ref channel, .. } if channel.as_str() == "sms"));
    let view = s.engine.get(h.id()).await.expect("get").expect("exists");
    assert_eq!(view.record.state.cost(), Cost::from_micros(7900));
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_after_backoff() {
    let s = setup();
    s.wa.script(
        "+15551234567",
        [Err(SendError::transient("http_503", "down")), Err(SendError::transient("http_503", "down"))],
    );
    let h = s.engine.submit(request()).await.expect("submit");
    settle().await;
    assert_eq!(s.wa.sends().len(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    settle().await;
    assert_eq!(s.wa.sends().len(), 2, "retried after 1 s");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    settle().await;
    assert_eq!(s.wa.sends().len(), 3, "retried after 2 s more");
    let pmid = s.wa.accepted_ids()[0].clone();
    delivered(&s.engine, "stub-whatsapp", &pmid, Status::Delivered).await;
    assert!(h.outcome().await.expect("outcome").is_delivered());
    assert!(s.tg.sends().is_empty() && s.sms.sends().is_empty());
}

#[tokio::test(start_paused = true)]
async fn idempotent_start_returns_the_same_cascade_and_sends_nothing_new() {
    let s = setup();
    let req = request().idempotency_key("order-42");
    let first = s.engine.submit(req.clone()).await.expect("first");
    let again = s.engine.submit(req.clone()).await.expect("repeat");
    assert_eq!(first.id(), again.id());
    assert!(again.is_existing() && !first.is_existing());
    settle().await;
    assert_eq!(s.wa.sends().len(), 1, "exactly one send for two identical requests");
    let mut different = req;
    different.message = Message::text("something else");
    let err = s.engine.submit(different).await.expect_err("conflict");
    assert!(matches!(err, SubmitError::IdempotencyConflict { existing, .. } if existing == first.id()), "{err}");
}

#[tokio::test(start_paused = true)]
async fn invalid_requests_store_and_send_nothing() {
    let s = setup();
    let bad = CascadeRequest::new(ann(), Message::text("Hi {{deal.name}}"), Policy::chain(["whatsapp"]));
    let err = s.engine.submit(bad).await.expect_err("invalid");
    let SubmitError::Invalid(errors) = err else { panic!("wrong error") };
    assert_eq!(errors[0].field, "message.text");
    assert!(errors[0].message.contains("deal.name"));
    settle().await;
    assert!(s.wa.sends().is_empty());
    let listed = s.engine.store().list(&store::ListFilter { limit: 10, ..Default::default() }).await.expect("list");
    assert!(listed.is_empty());
}

#[tokio::test(start_paused = true)]
async fn cancel_and_reply() {
    let s = setup();
    let h = s.engine.submit(request()).await.expect("submit");
    settle().await;
    assert!(s.engine.cancel(h.id()).await.expect("cancel"));
    assert_eq!(h.outcome().await.expect("outcome"), Outcome::Cancelled);
    assert!(!s.engine.cancel(h.id()).await.expect("cancel again"), "already ended");

    let h2 = s.engine.submit(request()).await.expect("submit");
    settle().await;
    let stopped = s
        .engine
        .inbound(&"wa-1".into(), InboundMessage { from: "+15551234567".into(), text: Some("yes!".into()), at: None })
        .await
        .expect("inbound");
    assert_eq!(stopped, vec![h2.id()]);
    assert!(matches!(h2.outcome().await.expect("outcome"), Outcome::Delivered { status: Status::Replied, .. }));
    tokio::time::sleep(Duration::from_secs(600)).await;
    settle().await;
    assert!(s.tg.sends().is_empty(), "a reply stops the chain");

    // The reply made an active WhatsApp conversation: the next cascade to Ann starts there,
    // even though the policy puts WhatsApp last.
    let h3 = s
        .engine
        .submit(CascadeRequest::new(ann(), Message::text("again"), Policy::chain(["sms", "whatsapp"])))
        .await
        .expect("submit");
    settle().await;
    let view = s.engine.get(h3.id()).await.expect("get").expect("exists");
    assert_eq!(view.record.state.attempts[0].channel.as_str(), "whatsapp");
    // The adapter is told the window is open (WhatsApp may send free text, not its template);
    // the first send to Ann, before she wrote, was told it was closed.
    let sends = s.wa.sends();
    assert!(!sends[0].request.conversation_open, "no conversation before the reply");
    assert!(sends.last().expect("a send").request.conversation_open, "the reply opened the window");
}

#[tokio::test(start_paused = true)]
async fn a_status_that_beats_the_send_answer_is_held_and_applied() {
    // A channel that answers only when told, so the status webhook can arrive first.
    #[derive(Debug)]
    struct Slow(ChannelInfo, Arc<tokio::sync::Notify>);
    #[async_trait::async_trait]
    impl Channel for Slow {
        fn info(&self) -> &ChannelInfo {
            &self.0
        }
        async fn send(&self, _: &SendRequest) -> Result<Accepted, SendError> {
            self.1.notified().await;
            Ok(Accepted::new("slow-1"))
        }
    }
    let gate = Arc::new(tokio::sync::Notify::new());
    let info = ChannelInfo { channel: "sms".into(), adapter: "slow".into(), capabilities: caps::sms() };
    let engine = Engine::builder().connection(Connection::new("s", Slow(info, gate.clone()))).build().expect("engine");
    let h =
        engine.submit(CascadeRequest::new(ann(), Message::text("x"), Policy::chain(["sms"]))).await.expect("submit");
    settle().await;
    assert_eq!(delivered(&engine, "slow", "slow-1", Status::Delivered).await, StatusMatch::Unmatched);
    gate.notify_one();
    settle().await;
    assert!(h.outcome().await.expect("outcome").is_delivered(), "the held status was applied after the answer");
}

#[tokio::test(start_paused = true)]
async fn mocked_channel_is_called_exactly_once_with_the_rendered_message() {
    let mut mock = MockChannel::new();
    let info = ChannelInfo { channel: "sms".into(), adapter: "mock-sms".into(), capabilities: caps::sms() };
    mock.expect_info().return_const(info);
    mock.expect_send()
        .withf(|r| r.address.value == "+15551234567" && r.content.text == "Code 1234" && r.attempt == 1)
        .times(1)
        .returning(|_| Err(SendError::rejected("30007", "carrier filtering")));
    let engine = Engine::builder().connection(Connection::new("m", mock)).build().expect("engine");
    let req = CascadeRequest::new(ann(), Message::text("Code {{code}}"), Policy::chain(["sms"]))
        .variables(serde_json::json!({"code": 1234}));
    let h = engine.submit(req).await.expect("submit");
    let outcome = h.outcome().await.expect("outcome");
    let Outcome::Failed { steps } = outcome else { panic!("expected failed") };
    assert_eq!(steps[0].class, Some(ErrorClass::Rejected));
}

#[tokio::test(start_paused = true)]
async fn events_stream_and_graceful_shutdown() {
    let s = setup();
    let mut events = s.engine.events();
    let h = s.engine.submit(request()).await.expect("submit");
    settle().await;
    let first = events.recv().await.expect("event");
    assert_eq!(first.cascade, h.id());
    assert!(matches!(first.event.kind, EventKind::Created));
    s.engine.shutdown(Duration::from_secs(5)).await;
    let err = s.engine.submit(request()).await.expect_err("stopped");
    assert!(matches!(err, SubmitError::ShuttingDown));
}

#[tokio::test(start_paused = true)]
async fn retention_deletes_finished_cascades_after_their_age_and_keeps_running_ones() {
    let wa = StubChannel::new("whatsapp", caps::whatsapp());
    let config = EngineConfig {
        retention: Some(Duration::from_secs(7 * 86_400)),
        retention_interval: Duration::from_secs(3600),
        // Nothing else is due: keep the scheduler from waking every second for a week.
        poll_interval: Duration::from_secs(3600),
        ..EngineConfig::default()
    };
    let engine =
        Engine::builder().connection(Connection::new("wa-1", wa.clone())).config(config).build().expect("engine");
    let mut p = Policy::new([Step::new("whatsapp").timeout(Duration::from_secs(30 * 86_400))]);
    p.ttl = Some(Duration::from_secs(40 * 86_400));
    let done = engine.submit(CascadeRequest::new(ann(), Message::text("a"), p.clone())).await.expect("submit");
    let running = engine.submit(CascadeRequest::new(ann(), Message::text("b"), p)).await.expect("submit");
    settle().await;
    assert!(engine.cancel(done.id()).await.expect("cancel"));

    tokio::time::sleep(Duration::from_secs(6 * 86_400)).await;
    settle().await;
    assert!(engine.get(done.id()).await.expect("get").is_some(), "younger than the retention age: kept");

    tokio::time::sleep(Duration::from_secs(2 * 86_400)).await;
    settle().await;
    assert!(engine.get(done.id()).await.expect("get").is_none(), "older than the retention age: deleted");
    let view = engine.get(running.id()).await.expect("get").expect("a running cascade is never deleted");
    assert!(view.record.state.outcome.is_none());
}

/// The in-memory store with misbehaviours for tests: `first_lookup_misses` makes its first
/// provider-id lookup miss, as it does when the lookup runs just before the send's answer is
/// committed (and that answer's replay of held statuses has already run); `slow_saves`
/// answers each save that long after it is committed, as a database whose acknowledgement
/// is slow; the next `failing_saves` saves fail, as while the database is down;
/// `lookups_find` answers every provider-id lookup with that attempt, as an index keyed by a
/// hash would for two ids sharing one; `gone_by_address` is added to every address lookup's
/// answer, as an index row whose cascade is no longer stored would be.
#[derive(Debug, Default)]
struct OddStore {
    inner: MemoryStore,
    gone_by_address: Option<CascadeId>,
    first_lookup_misses: std::sync::atomic::AtomicBool,
    lookups_find: std::sync::Mutex<Option<store::AttemptRef>>,
    slow_saves: Duration,
    failing_saves: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl Store for OddStore {
    async fn create(&self, r: store::CascadeRecord, e: Vec<Event>) -> Result<store::Created, StoreError> {
        self.inner.create(r, e).await
    }
    async fn load(&self, id: CascadeId) -> Result<Option<store::CascadeRecord>, StoreError> {
        self.inner.load(id).await
    }
    async fn save(&self, u: &store::CascadeUpdate) -> Result<u64, StoreError> {
        let fail = self.failing_saves.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)).is_ok();
        if fail {
            return Err(StoreError::Unavailable("the database is down".into()));
        }
        let saved = self.inner.save(u).await;
        tokio::time::sleep(self.slow_saves).await;
        saved
    }
    async fn events(&self, id: CascadeId) -> Result<Vec<Event>, StoreError> {
        self.inner.events(id).await
    }
    async fn find_attempt(&self, adapter: &str, pmid: &str) -> Result<Option<store::AttemptRef>, StoreError> {
        if self.first_lookup_misses.swap(false, SeqCst) {
            return Ok(None);
        }
        if let Some(found) = *self.lookups_find.lock().expect("lock") {
            return Ok(Some(found));
        }
        self.inner.find_attempt(adapter, pmid).await
    }
    async fn claim_due(
        &self,
        now: Timestamp,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<store::CascadeRecord>, StoreError> {
        self.inner.claim_due(now, limit, lease).await
    }
    async fn next_wake(&self) -> Result<Option<Timestamp>, StoreError> {
        self.inner.next_wake().await
    }
    async fn running_for_address(&self, c: &ChannelName, a: &str) -> Result<Vec<CascadeId>, StoreError> {
        let mut ids: Vec<CascadeId> = self.gone_by_address.into_iter().collect();
        ids.extend(self.inner.running_for_address(c, a).await?);
        Ok(ids)
    }
    async fn touch_conversation(&self, c: store::Conversation) -> Result<(), StoreError> {
        self.inner.touch_conversation(c).await
    }
    async fn conversations(&self, a: &[(ChannelName, String)]) -> Result<Vec<store::Conversation>, StoreError> {
        self.inner.conversations(a).await
    }
    async fn list(&self, f: &store::ListFilter) -> Result<Vec<store::CascadeRecord>, StoreError> {
        self.inner.list(f).await
    }
    async fn claim_outbox(&self, n: Timestamp, l: usize, d: Duration) -> Result<Vec<store::OutboxItem>, StoreError> {
        self.inner.claim_outbox(n, l, d).await
    }
    async fn outbox_result(&self, id: u64, r: Result<(), (String, Option<Timestamp>)>) -> Result<(), StoreError> {
        self.inner.outbox_result(id, r).await
    }
    async fn dead_letters(&self, before: Option<u64>, limit: usize) -> Result<Vec<store::OutboxItem>, StoreError> {
        self.inner.dead_letters(before, limit).await
    }
    async fn outbox_counts(&self) -> Result<store::OutboxCounts, StoreError> {
        self.inner.outbox_counts().await
    }
    async fn purge_finished(&self, before: Timestamp, limit: usize) -> Result<usize, StoreError> {
        self.inner.purge_finished(before, limit).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_reply_reaches_the_running_cascade_past_an_address_whose_cascade_is_gone() {
    let wa = StubChannel::new("whatsapp", caps::whatsapp());
    let store = Arc::new(OddStore { gone_by_address: Some(CascadeId::new()), ..OddStore::default() });
    let engine =
        Engine::builder().store(store.clone()).connection(Connection::new("wa-1", wa.clone())).build().expect("engine");
    let h = engine
        .submit(CascadeRequest::new(ann(), Message::text("Hi"), Policy::chain(["whatsapp"])))
        .await
        .expect("submit");
    settle().await;
    let stopped = engine
        .inbound(&"wa-1".into(), InboundMessage { from: "+15551234567".into(), text: Some("yes".into()), at: None })
        .await
        .expect("a missing cascade is passed over, not an error");
    assert_eq!(stopped, vec![h.id()]);
    assert!(matches!(h.outcome().await.expect("outcome"), Outcome::Delivered { status: Status::Replied, .. }));
}

#[tokio::test(start_paused = true)]
async fn a_status_whose_lookup_races_the_send_answer_is_not_stranded() {
    let sms = StubChannel::new("sms", caps::sms());
    let store = Arc::new(OddStore { first_lookup_misses: true.into(), ..OddStore::default() });
    let engine =
        Engine::builder().store(store).connection(Connection::new("sms-1", sms.clone())).build().expect("engine");
    let h =
        engine.submit(CascadeRequest::new(ann(), Message::text("x"), Policy::chain(["sms"]))).await.expect("submit");
    settle().await;
    let pmid = sms.accepted_ids()[0].clone();
    // The answer is recorded; the webhook's first lookup misses it all the same.
    let matched = delivered(&engine, "stub-sms", &pmid, Status::Delivered).await;
    assert!(matches!(matched, StatusMatch::Matched { attempt: 1, .. }), "got {matched:?}");
    let outcome = tokio::time::timeout(Duration::from_secs(5), h.outcome()).await;
    assert!(
        outcome.is_ok_and(|o| o.expect("outcome").is_delivered()),
        "delivered at once, not after the step's timeout"
    );
}

#[tokio::test(start_paused = true)]
async fn a_status_is_not_applied_to_an_attempt_with_another_provider_id() {
    let sms = StubChannel::new("sms", caps::sms());
    let store = Arc::new(OddStore::default());
    let engine = Engine::builder()
        .store(store.clone())
        .connection(Connection::new("sms-1", sms.clone()))
        .build()
        .expect("engine");
    let submit = || CascadeRequest::new(ann(), Message::text("x"), Policy::chain(["sms"]));
    let (a, b) = (engine.submit(submit()).await.expect("submit"), engine.submit(submit()).await.expect("submit"));
    settle().await;
    let b_pmid = sms.accepted_ids()[1].clone();
    // The store's index sends B's provider id to A's attempt.
    *store.lookups_find.lock().expect("lock") = Some(store::AttemptRef { cascade: a.id(), attempt: 1 });
    delivered(&engine, "stub-sms", &b_pmid, Status::Delivered).await;
    settle().await;
    let a_view = engine.get(a.id()).await.expect("get").expect("exists");
    assert!(a_view.record.state.outcome.is_none(), "A is not delivered by B's status");
    let a_statuses: Vec<Status> = a_view.record.state.attempts[0].statuses.iter().map(|r| r.status).collect();
    assert!(!a_statuses.contains(&Status::Delivered), "nor is the status recorded on A: {a_statuses:?}");
    let b_view = engine.get(b.id()).await.expect("get").expect("exists");
    assert!(b_view.record.state.outcome.is_none());
}

/// A webhook request whose client hangs up while the status's transition is being saved (the
/// store commits, then is slow to say so) does not strand the cascade: the transition's send
/// to the next channel is made all the same, and the cascade goes on.
#[tokio::test(start_paused = true)]
async fn a_status_whose_caller_hangs_up_mid_save_still_acts() {
    let (sms, wa) = (StubChannel::new("sms", caps::sms()), StubChannel::new("whatsapp", caps::whatsapp()));
    let store = Arc::new(OddStore { slow_saves: Duration::from_millis(200), ..OddStore::default() });
    let engine = Engine::builder()
        .store(store)
        .connection(Connection::new("sms-1", sms.clone()))
        .connection(Connection::new("wa-1", wa.clone()))
        .build()
        .expect("engine");
    let h = engine
        .submit(CascadeRequest::new(ann(), Message::text("x"), Policy::chain(["sms", "whatsapp"])))
        .await
        .expect("submit");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pmid = sms.accepted_ids()[0].clone();
    let failed = StatusUpdate {
        provider_message_id: pmid,
        status: Status::Failed,
        at: None,
        error: Some(SendError::unreachable("30003", "unreachable handset")),
    };
    // The caller gives up after 10 ms, while the save is still answering.
    let gave_up = tokio::time::timeout(Duration::from_millis(10), engine.status("stub-sms", failed)).await;
    assert!(gave_up.is_err(), "the status call was still running when its caller left");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(wa.sends().len(), 1, "the fall-over to WhatsApp was sent");
    let pmid = wa.accepted_ids()[0].clone();
    delivered(&engine, "stub-whatsapp", &pmid, Status::Delivered).await;
    let outcome = tokio::time::timeout(Duration::from_secs(5), h.outcome()).await.expect("an outcome").expect("ok");
    assert!(outcome.is_delivered(), "{outcome:?}");
}

/// A send's answer that cannot be written at once (the database down for longer than a few
/// retries) is written when the store takes it again: the attempt ends accepted, not lost.
#[tokio::test(start_paused = true)]
async fn a_send_result_is_recorded_once_the_store_is_back() {
    let sms = StubChannel::new("sms", caps::sms());
    // Ten failed writes take the backoff (50 ms doubling, up to 2 s) past ten seconds.
    let store = Arc::new(OddStore { failing_saves: 10.into(), ..OddStore::default() });
    let engine = Engine::builder()
        .store(store.clone())
        .connection(Connection::new("sms-1", sms.clone()))
        .build()
        .expect("engine");
    let h =
        engine.submit(CascadeRequest::new(ann(), Message::text("x"), Policy::chain(["sms"]))).await.expect("submit");
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(store.failing_saves.load(SeqCst), 0, "every failing write was tried");
    let view = engine.get(h.id()).await.expect("get").expect("the cascade");
    let attempt = &view.record.state.attempts[0];
    assert_eq!(attempt.provider_message_id.as_deref(), Some(sms.accepted_ids()[0].as_str()), "{attempt:?}");
    assert_eq!(sms.sends().len(), 1, "sent once");
}

/// Rule 7: a reply on a channel the policy does not use stops the chain too, when it comes
/// from the contact's address there (Telegram chat 777 for an SMS-then-WhatsApp cascade);
/// a message from someone else on that channel stops nothing.
#[tokio::test(start_paused = true)]
async fn a_reply_on_a_channel_outside_the_policy_stops_the_chain() {
    let s = setup();
    let policy = Policy::new([Step::new("sms").timeout(Duration::from_secs(60)), Step::new("whatsapp")]);
    let h = s.engine.submit(CascadeRequest::new(ann(), Message::text("Hi"), policy)).await.expect("submit");
    settle().await;
    let from = |who: &str| InboundMessage { from: who.into(), text: Some("yes".into()), at: None };
    let stopped = s.engine.inbound(&"tg-1".into(), from("888")).await.expect("inbound");
    assert!(stopped.is_empty(), "another Telegram chat stops nothing");
    let stopped = s.engine.inbound(&"tg-1".into(), from("777")).await.expect("inbound");
    assert_eq!(stopped, vec![h.id()]);
    assert!(matches!(h.outcome().await.expect("outcome"), Outcome::Delivered { status: Status::Replied, .. }));
    tokio::time::sleep(Duration::from_secs(120)).await;
    settle().await;
    assert!(s.wa.sends().is_empty(), "the chain stopped before WhatsApp");
}
