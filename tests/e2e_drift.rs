//! End to end: what DTS shows, read by the batch observer, against what the
//! spec wants, on the real kube-apiserver and the real `dts-emulator`: a job
//! suspended in the console is started again under `managementPolicy:
//! Manage` and only reported under `ObserveOnly`; a job DTS already shows
//! Finished is not stopped again.

mod support;

use std::time::Duration;

use dts_operator::crd::DtsJob;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use support::stack::{self, Emulator, Operator, OperatorOptions};
use support::{wait_for, TestNamespace};

const STATUS_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);
/// How long to watch for calls that must not come, after a positive signal.
const SETTLE: Duration = Duration::from_secs(3);
const SECRET_NAME: &str = "aliyun-dts-credentials";

async fn setup(ns: &TestNamespace, jobs: Vec<Value>) -> (Emulator, Operator) {
    let emu = Emulator::start(ns, "emulator", json!({"accounts": [stack::account()], "jobs": jobs})).await;
    stack::create_credentials_secret(ns, SECRET_NAME).await;
    let opts = OperatorOptions {
        extra_args: vec!["--poll-interval".into(), "1s".into()],
        ..Default::default()
    };
    let op = Operator::start(ns, "operator", &emu.url, opts);
    (emu, op)
}

async fn create_job(ns: &TestNamespace, name: &str, mut spec: Value) {
    spec["regionId"] = json!("cn-hangzhou");
    spec["credentialsSecretRef"] = json!({"name": SECRET_NAME});
    let job: DtsJob = support::dtsjob_object(name, spec);
    ns.api::<DtsJob>().create(&PostParams::default(), &job).await.unwrap();
}

/// Changes a job direction's status as the DTS console would.
async fn console(emu: &Emulator, job_id: &str, status: &str) {
    emu.set_state(job_id, json!({"direction": "Forward", "status": status}))
        .await;
}

async fn wait_ready(ns: &TestNamespace, name: &str, status: &str, reason: &str) -> DtsJob {
    let want = Some((status.to_owned(), reason.to_owned()));
    stack::wait_job(ns, name, &format!("Ready={status} ({reason})"), |j| {
        stack::ready_of(j) == want
    })
    .await
}

async fn wait_event(ns: &TestNamespace, name: &str, type_: &str, reason: &str, needle: &str) -> Event {
    wait_for(
        &format!("a {type_} Event {reason} on {name} whose note contains {needle:?}"),
        STATUS_TIMEOUT,
        POLL,
        || async {
            ns.api::<Event>()
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| {
                    e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                        && e.type_.as_deref() == Some(type_)
                        && e.reason.as_deref() == Some(reason)
                        && e.note.as_deref().is_some_and(|n| n.contains(needle))
                })
        },
    )
    .await
}

fn calls_for(journal: &[Value], action: &str, job_id: &str) -> usize {
    journal
        .iter()
        .filter(|e| e["action"] == action && e["params"]["DtsJobId"] == job_id)
        .count()
}

#[tokio::test]
async fn a_console_suspend_is_reverted_under_manage_and_reported_under_observe_only() {
    let ns = TestNamespace::new("console-suspend").await;
    let (emu, _op) = setup(
        &ns,
        vec![
            stack::job("dtsjobmanaged", None, false),
            stack::job("dtsjobwatched", None, false),
        ],
    )
    .await;
    create_job(
        &ns,
        "managed",
        json!({"jobId": "dtsjobmanaged", "desiredState": "Running"}),
    )
    .await;
    create_job(
        &ns,
        "watched",
        json!({"jobId": "dtsjobwatched", "desiredState": "Running", "managementPolicy": "ObserveOnly"}),
    )
    .await;
    // The positive signal: the observer read DTS for both.
    wait_ready(&ns, "managed", "True", "Running").await;
    wait_ready(&ns, "watched", "True", "Running").await;

    console(&emu, "dtsjobmanaged", "Suspending").await;
    console(&emu, "dtsjobwatched", "Suspending").await;

    let ev = wait_event(&ns, "managed", "Normal", "Starting", "changed outside the operator").await;
    assert!(ev.note.as_deref().unwrap_or_default().contains("Suspending"), "{ev:#?}");
    wait_ready(&ns, "managed", "True", "Running").await;
    wait_ready(&ns, "watched", "False", "NotInDesiredState").await;
    wait_event(&ns, "watched", "Warning", "NotInDesiredState", "Suspending").await;
    tokio::time::sleep(SETTLE).await;

    let journal = emu.journal().await;
    assert_eq!(
        calls_for(&journal, "StartDtsJob", "dtsjobmanaged"),
        1,
        "Manage: started once"
    );
    assert_eq!(
        calls_for(&journal, "StartDtsJob", "dtsjobwatched"),
        0,
        "ObserveOnly: not changed"
    );
    let jobs = emu.jobs().await;
    let watched = jobs.iter().find(|j| j["jobId"] == "dtsjobwatched").unwrap();
    assert_eq!(watched["status"]["Forward"], "Suspending", "{watched}");
}

#[tokio::test]
async fn a_job_dts_already_shows_finished_is_not_stopped_again() {
    let ns = TestNamespace::new("already-finished").await;
    let mut finished = stack::job("dtsjobfinished", None, false);
    finished["status"] = json!("Finished");
    let (emu, _op) = setup(&ns, vec![finished]).await;
    create_job(&ns, "finished", json!({"jobId": "dtsjobfinished"})).await;
    // The positive signal: DTS's view is in the status.
    let api = ns.api::<DtsJob>();
    wait_for("the observed DTS status Finished", STATUS_TIMEOUT, POLL, || {
        let api = api.clone();
        async move {
            let job = api.get("finished").await.ok()?;
            let status = job.status?;
            let d = status.directions.first()?;
            (d.observed.as_ref()?.status.as_deref() == Some("Finished")).then_some(())
        }
    })
    .await;
    api.patch(
        "finished",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"desiredState": "Stopped"}})),
    )
    .await
    .unwrap();
    wait_ready(&ns, "finished", "True", "AlreadyStopped").await;
    wait_event(&ns, "finished", "Normal", "AlreadyStopped", "no StopDtsJob sent").await;
    tokio::time::sleep(SETTLE).await;
    assert!(
        emu.calls("StopDtsJob").await.is_empty(),
        "no StopDtsJob for a finished job"
    );
}
