# dts-operator. The two commands are `make demo` and `make test` (README.md).
.PHONY: demo test lint deploy-check gitops-test image-test bench crd tools gitops-tools cluster cluster-down image

# The throw-away control plane of `make cluster` (see testcluster/).
CLUSTER_DIR ?= target/cluster

# Local control plane + DTS emulator + operator; applies examples/, stops
# the jobs, prints the result and tears everything down.
demo:
	scripts/demo.sh

# Everything: lint, unit tests, the end-to-end tests on a real
# kube-apiserver (one control plane for the whole run, always stopped),
# chart/manifest checks, the image build, and the SDK compatibility test with Alibaba's
# official Python SDKs (mandatory: fails if its virtualenv can't be built).
# (scripts/test-e2e-env.sh also builds the dts-emulator binary the e2e tests run.)
test: lint tools gitops-tools deploy-check gitops-test image-test
	scripts/test-e2e-env.sh cargo test --workspace
	hack/test-sdk.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

# The chart's CRD equals crds/dtsjob.yaml, deploy/manifests is in sync with
# the chart, and helm lint is clean.
deploy-check: tools
	hack/check-deploy.sh --check

# The Argo CD health check (Lua, as Argo CD runs it) and kstatus on the
# DtsJobs captured by tests/e2e_gitops.rs, and the chart's alerts and
# dashboard with promtool (hack/gitops-test; no cluster).
gitops-test: tools gitops-tools
	hack/test-gitops.sh

# Prints ns/op of signing, request building, response parsing (dts-api) and
# planning (the operator).
bench:
	cargo bench -p dts-api --bench dts
	cargo bench -p dts-operator --bench controller

crd:
	cargo run -q --bin dts-operator -- crd > crds/dtsjob.yaml

# etcd, kube-apiserver, kubectl and helm from the pinned Go modules in hack/,
# cached per version under ~/.cache/dts-operator/bin (slow only the first time).
tools:
	hack/build-tools.sh

# promtool, controller-gen and Argo CD's and Flux's CRDs (hack/gitops-tools.sh),
# cached per version under ~/.cache/dts-operator/bin.
gitops-tools:
	hack/gitops-tools.sh

# Starts etcd + kube-apiserver on loopback and installs crds/; prints how to use it.
cluster: tools
	cargo run -q -p testcluster -- up --dir $(CLUSTER_DIR)

cluster-down:
	cargo run -q -p testcluster -- down --dir $(CLUSTER_DIR)

# A FROM scratch image with a static musl binary (needs buildah, musl-tools
# and the musl Rust target; .ci/run installs them).
image:
	hack/build-image.sh

# Builds the image's final stage from ./Dockerfile with a static (debug) binary
# and runs it as uid 65532: fails if the binary is not static or does not start.
image-test:
	BUILD_PROFILE=dev hack/build-image.sh dts-operator:test
	buildah --storage-driver vfs rmi dts-operator:test >/dev/null
