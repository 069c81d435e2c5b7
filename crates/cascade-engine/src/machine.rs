//! The cascade state machine: `(state, input, now) → (state', events, actions)`.
//!
//! Pure: no I/O and no clock reads. Connection choice is asked of a [`Picker`] the caller
//! passes in (the runtime's pools; a fixed script in tests). The runtime persists the state
//! after every transition, then carries out the actions.
//!
//! The rules (DESIGN §3) it implements:
//! - steps run in plan order, one at a time; skipped steps record why;
//! - `unreachable`/`rejected` errors go to the next step at once; `connection` errors retry at
//!   once on another connection; `transient` errors retry with backoff inside the step's window;
//! - after acceptance the step waits for its `until` status until its timeout; a `failed`
//!   status or the timeout moves on;
//! - statuses merge monotonically and are recorded even when late; a late success of an
//!   earlier attempt wins if the policy says so; a reply stops the chain;
//! - cancel and the overall TTL end it; there is exactly one outcome, and nothing is sent after
//!   it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::channel::{Accepted, StatusUpdate};
use crate::model::{
    Attempt, AttemptState, CascadeId, ChannelName, ConnectionId, Cost, ErrorClass, Event, EventKind, Outcome,
    SendError, SkipReason, Status, StatusRecord, StepFailure, Timestamp,
};
use crate::plan::Plan;

/// Where the cascade is.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Created, not started.
    Pending,
    /// A send is in flight.
    Sending {
        /// The attempt being sent.
        attempt: u32,
    },
    /// Accepted; waiting for the step's `until` status.
    Waiting {
        /// The attempt waited on.
        attempt: u32,
        /// When the wait ends.
        #[serde(with = "crate::model::rfc3339")]
        deadline: Timestamp,
    },
    /// A transient error; the step sends again at `at`.
    RetryAt {
        /// When.
        #[serde(with = "crate::model::rfc3339")]
        at: Timestamp,
        /// The connection that failed, to avoid on the retry if another is usable.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        avoid: Option<ConnectionId>,
    },
    /// Ended; `outcome` is set.
    Finished,
}

/// Everything the engine knows about one cascade's progress.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct CascadeState {
    /// The cascade.
    pub id: CascadeId,
    /// When it was created.
    #[serde(with = "crate::model::rfc3339")]
    pub created_at: Timestamp,
    /// The validated plan. It never changes after creation, so copies of the state share it.
    pub plan: Arc<Plan>,
    /// Where it is.
    pub phase: Phase,
    /// Position in the plan's running order.
    pub cursor: u16,
    /// When the current step started (its retry window counts from here).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::model::rfc3339::option")]
    pub step_started_at: Option<Timestamp>,
    /// Connections that failed with `connection` errors in the current step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<ConnectionId>,
    /// Every send made.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// Why each finished step did not deliver.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<StepFailure>,
    /// The outcome, once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// When the outcome was reached.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::model::rfc3339::option")]
    pub finished_at: Option<Timestamp>,
}

/// What can happen to a cascade.
#[derive(Clone, PartialEq, Debug)]
pub enum Input {
    /// Begin.
    Start,
    /// An adapter answered a send.
    SendResult {
        /// The attempt.
        attempt: u32,
        /// The answer.
        result: Result<Accepted, SendError>,
    },
    /// The process that made the send stopped before recording its result.
    SendLost {
        /// The attempt.
        attempt: u32,
    },
    /// A status for an attempt.
    Status {
        /// The attempt it was matched to.
        attempt: u32,
        /// The status.
        update: StatusUpdate,
    },
    /// The contact wrote to us on `channel`.
    Reply {
        /// The channel.
        channel: ChannelName,
    },
    /// The caller cancelled.
    Cancel,
    /// Time passed: act on whatever deadline is due.
    Tick,
}

/// What the runtime must do after a transition.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Action {
    /// Send this attempt (its step, address, content and connection are in the state).
    Send {
        /// The attempt number.
        attempt: u32,
    },
    /// The cascade ended with this outcome (emitted exactly once).
    Finished,
}

/// The result of one transition.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct Transition {
    /// New timeline entries.
    pub events: Vec<Event>,
    /// Work for the runtime.
    pub actions: Vec<Action>,
}

/// A connection choice request.
#[derive(Clone, Copy, Debug)]
pub struct PickRequest<'a> {
    /// The channel.
    pub channel: &'a ChannelName,
    /// Only these, if set.
    pub subset: Option<&'a [ConnectionId]>,
    /// Prefer this one (sticky sender) if it is usable.
    pub preferred: Option<&'a ConnectionId>,
    /// Never these (they failed with `connection` errors in this step).
    pub excluded: &'a [ConnectionId],
    /// Rather not this one (it just failed transiently), if another is usable.
    pub avoid: Option<&'a ConnectionId>,
}

/// Chooses connections for sends.
pub trait Picker {
    /// A usable connection and its price per message, or `None` if none is.
    fn pick(&mut self, request: PickRequest<'_>) -> Option<(ConnectionId, Cost)>;
}

impl<F: FnMut(PickRequest<'_>) -> Option<(ConnectionId, Cost)>> Picker for F {
    fn pick(&mut self, request: PickRequest<'_>) -> Option<(ConnectionId, Cost)> {
        self(request)
    }
}

impl CascadeState {
    /// A new cascade in `Pending`.
    pub fn new(id: CascadeId, plan: Plan, now: Timestamp) -> Self {
        Self {
            id,
            created_at: now,
            plan: Arc::new(plan),
            phase: Phase::Pending,
            cursor: 0,
            step_started_at: None,
            excluded: Vec::new(),
            attempts: Vec::new(),
            failures: Vec::new(),
            outcome: None,
            finished_at: None,
        }
    }

    /// Whether the cascade has its outcome.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// The next moment a [`Input::Tick`] has something to do, if any.
    pub fn wake_at(&self) -> Option<Timestamp> {
        let exp = self.plan.expires_at;
        match &self.phase {
            Phase::Pending => Some(self.created_at),
            Phase::Sending { .. } => Some(exp),
            Phase::Waiting { deadline, .. } => Some((*deadline).min(exp)),
            Phase::RetryAt { at, .. } => Some((*at).min(exp)),
            Phase::Finished => None,
        }
    }

    /// An attempt by number.
    pub fn attempt(&self, number: u32) -> Option<&Attempt> {
        number.checked_sub(1).and_then(|i| self.attempts.get(i as usize))
    }

    fn attempt_mut(&mut self, number: u32) -> Option<&mut Attempt> {
        number.checked_sub(1).and_then(|i| self.attempts.get_mut(i as usize))
    }

    /// The total cost of every attempt.
    pub fn cost(&self) -> Cost {
        self.attempts.iter().map(|a| a.cost).sum()
    }

    /// The attempt currently sending or waiting, if any.
    pub fn current_attempt(&self) -> Option<u32> {
        match self.phase {
            Phase::Sending { attempt } | Phase::Waiting { attempt, .. } => Some(attempt),
            _ => None,
        }
    }

    /// Applies one input.
    pub fn apply(&mut self, input: Input, now: Timestamp, picker: &mut dyn Picker) -> Transition {
        let mut t = Transition::default();
        let mut m = Step { s: self, t: &mut t, now, picker };
        match input {
            Input::Start => m.start(),
            Input::SendResult { attempt, result } => m.send_result(attempt, result),
            Input::SendLost { attempt } => m.send_lost(attempt),
            Input::Status { attempt, update } => m.status(attempt, update),
            Input::Reply { channel } => m.reply(channel),
            Input::Cancel => {
                if !m.s.is_finished() {
                    m.finish(Outcome::Cancelled);
                }
            }
            Input::Tick => m.tick(),
        }
        t
    }
}

struct Step<'a> {
    s: &'a mut CascadeState,
    t: &'a mut Transition,
    now: Timestamp,
    picker: &'a mut dyn Picker,
}

impl Step<'_> {
    fn event(&mut self, kind: EventKind) {
        self.t.events.push(Event { at: self.now, kind });
    }

    fn start(&mut self) {
        if self.s.phase != Phase::Pending {
            return;
        }
        self.event(EventKind::Created);
        if let Some(first) = self.s.plan.first {
            let step = &self.s.plan.steps[first as usize];
            let kind = EventKind::ExistingChatFirst {
                step: first,
                channel: step.channel.clone(),
                connection: step.sticky.clone(),
            };
            self.event(kind);
        }
        self.begin_step(None);
    }

    /// Starts the step at the cursor (skipping what must be skipped), or ends as failed.
    fn begin_step(&mut self, avoid: Option<ConnectionId>) {
        loop {
            if self.now >= self.s.plan.expires_at {
                return self.finish(Outcome::Expired);
            }
            let Some(idx) = self.s.plan.step_at(self.s.cursor) else {
                let steps = self.s.failures.clone();
                return self.finish(Outcome::Failed { steps });
            };
            let step = &self.s.plan.steps[idx as usize];
            if let Some(reason) = step.skip.clone() {
                let channel = step.channel.clone();
                self.event(EventKind::StepSkipped { step: idx, channel: channel.clone(), reason: reason.clone() });
                self.s.failures.push(StepFailure {
                    step: idx,
                    channel,
                    class: None,
                    reason: format!("skipped: {reason}"),
                });
                self.s.cursor += 1;
                continue;
            }
            self.s.step_started_at = Some(self.now);
            self.s.excluded.clear();
            return self.send(idx, avoid);
        }
    }

    /// Makes a send on step `idx`, or fails the step if no connection can take it.
    fn send(&mut self, idx: u16, avoid: Option<ConnectionId>) {
        let step = &self.s.plan.steps[idx as usize];
        let picked = self.picker.pick(PickRequest {
            channel: &step.channel,
            subset: step.connections.as_deref(),
            preferred: step.sticky.as_ref(),
            excluded: &self.s.excluded,
            avoid: avoid.as_ref(),
        });
        let Some((connection, price)) = picked else {
            let channel = step.channel.clone();
            let reason = SkipReason::NoConnection;
            self.event(EventKind::StepSkipped { step: idx, channel: channel.clone(), reason: reason.clone() });
            return self.fail_step(idx, Some(ErrorClass::Connection), reason.to_string());
        };
        let number = self.s.attempts.len() as u32 + 1;
        let channel = step.channel.clone();
        // Cascades are many and small: grow their lists one element at a time.
        self.s.attempts.reserve_exact(1);
        self.s.attempts.push(Attempt {
            number,
            step: idx,
            channel: channel.clone(),
            connection: Some(connection.clone()),
            state: AttemptState::Sending,
            provider_message_id: None,
            highest: None,
            statuses: Vec::new(),
            error: None,
            cost: price,
            started_at: self.now,
        });
        self.s.phase = Phase::Sending { attempt: number };
        self.event(EventKind::SendStarted { attempt: number, step: idx, channel, connection: Some(connection) });
        self.t.actions.push(Action::Send { attempt: number });
    }

    fn sends_in_step(&self, idx: u16) -> u32 {
        // A step runs once per cascade, so every attempt of it belongs to this run.
        self.s.attempts.iter().filter(|a| a.step == idx).count() as u32
    }

    fn fail_step(&mut self, idx: u16, class: Option<ErrorClass>, reason: String) {
        let channel = self.s.plan.steps[idx as usize].channel.clone();
        let failure = StepFailure { step: idx, channel, class, reason };
        self.s.failures.reserve_exact(1);
        self.s.failures.push(failure.clone());
        self.event(EventKind::StepFailed { failure });
        self.s.cursor += 1;
        self.begin_step(None);
    }

    fn finish(&mut self, outcome: Outcome) {
        if self.s.is_finished() {
            return;
        }
        self.s.phase = Phase::Finished;
        self.s.outcome = Some(outcome.clone());
        self.s.finished_at = Some(self.now);
        let cost = self.s.cost();
        self.event(EventKind::Finished { outcome, cost });
        self.t.actions.push(Action::Finished);
    }

    fn deliver(&mut self, number: u32, status: Status) {
        let Some(a) = self.s.attempt(number) else { return };
        let outcome = Outcome::Delivered {
            step: a.step,
            attempt: number,
            channel: a.channel.clone(),
            connection: a.connection.clone(),
            status,
        };
        self.finish(outcome);
    }

    fn send_result(&mut self, number: u32, result: Result<Accepted, SendError>) {
        let is_current = self.s.phase == Phase::Sending { attempt: number };
        let Some(a) = self.s.attempt_mut(number) else { return };
        if a.state == AttemptState::Accepted {
            // A status proved acceptance before the answer arrived: keep the answer's cost.
            if let Ok(acc) = result {
                a.cost = acc.cost.unwrap_or(a.cost);
            }
            return;
        }
        if a.state != AttemptState::Sending && a.state != AttemptState::Unknown {
            return; // a duplicate answer: the first one counts
        }
        let step = a.step;
        match result {
            Ok(acc) => {
                a.state = AttemptState::Accepted;
                a.provider_message_id = Some(acc.provider_message_id.clone());
                a.cost = acc.cost.unwrap_or(a.cost);
                let cost = a.cost;
                self.event(EventKind::Accepted { attempt: number, provider_message_id: acc.provider_message_id, cost });
                self.record_status(number, Status::Accepted, None, None, false);
                if let Some(st) = acc.status.filter(|s| *s != Status::Accepted) {
                    self.record_status(number, st, None, None, false);
                }
                if is_current && !self.s.is_finished() {
                    let timeout = self.s.plan.steps[step as usize].timeout;
                    let deadline = self.now + chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
                    self.s.phase = Phase::Waiting { attempt: number, deadline };
                    self.check_success(number);
                }
            }
            Err(err) => {
                a.state = AttemptState::Failed;
                a.error = Some(Box::new(err.clone()));
                a.cost = Cost::ZERO;
                let connection = a.connection.clone();
                if !is_current || self.s.is_finished() {
                    self.event(EventKind::SendFailed { attempt: number, error: Box::new(err), retry_at: None });
                    return;
                }
                self.on_send_error(step, number, connection, err);
            }
        }
    }

    fn on_send_error(&mut self, idx: u16, number: u32, connection: Option<ConnectionId>, err: SendError) {
        let sends = self.sends_in_step(idx);
        let max = self.s.plan.retry.max_sends_per_step.max(1);
        match err.class {
            ErrorClass::Unreachable | ErrorClass::Rejected => {
                let reason = format!("{}: {} ({})", err.class, err.detail, err.code);
                self.event(EventKind::SendFailed { attempt: number, error: Box::new(err.clone()), retry_at: None });
                self.fail_step(idx, Some(err.class), reason);
            }
            ErrorClass::Connection => {
                self.event(EventKind::SendFailed { attempt: number, error: Box::new(err.clone()), retry_at: None });
                if let Some(c) = connection {
                    self.s.excluded.push(c);
                }
                if sends >= max {
                    let reason = format!("connection errors on every try ({}: {})", err.code, err.detail);
                    return self.fail_step(idx, Some(ErrorClass::Connection), reason);
                }
                self.send_again(idx, None);
            }
            ErrorClass::Transient => {
                let backoff = self.s.plan.retry.backoff(sends, err.retry_after);
                let at = self.now + chrono::Duration::from_std(backoff).unwrap_or(chrono::Duration::MAX);
                let window_end = self.window_end(idx);
                if sends >= max || at >= window_end {
                    self.event(EventKind::SendFailed { attempt: number, error: Box::new(err.clone()), retry_at: None });
                    let reason =
                        format!("transient errors persisted after {sends} send(s) ({}: {})", err.code, err.detail);
                    return self.fail_step(idx, Some(ErrorClass::Transient), reason);
                }
                self.event(EventKind::SendFailed { attempt: number, error: Box::new(err), retry_at: Some(at) });
                self.s.phase = Phase::RetryAt { at, avoid: connection };
            }
        }
    }

    fn send_again(&mut self, idx: u16, avoid: Option<ConnectionId>) {
        if self.now >= self.s.plan.expires_at {
            return self.finish(Outcome::Expired);
        }
        self.send(idx, avoid);
    }

    /// The end of step `idx`'s retry window.
    fn window_end(&self, idx: u16) -> Timestamp {
        let timeout = self.s.plan.steps[idx as usize].timeout;
        self.s.step_started_at.unwrap_or(self.now)
            + chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX)
    }

    fn send_lost(&mut self, number: u32) {
        let Some(a) = self.s.attempt_mut(number) else { return };
        if a.state != AttemptState::Sending {
            return;
        }
        a.state = AttemptState::Unknown;
        let idx = a.step;
        self.event(EventKind::SendUnknown { attempt: number });
        if self.s.phase == (Phase::Sending { attempt: number }) {
            // The documented rule: wait for a status until the step's deadline, then go on.
            let deadline = self.window_end(idx);
            self.s.phase = Phase::Waiting { attempt: number, deadline };
            if self.now >= deadline {
                self.timeout_step(number);
            }
        }
    }

    fn record_status(
        &mut self,
        number: u32,
        status: Status,
        provider_at: Option<Timestamp>,
        error: Option<SendError>,
        emit: bool,
    ) {
        let now = self.now;
        let Some(a) = self.s.attempt_mut(number) else { return };
        a.statuses.reserve_exact(1);
        a.statuses.push(StatusRecord { status, at: now, provider_at });
        a.highest = Status::max_progress(a.highest, status);
        if emit {
            self.event(EventKind::Status { attempt: number, status, provider_at, error: error.map(Box::new) });
        }
    }

    fn status(&mut self, number: u32, update: StatusUpdate) {
        let Some(a) = self.s.attempt(number) else { return };
        let reached_before = a.highest.is_some_and(|h| h.reaches(self.s.plan.steps[a.step as usize].until));
        if a.state == AttemptState::Sending || a.state == AttemptState::Unknown {
            // The status proves the provider took it, even if its answer is not in yet.
            let timeout = self.s.plan.steps[a.step as usize].timeout;
            if let Some(a) = self.s.attempt_mut(number) {
                a.state = AttemptState::Accepted;
                a.provider_message_id.get_or_insert_with(|| update.provider_message_id.clone());
                a.statuses.push(StatusRecord { status: Status::Accepted, at: self.now, provider_at: None });
                a.highest = Status::max_progress(a.highest, Status::Accepted);
            }
            if self.s.phase == (Phase::Sending { attempt: number }) {
                let deadline = self.now + chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
                self.s.phase = Phase::Waiting { attempt: number, deadline };
            }
        }
        let status = update.status;
        self.record_status(number, status, update.at, update.error.clone(), true);
        if self.s.is_finished() {
            return;
        }
        let is_current = self.s.current_attempt() == Some(number);
        if status == Status::Failed {
            if reached_before {
                return; // already delivered; a later failure does not undo it
            }
            let Some(a) = self.s.attempt_mut(number) else { return };
            a.state = AttemptState::Failed;
            let err = update
                .error
                .unwrap_or_else(|| SendError::unreachable("failed", "the provider reported the message as failed"));
            a.error = Some(Box::new(err.clone()));
            let idx = a.step;
            if is_current && matches!(self.s.phase, Phase::Waiting { .. }) {
                let reason = format!("failed status: {} ({})", err.detail, err.code);
                self.fail_step(idx, Some(err.class), reason);
            }
            return;
        }
        if is_current {
            self.check_success(number);
        } else if self.s.plan.late_success_wins {
            let Some(a) = self.s.attempt(number) else { return };
            let until = self.s.plan.steps[a.step as usize].until;
            if let Some(h) = a.highest.filter(|h| h.reaches(until)) {
                self.deliver(number, h);
            }
        }
    }

    /// Ends as delivered if the waited-on attempt reached its step's `until`.
    fn check_success(&mut self, number: u32) {
        if !matches!(self.s.phase, Phase::Waiting { attempt, .. } if attempt == number) {
            return;
        }
        let Some(a) = self.s.attempt(number) else { return };
        let until = self.s.plan.steps[a.step as usize].until;
        if let Some(h) = a.highest.filter(|h| h.reaches(until)) {
            self.deliver(number, h);
        }
    }

    fn reply(&mut self, channel: ChannelName) {
        self.event(EventKind::Replied { channel: channel.clone() });
        // Credit the reply to the latest accepted attempt on that channel, else the latest one.
        let target = self
            .s
            .attempts
            .iter()
            .rev()
            .find(|a| a.channel == channel && a.provider_message_id.is_some())
            .or_else(|| self.s.attempts.last())
            .map(|a| a.number);
        let Some(number) = target else { return };
        if self.s.attempt(number).is_some_and(|a| a.channel == channel) {
            self.record_status(number, Status::Replied, None, None, false);
        }
        if !self.s.is_finished() {
            self.deliver(number, Status::Replied);
        }
    }

    fn timeout_step(&mut self, number: u32) {
        let Some(a) = self.s.attempt(number) else { return };
        let idx = a.step;
        let step = &self.s.plan.steps[idx as usize];
        let reason = format!(
            "no `{}` within {} (highest status: {})",
            step.until,
            crate::model::duration::format(step.timeout),
            a.highest.map_or("none", Status::as_str)
        );
        self.fail_step(idx, None, reason);
    }

    fn tick(&mut self) {
        if self.s.is_finished() {
            return;
        }
        if self.now >= self.s.plan.expires_at {
            return self.finish(Outcome::Expired);
        }
        match self.s.phase.clone() {
            Phase::Pending => self.start(),
            Phase::RetryAt { at, avoid } if self.now >= at => {
                let Some(idx) = self.s.plan.step_at(self.s.cursor) else { return };
                self.send_again(idx, avoid);
            }
            Phase::Waiting { attempt, deadline } if self.now >= deadline => self.timeout_step(attempt),
            _ => {}
        }
    }
}
