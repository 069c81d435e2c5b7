use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ChannelName, ConnectionId, ContentOverride, Status};

/// The ordered chain of steps a cascade walks, and the rules around it.
///
/// ```
/// use cascade_engine::Policy;
/// let p: Policy = serde_json::from_str(r#"{"steps": [
///     {"channel": "whatsapp", "until": "delivered", "timeout": "30s"},
///     {"channel": "sms"}
/// ]}"#).unwrap();
/// assert_eq!(p.steps.len(), 2);
/// assert!(p.existing_chat_first);
/// ```
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The policy's name, when it comes from configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The steps, tried in order, one at a time.
    pub steps: Vec<Step>,
    /// Send first on a channel where the contact has an active conversation (default on).
    #[serde(default = "yes")]
    pub existing_chat_first: bool,
    /// The cascade's overall time to live; when it passes, the outcome is `expired`.
    /// Default: 24 hours.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "super::duration::option")]
    pub ttl: Option<Duration>,
    /// A success status for an earlier attempt that arrives while a later step waits ends the
    /// cascade as delivered (default on). Off: it is only recorded.
    #[serde(default = "yes")]
    pub late_success_wins: bool,
    /// Links in the message are tracked, so steps may wait `until = "clicked"`: they become
    /// short redirect URLs that record a click (see [`crate::links`]). The engine must have
    /// link tracking configured ([`crate::EngineBuilder::link_tracking`]), or the request is
    /// refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub track_links: bool,
    /// Retries of transient errors inside a step.
    #[serde(default)]
    pub retry: RetryPolicy,
}

fn yes() -> bool {
    true
}

impl Policy {
    /// The default overall time to live.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

    /// A policy with these steps and default rules.
    pub fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        Self {
            name: None,
            steps: steps.into_iter().collect(),
            existing_chat_first: true,
            ttl: None,
            late_success_wins: true,
            track_links: false,
            retry: RetryPolicy::default(),
        }
    }

    /// A chain of channels with default step rules, e.g. `Policy::chain(["whatsapp", "sms"])`.
    pub fn chain<C: Into<ChannelName>>(channels: impl IntoIterator<Item = C>) -> Self {
        Self::new(channels.into_iter().map(Step::new))
    }

    /// The time to live in force.
    pub fn ttl(&self) -> Duration {
        self.ttl.unwrap_or(Self::DEFAULT_TTL)
    }
}

/// One step of a policy: a channel and its rules.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The channel to try.
    pub channel: ChannelName,
    /// The status that counts as success. Default: what the channel can report, up to
    /// `delivered` (`delivered` for WhatsApp/SMS/Viber, `sent` for Telegram and email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Status>,
    /// How long to wait for `until` after the provider accepted the message, and the window for
    /// retrying transient errors. Default 60 s.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "super::duration::option")]
    pub timeout: Option<Duration>,
    /// Content override for this step (wins over the message's per-channel override).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ContentOverride>,
    /// Use only these connections of the channel's pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<Vec<ConnectionId>>,
}

impl Step {
    /// The default wait for `until`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

    /// A step on `channel` with default rules.
    pub fn new(channel: impl Into<ChannelName>) -> Self {
        Self { channel: channel.into(), until: None, timeout: None, content: None, connections: None }
    }

    /// Sets the success status.
    pub fn until(mut self, status: Status) -> Self {
        self.until = Some(status);
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The timeout in force.
    pub fn timeout_or_default(&self) -> Duration {
        self.timeout.unwrap_or(Self::DEFAULT_TIMEOUT)
    }
}

/// How transient errors are retried inside a step's window.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// The most sends one step makes (the first plus retries). Default 4.
    pub max_sends_per_step: u32,
    /// The first backoff. Default 1 s; doubles each time.
    #[serde(with = "super::duration")]
    pub initial_backoff: std::time::Duration,
    /// The longest backoff. Default 30 s.
    #[serde(with = "super::duration")]
    pub max_backoff: std::time::Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_sends_per_step: 4, initial_backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(30) }
    }
}

impl RetryPolicy {
    /// The wait before send number `sends_so_far + 1`, honouring a provider's retry-after.
    pub fn backoff(&self, sends_so_far: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(1u32.checked_shl(sends_so_far.saturating_sub(1)).unwrap_or(u32::MAX))
            .min(self.max_backoff);
        retry_after.unwrap_or(exp)
    }
}
