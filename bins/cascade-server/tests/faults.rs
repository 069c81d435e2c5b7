//! Provider faults end to end (DESIGN §3 rules 5, 6 and 10): the real `cascade-server`
//! binary and the real adapters against the provider sandbox over real HTTP, with the
//! providers failing the way they do in production: bursts of 5xx, rate-limit storms with a
//! retry-after, answers slower than the connection's call timeout, connections reset before
//! any answer, and status webhooks that never come, all under concurrent load.
//!
//! Every test checks the cascades through the API (outcome, attempts, error classes, the
//! timeline's times) and the provider's side through the sandbox's request log, which tells
//! a send it accepted (with the message id it gave it) from one it refused, reset, or finished
//! after the client had given up. Rule 10's promise, "never silently sends twice", is checked
//! as: every request the provider got is an attempt in the record, in order, and every send
//! it accepted is either that attempt's provider message id or an attempt that failed with a
//! timeout, whose fate the record leaves open.
//!
//! Proven in `rules.rs` instead: webhooks that come twice (`duplicate_webhooks_are_harmless`),
//! out of order (`reordered_webhooks_deliver_and_are_all_recorded`), for unknown message ids
//! (`a_status_for_an_unknown_message_is_accepted_and_changes_nothing`), with bad signatures,
//! and sends cut off by a crash (`a_send_cut_off_by_a_crash_is_unknown_and_never_repeated`).

mod common;

use std::time::Duration;

use cascade_sandbox::Recorded;
use common::{System, channels, event_types, events_of, request, same_address, statuses};
use serde_json::{Value, json};

/// Backoff for transient errors: 200 ms, then 400 ms.
fn fast_retry() -> Value {
    json!({"initial_backoff": "200ms", "max_backoff": "400ms"})
}

/// [`request`] with the policy's `retry` set.
fn request_with_retry(contact: Value, steps: Value, retry: Value) -> Value {
    let mut body = request(contact, steps);
    body["policy"]["retry"] = retry;
    body
}

/// Seconds since the epoch of an RFC 3339 time.
fn secs(t: &Value) -> f64 {
    let text = t.as_str().unwrap_or_else(|| panic!("a time, not {t}"));
    let t = chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    t.timestamp_micros() as f64 / 1e6
}

/// Starts every cascade at once (one task each); their ids, in order.
async fn start_all(system: &System, bodies: Vec<Value>) -> Vec<String> {
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let api = system.api.clone();
            tokio::spawn(async move { api.start(&body).await })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.expect("start task"));
    }
    ids
}

/// The sandbox's requests to `address` on `channel` (the sandbox names Twilio `sms`), in
/// order of arrival.
fn requests_to(system: &System, channel: &str, address: &str) -> Vec<Recorded> {
    let mut found: Vec<_> = system
        .sandbox
        .requests()
        .into_iter()
        .filter(|r| r.provider == channel && r.recipient.as_deref().is_some_and(|to| same_address(to, address)))
        .collect();
    found.sort_by(|a, b| a.at.cmp(&b.at));
    found
}

/// Waits (at most [`common::WAIT`]) until the sandbox has logged `n` requests to `address` on
/// `channel`. A request whose client gave up is logged only when the sandbox has finished it.
async fn wait_requests(system: &System, channel: &str, address: &str, n: usize) -> Vec<Recorded> {
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let found = requests_to(system, channel, address);
        if found.len() >= n {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{channel} {address}: {} of {n} requests: {found:#?}",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Rule 10 against the provider's own log: every request the sandbox got for `address` on
/// `channel` is one attempt on that channel, in the same order. A send it accepted and
/// answered is recorded under the message id it gave; one it refused or reset is a failed
/// attempt with an error class and no id; one it accepted after the client had given up is
/// an attempt that failed with `timeout`. Returns the sends it accepted.
fn assert_every_send_is_an_attempt(system: &System, view: &Value, channel: &str, address: &str) -> Vec<Recorded> {
    let requests = requests_to(system, channel, address);
    let attempts: Vec<&Value> =
        view["attempts"].as_array().expect("attempts").iter().filter(|a| a["channel"] == channel).collect();
    assert_eq!(
        requests.len(),
        attempts.len(),
        "{channel} {address}: one attempt per request the provider got: {requests:#?}\n{view:#}"
    );
    for (r, a) in requests.iter().zip(&attempts) {
        let what = format!("{channel} {address}, attempt {}: {r:?}\n{a:#}", a["number"]);
        match (&r.message_id, r.abandoned) {
            (_, true) => {
                assert_eq!(a["error"]["code"], "timeout", "the client gave up on it: {what}");
                assert!(a["provider_message_id"].is_null(), "{what}");
            }
            (Some(id), false) => {
                let pmid = a["provider_message_id"].as_str().unwrap_or_else(|| panic!("accepted, so an id: {what}"));
                assert!(pmid == id || pmid.ends_with(&format!(":{id}")), "recorded under the provider's id: {what}");
            }
            (None, false) => {
                assert!(a["error"]["class"].is_string(), "refused or reset: a failed attempt: {what}");
                assert!(a["provider_message_id"].is_null(), "{what}");
            }
        }
    }
    requests.into_iter().filter(|r| r.message_id.is_some()).collect()
}

/// The time of the timeline's `kind` events, in order.
fn times_of(view: &Value, kind: &str) -> Vec<f64> {
    events_of(view, kind).into_iter().map(|e| secs(&e["at"])).collect()
}

/// Rule 5, 5xx: twenty cascades at once against a WhatsApp that answers HTTP 500 (Graph code
/// 2, "temporary downtime") to the first two sends of every recipient. Each is retried on the
/// same channel with backoff (200 ms, then 400 ms), delivered on the third send, and the
/// provider accepted exactly one send per recipient and refused the other two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_bursts_under_concurrency_are_retried_and_sent_once() {
    const REFUSED: usize = 2;
    let system = System::start("[default]\nbehaviour = \"server_error\"\ntimes = 2\n").await;
    let phones: Vec<String> = (0..20).map(|n| format!("+155503010{n:02}")).collect();
    let steps = json!([{"channel": "whatsapp", "until": "delivered", "timeout": "10s"}]);
    let bodies = phones.iter().map(|p| request_with_retry(json!(p), steps.clone(), fast_retry())).collect();
    let ids = start_all(&system, bodies).await;

    for (phone, id) in phones.iter().zip(&ids) {
        let view = system.api.wait_state(id, "delivered").await;
        assert_eq!(channels(&view), ["whatsapp"; REFUSED + 1], "{phone}: {view:#}");
        for a in &view["attempts"].as_array().expect("attempts")[..REFUSED] {
            assert_eq!((&a["error"]["class"], &a["error"]["code"]), (&json!("transient"), &json!("2")), "{a:#}");
        }
        let outcome = &view["outcome"];
        assert_eq!((&outcome["channel"], &outcome["attempt"]), (&json!("whatsapp"), &json!(REFUSED + 1)), "{view:#}");
        assert_eq!(statuses(&view, REFUSED + 1), ["accepted", "sent", "delivered"], "{view:#}");
        assert!(view["failures"].as_array().is_none_or(Vec::is_empty), "no step failed: {view:#}");

        // Each retry waited its backoff: 200 ms, then 400 ms.
        let failed = events_of(&view, "send_failed");
        let started = times_of(&view, "send_started");
        assert_eq!((failed.len(), started.len()), (REFUSED, REFUSED + 1), "{:?}", event_types(&view));
        for (i, f) in failed.iter().enumerate() {
            let retry_at = secs(&f["retry_at"]);
            let backoff = retry_at - secs(&f["at"]);
            assert!((backoff - 0.2 * 2f64.powi(i as i32)).abs() < 0.005, "backoff {i}: {backoff:.3} s: {view:#}");
            assert!(started[i + 1] >= retry_at - 1e-6, "retried no earlier than planned: {view:#}");
        }
        assert_eq!(events_of(&view, "finished").len(), 1, "{:?}", event_types(&view));

        let accepted = assert_every_send_is_an_attempt(&system, &view, "whatsapp", phone);
        assert_eq!(accepted.len(), 1, "{phone}: the provider accepted one send: {accepted:#?}");
        let answers: Vec<_> = requests_to(&system, "whatsapp", phone).iter().map(|r| r.status).collect();
        assert_eq!(answers, [500, 500, 200], "{phone}");
    }
    let log = system.sandbox.requests();
    let accepted = log.iter().filter(|r| r.message_id.is_some()).count();
    let refused = log.iter().filter(|r| r.recipient.is_some() && r.message_id.is_none()).count();
    assert_eq!((accepted, refused), (20, 40), "in all: one accepted send per recipient, two refused");
}

/// Rule 5, 429 with a retry-after: rate-limit storms on SMS (Twilio's `Retry-After` header)
/// and Telegram (`parameters.retry_after` in the body) refuse the first two sends of each of
/// ten recipients with a retry-after of 1 s, while the policy's own backoff is 100 ms. Every
/// retry waits the provider's second (in the timeline and in the provider's log of arrivals),
/// every cascade delivers, one accepted send each. A storm longer than the step's window (a
/// 2 s retry-after in a 3 s step) ends the step as soon as the next try would fall outside it,
/// with the reason recorded, and the next step delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_storms_wait_the_retry_after_and_a_longer_storm_falls_over() {
    let mut scenarios = String::from("[default]\nbehaviour = \"deliver\"\nafter = \"200ms\"\n");
    let sms: Vec<String> = (1..=6).map(|n| format!("+1555030200{n}")).collect();
    let telegram: Vec<String> = (1..=4).map(|n| format!("73020{n:02}")).collect();
    let storm: Vec<String> = (1..=3).map(|n| format!("+1555030210{n}")).collect();
    for (address, channel, times, retry_after) in sms
        .iter()
        .map(|a| (a, "sms", 2, "1s"))
        .chain(telegram.iter().map(|a| (a, "telegram", 2, "1s")))
        .chain(storm.iter().map(|a| (a, "sms", 100, "2s")))
    {
        scenarios += &format!(
            "\n[[recipient]]\naddress = \"{address}\"\nchannels = [\"{channel}\"]\nbehaviour = \"rate_limited\"\n\
             times = {times}\nretry_after = \"{retry_after}\"\n"
        );
    }
    let system = System::start(&scenarios).await;
    let slow_backoff = json!({"initial_backoff": "100ms", "max_backoff": "100ms"});
    let mut bodies = Vec::new();
    for phone in &sms {
        let steps = json!([{"channel": "sms", "until": "delivered", "timeout": "10s"}]);
        bodies.push(request_with_retry(json!(phone), steps, slow_backoff.clone()));
    }
    for chat in &telegram {
        let contact = json!({"name": "Ann", "addresses": {"telegram": chat}});
        bodies.push(request_with_retry(
            contact,
            json!([{"channel": "telegram", "timeout": "10s"}]),
            slow_backoff.clone(),
        ));
    }
    for phone in &storm {
        let steps = json!([
            {"channel": "sms", "until": "delivered", "timeout": "3s"},
            {"channel": "whatsapp", "until": "delivered", "timeout": "5s"},
        ]);
        bodies.push(request_with_retry(json!(phone), steps, slow_backoff.clone()));
    }
    let ids = start_all(&system, bodies).await;

    let limited = sms.iter().map(|a| ("sms", a)).chain(telegram.iter().map(|a| ("telegram", a)));
    for ((channel, address), id) in limited.zip(&ids) {
        let view = system.api.wait_state(id, "delivered").await;
        assert_eq!(channels(&view), [channel; 3], "{address}: {view:#}");
        assert_eq!(view["outcome"]["attempt"], 3, "{view:#}");
        for a in &view["attempts"].as_array().expect("attempts")[..2] {
            assert_eq!(
                (&a["error"]["class"], &a["error"]["retry_after"]),
                (&json!("transient"), &json!("1s")),
                "{a:#}"
            );
        }
        let failed = events_of(&view, "send_failed");
        let started = times_of(&view, "send_started");
        assert_eq!((failed.len(), started.len()), (2, 3), "{:?}", event_types(&view));
        for (i, f) in failed.iter().enumerate() {
            let retry_at = secs(&f["retry_at"]);
            let wait = retry_at - secs(&f["at"]);
            assert!((wait - 1.0).abs() < 0.005, "{address}: the retry-after, not the 100 ms backoff: {wait:.3} s");
            assert!(started[i + 1] >= retry_at - 1e-6, "{address}: retried no earlier than asked: {view:#}");
        }
        // The provider saw the tries at least a second apart (its log has millisecond times).
        let arrivals: Vec<f64> = requests_to(&system, channel, address).iter().map(|r| secs(&json!(r.at))).collect();
        assert_eq!(arrivals.len(), 3, "{address}");
        for pair in arrivals.windows(2) {
            assert!(pair[1] - pair[0] >= 0.999, "{address}: tries {:.3} s apart at the provider", pair[1] - pair[0]);
        }
        let accepted = assert_every_send_is_an_attempt(&system, &view, channel, address);
        assert_eq!(accepted.len(), 1, "{address}: one accepted send");
        assert_eq!(events_of(&view, "finished").len(), 1);
    }

    for (phone, id) in storm.iter().zip(&ids[sms.len() + telegram.len()..]) {
        let view = system.api.wait_state(id, "delivered").await;
        assert_eq!(channels(&view), ["sms", "sms", "whatsapp"], "{phone}: {view:#}");
        let outcome = &view["outcome"];
        assert_eq!((&outcome["channel"], &outcome["step"]), (&json!("whatsapp"), &json!(1)), "{view:#}");
        let failure = &view["failures"][0];
        assert_eq!(
            (&failure["step"], &failure["channel"], &failure["class"]),
            (&json!(0), &json!("sms"), &json!("transient"))
        );
        let reason = failure["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("transient errors persisted after 2 send(s)") && reason.contains("20429"),
            "the reason names the storm: {reason}"
        );
        let failed = events_of(&view, "send_failed");
        assert!(failed[0]["retry_at"].is_string() && failed[1]["retry_at"].is_null(), "{view:#}");
        // It falls over at the second refusal (t + 2 s), not at the window's end (t + 3 s).
        let gave_up = times_of(&view, "step_failed")[0] - times_of(&view, "send_started")[0];
        assert!((2.0..2.9).contains(&gave_up), "{phone}: the SMS step ended {gave_up:.2} s after it began");
        assert!(assert_every_send_is_an_attempt(&system, &view, "sms", phone).is_empty(), "nothing accepted on SMS");
        assert_eq!(assert_every_send_is_an_attempt(&system, &view, "whatsapp", phone).len(), 1);
        assert_eq!(events_of(&view, "finished").len(), 1);
    }
}

/// The extra WhatsApp connection of the timeout test: a 1 s limit for each call.
fn impatient_connection() -> String {
    format!(
        r#"
[connections.wa_1s]
adapter = "whatsapp-cloud"
access_token = "{token}"
phone_number_id = "{phone}"
app_secret = "{secret}"
base_url = "@SANDBOX@/whatsapp"
timeout = "1s"
"#,
        token = cascade_sandbox::DEFAULT_WHATSAPP_TOKEN,
        phone = cascade_sandbox::DEFAULT_WHATSAPP_PHONE_NUMBER_ID,
        secret = cascade_sandbox::DEFAULT_WHATSAPP_APP_SECRET,
    )
}

/// Rule 5, timeouts, on a connection with `timeout = "1s"`:
///
/// - a WhatsApp that takes 2.5 s over one send: the call times out (`transient`, `timeout`)
///   and is retried; the retry is answered and delivers. The sandbox, like a provider that
///   already had the message, sends the timed-out one all the same: the contact gets it
///   twice, and the record shows both sends: the first as an attempt that failed with
///   `timeout`. Its reports reach the server and are answered as unmatched, changing nothing;
/// - a WhatsApp that takes 300 ms: delivered, one attempt, one send;
/// - a WhatsApp slower than the limit every time: retried until the step's window is spent,
///   every try an attempt, then SMS delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_answers_past_the_call_timeout_are_retried_and_every_accepted_send_is_recorded() {
    let (once, slowish, always) = ("+15550303001", "+15550303002", "+15550303003");
    let system = System::start_with(
        &format!(
            r#"
[default]
behaviour = "deliver"
after = "200ms"

[[recipient]]
address = "{once}"
channels = ["whatsapp"]
behaviour = "slow"
delay = "2500ms"
times = 1

[[recipient]]
address = "{slowish}"
channels = ["whatsapp"]
behaviour = "slow"
delay = "300ms"

[[recipient]]
address = "{always}"
channels = ["whatsapp"]
behaviour = "slow"
delay = "2500ms"
"#
        ),
        &impatient_connection(),
    )
    .await;
    let whatsapp = |timeout: &str| json!({"channel": "whatsapp", "until": "delivered", "timeout": timeout, "connections": ["wa_1s"]});
    let ids = start_all(
        &system,
        vec![
            request_with_retry(json!(once), json!([whatsapp("8s")]), fast_retry()),
            request_with_retry(json!(slowish), json!([whatsapp("8s")]), fast_retry()),
            request_with_retry(
                json!(always),
                json!([whatsapp("3s"), {"channel": "sms", "until": "delivered", "timeout": "5s"}]),
                fast_retry(),
            ),
        ],
    )
    .await;

    // Slow once: timed out, retried, delivered by the retry.
    let view = system.api.wait_state(&ids[0], "delivered").await;
    assert_eq!(channels(&view), ["whatsapp", "whatsapp"], "{view:#}");
    let first = &view["attempts"][0];
    assert_eq!(
        (&first["error"]["class"], &first["error"]["code"]),
        (&json!("transient"), &json!("timeout")),
        "{view:#}"
    );
    assert!(events_of(&view, "send_failed")[0]["retry_at"].is_string(), "retried: {view:#}");
    assert_eq!((&view["outcome"]["attempt"], &view["outcome"]["connection"]), (&json!(2), &json!("wa_1s")));
    let log = wait_requests(&system, "whatsapp", once, 2).await;
    assert!(log[0].abandoned && !log[1].abandoned, "{log:#?}");
    let accepted = assert_every_send_is_an_attempt(&system, &view, "whatsapp", once);
    assert_eq!(accepted.len(), 2, "the timed-out send went out too, and is on the record: {accepted:#?}");
    // The timed-out message's reports arrive for an id the server never learned.
    let orphan = log[0].message_id.clone().expect("accepted");
    let deadline = tokio::time::Instant::now() + common::WAIT;
    let reports = loop {
        let reports: Vec<_> =
            system.sandbox.webhooks().into_iter().filter(|w| w.message_id.as_deref() == Some(&orphan)).collect();
        if reports.len() >= 2 {
            break reports;
        }
        assert!(tokio::time::Instant::now() < deadline, "the orphan's reports: {reports:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(reports.iter().all(|w| w.status == Some(200)), "answered: {reports:?}");
    let after = system.api.get(&ids[0]).await;
    assert_eq!(after["attempts"], view["attempts"], "the orphan's reports change nothing");
    assert_eq!(events_of(&after, "finished").len(), 1);

    // Slow but inside the limit: one send, delivered.
    let view = system.api.wait_state(&ids[1], "delivered").await;
    assert_eq!(channels(&view), ["whatsapp"], "{view:#}");
    assert!(view["attempts"][0]["error"].is_null(), "{view:#}");
    let accepted = assert_every_send_is_an_attempt(&system, &view, "whatsapp", slowish);
    assert_eq!(accepted.len(), 1);
    assert!(!accepted[0].abandoned);

    // Slow every time: the step's window runs out on timeouts, then SMS.
    let view = system.api.wait_state(&ids[2], "delivered").await;
    let path = channels(&view);
    let tries = path.iter().filter(|c| *c == "whatsapp").count();
    assert!(tries >= 2 && path[tries..] == ["sms"], "timeouts, then SMS: {view:#}");
    for a in &view["attempts"].as_array().expect("attempts")[..tries] {
        assert_eq!(a["error"]["code"], "timeout", "{a:#}");
    }
    let failure = &view["failures"][0];
    assert_eq!((&failure["step"], &failure["class"]), (&json!(0), &json!("transient")), "{view:#}");
    let reason = failure["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&format!("persisted after {tries} send(s) (timeout")), "{reason}");
    assert_eq!(view["outcome"]["channel"], "sms");
    let log = wait_requests(&system, "whatsapp", always, tries).await;
    assert!(log.iter().all(|r| r.abandoned), "{log:#?}");
    assert_eq!(assert_every_send_is_an_attempt(&system, &view, "whatsapp", always).len(), tries);
    assert_eq!(assert_every_send_is_an_attempt(&system, &view, "sms", always).len(), 1);
}

/// Rule 5, connections reset before any answer (sandbox behaviour `reset`: the provider
/// reads the request and answers with a TCP RST): five WhatsApp recipients reset twice and an
/// SMS recipient reset once, at the same time. Each reset is a `transient` failure retried on
/// the same channel; each cascade is delivered by the send after the resets, and the provider
/// accepted exactly one send per recipient.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_resets_are_retried_and_deliver_once() {
    let whatsapp: Vec<String> = (1..=5).map(|n| format!("+1555030400{n}")).collect();
    let sms = "+15550304101";
    let mut scenarios = String::from("[default]\nbehaviour = \"deliver\"\nafter = \"200ms\"\n");
    for phone in &whatsapp {
        scenarios += &format!(
            "\n[[recipient]]\naddress = \"{phone}\"\nchannels = [\"whatsapp\"]\nbehaviour = \"reset\"\ntimes = 2\n"
        );
    }
    scenarios += &format!("\n[[recipient]]\naddress = \"{sms}\"\nchannels = [\"sms\"]\nbehaviour = \"reset\"\n");
    let system = System::start(&scenarios).await;
    let step = |channel: &str| json!([{"channel": channel, "until": "delivered", "timeout": "10s"}]);
    let mut bodies: Vec<Value> =
        whatsapp.iter().map(|p| request_with_retry(json!(p), step("whatsapp"), fast_retry())).collect();
    bodies.push(request_with_retry(json!(sms), step("sms"), fast_retry()));
    let ids = start_all(&system, bodies).await;

    let cases = whatsapp.iter().map(|p| ("whatsapp", p.as_str(), 2)).chain([("sms", sms, 1)]);
    for ((channel, phone, resets), id) in cases.zip(&ids) {
        let view = system.api.wait_state(id, "delivered").await;
        assert_eq!(channels(&view), vec![channel; resets + 1], "{phone}: {view:#}");
        for a in &view["attempts"].as_array().expect("attempts")[..resets] {
            assert_eq!(
                (&a["error"]["class"], &a["error"]["code"]),
                (&json!("transient"), &json!("transport")),
                "{a:#}"
            );
        }
        assert_eq!(view["outcome"]["attempt"], resets + 1, "{view:#}");
        assert_eq!(events_of(&view, "send_failed").len(), resets);
        assert_eq!(events_of(&view, "finished").len(), 1);
        let log = requests_to(&system, channel, phone);
        let resets_seen = log.iter().filter(|r| r.reset).count();
        assert_eq!((log.len(), resets_seen), (resets + 1, resets), "{phone}: {log:#?}");
        let accepted = assert_every_send_is_an_attempt(&system, &view, channel, phone);
        assert_eq!(accepted.len(), 1, "{phone}: accepted once: {accepted:#?}");
    }
}

/// Rule 6 under mixed load: nineteen cascades at once (WhatsApp, then SMS, 2 s each) whose
/// recipients are silent on WhatsApp (no status ever), silent everywhere, delivered with
/// every webhook twice, delivered with reports newest first, or simply delivered. A silent
/// step times out 2 s after acceptance and SMS delivers; the silent-everywhere cascade fails
/// with both steps' reasons; the others end on WhatsApp. One outcome each, one send per
/// channel tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_steps_in_a_mixed_load_time_out_and_the_next_step_delivers() {
    let group = |base: u32, n: u32| (0..n).map(move |i| format!("+1555030{}", base + i)).collect::<Vec<_>>();
    let (silent, duplicated, reordered, mute, plain) =
        (group(5001, 5), group(5011, 3), group(5021, 3), group(5031, 1), group(5041, 7));
    let mut scenarios = String::from("[default]\nbehaviour = \"deliver\"\nafter = \"300ms\"\n");
    for phone in &silent {
        scenarios +=
            &format!("\n[[recipient]]\naddress = \"{phone}\"\nchannels = [\"whatsapp\"]\nbehaviour = \"silent\"\n");
    }
    for phone in &duplicated {
        scenarios += &format!(
            "\n[[recipient]]\naddress = \"{phone}\"\nbehaviour = \"deliver\"\nafter = \"300ms\"\nduplicate = true\n"
        );
    }
    for phone in &reordered {
        scenarios += &format!(
            "\n[[recipient]]\naddress = \"{phone}\"\nbehaviour = \"read\"\ndelivered_after = \"300ms\"\n\
             read_after = \"500ms\"\nreorder = true\n"
        );
    }
    scenarios += &format!("\n[[recipient]]\naddress = \"{}\"\nbehaviour = \"silent\"\n", mute[0]);
    let system = System::start(&scenarios).await;
    let steps = json!([
        {"channel": "whatsapp", "until": "delivered", "timeout": "2s"},
        {"channel": "sms", "until": "delivered", "timeout": "2s"},
    ]);
    let everyone: Vec<&String> =
        silent.iter().chain(&duplicated).chain(&reordered).chain(&mute).chain(&plain).collect();
    let ids = start_all(&system, everyone.iter().map(|p| request(json!(p), steps.clone())).collect()).await;

    for (phone, id) in everyone.iter().zip(&ids) {
        let phone = phone.as_str();
        let is_silent = silent.iter().any(|p| p == phone);
        let is_mute = mute[0] == phone;
        let view = if is_mute {
            system.api.wait_state(id, "failed").await
        } else {
            system.api.wait_state(id, "delivered").await
        };
        if is_silent || is_mute {
            assert_eq!(channels(&view), ["whatsapp", "sms"], "{phone}: {view:#}");
            let reason = view["failures"][0]["reason"].as_str().unwrap_or_default();
            assert!(reason.contains("no `delivered` within 2s"), "{phone}: {view:#}");
            let waited = times_of(&view, "step_failed")[0] - times_of(&view, "accepted")[0];
            assert!((2.0..2.9).contains(&waited), "{phone}: WhatsApp timed out {waited:.2} s after acceptance");
            assert_eq!(view["attempts"][0]["highest"], "accepted", "{view:#}");
        } else {
            assert_eq!(channels(&view), ["whatsapp"], "{phone}: {view:#}");
            assert_eq!(view["outcome"]["channel"], "whatsapp", "{view:#}");
        }
        if is_silent {
            assert_eq!((&view["outcome"]["channel"], &view["outcome"]["step"]), (&json!("sms"), &json!(1)));
        }
        if is_mute {
            let steps = view["outcome"]["steps"].as_array().expect("the failed steps");
            assert_eq!(steps.len(), 2, "{view:#}");
            assert!(view["failures"][1]["reason"].as_str().is_some_and(|r| r.contains("within 2s")), "{view:#}");
        }
        if reordered.iter().any(|p| p == phone) {
            assert_eq!(view["outcome"]["status"], "read", "the newest report came first: {view:#}");
        }
        assert_eq!(events_of(&view, "finished").len(), 1, "{phone}: {:?}", event_types(&view));
        assert_eq!(assert_every_send_is_an_attempt(&system, &view, "whatsapp", phone).len(), 1, "{phone}");
        let sms_sends = assert_every_send_is_an_attempt(&system, &view, "sms", phone).len();
        assert_eq!(sms_sends, usize::from(is_silent || is_mute), "{phone}");
    }

    // The duplicated reports all came and went (two copies of `sent` and of `delivered`
    // each): still one outcome each.
    let copies = |phone: &str| {
        let view = &requests_to(&system, "whatsapp", phone)[0];
        let id = view.message_id.clone().expect("accepted");
        system
            .sandbox
            .webhooks()
            .iter()
            .filter(|w| w.message_id.as_deref() == Some(&id) && w.status == Some(200))
            .count()
    };
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while duplicated.iter().any(|p| copies(p) < 4) {
        assert!(tokio::time::Instant::now() < deadline, "the duplicated reports did not all arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (phone, id) in everyone.iter().zip(&ids) {
        let view = system.api.get(id).await;
        assert_eq!(events_of(&view, "finished").len(), 1, "{phone}: {:?}", event_types(&view));
    }
}
