//! Webhook intake: statuses and replies the service POSTs back, signed with the shared secret.
//!
//! The body is `{"statuses": [StatusUpdate…], "inbound": [InboundMessage…]}` (either list may
//! be left out), signed in `X-Cascade-Signature` exactly as sends are.

use cascade_channel_kit::webhook::{CASCADE_SIGNATURE_HEADER, verify_cascade_signature};
use cascade_channel_kit::{Intake, WebhookError, WebhookEvent, WebhookRequest};
use cascade_engine::{InboundMessage, StatusUpdate};
use serde::Deserialize;

use crate::Webhook;

#[derive(Deserialize)]
struct Report {
    #[serde(default)]
    statuses: Vec<StatusUpdate>,
    #[serde(default)]
    inbound: Vec<InboundMessage>,
}

/// Parses a report body (without checking the signature).
pub fn parse_report(body: &[u8]) -> Result<Vec<WebhookEvent>, WebhookError> {
    let report: Report =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(format!("webhook channel report: {e}")))?;
    let statuses = report.statuses.into_iter().map(WebhookEvent::Status);
    Ok(statuses.chain(report.inbound.into_iter().map(WebhookEvent::Inbound)).collect())
}

impl Webhook {
    /// Checks the signature at `now` (unix seconds).
    pub fn verify_at(&self, request: &WebhookRequest<'_>, now: i64) -> Result<(), WebhookError> {
        let header = request.signature_header(CASCADE_SIGNATURE_HEADER)?;
        verify_cascade_signature(self.config.secret.expose().as_bytes(), header, request.body, now)
    }
}

impl Intake for Webhook {
    fn adapter(&self) -> &str {
        use cascade_engine::Channel;
        self.info().adapter.as_str()
    }

    fn receive(&self, request: &WebhookRequest<'_>) -> Result<Vec<WebhookEvent>, WebhookError> {
        self.verify_at(request, chrono::Utc::now().timestamp())?;
        parse_report(request.body)
    }
}
