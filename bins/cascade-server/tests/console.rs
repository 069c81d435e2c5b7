//! The operator console in a real browser: the `cascade-server` binary with the provider
//! sandbox (as in `server.rs`), driven by a headless Chromium through chromedriver. An
//! operator logs in, sends a message and watches its timeline fall over and reach
//! `delivered` live; reorders a policy's steps and sees the next cascade follow the new
//! order; creates a campaign from a CSV with invalid rows and pauses it; looks at the
//! connections. Without chromedriver outside CI each test says loudly that it is skipped; in
//! CI (`CI=true`) it fails. Screenshots of every page land in `target/console-screenshots/`
//! for review.

mod common;

use common::browser::Browser;
use common::{KEY, System};
use fantoccini::key::Key;

/// A browser, and a server whose sandbox follows `scenarios` (TOML, docs/sandbox.md); `None`
/// when the browser tests are skipped (then no server is started).
async fn start(scenarios: &str) -> Option<(System, Browser)> {
    let browser = Browser::start().await?;
    let system = System::start(scenarios).await;
    Some((system, browser))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_harness_drives_the_real_server() {
    let Some((system, browser)) = start("").await else { return };

    browser.goto(&format!("{}/healthz", system.server.base)).await;
    browser.wait_for_text("body", r#""status":"ok""#).await;

    let path = browser.screenshot("healthz").await;
    let png = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", path.display());

    browser.close().await;
}

/// Not on WhatsApp (an error after acceptance), delivered on every other channel after 1.5 s.
const SCENARIOS: &str = r#"
[default]
behaviour = "deliver"
after = "1500ms"

[[recipient]]
address = "+15550100002"
channels = ["whatsapp"]
behaviour = "not_on_channel"
"#;

/// Logs in through the form, from wherever the console sends a visitor without a login.
async fn log_in(system: &System, browser: &Browser) {
    browser.goto(&format!("{}/console", system.server.base)).await;
    browser.wait_for("form[action='/console/login']").await;
    browser.fill("#key", KEY).await;
    browser.click("form[action='/console/login'] button[type=submit]").await;
    browser.wait_for_text("h1", "Cascades").await;
}

/// Sends a message through the cascades page's form and returns once its page is open.
async fn send(system: &System, browser: &Browser, phone: &str, name: &str) {
    browser.goto(&format!("{}/console/cascades", system.server.base)).await;
    browser.click("#send summary").await;
    browser.fill("#send-phone", phone).await;
    browser.fill("#send-name", name).await;
    browser.fill("#send-text", "Hi {{contact.name}}, your order has shipped").await;
    browser.click("#send-submit").await;
    browser.wait_for_text("h1", "Cascade").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_logs_in_sends_a_message_and_watches_its_timeline_reach_delivered() {
    let Some((system, browser)) = start(SCENARIOS).await else { return };

    // A wrong key is refused on the form.
    browser.goto(&format!("{}/console/cascades", system.server.base)).await;
    browser.fill("#key", "not-the-key").await;
    browser.click("form[action='/console/login'] button[type=submit]").await;
    browser.wait_for_text("#login-error", "No API key matches").await;
    browser.screenshot("login").await;
    log_in(&system, &browser).await;

    send(&system, &browser, "+15550100002", "Ann").await;
    // The page opened while the cascade ran; the timeline redraws itself as it goes on.
    browser.wait_for_text("#outcome-state", "delivered").await;
    let outcome = browser.wait_for("#outcome-text").await.text().await.expect("text");
    assert!(outcome.contains("delivered on sms"), "{outcome}");
    let story = browser.wait_for("#story").await.text().await.expect("text");
    assert!(story.contains("sending on whatsapp") && story.contains("fallover from whatsapp"), "{story}");
    assert!(story.contains("sending on sms") && story.contains("delivered"), "{story}");
    let lanes = browser.client().find_all(fantoccini::Locator::Css("svg.tl g.lane")).await.expect("lanes");
    let mut names = Vec::new();
    for lane in lanes {
        names.push(lane.attr("data-channel").await.expect("attr").unwrap_or_default());
    }
    assert_eq!(names, ["whatsapp", "sms"], "one lane per channel tried, in order");
    browser.wait_for("svg.tl line.fallover").await;
    browser.wait_for("svg.tl g.bar-won").await;
    browser.screenshot("cascade-timeline").await;
    browser.set_window_size(390, 844).await;
    browser.screenshot("cascade-timeline-phone").await;
    browser.set_window_size(1280, 900).await;

    // The sandbox saw one send on each channel, the cascade's two attempts.
    assert_eq!((system.sends_to("whatsapp", "+15550100002"), system.sends_to("sms", "+15550100002")), (1, 1));

    browser.goto(&format!("{}/console/cascades?state=delivered", system.server.base)).await;
    browser.wait_for_text("#cascades", "whatsapp → sms").await;
    browser.screenshot("cascades").await;

    // The connections page: each made one send, WhatsApp's failed with the sandbox's code.
    browser.goto(&format!("{}/console/connections", system.server.base)).await;
    browser.wait_for_text("#pools .recent-errors[data-connection='wa']", "131026").await;
    browser.wait_for_text("#connection-sms .share-total", "100").await;
    browser.screenshot("connections").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordering_a_policys_steps_makes_the_next_cascade_follow_the_new_order() {
    let Some((system, browser)) = start(SCENARIOS).await else { return };
    log_in(&system, &browser).await;

    browser.goto(&format!("{}/console/policies", system.server.base)).await;
    browser.wait_for_text("#policies", "default").await;
    browser.screenshot("policies").await;
    browser.click("#policies a[href='/console/policies/default']").await;
    browser.wait_for("#steps[data-reorder]").await;
    assert_eq!(order(&browser).await, ["whatsapp", "sms"]);

    // By keyboard: Alt+Down inside the first step moves it below the second.
    let first = browser.wait_for("#steps li:first-child input[name=timeout]").await;
    first.send_keys(&format!("{}{}", Key::Alt, Key::Down)).await.expect("keys");
    assert_eq!(order(&browser).await, ["sms", "whatsapp"]);
    browser.wait_for_text("#order-status", "whatsapp is now step 2").await;
    // By button: up, and down again.
    browser.click("#steps li:nth-child(2) button[data-move=up]").await;
    assert_eq!(order(&browser).await, ["whatsapp", "sms"]);
    browser.click("#steps li:first-child button[data-move=down]").await;
    assert_eq!(order(&browser).await, ["sms", "whatsapp"]);
    browser.fill("#steps li:first-child input[name=timeout]", "15s").await;
    browser.screenshot("policy-editor").await;
    browser.click("#save-policy").await;
    browser.wait_for_text("#saved", "Saved (version 1)").await;
    browser.wait_for_text("#policy-source", "stored, over the configuration").await;
    assert_eq!(order(&browser).await, ["sms", "whatsapp"], "the saved order comes back");

    // The next cascade goes to SMS first.
    send(&system, &browser, "+15550100001", "Bo").await;
    browser.wait_for_text("#outcome-state", "delivered").await;
    browser.wait_for_text("#outcome-text", "on sms").await;
    assert_eq!((system.sends_to("whatsapp", "+15550100001"), system.sends_to("sms", "+15550100001")), (0, 1));
    browser.close().await;
}

/// The channels of the policy editor's steps, in the order shown.
async fn order(browser: &Browser) -> Vec<String> {
    let selects = browser.client().find_all(fantoccini::Locator::Css("#steps select[name=channel]")).await;
    let mut out = Vec::new();
    for s in selects.expect("selects") {
        out.push(s.prop("value").await.expect("value").unwrap_or_default());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_from_a_csv_with_invalid_rows_shows_its_counts_and_pauses() {
    let Some((system, browser)) = start(SCENARIOS).await else { return };
    log_in(&system, &browser).await;

    // Line 1 is the header: line 4 has no phone number, line 5 repeats line 2.
    let csv = "phone,name\n+12015550111,Ann\n+12015550112,Bo\nnot-a-phone,Cy\n+12015550111,Ann\n+12015550113,Di\n";
    let file = system.dir.join("spring.csv");
    std::fs::write(&file, csv).expect("csv");

    browser.goto(&format!("{}/console/campaigns", system.server.base)).await;
    browser.screenshot("campaigns-empty").await;
    browser.goto(&format!("{}/console/campaigns/new", system.server.base)).await;
    browser.fill("#campaign-name", "Spring sale").await;
    browser.upload("#campaign-list", &file).await;
    browser.fill("#campaign-text", "Hi {{contact.name}}, spring is here").await;
    // One a minute: the first recipient starts at once, the rest wait their turn.
    browser.fill("#campaign-rate", "1/min").await;
    browser.click("#check").await;
    browser.wait_for_text("#report-valid", "3").await;
    browser.wait_for_text("#report-invalid", "1").await;
    browser.wait_for_text("#report-duplicate", "1").await;
    let errors = browser.wait_for("#report-errors").await.text().await.expect("text");
    assert!(errors.contains('4') && errors.contains("not-a-phone"), "{errors}");
    browser.wait_for_text("#preview", "Hi Ann, spring is here").await;
    browser.screenshot("campaign-check").await;
    assert_eq!(system.sends("whatsapp") + system.sends("sms"), 0, "a check sends nothing");

    // Create without choosing the file again: the checked list was kept.
    browser.click("#create").await;
    browser.wait_for("#pause").await;
    browser.wait_for_text("#count-total", "3").await;
    browser.screenshot("campaign-progress").await;
    browser.click("#pause").await;
    browser.wait_for("#resume").await;
    browser.wait_for("#progress[data-state='paused']").await;
    browser.screenshot("campaign-paused").await;
    let started = browser.wait_for("#count-started").await.text().await.expect("text");
    assert!(started.trim() == "0" || started.trim() == "1", "at most one recipient at 1/min: {started}");

    browser.goto(&format!("{}/console/campaigns", system.server.base)).await;
    browser.wait_for_text("main", "Spring sale").await;
    browser.screenshot("campaigns").await;
    browser.close().await;
}
