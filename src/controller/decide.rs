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
//!   view or a second writer ends in a 409 instead of a second call.

use std::time::Duration;

use super::observe::{Credentials, Observed};
use super::status::{self, Blocked};
use crate::crd::{DesiredState, Direction, DirectionState, DirectionStatus, DtsJobSpec, DtsJobStatus};
use crate::reason::Reason;
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
}

impl Intent {
    /// The directions that need a DTS call now.
    pub fn pending(&self) -> Vec<(Direction, Step)> {
        match self {
            Intent::Stop(steps) => steps.iter().copied().filter(|(_, s)| *s != Step::Done).collect(),
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
    /// No call: write `status` (when it changed), with `warning` as an Event.
    Settle {
        status: DtsJobStatus,
        warning: Option<(Reason, String)>,
    },
    /// Calls are needed.
    Call(Call),
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
    /// The status to write before any call when a step is a stop: each such
    /// direction `Stopping`, its attempt counted. Written under the observed
    /// resourceVersion; a refusal (409) cancels the calls.
    pub mark: Option<DtsJobStatus>,
    /// The inputs a terminal failure recorded now is tied to.
    pub fingerprint: String,
}

/// Decides what to do with `obs`.
pub fn decide(obs: &Observed) -> Decision {
    if !obs.leader {
        return Decision::Standby;
    }
    if obs.paused {
        return Decision::Settle {
            status: status::paused(obs),
            warning: None,
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
    let intent = intent(&obs.spec, &obs.status, &fingerprint, obs.deleting);
    let steps = intent.pending();
    let settle = |blocked: Option<Blocked>| {
        let status = status::build(
            obs,
            &intent,
            obs.status.directions.clone(),
            blocked.as_ref(),
            &obs.status,
        );
        let warning = match (&intent, blocked) {
            (_, Some(b)) => Some((b.reason, b.message)),
            (Intent::RestartNotSupported, None) => Some((
                Reason::RestartNotSupported,
                status::condition_message(&status, status::STALLED),
            )),
            _ => None,
        };
        Decision::Settle { status, warning }
    };
    if steps.is_empty() {
        return settle(None);
    }
    match &obs.credentials {
        Credentials::Ready(_) => {}
        Credentials::Missing(e) => {
            return settle(Some(Blocked {
                reason: e.reason(),
                message: e.to_string(),
            }))
        }
        // Observing reads the credentials whenever `may_call` holds, and it
        // holds whenever a step is pending; without them nothing is sent.
        Credentials::NotNeeded => return Decision::Standby,
    }
    if let Some(wait) = obs.retry_in {
        return Decision::Wait(wait);
    }
    let mark = steps.iter().any(|(_, s)| *s == Step::Stop).then(|| {
        let mut directions = obs.status.directions.clone();
        for (d, step) in &steps {
            if *step == Step::Stop {
                mark_stopping(&mut directions, obs, *d);
            }
        }
        status::build(obs, &intent, directions, None, &obs.status)
    });
    Decision::Call(Call {
        intent,
        steps,
        mark,
        fingerprint,
    })
}

/// Whether any call may be needed, whatever the credentials: only then are
/// they read. (No real fingerprint is empty, so every terminal failure
/// counts as pending here.)
pub fn may_call(obs: &Observed) -> bool {
    !intent(&obs.spec, &obs.status, "", obs.deleting).pending().is_empty()
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

/// What the spec asks, given the recorded status, per listed direction. A
/// DtsJob being deleted under `deletionPolicy: Stop` asks for a stop.
pub fn intent(spec: &DtsJobSpec, status: &DtsJobStatus, fingerprint: &str, deleting: bool) -> Intent {
    if spec.desired_state != Some(DesiredState::Stopped) && !deleting {
        let any_stopped = listed_directions(spec)
            .into_iter()
            .any(|d| record_of(spec, &status.directions, d).is_some_and(|r| r.state == DirectionState::Stopped));
        return match (spec.desired_state, any_stopped) {
            (Some(DesiredState::Running), true) => Intent::RestartNotSupported,
            _ => Intent::Observe,
        };
    }
    let steps = listed_directions(spec)
        .into_iter()
        .map(|d| {
            let step = match record_of(spec, &status.directions, d) {
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
