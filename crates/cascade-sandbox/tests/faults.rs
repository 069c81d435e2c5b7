//! The sandbox's transport faults over real HTTP: a `reset` send gets a TCP reset and no
//! answer; a `slow` send whose client gives up is carried through and logged as abandoned;
//! the request log tells accepted sends (with their message id) from refused ones.

use std::time::Duration;

use cascade_sandbox::{Recorded, Sandbox, SandboxConfig, Scenarios};
use serde_json::{Value, json};

async fn sandbox(scenarios: &str) -> Sandbox {
    let config = SandboxConfig { scenarios: Scenarios::from_toml(scenarios).expect("scenarios"), ..Default::default() };
    Sandbox::start(config).await.expect("sandbox")
}

/// A WhatsApp text to `to` through `client`.
async fn whatsapp(sandbox: &Sandbox, client: &reqwest::Client, to: &str) -> reqwest::Result<reqwest::Response> {
    let url = format!(
        "{}/v21.0/{}/messages",
        sandbox.base_url("whatsapp"),
        cascade_sandbox::DEFAULT_WHATSAPP_PHONE_NUMBER_ID
    );
    client
        .post(url)
        .bearer_auth(cascade_sandbox::DEFAULT_WHATSAPP_TOKEN)
        .json(&json!({"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": "hi"}}))
        .send()
        .await
}

/// The log entries of sends to `to`.
fn sends_to(sandbox: &Sandbox, to: &str) -> Vec<Recorded> {
    sandbox.requests().into_iter().filter(|r| r.recipient.as_deref() == Some(to)).collect()
}

/// Every error in `e`'s chain of sources, as text.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_send_gets_no_answer_and_the_next_one_is_accepted() {
    let sandbox = sandbox("[[recipient]]\naddress = \"15550200001\"\nbehaviour = \"reset\"\ntimes = 2\n").await;
    let client = reqwest::Client::new();
    for n in 1..=2 {
        let err = whatsapp(&sandbox, &client, "15550200001").await.expect_err("no answer");
        assert!(!err.is_timeout() && !err.is_connect() && err.status().is_none(), "send {n}: {err:?}");
        let text = chain(&err).to_lowercase();
        assert!(text.contains("reset"), "send {n}: a TCP reset, not a clean close: {text}");
    }
    let answer = whatsapp(&sandbox, &client, "15550200001").await.expect("the third send is answered");
    assert_eq!(answer.status(), 200);
    let id = answer.json::<Value>().await.expect("json")["messages"][0]["id"].as_str().expect("id").to_owned();

    let log = sends_to(&sandbox, "15550200001");
    let seen: Vec<_> = log.iter().map(|r| (r.status, r.reset, r.message_id.clone(), r.abandoned)).collect();
    assert_eq!(seen, [(0, true, None, false), (0, true, None, false), (200, false, Some(id), false)]);
    let logged = serde_json::to_value(&log[0]).expect("json");
    assert_eq!(logged["reset"], true);
    assert!(logged.get("message_id").is_none() && logged.get("abandoned").is_none(), "{logged}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_send_whose_client_gave_up_is_carried_through_and_marked_abandoned() {
    let sandbox = sandbox(
        r#"
[[recipient]]
address = "15550200002"
behaviour = "slow"
delay = "800ms"
times = 1

[[recipient]]
address = "15550200003"
behaviour = "slow"
delay = "100ms"
"#,
    )
    .await;
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(200)).build().expect("client");
    let err = whatsapp(&sandbox, &impatient, "15550200002").await.expect_err("timed out");
    assert!(err.is_timeout(), "{err:?}");
    // The client hung up at 200 ms; the sandbox finishes the send at 800 ms.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let first = loop {
        if let Some(r) = sends_to(&sandbox, "15550200002").pop() {
            break r;
        }
        assert!(tokio::time::Instant::now() < deadline, "the abandoned send was never logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(first.abandoned, "{first:?}");
    assert_eq!(first.status, 200);
    assert!(first.message_id.as_deref().is_some_and(|id| id.starts_with("wamid.")), "accepted all the same: {first:?}");

    // `times = 1`: the next send is answered at once; one within the client's patience is
    // answered and not abandoned.
    let answer = whatsapp(&sandbox, &impatient, "15550200002").await.expect("answered");
    assert_eq!(answer.status(), 200);
    let answer = whatsapp(&sandbox, &impatient, "15550200003").await.expect("answered");
    assert_eq!(answer.status(), 200);
    let log: Vec<_> = sandbox.requests().iter().map(|r| (r.recipient.clone(), r.abandoned)).collect();
    assert_eq!(
        log,
        [
            (Some("15550200002".to_owned()), true),
            (Some("15550200002".to_owned()), false),
            (Some("15550200003".to_owned()), false)
        ]
    );
}

/// Viber refuses with HTTP 200 and a status in the body: the log's `message_id` says what was
/// accepted, whatever the HTTP status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_tells_accepted_sends_from_refused_ones() {
    let sandbox = sandbox(
        "[[recipient]]\naddress = \"viber-fault-1==\"\nbehaviour = \"rate_limited\"\n\n\
         [[recipient]]\naddress = \"15550200004\"\nbehaviour = \"server_error\"\n",
    )
    .await;
    let client = reqwest::Client::new();
    let viber = |receiver: &'static str| {
        client
            .post(format!("{}/send_message", sandbox.base_url("viber")))
            .header("X-Viber-Auth-Token", cascade_sandbox::DEFAULT_VIBER_TOKEN)
            .json(&json!({"receiver": receiver, "type": "text", "text": "hi", "sender": {"name": "Shop"}}))
            .send()
    };
    for _ in 0..2 {
        assert_eq!(viber("viber-fault-1==").await.expect("answer").status(), 200);
        whatsapp(&sandbox, &client, "15550200004").await.expect("answer");
    }
    let log: Vec<_> =
        sandbox.requests().iter().map(|r| (r.provider.clone(), r.status, r.message_id.is_some())).collect();
    assert_eq!(
        log,
        [
            ("viber".to_owned(), 200, false),
            ("whatsapp".to_owned(), 500, false),
            ("viber".to_owned(), 200, true),
            ("whatsapp".to_owned(), 200, true),
        ]
    );
}
