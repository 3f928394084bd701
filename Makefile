# dts-operator. The two commands are `make demo` and `make test` (README.md).
.PHONY: demo test reliability lint deploy-check gitops-test image-test bench bench-micro bench-e2e bench-smoke fuzz-smoke crd tools gitops-tools cluster cluster-down image

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
	scripts/test-e2e-env.sh cargo test --workspace $(TEST_FEATURES)
	$(MAKE) --no-print-directory bench-smoke
	hack/test-sdk.sh

# The operator's crash points (src/failpoint.rs) in every test build: inert
# unless DTS_OPERATOR_FAILPOINT names one, and what the crash sweep
# (tests/e2e_crash.rs) needs. The same features in lint, test and bench-smoke
# keep cargo from rebuilding the operator back and forth; release and image
# builds never have them.
TEST_FEATURES := --features dts-operator/failpoints

# The full crash sweep (docs/reliability.md): every failpoint x one-/two-way
# x both signature schemes x Stop, Suspend, Start, on one control plane;
# then the control-plane faults at full size (500-job bursts, 20 s SIGSTOP).
# `make test` runs a fast subset of both.
reliability: tools
	scripts/test-e2e-env.sh cargo test -p dts-operator $(TEST_FEATURES) --test e2e_crash -- --ignored --nocapture
	RELIABILITY_FULL=1 scripts/test-e2e-env.sh cargo test -q -p dts-operator $(TEST_FEATURES) --test e2e_control_plane -- --nocapture

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets $(TEST_FEATURES) -- -D warnings

# The chart's CRD equals crds/dtsjob.yaml, deploy/manifests is in sync with
# the chart, and helm lint is clean.
deploy-check: tools
	hack/check-deploy.sh --check

# The Argo CD health check (Lua, as Argo CD runs it) and kstatus on the
# DtsJobs captured by tests/e2e_gitops.rs, and the chart's alerts and
# dashboard with promtool (hack/gitops-test; no cluster).
gitops-test: tools gitops-tools
	hack/test-gitops.sh

# The micro-benchmarks, then the end-to-end scenarios of bench/driver
# (docs/benchmarks.md). Numbers, not assertions.
bench: bench-micro bench-e2e

# Prints ns/op of signing, request building, response parsing (dts-api) and
# planning (the operator).
bench-micro:
	cargo bench -p dts-api --bench dts
	cargo bench -p dts-operator --bench controller

TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
BENCH_STAMP := $(shell date -u +%Y%m%dT%H%M%SZ)
# Where a run's results go; the text and SVG outputs are then copied to
# bench/results/latest/ (the copy docs/benchmarks.md links).
BENCH_OUT ?= bench/results/$(BENCH_STAMP)
# The operator under test: any build's command line (the driver appends
# --dts-endpoint, --namespace and --metrics-addr and sets KUBECONFIG).
BENCH_OPERATOR ?= $(TARGET_DIR)/release/dts-operator run
# More `dts-bench run` flags, e.g. BENCH_ARGS="--scenario idle,burst --idle-background 0,1000".
BENCH_ARGS ?=

# Every scenario at full size on release builds, with its own control
# plane; takes a while (see docs/benchmarks.md for sizes that fit).
bench-e2e: tools
	cargo build --release --bins -p dts-operator -p dts-emulator -p testcluster -p dts-bench
	$(TARGET_DIR)/release/dts-bench run --out $(BENCH_OUT) --operator-cmd "$(BENCH_OPERATOR)" $(BENCH_ARGS)
	mkdir -p bench/results/latest
	rm -f bench/results/latest/*
	cp $(BENCH_OUT)/results.json $(BENCH_OUT)/results.md bench/results/latest/
	cp $(BENCH_OUT)/*.svg bench/results/latest/ 2>/dev/null || true

# Every scenario at tiny sizes on debug builds (part of `make test`, well
# under a minute): its own control plane; fails only on behaviour (one
# StopDtsJob per job and direction, every job Stopped, no DTS call at rest).
bench-smoke: tools
	cargo build -q --bins $(TEST_FEATURES) -p dts-operator -p dts-emulator -p testcluster -p dts-bench
	rm -rf $(TARGET_DIR)/bench-smoke
	$(TARGET_DIR)/debug/dts-bench run --smoke --out $(TARGET_DIR)/bench-smoke --operator-cmd "$(TARGET_DIR)/debug/dts-operator run"

# One minute of libFuzzer on the DTS answer parser (not part of `make test`:
# it needs a nightly toolchain and cargo-fuzz, e.g.
# `rustup toolchain install nightly --profile minimal && cargo +nightly install cargo-fuzz --locked`).
# The stable property tests cover the same parser on every run (docs/reliability.md).
FUZZ_SECONDS ?= 60
fuzz-smoke:
	cd crates/dts-api/fuzz && cargo +nightly fuzz run parse_response -- -max_total_time=$(FUZZ_SECONDS) -max_len=4096

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
