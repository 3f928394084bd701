#!/usr/bin/env bash
# Builds the real control plane (etcd, kube-apiserver, kubectl) and helm from
# the pinned Go modules in hack/k8s and hack/helm into a per-version cache
# outside the repo, and prints the cache directory. A binary that is already
# cached is not rebuilt, so only the first run on a machine is slow.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION=v1.34.4
ETCD_VERSION=v3.6.4
HELM_VERSION=v3.19.5
cache=${DTS_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dts-operator/bin}
out="$cache/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION"
# `--print-dir` only names the cache directory (testcluster uses it to find the
# binaries without duplicating the version pins above).
if [ "${1:-}" = --print-dir ]; then echo "$out"; exit 0; fi
if ! command -v go >/dev/null; then
  echo "build-tools.sh: the Go toolchain (go >= 1.24) is needed to build etcd, kube-apiserver, kubectl and helm" >&2
  exit 1
fi
mkdir -p "$out"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-trimpath -mod=mod"

built_any=0
total_start=$SECONDS
build() { # name module-dir package ldflags usual-time
  local name=$1 dir=$2 pkg=$3 ld=$4 usual=$5
  if [ -x "$out/$name" ]; then return 0; fi
  if [ "$built_any" = 0 ]; then
    echo "build-tools: first run on this machine: building the test control plane from pinned Go modules" >&2
    echo "build-tools: (about 9 minutes on 2 cores in all, once; then cached in $out)" >&2
  fi
  echo "build-tools: building $name ($pkg; usually $usual on 2 cores) ..." >&2
  local start=$SECONDS
  (cd "$here/$dir" && go build -ldflags "$ld" -o "$out/$name.tmp" "$pkg")
  mv "$out/$name.tmp" "$out/$name"
  echo "build-tools: built $name in $((SECONDS - start)) s" >&2
  built_any=1
}

date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
kld="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kld="$kld -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=$date"
done
build etcd k8s go.etcd.io/etcd/server/v3 "-s -w" "1 minute"
build kube-apiserver k8s k8s.io/kubernetes/cmd/kube-apiserver "$kld" "4 minutes"
build kubectl k8s k8s.io/kubernetes/cmd/kubectl "$kld" "2 minutes"
hld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
hld="$hld -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
hld="$hld -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
build helm helm helm.sh/helm/v3/cmd/helm "$hld" "2 minutes"
if [ "$built_any" = 1 ]; then echo "build-tools: tools built in $((SECONDS - total_start)) s" >&2; fi
echo "$out"
