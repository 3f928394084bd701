//! The operator's own DTS client (dts-api) against the emulator, in-process,
//! with no cluster: both signature schemes and STS credentials
//! succeed, and each failure the emulator can produce comes back in the
//! class the controller acts on (terminal, retryable, ambiguous).

mod emulator_support;

use std::time::{Duration, Instant};

use dts_api::{ClientConfig, Credentials, DtsClient, ErrorClass, ErrorKind, JobRef, SignatureVersion};
use emulator_support::{creds, is_upper_uuid, sts_creds, Emu, AK, SECRET, STS_AK, STS_TOKEN};
use serde_json::{json, Value};

const SCHEMES: [(SignatureVersion, &str); 2] = [
    (SignatureVersion::HmacSha1, "HMAC-SHA1"),
    (SignatureVersion::Acs3HmacSha256, "ACS3-HMAC-SHA256"),
];

const RENDERED_INVALID_DIRECTION: &str = "The Value of Input Parameter SynchronizationDirection is not valid.";

fn client(emu: &Emu, scheme: SignatureVersion, timeout: Duration) -> DtsClient {
    DtsClient::new(ClientConfig {
        endpoint_override: Some(url::Url::parse(&emu.url()).expect("emulator URL")),
        signature_version: scheme,
        timeout,
    })
}

fn job(job_id: &str, instance_id: Option<&str>, direction: &str) -> JobRef {
    JobRef {
        job_id: job_id.to_owned(),
        instance_id: instance_id.map(str::to_owned),
        region_id: "cn-hangzhou".to_owned(),
        direction: Some(direction.to_owned()),
    }
}

/// Adds a job to the emulator (`POST /_emulator/jobs`).
async fn add_job(emu: &Emu, job_id: &str, instance_id: &str, two_way: bool) {
    let r = emu
        .admin_post(
            "jobs",
            json!({"jobId": job_id, "instanceId": instance_id, "regionId": "cn-hangzhou",
                   "twoWay": two_way, "status": "Synchronizing"}),
        )
        .await;
    assert!((200..300).contains(&r.status), "adding job {job_id}: {r:?}");
}

async fn faults(emu: &Emu, body: Value) {
    let r = emu.admin_post("faults", body.clone()).await;
    assert!((200..300).contains(&r.status), "setting faults {body}: {r:?}");
}

/// The journal entries for `action` on `job_id`.
async fn calls(emu: &Emu, action: &str, job_id: &str) -> Vec<Value> {
    emu.journal()
        .await
        .into_iter()
        .filter(|e| e["action"] == action && e["params"]["DtsJobId"] == job_id)
        .collect()
}

#[tokio::test]
async fn stop_and_describe_succeed_with_both_schemes_and_sts_credentials() {
    let emu = emulator_support::start().await;
    for (scheme, scheme_label) in SCHEMES {
        for (c, key_id, sts) in [(creds(), AK, false), (sts_creds(), STS_AK, true)] {
            let case = format!("{scheme_label}, sts={sts}");
            let job_id = format!("job-{}-{}", scheme.as_str(), if sts { "sts" } else { "ak" });
            let instance = format!("inst-{}", &job_id[4..]);
            add_job(&emu, &job_id, &instance, true).await;
            let dts = client(&emu, scheme, Duration::from_secs(10));

            let detail = dts
                .describe_dts_job_detail(&c, &job(&job_id, Some(&instance), "Forward"))
                .await
                .unwrap_or_else(|e| panic!("{case}: describe: {e:?}"));
            assert_eq!(detail.status.as_deref(), Some("Synchronizing"), "{case}");
            assert!(!detail.is_finished(), "{case}");

            for d in ["Forward", "Reverse"] {
                let ok = dts
                    .stop_dts_job(&c, &job(&job_id, Some(&instance), d))
                    .await
                    .unwrap_or_else(|e| panic!("{case}: stop {d}: {e:?}"));
                assert_eq!(ok.http_status, 200, "{case}");
                let request_id = ok.request_id.clone().expect("a RequestId");
                assert!(is_upper_uuid(&request_id), "{case}: {request_id}");

                let entry = emu.last_entry().await;
                assert_eq!(entry["action"], "StopDtsJob", "{case}: {entry:#}");
                assert_eq!(entry["requestId"], request_id.as_str(), "{case}: {entry:#}");
                assert_eq!(entry["scheme"], scheme_label, "{case}: {entry:#}");
                assert_eq!(entry["accessKeyId"], key_id, "{case}: {entry:#}");
                assert_eq!(entry["authOk"], true, "{case}: {entry:#}");
                assert_eq!(entry["params"]["DtsJobId"], job_id.as_str(), "{case}: {entry:#}");
                assert_eq!(entry["params"]["DtsInstanceId"], instance.as_str(), "{case}: {entry:#}");
                assert_eq!(entry["params"]["SynchronizationDirection"], d, "{case}: {entry:#}");
                assert!(
                    !entry.to_string().contains(STS_TOKEN),
                    "{case}: the journal keeps no token: {entry:#}"
                );
            }
            assert_eq!(
                emu.job_status(&job_id).await,
                json!({"Forward": "Finished", "Reverse": "Finished"}),
                "{case}"
            );

            let detail = dts
                .describe_dts_job_detail(&c, &job(&job_id, Some(&instance), "Reverse"))
                .await
                .unwrap_or_else(|e| panic!("{case}: describe after stop: {e:?}"));
            assert!(detail.is_finished(), "{case}: {detail:?}");
            assert_eq!(
                emu.last_entry().await["params"]["DtsInstanceID"],
                instance.as_str(),
                "{case}: DescribeDtsJobDetail spells DtsInstanceID"
            );
        }
    }
    emu.stop().await;
}

#[tokio::test]
async fn wrong_secret_is_terminal_signature_does_not_match() {
    let emu = emulator_support::start().await;
    for (scheme, scheme_label) in SCHEMES {
        for (c, sts) in [
            (Credentials::new(AK, "wrong-secret-Xy7"), false),
            (
                Credentials::new(STS_AK, "wrong-secret-Xy7").with_security_token(STS_TOKEN),
                true,
            ),
        ] {
            let case = format!("{scheme_label}, sts={sts}");
            let dts = client(&emu, scheme, Duration::from_secs(10));
            let err = dts
                .stop_dts_job(&c, &job("dtsjob2way", None, "Forward"))
                .await
                .expect_err("a wrong secret must fail");
            assert_eq!(err.class, ErrorClass::Terminal, "{case}: {err:?}");
            assert_eq!(err.code.as_deref(), Some("SignatureDoesNotMatch"), "{case}: {err:?}");
            assert_eq!(err.reason(), "AuthenticationFailed", "{case}");
            assert_eq!(err.http_status, Some(400), "{case}: {err:?}");
            assert!(err.request_id.is_some(), "{case}: {err:?}");
            // The gateway echoes its string-to-sign, which carries the STS
            // token in HMAC-SHA1 mode: the client scrubs it.
            let shown = format!("{err:?} {err}");
            assert!(
                !shown.contains(STS_TOKEN) && !shown.contains("wrong-secret-Xy7") && !shown.contains(SECRET),
                "{case}: a secret in the error: {shown}"
            );
            let entry = emu.last_entry().await;
            assert_eq!(entry["authOk"], false, "{case}: {entry:#}");
            assert_eq!(entry["errorCode"], "SignatureDoesNotMatch", "{case}: {entry:#}");
        }
    }
    assert_eq!(
        emu.job_status("dtsjob2way").await["Forward"],
        "Synchronizing",
        "a refused call has no effect"
    );
    emu.stop().await;
}

#[tokio::test]
async fn reverse_on_one_way_job_is_terminal_invalid_parameter_with_rendered_message() {
    let emu = emulator_support::start().await;
    for (scheme, scheme_label) in SCHEMES {
        let dts = client(&emu, scheme, Duration::from_secs(10));
        let err = dts
            .stop_dts_job(&creds(), &job("dtsjob1way", Some("dtsinst1way"), "Reverse"))
            .await
            .expect_err("Reverse on a one-way job must fail");
        assert_eq!(err.class, ErrorClass::Terminal, "{scheme_label}: {err:?}");
        assert_eq!(err.code.as_deref(), Some("InvalidParameter"), "{scheme_label}: {err:?}");
        assert_eq!(err.reason(), "InvalidParameter", "{scheme_label}");
        assert_eq!(err.http_status, Some(200), "{scheme_label}: {err:?}");
        assert_eq!(
            err.message.as_deref(),
            Some(RENDERED_INVALID_DIRECTION),
            "{scheme_label}"
        );
        assert_eq!(
            err.raw_message.as_deref(),
            Some("The Value of Input Parameter %s is not valid."),
            "{scheme_label}"
        );
        assert_eq!(
            err.dynamic_message.as_deref(),
            Some("SynchronizationDirection"),
            "{scheme_label}"
        );
        let entry = emu.last_entry().await;
        assert_eq!(entry["authOk"], true, "{scheme_label}: {entry:#}");
        assert_eq!(
            err.request_id.as_deref(),
            entry["requestId"].as_str(),
            "{scheme_label}: {entry:#}"
        );
    }
    assert_eq!(emu.job_status("dtsjob1way").await["Forward"], "Synchronizing");
    emu.stop().await;
}

#[tokio::test]
async fn throttled_call_is_retryable_with_the_servers_retry_after() {
    let emu = emulator_support::start().await;
    for (scheme, scheme_label) in SCHEMES {
        let dts = client(&emu, scheme, Duration::from_secs(10));
        let jr = job(
            "dtsjob2way",
            None,
            if scheme == SignatureVersion::HmacSha1 {
                "Forward"
            } else {
                "Reverse"
            },
        );
        faults(&emu, json!({"throttleNext": 1, "retryAfterMs": 1234})).await;
        let err = dts.stop_dts_job(&creds(), &jr).await.expect_err("throttled");
        assert_eq!(err.class, ErrorClass::Retryable, "{scheme_label}: {err:?}");
        assert_eq!(err.code.as_deref(), Some("Throttling.User"), "{scheme_label}: {err:?}");
        assert_eq!(err.reason(), "Throttled", "{scheme_label}");
        assert_eq!(
            err.retry_after,
            Some(Duration::from_millis(1234)),
            "{scheme_label}: {err:?}"
        );
        let d = jr.direction.as_deref().unwrap();
        assert_eq!(
            emu.job_status("dtsjob2way").await[d],
            "Synchronizing",
            "{scheme_label}: a throttled call has no effect"
        );
        // Only the next call was throttled: the retry goes through.
        dts.stop_dts_job(&creds(), &jr)
            .await
            .unwrap_or_else(|e| panic!("{scheme_label}: retry: {e:?}"));
        assert_eq!(emu.job_status("dtsjob2way").await[d], "Finished", "{scheme_label}");
        let stops = calls(&emu, "StopDtsJob", "dtsjob2way").await;
        let last_two = &stops[stops.len() - 2..];
        assert_eq!(last_two[0]["errorCode"], "Throttling.User", "{last_two:#?}");
        assert_eq!(last_two[1]["errorCode"], Value::Null, "{last_two:#?}");
    }
    emu.stop().await;
}

#[tokio::test]
async fn answer_later_than_the_client_timeout_is_ambiguous_and_the_stop_took_effect() {
    let emu = emulator_support::start().await;
    for (i, (scheme, scheme_label)) in SCHEMES.into_iter().enumerate() {
        let job_id = format!("job-latency-{i}");
        add_job(&emu, &job_id, "inst-latency", false).await;
        let dts = client(&emu, scheme, Duration::from_millis(300));
        faults(&emu, json!({"latencyMs": 5000})).await;
        let started = Instant::now();
        let err = dts
            .stop_dts_job(&creds(), &job(&job_id, None, "Forward"))
            .await
            .expect_err("the answer comes after the timeout");
        let waited = started.elapsed();
        faults(&emu, json!({"latencyMs": 0})).await;
        assert_eq!(err.class, ErrorClass::Ambiguous, "{scheme_label}: {err:?}");
        assert_eq!(err.kind, ErrorKind::Timeout, "{scheme_label}: {err:?}");
        assert_eq!(err.reason(), "Timeout", "{scheme_label}");
        // The client gave up on its own timeout, not on the answer (a wide
        // margin: only "well before 5 s" matters).
        assert!(
            waited < Duration::from_millis(4000),
            "{scheme_label}: waited {waited:?}"
        );
        // The call was executed all the same, as on a real service.
        let stops = calls(&emu, "StopDtsJob", &job_id).await;
        assert_eq!(stops.len(), 1, "{scheme_label}: {stops:#?}");
        assert_eq!(stops[0]["authOk"], true, "{scheme_label}");
        assert_eq!(stops[0]["httpStatus"], 200, "{scheme_label}");
        assert_eq!(emu.job_status(&job_id).await["Forward"], "Finished", "{scheme_label}");
    }
    emu.stop().await;
}

#[tokio::test]
async fn malformed_answer_is_ambiguous_and_the_stop_took_effect() {
    let emu = emulator_support::start().await;
    for (i, (scheme, scheme_label)) in SCHEMES.into_iter().enumerate() {
        let job_id = format!("job-malformed-{i}");
        add_job(&emu, &job_id, "inst-malformed", false).await;
        let dts = client(&emu, scheme, Duration::from_secs(10));
        faults(&emu, json!({"malformedNext": 1})).await;
        let err = dts
            .stop_dts_job(&creds(), &job(&job_id, None, "Forward"))
            .await
            .expect_err("a malformed answer is not a success");
        assert_eq!(err.class, ErrorClass::Ambiguous, "{scheme_label}: {err:?}");
        assert_eq!(err.kind, ErrorKind::Unreadable, "{scheme_label}: {err:?}");
        let stops = calls(&emu, "StopDtsJob", &job_id).await;
        assert_eq!(stops.len(), 1, "{scheme_label}: {stops:#?}");
        assert_eq!(stops[0]["fault"], "malformed", "{scheme_label}: {stops:#?}");
        assert_eq!(emu.job_status(&job_id).await["Forward"], "Finished", "{scheme_label}");
    }
    emu.stop().await;
}

#[tokio::test]
async fn connection_reset_after_sending_is_ambiguous_and_the_stop_took_effect() {
    let emu = emulator_support::start().await;
    for (i, (scheme, scheme_label)) in SCHEMES.into_iter().enumerate() {
        let job_id = format!("job-reset-{i}");
        add_job(&emu, &job_id, "inst-reset", false).await;
        let dts = client(&emu, scheme, Duration::from_secs(10));
        faults(&emu, json!({"resetNext": 1})).await;
        let err = dts
            .stop_dts_job(&creds(), &job(&job_id, None, "Forward"))
            .await
            .expect_err("no answer is not a success");
        assert_eq!(err.class, ErrorClass::Ambiguous, "{scheme_label}: {err:?}");
        assert_eq!(err.kind, ErrorKind::AfterSend, "{scheme_label}: {err:?}");
        let stops = calls(&emu, "StopDtsJob", &job_id).await;
        assert_eq!(stops.len(), 1, "{scheme_label}: {stops:#?}");
        assert_eq!(stops[0]["fault"], "reset", "{scheme_label}: {stops:#?}");
        assert_eq!(emu.job_status(&job_id).await["Forward"], "Finished", "{scheme_label}");
    }
    emu.stop().await;
}
