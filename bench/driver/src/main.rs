//! `dts-bench`: end-to-end benchmarks of dts-operator on a real
//! etcd + kube-apiserver (started with the repository's `testcluster`) and
//! the DTS emulator. The operator is a command line, so any build can be
//! measured by the same driver; the outputs go to `--out`: results.json,
//! results.md and SVG plots. See docs/benchmarks.md.
//!
//! Numbers are printed, never asserted (the machine is shared and noisy).
//! What is asserted is behaviour: every flipped job got exactly one
//! StopDtsJob per direction and reached Stopped, and no DTS call was made at
//! rest. A failed check makes the exit status 1.

mod cluster;
mod emulator;
mod load;
mod measure;
mod operator;
mod plot;
mod procs;
mod report;
mod scenarios;
mod watch;
mod writers;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};

use report::{Machine, Results, RunInfo};
use scenarios::{burst, ceiling, idle, memory, shards, startup, steady, writes, Env, Opts};

pub type Result<T, E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

#[derive(Parser)]
#[command(about = "End-to-end benchmarks of dts-operator on a real kube-apiserver and the DTS emulator")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a control plane and run scenarios against the given operator.
    Run(Box<RunArgs>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Idle,
    Burst,
    Steady,
    Startup,
    Memory,
    /// What one status write costs the API server, by method (not in `all`).
    Writes,
    Shards,
    All,
}

/// `dts-bench run`.
///
/// The driver starts its own etcd + kube-apiserver (`testcluster up`, in
/// OUT/cluster), one `dts-emulator` and one namespace per case, and the
/// operator as `sh -c 'exec OPERATOR_CMD "$@"'` with these flags appended:
/// `--dts-endpoint <the case's emulator> --namespace <the case's namespace>
/// --metrics-addr 127.0.0.1:<free port>` (then per-scenario flags, see
/// --fast-args), and KUBECONFIG set to the control plane's. Every process
/// it starts is stopped at the end, also on error or Ctrl-C.
#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Scenarios to run (comma-separated); the API server ceiling is always
    /// measured first.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    scenario: Vec<Scenario>,
    /// The operator's command line, without the flags the driver appends.
    /// Default: `dts-operator run` next to this binary (target/release/ for
    /// `make bench`). It must exec the operator itself (no forking wrapper
    /// such as `cargo run`): its PID is sampled for CPU and memory.
    #[arg(long)]
    operator_cmd: Option<String>,
    /// Output directory. Default: bench/results/<UTC timestamp>.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Tiny sizes for `make test` (well under a minute); overrides the sizes.
    #[arg(long)]
    smoke: bool,

    /// Seconds of status writes for the ceiling.
    #[arg(long, default_value_t = 10)]
    ceiling_seconds: u64,
    /// DtsJobs the ceiling writes to (round robin).
    #[arg(long, default_value_t = 500)]
    ceiling_jobs: usize,
    /// Status applies in flight during the ceiling.
    #[arg(long, default_value_t = 32)]
    ceiling_concurrency: usize,

    /// Seconds of status writes per method in the writes scenario.
    #[arg(long, default_value_t = 10)]
    writes_seconds: u64,

    /// Background (Running) DtsJobs of the idle cases, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,1000,10000")]
    idle_background: Vec<usize>,
    /// Flips per idle case, one at a time.
    #[arg(long, default_value_t = 200)]
    flips: usize,
    /// Pause after each idle flip reached Stopped, ms. Keep it at least
    /// 1 / --dts-rate-limit (100 ms at the operator's default of 10 calls/s):
    /// the limiter spaces calls evenly, and flips closer together would
    /// measure its spacing instead of the pipeline.
    #[arg(long, default_value_t = 100)]
    flip_spacing_ms: u64,

    /// Jobs of the burst.
    #[arg(long, default_value_t = 1000)]
    burst_jobs: usize,
    /// Directions per burst job: 1 (Forward) or 2 (two-way sync).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    burst_directions: u8,
    /// DTS answer latency during the burst (the emulator's latencyMs), ms.
    #[arg(long, default_value_t = 100)]
    burst_latency_ms: u64,
    /// Operator flags for the burst, the memory scenario and preparing
    /// start-up states, where the default DTS limits (10 calls/s) would
    /// only measure the limiter. Whitespace-separated; "" for none.
    #[arg(
        long,
        default_value = "--dts-rate-limit 100000 --dts-max-concurrency 64",
        allow_hyphen_values = true
    )]
    fast_args: String,

    /// Jobs of the steady case (half of them stopped first).
    #[arg(long, default_value_t = 1000)]
    steady_jobs: usize,
    /// Seconds at rest.
    #[arg(long, default_value_t = 60)]
    steady_seconds: u64,

    /// Existing jobs of the start-up cases, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,10000,50000")]
    startup_jobs: Vec<usize>,

    /// Seconds after the memory scenario's burst for a second sample (past
    /// the HTTP pools' 90 s idle timeout); 0 for none.
    #[arg(long, default_value_t = memory::IDLE_AFTER_BURST_SECS)]
    memory_idle_seconds: u64,
    /// Jobs of the memory scenario.
    #[arg(long, default_value_t = 10000)]
    memory_jobs: usize,

    /// Jobs of the shards scenario, split across two operators.
    #[arg(long, default_value_t = 10000)]
    shards_jobs: usize,
    /// Directions per job of the shards scenario: 1 or 2. With 2, more than
    /// about 4,900 jobs overflow the emulators' journals (10,000 calls each)
    /// and the per-job check is reported as not verified.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    shards_directions: u8,
    /// Leader election in the shards scenario, each shard on its own Lease
    /// (as the chart runs them); `false` for none.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    shards_leader_elect: bool,

    /// Creations in flight when filling a case.
    #[arg(long, default_value_t = 32)]
    create_concurrency: usize,
    /// PATCHes in flight when flipping many jobs at once.
    #[arg(long, default_value_t = 64)]
    flip_concurrency: usize,
    /// Jobs whose writes are in flight at once in the burst's floor (the
    /// burst's writes replayed by the driver alone).
    #[arg(long, default_value_t = 64)]
    burst_floor_concurrency: usize,
    /// Milliseconds without any change before a case counts as settled.
    #[arg(long, default_value_t = 1500)]
    quiet_ms: u64,

    /// Take a CPU profile of kube-apiserver for this many seconds from the
    /// burst's first flip (its /debug/pprof, served only then), written to
    /// OUT/apiserver-burst.pprof: `go tool pprof -top FILE` shows where the
    /// API server's CPU went. 0: none.
    #[arg(long, default_value_t = 0)]
    apiserver_profile_seconds: u64,

    /// The dts-emulator binary (default: next to this binary).
    #[arg(long, env = "DTS_EMULATOR_BIN")]
    emulator_bin: Option<PathBuf>,
    /// The testcluster binary (default: next to this binary).
    #[arg(long, env = "DTS_TESTCLUSTER_BIN")]
    testcluster_bin: Option<PathBuf>,
}

impl RunArgs {
    /// Sizes small enough for `make test`: every scenario once, in well
    /// under a minute, still able to fail on behaviour.
    fn smoke(mut self) -> RunArgs {
        self.ceiling_seconds = 2;
        self.ceiling_jobs = 20;
        self.ceiling_concurrency = 8;
        self.idle_background = vec![0];
        self.flips = 10;
        self.flip_spacing_ms = 20;
        self.burst_jobs = 20;
        self.burst_latency_ms = 20;
        self.steady_jobs = 10;
        self.steady_seconds = 3;
        self.startup_jobs = vec![30];
        self.memory_jobs = 30;
        self.memory_idle_seconds = 0;
        self.writes_seconds = 1;
        self.shards_jobs = 40;
        self.quiet_ms = 700;
        self
    }

    fn wants(&self, s: Scenario) -> bool {
        self.scenario.contains(&Scenario::All) || self.scenario.contains(&s)
    }
}

/// A binary next to this one (target/<profile>/NAME).
fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().ok_or("no parent of the driver's path")?.join(name);
    if !path.is_file() {
        return Err(format!(
            "{} is missing: build it (`cargo build [--release] -p dts-emulator -p testcluster --bin dts-operator`) or pass its path",
            path.display()
        )
        .into());
    }
    Ok(path)
}

fn timestamp() -> String {
    jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string()
}

fn git_describe() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    let Cmd::Run(args) = Cli::parse().command;
    let mut args = *args;
    if args.smoke {
        args = args.smoke();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = match rt.block_on(run(args)) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("dts-bench: error: {e}");
            2
        }
    };
    // Children and the control plane are stopped by their guards inside
    // `run`; nothing is left when the runtime goes.
    drop(rt);
    std::process::exit(code);
}

/// Runs the scenarios; `Ok(false)` when a check failed or a scenario did.
async fn run(args: RunArgs) -> Result<bool> {
    let started = Instant::now();
    let started_at = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new("bench/results").join(timestamp()));
    let logs = out.join("logs");
    std::fs::create_dir_all(&logs)?;
    let operator_cmd = match &args.operator_cmd {
        Some(c) => c.clone(),
        None => format!("{} run", sibling("dts-operator")?.display()),
    };
    let emulator_bin = match &args.emulator_bin {
        Some(p) => p.clone(),
        None => sibling("dts-emulator")?,
    };
    let testcluster = match &args.testcluster_bin {
        Some(p) => p.clone(),
        None => sibling("testcluster")?,
    };
    let fast_args: Vec<String> = args.fast_args.split_whitespace().map(String::from).collect();
    let machine = Machine::describe();
    println!(
        "dts-bench: operator `{operator_cmd}`, output {}, {} CPUs, load average {:?}",
        out.display(),
        machine.cpus,
        machine.load_average_at_start
    );

    println!("== starting etcd + kube-apiserver (testcluster up)");
    let profiling = args.apiserver_profile_seconds > 0;
    let cp = cluster::ControlPlane::up(
        &testcluster,
        &out.join("cluster"),
        &logs.join("testcluster.log"),
        profiling,
    )
    .await?;
    let env = Env {
        cp,
        opts: Opts {
            operator_cmd: operator_cmd.clone(),
            fast_args: fast_args.clone(),
            emulator_bin,
            logs,
            quiet: Duration::from_millis(args.quiet_ms),
            create_concurrency: args.create_concurrency,
            flip_concurrency: args.flip_concurrency,
            floor_concurrency: args.burst_floor_concurrency,
            apiserver_profile: profiling.then(|| {
                (
                    Duration::from_secs(args.apiserver_profile_seconds),
                    out.join("apiserver-burst.pprof"),
                )
            }),
        },
        checks: Mutex::new(Vec::new()),
    };
    let mut results = Results {
        run: RunInfo {
            started: started_at,
            seconds: 0.0,
            smoke: args.smoke,
            command_line: std::env::args().collect(),
            operator_cmd,
            fast_args,
            commit: git_describe(),
            machine,
        },
        ceiling: None,
        idle: Vec::new(),
        burst: None,
        steady: None,
        startup: Vec::new(),
        memory: None,
        writes: None,
        shards: None,
        checks: Vec::new(),
        errors: Vec::new(),
    };

    // Ctrl-C or SIGTERM ends the scenarios; the guards then stop every
    // process, and the partial results are still written.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let outcome = tokio::select! {
        r = scenarios(&env, &args, &mut results) => r,
        _ = tokio::signal::ctrl_c() => Err("interrupted (Ctrl-C)".into()),
        _ = term.recv() => Err("terminated (SIGTERM)".into()),
    };
    if let Err(e) = &outcome {
        eprintln!("dts-bench: {e}");
        results.errors.push(e.to_string());
    }
    results.checks = env.checks.lock().unwrap().clone();
    results.run.seconds = measure::round2(started.elapsed().as_secs_f64());
    let cluster_dir = env.cp.dir().to_path_buf();
    drop(env);
    if outcome.is_ok() {
        // etcd's data is large and of no use after a good run; logs stay.
        let _ = std::fs::remove_dir_all(cluster_dir.join("etcd"));
    }
    report::write(&out, &results)?;
    let failed = results.checks.iter().filter(|c| !c.ok).count();
    println!(
        "\ndts-bench: {} in {:.0} s; {} checks, {failed} failed; results in {}",
        if outcome.is_ok() { "done" } else { "stopped early" },
        results.run.seconds,
        results.checks.len(),
        out.display()
    );
    Ok(outcome.is_ok() && failed == 0 && results.errors.is_empty())
}

/// Runs every chosen scenario. One that fails is recorded (with its
/// DtsJobs deleted) and the run goes on: the cases are independent, and a
/// failure at one size should not cost the numbers of the others.
async fn scenarios(env: &Env, a: &RunArgs, r: &mut Results) -> Result<()> {
    let c = ceiling::run(
        env,
        a.ceiling_jobs,
        a.ceiling_concurrency,
        Duration::from_secs(a.ceiling_seconds),
    )
    .await?;
    let ceiling = Some(c.writes_per_second);
    r.ceiling = Some(c);
    if a.wants(Scenario::Idle) {
        for &bg in &a.idle_background {
            let i = idle::run(env, bg, a.flips, Duration::from_millis(a.flip_spacing_ms)).await;
            if let Some(i) = keep(env, r, &format!("idle with {bg} background jobs"), i).await {
                r.idle.push(i);
            }
        }
    }
    if a.wants(Scenario::Burst) {
        let p = burst::Params {
            jobs: a.burst_jobs,
            two_way: a.burst_directions == 2,
            latency: Duration::from_millis(a.burst_latency_ms),
            ceiling,
        };
        let b = burst::run(env, p).await;
        r.burst = keep(env, r, "burst", b).await;
    }
    if a.wants(Scenario::Steady) {
        let s = steady::run(env, a.steady_jobs, Duration::from_secs(a.steady_seconds)).await;
        r.steady = keep(env, r, "steady", s).await;
    }
    if a.wants(Scenario::Startup) {
        for &n in &a.startup_jobs {
            let s = startup::run(env, n).await;
            if let Some(s) = keep(env, r, &format!("startup with {n} jobs"), s).await {
                r.startup.push(s);
            }
        }
    }
    if a.wants(Scenario::Memory) {
        let m = memory::run(env, a.memory_jobs, a.memory_idle_seconds).await;
        r.memory = keep(env, r, "memory", m).await;
    }
    // Asked for by name (or by --smoke): it measures the API server, not
    // the operator, so the full runs of an operator build leave it out.
    if a.scenario.contains(&Scenario::Writes) || a.smoke {
        let duration = Duration::from_secs(a.writes_seconds);
        let w = writes::run(env, a.ceiling_jobs, a.ceiling_concurrency, duration).await;
        r.writes = keep(env, r, "writes", w).await;
    }
    if a.wants(Scenario::Shards) {
        let p = shards::Params {
            jobs: a.shards_jobs,
            two_way: a.shards_directions == 2,
            leader_elect: a.shards_leader_elect,
        };
        let s = shards::run(env, p).await;
        r.shards = keep(env, r, "shards", s).await;
    }
    Ok(())
}

/// The result, or `None` after recording the error and deleting what the
/// failed case left.
async fn keep<T>(env: &Env, r: &mut Results, what: &str, result: Result<T>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            let msg = format!("{what}: {e}");
            eprintln!("dts-bench: scenario failed: {msg}");
            r.errors.push(msg);
            env.cleanup().await;
            None
        }
    }
}
