//! End to end: cutover-safe stops on the real kube-apiserver and the real
//! `dts-emulator`. A delay-gated stop (`spec.stopPolicy`) sends StopDtsJob
//! only once DTS reports the replication delay at or below the limit, and
//! at its deadline stalls or stops as told; a scheduled stop (`spec.stopAt`)
//! arrives at its time, not before; admission rejects malformed times.

mod support;

use std::time::Duration;

use dts_operator::crd::{DtsJob, StopGateState};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use support::stack::{self, Emulator, Operator, OperatorOptions};
use support::{wait_for, TestNamespace};

const SECRET_NAME: &str = "aliyun-dts-credentials";

async fn setup(ns: &TestNamespace, jobs: Vec<Value>) -> (Emulator, Operator) {
    let emu = Emulator::start(ns, "emulator", json!({"accounts": [stack::account()], "jobs": jobs})).await;
    stack::create_credentials_secret(ns, SECRET_NAME).await;
    let op = Operator::start(ns, "operator", &emu.url, OperatorOptions::default());
    (emu, op)
}

/// An emulator job whose Forward direction reports `delay_ms`.
fn lagging_job(job_id: &str, delay_ms: u64) -> Value {
    let mut j = stack::job(job_id, None, false);
    j["delayMs"] = json!(delay_ms);
    j
}

fn dtsjob(name: &str, mut spec: Value) -> DtsJob {
    spec["regionId"] = json!("cn-hangzhou");
    spec["credentialsSecretRef"] = json!({"name": SECRET_NAME});
    support::dtsjob_object(name, spec)
}

async fn create_job(ns: &TestNamespace, name: &str, spec: Value) {
    ns.api::<DtsJob>()
        .create(&PostParams::default(), &dtsjob(name, spec))
        .await
        .unwrap_or_else(|e| panic!("creating DtsJob {name}: {e}"));
}

fn calls_for(journal: &[Value], action: &str, job_id: &str) -> Vec<Value> {
    journal
        .iter()
        .filter(|e| e["action"] == action && e["params"]["DtsJobId"] == job_id)
        .cloned()
        .collect()
}

fn condition(job: &DtsJob, type_: &str) -> Option<(String, String)> {
    let c = job.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
    (c.observed_generation == job.metadata.generation).then(|| (c.status.clone(), c.reason.clone()))
}

async fn event_reasons(ns: &TestNamespace, name: &str) -> Vec<String> {
    ns.api::<Event>()
        .list(&ListParams::default())
        .await
        .expect("Events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reason)
        .collect()
}

async fn wait_event(ns: &TestNamespace, name: &str, reason: &str) {
    wait_for(
        &format!("an Event {reason} on {name}"),
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async { event_reasons(ns, name).await.iter().any(|r| r == reason).then_some(()) },
    )
    .await
}

#[tokio::test]
async fn a_delay_gated_stop_waits_while_the_delay_is_high_and_stops_once_it_drops() {
    let ns = TestNamespace::new("cutover-gate").await;
    let (emu, _op) = setup(&ns, vec![lagging_job("dtsjobgate", 30_000)]).await;
    create_job(
        &ns,
        "gate",
        json!({"jobId": "dtsjobgate", "desiredState": "Stopped", "stopPolicy": {"maxDelaySeconds": 5}}),
    )
    .await;

    // Positive signal: the operator read the delay and says it waits.
    let waiting = stack::wait_job(&ns, "gate", "waiting for the delay", |j| {
        condition(j, "Reconciling") == Some(("True".into(), "WaitingForDelay".into()))
    })
    .await;
    let gate = waiting
        .status
        .as_ref()
        .and_then(|s| s.stop_gate.clone())
        .expect("status.stopGate");
    assert_eq!(gate.state, StopGateState::Waiting);
    assert_eq!(gate.max_delay_seconds, 5);
    assert_eq!(gate.delays[0].delay_ms, Some(30_000));
    assert_eq!(
        condition(&waiting, "Ready"),
        Some(("Unknown".into(), "WaitingForDelay".into()))
    );
    wait_event(&ns, "gate", "WaitingForDelay").await;
    // It keeps reading (a requeue, every 5 s), and never stops meanwhile.
    wait_for(
        "a second delay read",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async { (calls_for(&emu.journal().await, "DescribeDtsJobDetail", "dtsjobgate").len() >= 2).then_some(()) },
    )
    .await;
    assert!(
        calls_for(&emu.journal().await, "StopDtsJob", "dtsjobgate").is_empty(),
        "no StopDtsJob while the delay is 30 s"
    );

    let dropped_at = stack::now_ms();
    emu.set_state("dtsjobgate", json!({"delayMs": 2000})).await;
    let stopped = stack::wait_job(&ns, "gate", "Ready=True (Stopped)", |j| {
        stack::ready_of(j) == Some(("True".into(), "Stopped".into()))
    })
    .await;
    let journal = emu.journal().await;
    let stops = calls_for(&journal, "StopDtsJob", "dtsjobgate");
    assert_eq!(stops.len(), 1, "exactly one StopDtsJob: {stops:?}");
    assert!(
        stack::journal_time_ms(&stops[0]) >= dropped_at,
        "the stop came after the delay dropped"
    );
    let gate = stopped
        .status
        .and_then(|s| s.stop_gate)
        .expect("the gate stays as a record");
    assert_eq!(gate.state, StopGateState::Passed);
    assert_eq!(gate.delays[0].delay_ms, Some(2000));
    wait_event(&ns, "gate", "DelayReached").await;
}

#[tokio::test]
async fn at_the_deadline_stall_sends_nothing_and_stop_stops_anyway() {
    let ns = TestNamespace::new("cutover-deadline").await;
    let (emu, _op) = setup(
        &ns,
        vec![lagging_job("dtsjobstall", 30_000), lagging_job("dtsjobforce", 30_000)],
    )
    .await;
    let created_at = stack::now_ms();
    create_job(
        &ns,
        "stall",
        json!({"jobId": "dtsjobstall", "desiredState": "Stopped",
               "stopPolicy": {"maxDelaySeconds": 5, "deadline": "3s", "onDeadline": "Stall"}}),
    )
    .await;
    create_job(
        &ns,
        "force",
        json!({"jobId": "dtsjobforce", "desiredState": "Stopped",
               "stopPolicy": {"maxDelaySeconds": 5, "deadline": "3s", "onDeadline": "Stop"}}),
    )
    .await;

    let stalled = stack::wait_job(&ns, "stall", "Stalled=True (DelayDeadlineExceeded)", |j| {
        condition(j, "Stalled") == Some(("True".into(), "DelayDeadlineExceeded".into()))
    })
    .await;
    assert_eq!(
        stalled
            .status
            .as_ref()
            .and_then(|s| s.stop_gate.as_ref())
            .map(|g| g.state),
        Some(StopGateState::Stalled)
    );
    let forced = stack::wait_job(&ns, "force", "Ready=True (Stopped)", |j| {
        stack::ready_of(j) == Some(("True".into(), "Stopped".into()))
    })
    .await;
    assert_eq!(
        forced
            .status
            .as_ref()
            .and_then(|s| s.stop_gate.as_ref())
            .map(|g| g.state),
        Some(StopGateState::DeadlineStop)
    );

    let journal = emu.journal().await;
    let forced_stops = calls_for(&journal, "StopDtsJob", "dtsjobforce");
    assert_eq!(forced_stops.len(), 1, "{forced_stops:?}");
    assert!(
        stack::journal_time_ms(&forced_stops[0]) >= created_at + 3000,
        "the forced stop waited for the deadline"
    );
    // Stalled is final for these inputs: no stop, and no more reads either.
    let reads = calls_for(&journal, "DescribeDtsJobDetail", "dtsjobstall").len();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let journal = emu.journal().await;
    assert!(calls_for(&journal, "StopDtsJob", "dtsjobstall").is_empty());
    assert_eq!(calls_for(&journal, "DescribeDtsJobDetail", "dtsjobstall").len(), reads);
    let reasons = event_reasons(&ns, "stall").await;
    assert!(reasons.iter().any(|r| r == "DelayDeadlineExceeded"), "{reasons:?}");

    // A new intent looks again: with the delay now low, it stops.
    emu.set_state("dtsjobstall", json!({"delayMs": 1000})).await;
    ns.api::<DtsJob>()
        .patch(
            "stall",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"kubedts.io/reconcile-requested-at": "retry-1"}}})),
        )
        .await
        .expect("annotate");
    stack::wait_job(&ns, "stall", "Ready=True (Stopped) after the new look", |j| {
        stack::ready_of(j) == Some(("True".into(), "Stopped".into()))
    })
    .await;
    assert_eq!(calls_for(&emu.journal().await, "StopDtsJob", "dtsjobstall").len(), 1);
}

#[tokio::test]
async fn a_scheduled_stop_arrives_at_its_time_and_not_before() {
    let ns = TestNamespace::new("cutover-stopat").await;
    let (emu, _op) = setup(
        &ns,
        vec![
            stack::job("dtsjoblater", None, false),
            stack::job("dtsjobpast", None, false),
        ],
    )
    .await;
    // Kubernetes stores times to the second: a whole second 8 to 9 s ahead
    // (time for the job to be read and shown Running first, on a busy machine).
    let stop_at_ms = (stack::now_ms() / 1000 + 9) * 1000;
    let stop_at = jiff::Timestamp::from_millisecond(stop_at_ms).unwrap().to_string();
    create_job(
        &ns,
        "later",
        json!({"jobId": "dtsjoblater", "desiredState": "Running", "stopAt": stop_at}),
    )
    .await;
    create_job(
        &ns,
        "past",
        json!({"jobId": "dtsjobpast", "stopAt": "2020-01-01T00:00:00Z"}),
    )
    .await;

    // A past stopAt stops at once.
    stack::wait_job(&ns, "past", "Ready=True (Stopped)", |j| {
        stack::ready_of(j) == Some(("True".into(), "Stopped".into()))
    })
    .await;
    // Positive signal: the scheduled job was read and is Running, untouched.
    stack::wait_job(&ns, "later", "Ready=True (Running)", |j| {
        stack::ready_of(j) == Some(("True".into(), "Running".into()))
    })
    .await;
    assert!(
        stack::now_ms() < stop_at_ms,
        "the test machine was too slow to see the job before its stopAt"
    );
    assert!(calls_for(&emu.journal().await, "StopDtsJob", "dtsjoblater").is_empty());

    stack::wait_job(&ns, "later", "Ready=True (Stopped)", |j| {
        stack::ready_of(j) == Some(("True".into(), "Stopped".into()))
    })
    .await;
    let stops = calls_for(&emu.journal().await, "StopDtsJob", "dtsjoblater");
    assert_eq!(stops.len(), 1, "{stops:?}");
    let sent = stack::journal_time_ms(&stops[0]);
    println!("stopAt: StopDtsJob arrived {} ms after stopAt", sent - stop_at_ms);
    assert!(sent >= stop_at_ms, "sent {} ms before stopAt", stop_at_ms - sent);
    // Within a second or two when idle; a wide margin for a loaded machine.
    assert!(sent <= stop_at_ms + 8_000, "sent {} ms after stopAt", sent - stop_at_ms);
}

#[tokio::test]
async fn admission_rejects_malformed_times_with_a_readable_message() {
    let ns = TestNamespace::new("cutover-admission").await;
    // Untyped, so that what the typed client could not even build reaches
    // the API server as a user's YAML would.
    let resource = ApiResource::erase::<DtsJob>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(ns.client.clone(), &ns.name, &resource);
    let object = |name: &str, mut spec: Value| -> DynamicObject {
        spec["regionId"] = json!("cn-hangzhou");
        serde_json::from_value(json!({
            "apiVersion": "kubedts.io/v1alpha1", "kind": "DtsJob",
            "metadata": {"name": name}, "spec": spec,
        }))
        .expect("object")
    };
    let cases = [
        (json!({"jobId": "j1", "stopAt": "tomorrow at noon"}), "stopAt"),
        (
            json!({"jobId": "j2", "desiredState": "Stopped", "stopPolicy": {"maxDelaySeconds": 5, "deadline": "5 fortnights"}}),
            "deadline must be a duration such as 90s, 30m or 1h30m, or an RFC 3339 time",
        ),
        (
            json!({"jobId": "j3", "desiredState": "Stopped", "stopPolicy": {"maxDelaySeconds": -1}}),
            "maxDelaySeconds",
        ),
        (
            json!({"jobId": "j4", "desiredState": "Stopped", "stopPolicy": {"maxDelaySeconds": 5, "onDeadline": "Later"}}),
            "onDeadline",
        ),
    ];
    for (i, (spec, needle)) in cases.into_iter().enumerate() {
        let err = api
            .create(&PostParams::default(), &object(&format!("bad-{i}"), spec.clone()))
            .await
            .expect_err(&format!("{spec} must be rejected"));
        let text = err.to_string();
        assert!(text.contains(needle), "{spec}: {text}");
    }
    // The accepted forms.
    for (i, deadline) in ["90s", "1h30m", "2026-12-01T22:00:00Z", "2026-12-01T22:00:00.5+08:00"]
        .into_iter()
        .enumerate()
    {
        let spec = json!({"jobId": "ok", "stopPolicy": {"maxDelaySeconds": 0, "deadline": deadline}});
        api.create(&PostParams::default(), &object(&format!("ok-{i}"), spec))
            .await
            .unwrap_or_else(|e| panic!("deadline {deadline} must be accepted: {e}"));
    }
}
