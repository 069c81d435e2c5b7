//! A test app: an engine with stub channels (WhatsApp-shaped and SMS-shaped), the real
//! WhatsApp webhook intake, four API keys, uploads in a temporary directory, and helpers that
//! call the router in process. It refuses internal URLs (loopback, private networks) unless a
//! test allows them.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use cascade_engine::{Connection, Engine, EngineConfig, Policy, Status, Step};
use cascade_http::App;
use cascade_http::auth::{ApiKey, Scope};
use cascade_testkit::{SentMessage, StubChannel, caps};
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use serde_json::Value;
use tower::ServiceExt;

/// `crm`: `send` and `read`, with a callback secret. Most tests start and read with it.
pub const SEND_KEY: &str = "send-key-0123456789";
/// `partner`: `send` and `read`, another client of the same server.
pub const PARTNER_KEY: &str = "partner-key-0123456789";
/// `dashboard`: `read` only.
pub const READ_KEY: &str = "read-key-0123456789";
/// `ops`: `admin`.
pub const ADMIN_KEY: &str = "admin-key-0123456789";
pub const CALLBACK_SECRET: &str = "callback-secret";
pub const APP_SECRET: &str = "whatsapp-app-secret";

#[derive(Clone)]
pub struct TestApp {
    pub app: App,
    pub router: Router,
    pub whatsapp: StubChannel,
    pub sms: StubChannel,
    pub upload_dir: PathBuf,
}

pub fn whatsapp_intake() -> Arc<cascade_whatsapp::WhatsApp> {
    let mut c = cascade_whatsapp::WhatsAppConfig::new("token", "100000000000001");
    c.app_secret = Some(APP_SECRET.into());
    c.verify_token = Some("verify-me".into());
    c.base_url = "http://127.0.0.1:9".into();
    Arc::new(cascade_whatsapp::WhatsApp::new(c).expect("config"))
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with(|b| b).await
    }

    pub async fn with(customize: impl FnOnce(cascade_http::AppBuilder) -> cascade_http::AppBuilder) -> Self {
        Self::with_engine(EngineConfig::default(), customize).await
    }

    /// An app whose engine runs with `config`.
    pub async fn with_engine(
        config: EngineConfig,
        customize: impl FnOnce(cascade_http::AppBuilder) -> cascade_http::AppBuilder,
    ) -> Self {
        Self::with_engine_builder(|e| e.config(config), customize).await
    }

    /// An app whose engine is built by `engine` from a builder without connections (to share
    /// a store with another app, as instances of one server do, or to set its clock).
    pub async fn with_engine_builder(
        engine: impl FnOnce(cascade_engine::EngineBuilder) -> cascade_engine::EngineBuilder,
        customize: impl FnOnce(cascade_http::AppBuilder) -> cascade_http::AppBuilder,
    ) -> Self {
        let whatsapp = StubChannel::with_adapter("whatsapp", "whatsapp-cloud", caps::whatsapp());
        let sms = StubChannel::new("sms", caps::sms());
        let engine = engine(Engine::builder())
            .connection(Connection::new("wa-main", whatsapp.clone()))
            .connection(Connection::new("sms-main", sms.clone()))
            .link_tracking(cascade_engine::LinkTracking::new("http://127.0.0.1:8080/l/", [7u8; 32].to_vec()))
            .build()
            .expect("engine");
        let upload_dir = std::env::temp_dir().join(format!("cascade-http-test-{}", uuid::Uuid::now_v7().simple()));
        let policy = Policy::new([
            Step::new("whatsapp").until(Status::Delivered).timeout(Duration::from_secs(60)),
            Step::new("sms"),
        ]);
        let builder = App::builder(engine)
            .policy("default", policy)
            .intake("wa-main", whatsapp_intake())
            .api_key(ApiKey::from_plain("crm", SEND_KEY, [Scope::Send, Scope::Read]).callback_secret(CALLBACK_SECRET))
            .api_key(ApiKey::from_plain("partner", PARTNER_KEY, [Scope::Send, Scope::Read]))
            .api_key(ApiKey::from_plain("dashboard", READ_KEY, [Scope::Read]))
            .api_key(ApiKey::from_plain("ops", ADMIN_KEY, [Scope::Admin]))
            .secret(b"0123456789abcdef0123456789abcdef".to_vec())
            .uploads(&upload_dir, 300_000);
        let app = customize(builder).build();
        Self { router: app.router(), app, whatsapp, sms, upload_dir }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
        idempotency_key: Option<&str>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut r = Request::builder().method(method).uri(path);
        if let Some(k) = key {
            r = r.header("authorization", format!("Bearer {k}"));
        }
        if let Some(k) = idempotency_key {
            r = r.header("idempotency-key", k);
        }
        let body = match body {
            Some((ct, bytes)) => {
                r = r.header("content-type", ct);
                Body::from(bytes)
            }
            None => Body::empty(),
        };
        let response = self.router.clone().oneshot(r.body(body).expect("request")).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
        let value =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, headers, value)
    }

    pub async fn post_json(
        &self,
        path: &str,
        key: &str,
        body: &Value,
        idem: Option<&str>,
    ) -> (StatusCode, HeaderMap, Value) {
        self.request(Method::POST, path, Some(key), Some(("application/json", body.to_string().into_bytes())), idem)
            .await
    }

    pub async fn get(&self, path: &str, key: &str) -> (StatusCode, HeaderMap, Value) {
        self.request(Method::GET, path, Some(key), None, None).await
    }

    pub async fn raw_get(&self, path: &str) -> (StatusCode, Vec<u8>) {
        let r = Request::get(path).body(Body::empty()).expect("request");
        let response = self.router.clone().oneshot(r).await.expect("infallible");
        let status = response.status();
        (status, axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body").to_vec())
    }

    pub async fn text(&self, path: &str) -> String {
        String::from_utf8(self.raw_get(path).await.1).expect("utf-8")
    }

    pub async fn webhook(&self, connection: &str, body: &[u8], signature: &str) -> (StatusCode, HeaderMap, Value) {
        let r = Request::post(format!("/webhooks/{connection}"))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature)
            .body(Body::from(body.to_vec()))
            .expect("request");
        let response = self.router.clone().oneshot(r).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
        (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn upload(&self, name: &str, media_type: &str, bytes: &[u8]) -> (StatusCode, HeaderMap, Value) {
        let boundary = "cascade-test-boundary";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nignored\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {media_type}\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let ct = format!("multipart/form-data; boundary={boundary}");
        self.request(Method::POST, "/v1/uploads", Some(SEND_KEY), Some((&ct, body)), None).await
    }

    /// The `event:` names of a Server-Sent Events stream, read to its end, watched with the key
    /// that started the cascades (`crm`).
    pub async fn sse(&self, path: &str) -> Vec<String> {
        self.sse_as(SEND_KEY, path).await
    }

    /// The `event:` names of a Server-Sent Events stream watched with `key`, read to its end.
    pub async fn sse_as(&self, key: &str, path: &str) -> Vec<String> {
        let r = Request::get(path).header("authorization", format!("Bearer {key}")).body(Body::empty()).expect("req");
        self.sse_request(r).await
    }

    /// The `event:` names of the Server-Sent Events stream `request` answers, read to its end.
    pub async fn sse_request(&self, request: Request<Body>) -> Vec<String> {
        let response = self.router.clone().oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        let mut stream = response.into_body().into_data_stream();
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        }
        text.lines()
            .filter_map(|l| l.strip_prefix("event: ").or_else(|| l.strip_prefix("event:")))
            .map(|s| s.trim().to_owned())
            .collect()
    }

    /// Waits (on the engine's event stream, at most 10 s) until both stubs made `n` sends.
    pub async fn wait_sends(&self, n: usize) -> Vec<SentMessage> {
        let mut rx = self.app.engine().events();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut all = self.whatsapp.sends();
            all.extend(self.sms.sends());
            if all.len() >= n && all.iter().all(|s| s.result.is_ok() || s.result.is_err()) {
                // The send is recorded once its Accepted/SendFailed event is out.
                return all;
            }
            if tokio::time::timeout_at(deadline, rx.recv()).await.is_err() {
                panic!("only {} of {n} sends after 10 s", all.len());
            }
        }
    }
}

pub fn assert_problem(status: StatusCode, p: &Value, code: u16, kind: &str, field: Option<&str>) {
    assert_eq!(status.as_u16(), code, "{p}");
    assert_eq!(p["type"], format!("urn:cascade:problem:{kind}"), "{p}");
    assert_eq!(p["status"], code, "{p}");
    assert_eq!(p["field"].as_str(), field, "{p}");
}

pub fn sign_whatsapp(body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(APP_SECRET.as_bytes()).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub fn whatsapp_status(pmid: &str, status: &str) -> Vec<u8> {
    serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": "100000000000001"},
            "statuses": [{"id": pmid, "status": status, "timestamp": "1700000000", "recipient_id": "15551234567"}]
        }}]}]
    })
    .to_string()
    .into_bytes()
}

/// A Kommo `widget_request` token: `claims` as a JWT signed HS512 with `secret`, as Kommo
/// signs them with the integration's client secret.
pub fn kommo_jwt(claims: &Value, secret: &str) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = serde_json::json!({"alg": "HS512", "typ": "JWT"});
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut mac = Hmac::<sha2::Sha512>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}
