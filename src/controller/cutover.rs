//! Cutover (pure): when a stop may be sent.
//!
//! Stopping a DTS job is usually the last step of a migration cutover:
//! writes to the source are frozen, replication catches up, then the job is
//! stopped. Two spec fields make the operator wait for that moment:
//!
//! * `spec.stopAt`: from that time on a stop is due, as if `desiredState`
//!   had become `Stopped` ([`stop_due`]); before it, `desiredState` applies
//!   and the reconcile is requeued for the moment itself ([`until_stop_at`]).
//! * `spec.stopPolicy`: a StopDtsJob is sent only when DescribeDtsJobDetail,
//!   read in the same reconcile just before the stop (the *gauge*), reports
//!   the replication delay of **every** direction about to be stopped at or
//!   below `maxDelaySeconds`. A two-way job is stopped as a whole or not at
//!   all: stopping the caught-up direction while the other still lags would
//!   leave a job half stopped that DTS cannot restart, with the lagging
//!   side's writes not yet replicated — the very loss the gate is for.
//!
//! Waiting is a requeue ([`GATE_INTERVAL`]), never a blocked worker. At the
//! deadline, `onDeadline: Stop` sends the stop anyway and `Stall` (the
//! default: a high delay is never stopped unless asked) sends nothing and
//! reports the DtsJob Stalled until its inputs change.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;

use super::observe::Observed;
use crate::crd::{DesiredState, Direction, DtsJobSpec, GateReading, OnDeadline, StopGate, StopGateState, StopPolicy};
use crate::reason::Reason;
use dts_api::{DtsError, ErrorClass, JobDetail};

/// How often a waiting stop reads the delay again.
pub const GATE_INTERVAL: Duration = Duration::from_secs(5);

/// What DescribeDtsJobDetail answered for one gauged direction.
pub type Reading = (Direction, Result<JobDetail, DtsError>);

/// An Event: type, reason, note.
pub type Note = (EventType, Reason, String);

/// Whether a stop is asked for now: `desiredState: Stopped`, or `stopAt`
/// has come.
pub fn stop_due(spec: &DtsJobSpec, now: &Time) -> bool {
    spec.desired_state == Some(DesiredState::Stopped) || spec.stop_at.as_ref().is_some_and(|at| at.0 <= now.0)
}

/// How long until `stopAt`, when it is still ahead and the stop is not
/// already due for another reason.
pub fn until_stop_at(spec: &DtsJobSpec, now: &Time) -> Option<Duration> {
    if spec.desired_state == Some(DesiredState::Stopped) {
        return None;
    }
    let at = spec.stop_at.as_ref()?;
    let ahead = now.0.duration_until(at.0);
    (ahead.is_positive()).then(|| Duration::try_from(ahead).unwrap_or(Duration::ZERO))
}

/// What the gate says about the stops due now.
#[derive(Clone, Debug, PartialEq)]
pub enum Gate {
    /// Send the stops; record `gate` (None without a stop policy).
    Open {
        gate: Option<StopGate>,
        event: Option<Note>,
    },
    /// Read the delay of these directions first, then decide again.
    Gauge(Vec<Direction>),
    /// Not yet: record `gate`, decide again after `wake`.
    Wait {
        gate: StopGate,
        wake: Duration,
        event: Option<Note>,
    },
    /// The deadline passed under `onDeadline: Stall`: nothing is sent.
    Stall { gate: StopGate, event: Option<Note> },
    /// A direction's read failed terminally: record it as the stop's failure.
    Failed(Vec<(Direction, DtsError)>),
    /// The deadline cannot be read (a value admission let through).
    Invalid(String),
}

/// The gate for stopping `stops` (the directions a StopDtsJob is due for).
/// `obs.gauge` holds the reads of this reconcile, if any were made.
pub fn gate(obs: &Observed, stops: &[Direction], fingerprint: &str) -> Gate {
    let Some(policy) = &obs.spec.stop_policy else {
        return Gate::Open {
            gate: None,
            event: None,
        };
    };
    if stops.is_empty() {
        return Gate::Open {
            gate: None,
            event: None,
        };
    }
    let previous = obs.status.stop_gate.as_ref();
    let since = previous.map_or_else(|| asked_at(&obs.spec, &obs.now), |g| g.since.clone());
    let deadline = match deadline(policy, &since) {
        Ok(d) => d,
        Err(e) => return Gate::Invalid(e),
    };
    let mut gate = StopGate {
        state: StopGateState::Waiting,
        max_delay_seconds: policy.max_delay_seconds,
        since,
        deadline: deadline.clone(),
        checked_at: previous.and_then(|g| g.checked_at.clone()),
        delays: previous.map(|g| g.delays.clone()).unwrap_or_default(),
        message: previous.and_then(|g| g.message.clone()),
        stalled_for: None,
    };
    if let Some(p) = previous.filter(|g| g.state == StopGateState::Stalled) {
        if p.stalled_for.as_deref() == Some(fingerprint) {
            return Gate::Stall {
                gate: (**p).clone(),
                event: None,
            };
        }
    }
    let past_deadline = deadline.as_ref().is_some_and(|d| obs.now.0 >= d.0);
    // A Stalled gate whose inputs changed (a spec edit, a reconcile
    // request) looks once more before it stalls again.
    let look_again = previous.is_some_and(|g| g.state == StopGateState::Stalled);
    let Some(readings) = &obs.gauge else {
        if past_deadline && !look_again {
            return at_deadline(policy, gate, fingerprint);
        }
        return Gate::Gauge(stops.to_vec());
    };
    let failed: Vec<(Direction, DtsError)> = readings
        .iter()
        .filter_map(|(d, r)| match r {
            Err(e) if e.class == ErrorClass::Terminal => Some((*d, e.clone())),
            _ => None,
        })
        .collect();
    if !failed.is_empty() {
        return Gate::Failed(failed);
    }
    let limit_ms = policy.max_delay_seconds.saturating_mul(1000);
    let delays: Vec<GateReading> = stops
        .iter()
        .map(|d| GateReading {
            direction: *d,
            delay_ms: readings
                .iter()
                .find(|(r, _)| r == d)
                .and_then(|(_, r)| r.as_ref().ok())
                .and_then(|detail| detail.delay_ms),
        })
        .collect();
    let problems: Vec<String> = readings
        .iter()
        .filter_map(|(d, r)| match r {
            Err(e) => Some(format!("{d}: {e}")),
            Ok(detail) if detail.delay_ms.is_none() => Some(format!(
                "{d}: DTS reports no delay (status {})",
                detail.status.as_deref().unwrap_or("unknown")
            )),
            Ok(_) => None,
        })
        .collect();
    let message = (!problems.is_empty()).then(|| problems.join("; "));
    if gate.delays != delays || gate.message != message {
        gate.checked_at = Some(obs.now.clone());
        gate.delays = delays;
        gate.message = message;
    }
    let caught_up = gate.delays.iter().all(|r| r.delay_ms.is_some_and(|ms| ms <= limit_ms));
    if caught_up {
        gate.state = StopGateState::Passed;
        gate.checked_at = Some(obs.now.clone());
        let waited = super::decide::elapsed(&gate.since, &obs.now).as_secs();
        let note = format!(
            "replication delay {} is at or below {} s after {waited} s; stopping",
            delays_text(&gate.delays),
            policy.max_delay_seconds
        );
        return Gate::Open {
            gate: Some(gate),
            event: Some((EventType::Normal, Reason::DelayReached, note)),
        };
    }
    if past_deadline {
        return at_deadline(policy, gate, fingerprint);
    }
    let first = previous.is_none_or(|g| g.state != StopGateState::Waiting);
    let event = first.then(|| (EventType::Normal, Reason::WaitingForDelay, waiting_message(&gate)));
    let retry_after = readings
        .iter()
        .filter_map(|(_, r)| r.as_ref().err().and_then(|e| e.retry_after))
        .max()
        .unwrap_or_default();
    let until_deadline = deadline
        .as_ref()
        .map(|d| Duration::try_from(obs.now.0.duration_until(d.0)).unwrap_or(Duration::ZERO));
    let wake = GATE_INTERVAL
        .max(retry_after)
        .min(until_deadline.unwrap_or(Duration::MAX))
        .max(Duration::from_secs(1));
    Gate::Wait { gate, wake, event }
}

/// The deadline passed with the delay still too high (or unknown).
fn at_deadline(policy: &StopPolicy, mut gate: StopGate, fingerprint: &str) -> Gate {
    let last = delays_text(&gate.delays);
    match policy.on_deadline.unwrap_or_default() {
        OnDeadline::Stop => {
            gate.state = StopGateState::DeadlineStop;
            let note = format!(
                "the stopPolicy deadline passed with the replication delay above {} s ({last}); \
                 stopping anyway (onDeadline: Stop)",
                policy.max_delay_seconds
            );
            Gate::Open {
                gate: Some(gate),
                event: Some((EventType::Warning, Reason::DelayDeadlineExceeded, note)),
            }
        }
        OnDeadline::Stall => {
            gate.state = StopGateState::Stalled;
            gate.stalled_for = Some(fingerprint.to_owned());
            let note = stall_message(&gate);
            Gate::Stall {
                gate,
                event: Some((EventType::Warning, Reason::DelayDeadlineExceeded, note)),
            }
        }
    }
}

/// When the stop was asked for, as first seen: `stopAt` when it is what
/// made the stop due, else now (the reconcile that saw `desiredState` flip).
fn asked_at(spec: &DtsJobSpec, now: &Time) -> Time {
    match &spec.stop_at {
        Some(at) if spec.desired_state != Some(DesiredState::Stopped) && at.0 <= now.0 => at.clone(),
        _ => now.clone(),
    }
}

/// The deadline as a time: `since` plus a duration (plus the second
/// `since` was truncated to), or the time given.
pub fn deadline(policy: &StopPolicy, since: &Time) -> Result<Option<Time>, String> {
    let Some(text) = policy.deadline.as_deref() else {
        return Ok(None);
    };
    if let Ok(at) = text.parse::<jiff::Timestamp>() {
        return Ok(Some(Time(at)));
    }
    let d =
        crate::cli::parse_duration(text).map_err(|e| format!("stopPolicy.deadline: {e}; or give an RFC 3339 time"))?;
    // `since` is a whole second (Kubernetes stores times so) at or before
    // the moment the stop was asked for: counting that second whole means a
    // deadline of 3s never passes before 3 s have.
    let d = d + Duration::from_secs(1);
    let span = jiff::SignedDuration::try_from(d).map_err(|e| format!("stopPolicy.deadline {text:?}: {e}"))?;
    since
        .0
        .checked_add(span)
        .map(|t| Some(Time(t)))
        .map_err(|e| format!("stopPolicy.deadline {text:?}: {e}"))
}

/// `Forward 30 s, Reverse 2.5 s` (unknown delays as `unknown`).
pub fn delays_text(delays: &[GateReading]) -> String {
    if delays.is_empty() {
        return "not read yet".into();
    }
    delays
        .iter()
        .map(|r| match r.delay_ms {
            Some(ms) => format!("{} {}", r.direction, seconds(ms)),
            None => format!("{} unknown", r.direction),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn seconds(ms: i64) -> String {
    if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// The Reconciling message of a waiting stop.
pub fn waiting_message(gate: &StopGate) -> String {
    let mut text = format!(
        "waiting for the replication delay to reach {} s before StopDtsJob: {}",
        gate.max_delay_seconds,
        delays_text(&gate.delays)
    );
    if let Some(m) = &gate.message {
        text.push_str(&format!(" ({m})"));
    }
    text.push_str(&format!("; waiting since {}", gate.since.0));
    if let Some(d) = &gate.deadline {
        text.push_str(&format!(", deadline {}", d.0));
    }
    text
}

/// The Stalled message of a gate whose deadline passed.
pub fn stall_message(gate: &StopGate) -> String {
    format!(
        "the stopPolicy deadline passed with the replication delay above {} s ({}); no StopDtsJob was sent \
         (onDeadline: Stall). Raise the deadline or the limit, set onDeadline: Stop, or set the \
         kubedts.io/reconcile-requested-at annotation to look again",
        gate.max_delay_seconds,
        delays_text(&gate.delays)
    )
}

#[cfg(test)]
mod tests;
