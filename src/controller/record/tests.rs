//! The rules of `record`, one row each: a decision made by `decide` on a
//! recorded status, the answers DTS gave, and what must follow.

// The answers are built as DTS returns them: `Result<_, DtsError>` (see
// the allowance in the DTS client for why DtsError is not boxed).
#![allow(clippy::result_large_err)]

use std::time::Duration;

use super::*;
use crate::controller::decide::decide;
use crate::controller::fixtures::{observed, record as rec, spec};
use crate::crd::DesiredState;
use crate::crd::DirectionState::*;
use dts_api::{ApiSuccess, ErrorKind, JobDetail, TransportError};
use Direction::*;

fn ok(rid: &str) -> Result<ApiSuccess, DtsError> {
    Ok(ApiSuccess {
        request_id: Some(rid.into()),
        http_status: 200,
        body: serde_json::json!({"RequestId": rid, "Success": true}),
    })
}

fn detail(status: &str) -> Result<JobDetail, DtsError> {
    Ok(JobDetail {
        request_id: Some("DESC-1".into()),
        http_status: 200,
        status: Some(status.into()),
        ..Default::default()
    })
}

fn api_error(code: &str, class: ErrorClass, http: u16) -> DtsError {
    DtsError {
        class,
        kind: ErrorKind::Api,
        http_status: Some(http),
        code: Some(code.into()),
        message: Some(format!("{code} happened")),
        request_id: Some("ERR-1".into()),
        ..DtsError::invalid_request("")
    }
}

fn throttled() -> DtsError {
    DtsError {
        retry_after: Some(Duration::from_secs(3)),
        ..api_error("Throttling.User", ErrorClass::Retryable, 400)
    }
}

fn terminal(code: &str) -> DtsError {
    api_error(code, ErrorClass::Terminal, 200)
}

fn timeout() -> DtsError {
    DtsError::from_transport(&TransportError::Timeout)
}

struct Row {
    rule: &'static str,
    /// The recorded state of Forward before the reconcile (None: no record).
    before: Option<DirectionState>,
    answer: fn() -> Answer,
    /// Forward's state after.
    after: DirectionState,
    /// (type, reason) of the Events.
    events: Vec<(EventType, Reason)>,
    next: Next,
}

fn rows() -> Vec<Row> {
    let normal = EventType::Normal;
    let warning = EventType::Warning;
    vec![
        Row {
            rule: "a stop DTS accepted is Stopped, with its RequestId in an Event",
            before: None,
            answer: || Answer::Stop(ok("REQ-1"), None),
            after: Stopped,
            events: vec![(normal, Reason::Stopped)],
            next: Next::Settled,
        },
        Row {
            rule: "a retryable refusal is Pending and retried no earlier than x-acs-retry-after",
            before: None,
            answer: || Answer::Stop(Err(throttled()), None),
            after: Pending,
            events: vec![(warning, Reason::RetryScheduled)],
            next: Next::Retry {
                floor: Some(Duration::from_secs(3)),
            },
        },
        Row {
            rule: "an ambiguous answer stays Stopping, so the next attempt describes first",
            before: None,
            answer: || Answer::Stop(Err(timeout()), None),
            after: Stopping,
            events: vec![(warning, Reason::StopOutcomeUnknown)],
            next: Next::Retry { floor: None },
        },
        Row {
            rule: "a terminal refusal of a finished job is AlreadyStopped",
            before: None,
            answer: || Answer::Stop(Err(terminal("InvalidJobStatus")), Some(detail("FINISHED"))),
            after: Stopped,
            events: vec![(normal, Reason::AlreadyStopped)],
            next: Next::Settled,
        },
        Row {
            rule: "a terminal refusal is Failed, its Event named like its Stalled reason",
            before: None,
            answer: || Answer::Stop(Err(terminal("InvalidParameter")), Some(detail("Synchronizing"))),
            after: Failed,
            events: vec![(warning, Reason::InvalidParameter)],
            next: Next::Settled,
        },
        Row {
            rule: "an unknown terminal code is StopFailed",
            before: None,
            answer: || Answer::Stop(Err(terminal("Brand.New.Code")), None),
            after: Failed,
            events: vec![(warning, Reason::StopFailed)],
            next: Next::Settled,
        },
        Row {
            rule: "a describe that shows Finished confirms the stop",
            before: Some(Stopping),
            answer: || Answer::Describe(detail("Finished")),
            after: Stopped,
            events: vec![(normal, Reason::Stopped)],
            next: Next::Settled,
        },
        Row {
            rule: "a describe that shows the job running makes a stop next, at once",
            before: Some(Stopping),
            answer: || Answer::Describe(detail("Synchronizing")),
            after: Pending,
            events: vec![],
            next: Next::Now,
        },
        Row {
            rule: "a describe that fails retryably keeps Stopping and backs off",
            before: Some(Stopping),
            answer: || Answer::Describe(Err(throttled())),
            after: Stopping,
            events: vec![],
            next: Next::Retry {
                floor: Some(Duration::from_secs(3)),
            },
        },
        Row {
            rule: "a describe refused terminally is Failed",
            before: Some(Stopping),
            answer: || Answer::Describe(Err(terminal("Forbidden.RAM"))),
            after: Failed,
            events: vec![(warning, Reason::AccessDenied)],
            next: Next::Settled,
        },
        Row {
            rule: "a call not sent (Lease lost) stays as marked, silently",
            before: None,
            answer: || Answer::NotSent,
            after: Stopping,
            events: vec![],
            next: Next::Settled,
        },
    ]
}

fn observed_with(before: Option<DirectionState>) -> Observed {
    let status = DtsJobStatus {
        directions: before.map(|s| rec(Forward, s)).into_iter().collect(),
        ..Default::default()
    };
    let mut s = spec(Some(DesiredState::Stopped), &[Forward]);
    s.job_id = "job1".into();
    observed(s, status)
}

#[test]
fn record_follows_the_rules_for_every_answer() {
    let mut failures = Vec::new();
    for row in rows() {
        let obs = observed_with(row.before);
        let decision = decide(&obs);
        let Decision::Call(call) = &decision else {
            panic!("{}: expected a call, got {decision:?}", row.rule)
        };
        let acted = Acted::Calls(vec![CallResult {
            direction: Forward,
            answer: (row.answer)(),
        }]);
        let out = record(&obs, &decision, acted);
        let after = out
            .write
            .as_ref()
            .map(|w| &w.status)
            .or(call.marked.then_some(&call.base))
            .and_then(|s| s.directions.iter().find(|r| r.direction == Forward))
            .map(|r| r.state);
        let events: Vec<_> = out.events.iter().map(|n| (n.type_, n.reason)).collect();
        if after != Some(row.after) || events != row.events || out.next != row.next {
            failures.push(format!(
                "{}:\n  want {:?} {:?} {:?}\n  got  {after:?} {events:?} {:?}",
                row.rule, row.after, row.events, row.next, out.next
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_refused_mark_prevents_every_call_and_every_write() {
    let obs = observed_with(None);
    let decision = decide(&obs);
    let out = record(&obs, &decision, Acted::Refused);
    assert_eq!(out.write, None);
    assert!(out.events.is_empty());
    assert_eq!(out.next, Next::After(CONFLICT_RETRY), "decide again on a fresher view");
}

#[test]
fn a_terminal_failure_is_tied_to_the_decision_fingerprint() {
    let obs = observed_with(None);
    let decision = decide(&obs);
    let Decision::Call(call) = &decision else {
        unreachable!()
    };
    let acted = Acted::Calls(vec![CallResult {
        direction: Forward,
        answer: Answer::Stop(Err(terminal("InvalidParameter")), None),
    }]);
    let out = record(&obs, &decision, acted);
    let w = out.write.expect("the failure is written");
    let r = &w.status.directions[0];
    assert_eq!(r.failed_for.as_deref(), Some(call.fingerprint.as_str()));
    assert_eq!(r.error_code.as_deref(), Some("InvalidParameter"));
    assert_eq!(r.request_id.as_deref(), Some("ERR-1"));
    assert_eq!(w.precondition, None, "after the mark the write is unconditional");
}

#[test]
fn writes_from_the_cached_view_carry_its_resource_version() {
    // Describe-only: no mark was written, so the result is conditional.
    let obs = observed_with(Some(Stopping));
    let decision = decide(&obs);
    let acted = Acted::Calls(vec![CallResult {
        direction: Forward,
        answer: Answer::Describe(detail("Finished")),
    }]);
    let w = record(&obs, &decision, acted).write.expect("a change");
    assert_eq!(w.precondition.as_deref(), Some("7"));

    // Settle: the same.
    let obs = observed(spec(None, &[Forward]), DtsJobStatus::default());
    let w = record(&obs, &decide(&obs), Acted::NoCall).write.expect("first status");
    assert_eq!(w.precondition.as_deref(), Some("7"));
}

#[test]
fn nothing_changed_nothing_written_and_no_repeated_warning() {
    let obs = observed(
        spec(Some(DesiredState::Running), &[Forward]),
        DtsJobStatus {
            directions: vec![rec(Forward, Stopped)],
            ..Default::default()
        },
    );
    let first = record(&obs, &decide(&obs), Acted::NoCall);
    let w = first.write.expect("first status");
    assert_eq!(first.events.len(), 1, "RestartNotSupported is published with the write");
    let again = observed(obs.spec.clone(), w.status);
    let second = record(&again, &decide(&again), Acted::NoCall);
    assert_eq!(second.write, None);
    assert!(second.events.is_empty());
    assert_eq!(second.next, Next::Settled);
}

#[test]
fn two_directions_stopped_in_one_reconcile_share_one_event() {
    let obs = observed(
        spec(Some(DesiredState::Stopped), &[Forward, Reverse]),
        DtsJobStatus::default(),
    );
    let decision = decide(&obs);
    let acted = Acted::Calls(vec![
        CallResult {
            direction: Forward,
            answer: Answer::Stop(ok("REQ-F"), None),
        },
        CallResult {
            direction: Reverse,
            answer: Answer::Stop(ok("REQ-R"), None),
        },
    ]);
    let out = record(&obs, &decision, acted);
    assert_eq!(out.events.len(), 1);
    let e = &out.events[0];
    assert_eq!((e.reason, e.action.as_str()), (Reason::Stopped, "StopForwardReverse"));
    assert!(e.note.contains("REQ-F") && e.note.contains("REQ-R"), "{}", e.note);
}

#[test]
fn the_history_records_each_call_and_keeps_the_newest_ten() {
    use crate::crd::{CallRecord, HISTORY_LIMIT};
    let old = |i: usize| CallRecord {
        time: obs_now(),
        action: "StopDtsJob".into(),
        direction: Forward,
        request_id: Some(format!("OLD-{i}")),
        outcome: "retryable".into(),
        code: Some("Throttling.User".into()),
    };
    let mut obs = observed_with(None);
    obs.status.history = (0..9).map(old).collect();
    let decision = decide(&obs);
    let acted = Acted::Calls(vec![CallResult {
        direction: Forward,
        answer: Answer::Stop(Err(terminal("InvalidJobStatus")), Some(detail("Finished"))),
    }]);
    let status = record(&obs, &decision, acted).write.expect("a change").status;
    assert_eq!(status.history.len(), HISTORY_LIMIT);
    assert_eq!(
        status.history[0].request_id.as_deref(),
        Some("OLD-1"),
        "the oldest went"
    );
    let last: Vec<_> = status.history[8..]
        .iter()
        .map(|c| (c.action.as_str(), c.outcome.as_str(), c.request_id.as_deref()))
        .collect();
    assert_eq!(
        last,
        [
            ("StopDtsJob", "terminal", Some("ERR-1")),
            ("DescribeDtsJobDetail", "success", Some("DESC-1")),
        ]
    );
}

fn obs_now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    crate::controller::fixtures::now()
}

mod hold {
    use super::*;
    use crate::crd::TransitionState;
    use crate::view::{DirectionView, Seen};

    fn suspending_obs(view: &str) -> Observed {
        let mut obs = observed(spec(Some(DesiredState::Suspended), &[Forward]), DtsJobStatus::default());
        obs.views = vec![(
            Forward,
            Seen {
                view: DirectionView {
                    status: Some(view.into()),
                    ..Default::default()
                },
                read_at: obs_now(),
            },
        )];
        obs
    }

    #[test]
    fn an_accepted_suspend_is_confirmed_by_reading_a_second_later() {
        let obs = suspending_obs("Synchronizing");
        let decision = decide(&obs);
        let acted = Acted::Calls(vec![CallResult {
            direction: Forward,
            answer: Answer::Lifecycle(DesiredState::Suspended, ok("REQ-S")),
        }]);
        let out = record(&obs, &decision, acted);
        let w = out.write.expect("the transition is written");
        let t = w.status.directions[0].transition.as_ref().unwrap();
        assert_eq!(
            (t.state, t.request_id.as_deref()),
            (TransitionState::Confirming, Some("REQ-S"))
        );
        assert_eq!(out.next, Next::After(Duration::from_secs(1)));
        let ready = w.status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("Unknown", "Suspending"),
            "not Ready yet"
        );
        assert_eq!(out.events[0].reason, Reason::Suspending);
        assert!(out.events[0].note.contains("REQ-S"), "{:?}", out.events);
        assert_eq!(w.status.history[0].action, "SuspendDtsJob");
    }

    #[test]
    fn the_confirmation_that_shows_the_target_makes_it_ready() {
        let obs = suspending_obs("Synchronizing");
        let decision = decide(&obs);
        let first = record(
            &obs,
            &decision,
            Acted::Calls(vec![CallResult {
                direction: Forward,
                answer: Answer::Lifecycle(DesiredState::Suspended, ok("REQ-S")),
            }]),
        )
        .write
        .unwrap()
        .status;
        // Next reconcile: still the old view (no observer), so it reads.
        let mut obs = suspending_obs("Synchronizing");
        obs.status = first;
        let decision = decide(&obs);
        let Decision::Call(call) = &decision else {
            panic!("a confirmation read")
        };
        assert_eq!(call.steps, [(Forward, crate::controller::decide::Step::Confirm)]);
        assert!(!call.marked, "a read is not marked");
        let not_yet = record(
            &obs,
            &decision,
            Acted::Calls(vec![CallResult {
                direction: Forward,
                answer: Answer::Confirm(detail("Synchronizing")),
            }]),
        );
        assert_eq!(not_yet.next, Next::After(Duration::from_secs(1)), "read again soon");
        let done = record(
            &obs,
            &decision,
            Acted::Calls(vec![CallResult {
                direction: Forward,
                answer: Answer::Confirm(detail("Suspending")),
            }]),
        );
        let status = done.write.unwrap().status;
        assert_eq!(status.directions[0].transition, None);
        assert_eq!(status.phase, Some(crate::crd::Phase::Suspended));
        let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "Suspended"));
        assert_eq!(done.next, Next::Settled);
        assert!(done.events.iter().any(|e| e.reason == Reason::Suspended));
    }

    /// A `Requested` transition with no answer recorded (the process died
    /// between the mark and the record) whose read shows DTS still running:
    /// the suspend did not take effect, so it is decided again at once; the
    /// next decision marks and sends it. Without this the direction waited
    /// in `Confirming` for a call never made until the 10 min timeout.
    #[test]
    fn a_requested_suspend_that_did_not_take_effect_is_decided_again() {
        let obs = suspending_obs("Synchronizing");
        let Decision::Call(call) = decide(&obs) else {
            panic!("a suspend")
        };
        // The mark was written, then the process died: the next reconcile reads.
        let mut obs = suspending_obs("Synchronizing");
        obs.status = call.base.clone();
        let decision = decide(&obs);
        let Decision::Call(read) = &decision else {
            panic!("a confirmation read")
        };
        assert_eq!(read.steps, [(Forward, crate::controller::decide::Step::Confirm)]);
        let out = record(
            &obs,
            &decision,
            Acted::Calls(vec![CallResult {
                direction: Forward,
                answer: Answer::Confirm(detail("Synchronizing")),
            }]),
        );
        assert_eq!(out.next, Next::Now, "decided again at once");
        let status = out.write.expect("the transition is dropped").status;
        assert_eq!(status.directions[0].transition, None);
        let mut again = suspending_obs("Synchronizing");
        again.status = status;
        let Decision::Call(call) = decide(&again) else {
            panic!("the suspend is sent again")
        };
        assert_eq!(call.steps, [(Forward, crate::controller::decide::Step::Suspend)]);
        assert!(call.marked, "behind a new mark");
    }

    /// An accepted suspend (`Confirming`) that DTS does not show yet is read
    /// again later, never sent again.
    #[test]
    fn an_accepted_suspend_not_shown_yet_is_not_sent_again() {
        let obs = suspending_obs("Synchronizing");
        let decision = decide(&obs);
        let first = record(
            &obs,
            &decision,
            Acted::Calls(vec![CallResult {
                direction: Forward,
                answer: Answer::Lifecycle(DesiredState::Suspended, ok("REQ-S")),
            }]),
        )
        .write
        .unwrap()
        .status;
        let mut obs = suspending_obs("Synchronizing");
        obs.status = first;
        let decision = decide(&obs);
        let out = record(
            &obs,
            &decision,
            Acted::Calls(vec![CallResult {
                direction: Forward,
                answer: Answer::Confirm(detail("Synchronizing")),
            }]),
        );
        assert_eq!(out.next, Next::After(Duration::from_secs(1)));
        let t = out.write.map(|w| w.status).unwrap_or(obs.status).directions[0]
            .transition
            .clone()
            .expect("still in flight");
        assert_eq!(t.state, TransitionState::Confirming);
    }

    #[test]
    fn a_refused_suspend_stalls_and_waits_for_new_inputs() {
        let obs = suspending_obs("Synchronizing");
        let decision = decide(&obs);
        let out = record(
            &obs,
            &decision,
            Acted::Calls(vec![CallResult {
                direction: Forward,
                answer: Answer::Lifecycle(DesiredState::Suspended, Err(terminal("InvalidJobStatus"))),
            }]),
        );
        let status = out.write.unwrap().status;
        let t = status.directions[0].transition.as_ref().unwrap();
        assert_eq!(t.state, TransitionState::Failed);
        let stalled = status.conditions.iter().find(|c| c.type_ == "Stalled").unwrap();
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", "InvalidJobStatus")
        );
        let mut again = suspending_obs("Synchronizing");
        again.status = status;
        assert!(
            matches!(decide(&again), Decision::Settle { .. }),
            "not sent again while the inputs are the same"
        );
    }
}

fn circuit(code: &str) -> crate::limits::CircuitInfo {
    crate::limits::CircuitInfo {
        key: "1a2b3c4d".into(),
        region: "cn-hangzhou".into(),
        group: crate::limits::breaker::Group::Credentials,
        code: code.into(),
        failures: 5,
        cooloff: Duration::from_secs(30),
        retry_in: Duration::from_secs(20),
    }
}

fn condition<'a>(s: &'a DtsJobStatus, type_: &str) -> (&'a str, &'a str) {
    let c = s.conditions.iter().find(|c| c.type_ == type_).unwrap();
    (c.status.as_str(), c.reason.as_str())
}

#[test]
fn a_stop_refused_by_the_circuit_after_its_mark_is_pending_again_and_not_retried_before_the_cooloff() {
    let two_way = spec(Some(DesiredState::Stopped), &[Forward, Reverse]);
    // Reverse had one earlier attempt, throttled.
    let obs = observed(
        two_way,
        DtsJobStatus {
            directions: vec![rec(Reverse, Pending)],
            ..Default::default()
        },
    );
    let decision = decide(&obs);
    let Decision::Call(call) = &decision else {
        unreachable!()
    };
    assert!(call.base.directions.iter().all(|r| r.state == Stopping), "both marked");
    // Forward refused; Reverse therefore never tried.
    let acted = Acted::Calls(vec![CallResult {
        direction: Forward,
        answer: Answer::Refused(circuit("InvalidAccessKeyId.NotFound")),
    }]);
    let out = record(&obs, &decision, acted);
    let w = out.write.expect("the mark is taken back");
    assert_eq!(w.precondition, None, "after the mark");
    let states: Vec<_> = w
        .status
        .directions
        .iter()
        .map(|r| (r.direction, r.state, r.attempts))
        .collect();
    assert_eq!(
        states,
        [(Forward, Pending, 0), (Reverse, Pending, 1)],
        "not sent for certain: Pending, and no attempt counted"
    );
    assert_eq!(condition(&w.status, "Ready"), ("False", "CircuitOpen"));
    assert_eq!(condition(&w.status, "Stalled"), ("True", "CircuitOpen"));
    assert_eq!(w.status.phase, Some(crate::crd::Phase::Pending));
    assert!(w.status.history.is_empty(), "nothing was sent");
    let events: Vec<_> = out.events.iter().map(|n| (n.type_, n.reason)).collect();
    assert_eq!(events, [(EventType::Warning, Reason::CircuitOpen)]);
    assert_eq!(
        out.next,
        Next::After(Duration::from_secs(20)),
        "the breaker's time, not a backoff"
    );
}

#[test]
fn a_failure_the_circuit_opened_on_is_recorded_and_waits_with_the_others() {
    let obs = observed_with(None);
    let decision = decide(&obs);
    let e = api_error("InvalidAccessKeyId.NotFound", ErrorClass::Terminal, 404);
    let acted = Acted::Calls(vec![CallResult {
        direction: Forward,
        answer: Answer::Tripped(
            Box::new(Answer::Stop(Err(e), None)),
            circuit("InvalidAccessKeyId.NotFound"),
        ),
    }]);
    let out = record(&obs, &decision, acted);
    let w = out.write.expect("a change");
    let r = &w.status.directions[0];
    assert_eq!(
        (r.state, r.attempts, r.failed_for.as_deref()),
        (Pending, 1, None),
        "sent: the attempt counts"
    );
    assert_eq!(r.error_code.as_deref(), Some("InvalidAccessKeyId.NotFound"));
    assert_eq!(r.request_id.as_deref(), Some("ERR-1"));
    let h = &w.status.history;
    assert_eq!(
        (h.len(), h[0].code.as_deref()),
        (1, Some("InvalidAccessKeyId.NotFound"))
    );
    assert_eq!(condition(&w.status, "Stalled"), ("True", "CircuitOpen"));
    assert_eq!(out.next, Next::After(Duration::from_secs(20)));
}

#[test]
fn a_describe_refused_by_the_circuit_stays_stopping() {
    let obs = observed_with(Some(Stopping));
    let decision = decide(&obs);
    let acted = Acted::Calls(vec![CallResult {
        direction: Forward,
        answer: Answer::Refused(circuit("ServiceUnavailable")),
    }]);
    let w = record(&obs, &decision, acted).write.expect("the condition changes");
    assert_eq!(
        w.status.directions[0].state, Stopping,
        "a stop may have been sent earlier"
    );
    assert_eq!(w.precondition.as_deref(), Some("7"), "no mark: from the cached view");
}

#[test]
fn the_first_call_after_the_circuit_closed_says_so() {
    // A job held by the breaker (what decide wrote), now allowed to call.
    let mut held = observed_with(None);
    held.circuit = crate::limits::Circuit::Open(circuit("InvalidAccessKeyId.NotFound"));
    let Decision::CircuitOpen { status, .. } = decide(&held) else {
        unreachable!()
    };
    let obs = observed(held.spec.clone(), status);
    let decision = decide(&obs);
    let acted = Acted::Calls(vec![CallResult {
        direction: Forward,
        answer: Answer::Stop(ok("REQ-1"), None),
    }]);
    let out = record(&obs, &decision, acted);
    let events: Vec<_> = out.events.iter().map(|n| (n.type_, n.reason)).collect();
    assert_eq!(
        events,
        [
            (EventType::Normal, Reason::CircuitClosed),
            (EventType::Normal, Reason::Stopped)
        ]
    );
    assert_eq!(condition(&out.write.unwrap().status, "Ready"), ("True", "Stopped"));
}

#[test]
fn a_held_job_looked_at_again_writes_nothing() {
    let mut obs = observed_with(None);
    obs.circuit = crate::limits::Circuit::Open(circuit("InvalidAccessKeyId.NotFound"));
    let first = record(&obs, &decide(&obs), Acted::NoCall);
    let w = first.write.expect("first: the condition");
    assert_eq!(first.next, Next::After(Duration::from_secs(20)));
    let mut again = observed(obs.spec.clone(), w.status);
    again.circuit = obs.circuit.clone();
    let second = record(&again, &decide(&again), Acted::NoCall);
    assert_eq!(second.write, None, "no status write per look while nothing changed");
    assert!(second.events.is_empty());
    assert_eq!(second.next, Next::After(Duration::from_secs(20)), "and no hot loop");
}
