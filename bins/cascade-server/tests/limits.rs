//! Size and rate limits of the real `cascade-server` over real sockets: bodies over the limit
//! on every route that takes one, deeply nested JSON, 100 MB uploads, slow-loris clients and a
//! flood of webhooks. Each is answered with a clear status, the server's memory (`VmRSS` and
//! `VmHWM` in `/proc/<pid>/status`) stays far below what the clients sent, the server goes on
//! serving others meanwhile, and slow clients do not hold up a SIGTERM.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cascade_sandbox::Sandbox;
use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MB: u64 = 1_000_000;
const MIB: u64 = 1 << 20;

/// The server's resident memory now and at its peak (`VmRSS`, `VmHWM`), in bytes.
fn memory(system: &System) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", system.server.pid())).expect("/proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or_else(|| panic!("no {name} in /proc status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A harness system whose `[server]` section also has `server_keys` (which may set the
/// harness's `shutdown_grace` anew), with `extra` appended.
async fn system(scenarios: &str, server_keys: &str, extra: &str) -> System {
    let port = free_port();
    let sandbox = Sandbox::start(sandbox_config(port, scenarios)).await.expect("sandbox");
    let dir = temp_dir();
    let config = write_config_with(&dir, port, &sandbox, extra);
    let mut text = std::fs::read_to_string(&config).expect("config");
    if server_keys.contains("shutdown_grace") {
        text = text.replacen("shutdown_grace = \"5s\"\n", "", 1);
    }
    std::fs::write(&config, text.replacen("[server]\n", &format!("[server]\n{server_keys}\n"), 1)).expect("config");
    let server = Server::start(&config, port).await;
    let api = Api::new(&server.base);
    System { sandbox, server, api, port, dir, config }
}

/// What a request sends after its headers: `prefix`, `filler` bytes of `b'x'`, `suffix`;
/// chunked (`Transfer-Encoding: chunked`, no length declared) or as it is.
#[derive(Clone)]
struct Outgoing {
    prefix: Vec<u8>,
    filler: u64,
    suffix: Vec<u8>,
    chunked: bool,
}

impl Outgoing {
    fn nothing() -> Self {
        Self { prefix: Vec::new(), filler: 0, suffix: Vec::new(), chunked: false }
    }

    fn len(&self) -> u64 {
        self.prefix.len() as u64 + self.filler + self.suffix.len() as u64
    }
}

/// An answer read off a raw connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
    /// Body bytes the kernel took from us before the answer came: more than the server read.
    written: u64,
    /// Whether the server closed the connection after answering.
    closed: bool,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&self.body)))
    }
}

/// Sends `head` (the request line and headers, no blank line), then `body` while reading the
/// answer; stops sending once the answer is in or the connection fails.
async fn exchange(port: u16, head: &str, body: Outgoing) -> Answer {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let written = Arc::new(AtomicU64::new(0));
    let mut head = format!("{head}\r\nHost: 127.0.0.1:{port}\r\n");
    if body.chunked {
        head.push_str("Transfer-Encoding: chunked\r\n");
    }
    head.push_str("\r\n");
    let writer = tokio::spawn({
        let written = written.clone();
        async move {
            wr.write_all(head.as_bytes()).await?;
            let filler = vec![b'x'; 256 * 1024];
            let chunked = body.chunked;
            let send = async |wr: &mut tokio::net::tcp::OwnedWriteHalf, piece: &[u8]| {
                if piece.is_empty() {
                    return Ok::<_, std::io::Error>(());
                }
                if chunked {
                    wr.write_all(format!("{:x}\r\n", piece.len()).as_bytes()).await?;
                    wr.write_all(piece).await?;
                    wr.write_all(b"\r\n").await?;
                } else {
                    wr.write_all(piece).await?;
                }
                written.fetch_add(piece.len() as u64, Ordering::SeqCst);
                Ok(())
            };
            send(&mut wr, &body.prefix).await?;
            let mut left = body.filler;
            while left > 0 {
                let n = left.min(filler.len() as u64) as usize;
                send(&mut wr, &filler[..n]).await?;
                left -= n as u64;
            }
            send(&mut wr, &body.suffix).await?;
            if body.chunked {
                wr.write_all(b"0\r\n\r\n").await?;
            }
            // Half-open: the server may still answer.
            std::future::pending::<()>().await;
            Ok::<_, std::io::Error>(())
        }
    });
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => panic!("the connection ended without an answer: {:?}", String::from_utf8_lossy(&buf)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let written_then = written.load(Ordering::SeqCst);
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let closed = matches!(tokio::time::timeout(Duration::from_secs(5), rd.read(&mut chunk)).await, Ok(Ok(0) | Err(_)));
    writer.abort();
    Answer { status, head, body, written: written_then, closed }
}

fn assert_problem(answer: &Answer, status: u16, kind: &str, detail: &str) {
    let p = answer.json();
    assert_eq!(answer.status, status, "{}\n{p}", answer.head);
    assert_eq!(answer.header("content-type"), Some("application/problem+json"), "{}", answer.head);
    assert_eq!(p["type"], format!("urn:cascade:problem:{kind}"), "{p}");
    assert!(p["detail"].as_str().is_some_and(|d| d.contains(detail)), "{detail:?} not in {p}");
}

/// Kommo configured, so its endpoint reads bodies.
const KOMMO: &str = r#"
[kommo]
integration_id = "integration"
client_secret = "kommo-secret-0123456789"

[kommo.accounts.acme]
access_token = "kommo-access-token"
"#;

/// The routes that take a JSON body.
const ROUTES: [(&str, &str); 5] = [
    ("POST", "/v1/cascades"),
    ("POST", "/v1/campaigns"),
    ("PUT", "/v1/policies/limits"),
    ("POST", "/webhooks/wa"),
    ("POST", "/kommo/widget_request"),
];

fn json_head(method: &str, path: &str, extra: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json{extra}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_and_deep_json_are_refused_on_every_route() {
    let system = system("", "", KOMMO).await;
    let (_, peak_before) = memory(&system);
    let limit = "the body is larger than the 1048576-byte limit (server.max_body)";
    for (method, path) in ROUTES {
        // 100 MB declared, and the client waits to be told to go on: told 413 instead.
        let head = json_head(method, path, &format!("\r\nContent-Length: {}\r\nExpect: 100-continue", 100 * MB));
        let answer = exchange(system.port, &head, Outgoing::nothing()).await;
        assert_problem(&answer, 413, "payload-too-large", limit);
        assert_eq!(answer.header("connection"), Some("close"), "{path}");
        assert!(answer.closed, "{path}: the connection is closed");

        // 100 MB with no length declared: cut off once the limit is passed.
        let endless =
            Outgoing { prefix: b"{\"x\": \"".to_vec(), filler: 100 * MB, suffix: b"\"}".to_vec(), chunked: true };
        let answer = exchange(system.port, &json_head(method, path, ""), endless).await;
        assert_problem(&answer, 413, "payload-too-large", limit);
        assert!(answer.closed, "{path}: the connection is closed");
        // What the kernel took from us bounds what the server read: the limit plus socket
        // buffers, far from the 100 MB on offer.
        eprintln!("{path}: {} bytes went out before the 413", answer.written);
        assert!(answer.written < 16 * MB, "{path}: {} bytes went out before the 413", answer.written);

        // 100,000 levels of nesting: a 400 that says so.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let head = json_head(method, path, &format!("\r\nContent-Length: {}\r\nConnection: close", deep.len()));
        let deep = Outgoing { prefix: deep.into_bytes(), filler: 0, suffix: Vec::new(), chunked: false };
        let answer = exchange(system.port, &head, deep).await;
        assert_problem(&answer, 400, "malformed-body", "nests arrays and objects more than 64 levels deep");
    }
    // Nesting inside a value the API keeps as it is (`metadata`) is held to the same limit.
    let nested = format!(
        r#"{{"contact": {{"phone": "+15550100001"}}, "message": {{"text": "x"}}, "policy": "default", "metadata": {}{}}}"#,
        "{\"a\": ".repeat(70),
        "}".repeat(70)
    );
    let response = system
        .api
        .client
        .post(format!("{}/v1/cascades", system.api.base))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(nested)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 400);
    assert_eq!(system.sends("whatsapp"), 0, "nothing was sent");

    let (_, peak_after) = memory(&system);
    eprintln!("refused bodies: the peak grew by {} kB", (peak_after - peak_before) / 1024);
    // Each refused body is read up to the 1 MiB limit, on whichever worker thread serves it;
    // mimalloc keeps the memory it freed committed for reuse (35–52 MB here), and bodies read
    // whole would be 1.5 GB.
    assert!(
        peak_after - peak_before < 64 * MIB,
        "the peak grew by {} bytes over 15 refused bodies of up to 100 MB each",
        peak_after - peak_before
    );
    let id = system.api.start(&request(json!("+15550100001"), json!([{"channel": "whatsapp"}]))).await;
    system.api.wait_state(&id, "delivered").await;
}

/// A multipart form with one `file` part of `size` bytes.
fn upload(size: u64, chunked: bool) -> (String, Outgoing) {
    let body = Outgoing {
        prefix: b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\
                  Content-Type: application/octet-stream\r\n\r\n"
            .to_vec(),
        filler: size,
        suffix: b"\r\n--XyZ--\r\n".to_vec(),
        chunked,
    };
    let mut head = format!(
        "POST /v1/uploads HTTP/1.1\r\nAuthorization: Bearer {KEY}\r\nContent-Type: multipart/form-data; boundary=XyZ"
    );
    if !chunked {
        head.push_str(&format!("\r\nContent-Length: {}", body.len()));
    }
    (head, body)
}

/// The uploads' files in the upload directory (not the server's own bookkeeping there, the
/// dot-files).
fn uploads_left(system: &System) -> Vec<String> {
    std::fs::read_dir(system.dir.join("uploads"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_upload_over_the_limit_is_refused_as_soon_as_it_passes_it() {
    let system = system("", "max_upload = 20_000_000", "").await;
    let (_, peak_before) = memory(&system);
    let limit = "the file is larger than the 20000000-byte limit (server.max_upload)";

    // Declared: refused before a byte is sent.
    let (head, _) = upload(100 * MB, false);
    let answer = exchange(system.port, &format!("{head}\r\nExpect: 100-continue"), Outgoing::nothing()).await;
    assert_problem(&answer, 413, "payload-too-large", "20000000-byte limit (server.max_upload)");
    assert!(answer.closed);

    // Streamed with no length: refused once 20 MB have passed, the rest never read.
    let started = Instant::now();
    let (head, body) = upload(100 * MB, true);
    let answer = exchange(system.port, &head, body).await;
    assert_problem(&answer, 413, "payload-too-large", limit);
    assert_eq!(answer.json()["field"], "file");
    assert!(answer.closed);
    assert!(
        answer.written < 20 * MB + 24 * MB,
        "{} bytes went out before the 413 (limit 20 MB, plus socket buffers)",
        answer.written
    );
    eprintln!("streamed upload refused after {:?}, {} bytes sent", started.elapsed(), answer.written);

    let (_, peak_after) = memory(&system);
    eprintln!("refused uploads: the peak grew by {} kB", (peak_after - peak_before) / 1024);
    assert!(
        peak_after - peak_before < 24 * MIB,
        "the peak grew by {} bytes for uploads of 100 MB",
        peak_after - peak_before
    );
    assert_eq!(uploads_left(&system), Vec::<String>::new(), "the refused upload left nothing on disk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_upload_under_a_raised_limit_goes_to_disk_not_to_memory() {
    let system = system("", "max_upload = 105_000_000", "[engine]\nmax_file_size = 105_000_000\n").await;
    let (_, peak_before) = memory(&system);
    let size = 100 * MIB; // 104,857,600 bytes: just under 105 MB.
    let started = Instant::now();
    let (head, body) = upload(size, false);
    let answer = exchange(system.port, &head, body).await;
    let info = answer.json();
    assert_eq!(answer.status, 201, "{info}");
    assert_eq!(info["size"], size, "{info}");
    eprintln!("100 MiB uploaded in {:?}", started.elapsed());
    let id = info["upload_id"].as_str().expect("upload_id");
    let stored = std::fs::metadata(system.dir.join("uploads").join(id)).expect("the stored file");
    assert_eq!(stored.len(), size);

    let (_, peak_after) = memory(&system);
    eprintln!("100 MiB upload: the peak grew by {} kB", (peak_after - peak_before) / 1024);
    assert!(
        peak_after - peak_before < 32 * MIB,
        "the peak grew by {} bytes for a 100 MiB upload: it was held in memory",
        peak_after - peak_before
    );
}

/// A connection that sends `head` and then `drip` one byte every 50 ms for ever: when the
/// server ends it, how long that took and what it answered.
async fn slow(port: u16, head: String, drip: u8) -> (Duration, String) {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let opened = Instant::now();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            wr.write_all(&[drip]).await?;
        }
        #[allow(unreachable_code)]
        Ok::<_, std::io::Error>(())
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(30), rd.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => panic!("a slow connection was still open after 30 s"),
        }
    }
    writer.abort();
    (opened.elapsed(), String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_clients_are_cut_off_while_everyone_else_is_served() {
    let scenarios = "[default]\nbehaviour = \"deliver\"\nafter = \"100ms\"\n";
    let system = system(scenarios, "header_timeout = \"2s\"\nbody_timeout = \"3s\"", "").await;
    // One cascade first, so what the first one sets up is not counted against the slow clients.
    let id = system.api.start(&request(json!("+15550100002"), json!([{"channel": "whatsapp"}]))).await;
    system.api.wait_state(&id, "delivered").await;
    let (_, peak_before) = memory(&system);
    let port = system.port;
    let opened = Instant::now();
    let mut headers_slow = Vec::new();
    let mut bodies_slow = Vec::new();
    for _ in 0..100 {
        // Headers a byte at a time, never finished.
        headers_slow.push(tokio::spawn(slow(port, "POST /v1/cascades HTTP/1.1\r\nX-Slow: ".into(), b'a')));
        // Headers in full, then the body a byte at a time.
        let head = format!(
            "POST /v1/cascades HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{"
        );
        bodies_slow.push(tokio::spawn(slow(port, head, b' ')));
    }
    // All 200 are connected and hanging; the server answers others at once.
    let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
    let asked = Instant::now();
    let health = fresh.get(format!("{}/healthz", system.server.base)).send().await.expect("healthz");
    assert_eq!(health.status(), 200);
    assert!(asked.elapsed() < Duration::from_secs(1), "/healthz took {:?}", asked.elapsed());
    let api = Api { base: system.api.base.clone(), client: fresh.clone() };
    let asked = Instant::now();
    let id = api.start(&request(json!("+15550100001"), json!([{"channel": "whatsapp"}]))).await;
    assert!(asked.elapsed() < Duration::from_secs(2), "a start took {:?}", asked.elapsed());
    let answered = opened.elapsed();
    assert!(
        answered < Duration::from_secs(2),
        "the answers came {answered:?} after the slow clients connected, not while they hung"
    );
    api.wait_state(&id, "delivered").await;

    for task in headers_slow {
        let (after, answer) = task.await.expect("slow headers");
        assert!(after >= Duration::from_millis(1900) && after < Duration::from_secs(5), "closed after {after:?}");
        assert_eq!(answer, "", "closed without an answer: there was no request to answer");
    }
    for task in bodies_slow {
        let (after, answer) = task.await.expect("slow body");
        assert!(after >= Duration::from_millis(2900) && after < Duration::from_secs(6), "closed after {after:?}");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("within 3s of the headers (server.body_timeout)"), "{answer}");
    }
    let (_, peak_after) = memory(&system);
    eprintln!("slow clients: the peak grew by {} kB", (peak_after - peak_before) / 1024);
    assert!(
        peak_after - peak_before < 12 * MIB,
        "200 slow clients grew the server's peak by {} bytes",
        peak_after - peak_before
    );
    let health = fresh.get(format!("{}/healthz", system.server.base)).send().await.expect("healthz");
    assert_eq!(health.status(), 200);
}

/// A WhatsApp status webhook for a message no cascade sent, signed as the sandbox signs.
fn whatsapp_status(n: usize) -> Vec<u8> {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111",
                         "phone_number_id": cascade_sandbox::DEFAULT_WHATSAPP_PHONE_NUMBER_ID},
            "statuses": [{"id": format!("wamid.flood-{n}"), "status": "delivered",
                          "timestamp": "1700000000", "recipient_id": "15551234567"}]
        }}]}]
    })
    .to_string()
    .into_bytes()
}

fn signature(body: &[u8]) -> String {
    let mac = cascade_channel_kit::webhook::hmac_sha256(cascade_sandbox::DEFAULT_WHATSAPP_APP_SECRET.as_bytes(), body);
    format!("sha256={}", mac.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Webhook `n` of the flood: what it sends, and the status it must get.
fn flood_item(base: &str, n: usize) -> (String, Vec<u8>, String, u16) {
    let wa = format!("{base}/webhooks/wa");
    match n % 5 {
        0 | 1 => {
            let body = whatsapp_status(n);
            let sig = signature(&body);
            (wa, body, sig, 200)
        }
        2 => (wa, whatsapp_status(n), "sha256=00".into(), 401),
        3 => {
            let body = b"{\"object\": \"whatsapp_business_account\", \"entry\": [".to_vec();
            let sig = signature(&body);
            (wa, body, sig, 400)
        }
        _ => (format!("{base}/webhooks/nobody"), whatsapp_status(n), String::new(), 404),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_webhooks_is_answered_and_a_cascade_still_completes() {
    let scenarios = "[default]\nbehaviour = \"deliver\"\nafter = \"100ms\"\n";
    let system = system(scenarios, "", "").await;
    let base = system.server.base.clone();
    let flood = |range: std::ops::Range<usize>| {
        let base = base.clone();
        async move {
            // Several clients at once, each with a few requests in flight.
            let clients: Vec<_> = (0..4).map(|_| reqwest::Client::new()).collect();
            futures_util::stream::iter(range)
                .map(|n| {
                    let client = clients[n % clients.len()].clone();
                    let (url, body, sig, expected) = flood_item(&base, n);
                    async move {
                        let response = client
                            .post(&url)
                            .header("content-type", "application/json")
                            .header("x-hub-signature-256", sig)
                            .body(body)
                            .send()
                            .await
                            .unwrap_or_else(|e| panic!("webhook {n} got no answer: {e}"));
                        let status = response.status().as_u16();
                        let answer: Value = response.json().await.unwrap_or(Value::Null);
                        assert_eq!(status, expected, "webhook {n}: {answer}");
                        if status == 200 {
                            assert_eq!(answer["unmatched"], 1, "webhook {n}: {answer}");
                        }
                    }
                })
                .buffer_unordered(16)
                .collect::<Vec<()>>()
                .await
                .len()
        }
    };
    // A first round warms the server up (pools, caches, allocator arenas)...
    assert_eq!(flood(0..500).await, 500);
    let (rss_before, _) = memory(&system);
    // ...then a cascade starts while a larger flood goes on, and is delivered through it.
    let started = Instant::now();
    let flooding = tokio::spawn(flood(500..4500));
    let id = system.api.start(&request(json!("+15550100001"), json!([{"channel": "whatsapp"}]))).await;
    let view = system.api.wait_state(&id, "delivered").await;
    assert_eq!(view["outcome"]["channel"], "whatsapp", "{view}");
    let delivered_after = started.elapsed();
    assert!(!flooding.is_finished(), "the cascade was delivered while the flood went on");
    assert_eq!(flooding.await.expect("flood"), 4000);
    let rate = 4000.0 / started.elapsed().as_secs_f64();
    eprintln!("4,000 webhooks answered at {rate:.0}/s; the cascade was delivered after {delivered_after:?}");

    let (rss_after, _) = memory(&system);
    eprintln!("webhook flood: VmRSS {} kB -> {} kB", rss_before / 1024, rss_after / 1024);
    assert!(
        rss_after.saturating_sub(rss_before) < 24 * MIB,
        "4,000 webhooks grew the server by {} bytes",
        rss_after - rss_before
    );
    let health = system.api.client.get(format!("{base}/healthz")).send().await.expect("healthz");
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_is_not_held_up_by_slow_clients() {
    // The grace period ends before the slow clients' timeouts would: it is what cuts them off.
    let keys = "header_timeout = \"4s\"\nbody_timeout = \"5s\"\nshutdown_grace = \"1s\"";
    let mut system = system("", keys, "").await;
    let port = system.port;
    let mut slow_ones = Vec::new();
    for _ in 0..10 {
        slow_ones.push(tokio::spawn(slow(port, "GET /healthz HTTP/1.1\r\nX-Slow: ".into(), b'a')));
        let head = "PUT /v1/policies/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{".to_owned();
        slow_ones.push(tokio::spawn(slow(port, head, b' ')));
    }
    // An idle kept-alive connection too.
    let idle = reqwest::Client::new();
    assert_eq!(idle.get(format!("{}/healthz", system.server.base)).send().await.expect("healthz").status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = Instant::now();
    let status = system.server.stop("TERM");
    assert!(status.success(), "{status:?}");
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "SIGTERM took {took:?} with slow clients open (grace 1 s, timeouts 4 s and 5 s)"
    );
    for task in slow_ones {
        let (after, _) = task.await.expect("slow client");
        assert!(after < Duration::from_secs(4), "a slow client was open {after:?}");
    }
}

/// An idle kept-alive connection is closed after `header_timeout`: the time a client has to
/// send its next request's headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_after_the_header_timeout() {
    let system = system("", "header_timeout = \"1s\"", "").await;
    let mut stream = TcpStream::connect(("127.0.0.1", system.port)).await.expect("connect");
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("request");
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).await.expect("answer");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    let answered = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the idle connection was still open 5 s after its answer");
    let idle = answered.elapsed();
    assert!(idle >= Duration::from_millis(900), "closed after {idle:?}, before the header timeout");
}
