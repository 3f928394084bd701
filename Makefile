# dts-operator: the two commands are `make demo` and `make test` (README.md).
.PHONY: test lint crd tools cluster cluster-down

# The throw-away control plane of `make cluster` (see testcluster/).
CLUSTER_DIR ?= target/cluster

# Unit and end-to-end tests; the e2e tests get one local control plane for
# the whole run from scripts/test-e2e-env.sh, which always stops it.
test: lint tools
	scripts/test-e2e-env.sh cargo test --workspace

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

crd:
	cargo run -q --bin dts-operator -- crd > crds/dtsjob.yaml

# etcd, kube-apiserver, kubectl and helm from the pinned Go modules in hack/,
# cached per version under ~/.cache/dts-operator/bin (slow only the first time).
tools:
	hack/build-tools.sh

# Starts etcd + kube-apiserver on loopback and installs crds/; prints how to use it.
cluster: tools
	cargo run -q -p testcluster -- up --dir $(CLUSTER_DIR)

cluster-down:
	cargo run -q -p testcluster -- down --dir $(CLUSTER_DIR)
