//! Write (I/O): the one status path, then the Events.
//!
//! Status is written as a JSON patch (RFC 6902) that replaces `/status`
//! whole, with the operator's field manager, optionally under a
//! resourceVersion precondition, and only by the Lease holder. The operator
//! is the only writer of `status` and always writes all of it, so the
//! replacement is exact; it costs kube-apiserver about a fifth less CPU per
//! write than the server-side apply used before, which has to merge field
//! ownership (measured by the bench's `writes` scenario, docs/benchmarks.md).
//! Every write has a timeout and is counted by outcome (`ok`, `conflict`,
//! `error`, `timeout`), so a slow or refusing API server shows on `/metrics`
//! instead of hanging reconciles.

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource};
use serde_json::json;
use serde_json::Value;
use tracing::{info, warn};

use super::observe::Observed;
use super::record::Note;
use super::{Context, Error, FIELD_MANAGER};
use crate::crd::{DtsJob, DtsJobStatus, STOP_ON_DELETE_FINALIZER};
use crate::failpoint::failpoint;
use crate::metrics::WriteOutcome;

/// What a status write came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Applied; the object's new resourceVersion (0 when it is not a
    /// number, or the object is gone), which the runner waits for in its
    /// store before it runs the job again.
    Ok(u64),
    /// The precondition failed (409): the view was stale; decide again.
    Conflict,
    /// This replica does not hold the Lease: nothing was sent.
    NotLeader,
}

/// Writes `status` for `obs`, under `precondition` when given.
pub async fn status(
    ctx: &Context,
    obs: &Observed,
    status: &DtsJobStatus,
    precondition: Option<&str>,
) -> Result<Written, Error> {
    if !(ctx.may_act)() {
        return Ok(Written::NotLeader);
    }
    let api: Api<DtsJob> = Api::namespaced(ctx.client.clone(), &obs.namespace);
    let patch = status_patch(status, precondition).map_err(|e| Error::Kube(kube::Error::SerdeError(e)))?;
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    let sent = tokio::time::timeout(
        ctx.settings.write_timeout,
        api.patch_status(&obs.name, &params, &Patch::Json::<()>(patch)),
    )
    .await;
    let (outcome, result) = match sent {
        Ok(Ok(job)) => (WriteOutcome::Ok, Ok(Written::Ok(resource_version(&job)))),
        Ok(Err(kube::Error::Api(s))) if s.code == 409 => (WriteOutcome::Conflict, Ok(Written::Conflict)),
        Ok(Err(e)) => (WriteOutcome::Error, Err(Error::Kube(e))),
        Err(_) => (
            WriteOutcome::Timeout,
            Err(Error::WriteTimeout(ctx.settings.write_timeout)),
        ),
    };
    ctx.metrics.status_write(outcome);
    result
}

/// The resourceVersion of a written object as a number (kube-apiserver's
/// are etcd revisions), 0 if it is not one.
fn resource_version(job: &DtsJob) -> u64 {
    crate::cache::parse_resource_version(job.metadata.resource_version.as_deref())
}

/// The JSON patch that replaces `/status` with `status`; with a
/// precondition, it first sets `metadata.resourceVersion`, which
/// kube-apiserver compares with the stored one (409 Conflict when another
/// write came between).
pub fn status_patch(status: &DtsJobStatus, precondition: Option<&str>) -> Result<json_patch::Patch, serde_json::Error> {
    let mut ops: Vec<Value> = Vec::with_capacity(2);
    if let Some(rv) = precondition {
        ops.push(json!({"op": "add", "path": "/metadata/resourceVersion", "value": rv}));
    }
    ops.push(json!({"op": "add", "path": "/status", "value": status}));
    serde_json::from_value(Value::Array(ops))
}

/// Adds (`add`) or removes the stop-on-delete finalizer, keeping any other
/// finalizer, under the observed resourceVersion (a JSON merge patch
/// replaces the whole list, so the precondition is what keeps another
/// writer's finalizer from being lost).
pub async fn finalizer(ctx: &Context, obs: &Observed, add: bool) -> Result<Written, Error> {
    if !(ctx.may_act)() {
        return Ok(Written::NotLeader);
    }
    let mut finalizers: Vec<&str> = obs
        .finalizers
        .iter()
        .map(String::as_str)
        .filter(|f| *f != STOP_ON_DELETE_FINALIZER)
        .collect();
    if add {
        finalizers.push(STOP_ON_DELETE_FINALIZER);
    }
    let api: Api<DtsJob> = Api::namespaced(ctx.client.clone(), &obs.namespace);
    let body = json!({
        "metadata": { "resourceVersion": obs.resource_version, "finalizers": finalizers }
    });
    let sent = tokio::time::timeout(
        ctx.settings.write_timeout,
        api.patch(&obs.name, &PatchParams::default(), &Patch::Merge(&body)),
    )
    .await;
    match sent {
        Ok(Ok(job)) => {
            info!(finalizer = STOP_ON_DELETE_FINALIZER, add, "finalizer updated");
            Ok(Written::Ok(resource_version(&job)))
        }
        Ok(Err(kube::Error::Api(s))) if s.code == 409 => Ok(Written::Conflict),
        // Already gone: nothing is left to hold.
        Ok(Err(kube::Error::Api(s))) if s.code == 404 && !add => Ok(Written::Ok(0)),
        Ok(Err(e)) => Err(Error::Kube(e)),
        Err(_) => Err(Error::WriteTimeout(ctx.settings.write_timeout)),
    }
}

/// Publishes `notes` as Events of `job`, each also logged now; the Events
/// are written in the background ([`super::events::Sink`]). An Event that
/// cannot be recorded is logged and otherwise ignored: Events are
/// best-effort, the status is the record.
pub fn events(ctx: &Context, job: &DtsJob, notes: &[Note]) {
    if !notes.is_empty() {
        failpoint!("events-before");
    }
    for n in notes {
        match n.type_ {
            EventType::Normal => info!(reason = %n.reason, action = %n.action, "{}", n.note),
            EventType::Warning => warn!(reason = %n.reason, action = %n.action, "{}", n.note),
        }
        let ev = Event {
            type_: n.type_,
            reason: n.reason.as_str().to_owned(),
            note: Some(truncate(n.note.clone(), 1000)),
            action: n.action.clone(),
            secondary: None,
        };
        ctx.events.send(ev, job.object_ref(&()));
    }
}

/// Cuts `s` to at most `max` bytes, on a character boundary.
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

/// The default timeout of a status write or Event.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_patch_sets_the_precondition_first_then_replaces_the_status_whole() {
        let status: DtsJobStatus = serde_json::from_value(json!({"phase": "Stopping"})).unwrap();
        let with = serde_json::to_value(status_patch(&status, Some("42")).unwrap()).unwrap();
        assert_eq!(
            with,
            json!([
                {"op": "add", "path": "/metadata/resourceVersion", "value": "42"},
                {"op": "add", "path": "/status", "value": serde_json::to_value(&status).unwrap()},
            ])
        );
        let without = serde_json::to_value(status_patch(&status, None).unwrap()).unwrap();
        assert_eq!(
            without,
            json!([{"op": "add", "path": "/status", "value": serde_json::to_value(&status).unwrap()}]),
            "no precondition: an unconditional replacement"
        );
    }
}
