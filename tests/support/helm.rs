//! Running the control-plane tools (helm, kubectl) from tests, and
//! installing the chart with helm.

use std::process::Stdio;
use std::time::Duration;

use super::{tool, TestNamespace};

/// The chart in this repository.
pub const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/helm/dts-operator");

/// Runs a control-plane tool (helm, kubectl) against the test cluster
/// (inherited KUBECONFIG) with Helm's cache and config kept in the test's log
/// directory; returns stdout, failing the test on a non-zero exit.
pub async fn run_tool(ns: &TestNamespace, name: &str, args: &[&str], stdin: Option<&str>) -> String {
    let helm_home = ns.log_dir().join("helm-home");
    let mut cmd = tokio::process::Command::new(tool(name));
    cmd.args(args)
        .env("HELM_CACHE_HOME", helm_home.join("cache"))
        .env("HELM_CONFIG_HOME", helm_home.join("config"))
        .env("HELM_DATA_HOME", helm_home.join("data"))
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("starting {name} {args:?}: {e}"));
    if let Some(input) = stdin {
        use tokio::io::AsyncWriteExt;
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).await.expect("writing stdin");
    }
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{name} {args:?} did not finish within 120 s"))
        .expect("waiting for the tool");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    std::fs::write(
        ns.log_dir()
            .join(format!("{name}-{}.log", uuid::Uuid::new_v4().simple())),
        format!("{name} {args:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"),
    )
    .ok();
    assert!(
        out.status.success(),
        "{name} {args:?} failed ({}):\n{stderr}\n{stdout}",
        out.status
    );
    stdout
}

/// `helm install`s the chart as a new release (a random name, returned) into
/// `release_ns` with these `--set` values; `ns` keeps Helm's files and the
/// tool's log. Fails the test unless Helm reports the release deployed.
pub async fn install(ns: &TestNamespace, release_ns: &str, sets: &[&str]) -> String {
    let mut args = Vec::new();
    for set in sets {
        args.extend(["--set", set]);
    }
    install_with(ns, release_ns, &args).await
}

/// [`install`] with any further `helm install` arguments (e.g. `-f values.yaml`).
pub async fn install_with(ns: &TestNamespace, release_ns: &str, extra: &[&str]) -> String {
    let release = format!("r{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut args = vec!["install", &release, CHART, "--namespace", release_ns];
    args.extend_from_slice(extra);
    let out = run_tool(ns, "helm", &args, None).await;
    assert!(out.contains("STATUS: deployed"), "helm install output:\n{out}");
    release
}
