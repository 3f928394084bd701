//! Memory: the operator's resident set (VmRSS) and peak (VmHWM) with no
//! jobs, after `jobs` DtsJobs were created while it ran, after all of them
//! were flipped at once, and in a fresh operator started with them
//! existing (its start-up peak is what a memory limit must allow). Bytes
//! per object = (RSS(N) − RSS(0)) / N. After the burst a second sample
//! comes once the HTTP connection pools have closed what the burst opened
//! (kube-client's and reqwest's pools close a connection idle for 90 s):
//! the first shows what the burst leaves at once, the second what stays.
//! Beside each RSS, the heap its live
//! allocations hold (`dts_operator_heap_allocated_bytes`, when the
//! operator exports it): the gap between them is the allocator's.

use std::time::Duration;

use serde::Serialize;

use super::{mib, scaled_timeout, Env};
use crate::load;
use crate::measure::round2;
use crate::operator::Operator;
use crate::procs::{self, ProcSample};
use crate::Result;

#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub jobs: usize,
    pub rss0_mib: f64,
    pub created_rss_mib: f64,
    pub after_burst_rss_mib: f64,
    pub after_burst_hwm_mib: f64,
    /// `--memory-idle-seconds` after that (none when 0), and the live
    /// heap then.
    pub after_burst_idle: Option<Idle>,
    pub restart_rss_mib: f64,
    pub restart_hwm_mib: f64,
    /// Live heap at each point (empty, created, after the burst, restart),
    /// when the operator exports it.
    pub heap_mib: Option<[f64; 4]>,
    pub bytes_per_object_created: f64,
    pub bytes_per_object_restart: f64,
    pub burst_seconds: f64,
}

const HEAP: &str = "dts_operator_heap_allocated_bytes";

/// The sample a while after the burst.
#[derive(Debug, Clone, Serialize)]
pub struct Idle {
    pub seconds: u64,
    pub rss_mib: f64,
    pub heap_mib: Option<f64>,
}

/// The default wait for that sample: past the 90 s after which both HTTP
/// clients' pools close an idle connection.
pub const IDLE_AFTER_BURST_SECS: u64 = 95;

/// A sample after the allocator had a moment to return what it freed, and
/// the live heap then.
async fn settled_sample(op: &mut Operator) -> Result<(ProcSample, Option<f64>)> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    op.process.check_alive()?;
    let sample = procs::sample(op.pid()).ok_or("the operator vanished")?;
    Ok((sample, op.metric(HEAP).await.map(|bytes| mib(bytes as u64))))
}

pub async fn run(env: &Env, jobs: usize, idle_secs: u64) -> Result<Memory> {
    println!("\n== memory: operator RSS at 0 and {jobs} jobs");
    let defs = load::jobs("mem", jobs, false);
    let mut case = env.case("memory", &defs).await?;
    let mut op = case.operator(&env.opts.fast_args)?;
    op.wait_ready(Duration::from_secs(60)).await?;
    case.settle(&mut op, 0, Duration::from_secs(30)).await?;
    let (s0, h0) = settled_sample(&mut op).await?;

    case.create(&defs).await?;
    case.settle(&mut op, jobs, scaled_timeout(60, jobs, 30)).await?;
    let (created, h1) = settled_sample(&mut op).await?;

    let t = std::time::Instant::now();
    load::flip_all(&case.api, &defs, env.opts.flip_concurrency).await?;
    let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
    case.tracker
        .wait("every job to be Stopped", scaled_timeout(120, jobs, 100), |s| {
            s.all_stopped(names.iter().copied())
        })
        .await?;
    let burst_seconds = t.elapsed().as_secs_f64();
    case.settle(&mut op, jobs, scaled_timeout(60, jobs, 20)).await?;
    let (burst, h2) = settled_sample(&mut op).await?;
    let mut after_burst_idle = None;
    if idle_secs > 0 {
        tokio::time::sleep(Duration::from_secs(idle_secs)).await;
        let (idle, heap_mib) = settled_sample(&mut op).await?;
        after_burst_idle = Some(Idle {
            seconds: idle_secs,
            rss_mib: mib(idle.rss),
            heap_mib,
        });
    }
    drop(op);

    let mut op = case.operator(&env.opts.fast_args)?;
    op.wait_ready(scaled_timeout(60, jobs, 10)).await?;
    case.settle(&mut op, jobs, scaled_timeout(60, jobs, 30)).await?;
    let (restart, h3) = settled_sample(&mut op).await?;
    drop(op);

    let per = |s: &ProcSample| round2((s.rss as f64 - s0.rss as f64) / jobs.max(1) as f64);
    let r = Memory {
        jobs,
        rss0_mib: mib(s0.rss),
        created_rss_mib: mib(created.rss),
        after_burst_rss_mib: mib(burst.rss),
        after_burst_hwm_mib: mib(burst.hwm),
        after_burst_idle,
        restart_rss_mib: mib(restart.rss),
        restart_hwm_mib: mib(restart.hwm),
        heap_mib: (|| Some([h0?, h1?, h2?, h3?]))(),
        bytes_per_object_created: per(&created),
        bytes_per_object_restart: per(&restart),
        burst_seconds: round2(burst_seconds),
    };
    println!(
        "  RSS: {} MiB empty, {} MiB with {jobs} created while running, {} MiB after stopping them all (peak {}), \
         {} MiB started with them existing (peak {}); {:.0} / {:.0} bytes per object",
        r.rss0_mib,
        r.created_rss_mib,
        r.after_burst_rss_mib,
        r.after_burst_hwm_mib,
        r.restart_rss_mib,
        r.restart_hwm_mib,
        r.bytes_per_object_created,
        r.bytes_per_object_restart
    );
    if let Some([e, c, b, r]) = r.heap_mib {
        println!("  live heap: {e} / {c} / {b} / {r} MiB (empty / created / after the burst / started with them)");
    }
    if let Some(i) = &r.after_burst_idle {
        let heap = i.heap_mib.map(|h| format!(", live heap {h} MiB")).unwrap_or_default();
        println!("  {} s after the burst: RSS {} MiB{heap}", i.seconds, i.rss_mib);
    }
    case.finish().await;
    Ok(r)
}
