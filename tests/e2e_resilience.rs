//! End to end: the operator survives restarts, crashes, credential mistakes
//! and unknown outcomes without ever sending a blind second StopDtsJob
//! (docs/design.md §2).
//!
//! Each test runs the real `dts-emulator` and `dts-operator` binaries in its
//! own namespace. "Nothing happened" is only asserted after a positive sign
//! that the operator looked (a condition it wrote, its reconcile metric),
//! followed by a settle window.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dts_operator::crd::{DirectionState, DtsJob, Phase, RECONCILE_REQUESTED_AT};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Event, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::ResourceExt;
use serde_json::{json, Value};
use support::secrets::OTHER_WRONG_SECRET as WRONG_SECRET;
use support::stack::{self, Emulator, Operator, OperatorOptions};
use support::{list_until, wait_for, TestNamespace};

const JOB_ID: &str = "dtsresil01";
const INSTANCE_ID: &str = "dtsinstresil01";
const SECRET: &str = "dts-credentials";
const JOB: &str = "orders-sync";

/// Upper bound of every "eventually"; only a hang makes a test take this long.
const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);
/// How long "nothing more happens" is watched for, after a positive signal.
/// Longer than the operator's first retry delay (--retry-base-delay 500ms
/// with jitter), so a retry the operator should not make would show.
const SETTLE: Duration = Duration::from_secs(3);

// ----- setup -----

async fn start_emulator(ns: &TestNamespace, two_way: bool) -> Emulator {
    Emulator::start(
        ns,
        "emulator",
        json!({
            "accounts": [stack::account()],
            "jobs": [stack::job(JOB_ID, Some(INSTANCE_ID), two_way)],
        }),
    )
    .await
}

/// Without the observer (`--poll-interval 0`): these tests count every call
/// a reconcile makes and inject one-shot faults, which the observer's
/// start-up DescribeDtsJobs read could take instead (tests/e2e_observer.rs
/// covers the observer).
fn start_operator(ns: &TestNamespace, emu: &Emulator) -> Operator {
    Operator::start(
        ns,
        "operator",
        &emu.url,
        OperatorOptions {
            extra_args: vec!["--poll-interval".into(), "0".into()],
            ..Default::default()
        },
    )
}

/// Creates or updates the credentials Secret with exactly these keys' values
/// (server-side apply of `stringData`).
/// The positive signal a "nothing happened" check needs: waits until a
/// freshly started operator has reconciled (its reconcile counter moved), then
/// lets the settle window pass.
async fn await_first_reconcile_and_settle(op: &Operator) {
    wait_for(
        "the new operator to reconcile the DtsJob (dts_operator_reconciles_total >= 1)",
        WAIT,
        Duration::from_millis(200),
        || async { (op.metric("dts_operator_reconciles_total", &[]).await >= 1.0).then_some(()) },
    )
    .await;
    tokio::time::sleep(SETTLE).await;
}

async fn apply_secret(ns: &TestNamespace, pairs: &[(&str, &str)]) {
    let string_data: serde_json::Map<String, Value> = pairs.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let body = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": SECRET },
        "stringData": string_data,
    });
    ns.api::<Secret>()
        .patch(SECRET, &PatchParams::apply("dts-e2e").force(), &Patch::Apply(&body))
        .await
        .unwrap_or_else(|e| panic!("applying Secret {SECRET}: {e}"));
}

async fn apply_good_secret(ns: &TestNamespace) {
    apply_secret(
        ns,
        &[
            ("accessKeyId", stack::ACCESS_KEY_ID),
            ("accessKeySecret", stack::ACCESS_KEY_SECRET),
        ],
    )
    .await;
}

async fn create_job(ns: &TestNamespace, directions: &[&str], desired: Option<&str>) -> DtsJob {
    let mut spec = json!({
        "jobId": JOB_ID,
        "instanceId": INSTANCE_ID,
        "regionId": "cn-hangzhou",
        "directions": directions,
        "credentialsSecretRef": { "name": SECRET },
    });
    if let Some(d) = desired {
        spec["desiredState"] = json!(d);
    }
    let job: DtsJob = support::dtsjob_object(JOB, spec);
    ns.api::<DtsJob>()
        .create(&PostParams::default(), &job)
        .await
        .unwrap_or_else(|e| panic!("creating DtsJob {JOB}: {e}"))
}

async fn merge_patch(ns: &TestNamespace, patch: Value) {
    ns.api::<DtsJob>()
        .patch(JOB, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("patching DtsJob {JOB} with {patch}: {e}"));
}

async fn get_job(ns: &TestNamespace) -> DtsJob {
    ns.api::<DtsJob>()
        .get(JOB)
        .await
        .unwrap_or_else(|e| panic!("reading DtsJob {JOB}: {e}"))
}

/// Polls the DtsJob until `check` returns `Some`.
async fn wait_job<T>(ns: &TestNamespace, what: &str, check: impl Fn(&DtsJob) -> Option<T>) -> T {
    let api = ns.api::<DtsJob>();
    let check = &check;
    wait_for(what, WAIT, POLL, move || {
        let api = api.clone();
        async move {
            let job = api.get_opt(JOB).await.ok().flatten()?;
            check(&job)
        }
    })
    .await
}

// ----- reading the DtsJob -----

fn condition<'a>(job: &'a DtsJob, type_: &str) -> Option<&'a Condition> {
    job.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
}

fn condition_is(job: &DtsJob, type_: &str, status: &str) -> bool {
    condition(job, type_).is_some_and(|c| c.status == status)
}

fn phase(job: &DtsJob) -> Option<Phase> {
    job.status.as_ref()?.phase
}

fn direction<'a>(job: &'a DtsJob, d: &str) -> Option<&'a dts_operator::crd::DirectionStatus> {
    job.status
        .as_ref()?
        .directions
        .iter()
        .find(|r| r.direction.as_str() == d)
}

fn direction_state(job: &DtsJob, d: &str) -> Option<DirectionState> {
    direction(job, d).map(|r| r.state)
}

/// Phase Stopped and Ready True, as kstatus readers see it.
fn is_stopped(job: &DtsJob) -> bool {
    phase(job) == Some(Phase::Stopped) && condition_is(job, "Ready", "True") && condition(job, "Stalled").is_none()
}

fn resource_version(job: &DtsJob) -> String {
    job.resource_version().expect("a stored object has a resourceVersion")
}

async fn events(ns: &TestNamespace) -> Vec<Event> {
    ns.api::<Event>()
        .list(&ListParams::default())
        .await
        .expect("listing Events")
        .items
}

/// Whether an Event of `type_` and `reason` appears within 30 s (Events
/// are written in the background, after the status).
async fn has_event(ns: &TestNamespace, type_: &str, reason: &str) -> bool {
    let is = |e: &Event| e.type_.as_deref() == Some(type_) && e.reason.as_deref() == Some(reason);
    list_until(ns, Duration::from_secs(30), |events: &[Event]| events.iter().any(is))
        .await
        .iter()
        .any(is)
}

/// Every version of the DtsJob written after `resource_version`, in order,
/// collected by a watch (which, unlike polling, misses no write).
struct History {
    versions: Arc<Mutex<Vec<DtsJob>>>,
    task: tokio::task::JoinHandle<()>,
}

impl History {
    async fn start(ns: &TestNamespace, resource_version: &str) -> History {
        let api = ns.api::<DtsJob>();
        let wp = WatchParams::default().fields(&format!("metadata.name={JOB}"));
        let stream = api
            .watch(&wp, resource_version)
            .await
            .unwrap_or_else(|e| panic!("watching DtsJob {JOB}: {e}"));
        let versions = Arc::new(Mutex::new(Vec::new()));
        let sink = versions.clone();
        let task = tokio::spawn(async move {
            let mut stream = stream.boxed();
            while let Ok(Some(ev)) = stream.try_next().await {
                if let WatchEvent::Added(j) | WatchEvent::Modified(j) = ev {
                    sink.lock().unwrap().push(j);
                }
            }
        });
        History { versions, task }
    }

    fn versions(&self) -> Vec<DtsJob> {
        self.versions.lock().unwrap().clone()
    }
}

impl Drop for History {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn assert_no_secret_in_status(job: &DtsJob, secrets: &[&str]) {
    let text = serde_json::to_string(&job.status).expect("status serializes");
    for s in secrets {
        assert!(!text.contains(s), "a secret value is in the status: {text}");
    }
}

// ----- case 5: restart after success -----

/// After a successful stop, a restarted operator observes the job again
/// (its reconcile counter moves) and then makes no DTS call, no status write
/// and no Event.
#[tokio::test]
async fn restarted_operator_observes_stopped_job_without_calls_or_writes() {
    let ns = TestNamespace::new("restarted-operator-quiet").await;
    let emu = start_emulator(&ns, true).await;
    apply_good_secret(&ns).await;
    let mut op = start_operator(&ns, &emu);
    create_job(&ns, &["Forward", "Reverse"], Some("Stopped")).await;
    wait_job(&ns, "the two-way job Stopped and Ready", |j| {
        is_stopped(j).then_some(())
    })
    .await;
    assert_eq!(emu.stops(JOB_ID, "Forward").await.len(), 1);
    assert_eq!(emu.stops(JOB_ID, "Reverse").await.len(), 1);

    let exit = op.process.sigterm(Duration::from_secs(30));
    assert!(exit.success(), "the operator exits cleanly on SIGTERM: {exit:?}");
    // The first operator is gone: nothing it did can land after this point.
    let rv_before = resource_version(&get_job(&ns).await);
    let journal_before = emu.journal().await.len();
    let events_before = events(&ns).await.len();

    let mut op = start_operator(&ns, &emu);
    await_first_reconcile_and_settle(&op).await;

    let journal = emu.journal().await;
    assert_eq!(
        journal.len(),
        journal_before,
        "the restarted operator made DTS calls: {:#?}",
        &journal[journal_before..]
    );
    assert_eq!(op.metric("dts_operator_dts_calls_total", &[]).await, 0.0);
    let job = get_job(&ns).await;
    assert_eq!(
        resource_version(&job),
        rv_before,
        "the restarted operator wrote the DtsJob: {:#?}",
        job.status
    );
    assert!(is_stopped(&job));
    assert_eq!(events(&ns).await.len(), events_before, "the restart recorded Events");
    assert!(op.process.try_status().is_none(), "the operator is still running");
}

// ----- case 6: credentials -----

struct CredentialsCase {
    test: &'static str,
    /// The Secret as first created (`None`: not created at all).
    initial: Option<&'static [(&'static str, &'static str)]>,
    stalled_reason: &'static str,
    /// Each must appear in the Stalled message.
    message_names: &'static [&'static str],
    /// StopDtsJob calls the broken credentials lead to (all refused).
    refused_stops: usize,
    warning_reason: &'static str,
}

/// The job stalls with a clear reason while the credentials are broken,
/// the operator keeps running, and the job stops once the Secret is fixed.
async fn credentials_problem_stalls_then_recovers(case: CredentialsCase) {
    let ns = TestNamespace::new(case.test).await;
    let emu = start_emulator(&ns, false).await;
    let mut op = start_operator(&ns, &emu);
    if let Some(pairs) = case.initial {
        apply_secret(&ns, pairs).await;
    }
    create_job(&ns, &["Forward"], Some("Stopped")).await;

    let job = wait_job(&ns, &format!("Stalled=True ({})", case.stalled_reason), |j| {
        condition_is(j, "Stalled", "True").then(|| j.clone())
    })
    .await;
    let stalled = condition(&job, "Stalled").unwrap();
    assert_eq!(stalled.reason, case.stalled_reason, "{stalled:?}");
    assert_eq!(stalled.observed_generation, job.metadata.generation);
    for name in case.message_names {
        assert!(
            stalled.message.contains(name),
            "the Stalled message names {name:?}: {stalled:?}"
        );
    }
    assert!(condition_is(&job, "Ready", "False"), "{:?}", job.status);
    assert_no_secret_in_status(&job, &[stack::ACCESS_KEY_SECRET, WRONG_SECRET]);

    // The condition shows the operator looked; now nothing more may happen.
    tokio::time::sleep(SETTLE).await;
    assert!(
        op.process.try_status().is_none(),
        "the operator exited: {}",
        op.process.log()
    );
    let journal = emu.journal().await;
    assert_eq!(
        journal.len(),
        case.refused_stops,
        "calls while the credentials are broken: {journal:#?}"
    );
    for e in &journal {
        assert_eq!(e["action"], "StopDtsJob", "{e}");
        assert_eq!(e["authOk"], false, "{e}");
        assert_eq!(e["errorCode"], "SignatureDoesNotMatch", "{e}");
    }
    assert!(
        has_event(&ns, "Warning", case.warning_reason).await,
        "a Warning Event {} is recorded: {:#?}",
        case.warning_reason,
        events(&ns).await
    );

    apply_good_secret(&ns).await;
    let job = wait_job(&ns, "the job Stopped and Ready after the Secret is fixed", |j| {
        is_stopped(j).then(|| j.clone())
    })
    .await;
    let stops = emu.stops(JOB_ID, "Forward").await;
    assert_eq!(stops.len(), case.refused_stops + 1, "{stops:#?}");
    let last = stops.last().unwrap();
    assert_eq!(last["authOk"], true, "{last}");
    assert_eq!(last["errorCode"], Value::Null, "{last}");
    assert_eq!(
        direction(&job, "Forward").and_then(|r| r.request_id.clone()),
        last["requestId"].as_str().map(str::to_owned),
        "the status records the successful call's RequestId"
    );
    assert_no_secret_in_status(&job, &[stack::ACCESS_KEY_SECRET, WRONG_SECRET]);
    assert!(op.process.try_status().is_none(), "the operator is still running");
}

#[tokio::test]
async fn missing_secret_stalls_without_calls_then_recovers_when_created() {
    credentials_problem_stalls_then_recovers(CredentialsCase {
        test: "missing-secret",
        initial: None,
        stalled_reason: "CredentialsSecretNotFound",
        message_names: &[SECRET],
        refused_stops: 0,
        warning_reason: "CredentialsSecretNotFound",
    })
    .await;
}

#[tokio::test]
async fn missing_secret_key_stalls_without_calls_then_recovers_when_added() {
    credentials_problem_stalls_then_recovers(CredentialsCase {
        test: "missing-secret-key",
        initial: Some(&[("accessKeyId", stack::ACCESS_KEY_ID)]),
        stalled_reason: "CredentialsKeyMissing",
        message_names: &[SECRET, "accessKeySecret"],
        refused_stops: 0,
        warning_reason: "CredentialsKeyMissing",
    })
    .await;
}

#[tokio::test]
async fn wrong_secret_fails_one_stop_then_recovers_when_fixed() {
    credentials_problem_stalls_then_recovers(CredentialsCase {
        test: "wrong-secret",
        initial: Some(&[("accessKeyId", stack::ACCESS_KEY_ID), ("accessKeySecret", WRONG_SECRET)]),
        stalled_reason: "AuthenticationFailed",
        message_names: &["Forward", "signature", "accessKeySecret", SECRET],
        refused_stops: 1,
        warning_reason: "AuthenticationFailed",
    })
    .await;
}

// ----- case 8: crash between the call and its status write -----

/// SIGKILL while a StopDtsJob's answer is on its way (the emulator delays it
/// after the stop took effect): the restarted operator describes the job
/// instead of stopping it again, and records it Stopped.
#[tokio::test]
async fn sigkill_between_stop_and_status_write_is_not_followed_by_a_second_stop() {
    let ns = TestNamespace::new("sigkill-between-stop-and-write").await;
    let emu = start_emulator(&ns, false).await;
    apply_good_secret(&ns).await;
    let mut op = start_operator(&ns, &emu);
    let created = create_job(&ns, &["Forward"], Some("Running")).await;
    let generation = created.metadata.generation;
    wait_job(&ns, "the operator to observe the Running job", |j| {
        (j.status.as_ref()?.observed_generation == generation).then_some(())
    })
    .await;

    // The answer arrives 4 s after the stop took effect and was journaled,
    // well within the operator's 10 s DTS timeout.
    emu.faults(json!({"latencyMs": 4000})).await;
    merge_patch(&ns, json!({"spec": {"desiredState": "Stopped"}})).await;
    wait_for(
        "the StopDtsJob in the journal while the status says Stopping",
        WAIT,
        Duration::from_millis(25),
        || async {
            let journaled = !emu.stops(JOB_ID, "Forward").await.is_empty();
            let job = ns.api::<DtsJob>().get(JOB).await.ok()?;
            let state = direction_state(&job, "Forward");
            assert_ne!(
                state,
                Some(DirectionState::Stopped),
                "the outcome was written before the kill; the window was missed"
            );
            (journaled && state == Some(DirectionState::Stopping)).then_some(())
        },
    )
    .await;
    op.process.sigkill();

    // Proof that the kill landed in the window: the operator is dead, the
    // stop took effect, and the status it left says Stopping.
    let job = get_job(&ns).await;
    assert_eq!(
        direction_state(&job, "Forward"),
        Some(DirectionState::Stopping),
        "the operator wrote the outcome before it was killed; the window was missed: {:#?}",
        job.status
    );
    let stops = emu.stops(JOB_ID, "Forward").await;
    assert_eq!(stops.len(), 1, "{stops:#?}");
    assert_eq!(stops[0]["authOk"], true);
    assert_eq!(stops[0]["errorCode"], Value::Null, "the stop took effect: {}", stops[0]);

    emu.faults(json!({"latencyMs": 0})).await;
    let restart_at = emu.journal().await.len();
    let _op = start_operator(&ns, &emu);
    let job = wait_job(&ns, "the job Stopped after the restart", |j| {
        is_stopped(j).then(|| j.clone())
    })
    .await;

    let stops = emu.stops(JOB_ID, "Forward").await;
    assert_eq!(
        stops.len(),
        1,
        "a second StopDtsJob was sent after the restart: {stops:#?}"
    );
    let after: Vec<Value> = emu.journal().await.split_off(restart_at);
    let describe = after
        .first()
        .unwrap_or_else(|| panic!("the restarted operator made no DTS call; status: {:#?}", job.status));
    assert_eq!(
        describe["action"], "DescribeDtsJobDetail",
        "the first call after the restart describes the job: {after:#?}"
    );
    assert_eq!(describe["params"]["DtsJobId"], JOB_ID);
    assert_eq!(describe["params"]["SynchronizationDirection"], "Forward");
    let forward = direction(&job, "Forward").unwrap();
    assert_eq!(forward.state, DirectionState::Stopped);
    assert_eq!(
        forward.request_id.as_deref(),
        describe["requestId"].as_str(),
        "the status records the describe that confirmed the stop"
    );
    assert_eq!(forward.attempts, 1, "one stop attempt: {forward:?}");
}

// ----- ambiguous outcomes -----

/// A StopDtsJob whose answer is lost or unreadable after the stop took
/// effect leaves the direction Stopping; the next attempt describes the job
/// (never a second stop) and records it Stopped.
async fn ambiguous_stop_is_described_not_repeated(test: &str, fault: Value, fault_label: &str) {
    let ns = TestNamespace::new(test).await;
    let emu = start_emulator(&ns, false).await;
    apply_good_secret(&ns).await;
    emu.faults(fault).await;
    let _op = start_operator(&ns, &emu);
    let created = create_job(&ns, &["Forward"], Some("Stopped")).await;
    let history = History::start(&ns, &resource_version(&created)).await;

    let job = wait_job(&ns, "the job Stopped", |j| is_stopped(j).then(|| j.clone())).await;
    let journal = emu.journal().await;
    let stops: Vec<&Value> = journal.iter().filter(|e| e["action"] == "StopDtsJob").collect();
    assert_eq!(stops.len(), 1, "exactly one StopDtsJob: {journal:#?}");
    assert_eq!(stops[0]["fault"], fault_label, "{}", stops[0]);
    let stop_at = journal.iter().position(|e| e["action"] == "StopDtsJob").unwrap();
    let next = journal
        .get(stop_at + 1)
        .unwrap_or_else(|| panic!("no call after the ambiguous stop: {journal:#?}"));
    assert_eq!(next["action"], "DescribeDtsJobDetail", "{journal:#?}");
    assert_eq!(next["params"]["SynchronizationDirection"], "Forward");
    let forward = direction(&job, "Forward").unwrap();
    assert_eq!(forward.request_id.as_deref(), next["requestId"].as_str());
    assert_eq!(forward.error_code, None, "{forward:?}");

    // Between the two calls, the status said Stopping with the unknown
    // outcome recorded, and only then Stopped.
    let versions = wait_for("the watch to deliver the Stopped version", WAIT, POLL, || async {
        let v = history.versions();
        v.iter().any(is_stopped).then_some(v)
    })
    .await;
    let states: Vec<(Option<DirectionState>, Option<String>)> = versions
        .iter()
        .map(|j| {
            let r = direction(j, "Forward");
            (r.map(|r| r.state), r.and_then(|r| r.error_code.clone()))
        })
        .collect();
    let ambiguous = states
        .iter()
        .position(|(s, code)| *s == Some(DirectionState::Stopping) && code.is_some())
        .unwrap_or_else(|| panic!("no Stopping version with the unknown outcome recorded: {states:?}"));
    let stopped = states
        .iter()
        .position(|(s, _)| *s == Some(DirectionState::Stopped))
        .unwrap();
    assert!(ambiguous < stopped, "{states:?}");
    assert!(
        !states[..stopped]
            .iter()
            .any(|(s, _)| matches!(s, Some(DirectionState::Pending | DirectionState::Failed))),
        "the direction went back to Pending or Failed before the describe: {states:?}"
    );
    assert!(
        has_event(&ns, "Warning", "StopOutcomeUnknown").await,
        "{:#?}",
        events(&ns).await
    );
}

#[tokio::test]
async fn connection_reset_after_stop_is_described_not_repeated() {
    ambiguous_stop_is_described_not_repeated("reset-after-stop", json!({"resetNext": 1}), "reset").await;
}

#[tokio::test]
async fn malformed_answer_to_stop_is_described_not_repeated() {
    ambiguous_stop_is_described_not_repeated("malformed-after-stop", json!({"malformedNext": 1}), "malformed").await;
}

// ----- terminal failures and the reconcile-requested-at annotation -----

/// A terminal refusal is recorded and not retried, until the user asks for a
/// retry with a new kubedts.io/reconcile-requested-at value.
#[tokio::test]
async fn terminal_failure_is_retried_only_after_reconcile_requested_at_changes() {
    let ns = TestNamespace::new("terminal-retried-on-annotation").await;
    let emu = start_emulator(&ns, false).await;
    apply_good_secret(&ns).await;
    // The first call is refused for a missing RAM permission, which the user
    // then grants outside Kubernetes.
    emu.faults(json!({"failNext": {
        "count": 1,
        "status": 403,
        "code": "Forbidden.RAM",
        "message": "User not authorized to operate on the specified resource."
    }}))
    .await;
    let mut op = start_operator(&ns, &emu);
    create_job(&ns, &["Forward"], Some("Stopped")).await;

    let job = wait_job(&ns, "Stalled=True after the refusal", |j| {
        condition_is(j, "Stalled", "True").then(|| j.clone())
    })
    .await;
    assert_eq!(condition(&job, "Stalled").unwrap().reason, "AccessDenied");
    assert_eq!(phase(&job), Some(Phase::Failed));
    let forward = direction(&job, "Forward").unwrap();
    assert_eq!(forward.state, DirectionState::Failed);
    assert_eq!(forward.error_code.as_deref(), Some("Forbidden.RAM"));

    // Not retried on its own: the refusal is remembered.
    tokio::time::sleep(SETTLE).await;
    let stops = emu.stops(JOB_ID, "Forward").await;
    assert_eq!(stops.len(), 1, "a terminal failure was retried: {stops:#?}");
    assert_eq!(stops[0]["errorCode"], "Forbidden.RAM");
    assert_eq!(emu.journal().await.len(), 1, "no other call after an access denial");
    assert_eq!(
        op.metric(
            "dts_operator_dts_calls_total",
            &[("action", "StopDtsJob"), ("outcome", "terminal")]
        )
        .await,
        1.0
    );

    // Nor after a restart: the refusal is remembered in status, not memory.
    let exit = op.process.sigterm(Duration::from_secs(30));
    assert!(exit.success(), "the operator exits cleanly on SIGTERM: {exit:?}");
    let rv_before = resource_version(&get_job(&ns).await);
    let op = start_operator(&ns, &emu);
    await_first_reconcile_and_settle(&op).await;
    assert_eq!(
        emu.journal().await.len(),
        1,
        "the restarted operator retried a terminal failure: {:#?}",
        emu.journal().await
    );
    assert_eq!(
        resource_version(&get_job(&ns).await),
        rv_before,
        "the restart rewrote the status"
    );

    merge_patch(
        &ns,
        json!({"metadata": {"annotations": {RECONCILE_REQUESTED_AT: "2026-11-28T02:00:00Z"}}}),
    )
    .await;
    let job = wait_job(&ns, "the job Stopped after the retry request", |j| {
        is_stopped(j).then(|| j.clone())
    })
    .await;
    let stops = emu.stops(JOB_ID, "Forward").await;
    assert_eq!(stops.len(), 2, "one retry for one request: {stops:#?}");
    assert_eq!(stops[1]["errorCode"], Value::Null, "{}", stops[1]);
    assert_eq!(
        direction(&job, "Forward").and_then(|r| r.request_id.as_deref()),
        stops[1]["requestId"].as_str()
    );
}
