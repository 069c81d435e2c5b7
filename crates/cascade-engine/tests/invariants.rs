//! Property tests of the state machine's invariants over arbitrary policies and arbitrary
//! interleavings of send results, statuses (duplicated, reordered, late), timeouts, replies,
//! cancels and lost sends. Every state and timeline they produce is also kept in the in-memory
//! store, which packs it, and must read back whole.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use cascade_engine::machine::{Action, CascadeState, Input, Phase, PickRequest};
use cascade_engine::pool::{Connection, HealthPolicy, Pools};
use cascade_engine::*;
use cascade_testkit::strategies::{self, CHANNELS, Op};
use cascade_testkit::{StubChannel, caps};
use common::*;
use proptest::prelude::*;

fn contact_for(reachable: [bool; 3]) -> Contact {
    let mut c = Contact::default();
    for (i, ch) in CHANNELS.iter().enumerate() {
        if reachable[i] {
            c = c.address(*ch, format!("addr-{ch}"));
        }
    }
    c
}

/// The cascade as the in-memory store keeps it, read back after every write.
struct Kept {
    rt: tokio::runtime::Runtime,
    store: MemoryStore,
    version: u64,
    events: Vec<Event>,
}

impl Kept {
    fn new(state: &CascadeState, contact: Contact) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let store = MemoryStore::new();
        let meta = store::CascadeMeta {
            contact,
            idempotency_key: Some(format!("key-{}", state.id)),
            fingerprint: "f".into(),
            callback_url: None,
            metadata: serde_json::json!({"deal": {"name": "Kitchen", "amount": 1200}}),
            owner: None,
            campaign: None,
        };
        let record =
            store::CascadeRecord { state: state.clone(), meta: Arc::new(meta), version: 1, wake_at: state.wake_at() };
        let created = rt.block_on(store.create(record.clone(), vec![])).expect("create");
        assert_eq!(created, store::Created::New);
        assert_eq!(rt.block_on(store.load(state.id)).expect("load"), Some(record));
        Self { rt, store, version: 1, events: Vec::new() }
    }

    fn save(&mut self, state: &CascadeState, events: Vec<Event>) {
        self.events.extend(events.iter().cloned());
        let update = store::CascadeUpdate {
            state: state.clone(),
            expected_version: self.version,
            wake_at: state.wake_at(),
            events,
            provider_refs: Vec::new(),
            outbox: None,
            recipient: None,
        };
        self.version = self.rt.block_on(self.store.save(&update)).expect("save");
        let back = self.rt.block_on(self.store.load(state.id)).expect("load").expect("kept");
        assert_eq!(&back.state, state, "the stored state reads back whole");
        assert_eq!(back.wake_at, state.wake_at());
        let timeline = self.rt.block_on(self.store.events(state.id)).expect("events");
        assert_eq!(timeline, self.events, "the stored timeline reads back whole");
    }
}

struct Run {
    pools: Pools,
    state: CascadeState,
    now: Timestamp,
    finished_actions: usize,
    sends_after_outcome: usize,
    last_status: Option<Input>,
    kept: Kept,
}

impl Run {
    fn apply(&mut self, input: Input) {
        let was_finished = self.state.is_finished();
        let now = self.now;
        let t = self.state.apply(input, now, &mut self.pools.picker(now));
        self.kept.save(&self.state, t.events.clone());
        for a in &t.actions {
            match a {
                Action::Finished => self.finished_actions += 1,
                Action::Send { .. } if was_finished => self.sends_after_outcome += 1,
                Action::Send { .. } => {}
            }
        }
        self.check();
    }

    fn sending(&self) -> Option<u32> {
        match self.state.phase {
            Phase::Sending { attempt } => Some(attempt),
            _ => None,
        }
    }

    fn check(&self) {
        let s = &self.state;
        // At most one channel in flight: only the newest attempt may be waiting for its send.
        let in_flight = s.attempts.iter().filter(|a| a.state == AttemptState::Sending).count();
        assert!(in_flight <= 1, "{in_flight} sends in flight at once");
        if let Some(a) = self.sending() {
            assert_eq!(a as usize, s.attempts.len(), "the send in flight is the newest attempt");
        }
        // Attempts follow the policy's (running) order.
        let order: Vec<u16> = s.plan.order().collect();
        let pos = |step: u16| order.iter().position(|x| *x == step).expect("step in order");
        assert!(
            s.attempts.windows(2).all(|w| pos(w[0].step) <= pos(w[1].step)),
            "attempts out of policy order: {:?}",
            s.attempts.iter().map(|a| a.step).collect::<Vec<_>>()
        );
        // Never a step the contact has no address for.
        for a in &s.attempts {
            assert!(s.plan.steps[a.step as usize].address.is_some(), "sent on a step without an address");
        }
        assert!(self.finished_actions <= 1, "more than one outcome");
        assert_eq!(self.sends_after_outcome, 0, "a send after the outcome");
        assert_eq!(s.is_finished(), s.outcome.is_some());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn cascade_invariants(policy in strategies::policy(), reachable in strategies::reachable(), ops in strategies::ops(40)) {
        let pools = common::pools();
        let contact = contact_for(reachable);
        let plan = plan_with(&pools, &contact, &Message::text("hi"), &policy, &[]);
        prop_assume!(plan.is_ok());
        let state = CascadeState::new(CascadeId::new(), plan.expect("checked"), t0());
        let kept = Kept::new(&state, contact);
        let mut run =
            Run { pools, state, now: t0(), finished_actions: 0, sends_after_outcome: 0, last_status: None, kept };
        run.apply(Input::Start);

        for op in ops {
            let n = run.state.attempts.len();
            match op {
                Op::Accept => if let Some(a) = run.sending() {
                    run.apply(Input::SendResult { attempt: a, result: Ok(Accepted::new(format!("p{a}"))) });
                },
                Op::Fail(class) => if let Some(a) = run.sending() {
                    run.apply(Input::SendResult { attempt: a, result: Err(SendError::new(class, "x", "scripted")) });
                },
                Op::Status(i, status) => if n > 0 {
                    let attempt = (i % n) as u32 + 1;
                    let update = StatusUpdate { provider_message_id: format!("p{attempt}"), status, at: None, error: None };
                    let input = Input::Status { attempt, update };
                    run.last_status = Some(input.clone());
                    run.apply(input);
                },
                Op::Duplicate => if let Some(s) = run.last_status.clone() { run.apply(s) },
                Op::Reply(i) => run.apply(Input::Reply { channel: CHANNELS[i].into() }),
                Op::Cancel => run.apply(Input::Cancel),
                Op::Advance(d) => {
                    run.now += chrono::Duration::from_std(d).expect("small");
                    run.apply(Input::Tick);
                }
                Op::Lost => if let Some(a) = run.sending() { run.apply(Input::SendLost { attempt: a }) },
            }
        }

        // Drive to the end: answer sends, let time pass. Every cascade ends, exactly once.
        for _ in 0..200 {
            if run.state.is_finished() { break; }
            if let Some(a) = run.sending() {
                run.apply(Input::SendResult { attempt: a, result: Ok(Accepted::new(format!("p{a}"))) });
            } else {
                run.now += chrono::Duration::seconds(150);
                run.apply(Input::Tick);
            }
        }
        prop_assert!(run.state.is_finished(), "the cascade never ended: {:?}", run.state.phase);
        prop_assert_eq!(run.finished_actions, 1);
    }

    #[test]
    fn round_robin_is_even_over_healthy_connections(k in 1usize..7, picks in 1usize..300) {
        let connections = (0..k)
            .map(|i| Connection::new(format!("sms-{i}"), StubChannel::new("sms", caps::sms())))
            .collect();
        let pools = Pools::new(connections, HealthPolicy::default()).expect("pools");
        let channel = ChannelName::new("sms");
        let mut counts: HashMap<ConnectionId, usize> = HashMap::new();
        for _ in 0..picks {
            let req = PickRequest { channel: &channel, subset: None, preferred: None, excluded: &[], avoid: None };
            let m = pools.pool(&channel).expect("pool").pick(&req, t0()).expect("a connection");
            *counts.entry(m.connection.id.clone()).or_default() += 1;
        }
        let max = counts.values().max().copied().unwrap_or(0);
        let min = if counts.len() < k { 0 } else { counts.values().min().copied().unwrap_or(0) };
        prop_assert!(max - min <= 1, "uneven: {counts:?}");
    }
}
