//! `testcluster`: a real etcd + kube-apiserver on loopback, envtest-style,
//! for the end-to-end tests (`make test`) and for `make cluster`/`make demo`.
//!
//! `up` generates fresh credentials, starts both processes detached (so the
//! cluster outlives the command), waits until the API server is usable,
//! writes a kubeconfig and installs the CRDs; `down` stops whatever `up`
//! recorded in `DIR/pids`; `secret-scan` searches a run's output for its
//! secrets (`scan`). For fault-injection tests, `restart` stops one
//! component and starts it again from the command line recorded in
//! `DIR/NAME.cmd`, and `pause` / `resume` SIGSTOP / SIGCONT it. There is no
//! kube-controller-manager, scheduler or
//! kubelet, which rules out some things: namespace deletion never finishes,
//! there is no garbage collection, and no Pods run.

mod pki;
mod process;
mod scan;

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use clap::{Parser, Subcommand};
use k8s_openapi::{
    api::core::v1::Namespace, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    config::{KubeConfigOptions, Kubeconfig},
    Api, Client, Config,
};

pub type Result<T, E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

/// The repository this binary was built from: its `crds/` and `hack/` are the
/// defaults, so `cargo run -p testcluster -- up --dir X` needs no other flag.
const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Name of the kubeconfig context; the e2e support module refuses any other,
/// so tests can never run against a developer's real cluster by accident.
const CONTEXT: &str = "dts-testcluster";

#[derive(Parser)]
#[command(about = "Local etcd + kube-apiserver on loopback for tests and demos")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start etcd and kube-apiserver, write DIR/kubeconfig and apply the CRDs.
    Up {
        /// Directory for certificates, etcd data, logs, PIDs and the kubeconfig.
        #[arg(long)]
        dir: PathBuf,
        /// Directory holding etcd, kube-apiserver and kubectl
        /// (default: the cache directory of hack/build-tools.sh).
        #[arg(long, env = "DTS_TEST_BIN_DIR")]
        bin_dir: Option<PathBuf>,
        /// Directory of CRD manifests to apply.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds"))]
        crds: PathBuf,
        /// Seconds to wait for the API server to become ready.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Stop the processes started by `up` (SIGTERM, then SIGKILL). Idempotent.
    Down {
        #[arg(long)]
        dir: PathBuf,
        /// Seconds between SIGTERM and SIGKILL.
        #[arg(long, default_value_t = 10)]
        grace: u64,
    },
    /// Search files for a test run's secrets (one `label<TAB>value` a line
    /// in each ledger); prints `file:line` of each hit (a hash, never the
    /// secret) and a summary, and fails on any hit.
    SecretScan {
        /// A ledger file (repeatable).
        #[arg(long, required = true)]
        ledger: Vec<PathBuf>,
        /// Scan only files modified after this file was (this run's output
        /// in directories that keep earlier runs' too).
        #[arg(long, value_name = "FILE")]
        newer: Option<PathBuf>,
        /// Files and directories (searched recursively) to scan.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Stop one component of a running control plane and start it again with
    /// the same flags, ports, certificates and data, then wait until the API
    /// server is ready again (a crash or rolling restart; clients reconnect).
    Restart {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, value_enum)]
        component: Component,
        /// Seconds between SIGTERM and SIGKILL.
        #[arg(long, default_value_t = 10)]
        grace: u64,
        /// Seconds to wait for the API server to become ready again.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// SIGSTOP one component: alive, holding its connections, answering
    /// nothing (a stalled process or a partition) until `resume`.
    Pause {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, value_enum)]
        component: Component,
    },
    /// SIGCONT a component stopped by `pause`.
    Resume {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, value_enum)]
        component: Component,
    },
}

/// A process of the control plane, by the name `up` records it under.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Component {
    Etcd,
    #[value(name = "kube-apiserver", alias = "apiserver")]
    KubeApiserver,
}

impl Component {
    fn name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::KubeApiserver => "kube-apiserver",
        }
    }
}

fn main() {
    let result = match Cli::parse().command {
        Cmd::Up {
            dir,
            bin_dir,
            crds,
            timeout,
        } => up(&dir, bin_dir, &crds, Duration::from_secs(timeout)),
        Cmd::Down { dir, grace } => {
            let pids = process::recorded_pids(&dir);
            process::stop_all(&dir, Duration::from_secs(grace)).map(|()| process::wait_reaped(&pids))
        }
        Cmd::Restart {
            dir,
            component,
            grace,
            timeout,
        } => restart(
            &dir,
            component,
            Duration::from_secs(grace),
            Duration::from_secs(timeout),
        ),
        Cmd::Pause { dir, component } => {
            process::pause(&dir, component.name(), true).map(|pid| println!("paused {} (pid {pid})", component.name()))
        }
        Cmd::Resume { dir, component } => process::pause(&dir, component.name(), false)
            .map(|pid| println!("resumed {} (pid {pid})", component.name())),
        Cmd::SecretScan { ledger, newer, paths } => scan::run(&ledger, newer.as_deref(), &paths),
    };
    if let Err(e) = result {
        eprintln!("testcluster: error: {e}");
        std::process::exit(1);
    }
}

fn up(dir: &Path, bin_dir: Option<PathBuf>, crds: &Path, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    let bin_dir = match bin_dir {
        Some(d) => d,
        None => default_bin_dir()?,
    };
    for bin in ["etcd", "kube-apiserver", "kubectl"] {
        if !bin_dir.join(bin).is_file() {
            return Err(format!(
                "{} not found; build the control-plane binaries first with `hack/build-tools.sh` (or `make tools`)",
                bin_dir.join(bin).display()
            )
            .into());
        }
    }
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let dir = dir.canonicalize()?;
    if process::any_running(&dir) {
        return Err(format!(
            "a control plane from {} is still running; stop it first with `testcluster down --dir {0}` (or `make cluster-down`)",
            dir.display()
        )
        .into());
    }
    // Each `up` is a fresh cluster: stale etcd data would hold objects signed
    // by the previous, now forgotten, service-account key.
    for stale in ["etcd", "pki", process::PIDS, "kubeconfig", "env", pki::TOKENS] {
        let p = dir.join(stale);
        let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
    }

    let pki = pki::generate(&dir)?;
    let [etcd_port, peer_port, api_port] = free_ports()?;
    let mut children = Vec::new();
    let result = start(
        &dir,
        &bin_dir,
        crds,
        &pki,
        [etcd_port, peer_port, api_port],
        timeout,
        &mut children,
    );
    if let Err(e) = result {
        // Leave nothing behind on a failed start; the logs stay for diagnosis.
        let _ = process::stop_all(&dir, Duration::from_secs(5));
        for child in &mut children {
            let _ = child.wait();
        }
        return Err(e);
    }

    let kubeconfig = dir.join("kubeconfig");
    let env = format!(
        "export KUBECONFIG={}\nexport DTS_TEST_BIN_DIR={}\nexport PATH={}:\"$PATH\"\n",
        kubeconfig.display(),
        bin_dir.display(),
        bin_dir.display()
    );
    pki::write(&dir, "env", &env, false)?;
    println!(
        "control plane ready in {:.1} s: kube-apiserver https://127.0.0.1:{api_port}, etcd http://127.0.0.1:{etcd_port}\n\
         logs: {dir}/etcd.log {dir}/kube-apiserver.log\n\n\
         Use it with:\n  source {dir}/env    # or: export KUBECONFIG={kc}\n  kubectl get crd\n\n\
         Stop it with:\n  cargo run -q -p testcluster -- down --dir {dir}    # make cluster-down for target/cluster",
        started.elapsed().as_secs_f64(),
        dir = dir.display(),
        kc = kubeconfig.display(),
    );
    Ok(())
}

/// `restart`: prints how long the component took to stop and the control
/// plane to answer `/readyz` again (which includes the API server's etcd
/// check), so fault-injection tests can report recovery times.
fn restart(dir: &Path, component: Component, grace: Duration, timeout: Duration) -> Result<()> {
    let name = component.name();
    let started = Instant::now();
    let mut child = process::restart(dir, name, &dir.join(format!("{name}.log")), grace)?;
    let respawned = started.elapsed();
    let kubeconfig =
        fs::read_to_string(dir.join("kubeconfig")).map_err(|e| format!("reading {}/kubeconfig: {e}", dir.display()))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let client = client(&kubeconfig).await?;
        let deadline = Instant::now() + timeout;
        let mut last_err;
        loop {
            if let Some(status) = child.try_wait()? {
                return Err(format!("{name} exited ({status}) after the restart:\n{}", log_tail(dir, name)).into());
            }
            let req = http::Request::get("/readyz").body(Vec::new())?;
            match tokio::time::timeout(Duration::from_secs(5), client.request_text(req)).await {
                Ok(Ok(_)) => break,
                Ok(Err(e)) => last_err = e.to_string(),
                Err(_) => last_err = "/readyz did not answer within 5 s".into(),
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "kube-apiserver not ready again before the timeout (last: {last_err});\n{}",
                    log_tail(dir, "kube-apiserver")
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "restarted {name} (pid {}): stopped and started in {:.2} s, ready in {:.2} s",
            child.id(),
            respawned.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    })
}

fn start(
    dir: &Path,
    bin_dir: &Path,
    crds: &Path,
    pki: &pki::Pki,
    [etcd_port, peer_port, api_port]: [u16; 3],
    timeout: Duration,
    children: &mut Vec<Child>,
) -> Result<()> {
    let d = |rel: &str| dir.join(rel).display().to_string();
    let etcd_url = format!("http://127.0.0.1:{etcd_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let etcd_args = vec![
        "--name=t".into(),
        format!("--data-dir={}", d("etcd")),
        format!("--listen-client-urls={etcd_url}"),
        format!("--advertise-client-urls={etcd_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster=t={peer_url}"),
        // Test data is disposable; fsync dominates etcd latency on shared disks.
        "--unsafe-no-fsync=true".into(),
        "--log-level=warn".into(),
    ];
    children.push(process::spawn_detached(
        dir,
        "etcd",
        &bin_dir.join("etcd"),
        &etcd_args,
        &dir.join("etcd.log"),
    )?);

    let api_args = vec![
        format!("--etcd-servers={etcd_url}"),
        "--bind-address=127.0.0.1".into(),
        // Without it the server looks for a default route to advertise, and
        // there is none in a loopback-only network namespace.
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={api_port}"),
        format!("--cert-dir={}", d("pki")),
        format!("--tls-cert-file={}", d(pki::SERVING_CERT)),
        format!("--tls-private-key-file={}", d(pki::SERVING_KEY)),
        format!("--client-ca-file={}", d(pki::CA_CERT)),
        format!("--token-auth-file={}", d(pki::TOKENS)),
        "--authorization-mode=RBAC".into(),
        // Issuer + signing key enable TokenRequest (`kubectl create token`).
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", d(pki::SA_PUB)),
        format!("--service-account-signing-key-file={}", d(pki::SA_KEY)),
        "--service-cluster-ip-range=10.0.0.0/24".into(),
        "--allow-privileged=true".into(),
        // No kube-controller-manager creates the per-namespace `default`
        // ServiceAccount this admission plugin insists on.
        "--disable-admission-plugins=ServiceAccount".into(),
        // The `kubernetes` Service endpoints would point at 127.0.0.1, which
        // Endpoints reject; nothing here needs them.
        "--endpoint-reconciler-type=none".into(),
        // TESTCLUSTER_PROFILING=1 serves /debug/pprof (for a CPU profile
        // of kube-apiserver during a benchmark, docs/benchmarks.md).
        format!(
            "--profiling={}",
            std::env::var("TESTCLUSTER_PROFILING").is_ok_and(|v| v == "1")
        ),
        "--v=1".into(),
    ];
    children.push(process::spawn_detached(
        dir,
        "kube-apiserver",
        &bin_dir.join("kube-apiserver"),
        &api_args,
        &dir.join("kube-apiserver.log"),
    )?);

    let kubeconfig = kubeconfig_yaml(api_port, pki);
    pki::write(dir, "kubeconfig", &kubeconfig, true)?;

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let client = client(&kubeconfig).await?;
        let deadline = Instant::now() + timeout;
        wait_ready(&client, children, dir, deadline).await?;
        apply_crds(dir, bin_dir, crds, &client, deadline).await
    })
}

/// Ports for etcd (client, peer) and kube-apiserver, chosen by the kernel.
/// All three listeners are held at once so they are distinct; the small race
/// between closing them and the servers binding is accepted (envtest does the
/// same).
fn free_ports() -> Result<[u16; 3]> {
    let listeners = [(); 3].map(|_| TcpListener::bind("127.0.0.1:0"));
    let mut ports = [0; 3];
    for (port, l) in ports.iter_mut().zip(listeners) {
        *port = l?.local_addr()?.port();
    }
    Ok(ports)
}

fn kubeconfig_yaml(api_port: u16, pki: &pki::Pki) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(&pki.ca_pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {CONTEXT}
  cluster:
    server: https://127.0.0.1:{api_port}
    certificate-authority-data: {ca}
users:
- name: admin
  user:
    token: {token}
contexts:
- name: {CONTEXT}
  context:
    cluster: {CONTEXT}
    user: admin
    namespace: default
current-context: {CONTEXT}
",
        token = pki.admin_token
    )
}

async fn client(kubeconfig: &str) -> Result<Client> {
    let kc = Kubeconfig::from_yaml(kubeconfig)?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Polls `/readyz`, then namespace `default` (created asynchronously by a
/// post-start hook, so it can lag behind readiness), failing early with the
/// log tail if either process dies.
async fn wait_ready(client: &Client, children: &mut [Child], dir: &Path, deadline: Instant) -> Result<()> {
    let mut last_err;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    loop {
        for (child, name) in children.iter_mut().zip(["etcd", "kube-apiserver"]) {
            if let Some(status) = child.try_wait()? {
                return Err(format!("{name} exited ({status}) during start-up:\n{}", log_tail(dir, name)).into());
            }
        }
        let req = http::Request::get("/readyz").body(Vec::new())?;
        match tokio::time::timeout(Duration::from_secs(5), client.request_text(req)).await {
            Ok(Ok(_)) => match namespaces.get_opt("default").await {
                Ok(Some(_)) => return Ok(()),
                Ok(None) => last_err = "ready, but namespace default does not exist yet".into(),
                Err(e) => last_err = e.to_string(),
            },
            Ok(Err(e)) => last_err = e.to_string(),
            Err(_) => last_err = "/readyz did not answer within 5 s".into(),
        }
        if Instant::now() > deadline {
            return Err(format!(
                "kube-apiserver not ready before the timeout (last: {last_err});\n{}",
                log_tail(dir, "kube-apiserver")
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Applies `crds/` with the built kubectl (the same path users take) and waits
/// until every applied CRD is Established, i.e. its resources are served.
async fn apply_crds(dir: &Path, bin_dir: &Path, crds: &Path, client: &Client, deadline: Instant) -> Result<()> {
    let out = Command::new(bin_dir.join("kubectl"))
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .args(["apply", "-o", "name", "-f"])
        .arg(crds)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "kubectl apply -f {} failed: {}",
            crds.display(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("customresourcedefinition.apiextensions.k8s.io/"))
    {
        loop {
            let crd = api.get(name).await?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                eprintln!("CRD {name} established");
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("CRD {name} not Established before the timeout").into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

fn log_tail(dir: &Path, name: &str) -> String {
    let path = dir.join(format!("{name}.log"));
    let log = fs::read_to_string(&path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    format!(
        "--- last lines of {} ---\n{}",
        path.display(),
        lines[lines.len().saturating_sub(30)..].join("\n")
    )
}

/// The cache directory hack/build-tools.sh builds into, asked from the script
/// itself so the version pins live in one place.
fn default_bin_dir() -> Result<PathBuf> {
    let script = Path::new(REPO).join("hack/build-tools.sh");
    let out = Command::new(&script)
        .arg("--print-dir")
        .output()
        .map_err(|e| format!("running {} --print-dir: {e}; pass --bin-dir", script.display()))?;
    if !out.status.success() {
        return Err(format!("{} --print-dir failed; pass --bin-dir", script.display()).into());
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn fake_bin(dir: &Path, name: &str, script: &str) {
        let path = dir.join(name);
        fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A start that fails must say why (with the log) and leave nothing
    /// running: here kube-apiserver dies at once while etcd keeps running.
    #[test]
    fn failed_start_reports_the_log_and_stops_what_it_started() {
        let bin = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let etcd_pid = bin.path().join("etcd.pid");
        fake_bin(
            bin.path(),
            "etcd",
            &format!("echo $$ > {}; exec sleep 600", etcd_pid.display()),
        );
        fake_bin(bin.path(), "kube-apiserver", "echo 'boom: unknown flag' >&2; exit 1");
        fake_bin(bin.path(), "kubectl", "exit 0");

        let err = up(
            dir.path(),
            Some(bin.path().into()),
            Path::new(REPO),
            Duration::from_secs(20),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("kube-apiserver exited"), "{err}");
        assert!(err.contains("boom: unknown flag"), "{err}");
        assert!(!dir.path().join(process::PIDS).exists());
        // The fake etcd may be stopped before its shell wrote the pid file
        // (a loaded machine): then it never ran far enough to be left running.
        if let Ok(pid) = fs::read_to_string(&etcd_pid) {
            assert!(
                !Path::new(&format!("/proc/{}", pid.trim())).exists(),
                "etcd (pid {pid}) left running"
            );
        }
    }

    #[test]
    fn missing_binaries_point_at_the_build_script() {
        let bin = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let err = up(
            dir.path(),
            Some(bin.path().into()),
            Path::new(REPO),
            Duration::from_secs(1),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("hack/build-tools.sh"), "{err}");
    }

    #[test]
    fn down_without_a_cluster_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        process::stop_all(dir.path(), Duration::from_secs(1)).unwrap();
        process::stop_all(dir.path(), Duration::from_secs(1)).unwrap();
    }

    /// A PID from the pids file is signalled only if the start time matches,
    /// so a reused PID (here: this test process itself) is left alone.
    #[test]
    fn down_stops_recorded_processes_but_not_a_reused_pid() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = process::spawn_detached(
            dir.path(),
            "sleep",
            Path::new("/bin/sleep"),
            &["600".to_string()],
            &dir.path().join("sleep.log"),
        )
        .unwrap();
        let mut pids = fs::read_to_string(dir.path().join(process::PIDS)).unwrap();
        pids.push_str(&format!("impostor {} 1\n", std::process::id()));
        fs::write(dir.path().join(process::PIDS), pids).unwrap();
        assert!(process::any_running(dir.path()));

        process::stop_all(dir.path(), Duration::from_secs(5)).unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "sleep was stopped by a signal: {status:?}");
        assert!(!process::any_running(dir.path()));
    }

    fn pid_of(dir: &Path, name: &str) -> i32 {
        fs::read_to_string(dir.join(process::PIDS))
            .unwrap()
            .lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some(name)).then(|| f.next().unwrap().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("{name} not recorded"))
    }

    fn state(pid: i32) -> String {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().next().unwrap_or("").to_string())
            .unwrap_or_default()
    }

    /// Waits until `log` holds `n` start lines of the fake binary; returns it.
    fn wait_log_count(log: &Path, n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = fs::read_to_string(log).unwrap_or_default();
            let count = text.matches("started with --port=1234 two words").count();
            if count >= n || Instant::now() > deadline {
                assert_eq!(count, n, "{text}");
                return text;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `restart` replaces the recorded process with a new one running the
    /// same command line, appends to its log, and keeps the other entries;
    /// the old process is gone (here even though it was paused first).
    #[test]
    fn restart_runs_the_same_command_line_again_and_appends_to_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let bin = tempfile::tempdir().unwrap();
        fake_bin(bin.path(), "fake", "echo \"started with $*\"; exec sleep 600");
        let log = dir.path().join("fake.log");
        let args = ["--port=1234".to_string(), "two words".to_string()];
        let mut first = process::spawn_detached(dir.path(), "fake", &bin.path().join("fake"), &args, &log).unwrap();
        let mut other = process::spawn_detached(
            dir.path(),
            "other",
            Path::new("/bin/sleep"),
            &["600".into()],
            &dir.path().join("o.log"),
        )
        .unwrap();
        let old = pid_of(dir.path(), "fake");
        wait_log_count(&log, 1);
        process::pause(dir.path(), "fake", true).unwrap();

        let mut second = process::restart(dir.path(), "fake", &log, Duration::from_secs(5)).unwrap();
        assert!(!first.wait().unwrap().success(), "the old process was stopped");
        let new = pid_of(dir.path(), "fake");
        assert_ne!(old, new);
        assert_eq!(new, second.id() as i32);
        assert!(!process::is_paused(dir.path(), "fake").unwrap());
        assert_eq!(pid_of(dir.path(), "other"), other.id() as i32);
        let names: Vec<String> = fs::read_to_string(dir.path().join(process::PIDS))
            .unwrap()
            .lines()
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect();
        assert_eq!(names, ["fake", "other"], "the restarted entry keeps its place");
        let text = wait_log_count(&log, 2);
        assert!(text.contains("restarting fake"), "{text}");

        process::stop_all(dir.path(), Duration::from_secs(5)).unwrap();
        second.wait().unwrap();
        other.wait().unwrap();
    }

    /// `pause` leaves the process alive but stopped (state T) until `resume`.
    #[test]
    fn pause_stops_the_process_until_resume() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = process::spawn_detached(
            dir.path(),
            "sleep",
            Path::new("/bin/sleep"),
            &["600".into()],
            &dir.path().join("s.log"),
        )
        .unwrap();
        let pid = process::pause(dir.path(), "sleep", true).unwrap();
        assert_eq!(pid, child.id() as i32);
        let wait_state = |want: bool| {
            let deadline = Instant::now() + Duration::from_secs(5);
            while (state(pid) == "T") != want && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            state(pid)
        };
        assert_eq!(wait_state(true), "T");
        assert!(process::is_paused(dir.path(), "sleep").unwrap());
        process::pause(dir.path(), "sleep", false).unwrap();
        assert_ne!(wait_state(false), "T");
        assert!(!process::is_paused(dir.path(), "sleep").unwrap());
        process::stop_all(dir.path(), Duration::from_secs(5)).unwrap();
        child.wait().unwrap();
    }

    /// Restarting or pausing something `up` did not start is a clear error.
    #[test]
    fn restart_and_pause_of_a_component_not_running_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let err = process::restart(dir.path(), "etcd", &dir.path().join("etcd.log"), Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no recorded command line for etcd"), "{err}");
        let err = process::pause(dir.path(), "kube-apiserver", true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("kube-apiserver is not running"), "{err}");
    }
}
