//! Shared set-up for the engine's tests.
#![allow(dead_code)]

use cascade_engine::machine::{Action, CascadeState, Input, Transition};
use cascade_engine::plan::{self, Plan, PlanInput};
use cascade_engine::pool::{Connection, HealthPolicy, Pools};
use cascade_engine::store::Conversation;
use cascade_engine::{Contact, Message, Policy, Timestamp, ValidationError};
use cascade_testkit::{StubChannel, caps};

/// Pools with two WhatsApp connections, one Telegram, one SMS (stubs).
pub fn pools() -> Pools {
    Pools::new(
        vec![
            Connection::new("wa-1", StubChannel::new("whatsapp", caps::whatsapp())),
            Connection::new("wa-2", StubChannel::new("whatsapp", caps::whatsapp())),
            Connection::new("tg-1", StubChannel::new("telegram", caps::telegram())),
            Connection::new("sms-1", StubChannel::new("sms", caps::sms()))
                .price(cascade_engine::Cost::from_micros(7900)),
        ],
        HealthPolicy::default(),
    )
    .expect("valid pools")
}

/// A file reference of a media type and size.
pub fn file(media_type: &str, size: u64) -> cascade_engine::Attachment {
    cascade_engine::Attachment {
        url: "https://files.test/f".into(),
        media_type: media_type.into(),
        size,
        filename: None,
    }
}

pub fn t0() -> Timestamp {
    chrono::DateTime::from_timestamp(1_767_225_600, 0).expect("valid")
}

pub fn after(secs: i64) -> Timestamp {
    t0() + chrono::Duration::seconds(secs)
}

/// A contact reachable on all three channels.
pub fn everywhere() -> Contact {
    Contact::with_phone("+15551234567").name("Ann").address("telegram", "777")
}

pub fn plan_with(
    pools: &Pools,
    contact: &Contact,
    message: &Message,
    policy: &Policy,
    conversations: &[Conversation],
) -> Result<Plan, Vec<ValidationError>> {
    plan::build(
        &PlanInput {
            cascade: cascade_engine::CascadeId::new(),
            link_tracking: None,
            contact,
            message,
            policy,
            variables: &serde_json::json!({}),
            conversations,
            max_file_size: plan::DEFAULT_MAX_FILE_SIZE,
            now: t0(),
        },
        pools,
    )
}

/// A cascade driven by hand: pure machine plus pools as the picker.
pub struct Driver {
    pub pools: Pools,
    pub state: CascadeState,
    pub now: Timestamp,
    pub log: Vec<Transition>,
}

impl Driver {
    pub fn new(contact: Contact, policy: Policy) -> Self {
        Self::with(contact, Message::text("Hi {{contact.name | default(\"there\")}}"), policy, &[])
    }

    pub fn with(contact: Contact, message: Message, policy: Policy, conversations: &[Conversation]) -> Self {
        let pools = pools();
        let plan = plan_with(&pools, &contact, &message, &policy, conversations).expect("valid plan");
        let state = CascadeState::new(cascade_engine::CascadeId::new(), plan, t0());
        let mut d = Self { pools, state, now: t0(), log: Vec::new() };
        d.input(Input::Start);
        d
    }

    pub fn input(&mut self, input: Input) -> Transition {
        let now = self.now;
        let t = self.state.apply(input, now, &mut self.pools.picker(now));
        self.log.push(t.clone());
        t
    }

    pub fn advance(&mut self, secs: i64) -> Transition {
        self.now += chrono::Duration::seconds(secs);
        self.input(Input::Tick)
    }

    /// The attempt currently being sent.
    pub fn sending(&self) -> Option<u32> {
        match self.state.phase {
            cascade_engine::machine::Phase::Sending { attempt } => Some(attempt),
            _ => None,
        }
    }

    pub fn channels_tried(&self) -> Vec<String> {
        self.state.attempts.iter().map(|a| a.channel.to_string()).collect()
    }

    pub fn finished_count(&self) -> usize {
        self.log.iter().flat_map(|t| &t.actions).filter(|a| **a == Action::Finished).count()
    }
}
