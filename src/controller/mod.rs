//! The DtsJob controller: one reconcile is five steps in a fixed order.
//!
//! 1. [`observe`] (I/O): the cached object, the Lease, the credentials (or
//!    why they are missing), the backoff entry and the clock, as one value;
//! 2. [`decide`] (pure): settle (a status, no call) or call (the `Stopping`
//!    mark to write first, and the steps);
//! 3. [`act`] (I/O): only the DTS calls, through the limits (per AccessKey
//!    and region: circuit breaker, adaptive rate; [`crate::limits`]) and the
//!    Lease gate;
//! 4. [`record`] (pure): the status, Events and requeue the answers mean;
//! 5. [`write`] (I/O): the status (server-side apply, skipped when
//!    unchanged), then the Events.
//!
//! Where is the StopDtsJob call made? In [`act::run`]. Everything around it
//! exists to make that call at most once per stop intent: before a stop the
//! direction is written `Stopping` under the observed resourceVersion, so a
//! crash or a second writer can never lead to a blind second call — the
//! next reconcile describes first.

pub mod act;
pub mod backoff;
pub mod credentials;
pub mod cutover;
pub mod decide;
pub mod events;
pub mod observe;
pub mod record;
pub mod status;
pub mod write;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::{Client, ResourceExt};
use tracing::{debug, warn, Instrument};

use crate::cache::CachedJob;
use crate::crd::DtsJob;
use crate::failpoint::failpoint;
use crate::limits::{Limits, LimitsConfig};
use crate::metrics::Metrics;
use crate::reason::Reason;
pub use crate::runner::Action;
use act::DtsCaller;
use backoff::Backoff;
use decide::Decision;
use dts_api::sign::Credentials;
use dts_api::DtsClient;
use record::{Acted, Next, CONFLICT_RETRY};
use write::Written;

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "dts-operator";

/// Errors that end a reconcile early; each has a stable reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("Kubernetes API: no answer to a status write within {0:?}")]
    WriteTimeout(Duration),
    #[error("{0}")]
    Credentials(#[from] credentials::CredentialsError),
    #[error("DtsJob has no namespace")]
    NoNamespace,
}

impl Error {
    /// The reason, for metrics and logs.
    pub fn reason(&self) -> Reason {
        match self {
            Error::Kube(_) | Error::WriteTimeout(_) => Reason::KubeApiError,
            Error::Credentials(e) => e.reason(),
            Error::NoNamespace => Reason::NoNamespace,
        }
    }
}

/// "This replica holds the leader Lease": asked before every DTS call and
/// every status write.
pub type Gate = Arc<dyn Fn() -> bool + Send + Sync>;

/// The controller's tunables (the `run` flags that reach it).
#[derive(Debug, Clone)]
pub struct Settings {
    /// DTS calls per second at most, per (AccessKey, region): the ceiling
    /// of each key's adaptive rate.
    pub rate_limit: NonZeroU32,
    /// DTS calls in flight at most, all keys together.
    pub max_concurrency: usize,
    /// Failures of one class in a row that open a key's circuit breaker (0: never).
    pub circuit_failure_threshold: u32,
    /// How long an open circuit sends nothing before one probe.
    pub circuit_cooloff: Duration,
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
    /// Timeout of each status write and Event.
    pub write_timeout: Duration,
    /// This replica's name in Events.
    pub identity: Option<String>,
}

/// Shared state of the controller.
pub struct Context {
    pub client: Client,
    pub dts: DtsCaller,
    /// The credentials chain: Secrets, roles, the default source.
    pub credentials: credentials::Resolver,
    /// Events, written in the background.
    pub events: events::Sink,
    pub backoff: Backoff,
    pub metrics: Arc<Metrics>,
    /// Whether this replica may act (holds the leader lease). Checked before
    /// every DTS call and every write.
    pub may_act: Gate,
    pub settings: Settings,
    /// DTS's view of the jobs, as last read (by the observer and by
    /// confirmations); observe reads it instead of calling DTS.
    pub view: Arc<crate::view::DtsView>,
    /// The referenced Secrets' credentials, kept current by the Secret watch.
    pub secrets: credentials::SecretCache,
}

impl Settings {
    /// The DTS call limits these settings ask for.
    pub fn limits_config(&self) -> LimitsConfig {
        LimitsConfig {
            rate: self.rate_limit,
            max_concurrency: self.max_concurrency,
            failure_threshold: self.circuit_failure_threshold,
            cooloff: self.circuit_cooloff,
        }
    }
}

impl Context {
    /// The context the tests build: limits of its own, per `settings`.
    pub fn new(
        client: Client,
        dts: DtsClient,
        default_credentials: Option<Credentials>,
        settings: Settings,
        metrics: Arc<Metrics>,
        may_act: Gate,
    ) -> Self {
        let limits = Arc::new(Limits::new(settings.limits_config(), metrics.clone()));
        let resolver = credentials::Resolver::fixed(default_credentials);
        Self::with_limits(client, dts, resolver, settings, metrics, may_act, limits)
    }

    /// The context `run` builds, with `limits` (whose metrics it registered).
    pub fn with_limits(
        client: Client,
        dts: DtsClient,
        credentials: credentials::Resolver,
        settings: Settings,
        metrics: Arc<Metrics>,
        may_act: Gate,
        limits: Arc<Limits>,
    ) -> Self {
        let recorder = events::Recorder::new(client.clone(), FIELD_MANAGER, settings.identity.as_deref());
        let events = events::Sink::spawn(recorder, settings.write_timeout, events::EVENT_DEFER, metrics.clone());
        Self {
            dts: DtsCaller::new(dts, limits, metrics.clone(), may_act.clone()),
            backoff: Backoff::new(settings.retry_base_delay, settings.retry_max_delay),
            client,
            credentials,
            events,
            metrics,
            may_act,
            settings,
            view: Arc::default(),
            secrets: credentials::SecretCache::default(),
        }
    }
}

/// What the runner runs for a job: its reconcile, and on an error the
/// requeue of [`error_policy`].
pub async fn run(cached: Arc<CachedJob>, ctx: Arc<Context>) -> Action {
    match reconcile(cached.clone(), ctx.clone()).await {
        Ok(action) => action,
        Err(e) => error_policy(&cached, &e, &ctx),
    }
}

/// One reconcile of one DtsJob, inside the `reconcile` span: the cache
/// entry unpacked, then the five steps.
pub async fn reconcile(cached: Arc<CachedJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let job = unpack(&cached, &ctx).await?;
    let span = tracing::info_span!(
        "reconcile",
        namespace = %job.namespace().unwrap_or_default(),
        name = %job.name_any(),
        generation = job.metadata.generation.unwrap_or(0)
    );
    let start = Instant::now();
    let result = reconcile_steps(&job, &ctx).instrument(span).await;
    ctx.metrics.reconcile_finished(start.elapsed());
    result
}

/// The whole DtsJob of a cache entry; read from the API server in the
/// (defective) case that the entry does not unpack, never guessed.
async fn unpack(cached: &CachedJob, ctx: &Context) -> Result<DtsJob, Error> {
    match cached.job() {
        Ok(job) => Ok(job),
        Err(e) => {
            let namespace = cached.namespace();
            if namespace.is_empty() {
                return Err(Error::NoNamespace);
            }
            warn!(namespace = %namespace, name = %cached.name(), error = %e, "reading the DtsJob from the API server");
            let api: kube::Api<DtsJob> = kube::Api::namespaced(ctx.client.clone(), namespace);
            Ok(api.get(cached.name()).await?)
        }
    }
}

/// observe → decide → act → record → write.
async fn reconcile_steps(job: &DtsJob, ctx: &Context) -> Result<Action, Error> {
    let mut obs = observe::observe(job, ctx).await?;
    if obs.leader {
        ctx.metrics.reconciled();
    }
    let result = decide_and_act(job, ctx, &mut obs).await;
    observe::release_probe(ctx, &obs);
    result
}

/// decide → (gauge → decide) → act → record → write, on one observation.
async fn decide_and_act(job: &DtsJob, ctx: &Context, obs: &mut observe::Observed) -> Result<Action, Error> {
    let mut decision = decide::decide(obs);
    if let Decision::Gauge(directions) = &decision {
        // A delay-gated stop: read the delay now, then decide on it.
        decision = match act::gauge(&ctx.dts, &ctx.view, obs, directions).await {
            Ok(readings) => {
                obs.gauge = Some(readings);
                obs.read_views(&ctx.view);
                decide::decide(obs)
            }
            Err(act::NotSent::LeaseLost) => Decision::Standby,
            // The key's circuit opened meanwhile: the next reconcile shows it.
            Err(act::NotSent::CircuitOpen(info)) => Decision::Wait(info.retry_in),
        };
    }
    let obs = &*obs;
    debug!(?decision, "decided");
    // The newest resourceVersion this reconcile wrote: the runner runs
    // the job again only once its store has caught up with it.
    let mut wrote = 0;
    let acted = match &decision {
        Decision::Call(call) if call.marked => {
            failpoint!("mark-before");
            match write::status(ctx, obs, &call.base, obs.resource_version.as_deref()).await? {
                Written::Ok(rv) => {
                    wrote = rv;
                    failpoint!("mark-after");
                    Acted::Calls(act::run(&ctx.dts, &ctx.view, obs, call).await)
                }
                Written::Conflict | Written::NotLeader => Acted::Refused,
            }
        }
        Decision::Call(call) => Acted::Calls(act::run(&ctx.dts, &ctx.view, obs, call).await),
        Decision::Finalizer(add) => match write::finalizer(ctx, obs, *add).await? {
            Written::Ok(rv) => {
                wrote = rv;
                Acted::NoCall
            }
            Written::Conflict | Written::NotLeader => Acted::Refused,
        },
        _ => Acted::NoCall,
    };
    let called = matches!(&acted, Acted::Calls(calls) if !calls.is_empty());
    observe::note_answers(ctx, obs, &acted);
    let outcome = record::record(obs, &decision, acted);
    if let Some(w) = &outcome.write {
        match write::status(ctx, obs, &w.status, w.precondition.as_deref()).await? {
            Written::Conflict => {
                debug!("status changed since it was observed; deciding again");
                return Ok(Action::requeue(CONFLICT_RETRY).after_write(wrote));
            }
            Written::Ok(rv) => wrote = rv,
            Written::NotLeader => {}
        }
        if called {
            failpoint!("status-after");
        }
    }
    write::events(ctx, job, &outcome.events);
    Ok(schedule(ctx, obs, outcome.next).after_write(wrote))
}

/// Turns [`Next`] into the controller's Action, keeping the backoff.
/// A DtsJob with a `stopAt` ahead is requeued for that moment whatever else
/// it waits for.
fn schedule(ctx: &Context, obs: &observe::Observed, next: Next) -> Action {
    let stop_at = if obs.leader {
        cutover::until_stop_at(&obs.spec, &obs.now)
    } else {
        None
    };
    let wait = match next {
        Next::Settled => {
            ctx.backoff.forget(&obs.uid);
            None
        }
        Next::Standby => None,
        Next::Now => {
            ctx.backoff.forget(&obs.uid);
            Some(Duration::ZERO)
        }
        Next::After(wait) => Some(wait),
        Next::Retry { floor } => Some(ctx.backoff.failed(&obs.uid, floor, obs.requested_at.as_deref())),
    };
    match (wait, stop_at) {
        (Some(w), Some(s)) => Action::requeue(w.min(s)),
        (Some(w), None) | (None, Some(w)) => Action::requeue(w),
        (None, None) => Action::await_change(),
    }
}

/// Requeue policy for reconcile errors: per-object backoff, never a hot loop.
pub fn error_policy(job: &CachedJob, err: &Error, ctx: &Context) -> Action {
    ctx.metrics.reconcile_failed(err.reason());
    let requested_at = job.annotations().get(crate::crd::RECONCILE_REQUESTED_AT);
    // The uid is packed: unpacked here, on the rare failure.
    let uid = job.job().ok().and_then(|j| j.metadata.uid).unwrap_or_default();
    let wait = ctx.backoff.failed(&uid, None, requested_at.map(String::as_str));
    warn!(namespace = %job.namespace(), name = %job.name(), reason = %err.reason(), error = %err, ?wait, "reconcile failed");
    Action::requeue(wait)
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

/// Small builders shared by the controller's unit tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::credentials::Resolved;
    use super::observe::{Credentials, Observed};
    use crate::crd::{DesiredState, Direction, DirectionState, DirectionStatus, DtsJobSpec, DtsJobStatus};

    /// The clock of the tables: 2026-11-27T10:00:00Z.
    pub fn now() -> Time {
        Time("2026-11-27T10:00:00Z".parse().unwrap())
    }

    /// `ns/orders` (uid `uid-1`, generation 1, resourceVersion `7`) as the
    /// leader sees it, with credentials from Secret version `10`.
    pub fn observed(spec: DtsJobSpec, status: DtsJobStatus) -> Observed {
        Observed {
            namespace: "ns".into(),
            name: "orders".into(),
            uid: "uid-1".into(),
            generation: 1,
            resource_version: Some("7".into()),
            spec,
            status,
            requested_at: None,
            paused: false,
            deleting: false,
            finalizers: Vec::new(),
            leader: true,
            credentials: Credentials::Ready(Resolved {
                credentials: dts_api::Credentials::new("LTAIfixture", "fixture-secret"),
                secret_version: Some("10".into()),
                source: "Secret/aliyun".into(),
            }),
            circuit: crate::limits::Circuit::Closed,
            views: Vec::new(),
            retry_in: None,
            gauge: None,
            now: now(),
        }
    }

    /// A spec for job `job1` in cn-hangzhou.
    pub fn spec(desired: Option<DesiredState>, directions: &[Direction]) -> DtsJobSpec {
        DtsJobSpec {
            job_id: "job1".into(),
            instance_id: None,
            region_id: "cn-hangzhou".into(),
            directions: directions.to_vec(),
            desired_state: desired,
            management_policy: None,
            deletion_policy: None,
            credentials_secret_ref: None,
            stop_at: None,
            stop_policy: None,
        }
    }

    /// A record of `job1` after one attempt.
    pub fn record(direction: Direction, state: DirectionState) -> DirectionStatus {
        DirectionStatus {
            state,
            attempts: 1,
            ..DirectionStatus::new(direction, "job1")
        }
    }
}
