//! `kill -9` while thousands of cascades wait, on a SQLite file and on PostgreSQL: after a
//! restart every cascade finishes, and every send the provider saw is an attempt the store
//! recorded (an attempt is never sent twice; a send cut off by the crash is recorded as
//! `unknown`).
//!
//! The test runs itself as a child process (`crash_child`), kills it with SIGKILL mid-way,
//! starts it again to resume, then checks the store against the child's send log.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cascade_engine::{
    AttemptState, CascadeId, CascadeRequest, Connection, Contact, Engine, EngineConfig, Message, Outcome, Policy, Step,
    Store,
};
use cascade_store_sql::SqliteStore;
use cascade_testkit::caps;
use common::{Log, LoggingChannel, Mode, Sent};

const TARGET: &str = "CASCADE_CRASH_TARGET";
const PHASE: &str = "CASCADE_CRASH_PHASE";
const LOG: &str = "CASCADE_CRASH_LOG";
const COUNT: usize = 3000;

async fn open(target: &str) -> Arc<dyn Store> {
    match target.split_once(':') {
        Some(("sqlite", path)) => Arc::new(SqliteStore::open(path).await.expect("open sqlite")),
        Some(("postgres", schema)) => Arc::new(common::pg_store(schema).await.expect("PostgreSQL")),
        _ => panic!("bad {TARGET} {target:?}"),
    }
}

/// The child: `submit` starts COUNT cascades and keeps running until killed; `resume` runs
/// until every cascade has finished.
#[test]
fn crash_child() {
    let (Ok(target), Ok(phase), Ok(log)) = (std::env::var(TARGET), std::env::var(PHASE), std::env::var(LOG)) else {
        return; // Not a child: nothing to do.
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let store = open(&target).await;
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("send log");
        let log = Log::File(Arc::new(Mutex::new(file)));
        let ch = |name: &str, caps, mode| LoggingChannel::new(name, caps, mode, &phase, log.clone());
        let config = EngineConfig {
            lease: Duration::from_secs(1),
            send_timeout: Duration::from_secs(1),
            poll_interval: Duration::from_millis(50),
            ..EngineConfig::default()
        };
        let engine = Engine::builder()
            .store(store.clone())
            .config(config)
            .connection(Connection::new("wa-1", ch("whatsapp", caps::whatsapp(), Mode::Silent)))
            .connection(Connection::new("sms-1", ch("sms", caps::sms(), Mode::Deliver)))
            .build()
            .expect("engine");
        if phase == "submit" {
            let policy = Arc::new(Policy::new([
                // Long enough for every submission to be in before the first fall-over.
                Step::new("whatsapp").timeout(Duration::from_secs(3)),
                Step::new("sms").timeout(Duration::from_secs(1)),
            ]));
            let mut tasks = tokio::task::JoinSet::new();
            for chunk in 0..32 {
                let (engine, policy) = (engine.clone(), policy.clone());
                tasks.spawn(async move {
                    for i in (chunk..COUNT).step_by(32) {
                        let contact = Contact::with_phone(format!("+1555{i:07}"));
                        let request = CascadeRequest::new(contact, Message::text("Your code is 1234"), policy.clone());
                        engine.submit(request).await.expect("submit");
                    }
                });
            }
            while let Some(r) = tasks.join_next().await {
                r.expect("submitter");
            }
            println!("SUBMITTED {COUNT}");
            std::future::pending::<()>().await;
        } else {
            common::wait_all_finished(store.as_ref(), Duration::from_secs(120)).await;
            println!("DONE");
        }
    });
}

fn spawn_child(target: &str, phase: &str, log: &std::path::Path) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "crash_child", "--nocapture", "--test-threads", "1"])
        .env(TARGET, target)
        .env(PHASE, phase)
        .env(LOG, log)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child")
}

/// Waits for a line on the child's stdout, then keeps draining it so the child never writes
/// into a closed pipe.
fn expect_line(child: &mut Child, wanted: &str) {
    let out = child.stdout.take().expect("child stdout");
    let mut lines = BufReader::new(out).lines();
    while let Some(line) = lines.next() {
        if line.expect("child output").contains(wanted) {
            std::thread::spawn(move || lines.for_each(drop));
            return;
        }
    }
    panic!("the child ended without printing {wanted:?}");
}

fn read_log(path: &std::path::Path) -> Vec<Sent> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter(|l| !l.is_empty()).map(Sent::parse).collect()
}

fn crash_and_recover(target: &str, dir: &tempfile::TempDir) {
    let log = dir.path().join("sends.log");
    let mut child = spawn_child(target, "submit", &log);
    expect_line(&mut child, "SUBMITTED");
    // Kill once the first fall-overs to SMS are going out: WhatsApp attempts wait, SMS sends are
    // in flight, results are half recorded.
    let start = Instant::now();
    while read_log(&log).len() < COUNT + COUNT / 5 {
        assert!(start.elapsed() < Duration::from_secs(60), "the child made no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let at_kill = read_log(&log).len();

    let mut child = spawn_child(target, "resume", &log);
    expect_line(&mut child, "DONE");
    assert!(child.wait().expect("reap").success(), "the resumed child failed");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let records = rt.block_on(async { common::all_cascades(open(target).await.as_ref()).await });
    assert_eq!(records.len(), COUNT, "every accepted cascade survived");
    let sends = read_log(&log);
    let mut seen: HashSet<(CascadeId, u32)> = HashSet::new();
    for s in &sends {
        assert!(seen.insert((s.cascade, s.attempt)), "attempt {} of {} was sent twice", s.attempt, s.cascade);
    }
    let by_id: HashMap<CascadeId, _> = records.iter().map(|r| (r.id(), r)).collect();
    for s in &sends {
        let rec = by_id.get(&s.cascade).unwrap_or_else(|| panic!("a send for unknown cascade {}", s.cascade));
        let attempt = rec.state.attempt(s.attempt).unwrap_or_else(|| panic!("a send with no recorded attempt: {s:?}"));
        assert_eq!(attempt.channel.as_str(), s.channel, "{s:?}");
    }
    let (mut attempts, mut unknown, mut unknown_sent, mut delivered) = (0, 0, 0, 0);
    for r in &records {
        match &r.state.outcome {
            Some(Outcome::Delivered { .. }) => delivered += 1,
            Some(other) => assert!(
                r.state.attempts.iter().any(|a| a.state == AttemptState::Unknown),
                "cascade {} ended {other:?} with no send cut off by the crash",
                r.id()
            ),
            None => panic!("cascade {} never finished", r.id()),
        }
        for a in &r.state.attempts {
            attempts += 1;
            let sent = seen.contains(&(r.id(), a.number));
            match a.state {
                AttemptState::Unknown => {
                    unknown += 1;
                    unknown_sent += usize::from(sent);
                }
                AttemptState::Sending => panic!("attempt {} of {} is still sending", a.number, r.id()),
                _ => assert!(sent, "attempt {} of {} is recorded but was never sent", a.number, r.id()),
            }
        }
    }
    println!(
        "{target}: {COUNT} cascades, {} sends ({at_kill} before the kill), {attempts} attempts, {unknown} unknown \
         ({unknown_sent} of them had reached the provider), {delivered} delivered",
        sends.len()
    );
    assert_eq!(sends.len(), attempts - unknown + unknown_sent, "sends equal recorded attempts");
}

#[test]
fn sqlite_file_survives_sigkill_while_thousands_wait() {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = format!("sqlite:{}", dir.path().join("cascade.db").display());
    crash_and_recover(&target, &dir);
}

#[test]
fn postgres_survives_sigkill_while_thousands_wait() {
    let schema = common::fresh_schema();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    if rt.block_on(common::pg_store(&schema)).is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    crash_and_recover(&format!("postgres:{schema}"), &dir);
    rt.block_on(common::drop_schema(&schema));
}
