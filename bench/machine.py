"""The machine the benchmarks ran on, for the caption of every figure.

    python -m bench.machine [--out bench/results/machine.json]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import pathlib
import platform
import subprocess
import sys
import time
from collections.abc import Sequence

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _run(*command: str) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (out.stdout or out.stderr).strip()


def _cpu_model() -> str:
    model = hypervisor = ""
    for line in _run("lscpu").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name":
            model = value.strip()
        elif key.strip() == "Hypervisor vendor":
            hypervisor = value.strip()
    if not model:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model} ({hypervisor} guest)" if hypervisor else model


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def describe() -> dict[str, str]:
    mem_kb = 0
    for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    h2load = _run("h2load", "--version").split()
    return {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "grpcio": _version("grpcio"),
        "grpc_cpp": _run("pkg-config", "--modversion", "grpc++") or "unknown",
        "cffi": _version("cffi"),
        "h2load": h2load[-1] if h2load else "not installed",
        "loadavg_at_start": " ".join(pathlib.Path("/proc/loadavg").read_text().split()[:3]),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def caption(machine: dict[str, str]) -> str:
    """One line that says where a figure comes from."""
    return (f"{machine['cpu']}, {machine['cores']} cores, {machine['memory']}, "
            f"{machine['kernel']}, Python {machine['python']}, grpcio {machine['grpcio']}, "
            f"gRPC C++ {machine['grpc_cpp']}; load avg {machine['loadavg_at_start']} "
            f"at start; {machine['date']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path,
                        default=ROOT / "bench" / "results" / "machine.json")
    args = parser.parse_args(argv)
    machine = describe()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(machine, indent=1) + "\n")
    print(caption(machine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
