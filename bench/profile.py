"""Where the time of a dispatched call goes, for the report's explanation.

    python -m bench.profile [--quick] [--out bench/results/profile.json]

1. Steps: the Python runtime's per-call steps timed one by one (timeit, on
   a real pgf_call), beside the cost of one cffi ``lib`` call (each releases
   and retakes the GIL).
2. perf: ``perf record`` of the C loop dispatching into the sync Python
   handler, by shared object and by symbol (skipped if perf is missing).
3. Threads: context switches and user/system CPU per call with 1, 2 and 4
   dispatching threads: the cost of handing the GIL between them.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable, Sequence
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _per_call_ns(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e9


def steps(number: int) -> dict[str, float]:
    """ns per step of the sync path, on a call that is never finished."""
    from pygrpc_ffi._native import ffi, lib

    from bench import dispatch
    from pygrpc_ffi import _runtime as rt
    from pygrpc_ffi._runtime import answers as _answers
    from pygrpc_ffi._runtime import requests as _requests

    path = f"/{dispatch.SERVICE}/Sync".encode()
    call = lib.pgf_call_new(path, len(path))
    payload = ffi.new("uint8_t[]", 16)
    lib.pgf_call_set_request(call, payload, 16)
    lib.pgf_call_add_request_metadata(call, b"x-bench-user", 12, b"alice", 5)
    answer = dispatch.reply.__globals__["_REPLIES"][16]
    request = _requests.make_request(call)
    found: dict[str, float] = {}

    def measure(name: str, fn: Callable[[], object]) -> None:
        try:
            found[name] = _per_call_ns(fn, number)
        except Exception as exc:
            print(f"  step {name} skipped: {exc}", file=sys.stderr)

    def make_release() -> None:
        request = _requests.make_request(call)
        # A request that nothing kept: its lazy fields are never read.
        _requests.release_request(request, outlives=False)

    def respond() -> None:
        _answers.set_response(call, answer)
        lib.pgf_call_reset_response(call)  # runs the buffer's release callback

    measure("one cffi lib call from Python (GIL out and in)",
            lambda: lib.pgf_call_is_finished(call))
    measure("make_request (GrpcRequest from the call)", lambda: _requests.make_request(call))
    measure("make_request + release_request", make_release)
    measure("handler body (dict lookup)", lambda: dispatch.reply(request))
    measure("set_response, then reset (release callback nested in a lib call)", respond)
    measure("handles.add + handles.pop", lambda: rt.handles.pop(rt.handles.add(answer)))
    measure("ffi.from_buffer(bytes)", lambda: ffi.from_buffer(answer))
    lib.pgf_call_unref(call)
    return found


def _child(label: str, seconds: float) -> None:
    """Runs one dispatch configuration for about `seconds` (perf target)."""
    from bench import dispatch, loops

    dispatch.register()
    kind, path = dispatch.PATHS[label]
    calls = loops.calibrate(kind, path, 16, seconds)
    loops.run(kind, path, 16, calls)


def perf_profile(seconds: float) -> dict[str, Any]:
    if shutil.which("perf") is None:
        return {"error": "perf is not installed"}
    with tempfile.TemporaryDirectory() as tmp:
        data = str(pathlib.Path(tmp) / "perf.data")
        record = subprocess.run(
            ["perf", "record", "-q", "-F", "2999", "-o", data, "--", sys.executable, "-m",
             "bench.profile", "--child", "sync", "--seconds", str(seconds)],
            cwd=ROOT, capture_output=True, text=True)
        if record.returncode != 0:
            return {"error": f"perf record failed: {record.stderr.strip()[-300:]}"}
        tables = {}
        for key in ("dso", "dso,sym"):
            report = subprocess.run(
                ["perf", "report", "-i", data, "--no-children", "-g", "none", "--stdio",
                 "--sort", key, "--percent-limit", "0.7"],
                capture_output=True, text=True)
            rows = []
            for line in report.stdout.splitlines():
                parts = line.split()
                if line.startswith("#") or not parts or not parts[0].endswith("%"):
                    continue
                rows.append([parts[0], " ".join(p for p in parts[1:] if p != "[.]")])
            tables[key] = rows[:25]
    return {"by_dso": tables["dso"], "by_symbol": tables["dso,sym"]}


def context_switches(seconds: float) -> list[dict[str, float]]:
    """Voluntary + involuntary context switches per call (whole process)."""
    from bench import dispatch, loops

    dispatch.register()
    kind, path = dispatch.PATHS["sync"]
    rows = []
    for threads in (1, 2, 4):
        calls = loops.calibrate(kind, path, 16, seconds, threads)
        before = resource.getrusage(resource.RUSAGE_SELF)
        run = loops.run(kind, path, 16, calls, threads)
        after = resource.getrusage(resource.RUSAGE_SELF)
        switches = (after.ru_nvcsw - before.ru_nvcsw) + (after.ru_nivcsw - before.ru_nivcsw)
        rows.append({"threads": threads, "ns_per_call": run.ns_per_call,
                     "switches_per_call": switches / run.calls,
                     "user_ns_per_call": (after.ru_utime - before.ru_utime) * 1e9 / run.calls,
                     "sys_ns_per_call": (after.ru_stime - before.ru_stime) * 1e9 / run.calls})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=2.0, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=pathlib.Path,
                        default=ROOT / "bench" / "results" / "profile.json")
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.seconds)
        return 0
    found = {
        "steps_ns": steps(20_000 if args.quick else 200_000),
        "perf": perf_profile(0.5 if args.quick else 3.0),
        "threads": context_switches(0.1 if args.quick else 0.5),
    }
    for name, ns in found["steps_ns"].items():
        print(f"  {name:50} {ns:7.0f} ns", flush=True)
    for row in found["threads"]:
        print(f"  {row['threads']} threads: {row['ns_per_call']:7.0f} ns/call, "
              f"{row['switches_per_call']:.2f} context switches/call, CPU user "
              f"{row['user_ns_per_call']:.0f} + sys {row['sys_ns_per_call']:.0f} ns/call",
              flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(found, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
