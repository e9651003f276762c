"""Sections 3 and 4: end-to-end throughput and latency with h2load over
loopback, the same request and load against every server, and the CLI's
``--processes 1`` against ``--processes 2``.

    python -m bench.e2e [--quick] [--out bench/results/e2e.json]

Every server gets a gRPC-framed 16 B echo request to ``/bench.Echo/Echo``;
4 connections x 16 streams for throughput, 1 x 1 for latency.  The
processes section also drives ``/bench.Echo/Work`` (~0.2 ms of Python per
call), where a second process has a GIL of its own to use.  Rounds are
interleaved (every server once per round) so that the machine's noise
spreads over all of them; the report quotes medians.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
PY = sys.executable
HOST = ROOT / "build" / "grpc_server" / "pygrpc_ffi_server"
# The same host on gRPC C++ 1.51 (Debian's), the product host until the
# transport moved to libnghttp2: the before/after of that move.
GRPCPP_HOST = ROOT / "build" / "grpc_server" / "pygrpc_ffi_grpcpp_server"
# The bench's builds of both hosts (bench/host/): the same hosts with the C
# handlers (--native-echo, ...) of the native servers; the product has none.
BENCH_HOST = ROOT / "build" / "grpc_server" / "pygrpc_ffi_bench_server"
GRPCPP_BENCH_HOST = ROOT / "build" / "grpc_server" / "pygrpc_ffi_grpcpp_bench_server"
PATH = "/bench.Echo/Echo"
ASYNC_PATH = "/bench.Echo/AsyncEcho"  # the same echo, ``async def``
WORK_PATH = "/bench.Echo/Work"  # ~0.2 ms of Python per call (bench/handlers.py)
PAYLOAD = b"0123456789abcdef"
HEADERS = ("content-type: application/grpc", "te: trailers")


@dataclass(frozen=True)
class Spec:
    """A server to start: ``{port}`` in the command is replaced by a free port."""

    key: str
    label: str
    command: list[str]
    available: str = ""  # why it cannot run, if it cannot
    cwd: str = ""  # where it runs (a baseline checkout for A/B runs); ROOT if empty
    path: str = ""  # the method h2load calls; PATH if empty
    env: tuple[tuple[str, str], ...] = ()  # set for the server, beside the environment


@dataclass
class Load:
    """One h2load run."""

    connections: int
    streams: int
    qps: float
    p50_us: float
    p99_us: float
    succeeded: int
    failed: int


@dataclass
class ServerResult:
    key: str
    label: str
    command: str
    error: str = ""
    rss_kb_start: int = 0
    rss_kb_end: int = 0
    throughput: list[Load] = field(default_factory=list)
    latency: list[Load] = field(default_factory=list)
    perf: dict[str, Any] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def specs(workers: int) -> list[Spec]:
    cli = [PY, "-m", "pygrpc_ffi", "serve", "bench.handlers", "--listen", "127.0.0.1:{port}"]
    engine = ROOT / "pygrpc_ffi" / "grpcio_server.py"
    return [
        Spec("a", f"C++ host + Python echo ({workers} workers)", [*cli, "--workers", str(workers)]),
        Spec("a_async", "C++ host + Python async def echo",
             [*cli, "--workers", str(workers)], path=ASYNC_PATH),
        # The unary path, as the Python echo takes (the bidi echo pays a
        # read and a write more per call: 1.3x slower for unary calls).
        Spec("b", "C++ host + native C unary echo (ceiling)",
             [str(BENCH_HOST), "--listen", "127.0.0.1:{port}", "--workers", str(workers),
              "--native-unary-echo", "bench.Echo"], _built(BENCH_HOST)),
        # The same thread count as the host's workers: on the 2-core machine
        # both serve most with as many threads as cores (bench/results/NOTES.md).
        Spec("c", f"grpcio sync server ({workers} threads)",
             [PY, "-m", "bench.grpcio_servers", "sync", "--listen", "127.0.0.1:{port}",
              "--workers", str(workers)]),
        Spec("d", "grpc.aio server",
             [PY, "-m", "bench.grpcio_servers", "aio", "--listen", "127.0.0.1:{port}"]),
        Spec("e", "pip-only engine (--engine grpcio)", [*cli, "--engine", "grpcio"],
             "" if engine.exists() else "pygrpc_ffi/grpcio_server.py does not exist yet"),
        Spec("a_grpcpp", f"gRPC C++ 1.51 host + Python echo ({workers} workers)",
             [*cli, "--workers", str(workers)], _built(GRPCPP_HOST),
             env=(("PGF_HOST_BINARY", str(GRPCPP_HOST)),)),
        Spec("b_grpcpp", "gRPC C++ 1.51 host + native C unary echo",
             [str(GRPCPP_BENCH_HOST), "--listen", "127.0.0.1:{port}", "--workers", str(workers),
              "--native-unary-echo", "bench.Echo"], _built(GRPCPP_BENCH_HOST)),
    ]


def _built(binary: pathlib.Path) -> str:
    return "" if binary.exists() else f"{binary} is not built"


def bench_host(root: pathlib.Path = ROOT) -> pathlib.Path:
    """The host with the bench's C handlers in the checkout at ``root``: its
    bench build, or, in a checkout from before there was one, the host itself
    (which then had them)."""
    bench = root / BENCH_HOST.relative_to(ROOT)
    return bench if root == ROOT or bench.exists() else root / HOST.relative_to(ROOT)


PROCESSES = (1, 2, 4)


def process_specs(workers: int) -> list[Spec]:
    cli = [PY, "-m", "pygrpc_ffi", "serve", "bench.handlers", "--listen", "127.0.0.1:{port}",
           "--workers", str(workers)]
    return [Spec(f"p{n}", f"C++ host, --processes {n}", [*cli, "--processes", str(n)])
            for n in PROCESSES]


class Server:
    """A started server process (and its children)."""

    def __init__(self, spec: Spec) -> None:
        self.command = [part.replace("{port}", str(free_port())) for part in spec.command]
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(self.command, cwd=spec.cwd or ROOT, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, start_new_session=True,
                                     env={**os.environ, **dict(spec.env)})
        self.address = ""

    def wait_listening(self, timeout: float = 30.0) -> str:
        """The bound address, or raises with the server's stderr."""
        assert self.proc.stdout is not None
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()),  # type: ignore[union-attr]
                                  daemon=True)
        reader.start()
        reader.join(timeout)
        if not line or not line[0].startswith("listening on "):
            self.stop()
            self.stderr.seek(0)
            err = self.stderr.read().strip().splitlines()
            raise RuntimeError(err[-1] if err else f"no 'listening on' line in {timeout} s")
        # Keep draining stdout so a chatty server never blocks.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        self.address = line[0].split(" ", 2)[2].strip()
        return self.address

    def pids(self) -> list[int]:
        """The server's process and its descendants."""
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            for task in pathlib.Path(f"/proc/{pid}/task").glob("*/children"):
                todo += [int(p) for p in task.read_text().split()]
        return found

    def rss_kb(self) -> int:
        total = 0
        for pid in self.pids():
            try:
                for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def check_echo(address: str, path: str = PATH) -> None:
    """One call through a grpcio client: the server answers the echo."""
    import grpc

    with grpc.insecure_channel(address) as channel:
        answer = channel.unary_unary(path)(PAYLOAD, timeout=10)
    if answer != PAYLOAD:
        raise RuntimeError(f"{address} answered {answer!r}")


def body_file(directory: pathlib.Path) -> pathlib.Path:
    """The request as h2load sends it: a gRPC frame (flag, 4-byte length)."""
    path = directory / "request16.bin"
    path.write_bytes(b"\0" + len(PAYLOAD).to_bytes(4, "big") + PAYLOAD)
    return path


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return float(sorted_values[index])


def h2load(address: str, body: pathlib.Path, connections: int, streams: int, seconds: float,
           warmup: float, path: str = PATH) -> Load:
    with tempfile.NamedTemporaryFile(suffix=".log") as log:
        command = ["h2load", "-c", str(connections), "-m", str(streams),
                   "-D", f"{seconds * 1000:.0f}ms", "--warm-up-time", f"{warmup * 1000:.0f}ms",
                   "-d", str(body), "--log-file", log.name]
        for header in HEADERS:
            command += ["-H", header]
        out = subprocess.run([*command, f"http://{address}{path}"], capture_output=True,
                             text=True, timeout=seconds + warmup + 60, check=True).stdout
        times = sorted(int(row.split("\t")[2]) for row in pathlib.Path(log.name).read_text()
                       .splitlines() if row.count("\t") == 2)
    qps = succeeded = failed = 0.0
    for line in out.splitlines():
        if line.startswith("finished in"):
            qps = float(line.split(",")[1].split()[0])
        elif line.startswith("requests:"):
            words = line.replace(",", "").split()
            succeeded = float(words[words.index("succeeded") - 1])
            failed = float(words[words.index("failed") - 1]) + float(
                words[words.index("errored") - 1])
    return Load(connections, streams, qps, percentile(times, 0.5), percentile(times, 0.99),
                int(succeeded), int(failed))


def perf_under_load(server: Server, body: pathlib.Path, seconds: float) -> dict[str, Any]:
    """``perf record -a`` while h2load (4 x 16) drives one server: the share of
    CPU samples by thread name and by shared object, whole machine."""
    if shutil.which("perf") is None:
        return {"error": "perf is not installed"}
    load = subprocess.Popen(
        ["h2load", "-c", "4", "-m", "16", "-D", f"{seconds + 2:.0f}", "-d", str(body),
         *[part for header in HEADERS for part in ("-H", header)],
         f"http://{server.address}{PATH}"], stdout=subprocess.DEVNULL)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = str(pathlib.Path(tmp) / "perf.data")
            time.sleep(1)
            record = subprocess.run(["perf", "record", "-q", "-a", "-F", "999", "-o", data,
                                     "--", "sleep", str(seconds)], capture_output=True, text=True)
            if record.returncode != 0:
                return {"error": f"perf record failed: {record.stderr.strip()[-300:]}"}
            tables: dict[str, Any] = {}
            for key in ("comm", "dso"):
                out = subprocess.run(["perf", "report", "-i", data, "--no-children", "-g", "none",
                                      "--stdio", "--sort", key, "--percent-limit", "1"],
                                     capture_output=True, text=True).stdout
                tables[key] = [[parts[0], " ".join(parts[1:])] for line in out.splitlines()
                               if (parts := line.split()) and parts[0].endswith("%")
                               and not line.startswith("#")][:15]
    finally:
        load.wait()
    return {"by_thread": tables["comm"], "by_dso": tables["dso"]}


def bench_servers(specs_: list[Spec], rounds: int, seconds: float, warmup: float,
                  body: pathlib.Path, latency: bool, load: tuple[int, int],
                  profile: Sequence[str] = (), path: str = PATH) -> list[ServerResult]:
    """Starts every server, then runs `rounds` interleaved rounds; profiles
    the servers whose keys are in `profile` at the end."""
    results: list[ServerResult] = []
    running: list[tuple[ServerResult, Server]] = []
    paths: dict[str, str] = {}  # by server key: what h2load calls
    try:
        for spec in specs_:
            result = ServerResult(spec.key, spec.label, " ".join(spec.command))
            results.append(result)
            if spec.available:
                result.error = spec.available
                continue
            server = Server(spec)
            spec_path = spec.path or path
            paths[spec.key] = spec_path
            try:
                check_echo(server.wait_listening(), spec_path)
            except Exception as exc:
                server.stop()
                result.error = f"{type(exc).__name__}: {exc}"
                print(f"  {spec.key}: cannot serve: {result.error}", flush=True)
                continue
            result.command = " ".join(server.command)
            running.append((result, server))  # stopped in `finally` whatever happens next
            h2load(server.address, body, *load, min(seconds, 1.0), 0.5, spec_path)  # warm-up
            result.rss_kb_start = server.rss_kb()
        for round_ in range(rounds):
            for result, server in running:
                tp = h2load(server.address, body, *load, seconds, warmup, paths[result.key])
                result.throughput.append(tp)
                line = f"  round {round_ + 1} {result.key}: {tp.qps:9.0f} req/s"
                if latency:
                    lat = h2load(server.address, body, 1, 1, seconds, warmup, paths[result.key])
                    result.latency.append(lat)
                    line += f"   1x1 p50 {lat.p50_us:6.0f} us  p99 {lat.p99_us:6.0f} us"
                print(line, flush=True)
        for result, server in running:
            check_echo(server.address, paths[result.key])
            result.rss_kb_end = server.rss_kb()
            if result.key in profile:
                result.perf = perf_under_load(server, body, 2.0 if seconds < 2 else 4.0)
    finally:
        for _, server in running:
            server.stop()
    return results


def host_specs_from(root: pathlib.Path, workers: int) -> list[Spec]:
    """Servers (a) and (b) run from another checkout, for before/after runs."""
    py = root / ".venv" / "bin" / "python"
    host = bench_host(root)
    unary_echo = host.exists() and b"--native-unary-echo" in host.read_bytes()
    return [
        Spec("a@base", f"C++ host + Python echo ({workers} workers), baseline",
             [str(py), "-m", "pygrpc_ffi", "serve", "bench.handlers", "--listen",
              "127.0.0.1:{port}", "--workers", str(workers)], cwd=str(root)),
        Spec("b@base", "C++ host + native C echo, baseline",
             [str(host), "--listen", "127.0.0.1:{port}", "--workers", str(workers),
              "--native-unary-echo" if unary_echo else "--native-echo", "bench.Echo"],
             cwd=str(root)),
    ]


def quick_ab(args: argparse.Namespace, rounds: int, seconds: float, warmup: float) -> int:
    """--only: the chosen servers (and a baseline's), throughput only, ratios
    within each round printed."""
    wanted = set(args.only.split(","))
    chosen = [s for s in specs(args.workers) if s.key in wanted]
    if args.baseline is not None:
        chosen += [s for s in host_specs_from(args.baseline.resolve(), args.workers)
                   if s.key.split("@")[0] in wanted]
    with tempfile.TemporaryDirectory() as tmp:
        body = body_file(pathlib.Path(tmp))
        servers = bench_servers(chosen, rounds, seconds, warmup, body, False, (4, 16))
    qps = {r.key: [t.qps for t in r.throughput] for r in servers}
    for key, values in qps.items():
        if values:
            print(f"  {key:8} median {sorted(values)[len(values) // 2]:9.0f} req/s", flush=True)
    keys = list(qps)
    for num in keys:
        for den in keys:
            if num != den and qps[num] and qps[den] and (
                    den == num + "@base" or (num, den) in {("a", "b"), ("a", "c"), ("a", "d"),
                                                           ("a_async", "a"),
                                                           ("a", "a_grpcpp"),
                                                           ("b", "b_grpcpp")}):
                ratios = sorted(x / y for x, y in zip(qps[num], qps[den], strict=False))
                print(f"  {num} / {den} (per round, median): {ratios[len(ratios) // 2]:.2f}",
                      flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"servers": [asdict(r) for r in servers]}, indent=1) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round")
    parser.add_argument("--workers", type=int, default=max(2, os.cpu_count() or 2),
                        help="C++ host worker threads, and grpcio sync server threads "
                             "(default: the number of cores, at least 2)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5, quick 1)")
    parser.add_argument("--seconds", type=float, help="window per run (default 4, quick 1)")
    parser.add_argument("--only", help="comma-separated server keys (a,b,c,d,e, a_grpcpp, "
                                       "b_grpcpp): only these, "
                                       "no latency, no profile, no processes section")
    parser.add_argument("--baseline", type=pathlib.Path,
                        help="with --only: another checkout (built, with its .venv) whose "
                             "host servers (a, b) run too, keys suffixed @base")
    parser.add_argument("--out", type=pathlib.Path,
                        default=ROOT / "bench" / "results" / "e2e.json")
    args = parser.parse_args(argv)
    rounds, seconds, warmup = (1, 1.0, 0.5) if args.quick else (5, 4.0, 1.0)
    rounds = args.rounds or rounds
    seconds = args.seconds or seconds
    if args.only:
        return quick_ab(args, rounds, seconds, warmup)
    with tempfile.TemporaryDirectory() as tmp:
        body = body_file(pathlib.Path(tmp))
        print("end to end: 4 connections x 16 streams, then 1 x 1", flush=True)
        servers = bench_servers(specs(args.workers), rounds, seconds, warmup, body, True,
                                (4, 16), profile=("a", "b"))
        # More connections than processes, so SO_REUSEPORT spreads them.
        print("processes: 16 connections x 4 streams, echo", flush=True)
        processes = bench_servers(process_specs(args.workers), rounds, seconds, warmup, body,
                                  False, (16, 4))
        print(f"processes: 16 connections x 4 streams, {WORK_PATH}", flush=True)
        work = bench_servers(process_specs(args.workers), rounds, seconds, warmup, body,
                             False, (16, 4), path=WORK_PATH)
        for result in work:
            result.key += "_work"
    report = {
        "config": {"rounds": rounds, "seconds": seconds, "warmup": warmup,
                   "payload_bytes": len(PAYLOAD), "path": PATH, "host_workers": args.workers,
                   "finished": time.strftime("%Y-%m-%d %H:%M:%S")},
        "servers": [asdict(r) for r in servers],
        "processes": [asdict(r) for r in processes + work],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
