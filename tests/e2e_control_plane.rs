//! End to end: control-plane faults in the middle of a burst of stops, on a
//! real kube-apiserver and etcd. The invariant of every scenario: for every
//! stop intent, exactly one StopDtsJob reaches DTS per direction (none
//! duplicated, none lost: the emulator's journal), and every DtsJob's status
//! ends `Stopped`.
//!
//! The restart and pause scenarios break the control plane, so each starts
//! its own (`testcluster up` in a temporary directory, `down` on drop, also
//! on panic) instead of using the shared one of `make test`. The leader
//! partition (a SIGSTOPped leader replica), the 429s of API Priority and
//! Fairness and the 500s of a fault-injecting proxy use the shared one.
//!
//! Sizes: 100 jobs and a 10 s pause under `make test`; 500 jobs and 20 s with
//! `RELIABILITY_FULL=1` (`make reliability`). The figures (recovery times,
//! counts) are printed, not asserted; see docs/reliability.md.

mod support;

#[path = "e2e_control_plane/apf.rs"]
mod apf;
#[path = "e2e_control_plane/fault_proxy.rs"]
mod fault_proxy;
#[path = "e2e_control_plane/own_cluster.rs"]
mod own_cluster;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dts_operator::crd::{DirectionState, DtsJob, Phase};
use futures::{StreamExt, TryStreamExt};
use kube::api::{ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::Api;
use serde_json::{json, Value};
use support::stack::{
    account, job, journal_time_ms, lease_holder, now_ms, Emulator, LeaseTiming, Operator, OperatorOptions,
};
use support::stack::{default_credentials_env as default_credentials, start_replica, REPLICA_LEASE as LEASE_NAME};
use support::{wait_for, TestNamespace};

use apf::{apf_rejected, apf_seats, throttle_status_writes};
use fault_proxy::{proxied_kubeconfig, start_fault_proxy};
use own_cluster::OwnCluster;

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

/// The fault a burst scenario injects once a third of the stops reached DTS.
#[derive(Clone, Copy, Debug)]
enum Fault {
    RestartApiserver,
    RestartEtcd,
    PauseApiserver(Duration),
}

/// Job `i` of a burst: every other one two-way.
fn burst_job(i: usize) -> (String, String, bool) {
    (format!("burst-{i:04}"), format!("cpBurst{i:04}"), i.is_multiple_of(2))
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

/// The DtsJobs whose status is not `Stopped` with every direction `Stopped`.
async fn not_stopped(api: &Api<DtsJob>) -> Vec<String> {
    let list = api.list(&ListParams::default()).await.expect("listing DtsJobs");
    list.items
        .iter()
        .filter(|j| {
            !at_phase(j, Phase::Stopped)
                || j.status
                    .as_ref()
                    .is_none_or(|s| s.directions.iter().any(|d| d.state != DirectionState::Stopped))
        })
        .map(|j| j.metadata.name.clone().unwrap_or_default())
        .collect()
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
    let emu = Emulator::start(
        &ns,
        "emulator",
        json!({"accounts": [account()], "jobs": burst_emulator_jobs(n)}),
    )
    .await;
    let mut env = default_credentials();
    env.push(("KUBECONFIG".into(), cluster.kubeconfig().display().to_string()));
    let _op = Operator::start(
        &ns,
        "operator",
        &emu.url,
        OperatorOptions {
            env,
            ..Default::default()
        },
    );
    let api = ns.api::<DtsJob>();
    create_running(&api, n).await;
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
    wait_for("every DtsJob Stopped", timeout, Duration::from_millis(250), || async {
        (count_jobs(&api, |j| at_phase(j, Phase::Stopped)).await? == n).then_some(())
    })
    .await;
    let last_stopped = recovered_from.elapsed();
    let burst_took = burst_started.elapsed();
    flips.await.expect("the flips finished");

    // Every job is Stopped: a settle window in which nothing may be sent again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stops = stops_by_direction(&emu).await;
    let (duplicates, lost, unexpected) = tally(n, &stops);
    let not_stopped = not_stopped(&api).await;
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
    assert_eq!(
        (duplicates, lost, unexpected),
        (0, 0, 0),
        "stops per direction: {stops:?}"
    );
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

// ----- Leader partition (shared control plane) -----

/// The operator of the status-write scenarios, talking to the API server
/// through `kubeconfig` (a throttled user, a fault proxy). DTS is not the
/// bottleneck there (its limits are lifted): the status writes are.
fn start_with_kubeconfig(ns: &TestNamespace, emu: &Emulator, kubeconfig: &Path) -> Operator {
    let mut env = default_credentials();
    env.push(("KUBECONFIG".into(), kubeconfig.display().to_string()));
    Operator::start(
        ns,
        "operator",
        &emu.url,
        OperatorOptions {
            extra_args: ["--dts-rate-limit", "1000", "--dts-max-concurrency", "64"]
                .map(String::from)
                .to_vec(),
            env,
            namespace_scoped: true,
        },
    )
}

async fn wait_log(op: &Operator, what: &str, needle: &str, timeout: Duration) {
    wait_for(what, timeout, Duration::from_millis(100), || async {
        op.process.log().contains(needle).then_some(())
    })
    .await
}

/// Sends `sig` to an operator process (our unreaped child, so its PID
/// cannot have been reused).
fn signal(op: &mut Operator, sig: libc::c_int) {
    assert!(op.process.try_status().is_none(), "the operator is still running");
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(op.process.id() as libc::pid_t, sig) };
}

/// Creates jobs `0..n` of a burst with `desiredState: Running` and waits
/// until the operator reports every one Running.
async fn create_running(api: &Api<DtsJob>, n: usize) {
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
    wait_for(
        "every DtsJob observed Running",
        Duration::from_secs(300),
        Duration::from_millis(500),
        || async { (count_jobs(api, |j| at_phase(j, Phase::Running)).await? == n).then_some(()) },
    )
    .await;
}

/// The emulator's job entries for jobs `0..n` of a burst.
fn burst_emulator_jobs(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let (_, id, two_way) = burst_job(i);
            job(&id, None, two_way)
        })
        .collect()
}

/// A leader that is partitioned (SIGSTOP: alive, holding its connections,
/// silent) loses the Lease to the standby, which stops the jobs flipped in
/// the meantime. When the old leader comes back (SIGCONT) it notices it lost
/// the Lease and makes no DTS call and no DtsJob write: its lease gate is
/// closed the moment its renew deadline passed, even before its renew loop
/// runs again.
#[tokio::test]
async fn a_partitioned_leader_makes_no_dts_call_and_no_write_after_sigcont() {
    let _serial = SERIAL.lock().await;
    let n = 20;
    let timing = LeaseTiming {
        lease_duration: Duration::from_secs(4),
        renew_deadline: Duration::from_secs(3),
        retry_period: Duration::from_millis(500),
    };
    let ns = TestNamespace::new("cp-leader-partition").await;
    let emu = Emulator::start(
        &ns,
        "emulator",
        json!({"accounts": [account()], "jobs": burst_emulator_jobs(n)}),
    )
    .await;
    let mut a = start_replica(&ns, &emu, "replica-a", &timing);
    wait_log(&a, "replica-a to lead", "became leader", Duration::from_secs(60)).await;
    let b = start_replica(&ns, &emu, "replica-b", &timing);
    wait_for(
        "the standby's /readyz to answer 200",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async { (b.readyz().await == Some(200)).then_some(()) },
    )
    .await;
    let api = ns.api::<DtsJob>();
    create_running(&api, n).await;
    let a_calls = a.metric("dts_operator_dts_calls_total", &[]).await;
    assert!(
        a.metric("dts_operator_reconciles_total", &[]).await >= n as f64,
        "the leader reconciled every job"
    );
    assert_eq!(b.metric("dts_operator_reconciles_total", &[]).await, 0.0);
    assert_eq!(b.metric("dts_operator_dts_calls_total", &[]).await, 0.0);

    let a_reconciles = a.metric("dts_operator_reconciles_total", &[]).await;
    signal(&mut a, libc::SIGSTOP);
    let stopped_at = now_ms();
    flip_all(api.clone(), n).await;
    let bound = timing.lease_duration * 3 + Duration::from_secs(60);
    wait_for(
        "every DtsJob Stopped by the new leader",
        bound,
        Duration::from_millis(250),
        || async { (count_jobs(&api, |j| at_phase(j, Phase::Stopped)).await? == n).then_some(()) },
    )
    .await;
    assert_eq!(
        lease_holder(&ns.client, &ns.name, LEASE_NAME).await.as_deref(),
        Some("replica-b")
    );
    let stops = emu.calls("StopDtsJob").await;
    let first_stop = stops.iter().map(journal_time_ms).min().expect("stops were made");
    let takeover_ms = first_stop - stopped_at;
    let earliest = (timing.lease_duration - timing.retry_period).as_millis() as i64 - 200;
    assert!(
        takeover_ms >= earliest,
        "a stop {takeover_ms} ms after SIGSTOP, before the Lease could expire ({earliest} ms)"
    );
    let b_stops = b
        .metric("dts_operator_dts_calls_total", &[("action", "StopDtsJob")])
        .await;
    assert_eq!(b_stops as usize, stops.len(), "the new leader made every stop");

    // Let the new leader's last writes land, then record every DtsJob
    // write from here on.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let journal_before = emu.journal().await.len();
    let rv = api
        .list(&ListParams::default())
        .await
        .expect("listing DtsJobs")
        .metadata
        .resource_version
        .expect("a list resourceVersion");
    let writes = Arc::new(Mutex::new(Vec::<String>::new()));
    let watch = {
        let (api, writes) = (api.clone(), writes.clone());
        tokio::spawn(async move {
            let mut events = api.watch(&WatchParams::default(), &rv).await.expect("watch").boxed();
            while let Some(event) = events.try_next().await.expect("watch event") {
                match event {
                    WatchEvent::Added(j) | WatchEvent::Modified(j) | WatchEvent::Deleted(j) => {
                        let managers: Vec<String> = j
                            .metadata
                            .managed_fields
                            .unwrap_or_default()
                            .into_iter()
                            .filter_map(|m| Some(format!("{}@{}", m.manager?, m.time?.0)))
                            .collect();
                        writes.lock().unwrap().push(format!(
                            "{} rv {} at {} ms (managers {managers:?})",
                            j.metadata.name.unwrap_or_default(),
                            j.metadata.resource_version.unwrap_or_default(),
                            now_ms()
                        ));
                    }
                    WatchEvent::Bookmark(_) | WatchEvent::Error(_) => {}
                }
            }
        })
    };

    signal(&mut a, libc::SIGCONT);
    let resumed_at = now_ms();
    // Positive signal: the old leader ran again and knows it lost the Lease.
    wait_log(
        &a,
        "the old leader to log that it lost leadership",
        "lost leadership",
        Duration::from_secs(30),
    )
    .await;
    wait_for(
        "the old leader's leader gauge to be 0",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async { (a.metric("dts_operator_leader", &[]).await == 0.0).then_some(()) },
    )
    .await;
    let noticed_ms = now_ms() - resumed_at;
    // Settle window: anything the old leader still had queued would go out now.
    tokio::time::sleep(Duration::from_secs(5)).await;
    watch.abort();

    let journal = emu.journal().await;
    let after: Vec<&Value> = journal[journal_before..].iter().collect();
    let a_after = a.metric("dts_operator_dts_calls_total", &[]).await;
    let a_reconciles_after = a.metric("dts_operator_reconciles_total", &[]).await;
    let written = writes.lock().unwrap().clone();
    eprintln!(
        "leader partition: {n} DtsJobs flipped during the pause, {} stops; takeover {takeover_ms} ms after SIGSTOP \
         (earliest {earliest} ms); old leader noticed the lost Lease {noticed_ms} ms after SIGCONT; after SIGCONT: \
         {} DTS calls in the journal, old leader's DTS calls {} -> {} and reconciles {} -> {}, \
         {} DtsJob writes",
        stops.len(),
        after.len(),
        a_calls as u64,
        a_after as u64,
        a_reconciles as u64,
        a_reconciles_after as u64,
        written.len()
    );
    let (duplicates, lost, unexpected) = tally(n, &stops_by_direction(&emu).await);
    assert_eq!((duplicates, lost, unexpected), (0, 0, 0));
    let not_stopped = not_stopped(&api).await;
    assert!(not_stopped.is_empty(), "not Stopped: {not_stopped:?}");
    assert!(after.is_empty(), "DTS calls after SIGCONT: {after:?}");
    assert_eq!(a_after, a_calls, "the old leader made no DTS call after SIGSTOP");
    assert_eq!(
        a_reconciles_after, a_reconciles,
        "the old leader reconciled nothing after SIGCONT"
    );
    assert!(written.is_empty(), "DtsJob writes after SIGCONT: {written:#?}");
    assert_eq!(
        lease_holder(&ns.client, &ns.name, LEASE_NAME).await.as_deref(),
        Some("replica-b"),
        "the old leader did not take the Lease back"
    );
    assert_eq!(b.metric("dts_operator_leader", &[]).await, 1.0);
}

/// The operator runs as the chart's ServiceAccount; APF rejects most of its
/// status writes with 429 during a burst. It retries them with backoff (the
/// client's retry of 429 honouring Retry-After, then the reconcile's own
/// requeue) and still stops every direction exactly once, every job ending
/// `Stopped`.
#[tokio::test]
async fn status_writes_rejected_with_429_by_apf_still_stop_every_job_exactly_once() {
    let _serial = SERIAL.lock().await;
    let n = burst_size();
    let release_ns = TestNamespace::new("cp-apf-release").await;
    let ns = TestNamespace::new("cp-apf").await;
    let watch_value = format!("watchNamespace={}", ns.name);
    let release = support::helm::install(&ns, &release_ns.name, &[&watch_value]).await;
    let sa = format!("{release}-dts-operator");
    let throttle = throttle_status_writes(&ns, &release_ns.name, &sa, &ns.name).await;
    let level = throttle.name.clone();

    let emu = Emulator::start(
        &ns,
        "emulator",
        json!({"accounts": [account()], "jobs": burst_emulator_jobs(n)}),
    )
    .await;
    let token = support::stack::service_account_token(&ns.client, &release_ns.name, &sa).await;
    let kubeconfig = ns.input_dir().join("sa-kubeconfig.json");
    support::stack::write_token_kubeconfig(&kubeconfig, &token);
    let rejected_before = apf_rejected(&ns.client, &level).await;
    let op = start_with_kubeconfig(&ns, &emu, &kubeconfig);
    let api = ns.api::<DtsJob>();
    let started = Instant::now();
    create_running(&api, n).await;
    let observed_in = started.elapsed();
    let rejected_observing = apf_rejected(&ns.client, &level).await - rejected_before;

    let flipped = Instant::now();
    flip_all(api.clone(), n).await;
    wait_for(
        "every DtsJob Stopped",
        Duration::from_secs(600),
        Duration::from_millis(250),
        || async { (count_jobs(&api, |j| at_phase(j, Phase::Stopped)).await? == n).then_some(()) },
    )
    .await;
    let stopped_in = flipped.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rejected = apf_rejected(&ns.client, &level).await - rejected_before;
    let seats = apf_seats(&ns.client, &level).await;
    let stops = stops_by_direction(&emu).await;
    let (duplicates, lost, unexpected) = tally(n, &stops);
    let requeues = op.metric("dts_operator_reconcile_failures_total", &[]).await;
    eprintln!(
        "APF 429s ({seats} seats): {n} DtsJobs, {} stops attempted; status writes rejected with 429: {rejected_observing} while observing \
         ({:.2} s to all Running), {rejected} in all; all Stopped {:.2} s after the flip; duplicates {duplicates}, \
         lost {lost}, unexpected {unexpected}; failed reconciles {requeues}",
        stops.values().sum::<usize>(),
        observed_in.as_secs_f64(),
        stopped_in.as_secs_f64(),
    );
    assert!(
        rejected > 0.0,
        "APF rejected none of the operator's status writes: the fault did not happen"
    );
    assert_eq!(
        (duplicates, lost, unexpected),
        (0, 0, 0),
        "stops per direction: {stops:?}"
    );
    let not_stopped = not_stopped(&api).await;
    assert!(not_stopped.is_empty(), "not Stopped: {not_stopped:?}");
}

/// Every third DtsJob status write fails with 500 (half of them after the
/// write was applied): the operator retries with backoff, stops every
/// direction exactly once and every job ends `Stopped`.
#[tokio::test]
async fn status_writes_failing_with_500_still_stop_every_job_exactly_once() {
    let _serial = SERIAL.lock().await;
    let n = burst_size();
    let ns = TestNamespace::new("cp-status-500").await;
    let source = PathBuf::from(std::env::var_os("KUBECONFIG").expect("KUBECONFIG"));
    let proxy = start_fault_proxy(&source, 3).await;
    let kubeconfig = ns.input_dir().join("proxied-kubeconfig.json");
    proxied_kubeconfig(&source, &proxy.url, &kubeconfig);
    let emu = Emulator::start(
        &ns,
        "emulator",
        json!({"accounts": [account()], "jobs": burst_emulator_jobs(n)}),
    )
    .await;
    let op = start_with_kubeconfig(&ns, &emu, &kubeconfig);
    let api = ns.api::<DtsJob>();
    let started = Instant::now();
    create_running(&api, n).await;
    let observed_in = started.elapsed();
    let injected_observing = proxy.injected.load(std::sync::atomic::Ordering::SeqCst);
    let flipped = Instant::now();
    flip_all(api.clone(), n).await;
    wait_for(
        "every DtsJob Stopped",
        Duration::from_secs(600),
        Duration::from_millis(250),
        || async { (count_jobs(&api, |j| at_phase(j, Phase::Stopped)).await? == n).then_some(()) },
    )
    .await;
    let stopped_in = flipped.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let injected = proxy.injected.load(std::sync::atomic::Ordering::SeqCst);
    let stops = stops_by_direction(&emu).await;
    let (duplicates, lost, unexpected) = tally(n, &stops);
    let failures = op.metric("dts_operator_reconcile_failures_total", &[]).await;
    eprintln!(
        "status 500s: {n} DtsJobs, {} stops attempted; 500s injected on status writes: {injected_observing} while observing \
         ({:.2} s to all Running), {injected} in all; all Stopped {:.2} s after the flip; duplicates {duplicates}, \
         lost {lost}, unexpected {unexpected}; failed reconciles {failures}",
        stops.values().sum::<usize>(),
        observed_in.as_secs_f64(),
        stopped_in.as_secs_f64(),
    );
    assert!(injected > 0, "no 500 was injected: the fault did not happen");
    assert!(failures > 0.0, "the operator saw the failed writes");
    assert_eq!(
        (duplicates, lost, unexpected),
        (0, 0, 0),
        "stops per direction: {stops:?}"
    );
    let not_stopped = not_stopped(&api).await;
    assert!(not_stopped.is_empty(), "not Stopped: {not_stopped:?}");
}
