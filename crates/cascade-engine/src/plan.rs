//! Validation and planning: everything decided before the first send.
//!
//! [`build`] renders every step's content, resolves every step's address, decides which steps
//! must be skipped (and why), applies "existing chat first" and sticky senders, rewrites tracked
//! links (see [`crate::links`]), and refuses the request with errors naming each offending field
//! if anything is wrong. It is pure: the same request, cascade id, channels and conversations
//! give the same plan.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::channel::Capabilities;
use crate::error::ValidationError;
use crate::links::{LinkTracking, Rewriter};
use crate::model::{
    Address, CascadeId, ChannelName, ConnectionId, Contact, Content, ContentOverride, Message, Policy, RetryPolicy,
    SkipReason, Status, Timestamp, is_e164,
};
use crate::store::Conversation;
use crate::template;

/// The default largest attachment: 100 MB, in decimal units (100,000,000 bytes), the same as
/// the HTTP server's default upload limit.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 100_000_000;

/// What the planner needs to know about the configured channels.
pub trait ChannelDirectory {
    /// The capabilities of `channel`, or `None` if no connection serves it.
    fn capabilities(&self, channel: &ChannelName) -> Option<&Capabilities>;
    /// Whether `connection` exists and serves `channel`.
    fn serves(&self, channel: &ChannelName, connection: &ConnectionId) -> bool;
}

/// The inputs of a plan.
#[derive(Debug)]
pub struct PlanInput<'a> {
    /// The id the cascade will have (tracked links carry it).
    pub cascade: CascadeId,
    /// The engine's link tracking, if it has any: policies with `track_links` need it.
    pub link_tracking: Option<&'a LinkTracking>,
    /// The contact.
    pub contact: &'a Contact,
    /// The message.
    pub message: &'a Message,
    /// The policy.
    pub policy: &'a Policy,
    /// Caller-given template variables (`{"deal": {...}}`).
    pub variables: &'a serde_json::Value,
    /// The contact's known conversations.
    pub conversations: &'a [Conversation],
    /// The largest attachment accepted at all.
    pub max_file_size: u64,
    /// Now.
    pub now: Timestamp,
}

/// One step, ready to run.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct PlannedStep {
    /// The channel.
    pub channel: ChannelName,
    /// The success status.
    pub until: Status,
    /// The wait for it (and the window for retries).
    #[serde(with = "crate::model::duration")]
    pub timeout: Duration,
    /// Where to send; `None` when skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
    /// What to send. With link tracking, its links are already the tracked URLs.
    pub content: Arc<Content>,
    /// The original URLs of the tracked links in `content`, each once (empty without link
    /// tracking). Link numbers count these lists of every step in step order: step 0's links
    /// are numbers `0..n0`, step 1's `n0..n0 + n1`, and so on. Following a tracked link
    /// redirects to the URL kept here, never to one taken from the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// Why the step is skipped, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<SkipReason>,
    /// The subset of connections allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<Arc<[ConnectionId]>>,
    /// The connection to prefer (the contact's conversation is there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<ConnectionId>,
    /// The contact's open conversation window on this channel, as known when the cascade was
    /// planned (channels with a [`conversation_window`](crate::Capabilities::conversation_window)
    /// only): inside it, free-form messages are allowed (WhatsApp's service window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<OpenWindow>,
}

/// A conversation window that was open when the cascade was planned.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct OpenWindow {
    /// The connection the contact wrote to.
    pub connection: ConnectionId,
    /// When the window closes (the contact's last inbound message plus the channel's window).
    #[serde(with = "crate::model::rfc3339")]
    pub until: Timestamp,
}

/// A validated cascade, ready for the state machine.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Plan {
    /// The steps in policy order.
    pub steps: Vec<PlannedStep>,
    /// The step moved to the front because of an existing chat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<u16>,
    /// A late success for an earlier attempt ends the cascade as delivered.
    pub late_success_wins: bool,
    /// Transient-error retries.
    pub retry: RetryPolicy,
    /// When the cascade expires.
    #[serde(with = "crate::model::rfc3339")]
    pub expires_at: Timestamp,
    /// Bulk traffic (a campaign's): its sends give way to other cascades' on rate-limited
    /// connections.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bulk: bool,
    /// The contact's addresses on channels that receive replies but that no step sends to
    /// (a policy of WhatsApp then SMS, for a contact who also has Viber): a reply there
    /// stops the chain too (rule 7).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_addresses: Vec<ChannelAddress>,
}

/// A contact's address on one channel.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ChannelAddress {
    /// The channel.
    pub channel: ChannelName,
    /// The address on it.
    pub address: String,
}

impl Plan {
    /// The step indices in the order they run.
    pub fn order(&self) -> impl Iterator<Item = u16> + '_ {
        self.first.into_iter().chain((0..self.steps.len() as u16).filter(move |i| Some(*i) != self.first))
    }

    /// The step index at position `pos` of the running order.
    pub fn step_at(&self, pos: u16) -> Option<u16> {
        self.order().nth(pos as usize)
    }

    /// Every (channel, address) a reply may come from: the steps' addresses and
    /// [`other_addresses`](Plan::other_addresses), each once.
    pub fn reply_addresses(&self) -> Vec<(&ChannelName, &str)> {
        let mut out: Vec<(&ChannelName, &str)> = self
            .steps
            .iter()
            .filter_map(|s| Some((&s.channel, s.address.as_ref()?.value.as_str())))
            .chain(self.other_addresses.iter().map(|a| (&a.channel, a.address.as_str())))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The step and original URL of tracked link number `number` (see [`PlannedStep::links`]).
    pub(crate) fn link(&self, number: u32) -> Option<(u16, &str)> {
        let mut n = usize::try_from(number).ok()?;
        for (i, step) in self.steps.iter().enumerate() {
            match step.links.get(n) {
                Some(url) => return Some((u16::try_from(i).ok()?, url)),
                None => n -= step.links.len(),
            }
        }
        None
    }
}

/// Validates a request and builds its plan, or returns every problem found.
pub fn build(input: &PlanInput<'_>, channels: &dyn ChannelDirectory) -> Result<Plan, Vec<ValidationError>> {
    let PlanInput { contact, message, policy, .. } = input;
    let mut errors = Vec::new();

    if let Some(phone) = &contact.phone
        && !is_e164(phone)
    {
        errors.push(ValidationError::new(
            "contact.phone",
            format!("`{phone}` is not an E.164 phone number (write it as +<country code><number>, e.g. +15551234567)"),
        ));
    }
    let tracking = if policy.track_links { input.link_tracking } else { None };
    policy_rules(policy, input.link_tracking.is_some(), "policy.", &mut errors);
    let mut next_link: u32 = 0;
    for ch in message.overrides.keys() {
        if !policy.steps.iter().any(|s| &s.channel == ch) {
            errors.push(ValidationError::new(
                format!("message.overrides.{ch}"),
                format!("override for channel `{ch}`, which no step of the policy uses"),
            ));
        }
    }

    let ctx = template::Vars::new(contact, input.variables);
    let base =
        render_content(&ContentOverride::default(), message, &ctx, &mut errors, |part| format!("message.{part}"));
    let base = Arc::new(base);
    let mut rendered: BTreeMap<Option<String>, Arc<Content>> = BTreeMap::new();

    let mut steps = Vec::with_capacity(policy.steps.len());
    for (i, step) in policy.steps.iter().enumerate() {
        let at = |f: &str| format!("policy.steps[{i}].{f}");
        let Some((caps, until)) = step_rules(policy, i, channels, "policy.", &mut errors) else { continue };

        // Content: the step's override over the message's channel override over the message.
        let errors_before = errors.len();
        let channel_over = message.overrides.get(&step.channel);
        let content = match (channel_over, &step.content) {
            (None, None) => base.clone(),
            (ch, st) => {
                let layered = match (ch, st) {
                    (Some(c), Some(s)) => c.layered(s),
                    (Some(c), None) => c.clone(),
                    (None, Some(s)) => s.clone(),
                    (None, None) => unreachable!(),
                };
                let key = serde_json::to_string(&layered).ok();
                if let Some(found) = rendered.get(&key) {
                    found.clone()
                } else {
                    let content = Arc::new(render_content(&layered, message, &ctx, &mut errors, |part| {
                        // Name the most specific place the failing part came from.
                        if step_sets(st.as_ref(), part) {
                            format!("policy.steps[{i}].content.{part}")
                        } else if step_sets(ch, part) {
                            format!("message.overrides.{}.{part}", step.channel)
                        } else {
                            format!("message.{part}")
                        }
                    }));
                    rendered.insert(key, content.clone());
                    content
                }
            }
        };

        // Tracked links: each step gets its own tokens, so a click names the step it came from.
        let (content, links) = match tracking {
            Some(t) => {
                let mut rewriter = Rewriter::new(t, input.cascade, next_link);
                let content = rewriter.content(&content).map_or(content, Arc::new);
                let links = rewriter.into_links();
                next_link = next_link.saturating_add(u32::try_from(links.len()).unwrap_or(u32::MAX));
                if until == Status::Clicked && links.is_empty() && errors.len() == errors_before {
                    errors.push(ValidationError::new(
                        at("until"),
                        "waits for `clicked`, but this step's content has no http(s) link to track",
                    ));
                }
                (content, links)
            }
            None => (content, Vec::new()),
        };

        let text_source = step
            .content
            .as_ref()
            .and_then(|c| c.text.as_deref())
            .or_else(|| channel_over.and_then(|c| c.text.as_deref()))
            .unwrap_or(&message.text);
        if text_source.trim().is_empty() && content.attachment.is_none() && content.template.is_none() {
            errors.push(ValidationError::new(
                "message.text",
                format!("nothing to send on `{}`: the text is empty and there is no file or template", step.channel),
            ));
        }
        if let Some(file) = &content.attachment
            && file.size > input.max_file_size
        {
            errors.push(ValidationError::new(
                "message.attachment.size",
                format!("the file is {} bytes, over the limit of {} bytes", file.size, input.max_file_size),
            ));
        }

        let address = contact.address_for(&step.channel, &caps.address_kinds);
        let skip = if address.is_none() {
            Some(SkipReason::NoAddress)
        } else if let Some(file) = &content.attachment {
            match caps.max_file_size.get(file.kind()) {
                None => Some(SkipReason::MediaUnsupported { media: file.kind().as_str().into() }),
                Some(limit) if file.size > limit => Some(SkipReason::FileTooLarge { size: file.size, limit }),
                Some(_) => None,
            }
        } else {
            None
        };
        let subset: Option<Arc<[ConnectionId]>> = step.connections.as_ref().map(|c| c.clone().into());
        let sticky = address.as_ref().and_then(|addr| {
            input
                .conversations
                .iter()
                .filter(|c| c.channel == step.channel && c.address == addr.value)
                .filter(|c| subset.as_ref().is_none_or(|s| s.contains(&c.connection)))
                .max_by_key(|c| c.last_activity())
                .map(|c| c.connection.clone())
        });
        let window = caps.conversation_window.and_then(|w| {
            let addr = address.as_ref()?;
            let w = chrono::Duration::from_std(w).ok()?;
            input
                .conversations
                .iter()
                .filter(|c| c.channel == step.channel && c.address == addr.value)
                .filter(|c| subset.as_ref().is_none_or(|s| s.contains(&c.connection)))
                .filter_map(|c| Some(OpenWindow { connection: c.connection.clone(), until: c.last_inbound_at? + w }))
                .filter(|o| o.until > input.now)
                .max_by_key(|o| o.until)
        });
        steps.push(PlannedStep {
            channel: step.channel.clone(),
            until,
            timeout: step.timeout_or_default(),
            address: if skip.is_some() { None } else { address },
            content,
            links,
            skip,
            connections: subset,
            sticky,
            window,
        });
    }

    if errors.is_empty() && steps.iter().all(|s| s.skip.is_some()) {
        let channels = steps.iter().map(|s| s.channel.to_string()).collect::<Vec<_>>().join(", ");
        if steps.iter().all(|s| s.skip == Some(SkipReason::NoAddress)) {
            errors.push(ValidationError::new(
                "contact",
                format!("the contact has no address for any step's channel ({channels})"),
            ));
        } else {
            let reasons = steps
                .iter()
                .map(|s| format!("{}: {}", s.channel, s.skip.as_ref().map(ToString::to_string).unwrap_or_default()));
            errors.push(ValidationError::new(
                "message.attachment",
                format!("no step can carry this message ({})", reasons.collect::<Vec<_>>().join("; ")),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    // Existing chat first: the most recent active conversation on one of the policy's channels.
    let first = if policy.existing_chat_first {
        steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.skip.is_none())
            .filter_map(|(i, s)| {
                let window = channels.capabilities(&s.channel)?.conversation_window?;
                let addr = s.address.as_ref()?;
                input
                    .conversations
                    .iter()
                    .filter(|c| c.channel == s.channel && c.address == addr.value)
                    .filter(|c| s.connections.as_ref().is_none_or(|sub| sub.contains(&c.connection)))
                    .filter_map(|c| c.last_inbound_at)
                    .filter(|t| input.now.signed_duration_since(*t).to_std().is_ok_and(|age| age <= window))
                    .max()
                    .map(|t| (t, i))
            })
            .max_by_key(|(t, _)| *t)
            .map(|(_, i)| i as u16)
    } else {
        None
    };
    // The sticky connection of the existing chat is the one with the latest inbound message.
    if let Some(i) = first {
        let s = &mut steps[i as usize];
        if let Some(addr) = &s.address {
            s.sticky = input
                .conversations
                .iter()
                .filter(|c| c.channel == s.channel && c.address == addr.value && c.last_inbound_at.is_some())
                .filter(|c| s.connections.as_ref().is_none_or(|sub| sub.contains(&c.connection)))
                .max_by_key(|c| c.last_inbound_at)
                .map(|c| c.connection.clone())
                .or(s.sticky.take());
        }
    }

    let ttl = chrono::Duration::from_std(policy.ttl()).unwrap_or(chrono::Duration::MAX);
    Ok(Plan {
        steps,
        first,
        late_success_wins: policy.late_success_wins,
        retry: policy.retry.clone(),
        expires_at: input.now.checked_add_signed(ttl).unwrap_or(Timestamp::MAX_UTC),
        bulk: false,
        other_addresses: Vec::new(),
    })
}

/// Checks a policy on its own, before any request uses it: it has steps, every step's
/// channel is served by a connection, every `until` is a status the channel can report (and
/// `clicked` only with `track_links`), no timeout is zero, every connection subset names
/// connections of its step's channel, and `track_links` only where the engine tracks links
/// (`link_tracking`). Errors name fields from the policy's root (`steps[1].channel`).
///
/// [`build`] applies the same rules to a request's policy (naming its fields under
/// `policy.`), with the rules that need the message and the contact.
///
/// ```
/// use cascade_engine::plan::{ChannelDirectory, check_policy};
/// use cascade_engine::{Capabilities, ChannelName, ConnectionId, Policy};
///
/// struct SmsOnly(Capabilities);
/// impl ChannelDirectory for SmsOnly {
///     fn capabilities(&self, channel: &ChannelName) -> Option<&Capabilities> {
///         (channel.as_str() == "sms").then_some(&self.0)
///     }
///     fn serves(&self, channel: &ChannelName, connection: &ConnectionId) -> bool {
///         channel.as_str() == "sms" && connection.as_str() == "twilio"
///     }
/// }
///
/// let sms = SmsOnly(Capabilities::text_only([cascade_engine::AddressKind::Phone], cascade_engine::Status::Delivered));
/// assert!(check_policy(&Policy::chain(["sms"]), &sms, false).is_ok());
/// let errors = check_policy(&Policy::chain(["sms", "fax"]), &sms, false).unwrap_err();
/// assert_eq!(errors[0].field, "steps[1].channel");
/// ```
pub fn check_policy(
    policy: &Policy,
    channels: &dyn ChannelDirectory,
    link_tracking: bool,
) -> Result<(), Vec<ValidationError>> {
    let mut errors = Vec::new();
    policy_rules(policy, link_tracking, "", &mut errors);
    for i in 0..policy.steps.len() {
        step_rules(policy, i, channels, "", &mut errors);
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// The rules of a policy as a whole; fields are named under `prefix`.
fn policy_rules(policy: &Policy, link_tracking: bool, prefix: &str, errors: &mut Vec<ValidationError>) {
    if policy.steps.is_empty() {
        errors.push(ValidationError::new(format!("{prefix}steps"), "a policy needs at least one step"));
    }
    if policy.steps.len() > u16::MAX as usize {
        errors.push(ValidationError::new(format!("{prefix}steps"), "too many steps"));
    }
    if policy.track_links && !link_tracking {
        errors.push(ValidationError::new(
            format!("{prefix}track_links"),
            "link tracking is not configured on this server (it needs a public base URL for the short links and \
             a secret key); turn `track_links` off or configure link tracking",
        ));
    }
}

/// The rules of step `i` that need no message: its channel, `until`, timeout and connection
/// subset; fields are named under `prefix`. Returns the channel's capabilities and the
/// step's success status, or `None` when no connection serves the channel.
fn step_rules<'a>(
    policy: &Policy,
    i: usize,
    channels: &'a dyn ChannelDirectory,
    prefix: &str,
    errors: &mut Vec<ValidationError>,
) -> Option<(&'a Capabilities, Status)> {
    let step = &policy.steps[i];
    let at = |f: &str| format!("{prefix}steps[{i}].{f}");
    let Some(caps) = channels.capabilities(&step.channel) else {
        errors.push(ValidationError::new(at("channel"), format!("no connection serves channel `{}`", step.channel)));
        return None;
    };
    let until = step.until.unwrap_or_else(|| caps.default_until());
    if until == Status::Failed {
        errors.push(ValidationError::new(at("until"), "`failed` cannot be a step's goal"));
    } else if until == Status::Clicked && !policy.track_links {
        errors
            .push(ValidationError::new(at("until"), "waiting for `clicked` needs `track_links = true` on the policy"));
    } else if !caps.can_report(until) {
        errors.push(ValidationError::new(
            at("until"),
            format!(
                "channel `{}` never reports `{until}` (the highest status it reports is `{}`{})",
                step.channel,
                caps.highest_status,
                if caps.inbound { ", plus `replied`" } else { "" }
            ),
        ));
    }
    if step.timeout.is_some_and(|t| t.is_zero()) {
        errors.push(ValidationError::new(at("timeout"), "must be longer than zero"));
    }
    if let Some(subset) = &step.connections {
        if subset.is_empty() {
            errors.push(ValidationError::new(at("connections"), "an empty list allows no connection"));
        }
        for (j, c) in subset.iter().enumerate() {
            if !channels.serves(&step.channel, c) {
                errors.push(ValidationError::new(
                    format!("{prefix}steps[{i}].connections[{j}]"),
                    format!("`{c}` is not a connection of channel `{}`", step.channel),
                ));
            }
        }
    }
    Some((caps, until))
}

fn step_sets(over: Option<&ContentOverride>, part: &str) -> bool {
    let Some(o) = over else { return false };
    match part {
        "text" => o.text.is_some(),
        "subject" => o.subject.is_some(),
        "html" => o.html.is_some(),
        p if p.starts_with("buttons") => !o.buttons.is_empty(),
        p if p.starts_with("template") => o.template.is_some(),
        _ => false,
    }
}

fn render_content(
    over: &ContentOverride,
    message: &Message,
    ctx: &template::Vars<'_>,
    errors: &mut Vec<ValidationError>,
    field: impl Fn(&str) -> String,
) -> Content {
    let mut render = |src: &str, part: &str| match template::render_vars(src, ctx) {
        Ok(s) => s,
        Err(e) => {
            let f = field(part);
            if !errors.iter().any(|x| x.field == f) {
                errors.push(ValidationError::new(f, e.message));
            }
            String::new()
        }
    };
    let text = render(over.text.as_deref().unwrap_or(&message.text), "text");
    let subject = over.subject.as_deref().map(|s| render(s, "subject"));
    let html = over.html.as_deref().map(|s| render(s, "html"));
    let buttons = over
        .buttons
        .iter()
        .enumerate()
        .map(|(j, b)| crate::model::Button {
            caption: render(&b.caption, &format!("buttons[{j}].caption")),
            url: render(&b.url, &format!("buttons[{j}].url")),
        })
        .collect();
    let template = over.template.as_ref().map(|t| crate::model::ProviderTemplate {
        name: t.name.clone(),
        language: t.language.clone(),
        params: t.params.iter().enumerate().map(|(j, p)| render(p, &format!("template.params[{j}]"))).collect(),
    });
    let attachment =
        if over.drop_attachment { None } else { over.attachment.clone().or_else(|| message.attachment.clone()) };
    Content { text, subject, html, attachment, buttons, template }
}
