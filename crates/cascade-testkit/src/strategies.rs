//! proptest strategies for policies, contacts and event streams.

use std::time::Duration;

use cascade_engine::{ErrorClass, Policy, Status, Step};
use proptest::prelude::*;

/// The channel names the strategies use, with capabilities from [`crate::caps`].
pub const CHANNELS: [&str; 3] = ["whatsapp", "telegram", "sms"];

/// A policy of 1 to 6 steps over [`CHANNELS`], with default or explicit `until` statuses the
/// channel can report and timeouts from 1 s to 2 min.
pub fn policy() -> impl Strategy<Value = Policy> {
    let step = (0..CHANNELS.len(), prop::option::of(0u8..3), 1u64..120).prop_map(|(c, until, secs)| {
        let channel = CHANNELS[c];
        let until = until.map(|u| match (channel, u) {
            ("telegram", _) => Status::Sent,
            (_, 0) => Status::Sent,
            (_, 1) => Status::Delivered,
            ("whatsapp", _) => Status::Read,
            _ => Status::Delivered,
        });
        Step { until, ..Step::new(channel).timeout(Duration::from_secs(secs)) }
    });
    (prop::collection::vec(step, 1..=6), any::<bool>()).prop_map(|(steps, late)| {
        let mut p = Policy::new(steps);
        p.late_success_wins = late;
        p
    })
}

/// Which of [`CHANNELS`] the contact has an address for (at least one).
pub fn reachable() -> impl Strategy<Value = [bool; 3]> {
    any::<[bool; 3]>().prop_filter("at least one address", |r| r.iter().any(|x| *x))
}

/// One thing that can happen to a running cascade.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// The in-flight send is accepted (optionally with a status known at once).
    Accept,
    /// The in-flight send fails with this class.
    Fail(ErrorClass),
    /// A status arrives for attempt `n % attempts + 1`.
    Status(usize, Status),
    /// The last status is delivered again (a duplicate).
    Duplicate,
    /// The contact replies on channel `CHANNELS[i]`.
    Reply(usize),
    /// The caller cancels.
    Cancel,
    /// Time passes.
    Advance(Duration),
    /// The process died during the in-flight send.
    Lost,
}

/// A stream of up to `max` operations.
pub fn ops(max: usize) -> impl Strategy<Value = Vec<Op>> {
    let status = prop::sample::select(vec![
        Status::Sent,
        Status::Delivered,
        Status::Read,
        Status::Failed,
        Status::Replied,
        Status::Accepted,
    ]);
    let class = prop::sample::select(vec![
        ErrorClass::Unreachable,
        ErrorClass::Rejected,
        ErrorClass::Transient,
        ErrorClass::Connection,
    ]);
    let op = prop_oneof![
        4 => Just(Op::Accept),
        3 => class.prop_map(Op::Fail),
        4 => (any::<usize>(), status).prop_map(|(n, s)| Op::Status(n, s)),
        1 => Just(Op::Duplicate),
        1 => (0..CHANNELS.len()).prop_map(Op::Reply),
        1 => Just(Op::Cancel),
        3 => (1u64..90).prop_map(|s| Op::Advance(Duration::from_secs(s))),
        1 => Just(Op::Lost),
    ];
    prop::collection::vec(op, 0..max)
}
