//! `cascade sandbox`: the provider sandbox on its own, until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use cascade_sandbox::{Sandbox, SandboxConfig, Scenarios};
use clap::Args;
use serde_json::json;

use crate::exit::{self, Failure};
use crate::out::Out;

/// `cascade sandbox` options.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  cascade sandbox --listen 127.0.0.1:9090 --scenarios scenarios.toml \\
      --webhook whatsapp=http://127.0.0.1:8080/webhooks/wa-main \\
      --webhook sms=http://127.0.0.1:8080/webhooks/sms-main
  cascade sandbox --accounts sandbox-accounts.toml --json

Point each connection's base_url at the printed prefix; credentials are the sandbox's defaults
(docs/sandbox.md) unless --accounts changes them. GET /_sandbox/requests lists every request.")]
pub struct SandboxArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
    /// How recipients behave (TOML or JSON; docs/sandbox.md). Without it everyone is delivered
    /// after a second.
    #[arg(long, value_name = "FILE")]
    scenarios: Option<PathBuf>,
    /// The providers' accounts and webhook URLs (TOML: `[whatsapp]`, `[telegram]`, `[twilio]`,
    /// `[viber]`, `[max]`, as `SandboxConfig`).
    #[arg(long, value_name = "FILE")]
    accounts: Option<PathBuf>,
    /// Where a provider sends its webhooks (repeatable): whatsapp, telegram, sms (Twilio's
    /// incoming messages; status callbacks go to each message's StatusCallback), viber, max.
    #[arg(long, value_name = "PROVIDER=URL")]
    webhook: Vec<String>,
}

fn config(args: &SandboxArgs) -> Result<SandboxConfig, Failure> {
    let mut config = match &args.accounts {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::io(format!("--accounts {}: {e}", path.display())))?;
            toml::from_str::<SandboxConfig>(&text)
                .map_err(|e| Failure::invalid(format!("--accounts {}: {e}", path.display())))?
        }
        None => SandboxConfig::default(),
    };
    config.listen = args.listen;
    if let Some(path) = &args.scenarios {
        config.scenarios = Scenarios::load(path).map_err(|e| Failure::invalid(format!("--scenarios {e}")))?;
    }
    for w in &args.webhook {
        let Some((provider, url)) = w.split_once('=') else {
            return Err(Failure::invalid(format!("--webhook {w:?}: write it as PROVIDER=URL")));
        };
        url::Url::parse(url).map_err(|e| Failure::invalid(format!("--webhook {w:?}: {e}")))?;
        let url = Some(url.to_owned());
        match provider {
            "whatsapp" => config.whatsapp.webhook_url = url,
            "telegram" => config.telegram.webhook_url = url,
            "sms" | "twilio" => config.twilio.inbound_url = url,
            "viber" => config.viber.webhook_url = url,
            "max" => config.max.webhook_url = url,
            other => {
                return Err(Failure::invalid(format!(
                    "--webhook {w:?}: no provider {other:?} (whatsapp, telegram, sms, viber, max)"
                )));
            }
        }
    }
    Ok(config)
}

/// The prefixes to give each adapter's `base_url`.
pub fn base_urls(sandbox: &Sandbox) -> serde_json::Value {
    json!({
        "whatsapp": sandbox.base_url("whatsapp"),
        "telegram": sandbox.base_url("telegram"),
        "sms": sandbox.base_url("sms"),
        "viber": sandbox.base_url("viber"),
        "max": sandbox.base_url("max"),
    })
}

/// Runs the sandbox until Ctrl-C or SIGTERM.
pub async fn run(out: &Out, args: SandboxArgs) -> Result<u8, Failure> {
    let config = config(&args)?;
    let rules = config.scenarios.recipients.len();
    let sandbox =
        Sandbox::start(config).await.map_err(|e| Failure::io(format!("cannot listen on {}: {e}", args.listen)))?;
    if out.json {
        out.json_line(&json!({"sandbox": sandbox.url(), "base_urls": base_urls(&sandbox), "scenario_rules": rules}));
    } else {
        println!("sandbox: {}", sandbox.url());
        let urls = base_urls(&sandbox);
        let mut table = out.table(&["provider", "adapter base_url"]);
        for p in ["whatsapp", "telegram", "sms", "viber", "max"] {
            table.add_row(vec![p.to_owned(), urls[p].as_str().unwrap_or_default().to_owned()]);
        }
        println!("{table}");
        println!("{rule} scenario rule(s); requests: {}/_sandbox/requests; Ctrl-C stops", sandbox.url(), rule = rules);
    }
    cascade_http::shutdown_signal().await;
    sandbox.stop().await;
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(webhook: &[&str]) -> SandboxArgs {
        SandboxArgs {
            listen: "127.0.0.1:0".parse().expect("addr"),
            scenarios: None,
            accounts: None,
            webhook: webhook.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn webhooks_are_set_per_provider_and_mistakes_named() {
        let c = config(&args(&["whatsapp=http://127.0.0.1:1/webhooks/wa", "sms=http://127.0.0.1:1/webhooks/sms"]))
            .expect("config");
        assert_eq!(c.whatsapp.webhook_url.as_deref(), Some("http://127.0.0.1:1/webhooks/wa"));
        assert_eq!(c.twilio.inbound_url.as_deref(), Some("http://127.0.0.1:1/webhooks/sms"));
        assert_eq!(c.viber.webhook_url, None);
        let e = config(&args(&["icq=http://x"])).expect_err("unknown provider");
        assert!(e.message.contains("\"icq\""), "{}", e.message);
        assert_eq!(config(&args(&["whatsapp"])).expect_err("no =").code, exit::INVALID);
    }
}
