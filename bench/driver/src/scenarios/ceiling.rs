//! The API server's status-write ceiling on this machine, in this run: the
//! driver itself writes `/status` of many DtsJobs by a JSON patch that
//! replaces it (as the operator writes status) as fast as `concurrency`
//! requests in flight allow. Scenario throughputs are reported as a fraction of it, so a
//! number from a loaded machine is read against what the server could do
//! at that moment.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use serde::Serialize;
use serde_json::json;

use super::Env;
use crate::load;
use crate::measure::{round2, Summary};
use crate::Result;

#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    pub jobs: usize,
    pub concurrency: usize,
    pub seconds: f64,
    pub writes: usize,
    pub errors: usize,
    pub writes_per_second: f64,
    /// Latency of one status write, ms.
    pub latency_ms: Option<Summary>,
}

pub async fn run(env: &Env, jobs: usize, concurrency: usize, duration: Duration) -> Result<Ceiling> {
    println!("\n== ceiling: status writes by the driver, {concurrency} in flight, {duration:?}");
    let ns = "bench-ceiling";
    load::namespace(&env.cp.client, ns).await?;
    let defs = load::jobs("ceil", jobs, false);
    load::create(&env.cp.client, ns, &defs, env.opts.create_concurrency).await?;
    let api = load::dtsjobs(&env.cp.client, ns);
    let next = Arc::new(AtomicUsize::new(0));
    let generation = Arc::new(AtomicI64::new(1));
    let errors = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (api, defs, next, generation, errors) = (
            api.clone(),
            defs.clone(),
            next.clone(),
            generation.clone(),
            errors.clone(),
        );
        workers.push(tokio::spawn(async move {
            let pp = PatchParams {
                field_manager: Some("dts-bench".into()),
                ..PatchParams::default()
            };
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let d = &defs[next.fetch_add(1, Ordering::Relaxed) % defs.len()];
                // A changing value, so every patch is a real write.
                let g = generation.fetch_add(1, Ordering::Relaxed);
                let patch: json_patch::Patch = serde_json::from_value(json!([
                    {"op": "add", "path": "/status", "value": {"observedGeneration": g}},
                ]))
                .expect("a JSON patch");
                let t = Instant::now();
                match api.patch_status(&d.name, &pp, &Patch::Json::<()>(patch)).await {
                    Ok(_) => lat.push(t.elapsed().as_secs_f64() * 1000.0),
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
    load::delete_all(&env.cp.client, ns).await?;
    let c = Ceiling {
        jobs,
        concurrency,
        seconds: round2(seconds),
        writes: lat.len(),
        errors: errors.load(Ordering::Relaxed),
        writes_per_second: round2(lat.len() as f64 / seconds),
        latency_ms: Summary::of(&lat),
    };
    println!(
        "  {:.0} status writes/s ({} writes, {} errors; p50 {:.1} ms)",
        c.writes_per_second,
        c.writes,
        c.errors,
        c.latency_ms.as_ref().map_or(0.0, |s| s.p50)
    );
    Ok(c)
}
