//! Pure status building: phase and kstatus conditions from the direction
//! records.
//!
//! Conditions follow kstatus (Ready, Reconciling, Stalled), each carrying the
//! generation it describes, so `kubectl wait`, Flux and Helm can tell a
//! settled resource from one whose new spec was not looked at yet. A
//! condition keeps its lastTransitionTime while its status is unchanged, so
//! a reconcile that finds nothing new produces an identical status and no
//! write is sent.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::cutover;
use super::decide::{self, listed_directions, record_of, Intent};
use super::observe::Observed;
use crate::crd::{
    DesiredState, DirectionState, DirectionStatus, DtsJobSpec, DtsJobStatus, Phase, StopGate, StopGateState,
    TransitionState,
};
use crate::limits::breaker::Group;
use crate::limits::CircuitInfo;
use crate::reason::Reason;
use crate::view::DirectionView;
use dts_api::DtsError;

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
/// Present only while the `kubedts.io/paused` annotation is `"true"`.
pub const PAUSED: &str = "Paused";

/// Why the operator cannot act at all: the credentials cannot be had, or
/// their circuit breaker is open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    pub reason: Reason,
    pub message: String,
    /// The operator tries again by itself (`Ready=Unknown`,
    /// `Reconciling=True`) rather than wait for a human (`Ready=False`,
    /// `Stalled=True`).
    pub retrying: bool,
}

impl Blocked {
    /// Blocked until a human fixes something.
    pub fn stalled(reason: Reason, message: String) -> Self {
        Self {
            reason,
            message,
            retrying: false,
        }
    }

    /// Held by the open circuit breaker of the job's credentials: stalled
    /// when the credentials or their permissions were refused (with where to
    /// fix them), retrying when DTS was unavailable.
    pub fn circuit(info: &CircuitInfo, spec: &DtsJobSpec) -> Self {
        let hint = match info.group {
            Group::Credentials => credentials_hint(spec),
            Group::Permission => "; grant the RAM permission to this AccessKey".to_owned(),
            Group::Unavailable => String::new(),
        };
        Self {
            reason: Reason::CircuitOpen,
            message: format!("{}{hint}", info.message()),
            retrying: !info.group.needs_a_human(),
        }
    }
}

/// Whether `status` shows a circuit breaker holding the job.
pub fn circuit_open(status: &DtsJobStatus) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == READY && c.reason == Reason::CircuitOpen.as_str())
}

struct Summary {
    phase: Phase,
    ready: (&'static str, Reason, String),
    reconciling: Option<(Reason, String)>,
    stalled: Option<(Reason, String)>,
}

/// The complete status for the observed generation: `directions` as given,
/// phase and conditions derived from them. `base` is the status the server
/// holds, whose conditions' transition times are kept where unchanged.
pub fn build(
    obs: &Observed,
    intent: &Intent,
    directions: Vec<DirectionStatus>,
    blocked: Option<&Blocked>,
    base: &DtsJobStatus,
) -> DtsJobStatus {
    let spec = &obs.spec;
    let wanted = listed_directions(spec);
    let listed: Vec<&DirectionStatus> = wanted.iter().filter_map(|d| record_of(spec, &directions, *d)).collect();
    let all_stopped = listed.len() == wanted.len() && listed.iter().all(|r| r.state == DirectionState::Stopped);
    let summary = match (intent, blocked) {
        (Intent::Observe, _) => observe_summary(spec, &listed),
        (Intent::RestartNotSupported, _) => Summary {
            phase: Phase::Stopped,
            ready: ("False", Reason::RestartNotSupported, restart_message()),
            reconciling: None,
            stalled: Some((Reason::RestartNotSupported, restart_message())),
        },
        (Intent::Stop(_), Some(b)) if !all_stopped => blocked_summary(b),
        (Intent::Stop(_), _) => stop_summary(spec, &listed),
        (Intent::Hold(..), Some(b)) => blocked_summary(b),
        (Intent::Hold(target, _), None) => hold_summary(obs, *target, &listed),
    };

    DtsJobStatus {
        observed_generation: Some(obs.generation),
        phase: Some(summary.phase),
        conditions: conditions(obs, &summary, base),
        directions,
        history: base.history.clone(),
        // The gate belongs to a stop: it goes when the stop is no longer asked for.
        stop_gate: matches!(intent, Intent::Stop(_))
            .then(|| base.stop_gate.clone())
            .flatten(),
        // Only a reconcile that read credentials knows their source; the
        // others keep what the last one wrote (so they write nothing new).
        credentials_source: match &obs.credentials {
            super::observe::Credentials::Ready(r) => Some(r.source.clone()),
            _ => base.credentials_source.clone(),
        },
    }
}

/// The status of a delay-gated stop that is not sent (yet): `gate` shown,
/// and while it waits or stalls, the conditions say so.
pub fn gated(obs: &Observed, intent: &Intent, directions: Vec<DirectionStatus>, gate: StopGate) -> DtsJobStatus {
    let mut status = build(obs, intent, directions, None, &obs.status);
    let summary = match gate.state {
        StopGateState::Waiting => {
            let message = cutover::waiting_message(&gate);
            Summary {
                phase: Phase::Stopping,
                ready: ("Unknown", Reason::WaitingForDelay, message.clone()),
                reconciling: Some((Reason::WaitingForDelay, message)),
                stalled: None,
            }
        }
        StopGateState::Stalled => {
            let message = cutover::stall_message(&gate);
            Summary {
                phase: Phase::Failed,
                ready: ("False", Reason::DelayDeadlineExceeded, message.clone()),
                reconciling: None,
                stalled: Some((Reason::DelayDeadlineExceeded, message)),
            }
        }
        StopGateState::Passed | StopGateState::DeadlineStop => {
            status.stop_gate = Some(Box::new(gate));
            return status;
        }
    };
    status.phase = Some(summary.phase);
    status.conditions = conditions(obs, &summary, &obs.status);
    status.stop_gate = Some(Box::new(gate));
    status
}

/// Ready always; Reconciling and Stalled only while they are True, keeping
/// the transition times `base` holds where a status is unchanged.
///
/// Reconciling and Stalled are kstatus's abnormal-true conditions: kstatus
/// (and so `kubectl wait`, Flux, Helm and the Argo CD health check) reads an
/// absent one as False, and Flux's own controllers remove them once they no
/// longer apply. Leaving them out while False keeps every status write
/// smaller: the two False conditions and their managedFields entries were
/// about a sixth of a stopped two-way DtsJob, and the API server decodes,
/// patches, validates and encodes the whole object on every write.
fn conditions(obs: &Observed, summary: &Summary, base: &DtsJobStatus) -> Vec<Condition> {
    let condition = |type_: &str, status: &str, reason: Reason, message: &str| {
        condition(type_, status, reason, message, obs.generation, base, &obs.now)
    };
    let mut conditions = vec![condition(READY, summary.ready.0, summary.ready.1, &summary.ready.2)];
    if let Some((reason, msg)) = &summary.reconciling {
        conditions.push(condition(RECONCILING, "True", *reason, msg));
    }
    if let Some((reason, msg)) = &summary.stalled {
        conditions.push(condition(STALLED, "True", *reason, msg));
    }
    conditions
}

/// Records a failed call's answer on a direction: RequestId, HTTP status,
/// code and message (the state is the caller's to set).
pub fn record_failure(r: &mut DirectionStatus, e: &DtsError) {
    r.request_id = e.request_id.clone();
    r.http_status_code = e.http_status.map(i32::from);
    r.error_code = Some(e.code.clone().unwrap_or_else(|| e.reason().as_str().to_owned()));
    r.error_message = Some(e.message.clone().unwrap_or_else(|| e.to_string()));
    r.dynamic_code = e.dynamic_code.clone();
    r.dynamic_message = e.dynamic_message.clone();
}

/// Nothing can be called: `Pending`, waiting for a human or for the operator.
fn blocked_summary(b: &Blocked) -> Summary {
    if b.retrying {
        Summary {
            phase: Phase::Pending,
            ready: ("Unknown", b.reason, b.message.clone()),
            reconciling: Some((b.reason, b.message.clone())),
            stalled: None,
        }
    } else {
        Summary {
            phase: Phase::Pending,
            ready: ("False", b.reason, b.message.clone()),
            reconciling: None,
            stalled: Some((b.reason, b.message.clone())),
        }
    }
}

/// Observe only: no call is made, and the phase says what the records
/// show. A job whose listed directions were stopped stays `Stopped` when
/// `desiredState` is unset afterwards: DTS cannot restart it.
fn observe_summary(spec: &DtsJobSpec, listed: &[&DirectionStatus]) -> Summary {
    let stopped: Vec<&str> = listed
        .iter()
        .filter(|r| r.state == DirectionState::Stopped)
        .map(|r| r.direction.as_str())
        .collect();
    let why = match spec.desired_state {
        Some(DesiredState::Running) => "desiredState is Running: no DTS call is made",
        _ => "desiredState is unset: the operator only observes",
    };
    // A job DTS reports Failed is reported as such, never changed.
    let failed: Vec<String> = listed
        .iter()
        .filter_map(|r| {
            let o = r.observed.as_ref()?;
            let failed = o
                .status
                .as_deref()
                .is_some_and(|s| s.trim().eq_ignore_ascii_case("Failed"));
            failed.then(|| {
                format!(
                    "{}: DTS reports the job Failed: {}",
                    r.direction,
                    o.error_message.as_deref().unwrap_or("no error message")
                )
            })
        })
        .collect();
    if !failed.is_empty() {
        let message = format!("{}; {why}", failed.join("; "));
        return Summary {
            phase: Phase::Failed,
            ready: ("False", Reason::DtsJobFailed, message.clone()),
            reconciling: None,
            stalled: Some((Reason::DtsJobFailed, message)),
        };
    }
    let (phase, message) = if stopped.is_empty() {
        (Phase::Running, why.to_owned())
    } else {
        (
            Phase::Stopped,
            format!("{why}; {} stopped earlier", stopped.join(" and ")),
        )
    };
    Summary {
        phase,
        ready: ("True", Reason::ObserveOnly, message),
        reconciling: None,
        stalled: None,
    }
}

/// Running or Suspended: what DTS shows against what is desired.
fn hold_summary(obs: &Observed, target: DesiredState, listed: &[&DirectionStatus]) -> Summary {
    let (wanted, reached_reason, waiting_reason, phase) = match target {
        DesiredState::Suspended => ("Suspended", Reason::Suspended, Reason::Suspending, Phase::Suspended),
        _ => ("Running", Reason::Running, Reason::Starting, Phase::Running),
    };
    let mut stalled: Vec<(Reason, String)> = Vec::new();
    let mut waiting: Vec<String> = Vec::new();
    let mut differs: Vec<String> = Vec::new();
    let mut unknown: Vec<&str> = Vec::new();
    for d in listed_directions(&obs.spec) {
        let r = listed.iter().find(|r| r.direction == d);
        // What DTS last showed, as recorded (the observer's view applied, or
        // a confirmation read in this very reconcile).
        let view = r.and_then(|r| r.observed.as_ref()).map(DirectionView::from);
        let view = view.as_ref();
        let shown = view.and_then(|v| v.status.as_deref()).unwrap_or("no status");
        let transition = r.and_then(|r| r.transition.as_ref()).filter(|t| t.target == target);
        match (transition.map(|t| t.state), view) {
            (Some(TransitionState::Failed), _) => {
                let t = transition.expect("matched Some");
                let code = t.error_code.as_deref().unwrap_or("refused");
                let msg = t.error_message.as_deref().unwrap_or("");
                stalled.push((
                    t.error_code
                        .as_deref()
                        .map(Reason::for_dts_code)
                        .unwrap_or(Reason::StopFailed),
                    format!("{d}: {code}: {msg}").trim_end_matches(": ").to_owned(),
                ));
            }
            (Some(TransitionState::TimedOut), _) => stalled.push((
                Reason::TransitionNotConfirmed,
                format!("{d}: DTS accepted the call but shows {shown}, not {wanted}"),
            )),
            (Some(_), _) => waiting.push(format!("{d}: waiting for DTS to show {wanted} (shows {shown})")),
            (None, Some(v)) if decide::reached(v, target) => {}
            (None, Some(v)) if v.status_is("Failed") => stalled.push((
                Reason::DtsJobFailed,
                format!(
                    "{d}: DTS reports the job Failed: {}",
                    v.error_message.as_deref().unwrap_or("no error message")
                ),
            )),
            (None, Some(v)) if v.status_is("Finished") => stalled.push((
                Reason::JobFinished,
                format!(
                    "{d}: DTS reports the job Finished; it cannot be {}",
                    wanted.to_lowercase()
                ),
            )),
            (None, Some(_)) => differs.push(format!("{d}: DTS shows {shown}, desired {wanted}")),
            (None, None) => unknown.push(d.as_str()),
        }
    }
    if let Some((reason, _)) = stalled.first().cloned() {
        let message = stalled.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>().join("; ");
        return Summary {
            phase: Phase::Failed,
            ready: ("False", reason, message.clone()),
            reconciling: None,
            stalled: Some((reason, message)),
        };
    }
    if !waiting.is_empty() || (!differs.is_empty() && obs.manages()) {
        let message = waiting.into_iter().chain(differs).collect::<Vec<_>>().join("; ");
        return Summary {
            phase: Phase::Running,
            ready: ("Unknown", waiting_reason, message.clone()),
            reconciling: Some((waiting_reason, message)),
            stalled: None,
        };
    }
    if !differs.is_empty() {
        let message = format!("{} (managementPolicy ObserveOnly: not changed)", differs.join("; "));
        return Summary {
            phase: Phase::Running,
            ready: ("False", Reason::NotInDesiredState, message.clone()),
            reconciling: None,
            // The operator will not change it (ObserveOnly): for kstatus, Flux
            // and Argo CD alike that is no progress without a human.
            stalled: Some((Reason::NotInDesiredState, message)),
        };
    }
    if !unknown.is_empty() && target == DesiredState::Running {
        // Not read yet: reported as before any reading, without a claim.
        return Summary {
            phase: Phase::Running,
            ready: (
                "True",
                Reason::ObserveOnly,
                format!(
                    "desiredState is Running; DTS has not been read yet for {}",
                    unknown.join(" and ")
                ),
            ),
            reconciling: None,
            stalled: None,
        };
    }
    Summary {
        phase,
        ready: (
            "True",
            reached_reason,
            format!("DTS shows every listed direction {wanted}"),
        ),
        reconciling: None,
        stalled: None,
    }
}

fn restart_message() -> String {
    "desiredState is Running or Suspended but the job was stopped: DTS cannot restart a stopped job; create a new job instead".into()
}

fn stop_summary(spec: &DtsJobSpec, listed: &[&DirectionStatus]) -> Summary {
    let total = listed_directions(spec).len();
    let stopped = listed.iter().filter(|r| r.state == DirectionState::Stopped).count();
    let failed: Vec<&&DirectionStatus> = listed.iter().filter(|r| r.state == DirectionState::Failed).collect();
    let in_flight: Vec<&&DirectionStatus> = listed
        .iter()
        .filter(|r| matches!(r.state, DirectionState::Stopping | DirectionState::Pending))
        .collect();
    let not_started = total - listed.len();

    let reconciling = if !in_flight.is_empty() || not_started > 0 {
        let retrying = in_flight.iter().any(|r| r.state == DirectionState::Pending);
        let reason = if retrying {
            Reason::RetryScheduled
        } else {
            Reason::Stopping
        };
        Some((reason, progress_message(&in_flight)))
    } else {
        None
    };

    if !failed.is_empty() {
        let reason = failed[0]
            .error_code
            .as_deref()
            .map(Reason::for_dts_code)
            .unwrap_or(Reason::StopFailed);
        let mut message = failed.iter().map(|r| failure_line(r)).collect::<Vec<_>>().join("; ");
        if reason == Reason::AuthenticationFailed {
            message.push_str(&credentials_hint(spec));
        }
        return Summary {
            phase: Phase::Failed,
            ready: ("False", Reason::StopFailed, message.clone()),
            reconciling,
            stalled: Some((reason, message)),
        };
    }
    if stopped == total {
        // Stopped with an error recorded, or without any call of ours: DTS had
        // finished the job already.
        let already = listed.iter().any(|r| r.error_code.is_some() || r.attempts == 0);
        let names = listed
            .iter()
            .map(|r| r.direction.as_str())
            .collect::<Vec<_>>()
            .join(" and ");
        let (reason, message) = if already {
            (
                Reason::AlreadyStopped,
                format!("{names} stopped (DTS reported the job already finished)"),
            )
        } else {
            (Reason::Stopped, format!("{names} stopped"))
        };
        return Summary {
            phase: Phase::Stopped,
            ready: ("True", reason, message),
            reconciling: None,
            stalled: None,
        };
    }
    let (reason, message) = reconciling.clone().unwrap_or((Reason::Stopping, "stopping".into()));
    Summary {
        phase: Phase::Stopping,
        ready: ("Unknown", reason, message),
        reconciling,
        stalled: None,
    }
}

/// Where the refused credentials came from: DTS's own message (a signature
/// mismatch) does not say which Secret or key to fix.
fn credentials_hint(spec: &DtsJobSpec) -> String {
    match &spec.credentials_secret_ref {
        Some(r) => format!(
            "; check accessKeyId and accessKeySecret (and securityToken, if set) in Secret {}",
            r.name
        ),
        None => "; check the operator's default credentials (the files of --default-credentials-dir, or \
                 ALIBABA_CLOUD_ACCESS_KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET, ALIBABA_CLOUD_SECURITY_TOKEN, or \
                 the RRSA role's permissions)"
            .to_owned(),
    }
}

fn progress_message(in_flight: &[&&DirectionStatus]) -> String {
    if in_flight.is_empty() {
        return "StopDtsJob is about to be sent".into();
    }
    in_flight
        .iter()
        .map(|r| match (&r.error_code, &r.error_message) {
            (Some(code), Some(msg)) => format!("{}: retrying after {code}: {msg}", r.direction),
            (Some(code), None) => format!("{}: retrying after {code}", r.direction),
            _ => format!("{}: StopDtsJob sent, waiting for the outcome", r.direction),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `Reverse: <rendered message> (RequestId X)`.
pub fn failure_line(r: &DirectionStatus) -> String {
    let msg = r
        .error_message
        .clone()
        .or_else(|| r.error_code.clone())
        .unwrap_or_else(|| "stop failed".into());
    match &r.request_id {
        Some(id) => format!("{}: {msg} (RequestId {id})", r.direction),
        None => format!("{}: {msg}", r.direction),
    }
}

/// The status of a paused DtsJob: what the server holds, plus a `Paused`
/// condition for this generation. Nothing else changes while paused.
pub fn paused(obs: &Observed) -> DtsJobStatus {
    let mut status = obs.status.clone();
    let paused = condition(
        PAUSED,
        "True",
        Reason::Paused,
        "the kubedts.io/paused annotation is \"true\": no DTS call and no change until it is removed",
        obs.generation,
        &obs.status,
        &obs.now,
    );
    status.conditions.retain(|c| c.type_ != PAUSED);
    status.conditions.push(paused);
    status
}

/// The message of condition `type_` in `status`, if present.
pub fn condition_message(status: &DtsJobStatus, type_: &str) -> String {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

fn condition(
    type_: &str,
    status: &str,
    reason: Reason,
    message: &str,
    generation: i64,
    base: &DtsJobStatus,
    now: &Time,
) -> Condition {
    let last_transition_time = base
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.as_str().to_owned(),
        message: message.to_owned(),
        observed_generation: Some(generation),
        last_transition_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::decide::{intent, Step};
    use crate::crd::{DesiredState, Direction};

    use crate::controller::fixtures::{observed, spec};

    /// `build` for `generation`, with the clock at `now`.
    fn summarize_at(
        sp: &DtsJobSpec,
        intent: &Intent,
        directions: Vec<DirectionStatus>,
        blocked: Option<&Blocked>,
        generation: i64,
        base: &DtsJobStatus,
        now: &Time,
    ) -> DtsJobStatus {
        let mut obs = observed(sp.clone(), base.clone());
        obs.generation = generation;
        obs.now = now.clone();
        build(&obs, intent, directions, blocked, base)
    }

    fn rec(direction: Direction, state: DirectionState) -> DirectionStatus {
        DirectionStatus {
            request_id: Some("REQ-1".into()),
            http_status_code: Some(200),
            ..crate::controller::fixtures::record(direction, state)
        }
    }

    fn now() -> Time {
        Time("2026-11-27T10:00:00Z".parse().unwrap())
    }

    fn cond<'a>(s: &'a DtsJobStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn observe_only_is_ready_and_says_why() {
        let sp = spec(None, &[Direction::Forward]);
        let p = intent(&observed(sp.clone(), DtsJobStatus::default()), &[], "f");
        let s = summarize_at(&sp, &p, vec![], None, 2, &DtsJobStatus::default(), &now());
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!(s.phase, Some(Phase::Running));
        assert_eq!(cond(&s, READY).status, "True");
        assert_eq!(cond(&s, READY).reason, "ObserveOnly");
        assert!(s.conditions.iter().all(|c| c.observed_generation == Some(2)));
    }

    #[test]
    fn all_directions_stopped_is_ready() {
        let sp = spec(Some(DesiredState::Stopped), &[Direction::Forward, Direction::Reverse]);
        let recs = vec![
            rec(Direction::Forward, DirectionState::Stopped),
            rec(Direction::Reverse, DirectionState::Stopped),
        ];
        let p = Intent::Stop(vec![(Direction::Forward, Step::Done), (Direction::Reverse, Step::Done)]);
        let s = summarize_at(&sp, &p, recs, None, 3, &DtsJobStatus::default(), &now());
        assert_eq!(s.phase, Some(Phase::Stopped));
        assert_eq!(cond(&s, READY).status, "True");
        assert_eq!(cond(&s, READY).reason, "Stopped");
        // Abnormal-true conditions are left out while False.
        assert_eq!(s.conditions.len(), 1, "{:?}", s.conditions);
    }

    #[test]
    fn terminal_failure_stalls_with_the_rendered_message() {
        let sp = spec(Some(DesiredState::Stopped), &[Direction::Reverse]);
        let mut r = rec(Direction::Reverse, DirectionState::Failed);
        r.request_id = Some("7C1A".into());
        r.error_code = Some("InvalidParameter".into());
        r.error_message = Some("The Value of Input Parameter SynchronizationDirection is not valid.".into());
        let p = Intent::Stop(vec![(Direction::Reverse, Step::Done)]);
        let s = summarize_at(&sp, &p, vec![r], None, 3, &DtsJobStatus::default(), &now());
        assert_eq!(s.phase, Some(Phase::Failed));
        assert_eq!(cond(&s, READY).reason, "StopFailed");
        let stalled = cond(&s, STALLED);
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", "InvalidParameter")
        );
        assert_eq!(
            stalled.message,
            "Reverse: The Value of Input Parameter SynchronizationDirection is not valid. (RequestId 7C1A)"
        );
    }

    #[test]
    fn refused_credentials_name_the_secret_to_fix() {
        let mut sp = spec(Some(DesiredState::Stopped), &[Direction::Forward]);
        sp.credentials_secret_ref = Some(crate::crd::SecretReference {
            name: "dts-creds".into(),
        });
        let mut r = rec(Direction::Forward, DirectionState::Failed);
        r.error_code = Some("SignatureDoesNotMatch".into());
        r.error_message = Some("Specified signature is not matched with our calculation.".into());
        let p = Intent::Stop(vec![(Direction::Forward, Step::Done)]);
        let s = summarize_at(&sp, &p, vec![r.clone()], None, 1, &DtsJobStatus::default(), &now());
        let stalled = cond(&s, STALLED);
        assert_eq!(stalled.reason, "AuthenticationFailed");
        assert!(
            stalled
                .message
                .starts_with("Forward: Specified signature is not matched"),
            "{stalled:?}"
        );
        assert!(stalled.message.ends_with("in Secret dts-creds"), "{stalled:?}");
        sp.credentials_secret_ref = None;
        let s = summarize_at(&sp, &p, vec![r], None, 1, &DtsJobStatus::default(), &now());
        assert!(cond(&s, STALLED).message.contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET"));
    }

    #[test]
    fn in_progress_is_ready_unknown_and_reconciling() {
        let sp = spec(Some(DesiredState::Stopped), &[Direction::Forward]);
        let p = Intent::Stop(vec![(Direction::Forward, Step::Describe)]);
        let s = summarize_at(
            &sp,
            &p,
            vec![rec(Direction::Forward, DirectionState::Stopping)],
            None,
            1,
            &Default::default(),
            &now(),
        );
        assert_eq!(s.phase, Some(Phase::Stopping));
        assert_eq!(cond(&s, READY).status, "Unknown");
        assert_eq!(cond(&s, RECONCILING).status, "True");
    }

    #[test]
    fn blocked_by_credentials_is_stalled_pending() {
        let sp = spec(Some(DesiredState::Stopped), &[Direction::Forward]);
        let p = Intent::Stop(vec![(Direction::Forward, Step::Stop)]);
        let b = Blocked::stalled(Reason::CredentialsSecretNotFound, "Secret x not found".into());
        let s = summarize_at(&sp, &p, vec![], Some(&b), 1, &Default::default(), &now());
        assert_eq!(s.phase, Some(Phase::Pending));
        assert_eq!(cond(&s, STALLED).reason, "CredentialsSecretNotFound");
        assert_eq!(cond(&s, READY).status, "False");
    }

    #[test]
    fn unchanged_conditions_keep_their_transition_time() {
        let sp = spec(None, &[Direction::Forward]);
        let p = Intent::Observe;
        let first = summarize_at(&sp, &p, vec![], None, 1, &Default::default(), &now());
        let later = Time("2026-11-28T10:00:00Z".parse().unwrap());
        let second = summarize_at(&sp, &p, vec![], None, 1, &first, &later);
        assert_eq!(
            first, second,
            "a reconcile that finds nothing new must produce an identical status"
        );
    }

    #[test]
    fn restart_after_stop_is_terminal() {
        let sp = spec(Some(DesiredState::Running), &[Direction::Forward]);
        let recs = vec![rec(Direction::Forward, DirectionState::Stopped)];
        let s = summarize_at(
            &sp,
            &Intent::RestartNotSupported,
            recs,
            None,
            4,
            &Default::default(),
            &now(),
        );
        assert_eq!(cond(&s, STALLED).reason, "RestartNotSupported");
        assert_eq!(cond(&s, READY).status, "False");
    }

    #[test]
    fn stalled_reason_agrees_with_the_event_reason_for_the_same_code() {
        use dts_api::error::{DtsError, ErrorKind};
        for (code, status) in [
            ("NoPermission", 403),
            ("InvalidAccessKeySecret", 400),
            ("InvalidApi.NotFound", 404),
            ("DTS.Msg.OperationDenied.JobStatusModifying", 200),
            ("Forbidden.InstanceNotFound", 403),
            ("InvalidParameter", 200),
        ] {
            let e = DtsError {
                kind: ErrorKind::Api,
                http_status: Some(status),
                code: Some(code.into()),
                ..DtsError::invalid_request("")
            };
            let sp = spec(Some(DesiredState::Stopped), &[Direction::Forward]);
            let mut r = rec(Direction::Forward, DirectionState::Failed);
            r.error_code = e.code.clone();
            let p = Intent::Stop(vec![(Direction::Forward, Step::Done)]);
            let s = summarize_at(&sp, &p, vec![r], None, 1, &DtsJobStatus::default(), &now());
            assert_eq!(cond(&s, STALLED).reason, Reason::for_dts_error(&e).as_str(), "{code}");
        }
    }

    #[test]
    fn unsetting_desired_state_after_a_stop_still_reports_stopped() {
        let sp = spec(None, &[Direction::Forward, Direction::Reverse]);
        let recs = vec![
            rec(Direction::Forward, DirectionState::Stopped),
            rec(Direction::Reverse, DirectionState::Stopped),
        ];
        let s = summarize_at(&sp, &Intent::Observe, recs, None, 3, &DtsJobStatus::default(), &now());
        assert_eq!(
            s.phase,
            Some(Phase::Stopped),
            "the records say Stopped, so does the phase"
        );
        let ready = cond(&s, READY);
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "ObserveOnly"));
        assert!(
            ready.message.contains("Forward and Reverse stopped earlier"),
            "{ready:?}"
        );
        // Nothing stopped: observe only reports Running.
        let s = summarize_at(&sp, &Intent::Observe, vec![], None, 3, &DtsJobStatus::default(), &now());
        assert_eq!(s.phase, Some(Phase::Running));
    }
}
