//! The outputs of a run in its directory: `results.json` (everything,
//! raw samples included), `results.md` (the tables docs/benchmarks.md
//! quotes) and the SVG plots.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::measure::Summary;
use crate::scenarios::{
    burst::Burst, ceiling::Ceiling, idle::Idle, memory::Memory, shards::Shards, startup::Startup, steady::Steady,
    writes::Writes, Check,
};
use crate::Result;

#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub started: String,
    pub seconds: f64,
    pub smoke: bool,
    pub command_line: Vec<String>,
    pub operator_cmd: String,
    pub fast_args: Vec<String>,
    /// `git describe` of the working directory, if it is a git checkout.
    pub commit: Option<String>,
    pub machine: Machine,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: Option<String>,
    pub memory_gib: Option<f64>,
    /// 1-minute load average when the run started (other users included).
    pub load_average_at_start: Option<f64>,
}

impl Machine {
    pub fn describe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        Machine {
            cpus: crate::procs::cpus(),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned()),
            memory_gib: meminfo
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .map(|kib| (kib / 1048576.0 * 10.0).round() / 10.0),
            load_average_at_start: load.split_whitespace().next().and_then(|v| v.parse().ok()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub run: RunInfo,
    pub ceiling: Option<Ceiling>,
    pub idle: Vec<Idle>,
    pub burst: Option<Burst>,
    pub steady: Option<Steady>,
    pub startup: Vec<Startup>,
    pub memory: Option<Memory>,
    pub writes: Option<Writes>,
    pub shards: Option<Shards>,
    pub checks: Vec<Check>,
    /// Scenarios that failed (the run goes on with the next one).
    pub errors: Vec<String>,
}

/// Writes results.json, results.md and the plots into `dir`.
pub fn write(dir: &Path, r: &Results) -> Result<()> {
    std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(r)? + "\n")?;
    std::fs::write(dir.join("results.md"), markdown(r))?;
    if r.idle.iter().any(|i| !i.stop_call_samples.is_empty()) {
        crate::plot::idle_cdf(&dir.join("idle-latency-cdf.svg"), &r.idle)?;
    }
    if let Some(b) = r.burst.as_ref().filter(|b| !b.progress.is_empty()) {
        crate::plot::burst_progress(&dir.join("burst-progress.svg"), b)?;
    }
    Ok(())
}

fn pct(s: &Option<Summary>) -> String {
    s.as_ref()
        .map_or("–".into(), |s| format!("{:.0} / {:.0} / {:.0}", s.p50, s.p90, s.p99))
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map_or("–".into(), |v| format!("{v}{unit}"))
}

/// `APPLY dtsjobs/status 3, GET secrets 1, ...`
fn per_kind(m: &BTreeMap<String, f64>) -> String {
    if m.is_empty() {
        return "0".into();
    }
    m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let run = &r.run;
    let m = &run.machine;
    let _ = writeln!(s, "# dts-bench results\n");
    let _ = writeln!(
        s,
        "Run {} ({:.0} s{}), operator `{}`, commit `{}`.  \nMachine: {} CPUs ({}), {} GiB, load average {} at start \
         (shared with other work: read medians, compare runs on one machine).  \n\
         Control plane: etcd + kube-apiserver from `testcluster` on loopback; DTS: `dts-emulator`.\n",
        run.started,
        run.seconds,
        if run.smoke { ", smoke sizes" } else { "" },
        run.operator_cmd,
        run.commit.as_deref().unwrap_or("?"),
        m.cpus,
        m.cpu_model.as_deref().unwrap_or("?"),
        m.memory_gib.map_or("?".into(), |g| g.to_string()),
        m.load_average_at_start.map_or("?".into(), |l| l.to_string()),
    );
    let _ = writeln!(s, "Command: `{}`\n", run.command_line.join(" "));
    for e in &r.errors {
        let _ = writeln!(s, "**A scenario failed:** {e}\n");
    }
    if let Some(c) = &r.ceiling {
        let _ = writeln!(s, "## API server status-write ceiling\n");
        let _ = writeln!(
            s,
            "| status writes/s | in flight | writes | errors | latency p50 / p90 / p99 ms |"
        );
        let _ = writeln!(s, "| ---: | ---: | ---: | ---: | ---: |");
        let _ = writeln!(
            s,
            "| {:.0} | {} | {} | {} | {} |\n",
            c.writes_per_second,
            c.concurrency,
            c.writes,
            c.errors,
            pct(&c.latency_ms)
        );
    }
    if let Some(w) = &r.writes {
        let _ = writeln!(
            s,
            "## What one status write costs, by method ({} jobs, {} in flight, {} windows each, methods in turn)\n",
            w.jobs, w.concurrency, w.rounds
        );
        let _ = writeln!(
            s,
            "| method | writes/s | kube-apiserver CPU ms / write | by window | etcd CPU ms / write | body bytes | conflicts | errors | latency p50 / p90 / p99 ms |"
        );
        let _ = writeln!(s, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for m in &w.methods {
            let by_window: Vec<String> = m
                .apiserver_cpu_ms_per_write_by_window
                .iter()
                .map(|v| opt(*v, ""))
                .collect();
            let _ = writeln!(
                s,
                "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
                m.method,
                m.writes_per_second,
                opt(m.apiserver_cpu_ms_per_write, ""),
                by_window.join(" "),
                opt(m.etcd_cpu_ms_per_write, ""),
                m.body_bytes,
                m.conflicts,
                m.errors,
                pct(&m.latency_ms)
            );
        }
        let _ = writeln!(s);
    }
    if !r.idle.is_empty() {
        let _ = writeln!(s, "## Idle latency (ms, p50 / p90 / p99)\n");
        let _ = writeln!(
            s,
            "| background jobs | flips | flip → watch | flip → StopDtsJob | flip → Stopped | API requests per stopped job | DTS calls per job | RSS MiB |"
        );
        let _ = writeln!(s, "| ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |");
        for i in &r.idle {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                i.background,
                i.flips,
                pct(&i.flip_to_watch_ms),
                pct(&i.flip_to_stop_call_ms),
                pct(&i.flip_to_stopped_ms),
                per_kind(&i.api_requests_per_job),
                per_kind(&i.dts_calls_per_job),
                opt(i.operator_rss_mib, "")
            );
        }
        let _ = writeln!(s, "\n![idle latency CDF](idle-latency-cdf.svg)\n");
    }
    if let Some(b) = &r.burst {
        let _ = writeln!(s, "## Burst\n");
        let _ = writeln!(
            s,
            "| jobs × directions | DTS latency | first flip → last Stopped | jobs/s | DTS calls/s | status writes/s (of ceiling) | limited by |"
        );
        let _ = writeln!(s, "| --- | ---: | ---: | ---: | ---: | ---: | --- |");
        let _ = writeln!(
            s,
            "| {} × {} | {} ms | {:.1} s | {:.0} | {:.0} | {:.0} ({}) | {} |\n",
            b.jobs,
            b.directions,
            b.dts_latency_ms,
            b.seconds,
            b.jobs_per_second,
            b.dts_calls_per_second,
            b.status_writes_per_second,
            b.ceiling_fraction.map_or("–".into(), |f| format!("{:.0}%", f * 100.0)),
            b.limited_by
        );
        let _ = writeln!(
            s,
            "Operator flags: `{}`. Flips sent in {:.1} s. Average DTS calls in flight {:.1}; machine CPU busy {}.  \n\
             API requests per job: {}.  \nDTS calls per job: {}.  \n\
             Events: {} made after the first flip, the last at {} s, {} of them after the last Stopped.\n",
            b.operator_args.join(" "),
            b.flips_seconds,
            b.dts_in_flight_avg,
            opt(b.machine_busy_percent, "%"),
            per_kind(&b.api_requests_per_job),
            per_kind(&b.dts_calls_per_job),
            b.events.count,
            opt(b.events.last_seconds, ""),
            b.events.after_last_stopped,
        );
        let _ = writeln!(s, "| process | CPU s | average % of a core | peak % (1 s) |");
        let _ = writeln!(s, "| --- | ---: | ---: | ---: |");
        for c in &b.cpu {
            let _ = writeln!(
                s,
                "| {} | {:.1} | {:.0} | {:.0} |",
                c.process, c.cpu_seconds, c.avg_percent, c.peak_percent
            );
        }
        if let Some(f) = &b.floor {
            let apiserver = f.cpu.iter().find(|c| c.process == "kube-apiserver");
            let _ = writeln!(
                s,
                "\nFloor: the same writes sent by the driver alone right after, with no operator and no DTS \
                 ({} jobs, each a flip and the operator's {} status writes ({} B at the end), {} jobs in flight, \
                 two watches): {:.1} s, {:.0} writes/s; kube-apiserver {} CPU s, machine CPU busy {}. \
                 The burst took {:.2}× the floor.",
                f.jobs,
                f.status_writes_per_job,
                f.status_bytes,
                f.concurrency,
                f.seconds,
                f.writes_per_second,
                apiserver.map_or("–".into(), |c| format!("{:.1}", c.cpu_seconds)),
                opt(f.machine_busy_percent, "%"),
                f.burst_over_floor,
            );
        }
        let _ = writeln!(s, "\n![burst progress](burst-progress.svg)\n");
    }
    if let Some(st) = &r.steady {
        let _ = writeln!(s, "## Steady state (at rest)\n");
        let _ = writeln!(
            s,
            "| jobs (Stopped) | seconds | DTS calls | API writes | API requests | operator CPU s | RSS MiB |"
        );
        let _ = writeln!(s, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        let op = st.cpu.iter().find(|c| c.process == "dts-operator");
        let _ = writeln!(
            s,
            "| {} ({}) | {:.0} | {} | {} | {} | {} | {} |\n",
            st.jobs,
            st.stopped_jobs,
            st.seconds,
            st.dts_calls,
            st.api_writes,
            st.api_requests,
            op.map_or("–".into(), |c| format!("{:.2}", c.cpu_seconds)),
            opt(st.operator_rss_mib, "")
        );
        let _ = writeln!(
            s,
            "The operator's requests at rest: {}. The API server's own meanwhile: {}.\n",
            per_kind(&st.api_requests_by_kind),
            per_kind(&st.apiserver_own_requests)
        );
    }
    if !r.startup.is_empty() {
        let _ = writeln!(s, "## Start-up with existing, observed jobs\n");
        let _ = writeln!(
            s,
            "| existing jobs | ready | all reconciled | all observed in DTS | active until | API writes | DTS calls | CPU s | RSS MiB | peak MiB |"
        );
        let _ = writeln!(
            s,
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for u in &r.startup {
            let _ = writeln!(
                s,
                "| {} | {:.2} s | {} | {} | {:.1} s | {} | {} | {} | {} | {} |",
                u.jobs,
                u.ready_seconds,
                opt(u.all_reconciled_seconds, " s"),
                opt(u.all_observed_seconds, " s"),
                u.active_seconds,
                u.api_writes,
                u.dts_calls,
                opt(u.operator_cpu_seconds, ""),
                opt(u.operator_rss_mib, ""),
                opt(u.operator_hwm_mib, "")
            );
        }
        let _ = writeln!(s);
        for u in &r.startup {
            let _ = writeln!(
                s,
                "- {} jobs ({} of them observed before the start): the operator's requests during start-up: {}.",
                u.jobs,
                u.observed_before,
                per_kind(&u.api_requests_by_kind)
            );
        }
        let _ = writeln!(s);
    }
    if let Some(m) = &r.memory {
        let _ = writeln!(s, "## Memory (operator VmRSS / VmHWM, MiB)\n");
        let _ = writeln!(
            s,
            "| jobs | empty | created while running | after stopping all | peak | a while later | started with them | start-up peak | bytes/object (created, started) |"
        );
        let _ = writeln!(s, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        let idle = m
            .after_burst_idle
            .as_ref()
            .map_or("–".to_string(), |i| format!("{} ({} s)", i.rss_mib, i.seconds));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {idle} | {} | {} | {:.0}, {:.0} |\n",
            m.jobs,
            m.rss0_mib,
            m.created_rss_mib,
            m.after_burst_rss_mib,
            m.after_burst_hwm_mib,
            m.restart_rss_mib,
            m.restart_hwm_mib,
            m.bytes_per_object_created,
            m.bytes_per_object_restart
        );
        if let Some([e, c, b, st]) = m.heap_mib {
            let later = m
                .after_burst_idle
                .as_ref()
                .and_then(|i| Some(format!(", {} a while later", i.heap_mib?)))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "Live heap (jemalloc's allocated bytes, MiB): {e} empty, {c} created, {b} after stopping all{later}, {st} started with them.\n"
            );
        }
    }
    if let Some(sh) = &r.shards {
        shards_section(&mut s, sh);
    }
    if !r.checks.is_empty() {
        let _ = writeln!(s, "## Behaviour checks\n");
        let _ = writeln!(s, "| scenario | check | result |");
        let _ = writeln!(s, "| --- | --- | --- |");
        for c in &r.checks {
            let _ = writeln!(
                s,
                "| {} | {} | {} {} |",
                c.scenario,
                c.check,
                if c.ok { "ok" } else { "**FAILED**" },
                c.detail
            );
        }
    }
    s
}

fn shards_section(s: &mut String, sh: &Shards) {
    let _ = writeln!(s, "## Shards (two operators, one fleet)\n");
    let _ = writeln!(
        s,
        "{} jobs × {} direction(s), flipped at once; leader election {}; operator flags `{}`. \
         First flip → last Stopped {:.1} s (flips sent in {:.1} s). Jobs stopped by both shards: {}; \
         (job, direction) without exactly one stop from its own shard: {}.  \nAPI requests per job \
         (both shards): {}.\n",
        sh.jobs,
        sh.directions,
        if sh.leader_election {
            "on, a Lease per shard"
        } else {
            "off"
        },
        sh.operator_args.join(" "),
        sh.seconds,
        sh.flips_seconds,
        sh.jobs_stopped_by_both,
        sh.wrong_stop_counts,
        per_kind(&sh.api_requests_per_job),
    );
    let _ = writeln!(
        s,
        "| shard | selector | Lease (holder) | jobs | RSS empty / with jobs / after stop MiB | peak MiB | bytes/job | CPU s | last Stopped | StopDtsJob own / other shard's | DTS calls |"
    );
    let _ = writeln!(
        s,
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    for r in &sh.shards {
        let dts: BTreeMap<String, f64> = r
            .dts_calls_by_action
            .iter()
            .map(|(k, v)| (k.clone(), *v as f64))
            .collect();
        let _ = writeln!(
            s,
            "| {} | `{}` | {} | {} | {} / {} / {} | {} | {:.0} | {:.1} | {:.1} s | {} / {} | {} |",
            r.name,
            r.selector,
            r.lease.as_ref().map_or("–".into(), |l| format!(
                "{l} ({})",
                r.lease_holder.as_deref().unwrap_or("none")
            )),
            r.jobs,
            r.rss_empty_mib,
            r.rss_created_mib,
            r.rss_after_stop_mib,
            r.hwm_mib,
            r.bytes_per_job,
            r.cpu_seconds,
            r.last_stopped_seconds,
            r.stop_calls_own,
            r.stop_calls_foreign,
            per_kind(&dts),
        );
    }
    let _ = writeln!(
        s,
        "\n| process (during the flip) | CPU s | average % of a core | peak % (1 s) |"
    );
    let _ = writeln!(s, "| --- | ---: | ---: | ---: |");
    for c in &sh.cpu {
        let _ = writeln!(
            s,
            "| {} | {:.1} | {:.0} | {:.0} |",
            c.process, c.cpu_seconds, c.avg_percent, c.peak_percent
        );
    }
    let _ = writeln!(s);
}
