"""Section 5: resident memory after 10k dispatched calls against after 1M,
and the shim's live-object counters once the handlers are unregistered.

    python -m bench.memory [--quick] [--out bench/results/memory.json]

Runs in a fresh process: the C loop of bench/native.c dispatches 16 B calls
(2 metadata entries) into the sync and the async echo of bench/dispatch.py;
VmRSS is read after each checkpoint.
"""

from __future__ import annotations

import argparse
import gc
import json
import pathlib
import sys
import time
from collections.abc import Sequence

import pygrpc_ffi as pgf
from bench import dispatch, loops

ROOT = pathlib.Path(__file__).resolve().parent.parent


def rss_kb() -> int:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def track(path: str, checkpoints: Sequence[int]) -> list[tuple[int, int]]:
    """(calls so far, RSS in KiB) at every checkpoint."""
    done, points = 0, []
    for target in checkpoints:
        loops.run(loops.DISPATCH, path, 16, target - done, 1, warmup=0)
        done = target
        gc.collect()
        points.append((done, rss_kb()))
        print(f"  {path:24} {done:>9} calls  RSS {points[-1][1]:>7} KiB", flush=True)
    return points


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x fewer calls")
    parser.add_argument("--out", type=pathlib.Path,
                        default=ROOT / "bench" / "results" / "memory.json")
    args = parser.parse_args(argv)
    scale = 10 if args.quick else 1
    service = pgf.default_service()
    service.register_method(dispatch.SERVICE, "Sync", dispatch.reply)
    service.register_method(dispatch.SERVICE, "Async", dispatch.async_reply)
    sync_points = [n // scale for n in (10_000, 100_000, 250_000, 500_000, 750_000, 1_000_000)]
    async_points = [n // scale for n in (10_000, 50_000, 100_000, 200_000)]
    start = rss_kb()
    sync = track(f"/{dispatch.SERVICE}/Sync", sync_points)
    asynchronous = track(f"/{dispatch.SERVICE}/Async", async_points)
    during = loops.live_counts()
    service.clear()
    gc.collect()
    after = loops.live_counts()
    print(f"  live objects with handlers registered: {during}", flush=True)
    print(f"  live objects after unregistering:     {after}", flush=True)
    report = {
        "config": {"payload_bytes": 16, "metadata_entries": 2,
                   "finished": time.strftime("%Y-%m-%d %H:%M:%S")},
        "rss_kb_start": start,
        "sync": sync,
        "async": asynchronous,
        "live_registered": during,
        "live_after": after,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
