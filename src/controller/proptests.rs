//! Property tests of the pure pipeline: random histories of spec flips
//! (Running / Suspended / Stopped), DTS answers (success, retryable,
//! ambiguous before or after the effect, terminal), crashes between the
//! Stopping mark and the record, 409s on the mark, and restarts that lose
//! the in-memory view, driven through decide → (mark) → act → record → the
//! stored status, against a simulated DTS with a real state machine.
//!
//! The properties (docs/design.md §2.1–§2.5):
//! * the status never claims a stop DTS did not make;
//! * at most one stop is accepted per direction and stop intent;
//! * after a stop whose outcome the operator does not know (no answer, or
//!   a crash before the answer was recorded), no StopDtsJob for that
//!   direction is sent before a DescribeDtsJobDetail of it was answered;
//!   a terminal describe failure ends that intent (the direction is
//!   `Failed`), and only a new intent may stop again;
//! * once DTS answers normally, the status settles on the truth: every
//!   listed direction Stopped, each stopped once.
//!
//! Case count: `PROPTEST_CASES` (default 256).

// The answers are built as DTS returns them (`Result<_, DtsError>`).
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;

use jiff::SignedDuration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;

use super::act::{Answer, CallResult};
use super::decide::{confirm_after, decide, record_of, Decision, Step};
use super::fixtures::{now, observed, spec};
use super::record::{record, Acted};
use crate::crd::{DesiredState, Direction, DirectionState, DtsJobStatus, Phase};
use crate::view::DtsView;
use dts_api::{ApiSuccess, DtsError, ErrorClass, ErrorKind, JobDetail, TransportError};

/// How DTS treats one call.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    Ok,
    /// Refused before any effect (throttling, 5xx).
    Retryable,
    /// No answer, and the call did not run (lost on the way in).
    AmbiguousBefore,
    /// No answer, but the call ran (lost on the way back).
    AmbiguousAfter,
    /// Refused for good (a missing RAM permission), no effect.
    Terminal,
}

#[derive(Clone, Debug)]
enum Event {
    /// A spec change to this desired state (a new generation).
    Flip(DesiredState),
    /// One reconcile; its calls meet these faults in order (then `Ok`).
    Reconcile(Vec<Fault>),
    /// A reconcile whose process dies after the mark was written: before
    /// its calls, or after them (DTS acted, nothing recorded).
    CrashAfterMark { calls_ran: bool, faults: Vec<Fault> },
    /// The mark's write is refused (409): nothing may be sent.
    MarkConflict,
    /// A new process: the in-memory DTS view is gone.
    Restart,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        4 => Just(Fault::Ok),
        2 => Just(Fault::Retryable),
        1 => Just(Fault::AmbiguousBefore),
        2 => Just(Fault::AmbiguousAfter),
        1 => Just(Fault::Terminal),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    let faults = || proptest::collection::vec(fault(), 0..4);
    prop_oneof![
        2 => prop_oneof![
            Just(DesiredState::Stopped),
            Just(DesiredState::Running),
            Just(DesiredState::Suspended)
        ]
        .prop_map(Event::Flip),
        6 => faults().prop_map(Event::Reconcile),
        2 => (any::<bool>(), faults()).prop_map(|(calls_ran, faults)| Event::CrashAfterMark { calls_ran, faults }),
        1 => Just(Event::MarkConflict),
        1 => Just(Event::Restart),
    ]
}

/// DTS's state machine for one job: per direction `Synchronizing`,
/// `Suspending` (suspended) or `Finished` (stopped for good).
struct Dts {
    status: BTreeMap<Direction, &'static str>,
    /// Whether a stop of a finished direction is answered success (real
    /// DTS's answer is not documented, dts-api.md §6.1) or refused.
    idempotent_stop: bool,
    /// Accepted stops, by (direction, the intent's fingerprint).
    accepted: BTreeMap<(Direction, String), u32>,
    seq: u32,
}

impl Dts {
    fn new(directions: &[Direction], idempotent_stop: bool) -> Self {
        Dts {
            status: directions.iter().map(|d| (*d, "Synchronizing")).collect(),
            idempotent_stop,
            accepted: BTreeMap::new(),
            seq: 0,
        }
    }

    fn rid(&mut self) -> String {
        self.seq += 1;
        format!("REQ-{}", self.seq)
    }

    fn ok(&mut self) -> Result<ApiSuccess, DtsError> {
        let rid = self.rid();
        Ok(ApiSuccess {
            request_id: Some(rid.clone()),
            http_status: 200,
            body: serde_json::json!({"RequestId": rid, "Success": true}),
        })
    }

    fn error(&mut self, fault: Fault, refusal: &str) -> DtsError {
        let api = |class, code: &str, http| DtsError {
            class,
            kind: ErrorKind::Api,
            http_status: Some(http),
            code: Some(code.into()),
            message: Some(format!("{code} happened")),
            request_id: Some(format!("ERR-{}", self.seq)),
            ..DtsError::invalid_request("")
        };
        match fault {
            Fault::Retryable => api(ErrorClass::Retryable, "Throttling.User", 400),
            Fault::AmbiguousBefore | Fault::AmbiguousAfter => DtsError::from_transport(&TransportError::Timeout),
            Fault::Terminal => api(ErrorClass::Terminal, "Forbidden.RAM", 403),
            Fault::Ok => api(ErrorClass::Terminal, refusal, 200),
        }
    }

    /// A call that changes the job: `effect` runs unless the fault stops it
    /// first; `Err(())` from `effect` is DTS refusing the state change.
    fn change(
        &mut self,
        fault: Fault,
        effect: impl FnOnce(&mut Self) -> Result<(), ()>,
    ) -> Result<ApiSuccess, DtsError> {
        match fault {
            Fault::Ok | Fault::AmbiguousAfter => match effect(self) {
                Ok(()) if fault == Fault::Ok => self.ok(),
                Ok(()) => Err(self.error(fault, "")),
                Err(()) => Err(self.error(Fault::Ok, "InvalidJobStatus")),
            },
            other => Err(self.error(other, "")),
        }
    }

    fn stop(&mut self, d: Direction, fault: Fault, intent: &str) -> Answer {
        let intent = intent.to_owned();
        let result = self.change(fault, |dts| {
            if dts.status[&d] == "Finished" && !dts.idempotent_stop {
                return Err(());
            }
            dts.status.insert(d, "Finished");
            *dts.accepted.entry((d, intent)).or_default() += 1;
            Ok(())
        });
        Answer::Stop(result, None)
    }

    fn lifecycle(&mut self, d: Direction, target: DesiredState, fault: Fault) -> Answer {
        let result = self.change(fault, |dts| {
            let next = match (dts.status[&d], target) {
                ("Finished", _) => return Err(()),
                (_, DesiredState::Suspended) => "Suspending",
                _ => "Synchronizing",
            };
            dts.status.insert(d, next);
            Ok(())
        });
        Answer::Lifecycle(target, result)
    }

    fn describe(&mut self, d: Direction, fault: Fault) -> Result<JobDetail, DtsError> {
        match fault {
            Fault::Ok => Ok(JobDetail {
                request_id: Some(self.rid()),
                http_status: 200,
                status: Some(self.status[&d].to_owned()),
                ..Default::default()
            }),
            other => Err(self.error(other, "")),
        }
    }
}

/// What a history exercised, so a test can show the histories are not
/// vacuous (every path below is taken across the cases).
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    stops_sent: u32,
    ambiguous_after_effect: u32,
    describes: u32,
    crashes_with_calls: u32,
    lifecycle_calls: u32,
    confirms: u32,
    /// Stops of a direction DTS had already finished (a new intent after a
    /// terminal failure: refused, or accepted again by an idempotent DTS).
    stops_of_finished: u32,
    already_stopped: u32,
}

/// The operator: what survives a crash (the stored status, the spec) and
/// what does not (the DTS view).
struct Sim {
    directions: Vec<Direction>,
    desired: Option<DesiredState>,
    generation: i64,
    requested_at: Option<String>,
    status: DtsJobStatus,
    view: DtsView,
    now: Time,
    dts: Dts,
    /// Per direction, the intent (fingerprint) of a stop whose outcome the
    /// operator does not know yet.
    unknown: BTreeMap<Direction, String>,
    /// Per direction, an intent whose unknown outcome ended in a terminal
    /// describe failure: it must not stop again.
    lost: BTreeMap<Direction, String>,
    /// The first broken property, found while acting.
    broken: Option<String>,
    stats: Stats,
}

impl Sim {
    fn observed(&self) -> super::observe::Observed {
        let mut obs = observed(spec(self.desired, &self.directions), self.status.clone());
        obs.generation = self.generation;
        obs.requested_at = self.requested_at.clone();
        obs.now = self.now.clone();
        obs.read_views(&self.view);
        obs
    }

    fn recorded(&self, d: Direction) -> Option<DirectionState> {
        let spec = spec(self.desired, &self.directions);
        record_of(&spec, &self.status.directions, d).map(|r| r.state)
    }

    /// The calls of one decision, as `act::run` sends them.
    fn act(&mut self, call: &super::decide::Call, faults: &[Fault]) -> Vec<CallResult> {
        let mut faults = faults.iter().copied();
        let mut next = move || faults.next().unwrap_or(Fault::Ok);
        let mut results = Vec::new();
        for (d, step) in &call.steps {
            let d = *d;
            let answer = match step {
                Step::Done => continue,
                Step::Describe => {
                    self.stats.describes += 1;
                    Answer::Describe(self.dts.describe(d, next()))
                }
                Step::Confirm => {
                    self.stats.confirms += 1;
                    Answer::Confirm(self.dts.describe(d, next()))
                }
                Step::Suspend | Step::Start => {
                    self.stats.lifecycle_calls += 1;
                    let target = if *step == Step::Suspend {
                        DesiredState::Suspended
                    } else {
                        DesiredState::Running
                    };
                    self.dts.lifecycle(d, target, next())
                }
                Step::Stop => {
                    let fault = next();
                    self.stats.stops_sent += 1;
                    if let Some(intent) = self.unknown.get(&d) {
                        self.broken.get_or_insert(format!(
                            "a second StopDtsJob of {d:?} while the outcome of the one for {intent} is unknown"
                        ));
                    }
                    if self.lost.get(&d) == Some(&call.fingerprint) {
                        self.broken.get_or_insert(format!(
                            "StopDtsJob of {d:?} again for the failed intent {}",
                            call.fingerprint
                        ));
                    }
                    if fault == Fault::AmbiguousAfter {
                        self.stats.ambiguous_after_effect += 1;
                    }
                    if self.dts.status[&d] == "Finished" {
                        self.stats.stops_of_finished += 1;
                    }
                    let answer = self.dts.stop(d, fault, &call.fingerprint);
                    if let Answer::Stop(Err(e), _) = &answer {
                        if e.class == ErrorClass::Ambiguous {
                            self.unknown.insert(d, call.fingerprint.clone());
                        }
                    }
                    match answer {
                        Answer::Stop(Err(e), None) if e.class == ErrorClass::Terminal && confirm_after(&e) => {
                            Answer::Stop(Err(e), Some(self.dts.describe(d, next())))
                        }
                        other => other,
                    }
                }
            };
            if let Answer::Describe(result) = &answer {
                match result {
                    Ok(_) => {
                        self.unknown.remove(&d);
                    }
                    Err(e) if e.class == ErrorClass::Terminal => {
                        if let Some(intent) = self.unknown.remove(&d) {
                            self.lost.insert(d, intent);
                        }
                    }
                    Err(_) => {}
                }
            }
            if let Answer::Describe(Ok(detail)) | Answer::Confirm(Ok(detail)) = &answer {
                self.view.put("cn-hangzhou", "job1", d, detail.into(), self.now.clone());
            }
            results.push(CallResult { direction: d, answer });
        }
        results
    }

    fn tick(&mut self) {
        self.now = Time(self.now.0 + SignedDuration::from_secs(30));
    }

    /// One reconcile; `Err` names a broken property.
    fn reconcile(&mut self, faults: &[Fault], crash: Option<bool>, conflict: bool) -> Result<bool, String> {
        self.tick();
        let obs = self.observed();
        let decision = decide(&obs);
        let acted = match &decision {
            Decision::Call(call) => {
                if call.marked && conflict {
                    Acted::Refused
                } else {
                    if call.marked {
                        self.status = call.base.clone();
                    }
                    if let Some(calls_ran) = crash.filter(|_| call.marked) {
                        if calls_ran {
                            self.stats.crashes_with_calls += 1;
                            let _ = self.act(call, faults);
                            // The answers died with the process.
                            for (d, step) in &call.steps {
                                if *step == Step::Stop {
                                    self.unknown.insert(*d, call.fingerprint.clone());
                                }
                            }
                        }
                        self.view = DtsView::default();
                        self.check()?;
                        return Ok(true);
                    }
                    Acted::Calls(self.act(call, faults))
                }
            }
            _ => Acted::NoCall,
        };
        let called = matches!(decision, Decision::Call(_));
        let outcome = record(&obs, &decision, acted);
        if outcome
            .events
            .iter()
            .any(|n| n.reason == crate::reason::Reason::AlreadyStopped)
        {
            self.stats.already_stopped += 1;
        }
        if let Some(w) = outcome.write {
            self.status = w.status;
        }
        self.check()?;
        Ok(called)
    }

    /// The properties that hold after every step.
    fn check(&self) -> Result<(), String> {
        for d in &self.directions {
            if self.recorded(*d) == Some(DirectionState::Stopped) && self.dts.status[d] != "Finished" {
                return Err(format!("{d:?} recorded Stopped but DTS shows {}", self.dts.status[d]));
            }
        }
        if let Some(((d, intent), n)) = self.dts.accepted.iter().find(|(_, n)| **n > 1) {
            return Err(format!("{n} accepted stops of {d:?} for intent {intent}"));
        }
        if let Some(broken) = &self.broken {
            return Err(broken.clone());
        }
        Ok(())
    }
}

fn run(directions: Vec<Direction>, idempotent_stop: bool, events: Vec<Event>) -> Result<Stats, TestCaseError> {
    let mut sim = Sim {
        dts: Dts::new(&directions, idempotent_stop),
        directions,
        desired: None,
        generation: 1,
        requested_at: None,
        status: DtsJobStatus::default(),
        view: DtsView::default(),
        now: now(),
        unknown: BTreeMap::new(),
        lost: BTreeMap::new(),
        broken: None,
        stats: Stats::default(),
    };
    let fail = |e: String, sim: &Sim| TestCaseError::fail(format!("{e}\nstatus: {:#?}", sim.status));
    for event in events {
        let step = match event {
            Event::Flip(d) => {
                if sim.desired != Some(d) {
                    sim.desired = Some(d);
                    sim.generation += 1;
                }
                Ok(true)
            }
            Event::Reconcile(faults) => sim.reconcile(&faults, None, false),
            Event::CrashAfterMark { calls_ran, faults } => sim.reconcile(&faults, Some(calls_ran), false),
            Event::MarkConflict => sim.reconcile(&[], None, true),
            Event::Restart => {
                sim.view = DtsView::default();
                Ok(true)
            }
        };
        step.map_err(|e| fail(e, &sim))?;
    }
    // The answers settle: the user wants the job stopped, and asks for a
    // retry of whatever failed (a new reconcile-requested-at); DTS answers
    // normally from now on.
    if sim.desired != Some(DesiredState::Stopped) {
        sim.desired = Some(DesiredState::Stopped);
        sim.generation += 1;
    }
    sim.requested_at = Some("settle".into());
    let mut quiet = false;
    for _ in 0..20 {
        if !sim.reconcile(&[], None, false).map_err(|e| fail(e, &sim))? {
            quiet = true;
            break;
        }
    }
    prop_assert!(quiet, "still calling after 20 normal reconciles: {:#?}", sim.status);
    for d in &sim.directions {
        prop_assert_eq!(sim.dts.status[d], "Finished", "{:?}", d);
        prop_assert_eq!(
            sim.recorded(*d),
            Some(DirectionState::Stopped),
            "{:?}: {:#?}",
            d,
            sim.status
        );
    }
    prop_assert_eq!(sim.status.phase, Some(Phase::Stopped), "{:#?}", sim.status);
    Ok(sim.stats)
}

fn history() -> impl Strategy<Value = (Vec<Direction>, bool, Vec<Event>)> {
    (any::<bool>(), any::<bool>(), proptest::collection::vec(event(), 0..40)).prop_map(|(two_way, idem, events)| {
        let directions = if two_way {
            vec![Direction::Forward, Direction::Reverse]
        } else {
            vec![Direction::Forward]
        };
        (directions, idem, events)
    })
}

proptest! {
    #[test]
    fn no_second_stop_and_the_status_settles_on_the_truth((directions, idempotent_stop, events) in history()) {
        run(directions, idempotent_stop, events)?;
    }
}

/// The histories reach every path the properties are about: ambiguous
/// stops that took effect, crashes after calls, suspends and starts,
/// confirms, and retries of a failed direction that DTS had finished.
#[test]
fn the_histories_exercise_every_path() {
    use proptest::test_runner::{Config, TestRunner};
    use proptest::test_runner::{RngAlgorithm, TestRng};
    // A fixed seed: which paths are reached must not vary between runs.
    let mut runner = TestRunner::new_with_rng(
        Config {
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let total = std::cell::Cell::new(Stats::default());
    runner
        .run(&history(), |(directions, idempotent_stop, events)| {
            let s = run(directions, idempotent_stop, events)?;
            let mut t = total.get();
            t.stops_sent += s.stops_sent;
            t.ambiguous_after_effect += s.ambiguous_after_effect;
            t.describes += s.describes;
            t.crashes_with_calls += s.crashes_with_calls;
            t.lifecycle_calls += s.lifecycle_calls;
            t.confirms += s.confirms;
            t.stops_of_finished += s.stops_of_finished;
            t.already_stopped += s.already_stopped;
            total.set(t);
            Ok(())
        })
        .expect("the properties hold");
    let t = total.get();
    println!("over {} histories: {t:?}", runner.config().cases);
    for (what, n) in [
        ("stops", t.stops_sent),
        ("ambiguous stops that took effect", t.ambiguous_after_effect),
        ("describes", t.describes),
        ("crashes after calls", t.crashes_with_calls),
        ("suspends/starts", t.lifecycle_calls),
        ("confirms", t.confirms),
        ("already-stopped readings", t.already_stopped),
        ("stops of a finished direction (new intents)", t.stops_of_finished),
    ] {
        assert!(n > 0, "no history reached {what}: {t:?}");
    }
}
