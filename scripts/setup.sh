#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine, then
# builds the C shim, the cffi module and the C++ hosts.  Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(build-essential cmake pkg-config libnghttp2-dev zlib1g-dev libgrpc++-dev
              libprotobuf-dev protobuf-compiler protobuf-compiler-grpc nghttp2-client
              python3-venv libjemalloc-dev clang libclang-rt-14-dev libssl-dev)
# The product host's HTTP/2 stack (hosts/grpc_server/h2/README.md): Debian's
# security-maintained libnghttp2, at least the release that carries the
# rapid-reset (CVE-2023-44487) and CONTINUATION-flood (CVE-2024-28182) fixes.
# Raise the pin when Debian ships a fix that matters to the host.
NGHTTP2_PIN=1.52.0-1+deb12u3

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
nghttp2_version() { dpkg-query -W -f='${Version}' libnghttp2-dev; }
if ! dpkg --compare-versions "$(nghttp2_version)" ge "$NGHTTP2_PIN"; then
    echo "setup: libnghttp2-dev $(nghttp2_version) is older than $NGHTTP2_PIN: upgrading"
    SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --only-upgrade \
        libnghttp2-dev libnghttp2-14 >/dev/null
    dpkg --compare-versions "$(nghttp2_version)" ge "$NGHTTP2_PIN" \
        || { echo "setup: libnghttp2-dev $NGHTTP2_PIN or later is needed" >&2; exit 1; }
fi

# The interpreter must come with a shared libpython: hosts load it at run time.
PYTHON_BIN=${PYTHON_BIN:-python3}
if [[ ! -x .venv/bin/python ]]; then
    has_libpython() {
        "$PYTHON_BIN" -c 'import os, sys, sysconfig as s
lib = os.path.join(s.get_config_var("LIBDIR") or "", s.get_config_var("INSTSONAME") or "")
sys.exit(0 if s.get_config_var("Py_ENABLE_SHARED") and os.path.exists(lib) else 1)'
    }
    if ! has_libpython && [[ $("$PYTHON_BIN" -c 'import sys; print(sys.prefix)') == /usr ]]; then
        SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libpython3-dev >/dev/null || true
    fi
    has_libpython \
        || { echo "setup: $PYTHON_BIN has no shared libpython; set PYTHON_BIN" >&2; exit 1; }
    "$PYTHON_BIN" -m venv .venv
fi
PY=.venv/bin/python
log=build/setup.log
mkdir -p build
: >"$log"
stamp=.venv/.deps-installed
# The pip list below is part of this script: a change to it reinstalls too.
if [[ ! -f $stamp || pyproject.toml -nt $stamp || scripts/setup.sh -nt $stamp ]]; then
    echo "setup: installing Python packages into .venv"
    { $PY -m pip install -q --upgrade pip setuptools wheel &&
      $PY -m pip install -q "cffi>=1.17" "grpcio>=1.80" "grpcio-tools>=1.80" \
        "grpcio-status>=1.80" "grpcio-health-checking>=1.80" "grpcio-reflection>=1.80" \
        "protobuf>=5" "hypothesis>=6" "pytest>=8" "pytest-timeout" "mypy>=1.10" "ruff>=0.5" \
        "types-protobuf" "pyyaml" "h2>=4" "build" "nox" "auditwheel" "prometheus_client>=0.17" \
        "opentelemetry-api>=1.20" "opentelemetry-sdk>=1.20" "opentelemetry-instrumentation-grpc" \
        "grpc-interceptor>=0.15"; } >>"$log" 2>&1 \
        || { cat "$log" >&2; echo "setup: pip install failed" >&2; exit 1; }
    touch "$stamp"
fi

# The shim (pygrpc_ffi/libpygrpc_ffi.so) and the cffi module, built in one step
# by setup.py's build_ext, as `pip install .` does; rebuilt when a source changes.
native=$(ls pygrpc_ffi/_native*.so 2>/dev/null | head -1 || true)
stale=0
if [[ -z $native || ! -f pygrpc_ffi/libpygrpc_ffi.so ]]; then
    stale=1
else
    for src in csrc/*.c csrc/*.h pygrpc_ffi/_binding/*.c pygrpc_ffi/_binding/*.h \
               pygrpc_ffi/_binding/build.py setup.py pyproject.toml; do
        if [[ $src -nt $native ]]; then stale=1; fi
    done
fi
if ((stale)); then
    $PY -m pip install --no-build-isolation --no-deps -e . >>"$log" 2>&1 \
        || { cat "$log" >&2; echo "setup: building the shim and the cffi module failed" >&2; exit 1; }
fi
# Stubs for the test and example protos.
$PY -m grpc_tools.protoc -Itests/protos --python_out=tests/protos \
    --grpc_python_out=tests/protos --pyi_out=tests/protos tests/protos/*.proto
if [[ -f hosts/grpc_server/build.sh ]]; then
    bash hosts/grpc_server/build.sh >>"$log" 2>&1 \
        || { cat "$log" >&2; echo "setup: building the C++ host failed" >&2; exit 1; }
fi
echo "setup: ready (.venv, pygrpc_ffi/libpygrpc_ffi.so, build/)"
