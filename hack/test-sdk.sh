#!/usr/bin/env bash
# The SDK compatibility test (mandatory, never skipped): builds the
# dts-emulator binary (unless DTS_EMULATOR_BIN points at one), creates the
# pinned virtualenv outside the repo if missing, and runs tests/sdk_compat
# with Alibaba's official Python SDKs. Any failure, including a venv that
# cannot be built, exits non-zero.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [[ -z "${DTS_EMULATOR_BIN:-}" ]]; then
  # The same packages as scripts/test-e2e-env.sh builds, so cargo unifies
  # the same features and reuses that build instead of compiling another.
  cargo build --quiet -p testcluster -p dts-emulator --bin testcluster --bin dts-emulator
  export DTS_EMULATOR_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/dts-emulator"
fi
venv="$(hack/python-venv.sh)" || { echo "test-sdk.sh: the Python virtualenv could not be built; the SDK compatibility test cannot run" >&2; exit 1; }
exec "$venv/bin/python" -m pytest -p no:cacheprovider -q tests/sdk_compat "$@"
