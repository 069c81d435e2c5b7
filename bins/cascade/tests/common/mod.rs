//! What the tests that run the `cascade` binary against a real server share: the server (the
//! provider sandbox and a server on SQLite with the real WhatsApp and Twilio adapters,
//! in-process on loopback), a way to run the CLI as a separate process, and readers of its
//! output.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use cascade_sandbox::{Sandbox, SandboxConfig, Scenarios};
use serde_json::Value;

/// A key with the `send` and `read` scopes.
pub const KEY: &str = "cli-test-key-0123456789";
/// A key with the `read` scope only.
pub const READ_KEY: &str = "cli-read-key-0123456789";
/// A read key limited to one request per second.
pub const SLOW_KEY: &str = "cli-slow-key-0123456789";

/// A sandbox and a server using it, stopped (and its directory removed) by [`TestServer::stop`].
pub struct TestServer {
    pub url: String,
    pub dir: PathBuf,
    pub sandbox: Sandbox,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    /// Starts a sandbox whose recipients behave as `scenarios` (TOML) and a server using it.
    pub async fn start(scenarios: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let public = format!("http://{addr}");
        let mut sc = SandboxConfig {
            scenarios: Scenarios::from_toml(scenarios).expect("scenarios"),
            ..SandboxConfig::default()
        };
        sc.whatsapp.webhook_url = Some(format!("{public}/webhooks/wa"));
        let sandbox = Sandbox::start(sc).await.expect("sandbox");
        let dir = std::env::temp_dir().join(format!("cascade-cli-{}-{}", std::process::id(), addr.port()));
        std::fs::create_dir_all(&dir).expect("dir");
        let text = format!(
            r#"
[server]
listen = "{addr}"
public_url = "{public}"
secret = "cli-test-secret-0123456789abcdef0123"
upload_dir = "{dir}/uploads"
allow_internal_urls = true
shutdown_grace = "2s"

[store]
kind = "sqlite"
path = "{dir}/cascade.db"

[api_keys.cli]
key = "{KEY}"
scopes = ["send", "read"]

[api_keys.reader]
key = "{READ_KEY}"
scopes = ["read"]

[api_keys.slow]
key = "{SLOW_KEY}"
scopes = ["read"]
rate_limit = 1

[connections.wa]
adapter = "whatsapp-cloud"
access_token = "{wa_token}"
phone_number_id = "{wa_phone}"
app_secret = "{wa_secret}"
base_url = "{wa_base}"
price = "0.0085"

[connections.sms]
adapter = "twilio"
account_sid = "{tw_sid}"
auth_token = "{tw_token}"
from = "+15550009999"
status_callback = "{public}/webhooks/sms"
base_url = "{tw_base}"
mms = true
price = "0.04"

[policies.default]
steps = [
  {{ channel = "whatsapp", until = "delivered", timeout = "3s" }},
  {{ channel = "sms", until = "delivered", timeout = "3s" }},
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
        let config = cascade_config::from_toml(&text).expect("config");
        let built = cascade_config::build(&config).await.expect("build");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = built
                .app
                .serve(
                    listener,
                    async move {
                        let _ = stopped.await;
                    },
                    Duration::from_secs(2),
                )
                .await;
        });
        Self { url: public, dir, sandbox, stop: Some(stop), task }
    }

    /// Runs `cascade ARGS` against this server with the send+read key.
    pub async fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_key(KEY, args).await
    }

    pub async fn cli_with_key(&self, key: &str, args: &[&str]) -> Output {
        cli(args, &[("CASCADE_SERVER", &self.url), ("CASCADE_API_KEY", key)]).await
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the binary with `env` (and nothing inherited that could point it elsewhere).
pub async fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_cascade"));
    c.args(args).env_remove("CASCADE_SERVER").env_remove("CASCADE_API_KEY").env("NO_COLOR", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    tokio::time::timeout(Duration::from_secs(60), c.output()).await.expect("the CLI finished within 60 s").expect("run")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().expect("exited")
}

/// The JSON documents printed, one per line.
pub fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o).lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect(l)).collect()
}
