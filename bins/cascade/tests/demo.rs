//! `cascade demo` and `cascade sandbox` as a person runs them: the real binary, the server on
//! SQLite, the sandbox behind every channel, over loopback HTTP.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

fn cascade() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cascade"));
    c.env_remove("CASCADE_SERVER").env_remove("CASCADE_API_KEY").env("NO_COLOR", "1");
    c
}

/// A child killed on drop, with its stdout read line by line on a thread.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn start(args: &[&str]) -> Self {
        let mut child = cascade().args(args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Lines up to and including the first that `until` accepts.
    fn read_until(&self, until: impl Fn(&str) -> bool) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no such line within 60 s; saw:\n{}", seen.join("\n")));
            let done = until(&line);
            seen.push(line);
            if done {
                return seen;
            }
        }
    }

    /// SIGTERM, then the exit code.
    fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
        for _ in 0..400 {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("did not stop within 20 s of SIGTERM");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_demo_ends_every_contact_as_its_scenario_says() {
    let out = cascade().args(["demo", "--json"]).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).expect(l)).collect();
    assert!(lines[0]["server"].as_str().is_some_and(|s| s.starts_with("http://127.0.0.1:")), "{}", lines[0]);
    assert!(lines[0]["api_key"].as_str().is_some_and(|k| k.starts_with("ck_demo_")), "{}", lines[0]);
    let events: Vec<&Value> = lines.iter().filter(|l| l.get("event").is_some()).collect();
    let finished = events.iter().filter(|e| e["event"]["type"] == "finished").count();
    assert_eq!(finished, 6, "one outcome per contact");
    let summary = &lines.last().expect("summary")["summary"];
    let contacts = summary["contacts"].as_array().expect("contacts");
    assert_eq!(contacts.len(), 6);
    for c in contacts {
        assert_eq!(c["as_expected"], true, "{c}");
        assert_eq!(c["callback"]["signed"], true, "every outcome was called back, signed: {c}");
    }
    let by_name = |n: &str| contacts.iter().find(|c| c["contact"] == n).expect(n);
    assert_eq!(by_name("Dave")["state"], "failed");
    assert_eq!(by_name("Dave")["callback"]["state"], "failed");
    assert_eq!(by_name("Dave")["path"].as_array().expect("path").len(), 5, "every channel was tried");
    assert_eq!(by_name("Carol")["path"], serde_json::json!(["whatsapp", "sms"]));
    assert_eq!(by_name("Frank")["outcome"]["status"], "replied");
    let eve_moved = events.iter().any(|e| {
        e["contact"] == "Eve" && e["event"]["type"] == "existing_chat_first" && e["event"]["channel"] == "whatsapp"
    });
    assert!(eve_moved, "Eve's open WhatsApp chat went first");
    assert_eq!(summary["delivered_by_channel"], serde_json::json!({"sms": 1, "telegram": 1, "whatsapp": 3}));
    assert_eq!(summary["failed"], 1);
    assert_eq!(summary["sandbox_sends"], summary["attempts"], "nothing sent twice or lost: {summary}");
    assert!(summary["seconds"].as_f64().expect("seconds") < 60.0, "{summary}");
}

#[test]
fn the_demo_prints_a_live_timeline_and_a_summary_table() {
    let out = cascade().args(["demo"]).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("server: http://127.0.0.1:")), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("api key: ck_demo_")), "{stdout}");
    assert!(stdout.contains("Carol  whatsapp  step over: no `delivered` within 4s"), "the fallover, live:\n{stdout}");
    assert!(stdout.contains("Dave             failed after 5 step(s)"), "{stdout}");
    assert!(stdout.contains("delivered by channel: sms 1, telegram 1, whatsapp 3; failed: 1"), "{stdout}");
    assert!(stdout.contains("by SMS at 0.04"), "the all-SMS comparison:\n{stdout}");
    assert!(!stdout.contains('✗'), "{stdout}");
}

#[test]
fn demo_serve_keeps_serving_for_the_cli_until_sigterm() {
    let demo = Running::start(&["demo", "--serve", "--listen", "127.0.0.1:0"]);
    let lines = demo.read_until(|l| l.starts_with("serving until Ctrl-C"));
    let rest = demo.read_until(|l| l.starts_with("api key: "));
    let server = rest.iter().find_map(|l| l.strip_prefix("server: ")).expect("server line").to_owned();
    let key = rest.last().and_then(|l| l.strip_prefix("api key: ")).expect("key line").to_owned();
    assert!(lines.iter().any(|l| l.contains("delivered by channel")), "the summary came first:\n{}", lines.join("\n"));

    let out = cascade()
        .args([
            "send",
            "--to",
            "+15550100009",
            "--name",
            "Ann",
            "--text",
            "Hi {{contact.name}}",
            "--policy",
            "demo",
            "--wait",
        ])
        .env("CASCADE_SERVER", &server)
        .env("CASCADE_API_KEY", &key)
        .output()
        .expect("send");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("delivered on whatsapp"), "{stdout}");
    let out = cascade()
        .args(["list", "--json"])
        .env("CASCADE_SERVER", &server)
        .env("CASCADE_API_KEY", &key)
        .output()
        .expect("list");
    let page: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(page["items"].as_array().expect("items").len(), 7, "six demo contacts and Ann");
    assert_eq!(demo.terminate(), Some(0));
}

#[test]
fn the_sandbox_runs_on_its_own_until_sigterm() {
    let dir = std::env::temp_dir().join(format!("cascade-sandbox-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let scenarios = dir.join("scenarios.toml");
    std::fs::write(&scenarios, "[[recipient]]\naddress = \"700001\"\nbehaviour = \"blocked\"\n").expect("write");
    let sandbox = Running::start(&[
        "sandbox",
        "--listen",
        "127.0.0.1:0",
        "--scenarios",
        scenarios.to_str().expect("path"),
        "--webhook",
        "telegram=http://127.0.0.1:9/webhooks/tg",
        "--json",
    ]);
    let ready: Value = serde_json::from_str(&sandbox.read_until(|_| true)[0]).expect("json");
    assert_eq!(ready["scenario_rules"], 1);
    let telegram = ready["base_urls"]["telegram"].as_str().expect("telegram base").to_owned();
    let base = ready["sandbox"].as_str().expect("url").to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let token = cascade_sandbox::DEFAULT_TELEGRAM_TOKEN;
        let r = http
            .post(format!("{telegram}/bot{token}/sendMessage"))
            .json(&serde_json::json!({"chat_id": 700001, "text": "Hi"}))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 403, "the scenario file is in force: blocked");
        let log: Value =
            http.get(format!("{base}/_sandbox/requests")).send().await.expect("log").json().await.expect("json");
        assert_eq!(log.as_array().expect("log").len(), 1, "{log}");
    });
    assert_eq!(sandbox.terminate(), Some(0));
    let bad = cascade()
        .args(["sandbox", "--scenarios", dir.join("none.toml").to_str().expect("path")])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}
