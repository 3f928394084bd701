//! A control plane of one test alone: `testcluster up` in a temporary
//! directory, faults through `testcluster restart|pause|resume`, `down` on
//! drop (also on panic).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The `testcluster` binary next to this test's target directory (built by
/// scripts/test-e2e-env.sh), as tests/support finds the emulator.
fn testcluster_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("DTS_TESTCLUSTER_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join("testcluster");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p testcluster` (scripts/test-e2e-env.sh does)",
        path.display()
    );
    path
}

/// A control plane of this test alone, stopped (`testcluster down`) on drop.
pub struct OwnCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl OwnCluster {
    pub fn up() -> OwnCluster {
        let dir = tempfile::Builder::new()
            .prefix("dts-cpfaults.")
            .tempdir()
            .expect("temp dir");
        let bin = testcluster_bin();
        let cluster = OwnCluster { dir, bin };
        let mut cmd = Command::new(&cluster.bin);
        cmd.arg("up").arg("--dir").arg(cluster.dir.path());
        if let Some(bin_dir) = std::env::var_os("DTS_TEST_BIN_DIR") {
            cmd.arg("--bin-dir").arg(bin_dir);
        }
        let out = cmd.output().expect("running testcluster up");
        assert!(
            out.status.success(),
            "testcluster up failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// Runs `testcluster ARGS --dir DIR` to completion (off the async
    /// runtime) and returns how long it took and its stdout.
    pub async fn run(&self, args: &[&str]) -> (Duration, String) {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(args).arg("--dir").arg(self.dir.path());
        let started = Instant::now();
        let out = cmd.output().await.expect("running testcluster");
        let took = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        // What `testcluster` says about stopping (e.g. a SIGKILL after the
        // grace period) belongs to the figures.
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success(),
            "testcluster {args:?} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (took, stdout)
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let status = Command::new(&self.bin)
            .arg("down")
            .arg("--dir")
            .arg(self.dir.path())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!(
                "testcluster down --dir {} failed ({status:?}); stop it by hand",
                self.dir.path().display()
            );
        }
    }
}
