//! Several engine instances on one PostgreSQL database: they share due work without ever
//! sending a step twice, and when one dies the others finish its cascades once its leases run
//! out.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cascade_engine::{
    AttemptState, CascadeId, CascadeRequest, Connection, Contact, Engine, EngineConfig, Message, Outcome, Policy,
    Status, Step, Store,
};
use cascade_testkit::caps;
use common::{Log, LoggingChannel, Mode, Sent};

fn config() -> EngineConfig {
    EngineConfig {
        lease: Duration::from_secs(1),
        send_timeout: Duration::from_secs(1),
        poll_interval: Duration::from_millis(50),
        claim_batch: 4,
        ..EngineConfig::default()
    }
}

fn engine(store: Arc<dyn Store>, instance: &str, sms: Mode, log: &Log) -> Engine {
    let ch = |name: &str, caps, mode| LoggingChannel::new(name, caps, mode, instance, log.clone());
    Engine::builder()
        .store(store)
        .config(config())
        .connection(Connection::new(format!("wa-{instance}"), ch("whatsapp", caps::whatsapp(), Mode::Silent)))
        .connection(Connection::new(format!("sms-{instance}"), ch("sms", caps::sms(), sms)))
        .connection(Connection::new(format!("tg-{instance}"), ch("telegram", caps::telegram(), Mode::Deliver)))
        .build()
        .expect("engine")
}

fn request(i: usize, steps: Vec<Step>) -> CascadeRequest {
    let contact = Contact::with_phone(format!("+1555{i:07}")).address("telegram", format!("{i}"));
    CascadeRequest::new(contact, Message::text("Your code is 1234"), Policy::new(steps))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// Sends grouped by (cascade, channel).
fn by_step(log: &[Sent]) -> HashMap<(CascadeId, String), Vec<Sent>> {
    let mut m: HashMap<_, Vec<Sent>> = HashMap::new();
    for s in log {
        m.entry((s.cascade, s.channel.clone())).or_default().push(s.clone());
    }
    m
}

#[test]
fn two_instances_share_due_work_and_never_send_a_step_twice() {
    let rt = runtime();
    rt.block_on(async {
        let schema = common::fresh_schema();
        let Some(a_store) = common::pg_store(&schema).await else { return };
        let b_store = common::pg_store(&schema).await.expect("second connection");
        let log = Log::Memory(Arc::default());
        let a = engine(Arc::new(a_store), "a", Mode::Deliver, &log);
        let b = engine(Arc::new(b_store), "b", Mode::Deliver, &log);
        // WhatsApp stays silent for 300 ms; the fall-over to SMS is due work either instance
        // may claim.
        let steps = || vec![Step::new("whatsapp").timeout(Duration::from_millis(300)), Step::new("sms")];
        let n = 200;
        for i in 0..n {
            let engine = if i % 2 == 0 { &a } else { &b };
            engine.submit(request(i, steps())).await.expect("submit");
        }
        common::wait_all_finished(a.store().as_ref(), Duration::from_secs(60)).await;

        let records = common::all_cascades(a.store().as_ref()).await;
        assert_eq!(records.len(), n);
        for r in &records {
            assert!(
                matches!(&r.state.outcome, Some(Outcome::Delivered { channel, .. }) if channel.as_str() == "sms"),
                "cascade {} ended {:?}",
                r.id(),
                r.state.outcome
            );
            assert_eq!(r.state.attempts.len(), 2, "one attempt per step");
        }
        let Log::Memory(sent) = &log else { unreachable!() };
        let sent = sent.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for ((cascade, channel), sends) in by_step(&sent) {
            assert_eq!(sends.len(), 1, "{channel} of {cascade} was sent {} times: {sends:?}", sends.len());
        }
        assert_eq!(sent.len(), 2 * n);
        let sms_by = |i: &str| sent.iter().filter(|s| s.channel == "sms" && s.instance == i).count();
        println!("fall-overs to SMS: instance a {}, instance b {}", sms_by("a"), sms_by("b"));
        assert!(sms_by("a") > 0 && sms_by("b") > 0, "both instances claimed due work");
        a.shutdown(Duration::from_secs(1)).await;
        b.shutdown(Duration::from_secs(1)).await;
        common::drop_schema(&schema).await;
    });
}

#[test]
fn a_killed_instances_cascades_are_finished_by_another_after_the_lease() {
    let main = runtime();
    let schema = common::fresh_schema();
    let log = Log::Memory(Arc::default());
    let Log::Memory(sent) = &log else { unreachable!() };
    let sms_sends = |sent: &Mutex<Vec<Sent>>| {
        sent.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|s| s.channel == "sms").count()
    };
    let n = 50;

    // Instance a: its SMS provider never answers. It submits, falls over to SMS, and dies
    // with every SMS send in flight.
    let doomed = runtime();
    let reachable = doomed.block_on(async {
        let Some(store) = common::pg_store(&schema).await else { return false };
        let a = engine(Arc::new(store), "a", Mode::Hang, &log);
        let steps = vec![
            Step::new("whatsapp").timeout(Duration::from_millis(200)),
            Step::new("sms").timeout(Duration::from_secs(2)),
            Step::new("telegram"),
        ];
        for i in 0..n {
            a.submit(request(i, steps.clone())).await.expect("submit");
        }
        let start = std::time::Instant::now();
        while sms_sends(sent) < n {
            assert!(start.elapsed() < Duration::from_secs(30), "instance a never reached the SMS step");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    });
    if !reachable {
        return;
    }
    // The crash: every task of instance a stops where it is; nothing is recorded any more.
    doomed.shutdown_background();

    main.block_on(async {
        let store: Arc<dyn Store> = Arc::new(common::pg_store(&schema).await.expect("reconnect"));
        let b = engine(store.clone(), "b", Mode::Deliver, &log);
        common::wait_all_finished(store.as_ref(), Duration::from_secs(60)).await;
        let records = common::all_cascades(store.as_ref()).await;
        assert_eq!(records.len(), n);
        let sent = sent.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for r in &records {
            assert!(
                matches!(&r.state.outcome, Some(Outcome::Delivered { channel, status, .. })
                    if channel.as_str() == "telegram" && status.reaches(Status::Sent)),
                "cascade {} ended {:?}",
                r.id(),
                r.state.outcome
            );
            let sms = r.state.attempts.iter().find(|a| a.channel.as_str() == "sms").expect("an SMS attempt");
            assert_eq!(sms.state, AttemptState::Unknown, "the send a died in is recorded as unknown");
        }
        for ((cascade, channel), sends) in by_step(&sent) {
            assert_eq!(sends.len(), 1, "{channel} of {cascade} was sent {} times: {sends:?}", sends.len());
            let expected = if channel == "telegram" { "b" } else { "a" };
            assert_eq!(sends[0].instance, expected, "{channel} of {cascade} sent by the wrong instance");
        }
        assert_eq!(sent.len(), 3 * n);
        b.shutdown(Duration::from_secs(1)).await;
        common::drop_schema(&schema).await;
    });
}
