//! End to end: the real `dts-operator` stopping DTS jobs on the real
//! `dts-emulator`, driven through the real kube-apiserver.
//!
//! Every test has its own namespace, emulator and operator. Assertions are
//! on what a user sees: the calls the emulator received (its journal), the
//! DtsJob's status and conditions, and the Events. Waits are `wait_for` on a
//! positive signal; the only sleeps are settle windows that follow one, to
//! show that nothing *more* happens.

mod support;

use std::time::Duration;

use base64::Engine as _;
use dts_operator::crd::{DirectionState, DirectionStatus, DtsJob, Phase};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use support::secrets::{STS_SECRET, STS_TOKEN, WRONG_SECRET};
use support::stack::{self, Emulator, Operator, OperatorOptions, ACCESS_KEY_ID, ACCESS_KEY_SECRET};
use support::{wait_for, TestNamespace};

/// How long a status change may take to show (operator + API server on a
/// shared 2-core machine): generous, since it is only hit on failure.
const STATUS_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);
/// How long to watch for calls that must not come, after a positive signal.
const SETTLE: Duration = Duration::from_secs(3);

const SECRET_NAME: &str = "aliyun-dts-credentials";
/// An STS account of the emulator (the token is a secret too).
const STS_KEY_ID: &str = "STS.e2eTestAccessKey";

const RENDERED_INVALID_DIRECTION: &str = "The Value of Input Parameter SynchronizationDirection is not valid.";

// ---------------------------------------------------------------- helpers

/// The emulator config of the tests: the test account, an STS account, and
/// the given jobs.
fn emulator_config(jobs: Vec<Value>) -> Value {
    json!({
        "accounts": [
            stack::account(),
            {"accessKeyId": STS_KEY_ID, "accessKeySecret": STS_SECRET, "securityToken": STS_TOKEN},
        ],
        "jobs": jobs,
    })
}

fn operator_args(args: &[&str]) -> OperatorOptions {
    OperatorOptions {
        extra_args: args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// Creates a credentials Secret (`accessKeyId`, `accessKeySecret`, optional
/// `securityToken`).
async fn create_secret(ns: &TestNamespace, name: &str, key_id: &str, key_secret: &str, token: Option<&str>) {
    let mut data = json!({"accessKeyId": key_id, "accessKeySecret": key_secret});
    if let Some(t) = token {
        data["securityToken"] = json!(t);
    }
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name},
        "stringData": data,
    }))
    .expect("Secret object");
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("creating Secret {name}: {e}"));
}

/// Creates a DtsJob in cn-hangzhou from the given spec fields.
async fn create_job(ns: &TestNamespace, name: &str, spec: Value) -> DtsJob {
    let mut spec = spec;
    spec["regionId"] = json!("cn-hangzhou");
    let job: DtsJob = support::dtsjob_object(name, spec);
    ns.api::<DtsJob>()
        .create(&PostParams::default(), &job)
        .await
        .unwrap_or_else(|e| panic!("creating DtsJob {name}: {e}"))
}

/// Sets `spec.desiredState` as a user's `kubectl patch` would.
async fn set_desired_state(ns: &TestNamespace, name: &str, state: &str) -> DtsJob {
    ns.api::<DtsJob>()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"desiredState": state}})),
        )
        .await
        .unwrap_or_else(|e| panic!("setting desiredState {state} on {name}: {e}"))
}

async fn get_job(ns: &TestNamespace, name: &str) -> DtsJob {
    ns.api::<DtsJob>()
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("reading DtsJob {name}: {e}"))
}

/// Waits until the DtsJob satisfies `pred`, and returns it.
async fn wait_job(ns: &TestNamespace, name: &str, what: &str, pred: impl Fn(&DtsJob) -> bool) -> DtsJob {
    let api = ns.api::<DtsJob>();
    wait_for(&format!("DtsJob {name}: {what}"), STATUS_TIMEOUT, POLL, || {
        let api = api.clone();
        let pred = &pred;
        async move { api.get(name).await.ok().filter(|j| pred(j)) }
    })
    .await
}

fn condition<'a>(job: &'a DtsJob, type_: &str) -> Option<&'a Condition> {
    job.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
}

fn direction<'a>(job: &'a DtsJob, d: &str) -> Option<&'a DirectionStatus> {
    job.status
        .as_ref()?
        .directions
        .iter()
        .find(|r| r.direction.as_str() == d)
}

fn phase(job: &DtsJob) -> Option<Phase> {
    job.status.as_ref()?.phase
}

/// True when the status describes the current generation, conditions included.
fn observed(job: &DtsJob) -> bool {
    let generation = job.metadata.generation;
    let Some(status) = job.status.as_ref() else {
        return false;
    };
    generation.is_some()
        && status.observed_generation == generation
        && condition(job, "Ready").is_some()
        && status.conditions.iter().all(|c| c.observed_generation == generation)
}

/// Asserts that a condition is absent: kstatus's abnormal-true conditions
/// (Reconciling, Stalled) are written only while True.
fn assert_no_condition(job: &DtsJob, type_: &str) {
    assert!(condition(job, type_).is_none(), "{type_} is there: {:#?}", job.status);
}

/// Asserts a condition's status and reason, with the whole status on failure.
fn assert_condition(job: &DtsJob, type_: &str, status: &str, reason: &str) {
    let c = condition(job, type_).unwrap_or_else(|| panic!("no {type_} condition in {:#?}", job.status));
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        (status, reason),
        "{type_} condition: {c:#?}"
    );
    assert_eq!(c.observed_generation, job.metadata.generation, "{type_}: {c:#?}");
}

/// events.k8s.io/v1 Events about DtsJob `name`.
async fn events_for(ns: &TestNamespace, name: &str) -> Vec<Event> {
    ns.api::<Event>()
        .list(&ListParams::default())
        .await
        .expect("listing Events")
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("DtsJob")
        })
        .collect()
}

/// Waits for an Event about `name` with `type_`, `reason` and a note
/// containing `needle`, and returns it.
async fn wait_event(ns: &TestNamespace, name: &str, type_: &str, reason: &str, needle: &str) -> Event {
    wait_for(
        &format!("a {type_} Event {reason} on {name} whose note contains {needle:?}"),
        STATUS_TIMEOUT,
        POLL,
        || async {
            events_for(ns, name).await.into_iter().find(|e| {
                e.type_.as_deref() == Some(type_)
                    && e.reason.as_deref() == Some(reason)
                    && e.note.as_deref().is_some_and(|n| n.contains(needle))
            })
        },
    )
    .await
}

/// The journal's arrival time of an entry.
fn entry_time(e: &Value) -> jiff::Timestamp {
    e["time"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("journal entry without an RFC 3339 time: {e}"))
}

/// Asserts that no secret (nor its base64 form, as a Secret's data holds it)
/// appears in the operator's log, in any Event of the namespace or in any
/// DtsJob of the namespace.
async fn assert_no_secret_leak(ns: &TestNamespace, op: &Operator, secrets: &[&str]) {
    let log = stack::read(op.process.log_path());
    assert!(
        log.contains("reconcil"),
        "the operator log is not the debug log expected ({} bytes)",
        log.len()
    );
    let core_events = ns
        .api::<k8s_openapi::api::core::v1::Event>()
        .list(&ListParams::default())
        .await
        .expect("listing core/v1 Events");
    let events = ns
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .expect("listing Events");
    assert!(!events.items.is_empty(), "the flow recorded no Event at all");
    let events_text = serde_json::to_string(&events).expect("Events serialize")
        + &serde_json::to_string(&core_events).expect("Events serialize");
    let jobs = ns
        .dynamic_dtsjobs()
        .list(&ListParams::default())
        .await
        .expect("listing DtsJobs");
    let jobs_yaml = serde_yaml::to_string(&jobs.items).expect("DtsJobs serialize");
    for secret in secrets {
        let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
        for form in [secret.to_string(), b64] {
            assert!(
                !log.contains(&form),
                "a secret ({form:?}) appears in the operator log {}",
                op.process.log_path().display()
            );
            assert!(!events_text.contains(&form), "a secret ({form:?}) appears in an Event");
            assert!(
                !jobs_yaml.contains(&form),
                "a secret ({form:?}) appears in a DtsJob:\n{jobs_yaml}"
            );
        }
    }
}

// ------------------------------------------------------------------ tests

/// desiredState Running, with DTS showing the job running, and unset
/// (observe only): Ready with reason Running / ObserveOnly, DTS's view in
/// the status, and from then on no DTS call from the reconcile and no
/// further write while DTS's view stays the same.
#[tokio::test]
async fn running_job_gets_no_dts_calls_after_it_is_observed() {
    let ns = TestNamespace::new("running-job-gets-no-dts-calls").await;
    let emu = Emulator::start(
        &ns,
        "emulator",
        emulator_config(vec![stack::job("dtsjobrun", Some("dtsinstrun"), true)]),
    )
    .await;
    create_secret(&ns, SECRET_NAME, ACCESS_KEY_ID, ACCESS_KEY_SECRET, None).await;
    let op = Operator::start(&ns, "operator", &emu.url, OperatorOptions::default());

    for (name, desired) in [("running", Some("Running")), ("unset", None)] {
        let mut spec = json!({
            "jobId": "dtsjobrun",
            "instanceId": "dtsinstrun",
            "directions": ["Forward", "Reverse"],
            "credentialsSecretRef": {"name": SECRET_NAME},
        });
        if let Some(d) = desired {
            spec["desiredState"] = json!(d);
        }
        create_job(&ns, name, spec).await;
    }

    let mut versions = Vec::new();
    for (name, reason) in [("running", "Running"), ("unset", "ObserveOnly")] {
        let job = wait_job(&ns, name, &format!("observed with Ready=True {reason}"), |j| {
            observed(j)
                && condition(j, "Ready").is_some_and(|c| c.status == "True" && c.reason == reason)
                && j.status.as_ref().is_some_and(|s| s.directions.len() == 2)
        })
        .await;
        assert_eq!(phase(&job), Some(Phase::Running), "{:#?}", job.status);
        assert_no_condition(&job, "Reconciling");
        assert_no_condition(&job, "Stalled");
        for r in &job.status.as_ref().unwrap().directions {
            let seen = r.observed.as_ref().and_then(|o| o.status.as_deref());
            assert_eq!(seen, Some("Synchronizing"), "DTS's view is in the status: {r:#?}");
        }
        versions.push(job.metadata.resource_version.clone());
    }

    // Observed: from here on nothing may reach DTS, and nothing is written.
    // (The observer's batched DescribeDtsJobs reads are not the reconcile's.)
    assert_eq!(
        emu.reconcile_calls().await,
        Vec::<Value>::new(),
        "DTS calls for observe-only jobs"
    );
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        emu.reconcile_calls().await,
        Vec::<Value>::new(),
        "DTS calls during the settle window"
    );
    for (name, rv) in ["running", "unset"].into_iter().zip(versions) {
        assert_eq!(
            get_job(&ns, name).await.metadata.resource_version,
            rv,
            "{name} was written at rest"
        );
    }
    let metrics = op.metrics().await;
    assert!(
        stack::sum_samples(&metrics, "dts_operator_reconciles_total", &[]) >= 2.0,
        "{metrics}"
    );
    // The observer's start-up DescribeDtsJobs read is not the reconcile's.
    assert_eq!(
        stack::sum_samples(&metrics, "dts_operator_dts_calls_total", &[])
            - stack::sum_samples(
                &metrics,
                "dts_operator_dts_calls_total",
                &[("action", "DescribeDtsJobs")]
            ),
        0.0,
        "{metrics}"
    );
    assert_eq!(
        stack::sum_samples(&metrics, "dts_operator_dtsjobs", &[("phase", "Running")]),
        2.0,
        "{metrics}"
    );
}

/// Case 2 with the operator's credentials in a Secret, signed HMAC-SHA1
/// (the default).
#[tokio::test]
async fn two_way_stop_sends_one_signed_stop_per_direction_hmac_sha1() {
    two_way_stop("two-way-stop-hmac-sha1", "hmac-sha1", "HMAC-SHA1", Creds::Secret).await;
}

/// Case 9: case 2 signed ACS3-HMAC-SHA256.
#[tokio::test]
async fn two_way_stop_sends_one_signed_stop_per_direction_acs3_hmac_sha256() {
    two_way_stop(
        "two-way-stop-acs3",
        "acs3-hmac-sha256",
        "ACS3-HMAC-SHA256",
        Creds::Secret,
    )
    .await;
}

/// Case 2 with no credentialsSecretRef: the operator's default credentials
/// (ALIBABA_CLOUD_ACCESS_KEY_ID / _SECRET in its environment) sign the calls.
#[tokio::test]
async fn two_way_stop_uses_operator_default_credentials_without_secret_ref() {
    two_way_stop(
        "two-way-stop-default-creds",
        "hmac-sha1",
        "HMAC-SHA1",
        Creds::OperatorDefault,
    )
    .await;
}

#[derive(Clone, Copy, PartialEq)]
enum Creds {
    /// A Secret referenced by spec.credentialsSecretRef.
    Secret,
    /// The operator's environment, no secretRef.
    OperatorDefault,
}

async fn two_way_stop(test: &str, flag: &str, journal_scheme: &str, creds: Creds) {
    let ns = TestNamespace::new(test).await;
    let emu = Emulator::start(
        &ns,
        "emulator",
        emulator_config(vec![stack::job("dtsjob2way", Some("dtsinst2way"), true)]),
    )
    .await;
    let mut opts = operator_args(&["--signature-version", flag]);
    let mut spec = json!({
        "jobId": "dtsjob2way",
        "instanceId": "dtsinst2way",
        "directions": ["Forward", "Reverse"],
        "desiredState": "Running",
    });
    match creds {
        Creds::Secret => {
            create_secret(&ns, SECRET_NAME, ACCESS_KEY_ID, ACCESS_KEY_SECRET, None).await;
            spec["credentialsSecretRef"] = json!({"name": SECRET_NAME});
        }
        Creds::OperatorDefault => {
            opts.env = stack::default_credentials_env();
        }
    }
    let op = Operator::start(&ns, "operator", &emu.url, opts);
    create_job(&ns, "orders-sync", spec).await;
    wait_job(&ns, "orders-sync", "observed as Running", |j| {
        observed(j) && condition(j, "Ready").is_some_and(|c| c.reason == "ObserveOnly" || c.reason == "Running")
    })
    .await;
    assert!(
        emu.reconcile_calls().await.is_empty(),
        "calls before the flip to Stopped"
    );

    let flipped = set_desired_state(&ns, "orders-sync", "Stopped").await;
    let job = wait_job(&ns, "orders-sync", "observed with phase Stopped", |j| {
        j.metadata.generation == flipped.metadata.generation && observed(j) && phase(j) == Some(Phase::Stopped)
    })
    .await;
    assert_condition(&job, "Ready", "True", "Stopped");
    assert_no_condition(&job, "Reconciling");
    assert_no_condition(&job, "Stalled");

    let stops = emu.calls("StopDtsJob").await;
    assert_eq!(stops.len(), 2, "exactly one StopDtsJob per direction: {stops:#?}");
    for d in ["Forward", "Reverse"] {
        let calls = emu.stops("dtsjob2way", d).await;
        assert_eq!(calls.len(), 1, "{d}: {calls:#?}");
        let call = &calls[0];
        assert_eq!(call["params"]["DtsJobId"], "dtsjob2way", "{call:#}");
        assert_eq!(call["params"]["DtsInstanceId"], "dtsinst2way", "{call:#}");
        assert_eq!(call["params"]["SynchronizationDirection"], d, "{call:#}");
        assert_eq!(call["params"]["RegionId"], "cn-hangzhou", "{call:#}");
        assert_eq!(call["authOk"], true, "the signature must verify: {call:#}");
        assert_eq!(call["scheme"], journal_scheme, "{call:#}");
        assert_eq!(call["accessKeyId"], ACCESS_KEY_ID, "{call:#}");
        assert_eq!(call["httpStatus"], 200, "{call:#}");
        assert_eq!(call["errorCode"], Value::Null, "{call:#}");
        let request_id = call["requestId"].as_str().expect("journal requestId");

        let r = direction(&job, d).unwrap_or_else(|| panic!("no {d} in {:#?}", job.status));
        assert_eq!(r.state, DirectionState::Stopped, "{r:#?}");
        assert_eq!(r.request_id.as_deref(), Some(request_id), "{d}: status vs journal");
        assert_eq!(r.http_status_code, Some(200), "{r:#?}");
        assert_eq!(r.attempts, 1, "{r:#?}");
        assert_eq!((&r.error_code, &r.error_message), (&None, &None), "{r:#?}");
        assert!(r.last_attempt_time.is_some(), "{r:#?}");

        // One Event may name both directions; this one's line names d's RequestId.
        wait_event(
            &ns,
            "orders-sync",
            "Normal",
            "Stopped",
            &format!("{d}: StopDtsJob succeeded (RequestId {request_id})"),
        )
        .await;
    }
    let jobs = emu.jobs().await;
    assert_eq!(
        jobs[0]["status"],
        json!({"Forward": "Finished", "Reverse": "Finished"}),
        "{jobs:#?}"
    );

    // Stopped at most once: nothing more arrives once the stop is recorded.
    tokio::time::sleep(SETTLE).await;
    let stops = emu.calls("StopDtsJob").await;
    assert_eq!(stops.len(), 2, "StopDtsJob after success: {stops:#?}");
    let metrics = op.metrics().await;
    assert_eq!(
        stack::sum_samples(
            &metrics,
            "dts_operator_dts_calls_total",
            &[("action", "StopDtsJob"), ("outcome", "success")]
        ),
        2.0,
        "{metrics}"
    );
    assert_eq!(
        stack::sum_samples(&metrics, "dts_operator_dtsjobs", &[("phase", "Stopped")]),
        1.0,
        "the by-phase gauge counts the stopped job: {metrics}"
    );
    assert_no_secret_leak(&ns, &op, &[ACCESS_KEY_SECRET]).await;
}

/// Case 3: Reverse on a one-way job is a terminal InvalidParameter: the
/// rendered message is recorded, a Warning Event says so, the job is
/// Stalled, and the stop is not sent again.
#[tokio::test]
async fn reverse_on_one_way_job_records_rendered_error_and_is_not_retried() {
    let ns = TestNamespace::new("reverse-on-one-way-job").await;
    let emu = Emulator::start(
        &ns,
        "emulator",
        emulator_config(vec![stack::job("dtsjob1way", Some("dtsinst1way"), false)]),
    )
    .await;
    create_secret(&ns, SECRET_NAME, ACCESS_KEY_ID, ACCESS_KEY_SECRET, None).await;
    let _op = Operator::start(&ns, "operator", &emu.url, OperatorOptions::default());
    let created = create_job(
        &ns,
        "one-way",
        json!({
            "jobId": "dtsjob1way",
            "instanceId": "dtsinst1way",
            "directions": ["Reverse"],
            "desiredState": "Stopped",
            "credentialsSecretRef": {"name": SECRET_NAME},
        }),
    )
    .await;

    let job = wait_job(&ns, "one-way", "Reverse Failed", |j| {
        observed(j) && direction(j, "Reverse").is_some_and(|r| r.state == DirectionState::Failed)
    })
    .await;
    assert_eq!(job.metadata.generation, created.metadata.generation);
    let calls = emu.stops("dtsjob1way", "Reverse").await;
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let call = &calls[0];
    assert_eq!(call["authOk"], true, "{call:#}");
    assert_eq!(call["errorCode"], "InvalidParameter", "{call:#}");
    let request_id = call["requestId"].as_str().expect("journal requestId");

    let r = direction(&job, "Reverse").unwrap();
    assert_eq!(r.error_message.as_deref(), Some(RENDERED_INVALID_DIRECTION), "{r:#?}");
    assert_eq!(r.error_code.as_deref(), Some("InvalidParameter"), "{r:#?}");
    assert_eq!(r.dynamic_message.as_deref(), Some("SynchronizationDirection"), "{r:#?}");
    assert_eq!(r.http_status_code, Some(200), "{r:#?}");
    assert_eq!(r.request_id.as_deref(), Some(request_id), "status vs journal");
    assert_eq!(r.attempts, 1, "{r:#?}");
    assert_eq!(phase(&job), Some(Phase::Failed));
    assert_condition(&job, "Stalled", "True", "InvalidParameter");
    assert_condition(&job, "Ready", "False", "StopFailed");
    let stalled = condition(&job, "Stalled").unwrap();
    assert_eq!(
        stalled.message,
        format!("Reverse: {RENDERED_INVALID_DIRECTION} (RequestId {request_id})")
    );
    // One name for one failure: the Warning Event's reason is the Stalled reason.
    let ev = wait_event(
        &ns,
        "one-way",
        "Warning",
        "InvalidParameter",
        RENDERED_INVALID_DIRECTION,
    )
    .await;
    assert!(ev.note.as_deref().unwrap_or_default().contains("Reverse: "), "{ev:#?}");

    // Terminal: no new StopDtsJob over the window, and the job is untouched.
    let rv = job.metadata.resource_version.clone();
    tokio::time::sleep(SETTLE).await;
    let calls = emu.stops("dtsjob1way", "Reverse").await;
    assert_eq!(calls.len(), 1, "the terminal failure was retried: {calls:#?}");
    assert_eq!(emu.calls("StopDtsJob").await.len(), 1);
    assert_eq!(
        get_job(&ns, "one-way").await.metadata.resource_version,
        rv,
        "written at rest"
    );
    let jobs = emu.jobs().await;
    assert_eq!(jobs[0]["status"]["Forward"], "Synchronizing", "{jobs:#?}");
}

/// Case 4: two throttled answers, then success. The operator retries after
/// at least the server's x-acs-retry-after each time, and records 3 attempts.
#[tokio::test]
async fn throttled_twice_then_stopped_with_backoff_between_attempts() {
    const RETRY_AFTER_MS: i64 = 300;
    let ns = TestNamespace::new("throttled-twice-then-stopped").await;
    let emu = Emulator::start(
        &ns,
        "emulator",
        emulator_config(vec![stack::job("dtsjobthr", None, false)]),
    )
    .await;
    create_secret(&ns, SECRET_NAME, ACCESS_KEY_ID, ACCESS_KEY_SECRET, None).await;
    let _op = Operator::start(&ns, "operator", &emu.url, OperatorOptions::default());
    create_job(
        &ns,
        "throttled",
        json!({
            "jobId": "dtsjobthr",
            "desiredState": "Running",
            "credentialsSecretRef": {"name": SECRET_NAME},
        }),
    )
    .await;
    wait_job(&ns, "throttled", "observed as Running", |j| {
        observed(j) && condition(j, "Ready").is_some_and(|c| c.reason == "ObserveOnly" || c.reason == "Running")
    })
    .await;
    emu.faults(json!({"throttleNext": 2, "retryAfterMs": RETRY_AFTER_MS}))
        .await;

    let flipped = set_desired_state(&ns, "throttled", "Stopped").await;
    let job = wait_job(&ns, "throttled", "observed with phase Stopped", |j| {
        j.metadata.generation == flipped.metadata.generation && observed(j) && phase(j) == Some(Phase::Stopped)
    })
    .await;

    let calls = emu.stops("dtsjobthr", "Forward").await;
    assert_eq!(calls.len(), 3, "{calls:#?}");
    for c in &calls[..2] {
        assert_eq!(c["errorCode"], "Throttling.User", "{c:#}");
        assert_eq!(c["httpStatus"], 400, "{c:#}");
        assert_eq!(c["authOk"], true, "{c:#}");
    }
    assert_eq!(calls[2]["errorCode"], Value::Null, "{:#}", calls[2]);
    assert_eq!(calls[2]["httpStatus"], 200, "{:#}", calls[2]);
    // Only StopDtsJob: a throttled call was not executed, so there is nothing
    // to look up before retrying.
    assert_eq!(emu.reconcile_calls().await.len(), 3, "{:#?}", emu.journal().await);

    for pair in calls.windows(2) {
        let gap = entry_time(&pair[1]).duration_since(entry_time(&pair[0]));
        assert!(
            gap.as_millis() >= i128::from(RETRY_AFTER_MS),
            "retried {gap:?} after a throttled answer asking for {RETRY_AFTER_MS} ms: {calls:#?}"
        );
        // Only a sanity bound: the backoff is capped at 5 s in the harness.
        assert!(gap.as_secs() < 30, "retry took {gap:?}: {calls:#?}");
    }

    let r = direction(&job, "Forward").unwrap();
    assert_eq!(r.state, DirectionState::Stopped, "{r:#?}");
    assert_eq!(r.attempts, 3, "{r:#?}");
    assert_eq!(r.request_id.as_deref(), calls[2]["requestId"].as_str(), "{r:#?}");
    assert_eq!(r.error_code, None, "the success clears the last error: {r:#?}");
    assert_condition(&job, "Ready", "True", "Stopped");
    assert_no_condition(&job, "Reconciling");
    assert_no_condition(&job, "Stalled");
    wait_event(&ns, "throttled", "Warning", "RetryScheduled", "Forward").await;
    wait_event(
        &ns,
        "throttled",
        "Normal",
        "Stopped",
        calls[2]["requestId"].as_str().unwrap(),
    )
    .await;
}

/// Case 10: the test secrets (AccessKey secret and STS token) never appear
/// in the operator's debug log, in Events or in any DtsJob, after a
/// successful stop and after failures whose server answer echoes the signed
/// request (SignatureDoesNotMatch with the string-to-sign, which contains the
/// STS token).
#[tokio::test]
async fn secrets_never_appear_in_operator_log_events_or_status() {
    let ns = TestNamespace::new("secrets-never-appear").await;
    let emu = Emulator::start(
        &ns,
        "emulator",
        emulator_config(vec![
            stack::job("dtsjobok", Some("dtsinstok"), true),
            stack::job("dtsjobbad", None, false),
            stack::job("dtsjobsts", None, false),
        ]),
    )
    .await;
    create_secret(&ns, "good", ACCESS_KEY_ID, ACCESS_KEY_SECRET, None).await;
    create_secret(&ns, "wrong", ACCESS_KEY_ID, WRONG_SECRET, None).await;
    create_secret(&ns, "sts-wrong", STS_KEY_ID, WRONG_SECRET, Some(STS_TOKEN)).await;
    let op = Operator::start(&ns, "operator", &emu.url, OperatorOptions::default());
    for (name, job_id, secret, directions) in [
        ("ok", "dtsjobok", "good", json!(["Forward", "Reverse"])),
        ("bad", "dtsjobbad", "wrong", json!(["Forward"])),
        ("sts", "dtsjobsts", "sts-wrong", json!(["Forward"])),
    ] {
        create_job(
            &ns,
            name,
            json!({
                "jobId": job_id,
                "directions": directions,
                "desiredState": "Stopped",
                "credentialsSecretRef": {"name": secret},
            }),
        )
        .await;
    }

    let ok = wait_job(&ns, "ok", "phase Stopped", |j| {
        observed(j) && phase(j) == Some(Phase::Stopped)
    })
    .await;
    assert_condition(&ok, "Ready", "True", "Stopped");
    for name in ["bad", "sts"] {
        let job = wait_job(&ns, name, "phase Failed", |j| {
            observed(j) && phase(j) == Some(Phase::Failed)
        })
        .await;
        assert_condition(&job, "Stalled", "True", "AuthenticationFailed");
        let r = direction(&job, "Forward").unwrap();
        assert_eq!(r.error_code.as_deref(), Some("SignatureDoesNotMatch"), "{r:#?}");
        wait_event(&ns, name, "Warning", "AuthenticationFailed", "SignatureDoesNotMatch").await;
    }
    // The STS failure did reach the emulator with the token (so the answer
    // echoed it): the journal shows the STS key and a failed signature.
    let sts_calls = emu.stops("dtsjobsts", "Forward").await;
    assert_eq!(sts_calls.len(), 1, "{sts_calls:#?}");
    assert_eq!(sts_calls[0]["accessKeyId"], STS_KEY_ID);
    assert_eq!(sts_calls[0]["authOk"], false);
    assert_eq!(sts_calls[0]["errorCode"], "SignatureDoesNotMatch");

    assert_no_secret_leak(&ns, &op, &[ACCESS_KEY_SECRET, WRONG_SECRET, STS_SECRET, STS_TOKEN]).await;
}

/// Events name every direction's stop RequestId even when the directions
/// stop in different reconciles: here Forward is throttled once while
/// Reverse stops at once, and Forward stops on the retry.
#[tokio::test]
async fn every_direction_stop_request_id_is_in_an_event_when_directions_stop_in_separate_reconciles() {
    let ns = TestNamespace::new("stop-events-across-reconciles").await;
    let emu = Emulator::start(
        &ns,
        "emulator",
        emulator_config(vec![stack::job("dtsjobsplit", None, true)]),
    )
    .await;
    create_secret(&ns, SECRET_NAME, ACCESS_KEY_ID, ACCESS_KEY_SECRET, None).await;
    // No observer: its start-up read would race the stop for the one
    // throttled answer.
    let _op = Operator::start(
        &ns,
        "operator",
        &emu.url,
        OperatorOptions {
            extra_args: vec!["--poll-interval".into(), "0".into()],
            ..Default::default()
        },
    );
    // The first call (Forward, sent first in spec order) is throttled.
    emu.faults(json!({"throttleNext": 1, "retryAfterMs": 300})).await;
    create_job(
        &ns,
        "split",
        json!({
            "jobId": "dtsjobsplit",
            "directions": ["Forward", "Reverse"],
            "desiredState": "Stopped",
            "credentialsSecretRef": {"name": SECRET_NAME},
        }),
    )
    .await;
    let job = wait_job(&ns, "split", "phase Stopped", |j| {
        observed(j) && phase(j) == Some(Phase::Stopped)
    })
    .await;
    let forward = emu.stops("dtsjobsplit", "Forward").await;
    let reverse = emu.stops("dtsjobsplit", "Reverse").await;
    assert_eq!(forward.len(), 2, "throttled once, then stopped: {forward:#?}");
    assert_eq!(reverse.len(), 1, "{reverse:#?}");
    assert_eq!(forward[0]["errorCode"], "Throttling.User");
    // The premise: Reverse stopped before Forward's retry, in another reconcile.
    assert!(entry_time(&reverse[0]) < entry_time(&forward[1]));
    for (d, call) in [("Forward", &forward[1]), ("Reverse", &reverse[0])] {
        let request_id = call["requestId"].as_str().unwrap();
        assert_eq!(direction(&job, d).unwrap().request_id.as_deref(), Some(request_id));
        wait_event(&ns, "split", "Normal", "Stopped", request_id).await;
    }
}

/// Events are aggregated as client-go's recorder does: a blocker that comes
/// back within six minutes continues the first Event's series (count 2)
/// instead of creating a second Event, while a different blocker in between
/// is an Event of its own; and the job still stops once the Secret is right.
#[tokio::test]
async fn a_warning_that_comes_back_continues_its_event_series() {
    let ns = TestNamespace::new("event-series").await;
    let emu = Emulator::start(
        &ns,
        "emulator",
        emulator_config(vec![stack::job("dtsjobseries", None, false)]),
    )
    .await;
    let _op = Operator::start(&ns, "operator", &emu.url, OperatorOptions::default());
    create_job(
        &ns,
        "series",
        json!({"jobId": "dtsjobseries", "desiredState": "Stopped", "credentialsSecretRef": {"name": SECRET_NAME}}),
    )
    .await;
    let stalled = |reason: &'static str| {
        move |j: &DtsJob| condition(j, "Stalled").is_some_and(|c| c.status == "True" && c.reason == reason)
    };
    wait_job(
        &ns,
        "series",
        "Stalled: Secret not found",
        stalled("CredentialsSecretNotFound"),
    )
    .await;
    let first = wait_event(&ns, "series", "Warning", "CredentialsSecretNotFound", SECRET_NAME).await;
    assert_eq!(first.series, None, "a first Event has no series: {first:#?}");

    // Another blocker: the Secret exists without accessKeySecret.
    let partial: Secret = serde_json::from_value(json!({
        "metadata": {"name": SECRET_NAME},
        "stringData": {"accessKeyId": ACCESS_KEY_ID},
    }))
    .unwrap();
    ns.api::<Secret>()
        .create(&PostParams::default(), &partial)
        .await
        .unwrap();
    wait_job(&ns, "series", "Stalled: key missing", stalled("CredentialsKeyMissing")).await;
    wait_event(&ns, "series", "Warning", "CredentialsKeyMissing", "accessKeySecret").await;

    // The first blocker again: the same Event, counted.
    ns.api::<Secret>()
        .delete(SECRET_NAME, &Default::default())
        .await
        .unwrap();
    wait_job(
        &ns,
        "series",
        "Stalled: Secret not found again",
        stalled("CredentialsSecretNotFound"),
    )
    .await;
    let name = first.metadata.name.clone();
    let counted = wait_for(
        "the first Event's series.count to reach 2",
        STATUS_TIMEOUT,
        POLL,
        || async {
            events_for(&ns, "series")
                .await
                .into_iter()
                .find(|e| e.metadata.name == name && e.series.as_ref().is_some_and(|s| s.count == 2))
        },
    )
    .await;
    assert_eq!(counted.note, first.note, "the series is of the same note");
    let not_found: Vec<_> = events_for(&ns, "series")
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("CredentialsSecretNotFound"))
        .collect();
    assert_eq!(not_found.len(), 1, "one Event for the repeated warning: {not_found:#?}");

    create_secret(&ns, SECRET_NAME, ACCESS_KEY_ID, ACCESS_KEY_SECRET, None).await;
    wait_job(&ns, "series", "phase Stopped", |j| phase(j) == Some(Phase::Stopped)).await;
    assert_eq!(emu.stops("dtsjobseries", "Forward").await.len(), 1);
}
