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

/// CPU seconds (user and system) the whole process has used so far, threads that have ended
/// included (`/proc/self/stat`, in clock ticks of 10 ms).
pub fn process_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    // utime and stime: fields 14 and 15, the 12th and 13th after the name.
    let ticks: f64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<f64>().ok()).sum();
    ticks / 100.0
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_time_counts_a_thread_that_has_ended() {
        let before = process_seconds();
        // A thread that keeps a core busy for 200 ms of its own CPU time, then ends.
        std::thread::spawn(|| {
            let start = current_seconds();
            let mut x = 0u64;
            while current_seconds() - start < 0.2 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        })
        .join()
        .expect("spinning thread");
        let used = process_seconds() - before;
        assert!((0.15..5.0).contains(&used), "the ended thread's 0.2 s are counted: {used}");
    }
}
