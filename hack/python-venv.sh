#!/usr/bin/env bash
# Creates (once) the virtualenv for the SDK compatibility test, outside the
# repo, keyed by a hash of tests/sdk_compat/requirements.txt so a change of
# pins builds a fresh one. Prints the venv's directory on stdout.
# Fails loudly (non-zero, message on stderr) when it cannot be built: the
# compatibility test is mandatory and must never be skipped.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
req="$root/tests/sdk_compat/requirements.txt"
python="${PYTHON:-python3}"

command -v "$python" >/dev/null || { echo "python-venv.sh: $python not found; install Python 3 (with venv)" >&2; exit 1; }
hash="$( (cat "$req"; "$python" --version 2>&1) | sha256sum | cut -c1-16)"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/dts-operator/venv-$hash"

if [[ -x "$venv/bin/python" && -f "$venv/.complete" ]]; then
  echo "$venv"
  exit 0
fi

rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
{
  "$python" -m venv "$venv" &&
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
} >&2 || { echo "python-venv.sh: could not build the virtualenv in $venv from $req" >&2; rm -rf "$venv"; exit 1; }
touch "$venv/.complete"
echo "$venv"
