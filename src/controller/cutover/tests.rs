//! The gate's rules, one test each, on the clock of the fixtures
//! (2026-11-27T10:00:00Z).

use super::*;
use crate::controller::decide::{decide, Decision, Step};
use crate::controller::fixtures::{now, observed, spec};
use crate::controller::status::{condition_message, RECONCILING};
use crate::crd::{Direction::Forward, Direction::Reverse, DtsJobStatus};

fn policy(max: i64, deadline: Option<&str>, on: Option<OnDeadline>) -> StopPolicy {
    StopPolicy {
        max_delay_seconds: max,
        deadline: deadline.map(str::to_owned),
        on_deadline: on,
    }
}

fn gated(directions: &[Direction], p: StopPolicy) -> Observed {
    let mut s = spec(Some(DesiredState::Stopped), directions);
    s.stop_policy = Some(p);
    observed(s, DtsJobStatus::default())
}

fn at(text: &str) -> Time {
    Time(text.parse().unwrap())
}

fn detail(delay_ms: Option<i64>) -> JobDetail {
    JobDetail {
        request_id: Some("req-d".into()),
        http_status: 200,
        status: Some("Synchronizing".into()),
        delay_ms,
        checkpoint: None,
        error_message: None,
        direction: None,
    }
}

fn error(class: ErrorClass, code: &str, retry_after: Option<Duration>) -> DtsError {
    DtsError {
        class,
        kind: dts_api::ErrorKind::Api,
        http_status: Some(403),
        code: Some(code.into()),
        message: Some("refused".into()),
        raw_message: None,
        dynamic_code: None,
        dynamic_message: None,
        request_id: Some("req-e".into()),
        retry_after,
    }
}

fn waiting_since(obs: &mut Observed, since: &str, delay_ms: i64) {
    obs.status.stop_gate = Some(Box::new(StopGate {
        state: StopGateState::Waiting,
        max_delay_seconds: 5,
        since: at(since),
        deadline: None,
        checked_at: Some(at(since)),
        delays: vec![GateReading {
            direction: Forward,
            delay_ms: Some(delay_ms),
        }],
        message: None,
        stalled_for: None,
    }));
}

const FP: &str = "generation=1;secret=10;requested=-";

#[test]
fn without_a_stop_policy_the_stop_goes_out_at_once() {
    let obs = observed(spec(Some(DesiredState::Stopped), &[Forward]), DtsJobStatus::default());
    assert_eq!(
        gate(&obs, &[Forward], FP),
        Gate::Open {
            gate: None,
            event: None
        }
    );
}

#[test]
fn a_gated_stop_reads_every_direction_it_is_about_to_stop_first() {
    let obs = gated(&[Forward, Reverse], policy(5, None, None));
    assert_eq!(gate(&obs, &[Forward, Reverse], FP), Gate::Gauge(vec![Forward, Reverse]));
}

#[test]
fn a_delay_above_the_limit_waits_with_an_event_the_first_time_only() {
    let mut obs = gated(&[Forward], policy(5, None, None));
    obs.gauge = Some(vec![(Forward, Ok(detail(Some(30_000))))]);
    let Gate::Wait { gate: g, wake, event } = gate(&obs, &[Forward], FP) else {
        panic!("expected a wait")
    };
    assert_eq!(g.state, StopGateState::Waiting);
    assert_eq!(g.since, now());
    assert_eq!(g.checked_at, Some(now()));
    assert_eq!(g.delays[0].delay_ms, Some(30_000));
    assert_eq!(wake, GATE_INTERVAL);
    let (type_, reason, note) = event.expect("an Event when the wait starts");
    assert_eq!((type_, reason), (EventType::Normal, Reason::WaitingForDelay));
    assert!(note.contains("Forward 30 s") && note.contains("5 s"), "{note}");

    // The same delay a check later: no Event, and the gate is unchanged
    // (so nothing is written).
    let mut later = gated(&[Forward], policy(5, None, None));
    later.status.stop_gate = Some(Box::new(g.clone()));
    later.now = at("2026-11-27T10:00:05Z");
    later.gauge = Some(vec![(Forward, Ok(detail(Some(30_000))))]);
    let Gate::Wait { gate: again, event, .. } = gate(&later, &[Forward], FP) else {
        panic!("expected a wait")
    };
    assert_eq!(event, None);
    assert_eq!(again, g);
}

#[test]
fn a_delay_at_the_limit_opens_the_gate() {
    let mut obs = gated(&[Forward], policy(5, None, None));
    waiting_since(&mut obs, "2026-11-27T09:59:48Z", 30_000);
    obs.gauge = Some(vec![(Forward, Ok(detail(Some(5_000))))]);
    let Gate::Open { gate: Some(g), event } = gate(&obs, &[Forward], FP) else {
        panic!("expected the gate open")
    };
    assert_eq!(g.state, StopGateState::Passed);
    assert_eq!(g.since, at("2026-11-27T09:59:48Z"), "the wait keeps its start");
    let (_, reason, note) = event.unwrap();
    assert_eq!(reason, Reason::DelayReached);
    assert!(note.contains("Forward 5 s") && note.contains("after 12 s"), "{note}");
}

#[test]
fn a_two_way_job_stops_only_when_both_directions_are_under_the_limit() {
    let mut obs = gated(&[Forward, Reverse], policy(5, None, None));
    obs.gauge = Some(vec![
        (Forward, Ok(detail(Some(1_000)))),
        (Reverse, Ok(detail(Some(30_000)))),
    ]);
    let Gate::Wait { gate: g, .. } = gate(&obs, &[Forward, Reverse], FP) else {
        panic!("one direction behind holds both")
    };
    assert_eq!(delays_text(&g.delays), "Forward 1 s, Reverse 30 s");

    obs.gauge = Some(vec![
        (Forward, Ok(detail(Some(1_000)))),
        (Reverse, Ok(detail(Some(4_500)))),
    ]);
    assert!(matches!(
        gate(&obs, &[Forward, Reverse], FP),
        Gate::Open { gate: Some(_), .. }
    ));
}

#[test]
fn no_delay_reported_is_not_under_the_limit() {
    let mut obs = gated(&[Forward], policy(5, None, None));
    obs.gauge = Some(vec![(Forward, Ok(detail(None)))]);
    let Gate::Wait { gate: g, .. } = gate(&obs, &[Forward], FP) else {
        panic!("an unknown delay waits")
    };
    assert!(g.message.unwrap().contains("no delay"));
}

#[test]
fn a_retryable_read_failure_waits_at_least_as_long_as_dts_asks() {
    let mut obs = gated(&[Forward], policy(5, None, None));
    let throttled = error(ErrorClass::Retryable, "Throttling.User", Some(Duration::from_secs(8)));
    obs.gauge = Some(vec![(Forward, Err(throttled))]);
    let Gate::Wait { gate: g, wake, .. } = gate(&obs, &[Forward], FP) else {
        panic!("a throttled read waits")
    };
    assert_eq!(wake, Duration::from_secs(8));
    assert!(g.message.unwrap().contains("Throttling.User"));
}

#[test]
fn a_terminal_read_failure_fails_the_direction_instead_of_reading_forever() {
    let mut obs = gated(&[Forward], policy(5, None, None));
    obs.gauge = Some(vec![(Forward, Err(error(ErrorClass::Terminal, "Forbidden.RAM", None)))]);
    let Gate::Failed(failed) = gate(&obs, &[Forward], FP) else {
        panic!("expected a failure")
    };
    assert_eq!(failed[0].0, Forward);
}

#[test]
fn at_a_passed_deadline_stall_sends_nothing_and_stays_stalled_for_the_same_inputs() {
    let mut obs = gated(&[Forward], policy(5, Some("5m"), None));
    waiting_since(&mut obs, "2026-11-27T09:50:00Z", 30_000);
    let Gate::Stall { gate: g, event } = gate(&obs, &[Forward], FP) else {
        panic!("expected a stall, without reading again")
    };
    assert_eq!(g.state, StopGateState::Stalled);
    assert_eq!(
        g.deadline,
        Some(at("2026-11-27T09:55:01Z")),
        "5m after the whole second of since"
    );
    assert_eq!(g.stalled_for.as_deref(), Some(FP));
    assert_eq!(event.unwrap().1, Reason::DelayDeadlineExceeded);

    let mut again = gated(&[Forward], policy(5, Some("5m"), None));
    again.status.stop_gate = Some(Box::new(g.clone()));
    assert_eq!(gate(&again, &[Forward], FP), Gate::Stall { gate: g, event: None });
}

#[test]
fn a_stalled_gate_looks_once_more_when_its_inputs_change() {
    let mut obs = gated(&[Forward], policy(5, Some("5m"), None));
    waiting_since(&mut obs, "2026-11-27T09:50:00Z", 30_000);
    let Gate::Stall { gate: g, .. } = gate(&obs, &[Forward], FP) else {
        panic!()
    };
    let mut annotated = gated(&[Forward], policy(5, Some("5m"), None));
    annotated.status.stop_gate = Some(Box::new(g));
    let new_fp = "generation=1;secret=10;requested=now";
    assert_eq!(gate(&annotated, &[Forward], new_fp), Gate::Gauge(vec![Forward]));
    annotated.gauge = Some(vec![(Forward, Ok(detail(Some(2_000))))]);
    assert!(matches!(
        gate(&annotated, &[Forward], new_fp),
        Gate::Open {
            gate: Some(StopGate {
                state: StopGateState::Passed,
                ..
            }),
            ..
        }
    ));
    annotated.gauge = Some(vec![(Forward, Ok(detail(Some(60_000))))]);
    assert!(matches!(gate(&annotated, &[Forward], new_fp), Gate::Stall { .. }));
}

#[test]
fn at_a_passed_deadline_stop_sends_the_stop_anyway() {
    let mut obs = gated(
        &[Forward],
        policy(5, Some("2026-11-27T09:59:00Z"), Some(OnDeadline::Stop)),
    );
    waiting_since(&mut obs, "2026-11-27T09:50:00Z", 30_000);
    let Gate::Open { gate: Some(g), event } = gate(&obs, &[Forward], FP) else {
        panic!("expected the stop")
    };
    assert_eq!(g.state, StopGateState::DeadlineStop);
    let (type_, reason, _) = event.unwrap();
    assert_eq!((type_, reason), (EventType::Warning, Reason::DelayDeadlineExceeded));
}

#[test]
fn the_wait_never_sleeps_past_the_deadline() {
    let mut obs = gated(&[Forward], policy(5, Some("2026-11-27T10:00:02Z"), None));
    obs.gauge = Some(vec![(Forward, Ok(detail(Some(30_000))))]);
    let Gate::Wait { wake, .. } = gate(&obs, &[Forward], FP) else {
        panic!()
    };
    assert_eq!(wake, Duration::from_secs(2));
}

#[test]
fn a_deadline_admission_let_through_but_unreadable_is_reported() {
    let obs = gated(&[Forward], policy(5, Some("5 fortnights"), None));
    let Gate::Invalid(message) = gate(&obs, &[Forward], FP) else {
        panic!()
    };
    assert!(message.contains("stopPolicy.deadline"), "{message}");
}

#[test]
fn stop_at_makes_the_stop_due_from_that_second_on() {
    let mut s = spec(Some(DesiredState::Running), &[Forward]);
    s.stop_at = Some(at("2026-11-27T10:00:05Z"));
    assert!(!stop_due(&s, &now()));
    assert_eq!(until_stop_at(&s, &now()), Some(Duration::from_secs(5)));
    assert!(stop_due(&s, &at("2026-11-27T10:00:05Z")));
    assert_eq!(until_stop_at(&s, &at("2026-11-27T10:00:05Z")), None);
    s.desired_state = Some(DesiredState::Stopped);
    assert_eq!(until_stop_at(&s, &now()), None, "already due");
}

#[test]
fn a_wait_counted_from_stop_at_starts_at_stop_at() {
    let mut s = spec(Some(DesiredState::Running), &[Forward]);
    s.stop_at = Some(at("2026-11-27T09:58:00Z"));
    s.stop_policy = Some(policy(5, Some("1m"), None));
    let obs = observed(s, DtsJobStatus::default());
    let Gate::Stall { gate: g, .. } = gate(&obs, &[Forward], FP) else {
        panic!("stopAt plus one minute has passed")
    };
    assert_eq!(g.since, at("2026-11-27T09:58:00Z"));
}

/// Through `decide`: the reads, then the mark with the gate on it, or a
/// settled wait that says why.
#[test]
fn decide_gauges_then_marks_or_waits() {
    let mut obs = gated(&[Forward], policy(5, None, None));
    assert_eq!(decide(&obs), Decision::Gauge(vec![Forward]));

    obs.gauge = Some(vec![(Forward, Ok(detail(Some(30_000))))]);
    let Decision::Settle { status, wake, events } = decide(&obs) else {
        panic!("expected a wait")
    };
    assert_eq!(wake, Some(GATE_INTERVAL));
    assert_eq!(status.phase, Some(crate::crd::Phase::Stopping));
    let reconciling = status.conditions.iter().find(|c| c.type_ == RECONCILING).unwrap();
    assert_eq!(
        (reconciling.status.as_str(), reconciling.reason.as_str()),
        ("True", "WaitingForDelay")
    );
    assert!(condition_message(&status, RECONCILING).contains("Forward 30 s"));
    assert!(events.iter().any(|(_, r, _)| *r == Reason::WaitingForDelay));

    obs.gauge = Some(vec![(Forward, Ok(detail(Some(1_000))))]);
    let Decision::Call(call) = decide(&obs) else {
        panic!("expected the stop")
    };
    assert_eq!(call.steps, vec![(Forward, Step::Stop)]);
    assert!(call.marked);
    assert_eq!(call.base.stop_gate.unwrap().state, StopGateState::Passed);
    assert!(call.events.iter().any(|(_, r, _)| *r == Reason::DelayReached));
}

#[test]
fn the_gate_goes_away_when_the_stop_is_no_longer_asked_for() {
    let mut obs = gated(&[Forward], policy(5, None, None));
    waiting_since(&mut obs, "2026-11-27T09:59:00Z", 30_000);
    obs.spec.desired_state = Some(DesiredState::Running);
    obs.views = Vec::new();
    let status = match decide(&obs) {
        Decision::Settle { status, .. } => status,
        Decision::Call(call) => call.base,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(status.stop_gate, None);
}
