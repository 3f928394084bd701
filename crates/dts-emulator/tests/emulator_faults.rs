//! Fault injection: faults that refuse a call leave the job untouched;
//! faults that sabotage the answer come after the call took effect and was
//! journaled, so a client that sees an error may still have stopped the job.

mod emulator_support;

use std::time::Duration;

use emulator_support::*;
use serde_json::json;

const STOP: [(&str, &str); 3] = [
    ("DtsJobId", "dtsjob2way"),
    ("RegionId", "cn-hangzhou"),
    ("SynchronizationDirection", "Forward"),
];

#[tokio::test]
async fn throttle_next_refuses_before_any_effect_with_retry_after() {
    let emu = start().await;
    emu.admin_post("faults", json!({"throttleNext": 2, "retryAfterMs": 1500}))
        .await;
    for r in [
        emu.v1("StopDtsJob", &STOP, &creds()).await,
        emu.v3("StopDtsJob", &STOP, &creds()).await,
    ] {
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(r.code(), "Throttling.User");
        assert_eq!(r.headers["x-acs-retry-after"], "1500");
    }
    assert_eq!(emu.job_status("dtsjob2way").await["Forward"], "Synchronizing");
    let e = emu.last_entry().await;
    assert_eq!(
        (e["authOk"].clone(), e["errorCode"].clone()),
        (json!(true), json!("Throttling.User"))
    );
    // The counter is spent: the next call goes through.
    assert_eq!(emu.v1("StopDtsJob", &STOP, &creds()).await.json["Success"], true);
    emu.stop().await;
}

#[tokio::test]
async fn fail_next_answers_the_given_error_before_any_effect() {
    let emu = start().await;
    emu.admin_post(
        "faults",
        json!({"failNext": {"count": 2, "status": 503, "code": "ServiceUnavailable"}}),
    )
    .await;
    let r = emu.v3("StopDtsJob", &STOP, &creds()).await;
    assert_eq!((r.status, r.code()), (503, "ServiceUnavailable"));
    let r = emu.v1("StopDtsJob", &STOP, &creds()).await;
    assert_eq!((r.status, r.code()), (503, "ServiceUnavailable"));
    assert!(r.json["HostId"].is_string() && r.json["Recommend"].is_string());
    assert_eq!(emu.job_status("dtsjob2way").await["Forward"], "Synchronizing");
    assert_eq!(emu.v3("StopDtsJob", &STOP, &creds()).await.json["Success"], true);
    emu.stop().await;
}

#[tokio::test]
async fn latency_delays_the_answer_after_the_stop_took_effect() {
    let emu = start().await;
    emu.admin_post("faults", json!({"latencyMs": 3000})).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let url = emu.v1_url("StopDtsJob", &STOP, &creds());
    let err = impatient.post(url).send().await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // The client gave up, yet the job is stopped and the call journaled.
    assert_eq!(emu.job_status("dtsjob2way").await["Forward"], "Finished");
    let e = emu.last_entry().await;
    assert_eq!(
        (e["httpStatus"].clone(), e["authOk"].clone()),
        (json!(200), json!(true))
    );
    emu.admin_post("faults", json!({"latencyMs": 0})).await;
    emu.stop().await;
}

#[tokio::test]
async fn reset_next_closes_the_connection_after_the_stop_took_effect() {
    let emu = start().await;
    emu.admin_post("faults", json!({"resetNext": 1})).await;
    let url = emu.v1_url("StopDtsJob", &STOP, &creds());
    let err = emu.http.post(url).send().await.unwrap_err();
    assert!(!err.is_timeout() && err.status().is_none(), "{err:?}");
    assert_eq!(emu.job_status("dtsjob2way").await["Forward"], "Finished");
    let e = emu.last_entry().await;
    assert_eq!(e["fault"], "reset");
    assert_eq!(e["httpStatus"], serde_json::Value::Null);
    // The next call is answered normally (on a new connection).
    let r = emu
        .v3("DescribeDtsJobDetail", &[("DtsJobId", "dtsjob2way")], &creds())
        .await;
    assert_eq!(r.json["Status"], "Finished");
    emu.stop().await;
}

#[tokio::test]
async fn malformed_next_answers_200_with_a_non_json_body_after_the_effect() {
    let emu = start().await;
    emu.admin_post("faults", json!({"malformedNext": 1})).await;
    let r = emu.v3("StopDtsJob", &STOP, &creds()).await;
    assert_eq!(r.status, 200);
    assert!(
        serde_json::from_str::<serde_json::Value>(&r.text).is_err(),
        "{}",
        r.text
    );
    assert_eq!(emu.job_status("dtsjob2way").await["Forward"], "Finished");
    assert_eq!(emu.last_entry().await["fault"], "malformed");
    emu.stop().await;
}

#[tokio::test]
async fn qps_limit_throttles_calls_beyond_it() {
    let emu = start().await;
    emu.admin_post("faults", json!({"qps": 1})).await;
    let api = [("DtsJobId", "dtsjob2way")];
    let mut codes = Vec::new();
    for _ in 0..4 {
        let r = emu.v1("DescribeDtsJobDetail", &api, &creds()).await;
        codes.push(if r.status == 200 {
            "ok".to_owned()
        } else {
            r.code().to_owned()
        });
        if r.status != 200 {
            assert!(r.headers.contains_key("x-acs-retry-after"));
        }
    }
    assert_eq!(codes[0], "ok");
    assert!(
        codes.iter().filter(|c| *c == "Throttling.User").count() >= 2,
        "{codes:?}"
    );
    emu.admin_post("faults", json!({"qps": 0})).await;
    assert_eq!(emu.v1("DescribeDtsJobDetail", &api, &creds()).await.status, 200);
    emu.stop().await;
}

#[tokio::test]
async fn account_qps_throttles_every_action_of_one_account_before_any_effect() {
    let emu = start().await;
    let r = emu
        .admin_post("faults", json!({"accountQps": {"testAccessKeyId": 1}}))
        .await;
    assert_eq!(r.json["accountQps"], json!({"testAccessKeyId": 1}), "{}", r.text);
    // The burst of one goes; the next StopDtsJob of that account is throttled.
    let reverse = [
        ("DtsJobId", "dtsjob2way"),
        ("RegionId", "cn-hangzhou"),
        ("SynchronizationDirection", "Reverse"),
    ];
    assert_eq!(emu.v1("StopDtsJob", &STOP, &creds()).await.json["Success"], true);
    let r = emu.v3("StopDtsJob", &reverse, &creds()).await;
    assert_eq!((r.status, r.code()), (400, "Throttling.User"), "{}", r.text);
    let wait: u64 = r.headers["x-acs-retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=1000).contains(&wait), "{wait}");
    assert_eq!(
        emu.job_status("dtsjob2way").await["Reverse"],
        "Synchronizing",
        "refused before any effect"
    );
    let e = emu.last_entry().await;
    assert_eq!(
        (e["authOk"].clone(), e["errorCode"].clone()),
        (json!(true), json!("Throttling.User"))
    );
    // Describe* calls are counted too; another account is not limited.
    let describe = emu
        .v1(
            "DescribeDtsJobDetail",
            &[("DtsJobId", "dtsjob1way"), ("RegionId", "cn-hangzhou")],
            &creds(),
        )
        .await;
    assert_eq!(describe.code(), "Throttling.User");
    for _ in 0..5 {
        let r = emu
            .v1(
                "DescribeDtsJobDetail",
                &[("DtsJobId", "dtsjob1way"), ("RegionId", "cn-hangzhou")],
                &sts_creds(),
            )
            .await;
        assert_eq!(r.json["Success"], true, "{}", r.text);
    }
    // After the advertised wait, the account's next call goes.
    tokio::time::sleep(Duration::from_millis(wait)).await;
    assert_eq!(emu.v3("StopDtsJob", &reverse, &creds()).await.json["Success"], true);
    // DELETE clears it.
    emu.http
        .delete(format!("{}/_emulator/faults", emu.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(emu.admin_get("faults").await["accountQps"], json!({}));
    emu.stop().await;
}
