//! The operator under test, started from a command line the user gives, so
//! any build (this branch, another branch, a release) is measured by the
//! same driver.
//!
//! The command runs as `sh -c 'exec CMD "$@"' ARGS...`: shell quoting in
//! CMD works, and `exec` keeps the operator's own PID, which the driver
//! samples for CPU and memory. (A wrapper that forks, like `cargo run`,
//! would be measured instead of the operator: pass the binary.)

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::emulator::free_port;
use crate::procs::Child;
use crate::Result;

/// A running operator.
pub struct Operator {
    pub process: Child,
    base: String,
    http: reqwest::Client,
    /// When it was spawned (ms since the Unix epoch).
    pub started_ms: f64,
}

/// What the driver adds to the user's command line.
pub struct Launch<'a> {
    pub kubeconfig: &'a Path,
    pub dts_endpoint: &'a str,
    pub namespace: &'a str,
    /// Per-scenario flags (e.g. lifted DTS limits for the burst).
    pub extra: &'a [String],
    pub log: &'a Path,
}

impl Operator {
    /// Starts `cmd` with `--dts-endpoint`, `--namespace` and
    /// `--metrics-addr 127.0.0.1:PORT` appended (then `extra`), and
    /// `KUBECONFIG` set to the run's control plane. Default credentials from
    /// the environment are removed: every job uses the case's Secret.
    pub fn spawn(name: &str, cmd: &str, l: Launch<'_>) -> Result<Operator> {
        let port = free_port()?;
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!("exec {cmd} \"$@\""))
            .arg("dts-operator")
            .arg("--dts-endpoint")
            .arg(l.dts_endpoint)
            .arg("--namespace")
            .arg(l.namespace)
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{port}"))
            .args(l.extra)
            .env("KUBECONFIG", l.kubeconfig)
            .env("NO_COLOR", "1")
            .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
            .env_remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
            .env_remove("ALIBABA_CLOUD_SECURITY_TOKEN");
        let started_ms = crate::measure::now_ms();
        let process = Child::spawn(name, c, l.log)?;
        Ok(Operator {
            process,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?,
            started_ms,
        })
    }

    /// Polls `/readyz` (the first DtsJob watch has synced) every 10 ms and
    /// returns the time it first answered 200 (ms since the Unix epoch).
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<f64> {
        let deadline = Instant::now() + timeout;
        loop {
            self.process.check_alive()?;
            let ok = self
                .http
                .get(format!("{}/readyz", self.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(crate::measure::now_ms());
            }
            if Instant::now() > deadline {
                return Err(format!("the operator was not ready within {timeout:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The value of metric `name` summed over its series, if the build
    /// exports it (the driver does not require any operator metric).
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let mut found = false;
        let mut sum = 0.0;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let metric = series.split('{').next().unwrap_or("");
            if metric == name {
                if let Ok(v) = value.parse::<f64>() {
                    found = true;
                    sum += v;
                }
            }
        }
        found.then_some(sum)
    }

    pub fn pid(&self) -> i32 {
        self.process.pid()
    }
}
