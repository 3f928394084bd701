//! Steady state: `jobs` DtsJobs, half of them stopped by the operator and
//! half Running (observed), then `duration` at rest. At rest an operator
//! should make no DTS call and no API write; the CPU it uses then is the
//! cost of merely running.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::{rss_mib, scaled_timeout, Env};
use crate::emulator::by_action;
use crate::load;
use crate::measure::{round2, CpuSampler, CpuUse};
use crate::Result;

#[derive(Debug, Clone, Serialize)]
pub struct Steady {
    pub jobs: usize,
    pub stopped_jobs: usize,
    pub seconds: f64,
    pub dts_calls: usize,
    pub dts_calls_by_action: BTreeMap<String, usize>,
    pub api_writes: f64,
    pub api_requests: f64,
    /// The operator's requests at rest, `VERB resource code`.
    pub api_requests_by_kind: BTreeMap<String, f64>,
    /// What the API server did by itself meanwhile (not the operator's).
    pub apiserver_own_requests: BTreeMap<String, f64>,
    pub cpu: Vec<CpuUse>,
    pub operator_rss_mib: Option<f64>,
}

pub async fn run(env: &Env, jobs: usize, duration: Duration) -> Result<Steady> {
    println!("\n== steady: {jobs} jobs (half Stopped), {duration:?} at rest");
    let defs = load::jobs("steady", jobs, false);
    let mut case = env.case("steady", &defs).await?;
    let mut op = case.operator(&[])?;
    op.wait_ready(Duration::from_secs(60)).await?;
    case.create(&defs).await?;
    case.settle(&mut op, jobs, scaled_timeout(60, jobs, 20)).await?;
    let to_stop = &defs[..jobs / 2];
    load::flip_all(&case.api, to_stop, env.opts.flip_concurrency).await?;
    let names: Vec<&str> = to_stop.iter().map(|d| d.name.as_str()).collect();
    case.tracker
        .wait(
            "half of the jobs to be Stopped",
            scaled_timeout(60, names.len(), 200),
            |s| s.all_stopped(names.iter().copied()),
        )
        .await?;
    case.settle(&mut op, jobs, scaled_timeout(60, jobs, 20)).await?;

    case.emulator.clear().await?;
    let before = env.cp.request_counts().await?;
    let sampler = CpuSampler::start(
        vec![
            ("dts-operator".into(), op.pid()),
            ("kube-apiserver".into(), env.cp.apiserver_pid),
            ("etcd".into(), env.cp.etcd_pid),
        ],
        Duration::from_secs(1),
    );
    tokio::time::sleep(duration).await;
    let (cpu, _) = sampler.finish();
    op.process.check_alive()?;
    let (requests, own) = env.requests_since(&before, 0).await?;
    let journal = case.emulator.journal().await?;
    let r = Steady {
        jobs,
        stopped_jobs: to_stop.len(),
        seconds: duration.as_secs_f64(),
        dts_calls: journal.len(),
        dts_calls_by_action: by_action(&journal),
        api_writes: requests.writes(),
        api_requests: requests.total(),
        api_requests_by_kind: requests.rows(),
        apiserver_own_requests: own.rows(),
        cpu,
        operator_rss_mib: rss_mib(&op),
    };
    env.check(
        "steady",
        "no DTS calls at rest",
        r.dts_calls == 0,
        format!(
            "{} calls in {:.0} s {:?}",
            r.dts_calls, r.seconds, r.dts_calls_by_action
        ),
    );
    let op_cpu = r.cpu.iter().find(|c| c.process == "dts-operator");
    println!(
        "  {} DTS calls, {} API writes ({} requests), operator CPU {:.2} s ({}% of a core)",
        r.dts_calls,
        r.api_writes,
        r.api_requests,
        op_cpu.map_or(0.0, |c| c.cpu_seconds),
        op_cpu.map_or(0.0, |c| round2(c.avg_percent))
    );
    drop(op);
    case.finish().await;
    Ok(r)
}
