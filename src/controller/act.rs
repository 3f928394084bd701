//! Acting: the DTS calls of one reconcile and how each outcome is recorded.
//!
//! Every call goes through [`DtsCaller`], which applies the operator-wide
//! rate and concurrency limits and counts the call in the metrics.

use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use super::plan::Step;
use super::{Context, Gate};
use crate::crd::{Direction, DirectionState, DirectionStatus, DtsJob, DtsJobSpec};
use crate::dts::sign::Credentials;
use crate::dts::{ApiSuccess, DtsClient, DtsError, ErrorClass, JobDetail, JobRef};
use crate::metrics::Metrics;

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
    pub async fn stop(&self, creds: &Credentials, job: &JobRef) -> Option<Result<ApiSuccess, DtsError>> {
        self.limited("StopDtsJob", self.client.stop_dts_job(creds, job)).await
    }

    /// `None`: not sent, because the Lease was lost while the call waited.
    pub async fn describe(&self, creds: &Credentials, job: &JobRef) -> Option<Result<JobDetail, DtsError>> {
        self.limited("DescribeDtsJobDetail", self.client.describe_dts_job_detail(creds, job))
            .await
    }

    async fn limited<T>(
        &self,
        action: &str,
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
        let (outcome, code) = match &result {
            Ok(_) => ("success", String::new()),
            Err(e) => (
                class_label(e.class),
                e.code.clone().unwrap_or_else(|| e.reason().to_owned()),
            ),
        };
        self.metrics.dts_call(action, outcome, &code, start.elapsed());
        Some(result)
    }
}

fn class_label(c: ErrorClass) -> &'static str {
    match c {
        ErrorClass::Retryable => "retryable",
        ErrorClass::Ambiguous => "ambiguous",
        ErrorClass::Terminal => "terminal",
    }
}

/// What one reconcile's calls produced besides the direction records.
#[derive(Default)]
pub struct Outcome {
    /// (type, reason, direction, note).
    pub events: Vec<(EventType, &'static str, Direction, String)>,
    /// Set when a retry is due later (backoff, honouring x-acs-retry-after).
    pub retry_after: Option<Duration>,
    /// Set when the next step is known and may run at once (a describe
    /// showed the job still running, so a stop is next).
    pub decide_again: bool,
}

fn job_ref(spec: &DtsJobSpec, d: Direction) -> JobRef {
    JobRef {
        job_id: spec.job_id.clone(),
        instance_id: spec.instance_id.clone(),
        region_id: spec.region_id.clone(),
        direction: Some(d.as_str().to_owned()),
    }
}

fn entry<'a>(directions: &'a mut Vec<DirectionStatus>, spec: &DtsJobSpec, d: Direction) -> &'a mut DirectionStatus {
    let fresh = |d| DirectionStatus::new(d, &spec.job_id);
    match directions.iter().position(|r| r.direction == d) {
        Some(i) => {
            if directions[i].job_id.as_deref().is_some_and(|id| id != spec.job_id) {
                directions[i] = fresh(d);
            }
            &mut directions[i]
        }
        None => {
            directions.push(fresh(d));
            directions.sort_by_key(|r| r.direction);
            let i = directions.iter().position(|r| r.direction == d).unwrap_or(0);
            &mut directions[i]
        }
    }
}

/// Records that a StopDtsJob for `d` is about to be sent.
pub fn mark_stopping(directions: &mut Vec<DirectionStatus>, spec: &DtsJobSpec, d: Direction, when: &Time) {
    let r = entry(directions, spec, d);
    r.state = DirectionState::Stopping;
    r.attempts = r.attempts.saturating_add(1);
    r.last_attempt_time = Some(when.clone());
    r.failed_for = None;
}

fn record_success(r: &mut DirectionStatus, request_id: Option<String>, http_status: u16) {
    r.state = DirectionState::Stopped;
    r.request_id = request_id;
    r.http_status_code = Some(i32::from(http_status));
    r.error_code = None;
    r.error_message = None;
    r.dynamic_code = None;
    r.dynamic_message = None;
    r.failed_for = None;
}

fn record_error(r: &mut DirectionStatus, e: &DtsError) {
    r.request_id = e.request_id.clone();
    r.http_status_code = e.http_status.map(i32::from);
    r.error_code = Some(e.code.clone().unwrap_or_else(|| e.reason().to_owned()));
    r.error_message = Some(e.message.clone().unwrap_or_else(|| e.to_string()));
    r.dynamic_code = e.dynamic_code.clone();
    r.dynamic_message = e.dynamic_message.clone();
}

/// Errors after which asking DTS whether the job already finished is
/// pointless: the same credentials would be refused again.
fn describe_after_terminal(e: &DtsError) -> bool {
    !matches!(e.reason(), "AuthenticationFailed" | "AccessDenied" | "ClockSkew")
}

fn with_request_id(text: String, request_id: &Option<String>) -> String {
    match request_id {
        Some(id) => format!("{text} (RequestId {id})"),
        None => text,
    }
}

/// Runs the planned steps in spec order and records each outcome in `directions`.
pub async fn run_steps(
    ctx: &Context,
    job: &DtsJob,
    pending: &[(Direction, Step)],
    directions: &mut Vec<DirectionStatus>,
    creds: &Credentials,
    fingerprint: &str,
) -> Outcome {
    let mut out = Outcome::default();
    let mut server_retry_after: Option<Duration> = None;
    let mut retry = false;
    for (d, step) in pending {
        if !(ctx.may_act)() {
            break;
        }
        let jr = job_ref(&job.spec, *d);
        match step {
            Step::Done => {}
            Step::Describe => match ctx.dts.describe(creds, &jr).await {
                None => break,
                Some(Ok(detail)) if detail.is_finished() => {
                    let r = entry(directions, &job.spec, *d);
                    record_success(r, detail.request_id.clone(), detail.http_status);
                    let note = with_request_id(
                        format!("{d}: DescribeDtsJobDetail reports the job Finished"),
                        &detail.request_id,
                    );
                    info!(direction = %d, request_id = ?detail.request_id, "stop confirmed by DescribeDtsJobDetail");
                    out.events.push((EventType::Normal, "Stopped", *d, note));
                }
                Some(Ok(detail)) => {
                    // The earlier call did not take effect: a stop is next,
                    // and it will be marked Stopping again before it is sent.
                    let r = entry(directions, &job.spec, *d);
                    r.state = DirectionState::Pending;
                    info!(direction = %d, status = ?detail.status, "job not finished after an unknown outcome; stopping again");
                    out.decide_again = true;
                }
                Some(Err(e)) => match e.class {
                    ErrorClass::Terminal => fail(directions, job, *d, &e, fingerprint, &mut out),
                    _ => {
                        let r = entry(directions, &job.spec, *d);
                        record_error(r, &e);
                        warn!(direction = %d, error = %e, "DescribeDtsJobDetail failed; will look again");
                        server_retry_after = server_retry_after.max(e.retry_after);
                        retry = true;
                    }
                },
            },
            Step::Stop => match ctx.dts.stop(creds, &jr).await {
                None => break,
                Some(Ok(ok)) => {
                    let r = entry(directions, &job.spec, *d);
                    record_success(r, ok.request_id.clone(), ok.http_status);
                    info!(direction = %d, request_id = ?ok.request_id, "StopDtsJob succeeded");
                    let note = with_request_id(format!("{d}: StopDtsJob succeeded"), &ok.request_id);
                    out.events.push((EventType::Normal, "Stopped", *d, note));
                }
                Some(Err(e)) => match e.class {
                    ErrorClass::Retryable => {
                        let r = entry(directions, &job.spec, *d);
                        r.state = DirectionState::Pending;
                        record_error(r, &e);
                        warn!(direction = %d, error = %e, "StopDtsJob not executed; retrying");
                        server_retry_after = server_retry_after.max(e.retry_after);
                        retry = true;
                        let note = format!("{d}: {e}; retrying");
                        out.events.push((EventType::Warning, "RetryScheduled", *d, note));
                    }
                    ErrorClass::Ambiguous => {
                        let r = entry(directions, &job.spec, *d);
                        r.state = DirectionState::Stopping;
                        record_error(r, &e);
                        warn!(direction = %d, error = %e, "StopDtsJob outcome unknown; will describe before any new call");
                        retry = true;
                        let note = format!("{d}: {e}; the job will be described before any new call");
                        out.events.push((EventType::Warning, "StopOutcomeUnknown", *d, note));
                    }
                    ErrorClass::Terminal => {
                        if describe_after_terminal(&e) {
                            if let Some(Ok(detail)) = ctx.dts.describe(creds, &jr).await {
                                if detail.is_finished() {
                                    let r = entry(directions, &job.spec, *d);
                                    record_error(r, &e);
                                    r.state = DirectionState::Stopped;
                                    r.failed_for = None;
                                    let note = with_request_id(
                                        format!("{d}: DTS reports the job already finished ({})", e.reason()),
                                        &e.request_id,
                                    );
                                    info!(direction = %d, "job already finished");
                                    out.events.push((EventType::Normal, "AlreadyStopped", *d, note));
                                    continue;
                                }
                            }
                        }
                        fail(directions, job, *d, &e, fingerprint, &mut out);
                    }
                },
            },
        }
    }
    if retry {
        out.retry_after = Some(ctx.backoff.failed(&super::backoff_key(job), server_retry_after));
    }
    out
}

fn fail(
    directions: &mut Vec<DirectionStatus>,
    job: &DtsJob,
    d: Direction,
    e: &DtsError,
    fingerprint: &str,
    out: &mut Outcome,
) {
    let r = entry(directions, &job.spec, d);
    r.state = DirectionState::Failed;
    record_error(r, e);
    r.failed_for = Some(fingerprint.to_owned());
    warn!(direction = %d, error = %e, "DTS refused the stop; not retrying until the spec, the Secret or the reconcile-requested-at annotation changes");
    out.events
        .push((EventType::Warning, "StopFailed", d, format!("{d}: {e}")));
}
