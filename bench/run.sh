#!/usr/bin/env bash
# The benchmark suite, one command:  bash bench/run.sh [--quick]
# Sets up the project, installs what the bench needs (matplotlib, the peer
# pygrpc-native; perf via apt if missing), builds the bench's own cffi
# module into build/bench/, runs every section and writes bench/results/
# (RESULTS.md, PEERS.md, *.png, *.json).
# --quick: a short smoke run, written to build/bench/results-quick/.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=()
RESULTS=bench/results
if [[ ${1:-} == --quick ]]; then
    QUICK=(--quick)
    RESULTS=build/bench/results-quick
elif [[ $# -gt 0 ]]; then
    echo "usage: bash bench/run.sh [--quick]" >&2
    exit 2
fi

bash scripts/setup.sh
PY=$PWD/.venv/bin/python
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

$PY -c 'import matplotlib' 2>/dev/null || $PY -m pip install -q matplotlib
# The peer users would pick instead of us (bench/peers.py), pinned.
PEER_NATIVE=pygrpc-native==0.5.0
$PY -m pip show pygrpc-native 2>/dev/null | grep -q '^Version: 0.5.0$' \
    || $PY -m pip install -q "$PEER_NATIVE"
need=()
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v perf >/dev/null || need+=(linux-perf)
if ((${#need[@]})); then
    SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq || true
    # perf is optional (the profile says so when it is missing); h2load is not.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null || true
    command -v h2load >/dev/null || { echo "bench: h2load is missing" >&2; exit 1; }
fi

echo "== building the bench module (build/bench/)"
$PY bench/build_native.py >/dev/null

mkdir -p "$RESULTS"
started=$(date +%s)
echo "== machine";                 $PY -m bench.machine --out "$RESULTS/machine.json"
echo "== 1-2. dispatch overhead";  $PY -m bench.dispatch "${QUICK[@]}" --out "$RESULTS/dispatch.json"
echo "== 5. memory";               $PY -m bench.memory "${QUICK[@]}" --out "$RESULTS/memory.json"
echo "== profile";                 $PY -m bench.profile "${QUICK[@]}" --out "$RESULTS/profile.json"
echo "== 3-4. end to end";         $PY -m bench.e2e "${QUICK[@]}" --out "$RESULTS/e2e.json"
echo "== 6. streams";              $PY -m bench.streams "${QUICK[@]}" --out "$RESULTS/streams.json"
echo "== 7. every shape, every peer"; $PY -m bench.peers "${QUICK[@]}" --out "$RESULTS/peers.json"
echo "== report"
$PY -m bench.report --results "$RESULTS"
echo "bench: done in $(( $(date +%s) - started )) s; see $RESULTS/RESULTS.md"
