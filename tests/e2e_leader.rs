//! End to end: two operator replicas with leader election against one real
//! control plane. Only the Lease holder calls DTS; the standby is
//! ready and waits; it takes over when the leader is killed (after the Lease
//! expires) or stops gracefully (at once, because the Lease is released — but
//! only after the leader's in-flight DTS call has finished and its result is
//! recorded).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dts_operator::crd::{DirectionState, DtsJob, Phase};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::Api;
use serde_json::json;
use support::stack::{
    account, job, journal_time_ms, lease_holder, now_ms, send_sigterm, Emulator, LeaseTiming, Operator,
};
use support::stack::{start_replica, REPLICA_LEASE as LEASE_NAME};
use support::{wait_for, TestNamespace};

/// A Lease change as a watch delivered it: when (ms since the epoch) and the holder.
type LeaseSeen = (i64, Option<String>);

fn dtsjob(name: &str, job_id: &str, directions: &[&str], desired: &str) -> DtsJob {
    support::dtsjob_object(
        name,
        json!({ "jobId": job_id, "regionId": "cn-hangzhou", "directions": directions, "desiredState": desired }),
    )
}

async fn wait_log(op: &Operator, what: &str, needle: &str, timeout: Duration) {
    wait_for(what, timeout, Duration::from_millis(100), || async {
        op.process.log().contains(needle).then_some(())
    })
    .await
}

/// Waits until `op` is the leader and `standby` is ready and waiting.
async fn leader_and_standby(ns: &TestNamespace, leader: &Operator, standby: &Operator, leader_id: &str) {
    wait_log(
        leader,
        "the first replica to become leader",
        "became leader",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        lease_holder(&ns.client, &ns.name, LEASE_NAME).await.as_deref(),
        Some(leader_id)
    );
    wait_for(
        "the standby's /readyz to answer 200",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async { (standby.readyz().await == Some(200)).then_some(()) },
    )
    .await;
    let log = standby.process.log();
    assert!(
        log.contains("leader election enabled; waiting for the Lease"),
        "standby log:\n{log}"
    );
    assert!(!log.contains("became leader"), "standby log:\n{log}");
}

/// Sum of all DTS call counters of a replica.
async fn dts_calls(op: &Operator) -> f64 {
    op.metric("dts_operator_dts_calls_total", &[]).await
}

/// The DTS calls of a replica's reconciles: all but the observer's
/// DescribeDtsJobs reads.
async fn reconcile_dts_calls(op: &Operator) -> f64 {
    dts_calls(op).await
        - op.metric("dts_operator_dts_calls_total", &[("action", "DescribeDtsJobs")])
            .await
}

/// Only the leader calls DTS, once per direction; the standby is ready and
/// waits; after SIGKILL of the leader, the standby takes over once the Lease
/// expires and finishes the work that arrived meanwhile.
#[tokio::test]
async fn only_the_leader_calls_dts_and_the_standby_takes_over_after_sigkill() {
    let timing = LeaseTiming {
        lease_duration: Duration::from_secs(4),
        renew_deadline: Duration::from_secs(3),
        retry_period: Duration::from_millis(500),
    };
    let ns = TestNamespace::new("leader-sigkill-handover").await;
    let emu = Emulator::start(
        &ns,
        "emulator",
        json!({"accounts": [account()], "jobs": [job("ldTwoWay01", None, true), job("ldLate01", None, false)]}),
    )
    .await;
    let mut a = start_replica(&ns, &emu, "replica-a", &timing);
    wait_log(&a, "replica-a to lead", "became leader", Duration::from_secs(60)).await;
    let b = start_replica(&ns, &emu, "replica-b", &timing);
    leader_and_standby(&ns, &a, &b, "replica-a").await;

    let jobs = ns.api::<DtsJob>();
    jobs.create(
        &PostParams::default(),
        &dtsjob("two-way", "ldTwoWay01", &["Forward", "Reverse"], "Stopped"),
    )
    .await
    .expect("create");
    jobs.create(
        &PostParams::default(),
        &dtsjob("late", "ldLate01", &["Forward"], "Running"),
    )
    .await
    .expect("create");
    support::stack::wait_phase(&jobs, "two-way", Phase::Stopped, Duration::from_secs(60)).await;
    support::stack::wait_phase(&jobs, "late", Phase::Running, Duration::from_secs(60)).await;

    for direction in ["Forward", "Reverse"] {
        let stops = emu.stops("ldTwoWay01", direction).await;
        assert_eq!(stops.len(), 1, "exactly one {direction} stop: {stops:?}");
    }
    assert_eq!(emu.reconcile_calls().await.len(), 2, "no other DTS call");
    assert_eq!(reconcile_dts_calls(&a).await, 2.0, "the leader made both calls");
    assert_eq!(dts_calls(&b).await, 0.0, "the standby made no DTS call");
    assert_eq!(
        b.metric("dts_operator_reconciles_total", &[]).await,
        0.0,
        "the standby did not reconcile"
    );

    // The leader gauge tells them apart (it follows the Lease every second).
    wait_for(
        "the leader gauge of both replicas",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || async {
            let (la, lb) = (
                a.metric("dts_operator_leader", &[]).await,
                b.metric("dts_operator_leader", &[]).await,
            );
            (la == 1.0 && lb == 0.0).then_some(())
        },
    )
    .await;

    // The leader dies without a word; work arrives while nobody leads.
    a.process.sigkill();
    let killed_at = now_ms();
    jobs.patch(
        "late",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"desiredState": "Stopped"}})),
    )
    .await
    .expect("flipping late to Stopped");
    // Wide upper bound: 3 × the lease duration after the kill, plus slack.
    let bound = timing.lease_duration * 3 + Duration::from_secs(10);
    let done = support::stack::wait_phase(&jobs, "late", Phase::Stopped, bound).await;

    let log = b.process.log();
    assert!(log.contains("became leader"), "standby log:\n{log}");
    assert!(log.contains("holding the Lease: reconciling all DtsJobs"), "{log}");
    assert_eq!(
        lease_holder(&ns.client, &ns.name, LEASE_NAME).await.as_deref(),
        Some("replica-b")
    );
    let late = emu.stops("ldLate01", "Forward").await;
    assert_eq!(late.len(), 1, "the pending stop was made once: {late:?}");
    assert_eq!(
        done.status.as_ref().unwrap().directions[0].request_id.as_deref(),
        late[0]["requestId"].as_str()
    );
    // Lower bound: the new leader could only act once the Lease expired,
    // lease duration after the dead leader's last renewal (which happened
    // at most one retry period before the kill).
    let waited = journal_time_ms(&late[0]) - killed_at;
    let earliest = (timing.lease_duration - timing.retry_period).as_millis() as i64 - 200;
    eprintln!("the standby's first DTS call came {waited} ms after the kill (earliest possible: {earliest} ms)");
    assert!(
        waited >= earliest,
        "the standby called DTS {waited} ms after the kill, before the Lease could expire ({earliest} ms)"
    );
    // Taking over did not repeat finished work.
    for direction in ["Forward", "Reverse"] {
        assert_eq!(emu.stops("ldTwoWay01", direction).await.len(), 1);
    }
    assert_eq!(emu.reconcile_calls().await.len(), 3, "no other DTS call");
    assert_eq!(reconcile_dts_calls(&b).await, 1.0);
    // The standby did not poll: every observer read came after the takeover.
    for e in emu.calls("DescribeDtsJobs").await {
        assert!(
            journal_time_ms(&e) >= killed_at,
            "a DescribeDtsJobs before the takeover: {e}"
        );
    }
}

/// SIGTERM of the leader while a DTS call is in flight: the call finishes
/// and its success is recorded, only then is the Lease released (holder
/// cleared), and the standby takes over at once without calling again.
#[tokio::test]
async fn sigterm_releases_the_lease_only_after_the_in_flight_call_finished() {
    // A long lease, so a takeover by release is clearly faster than one by expiry.
    let timing = LeaseTiming {
        lease_duration: Duration::from_secs(10),
        renew_deadline: Duration::from_secs(7),
        retry_period: Duration::from_millis(500),
    };
    const LATENCY_MS: i64 = 3000;
    let ns = TestNamespace::new("leader-sigterm-release").await;
    let emu = Emulator::start(
        &ns,
        "emulator",
        json!({"accounts": [account()], "jobs": [job("ldSlow01", None, false)]}),
    )
    .await;
    let mut a = start_replica(&ns, &emu, "replica-a", &timing);
    wait_log(&a, "replica-a to lead", "became leader", Duration::from_secs(60)).await;
    let b = start_replica(&ns, &emu, "replica-b", &timing);
    leader_and_standby(&ns, &a, &b, "replica-a").await;

    // Every change of the Lease from now on, with the time it was seen.
    let leases: Api<Lease> = ns.api();
    let current = leases.get(LEASE_NAME).await.expect("the Lease exists");
    let rv = current.metadata.resource_version.clone().expect("resourceVersion");
    let seen: Arc<Mutex<Vec<LeaseSeen>>> = Arc::default();
    let watch = {
        let seen = seen.clone();
        let stream = leases
            .watch(
                &WatchParams::default()
                    .fields(&format!("metadata.name={LEASE_NAME}"))
                    .timeout(120),
                &rv,
            )
            .await
            .expect("watching the Lease");
        tokio::spawn(async move {
            let mut stream = stream.boxed();
            while let Ok(Some(event)) = stream.try_next().await {
                if let WatchEvent::Added(l) | WatchEvent::Modified(l) = event {
                    let holder = l.spec.and_then(|s| s.holder_identity).filter(|h| !h.is_empty());
                    seen.lock().unwrap().push((now_ms(), holder));
                }
            }
        })
    };

    emu.faults(json!({"latencyMs": LATENCY_MS})).await;
    let jobs = ns.api::<DtsJob>();
    jobs.create(
        &PostParams::default(),
        &dtsjob("slow", "ldSlow01", &["Forward"], "Stopped"),
    )
    .await
    .expect("create");
    let call = wait_for(
        "the StopDtsJob call to reach the emulator",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || async { emu.stops("ldSlow01", "Forward").await.into_iter().next() },
    )
    .await;
    let arrived = journal_time_ms(&call);

    // SIGTERM while the answer is still held back by the emulator.
    send_sigterm(&mut a.process);
    let term_at = now_ms();
    assert!(
        term_at < arrived + LATENCY_MS,
        "SIGTERM must be sent while the call is in flight"
    );
    let status = wait_for(
        "replica-a to exit after SIGTERM",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            let status = a.process.try_status();
            async move { status }
        },
    )
    .await;
    assert!(status.success(), "replica-a exits cleanly: {status:?}");
    let exited_at = now_ms();
    assert!(
        exited_at >= arrived + LATENCY_MS,
        "replica-a waited for its in-flight call ({} ms after it arrived)",
        exited_at - arrived
    );

    let done = support::stack::wait_phase(&jobs, "slow", Phase::Stopped, Duration::from_secs(30)).await;
    let record = &done.status.as_ref().unwrap().directions[0];
    assert_eq!(record.state, DirectionState::Stopped);
    assert_eq!(
        record.request_id.as_deref(),
        call["requestId"].as_str(),
        "the in-flight call's success is what the status records"
    );
    wait_for(
        "replica-b to hold the Lease",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            (lease_holder(&ns.client, &ns.name, LEASE_NAME).await.as_deref() == Some("replica-b")).then_some(())
        },
    )
    .await;
    wait_log(&b, "replica-b to lead", "became leader", Duration::from_secs(10)).await;
    watch.abort();

    // The Lease went from replica-a to no holder (released) to replica-b.
    let seen = seen.lock().unwrap().clone();
    let released = seen
        .iter()
        .position(|(_, h)| h.as_deref() != Some("replica-a"))
        .unwrap_or_else(|| panic!("the Lease never left replica-a: {seen:?}"));
    let (released_at, holder) = &seen[released];
    assert_eq!(
        holder, &None,
        "released (holder cleared) before anyone took it: {seen:?}"
    );
    assert!(
        *released_at >= arrived + LATENCY_MS,
        "the Lease was released {} ms after the call arrived, before its answer ({LATENCY_MS} ms)",
        released_at - arrived
    );
    let (taken_at, holder) = seen[released + 1..]
        .iter()
        .find(|(_, h)| h.is_some())
        .unwrap_or_else(|| panic!("nobody took the Lease: {seen:?}"));
    assert_eq!(holder.as_deref(), Some("replica-b"));
    let takeover = taken_at - released_at;
    eprintln!(
        "call arrived at +0 ms, SIGTERM at +{} ms, Lease released at +{} ms, taken over {takeover} ms later",
        term_at - arrived,
        released_at - arrived
    );
    assert!(
        takeover < (timing.lease_duration / 2).as_millis() as i64,
        "replica-b took the released Lease after {takeover} ms: it must not wait for expiry ({:?})",
        timing.lease_duration
    );

    // One call in all: replica-b found the result recorded and did not call.
    let journal = emu.reconcile_calls().await;
    assert_eq!(journal.len(), 1, "exactly one DTS call, no describe: {journal:?}");
    assert_eq!(reconcile_dts_calls(&b).await, 0.0, "replica-b made no DTS call");

    // replica-a's own account, in order.
    let log = a.process.log();
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("replica-a log lacks {needle:?}:\n{log}"))
    };
    assert!(at("shutdown requested") < at("StopDtsJob succeeded"), "{log}");
    assert!(at("StopDtsJob succeeded") < at("controller drained"), "{log}");
    assert!(at("controller drained") < at("released the Lease"), "{log}");
}
