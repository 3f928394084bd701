//! Shared harness for the end-to-end tests: include it with `mod support;` in
//! each `tests/e2e_*.rs`.
//!
//! The tests run against the throw-away control plane that `make test` starts
//! once per run (scripts/test-e2e-env.sh exports its `KUBECONFIG`). Each test
//! gets its own namespace ([`TestNamespace`]) because namespaces never finish
//! deleting without kube-controller-manager; they are simply left behind and
//! vanish with the cluster. Every process a test starts is a [`ChildProcess`],
//! killed when the test ends, also on panic. When a test panics, the
//! namespace's DtsJobs, its Events and the logs of its processes are printed.
//!
//! Not every test file uses every helper, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod helm;
pub mod secrets;
pub mod stack;

use std::{
    ffi::OsStr,
    fs,
    future::Future,
    io::{Read, Seek, SeekFrom},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

use dts_operator::crd::DtsJob;
use k8s_openapi::{
    api::core::v1::{Event, Namespace},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    NamespaceResourceScope,
};
use kube::{
    api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::wait::{await_condition, conditions::is_crd_established},
    Api, Client, Config, Resource,
};

/// The kubeconfig context `testcluster up` writes. Anything else is refused so
/// that a developer's KUBECONFIG for a real cluster is never used by accident.
pub const TEST_CONTEXT: &str = "dts-testcluster";

const HOW_TO_RUN: &str = "end-to-end tests need the local test control plane: run them with `make test` \
     (it starts one and stops it afterwards), or start one with `make cluster`, then \
     `source target/cluster/env` and run `cargo test`";

/// Where per-test logs go; cargo keeps this directory for inspection. The
/// run's secret scan searches all of it.
const LOG_ROOT: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/e2e");

/// Where tests put the files their processes read that hold secrets on
/// purpose (emulator configs, kubeconfigs): apart from the logs, which must
/// hold none.
const INPUT_ROOT: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/e2e-inputs");

/// A client for the test control plane named by `KUBECONFIG`.
///
/// Panics (so the test fails rather than silently skipping) when KUBECONFIG
/// is unset or does not point at a `testcluster` kubeconfig.
pub async fn client() -> Client {
    let path = std::env::var_os("KUBECONFIG").unwrap_or_else(|| panic!("KUBECONFIG is not set; {HOW_TO_RUN}"));
    client_at(Path::new(&path)).await
}

/// A client for the `testcluster` kubeconfig at `path` (a test's own control
/// plane); the same context guard as [`client`].
pub async fn client_at(path: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("cannot read KUBECONFIG={}: {e}; {HOW_TO_RUN}", path.to_string_lossy()));
    if kubeconfig.current_context.as_deref() != Some(TEST_CONTEXT) {
        panic!(
            "KUBECONFIG={} has current-context {:?}, not the test control plane's {TEST_CONTEXT:?} \
             (refusing to run tests against another cluster); {HOW_TO_RUN}",
            path.to_string_lossy(),
            kubeconfig.current_context
        );
    }
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("building a client config from KUBECONFIG");
    Client::try_from(config).expect("building a kube client")
}

/// Path of a control-plane tool (`kubectl`, `helm`, `etcd`, `kube-apiserver`)
/// from `DTS_TEST_BIN_DIR`, which `make test` and `target/cluster/env` set.
pub fn tool(name: &str) -> PathBuf {
    let dir =
        std::env::var_os("DTS_TEST_BIN_DIR").unwrap_or_else(|| panic!("DTS_TEST_BIN_DIR is not set; {HOW_TO_RUN}"));
    let path = Path::new(&dir).join(name);
    assert!(path.is_file(), "{} is missing; run hack/build-tools.sh", path.display());
    path
}

/// Server-side applies the committed CRD (crds/dtsjob.yaml) and waits until
/// it is Established, so every test runs against the schema in the repo.
pub async fn apply_crd(client: &Client) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/dtsjob.yaml");
    let yaml = fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml).expect("parsing crds/dtsjob.yaml");
    let name = crd.metadata.name.clone().expect("CRD has a name");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(&name, &PatchParams::apply("dts-e2e").force(), &Patch::Apply(&crd))
        .await
        .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(api, &name, is_crd_established()),
    )
    .await
    .unwrap_or_else(|_| panic!("CRD {name} not Established within 30 s"))
    .unwrap_or_else(|e| panic!("watching CRD {name}: {e}"));
}

/// Polls `check` every `poll` until it returns `Some`, and returns that value;
/// panics naming `what` after `timeout`. Use it for every "eventually" in a
/// test instead of fixed sleeps.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, poll: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(poll).await;
    }
}

/// Lists `K` in `ns` every 100 ms until `done` holds for the list, at
/// most `within`, and returns the last list (the caller asserts on it, so a
/// failure shows what was there). For Events: the operator writes them in
/// the background, after the status and once its status writes are calm,
/// so an Event may appear a little after the status that it explains.
pub async fn list_until<K>(ns: &TestNamespace, within: Duration, done: impl Fn(&[K]) -> bool) -> Vec<K>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    <K as Resource>::DynamicType: Default,
{
    let deadline = Instant::now() + within;
    loop {
        let items = ns.api::<K>().list(&ListParams::default()).await.expect("listing").items;
        if done(&items) || Instant::now() >= deadline {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `ApiResource` of DtsJob, for `Api<DynamicObject>` when a test must
/// send what the Rust type cannot express (invalid specs).
pub fn dtsjob_resource() -> ApiResource {
    ApiResource::erase::<DtsJob>(&())
}

/// A DtsJob named `name` with `spec`, as `kubectl apply` would send it: typed
/// as `DtsJob`, or as `DynamicObject` for specs the Rust type cannot express.
pub fn dtsjob_object<T: serde::de::DeserializeOwned>(name: &str, spec: serde_json::Value) -> T {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "kubedts.io/v1alpha1",
        "kind": "DtsJob",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .unwrap_or_else(|e| panic!("DtsJob {name}: {e}"))
}

/// A fresh namespace for one test, plus the failure dump.
///
/// Declare it *before* the [`ChildProcess`]es of the test: locals drop in
/// reverse order, so the processes are stopped (and their logs complete)
/// before the dump runs.
pub struct TestNamespace {
    pub client: Client,
    pub name: String,
    /// The control plane's kubeconfig when it is not `KUBECONFIG`'s.
    kubeconfig: Option<PathBuf>,
    log_dir: PathBuf,
    input_dir: PathBuf,
    /// Log files printed by the failure dump.
    logs: Mutex<Vec<PathBuf>>,
}

impl TestNamespace {
    /// Connects (see [`client`]), applies the committed CRD and creates a
    /// namespace named after `test` with a random suffix.
    pub async fn new(test: &str) -> Self {
        Self::create(test, None).await
    }

    /// Like [`TestNamespace::new`], on the control plane of `kubeconfig`
    /// (one the test started itself, e.g. to restart it).
    pub async fn new_at(test: &str, kubeconfig: &Path) -> Self {
        Self::create(test, Some(kubeconfig.to_path_buf())).await
    }

    async fn create(test: &str, kubeconfig: Option<PathBuf>) -> Self {
        secrets::record_known();
        let client = match &kubeconfig {
            Some(path) => client_at(path).await,
            None => client().await,
        };
        apply_crd(&client).await;
        let slug: String = test
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(40)
            .collect();
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let name = format!("e2e-{}-{suffix}", slug.trim_matches('-'));
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "labels": { "dts-e2e/test": slug.trim_matches('-') } }
        }))
        .expect("namespace object");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        let log_dir = Path::new(LOG_ROOT).join(&name);
        fs::create_dir_all(&log_dir).unwrap_or_else(|e| panic!("creating {}: {e}", log_dir.display()));
        let input_dir = Path::new(INPUT_ROOT).join(&name);
        fs::create_dir_all(&input_dir).unwrap_or_else(|e| panic!("creating {}: {e}", input_dir.display()));
        TestNamespace {
            client,
            name,
            kubeconfig,
            log_dir,
            input_dir,
            logs: Mutex::new(Vec::new()),
        }
    }

    /// An `Api` for a namespaced resource in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// DtsJobs in this namespace, untyped (for invalid objects).
    pub fn dynamic_dtsjobs(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.name, &dtsjob_resource())
    }

    /// Directory for this test's logs (`target/tmp/e2e/<namespace>/`).
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Directory for files this test's processes read that hold secrets
    /// (`target/tmp/e2e-inputs/<namespace>/`), kept out of [`Self::log_dir`],
    /// whose every file the run's secret scan searches.
    pub fn input_dir(&self) -> &Path {
        &self.input_dir
    }

    /// Starts `cmd` with stdout and stderr appended to `<log_dir>/<name>.log`,
    /// and includes that log in the failure dump. Spawning the same `name`
    /// again (a restart) appends to the same file.
    pub fn spawn(&self, name: &str, cmd: Command) -> ChildProcess {
        let log = self.log_dir.join(format!("{name}.log"));
        let mut logs = self.logs.lock().unwrap();
        if !logs.contains(&log) {
            logs.push(log.clone());
        }
        ChildProcess::spawn(name, cmd, &log)
    }

    /// The text the failure dump prints: DtsJobs as YAML, Events, logs.
    pub fn dump(&self) -> String {
        let name = self.name.clone();
        let kubeconfig = self.kubeconfig.clone();
        // Called from Drop while a panic unwinds through the test's runtime,
        // which can no longer drive the test's client: use a fresh thread,
        // runtime and client.
        let api_state = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let state = dump_api_state(&name, kubeconfig.as_deref());
                match tokio::time::timeout(Duration::from_secs(20), state).await {
                    Ok(text) => text,
                    Err(_) => "(the API server did not answer within 20 s)\n".to_string(),
                }
            })
        })
        .join()
        .unwrap_or_else(|_| "(collecting the API state panicked)\n".to_string());
        let mut out = format!("===== failure dump for namespace {} =====\n{api_state}", self.name);
        for log in self.logs.lock().unwrap().iter() {
            let text = fs::read_to_string(log).unwrap_or_else(|e| format!("(unreadable: {e})"));
            let lines: Vec<&str> = text.lines().collect();
            let skipped = lines.len().saturating_sub(400);
            out += &format!("----- {} (last {} lines) -----\n", log.display(), lines.len() - skipped);
            out += &lines[skipped..].join("\n");
            out += "\n";
        }
        out + "===== end of failure dump =====\n"
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("{}", self.dump());
        }
    }
}

async fn dump_api_state(namespace: &str, kubeconfig: Option<&Path>) -> String {
    let client = match kubeconfig {
        Some(path) => client_at(path).await,
        None => client().await,
    };
    let mut out = String::new();
    let jobs: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &dtsjob_resource());
    match jobs.list(&ListParams::default()).await {
        Ok(list) => {
            out += &format!("----- DtsJobs ({}) -----\n", list.items.len());
            for mut job in list.items {
                // Field-manager bookkeeping only hides the spec and status.
                job.metadata.managed_fields = None;
                out += &serde_yaml::to_string(&job).unwrap_or_else(|e| format!("(unserializable: {e})\n"));
                out += "---\n";
            }
        }
        Err(e) => out += &format!("----- DtsJobs: list failed: {e}\n"),
    }
    let events: Api<Event> = Api::namespaced(client, namespace);
    match events.list(&ListParams::default()).await {
        Ok(list) => {
            out += &format!("----- Events ({}) -----\n", list.items.len());
            for e in list.items {
                let time = e
                    .last_timestamp
                    .map(|t| t.0.to_string())
                    .or_else(|| e.event_time.map(|t| t.0.to_string()))
                    .unwrap_or_default();
                out += &format!(
                    "{time} {} {} {}/{} x{}: {}\n",
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.involved_object.kind.unwrap_or_default(),
                    e.involved_object.name.unwrap_or_default(),
                    e.count.unwrap_or(1),
                    e.message.unwrap_or_default()
                );
            }
        }
        Err(e) => out += &format!("----- Events: list failed: {e}\n"),
    }
    out
}

/// A subprocess owned by a test: stopped with SIGKILL when dropped (also
/// while a panic unwinds), and with PR_SET_PDEATHSIG so it dies even if the
/// test binary itself is killed. PDEATHSIG fires when the *spawning thread*
/// exits, so spawn from the test's own thread (the body of a
/// `#[tokio::test]`), not from a `spawn_blocking` task.
pub struct ChildProcess {
    name: String,
    child: Child,
    log: PathBuf,
    /// Where this run's output starts in the (appended) log file.
    log_offset: u64,
    status: Option<ExitStatus>,
}

impl ChildProcess {
    /// Spawns `cmd` (stdin /dev/null; stdout and stderr appended to `log`).
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Self {
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("opening {}: {e}", log.display()));
        let log_offset = file.seek(SeekFrom::End(0)).unwrap_or(0);
        use std::io::Write;
        let _ = writeln!(file, "===== {name}: {} =====", describe(&cmd));
        let err = file.try_clone().expect("cloning log file handle");
        cmd.stdin(Stdio::null()).stdout(file).stderr(err);
        // SAFETY: prctl is async-signal-safe and touches no parent memory.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("starting {name} ({cmd:?}): {e}"));
        ChildProcess {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            log_offset,
            status: None,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// This run's output so far (not earlier runs appended to the same file).
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.seek(SeekFrom::Start(self.log_offset));
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// The exit status if the process has exited (without waiting).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("waiting for child");
        }
        self.status
    }

    /// Sends SIGKILL (no chance to clean up, like a crash or OOM kill) and
    /// reaps the process.
    pub fn sigkill(&mut self) -> ExitStatus {
        if let Some(status) = self.try_status() {
            return status;
        }
        let _ = self.child.kill();
        let status = self.child.wait().expect("waiting for child");
        self.status = Some(status);
        status
    }

    /// Sends SIGTERM (graceful shutdown) and waits up to `grace` for the
    /// exit; panics after SIGKILLing it if it did not stop in time, since
    /// ignoring SIGTERM is a bug in our binaries.
    pub fn sigterm(&mut self, grace: Duration) -> ExitStatus {
        if let Some(status) = self.try_status() {
            return status;
        }
        // SAFETY: kill(2) has no memory-safety preconditions; the PID is our
        // unreaped child, so it cannot have been reused.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.try_status() {
                return status;
            }
            thread::sleep(Duration::from_millis(50));
        }
        self.sigkill();
        panic!(
            "{} did not exit within {grace:?} of SIGTERM; log: {}",
            self.name,
            self.log.display()
        );
    }
}

/// The command line for the log header: program, arguments and the *names*
/// of environment variables set. Not `{cmd:?}`, which prints their values,
/// and tests pass secrets (ALIBABA_CLOUD_ACCESS_KEY_SECRET) that way.
fn describe(cmd: &Command) -> String {
    let mut out = String::new();
    let envs: Vec<String> = cmd
        .get_envs()
        .map(|(k, v)| match v {
            Some(_) => format!("{}=…", k.to_string_lossy()),
            None => format!("-u {}", k.to_string_lossy()),
        })
        .collect();
    if !envs.is_empty() {
        out += &format!("env {} ", envs.join(" "));
    }
    out += &format!("{:?}", cmd.get_program());
    for arg in cmd.get_args() {
        out += &format!(" {arg:?}");
    }
    out
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.sigkill();
    }
}

/// Convenience for `Command::new(program).args(args)`.
pub fn command<I, S>(program: impl AsRef<OsStr>, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd
}
