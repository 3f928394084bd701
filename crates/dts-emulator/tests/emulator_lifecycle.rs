//! The job lifecycle beyond a single call: transitions that take time,
//! out-of-band changes through the admin API (as the console would make
//! them), change-tracking jobs, DescribeDtsJobs paging and filtering, and
//! the Describe* quota per (AccessKeyId, region).

mod emulator_support;

use std::time::{Duration, Instant};

use emulator_support::*;
use serde_json::{json, Value};

const ACCOUNTS: &str = r#"
accounts:
  - accessKeyId: testAccessKeyId
    accessKeySecret: testAccessKeySecret
  - accessKeyId: stsAccessKeyId
    accessKeySecret: stsAccessKeySecret
    securityToken: sts-token-value-CAIS
"#;

fn lifecycle_args<'a>(job: &'a str, dir: &'a str) -> [(&'static str, &'a str); 3] {
    [
        ("DtsJobId", job),
        ("RegionId", "cn-hangzhou"),
        ("SynchronizationDirection", dir),
    ]
}

async fn detail(emu: &Emu, job: &str, dir: &str) -> Value {
    let r = emu
        .v3("DescribeDtsJobDetail", &lifecycle_args(job, dir), &creds())
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["Success"], true, "{}", r.text);
    r.json
}

async fn state(emu: &Emu, job: &str, body: Value) -> Reply {
    emu.admin_post(&format!("jobs/{job}/state"), body).await
}

/// Polls DescribeDtsJobDetail until `dir` shows `want`; returns when it did.
async fn wait_for_status(emu: &Emu, job: &str, dir: &str, want: &str, limit: Duration) -> Instant {
    let deadline = Instant::now() + limit;
    loop {
        let d = detail(emu, job, dir).await;
        if d["Status"] == want {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "{job} {dir} never became {want}: {d}");
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
}

#[tokio::test]
async fn lifecycle_calls_answer_at_once_but_take_transition_ms_to_take_effect() {
    let cfg = format!(
        "{ACCOUNTS}jobs:\n  - {{jobId: slow, instanceId: slowinst, regionId: cn-hangzhou, twoWay: true, transitionMs: 700}}\n"
    );
    let emu = start_with(&cfg).await;
    let c = creds();

    // Configured: every direction takes 700 ms.
    let t0 = Instant::now();
    let r = emu.v1("SuspendDtsJob", &lifecycle_args("slow", "Forward"), &c).await;
    assert_eq!(r.json["Success"], true, "{}", r.text);
    assert!(
        t0.elapsed() < Duration::from_millis(700),
        "the answer waited for the transition"
    );
    assert_eq!(detail(&emu, "slow", "Forward").await["Status"], "Synchronizing");
    let job = emu.admin_get("jobs/slow").await;
    assert_eq!(job["Forward"]["pending"]["status"], "Suspending", "{job}");
    assert_eq!(job["Forward"]["transitionMs"], 700);
    let reached = wait_for_status(&emu, "slow", "Forward", "Suspending", Duration::from_secs(10)).await;
    assert!(reached - t0 >= Duration::from_millis(700), "{:?}", reached - t0);
    assert_eq!(emu.admin_get("jobs/slow").await["Forward"]["pending"], Value::Null);

    // Start resumes after its own 700 ms.
    let t1 = Instant::now();
    let r = emu.v3("StartDtsJob", &lifecycle_args("slow", "Forward"), &c).await;
    assert_eq!(r.json["Success"], true, "{}", r.text);
    let reached = wait_for_status(&emu, "slow", "Forward", "Synchronizing", Duration::from_secs(10)).await;
    assert!(reached - t1 >= Duration::from_millis(700), "{:?}", reached - t1);

    // Set through the admin API on the Reverse direction only: a Stop takes
    // 300 ms there, the Forward direction keeps its 700 ms.
    let r = state(&emu, "slow", json!({"direction": "Reverse", "transitionMs": 300})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["Reverse"]["transitionMs"], 300);
    assert_eq!(r.json["Forward"]["transitionMs"], 700);
    let t2 = Instant::now();
    let r = emu.v1("StopDtsJob", &lifecycle_args("slow", "Reverse"), &c).await;
    assert_eq!(r.json["Success"], true, "{}", r.text);
    assert_eq!(emu.job_status("slow").await["Reverse"], "Synchronizing");
    let reached = wait_for_status(&emu, "slow", "Reverse", "Finished", Duration::from_secs(10)).await;
    assert!(reached - t2 >= Duration::from_millis(300), "{:?}", reached - t2);
    assert_eq!(
        emu.job_status("slow").await,
        json!({"Forward": "Synchronizing", "Reverse": "Finished"})
    );
    // Finished is terminal once reached.
    let r = emu.v1("StartDtsJob", &lifecycle_args("slow", "Reverse"), &c).await;
    assert_eq!(r.err_code(), "InvalidJobStatus", "{}", r.text);

    // Every lifecycle call went through the journal like StopDtsJob.
    let actions: Vec<Value> = emu
        .journal()
        .await
        .into_iter()
        .filter(|e| e["action"] != "DescribeDtsJobDetail")
        .map(|e| json!([e["action"], e["authOk"], e["errorCode"]]))
        .collect();
    assert_eq!(
        actions,
        [
            json!(["SuspendDtsJob", true, null]),
            json!(["StartDtsJob", true, null]),
            json!(["StopDtsJob", true, null]),
            json!(["StartDtsJob", true, "InvalidJobStatus"]),
        ]
    );
    emu.stop().await;
}

#[tokio::test]
async fn default_transitions_are_immediate_and_describe_reports_delay_and_checkpoint() {
    let emu = start().await;
    let r = emu
        .v1("SuspendDtsJob", &lifecycle_args("dtsjob1way", "Forward"), &creds())
        .await;
    assert_eq!(r.json["Success"], true, "{}", r.text);
    let d = detail(&emu, "dtsjob1way", "Forward").await;
    assert_eq!(d["Status"], "Suspending");
    assert_eq!((d["Delay"].clone(), d["ErrorMessage"].clone()), (json!(0), json!("")));
    let cp = d["Checkpoint"].as_i64().unwrap();
    assert!((cp - jiff::Timestamp::now().as_second()).abs() <= 5, "{d}");
    // DtsJobDirection only for two-way jobs.
    assert!(d.get("DtsJobDirection").is_none(), "{d}");
    assert_eq!(
        detail(&emu, "dtsjob2way", "Reverse").await["DtsJobDirection"],
        "Reverse"
    );
    emu.stop().await;
}

#[tokio::test]
async fn out_of_band_changes_fail_suspend_resume_and_finish_a_direction() {
    let emu = start().await;
    let c = creds();

    // Fail the Reverse direction, with lag and a checkpoint.
    let r = state(
        &emu,
        "dtsjob2way",
        json!({"direction": "Reverse", "status": "Failed", "errorMessage": "binlog purged on the source",
               "delayMs": 125000, "checkpoint": 1700000000}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["Reverse"]["status"], "Failed");
    let d = detail(&emu, "dtsjob2way", "Reverse").await;
    assert_eq!(d["Status"], "Failed");
    assert_eq!(d["ErrorMessage"], "binlog purged on the source");
    assert_eq!(d["Delay"], 125000);
    assert_eq!(d["Checkpoint"], 1_700_000_000);
    assert_eq!(d["DtsJobDirection"], "Reverse");
    let fwd = detail(&emu, "dtsjob2way", "Forward").await;
    assert_eq!(
        (fwd["Status"].clone(), fwd["ErrorMessage"].clone()),
        (json!("Synchronizing"), json!(""))
    );
    // DescribeDtsJobs shows it in the nested ReverseJob.
    let r = emu
        .v1(
            "DescribeDtsJobs",
            &[
                ("Region", "cn-hangzhou"),
                ("JobType", "SYNC"),
                ("DtsJobId", "dtsjob2way"),
            ],
            &c,
        )
        .await;
    let rev = &r.json["DtsJobList"][0]["ReverseJob"];
    assert_eq!(
        (rev["Status"].clone(), rev["ErrorMessage"].clone(), rev["Delay"].clone()),
        (json!("Failed"), json!("binlog purged on the source"), json!(125000)),
        "{}",
        r.text
    );

    // Failed without a message gets a default one; resuming clears it.
    let r = state(&emu, "dtsjob1way", json!({"status": "Failed"})).await;
    assert!(
        !r.json["Forward"]["errorMessage"].as_str().unwrap().is_empty(),
        "{}",
        r.text
    );
    assert!(!detail(&emu, "dtsjob1way", "Forward").await["ErrorMessage"]
        .as_str()
        .unwrap()
        .is_empty());
    state(&emu, "dtsjob1way", json!({"status": "Synchronizing"})).await;
    let d = detail(&emu, "dtsjob1way", "Forward").await;
    assert_eq!(
        (d["Status"].clone(), d["ErrorMessage"].clone()),
        (json!("Synchronizing"), json!(""))
    );

    // Suspended from the console; StartDtsJob resumes it.
    state(
        &emu,
        "dtsjob1way",
        json!({"direction": "Forward", "status": "Suspending"}),
    )
    .await;
    assert_eq!(detail(&emu, "dtsjob1way", "Forward").await["Status"], "Suspending");
    let r = emu
        .v1("StartDtsJob", &lifecycle_args("dtsjob1way", "Forward"), &c)
        .await;
    assert_eq!(r.json["Success"], true);
    assert_eq!(emu.job_status("dtsjob1way").await["Forward"], "Synchronizing");

    // A status change cancels a pending transition.
    state(&emu, "dtsjob1way", json!({"transitionMs": 60000})).await;
    let r = emu
        .v1("SuspendDtsJob", &lifecycle_args("dtsjob1way", "Forward"), &c)
        .await;
    assert_eq!(r.json["Success"], true);
    assert_eq!(
        emu.admin_get("jobs/dtsjob1way").await["Forward"]["pending"]["status"],
        "Suspending"
    );
    let r = state(&emu, "dtsjob1way", json!({"status": "Finished"})).await;
    assert_eq!(r.json["Forward"]["pending"], Value::Null, "{}", r.text);
    assert_eq!(detail(&emu, "dtsjob1way", "Forward").await["Status"], "Finished");
    let r = emu.v3("StopDtsJob", &lifecycle_args("dtsjob1way", "Forward"), &c).await;
    assert_eq!(r.err_code(), "InvalidJobStatus");

    // Refusals: unknown job, Reverse of a one-way job, bad fields.
    assert_eq!(state(&emu, "nosuchjob", json!({"status": "Failed"})).await.status, 404);
    let r = state(&emu, "dtsjob1way", json!({"direction": "Reverse", "status": "Failed"})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = state(&emu, "dtsjob1way", json!({"direction": "Sideways"})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = state(&emu, "dtsjob1way", json!({"colour": "red"})).await;
    assert!(r.status == 400 && r.text.contains("colour"), "{}", r.text);
    let r = state(&emu, "dtsjob1way", json!({"status": ""})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = state(&emu, "dtsjob2way", json!({"jobType": "SUBSCRIBE"})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = emu
        .http
        .get(format!("{}/_emulator/jobs/nosuchjob", emu.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // The admin API is not journaled: only DTS calls are.
    assert!(emu.journal().await.iter().all(|e| e["action"] != Value::Null));
    emu.stop().await;
}

#[tokio::test]
async fn suspend_on_a_change_tracking_job_succeeds_and_changes_nothing() {
    let cfg = format!(
        "{ACCOUNTS}jobs:\n  - {{jobId: track, regionId: cn-hangzhou, jobType: SUBSCRIBE, status: Normal}}\n  - {{jobId: sync1, regionId: cn-hangzhou}}\n"
    );
    let emu = start_with(&cfg).await;
    let c = creds();
    for r in [
        emu.v1("SuspendDtsJob", &lifecycle_args("track", "Forward"), &c).await,
        emu.v3("SuspendDtsJob", &lifecycle_args("track", "Forward"), &c).await,
    ] {
        assert_eq!((r.status, r.json["Success"].clone()), (200, json!(true)), "{}", r.text);
    }
    let d = detail(&emu, "track", "Forward").await;
    assert_eq!(
        (d["Status"].clone(), d["JobType"].clone()),
        (json!("Normal"), json!("SUBSCRIBE"))
    );
    assert_eq!(emu.admin_get("jobs/track").await["Forward"]["pending"], Value::Null);
    // Stop still ends it.
    let r = emu.v1("StopDtsJob", &lifecycle_args("track", "Forward"), &c).await;
    assert_eq!(r.json["Success"], true);
    assert_eq!(emu.job_status("track").await["Forward"], "Finished");

    // JobType filters DescribeDtsJobs.
    let r = emu
        .v1(
            "DescribeDtsJobs",
            &[("Region", "cn-hangzhou"), ("JobType", "SUBSCRIBE")],
            &c,
        )
        .await;
    assert_eq!(r.json["TotalRecordCount"], 1, "{}", r.text);
    assert_eq!(r.json["DtsJobList"][0]["DtsJobId"], "track");
    let r = emu
        .v1("DescribeDtsJobs", &[("Region", "cn-hangzhou"), ("JobType", "sync")], &c)
        .await;
    assert_eq!(r.json["TotalRecordCount"], 1, "{}", r.text);

    // A synchronization job made change tracking through the admin API.
    let r = state(&emu, "sync1", json!({"jobType": "subscribe"})).await;
    assert_eq!(r.json["jobType"], "SUBSCRIBE", "{}", r.text);
    let r = emu.v1("SuspendDtsJob", &lifecycle_args("sync1", "Forward"), &c).await;
    assert_eq!(r.json["Success"], true);
    assert_eq!(emu.job_status("sync1").await["Forward"], "Synchronizing");
    emu.stop().await;
}

#[tokio::test]
async fn describe_dts_jobs_pages_65_jobs_30_at_a_time() {
    let mut cfg = format!("{ACCOUNTS}jobs:\n");
    for i in 0..65 {
        // MIGRATION: the type DescribeDtsJobs lists when JobType is left out.
        cfg.push_str(&format!(
            "  - {{jobId: job{i:02}, regionId: cn-hangzhou, jobType: MIGRATION}}\n"
        ));
    }
    cfg.push_str("  - {jobId: elsewhere, regionId: cn-beijing, jobType: MIGRATION}\n");
    cfg.push_str("  - {jobId: synced, regionId: cn-hangzhou}\n");
    let emu = start_with(&cfg).await;
    let c = creds();
    let mut seen = Vec::new();
    for (page, want) in [(1, 30), (2, 30), (3, 5), (4, 0)] {
        let n = page.to_string();
        let r = emu
            .v3(
                "DescribeDtsJobs",
                &[("Region", "cn-hangzhou"), ("PageSize", "30"), ("PageNumber", &n)],
                &c,
            )
            .await;
        assert_eq!(r.json["Success"], true, "{}", r.text);
        assert_eq!(r.json["TotalRecordCount"], 65);
        assert_eq!(r.json["PageNumber"], page);
        assert_eq!(r.json["PageRecordCount"], want);
        let list = r.json["DtsJobList"].as_array().unwrap();
        assert_eq!(list.len(), want);
        seen.extend(list.iter().map(|j| j["DtsJobId"].as_str().unwrap().to_owned()));
    }
    let expected: Vec<String> = (0..65).map(|i| format!("job{i:02}")).collect();
    assert_eq!(seen, expected, "each job exactly once, in a stable order");

    // Defaults: PageSize 20, PageNumber 1; RegionId is accepted for Region.
    let r = emu.v1("DescribeDtsJobs", &[("RegionId", "cn-hangzhou")], &c).await;
    assert_eq!(
        (
            r.json["PageRecordCount"].clone(),
            r.json["PageNumber"].clone(),
            r.json["TotalRecordCount"].clone()
        ),
        (json!(20), json!(1), json!(65)),
        "{}",
        r.text
    );
    let r = emu.v1("DescribeDtsJobs", &[("Region", "cn-beijing")], &c).await;
    assert_eq!(r.json["TotalRecordCount"], 1);
    // PageSize beyond 30 is refused.
    let r = emu
        .v1("DescribeDtsJobs", &[("Region", "cn-hangzhou"), ("PageSize", "31")], &c)
        .await;
    assert_eq!((r.status, r.code()), (400, "InvalidParameter"), "{}", r.text);
    emu.stop().await;
}

#[tokio::test]
async fn describe_dts_jobs_filters_by_id_list_and_nests_reverse_jobs() {
    let cfg = format!(
        "{ACCOUNTS}jobs:\n  - {{jobId: a, instanceId: ia, regionId: cn-hangzhou, twoWay: true, delayMs: 42, checkpoint: 1700000001}}\n  - {{jobId: b, regionId: cn-hangzhou}}\n  - {{jobId: c, regionId: cn-hangzhou}}\n  - {{jobId: d, regionId: cn-beijing}}\n"
    );
    let emu = start_with(&cfg).await;
    let c = creds();
    emu.v1("StopDtsJob", &lifecycle_args("a", "Reverse"), &c).await;
    let r = emu
        .v3(
            "DescribeDtsJobs",
            &[
                ("Region", "cn-hangzhou"),
                ("JobType", "SYNC"),
                ("DtsJobId", "a, c,nosuch,d"),
            ],
            &c,
        )
        .await;
    assert_eq!(r.json["TotalRecordCount"], 2, "{}", r.text);
    let list = r.json["DtsJobList"].as_array().unwrap();
    let ids: Vec<&str> = list.iter().map(|j| j["DtsJobId"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a", "c"]);
    let a = &list[0];
    assert_eq!(
        (
            a["Status"].clone(),
            a["DtsJobDirection"].clone(),
            a["DtsInstanceID"].clone()
        ),
        (json!("Synchronizing"), json!("Forward"), json!("ia"))
    );
    // The SDK model types DescribeDtsJobs's Checkpoint as a string.
    assert_eq!(
        (a["Delay"].clone(), a["Checkpoint"].clone()),
        (json!(42), json!("1700000001"))
    );
    let rev = &a["ReverseJob"];
    assert_eq!(rev["DtsJobId"], "a");
    assert_eq!(rev["DtsJobDirection"], "Reverse");
    assert_eq!(rev["Status"], "Finished");
    assert_eq!(
        (rev["Delay"].clone(), rev["ErrorMessage"].clone()),
        (json!(42), json!(""))
    );
    assert!(list[1].get("ReverseJob").is_none() && list[1].get("DtsJobDirection").is_none());

    // Status filter, case-insensitive.
    state(&emu, "b", json!({"status": "Suspending"})).await;
    let r = emu
        .v1(
            "DescribeDtsJobs",
            &[("Region", "cn-hangzhou"), ("JobType", "SYNC"), ("Status", "suspending")],
            &c,
        )
        .await;
    assert_eq!(r.json["TotalRecordCount"], 1, "{}", r.text);
    assert_eq!(r.json["DtsJobList"][0]["DtsJobId"], "b");
    emu.stop().await;
}

fn outcome(r: &Reply) -> String {
    if r.status == 200 {
        assert_eq!(r.json["Success"], true, "{}", r.text);
        "ok".into()
    } else {
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(r.headers.contains_key("x-acs-retry-after"), "{:?}", r.headers);
        // The gateway shape of the throttleNext fault.
        let mut keys: Vec<&String> = r.json.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["Code", "HostId", "Message", "Recommend", "RequestId"]);
        r.code().to_owned()
    }
}

#[tokio::test]
async fn describe_quota_throttles_one_account_and_region_only() {
    let cfg = format!("describeQps: 5\n{ACCOUNTS}jobs:\n  - {{jobId: j, regionId: cn-hangzhou}}\n  - {{jobId: k, regionId: cn-beijing}}\n");
    let emu = start_with(&cfg).await;
    assert_eq!(emu.admin_get("faults").await["describeQps"], 5);
    let here = [("DtsJobId", "j"), ("RegionId", "cn-hangzhou")];
    let t0 = Instant::now();
    let mut codes = Vec::new();
    for i in 0..10 {
        let r = if i % 2 == 0 {
            emu.v1("DescribeDtsJobDetail", &here, &creds()).await
        } else {
            emu.v3("DescribeDtsJobs", &[("Region", "cn-hangzhou")], &creds()).await
        };
        codes.push(outcome(&r));
    }
    let elapsed = t0.elapsed();
    // A burst of 5, then at most one more token per 200 ms.
    assert!(codes[..5].iter().all(|c| c == "ok"), "{codes:?}");
    let ok = codes.iter().filter(|c| *c == "ok").count();
    let refilled = usize::try_from(elapsed.as_millis() / 200).unwrap();
    assert!(ok <= 5 + refilled + 1, "{codes:?} in {elapsed:?}");
    if elapsed < Duration::from_millis(900) {
        assert!(
            codes.contains(&"Throttling.User".to_owned()),
            "{codes:?} in {elapsed:?}"
        );
    }
    // Meanwhile another account, and the same account in another region,
    // are not throttled; nor are lifecycle calls.
    let sts = emu.v1("DescribeDtsJobDetail", &here, &sts_creds()).await;
    assert_eq!(outcome(&sts), "ok");
    let other_region = emu
        .v3(
            "DescribeDtsJobDetail",
            &[("DtsJobId", "k"), ("RegionId", "cn-beijing")],
            &creds(),
        )
        .await;
    assert_eq!(outcome(&other_region), "ok");
    let stop = emu.v1("StopDtsJob", &lifecycle_args("j", "Forward"), &creds()).await;
    assert_eq!(outcome(&stop), "ok");
    // Throttled calls are journaled, authenticated, with the code.
    let throttled = emu
        .journal()
        .await
        .into_iter()
        .filter(|e| e["errorCode"] == "Throttling.User")
        .collect::<Vec<_>>();
    assert!(!throttled.is_empty());
    assert!(throttled
        .iter()
        .all(|e| e["authOk"] == true && e["httpStatus"] == 400 && e["accessKeyId"] == AK));

    // 0 removes the quota; DELETE /_emulator/faults restores the config's.
    let r = emu.admin_post("faults", json!({"describeQps": 0})).await;
    assert_eq!(r.json["describeQps"], 0, "{}", r.text);
    for _ in 0..12 {
        assert_eq!(outcome(&emu.v1("DescribeDtsJobDetail", &here, &creds()).await), "ok");
    }
    let del = emu
        .http
        .delete(format!("{}/_emulator/faults", emu.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    assert_eq!(emu.admin_get("faults").await["describeQps"], 5);
    emu.stop().await;
}

#[tokio::test]
async fn describe_quota_defaults_to_20_per_second() {
    let emu = start().await;
    assert_eq!(emu.admin_get("faults").await["describeQps"], 20);
    let api = [("DtsJobId", "dtsjob2way"), ("RegionId", "cn-hangzhou")];
    let t0 = Instant::now();
    let mut codes = Vec::new();
    for _ in 0..40 {
        codes.push(outcome(&emu.v1("DescribeDtsJobDetail", &api, &creds()).await));
    }
    let elapsed = t0.elapsed();
    assert!(codes[..20].iter().all(|c| c == "ok"), "{codes:?}");
    if elapsed < Duration::from_millis(950) {
        assert!(
            codes.contains(&"Throttling.User".to_owned()),
            "{codes:?} in {elapsed:?}"
        );
    }
    emu.stop().await;
}
