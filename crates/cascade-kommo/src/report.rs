//! The continue call's body and what its answer means.

use std::time::Duration;

use cascade_engine::Outcome;
use serde_json::{Value, json};

use crate::KommoError;

/// The most handlers Kommo runs from one continue call.
pub const MAX_HANDLERS: usize = 10;
/// The longest `value` of a `show` handler, in characters.
pub const MAX_SHOW_VALUE: usize = 80;
/// The most buttons one handler may show.
pub const MAX_BUTTONS: usize = 25;

/// What the bot is continued with: `{"data": {"status": "success" | "fail", "channel": …,
/// "cascade_id": …, "outcome": …}}`. The bot reads them as `{{json.status}}`,
/// `{{json.channel}}`, `{{json.cascade_id}}` and `{{json.outcome}}`.
///
/// ```
/// use cascade_kommo::ContinueReport;
/// let report = ContinueReport::new("0193…", true).channel("whatsapp");
/// assert_eq!(report.body()["data"]["status"], "success");
/// assert_eq!(report.body()["data"]["channel"], "whatsapp");
/// ```
#[derive(Clone, PartialEq, Debug)]
pub struct ContinueReport {
    /// The cascade's id.
    pub cascade_id: String,
    /// `success` when the message was delivered, else `fail`.
    pub success: bool,
    /// The channel that delivered (sent as `""` when none did).
    pub channel: Option<String>,
    /// The outcome: `delivered`, `failed`, `cancelled` or `expired`, when known.
    pub outcome: Option<String>,
    execute_handlers: Vec<Value>,
}

impl ContinueReport {
    /// A report without a channel, outcome or handlers.
    pub fn new(cascade_id: impl Into<String>, success: bool) -> Self {
        Self { cascade_id: cascade_id.into(), success, channel: None, outcome: None, execute_handlers: Vec::new() }
    }

    /// The report for a cascade's outcome: `success` and the channel when delivered.
    pub fn from_outcome(cascade_id: impl Into<String>, outcome: &Outcome) -> Self {
        let mut report = Self::new(cascade_id, outcome.is_delivered());
        if let Outcome::Delivered { channel, .. } = outcome {
            report.channel = Some(channel.to_string());
        }
        report.outcome = Some(outcome.state().to_owned());
        report
    }

    /// Sets the channel.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }

    /// Adds a handler for the bot to run before it goes on (`{"handler": "show", "params":
    /// {"type": "text", "value": "…"}}`, `goto`, …). Refused beyond Kommo's limits: at most
    /// [`MAX_HANDLERS`] handlers, a `show` value of at most [`MAX_SHOW_VALUE`] characters, at
    /// most [`MAX_BUTTONS`] buttons.
    pub fn handler(mut self, handler: Value) -> Result<Self, KommoError> {
        self.execute_handlers.push(handler);
        check_handlers(&self.execute_handlers)?;
        Ok(self)
    }

    /// The handlers added with [`handler`](Self::handler).
    pub fn handlers(&self) -> &[Value] {
        &self.execute_handlers
    }

    /// The JSON body of the continue call.
    pub fn body(&self) -> Value {
        let mut body = json!({"data": {
            "status": if self.success { "success" } else { "fail" },
            "channel": self.channel.as_deref().unwrap_or(""),
            "cascade_id": self.cascade_id,
        }});
        if let Some(outcome) = &self.outcome {
            body["data"]["outcome"] = json!(outcome);
        }
        if !self.execute_handlers.is_empty() {
            body["execute_handlers"] = Value::Array(self.execute_handlers.clone());
        }
        body
    }
}

/// Checks handlers against Kommo's documented limits; the error names the handler's field.
pub(crate) fn check_handlers(handlers: &[Value]) -> Result<(), KommoError> {
    if handlers.len() > MAX_HANDLERS {
        return Err(KommoError::invalid(
            "execute_handlers",
            format!("{} handlers: Kommo runs at most {MAX_HANDLERS}", handlers.len()),
        ));
    }
    for (i, handler) in handlers.iter().enumerate() {
        let field = |f: &str| format!("execute_handlers[{i}]{f}");
        let name = handler.get("handler").and_then(Value::as_str).filter(|h| !h.trim().is_empty());
        let Some(name) = name else {
            return Err(KommoError::invalid(field(".handler"), "must name the handler (show, goto, …)"));
        };
        let params = handler.get("params");
        if params.is_some_and(|p| !p.is_object()) {
            return Err(KommoError::invalid(field(".params"), "must be an object"));
        }
        if name == "show"
            && let Some(value) = params.and_then(|p| p.get("value")).and_then(Value::as_str)
            && value.chars().count() > MAX_SHOW_VALUE
        {
            return Err(KommoError::invalid(
                field(".params.value"),
                format!("{} characters: Kommo shows at most {MAX_SHOW_VALUE}", value.chars().count()),
            ));
        }
        if let Some(buttons) = params.and_then(|p| p.get("buttons")).and_then(Value::as_array)
            && buttons.len() > MAX_BUTTONS
        {
            return Err(KommoError::invalid(
                field(".params.buttons"),
                format!("{} buttons: Kommo shows at most {MAX_BUTTONS}", buttons.len()),
            ));
        }
    }
    Ok(())
}

/// What became of a continue call.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ContinueResult {
    /// Kommo took it (2xx): the bot goes on.
    Continued,
    /// Kommo answered 404: the bot no longer waits (it gave up, or the step was removed).
    /// Record it; calling again cannot help.
    BotGone,
    /// 408, 425, 429, 5xx or no answer: call again later, not before `retry_after` when
    /// Kommo gave one.
    Transient {
        /// Kommo's `Retry-After`.
        retry_after: Option<Duration>,
        /// What happened.
        detail: String,
    },
    /// Any other answer (400, 401, 403, …), or a call that must not be made (an unknown
    /// account, a foreign URL, handlers beyond the limits): calling again cannot help.
    Permanent {
        /// What happened.
        detail: String,
    },
}

impl ContinueResult {
    /// Whether the call should be made again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }
}

#[cfg(test)]
mod tests {
    use cascade_engine::{Status, StepFailure};

    use super::*;

    #[test]
    fn bodies() {
        let delivered = Outcome::Delivered {
            step: 1,
            attempt: 2,
            channel: "telegram".into(),
            connection: None,
            status: Status::Sent,
        };
        let body = ContinueReport::from_outcome("c-1", &delivered).body();
        assert_eq!(
            body,
            json!({"data": {"status": "success", "channel": "telegram", "cascade_id": "c-1", "outcome": "delivered"}})
        );
        let failed = Outcome::Failed { steps: Vec::<StepFailure>::new() };
        let body = ContinueReport::from_outcome("c-2", &failed).body();
        assert_eq!(body, json!({"data": {"status": "fail", "channel": "", "cascade_id": "c-2", "outcome": "failed"}}));
        let show = json!({"handler": "show", "params": {"type": "text", "value": "Delivered"}});
        let body = ContinueReport::new("c-3", true).handler(show.clone()).expect("ok").body();
        assert_eq!(body["execute_handlers"], json!([show]));
    }

    #[test]
    fn handler_limits() {
        let show = |value: &str| json!({"handler": "show", "params": {"type": "text", "value": value}});
        let field = |r: Result<ContinueReport, KommoError>| r.expect_err("refused").field().map(str::to_owned);
        assert!(ContinueReport::new("c", true).handler(show(&"x".repeat(80))).is_ok());
        assert_eq!(
            field(ContinueReport::new("c", true).handler(show(&"й".repeat(81)))).as_deref(),
            Some("execute_handlers[0].params.value")
        );
        let mut report = ContinueReport::new("c", true);
        for _ in 0..MAX_HANDLERS {
            report = report.handler(json!({"handler": "goto", "params": {"type": "question", "step": 1}})).expect("ok");
        }
        assert_eq!(field(report.handler(show("one too many"))).as_deref(), Some("execute_handlers"));
        let buttons: Vec<String> = (0..26).map(|i| format!("B{i}")).collect();
        let many = json!({"handler": "show", "params": {"type": "buttons", "value": "Pick", "buttons": buttons}});
        assert_eq!(
            field(ContinueReport::new("c", true).handler(many)).as_deref(),
            Some("execute_handlers[0].params.buttons")
        );
        assert_eq!(
            field(ContinueReport::new("c", true).handler(json!({"params": {}}))).as_deref(),
            Some("execute_handlers[0].handler")
        );
        assert!(ContinueResult::Transient { retry_after: None, detail: String::new() }.is_retryable());
        assert!(!ContinueResult::BotGone.is_retryable());
    }
}
