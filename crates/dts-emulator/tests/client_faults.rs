//! Every injectable DTS fault, seen through the operator's own client
//! (dts-api) against the emulator in-process: the class the client gives it
//! (retryable, ambiguous, terminal), and whether the stop took effect, which
//! is what makes the class right or wrong.

mod emulator_support;

use std::time::Duration;

use dts_api::{ClientConfig, DtsClient, ErrorClass, ErrorKind, JobRef, SignatureVersion};
use emulator_support::{creds, Emu};
use serde_json::{json, Value};

struct Case {
    name: &'static str,
    faults: Value,
    class: ErrorClass,
    kind: ErrorKind,
    reason: &'static str,
    /// Whether DTS executed the stop (the job is Finished afterwards).
    took_effect: bool,
    /// The journal's `fault` label for the call.
    label: Option<&'static str>,
}

fn cases() -> Vec<Case> {
    use ErrorClass::*;
    vec![
        Case {
            name: "reset before the request is read",
            faults: json!({"resetBeforeReadNext": 1}),
            // The client cannot tell this from a reset after the effect.
            class: Ambiguous,
            kind: ErrorKind::AfterSend,
            reason: "ConnectionReset",
            took_effect: false,
            label: Some("resetBeforeRead"),
        },
        Case {
            name: "reset after the effect",
            faults: json!({"resetNext": 1}),
            class: Ambiguous,
            kind: ErrorKind::AfterSend,
            reason: "ConnectionReset",
            took_effect: true,
            label: Some("reset"),
        },
        Case {
            name: "HTML 502 page",
            faults: json!({"html502Next": 1}),
            class: Retryable,
            kind: ErrorKind::Unreadable,
            reason: "ServiceUnavailable",
            took_effect: false,
            label: Some("html502"),
        },
        Case {
            name: "empty 200",
            faults: json!({"emptyNext": {"count": 1, "status": 200}}),
            class: Ambiguous,
            kind: ErrorKind::Unreadable,
            reason: "UnreadableResponse",
            took_effect: true,
            label: Some("empty"),
        },
        Case {
            name: "empty 503",
            faults: json!({"emptyNext": {"count": 1, "status": 503}}),
            class: Retryable,
            kind: ErrorKind::Unreadable,
            reason: "ServiceUnavailable",
            took_effect: false,
            label: Some("empty"),
        },
        Case {
            name: "10 MiB body",
            faults: json!({"hugeNext": 1}),
            class: Ambiguous,
            kind: ErrorKind::AfterSend,
            reason: "ConnectionReset",
            took_effect: true,
            label: Some("huge"),
        },
        Case {
            name: "answer after the client timeout",
            faults: json!({"latencyMs": 3000}),
            class: Ambiguous,
            kind: ErrorKind::Timeout,
            reason: "Timeout",
            took_effect: true,
            label: None,
        },
        Case {
            name: "5xx",
            faults: json!({"failNext": {"count": 1, "status": 500, "code": "InternalError"}}),
            class: Retryable,
            kind: ErrorKind::Api,
            reason: "ServiceUnavailable",
            took_effect: false,
            label: None,
        },
        Case {
            name: "clock 20 minutes behind",
            faults: json!({"clockSkewSeconds": -1200}),
            class: Terminal,
            kind: ErrorKind::Api,
            reason: "ClockSkew",
            took_effect: false,
            label: None,
        },
    ]
}

async fn add_job(emu: &Emu, job_id: &str) {
    let r = emu
        .admin_post(
            "jobs",
            json!({"jobId": job_id, "regionId": "cn-hangzhou", "status": "Synchronizing"}),
        )
        .await;
    assert!((200..300).contains(&r.status), "adding job {job_id}: {r:?}");
}

#[tokio::test]
async fn each_fault_gets_the_class_its_effect_calls_for() {
    let emu = emulator_support::start().await;
    for (i, case) in cases().into_iter().enumerate() {
        for (scheme, label) in [
            (SignatureVersion::HmacSha1, "v1"),
            (SignatureVersion::Acs3HmacSha256, "v3"),
        ] {
            let name = format!("{} ({label})", case.name);
            let job_id = format!("job-fault-{i}-{label}");
            add_job(&emu, &job_id).await;
            // A fresh client per case: a dropped connection must not leave a
            // pooled one behind for the next case.
            let dts = DtsClient::new(ClientConfig {
                endpoint_override: Some(url::Url::parse(&emu.url()).expect("emulator URL")),
                signature_version: scheme,
                timeout: Duration::from_millis(1000),
            });
            let r = emu.admin_post("faults", case.faults.clone()).await;
            assert!((200..300).contains(&r.status), "{name}: {r:?}");
            let jr = JobRef {
                job_id: job_id.clone(),
                instance_id: None,
                region_id: "cn-hangzhou".into(),
                direction: Some("Forward".into()),
            };
            let err = dts.stop_dts_job(&creds(), &jr).await.expect_err(&name);
            let r = emu
                .admin_post("faults", json!({"latencyMs": 0, "clockSkewSeconds": 0}))
                .await;
            assert!((200..300).contains(&r.status), "{name}: {r:?}");
            assert_eq!(
                (err.class, err.kind, err.reason().as_str()),
                (case.class, case.kind, case.reason),
                "{name}: {err:?}"
            );
            let status = emu.job_status(&job_id).await;
            let finished = status["Forward"] == "Finished";
            assert_eq!(finished, case.took_effect, "{name}: {status}");
            let stops: Vec<Value> = emu
                .journal()
                .await
                .into_iter()
                .filter(|e| e["action"] == "StopDtsJob" && e["params"]["DtsJobId"] == job_id.as_str())
                .collect();
            assert_eq!(stops.len(), 1, "{name}: {stops:#?}");
            assert_eq!(stops[0]["fault"].as_str(), case.label, "{name}: {:#}", stops[0]);
            // No secret in what the client reports.
            assert!(!format!("{err} {err:?}").contains(emulator_support::SECRET), "{name}");
        }
    }
    emu.stop().await;
}

#[tokio::test]
async fn throttling_storm_counts_down_with_the_servers_retry_after() {
    let emu = emulator_support::start().await;
    add_job(&emu, "job-storm").await;
    let dts = DtsClient::new(ClientConfig {
        endpoint_override: Some(url::Url::parse(&emu.url()).expect("emulator URL")),
        signature_version: SignatureVersion::HmacSha1,
        timeout: Duration::from_secs(5),
    });
    let r = emu
        .admin_post("faults", json!({"throttleNext": 5, "retryAfterMs": 250}))
        .await;
    assert!((200..300).contains(&r.status), "{r:?}");
    let jr = JobRef {
        job_id: "job-storm".into(),
        instance_id: None,
        region_id: "cn-hangzhou".into(),
        direction: Some("Forward".into()),
    };
    for n in 0..5 {
        let err = dts.stop_dts_job(&creds(), &jr).await.expect_err("throttled");
        assert_eq!(err.class, ErrorClass::Retryable, "call {n}: {err:?}");
        assert_eq!(err.retry_after, Some(Duration::from_millis(250)), "call {n}");
        assert_eq!(emu.job_status("job-storm").await["Forward"], "Synchronizing");
    }
    dts.stop_dts_job(&creds(), &jr).await.expect("the storm is over");
    assert_eq!(emu.job_status("job-storm").await["Forward"], "Finished");
    emu.stop().await;
}
