//! End to end: every DTS fault the emulator can inject, one row each, with
//! the real `dts-operator` and `dts-emulator` binaries. Each row has its own
//! namespace, emulator and operator, and the rows run concurrently.
//!
//! For every fault the operator must make a bounded number of calls, never
//! panic, end `Stopped` with exactly one stop DTS accepted, and, after a
//! fault whose outcome is unknown (the call may have taken effect), look
//! with DescribeDtsJobDetail before any second StopDtsJob. The test prints a
//! table: fault → the class the operator's client gave the stop, calls made,
//! accepted stops, final phase and reason, time to Stopped, and the
//! operator's peak RSS (VmHWM) before and after.

mod support;

use std::time::{Duration, Instant};

use dts_operator::crd::{DtsJob, Phase, RECONCILE_REQUESTED_AT};
use k8s_openapi::api::core::v1::Event;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use support::stack::{self, Emulator, Operator, OperatorOptions};
use support::{list_until, wait_for, TestNamespace};

const JOB_ID: &str = "dtsfault01";
const JOB: &str = "orders-sync";
const SECRET: &str = "dts-credentials";
const WAIT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(100);
/// The "no more calls" window after the clock-skew stall, longer than the
/// operator's retry delays (--retry-base-delay 500ms, --retry-max-delay 5s
/// from the harness), so a retry would show.
const SETTLE: Duration = Duration::from_secs(6);

/// Faults whose answer is sabotaged after the stop took effect: the operator
/// must describe, never stop again.
const AFTER_EFFECT: &[&str] = &["reset", "malformed", "huge", "empty", "latency"];

#[derive(Clone, Copy, PartialEq)]
enum Heal {
    /// The fault runs out by itself.
    Never,
    /// `latencyMs` back to 0 once the operator reported the unknown outcome.
    Latency,
    /// The clock fixed and a retry requested once the operator stalled on it.
    Clock,
}

struct Row {
    name: &'static str,
    faults: Value,
    extra_args: Vec<&'static str>,
    heal: Heal,
    /// The class (`dts_operator_dts_calls_total` outcome) the first stop gets.
    class: &'static str,
    /// StopDtsJob calls DTS receives in all.
    stops: usize,
    /// A Warning Event reason the fault must produce.
    warning: &'static str,
    /// A lower bound on the time to Stopped (server-imposed waits).
    at_least: Duration,
    /// Whether the stop took effect despite the fault (describe-first applies).
    after_effect: bool,
}

fn rows() -> Vec<Row> {
    let row = |name, faults, class, stops, warning| Row {
        name,
        faults,
        extra_args: Vec::new(),
        heal: Heal::Never,
        class,
        stops,
        warning,
        at_least: Duration::ZERO,
        after_effect: false,
    };
    vec![
        Row {
            at_least: Duration::from_millis(6 * 300),
            ..row(
                "throttle storm x6 (retry-after 300ms)",
                json!({"throttleNext": 6, "retryAfterMs": 300}),
                "retryable",
                7,
                "RetryScheduled",
            )
        },
        row(
            "5xx burst x4 (503)",
            json!({"failNext": {"count": 4, "status": 503, "code": "ServiceUnavailable"}}),
            "retryable",
            5,
            "RetryScheduled",
        ),
        Row {
            extra_args: vec!["--circuit-cooloff", "1s"],
            at_least: Duration::from_secs(1),
            ..row(
                "5xx burst x8 (500), breaker opens",
                json!({"failNext": {"count": 8, "status": 500, "code": "InternalError"}}),
                "retryable",
                9,
                "CircuitOpen",
            )
        },
        row(
            "HTML 502 page x3",
            json!({"html502Next": 3}),
            "retryable",
            4,
            "RetryScheduled",
        ),
        row(
            "empty 503 x2",
            json!({"emptyNext": {"count": 2, "status": 503}}),
            "retryable",
            3,
            "RetryScheduled",
        ),
        // The connection dropped before the request was read: nothing ran,
        // but the client cannot know that; it describes, sees the job
        // running, and stops again behind a new mark.
        row(
            "reset before read",
            json!({"resetBeforeReadNext": 1}),
            "ambiguous",
            2,
            "StopOutcomeUnknown",
        ),
        Row {
            after_effect: true,
            ..row(
                "reset after effect",
                json!({"resetNext": 1}),
                "ambiguous",
                1,
                "StopOutcomeUnknown",
            )
        },
        Row {
            after_effect: true,
            ..row(
                "malformed 200",
                json!({"malformedNext": 1}),
                "ambiguous",
                1,
                "StopOutcomeUnknown",
            )
        },
        Row {
            after_effect: true,
            ..row(
                "empty 200",
                json!({"emptyNext": {"count": 1, "status": 200}}),
                "ambiguous",
                1,
                "StopOutcomeUnknown",
            )
        },
        Row {
            after_effect: true,
            ..row(
                "10 MiB body",
                json!({"hugeNext": 1}),
                "ambiguous",
                1,
                "StopOutcomeUnknown",
            )
        },
        Row {
            extra_args: vec!["--dts-timeout", "2s"],
            heal: Heal::Latency,
            after_effect: true,
            at_least: Duration::from_secs(2),
            ..row(
                "latency 4s > --dts-timeout 2s",
                json!({"latencyMs": 4000}),
                "ambiguous",
                1,
                "StopOutcomeUnknown",
            )
        },
        Row {
            heal: Heal::Clock,
            at_least: SETTLE,
            ..row(
                "clock skew -20 min",
                json!({"clockSkewSeconds": -1200}),
                "terminal",
                2,
                "ClockSkew",
            )
        },
    ]
}

/// What one row measured.
struct Seen {
    name: &'static str,
    classes: String,
    calls: usize,
    stops: usize,
    accepted: usize,
    final_state: String,
    to_stopped: Duration,
    hwm_before_kb: u64,
    hwm_after_kb: u64,
    quiet_window_calls: Option<usize>,
}

/// `VmHWM` (peak resident set) of a process, in kB, from /proc.
fn vm_hwm_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn condition(job: &DtsJob, type_: &str) -> Option<(String, String)> {
    let c = job.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone()))
}

fn is_stopped(job: &DtsJob) -> bool {
    job.status.as_ref().and_then(|s| s.phase) == Some(Phase::Stopped)
        && condition(job, "Ready").is_some_and(|(s, _)| s == "True")
        && condition(job, "Stalled").is_none()
}

async fn job(ns: &TestNamespace) -> Option<DtsJob> {
    ns.api::<DtsJob>().get_opt(JOB).await.ok().flatten()
}

/// The reasons of the Warning Events, once `expected` is among them (at
/// most 30 s: Events are written in the background, after the status).
async fn warning_reasons(ns: &TestNamespace, expected: &str) -> Vec<String> {
    let is_expected = |e: &Event| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(expected);
    let mut reasons: Vec<String> = list_until(ns, Duration::from_secs(30), |events: &[Event]| {
        events.iter().any(is_expected)
    })
    .await
    .into_iter()
    .filter(|e| e.type_.as_deref() == Some("Warning"))
    .filter_map(|e| e.reason)
    .collect();
    reasons.sort();
    reasons.dedup();
    reasons
}

/// A stop DTS executed: verified, no error, and not refused by a fault
/// that acts before the effect.
fn accepted(entry: &Value) -> bool {
    entry["action"] == "StopDtsJob"
        && entry["authOk"] == true
        && entry["errorCode"].is_null()
        && !matches!(
            (entry["fault"].as_str(), entry["httpStatus"].as_u64()),
            (Some("resetBeforeRead" | "html502"), _) | (Some("empty"), Some(400..))
        )
}

async fn run_row(row: Row) -> Seen {
    let ns = TestNamespace::new(&format!("fault-{}", row.name)).await;
    let emu = Emulator::start(
        &ns,
        "emulator",
        json!({"accounts": [stack::account()], "jobs": [stack::job(JOB_ID, None, false)]}),
    )
    .await;
    stack::create_credentials_secret(&ns, SECRET).await;
    let mut args: Vec<String> = vec!["--poll-interval".into(), "0".into()];
    args.extend(row.extra_args.iter().map(|s| s.to_string()));
    let op = Operator::start(
        &ns,
        "operator",
        &emu.url,
        OperatorOptions {
            extra_args: args,
            ..Default::default()
        },
    );
    // Up and serving: the baseline peak RSS is taken before any DTS call.
    let _ = op.metrics().await;
    let pid = op.process.id();
    let hwm_before_kb = vm_hwm_kb(pid);
    emu.faults(row.faults.clone()).await;

    let created = Instant::now();
    let obj: DtsJob = support::dtsjob_object(
        JOB,
        json!({
            "jobId": JOB_ID,
            "regionId": "cn-hangzhou",
            "directions": ["Forward"],
            "desiredState": "Stopped",
            "credentialsSecretRef": {"name": SECRET},
        }),
    );
    ns.api::<DtsJob>()
        .create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("{}: creating the DtsJob: {e}", row.name));

    let mut quiet_window_calls = None;
    match row.heal {
        Heal::Never => {}
        Heal::Latency => {
            // The positive signal: the operator counted the timed-out stop.
            wait_for("the operator to see the stop time out", WAIT, POLL, || async {
                let n = op
                    .metric(
                        "dts_operator_dts_calls_total",
                        &[("action", "StopDtsJob"), ("outcome", "ambiguous")],
                    )
                    .await;
                (n >= 1.0).then_some(())
            })
            .await;
            emu.faults(json!({"latencyMs": 0})).await;
        }
        Heal::Clock => {
            let stalled = wait_for("the operator to stall on the clock", WAIT, POLL, || async {
                let j = job(&ns).await?;
                (condition(&j, "Stalled") == Some(("True".into(), "ClockSkew".into()))).then_some(j)
            })
            .await;
            let ready = condition(&stalled, "Ready");
            assert_eq!(ready.as_ref().map(|(s, _)| s.as_str()), Some("False"), "{ready:?}");
            let record = stalled.status.as_ref().and_then(|s| s.directions.first());
            assert_eq!(
                record.and_then(|r| r.error_code.as_deref()),
                Some("InvalidTimeStamp.Expired"),
                "the status names the refused timestamp: {record:?}"
            );
            // Not a hot loop: after the stall, no call over the window.
            let before = emu.journal().await.len();
            tokio::time::sleep(SETTLE).await;
            let after = emu.journal().await.len();
            quiet_window_calls = Some(after - before);
            emu.faults(json!({"clockSkewSeconds": 0})).await;
            let patch = json!({"metadata": {"annotations": {RECONCILE_REQUESTED_AT: "clock-fixed"}}});
            ns.api::<DtsJob>()
                .patch(JOB, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap_or_else(|e| panic!("{}: annotating: {e}", row.name));
        }
    }

    let done = wait_for(&format!("{}: the DtsJob Stopped", row.name), WAIT, POLL, || async {
        job(&ns).await.filter(is_stopped)
    })
    .await;
    let to_stopped = created.elapsed();
    let hwm_after_kb = vm_hwm_kb(pid);

    let journal = emu.journal().await;
    let stops: Vec<&Value> = journal.iter().filter(|e| e["action"] == "StopDtsJob").collect();
    let accepted_stops = stops.iter().filter(|e| accepted(e)).count();
    let mut classes = Vec::new();
    for outcome in ["success", "retryable", "ambiguous", "terminal"] {
        let n = op
            .metric(
                "dts_operator_dts_calls_total",
                &[("action", "StopDtsJob"), ("outcome", outcome)],
            )
            .await;
        if n > 0.0 {
            classes.push(format!("{outcome}×{n}"));
        }
    }
    let warnings = warning_reasons(&ns, row.warning).await;
    let ready = condition(&done, "Ready").map(|(_, r)| r).unwrap_or_default();

    // What every row must show.
    let name = row.name;
    assert_eq!(accepted_stops, 1, "{name}: one stop DTS accepted: {journal:#?}");
    assert_eq!(stops.len(), row.stops, "{name}: StopDtsJob calls: {journal:#?}");
    assert!(
        op.metric(
            "dts_operator_dts_calls_total",
            &[("action", "StopDtsJob"), ("outcome", row.class)]
        )
        .await
            >= 1.0,
        "{name}: the stop classed {}: {classes:?}",
        row.class
    );
    assert!(
        warnings.iter().any(|w| w == row.warning),
        "{name}: Warning {} among {warnings:?}",
        row.warning
    );
    assert!(
        journal.len() <= row.stops + 12,
        "{name}: a bounded number of calls: {journal:#?}"
    );
    assert!(
        to_stopped >= row.at_least,
        "{name}: {to_stopped:?} < {:?}",
        row.at_least
    );
    // Describe first: every stop after one whose outcome was unknown follows
    // a DescribeDtsJobDetail.
    let mut unknown = false;
    for e in &journal {
        match e["action"].as_str() {
            Some("DescribeDtsJobDetail") => unknown = false,
            Some("StopDtsJob") => {
                assert!(!unknown, "{name}: a blind second StopDtsJob: {journal:#?}");
                let label = e["fault"].as_str().unwrap_or_default();
                unknown = label == "resetBeforeRead"
                    || (AFTER_EFFECT.contains(&label) && !(label == "empty" && e["httpStatus"].as_u64() >= Some(400)));
            }
            _ => {}
        }
    }
    if row.after_effect {
        assert!(
            journal.iter().any(|e| e["action"] == "DescribeDtsJobDetail"),
            "{name}: the outcome was looked up: {journal:#?}"
        );
    }
    if let Some(n) = quiet_window_calls {
        assert_eq!(n, 0, "{name}: calls while stalled on the clock");
    }
    let mut op = op;
    assert!(op.process.try_status().is_none(), "{name}: the operator exited");
    let log = op.process.log();
    assert!(!log.contains("panicked"), "{name}: the operator panicked");
    assert!(!log.contains(stack::ACCESS_KEY_SECRET), "{name}: the secret in the log");

    Seen {
        name,
        classes: classes.join(" "),
        calls: journal.len(),
        stops: stops.len(),
        accepted: accepted_stops,
        final_state: format!(
            "{}/{ready}",
            done.status
                .as_ref()
                .and_then(|s| s.phase)
                .map_or("-".to_owned(), |p| format!("{p:?}"))
        ),
        to_stopped,
        hwm_before_kb,
        hwm_after_kb,
        quiet_window_calls,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dts_fault_ends_stopped_with_one_accepted_stop() {
    let handles: Vec<_> = rows().into_iter().map(|r| (r.name, tokio::spawn(run_row(r)))).collect();
    let mut seen = Vec::new();
    let mut failed = Vec::new();
    for (name, h) in handles {
        match h.await {
            Ok(s) => seen.push(s),
            Err(e) => failed.push(format!("{name}: {e}")),
        }
    }
    println!(
        "\n| fault | StopDtsJob classes seen | DTS calls | StopDtsJob | accepted | final phase/Ready reason | to Stopped | VmHWM before → after (kB) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for s in &seen {
        let quiet = s
            .quiet_window_calls
            .map(|n| format!(" ({n} calls in the {}s after the stall)", SETTLE.as_secs()))
            .unwrap_or_default();
        println!(
            "| {} | {} | {} | {} | {} | {}{quiet} | {:.1}s | {} → {} |",
            s.name,
            s.classes,
            s.calls,
            s.stops,
            s.accepted,
            s.final_state,
            s.to_stopped.as_secs_f64(),
            s.hwm_before_kb,
            s.hwm_after_kb
        );
    }
    assert!(failed.is_empty(), "rows failed: {failed:#?}");
}
