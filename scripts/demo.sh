#!/usr/bin/env bash
# The main job: serve the example handlers through the C ABI in the C++
# host, and show a real grpcio client getting answers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

out=$(mktemp)
.venv/bin/pygrpc-ffi serve examples.greeter --listen 127.0.0.1:0 >"$out" &
server=$!
trap 'kill -TERM $server 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 100); do
    grep -q '^listening on ' "$out" && break
    kill -0 $server 2>/dev/null || { echo "demo: the server did not start" >&2; exit 1; }
    sleep 0.1
done
address=$(sed -n 's/^listening on //p' "$out" | head -1)
echo "demo: C++ host (libnghttp2) with Python handlers on $address"
.venv/bin/python examples/demo_client.py "$address"
kill -TERM $server
wait $server
echo "demo: server stopped cleanly"
trap - EXIT
rm -f "$out"
