//! Scenario `campaign-import`: a recipient list of 1,000,000 rows (CSV, in a scratch
//! directory) with 5 % invalid and 2 % duplicate phone numbers, validated streaming with
//! `cascade_campaigns::validate` (region `US`), once without a message template and once with
//! one whose `city` variable a fifth of the rows lack; then validated and stored in a SQLite
//! file through `Campaigns::create`, as a campaign is created, in a child process (see
//! [`run`]).

use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use cascade_campaigns::validate::MissingVariable;
use cascade_campaigns::{
    CampaignSpec, Campaigns, CampaignsConfig, Format, NewCampaign, Report, Schedule, ValidateOptions, validate,
};
use cascade_engine::store::{CampaignRecord, CampaignState, RecipientState};
use cascade_engine::{Connection, Engine, Message, Policy, Store};
use cascade_store_sql::SqliteStore;
use cascade_testkit::{StubChannel, caps};

use crate::durable::Scratch;
use crate::{cpu, proc_status_mb, report, round1};

const SCENARIO: &str = "campaign-import";

/// Invalid phone numbers, one of each kind in turn.
const INVALID: [&str; 8] =
    ["12", "n/a", "+999 123", "201-555-CALL", "+1 055 123 4567", "201+5550123", "---", "99999999999999999999"];

/// A valid US number, unique for each `i` below 80 million, written in one of four ways.
pub(crate) fn phone(i: usize) -> String {
    const AREAS: [u32; 10] = [201, 212, 305, 312, 415, 512, 617, 702, 808, 919];
    let area = AREAS[i % 10];
    let exchange = 200 + (i / 10 / 10_000) % 800;
    let line = (i / 10) % 10_000;
    match i % 4 {
        0 => format!("+1 {area}-{exchange}-{line:04}"),
        1 => format!("({area}) {exchange}-{line:04}"),
        2 => format!("{area}.{exchange}.{line:04}"),
        _ => format!("1{area}{exchange}{line:04}"),
    }
}

/// The message of the run with a template: `city` is empty in every fifth row; `plan` is in no
/// row but has a default.
const TEMPLATE: &str = "Hi {{contact.name}}, our {{contact.fields.city}} store opens on Monday. Your plan: {{contact.fields.plan | default(\"basic\")}}";

/// What the generated list holds, and so what its report must say.
#[derive(Default)]
struct Expected {
    invalid: u64,
    duplicate: u64,
    /// Valid rows without a city, and the first line of one.
    without_city: u64,
    first_without_city: u64,
}

/// What row `i` of the list is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Valid,
    Invalid,
    /// The number of row i - 999, which is neither invalid (i - 999 ≢ 7 mod 20) nor a
    /// duplicate (i - 999 ≢ 13 mod 50).
    Duplicate,
}

fn kind(i: usize) -> Kind {
    if i % 20 == 7 {
        Kind::Invalid
    } else if i % 50 == 13 && i > 1000 {
        Kind::Duplicate
    } else {
        Kind::Valid
    }
}

const CITIES: [&str; 5] = ["Austin", "Boston", "\"Portland, OR\"", "Denver", ""];

impl Expected {
    /// What a list of `rows` rows holds.
    fn of(rows: usize) -> Self {
        let mut expected = Expected::default();
        for i in 0..rows {
            match kind(i) {
                Kind::Invalid => expected.invalid += 1,
                Kind::Duplicate => expected.duplicate += 1,
                Kind::Valid if CITIES[i % CITIES.len()].is_empty() => {
                    expected.without_city += 1;
                    if expected.first_without_city == 0 {
                        // The header is line 1.
                        expected.first_without_city = i as u64 + 2;
                    }
                }
                Kind::Valid => {}
            }
        }
        expected
    }

    fn valid(&self, rows: usize) -> u64 {
        rows as u64 - self.invalid - self.duplicate
    }
}

/// Writes `rows` recipients; returns what their report must say.
fn generate(path: &Path, rows: usize) -> Expected {
    let file = std::fs::File::create(path).expect("create the CSV file");
    let mut out = BufWriter::with_capacity(1 << 20, file);
    writeln!(out, "phone,name,email,city").expect("write");
    for i in 0..rows {
        let city = CITIES[i % CITIES.len()];
        let number = match kind(i) {
            Kind::Invalid => INVALID[(i / 20) % INVALID.len()].to_owned(),
            Kind::Duplicate => phone(i - 999),
            Kind::Valid => phone(i),
        };
        writeln!(out, "{number},Recipient {i},r{i}@example.com,{city}").expect("write");
    }
    out.flush().expect("flush");
    Expected::of(rows)
}

/// As `cascade campaign validate --region US` checks a CSV file, with the message or without.
fn options(template: bool) -> ValidateOptions {
    ValidateOptions {
        format: Some(Format::Csv),
        region: Some("US".parse().expect("region")),
        template: template.then(|| TEMPLATE.into()),
        max_errors: usize::MAX,
        ..ValidateOptions::default()
    }
}

/// Validates the list at `path`; returns the report and the rows per second.
fn timed(path: &Path, rows: usize, options: &ValidateOptions) -> (Report, f64) {
    let file = std::fs::File::open(path).expect("open the CSV file");
    let start = Instant::now();
    let report = validate(file, options).expect("validate");
    (report, (rows as f64 / start.elapsed().as_secs_f64()).round())
}

/// What differs between a report and what the list holds, if anything.
fn check(report: &Report, rows: usize, expected: &Expected, template: bool) -> Result<(), String> {
    let counts = (report.valid, report.invalid, report.duplicate);
    let want = (expected.valid(rows), expected.invalid, expected.duplicate);
    if counts != want {
        return Err(format!(
            "{} valid, {} invalid and {} duplicate rows reported, but the list has {}, {} and {}; the first errors: {:?}",
            counts.0,
            counts.1,
            counts.2,
            want.0,
            want.1,
            want.2,
            &report.errors[..report.errors.len().min(5)]
        ));
    }
    if template {
        let missing = report.missing_variables.as_deref().unwrap_or_default();
        let want: Vec<MissingVariable> = (expected.without_city > 0)
            .then(|| MissingVariable {
                variable: "contact.fields.city".into(),
                rows: expected.without_city,
                first_line: expected.first_without_city,
            })
            .into_iter()
            .collect();
        if missing != want {
            return Err(format!("missing variables {missing:?} reported, but the list lacks {want:?}"));
        }
        let previews = report.preview.as_ref().map_or(0, Vec::len) as u64;
        if previews != report.valid.min(3) {
            return Err(format!("{previews} previews, expected {}", report.valid.min(3)));
        }
    }
    Ok(())
}

/// Runs scenario `campaign-import` with `rows` rows (default 1,000,000). Fails, saying why,
/// when a report does not match what the list holds, or when the store does not hold every
/// valid row.
pub fn run(rows: Option<usize>) -> Result<(), String> {
    let rows = rows.unwrap_or(1_000_000);
    let scratch = Scratch::new();
    let path = scratch.0.join("recipients.csv");
    let expected = generate(&path, rows);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "  {rows} rows ({:.1} MB) written, {} invalid and {} duplicate phones; validating without and with a template",
        size as f64 / 1e6,
        expected.invalid,
        expected.duplicate
    );
    let (plain, rows_per_sec) = timed(&path, rows, &options(false));
    report(SCENARIO, "rows_per_sec", rows_per_sec);
    // The peak of the first run only: the second one's adds the heap the first one left to
    // the allocator.
    report(SCENARIO, "peak_rss_mb", round1(proc_status_mb("VmHWM")));
    let (templated, rows_per_sec) = timed(&path, rows, &options(true));
    report(SCENARIO, "rows_per_sec_with_template", rows_per_sec);
    report(SCENARIO, "valid", plain.valid as f64);
    report(SCENARIO, "invalid", plain.invalid as f64);
    report(SCENARIO, "duplicate", plain.duplicate as f64);
    report(SCENARIO, "file_mb", (size as f64 / 1e5).round() / 10.0);
    check(&plain, rows, &expected, false)?;
    check(&templated, rows, &expected, true).map_err(|e| format!("with a template: {e}"))?;

    // The stored import runs in a child process of its own: this process's peak resident set
    // already holds the validation runs' (and `VmHWM` cannot go down), and the heap they left
    // to the allocator would be reused by the import and hide part of its cost. A fresh
    // process makes `peak_rss_mb_stored` the import's own, as in a server that imports a list.
    eprintln!("  importing the list into SQLite through Campaigns::create (in a child process)");
    let _ = std::io::stdout().flush();
    let exe = std::env::current_exe().map_err(|e| format!("the bench's own path: {e}"))?;
    let status = std::process::Command::new(exe)
        .arg(STORED)
        .arg(&path)
        .arg(scratch.0.join("import.db"))
        .args(["--count", &rows.to_string()])
        .status()
        .map_err(|e| format!("could not start the stored import: {e}"))?;
    if !status.success() {
        return Err(format!("the stored import failed ({status})"));
    }
    Ok(())
}

/// The scenario name the stored import's child process is started with.
pub const STORED: &str = "campaign-import-stored";

/// What one stored import measured and found.
#[derive(Debug)]
struct Imported {
    /// From calling `Campaigns::create` to its return.
    seconds: f64,
    /// The process's peak resident memory at the end (MB).
    peak_rss_mb: f64,
    report: Report,
    campaign: CampaignRecord,
    /// Recipients stored, and how many of them are pending.
    stored: u64,
    pending: u64,
    /// CPU seconds of the threads involved.
    cpu: ImportCpu,
    import_batch: usize,
    /// Transactions the store's writer committed during the import.
    commits: u64,
}

/// Where the CPU time of an import went, in seconds.
#[derive(Debug, Default)]
struct ImportCpu {
    /// The thread reading and parsing the file (validation's reader).
    parse: f64,
    /// The thread checking the rows and batching recipients (the runner's import task).
    check: f64,
    /// The runtime's worker threads: the loop storing batches (each recipient's contact
    /// encoded as JSON) and the store's group-commit writer.
    runtime: f64,
    /// sqlx's SQLite connection threads (the statements themselves).
    sqlite: f64,
}

/// A reader that notes which thread reads it and, at the end of the input, how much CPU time
/// that thread has used (it ends with the validation, before the import returns).
struct Tracked<R> {
    inner: R,
    reader: Arc<Reader>,
}

#[derive(Default)]
struct Reader {
    tid: OnceLock<u32>,
    cpu_at_end: Mutex<f64>,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.reader.tid.get().is_none()
            && let Some(tid) = cpu::current_tid()
        {
            let _ = self.reader.tid.set(tid);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            *self.reader.cpu_at_end.lock().unwrap_or_else(|e| e.into_inner()) = cpu::current_seconds();
        }
        Ok(n)
    }
}

/// The campaign the import creates: the template of the validation run, one SMS step through
/// a stub connection, and a start ten years away, so nothing is sent.
fn new_campaign(now: cascade_engine::Timestamp) -> NewCampaign {
    let schedule = Schedule { start_at: Some(now + chrono::Duration::days(3650)), ..Schedule::default() };
    let spec = CampaignSpec {
        message: Message::text(TEMPLATE),
        policy: Arc::new(Policy::chain(["sms"])),
        variables: serde_json::Value::Null,
        schedule,
        rate: "1000/s".parse().expect("rate"),
        metadata: serde_json::Value::Null,
    };
    NewCampaign {
        name: "bench import".into(),
        owner: None,
        spec,
        region: Some("US".parse().expect("region")),
        format: Some(Format::Csv),
    }
}

const IMPORT_THREADS: &str = "bench-import";

/// Imports the list at `csv` into a new SQLite file at `db` through `Campaigns::create`, with
/// `import_batch` recipients per store write (the runner's default if `None`).
fn import(csv: &Path, db: &Path, import_batch: Option<usize>) -> Result<Imported, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(IMPORT_THREADS)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let (csv, db) = (csv.to_owned(), db.to_owned());
    // On a worker, as a server's request handler would run it.
    let task = rt.spawn(async move {
        let store = Arc::new(SqliteStore::open(&db).await.map_err(|e| format!("open {}: {e}", db.display()))?);
        let stats = store.writer_stats();
        let engine = Engine::builder()
            .store(store.clone())
            .connection(Connection::new("sms-1", StubChannel::new("sms", caps::sms())))
            .build()
            .map_err(|e| format!("engine: {e}"))?;
        let mut config = CampaignsConfig::default();
        if let Some(n) = import_batch {
            config.import_batch = n;
        }
        let import_batch = config.import_batch;
        let campaigns = Campaigns::new(engine.clone(), config);
        let file = std::fs::File::open(&csv).map_err(|e| format!("open {}: {e}", csv.display()))?;
        let reader = Arc::new(Reader::default());
        let list = Tracked { inner: file, reader: reader.clone() };

        let threads_before = cpu::threads();
        let commits_before = stats.batches();
        let start = Instant::now();
        let (campaign, report) =
            campaigns.create(new_campaign(engine.now()), list, |_| {}).await.map_err(|e| format!("import: {e}"))?;
        let seconds = start.elapsed().as_secs_f64();
        let threads_after = cpu::threads();
        let peak_rss_mb = proc_status_mb("VmHWM");
        let commits = stats.batches() - commits_before;

        // The reading thread was born for this import and has ended.
        let parser = reader.tid.get().copied();
        let mut cpu =
            ImportCpu { parse: *reader.cpu_at_end.lock().unwrap_or_else(|e| e.into_inner()), ..ImportCpu::default() };
        for (tid, t) in cpu::used(&threads_before, &threads_after) {
            if Some(tid) == parser {
                continue;
            } else if crate::cpu::is_sqlite(&t.name) {
                cpu.sqlite += t.seconds;
            } else if t.name.starts_with(IMPORT_THREADS) {
                // Threads of the runtime that were there before are its workers; those born
                // since are the blocking pool's (the import task).
                if threads_before.contains_key(&tid) {
                    cpu.runtime += t.seconds;
                } else {
                    cpu.check += t.seconds;
                }
            }
        }
        let tally = store.campaign_tally(campaign.id).await.map_err(|e| format!("tally: {e}"))?;
        let stored = tally.iter().map(|t| t.count).sum();
        let pending = tally.iter().filter(|t| t.state == RecipientState::Pending).map(|t| t.count).sum();
        engine.shutdown(Duration::from_secs(5)).await;
        Ok(Imported { seconds, peak_rss_mb, report, campaign, stored, pending, cpu, import_batch, commits })
    });
    let imported = rt.block_on(task).map_err(|e| format!("the import task failed: {e}"))?;
    rt.shutdown_timeout(Duration::from_secs(5));
    imported
}

/// What differs between a stored import and what the list holds, if anything.
fn check_stored(imported: &Imported, rows: usize, expected: &Expected) -> Result<(), String> {
    check(&imported.report, rows, expected, true)?;
    let valid = expected.valid(rows);
    let c = &imported.campaign;
    if imported.stored != valid || imported.pending != valid {
        return Err(format!(
            "the store holds {} recipients ({} pending) for the campaign, but the list has {valid} valid rows",
            imported.stored, imported.pending
        ));
    }
    if c.recipients != valid || c.state != CampaignState::Running {
        return Err(format!(
            "the campaign is {} with {} recipients, expected running with {valid}",
            c.state, c.recipients
        ));
    }
    Ok(())
}

/// The child process of scenario `campaign-import`: imports the list at `csv` (of `rows`
/// rows, as `generate` writes it) into a new SQLite file at `db`, reports its figures, and
/// fails when the store does not hold what the list holds. `CASCADE_BENCH_IMPORT_BATCH`
/// sets `CampaignsConfig::import_batch`.
pub fn stored(csv: Option<&String>, db: Option<&String>, rows: Option<usize>) -> Result<(), String> {
    let (Some(csv), Some(db)) = (csv, db) else {
        return Err(format!("usage: cascade-bench {STORED} <list.csv> <new.db> --count N"));
    };
    let rows = rows.unwrap_or(1_000_000);
    let import_batch = match std::env::var("CASCADE_BENCH_IMPORT_BATCH") {
        Ok(v) => Some(v.parse::<usize>().map_err(|_| format!("CASCADE_BENCH_IMPORT_BATCH={v}: not a number"))?),
        Err(_) => None,
    };
    let imported = import(Path::new(csv), Path::new(db), import_batch)?;
    let wall = imported.seconds;
    report(SCENARIO, "rows_per_sec_stored", (rows as f64 / wall).round());
    report(SCENARIO, "peak_rss_mb_stored", round1(imported.peak_rss_mb));
    report(SCENARIO, "stored", imported.stored as f64);
    report(SCENARIO, "import_batch", imported.import_batch as f64);
    report(SCENARIO, "stored_commits", imported.commits as f64);
    let cpu = &imported.cpu;
    report(SCENARIO, "stored_parse_cpu_pct", cpu::pct(cpu.parse, wall));
    report(SCENARIO, "stored_check_cpu_pct", cpu::pct(cpu.check, wall));
    report(SCENARIO, "stored_runtime_cpu_pct", cpu::pct(cpu.runtime, wall));
    report(SCENARIO, "stored_sqlite_cpu_pct", cpu::pct(cpu.sqlite, wall));
    check_stored(&imported, rows, &Expected::of(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_checked_against_the_list() {
        let scratch = Scratch::new();
        let path = scratch.0.join("recipients.csv");
        let rows = 3_000;
        let expected = generate(&path, rows);
        assert_eq!((expected.invalid, expected.duplicate, expected.without_city), (150, 40, 600));
        let (plain, _) = timed(&path, rows, &options(false));
        check(&plain, rows, &expected, false).unwrap();
        let (templated, _) = timed(&path, rows, &options(true));
        check(&templated, rows, &expected, true).unwrap();

        let mut wrong = plain.clone();
        (wrong.valid, wrong.invalid) = (wrong.valid + 1, wrong.invalid - 1);
        let e = check(&wrong, rows, &expected, false).unwrap_err();
        assert!(
            e.starts_with("2811 valid, 149 invalid and 40 duplicate rows reported, but the list has 2810, 150 and 40"),
            "{e}"
        );
        let mut wrong = templated;
        wrong.missing_variables.as_mut().unwrap()[0].rows -= 1;
        let e = check(&wrong, rows, &expected, true).unwrap_err();
        assert!(e.starts_with("missing variables"), "{e}");
    }

    #[test]
    fn the_stored_import_is_checked_against_the_store() {
        let scratch = Scratch::new();
        let path = scratch.0.join("recipients.csv");
        let rows = 3_000;
        let expected = generate(&path, rows);
        let imported = import(&path, &scratch.0.join("import.db"), Some(500)).unwrap();
        check_stored(&imported, rows, &expected).unwrap();
        assert_eq!((imported.stored, imported.pending, imported.import_batch), (2810, 2810, 500));
        assert_eq!(imported.campaign.recipients, 2810);
        // Six batches of 500 rows, each its own transaction.
        assert!(imported.commits >= 6, "{} commits", imported.commits);
        assert!(imported.cpu.parse > 0.0 && imported.cpu.check > 0.0, "{:?}", imported.cpu);

        let mut wrong = imported;
        wrong.stored -= 1;
        wrong.pending -= 1;
        let e = check_stored(&wrong, rows, &expected).unwrap_err();
        assert_eq!(
            e,
            "the store holds 2809 recipients (2809 pending) for the campaign, but the list has 2810 valid rows"
        );
        wrong.stored += 1;
        wrong.pending += 1;
        wrong.campaign.state = CampaignState::Importing;
        let e = check_stored(&wrong, rows, &expected).unwrap_err();
        assert_eq!(e, "the campaign is importing with 2810 recipients, expected running with 2810");
        wrong.campaign.state = CampaignState::Running;
        wrong.report.duplicate += 1;
        assert!(check_stored(&wrong, rows, &expected).is_err());
    }
}
