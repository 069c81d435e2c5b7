//! Webhook intake: status callbacks and incoming messages, signed with `X-Twilio-Signature`.
//!
//! Both arrive form-encoded. A request with `MessageStatus` (or the legacy `SmsStatus`) of
//! `received`/`receiving`, or with a `Body` and no status, is an incoming message; any other is a
//! status callback. Twilio adds parameters without notice: they are ignored by the parser, and
//! covered by the signature like every other.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cascade_channel_kit::webhook::{constant_time_eq, hmac_sha1};
use cascade_channel_kit::{ErrorClass, Intake, WebhookError, WebhookEvent, WebhookRequest};
use cascade_engine::{InboundMessage, SendError, Status, StatusUpdate};
use sha2::Digest;

use crate::Twilio;
use crate::client::ADAPTER;
use crate::error::rule_for;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// Twilio's signature of a request: base64 of HMAC-SHA1, keyed with the auth token, over the
/// full URL followed by every POST parameter's name and value, sorted by name (then value).
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut data = url.to_owned();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    STANDARD.encode(hmac_sha1(auth_token.as_bytes(), data.as_bytes()))
}

/// Checks `X-Twilio-Signature` for a request Twilio made to `url` with form `params` (or, when
/// the URL carries `bodySHA256`, a JSON `body`). The URL is also tried with and without its
/// default port, as Twilio's own libraries do (Twilio signs the URL as configured).
pub fn verify_signature(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    body: &[u8],
    given: &str,
) -> Result<(), WebhookError> {
    let body_hash = url::Url::parse(url)
        .ok()
        .and_then(|u| u.query_pairs().find(|(k, _)| k == "bodySHA256").map(|(_, v)| v.into_owned()));
    let params: &[(String, String)] = match &body_hash {
        Some(expected) => {
            let actual = hex::encode(sha2::Sha256::digest(body));
            if !constant_time_eq(actual.as_bytes(), expected.to_ascii_lowercase().as_bytes()) {
                return Err(WebhookError::BadSignature);
            }
            &[]
        }
        None => params,
    };
    let ok = url_variants(url)
        .iter()
        .any(|u| constant_time_eq(signature(auth_token, u, params).as_bytes(), given.trim().as_bytes()));
    if ok { Ok(()) } else { Err(WebhookError::BadSignature) }
}

/// The URL as given, and with its default port added or removed.
fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    let Ok(parsed) = url::Url::parse(url) else { return out };
    let Some(default) = parsed.port_or_known_default() else { return out };
    let host = parsed.host_str().unwrap_or_default();
    let scheme_host = format!("{}://{}", parsed.scheme(), host);
    let with_port = format!("{scheme_host}:{default}");
    if let Some(rest) = url.strip_prefix(&with_port) {
        out.push(format!("{scheme_host}{rest}"));
    } else if parsed.port().is_none()
        && let Some(rest) = url.strip_prefix(&scheme_host)
    {
        out.push(format!("{with_port}{rest}"));
    }
    out
}

/// The normalized status for a Twilio `MessageStatus`; `None` for ones cascade does not use.
pub fn status_of(name: &str) -> Option<Status> {
    match name {
        "queued" | "accepted" | "scheduled" | "sending" => Some(Status::Accepted),
        "sent" => Some(Status::Sent),
        "delivered" => Some(Status::Delivered),
        "read" => Some(Status::Read),
        "failed" | "undelivered" | "canceled" => Some(Status::Failed),
        _ => None,
    }
}

/// Parses a form-encoded callback (without checking the signature).
pub fn parse_callback(params: &[(String, String)]) -> Result<Vec<WebhookEvent>, WebhookError> {
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let sid = get("MessageSid").or_else(|| get("SmsSid")).filter(|s| !s.is_empty());
    let status = get("MessageStatus").or_else(|| get("SmsStatus"));
    let inbound = matches!(status, Some("received" | "receiving"))
        || (status.is_none() && (get("Body").is_some() || get("NumMedia").is_some()));
    if inbound {
        let from = get("From").filter(|f| !f.is_empty()).ok_or_else(|| missing("From"))?;
        return Ok(vec![WebhookEvent::Inbound(InboundMessage {
            from: from.to_owned(),
            text: get("Body").filter(|b| !b.is_empty()).map(str::to_owned),
            at: None,
        })]);
    }
    let sid = sid.ok_or_else(|| missing("MessageSid"))?;
    let name = status.ok_or_else(|| missing("MessageStatus"))?;
    let Some(status) = status_of(name) else { return Ok(Vec::new()) };
    let error = (status == Status::Failed).then(|| {
        let code = get("ErrorCode").filter(|c| !c.is_empty());
        match code.and_then(|c| c.parse().ok()).and_then(rule_for) {
            Some(rule) => SendError::new(rule.class, rule.code, format!("{name}: {}", rule.meaning)),
            None => SendError::new(ErrorClass::Rejected, code.unwrap_or(name), name),
        }
    });
    Ok(vec![WebhookEvent::Status(StatusUpdate { provider_message_id: sid.to_owned(), status, at: None, error })])
}

fn missing(name: &str) -> WebhookError {
    WebhookError::Malformed(format!("Twilio callback without {name}"))
}

impl Twilio {
    /// Checks `X-Twilio-Signature` against the URL Twilio called and the posted parameters.
    pub fn verify(&self, request: &WebhookRequest<'_>) -> Result<(), WebhookError> {
        self.verify_form(request, &request.form())
    }

    fn verify_form(&self, request: &WebhookRequest<'_>, params: &[(String, String)]) -> Result<(), WebhookError> {
        let given = request.signature_header(SIGNATURE_HEADER)?;
        verify_signature(self.config.auth_token.expose(), request.url, params, request.body, given)
    }
}

impl Intake for Twilio {
    fn adapter(&self) -> &str {
        ADAPTER
    }

    fn receive(&self, request: &WebhookRequest<'_>) -> Result<Vec<WebhookEvent>, WebhookError> {
        let params = request.form();
        self.verify_form(request, &params)?;
        parse_callback(&params)
    }
}
