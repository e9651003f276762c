"""Section 6: streaming messages per second over loopback, the same Python
stream logic on every server, and a long stream's memory.

    python -m bench.streams [--quick] [--out bench/results/streams.json]

The load client is bench/stream_client.cc (gRPC C++'s callback API, built
into build/bench/stream_client): K streams to one method, 16-byte messages,
messages received in a fixed window.  bidi: the client writes back to back
and the server echoes each message; server: one request, the server streams.
Servers: the C++ host with Python stream handlers (def and async def), the
host's native C bidi echo (the ceiling), grpcio's sync server and grpc.aio
with the same logic, and the pip-only engine.  Rounds are interleaved; the
report quotes medians and ratios within a round.  Memory: the host's RSS
while one server stream sends 1M messages.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.e2e import HOST, PY, ROOT, Server, Spec

CLIENT = ROOT / "build" / "bench" / "stream_client"
MODES = {"bidi": "Bidi", "server": "Server"}


def build_client() -> pathlib.Path:
    """Compiles the load client (once per source change)."""
    source = ROOT / "bench" / "stream_client.cc"
    if CLIENT.exists() and CLIENT.stat().st_mtime >= source.stat().st_mtime:
        return CLIENT
    CLIENT.parent.mkdir(parents=True, exist_ok=True)
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "grpc++"], capture_output=True,
                           text=True, check=True).stdout.split()
    subprocess.run(["g++", "-O2", "-std=c++17", str(source), *flags, "-pthread", "-o",
                    str(CLIENT)], check=True)
    return CLIENT


@dataclass(frozen=True)
class StreamSpec:
    """A server and the methods it streams with, by mode."""

    spec: Spec
    methods: dict[str, str]


def stream_specs(workers: int) -> list[StreamSpec]:
    cli = [PY, "-m", "pygrpc_ffi", "serve", "bench.handlers", "--listen", "127.0.0.1:{port}"]
    py = {"bidi": "/bench.Stream/Bidi", "server": "/bench.Stream/Server"}
    aio = {"bidi": "/bench.Stream/AsyncBidi", "server": "/bench.Stream/AsyncServer"}
    return [
        StreamSpec(Spec("a", f"C++ host + Python def streams ({workers} workers)",
                        [*cli, "--workers", str(workers)]), py),
        StreamSpec(Spec("a_async", "C++ host + Python async def streams",
                        [*cli, "--workers", str(workers)]), aio),
        StreamSpec(Spec("b", "C++ host + native C bidi echo (ceiling)",
                        [str(HOST), "--listen", "127.0.0.1:{port}", "--workers", str(workers),
                         "--native-echo", "bench.Stream"]),
                   {"bidi": "/bench.Stream/Bidi"}),
        StreamSpec(Spec("c", "grpcio sync server (10 threads)",
                        [PY, "-m", "bench.grpcio_servers", "sync", "--listen",
                         "127.0.0.1:{port}", "--workers", "10"]), py),
        StreamSpec(Spec("d", "grpc.aio server",
                        [PY, "-m", "bench.grpcio_servers", "aio", "--listen",
                         "127.0.0.1:{port}"]), py),
        StreamSpec(Spec("e", "pip-only engine (--engine grpcio)", [*cli, "--engine", "grpcio"]),
                   py),
    ]


@dataclass
class StreamResult:
    key: str
    label: str
    error: str = ""
    # mode -> messages per second, one sample per round
    samples: dict[str, list[float]] = field(default_factory=dict)

    def median(self, mode: str) -> float:
        values = self.samples.get(mode) or []
        return statistics.median(values) if values else 0.0


def run_client(address: str, method: str, mode: str, streams: int, seconds: float) -> float:
    out = subprocess.run([str(CLIENT), "--target", address, "--method", method, "--mode", mode,
                          "--streams", str(streams), "--seconds", str(seconds)],
                         capture_output=True, text=True, timeout=seconds + 90)
    if out.returncode != 0:
        raise RuntimeError(f"stream_client failed: {out.stderr.strip()[-300:]}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["messages_per_s"])


def measure_memory(messages: int) -> dict[str, Any]:
    """The host's RSS while one Python server stream sends ``messages``
    16-byte messages to a client that reads them all."""
    server = Server(Spec("m", "memory", [PY, "-m", "pygrpc_ffi", "serve", "bench.handlers",
                                         "--listen", "127.0.0.1:{port}"]))
    samples: list[int] = []
    try:
        address = server.wait_listening()
        import grpc

        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.25):
                samples.append(server.rss_kb())

        with grpc.insecure_channel(address) as channel:
            time.sleep(0.5)
            start_kb = server.rss_kb()
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.monotonic()
            received = sum(1 for _ in channel.unary_stream("/bench.Stream/Server")(
                str(messages).encode(), timeout=600))
            took = time.monotonic() - started
            done.set()
            sampler.join()
            end_kb = server.rss_kb()
        return {"messages": received, "seconds": took, "rss_kb_start": start_kb,
                "rss_kb_peak": max(samples or [end_kb]), "rss_kb_end": end_kb,
                "rss_kb_samples": samples[:: max(1, len(samples) // 50)]}
    except Exception as exc:  # recorded, not fatal: the other sections stand
        return {"error": str(exc)}
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs")
    parser.add_argument("--out", type=pathlib.Path,
                        default=ROOT / "bench" / "results" / "streams.json")
    args = parser.parse_args(argv)
    rounds, seconds, streams = (1, 1.0, 4) if args.quick else (3, 3.0, 4)
    memory_messages = 100_000 if args.quick else 1_000_000
    build_client()
    specs = stream_specs(workers=4)
    results = {s.spec.key: StreamResult(s.spec.key, s.spec.label) for s in specs}
    for round_number in range(rounds):
        for stream_spec in specs if round_number % 2 == 0 else list(reversed(specs)):
            result = results[stream_spec.spec.key]
            if result.error:
                continue
            if stream_spec.spec.key == "b" and not HOST.exists():
                result.error = "the C++ host is not built"
                continue
            server = Server(stream_spec.spec)
            try:
                address = server.wait_listening()
                for mode, method in stream_spec.methods.items():
                    rate = run_client(address, method, mode, streams, seconds)
                    result.samples.setdefault(mode, []).append(rate)
                    print(f"  round {round_number + 1} {stream_spec.spec.key:8} {mode:6} "
                          f"{rate:10.0f} messages/s", flush=True)
            except Exception as exc:
                result.error = str(exc)
                print(f"  {stream_spec.spec.key}: {exc}", flush=True)
            finally:
                server.stop()
    ratios: dict[str, float] = {}
    for mode in MODES:
        ours = results["a"].median(mode)
        best_grpcio = max(results["c"].median(mode), results["d"].median(mode))
        if ours and best_grpcio:
            ratios[f"{mode}: host+Python / best grpcio"] = ours / best_grpcio
        ours_async = results["a_async"].median(mode)
        if ours_async and best_grpcio:
            ratios[f"{mode}: host+async Python / best grpcio"] = ours_async / best_grpcio
    native = results["b"].median("bidi")
    if native and results["a"].median("bidi"):
        ratios["bidi: host+Python / native bidi echo"] = results["a"].median("bidi") / native
    for name, value in ratios.items():
        print(f"  {name}: {value:.2f}x", flush=True)
    print("  memory of a long server stream ...", flush=True)
    memory = measure_memory(memory_messages)
    print(f"  {memory}", flush=True)
    report = {
        "config": {"rounds": rounds, "seconds": seconds, "streams": streams, "payload": 16,
                   "finished": time.strftime("%Y-%m-%d %H:%M:%S")},
        "servers": [asdict(r) | {"medians": {m: r.median(m) for m in MODES}}
                    for r in results.values()],
        "ratios": ratios,
        "memory": memory,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
