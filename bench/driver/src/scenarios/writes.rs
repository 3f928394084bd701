//! What one status write costs the API server, by how it is sent: the
//! driver writes the same realistic status (a stopped two-way job: two
//! directions, conditions, call history) to DtsJobs' `/status` by each
//! method, `concurrency` in flight, and reads kube-apiserver's and etcd's
//! CPU time from `/proc` around each window.
//!
//! The machine's speed drifts by a tenth or more within minutes, so one
//! long window per method, one after another, ranks the methods by when
//! they ran as much as by what they cost. Each method's `duration` is
//! therefore cut into [`ROUNDS`] windows, and the rounds take the methods
//! in turn, each round starting one method later; a method's figures are
//! the sums over its windows, with each window's CPU per write beside
//! them.
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
//! first window), so every object carries only that method's managedFields.

use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::Api;
use serde::Serialize;
use serde_json::{json, Value};

use super::Env;
use crate::load;
use crate::measure::{round2, Summary};
use crate::procs;
use crate::writers;
use crate::Result;

/// The ways a status write can be sent.
pub const METHODS: [&str; 5] = ["apply", "apply+rv", "merge+rv", "json+rv", "put+rv"];

/// Windows per method (see the module doc).
pub const ROUNDS: usize = 5;

/// What one method cost.
#[derive(Debug, Clone, Serialize)]
pub struct Method {
    pub method: String,
    /// Seconds of writing, over all its windows.
    pub seconds: f64,
    pub writes: usize,
    /// 409 answers (a precondition met a newer object).
    pub conflicts: usize,
    pub errors: usize,
    pub writes_per_second: f64,
    /// kube-apiserver CPU milliseconds per successful write.
    pub apiserver_cpu_ms_per_write: Option<f64>,
    /// The same, window by window, in the order they ran.
    pub apiserver_cpu_ms_per_write_by_window: Vec<Option<f64>>,
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
    /// Windows per method.
    pub rounds: usize,
    pub methods: Vec<Method>,
}

pub async fn run(env: &Env, jobs: usize, concurrency: usize, duration: Duration) -> Result<Writes> {
    let window = duration / ROUNDS as u32;
    println!(
        "\n== writes: one status write by method, {concurrency} in flight, {duration:?} each in {ROUNDS} windows of {window:?}, methods in turn"
    );
    // Every namespace made is cleaned up, whatever failed.
    let mut namespaces = Vec::with_capacity(METHODS.len());
    let measured = measure(env, jobs, concurrency, window, &mut namespaces).await;
    for ns in &namespaces {
        load::delete_all(&env.cp.client, ns).await?;
    }
    let (targets, totals) = measured?;
    let mut out = Writes {
        jobs,
        concurrency,
        rounds: ROUNDS,
        methods: Vec::new(),
    };
    for ((method, target), t) in METHODS.iter().zip(&targets).zip(totals) {
        let m = t.method(method, target.body_bytes());
        println!(
            "  {:<9} {:>6.0} writes/s, kube-apiserver {:.2} CPU ms/write (windows: {}), etcd {:.2} ({} writes, {} conflicts, {} errors; p50 {:.1} ms; body {} B)",
            m.method,
            m.writes_per_second,
            m.apiserver_cpu_ms_per_write.unwrap_or(f64::NAN),
            m.apiserver_cpu_ms_per_write_by_window
                .iter()
                .map(|w| w.map_or("-".to_owned(), |v| format!("{v:.2}")))
                .collect::<Vec<_>>()
                .join(" "),
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

/// Prepares every method's DtsJobs (their namespaces pushed to
/// `namespaces`), then runs the rounds: [`ROUNDS`] windows of `window` per
/// method, each round starting one method later.
async fn measure(
    env: &Env,
    jobs: usize,
    concurrency: usize,
    window: Duration,
    namespaces: &mut Vec<String>,
) -> Result<(Vec<Target>, Vec<Totals>)> {
    let mut targets = Vec::with_capacity(METHODS.len());
    for (i, method) in METHODS.iter().enumerate() {
        let ns = format!("bench-writes-{i}");
        load::namespace(&env.cp.client, &ns).await?;
        namespaces.push(ns.clone());
        let defs = load::jobs("wr", jobs, true);
        load::create(&env.cp.client, &ns, &defs, env.opts.create_concurrency).await?;
        let api = load::dtsjobs(&env.cp.client, &ns);
        let target = Target::prepare(&api, method, &defs)
            .await
            .map_err(|e| format!("preparing {method}: {e}"))?;
        targets.push(target);
    }
    let mut totals: Vec<Totals> = METHODS.iter().map(|_| Totals::default()).collect();
    for round in 0..ROUNDS {
        for k in 0..METHODS.len() {
            let i = (round + k) % METHODS.len();
            totals[i].add(targets[i].window(env, concurrency, window).await?);
        }
    }
    Ok((targets, totals))
}

/// One method's DtsJobs, as the method writes them.
struct Target {
    api: Api<DynamicObject>,
    /// Each object as a cache holds it, for `put+rv`.
    cached: Arc<Vec<DynamicObject>>,
    /// The resourceVersion each object had after its last write.
    versions: Arc<Mutex<Vec<String>>>,
    /// The next generation to write (every write is a change).
    generation: Arc<AtomicI64>,
    method: String,
}

impl Target {
    /// Writes every object once (unmeasured), so each carries the method's
    /// managedFields before the first window.
    async fn prepare(api: &Api<DynamicObject>, method: &str, defs: &[load::JobDef]) -> Result<Target> {
        let mut cached = Vec::with_capacity(defs.len());
        let mut versions = Vec::with_capacity(defs.len());
        for d in defs {
            let mut obj = api.get(&d.name).await?;
            obj.metadata.managed_fields = None;
            let rv = obj.metadata.resource_version.clone().unwrap_or_default();
            let o = write(api, method, &obj, &rv, 0).await?;
            versions.push(o.metadata.resource_version.unwrap_or_default());
            cached.push(obj);
        }
        Ok(Target {
            api: api.clone(),
            cached: Arc::new(cached),
            versions: Arc::new(Mutex::new(versions)),
            generation: Arc::new(AtomicI64::new(1)),
            method: method.to_owned(),
        })
    }

    fn body_bytes(&self) -> usize {
        let Some(obj) = self.cached.first() else { return 0 };
        serde_json::to_vec(&body(&self.method, obj, "1234567", 1)).map_or(0, |b| b.len())
    }

    /// Writes round robin, `concurrency` in flight, for `duration`.
    async fn window(&self, env: &Env, concurrency: usize, duration: Duration) -> Result<Window> {
        let before = (procs::sample(env.cp.apiserver_pid), procs::sample(env.cp.etcd_pid));
        let (api, cached, versions) = (self.api.clone(), self.cached.clone(), self.versions.clone());
        let method = self.method.clone();
        let written = writers::round_robin(cached.len(), concurrency, duration, &self.generation, move |i, g| {
            let (api, cached, versions, method) = (api.clone(), cached.clone(), versions.clone(), method.clone());
            async move {
                let rv = versions.lock().unwrap()[i].clone();
                let o = write(&api, &method, &cached[i], &rv, g).await?;
                versions.lock().unwrap()[i] = o.metadata.resource_version.unwrap_or_default();
                Ok(())
            }
        })
        .await?;
        let after = (procs::sample(env.cp.apiserver_pid), procs::sample(env.cp.etcd_pid));
        let cpu = |a: Option<procs::ProcSample>, b: Option<procs::ProcSample>| Some(b?.cpu_s - a?.cpu_s);
        Ok(Window {
            written,
            apiserver_cpu_s: cpu(before.0, after.0),
            etcd_cpu_s: cpu(before.1, after.1),
        })
    }
}

/// What one window of one method came to.
struct Window {
    written: writers::Written,
    apiserver_cpu_s: Option<f64>,
    etcd_cpu_s: Option<f64>,
}

/// One method's windows, summed.
#[derive(Default)]
struct Totals {
    seconds: f64,
    latencies: Vec<f64>,
    conflicts: usize,
    errors: usize,
    apiserver_cpu_s: f64,
    etcd_cpu_s: f64,
    /// A window had no CPU reading (a process was gone): no CPU figure.
    cpu_missing: bool,
    by_window: Vec<Option<f64>>,
}

impl Totals {
    fn add(&mut self, w: Window) {
        let writes = w.written.latencies_ms.len();
        match (w.apiserver_cpu_s, w.etcd_cpu_s) {
            (Some(api), Some(etcd)) => {
                self.apiserver_cpu_s += api;
                self.etcd_cpu_s += etcd;
                self.by_window
                    .push((writes > 0).then(|| round2(api * 1000.0 / writes as f64)));
            }
            _ => {
                self.cpu_missing = true;
                self.by_window.push(None);
            }
        }
        self.seconds += w.written.seconds;
        self.latencies.extend(w.written.latencies_ms);
        self.conflicts += w.written.conflicts;
        self.errors += w.written.errors;
    }

    fn method(self, method: &str, body_bytes: usize) -> Method {
        let writes = self.latencies.len();
        let per_write = |cpu: f64| (writes > 0 && !self.cpu_missing).then(|| round2(cpu * 1000.0 / writes as f64));
        Method {
            method: method.to_owned(),
            seconds: round2(self.seconds),
            writes,
            conflicts: self.conflicts,
            errors: self.errors,
            writes_per_second: if self.seconds > 0.0 {
                round2(writes as f64 / self.seconds)
            } else {
                0.0
            },
            apiserver_cpu_ms_per_write: per_write(self.apiserver_cpu_s),
            apiserver_cpu_ms_per_write_by_window: self.by_window,
            etcd_cpu_ms_per_write: per_write(self.etcd_cpu_s),
            body_bytes,
            latency_ms: Summary::of(&self.latencies),
        }
    }
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
        _ => load::status_patch(status, Some(rv)),
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
