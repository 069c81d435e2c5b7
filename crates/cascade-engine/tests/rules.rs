//! The rules of a cascade (DESIGN §3), one test each, on the pure state machine.

mod common;

use std::time::Duration;

use cascade_engine::machine::{Action, Input, Phase};
use cascade_engine::store::Conversation;
use cascade_engine::*;
use common::*;

fn answer(d: &mut Driver, result: Result<Accepted, SendError>) {
    let attempt = d.sending().expect("a send in flight");
    d.input(Input::SendResult { attempt, result });
}

fn status(d: &mut Driver, attempt: u32, s: Status) {
    let id = d.state.attempt(attempt).and_then(|a| a.provider_message_id.clone()).unwrap_or_default();
    d.input(Input::Status {
        attempt,
        update: StatusUpdate { provider_message_id: id, status: s, at: None, error: None },
    });
}

fn chain() -> Policy {
    Policy::chain(["whatsapp", "telegram", "sms"])
}

#[test]
fn first_send_goes_to_the_first_step_only() {
    let d = Driver::new(everywhere(), chain());
    assert_eq!(d.channels_tried(), ["whatsapp"]);
    assert_eq!(d.log[0].actions, vec![Action::Send { attempt: 1 }]);
}

#[test]
fn unreachable_falls_over_to_the_next_step_at_once() {
    let mut d = Driver::new(everywhere(), chain());
    answer(&mut d, Err(SendError::unreachable("131026", "not a WhatsApp user")));
    assert_eq!(d.channels_tried(), ["whatsapp", "telegram"]);
    assert_eq!(d.state.failures[0].class, Some(ErrorClass::Unreachable));
    assert!(d.state.failures[0].reason.contains("not a WhatsApp user"));
}

#[test]
fn rejected_falls_over_and_is_recorded() {
    let mut d = Driver::new(everywhere(), chain());
    answer(&mut d, Err(SendError::rejected("132000", "template parameters mismatch")));
    assert_eq!(d.channels_tried(), ["whatsapp", "telegram"]);
    assert_eq!(d.state.failures[0].class, Some(ErrorClass::Rejected));
}

#[test]
fn delivered_status_ends_the_cascade_as_delivered() {
    let mut d = Driver::new(everywhere(), chain());
    answer(&mut d, Ok(Accepted::new("wamid.1")));
    assert!(matches!(d.state.phase, Phase::Waiting { attempt: 1, .. }));
    status(&mut d, 1, Status::Sent);
    assert!(!d.state.is_finished(), "`sent` is not enough when the step waits for `delivered`");
    status(&mut d, 1, Status::Delivered);
    let Some(Outcome::Delivered { channel, status, attempt, .. }) = &d.state.outcome else { panic!("not delivered") };
    assert_eq!((channel.as_str(), *status, *attempt), ("whatsapp", Status::Delivered, 1));
    assert_eq!(d.finished_count(), 1);
}

#[test]
fn read_without_delivered_counts_as_delivered() {
    let mut d = Driver::new(everywhere(), chain());
    answer(&mut d, Ok(Accepted::new("wamid.1")));
    status(&mut d, 1, Status::Read);
    assert!(matches!(d.state.outcome, Some(Outcome::Delivered { status: Status::Read, .. })));
}

#[test]
fn statuses_never_go_down_and_duplicates_are_recorded() {
    let mut d = Driver::new(everywhere(), Policy::new([Step::new("whatsapp").until(Status::Read)]));
    answer(&mut d, Ok(Accepted::new("wamid.1")));
    status(&mut d, 1, Status::Delivered);
    status(&mut d, 1, Status::Sent);
    status(&mut d, 1, Status::Delivered);
    let a = d.state.attempt(1).expect("attempt");
    assert_eq!(a.highest, Some(Status::Delivered));
    assert_eq!(a.statuses.len(), 4, "accepted + three statuses, duplicates included");
    assert!(!d.state.is_finished());
}

#[test]
fn timeout_moves_on_with_the_reason() {
    let mut d = Driver::new(
        everywhere(),
        Policy::new([Step::new("whatsapp").timeout(Duration::from_secs(30)), Step::new("sms")]),
    );
    answer(&mut d, Ok(Accepted::new("wamid.1")));
    status(&mut d, 1, Status::Sent);
    d.advance(29);
    assert_eq!(d.channels_tried(), ["whatsapp"], "not before the timeout");
    d.advance(1);
    assert_eq!(d.channels_tried(), ["whatsapp", "sms"]);
    assert!(d.state.failures[0].reason.contains("no `delivered` within 30s"), "{}", d.state.failures[0].reason);
    assert!(d.state.failures[0].reason.contains("highest status: sent"));
}

#[test]
fn failed_status_moves_on() {
    let mut d = Driver::new(everywhere(), chain());
    answer(&mut d, Ok(Accepted::new("wamid.1")));
    let update = StatusUpdate {
        provider_message_id: "wamid.1".into(),
        status: Status::Failed,
        at: None,
        error: Some(SendError::unreachable("131026", "message undeliverable")),
    };
    d.input(Input::Status { attempt: 1, update });
    assert_eq!(d.channels_tried(), ["whatsapp", "telegram"]);
    assert!(d.state.failures[0].reason.contains("undeliverable"));
}

#[test]
fn transient_errors_retry_with_backoff_on_another_connection() {
    let mut d = Driver::new(everywhere(), chain());
    let first_conn = d.state.attempt(1).and_then(|a| a.connection.clone()).expect("connection");
    answer(&mut d, Err(SendError::transient("http_503", "unavailable")));
    assert!(matches!(d.state.phase, Phase::RetryAt { .. }), "{:?}", d.state.phase);
    assert_eq!(d.state.attempts.len(), 1, "no retry before the backoff");
    d.advance(1);
    assert_eq!(d.channels_tried(), ["whatsapp", "whatsapp"], "retried on the same channel");
    let second_conn = d.state.attempt(2).and_then(|a| a.connection.clone()).expect("connection");
    assert_ne!(first_conn, second_conn, "the retry prefers another connection");
    answer(&mut d, Err(SendError::transient("http_503", "unavailable")));
    d.advance(1);
    assert_eq!(d.state.attempts.len(), 2, "the second backoff is longer (2 s)");
    d.advance(1);
    assert_eq!(d.state.attempts.len(), 3);
}

#[test]
fn transient_errors_honour_retry_after_and_give_up_when_retries_run_out() {
    let mut d = Driver::new(everywhere(), chain());
    answer(&mut d, Err(SendError::transient("429", "slow down").with_retry_after(Duration::from_secs(10))));
    d.advance(9);
    assert_eq!(d.state.attempts.len(), 1, "retry-after is honoured");
    d.advance(1);
    assert_eq!(d.state.attempts.len(), 2);
    for _ in 0..3 {
        answer(&mut d, Err(SendError::transient("http_500", "oops")));
        d.advance(8);
    }
    assert_eq!(d.channels_tried(), ["whatsapp", "whatsapp", "whatsapp", "whatsapp", "telegram"]);
    assert_eq!(d.state.failures[0].class, Some(ErrorClass::Transient));
    assert!(d.state.failures[0].reason.contains("after 4 send(s)"), "{}", d.state.failures[0].reason);
}

#[test]
fn transient_retries_stay_inside_the_step_window() {
    let mut d = Driver::new(
        everywhere(),
        Policy::new([Step::new("whatsapp").timeout(Duration::from_secs(5)), Step::new("sms")]),
    );
    answer(&mut d, Err(SendError::transient("429", "slow").with_retry_after(Duration::from_secs(30))));
    assert_eq!(d.channels_tried(), ["whatsapp", "sms"], "a retry past the window falls over at once");
}

#[test]
fn connection_errors_retry_on_another_connection_then_fall_over() {
    let mut d = Driver::new(everywhere(), chain());
    answer(&mut d, Err(SendError::connection("190", "token expired")));
    assert_eq!(d.channels_tried(), ["whatsapp", "whatsapp"], "retried at once on the other connection");
    let conns: Vec<_> = d.state.attempts.iter().map(|a| a.connection.clone()).collect();
    assert_ne!(conns[0], conns[1]);
    answer(&mut d, Err(SendError::connection("190", "token expired")));
    assert_eq!(d.channels_tried(), ["whatsapp", "whatsapp", "telegram"], "no connection left: next step");
}

#[test]
fn steps_without_an_address_are_skipped_with_the_reason() {
    let contact = Contact::with_phone("+15551234567");
    let d = Driver::new(contact, Policy::chain(["telegram", "sms"]));
    assert_eq!(d.channels_tried(), ["sms"]);
    assert!(
        d.log[0].events.iter().any(|e| matches!(&e.kind, EventKind::StepSkipped { reason: SkipReason::NoAddress, .. }))
    );
    assert!(d.state.failures[0].reason.contains("no address"));
}

#[test]
fn a_file_too_large_for_a_channel_skips_it() {
    let mut message = Message::text("video");
    message.attachment = Some(file("video/mp4", 70 * 1024 * 1024));
    let p = pools();
    let contact = everywhere();
    let policy = Policy::chain(["telegram", "whatsapp"]);
    let plan = plan_with(&p, &contact, &message, &policy, &[]);
    // Telegram carries 50 MB, WhatsApp 16 MB video: nothing can carry 70 MB.
    let errs = plan.expect_err("no step can carry it");
    assert_eq!(errs[0].field, "message.attachment");
    let mut small = message.clone();
    if let Some(a) = small.attachment.as_mut() {
        a.size = 20 * 1024 * 1024;
    }
    let plan = plan_with(&p, &contact, &small, &policy, &[]).expect("telegram carries 20 MB");
    assert_eq!(plan.steps[1].skip, Some(SkipReason::FileTooLarge { size: 20 * 1024 * 1024, limit: 16 * 1024 * 1024 }));
    assert_eq!(plan.steps[0].skip, None);
}

#[test]
fn all_steps_failing_gives_failed_with_a_reason_per_step() {
    let mut d = Driver::new(everywhere(), chain());
    answer(&mut d, Err(SendError::unreachable("131026", "not on WhatsApp")));
    answer(&mut d, Err(SendError::unreachable("403", "bot was blocked by the user")));
    answer(&mut d, Err(SendError::unreachable("21211", "invalid number")));
    let Some(Outcome::Failed { steps }) = &d.state.outcome else { panic!("not failed: {:?}", d.state.outcome) };
    assert_eq!(steps.len(), 3);
    assert_eq!(steps.iter().map(|s| s.channel.as_str()).collect::<Vec<_>>(), ["whatsapp", "telegram", "sms"]);
    assert_eq!(d.finished_count(), 1);
}

#[test]
fn a_late_success_of_an_earlier_attempt_wins() {
    let mut d = Driver::new(everywhere(), chain());
    answer(&mut d, Ok(Accepted::new("wamid.1")));
    d.advance(60);
    assert_eq!(d.channels_tried(), ["whatsapp", "telegram"]);
    status(&mut d, 1, Status::Delivered);
    assert!(matches!(&d.state.outcome, Some(Outcome::Delivered { attempt: 1, .. })));
    d.input(Input::SendResult { attempt: 2, result: Ok(Accepted::new("tg.1")) });
    assert_eq!(d.state.attempt(2).map(|a| a.state), Some(AttemptState::Accepted), "the late answer is recorded");
    assert_eq!(d.channels_tried(), ["whatsapp", "telegram"], "nothing is sent after the outcome");
    assert_eq!(d.finished_count(), 1);
}

#[test]
fn a_late_success_is_only_recorded_when_the_policy_says_so() {
    let mut policy = chain();
    policy.late_success_wins = false;
    let mut d = Driver::new(everywhere(), policy);
    answer(&mut d, Ok(Accepted::new("wamid.1")));
    d.advance(60);
    status(&mut d, 1, Status::Delivered);
    assert!(!d.state.is_finished());
    assert_eq!(d.state.attempt(1).and_then(|a| a.highest), Some(Status::Delivered));
}

#[test]
fn a_reply_stops_the_chain() {
    let mut d = Driver::new(everywhere(), chain());
    answer(&mut d, Ok(Accepted::new("wamid.1")));
    d.input(Input::Reply { channel: "whatsapp".into() });
    assert!(matches!(&d.state.outcome, Some(Outcome::Delivered { status: Status::Replied, .. })));
    d.advance(600);
    assert_eq!(d.channels_tried(), ["whatsapp"]);
}

#[test]
fn cancel_ends_it_and_nothing_follows() {
    let mut d = Driver::new(everywhere(), chain());
    d.input(Input::Cancel);
    assert_eq!(d.state.outcome, Some(Outcome::Cancelled));
    answer_late(&mut d);
    d.advance(600);
    assert_eq!(d.channels_tried(), ["whatsapp"]);
    assert_eq!(d.finished_count(), 1);
}

fn answer_late(d: &mut Driver) {
    d.input(Input::SendResult { attempt: 1, result: Err(SendError::unreachable("x", "late")) });
    assert_eq!(d.state.attempt(1).map(|a| a.state), Some(AttemptState::Failed), "late answers are recorded");
}

#[test]
fn the_overall_ttl_expires_the_cascade() {
    let mut policy = Policy::new([Step::new("whatsapp").timeout(Duration::from_secs(3600))]);
    policy.ttl = Some(Duration::from_secs(120));
    let mut d = Driver::new(everywhere(), policy);
    answer(&mut d, Ok(Accepted::new("wamid.1")));
    d.advance(119);
    assert!(!d.state.is_finished());
    d.advance(1);
    assert_eq!(d.state.outcome, Some(Outcome::Expired));
}

#[test]
fn existing_chat_goes_first_on_the_same_connection() {
    let conv = Conversation {
        channel: "sms".into(),
        connection: "sms-1".into(),
        address: "+15551234567".into(),
        last_inbound_at: Some(after(-60)),
        last_delivery_at: None,
    };
    let wa_conv = Conversation { channel: "whatsapp".into(), connection: "wa-2".into(), ..conv.clone() };
    // SMS has no conversation window: only the WhatsApp chat counts.
    let d = Driver::with(
        everywhere(),
        Message::text("hi"),
        Policy::chain(["telegram", "sms", "whatsapp"]),
        &[conv, wa_conv],
    );
    assert_eq!(d.channels_tried(), ["whatsapp"]);
    assert_eq!(d.state.attempt(1).and_then(|a| a.connection.clone()), Some("wa-2".into()), "sticky sender");
    assert!(d.log[0].events.iter().any(|e| matches!(e.kind, EventKind::ExistingChatFirst { step: 2, .. })));
    let window = d.state.plan.steps[2].window.clone().expect("an open window on WhatsApp");
    assert_eq!((window.connection.as_str(), window.until), ("wa-2", after(-60) + chrono::Duration::hours(24)));
    assert_eq!(d.state.plan.steps[1].window, None, "SMS has no conversation window");
}

#[test]
fn an_old_chat_does_not_go_first() {
    let conv = Conversation {
        channel: "whatsapp".into(),
        connection: "wa-2".into(),
        address: "+15551234567".into(),
        last_inbound_at: Some(after(-25 * 3600)),
        last_delivery_at: None,
    };
    let d = Driver::with(everywhere(), Message::text("hi"), Policy::chain(["telegram", "whatsapp"]), &[conv]);
    assert_eq!(d.channels_tried(), ["telegram"]);
    assert_eq!(d.state.plan.steps[1].sticky, Some("wa-2".into()), "still the sticky sender for its step");
    assert_eq!(d.state.plan.steps[1].window, None, "the service window has closed");
}

#[test]
fn a_lost_send_is_unknown_and_waits_until_the_step_deadline() {
    let mut d = Driver::new(everywhere(), chain());
    d.advance(20);
    d.input(Input::SendLost { attempt: 1 });
    assert_eq!(d.state.attempt(1).map(|a| a.state), Some(AttemptState::Unknown));
    assert_eq!(d.channels_tried(), ["whatsapp"], "no second send without a record");
    d.advance(40);
    assert_eq!(d.channels_tried(), ["whatsapp", "telegram"], "after the step's deadline it goes on");
}

#[test]
fn a_status_before_the_send_answer_counts_and_the_answer_still_sets_the_cost() {
    let mut d = Driver::new(Contact::with_phone("+15551234567"), Policy::chain(["sms"]));
    let update = StatusUpdate { provider_message_id: "SM1".into(), status: Status::Sent, at: None, error: None };
    d.input(Input::Status { attempt: 1, update });
    assert!(matches!(d.state.phase, Phase::Waiting { attempt: 1, .. }), "the status proves acceptance");
    let accepted = Accepted { provider_message_id: "SM1".into(), cost: Some(Cost::from_micros(8300)), status: None };
    d.input(Input::SendResult { attempt: 1, result: Ok(accepted) });
    assert_eq!(d.state.cost(), Cost::from_micros(8300), "the provider's reported cost wins over the price");
    status(&mut d, 1, Status::Delivered);
    assert!(d.state.outcome.as_ref().is_some_and(Outcome::is_delivered));
}

#[test]
fn cost_adds_up_over_attempts() {
    let mut d = Driver::new(Contact::with_phone("+15551234567"), Policy::chain(["sms"]));
    answer(&mut d, Ok(Accepted::new("SM1")));
    assert_eq!(d.state.cost(), Cost::from_micros(7900), "the connection's price when the provider says none");
    status(&mut d, 1, Status::Delivered);
    let fin = d.log.iter().flat_map(|t| &t.events).find_map(|e| match &e.kind {
        EventKind::Finished { cost, .. } => Some(*cost),
        _ => None,
    });
    assert_eq!(fin, Some(Cost::from_micros(7900)));
}

mod validation {
    use super::*;

    fn errors(contact: Contact, message: Message, policy: Policy) -> Vec<ValidationError> {
        plan_with(&pools(), &contact, &message, &policy, &[]).expect_err("invalid")
    }

    #[test]
    fn unknown_template_variable_names_it_and_the_field() {
        let e = errors(everywhere(), Message::text("Hi {{contact.nickname}}"), chain());
        assert_eq!(e[0].field, "message.text");
        assert!(e[0].message.contains("contact.nickname"));
        let mut m = Message::text("ok");
        m.overrides.insert("sms".into(), ContentOverride { text: Some("{{deal.name}}".into()), ..Default::default() });
        let e = errors(everywhere(), m, chain());
        assert_eq!(e[0].field, "message.overrides.sms.text");
    }

    #[test]
    fn a_status_the_channel_never_reports_is_refused() {
        let e =
            errors(everywhere(), Message::text("hi"), Policy::new([Step::new("telegram").until(Status::Delivered)]));
        assert_eq!(e[0].field, "policy.steps[0].until");
        assert!(e[0].message.contains("highest status it reports is `sent`"), "{}", e[0].message);
    }

    #[test]
    fn unknown_channels_and_connections_are_named() {
        let mut step = Step::new("sms");
        step.connections = Some(vec!["wa-1".into()]);
        let e = errors(everywhere(), Message::text("hi"), Policy::new([Step::new("pigeon"), step]));
        let fields: Vec<_> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["policy.steps[0].channel", "policy.steps[1].connections[0]"]);
    }

    #[test]
    fn bad_phone_and_no_address_at_all() {
        let e = errors(Contact::with_phone("555-1234"), Message::text("hi"), chain());
        assert_eq!(e[0].field, "contact.phone");
        let e = errors(Contact::default().email("a@b.test"), Message::text("hi"), chain());
        assert_eq!(e[0].field, "contact");
        assert!(e[0].message.contains("no address for any step"));
    }

    #[test]
    fn files_over_the_global_limit_are_refused() {
        let mut m = Message::text("big");
        m.attachment = Some(file("application/pdf", 200 * 1024 * 1024));
        let e = errors(everywhere(), m, chain());
        assert!(e.iter().any(|e| e.field == "message.attachment.size"));
    }

    #[test]
    fn a_policy_is_checked_on_its_own_with_fields_from_its_root() {
        let pools = pools();
        assert_eq!(plan::check_policy(&chain(), &pools, false), Ok(()));
        let mut subset = Step::new("whatsapp");
        subset.connections = Some(vec!["wa-2".into(), "sms-1".into()]);
        let mut policy = Policy::new([
            Step::new("pigeon"),
            subset,
            Step::new("telegram").until(Status::Delivered),
            Step::new("sms").timeout(Duration::ZERO),
            Step::new("sms").until(Status::Clicked),
        ]);
        policy.track_links = true;
        let e = plan::check_policy(&policy, &pools, false).expect_err("invalid");
        let fields: Vec<_> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["track_links", "steps[0].channel", "steps[1].connections[1]", "steps[2].until", "steps[3].timeout"]
        );
        assert!(e[2].message.contains("`sms-1` is not a connection of channel `whatsapp`"), "{}", e[2].message);
        // `clicked` is fine with tracking on; the policy check knows no message, so it cannot
        // tell whether the step's content has a link.
        policy.steps.drain(..4);
        assert_eq!(plan::check_policy(&policy, &pools, true), Ok(()));
        policy.track_links = false;
        let e = plan::check_policy(&policy, &pools, true).expect_err("clicked needs tracking");
        assert_eq!(e[0].field, "steps[0].until");
        let e = plan::check_policy(&Policy::new([]), &pools, false).expect_err("no steps");
        assert_eq!(e[0].field, "steps");
    }

    #[test]
    fn empty_policies_and_messages_are_refused() {
        let e = errors(everywhere(), Message::text("hi"), Policy::new([]));
        assert_eq!(e[0].field, "policy.steps");
        let e = errors(everywhere(), Message::text("  "), chain());
        assert_eq!(e[0].field, "message.text");
    }

    #[test]
    fn default_until_comes_from_the_channel() {
        let plan = plan_with(&pools(), &everywhere(), &Message::text("hi"), &chain(), &[]).expect("valid");
        let until: Vec<_> = plan.steps.iter().map(|s| s.until).collect();
        assert_eq!(until, [Status::Delivered, Status::Sent, Status::Delivered]);
        assert!(plan.steps.iter().all(|s| s.timeout == Duration::from_secs(60)));
    }
}
