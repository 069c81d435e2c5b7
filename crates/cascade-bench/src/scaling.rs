//! Scenario `scaling`: how the cost of a cascade grows with the number of cascades waiting in
//! the store, the connections in a channel's pool, and the steps of a policy. Each row is the
//! `engine` scenario's throughput run (every cascade falls over until `second` accepts and its
//! provider reports `delivered` at once) with one thing changed, printed as a JSON line with
//! the varied quantity as a key: `{"scenario":"scaling","metric":"memory_cascades_per_sec",
//! "waiting":100000,"value":…}`.
//!
//! - `waiting`: `--waiting N` / 100, / 10 and N (default 1,000,000) cascades that wait a day on
//!   a status, in a SQLite file (one-step cascades, as `sqlite --waiting` makes them; measured
//!   first) and in the in-memory store (two-step ones fallen over, as `engine` makes them;
//!   measured last); then the throughput of two-step cascades on that store, among the waiting
//!   ones.
//! - `connections`: 1, 10 and 100 connections per channel, round-robin, in memory.
//! - `steps`: policies of 1, 3 and 6 steps, every step but the last falling over, in memory and
//!   on SQLite.

use std::sync::Arc;
use std::time::Duration;

use cascade_engine::Store;
use cascade_store_sql::SqliteStore;

use crate::durable::{Scratch, runtime, submit_waiting};
use crate::engine::{Shape, throughput, waiting_in_memory};
use crate::{proc_status_mb, report_with, round1};

const SCENARIO: &str = "scaling";

/// Size of the SQLite database at `path` with its WAL, in MB.
fn db_mb(path: &std::path::Path) -> f64 {
    let size = |p: std::path::PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    (size(path.to_owned()) + size(wal.into())) as f64 / 1e6
}

/// Runs scenario `scaling`: throughput runs of `count` cascades in memory (default 100,000) and
/// a fifth of that on SQLite; up to `waiting` cascades waiting.
///
/// Each run has a runtime of its own: dropping it drops every task still holding the run's
/// engine and store, so nothing of one run is freed (or still working) while the next one
/// measures. The SQLite runs with waiting cascades come first, so that the resident memory
/// they report is not that of a heap grown by the in-memory runs; the in-memory runs with
/// waiting cascades come last, since they leave the process's heap large.
pub fn run(count: Option<usize>, waiting: usize) {
    let n = count.unwrap_or(100_000);
    let n_sqlite = (n / 5).max(1);
    let scratch = Scratch::new();

    // Waiting cascades in SQLite.
    let mut sizes = vec![waiting / 100, waiting / 10, waiting];
    sizes.retain(|w| *w > 0);
    sizes.dedup();
    for &w in &sizes {
        let path = scratch.0.join(format!("waiting-{w}.db"));
        runtime().block_on(waiting_sqlite(&path, w, n_sqlite));
        let _ = std::fs::remove_file(&path);
    }

    // Connections per channel.
    for connections in [1, 10, 100] {
        let shape = Shape { connections, ..Shape::TWO_STEPS };
        let rate = runtime().block_on(throughput(None, n, shape));
        report_with(SCENARIO, "memory_cascades_per_sec", &[("connections", connections as f64)], rate.round());
    }

    // Steps per policy, all but the last falling over.
    for steps in [1, 3, 6] {
        let shape = Shape { fallovers: steps - 1, ..Shape::TWO_STEPS };
        let at = [("steps", steps as f64)];
        let rate = runtime().block_on(throughput(None, n, shape));
        report_with(SCENARIO, "memory_cascades_per_sec", &at, rate.round());
        let path = scratch.0.join(format!("steps-{steps}.db"));
        let rate = runtime().block_on(async {
            let store = SqliteStore::open(&path).await.expect("open sqlite");
            throughput(Some(Arc::new(store)), n_sqlite, shape).await
        });
        report_with(SCENARIO, "sqlite_cascades_per_sec", &at, rate.round());
        let _ = std::fs::remove_file(&path);
    }

    // Waiting cascades in memory.
    for &w in &sizes {
        runtime().block_on(waiting_memory(w, n));
    }
}

/// `w` one-step cascades waiting in a new SQLite file at `path`, then `n` two-step cascades
/// run among them.
async fn waiting_sqlite(path: &std::path::Path, w: usize, n: usize) {
    let store = Arc::new(SqliteStore::open(path).await.expect("open sqlite"));
    let (e, took) = submit_waiting(&store, w).await;
    let submitted = w as f64 / took.as_secs_f64();
    let rss = proc_status_mb("VmRSS");
    e.shutdown(Duration::from_secs(5)).await;
    drop(e);
    let at = [("waiting", w as f64)];
    report_with(SCENARIO, "sqlite_waiting_submitted_per_sec", &at, submitted.round());
    report_with(SCENARIO, "sqlite_rss_mb", &at, round1(rss));
    report_with(SCENARIO, "sqlite_db_mb", &at, round1(db_mb(path)));
    let store: Arc<dyn Store> = store;
    let rate = throughput(Some(store), n, Shape::TWO_STEPS).await;
    report_with(SCENARIO, "sqlite_cascades_per_sec", &at, rate.round());
}

/// `w` two-step cascades fallen over and waiting in the in-memory store, then `n` more run
/// among them.
async fn waiting_memory(w: usize, n: usize) {
    let (bytes, store) = waiting_in_memory(w, Some(Duration::from_secs(86_400))).await;
    let at = [("waiting", w as f64)];
    report_with(SCENARIO, "memory_bytes_per_waiting_cascade", &at, bytes.round());
    let rate = throughput(Some(store), n, Shape::TWO_STEPS).await;
    report_with(SCENARIO, "memory_cascades_per_sec", &at, rate.round());
}
