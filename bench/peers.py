"""Issue 25's table: every handler shape on every server, ours against the
peers a user would pick instead (grpcio, pygrpc-native), in one run.

    python -m bench.peers [--quick] [--rounds N] [--seconds T]
                          [--out bench/results/peers.json]

Every server runs with its defaults (no tuning flags): ours is
``pygrpc-ffi serve bench.shapes``; the peers are bench/peer_servers.py.
All serve the same logic (bench/servicers.py, bench/shapes.py).  Measures,
in interleaved rounds (every row once per round; the best round is kept,
as the issue's table did):

- unary calls/s: h2load, 4 connections x 16 streams, 16 B echo;
- server CPU seconds per 1000 calls, from /proc over the same window;
- p50/p99 latency at a fixed offered load, the same for every server: half
  the slowest row's peak (bench/stream_client.cc --mode unary, open loop;
  raw-bytes rows only, so not the typed ones);
- server streams of 100 x 16 B: h2load, streams/s x 100 = messages/s;
- bidi echo messages/s: bench/stream_client.cc, 16 streams.

Writes the JSON and a Markdown table (``PEERS.md`` beside it) with the
issue's ratios as verdict rows, met or missed.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.e2e import BENCH_HOST, PY, ROOT, Server, Spec, h2load
from bench.streams import build_client, run_client

PAYLOAD = b"0123456789abcdef"
TYPED = b"\x0a\x10" + PAYLOAD  # BytesValue(value=PAYLOAD), serialized
STREAM_COUNT = b"100"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _peer(kind: str) -> list[str]:
    return [PY, "-m", "bench.peer_servers", kind, "--listen", "127.0.0.1:{port}"]


SERVERS = {
    "grpcio": Spec("grpcio", "grpcio sync server", _peer("grpcio")),
    "grpcio-aio": Spec("grpcio-aio", "grpc.aio server", _peer("grpcio-aio")),
    "native": Spec("native", "pygrpc-native server()", _peer("native")),
    "native-aio": Spec("native-aio", "pygrpc-native aio.server()", _peer("native-aio")),
    "native-front": Spec("native-front", "pygrpc-native NativeGrpcFront loop",
                         _peer("native-front")),
    "ours": Spec("ours", "pygrpc-ffi serve (product host)",
                 [PY, "-m", "pygrpc_ffi", "serve", "bench.shapes", "--listen",
                  "127.0.0.1:{port}"]),
    "ours-c": Spec("ours-c", "product host, native C echo",
                   [str(BENCH_HOST), "--listen", "127.0.0.1:{port}",
                    "--native-unary-echo", "bench.Echo"],
                   "" if BENCH_HOST.exists() else f"{BENCH_HOST} is not built"),
}


@dataclass(frozen=True)
class Row:
    """One shape on one server."""

    key: str
    label: str
    server: str
    path: str
    kind: str  # unary | server | bidi
    body: bytes = PAYLOAD


ROWS = [
    # unary
    Row("grpcio", "grpcio sync, servicer", "grpcio", "/bench.Servicer/Echo", "unary"),
    Row("grpcio-aio", "grpc.aio, async servicer", "grpcio-aio", "/bench.Servicer/Echo", "unary"),
    Row("native", "pygrpc-native server(), servicer", "native", "/bench.Servicer/Echo",
        "unary"),
    Row("native-aio", "pygrpc-native aio.server(), async servicer", "native-aio",
        "/bench.Servicer/Echo", "unary"),
    Row("native-front", "pygrpc-native NativeGrpcFront loop", "native-front",
        "/bench.Servicer/Echo", "unary"),
    Row("native-typed", "pygrpc-native server(), BytesValue servicer", "native",
        "/bench.TypedServicer/Echo", "unary", TYPED),
    Row("ours-servicer", "ours, grpcio servicer (add_servicer)", "ours",
        "/bench.Servicer/Echo", "unary"),
    Row("ours-servicer-async", "ours, async servicer (add_servicer)", "ours",
        "/bench.ServicerAsync/Echo", "unary"),
    Row("ours-servicer-typed", "ours, BytesValue servicer (add_servicer)", "ours",
        "/bench.TypedServicer/Echo", "unary", TYPED),
    Row("ours-bytes", "ours, def returning bytes", "ours", "/bench.Echo/Echo", "unary"),
    Row("ours-bytes-async", "ours, async def returning bytes", "ours", "/bench.Echo/AsyncEcho",
        "unary"),
    Row("ours-response", "ours, def returning GrpcResponse + metadata", "ours",
        "/bench.Shapes/Response", "unary"),
    Row("ours-response-async", "ours, async def returning GrpcResponse + metadata", "ours",
        "/bench.Shapes/AsyncResponse", "unary"),
    Row("ours-typed", "ours, typed def (BytesValue)", "ours", "/bench.Shapes/Typed", "unary",
        TYPED),
    Row("ours-typed-async", "ours, typed async def (BytesValue)", "ours",
        "/bench.Shapes/AsyncTyped", "unary", TYPED),
    Row("ours-c", "ours, the host's C echo (no Python)", "ours-c", "/bench.Echo/Echo", "unary"),
    # server streams of 100 x 16 B
    *[Row(f"{s}-server", f"{SERVERS[s].label}, server stream servicer", s,
          "/bench.StreamServicer/Server", "server", STREAM_COUNT)
      for s in ("grpcio", "grpcio-aio", "native", "native-aio")],
    Row("ours-server", "ours, def generator", "ours", "/bench.Stream/Server", "server",
        STREAM_COUNT),
    Row("ours-server-async", "ours, async def generator", "ours", "/bench.Stream/AsyncServer",
        "server", STREAM_COUNT),
    Row("ours-server-servicer", "ours, server stream servicer", "ours",
        "/bench.StreamServicer/Server", "server", STREAM_COUNT),
    # bidi echo
    *[Row(f"{s}-bidi", f"{SERVERS[s].label}, bidi servicer", s, "/bench.StreamServicer/Bidi",
          "bidi") for s in ("grpcio", "grpcio-aio", "native", "native-aio")],
    Row("ours-bidi", "ours, def bidi", "ours", "/bench.Stream/Bidi", "bidi"),
    Row("ours-bidi-async", "ours, async def bidi", "ours", "/bench.Stream/AsyncBidi", "bidi"),
]


@dataclass
class Result:
    row: Row
    rounds: list[float] = field(default_factory=list)  # calls/s or messages/s
    cpu_ms_per_1000: list[float] = field(default_factory=list)
    failed: int = 0
    p50_us: float = float("nan")
    p99_us: float = float("nan")
    latency_errors: int = 0
    error: str = ""

    @property
    def best(self) -> float:
        return max(self.rounds) if self.rounds else 0.0


def cpu_seconds(server: Server) -> float:
    """User + system CPU of the server's processes so far."""
    total = 0
    for pid in server.pids():
        try:
            fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def check(address: str, row: Row) -> None:
    """One call through a grpcio client: the right answer, or raises."""
    import grpc

    with grpc.insecure_channel(address) as channel:
        if row.kind == "unary":
            got = channel.unary_unary(row.path)(row.body, timeout=10)
            if got != row.body:
                raise RuntimeError(f"{row.path} answered {got!r}")
        elif row.kind == "server":
            got_n = len(list(channel.unary_stream(row.path)(row.body, timeout=10)))
            if got_n != int(row.body):
                raise RuntimeError(f"{row.path} sent {got_n} messages")
        else:
            answers = list(channel.stream_stream(row.path)(iter([PAYLOAD] * 3), timeout=10))
            if answers != [PAYLOAD] * 3:
                raise RuntimeError(f"{row.path} answered {answers!r}")


def measure(server: Server, row: Row, body: pathlib.Path, seconds: float,
            streams: int) -> tuple[float, float, int]:
    """(calls or messages per second, server CPU ms per 1000 of them, failed)."""
    before = cpu_seconds(server)
    if row.kind == "bidi":
        rate = run_client(server.address, row.path, "bidi", streams, seconds)
        count, failed = rate * seconds, 0
    else:
        load = h2load(server.address, body, 4, 16, seconds, 0.0, row.path)
        rate, failed = load.qps, load.failed
        count = load.succeeded
        if row.kind == "server":
            rate, count = rate * int(row.body), count * int(row.body)
    cpu = cpu_seconds(server) - before
    return rate, (cpu * 1e6 / count if count else float("nan")), failed


def latency(address: str, row: Row, rate: float, seconds: float) -> tuple[float, float, int]:
    """(p50 µs, p99 µs, errors) of the open-loop client at ``rate`` calls/s;
    NaN for rows whose request is not raw bytes (the client sends 16 raw B)."""
    if row.body != PAYLOAD:
        return float("nan"), float("nan"), 0
    out = subprocess.run([str(build_client()), "--target", address, "--method", row.path,
                          "--mode", "unary", "--rate", f"{rate:.0f}", "--seconds", str(seconds),
                          "--payload", str(len(PAYLOAD))],
                         capture_output=True, text=True, timeout=seconds + 60)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    return float(report["p50_us"]), float(report["p99_us"]), int(report["errors"])


VERDICTS: list[tuple[str, Callable[[dict[str, float]], float], float]] = []


def _ratio(num: str, den: str | Sequence[str]) -> Callable[[dict[str, float]], float]:
    dens = [den] if isinstance(den, str) else list(den)

    def ratio(best: dict[str, float]) -> float:
        """NaN when a row it needs was not run (or failed)."""
        top, bottom = best.get(num, 0.0), max(best.get(d, 0.0) for d in dens)
        return top / bottom if top and bottom else float("nan")
    return ratio


OURS_NATIVE = ["ours-bytes", "ours-bytes-async", "ours-response", "ours-response-async",
               "ours-typed", "ours-typed-async"]
VERDICTS += [
    ("grpcio servicer: ours / pygrpc-native server()", _ratio("ours-servicer", "native"), 1.2),
    ("async servicer: ours / pygrpc-native aio.server()",
     _ratio("ours-servicer-async", "native-aio"), 1.2),
    *[(f"{key} / pygrpc-native NativeGrpcFront loop", _ratio(key, "native-front"), 1.2)
      for key in OURS_NATIVE],
    *[(f"{key} / our fastest Python shape", _ratio(key, OURS_NATIVE), 0.9)
      for key in OURS_NATIVE],
]
for suffix, label in (("server", "server stream"), ("bidi", "bidi")):
    peers = [f"{p}-{suffix}" for p in ("grpcio", "grpcio-aio", "native", "native-aio")]
    grpcio = [f"{p}-{suffix}" for p in ("grpcio", "grpcio-aio")]
    for ours in (f"ours-{suffix}", f"ours-{suffix}-async"):
        VERDICTS.append((f"{label}: {ours} / best peer", _ratio(ours, peers), 1.2))
        VERDICTS.append((f"{label}: {ours} / best grpcio", _ratio(ours, grpcio), 10.0))
VERDICTS.append(("C echo (ceiling) / our fastest Python shape",
                 _ratio("ours-c", [*OURS_NATIVE, "ours-servicer", "ours-servicer-async"]), 1.2))


def run(rounds: int, seconds: float, streams: int, lat_seconds: float,
        rows: Sequence[Row] = ROWS) -> dict[str, Any]:
    results = {row.key: Result(row) for row in rows}
    servers: dict[str, Server] = {}
    build_client()
    with tempfile.TemporaryDirectory() as tmp:
        bodies: dict[bytes, pathlib.Path] = {}
        for row in rows:
            if row.body not in bodies:
                path = pathlib.Path(tmp) / f"body{len(bodies)}.bin"
                path.write_bytes(b"\0" + len(row.body).to_bytes(4, "big") + row.body)
                bodies[row.body] = path
        try:
            for key, spec in SERVERS.items():
                if not any(r.row.server == key for r in results.values()):
                    continue
                if spec.available:
                    for r in results.values():
                        if r.row.server == key:
                            r.error = spec.available
                    continue
                server = Server(spec)
                try:
                    server.wait_listening()
                except RuntimeError as exc:
                    for r in results.values():
                        if r.row.server == key:
                            r.error = str(exc)
                    continue
                servers[key] = server
            live = [r for r in results.values() if r.row.server in servers]
            for r in live:  # correct answers first, and a warm-up
                try:
                    check(servers[r.row.server].address, r.row)
                    measure(servers[r.row.server], r.row, bodies[r.row.body], 1.0, streams)
                except Exception as exc:
                    r.error = f"{type(exc).__name__}: {exc}"
            live = [r for r in live if not r.error]
            for round_ in range(rounds):
                for r in live:
                    rate, cpu, failed = measure(servers[r.row.server], r.row, bodies[r.row.body],
                                                seconds, streams)
                    r.rounds.append(rate)
                    r.cpu_ms_per_1000.append(cpu)
                    r.failed += failed
                    print(f"  round {round_ + 1} {r.row.key:24} {rate:10.0f}/s  "
                          f"cpu {cpu:6.1f} ms/1000", flush=True)
            unary = [r for r in live if r.row.kind == "unary" and r.rounds]
            offered = 0.5 * min(r.best for r in unary) if unary else 0.0
            for r in unary:
                if offered:
                    r.p50_us, r.p99_us, r.latency_errors = latency(
                        servers[r.row.server].address, r.row, offered, lat_seconds)
            for r in live:
                check(servers[r.row.server].address, r.row)  # still answering
        finally:
            for server in servers.values():
                server.stop()
    best = {key: r.best for key, r in results.items()}
    verdicts = [{"verdict": name, "ratio": round(fn(best), 3), "target": target,
                 "met": fn(best) >= target} for name, fn, target in VERDICTS]
    return {
        "config": {"rounds": rounds, "seconds": seconds, "bidi_streams": streams,
                   "unary_load": "h2load 4 x 16, 16 B", "latency_offered_per_s": offered,
                   "latency_seconds": lat_seconds, "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                   "cpus": os.cpu_count(), "versions": versions()},
        "rows": [{**asdict(r.row), "body": len(r.row.body), **{
            k: v for k, v in asdict(r).items() if k != "row"}, "best": r.best}
            for r in results.values()],
        "verdicts": verdicts,
    }


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("pygrpc-ffi", "grpcio", "pygrpc-native", "protobuf"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def markdown(report: dict[str, Any]) -> str:
    cfg = report["config"]
    lines = [
        "# Every shape on every server (bench/peers.py)", "",
        f"Finished {cfg['finished']}, {cfg['cpus']} CPUs; "
        + ", ".join(f"{k} {v}" for k, v in cfg["versions"].items()) + ".",
        f"{cfg['rounds']} interleaved rounds of {cfg['seconds']:g} s, best kept; unary: "
        f"{cfg['unary_load']}; latency: open loop at {cfg['latency_offered_per_s']:.0f} calls/s "
        f"(half the slowest row's peak) for {cfg['latency_seconds']:g} s; bidi: "
        f"{cfg['bidi_streams']} streams.", "",
        "| row | server and shape | calls or msgs/s (best) | rounds | CPU ms / 1000 "
        "| p50 µs | p99 µs |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    for row in report["rows"]:
        if row["error"]:
            lines.append(f"| {row['key']} | {row['label']} | — | {row['error']} | | | |")
            continue
        cpu = sorted(row["cpu_ms_per_1000"])
        unit = " msgs" if row["kind"] != "unary" else ""
        lat = ("", "") if row["p50_us"] != row["p50_us"] else (
            f"{row['p50_us']:.0f}", f"{row['p99_us']:.0f}")
        lines.append(f"| {row['key']} | {row['label']} | {row['best']:,.0f}{unit} | "
                     + " / ".join(f"{x / 1000:.1f}k" for x in row["rounds"])
                     + f" | {cpu[len(cpu) // 2]:.1f} | {lat[0]} | {lat[1]} |")
    lines += ["", "| verdict | ratio | target | |", "|---|---:|---:|---|"]
    for v in report["verdicts"]:
        if v["ratio"] != v["ratio"]:  # NaN: a row it needs did not run
            lines.append(f"| {v['verdict']} | n/a | {v['target']:g} | not run |")
            continue
        lines.append(f"| {v['verdict']} | {v['ratio']:.2f} | {v['target']:g} | "
                     f"{'met' if v['met'] else '**missed**'} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--streams", type=int, default=16, help="bidi streams")
    parser.add_argument("--only", help="comma-separated row keys: only these rows")
    parser.add_argument("--out", type=pathlib.Path,
                        default=ROOT / "bench" / "results" / "peers.json")
    args = parser.parse_args(argv)
    rounds, seconds = (1, 1.0) if args.quick else (3, 3.0)
    rows = ROWS
    if args.only:
        wanted = set(args.only.split(","))
        rows = [row for row in ROWS if row.key in wanted]
        if len(rows) != len(wanted):
            parser.error(f"unknown rows: {sorted(wanted - {r.key for r in ROWS})}")
    report = run(args.rounds or rounds, args.seconds or seconds, args.streams,
                 1.0 if args.quick else 3.0, rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    table = markdown(report)
    args.out.with_name("PEERS.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
