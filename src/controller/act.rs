//! Act (I/O): only the DTS calls of one decision, through the limits and
//! the Lease gate, returning the raw answers for `record`.
//!
//! Every call goes through [`DtsCaller`], which waits for the limits of the
//! call's key (its AccessKey and region: the breaker, the adaptive rate, then
//! the global concurrency limit; [`crate::limits`]), asks the Lease gate
//! right before sending, counts the call in the metrics and reports the
//! answer back to the limits.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use super::cutover::Reading;
use super::decide::{confirm_after, Call, Step};
use super::observe::{Credentials, Observed};
use super::Gate;
use crate::crd::{DesiredState, Direction};
use crate::failpoint::failpoint;
use crate::limits::breaker::{verdict_of, Verdict};
use crate::limits::{CircuitInfo, Limits};
use crate::metrics::Metrics;
use crate::view::DtsView;
use dts_api::sign;
use dts_api::{ApiSuccess, DtsClient, DtsError, ErrorClass, JobDetail, JobPage, JobRef, JobsQuery};

/// Why a call was not sent. Either way, DTS received nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotSent {
    /// The Lease was lost while the call waited for the limits.
    LeaseLost,
    /// The circuit breaker of the call's key is open (or half-open with its
    /// probe taken).
    CircuitOpen(CircuitInfo),
}

/// A call's fate: not sent, or sent with DTS's answer.
pub type Sent<T> = Result<Result<T, DtsError>, NotSent>;

/// The DTS client behind the limits and the Lease gate.
pub struct DtsCaller {
    client: DtsClient,
    limits: Arc<Limits>,
    metrics: Arc<Metrics>,
    may_act: Gate,
}

impl DtsCaller {
    /// Calls go through `limits` (per key: breaker and adaptive rate; a
    /// global concurrency limit), and none unless `may_act` (this replica
    /// holds the Lease) right before it is sent.
    pub fn new(client: DtsClient, limits: Arc<Limits>, metrics: Arc<Metrics>, may_act: Gate) -> Self {
        Self {
            client,
            limits,
            metrics,
            may_act,
        }
    }

    /// The limits every call goes through.
    pub fn limits(&self) -> &Arc<Limits> {
        &self.limits
    }

    pub async fn stop(&self, creds: &sign::Credentials, job: &JobRef) -> Sent<ApiSuccess> {
        self.limited(
            "StopDtsJob",
            creds,
            &job.region_id,
            true,
            self.client.stop_dts_job(creds, job),
        )
        .await
    }

    pub async fn suspend(&self, creds: &sign::Credentials, job: &JobRef) -> Sent<ApiSuccess> {
        self.limited(
            "SuspendDtsJob",
            creds,
            &job.region_id,
            true,
            self.client.suspend_dts_job(creds, job),
        )
        .await
    }

    pub async fn start(&self, creds: &sign::Credentials, job: &JobRef) -> Sent<ApiSuccess> {
        self.limited(
            "StartDtsJob",
            creds,
            &job.region_id,
            true,
            self.client.start_dts_job(creds, job),
        )
        .await
    }

    pub async fn describe(&self, creds: &sign::Credentials, job: &JobRef) -> Sent<JobDetail> {
        self.limited(
            "DescribeDtsJobDetail",
            creds,
            &job.region_id,
            true,
            self.client.describe_dts_job_detail(creds, job),
        )
        .await
    }

    /// One page of DescribeDtsJobs (the batch observer's read). It is never
    /// a half-open breaker's probe: that is left to a DtsJob's reconcile,
    /// whose status shows the outcome.
    pub async fn describe_jobs(&self, creds: &sign::Credentials, query: &JobsQuery) -> Sent<JobPage> {
        self.limited(
            "DescribeDtsJobs",
            creds,
            &query.region_id,
            false,
            self.client.describe_dts_jobs(creds, query),
        )
        .await
    }

    async fn limited<T>(
        &self,
        action: &'static str,
        creds: &sign::Credentials,
        region: &str,
        may_probe: bool,
        call: impl Future<Output = Result<T, DtsError>>,
    ) -> Sent<T> {
        let pass = self
            .limits
            .acquire(creds, region, may_probe)
            .await
            .map_err(NotSent::CircuitOpen)?;
        // Waiting for the limits can take seconds when many jobs stop at
        // once: a replica that lost the Lease meanwhile must not send.
        if !(self.may_act)() {
            self.limits.not_sent(pass);
            return Err(NotSent::LeaseLost);
        }
        let start = Instant::now();
        let result = call.await;
        self.metrics.dts_call(action, result.as_ref().err(), start.elapsed());
        self.limits.answered(pass, &result);
        Ok(result)
    }
}

/// What DTS answered for one direction.
#[derive(Debug)]
pub enum Answer {
    /// The Lease was lost while the call waited for the limits: nothing was sent.
    NotSent,
    /// The circuit breaker of the job's credentials refused the call:
    /// nothing was sent.
    Refused(CircuitInfo),
    /// A failure that is the key's (credentials refused, permission
    /// missing, DTS down), while the key's breaker is open for it: the
    /// DtsJob waits for the breaker rather than fail or back off on its own.
    Tripped(Box<Answer>, CircuitInfo),
    /// DescribeDtsJobDetail's answer.
    Describe(Result<JobDetail, DtsError>),
    /// StopDtsJob's answer and, after a terminal one, the describe that
    /// looked whether the job already finished ([`confirm_after`]).
    Stop(Result<ApiSuccess, DtsError>, Option<Result<JobDetail, DtsError>>),
    /// SuspendDtsJob's (target Suspended) or StartDtsJob's (Running) answer.
    Lifecycle(DesiredState, Result<ApiSuccess, DtsError>),
    /// DescribeDtsJobDetail's answer, read to confirm a suspend or start.
    Confirm(Result<JobDetail, DtsError>),
}

/// One direction's answer.
#[derive(Debug)]
pub struct CallResult {
    pub direction: Direction,
    pub answer: Answer,
}

/// The delay gate's reads: DescribeDtsJobDetail for each of `directions`,
/// each stored in `view`. Not sent: the Lease was lost while a read waited
/// for the limits, or the key's circuit is open, also when a read's own
/// failure opened it (nothing more is sent either way).
pub async fn gauge(
    dts: &DtsCaller,
    view: &DtsView,
    obs: &Observed,
    directions: &[Direction],
) -> Result<Vec<Reading>, NotSent> {
    let Credentials::Ready(resolved) = &obs.credentials else {
        // decide gauges only with credentials; without, nothing is read.
        return Ok(Vec::new());
    };
    let creds = &resolved.credentials;
    let mut readings = Vec::with_capacity(directions.len());
    for d in directions {
        let result = dts.describe(creds, &obs.job_ref(*d)).await?;
        match &result {
            Ok(detail) => {
                view.put(
                    &obs.spec.region_id,
                    &obs.spec.job_id,
                    *d,
                    detail.into(),
                    obs.now.clone(),
                );
            }
            Err(e) => {
                if let Verdict::Failure(group) = verdict_of(e) {
                    if let Some(info) = dts.limits().enlist(creds, &obs.spec.region_id, &obs.member(), group) {
                        return Err(NotSent::CircuitOpen(info));
                    }
                }
            }
        }
        readings.push((*d, result));
    }
    Ok(readings)
}

/// Runs the steps of `call` in order. Stops at the first call that was not
/// sent (the Lease is gone, or the breaker refused it; `record` knows what
/// the marks of the rest mean) and after a failure the breaker holds. Every
/// direction read is stored in `view`, so the next reconcile sees it
/// without a call.
pub async fn run(dts: &DtsCaller, view: &DtsView, obs: &Observed, call: &Call) -> Vec<CallResult> {
    let Credentials::Ready(resolved) = &obs.credentials else {
        return Vec::new();
    };
    let creds = &resolved.credentials;
    let mut results = Vec::with_capacity(call.steps.len());
    for (direction, step) in &call.steps {
        let job = obs.job_ref(*direction);
        let sent: Result<Answer, NotSent> = match step {
            Step::Done => continue,
            Step::Describe => dts.describe(creds, &job).await.map(Answer::Describe),
            Step::Stop => match dts.stop(creds, &job).await {
                Ok(Err(e)) if e.class == ErrorClass::Terminal && confirm_after(&e) => {
                    let confirm = dts.describe(creds, &job).await.ok();
                    Ok(Answer::Stop(Err(e), confirm))
                }
                other => other.map(|r| Answer::Stop(r, None)),
            },
            Step::Suspend => dts
                .suspend(creds, &job)
                .await
                .map(|r| Answer::Lifecycle(DesiredState::Suspended, r)),
            Step::Start => dts
                .start(creds, &job)
                .await
                .map(|r| Answer::Lifecycle(DesiredState::Running, r)),
            Step::Confirm => dts.describe(creds, &job).await.map(Answer::Confirm),
        };
        if step.changes_the_job() && sent.is_ok() {
            // DTS answered; nothing of it is recorded yet.
            failpoint!("call-after");
        }
        let answer = match sent {
            Ok(answer) => held_by_circuit(dts, creds, obs, answer),
            Err(NotSent::LeaseLost) => Answer::NotSent,
            Err(NotSent::CircuitOpen(info)) => Answer::Refused(info),
        };
        if let Answer::Confirm(Ok(detail)) | Answer::Describe(Ok(detail)) = &answer {
            view.put(
                &obs.spec.region_id,
                &obs.spec.job_id,
                *direction,
                detail.into(),
                obs.now.clone(),
            );
        }
        let go_on = !matches!(answer, Answer::NotSent | Answer::Refused(_) | Answer::Tripped(..));
        results.push(CallResult {
            direction: *direction,
            answer,
        });
        if !go_on {
            break;
        }
    }
    results
}

/// An answer that failed for a reason of the key's own (its breaker
/// group) is reported to the breaker's members; when the breaker is open
/// for that group now, the answer is [`Answer::Tripped`]: this DtsJob is
/// held with the others instead of failing for a reason that is not its own.
fn held_by_circuit(dts: &DtsCaller, creds: &sign::Credentials, obs: &Observed, answer: Answer) -> Answer {
    let error = match &answer {
        Answer::Stop(Err(e), _) | Answer::Describe(Err(e)) | Answer::Lifecycle(_, Err(e)) | Answer::Confirm(Err(e)) => {
            e
        }
        _ => return answer,
    };
    let Verdict::Failure(group) = verdict_of(error) else {
        return answer;
    };
    match dts.limits().enlist(creds, &obs.spec.region_id, &obs.member(), group) {
        Some(info) => Answer::Tripped(Box::new(answer), info),
        None => answer,
    }
}
