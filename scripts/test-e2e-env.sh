#!/usr/bin/env bash
# Runs a command (normally `cargo test ...`) with ONE throw-away control plane
# for the whole run: Rust test binaries are separate processes, so the cluster
# is started here, its KUBECONFIG exported to every test, and stopped at the
# end by the trap, also when the tests fail or the run is interrupted. The
# command's exit code is propagated.
#
#   scripts/test-e2e-env.sh cargo test --workspace
#
# The cluster directory (certificates, etcd data, logs) is deleted after a
# successful run and kept after a failure for diagnosis.
#
# Secret scan: the tests and every emulator record the run's secrets (test
# AccessKeySecrets and tokens, every signature received, STS-issued
# credentials) in a ledger (DTS_SECRET_LEDGER, exported below). After the
# command, before the cluster stops, all Events and DtsJobs are dumped and
# `testcluster secret-scan` searches them, this run's logs under
# target/tmp/e2e (operators at debug, emulators), the control-plane logs and the
# command's own output (tee'd to a file) for every ledger entry. A hit
# fails the run, as a failing test does.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -eq 0 ]; then
  echo "usage: $0 COMMAND [ARGS...]" >&2
  exit 2
fi

# Builds the Go tools on a fresh machine; only prints the cache dir otherwise.
bin_dir=$("$root/hack/build-tools.sh")
# Argo CD's and Flux's CRDs for tests/e2e_gitops.rs (and promtool), cached likewise.
gitops_dir=$("$root/hack/gitops-tools.sh")
# testcluster, and the dts-emulator binary that the e2e tests (tests/support)
# run from the target directory: it is another package's binary, which cargo
# does not build for the operator's tests, and a test must not run cargo.
if [ ! -x "${CARGO_TARGET_DIR:-$root/target}/debug/dts-emulator" ]; then
  echo "test-e2e-env: first build of testcluster and dts-emulator (debug; about 3 minutes on 2 cores), then of the tests (several more)" >&2
fi
cargo build -q --manifest-path "$root/Cargo.toml" -p testcluster -p dts-emulator --bin testcluster --bin dts-emulator
testcluster="${CARGO_TARGET_DIR:-$root/target}/debug/testcluster"
dir=$(mktemp -d "${TMPDIR:-/tmp}/dts-e2e.XXXXXX")
# Earlier runs' logs stay in target/tmp/e2e; only files newer than this are scanned.
touch "$dir/started"
ledger="$dir/secret-ledger"

rc=0
cleanup() {
  "$testcluster" down --dir "$dir" || { [ "$rc" -ne 0 ] || rc=1; }
  if [ "$rc" -eq 0 ]; then
    rm -rf "$dir"
  else
    echo "test-e2e-env: exit code $rc; control-plane logs kept in $dir" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
# An interrupted run still goes through cleanup (bash runs EXIT on `exit`).
trap 'rc=130; exit 130' INT
trap 'rc=143; exit 143' TERM

# The dump and scan of the run's output (see the top of this file).
secret_scan() {
  mkdir -p "$dir/scan"
  "$bin_dir/kubectl" --kubeconfig "$dir/kubeconfig" get events,dtsjobs -A -o yaml >"$dir/scan/events-dtsjobs.yaml" ||
    return 1
  "$testcluster" secret-scan --ledger "$ledger" --newer "$dir/started" \
    "$dir/scan/events-dtsjobs.yaml" "$dir/test-output.log" "$dir/etcd.log" "$dir/kube-apiserver.log" \
    "${CARGO_TARGET_DIR:-$root/target}/tmp/e2e"
}

"$testcluster" up --dir "$dir" --bin-dir "$bin_dir" || { rc=$?; exit "$rc"; }
# The control plane's admin token is a secret of the run too.
printf 'kube-admin-token\t%s\n' "$(cut -d, -f1 "$dir/tokens.csv")" >>"$ledger"
export KUBECONFIG="$dir/kubeconfig" DTS_TEST_BIN_DIR="$bin_dir" DTS_GITOPS_TOOLS_DIR="$gitops_dir"
export DTS_SECRET_LEDGER="$ledger"
mkdir -p "${CARGO_TARGET_DIR:-$root/target}/tmp/e2e"
set +e
"$@" 2>&1 | tee "$dir/test-output.log"
rc=${PIPESTATUS[0]}
set -e
secret_scan || { [ "$rc" -ne 0 ] || rc=1; }
exit "$rc"
