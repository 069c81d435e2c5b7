//! Sending: one signed JSON POST per message.

use std::sync::Arc;

use async_trait::async_trait;
use cascade_channel_kit::webhook::{CASCADE_SIGNATURE_HEADER, cascade_signature};
use cascade_channel_kit::{ConfigError, http};
use cascade_engine::{
    Accepted, Capabilities, Channel, ChannelInfo, Connection, ConnectionId, Cost, MediaLimits, SendError, SendRequest,
    Status,
};
use serde::{Deserialize, Serialize};

use crate::WebhookConfig;
use crate::error::rule_for;

/// The adapter name statuses are matched by is this prefix and the channel name
/// (`webhook-line`), so two services' message ids never meet.
pub const ADAPTER_PREFIX: &str = "webhook-";

/// Any HTTP service as a cascade [`Channel`] (and, through
/// [`Intake`](cascade_channel_kit::Intake), its status webhooks).
pub struct Webhook {
    pub(crate) config: WebhookConfig,
    info: ChannelInfo,
    /// The configured `url`, without surrounding spaces.
    url: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").field("config", &self.config).field("info", &self.info).finish_non_exhaustive()
    }
}

/// What is POSTed to the service for one send.
#[derive(Serialize, Debug)]
pub struct Outgoing<'a> {
    /// The cascade.
    pub cascade_id: String,
    /// The attempt within it: with `cascade_id`, a key the service can use to drop repeats.
    pub attempt: u32,
    /// The connection (this configured service).
    pub connection: &'a str,
    /// Where to send.
    pub address: &'a cascade_engine::Address,
    /// What to send, rendered.
    pub message: &'a cascade_engine::Content,
}

/// The service's answer on success (every field optional; the body may be empty).
#[derive(Deserialize, Default)]
struct Reply {
    #[serde(default)]
    provider_message_id: Option<String>,
    #[serde(default)]
    status: Option<Status>,
    #[serde(default)]
    cost: Option<Cost>,
}

#[derive(Deserialize)]
struct Failure {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

impl Webhook {
    /// A channel for one service. Fails, naming the key, on a config that cannot work.
    pub fn new(config: WebhookConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let capabilities = Capabilities {
            address_kinds: config.address_kinds.clone(),
            max_file_size: config.max_file_size.map_or(MediaLimits::NONE, MediaLimits::all),
            highest_status: config.highest_status,
            inbound: config.inbound,
            buttons: config.buttons,
            conversation_window: None,
        };
        let info = ChannelInfo {
            channel: config.channel.as_str().into(),
            adapter: format!("{ADAPTER_PREFIX}{}", config.channel).into(),
            capabilities,
        };
        Ok(Self { http: http::client(config.timeout), info, url: config.url.trim().to_owned(), config })
    }

    /// The engine connection for this service, with its price and rate limit.
    pub fn connection(self: &Arc<Self>, id: impl Into<ConnectionId>) -> Connection {
        cascade_channel_kit::config::connection(self.clone(), id, self.config.price, self.config.rate_limit)
    }
}

/// The provider message id used when the service does not give one: statuses for the send
/// refer to it.
pub fn default_message_id(request: &SendRequest) -> String {
    format!("{}:{}", request.cascade_id, request.attempt)
}

#[async_trait]
impl Channel for Webhook {
    fn info(&self) -> &ChannelInfo {
        &self.info
    }

    async fn send(&self, request: &SendRequest) -> Result<Accepted, SendError> {
        let outgoing = Outgoing {
            cascade_id: request.cascade_id.to_string(),
            attempt: request.attempt,
            connection: request.connection.as_str(),
            address: &request.address,
            message: &request.content,
        };
        let body = serde_json::to_vec(&outgoing).map_err(|e| SendError::rejected("encode", e.to_string()))?;
        let now = chrono::Utc::now().timestamp();
        let mut call = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(CASCADE_SIGNATURE_HEADER, cascade_signature(self.config.secret.expose().as_bytes(), now, &body))
            .header("Idempotency-Key", default_message_id(request));
        for (name, value) in &self.config.headers {
            call = call.header(name.as_str(), value.expose());
        }
        let answer = http::call(call.body(body)).await?;
        if answer.status.is_success() {
            let reply = if answer.body.iter().all(u8::is_ascii_whitespace) {
                Reply::default()
            } else {
                answer.json::<Reply>().map_err(|e| {
                    SendError::transient("bad_reply", format!("2xx answer that is not the documented JSON: {e}"))
                })?
            };
            let id =
                reply.provider_message_id.filter(|id| !id.is_empty()).unwrap_or_else(|| default_message_id(request));
            return Ok(Accepted { provider_message_id: id, cost: reply.cost, status: reply.status });
        }
        let rule = rule_for(answer.status.as_u16());
        let failure = answer.json::<Failure>().ok();
        let code = failure.as_ref().and_then(|f| f.code.clone()).unwrap_or_else(|| answer.status.as_u16().to_string());
        let detail = failure.and_then(|f| f.detail).unwrap_or_else(|| answer.snippet());
        let mut e = SendError::new(rule.class, code, detail);
        if let Some(after) = http::retry_after(&answer.headers) {
            e = e.with_retry_after(after);
        }
        Err(e)
    }
}
