//! The scenarios, and what every one of them is built from: a *case* is a
//! fresh namespace with its own emulator (configured with exactly the case's
//! jobs), the driver's watch of its DtsJobs, and the operator started for
//! that namespace only. After the case its DtsJobs are deleted, so the next
//! case runs on an API server of its own size.

pub mod burst;
pub mod ceiling;
pub mod idle;
pub mod memory;
pub mod shards;
pub mod startup;
pub mod steady;
pub mod writes;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::api::DynamicObject;
use kube::Api;
use serde::Serialize;

use crate::cluster::ControlPlane;
use crate::emulator::{self, Emulator};
use crate::load::{self, Creation, JobDef};
use crate::measure::{RequestCounts, Requests};
use crate::operator::{Launch, Operator};
use crate::procs;
use crate::watch::Tracker;
use crate::Result;

/// What every scenario needs to know about the run.
pub struct Opts {
    /// The operator's command line (without the flags the driver adds).
    pub operator_cmd: String,
    /// Flags for the operator where DTS limits should not be the bottleneck
    /// (burst, and preparing start-up states quickly).
    pub fast_args: Vec<String>,
    pub emulator_bin: PathBuf,
    /// Logs and emulator configs of every case.
    pub logs: PathBuf,
    /// How long nothing may change before a case counts as settled.
    pub quiet: Duration,
    pub create_concurrency: usize,
    pub flip_concurrency: usize,
    /// Jobs in flight in the burst's floor.
    pub floor_concurrency: usize,
    /// A kube-apiserver CPU profile of the burst: its length and file.
    pub apiserver_profile: Option<(Duration, PathBuf)>,
}

/// A behaviour check: benchmarks make no timing assertions, but a run in
/// which a flipped job was not stopped exactly once must not pass.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub scenario: String,
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

pub struct Env {
    pub cp: ControlPlane,
    pub opts: Opts,
    pub checks: Mutex<Vec<Check>>,
}

impl Env {
    pub fn check(&self, scenario: &str, check: &str, ok: bool, detail: String) {
        let mark = if ok { "ok  " } else { "FAIL" };
        println!("  [{mark}] {check}: {detail}");
        self.checks.lock().unwrap().push(Check {
            scenario: scenario.to_owned(),
            check: check.to_owned(),
            ok,
            detail,
        });
    }

    /// API requests since `before`: (the operator's, the API server's own),
    /// less the driver's `flips` spec PATCHes (see
    /// [`crate::measure::OPERATOR_RESOURCES`] for the split).
    pub async fn requests_since(&self, before: &RequestCounts, flips: usize) -> Result<(Requests, Requests)> {
        Ok(self
            .cp
            .request_counts()
            .await?
            .since(before)
            .minus("PATCH", "dtsjobs", "", flips as f64)
            .split())
    }

    /// Deletes the DtsJobs of every `bench-*` namespace (after a failed case,
    /// whose own cleanup did not run).
    pub async fn cleanup(&self) {
        use k8s_openapi::api::core::v1::Namespace;
        let namespaces = kube::Api::<Namespace>::all(self.cp.client.clone())
            .list(&Default::default())
            .await;
        for ns in namespaces.map(|l| l.items).unwrap_or_default() {
            let name = ns.metadata.name.unwrap_or_default();
            if name.starts_with("bench-") {
                let _ = load::delete_all(&self.cp.client, &name).await;
            }
        }
    }

    /// Sets up case `name` for `defs`: the emulator knows every job, the
    /// namespace and Secret exist, the watch runs. The DtsJobs are not
    /// created yet ([`Case::create`]), so a scenario can create them before
    /// or after the operator starts.
    pub async fn case(&self, name: &str, defs: &[JobDef]) -> Result<Case<'_>> {
        let entries = defs.iter().map(|d| emulator::job_entry(&d.job_id, d.two_way)).collect();
        let emulator = Emulator::start(&self.opts.emulator_bin, &self.opts.logs, name, entries).await?;
        let ns = format!("bench-{name}");
        load::namespace(&self.cp.client, &ns).await?;
        let api = load::dtsjobs(&self.cp.client, &ns);
        let tracker = Tracker::start(api.clone());
        tracker
            .wait("the driver's watch to sync", Duration::from_secs(30), |s| s.synced)
            .await?;
        Ok(Case {
            env: self,
            name: name.to_owned(),
            ns,
            emulator,
            tracker,
            api,
            operators: 0,
        })
    }
}

pub struct Case<'e> {
    env: &'e Env,
    pub name: String,
    pub ns: String,
    pub emulator: Emulator,
    pub tracker: Tracker,
    pub api: Api<DynamicObject>,
    operators: usize,
}

impl Case<'_> {
    /// Creates the DtsJobs of `defs` and prints the creation rate.
    pub async fn create(&self, defs: &[JobDef]) -> Result<Creation> {
        let c = load::create(&self.env.cp.client, &self.ns, defs, self.env.opts.create_concurrency).await?;
        println!(
            "  created {} DtsJobs in {:.1} s ({:.0}/s, {} in flight)",
            c.objects, c.seconds, c.per_second, c.concurrency
        );
        Ok(c)
    }

    /// Starts an operator for this case's namespace with `extra` flags; its
    /// log is `logs/<case>-operator-<n>.log`.
    pub fn operator(&mut self, extra: &[String]) -> Result<Operator> {
        self.operators += 1;
        let log = self
            .env
            .opts
            .logs
            .join(format!("{}-operator-{}.log", self.name, self.operators));
        Operator::spawn(
            &format!("operator ({})", self.name),
            &self.env.opts.operator_cmd,
            Launch {
                kubeconfig: &self.env.cp.kubeconfig,
                dts_endpoint: &self.emulator.url,
                namespace: &self.ns,
                extra,
                log: &log,
            },
        )
    }

    /// Waits until every one of the `expected` jobs has a current Ready
    /// condition and neither the watch nor the DTS journal moved for the
    /// quiet period; returns the seconds it took.
    pub async fn settle(&self, op: &mut Operator, expected: usize, timeout: Duration) -> Result<f64> {
        let start = Instant::now();
        let deadline = start + timeout;
        let quiet = self.env.opts.quiet;
        loop {
            op.process.check_alive()?;
            let left = deadline.saturating_duration_since(Instant::now());
            self.tracker
                .wait(
                    &format!("{expected} DtsJobs of case {} to settle", self.name),
                    left,
                    |s| s.settled(expected, quiet),
                )
                .await?;
            let (events, calls) = (self.tracker.with(|s| s.events), self.emulator.journal().await?.len());
            tokio::time::sleep(quiet).await;
            let still = self.tracker.with(|s| s.events) == events && self.emulator.journal().await?.len() == calls;
            if still {
                return Ok(start.elapsed().as_secs_f64());
            }
            if Instant::now() > deadline {
                return Err(format!("case {} did not settle within {timeout:?}", self.name).into());
            }
        }
    }

    /// Deletes the case's DtsJobs (best effort: the numbers are taken).
    pub async fn finish(self) {
        if let Err(e) = load::delete_all(&self.env.cp.client, &self.ns).await {
            eprintln!("dts-bench: deleting the DtsJobs of {}: {e}", self.ns);
        }
    }
}

/// Resident memory of the operator, MiB, rounded to 0.1.
pub fn rss_mib(op: &Operator) -> Option<f64> {
    procs::sample(op.pid()).map(|s| mib(s.rss))
}

pub fn mib(bytes: u64) -> f64 {
    (bytes as f64 / 1048576.0 * 10.0).round() / 10.0
}

/// A timeout that grows with the number of objects (the machine is slow and
/// shared; timeouts only catch a stuck operator).
pub fn scaled_timeout(base_s: u64, objects: usize, per_object_ms: u64) -> Duration {
    Duration::from_secs(base_s) + Duration::from_millis(objects as u64 * per_object_ms)
}
