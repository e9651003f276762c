"""``pygrpc-ffi`` / ``python -m pygrpc_ffi``: serve a module's handlers.

    pygrpc-ffi serve MODULE [--listen ADDR] [--workers N] [--processes N]
                            [--engine cxx|grpcio] [--max-message-size BYTES]

The ``cxx`` engine (default) runs the gRPC C++ host, which embeds Python and
imports MODULE; the ``grpcio`` engine runs a grpcio server in this process.
With ``--processes N``, N servers share the port (SO_REUSEPORT) so Python
handlers use more than one core; each process has its own handlers.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence

HOST_BINARY_NAME = "pygrpc_ffi_server"
BUILD_COMMAND = "bash hosts/grpc_server/build.sh"
DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024


def find_host_binary() -> pathlib.Path | None:
    """The C++ host: $PGF_HOST_BINARY, the repo's build directory, or PATH."""
    override = os.environ.get("PGF_HOST_BINARY")
    candidates = [pathlib.Path(override)] if override else []
    repo = pathlib.Path(__file__).resolve().parent.parent
    candidates.append(repo / "build" / "grpc_server" / HOST_BINARY_NAME)
    found = shutil.which(HOST_BINARY_NAME)
    if found:
        candidates.append(pathlib.Path(found))
    if override:
        candidates = candidates[:1]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


def _python_path() -> str:
    """sys.path entries a child interpreter needs to import MODULE."""
    entries = [os.getcwd()]
    entries += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return ":".join(dict.fromkeys(entries))


# The C++ host's limits, passed through as given (its own defaults
# otherwise; see hosts/grpc_server/README.md).  The grpcio engine ignores them.
HOST_LIMIT_FLAGS = (
    "--max-concurrent-streams", "--max-metadata-bytes", "--max-queued-calls",
    "--max-memory-bytes", "--keepalive-time-ms", "--keepalive-timeout-ms",
    "--min-ping-interval-ms", "--max-ping-strikes", "--max-connection-idle-ms",
    "--max-connection-age-ms", "--max-connection-age-grace-ms",
)


def _host_limits(args: argparse.Namespace) -> list[str]:
    out = []
    for flag in HOST_LIMIT_FLAGS:
        value = getattr(args, flag[2:].replace("-", "_"), None)
        if value is not None:
            out += [flag, str(value)]
    if getattr(args, "keepalive_permit_without_calls", False):
        out.append("--keepalive-permit-without-calls")
    return out


def host_command(args: argparse.Namespace, binary: pathlib.Path) -> list[str]:
    command = [
        str(binary), "--listen", args.listen, "--workers", str(args.workers),
        "--max-workers", str(max(args.max_workers, args.workers)),
        "--max-message-size", str(args.max_message_size), "--module", args.module,
        "--sys-path", _python_path(), "--grace-seconds", str(args.grace),
        # The host stops when this supervisor dies, even by SIGKILL.
        "--die-with-parent", str(os.getpid()),
        *_host_limits(args),
    ]
    if sys.prefix != sys.base_prefix:
        command += ["--venv", sys.prefix]
    if args.processes > 1 or args.reuse_port:
        command.append("--reuse-port")
    return command


def grpcio_command(args: argparse.Namespace) -> list[str]:
    return [
        sys.executable, "-m", "pygrpc_ffi", "serve", args.module, "--engine", "grpcio",
        "--listen", args.listen, "--workers", str(args.workers), "--processes", "1",
        "--max-workers", str(args.max_workers),
        "--max-message-size", str(args.max_message_size), "--grace", str(args.grace),
        "--reuse-port",
    ]


def supervise(commands: Sequence[list[str]], listen: str) -> int:
    """Runs the servers, prints one ``listening on`` line once all serve,
    forwards SIGINT/SIGTERM to them, and returns the worst exit code."""
    children: list[subprocess.Popen[str]] = []
    stop = threading.Event()

    def forward(signum: int, _frame: object) -> None:
        stop.set()
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    bound = None
    for command in commands:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        children.append(child)
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line.startswith("listening on "):
            forward(signal.SIGTERM, None)
            for other in children:
                other.wait()
            return child.wait() or 2
        bound = bound or line.split(" ", 2)[2].strip()
        # Keep draining so a chatty child never blocks on a full pipe.
        threading.Thread(target=_copy_lines, args=(child.stdout,), daemon=True).start()
    print(f"listening on {bound or listen}", flush=True)
    codes = [child.wait() for child in children]
    return max(codes, key=abs) if codes else 0


def _copy_lines(stream: object) -> None:
    for line in stream:  # type: ignore[attr-defined]
        sys.stdout.write(line)
        sys.stdout.flush()


def serve(args: argparse.Namespace) -> int:
    if args.processes < 1:
        print("error: --processes must be at least 1", file=sys.stderr)
        return 2
    if args.processes > 1 and args.listen.rsplit(":", 1)[-1] == "0":
        print("error: --processes N > 1 needs a fixed port, not 0", file=sys.stderr)
        return 2
    if args.engine == "grpcio":
        if args.processes == 1:
            return serve_grpcio_here(args)
        return supervise([grpcio_command(args)] * args.processes, args.listen)
    binary = find_host_binary()
    if binary is None:
        print(f"error: the C++ host ({HOST_BINARY_NAME}) is not built; build it with: "
              f"{BUILD_COMMAND}  (or use --engine grpcio)", file=sys.stderr)
        return 2
    return supervise([host_command(args, binary)] * args.processes, args.listen)


def serve_grpcio_here(args: argparse.Namespace) -> int:
    import importlib

    from . import default_service
    from .grpcio_server import serve as grpcio_serve

    sys.path.insert(0, os.getcwd())
    try:
        importlib.import_module(args.module)
    except Exception as exc:
        print(f"error: cannot import {args.module}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    grpcio_serve(default_service(), args.listen, max_workers=max(args.max_workers, args.workers),
                 max_message_size=args.max_message_size, grace=args.grace,
                 reuse_port=args.reuse_port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pygrpc-ffi", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="serve MODULE's handlers over gRPC")
    run.add_argument("module",
                     help="Python module that registers handlers into default_service()")
    run.add_argument("--listen", default="127.0.0.1:50051",
                     help="address:port (default %(default)s)")
    run.add_argument("--workers", type=int, default=4, help="worker threads per process")
    run.add_argument("--max-workers", type=int, default=64,
                     help="threads a process may add while handlers block or hang")
    run.add_argument("--processes", type=int, default=1, help="server processes sharing the port")
    run.add_argument("--engine", choices=("cxx", "grpcio"), default="cxx",
                     help="cxx: the gRPC C++ host (default); grpcio: pip-only server")
    run.add_argument("--max-message-size", type=int, default=DEFAULT_MAX_MESSAGE)
    run.add_argument("--grace", type=float, default=10.0,
                     help="seconds in-flight calls get on shutdown")
    run.add_argument("--reuse-port", action="store_true",
                     help="share the port with other processes (implied by --processes N > 1)")
    limits = run.add_argument_group("limits of the cxx engine (passed to the host; defaults "
                                    "in hosts/grpc_server/README.md)")
    for flag in HOST_LIMIT_FLAGS:
        limits.add_argument(flag, type=int, default=None)
    limits.add_argument("--keepalive-permit-without-calls", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return 2  # pragma: no cover - argparse rejects other commands


if __name__ == "__main__":
    sys.exit(main())
