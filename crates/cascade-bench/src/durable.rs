//! Scenarios `sqlite` and `postgres`: the `engine` scenario's two-step cascades on a durable
//! store, plus the reference figure of what no batching would give (`fsync_per_sec`) and, for
//! SQLite, the memory of a process holding a million waiting cascades (`rss_mb_1m_waiting`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cascade_engine::*;
use cascade_store_sql::{PgConfig, PgStore, SqliteStore, WriterStats};

use crate::engine::{Accepting, Shape, caps, request, throughput};
use crate::{proc_status_mb, report};

/// A scratch directory for database files, removed when dropped: `CASCADE_BENCH_DIR`, or a
/// directory of its own in the system temp directory (one per `Scratch`, so tests running
/// side by side do not remove each other's files).
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::var_os("CASCADE_BENCH_DIR").map_or_else(
            || std::env::temp_dir().join(format!("cascade-bench-{}-{n}", std::process::id())),
            PathBuf::from,
        );
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Single small writes, each made durable with its own fdatasync, for two seconds: what a
/// store that commits every write on its own could reach at most on this disk.
fn fsync_per_sec(dir: &Path) -> f64 {
    let path = dir.join("fsync.probe");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("probe file");
    let line = [b'x'; 100];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        f.write_all(&line).expect("write");
        f.sync_data().expect("fdatasync");
        n += 1;
    }
    let _ = std::fs::remove_file(&path);
    n as f64 / start.elapsed().as_secs_f64()
}

/// CPU time (user and system) per cascade since `before` (each thread's, and the process's):
/// the store's threads (`store_us_per_cascade`; for SQLite its writer thread does the commits,
/// so this is the serial part) and the whole process (`process_us_per_cascade`). Steadier than
/// wall-clock throughput on a machine shared with others, as it leaves out the time spent
/// waiting.
fn cpu_per_cascade(scenario: &str, before: &(std::collections::HashMap<u32, crate::cpu::Thread>, f64), n: usize) {
    let used = crate::cpu::used(&before.0, &crate::cpu::threads());
    let per = |seconds: f64| crate::round1(seconds * 1e6 / n as f64);
    let store: f64 = used.iter().filter(|(_, t)| crate::cpu::is_sqlite(&t.name)).map(|(_, t)| t.seconds).sum();
    report(scenario, "store_us_per_cascade", per(store));
    report(scenario, "process_us_per_cascade", per(crate::cpu::process_seconds() - before.1));
}

fn batching(scenario: &str, stats: &WriterStats) {
    if stats.batches() > 0 {
        report(scenario, "writes_per_commit", stats.writes() as f64 / stats.batches() as f64);
    }
}

/// A tokio runtime of two worker threads, as the machine has two cores.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// Runs scenario `sqlite`.
pub fn sqlite(count: Option<usize>, waiting: usize) {
    let scratch = Scratch::new();
    report("sqlite", "fsync_per_sec", fsync_per_sec(&scratch.0).round());
    runtime().block_on(async {
        let store = SqliteStore::open(scratch.0.join("throughput.db")).await.expect("open sqlite");
        let stats = store.writer_stats();
        let n = count.unwrap_or(50_000);
        // Kept until the figures are read: dropping the last handle ends the writer's thread,
        // and a thread that has ended is no longer counted.
        let store = Arc::new(store);
        let before = (crate::cpu::threads(), crate::cpu::process_seconds());
        report("sqlite", "cascades_per_sec", throughput(Some(store.clone()), n, Shape::TWO_STEPS).await.round());
        cpu_per_cascade("sqlite", &before, n);
        batching("sqlite", &stats);
        drop(store);
    });
    if waiting > 0 {
        let rss = waiting_rss(&scratch.0.join("waiting.db"), waiting);
        report("sqlite", if waiting == 1_000_000 { "rss_mb_1m_waiting" } else { "rss_mb_waiting" }, rss);
    }
}

/// Runs scenario `postgres` against `CASCADE_BENCH_DATABASE_URL` (default: the local test
/// server), in a schema of its own that it drops afterwards.
pub fn postgres(count: Option<usize>) {
    let url = std::env::var("CASCADE_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let scratch = Scratch::new();
    report("postgres", "fsync_per_sec", fsync_per_sec(&scratch.0).round());
    let schema = format!("cascade_bench_{}", std::process::id());
    runtime().block_on(async {
        let mut config = PgConfig::new(&url).schema(&schema);
        if let Some(w) = std::env::var("CASCADE_BENCH_PG_WRITERS").ok().and_then(|v| v.parse().ok()) {
            config.writers = w;
        }
        let store = PgStore::connect_with(config).await.expect("connect to PostgreSQL");
        let stats = store.writer_stats();
        let n = count.unwrap_or(20_000);
        report("postgres", "cascades_per_sec", throughput(Some(Arc::new(store)), n, Shape::TWO_STEPS).await.round());
        batching("postgres", &stats);
        drop_schema(&url, &schema).await;
    });
}

async fn drop_schema(url: &str, schema: &str) {
    use sqlx::{ConnectOptions, Connection};
    let Ok(options) = url.parse::<sqlx::postgres::PgConnectOptions>() else { return };
    if let Ok(mut conn) = options.connect().await {
        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).execute(&mut conn).await;
        let _ = conn.close().await;
    }
}

/// Resident memory (MB) of this process once `n` cascades wait on statuses in a SQLite file.
fn waiting_rss(path: &Path, n: usize) -> f64 {
    runtime().block_on(async {
        let store = Arc::new(SqliteStore::open(path).await.expect("open sqlite"));
        let (engine, _) = submit_waiting(&store, n).await;
        let rss = proc_status_mb("VmRSS");
        engine.shutdown(Duration::from_secs(5)).await;
        rss
    })
}

/// Submits `n` one-step cascades to `store` whose send is accepted and never gets a status (they
/// wait a day), and returns once every write has been committed, with the engine that sent
/// them (still running) and the time the submits took (not the wait for the last writes).
pub(crate) async fn submit_waiting(store: &Arc<SqliteStore>, n: usize) -> (Engine, Duration) {
    // Accepts every send and reports no status: its cascades wait.
    let info = ChannelInfo { channel: "first".into(), adapter: "first".into(), capabilities: caps() };
    let channel = Accepting { info, delivered: None };
    let engine =
        Engine::builder().store(store.clone()).connection(Connection::new("first-1", channel)).build().expect("engine");
    let policy = Arc::new(Policy::new([Step::new("first").timeout(Duration::from_secs(86_400))]));
    let start = Instant::now();
    let workers = 64;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (engine, policy) = (engine.clone(), policy.clone());
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(workers) {
                engine.submit(request(&policy, i)).await.expect("submit");
                if w == 0 && i % 100_000 < workers {
                    eprintln!("  {i} of {n} waiting cascades submitted ({:.0?})", start.elapsed());
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("submitter");
    }
    let submitted = start.elapsed();
    // Let the last sends be recorded.
    let quiet = Duration::from_millis(500);
    let mut last = store.writer_stats().writes();
    loop {
        tokio::time::sleep(quiet).await;
        let now = store.writer_stats().writes();
        if now == last {
            break;
        }
        last = now;
    }
    (engine, submitted)
}
