//! The `cascade-server` binary end to end: a config file, SQLite, the provider sandbox and the
//! real WhatsApp and Twilio adapters over real HTTP, signed provider webhooks back to the
//! server; a restart continues from the store; SIGTERM shuts down cleanly; `--check-config`
//! reports every problem with its key.

mod common;

use std::process::Command;

use cascade_sandbox::Sandbox;
use common::{Api, KEY, Server, free_port, sandbox_config, temp_dir, write_config};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_cascades_through_the_sandbox_survives_a_restart_and_stops_on_sigterm() {
    let port = free_port();
    let scenarios = r#"
[default]
behaviour = "deliver"
after = "100ms"

[[recipient]]
address = "+15550100002"
channels = ["whatsapp"]
behaviour = "not_on_channel"
"#;
    let sandbox = Sandbox::start(sandbox_config(port, scenarios)).await.expect("sandbox");
    let dir = temp_dir();
    let config = write_config(&dir, port, &sandbox);

    let server = Server::start(&config, port).await;
    let client = reqwest::Client::new();
    let start = |phone: &str, key: &str| {
        client
            .post(format!("{}/v1/cascades", server.base))
            .bearer_auth(KEY)
            .header("idempotency-key", key)
            .json(&json!({"contact": {"name": "Ann", "phone": phone}, "message": {"text": "Hi {{contact.name}}"}, "policy": "default"}))
            .send()
    };
    let on_whatsapp = start("+15550100001", "a").await.expect("post").json::<Value>().await.expect("json");
    let not_on_whatsapp = start("+15550100002", "b").await.expect("post").json::<Value>().await.expect("json");
    let a = on_whatsapp["id"].as_str().expect("id").to_owned();
    let b = not_on_whatsapp["id"].as_str().expect("id").to_owned();

    let view = Api::new(&server.base).wait_state(&a, "delivered").await;
    assert_eq!(view["outcome"]["channel"], "whatsapp", "{view}");
    let view = Api::new(&server.base).wait_state(&b, "delivered").await;
    assert_eq!(view["outcome"]["channel"], "sms", "fell over to SMS, delivered by Twilio's signed callback: {view}");
    assert_eq!(view["attempts"][0]["error"]["class"], "unreachable", "{view}");

    // Sends counted by the sandbox equal attempts recorded: nothing twice.
    let sends = |provider: &str| common::sends(&sandbox, provider);
    assert_eq!((sends("whatsapp"), sends("sms")), (2, 1));

    let status = server.terminate();
    assert!(status.success(), "SIGTERM is a clean exit: {status:?}");

    // After a restart on the same file, the cascades are there, and a repeat sends nothing.
    let server = Server::start(&config, port).await;
    let view = Api::new(&server.base).wait_state(&b, "delivered").await;
    assert_eq!(view["id"], b);
    let again = client
        .post(format!("{}/v1/cascades", server.base))
        .bearer_auth(KEY)
        .header("idempotency-key", "b")
        .json(&json!({"contact": {"name": "Ann", "phone": "+15550100002"}, "message": {"text": "Hi {{contact.name}}"}, "policy": "default"}))
        .send()
        .await
        .expect("post");
    assert_eq!(again.status(), 202);
    assert_eq!(again.json::<Value>().await.expect("json")["id"], b);
    assert_eq!((sends("whatsapp"), sends("sms")), (2, 1));
    assert!(server.terminate().success());
    sandbox.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn check_config_names_every_problem_and_exits_2() {
    let dir = temp_dir();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        r#"
[server]
listen = "127.0.0.1:8080"

[connections.wa]
adapter = "whatsapp-cloud"
access_token = "t"
phone_number_id = "not-a-number"

[policies.default]
steps = [{ channel = "telegram" }]

[api_keys.crm]
hash = "md5:abc"
scopes = ["send"]
"#,
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_cascade-server"))
        .args(["--check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in ["connections.wa.phone_number_id", "policies.default.steps[0].channel", "api_keys.crm.hash"] {
        assert!(err.contains(key), "{key} missing from:\n{err}");
    }

    std::fs::write(&path, "[server]\nlisen = \"127.0.0.1:1\"\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_cascade-server"))
        .args(["--check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lisen") && err.contains("bad.toml"), "names the key and the file:\n{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_cascade-server")).args(["--hash-key", "abc"]).output().expect("run");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let _ = std::fs::remove_dir_all(dir);
}
