//! `cascade webhook parse` over saved payloads in each provider's documented shape: the real
//! binary, signatures computed here from the secret, the exit codes and the JSON lines.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use cascade_channel_kit::webhook::{cascade_signature, hmac_sha1, hmac_sha256};
use serde_json::{Value, json};

const WHATSAPP_SECRET: &str = "6c4f1e7a2b9d0e8f";
const TELEGRAM_SECRET: &str = "tg-hook_Secret-77";
const TWILIO_TOKEN: &str = "f1e2d3c4b5a6978877665544332211ff";
const TWILIO_URL: &str = "https://cascade.example.com/webhooks/sms-us?tenant=acme";
const VIBER_TOKEN: &str = "4453b6ac12345678-e02c5f12174805f9-daec9cbb5448c51f";
const MAX_SECRET: &str = "hook-Secret_42";
const WEBHOOK_SECRET: &str = "whsec_5f2a9c";

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/webhooks/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn body(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture")
}

/// Runs the binary with `args`, `stdin` piped in (empty when `None`).
fn cascade(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cascade"))
        .args(args)
        .env_remove("CASCADE_SERVER")
        .env_remove("CASCADE_API_KEY")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(bytes) = stdin {
        input.write_all(bytes).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("the binary ends")
}

/// `cascade webhook parse --adapter <adapter> <extra...>`.
fn parse(adapter: &str, extra: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut args = vec!["webhook", "parse", "--adapter", adapter];
    args.extend_from_slice(extra);
    cascade(&args, stdin)
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("an exit code")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every stdout line as JSON.
fn lines(out: &Output) -> Vec<Value> {
    let text = String::from_utf8(out.stdout.clone()).expect("utf-8");
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}"))).collect()
}

/// Asserts exit 0 and exactly `expected` on stdout, one object per line.
fn assert_items(out: &Output, expected: &[Value]) {
    assert_eq!(code(out), 0, "stderr: {}", stderr(out));
    assert_eq!(lines(out), expected);
}

/// Asserts exit `want`, with stderr mentioning every part of `says`.
fn assert_fails(out: &Output, want: i32, says: &[&str]) {
    let err = stderr(out);
    assert_eq!(code(out), want, "stderr: {err}");
    assert!(out.stdout.is_empty(), "nothing on stdout without --json: {:?}", String::from_utf8_lossy(&out.stdout));
    for part in says {
        assert!(err.contains(part), "stderr should mention {part:?}: {err}");
    }
}

fn header(name: &str, value: &str) -> String {
    format!("{name}: {value}")
}

// ---------------------------------------------------------------------------------------------
// WhatsApp: X-Hub-Signature-256 = "sha256=" + hex HMAC-SHA256(app secret, body).

fn whatsapp_signature(secret: &str, body: &[u8]) -> String {
    header("X-Hub-Signature-256", &format!("sha256={}", hex::encode(hmac_sha256(secret.as_bytes(), body))))
}

fn whatsapp_items() -> Vec<Value> {
    let wamid = "wamid.HBgLMTU1NTAxMjM0NTYVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA";
    vec![
        json!({"type": "status", "provider_message_id": wamid, "status": "delivered", "at": "2026-01-31T10:00:00Z"}),
        json!({"type": "status", "provider_message_id": wamid, "status": "read", "at": "2026-01-31T10:01:00Z"}),
        json!({"type": "status", "provider_message_id": "wamid.HBgLMTU1NTAxMjM0NTcVAgARGBJCOTM2RkMwMkI0MjU4QzE4NTgA",
               "status": "failed", "at": "2026-01-31T10:00:05Z",
               "error": {"code": "131026", "class": "unreachable", "detail": "Message undeliverable"}}),
        json!({"type": "inbound", "from": "+447700900123", "text": "Thanks, got it!", "at": "2026-01-31T10:02:00Z"}),
    ]
}

#[test]
fn whatsapp_signed_notification_gives_statuses_a_failure_and_a_reply() {
    let file = fixture("whatsapp-notification.json");
    let sig = whatsapp_signature(WHATSAPP_SECRET, &body("whatsapp-notification.json"));
    let out = parse("whatsapp", &["--secret", WHATSAPP_SECRET, "--header", &sig, &file], None);
    assert_items(&out, &whatsapp_items());
    // Without --secret nothing is verified, and the items are the same.
    assert_items(&parse("whatsapp", &[&file], None), &whatsapp_items());
}

#[test]
fn whatsapp_wrong_or_missing_signature_exits_3() {
    let file = fixture("whatsapp-notification.json");
    let sig = whatsapp_signature("another-app-secret", &body("whatsapp-notification.json"));
    let out = parse("whatsapp", &["--secret", WHATSAPP_SECRET, "--header", &sig, &file], None);
    assert_fails(&out, 3, &["X-Hub-Signature-256", "does not match"]);

    // Signed over other bytes (one space less): the body must be byte for byte as received.
    let mut other = body("whatsapp-notification.json");
    other.retain(|b| *b != b'\n');
    let sig = whatsapp_signature(WHATSAPP_SECRET, &other);
    let out = parse("whatsapp", &["--secret", WHATSAPP_SECRET, "--header", &sig, &file], None);
    assert_fails(&out, 3, &["does not match"]);

    let out = parse("whatsapp", &["--secret", WHATSAPP_SECRET, &file], None);
    assert_fails(&out, 3, &["X-Hub-Signature-256", "missing"]);
}

#[test]
fn whatsapp_malformed_notification_exits_2_naming_the_field() {
    let file = fixture("whatsapp-malformed.json");
    let sig = whatsapp_signature(WHATSAPP_SECRET, &body("whatsapp-malformed.json"));
    let out = parse("whatsapp", &["--secret", WHATSAPP_SECRET, "--header", &sig, &file], None);
    assert_fails(&out, 2, &["whatsapp-malformed.json", "missing field `id`"]);
    assert_fails(&parse("whatsapp", &[&file], None), 2, &["missing field `id`"]);
}

// ---------------------------------------------------------------------------------------------
// Telegram: X-Telegram-Bot-Api-Secret-Token = the secret token given to setWebhook.

#[test]
fn telegram_update_with_the_secret_token_is_an_inbound_message() {
    let file = fixture("telegram-message.json");
    let token = header("X-Telegram-Bot-Api-Secret-Token", TELEGRAM_SECRET);
    let out = parse("telegram", &["--secret", TELEGRAM_SECRET, "--header", &token, &file], None);
    let expected = json!({"type": "inbound", "from": "401234567", "text": "Is my order on its way?", "at": "2026-01-31T10:02:00Z"});
    assert_items(&out, &[expected]);
}

#[test]
fn telegram_wrong_or_missing_secret_token_exits_3() {
    let file = fixture("telegram-message.json");
    let token = header("X-Telegram-Bot-Api-Secret-Token", "not-the-token");
    let out = parse("telegram", &["--secret", TELEGRAM_SECRET, "--header", &token, &file], None);
    assert_fails(&out, 3, &["X-Telegram-Bot-Api-Secret-Token", "does not match"]);
    let out = parse("telegram", &["--secret", TELEGRAM_SECRET, &file], None);
    assert_fails(&out, 3, &["X-Telegram-Bot-Api-Secret-Token", "missing"]);
}

#[test]
fn telegram_malformed_update_exits_2_and_edits_are_skipped() {
    let file = fixture("telegram-malformed.json");
    let token = header("X-Telegram-Bot-Api-Secret-Token", TELEGRAM_SECRET);
    let out = parse("telegram", &["--secret", TELEGRAM_SECRET, "--header", &token, &file], None);
    assert_fails(&out, 2, &["Telegram Update", "missing field `chat`"]);
    assert_items(&parse("telegram", &[&fixture("telegram-edited.json")], None), &[]);
}

// ---------------------------------------------------------------------------------------------
// Twilio: X-Twilio-Signature = base64 HMAC-SHA1(auth token, URL + sorted name/value pairs).

fn twilio_signature(token: &str, url: &str, form: &[u8]) -> String {
    let mut params: Vec<(String, String)> =
        url::form_urlencoded::parse(form).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    params.sort();
    let mut data = url.to_owned();
    for (k, v) in params {
        data.push_str(&k);
        data.push_str(&v);
    }
    let sig = base64::engine::general_purpose::STANDARD.encode(hmac_sha1(token.as_bytes(), data.as_bytes()));
    header("X-Twilio-Signature", &sig)
}

fn twilio(name: &str, token: &str, url: &str) -> Output {
    let sig = twilio_signature(token, url, &body(name));
    parse("twilio", &["--secret", TWILIO_TOKEN, "--url", TWILIO_URL, "--header", &sig, &fixture(name)], None)
}

#[test]
fn twilio_signed_callbacks_give_statuses_and_an_incoming_message() {
    let out = twilio("twilio-delivered.form", TWILIO_TOKEN, TWILIO_URL);
    assert_items(
        &out,
        &[json!({"type": "status", "provider_message_id": "SM3f1c2a9d8e7b6a5f4e3d2c1b0a9f8e7d",
                  "status": "delivered", "at": null})],
    );
    let out = twilio("twilio-undelivered.form", TWILIO_TOKEN, TWILIO_URL);
    assert_items(
        &out,
        &[json!({"type": "status", "provider_message_id": "SM9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b",
                  "status": "failed", "at": null,
                  "error": {"code": "30005", "class": "unreachable", "detail": "undelivered: unknown destination handset"}})],
    );
    let out = twilio("twilio-incoming.form", TWILIO_TOKEN, TWILIO_URL);
    assert_items(
        &out,
        &[json!({"type": "inbound", "from": "+447700900123", "text": "Yes, please call me at 5pm", "at": null})],
    );
}

#[test]
fn twilio_wrong_signature_url_or_missing_header_exits_3() {
    let out = twilio("twilio-delivered.form", "0000000000000000000000000000000a", TWILIO_URL);
    assert_fails(&out, 3, &["X-Twilio-Signature", "does not match", "--url"]);
    // Signed for another URL (no query string): Twilio signs the URL it called.
    let out = twilio("twilio-delivered.form", TWILIO_TOKEN, "https://cascade.example.com/webhooks/sms-us");
    assert_fails(&out, 3, &["does not match"]);
    let file = fixture("twilio-delivered.form");
    let out = parse("twilio", &["--secret", TWILIO_TOKEN, "--url", TWILIO_URL, &file], None);
    assert_fails(&out, 3, &["X-Twilio-Signature", "missing"]);
}

#[test]
fn twilio_needs_url_to_verify_but_not_to_parse() {
    let file = fixture("twilio-delivered.form");
    let sig = twilio_signature(TWILIO_TOKEN, TWILIO_URL, &body("twilio-delivered.form"));
    let out = parse("twilio", &["--secret", TWILIO_TOKEN, "--header", &sig, &file], None);
    assert_fails(&out, 2, &["--url"]);
    let out = parse("twilio", &[&file], None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(lines(&out).len(), 1);
}

#[test]
fn twilio_callback_without_message_sid_exits_2() {
    let out = twilio("twilio-malformed.form", TWILIO_TOKEN, TWILIO_URL);
    assert_fails(&out, 2, &["without MessageSid"]);
}

// ---------------------------------------------------------------------------------------------
// Viber: X-Viber-Content-Signature = hex HMAC-SHA256(auth token, body).

fn viber(name: &str, token: &str) -> Output {
    let sig = header("X-Viber-Content-Signature", &hex::encode(hmac_sha256(token.as_bytes(), &body(name))));
    parse("viber", &["--secret", VIBER_TOKEN, "--header", &sig, &fixture(name)], None)
}

#[test]
fn viber_signed_callbacks_give_statuses_and_a_message() {
    let out = viber("viber-delivered.json", VIBER_TOKEN);
    assert_items(
        &out,
        &[json!({"type": "status", "provider_message_id": "5741311803571721087", "status": "delivered",
                  "at": "2026-01-31T10:00:00.123Z"})],
    );
    let out = viber("viber-failed.json", VIBER_TOKEN);
    assert_items(
        &out,
        &[json!({"type": "status", "provider_message_id": "5741311803571721088", "status": "failed",
                  "at": "2026-01-31T10:00:01.456Z",
                  "error": {"code": "failed", "class": "rejected", "detail": "failure description"}})],
    );
    let out = viber("viber-message.json", VIBER_TOKEN);
    assert_items(
        &out,
        &[json!({"type": "inbound", "from": "01234567890A=", "text": "Please send it to my office",
                  "at": "2026-01-31T10:02:00.789Z"})],
    );
}

#[test]
fn viber_subscribed_is_skipped() {
    assert_items(&viber("viber-subscribed.json", VIBER_TOKEN), &[]);
    assert_items(&parse("viber", &[&fixture("viber-subscribed.json")], None), &[]);
}

#[test]
fn viber_wrong_or_missing_signature_exits_3() {
    assert_fails(&viber("viber-delivered.json", "another-token"), 3, &["X-Viber-Content-Signature", "does not match"]);
    let out = parse("viber", &["--secret", VIBER_TOKEN, &fixture("viber-delivered.json")], None);
    assert_fails(&out, 3, &["X-Viber-Content-Signature", "missing"]);
}

#[test]
fn viber_status_without_message_token_exits_2() {
    assert_fails(&viber("viber-malformed.json", VIBER_TOKEN), 2, &["seen without message_token"]);
}

// ---------------------------------------------------------------------------------------------
// MAX: X-Max-Bot-Api-Secret = the subscription's secret.

#[test]
fn max_update_with_the_secret_is_an_inbound_message() {
    let secret = header("X-Max-Bot-Api-Secret", MAX_SECRET);
    let out = parse("max", &["--secret", MAX_SECRET, "--header", &secret, &fixture("max-message.json")], None);
    assert_items(
        &out,
        &[json!({"type": "inbound", "from": "5001234", "text": "Где мой заказ?", "at": "2026-01-31T10:02:00.400Z"})],
    );
}

#[test]
fn max_wrong_or_missing_secret_exits_3() {
    let secret = header("X-Max-Bot-Api-Secret", "other-secret");
    let out = parse("max", &["--secret", MAX_SECRET, "--header", &secret, &fixture("max-message.json")], None);
    assert_fails(&out, 3, &["X-Max-Bot-Api-Secret", "does not match"]);
    let out = parse("max", &["--secret", MAX_SECRET, &fixture("max-message.json")], None);
    assert_fails(&out, 3, &["X-Max-Bot-Api-Secret", "missing"]);
}

#[test]
fn max_message_created_without_message_exits_2() {
    let secret = header("X-Max-Bot-Api-Secret", MAX_SECRET);
    let out = parse("max", &["--secret", MAX_SECRET, "--header", &secret, &fixture("max-malformed.json")], None);
    assert_fails(&out, 2, &["message_created without message"]);
}

// ---------------------------------------------------------------------------------------------
// The generic webhook channel: X-Cascade-Signature = t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>.

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn webhook(name: &str, secret: &str, t: i64) -> Output {
    let sig = header("X-Cascade-Signature", &cascade_signature(secret.as_bytes(), t, &body(name)));
    parse("webhook", &["--secret", WEBHOOK_SECRET, "--header", &sig, &fixture(name)], None)
}

#[test]
fn webhook_signed_report_gives_statuses_and_a_reply() {
    let out = webhook("webhook-report.json", WEBHOOK_SECRET, now());
    assert_items(
        &out,
        &[
            json!({"type": "status", "provider_message_id": "line-7f3a9c", "status": "delivered",
                   "at": "2026-01-31T10:00:00Z"}),
            json!({"type": "status", "provider_message_id": "line-7f3aa0", "status": "failed", "at": null,
                   "error": {"code": "upstream_timeout", "class": "transient",
                             "detail": "the LINE API did not answer in 10 s"}}),
            json!({"type": "inbound", "from": "U4af4980629", "text": "Can I change the delivery date?",
                   "at": "2026-01-31T10:02:00Z"}),
        ],
    );
}

#[test]
fn webhook_wrong_stale_or_missing_signature_exits_3() {
    assert_fails(&webhook("webhook-report.json", "whsec_other", now()), 3, &["X-Cascade-Signature", "does not match"]);
    let out = webhook("webhook-report.json", WEBHOOK_SECRET, now() - 3600);
    assert_fails(&out, 3, &["X-Cascade-Signature", "timestamp", "replay"]);
    let out = parse("webhook", &["--secret", WEBHOOK_SECRET, &fixture("webhook-report.json")], None);
    assert_fails(&out, 3, &["X-Cascade-Signature", "missing"]);
}

#[test]
fn webhook_report_with_an_unknown_status_exits_2() {
    let out = webhook("webhook-malformed.json", WEBHOOK_SECRET, now());
    assert_fails(&out, 2, &["unknown variant `arrived`"]);
}

// ---------------------------------------------------------------------------------------------
// Input, --json, and bad arguments.

#[test]
fn the_body_can_come_from_stdin() {
    let payload = body("whatsapp-notification.json");
    let sig = whatsapp_signature(WHATSAPP_SECRET, &payload);
    let out = parse("whatsapp", &["--secret", WHATSAPP_SECRET, "--header", &sig, "-"], Some(&payload));
    assert_items(&out, &whatsapp_items());
    // No FILE at all reads stdin too.
    let out = parse("viber", &[], Some(&body("viber-delivered.json")));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(lines(&out)[0]["status"], "delivered");
    // A wrong signature over stdin is refused the same way.
    let sig = whatsapp_signature("another-app-secret", &payload);
    let out = parse("whatsapp", &["--secret", WHATSAPP_SECRET, "--header", &sig, "-"], Some(&payload));
    assert_fails(&out, 3, &["does not match"]);
    // An empty stdin is a payload the adapter cannot parse.
    assert_fails(&parse("telegram", &["-"], Some(b"")), 2, &["stdin", "Telegram Update"]);
}

#[test]
fn json_mode_prints_the_same_lines_and_errors_as_json() {
    let file = fixture("whatsapp-notification.json");
    let out = cascade(&["--json", "webhook", "parse", "--adapter", "whatsapp", &file], None);
    assert_items(&out, &whatsapp_items());

    let sig = whatsapp_signature("another-app-secret", &body("whatsapp-notification.json"));
    let out = cascade(
        &["webhook", "parse", "--json", "--adapter", "whatsapp", "--secret", WHATSAPP_SECRET, "--header", &sig, &file],
        None,
    );
    assert_eq!(code(&out), 3);
    let error = &lines(&out)[0];
    assert_eq!(error["exit_code"], 3);
    assert_eq!(error["detail"]["reason"], "bad_signature");
    assert_eq!(error["detail"]["header"], "X-Hub-Signature-256");
    assert!(error["error"].as_str().is_some_and(|e| e.contains("does not match")), "{error}");
}

#[test]
fn bad_arguments_exit_2_with_a_clear_message() {
    let file = fixture("viber-delivered.json");
    let out = parse("signal", &[&file], None);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(err.contains("'signal'") && err.contains("--adapter"), "{err}");
    assert!(err.contains("whatsapp") && err.contains("telegram") && err.contains("twilio"), "{err}");

    let out = cascade(&["webhook", "parse", &file], None);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--adapter"), "{}", stderr(&out));

    let out = parse("viber", &["--header", "X-Viber-Content-Signature 9a1c", &file], None);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("Name: value"), "{}", stderr(&out));

    assert_fails(&parse("viber", &[&fixture("no-such-payload.json")], None), 2, &["no-such-payload.json"]);
    assert_fails(&parse("viber", &["--secret", "", &file], None), 2, &["--secret"]);
    // A secret Telegram would never accept names the rule.
    let out = parse("telegram", &["--secret", "has space", &fixture("telegram-message.json")], None);
    assert_fails(&out, 2, &["--secret", "A-Z, a-z, 0-9"]);
}

#[test]
fn help_has_examples() {
    let out = cascade(&["webhook", "parse", "--help"], None);
    assert_eq!(code(&out), 0);
    let help = String::from_utf8_lossy(&out.stdout);
    for part in ["--adapter", "X-Hub-Signature-256", "X-Twilio-Signature", "Examples:", "Exit codes"] {
        assert!(help.contains(part), "help should mention {part:?}: {help}");
    }
}
