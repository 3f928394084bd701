//! End to end: the real kube-apiserver serves the committed CRD and enforces
//! its schema, so bad specs are rejected at admission with readable messages.
//! Also proves the e2e harness in tests/support.

mod support;

use std::time::Duration;

use kube::api::{DynamicObject, PostParams};
use serde_json::json;
use support::{dtsjob_object, wait_for, TestNamespace};

/// Creates the object and returns the API server's rejection message, failing
/// the test if it is accepted or rejected for another reason than validation.
async fn rejection(ns: &TestNamespace, obj: DynamicObject) -> String {
    match ns.dynamic_dtsjobs().create(&PostParams::default(), &obj).await {
        Ok(_) => panic!("the API server accepted an invalid DtsJob: {obj:?}"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "expected 422 Invalid, got {status:?}");
            assert_eq!(status.reason, "Invalid", "{status:?}");
            status.message
        }
        Err(e) => panic!("unexpected error creating DtsJob: {e}"),
    }
}

#[tokio::test]
async fn api_server_rejects_invalid_dtsjob_specs_with_readable_messages() {
    let ns = TestNamespace::new("api-server-rejects-invalid-specs").await;

    let msg = rejection(
        &ns,
        dtsjob_object(
            "unknown-direction",
            json!({"jobId": "j1", "regionId": "cn-hangzhou", "directions": ["Sideways"]}),
        ),
    )
    .await;
    assert!(
        msg.contains(r#"spec.directions[0]: Unsupported value: "Sideways": supported values: "Forward", "Reverse""#),
        "{msg}"
    );

    let msg = rejection(
        &ns,
        dtsjob_object("empty-job-id", json!({"jobId": "", "regionId": "cn-hangzhou"})),
    )
    .await;
    assert!(
        msg.contains("spec.jobId in body should be at least 1 chars long"),
        "{msg}"
    );

    let msg = rejection(
        &ns,
        dtsjob_object(
            "duplicate-directions",
            json!({"jobId": "j1", "regionId": "cn-hangzhou", "directions": ["Forward", "Forward"]}),
        ),
    )
    .await;
    assert!(
        msg.contains(r#"spec.directions[1]: Duplicate value: "Forward""#),
        "{msg}"
    );

    // The control: a valid spec is accepted and defaulted by the schema.
    let created = ns
        .dynamic_dtsjobs()
        .create(
            &PostParams::default(),
            &dtsjob_object("valid", json!({"jobId": "j1", "regionId": "cn-hangzhou"})),
        )
        .await
        .expect("a valid DtsJob is accepted");
    assert_eq!(
        created.data["spec"]["directions"],
        json!(["Forward"]),
        "directions default to [Forward]"
    );

    // The typed API sees the same object (the library's DtsJob matches the CRD).
    let typed = ns.api::<dts_operator::crd::DtsJob>();
    let job = wait_for(
        "the typed DtsJob to be readable",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let typed = typed.clone();
            async move { typed.get_opt("valid").await.ok().flatten() }
        },
    )
    .await;
    assert_eq!(job.spec.job_id, "j1");
}

/// The harness itself: a child process is logged, and SIGTERM stops it.
#[tokio::test]
async fn child_process_is_logged_and_stopped() {
    let ns = TestNamespace::new("child-process-is-logged").await;
    let mut child = ns.spawn(
        "sleeper",
        support::command("sh", ["-c", "echo started; exec sleep 600"]),
    );
    wait_for(
        "the child's first output",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let log = child.log();
            async move { log.contains("started").then_some(()) }
        },
    )
    .await;
    let status = child.sigterm(Duration::from_secs(5));
    assert!(!status.success(), "sleep was terminated by SIGTERM: {status:?}");
}
