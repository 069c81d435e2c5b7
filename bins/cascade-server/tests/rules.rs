//! The rules of a cascade (DESIGN §3, docs/rules.md) end to end: the real `cascade-server`
//! binary, the provider sandbox and the real adapters over real HTTP on loopback, provider
//! webhooks signed and sent back to the server. Each test runs its own server (free port,
//! temporary directory, SQLite) and sandbox, so they run in parallel; step timeouts are a few
//! seconds and every wait is a bounded poll.
//!
//! Outcomes are checked through the API, sends through the sandbox's request log ("sent
//! exactly once"), callbacks through a receiver in the test.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cascade_channel_kit::webhook::verify_cascade_signature;
use common::{
    CALLBACK_SECRET, Receiver, Relay, System, WA, channels, event_types, events_of, request, sandbox_config, statuses,
};
use serde_json::{Value, json};

/// The sandbox's webhooks about `message_id` so far, as (event, answer status).
fn webhooks_about(system: &System, message_id: &str) -> Vec<(String, Option<u16>)> {
    system
        .sandbox
        .webhooks()
        .into_iter()
        .filter(|w| w.message_id.as_deref() == Some(message_id))
        .map(|w| (w.event, w.status))
        .collect()
}

/// Waits until the sandbox has sent (and had answered) `count` webhooks about `message_id`.
async fn wait_webhooks(system: &System, message_id: &str, count: usize) -> Vec<(String, Option<u16>)> {
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let seen = webhooks_about(system, message_id);
        if seen.len() >= count {
            return seen;
        }
        assert!(tokio::time::Instant::now() < deadline, "{message_id}: only {seen:?} of {count} webhooks");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The provider message id of attempt `number` (from 1).
fn message_id(view: &Value, number: usize) -> String {
    view["attempts"][number - 1]["provider_message_id"].as_str().expect("a provider message id").to_owned()
}

/// How often `status` was recorded on attempt `number`.
fn count(view: &Value, number: usize, status: &str) -> usize {
    statuses(view, number).iter().filter(|s| *s == status).count()
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// A time field of the view, in seconds since the epoch.
fn seconds(view: &Value, field: &str) -> f64 {
    let t = view[field].as_str().unwrap_or_else(|| panic!("{field} in {view}"));
    let t = chrono::DateTime::parse_from_rfc3339(t).unwrap_or_else(|e| panic!("{field}: {t}: {e}"));
    t.timestamp_micros() as f64 / 1e6
}

/// Rule 7: every status webhook sent twice (sandbox `duplicate = true`) on WhatsApp, SMS
/// (Twilio) and Viber: each cascade ends once, delivered on its channel, after exactly one
/// send; the copies are recorded on their attempt without harm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_webhooks_are_harmless() {
    let system = System::start(
        r#"
[default]
behaviour = "deliver"
after = "300ms"
duplicate = true
"#,
    )
    .await;
    let viber = "dup-viber-0001==";
    let cases = [
        ("whatsapp", "+15550101001", json!("+15550101001"), &["sent", "delivered"][..]),
        ("sms", "+15550101002", json!("+15550101002"), &["sent", "delivered"][..]),
        ("viber", viber, json!({"name": "Ann", "addresses": {"viber": viber}}), &["delivered"][..]),
    ];
    let mut ids = Vec::new();
    for (channel, _, contact, _) in &cases {
        let steps = json!([{"channel": channel, "until": "delivered", "timeout": "5s"}]);
        ids.push(system.api.start(&request(contact.clone(), steps)).await);
    }
    for ((channel, address, _, reported), id) in cases.iter().zip(&ids) {
        let view = system.api.wait_state(id, "delivered").await;
        // Every report went out twice and was answered 200 each time.
        let pmid = message_id(&view, 1);
        let hooks = wait_webhooks(&system, &pmid, 2 * reported.len()).await;
        for status in *reported {
            let copies: Vec<_> = hooks.iter().filter(|(e, _)| e == status).collect();
            assert_eq!(copies.len(), 2, "{channel}: the sandbox sent `{status}` twice: {hooks:?}");
            assert!(copies.iter().all(|(_, s)| *s == Some(200)), "{channel}: every copy answered 200: {hooks:?}");
        }
        let view = system.api.get(id).await;
        assert_eq!(view["outcome"]["state"], "delivered", "{channel}: {view:#}");
        assert_eq!(view["outcome"]["channel"], *channel, "{channel}: {view:#}");
        assert_eq!(view["outcome"]["attempt"], 1, "{channel}: {view:#}");
        assert_eq!(view["outcome"]["status"], "delivered", "{channel}: {view:#}");
        assert_eq!(channels(&view), [*channel], "{channel}: one attempt: {view:#}");
        assert_eq!(view["attempts"][0]["highest"], "delivered", "{channel}");
        assert_eq!(count(&view, 1, "accepted"), 1, "{channel}: {:?}", statuses(&view, 1));
        for status in *reported {
            let n = count(&view, 1, status);
            assert!((1..=2).contains(&n), "{channel}: `{status}` recorded once or twice: {:?}", statuses(&view, 1));
        }
        assert_eq!(events_of(&view, "finished").len(), 1, "{channel}: one outcome: {:?}", event_types(&view));
        assert_eq!(events_of(&view, "send_started").len(), 1, "{channel}: {:?}", event_types(&view));
        assert_eq!(system.sends_to(channel, address), 1, "{channel}: sent exactly once");
    }
}

/// Rule 7: reports newest first (sandbox `reorder = true`): WhatsApp's `read` before its
/// `delivered` (and `sent`), Twilio's `delivered` before `sent`. `read` implies `delivered`:
/// the cascade ends delivered on the first report, every report is recorded on the attempt in
/// arrival order, the highest status never goes down, nothing is sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_webhooks_deliver_and_are_all_recorded() {
    let system = System::start(
        r#"
[[recipient]]
address = "+15550102001"
channels = ["whatsapp"]
behaviour = "read"
delivered_after = "300ms"
read_after = "600ms"
reorder = true

[[recipient]]
address = "+15550102002"
channels = ["sms"]
behaviour = "deliver"
after = "400ms"
reorder = true
"#,
    )
    .await;
    let wa = system
        .api
        .start(&request(json!("+15550102001"), json!([{"channel": "whatsapp", "until": "delivered", "timeout": "5s"}])))
        .await;
    let sms = system
        .api
        .start(&request(json!("+15550102002"), json!([{"channel": "sms", "until": "delivered", "timeout": "5s"}])))
        .await;

    let view = system.api.wait_state(&wa, "delivered").await;
    let hooks = wait_webhooks(&system, &message_id(&view, 1), 3).await;
    let order: Vec<_> = hooks.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(order, ["read", "delivered", "sent"], "the sandbox reordered: {hooks:?}");
    let view = system.api.wait_for(&wa, "all three reports", |v| statuses(v, 1).len() == 4).await;
    assert_eq!(statuses(&view, 1), ["accepted", "read", "delivered", "sent"], "{view:#}");
    assert_eq!(view["attempts"][0]["highest"], "read", "never goes down: {view:#}");
    assert_eq!(view["outcome"]["channel"], "whatsapp");
    assert_eq!(view["outcome"]["attempt"], 1);
    assert_eq!(view["outcome"]["status"], "read", "ended on `read`, which implies `delivered`: {view:#}");
    assert_eq!(events_of(&view, "finished").len(), 1, "{:?}", event_types(&view));
    assert_eq!(system.sends_to("whatsapp", "+15550102001"), 1);

    let view = system.api.wait_state(&sms, "delivered").await;
    let hooks = wait_webhooks(&system, &message_id(&view, 1), 2).await;
    let order: Vec<_> = hooks.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(order, ["delivered", "sent"], "the sandbox reordered: {hooks:?}");
    let view = system.api.wait_for(&sms, "both reports", |v| statuses(v, 1).len() == 3).await;
    assert_eq!(statuses(&view, 1), ["accepted", "delivered", "sent"], "{view:#}");
    assert_eq!(view["attempts"][0]["highest"], "delivered", "`sent` after `delivered` does not lower it: {view:#}");
    assert_eq!(view["outcome"]["channel"], "sms");
    assert_eq!(view["outcome"]["status"], "delivered");
    assert_eq!(events_of(&view, "finished").len(), 1);
    assert_eq!(system.sends_to("sms", "+15550102002"), 1);
}

/// Rule 7, late success: WhatsApp's `delivered` comes after its step timed out, while the SMS
/// step waits. With `late_success_wins` (the default) the cascade ends delivered on WhatsApp
/// at once, before the SMS step's timeout; with it off the late status is only recorded and
/// the cascade goes on (here: fails when the silent SMS step times out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_success_of_an_earlier_step_wins_unless_switched_off() {
    let system = System::start(
        r#"
[[recipient]]
address = "+15550103001"
channels = ["whatsapp"]
behaviour = "deliver"
after = "2s"

[[recipient]]
address = "+15550103002"
channels = ["whatsapp"]
behaviour = "deliver"
after = "2s"

[[recipient]]
address = "+15550103001"
channels = ["sms"]
behaviour = "silent"

[[recipient]]
address = "+15550103002"
channels = ["sms"]
behaviour = "silent"
"#,
    )
    .await;
    let steps = json!([
        {"channel": "whatsapp", "until": "delivered", "timeout": "1s"},
        {"channel": "sms", "until": "delivered", "timeout": "4s"},
    ]);
    let wins = system.api.start(&request(json!("+15550103001"), steps.clone())).await;
    let mut off = request(json!("+15550103002"), steps);
    off["policy"]["late_success_wins"] = json!(false);
    let off = system.api.start(&off).await;

    let view = system.api.wait_state(&wins, "delivered").await;
    assert_eq!(channels(&view), ["whatsapp", "sms"], "SMS started after WhatsApp's timeout: {view:#}");
    assert_eq!(view["outcome"]["channel"], "whatsapp", "{view:#}");
    assert_eq!(view["outcome"]["attempt"], 1);
    assert_eq!(view["outcome"]["step"], 0);
    assert_eq!(view["outcome"]["status"], "delivered");
    let reason = view["failures"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("no `delivered` within 1s"), "step 0 timed out first: {view:#}");
    assert_eq!(view["attempts"][1]["highest"], "accepted", "the SMS was taken and still waiting: {view:#}");
    let waited = seconds(&view, "finished_at") - seconds(&view["attempts"][1], "started_at");
    assert!(waited < 3.5, "ended at the late success, not at SMS's 4 s timeout ({waited:.2} s): {view:#}");
    let types = event_types(&view);
    let at = |t: &str| types.iter().position(|x| x == t).unwrap_or_else(|| panic!("no {t} in {types:?}"));
    assert!(at("step_failed") < at("finished"));
    assert_eq!(events_of(&view, "send_started").len(), 2, "{types:?}");
    assert_eq!(system.sends_to("whatsapp", "+15550103001"), 1);
    assert_eq!(system.sends_to("sms", "+15550103001"), 1);

    // Switched off: the late `delivered` lands on attempt 1 while the cascade keeps waiting.
    let view = system.api.wait_for(&off, "the late `delivered` on attempt 1", |v| count(v, 1, "delivered") == 1).await;
    assert_eq!(view["state"], "running", "only recorded: {view:#}");
    assert_eq!(channels(&view), ["whatsapp", "sms"]);
    let view = system.api.wait_state(&off, "failed").await;
    assert_eq!(view["outcome"]["state"], "failed");
    assert_eq!(view["outcome"]["steps"].as_array().map(Vec::len), Some(2), "both steps failed: {view:#}");
    assert_eq!(view["attempts"][0]["highest"], "delivered", "the late status stays recorded: {view:#}");
    assert_eq!(system.sends_to("whatsapp", "+15550103002"), 1);
    assert_eq!(system.sends_to("sms", "+15550103002"), 1);
}

/// Rule 7: a correctly signed status for a provider message id the server never sent (the
/// test sends a message straight through the sandbox's WhatsApp API) is answered 200 as
/// unmatched; the server keeps running, no cascade appears, a running cascade is unchanged,
/// and the next cascade works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_for_an_unknown_message_is_accepted_and_changes_nothing() {
    let port = common::free_port();
    let relay = Relay::start(format!("http://127.0.0.1:{port}/webhooks/{WA}")).await;
    let mut config = sandbox_config(
        port,
        r#"
[default]
behaviour = "deliver"
after = "300ms"

[[recipient]]
address = "+15550104001"
behaviour = "silent"
"#,
    );
    config.whatsapp.webhook_url = Some(relay.url.clone());
    let system = System::start_on(port, config, "").await;

    let witness = system
        .api
        .start(&request(
            json!("+15550104001"),
            json!([{"channel": "whatsapp", "until": "delivered", "timeout": "20s"}]),
        ))
        .await;
    let before = system.api.wait_for(&witness, "acceptance", |v| v["attempts"][0]["highest"] == "accepted").await;

    // A message the server knows nothing about, sent by someone else on the same number.
    let sent = reqwest::Client::new()
        .post(format!(
            "{}/v21.0/{}/messages",
            system.sandbox.base_url("whatsapp"),
            cascade_sandbox::DEFAULT_WHATSAPP_PHONE_NUMBER_ID
        ))
        .bearer_auth(cascade_sandbox::DEFAULT_WHATSAPP_TOKEN)
        .json(&json!({"messaging_product": "whatsapp", "to": "15550104002", "type": "text", "text": {"body": "hi"}}))
        .send()
        .await
        .expect("direct send");
    assert_eq!(sent.status(), 200);
    let foreign = sent.json::<Value>().await.expect("json")["messages"][0]["id"].as_str().expect("id").to_owned();

    let hooks = wait_webhooks(&system, &foreign, 2).await;
    assert_eq!(hooks, [("sent".to_owned(), Some(200)), ("delivered".to_owned(), Some(200))]);
    let answers: Vec<_> = relay
        .seen()
        .into_iter()
        .filter(|r| String::from_utf8_lossy(&r.request.body).contains(&foreign))
        .map(|r| (r.status, r.answer))
        .collect();
    assert_eq!(answers.len(), 2, "{answers:?}");
    for (status, answer) in &answers {
        assert_eq!(*status, 200);
        assert_eq!(answer["unmatched"], 1, "recognised as unknown: {answer}");
        assert_eq!(answer["statuses"], 0, "{answer}");
    }

    let ready = reqwest::get(format!("{}/readyz", system.server.base)).await.expect("readyz");
    assert_eq!(ready.status(), 200);
    let after = system.api.get(&witness).await;
    assert_eq!(after["state"], "running");
    assert_eq!(after["attempts"], before["attempts"], "the running cascade is unchanged");
    assert_eq!(after["events"], before["events"], "the running cascade is unchanged");
    let list = system.api.list().await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "no cascade appeared: {list:#}");

    let next = system
        .api
        .start(&request(json!("+15550104003"), json!([{"channel": "whatsapp", "until": "delivered", "timeout": "5s"}])))
        .await;
    let view = system.api.wait_state(&next, "delivered").await;
    assert_eq!(view["outcome"]["channel"], "whatsapp");
    assert_eq!(system.api.cancel(&witness).await["cancelled"], true);
}

/// The metric sample of `name` whose labels include every one of `labels`.
async fn metric(system: &System, name: &str, labels: &[&str]) -> Option<f64> {
    let text = reqwest::get(format!("{}/metrics", system.server.base)).await.ok()?.text().await.ok()?;
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Provider webhooks are authenticated: copies of a real signed WhatsApp status with the body
/// changed, with the signature changed, or without it are refused with 401 `bad-signature`
/// and change nothing; the untouched copy is accepted (so the refusal is the signature's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_with_a_bad_signature_is_refused_and_changes_nothing() {
    let port = common::free_port();
    let relay = Relay::start(format!("http://127.0.0.1:{port}/webhooks/{WA}")).await;
    let mut config = sandbox_config(
        port,
        r#"
[default]
behaviour = "deliver"
after = "30s"
"#,
    );
    config.whatsapp.webhook_url = Some(relay.url.clone());
    let system = System::start_on(port, config, "").await;
    let id = system
        .api
        .start(&request(
            json!("+15550105001"),
            json!([{"channel": "whatsapp", "until": "delivered", "timeout": "20s"}]),
        ))
        .await;
    let before = system.api.wait_for(&id, "`sent`", |v| count(v, 1, "sent") == 1).await;
    let real = relay.seen().into_iter().find(|r| r.status == 200).expect("the real `sent` status");
    let body = String::from_utf8(real.request.body.to_vec()).expect("utf-8");
    assert!(body.contains(r#""status":"sent""#), "{body}");
    let signature = real.request.header("x-hub-signature-256").expect("signed").to_owned();

    let post = |body: String, signature: Option<String>| {
        let mut call =
            reqwest::Client::new().post(system.webhook_url(WA)).header("content-type", "application/json").body(body);
        if let Some(s) = signature {
            call = call.header("x-hub-signature-256", s);
        }
        call.send()
    };
    let tampered = body.replace(r#""status":"sent""#, r#""status":"delivered""#);
    let mut flipped = signature.clone();
    let last = flipped.pop().expect("hex");
    flipped.push(if last == '0' { '1' } else { '0' });
    for (what, body, signature) in [
        ("a changed body", tampered, Some(signature.clone())),
        ("a changed signature", body.clone(), Some(flipped)),
        ("no signature", body.clone(), None),
    ] {
        let answer = post(body, signature).await.expect("post");
        assert_eq!(answer.status(), 401, "{what}");
        let problem: Value = answer.json().await.expect("problem");
        assert_eq!(problem["type"], "urn:cascade:problem:bad-signature", "{what}: {problem}");
    }
    let after = system.api.get(&id).await;
    assert_eq!(after["state"], "running", "not delivered by a forged status: {after:#}");
    assert_eq!(after["attempts"], before["attempts"], "unchanged");
    assert_eq!(after["events"], before["events"], "unchanged");
    assert_eq!(metric(&system, "cascade_webhooks_total", &["connection=\"wa\"", "bad_signature"]).await, Some(3.0));

    // The genuine copy is accepted (a duplicate `sent`, harmless).
    let answer = post(body, Some(signature)).await.expect("post");
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.json::<Value>().await.expect("json")["statuses"], 1);
    let view = system.api.get(&id).await;
    assert_eq!(view["state"], "running");
    assert_eq!(view["attempts"][0]["highest"], "sent");
    assert_eq!(system.sends_to("whatsapp", "+15550105001"), 1);
    assert_eq!(system.api.cancel(&id).await["cancelled"], true);
}

/// Rule 9: the same `Idempotency-Key` and body again returns the same cascade with
/// `Idempotent-Replayed: true` and sends nothing; the same key with another body is a 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_start_sends_once_and_a_different_body_is_refused() {
    let system = System::start("[default]\nbehaviour = \"deliver\"\nafter = \"300ms\"\n").await;
    let body = request(json!("+15550106001"), json!([{"channel": "whatsapp", "until": "delivered", "timeout": "5s"}]));

    let first = system.api.post(&body, Some("order-A-1042")).await;
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.expect("json");
    assert_eq!(first["existing"], false);
    let id = first["id"].as_str().expect("id").to_owned();

    let again = system.api.post(&body, Some("order-A-1042")).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["existing"], true);

    system.api.wait_state(&id, "delivered").await;
    let late = system.api.post(&body, Some("order-A-1042")).await;
    assert_eq!(late.status(), 202);
    assert_eq!(late.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    let late: Value = late.json().await.expect("json");
    assert_eq!((late["id"].as_str(), late["state"].as_str()), (Some(id.as_str()), Some("delivered")));

    let mut other = body.clone();
    other["message"]["text"] = json!("Hello {{contact.name}}");
    let conflict = system.api.post(&other, Some("order-A-1042")).await;
    assert_eq!(conflict.status(), 409);
    let problem: Value = conflict.json().await.expect("json");
    assert_eq!(problem["type"], "urn:cascade:problem:idempotency-conflict", "{problem}");
    assert_eq!(problem["field"], "Idempotency-Key", "{problem}");

    let list = system.api.list().await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "one cascade: {list:#}");
    assert_eq!(system.sends("whatsapp"), 1, "sent exactly once");
}

/// Checks a callback's `X-Cascade-Signature` as a receiver would.
fn verify(received: &common::Received, secret: &str) -> bool {
    let header = received.header("x-cascade-signature").expect("X-Cascade-Signature");
    verify_cascade_signature(secret.as_bytes(), header, &received.body, unix_now()).is_ok()
}

/// Rule 8 with a cancel: a cascade waiting on a silent recipient, cancelled through the API,
/// ends `cancelled`; nothing more is sent past the step's timeout; the callback reports it
/// once; a second cancel answers `cancelled: false`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_chain_and_the_callback_says_cancelled() {
    let system = System::start("[default]\nbehaviour = \"silent\"\n").await;
    let mut receiver = Receiver::start().await;
    let mut body = request(
        json!("+15550107001"),
        json!([
            {"channel": "whatsapp", "until": "delivered", "timeout": "1s"},
            {"channel": "sms", "until": "delivered", "timeout": "1s"},
        ]),
    );
    body["callback_url"] = json!(receiver.url);
    let id = system.api.start(&body).await;
    system.api.wait_for(&id, "acceptance", |v| v["attempts"][0]["highest"] == "accepted").await;

    let answer = system.api.cancel(&id).await;
    assert_eq!(answer, json!({"id": id, "cancelled": true, "state": "cancelled"}));
    let callback = receiver.next().await;
    assert!(verify(&callback, CALLBACK_SECRET), "signed");
    let report = callback.json();
    assert_eq!(report["cascade_id"], id.as_str());
    assert_eq!(report["state"], "cancelled");
    assert_eq!(report["outcome"], json!({"state": "cancelled"}));

    // Past the WhatsApp step's timeout: no SMS, no second callback.
    assert!(receiver.try_next(Duration::from_millis(1500)).await.is_none(), "one callback");
    let view = system.api.get(&id).await;
    assert_eq!(view["state"], "cancelled");
    assert_eq!(view["outcome"], json!({"state": "cancelled"}));
    assert_eq!(channels(&view), ["whatsapp"], "{view:#}");
    let types = event_types(&view);
    assert_eq!(types.last().map(String::as_str), Some("finished"), "nothing after the outcome: {types:?}");
    assert!(!types.contains(&"step_failed".to_owned()), "{types:?}");
    assert_eq!((system.sends("whatsapp"), system.sends("sms")), (1, 0));

    let again = system.api.cancel(&id).await;
    assert_eq!(again, json!({"id": id, "cancelled": false, "state": "cancelled"}));
}

/// Rules 8 and 11: the outcome callback is POSTed once, signed with the API key's
/// `callback_secret` (checked with `verify_cascade_signature`), and carries the path taken
/// (WhatsApp unreachable, then SMS delivered), the winning step, the metadata and the total cost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callback_is_signed_and_carries_the_outcome() {
    let system = System::start(
        r#"
[default]
behaviour = "deliver"
after = "300ms"

[[recipient]]
address = "+15550108001"
channels = ["whatsapp"]
behaviour = "not_on_channel"
"#,
    )
    .await;
    let mut receiver = Receiver::start().await;
    let mut body = request(
        json!("+15550108001"),
        json!([
            {"channel": "whatsapp", "until": "delivered", "timeout": "5s"},
            {"channel": "sms", "until": "delivered", "timeout": "5s"},
        ]),
    );
    body["callback_url"] = json!(receiver.url);
    body["metadata"] = json!({"crm_deal": 7731});
    let id = system.api.start(&body).await;
    system.api.wait_state(&id, "delivered").await;

    let callback = receiver.next().await;
    assert!(callback.header("content-type").is_some_and(|c| c.starts_with("application/json")));
    assert!(callback.header("x-cascade-delivery").is_some_and(|d| !d.is_empty()), "a delivery id");
    let signature = callback.header("x-cascade-signature").expect("signed");
    assert!(signature.starts_with("t=") && signature.contains(",v1="), "{signature}");
    assert!(verify(&callback, CALLBACK_SECRET), "verifies with the key's callback_secret");
    assert!(!verify(&callback, "another-secret-0123456789"), "not with another secret");
    let mut forged = callback.clone();
    forged.body = String::from_utf8_lossy(&callback.body).replace("delivered", "failed").into_bytes().into();
    assert!(!verify(&forged, CALLBACK_SECRET), "not for another body");

    let report = callback.json();
    assert_eq!(report["cascade_id"], id.as_str());
    assert_eq!(report["state"], "delivered");
    let outcome = &report["outcome"];
    assert_eq!(
        (&outcome["state"], &outcome["channel"], &outcome["connection"], &outcome["step"], &outcome["attempt"]),
        (&json!("delivered"), &json!("sms"), &json!("sms"), &json!(1), &json!(2)),
        "{report:#}"
    );
    assert_eq!(report["metadata"], json!({"crm_deal": 7731}));
    assert_eq!(channels(&report), ["whatsapp", "sms"], "the path: {report:#}");
    assert_eq!(report["attempts"][0]["error"]["class"], "unreachable", "{report:#}");
    assert_eq!(report["failures"].as_array().map(Vec::len), Some(1), "{report:#}");
    let cost = report["cost"].as_f64().expect("cost");
    assert!((cost - 0.0164).abs() < 1e-9, "0.0085 (WhatsApp) + 0.0079 (SMS), not {cost}");
    assert!(receiver.try_next(Duration::from_millis(500)).await.is_none(), "reported once");
    assert_eq!((system.sends("whatsapp"), system.sends("sms")), (1, 1));
}

/// The contact of the reply tests: phone `+155501090NN`, Telegram `7090NN`, Viber
/// `reply-viber-00NN==`, MAX `7091NN`.
fn replier(n: u32) -> (Value, [(&'static str, String); 5]) {
    let phone = format!("+155501090{n:02}");
    let addresses = [
        ("whatsapp", phone.clone()),
        ("sms", phone.clone()),
        ("telegram", format!("7090{n:02}")),
        ("viber", format!("reply-viber-00{n:02}==")),
        ("max", format!("7091{n:02}")),
    ];
    let contact = json!({"name": "Ann", "phone": phone, "addresses": {
        "telegram": addresses[2].1, "viber": addresses[3].1, "max": addresses[4].1}});
    (contact, addresses)
}

/// Rule 7, replies: while the SMS step waits, the contact writes on WhatsApp (an earlier
/// step's channel): the chain stops at once, delivered with `replied`, credited to the
/// WhatsApp attempt; a message from someone else changes nothing. While WhatsApp waits, a
/// reply on any other channel of the policy (SMS, Telegram, Viber, MAX: each adapter's inbound
/// webhook) stops the chain too, and nothing is sent on that channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_on_another_channel_stops_the_chain() {
    let system = System::start("[default]\nbehaviour = \"silent\"\n").await;
    let steps = |first_timeout: &str| {
        json!([
            {"channel": "whatsapp", "until": "delivered", "timeout": first_timeout},
            {"channel": "sms", "until": "delivered", "timeout": "6s"},
            {"channel": "telegram", "timeout": "6s"},
            {"channel": "viber", "until": "delivered", "timeout": "6s"},
            {"channel": "max", "timeout": "6s"},
        ])
    };
    let (contact, ann) = replier(1);
    let a = system.api.start(&request(contact, steps("1s"))).await;
    let before = system
        .api
        .wait_for(&a, "the SMS step", |v| channels(v).len() == 2 && v["attempts"][1]["highest"] == "accepted")
        .await;

    // Someone else writes: nothing changes.
    assert_eq!(system.sandbox.inbound("whatsapp", "+15550109999", "Wrong number?").await, Ok(200));
    let view = system.api.get(&a).await;
    assert_eq!(view["state"], "running");
    assert_eq!(view["events"], before["events"]);

    assert_eq!(system.sandbox.inbound("whatsapp", &ann[0].1, "Yes please").await, Ok(200));
    let view = system.api.wait_state(&a, "delivered").await;
    assert_eq!(view["outcome"]["status"], "replied", "{view:#}");
    assert_eq!(view["outcome"]["channel"], "whatsapp", "credited to the WhatsApp attempt: {view:#}");
    assert_eq!(view["outcome"]["attempt"], 1, "{view:#}");
    assert!(statuses(&view, 1).contains(&"replied".to_owned()), "{view:#}");
    let replied = events_of(&view, "replied");
    assert_eq!(replied.len(), 1);
    assert_eq!(replied[0]["channel"], "whatsapp");
    assert_eq!(channels(&view), ["whatsapp", "sms"], "stopped before Telegram: {view:#}");
    let waited = seconds(&view, "finished_at") - seconds(&view["attempts"][1], "started_at");
    assert!(waited < 5.0, "stopped by the reply, not by SMS's timeout: {view:#}");
    assert_eq!((system.sends_to("whatsapp", &ann[0].1), system.sends_to("sms", &ann[1].1)), (1, 1));
    for (channel, address) in &ann[2..] {
        assert_eq!(system.sends_to(channel, address), 0, "{channel}");
    }

    // While WhatsApp waits, a reply on each later step's channel.
    let mut started = Vec::new();
    for (n, channel) in (2..).zip(["sms", "telegram", "viber", "max"]) {
        let (contact, addresses) = replier(n);
        let id = system.api.start(&request(contact, steps("20s"))).await;
        system.api.wait_for(&id, "acceptance", |v| v["attempts"][0]["highest"] == "accepted").await;
        let from = &addresses.iter().find(|(c, _)| *c == channel).expect("address").1;
        assert_eq!(system.sandbox.inbound(channel, from, "Got it").await, Ok(200), "{channel}");
        started.push((channel, id, addresses));
    }
    for (channel, id, addresses) in started {
        let view = system.api.wait_state(&id, "delivered").await;
        assert_eq!(view["outcome"]["status"], "replied", "{channel}: {view:#}");
        // The reply's channel had no attempt: it is credited to the latest one.
        assert_eq!(view["outcome"]["attempt"], 1, "{channel}: {view:#}");
        let replied = events_of(&view, "replied");
        assert_eq!(replied.len(), 1, "{channel}: {view:#}");
        assert_eq!(replied[0]["channel"], channel, "{view:#}");
        assert_eq!(channels(&view), ["whatsapp"], "{channel}: the chain stopped: {view:#}");
        for (c, address) in &addresses[1..] {
            assert_eq!(system.sends_to(c, address), 0, "{channel}: nothing sent on {c}");
        }
        assert_eq!(system.sends_to("whatsapp", &addresses[0].1), 1, "{channel}");
    }
}

/// Rule 7: a reply from the contact on *any* channel stops the chain: an SMS from the very
/// phone a WhatsApp-only cascade is waiting on, or a Viber message from the contact's Viber
/// id when the policy has no Viber step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_on_a_channel_outside_the_policy_stops_the_chain() {
    let system = System::start("[default]\nbehaviour = \"silent\"\n").await;
    let mut started = Vec::new();
    for (n, channel) in [(20, "sms"), (21, "viber")] {
        let (contact, addresses) = replier(n);
        let steps = json!([{"channel": "whatsapp", "until": "delivered", "timeout": "20s"}]);
        let id = system.api.start(&request(contact, steps)).await;
        system.api.wait_for(&id, "acceptance", |v| v["attempts"][0]["highest"] == "accepted").await;
        let from = &addresses.iter().find(|(c, _)| *c == channel).expect("address").1;
        assert_eq!(system.sandbox.inbound(channel, from, "Yes").await, Ok(200), "{channel}");
        started.push((channel, id));
    }
    for (channel, id) in started {
        let view = system.api.get(&id).await;
        assert_eq!(view["state"], "delivered", "a reply on {channel} stops the chain: {view:#}");
        assert_eq!(view["outcome"]["status"], "replied", "{view:#}");
    }
}

/// Rule 2: a contact who wrote on WhatsApp before the cascade starts gets WhatsApp first,
/// although the policy puts it second (timeline `existing_chat_first`); one who did not gets
/// the policy's order; when the open chat's send fails, the chain goes on without sending
/// WhatsApp again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_chat_goes_first() {
    let system = System::start(
        r#"
[default]
behaviour = "deliver"
after = "300ms"

[[recipient]]
address = "+15550110002"
channels = ["whatsapp"]
behaviour = "fail"
after = "300ms"
"#,
    )
    .await;
    for phone in ["+15550110001", "+15550110002"] {
        assert_eq!(system.sandbox.inbound("whatsapp", phone, "Hello?").await, Ok(200));
    }
    let steps = json!([
        {"channel": "sms", "until": "delivered", "timeout": "3s"},
        {"channel": "whatsapp", "until": "delivered", "timeout": "3s"},
    ]);
    let open = system.api.start(&request(json!("+15550110001"), steps.clone())).await;
    let failing = system.api.start(&request(json!("+15550110002"), steps.clone())).await;
    let closed = system.api.start(&request(json!("+15550110003"), steps)).await;

    let view = system.api.wait_state(&open, "delivered").await;
    let first = events_of(&view, "existing_chat_first");
    assert_eq!(first.len(), 1, "{:?}", event_types(&view));
    assert_eq!((&first[0]["step"], &first[0]["channel"]), (&json!(1), &json!("whatsapp")), "{view:#}");
    assert_eq!(first[0]["connection"], WA, "the chat's connection: {view:#}");
    assert_eq!(&event_types(&view)[..3], ["created", "existing_chat_first", "send_started"]);
    assert_eq!(channels(&view), ["whatsapp"], "{view:#}");
    assert_eq!((&view["outcome"]["channel"], &view["outcome"]["step"]), (&json!("whatsapp"), &json!(1)));
    assert_eq!(system.sends_to("sms", "+15550110001"), 0);
    assert_eq!(system.sends_to("whatsapp", "+15550110001"), 1);

    let view = system.api.wait_state(&failing, "delivered").await;
    assert_eq!(events_of(&view, "existing_chat_first").len(), 1);
    assert_eq!(channels(&view), ["whatsapp", "sms"], "on failure, the chain: {view:#}");
    assert_eq!((&view["outcome"]["channel"], &view["outcome"]["step"]), (&json!("sms"), &json!(0)));
    assert_eq!(system.sends_to("whatsapp", "+15550110002"), 1, "WhatsApp not sent again as step 1");
    assert_eq!(system.sends_to("sms", "+15550110002"), 1);

    let view = system.api.wait_state(&closed, "delivered").await;
    assert!(events_of(&view, "existing_chat_first").is_empty(), "{:?}", event_types(&view));
    assert_eq!(channels(&view), ["sms"], "{view:#}");
    assert_eq!(system.sends_to("whatsapp", "+15550110003"), 0);
}

/// Rule 1: a request with problems is refused with a 422 naming each field, and nothing is
/// stored or sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_request_is_refused_whole_and_sends_nothing() {
    let system = System::start("[default]\nbehaviour = \"deliver\"\nafter = \"300ms\"\n").await;
    let mut body = request(
        json!({"name": "Ann", "phone": "+15550111001", "addresses": {"telegram": "711001"}}),
        json!([
            {"channel": "whatsapp", "until": "delivered", "timeout": "2s"},
            {"channel": "telegram", "until": "delivered", "timeout": "2s"},
        ]),
    );
    body["message"]["text"] = json!("Hi {{contact.name}}, order {{order.id}}");
    let answer = system.api.post(&body, None).await;
    assert_eq!(answer.status(), 422);
    let problem: Value = answer.json().await.expect("json");
    assert_eq!(problem["type"], "urn:cascade:problem:invalid-request", "{problem:#}");
    let fields: Vec<_> =
        problem["errors"].as_array().expect("errors").iter().map(|e| e["field"].as_str().unwrap_or("?")).collect();
    assert!(fields.iter().any(|f| f.starts_with("message.text")), "the unknown variable: {problem:#}");
    assert!(fields.contains(&"policy.steps[1].until"), "Telegram cannot report `delivered`: {problem:#}");

    let list = system.api.list().await;
    assert_eq!(list["items"], json!([]), "nothing stored");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(system.sandbox.requests().is_empty(), "nothing sent: {:?}", system.sandbox.requests());
}

/// Rules 3, 5 and 11 over Telegram, Viber and MAX: a step without an address is skipped with
/// the reason; blocked (Telegram) and not on the channel (Viber) are `unreachable` and the
/// next step starts at once; MAX's 503 is `transient` and retried on the same channel, then
/// taken. Each send appears once in the sandbox's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skips_error_classes_and_retries_across_the_messengers() {
    let system = System::start(
        r#"
[default]
behaviour = "deliver"
after = "300ms"

[[recipient]]
address = "712001"
channels = ["telegram"]
behaviour = "blocked"

[[recipient]]
address = "err-viber-0001=="
channels = ["viber"]
behaviour = "not_on_channel"

[[recipient]]
address = "712011"
channels = ["max"]
behaviour = "server_error"
times = 1
"#,
    )
    .await;
    let contact =
        json!({"name": "Ann", "addresses": {"telegram": "712001", "viber": "err-viber-0001==", "max": "712011"}});
    let id = system
        .api
        .start(&request(
            contact,
            json!([
                {"channel": "sms", "until": "delivered", "timeout": "2s"},
                {"channel": "telegram", "timeout": "2s"},
                {"channel": "viber", "until": "delivered", "timeout": "2s"},
                {"channel": "max", "timeout": "5s"},
            ]),
        ))
        .await;
    let view = system.api.wait_state(&id, "delivered").await;
    assert_eq!(view["steps"][0]["skip"]["kind"], "no_address", "no phone, no SMS: {view:#}");
    let skipped = events_of(&view, "step_skipped");
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0]["channel"], "sms");
    assert_eq!(channels(&view), ["telegram", "viber", "max", "max"], "{view:#}");
    let class = |n: usize| view["attempts"][n]["error"]["class"].as_str().unwrap_or("none").to_owned();
    assert_eq!((class(0), class(1), class(2)), ("unreachable".into(), "unreachable".into(), "transient".into()));
    assert_eq!((&view["outcome"]["channel"], &view["outcome"]["attempt"]), (&json!("max"), &json!(4)), "{view:#}");
    assert_eq!(view["failures"].as_array().map(Vec::len), Some(3), "the skip and the two unreachables: {view:#}");
    let send_failed = events_of(&view, "send_failed");
    assert!(send_failed.iter().any(|e| e["retry_at"].is_string()), "the transient one is retried: {view:#}");
    assert_eq!(
        (system.sends("sms"), system.sends("telegram"), system.sends("viber"), system.sends("max")),
        (0, 1, 1, 2)
    );
}

/// Rules 4 and 5: a WhatsApp pool of two good connections and one with a wrong access token.
/// Sends go round-robin; the bad one's refusal (WhatsApp 401, code 190) is a `connection`
/// error retried at once on another connection in the same step; after three in a row
/// (`engine.health.failures_to_eject`) it is taken out and gets no more sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_goes_round_robin_and_takes_out_a_failing_connection() {
    let connection = |id: &str, token: &str| {
        format!(
            r#"
[connections.{id}]
adapter = "whatsapp-cloud"
access_token = "{token}"
phone_number_id = "{phone}"
app_secret = "{secret}"
base_url = "@SANDBOX@/whatsapp"
"#,
            phone = cascade_sandbox::DEFAULT_WHATSAPP_PHONE_NUMBER_ID,
            secret = cascade_sandbox::DEFAULT_WHATSAPP_APP_SECRET,
        )
    };
    let extra = connection("wa2", cascade_sandbox::DEFAULT_WHATSAPP_TOKEN) + &connection("wa_bad", "a-revoked-token");
    let system = System::start_with("[default]\nbehaviour = \"deliver\"\nafter = \"200ms\"\n", &extra).await;
    let mut ids = Vec::new();
    for n in 0..12 {
        let steps = json!([{"channel": "whatsapp", "until": "delivered", "timeout": "5s"}]);
        ids.push(system.api.start(&request(json!(format!("+155501120{n:02}")), steps)).await);
    }
    let (mut bad, mut winners) = (0, Vec::new());
    for id in &ids {
        let view = system.api.wait_state(id, "delivered").await;
        let attempts = view["attempts"].as_array().expect("attempts");
        for (i, a) in attempts.iter().enumerate() {
            if a["connection"] == "wa_bad" {
                bad += 1;
                assert_eq!(a["error"]["class"], "connection", "{view:#}");
                let next = attempts.get(i + 1).expect("retried");
                assert_eq!(next["step"], a["step"], "on the same step: {view:#}");
                assert_ne!(next["connection"], "wa_bad", "{view:#}");
            }
        }
        assert_eq!(view["outcome"]["channel"], "whatsapp");
        winners.push(view["outcome"]["connection"].as_str().expect("connection").to_owned());
    }
    assert_eq!(bad, 3, "taken out after three failures in a row");
    let used = |c: &str| winners.iter().filter(|w| *w == c).count();
    assert_eq!(used("wa") + used("wa2"), 12);
    assert!(used("wa") >= 4 && used("wa2") >= 4, "round-robin: wa {} wa2 {}", used("wa"), used("wa2"));
    let answered = |status: u16| {
        let sends = system.sandbox.requests().into_iter().filter(|r| r.path.ends_with("/messages"));
        sends.filter(|r| r.status == status).count()
    };
    assert_eq!((answered(200), answered(401)), (12, 3), "each contact sent to once, three refusals");
    for (connection, healthy) in [("wa_bad", 0.0), ("wa", 1.0), ("wa2", 1.0)] {
        let label = format!("connection=\"{connection}\"");
        let gauge = metric(&system, "cascade_connection_healthy", &[label.as_str()]).await;
        assert_eq!(gauge, Some(healthy), "cascade_connection_healthy of {connection}");
    }
}

/// The timeline's event of `kind` (the first), and its time in seconds.
fn event_at(view: &Value, kind: &str) -> f64 {
    let event = events_of(view, kind).into_iter().next().unwrap_or_else(|| panic!("no {kind}: {view:#}"));
    seconds(event, "at")
}

/// Rule 10: a server stopped (SIGTERM) and started again while a step waits keeps the
/// step's deadline: the step times out when it would have without the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_remaining_wait() {
    let mut system = System::start(
        r#"
[default]
behaviour = "deliver"
after = "200ms"

[[recipient]]
address = "+15550113001"
channels = ["whatsapp"]
behaviour = "silent"
"#,
    )
    .await;
    let steps = json!([
        {"channel": "whatsapp", "until": "delivered", "timeout": "4s"},
        {"channel": "sms", "until": "delivered", "timeout": "4s"},
    ]);
    let id = system.api.start(&request(json!("+15550113001"), steps)).await;
    system.api.wait_for(&id, "acceptance", |v| v["attempts"][0]["highest"] == "accepted").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = system.restart(false).await;
    assert!(status.success(), "SIGTERM is a clean exit: {status:?}");
    let api = common::Api::new(&system.server.base);
    let view = api.wait_state(&id, "delivered").await;
    let waited = event_at(&view, "step_failed") - event_at(&view, "accepted");
    assert!((4.0..4.9).contains(&waited), "timed out 4 s after acceptance, not 4 s after the restart: {waited:.2} s");
    assert_eq!(channels(&view), ["whatsapp", "sms"]);
    assert_eq!(view["outcome"]["channel"], "sms");
    assert_eq!((system.sends("whatsapp"), system.sends("sms")), (1, 1));
}

/// Rule 10: the server is killed (SIGKILL) while a WhatsApp send is in flight (the provider
/// takes 10 s to answer). After a restart the attempt is recorded `unknown`, never sent again;
/// the step runs out and the cascade goes on to SMS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_cut_off_by_a_crash_is_unknown_and_never_repeated() {
    let mut system = System::start_with(
        r#"
[default]
behaviour = "deliver"
after = "200ms"

[[recipient]]
address = "+15550114001"
channels = ["whatsapp"]
behaviour = "slow"
delay = "10s"
"#,
        "\n[engine]\nlease = \"1s\"\nsend_timeout = \"3s\"\n",
    )
    .await;
    let steps = json!([
        {"channel": "whatsapp", "until": "delivered", "timeout": "2s"},
        {"channel": "sms", "until": "delivered", "timeout": "4s"},
    ]);
    let id = system.api.start(&request(json!("+15550114001"), steps)).await;
    system.api.wait_for(&id, "the send in flight", |v| v["attempts"][0]["state"] == "sending").await;
    let status = system.restart(true).await;
    assert!(!status.success(), "killed: {status:?}");
    let api = common::Api::new(&system.server.base);
    let view = api.wait_state(&id, "delivered").await;
    assert_eq!(channels(&view), ["whatsapp", "sms"], "WhatsApp not sent again: {view:#}");
    assert_eq!(view["attempts"][0]["state"], "unknown", "{view:#}");
    assert_eq!(events_of(&view, "send_unknown").len(), 1, "{:?}", event_types(&view));
    assert_eq!(view["outcome"]["channel"], "sms");
    assert_eq!(system.sends_to("sms", "+15550114001"), 1);
    // The cut-off request was never answered to the server (the sandbox finishes it 10 s
    // after it came, as a provider that had it would, and logs it abandoned), and none
    // followed it.
    let whatsapp: Vec<_> = system.sandbox.requests().into_iter().filter(|r| r.provider == "whatsapp").collect();
    assert!(whatsapp.len() <= 1 && whatsapp.iter().all(|r| r.abandoned), "{whatsapp:#?}");
}
