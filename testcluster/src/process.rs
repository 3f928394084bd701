//! Starting the control-plane processes detached, and stopping them again by
//! the PIDs recorded in `DIR/pids`.
//!
//! `up` exits while etcd and kube-apiserver keep running, so the processes are
//! put in their own session: a Ctrl-C in the terminal (or in `make test`)
//! reaches only the foreground process group, and the cluster is stopped
//! deliberately by `down` (the e2e wrapper script does that from a trap).

use std::{
    fs,
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::Result;

pub const PIDS: &str = "pids";

/// Spawns `program` in a new session with stdin from /dev/null and
/// stdout/stderr written to `log` (truncated), and records it in `DIR/pids`
/// and its command line in `DIR/NAME.cmd` (for [`restart`]).
pub fn spawn_detached(dir: &Path, name: &str, program: &Path, args: &[String], log: &Path) -> Result<Child> {
    let mut cmdline = vec![program.display().to_string()];
    cmdline.extend(args.iter().cloned());
    if cmdline.iter().any(|a| a.contains('\n')) {
        return Err(format!("an argument of {name} contains a newline").into());
    }
    fs::write(cmd_file(dir, name), cmdline.join("\n") + "\n")?;
    let out = fs::File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
    spawn(dir, name, program, args, out)
}

fn cmd_file(dir: &Path, name: &str) -> std::path::PathBuf {
    dir.join(format!("{name}.cmd"))
}

fn spawn(dir: &Path, name: &str, program: &Path, args: &[String], out: fs::File) -> Result<Child> {
    let err = out.try_clone()?;
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent,
    // which is all a pre_exec hook may do between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("starting {}: {e}", program.display()))?;
    let pid = child.id() as i32;
    let start = start_time(pid).ok_or_else(|| format!("{name} (pid {pid}) vanished right after start"))?;
    let mut pids = fs::read_to_string(dir.join(PIDS)).unwrap_or_default();
    pids.push_str(&format!("{name} {pid} {start}\n"));
    fs::write(dir.join(PIDS), pids)?;
    Ok(child)
}

/// A process recorded in `DIR/pids`: the PID plus its start time, which
/// together identify it even if the PID is later reused by another process.
struct Recorded {
    name: String,
    pid: i32,
    start: u64,
}

fn recorded(dir: &Path) -> Vec<Recorded> {
    fs::read_to_string(dir.join(PIDS))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some(Recorded {
                name: f.next()?.to_string(),
                pid: f.next()?.parse().ok()?,
                start: f.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// Stops every process listed in `DIR/pids`, last started first (the API
/// server before its etcd), with SIGTERM and, after `grace`, SIGKILL. A
/// missing pids file means nothing is running, so `down` is idempotent.
pub fn stop_all(dir: &Path, grace: Duration) -> Result<()> {
    let mut entries = recorded(dir);
    entries.reverse();
    for p in &entries {
        stop(p, grace)?;
    }
    match fs::remove_file(dir.join(PIDS)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Waits (best effort, up to 5 s) until the stopped processes are reaped by
/// their new parent (init), so that `pgrep` right after `down` is clean; a
/// zombie holds no port, file or memory, so this is only cosmetic.
pub fn wait_reaped(pids: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|pid| Path::new(&format!("/proc/{pid}")).exists()) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
}

/// PIDs recorded in `DIR/pids` (for [`wait_reaped`] after [`stop_all`]).
pub fn recorded_pids(dir: &Path) -> Vec<i32> {
    recorded(dir).iter().map(|p| p.pid).collect()
}

fn stop(p: &Recorded, grace: Duration) -> Result<()> {
    let Recorded { name, pid, .. } = p;
    if !alive(p) {
        return Ok(());
    }
    let started = Instant::now();
    signal(*pid, libc::SIGTERM);
    if !wait_gone(p, grace) {
        eprintln!(
            "{name} (pid {pid}) ignored SIGTERM for {} s; sending SIGKILL",
            grace.as_secs()
        );
        signal(*pid, libc::SIGKILL);
        if !wait_gone(p, Duration::from_secs(10)) {
            return Err(format!("{name} (pid {pid}) survived SIGKILL").into());
        }
    }
    // Anything the process left in its group (a wrapper's child, say) goes
    // too. The kernel does not reuse a PID while it names a live process
    // group, so this reaches only stragglers of ours.
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(-*pid, libc::SIGKILL) };
    eprintln!("stopped {name} (pid {pid}) in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Signals the process group first (the child leads its own session and
/// group), then the process itself in case it is no longer the leader.
fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(-pid, sig);
        libc::kill(pid, sig);
    }
}

fn wait_gone(p: &Recorded, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !alive(p) {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    !alive(p)
}

/// Whether the recorded process still runs: same PID *and* same start time,
/// so an unrelated process that reused the PID is never signalled. Zombies
/// count as gone: once `up` has exited they are not ours to reap.
fn alive(p: &Recorded) -> bool {
    stat_fields(p.pid).is_some_and(|f| !matches!(f[0].as_str(), "Z" | "X") && f[19].parse() == Ok(p.start))
}

/// The process start time (clock ticks since boot, field 22 of
/// /proc/PID/stat).
fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid)?[19].parse().ok()
}

/// Fields 3.. of /proc/PID/stat (state first). They follow the parenthesised
/// command name, which may itself contain spaces and parentheses.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<String> = stat.rsplit_once(')')?.1.split_whitespace().map(String::from).collect();
    (fields.len() > 19).then_some(fields)
}

/// Stops the recorded process `name` (SIGTERM, SIGKILL after `grace`) and
/// starts it again with the command line `up` recorded (same ports, data
/// directory and certificates, so clients reconnect to the same addresses),
/// its output appended to `log`. A stopped (SIGSTOPped) process is continued
/// first so that it can act on SIGTERM.
pub fn restart(dir: &Path, name: &str, log: &Path, grace: Duration) -> Result<Child> {
    let text = fs::read_to_string(cmd_file(dir, name))
        .map_err(|e| format!("no recorded command line for {name} in {}: {e}", dir.display()))?;
    let mut cmdline = text.lines().map(String::from);
    let program = cmdline
        .next()
        .ok_or_else(|| format!("{} is empty", cmd_file(dir, name).display()))?;
    let args: Vec<String> = cmdline.collect();
    let p = running(dir, name)?;
    signal(p.pid, libc::SIGCONT);
    stop(&p, grace)?;
    let before = fs::read_to_string(dir.join(PIDS))?;
    let slot = before.lines().position(|l| l.split_whitespace().next() == Some(name));
    let kept: Vec<&str> = before
        .lines()
        .filter(|l| l.split_whitespace().next() != Some(name))
        .collect();
    fs::write(
        dir.join(PIDS),
        kept.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )?;
    let mut out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("opening {}: {e}", log.display()))?;
    use std::io::Write;
    writeln!(out, "===== testcluster: restarting {name} =====")?;
    let child = spawn(dir, name, Path::new(&program), &args, out)?;
    // Back in its old place, so `down` still stops the API server before etcd.
    let mut lines: Vec<String> = fs::read_to_string(dir.join(PIDS))?.lines().map(String::from).collect();
    if let (Some(slot), Some(new)) = (slot, lines.pop()) {
        lines.insert(slot.min(lines.len()), new);
    }
    fs::write(
        dir.join(PIDS),
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )?;
    Ok(child)
}

/// Sends SIGSTOP (`pause: true`) or SIGCONT to the recorded process `name`:
/// a process that is alive but answers nothing, as under a long GC pause,
/// CPU starvation or a network partition of that one process.
pub fn pause(dir: &Path, name: &str, pause: bool) -> Result<i32> {
    let p = running(dir, name)?;
    signal(p.pid, if pause { libc::SIGSTOP } else { libc::SIGCONT });
    Ok(p.pid)
}

/// Whether the recorded process `name` is stopped by a signal (state `T`).
#[cfg(test)]
pub fn is_paused(dir: &Path, name: &str) -> Result<bool> {
    let p = running(dir, name)?;
    Ok(stat_fields(p.pid).is_some_and(|f| f[0] == "T"))
}

/// The recorded, still running process `name`.
fn running(dir: &Path, name: &str) -> Result<Recorded> {
    recorded(dir)
        .into_iter()
        .rev()
        .find(|p| p.name == name)
        .filter(alive)
        .ok_or_else(|| {
            format!(
                "{name} is not running from {} (start it with `testcluster up`)",
                dir.display()
            )
            .into()
        })
}

/// Whether any process recorded in `DIR/pids` is still running.
pub fn any_running(dir: &Path) -> bool {
    recorded(dir).iter().any(alive)
}
