//! The `DtsJob` custom resource (`kubedts.io/v1alpha1`).
//!
//! Types only: the CRD schema, printer columns and admission rules are all
//! generated from these definitions (`dts-operator crd`), and
//! `crds/dtsjob.yaml` is that output, committed and checked for drift.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Annotation that asks the operator to retry a terminal failure without a
/// spec change (any new value counts), as `kubectl annotate --overwrite` does.
/// A new value also cuts short a scheduled retry's backoff.
pub const RECONCILE_REQUESTED_AT: &str = "kubedts.io/reconcile-requested-at";

/// Annotation that pauses the operator for one DtsJob: with `"true"` it
/// makes no DTS call and no change beyond one `Paused` condition.
pub const PAUSED: &str = "kubedts.io/paused";

/// Annotation that sets how often DTS is read for one DtsJob (a duration
/// such as `30s` or `5m`; `0` turns polling off for it).
pub const POLL_INTERVAL: &str = "kubedts.io/poll-interval";

/// The finalizer of a DtsJob with `deletionPolicy: Stop`.
pub const STOP_ON_DELETE_FINALIZER: &str = "kubedts.io/stop-on-delete";

/// How many DTS calls `status.history` keeps (the newest).
pub const HISTORY_LIMIT: usize = 10;

/// A DTS synchronization or migration job whose lifecycle is declared in
/// Kubernetes. Setting `desiredState: Stopped` makes the operator send
/// StopDtsJob for each listed direction, once, and record the outcome.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kubedts.io",
    version = "v1alpha1",
    kind = "DtsJob",
    plural = "dtsjobs",
    shortname = "dtsjob",
    namespaced,
    doc = "An Alibaba Cloud DTS (Data Transmission Service) synchronization or migration job whose lifecycle dts-operator manages: spec.desiredState (Running, Suspended or Stopped) is driven for each listed direction with StartDtsJob, SuspendDtsJob and StopDtsJob (a stop at most once per stop intent), and status reports what DTS shows, the RequestIds of the last 10 DTS calls (status.history) and kstatus conditions (Ready, Reconciling, Stalled).",
    status = "DtsJobStatus",
    printcolumn = r#"{"name":"Job ID","type":"string","jsonPath":".spec.jobId"}"#,
    printcolumn = r#"{"name":"Desired","type":"string","jsonPath":".spec.desiredState"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"DTS Status","type":"string","jsonPath":".status.directions[0].observed.status"}"#,
    printcolumn = r#"{"name":"Delay","type":"integer","jsonPath":".status.directions[0].observed.delayMs"}"#,
    printcolumn = r#"{"name":"Stop At","type":"string","jsonPath":".spec.stopAt","priority":0}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new(
    "!has(oldSelf.desiredState) || oldSelf.desiredState != 'Stopped' || self.jobId == oldSelf.jobId"
).message("jobId cannot change while desiredState is Stopped: the recorded stop belongs to the old job; create a new DtsJob instead"))]
#[serde(rename_all = "camelCase")]
pub struct DtsJobSpec {
    /// The DTS job ID (DtsJobId), as shown in the DTS console.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub job_id: String,

    /// The DTS instance ID (DtsInstanceId). Optional; sent with every call when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub instance_id: Option<String>,

    /// The region of the job, for example cn-hangzhou. It selects the DTS
    /// endpoint and is sent as RegionId.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-z]{2,}(-[a-z0-9]+)+$"))]
    pub region_id: String,

    /// The synchronization directions to act on: Forward, and Reverse for a
    /// two-way synchronization. Defaults to [Forward].
    #[serde(default = "default_directions")]
    #[schemars(length(min = 1, max = 2), extend("x-kubernetes-list-type" = "set"))]
    pub directions: Vec<Direction>,

    /// What the job should be doing, per listed direction. Running: DTS
    /// shows it synchronizing (a suspended job is resumed with StartDtsJob).
    /// Suspended: paused with SuspendDtsJob. Stopped: ended with StopDtsJob,
    /// once; a stopped job cannot be restarted. Unset: observe only, never
    /// changed.
    // The enum without the JSON `null` schemars adds for an `Option`: the
    // API server refuses a null here either way, and with it in the enum
    // its messages list "null" as a supported value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Running", "Suspended", "Stopped"]))]
    pub desired_state: Option<DesiredState>,

    /// A scheduled stop: at this time (RFC 3339, for example
    /// 2026-12-01T22:00:00Z) the operator stops the job as if desiredState
    /// had become Stopped; until then desiredState applies. A time in the
    /// past stops at once. stopPolicy applies to this stop too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,

    /// A cutover-safe stop: StopDtsJob is sent only once DTS reports the
    /// replication delay of every listed direction at or below
    /// maxDelaySeconds (read with DescribeDtsJobDetail just before the
    /// stop). Unset: the stop is sent at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_policy: Option<StopPolicy>,

    /// Manage (the default): a job DTS shows in another state than desired
    /// (suspended in the console, say) is driven back, with an Event.
    /// ObserveOnly: such a difference is only reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_policy: Option<ManagementPolicy>,

    /// What deleting the DtsJob does to the DTS job. Orphan (the default)
    /// leaves it as it is; Stop stops every listed direction (at most once)
    /// before the DtsJob goes away, through the kubedts.io/stop-on-delete
    /// finalizer. A job DTS no longer knows does not block the deletion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,

    /// A Secret in the same namespace with the keys accessKeyId and
    /// accessKeySecret (and securityToken for STS credentials). When unset,
    /// the operator's own default credentials are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretReference>,
}

/// When a stop may be sent: after the replication delay has caught up.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StopPolicy {
    /// The largest replication delay, in seconds, at which a direction may
    /// be stopped. Two-way jobs stop only when both directions are at or
    /// below it in the same reading.
    #[schemars(range(min = 0, max = 604800))]
    pub max_delay_seconds: i64,

    /// How long to wait for the delay: a duration counted from the moment
    /// the stop was asked for (desiredState became Stopped, or stopAt came),
    /// such as 30m or 1h30m, or an RFC 3339 time. Unset: wait as long as it
    /// takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(DEADLINE_RULE).message(
        "deadline must be a duration such as 90s, 30m or 1h30m, or an RFC 3339 time such as 2026-12-01T22:00:00Z"
    ))]
    #[schemars(length(min = 1, max = 64))]
    pub deadline: Option<String>,

    /// What happens at the deadline if the delay is still too high. Stall
    /// (the default): no stop is sent; the DtsJob is Stalled with reason
    /// DelayDeadlineExceeded until the spec changes. Stop: stop anyway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_deadline: Option<OnDeadline>,
}

/// The CEL rule of `stopPolicy.deadline`: a Go-style duration or an RFC 3339 time.
const DEADLINE_RULE: &str = r"self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || self.matches('^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$')";

/// What a delay-gated stop does at its deadline.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum OnDeadline {
    /// Send StopDtsJob whatever the delay.
    Stop,
    /// Send nothing and report the DtsJob Stalled.
    #[default]
    Stall,
}

fn default_directions() -> Vec<Direction> {
    vec![Direction::Forward]
}

/// A synchronization direction of a DTS job.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
pub enum Direction {
    Forward,
    Reverse,
}

impl Direction {
    /// The value DTS expects in SynchronizationDirection.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Forward => "Forward",
            Direction::Reverse => "Reverse",
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The declared lifecycle state of the job.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DesiredState {
    Running,
    Suspended,
    Stopped,
}

/// Whether the operator corrects DTS when it differs from the spec.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ManagementPolicy {
    /// Drive the job back to the desired state.
    #[default]
    Manage,
    /// Only report the difference.
    ObserveOnly,
}

/// What deleting a DtsJob does to its DTS job.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum DeletionPolicy {
    /// Leave the DTS job as it is.
    #[default]
    Orphan,
    /// Stop every listed direction before the DtsJob is removed.
    Stop,
}

/// A reference to a Secret in the DtsJob's own namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretReference {
    /// The Secret's name.
    // A DNS subdomain, as Kubernetes names Secrets: dot-separated labels,
    // each starting and ending alphanumeric (so `a..b` and `a.-b` are refused
    // here rather than found missing at every reconcile).
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
}

/// What the operator observed and did.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DtsJobStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// A one-word summary: Pending, Running, Suspended, Stopping, Stopped or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// kstatus conditions: Ready, Reconciling and Stalled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The outcome per synchronization direction.
    // Atomic, as a Pod's containerStatuses are: the operator is the only
    // writer and always replaces the status whole, so nothing merges by key.
    // As a list-map, every field of every direction was itemised in the
    // operator's managedFields entry (958 of a stopped two-way job's 3.5 KB,
    // against 454 now), and kube-apiserver decodes, patches and encodes that
    // on every write of the object: a 1,000-job burst cost it about a fifth
    // less CPU atomic (docs/benchmarks.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub directions: Vec<DirectionStatus>,

    /// The last DTS calls the operator made for this DtsJob that changed the
    /// job or decided a stop (at most 10, oldest first; the reads that
    /// confirm a suspend or start are left out), so no RequestId is lost
    /// when a direction is retried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub history: Vec<CallRecord>,

    /// The cutover gate of a stop under spec.stopPolicy: the delay last
    /// read, the limit, and since when the stop has waited.
    // Boxed: most DtsJobs never have one, and every DtsJob of the watch
    // cache would otherwise carry its size inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_gate: Option<Box<StopGate>>,

    /// Where the credentials of the last reconcile that needed them came
    /// from (never a value): `Secret/<name>`, `Secret/<name> (AssumeRole)`,
    /// `DefaultCredentialsDir`, `DefaultCredentialsDir (AssumeRole)`,
    /// `Environment` or `RRSA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_source: Option<String>,
}

/// Where a delay-gated stop stands.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StopGate {
    /// Waiting (the delay is above the limit, or unknown), Passed (the stop
    /// was sent under the limit), DeadlineStop (sent at the deadline with the
    /// delay above the limit) or Stalled (the deadline passed; nothing sent).
    pub state: StopGateState,
    /// The limit the delay is held to (stopPolicy.maxDelaySeconds).
    pub max_delay_seconds: i64,
    /// When the stop was asked for: the wait, and a deadline given as a
    /// duration, count from here.
    pub since: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    /// The deadline, as a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// When DTS was last read for the gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// The delay of each direction at that read.
    // Atomic for the reason `DtsJobStatus::directions` is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub delays: Vec<GateReading>,
    /// Why the last read gave no delay (an error, or DTS reported none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The inputs a Stalled gate is tied to (see directions[].failedFor):
    /// a spec change or a reconcile request looks again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stalled_for: Option<String>,
}

/// One direction's replication delay, as DescribeDtsJobDetail reported it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateReading {
    pub direction: Direction,
    /// Delay in milliseconds; absent when DTS reported none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<i64>,
}

/// The states of a [`StopGate`].
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum StopGateState {
    Waiting,
    Passed,
    DeadlineStop,
    Stalled,
}

/// One DTS call and how it ended.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    /// When the call was made.
    pub time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    /// The DTS action, for example StopDtsJob.
    pub action: String,
    /// The direction the call was about.
    pub direction: Direction,
    /// RequestId of DTS's answer, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// success, retryable, ambiguous or terminal.
    pub outcome: String,
    /// The DTS error code (or the failure's reason when DTS sent no code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// The summary phase of a DtsJob.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    Pending,
    Running,
    Suspended,
    Stopping,
    Stopped,
    Failed,
}

/// The state of one direction's stop.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DirectionState {
    /// Not stopped yet; a call may be scheduled (after a retryable failure).
    Pending,
    /// A StopDtsJob call was (or is about to be) sent and its outcome is not
    /// known; the next attempt looks with DescribeDtsJobDetail first.
    Stopping,
    /// DTS confirmed the stop, or reported the job already finished.
    Stopped,
    /// DTS refused the stop with a terminal error; not retried until the
    /// spec, the credentials Secret or the reconcile-requested-at annotation changes.
    Failed,
}

/// The outcome of the stop of one direction.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectionStatus {
    /// Forward or Reverse.
    pub direction: Direction,
    /// Pending, Stopping, Stopped or Failed.
    pub state: DirectionState,
    /// The DTS job ID this record belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// RequestId of the last DTS answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// HTTP status of the last DTS answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status_code: Option<i32>,
    /// ErrCode (or gateway Code) of the last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// ErrMessage with %s replaced by DynamicMessage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// DynamicCode of the last failure, as DTS sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_code: Option<String>,
    /// DynamicMessage of the last failure, as DTS sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_message: Option<String>,
    /// StopDtsJob attempts made for the current stop intent.
    #[serde(default)]
    pub attempts: i32,
    /// When the last attempt was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Fingerprint of the inputs (generation, Secret version, reconcile
    /// request) a terminal failure was recorded for; while it matches, the
    /// failure is not retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_for: Option<String>,
    /// What DTS last reported for this direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<Observation>,
    /// A SuspendDtsJob or StartDtsJob in progress (or refused).
    // Boxed, as `stop_gate` is: rarely there, large inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition: Option<Box<Transition>>,
}

/// What DTS reported for one direction.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    /// DTS's Status (for example Synchronizing, Suspending, Finished, Failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Replication delay, as DTS reports it (Delay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<i64>,
    /// Checkpoint, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<i64>,
    /// DTS's ErrorMessage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// When DTS was read (updated only together with a change).
    pub observed_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
}

/// A suspend or start of one direction.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    /// Running (StartDtsJob) or Suspended (SuspendDtsJob).
    pub target: DesiredState,
    /// Requested (about to be sent, or sent with an unknown outcome),
    /// Confirming (DTS accepted; waiting for it to show the target),
    /// Failed (refused), or TimedOut (the target never showed).
    pub state: TransitionState,
    /// When the call was (about to be) made.
    pub since: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    /// RequestId of the call's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Error code of a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Error message of a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The inputs a refusal or time-out is tied to (see failedFor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_for: Option<String>,
}

/// Where a suspend or start stands.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TransitionState {
    Requested,
    Confirming,
    Failed,
    TimedOut,
}

impl DirectionStatus {
    /// A record for `direction` of `job_id` before any call: Pending, no attempts.
    pub fn new(direction: Direction, job_id: &str) -> Self {
        Self {
            direction,
            state: DirectionState::Pending,
            job_id: Some(job_id.to_owned()),
            request_id: None,
            http_status_code: None,
            error_code: None,
            error_message: None,
            dynamic_code: None,
            dynamic_message: None,
            attempts: 0,
            last_attempt_time: None,
            failed_for: None,
            observed: None,
            transition: None,
        }
    }
}

/// The CRD as YAML, exactly as committed in `crds/dtsjob.yaml`.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let yaml = serde_yaml::to_string(&DtsJob::crd()).expect("the CRD always serializes");
    format!("# Generated by `dts-operator crd`; do not edit (a test fails when it drifts).\n{yaml}")
}
