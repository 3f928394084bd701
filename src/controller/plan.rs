//! Pure planning: which DTS call, if any, each direction needs now.
//!
//! No I/O and no clock: the inputs are the spec, the recorded status and the
//! fingerprint of the inputs a terminal failure is tied to. The rules are the
//! heart of "stop at most once per stop intent" (DESIGN §2):
//! * a direction DTS confirmed stopped is never called again;
//! * a direction left `Stopping` (a call was, or may have been, sent and its
//!   outcome is unknown) is looked at with DescribeDtsJobDetail first;
//! * a terminal failure is not retried while its fingerprint still matches.

use crate::crd::{DesiredState, Direction, DirectionState, DirectionStatus, DtsJobSpec, DtsJobStatus};

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

/// What a reconcile must do for the whole resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// `desiredState` is unset or Running and nothing was stopped: observe only.
    Observe,
    /// `desiredState: Running` after a stop: DTS cannot restart a stopped job.
    RestartNotSupported,
    /// `desiredState: Stopped`: one step per listed direction, in spec order.
    Stop(Vec<(Direction, Step)>),
}

impl Plan {
    /// The directions that need a DTS call now.
    pub fn pending(&self) -> Vec<(Direction, Step)> {
        match self {
            Plan::Stop(steps) => steps.iter().copied().filter(|(_, s)| *s != Step::Done).collect(),
            _ => Vec::new(),
        }
    }
}

/// The record of `direction` for the spec's current job, if any. A record
/// written for another jobId (the spec was retargeted while not Stopped) is
/// ignored rather than trusted.
pub fn record<'a>(
    spec: &DtsJobSpec,
    records: &'a [DirectionStatus],
    direction: Direction,
) -> Option<&'a DirectionStatus> {
    records
        .iter()
        .find(|d| d.direction == direction && d.job_id.as_deref().is_none_or(|id| id == spec.job_id))
}

/// The listed directions in spec order, without duplicates (admission
/// rejects duplicates, but a plan must never call twice even if one slipped in).
pub fn listed_directions(spec: &DtsJobSpec) -> Vec<Direction> {
    let mut out = Vec::new();
    for d in &spec.directions {
        if !out.contains(d) {
            out.push(*d);
        }
    }
    out
}

/// Decides the next step for every listed direction.
pub fn plan(spec: &DtsJobSpec, status: &DtsJobStatus, fingerprint: &str) -> Plan {
    if spec.desired_state != Some(DesiredState::Stopped) {
        let any_stopped = listed_directions(spec)
            .into_iter()
            .any(|d| record(spec, &status.directions, d).is_some_and(|r| r.state == DirectionState::Stopped));
        return match (spec.desired_state, any_stopped) {
            (Some(DesiredState::Running), true) => Plan::RestartNotSupported,
            _ => Plan::Observe,
        };
    }
    let steps = listed_directions(spec)
        .into_iter()
        .map(|d| {
            let step = match record(spec, &status.directions, d) {
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
    Plan::Stop(steps)
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
mod tests {
    use super::*;
    use crate::crd::DirectionState::*;

    use crate::controller::fixtures::{record, spec};

    fn rec(direction: Direction, state: DirectionState, failed_for: Option<&str>) -> DirectionStatus {
        DirectionStatus {
            failed_for: failed_for.map(Into::into),
            ..record(direction, state)
        }
    }

    fn status(records: Vec<DirectionStatus>) -> DtsJobStatus {
        DtsJobStatus {
            directions: records,
            ..Default::default()
        }
    }

    use Direction::*;

    #[test]
    fn no_call_when_desired_state_is_unset_or_running() {
        assert_eq!(plan(&spec(None, &[Forward]), &status(vec![]), "f"), Plan::Observe);
        assert_eq!(
            plan(
                &spec(Some(DesiredState::Running), &[Forward, Reverse]),
                &status(vec![]),
                "f"
            ),
            Plan::Observe
        );
    }

    #[test]
    fn every_listed_direction_is_stopped_once() {
        let p = plan(
            &spec(Some(DesiredState::Stopped), &[Forward, Reverse]),
            &status(vec![]),
            "f",
        );
        assert_eq!(p, Plan::Stop(vec![(Forward, Step::Stop), (Reverse, Step::Stop)]));
    }

    #[test]
    fn duplicate_directions_never_give_two_calls() {
        let p = plan(
            &spec(Some(DesiredState::Stopped), &[Forward, Forward]),
            &status(vec![]),
            "f",
        );
        assert_eq!(p.pending(), vec![(Forward, Step::Stop)]);
    }

    #[test]
    fn stopped_direction_is_never_called_again() {
        let p = plan(
            &spec(Some(DesiredState::Stopped), &[Forward, Reverse]),
            &status(vec![rec(Forward, Stopped, None)]),
            "f",
        );
        assert_eq!(p.pending(), vec![(Reverse, Step::Stop)]);
    }

    #[test]
    fn stopping_direction_is_described_first() {
        let p = plan(
            &spec(Some(DesiredState::Stopped), &[Forward]),
            &status(vec![rec(Forward, Stopping, None)]),
            "f",
        );
        assert_eq!(p.pending(), vec![(Forward, Step::Describe)]);
    }

    #[test]
    fn terminal_failure_waits_for_new_inputs() {
        let s = status(vec![rec(Reverse, Failed, Some("f1"))]);
        let sp = spec(Some(DesiredState::Stopped), &[Reverse]);
        assert!(plan(&sp, &s, "f1").pending().is_empty());
        assert_eq!(plan(&sp, &s, "f2").pending(), vec![(Reverse, Step::Stop)]);
    }

    #[test]
    fn retryable_failure_is_planned_again() {
        let p = plan(
            &spec(Some(DesiredState::Stopped), &[Forward]),
            &status(vec![rec(Forward, Pending, None)]),
            "f",
        );
        assert_eq!(p.pending(), vec![(Forward, Step::Stop)]);
    }

    #[test]
    fn running_after_a_stop_is_reported_not_acted_on() {
        let s = status(vec![rec(Forward, Stopped, None)]);
        assert_eq!(
            plan(&spec(Some(DesiredState::Running), &[Forward]), &s, "f"),
            Plan::RestartNotSupported
        );
        // Unset means observe only, even after a stop.
        assert_eq!(plan(&spec(None, &[Forward]), &s, "f"), Plan::Observe);
    }

    #[test]
    fn records_of_another_job_are_not_trusted() {
        let mut r = rec(Forward, Stopped, None);
        r.job_id = Some("old-job".into());
        let p = plan(&spec(Some(DesiredState::Stopped), &[Forward]), &status(vec![r]), "f");
        assert_eq!(p.pending(), vec![(Forward, Step::Stop)]);
    }

    #[test]
    fn fingerprint_changes_with_each_input() {
        let base = fingerprint(3, Some("100"), None);
        assert_ne!(base, fingerprint(4, Some("100"), None));
        assert_ne!(base, fingerprint(3, Some("101"), None));
        assert_ne!(base, fingerprint(3, Some("100"), Some("2026-01-01T00:00:00Z")));
        assert_eq!(base, fingerprint(3, Some("100"), None));
    }
}
