//! Start-up with `jobs` existing DtsJobs that an earlier operator already
//! observed (Running, status written): the realistic state after a rollout
//! or a crash. A first operator brings them there and is stopped; then the
//! measured one starts. Reported: time to `/readyz`, time until DTS was read
//! for every job (DescribeDtsJobs / DescribeDtsJobDetail covering every
//! jobId), time until all start-up activity ended, and the writes and DTS
//! calls start-up cost. An operator that reads nothing at start-up simply
//! reports no "all observed" time.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{mib, scaled_timeout, Env};
use crate::emulator::by_action;
use crate::load::{self, Creation};
use crate::measure::{now_ms, round2};
use crate::procs;
use crate::Result;

#[derive(Debug, Clone, Serialize)]
pub struct Startup {
    pub jobs: usize,
    pub creation: Creation,
    /// Time the preparing operator took to observe every job.
    pub prepare_seconds: f64,
    /// Jobs whose status carried DTS's view (`directions[].observed`) when
    /// the measured operator started.
    pub observed_before: usize,
    pub ready_seconds: f64,
    /// Until DTS had been read for every job (None: it did not read them all).
    pub all_observed_seconds: Option<f64>,
    /// Until `dts_operator_reconciles_total` reached `jobs`, if exported.
    pub all_reconciled_seconds: Option<f64>,
    /// Until the last write or DTS call of start-up.
    pub active_seconds: f64,
    pub api_writes: f64,
    pub api_requests_by_kind: BTreeMap<String, f64>,
    /// What the API server did by itself meanwhile (not the operator's).
    pub apiserver_own_requests: BTreeMap<String, f64>,
    pub dts_calls: usize,
    pub dts_calls_by_action: BTreeMap<String, usize>,
    pub operator_cpu_seconds: Option<f64>,
    pub operator_rss_mib: Option<f64>,
    pub operator_hwm_mib: Option<f64>,
}

pub async fn run(env: &Env, jobs: usize) -> Result<Startup> {
    println!("\n== startup: {jobs} existing, observed DtsJobs");
    let defs = load::jobs("start", jobs, false);
    let mut case = env.case(&format!("startup-{jobs}"), &defs).await?;
    // The state an earlier operator leaves: jobs created while it ran
    // (each got its first status), then read from DTS by an observer cycle
    // (a second operator's, which runs one at start-up). Both with lifted
    // DTS limits, only to get there sooner.
    let prep_start = Instant::now();
    let mut prep = case.operator(&env.opts.fast_args)?;
    prep.wait_ready(Duration::from_secs(60)).await?;
    let creation = case.create(&defs).await?;
    case.settle(&mut prep, jobs, scaled_timeout(60, jobs, 30)).await?;
    drop(prep);
    let mut prep = case.operator(&env.opts.fast_args)?;
    prep.wait_ready(scaled_timeout(60, jobs, 10)).await?;
    case.settle(&mut prep, jobs, scaled_timeout(60, jobs, 30)).await?;
    // "Settled" can come early when status writes failed and wait in
    // backoff; give the view time to land in every status (best effort: a
    // build without status.directions[].observed just reports 0).
    let all_observed = |s: &crate::watch::State| s.jobs.values().filter(|j| j.observed).count() >= jobs;
    if case
        .tracker
        .wait("every job observed", scaled_timeout(30, jobs, 20), all_observed)
        .await
        .is_err()
    {
        println!("  warning: not every job shows DTS's view in status before the start");
    }
    case.settle(&mut prep, jobs, scaled_timeout(60, jobs, 30)).await?;
    let observed_before = case.tracker.with(|s| s.jobs.values().filter(|j| j.observed).count());
    drop(prep);
    let prepare_seconds = prep_start.elapsed().as_secs_f64();
    println!("  prepared (created while running, then observed) in {prepare_seconds:.1} s");

    case.emulator.clear().await?;
    let before = env.cp.request_counts().await?;
    let mut op = case.operator(&[])?;
    let t0 = op.started_ms;
    let ready_ms = op.wait_ready(scaled_timeout(60, jobs, 10)).await?;
    let ready_seconds = (ready_ms - t0) / 1000.0;

    // Wait for the end of start-up activity: neither the watch nor the
    // journal moved for the quiet period (at least 3 s: the observer
    // starts after the watch synced, and a cycle's calls are paced).
    let quiet = env.opts.quiet.max(Duration::from_secs(3));
    let deadline = Instant::now() + scaled_timeout(120, jobs, 20);
    let mut reconciled_ms = None;
    let mut last = (u64::MAX, usize::MAX);
    let mut last_change = Instant::now();
    loop {
        op.process.check_alive()?;
        if reconciled_ms.is_none()
            && op
                .metric("dts_operator_reconciles_total")
                .await
                .is_some_and(|n| n >= jobs as f64)
        {
            reconciled_ms = Some(now_ms());
        }
        let now = (case.tracker.with(|s| s.events), case.emulator.journal().await?.len());
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() >= quiet
            && (reconciled_ms.is_some() || jobs == 0 || last_change.elapsed() >= 2 * quiet)
        {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("start-up with {jobs} jobs did not come to rest").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sample = procs::sample(op.pid());
    let (requests, own) = env.requests_since(&before, 0).await?;
    let journal = case.emulator.journal().await?;

    // When the last not-yet-read job was first read.
    let wanted: HashSet<&str> = defs.iter().map(|d| d.job_id.as_str()).collect();
    let mut seen = HashSet::new();
    let mut observed_ms = None;
    for c in &journal {
        for id in c.described_ids() {
            if wanted.contains(id) && seen.insert(id.to_owned()) && seen.len() == wanted.len() {
                observed_ms = c.time_ms();
            }
        }
    }
    let last_activity_ms = journal
        .iter()
        .filter_map(|c| c.time_ms())
        .chain(std::iter::once(case.tracker.with(|s| s.last_event_ms)))
        .chain(std::iter::once(ready_ms))
        .fold(t0, f64::max);
    let secs = |t: f64| round2((t - t0) / 1000.0);
    let r = Startup {
        jobs,
        creation,
        prepare_seconds: round2(prepare_seconds),
        observed_before,
        ready_seconds: round2(ready_seconds),
        all_observed_seconds: if jobs == 0 {
            Some(round2(ready_seconds))
        } else {
            observed_ms.map(secs)
        },
        all_reconciled_seconds: reconciled_ms.map(secs),
        active_seconds: secs(last_activity_ms),
        api_writes: requests.writes(),
        api_requests_by_kind: requests.rows(),
        apiserver_own_requests: own.rows(),
        dts_calls: journal.len(),
        dts_calls_by_action: by_action(&journal),
        operator_cpu_seconds: sample.map(|s| round2(s.cpu_s)),
        operator_rss_mib: sample.map(|s| mib(s.rss)),
        operator_hwm_mib: sample.map(|s| mib(s.hwm)),
    };
    println!(
        "  ready {:.2} s, all observed {}, active until {:.1} s; {} writes, {} DTS calls; RSS {} MiB",
        r.ready_seconds,
        r.all_observed_seconds.map_or("-".into(), |s| format!("{s:.1} s")),
        r.active_seconds,
        r.api_writes,
        r.dts_calls,
        r.operator_rss_mib.unwrap_or(0.0)
    );
    drop(op);
    case.finish().await;
    Ok(r)
}
