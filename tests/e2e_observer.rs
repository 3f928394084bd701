//! End to end: the batch observer on the real kube-apiserver and the real
//! `dts-emulator`. 300 DtsJobs of one account in one region are read with
//! DescribeDtsJobs in batches of 30: each cycle makes at most
//! ceil(300 / 30) + 1 calls, none is throttled, and the observation alone
//! writes nothing to the DtsJobs.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use dts_operator::crd::DtsJob;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, PostParams};
use serde_json::{json, Value};
use support::stack::{self, journal_time_ms, Emulator, Operator, OperatorOptions, ACCESS_KEY_ID, ACCESS_KEY_SECRET};
use support::{wait_for, TestNamespace};

const JOBS: usize = 300;
const SECRET_NAME: &str = "aliyun-dts-credentials";
const CYCLES: &str = "dts_operator_observe_cycles_total";
/// A pause longer than this between two DescribeDtsJobs calls starts a new
/// cycle (cycles are 2 s apart; one cycle's calls are ~50 ms apart).
const CYCLE_GAP_MS: i64 = 1000;

fn job_id(i: usize) -> String {
    format!("dtsobs{i:03}")
}

/// The DescribeDtsJobs journal entries, split into cycles by time gaps.
fn cycles(entries: &[Value]) -> Vec<Vec<&Value>> {
    let mut out: Vec<Vec<&Value>> = Vec::new();
    let mut last = None;
    for e in entries {
        let t = journal_time_ms(e);
        if last.is_none_or(|l| t - l > CYCLE_GAP_MS) {
            out.push(Vec::new());
        }
        out.last_mut().expect("a cycle").push(e);
        last = Some(t);
    }
    out
}

async fn resource_versions(ns: &TestNamespace) -> BTreeMap<String, String> {
    ns.api::<DtsJob>()
        .list(&ListParams::default())
        .await
        .expect("listing DtsJobs")
        .items
        .into_iter()
        .map(|j| {
            (
                j.metadata.name.clone().unwrap_or_default(),
                j.metadata.resource_version.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn three_hundred_jobs_are_read_in_batches_of_thirty() {
    let ns = TestNamespace::new("observer-batches").await;
    let jobs: Vec<Value> = (0..JOBS).map(|i| stack::job(&job_id(i), None, false)).collect();
    let emu = Emulator::start(&ns, "emulator", json!({"accounts": [stack::account()], "jobs": jobs})).await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": SECRET_NAME},
        "stringData": {"accessKeyId": ACCESS_KEY_ID, "accessKeySecret": ACCESS_KEY_SECRET},
    }))
    .expect("Secret object");
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("creating the Secret");
    let api = ns.api::<DtsJob>();
    futures::stream::iter(0..JOBS)
        .map(|i| {
            let api = api.clone();
            async move {
                let job: DtsJob = support::dtsjob_object(
                    &format!("job-{i:03}"),
                    json!({"jobId": job_id(i), "regionId": "cn-hangzhou",
                           "credentialsSecretRef": {"name": SECRET_NAME}}),
                );
                api.create(&PostParams::default(), &job)
                    .await
                    .unwrap_or_else(|e| panic!("creating DtsJob {i}: {e}"));
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;

    let op = Operator::start(
        &ns,
        "operator",
        &emu.url,
        OperatorOptions {
            extra_args: vec![
                "--poll-interval".into(),
                "2s".into(),
                "--dts-rate-limit".into(),
                "100".into(),
            ],
            ..Default::default()
        },
    );

    // The positive signal: cycles ran, and every DtsJob has been reconciled.
    wait_for(
        "the first observe cycle",
        Duration::from_secs(90),
        Duration::from_millis(200),
        || async { (op.metric(CYCLES, &[]).await >= 1.0).then_some(()) },
    )
    .await;
    wait_for(
        "every DtsJob to show DTS's view in its status",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || async {
            let list = api.list(&ListParams::default()).await.ok()?;
            let shown = |j: &DtsJob| {
                j.status
                    .as_ref()
                    .and_then(|s| s.directions.first())
                    .and_then(|d| d.observed.as_ref())
                    .is_some()
            };
            (list.items.len() == JOBS && list.items.iter().all(shown)).then_some(())
        },
    )
    .await;
    // Let the reconciles the first cycle asked for finish writing, then
    // take the resourceVersions.
    let settled = op.metric(CYCLES, &[]).await;
    wait_for(
        "one more observe cycle",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async { (op.metric(CYCLES, &[]).await > settled).then_some(()) },
    )
    .await;
    let before = resource_versions(&ns).await;
    let from = op.metric(CYCLES, &[]).await;
    let from_ms = jiff::Timestamp::now().as_millisecond();
    wait_for(
        "three more observe cycles",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async { (op.metric(CYCLES, &[]).await >= from + 3.0).then_some(()) },
    )
    .await;
    let after = resource_versions(&ns).await;
    let total_cycles = op.metric(CYCLES, &[]).await;

    let describes = emu.calls("DescribeDtsJobs").await;
    let cycles = cycles(&describes);
    let per_cycle: Vec<usize> = cycles.iter().map(Vec::len).collect();
    println!("DescribeDtsJobs calls per observe cycle ({JOBS} DtsJobs, one account, one region): {per_cycle:?}");
    // The three cycles counted after `from` each read every job (all are
    // due at a 2 s interval). Earlier, a cycle woken by a reconcile that met
    // a job not read yet may find nothing due and call nothing, so the
    // metric may count more cycles than the journal shows, never fewer.
    let read_since = cycles.iter().filter(|c| journal_time_ms(c[0]) >= from_ms).count();
    assert!(
        read_since >= 3 && cycles.len() as f64 <= total_cycles + 1.0,
        "{} cycles in the journal ({read_since} since the count of {from}), {total_cycles} by the metric",
        cycles.len()
    );
    let bound = JOBS.div_ceil(30) + 1;
    for (n, cycle) in cycles.iter().enumerate() {
        assert!(
            cycle.len() <= bound,
            "cycle {n} made {} calls (bound {bound})",
            cycle.len()
        );
        for e in cycle {
            assert_eq!(
                e["errorCode"],
                Value::Null,
                "cycle {n}: no call failed or was throttled: {e}"
            );
            assert_eq!(e["params"]["PageSize"], "30");
            assert_eq!(e["params"]["Region"], "cn-hangzhou");
        }
    }
    // Every completed cycle (the last may still be running) read every job.
    for (n, cycle) in cycles[..cycles.len() - 1].iter().enumerate() {
        let ids: BTreeSet<&str> = cycle
            .iter()
            .flat_map(|e| e["params"]["DtsJobId"].as_str().unwrap_or_default().split(','))
            .collect();
        assert_eq!(ids.len(), JOBS, "cycle {n} read every job");
    }
    assert_eq!(op.metric("dts_operator_observe_throttled_total", &[]).await, 0.0);
    let last_calls = op.metric("dts_operator_observe_calls_per_cycle", &[]).await;
    assert!(
        (1.0..=bound as f64).contains(&last_calls),
        "calls of the last cycle: {last_calls}"
    );
    assert_eq!(op.metric("dts_operator_observed_jobs", &[]).await, JOBS as f64);
    assert_eq!(
        emu.journal()
            .await
            .iter()
            .filter(|e| e["action"] != "DescribeDtsJobs")
            .count(),
        0,
        "desiredState unset: no other DTS call"
    );

    // Observation alone writes nothing: the resourceVersions held across
    // the cycles.
    assert_eq!(before.len(), JOBS);
    let changed: Vec<&String> = before
        .iter()
        .filter(|(name, rv)| after.get(*name) != Some(rv))
        .map(|(name, _)| name)
        .collect();
    assert!(changed.is_empty(), "DtsJobs written during cycles: {changed:?}");
}
