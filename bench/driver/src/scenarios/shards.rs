//! Shards: one fleet split across two operators by label selector, as the
//! chart's `shards:` installs it. Shard `a` takes `shard=a`, shard `b` takes
//! `shard!=a`: every job labelled `shard=b` and every job without the label,
//! so the two selectors cover each job exactly once. Each shard runs with
//! its own `--lease-name` (leader election on by default) and its own
//! emulator, which knows every job of the fleet: a StopDtsJob a shard sends
//! for a job it does not own is accepted and journaled there, so the two
//! journals tell who stopped what. Reported per shard: RSS (and bytes per
//! owned job), CPU, time until its last job was Stopped, its StopDtsJob
//! calls for its own and for the other shard's jobs.
//!
//! Each emulator journals at most 10,000 calls; one direction per job keeps
//! 10,000 jobs within that (5,000 stops per shard plus the observer's reads).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde::Serialize;

use super::{mib, scaled_timeout, Env};
use crate::emulator::{self, by_action, Emulator};
use crate::load::{self, Creation, JobDef};
use crate::measure::{now_ms, round2, CpuSampler, CpuUse};
use crate::operator::{Launch, Operator};
use crate::procs::{self, ProcSample};
use crate::Result;

/// Entries the emulator's journal keeps (crates/dts-emulator journal.rs).
const JOURNAL_CAPACITY: usize = 10_000;

/// The label the fleet is split by.
const LABEL: &str = "shard";

#[derive(Debug, Clone, Serialize)]
pub struct ShardRun {
    pub name: String,
    pub selector: String,
    /// The Lease this shard holds (`None` without leader election).
    pub lease: Option<String>,
    pub lease_holder: Option<String>,
    /// Jobs its selector matches.
    pub jobs: usize,
    pub rss_empty_mib: f64,
    pub rss_created_mib: f64,
    pub rss_after_stop_mib: f64,
    pub hwm_mib: f64,
    /// (RSS with its jobs − RSS empty) / its jobs.
    pub bytes_per_job: f64,
    /// CPU seconds since it started (creation, stop and settling included).
    pub cpu_seconds: f64,
    /// First flip sent → this shard's last job seen Stopped.
    pub last_stopped_seconds: f64,
    /// StopDtsJob calls it sent for its own jobs, and for the other shard's.
    pub stop_calls_own: usize,
    pub stop_calls_foreign: usize,
    pub dts_calls_by_action: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Shards {
    pub jobs: usize,
    pub directions: usize,
    pub leader_election: bool,
    pub operator_args: Vec<String>,
    pub creation: Creation,
    /// First flip sent → last flip answered.
    pub flips_seconds: f64,
    /// First flip sent → last job of either shard seen Stopped.
    pub seconds: f64,
    pub shards: Vec<ShardRun>,
    /// Jobs with a StopDtsJob from both shards (must be 0).
    pub jobs_stopped_by_both: usize,
    /// (job, direction) pairs without exactly one StopDtsJob from the owner.
    pub wrong_stop_counts: usize,
    pub cpu: Vec<CpuUse>,
    pub machine_busy_percent: Option<f64>,
    /// Both operators' requests during the flip, per job.
    pub api_requests_per_job: BTreeMap<String, f64>,
}

pub struct Params {
    pub jobs: usize,
    pub two_way: bool,
    pub leader_elect: bool,
}

/// The two shards: name and selector.
const SHARDS: [(&str, &str); 2] = [("a", "shard=a"), ("b", "shard!=a")];

/// Which shard owns job `i`, and its label: even jobs `shard=a`; of the
/// odd ones half `shard=b`, half unlabelled (the complement selector must
/// take those too).
fn owner(i: usize) -> (usize, Option<&'static str>) {
    match i % 4 {
        0 | 2 => (0, Some("a")),
        1 => (1, Some("b")),
        _ => (1, None),
    }
}

/// A sample after the allocator had a moment to return what it freed.
async fn settled_sample(op: &mut Operator) -> Result<ProcSample> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    op.process.check_alive()?;
    procs::sample(op.pid()).ok_or_else(|| "an operator vanished".into())
}

pub async fn run(env: &Env, p: Params) -> Result<Shards> {
    let directions = if p.two_way { 2 } else { 1 };
    println!(
        "\n== shards: {} jobs × {directions} direction(s) across two operators ({}), leader election {}",
        p.jobs,
        SHARDS.map(|(n, s)| format!("{n}: {s}")).join(", "),
        if p.leader_elect { "on" } else { "off" }
    );
    let mut defs = load::jobs("shard", p.jobs, p.two_way);
    let mut owners = HashMap::new();
    for (i, d) in defs.iter_mut().enumerate() {
        let (shard, label) = owner(i);
        if let Some(v) = label {
            d.labels.push((LABEL.into(), v.into()));
        }
        owners.insert(d.job_id.clone(), shard);
    }
    let owned = |s: usize| defs.iter().filter(|d| owners[&d.job_id] == s).collect::<Vec<&JobDef>>();

    // The case's emulator is shard a's; shard b gets its own with the same jobs.
    let case = env.case("shards", &defs).await?;
    let entries = defs.iter().map(|d| emulator::job_entry(&d.job_id, d.two_way)).collect();
    let emu_b = Emulator::start(&env.opts.emulator_bin, &env.opts.logs, "shards-b", entries).await?;
    let emulators = [&case.emulator, &emu_b];

    let mut ops = Vec::new();
    for (i, (name, selector)) in SHARDS.iter().enumerate() {
        let mut extra = env.opts.fast_args.clone();
        extra.extend(["--selector".into(), (*selector).into()]);
        if p.leader_elect {
            extra.extend([
                "--leader-elect".into(),
                "--lease-name".into(),
                format!("bench-shard-{name}"),
                "--lease-namespace".into(),
                case.ns.clone(),
                "--identity".into(),
                format!("shard-{name}-0"),
            ]);
        }
        let log = env.opts.logs.join(format!("shards-operator-{name}.log"));
        ops.push(Operator::spawn(
            &format!("operator (shard {name})"),
            &env.opts.operator_cmd,
            Launch {
                kubeconfig: &env.cp.kubeconfig,
                dts_endpoint: &emulators[i].url,
                namespace: &case.ns,
                extra: &extra,
                log: &log,
            },
        )?);
    }
    for op in &mut ops {
        op.wait_ready(Duration::from_secs(60)).await?;
    }
    let holders = if p.leader_elect {
        lease_holders(env, &case.ns).await?
    } else {
        vec![None, None]
    };
    let mut empty = Vec::new();
    for op in &mut ops {
        empty.push(settled_sample(op).await?);
    }

    let creation = case.create(&defs).await?;
    case.settle(&mut ops[0], defs.len(), scaled_timeout(60, defs.len(), 30))
        .await?;
    let mut created = Vec::new();
    for op in &mut ops {
        created.push(settled_sample(op).await?);
    }

    for e in emulators {
        e.clear().await?;
    }
    let before = env.cp.request_counts().await?;
    let sampler = CpuSampler::start(
        vec![
            ("dts-operator shard a".into(), ops[0].pid()),
            ("dts-operator shard b".into(), ops[1].pid()),
            ("kube-apiserver".into(), env.cp.apiserver_pid),
            ("etcd".into(), env.cp.etcd_pid),
            ("dts-bench (driver)".into(), std::process::id() as i32),
        ],
        Duration::from_millis(250),
    );
    let t0 = now_ms();
    let flips = load::flip_all(&case.api, &defs, env.opts.flip_concurrency).await?;
    let flips_done = now_ms();
    let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
    case.tracker
        .wait(
            &format!("{} DtsJobs of two shards to be Stopped", defs.len()),
            scaled_timeout(120, defs.len() * directions, 100),
            |s| s.all_stopped(names.iter().copied()),
        )
        .await?;
    let (cpu, machine_busy_percent) = sampler.finish();
    case.settle(&mut ops[0], defs.len(), scaled_timeout(60, defs.len(), 20))
        .await?;
    let mut after = Vec::new();
    for op in &mut ops {
        after.push(settled_sample(op).await?);
    }
    let (requests, _) = env.requests_since(&before, flips.len()).await?;
    let journals = [case.emulator.journal().await?, emu_b.journal().await?];

    // Who stopped what: StopDtsJob per (job, direction) and emulator.
    let mut stops: BTreeMap<(&str, &str), [usize; 2]> = BTreeMap::new();
    for (s, journal) in journals.iter().enumerate() {
        for c in journal.iter().filter(|c| c.action() == "StopDtsJob") {
            stops.entry((c.job_id(), c.direction())).or_default()[s] += 1;
        }
    }
    let dirs: &[&str] = if p.two_way {
        &["Forward", "Reverse"]
    } else {
        &["Forward"]
    };
    let mut wrong = Vec::new();
    let mut both = 0;
    for d in &defs {
        let own = owners[&d.job_id];
        let mut by_both = false;
        for dir in dirs {
            let n = stops.get(&(d.job_id.as_str(), *dir)).copied().unwrap_or_default();
            if n[own] != 1 || n[1 - own] != 0 {
                wrong.push(format!("{} {dir}: shard a {}, shard b {}", d.name, n[0], n[1]));
            }
            by_both |= n[0] > 0 && n[1] > 0;
        }
        both += usize::from(by_both);
    }
    let overflowed = journals.iter().any(|j| j.len() >= JOURNAL_CAPACITY);
    env.check(
        "shards",
        "each job stopped once per direction, by its own shard only",
        wrong.is_empty() || overflowed,
        if overflowed {
            "not verified: an emulator's journal reached its capacity of 10,000 calls".into()
        } else if wrong.is_empty() {
            format!(
                "{} jobs × {directions}: shard a {}, shard b {} stops, {both} jobs stopped by both",
                defs.len(),
                owned(0).len() * directions,
                owned(1).len() * directions
            )
        } else {
            format!("{} wrong, e.g. {}", wrong.len(), wrong[..wrong.len().min(5)].join(", "))
        },
    );
    let stopped = case.tracker.with(|s| {
        names
            .iter()
            .filter(|n| s.jobs.get(**n).is_some_and(|j| j.stopped_ms.is_some()))
            .count()
    });
    env.check(
        "shards",
        "every flipped job reached Stopped",
        stopped == defs.len(),
        format!("{stopped}/{}", defs.len()),
    );
    if p.leader_elect {
        let distinct = holders.iter().all(Option::is_some) && holders[0] != holders[1];
        env.check(
            "shards",
            "each shard holds its own Lease",
            distinct,
            format!("bench-shard-a: {:?}, bench-shard-b: {:?}", holders[0], holders[1]),
        );
    }

    let mut shards = Vec::new();
    for (s, (name, selector)) in SHARDS.iter().enumerate() {
        let mine = owned(s);
        let last = case.tracker.with(|st| {
            mine.iter()
                .filter_map(|d| st.jobs.get(&d.name).and_then(|j| j.stopped_ms))
                .fold(0.0f64, f64::max)
        });
        let stop_calls = |own: bool| {
            journals[s]
                .iter()
                .filter(|c| c.action() == "StopDtsJob" && (owners.get(c.job_id()) == Some(&s)) == own)
                .count()
        };
        shards.push(ShardRun {
            name: (*name).into(),
            selector: (*selector).into(),
            lease: p.leader_elect.then(|| format!("bench-shard-{name}")),
            lease_holder: holders[s].clone(),
            jobs: mine.len(),
            rss_empty_mib: mib(empty[s].rss),
            rss_created_mib: mib(created[s].rss),
            rss_after_stop_mib: mib(after[s].rss),
            hwm_mib: mib(after[s].hwm),
            bytes_per_job: round2((created[s].rss as f64 - empty[s].rss as f64) / mine.len().max(1) as f64),
            cpu_seconds: round2(after[s].cpu_s),
            last_stopped_seconds: round2(((last - t0) / 1000.0).max(0.0)),
            stop_calls_own: stop_calls(true),
            stop_calls_foreign: stop_calls(false),
            dts_calls_by_action: by_action(&journals[s]),
        });
    }
    let r = Shards {
        jobs: p.jobs,
        directions,
        leader_election: p.leader_elect,
        operator_args: env.opts.fast_args.clone(),
        creation,
        flips_seconds: round2((flips_done - t0) / 1000.0),
        seconds: shards.iter().map(|s| s.last_stopped_seconds).fold(0.0, f64::max),
        shards,
        jobs_stopped_by_both: both,
        wrong_stop_counts: wrong.len(),
        cpu,
        machine_busy_percent,
        api_requests_per_job: requests.per(p.jobs as f64),
    };
    for s in &r.shards {
        println!(
            "  shard {} ({}): {} jobs, RSS {} → {} MiB ({:.0} bytes/job), {} MiB after stopping (peak {}), \
             {} CPU s, last Stopped at {:.1} s, {} own / {} foreign stops",
            s.name,
            s.selector,
            s.jobs,
            s.rss_empty_mib,
            s.rss_created_mib,
            s.bytes_per_job,
            s.rss_after_stop_mib,
            s.hwm_mib,
            s.cpu_seconds,
            s.last_stopped_seconds,
            s.stop_calls_own,
            s.stop_calls_foreign
        );
    }
    drop(ops);
    drop(emu_b);
    case.finish().await;
    Ok(r)
}

/// The holders of both shards' Leases, once both have one (the operators
/// elect right after start; 30 s covers a slow machine).
async fn lease_holders(env: &Env, ns: &str) -> Result<Vec<Option<String>>> {
    let api: Api<Lease> = Api::namespaced(env.cp.client.clone(), ns);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut holders = Vec::new();
        for (name, _) in SHARDS {
            let lease = api.get_opt(&format!("bench-shard-{name}")).await?;
            holders.push(lease.and_then(|l| l.spec?.holder_identity).filter(|h| !h.is_empty()));
        }
        if holders.iter().all(Option::is_some) || std::time::Instant::now() > deadline {
            return Ok(holders);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_split_the_fleet_in_half_with_unlabelled_jobs_in_b() {
        let owners: Vec<_> = (0..8).map(owner).collect();
        assert_eq!(owners.iter().filter(|(s, _)| *s == 0).count(), 4);
        assert!(owners.iter().all(|(s, l)| (*s == 0) == (*l == Some("a"))));
        assert!(owners.contains(&(1, None)) && owners.contains(&(1, Some("b"))));
    }
}
