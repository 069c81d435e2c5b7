//! `cascade demo`: the server on SQLite with the provider sandbox behind every channel, and
//! six contacts whose cascades show what the engine does — delivered on the first channel,
//! not on WhatsApp, silent then SMS, everything failing, an existing chat first, a reply that
//! ends the chain. A live timeline per contact, then a summary and a check that each contact
//! ended as its scenario says (exit 1 if not). `--serve` keeps everything running afterwards.
//!
//! The demo talks to its own server over HTTP with the same client as `cascade send`, and the
//! server talks to the sandbox with the real adapters: nothing is short-circuited.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use cascade_engine::{Cost, Event, EventKind, Outcome};
use cascade_sandbox::{Sandbox, SandboxConfig, Scenarios};
use clap::Args;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::cascades::{View, parse_view};
use crate::client::Client;
use crate::exit::{self, Failure};
use crate::out::Out;
use crate::timeline::Timeline;

/// The demo's server configuration, with `@NAMES@` to fill in.
const CONFIG: &str = include_str!("cascade.toml");
/// How the demo's contacts behave in the sandbox.
const SCENARIOS: &str = include_str!("scenarios.toml");
/// The Telegram webhook secret and MAX subscription secret the demo's sandbox and server share.
const TELEGRAM_SECRET: &str = "sandbox-telegram-webhook-secret";
const MAX_SECRET: &str = "sandbox-max-webhook-secret";
/// The price of one SMS in the demo, the yardstick of the cost summary.
const SMS_PRICE: Cost = Cost::from_micros(40_000);

/// `cascade demo` options.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  cascade demo                      run the six contacts, print the summary, exit (0: all as expected)
  cascade demo --serve              ... then keep the server and the sandbox up until Ctrl-C
  cascade demo --serve --listen 127.0.0.1:9000 --data-dir ./demo-data

With --serve, in another terminal:
  export CASCADE_SERVER=http://127.0.0.1:8080 CASCADE_API_KEY=<the printed key>
  cascade send --to +15550100001 --text 'Hi {{contact.name}}' --name Ann --policy demo --wait
  cascade list")]
pub struct DemoArgs {
    /// Keep the server and the sandbox running after the summary, until Ctrl-C or SIGTERM.
    #[arg(long)]
    serve: bool,
    /// Where the server listens (default: 127.0.0.1:8080 with --serve, a free port without).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Where the SQLite file and uploads go (default: a new temporary directory).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// One demo contact: who, under which policy, and how their cascade must end.
struct Contact {
    name: &'static str,
    scenario: &'static str,
    policy: &'static str,
    contact: Value,
    expect: Expect,
}

/// How a demo contact's cascade must end: `delivered` when `delivered` says on what, else
/// `failed`.
struct Expect {
    /// The winning channel and status, when delivered.
    delivered: Option<(&'static str, &'static str)>,
    /// The channels tried, in order.
    path: &'static [&'static str],
    /// Whether the timeline shows the existing chat moved first.
    existing_chat_first: bool,
}

fn contacts() -> Vec<Contact> {
    vec![
        Contact {
            name: "Alice",
            scenario: "delivered on the first channel",
            policy: "demo",
            contact: json!({"name": "Alice", "phone": "+15550100001", "addresses": {"telegram": "700001"}}),
            expect: Expect {
                delivered: Some(("whatsapp", "delivered")),
                path: &["whatsapp"],
                existing_chat_first: false,
            },
        },
        Contact {
            name: "Bob",
            scenario: "not on WhatsApp → Telegram",
            policy: "demo",
            contact: json!({"name": "Bob", "phone": "+15550100002", "addresses": {"telegram": "700002"}}),
            expect: Expect {
                delivered: Some(("telegram", "sent")),
                path: &["whatsapp", "telegram"],
                existing_chat_first: false,
            },
        },
        Contact {
            name: "Carol",
            scenario: "accepted, silent → timeout → SMS",
            policy: "demo",
            contact: json!({"name": "Carol", "phone": "+15550100003"}),
            expect: Expect {
                delivered: Some(("sms", "delivered")),
                path: &["whatsapp", "sms"],
                existing_chat_first: false,
            },
        },
        Contact {
            name: "Dave",
            scenario: "everything fails → failed + callback",
            policy: "demo",
            contact: json!({"name": "Dave", "phone": "+15550100004",
                "addresses": {"telegram": "700004", "viber": "dave-viber-0004==", "max": "700014"}}),
            expect: Expect {
                delivered: None,
                path: &["whatsapp", "telegram", "viber", "max", "sms"],
                existing_chat_first: false,
            },
        },
        Contact {
            name: "Eve",
            scenario: "wrote on WhatsApp earlier → WhatsApp first",
            policy: "messengers_first",
            contact: json!({"name": "Eve", "phone": "+15550100005", "addresses": {"telegram": "700005"}}),
            expect: Expect {
                delivered: Some(("whatsapp", "delivered")),
                path: &["whatsapp"],
                existing_chat_first: true,
            },
        },
        Contact {
            name: "Frank",
            scenario: "replies → the chain stops",
            policy: "confirm",
            contact: json!({"name": "Frank", "phone": "+15550100006"}),
            expect: Expect {
                delivered: Some(("whatsapp", "replied")),
                path: &["whatsapp"],
                existing_chat_first: false,
            },
        },
    ]
}

/// A callback the demo's receiver got.
#[derive(Clone, Debug)]
struct Callback {
    cascade_id: String,
    state: String,
    signed: bool,
}

#[derive(Clone)]
struct Receiver {
    secret: String,
    tx: mpsc::UnboundedSender<Callback>,
}

/// The demo's callback endpoint: checks `X-Cascade-Signature`, then reports the outcome.
async fn receive_callback(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = headers.get("x-cascade-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let now = chrono::Utc::now().timestamp();
    let signed =
        cascade_channel_kit::webhook::verify_cascade_signature(r.secret.as_bytes(), header, &body, now).is_ok();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let _ = r.tx.send(Callback {
        cascade_id: v["cascade_id"].as_str().unwrap_or_default().to_owned(),
        state: v["state"].as_str().unwrap_or_default().to_owned(),
        signed,
    });
    if signed { StatusCode::NO_CONTENT } else { StatusCode::UNAUTHORIZED }
}

fn random_hex(bytes: usize) -> String {
    let mut s = String::new();
    while s.len() < bytes * 2 {
        s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    s.truncate(bytes * 2);
    s
}

/// The filled-in server configuration.
fn config_text(listen: SocketAddr, data: &std::path::Path, sandbox: &str, key: &str, callback_secret: &str) -> String {
    use cascade_sandbox as s;
    let public = format!("http://{listen}");
    let data = data.display().to_string().replace('\\', "/");
    [
        ("@LISTEN@", listen.to_string()),
        ("@PUBLIC@", public),
        ("@SECRET@", random_hex(32)),
        ("@DATA@", data),
        ("@KEY@", key.to_owned()),
        ("@CALLBACK_SECRET@", callback_secret.to_owned()),
        ("@SANDBOX@", sandbox.to_owned()),
        ("@WHATSAPP_TOKEN@", s::DEFAULT_WHATSAPP_TOKEN.to_owned()),
        ("@WHATSAPP_APP_SECRET@", s::DEFAULT_WHATSAPP_APP_SECRET.to_owned()),
        ("@WHATSAPP_PHONE_NUMBER_ID@", s::DEFAULT_WHATSAPP_PHONE_NUMBER_ID.to_owned()),
        ("@TELEGRAM_TOKEN@", s::DEFAULT_TELEGRAM_TOKEN.to_owned()),
        ("@TELEGRAM_SECRET@", TELEGRAM_SECRET.to_owned()),
        ("@VIBER_TOKEN@", s::DEFAULT_VIBER_TOKEN.to_owned()),
        ("@MAX_TOKEN@", s::DEFAULT_MAX_TOKEN.to_owned()),
        ("@MAX_SECRET@", MAX_SECRET.to_owned()),
        ("@TWILIO_ACCOUNT_SID@", s::DEFAULT_TWILIO_ACCOUNT_SID.to_owned()),
        ("@TWILIO_AUTH_TOKEN@", s::DEFAULT_TWILIO_AUTH_TOKEN.to_owned()),
        ("@SMS_PRICE@", SMS_PRICE.to_string()),
    ]
    .iter()
    .fold(CONFIG.to_owned(), |text, (name, value)| text.replace(name, value))
}

/// The sandbox's accounts: default credentials, webhooks to the demo server.
fn sandbox_config(public: &str) -> Result<SandboxConfig, Failure> {
    let scenarios = Scenarios::from_toml(SCENARIOS).map_err(|e| Failure::io(format!("the demo's scenarios: {e}")))?;
    let mut c = SandboxConfig { scenarios, ..SandboxConfig::default() };
    c.whatsapp.webhook_url = Some(format!("{public}/webhooks/wa_demo"));
    c.telegram.webhook_url = Some(format!("{public}/webhooks/tg_demo"));
    c.telegram.secret_token = Some(TELEGRAM_SECRET.to_owned());
    c.viber.webhook_url = Some(format!("{public}/webhooks/viber_demo"));
    c.max.webhook_url = Some(format!("{public}/webhooks/max_demo"));
    c.max.secret = Some(MAX_SECRET.to_owned());
    c.twilio.inbound_url = Some(format!("{public}/webhooks/sms_demo"));
    Ok(c)
}

/// Runs the demo.
pub async fn run(out: &Out, args: DemoArgs) -> Result<u8, Failure> {
    let started = Instant::now();
    let listen = args.listen.unwrap_or_else(|| {
        if args.serve { SocketAddr::from(([127, 0, 0, 1], 8080)) } else { SocketAddr::from(([127, 0, 0, 1], 0)) }
    });
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::io(format!("cannot listen on {listen}: {e} (choose another with --listen)")))?;
    let addr = listener.local_addr().map_err(|e| Failure::io(e.to_string()))?;
    let public = format!("http://{addr}");
    let data = match &args.data_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("cascade-demo-{}-{}", std::process::id(), random_hex(4))),
    };
    std::fs::create_dir_all(&data).map_err(|e| Failure::io(format!("--data-dir {}: {e}", data.display())))?;

    // The callback receiver, the sandbox, then the server.
    let callback_secret = random_hex(24);
    let (callback_tx, mut callbacks) = mpsc::unbounded_channel();
    let receiver = Receiver { secret: callback_secret.clone(), tx: callback_tx };
    let callback_listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| Failure::io(format!("cannot listen for callbacks: {e}")))?;
    let callback_url =
        format!("http://{}/callback", callback_listener.local_addr().map_err(|e| Failure::io(e.to_string()))?);
    let callback_app =
        axum::Router::new().route("/callback", axum::routing::post(receive_callback)).with_state(receiver);
    let callback_task = tokio::spawn(async move {
        let _ = axum::serve(callback_listener, callback_app).await;
    });
    let sandbox = Sandbox::start(sandbox_config(&public)?)
        .await
        .map_err(|e| Failure::io(format!("cannot start the sandbox: {e}")))?;
    let key = format!("ck_demo_{}", random_hex(16));
    let text = config_text(addr, &data, &sandbox.url(), &key, &callback_secret);
    let config = cascade_config::from_toml(&text)
        .map_err(|p| Failure::io(format!("the demo's configuration is wrong (a bug):\n{p}")))?;
    let _telemetry = cascade_config::telemetry::init(&config.server);
    let built =
        cascade_config::build(&config).await.map_err(|p| Failure::io(format!("cannot start the server: {p}")))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = built.app.clone();
    let grace = config.server.shutdown_grace;
    let server = tokio::spawn(async move {
        app.serve(
            listener,
            async move {
                let _ = stop_rx.await;
            },
            grace,
        )
        .await
    });

    if out.json {
        out.json_line(&json!({"server": public, "api_key": key, "sandbox": sandbox.url(), "data_dir": data}));
    } else {
        println!(
            "{}",
            out.bold("cascade demo: six contacts, the sandbox behind WhatsApp, Telegram, Viber, MAX and SMS")
        );
        println!("server: {public}");
        println!("api key: {key}");
        println!("{}", out.dim(format!("sandbox: {}   data: {}", sandbox.url(), data.display())));
        println!();
    }

    let result = run_contacts(out, &public, &key, &callback_url, &sandbox, &mut callbacks, started).await;
    if result.is_ok() && args.serve {
        if out.json {
            out.json_line(&json!({"serving": public, "api_key": key}));
        } else {
            println!();
            println!("serving until Ctrl-C; try, in another terminal:");
            println!("  export CASCADE_SERVER={public} CASCADE_API_KEY={key}");
            println!(
                "  cascade send --to +15550100001 --name Ann --text 'Hi {{{{contact.name}}}}' --policy demo --wait"
            );
            println!("  cascade list");
            println!("or open the console, and log in with the key: {public}/console");
            println!("server: {public}");
            println!("api key: {key}");
        }
        cascade_http::shutdown_signal().await;
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    sandbox.stop().await;
    callback_task.abort();
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&data);
    }
    result
}

/// Starts every contact's cascade, prints their timelines live, then the summary; the exit
/// code says whether each ended as its scenario says.
async fn run_contacts(
    out: &Out,
    public: &str,
    key: &str,
    callback_url: &str,
    sandbox: &Sandbox,
    callbacks: &mut mpsc::UnboundedReceiver<Callback>,
    started: Instant,
) -> Result<u8, Failure> {
    let client = Client::new(public, Some(key.to_owned()))?;
    let contacts = contacts();
    let width = contacts.iter().map(|c| c.name.len()).max().unwrap_or(0);
    if !out.json {
        for c in &contacts {
            println!("  {:<width$}  {}  {}", c.name, c.scenario, out.dim(format!("(policy {})", c.policy)));
        }
        println!();
    }

    // Eve wrote to the WhatsApp number a while ago: her chat is open.
    let eve = contacts.iter().find(|c| c.expect.existing_chat_first).and_then(|c| c.contact["phone"].as_str());
    if let Some(phone) = eve {
        let status = sandbox
            .inbound("whatsapp", phone, "Hi! Is my order ready?")
            .await
            .map_err(|e| Failure::io(format!("the sandbox could not deliver Eve's message: {e}")))?;
        if status >= 300 {
            return Err(Failure::io(format!("the server answered {status} to Eve's WhatsApp message")));
        }
    }

    // Idempotency keys for this run: a second run on the same --data-dir starts new cascades.
    let run = random_hex(4);
    let mut ids = Vec::new();
    for c in &contacts {
        let body = json!({
            "contact": c.contact,
            "message": {"text": "Hi {{contact.name}}, your order #1042 is ready for pickup."},
            "policy": c.policy,
            "callback_url": callback_url,
            "metadata": {"demo": c.name},
        });
        let answer = client.start(&body, Some(&format!("demo-{run}-{}", c.name))).await?;
        ids.push(crate::cascades::started_id(&answer)?);
    }

    // Follow every cascade's event stream; print lines as they come.
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Result<Event, Failure>)>();
    for (i, id) in ids.iter().enumerate() {
        let (client, id, tx) = (client.clone(), id.clone(), tx.clone());
        tokio::spawn(async move {
            match client.events(&id).await {
                Ok(mut events) => loop {
                    match events.next().await {
                        Ok(Some(e)) => {
                            let _ = tx.send((i, Ok(e)));
                        }
                        Ok(None) => break,
                        Err(e) => {
                            let _ = tx.send((i, Err(e.into())));
                            break;
                        }
                    }
                },
                Err(f) => {
                    let _ = tx.send((i, Err(f)));
                }
            }
        });
    }
    drop(tx);
    let mut timelines: Vec<Timeline> = contacts.iter().map(|_| Timeline::default()).collect();
    let mut finished = vec![false; contacts.len()];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while finished.iter().any(|f| !f) {
        let next = tokio::time::timeout_at(deadline, rx.recv()).await;
        let Ok(Some((i, event))) = next else { break };
        let event = event?;
        if matches!(event.kind, EventKind::Finished { .. }) {
            finished[i] = true;
        }
        if out.json {
            out.json_line(&json!({"contact": contacts[i].name, "cascade_id": ids[i], "event": event}));
        } else {
            let line = timelines[i].line(out, &event);
            let at = started.elapsed().as_secs_f64();
            println!(
                "{}  {:<width$}  {:<9} {}",
                out.dim(format!("{at:>6.2}s")),
                out.bold(contacts[i].name),
                line.channel,
                line.text
            );
        }
    }

    // Callbacks: one per cascade, signed.
    let mut got: BTreeMap<String, Callback> = BTreeMap::new();
    let wait = tokio::time::Instant::now() + Duration::from_secs(20);
    while got.len() < ids.len() {
        match tokio::time::timeout_at(wait, callbacks.recv()).await {
            Ok(Some(cb)) => {
                got.insert(cb.cascade_id.clone(), cb);
            }
            _ => break,
        }
    }

    // The final state of each, checked against its scenario.
    let mut rows = Vec::new();
    for (c, id) in contacts.iter().zip(&ids) {
        let view = parse_view(&client.get(id).await?)?;
        let path: Vec<String> = view.attempts.iter().map(|a| a.channel.to_string()).collect();
        let problems = check(c, &view, &path, got.get(id));
        rows.push(Row { contact: c, view, path, problems });
    }
    let sends = sandbox.requests().iter().filter(|r| r.provider != "sandbox").count();
    let attempts: usize = rows.iter().map(|r| r.path.len()).sum();
    let wrong: usize = rows.iter().filter(|r| !r.problems.is_empty()).count();
    summary(out, &rows, &got, sends, attempts, started);
    if sends != attempts && !out.json {
        println!(
            "{}",
            out.state(&format!("the sandbox counted {sends} send(s) but the cascades recorded {attempts} attempt(s)"))
        );
    }
    Ok(if wrong == 0 && sends == attempts { exit::OK } else { exit::UNDELIVERED })
}

/// What is not as the scenario says (empty: all is well).
fn check(c: &Contact, v: &View, path: &[String], callback: Option<&Callback>) -> Vec<String> {
    let mut problems = Vec::new();
    let state = if c.expect.delivered.is_some() { "delivered" } else { "failed" };
    if v.state != state {
        problems.push(format!("ended {} instead of {state}", v.state));
    }
    if let (Some((channel, status)), Some(Outcome::Delivered { channel: got, status: reached, .. })) =
        (c.expect.delivered, &v.outcome)
        && (got.as_str() != channel || reached.to_string() != status)
    {
        problems.push(format!("delivered on {got} ({reached}) instead of {channel} ({status})"));
    }
    if path != c.expect.path {
        problems.push(format!("tried {} instead of {}", path.join(" → "), c.expect.path.join(" → ")));
    }
    let moved = v.events.iter().any(|e| matches!(e.kind, EventKind::ExistingChatFirst { .. }));
    if moved != c.expect.existing_chat_first {
        problems.push(if moved {
            "an existing chat went first".into()
        } else {
            "the existing chat did not go first".into()
        });
    }
    match callback {
        None => problems.push("no callback arrived".into()),
        Some(cb) if !cb.signed => problems.push("the callback's signature did not verify".into()),
        Some(cb) if cb.state != v.state => {
            problems.push(format!("the callback said {} but the cascade {}", cb.state, v.state))
        }
        Some(_) => {}
    }
    problems
}

/// One contact's finished cascade, the channels it tried, and what is not as expected.
struct Row<'a> {
    contact: &'a Contact,
    view: View,
    path: Vec<String>,
    problems: Vec<String>,
}

fn summary(
    out: &Out,
    rows: &[Row<'_>],
    callbacks: &BTreeMap<String, Callback>,
    sends: usize,
    attempts: usize,
    started: Instant,
) {
    let sms_price = SMS_PRICE;
    let total: Cost = rows.iter().map(|r| r.view.cost).sum();
    let all_sms = sms_price.times(rows.len() as u64);
    let mut by_channel: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed = 0;
    for r in rows {
        match &r.view.outcome {
            Some(Outcome::Delivered { channel, .. }) => *by_channel.entry(channel.to_string()).or_default() += 1,
            _ => failed += 1,
        }
    }
    if out.json {
        let contacts: Vec<Value> = rows
            .iter()
            .map(|Row { contact: c, view: v, path, problems }| {
                json!({"contact": c.name, "scenario": c.scenario, "cascade_id": v.id, "state": v.state,
                    "outcome": v.outcome, "path": path,
                    "cost": v.cost, "callback": callbacks.get(&v.id).map(|cb| json!({"state": cb.state, "signed": cb.signed})),
                    "as_expected": problems.is_empty(), "problems": problems})
            })
            .collect();
        out.json_line(&json!({"summary": {
            "contacts": contacts, "delivered_by_channel": by_channel, "failed": failed,
            "cost": total, "all_sms_cost": all_sms, "sandbox_sends": sends, "attempts": attempts,
            "seconds": started.elapsed().as_secs_f64(),
        }}));
        return;
    }
    println!();
    let mut table = out.table(&["contact", "scenario", "outcome", "path", "cost", "callback", "as expected"]);
    for Row { contact: c, view: v, path, problems } in rows {
        let outcome = match &v.outcome {
            Some(Outcome::Delivered { channel, status, .. }) => {
                format!("{} {channel} ({status})", out.state("delivered"))
            }
            Some(_) | None => out.state(&v.state),
        };
        let callback = match callbacks.get(&v.id) {
            Some(cb) if cb.signed => format!("{} signed ✓", cb.state),
            Some(cb) => format!("{} BAD SIGNATURE", cb.state),
            None => "none".into(),
        };
        let ok = if problems.is_empty() {
            out.paint("✓", &console::Style::new().green().bold())
        } else {
            out.paint(format!("✗ {}", problems.join("; ")), &console::Style::new().red().bold())
        };
        table.add_row(vec![
            c.name.to_owned(),
            c.scenario.to_owned(),
            outcome,
            path.join(" → "),
            v.cost.to_string(),
            callback,
            ok,
        ]);
    }
    println!("{table}");
    println!();
    let delivered: Vec<String> = by_channel.iter().map(|(ch, n)| format!("{ch} {n}")).collect();
    println!("delivered by channel: {}; failed: {failed}", delivered.join(", "));
    let saved = if all_sms.micros() > 0 { 100.0 * (1.0 - total.as_f64() / all_sms.as_f64()) } else { 0.0 };
    println!("cost: {total}, against {all_sms} for all {} by SMS at {sms_price} ({saved:.0}% saved)", rows.len());
    println!(
        "sandbox: {sends} provider request(s) for {attempts} attempt(s); {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_is_valid_and_names_every_placeholder() {
        let text = config_text(
            "127.0.0.1:8080".parse().expect("addr"),
            std::path::Path::new("/tmp/x"),
            "http://127.0.0.1:9",
            "ck_demo_0123456789abcdef",
            "cb-secret-0123456789",
        );
        assert!(!text.contains('@'), "a placeholder is left: {text}");
        let config = cascade_config::from_toml(&text).expect("valid");
        assert_eq!(config.connections.len(), 5);
        for c in contacts() {
            assert!(config.policies.contains_key(c.policy), "{}'s policy {} is configured", c.name, c.policy);
        }
    }

    #[test]
    fn a_contact_that_ends_otherwise_is_reported_with_why() {
        let contacts = contacts();
        let carol = contacts.iter().find(|c| c.name == "Carol").expect("Carol");
        // Delivered on WhatsApp straight away, without a callback: not what Carol's scenario says.
        let view = parse_view(&json!({
            "id": "c1", "state": "delivered", "created_at": "2026-01-01T00:00:00Z",
            "outcome": {"state": "delivered", "step": 0, "attempt": 1, "channel": "whatsapp", "status": "delivered"},
        }))
        .expect("view");
        let problems = check(carol, &view, &["whatsapp".to_owned()], None);
        assert!(problems.iter().any(|p| p.contains("instead of sms (delivered)")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("tried whatsapp instead of whatsapp → sms")), "{problems:?}");
        assert!(problems.iter().any(|p| p == "no callback arrived"), "{problems:?}");
        let signed = Callback { cascade_id: "c1".into(), state: "delivered".into(), signed: true };
        let path = ["whatsapp".to_owned(), "sms".to_owned()];
        let as_expected = parse_view(&json!({
            "id": "c1", "state": "delivered", "created_at": "2026-01-01T00:00:00Z",
            "outcome": {"state": "delivered", "step": 4, "attempt": 2, "channel": "sms", "status": "delivered"},
        }))
        .expect("view");
        assert_eq!(check(carol, &as_expected, &path, Some(&signed)), Vec::<String>::new());
    }

    #[test]
    fn the_scenarios_parse() {
        let s = Scenarios::from_toml(SCENARIOS).expect("scenarios");
        assert!(s.recipients.len() >= 6);
    }
}
