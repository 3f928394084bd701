//! Idle latency: one flip at a time, on an operator that is otherwise at
//! rest with `background` Running DtsJobs, so the numbers are the
//! pipeline's own latency and not queueing. For each flip:
//!
//! * flip → watch: the driver's own watch sees the new generation (what any
//!   watcher, the operator's included, cannot beat);
//! * flip → StopDtsJob: the emulator's journal time of that job's
//!   StopDtsJob minus the time the driver's PATCH returned (same clock);
//! * flip → Stopped: the driver's watch sees `phase: Stopped` with a
//!   current `Ready=True`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::{rss_mib, scaled_timeout, Env};
use crate::emulator::by_action;
use crate::load::{self, Creation};
use crate::measure::{round2, Summary};
use crate::Result;

#[derive(Debug, Clone, Serialize)]
pub struct Idle {
    pub background: usize,
    pub flips: usize,
    pub spacing_ms: u64,
    pub creation: Creation,
    pub settle_seconds: f64,
    /// The flip PATCH's own round trip.
    pub patch_ms: Option<Summary>,
    pub flip_to_watch_ms: Option<Summary>,
    pub flip_to_stop_call_ms: Option<Summary>,
    pub flip_to_stopped_ms: Option<Summary>,
    /// DTS calls per flipped job, by action.
    pub dts_calls_per_job: BTreeMap<String, f64>,
    /// API requests per flipped job (the driver's own flip PATCH excluded).
    pub api_requests_per_job: BTreeMap<String, f64>,
    pub operator_rss_mib: Option<f64>,
    /// Raw samples, for the CDF plot.
    pub stop_call_samples: Vec<f64>,
    pub stopped_samples: Vec<f64>,
}

pub async fn run(env: &Env, background: usize, flips: usize, spacing: Duration) -> Result<Idle> {
    println!("\n== idle: {flips} flips one at a time, {background} background jobs");
    let bg = load::jobs("bg", background, false);
    let flip_defs = load::jobs("flip", flips, false);
    let all: Vec<_> = bg.iter().chain(&flip_defs).cloned().collect();
    let mut case = env.case(&format!("idle-{background}"), &all).await?;
    let mut op = case.operator(&[])?;
    op.wait_ready(Duration::from_secs(60)).await?;
    // Created while the operator runs, as jobs arrive in a real cluster:
    // an operator started with thousands of never-seen jobs is the
    // start-up scenario's subject, not this one's.
    let creation = case.create(&all).await?;
    let settle_seconds = case
        .settle(&mut op, all.len(), scaled_timeout(60, all.len(), 20))
        .await?;
    println!("  settled in {settle_seconds:.1} s");

    case.emulator.clear().await?;
    let before = env.cp.request_counts().await?;
    let mut flips_done = Vec::new();
    for d in &flip_defs {
        let f = load::flip(&case.api, &d.name).await?;
        case.tracker
            .wait(&format!("{} to be Stopped", d.name), Duration::from_secs(30), |s| {
                s.jobs.get(&d.name).is_some_and(|j| j.stopped_ms.is_some())
            })
            .await?;
        flips_done.push((d, f));
        tokio::time::sleep(spacing).await;
    }
    // The Event and anything else that trails the final status.
    tokio::time::sleep(env.opts.quiet).await;
    op.process.check_alive()?;
    let (requests, _) = env.requests_since(&before, flips).await?;
    let journal = case.emulator.journal().await?;
    let operator_rss_mib = rss_mib(&op);

    let patch: Vec<f64> = flips_done.iter().map(|(_, f)| f.returned_ms - f.sent_ms).collect();
    let (mut to_watch, mut to_call, mut to_stopped) = (Vec::new(), Vec::new(), Vec::new());
    let mut wrong = Vec::new();
    for (d, f) in &flips_done {
        let stops: Vec<_> = journal
            .iter()
            .filter(|c| c.action() == "StopDtsJob" && c.job_id() == d.job_id)
            .collect();
        if stops.len() != 1 {
            wrong.push(format!("{}: {} StopDtsJob", d.name, stops.len()));
        }
        if let Some(t) = stops.first().and_then(|c| c.time_ms()) {
            to_call.push(t - f.returned_ms);
        }
        case.tracker.with(|s| {
            if let Some(j) = s.jobs.get(&d.name) {
                if let Some(t) = j.generation_seen.get(&f.generation) {
                    to_watch.push(t - f.returned_ms);
                }
                if let Some(t) = j.stopped_ms {
                    to_stopped.push(t - f.returned_ms);
                }
            }
        });
    }
    env.check(
        "idle",
        &format!("idle-{background}: one StopDtsJob per flipped job"),
        wrong.is_empty(),
        if wrong.is_empty() {
            format!("{flips} jobs, {flips} calls")
        } else {
            wrong.join(", ")
        },
    );
    let dts_calls_per_job = by_action(&journal)
        .into_iter()
        .map(|(a, n)| (a, round2(n as f64 / flips.max(1) as f64)))
        .collect();
    let r = Idle {
        background,
        flips,
        spacing_ms: spacing.as_millis() as u64,
        creation,
        settle_seconds: round2(settle_seconds),
        patch_ms: Summary::of(&patch),
        flip_to_watch_ms: Summary::of(&to_watch),
        flip_to_stop_call_ms: Summary::of(&to_call),
        flip_to_stopped_ms: Summary::of(&to_stopped),
        dts_calls_per_job,
        api_requests_per_job: requests.per(flips as f64),
        operator_rss_mib,
        stop_call_samples: to_call.iter().map(|x| round2(*x)).collect(),
        stopped_samples: to_stopped.iter().map(|x| round2(*x)).collect(),
    };
    let p = |s: &Option<Summary>| s.as_ref().map_or("-".into(), |s| format!("{:.0}/{:.0}", s.p50, s.p99));
    println!(
        "  flip→watch {} ms, flip→StopDtsJob {} ms, flip→Stopped {} ms (p50/p99)",
        p(&r.flip_to_watch_ms),
        p(&r.flip_to_stop_call_ms),
        p(&r.flip_to_stopped_ms)
    );
    drop(op);
    case.finish().await;
    Ok(r)
}
