//! Decide (pure): from one [`Observed`] view, what this reconcile does.
//!
//! No I/O and no clock. The rules are the heart of "at most one stop per
//! stop intent" (docs/design.md §2):
//! * a direction DTS confirmed stopped is never called again;
//! * a direction left `Stopping` (a call was, or may have been, sent and its
//!   outcome is unknown) is described with DescribeDtsJobDetail first;
//! * a terminal failure is not retried while its fingerprint (generation,
//!   Secret version, reconcile-requested-at) still matches;
//! * a paused DtsJob (`kubedts.io/paused: "true"`) gets no call and no
//!   change beyond its `Paused` condition;
//! * every StopDtsJob is preceded by the `Stopping` mark, written under the
//!   resourceVersion this decision was made on ([`Call::mark`]), so a stale
//!   view or a second writer ends in a 409 instead of a second call;
//! * while the circuit breaker of the job's credentials is open, nothing is
//!   called or marked ([`Decision::CircuitOpen`]).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;

use super::cutover::{self, Gate};
use super::observe::{Credentials, Observed};
use super::status::{self, Blocked};
use crate::crd::{
    DesiredState, Direction, DirectionState, DirectionStatus, DtsJobSpec, DtsJobStatus, Transition, TransitionState,
};
use crate::limits::breaker::group_of_code;
use crate::limits::{Circuit, CircuitInfo};
use crate::reason::Reason;
use crate::view::DirectionView;
use dts_api::DtsError;

/// The next step for one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do: stopped, or failed terminally for the current inputs.
    Done,
    /// The outcome of an earlier call is unknown: describe before any stop.
    Describe,
    /// Send StopDtsJob.
    Stop,
    /// Send SuspendDtsJob.
    Suspend,
    /// Send StartDtsJob.
    Start,
    /// A suspend or start was (or may have been) sent: read the direction
    /// with DescribeDtsJobDetail until DTS shows its target.
    Confirm,
}

impl Step {
    /// Whether the step is a call that changes the job (and so is marked first).
    pub fn changes_the_job(self) -> bool {
        matches!(self, Step::Stop | Step::Suspend | Step::Start)
    }
}

/// What the spec asks of the resource as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Intent {
    /// `desiredState` is unset, or Running and nothing was stopped: observe only.
    Observe,
    /// `desiredState: Running` after a stop: DTS cannot restart a stopped job.
    RestartNotSupported,
    /// `desiredState: Stopped`: one step per listed direction, in spec order.
    Stop(Vec<(Direction, Step)>),
    /// `desiredState: Running` or `Suspended`: hold each listed direction there.
    Hold(DesiredState, Vec<(Direction, Step)>),
}

impl Intent {
    /// The directions that need a DTS call now.
    pub fn pending(&self) -> Vec<(Direction, Step)> {
        match self {
            Intent::Stop(steps) | Intent::Hold(_, steps) => {
                steps.iter().copied().filter(|(_, s)| *s != Step::Done).collect()
            }
            _ => Vec::new(),
        }
    }
}

/// What one reconcile does.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// This replica does not hold the Lease: no call, no write.
    Standby,
    /// Calls are due but a retry is scheduled later: wait, write nothing.
    Wait(Duration),
    /// No call: write `status` (when it changed), with `events` published
    /// alongside that write; decide again after `wake` (a delay-gated stop
    /// that waits), else only on a change.
    Settle {
        status: DtsJobStatus,
        events: Vec<(EventType, Reason, String)>,
        wake: Option<Duration>,
    },
    /// A delay-gated stop is due: read these directions with
    /// DescribeDtsJobDetail (into `Observed::gauge`), then decide again.
    Gauge(Vec<Direction>),
    /// Calls are needed.
    Call(Call),
    /// Calls are due but the circuit breaker of the job's credentials is
    /// open: no call and no mark; write `status` (when it changed, with
    /// `events`) and decide again after `retry_in` (the cool-off's end, or
    /// the probe's).
    CircuitOpen {
        status: DtsJobStatus,
        events: Vec<(EventType, Reason, String)>,
        retry_in: Duration,
    },
    /// Add (`true`) or remove (`false`) the stop-on-delete finalizer; no call.
    Finalizer(bool),
    /// The object is going away and nothing is left to do: no call, no write.
    Idle,
}

/// The calls of one reconcile.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub intent: Intent,
    /// The pending steps, in spec order.
    pub steps: Vec<(Direction, Step)>,
    /// The status the answers are recorded on: the mark when there is one,
    /// else the observed status with DTS's latest view applied.
    pub base: DtsJobStatus,
    /// Whether `base` is a mark to write before any call (a step changes
    /// the job): each stopped direction `Stopping` with its attempt counted,
    /// each suspended or started one with a `Requested` transition. Written
    /// under the observed resourceVersion; a refusal (409) cancels the calls.
    pub marked: bool,
    /// Why each suspend or start is sent (what DTS showed), for its Event.
    pub why: Vec<(Direction, String)>,
    /// The inputs a terminal failure recorded now is tied to.
    pub fingerprint: String,
    /// Events found while applying DTS's view, published with the calls'.
    pub events: Vec<(EventType, Reason, String)>,
}

/// Decides what to do with `obs`.
pub fn decide(obs: &Observed) -> Decision {
    if !obs.leader {
        return Decision::Standby;
    }
    if obs.paused {
        return Decision::Settle {
            status: status::paused(obs),
            events: Vec::new(),
            wake: None,
        };
    }
    match (obs.deleting, obs.has_finalizer(), obs.wants_finalizer()) {
        // Deleted without the finalizer: the DTS job is left alone.
        (true, false, _) => return Decision::Idle,
        // The policy was switched back to Orphan: let go.
        (_, true, false) => return Decision::Finalizer(false),
        (false, false, true) => return Decision::Finalizer(true),
        (true, true, true) if stopped_for_deletion(obs) => return Decision::Finalizer(false),
        _ => {}
    }
    let fingerprint = fingerprint(obs.generation, obs.secret_version(), obs.requested_at.as_deref());
    let (mut current, mut events) = refreshed(obs, &fingerprint);
    if let Circuit::Open(info) = &obs.circuit {
        held_by_circuit(&mut current.directions, &obs.spec, info, &fingerprint);
    }
    let intent = intent(obs, &current.directions, &fingerprint);
    let steps = intent.pending();
    let settle = |blocked: Option<Blocked>, mut events: Vec<(EventType, Reason, String)>| {
        let status = status::build(obs, &intent, current.directions.clone(), blocked.as_ref(), &obs.status);
        match (&intent, blocked) {
            (_, Some(b)) => events.push((EventType::Warning, b.reason, b.message)),
            (Intent::RestartNotSupported, None) => events.push((
                EventType::Warning,
                Reason::RestartNotSupported,
                status::condition_message(&status, status::STALLED),
            )),
            (Intent::Hold(..) | Intent::Observe, None) => events.extend(hold_warning(&status)),
            _ => {}
        }
        Decision::Settle {
            status,
            events,
            wake: None,
        }
    };
    if steps.is_empty() {
        return settle(None, events);
    }
    if let Circuit::Open(info) = &obs.circuit {
        // Only ever open with credentials at hand (observe asks only then).
        let blocked = Blocked::circuit(info, &obs.spec);
        let status = status::build(obs, &intent, current.directions.clone(), Some(&blocked), &obs.status);
        if !status::circuit_open(&obs.status) {
            events.push((EventType::Warning, Reason::CircuitOpen, blocked.message));
        }
        return Decision::CircuitOpen {
            status,
            events,
            retry_in: info.retry_in,
        };
    }
    match &obs.credentials {
        Credentials::Ready(_) => {}
        Credentials::Missing(e) => {
            let blocked = Blocked::stalled(e.reason(), e.to_string());
            return settle(Some(blocked), events);
        }
        // Observing reads the credentials whenever `may_call` holds, and it
        // holds whenever a step is pending; without them nothing is sent.
        Credentials::NotNeeded => return Decision::Standby,
    }
    if let Some(wait) = obs.retry_in {
        return Decision::Wait(wait);
    }
    let mut steps = steps;
    let gate;
    if obs.spec.stop_policy.is_some() && steps.iter().any(|(_, s)| *s == Step::Describe) {
        // An earlier stop's outcome is unknown: look first; the gate is
        // asked once every direction is known not to be stopping.
        steps.retain(|(_, s)| *s == Step::Describe);
    }
    let stops: Vec<Direction> = steps
        .iter()
        .filter(|(_, s)| *s == Step::Stop)
        .map(|(d, _)| *d)
        .collect();
    match cutover::gate(obs, &stops, &fingerprint) {
        Gate::Open { gate: g, event } => {
            gate = g;
            events.extend(event);
        }
        Gate::Gauge(directions) => return Decision::Gauge(directions),
        Gate::Wait { gate, wake, event } => {
            let status = status::gated(obs, &intent, current.directions.clone(), gate);
            return Decision::Settle {
                status,
                events: events.into_iter().chain(event).collect(),
                wake: Some(wake),
            };
        }
        Gate::Stall { gate, event } => {
            let status = status::gated(obs, &intent, current.directions.clone(), gate);
            return Decision::Settle {
                status,
                events: events.into_iter().chain(event).collect(),
                wake: None,
            };
        }
        Gate::Failed(failures) => {
            let mut directions = current.directions.clone();
            for (d, e) in failures {
                let r = record_of_mut(&mut directions, &obs.spec, d);
                r.state = DirectionState::Failed;
                status::record_failure(r, &e);
                r.failed_for = Some(fingerprint.clone());
                events.push((
                    EventType::Warning,
                    Reason::for_dts_error(&e),
                    format!("{d}: DescribeDtsJobDetail before the stop: {e}"),
                ));
            }
            let mut status = status::build(obs, &intent, directions, None, &obs.status);
            status.stop_gate = None;
            return Decision::Settle {
                status,
                events,
                wake: None,
            };
        }
        Gate::Invalid(message) => {
            return settle(Some(Blocked::stalled(Reason::InvalidStopPolicy, message)), events);
        }
    }
    let marked = steps.iter().any(|(_, s)| s.changes_the_job());
    let mut directions = current.directions.clone();
    let mut why = Vec::new();
    for (d, step) in &steps {
        match step {
            Step::Stop => mark_stopping(&mut directions, obs, *d),
            Step::Suspend | Step::Start => {
                let target = if *step == Step::Suspend {
                    DesiredState::Suspended
                } else {
                    DesiredState::Running
                };
                why.push((*d, why_transition(obs, &obs.status.directions, *d, target)));
                record_of_mut(&mut directions, &obs.spec, *d).transition = Some(Box::new(Transition {
                    target,
                    state: TransitionState::Requested,
                    since: obs.now.clone(),
                    request_id: None,
                    error_code: None,
                    error_message: None,
                    failed_for: None,
                }));
            }
            _ => {}
        }
    }
    let mut base = status::build(obs, &intent, directions, None, &obs.status);
    if gate.is_some() {
        base.stop_gate = gate.map(Box::new);
    }
    Decision::Call(Call {
        intent,
        steps,
        base,
        marked,
        why,
        fingerprint,
        events,
    })
}

/// How long DTS may take to show the target of an accepted suspend or
/// start before the transition ends as `TimedOut` (`TransitionNotConfirmed`).
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(600);

/// The longest pause between two confirmations (they start at 1 s and double).
pub const CONFIRM_MAX_INTERVAL: Duration = Duration::from_secs(300);

/// DTS statuses of a direction that is running (compared case-insensitively).
const RUNNING_STATUSES: &[&str] = &["Synchronizing", "Migrating", "Initializing", "Normal", "Catched"];

/// Whether DTS's view shows `target`.
pub fn reached(view: &DirectionView, target: DesiredState) -> bool {
    match target {
        DesiredState::Suspended => view.status_is("Suspending"),
        DesiredState::Running => RUNNING_STATUSES.iter().any(|s| view.status_is(s)),
        DesiredState::Stopped => view.status_is("Finished"),
    }
}

/// Whether the operator drives a direction DTS shows as `view` to `target`:
/// it suspends a running job and starts a suspended or not-started one, and
/// leaves every other state (Failed, Finished, Prechecking...) to a human.
pub fn actionable(view: &DirectionView, target: DesiredState) -> bool {
    match target {
        DesiredState::Suspended => reached(view, DesiredState::Running),
        DesiredState::Running => view.status_is("Suspending") || view.status_is("NotStarted"),
        DesiredState::Stopped => false,
    }
}

/// The observed status with DTS's latest view applied: each direction's
/// `observed` (only when the view changed: the read time alone is not a
/// change), transitions DTS now confirms or that timed out, and stops DTS
/// already shows done. Returns the Events these changes deserve.
fn refreshed(obs: &Observed, fingerprint: &str) -> (DtsJobStatus, Vec<(EventType, Reason, String)>) {
    let mut status = obs.status.clone();
    let mut events = Vec::new();
    let stopping = obs.stop_due();
    for d in listed_directions(&obs.spec) {
        let Some(seen) = obs.view(d) else { continue };
        let view = &seen.view;
        let r = record_of_mut(&mut status.directions, &obs.spec, d);
        // A new state is written at once; progress (delay, checkpoint) only
        // once the heartbeat has passed, so a poll of a running job writes
        // nothing (the read time alone is never a reason to write).
        let worth = r
            .observed
            .as_ref()
            .is_none_or(|o| DirectionView::from(o).worth_passing_on(&o.observed_at, view, &seen.read_at));
        if worth {
            r.observed = Some(view.observation(&seen.read_at));
        }
        if let Some(t) = r.transition.as_mut() {
            if matches!(t.state, TransitionState::Requested | TransitionState::Confirming) {
                if reached(view, t.target) {
                    let reason = if t.target == DesiredState::Suspended {
                        Reason::Suspended
                    } else {
                        Reason::Running
                    };
                    let shown = view.status.as_deref().unwrap_or("?");
                    events.push((EventType::Normal, reason, format!("{d}: DTS shows {shown}")));
                    r.transition = None;
                } else if elapsed(&t.since, &obs.now) > CONFIRM_TIMEOUT {
                    t.state = TransitionState::TimedOut;
                    t.failed_for = Some(fingerprint.to_owned());
                    let shown = view.status.as_deref().unwrap_or("?");
                    let text = format!(
                        "{d}: DTS accepted the call but still shows {shown} after {} s",
                        CONFIRM_TIMEOUT.as_secs()
                    );
                    events.push((EventType::Warning, Reason::TransitionNotConfirmed, text));
                }
            }
        }
        if stopping && r.state == DirectionState::Pending && reached(view, DesiredState::Stopped) {
            r.state = DirectionState::Stopped;
            r.failed_for = None;
            let text = format!("{d}: DTS shows the job Finished; no StopDtsJob sent");
            events.push((EventType::Normal, Reason::AlreadyStopped, text));
        }
    }
    (status, events)
}

/// Time from `since` to `now`.
pub fn elapsed(since: &Time, now: &Time) -> Duration {
    let secs = now.0.as_second().saturating_sub(since.0.as_second());
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// When to confirm again, `since` a call: 1 s, then as long as it has been
/// (so 1, 2, 4, 8 s ...), at most [`CONFIRM_MAX_INTERVAL`].
pub fn confirm_delay(since: &Time, now: &Time) -> Duration {
    elapsed(since, now).clamp(Duration::from_secs(1), CONFIRM_MAX_INTERVAL)
}

/// The Event text of a suspend or start: what DTS showed, and whether the
/// difference came from outside (DTS had shown the target before).
fn why_transition(obs: &Observed, before: &[DirectionStatus], d: Direction, target: DesiredState) -> String {
    let shown = obs
        .view(d)
        .and_then(|s| s.view.status.clone())
        .unwrap_or_else(|| "no status yet".into());
    let was_there = record_of(&obs.spec, before, d)
        .and_then(|r| r.observed.as_ref())
        .is_some_and(|o| reached(&DirectionView::from(o), target));
    let wanted = match target {
        DesiredState::Suspended => "Suspended",
        _ => "Running",
    };
    if was_there {
        format!("DTS shows {shown} (changed outside the operator), desired {wanted}")
    } else {
        format!("DTS shows {shown}, desired {wanted}")
    }
}

/// The Warning a settled observed, Running or Suspended DtsJob deserves:
/// ObserveOnly with DTS in another state, DTS reporting the job Failed or
/// Finished. Published once, with the write that shows it.
fn hold_warning(status: &DtsJobStatus) -> Option<(EventType, Reason, String)> {
    let ready = status.conditions.iter().find(|c| c.type_ == status::READY)?;
    // Stalled is there only while True.
    if let Some(stalled) = status.conditions.iter().find(|c| c.type_ == status::STALLED) {
        let reason = Reason::ALL.iter().find(|r| r.as_str() == stalled.reason)?;
        return Some((EventType::Warning, *reason, stalled.message.clone()));
    }
    (ready.reason == Reason::NotInDesiredState.as_str())
        .then(|| (EventType::Warning, Reason::NotInDesiredState, ready.message.clone()))
}

/// Whether any call may be needed, whatever the credentials: only then are
/// they read. (No real fingerprint is empty, so every terminal failure
/// counts as pending here.)
pub fn may_call(obs: &Observed) -> bool {
    !intent(obs, &obs.status.directions, "").pending().is_empty()
}

/// Whether a DtsJob being deleted under `deletionPolicy: Stop` may go: every
/// listed direction is stopped, or DTS no longer knows the job.
fn stopped_for_deletion(obs: &Observed) -> bool {
    listed_directions(&obs.spec).into_iter().all(|d| {
        record_of(&obs.spec, &obs.status.directions, d).is_some_and(|r| match r.state {
            DirectionState::Stopped => true,
            DirectionState::Failed => r.error_code.as_deref().map(Reason::for_dts_code) == Some(Reason::JobNotFound),
            _ => false,
        })
    })
}

/// After a terminal answer to a stop, whether to ask DescribeDtsJobDetail if
/// the job already finished: not when the credentials or the clock were
/// refused, since the same request would be refused again.
pub fn confirm_after(e: &DtsError) -> bool {
    !matches!(
        Reason::for_dts_error(e),
        Reason::AuthenticationFailed | Reason::AccessDenied | Reason::ClockSkew
    )
}

/// The record of `direction` for the spec's current job, if any. A record
/// written for another jobId (the spec was retargeted while not Stopped) is
/// ignored rather than trusted.
pub fn record_of<'a>(
    spec: &DtsJobSpec,
    records: &'a [DirectionStatus],
    direction: Direction,
) -> Option<&'a DirectionStatus> {
    records
        .iter()
        .find(|d| d.direction == direction && d.job_id.as_deref().is_none_or(|id| id == spec.job_id))
}

/// The record of `d` to update, created (or replaced, when it belongs to
/// another jobId) as needed; records stay sorted by direction.
pub fn record_of_mut<'a>(
    directions: &'a mut Vec<DirectionStatus>,
    spec: &DtsJobSpec,
    d: Direction,
) -> &'a mut DirectionStatus {
    let fresh = |d| DirectionStatus::new(d, &spec.job_id);
    let i = match directions.iter().position(|r| r.direction == d) {
        Some(i) => {
            if directions[i].job_id.as_deref().is_some_and(|id| id != spec.job_id) {
                directions[i] = fresh(d);
            }
            i
        }
        None => {
            directions.push(fresh(d));
            directions.sort_by_key(|r| r.direction);
            directions.iter().position(|r| r.direction == d).unwrap_or(0)
        }
    };
    &mut directions[i]
}

/// While the circuit breaker of the job's credentials is open for a class
/// of failures, a direction that failed terminally with a code of that class
/// for the current inputs (its own call was refused just before the breaker
/// opened) is held by the breaker too: back to `Pending`, its error kept, so
/// that it is stopped once the breaker closes (a probe answered, or new
/// credentials) instead of staying `Failed` for a reason that was the key's.
fn held_by_circuit(directions: &mut [DirectionStatus], spec: &DtsJobSpec, info: &CircuitInfo, fingerprint: &str) {
    let of_group = |code: Option<&str>| code.and_then(group_of_code) == Some(info.group);
    for r in directions
        .iter_mut()
        .filter(|r| r.job_id.as_deref().is_none_or(|id| id == spec.job_id))
    {
        if r.state == DirectionState::Failed
            && r.failed_for.as_deref() == Some(fingerprint)
            && of_group(r.error_code.as_deref())
        {
            r.state = DirectionState::Pending;
            r.failed_for = None;
        }
        let failed_transition = r.transition.as_ref().is_some_and(|t| {
            t.state == TransitionState::Failed
                && t.failed_for.as_deref() == Some(fingerprint)
                && of_group(t.error_code.as_deref())
        });
        if failed_transition {
            r.transition = None;
        }
    }
}

/// Records that a StopDtsJob for `d` is about to be sent.
fn mark_stopping(directions: &mut Vec<DirectionStatus>, obs: &Observed, d: Direction) {
    let r = record_of_mut(directions, &obs.spec, d);
    r.state = DirectionState::Stopping;
    r.attempts = r.attempts.saturating_add(1);
    r.last_attempt_time = Some(obs.now.clone());
    r.failed_for = None;
}

/// The listed directions in spec order, without duplicates (admission
/// rejects duplicates, but a decision must never call twice even if one slipped in).
pub fn listed_directions(spec: &DtsJobSpec) -> Vec<Direction> {
    let mut out = Vec::new();
    for d in &spec.directions {
        if !out.contains(d) {
            out.push(*d);
        }
    }
    out
}

/// What the spec asks, given the recorded `directions` (with DTS's view
/// applied), per listed direction. A DtsJob being deleted under
/// `deletionPolicy: Stop` asks for a stop.
pub fn intent(obs: &Observed, directions: &[DirectionStatus], fingerprint: &str) -> Intent {
    let spec = &obs.spec;
    if !obs.stop_due() {
        let any_stopped = listed_directions(spec)
            .into_iter()
            .any(|d| record_of(spec, directions, d).is_some_and(|r| r.state == DirectionState::Stopped));
        return match (spec.desired_state, any_stopped) {
            (Some(_), true) => Intent::RestartNotSupported,
            (Some(target), false) => Intent::Hold(
                target,
                listed_directions(spec)
                    .into_iter()
                    .map(|d| {
                        (
                            d,
                            hold_step(obs, record_of(spec, directions, d), d, target, fingerprint),
                        )
                    })
                    .collect(),
            ),
            (None, _) => Intent::Observe,
        };
    }
    let steps = listed_directions(spec)
        .into_iter()
        .map(|d| {
            let step = match record_of(spec, directions, d) {
                None => Step::Stop,
                Some(r) => match r.state {
                    DirectionState::Stopped => Step::Done,
                    DirectionState::Stopping => Step::Describe,
                    DirectionState::Pending => Step::Stop,
                    DirectionState::Failed if r.failed_for.as_deref() == Some(fingerprint) => Step::Done,
                    DirectionState::Failed => Step::Stop,
                },
            };
            (d, step)
        })
        .collect();
    Intent::Stop(steps)
}

/// The step that holds direction `d` at `target` (Running or Suspended).
fn hold_step(
    obs: &Observed,
    r: Option<&DirectionStatus>,
    d: Direction,
    target: DesiredState,
    fingerprint: &str,
) -> Step {
    if let Some(t) = r.and_then(|r| r.transition.as_ref()).filter(|t| t.target == target) {
        match t.state {
            // Sent, or maybe sent: look, never send again blindly.
            TransitionState::Requested | TransitionState::Confirming => return Step::Confirm,
            TransitionState::Failed | TransitionState::TimedOut if t.failed_for.as_deref() == Some(fingerprint) => {
                return Step::Done
            }
            _ => {}
        }
    }
    let call = if target == DesiredState::Suspended {
        Step::Suspend
    } else {
        Step::Start
    };
    match obs.view(d).map(|s| &s.view) {
        Some(v) if reached(v, target) => Step::Done,
        Some(v) if obs.manages() && actionable(v, target) => call,
        Some(_) => Step::Done,
        // Never read: a suspend is sent anyway (DTS refuses what it cannot
        // do); a job to keep running is left alone until DTS is read.
        None if target == DesiredState::Suspended && obs.manages() => call,
        None => Step::Done,
    }
}

/// The inputs a terminal failure is tied to: the spec generation, the
/// credentials Secret's resourceVersion and the reconcile-requested-at
/// annotation. Any change to one of them is a new stop intent.
pub fn fingerprint(generation: i64, secret_version: Option<&str>, requested_at: Option<&str>) -> String {
    format!(
        "generation={generation};secret={};requested={}",
        secret_version.unwrap_or("-"),
        requested_at.unwrap_or("-")
    )
}

#[cfg(test)]
mod tests;
