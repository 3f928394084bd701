//! The objects of a case: its namespace, the credentials Secret and the
//! DtsJobs, created with bounded parallelism (so 10,000+ objects take
//! seconds, not minutes), flipped to `Stopped` and deleted again.
//!
//! DtsJobs are untyped (`DynamicObject`): the driver does not link the
//! operator's crate, so it measures any build whose CRD has the same
//! `spec.desiredState`, `status.phase` and `Ready` condition.

use std::time::Instant;

use futures::{stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde_json::{json, Value};

use crate::emulator::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, REGION};
use crate::measure::now_ms;
use crate::Result;

/// Name of the credentials Secret of every case.
pub const SECRET: &str = "bench-dts-credentials";

/// DtsJob of kubedts.io/v1alpha1.
pub fn dtsjob_resource() -> ApiResource {
    ApiResource {
        group: "kubedts.io".into(),
        version: "v1alpha1".into(),
        api_version: "kubedts.io/v1alpha1".into(),
        kind: "DtsJob".into(),
        plural: "dtsjobs".into(),
    }
}

pub fn dtsjobs(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &dtsjob_resource())
}

/// One job of a case: the DtsJob `name` for DTS job `job_id`.
#[derive(Debug, Clone)]
pub struct JobDef {
    pub name: String,
    pub job_id: String,
    pub two_way: bool,
    /// Labels of the DtsJob (the shards scenario splits the jobs by one).
    pub labels: Vec<(String, String)>,
}

/// `count` jobs named `{prefix}-000000`...; the index keeps names and
/// jobIds unique within a case (each case has its own emulator).
pub fn jobs(prefix: &str, count: usize, two_way: bool) -> Vec<JobDef> {
    (0..count)
        .map(|i| JobDef {
            name: format!("{prefix}-{i:06}"),
            job_id: format!("{prefix}{i:06}"),
            two_way,
            labels: Vec::new(),
        })
        .collect()
}

/// The DtsJob of `def`, `desiredState: Running` (observed, not stopped).
pub fn dtsjob(def: &JobDef) -> DynamicObject {
    let directions = if def.two_way {
        json!(["Forward", "Reverse"])
    } else {
        json!(["Forward"])
    };
    let mut obj = DynamicObject::new(&def.name, &dtsjob_resource());
    if !def.labels.is_empty() {
        obj.metadata.labels = Some(def.labels.iter().cloned().collect());
    }
    obj.data = json!({
        "spec": {
            "jobId": def.job_id,
            "regionId": REGION,
            "directions": directions,
            "desiredState": "Running",
            "credentialsSecretRef": {"name": SECRET},
        }
    });
    obj
}

/// Creates namespace `ns` and its credentials Secret.
pub async fn namespace(client: &Client, ns: &str) -> Result<()> {
    let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &obj)
        .await?;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": SECRET},
        "stringData": {"accessKeyId": ACCESS_KEY_ID, "accessKeySecret": ACCESS_KEY_SECRET},
    }))?;
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await?;
    Ok(())
}

/// How fast objects were created.
#[derive(Debug, Clone, Serialize)]
pub struct Creation {
    pub objects: usize,
    pub seconds: f64,
    pub per_second: f64,
    pub concurrency: usize,
}

/// Creates the DtsJobs of `defs` in `ns`, `concurrency` requests in flight.
pub async fn create(client: &Client, ns: &str, defs: &[JobDef], concurrency: usize) -> Result<Creation> {
    let api = dtsjobs(client, ns);
    let start = Instant::now();
    stream::iter(defs.iter().map(|d| {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &dtsjob(d))
                .await
                .map_err(|e| format!("creating DtsJob {}: {e}", d.name))
        }
    }))
    .buffer_unordered(concurrency.max(1))
    .try_for_each(|_| async { Ok(()) })
    .await?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(Creation {
        objects: defs.len(),
        seconds: crate::measure::round2(seconds),
        per_second: crate::measure::round2(defs.len() as f64 / seconds.max(1e-3)),
        concurrency,
    })
}

/// The JSON patch (RFC 6902) that replaces `/status` with `status`, as the
/// operator writes it; with a precondition it first sets
/// `metadata.resourceVersion`, which kube-apiserver compares with the
/// stored one (409 when another write came between).
pub fn status_patch(status: Value, precondition: Option<&str>) -> Value {
    let set_status = json!({"op": "add", "path": "/status", "value": status});
    match precondition {
        Some(rv) => json!([{"op": "add", "path": "/metadata/resourceVersion", "value": rv}, set_status]),
        None => json!([set_status]),
    }
}

/// The driver's own times of one flip, and the version it made.
#[derive(Debug, Clone)]
pub struct Flip {
    /// When the PATCH was sent and when its answer arrived (ms since epoch).
    pub sent_ms: f64,
    pub returned_ms: f64,
    /// The generation the PATCH produced.
    pub generation: i64,
    /// The resourceVersion it produced.
    pub resource_version: Option<String>,
}

/// Flips `name` to `desiredState: Stopped` with a merge patch of the spec,
/// as `kubectl patch` or a GitOps sync would.
pub async fn flip(api: &Api<DynamicObject>, name: &str) -> Result<Flip> {
    let sent_ms = now_ms();
    let obj = api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"desiredState": "Stopped"}})),
        )
        .await
        .map_err(|e| format!("flipping DtsJob {name}: {e}"))?;
    Ok(Flip {
        sent_ms,
        returned_ms: now_ms(),
        generation: obj.metadata.generation.unwrap_or(0),
        resource_version: obj.metadata.resource_version,
    })
}

/// Flips every job of `defs` at once, `concurrency` PATCHes in flight.
pub async fn flip_all(api: &Api<DynamicObject>, defs: &[JobDef], concurrency: usize) -> Result<Vec<Flip>> {
    stream::iter(defs.iter().map(|d| flip(api, &d.name)))
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await
}

/// Deletes every DtsJob of `ns`, [`DELETE_PAGE`] at a time: kube-apiserver
/// deletes a collection one object after another (one
/// `--delete-collection-workers` by default), so 50,000 in one request
/// outlast its 60 s request timeout and the request fails with the objects
/// half deleted. A page shorter than [`DELETE_PAGE`] was the last; the
/// number of pages is bounded, so objects held by a finalizer (listed again
/// and again) do not keep it going.
pub async fn delete_all(client: &Client, ns: &str) -> Result<()> {
    for _ in 0..MAX_DELETE_PAGES {
        if delete_page(client, ns).await? < DELETE_PAGE {
            return Ok(());
        }
    }
    Err(format!("{ns}: DtsJobs still listed after {MAX_DELETE_PAGES} pages of {DELETE_PAGE} deletions").into())
}

/// One DELETECOLLECTION of at most [`DELETE_PAGE`] DtsJobs; how many it
/// deleted. Built by hand: kube's `delete_collection` sends the selectors of
/// its `ListParams` but not the `limit`, which kube-apiserver honours here
/// (one page, then it answers).
async fn delete_page(client: &Client, ns: &str) -> Result<usize> {
    let path = DynamicObject::url_path(&dtsjob_resource(), Some(ns));
    let mut request =
        kube::core::Request::new(path).delete_collection(&DeleteParams::default(), &ListParams::default())?;
    let uri = request.uri().to_string();
    let sep = if uri.ends_with('?') { "" } else { "&" };
    let uri = format!("{uri}{sep}limit={DELETE_PAGE}");
    *request.uri_mut() = uri.parse()?;
    // A list of what was deleted (a Status if there was nothing to list).
    let answer: serde_json::Value = client.request(request).await?;
    Ok(answer["items"].as_array().map_or(0, Vec::len))
}

/// DtsJobs one DELETECOLLECTION request deletes (a few seconds' work for
/// kube-apiserver on this machine).
pub const DELETE_PAGE: usize = 2000;

/// More pages than any case has objects (200,000 jobs).
const MAX_DELETE_PAGES: usize = 100;
