//! Webhook intake: what a provider POSTs to us, verified and parsed into engine values.
//!
//! Every adapter implements [`Intake`]. The server hands it a [`WebhookRequest`] (the URL the
//! provider called, the headers, the raw body: signatures are over the exact bytes) and feeds
//! the resulting [`WebhookEvent`]s to the engine. Verification comes first: a request with a
//! bad signature yields an error and nothing else.

use cascade_engine::{InboundMessage, StatusUpdate};
use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;

/// One webhook call as received.
#[derive(Clone, Copy, Debug)]
pub struct WebhookRequest<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// The full URL the provider called, as the provider saw it (scheme, public host, path and
    /// query string): Twilio signs it.
    pub url: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The raw body.
    pub body: &'a [u8],
}

impl<'a> WebhookRequest<'a> {
    /// A POST with these headers and body.
    pub fn post(url: &'a str, headers: &'a HeaderMap, body: &'a [u8]) -> Self {
        Self { method: "POST", url, headers, body }
    }

    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A required header, or [`WebhookError::MissingSignature`] naming it.
    pub fn signature_header(&self, name: &'static str) -> Result<&'a str, WebhookError> {
        self.header(name).ok_or(WebhookError::MissingSignature { header: name })
    }

    /// The query string's parameters, decoded.
    pub fn query(&self) -> Vec<(String, String)> {
        match url::Url::parse(self.url) {
            Ok(u) => u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect(),
            Err(_) => {
                let q = self.url.split_once('?').map(|(_, q)| q).unwrap_or_default();
                url::form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
            }
        }
    }

    /// One query parameter.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query().into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The body as `application/x-www-form-urlencoded` pairs, in order.
    pub fn form(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(self.body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
    }

    /// The body as JSON of type `T`, or [`WebhookError::Malformed`] saying where it broke.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, WebhookError> {
        serde_json::from_slice(self.body).map_err(|e| WebhookError::Malformed(format!("body: {e}")))
    }
}

/// What a webhook carried, in engine terms.
#[derive(Clone, PartialEq, Debug)]
pub enum WebhookEvent {
    /// A delivery status for a message we sent.
    Status(StatusUpdate),
    /// A message from a contact.
    Inbound(InboundMessage),
}

/// Why a webhook was refused. The server answers 401 for the signature errors, 400 for the
/// others; nothing in the request is used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebhookError {
    /// The signature header is absent.
    #[error("missing signature header {header}")]
    MissingSignature {
        /// The header's name.
        header: &'static str,
    },
    /// The signature does not match the body and our secret.
    #[error("the signature does not match")]
    BadSignature,
    /// The connection has no secret to check the signature with.
    #[error("webhook secret not configured: {0}")]
    NotConfigured(&'static str),
    /// The body is not what the provider documents.
    #[error("malformed webhook: {0}")]
    Malformed(String),
    /// A verification handshake that does not match our settings.
    #[error("handshake refused: {0}")]
    Handshake(String),
    /// A signature whose timestamp is too old or too far ahead (a replay, or a wrong clock).
    #[error("the signature's timestamp is outside the accepted window")]
    Stale,
}

impl WebhookError {
    /// Whether the error is about authenticity (401) rather than form (400).
    pub fn is_auth(&self) -> bool {
        matches!(self, Self::MissingSignature { .. } | Self::BadSignature | Self::Handshake(_) | Self::Stale)
    }
}

/// The webhook half of an adapter: verifies a provider's calls and parses them.
pub trait Intake: Send + Sync + std::fmt::Debug {
    /// The adapter name statuses are matched by (the same as its [`ChannelInfo::adapter`](
    /// cascade_engine::ChannelInfo::adapter)).
    fn adapter(&self) -> &str;

    /// Answers a verification handshake (a GET), for providers that have one: `Some(Ok(body))`
    /// is the 200 answer, `Some(Err(_))` a 403. The default: no handshake.
    fn handshake(&self, _request: &WebhookRequest<'_>) -> Option<Result<String, WebhookError>> {
        None
    }

    /// Verifies the request's signature, then parses its statuses and inbound messages.
    /// Unknown fields and event kinds are ignored; a malformed body is an error, never a panic.
    fn receive(&self, request: &WebhookRequest<'_>) -> Result<Vec<WebhookEvent>, WebhookError>;
}

/// HMAC-SHA256 of `data` with `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// HMAC-SHA1 of `data` with `key`.
pub fn hmac_sha1(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// What [`WebhookError::NotConfigured`] says when a signing key is blank.
pub const BLANK_KEY: &str = "the signing key is empty";

/// Whether a key is empty or only spaces: anyone can sign with it, so nothing it signs is trusted.
fn blank(key: &[u8]) -> bool {
    key.iter().all(u8::is_ascii_whitespace)
}

/// Checks a hex-encoded HMAC-SHA256 of `body` in constant time. A blank `key` (a [`Secret`](
/// crate::Secret) built from `""` in code, which skips the check its deserialization makes)
/// verifies nothing: [`WebhookError::NotConfigured`] with [`BLANK_KEY`].
pub fn verify_sha256_hex(key: &[u8], body: &[u8], signature_hex: &str) -> Result<(), WebhookError> {
    if blank(key) {
        return Err(WebhookError::NotConfigured(BLANK_KEY));
    }
    let given = hex::decode(signature_hex.trim()).map_err(|_| WebhookError::BadSignature)?;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    mac.verify_slice(&given).map_err(|_| WebhookError::BadSignature)
}

/// The header cascade signs its own outgoing HTTP calls with (the generic webhook channel, and
/// the server's callbacks), and checks on calls made to it with the same secret.
pub const CASCADE_SIGNATURE_HEADER: &str = "X-Cascade-Signature";

/// How far a signed timestamp may be from our clock.
pub const SIGNATURE_TOLERANCE: std::time::Duration = std::time::Duration::from_secs(300);

/// cascade's signature of `body` at `timestamp` (unix seconds):
/// `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`. Signing the timestamp
/// with the body lets the receiver refuse replays of an old call.
///
/// ```
/// use cascade_channel_kit::webhook::{cascade_signature, verify_cascade_signature};
/// let header = cascade_signature(b"whsec", 1_700_000_000, br#"{"ok":true}"#);
/// assert!(header.starts_with("t=1700000000,v1="));
/// assert!(verify_cascade_signature(b"whsec", &header, br#"{"ok":true}"#, 1_700_000_060).is_ok());
/// ```
pub fn cascade_signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut data = format!("{timestamp}.").into_bytes();
    data.extend_from_slice(body);
    format!("t={timestamp},v1={}", hex::encode(hmac_sha256(secret, &data)))
}

/// Checks a [`cascade_signature`] header at `now` (unix seconds): a `v1` that matches (several
/// may be given while a secret is rotated) and a timestamp within [`SIGNATURE_TOLERANCE`]. A
/// blank `secret` is refused as [`WebhookError::NotConfigured`] with [`BLANK_KEY`].
pub fn verify_cascade_signature(secret: &[u8], header: &str, body: &[u8], now: i64) -> Result<(), WebhookError> {
    if blank(secret) {
        return Err(WebhookError::NotConfigured(BLANK_KEY));
    }
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => candidates.push(v),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(WebhookError::BadSignature)?;
    let mut data = format!("{timestamp}.").into_bytes();
    data.extend_from_slice(body);
    if !candidates.iter().any(|c| verify_sha256_hex(secret, &data, c).is_ok()) {
        return Err(WebhookError::BadSignature);
    }
    if now.abs_diff(timestamp) > SIGNATURE_TOLERANCE.as_secs() {
        return Err(WebhookError::Stale);
    }
    Ok(())
}

/// Checks a provider's shared-secret header (Telegram's `X-Telegram-Bot-Api-Secret-Token`,
/// MAX's `X-Max-Bot-Api-Secret`): it must equal `secret`, compared in constant time. Without a
/// configured secret, or with a blank one (which any request could match), the webhook is
/// refused as [`WebhookError::NotConfigured`] naming `key`.
pub fn verify_shared_secret(
    request: &WebhookRequest<'_>,
    header: &'static str,
    secret: Option<&crate::Secret>,
    key: &'static str,
) -> Result<(), WebhookError> {
    let secret = secret.filter(|s| !blank(s.expose().as_bytes())).ok_or(WebhookError::NotConfigured(key))?;
    let given = request.signature_header(header)?;
    if constant_time_eq(given.as_bytes(), secret.expose().as_bytes()) {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex::encode(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        let sig = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(verify_sha256_hex(b"Jefe", b"what do ya want for nothing?", sig), Ok(()));
        assert_eq!(verify_sha256_hex(b"Jefe", b"what do ya want for nothing!", sig), Err(WebhookError::BadSignature));
        assert_eq!(verify_sha256_hex(b"Jefe", b"x", "not hex"), Err(WebhookError::BadSignature));
    }

    #[test]
    fn hmac_sha1_matches_rfc_2202_case_2() {
        let mac = hmac_sha1(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex::encode(mac), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }

    #[test]
    fn cascade_signatures() {
        let body = br#"{"status":"delivered"}"#;
        let header = cascade_signature(b"secret", 1_000, body);
        assert_eq!(verify_cascade_signature(b"secret", &header, body, 1_100), Ok(()));
        assert_eq!(verify_cascade_signature(b"other", &header, body, 1_100), Err(WebhookError::BadSignature));
        assert_eq!(verify_cascade_signature(b"secret", &header, b"{}", 1_100), Err(WebhookError::BadSignature));
        assert_eq!(verify_cascade_signature(b"secret", &header, body, 1_000 + 301), Err(WebhookError::Stale));
        // A replay with the timestamp moved forward breaks the signature.
        let moved = header.replace("t=1000", "t=2000");
        assert_eq!(verify_cascade_signature(b"secret", &moved, body, 2_000), Err(WebhookError::BadSignature));
        // Rotation: any matching v1 is enough.
        let rotated = format!("{},v1=00ff", header.replace("v1=", "v1=00ff,v1="));
        assert_eq!(verify_cascade_signature(b"secret", &rotated, body, 1_000), Ok(()));
        assert_eq!(verify_cascade_signature(b"secret", "v1=abc", body, 1_000), Err(WebhookError::BadSignature));
    }

    /// An HMAC keyed with nothing is one anyone can compute: a blank key verifies nothing.
    #[test]
    fn blank_keys_verify_nothing() {
        let body = b"{}";
        let forged = hex::encode(hmac_sha256(b"", body));
        assert_eq!(verify_sha256_hex(b"", body, &forged), Err(WebhookError::NotConfigured(BLANK_KEY)));
        let spaces = hex::encode(hmac_sha256(b"  ", body));
        assert_eq!(verify_sha256_hex(b"  ", body, &spaces), Err(WebhookError::NotConfigured(BLANK_KEY)));
        let header = cascade_signature(b"", 1_000, body);
        assert_eq!(verify_cascade_signature(b"", &header, body, 1_000), Err(WebhookError::NotConfigured(BLANK_KEY)));

        let mut headers = HeaderMap::new();
        headers.insert("x-secret", reqwest::header::HeaderValue::from_static(""));
        let request = WebhookRequest::post("https://h.test/webhooks/x", &headers, body);
        let empty = crate::Secret::from("");
        assert_eq!(
            verify_shared_secret(&request, "x-secret", Some(&empty), "webhook_secret"),
            Err(WebhookError::NotConfigured("webhook_secret"))
        );
        let set = crate::Secret::from("s3cret");
        assert_eq!(
            verify_shared_secret(&request, "x-secret", Some(&set), "webhook_secret"),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn requests_read_query_and_form() {
        let headers = HeaderMap::new();
        let req = WebhookRequest::post("https://h.test/webhooks/x?a=1&b=two%20words", &headers, b"K=v+w&E=%2B1");
        assert_eq!(req.query_param("b").as_deref(), Some("two words"));
        assert_eq!(req.form(), vec![("K".into(), "v w".into()), ("E".into(), "+1".into())]);
        assert_eq!(req.signature_header("X-Sig"), Err(WebhookError::MissingSignature { header: "X-Sig" }));
        assert!(
            constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"a", b"ab")
        );
    }
}
