"""Section 6: streaming messages per second over loopback, the same Python
stream logic on every server, and a long stream's memory.

    python -m bench.streams [--quick] [--out bench/results/streams.json]
    python -m bench.streams --only a,b --rounds 5 --no-memory --baseline DIR

(--baseline DIR: the same host servers run from another checkout, built
there, interleaved with this one's; for before/after measurements.)

The load client is bench/stream_client.cc (gRPC C++'s callback API, built
into build/bench/stream_client): K streams to one method, 16-byte messages,
messages received in a fixed window.  bidi: the client writes back to back
and the server echoes each message; server: one request, the server streams.
Servers: the C++ host with Python stream handlers (def and async def), the
host's native C bidi echo and server stream (the ceilings), grpcio's sync server and grpc.aio
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

from bench.e2e import BENCH_HOST, PY, ROOT, Server, Spec, bench_host

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


def host_specs(workers: int, root: pathlib.Path = ROOT, suffix: str = "") -> list[StreamSpec]:
    """The C++ host's servers, from the checkout at ``root``."""
    py_bin = root / ".venv" / "bin" / "python" if root != ROOT else pathlib.Path(PY)
    host = bench_host(root)
    cwd = str(root) if root != ROOT else ""
    cli = [str(py_bin), "-m", "pygrpc_ffi", "serve", "bench.handlers", "--listen",
           "127.0.0.1:{port}", "--workers", str(workers)]
    py = {"bidi": "/bench.Stream/Bidi", "server": "/bench.Stream/Server"}
    aio = {"bidi": "/bench.Stream/AsyncBidi", "server": "/bench.Stream/AsyncServer"}
    native = [str(host), "--listen", "127.0.0.1:{port}", "--workers", str(workers),
              "--native-echo", "bench.Stream"]
    # A checkout without the native server stream gets the bidi echo only.
    has_countdown = b"--native-server-stream" in host.read_bytes() if host.exists() else False
    native_methods = {"bidi": "/bench.Stream/Bidi"}
    if has_countdown:
        native += ["--native-server-stream", "bench.StreamN"]
        native_methods["server"] = "/bench.StreamN/Server"
    return [
        StreamSpec(Spec("a" + suffix, f"C++ host + Python def streams ({workers} workers)"
                        + suffix, cli, cwd=cwd), py),
        StreamSpec(Spec("a_async" + suffix, "C++ host + Python async def streams" + suffix,
                        cli, cwd=cwd), aio),
        StreamSpec(Spec("b" + suffix, "C++ host + native C handlers (ceiling)" + suffix,
                        native, cwd=cwd), native_methods),
    ]


def stream_specs(workers: int, streams: int) -> list[StreamSpec]:
    cli = [PY, "-m", "pygrpc_ffi", "serve", "bench.handlers", "--listen", "127.0.0.1:{port}"]
    py = {"bidi": "/bench.Stream/Bidi", "server": "/bench.Stream/Server"}
    return [
        *host_specs(workers),
        # A thread per stream: grpcio's sync server serves a stream on one.
        StreamSpec(Spec("c", f"grpcio sync server ({streams} threads)",
                        [PY, "-m", "bench.grpcio_servers", "sync", "--listen",
                         "127.0.0.1:{port}", "--workers", str(streams)]), py),
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


def round_ratio(results: dict[str, StreamResult], mode: str, num: str, den: str) -> float:
    """The median over rounds of num/den measured in the same round."""
    a = results.get(num)
    b = results.get(den)
    if a is None or b is None:
        return 0.0
    pairs = [x / y for x, y in zip(a.samples.get(mode) or [], b.samples.get(mode) or [],
                                   strict=False) if x and y]
    return statistics.median(pairs) if pairs else 0.0


def compute_ratios(results: dict[str, StreamResult]) -> dict[str, float]:
    def median(key: str, mode: str) -> float:
        return results[key].median(mode) if key in results else 0.0

    ratios: dict[str, float] = {}
    for mode in MODES:
        best_grpcio = max(median("c", mode), median("d", mode))
        for key, name in (("a", "host+Python"), ("a_async", "host+async Python"),
                          ("b", "native C")):
            if median(key, mode) and best_grpcio:
                ratios[f"{mode}: {name} / best grpcio"] = median(key, mode) / best_grpcio
        for key, name in (("a", "host+Python"), ("a_async", "host+async Python")):
            if median(key, mode) and median("b", mode):
                ratios[f"{mode}: {name} / native C"] = median(key, mode) / median("b", mode)
        # Before/after, within each round.
        for key in ("a", "a_async", "b"):
            r = round_ratio(results, mode, key, key + "@base")
            if r:
                ratios[f"{mode}: {key} / {key}@base (per round)"] = r
    return ratios


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    parser.add_argument("--seconds", type=float, help="window per run (default 3, quick 1)")
    parser.add_argument("--streams", type=int, default=16, help="concurrent streams")
    parser.add_argument("--workers", type=int, default=4, help="C++ host worker threads")
    parser.add_argument("--only", help="comma-separated server keys (a,a_async,b,c,d,e)")
    parser.add_argument("--modes", default="bidi,server", help="comma-separated: bidi,server")
    parser.add_argument("--no-memory", action="store_true", help="skip the long stream's RSS")
    parser.add_argument("--baseline", type=pathlib.Path,
                        help="another checkout (built, with its .venv): its host servers "
                             "run too, keys suffixed @base")
    parser.add_argument("--out", type=pathlib.Path,
                        default=ROOT / "bench" / "results" / "streams.json")
    args = parser.parse_args(argv)
    rounds, seconds = (1, 1.0) if args.quick else (3, 3.0)
    rounds = args.rounds or rounds
    seconds = args.seconds or seconds
    streams = args.streams
    modes = set(args.modes.split(","))
    memory_messages = 100_000 if args.quick else 1_000_000
    build_client()
    specs = stream_specs(workers=args.workers, streams=streams)
    if args.baseline is not None:
        specs += host_specs(args.workers, args.baseline.resolve(), "@base")
    if args.only:
        wanted = set(args.only.split(","))
        specs = [s for s in specs if s.spec.key.split("@")[0] in wanted]
    results = {s.spec.key: StreamResult(s.spec.key, s.spec.label) for s in specs}
    for round_number in range(rounds):
        for stream_spec in specs if round_number % 2 == 0 else list(reversed(specs)):
            result = results[stream_spec.spec.key]
            if result.error:
                continue
            if stream_spec.spec.key == "b" and not BENCH_HOST.exists():
                result.error = "the C++ host is not built"
                continue
            server = Server(stream_spec.spec)
            try:
                address = server.wait_listening()
                for mode, method in stream_spec.methods.items():
                    if mode not in modes:
                        continue
                    rate = run_client(address, method, mode, streams, seconds)
                    result.samples.setdefault(mode, []).append(rate)
                    print(f"  round {round_number + 1} {stream_spec.spec.key:8} {mode:6} "
                          f"{rate:10.0f} messages/s", flush=True)
            except Exception as exc:
                result.error = str(exc)
                print(f"  {stream_spec.spec.key}: {exc}", flush=True)
            finally:
                server.stop()
    ratios = compute_ratios(results)
    for name, value in ratios.items():
        print(f"  {name}: {value:.2f}x", flush=True)
    memory: dict[str, Any] = {}
    if not args.no_memory:
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
