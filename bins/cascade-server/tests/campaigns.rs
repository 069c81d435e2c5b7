//! Campaigns end to end: the real server on SQLite, killed with SIGKILL in the middle of a
//! campaign and started again; the sandbox's request log is the witness that every recipient
//! was started once and nobody got two messages.

mod common;

use std::time::Duration;

use common::{KEY, System};
use serde_json::{Value, json};

/// Reads a campaign's progress.
async fn progress(system: &System, id: &str) -> Value {
    let response = system
        .api
        .client
        .get(format!("{}/v1/campaigns/{id}", system.server.base))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("GET campaign");
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

/// Polls the campaign until `done` holds, within `limit`.
async fn wait(system: &System, id: &str, limit: Duration, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let p = progress(system, id).await;
        if done(&p) {
            return p;
        }
        assert!(tokio::time::Instant::now() < deadline, "campaign {id}: no {what} within {limit:?}: {p:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn phone(i: usize) -> String {
    format!("+1201555{i:04}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_killed_mid_way_finishes_after_a_restart_and_nobody_gets_two_messages() {
    let mut system = System::start("[default]\nbehaviour = \"deliver\"\nafter = \"100ms\"\n").await;
    const N: usize = 240;
    let recipients: Vec<Value> = (0..N).map(|i| json!({"phone": phone(i), "name": format!("R{i}")})).collect();
    let body = json!({
        "name": "restart",
        "message": {"text": "Hi {{contact.name}}"},
        "policy": {"steps": [{"channel": "sms", "until": "delivered", "timeout": "5s"}]},
        "rate": "40/s",
        "recipients": recipients,
    });
    let response = system
        .api
        .client
        .post(format!("{}/v1/campaigns", system.server.base))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .expect("POST campaign");
    let status = response.status();
    let created: Value = response.json().await.expect("json");
    assert_eq!(status, 201, "{created:#}");
    assert_eq!(created["report"]["valid"], N);
    let id = created["campaign"]["id"].as_str().expect("id").to_owned();

    // Kill the server a second or two in: some recipients started, most not.
    wait(&system, &id, Duration::from_secs(20), "first starts", |p| p["started"].as_u64() >= Some(40)).await;
    let killed = system.restart(true).await;
    assert!(!killed.success(), "SIGKILL ends the server abnormally: {killed:?}");
    let before = system.sends("sms");
    assert!(before < N, "the kill came before the end: {before} sent");

    // The new process takes the campaign over once the dead one's lease lapses.
    let done = wait(&system, &id, Duration::from_secs(60), "end", |p| {
        p["state"] == "finished" && p["running"] == 0 && p["remaining"] == 0
    })
    .await;
    assert_eq!(done["started"], N, "every recipient started: {done:#}");
    // A status the sandbox posted while the server was down is lost (as a provider's webhook
    // would be without retries): those few cascades end failed after their step's timeout.
    // Every other one is delivered, and nobody got a second message.
    let (delivered, failed) = (done["delivered"].as_u64().expect("n"), done["failed"].as_u64().expect("n"));
    assert_eq!(delivered + failed, N as u64, "{done:#}");
    assert!(failed <= 10, "only cascades caught by the kill fail: {done:#}");
    assert_eq!(done["delivered_by_channel"]["sms"], delivered, "{done:#}");
    let sent = system.sends("sms");
    assert!(sent as u64 >= delivered && sent <= N, "{sent} messages for {N} recipients");
    for i in 0..N {
        assert!(system.sends_to("sms", &phone(i)) <= 1, "recipient {i} got two messages");
    }
}
