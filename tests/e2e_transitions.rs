//! End to end: `desiredState` drives a two-way DTS job through Running →
//! Suspended → Running → Stopped on the real kube-apiserver and the real
//! `dts-emulator`, whose suspend and start take a second to take effect (as
//! DTS's do): one call per direction per transition, Ready only once DTS
//! shows the target, and every RequestId kept in the history.

mod support;

use dts_operator::crd::{DtsJob, Phase};
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use support::stack::{self, Emulator, Operator, OperatorOptions};
use support::TestNamespace;

const SECRET_NAME: &str = "aliyun-dts-credentials";
/// How long the emulator takes to show a suspend's or start's target.
const TRANSITION_MS: i64 = 1000;

/// Sets desiredState and waits until Ready=True with `reason` for the new
/// generation.
async fn transition(ns: &TestNamespace, state: &str, reason: &str) -> DtsJob {
    let api = ns.api::<DtsJob>();
    api.patch(
        "two-way",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"desiredState": state}})),
    )
    .await
    .expect("setting desiredState");
    let want = Some(("True".to_owned(), reason.to_owned()));
    stack::wait_job(
        ns,
        "two-way",
        &format!("Ready=True ({reason}) after desiredState {state}"),
        |j| stack::ready_of(j) == want,
    )
    .await
}

fn calls<'a>(journal: &'a [Value], action: &str) -> Vec<&'a Value> {
    journal.iter().filter(|e| e["action"] == action).collect()
}

#[tokio::test]
async fn running_suspended_running_stopped_with_one_call_per_direction_each() {
    let ns = TestNamespace::new("transitions").await;
    let mut job = stack::job("dtsjob2waylc", Some("dtsinst2waylc"), true);
    job["transitionMs"] = json!(TRANSITION_MS);
    let emu = Emulator::start(&ns, "emulator", json!({"accounts": [stack::account()], "jobs": [job]})).await;
    stack::create_credentials_secret(&ns, SECRET_NAME).await;
    let _op = Operator::start(&ns, "operator", &emu.url, OperatorOptions::default());
    let created: DtsJob = support::dtsjob_object(
        "two-way",
        json!({"jobId": "dtsjob2waylc", "instanceId": "dtsinst2waylc", "regionId": "cn-hangzhou",
               "directions": ["Forward", "Reverse"], "desiredState": "Running",
               "credentialsSecretRef": {"name": SECRET_NAME}}),
    );
    ns.api::<DtsJob>()
        .create(&PostParams::default(), &created)
        .await
        .unwrap();

    let suspended = transition(&ns, "Suspended", "Suspended").await;
    assert_eq!(suspended.status.as_ref().unwrap().phase, Some(Phase::Suspended));
    let journal = emu.journal().await;
    let suspends = calls(&journal, "SuspendDtsJob");
    assert_eq!(suspends.len(), 2, "one SuspendDtsJob per direction: {suspends:#?}");
    // Ready only once DTS could show it: not before the transition time.
    let last_suspend = suspends.iter().map(|e| stack::journal_time_ms(e)).max().unwrap();
    for d in ["Forward", "Reverse"] {
        let r = suspended
            .status
            .as_ref()
            .unwrap()
            .directions
            .iter()
            .find(|r| r.direction.as_str() == d)
            .unwrap();
        assert_eq!(
            r.observed.as_ref().and_then(|o| o.status.as_deref()),
            Some("Suspending"),
            "{r:#?}"
        );
    }
    let confirmed_at = calls(&journal, "DescribeDtsJobDetail")
        .iter()
        .map(|e| stack::journal_time_ms(e))
        .max()
        .expect("the suspend was confirmed by reading DTS");
    assert!(
        confirmed_at >= last_suspend + TRANSITION_MS - 50,
        "Ready=True came from a read made after DTS could show Suspending ({confirmed_at} vs {last_suspend})"
    );

    let running = transition(&ns, "Running", "Running").await;
    assert_eq!(running.status.as_ref().unwrap().phase, Some(Phase::Running));
    let stopped = transition(&ns, "Stopped", "Stopped").await;
    assert_eq!(stopped.status.as_ref().unwrap().phase, Some(Phase::Stopped));

    let journal = emu.journal().await;
    for action in ["SuspendDtsJob", "StartDtsJob", "StopDtsJob"] {
        for d in ["Forward", "Reverse"] {
            let n = calls(&journal, action)
                .iter()
                .filter(|e| e["params"]["SynchronizationDirection"] == d)
                .count();
            assert_eq!(n, 1, "exactly one {action} for {d}");
        }
    }
    // Every RequestId of a call that changed the job is in the history.
    let history = &stopped.status.as_ref().unwrap().history;
    let changing = ["SuspendDtsJob", "StartDtsJob", "StopDtsJob"];
    for e in journal.iter().filter(|e| changing.iter().any(|a| e["action"] == *a)) {
        let rid = e["requestId"].as_str().unwrap();
        assert!(
            history.iter().any(|c| c.request_id.as_deref() == Some(rid)),
            "{} {rid} is in the history: {history:#?}",
            e["action"]
        );
    }
}
