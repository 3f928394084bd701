//! End to end: the real kube-apiserver serves the committed CRD (its
//! validation is tested row by row in tests/e2e_admission.rs). Also proves
//! the e2e harness in tests/support.

mod support;

use std::time::Duration;

use kube::api::PostParams;
use serde_json::json;
use support::{dtsjob_object, wait_for, TestNamespace};

/// The committed CRD is served: a valid spec is accepted and defaulted by
/// its schema, and the library's typed DtsJob reads it back. (What the
/// schema refuses, and with which messages, is the table of
/// tests/e2e_admission.rs.)
#[tokio::test]
async fn api_server_serves_the_committed_crd() {
    let ns = TestNamespace::new("api-server-serves-the-crd").await;

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
