//! What one status write costs the API server, by how it is sent: the
//! driver writes the same realistic status (a stopped two-way job: two
//! directions, conditions, call history) to DtsJobs' `/status` by each
//! method in turn, `concurrency` in flight for `duration`, and reads
//! kube-apiserver's and etcd's CPU time from `/proc` around each window.
//!
//! Methods:
//! - `apply`: server-side apply, forced, no precondition;
//! - `apply+rv`: the same with `metadata.resourceVersion` as precondition;
//! - `merge+rv`: a JSON merge patch of the status with the precondition;
//! - `json+rv`: a JSON patch (RFC 6902) that replaces `/status` whole,
//!   with the precondition (`add /metadata/resourceVersion`);
//! - `put+rv`: a PUT of the whole object to `/status` (what
//!   controller-runtime's `Status().Update()` sends), the object as a
//!   cache holds it (no managedFields) with the new status and its
//!   resourceVersion as precondition.
//!
//! Each method writes its own DtsJobs (created, then written once before the
//! window), so every object carries only that method's managedFields.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::Api;
use serde::Serialize;
use serde_json::{json, Value};

use super::Env;
use crate::load;
use crate::measure::{round2, Summary};
use crate::procs;
use crate::Result;

/// The ways a status write can be sent.
pub const METHODS: [&str; 5] = ["apply", "apply+rv", "merge+rv", "json+rv", "put+rv"];

/// What one method cost.
#[derive(Debug, Clone, Serialize)]
pub struct Method {
    pub method: String,
    pub seconds: f64,
    pub writes: usize,
    /// 409 answers (a precondition met a newer object).
    pub conflicts: usize,
    pub errors: usize,
    pub writes_per_second: f64,
    /// kube-apiserver CPU milliseconds per successful write.
    pub apiserver_cpu_ms_per_write: Option<f64>,
    /// etcd CPU milliseconds per successful write.
    pub etcd_cpu_ms_per_write: Option<f64>,
    /// Bytes of the request body.
    pub body_bytes: usize,
    pub latency_ms: Option<Summary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Writes {
    pub jobs: usize,
    pub concurrency: usize,
    pub methods: Vec<Method>,
}

pub async fn run(env: &Env, jobs: usize, concurrency: usize, duration: Duration) -> Result<Writes> {
    println!("\n== writes: one status write by method, {concurrency} in flight, {duration:?} each");
    let mut out = Writes {
        jobs,
        concurrency,
        methods: Vec::new(),
    };
    for (i, method) in METHODS.iter().enumerate() {
        let ns = format!("bench-writes-{i}");
        load::namespace(&env.cp.client, &ns).await?;
        let defs = load::jobs("wr", jobs, true);
        load::create(&env.cp.client, &ns, &defs, env.opts.create_concurrency).await?;
        let api = load::dtsjobs(&env.cp.client, &ns);
        let m = measure(env, &api, method, &defs, concurrency, duration).await;
        load::delete_all(&env.cp.client, &ns).await?;
        let m = m?;
        println!(
            "  {:<9} {:>6.0} writes/s, kube-apiserver {:.2} CPU ms/write, etcd {:.2} ({} writes, {} conflicts, {} errors; p50 {:.1} ms; body {} B)",
            m.method,
            m.writes_per_second,
            m.apiserver_cpu_ms_per_write.unwrap_or(f64::NAN),
            m.etcd_cpu_ms_per_write.unwrap_or(f64::NAN),
            m.writes,
            m.conflicts,
            m.errors,
            m.latency_ms.as_ref().map_or(0.0, |s| s.p50),
            m.body_bytes,
        );
        out.methods.push(m);
    }
    Ok(out)
}

/// One method's window, after one unmeasured write per object.
async fn measure(
    env: &Env,
    api: &Api<DynamicObject>,
    method: &str,
    defs: &[load::JobDef],
    concurrency: usize,
    duration: Duration,
) -> Result<Method> {
    let names: Arc<Vec<String>> = Arc::new(defs.iter().map(|d| d.name.clone()).collect());
    // The resourceVersion each object had after its last write.
    let versions: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(vec![String::new(); names.len()]));
    // Each object as a cache holds it, for `put+rv`.
    let mut cached = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let mut obj = api.get(name).await?;
        obj.metadata.managed_fields = None;
        let rv = obj.metadata.resource_version.clone().unwrap_or_default();
        let o = write(api, method, &obj, &rv, 0).await?;
        versions.lock().unwrap()[i] = o.metadata.resource_version.unwrap_or_default();
        cached.push(obj);
    }
    let cached = Arc::new(cached);
    let body_bytes = serde_json::to_vec(&body(method, &cached[0], "1234567", 1))?.len();
    let next = Arc::new(AtomicUsize::new(0));
    let generation = Arc::new(AtomicI64::new(1));
    let (conflicts, errors) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let before = (procs::sample(env.cp.apiserver_pid), procs::sample(env.cp.etcd_pid));
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (api, names, versions, cached) = (api.clone(), names.clone(), versions.clone(), cached.clone());
        let (next, generation, conflicts, errors) =
            (next.clone(), generation.clone(), conflicts.clone(), errors.clone());
        let method = method.to_owned();
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed) % names.len();
                let rv = versions.lock().unwrap()[i].clone();
                let g = generation.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                match write(&api, &method, &cached[i], &rv, g).await {
                    Ok(o) => {
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                        versions.lock().unwrap()[i] = o.metadata.resource_version.unwrap_or_default();
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        conflicts.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for w in workers {
        lat.extend(w.await?);
    }
    let seconds = start.elapsed().as_secs_f64();
    let after = (procs::sample(env.cp.apiserver_pid), procs::sample(env.cp.etcd_pid));
    let per_write = |a: Option<procs::ProcSample>, b: Option<procs::ProcSample>| {
        let (a, b) = (a?, b?);
        (!lat.is_empty()).then(|| round2((b.cpu_s - a.cpu_s) * 1000.0 / lat.len() as f64))
    };
    Ok(Method {
        method: method.to_owned(),
        seconds: round2(seconds),
        writes: lat.len(),
        conflicts: conflicts.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        writes_per_second: round2(lat.len() as f64 / seconds),
        apiserver_cpu_ms_per_write: per_write(before.0, after.0),
        etcd_cpu_ms_per_write: per_write(before.1, after.1),
        body_bytes,
        latency_ms: Summary::of(&lat),
    })
}

async fn write(
    api: &Api<DynamicObject>,
    method: &str,
    cached: &DynamicObject,
    rv: &str,
    g: i64,
) -> kube::Result<DynamicObject> {
    let body = body(method, cached, rv, g);
    let name = cached.metadata.name.as_deref().unwrap_or_default();
    match method {
        "apply" | "apply+rv" => {
            let pp = PatchParams::apply("dts-bench").force();
            api.patch_status(name, &pp, &Patch::Apply(&body)).await
        }
        "merge+rv" => {
            let pp = PatchParams::default();
            api.patch_status(name, &pp, &Patch::Merge(&body)).await
        }
        "put+rv" => {
            let obj: DynamicObject = serde_json::from_value(body).map_err(kube::Error::SerdeError)?;
            api.replace_status(name, &PostParams::default(), &obj).await
        }
        _ => {
            let patch: json_patch::Patch = serde_json::from_value(body).map_err(kube::Error::SerdeError)?;
            let pp = PatchParams::default();
            api.patch_status(name, &pp, &Patch::Json::<()>(patch)).await
        }
    }
}

/// The request body of `method` for generation `g` under `rv`; `cached` is
/// the object a PUT sends.
fn body(method: &str, cached: &DynamicObject, rv: &str, g: i64) -> Value {
    let status = status(g);
    match method {
        "put+rv" => {
            let mut obj = cached.clone();
            obj.metadata.resource_version = Some(rv.to_owned());
            obj.data["status"] = status;
            serde_json::to_value(obj).unwrap_or_default()
        }
        "apply" => json!({"apiVersion": "kubedts.io/v1alpha1", "kind": "DtsJob", "status": status}),
        "apply+rv" => json!({
            "apiVersion": "kubedts.io/v1alpha1", "kind": "DtsJob",
            "metadata": {"resourceVersion": rv}, "status": status,
        }),
        "merge+rv" => json!({"metadata": {"resourceVersion": rv}, "status": status}),
        _ => json!([
            {"op": "add", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "add", "path": "/status", "value": status},
        ]),
    }
}

/// The status of a two-way job the operator stopped, as it writes it (see
/// the DtsJob CRD; Reconciling and Stalled are left out while False), with
/// `g` making every write a change.
fn status(g: i64) -> Value {
    let t = "2026-12-02T10:00:00Z";
    // A finished stop: no transition in flight.
    let direction = |d: &str, rid: &str| {
        json!({
            "direction": d, "state": "Stopped", "jobId": "wr000001",
            "requestId": rid, "httpStatusCode": 200, "attempts": 1, "lastAttemptTime": t,
            "observed": {"status": "Synchronizing", "delayMs": 0, "checkpoint": 1764669600, "observedAt": t}
        })
    };
    let call = |d: &str, rid: &str| json!({"time": t, "action": "StopDtsJob", "direction": d, "requestId": rid, "outcome": "success"});
    json!({
        "observedGeneration": g,
        "phase": "Stopped",
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Stopped", "observedGeneration": g,
             "message": "Forward and Reverse stopped", "lastTransitionTime": t},
        ],
        "directions": [
            direction("Forward", "4C467B38-3910-447D-87BC-AC049166F216"),
            direction("Reverse", "9A8E7D6C-5B4A-4F3E-8D2C-1B0A9F8E7D6C"),
        ],
        "history": [
            call("Forward", "4C467B38-3910-447D-87BC-AC049166F216"),
            call("Reverse", "9A8E7D6C-5B4A-4F3E-8D2C-1B0A9F8E7D6C"),
        ],
        "credentialsSource": "Secret/bench-dts-credentials",
    })
}
