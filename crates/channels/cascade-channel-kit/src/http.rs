//! The HTTP client adapters share, and what a failed call means in the engine's terms.

use std::time::Duration;

use cascade_engine::{ErrorClass, SendError};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// The largest provider answer an adapter reads (they are small JSON documents).
pub const MAX_ANSWER: usize = 1 << 20;

/// The default time limit for one provider call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// An HTTP client for one connection: a whole-call `timeout`, a 10 s connect limit, no
/// redirects. One client serves a connection's provider calls and its attachment fetches (one
/// pool): a provider API that redirects is misconfigured, and credentials must not follow; and
/// the server checks an attachment's URL when the cascade is started (no internal addresses),
/// so a redirect would take the fetch somewhere that was never checked (a redirect answer is
/// `rejected`, [`media::fetched_part`](crate::media::fetched_part)). Adapters set credentials
/// per request, never as the client's default headers, so a fetch carries none.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10).min(timeout))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("cascade/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// A success answer whose body the adapter cannot read: the provider probably has the message,
/// so it is neither retried nor failed (both would send it twice). It is accepted under an id
/// no status will ever match, and the step's timeout decides.
pub fn unreadable_success(request: &cascade_engine::SendRequest) -> cascade_engine::Accepted {
    cascade_engine::Accepted::new(format!("unconfirmed:{}:{}", request.cascade_id, request.attempt))
}

/// `text` with every occurrence of `secret` replaced by `***` (for error details built from
/// provider answers, which may echo a URL or a token).
pub fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() { text.to_owned() } else { text.replace(secret, "***") }
}

/// Classifies a call that got no HTTP answer. A timeout is `transient` (the engine retries, and
/// the provider may or may not have the message); a failure to connect is `connection` (the
/// endpoint or its proxy is down or misconfigured: try another connection). The URL is left out
/// of the detail: some providers (Telegram) put the credential in it.
pub fn transport_error(e: reqwest::Error) -> SendError {
    let timeout = e.is_timeout();
    let connect = e.is_connect();
    let detail = e.without_url().to_string();
    if timeout {
        SendError::timeout(detail)
    } else if connect {
        SendError::connection("connect", detail)
    } else {
        SendError::transient("transport", detail)
    }
}

/// The class of an HTTP status when the provider's body says nothing more specific: 401/403
/// are our credentials (`connection`), 408/425/429 and 5xx are `transient`, other 4xx are
/// `rejected`. Anything else (a success the adapter cannot read, a stray redirect) is
/// `transient`: the content and the contact are not known to be at fault.
pub fn status_class(status: StatusCode) -> ErrorClass {
    match status.as_u16() {
        s if !(400..500).contains(&s) => ErrorClass::Transient,
        401 | 403 => ErrorClass::Connection,
        408 | 425 | 429 => ErrorClass::Transient,
        _ => ErrorClass::Rejected,
    }
}

/// The `Retry-After` header in seconds, when present.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// A provider's answer: status, headers and (at most [`MAX_ANSWER`] bytes of) body.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The body parsed as JSON of type `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The body as text, cut to 300 characters (for error details).
    pub fn snippet(&self) -> String {
        String::from_utf8_lossy(&self.body).chars().take(300).collect()
    }

    /// An error from the HTTP status alone, for answers the adapter could not read.
    pub fn unexpected(&self) -> SendError {
        let mut e = SendError::new(
            status_class(self.status),
            format!("http_{}", self.status.as_u16()),
            format!("unexpected answer ({}): {}", self.status, self.snippet()),
        );
        if let Some(after) = retry_after(&self.headers) {
            e = e.with_retry_after(after);
        }
        e
    }
}

/// Sends a request and reads the answer; failures without an answer are classified by
/// [`transport_error`].
pub async fn call(request: reqwest::RequestBuilder) -> Result<Answer, SendError> {
    let mut response = request.send().await.map_err(transport_error)?;
    let status = response.status();
    let headers = std::mem::take(response.headers_mut());
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        let room = MAX_ANSWER.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    Ok(Answer { status, headers, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_without_a_provider_code() {
        assert_eq!(status_class(StatusCode::UNAUTHORIZED), ErrorClass::Connection);
        assert_eq!(status_class(StatusCode::TOO_MANY_REQUESTS), ErrorClass::Transient);
        assert_eq!(status_class(StatusCode::BAD_GATEWAY), ErrorClass::Transient);
        assert_eq!(status_class(StatusCode::BAD_REQUEST), ErrorClass::Rejected);
        assert_eq!(status_class(StatusCode::OK), ErrorClass::Transient);
        assert_eq!(redact("Cannot POST /bot123:ABC/sendMessage", "123:ABC"), "Cannot POST /bot***/sendMessage");
    }

    #[tokio::test]
    async fn refused_connections_are_connection_failures_without_the_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let url = format!("http://127.0.0.1:{port}/botSECRET-TOKEN/sendMessage");
        let err = call(client(Duration::from_secs(5)).get(url)).await.expect_err("refused");
        assert_eq!(err.class, ErrorClass::Connection, "{err}");
        assert!(!err.detail.contains("SECRET-TOKEN"), "{}", err.detail);
    }

    #[tokio::test]
    async fn slow_answers_are_transient_timeouts() {
        let server = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::any())
            .respond_with(wiremock::ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
            .mount(&server)
            .await;
        let err = call(client(Duration::from_millis(200)).get(server.uri())).await.expect_err("timeout");
        assert_eq!((err.class, err.code.as_str()), (ErrorClass::Transient, "timeout"));
    }

    /// One client serves provider calls and attachment fetches: neither follows a redirect.
    #[tokio::test]
    async fn redirects_are_answers_not_followed() {
        let server = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::path("/moved"))
            .respond_with(wiremock::ResponseTemplate::new(302).insert_header("location", "/elsewhere"))
            .expect(1)
            .mount(&server)
            .await;
        wiremock::Mock::given(wiremock::matchers::path("/elsewhere"))
            .respond_with(wiremock::ResponseTemplate::new(200))
            .expect(0)
            .mount(&server)
            .await;
        let answer = call(client(DEFAULT_TIMEOUT).get(format!("{}/moved", server.uri()))).await.expect("answer");
        assert_eq!(answer.status, StatusCode::FOUND);
    }

    #[tokio::test]
    async fn unexpected_answers_keep_retry_after() {
        let server = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::any())
            .respond_with(
                wiremock::ResponseTemplate::new(503).insert_header("retry-after", "7").set_body_string("busy"),
            )
            .mount(&server)
            .await;
        let answer = call(client(DEFAULT_TIMEOUT).get(server.uri())).await.expect("answer");
        let err = answer.unexpected();
        assert_eq!((err.class, err.retry_after), (ErrorClass::Transient, Some(Duration::from_secs(7))));
        assert!(err.detail.contains("busy"));
    }
}
