"""Writes bench/results/RESULTS.md and the PNG plots from the JSON results.

    python -m bench.report [--results bench/results]

Every figure carries the machine's description (bench/machine.py), in the
image and under it.  Ratios are medians of ratios taken within one round
(or one repetition), so that both sides of a ratio saw the same noise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import statistics
import sys
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from bench.machine import caption

ROOT = pathlib.Path(__file__).resolve().parent.parent
SIZE_NAMES = {16: "16 B", 65536: "64 KiB", 1048576: "1 MiB", 16777216: "16 MiB"}
LABELS = {
    "floor": "floor: bare extern \"Python\" callback",
    "c_shim": "C handler (shim only, no Python)",
    "c_callback": "C handler + no-op Python callback",
    "sync": "Python handler (def)",
    "async": "Python handler (async def)",
}


def load(results: pathlib.Path, name: str) -> Any:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def median_ratio(top: Sequence[float], bottom: Sequence[float]) -> float:
    pairs = [a / b for a, b in zip(top, bottom, strict=False) if b]
    return statistics.median(pairs) if pairs else math.nan


def fmt_ns(ns: float) -> str:
    return f"{ns / 1000:.1f} µs" if ns >= 10_000 else f"{ns:.0f} ns"


class Report:
    def __init__(self, results: pathlib.Path, machine: dict[str, str]) -> None:
        self.results = results
        self.caption = caption(machine)
        self.lines: list[str] = []
        self.targets: list[tuple[str, str, str, str]] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def target(self, name: str, goal: str, measured: str, met: bool | None) -> None:
        verdict = "n/a" if met is None else ("met" if met else "**missed**")
        self.targets.append((name, goal, measured, verdict))

    def figure(self, fig: Figure, name: str, alt: str) -> None:
        fig.text(0.01, 0.005, self.caption, fontsize=6, color="0.35", wrap=True)
        fig.tight_layout(rect=(0, 0.05, 1, 1))
        fig.savefig(self.results / name, dpi=110)
        plt.close(fig)
        self.add(f"![{alt}]({name})", "", f"<sub>Machine: {self.caption}</sub>", "")


def rows_by(dispatch: dict[str, Any]) -> dict[tuple[str, int, int], dict[str, Any]]:
    return {(r["label"], r["payload"], r["threads"]): r for r in dispatch["rows"]}


def section_dispatch(rep: Report, dispatch: dict[str, Any] | None) -> None:
    rep.add("## 1. Dispatch overhead", "")
    if dispatch is None:
        rep.add("Not run.", "")
        return
    rows = rows_by(dispatch)
    floor = rows[("floor", 16, 1)]
    rep.add("A C thread creates a call (16 B payload, 2 metadata entries), dispatches it "
            "through the registry, checks the answer and frees the call, in a loop. "
            f"Median of {dispatch['config']['reps']} runs of ~"
            f"{dispatch['config']['seconds_per_run']} s each.", "",
            "| path (1 thread, 16 B) | ns per call | x floor |", "|---|---:|---:|")
    for label in ("floor", "c_shim", "c_callback", "sync", "async"):
        row = rows.get((label, 16, 1))
        if row:
            ratio = median_ratio(row["samples_ns"], floor["samples_ns"])
            rep.add(f"| {LABELS[label]} | {fmt_ns(row['median_ns'])} | {ratio:.1f}x |")
    rep.add("")
    sync = rows.get(("sync", 16, 1))
    if sync:
        ratio = median_ratio(sync["samples_ns"], floor["samples_ns"])
        rep.target("1. sync Python dispatch vs floor", "≤ 4x", f"{ratio:.1f}x "
                   f"({fmt_ns(sync['median_ns'])} vs {fmt_ns(floor['median_ns'])})", ratio <= 4)
        rep.target("perf: sync Python dispatch per call", "≤ 1 µs", fmt_ns(sync["median_ns"]),
                   sync["median_ns"] <= 1000)
        # The same goal on this machine's speed: 1 µs was set where the bare
        # callback floor took 0.15 µs.
        rep.target("perf: sync Python dispatch per call, scaled by the floor (1 µs at a "
                   "0.15 µs floor)", "≤ 6.7x floor", f"{ratio:.1f}x", ratio <= 1.0 / 0.15)
    depth = dispatch["config"].get("pipeline_depth", 64)
    piped = {label: rows.get((label, 16, 1)) for label in ("sync_pipelined", "async_pipelined")}
    if piped["async_pipelined"]:
        rep.add(f"Pipelined: one C thread dispatches with `pgf_dispatch_async`, as the C++ "
                f"host's threads do, keeping up to {depth} calls in flight (it refills half "
                "the window at a time); wall time per call.", "",
                "| handler | ns per call, pipelined | ns per call, one at a time |",
                "|---|---:|---:|")
        for label, serial in (("sync_pipelined", "sync"), ("async_pipelined", "async")):
            row, one = piped[label], rows.get((serial, 16, 1))
            if row:
                rep.add(f"| {LABELS[serial]} | {fmt_ns(row['median_ns'])} | "
                        f"{fmt_ns(one['median_ns']) if one else '-'} |")
        rep.add("")
        row = piped["async_pipelined"]
        rep.target(f"perf: async dispatch per call, one dispatching thread ({depth} in flight)",
                   "< 10 µs", fmt_ns(row["median_ns"]), row["median_ns"] < 10_000)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    labels = [lb for lb in LABELS if (lb, 16, 1) in rows]
    values = [rows[(lb, 16, 1)]["median_ns"] for lb in labels]
    ax.barh([LABELS[lb] for lb in labels], values, color="tab:blue")
    ax.set_xscale("log")
    ax.set_xlabel("ns per unary call (log scale), 1 dispatching thread")
    ax.axvline(4 * floor["median_ns"], color="tab:red", ls="--", label="target: 4x floor")
    for y, v in enumerate(values):
        ax.text(v, y, f" {fmt_ns(v)}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title("Dispatch overhead: C loop → registry → handler → back")
    rep.figure(fig, "dispatch_overhead.png", "dispatch overhead")

    rep.add("### Sync against async handlers, 1, 2 and 4 dispatching threads", "",
            "| handler | threads | ns per call (wall / calls) | calls/s (all threads) |",
            "|---|---:|---:|---:|")
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for label in ("floor", "sync", "async"):
        found = [(t, rows[(label, 16, t)]) for t in (1, 2, 4) if (label, 16, t) in rows]
        for t, row in found:
            rep.add(f"| {LABELS[label]} | {t} | {fmt_ns(row['median_ns'])} | "
                    f"{1e9 / row['median_ns']:,.0f} |")
        ax.plot([t for t, _ in found], [1e9 / r["median_ns"] for _, r in found], marker="o",
                label=LABELS[label])
    rep.add("")
    ax.set_yscale("log")
    ax.set_xticks([1, 2, 4])
    ax.set_xlabel("dispatching C threads")
    ax.set_ylabel("calls per second (log)")
    ax.legend(fontsize=8)
    ax.set_title("Dispatch throughput by thread count (16 B)")
    rep.figure(fig, "dispatch_threads.png", "dispatch by threads")


def section_payload(rep: Report, dispatch: dict[str, Any] | None) -> None:
    rep.add("## 2. Zero copy: payload size", "")
    if dispatch is None:
        rep.add("Not run.", "")
        return
    rows = rows_by(dispatch)
    rep.add("The same loop at larger payloads.  The Python handler answers with a prebuilt "
            "bytes object of the request's size; the C handler answers with the request's "
            "own bytes.", "", "| payload | C handler | Python handler | Python x its 16 B time |",
            "|---|---:|---:|---:|")
    sizes = sorted({r["payload"] for r in dispatch["rows"] if r["group"] == "payload"} | {16})
    base = rows.get(("sync", 16, 1))
    for size in sizes:
        c_row, py_row = rows.get(("c_shim", size, 1)), rows.get(("sync", size, 1))
        ratio = median_ratio(py_row["samples_ns"], base["samples_ns"]) if py_row and base \
            else math.nan
        rep.add(f"| {SIZE_NAMES.get(size, size)} | "
                f"{fmt_ns(c_row['median_ns']) if c_row else '-'} | "
                f"{fmt_ns(py_row['median_ns']) if py_row else '-'} | {ratio:.2f}x |")
    rep.add("")
    big = rows.get(("sync", 16 * 1024 * 1024, 1))
    if big and base:
        ratio = median_ratio(big["samples_ns"], base["samples_ns"])
        rep.target("2. 16 MiB vs 16 B dispatch", "≤ 1.2x", f"{ratio:.2f}x", ratio <= 1.2)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for label in ("c_shim", "sync"):
        found = [(s, rows[(label, s, 1)]["median_ns"]) for s in sizes if (label, s, 1) in rows]
        ax.plot([s for s, _ in found], [v for _, v in found], marker="o", label=LABELS[label])
    if base:
        ax.axhline(1.2 * base["median_ns"], color="tab:red", ls="--",
                   label="target: 1.2x the 16 B Python time")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sizes, [SIZE_NAMES.get(s, str(s)) for s in sizes])
    ax.set_xlabel("request and response payload")
    ax.set_ylabel("ns per call (log)")
    ax.legend(fontsize=8)
    ax.set_title("Zero copy: time per call does not grow with the payload")
    rep.figure(fig, "dispatch_payload.png", "dispatch by payload size")


def _median_load(loads: list[dict[str, Any]], key: str) -> float:
    return statistics.median(x[key] for x in loads) if loads else math.nan


def _grouped(rows: list[list[str]]) -> str:
    """perf's per-thread shares, with numbered threads of one pool summed."""
    total: dict[str, float] = {}
    for pct, name in rows:
        key = name.rstrip("0123456789").rstrip("-") if name.startswith("pgf-") else name
        total[key] = total.get(key, 0.0) + float(pct.rstrip("%"))
    return ", ".join(f"{v:.1f}% {k}" for k, v in sorted(total.items(), key=lambda kv: -kv[1]))


def section_e2e(rep: Report, e2e: dict[str, Any] | None) -> None:
    rep.add("## 3. End to end over loopback (h2load)", "")
    if e2e is None:
        rep.add("Not run.", "")
        return
    cfg = e2e["config"]
    rep.add(f"h2load sends the same gRPC-framed {cfg['payload_bytes']} B echo request to "
            f"`{cfg['path']}` on every server: 4 connections x 16 streams for throughput, "
            f"1 x 1 for latency; {cfg['rounds']} interleaved rounds of {cfg['seconds']} s "
            f"(after {cfg['warmup']} s warm-up), medians.  Latency percentiles come from "
            "h2load's per-request log.", "",
            "| server | QPS (4x16) | p50 / p99 at 4x16 | p50 / p99 at 1x1 | RSS start → end |",
            "|---|---:|---:|---:|---:|")
    servers = {s["key"]: s for s in e2e["servers"]}
    for s in e2e["servers"]:
        if s["error"]:
            rep.add(f"| ({s['key']}) {s['label']} | not measured: {s['error']} | | | |")
            continue
        tp, lat = s["throughput"], s["latency"]
        rep.add(f"| ({s['key']}) {s['label']} | {_median_load(tp, 'qps'):,.0f} | "
                f"{_median_load(tp, 'p50_us'):.0f} / {_median_load(tp, 'p99_us'):.0f} µs | "
                f"{_median_load(lat, 'p50_us'):.0f} / {_median_load(lat, 'p99_us'):.0f} µs | "
                f"{s['rss_kb_start'] / 1024:.0f} → {s['rss_kb_end'] / 1024:.0f} MiB |")
    rep.add("")

    def ratio(top: str, bottom: str) -> float:
        a, b = servers.get(top), servers.get(bottom)
        if not a or not b or a["error"] or b["error"]:
            return math.nan
        return median_ratio([x["qps"] for x in a["throughput"]],
                            [x["qps"] for x in b["throughput"]])

    ac, ab = ratio("a", "c"), ratio("a", "b")
    rep.target("3. (a) C++ host + Python / (c) grpcio sync", "≥ 6", f"{ac:.1f}",
               None if math.isnan(ac) else ac >= 6)
    rep.target("3. (a) C++ host + Python / (b) native C echo", "≥ 0.5", f"{ab:.2f}",
               None if math.isnan(ab) else ab >= 0.5)
    # Issue 13: against grpcio's best server (sync or aio, per round) and
    # the host's native ceiling (the unary C echo since it exists).
    best = math.nan
    a_s, c_s, d_s = servers.get("a"), servers.get("c"), servers.get("d")
    if a_s and c_s and d_s and not (a_s["error"] or c_s["error"] or d_s["error"]):
        best = median_ratio([x["qps"] for x in a_s["throughput"]],
                            [max(c["qps"], d["qps"]) for c, d in
                             zip(c_s["throughput"], d_s["throughput"], strict=False)])
    rep.target("13. (a) C++ host + Python / grpcio's best (c or d)", "≥ 6", f"{best:.1f}",
               None if math.isnan(best) else best >= 6)
    rep.target("13. (a) C++ host + Python / (b) native C echo", "≥ 0.9", f"{ab:.2f}",
               None if math.isnan(ab) else ab >= 0.9)
    async_sync = ratio("a_async", "a")
    rep.target("13. (a_async) async def echo / (a) def echo, same host", "≥ 0.8",
               f"{async_sync:.2f}", None if math.isnan(async_sync) else async_sync >= 0.8)
    others = [k for k in ("d", "e") if not math.isnan(ratio("a", k))]
    rep.add(f"Ratios within each round, medians: (a)/(c) = {ac:.1f}, (a)/(b) = {ab:.2f}"
            + "".join(f", (a)/({k}) = {ratio('a', k):.1f}" for k in others) + ".", "")

    profiled = [s for s in e2e["servers"] if s.get("perf")]
    if profiled:
        rep.add("Where the CPU goes under 4x16 load (`perf record -a`, whole machine, so h2load "
                "and anything else running are in it; pgf-worker threads summed):", "")
        for s in profiled:
            perf = s["perf"]
            if "error" in perf:
                rep.add(f"- ({s['key']}): {perf['error']}")
                continue
            rep.add(f"- ({s['key']}) by thread: {_grouped(perf['by_thread'])}",
                    f"- ({s['key']}) by object: "
                    + ", ".join(f"{pct} {name}" for pct, name in perf["by_dso"][:8]))
        rep.add("")

    ok = [s for s in e2e["servers"] if not s["error"]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    names = [f"({s['key']})" for s in ok]
    qps = [_median_load(s["throughput"], "qps") for s in ok]
    lo = [q - min(x["qps"] for x in s["throughput"]) for q, s in zip(qps, ok, strict=True)]
    hi = [max(x["qps"] for x in s["throughput"]) - q for q, s in zip(qps, ok, strict=True)]
    ax1.bar(names, qps, yerr=[lo, hi], capsize=3, color="tab:blue")
    ax1.set_ylabel("requests/s (4 conn x 16 streams)")
    ax1.set_title("Throughput (median, min-max)")
    p50 = [_median_load(s["latency"], "p50_us") for s in ok]
    p99 = [_median_load(s["latency"], "p99_us") for s in ok]
    xs = range(len(ok))
    ax2.bar([x - 0.2 for x in xs], p50, width=0.4, label="p50")
    ax2.bar([x + 0.2 for x in xs], p99, width=0.4, label="p99")
    ax2.set_xticks(list(xs), names)
    ax2.set_ylabel("µs (1 conn x 1 stream)")
    ax2.set_title("Latency")
    ax2.legend(fontsize=8)
    fig.suptitle("; ".join(f"({s['key']}) {s['label']}" for s in ok), fontsize=7)
    rep.figure(fig, "e2e.png", "end-to-end throughput and latency")


def section_processes(rep: Report, e2e: dict[str, Any] | None) -> None:
    rep.add("## 4. Past one core: --processes N", "")
    if e2e is None:
        rep.add("Not run.", "")
        return
    procs = {s["key"]: s for s in e2e["processes"]}
    counts = sorted(int(k[1:]) for k in procs if k[1:].isdigit())
    rep.add("`pygrpc-ffi serve bench.handlers --processes N` on one fixed port "
            "(SO_REUSEPORT), 16 connections x 4 streams so the kernel spreads connections "
            "over the processes; the 16 B echo, and `/bench.Echo/Work` (~0.2 ms of pure "
            "Python per call, which holds the GIL).  Gains are per-round medians against "
            f"--processes 1; the machine has {os.cpu_count()} cores.", "",
            "| handler | " + " | ".join(f"--processes {n}" for n in counts) + " |",
            "|---|" + "---:|" * len(counts))
    bars: list[tuple[str, list[float]]] = []
    for suffix, name in (("", "echo"), ("_work", "Work (~0.2 ms Python)")):
        runs = [procs.get(f"p{n}{suffix}") for n in counts]
        one = runs[0] if runs else None
        if not one or one["error"]:
            continue
        cells, values = [], []
        for n, run in zip(counts, runs, strict=True):
            if not run or run["error"]:
                cells.append("not measured")
                values.append(math.nan)
                continue
            qps = _median_load(run["throughput"], "qps")
            values.append(qps)
            if n == 1:
                cells.append(f"{qps:,.0f}")
                continue
            gain = median_ratio([x["qps"] for x in run["throughput"]],
                                [x["qps"] for x in one["throughput"]])
            cells.append(f"{qps:,.0f} ({gain:.2f}x)")
            if n == 2 and suffix == "_work":
                # Issue 13: keep the gain measured for a CPU-bound handler.
                rep.target(f"13. --processes 2 / 1, {name}", "≥ 1.71x", f"{gain:.2f}x",
                           gain >= 1.71)
            else:
                rep.target(f"4. --processes {n} / 1, {name}", "(no target)", f"{gain:.2f}x",
                           None)
        bars.append((name, values))
        rep.add(f"| {name} | " + " | ".join(cells) + " |")
    rep.add("")
    if bars:
        fig, axes = plt.subplots(1, len(bars), figsize=(4 * len(bars), 3.4))
        for ax, (name, values) in zip(np.atleast_1d(axes), bars, strict=True):
            ax.plot(counts, values, marker="o")
            ax.set_xticks(counts)
            ax.set_xlabel("--processes")
            ax.set_ylabel("requests/s (16 conn x 4 streams)")
            ax.set_title(name)
        fig.suptitle("C++ host + Python handler, N processes on one port")
        rep.figure(fig, "processes.png", "processes")


def section_memory(rep: Report, memory: dict[str, Any] | None) -> None:
    rep.add("## 5. Memory", "")
    if memory is None:
        rep.add("Not run.", "")
        return
    sync, asyn = memory["sync"], memory["async"]
    rep.add("VmRSS of one process whose C loop dispatches 16 B calls (2 metadata entries) "
            "into the Python echo handlers, after each checkpoint (gc.collect() first); then "
            "`pgf_live_count` of every kind once the handlers are unregistered.", "",
            "| handler | calls | RSS |", "|---|---:|---:|")
    for name, points in (("sync", sync), ("async", asyn)):
        for calls, kb in points:
            rep.add(f"| {name} | {calls:,} | {kb / 1024:.2f} MiB |")
    rep.add("")
    growth = (sync[-1][1] - sync[0][1]) / 1024
    after = memory["live_after"]
    rep.add(f"Live objects with the handlers registered: `{memory['live_registered']}`; "
            f"after unregistering: `{after}`.", "")
    rep.target(f"5. RSS after {sync[0][0]:,} → {sync[-1][0]:,} sync calls", "flat",
               f"{growth:+.2f} MiB", abs(growth) < 1.0)
    agrowth = (asyn[-1][1] - asyn[0][1]) / 1024
    rep.target(f"5. RSS after {asyn[0][0]:,} → {asyn[-1][0]:,} async calls", "flat",
               f"{agrowth:+.2f} MiB", abs(agrowth) < 1.0)
    rep.target("5. live counters at the end", "all 0",
               ", ".join(f"{k} {v}" for k, v in after.items()), not any(after.values()))
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for name, points in (("sync", sync), ("async", asyn)):
        ax.plot([c for c, _ in points], [kb / 1024 for _, kb in points], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("calls dispatched (log)")
    ax.set_ylabel("VmRSS (MiB)")
    ax.set_ylim(0, 1.25 * max(kb / 1024 for _, kb in sync + asyn))
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Resident memory against calls dispatched")
    rep.figure(fig, "memory.png", "memory")


def section_streams(rep: Report, streams: dict[str, Any] | None,
                    dispatch: dict[str, Any] | None) -> None:
    rep.add("## 6. Streams", "")
    if streams is None:
        rep.add("Not run.", "")
        return
    cfg = streams["config"]
    rep.add(f"bench/stream_client.cc (gRPC C++ callback API) opens {cfg['streams']} streams "
            f"of {cfg['payload']} B messages for {cfg['seconds']} s; messages received per "
            f"second, median of {cfg['rounds']} interleaved rounds.  bidi: the client writes "
            "back to back, the server echoes; server: one request, the server streams.", "",
            "| server | bidi msg/s | server-stream msg/s | note |", "|---|---:|---:|---|")
    for server in streams["servers"]:
        med = server["medians"]
        note = server.get("error", "")
        cells = [f"{med[m]:,.0f}" if med.get(m) else "-" for m in ("bidi", "server")]
        rep.add(f"| ({server['key']}) {server['label']} | {cells[0]} | {cells[1]} | {note} |")
    rep.add("")
    ratios = dict(streams.get("ratios", {}))
    # Runs before the native server stream existed named the bidi ceiling so.
    if "bidi: host+Python / native bidi echo" in ratios:
        ratios.setdefault("bidi: host+Python / native C",
                          ratios.pop("bidi: host+Python / native bidi echo"))
    for name, value in ratios.items():
        rep.add(f"- {name}: {value:.2f}x")
    rep.add("")
    goals = {"bidi: host+Python / best grpcio": ">= 10x",
             "server: host+Python / best grpcio": ">= 10x",
             "bidi: host+Python / native C": ">= 0.5x",
             "server: host+Python / native C": ">= 0.5x"}
    for name, goal in goals.items():
        if name in ratios:
            need = float(goal.split()[1].rstrip("x"))
            rep.targets.append((f"streams, {name}", goal, f"{ratios[name]:.2f}x",
                                "met" if ratios[name] >= need else "missed"))
    # What the transport allows: the host's C handlers against grpcio's best.
    # A Python stream can at most reach these; where they are under 10x,
    # the 10x targets above are out of reach by construction.
    for mode in ("bidi", "server"):
        name = f"{mode}: native C / best grpcio"
        if name in ratios:
            rep.targets.append((f"streams, {name} (the ceiling)", "(no target)",
                                f"{ratios[name]:.2f}x", "n/a"))
            if ratios[name] < 10:
                rep.add(f"- {mode}: the host's own C handler reaches {ratios[name]:.2f}x "
                        "grpcio's best, so no Python handler on this host and transport can "
                        "reach 10x: that target is out of reach by construction here.")
    rep.add("")
    memory = streams.get("memory", {})
    if "rss_kb_start" in memory:
        growth = (memory["rss_kb_peak"] - memory["rss_kb_start"]) / 1024
        rep.add(f"A {memory['messages']:,}-message server stream from a Python generator: "
                f"host RSS {memory['rss_kb_start'] / 1024:.1f} MiB at the start, peak "
                f"{memory['rss_kb_peak'] / 1024:.1f} MiB ({growth:+.1f} MiB) over "
                f"{memory['seconds']:.1f} s.", "")
        rep.targets.append((f"{memory['messages']:,}-message stream, host RSS growth",
                            "flat", f"{growth:+.1f} MiB", "met" if growth < 16 else "missed"))
    if dispatch is not None:
        rows = rows_by(dispatch)
        unary = rows.get(("sync", 16, 1))
        bidi = rows.get(("bidi_sync", 16, 1))
        if unary and bidi:
            ratio = median_ratio(bidi["samples_ns"], unary["samples_ns"])
            rep.add(f"Dispatch benchmark (C host inline, no network): a Python bidi echo "
                    f"costs {fmt_ns(bidi['median_ns'])} per message against "
                    f"{fmt_ns(unary['median_ns'])} per unary call ({ratio:.2f}x).", "")
            rep.targets.append(("bidi per message / unary per call (dispatch)", "<= 3x",
                                f"{ratio:.2f}x", "met" if ratio <= 3 else "missed"))
            rep.targets.append(("perf: bidi per message / unary per call (dispatch)",
                                "<= 1.5x", f"{ratio:.2f}x",
                                "met" if ratio <= 1.5 else "missed"))


def section_profile(rep: Report, profile: dict[str, Any] | None) -> None:
    rep.add("## Profile of the dispatch path", "")
    if profile is None:
        rep.add("Not run.", "")
        return
    rep.add("Per-step cost of the sync path (timeit on a real call, min of 5):", "",
            "| step | ns |", "|---|---:|")
    for name, ns in profile["steps_ns"].items():
        rep.add(f"| {name} | {ns:.0f} |")
    rep.add("")
    perf = profile["perf"]
    if "error" in perf:
        rep.add(f"perf: {perf['error']}", "")
    else:
        rep.add("`perf record` of the C loop into the sync handler, by shared object:", "",
                "| share | object |", "|---:|---|")
        rep.add(*(f"| {pct} | {name} |" for pct, name in perf["by_dso"]), "")
        rep.add("Top symbols:", "", "| share | object and symbol |", "|---:|---|")
        rep.add(*(f"| {pct} | {name} |" for pct, name in perf["by_symbol"][:12]), "")
    rep.add("Dispatching threads against each other (sync handler, 16 B):", "",
            "| threads | ns per call | context switches per call | CPU user + sys per call |",
            "|---:|---:|---:|---:|")
    for row in profile["threads"]:
        rep.add(f"| {row['threads']} | {row['ns_per_call']:.0f} | "
                f"{row['switches_per_call']:.2f} | {row.get('user_ns_per_call', 0):.0f} + "
                f"{row.get('sys_ns_per_call', 0):.0f} ns |")
    rep.add("")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=pathlib.Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    machine = load(args.results, "machine") or {}
    rep = Report(args.results, machine)
    dispatch = load(args.results, "dispatch")
    e2e = load(args.results, "e2e")
    section_dispatch(rep, dispatch)
    section_payload(rep, dispatch)
    section_e2e(rep, e2e)
    section_processes(rep, e2e)
    section_memory(rep, load(args.results, "memory"))
    section_streams(rep, load(args.results, "streams"), dispatch)
    section_profile(rep, load(args.results, "profile"))
    notes = args.results / "NOTES.md"
    head = ["# pygrpc_ffi benchmark results", "",
            "Written by `bash bench/run.sh`; do not edit by hand (explanations live in "
            "NOTES.md, included below).", "", "## Machine", "",
            *(f"- {k}: {v}" for k, v in machine.items()), "", "## Targets", "",
            "| target | goal | measured | verdict |", "|---|---|---|---|",
            *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rep.targets), ""]
    tail = ["", notes.read_text()] if notes.exists() else []
    (args.results / "RESULTS.md").write_text("\n".join(head + rep.lines + tail) + "\n")
    for row in rep.targets:
        print("  " + " | ".join(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
