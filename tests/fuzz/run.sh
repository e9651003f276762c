#!/usr/bin/env bash
# Runs every libFuzzer harness of tests/fuzz for a bounded time under
# ASan + UBSan, starting from its committed seed corpus
# (tests/fuzz/corpus/<harness>/); fails on the first crash, leak, timeout
# or broken property.  New inputs go to build/fuzz/corpus/<harness>/, never
# into the repository; a crashing input is saved in build/fuzz/artifacts/.
#   bash tests/fuzz/run.sh [SECONDS_EACH] [HARNESS...]   (default 15, all)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-15}
shift || true
harnesses=("$@")
((${#harnesses[@]})) || harnesses=(fuzz_path fuzz_metadata fuzz_call fuzz_registry)

make -s -C tests/fuzz
mkdir -p build/fuzz/artifacts
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
for h in "${harnesses[@]}"; do
    seeds=tests/fuzz/corpus/$h
    work=build/fuzz/corpus/$h
    mkdir -p "$work" "$seeds"
    log=build/fuzz/$h.log
    echo "fuzz: $h for ${seconds}s"
    if ! build/fuzz/$h -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
            -max_len=4096 -print_final_stats=1 \
            -artifact_prefix=build/fuzz/artifacts/$h- "$work" "$seeds" >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "fuzz: $h FAILED (input saved in build/fuzz/artifacts/, log $log)" >&2
        exit 1
    fi
    grep -E "^stat::number_of_executed_units|^stat::new_units_added" "$log" \
        | tr '\n' ' ' | sed "s/^/fuzz: $h: /;s/ $/\n/"
done
echo "fuzz: every harness ran without a failure"
