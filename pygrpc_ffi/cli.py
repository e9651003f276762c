"""``pygrpc-ffi`` / ``python -m pygrpc_ffi``: serve a module's handlers.

    pygrpc-ffi serve MODULE [--listen ADDR] [--workers N] [--processes N]
                            [--engine auto|cxx|grpcio] [--max-message-size BYTES]
    pygrpc-ffi build-host [--output PATH] [--build-dir DIR] [--jobs N]
    pygrpc-ffi config [--cflags] [--libs] [--cmakedir] [--pkgconfigdir] ...
    pygrpc-ffi probe ADDR [--service S] [--timeout SECONDS] [--tls-ca CA] ...

The ``cxx`` engine runs the gRPC C++ host, which embeds Python and imports
MODULE; the ``grpcio`` engine runs a grpcio server in this process; ``auto``
(default) is ``cxx`` when the host is built, else ``grpcio``.
``build-host`` builds the C++ host against this installed package (needs a
C++ compiler, CMake, pkg-config and libgrpc++-dev) and puts it next to the
``pygrpc-ffi`` script, where ``serve`` finds it.
With ``--processes N``, N servers share the port (SO_REUSEPORT) so Python
handlers use more than one core; each process has its own handlers.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import parent_watch, probe, serve_options, serve_tls
from .config import config_main, get_cmake_dir
from .service import default_service

if TYPE_CHECKING:
    from .grpcio_server import ServerLimits

HOST_BINARY_NAME = "pygrpc_ffi_server"
BUILD_COMMAND = "pygrpc-ffi build-host"
PACKAGE_DIR = pathlib.Path(__file__).resolve().parent
DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024


def installed_host_path() -> pathlib.Path:
    """Where ``build-host`` puts the host: beside this environment's scripts."""
    return pathlib.Path(sysconfig.get_path("scripts")) / HOST_BINARY_NAME


def find_host_binary() -> pathlib.Path | None:
    """The C++ host: $PGF_HOST_BINARY, the repo's build directory, the one
    ``build-host`` installed, or PATH."""
    override = os.environ.get("PGF_HOST_BINARY")
    candidates = [pathlib.Path(override)] if override else []
    repo = PACKAGE_DIR.parent
    candidates.append(repo / "build" / "grpc_server" / HOST_BINARY_NAME)
    candidates.append(installed_host_path())
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


# Limits of both engines: passed through to the C++ host as given (its own
# defaults otherwise; see hosts/grpc_server/README.md); the grpcio engine
# maps them to gRPC core's channel arguments (grpcio_server.ServerLimits;
# grpcio's defaults otherwise), and --max-memory-bytes bounds its calls in
# progress or queued (grpcio_server.start).
HOST_LIMIT_FLAGS = (
    "--max-concurrent-streams", "--max-metadata-bytes", "--max-queued-calls",
    "--max-memory-bytes", "--keepalive-time-ms", "--keepalive-timeout-ms",
    "--min-ping-interval-ms", "--max-ping-strikes", "--max-connection-idle-ms",
    "--max-connection-age-ms", "--max-connection-age-grace-ms",
)


def _host_options(args: argparse.Namespace) -> list[str]:
    """The cxx engine's own flags that were given: limits and scheduling."""
    out = []
    for flag in HOST_LIMIT_FLAGS:
        value = getattr(args, flag[2:].replace("-", "_"), None)
        if value is not None:
            out += [flag, str(value)]
    if getattr(args, "keepalive_permit_without_calls", False):
        out.append("--keepalive-permit-without-calls")
    if getattr(args, "worker_scheduling", None) is not None:
        out += ["--worker-scheduling", args.worker_scheduling]
    return out


def host_command(args: argparse.Namespace, binary: pathlib.Path) -> list[str]:
    command = [
        str(binary), "--listen", args.listen, "--workers", str(args.workers),
        "--max-workers", str(max(args.max_workers, args.workers)),
        "--max-message-size", str(args.max_message_size),
        "--module", serve_options.host_module(args),
        "--sys-path", _python_path(), "--grace-seconds", str(args.grace),
        # The host stops when this supervisor dies, even by SIGKILL.
        "--die-with-parent", str(os.getpid()),
        *_host_options(args), *serve_tls.host_flags(args), *serve_options.host_flags(args),
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
        "--reuse-port", *serve_options.child_flags(args), *serve_tls.host_flags(args),
        # The child stops when this supervisor dies, even by SIGKILL.
        "--die-with-parent", str(os.getpid()),
        # Limits only: serve() refused --worker-scheduling for this engine.
        *_host_options(args),
    ]


# The cxx engine's flags without a grpcio equivalent, and why.
CXX_ONLY_FLAGS = {
    "worker_scheduling": ("--worker-scheduling", "grpcio's worker threads keep the default "
                          "scheduling"),
}


def engine_problem(args: argparse.Namespace) -> str | None:
    """A flag given that the resolved engine cannot honour, or None.  (Every
    flag the grpcio engine takes, the cxx engine takes too.)"""
    if args.engine != "grpcio":
        return None
    for name, (flag, why) in CXX_ONLY_FLAGS.items():
        if getattr(args, name, None) is not None:
            return f"{flag} needs the cxx engine ({why})"
    return None


def grpcio_limits(args: argparse.Namespace) -> ServerLimits:
    """The grpcio engine's limits from the serve flags (None where not given)."""
    from .grpcio_server import ServerLimits

    # --max-memory-bytes is start()'s own parameter.
    names = [flag[2:].replace("-", "_") for flag in HOST_LIMIT_FLAGS
             if flag != "--max-memory-bytes"]
    return ServerLimits(**{name: getattr(args, name, None) for name in names},
                        keepalive_permit_without_calls=(
                            True if getattr(args, "keepalive_permit_without_calls", False)
                            else None))


def supervise(commands: Sequence[list[str]], listen: str,
              envs: Sequence[dict[str, str]] | None = None) -> int:
    """Runs the servers (``envs``: each one's environment), prints one
    ``listening on`` line once all serve, forwards SIGINT/SIGTERM to them,
    and returns the worst exit code."""
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
    for index, command in enumerate(commands):
        child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                                 env=envs[index] if envs else None)
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
    problem = serve_options.check(args) or serve_tls.check(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    binary = find_host_binary()
    if args.engine == "auto":
        args.engine = "cxx" if binary is not None else "grpcio"
        if binary is None:
            print(f"pygrpc-ffi: serving with the grpcio engine (the C++ host is not built: "
                  f"{BUILD_COMMAND})", file=sys.stderr)
    problem = engine_problem(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.engine == "grpcio":
        if args.processes == 1:
            return serve_grpcio_here(args)
        return _supervise_observed(args, [grpcio_command(args)] * args.processes, cxx=False)
    if binary is None:
        print(f"error: the C++ host ({HOST_BINARY_NAME}) is not built; build it with: "
              f"{BUILD_COMMAND}  (or use --engine grpcio)", file=sys.stderr)
        return 2
    return _supervise_observed(args, [host_command(args, binary)] * args.processes, cxx=True)


def _supervise_observed(args: argparse.Namespace, commands: list[list[str]], cxx: bool) -> int:
    """supervise() with the observability options (serve_options.py)."""
    observed = serve_options.Supervision(args, len(commands), cxx)
    try:
        observed.start_metrics()
        return supervise(commands, args.listen, observed.child_envs())
    finally:
        observed.close()


def serve_grpcio_here(args: argparse.Namespace) -> int:
    if args.die_with_parent is not None and not parent_watch.die_with_parent(
            args.die_with_parent):
        print(f"error: the parent process {args.die_with_parent} is gone", file=sys.stderr)
        return 2
    # grpcio is optional: only this command needs it.
    from .grpcio_server import serve as grpcio_serve

    sys.path.insert(0, os.getcwd())
    try:
        importlib.import_module(args.module)
    except Exception as exc:
        print(f"error: cannot import {args.module}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    try:
        serve_options.serve_here(args, default_service())
    except Exception as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    memory = {} if args.max_memory_bytes is None else {"max_memory_bytes": args.max_memory_bytes}
    try:
        limits = grpcio_limits(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    credentials = None
    if args.tls_cert is not None:
        try:
            credentials = serve_tls.server_credentials(args.tls_cert, args.tls_key,
                                                       args.tls_client_ca,
                                                       args.tls_reload_seconds)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    grpcio_serve(default_service(), args.listen, max_workers=max(args.max_workers, args.workers),
                 max_message_size=args.max_message_size, grace=args.grace,
                 reuse_port=args.reuse_port, credentials=credentials,
                 drain_seconds=args.drain_seconds, limits=limits, **memory)
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
    run.add_argument("--engine", choices=("auto", "cxx", "grpcio"), default="auto",
                     help="cxx: the gRPC C++ host; grpcio: pip-only server; "
                     "auto (default): cxx if the host is built, else grpcio")
    run.add_argument("--max-message-size", type=int, default=DEFAULT_MAX_MESSAGE)
    run.add_argument("--grace", type=float, default=10.0,
                     help="seconds in-flight calls get on shutdown")
    run.add_argument("--reuse-port", action="store_true",
                     help="share the port with other processes (implied by --processes N > 1)")
    # Given by --processes N to each grpcio engine process: the supervisor's pid.
    run.add_argument("--die-with-parent", type=int, default=None, metavar="PID",
                     help=argparse.SUPPRESS)
    limits = run.add_argument_group(
        "limits (both engines)",
        "cxx: passed to the host (defaults in hosts/grpc_server/README.md); grpcio: gRPC "
        "core's channel arguments of the same meaning (grpcio's defaults), "
        "--max-queued-calls as calls beyond --max-workers, see docs/serving.md")
    for flag in HOST_LIMIT_FLAGS:
        limits.add_argument(flag, type=int, default=None, help=(
            "what calls may hold (default 1 GiB); the grpcio engine takes it as at "
            "most MAX_MEMORY_BYTES / 32 KiB calls in progress or queued"
            if flag == "--max-memory-bytes" else None))
    limits.add_argument("--keepalive-permit-without-calls", action="store_true")
    run.add_argument("--worker-scheduling", choices=("batch", "normal"), default=None,
                     help="cxx engine only: batch (the host's default) runs handler threads "
                     "under SCHED_BATCH, so that they never preempt gRPC's network threads "
                     "when woken; normal keeps the default scheduling")
    serve_options.add_arguments(run)
    serve_tls.add_arguments(run)
    build = commands.add_parser(
        "build-host", help="build the gRPC C++ host against this installed package")
    build.add_argument("--output", type=pathlib.Path, default=None,
                       help=f"where to put the binary (default: {installed_host_path()})")
    build.add_argument("--build-dir", type=pathlib.Path, default=None,
                       help="CMake build directory to keep (default: a temporary one)")
    build.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    library = commands.add_parser(
        "build-grpc-library",
        help="build the C++ library pygrpc_ffi::grpc (<pygrpc_ffi/grpc.hpp>) against this "
        "installed package and the gRPC C++ pkg-config finds, for pkg-config users "
        "(CMake users: find_package(pygrpc_ffi COMPONENTS grpc))")
    library.add_argument("--prefix", type=pathlib.Path, default=pathlib.Path(sys.prefix),
                         help="puts PREFIX/lib/libpygrpc_ffi_grpc.a and "
                         "PREFIX/lib/pkgconfig/pygrpc_ffi_grpc.pc (default: %(default)s)")
    library.add_argument("--cxxflags", default="-O2",
                         help="compiler flags of the library (default %(default)s)")
    library.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    commands.add_parser("config", add_help=False,
                        help="flags and paths for C/C++ builds (config --help)")
    # Parsed by probe.main, whose usage errors exit 64 (2 is "no connection").
    commands.add_parser("probe", add_help=False,
                        help="ask a server's health service, as grpc_health_probe does "
                        "(probe --help)")
    return parser


def host_sources() -> pathlib.Path | None:
    """The C++ host's sources: packaged in the wheel, or the source tree's."""
    for candidate in (PACKAGE_DIR / "host_src", PACKAGE_DIR.parent / "hosts" / "grpc_server"):
        if (candidate / "CMakeLists.txt").is_file():
            return candidate
    return None


def _run_build(commands: Sequence[list[str]], what: str) -> bool:
    """Runs CMake's configure and build commands, echoed to stderr; False
    (with an error line naming ``what``) at the first that fails."""
    for command in commands:
        print("+ " + " ".join(command), file=sys.stderr, flush=True)
        if subprocess.run(command, stdout=sys.stderr).returncode != 0:
            print(f"error: building {what} failed", file=sys.stderr)
            return False
    return True


def build_host(args: argparse.Namespace) -> int:
    sources = host_sources()
    if sources is None:
        print("error: the C++ host's sources are not in this installation", file=sys.stderr)
        return 2
    missing = [tool for tool in ("cmake", "pkg-config", "c++") if shutil.which(tool) is None]
    if not missing:
        for module, package in (("libnghttp2", "libnghttp2-dev"), ("zlib", "zlib1g-dev"),
                                ("openssl", "libssl-dev")):
            if subprocess.run(["pkg-config", "--exists", module]).returncode != 0:
                missing.append(f"{package} (pkg-config {module})")
    if missing:
        print(f"error: building the C++ host needs {', '.join(missing)}; on Debian/Ubuntu: "
              "apt-get install build-essential cmake pkg-config libnghttp2-dev zlib1g-dev "
              "libssl-dev",
              file=sys.stderr)
        return 2
    output: pathlib.Path = args.output or installed_host_path()
    with tempfile.TemporaryDirectory(prefix="pygrpc-ffi-host-") as scratch:
        build_dir = args.build_dir or pathlib.Path(scratch)
        configure = ["cmake", "-S", str(sources), "-B", str(build_dir),
                     "-DCMAKE_BUILD_TYPE=Release", "-DPGF_FIND_PACKAGE=ON",
                     f"-Dpygrpc_ffi_DIR={get_cmake_dir()}"]
        compile_ = ["cmake", "--build", str(build_dir), "--target", HOST_BINARY_NAME,
                    "-j", str(max(args.jobs, 1))]
        if not _run_build((configure, compile_), "the C++ host"):
            return 1
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(build_dir / HOST_BINARY_NAME, output)
    print(output)
    return 0


GRPC_LIBRARY_PC = """\
# Written by `pygrpc-ffi build-grpc-library`: the C++ library pygrpc_ffi::grpc
# (docs/cxx_library.md), built against the pygrpc_ffi package in {package}.
libdir={libdir}
includedir={includedir}
pkgdir={package}

Name: pygrpc_ffi_grpc
Description: Python gRPC handlers in a gRPC C++ server (pygrpc_ffi::grpc)
Version: {version}
Requires: grpc++
Cflags: -I${{includedir}}
Libs: -L${{libdir}} -lpygrpc_ffi_grpc -L${{pkgdir}} -Wl,-rpath,${{pkgdir}} -lpygrpc_ffi -pthread
"""


def build_grpc_library(args: argparse.Namespace) -> int:
    """Compiles pygrpc_ffi::grpc through the installed CMake config (the
    sources the wheel ships) and writes a pkg-config file for it."""
    from .config import PACKAGE_DIR, get_include, library_version

    missing = [tool for tool in ("cmake", "pkg-config", "c++") if shutil.which(tool) is None]
    if not missing and subprocess.run(["pkg-config", "--exists", "grpc++"]).returncode != 0:
        missing.append("libgrpc++-dev (pkg-config grpc++)")
    if missing:
        print(f"error: building the C++ library needs {', '.join(missing)}; on Debian/Ubuntu: "
              "apt-get install build-essential cmake pkg-config libgrpc++-dev libprotobuf-dev",
              file=sys.stderr)
        return 2
    libdir = args.prefix.resolve() / "lib"
    with tempfile.TemporaryDirectory(prefix="pygrpc-ffi-grpc-") as scratch:
        project = pathlib.Path(scratch) / "src"
        project.mkdir()
        (project / "CMakeLists.txt").write_text(
            "cmake_minimum_required(VERSION 3.16)\n"
            "project(pygrpc_ffi_grpc_build CXX)\n"
            "find_package(pygrpc_ffi CONFIG REQUIRED COMPONENTS grpc)\n")
        build_dir = pathlib.Path(scratch) / "build"
        configure = ["cmake", "-S", str(project), "-B", str(build_dir),
                     "-DCMAKE_BUILD_TYPE=None", f"-DCMAKE_CXX_FLAGS={args.cxxflags}",
                     f"-Dpygrpc_ffi_DIR={get_cmake_dir()}"]
        compile_ = ["cmake", "--build", str(build_dir), "--target", "pygrpc_ffi_grpc",
                    "-j", str(max(args.jobs, 1))]
        if not _run_build((configure, compile_), "the C++ library"):
            return 1
        (libdir / "pkgconfig").mkdir(parents=True, exist_ok=True)
        shutil.copy2(build_dir / "libpygrpc_ffi_grpc.a", libdir / "libpygrpc_ffi_grpc.a")
    pc = libdir / "pkgconfig" / "pygrpc_ffi_grpc.pc"
    pc.write_text(GRPC_LIBRARY_PC.format(libdir=libdir, includedir=get_include(),
                                         package=PACKAGE_DIR, version=library_version()))
    print(pc.parent)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["config"]:
        return config_main(argv[1:])
    if argv[:1] == ["probe"]:
        return probe.main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "build-host":
        return build_host(args)
    if args.command == "build-grpc-library":
        return build_grpc_library(args)
    return 2  # pragma: no cover - argparse rejects other commands


if __name__ == "__main__":
    sys.exit(main())
