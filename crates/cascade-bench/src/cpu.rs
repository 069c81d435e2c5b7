//! CPU time per thread of this process, from `/proc/self/task/*/schedstat`, to say which
//! thread a scenario's time went to.

use std::collections::HashMap;

/// One thread: its name (`comm`, at most 15 bytes) and the CPU seconds it used so far.
#[derive(Clone, Debug)]
pub struct Thread {
    pub name: String,
    pub seconds: f64,
}

/// Every live thread of this process, by thread id.
pub fn threads() -> HashMap<u32, Thread> {
    let mut out = HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return out };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else { continue };
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default().trim_end().to_owned();
        let Ok(schedstat) = std::fs::read_to_string(task.path().join("schedstat")) else { continue };
        // The first field is the time spent on a CPU, in nanoseconds.
        let ns: f64 = schedstat.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        out.insert(tid, Thread { name, seconds: ns / 1e9 });
    }
    out
}

/// Whether a thread is the SQLite store's: sqlx's connection threads or the store's writer.
pub fn is_sqlite(name: &str) -> bool {
    name.starts_with("sqlx-sqlite") || name == cascade_store_sql::WRITER_THREAD
}

/// The calling thread's id.
pub fn current_tid() -> Option<u32> {
    // `/proc/thread-self` links to `<pid>/task/<tid>`.
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// CPU seconds the calling thread has used.
pub fn current_seconds() -> f64 {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    schedstat.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()).map_or(f64::NAN, |ns| ns / 1e9)
}

/// CPU seconds each thread used between two readings (threads that ended in between are lost;
/// threads born in between count from zero).
pub fn used(before: &HashMap<u32, Thread>, after: &HashMap<u32, Thread>) -> Vec<(u32, Thread)> {
    let mut out: Vec<(u32, Thread)> = after
        .iter()
        .map(|(tid, t)| {
            let earlier = before.get(tid).map_or(0.0, |b| b.seconds);
            (*tid, Thread { name: t.name.clone(), seconds: (t.seconds - earlier).max(0.0) })
        })
        .collect();
    out.sort_by_key(|(tid, _)| *tid);
    out
}

/// Seconds as percent of one core over `wall` seconds, rounded.
pub fn pct(seconds: f64, wall: f64) -> f64 {
    (seconds / wall * 100.0).round()
}
