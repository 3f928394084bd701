//! End to end: the controls of a DtsJob's life beyond the stop itself, on
//! the real kube-apiserver and the real `dts-emulator`: the
//! `kubedts.io/paused` annotation and `spec.deletionPolicy`.
//!
//! "Nothing happened" is asserted only after a positive signal that the
//! operator saw the change (the Paused condition, the finalizer).

mod support;

use std::time::Duration;

use dts_operator::crd::{DtsJob, Phase, PAUSED, STOP_ON_DELETE_FINALIZER};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use support::stack::{self, Emulator, Operator, OperatorOptions};
use support::{wait_for, TestNamespace};

const STATUS_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);
/// How long to watch for calls or writes that must not come.
const SETTLE: Duration = Duration::from_secs(3);
const SECRET_NAME: &str = "aliyun-dts-credentials";

async fn setup(ns: &TestNamespace, jobs: Vec<Value>) -> (Emulator, Operator) {
    let emu = Emulator::start(ns, "emulator", json!({"accounts": [stack::account()], "jobs": jobs})).await;
    stack::create_credentials_secret(ns, SECRET_NAME).await;
    let op = Operator::start(ns, "operator", &emu.url, OperatorOptions::default());
    (emu, op)
}

async fn create_job(ns: &TestNamespace, name: &str, mut spec: Value, annotations: Value) -> DtsJob {
    spec["regionId"] = json!("cn-hangzhou");
    spec["credentialsSecretRef"] = json!({"name": SECRET_NAME});
    let mut job: DtsJob = support::dtsjob_object(name, spec);
    job.metadata.annotations = serde_json::from_value(annotations).expect("annotations");
    ns.api::<DtsJob>()
        .create(&PostParams::default(), &job)
        .await
        .unwrap_or_else(|e| panic!("creating DtsJob {name}: {e}"))
}

async fn patch(ns: &TestNamespace, name: &str, body: Value) {
    ns.api::<DtsJob>()
        .patch(name, &PatchParams::default(), &Patch::Merge(body))
        .await
        .unwrap_or_else(|e| panic!("patching DtsJob {name}: {e}"));
}

async fn wait_job(ns: &TestNamespace, name: &str, what: &str, pred: impl Fn(&DtsJob) -> bool) -> DtsJob {
    stack::wait_job(ns, name, what, pred).await
}

async fn wait_gone(ns: &TestNamespace, name: &str) {
    let api = ns.api::<DtsJob>();
    wait_for(&format!("DtsJob {name} to be gone"), STATUS_TIMEOUT, POLL, || {
        let api = api.clone();
        async move { matches!(api.get_opt(name).await, Ok(None)).then_some(()) }
    })
    .await
}

fn condition_status(job: &DtsJob, type_: &str) -> Option<String> {
    let status = job.status.as_ref()?;
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

fn has_finalizer(job: &DtsJob) -> bool {
    job.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == STOP_ON_DELETE_FINALIZER))
}

#[tokio::test]
async fn a_paused_job_gets_no_call_and_no_write_until_unpaused() {
    let ns = TestNamespace::new("paused").await;
    let (emu, _op) = setup(&ns, vec![stack::job("dtsjobpaused", None, true)]).await;
    create_job(
        &ns,
        "paused",
        json!({"jobId": "dtsjobpaused", "directions": ["Forward", "Reverse"], "desiredState": "Stopped"}),
        json!({ PAUSED: "true" }),
    )
    .await;

    // The positive signal: the operator saw the annotation.
    let job = wait_job(&ns, "paused", "Paused=True", |j| {
        condition_status(j, "Paused").as_deref() == Some("True")
    })
    .await;
    let rv = job.metadata.resource_version.clone();
    tokio::time::sleep(SETTLE).await;
    assert!(emu.journal().await.is_empty(), "no DTS call while paused");
    let later = ns.api::<DtsJob>().get("paused").await.expect("the DtsJob");
    assert_eq!(later.metadata.resource_version, rv, "no write while paused");

    // Unpaused: each direction is stopped once, the Paused condition goes.
    patch(&ns, "paused", json!({"metadata": {"annotations": { PAUSED: "false" }}})).await;
    let job = wait_job(&ns, "paused", "phase Stopped", |j| {
        j.status.as_ref().and_then(|s| s.phase) == Some(Phase::Stopped)
    })
    .await;
    assert_eq!(condition_status(&job, "Paused"), None);
    for d in ["Forward", "Reverse"] {
        assert_eq!(emu.stops("dtsjobpaused", d).await.len(), 1, "{d}");
    }
    let history = &job.status.as_ref().unwrap().history;
    assert_eq!(history.len(), 2, "both calls are in the history: {history:#?}");
    assert!(history
        .iter()
        .all(|c| c.action == "StopDtsJob" && c.request_id.is_some()));
}

#[tokio::test]
async fn deletion_policy_stop_stops_each_direction_once_then_lets_go() {
    let ns = TestNamespace::new("deletion-stop").await;
    let (emu, _op) = setup(
        &ns,
        vec![
            stack::job("dtsjobdelete", Some("dtsinstdelete"), true),
            stack::job("dtsjoborphan", None, false),
        ],
    )
    .await;
    create_job(
        &ns,
        "stop-on-delete",
        json!({"jobId": "dtsjobdelete", "instanceId": "dtsinstdelete",
               "directions": ["Forward", "Reverse"], "deletionPolicy": "Stop"}),
        json!({}),
    )
    .await;
    create_job(&ns, "orphan", json!({"jobId": "dtsjoborphan"}), json!({})).await;

    // The positive signals: the finalizer is set; the orphan was observed.
    wait_job(&ns, "stop-on-delete", "the stop-on-delete finalizer", has_finalizer).await;
    wait_job(&ns, "orphan", "observed", |j| j.status.is_some()).await;
    assert!(emu.reconcile_calls().await.is_empty(), "observe only until deleted");

    ns.api::<DtsJob>()
        .delete("orphan", &DeleteParams::default())
        .await
        .expect("deleting the orphan");
    ns.api::<DtsJob>()
        .delete("stop-on-delete", &DeleteParams::default())
        .await
        .expect("deleting");
    wait_gone(&ns, "stop-on-delete").await;
    wait_gone(&ns, "orphan").await;
    for d in ["Forward", "Reverse"] {
        let stops = emu.stops("dtsjobdelete", d).await;
        assert_eq!(stops.len(), 1, "one {d} stop before the finalizer went: {stops:#?}");
    }
    tokio::time::sleep(SETTLE).await;
    assert!(
        emu.calls("StopDtsJob")
            .await
            .iter()
            .all(|c| c["params"]["DtsJobId"] == "dtsjobdelete"),
        "deletionPolicy Orphan (the default) makes no call"
    );
    assert_eq!(emu.calls("StopDtsJob").await.len(), 2, "no second stop");
}

#[tokio::test]
async fn switching_back_to_orphan_removes_the_finalizer() {
    let ns = TestNamespace::new("deletion-orphan").await;
    let (emu, _op) = setup(&ns, vec![stack::job("dtsjobswitch", None, false)]).await;
    create_job(
        &ns,
        "switch",
        json!({"jobId": "dtsjobswitch", "deletionPolicy": "Stop"}),
        json!({}),
    )
    .await;
    wait_job(&ns, "switch", "the stop-on-delete finalizer", has_finalizer).await;
    patch(&ns, "switch", json!({"spec": {"deletionPolicy": "Orphan"}})).await;
    wait_job(&ns, "switch", "no finalizer", |j| !has_finalizer(j)).await;
    ns.api::<DtsJob>()
        .delete("switch", &DeleteParams::default())
        .await
        .expect("deleting");
    wait_gone(&ns, "switch").await;
    assert!(emu.reconcile_calls().await.is_empty(), "Orphan: no call");
}
