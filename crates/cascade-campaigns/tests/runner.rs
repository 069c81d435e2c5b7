//! The campaign runner against the engine with stub channels: rate, window and end across
//! midnight and a DST change (paused clock), pause and resume, a restart mid-campaign,
//! refused recipients, transactional cascades ahead of campaign sends, and progress.

use std::collections::{BTreeMap, HashSet};
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use cascade_campaigns::export::{self, ExportKind};
use cascade_campaigns::{CampaignSpec, Campaigns, CampaignsConfig, NewCampaign, Schedule};
use cascade_engine::clock::TokioClock;
use cascade_engine::store::{CampaignState, RecipientFilter, RecipientRecord, RecipientState};
use cascade_engine::{
    CampaignId, CascadeRequest, Connection, Contact, Cost, Engine, EngineConfig, MemoryStore, Message, Policy,
    RateLimit, Status, Store, Timestamp,
};
use cascade_testkit::{StubChannel, caps};
use chrono::{TimeZone, Timelike};
use chrono_tz::Tz;

/// A channel that counts a send as delivered once the provider accepts it.
fn instant_sms() -> StubChannel {
    StubChannel::new("sms", cascade_engine::Capabilities { highest_status: Status::Accepted, ..caps::sms() })
}

fn engine(store: Arc<dyn Store>, sms: &StubChannel, start: Timestamp, limit: Option<RateLimit>) -> Engine {
    let mut connection = Connection::new("sms-1", sms.clone()).price(Cost::from_micros(7_900));
    connection.rate_limit = limit;
    Engine::builder()
        .store(store)
        .connection(connection)
        .clock(TokioClock::starting_at(start))
        .config(EngineConfig { poll_interval: Duration::from_secs(30), retention: None, ..EngineConfig::default() })
        .build()
        .expect("engine")
}

fn config(holder: &str) -> CampaignsConfig {
    CampaignsConfig { holder: holder.into(), lease: Duration::from_secs(5), ..CampaignsConfig::default() }
}

/// `n` recipients as a JSON list, phones +1 202 555 0000 upwards.
fn list(n: usize) -> Cursor<Vec<u8>> {
    let rows: Vec<serde_json::Value> =
        (0..n).map(|i| serde_json::json!({"phone": format!("+1202555{i:04}"), "name": format!("R{i}")})).collect();
    Cursor::new(serde_json::to_vec(&rows).expect("json"))
}

fn spec(rate: &str, schedule: Schedule) -> CampaignSpec {
    CampaignSpec {
        message: Message::text("Hi {{contact.name}}"),
        policy: Arc::new(Policy::chain(["sms"])),
        variables: serde_json::Value::Null,
        schedule,
        rate: rate.parse().expect("rate"),
        metadata: serde_json::Value::Null,
    }
}

async fn create(campaigns: &Campaigns, spec: CampaignSpec, n: usize) -> CampaignId {
    let new = NewCampaign { name: "test".into(), owner: None, spec, region: None, format: None };
    let (record, report) = campaigns.create(new, list(n), |_| {}).await.expect("created");
    assert_eq!(report.valid, n as u64);
    record.id
}

async fn all(store: &Arc<dyn Store>, id: CampaignId) -> Vec<RecipientRecord> {
    store.campaign_recipients(id, &RecipientFilter { limit: usize::MAX, ..Default::default() }).await.expect("read")
}

/// Advances the paused clock in steps until `done` holds or `limit` passes.
async fn run_until(limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let step = Duration::from_millis(100);
    let mut waited = Duration::ZERO;
    while !done().await {
        assert!(waited < limit, "not done after {limit:?}");
        tokio::time::sleep(step).await;
        waited += step;
    }
}

async fn state(campaigns: &Campaigns, id: CampaignId) -> CampaignState {
    campaigns.get(id).await.expect("campaign").state
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Timestamp {
    chrono::Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).single().expect("valid time")
}

#[tokio::test(start_paused = true)]
async fn a_campaign_keeps_to_its_rate_and_starts_everyone_once() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let sms = instant_sms();
    let start = utc(2026, 6, 1, 12, 0);
    let engine = engine(store.clone(), &sms, start, None);
    let campaigns = Campaigns::new(engine.clone(), config("a"));
    campaigns.start();
    let id = create(&campaigns, spec("25/s", Schedule::default()), 300).await;
    run_until(Duration::from_secs(60), async || state(&campaigns, id).await == CampaignState::Finished).await;

    let recipients = all(&store, id).await;
    let mut per_second: BTreeMap<i64, u32> = BTreeMap::new();
    for r in &recipients {
        assert_eq!(r.state, RecipientState::Started, "recipient {}", r.seq);
        let at = r.changed_at.expect("started at");
        *per_second.entry((at - start).num_seconds()).or_default() += 1;
    }
    // 300 at 25/s: twelve seconds; every whole second but the last holds 25 ± 1.
    let full: Vec<u32> = per_second.values().copied().take(per_second.len() - 1).collect();
    assert!(full.len() >= 11, "spread over {per_second:?}");
    for n in &full {
        assert!((24..=26).contains(n), "a second with {n} starts: {per_second:?}");
    }
    let phones: HashSet<String> = sms.sends().iter().map(|s| s.request.address.value.clone()).collect();
    assert_eq!((sms.sends().len(), phones.len()), (300, 300), "every recipient sent to exactly once");

    run_until(Duration::from_secs(10), async || campaigns.progress(id).await.expect("progress").running == 0).await;
    let p = campaigns.progress(id).await.expect("progress");
    assert_eq!((p.total, p.started, p.delivered, p.remaining, p.failed), (300, 300, 300, 0, 0));
    assert_eq!(p.delivered_by_channel.get("sms"), Some(&300));
    assert_eq!(p.cost, Cost::from_micros(7_900).times(300));
    assert_eq!(p.cost_all_last_channel, p.cost, "one SMS step: the same cost");
    assert!(p.is_settled());

    // Over time: every delivery in the 5-second stretch it came in, the whole 12 s of sending.
    let series = campaigns.series(id, Duration::from_secs(5)).await.expect("series");
    assert_eq!(series.iter().map(|p| p.count).sum::<u64>(), 300, "{series:?}");
    assert!(series.iter().all(|p| p.outcome == "delivered" && p.channel.as_ref().is_some_and(|c| c.as_str() == "sms")));
    let stretches: Vec<i64> = series.iter().map(|p| (p.at - start).num_seconds()).collect();
    assert_eq!(stretches, [0, 5, 10], "{series:?}");
    assert!(campaigns.failure_reasons(id, 10).await.expect("reasons").is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_window_crosses_midnight_and_a_dst_change_and_the_end_expires_the_rest() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let sms = instant_sms();
    let ny: Tz = "America/New_York".parse().expect("zone");
    // Saturday 7 March 2026, 18:00 in New York; clocks spring forward at 02:00 on Sunday 8th.
    let start = ny.with_ymd_and_hms(2026, 3, 7, 18, 0, 0).single().expect("valid").with_timezone(&chrono::Utc);
    let end = ny.with_ymd_and_hms(2026, 3, 9, 12, 0, 0).single().expect("valid").with_timezone(&chrono::Utc);
    let engine = engine(store.clone(), &sms, start, None);
    let config = CampaignsConfig { poll: Duration::from_secs(30), ..config("w") };
    let campaigns = Campaigns::new(engine.clone(), config);
    campaigns.start();
    let schedule = Schedule {
        start_at: Some(start),
        end_at: Some(end),
        window: Some("daily 23:00-03:00".parse().expect("window")),
        time_zone: Some(ny),
        recipient_time_zone: false,
    };
    // 2 a minute: the first night has 3 hours (02:00-03:00 does not exist), the second 4.
    let id = create(&campaigns, spec("2/min", schedule), 1_000).await;
    run_until(Duration::from_secs(3 * 86_400), async || state(&campaigns, id).await == CampaignState::Finished).await;

    let recipients = all(&store, id).await;
    let started: Vec<&RecipientRecord> = recipients.iter().filter(|r| r.state == RecipientState::Started).collect();
    for r in &started {
        let local = r.changed_at.expect("started at").with_timezone(&ny);
        assert!(local.hour() == 23 || local.hour() < 3, "started at {local}, outside 23:00-03:00");
    }
    let first_night = started.iter().filter(|r| r.changed_at.expect("at") < utc(2026, 3, 8, 12, 0)).count();
    let second_night = started.len() - first_night;
    assert!((358..=362).contains(&first_night), "first night (3 h at 2/min): {first_night}");
    assert!((478..=482).contains(&second_night), "second night (4 h at 2/min): {second_night}");
    let expired = recipients.iter().filter(|r| r.state == RecipientState::Expired).count();
    assert_eq!(started.len() + expired, 1_000);
    for r in recipients.iter().filter(|r| r.state == RecipientState::Expired) {
        assert!(r.changed_at.expect("expired at") >= end);
    }
    let p = campaigns.progress(id).await.expect("progress");
    assert_eq!((p.expired, p.remaining), (expired as u64, 0));
    let rows = campaigns.recipients(id, &export::filter(&[ExportKind::Expired], None, 10)).await.expect("export");
    assert_eq!(rows.len(), 10);
    assert_eq!(export::row(&rows[0])[5], "not started before the campaign's end");
}

#[tokio::test(start_paused = true)]
async fn pause_stops_new_starts_until_resumed_and_cancel_closes_the_rest() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let sms = instant_sms();
    let engine = engine(store.clone(), &sms, utc(2026, 6, 1, 12, 0), None);
    let campaigns = Campaigns::new(engine.clone(), config("p"));
    campaigns.start();
    let id = create(&campaigns, spec("10/s", Schedule::default()), 200).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    campaigns.pause(id).await.expect("paused");
    assert!(matches!(campaigns.pause(id).await, Err(cascade_campaigns::CampaignError::Conflict { .. })));
    let at_pause = sms.sends().len();
    assert!((25..=35).contains(&at_pause), "{at_pause} sent in 3 s at 10/s");
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(sms.sends().len(), at_pause, "nothing started while paused");
    assert_eq!(campaigns.progress(id).await.expect("progress").remaining, 200 - at_pause as u64);

    campaigns.resume(id).await.expect("resumed");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after_resume = sms.sends().len();
    assert!(after_resume >= at_pause + 40, "sending again after resume: {after_resume}");

    let cancelled = campaigns.cancel(id).await.expect("cancelled");
    assert_eq!(cancelled.state, CampaignState::Cancelled);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let sent = sms.sends().len();
    assert!(sent < 200, "cancel stopped the campaign at {sent}");
    let p = campaigns.progress(id).await.expect("progress");
    assert_eq!(p.started as usize, sent);
    assert_eq!(p.cancelled as usize, 200 - sent);
    assert!(matches!(campaigns.resume(id).await, Err(cascade_campaigns::CampaignError::Conflict { .. })));
}

#[tokio::test(start_paused = true)]
async fn a_restart_mid_campaign_starts_nobody_twice_and_forgets_nobody() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let start = utc(2026, 6, 1, 12, 0);
    let sms_a = instant_sms();
    let engine_a = engine(store.clone(), &sms_a, start, None);
    let campaigns_a = Campaigns::new(engine_a.clone(), config("a"));
    campaigns_a.start();
    let id = create(&campaigns_a, spec("20/s", Schedule::default()), 150).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A crash right after a submission was stored and before the recipient was marked: the
    // next pending recipient's cascade exists already under its key.
    let next = store
        .campaign_recipients(
            id,
            &RecipientFilter { states: vec![RecipientState::Pending], limit: 1, ..Default::default() },
        )
        .await
        .expect("pending")
        .remove(0);
    let record = campaigns_a.get(id).await.expect("campaign");
    let stored = cascade_campaigns::run::stored(&record).expect("spec");
    let mut request =
        CascadeRequest::new(next.contact.clone(), stored.spec.message.clone(), stored.spec.policy.clone());
    request.idempotency_key = Some(format!("campaign:{id}:{}", next.seq));
    request.metadata = serde_json::json!({"campaign": id.to_string(), "recipient": next.seq});
    request.campaign = Some(cascade_engine::store::CampaignMember { campaign: id, seq: next.seq });
    let early = engine_a.submit(request).await.expect("submitted").id();
    campaigns_a.stop();
    engine_a.shutdown(Duration::from_secs(1)).await;
    let first_run = sms_a.sends().len();
    assert!((55..=75).contains(&first_run), "{first_run} sent before the restart");

    let sms_b = instant_sms();
    let engine_b = engine(store.clone(), &sms_b, engine_a.now(), None);
    let campaigns_b = Campaigns::new(engine_b.clone(), config("b"));
    campaigns_b.start();
    run_until(Duration::from_secs(60), async || state(&campaigns_b, id).await == CampaignState::Finished).await;

    let mut phones: Vec<String> =
        sms_a.sends().iter().chain(sms_b.sends().iter()).map(|s| s.request.address.value.clone()).collect();
    let total = phones.len();
    phones.sort();
    phones.dedup();
    assert_eq!((total, phones.len()), (150, 150), "every recipient sent to once across the restart");
    let marked = all(&store, id).await.into_iter().find(|r| r.seq == next.seq).expect("recipient");
    assert_eq!(marked.cascade, Some(early), "the recipient kept the cascade made before the crash");
}

#[tokio::test(start_paused = true)]
async fn a_recipient_the_engine_refuses_is_reported_with_its_reason() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let sms = instant_sms();
    let engine = engine(store.clone(), &sms, utc(2026, 6, 1, 12, 0), None);
    let campaigns = Campaigns::new(engine.clone(), config("r"));
    campaigns.start();
    let mut spec = spec("50/s", Schedule::default());
    spec.message = Message::text("Your code is {{contact.fields.code}}");
    let rows = r#"[{"phone": "+12025550001", "code": "123"}, {"phone": "+12025550002"}]"#;
    let new = NewCampaign { name: "codes".into(), owner: None, spec, region: None, format: None };
    let (record, _) = campaigns.create(new, Cursor::new(rows.as_bytes().to_vec()), |_| {}).await.expect("created");
    run_until(Duration::from_secs(10), async || state(&campaigns, record.id).await == CampaignState::Finished).await;
    let p = campaigns.progress(record.id).await.expect("progress");
    assert_eq!((p.started, p.failed), (1, 1));
    let failed =
        campaigns.recipients(record.id, &export::filter(&[ExportKind::Failed], None, 10)).await.expect("export");
    assert_eq!(failed.len(), 1);
    let row = export::row(&failed[0]);
    assert_eq!((row[1].as_str(), row[4].as_str()), ("+12025550002", "refused"));
    assert!(row[5].contains("code"), "the reason names the missing variable: {}", row[5]);
    let reasons = campaigns.failure_reasons(record.id, 10).await.expect("reasons");
    assert_eq!(reasons, [(row[5].clone(), 1)]);
    let refused = campaigns.series(record.id, Duration::from_secs(60)).await.expect("series");
    assert!(refused.iter().any(|p| p.outcome == "refused" && p.count == 1), "{refused:?}");
}

#[tokio::test(start_paused = true)]
async fn the_spec_is_checked_before_anything_is_stored() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let sms = instant_sms();
    let engine = engine(store.clone(), &sms, utc(2026, 6, 1, 12, 0), None);
    let campaigns = Campaigns::new(engine, config("c"));
    let mut bad = spec(
        "5/s",
        Schedule { start_at: Some(utc(2026, 6, 2, 0, 0)), end_at: Some(utc(2026, 6, 1, 0, 0)), ..Schedule::default() },
    );
    bad.policy = Arc::new(Policy::chain(["viber", "sms"]));
    // Content for a channel the policy does not use would have every recipient refused.
    bad.message.overrides.insert("telegram".into(), cascade_engine::ContentOverride::default());
    let new = NewCampaign { name: "bad".into(), owner: None, spec: bad, region: None, format: None };
    let Err(cascade_campaigns::CampaignError::Invalid(problems)) = campaigns.create(new, list(3), |_| {}).await else {
        panic!("accepted a bad campaign");
    };
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].starts_with("schedule.end_at"), "{problems:?}");
    assert!(problems[1].starts_with("policy.steps[0].channel"), "{problems:?}");
    assert_eq!(
        problems[2],
        "message.overrides.telegram: override for channel `telegram`, which no step of the policy uses"
    );
    assert!(campaigns.list(None, None, 10).await.expect("list").is_empty());
}

/// Real time: the connection's rate limiter keeps its own clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_cascade_goes_ahead_of_queued_campaign_sends() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let sms = instant_sms();
    let limit = RateLimit { count: 1, per: Duration::from_millis(40) };
    let engine = engine(store.clone(), &sms, chrono::Utc::now(), Some(limit));
    let campaigns = Campaigns::new(engine.clone(), config("t"));
    campaigns.start();
    // The campaign starts cascades far faster than the connection sends (25/s): its sends queue.
    let id = create(&campaigns, spec("500/s", Schedule::default()), 60).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let queued = campaigns.progress(id).await.expect("progress").started as usize - sms.sends().len();
    assert!(queued >= 30, "campaign sends waiting for the connection: {queued}");
    let single =
        CascadeRequest::new(Contact::with_phone("+447400123456"), Message::text("Code 1234"), Policy::chain(["sms"]));
    let handle = engine.submit(single).await.expect("submitted");
    let sent_before = sms.sends().len();
    tokio::time::timeout(Duration::from_secs(1), handle.outcome())
        .await
        .expect("delivered within a second")
        .expect("outcome");
    let position = sms.sends().iter().position(|s| s.request.address.value == "+447400123456").expect("sent");
    assert!(position <= sent_before + 1, "the single cascade was send {position}, {sent_before} had gone before it");
    run_until(Duration::from_secs(10), async || sms.sends().len() == 61).await;
}

#[tokio::test(start_paused = true)]
async fn cancel_also_cancels_the_cascades_still_running() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    // Waits for a `delivered` status that never comes: every cascade started stays running.
    let sms = StubChannel::new("sms", caps::sms());
    let engine = engine(store.clone(), &sms, utc(2026, 6, 1, 12, 0), None);
    let campaigns = Campaigns::new(engine.clone(), config("x"));
    campaigns.start();
    let id = create(&campaigns, spec("20/s", Schedule::default()), 100).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let running = campaigns.progress(id).await.expect("progress").running;
    assert!(running >= 30, "cascades waiting for a status: {running}");
    campaigns.cancel(id).await.expect("cancelled");
    // Well inside the step's 60 s timeout: only the cancel ends them.
    run_until(Duration::from_secs(20), async || campaigns.progress(id).await.expect("progress").running == 0).await;
    let p = campaigns.progress(id).await.expect("progress");
    assert_eq!((p.cancelled, p.delivered, p.failed, p.remaining), (100, 0, 0, 0));
    assert_eq!(p.started as usize, sms.sends().len());
}

#[tokio::test(start_paused = true)]
async fn the_eta_counts_the_rate_from_the_start_and_a_window_that_never_closes_is_no_window() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let sms = instant_sms();
    let now = utc(2026, 6, 1, 12, 0);
    let engine = engine(store.clone(), &sms, now, None);
    let campaigns = Campaigns::new(engine.clone(), config("e"));
    let start = utc(2026, 6, 1, 13, 0);
    for window in [None, Some("daily 00:00-24:00"), Some("daily 13:00-13:05")] {
        let schedule = Schedule {
            start_at: Some(start),
            window: window.map(|w| w.parse().expect("window")),
            ..Schedule::default()
        };
        let id = create(&campaigns, spec("10/s", schedule), 6_000).await;
        let p = campaigns.progress(id).await.expect("progress");
        assert_eq!(p.phase.as_deref(), Some("scheduled"), "{window:?}");
        // 6,000 at 10/s: ten minutes of sending; a five-minute window needs two days' windows.
        let expected = match window {
            Some("daily 13:00-13:05") => utc(2026, 6, 2, 13, 5),
            _ => start + chrono::Duration::minutes(10),
        };
        assert_eq!(p.eta, Some(expected), "{window:?}");
    }
}

/// A campaign whose import a stopped process cut short (left `importing`, its recipients
/// partly stored) is cancelled with what it stored; one whose import marks it is left alone.
#[tokio::test(start_paused = true)]
async fn an_import_cut_short_by_a_stopped_process_is_given_up() {
    use cascade_engine::store::{CampaignRecord, NewRecipient};
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let sms = instant_sms();
    let start = utc(2026, 3, 2, 9, 0);
    let e = engine(store.clone(), &sms, start, None);
    let importing = |updated_at: Timestamp| CampaignRecord {
        id: CampaignId::new(),
        name: "spring".into(),
        owner: None,
        state: CampaignState::Importing,
        spec: serde_json::Value::Null,
        recipients: 0,
        created_at: updated_at,
        updated_at,
    };
    let (cut_short, live) = (importing(start - chrono::Duration::minutes(11)), importing(start));
    for c in [&cut_short, &live] {
        store.save_campaign(c).await.expect("save");
        let stored: Vec<NewRecipient> = (0..3)
            .map(|seq| NewRecipient {
                seq,
                line: seq + 2,
                contact: Contact::with_phone(format!("+120255500{seq:02}")),
                zone: "UTC".into(),
            })
            .collect();
        store.add_recipients(c.id, &stored).await.expect("recipients");
    }
    let campaigns = Campaigns::new(e.clone(), config("w"));
    // The first look only notes the marks: the runner judges silence by its own clock.
    assert_eq!(campaigns.give_up_stale_imports().await.expect("sweep"), 0);
    tokio::time::advance(Duration::from_secs(300)).await;
    store
        .set_campaign_state(live.id, &[CampaignState::Importing], CampaignState::Importing, e.now())
        .await
        .expect("mark");
    tokio::time::advance(Duration::from_secs(300)).await;
    assert_eq!(campaigns.give_up_stale_imports().await.expect("sweep"), 1, "ten minutes without a sign of life");
    assert_eq!(campaigns.get(cut_short.id).await.expect("get").state, CampaignState::Cancelled);
    let tally = store.campaign_tally(cut_short.id).await.expect("tally");
    assert!(
        tally.iter().all(|t| t.state == RecipientState::Cancelled) && tally.iter().map(|t| t.count).sum::<u64>() == 3,
        "the recipients it stored are closed: {tally:?}"
    );
    assert_eq!(campaigns.get(live.id).await.expect("get").state, CampaignState::Importing, "a live import stays");
    assert_eq!(campaigns.give_up_stale_imports().await.expect("sweep"), 0, "given up once");
}

/// A list that arrives as the test sends it, as a slow upload does.
struct Trickle {
    chunks: std::sync::mpsc::Receiver<Vec<u8>>,
    pending: Vec<u8>,
}

impl std::io::Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pending.is_empty() {
            match self.chunks.recv() {
                Ok(chunk) => self.pending = chunk,
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

/// An import whose list arrives slowly keeps marking its campaign, so the sweep for imports
/// cut short leaves it alone, and it launches once the list is in.
#[tokio::test(start_paused = true)]
async fn a_slow_import_shows_signs_of_life_and_is_not_given_up() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let sms = instant_sms();
    let start = utc(2026, 6, 1, 12, 0);
    let e = engine(store.clone(), &sms, start, None);
    let campaigns = Campaigns::new(e, config("slow"));
    let (tx, chunks) = std::sync::mpsc::channel();
    tx.send(b"phone,name\n+12025550001,Ann\n".to_vec()).expect("send");
    let importer = {
        let campaigns = campaigns.clone();
        let new = NewCampaign {
            name: "slow".into(),
            owner: None,
            spec: spec("10/s", Schedule::default()),
            region: None,
            format: None,
        };
        tokio::spawn(async move { campaigns.create(new, Trickle { chunks, pending: Vec::new() }, |_| {}).await })
    };
    // Twenty minutes with the upload stalled: twice the default `import_stale`. (The clock is
    // moved by hand: it does not move by itself while the list's reader thread is blocked.)
    for _ in 0..40 {
        tokio::time::advance(Duration::from_secs(30)).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(campaigns.give_up_stale_imports().await.expect("sweep"), 0, "a live import is not given up");
    }
    let listed = campaigns.list(None, None, 10).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, CampaignState::Importing);
    assert!(
        listed[0].updated_at - start >= chrono::Duration::minutes(15),
        "marked while waiting: {}",
        listed[0].updated_at
    );
    tx.send(b"+12025550002,Bob\n".to_vec()).expect("send");
    drop(tx);
    let (record, report) = importer.await.expect("task").expect("created");
    assert_eq!((record.state, report.valid), (CampaignState::Running, 2));
}

/// The runner looks for imports cut short by itself, from its start.
#[tokio::test(start_paused = true)]
async fn a_started_runner_gives_up_an_import_cut_short() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let sms = instant_sms();
    let start = utc(2026, 3, 2, 9, 0);
    let e = engine(store.clone(), &sms, start, None);
    let id = CampaignId::new();
    let left = cascade_engine::store::CampaignRecord {
        id,
        name: "left".into(),
        owner: None,
        state: CampaignState::Importing,
        spec: serde_json::Value::Null,
        recipients: 0,
        created_at: start,
        updated_at: start,
    };
    store.save_campaign(&left).await.expect("save");
    let campaigns = Campaigns::new(e, config("restarted"));
    campaigns.start();
    tokio::time::sleep(Duration::from_secs(9 * 60)).await;
    assert_eq!(campaigns.get(id).await.expect("get").state, CampaignState::Importing, "not before import_stale");
    tokio::time::sleep(Duration::from_secs(2 * 60)).await;
    assert_eq!(campaigns.get(id).await.expect("get").state, CampaignState::Cancelled);
    campaigns.stop();
}

#[test]
fn imports_are_marked_every_quarter_of_import_stale_and_not_at_all_when_it_is_off() {
    let with = |import_stale| CampaignsConfig { import_stale, ..CampaignsConfig::default() };
    assert_eq!(with(Duration::ZERO).mark_every(), None, "zero turns the marks and the look off");
    assert_eq!(with(Duration::from_secs(600)).mark_every(), Some(Duration::from_secs(150)));
    assert_eq!(with(Duration::from_nanos(1)).mark_every(), Some(Duration::from_millis(100)), "never a busy loop");
}
