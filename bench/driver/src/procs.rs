//! Child processes the driver owns, and what `/proc` says about any process
//! (CPU time, resident memory).
//!
//! Every process the driver starts is a [`Child`]: stopped when dropped (also
//! while an error or a Ctrl-C unwinds the run), and started with
//! `PR_SET_PDEATHSIG` so it dies even if the driver itself is killed.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::Result;

/// A subprocess with stdout and stderr in a log file.
pub struct Child {
    name: String,
    child: std::process::Child,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl Child {
    /// Spawns `cmd` with stdin from /dev/null and output appended to `log`,
    /// as the leader of a process group of its own, so that [`Child::stop`]
    /// also ends what a wrapper in the command (`strace`, `perf record`)
    /// started.
    ///
    /// PDEATHSIG fires when the *spawning thread* exits, so this must be
    /// called from a thread that lives as long as the run: a tokio worker
    /// (async code), never a `spawn_blocking` thread.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Child> {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("opening {}: {e}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no parent memory.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| format!("starting {name} ({cmd:?}): {e}"))?;
        Ok(Child {
            name: name.to_owned(),
            child,
            log: log.to_path_buf(),
            status: None,
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The exit status, if the process has exited (without waiting).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// An error naming the process and its log tail if it has exited: a
    /// benchmark of a crashed operator must fail, not report numbers.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.exited() {
            None => Ok(()),
            Some(status) => Err(format!(
                "{} exited unexpectedly ({status}); last lines of {}:\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log, 20)
            )
            .into()),
        }
    }

    /// SIGTERM to the process group, then SIGKILL to it after `grace`;
    /// reaps the process.
    pub fn stop(&mut self, grace: Duration) {
        if self.exited().is_some() {
            return;
        }
        let group = -self.pid();
        // SAFETY: kill(2) has no memory-safety preconditions; the group's
        // leader is our unreaped child, so its ID cannot have been reused.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                // What a wrapper started got the same SIGTERM.
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above; the leader is still unreaped.
        unsafe { libc::kill(group, libc::SIGKILL) };
        self.status = self.child.wait().ok();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// The last `n` lines of a log file (for error messages).
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// What `/proc/PID/stat` and `/proc/PID/status` say about a process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcSample {
    /// User + system CPU time, seconds.
    pub cpu_s: f64,
    /// Resident set size, bytes (VmRSS).
    pub rss: u64,
    /// Peak resident set size, bytes (VmHWM).
    pub hwm: u64,
}

/// Clock ticks per second of the CPU times in /proc (normally 100).
fn clk_tck() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// A sample of `pid`, or `None` when the process is gone.
pub fn sample(pid: i32) -> Option<ProcSample> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse(&stat, &status)
}

/// Parses the two files (split out for tests). The command name in `stat`
/// is parenthesised and may itself contain spaces and parentheses, so the
/// fields are counted from the last `)`.
fn parse(stat: &str, status: &str) -> Option<ProcSample> {
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After ")": state is field 3 of stat(5), so utime (14) and stime (15)
    // are at indexes 11 and 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Some(ProcSample {
        cpu_s: (utime + stime) / clk_tck(),
        rss: kib("VmRSS:"),
        hwm: kib("VmHWM:"),
    })
}

/// Busy and total CPU time of the whole machine (all processes, other
/// engineers' included), seconds, from the first line of /proc/stat.
pub fn machine_cpu() -> Option<(f64, f64)> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<f64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest is in user)
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    let tck = clk_tck();
    Some(((total - idle) / tck, total / tck))
}

/// Number of CPUs online.
pub fn cpus() -> usize {
    thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `pid` is gone (or a zombie nobody reaped yet).
    fn gone(pid: i32) -> bool {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
        }
    }

    /// A wrapper that forks (as `strace` or `perf record` around the
    /// operator do) must not leave its child running after the stop.
    #[test]
    fn stop_ends_what_a_forking_wrapper_started() {
        let dir = std::env::temp_dir().join(format!("dts-bench-procs-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let log = dir.join("wrapper.log");
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("sleep 300 & echo $!; wait");
        let mut child = Child::spawn("wrapper", cmd, &log).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let grandchild = loop {
            if let Ok(pid) = fs::read_to_string(&log).unwrap_or_default().trim().parse::<i32>() {
                break pid;
            }
            assert!(Instant::now() < deadline, "the wrapper never printed its child's PID");
            thread::sleep(Duration::from_millis(10));
        };
        assert!(!gone(grandchild), "the wrapper's child runs before the stop");
        child.stop(Duration::from_secs(5));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !gone(grandchild) {
            assert!(
                Instant::now() < deadline,
                "the wrapper's child {grandchild} outlived the stop"
            );
            thread::sleep(Duration::from_millis(20));
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parses_stat_with_a_strange_command_name() {
        let stat = "4242 (dts (op) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 1234 0 0";
        let status = "Name:\tdts\nVmHWM:\t  20480 kB\nVmRSS:\t  10240 kB\n";
        let s = parse(stat, status).unwrap();
        assert!((s.cpu_s - 300.0 / clk_tck()).abs() < 1e-9);
        assert_eq!(s.rss, 10240 * 1024);
        assert_eq!(s.hwm, 20480 * 1024);
    }

    #[test]
    fn this_process_has_a_sample() {
        let s = sample(std::process::id() as i32).unwrap();
        assert!(s.rss > 0 && s.hwm >= s.rss);
    }
}
