//! Process and store faults (DESIGN §3 rule 10): the server is killed with SIGKILL at random
//! moments while cascades are being started and run, several times over, on SQLite and on
//! PostgreSQL; two instances share one PostgreSQL database while one of them is killed
//! mid-load; PostgreSQL itself is stopped and started again under load; SQLite's disk fills up.
//!
//! Afterwards every accepted cascade finishes, exactly once; a start whose answer
//! was lost and was sent again with its `Idempotency-Key` made no second cascade; and the
//! sandbox never received a send that is not recorded as an attempt (a send cut off by a kill
//! is recorded `unknown` and never repeated).
//!
//! The moments of the kills come from a seed printed by each test; set `CASCADE_FAULT_SEED`
//! to replay a run.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use common::load::{ENGINE, Rng, all_finished, body, check, load, scenarios};
use common::{Api, Server, StoreChoice, System, free_port, sandbox_config};
use serde_json::Value;

/// Kills the server with SIGKILL `kills` times, each at a random moment of a round of starts,
/// and restarts it; then everything finishes.
async fn killed_at_random_moments(test: &str, store: StoreChoice, kills: usize, per_round: usize) {
    let mut rng = Rng::seeded(test);
    let count = kills * per_round;
    let port = free_port();
    let mut system = System::start_on_store(port, sandbox_config(port, &scenarios(count)), &store, ENGINE).await;
    let base = system.server.base.clone();
    let mut ids = HashMap::new();
    for round in 0..kills {
        let loader = tokio::spawn(load(vec![base.clone()], round * per_round..(round + 1) * per_round, 8));
        tokio::time::sleep(Duration::from_millis(150 + rng.below(1_200))).await;
        let status = system.restart(true).await;
        assert!(!status.success(), "round {round}: killed: {status:?}");
        ids.extend(loader.await.expect("loader"));
    }
    let views = all_finished(&system.api, &ids, Duration::from_secs(60)).await;
    assert_eq!(views.len(), count);
    check(&system.api, &views, &ids, &system.sandbox).await;
    common::drop_store(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_on_sqlite_loses_nothing() {
    killed_at_random_moments("sqlite", StoreChoice::Sqlite, 4, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_on_postgres_loses_nothing() {
    let Some(store) = common::postgres().await else { return };
    killed_at_random_moments("postgres", store, 4, 40).await;
}

/// Forwards every request to the first of `targets` that answers, round-robin, as a load
/// balancer with health checks would: providers' webhooks keep landing while one instance is
/// dead.
async fn balancer(targets: Vec<String>) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
    let turn = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let (client, targets, turn) = (client.clone(), targets.clone(), turn.clone());
        async move {
            let first = turn.fetch_add(1, Ordering::Relaxed);
            for k in 0..targets.len() {
                let target = &targets[(first + k) % targets.len()];
                let mut call = client.request(method.clone(), format!("{target}{uri}")).body(body.clone());
                for (name, value) in &headers {
                    if name != "host" && name != "content-length" {
                        call = call.header(name, value);
                    }
                }
                if let Ok(r) = call.send().await {
                    let status = StatusCode::from_u16(r.status().as_u16()).expect("status");
                    return (status, r.bytes().await.unwrap_or_default());
                }
            }
            (StatusCode::BAD_GATEWAY, Bytes::new())
        }
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, task)
}

/// Two instances on one PostgreSQL schema behind a balancer (for the providers' webhooks);
/// cascades are started on both; one instance is killed mid-load and stays dead. The other
/// takes over its cascades once their leases run out and finishes everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgres_one_killed_mid_load() {
    let Some(store) = common::postgres().await else { return };
    let mut rng = Rng::seeded("two instances");
    let count = 120;
    let ports = [free_port(), free_port()];
    let targets: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
    let (public, balancer_task) = balancer(targets.clone()).await;
    let public_port: u16 = public.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    let sandbox =
        cascade_sandbox::Sandbox::start(sandbox_config(public_port, &scenarios(count))).await.expect("sandbox");
    let mut servers = Vec::new();
    let mut dirs = Vec::new();
    for port in ports {
        let dir = common::temp_dir();
        let config = common::write_config_on(&dir, port, &sandbox, &store, ENGINE);
        // Both instances tell providers to call the balancer.
        let text = std::fs::read_to_string(&config).expect("config");
        let text = text.replace(&format!("http://127.0.0.1:{port}"), &public);
        std::fs::write(&config, text).expect("config");
        servers.push(Server::start(&config, port).await);
        dirs.push(dir);
    }
    let loader = tokio::spawn(load(targets.clone(), 0..count, 8));
    tokio::time::sleep(Duration::from_millis(400 + rng.below(1_200))).await;
    let mut killed = servers.pop().expect("second instance");
    let status = killed.stop("KILL");
    assert!(!status.success(), "killed: {status:?}");
    let ids = loader.await.expect("loader");
    let survivor = Api::new(&servers[0].base);
    let views = all_finished(&survivor, &ids, Duration::from_secs(60)).await;
    assert_eq!(views.len(), count);
    check(&survivor, &views, &ids, &sandbox).await;
    balancer_task.abort();
    common::drop_store(&store).await;
    for dir in dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Whether a test that needs something this machine lacks is skipped (outside CI, saying so
/// loudly) or fails (in CI, where everything must run).
fn missing(what: &str) {
    assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "CI needs {what}");
    eprintln!("\n*** {what} is not available: this test is SKIPPED ***\n");
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// A PostgreSQL server of the test's own (its own data directory and port), so it can be
/// stopped and started without disturbing anything else. Stopped and removed when dropped.
struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    /// `initdb` and start, or `None` where PostgreSQL's programs are not installed.
    fn start() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .max()?;
        let data = common::temp_dir().join("pgdata");
        std::fs::create_dir_all(&data).expect("data dir");
        let pg = Self { bin, data, port: free_port() };
        if is_root() {
            // The server refuses to run as root.
            let owned = Command::new("chown").args(["-R", "postgres:postgres"]).arg(pg.data.parent()?).status();
            assert!(owned.is_ok_and(|s| s.success()), "chown the data directory to postgres");
        }
        pg.run("initdb", &["-A", "trust", "-U", "postgres", "--no-sync", "-D"], true);
        pg.up();
        Some(pg)
    }

    /// One of PostgreSQL's programs, run as `postgres` when we are root.
    fn command(&self, program: &str) -> Command {
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(program));
            c
        } else {
            Command::new(self.bin.join(program))
        }
    }

    /// Runs `program` with `args` and, if `data`, the data directory last; it must succeed.
    fn run(&self, program: &str, args: &[&str], data: bool) {
        let mut command = self.command(program);
        command.args(args);
        if data {
            command.arg(&self.data);
        }
        let out = command.output().expect(program);
        assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn up(&self) {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.data.display());
        let log = self.data.join("server.log");
        let log = log.to_str().expect("path");
        self.run("pg_ctl", &["-w", "-t", "30", "-l", log, "-o", &options, "start", "-D"], true);
    }

    /// Stops the server the hard way (as a crash would: no checkpoint, clients cut off).
    fn crash(&self) {
        self.run("pg_ctl", &["-w", "-m", "immediate", "stop", "-D"], true);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.command("pg_ctl").args(["-m", "immediate", "stop", "-D"]).arg(&self.data).output();
        if let Some(dir) = self.data.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Sends one start with `key` and returns the answer's status and body.
async fn start_once(base: &str, key: &str, i: usize) -> (u16, Value) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let r = client
        .post(format!("{base}/v1/cascades"))
        .bearer_auth(common::KEY)
        .header("idempotency-key", key)
        .json(&body(i))
        .send()
        .await
        .expect("an answer");
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

/// PostgreSQL crashes (immediate stop) in the middle of a load and comes back a few seconds
/// later. While it is down a start is answered 503 and leaves nothing behind; the loader's
/// starts are repeated with their keys until accepted; afterwards everything finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_loses_nothing() {
    let Some(pg) = PrivatePostgres::start() else {
        missing("PostgreSQL's programs (initdb, pg_ctl)");
        return;
    };
    let mut rng = Rng::seeded("postgres restart");
    let count = 100;
    let store = StoreChoice::Postgres { url: pg.url(), schema: "cascade".into() };
    let port = free_port();
    let system = System::start_on_store(port, sandbox_config(port, &scenarios(count + 1)), &store, ENGINE).await;
    let base = system.server.base.clone();
    let loader = tokio::spawn(load(vec![base.clone()], 0..count, 8));
    tokio::time::sleep(Duration::from_millis(300 + rng.below(1_000))).await;
    pg.crash();
    let (status, problem) = start_once(&base, "during-outage", count).await;
    assert_eq!(status, 503, "a start while the database is down: {problem:#}");
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("store")), "{problem:#}");
    tokio::time::sleep(Duration::from_millis(500 + rng.below(2_000))).await;
    pg.up();
    let mut ids = loader.await.expect("loader");
    let (status, answer) = start_once(&base, "during-outage", count).await;
    assert_eq!(status, 202, "{answer:#}");
    assert_eq!(answer["existing"], false, "the refused start left nothing behind: {answer:#}");
    ids.insert(count, answer["id"].as_str().expect("id").to_owned());
    let views = all_finished(&system.api, &ids, Duration::from_secs(90)).await;
    check(&system.api, &views, &ids, &system.sandbox).await;
}

/// A small file system of the test's own for the SQLite file; unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| Self(at.to_owned()))
    }

    /// Fills the file system up with one file, and returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).expect("filler");
        for chunk in [1 << 20, 4096, 512] {
            let block = vec![0u8; chunk];
            while file.write_all(&block).and_then(|()| file.sync_data()).is_ok() {}
        }
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// SQLite's disk fills up under load: starts are answered 503 while nothing can be written,
/// and once there is room again everything accepted, before or during, finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_disk_full_answers_503_and_loses_nothing() {
    let count = 40;
    let port = free_port();
    let sandbox =
        cascade_sandbox::Sandbox::start(sandbox_config(port, &scenarios(count + 3_000))).await.expect("sandbox");
    let dir = common::temp_dir();
    let Some(disk) = SmallDisk::mount(&dir.join("disk"), "8m") else {
        missing("a tmpfs mount (root)");
        return;
    };
    let config = common::write_config_on(&dir, port, &sandbox, &StoreChoice::Sqlite, ENGINE);
    let text = std::fs::read_to_string(&config).expect("config");
    let db = format!("{}/cascade.db", dir.display());
    std::fs::write(&config, text.replace(&db, &format!("{}/cascade.db", disk.0.display()))).expect("config");
    let server = Server::start(&config, port).await;
    let api = Api::new(&server.base);
    let mut ids = load(vec![server.base.clone()], 0..count, 8).await;

    let filler = disk.fill();
    // The write-ahead log may still have room; keep starting until a start cannot be stored.
    let mut refused = None;
    for i in count..count + 3_000 {
        let (status, answer) = start_once(&server.base, &format!("full-{i}"), i).await;
        match status {
            202 => {
                ids.insert(i, answer["id"].as_str().expect("id").to_owned());
            }
            503 => {
                assert!(answer["detail"].as_str().is_some_and(|d| d.contains("store")), "{answer:#}");
                refused = Some(i);
                break;
            }
            other => panic!("start {i} on a full disk: {other} {answer:#}"),
        }
    }
    let refused = refused.expect("no start was refused on a full disk");
    eprintln!("the disk was full after {} more starts", refused - count);
    let health = reqwest::get(format!("{}/healthz", server.base)).await.expect("healthz");
    assert!(health.status().is_success(), "the server is up while the disk is full");

    std::fs::remove_file(&filler).expect("make room");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let answer = loop {
        let (status, answer) = start_once(&server.base, &format!("full-{refused}"), refused).await;
        if status == 202 {
            break answer;
        }
        assert!(tokio::time::Instant::now() < deadline, "starts still refused with room on the disk: {answer:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(answer["existing"], false, "the refused start left nothing behind: {answer:#}");
    ids.insert(refused, answer["id"].as_str().expect("id").to_owned());
    let views = all_finished(&api, &ids, Duration::from_secs(90)).await;
    check(&api, &views, &ids, &sandbox).await;
    drop(server);
    drop(disk);
    let _ = std::fs::remove_dir_all(dir);
}
