//! End to end: what GitOps tools see of a DtsJob, on the real kube-apiserver
//! with the real operator and `dts-emulator`.
//!
//! * DtsJobs are driven into every state a user meets (no status yet,
//!   running, suspended, suspending, stopped, a stop being retried, stalled
//!   by DTS and by missing credentials, not in the desired state, paused, a
//!   new generation not yet observed) and read back from the API server.
//!   They are the testdata of the Argo CD health check and of the kstatus
//!   test (`deploy/argocd/kubedts.io/DtsJob/testdata/`, run by
//!   `make gitops-test`). The normal run fails when a captured object no
//!   longer has the shape of its committed file (generation, spec, phase,
//!   conditions' type/status/reason/observedGeneration, direction states);
//!   `UPDATE_TESTDATA=1` rewrites the files from the run (timestamps,
//!   RequestIds and resourceVersions replaced by fixed values).
//! * Every GitOps example (`examples/gitops/`) and the argocd-cm snippet
//!   pass a strict server-side dry run with Argo CD's and Flux's real CRDs
//!   installed (`hack/gitops-tools.sh` gets them from the Go module proxy).
//! * `kubectl explain dtsjob` prints the DtsJob's own description.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use dts_operator::crd::DtsJob;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use support::stack::{self, Emulator, Operator, OperatorOptions};
use support::{wait_for, TestNamespace};

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/argocd/kubedts.io/DtsJob/testdata");
const SECRET: &str = "aliyun-dts-credentials";
/// Every captured object is rewritten into this namespace.
const NAMESPACE: &str = "data-platform";
const FIXED_TIME: &str = "2026-12-01T00:00:00Z";
const CHECKPOINT: i64 = 1_764_547_200;

fn update_mode() -> bool {
    std::env::var("UPDATE_TESTDATA").is_ok_and(|v| v == "1")
}

fn emulator_job(id: &str, two_way: bool, extra: Value) -> Value {
    let mut j = stack::job(id, None, two_way);
    j["checkpoint"] = json!(CHECKPOINT);
    if let (Some(j), Some(extra)) = (j.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            j.insert(k.clone(), v.clone());
        }
    }
    j
}

fn spec(job_id: &str, extra: Value) -> Value {
    let mut s = json!({"jobId": job_id, "regionId": "cn-hangzhou", "credentialsSecretRef": {"name": SECRET}});
    for (k, v) in extra.as_object().expect("spec fields") {
        s[k] = v.clone();
    }
    s
}

async fn create(ns: &TestNamespace, name: &str, spec: Value) {
    let job: DtsJob = support::dtsjob_object(name, spec);
    ns.api::<DtsJob>()
        .create(&PostParams::default(), &job)
        .await
        .unwrap_or_else(|e| panic!("creating DtsJob {name}: {e}"));
}

/// The object as the API server returns it (what Argo CD and Flux read).
async fn raw(ns: &TestNamespace, name: &str) -> Option<Value> {
    let obj = ns.dynamic_dtsjobs().get(name).await.ok()?;
    serde_json::to_value(obj).ok()
}

/// Waits until DtsJob `name` as served satisfies `pred`, and returns it.
async fn capture(ns: &TestNamespace, name: &str, what: &str, pred: impl Fn(&DtsJob) -> bool) -> Value {
    wait_for(
        &format!("DtsJob {name}: {what}"),
        Duration::from_secs(60),
        Duration::from_millis(50),
        || async {
            let v = raw(ns, name).await?;
            let job: DtsJob = serde_json::from_value(v.clone()).ok()?;
            pred(&job).then_some(v)
        },
    )
    .await
}

fn condition<'a>(
    job: &'a DtsJob,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    job.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
}

/// `type_` is `status` with `reason`, for the object's current generation.
fn is(job: &DtsJob, type_: &str, status: &str, reason: &str) -> bool {
    condition(job, type_)
        .is_some_and(|c| c.status == status && c.reason == reason && c.observed_generation == job.metadata.generation)
}

// ----- normalisation of captured objects -----

/// Replaces what differs between runs (uids, times, RequestIds, resource
/// versions, the test's namespace) by fixed values, keeping everything else
/// as served.
fn normalize(mut v: Value, namespace: &str) -> Value {
    let meta = v["metadata"].as_object_mut().expect("metadata");
    for k in ["uid", "resourceVersion", "managedFields", "generateName"] {
        meta.remove(k);
    }
    meta.insert("namespace".into(), json!(NAMESPACE));
    meta.insert("creationTimestamp".into(), json!(FIXED_TIME));
    let mut ids = BTreeMap::new();
    walk(&mut v, &mut ids, namespace);
    v
}

fn walk(v: &mut Value, ids: &mut BTreeMap<String, String>, namespace: &str) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                match k.as_str() {
                    "lastTransitionTime" | "observedAt" | "lastAttemptTime" | "time" | "since" => {
                        *child = json!(FIXED_TIME)
                    }
                    "requestId" => {
                        if let Some(s) = child.as_str() {
                            *child = json!(placeholder(ids, s));
                        }
                    }
                    _ => walk(child, ids, namespace),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| walk(i, ids, namespace)),
        Value::String(s) => *s = normalize_text(s, ids, namespace),
        _ => {}
    }
}

/// The n-th distinct RequestId of an object, as a fixed UUID.
fn placeholder(ids: &mut BTreeMap<String, String>, id: &str) -> String {
    let n = ids.len() + 1;
    ids.entry(id.to_owned())
        .or_insert_with(|| format!("00000000-0000-4000-8000-{n:012}"))
        .clone()
}

/// RequestIds in messages (`(RequestId X)`), the Secret's resourceVersion in
/// failedFor (`secret=123`), and the test's namespace.
fn normalize_text(s: &str, ids: &mut BTreeMap<String, String>, namespace: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("RequestId ") {
        let start = i + "RequestId ".len();
        out.push_str(&rest[..start]);
        let id: String = rest[start..]
            .chars()
            .take_while(|c| c.is_ascii_hexdigit() || *c == '-')
            .collect();
        if id.len() >= 32 {
            out.push_str(&placeholder(ids, &id));
        } else {
            out.push_str(&id);
        }
        rest = &rest[start + id.len()..];
    }
    out.push_str(rest);
    let mut out = out.replace(namespace, NAMESPACE);
    if let Some(i) = out.find("secret=") {
        let digits = out[i + 7..].chars().take_while(char::is_ascii_digit).count();
        if digits > 0 {
            out.replace_range(i + 7..i + 7 + digits, "1");
        }
    }
    out
}

/// What must not change between runs: the states and conditions that the
/// health check and kstatus read.
fn shape(v: &Value) -> Value {
    let status = &v["status"];
    let conditions: Vec<Value> = status["conditions"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    json!({"type": c["type"], "status": c["status"], "reason": c["reason"],
                           "observedGeneration": c["observedGeneration"]})
                })
                .collect()
        })
        .unwrap_or_default();
    let directions: Vec<Value> = status["directions"]
        .as_array()
        .map(|ds| {
            ds.iter()
                .map(|d| json!({"direction": d["direction"], "state": d["state"]}))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "generation": v["metadata"]["generation"],
        "annotations": v["metadata"]["annotations"],
        "spec": v["spec"],
        "phase": status["phase"],
        "observedGeneration": status["observedGeneration"],
        "conditions": conditions,
        "directions": directions,
    })
}

const HEADER: &str = "# Captured from a real DtsJob by tests/e2e_gitops.rs (UPDATE_TESTDATA=1 rewrites it;\n\
# the normal run checks that its states and conditions still match).\n";

/// Compares (or, with UPDATE_TESTDATA=1, writes) one captured object.
/// Returns a mismatch description instead of panicking, so every file is
/// checked in one run.
fn check_or_write(file: &str, captured: Value, namespace: &str) -> Option<String> {
    let captured = normalize(captured, namespace);
    let path = Path::new(TESTDATA).join(file);
    if update_mode() {
        std::fs::create_dir_all(TESTDATA).expect("testdata dir");
        let yaml = serde_yaml::to_string(&captured).expect("YAML");
        std::fs::write(&path, format!("{HEADER}{yaml}")).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return None;
    }
    let committed = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => return Some(format!("{file}: cannot read {} ({e})", path.display())),
    };
    let committed: Value = serde_yaml::from_str(&committed).expect("committed testdata is YAML");
    let (want, got) = (shape(&committed), shape(&captured));
    (want != got).then(|| {
        format!(
            "{file}: the captured DtsJob no longer matches the committed one\n  committed: {want}\n  captured:  {got}"
        )
    })
}

#[tokio::test]
async fn dtsjobs_in_every_state_match_the_gitops_testdata() {
    let ns = TestNamespace::new("gitops-states").await;
    let emu = Emulator::start(
        &ns,
        "emulator",
        json!({"accounts": [stack::account()], "jobs": [
            emulator_job("gitopsNoStatus", false, json!({})),
            emulator_job("gitopsRunning", false, json!({})),
            emulator_job("gitopsStopped", true, json!({})),
            emulator_job("gitopsSuspended", false, json!({})),
            // DTS takes ten minutes to show the suspend: the operator waits.
            emulator_job("gitopsSuspending", false, json!({"transitionMs": 600_000})),
            emulator_job("gitopsOneWay", false, json!({})),
            emulator_job("gitopsNoSecret", false, json!({})),
            emulator_job("gitopsConsole", false, json!({"status": "Suspending"})),
            emulator_job("gitopsPaused", false, json!({})),
            emulator_job("gitopsStale", false, json!({})),
            emulator_job("gitopsRetrying", false, json!({})),
        ]}),
    )
    .await;
    stack::create_credentials_secret(&ns, SECRET).await;
    let mut found = Vec::new();

    // Before any operator runs: no status at all.
    create(
        &ns,
        "no-status",
        spec("gitopsNoStatus", json!({"desiredState": "Running"})),
    )
    .await;
    let v = capture(&ns, "no-status", "created, no status", |j| j.status.is_none()).await;
    found.extend(check_or_write("no-status.yaml", v, &ns.name));

    let mut op = Operator::start(
        &ns,
        "operator",
        &emu.url,
        OperatorOptions {
            extra_args: vec!["--poll-interval".into(), "1s".into()],
            ..Default::default()
        },
    );
    create(
        &ns,
        "running",
        spec("gitopsRunning", json!({"desiredState": "Running"})),
    )
    .await;
    create(
        &ns,
        "stopped",
        spec(
            "gitopsStopped",
            json!({"desiredState": "Stopped", "directions": ["Forward", "Reverse"]}),
        ),
    )
    .await;
    create(
        &ns,
        "suspended",
        spec("gitopsSuspended", json!({"desiredState": "Suspended"})),
    )
    .await;
    create(
        &ns,
        "suspending",
        spec("gitopsSuspending", json!({"desiredState": "Suspended"})),
    )
    .await;
    // Reverse of a one-way job: DTS refuses it (InvalidParameter, terminal).
    create(
        &ns,
        "stalled-invalid-parameter",
        spec(
            "gitopsOneWay",
            json!({"desiredState": "Stopped", "directions": ["Forward", "Reverse"]}),
        ),
    )
    .await;
    create(
        &ns,
        "stalled-credentials",
        spec(
            "gitopsNoSecret",
            json!({"desiredState": "Stopped", "credentialsSecretRef": {"name": "no-such-secret"}}),
        ),
    )
    .await;
    // Suspended in the console; the spec says Running but only observes.
    create(
        &ns,
        "not-in-desired-state",
        spec(
            "gitopsConsole",
            json!({"desiredState": "Running", "managementPolicy": "ObserveOnly"}),
        ),
    )
    .await;
    create(&ns, "paused", spec("gitopsPaused", json!({"desiredState": "Running"}))).await;
    create(
        &ns,
        "stale-generation",
        spec("gitopsStale", json!({"desiredState": "Running"})),
    )
    .await;

    let v = capture(&ns, "running", "Ready=True Running", |j| {
        is(j, "Ready", "True", "Running")
    })
    .await;
    found.extend(check_or_write("running.yaml", v, &ns.name));
    let v = capture(&ns, "stopped", "Ready=True Stopped", |j| {
        is(j, "Ready", "True", "Stopped")
    })
    .await;
    found.extend(check_or_write("stopped.yaml", v, &ns.name));
    let v = capture(&ns, "suspended", "Ready=True Suspended", |j| {
        is(j, "Ready", "True", "Suspended")
    })
    .await;
    found.extend(check_or_write("suspended.yaml", v, &ns.name));
    let v = capture(&ns, "suspending", "Reconciling=True Suspending, after the call", |j| {
        is(j, "Reconciling", "True", "Suspending")
            && j.status.as_ref().is_some_and(|s| {
                s.history.iter().any(|c| c.action == "SuspendDtsJob")
                    // DTS read since (it still shows Synchronizing): the
                    // message then says what DTS shows, whatever the timing.
                    && s.directions.iter().all(|d| d.observed.is_some())
            })
    })
    .await;
    found.extend(check_or_write("suspending.yaml", v, &ns.name));
    let v = capture(
        &ns,
        "stalled-invalid-parameter",
        "Stalled=True InvalidParameter, Forward stopped",
        |j| is(j, "Stalled", "True", "InvalidParameter") && condition(j, "Reconciling").is_none(),
    )
    .await;
    found.extend(check_or_write("stalled-invalid-parameter.yaml", v, &ns.name));
    let v = capture(
        &ns,
        "stalled-credentials",
        "Stalled=True CredentialsSecretNotFound",
        |j| is(j, "Stalled", "True", "CredentialsSecretNotFound"),
    )
    .await;
    found.extend(check_or_write("stalled-credentials.yaml", v, &ns.name));
    let v = capture(&ns, "not-in-desired-state", "Ready=False NotInDesiredState", |j| {
        is(j, "Ready", "False", "NotInDesiredState")
    })
    .await;
    found.extend(check_or_write("not-in-desired-state.yaml", v, &ns.name));

    capture(&ns, "paused", "Ready=True Running", |j| {
        is(j, "Ready", "True", "Running")
    })
    .await;
    ns.api::<DtsJob>()
        .patch(
            "paused",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"kubedts.io/paused": "true"}}})),
        )
        .await
        .expect("pausing");
    let v = capture(&ns, "paused", "Paused=True", |j| is(j, "Paused", "True", "Paused")).await;
    found.extend(check_or_write("paused.yaml", v, &ns.name));

    // Read by the observer before the faults below refuse every call.
    capture(&ns, "stale-generation", "Ready=True Running", |j| {
        is(j, "Ready", "True", "Running")
    })
    .await;

    // A stop DTS keeps refusing with a retryable 503: retried with backoff.
    emu.faults(json!({"failNext": {"count": 100_000, "status": 503, "code": "ServiceUnavailable"}}))
        .await;
    create(
        &ns,
        "stop-retrying",
        spec("gitopsRetrying", json!({"desiredState": "Stopped"})),
    )
    .await;
    let v = capture(
        &ns,
        "stop-retrying",
        "Reconciling=True RetryScheduled after a 503",
        |j| {
            is(j, "Reconciling", "True", "RetryScheduled")
                && j.status.as_ref().is_some_and(|s| {
                    s.directions
                        .iter()
                        .any(|d| d.error_code.as_deref() == Some("ServiceUnavailable"))
                })
        },
    )
    .await;
    found.extend(check_or_write("stop-retrying.yaml", v, &ns.name));

    // A new generation while no operator runs: the status describes the old one.
    op.process.sigkill();
    ns.api::<DtsJob>()
        .patch(
            "stale-generation",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"desiredState": "Stopped"}})),
        )
        .await
        .expect("changing the spec");
    let v = capture(&ns, "stale-generation", "generation 2, status of generation 1", |j| {
        j.metadata.generation == Some(2) && j.status.as_ref().and_then(|s| s.observed_generation) == Some(1)
    })
    .await;
    found.extend(check_or_write("stale-generation.yaml", v, &ns.name));

    // Nothing captured is left without a file, nor a file without a capture.
    let files: Vec<String> = std::fs::read_dir(TESTDATA)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".yaml"))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(files.len(), 11, "testdata files: {files:?}");
    assert!(
        found.is_empty(),
        "{}\nIf the change is intended, run `UPDATE_TESTDATA=1 scripts/test-e2e-env.sh cargo test -p dts-operator --test e2e_gitops` and review the diff.",
        found.join("\n")
    );
}

// ----- the GitOps examples against the real API server -----

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gitops");

/// The directory of `hack/gitops-tools.sh` (promtool, the Argo CD and Flux
/// CRDs), which scripts/test-e2e-env.sh exports.
fn gitops_tools_dir() -> PathBuf {
    let dir = std::env::var_os("DTS_GITOPS_TOOLS_DIR").unwrap_or_else(|| {
        panic!("DTS_GITOPS_TOOLS_DIR is not set: run the e2e tests with `make test` or scripts/test-e2e-env.sh")
    });
    PathBuf::from(dir)
}

async fn kubectl(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut cmd = tokio::process::Command::new(support::tool("kubectl"));
    cmd.args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("starting kubectl");
    if let Some(input) = stdin {
        use tokio::io::AsyncWriteExt;
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).await.expect("writing stdin");
    }
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("kubectl finished within 120 s")
        .expect("kubectl ran");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The YAML files under `dir`, recursively, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn gitops_examples_are_accepted_by_the_api_server() {
    let ns = TestNamespace::new("gitops-examples").await;
    let crds = gitops_tools_dir().join("crds");
    let crd_files = yaml_files(&crds);
    assert_eq!(
        crd_files.len(),
        4,
        "Argo CD's and Flux's CRDs in {}: {crd_files:?}",
        crds.display()
    );
    for crd in &crd_files {
        let path = crd.display().to_string();
        let (ok, out) = kubectl(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=dts-e2e",
                "-f",
                &path,
            ],
            None,
        )
        .await;
        assert!(ok, "installing {path}:\n{out}");
    }
    let (ok, out) = kubectl(
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/applications.argoproj.io",
            "crd/kustomizations.kustomize.toolkit.fluxcd.io",
            "crd/gitrepositories.source.toolkit.fluxcd.io",
            "crd/helmreleases.helm.toolkit.fluxcd.io",
        ],
        None,
    )
    .await;
    assert!(ok, "CRDs established:\n{out}");

    let mut files = yaml_files(Path::new(EXAMPLES));
    files.push(PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/argocd/argocd-cm.yaml"
    )));
    let mut kinds_seen = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("example");
        if file.file_name().is_some_and(|n| n == "kustomization.yaml")
            && text.contains("kind: Kustomization\n")
            && text.contains("kustomize.config.k8s.io")
        {
            // A kustomize file, not an object: its build is dry-run below.
            continue;
        }
        // The examples live in argocd / flux-system / data-platform, which a
        // dry run cannot create: aim them at the test's namespace.
        let text = text
            .replace("namespace: argocd", &format!("namespace: {}", ns.name))
            .replace("namespace: flux-system", &format!("namespace: {}", ns.name))
            .replace("namespace: data-platform", &format!("namespace: {}", ns.name));
        let objects = text.lines().filter(|l| l.starts_with("kind: ")).count();
        assert!(objects > 0, "{} holds no object", file.display());
        let (ok, out) = kubectl(
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "--validate=strict",
                "--field-manager=dts-e2e-dry-run",
                "-n",
                &ns.name,
                "-f",
                "-",
            ],
            Some(&text),
        )
        .await;
        assert!(ok, "{} is refused by the API server:\n{out}", file.display());
        let accepted = out.lines().filter(|l| l.contains("(server dry run)")).count();
        assert_eq!(accepted, objects, "{}:\n{out}", file.display());
        kinds_seen.extend(text.lines().filter_map(|l| l.strip_prefix("kind: ")).map(str::to_owned));
    }
    for kind in [
        "Application",
        "Kustomization",
        "GitRepository",
        "HelmRelease",
        "ConfigMap",
        "DtsJob",
    ] {
        assert!(
            kinds_seen.iter().any(|k| k == kind),
            "an example {kind} was dry-run: {kinds_seen:?}"
        );
    }

    // The repo of DtsJobs builds with kustomize, and what it builds is accepted.
    let dir = format!("{EXAMPLES}/dtsjobs");
    let (ok, built) = kubectl(&["kustomize", &dir], None).await;
    assert!(ok, "kubectl kustomize {dir}:\n{built}");
    let built = built.replace("namespace: data-platform", &format!("namespace: {}", ns.name));
    let objects = built.lines().filter(|l| l.starts_with("kind: ")).count();
    let (ok, out) = kubectl(
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "--validate=strict",
            "--field-manager=dts-e2e-dry-run",
            "-n",
            &ns.name,
            "-f",
            "-",
        ],
        Some(&built),
    )
    .await;
    assert!(ok, "the kustomize build of {dir}:\n{out}");
    assert_eq!(
        out.lines().filter(|l| l.contains("(server dry run)")).count(),
        objects,
        "{out}"
    );
}

/// What a user reads first: `kubectl explain dtsjob` (from the API server's
/// published OpenAPI) describes the resource, not kube-derive's boilerplate.
#[tokio::test]
async fn kubectl_explain_describes_the_dtsjob() {
    let _ns = TestNamespace::new("gitops-explain").await; // applies the committed CRD
    let out = wait_for(
        "kubectl explain dtsjob to show the CRD's description",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || async {
            let (ok, out) = kubectl(&["explain", "dtsjob"], None).await;
            (ok && out.contains("DESCRIPTION")).then_some(out)
        },
    )
    .await;
    assert!(
        out.contains("Alibaba Cloud DTS") && !out.contains("Auto-generated"),
        "kubectl explain dtsjob:\n{out}"
    );
    let (ok, spec) = kubectl(&["explain", "dtsjob.spec.desiredState"], None).await;
    assert!(
        ok && spec.contains("Suspended"),
        "kubectl explain dtsjob.spec.desiredState:\n{spec}"
    );
}
