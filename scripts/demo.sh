#!/usr/bin/env bash
# `make demo`: the whole story on this machine, with nothing but the repo.
# Builds what it needs, starts a local control plane (etcd + kube-apiserver),
# the DTS emulator and the operator, applies examples/ (a Secret, a one-way
# and a two-way DtsJob), flips both jobs to Stopped, shows the result, and
# tears everything down (also on failure or Ctrl-C).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "Building the control plane binaries (cached after the first run), dts-operator and dts-emulator"
bin_dir=$(hack/build-tools.sh)
target="${CARGO_TARGET_DIR:-$root/target}/debug"
if [ ! -x "$target/dts-operator" ]; then
  echo "  first build of dts-operator, dts-emulator and testcluster (debug; about 3 minutes on 2 cores, then incremental)"
fi
cargo build -q --bins -p dts-operator -p dts-emulator -p testcluster
export PATH="$bin_dir:$PATH"

work=$(mktemp -d "${TMPDIR:-/tmp}/dts-demo.XXXXXX")
pids=()
cleanup() {
  rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  "$target/testcluster" down --dir "$work/cluster" >/dev/null 2>&1 || true
  if [ "$rc" -ne 0 ]; then
    echo "demo failed (exit $rc); logs kept in $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "Starting etcd and kube-apiserver on loopback"
"$target/testcluster" up --dir "$work/cluster" --bin-dir "$bin_dir" >/dev/null
export KUBECONFIG="$work/cluster/kubeconfig"
kubectl version 2>/dev/null | sed 's/^/  /'

say "Starting the DTS emulator (examples/emulator/dts-emulator.yaml)"
"$target/dts-emulator" --listen 127.0.0.1:0 --config examples/emulator/dts-emulator.yaml \
  >"$work/emulator.out" 2>"$work/emulator.log" &
pids+=($!)
for _ in $(seq 1 100); do
  addr=$(awk 'NR==1 && $1=="listening" {print $3}' "$work/emulator.out" 2>/dev/null)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "${addr:-}" ] || { echo "the emulator did not start:" >&2; cat "$work/emulator.log" >&2; exit 1; }
echo "  DTS emulator listening on http://$addr"

say "Starting dts-operator (log: operator.log)"
"$target/dts-operator" run --dts-endpoint "http://$addr" --metrics-addr 127.0.0.1:0 --log-format json \
  >"$work/operator.log" 2>&1 &
pids+=($!)

say "kubectl apply -f examples/"
kubectl apply -f examples/
kubectl -n data-platform wait dtsjob --all --for=jsonpath='{.status.observedGeneration}'=1 --timeout=60s >/dev/null
echo
kubectl get dtsjobs -A

say "Flipping both jobs to desiredState: Stopped"
for job in orders-sync customers-two-way; do
  kubectl -n data-platform patch dtsjob "$job" --type merge -p '{"spec":{"desiredState":"Stopped"}}'
done
# Ready follows kstatus, so kubectl wait (like Flux and Helm) can wait on it.
kubectl -n data-platform wait dtsjob --all --for=condition=Ready --timeout=60s

say "kubectl get dtsjobs -A"
kubectl get dtsjobs -A

say "kubectl -n data-platform get dtsjob customers-two-way -o yaml"
kubectl -n data-platform get dtsjob customers-two-way -o yaml

say "Events"
kubectl -n data-platform get events.events.k8s.io --sort-by=.metadata.creationTimestamp \
  -o custom-columns=TYPE:.type,REASON:.reason,OBJECT:.regarding.name,NOTE:.note

say "What the DTS emulator received (GET /_emulator/journal)"
python3 - "$addr" <<'PY'
import json, sys, urllib.request
journal = json.load(urllib.request.urlopen(f"http://{sys.argv[1]}/_emulator/journal"))
print(f"  {'ACTION':<22}{'JOB':<18}{'DIRECTION':<11}{'SCHEME':<11}{'HTTP':<6}REQUEST ID")
for e in journal:
    p = e["params"]
    print(f"  {e['action']:<22}{p.get('DtsJobId',''):<18}{p.get('SynchronizationDirection','Forward'):<11}"
          f"{e['scheme']:<11}{e['httpStatus']!s:<6}{e['requestId']}")
PY

say "Tearing down"
