"""End-to-end cost of the shim's call metrics: the same servers with
counting off (``PGF_METRICS=0``) and on (the default; for the CLI also
``--metrics-port``, so the exporter runs and is scraped once per round).

    python -m bench.metrics_cost [--quick] [--out bench/results/metrics_cost.json]

h2load, 4 connections x 16 streams, 16 B echo; rounds interleaved so that
the machine's noise spreads over every server; medians reported, with the
on/off ratio per pair (target: on costs under 5 %).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict

from bench.e2e import BENCH_HOST, PY, ROOT, Spec, bench_servers, body_file, free_port


def specs(workers: int, metrics_port: int) -> list[Spec]:
    cli = [PY, "-m", "pygrpc_ffi", "serve", "bench.handlers", "--listen", "127.0.0.1:{port}",
           "--workers", str(workers)]
    native = [str(BENCH_HOST), "--listen", "127.0.0.1:{port}", "--workers", str(workers),
              "--native-echo", "bench.Echo"]
    return [
        Spec("py_off", "C++ host + Python echo, metrics off", ["env", "PGF_METRICS=0", *cli]),
        Spec("py_on", "C++ host + Python echo, metrics on + /metrics",
             [*cli, "--metrics-port", str(metrics_port)]),
        Spec("c_off", "C++ host + native C echo, metrics off", ["env", "PGF_METRICS=0", *native]),
        Spec("c_on", "C++ host + native C echo, metrics on", native),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short rounds")
    parser.add_argument("--rounds", type=int, default=0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--out", type=pathlib.Path,
                        default=ROOT / "bench" / "results" / "metrics_cost.json")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 5)
    seconds, warmup = (2.0, 0.5) if args.quick else (4.0, 1.0)
    metrics_port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        body = body_file(pathlib.Path(tmp))
        print("metrics off/on: 4 connections x 16 streams", flush=True)
        results = bench_servers(specs(args.workers, metrics_port), rounds, seconds, warmup,
                                body, False, (4, 16))
    try:  # the exporter answered while it served (it is stopped by now: best effort)
        urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=1)
    except OSError:
        pass
    medians = {r.key: statistics.median(t.qps for t in r.throughput) if r.throughput else 0.0
               for r in results}
    ratios = {}
    for pair in ("py", "c"):
        off, on = medians.get(f"{pair}_off", 0.0), medians.get(f"{pair}_on", 0.0)
        if off:
            ratios[pair] = on / off
            print(f"  {pair}: off {off:9.0f} req/s  on {on:9.0f} req/s  on/off {on / off:.3f}",
                  flush=True)
    report = {"config": {"rounds": rounds, "seconds": seconds, "workers": args.workers,
                         "finished": time.strftime("%Y-%m-%d %H:%M:%S")},
              "servers": [asdict(r) for r in results], "medians": medians, "on_off": ratios}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
