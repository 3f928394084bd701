//! Act (I/O): only the DTS calls of one decision, through the operator-wide
//! limits and the Lease gate, returning the raw answers for `record`.
//!
//! Every call goes through [`DtsCaller`], which applies the rate and
//! concurrency limits, asks the Lease gate right before sending, and counts
//! the call in the metrics.

use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;

use super::cutover::Reading;
use super::decide::{confirm_after, Call, Step};
use super::observe::{Credentials, Observed};
use super::Gate;
use crate::crd::{DesiredState, Direction};
use crate::metrics::Metrics;
use crate::view::DtsView;
use dts_api::sign;
use dts_api::{ApiSuccess, DtsClient, DtsError, ErrorClass, JobDetail, JobPage, JobRef, JobsQuery};

/// The DTS client behind the operator-wide limits and the Lease gate.
pub struct DtsCaller {
    client: DtsClient,
    limiter: DefaultDirectRateLimiter,
    in_flight: Semaphore,
    metrics: Arc<Metrics>,
    may_act: Gate,
}

impl DtsCaller {
    /// `rate` calls per second at most, spaced evenly (a burst of one), at
    /// most `concurrency` calls in flight, and none unless `may_act` (this
    /// replica holds the Lease) right before it is sent.
    pub fn new(client: DtsClient, rate: NonZeroU32, concurrency: usize, metrics: Arc<Metrics>, may_act: Gate) -> Self {
        let quota = Quota::per_second(rate).allow_burst(NonZeroU32::MIN);
        Self {
            client,
            limiter: RateLimiter::direct(quota),
            in_flight: Semaphore::new(concurrency.max(1)),
            metrics,
            may_act,
        }
    }

    /// `None`: not sent, because the Lease was lost while the call waited.
    pub async fn stop(&self, creds: &sign::Credentials, job: &JobRef) -> Option<Result<ApiSuccess, DtsError>> {
        self.limited("StopDtsJob", self.client.stop_dts_job(creds, job)).await
    }

    /// `None`: not sent, because the Lease was lost while the call waited.
    pub async fn suspend(&self, creds: &sign::Credentials, job: &JobRef) -> Option<Result<ApiSuccess, DtsError>> {
        self.limited("SuspendDtsJob", self.client.suspend_dts_job(creds, job))
            .await
    }

    /// `None`: not sent, because the Lease was lost while the call waited.
    pub async fn start(&self, creds: &sign::Credentials, job: &JobRef) -> Option<Result<ApiSuccess, DtsError>> {
        self.limited("StartDtsJob", self.client.start_dts_job(creds, job)).await
    }

    /// `None`: not sent, because the Lease was lost while the call waited.
    pub async fn describe(&self, creds: &sign::Credentials, job: &JobRef) -> Option<Result<JobDetail, DtsError>> {
        self.limited("DescribeDtsJobDetail", self.client.describe_dts_job_detail(creds, job))
            .await
    }

    /// One page of DescribeDtsJobs (the batch observer's read).
    /// `None`: not sent, because the Lease was lost while the call waited.
    pub async fn describe_jobs(
        &self,
        creds: &sign::Credentials,
        query: &JobsQuery,
    ) -> Option<Result<JobPage, DtsError>> {
        self.limited("DescribeDtsJobs", self.client.describe_dts_jobs(creds, query))
            .await
    }

    async fn limited<T>(
        &self,
        action: &'static str,
        call: impl Future<Output = Result<T, DtsError>>,
    ) -> Option<Result<T, DtsError>> {
        // The permit is held until the call ends; the semaphore is never closed.
        let _permit = self.in_flight.acquire().await.ok();
        self.limiter.until_ready().await;
        // Waiting for the limits can take seconds when many jobs stop at
        // once: a replica that lost the Lease meanwhile must not send.
        if !(self.may_act)() {
            return None;
        }
        let start = Instant::now();
        let result = call.await;
        self.metrics.dts_call(action, result.as_ref().err(), start.elapsed());
        Some(result)
    }
}

/// What DTS answered for one direction.
#[derive(Debug)]
pub enum Answer {
    /// The Lease was lost while the call waited for the limits: nothing was sent.
    NotSent,
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
/// each stored in `view`. None: the Lease was lost while a read waited for
/// the limits (nothing more is sent).
pub async fn gauge(dts: &DtsCaller, view: &DtsView, obs: &Observed, directions: &[Direction]) -> Option<Vec<Reading>> {
    let Credentials::Ready(resolved) = &obs.credentials else {
        return None;
    };
    let mut readings = Vec::with_capacity(directions.len());
    for d in directions {
        let result = dts.describe(&resolved.credentials, &obs.job_ref(*d)).await?;
        if let Ok(detail) = &result {
            view.put(
                &obs.spec.region_id,
                &obs.spec.job_id,
                *d,
                detail.into(),
                obs.now.clone(),
            );
        }
        readings.push((*d, result));
    }
    Some(readings)
}

/// Runs the steps of `call` in order. Stops at the first call that was not
/// sent (the Lease is gone; the rest stay as marked). Every direction read
/// is stored in `view`, so the next reconcile sees it without a call.
pub async fn run(dts: &DtsCaller, view: &DtsView, obs: &Observed, call: &Call) -> Vec<CallResult> {
    let Credentials::Ready(resolved) = &obs.credentials else {
        return Vec::new();
    };
    let creds = &resolved.credentials;
    let mut results = Vec::with_capacity(call.steps.len());
    for (direction, step) in &call.steps {
        let job = obs.job_ref(*direction);
        let answer = match step {
            Step::Done => continue,
            Step::Describe => dts.describe(creds, &job).await.map(Answer::Describe),
            Step::Stop => match dts.stop(creds, &job).await {
                Some(Err(e)) if e.class == ErrorClass::Terminal && confirm_after(&e) => {
                    let confirm = dts.describe(creds, &job).await;
                    Some(Answer::Stop(Err(e), confirm))
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
        if let Some(Answer::Confirm(Ok(detail)) | Answer::Describe(Ok(detail))) = &answer {
            view.put(
                &obs.spec.region_id,
                &obs.spec.job_id,
                *direction,
                detail.into(),
                obs.now.clone(),
            );
        }
        let sent = answer.is_some();
        results.push(CallResult {
            direction: *direction,
            answer: answer.unwrap_or(Answer::NotSent),
        });
        if !sent {
            break;
        }
    }
    results
}
