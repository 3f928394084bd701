//! The process's own gauges, read at scrape time: the standard
//! `process_*` family every Prometheus client exports (CPU, resident and
//! virtual memory, open file descriptors, start time; read from `/proc`,
//! so Linux only, and left out elsewhere), and jemalloc's heap counters.
//!
//! Why both memory views: RSS is what a memory limit counts, the heap's
//! `allocated` is what the operator's objects hold. Their gap is the
//! allocator's (pages kept for reuse, fragmentation), so a rising RSS with
//! a flat `allocated` is not a leak, and the bench reports both.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

/// What `/proc/self` shows of the process.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub start_time_seconds: f64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`): 100 on every Linux
/// architecture the operator is built for.
const CLK_TCK: f64 = 100.0;

impl ProcStats {
    /// Reads `/proc/self`; `None` where there is no procfs.
    pub fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count() as u64)
            .unwrap_or(0);
        let mut s = parse_stat(&stat, &status, &boot)?;
        s.open_fds = open_fds;
        s.max_fds = parse_max_fds(&limits);
        Some(s)
    }
}

/// Parses `/proc/self/stat` (fields counted after the command's last `)`,
/// which may itself hold spaces), `VmRSS` from `/proc/self/status` (in kB,
/// so no page size is assumed) and `btime` from `/proc/stat`.
fn parse_stat(stat: &str, status: &str, proc_stat: &str) -> Option<ProcStats> {
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // stat(5) numbers fields from 1 and the state is field 3, the first
    // after ")": utime 14, stime 15, starttime 22, vsize 23.
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let btime = proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<u64>().ok())?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())?;
    Some(ProcStats {
        cpu_seconds: (field(14)? + field(15)?) as f64 / CLK_TCK,
        resident_bytes: rss_kib * 1024,
        virtual_bytes: field(23)?,
        start_time_seconds: btime as f64 + field(22)? as f64 / CLK_TCK,
        open_fds: 0,
        max_fds: None,
    })
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn parse_max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// jemalloc's counters, in bytes, refreshed by advancing its epoch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HeapStats {
    /// Held by live allocations.
    pub allocated: u64,
    /// In pages the allocator has touched and not returned: what RSS
    /// counts of the heap.
    pub resident: u64,
}

impl HeapStats {
    /// Reads jemalloc's counters; `None` with the system allocator.
    pub fn read() -> Option<Self> {
        #[cfg(not(feature = "system-allocator"))]
        {
            use tikv_jemalloc_ctl::{epoch, stats};
            epoch::advance().ok()?;
            Some(HeapStats {
                allocated: stats::allocated::read().ok()? as u64,
                resident: stats::resident::read().ok()? as u64,
            })
        }
        #[cfg(feature = "system-allocator")]
        None
    }
}

/// The collector of both, registered without a prefix for `process_*`
/// (the names dashboards expect) and with `dts_operator_` for the heap.
#[derive(Debug)]
pub struct ProcessCollector;

impl ProcessCollector {
    pub fn register(registry: &mut Registry) {
        registry.register_collector(Box::new(ProcessCollector));
    }
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, unit: Option<&Unit>, v: f64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(encoder.encode_descriptor(name, help, unit, g.metric_type())?)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        if let Some(p) = ProcStats::read() {
            let cpu = ConstCounter::new(p.cpu_seconds);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent",
                Some(&Unit::Seconds),
                cpu.metric_type(),
            )?)?;
            let e = &mut encoder;
            gauge(
                e,
                "process_resident_memory",
                "Resident memory size",
                Some(&Unit::Bytes),
                p.resident_bytes as f64,
            )?;
            gauge(
                e,
                "process_virtual_memory",
                "Virtual memory size",
                Some(&Unit::Bytes),
                p.virtual_bytes as f64,
            )?;
            gauge(
                e,
                "process_start_time",
                "Start time of the process since the Unix epoch",
                Some(&Unit::Seconds),
                p.start_time_seconds,
            )?;
            gauge(e, "process_open_fds", "Open file descriptors", None, p.open_fds as f64)?;
            if let Some(max) = p.max_fds {
                gauge(
                    e,
                    "process_max_fds",
                    "Maximum number of open file descriptors",
                    None,
                    max as f64,
                )?;
            }
        }
        if let Some(h) = HeapStats::read() {
            let e = &mut encoder;
            gauge(
                e,
                "dts_operator_heap_allocated",
                "Heap bytes held by live allocations (jemalloc stats.allocated)",
                Some(&Unit::Bytes),
                h.allocated as f64,
            )?;
            gauge(
                e,
                "dts_operator_heap_resident",
                "Heap bytes in resident pages, live or kept by the allocator (jemalloc stats.resident)",
                Some(&Unit::Bytes),
                h.resident as f64,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        // A command name with spaces and a parenthesis of its own.
        let stat = "4242 (dts (op) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 9 0 12345 104857600 2560 18446744073709551615";
        let boot = "cpu  1 2 3\nbtime 1796000000\nprocesses 9\n";
        let status = "Name:\tdts-operator\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        let s = parse_stat(stat, status, boot).unwrap();
        assert_eq!(s.cpu_seconds, 3.0, "(250 + 50) ticks");
        assert_eq!(s.resident_bytes, 10240 * 1024);
        assert_eq!(s.virtual_bytes, 104_857_600);
        assert_eq!(s.start_time_seconds, 1_796_000_000.0 + 123.45);
        assert_eq!(parse_stat("garbage", status, boot), None);
        assert_eq!(parse_stat(stat, "Name:\tx\n", boot), None, "no VmRSS");
    }

    #[test]
    fn the_soft_open_files_limit_is_read() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1048576              1048576              files\n";
        assert_eq!(parse_max_fds(limits), Some(1_048_576));
        assert_eq!(parse_max_fds(""), None);
    }

    #[test]
    fn the_live_process_is_exported_under_the_standard_names() {
        let mut registry = Registry::default();
        ProcessCollector::register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_start_time_seconds",
            "process_open_fds",
            "dts_operator_heap_allocated_bytes",
            "dts_operator_heap_resident_bytes",
        ] {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing: {text}"));
            let v: f64 = line.rsplit_once(' ').unwrap().1.parse().unwrap();
            assert!(v >= 0.0, "{line}");
        }
        let rss = ProcStats::read().unwrap().resident_bytes;
        assert!(rss > 1 << 20, "a running test binary holds more than 1 MiB: {rss}");
    }

    /// The test binary's global allocator is the system's, so jemalloc is
    /// used directly here, as the operator's binary uses it for everything.
    #[cfg(not(feature = "system-allocator"))]
    #[test]
    fn the_heap_gauges_follow_what_jemalloc_holds() {
        use std::alloc::{GlobalAlloc, Layout};
        let layout = Layout::from_size_align(8 << 20, 64).unwrap();
        let before = HeapStats::read().unwrap();
        // SAFETY: a non-zero layout; the block is written, read back and
        // freed with the same allocator and layout.
        unsafe {
            let p = tikv_jemallocator::Jemalloc.alloc(layout);
            assert!(!p.is_null());
            std::ptr::write_bytes(p, 1, layout.size());
            let during = HeapStats::read().unwrap();
            assert!(
                during.allocated >= before.allocated + layout.size() as u64,
                "{before:?} → {during:?}"
            );
            assert!(
                during.resident >= during.allocated,
                "touched pages are resident: {during:?}"
            );
            tikv_jemallocator::Jemalloc.dealloc(p, layout);
        }
        let after = HeapStats::read().unwrap();
        assert!(
            after.allocated < before.allocated + layout.size() as u64,
            "freed: {after:?}"
        );
    }
}
