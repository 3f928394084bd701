//! The API server's status-write ceiling on this machine, in this run: the
//! driver itself writes `/status` of many DtsJobs by a JSON patch that
//! replaces it (as the operator writes status) as fast as `concurrency`
//! requests in flight allow. Scenario throughputs are reported as a fraction of it, so a
//! number from a loaded machine is read against what the server could do
//! at that moment.

use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use serde::Serialize;
use serde_json::json;

use super::Env;
use crate::load;
use crate::measure::{round2, Summary};
use crate::writers;
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
    let pp = PatchParams {
        field_manager: Some("dts-bench".into()),
        ..PatchParams::default()
    };
    let names: Arc<Vec<String>> = Arc::new(defs.iter().map(|d| d.name.clone()).collect());
    let w = writers::round_robin(
        names.len(),
        concurrency,
        duration,
        &Arc::new(AtomicI64::new(1)),
        move |i, g| {
            let (api, names, pp) = (api.clone(), names.clone(), pp.clone());
            async move {
                // A changing value, so every patch is a real write.
                let patch: json_patch::Patch =
                    serde_json::from_value(load::status_patch(json!({"observedGeneration": g}), None))
                        .expect("a JSON patch");
                api.patch_status(&names[i], &pp, &Patch::Json::<()>(patch))
                    .await
                    .map(drop)
            }
        },
    )
    .await?;
    let (lat, seconds) = (w.latencies_ms, w.seconds);
    load::delete_all(&env.cp.client, ns).await?;
    let c = Ceiling {
        jobs,
        concurrency,
        seconds: round2(seconds),
        writes: lat.len(),
        // No precondition: a 409 is an error like any other here.
        errors: w.errors + w.conflicts,
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
