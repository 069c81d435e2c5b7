//! The adapter against a real SMTP server on loopback (`smtp_server.py`, Python's aiosmtpd),
//! which parses every message it takes with Python's own MIME parser and writes what it found.
//!
//! Without Python's aiosmtpd these tests say so and pass, except in CI (`CI=true`), where they
//! fail: `scripts/test` installs it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine as _;
use cascade_email::{Email, EmailConfig, Security};
use cascade_engine::*;
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// One running server; stopped (stdin closed, then killed) and its folder removed on drop.
struct Server {
    child: Child,
    port: u16,
    ca: Option<PathBuf>,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Server {
    /// The `n`-th message the server took, as its parser saw it.
    fn message(&self, n: u32) -> Value {
        let path = self.dir.join(format!("{n}.json"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).expect("the server writes JSON")
    }

    fn messages(&self) -> usize {
        std::fs::read_dir(&self.dir)
            .expect("dir")
            .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json")))
            .count()
    }

    fn config(&self, security: Security) -> EmailConfig {
        let mut config = EmailConfig::new("localhost", "Acme Shop <news@acme.test>");
        config.port = Some(self.port);
        config.security = security;
        config.root_certificate = self.ca.clone();
        config.hello_name = Some("cascade.test".into());
        config
    }
}

fn aiosmtpd_available() -> bool {
    Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts the server, or returns `None` (loudly) where Python's aiosmtpd is missing outside CI.
fn start(tls: &str, auth: Option<&str>) -> Option<Server> {
    if !aiosmtpd_available() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI needs python3 with aiosmtpd (pip install aiosmtpd) for the SMTP tests"
        );
        eprintln!("*** python3 with aiosmtpd is missing: the SMTP test is skipped (pip install aiosmtpd) ***");
        return None;
    }
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "cascade-email-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_server.py");
    let mut command = Command::new("python3");
    command.arg(&script).arg(&dir).args(["--tls", tls]);
    if let Some(auth) = auth {
        command.args(["--auth", auth]);
    }
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("python3 starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("READY line");
    let mut words = line.split_whitespace();
    assert_eq!(words.next(), Some("READY"), "the server did not start: {line:?}");
    let port = words.next().and_then(|p| p.parse().ok()).expect("port");
    let ca = words.next().filter(|c| *c != "-").map(PathBuf::from);
    Some(Server { child, port, ca, dir })
}

fn request(to: &str, content: Content) -> SendRequest {
    SendRequest {
        cascade_id: CascadeId::new(),
        attempt: 2,
        connection: "smtp-1".into(),
        address: Address { kind: AddressKind::Email, value: to.into() },
        content: Arc::new(content),
        conversation_open: false,
    }
}

fn text(t: &str) -> Content {
    Content { text: t.into(), subject: Some("Hello".into()), ..Content::default() }
}

/// A text part with the wire's CRLF line ends made LF, and the final line end dropped.
fn body(part: &Value) -> String {
    part.as_str().expect("a text part").replace("\r\n", "\n").trim_end().to_owned()
}

/// A PDF-like file with every byte value, so that any re-encoding shows.
fn invoice_bytes() -> Vec<u8> {
    let mut bytes = b"%PDF-1.4\n".to_vec();
    bytes.extend((0..=255u8).cycle().take(3000));
    bytes
}

#[tokio::test]
async fn subject_both_bodies_and_the_attachment_arrive_intact() {
    let Some(server) = start("none", None) else { return };
    let file = server.dir.join("invoice-5521.pdf");
    std::fs::write(&file, invoice_bytes()).expect("write");
    let mut config = server.config(Security::Plain);
    config.reply_to = Some("Support <help@acme.test>".into());
    let email = Email::new(config).expect("config");
    let content = Content {
        text: "Your order #5521 has shipped.".into(),
        subject: Some("Order #5521: on its way".into()),
        html: Some("<html><body><p>Your order <b>#5521</b> has shipped.</p></body></html>".into()),
        attachment: Some(Attachment {
            url: format!("file://{}", file.display()),
            media_type: "application/pdf".into(),
            size: 3009,
            filename: Some("Invoice 5521.pdf".into()),
        }),
        buttons: vec![Button { caption: "Track".into(), url: "https://acme.test/t/5521".into() }],
        template: None,
    };
    let req = request("ann@example.test", content);
    let accepted = email.send(&req).await.expect("sent");

    assert_eq!(accepted.status, Some(Status::Sent));
    assert_eq!(accepted.provider_message_id, format!("{}.2@acme.test", req.cascade_id));
    let got = server.message(1);
    assert_eq!(got["mail_from"], "news@acme.test");
    assert_eq!(got["rcpt_tos"], serde_json::json!(["ann@example.test"]));
    let headers = &got["headers"];
    assert_eq!(headers["from"], "Acme Shop <news@acme.test>");
    assert_eq!(headers["to"], "ann@example.test");
    assert_eq!(headers["reply-to"], "Support <help@acme.test>");
    assert_eq!(headers["subject"], "Order #5521: on its way");
    assert_eq!(headers["message-id"], format!("<{}>", accepted.provider_message_id));
    assert!(headers["date"].as_str().is_some_and(|d| !d.is_empty()), "{headers}");
    assert!(headers["content-type"].as_str().is_some_and(|t| t.starts_with("multipart/mixed")), "{headers}");
    assert_eq!(body(&got["text"]), "Your order #5521 has shipped.\n\nTrack: https://acme.test/t/5521");
    let html = got["html"].as_str().expect("an HTML part");
    assert!(html.contains("<p>Your order <b>#5521</b> has shipped.</p>"), "{html}");
    assert!(html.contains("<a href=\"https://acme.test/t/5521\">Track</a>"), "{html}");
    let files = got["attachments"].as_array().expect("attachments");
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["filename"], "Invoice 5521.pdf");
    assert_eq!(files[0]["content_type"], "application/pdf");
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(files[0]["base64"].as_str().expect("b64")).expect("b64");
    assert_eq!(bytes, invoice_bytes());
    assert_eq!(got["encrypted"], false);
}

#[tokio::test]
async fn a_text_only_message_is_a_single_plain_part_with_non_ascii_text() {
    let Some(server) = start("none", None) else { return };
    let email = Email::new(server.config(Security::Plain)).expect("config");
    let content = Content {
        subject: Some("Заказ отправлен ✓".into()), ..text("Ваш заказ №5521 отправлен — спасибо!")
    };
    email.send(&request("ann@example.test", content)).await.expect("sent");
    let got = server.message(1);
    assert_eq!(got["headers"]["subject"], "Заказ отправлен ✓");
    assert!(got["headers"]["content-type"].as_str().is_some_and(|t| t.starts_with("text/plain")), "{got}");
    assert_eq!(body(&got["text"]), "Ваш заказ №5521 отправлен — спасибо!");
    assert_eq!(got["html"], Value::Null);
}

#[tokio::test]
async fn an_attachment_by_url_is_fetched_and_carried() {
    let Some(server) = start("none", None) else { return };
    let files = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/files/menu.png"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(invoice_bytes()))
        .mount(&files)
        .await;
    let email = Email::new(server.config(Security::Plain)).expect("config");
    let content = Content {
        attachment: Some(Attachment {
            url: format!("{}/files/menu.png", files.uri()),
            media_type: "image/png".into(),
            size: 3009,
            filename: None,
        }),
        ..text("Today's menu")
    };
    email.send(&request("ann@example.test", content)).await.expect("sent");
    let got = server.message(1);
    let file = &got["attachments"][0];
    assert_eq!((file["filename"].as_str(), file["content_type"].as_str()), (Some("menu.png"), Some("image/png")));
    let bytes = base64::engine::general_purpose::STANDARD.decode(file["base64"].as_str().expect("b64")).expect("b64");
    assert_eq!(bytes, invoice_bytes());
}

#[tokio::test]
async fn refusals_are_classed_by_stage() {
    let Some(server) = start("none", None) else { return };
    let email = Email::new(server.config(Security::Plain)).expect("config");

    let err = email.send(&request("nobody@example.test", text("hi"))).await.expect_err("no mailbox");
    assert_eq!((err.class, err.code.as_str()), (ErrorClass::Unreachable, "550"));
    assert!(err.detail.contains("RCPT") && err.detail.contains("no such mailbox"), "{err}");

    let err = email.send(&request("busy@example.test", text("hi"))).await.expect_err("busy");
    assert_eq!((err.class, err.code.as_str()), (ErrorClass::Transient, "451"));

    let err = email.send(&request("ann@example.test", text("REJECT-ME please"))).await.expect_err("content");
    assert_eq!((err.class, err.code.as_str()), (ErrorClass::Rejected, "554"));
    assert!(err.detail.contains("DATA"), "{err}");

    let err = email.send(&request("not an address", text("hi"))).await.expect_err("invalid");
    assert_eq!((err.class, err.code.as_str()), (ErrorClass::Unreachable, "invalid_address"));

    // None of them was taken; the next good one is, on a fresh connection.
    assert_eq!(server.messages(), 0);
    email.send(&request("ann@example.test", text("hi"))).await.expect("sent");
    assert_eq!(server.messages(), 1);
}

#[tokio::test]
async fn a_server_that_is_not_there_is_transient() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let mut config = EmailConfig::new("127.0.0.1", "news@acme.test");
    config.security = Security::Plain;
    config.port = Some(port);
    let email = Email::new(config).expect("config");
    let err = email.send(&request("ann@example.test", text("hi"))).await.expect_err("refused");
    assert_eq!((err.class, err.code.as_str()), (ErrorClass::Transient, "connect"));
}

#[tokio::test]
async fn messages_share_one_connection() {
    let Some(server) = start("none", None) else { return };
    let email = Email::new(server.config(Security::Plain)).expect("config");
    for to in ["ann@example.test", "bob@example.test", "cy@example.test"] {
        email.send(&request(to, text("hi"))).await.expect("sent");
    }
    let sessions: Vec<u64> = (1..=3).map(|n| server.message(n)["session"].as_u64().expect("session")).collect();
    assert_eq!(sessions, [1, 1, 1]);
}

#[tokio::test]
async fn a_pooled_connection_the_server_closed_is_replaced() {
    let Some(server) = start("none", None) else { return };
    let email = Email::new(server.config(Security::Plain)).expect("config");
    email.send(&request("ann@example.test", text("HANG-UP after this one"))).await.expect("sent");
    // Let the server's close arrive; a real process cannot be driven by a paused clock.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    email.send(&request("bob@example.test", text("hi"))).await.expect("sent on a new connection");
    let sessions: Vec<u64> = (1..=2).map(|n| server.message(n)["session"].as_u64().expect("session")).collect();
    assert_eq!(sessions, [1, 2]);
}

#[tokio::test]
async fn authentication() {
    let Some(server) = start("none", Some("news@acme.test:s3cret")) else { return };
    let mut config = server.config(Security::Plain);
    config.username = Some("news@acme.test".into());
    config.password = Some("wrong".into());
    let err = Email::new(config.clone()).expect("config").send(&request("ann@example.test", text("hi"))).await;
    let err = err.expect_err("bad password");
    assert_eq!((err.class, err.code.as_str()), (ErrorClass::Connection, "535"));

    config.password = Some("s3cret".into());
    Email::new(config).expect("config").send(&request("ann@example.test", text("hi"))).await.expect("sent");
    assert_eq!(server.message(1)["authenticated"], true);

    // Without credentials the server refuses at MAIL FROM: 530, the connection's fault.
    let err = Email::new(server.config(Security::Plain))
        .expect("config")
        .send(&request("ann@example.test", text("hi")))
        .await
        .expect_err("auth required");
    assert_eq!((err.class, err.code.as_str()), (ErrorClass::Connection, "530"));
}

#[tokio::test]
async fn starttls() {
    let Some(server) = start("starttls", Some("news@acme.test:s3cret")) else { return };
    let mut config = server.config(Security::Starttls);
    config.username = Some("news@acme.test".into());
    config.password = Some("s3cret".into());
    Email::new(config).expect("config").send(&request("ann@example.test", text("hi"))).await.expect("sent");
    let got = server.message(1);
    assert_eq!((got["encrypted"].as_bool(), got["authenticated"].as_bool()), (Some(true), Some(true)));

    // Without the private CA the certificate is not trusted: the connection is at fault.
    let mut untrusted = server.config(Security::Starttls);
    untrusted.root_certificate = None;
    let err = Email::new(untrusted).expect("config").send(&request("ann@example.test", text("hi"))).await;
    let err = err.expect_err("untrusted");
    assert_eq!((err.class, err.code.as_str()), (ErrorClass::Connection, "tls"));
}

#[tokio::test]
async fn starttls_required_but_not_offered() {
    let Some(server) = start("none", None) else { return };
    let mut config = server.config(Security::Starttls);
    config.root_certificate = None;
    let err = Email::new(config).expect("config").send(&request("ann@example.test", text("hi"))).await;
    let err = err.expect_err("no STARTTLS");
    assert_eq!((err.class, err.code.as_str()), (ErrorClass::Connection, "starttls"));
    assert_eq!(server.messages(), 0);
}

#[tokio::test]
async fn implicit_tls() {
    let Some(server) = start("implicit", None) else { return };
    Email::new(server.config(Security::Tls))
        .expect("config")
        .send(&request("ann@example.test", text("hi")))
        .await
        .expect("sent");
    assert_eq!(server.message(1)["encrypted"], true);
}
