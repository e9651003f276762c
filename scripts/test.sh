#!/usr/bin/env bash
# Every test: lint and types, the C shim's tests (plain and under ASan/UBSan),
# the embedded C hosts, the Python suite, and the end-to-end suite against
# real servers.  Installs and builds what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=$PWD/.venv/bin/python

echo "== lint and types"
$PY -m ruff check pygrpc_ffi tests examples ffi_build.py bench
$PY -m mypy

echo "== C tests (shim, embedded host), then again under ASan + UBSan"
make -s -C csrc test PYTHON="$PY"
make -s -C csrc test-asan PYTHON="$PY"

echo "== the README's minimal C host"
cc -std=c99 -Wall -Wextra -Werror -Icsrc examples/minimal_host.c -Lpygrpc_ffi -lpygrpc_ffi \
   -Wl,-rpath,"$PWD/pygrpc_ffi" -o build/minimal_host
build/minimal_host | tee build/minimal_host.out
grep -q "^status 0: Hello, C host!$" build/minimal_host.out

echo "== Python and end-to-end tests"
$PY -m pytest -q -p no:cacheprovider
