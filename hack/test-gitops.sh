#!/usr/bin/env bash
# `make gitops-test`: the Go tests in hack/gitops-test, with the tools they
# run: the Argo CD health check (gopher-lua, as Argo CD embeds it) and
# kstatus on the DtsJobs captured by tests/e2e_gitops.rs, and the chart's
# alert rules and dashboard with promtool (`promtool check rules`,
# `promtool test rules`). No cluster is needed.
#
#   hack/test-gitops.sh              run the tests
#   UPDATE_TESTDATA=1 hack/test-gitops.sh   also rewrite deploy/argocd/argocd-cm.yaml from health.lua
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools=$("$root/hack/build-tools.sh")
gitops=$("$root/hack/gitops-tools.sh")
export HELM="$tools/helm" PROMTOOL="$gitops/promtool"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
cd "$root/hack/gitops-test"
# The test module is small: its first build takes about 20 s, then it is cached.
go test -count=1 ./... "$@"
