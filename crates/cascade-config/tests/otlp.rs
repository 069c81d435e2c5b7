//! Trace export over OTLP/HTTP to a collector on loopback: the engine's spans, with the cascade
//! id, reach `/v1/traces` with the service name and the configured headers, and shutting the
//! export down sends what is still buffered. The subscriber is the one `init` installs, at the
//! default log level: `cascade.apply`, a `debug` span, is exported all the same, and not logged.
//!
//! Its own test binary: it installs the process-wide subscriber, so spans of the engine's
//! spawned tasks are seen too.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::IntoResponse;
use cascade_channel_kit::Secret;
use cascade_config::ServerConfig;
use cascade_config::telemetry::{self, TraceExport};
use cascade_engine::{AddressKind, Capabilities, CascadeRequest, Connection, Contact, Engine, Message, Policy, Status};
use cascade_testkit::StubChannel;

/// One request the collector received: method, path, headers, body.
type Post = (Method, String, HeaderMap, Bytes);

#[derive(Clone, Default)]
struct Collector {
    posts: Arc<Mutex<Vec<Post>>>,
}

impl Collector {
    fn posts(&self) -> Vec<Post> {
        self.posts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

async fn collect(
    State(c): State<Collector>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    c.posts.lock().unwrap_or_else(|e| e.into_inner()).push((method, uri.path().to_owned(), headers, body));
    // An empty ExportTraceServiceResponse: everything accepted.
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/x-protobuf")], Bytes::new())
}

/// What the log layer wrote.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engines_spans_reach_the_collector_with_the_cascade_id_and_the_service_name() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let app = Router::new().fallback(collect).with_state(collector.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let server = ServerConfig {
        otlp_endpoint: Some(format!("http://{addr}").parse().expect("url")),
        otlp_headers: [("x-collector-key".to_owned(), Secret::new("k-123"))].into(),
        service_name: "cascade-otlp-test".into(),
        ..ServerConfig::default()
    };
    assert!(TraceExport::new(&ServerConfig::default()).expect("no export").is_none(), "off unless configured");
    let export = TraceExport::new(&server).expect("export starts").expect("configured");
    assert_eq!(export.endpoint(), format!("http://{addr}/v1/traces"));
    assert_eq!(server.log_level, "info", "the default log level, where `cascade.apply` is not logged");
    let logs = Logs::default();
    let subscriber = {
        let logs = logs.clone();
        telemetry::subscriber(&server, Some(&export), move || logs.clone())
    };
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this test binary");

    let sms = StubChannel::new("sms", Capabilities::text_only(vec![AddressKind::Phone], Status::Delivered));
    let engine = Engine::builder().connection(Connection::new("sms-1", sms.clone())).build().expect("engine");
    let handle = engine
        .submit(CascadeRequest::new(Contact::with_phone("+15551234567"), Message::text("Hi"), Policy::chain(["sms"])))
        .await
        .expect("submitted");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sms.sends().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the send never happened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(engine.cancel(handle.id()).await.expect("cancel"), "cancelled while waiting for delivery");
    // Waits for the send task, so its span has ended too.
    engine.shutdown(Duration::from_secs(5)).await;

    // Blocks until the collector has answered: off the async threads.
    tokio::task::spawn_blocking(move || export.shutdown()).await.expect("joined").expect("the last batch is sent");

    let posts = collector.posts();
    assert!(!posts.is_empty(), "nothing reached the collector");
    for (method, path, headers, _) in &posts {
        assert_eq!((method, path.as_str()), (&Method::POST, "/v1/traces"));
        assert_eq!(headers[header::CONTENT_TYPE], "application/x-protobuf");
        assert_eq!(headers["x-collector-key"], "k-123", "the configured headers are sent");
    }
    let body: Vec<u8> = posts.iter().flat_map(|(_, _, _, b)| b.to_vec()).collect();
    let id = handle.id().to_string();
    for needle in [
        "cascade-otlp-test",
        "service.name",
        "cascade.submit",
        "cascade.send",
        "cascade.apply",
        "cascade_id",
        id.as_str(),
        "sms-1",
    ] {
        assert!(contains(&body, needle), "{needle:?} is not in the exported spans");
    }

    // The log layer keeps to its own level: the end is logged, not the `debug` span around it.
    if std::env::var_os("RUST_LOG").is_none() {
        let logs = logs.text();
        assert!(logs.contains("cascade finished"), "{logs}");
        assert!(!logs.contains("cascade.apply"), "{logs}");
    }
}
