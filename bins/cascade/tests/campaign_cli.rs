//! `cascade campaign create|status|pause|resume|cancel|export|list`, the real binary against a
//! real server (the provider sandbox and a server on SQLite, in-process on loopback): the
//! output for people and for scripts, and the exit codes.
//!
//! The list every test uploads, `customers.csv`:
//!
//! | line | row | verdict |
//! | --- | --- | --- |
//! | 2 | `+12015550101` Ann | valid: delivered on WhatsApp |
//! | 3 | `+12015550102` Bob | valid: fails on WhatsApp and SMS |
//! | 4 | `12` Bad | invalid: too short |
//! | 5 | `+12015550101` Ann again | duplicate of line 2 |
//! | 6 | `+12015550103` Cy | valid: delivered on WhatsApp |

mod common;

use std::path::PathBuf;

use common::*;

/// Everyone is delivered after 300 ms, but Bob, whose every message fails after 200 ms.
const SCENARIOS: &str = r#"
[default]
behaviour = "deliver"
after = "300ms"

[[recipient]]
address = "+12015550102"
behaviour = "fail"
after = "200ms"
"#;

const LIST: &str = "phone,name\n+12015550101,Ann\n+12015550102,Bob\n12,Bad\n+12015550101,Ann again\n+12015550103,Cy\n";

const ID: &str = "0191d2e4-5b6a-7c8d-9e0f-1a2b3c4d5e6f";

fn list(s: &TestServer) -> PathBuf {
    let path = s.dir.join("customers.csv");
    std::fs::write(&path, LIST).expect("the list");
    path
}

fn create_args<'a>(file: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["campaign", "create", "--file", file, "--name", "spring", "--text", "Hi {{contact.name}}"];
    args.extend(["--rate", "100/s", "--region", "US"]);
    args.extend(extra);
    args
}

/// Every `line N` an error list names, in order.
fn error_lines(report: &serde_json::Value) -> Vec<u64> {
    report["errors"].as_array().expect("errors").iter().filter_map(|e| e["line"].as_u64()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_reports_the_list_and_watch_follows_the_campaign_to_its_end() {
    let s = TestServer::start(SCENARIOS).await;
    let file = list(&s);
    let file = file.to_str().expect("path");
    let o = s.cli(&create_args(file, &["--watch"])).await;
    let out = stdout(&o);
    assert_eq!(code(&o), 0, "finished: exit 0\n{out}\n{}", stderr(&o));
    for expected in [
        "customers.csv: 5 recipient rows",
        "  valid      3",
        "  invalid    1",
        "  duplicate  1",
        "  line 4  phone \"12\": too short",
        "  line 5  duplicate of line 2",
        "Preview (the first 3 recipients):",
        "    Hi Ann",
        "2 rows were left out",
        "3 recipients at 100/s",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("campaign ").and_then(|r| r.split(':').next()))
        .expect("the campaign line")
        .to_owned();
    assert_eq!(id.len(), 36, "{id:?}");
    // Not a terminal: a line per change, then the summary.
    assert!(out.contains("started · delivered"), "progress lines:\n{out}");
    let summary = out.rsplit_once(&format!("campaign {id}  spring")).expect("the final summary").1;
    for expected in [
        "state      finished",
        "started    3 of 3 (100%)",
        "running    0",
        "delivered  2 (whatsapp 2)",
        "failed     1",
        "remaining  0",
        "(all by sms: 0.12,",
        "rate       100/s",
    ] {
        assert!(summary.contains(expected), "missing {expected:?} in:\n{summary}");
    }
    assert!(!out.contains('\u{1b}'), "no colours on a pipe");

    // Watching a finished campaign: its progress at once, exit 0.
    let o = s.cli(&["campaign", "status", &id, "--watch", "--json"]).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 1, "one progress, the last: {lines:?}");
    assert_eq!(lines[0]["state"], "finished");

    let o = s.cli(&["campaign", "status", &id, "--json"]).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let view = &json_lines(&o)[0];
    assert_eq!(view["id"], id.as_str());
    assert_eq!((view["delivered"].as_u64(), view["failed"].as_u64()), (Some(2), Some(1)), "{view}");
    assert_eq!(view["delivered_by_channel"]["whatsapp"], 2);
    assert_eq!(view["spec"]["rate"], "100/s");

    let o = s.cli(&["campaign", "status", &id]).await;
    let out = stdout(&o);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    for expected in [&format!("campaign {id}  spring")[..], "state      finished", "delivered  2", "created    "] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }

    // The failure, with its reason: to a file, then to stdout.
    let to = s.dir.join("failed.csv");
    let o = s.cli(&["campaign", "export", &id, "-o", to.to_str().expect("path")]).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("wrote 1 row (failed, expired) to"), "{}", stderr(&o));
    let csv = std::fs::read_to_string(&to).expect("the export");
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "line,phone,email,name,status,reason,channel,cost,cascade_id,at", "{csv}");
    assert_eq!(rows.len(), 2, "{csv}");
    let cells: Vec<&str> = rows[1].split(',').collect();
    assert_eq!(&cells[..5], ["3", "+12015550102", "", "Bob", "failed"], "{csv}");
    assert!(!cells[5].is_empty(), "a reason: {csv}");
    let o = s.cli(&["campaign", "export", &id]).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), csv, "the same CSV on stdout");
    let o =
        s.cli(&["campaign", "export", &id, "--status", "delivered", "-o", to.to_str().expect("path"), "--json"]).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json_lines(&o)[0]["rows"], 2);

    let o = s.cli(&["campaign", "list"]).await;
    let out = stdout(&o);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let header = out.lines().next().expect("a table");
    assert!(header.contains("name") && header.contains("state") && header.contains("created"), "{out}");
    assert!(out.contains(&id) && out.contains("spring") && out.contains("finished"), "{out}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_answers_and_dry_runs_store_nothing() {
    let s = TestServer::start(SCENARIOS).await;
    let file = list(&s);
    let file = file.to_str().expect("path");

    let o = s.cli(&create_args(file, &["--dry-run"])).await;
    let out = stdout(&o);
    assert_eq!(code(&o), 0, "{out}\n{}", stderr(&o));
    assert!(out.contains("  valid      3") && out.contains("line 5  duplicate of line 2"), "{out}");
    assert!(out.contains("Dry run: nothing was stored or sent."), "{out}");
    let o = s.cli(&create_args(file, &["--dry-run", "--json"])).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let answer = &json_lines(&o)[0];
    assert!(answer.get("campaign").is_none(), "{answer}");
    assert_eq!(answer["report"]["valid"], 3);
    assert_eq!(error_lines(&answer["report"]), [4, 5]);
    let o = s.cli(&["campaign", "list", "--json"]).await;
    assert_eq!(json_lines(&o)[0]["items"], serde_json::json!([]), "nothing stored");
    assert!(s.sandbox.requests().is_empty(), "nothing sent");

    let o = s.cli(&create_args(file, &["--json", "--var", "offer.code=SPRING", "--metadata", "crm=7"])).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 1, "the server's answer: {lines:?}");
    let report = &lines[0]["report"];
    assert_eq!(
        (report["valid"].as_u64(), report["invalid"].as_u64(), report["duplicate"].as_u64()),
        (Some(3), Some(1), Some(1))
    );
    assert_eq!(error_lines(report), [4, 5]);
    assert!(report["errors"][0]["reason"].as_str().is_some_and(|r| r.contains("too short")), "{report}");
    let campaign = &lines[0]["campaign"];
    assert_eq!(campaign["total"], 3);
    assert_eq!(campaign["name"], "spring");
    let id = campaign["id"].as_str().expect("id");
    let o = s.cli(&["campaign", "status", id, "--json"]).await;
    let view = &json_lines(&o)[0];
    assert_eq!(view["spec"]["variables"]["offer"]["code"], "SPRING", "{view}");
    assert_eq!(view["spec"]["metadata"]["crm"], "7", "{view}");

    // A list without a valid recipient: refused (422, exit 2) with its report.
    let bad = s.dir.join("bad.csv");
    std::fs::write(&bad, "phone\n12\nabc\n").expect("file");
    let o = s.cli(&create_args(bad.to_str().expect("path"), &[])).await;
    assert_eq!(code(&o), 2, "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("line 2  phone \"12\": too short"), "the report:\n{}", stdout(&o));
    assert!(stderr(&o).contains("no valid recipient"), "{}", stderr(&o));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_cancel_and_what_was_not_sent() {
    let s = TestServer::start(SCENARIOS).await;
    let file = list(&s);
    let file = file.to_str().expect("path");
    // Starts in an hour: running, every recipient pending.
    let o = s.cli(&create_args(file, &["--start-at", "+1h", "--json"])).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let campaign = &json_lines(&o)[0]["campaign"];
    assert_eq!((campaign["state"].as_str(), campaign["phase"].as_str()), (Some("running"), Some("scheduled")));
    let id = campaign["id"].as_str().expect("id").to_owned();

    let o = s.cli(&["campaign", "status", &id]).await;
    let out = stdout(&o);
    assert!(out.contains("state      running (scheduled)") && out.contains("remaining  3"), "{out}");
    assert!(out.contains("eta        ") && out.contains("schedule   from "), "{out}");

    let o = s.cli(&["campaign", "pause", &id]).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains(&format!("campaign {id}  paused")), "{}", stdout(&o));
    let o = s.cli(&["campaign", "pause", &id]).await;
    assert_eq!(code(&o), 4, "a second pause is a conflict: {}", stderr(&o));
    assert!(stderr(&o).contains("409") && stderr(&o).contains("cannot pause"), "{}", stderr(&o));

    let o = s.cli(&["campaign", "resume", &id, "--json"]).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json_lines(&o)[0]["state"], "running");
    let o = s.cli(&["campaign", "resume", &id]).await;
    assert_eq!(code(&o), 4, "{}", stderr(&o));

    let o = s.cli(&["campaign", "cancel", &id]).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("cancelled"), "{}", stdout(&o));
    let o = s.cli(&["campaign", "cancel", &id, "--json"]).await;
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert_eq!(json_lines(&o)[0]["exit_code"], 4);

    let o = s.cli(&["campaign", "status", &id]).await;
    let out = stdout(&o);
    assert!(out.contains("state      cancelled") && out.contains("cancelled  3"), "{out}");
    // Watching a cancelled campaign: exit 1.
    let o = s.cli(&["campaign", "status", &id, "--watch"]).await;
    assert_eq!(code(&o), 1, "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("state      cancelled"), "{}", stdout(&o));

    let o = s.cli(&["campaign", "export", &id, "--status", "cancelled"]).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let csv = stdout(&o);
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{csv}");
    assert!(rows.iter().all(|r| r.contains("cancelled") && r.contains("not started")), "{csv}");
    assert!(s.sandbox.requests().is_empty(), "nothing was sent");

    let o = s.cli(&["campaign", "status", ID]).await;
    assert_eq!(code(&o), 4, "not found: {}", stderr(&o));
    assert!(stderr(&o).contains("404"), "{}", stderr(&o));
    let o = s.cli(&["campaign", "export", ID, "-o", s.dir.join("none.csv").to_str().expect("path")]).await;
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(!s.dir.join("none.csv").exists(), "no file for a refused export");
    s.stop().await;
}

/// A progress document as the server writes it.
fn progress(state: &str, started: u64, running: u64, delivered: u64) -> serde_json::Value {
    serde_json::json!({
        "id": ID, "name": "spring", "state": state, "total": 3, "started": started, "running": running,
        "delivered": delivered, "delivered_by_channel": {"whatsapp": delivered}, "failed": 0, "expired": 0,
        "cancelled": 0, "remaining": 3 - started, "cost": 0.0085 * delivered as f64, "cost_all_last_channel": 0.04 * delivered as f64,
        "last_channel": "sms", "rate": "1/s", "at": "2026-01-31T10:00:00Z"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reconnects_when_the_progress_stream_breaks() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A server whose progress stream ends after one event the first time, and gives the
    // settled progress the second.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let p = if n == 0 { progress("running", 1, 1, 0) } else { progress("finished", 3, 0, 3) };
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\nevent: progress\ndata: {p}\n\n"
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    let o = cli(&["campaign", "status", ID, "--watch", "--server", &url], &[]).await;
    let out = stdout(&o);
    assert_eq!(code(&o), 0, "{out}\n{}", stderr(&o));
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 2, "one reconnect");
    assert!(out.contains("running  1/3 started") && out.contains("finished  3/3 started"), "{out}");
    assert!(out.contains("delivered  3 (whatsapp 3)") && out.contains("(all by sms: 0.12, 79% saved)"), "{out}");
}

#[tokio::test]
async fn bad_arguments_exit_2_with_a_clear_message() {
    let dir = std::env::temp_dir().join(format!("cascade-campaign-args-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("list.csv");
    std::fs::write(&file, LIST).expect("file");
    let file = file.to_str().expect("path");
    let cases: &[(Vec<&str>, &str)] = &[
        (
            vec!["campaign", "create", "--file", file, "--text", "Hi", "--rate", "fast"],
            "--rate: rate \"fast\": no \"/\" between count and unit",
        ),
        (vec!["campaign", "create", "--file", file, "--text", "Hi", "--rate", "0/s"], "at least 1"),
        (create_args(file, &["--window", "mon-fry 09:00-21:00"]), "--window: window \"mon-fry 09:00-21:00\""),
        (create_args(file, &["--window", "mon-fri 25:00-21:00"]), "--window"),
        (create_args(file, &["--policy", "default", "--chain", "sms"]), "cannot be used with"),
        (create_args(file, &["--time-zone", "Mars/Olympus"]), "--time-zone \"Mars/Olympus\": not an IANA time zone"),
        (create_args(file, &["--start-at", "soon"]), "--start-at \"soon\""),
        (vec!["campaign", "create", "--file", file, "--text", "Hi", "--rate", "1/s", "--region", "XX"], "--region: "),
        (create_args(file, &["--timeout", "5s"]), "--chain"),
        (create_args(file, &["--dry-run", "--watch"]), "cannot be used with"),
        (create_args("/nonexistent/list.csv", &[]), "no such file"),
        (vec!["campaign", "create", "--file", file, "--text", "Hi"], "--rate"),
        (vec!["campaign", "export", ID, "--status", "lost"], "--status: unknown status \"lost\""),
        (vec!["campaign", "status"], "<ID>"),
        (vec!["campaign", "pause"], "<ID>"),
    ];
    for (args, says) in cases {
        let o = cli(args, &[("CASCADE_SERVER", "http://127.0.0.1:9")]).await;
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{args:?} should say {says:?}:\n{}", stderr(&o));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn help_has_examples_for_every_campaign_command() {
    for command in ["create", "status", "pause", "resume", "cancel", "export", "list", "validate"] {
        let o = cli(&["campaign", command, "--help"], &[]).await;
        assert_eq!(code(&o), 0);
        assert!(stdout(&o).contains("Example"), "{command}:\n{}", stdout(&o));
    }
    let o = cli(&["--help"], &[]).await;
    assert!(stdout(&o).contains("cascade campaign create"), "{}", stdout(&o));
}
