//! The `cascade-server` binary end to end: a config file, SQLite, the provider sandbox and the
//! real WhatsApp and Twilio adapters over real HTTP, signed provider webhooks back to the
//! server; a restart continues from the store; SIGTERM shuts down cleanly; `--check-config`
//! reports every problem with its key.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cascade_sandbox::{Sandbox, SandboxConfig, Scenarios};
use serde_json::{Value, json};

const KEY: &str = "e2e-api-key-0123456789";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("cascade-server-e2e-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&d).expect("dir");
    d
}

fn write_config(dir: &Path, port: u16, sandbox: &Sandbox) -> PathBuf {
    let public = format!("http://127.0.0.1:{port}");
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "{public}"
secret = "e2e-secret-0123456789abcdef0123456789"
upload_dir = "{dir}/uploads"
allow_internal_urls = true
shutdown_grace = "5s"

[store]
kind = "sqlite"
path = "{dir}/cascade.db"

[api_keys.e2e]
key = "{KEY}"
scopes = ["admin"]

[connections.wa-main]
adapter = "whatsapp-cloud"
access_token = "{wa_token}"
phone_number_id = "{wa_phone}"
app_secret = "{wa_secret}"
base_url = "{wa_base}"

[connections.sms-main]
adapter = "twilio"
account_sid = "{tw_sid}"
auth_token = "{tw_token}"
from = "+15550009999"
status_callback = "{public}/webhooks/sms-main"
base_url = "{tw_base}"

[policies.default]
steps = [
  {{ channel = "whatsapp", until = "delivered", timeout = "20s" }},
  {{ channel = "sms", until = "delivered", timeout = "20s" }},
]
"#,
        dir = dir.display(),
        wa_token = cascade_sandbox::DEFAULT_WHATSAPP_TOKEN,
        wa_phone = cascade_sandbox::DEFAULT_WHATSAPP_PHONE_NUMBER_ID,
        wa_secret = cascade_sandbox::DEFAULT_WHATSAPP_APP_SECRET,
        wa_base = sandbox.base_url("whatsapp"),
        tw_sid = cascade_sandbox::DEFAULT_TWILIO_ACCOUNT_SID,
        tw_token = cascade_sandbox::DEFAULT_TWILIO_AUTH_TOKEN,
        tw_base = sandbox.base_url("twilio"),
    );
    let path = dir.join("cascade.toml");
    std::fs::write(&path, text).expect("config");
    path
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    async fn start(config: &Path, port: u16) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cascade-server"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
                return Self { child, base };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server did not become ready");
    }

    /// SIGTERM, then the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        assert!(status.success());
        for _ in 0..200 {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("the server did not stop within 10 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_state(base: &str, id: &str, state: &str) -> Value {
    let client = reqwest::Client::new();
    let mut last = Value::Null;
    for _ in 0..300 {
        last = client
            .get(format!("{base}/v1/cascades/{id}"))
            .bearer_auth(KEY)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if last["state"] == state {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cascade {id} never reached {state}: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_cascades_through_the_sandbox_survives_a_restart_and_stops_on_sigterm() {
    let port = free_port();
    let scenarios = Scenarios::from_toml(
        r#"
[default]
behaviour = "deliver"
after = "100ms"

[[recipient]]
address = "+15550100002"
channels = ["whatsapp"]
behaviour = "not_on_channel"
"#,
    )
    .expect("scenarios");
    let mut sandbox_config = SandboxConfig { scenarios, ..SandboxConfig::default() };
    sandbox_config.whatsapp.webhook_url = Some(format!("http://127.0.0.1:{port}/webhooks/wa-main"));
    let sandbox = Sandbox::start(sandbox_config).await.expect("sandbox");
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

    let view = wait_state(&server.base, &a, "delivered").await;
    assert_eq!(view["outcome"]["channel"], "whatsapp", "{view}");
    let view = wait_state(&server.base, &b, "delivered").await;
    assert_eq!(view["outcome"]["channel"], "sms", "fell over to SMS, delivered by Twilio's signed callback: {view}");
    assert_eq!(view["attempts"][0]["error"]["class"], "unreachable", "{view}");

    // Sends counted by the sandbox equal attempts recorded: nothing twice.
    let sends =
        |provider: &str| sandbox.requests().iter().filter(|r| r.provider == provider && r.method == "POST").count();
    assert_eq!((sends("whatsapp"), sends("sms")), (2, 1));

    let status = server.terminate();
    assert!(status.success(), "SIGTERM is a clean exit: {status:?}");

    // After a restart on the same file, the cascades are there, and a repeat sends nothing.
    let server = Server::start(&config, port).await;
    let view = wait_state(&server.base, &b, "delivered").await;
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
