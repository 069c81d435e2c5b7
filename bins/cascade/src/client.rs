//! The server's `/v1` API over HTTP: starts, reads, lists and cancels cascades; creates,
//! reads, lists, controls and exports campaigns; uploads files; and follows event streams
//! (a cascade's timeline, a campaign's progress), reconnecting when they break. Problem
//! documents become [`Failure`]s with the right exit code and every error the server listed,
//! each with its field.

use std::marker::PhantomData;
use std::path::Path;
use std::time::Duration;

use cascade_engine::Event;
use futures_util::StreamExt;
use indicatif::ProgressBar;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::exit::{self, Failure};

/// A client of one server with one API key.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: url::Url,
    key: Option<String>,
}

impl Client {
    /// A client of the server at `server` (`http://HOST:PORT`, with or without a trailing `/`).
    pub fn new(server: &str, key: Option<String>) -> Result<Self, Failure> {
        let mut base =
            url::Url::parse(server).map_err(|e| Failure::invalid(format!("--server {server:?} is not a URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Failure::invalid(format!("--server {server:?}: use an http:// or https:// URL")));
        }
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .user_agent(concat!("cascade-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure::io(format!("cannot make an HTTP client: {e}")))?;
        Ok(Self { http, base, key: key.filter(|k| !k.is_empty()) })
    }

    /// The base URL plus `segments`, each percent-encoded as one path segment.
    fn url(&self, segments: &[&str]) -> url::Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// A request to `url` with the API key.
    fn request_to(&self, method: Method, url: url::Url) -> RequestBuilder {
        let r = self.http.request(method, url);
        match &self.key {
            Some(key) => r.bearer_auth(key),
            None => r,
        }
    }

    fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        self.request_to(method, self.url(segments))
    }

    async fn send(&self, request: RequestBuilder) -> Result<Response, Failure> {
        let response = request
            .send()
            .await
            .map_err(|e| Failure::io(format!("cannot reach the server at {}: {}", self.base, error_chain(&e))))?;
        if response.status().is_success() { Ok(response) } else { Err(problem(response).await) }
    }

    async fn json(&self, request: RequestBuilder) -> Result<Value, Failure> {
        let response = self.send(request).await?;
        response.json().await.map_err(|e| Failure::io(format!("the server's answer is not JSON: {e}")))
    }

    /// `POST /v1/cascades`.
    pub async fn start(&self, body: &Value, idempotency_key: Option<&str>) -> Result<Value, Failure> {
        let mut r = self.request(Method::POST, &["v1", "cascades"]).json(body);
        if let Some(k) = idempotency_key {
            r = r.header("Idempotency-Key", k);
        }
        self.json(r).await
    }

    /// `GET /v1/cascades/{id}`.
    pub async fn get(&self, id: &str) -> Result<Value, Failure> {
        self.json(self.request(Method::GET, &["v1", "cascades", id])).await
    }

    /// `GET /v1/cascades?...`.
    pub async fn list(&self, query: &[(&str, String)]) -> Result<Value, Failure> {
        let mut url = self.url(&["v1", "cascades"]);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        self.json(self.request_to(Method::GET, url)).await
    }

    /// `POST /v1/cascades/{id}/cancel`.
    pub async fn cancel(&self, id: &str) -> Result<Value, Failure> {
        self.json(self.request(Method::POST, &["v1", "cascades", id, "cancel"])).await
    }

    /// `POST /v1/uploads`, streaming the file from disk.
    pub async fn upload(&self, path: &Path) -> Result<Value, Failure> {
        self.upload_with_progress(path, &ProgressBar::hidden()).await
    }

    /// `POST /v1/uploads`, streaming the file from disk; `bar` gets the file's size as its
    /// length and advances with every chunk sent.
    pub async fn upload_with_progress(&self, path: &Path, bar: &ProgressBar) -> Result<Value, Failure> {
        let file =
            tokio::fs::File::open(path).await.map_err(|e| Failure::io(format!("--file {}: {e}", path.display())))?;
        let size = file.metadata().await.map_err(|e| Failure::io(format!("--file {}: {e}", path.display())))?.len();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
        let media_type = cascade_http::uploads::guess_media_type(Some(&name));
        bar.set_length(size);
        let sent = bar.clone();
        let stream = tokio_util::io::ReaderStream::new(file).inspect(move |chunk| {
            if let Ok(c) = chunk {
                sent.inc(c.len() as u64);
            }
        });
        let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), size)
            .file_name(name)
            .mime_str(media_type)
            .map_err(|e| Failure::invalid(format!("--file: {e}")))?;
        let form = reqwest::multipart::Form::new().part("file", part);
        self.json(self.request(Method::POST, &["v1", "uploads"]).multipart(form)).await
    }

    /// `GET /v1/cascades/{id}/events`: the timeline so far, then live until `finished`.
    pub async fn events(&self, id: &str) -> Result<Events<Event>, Failure> {
        self.stream(&["v1", "cascades", id, "events"]).await
    }

    /// `POST /v1/campaigns` (also a dry run, by the body's `dry_run`).
    pub async fn create_campaign(&self, body: &Value) -> Result<Value, Failure> {
        self.json(self.request(Method::POST, &["v1", "campaigns"]).json(body)).await
    }

    /// `GET /v1/campaigns/{id}`: the progress, with the settings and the import's counts.
    pub async fn campaign(&self, id: &str) -> Result<Value, Failure> {
        self.json(self.request(Method::GET, &["v1", "campaigns", id])).await
    }

    /// `GET /v1/campaigns?...`.
    pub async fn campaigns(&self, query: &[(&str, String)]) -> Result<Value, Failure> {
        let mut url = self.url(&["v1", "campaigns"]);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        self.json(self.request_to(Method::GET, url)).await
    }

    /// `POST /v1/campaigns/{id}/{action}` (`pause`, `resume`, `cancel`): the new progress.
    pub async fn campaign_action(&self, id: &str, action: &str) -> Result<Value, Failure> {
        self.json(self.request(Method::POST, &["v1", "campaigns", id, action])).await
    }

    /// `GET /v1/campaigns/{id}/export?status=...`: the CSV body, chunk by chunk as it comes.
    pub async fn campaign_export(&self, id: &str, status: &str) -> Result<ByteStream, Failure> {
        let mut url = self.url(&["v1", "campaigns", id, "export"]);
        url.query_pairs_mut().append_pair("status", status);
        let response = self.send(self.request_to(Method::GET, url).header("Accept", "text/csv")).await?;
        Ok(Box::pin(response.bytes_stream()))
    }

    /// A Server-Sent Events stream at `segments`.
    async fn stream<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<Events<T>, Failure> {
        let r = self.request(Method::GET, segments).header("Accept", "text/event-stream");
        let response = self.send(r).await?;
        Ok(Events { body: Box::pin(response.bytes_stream()), buffer: Vec::new(), entry: PhantomData })
    }

    /// Follows a cascade's timeline (`GET /v1/cascades/{id}/events`) to `finished`; see
    /// [`Client::follow`].
    pub async fn follow_cascade(
        &self,
        id: &str,
        lost: &str,
        on_entry: impl FnMut(usize, Event) -> Result<Entry, Failure>,
    ) -> Result<(), Failure> {
        self.follow(&["v1", "cascades", id, "events"], lost, on_entry).await
    }

    /// Follows a campaign's progress (`GET /v1/campaigns/{id}/events`: the progress at once,
    /// then whenever it changes, until the campaign is over and none of its cascades runs);
    /// see [`Client::follow`].
    pub async fn follow_campaign(
        &self,
        id: &str,
        lost: &str,
        on_entry: impl FnMut(usize, Value) -> Result<Entry, Failure>,
    ) -> Result<(), Failure> {
        self.follow(&["v1", "campaigns", id, "events"], lost, on_entry).await
    }

    /// Follows the event stream at `segments` to its end, reconnecting when it breaks (the
    /// server restarting, a proxy closing it) or ends before its last entry. `on_entry` gets
    /// each entry with its position in the current connection's stream (from 1) and says
    /// whether it was new and whether it was the last, or fails, which ends the following. It
    /// gives up after 30 reconnects in a row without a new entry (with `lost` as the message),
    /// and at once on an entry it cannot read.
    async fn follow<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        lost: &str,
        mut on_entry: impl FnMut(usize, T) -> Result<Entry, Failure>,
    ) -> Result<(), Failure> {
        // Reconnects in a row without a new entry.
        let mut broken = 0u32;
        loop {
            if broken > 0 {
                if broken > 30 {
                    return Err(Failure::io(lost.to_owned()));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let mut events = match self.stream::<T>(segments).await {
                Ok(e) => e,
                Err(f) if broken > 0 && f.code == exit::UNAVAILABLE => {
                    broken += 1;
                    continue;
                }
                Err(f) => return Err(f),
            };
            let mut index = 0usize;
            // Until the stream ends, or breaks off.
            while let Some(entry) = match events.next().await {
                Ok(next) => next,
                Err(StreamError::Broken(_)) => None,
                Err(StreamError::Unreadable(f)) => return Err(f),
            } {
                index += 1;
                match on_entry(index, entry)? {
                    Entry::Replayed => {}
                    Entry::New => broken = 0,
                    Entry::Last => return Ok(()),
                }
            }
            broken += 1;
        }
    }
}

/// What [`Client::follow`]'s caller made of an entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Entry {
    /// Seen before this reconnect (a stream that replays its history first).
    Replayed,
    /// New.
    New,
    /// New, and the last one: the stream has nothing more to say.
    Last,
}

/// A response body, chunk by chunk.
pub type ByteStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, reqwest::Error>> + Send>>;

/// An event stream (Server-Sent Events), one entry (each event's `data` as a `T`) at a time.
pub struct Events<T> {
    body: ByteStream,
    buffer: Vec<u8>,
    entry: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Events<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").field("buffered", &self.buffer.len()).finish()
    }
}

/// Why an event stream stopped giving entries.
#[derive(Debug)]
pub enum StreamError {
    /// The connection broke (the server restarting, a proxy closing it): worth reconnecting.
    Broken(Failure),
    /// The server sent what this CLI cannot read: reconnecting would not help.
    Unreadable(Failure),
}

impl From<StreamError> for Failure {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::Broken(f) | StreamError::Unreadable(f) => f,
        }
    }
}

impl<T: DeserializeOwned> Events<T> {
    /// The next entry; `None` when the stream ends (after its last entry, or when the server
    /// stops).
    pub async fn next(&mut self) -> Result<Option<T>, StreamError> {
        loop {
            if let Some(end) = find_blank_line(&self.buffer) {
                let block: Vec<u8> = self.buffer.drain(..end.0).collect();
                self.buffer.drain(..end.1 - end.0);
                if let Some(event) = parse_block(&block).map_err(StreamError::Unreadable)? {
                    return Ok(Some(event));
                }
                continue;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    let f = Failure::io(format!("the event stream broke: {}", error_chain(&e)));
                    return Err(StreamError::Broken(f));
                }
                None => return Ok(None),
            }
        }
    }
}

/// Where the first event block ends: (end of the block, end of its blank-line separator).
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    (0..buf.len()).find_map(|i| {
        if buf[i..].starts_with(b"\n\n") {
            Some((i, i + 2))
        } else if buf[i..].starts_with(b"\r\n\r\n") {
            Some((i, i + 4))
        } else {
            None
        }
    })
}

/// One SSE block's `data:` lines as an entry; comments (keep-alives) give `None`.
fn parse_block<T: DeserializeOwned>(block: &[u8]) -> Result<Option<T>, Failure> {
    let text = String::from_utf8_lossy(block);
    let data: Vec<&str> =
        text.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| d.strip_prefix(' ').unwrap_or(d)).collect();
    if data.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&data.join("\n"))
        .map(Some)
        .map_err(|e| Failure::io(format!("the server sent an event this CLI does not understand: {e}")))
}

/// An error with its causes, for messages.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}

/// A non-2xx answer as a failure: the problem document's title, detail and every error with
/// its field; the exit code from the status.
async fn problem(response: Response) -> Failure {
    let status = response.status();
    let code = match status {
        StatusCode::BAD_REQUEST
        | StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::UNSUPPORTED_MEDIA_TYPE
        | StatusCode::UNPROCESSABLE_ENTITY => exit::INVALID,
        s if s.is_server_error() => exit::UNAVAILABLE,
        _ => exit::REFUSED,
    };
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = response.text().await.unwrap_or_default();
    let Ok(doc) = serde_json::from_str::<Value>(&text) else {
        let body = text.trim();
        let message = if body.is_empty() { status.to_string() } else { format!("{status}: {body}") };
        return Failure::new(code, format!("the server answered {message}"));
    };
    let mut message = format!("the server answered {}", status.as_u16());
    let title = doc.get("title").and_then(Value::as_str);
    let detail = doc.get("detail").and_then(Value::as_str);
    if let Some(t) = title {
        message.push_str(&format!(" {t}"));
    }
    let errors = doc.get("errors").and_then(Value::as_array).cloned().unwrap_or_default();
    if errors.is_empty() {
        if let Some(d) = detail {
            message.push_str(&format!(": {d}"));
        }
        if let Some(f) = doc.get("field").and_then(Value::as_str) {
            message.push_str(&format!(" (field {f})"));
        }
    }
    for e in &errors {
        let field = e.get("field").and_then(Value::as_str).unwrap_or("-");
        let m = e.get("message").or_else(|| e.get("detail")).and_then(Value::as_str).unwrap_or("");
        message.push_str(&format!("\n  {field}: {m}"));
    }
    if let Some(r) = retry_after {
        message.push_str(&format!(" (retry after {r} s)"));
    }
    Failure::new(code, message).with_detail(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_split_on_blank_lines_and_keepalives_are_skipped() {
        let buf =
            b": keep-alive\n\nevent: created\ndata: {\"at\":\"2026-01-01T00:00:00Z\",\"type\":\"created\"}\n\nrest";
        let first = find_blank_line(buf).expect("a block");
        assert_eq!(parse_block::<Event>(&buf[..first.0]).expect("ok"), None);
        let second_start = first.1;
        let second = find_blank_line(&buf[second_start..]).expect("a second block");
        let event: Event = parse_block(&buf[second_start..second_start + second.0]).expect("ok").expect("event");
        assert!(matches!(event.kind, cascade_engine::EventKind::Created));
        assert_eq!(find_blank_line(b"rest"), None);
    }
}
