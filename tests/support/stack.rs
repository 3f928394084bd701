//! The product's own parts as a test runs them: the real `dts-emulator` and
//! `dts-operator` binaries as subprocesses, with helpers to read the
//! emulator's journal and inject faults, and to read the operator's metrics.
//!
//! Secrets used by tests are the constants of [`super::secrets`]; a test
//! that checks for leaks searches for them, and so does the run's secret scan.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use super::{command, wait_for, ChildProcess, TestNamespace};

/// The emulator account every test uses.
pub const ACCESS_KEY_ID: &str = "LTAIe2eTestAccessKey";
/// Its secret: must never appear in logs, status or Events.
pub use super::secrets::ACCESS_KEY_SECRET;

/// The emulator account, as the config's `accounts` entry.
pub fn account() -> Value {
    json!({"accessKeyId": ACCESS_KEY_ID, "accessKeySecret": ACCESS_KEY_SECRET})
}

/// A job entry of the emulator config.
pub fn job(job_id: &str, instance_id: Option<&str>, two_way: bool) -> Value {
    let mut j = json!({"jobId": job_id, "regionId": "cn-hangzhou", "twoWay": two_way, "status": "Synchronizing"});
    if let Some(i) = instance_id {
        j["instanceId"] = json!(i);
    }
    j
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The `dts-emulator` binary: `DTS_EMULATOR_BIN` if set, else the one next
/// to this test's own target directory. It belongs to another package of the
/// workspace, so Cargo gives no `CARGO_BIN_EXE_dts-emulator` here, and a test
/// must not run cargo itself (cargo holds the build lock while tests run):
/// `make test` builds it first, as does `cargo test --workspace`.
pub fn emulator_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("DTS_EMULATOR_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "DTS_EMULATOR_BIN={} is not a file; build it with `cargo build -p dts-emulator`",
            path.display()
        );
        return path;
    }
    // target/<profile>/deps/<test binary> → target/<profile>/dts-emulator
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .filter(|deps| deps.file_name().is_some_and(|n| n == "deps"))
        .and_then(Path::parent)
        .unwrap_or_else(|| {
            panic!(
                "{} is not in a target/<profile>/deps directory; set DTS_EMULATOR_BIN",
                exe.display()
            )
        });
    let path = profile_dir.join(format!("dts-emulator{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p dts-emulator` (or set DTS_EMULATOR_BIN)",
        path.display()
    );
    path
}

/// A running `dts-emulator` subprocess.
pub struct Emulator {
    pub process: ChildProcess,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    http: reqwest::Client,
}

impl Emulator {
    /// Starts the real binary with `config` (JSON is accepted as YAML).
    pub async fn start(ns: &TestNamespace, name: &str, config: Value) -> Emulator {
        // The config holds the accounts' secrets: an input, not a log.
        let path = ns.input_dir().join(format!("{name}-config.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("config serializes")).expect("write config");
        let port = free_port();
        let cmd = command(
            emulator_bin(),
            [
                "--listen".to_owned(),
                format!("127.0.0.1:{port}"),
                "--config".to_owned(),
                path.display().to_string(),
            ]
            .into_iter()
            .chain(
                super::secrets::ledger_path()
                    .into_iter()
                    .flat_map(|ledger| ["--secret-ledger".to_owned(), ledger.display().to_string()]),
            ),
        );
        let process = ns.spawn(name, cmd);
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client");
        let emu = Emulator { process, url, http };
        wait_for(
            "the emulator to listen",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async {
                emu.http
                    .get(format!("{}/_emulator/jobs", emu.url))
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
            },
        )
        .await;
        emu
    }

    /// Every call received so far.
    pub async fn journal(&self) -> Vec<Value> {
        let resp = self
            .http
            .get(format!("{}/_emulator/journal", self.url))
            .send()
            .await
            .expect("journal");
        serde_json::from_slice(&resp.bytes().await.expect("journal body")).expect("journal is JSON")
    }

    /// The journal without the observer's batched reads (DescribeDtsJobs):
    /// the calls reconciles make (StopDtsJob, DescribeDtsJobDetail, ...).
    /// The observer reads every DtsJob at start-up and then every
    /// `--poll-interval`, so "no DTS call" assertions about a reconcile count
    /// these.
    pub async fn reconcile_calls(&self) -> Vec<Value> {
        self.journal()
            .await
            .into_iter()
            .filter(|e| e["action"] != "DescribeDtsJobs")
            .collect()
    }

    /// Journal entries for `action`.
    pub async fn calls(&self, action: &str) -> Vec<Value> {
        self.journal()
            .await
            .into_iter()
            .filter(|e| e["action"] == action)
            .collect()
    }

    /// StopDtsJob entries for `job_id` and `direction`.
    pub async fn stops(&self, job_id: &str, direction: &str) -> Vec<Value> {
        self.calls("StopDtsJob")
            .await
            .into_iter()
            .filter(|e| {
                e["params"]["DtsJobId"] == job_id
                    && e["params"]["SynchronizationDirection"].as_str().unwrap_or("Forward") == direction
            })
            .collect()
    }

    /// Sets faults (`POST /_emulator/faults`).
    pub async fn faults(&self, faults: Value) {
        let resp = self
            .http
            .post(format!("{}/_emulator/faults", self.url))
            .header("content-type", "application/json")
            .body(faults.to_string())
            .send()
            .await
            .expect("faults");
        assert!(resp.status().is_success(), "setting faults {faults}: {}", resp.status());
    }

    /// Changes a job direction's state as the DTS console would
    /// (`POST /_emulator/jobs/{jobId}/state`).
    pub async fn set_state(&self, job_id: &str, state: Value) {
        let resp = self
            .http
            .post(format!("{}/_emulator/jobs/{job_id}/state", self.url))
            .header("content-type", "application/json")
            .body(state.to_string())
            .send()
            .await
            .expect("emulator admin API");
        assert!(
            resp.status().is_success(),
            "setting {job_id} {state}: {}",
            resp.status()
        );
    }

    /// Job states (`GET /_emulator/jobs`).
    pub async fn jobs(&self) -> Vec<Value> {
        let resp = self
            .http
            .get(format!("{}/_emulator/jobs", self.url))
            .send()
            .await
            .expect("jobs");
        serde_json::from_slice(&resp.bytes().await.expect("jobs body")).expect("jobs are JSON")
    }
}

/// Options of one operator process.
pub struct OperatorOptions {
    pub extra_args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Watch only the test's namespace (the default), so tests running in
    /// parallel never see each other's DtsJobs.
    pub namespace_scoped: bool,
}

impl Default for OperatorOptions {
    fn default() -> Self {
        Self {
            extra_args: Vec::new(),
            env: Vec::new(),
            namespace_scoped: true,
        }
    }
}

/// The emulator account's keys as the operator's default credentials (the
/// `ALIBABA_CLOUD_*` environment variables), for [`OperatorOptions::env`].
pub fn default_credentials_env() -> Vec<(String, String)> {
    vec![
        ("ALIBABA_CLOUD_ACCESS_KEY_ID".into(), ACCESS_KEY_ID.into()),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET".into(), ACCESS_KEY_SECRET.into()),
    ]
}

/// The Lease the replicas of [`start_replica`] elect a leader on.
pub const REPLICA_LEASE: &str = "dts-operator-leader";

/// A leader-electing replica `identity` on [`REPLICA_LEASE`] in the test's
/// namespace, with the default credentials.
pub fn start_replica(ns: &TestNamespace, emu: &Emulator, identity: &str, timing: &LeaseTiming) -> Operator {
    Operator::start(
        ns,
        identity,
        &emu.url,
        OperatorOptions {
            extra_args: timing.args(REPLICA_LEASE, &ns.name, identity),
            env: default_credentials_env(),
            namespace_scoped: true,
        },
    )
}

/// Leader election as the operator's flags take it: which Lease, who is
/// asking, and the timing (client-go's lease duration, renew deadline and
/// retry period).
pub struct LeaseTiming {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseTiming {
    /// The `--leader-elect` flags for replica `identity` on Lease
    /// `namespace/name`.
    pub fn args(&self, name: &str, namespace: &str, identity: &str) -> Vec<String> {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        vec![
            "--leader-elect".into(),
            "--lease-name".into(),
            name.into(),
            "--lease-namespace".into(),
            namespace.into(),
            "--identity".into(),
            identity.into(),
            "--lease-duration".into(),
            ms(self.lease_duration),
            "--lease-renew-deadline".into(),
            ms(self.renew_deadline),
            "--lease-retry-period".into(),
            ms(self.retry_period),
        ]
    }
}

/// A running `dts-operator run` subprocess.
pub struct Operator {
    pub process: ChildProcess,
    pub metrics_url: String,
}

impl Operator {
    /// Starts the real operator against `dts_endpoint`, logging at debug
    /// level for its own and the DTS client's targets (so a secret leak
    /// would show in its log, and the run's secret scan searches it) and
    /// at info for the rest (kube, hyper: their debug output is large).
    pub fn start(ns: &TestNamespace, name: &str, dts_endpoint: &str, opts: OperatorOptions) -> Operator {
        let port = free_port();
        let mut args = vec![
            "run".to_owned(),
            "--dts-endpoint".to_owned(),
            dts_endpoint.to_owned(),
            "--metrics-addr".to_owned(),
            format!("127.0.0.1:{port}"),
            "--log-level".to_owned(),
            "info,dts_operator=debug,dts_api=debug".to_owned(),
            "--retry-base-delay".to_owned(),
            "500ms".to_owned(),
            "--retry-max-delay".to_owned(),
            "5s".to_owned(),
        ];
        if opts.namespace_scoped {
            args.extend(["--namespace".to_owned(), ns.name.clone()]);
        }
        args.extend(opts.extra_args);
        let mut cmd: Command = command(env!("CARGO_BIN_EXE_dts-operator"), args);
        // No default credentials unless the test gives them.
        cmd.env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
            .env_remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET");
        cmd.env_remove("ALIBABA_CLOUD_SECURITY_TOKEN")
            .env("RUST_LOG_STYLE", "never")
            .env("NO_COLOR", "1");
        for (k, v) in opts.env {
            cmd.env(k, v);
        }
        let process = ns.spawn(name, cmd);
        Operator {
            process,
            metrics_url: format!("http://127.0.0.1:{port}/metrics"),
        }
    }

    /// The `/metrics` text, once the server answers.
    pub async fn metrics(&self) -> String {
        let http = reqwest::Client::new();
        wait_for(
            "the operator's /metrics",
            Duration::from_secs(30),
            Duration::from_millis(200),
            || async {
                let r = http.get(&self.metrics_url).send().await.ok()?;
                r.status().is_success().then_some(())?;
                r.text().await.ok()
            },
        )
        .await
    }

    /// The value of one sample (`name{labels}`), summed over samples that
    /// contain every given label pair; 0 when absent.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.metrics().await;
        sum_samples(&text, name, labels)
    }
}

/// Sums the samples of `name` whose label set contains every `labels` pair.
pub fn sum_samples(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            (metric == name).then_some(())?;
            labels
                .iter()
                .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
                .then_some(())?;
            value.parse::<f64>().ok()
        })
        .sum()
}

/// The content of `path`, or empty.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

// ----- Helpers of the deploy and leader-election tests (e2e_deploy, e2e_leader) -----

impl Operator {
    /// The HTTP status of `/readyz` (on the metrics port), or `None` while
    /// the server does not answer.
    pub async fn readyz(&self) -> Option<u16> {
        let url = self.metrics_url.replace("/metrics", "/readyz");
        let resp = reqwest::Client::new().get(url).send().await.ok()?;
        Some(resp.status().as_u16())
    }
}

/// Sends SIGTERM and returns at once (unlike [`ChildProcess::sigterm`]), so a
/// test can watch the graceful shutdown; poll `try_status` for the exit.
pub fn send_sigterm(process: &mut ChildProcess) {
    // Only an unreaped child: its PID cannot have been reused.
    if process.try_status().is_none() {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(process.id() as libc::pid_t, libc::SIGTERM) };
    }
}

/// A journal entry's arrival `time` in milliseconds since the Unix epoch.
pub fn journal_time_ms(entry: &Value) -> i64 {
    let time = entry["time"]
        .as_str()
        .unwrap_or_else(|| panic!("journal entry without time: {entry}"));
    let ts: jiff::Timestamp = time
        .parse()
        .unwrap_or_else(|e| panic!("journal time {time:?} is not RFC 3339: {e}"));
    ts.as_millisecond()
}

/// Milliseconds since the Unix epoch now (the clock the emulator's journal uses).
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// A token of ServiceAccount `namespace/name`, obtained with TokenRequest
/// (what the kubelet mounts into a Pod), valid for an hour.
pub async fn service_account_token(client: &kube::Client, namespace: &str, name: &str) -> String {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    let request: TokenRequest = serde_json::from_value(json!({
        "spec": { "audiences": [], "expirationSeconds": 3600 }
    }))
    .expect("TokenRequest");
    let api: kube::Api<ServiceAccount> = kube::Api::namespaced(client.clone(), namespace);
    let answer = api
        .create_token_request(name, &Default::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for ServiceAccount {namespace}/{name}: {e}"));
    let token = answer.status.expect("TokenRequest status").token;
    super::secrets::record("service-account-token", &token);
    token
}

/// Writes a kubeconfig that reaches the test control plane (server and CA of
/// `KUBECONFIG`) with `token` as its only credential. The context keeps the
/// test cluster's name, so [`super::client`]'s guard accepts it.
pub fn write_token_kubeconfig(path: &Path, token: &str) {
    let source = std::env::var_os("KUBECONFIG").expect("KUBECONFIG is set");
    let text = std::fs::read_to_string(&source).expect("reading KUBECONFIG");
    let config: Value = serde_yaml::from_str(&text).expect("KUBECONFIG is YAML");
    let cluster = config["clusters"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == super::TEST_CONTEXT).or(c.first()))
        .expect("KUBECONFIG has a cluster")["cluster"]
        .clone();
    let out = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": super::TEST_CONTEXT, "cluster": {
            "server": cluster["server"],
            "certificate-authority-data": cluster["certificate-authority-data"],
        }}],
        "users": [{ "name": "token", "user": { "token": token } }],
        "contexts": [{ "name": super::TEST_CONTEXT, "context": {
            "cluster": super::TEST_CONTEXT, "user": "token", "namespace": "default",
        }}],
        "current-context": super::TEST_CONTEXT,
    });
    std::fs::write(path, serde_json::to_vec_pretty(&out).expect("kubeconfig serializes"))
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// A client for the kubeconfig at `path` (e.g. from [`write_token_kubeconfig`]).
pub async fn client_from_kubeconfig(path: &Path) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(path).expect("reading the kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("client config");
    kube::Client::try_from(config).expect("kube client")
}

/// The `spec.holderIdentity` of Lease `namespace/name` (`None` when the Lease
/// does not exist or has no holder; an empty holder counts as none).
pub async fn lease_holder(client: &kube::Client, namespace: &str, name: &str) -> Option<String> {
    use k8s_openapi::api::coordination::v1::Lease;
    let api: kube::Api<Lease> = kube::Api::namespaced(client.clone(), namespace);
    api.get_opt(name)
        .await
        .unwrap_or_else(|e| panic!("reading Lease {namespace}/{name}: {e}"))
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

/// Waits until DtsJob `name` reports `phase`, and returns it.
pub async fn wait_phase(
    api: &kube::Api<dts_operator::crd::DtsJob>,
    name: &str,
    phase: dts_operator::crd::Phase,
    timeout: Duration,
) -> dts_operator::crd::DtsJob {
    wait_for(
        &format!("DtsJob {name} to reach phase {phase:?}"),
        timeout,
        Duration::from_millis(100),
        || async {
            let job = api.get(name).await.ok()?;
            (job.status.as_ref()?.phase == Some(phase)).then_some(job)
        },
    )
    .await
}

/// Creates the test account's credentials Secret `name` (`accessKeyId`,
/// `accessKeySecret`).
pub async fn create_credentials_secret(ns: &TestNamespace, name: &str) {
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": name},
        "stringData": {"accessKeyId": ACCESS_KEY_ID, "accessKeySecret": ACCESS_KEY_SECRET},
    }))
    .expect("Secret object");
    ns.api::<k8s_openapi::api::core::v1::Secret>()
        .create(&kube::api::PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("creating Secret {name}: {e}"));
}

/// The `Ready` condition's (status, reason), if it describes the current generation.
pub fn ready_of(job: &dts_operator::crd::DtsJob) -> Option<(String, String)> {
    let c = job.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready")?;
    (c.observed_generation == job.metadata.generation).then(|| (c.status.clone(), c.reason.clone()))
}

/// Waits until DtsJob `name` satisfies `pred` (up to a minute), and returns it.
pub async fn wait_job(
    ns: &TestNamespace,
    name: &str,
    what: &str,
    pred: impl Fn(&dts_operator::crd::DtsJob) -> bool,
) -> dts_operator::crd::DtsJob {
    let api = ns.api::<dts_operator::crd::DtsJob>();
    wait_for(
        &format!("DtsJob {name}: {what}"),
        Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            let api = api.clone();
            let pred = &pred;
            async move { api.get(name).await.ok().filter(|j| pred(j)) }
        },
    )
    .await
}
