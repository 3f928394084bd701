#!/usr/bin/env bash
# Builds the GitOps and monitoring test tools from pinned Go modules into a
# per-version cache outside the repo (like hack/build-tools.sh does for the
# control plane), and prints the cache directory:
#
#   <dir>/promtool         Prometheus's promtool (hack/promtool), for
#                          `promtool check rules` / `promtool test rules`
#   <dir>/controller-gen   controller-gen (hack/gitops-crds)
#   <dir>/crds/*.yaml      the CRDs the GitOps examples need: Argo CD's
#                          Application, Flux's Kustomization, GitRepository
#                          and HelmRelease
#
# The CRDs come from the Go module proxy: Argo CD's and Flux's kustomize- and
# source-controller modules ship them as files (`go mod download -json`
# names the directory). helm-controller's root module is not served, so its
# HelmRelease CRD is generated with controller-gen from its API module, which
# is what helm-controller's own Makefile does. Nothing is committed.
#
#   hack/gitops-tools.sh              build what is missing, print the dir
#   hack/gitops-tools.sh --print-dir  only print the dir
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
PROMETHEUS_VERSION=v0.316.0      # hack/promtool/go.mod (Prometheus 3.16.0)
CONTROLLER_TOOLS_VERSION=v0.21.0 # hack/gitops-crds/go.mod, as kustomize-controller's Makefile pins it
HELM_CONTROLLER_API_VERSION=v1.6.5
ARGOCD_MODULE=github.com/argoproj/argo-cd/v3@v3.5.7
KUSTOMIZE_CONTROLLER_MODULE=github.com/fluxcd/kustomize-controller@v1.9.6
SOURCE_CONTROLLER_MODULE=github.com/fluxcd/source-controller@v1.9.6
cache=${DTS_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dts-operator/bin}
out="$cache/gitops-prometheus-$PROMETHEUS_VERSION-argocd-${ARGOCD_MODULE##*@}-flux-${KUSTOMIZE_CONTROLLER_MODULE##*@}-helm-$HELM_CONTROLLER_API_VERSION"
if [ "${1:-}" = --print-dir ]; then echo "$out"; exit 0; fi
if ! command -v go >/dev/null; then
  echo "gitops-tools.sh: the Go toolchain (go >= 1.26.7) is needed to build promtool and fetch the Argo CD / Flux CRDs" >&2
  exit 1
fi
mkdir -p "$out/crds"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-trimpath -mod=mod"

built_any=0
total_start=$SECONDS
build() { # name module-dir package ldflags usual-time
  local name=$1 dir=$2 pkg=$3 ld=$4 usual=$5
  if [ -x "$out/$name" ]; then return 0; fi
  echo "gitops-tools: building $name ($pkg, once per version; usually $usual on 2 cores) into $out ..." >&2
  local start=$SECONDS
  (cd "$here/$dir" && go build -ldflags "$ld" -o "$out/$name.tmp" "$pkg")
  mv "$out/$name.tmp" "$out/$name"
  echo "gitops-tools: built $name in $((SECONDS - start)) s" >&2
  built_any=1
}

pv=${PROMETHEUS_VERSION#v0.}                      # v0.316.0 → 316.0
pv="${pv:0:1}.$((10#${pv:1:2})).${pv##*.}"         # → 3.16.0 (v0.305.1 → 3.5.1)
build promtool promtool github.com/prometheus/prometheus/cmd/promtool \
  "-s -w -X github.com/prometheus/common/version.Version=$pv -X github.com/prometheus/common/version.Branch=HEAD" "8 minutes"
build controller-gen gitops-crds sigs.k8s.io/controller-tools/cmd/controller-gen "-s -w" "1 minute"

# The directory of a downloaded module (module@version).
module_dir() {
  local json dir
  json=$(go mod download -json "$1") || { echo "gitops-tools: go mod download $1 failed" >&2; return 1; }
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")
  [ -n "$dir" ] && [ -d "$dir" ] || { echo "gitops-tools: no directory for $1: $json" >&2; return 1; }
  echo "$dir"
}
copy_crd() { # module file target
  local target="$out/crds/$3"
  if [ -s "$target" ]; then return 0; fi
  local dir
  dir=$(module_dir "$1")
  cp "$dir/$2" "$target.tmp" && chmod 644 "$target.tmp" && mv "$target.tmp" "$target"
  echo "gitops-tools: $3 from $1" >&2
}
copy_crd "$ARGOCD_MODULE" manifests/crds/application-crd.yaml argoproj.io_applications.yaml
copy_crd "$KUSTOMIZE_CONTROLLER_MODULE" config/crd/bases/kustomize.toolkit.fluxcd.io_kustomizations.yaml \
  kustomize.toolkit.fluxcd.io_kustomizations.yaml
copy_crd "$SOURCE_CONTROLLER_MODULE" config/crd/bases/source.toolkit.fluxcd.io_gitrepositories.yaml \
  source.toolkit.fluxcd.io_gitrepositories.yaml
helmrelease="$out/crds/helm.toolkit.fluxcd.io_helmreleases.yaml"
if [ ! -s "$helmrelease" ]; then
  gen=$(mktemp -d)
  (cd "$here/gitops-crds" && "$out/controller-gen" crd:crdVersions=v1 \
    paths=github.com/fluxcd/helm-controller/api/... output:crd:artifacts:config="$gen")
  mv "$gen/helm.toolkit.fluxcd.io_helmreleases.yaml" "$helmrelease"
  rm -rf "$gen"
  echo "gitops-tools: helm.toolkit.fluxcd.io_helmreleases.yaml generated from github.com/fluxcd/helm-controller/api@$HELM_CONTROLLER_API_VERSION" >&2
fi
if [ "$built_any" = 1 ]; then echo "gitops-tools: built in $((SECONDS - total_start)) s" >&2; fi
echo "$out"
