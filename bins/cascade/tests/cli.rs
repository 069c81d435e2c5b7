//! The `cascade` binary against a real server: each test starts the provider sandbox and a
//! server (SQLite, the real WhatsApp and Twilio adapters) in-process on loopback, then runs the
//! CLI as a separate process and checks its output, JSON and exit codes.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// Behaves: +15550100001 delivered; +15550100002 fails everywhere; +15550100003 never answers.
const SCENARIOS: &str = r#"
[default]
behaviour = "deliver"
after = "300ms"

[[recipient]]
address = "+15550100002"
behaviour = "fail"
after = "200ms"

[[recipient]]
address = "+15550100003"
behaviour = "silent"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_wait_follows_a_delivered_cascade_and_exits_0() {
    let s = TestServer::start(SCENARIOS).await;
    let o = s.cli(&["send", "--to", "+15550100001", "--name", "Ann", "--text", "Hi {{contact.name}}", "--wait"]).await;
    let out = stdout(&o);
    assert_eq!(code(&o), 0, "{out}\n{}", stderr(&o));
    assert!(out.contains("sending via wa"), "the live timeline shows the send:\n{out}");
    assert!(out.contains("delivered on whatsapp (delivered)"), "{out}");
    assert!(out.contains("0.0085"), "the cost is shown:\n{out}");
    // The sandbox saw exactly one send, with the rendered text.
    let sends = s.sandbox.requests();
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(sends[0].body["text"]["body"], "Hi Ann");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_wait_on_a_failed_cascade_exits_1_and_json_streams_events() {
    let s = TestServer::start(SCENARIOS).await;
    let o = s.cli(&["send", "--to", "+15550100002", "--text", "Hi", "--wait", "--json"]).await;
    assert_eq!(code(&o), 1, "{}\n{}", stdout(&o), stderr(&o));
    let lines = json_lines(&o);
    assert!(lines[0]["id"].is_string(), "first the start answer: {:?}", lines[0]);
    let types: Vec<&str> = lines[1..lines.len() - 1].iter().filter_map(|l| l["type"].as_str()).collect();
    assert_eq!(types.first(), Some(&"created"), "{types:?}");
    assert_eq!(types.last(), Some(&"finished"), "{types:?}");
    assert!(types.contains(&"step_failed"), "{types:?}");
    let last = lines.last().expect("the final view");
    assert_eq!(last["state"], "failed");
    assert_eq!(last["attempts"].as_array().expect("attempts").len(), 2, "WhatsApp, then SMS: {last}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_list_and_cancel_in_text_and_json() {
    let s = TestServer::start(SCENARIOS).await;
    // Silent on every channel: runs until cancelled.
    let o = s
        .cli(&["send", "--to", "+15550100003", "--chain", "whatsapp,sms", "--timeout", "60s", "--text", "Hi", "--json"])
        .await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let id = json_lines(&o)[0]["id"].as_str().expect("id").to_owned();
    // Plain `send` prints just the id, for scripts.
    let o = s.cli(&["send", "--to", "+15550100001", "--text", "Hello"]).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let other = stdout(&o).trim().to_owned();
    assert_eq!(other.len(), 36, "an id: {other:?}");

    let o = s.cli(&["status", &id, "--json"]).await;
    assert_eq!(code(&o), 0);
    let view = &json_lines(&o)[0];
    assert_eq!(view["id"], id.as_str());
    assert_eq!(view["state"], "running");

    let o = s.cli(&["status", &id]).await;
    let out = stdout(&o);
    assert!(out.contains(&format!("cascade {id}")) && out.contains("running"), "{out}");
    assert!(out.contains("channel") && out.contains("whatsapp"), "the attempts table:\n{out}");
    assert!(out.contains("timeline") && out.contains("created"), "{out}");

    let o = s.cli(&["list", "--json"]).await;
    let page = &json_lines(&o)[0];
    let ids: Vec<&str> = page["items"].as_array().expect("items").iter().filter_map(|i| i["id"].as_str()).collect();
    assert!(ids.contains(&id.as_str()) && ids.contains(&other.as_str()), "{ids:?}");
    let o = s.cli(&["list", "--state", "running"]).await;
    let out = stdout(&o);
    assert!(out.contains(&id), "{out}");
    assert!(out.lines().next().is_some_and(|h| h.contains("state") && h.contains("created")), "a table:\n{out}");

    let o = s.cli(&["cancel", &id]).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("cancelled"), "{}", stdout(&o));
    let o = s.cli(&["cancel", &id, "--json"]).await;
    assert_eq!(json_lines(&o)[0]["cancelled"], false, "a second cancel changes nothing");
    // Watching a cancelled cascade: its timeline, then exit 1 (not delivered).
    let o = s.cli(&["status", &id, "--watch"]).await;
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert!(stdout(&o).contains("cancelled"), "{}", stdout(&o));
    let o = s.cli(&["list", "--state", "cancelled", "--since", "1h", "--json"]).await;
    let items = json_lines(&o)[0]["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], id.as_str());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_uploads_a_file_and_variables_nest() {
    let s = TestServer::start(SCENARIOS).await;
    let file = s.dir.join("menu.jpg");
    std::fs::write(&file, b"\xFF\xD8\xFF\xE0 not really a jpeg").expect("file");
    let o = s
        .cli(&[
            "send",
            "--to",
            "+15550100001",
            "--var",
            "deal.name=Spring sale",
            "--text",
            "Deal: {{deal.name}}",
            "--file",
            file.to_str().expect("path"),
            "--wait",
            "--json",
        ])
        .await;
    assert_eq!(code(&o), 0, "{}\n{}", stdout(&o), stderr(&o));
    let sends = s.sandbox.requests();
    assert_eq!(sends.len(), 1, "{sends:?}");
    let body = &sends[0].body;
    assert_eq!(body["type"], "image", "{body}");
    assert_eq!(body["image"]["caption"], "Deal: Spring sale", "{body}");
    assert!(
        body["image"]["link"].as_str().is_some_and(|l| l.contains("/files/")),
        "a signed link to the upload: {body}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_map_to_exit_codes_with_the_field() {
    let s = TestServer::start(SCENARIOS).await;
    let o = s.cli(&["send", "--to", "+15550100001", "--text", "Hi", "--policy", "nope"]).await;
    assert_eq!(code(&o), 2, "422 is bad input");
    let err = stderr(&o);
    assert!(err.contains("policy") && err.contains("nope"), "names the field and the value:\n{err}");

    let o = s.cli(&["send", "--to", "+15550100001", "--text", "Hi {{missing}}", "--json"]).await;
    assert_eq!(code(&o), 2);
    let doc = &json_lines(&o)[0];
    assert_eq!(doc["exit_code"], 2);
    assert_eq!(doc["detail"]["status"], 422, "the problem document is kept: {doc}");

    let o = s.cli(&["status", "0191c1a4-7d2e-7c3a-9f00-3f1a2b3c4d5e"]).await;
    assert_eq!(code(&o), 4, "not found");
    assert!(stderr(&o).contains("404"), "{}", stderr(&o));

    let o = s.cli_with_key("wrong-key-0123456789", &["list"]).await;
    assert_eq!(code(&o), 4, "unauthorized");
    assert!(stderr(&o).contains("401"), "{}", stderr(&o));

    let o = s.cli_with_key(READ_KEY, &["send", "--to", "+15550100001", "--text", "Hi"]).await;
    assert_eq!(code(&o), 4, "a read key cannot send");
    assert!(stderr(&o).contains("403"), "{}", stderr(&o));
    assert!(s.sandbox.requests().is_empty(), "nothing was sent");
    s.stop().await;

    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let o = cli(&["list", "--server", &format!("http://127.0.0.1:{port}")], &[]).await;
    assert_eq!(code(&o), 5, "unreachable");
    assert!(stderr(&o).contains("cannot reach the server"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_rate_limits_server_errors_and_missing_files_have_their_codes() {
    let s = TestServer::start(SCENARIOS).await;
    let o = s.cli(&["send", "--to", "+15550100001", "--text", "one", "--idempotency-key", "order-7"]).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = s.cli(&["send", "--to", "+15550100001", "--text", "two", "--idempotency-key", "order-7"]).await;
    assert_eq!(code(&o), 4, "the same key with another body is a conflict: {}", stderr(&o));
    assert!(stderr(&o).contains("409"), "{}", stderr(&o));

    // One request per second for this key: the second of two quick ones is refused.
    let first = s.cli_with_key(SLOW_KEY, &["list"]).await;
    let second = s.cli_with_key(SLOW_KEY, &["list"]).await;
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    assert_eq!(code(&second), 4, "rate limited: {}", stderr(&second));
    assert!(stderr(&second).contains("429") && stderr(&second).contains("retry after"), "{}", stderr(&second));

    let o = s.cli(&["send", "--to", "+15550100001", "--text", "x", "--file", "/nonexistent/menu.jpg"]).await;
    assert_eq!(code(&o), 5, "a file that cannot be read: {}", stderr(&o));
    assert!(stderr(&o).contains("/nonexistent/menu.jpg"), "{}", stderr(&o));
    assert_eq!(s.sandbox.requests().len(), 1, "only the first send went out");
    s.stop().await;

    // A server that fails: 500 for everything.
    let failing = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", failing.local_addr().expect("addr"));
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = failing.accept().await {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let body = "database unavailable";
            let answer = format!(
                "HTTP/1.1 500 Internal Server Error\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    let o = cli(&["list", "--server", &url, "--api-key", KEY], &[]).await;
    assert_eq!(code(&o), 5, "a server error: {}", stderr(&o));
    assert!(stderr(&o).contains("500") && stderr(&o).contains("database unavailable"), "{}", stderr(&o));
}

#[tokio::test]
async fn bad_arguments_exit_2_with_a_clear_message() {
    let cases: &[(&[&str], &str)] = &[
        (&["send", "--to", "+15550100001"], "--text"),
        (&["send", "--to", "+1", "--text", "x", "--policy", "a", "--chain", "sms"], "cannot be used with"),
        (&["send", "--to", "+1", "--text", "x", "--timeout", "5s"], "--chain"),
        (&["send", "--text", "x"], "no address for the contact"),
        (&["send", "--to", "+1", "--text", "x", "--var", "novalue"], "KEY=VALUE"),
        (&["send", "--to", "+1", "--text", "x", "--chain", "sms", "--timeout", "soon"], "--timeout"),
        (&["status"], "<ID>"),
        (&["list", "--since", "yesterday"], "--since"),
        (&["list", "--server", "ftp://example"], "http://"),
        (&["frobnicate"], "unrecognized subcommand"),
    ];
    for (args, says) in cases {
        let o = cli(args, &[("CASCADE_SERVER", "http://127.0.0.1:9")]).await;
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{args:?} should say {says:?}:\n{}", stderr(&o));
    }
}

#[tokio::test]
async fn help_has_examples() {
    for args in [&["--help"][..], &["send", "--help"], &["demo", "--help"], &["config", "check", "--help"]] {
        let o = cli(args, &[]).await;
        assert_eq!(code(&o), 0);
        assert!(stdout(&o).contains("Example"), "{args:?}:\n{}", stdout(&o));
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

#[tokio::test]
async fn config_check_names_every_problem_with_key_and_file() {
    let dir = std::env::temp_dir().join(format!("cascade-cli-config-{}", std::process::id()));
    let good = write(
        &dir,
        "good.toml",
        "[store]\nkind = \"memory\"\n\n[connections.tg]\nadapter = \"telegram-bot\"\nbot_token = \"1:abc\"\n\n[policies.default]\nsteps = [{ channel = \"telegram\" }]\n",
    );
    let o = cli(&["config", "check", good.to_str().expect("path")], &[]).await;
    assert_eq!(code(&o), 0, "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("valid") && stdout(&o).contains("1 connection"), "{}", stdout(&o));

    let bad = write(
        &dir,
        "bad.toml",
        "[connections.wa]\nadapter = \"whatsapp-cloud\"\naccess_token = \"t\"\n\n[policies.default]\nsteps = [{ channel = \"fax\" }]\n",
    );
    let o = cli(&["config", "check", bad.to_str().expect("path")], &[]).await;
    assert_eq!(code(&o), 2);
    let out = stdout(&o);
    for key in ["connections.wa.phone_number_id", "policies.default.steps[0].channel"] {
        assert!(out.contains(key), "names {key}:\n{out}");
    }
    let o = cli(&["config", "check", bad.to_str().expect("path"), "--json"], &[]).await;
    assert_eq!(code(&o), 2);
    let doc = &json_lines(&o)[0];
    assert_eq!(doc["valid"], false);
    let problems = doc["problems"].as_array().expect("problems");
    assert!(problems.len() >= 2, "{doc}");
    assert!(problems.iter().all(|p| p["key"].is_string() && p["message"].is_string()), "{doc}");

    let o = cli(&["config", "check", dir.join("missing.toml").to_str().expect("path")], &[]).await;
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("no such file"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}
