#!/usr/bin/env bash
# Every test: lint and types, the C shim's tests (plain, under ASan/UBSan and
# under TSan), fuzzing of the shim (libFuzzer, bounded time),
# the embedded C hosts, the Python suite, and the end-to-end suite against
# real servers.  Installs and builds what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=$PWD/.venv/bin/python

echo "== lint and types"
$PY -m ruff check pygrpc_ffi tests examples setup.py noxfile.py bench
$PY -m mypy

echo "== C tests (shim, embedded host), then again under ASan + UBSan"
make -s -C tests/c test PYTHON="$PY"
make -s -C tests/c test-asan PYTHON="$PY"

echo "== C tests under ThreadSanitizer"
make -s -C tests/c test-tsan PYTHON="$PY"

echo "== fuzzing the C shim (libFuzzer, ASan + UBSan, about 15 s per harness)"
bash tests/fuzz/run.sh "${PGF_FUZZ_SECONDS:-15}"

echo "== the minimal C host of docs/embedding.md"
cc -std=c99 -Wall -Wextra -Werror -Icsrc examples/minimal_host.c -Lpygrpc_ffi -lpygrpc_ffi \
   -Wl,-rpath,"$PWD/pygrpc_ffi" -o build/minimal_host
build/minimal_host | tee build/minimal_host.out
grep -q "^status 0: Hello, C host!$" build/minimal_host.out

echo "== Python and end-to-end tests (with the packaging tests: sdist, wheel, fresh venv)"
$PY -m pytest -q -p no:cacheprovider --durations=15

echo "== the oldest and the newest Python: the wheel in a fresh venv each (nox)"
# pyenv's interpreters first on PATH, where nox looks for python3.X.
for v in 3.10 3.13; do
    dir=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin 2>/dev/null | sort -V | tail -1 || true)
    if [[ -n $dir ]]; then PATH="$dir:$PATH"; fi
done
PATH="$PATH" $PY -m nox --no-color -s tests-3.10 tests-3.13 -- -x

echo "== the gRPC C++ host (for servers with their own gRPC C++): streams and interop"
PGF_E2E_ENGINES=cxx PGF_HOST_BINARY="$PWD/build/grpc_server/pygrpc_ffi_grpcpp_server" \
    $PY -m pytest -q -p no:cacheprovider tests/e2e/test_interop_unary.py \
        tests/e2e/test_streams_e2e.py tests/e2e/test_stale_stream_handles.py

echo "== end-to-end tests again, the product host and shim under ASan + UBSan"
cmake -S hosts/grpc_server -B build/grpc_server_asan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DPGF_SANITIZE=address,undefined -DPGF_LIBRARY="$PWD/build/asan/libpygrpc_ffi.so" \
      >build/grpc_server_asan.log 2>&1
cmake --build build/grpc_server_asan --target pygrpc_ffi_server pygrpc_ffi_bench_server -j2 \
    >>build/grpc_server_asan.log 2>&1 || { cat build/grpc_server_asan.log >&2; exit 1; }
PGF_E2E_ENGINES=cxx PGF_HOST_BINARY="$PWD/build/grpc_server_asan/pygrpc_ffi_server" \
PYTHONMALLOC=malloc ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    $PY -m pytest -q -p no:cacheprovider tests/e2e
