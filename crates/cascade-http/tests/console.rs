//! The operator console in process, without a browser: logging in and the cookie it sets,
//! pages that need a login, forms refused without their token or from another site, a
//! cascade sent from the console and its timeline (delivered, and a fallover with its
//! reason), and keys that see only their own cascades. The browser tests are in
//! `bins/cascade-server/tests/console.rs`.

mod common;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use cascade_engine::{Accepted, ErrorClass, SendError, Status};
use cascade_http::auth::{ApiKey, Scope};
use common::*;
use futures_util::StreamExt;
use tower::ServiceExt;

const ANN: &str = "+12015550101";

/// A browser's view of the console: the cookie it holds.
struct Browser<'a> {
    t: &'a TestApp,
    cookie: Option<String>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The form token the page carries.
    fn csrf(&self) -> String {
        let at = self.body.find(r#"name="csrf" value=""#).expect("a form token on the page") + 19;
        self.body[at..].split('"').next().expect("token").to_owned()
    }
}

impl<'a> Browser<'a> {
    fn new(t: &'a TestApp) -> Self {
        Self { t, cookie: None }
    }

    async fn send(&mut self, method: Method, path: &str, form: Option<&[(&str, &str)]>, site: &str) -> Page {
        let mut r = Request::builder().method(method).uri(path).header("sec-fetch-site", site);
        if let Some(c) = &self.cookie {
            r = r.header("cookie", format!("other=1; {c}"));
        }
        let body = match form {
            Some(fields) => {
                r = r.header("content-type", "application/x-www-form-urlencoded");
                let mut s = url::form_urlencoded::Serializer::new(String::new());
                for (k, v) in fields {
                    s.append_pair(k, v);
                }
                Body::from(s.finish())
            }
            None => Body::empty(),
        };
        let response = self.t.router.clone().oneshot(r.body(body).expect("request")).await.expect("infallible");
        let (status, headers) = (response.status(), response.headers().clone());
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
        if let Some(set) = headers.get("set-cookie").and_then(|v| v.to_str().ok()) {
            let pair = set.split(';').next().unwrap_or_default();
            self.cookie = (!pair.ends_with('=')).then(|| pair.to_owned());
        }
        Page { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
    }

    async fn get(&mut self, path: &str) -> Page {
        self.send(Method::GET, path, None, "same-origin").await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(Method::POST, path, Some(form), "same-origin").await
    }

    async fn login(&mut self, key: &str) -> Page {
        let page = self.post("/console/login", &[("key", key), ("next", "/console/cascades")]).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        page
    }
}

#[tokio::test]
async fn pages_need_a_login_and_the_login_sets_a_strict_http_only_cookie() {
    let t = TestApp::new().await;
    let mut b = Browser::new(&t);

    let page = b.get("/console/cascades?state=failed").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/console/login?next=%2Fconsole%2Fcascades%3Fstate%3Dfailed");
    let form = b.get(page.location()).await;
    assert_eq!(form.status, StatusCode::OK);
    // The form sends the operator back there (the value is HTML-escaped).
    assert!(form.body.contains(r#"name="next" value="&#x2f;console&#x2f;cascades?state=failed""#), "{}", form.body);

    let wrong = b.post("/console/login", &[("key", "not-a-key"), ("next", "/console/cascades")]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("No API key matches"), "{}", wrong.body);
    assert!(b.cookie.is_none());

    // Somewhere else to go afterwards is not followed.
    let ok = b.post("/console/login", &[("key", READ_KEY), ("next", "https://evil.example/")]).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.location(), "/console/cascades");
    let set = ok.headers["set-cookie"].to_str().expect("ascii");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age=43200"] {
        assert!(set.contains(part), "{part} missing from {set}");
    }
    assert!(!set.contains("Secure"), "no TLS here: {set}");
    assert!(!set.contains(READ_KEY), "the key is not stored as it was typed: {set}");

    let list = b.get("/console/cascades").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("dashboard"), "the key's name is shown");
    assert!(!list.body.contains("Send a message"), "a read key cannot send");
    let csp = list.headers["content-security-policy"].to_str().expect("ascii");
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");

    // Logging out needs the token and forgets the cookie.
    let refused = b.post("/console/logout", &[("csrf", "nope")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let out = b.post("/console/logout", &[("csrf", &list.csrf())]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.headers["set-cookie"].to_str().expect("ascii").contains("Max-Age=0"));
    assert!(b.cookie.is_none());
    assert_eq!(b.get("/console/cascades").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn behind_tls_the_cookie_is_secure() {
    let t = TestApp::with(|b| b.public_url("https://cascade.example.com/".parse().expect("url"))).await;
    let page = Browser::new(&t).login(SEND_KEY).await;
    assert!(page.headers["set-cookie"].to_str().expect("ascii").contains("; Secure"));
}

#[tokio::test]
async fn forms_without_the_token_from_another_site_or_beyond_the_key_are_refused() {
    let t = TestApp::new().await;
    let mut b = Browser::new(&t);
    b.login(SEND_KEY).await;
    let csrf = b.get("/console/cascades").await.csrf();
    let fields = |token: &str| {
        [
            ("csrf", token.to_owned()),
            ("phone", ANN.to_owned()),
            ("text", "Hi".to_owned()),
            ("policy", "default".to_owned()),
        ]
    };
    let bad = fields("0000");
    let bad: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let page = b.post("/console/cascades", &bad).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("token does not match"), "{}", page.body);

    let good = fields(&csrf);
    let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let cross = b.send(Method::POST, "/console/cascades", Some(&good), "cross-site").await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    let login = b.send(Method::POST, "/console/login", Some(&[("key", SEND_KEY)]), "cross-site").await;
    assert_eq!(login.status, StatusCode::FORBIDDEN, "a login from another site");
    assert!(t.whatsapp.sends().is_empty() && t.sms.sends().is_empty(), "nothing was sent");

    // A read key's token is its own, and it may not send anyway.
    let mut reader = Browser::new(&t);
    reader.login(READ_KEY).await;
    let token = reader.get("/console/cascades").await.csrf();
    assert_ne!(token, csrf);
    let page = reader
        .post("/console/cascades", &[("csrf", &token), ("phone", ANN), ("text", "Hi"), ("policy", "default")])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("lacks the `send` scope"), "{}", page.body);

    // Bad input is shown on the form, field by field, and nothing is sent.
    let page =
        b.post("/console/cascades", &[("csrf", &csrf), ("phone", "12"), ("text", "Hi"), ("policy", "nope")]).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.body.contains("policy: no policy named"), "{}", page.body);
    assert!(t.whatsapp.sends().is_empty() && t.sms.sends().is_empty());
}

/// Waits until the cascade page says the cascade has ended.
async fn finished_page(b: &mut Browser<'_>, path: &str) -> Page {
    for _ in 0..500 {
        let page = b.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        if !page.body.contains(r#"data-state="running""#) {
            return page;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{path} did not finish in 5 s");
}

#[tokio::test]
async fn a_cascade_sent_from_the_console_shows_its_fallover_and_delivery_on_the_timeline() {
    let t = TestApp::new().await;
    let _workers = t.app.spawn_workers();
    t.whatsapp.set_default(Some(Err(SendError::new(ErrorClass::Rejected, "131026", "not a WhatsApp user"))));
    let delivered = Accepted { provider_message_id: "sms-1".into(), cost: None, status: Some(Status::Delivered) };
    t.sms.set_default(Some(Ok(delivered)));

    let mut b = Browser::new(&t);
    b.login(SEND_KEY).await;
    let csrf = b.get("/console/cascades").await.csrf();
    let started = b
        .post(
            "/console/cascades",
            &[("csrf", &csrf), ("phone", ANN), ("name", "Ann"), ("text", "Hi {{contact.name}}"), ("policy", "default")],
        )
        .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let path = started.location().to_owned();
    assert!(path.starts_with("/console/cascades/"), "{path}");

    let page = finished_page(&mut b, &path).await;
    let body = &page.body;
    assert!(body.contains(r#"data-state="delivered""#), "{body}");
    assert!(body.contains("delivered: delivered on sms via sms-main (step 2)"), "{body}");
    // One lane per channel tried, in order, and the fallover between them with its reason.
    let (wa, sms) = (body.find(r#"data-channel="whatsapp""#), body.find(r#"data-channel="sms""#));
    assert!(wa.is_some() && sms.is_some() && wa < sms, "{body}");
    assert!(body.contains(r#"class="bar bar-failed""#) && body.contains(r#"class="bar bar-won""#), "{body}");
    assert!(body.contains(r#"class="fallover""#), "{body}");
    assert!(body.contains("rejected error 131026: not a WhatsApp user"), "{body}");
    assert!(body.contains("fallover from whatsapp"), "{body}");
    assert!(!body.contains("data-live="), "a finished cascade is not watched");
    assert_eq!(t.sms.sends()[0].content().text, "Hi Ann");

    // The fragment the live page swaps in is the same timeline.
    let fragment = b.get(&format!("{path}/timeline")).await;
    assert!(fragment.body.starts_with(r#"<div class="timeline""#) && fragment.body.contains("fallover from whatsapp"));

    // The live stream of a finished cascade says so at once, then ends.
    let live = sse_events(&b, &format!("{path}/live")).await;
    assert_eq!(live, ["end"]);

    // The list shows it, and its filters work.
    let list = b.get("/console/cascades?state=delivered&channel=sms&since=1h").await;
    assert!(list.body.contains(&path) && list.body.contains("whatsapp → sms"), "{}", list.body);
    let none = b.get("/console/cascades?state=failed").await;
    assert!(!none.body.contains(&path) && none.body.contains("No cascades match"), "{}", none.body);
}

async fn sse_events(b: &Browser<'_>, path: &str) -> Vec<String> {
    let r = Request::get(path).header("cookie", b.cookie.clone().expect("logged in")).body(Body::empty()).expect("req");
    b.t.sse_request(r).await
}

#[tokio::test]
async fn a_key_sees_only_its_own_cascades_and_admin_sees_all() {
    let t = TestApp::new().await;
    let _workers = t.app.spawn_workers();
    let mut crm = Browser::new(&t);
    crm.login(SEND_KEY).await;
    let csrf = crm.get("/console/cascades").await.csrf();
    let started =
        crm.post("/console/cascades", &[("csrf", &csrf), ("phone", ANN), ("text", "Hi"), ("policy", "default")]).await;
    let path = started.location().to_owned();

    let mut partner = Browser::new(&t);
    partner.login(PARTNER_KEY).await;
    let page = partner.get(&path).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    for part in ["timeline", "live"] {
        assert_eq!(partner.get(&format!("{path}/{part}")).await.status, StatusCode::NOT_FOUND, "{part}");
    }
    assert!(!partner.get("/console/cascades").await.body.contains(&path));

    let mut ops = Browser::new(&t);
    ops.login(ADMIN_KEY).await;
    assert_eq!(ops.get(&path).await.status, StatusCode::OK);
    assert!(ops.get("/console/cascades").await.body.contains(&path));
    assert_eq!(ops.get("/console/cascades/not-an-id").await.status, StatusCode::NOT_FOUND);
}

/// The editor's form as a browser posts it: the token, the version, then each step's fields
/// in the order shown.
fn policy_form<'a>(csrf: &'a str, version: &'a str, steps: &[(&'a str, &'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut f = vec![("csrf", csrf), ("version", version), ("rest", "{}")];
    for (channel, until, timeout) in steps {
        f.extend([("channel", *channel), ("until", *until), ("timeout", *timeout), ("extra", "")]);
    }
    f.extend([("existing_chat_first", "on"), ("late_success_wins", "on")]);
    f
}

#[tokio::test]
async fn a_policy_reordered_in_the_editor_is_followed_by_the_next_cascade_and_reverts_when_deleted() {
    let t = TestApp::new().await;
    let _workers = t.app.spawn_workers();
    let delivered = Accepted { provider_message_id: String::new(), cost: None, status: Some(Status::Delivered) };
    t.whatsapp.set_default(Some(Ok(delivered.clone())));
    t.sms.set_default(Some(Ok(delivered)));
    let mut ops = Browser::new(&t);
    ops.login(ADMIN_KEY).await;

    let list = ops.get("/console/policies").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("/console/policies/default") && list.body.contains("configuration"), "{}", list.body);
    let editor = ops.get("/console/policies/default").await;
    assert!(editor.body.contains("data-reorder") && editor.body.contains("Move this step up"), "{}", editor.body);
    let (wa, sms) = (
        editor.body.find(r#"<option value="whatsapp" selected>"#),
        editor.body.find(r#"<option value="sms" selected>"#),
    );
    assert!(wa.is_some() && wa < sms, "whatsapp first, as configured");

    // SMS first now, waiting for `delivered` for 30 s.
    let csrf = editor.csrf();
    let form = policy_form(&csrf, "0", &[("sms", "delivered", "30s"), ("whatsapp", "delivered", "1m")]);
    let saved = ops.post("/console/policies/default", &form).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(saved.location(), "/console/policies/default?saved=1");
    let page = ops.get(saved.location()).await;
    assert!(
        page.body.contains("Saved (version 1)") && page.body.contains("stored, over the configuration"),
        "{}",
        page.body
    );
    let stored = t.app.policies().resolve("default").expect("policy");
    assert_eq!(stored.steps.iter().map(|s| s.channel.as_str()).collect::<Vec<_>>(), ["sms", "whatsapp"]);
    assert_eq!(stored.steps[0].timeout, Some(std::time::Duration::from_secs(30)));

    // The next cascade follows the new order.
    let started =
        ops.post("/console/cascades", &[("csrf", &csrf), ("phone", ANN), ("text", "Hi"), ("policy", "default")]).await;
    let path = started.location().to_owned();
    let page = finished_page(&mut ops, &path).await;
    assert!(page.body.contains("delivered on sms"), "{}", page.body);
    assert!(t.whatsapp.sends().is_empty() && t.sms.sends().len() == 1);

    // A page opened before that save may not overwrite it.
    let stale = ops.post("/console/policies/default", &form).await;
    assert_eq!(stale.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(stale.body.contains("Someone saved"), "{}", stale.body);

    // A bad value is named, and what was typed stays on the page.
    let bad = policy_form(&csrf, "1", &[("sms", "", "soon")]);
    let page = ops.post("/console/policies/default", &bad).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.body.contains("steps[0].timeout: invalid duration `soon`"), "{}", page.body);
    assert!(page.body.contains(r#"value="soon""#), "{}", page.body);

    // Deleting the stored one brings the configuration's back.
    let deleted = ops.post("/console/policies/default/delete", &[("csrf", &csrf)]).await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.body);
    let back = t.app.policies().resolve("default").expect("policy");
    assert_eq!(back.steps[0].channel.as_str(), "whatsapp");
}

#[tokio::test]
async fn new_policies_need_a_free_name_and_only_admin_keys_edit() {
    let t = TestApp::new().await;
    let mut ops = Browser::new(&t);
    ops.login(ADMIN_KEY).await;
    let csrf = ops.get("/console/policies/new").await.csrf();
    let mut form = policy_form(&csrf, "0", &[("sms", "", "")]);
    form.push(("name", "sms-only"));
    let made = ops.post("/console/policies", &form).await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    assert_eq!(made.location(), "/console/policies/sms-only?saved=1");
    assert!(ops.get("/console/policies").await.body.contains("/console/policies/sms-only"));
    let again = ops.post("/console/policies", &form).await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(again.body.contains("exists already"), "{}", again.body);
    for name in ["no spaces", "new"] {
        let mut bad = policy_form(&csrf, "0", &[("sms", "", "")]);
        bad.push(("name", name));
        let page = ops.post("/console/policies", &bad).await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{name}");
        assert!(page.body.contains("is not a policy name"), "{}", page.body);
    }

    // A key without `admin` sees the policy but cannot change it.
    let mut crm = Browser::new(&t);
    crm.login(SEND_KEY).await;
    let page = crm.get("/console/policies/sms-only").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("disabled") && !page.body.contains("save-policy"), "{}", page.body);
    let token = page.csrf();
    let refused = crm.post("/console/policies/sms-only", &policy_form(&token, "1", &[("whatsapp", "", "")])).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(crm.get("/console/policies/new").await.status, StatusCode::FORBIDDEN);
    assert_eq!(t.app.policies().resolve("sms-only").expect("kept").steps[0].channel.as_str(), "sms");
}

/// The `<tr>` of a connection on the Connections page.
fn connection_row<'p>(body: &'p str, id: &str) -> &'p str {
    let at = body.find(&format!(r#"data-connection="{id}">"#)).unwrap_or_else(|| panic!("no row for {id}: {body}"));
    &body[at..at + body[at..].find("</tr>").expect("end of row")]
}

/// Waits until `GET /v1/connections` has counted `sends` in the last five minutes, channel by
/// channel (the counts follow the engine's events a moment later).
async fn connections_counted(t: &TestApp, sends: &[u64]) -> serde_json::Value {
    for _ in 0..500 {
        let (status, _, body) = t.get("/v1/connections", READ_KEY).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let counted: Vec<u64> = body["channels"]
            .as_array()
            .expect("channels")
            .iter()
            .map(|c| c["sends"]["last_5_minutes"].as_u64().expect("count"))
            .collect();
        if counted == sends {
            return body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("GET /v1/connections never counted {sends:?}");
}

/// Starts a cascade to `phone` with the `default` policy; its id.
async fn start_cascade(t: &TestApp, phone: &str) -> String {
    let body = serde_json::json!({"contact": {"phone": phone}, "message": {"text": "Hi"}, "policy": "default"});
    let (status, _, answer) = t.post_json("/v1/cascades", SEND_KEY, &body, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    answer["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn the_connections_page_shows_each_connections_share_of_sends_and_recent_errors_as_the_api_does() {
    let t = TestApp::new().await;
    let _workers = t.app.spawn_workers();
    // Let the workers subscribe to the engine's events before anything is sent.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let delivered = Accepted { provider_message_id: "pm".into(), cost: None, status: Some(Status::Delivered) };
    t.sms.set_default(Some(Ok(delivered.clone())));
    // Delivered on WhatsApp first; then two that WhatsApp refuses and SMS delivers.
    t.whatsapp.set_default(Some(Ok(delivered)));
    start_cascade(&t, "+12015550101").await;
    t.wait_sends(1).await;
    t.whatsapp.set_default(Some(Err(SendError::new(ErrorClass::Rejected, "131026", "not a WhatsApp user"))));
    let first = start_cascade(&t, "+12015550102").await;
    t.wait_sends(3).await;
    let refused = [first, start_cascade(&t, "+12015550103").await];
    t.wait_sends(5).await;
    let (wa_sends, sms_sends) = (t.whatsapp.sends().len() as u64, t.sms.sends().len() as u64);
    assert_eq!((wa_sends, sms_sends), (3, 2));

    // The API: channels and connections in configuration order, with the stubs' counts.
    let body = connections_counted(&t, &[wa_sends, sms_sends]).await;
    assert!(body["since"].is_string() && body["now"].is_string(), "{body}");
    let channels = body["channels"].as_array().expect("channels");
    let names: Vec<&str> = channels.iter().map(|c| c["channel"].as_str().expect("name")).collect();
    assert_eq!(names, ["whatsapp", "sms"]);
    let (wa, sms) = (&channels[0]["connections"][0], &channels[1]["connections"][0]);
    assert_eq!((wa["id"].as_str(), wa["adapter"].as_str()), (Some("wa-main"), Some("whatsapp-cloud")));
    assert_eq!(sms["id"], "sms-main");
    for (c, sends) in [(wa, wa_sends), (sms, sms_sends)] {
        assert_eq!(c["sends"]["total"], sends, "{c}");
        assert_eq!(c["sends"]["last_minute"], sends, "{c}");
        assert_eq!(c["sends"]["last_5_minutes"], sends, "{c}");
        assert_eq!((c["share"]["total"].as_f64(), c["share"]["last_5_minutes"].as_f64()), (Some(1.0), Some(1.0)));
        assert_eq!(c["health"]["in_pool"], true);
        assert!(c["rate_limit"].is_null(), "{c}");
    }
    let errors = wa["recent_errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{wa}");
    for e in errors {
        assert_eq!((e["class"].as_str(), e["code"].as_str()), (Some("rejected"), Some("131026")));
        // The provider's words often quote the recipient: not for a key that sees only its own.
        assert_eq!((e["detail"].as_str(), e["stage"].as_str()), (Some(""), Some("send")));
        assert!(e.get("cascade").is_none(), "a read key is not told whose cascades failed: {e}");
    }
    assert_eq!(sms["recent_errors"], serde_json::json!([]));
    // An admin key is told which cascades the errors were in, newest first.
    let (_, _, all) = t.get("/v1/connections", ADMIN_KEY).await;
    let cascades: Vec<&str> = all["channels"][0]["connections"][0]["recent_errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["cascade"].as_str().expect("cascade"))
        .collect();
    assert_eq!(cascades, [refused[1].as_str(), refused[0].as_str()]);
    assert_eq!(all["channels"][0]["connections"][0]["recent_errors"][0]["detail"], "not a WhatsApp user");
    let (status, _, p) = t.request(Method::GET, "/v1/connections", None, None, None).await;
    assert_problem(status, &p, 401, "unauthorized", Some("Authorization"));
    let (_, _, doc) = t.get("/v1/openapi.json", READ_KEY).await;
    assert!(doc["paths"]["/v1/connections"]["get"].is_object(), "GET /v1/connections is documented");
    let fields = &doc["components"]["schemas"]["ConnectionReport"]["properties"];
    for field in ["id", "adapter", "health", "rate_limit", "sends", "share", "recent_errors"] {
        assert!(fields[field].is_object(), "{field} is documented: {fields}");
    }

    // The page says the same in words, and redraws itself from a fragment.
    let mut b = Browser::new(&t);
    assert_eq!(b.get("/console/connections").await.status, StatusCode::SEE_OTHER, "a login first");
    b.login(READ_KEY).await;
    let page = b.get("/console/connections").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let body = &page.body;
    assert!(body.contains(r#"href="/console/connections" aria-current="page""#), "{body}");
    assert!(body.contains("counted by this server since it started at") && body.contains(r#"id="since""#), "{body}");
    assert!(body.contains(r#"data-poll="/console/connections/pools" data-every="10""#), "{body}");
    let (wa_at, sms_at) = (body.find(r#"id="pool-whatsapp""#), body.find(r#"id="pool-sms""#));
    assert!(wa_at.is_some() && wa_at < sms_at, "channels in configuration order: {body}");
    for (id, sends) in [("wa-main", wa_sends), ("sms-main", sms_sends)] {
        let row = connection_row(body, id);
        assert!(row.contains(r#"<th scope="row""#) && row.contains("in the pool"), "{row}");
        assert!(row.contains(&format!("{sends} in the last minute")), "{row}");
        assert!(row.contains(&format!("{sends} in the last 5 minutes")), "{row}");
        // Both shares: 100 %, with the bar as long and the counts beside it.
        assert_eq!(row.matches("<strong>100 %</strong>").count(), 2, "{row}");
        assert_eq!(row.matches(r#"<rect width="100" height="10">"#).count(), 2, "{row}");
        assert_eq!(row.matches(&format!("{sends} of {sends} sends")).count(), 2, "{row}");
    }
    let errors = &body[body.find(r#"id="errors-wa-main""#).expect("wa-main's errors")..];
    let line = r#"<strong class="error-class">rejected</strong> <code>131026</code> <span class="detail"></span>"#;
    assert_eq!(errors.matches(line).count(), 2, "{errors}");
    assert!(!body.contains(r#"id="errors-sms-main""#) && body.contains("No send errors on sms"), "{body}");
    assert!(!body.contains("/console/cascades/"), "a read key gets no links to others' cascades");

    let fragment = b.get("/console/connections/pools").await;
    assert_eq!(fragment.status, StatusCode::OK);
    assert!(fragment.body.trim_start().starts_with(r#"<div class="pools" id="pools">"#), "{}", fragment.body);
    assert!(!fragment.body.contains("<html"), "only the figures");
    assert!(connection_row(&fragment.body, "wa-main").contains(&format!("{wa_sends} of {wa_sends} sends")));

    // An admin sees links to the cascades the errors were in.
    let mut ops = Browser::new(&t);
    ops.login(ADMIN_KEY).await;
    let page = ops.get("/console/connections").await;
    assert!(page.body.contains(&format!(r#"href="/console/cascades/{}""#, refused[0])), "{}", page.body);
}

/// The Campaigns pages: a campaign checked and created from a CSV file through the form (the
/// file kept between the two), watched to its end with stub channels, its chart, failures and
/// cost, the controls and their token, the export of failures, and keys that see only their own.
mod campaigns {
    use std::time::Duration;

    use cascade_engine::{Connection, Cost, Engine, Policy, Step};
    use cascade_http::App;
    use cascade_http::auth::{ApiKey, Scope};
    use cascade_testkit::{StubChannel, caps};

    use super::*;

    const BOB: &str = "+12015550102";
    const CY: &str = "+12015550103";

    /// The list: three recipients, two invalid rows (lines 4 and 7) and a duplicate of Ann
    /// (line 5).
    const LIST: &str = "phone,name,city\n\
        +12015550101,Ann,Austin\n\
        +12015550102,Bob,Boston\n\
        not a number,Dee,Denver\n\
        +1 201 555 0101,Ann again,Austin\n\
        +12015550103,Cy,Chicago\n\
        12,Eve,\n";

    /// The test app with priced connections (WhatsApp 0.002, SMS 0.0079) and a Viber one, the
    /// policies `default` (WhatsApp, then SMS) and `rich` (Viber, then SMS), its campaign
    /// runner started, and file URLs on any host allowed (no lookups in tests).
    async fn priced_app() -> (TestApp, cascade_http::Workers) {
        let whatsapp = StubChannel::with_adapter("whatsapp", "whatsapp-cloud", caps::whatsapp());
        let sms = StubChannel::new("sms", caps::sms());
        let viber = StubChannel::new("viber", caps::whatsapp());
        let engine = Engine::builder()
            .connection(Connection::new("wa-main", whatsapp.clone()).price(Cost::from_micros(2_000)))
            .connection(Connection::new("sms-main", sms.clone()).price(Cost::from_micros(7_900)))
            .connection(Connection::new("viber-main", viber.clone()))
            .build()
            .expect("engine");
        let upload_dir = std::env::temp_dir().join(format!("cascade-console-test-{}", uuid::Uuid::now_v7().simple()));
        let policy = Policy::new([
            Step::new("whatsapp").until(Status::Delivered).timeout(Duration::from_secs(60)),
            Step::new("sms"),
        ]);
        let app = App::builder(engine)
            .policy("default", policy)
            .policy("rich", Policy::chain(["viber", "sms"]))
            .api_key(ApiKey::from_plain("crm", SEND_KEY, [Scope::Send, Scope::Read]))
            .api_key(ApiKey::from_plain("partner", PARTNER_KEY, [Scope::Send, Scope::Read]))
            .api_key(ApiKey::from_plain("dashboard", READ_KEY, [Scope::Read]))
            .api_key(ApiKey::from_plain("ops", ADMIN_KEY, [Scope::Admin]))
            .secret(b"0123456789abcdef0123456789abcdef".to_vec())
            .uploads(&upload_dir, 300_000)
            .allow_internal_urls(true)
            .build();
        let delivered = Accepted { provider_message_id: String::new(), cost: None, status: Some(Status::Delivered) };
        whatsapp.set_default(Some(Ok(delivered.clone())));
        viber.set_default(Some(Ok(delivered.clone())));
        sms.set_default(Some(Ok(delivered)));
        let t = TestApp { router: app.router(), app, whatsapp, sms, upload_dir };
        let workers = t.app.spawn_workers();
        (t, workers)
    }

    impl Browser<'_> {
        /// Posts a form as a browser does with `enctype="multipart/form-data"`: the fields in
        /// order; the one named `list` is the file input, sent with `file` (name, content) or,
        /// with none chosen, empty and nameless.
        async fn post_multipart(&mut self, path: &str, fields: &[(&str, &str)], file: Option<(&str, &str)>) -> Page {
            const BOUNDARY: &str = "----cascadeConsoleTest7MA4YWxkTrZu0gW";
            let mut body = String::new();
            for (name, value) in fields {
                body.push_str(&format!("--{BOUNDARY}\r\n"));
                if *name == "list" {
                    let (filename, content) = file.unwrap_or(("", ""));
                    let kind = if filename.is_empty() { "application/octet-stream" } else { "text/csv" };
                    body.push_str(&format!(
                        "Content-Disposition: form-data; name=\"list\"; filename=\"{filename}\"\r\nContent-Type: {kind}\r\n\r\n{content}\r\n"
                    ));
                } else {
                    body.push_str(&format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"));
                }
            }
            body.push_str(&format!("--{BOUNDARY}--\r\n"));
            let mut r = Request::post(path)
                .header("sec-fetch-site", "same-origin")
                .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"));
            if let Some(c) = &self.cookie {
                r = r.header("cookie", c.clone());
            }
            let response =
                self.t.router.clone().oneshot(r.body(Body::from(body)).expect("request")).await.expect("infallible");
            let (status, headers) = (response.status(), response.headers().clone());
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
            Page { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
        }
    }

    /// The form's fields as the page orders them, `list` where the file input is.
    fn campaign_form<'a>(csrf: &'a str, action: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut f = vec![
            ("csrf", csrf),
            ("name", "Spring sale"),
            ("policy", "default"),
            ("list", ""),
            ("region", "US"),
            ("text", "Hi {{contact.name}} from {{contact.fields.city}}"),
            ("text.whatsapp", ""),
            ("text.sms", "{{contact.name}}: spring sale"),
            ("start_at", ""),
            ("end_at", ""),
            ("dates_in", "utc"),
            ("window", ""),
            ("time_zone", "UTC"),
            ("rate", "1000/s"),
        ];
        f.extend_from_slice(extra);
        f.push(("action", action));
        f
    }

    /// The value of the input named `name` on a page.
    fn input_value(page: &Page, name: &str) -> String {
        let at = page
            .body
            .find(&format!(r#"name="{name}" value=""#))
            .unwrap_or_else(|| panic!("no {name} in {}", page.body));
        page.body[at + name.len() + 15..].split('"').next().expect("value").to_owned()
    }

    /// Reads the campaign's page until nothing will change on it any more (at most 10 s).
    async fn settled_page(b: &mut Browser<'_>, path: &str) -> Page {
        let mut last = String::new();
        for _ in 0..1_000 {
            let page = b.get(path).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.body);
            if page.body.contains(r#"data-settled="true""#) {
                return page;
            }
            last = page.body;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{path} did not settle in 10 s: {last}");
    }

    /// The name of the first event a live stream sends (within 5 s).
    async fn first_event(b: &Browser<'_>, path: &str) -> String {
        let cookie = b.cookie.clone().expect("logged in");
        let r = Request::get(path).header("cookie", cookie).body(Body::empty()).expect("request");
        let response = b.t.router.clone().oneshot(r).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        let mut stream = response.into_body().into_data_stream();
        let mut text = String::new();
        while !text.contains("\n\n") {
            let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.expect("an event in 5 s");
            text.push_str(&String::from_utf8_lossy(&chunk.expect("more").expect("chunk")));
        }
        text.lines().find_map(|l| l.strip_prefix("event:")).map(|e| e.trim().to_owned()).expect("a named event")
    }

    fn files_in(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
    }

    #[tokio::test]
    async fn a_campaign_from_a_csv_is_checked_created_and_watched_to_its_end() {
        let (t, _workers) = priced_app().await;
        // Bob is not on WhatsApp (SMS delivers); Cy is on neither.
        t.whatsapp.script(BOB, [Err(SendError::unreachable("131026", "not a WhatsApp user"))]);
        t.whatsapp.script(CY, [Err(SendError::unreachable("131026", "not a WhatsApp user"))]);
        t.sms.script(CY, [Err(SendError::rejected("30007", "carrier filtering"))]);
        let mut b = Browser::new(&t);
        b.login(SEND_KEY).await;
        let list = b.get("/console/campaigns").await;
        assert!(list.body.contains(r#"href="/console/campaigns/new""#) && list.body.contains("No campaigns yet"));
        let form = b.get("/console/campaigns/new").await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        assert!(
            form.body.contains(r#"enctype="multipart/form-data""#) && form.body.contains(r#"accept=".csv,text/csv""#)
        );
        assert!(form.body.contains(r#"data-channel-fields="sms""#) && form.body.contains(r#"name="viber_image""#));
        let csrf = form.csrf();

        // Check: the counts, the rows left out with their lines and why, the message rendered.
        let checked = b
            .post_multipart("/console/campaigns/new", &campaign_form(&csrf, "check", &[]), Some(("spring.csv", LIST)))
            .await;
        assert_eq!(checked.status, StatusCode::OK, "{}", checked.body);
        let body = &checked.body;
        for (id, n) in [("report-valid", 3), ("report-invalid", 2), ("report-duplicate", 1)] {
            assert!(body.contains(&format!(r#"id="{id}">{n}<"#)), "{id} should be {n}: {body}");
        }
        let errors = &body[body.find(r#"id="report-errors""#).expect("the rows left out")..];
        let lines: Vec<&str> =
            errors.split(r#"data-line=""#).skip(1).map(|s| s.split('"').next().expect("line")).collect();
        assert_eq!(lines, ["4", "5", "7"], "{errors}");
        assert!(errors.contains("duplicate of line 2"), "{errors}");
        assert!(errors.contains("not a number"), "{errors}");
        let preview = &body[body.find(r#"id="preview""#).expect("a preview")..];
        assert!(preview.contains("Hi Ann from Austin") && preview.contains("Hi Bob from Boston"), "{preview}");
        // What was typed stays; the file is kept by the server, named on the page.
        assert!(body.contains(r#"value="Spring sale""#) && body.contains(r#"value="1000&#x2f;s""#), "{body}");
        assert!(body.contains(r#"<strong id="kept-list">spring.csv</strong>"#), "{body}");
        let upload = input_value(&checked, "upload");
        assert_eq!(upload.len(), 32, "{upload}");
        assert!(t.whatsapp.sends().is_empty() && t.sms.sends().is_empty(), "a check sends nothing");
        let stored = files_in(&t.upload_dir);

        // Create, without choosing the file again.
        let created = b
            .post_multipart("/console/campaigns/new", &campaign_form(&csrf, "create", &[("upload", &upload)]), None)
            .await;
        assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
        let path = created.location().to_owned();
        let id = path.strip_prefix("/console/campaigns/").expect("the campaign's page").to_owned();
        assert_eq!(files_in(&t.upload_dir), stored, "the file was not uploaded twice");

        let page = settled_page(&mut b, &path).await;
        let body = &page.body;
        assert!(body.contains("Campaign Spring sale") && body.contains("whatsapp → sms"), "{body}");
        assert!(body.contains(r#"class="state state-finished""#), "{body}");
        for (id, n) in [("total", 3), ("started", 3), ("delivered", 2), ("failed", 1), ("remaining", 0)] {
            assert!(body.contains(&format!(r#"id="count-{id}">{n}<"#)), "{id} should be {n}: {body}");
        }
        let by_channel = &body[body.find(r#"id="delivered-by-channel""#).expect("by channel")..];
        assert!(
            by_channel.contains(r#"<tr data-channel="whatsapp"><td>whatsapp</td><td class="num">1</td></tr>"#),
            "{by_channel}"
        );
        assert!(
            by_channel.contains(r#"<tr data-channel="sms"><td>sms</td><td class="num">1</td></tr>"#),
            "{by_channel}"
        );
        // The chart: a series per channel that delivered, and the failures, with the table.
        let chart = &body[body.find(r#"<svg class="chart""#).expect("a chart")..];
        let chart = &chart[..chart.find("</svg>").expect("end of chart")];
        for series in ["whatsapp", "sms", "failed"] {
            let at = chart
                .find(&format!(r#"data-series="{series}""#))
                .unwrap_or_else(|| panic!("no {series} series: {chart}"));
            assert!(chart[at..].split("</g>").next().expect("group").contains("<rect "), "{series} has a bar");
        }
        assert!(
            chart.contains("<desc id=\"chart-desc\">1 delivered by whatsapp, 1 delivered by sms, 1 failed"),
            "{chart}"
        );
        assert!(body.contains(r#"id="chart-table""#), "a table for screen readers");
        let reasons = &body[body.find(r#"id="reasons""#).expect("reasons")..];
        let reasons = &reasons[..reasons.find("</table>").expect("end")];
        assert_eq!(reasons.matches("<tr>").count(), 2, "a header and one reason: {reasons}");
        assert!(reasons.contains("carrier filtering") && reasons.contains(r#"<td class="num">1</td>"#), "{reasons}");
        // Cost against all through SMS, as the API counts it: three cascades at 0.0079.
        let (status, _, view) = t.get(&format!("/v1/campaigns/{id}"), SEND_KEY).await;
        assert_eq!(status, StatusCode::OK, "{view}");
        assert_eq!(view["cost_all_last_channel"], 0.0237);
        let spent = Cost::from_f64(view["cost"].as_f64().expect("cost"));
        assert!(body.contains(&format!(r#"id="cost-spent">{spent}<"#)), "{body}");
        assert!(body.contains(r#"id="cost-all-last">0.0237<"#), "{body}");
        let saved = Cost::from_micros(23_700 - spent.micros());
        assert!(body.contains(&format!(r#"id="cost-saving">{saved} saved"#)), "{body}");
        // The form's per-channel content is the campaign's.
        let overrides = &view["spec"]["message"]["overrides"];
        assert_eq!(overrides["sms"]["text"], "{{contact.name}}: spring sale", "{view}");
        assert!(overrides.get("whatsapp").is_none(), "an empty text is no override: {overrides}");
        let mut sms_texts: Vec<String> = t.sms.sends().iter().map(|s| s.content().text.clone()).collect();
        sms_texts.sort();
        assert_eq!(sms_texts, ["Bob: spring sale", "Cy: spring sale"]);
        assert!(!body.contains("data-live="), "a settled campaign is not watched");
        assert_eq!(sse_events(&b, &format!("{path}/live")).await, ["end"]);
        let fragment = b.get(&format!("{path}/progress")).await;
        assert!(fragment.body.trim_start().starts_with(r#"<div class="campaign-progress""#), "{}", fragment.body);

        // The export of failures: Cy alone, with the reason.
        let export = b.get(&format!("{path}/export")).await;
        assert_eq!(export.status, StatusCode::OK, "{}", export.body);
        assert_eq!(export.headers["content-type"], "text/csv; charset=utf-8");
        let rows: Vec<Vec<String>> = csv::Reader::from_reader(export.body.as_bytes())
            .records()
            .map(|r| r.expect("row").iter().map(str::to_owned).collect())
            .collect();
        assert_eq!(rows.len(), 1, "{}", export.body);
        assert_eq!((rows[0][0].as_str(), rows[0][1].as_str(), rows[0][4].as_str()), ("6", CY, "failed"));
        assert!(rows[0][5].contains("carrier filtering"), "{:?}", rows[0]);

        // Listed with its delivered count; another key sees none of it; an admin sees it.
        let list = b.get("/console/campaigns").await;
        assert!(list.body.contains(&format!(r#"href="{path}""#)) && list.body.contains("2 / 3"), "{}", list.body);
        let mut partner = Browser::new(&t);
        partner.login(PARTNER_KEY).await;
        for p in [path.clone(), format!("{path}/progress"), format!("{path}/export"), format!("{path}/live")] {
            assert_eq!(partner.get(&p).await.status, StatusCode::NOT_FOUND, "{p}");
        }
        assert!(!partner.get("/console/campaigns").await.body.contains(&path));
        let mut ops = Browser::new(&t);
        ops.login(ADMIN_KEY).await;
        assert_eq!(ops.get(&path).await.status, StatusCode::OK);
        assert!(ops.get("/console/campaigns").await.body.contains(&path));
        assert_eq!(ops.get("/console/campaigns/not-an-id").await.status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn the_form_names_what_is_wrong_and_the_controls_need_the_token() {
        let (t, _workers) = priced_app().await;
        let mut b = Browser::new(&t);
        b.login(SEND_KEY).await;
        let csrf = b.get("/console/campaigns/new").await.csrf();

        // Nothing is stored for a form without its token, nor for a key that may not send.
        let refused = b
            .post_multipart("/console/campaigns/new", &campaign_form("0000", "check", &[]), Some(("a.csv", LIST)))
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
        let mut reader = Browser::new(&t);
        reader.login(READ_KEY).await;
        assert_eq!(reader.get("/console/campaigns/new").await.status, StatusCode::FORBIDDEN);
        let token = reader.get("/console/campaigns").await.csrf();
        let page = reader
            .post_multipart("/console/campaigns/new", &campaign_form(&token, "create", &[]), Some(("a.csv", LIST)))
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN);
        assert_eq!(files_in(&t.upload_dir), 0, "no file was stored");

        // Every problem is shown with its field, and what was typed stays.
        let bad = [("rate", "fast"), ("window", "nine to five"), ("viber_caption", "Shop now"), ("viber_url", "")];
        let mut fields: Vec<(&str, &str)> =
            campaign_form(&csrf, "check", &[]).into_iter().filter(|(k, _)| !bad.iter().any(|(b, _)| b == k)).collect();
        fields.extend(bad);
        fields.retain(|(k, _)| *k != "name");
        let page = b.post_multipart("/console/campaigns/new", &fields, None).await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", page.body);
        for said in [
            "Name: must not be empty",
            "Rate: rate &quot;fast&quot;",
            "Daily window: ",
            "CSV file: choose the list of recipients",
            "Viber button: give the button a URL too",
        ] {
            assert!(page.body.contains(said), "{said:?} missing: {}", page.body);
        }
        assert!(page.body.contains(r#"name="rate" id="campaign-rate" value="fast""#), "{}", page.body);
        assert!(page.body.contains(r#"name="window" id="campaign-window" value="nine to five" placeholder="09:00-20:00" aria-describedby="window-help" aria-invalid="true""#), "{}", page.body);
        assert!(t.app.campaigns().list(None, None, 10).await.expect("list").is_empty());

        // Viber's picture and button, for a policy that uses Viber; for one that does not, the
        // form says so rather than every recipient being refused.
        let viber = [
            ("text.viber", "{{contact.name}}, our spring sale"),
            ("viber_image", "https://cdn.example.com/spring.jpg"),
            ("viber_caption", "Shop now"),
            ("viber_url", "https://shop.example.com/spring"),
        ];
        let page = b
            .post_multipart("/console/campaigns/new", &campaign_form(&csrf, "check", &viber), Some(("a.csv", LIST)))
            .await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", page.body);
        assert!(page.body.contains("Content on viber: override for channel `viber`, which no step"), "{}", page.body);
        let start = (chrono::Utc::now() + chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M").to_string();
        let mut rich = campaign_form(&csrf, "create", &viber);
        rich.retain(|(k, _)| !matches!(*k, "text.sms" | "start_at"));
        rich.push(("start_at", &start));
        for field in rich.iter_mut().filter(|(k, _)| *k == "policy") {
            field.1 = "rich";
        }
        let created = b.post_multipart("/console/campaigns/new", &rich, Some(("a.csv", LIST))).await;
        assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
        let id = created.location().rsplit('/').next().expect("id").to_owned();
        let (_, _, view) = t.get(&format!("/v1/campaigns/{id}"), SEND_KEY).await;
        let viber = &view["spec"]["message"]["overrides"]["viber"];
        assert_eq!(viber["text"], "{{contact.name}}, our spring sale", "{view}");
        assert_eq!(viber["attachment"]["url"], "https://cdn.example.com/spring.jpg");
        assert_eq!(viber["attachment"]["media_type"], "image/jpeg");
        assert_eq!(
            viber["buttons"],
            serde_json::json!([{"caption": "Shop now", "url": "https://shop.example.com/spring"}])
        );
        let cancelled = b.post(&format!("/console/campaigns/{id}/cancel"), &[("csrf", &csrf)]).await;
        assert_eq!(cancelled.status, StatusCode::SEE_OTHER);

        // A campaign that starts in an hour, created without a check: it waits, all pending.
        let form = campaign_form(&csrf, "create", &[("start_at", &start)]);
        let created = b.post_multipart("/console/campaigns/new", &form, Some(("later.csv", LIST))).await;
        assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
        let path = created.location().to_owned();
        let page = b.get(&path).await;
        assert!(page.body.contains(r#"<span id="phase">scheduled</span>"#), "{}", page.body);
        assert!(page.body.contains(&format!(r#"data-live="{path}/live""#)), "a running campaign is watched");
        assert_eq!(first_event(&b, &format!("{path}/live")).await, "change");
        assert!(
            page.body.contains(r#"id="count-remaining">3<"#) && page.body.contains(r#"id="pause""#),
            "{}",
            page.body
        );
        assert!(page.body.contains(r#"data-confirm="Cancel this campaign?"#), "{}", page.body);
        let state = |p: &Page| {
            p.body[p.body.find(r#"data-state=""#).expect("state") + 12..].split('"').next().expect("state").to_owned()
        };

        for action in ["pause", "resume", "cancel"] {
            let without = b.post(&format!("{path}/{action}"), &[("csrf", "nope")]).await;
            assert_eq!(without.status, StatusCode::FORBIDDEN, "{action} without the token");
            let by_reader = reader.post(&format!("{path}/{action}"), &[("csrf", &token)]).await;
            assert_eq!(by_reader.status, StatusCode::FORBIDDEN, "{action} by a read key");
        }
        assert_eq!(state(&b.get(&path).await), "running");
        let paused = b.post(&format!("{path}/pause"), &[("csrf", &csrf)]).await;
        assert_eq!((paused.status, paused.location()), (StatusCode::SEE_OTHER, path.as_str()));
        let page = b.get(&path).await;
        assert_eq!(state(&page), "paused");
        assert!(page.body.contains(r#"id="resume""#) && !page.body.contains(r#"id="pause""#), "{}", page.body);
        let again = b.post(&format!("{path}/pause"), &[("csrf", &csrf)]).await;
        assert_eq!(again.status, StatusCode::CONFLICT, "a paused campaign is not paused again");
        assert!(again.body.contains("cannot pause it"), "{}", again.body);
        assert_eq!(b.post(&format!("{path}/resume"), &[("csrf", &csrf)]).await.status, StatusCode::SEE_OTHER);
        assert_eq!(state(&b.get(&path).await), "running");
        assert_eq!(b.post(&format!("{path}/cancel"), &[("csrf", &csrf)]).await.status, StatusCode::SEE_OTHER);
        let page = settled_page(&mut b, &path).await;
        assert_eq!(state(&page), "cancelled");
        assert!(page.body.contains(r#"id="count-cancelled">3<"#) && page.body.contains(r#"id="count-remaining">0<"#));
        assert!(!page.body.contains(r#"id="cancel""#) && !page.body.contains("data-live="), "{}", page.body);
        assert!(t.whatsapp.sends().is_empty() && t.sms.sends().is_empty(), "nothing was sent");
        let everyone = b.get(&format!("{path}/export?status=failed,expired,cancelled")).await;
        assert_eq!(everyone.body.lines().count(), 4, "the header and the three cancelled: {}", everyone.body);
    }
}

#[tokio::test]
async fn pages_do_not_spend_the_keys_api_rate_limit() {
    const SLOW: &str = "slow-key-0123456789";
    let t = TestApp::with(|b| {
        b.api_key(ApiKey::from_plain("slow", SLOW, [Scope::Read]).rate_limit(std::num::NonZeroU32::MIN))
    })
    .await;
    let mut b = Browser::new(&t);
    b.login(SLOW).await;
    for _ in 0..5 {
        assert_eq!(b.get("/console/cascades").await.status, StatusCode::OK);
    }
    // The API still holds the key to one request a second.
    assert_eq!(t.get("/v1/cascades", SLOW).await.0, StatusCode::OK);
    assert_eq!(t.get("/v1/cascades", SLOW).await.0, StatusCode::TOO_MANY_REQUESTS);
}
