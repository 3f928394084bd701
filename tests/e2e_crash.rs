//! End to end: the operator killed at every step of the reconcile pipeline
//! (docs/design.md §4, src/failpoint.rs) still makes exactly one accepted
//! DTS call per direction and intent, and the status ends true.
//!
//! Each case runs in its own namespace with its own emulator and operator:
//! the operator starts with one failpoint armed (`DTS_OPERATOR_FAILPOINT`),
//! the DtsJob is flipped (to Stopped, Suspended or Running), the operator
//! must die by SIGKILL at that point (the positive signal that the point was
//! reached, checked also against what the status and the journal show at
//! the moment of the crash), and a restarted, unarmed operator must bring
//! the job to its target. The checker then reads the emulator's journal: per
//! listed direction exactly one accepted call (0 duplicate, 0 lost), signed
//! with the case's scheme, and the final status.
//!
//! `crash_sweep_fast` (part of `make test`) runs every point once, one-way
//! and two-way; `crash_sweep_full` (`make reliability`) runs every point ×
//! {one-way, two-way} × {HMAC-SHA1, ACS3-HMAC-SHA256} × {Stop, Suspend,
//! Start}. Both print the matrix with each case's recovery time (from the
//! restart to the final status). Cases run `DTS_CRASH_CONCURRENCY` at a time
//! (default 4).
//!
//! Built only with `--features dts-operator/failpoints` (Cargo.toml's
//! `required-features`): the operator binary needs its crash points.
#![cfg(feature = "failpoints")]

mod support;

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use dts_operator::crd::{DirectionState, DtsJob, Phase, TransitionState};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Event;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use support::stack::{self, Emulator, Operator, OperatorOptions};
use support::{list_until, wait_for, TestNamespace};

const JOB_ID: &str = "dtscrash01";
const INSTANCE_ID: &str = "dtsinstcrash01";
const SECRET: &str = "dts-credentials";
const JOB: &str = "orders-sync";
const POLL: Duration = Duration::from_millis(100);
/// Upper bound of every "eventually": only a hang takes this long.
const WAIT: Duration = Duration::from_secs(90);
/// After the final status (the positive signal), how long a late duplicate
/// call is watched for: longer than the operator's first retry delay
/// (--retry-base-delay 500ms) and than one observer interval.
const SETTLE: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Intent {
    Stop,
    Suspend,
    Start,
}

impl Intent {
    /// The desiredState before the flip, and the emulator's status then. A
    /// suspended job to start is only observed at first: `desiredState:
    /// Suspended` would have it suspended once more before DTS was read.
    fn before(self) -> (Option<&'static str>, &'static str) {
        match self {
            Intent::Stop | Intent::Suspend => (Some("Running"), "Synchronizing"),
            Intent::Start => (None, "Suspending"),
        }
    }

    /// The desiredState the job is flipped to.
    fn target(self) -> &'static str {
        match self {
            Intent::Stop => "Stopped",
            Intent::Suspend => "Suspended",
            Intent::Start => "Running",
        }
    }

    /// The DTS action the intent needs, once per direction.
    fn action(self) -> &'static str {
        match self {
            Intent::Stop => "StopDtsJob",
            Intent::Suspend => "SuspendDtsJob",
            Intent::Start => "StartDtsJob",
        }
    }

    /// The Normal Event that announces the target reached.
    fn event_reason(self) -> &'static str {
        match self {
            Intent::Stop => "Stopped",
            Intent::Suspend => "Suspended",
            Intent::Start => "Running",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    HmacSha1,
    V3,
}

impl Scheme {
    fn flag(self) -> &'static str {
        match self {
            Scheme::HmacSha1 => "hmac-sha1",
            Scheme::V3 => "acs3-hmac-sha256",
        }
    }

    /// How the emulator's journal names it.
    fn journal(self) -> &'static str {
        match self {
            Scheme::HmacSha1 => "HMAC-SHA1",
            Scheme::V3 => "ACS3-HMAC-SHA256",
        }
    }
}

/// One crash: the point (and its hit), the intent, one- or two-way, the scheme.
#[derive(Clone, Copy, Debug)]
struct Case {
    point: &'static str,
    nth: u32,
    intent: Intent,
    two_way: bool,
    scheme: Scheme,
}

impl Case {
    fn directions(&self) -> Vec<&'static str> {
        if self.two_way {
            vec!["Forward", "Reverse"]
        } else {
            vec!["Forward"]
        }
    }

    fn armed(&self) -> String {
        if self.nth == 1 {
            self.point.to_owned()
        } else {
            format!("{}@{}", self.point, self.nth)
        }
    }

    fn label(&self) -> String {
        format!(
            "{:<15} {:<7} {:<7} {:<16}",
            self.armed(),
            format!("{:?}", self.intent),
            if self.two_way { "two-way" } else { "one-way" },
            self.scheme.journal()
        )
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label().trim_end())
    }
}

/// Every point at which a crash can leave a different state, for one
/// intent, scheme and way: `call-after@2` (between the two directions'
/// calls) only for a two-way job.
fn points(two_way: bool) -> Vec<(&'static str, u32)> {
    let mut out = vec![("mark-before", 1), ("mark-after", 1), ("call-after", 1)];
    if two_way {
        out.push(("call-after", 2));
    }
    out.extend([("status-after", 1), ("events-before", 1)]);
    out
}

fn full_matrix() -> Vec<Case> {
    let mut cases = Vec::new();
    for intent in [Intent::Stop, Intent::Suspend, Intent::Start] {
        for two_way in [false, true] {
            for scheme in [Scheme::HmacSha1, Scheme::V3] {
                for (point, nth) in points(two_way) {
                    cases.push(Case {
                        point,
                        nth,
                        intent,
                        two_way,
                        scheme,
                    });
                }
            }
        }
    }
    cases
}

/// Every point once one-way and once two-way; intents and schemes rotate so
/// that each of them is in the subset too.
fn fast_subset() -> Vec<Case> {
    let intents = [Intent::Stop, Intent::Suspend, Intent::Start];
    let mut cases = Vec::new();
    for two_way in [false, true] {
        for (point, nth) in points(two_way) {
            let i = cases.len();
            cases.push(Case {
                point,
                nth,
                intent: intents[i % 3],
                two_way,
                scheme: if i % 2 == 0 { Scheme::HmacSha1 } else { Scheme::V3 },
            });
        }
    }
    cases
}

/// What one case came to.
struct Row {
    case: Case,
    /// Accepted calls beyond one, over all directions.
    duplicate: usize,
    /// Directions without an accepted call.
    lost: usize,
    /// The final status is the target's.
    status_ok: bool,
    /// The intent's Normal Event was published (informative: Events are
    /// best-effort, a crash before they are published loses them).
    event: bool,
    /// From the restart to the final status.
    recovery: Duration,
    /// What went wrong, if anything (also a panic's message).
    problem: Option<String>,
}

impl Row {
    fn ok(&self) -> bool {
        self.problem.is_none() && self.duplicate == 0 && self.lost == 0 && self.status_ok
    }
}

async fn sweep(name: &str, cases: Vec<Case>) {
    for p in dts_operator::failpoint::POINTS {
        assert!(cases.iter().any(|c| c.point == *p), "{name} leaves out failpoint {p}");
    }
    let concurrency: usize = std::env::var("DTS_CRASH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(4);
    let total = cases.len();
    let started = Instant::now();
    // All on the test's own thread (ChildProcess's PDEATHSIG needs that);
    // a panicking case becomes a failed row, so the matrix is always printed.
    let rows: Vec<Row> = futures::stream::iter(cases)
        .map(|case| async move {
            match AssertUnwindSafe(run_case(case)).catch_unwind().await {
                Ok(row) => row,
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panicked".into());
                    Row {
                        case,
                        duplicate: 0,
                        lost: 0,
                        status_ok: false,
                        event: false,
                        recovery: Duration::ZERO,
                        problem: Some(message),
                    }
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut rows = rows;
    rows.sort_by_key(|r| r.case.label());
    let elapsed = started.elapsed();
    print_matrix(name, &rows, elapsed, concurrency);
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| !r.ok())
        .map(|r| format!("{}: {}", r.case, r.problem.as_deref().unwrap_or("dup/lost/status")))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {total} crash cases failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

fn print_matrix(name: &str, rows: &[Row], elapsed: Duration, concurrency: usize) {
    let mut out = format!(
        "\n{name}: {} cases in {:.1} s ({concurrency} at a time)\n\n",
        rows.len(),
        elapsed.as_secs_f64()
    );
    out += "| point | intent | way | scheme | dup | lost | status | event | recovery ms |\n";
    out += "| --- | --- | --- | --- | ---: | ---: | --- | --- | ---: |\n";
    for r in rows {
        out += &format!(
            "| {} | {:?} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.case.armed(),
            r.case.intent,
            if r.case.two_way { "two-way" } else { "one-way" },
            r.case.scheme.journal(),
            r.duplicate,
            r.lost,
            if r.status_ok { "ok" } else { "WRONG" },
            if r.event { "yes" } else { "lost" },
            r.recovery.as_millis()
        );
    }
    let mut recoveries: Vec<u128> = rows.iter().filter(|r| r.ok()).map(|r| r.recovery.as_millis()).collect();
    recoveries.sort_unstable();
    if let (Some(min), Some(max)) = (recoveries.first(), recoveries.last()) {
        out += &format!(
            "\nrecovery ms: min {min}, median {}, max {max}\n",
            recoveries[recoveries.len() / 2]
        );
    }
    for r in rows.iter().filter(|r| !r.ok()) {
        out += &format!(
            "FAILED {}: {}\n",
            r.case,
            r.problem.as_deref().unwrap_or("dup/lost/status")
        );
    }
    println!("{out}");
}

/// The journal's calls of `action` for `direction` of the job.
fn calls<'a>(journal: &'a [Value], action: &str, direction: &str) -> Vec<&'a Value> {
    journal
        .iter()
        .filter(|e| {
            e["action"] == action
                && e["params"]["DtsJobId"] == JOB_ID
                && e["params"]["SynchronizationDirection"].as_str().unwrap_or("Forward") == direction
        })
        .collect()
}

fn accepted(e: &Value) -> bool {
    e["authOk"] == true && e["errorCode"].is_null()
}

fn record<'a>(job: &'a DtsJob, d: &str) -> Option<&'a dts_operator::crd::DirectionStatus> {
    job.status
        .as_ref()?
        .directions
        .iter()
        .find(|r| r.direction.as_str() == d)
}

/// The direction carries the mark of this intent: `Stopping`, or a
/// `Requested` transition to the target.
fn marked(job: &DtsJob, intent: Intent, d: &str) -> bool {
    let Some(r) = record(job, d) else { return false };
    match intent {
        Intent::Stop => r.state == DirectionState::Stopping,
        _ => r
            .transition
            .as_ref()
            .is_some_and(|t| t.state == TransitionState::Requested),
    }
}

/// The direction's accepted call is recorded: `Stopped`, or a transition
/// that is `Confirming` (or already confirmed: none left and DTS shows the target).
fn recorded(job: &DtsJob, intent: Intent, d: &str) -> bool {
    let Some(r) = record(job, d) else { return false };
    match intent {
        Intent::Stop => r.state == DirectionState::Stopped,
        _ => match &r.transition {
            Some(t) => t.state == TransitionState::Confirming,
            None => shows_target(job, intent, d),
        },
    }
}

/// What the status last recorded DTS to show is the intent's target.
fn shows_target(job: &DtsJob, intent: Intent, d: &str) -> bool {
    let shown = record(job, d)
        .and_then(|r| r.observed.as_ref())
        .and_then(|o| o.status.clone())
        .unwrap_or_default();
    match intent {
        Intent::Stop => shown == "Finished",
        Intent::Suspend => shown == "Suspending",
        Intent::Start => shown == "Synchronizing",
    }
}

fn ready(job: &DtsJob) -> Option<(String, String)> {
    stack::ready_of(job)
}

/// The final status of a case: the target's phase and Ready, every listed
/// direction there with nothing left in flight.
fn is_final(job: &DtsJob, case: &Case) -> bool {
    let Some(status) = job.status.as_ref() else {
        return false;
    };
    let (phase, reason) = match case.intent {
        Intent::Stop => (Phase::Stopped, "Stopped"),
        Intent::Suspend => (Phase::Suspended, "Suspended"),
        Intent::Start => (Phase::Running, "Running"),
    };
    status.phase == Some(phase)
        && ready(job) == Some(("True".into(), reason.into()))
        && case.directions().iter().all(|d| {
            record(job, d).is_some_and(|r| match case.intent {
                Intent::Stop => r.state == DirectionState::Stopped,
                _ => r.transition.is_none() && shows_target(job, case.intent, d),
            })
        })
}

/// The status and journal at the moment of the crash match the point: the
/// kill came where the failpoint says, not somewhere else.
fn check_crash_state(case: &Case, job: &DtsJob, journal: &[Value]) -> Result<(), String> {
    let dirs = case.directions();
    let sent: Vec<usize> = dirs
        .iter()
        .map(|d| calls(journal, case.intent.action(), d).len())
        .collect();
    let total: usize = sent.iter().sum();
    let all_marked = dirs.iter().all(|d| marked(job, case.intent, d));
    let any_marked = dirs.iter().any(|d| marked(job, case.intent, d));
    let all_recorded = dirs.iter().all(|d| recorded(job, case.intent, d));
    let ok = match (case.point, case.nth) {
        ("mark-before", _) => total == 0 && !any_marked,
        ("mark-after", _) => total == 0 && all_marked,
        ("call-after", n) => total == n as usize && sent[..n as usize].iter().all(|c| *c == 1) && all_marked,
        ("status-after" | "events-before", _) => total == dirs.len() && all_recorded,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the crash at {} left calls {sent:?} (per direction) and status {:?}",
            case.armed(),
            job.status.as_ref().map(|s| &s.directions)
        ))
    }
}

async fn run_case(case: Case) -> Row {
    let slug = format!(
        "crash-{}-{}-{:?}-{}-{}",
        case.point,
        case.nth,
        case.intent,
        if case.two_way { "2w" } else { "1w" },
        if case.scheme == Scheme::V3 { "v3" } else { "v2" }
    );
    let ns = TestNamespace::new(&slug).await;
    let (desired, dts_status) = case.intent.before();
    let mut job = stack::job(JOB_ID, Some(INSTANCE_ID), case.two_way);
    job["status"] = json!(dts_status);
    let emu = Emulator::start(&ns, "emulator", json!({"accounts": [stack::account()], "jobs": [job]})).await;
    stack::create_credentials_secret(&ns, SECRET).await;
    let api = ns.api::<DtsJob>();
    let mut spec = json!({
        "jobId": JOB_ID,
        "instanceId": INSTANCE_ID,
        "regionId": "cn-hangzhou",
        "directions": case.directions(),
        "credentialsSecretRef": { "name": SECRET },
    });
    if let Some(desired) = desired {
        spec["desiredState"] = json!(desired);
    }
    let dtsjob: DtsJob = support::dtsjob_object(JOB, spec);
    let created = api
        .create(&PostParams::default(), &dtsjob)
        .await
        .unwrap_or_else(|e| panic!("creating DtsJob {JOB}: {e}"));

    // The observer (every 1 s) reads what DTS shows, which a start needs
    // before it is sent (a job never read is not started blindly).
    let args = |armed: Option<String>| OperatorOptions {
        extra_args: vec![
            "--signature-version".into(),
            case.scheme.flag().into(),
            "--poll-interval".into(),
            "1s".into(),
        ],
        env: armed
            .map(|a| vec![(dts_operator::failpoint::ENV.to_owned(), a)])
            .unwrap_or_default(),
        ..Default::default()
    };
    let mut op = Operator::start(&ns, "operator", &emu.url, args(Some(case.armed())));
    // Settled before the flip: the current generation observed and, for
    // every listed direction, what DTS shows read into the status.
    let generation = created.metadata.generation;
    stack::wait_job(&ns, JOB, "observed and read before the flip", |j| {
        j.status.as_ref().is_some_and(|s| s.observed_generation == generation)
            && case.directions().iter().all(|d| {
                record(j, d)
                    .and_then(|r| r.observed.as_ref())
                    .is_some_and(|o| o.status.as_deref() == Some(dts_status))
            })
    })
    .await;
    assert!(
        op.process.try_status().is_none(),
        "the operator died before the flip: {}",
        op.process.log()
    );

    api.patch(
        JOB,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"desiredState": case.intent.target()}})),
    )
    .await
    .unwrap_or_else(|e| panic!("flipping DtsJob {JOB}: {e}"));
    let status = wait_for(
        &format!("the operator to crash at {}", case.armed()),
        WAIT,
        Duration::from_millis(20),
        || std::future::ready(op.process.try_status()),
    )
    .await;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the operator exited with {status:?}, not by its failpoint's SIGKILL; log: {}",
        op.process.log()
    );
    assert!(
        op.process
            .log()
            .contains(&format!("failpoint {} (hit {})", case.point, case.nth)),
        "the SIGKILL was not the failpoint's; log: {}",
        op.process.log()
    );
    let crashed = api.get(JOB).await.expect("reading the DtsJob after the crash");
    let journal = emu.journal().await;
    let mut problem = check_crash_state(&case, &crashed, &journal).err();

    let restarted = Instant::now();
    let _op = Operator::start(&ns, "operator", &emu.url, args(None));
    let final_job = wait_for(
        &format!("the final status after the crash at {case}"),
        WAIT,
        POLL,
        || {
            let api = api.clone();
            async move { api.get(JOB).await.ok().filter(|j| is_final(j, &case)) }
        },
    )
    .await;
    let recovery = restarted.elapsed();
    tokio::time::sleep(SETTLE).await;

    let journal = emu.journal().await;
    let mut duplicate = 0;
    let mut lost = 0;
    for d in case.directions() {
        let all = calls(&journal, case.intent.action(), d);
        let ok: Vec<&&Value> = all.iter().filter(|e| accepted(e)).collect();
        duplicate += ok.len().saturating_sub(1);
        lost += usize::from(ok.is_empty());
        if let Some(e) = all.iter().find(|e| e["scheme"] != case.scheme.journal()) {
            problem.get_or_insert(format!(
                "{d}: a call signed otherwise than {}: {e}",
                case.scheme.journal()
            ));
        }
        if all.len() != ok.len() {
            problem.get_or_insert(format!("{d}: refused {} calls: {all:?}", case.intent.action()));
        }
    }
    let final_now = api.get(JOB).await.expect("reading the DtsJob");
    let status_ok = is_final(&final_now, &case) && is_final(&final_job, &case);
    // Events are written in the background, after the status: give the
    // outcome's Event a moment (it may also be lost with the crash).
    let is_outcome =
        |e: &Event| e.type_.as_deref() == Some("Normal") && e.reason.as_deref() == Some(case.intent.event_reason());
    let event = list_until(&ns, Duration::from_secs(5), |events: &[Event]| {
        events.iter().any(is_outcome)
    })
    .await
    .iter()
    .any(is_outcome);
    Row {
        case,
        duplicate,
        lost,
        status_ok,
        event,
        recovery,
        problem,
    }
}

/// Every failpoint once, one-way and two-way (intents and schemes rotate).
#[tokio::test]
async fn crash_sweep_fast() {
    sweep("crash sweep (fast subset)", fast_subset()).await;
}

/// Every failpoint × one-/two-way × both schemes × Stop, Suspend, Start.
#[tokio::test]
#[ignore = "the full crash matrix: `make reliability`"]
async fn crash_sweep_full() {
    sweep("crash sweep (full matrix)", full_matrix()).await;
}
