//! End to end: splitting a fleet. One operator watches a list of
//! namespaces and leaves every other namespace alone; two operators with
//! disjoint label selectors (`--selector`) in one namespace each handle
//! exactly their own DtsJobs, and no job is handled by both.

mod support;

use std::time::Duration;

use dts_operator::crd::DtsJob;
use kube::api::PostParams;
use serde_json::{json, Value};
use support::stack::{self, Emulator, Operator, OperatorOptions};
use support::TestNamespace;

const SECRET_NAME: &str = "aliyun-dts-credentials";

async fn create_stopped_job(ns: &TestNamespace, name: &str, job_id: &str, labels: Value) {
    let mut job: DtsJob = support::dtsjob_object(
        name,
        json!({"jobId": job_id, "regionId": "cn-hangzhou", "desiredState": "Stopped",
               "credentialsSecretRef": {"name": SECRET_NAME}}),
    );
    job.metadata.labels = serde_json::from_value(labels).unwrap();
    ns.api::<DtsJob>()
        .create(&PostParams::default(), &job)
        .await
        .unwrap_or_else(|e| panic!("creating {name}: {e}"));
}

async fn wait_stopped(ns: &TestNamespace, name: &str) {
    stack::wait_job(ns, name, "Ready=True (Stopped)", |j| {
        stack::ready_of(j) == Some(("True".into(), "Stopped".into()))
    })
    .await;
}

fn stops_of(journal: &[Value], job_id: &str) -> usize {
    journal
        .iter()
        .filter(|e| e["action"] == "StopDtsJob" && e["params"]["DtsJobId"] == job_id)
        .count()
}

#[tokio::test]
async fn an_operator_watching_two_namespaces_leaves_a_third_alone() {
    let first = TestNamespace::new("scope-first").await;
    let second = TestNamespace::new("scope-second").await;
    let outside = TestNamespace::new("scope-outside").await;
    let jobs = ["dtsjobscope1", "dtsjobscope2", "dtsjobscope3"]
        .iter()
        .map(|id| stack::job(id, None, false))
        .collect::<Vec<_>>();
    let emu = Emulator::start(
        &first,
        "emulator",
        json!({"accounts": [stack::account()], "jobs": jobs}),
    )
    .await;
    for ns in [&first, &second, &outside] {
        stack::create_credentials_secret(ns, SECRET_NAME).await;
    }
    let opts = OperatorOptions {
        extra_args: vec!["--namespace".into(), second.name.clone()],
        ..Default::default()
    };
    let _op = Operator::start(&first, "operator", &emu.url, opts);
    create_stopped_job(&first, "one", "dtsjobscope1", json!({})).await;
    create_stopped_job(&second, "two", "dtsjobscope2", json!({})).await;
    create_stopped_job(&outside, "three", "dtsjobscope3", json!({})).await;

    // Positive signal: both watched namespaces were handled.
    wait_stopped(&first, "one").await;
    wait_stopped(&second, "two").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let journal = emu.journal().await;
    assert_eq!(stops_of(&journal, "dtsjobscope1"), 1);
    assert_eq!(stops_of(&journal, "dtsjobscope2"), 1);
    assert_eq!(stops_of(&journal, "dtsjobscope3"), 0, "outside the scope");
    let untouched = outside.api::<DtsJob>().get("three").await.unwrap();
    assert_eq!(untouched.status, None, "no status written outside the scope");
}

#[tokio::test]
async fn two_shards_by_label_selector_each_stop_only_their_own_jobs() {
    let ns = TestNamespace::new("scope-shards").await;
    let ids: Vec<String> = (0..7).map(|i| format!("dtsjobshard{i}")).collect();
    let jobs = ids.iter().map(|id| stack::job(id, None, false)).collect::<Vec<_>>();
    let emu = Emulator::start(&ns, "emulator", json!({"accounts": [stack::account()], "jobs": jobs})).await;
    stack::create_credentials_secret(&ns, SECRET_NAME).await;
    let shard = |selector: &str, lease: &str| OperatorOptions {
        extra_args: vec![
            "--selector".into(),
            selector.into(),
            "--leader-elect".into(),
            "--lease-name".into(),
            lease.into(),
            "--lease-namespace".into(),
            ns.name.clone(),
        ],
        ..Default::default()
    };
    let a = Operator::start(&ns, "shard-a", &emu.url, shard("shard=a", "dts-operator-a"));
    let b = Operator::start(&ns, "shard-b", &emu.url, shard("shard=b", "dts-operator-b"));
    for (i, id) in ids.iter().enumerate() {
        let labels = match i {
            0..=2 => json!({"shard": "a"}),
            3..=5 => json!({"shard": "b"}),
            _ => json!({"shard": "c"}),
        };
        create_stopped_job(&ns, &format!("job-{i}"), id, labels).await;
    }
    for i in 0..6 {
        wait_stopped(&ns, &format!("job-{i}")).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let journal = emu.journal().await;
    for id in &ids[..6] {
        assert_eq!(stops_of(&journal, id), 1, "{id}: exactly one stop across both shards");
    }
    assert_eq!(stops_of(&journal, &ids[6]), 0, "shard=c belongs to no running shard");
    assert_eq!(
        a.metric("dts_operator_dts_calls_total", &[("action", "StopDtsJob")])
            .await,
        3.0
    );
    assert_eq!(
        b.metric("dts_operator_dts_calls_total", &[("action", "StopDtsJob")])
            .await,
        3.0
    );
    let unowned = ns.api::<DtsJob>().get("job-6").await.unwrap();
    assert_eq!(unowned.status, None);
}
