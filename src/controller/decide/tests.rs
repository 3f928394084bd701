//! The rules of `decide`, one row each, on plain values: no mock API.

use std::time::Duration;

use super::*;
use crate::controller::credentials::CredentialsError;
use crate::controller::fixtures::{observed, record, spec};
use crate::crd::DirectionState::*;
use crate::crd::Phase;
use Direction::*;

/// The fingerprint of the fixture's inputs (generation 1, Secret version 10).
const FP: &str = "generation=1;secret=10;requested=-";

/// What a row expects, in a shape a reader can check at a glance.
#[derive(Debug, PartialEq)]
enum Want {
    Standby,
    Wait,
    Finalizer(bool),
    Idle,
    Gauge(Vec<Direction>),
    Settle {
        phase: Phase,
        warning: Option<Reason>,
    },
    /// Held by an open circuit breaker: the phase, and whether a human must act.
    CircuitOpen {
        phase: Phase,
        stalled: bool,
    },
    /// The steps, and which directions the Stopping mark names (empty: no mark).
    Call {
        steps: Vec<(Direction, Step)>,
        marked: Vec<Direction>,
    },
}

fn rec(d: Direction, state: DirectionState, failed_for: Option<&str>) -> DirectionStatus {
    DirectionStatus {
        failed_for: failed_for.map(Into::into),
        ..record(d, state)
    }
}

fn status(records: Vec<DirectionStatus>) -> DtsJobStatus {
    DtsJobStatus {
        directions: records,
        ..Default::default()
    }
}

fn shape(d: &Decision) -> Want {
    match d {
        Decision::Standby => Want::Standby,
        Decision::Wait(_) => Want::Wait,
        Decision::Settle { status, events, .. } => Want::Settle {
            phase: status.phase.expect("a settled status has a phase"),
            warning: events
                .iter()
                .find(|(t, _, _)| *t == kube::runtime::events::EventType::Warning)
                .map(|(_, r, _)| *r),
        },
        Decision::CircuitOpen { status, .. } => Want::CircuitOpen {
            phase: status.phase.expect("a held status has a phase"),
            stalled: status
                .conditions
                .iter()
                .any(|c| c.type_ == "Stalled" && c.status == "True" && c.reason == "CircuitOpen"),
        },
        Decision::Finalizer(add) => Want::Finalizer(*add),
        Decision::Idle => Want::Idle,
        Decision::Gauge(d) => Want::Gauge(d.clone()),
        Decision::Call(c) => Want::Call {
            steps: c.steps.clone(),
            marked: c
                .marked
                .then_some(&c.base)
                .iter()
                .flat_map(|m| m.directions.iter())
                .filter(|r| r.state == Stopping)
                .map(|r| r.direction)
                .collect(),
        },
    }
}

type Tweak = fn(&mut Observed);

struct Row {
    rule: &'static str,
    desired: Option<DesiredState>,
    directions: &'static [Direction],
    records: Vec<DirectionStatus>,
    tweak: Tweak,
    want: Want,
}

fn none(_: &mut Observed) {}

fn deleting_under_stop(o: &mut Observed) {
    o.spec.deletion_policy = Some(crate::crd::DeletionPolicy::Stop);
    o.finalizers = vec![crate::crd::STOP_ON_DELETE_FINALIZER.into()];
    o.deleting = true;
}

fn stop_at_past(o: &mut Observed) {
    o.spec.stop_at = Some(Time("2026-11-27T09:59:59Z".parse().unwrap()));
}

fn stop_at_ahead(o: &mut Observed) {
    o.spec.stop_at = Some(Time("2026-11-27T10:00:01Z".parse().unwrap()));
}

fn gated(o: &mut Observed) {
    o.spec.stop_policy = Some(crate::crd::StopPolicy {
        max_delay_seconds: 5,
        deadline: None,
        on_deadline: None,
    });
}

fn rows() -> Vec<Row> {
    let stop = Some(DesiredState::Stopped);
    vec![
        Row {
            rule: "stopAt has come: a Running job is stopped as if desiredState were Stopped",
            desired: Some(DesiredState::Running),
            directions: &[Forward],
            records: vec![],
            tweak: stop_at_past,
            want: Want::Call {
                steps: vec![(Forward, Step::Stop)],
                marked: vec![Forward],
            },
        },
        Row {
            rule: "stopAt ahead: the job is held as desired and untouched",
            desired: None,
            directions: &[Forward],
            records: vec![],
            tweak: stop_at_ahead,
            want: Want::Settle {
                phase: Phase::Running,
                warning: None,
            },
        },
        Row {
            rule: "a delay-gated stop reads every direction before any mark",
            desired: stop,
            directions: &[Forward, Reverse],
            records: vec![],
            tweak: gated,
            want: Want::Gauge(vec![Forward, Reverse]),
        },
        Row {
            rule: "a delay-gated stop whose earlier outcome is unknown describes first, gauging nothing",
            desired: stop,
            directions: &[Forward, Reverse],
            records: vec![rec(Forward, Stopping, None)],
            tweak: gated,
            want: Want::Call {
                steps: vec![(Forward, Step::Describe)],
                marked: vec![],
            },
        },
        Row {
            rule: "nothing recorded: every listed direction gets one stop, marked first",
            desired: stop,
            directions: &[Forward, Reverse],
            records: vec![],
            tweak: none,
            want: Want::Call {
                steps: vec![(Forward, Step::Stop), (Reverse, Step::Stop)],
                marked: vec![Forward, Reverse],
            },
        },
        Row {
            rule: "a duplicated direction never gives two calls",
            desired: stop,
            directions: &[Forward, Forward],
            records: vec![],
            tweak: none,
            want: Want::Call {
                steps: vec![(Forward, Step::Stop)],
                marked: vec![Forward],
            },
        },
        Row {
            rule: "a stopped direction is never called again",
            desired: stop,
            directions: &[Forward, Reverse],
            records: vec![rec(Forward, Stopped, None)],
            tweak: none,
            want: Want::Call {
                steps: vec![(Reverse, Step::Stop)],
                marked: vec![Reverse],
            },
        },
        Row {
            rule: "every direction stopped: settle, no call",
            desired: stop,
            directions: &[Forward, Reverse],
            records: vec![rec(Forward, Stopped, None), rec(Reverse, Stopped, None)],
            tweak: none,
            want: Want::Settle {
                phase: Phase::Stopped,
                warning: None,
            },
        },
        Row {
            rule: "Stopping is described first, with no mark and no stop",
            desired: stop,
            directions: &[Forward],
            records: vec![rec(Forward, Stopping, None)],
            tweak: none,
            want: Want::Call {
                steps: vec![(Forward, Step::Describe)],
                marked: vec![],
            },
        },
        Row {
            rule: "a terminal failure waits while its fingerprint matches",
            desired: stop,
            directions: &[Forward],
            records: vec![rec(Forward, Failed, Some(FP))],
            tweak: none,
            want: Want::Settle {
                phase: Phase::Failed,
                warning: None,
            },
        },
        Row {
            rule: "a changed Secret is a new stop intent",
            desired: stop,
            directions: &[Forward],
            records: vec![rec(Forward, Failed, Some("generation=1;secret=9;requested=-"))],
            tweak: none,
            want: Want::Call {
                steps: vec![(Forward, Step::Stop)],
                marked: vec![Forward],
            },
        },
        Row {
            rule: "a new reconcile-requested-at is a new stop intent",
            desired: stop,
            directions: &[Forward],
            records: vec![rec(Forward, Failed, Some(FP))],
            tweak: |o| o.requested_at = Some("2026-12-01T00:00:00Z".into()),
            want: Want::Call {
                steps: vec![(Forward, Step::Stop)],
                marked: vec![Forward],
            },
        },
        Row {
            rule: "a new generation is a new stop intent",
            desired: stop,
            directions: &[Forward],
            records: vec![rec(Forward, Failed, Some(FP))],
            tweak: |o| o.generation = 2,
            want: Want::Call {
                steps: vec![(Forward, Step::Stop)],
                marked: vec![Forward],
            },
        },
        Row {
            rule: "a retryable failure is stopped again",
            desired: stop,
            directions: &[Forward],
            records: vec![rec(Forward, Pending, None)],
            tweak: none,
            want: Want::Call {
                steps: vec![(Forward, Step::Stop)],
                marked: vec![Forward],
            },
        },
        Row {
            rule: "a retry that is not due yet waits, writing nothing",
            desired: stop,
            directions: &[Forward],
            records: vec![rec(Forward, Pending, None)],
            tweak: |o| o.retry_in = Some(Duration::from_secs(5)),
            want: Want::Wait,
        },
        Row {
            rule: "without the Lease: standby, whatever is pending",
            desired: stop,
            directions: &[Forward, Reverse],
            records: vec![],
            tweak: |o| o.leader = false,
            want: Want::Standby,
        },
        Row {
            rule: "missing credentials: a condition and a Warning, no call",
            desired: stop,
            directions: &[Forward],
            records: vec![],
            tweak: |o| o.credentials = Credentials::Missing(CredentialsError::SecretNotFound("aliyun".into())),
            want: Want::Settle {
                phase: Phase::Pending,
                warning: Some(Reason::CredentialsSecretNotFound),
            },
        },
        Row {
            rule: "missing credentials do not matter when nothing is pending",
            desired: stop,
            directions: &[Forward],
            records: vec![rec(Forward, Stopped, None)],
            tweak: |o| o.credentials = Credentials::Missing(CredentialsError::NotConfigured),
            want: Want::Settle {
                phase: Phase::Stopped,
                warning: None,
            },
        },
        Row {
            rule: "desiredState unset: observe only",
            desired: None,
            directions: &[Forward, Reverse],
            records: vec![],
            tweak: none,
            want: Want::Settle {
                phase: Phase::Running,
                warning: None,
            },
        },
        Row {
            rule: "desiredState Running: observe only",
            desired: Some(DesiredState::Running),
            directions: &[Forward],
            records: vec![],
            tweak: none,
            want: Want::Settle {
                phase: Phase::Running,
                warning: None,
            },
        },
        Row {
            rule: "desiredState unset after a stop: still Stopped, no call",
            desired: None,
            directions: &[Forward],
            records: vec![rec(Forward, Stopped, None)],
            tweak: none,
            want: Want::Settle {
                phase: Phase::Stopped,
                warning: None,
            },
        },
        Row {
            rule: "Running after a stop: terminal, reported, no call",
            desired: Some(DesiredState::Running),
            directions: &[Forward],
            records: vec![rec(Forward, Stopped, None)],
            tweak: none,
            want: Want::Settle {
                phase: Phase::Stopped,
                warning: Some(Reason::RestartNotSupported),
            },
        },
        Row {
            rule: "deletionPolicy Stop: the finalizer is added before anything else",
            desired: None,
            directions: &[Forward],
            records: vec![],
            tweak: |o| o.spec.deletion_policy = Some(crate::crd::DeletionPolicy::Stop),
            want: Want::Finalizer(true),
        },
        Row {
            rule: "back to Orphan: the finalizer is removed",
            desired: None,
            directions: &[Forward],
            records: vec![],
            tweak: |o| o.finalizers = vec![crate::crd::STOP_ON_DELETE_FINALIZER.into()],
            want: Want::Finalizer(false),
        },
        Row {
            rule: "deleted under Stop: every listed direction is stopped, whatever desiredState says",
            desired: None,
            directions: &[Forward, Reverse],
            records: vec![],
            tweak: deleting_under_stop,
            want: Want::Call {
                steps: vec![(Forward, Step::Stop), (Reverse, Step::Stop)],
                marked: vec![Forward, Reverse],
            },
        },
        Row {
            rule: "deleted under Stop, already stopped: the finalizer goes, no call",
            desired: stop,
            directions: &[Forward, Reverse],
            records: vec![rec(Forward, Stopped, None), rec(Reverse, Stopped, None)],
            tweak: deleting_under_stop,
            want: Want::Finalizer(false),
        },
        Row {
            rule: "deleted under Stop, a job DTS does not know: it does not block the deletion",
            desired: stop,
            directions: &[Forward],
            records: vec![DirectionStatus {
                error_code: Some("Forbidden.InstanceNotFound".into()),
                ..rec(Forward, Failed, Some(FP))
            }],
            tweak: deleting_under_stop,
            want: Want::Finalizer(false),
        },
        Row {
            rule: "deleted under Stop, refused terminally for another reason: it waits (Stalled)",
            desired: stop,
            directions: &[Forward],
            records: vec![DirectionStatus {
                error_code: Some("Forbidden.RAM".into()),
                ..rec(Forward, Failed, Some(FP))
            }],
            tweak: deleting_under_stop,
            want: Want::Settle {
                phase: Phase::Failed,
                warning: None,
            },
        },
        Row {
            rule: "deleted under Orphan: nothing, not even a write",
            desired: stop,
            directions: &[Forward],
            records: vec![],
            tweak: |o| o.deleting = true,
            want: Want::Idle,
        },
        Row {
            rule: "a record of another jobId is not trusted",
            desired: stop,
            directions: &[Forward],
            records: vec![DirectionStatus {
                job_id: Some("old-job".into()),
                ..rec(Forward, Stopped, None)
            }],
            tweak: none,
            want: Want::Call {
                steps: vec![(Forward, Step::Stop)],
                marked: vec![Forward],
            },
        },
    ]
}

#[test]
fn decide_follows_the_rules_of_at_most_one_stop_per_intent() {
    let mut failures = Vec::new();
    for row in rows() {
        let mut obs = observed(spec(row.desired, row.directions), status(row.records));
        (row.tweak)(&mut obs);
        let got = shape(&decide(&obs));
        if got != row.want {
            failures.push(format!("{}:\n  want {:?}\n  got  {:?}", row.rule, row.want, got));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_mark_counts_the_attempt_and_clears_an_old_failure() {
    let mut old = rec(Forward, Failed, Some("generation=1;secret=9;requested=-"));
    old.attempts = 2;
    let obs = observed(spec(Some(DesiredState::Stopped), &[Forward]), status(vec![old]));
    let Decision::Call(call) = decide(&obs) else {
        panic!("a changed Secret is a new intent")
    };
    assert!(call.marked, "a stop is marked first");
    let mark = call.base;
    let r = &mark.directions[0];
    assert_eq!((r.state, r.attempts), (Stopping, 3));
    assert_eq!(r.failed_for, None);
    assert_eq!(r.last_attempt_time, Some(obs.now.clone()));
    assert_eq!(mark.phase, Some(Phase::Stopping));
    assert_eq!(call.fingerprint, FP, "a failure recorded now is tied to these inputs");
}

/// Observing reads credentials only when `may_call` says so; every row
/// whose decision is a call must be one where it does.
#[test]
fn credentials_are_read_whenever_a_call_can_follow() {
    for row in rows() {
        let mut obs = observed(spec(row.desired, row.directions), status(row.records));
        (row.tweak)(&mut obs);
        if let Decision::Call(_) = decide(&obs) {
            assert!(may_call(&obs), "{}", row.rule);
        }
    }
    let all_stopped = observed(
        spec(Some(DesiredState::Stopped), &[Forward]),
        status(vec![rec(Forward, Stopped, None)]),
    );
    assert!(!may_call(&all_stopped));
    assert!(!may_call(&observed(spec(None, &[Forward]), status(vec![]))));
}

#[test]
fn fingerprint_changes_with_each_input() {
    let base = fingerprint(3, Some("100"), None);
    assert_ne!(base, fingerprint(4, Some("100"), None));
    assert_ne!(base, fingerprint(3, Some("101"), None));
    assert_ne!(base, fingerprint(3, Some("100"), Some("2026-01-01T00:00:00Z")));
    assert_eq!(base, fingerprint(3, Some("100"), None));
}

#[test]
fn a_paused_job_settles_with_only_a_paused_condition() {
    let mut obs = observed(
        spec(Some(DesiredState::Stopped), &[Forward]),
        status(vec![rec(Forward, Pending, None)]),
    );
    obs.paused = true;
    let Decision::Settle { status, events, .. } = decide(&obs) else {
        panic!("paused: no call")
    };
    assert!(events.is_empty());
    assert_eq!(status.directions, obs.status.directions, "the records are untouched");
    let types: Vec<_> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, ["Paused"]);
}

// ---------- Running and Suspended ----------

mod hold {
    use super::*;
    use crate::crd::{ManagementPolicy, Transition, TransitionState};
    use crate::view::{DirectionView, Seen};

    fn seen(status: &str) -> Seen {
        Seen {
            view: DirectionView {
                status: Some(status.into()),
                delay_ms: Some(1200),
                ..Default::default()
            },
            read_at: crate::controller::fixtures::now(),
        }
    }

    fn transition(target: DesiredState, state: TransitionState, since: &str) -> Transition {
        Transition {
            target,
            state,
            since: Time(since.parse().unwrap()),
            request_id: Some("REQ-T".into()),
            error_code: None,
            error_message: None,
            failed_for: None,
        }
    }

    fn with_transition(t: Transition) -> DirectionStatus {
        DirectionStatus {
            transition: Some(Box::new(t)),
            ..DirectionStatus::new(Forward, "job1")
        }
    }

    /// (rule, desired, views, record, observe-only, want)
    type HoldRow = (
        &'static str,
        DesiredState,
        Vec<(Direction, &'static str)>,
        Option<DirectionStatus>,
        bool,
        Want,
    );

    fn rows() -> Vec<HoldRow> {
        use DesiredState::{Running, Suspended};
        let now = "2026-11-27T10:00:00Z";
        let a_minute_ago = "2026-11-27T09:59:00Z";
        let an_hour_ago = "2026-11-27T09:00:00Z";
        let settle = |phase, warning| Want::Settle { phase, warning };
        let call = |steps: Vec<(Direction, Step)>| Want::Call { steps, marked: vec![] };
        vec![
            (
                "Suspended, running in DTS: one SuspendDtsJob per direction",
                Suspended,
                vec![(Forward, "Synchronizing"), (Reverse, "Synchronizing")],
                None,
                false,
                call(vec![(Forward, Step::Suspend), (Reverse, Step::Suspend)]),
            ),
            (
                "Suspended, never read: suspend anyway",
                Suspended,
                vec![],
                None,
                false,
                call(vec![(Forward, Step::Suspend), (Reverse, Step::Suspend)]),
            ),
            (
                "Suspended and DTS shows Suspending: Ready, no call",
                Suspended,
                vec![(Forward, "suspending"), (Reverse, "Suspending")],
                None,
                false,
                settle(Phase::Suspended, None),
            ),
            (
                "a suspend in flight is confirmed by reading, never sent again",
                Suspended,
                vec![(Forward, "Synchronizing"), (Reverse, "Suspending")],
                Some(with_transition(transition(
                    Suspended,
                    TransitionState::Confirming,
                    a_minute_ago,
                ))),
                false,
                call(vec![(Forward, Step::Confirm)]),
            ),
            (
                "a suspend maybe sent (crash after the mark) is read first",
                Suspended,
                vec![(Forward, "Synchronizing"), (Reverse, "Suspending")],
                Some(with_transition(transition(Suspended, TransitionState::Requested, now))),
                false,
                call(vec![(Forward, Step::Confirm)]),
            ),
            (
                "a suspend DTS never shows ends TransitionNotConfirmed, no loop",
                Suspended,
                vec![(Forward, "Normal"), (Reverse, "Suspending")],
                Some(with_transition(transition(
                    Suspended,
                    TransitionState::Confirming,
                    an_hour_ago,
                ))),
                false,
                settle(Phase::Failed, Some(Reason::TransitionNotConfirmed)),
            ),
            (
                "Running, DTS shows Suspending (the console): started again under Manage",
                Running,
                vec![(Forward, "Suspending"), (Reverse, "Synchronizing")],
                None,
                false,
                call(vec![(Forward, Step::Start)]),
            ),
            (
                "Running, DTS shows Suspending, ObserveOnly: reported, no call",
                Running,
                vec![(Forward, "Suspending"), (Reverse, "Synchronizing")],
                None,
                true,
                settle(Phase::Running, Some(Reason::NotInDesiredState)),
            ),
            (
                "Running and running: Ready, no call",
                Running,
                vec![(Forward, "Synchronizing"), (Reverse, "Migrating")],
                None,
                false,
                settle(Phase::Running, None),
            ),
            (
                "Running, never read: no call (as before any reading)",
                Running,
                vec![],
                None,
                false,
                settle(Phase::Running, None),
            ),
            (
                "DTS reports Failed: Stalled, no call",
                Running,
                vec![(Forward, "Failed"), (Reverse, "Synchronizing")],
                None,
                false,
                settle(Phase::Failed, Some(Reason::DtsJobFailed)),
            ),
            (
                "DTS reports Finished while to run: Stalled, no call",
                Suspended,
                vec![(Forward, "Finished"), (Reverse, "Suspending")],
                None,
                false,
                settle(Phase::Failed, Some(Reason::JobFinished)),
            ),
        ]
    }

    #[test]
    fn decide_holds_running_and_suspended() {
        let mut failures = Vec::new();
        for (rule, desired, views, record, observe_only, want) in rows() {
            let mut obs = observed(
                spec(Some(desired), &[Forward, Reverse]),
                status(record.into_iter().collect()),
            );
            obs.views = views.into_iter().map(|(d, s)| (d, seen(s))).collect();
            if observe_only {
                obs.spec.management_policy = Some(ManagementPolicy::ObserveOnly);
            }
            let got = shape(&decide(&obs));
            if got != want {
                failures.push(format!("{rule}:\n  want {want:?}\n  got  {got:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn a_suspend_is_marked_requested_before_it_is_sent() {
        let mut obs = observed(spec(Some(DesiredState::Suspended), &[Forward]), status(vec![]));
        obs.views = vec![(Forward, seen("Synchronizing"))];
        let Decision::Call(call) = decide(&obs) else {
            panic!("a suspend is due")
        };
        assert!(call.marked);
        let t = call.base.directions[0].transition.as_ref().expect("marked");
        assert_eq!(
            (t.target, t.state),
            (DesiredState::Suspended, TransitionState::Requested)
        );
        assert_eq!(t.since, obs.now);
        assert_eq!(
            call.why,
            [(Forward, "DTS shows Synchronizing, desired Suspended".to_owned())]
        );
        let observed = call.base.directions[0]
            .observed
            .as_ref()
            .expect("DTS's view is recorded");
        assert_eq!(
            (observed.status.as_deref(), observed.delay_ms),
            (Some("Synchronizing"), Some(1200))
        );
    }

    #[test]
    fn a_view_that_did_not_change_writes_nothing() {
        let mut obs = observed(spec(Some(DesiredState::Running), &[Forward]), status(vec![]));
        obs.views = vec![(Forward, seen("Synchronizing"))];
        let Decision::Settle { status: first, .. } = decide(&obs) else {
            panic!("settle")
        };
        // Read again later, same answer: the status the server holds already says so.
        let mut again = observed(obs.spec.clone(), first.clone());
        let mut later = seen("Synchronizing");
        later.read_at = Time("2026-11-27T10:05:00Z".parse().unwrap());
        again.views = vec![(Forward, later)];
        let Decision::Settle { status: second, .. } = decide(&again) else {
            panic!("settle")
        };
        assert_eq!(first, second, "the read time alone is not a change");
    }

    #[test]
    fn observe_only_reports_a_failed_job_as_stalled_with_one_warning() {
        let mut obs = observed(spec(None, &[Forward]), status(vec![]));
        let mut failed = seen("Failed");
        failed.view.error_message = Some("source database unreachable".into());
        obs.views = vec![(Forward, failed)];
        let Decision::Settle { status, events, .. } = decide(&obs) else {
            panic!("observe only: no call")
        };
        assert_eq!(status.phase, Some(Phase::Failed));
        let stalled = status.conditions.iter().find(|c| c.type_ == "Stalled").unwrap();
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", "DtsJobFailed")
        );
        assert!(stalled.message.contains("source database unreachable"), "{stalled:?}");
        assert_eq!(
            events.iter().map(|(t, r, _)| (*t, *r)).collect::<Vec<_>>(),
            [(kube::runtime::events::EventType::Warning, Reason::DtsJobFailed)]
        );
        // The same view again: the status holds it already, nothing new.
        let mut again = observed(obs.spec.clone(), status.clone());
        again.views = obs.views.clone();
        let Decision::Settle { status: same, .. } = decide(&again) else {
            panic!("settle")
        };
        assert_eq!(same, status);
    }

    #[test]
    fn dts_showing_finished_before_the_first_stop_needs_no_stop() {
        let mut obs = observed(spec(Some(DesiredState::Stopped), &[Forward]), status(vec![]));
        obs.views = vec![(Forward, seen("FINISHED"))];
        let Decision::Settle { status, events, .. } = decide(&obs) else {
            panic!("no call for a job DTS shows Finished")
        };
        assert_eq!(status.phase, Some(Phase::Stopped));
        let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "AlreadyStopped")
        );
        assert!(events.iter().any(|(_, r, _)| *r == Reason::AlreadyStopped));
    }
}

#[test]
fn replication_progress_alone_is_written_only_on_the_heartbeat() {
    use crate::view::{DirectionView, Seen};
    let view = |delay: i64, at: &str| Seen {
        view: DirectionView {
            status: Some("Synchronizing".into()),
            delay_ms: Some(delay),
            checkpoint: Some(1_764_547_200 + delay),
            error_message: None,
        },
        read_at: Time(at.parse().unwrap()),
    };
    let mut obs = observed(spec(Some(DesiredState::Running), &[Forward]), status(vec![]));
    obs.views = vec![(Forward, view(100, "2026-11-27T10:00:00Z"))];
    let Decision::Settle { status: first, .. } = decide(&obs) else {
        panic!("settle")
    };
    // Five minutes later the delay moved: no write.
    let mut later = observed(obs.spec.clone(), first.clone());
    later.views = vec![(Forward, view(250, "2026-11-27T10:05:00Z"))];
    let Decision::Settle { status: second, .. } = decide(&later) else {
        panic!("settle")
    };
    assert_eq!(second, first, "progress before the heartbeat is not a write");
    // Past the heartbeat: written, with the read time.
    let mut much_later = observed(obs.spec.clone(), first.clone());
    much_later.views = vec![(Forward, view(300, "2026-11-27T10:11:00Z"))];
    let Decision::Settle { status: third, .. } = decide(&much_later) else {
        panic!("settle")
    };
    let o = third.directions[0].observed.as_ref().unwrap();
    assert_eq!(
        (o.delay_ms, o.observed_at.0.to_string().as_str()),
        (Some(300), "2026-11-27T10:11:00Z")
    );
}

/// After a restart the in-memory view is empty: what the status recorded
/// stands in for it, so a suspended job is not suspended again (and a job
/// never read is still suspended, as before).
#[test]
fn a_restarted_operator_acts_on_the_recorded_view_not_blind() {
    use crate::crd::Observation;
    use crate::view::DtsView;
    let mut r = record(Forward, Pending);
    r.observed = Some(Observation {
        status: Some("Suspending".into()),
        delay_ms: None,
        checkpoint: None,
        error_message: None,
        observed_at: crate::controller::fixtures::now(),
    });
    let mut obs = observed(spec(Some(DesiredState::Suspended), &[Forward]), status(vec![r]));
    obs.read_views(&DtsView::default());
    assert!(
        matches!(decide(&obs), Decision::Settle { .. }),
        "recorded Suspending: nothing to send"
    );

    let mut never_read = observed(spec(Some(DesiredState::Suspended), &[Forward]), status(vec![]));
    never_read.read_views(&DtsView::default());
    assert!(matches!(decide(&never_read), Decision::Call(_)));
}

/// An open circuit for the fixture's credentials, after `code`.
fn open_circuit(group: crate::limits::breaker::Group, code: &str) -> crate::limits::Circuit {
    crate::limits::Circuit::Open(crate::limits::CircuitInfo {
        key: "1a2b3c4d".into(),
        region: "cn-hangzhou".into(),
        group,
        code: code.into(),
        failures: 5,
        cooloff: Duration::from_secs(30),
        retry_in: Duration::from_secs(12),
    })
}

fn failed_with(d: Direction, code: &str) -> DirectionStatus {
    DirectionStatus {
        error_code: Some(code.into()),
        error_message: Some(format!("{code} happened")),
        ..rec(d, Failed, Some(FP))
    }
}

#[test]
fn an_open_circuit_holds_the_calls_without_a_mark_and_says_why() {
    use crate::limits::breaker::Group;
    let two_way = spec(Some(DesiredState::Stopped), &[Forward, Reverse]);
    let cases = [
        (
            "nothing recorded: held, stalled on the credentials",
            status(vec![]),
            open_circuit(Group::Credentials, "InvalidAccessKeyId.NotFound"),
            Want::CircuitOpen {
                phase: Phase::Pending,
                stalled: true,
            },
        ),
        (
            "a 5xx storm: held, but the operator retries by itself",
            status(vec![]),
            open_circuit(Group::Unavailable, "ServiceUnavailable"),
            Want::CircuitOpen {
                phase: Phase::Pending,
                stalled: false,
            },
        ),
        (
            "a failure of the circuit's class is the key's: held with the others",
            status(vec![
                failed_with(Forward, "InvalidAccessKeyId.NotFound"),
                rec(Reverse, Stopped, None),
            ]),
            open_circuit(Group::Credentials, "InvalidAccessKeyId.NotFound"),
            Want::CircuitOpen {
                phase: Phase::Pending,
                stalled: true,
            },
        ),
        (
            "a failure of another class is the job's own: it stays Failed",
            status(vec![
                failed_with(Forward, "InvalidParameter"),
                rec(Reverse, Stopped, None),
            ]),
            open_circuit(Group::Credentials, "InvalidAccessKeyId.NotFound"),
            Want::Settle {
                phase: Phase::Failed,
                warning: None,
            },
        ),
        (
            "everything stopped: nothing to hold",
            status(vec![rec(Forward, Stopped, None), rec(Reverse, Stopped, None)]),
            open_circuit(Group::Credentials, "InvalidAccessKeyId.NotFound"),
            Want::Settle {
                phase: Phase::Stopped,
                warning: None,
            },
        ),
        (
            "holding the probe: the calls are made, marked first",
            status(vec![]),
            crate::limits::Circuit::Probe,
            Want::Call {
                steps: vec![(Forward, Step::Stop), (Reverse, Step::Stop)],
                marked: vec![Forward, Reverse],
            },
        ),
    ];
    for (rule, before, circuit, want) in cases {
        let mut obs = observed(two_way.clone(), before);
        obs.circuit = circuit;
        assert_eq!(shape(&decide(&obs)), want, "{rule}");
    }
}

#[test]
fn a_held_job_shows_the_code_and_the_secret_to_fix_and_is_looked_at_after_the_cooloff() {
    use crate::limits::breaker::Group;
    let mut sp = spec(Some(DesiredState::Stopped), &[Forward]);
    sp.credentials_secret_ref = Some(crate::crd::SecretReference {
        name: "dts-creds".into(),
    });
    let mut obs = observed(sp, status(vec![failed_with(Forward, "InvalidAccessKeyId.NotFound")]));
    obs.circuit = open_circuit(Group::Credentials, "InvalidAccessKeyId.NotFound");
    let Decision::CircuitOpen {
        status: s,
        events,
        retry_in,
    } = decide(&obs)
    else {
        panic!("held");
    };
    assert_eq!(retry_in, Duration::from_secs(12));
    let stalled = s.conditions.iter().find(|c| c.type_ == "Stalled").unwrap();
    assert_eq!(
        stalled.message,
        "DTS calls with AccessKey 1a2b3c4d in cn-hangzhou are paused: 5 calls in a row failed with \
         InvalidAccessKeyId.NotFound; one call tests the credentials every 30s; check accessKeyId and \
         accessKeySecret (and securityToken, if set) in Secret dts-creds"
    );
    let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "CircuitOpen"));
    // The failure is the key's now: Pending, with what DTS said kept.
    let r = &s.directions[0];
    assert_eq!((r.state, r.failed_for.as_deref()), (Pending, None));
    assert_eq!(r.error_code.as_deref(), Some("InvalidAccessKeyId.NotFound"));
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].0, events[0].1), (EventType::Warning, Reason::CircuitOpen));

    // Looked at again with the circuit still open: the same status, no new Event.
    let mut again = observed(obs.spec.clone(), s.clone());
    again.circuit = obs.circuit.clone();
    let Decision::CircuitOpen { status: s2, events, .. } = decide(&again) else {
        panic!("held");
    };
    assert_eq!(s2, s, "nothing changes while it stays open");
    assert!(events.is_empty(), "the Warning is published once");
}

#[test]
fn a_stopping_direction_stays_stopping_under_an_open_circuit() {
    use crate::limits::breaker::Group;
    let mut obs = observed(
        spec(Some(DesiredState::Stopped), &[Forward]),
        status(vec![rec(Forward, Stopping, None)]),
    );
    obs.circuit = open_circuit(Group::Unavailable, "InternalError");
    let Decision::CircuitOpen { status: s, .. } = decide(&obs) else {
        panic!("held");
    };
    assert_eq!(
        s.directions[0].state, Stopping,
        "a call may have been sent: describe first, later"
    );
    let reconciling = s.conditions.iter().find(|c| c.type_ == "Reconciling").unwrap();
    assert_eq!(
        (reconciling.status.as_str(), reconciling.reason.as_str()),
        ("True", "CircuitOpen")
    );
}

/// The default source's version stands where a Secret's resourceVersion
/// does: a job that failed terminally on the old credentials directory (or
/// the old RRSA credentials) is stopped again once they change, and not
/// before.
#[test]
fn a_terminal_failure_on_default_credentials_is_retried_when_their_version_changes() {
    let failed_on = fingerprint(1, Some("dir:aaaa"), None);
    let mut obs = observed(
        spec(Some(DesiredState::Stopped), &[Forward]),
        status(vec![rec(Forward, Failed, Some(&failed_on))]),
    );
    let with_version = |obs: &mut Observed, v: &str| {
        obs.credentials = Credentials::Ready(crate::controller::credentials::Resolved {
            credentials: dts_api::Credentials::new("LTAIdir", "dir-secret"),
            secret_version: Some(v.into()),
            source: "DefaultCredentialsDir".into(),
        });
    };
    with_version(&mut obs, "dir:aaaa");
    assert!(
        matches!(decide(&obs), Decision::Settle { .. }),
        "same file: not retried"
    );
    with_version(&mut obs, "dir:bbbb");
    let Decision::Call(call) = decide(&obs) else {
        panic!("a rotated file retries the stop")
    };
    assert_eq!(call.steps, vec![(Forward, Step::Stop)]);
    assert_eq!(call.base.credentials_source.as_deref(), Some("DefaultCredentialsDir"));
}
