#!/usr/bin/env bash
# Builds the python-annotate policy into a WebAssembly component with componentize-py.
#
#   examples/policies/python-annotate/build.sh [OUT.wasm]
#
# Default output: $CARGO_TARGET_DIR/policies/python_annotate.wasm (target/ when unset).
# componentize-py comes from PyPI into a venv under the same directory, installed once and
# reused (the wheel bundles CPython for WASI, so the build itself needs no network).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
out_dir="${CARGO_TARGET_DIR:-$root/target}/policies"
out="${1:-$out_dir/python_annotate.wasm}"
version=0.25.1
venv="$out_dir/componentize-py-$version"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/componentize-py" ]; then
    echo "==> installing componentize-py $version into $venv" >&2
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$version"
fi
mkdir -p "$(dirname "$out")"
# -d/-w: the contract and the world; app: the module holding `Translator`. This example stays
# on contract 0.1.0 (wit/0.1.0/), which the daemon keeps loading: it is the tree's witness
# that policies built before 0.2.0 still run. See docs/policies.md for what 0.2.0 adds.
"$venv/bin/componentize-py" -d "$root/wit/0.1.0" -w policy componentize --stub-wasi -p "$here" app -o "$out" >&2
echo "$out"
