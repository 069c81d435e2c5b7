//! Link tracking through the runtime: rewritten content, unforgeable tokens, clicks as
//! statuses, and validation. tokio's paused clock; stub channels.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cascade_engine::plan::PlannedStep;
use cascade_engine::*;
use cascade_testkit::{StubChannel, caps};

const BASE: &str = "https://c.test/l/";
const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

struct Setup {
    engine: Engine,
    wa: StubChannel,
    sms: StubChannel,
    email: StubChannel,
}

fn email_caps() -> Capabilities {
    let mut c = Capabilities::text_only([AddressKind::Email], Status::Sent);
    c.buttons = true;
    c
}

fn setup_with(tracking: Option<LinkTracking>) -> Setup {
    let wa = StubChannel::new("whatsapp", caps::whatsapp());
    let sms = StubChannel::new("sms", caps::sms());
    let email = StubChannel::new("email", email_caps());
    let mut builder = Engine::builder()
        .connection(Connection::new("wa-1", wa.clone()))
        .connection(Connection::new("sms-1", sms.clone()))
        .connection(Connection::new("mail-1", email.clone()));
    if let Some(t) = tracking {
        builder = builder.link_tracking(t);
    }
    Setup { engine: builder.build().expect("engine"), wa, sms, email }
}

fn setup() -> Setup {
    setup_with(Some(LinkTracking::new(BASE, KEY)))
}

fn ann() -> Contact {
    Contact::with_phone("+15551234567").name("Ann").email("ann@example.test")
}

fn tracked(mut policy: Policy) -> Policy {
    policy.track_links = true;
    policy
}

/// Lets spawned tasks run (sends, results) without moving the paused clock.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// The tokens of the tracked links in `text`, in order.
fn tokens(text: &str) -> Vec<String> {
    text.match_indices(BASE)
        .map(|(i, _)| {
            text[i + BASE.len()..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
        })
        .collect()
}

async fn follow(engine: &Engine, token: &str) -> Option<String> {
    engine.follow_link(token).await.expect("follow")
}

async fn status(engine: &Engine, adapter: &str, pmid: &str, status: Status) {
    let update = StatusUpdate { provider_message_id: pmid.into(), status, at: None, error: None };
    engine.status(adapter, update).await.expect("status");
}

fn clicks(view: &CascadeView) -> usize {
    view.events.iter().filter(|e| matches!(e.kind, EventKind::Status { status: Status::Clicked, .. })).count()
}

#[tokio::test(start_paused = true)]
async fn links_in_text_become_tracked_urls_and_lead_back() {
    let s = setup();
    let text = "Hi {{contact.name}}! Your order: https://shop.test/o/1?a=1&b=2. Terms (https://shop.test/terms), \
                again: https://shop.test/o/1?a=1&b=2";
    let h = s
        .engine
        .submit(CascadeRequest::new(ann(), Message::text(text), tracked(Policy::chain(["whatsapp", "sms"]))))
        .await
        .expect("submit");
    settle().await;
    let sent = s.wa.sends()[0].content().text.clone();
    let t = tokens(&sent);
    assert_eq!(t.len(), 3, "{sent}");
    assert!(t.iter().all(|t| t.len() == 44), "{t:?}");
    assert_eq!(t[0], t[2], "the same URL is one link");
    assert_ne!(t[0], t[1]);
    assert_eq!(
        sent,
        format!("Hi Ann! Your order: {BASE}{}. Terms ({BASE}{}), again: {BASE}{}", t[0], t[1], t[2]),
        "punctuation around the links stays in the text"
    );
    assert!(!sent.contains("shop.test"), "no original URL is sent");

    // The plan keeps the originals; each step has its own tokens.
    let view = s.engine.get(h.id()).await.expect("get").expect("exists");
    let steps = &view.record.state.plan.steps;
    assert_eq!(steps[0].links, ["https://shop.test/o/1?a=1&b=2", "https://shop.test/terms"]);
    assert_eq!(steps[1].links, steps[0].links);
    let sms_tokens = tokens(&steps[1].content.text);
    assert_eq!(sms_tokens.len(), 3);
    assert!(sms_tokens.iter().all(|x| !t.contains(x)), "another step, other tokens");

    assert_eq!(s.engine.link_target(&t[1]).await.expect("target").as_deref(), Some("https://shop.test/terms"));
    assert_eq!(follow(&s.engine, &t[0]).await.as_deref(), Some("https://shop.test/o/1?a=1&b=2"));
    assert_eq!(follow(&s.engine, &sms_tokens[1]).await.as_deref(), Some("https://shop.test/terms"));
}

#[tokio::test(start_paused = true)]
async fn html_hrefs_buttons_and_template_parameters_are_tracked() {
    let s = setup();
    let mut message = Message::text("Your invoice: https://shop.test/inv/7");
    message.overrides.insert(
        "email".into(),
        ContentOverride {
            subject: Some("Invoice https://shop.test/inv/7".into()),
            html: Some(
                r#"<p>Your <a class="x" href="https://shop.test/inv/7?v=1&amp;d=2">invoice</a>, or <a href='mailto:a@shop.test'>write</a>. <img src="https://shop.test/logo.png"></p>"#
                    .into(),
            ),
            buttons: vec![Button { caption: "Pay".into(), url: "https://pay.test/7".into() }],
            ..ContentOverride::default()
        },
    );
    message.overrides.insert(
        "whatsapp".into(),
        ContentOverride {
            template: Some(ProviderTemplate {
                name: "invoice_https_link".into(),
                language: "en".into(),
                params: vec!["{{contact.name}}".into(), "https://shop.test/inv/7".into()],
            }),
            ..ContentOverride::default()
        },
    );
    let policy = tracked(Policy::new([Step::new("email"), Step::new("whatsapp")]));
    let h = s.engine.submit(CascadeRequest::new(ann(), message, policy)).await.expect("submit");
    settle().await;
    let mail = s.email.sends()[0].content().clone();
    let text = tokens(&mail.text);
    let html = mail.html.as_deref().expect("html");
    let href = tokens(html);
    let button = tokens(&mail.buttons[0].url);
    assert_eq!((text.len(), href.len(), button.len()), (1, 1, 1), "{mail:?}");
    assert_eq!(mail.buttons[0].url, format!("{BASE}{}", button[0]));
    assert!(html.contains(&format!(r#"href="{BASE}{}""#, href[0])), "{html}");
    assert!(html.contains("href='mailto:a@shop.test'") && html.contains(r#"src="https://shop.test/logo.png""#));
    assert_eq!(mail.subject.as_deref(), Some("Invoice https://shop.test/inv/7"), "subjects are left alone");
    assert_eq!(follow(&s.engine, &text[0]).await.as_deref(), Some("https://shop.test/inv/7"));
    assert_eq!(follow(&s.engine, &href[0]).await.as_deref(), Some("https://shop.test/inv/7?v=1&d=2"));
    assert_eq!(follow(&s.engine, &button[0]).await.as_deref(), Some("https://pay.test/7"));

    let view = s.engine.get(h.id()).await.expect("get").expect("exists");
    let wa = &view.record.state.plan.steps[1].content;
    let tpl = wa.template.as_ref().expect("template");
    assert_eq!(tpl.name, "invoice_https_link");
    assert_eq!(tpl.params[0], "Ann");
    assert_eq!(tokens(&tpl.params[1]).len(), 1, "{tpl:?}");
    assert_eq!(follow(&s.engine, &tokens(&tpl.params[1])[0]).await.as_deref(), Some("https://shop.test/inv/7"));
}

#[tokio::test(start_paused = true)]
async fn tokens_cannot_be_forged_or_moved_to_another_cascade() {
    let s = setup();
    let request = || {
        CascadeRequest::new(
            ann(),
            Message::text("Go https://shop.test/a and https://shop.test/b"),
            tracked(Policy::chain(["sms"])),
        )
    };
    let a = s.engine.submit(request()).await.expect("a");
    let b = s.engine.submit(request()).await.expect("b");
    settle().await;
    let sends = s.sms.sends();
    let ta = tokens(&sends[0].content().text);
    let tb = tokens(&sends[1].content().text);
    assert_eq!((ta.len(), tb.len()), (2, 2));
    assert_ne!(ta, tb);

    for i in 0..ta[0].len() {
        let mut chars: Vec<char> = ta[0].chars().collect();
        chars[i] = if chars[i] == 'x' { 'y' } else { 'x' };
        let forged: String = chars.into_iter().collect();
        assert_eq!(follow(&s.engine, &forged).await, None, "changed at {i}");
    }
    // A's signature on B's id, for the same link number.
    let bytes_a = URL_SAFE_NO_PAD.decode(&ta[0]).expect("base64");
    let bytes_b = URL_SAFE_NO_PAD.decode(&tb[0]).expect("base64");
    let mut moved = bytes_b[..16].to_vec();
    moved.extend_from_slice(&bytes_a[16..]);
    assert_eq!(follow(&s.engine, &URL_SAFE_NO_PAD.encode(&moved)).await, None);
    // A's id with the second link number and the first link's signature.
    let mut renumbered = bytes_a.clone();
    renumbered[16] = 1;
    assert_eq!(follow(&s.engine, &URL_SAFE_NO_PAD.encode(&renumbered)).await, None);
    let (zeros, padded) = ("A".repeat(44), format!("{}=", ta[0]));
    for junk in ["", "x", "../etc/passwd", "https://evil.test/", zeros.as_str(), padded.as_str()] {
        assert_eq!(follow(&s.engine, junk).await, None, "{junk:?}");
    }
    // The same token on an engine with another key.
    let other = setup_with(Some(LinkTracking::new(BASE, vec![1u8; 32])));
    assert_eq!(follow(&other.engine, &ta[0]).await, None);
    // And on one without link tracking.
    assert_eq!(follow(&setup_with(None).engine, &ta[0]).await, None);

    // The genuine ones still work, each for its own cascade.
    assert_eq!(follow(&s.engine, &ta[1]).await.as_deref(), Some("https://shop.test/b"));
    assert_eq!(follow(&s.engine, &tb[0]).await.as_deref(), Some("https://shop.test/a"));
    let va = s.engine.get(a.id()).await.expect("get").expect("a");
    let vb = s.engine.get(b.id()).await.expect("get").expect("b");
    assert_eq!((clicks(&va), clicks(&vb)), (1, 1));
}

fn click_policy(late_success_wins: bool) -> Policy {
    let mut policy = tracked(Policy::new([
        Step::new("whatsapp").until(Status::Clicked).timeout(Duration::from_secs(600)),
        Step::new("sms"),
    ]));
    policy.late_success_wins = late_success_wins;
    policy
}

fn offer() -> Message {
    Message::text("{{contact.name}}, 20% off today: https://shop.test/sale")
}

#[tokio::test(start_paused = true)]
async fn a_click_delivers_a_step_waiting_for_clicked() {
    let s = setup();
    let h = s.engine.submit(CascadeRequest::new(ann(), offer(), click_policy(true))).await.expect("submit");
    settle().await;
    let pmid = s.wa.accepted_ids()[0].clone();
    // Delivered and read are not enough for this step.
    status(&s.engine, "stub-whatsapp", &pmid, Status::Delivered).await;
    status(&s.engine, "stub-whatsapp", &pmid, Status::Read).await;
    tokio::time::sleep(Duration::from_secs(300)).await;
    settle().await;
    let view = s.engine.get(h.id()).await.expect("get").expect("exists");
    assert!(view.record.state.outcome.is_none(), "still waiting for a click");

    let token = tokens(&s.wa.sends()[0].content().text).remove(0);
    assert_eq!(follow(&s.engine, &token).await.as_deref(), Some("https://shop.test/sale"));
    let outcome = h.outcome().await.expect("outcome");
    assert!(
        matches!(outcome, Outcome::Delivered { step: 0, status: Status::Clicked, ref channel, .. } if channel.as_str() == "whatsapp"),
        "{outcome:?}"
    );
    settle().await;
    assert!(s.sms.sends().is_empty(), "no SMS after the click");
    let view = s.engine.get(h.id()).await.expect("get").expect("exists");
    assert_eq!(clicks(&view), 1);
    let attempt = &view.record.state.attempts[0];
    assert_eq!(attempt.highest, Some(Status::Clicked));

    // More clicks, after the outcome: still redirected; the first click stays the only one.
    for _ in 0..3 {
        assert_eq!(follow(&s.engine, &token).await.as_deref(), Some("https://shop.test/sale"));
    }
    let again = s.engine.get(h.id()).await.expect("get").expect("exists");
    assert_eq!(clicks(&again), 1);
    assert_eq!(again.record.state.outcome, Some(outcome));
}

#[tokio::test(start_paused = true)]
async fn without_a_click_the_cascade_falls_over_after_the_timeout() {
    let s = setup();
    let mut policy = click_policy(false);
    policy.steps[0].timeout = Some(Duration::from_secs(120));
    let h = s.engine.submit(CascadeRequest::new(ann(), offer(), policy)).await.expect("submit");
    settle().await;
    let pmid = s.wa.accepted_ids()[0].clone();
    status(&s.engine, "stub-whatsapp", &pmid, Status::Read).await;
    tokio::time::sleep(Duration::from_secs(119)).await;
    settle().await;
    assert!(s.sms.sends().is_empty(), "not before the step timeout");
    tokio::time::sleep(Duration::from_secs(2)).await;
    settle().await;
    assert_eq!(s.sms.sends().len(), 1, "no click: SMS was tried");
    let sms_text = s.sms.sends()[0].content().text.clone();
    assert_eq!(tokens(&sms_text).len(), 1, "{sms_text}");
    status(&s.engine, "stub-sms", &s.sms.accepted_ids()[0], Status::Delivered).await;
    let outcome = h.outcome().await.expect("outcome");
    assert!(matches!(outcome, Outcome::Delivered { step: 1, status: Status::Delivered, .. }), "{outcome:?}");
    let view = s.engine.get(h.id()).await.expect("get").expect("exists");
    assert!(
        view.events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::StepFailed { failure } if failure.reason.contains("no `clicked`")))
    );
}

#[tokio::test(start_paused = true)]
async fn a_late_click_on_an_earlier_step_wins_when_the_policy_says_so() {
    let s = setup();
    let mut policy = click_policy(true);
    policy.steps[0].timeout = Some(Duration::from_secs(60));
    let h = s.engine.submit(CascadeRequest::new(ann(), offer(), policy)).await.expect("submit");
    settle().await;
    tokio::time::sleep(Duration::from_secs(61)).await;
    settle().await;
    assert_eq!(s.sms.sends().len(), 1, "fell over to SMS");
    let token = tokens(&s.wa.sends()[0].content().text).remove(0);
    assert_eq!(follow(&s.engine, &token).await.as_deref(), Some("https://shop.test/sale"));
    let outcome = h.outcome().await.expect("outcome");
    assert!(matches!(outcome, Outcome::Delivered { step: 0, attempt: 1, status: Status::Clicked, .. }), "{outcome:?}");
}

#[tokio::test(start_paused = true)]
async fn a_click_proves_delivery_for_a_step_waiting_for_delivered() {
    let s = setup();
    let h = s
        .engine
        .submit(CascadeRequest::new(ann(), offer(), tracked(Policy::chain(["whatsapp", "sms"]))))
        .await
        .expect("submit");
    settle().await;
    let token = tokens(&s.wa.sends()[0].content().text).remove(0);
    follow(&s.engine, &token).await.expect("redirect");
    let outcome = h.outcome().await.expect("outcome");
    assert!(matches!(outcome, Outcome::Delivered { step: 0, status: Status::Clicked, .. }), "{outcome:?}");
}

#[tokio::test(start_paused = true)]
async fn a_click_after_the_outcome_is_recorded_but_changes_nothing() {
    let s = setup();
    let h = s
        .engine
        .submit(CascadeRequest::new(ann(), offer(), tracked(Policy::chain(["whatsapp", "sms"]))))
        .await
        .expect("submit");
    settle().await;
    status(&s.engine, "stub-whatsapp", &s.wa.accepted_ids()[0], Status::Delivered).await;
    let outcome = h.outcome().await.expect("outcome");
    assert!(matches!(outcome, Outcome::Delivered { step: 0, status: Status::Delivered, .. }), "{outcome:?}");
    let token = tokens(&s.wa.sends()[0].content().text).remove(0);
    assert_eq!(follow(&s.engine, &token).await.as_deref(), Some("https://shop.test/sale"));
    let view = s.engine.get(h.id()).await.expect("get").expect("exists");
    assert_eq!(clicks(&view), 1, "the click is on the timeline");
    assert_eq!(view.record.state.attempts[0].highest, Some(Status::Clicked));
    assert_eq!(view.record.state.outcome, Some(outcome), "the outcome stays");
    let finished = view.events.iter().filter(|e| matches!(e.kind, EventKind::Finished { .. })).count();
    assert_eq!(finished, 1);
}

#[tokio::test(start_paused = true)]
async fn a_click_on_a_step_that_was_never_accepted_still_redirects() {
    let s = setup();
    s.wa.script("+15551234567", [Err(SendError::unreachable("131026", "not a WhatsApp user"))]);
    let h = s
        .engine
        .submit(CascadeRequest::new(ann(), offer(), tracked(Policy::chain(["whatsapp", "sms"]))))
        .await
        .expect("submit");
    settle().await;
    assert_eq!(s.sms.sends().len(), 1);
    let token = tokens(&s.wa.sends()[0].content().text).remove(0);
    assert_eq!(follow(&s.engine, &token).await.as_deref(), Some("https://shop.test/sale"));
    let view = s.engine.get(h.id()).await.expect("get").expect("exists");
    assert_eq!(clicks(&view), 0, "nothing to credit it to");
    assert!(view.record.state.outcome.is_none());
}

#[tokio::test(start_paused = true)]
async fn link_target_does_not_record_a_click() {
    let s = setup();
    let h = s.engine.submit(CascadeRequest::new(ann(), offer(), click_policy(true))).await.expect("submit");
    settle().await;
    let token = tokens(&s.wa.sends()[0].content().text).remove(0);
    assert_eq!(s.engine.link_target(&token).await.expect("target").as_deref(), Some("https://shop.test/sale"));
    let view = s.engine.get(h.id()).await.expect("get").expect("exists");
    assert_eq!(clicks(&view), 0);
    assert!(view.record.state.outcome.is_none());
}

#[tokio::test(start_paused = true)]
async fn targets_outside_ascii_are_percent_encoded() {
    let s = setup();
    let h = s
        .engine
        .submit(CascadeRequest::new(
            ann(),
            Message::text("Скидки: https://магазин.рф/акция."),
            tracked(Policy::chain(["sms"])),
        ))
        .await
        .expect("submit");
    settle().await;
    let token = tokens(&s.sms.sends()[0].content().text).remove(0);
    let target = follow(&s.engine, &token).await.expect("redirect");
    assert!(target.is_ascii() && target.starts_with("https://%D0%BC"), "{target}");
    let view = s.engine.get(h.id()).await.expect("get").expect("exists");
    assert_eq!(view.record.state.plan.steps[0].links, ["https://магазин.рф/акция"]);
}

#[tokio::test(start_paused = true)]
async fn track_links_needs_link_tracking_on_the_engine() {
    let s = setup_with(None);
    let err = s.engine.submit(CascadeRequest::new(ann(), offer(), click_policy(true))).await.expect_err("refused");
    let SubmitError::Invalid(errors) = err else { panic!("not a validation error: {err}") };
    let e = errors.iter().find(|e| e.field == "policy.track_links").expect("names policy.track_links");
    assert!(e.message.contains("link tracking is not configured on this server"), "{e}");
    assert!(s.wa.sends().is_empty() && s.sms.sends().is_empty(), "nothing sent");
    // Without `track_links` the same engine sends links as they are.
    s.engine.submit(CascadeRequest::new(ann(), offer(), Policy::chain(["sms"]))).await.expect("submit");
    settle().await;
    assert_eq!(s.sms.sends()[0].content().text, "Ann, 20% off today: https://shop.test/sale");
}

#[tokio::test(start_paused = true)]
async fn waiting_for_clicked_needs_a_link_in_the_step() {
    let s = setup();
    let err = s
        .engine
        .submit(CascadeRequest::new(ann(), Message::text("no links here"), click_policy(true)))
        .await
        .expect_err("refused");
    let SubmitError::Invalid(errors) = err else { panic!("not a validation error: {err}") };
    assert!(
        errors.iter().any(|e| e.field == "policy.steps[0].until" && e.message.contains("no http(s) link")),
        "{errors:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn bad_settings_are_refused_when_the_engine_is_built() {
    let sms = StubChannel::new("sms", caps::sms());
    let build =
        |t: LinkTracking| Engine::builder().connection(Connection::new("sms-1", sms.clone())).link_tracking(t).build();
    let short = build(LinkTracking::new(BASE, vec![0u8; 16])).expect_err("short key");
    assert!(matches!(short, BuildError::LinkTracking(ref m) if m.contains("at least 32")), "{short}");
    let relative = build(LinkTracking::new("/l/", KEY)).expect_err("relative base");
    assert!(matches!(relative, BuildError::LinkTracking(_)), "{relative}");
    // A base without a trailing slash gets one.
    let engine = build(LinkTracking::new("https://c.test/l", KEY)).expect("engine");
    engine
        .submit(CascadeRequest::new(ann(), Message::text("https://shop.test/x"), tracked(Policy::chain(["sms"]))))
        .await
        .expect("submit");
    settle().await;
    let text = sms.sends()[0].content().text.clone();
    assert_eq!(tokens(&text).len(), 1, "{text}");
    assert_eq!(follow(&engine, &tokens(&text)[0]).await.as_deref(), Some("https://shop.test/x"));
}

#[test]
fn the_key_is_not_printed() {
    let shown = format!("{:?}", Engine::builder().link_tracking(LinkTracking::new(BASE, KEY)));
    assert!(shown.contains("redacted") && !shown.contains("0123456789abcdef"), "{shown}");
}

#[test]
fn steps_stored_without_links_still_load() {
    let json = r#"{"channel": "sms", "until": "delivered", "timeout": "60s", "content": {"text": "hi"}}"#;
    let step: PlannedStep = serde_json::from_str(json).expect("an older stored step");
    assert!(step.links.is_empty());
    let back = serde_json::to_value(&step).expect("json");
    assert!(back.get("links").is_none(), "no links, no key: stored plans keep their shape");
    let mut tracked_step = step.clone();
    tracked_step.links = vec!["https://shop.test/a".into()];
    let round: PlannedStep = serde_json::from_value(serde_json::to_value(&tracked_step).expect("json")).expect("load");
    assert_eq!(round, tracked_step);
}

/// A [`MemoryStore`] that counts the cascades read and written back.
#[derive(Debug, Default)]
struct Counting {
    inner: MemoryStore,
    loads: std::sync::atomic::AtomicUsize,
    saves: std::sync::atomic::AtomicUsize,
}

impl Counting {
    /// (loads, saves) so far.
    fn counts(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::SeqCst;
        (self.loads.load(SeqCst), self.saves.load(SeqCst))
    }
}

#[async_trait::async_trait]
impl Store for Counting {
    async fn create(&self, r: store::CascadeRecord, e: Vec<Event>) -> Result<store::Created, StoreError> {
        self.inner.create(r, e).await
    }
    async fn load(&self, id: CascadeId) -> Result<Option<store::CascadeRecord>, StoreError> {
        self.loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.load(id).await
    }
    async fn save(&self, u: &store::CascadeUpdate) -> Result<u64, StoreError> {
        self.saves.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.save(u).await
    }
    async fn events(&self, id: CascadeId) -> Result<Vec<Event>, StoreError> {
        self.inner.events(id).await
    }
    async fn find_attempt(&self, adapter: &str, pmid: &str) -> Result<Option<store::AttemptRef>, StoreError> {
        self.inner.find_attempt(adapter, pmid).await
    }
    async fn claim_due(
        &self,
        now: Timestamp,
        n: usize,
        lease: Duration,
    ) -> Result<Vec<store::CascadeRecord>, StoreError> {
        self.inner.claim_due(now, n, lease).await
    }
    async fn next_wake(&self) -> Result<Option<Timestamp>, StoreError> {
        self.inner.next_wake().await
    }
    async fn running_for_address(&self, c: &ChannelName, a: &str) -> Result<Vec<CascadeId>, StoreError> {
        self.inner.running_for_address(c, a).await
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
async fn a_click_reads_its_cascade_once() {
    let store = std::sync::Arc::new(Counting::default());
    let wa = StubChannel::new("whatsapp", caps::whatsapp());
    let engine = Engine::builder()
        .store(store.clone())
        .connection(Connection::new("wa-1", wa.clone()))
        .link_tracking(LinkTracking::new(BASE, KEY))
        .build()
        .expect("engine");
    let h =
        engine.submit(CascadeRequest::new(ann(), offer(), tracked(Policy::chain(["whatsapp"])))).await.expect("submit");
    settle().await;
    status(&engine, "stub-whatsapp", &wa.accepted_ids()[0], Status::Delivered).await;
    h.outcome().await.expect("outcome");
    // A finished cascade is not kept in the engine's cache: the click must go to the store.
    let token = tokens(&wa.sends()[0].content().text).remove(0);
    let (loads, saves) = store.counts();
    assert_eq!(follow(&engine, &token).await.as_deref(), Some("https://shop.test/sale"));
    assert_eq!(store.counts(), (loads + 1, saves + 1), "the click is applied to the record it read");
    assert_eq!(follow(&engine, &token).await.as_deref(), Some("https://shop.test/sale"));
    assert_eq!(store.counts(), (loads + 2, saves + 1), "a repeated click costs one read and no write");
    let view = engine.get(h.id()).await.expect("get").expect("exists");
    assert_eq!(clicks(&view), 1);
}
