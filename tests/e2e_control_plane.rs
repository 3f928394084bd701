//! End to end: control-plane faults in the middle of a burst of stops, on a
//! real kube-apiserver and etcd. The invariant of every scenario: for every
//! stop intent, exactly one StopDtsJob reaches DTS per direction (none
//! duplicated, none lost: the emulator's journal), and every DtsJob's status
//! ends `Stopped`.
//!
//! The restart and pause scenarios break the control plane, so each starts
//! its own (`testcluster up` in a temporary directory, `down` on drop, also
//! on panic) instead of using the shared one of `make test`.
//!
//! Sizes: 100 jobs and a 10 s pause under `make test`; 500 jobs and 20 s with
//! `RELIABILITY_FULL=1` (`make reliability`). The figures (recovery times,
//! counts) are printed, not asserted; see docs/reliability.md.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dts_operator::crd::{DirectionState, DtsJob, Phase};
use futures::StreamExt;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};
use support::stack::{account, job, Emulator, Operator, OperatorOptions, ACCESS_KEY_ID, ACCESS_KEY_SECRET};
use support::{wait_for, TestNamespace};

/// Full sizes (`make reliability`) or the quick ones of `make test`.
fn full() -> bool {
    std::env::var("RELIABILITY_FULL").is_ok_and(|v| v == "1")
}

fn burst_size() -> usize {
    if full() {
        500
    } else {
        100
    }
}

fn pause_length() -> Duration {
    Duration::from_secs(if full() { 20 } else { 10 })
}

/// The `testcluster` binary next to this test's target directory (built by
/// scripts/test-e2e-env.sh), as tests/support finds the emulator.
fn testcluster_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("DTS_TESTCLUSTER_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join("testcluster");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p testcluster` (scripts/test-e2e-env.sh does)",
        path.display()
    );
    path
}

/// A control plane of this test alone, stopped (`testcluster down`) on drop.
struct OwnCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl OwnCluster {
    fn up() -> OwnCluster {
        let dir = tempfile::Builder::new().prefix("dts-cpfaults.").tempdir().expect("temp dir");
        let bin = testcluster_bin();
        let cluster = OwnCluster { dir, bin };
        let mut cmd = Command::new(&cluster.bin);
        cmd.arg("up").arg("--dir").arg(cluster.dir.path());
        if let Some(bin_dir) = std::env::var_os("DTS_TEST_BIN_DIR") {
            cmd.arg("--bin-dir").arg(bin_dir);
        }
        let out = cmd.output().expect("running testcluster up");
        assert!(
            out.status.success(),
            "testcluster up failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// Runs `testcluster ARGS --dir DIR` to completion (off the async
    /// runtime) and returns how long it took and its stdout.
    async fn run(&self, args: &[&str]) -> (Duration, String) {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(args).arg("--dir").arg(self.dir.path());
        let started = Instant::now();
        let out = cmd.output().await.expect("running testcluster");
        let took = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "testcluster {args:?} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (took, stdout)
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let status = Command::new(&self.bin)
            .arg("down")
            .arg("--dir")
            .arg(self.dir.path())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!(
                "testcluster down --dir {} failed ({status:?}); stop it by hand",
                self.dir.path().display()
            );
        }
    }
}

/// The fault a burst scenario injects once a third of the stops reached DTS.
#[derive(Clone, Copy, Debug)]
enum Fault {
    RestartApiserver,
    RestartEtcd,
    PauseApiserver(Duration),
}

/// Job `i` of a burst: every other one two-way.
fn burst_job(i: usize) -> (String, String, bool) {
    (format!("burst-{i:04}"), format!("cpBurst{i:04}"), i % 2 == 0)
}

fn directions(two_way: bool) -> &'static [&'static str] {
    if two_way {
        &["Forward", "Reverse"]
    } else {
        &["Forward"]
    }
}

fn dtsjob(name: &str, job_id: &str, two_way: bool, desired: &str) -> DtsJob {
    support::dtsjob_object(
        name,
        json!({ "jobId": job_id, "regionId": "cn-hangzhou", "directions": directions(two_way), "desiredState": desired }),
    )
}

/// Whether the status describes the current generation in `phase`.
fn at_phase(job: &DtsJob, phase: Phase) -> bool {
    job.status
        .as_ref()
        .is_some_and(|s| s.observed_generation == job.metadata.generation && s.phase == Some(phase))
}

/// How many DtsJobs satisfy `pred`, or `None` while the API server does not
/// answer (the faults make it unavailable for a while).
async fn count_jobs(api: &Api<DtsJob>, pred: impl Fn(&DtsJob) -> bool) -> Option<usize> {
    let list = tokio::time::timeout(Duration::from_secs(5), api.list(&ListParams::default()))
        .await
        .ok()?
        .ok()?;
    Some(list.items.iter().filter(|j| pred(j)).count())
}

/// StopDtsJob calls per (jobId, direction) in the journal.
async fn stops_by_direction(emu: &Emulator) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for e in emu.calls("StopDtsJob").await {
        let id = e["params"]["DtsJobId"].as_str().unwrap_or_default().to_string();
        let dir = e["params"]["SynchronizationDirection"]
            .as_str()
            .unwrap_or("Forward")
            .to_string();
        *out.entry((id, dir)).or_insert(0) += 1;
    }
    out
}

/// Duplicated and lost stops against the expected one per direction of
/// every job in `0..n`, plus calls for directions nobody asked to stop.
fn tally(n: usize, stops: &BTreeMap<(String, String), usize>) -> (usize, usize, usize) {
    let (mut duplicates, mut lost, mut expected) = (0, 0, 0);
    for i in 0..n {
        let (_, id, two_way) = burst_job(i);
        for d in directions(two_way) {
            expected += 1;
            match stops.get(&(id.clone(), d.to_string())).copied().unwrap_or(0) {
                0 => lost += 1,
                c => duplicates += c - 1,
            }
        }
    }
    let unexpected = stops.values().sum::<usize>() - (expected - lost) - duplicates;
    (duplicates, lost, unexpected)
}

/// Sets `desiredState: Stopped` on every job as fast as the API server
/// takes it, retrying a job until its patch is accepted (the fault may hit
/// while the flips are still going out, as for a GitOps sync).
async fn flip_all(api: Api<DtsJob>, n: usize) {
    futures::stream::iter(0..n)
        .for_each_concurrent(16, |i| {
            let api = api.clone();
            async move {
                let (name, _, _) = burst_job(i);
                let patch = Patch::Merge(json!({"spec": {"desiredState": "Stopped"}}));
                let deadline = Instant::now() + Duration::from_secs(300);
                while let Err(e) = api.patch(&name, &PatchParams::default(), &patch).await {
                    assert!(Instant::now() < deadline, "flipping {name}: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        })
        .await;
}

/// One scenario at a time: each runs its own control plane and hundreds of
/// DtsJobs, and the figures mean more without the others competing for CPU.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A burst of stops with `fault` injected when a third of them are in the
/// journal; asserts the invariant and prints the figures.
async fn burst_with_fault(test: &str, fault: Fault) {
    let _serial = SERIAL.lock().await;
    let n = burst_size();
    let expected_stops: usize = (0..n).map(|i| directions(burst_job(i).2).len()).sum();
    let cluster = OwnCluster::up();
    let ns = TestNamespace::new_at(test, &cluster.kubeconfig()).await;
    let jobs: Vec<Value> = (0..n)
        .map(|i| {
            let (_, id, two_way) = burst_job(i);
            job(&id, None, two_way)
        })
        .collect();
    let emu = Emulator::start(&ns, "emulator", json!({"accounts": [account()], "jobs": jobs})).await;
    let api = ns.api::<DtsJob>();
    futures::stream::iter(0..n)
        .for_each_concurrent(16, |i| {
            let api = api.clone();
            async move {
                let (name, id, two_way) = burst_job(i);
                api.create(&PostParams::default(), &dtsjob(&name, &id, two_way, "Running"))
                    .await
                    .unwrap_or_else(|e| panic!("creating {name}: {e}"));
            }
        })
        .await;
    let _op = Operator::start(
        &ns,
        "operator",
        &emu.url,
        OperatorOptions {
            env: vec![
                ("KUBECONFIG".into(), cluster.kubeconfig().display().to_string()),
                ("ALIBABA_CLOUD_ACCESS_KEY_ID".into(), ACCESS_KEY_ID.into()),
                ("ALIBABA_CLOUD_ACCESS_KEY_SECRET".into(), ACCESS_KEY_SECRET.into()),
            ],
            ..Default::default()
        },
    );
    wait_for(
        "every DtsJob observed Running",
        Duration::from_secs(300),
        Duration::from_millis(500),
        || async { (count_jobs(&api, |j| at_phase(j, Phase::Running)).await? == n).then_some(()) },
    )
    .await;
    assert!(emu.calls("StopDtsJob").await.is_empty(), "no stop before the flip");

    let burst_started = Instant::now();
    let flips = tokio::spawn(flip_all(api.clone(), n));
    let third = expected_stops / 3;
    wait_for(
        "a third of the stops in the journal",
        Duration::from_secs(300),
        Duration::from_millis(50),
        || async { (emu.calls("StopDtsJob").await.len() >= third).then_some(()) },
    )
    .await;
    let at_fault = emu.calls("StopDtsJob").await.len();
    let fault_at = Instant::now();
    let (ready_after, recovered_from) = match fault {
        Fault::RestartApiserver => {
            let (took, out) = cluster.run(&["restart", "--component", "kube-apiserver"]).await;
            eprintln!("{}", out.trim());
            (took, fault_at)
        }
        Fault::RestartEtcd => {
            let (took, out) = cluster.run(&["restart", "--component", "etcd"]).await;
            eprintln!("{}", out.trim());
            (took, fault_at)
        }
        Fault::PauseApiserver(length) => {
            cluster.run(&["pause", "--component", "kube-apiserver"]).await;
            tokio::time::sleep(length).await;
            let during = emu.calls("StopDtsJob").await.len();
            eprintln!("stops in the journal at SIGSTOP: {at_fault}, at SIGCONT: {during}");
            cluster.run(&["resume", "--component", "kube-apiserver"]).await;
            let resumed = Instant::now();
            let ready = wait_for(
                "the API server to answer after SIGCONT",
                Duration::from_secs(60),
                Duration::from_millis(50),
                || async { count_jobs(&api, |_| true).await.map(|_| resumed.elapsed()) },
            )
            .await;
            (ready, resumed)
        }
    };
    let timeout = Duration::from_secs(if full() { 600 } else { 300 });
    wait_for(
        "every DtsJob Stopped",
        timeout,
        Duration::from_millis(250),
        || async { (count_jobs(&api, |j| at_phase(j, Phase::Stopped)).await? == n).then_some(()) },
    )
    .await;
    let last_stopped = recovered_from.elapsed();
    let burst_took = burst_started.elapsed();
    flips.await.expect("the flips finished");

    // Every job is Stopped: a settle window in which nothing may be sent again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stops = stops_by_direction(&emu).await;
    let (duplicates, lost, unexpected) = tally(n, &stops);
    let list = api.list(&ListParams::default()).await.expect("listing DtsJobs");
    let not_stopped: Vec<String> = list
        .items
        .iter()
        .filter(|j| {
            !at_phase(j, Phase::Stopped)
                || j.status
                    .as_ref()
                    .is_none_or(|s| s.directions.iter().any(|d| d.state != DirectionState::Stopped))
        })
        .map(|j| j.metadata.name.clone().unwrap_or_default())
        .collect();
    eprintln!(
        "control-plane fault {fault:?}: {n} DtsJobs, {expected_stops} stops attempted, {at_fault} in the journal at the fault; \
         duplicates {duplicates}, lost {lost}, unexpected {unexpected}; API server ready {:.2} s after the fault{}; \
         last job Stopped {:.2} s after it; whole burst {:.2} s",
        ready_after.as_secs_f64(),
        if matches!(fault, Fault::PauseApiserver(_)) { " (from SIGCONT)" } else { "" },
        last_stopped.as_secs_f64(),
        burst_took.as_secs_f64(),
    );
    assert!(at_fault < expected_stops, "the fault hit after the burst was over");
    assert_eq!((duplicates, lost, unexpected), (0, 0, 0), "stops per direction: {stops:?}");
    assert!(not_stopped.is_empty(), "not Stopped: {not_stopped:?}");
}

#[tokio::test]
async fn apiserver_restart_mid_burst_loses_and_duplicates_no_stop() {
    burst_with_fault("cp-apiserver-restart", Fault::RestartApiserver).await;
}

#[tokio::test]
async fn etcd_restart_mid_burst_loses_and_duplicates_no_stop() {
    burst_with_fault("cp-etcd-restart", Fault::RestartEtcd).await;
}

#[tokio::test]
async fn apiserver_sigstop_mid_burst_loses_and_duplicates_no_stop() {
    burst_with_fault("cp-apiserver-sigstop", Fault::PauseApiserver(pause_length())).await;
}
