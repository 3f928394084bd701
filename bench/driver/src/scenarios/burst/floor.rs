//! The burst's floor: the burst's API writes, sent by the driver alone.
//!
//! Per job: the flip, then each status the operator wrote to one of the
//! burst's jobs, in order (the Stopping mark under the flip's
//! resourceVersion, then the outcome), as JSON patches with the operator's
//! field manager and metadata-only answers. They go to fresh jobs of a
//! second namespace that already carry the status the burst's jobs had
//! before their flip, while two watches of that namespace take every change
//! (the driver's, and one in the operator's place). There is no operator
//! and no DTS.
//!
//! So its time is a reference for what kube-apiserver, on this machine at
//! that moment, needs for the writes that any operator which marks a job
//! before it calls DTS must cause; the burst's time over it is what the
//! operator adds (its own CPU, DTS's latency, its Events). The machine's
//! speed drifts by a fifth within an hour, so a burst time alone cannot say
//! that; the floor is measured right after the burst, on the same machine
//! in the same state. It is not a strict bound: with more requests in
//! flight than the operator keeps, kube-apiserver has been seen to spend
//! more CPU on the replay than on the burst (docs/benchmarks.md, "The
//! burst's floor").

use std::time::Duration;

use futures::{stream, StreamExt, TryStreamExt};
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use serde::Serialize;
use serde_json::Value;

use crate::load::{self, JobDef};
use crate::measure::{now_ms, round2, CpuSampler, CpuUse};
use crate::scenarios::{scaled_timeout, Env};
use crate::watch::Tracker;
use crate::Result;

/// The operator's field manager: the replayed writes leave the same
/// managedFields as the operator's.
const FIELD_MANAGER: &str = "dts-operator";

/// The answer the operator asks for: the written object's metadata only.
const METADATA_ONLY: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";

#[derive(Debug, Clone, Serialize)]
pub struct Floor {
    pub jobs: usize,
    /// Jobs whose writes are in flight at once (each job's one after another).
    pub concurrency: usize,
    /// Status writes per job after its flip, as the operator made them.
    pub status_writes_per_job: usize,
    /// Bytes of the last status written (JSON).
    pub status_bytes: usize,
    /// First flip sent → last job seen Stopped by the driver's watch.
    pub seconds: f64,
    /// Flips and status writes per second.
    pub writes_per_second: f64,
    pub cpu: Vec<CpuUse>,
    pub machine_busy_percent: Option<f64>,
    /// The burst's time over the floor's.
    pub burst_over_floor: f64,
}

/// What the floor replays, from the statuses one burst job showed.
#[derive(Debug, Clone, PartialEq)]
pub struct Bodies {
    /// Its status before the flip (what the operator wrote when it first
    /// observed the job).
    pub before: Value,
    /// The operator's status writes after the flip, in order.
    pub writes: Vec<Value>,
}

impl Bodies {
    /// The first of `recorded` is the status at the flip, the rest are the
    /// operator's writes after it; the last must be a `Stopped` one.
    pub fn from_recorded(recorded: &[Value]) -> Result<Bodies> {
        match recorded {
            [before, writes @ ..] if writes.last().is_some_and(|s| s["phase"] == "Stopped") => Ok(Bodies {
                before: before.clone(),
                writes: writes.to_vec(),
            }),
            _ => Err(format!(
                "the recorded burst job showed {} statuses, none after its flip Stopped",
                recorded.len()
            )
            .into()),
        }
    }
}

/// Replays the burst's writes for `defs` (see the module doc), `concurrency`
/// jobs at once; `burst_seconds` is the burst's time.
pub async fn run(env: &Env, defs: &[JobDef], bodies: &Bodies, concurrency: usize, burst_seconds: f64) -> Result<Floor> {
    let ns = "bench-burst-floor";
    let client = &env.cp.client;
    load::namespace(client, ns).await?;
    let result = replay(env, ns, defs, bodies, concurrency, burst_seconds).await;
    if let Err(e) = load::delete_all(client, ns).await {
        eprintln!("dts-bench: deleting the DtsJobs of {ns}: {e}");
    }
    result
}

async fn replay(
    env: &Env,
    ns: &str,
    defs: &[JobDef],
    bodies: &Bodies,
    concurrency: usize,
    burst_seconds: f64,
) -> Result<Floor> {
    let client = &env.cp.client;
    let api = load::dtsjobs(client, ns);
    load::create(client, ns, defs, env.opts.create_concurrency).await?;
    let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
    // Untimed: every job gets the status the burst's jobs had at the flip.
    stream::iter(
        names
            .iter()
            .map(|n| write_status(client, &api, n, &bodies.before, None)),
    )
    .buffer_unordered(env.opts.create_concurrency.max(1))
    .try_collect::<Vec<()>>()
    .await?;
    let driver = Tracker::start(api.clone());
    let operator = Tracker::start(api.clone());
    for watch in [&driver, &operator] {
        watch
            .wait("the floor's watches to sync", Duration::from_secs(60), |s| s.synced)
            .await?;
    }
    let sampler = CpuSampler::start(
        vec![
            ("kube-apiserver".into(), env.cp.apiserver_pid),
            ("etcd".into(), env.cp.etcd_pid),
            ("dts-bench (driver)".into(), std::process::id() as i32),
        ],
        Duration::from_millis(250),
    );
    let t0 = now_ms();
    stream::iter(names.iter().map(|n| job_writes(client, &api, n, bodies)))
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    for watch in [&driver, &operator] {
        watch
            .wait(
                &format!("the floor's {} DtsJobs to show Stopped", names.len()),
                scaled_timeout(60, names.len(), 20),
                |s| s.all_stopped(names.iter().copied()),
            )
            .await?;
    }
    let last_stopped = driver.with(|s| {
        names
            .iter()
            .filter_map(|n| s.jobs.get(*n).and_then(|j| j.stopped_ms))
            .reduce(f64::max)
    });
    let (cpu, machine_busy_percent) = sampler.finish();
    let seconds = (last_stopped.unwrap_or(t0) - t0) / 1000.0;
    let writes = names.len() * (1 + bodies.writes.len());
    Ok(Floor {
        jobs: names.len(),
        concurrency,
        status_writes_per_job: bodies.writes.len(),
        status_bytes: bodies.writes.last().map_or(0, |s| s.to_string().len()),
        seconds: round2(seconds),
        writes_per_second: round2(writes as f64 / seconds.max(1e-3)),
        cpu,
        machine_busy_percent,
        burst_over_floor: round2(burst_seconds / seconds.max(1e-3)),
    })
}

/// One job's writes: the flip, then the operator's statuses, the first
/// under the flip's resourceVersion (the operator's mark precondition).
async fn job_writes(client: &Client, api: &Api<DynamicObject>, name: &str, bodies: &Bodies) -> Result<()> {
    let mut precondition = load::flip(api, name).await?.resource_version;
    for status in &bodies.writes {
        write_status(client, api, name, status, precondition.take()).await?;
    }
    Ok(())
}

/// Replaces `name`'s status by a JSON patch, as the operator does.
async fn write_status(
    client: &Client,
    api: &Api<DynamicObject>,
    name: &str,
    status: &Value,
    precondition: Option<String>,
) -> Result<()> {
    let patch: json_patch::Patch = serde_json::from_value(load::status_patch(status.clone(), precondition.as_deref()))?;
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    let mut request = kube::core::Request::new(api.resource_url())
        .patch_subresource("status", name, &params, &Patch::Json::<()>(patch))
        .map_err(kube::Error::BuildRequest)?;
    request
        .headers_mut()
        .insert(http::header::ACCEPT, http::HeaderValue::from_static(METADATA_ONLY));
    client
        .request_text(request)
        .await
        .map_err(|e| format!("writing the status of DtsJob {name}: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_bodies_are_the_status_at_the_flip_then_the_writes_up_to_stopped() {
        let running = json!({"phase": "Running"});
        let stopping = json!({"phase": "Stopping"});
        let stopped = json!({"phase": "Stopped"});
        let b = Bodies::from_recorded(&[running.clone(), stopping.clone(), stopped.clone()]).unwrap();
        assert_eq!(b.before, running);
        assert_eq!(b.writes, vec![stopping.clone(), stopped]);
        // No write after the flip, or none that ended Stopped: nothing to replay.
        assert!(Bodies::from_recorded(std::slice::from_ref(&running)).is_err());
        assert!(Bodies::from_recorded(&[running, stopping]).is_err());
        assert!(Bodies::from_recorded(&[]).is_err());
    }
}
