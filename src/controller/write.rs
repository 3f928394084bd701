//! Write (I/O): the one status path, then the Events.
//!
//! Status is written as a JSON patch (RFC 6902) that replaces `/status`
//! whole, with the operator's field manager, optionally under a
//! resourceVersion precondition, and only by the Lease holder. The operator
//! is the only writer of `status` and always writes all of it, so the
//! replacement is exact; it costs kube-apiserver about a fifth less CPU per
//! write than the server-side apply used before, which has to merge field
//! ownership (measured by the bench's `writes` scenario, docs/benchmarks.md).
//! A PUT of the whole object to `/status` costs up to a tenth less, but
//! its field manager drops other managers' ownership of any label,
//! annotation or finalizer the body leaves out, and the cache keeps none
//! of those.
//! The API server answers with the object's metadata only: the operator
//! reads nothing of the answer but the new resourceVersion.
//! Every write has a timeout and is counted by outcome (`ok`, `conflict`,
//! `error`, `timeout`), so a slow or refusing API server shows on `/metrics`
//! instead of hanging reconciles.

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::Resource;
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
    let patch = status_patch(status, precondition).map_err(|e| Error::Kube(kube::Error::SerdeError(e)))?;
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    let sent = tokio::time::timeout(
        ctx.settings.write_timeout,
        patch_for_version(ctx, obs, Some("status"), &params, &Patch::Json::<()>(patch)),
    )
    .await;
    let (outcome, result) = match sent {
        Ok(Ok(version)) => (WriteOutcome::Ok, Ok(Written::Ok(version))),
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

/// The media type that asks kube-apiserver to answer a write with the
/// object's metadata only (`PartialObjectMetadata`), as it does for reads:
/// the operator needs only the new resourceVersion (the watch brings the
/// object), and the API server then encodes, and the operator parses, the
/// metadata instead of the whole DtsJob.
const METADATA_ONLY: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";

/// Sends `patch` to `obs`'s DtsJob (or its `subresource`), asking for the
/// metadata only ([`METADATA_ONLY`]); the new resourceVersion. An API
/// server that does not know the transformation answers with the whole
/// object (the plain `application/json` after it), which parses the same
/// way.
async fn patch_for_version<P: serde::Serialize>(
    ctx: &Context,
    obs: &Observed,
    subresource: Option<&str>,
    params: &PatchParams,
    patch: &Patch<P>,
) -> kube::Result<u64> {
    // Queued Events give way while this is in flight.
    let _writing = ctx.events.writing();
    let target = kube::core::Request::new(DtsJob::url_path(&(), Some(&obs.namespace)));
    let mut request = match subresource {
        Some(sub) => target.patch_subresource(sub, &obs.name, params, patch),
        None => target.patch(&obs.name, params, patch),
    }
    .map_err(kube::Error::BuildRequest)?;
    request
        .headers_mut()
        .insert(http::header::ACCEPT, http::HeaderValue::from_static(METADATA_ONLY));
    let written: WrittenMeta = ctx.client.request(request).await?;
    Ok(written.resource_version())
}

/// What the operator reads of a write's answer (the status's or the
/// finalizer's): the new resourceVersion. Everything else in the answer is
/// skipped unparsed.
#[derive(serde::Deserialize)]
struct WrittenMeta {
    metadata: WrittenRv,
}

impl WrittenMeta {
    /// The new resourceVersion as a number (kube-apiserver's are etcd
    /// revisions; 0 if it is not a number).
    fn resource_version(&self) -> u64 {
        crate::cache::parse_resource_version(self.metadata.resource_version.as_deref())
    }
}

#[derive(serde::Deserialize)]
struct WrittenRv {
    #[serde(rename = "resourceVersion")]
    resource_version: Option<String>,
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
    let body = json!({
        "metadata": { "resourceVersion": obs.resource_version, "finalizers": finalizers }
    });
    let sent = tokio::time::timeout(
        ctx.settings.write_timeout,
        patch_for_version(ctx, obs, None, &PatchParams::default(), &Patch::Merge(&body)),
    )
    .await;
    match sent {
        Ok(Ok(version)) => {
            info!(finalizer = STOP_ON_DELETE_FINALIZER, add, "finalizer updated");
            Ok(Written::Ok(version))
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

    #[test]
    fn a_write_answer_gives_its_resource_version_as_metadata_or_as_the_whole_object() {
        let version = |answer: Value| {
            let written: WrittenMeta = serde_json::from_value(answer).unwrap();
            written.resource_version()
        };
        // What kube-apiserver answers to METADATA_ONLY.
        let partial = json!({
            "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"name": "j1", "namespace": "p", "resourceVersion": "205", "generation": 2,
                         "managedFields": [{"manager": "dts-operator", "operation": "Update"}]},
        });
        assert_eq!(version(partial), 205);
        // An API server that does not transform answers with the DtsJob.
        let whole = json!({
            "apiVersion": "kubedts.io/v1alpha1", "kind": "DtsJob",
            "metadata": {"name": "j1", "resourceVersion": "206"},
            "spec": {"jobId": "j", "regionId": "cn-hangzhou"},
            "status": {"phase": "Stopped", "directions": [{"direction": "Forward", "state": "Stopped"}]},
        });
        assert_eq!(version(whole), 206);
        assert_eq!(version(json!({"metadata": {}})), 0, "no resourceVersion: 0, as before");
    }
}
