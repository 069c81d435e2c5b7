//! What one request may cost the server: how large its body may be, how long the body may take
//! to arrive, and how deeply a JSON body may nest. (How long the headers may take is the
//! connection's business: [`App::serve`](crate::App::serve).)
//!
//! Every request passes through `guard` (a layer of [`App::router`](crate::App::router)):
//!
//! - A declared `Content-Length` over the route's limit is refused at once with `413`, before a
//!   byte of the body is read (a client that sent `Expect: 100-continue` never sends it).
//! - The body is counted as it arrives: past the limit, reading stops and the answer is `413`.
//!   The limit is `max_body` (1 MiB), or for uploads (`POST /v1/uploads`, the console's campaign
//!   form) the upload limit plus room for the form around the file.
//! - The whole body must arrive within the body timeout (30 s), or the upload timeout for
//!   uploads (10 min), counted from the end of the headers; otherwise the answer is `408`.
//!
//! Both answers close the connection, since the rest of the body is never read. JSON bodies
//! may nest arrays and objects at most [`MAX_JSON_DEPTH`] levels deep: deeper is a `400`
//! before any parsing, so neither parsing nor anything later (storing, templates) ever walks a
//! deep tree.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::BoxError;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use hyper::body::{Frame, SizeHint};
use tokio::time::Instant;

use crate::App;
use crate::problem::{Problem, ProblemKind};

/// How long a client has to send a request's headers by default (10 s); an idle kept-alive
/// connection is closed after as long.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request's body may take to arrive by default (30 s).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an upload's body may take to arrive by default (10 minutes: 100 MB at 170 kB/s).
pub const DEFAULT_UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// The deepest a JSON body may nest arrays and objects (`[[1]]` is 2 levels).
pub const MAX_JSON_DEPTH: usize = 64;
/// Room for a multipart form's boundaries and part headers around an upload's bytes.
pub(crate) const UPLOAD_OVERHEAD: u64 = 64 * 1024;

/// Why reading a request body stopped.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// More bytes came than the route takes.
    #[error("the body is larger than the {limit}-byte limit ({setting})")]
    TooLarge {
        /// The limit, in bytes, as configured.
        limit: u64,
        /// The setting that makes it (`server.max_body`).
        setting: &'static str,
    },
    /// The body had not arrived in full when its time was up.
    #[error("the body did not arrive within {after:?} of the headers ({setting})")]
    TimedOut {
        /// The time the body had.
        after: Duration,
        /// The setting that makes it (`server.body_timeout`).
        setting: &'static str,
    },
}

impl BodyError {
    /// The answer: `413` or `408`.
    pub fn problem(&self) -> Problem {
        match self {
            Self::TooLarge { .. } => Problem::new(ProblemKind::PayloadTooLarge, self.to_string()),
            Self::TimedOut { .. } => Problem::new(ProblemKind::RequestTimeout, self.to_string()),
        }
    }

    /// The [`BodyError`] somewhere in `error`'s chain of sources (a rejected extractor wraps
    /// it in a few layers), if there is one.
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyError> {
        let mut at = Some(error);
        while let Some(e) = at {
            if let Some(found) = e.downcast_ref::<BodyError>() {
                return Some(found);
            }
            at = e.source();
        }
        None
    }
}

/// What a request to one route may send.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Allowance {
    /// The most bytes read.
    pub(crate) bytes: u64,
    /// Named in the answer when the body is larger.
    pub(crate) too_large: BodyError,
    /// How long the body may take.
    pub(crate) time: Duration,
    /// Named in the answer when it takes longer.
    pub(crate) too_slow: BodyError,
}

impl App {
    /// What a request to `path` may send: uploads their limit plus the form around them, the
    /// rest `max_body`.
    pub(crate) fn allowance(&self, path: &str) -> Allowance {
        let inner = self.inner();
        let max_body = inner.max_body as u64;
        let upload = |extra: u64| {
            // Without uploads the upload routes read no file: a form's worth is enough.
            let file = inner.uploads.as_ref().map_or(0, crate::uploads::Uploads::max_size);
            Allowance {
                bytes: file.saturating_add(extra),
                too_large: BodyError::TooLarge {
                    limit: if file == 0 { max_body } else { file },
                    setting: if file == 0 { "server.max_body" } else { "server.max_upload" },
                },
                time: inner.upload_timeout,
                too_slow: BodyError::TimedOut { after: inner.upload_timeout, setting: "server.upload_timeout" },
            }
        };
        match path {
            "/v1/uploads" if inner.uploads.is_some() => upload(UPLOAD_OVERHEAD),
            "/v1/uploads" | "/console/campaigns/new" => upload(max_body.saturating_add(UPLOAD_OVERHEAD)),
            _ => Allowance {
                bytes: max_body,
                too_large: BodyError::TooLarge { limit: max_body, setting: "server.max_body" },
                time: inner.body_timeout,
                too_slow: BodyError::TimedOut { after: inner.body_timeout, setting: "server.body_timeout" },
            },
        }
    }
}

/// The layer every request passes: refuses a declared length over the route's limit, and
/// counts and times the body as it is read (see the module's documentation).
pub(crate) async fn guard(State(app): State<App>, request: Request, next: Next) -> Response {
    let allowance = app.allowance(request.uri().path());
    if declared_length(request.headers()).is_some_and(|n| n > allowance.bytes) {
        return closing(allowance.too_large.problem().into_response());
    }
    let request = request.map(|body| Body::new(Guarded::new(body, allowance)));
    let response = next.run(request).await;
    if matches!(response.status(), StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT) {
        closing(response)
    } else {
        response
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// The body was not read to its end: the connection cannot carry another request.
fn closing(mut response: Response) -> Response {
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The size of the frames a guarded body hands on.
const FRAME: usize = 64 * 1024;

/// A request body that fails once it passes its byte limit or its deadline, and hands its
/// bytes on in frames of [`FRAME`] bytes (the last one shorter), copied out of the
/// connection's read buffer.
///
/// The copy is what keeps a body's memory to about its size: each piece hyper reads shares
/// the connection's whole read buffer, so a client sending its body a byte at a time would
/// otherwise pin a buffer of kilobytes with every byte it sends.
struct Guarded {
    inner: Body,
    allowance: Allowance,
    read: u64,
    deadline: Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// Read, not yet handed on.
    held: BytesMut,
    /// The trailers, which come after the last data.
    trailers: Option<Frame<Bytes>>,
    /// The inner body has ended.
    ended: bool,
    failed: bool,
}

impl Guarded {
    fn new(inner: Body, allowance: Allowance) -> Self {
        let deadline = Instant::now() + allowance.time;
        Self {
            inner,
            allowance,
            read: 0,
            deadline,
            timer: Box::pin(tokio::time::sleep_until(deadline)),
            held: BytesMut::new(),
            trailers: None,
            ended: false,
            failed: false,
        }
    }

    fn fail(&mut self, error: BodyError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.failed = true;
        self.held = BytesMut::new();
        Poll::Ready(Some(Err(Box::new(error))))
    }
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.failed {
                return Poll::Ready(None);
            }
            if this.held.len() >= FRAME || (this.ended && !this.held.is_empty()) {
                let n = this.held.len().min(FRAME);
                return Poll::Ready(Some(Ok(Frame::data(this.held.split_to(n).freeze()))));
            }
            if this.ended {
                return Poll::Ready(this.trailers.take().map(Ok));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => {
                    return match this.timer.as_mut().poll(cx) {
                        Poll::Ready(()) => this.fail(this.allowance.too_slow),
                        Poll::Pending => Poll::Pending,
                    };
                }
                Poll::Ready(None) => this.ended = true,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        this.read = this.read.saturating_add(data.len() as u64);
                        if this.read > this.allowance.bytes {
                            return this.fail(this.allowance.too_large);
                        }
                        // A body that keeps coming, but too slowly in all, is cut off too.
                        if Instant::now() >= this.deadline && !this.inner.is_end_stream() {
                            return this.fail(this.allowance.too_slow);
                        }
                        this.held.extend_from_slice(&data);
                    }
                    Err(trailers) => {
                        this.trailers = Some(trailers);
                        this.ended = true;
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || (self.held.is_empty() && self.trailers.is_none() && (self.ended || self.inner.is_end_stream()))
    }

    fn size_hint(&self) -> SizeHint {
        if self.failed || self.ended {
            return SizeHint::with_exact(self.held.len() as u64);
        }
        let inner = self.inner.size_hint();
        let held = self.held.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(held));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(held));
        }
        hint
    }
}

/// Whether `json` nests arrays and objects more than `max` levels deep. Reads bytes, not
/// values: strings are skipped, and the text need not be valid JSON.
pub fn nests_deeper_than(json: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Whether a parsed `value` nests arrays and objects more than `max` levels deep (for JSON
/// that arrives inside something else, such as a form field). Walks without recursion.
pub fn value_nests_deeper_than(value: &serde_json::Value, max: usize) -> bool {
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        let children: Vec<&serde_json::Value> = match value {
            serde_json::Value::Array(items) => items.iter().collect(),
            serde_json::Value::Object(fields) => fields.values().collect(),
            _ => continue,
        };
        if depth + 1 > max {
            return true;
        }
        stack.extend(children.into_iter().map(|c| (c, depth + 1)));
    }
    false
}

/// A `400` for a JSON body nested deeper than [`MAX_JSON_DEPTH`], if `body` is one. Bodies
/// that do not start like JSON (`{` or `[`) are left to their parser.
pub fn check_json_depth(body: &[u8]) -> Result<(), Problem> {
    let json = matches!(body.iter().find(|b| !b.is_ascii_whitespace()), Some(b'{' | b'['));
    if json && nests_deeper_than(body, MAX_JSON_DEPTH) {
        return Err(Problem::new(
            ProblemKind::MalformedBody,
            format!("the body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_brackets_outside_strings() {
        assert!(!nests_deeper_than(br#"{"a": [1, {"b": 2}]}"#, 3));
        assert!(nests_deeper_than(br#"{"a": [1, {"b": [2]}]}"#, 3));
        assert!(!nests_deeper_than(br#"{"a": "[[[[[[[[", "b": "\"{{{{{{{"}"#, 1));
        assert!(nests_deeper_than(br#"{"a": "\\", "b": [[]]}"#, 2), "an escaped backslash ends no string");
        assert!(!nests_deeper_than(&[b'['; MAX_JSON_DEPTH], MAX_JSON_DEPTH));
        assert!(nests_deeper_than(&[b'['; 100_000], MAX_JSON_DEPTH));
        assert!(check_json_depth(b"a[b][c][d]=[[[[[[[[[[[[[[[").is_ok(), "not JSON: left to its parser");
        let parsed: serde_json::Value = serde_json::from_str(r#"{"a": [1, {"b": [2]}], "c": {}}"#).expect("json");
        assert!(!value_nests_deeper_than(&parsed, 4) && value_nests_deeper_than(&parsed, 3));
        assert!(!value_nests_deeper_than(&serde_json::json!(1), 0));
        let p = check_json_depth(&[b'{'; 65]).expect_err("too deep");
        assert_eq!(p.status, 400);
        assert!(p.detail.contains("more than 64 levels"), "{}", p.detail);
    }

    #[tokio::test]
    async fn a_body_sent_a_byte_at_a_time_is_handed_on_in_whole_frames() {
        use futures_util::StreamExt;
        let allowance = Allowance {
            bytes: 1 << 20,
            too_large: BodyError::TooLarge { limit: 1 << 20, setting: "server.max_body" },
            time: Duration::from_secs(60),
            too_slow: BodyError::TimedOut { after: Duration::from_secs(60), setting: "server.body_timeout" },
        };
        let bytes = futures_util::stream::iter(0..200_000u32)
            .map(|i| Ok::<_, std::convert::Infallible>(Bytes::from(vec![(i % 251) as u8])));
        let mut body = Guarded::new(Body::from_stream(bytes), allowance);
        let mut sizes = Vec::new();
        let mut all = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            let data = frame.expect("no error").into_data().expect("data");
            sizes.push(data.len());
            all.extend_from_slice(&data);
        }
        assert_eq!(sizes, [FRAME, FRAME, FRAME, 200_000 - 3 * FRAME]);
        assert!(all.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8), "every byte, in order");
        assert!(body.is_end_stream());

        let over =
            futures_util::stream::iter(0..3).map(|_| Ok::<_, std::convert::Infallible>(Bytes::from(vec![0; 600])));
        let limited = Allowance { bytes: 1000, ..allowance };
        let mut body = Guarded::new(Body::from_stream(over), limited);
        let first = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await.expect("a frame");
        let e = first.expect_err("past the limit before any frame was handed on");
        assert_eq!(BodyError::find(e.as_ref()), Some(&allowance.too_large));
    }

    #[test]
    fn body_errors_are_found_under_wrappers() {
        let inner = BodyError::TooLarge { limit: 10, setting: "server.max_body" };
        let wrapped = axum::Error::new(axum::Error::new(Box::new(inner) as BoxError));
        assert_eq!(BodyError::find(&wrapped), Some(&inner));
        assert_eq!(BodyError::find(&std::io::Error::other("no")), None);
        assert_eq!(inner.problem().status, 413);
        assert!(inner.problem().detail.contains("10-byte limit (server.max_body)"));
        let slow = BodyError::TimedOut { after: Duration::from_secs(30), setting: "server.body_timeout" };
        assert_eq!(slow.problem().status, 408);
        assert!(slow.problem().detail.contains("within 30s"), "{}", slow.problem().detail);
    }
}
