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
/// stdout/stderr appended to `log`, and records it in `DIR/pids`.
pub fn spawn_detached(dir: &Path, name: &str, program: &Path, args: &[String], log: &Path) -> Result<Child> {
    let out = fs::File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
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
    let mut pids = fs::read_to_string(dir.join(PIDS)).unwrap_or_default();
    pids.push_str(&format!("{name} {}\n", child.id()));
    fs::write(dir.join(PIDS), pids)?;
    Ok(child)
}

/// Stops every process listed in `DIR/pids`, last started first (the API
/// server before its etcd), with SIGTERM and, after `grace`, SIGKILL. A
/// missing pids file means nothing is running, so `down` is idempotent.
pub fn stop_all(dir: &Path, grace: Duration) -> Result<()> {
    let pids_path = dir.join(PIDS);
    let Ok(pids) = fs::read_to_string(&pids_path) else {
        return Ok(());
    };
    let mut entries: Vec<(String, i32)> = pids
        .lines()
        .filter_map(|l| {
            let (name, pid) = l.split_once(' ')?;
            Some((name.to_string(), pid.trim().parse().ok()?))
        })
        .collect();
    entries.reverse();
    for (name, pid) in &entries {
        stop(name, *pid, grace)?;
    }
    fs::remove_file(&pids_path)?;
    // A stopped process stays a zombie until its new parent (init) reaps it;
    // give a slow reaper a moment so `pgrep` right after `down` is clean.
    // Best effort: a zombie holds no port, file or memory.
    let deadline = Instant::now() + Duration::from_secs(5);
    while entries
        .iter()
        .any(|(_, pid)| Path::new(&format!("/proc/{pid}")).exists())
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn stop(name: &str, pid: i32, grace: Duration) -> Result<()> {
    if !is_ours(name, pid) {
        return Ok(());
    }
    let started = Instant::now();
    signal(pid, libc::SIGTERM);
    if wait_gone(name, pid, grace) {
        eprintln!("stopped {name} (pid {pid}) in {:.1} s", started.elapsed().as_secs_f64());
        return Ok(());
    }
    eprintln!(
        "{name} (pid {pid}) ignored SIGTERM for {} s; sending SIGKILL",
        grace.as_secs()
    );
    signal(pid, libc::SIGKILL);
    if wait_gone(name, pid, Duration::from_secs(10)) {
        Ok(())
    } else {
        Err(format!("{name} (pid {pid}) survived SIGKILL").into())
    }
}

/// Signals the whole process group (the child is its session and group
/// leader, so helpers it may have forked go too), then the process itself in
/// case it was not a group leader.
fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(-pid, sig);
        libc::kill(pid, sig);
    }
}

fn wait_gone(name: &str, pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !is_ours(name, pid) {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    !is_ours(name, pid)
}

/// Whether `pid` is still a live (not zombie) process running the binary
/// `name`. Checking the command guards against signalling an unrelated
/// process that reused the PID after a reboot or a crash; zombies count as
/// gone because once `up` has exited they are not our children to reap.
pub fn is_ours(name: &str, pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state letter follows the parenthesised command name, which itself
    // may contain spaces and parentheses.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z") | Some("X") | None) {
        return false;
    }
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    Path::new(std::str::from_utf8(argv0).unwrap_or_default())
        .file_name()
        .is_some_and(|f| f == name)
}

/// Whether any process recorded in `DIR/pids` is still running.
pub fn any_running(dir: &Path) -> bool {
    fs::read_to_string(dir.join(PIDS))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .any(|(name, pid)| pid.trim().parse().is_ok_and(|pid| is_ours(name, pid)))
}
