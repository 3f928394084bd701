//! Observe (I/O): everything one decision depends on, gathered once into
//! [`Observed`]: the cached object, whether this replica holds the Lease,
//! the credentials (or why they are missing), the circuit breaker of those
//! credentials, the backoff entry and the clock. Nothing after this step
//! reads the world again before the calls.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::act::{Answer, CallResult};
use super::credentials::{CredentialsError, Resolved};
use super::record::Acted;
use super::{decide, Context, Error};
use crate::crd::{
    DeletionPolicy, Direction, DtsJob, DtsJobSpec, DtsJobStatus, ManagementPolicy, PAUSED, RECONCILE_REQUESTED_AT,
    STOP_ON_DELETE_FINALIZER,
};
use crate::limits::{Circuit, Member};
use crate::view::{DtsView, Seen};
use dts_api::JobRef;

/// The credentials a decision may use.
#[derive(Debug)]
pub enum Credentials {
    /// Not read: no call can be needed for this spec and status, so the
    /// Secret is not touched (no Secret read at rest).
    NotNeeded,
    Ready(Resolved),
    /// The Secret or a key in it is missing, or nothing is configured.
    Missing(CredentialsError),
}

/// One DtsJob as this reconcile sees it.
#[derive(Debug)]
pub struct Observed {
    pub namespace: String,
    pub name: String,
    /// The backoff key: a DtsJob recreated under the same name is another object.
    pub uid: String,
    pub generation: i64,
    /// The cached resourceVersion: the precondition of every write computed
    /// from this view (a stale cache then ends in a 409 and a new decision).
    pub resource_version: Option<String>,
    pub spec: DtsJobSpec,
    /// The cached status (empty before the first write).
    pub status: DtsJobStatus,
    pub requested_at: Option<String>,
    /// The `kubedts.io/paused` annotation is `"true"`.
    pub paused: bool,
    /// The object is being deleted (it has a deletionTimestamp).
    pub deleting: bool,
    /// The object's finalizers.
    pub finalizers: Vec<String>,
    /// This replica holds the leader Lease.
    pub leader: bool,
    pub credentials: Credentials,
    /// The circuit breaker of the credentials in the job's region, when
    /// they are `Ready` (else `Closed`): an open one holds every call.
    pub circuit: Circuit,
    /// DTS's view of each listed direction, as last read (by the observer
    /// or a confirmation); missing when DTS has not been read yet.
    pub views: Vec<(Direction, Seen)>,
    /// A scheduled retry that is not due yet.
    pub retry_in: Option<Duration>,
    /// The delay-gate reads made in this reconcile (DescribeDtsJobDetail
    /// just before a gated stop); None until [`super::cutover`] asks for them.
    pub gauge: Option<Vec<super::cutover::Reading>>,
    /// Second precision: Kubernetes stores times so, and a sub-second
    /// timestamp would make every re-read differ from what was computed.
    pub now: Time,
}

impl Observed {
    /// The view of `job` before any credentials are read: the pure part of
    /// observing, shared with the tests.
    pub fn of(job: &DtsJob, leader: bool, retry_in: Option<Duration>, now: Time) -> Result<Self, Error> {
        Ok(Self {
            namespace: job.namespace().ok_or(Error::NoNamespace)?,
            name: job.name_any(),
            uid: job.uid().unwrap_or_else(|| job.name_any()),
            generation: job.metadata.generation.unwrap_or(0),
            resource_version: job.resource_version(),
            spec: job.spec.clone(),
            status: job.status.clone().unwrap_or_default(),
            requested_at: job.annotations().get(RECONCILE_REQUESTED_AT).cloned(),
            paused: job
                .annotations()
                .get(PAUSED)
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
            deleting: job.metadata.deletion_timestamp.is_some(),
            finalizers: job.finalizers().to_vec(),
            leader,
            credentials: Credentials::NotNeeded,
            circuit: Circuit::Closed,
            views: Vec::new(),
            retry_in,
            gauge: None,
            now,
        })
    }

    /// The DTS job and direction a call is about.
    pub fn job_ref(&self, direction: Direction) -> JobRef {
        JobRef {
            job_id: self.spec.job_id.clone(),
            instance_id: self.spec.instance_id.clone(),
            region_id: self.spec.region_id.clone(),
            direction: Some(direction.as_str().to_owned()),
        }
    }

    /// This DtsJob as a member of a circuit breaker (told when it opens or
    /// closes).
    pub fn member(&self) -> Member {
        Member {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// Whether the stop-on-delete finalizer is set.
    pub fn has_finalizer(&self) -> bool {
        self.finalizers.iter().any(|f| f == STOP_ON_DELETE_FINALIZER)
    }

    /// Whether the spec asks for the finalizer (`deletionPolicy: Stop`).
    pub fn wants_finalizer(&self) -> bool {
        self.spec.deletion_policy == Some(DeletionPolicy::Stop)
    }

    /// DTS's last view of `direction`, if read.
    pub fn view(&self, direction: Direction) -> Option<&Seen> {
        self.views.iter().find(|(d, _)| *d == direction).map(|(_, s)| s)
    }

    /// Takes DTS's latest view of each listed direction from `view`, or,
    /// for a direction not read since this process started, what the status
    /// recorded (`observed`): a restarted operator then acts on what DTS
    /// last showed instead of acting blind (it would otherwise send, for
    /// example, a SuspendDtsJob to every suspended job), and the observer
    /// corrects it within its interval.
    pub fn read_views(&mut self, view: &DtsView) {
        let (spec, status) = (&self.spec, &self.status);
        self.views = decide::listed_directions(spec)
            .into_iter()
            .filter_map(|d| {
                let seen = view.get(&spec.region_id, &spec.job_id, d).or_else(|| {
                    let o = decide::record_of(spec, &status.directions, d)?.observed.as_ref()?;
                    Some(Seen {
                        view: o.into(),
                        read_at: o.observed_at.clone(),
                    })
                })?;
                Some((d, seen))
            })
            .collect();
    }

    /// Whether a stop is asked for now (desiredState Stopped, stopAt has
    /// come, or the DtsJob is being deleted under deletionPolicy Stop).
    pub fn stop_due(&self) -> bool {
        self.deleting || super::cutover::stop_due(&self.spec, &self.now)
    }

    /// Whether the operator corrects DTS (`managementPolicy: Manage`, the default).
    pub fn manages(&self) -> bool {
        self.spec.management_policy.unwrap_or_default() == ManagementPolicy::Manage
    }

    /// The resourceVersion of the credentials Secret, if one was read.
    pub fn secret_version(&self) -> Option<&str> {
        match &self.credentials {
            Credentials::Ready(r) => r.secret_version.as_deref(),
            _ => None,
        }
    }
}

/// Observes `job`. A replica without the Lease reads nothing more; the
/// Secret is read only when a call may be needed.
pub async fn observe(job: &DtsJob, ctx: &Context) -> Result<Observed, Error> {
    let mut obs = Observed::of(job, (ctx.may_act)(), None, now())?;
    obs.read_views(&ctx.view);
    if obs.views.len() < decide::listed_directions(&obs.spec).len() && !obs.paused && !obs.deleting {
        // DTS was never read for this job (a new DtsJob): the observer reads
        // it now rather than at its next cycle.
        ctx.view.want_read();
    }
    obs.retry_in = ctx.backoff.remaining(&obs.uid, obs.requested_at.as_deref());
    let leader = obs.leader;
    if leader && !obs.paused && decide::may_call(&obs) {
        obs.credentials = match ctx
            .credentials
            .resolve(&ctx.client, &ctx.secrets, &obs.namespace, &obs.spec)
            .await
        {
            Ok(r) => Credentials::Ready(r),
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => Credentials::Missing(e),
        };
        if let Credentials::Ready(r) = &obs.credentials {
            // In half-open state this reconcile may come to hold the probe:
            // `release_probe` gives it back if no call follows.
            obs.circuit = ctx
                .dts
                .limits()
                .admit(&r.credentials, &obs.spec.region_id, &obs.member(), &obs.uid);
        }
    }
    Ok(obs)
}

/// Tells the credentials chain what DTS said of temporary credentials: an
/// answer that they expired drops them from the STS cache, so the retry
/// assumes the role again instead of reusing them until their own expiry.
pub fn note_answers(ctx: &Context, obs: &Observed, acted: &Acted) {
    let (Acted::Calls(results), Credentials::Ready(r)) = (acted, &obs.credentials) else {
        return;
    };
    let expired = |e: &dts_api::DtsError| e.reason() == dts_api::ErrorReason::CredentialsExpired;
    let any_expired = results.iter().any(|CallResult { answer, .. }| {
        let answer = match answer {
            Answer::Tripped(inner, _) => inner,
            other => other,
        };
        match answer {
            Answer::Stop(Err(e), _)
            | Answer::Describe(Err(e))
            | Answer::Lifecycle(_, Err(e))
            | Answer::Confirm(Err(e)) => expired(e),
            _ => false,
        }
    });
    if any_expired {
        ctx.credentials.expired(&r.credentials);
    }
}

/// Gives back a probe `obs` held but did not use (a call that was sent has
/// already settled it).
pub fn release_probe(ctx: &Context, obs: &Observed) {
    if let (Circuit::Probe, Credentials::Ready(r)) = (&obs.circuit, &obs.credentials) {
        ctx.dts.limits().release(&r.credentials, &obs.spec.region_id, &obs.uid);
    }
}

/// The clock, at second precision.
pub fn now() -> Time {
    let secs = jiff::Timestamp::now().as_second();
    Time(jiff::Timestamp::from_second(secs).unwrap_or_else(|_| jiff::Timestamp::now()))
}
