//! Record (pure): what a decision and the answers DTS gave mean for the
//! status, the Events and the next reconcile.
//!
//! How each answer is recorded:
//! * success → `Stopped` with its RequestId; a describe that shows the job
//!   `Finished` counts the same;
//! * retryable → `Pending`, retried after the backoff (never before
//!   `x-acs-retry-after`);
//! * ambiguous → stays `Stopping`, so the next attempt describes first;
//! * terminal → `Failed`, tied to the decision's fingerprint, unless the
//!   describe that followed shows the job already finished (`AlreadyStopped`);
//! * not sent (the Lease was lost while the call waited) → as marked;
//! * refused by the open circuit breaker of the job's credentials → not
//!   sent for certain, so every mark of this reconcile is taken back (a
//!   direction marked `Stopping` is `Pending` again, a `Requested`
//!   transition is gone) and the job shows `CircuitOpen` until the breaker
//!   lets it call; a failure the breaker is open for ([`Answer::Tripped`])
//!   is recorded with its RequestId and waits the same way.

use std::time::Duration;

use kube::runtime::events::EventType;

use super::act::{Answer, CallResult};
use super::decide;
use super::decide::{record_of_mut, Call, Decision};
use super::observe::Observed;
use super::status::{self, Blocked};
use crate::crd::{
    CallRecord, DesiredState, Direction, DirectionState, DirectionStatus, DtsJobStatus, TransitionState, HISTORY_LIMIT,
};
use crate::limits::CircuitInfo;
use crate::reason::Reason;
use crate::view::DirectionView;
use dts_api::{ApiSuccess, DtsError, ErrorClass, JobDetail};

/// How long to wait before deciding again after a write was refused with
/// 409 (the watch cache is behind, or somebody else wrote).
pub const CONFLICT_RETRY: Duration = Duration::from_millis(500);

/// What the calls of a [`Decision::Call`] came to.
#[derive(Debug)]
pub enum Acted {
    /// No call was due (every other decision).
    NoCall,
    /// The write before the calls (the Stopping mark, or the finalizer)
    /// was refused (409) or not sent (the Lease is gone): nothing was sent.
    Refused,
    /// The answers, in the order of the steps (possibly fewer).
    Calls(Vec<CallResult>),
}

/// A status write.
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    pub status: DtsJobStatus,
    /// The resourceVersion the status was computed from, when it was
    /// computed from the watch cache: a 409 then means "decide again". None
    /// after the Stopping mark, whose write made the base current.
    pub precondition: Option<String>,
}

/// An Event to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    pub type_: EventType,
    pub reason: Reason,
    /// `Reconcile`, or `Stop` followed by the directions (`StopForwardReverse`).
    pub action: String,
    pub note: String,
}

/// When to reconcile again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing pending: forget the backoff, wait for a change.
    Settled,
    /// Not the leader: wait for a change (or for the Lease).
    Standby,
    /// The next step is known and may run at once.
    Now,
    /// Decide again after this long; the backoff is left as it is.
    After(Duration),
    /// A call failed retryably: back off, never less than `floor`.
    Retry { floor: Option<Duration> },
}

/// The result of one reconcile, to be written.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// None when nothing changed.
    pub write: Option<Write>,
    pub events: Vec<Note>,
    pub next: Next,
}

impl Outcome {
    fn quiet(next: Next) -> Self {
        Self {
            write: None,
            events: Vec::new(),
            next,
        }
    }
}

/// Records what `decision` and the answers in `acted` mean.
pub fn record(obs: &Observed, decision: &Decision, acted: Acted) -> Outcome {
    match (decision, acted) {
        (Decision::Standby | Decision::Idle, _) => Outcome::quiet(Next::Standby),
        (Decision::Finalizer(_), Acted::Refused) => Outcome::quiet(Next::After(CONFLICT_RETRY)),
        // Added: decide again at once (the stop-on-delete rules now apply).
        (Decision::Finalizer(true), _) => Outcome::quiet(Next::Now),
        (Decision::Finalizer(false), _) => Outcome::quiet(Next::Settled),
        (Decision::Wait(wait), _) => Outcome::quiet(Next::After(*wait)),
        (Decision::Settle { status, events, wake }, _) => {
            settled(obs, status, events, wake.map_or(Next::Settled, Next::After))
        }
        (
            Decision::CircuitOpen {
                status,
                events,
                retry_in,
            },
            _,
        ) => settled(obs, status, events, Next::After(*retry_in)),
        // Never recorded: the orchestrator reads and decides again.
        (Decision::Gauge(_), _) => Outcome::quiet(Next::After(CONFLICT_RETRY)),
        (Decision::Call(_), Acted::Refused | Acted::NoCall) => Outcome::quiet(Next::After(CONFLICT_RETRY)),
        (Decision::Call(call), Acted::Calls(results)) => record_calls(obs, call, results),
    }
}

/// A decision without calls: `status` is written when it changed, with
/// `events` (published once, with the write that shows them).
fn settled(obs: &Observed, status: &DtsJobStatus, events: &[(EventType, Reason, String)], next: Next) -> Outcome {
    if *status == obs.status {
        return Outcome::quiet(next);
    }
    let events = events
        .iter()
        .map(|(type_, reason, message)| Note {
            type_: *type_,
            reason: *reason,
            action: "Reconcile".into(),
            note: message.clone(),
        })
        .collect();
    Outcome {
        write: Some(Write {
            status: status.clone(),
            precondition: obs.resource_version.clone(),
        }),
        events,
        next,
    }
}

/// What accumulates over the answers of one reconcile.
#[derive(Default)]
struct Tally {
    notes: Vec<(EventType, Reason, Direction, String)>,
    /// Events not tied to one call (found while applying DTS's view).
    reconcile_notes: Vec<(EventType, Reason, String)>,
    /// The soonest confirmation due.
    confirm_in: Option<Duration>,
    retry: bool,
    floor: Option<Duration>,
    again: bool,
}

impl Tally {
    fn note(&mut self, type_: EventType, reason: Reason, d: Direction, text: String) {
        self.notes.push((type_, reason, d, text));
    }
    fn retry(&mut self, e: &DtsError) {
        self.retry = true;
        self.floor = self.floor.max(e.retry_after);
    }
}

fn record_calls(obs: &Observed, call: &Call, results: Vec<CallResult>) -> Outcome {
    let base = &call.base;
    let mut directions = base.directions.clone();
    let mut t = Tally::default();
    for (type_, reason, text) in &call.events {
        t.reconcile_notes.push((*type_, *reason, text.clone()));
    }
    let mut history = Vec::new();
    // The breaker holding the job, if a call was refused or tripped it.
    let mut circuit: Option<CircuitInfo> = None;
    let mut sent = Vec::new();
    for CallResult { direction: d, answer } in results {
        calls_of(obs, d, &answer, &mut history);
        if !matches!(answer, Answer::NotSent | Answer::Refused(_)) {
            sent.push(d);
        }
        let r = record_of_mut(&mut directions, &obs.spec, d);
        match answer {
            Answer::NotSent => {}
            Answer::Refused(info) => circuit = Some(info),
            Answer::Tripped(answer, info) => {
                held(r, *answer);
                circuit = Some(info);
            }
            Answer::Describe(Ok(detail)) if detail.is_finished() => {
                success(r, detail.request_id.clone(), detail.http_status);
                let text = with_request_id(
                    format!("{d}: DescribeDtsJobDetail reports the job Finished"),
                    &detail.request_id,
                );
                t.note(EventType::Normal, Reason::Stopped, d, text);
            }
            Answer::Describe(Ok(_)) => {
                // The earlier call did not take effect: a stop is next, and
                // it is marked Stopping again before it is sent.
                r.state = DirectionState::Pending;
                t.again = true;
            }
            Answer::Describe(Err(e)) if e.class == ErrorClass::Terminal => fail(r, &e, call, &mut t),
            Answer::Describe(Err(e)) => {
                failure(r, &e);
                t.retry(&e);
            }
            Answer::Stop(Ok(ok), _) => {
                success(r, ok.request_id.clone(), ok.http_status);
                let text = with_request_id(format!("{d}: StopDtsJob succeeded"), &ok.request_id);
                t.note(EventType::Normal, Reason::Stopped, d, text);
            }
            Answer::Stop(Err(e), _) if e.class == ErrorClass::Retryable => {
                r.state = DirectionState::Pending;
                failure(r, &e);
                t.retry(&e);
                t.note(
                    EventType::Warning,
                    Reason::RetryScheduled,
                    d,
                    format!("{d}: {e}; retrying"),
                );
            }
            Answer::Stop(Err(e), _) if e.class == ErrorClass::Ambiguous => {
                r.state = DirectionState::Stopping;
                failure(r, &e);
                t.retry = true;
                let text = format!("{d}: {e}; the job will be described before any new call");
                t.note(EventType::Warning, Reason::StopOutcomeUnknown, d, text);
            }
            Answer::Stop(Err(e), Some(Ok(detail))) if detail.is_finished() => {
                failure(r, &e);
                r.state = DirectionState::Stopped;
                r.failed_for = None;
                let text = with_request_id(
                    format!(
                        "{d}: DTS reports the job already finished ({})",
                        Reason::for_dts_error(&e)
                    ),
                    &e.request_id,
                );
                t.note(EventType::Normal, Reason::AlreadyStopped, d, text);
            }
            Answer::Stop(Err(e), _) => fail(r, &e, call, &mut t),
            Answer::Lifecycle(target, result) => {
                let why = call
                    .why
                    .iter()
                    .find(|(w, _)| *w == d)
                    .map(|(_, w)| w.clone())
                    .unwrap_or_default();
                lifecycle(obs, call, r, target, result, &why, &mut t);
            }
            Answer::Confirm(result) => confirm(obs, r, result, &mut t),
        }
    }
    let blocked = circuit.as_ref().map(|info| Blocked::circuit(info, &obs.spec));
    if let Some(b) = &blocked {
        // Certainly not sent: the marks of this reconcile are taken back.
        unmark(obs, call, &mut directions, &sent);
        if !status::circuit_open(&obs.status) {
            t.reconcile_notes
                .push((EventType::Warning, Reason::CircuitOpen, b.message.clone()));
        }
    } else if status::circuit_open(&obs.status) && !sent.is_empty() {
        t.reconcile_notes.push((
            EventType::Normal,
            Reason::CircuitClosed,
            "the circuit breaker of the credentials is closed: DTS calls resume".to_owned(),
        ));
    }
    let mut status = status::build(obs, &call.intent, directions, blocked.as_ref(), base);
    status.history.extend(history);
    let excess = status.history.len().saturating_sub(HISTORY_LIMIT);
    status.history.drain(..excess);
    // Compared with what the server holds: the mark when one was written,
    // else the observed status (DTS's view applied is a change too).
    let held = if call.marked { &call.base } else { &obs.status };
    let write = (status != *held).then(|| Write {
        status,
        precondition: (!call.marked).then(|| obs.resource_version.clone()).flatten(),
    });
    let next = if let Some(info) = &circuit {
        // The breaker decides when to look again, not the backoff.
        Next::After(info.retry_in)
    } else if t.retry {
        Next::Retry { floor: t.floor }
    } else if t.again || obs.deleting {
        // Being deleted: decide again at once, to let the finalizer go.
        Next::Now
    } else if let Some(wait) = t.confirm_in {
        Next::After(wait)
    } else {
        Next::Settled
    };
    let mut events: Vec<Note> = t
        .reconcile_notes
        .into_iter()
        .map(|(type_, reason, note)| Note {
            type_,
            reason,
            action: "Reconcile".into(),
            note,
        })
        .collect();
    events.extend(group(t.notes));
    Outcome { write, events, next }
}

/// The history entries of one direction's answer: every call that changed
/// the job or decided a stop.
fn described(r: &Result<JobDetail, DtsError>) -> Result<Option<String>, &DtsError> {
    r.as_ref().map(|ok| ok.request_id.clone())
}

fn stopped(r: &Result<ApiSuccess, DtsError>) -> Result<Option<String>, &DtsError> {
    r.as_ref().map(|ok| ok.request_id.clone())
}

fn calls_of(obs: &Observed, d: Direction, answer: &Answer, out: &mut Vec<CallRecord>) {
    let entry = |action: &str, result: Result<Option<String>, &DtsError>| {
        let (request_id, outcome, code) = match result {
            Ok(request_id) => (request_id, "success", None),
            Err(e) => (
                e.request_id.clone(),
                e.class.as_str(),
                Some(e.code.clone().unwrap_or_else(|| e.reason().as_str().to_owned())),
            ),
        };
        CallRecord {
            time: obs.now.clone(),
            action: action.to_owned(),
            direction: d,
            request_id,
            outcome: outcome.to_owned(),
            code,
        }
    };
    match answer {
        Answer::NotSent | Answer::Refused(_) => {}
        Answer::Tripped(answer, _) => calls_of(obs, d, answer, out),
        Answer::Describe(r) => out.push(entry("DescribeDtsJobDetail", described(r))),
        Answer::Stop(r, confirm) => {
            out.push(entry("StopDtsJob", stopped(r)));
            if let Some(c) = confirm {
                out.push(entry("DescribeDtsJobDetail", described(c)));
            }
        }
        Answer::Lifecycle(target, r) => {
            let action = match target {
                DesiredState::Suspended => "SuspendDtsJob",
                _ => "StartDtsJob",
            };
            out.push(entry(action, stopped(r)));
        }
        // Confirmation reads are left out: a few per suspend or start would
        // push the RequestIds of the calls that changed the job out of the
        // ten kept.
        Answer::Confirm(_) => {}
    }
}

/// A SuspendDtsJob or StartDtsJob answer.
fn lifecycle(
    obs: &Observed,
    call: &Call,
    r: &mut DirectionStatus,
    target: DesiredState,
    result: Result<ApiSuccess, DtsError>,
    why: &str,
    t: &mut Tally,
) {
    let d = r.direction;
    let (action, waiting) = match target {
        DesiredState::Suspended => ("SuspendDtsJob", Reason::Suspending),
        _ => ("StartDtsJob", Reason::Starting),
    };
    let Some(tr) = r.transition.as_mut() else { return };
    match result {
        Ok(ok) => {
            tr.state = TransitionState::Confirming;
            tr.request_id = ok.request_id.clone();
            tr.error_code = None;
            tr.error_message = None;
            let wait = decide::confirm_delay(&tr.since, &obs.now);
            t.confirm_in = Some(t.confirm_in.map_or(wait, |w| w.min(wait)));
            let text = with_request_id(format!("{d}: {why}: {action} accepted"), &ok.request_id);
            t.note(EventType::Normal, waiting, d, text);
        }
        Err(e) if e.class == ErrorClass::Retryable => {
            // Not executed: nothing is in flight; decided again after the backoff.
            r.transition = None;
            t.retry(&e);
            t.note(
                EventType::Warning,
                Reason::RetryScheduled,
                d,
                format!("{d}: {action}: {e}; retrying"),
            );
        }
        Err(e) if e.class == ErrorClass::Ambiguous => {
            // Maybe executed: stays Requested, so the next attempt looks first.
            tr.request_id = e.request_id.clone();
            t.retry = true;
            let text = format!("{d}: {action}: {e}; DTS will be read before any new call");
            t.note(EventType::Warning, Reason::StopOutcomeUnknown, d, text);
        }
        Err(e) => {
            tr.state = TransitionState::Failed;
            tr.request_id = e.request_id.clone();
            tr.error_code = Some(e.code.clone().unwrap_or_else(|| e.reason().as_str().to_owned()));
            tr.error_message = Some(e.message.clone().unwrap_or_else(|| e.to_string()));
            tr.failed_for = Some(call.fingerprint.clone());
            t.note(
                EventType::Warning,
                Reason::for_dts_error(&e),
                d,
                format!("{d}: {action}: {e}"),
            );
        }
    }
}

/// A DescribeDtsJobDetail read after a suspend or start.
fn confirm(obs: &Observed, r: &mut DirectionStatus, result: Result<JobDetail, DtsError>, t: &mut Tally) {
    let d = r.direction;
    match result {
        Ok(detail) => {
            let view = DirectionView::from(&detail);
            r.observed = Some(view.observation(&obs.now));
            let Some(tr) = r.transition.as_mut() else { return };
            if decide::reached(&view, tr.target) {
                let reason = if tr.target == DesiredState::Suspended {
                    Reason::Suspended
                } else {
                    Reason::Running
                };
                let shown = detail.status.as_deref().unwrap_or("?");
                let text = with_request_id(format!("{d}: DTS shows {shown}"), &detail.request_id);
                t.note(EventType::Normal, reason, d, text);
                r.transition = None;
            } else if tr.state == TransitionState::Requested && decide::actionable(&view, tr.target) {
                // No answer was recorded (the process died between the mark
                // and the record, or the answer was ambiguous) and DTS still
                // shows the state the call moves the job from: the call did
                // not take effect. As for a `Stopping` direction described
                // not Finished (docs/design.md §2.3), the call is decided
                // again at once, behind a new mark.
                r.transition = None;
                t.again = true;
            } else {
                tr.state = TransitionState::Confirming;
                let wait = decide::confirm_delay(&tr.since, &obs.now);
                t.confirm_in = Some(t.confirm_in.map_or(wait, |w| w.min(wait)));
            }
        }
        Err(e) => {
            // Looking failed: look again after the backoff.
            t.retry(&e);
        }
    }
}

/// A failure the key's breaker is open for: recorded, but the direction
/// waits for the breaker instead of failing or backing off on its own.
fn held(r: &mut DirectionStatus, answer: Answer) {
    match answer {
        // Refused before it took effect (credentials, permission, 5xx).
        Answer::Stop(Err(e), _) => {
            r.state = DirectionState::Pending;
            failure(r, &e);
        }
        // Still Stopping: the outcome of the earlier stop is unknown.
        Answer::Describe(Err(e)) => failure(r, &e),
        // Not executed: nothing is in flight.
        Answer::Lifecycle(_, Err(_)) => r.transition = None,
        _ => {}
    }
}

/// Takes back the marks of the steps whose call was not sent (`sent` lists
/// the directions whose call was): each direction as it was before this
/// reconcile marked it. A direction marked `Stopping` means "a call may
/// have been sent"; these certainly were not, and leaving them `Stopping`
/// would cost a describe first and show a stop in progress that is not.
fn unmark(obs: &Observed, call: &Call, directions: &mut Vec<DirectionStatus>, sent: &[Direction]) {
    for (d, step) in &call.steps {
        if !call.marked || !step.changes_the_job() || sent.contains(d) {
            continue;
        }
        let before = decide::record_of(&obs.spec, &obs.status.directions, *d).cloned();
        let r = record_of_mut(directions, &obs.spec, *d);
        match step {
            decide::Step::Stop => {
                r.state = DirectionState::Pending;
                r.attempts = before.as_ref().map_or(0, |b| b.attempts);
                r.last_attempt_time = before.as_ref().and_then(|b| b.last_attempt_time.clone());
            }
            _ => r.transition = before.and_then(|b| b.transition),
        }
    }
}

fn success(r: &mut DirectionStatus, request_id: Option<String>, http_status: u16) {
    r.state = DirectionState::Stopped;
    r.request_id = request_id;
    r.http_status_code = Some(i32::from(http_status));
    r.error_code = None;
    r.error_message = None;
    r.dynamic_code = None;
    r.dynamic_message = None;
    r.failed_for = None;
}

fn failure(r: &mut DirectionStatus, e: &DtsError) {
    status::record_failure(r, e);
}

/// A terminal failure: not retried while the decision's fingerprint holds.
fn fail(r: &mut DirectionStatus, e: &DtsError, call: &Call, t: &mut Tally) {
    r.state = DirectionState::Failed;
    failure(r, e);
    r.failed_for = Some(call.fingerprint.clone());
    let d = r.direction;
    t.note(EventType::Warning, Reason::for_dts_error(e), d, format!("{d}: {e}"));
}

fn with_request_id(text: String, request_id: &Option<String>) -> String {
    match request_id {
        Some(id) => format!("{text} (RequestId {id})"),
        None => text,
    }
}

/// One Event per (type, reason) per reconcile, naming every direction and
/// RequestId, with the directions in its `action` (`StopForward`,
/// `StopForwardReverse`): the event recorder folds Events with the same
/// (type, action, reason) into one series that keeps the first note, so
/// without the directions in the action a direction stopped in a later
/// reconcile (after a retry) would never show its RequestId.
fn group(notes: Vec<(EventType, Reason, Direction, String)>) -> Vec<Note> {
    let mut grouped: Vec<(EventType, Reason, Vec<Direction>, String)> = Vec::new();
    for (type_, reason, direction, note) in notes {
        match grouped.iter_mut().find(|(t, r, _, _)| *t == type_ && *r == reason) {
            Some((_, _, directions, existing)) => {
                if !directions.contains(&direction) {
                    directions.push(direction);
                }
                existing.push_str("; ");
                existing.push_str(&note);
            }
            None => grouped.push((type_, reason, vec![direction], note)),
        }
    }
    grouped
        .into_iter()
        .map(|(type_, reason, mut directions, note)| {
            directions.sort();
            let action = directions.iter().fold("Stop".to_owned(), |acc, d| acc + d.as_str());
            Note {
                type_,
                reason,
                action,
                note,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
