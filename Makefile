# dts-operator: the two commands are `make demo` and `make test` (README.md).
.PHONY: test lint crd

test: lint
	cargo test --workspace

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

crd:
	cargo run -q --bin dts-operator -- crd > crds/dtsjob.yaml
