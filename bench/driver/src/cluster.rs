//! The control plane of a run: the repository's own `testcluster` binary
//! (`up --dir D` / `down --dir D`), so the PKI, flags and readiness checks
//! live in one place, plus what the driver reads from it: a client, the PIDs
//! of etcd and kube-apiserver (for CPU and memory) and the API server's own
//! request counters.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::measure::RequestCounts;
use crate::Result;

/// A running etcd + kube-apiserver, stopped (`testcluster down`) on drop, so
/// an error or Ctrl-C anywhere in the run still takes it down.
pub struct ControlPlane {
    down: Down,
    pub kubeconfig: PathBuf,
    pub client: Client,
    pub etcd_pid: i32,
    pub apiserver_pid: i32,
}

impl ControlPlane {
    /// Runs `testcluster up --dir DIR` (its output goes to `log`) and
    /// connects. `testcluster` finds the control-plane binaries itself
    /// (`DTS_TEST_BIN_DIR` or `hack/build-tools.sh --print-dir`).
    /// With `profiling`, kube-apiserver serves /debug/pprof.
    pub async fn up(testcluster: &Path, dir: &Path, log: &Path, profiling: bool) -> Result<ControlPlane> {
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let out = std::fs::File::create(log)?;
        let status = tokio::process::Command::new(testcluster)
            .args(["up", "--dir"])
            .arg(&dir)
            .env("TESTCLUSTER_PROFILING", if profiling { "1" } else { "0" })
            .stdout(out.try_clone()?)
            .stderr(out)
            .status()
            .await
            .map_err(|e| format!("running {}: {e}", testcluster.display()))?;
        // From here on the guard owns the cluster, also if `up` half failed
        // (`down` is idempotent).
        let down = Down {
            dir: dir.clone(),
            testcluster: testcluster.to_path_buf(),
        };
        if !status.success() {
            return Err(format!("testcluster up failed ({status}):\n{}", crate::procs::log_tail(log, 30)).into());
        }
        let (mut etcd_pid, mut apiserver_pid) = (0, 0);
        for line in std::fs::read_to_string(dir.join("pids"))?.lines() {
            let mut f = line.split_whitespace();
            match (f.next(), f.next().and_then(|p| p.parse().ok())) {
                (Some("etcd"), Some(pid)) => etcd_pid = pid,
                (Some("kube-apiserver"), Some(pid)) => apiserver_pid = pid,
                _ => {}
            }
        }
        let kubeconfig = dir.join("kubeconfig");
        let kc = Kubeconfig::read_from(&kubeconfig)?;
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
        Ok(ControlPlane {
            down,
            kubeconfig,
            client: Client::try_from(config)?,
            etcd_pid,
            apiserver_pid,
        })
    }

    /// `apiserver_request_total` from the API server's `/metrics` (the
    /// admin user may read it), summed by verb, resource and subresource.
    pub async fn request_counts(&self) -> Result<RequestCounts> {
        let req = http::Request::get("/metrics").body(Vec::new())?;
        let text = self.client.request_text(req).await?;
        Ok(RequestCounts::parse(&text))
    }

    pub fn dir(&self) -> &Path {
        &self.down.dir
    }
}

/// A CPU profile of kube-apiserver over the next `length` (pprof's
/// protobuf), written to `file`.
pub async fn cpu_profile(client: &Client, length: Duration, file: &Path) -> Result<()> {
    let req =
        http::Request::get(format!("/debug/pprof/profile?seconds={}", length.as_secs().max(1))).body(Vec::new())?;
    let mut body = std::pin::pin!(client.request_stream(req).await?);
    let mut bytes = Vec::new();
    futures::AsyncReadExt::read_to_end(&mut body, &mut bytes).await?;
    std::fs::write(file, bytes)?;
    Ok(())
}

/// Runs `testcluster down --dir DIR` when dropped.
struct Down {
    dir: PathBuf,
    testcluster: PathBuf,
}

impl Drop for Down {
    fn drop(&mut self) {
        let status = Command::new(&self.testcluster)
            .args(["down", "--dir"])
            .arg(&self.dir)
            .status();
        match status {
            Ok(s) if s.success() => {}
            other => eprintln!(
                "dts-bench: `testcluster down --dir {}` failed ({other:?}); stop it by hand",
                self.dir.display()
            ),
        }
    }
}
