//! End to end: a restarted operator is quiet. Jobs held Running and
//! Suspended and a job stopped and shown Finished, all settled and observed,
//! cost no DTS call and no status write when the operator restarts — after
//! the new process has positively reconciled every one of them.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use dts_operator::crd::DtsJob;
use kube::api::{ListParams, PostParams};
use kube::ResourceExt;
use serde_json::json;
use support::stack::{self, Emulator, Operator, OperatorOptions};
use support::{wait_for, TestNamespace};

const SECRET_NAME: &str = "aliyun-dts-credentials";

async fn create_job(ns: &TestNamespace, name: &str, job_id: &str, desired: &str) {
    let job: DtsJob = support::dtsjob_object(
        name,
        json!({"jobId": job_id, "regionId": "cn-hangzhou", "desiredState": desired,
               "credentialsSecretRef": {"name": SECRET_NAME}}),
    );
    ns.api::<DtsJob>().create(&PostParams::default(), &job).await.unwrap();
}

async fn versions(ns: &TestNamespace) -> BTreeMap<String, String> {
    ns.api::<DtsJob>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|j| (j.name_any(), j.resource_version().unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn a_restarted_operator_makes_no_call_and_no_write_for_settled_jobs() {
    let ns = TestNamespace::new("restart-quiet").await;
    let jobs = ["dtsjobrun", "dtsjobsus", "dtsjobfin"]
        .iter()
        .map(|id| stack::job(id, None, false))
        .collect::<Vec<_>>();
    let emu = Emulator::start(&ns, "emulator", json!({"accounts": [stack::account()], "jobs": jobs})).await;
    stack::create_credentials_secret(&ns, SECRET_NAME).await;
    // The first operator reads DTS every second, so everything is observed
    // quickly (the stopped job as Finished too); the restarted one every
    // minute, so its start-up falls within the interval of those reads.
    let opts = |poll: &str| OperatorOptions {
        extra_args: vec!["--poll-interval".into(), poll.into()],
        ..Default::default()
    };
    let mut first = Operator::start(&ns, "operator-1", &emu.url, opts("1s"));
    create_job(&ns, "running", "dtsjobrun", "Running").await;
    create_job(&ns, "suspended", "dtsjobsus", "Suspended").await;
    create_job(&ns, "finished", "dtsjobfin", "Stopped").await;
    for (name, reason) in [
        ("running", "Running"),
        ("suspended", "Suspended"),
        ("finished", "Stopped"),
    ] {
        stack::wait_job(&ns, name, &format!("Ready=True ({reason})"), |j| {
            stack::ready_of(j) == Some(("True".into(), reason.into()))
        })
        .await;
    }
    stack::wait_job(&ns, "finished", "observed Finished", |j| {
        j.status.as_ref().is_some_and(|s| {
            s.directions
                .iter()
                .all(|d| d.observed.as_ref().and_then(|o| o.status.as_deref()) == Some("Finished"))
        })
    })
    .await;
    first.process.sigkill();

    let before_calls = emu.journal().await.len();
    let before_versions = versions(&ns).await;
    let third = Operator::start(&ns, "operator-2", &emu.url, opts("1m"));
    // Positive signal: the new process reconciled all three as leader.
    wait_for(
        "the restarted operator to reconcile all three DtsJobs",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async { (third.metric("dts_operator_reconciles_total", &[]).await >= 3.0).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let journal = emu.journal().await;
    assert_eq!(
        &journal[before_calls..],
        &[] as &[serde_json::Value],
        "no DTS call after the restart (all three were read within the poll interval or are finished)"
    );
    assert_eq!(versions(&ns).await, before_versions, "no write after the restart");
    assert_eq!(third.metric("dts_operator_status_writes_total", &[]).await, 0.0);
}
