//! Burst: `jobs` DtsJobs (one or two directions) flipped at once while DTS
//! answers every call after `latency` (the emulator's `latencyMs`, applied
//! after the call took effect). Measures first flip → last Stopped, the
//! rates, and the CPU of every process involved, to name what limited it;
//! then the same API writes without the operator ([`floor`]).

mod floor;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use serde::Serialize;
use serde_json::json;

use super::{rss_mib, scaled_timeout, Env};
use crate::emulator::by_action;
use crate::load::{self, Creation};
use crate::measure::{now_ms, round2, CpuSampler, CpuUse};
use crate::Result;

#[derive(Debug, Clone, Serialize)]
pub struct Burst {
    pub jobs: usize,
    pub directions: usize,
    pub dts_latency_ms: u64,
    pub operator_args: Vec<String>,
    pub creation: Creation,
    /// First flip sent → last flip answered.
    pub flips_seconds: f64,
    /// First flip sent → last job seen Stopped.
    pub seconds: f64,
    pub jobs_per_second: f64,
    pub dts_calls: usize,
    pub dts_calls_per_second: f64,
    /// Average DTS calls in flight (Little's law: calls/s × latency).
    pub dts_in_flight_avg: f64,
    pub status_writes: f64,
    pub status_writes_per_second: f64,
    /// status_writes_per_second / the run's ceiling (None without ceiling).
    pub ceiling_fraction: Option<f64>,
    pub cpu: Vec<CpuUse>,
    pub machine_busy_percent: Option<f64>,
    pub limited_by: String,
    pub dts_calls_per_job: BTreeMap<String, f64>,
    pub api_requests_per_job: BTreeMap<String, f64>,
    pub operator_rss_mib: Option<f64>,
    /// When the burst's Events were written, against its Stopped times.
    pub events: EventTiming,
    /// The burst's writes sent by the driver alone, right after it (None:
    /// the replay failed, a failed check says why).
    pub floor: Option<floor::Floor>,
    /// (seconds since the first flip, jobs Stopped), for the progress plot.
    pub progress: Vec<(f64, usize)>,
}

/// The Events of the case made after the first flip: how many, when the
/// last one was made and how many came after the last job was Stopped (an
/// operator that lets its Events give way to its status writes writes most
/// of them then).
#[derive(Debug, Clone, Serialize)]
pub struct EventTiming {
    pub count: usize,
    /// First flip → the last Event's time (its eventTime, else lastTimestamp).
    pub last_seconds: Option<f64>,
    pub after_last_stopped: usize,
}

/// How long the Events may keep coming after the jobs settled.
const EVENTS_WAIT: Duration = Duration::from_secs(30);

/// Waits until the case's Events stop growing (two looks `quiet` apart see
/// the same count, at most [`EVENTS_WAIT`]), then times those made since
/// `t0` (ms since the epoch) against `last_stopped` (s since `t0`); also
/// how many LISTs that took (the driver's, not the operator's requests).
async fn event_timing(
    client: &kube::Client,
    ns: &str,
    quiet: Duration,
    t0: f64,
    last_stopped: f64,
) -> Result<(EventTiming, usize)> {
    let api: kube::Api<Event> = kube::Api::namespaced(client.clone(), ns);
    let deadline = tokio::time::Instant::now() + EVENTS_WAIT;
    let mut seen = usize::MAX;
    let mut lists = 0;
    let events = loop {
        let list = api.list(&Default::default()).await?.items;
        lists += 1;
        if list.len() == seen || tokio::time::Instant::now() > deadline {
            break list;
        }
        seen = list.len();
        tokio::time::sleep(quiet).await;
    };
    let times: Vec<f64> = events
        .iter()
        .filter_map(|e| {
            let at = e
                .event_time
                .as_ref()
                .map(|t| t.0)
                .or(e.last_timestamp.as_ref().map(|t| t.0))?;
            Some((at.as_millisecond() as f64 - t0) / 1000.0)
        })
        .filter(|s| *s >= 0.0)
        .collect();
    let timing = EventTiming {
        count: times.len(),
        last_seconds: times.iter().copied().reduce(f64::max).map(round2),
        after_last_stopped: times.iter().filter(|s| **s > last_stopped).count(),
    };
    Ok((timing, lists))
}

/// Entries the emulator's journal keeps (crates/dts-emulator journal.rs).
const JOURNAL_CAPACITY: usize = 10_000;

pub struct Params {
    pub jobs: usize,
    pub two_way: bool,
    pub latency: Duration,
    pub ceiling: Option<f64>,
}

pub async fn run(env: &Env, p: Params) -> Result<Burst> {
    let directions = if p.two_way { 2 } else { 1 };
    println!(
        "\n== burst: {} jobs × {directions} direction(s) flipped at once, DTS answers in {:?}, operator flags {:?}",
        p.jobs, p.latency, env.opts.fast_args
    );
    let defs = load::jobs("burst", p.jobs, p.two_way);
    let mut case = env.case("burst", &defs).await?;
    let mut op = case.operator(&env.opts.fast_args)?;
    op.wait_ready(Duration::from_secs(60)).await?;
    let creation = case.create(&defs).await?;
    let settle = case
        .settle(&mut op, defs.len(), scaled_timeout(60, defs.len(), 20))
        .await?;
    println!("  settled in {settle:.1} s");

    case.emulator
        .faults(json!({"latencyMs": p.latency.as_millis() as u64}))
        .await?;
    case.emulator.clear().await?;
    let before = env.cp.request_counts().await?;
    let sampler = CpuSampler::start(
        vec![
            ("dts-operator".into(), op.pid()),
            ("kube-apiserver".into(), env.cp.apiserver_pid),
            ("etcd".into(), env.cp.etcd_pid),
            ("dts-emulator".into(), case.emulator.process.pid()),
            ("dts-bench (driver)".into(), std::process::id() as i32),
        ],
        Duration::from_millis(250),
    );
    let profile = env.opts.apiserver_profile.clone().map(|(length, file)| {
        let client = env.cp.client.clone();
        tokio::spawn(async move { crate::cluster::cpu_profile(&client, length, &file).await.map(|()| file) })
    });
    // The operator's writes to one job, for the floor to replay.
    case.tracker.record(&defs[0].name);
    let t0 = now_ms();
    let flips = load::flip_all(&case.api, &defs, env.opts.flip_concurrency).await?;
    let flips_done = now_ms();
    let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
    case.tracker
        .wait(
            &format!("{} DtsJobs to be Stopped", defs.len()),
            scaled_timeout(120, defs.len() * directions, 100 + p.latency.as_millis() as u64),
            |s| s.all_stopped(names.iter().copied()),
        )
        .await?;
    let (cpu, machine_busy_percent) = sampler.finish();
    if let Some(task) = profile {
        match task.await {
            Ok(Ok(file)) => println!("  kube-apiserver CPU profile: go tool pprof -top {}", file.display()),
            Ok(Err(e)) => println!("  no kube-apiserver CPU profile: {e}"),
            Err(e) => println!("  no kube-apiserver CPU profile: {e}"),
        }
    }
    tokio::time::sleep(env.opts.quiet).await;
    op.process.check_alive()?;
    let mut stopped: Vec<f64> = case.tracker.with(|s| {
        names
            .iter()
            .filter_map(|n| s.jobs.get(*n).and_then(|j| j.stopped_ms))
            .map(|t| (t - t0) / 1000.0)
            .collect()
    });
    stopped.sort_by(f64::total_cmp);
    let seconds = stopped.last().copied().unwrap_or(0.0);
    let (events, lists) = event_timing(&env.cp.client, &case.ns, env.opts.quiet, t0, seconds).await?;
    let (requests, _) = env.requests_since(&before, flips.len()).await?;
    let requests = requests.minus("LIST", "events", "", lists as f64);
    let journal = case.emulator.journal().await?;
    case.emulator.faults(json!({"latencyMs": 0})).await?;
    let operator_rss_mib = rss_mib(&op);

    let progress: Vec<(f64, usize)> = stopped.iter().enumerate().map(|(i, t)| (round2(*t), i + 1)).collect();

    // Exactly one StopDtsJob per job and direction.
    let mut per: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for c in journal.iter().filter(|c| c.action() == "StopDtsJob") {
        *per.entry((c.job_id(), c.direction())).or_default() += 1;
    }
    let mut wrong = Vec::new();
    for d in &defs {
        let dirs: &[&str] = if p.two_way {
            &["Forward", "Reverse"]
        } else {
            &["Forward"]
        };
        for dir in dirs {
            let n = per.get(&(d.job_id.as_str(), *dir)).copied().unwrap_or(0);
            if n != 1 {
                wrong.push(format!("{} {dir}: {n}", d.name));
            }
        }
    }
    let stop_calls: usize = per.values().sum();
    // The emulator keeps the last 10,000 calls only; beyond that the count
    // cannot be verified (and must not fail for it).
    let overflowed = journal.len() >= JOURNAL_CAPACITY;
    env.check(
        "burst",
        "one StopDtsJob per job and direction",
        wrong.is_empty() || overflowed,
        if overflowed {
            format!(
                "not verified: {} calls reached the emulator's journal capacity",
                journal.len()
            )
        } else if wrong.is_empty() {
            format!("{stop_calls} calls for {} jobs × {directions}", defs.len())
        } else {
            format!("{} wrong, e.g. {}", wrong.len(), wrong[..wrong.len().min(5)].join(", "))
        },
    );
    env.check(
        "burst",
        "every flipped job reached Stopped",
        stopped.len() == defs.len(),
        format!("{}/{}", stopped.len(), defs.len()),
    );

    let dts_calls = journal.len();
    let dts_calls_per_second = dts_calls as f64 / seconds.max(1e-3);
    let dts_in_flight_avg = dts_calls_per_second * p.latency.as_secs_f64();
    let status_writes = requests.count(&["APPLY", "PATCH", "PUT"], "dtsjobs", "status");
    let status_writes_per_second = status_writes / seconds.max(1e-3);
    let limited_by = limited_by(
        &cpu,
        machine_busy_percent,
        dts_in_flight_avg,
        max_concurrency(&env.opts.fast_args),
    );
    let mut r = Burst {
        jobs: p.jobs,
        directions,
        dts_latency_ms: p.latency.as_millis() as u64,
        operator_args: env.opts.fast_args.clone(),
        creation,
        flips_seconds: round2((flips_done - t0) / 1000.0),
        seconds: round2(seconds),
        jobs_per_second: round2(defs.len() as f64 / seconds.max(1e-3)),
        dts_calls,
        dts_calls_per_second: round2(dts_calls_per_second),
        dts_in_flight_avg: round2(dts_in_flight_avg),
        status_writes,
        status_writes_per_second: round2(status_writes_per_second),
        ceiling_fraction: p.ceiling.map(|c| round2(status_writes_per_second / c.max(1e-3))),
        cpu,
        machine_busy_percent,
        limited_by,
        dts_calls_per_job: by_action(&journal)
            .into_iter()
            .map(|(a, n)| (a, round2(n as f64 / p.jobs.max(1) as f64)))
            .collect(),
        api_requests_per_job: requests.per(p.jobs as f64),
        operator_rss_mib,
        events,
        floor: None,
        progress,
    };
    println!(
        "  {} jobs Stopped in {:.1} s ({:.0} jobs/s, {:.0} DTS calls/s, {:.0} status writes/s); limited by: {}",
        r.jobs, r.seconds, r.jobs_per_second, r.dts_calls_per_second, r.status_writes_per_second, r.limited_by
    );
    println!(
        "  {} Events, the last at {} s, {} of them after the last Stopped",
        r.events.count,
        r.events.last_seconds.map_or("–".into(), |s| format!("{s:.1}")),
        r.events.after_last_stopped
    );
    drop(op);
    let recorded = case.tracker.with(|s| s.recorded.clone());
    case.finish().await;
    let floor = measure_floor(env, &defs, &recorded, r.seconds).await;
    let detail = match &floor {
        Ok(f) => format!(
            "{} jobs, a flip and {} status writes each",
            f.jobs, f.status_writes_per_job
        ),
        Err(e) => e.to_string(),
    };
    env.check("burst", "the floor replayed the burst's writes", floor.is_ok(), detail);
    r.floor = floor.ok();
    Ok(r)
}

/// Replays the burst's writes without the operator and prints the floor.
async fn measure_floor(
    env: &Env,
    defs: &[load::JobDef],
    recorded: &[serde_json::Value],
    burst_seconds: f64,
) -> Result<floor::Floor> {
    let bodies = floor::Bodies::from_recorded(recorded)?;
    println!(
        "  floor: the same writes by the driver alone ({} jobs, flip + {} status writes each, {} in flight)",
        defs.len(),
        bodies.writes.len(),
        env.opts.floor_concurrency
    );
    let f = floor::run(env, defs, &bodies, env.opts.floor_concurrency, burst_seconds).await?;
    println!(
        "  floor: {:.1} s ({:.0} writes/s; kube-apiserver {}); the burst took {:.2}× that",
        f.seconds,
        f.writes_per_second,
        f.cpu
            .iter()
            .find(|c| c.process == "kube-apiserver")
            .map_or("–".into(), |c| format!(
                "{:.1} CPU s, {:.0}% of a core",
                c.cpu_seconds, c.avg_percent
            )),
        f.burst_over_floor
    );
    Ok(f)
}

/// `--dts-max-concurrency N` from the operator's flags, if given.
fn max_concurrency(args: &[String]) -> Option<f64> {
    let i = args.iter().position(|a| a == "--dts-max-concurrency")?;
    args.get(i + 1)?.parse().ok()
}

/// Names what set the pace, from the CPU samples and the DTS concurrency
/// in use. A heuristic: the report prints the numbers it is based on.
pub fn limited_by(cpu: &[CpuUse], machine_busy: Option<f64>, in_flight: f64, max_in_flight: Option<f64>) -> String {
    let top = cpu.first();
    let top_text = top.map_or(String::new(), |t| {
        format!("{} used the most CPU ({:.0}% of one core)", t.process, t.avg_percent)
    });
    if machine_busy.is_some_and(|b| b >= 85.0) {
        return format!(
            "CPU: the machine's cores were {:.0}% busy; {top_text}",
            machine_busy.unwrap_or(0.0)
        );
    }
    if let Some(t) = top.filter(|t| t.avg_percent >= 90.0) {
        return format!("CPU of {}: one core busy ({:.0}%)", t.process, t.avg_percent);
    }
    if let Some(max) = max_in_flight.filter(|m| in_flight >= 0.8 * m) {
        return format!("DTS concurrency: {in_flight:.0} calls in flight on average of {max:.0} allowed");
    }
    format!(
        "neither CPU ({:.0}% of the machine busy) nor DTS concurrency ({in_flight:.0} in flight on average) \
         saturated: the operator's own pacing; {top_text}",
        machine_busy.unwrap_or(0.0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(p: &str, avg: f64) -> CpuUse {
        CpuUse {
            process: p.into(),
            cpu_seconds: 1.0,
            avg_percent: avg,
            peak_percent: avg,
        }
    }

    #[test]
    fn names_the_bottleneck() {
        let c = [cpu("kube-apiserver", 120.0), cpu("dts-operator", 40.0)];
        assert!(limited_by(&c, Some(95.0), 10.0, Some(64.0)).starts_with("CPU: the machine"));
        let c = [cpu("dts-operator", 99.0)];
        assert!(limited_by(&c, Some(60.0), 10.0, Some(64.0)).starts_with("CPU of dts-operator"));
        let c = [cpu("dts-operator", 20.0)];
        assert!(limited_by(&c, Some(30.0), 60.0, Some(64.0)).starts_with("DTS concurrency"));
        assert!(limited_by(&c, Some(30.0), 6.0, Some(64.0)).starts_with("neither"));
        let args = ["--dts-max-concurrency".to_string(), "64".to_string()];
        assert_eq!(max_concurrency(&args), Some(64.0));
    }
}
