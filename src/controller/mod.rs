//! The DtsJob controller: resolve → validate → plan → act → status.
//!
//! Where is the StopDtsJob call made? In [`act::stop_direction`]. Everything
//! around it exists to make that call at most once per stop intent:
//! * [`plan`] decides per direction, from the recorded status alone;
//! * before a call the direction is written `Stopping` with a resourceVersion
//!   precondition ([`reconcile`]), so a crash or a second writer can never
//!   lead to a blind second call: the next reconcile describes first;
//! * status is written by server-side apply, and only when it changed.

pub mod act;
pub mod backoff;
pub mod credentials;
pub mod plan;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn, Instrument};

use crate::crd::{Direction, DtsJob, DtsJobStatus, RECONCILE_REQUESTED_AT};
use crate::dts::sign::Credentials;
use crate::metrics::Metrics;
use act::DtsCaller;
use backoff::Backoff;
use plan::{Plan, Step};

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "dts-operator";

/// Errors that end a reconcile early; each has a stable reason label.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Credentials(#[from] credentials::CredentialsError),
    #[error("DtsJob has no namespace")]
    NoNamespace,
}

impl Error {
    /// Fixed CamelCase label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubeApiError",
            Error::Credentials(e) => e.reason(),
            Error::NoNamespace => "NoNamespace",
        }
    }
}

/// "This replica holds the leader Lease": asked before every DTS call and
/// every status write.
pub type Gate = Arc<dyn Fn() -> bool + Send + Sync>;

/// Shared state of the controller.
pub struct Context {
    pub client: Client,
    pub dts: DtsCaller,
    pub default_credentials: Option<Credentials>,
    pub recorder: Recorder,
    pub backoff: Backoff,
    pub metrics: Arc<Metrics>,
    /// Whether this replica may act (holds the leader lease). Checked before
    /// every DTS call and every write.
    pub may_act: Gate,
}

fn now() -> Time {
    // Kubernetes stores times with second precision; a sub-second timestamp
    // would make every re-read differ from what was computed.
    let secs = jiff::Timestamp::now().as_second();
    Time(jiff::Timestamp::from_second(secs).unwrap_or_else(|_| jiff::Timestamp::now()))
}

/// One reconcile of one DtsJob, inside the `reconcile` span.
pub async fn reconcile(job: Arc<DtsJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = tracing::info_span!(
        "reconcile",
        namespace = %job.namespace().unwrap_or_default(),
        name = %job.name_any(),
        generation = job.metadata.generation.unwrap_or(0)
    );
    reconcile_inner(job, ctx).instrument(span).await
}

async fn reconcile_inner(job: Arc<DtsJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = job.namespace().ok_or(Error::NoNamespace)?;
    let name = job.name_any();
    let generation = job.metadata.generation.unwrap_or(0);
    if !(ctx.may_act)() {
        debug!("not the leader: not acting");
        return Ok(Action::await_change());
    }
    ctx.metrics.reconciled();
    debug!("reconciling");
    let api: Api<DtsJob> = Api::namespaced(ctx.client.clone(), &ns);
    let old = job.status.clone().unwrap_or_default();
    let key = backoff_key(&job);

    // Observe-only and restart requests, and jobs whose every direction DTS
    // confirmed stopped, need no call, so no credentials: no Secret read at
    // rest. (The empty fingerprint matches no terminal failure, so a Failed
    // direction is still pending here.)
    let observe_plan = plan::plan(&job.spec, &old, "");
    if observe_plan.pending().is_empty() {
        let new = status::summarize(
            &job.spec,
            &observe_plan,
            old.directions.clone(),
            None,
            generation,
            &old,
            &now(),
        );
        let changed = write_status_if_changed(&api, &name, &old, &new, None).await?;
        if changed && observe_plan == Plan::RestartNotSupported {
            publish(
                &ctx,
                &job,
                EventType::Warning,
                "RestartNotSupported",
                "Reconcile",
                status_message(&new, status::STALLED),
            )
            .await;
        }
        ctx.backoff.reset(&key);
        return Ok(Action::await_change());
    }

    let resolved = match credentials::resolve(&ctx.client, &ns, &job.spec, ctx.default_credentials.as_ref()).await {
        Ok(r) => r,
        Err(e) if e.is_transient() => return Err(e.into()),
        Err(e) => {
            let blocker = e.blocker();
            let new = status::summarize(
                &job.spec,
                &observe_plan,
                old.directions.clone(),
                Some(&blocker),
                generation,
                &old,
                &now(),
            );
            if write_status_if_changed(&api, &name, &old, &new, None).await? {
                warn!(reason = blocker.reason, "{}", blocker.message);
                publish(
                    &ctx,
                    &job,
                    EventType::Warning,
                    blocker.reason,
                    "Reconcile",
                    blocker.message.clone(),
                )
                .await;
            }
            return Ok(Action::await_change());
        }
    };
    let fp = plan::fingerprint(generation, resolved.secret_version.as_deref(), requested_at(&job));
    let cached_plan = plan::plan(&job.spec, &old, &fp);
    if cached_plan.pending().is_empty() {
        // Every direction left is a terminal failure for these inputs.
        let new = status::summarize(
            &job.spec,
            &cached_plan,
            old.directions.clone(),
            None,
            generation,
            &old,
            &now(),
        );
        write_status_if_changed(&api, &name, &old, &new, None).await?;
        return Ok(Action::await_change());
    }
    if let Some(wait) = ctx.backoff.remaining(&key) {
        debug!(?wait, "retry not due yet");
        return Ok(Action::requeue(wait));
    }

    // Calls are needed: decide again on a fresh read, because the watch cache
    // may not show our own latest write yet.
    let fresh = api.get(&name).await?;
    if fresh.metadata.generation.unwrap_or(0) != generation {
        return Ok(Action::requeue(Duration::ZERO));
    }
    let old = fresh.status.clone().unwrap_or_default();
    let p = plan::plan(&fresh.spec, &old, &fp);
    let pending = p.pending();
    if pending.is_empty() {
        return Ok(Action::await_change());
    }

    // Mark every direction about to be stopped as Stopping, conditional on
    // the resourceVersion we decided on: if anyone wrote in between, the
    // server refuses and we decide again instead of calling twice.
    let when = now();
    let mut directions = old.directions.clone();
    for (d, step) in &pending {
        if *step == Step::Stop {
            act::mark_stopping(&mut directions, &fresh.spec, *d, &when);
        }
    }
    // What the server holds once the Stopping mark is written: the base the
    // final status is compared with (and condition transition times kept from).
    let mut base = old.clone();
    if pending.iter().any(|(_, s)| *s == Step::Stop) {
        let marked = status::summarize(&fresh.spec, &p, directions.clone(), None, generation, &old, &when);
        if !(ctx.may_act)() {
            return Ok(Action::await_change());
        }
        match write_status(&api, &name, &marked, fresh.metadata.resource_version.clone()).await {
            Ok(()) => base = marked,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                info!("DtsJob changed while planning; deciding again");
                return Ok(Action::requeue(Duration::from_millis(500)));
            }
            Err(e) => return Err(e.into()),
        }
    }

    let outcome = act::run_steps(&ctx, &fresh, &pending, &mut directions, &resolved.credentials, &fp).await;
    // `summarize` reads only the kind of plan, which the calls did not change.
    let new = status::summarize(&fresh.spec, &p, directions, None, generation, &base, &now());
    if (ctx.may_act)() {
        write_status_if_changed(&api, &name, &base, &new, None).await?;
    }
    for (type_, reason, action, note) in group_events(outcome.events) {
        publish(&ctx, &fresh, type_, reason, &action, note).await;
    }
    match outcome.retry_after {
        Some(wait) => {
            ctx.backoff.schedule(&key, wait);
            Ok(Action::requeue(wait))
        }
        None => {
            ctx.backoff.reset(&key);
            if outcome.decide_again {
                Ok(Action::requeue(Duration::ZERO))
            } else {
                Ok(Action::await_change())
            }
        }
    }
}

/// Requeue policy for reconcile errors: per-object backoff, never a hot loop.
pub fn error_policy(job: Arc<DtsJob>, err: &Error, ctx: Arc<Context>) -> Action {
    let key = backoff_key(&job);
    ctx.metrics.reconcile_failed(err.reason());
    let wait = ctx.backoff.failed(&key, None);
    warn!(namespace = %job.namespace().unwrap_or_default(), name = %job.name_any(), reason = err.reason(), error = %err, ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// The per-object key of [`Backoff`]: `namespace/name`.
fn backoff_key(job: &DtsJob) -> String {
    format!("{}/{}", job.namespace().unwrap_or_default(), job.name_any())
}

fn requested_at(job: &DtsJob) -> Option<&str> {
    job.annotations().get(RECONCILE_REQUESTED_AT).map(String::as_str)
}

fn status_message(s: &DtsJobStatus, type_: &str) -> String {
    s.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// Writes `new` unless it equals `old`. Returns whether a write was sent.
async fn write_status_if_changed(
    api: &Api<DtsJob>,
    name: &str,
    old: &DtsJobStatus,
    new: &DtsJobStatus,
    resource_version: Option<String>,
) -> Result<bool, Error> {
    if old == new {
        return Ok(false);
    }
    write_status(api, name, new, resource_version).await?;
    Ok(true)
}

/// Server-side apply of the whole status, optionally conditional on a
/// resourceVersion (the server answers 409 when it moved on).
async fn write_status(
    api: &Api<DtsJob>,
    name: &str,
    status: &DtsJobStatus,
    resource_version: Option<String>,
) -> Result<(), kube::Error> {
    let mut metadata = json!({ "name": name });
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = json!(rv);
    }
    let body = json!({
        "apiVersion": DtsJob::api_version(&()),
        "kind": DtsJob::kind(&()),
        "metadata": metadata,
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
        .await?;
    Ok(())
}

async fn publish(ctx: &Context, job: &DtsJob, type_: EventType, reason: &str, action: &str, note: String) {
    let ev = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(truncate(note, 1000)),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &job.object_ref(&())).await {
        warn!(error = %e, reason, "could not record Event");
    }
}

/// One Event per (type, reason) per reconcile, naming every direction and
/// RequestId, with the directions in its `action` (`StopForward`,
/// `StopForwardReverse`): the event recorder folds Events with the same
/// (type, action, reason) into one series that keeps the first note, so
/// without the directions in the action a direction stopped in a later
/// reconcile (after a retry) would never show its RequestId.
fn group_events(
    events: Vec<(EventType, &'static str, Direction, String)>,
) -> Vec<(EventType, &'static str, String, String)> {
    let mut grouped: Vec<(EventType, &'static str, Vec<Direction>, String)> = Vec::new();
    for (type_, reason, direction, note) in events {
        match grouped.iter_mut().find(|(t, r, _, _)| *t == type_ && *r == reason) {
            Some((_, _, directions, existing)) => {
                if !directions.contains(&direction) {
                    directions.push(direction);
                }
                existing.push_str("; ");
                existing.push_str(&note);
            }
            None => grouped.push((type_, reason, vec![direction], note)),
        }
    }
    grouped
        .into_iter()
        .map(|(type_, reason, mut directions, note)| {
            directions.sort();
            let action = directions.iter().fold("Stop".to_owned(), |acc, d| acc + d.as_str());
            (type_, reason, action, note)
        })
        .collect()
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests;

/// Small builders shared by the controller's unit tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::crd::{DesiredState, Direction, DirectionState, DirectionStatus, DtsJobSpec};

    /// A spec for job `job1` in cn-hangzhou.
    pub fn spec(desired: Option<DesiredState>, directions: &[Direction]) -> DtsJobSpec {
        DtsJobSpec {
            job_id: "job1".into(),
            instance_id: None,
            region_id: "cn-hangzhou".into(),
            directions: directions.to_vec(),
            desired_state: desired,
            credentials_secret_ref: None,
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
